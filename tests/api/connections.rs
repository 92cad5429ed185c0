//! Hostile connections over real sockets: HTTP/2 connections that open no stream or
//! trickle their HEADERS, and a slow-body flood on the API beside redirect traffic.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{link, spawn_app_with};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An HTTP/2 frame: 9-byte header (length, type, flags, stream id), then the payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .expect("small frame")
        .to_be_bytes();
    let mut bytes = vec![len[1], len[2], len[3], kind, flags];
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

const SETTINGS: u8 = 0x4;
const HEADERS: u8 = 0x1;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;
const END_STREAM_AND_HEADERS: u8 = 0x5;

/// `GET /healthz` as an HPACK block: :method GET, :scheme http (static table), and
/// :path as a literal with an indexed name.
fn healthz_headers() -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x04, 8];
    block.extend_from_slice(b"/healthz");
    frame(HEADERS, END_STREAM_AND_HEADERS, 1, &block)
}

/// A client connection that has sent the preface and its (empty) SETTINGS, and
/// acknowledged the server's.
async fn h2_connection(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    hello.extend(frame(SETTINGS, ACK, 0, &[]));
    stream.write_all(&hello).await.expect("preface");
    stream
}

/// Reads until the server closes; returns the frame types it sent and how long it took.
/// The timeout is a guard against a hang, not a timing assertion.
async fn frames_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut bytes = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 4096];
        // A reset counts as closed, like EOF.
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            bytes.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_all)
        .await
        .expect("the server closed the connection");
    let elapsed = started.elapsed();
    let mut kinds = Vec::new();
    let mut rest = bytes.as_slice();
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        kinds.push(rest[3]);
        rest = &rest[(9 + len).min(rest.len())..];
    }
    (kinds, elapsed)
}

const DEADLINE_MS: u64 = 500;

