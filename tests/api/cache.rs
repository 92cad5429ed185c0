//! The cache's contract, observed from outside: store reads are counted by the harness.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::json;
use shortener::service::Resolution;

use crate::helpers::{link, spawn_app};

#[tokio::test]
async fn unknown_codes_are_negatively_cached() {
    let app = spawn_app().await;
    assert_eq!(app.get("/unknown1").await.status(), 404);
    assert_eq!(app.get("/unknown1").await.status(), 404);
    assert_eq!(app.get("/unknown1").await.status(), 404);
    assert_eq!(
        app.store_gets(),
        1,
        "one store read, then the negative entry answers"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"shortener_cache_requests_total{result="negative_hit"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn hot_links_are_served_from_memory() {
    let app = spawn_app().await;
    let code = app.create_ok(link("https://example.com/")).await;
    for _ in 0..50 {
        assert_eq!(app.get(&format!("/{code}")).await.status(), 302);
    }
    assert_eq!(app.store_gets(), 1);
}

#[tokio::test]
async fn junk_paths_never_reach_the_store() {
    let app = spawn_app().await;
    for path in [
        "/favicon.ico",
        "/wp-login.php",
        "/%2e%2e",
        &format!("/{}", "x".repeat(65)),
    ] {
        assert_eq!(app.get(path).await.status(), 404, "{path}");
    }
    assert_eq!(app.store_gets(), 0);
}

#[tokio::test]
async fn delete_stops_the_redirect_immediately() {
    let app = spawn_app().await;
    let code = app
        .create_ok(json!({"url": "https://example.com/", "alias": "gone-soon"}))
        .await;
    // Loaded into moka, then into the worker's front, then answered from the front.
    for _ in 0..3 {
        assert_eq!(app.get(&format!("/{code}")).await.status(), 302, "cached");
    }
    assert_eq!(
        app.delete(&format!("/api/v1/links/{code}")).await.status(),
        204
    );
    assert_eq!(
        app.get(&format!("/{code}")).await.status(),
        404,
        "not served from cache"
    );
}

#[tokio::test]
async fn a_stampede_over_http2_does_one_store_read() {
    let app = spawn_app().await;
    let code = app.create_ok(link("https://example.com/stampede")).await;
    // Hold the single store read open long enough that every request arrives during it.
    app.store.get_delay_ms.store(300, Ordering::SeqCst);
    let client = app.h2_client();
    let url = app.url(&format!("/{code}"));
    let requests: Vec<_> = (0..1000)
        .map(|_| {
            let request = client.get(&url).send();
            tokio::spawn(async move { request.await.expect("request").status().as_u16() })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.expect("task"), 302);
    }
    assert_eq!(
        app.store_gets(),
        1,
        "1000 concurrent misses, one store read"
    );
}

#[tokio::test]
async fn ten_thousand_concurrent_resolves_do_one_store_read() {
    let app = spawn_app().await;
    let code = app.create_ok(link("https://example.com/10k")).await;
    app.store.get_delay_ms.store(200, Ordering::SeqCst);
    let service = app.service.clone();
    let tasks: Vec<_> = (0..10_000)
        .map(|_| {
            let (service, code) = (Arc::clone(&service), code.clone());
            tokio::spawn(async move { service.resolve(&code, true).await })
        })
        .collect();
    for task in tasks {
        assert!(matches!(
            task.await.expect("task"),
            Ok(Resolution::Redirect(_))
        ));
    }
    assert_eq!(app.store_gets(), 1);
}

#[tokio::test]
async fn store_errors_are_not_cached() {
    let app = spawn_app().await;
    let code = app.create_ok(link("https://example.com/")).await;
    app.store.failing.store(true, Ordering::SeqCst);
    let failed = app.get(&format!("/{code}")).await;
    assert_eq!(failed.status(), 503);
    let body: serde_json::Value = failed.json().await.expect("json");
    assert_eq!(body["error"]["code"], "store_unavailable");
    assert!(
        !body.to_string().contains("injected"),
        "5xx bodies are opaque"
    );
    app.store.failing.store(false, Ordering::SeqCst);
    assert_eq!(
        app.get(&format!("/{code}")).await.status(),
        302,
        "recovered at once"
    );
}
