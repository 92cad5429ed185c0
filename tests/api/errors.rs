//! Every kind of bad input gets its status and the JSON error envelope.

use std::io::{Read, Write};

use serde_json::json;

use crate::helpers::{error_code, link, spawn_app, spawn_app_with};

#[tokio::test]
async fn malformed_json_returns_400() {
    let app = spawn_app().await;
    for body in [
        "{",
        "{\"url\": }",
        "not json",
        "",
        "{\"url\":\"https://a.com\"} trailing",
    ] {
        let response = app
            .client
            .post(app.url("/api/v1/links"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 400, "{body:?}");
        assert_eq!(error_code(response).await, "malformed_json");
    }
}

#[tokio::test]
async fn wrong_or_missing_content_type_returns_415() {
    let app = spawn_app().await;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = app
            .client
            .post(app.url("/api/v1/links"))
            .body(r#"{"url":"https://a.com"}"#);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 415, "{content_type:?}");
        assert_eq!(error_code(response).await, "unsupported_media_type");
    }
    let with_charset = app
        .client
        .post(app.url("/api/v1/links"))
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"url":"https://a.com"}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(
        with_charset.status(),
        201,
        "parameters on the media type are fine"
    );
}

#[tokio::test]
async fn body_too_large_returns_413() {
    let app = spawn_app_with(|s| s.http.max_body_bytes = 1024.try_into().expect("> 0")).await;
    let big = json!({"url": format!("https://example.com/{}", "a".repeat(2000))});
    let response = app.create(big).await;
    assert_eq!(response.status(), 413);
    assert_eq!(error_code(response).await, "body_too_large");
}

#[tokio::test]
async fn chunked_body_over_the_limit_returns_413() {
    let app = spawn_app_with(|s| s.http.max_body_bytes = 1024.try_into().expect("> 0")).await;
    let addr = app.addr;
    // Raw HTTP/1.1 so the size is not announced: the limit must hold while streaming.
    let status_line = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        let chunk = "a".repeat(600);
        let request = format!(
            "POST /api/v1/links HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n\r\n\
             258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("write");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.lines().next().unwrap_or_default().to_owned()
    })
    .await
    .expect("join");
    assert_eq!(status_line, "HTTP/1.1 413 Payload Too Large");
}