#[tokio::test]
async fn an_http2_connection_that_opens_no_stream_is_closed_at_the_header_deadline() {
    let app =
        spawn_app_with(|s| s.http.header_read_timeout_ms = DEADLINE_MS.try_into().expect("> 0"))
            .await;
    let mut stream = h2_connection(app.addr).await;
    let (kinds, elapsed) = frames_until_closed(&mut stream).await;
    assert!(kinds.contains(&SETTINGS), "it spoke HTTP/2: {kinds:?}");
    assert!(
        !kinds.contains(&HEADERS),
        "no response to no request: {kinds:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(DEADLINE_MS - 50),
        "not before the deadline"
    );
    assert!(
        app.metrics()
            .await
            .contains(r#"shortener_http_connections_closed_total{reason="first_request_timeout"}"#)
    );
}

#[tokio::test]
async fn an_http2_connection_trickling_its_headers_is_closed_at_the_header_deadline() {
    let app =
        spawn_app_with(|s| s.http.header_read_timeout_ms = DEADLINE_MS.try_into().expect("> 0"))
            .await;
    let mut stream = h2_connection(app.addr).await;
    let headers = healthz_headers();
    let (mut reader, mut writer) = stream.split();
    // One byte every 100 ms: the 25-byte frame would take 2.5 s to arrive.
    let trickle = async {
        for byte in &headers {
            if writer.write_all(std::slice::from_ref(byte)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let mut seen = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = reader.read(&mut buf).await {
            seen.extend_from_slice(&buf[..n]);
        }
    };
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(read, trickle);
    })
    .await
    .expect("closed");
    assert!(
        started.elapsed() < Duration::from_millis(100 * headers.len() as u64),
        "closed before the trickled HEADERS could complete"
    );
    // The server's SETTINGS frame (and its ACK) are all it sent: 2 frames, no response.
    assert!(seen.len() < 64, "no response: {seen:?}");
}

#[tokio::test]
async fn an_http2_connection_idle_after_its_streams_gets_goaway_and_is_closed() {
    let app = spawn_app_with(|s| {
        s.http.header_read_timeout_ms = DEADLINE_MS.try_into().expect("> 0");
        s.http.http2_idle_timeout_ms = DEADLINE_MS.try_into().expect("> 0");
    })
    .await;
    let mut stream = h2_connection(app.addr).await;
    stream.write_all(&healthz_headers()).await.expect("request");
    let (kinds, elapsed) = frames_until_closed(&mut stream).await;
    assert!(
        kinds.contains(&HEADERS),
        "the request was answered: {kinds:?}"
    );
    assert!(kinds.contains(&GOAWAY), "told to go away: {kinds:?}");
    assert!(
        elapsed >= Duration::from_millis(DEADLINE_MS - 50),
        "idle for at least the deadline"
    );
}

/// Posts a body announced as 100 bytes at one byte per 100 ms; returns the status line
/// the server answered with.
async fn slow_post(addr: std::net::SocketAddr) -> String {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return "connect failed".into();
    };
    let head = "POST /api/v1/links HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return "write failed".into();
    }
    let (mut reader, mut writer) = stream.split();
    let trickle = async {
        for _ in 0..99 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(b" ").await.is_err() {
                return;
            }
        }
    };
    let mut answer = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = reader.read(&mut buf).await {
            answer.extend_from_slice(&buf[..n]);
        }
    };
    tokio::select! {
        () = read => {}
        () = trickle => {}
    }
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_slow_body_flood_on_the_api_sheds_no_redirect() {
    let app = spawn_app_with(|s| {
        s.http.api_concurrency_limit = 16.try_into().expect("> 0");
        s.http.body_read_timeout_ms = 1500.try_into().expect("> 0");
    })
    .await;
    let code = app.create_ok(link("https://example.com/")).await;
    let path = format!("/{code}");
    assert_eq!(app.get(&path).await.status(), 302, "cached now");

    let flood: Vec<_> = (0..100)
        .map(|_| tokio::spawn(slow_post(app.addr)))
        .collect();
    // Let the flood take every API slot before the redirects start.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let redirects: Vec<_> = (0..8)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url(&path));
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..150 {
                    let status = client.get(&url).send().await.expect("redirect").status();
                    statuses.push(status.as_u16());
                }
                statuses
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in redirects {
        statuses.extend(task.await.expect("redirect task"));
    }
    let mut answers = Vec::new();
    for task in flood {
        answers.push(task.await.expect("flood task"));
    }

    assert_eq!(statuses.len(), 8 * 150);
    let failed = statuses.iter().filter(|&&s| s != 302).count();
    assert_eq!(
        failed,
        0,
        "redirects not answered 302, of {}",
        statuses.len()
    );
    let timed_out = answers.iter().filter(|a| a.contains(" 408 ")).count();
    let shed = answers.iter().filter(|a| a.contains(" 503 ")).count();
    assert!(
        timed_out > 0,
        "slow bodies were cut off with 408: {answers:?}"
    );
    assert!(shed > 0, "the flood was past the API budget: {answers:?}");
    assert_eq!(timed_out + shed, answers.len(), "{answers:?}");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"shortener_http_rejected_total{reason="concurrency",budget="api"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"shortener_http_rejected_total{reason="body_timeout"}"#),
        "{metrics}"
    );
}

const END_HEADERS: u8 = 0x4;

/// `POST /api/v1/links` on `stream` with `content-type: application/json` and no
/// END_STREAM: the stream stays open while the handler waits for a body.
fn open_post(stream: u32, content_length: Option<&str>) -> Vec<u8> {
    let mut block = vec![0x83, 0x86, 0x04, 13];
    block.extend_from_slice(b"/api/v1/links");
    block.extend_from_slice(&[0x0f, 0x10, 16]);
    block.extend_from_slice(b"application/json");
    if let Some(length) = content_length {
        // content-length: literal without indexing, static name 28.
        block.extend_from_slice(&[0x0f, 0x0d, u8::try_from(length.len()).expect("short")]);
        block.extend_from_slice(length.as_bytes());
    }
    frame(HEADERS, END_HEADERS, stream, &block)
}

