//! Health, readiness, metrics, request ids and the overload guards.

use std::sync::atomic::Ordering;

use crate::helpers::{error_code, link, spawn_app, spawn_app_with};

#[tokio::test]
async fn healthz_and_readyz_answer_ok() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.text().await.expect("text"),
        "{\"status\":\"ready\"}\n"
    );
}

#[tokio::test]
async fn readyz_fails_when_the_store_does_but_healthz_does_not() {
    let app = spawn_app().await;
    app.store.failing.store(true, Ordering::SeqCst);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    assert_eq!(error_code(ready).await, "not_ready");
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn metrics_are_on_the_admin_port_only_and_use_route_templates() {
    let app = spawn_app().await;
    let code = app.create_ok(link("https://example.com/")).await;
    app.get(&format!("/{code}")).await;
    let metrics = app.metrics().await;
    for expected in [
        r#"shortener_http_requests_total{route="/{code}",status="302"}"#,
        r#"shortener_http_requests_total{route="/api/v1/links",status="201"}"#,
        r#"shortener_http_request_duration_seconds_bucket{route="/{code}",status="302",le="0.002"}"#,
        r#"shortener_store_operation_duration_seconds_count{op="insert"}"#,
        r#"shortener_cache_requests_total{result="miss"}"#,
        "shortener_links_created_total",
    ] {
        assert!(metrics.contains(expected), "missing {expected}");
    }
    assert!(!metrics.contains(&code), "no per-code labels");
    assert_eq!(
        app.get("/metrics").await.status(),
        404,
        "not exposed on the public port"
    );
}

#[tokio::test]
async fn request_ids_are_minted_or_echoed() {
    let app = spawn_app().await;
    let minted = app.get("/healthz").await;
    let id = minted.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(!id.is_empty());
    let other = app.get("/healthz").await.headers()["x-request-id"].clone();
    assert_ne!(other, id.as_str());

    let echoed = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "lb-abc-123")
        .send()
        .await
        .expect("request");
    assert_eq!(echoed.headers()["x-request-id"], "lb-abc-123");
}

#[tokio::test]
async fn requests_past_the_concurrency_limit_are_shed_with_503() {
    let app =
        spawn_app_with(|s| s.http.redirect_concurrency_limit = 1.try_into().expect("> 0")).await;
    let code = app.create_ok(link("https://example.com/")).await;
    app.store.get_delay_ms.store(500, Ordering::SeqCst);
    // The first request holds the only slot while its store read sleeps.
    let slow = tokio::spawn(app.client.get(app.url(&format!("/{code}"))).send());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let shed = app.get("/healthz").await;
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_eq!(error_code(shed).await, "overloaded");
    assert_eq!(
        slow.await.expect("task").expect("request").status(),
        302,
        "admitted work completes"
    );
    assert!(
        app.metrics()
            .await
            .contains(r#"shortener_http_rejected_total{reason="concurrency",budget="redirect"}"#)
    );
}

#[tokio::test]
async fn requests_past_the_timeout_get_503() {
    let app = spawn_app_with(|s| s.http.request_timeout_ms = 100.try_into().expect("> 0")).await;
    let code = app.create_ok(link("https://example.com/")).await;
    // The store would answer 302 after 1 s; a 503 "timeout" proves the deadline cut it off.
    app.store.get_delay_ms.store(1000, Ordering::SeqCst);
    let response = app.get(&format!("/{code}")).await;
    assert_eq!(response.status(), 503);
    assert_eq!(error_code(response).await, "timeout");
    let metrics = app.metrics().await;
    assert!(metrics.contains(r#"shortener_http_rejected_total{reason="timeout"}"#));
}

#[tokio::test]
async fn shutdown_drains_an_in_flight_request() {
    let app = spawn_app().await;
    let code = app.create_ok(link("https://example.com/")).await;
    app.store.get_delay_ms.store(300, Ordering::SeqCst);
    let in_flight = tokio::spawn(app.client.get(app.url(&format!("/{code}"))).send());
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let addr = app.addr;
    app.stop().await;
    assert_eq!(
        in_flight.await.expect("task").expect("request").status(),
        302
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no longer accepting"
    );
}
