//! The service while its PostgreSQL is down, and after it comes back: a binary of its
//! own, because it stops the test cluster (as `pg_ctl stop -m immediate` would).
//!
//! Cached redirects keep answering; what needs the database (an uncached redirect, a
//! create, readiness) answers 503 promptly, never hangs; and once the database is back
//! the service reconnects by itself.
#![cfg(feature = "postgres")]

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use shortener_testkit::postgres as cluster;
#[path = "support/process.rs"]
mod process;
use process::Server;

/// The status and error code of a request, failing the test if no answer comes within
/// 10 s (a hang: the configured timeouts are 500 ms).
async fn answer(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("an answer, not a hang");
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_fails_fast_and_the_service_reconnects_by_itself() {
    let Some(cluster) = cluster::cluster("a_stopped_database_fails_fast") else {
        return;
    };
    let url = cluster.fresh_database().await;
    process::migrate_postgres(&url);
    let mut server = Server::start(&[
        ("APP__STORE__BACKEND", "postgres"),
        ("APP__STORE__POSTGRES__URL", &url),
        ("APP__STORE__POSTGRES__CONNECT_TIMEOUT_MS", "500"),
        ("APP__STORE__POSTGRES__ACQUIRE_TIMEOUT_MS", "500"),
    ]);
    server
        .create(json!({"url": "https://example.com/hot", "alias": "hot"}))
        .await;
    assert_eq!(
        server.status("/hot").await,
        302,
        "now in the in-process cache"
    );
    // A link this instance has never seen: created by another instance.
    let mut other = Server::start(&[
        ("APP__STORE__BACKEND", "postgres"),
        ("APP__STORE__POSTGRES__URL", &url),
    ]);
    other
        .create(json!({"url": "https://example.com/colder", "alias": "colder"}))
        .await;
    other.terminate();

    cluster.stop_immediately();
    let c = &server.client;
    for _ in 0..20 {
        assert_eq!(
            answer(c.get(server.url("/hot"))).await.0,
            302,
            "cached: still served"
        );
    }
    let unavailable = (503, "store_unavailable".to_owned());
    assert_eq!(answer(c.get(server.url("/colder"))).await, unavailable);
    let create = c
        .post(server.url("/api/v1/links"))
        .json(&json!({"url": "https://example.com/new"}));
    assert_eq!(answer(create).await, unavailable);
    assert_eq!(
        answer(c.get(server.url("/readyz"))).await,
        (503, "not_ready".to_owned())
    );

    cluster.start_again();
    let deadline = Instant::now() + Duration::from_secs(30);
    while answer(c.get(server.url("/readyz"))).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "not ready 30 s after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answer(c.get(server.url("/colder"))).await.0, 302);
    let create = c
        .post(server.url("/api/v1/links"))
        .json(&json!({"url": "https://example.com/new"}));
    assert_eq!(answer(create).await.0, 201);
    server.terminate();
}
