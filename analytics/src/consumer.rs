//! The consumer: click events from Kafka, aggregated per partition, written to the
//! statistics store together with the offsets they came from.
//!
//! **Exactly-once effect.** Kafka delivers at least once: after a crash or a rebalance,
//! a partition is read again from some earlier offset. The consumer makes that harmless
//! by keeping its position where its results are: every write is one
//! [`StatsStore::apply`] of a partition's aggregates with the batch id
//! `(source = "<topic>/<partition>", first offset, last offset)`, and the store applies a
//! batch and records its last offset in one operation, skipping what it has already
//! applied (`BatchId::against`, the multi-writer contract in `shortener_core::stats`).
//! On assignment, a partition resumes from the offset after the one the store holds,
//! never from Kafka's committed offsets (committed too, for the lag tools, but never
//! trusted). So:
//!
//! - `kill -9` at any moment: what was aggregated and not written is read again, and
//!   counted once.
//! - A partition moving to another consumer: on revocation the old owner writes what it
//!   holds for it (or, if the store is down, drops it: the position was not written
//!   either); the new owner starts where the store's position ends.
//! - A zombie that lost its partition without noticing (a long stall) and then writes
//!   an overlapping batch is refused by the store (`StoreError::Overlap`); it drops what
//!   it holds for that partition and reads on from the store's position.
//!
//! **One thread.** librdkafka serves rebalance callbacks inside `poll`, so a consumer
//! that polls, aggregates and writes on one OS thread never sees a callback in the
//! middle of a write: the state is plain data behind an uncontended mutex. Store calls
//! are `block_on` on the runtime that owns the store's connections.
//!
//! **Poison.** A message that is not a click event goes to the dead-letter topic with
//! the reason in a header and is counted; its offset is consumed like any other, and
//! the dead-letter copy is flushed before the position that passes it is written.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use shortener_core::StoreError;
use shortener_core::aggregate::{Aggregator, BatchAggregate, BatchId, MemoLimits};
use shortener_core::click::ClickEvent;
use shortener_core::report::Report;
use shortener_core::stats::StatsStore;
use shortener_kafka::wire;
use tokio::runtime::Handle;

use crate::health::Health;
use crate::metrics::Meters;

/// What the consumer needs to know.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The click topic.
    pub topic: String,
    /// Where undecodable messages go.
    pub dead_letter_topic: String,
    /// The consumer group.
    pub group: String,
    /// `session.timeout.ms`: how long a consumer that stopped answering keeps its
    /// partitions before the group gives them to another.
    pub session_timeout: Duration,
    /// How often what is held is written.
    pub flush_interval: Duration,
    /// Link-days held per partition before a write is forced.
    pub max_pending_cells: usize,
    /// Memo sizes of the aggregator.
    pub memo: MemoLimits,
}

/// Why the consumer could not run.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The Kafka client could not be built or subscribe.
    #[error("kafka consumer")]
    Kafka(#[from] KafkaError),
    /// The brokers do not know the click topic.
    #[error("the topic {0} does not exist (create it with `analytics topics create`)")]
    NoTopic(String),
    /// A replay would start before what the topic still holds: retention deleted clicks
    /// that the statistics counted, so a rebuild would undercount.
    #[error(
        "partition {partition} starts at offset {low} but the replay needs offset {next}: the topic no longer holds every click the statistics count"
    )]
    Truncated {
        /// The partition.
        partition: i32,
        /// The offset the replay would read next.
        next: i64,
        /// The partition's first offset still held.
        low: i64,
    },
}

