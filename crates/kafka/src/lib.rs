//! Clicks through Apache Kafka, the parts both binaries share: the `[kafka]` settings,
//! the wire format of a click event, and (with the `client` feature, which builds
//! librdkafka) the service's producer sink and topic creation.
//!
//! ```text
//! crates/kafka/src/
//! ├── settings.rs   KafkaSettings: brokers, topics, the producer's batching and bounds
//! ├── wire.rs       one message per click: key = code, value = the event as JSON
//! ├── producer.rs   KafkaSink: the service's EventSink, never waits, counts every click
//! └── topics.rs     create the click and dead-letter topics, safe to run twice
//! ```

pub mod settings;
pub mod wire;

#[cfg(feature = "client")]
pub mod producer;
#[cfg(feature = "client")]
pub mod topics;

pub use settings::{Compression, KafkaSettings};
