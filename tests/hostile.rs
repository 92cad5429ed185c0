//! Hostile traffic against the real `shortener` binary: more silent connections than the
//! process has file descriptors, and SIGTERM in the middle of keep-alive load.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "support/process.rs"]
mod process;
#[path = "support/prometheus.rs"]
mod prometheus;
use process::Server;
use prometheus::metric_value;

/// The store in a fresh directory, plus `env`.
fn start_in(dir: &std::path::Path, open_files: Option<u32>, env: &[(&str, &str)]) -> Server {
    let path = dir.join("links.redb");
    let path = path.to_str().expect("utf-8 temp path");
    let mut all = vec![("APP__STORE__PATH", path)];
    all.extend_from_slice(env);
    match open_files {
        Some(n) => Server::start_with_open_files(n, &all),
        None => Server::start(&all),
    }
}

/// Opens `n` connections that never send a byte (the client needs the descriptors too).
async fn silent_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    rlimit::increase_nofile_limit(u64::MAX).expect("raise the test's own file limit");
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        streams.push(
            TcpStream::connect(addr)
                .await
                .expect("connect (the backlog takes it)"),
        );
    }
    streams
}

/// How many of `streams` the server has closed (EOF or reset) by now.
fn closed(streams: &[TcpStream]) -> usize {
    let mut buf = [0u8; 16];
    streams
        .iter()
        .filter(|s| !matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock))
        .count()
}