/// Events decoded and not yet aggregated are folded in at this many.
const AGGREGATE_EVERY: usize = 1_024;
/// The resolution (ms) of the click-to-stats delay: clicks are counted per slot of their
/// time, and a slot's delay is measured from its start.
const CLICK_TIME_SLOT_MS: i64 = 10;
/// How long one poll waits for a message.
const POLL: Duration = Duration::from_millis(100);
/// Longest pause between attempts to read a position from the store.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One assigned partition's state.
struct Partition {
    /// The store's name for this partition's position.
    source: String,
    /// Its number in the topic.
    partition: i32,
    /// Decoded, not yet aggregated.
    events: Vec<ClickEvent>,
    /// Aggregated, not yet written.
    pending: BatchAggregate,
    /// Offsets held (consumed, not yet written): first and last.
    first: Option<i64>,
    last: i64,
    /// Clicks held per 10 ms of their time, for the click-to-stats delay.
    click_times: BTreeMap<i64, u64>,
    /// Dead letters produced since the last write.
    dead_letters: bool,
}

impl Partition {
    fn new(topic: &str, partition: i32) -> Self {
        Self {
            source: source(topic, partition),
            partition,
            events: Vec::new(),
            pending: BatchAggregate::default(),
            first: None,
            last: -1,
            click_times: BTreeMap::new(),
            dead_letters: false,
        }
    }

    fn clear(&mut self) {
        self.events.clear();
        self.pending = BatchAggregate::default();
        self.first = None;
        self.click_times.clear();
        self.dead_letters = false;
    }
}

/// Everything the loop and the rebalance callbacks share (one thread; see module docs).
struct State {
    partitions: BTreeMap<i32, Partition>,
    aggregator: Aggregator,
}

/// The librdkafka context: rebalances, and librdkafka's log into `tracing`.
struct Context {
    state: Mutex<State>,
    config: ConsumerConfig,
    stats: Arc<dyn StatsStore>,
    runtime: Handle,
    /// Where undecodable messages go; `None` in a replay (the live consumers sent them).
    dead_letters: Option<ThreadedProducer<DefaultProducerContext>>,
    /// A replay's last offset per partition: what lies beyond is not read.
    targets: BTreeMap<i32, i64>,
    meters: Meters,
    health: Arc<Health>,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(facility = fac, "librdkafka: {log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(facility = fac, "librdkafka: {log_message}"),
            _ => tracing::debug!(facility = fac, "librdkafka: {log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Repeats while the brokers are down; the poll loop logs them once a minute.
        tracing::debug!(%error, "kafka consumer: {reason}");
    }

    /// librdkafka's periodic report (every [`LAG_EVERY`], served by `poll`): the lag per
    /// partition from the high watermark its fetches saw, with no request of its own.
    /// (Asking the broker for watermarks instead shares the connection with a fetch that
    /// waits up to `fetch.wait.max.ms`; the request times out and takes the fetch down.)
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.config.topic) else {
            return;
        };
        for partition in topic.partitions.values() {
            if partition.partition < 0 || !partition.desired || partition.hi_offset < 0 {
                continue;
            }
            let read = if partition.app_offset >= 0 {
                partition.app_offset
            } else {
                partition.committed_offset.max(0)
            };
            metrics::gauge!(crate::metrics::LAG, "partition" => partition.partition.to_string())
                .set((partition.hi_offset - read).max(0) as f64);
        }
    }
}

impl ConsumerContext for Context {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        self.meters.rebalances.increment(1);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                for partition in partition_numbers(tpl, &self.config.topic) {
                    let held = Partition::new(&self.config.topic, partition);
                    let next = self.position(&held.source);
                    let offset = match next {
                        Some(applied) => Offset::Offset(applied as i64 + 1),
                        None => Offset::Beginning,
                    };
                    if let Err(error) =
                        tpl.set_partition_offset(&self.config.topic, partition, offset)
                    {
                        tracing::error!(%error, partition, "cannot set a partition's start");
                    }
                    tracing::info!(
                        partition,
                        ?offset,
                        "partition assigned; resuming from the store's position"
                    );
                    self.state().partitions.insert(partition, held);
                }
                if let Err(error) = consumer.assign(tpl) {
                    tracing::error!(%error, "assigning partitions failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                for partition in partition_numbers(tpl, &self.config.topic) {
                    let taken = self.state().partitions.remove(&partition);
                    if let Some(mut held) = taken {
                        // Once: if the store is down the new owner reads it again.
                        if !self.write(&mut held, consumer) {
                            tracing::warn!(
                                partition,
                                "revoked with unwritten clicks; the new owner reads them again"
                            );
                        }
                    }
                    tracing::info!(partition, "partition revoked");
                }
                if let Err(error) = consumer.unassign() {
                    tracing::error!(%error, "unassigning partitions failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed; dropping the assignment");
                self.state().partitions.clear();
                let _ = consumer.unassign();
            }
        }
    }
}

