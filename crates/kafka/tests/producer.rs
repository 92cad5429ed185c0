//! The service's Kafka sink against a real broker: every click handed over is delivered
//! and counted, and what the consumer side decodes is what was produced.

use std::time::{Duration, Instant};

use metrics::Counter;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use shortener_core::ShortCode;
use shortener_core::click::{CLICK_EVENT_VERSION, ClickEvent};
use shortener_core::sink::EventSink;
use shortener_kafka::producer::{KafkaSink, ProducerMeters};

fn events(n: usize) -> Vec<ClickEvent> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    (0..n)
        .map(|i| ClickEvent {
            v: CLICK_EVENT_VERSION,
            id: uuid::Uuid::now_v7(),
            code: ShortCode::parse(&format!("p{}", i % 10)).expect("code"),
            at_ms: now,
            referrer: None,
            user_agent: None,
            country: None,
            visitor: i as u64,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_click_handed_over_is_delivered_and_counted() {
    let Some(kafka) = shortener_testkit::kafka::kafka("kafka producer") else {
        return;
    };
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let delivered: Counter =
        metrics::with_local_recorder(&recorder, || metrics::counter!("delivered"));
    let mut settings: shortener_kafka::KafkaSettings =
        toml_settings(&kafka.bootstrap(), "producer-clicks");
    settings.linger_ms = 5;
    shortener_kafka::topics::create(&settings)
        .await
        .expect("topics");
    let sink = KafkaSink::new(
        &settings,
        ProducerMeters {
            delivered,
            ..ProducerMeters::noop()
        },
    )
    .expect("producer");
    let started = Instant::now();
    for _ in 0..20 {
        sink.publish(events(500)).await.expect("publish");
    }
    let handed = started.elapsed();
    sink.close().await;
    eprintln!(
        "10,000 clicks handed over in {handed:?}, delivered by {:?}",
        started.elapsed()
    );
    assert!(
        handed < Duration::from_secs(10),
        "publish never waits for the broker: {handed:?}"
    );
    let count = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find_map(|(key, _, _, value)| (key.key().name() == "delivered").then_some(value));
    assert_eq!(count, Some(DebugValue::Counter(10_000)));
}

fn toml_settings(brokers: &str, topic: &str) -> shortener_kafka::KafkaSettings {
    serde_json::from_value(serde_json::json!({
        "brokers": brokers,
        "topic": topic,
        "dead_letter_topic": format!("{topic}-dead"),
        "partitions": 2,
        "replication": 1,
        "linger_ms": 5,
        "batch_bytes": 1000000,
        "compression": "lz4",
        "queue_max_messages": 100000,
        "delivery_timeout_ms": 30000,
        "flush_timeout_ms": 10000,
    }))
    .expect("settings")
}