/// Sends `head` (a request's head, nothing of its body) and returns what the server
/// answers before it closes, or within 10 s.
async fn answer_to_head(addr: std::net::SocketAddr, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// A declared `Content-Length` over the limit is refused before any of the body is
/// read: 413 at once, and the connection closed (it used to wait for the body until the
/// body deadline and answer 408).
#[tokio::test]
async fn a_declared_length_over_the_limit_is_413_at_once_without_reading_the_body() {
    let app = spawn_app_with(|s| {
        s.http.max_body_bytes = 1024.try_into().expect("> 0");
        // Far later, so a 408 cannot come first.
        s.http.body_read_timeout_ms = 60_000.try_into().expect("> 0");
    })
    .await;
    let answer = answer_to_head(
        app.addr,
        "POST /api/v1/links HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: 1000000\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
}

/// `Expect: 100-continue` with a length over the limit gets its 413, never the
/// `100 Continue` that would invite a body the server is going to refuse.
#[tokio::test]
async fn expect_continue_over_the_limit_gets_413_and_no_invitation() {
    let app = spawn_app_with(|s| s.http.max_body_bytes = 1024.try_into().expect("> 0")).await;
    let answer = answer_to_head(
        app.addr,
        "POST /api/v1/links HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: 1000000\r\nexpect: 100-continue\r\n\r\n",
    )
    .await;
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    // Within the limit, the invitation comes as before.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let body = r#"{"url":"https://example.com/"}"#;
    let head = format!(
        "POST /api/v1/links HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("invited in time")
        .expect("read");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    stream.write_all(body.as_bytes()).await.expect("body");
    let mut rest = String::new();
    let _ = stream.read_to_string(&mut rest).await;
    assert!(rest.contains("HTTP/1.1 201 "), "{rest}");
}

#[tokio::test]
async fn invalid_values_return_422_with_a_specific_code() {
    let app = spawn_app().await;
    let cases = [
        (json!({"url": "javascript:alert(1)"}), "invalid_url"),
        (
            json!({"url": "https://user:pw@example.com/"}),
            "invalid_url",
        ),
        (json!({"url": "not a url"}), "invalid_url"),
        (
            json!({"url": format!("https://e.com/{}", "a".repeat(2100))}),
            "invalid_url",
        ),
        (
            json!({"url": "https://e.com/", "alias": "ab"}),
            "invalid_alias",
        ),
        (
            json!({"url": "https://e.com/", "alias": "has space"}),
            "invalid_alias",
        ),
        (
            json!({"url": "https://e.com/", "alias": "api"}),
            "invalid_alias",
        ),
        (
            json!({"url": "https://e.com/", "alias": "healthz"}),
            "invalid_alias",
        ),
        (
            json!({"url": "https://e.com/", "redirect": 303}),
            "invalid_redirect",
        ),
        (
            json!({"url": "https://e.com/", "expires_at": "2001-01-01T00:00:00Z"}),
            "invalid_expires_at",
        ),
        (
            json!({"url": "https://e.com/", "expires_at": "tomorrow"}),
            "invalid_expires_at",
        ),
        (
            json!({"url": "https://e.com/", "expire_at": "2099-01-01T00:00:00Z"}),
            "invalid_request",
        ),
        (json!({"url": 42}), "invalid_request"),
        (json!({}), "invalid_request"),
        (json!([1, 2]), "invalid_request"),
    ];
    for (body, expected) in cases {
        let response = app.create(body.clone()).await;
        assert_eq!(response.status(), 422, "{body}");
        assert_eq!(error_code(response).await, expected, "{body}");
    }
}

#[tokio::test]
async fn wrong_method_returns_405_with_allow() {
    let app = spawn_app().await;
    let code = app.create_ok(link("https://example.com/")).await;
    let cases = [
        (reqwest::Method::POST, format!("/{code}"), "GET, HEAD"),
        (reqwest::Method::DELETE, format!("/{code}"), "GET, HEAD"),
        (
            reqwest::Method::PUT,
            "/api/v1/links".to_owned(),
            "GET, POST",
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/links/{code}/stats"),
            "GET",
        ),
        (
            reqwest::Method::PUT,
            format!("/api/v1/links/{code}"),
            "GET, DELETE",
        ),
        (reqwest::Method::POST, "/healthz".to_owned(), "GET, HEAD"),
    ];
    for (method, path, allow) in cases {
        let response = app
            .client
            .request(method.clone(), app.url(&path))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow);
        assert_eq!(error_code(response).await, "method_not_allowed");
    }
}

#[tokio::test]
async fn unknown_paths_and_codes_return_404_json() {
    let app = spawn_app().await;
    for path in [
        "/",
        "/nope1234",
        "/a/b",
        "/api/v1/links/",
        "/api/v1/links/x/y",
        "/favicon.ico",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(error_code(response).await, "not_found");
    }
}

#[tokio::test]
async fn too_many_headers_are_refused_not_crashed() {
    let app = spawn_app_with(|s| s.http.max_headers = 16.try_into().expect("> 0")).await;
    let mut request = app.client.get(app.url("/healthz"));
    for i in 0..40 {
        request = request.header(format!("x-h{i}"), "v");
    }
    let response = request.send().await.expect("request");
    assert_eq!(response.status(), 431);
    assert_eq!(error_code(response).await, "headers_too_large");
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "the server is still up"
    );
}

/// hyper answers requests it cannot parse itself; those answers are JSON too.
#[tokio::test]
async fn requests_hyper_cannot_parse_get_json_errors() {
    let app = spawn_app().await;
    let big = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    for (head, status, code) in [
        (big.as_str(), "431", "headers_too_large"),
        (
            "GE T / HTTP/1.1\r\nhost: x\r\n\r\n",
            "400",
            "malformed_request",
        ),
    ] {
        let answer = answer_to_head(app.addr, head).await;
        let (response_head, body) = answer.split_once("\r\n\r\n").expect("an answer");
        assert!(
            response_head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer}"
        );
        assert!(
            response_head.contains("content-type: application/json"),
            "{answer}"
        );
        assert!(
            response_head.contains(&format!("content-length: {}", body.len())),
            "{answer}"
        );
        let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(json["error"]["code"], code, "{answer}");
    }
}
