//! The service's Kafka sink: every click becomes one message on the click topic, handed
//! to librdkafka without waiting, and accounted for by librdkafka's delivery reports.
//!
//! **The redirect never waits for Kafka.** The batcher calls [`KafkaSink::publish`] with
//! a batch; each event is encoded and given to librdkafka's queue (bounded by
//! `kafka.queue_max_messages`). A full queue (the broker is down or slower than the
//! clicks) drops the click at once and counts it; nothing blocks. librdkafka batches the
//! queue per partition (`kafka.linger_ms`, `kafka.batch_bytes`), compresses, sends, and
//! retries; its own thread (a `ThreadedProducer`) serves the delivery reports.
//!
//! **Every click is accounted for**: handed over and then either delivered or failed,
//! each counted by the delivery report, or refused at hand-over and counted there:
//!
//! ```text
//! published = refused (queue_full | other) + delivered + failed (timeout | shutdown | error) + in flight
//! ```
//!
//! **Shutdown.** Dropping a librdkafka producer discards what it holds, so
//! [`KafkaSink::close`] flushes for at most `kafka.flush_timeout_ms`, then purges what is
//! left: those delivery reports arrive as failures with reason `shutdown`, so a click
//! that was redirected and not delivered is still counted, and the number is logged.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use metrics::{Counter, Gauge, Histogram};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use rdkafka::statistics::Statistics;
use shortener_core::click::ClickEvent;
use shortener_core::sink::{EventSink, SinkError};

use crate::settings::KafkaSettings;
use crate::wire;

/// What the producer counts, as handles the binary resolved under its own names.
#[derive(Clone)]
pub struct ProducerMeters {
    /// Clicks acknowledged by the broker.
    pub delivered: Counter,
    /// Clicks refused at hand-over because librdkafka's queue was full.
    pub refused_queue_full: Counter,
    /// Clicks refused at hand-over for another reason (too large, unknown topic).
    pub refused_other: Counter,
    /// Clicks not acknowledged within `kafka.delivery_timeout_ms`.
    pub failed_timeout: Counter,
    /// Clicks still held at shutdown after the flush deadline.
    pub failed_shutdown: Counter,
    /// Clicks the broker refused (not retriable, or out of retries).
    pub failed_error: Counter,
    /// From the click to the broker's acknowledgement (seconds).
    pub delivery_latency: Histogram,
    /// Clicks held by librdkafka, queued or awaiting acknowledgement.
    pub in_flight: Gauge,
    /// Produce requests sent to the brokers (librdkafka's statistics).
    pub produce_requests: Counter,
    /// Bytes sent to the brokers, requests of every kind (librdkafka's statistics).
    pub bytes_sent: Counter,
    /// Messages per batch sent, averaged over the last statistics interval.
    pub batch_messages: Gauge,
    /// Bytes per batch sent, averaged over the last statistics interval.
    pub batch_bytes: Gauge,
}

impl ProducerMeters {
    /// Handles that record nothing (for tests and tools).
    pub fn noop() -> Self {
        Self {
            delivered: Counter::noop(),
            refused_queue_full: Counter::noop(),
            refused_other: Counter::noop(),
            failed_timeout: Counter::noop(),
            failed_shutdown: Counter::noop(),
            failed_error: Counter::noop(),
            delivery_latency: Histogram::noop(),
            in_flight: Gauge::noop(),
            produce_requests: Counter::noop(),
            bytes_sent: Counter::noop(),
            batch_messages: Gauge::noop(),
            batch_bytes: Gauge::noop(),
        }
    }
}

/// The librdkafka context: turns delivery reports into counts, and librdkafka's log into
/// `tracing` events.
struct Reports {
    meters: ProducerMeters,
}