fn partition_numbers(tpl: &TopicPartitionList, topic: &str) -> Vec<i32> {
    tpl.elements_for_topic(topic)
        .iter()
        .map(|e| e.partition())
        .collect()
}

/// The store's name for a partition's position.
pub fn source(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

impl Context {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last offset the store applied from `source`, asked until it answers: a
    /// partition must never start from a guess.
    fn position(&self, source: &str) -> Option<u64> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.runtime.block_on(self.stats.applied(source)) {
                Ok(applied) => return applied,
                Err(error) => {
                    self.health.write_failed();
                    tracing::warn!(error = %Report(&error), source, "cannot read a partition's position; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Writes what `held` holds with its offsets; clears it when written (or when the
    /// store says another writer got there first). Returns whether nothing is left held.
    fn write(&self, held: &mut Partition, consumer: &BaseConsumer<Self>) -> bool {
        let Some(batch) = self.prepare(held) else {
            return held.first.is_none();
        };
        let started = Instant::now();
        let result = self.runtime.block_on(self.stats.apply(batch.clone()));
        self.finish(held, batch, result, started.elapsed(), consumer)
    }

    /// The batch `held` is ready to write: its events aggregated, its dead letters
    /// delivered (a position never passes an undelivered dead letter), its id set from
    /// its offsets. `None` when nothing is held or the dead letters are not delivered.
    fn prepare(&self, held: &mut Partition) -> Option<Arc<BatchAggregate>> {
        let first = held.first?;
        if !held.events.is_empty() {
            let events = std::mem::take(&mut held.events);
            self.state()
                .aggregator
                .aggregate_into(&mut held.pending, &events);
        }
        if held.dead_letters
            && let Some(dead_letters) = &self.dead_letters
        {
            if let Err(error) = dead_letters.flush(Duration::from_secs(10)) {
                tracing::warn!(%error, "dead letters not yet delivered; the write waits");
                return None;
            }
            held.dead_letters = false;
        }
        let mut batch = std::mem::take(&mut held.pending);
        batch.id = Some(BatchId {
            source: held.source.clone(),
            first: first as u64,
            last: held.last as u64,
        });
        Some(Arc::new(batch))
    }

    /// What follows a write of `batch` (prepared from `held`): on success, the metrics,
    /// the informational commit and `held` cleared; on an overlap, `held` dropped and the
    /// partition read again from the store's position; on an error, the batch kept in
    /// `held` for the next attempt. Returns whether nothing is left held.
    fn finish(
        &self,
        held: &mut Partition,
        batch: Arc<BatchAggregate>,
        result: Result<(), StoreError>,
        elapsed: Duration,
        consumer: &BaseConsumer<Self>,
    ) -> bool {
        let elapsed = elapsed.as_secs_f64();
        let (events, cells) = (batch.events, batch.cells);
        match result {
            Ok(()) => {
                tracing::debug!(
                    partition = held.partition,
                    first = held.first,
                    last = held.last,
                    events,
                    cells,
                    seconds = elapsed,
                    "wrote a partition's aggregates with its offsets"
                );
                self.meters.write_ok.record(elapsed);
                self.meters.write_cells.record(cells as f64);
                self.meters.aggregated.increment(events);
                self.meters.writes.increment(1);
                let now_ms = crate::now_ms();
                for (slot, clicks) in &held.click_times {
                    let delay = (now_ms - slot * CLICK_TIME_SLOT_MS).max(0) as f64 / 1_000.0;
                    self.meters
                        .click_to_stats
                        .record_many(delay, *clicks as usize);
                }
                self.health.wrote();
                let mut committed = TopicPartitionList::new();
                // Informational only (lag tools read it); the store's position rules.
                if committed
                    .add_partition_offset(
                        &self.config.topic,
                        held.partition,
                        Offset::Offset(held.last + 1),
                    )
                    .is_ok()
                {
                    let _ = consumer.commit(&committed, CommitMode::Async);
                }
                held.clear();
                true
            }
            Err(StoreError::Overlap { applied, .. }) => {
                // Someone else wrote past our first offset: what we hold is theirs.
                let partition = held.partition;
                tracing::warn!(
                    partition,
                    applied,
                    "another consumer wrote this partition; dropping what we hold and reading on from the store's position"
                );
                self.meters.overlaps.increment(1);
                held.clear();
                self.rewind(consumer, partition, applied as i64 + 1);
                true
            }
            Err(error) => {
                self.meters.write_error.record(elapsed);
                self.health.write_failed();
                tracing::warn!(error = %Report(&error), source = held.source, "stats write failed; held for the next attempt");
                // Keep it: the same batch, merged with what comes next, is retried.
                held.pending = Arc::unwrap_or_clone(batch);
                held.pending.id = None;
                false
            }
        }
    }

    /// Moves `partition`'s reading position back to `offset`. A seek can be refused (a
    /// partition whose fetcher is being reset); then the whole assignment is given again
    /// with this partition at `offset` and the others where they are. Reading on from
    /// anywhere else would skip what lies between, so this does not give up.
    fn rewind(&self, consumer: &BaseConsumer<Self>, partition: i32, offset: i64) {
        let topic = &self.config.topic;
        let Err(error) = consumer.seek(
            topic,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(10),
        ) else {
            return;
        };
        tracing::warn!(%error, partition, offset, "seek refused; reassigning with the position");
        loop {
            let reassigned = consumer.position().and_then(|mut positions| {
                positions.set_partition_offset(topic, partition, Offset::Offset(offset))?;
                consumer.assign(&positions)
            });
            match reassigned {
                Ok(()) => return,
                Err(error) => {
                    tracing::error!(%error, partition, offset, "reassigning failed; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }

    /// Writes every partition that holds something, the partitions' transactions at
    /// once: a round of writes takes as long as the slowest, not the sum, which is what
    /// bounds the click-to-stats delay when the store is slow.
    fn write_all(&self, consumer: &BaseConsumer<Self>) {
        let held: Vec<Partition> = {
            let mut state = self.state();
            let numbers: Vec<i32> = state
                .partitions
                .iter()
                .filter(|(_, p)| p.first.is_some())
                .map(|(&n, _)| n)
                .collect();
            numbers
                .iter()
                .filter_map(|n| state.partitions.remove(n))
                .collect()
        };
        let mut prepared = Vec::with_capacity(held.len());
        let mut waiting = Vec::new();
        for mut partition in held {
            match self.prepare(&mut partition) {
                Some(batch) => prepared.push((partition, batch)),
                None => waiting.push(partition),
            }
        }
        let results = self.runtime.block_on(async {
            let writes = prepared.iter().map(|(_, batch)| async {
                let started = Instant::now();
                let result = self.stats.apply(batch.clone()).await;
                (result, started.elapsed())
            });
            futures::future::join_all(writes).await
        });
        for ((mut partition, batch), (result, elapsed)) in prepared.into_iter().zip(results) {
            self.finish(&mut partition, batch, result, elapsed, consumer);
            waiting.push(partition);
        }
        let mut state = self.state();
        for partition in waiting {
            state.partitions.insert(partition.partition, partition);
        }
    }
}

/// Consumes until `stop` is set, then writes what it holds and leaves the group.
/// Blocking: run it on a thread of its own.
pub fn run(
    config: ConsumerConfig,
    stats: Arc<dyn StatsStore>,
    runtime: Handle,
    meters: Meters,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
) -> Result<(), ConsumerError> {
    let dead_letters: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()?;
    let context = Context {
        state: Mutex::new(State {
            partitions: BTreeMap::new(),
            aggregator: Aggregator::with_limits(config.memo),
        }),
        config: config.clone(),
        stats,
        runtime,
        dead_letters: Some(dead_letters),
        targets: BTreeMap::new(),
        meters: meters.clone(),
        health: health.clone(),
    };
    let consumer = consumer(&config, &config.group, context)?;
    consumer.subscribe(&[&config.topic])?;
    tracing::info!(topic = config.topic, group = config.group, "consuming");
    let mut last_write = Instant::now();
    let mut last_poll_error = None;
    while !stop.load(Ordering::Acquire) {
        health.polled();
        if let Some(message) = consumer.poll(POLL) {
            match message {
                Ok(message) => take(&consumer, &message),
                Err(error) => {
                    meters.poll_errors.increment(1);
                    // Repeats every poll while the brokers are down: logged once a minute.
                    if last_poll_error
                        .is_none_or(|at: Instant| at.elapsed() >= Duration::from_secs(60))
                    {
                        tracing::warn!(%error, "kafka poll error (repeats are counted in analytics_poll_errors_total)");
                        last_poll_error = Some(Instant::now());
                    }
                }
            }
        }
        let full = consumer
            .context()
            .state()
            .partitions
            .values()
            .any(|p| p.pending.cells >= config.max_pending_cells);
        if full || last_write.elapsed() >= config.flush_interval {
            consumer.context().write_all(&consumer);
            last_write = Instant::now();
        }
    }
    tracing::info!("stopping: writing what is held, then leaving the group");
    consumer.context().write_all(&consumer);
    // Leaving revokes what is left (nothing held) before the group reassigns it.
    consumer.unsubscribe();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !consumer.context().state().partitions.is_empty() {
        consumer.poll(Duration::from_millis(50));
    }
    Ok(())
}

/// A consumer in `group` (no automatic commits or offset stores: positions are the
/// store's).
fn consumer(
    config: &ConsumerConfig,
    group: &str,
    context: Context,
) -> Result<BaseConsumer<Context>, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            config.session_timeout.as_millis().to_string(),
        )
        .set("statistics.interval.ms", LAG_EVERY.as_millis().to_string())
        .create_with_context(context)
}

/// The partitions of the click topic, from the brokers' metadata.
pub fn partitions(config: &ConsumerConfig) -> Result<Vec<i32>, ConsumerError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .create()?;
    let metadata = consumer.fetch_metadata(Some(&config.topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == config.topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(ConsumerError::NoTopic(config.topic.clone()));
    }
    Ok(partitions)
}

/// One pass of a replay: reads each partition in `targets` from `stats`' position up to
/// and including its target offset, aggregates, writes to `stats` with the offsets, and
/// returns when everything up to the targets is written (or `stop` is set). Undecodable
/// messages are skipped: the live consumers dead-lettered them. Blocking, like [`run`].
pub fn replay(
    config: &ConsumerConfig,
    stats: Arc<dyn StatsStore>,
    runtime: Handle,
    targets: &BTreeMap<i32, i64>,
    stop: &AtomicBool,
) -> Result<(), ConsumerError> {
    let context = Context {
        state: Mutex::new(State {
            partitions: BTreeMap::new(),
            aggregator: Aggregator::with_limits(config.memo),
        }),
        config: config.clone(),
        stats,
        runtime,
        dead_letters: None,
        targets: targets.clone(),
        meters: Meters::registered(),
        health: Arc::new(Health::default()),
    };
    let group = format!("{}-replay", config.group);
    let consumer = consumer(config, &group, context)?;
    let context = consumer.context();
    let mut assignment = TopicPartitionList::new();
    let mut remaining = Vec::new();
    for (&partition, &target) in targets {
        let held = Partition::new(&config.topic, partition);
        let next = context.position(&held.source).map_or(0, |a| a as i64 + 1);
        if next > target {
            continue;
        }
        let (low, _) =
            consumer.fetch_watermarks(&config.topic, partition, Duration::from_secs(10))?;
        if low > next {
            return Err(ConsumerError::Truncated {
                partition,
                next,
                low,
            });
        }
        assignment.add_partition_offset(&config.topic, partition, Offset::Offset(next))?;
        context.state().partitions.insert(partition, held);
        remaining.push(partition);
    }
    consumer.assign(&assignment)?;
    tracing::info!(
        partitions = remaining.len(),
        ?targets,
        "replaying up to the live positions"
    );
    let mut last_write = Instant::now();
    while !stop.load(Ordering::Acquire) {
        if let Some(Ok(message)) = consumer.poll(POLL) {
            take(&consumer, &message);
        }
        remaining.retain(|partition| {
            let state = context.state();
            state.partitions.get(partition).map_or(0, |held| held.last) < targets[partition]
        });
        let full = context
            .state()
            .partitions
            .values()
            .any(|p| p.pending.cells >= config.max_pending_cells);
        if remaining.is_empty() || full || last_write.elapsed() >= config.flush_interval {
            context.write_all(&consumer);
            last_write = Instant::now();
            let written = context
                .state()
                .partitions
                .values()
                .all(|p| p.first.is_none());
            if remaining.is_empty() && written {
                break;
            }
        }
    }
    Ok(())
}

/// How often librdkafka reports its statistics, and so the lag per partition.
const LAG_EVERY: Duration = Duration::from_secs(5);

/// One message: decoded into its partition's events, or sent to the dead-letter topic.
fn take(consumer: &BaseConsumer<Context>, message: &rdkafka::message::BorrowedMessage<'_>) {
    let context = consumer.context();
    let partition = message.partition();
    let offset = message.offset();
    context.meters.consumed.increment(1);
    let decoded = wire::decode(message.payload());
    let mut state = context.state();
    let State {
        partitions,
        aggregator,
    } = &mut *state;
    let Some(held) = partitions.get_mut(&partition) else {
        return;
    };
    if context
        .targets
        .get(&partition)
        .is_some_and(|&target| offset > target)
    {
        return;
    }
    match decoded {
        Ok(event) => {
            *held
                .click_times
                .entry(event.at_ms.div_euclid(CLICK_TIME_SLOT_MS))
                .or_default() += 1;
            held.events.push(event);
            if held.events.len() >= AGGREGATE_EVERY {
                let events = std::mem::take(&mut held.events);
                aggregator.aggregate_into(&mut held.pending, &events);
                context
                    .meters
                    .pending_clicks
                    .set(held.pending.events as f64);
            }
        }
        Err(error) if context.dead_letters.is_none() => {
            tracing::debug!(partition, offset, error = %Report(&error), "undecodable message skipped by the replay");
        }
        Err(error) => {
            context.meters.dead_letters.increment(1);
            tracing::warn!(partition, offset, error = %Report(&error), "undecodable message sent to the dead-letter topic");
            let reason = error.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "reason",
                    value: Some(reason.as_str()),
                })
                .insert(Header {
                    key: "source",
                    value: Some(held.source.as_str()),
                })
                .insert(Header {
                    key: "offset",
                    value: Some(offset.to_string().as_str()),
                });
            let mut record = BaseRecord::to(&context.config.dead_letter_topic).headers(headers);
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            if let Some(dead_letters) = &context.dead_letters
                && let Err((error, _)) = dead_letters.send::<[u8], [u8]>(record)
            {
                tracing::error!(%error, "a dead letter could not be queued");
            }
            held.dead_letters = true;
        }
    }
    held.first.get_or_insert(offset);
    held.last = offset;
}
