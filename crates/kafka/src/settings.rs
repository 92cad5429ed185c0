//! `[kafka]`: where clicks go when `clicks.sink = "kafka"`, and how the producer batches
//! them. Read by the service (which produces) and the analytics consumer (which reads
//! the same topic), so both binaries agree on brokers and topics by construction.
//!
//! Every key, its default and its trade-off are in `config/default.toml`.

use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use serde::Deserialize;

/// `[kafka]`; see the module docs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// `bootstrap.servers`: comma-separated `host:port` of some of the cluster's brokers.
    pub brokers: String,
    /// The click events' topic.
    pub topic: String,
    /// Where the consumer puts messages it cannot decode, with the reason.
    pub dead_letter_topic: String,
    /// Partitions `analytics topics create` gives the click topic: the most consumers
    /// that can share the work.
    pub partitions: NonZeroU32,
    /// Copies of each partition `analytics topics create` asks for.
    pub replication: NonZeroU32,
    /// `linger.ms`: how long the producer waits to fill a batch before sending it.
    pub linger_ms: u64,
    /// `batch.size`: the most bytes of messages in one batch for a partition.
    pub batch_bytes: NonZeroU32,
    /// `compression.type`.
    pub compression: Compression,
    /// `queue.buffering.max.messages`: clicks the producer holds, sent or not yet
    /// acknowledged, before a new one is dropped.
    pub queue_max_messages: NonZeroU32,
    /// `message.timeout.ms`: how long a click may wait for the broker's acknowledgement
    /// (retries included) before it is counted as failed.
    pub delivery_timeout_ms: NonZeroU64,
    /// At shutdown, how long the producer may take to deliver what it holds.
    pub flush_timeout_ms: u64,
    /// `statistics.interval.ms`: how often librdkafka reports its requests, bytes and
    /// batch sizes (into the service's metrics); 0 turns the reports off.
    pub statistics_interval_ms: u64,
}

/// `compression.type`: what librdkafka can do without an external C library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
}

impl Compression {
    /// The value librdkafka expects.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
        }
    }
}

impl KafkaSettings {
    /// `flush_timeout_ms` as a duration.
    pub fn flush_timeout(&self) -> Duration {
        Duration::from_millis(self.flush_timeout_ms)
    }

    /// The producer's librdkafka properties: acknowledged by every in-sync replica
    /// (`acks=all`) and idempotent, so a retry after a lost acknowledgement is not a
    /// second copy; batching and bounds from the settings.
    pub fn producer_properties(&self) -> Vec<(&'static str, String)> {
        vec![
            ("bootstrap.servers", self.brokers.clone()),
            ("acks", "all".into()),
            ("enable.idempotence", "true".into()),
            ("linger.ms", self.linger_ms.to_string()),
            ("batch.size", self.batch_bytes.to_string()),
            ("compression.type", self.compression.as_str().into()),
            (
                "queue.buffering.max.messages",
                self.queue_max_messages.to_string(),
            ),
            ("message.timeout.ms", self.delivery_timeout_ms.to_string()),
            (
                "statistics.interval.ms",
                self.statistics_interval_ms.to_string(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_names_are_librdkafkas() {
        let parsed: Vec<Compression> =
            serde_json::from_str(r#"["none","snappy","lz4"]"#).expect("parse");
        let names: Vec<&str> = parsed.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, ["none", "snappy", "lz4"]);
        assert!(serde_json::from_str::<Compression>(r#""gzip""#).is_err());
    }
}
