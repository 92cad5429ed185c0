//! Clicks through Kafka, end to end: the real `shortener` process with the Kafka sink,
//! the test kit's broker and PostgreSQL, and the analytics consumer (its library, in this
//! process). Redirects of browsers and bots, with referrers, and HEAD requests, come back
//! as statistics that count exactly the GET redirects, humans and bots apart.
//!
//! Needs the `kafka` and `postgres` features (the README's test command enables every
//! feature), PostgreSQL's binaries, Java 17 and Maven.
#![cfg(all(feature = "kafka", feature = "postgres"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

#[path = "support/kafka_stack.rs"]
mod kafka_stack;
#[path = "support/process.rs"]
mod process;
use kafka_stack::{Stack, stored_total, wait_for_clicks};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_become_statistics_through_kafka_and_the_consumer() {
    let Some(mut stack) = Stack::start("kafka end to end", "e2e", &[]).await else {
        return;
    };
    let service = &mut stack.service;
    service
        .create(json!({"url": "https://example.com/e2e", "alias": "e2e"}))
        .await;
    let get = |agent: &'static str, referrer: Option<&'static str>| {
        let mut request = service
            .client
            .get(service.url("/e2e"))
            .header("user-agent", agent);
        if let Some(referrer) = referrer {
            request = request.header("referer", referrer);
        }
        request.send()
    };
    for i in 0..30 {
        let referrer = (i % 2 == 0).then_some("https://news.example/post");
        assert_eq!(get(FIREFOX, referrer).await.expect("GET").status(), 302);
    }
    for _ in 0..20 {
        assert_eq!(get(GOOGLEBOT, None).await.expect("GET").status(), 302);
    }
    for _ in 0..15 {
        let head = service
            .client
            .head(service.url("/e2e"))
            .send()
            .await
            .expect("HEAD");
        assert_eq!(head.status(), 302);
    }

    let stats = wait_for_clicks(service, "e2e", 50).await;
    let totals = &stats["totals"];
    assert_eq!(totals["clicks"], 50, "{stats}");
    assert_eq!(totals["human"], 30, "{stats}");
    assert_eq!(totals["bot"], 20, "{stats}");
    let referrers = stats["top"]["referrer"].to_string();
    assert!(referrers.contains("news.example"), "{stats}");
    // Nothing more arrives (HEAD requests are not clicks).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(service.link("e2e").await["clicks"], 50);

    service.terminate();
    let logs = service.drain_logs().join("\n");
    assert!(
        logs.contains("kafka producer flushed and stopped"),
        "{logs}"
    );
    stack.stop_consumer().await;
}

/// SIGTERM in the middle of a redirect load: every redirect answered (before the signal
/// or while draining) reaches the statistics: the producer flushes before the process
/// exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_click_answered_before_sigterm_reaches_the_statistics() {
    let Some(mut stack) = Stack::start("kafka sigterm under load", "sigterm", &[]).await else {
        return;
    };
    stack
        .service
        .create(json!({"url": "https://example.com/load", "alias": "load"}))
        .await;
    let answered = Arc::new(AtomicU64::new(0));
    let url = stack.service.url("/load");
    let load: Vec<_> = (0..8)
        .map(|_| {
            let (client, url, answered) = (process::client(), url.clone(), answered.clone());
            tokio::spawn(async move {
                // Until the server is gone: connection refused or reset.
                while let Ok(response) = client.get(&url).send().await {
                    if response.status() == 302 {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.service.signal_terminate();
    for task in load {
        task.await.expect("load task");
    }
    stack.service.wait_success();
    let answered = answered.load(Ordering::Relaxed);
    assert!(answered > 100, "a real load: {answered} redirects");
    // The service is gone; its clicks are in Kafka, and the consumer writes them.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let total = stored_total(&stack.database, "load").await;
        assert!(total <= answered, "{total} clicks for {answered} redirects");
        if total == answered {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{total} of {answered} clicks reached the statistics"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.stop_consumer().await;
}
