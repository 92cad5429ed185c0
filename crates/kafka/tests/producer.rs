//! The service's Kafka sink against a real broker: every click handed over is delivered
//! and counted, and a program in another language (Python, `confluent-kafka`) reads
//! the events as docs/events.md describes them.
#![cfg(feature = "client")]

use std::time::{Duration, Instant};

use metrics::{Counter, Gauge};
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
    let (delivered, produce_requests, bytes_sent, batch_messages): (
        Counter,
        Counter,
        Counter,
        Gauge,
    ) = metrics::with_local_recorder(&recorder, || {
        (
            metrics::counter!("delivered"),
            metrics::counter!("produce_requests"),
            metrics::counter!("bytes_sent"),
            metrics::gauge!("batch_messages"),
        )
    });
    let mut settings: shortener_kafka::KafkaSettings =
        toml_settings(&kafka.bootstrap(), "producer-clicks");
    settings.linger_ms = 5;
    settings.statistics_interval_ms = 100;
    shortener_kafka::topics::create(&settings)
        .await
        .expect("topics");
    let sink = KafkaSink::new(
        &settings,
        ProducerMeters {
            delivered,
            produce_requests,
            bytes_sent,
            batch_messages,
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
    // librdkafka's statistics arrive every 100 ms on its own thread.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let values: std::collections::HashMap<String, DebugValue> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key.key().name().to_owned(), value))
        .collect();
    assert_eq!(values.get("delivered"), Some(&DebugValue::Counter(10_000)));
    let Some(&DebugValue::Counter(requests)) = values.get("produce_requests") else {
        panic!("no produce requests counted: {values:?}");
    };
    // Batched: far fewer requests than clicks.
    assert!(
        (1..1_000).contains(&requests),
        "{requests} produce requests"
    );
    let Some(&DebugValue::Counter(bytes)) = values.get("bytes_sent") else {
        panic!("no bytes counted: {values:?}");
    };
    assert!(bytes > 10_000, "{bytes} bytes for 10,000 clicks");
    let Some(DebugValue::Gauge(per_batch)) = values.get("batch_messages") else {
        panic!("no batch size: {values:?}");
    };
    assert!(
        per_batch.into_inner() >= 1.0,
        "{per_batch:?} messages per batch"
    );
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
        "statistics_interval_ms": 0,
    }))
    .expect("settings")
}

/// What a Python program reads from the topic with `confluent-kafka`, one JSON line per
/// message: the key, and the value decoded by the standard `json` module.
const PYTHON_READER: &str = r#"
import json, sys
from confluent_kafka import Consumer
brokers, topic, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
consumer = Consumer({"bootstrap.servers": brokers, "group.id": "python-reader",
                     "auto.offset.reset": "earliest"})
consumer.subscribe([topic])
seen = 0
while seen < expected:
    message = consumer.poll(30.0)
    if message is None:
        break
    if message.error():
        raise SystemExit(str(message.error()))
    event = json.loads(message.value())
    print(json.dumps({"key": message.key().decode(), "event": event,
                      "timestamp": message.timestamp()[1]}))
    seen += 1
consumer.close()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_reads_the_events_the_service_produces() {
    let test = "python reads click events";
    let Some(kafka) = shortener_testkit::kafka::kafka(test) else {
        return;
    };
    let Some(python) = shortener_testkit::python::python(test, &["confluent-kafka==2.16.2"]) else {
        return;
    };
    let settings = toml_settings(&kafka.bootstrap(), "interop-clicks");
    shortener_kafka::topics::create(&settings)
        .await
        .expect("topics");
    let sink = KafkaSink::new(&settings, ProducerMeters::noop()).expect("producer");
    let mut sent = events(20);
    sent[0].referrer = Some("https://news.example/ünïcode".into());
    sent[0].user_agent = Some("Mozilla/5.0 \"quoted\" <tag>".into());
    sent[0].country = Some("DE".into());
    sink.publish(sent.clone()).await.expect("publish");
    sink.close().await;

    let output = std::process::Command::new(python)
        .args([
            "-c",
            PYTHON_READER,
            &settings.brokers,
            &settings.topic,
            "20",
        ])
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(read.len(), 20);
    for line in &read {
        let event = &line["event"];
        let id = event["id"].as_str().expect("id");
        let original = sent
            .iter()
            .find(|e| e.id.to_string() == id)
            .expect("an event that was sent");
        assert_eq!(line["key"], original.code.as_str());
        assert_eq!(event["v"], 1);
        assert_eq!(event["code"], original.code.as_str());
        assert_eq!(event["at_ms"], original.at_ms);
        assert_eq!(
            line["timestamp"], original.at_ms,
            "the message time is the click's"
        );
        assert_eq!(event["visitor"], original.visitor);
        assert_eq!(
            event["referrer"].as_str(),
            original.referrer.as_deref(),
            "{event}"
        );
        assert_eq!(event["user_agent"].as_str(), original.user_agent.as_deref());
        assert_eq!(event["country"].as_str(), original.country.as_deref());
    }
}