/// Polls `GET /healthz` on new connections until it answers 200; panics after `within`.
async fn healthz_within(server: &Server, within: Duration) {
    let started = Instant::now();
    loop {
        let client = process::client();
        let answered = tokio::time::timeout(
            Duration::from_millis(500),
            client.get(server.url("/healthz")).send(),
        )
        .await;
        if let Ok(Ok(response)) = answered
            && response.status() == 200
        {
            return;
        }
        assert!(
            started.elapsed() < within,
            "/healthz did not answer within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const IDLE_MS: u64 = 2000;

#[tokio::test]
async fn silent_connections_past_the_cap_are_closed_at_once_and_health_returns_after_the_deadline()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let idle = IDLE_MS.to_string();
    // 256 descriptors: the derived cap is 256 - 64 = 192 connections.
    let server = start_in(
        dir.path(),
        Some(256),
        &[("APP__HTTP__HEADER_READ_TIMEOUT_MS", &idle)],
    );
    let cap: usize = 192;
    let serving = server.wait_for_log("public listener serving");
    assert!(
        serving.contains("max_connections=192"),
        "the cap is derived from the file limit: {serving}"
    );

    let silent = silent_connections(server.addr, 300).await;
    let opened = Instant::now();
    // Over-cap connections are closed as soon as they are accepted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        closed(&silent),
        300 - cap,
        "exactly the connections past the cap were closed"
    );

    // Held past the cap, the listener cannot serve /healthz until the deadline frees it.
    healthz_within(&server, Duration::from_secs(30)).await;
    let since_opened = opened.elapsed();
    assert!(
        since_opened < Duration::from_millis(IDLE_MS + 1000),
        "/healthz answered {since_opened:?} after the silent connections opened"
    );
    // The rest go at their own deadlines (they were accepted over a few milliseconds).
    let guard = Instant::now();
    while closed(&silent) < 300 {
        assert!(
            guard.elapsed() < Duration::from_secs(10),
            "every silent connection was closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let text = server.metrics().await;
    // The /healthz polls that found the cap reached were refused too.
    assert!(
        metric_value(&text, "shortener_http_connections_refused_total") >= (300 - cap) as f64,
        "{text}"
    );
    assert!(
        metric_value(
            &text,
            r#"shortener_http_connections_closed_total{reason="first_request_timeout"}"#
        ) >= cap as f64,
        "{text}"
    );
    // Still accepting.
    for _ in 0..20 {
        assert_eq!(server.status("/healthz").await, 200);
    }
}

#[tokio::test]
async fn running_out_of_file_descriptors_does_not_stop_the_accept_loop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let idle = IDLE_MS.to_string();
    // A cap far above the 128 descriptors the process has: accept itself hits EMFILE.
    let server = start_in(
        dir.path(),
        Some(128),
        &[
            ("APP__HTTP__HEADER_READ_TIMEOUT_MS", &idle),
            ("APP__HTTP__MAX_CONNECTIONS", "100000"),
        ],
    );
    let silent = silent_connections(server.addr, 300).await;
    // Out of descriptors, then free again as the deadlines close the silent ones, in
    // waves of ~100 (the rest wait in the kernel's backlog).
    healthz_within(&server, Duration::from_secs(30)).await;
    drop(silent);

    let text = server.metrics().await;
    let exhausted = metric_value(
        &text,
        r#"shortener_http_accept_errors_total{kind="fd_exhausted"}"#,
    );
    assert!(exhausted > 0.0, "EMFILE was hit and counted: {text}");
    let warnings = server
        .drain_logs()
        .iter()
        .filter(|l| l.contains("out of file descriptors"))
        .count();
    assert!(warnings >= 1, "logged");
    assert!(
        (warnings as f64) < exhausted,
        "logged once per episode ({warnings}), not per failed accept ({exhausted})"
    );
    for _ in 0..20 {
        assert_eq!(server.status("/healthz").await, 200);
    }
}

/// What one keep-alive client connection saw.
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    answered: u64,
    redirects: u64,
}

/// Sends `GET path` back to back on one connection until the server says
/// `Connection: close` or refuses a new connection; reconnects after a close. A request
/// sent and never answered is what the test counts as lost.
async fn keep_alive_client(addr: SocketAddr, path: String) -> Tally {
    let mut tally = Tally::default();
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
    'connections: loop {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            return tally; // The listener is gone: the server is shutting down.
        };
        let mut buf = Vec::with_capacity(1024);
        loop {
            if stream.write_all(request.as_bytes()).await.is_err() {
                // Nothing reached the server; not counted as sent.
                continue 'connections;
            }
            tally.sent += 1;
            buf.clear();
            let head_end = loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end + 4;
                }
                let mut chunk = [0u8; 1024];
                match stream.read(&mut chunk).await {
                    Ok(n @ 1..) => buf.extend_from_slice(&chunk[..n]),
                    _ => return tally, // Sent, never answered: lost.
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().expect("content-length"));
            while buf.len() < head_end + length {
                let mut chunk = [0u8; 1024];
                match stream.read(&mut chunk).await {
                    Ok(n @ 1..) => buf.extend_from_slice(&chunk[..n]),
                    _ => return tally,
                }
            }
            tally.answered += 1;
            if head.starts_with("http/1.1 302") {
                tally.redirects += 1;
            }
            if head.contains("connection: close") {
                continue 'connections;
            }
        }
    }
}

#[tokio::test]
async fn sigterm_under_keep_alive_load_answers_every_request_and_keeps_every_click() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = start_in(dir.path(), None, &[]);
    server
        .create(json!({"url": "https://example.com/", "alias": "busy"}))
        .await;
    let clients: Vec<_> = (0..64)
        .map(|_| tokio::spawn(keep_alive_client(server.addr, "/busy".into())))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.signal_terminate();
    let mut total = Tally::default();
    for client in clients {
        let tally = client.await.expect("client task");
        total.sent += tally.sent;
        total.answered += tally.answered;
        total.redirects += tally.redirects;
    }
    server.wait_success();

    assert!(total.redirects > 1000, "under load: {total:?}");
    assert_eq!(
        total.sent, total.answered,
        "every request sent got a response: {total:?}"
    );
    assert_eq!(
        total.redirects, total.answered,
        "all of them redirects: {total:?}"
    );

    let mut restarted = start_in(dir.path(), None, &[]);
    assert_eq!(
        restarted.link("busy").await["clicks"],
        total.redirects,
        "every click of a redirect served before the signal was kept"
    );
    restarted.kill();
}