impl ClientContext for Reports {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(facility = fac, "librdkafka: {log_message}");
            }
            L::Warning => tracing::warn!(facility = fac, "librdkafka: {log_message}"),
            _ => tracing::debug!(facility = fac, "librdkafka: {log_message}"),
        }
    }

    /// librdkafka's periodic report (`kafka.statistics_interval_ms`), on its own thread:
    /// requests and bytes are running totals, batch sizes the interval's averages.
    fn stats(&self, statistics: Statistics) {
        let brokers = statistics.brokers.values();
        let produce: i64 = brokers.clone().filter_map(|b| b.req.get("Produce")).sum();
        self.meters
            .produce_requests
            .absolute(u64::try_from(produce).unwrap_or(0));
        self.meters
            .bytes_sent
            .absolute(brokers.map(|b| b.txbytes).sum());
        let (messages, bytes, batches) =
            statistics
                .topics
                .values()
                .fold((0, 0, 0), |(messages, bytes, batches), topic| {
                    (
                        messages + topic.batchcnt.sum,
                        bytes + topic.batchsize.sum,
                        batches + topic.batchcnt.cnt,
                    )
                });
        if batches > 0 {
            self.meters
                .batch_messages
                .set(messages as f64 / batches as f64);
            self.meters.batch_bytes.set(bytes as f64 / batches as f64);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Connection trouble is reported here, repeatedly while the broker is down; the
        // clicks wait in the queue meanwhile.
        tracing::warn!(%error, "kafka producer: {reason}");
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        self.meters.in_flight.decrement(1.0);
        match result {
            Ok(message) => {
                self.meters.delivered.increment(1);
                if let Some(at_ms) = message.timestamp().to_millis() {
                    let waited = now_ms().saturating_sub(at_ms).max(0);
                    self.meters.delivery_latency.record(waited as f64 / 1_000.0);
                }
            }
            Err((error, _)) => match error.rdkafka_error_code() {
                Some(RDKafkaErrorCode::MessageTimedOut) => self.meters.failed_timeout.increment(1),
                Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight) => {
                    self.meters.failed_shutdown.increment(1);
                }
                _ => {
                    self.meters.failed_error.increment(1);
                    tracing::warn!(%error, "a click was not delivered to kafka");
                }
            },
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Why the producer could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the kafka producer")]
pub struct ProducerError(#[source] KafkaError);

/// The Kafka sink; see the module docs.
pub struct KafkaSink {
    producer: Arc<ThreadedProducer<Reports>>,
    topic: Arc<str>,
    flush_timeout: Duration,
    meters: ProducerMeters,
}

impl KafkaSink {
    /// A producer for `settings`. Does not wait for the brokers: the service starts (and
    /// redirects) while Kafka is down, and clicks wait in the bounded queue meanwhile.
    pub fn new(settings: &KafkaSettings, meters: ProducerMeters) -> Result<Self, ProducerError> {
        let mut config = ClientConfig::new();
        for (key, value) in settings.producer_properties() {
            config.set(key, value);
        }
        let producer = config
            .create_with_context(Reports {
                meters: meters.clone(),
            })
            .map_err(ProducerError)?;
        Ok(Self {
            producer: Arc::new(producer),
            topic: settings.topic.as_str().into(),
            flush_timeout: settings.flush_timeout(),
            meters,
        })
    }
}

/// Hands every event of `batch` to librdkafka; never waits.
fn produce(
    producer: &ThreadedProducer<Reports>,
    topic: &str,
    meters: &ProducerMeters,
    batch: &[ClickEvent],
) {
    let mut value = Vec::with_capacity(256);
    for event in batch {
        value.clear();
        wire::encode(event, &mut value);
        let record = BaseRecord::to(topic)
            .key(wire::key(event))
            .payload(&value)
            .timestamp(event.at_ms);
        match producer.send(record) {
            // Decremented by its delivery report.
            Ok(()) => meters.in_flight.increment(1.0),
            Err((error, _)) => match error.rdkafka_error_code() {
                Some(RDKafkaErrorCode::QueueFull) => meters.refused_queue_full.increment(1),
                _ => {
                    meters.refused_other.increment(1);
                    tracing::warn!(%error, "a click was refused by the kafka producer");
                }
            },
        }
    }
}

#[async_trait]
impl EventSink for KafkaSink {
    async fn publish(&self, batch: Vec<ClickEvent>) -> Result<(), SinkError> {
        // Encoding a batch of thousands is CPU work: off the async workers, like the
        // in-process sink's aggregation.
        let (producer, topic, meters) = (
            self.producer.clone(),
            self.topic.clone(),
            self.meters.clone(),
        );
        tokio::task::spawn_blocking(move || produce(&producer, &topic, &meters, &batch))
            .await
            .map_err(|e| SinkError::Internal(Box::new(e)))
    }

    async fn close(&self) {
        let (producer, timeout) = (self.producer.clone(), self.flush_timeout);
        let left = tokio::task::spawn_blocking(move || {
            if producer.flush(timeout).is_err() {
                // What is left fails its delivery report with a purge error, counted
                // as `shutdown`; the flush serves those reports.
                producer.purge(PurgeConfig::default().queue().inflight());
                let _ = producer.flush(Duration::from_secs(5));
            }
            producer.in_flight_count()
        })
        .await
        .unwrap_or(-1);
        if left == 0 {
            tracing::info!("kafka producer flushed and stopped");
        } else {
            tracing::error!(
                left,
                "kafka producer stopped with clicks it could not account for"
            );
        }
    }
}
