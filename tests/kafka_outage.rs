//! The broker frozen under redirect load: redirects keep answering, clicks wait in the
//! producer's bounded queue and are delivered when the broker is back, and what did not
//! fit is counted, so that every click is accounted for exactly:
//! `recorded = dropped + delivered + refused + failed`, and the statistics hold `delivered`.
//!
//! A binary of its own: the frozen broker is this binary's (the test kit starts one per
//! test binary), so no other test waits on it.
#![cfg(all(feature = "kafka", feature = "postgres"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

#[path = "support/kafka_stack.rs"]
mod kafka_stack;
#[path = "support/process.rs"]
mod process;
use kafka_stack::{Stack, stored_total};
#[path = "support/prometheus.rs"]
mod prometheus;
use prometheus::metric_value;

/// How long the broker is frozen.
const OUTAGE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_broker_costs_redirects_nothing_and_every_click_is_accounted_for() {
    let test = "kafka outage";
    // A small producer queue, so that the outage overflows it.
    let Some(mut stack) = Stack::start(
        test,
        "outage",
        &[("APP__KAFKA__QUEUE_MAX_MESSAGES", "3000")],
    )
    .await
    else {
        return;
    };
    let kafka = shortener_testkit::kafka::kafka(test).expect("started above");
    stack
        .service
        .create(json!({"url": "https://example.com/outage", "alias": "outage"}))
        .await;
    let answered = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let url = stack.service.url("/outage");
    let until = Instant::now() + OUTAGE + Duration::from_secs(4);
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, answered, other) = (
                process::client(),
                url.clone(),
                answered.clone(),
                other.clone(),
            );
            tokio::spawn(async move {
                while Instant::now() < until {
                    match client.get(&url).send().await {
                        Ok(response) if response.status() == 302 => {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            other.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    kafka.pause();
    let during = answered.load(Ordering::Relaxed);
    tokio::time::sleep(OUTAGE).await;
    let answered_in_outage = answered.load(Ordering::Relaxed) - during;
    kafka.resume();
    for task in load {
        task.await.expect("load task");
    }
    let answered = answered.load(Ordering::Relaxed);
    assert_eq!(other.load(Ordering::Relaxed), 0, "every redirect was a 302");
    assert!(
        answered_in_outage > 3_000,
        "redirects went on while the broker was frozen: {answered_in_outage}"
    );

    // Settle: every recorded click has an outcome. A click is recorded when the redirect
    // answers and reaches the producer only when the in-process batcher flushes, so the
    // outcomes trail the answers by up to one linger.
    let deadline = Instant::now() + Duration::from_secs(120);
    let outcomes = loop {
        let text = stack.service.metrics().await;
        let outcomes = Outcomes::read(&text);
        if outcomes.in_flight == 0.0
            && outcomes.recorded == answered as f64
            && outcomes.accounted() == outcomes.recorded
        {
            break outcomes;
        }
        assert!(
            Instant::now() < deadline,
            "not settled after {answered} redirects: {outcomes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("{answered} redirects, {answered_in_outage} while frozen; {outcomes:?}");
    assert!(
        outcomes.refused > 0.0,
        "the outage overflowed the 3,000-click queue"
    );
    let delivered = outcomes.delivered;
    // What was delivered, the consumer writes: exactly that many clicks.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let total = stored_total(&stack.database, "outage").await;
        if total as f64 == delivered {
            break;
        }
        assert!(
            total as f64 <= delivered,
            "{total} stored, {delivered} delivered"
        );
        assert!(
            Instant::now() < deadline,
            "{total} of {delivered} clicks stored"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.service.terminate();
    stack.stop_consumer().await;
}

/// What became of the recorded clicks, from the service's `/metrics`.
#[derive(Debug)]
struct Outcomes {
    recorded: f64,
    /// Dropped before the producer (the in-process queue full, or the sink refused).
    dropped: f64,
    delivered: f64,
    /// Refused at hand-over to librdkafka (its queue full, or another reason).
    refused: f64,
    /// Handed over, then not delivered (timed out, shut down, refused by the broker).
    failed: f64,
    in_flight: f64,
}

impl Outcomes {
    fn read(text: &str) -> Self {
        let kafka = |outcome: &str, reason: &str| {
            metric_value(
                text,
                &format!(
                    "shortener_kafka_clicks_total{{outcome=\"{outcome}\",reason=\"{reason}\"}}"
                ),
            )
        };
        let dropped = |reason: &str| {
            metric_value(
                text,
                &format!("shortener_clicks_dropped_total{{reason=\"{reason}\"}}"),
            )
        };
        Self {
            recorded: metric_value(text, "shortener_clicks_recorded_total"),
            dropped: dropped("queue_full") + dropped("closed") + dropped("sink_error"),
            delivered: kafka("delivered", ""),
            refused: kafka("refused", "queue_full") + kafka("refused", "other"),
            failed: kafka("failed", "timeout")
                + kafka("failed", "shutdown")
                + kafka("failed", "error"),
            in_flight: metric_value(text, "shortener_kafka_in_flight_clicks"),
        }
    }

    /// Clicks with an outcome: every recorded click, once the service has settled.
    fn accounted(&self) -> f64 {
        self.dropped + self.delivered + self.refused + self.failed
    }
}