/// The attack run's finding: two HTTP/2 connections, each with 256 POST streams that
/// declare a body and never send it, held all 512 API slots for the body deadline. Each
/// connection now holds at most its share; a legitimate create still gets its 201.
#[tokio::test]
async fn two_http2_connections_of_silent_posts_cannot_take_the_api_budget() {
    let app = spawn_app_with(|s| {
        // Long, so that only the admission decides what a create gets meanwhile.
        s.http.body_read_timeout_ms = 60_000.try_into().expect("> 0");
        s.http.request_timeout_ms = 60_000.try_into().expect("> 0");
        s.http.header_read_timeout_ms = 60_000.try_into().expect("> 0");
    })
    .await;
    let baseline = Instant::now();
    app.create_ok(link("https://example.com/before")).await;
    let baseline = baseline.elapsed();
    let shed_before = app
        .metric(r#"shortener_http_rejected_total{reason="concurrency",budget="api_connection"}"#)
        .await;
    let mut attackers = Vec::new();
    for _ in 0..2 {
        let mut stream = h2_connection(app.addr).await;
        let streams: Vec<u8> = (0..256u32)
            .flat_map(|i| open_post(2 * i + 1, Some("100")))
            .collect();
        stream.write_all(&streams).await.expect("open 256 streams");
        attackers.push(stream);
    }
    // Every stream past a connection's share is answered 503 at once.
    let wanted = shed_before + 2.0 * f64::from(256 - 16);
    let deadline = Instant::now() + Duration::from_secs(20);
    while app
        .metric(r#"shortener_http_rejected_total{reason="concurrency",budget="api_connection"}"#)
        .await
        < wanted
    {
        assert!(
            Instant::now() < deadline,
            "the streams past the share were not shed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The attack holds 2 x 16 slots now, and will for a minute: the API still answers.
    let during = Instant::now();
    let response = app.create(link("https://example.com/during")).await;
    let during = during.elapsed();
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    assert_eq!(app.get("/api/v1/links").await.status(), 200);
    // For the record (not asserted: timings are not for tests on a shared machine).
    eprintln!("create latency before the attack {baseline:?}, during it {during:?}");
    drop(attackers);
}

/// The attack run's finding: a client that pipelines requests and never reads filled
/// both socket buffers and held its HTTP/1 connection for as long as it liked. Now the
/// blocked write is cut at `http.write_timeout_ms`, and the close is counted.
#[tokio::test]
async fn a_client_that_never_reads_its_responses_is_disconnected_at_the_write_deadline() {
    let app = spawn_app_with(|s| {
        s.http.write_timeout_ms = 300.try_into().expect("> 0");
    })
    .await;
    let closed = r#"shortener_http_connections_closed_total{reason="write_timeout"}"#;
    let before = app.metric(closed).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    // A small receive window, so the server's writes block after a few responses.
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut stream = socket.connect(app.addr).await.expect("connect");
    let requests = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n".repeat(1024);
    // Pipeline until our own write blocks: both directions are full.
    let mut sent = 0usize;
    loop {
        match tokio::time::timeout(Duration::from_secs(1), stream.write_all(&requests)).await {
            Ok(Ok(())) => sent += 1024,
            Ok(Err(_)) => break, // already cut
            Err(_) => break,     // blocked: nobody reads on either side
        }
        assert!(
            sent < 10_000_000,
            "the server kept reading without writing?"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.metric(closed).await <= before {
        assert!(Instant::now() < deadline, "the connection was not cut");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And it is really gone: reading drains what was sent, then EOF or a reset.
    let drained = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = vec![0u8; 65536];
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            let _ = n;
        }
    })
    .await;
    assert!(drained.is_ok(), "the server closed its side");
}

#[tokio::test]
async fn an_http2_peer_that_stops_answering_pings_is_dropped_with_its_stream_open() {
    const PING: u8 = 0x6;
    let app = spawn_app_with(|s| {
        s.http.http2_keep_alive_interval_ms = 200.try_into().expect("> 0");
        s.http.http2_keep_alive_timeout_ms = 200.try_into().expect("> 0");
        // Far later, so only the PING can explain the close.
        s.http.body_read_timeout_ms = 30_000.try_into().expect("> 0");
        s.http.request_timeout_ms = 30_000.try_into().expect("> 0");
    })
    .await;
    let mut stream = h2_connection(app.addr).await;
    // A body that never comes: the stream stays open.
    stream
        .write_all(&open_post(1, None))
        .await
        .expect("request");
    // Read (never answering the PING) until the server gives up on us.
    let (kinds, elapsed) = frames_until_closed(&mut stream).await;
    assert!(kinds.contains(&PING), "pinged: {kinds:?}");
    assert!(
        elapsed < Duration::from_secs(20),
        "dropped for the unanswered PING, not a body deadline: {elapsed:?}"
    );
}
