//! The analytics consumer: click events from Kafka into the statistics the API serves,
//! exactly once, in a process of its own (scaled, deployed and restarted apart from the
//! service, which only produces). A peer of the service: both use the shared crates, and
//! neither depends on the other.
//!
//! ```text
//! analytics/src/
//! ├── main.rs       the binary: `analytics run | replay | topics create` (thin)
//! ├── run.rs        `run`: settings, store, admin listener, the consumer thread, shutdown
//! ├── replay.rs     `replay`: statistics rebuilt from the topic, then switched in
//! ├── consumer.rs   the loop: poll, decode, aggregate per partition, write with offsets
//! ├── health.rs     readiness: polling and writing, or why not
//! ├── admin.rs      GET /metrics and GET /readyz on `analytics.listen`
//! └── metrics.rs    every metric name
//! ```
//!
//! The pipeline and its guarantees: docs/clicks.md ("Through Kafka").

pub mod admin;
pub mod consumer;
pub mod health;
pub mod metrics;
pub mod replay;
pub mod run;

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
