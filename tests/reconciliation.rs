//! The click accounting identity, read from `/metrics` after a load run:
//!
//! - every GET redirect is recorded or dropped:
//!   `redirects = recorded + dropped{queue_full} + dropped{closed}`
//! - every recorded click is aggregated or lost by the sink (once the queue is empty):
//!   `recorded = aggregated + dropped{sink_error}`
//!
//! Its own test binary: metrics are process-global, so one server must own them.

use std::time::Duration;

use serde_json::{Value, json};
use shortener::config::Settings;
use shortener::startup::Application;

#[path = "support/prometheus.rs"]
mod prometheus;
use prometheus::metric_value as metric;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_reconcile_with_recorded_dropped_and_aggregated_clicks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::from_defaults().expect("defaults");
    settings.http.listen = "127.0.0.1:0".parse().expect("addr");
    settings.admin.listen = "127.0.0.1:0".parse().expect("addr");
    settings.store.path = dir.path().join("links.redb");
    // The identity, not access control: open mode (loopback), no rate limits.
    settings.auth.mode = shortener::config::AuthMode::Open;
    settings.limits.enabled = false;
    // A small queue so that the load run overflows it: both sides of the identity matter.
    settings.clicks.queue_capacity = 64.try_into().expect("> 0");
    settings.clicks.batch_max = 32.try_into().expect("> 0");
    settings.clicks.flush_interval_ms = 20.try_into().expect("> 0");
    let app = Application::build(settings).await.expect("build");
    let (addr, admin) = (app.public_addr(), app.admin_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let created: Value = client
        .post(format!("http://{addr}/api/v1/links"))
        .json(&json!({"url": "https://example.com/"}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let url = format!("http://{addr}/{}", created["code"].as_str().expect("code"));

    // The load run: 8 waves of 500 concurrent redirects.
    let mut answered = 0u64;
    for _ in 0..8 {
        let wave: Vec<_> = (0..500)
            .map(|_| tokio::spawn(client.get(&url).send()))
            .collect();
        for request in wave {
            assert_eq!(request.await.expect("task").expect("request").status(), 302);
            answered += 1;
        }
    }

    // Wait until the batcher has caught up: it has taken every click that was queued,
    // and settled every click it took. Every redirect has been answered, so every
    // `record` call has returned and `redirects - dropped{queue_full, closed}` clicks
    // went into the queue: while any of them is still queued, `recorded` is smaller
    // (the batcher counts a click when it takes it), so this cannot hold early. A
    // click lost without being counted keeps it from ever holding: the deadline fails
    // the test with both sides printed.
    // The admin listener speaks HTTP/1.1 only.
    let scraper = reqwest::Client::new();
    let scrape = || async {
        let response = scraper
            .get(format!("http://{admin}/metrics"))
            .send()
            .await
            .expect("scrape");
        response.text().await.expect("text")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape().await;
        let queued = metric(&text, "shortener_redirects_total")
            - metric(
                &text,
                r#"shortener_clicks_dropped_total{reason="queue_full"}"#,
            )
            - metric(&text, r#"shortener_clicks_dropped_total{reason="closed"}"#);
        let recorded = metric(&text, "shortener_clicks_recorded_total");
        let settled = metric(&text, "shortener_clicks_aggregated_total")
            + metric(
                &text,
                r#"shortener_clicks_dropped_total{reason="sink_error"}"#,
            );
        if recorded == queued && recorded == settled {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "batcher did not catch up: queued {queued}, recorded {recorded}, settled {settled}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let redirects = metric(&text, "shortener_redirects_total");
    let recorded = metric(&text, "shortener_clicks_recorded_total");
    let queue_full = metric(
        &text,
        r#"shortener_clicks_dropped_total{reason="queue_full"}"#,
    );
    let closed = metric(&text, r#"shortener_clicks_dropped_total{reason="closed"}"#);
    let aggregated = metric(&text, "shortener_clicks_aggregated_total");
    let served = metric(
        &text,
        r#"shortener_http_requests_total{route="/{code}",status="302"}"#,
    );
    assert_eq!(
        served, answered as f64,
        "every answered redirect is in the request metrics"
    );
    assert_eq!(
        redirects, served,
        "every GET redirect attempted to record a click"
    );
    assert_eq!(
        redirects,
        recorded + queue_full + closed,
        "recorded + dropped = redirects"
    );
    assert!(queue_full > 0.0, "the run was meant to overflow the queue");
    assert!(aggregated > 0.0);

    let link: Value = client
        .get(format!(
            "http://{addr}/api/v1/links/{}",
            created["code"].as_str().expect("code")
        ))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        link["clicks"].as_f64(),
        Some(aggregated),
        "the API shows exactly what was aggregated"
    );

    let _ = stop.send(());
    server.await.expect("join").expect("clean shutdown");
}
