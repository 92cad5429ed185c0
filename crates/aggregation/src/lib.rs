//! The aggregation engine's moving half for the in-process click sink: what runs around
//! the pure aggregation (`shortener_core::aggregate`) when clicks are aggregated inside
//! the service. The analytics consumer shares the pure half, not this one: its batch ids
//! are Kafka offsets per partition, so it writes with a loop of its own
//! (`analytics/src/consumer.rs`).
//!
//! The pure half folds events into per-link, per-day aggregates and sketches; this crate
//! holds what runs around it: [`AggregatingSink`]
//! aggregates each batch into statistics held in memory, and a writer task applies those
//! to the [`StatsStore`] every `flush_interval`, in one write, retrying a failed write
//! with the same batch id.
//!
//! Why aggregates wait in memory instead of going to the store batch by batch: a batch
//! of a long tail touches thousands of links, and a store write costs per link-day
//! touched (read the row, merge, write it back), not per click. Written per batch, a
//! link clicked in twenty batches a second was rewritten twenty times a second, and the
//! writes fell behind the redirects (40% of clicks dropped at 38k redirects/s, "The long
//! tail" in docs/benchmarks.md). Merged in memory first, each changed link-day is written
//! once per interval, so store work follows the number of distinct link-days, and the
//! publisher never waits for the store unless the store is behind for longer than the
//! memory bound (`max_pending_cells`) absorbs.
//!
//! ```text
//! publisher ──publish──▶ aggregate into pending ◀──take── writer: every interval, or
//!            (waits only   (blocking pool)                  when full: StatsStore::apply
//!             when full)
//! ```
//!
//! Accounting: a click is counted `aggregated` when the write holding it commits, or
//! `dropped` if its write is given up. A write that fails is retried with the same batch
//! id, which the store applies at most once, so a retry after an ambiguous failure
//! cannot double count. The metric handles come from the binary ([`Meters`]), which
//! names them: this crate knows what to count, not what it is called.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use metrics::{Counter, Gauge, Histogram};
use shortener_core::StoreError;
use shortener_core::aggregate::{Aggregator, BatchAggregate, BatchId, MemoLimits};
use shortener_core::click::ClickEvent;
use shortener_core::report::Report;
use shortener_core::sink::{EventSink, SinkError};
use shortener_core::stats::StatsStore;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// How the aggregating sink behaves (the service reads it from `[stats]`).
#[derive(Debug, Clone)]
pub struct AggregatingConfig {
    /// How often pending aggregates are written.
    pub flush_interval: Duration,
    /// Link-days held before a write is forced and, while one runs, publishers wait.
    pub max_pending_cells: usize,
    /// Memo sizes of the aggregator.
    pub memo: MemoLimits,
    /// The prefix of this sink's batch source (`<prefix>/<random>`, one per start): the
    /// name under which the store keeps its applied position.
    pub source_prefix: &'static str,
}

/// Longest pause between retries of a failing write.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(5);
/// Attempts at the final write during shutdown before its clicks are given up.
const CLOSE_ATTEMPTS: u32 = 3;

/// Aggregates in process, holds the result in memory, writes it to a [`StatsStore`].
pub struct AggregatingSink {
    shared: Arc<SinkState>,
    /// The runtime whose blocking pool runs the aggregations (the service's own; a
    /// parameter so that tests can choose).
    runtime: Handle,
    writer: Mutex<Option<JoinHandle<()>>>,
}

struct SinkState {
    /// Behind a mutex because it keeps memos across batches; only the batcher's
    /// `publish` uses it, so the lock is never contended.
    aggregator: Mutex<Aggregator>,
    /// What has been aggregated and not yet taken by the writer. Locked only on the
    /// blocking pool (while one batch is aggregated into it, or to swap it out), never
    /// on an async worker, except for the reads of its size in `publish`, which wait at
    /// most for one batch's aggregation.
    pending: Mutex<BatchAggregate>,
    /// Wakes the writer early (pending is full, or the sink is closing).
    wake_writer: Notify,
    /// Wakes publishers waiting for room (the writer took pending).
    taken: Notify,
    closing: AtomicBool,
    stats: Arc<dyn StatsStore>,
    config: AggregatingConfig,
    meters: Meters,
}

/// What the sink counts, as handles the binary resolved under its own metric names.
#[derive(Clone)]
pub struct Meters {
    /// Clicks whose statistics write committed.
    pub aggregated: Counter,
    /// Clicks whose write was given up.
    pub dropped: Counter,
    /// Publishes that waited because pending was full.
    pub backpressure: Counter,
    /// Clicks aggregated and not yet written.
    pub pending_clicks: Gauge,
    /// Link-days pending.
    pub pending_cells: Gauge,
    /// Duration of writes that succeeded (seconds).
    pub write_ok: Histogram,
    /// Duration of writes that failed (seconds).
    pub write_error: Histogram,
    /// Link-days per write.
    pub write_cells: Histogram,
}

impl Meters {
    /// Handles that record nothing (for tests and tools).
    pub fn noop() -> Self {
        Self {
            aggregated: Counter::noop(),
            dropped: Counter::noop(),
            backpressure: Counter::noop(),
            pending_clicks: Gauge::noop(),
            pending_cells: Gauge::noop(),
            write_ok: Histogram::noop(),
            write_error: Histogram::noop(),
            write_cells: Histogram::noop(),
        }
    }
}

impl AggregatingSink {
    /// A sink writing into `stats`, counting into `meters`; its writer task and
    /// aggregations run on `runtime`.
    pub fn start(
        stats: Arc<dyn StatsStore>,
        config: AggregatingConfig,
        meters: Meters,
        runtime: Handle,
    ) -> Self {
        let shared = Arc::new(SinkState {
            aggregator: Mutex::new(Aggregator::with_limits(config.memo)),
            pending: Mutex::new(BatchAggregate::default()),
            wake_writer: Notify::new(),
            taken: Notify::new(),
            closing: AtomicBool::new(false),
            stats,
            config,
            meters,
        });
        let writer = runtime.spawn(write_loop(shared.clone()));
        Self {
            shared,
            runtime,
            writer: Mutex::new(Some(writer)),
        }
    }
}

#[async_trait]
impl EventSink for AggregatingSink {
    async fn publish(&self, batch: Vec<ClickEvent>) -> Result<(), SinkError> {
        let shared = &self.shared;
        if shared.closing.load(Ordering::Acquire) {
            return Err(SinkError::Closed);
        }
        let max = shared.config.max_pending_cells;
        loop {
            // Registered before looking, so a take between the check and the await is
            // not missed.
            let room = shared.taken.notified();
            if shared.pending().cells < max {
                break;
            }
            // Full: the writer is still busy with the previous set. Waiting here stops
            // the batcher, and clicks wait in (or overflow from) the bounded queue.
            shared.meters.backpressure.increment(1);
            shared.wake_writer.notify_one();
            room.await;
        }
        // Aggregation is CPU work (~1 µs per event, benches/aggregate.rs), so it runs on
        // the blocking pool, straight into pending: merging a separate aggregate in on
        // the async worker stalled every connection of that worker for milliseconds per
        // batch (p99 15 ms in the long-tail benchmark). The events are freed there too.
        let shared = self.shared.clone();
        self.runtime
            .spawn_blocking(move || {
                let mut aggregator = shared
                    .aggregator
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let mut pending = shared.pending();
                aggregator.aggregate_into(&mut pending, &batch);
                shared.meters.pending_clicks.set(pending.events as f64);
                shared.meters.pending_cells.set(pending.cells as f64);
                if pending.cells >= shared.config.max_pending_cells {
                    shared.wake_writer.notify_one();
                }
            })
            .await
            .map_err(|e| SinkError::Internal(Box::new(e)))
    }

    async fn close(&self) {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.wake_writer.notify_one();
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer
            && let Err(error) = writer.await
        {
            tracing::error!(%error, "stats writer task failed");
        }
    }
}

impl SinkState {
    fn pending(&self) -> std::sync::MutexGuard<'_, BatchAggregate> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Swaps the pending aggregates out and lets waiting publishers in.
    fn take(&self) -> BatchAggregate {
        let batch = std::mem::take(&mut *self.pending());
        self.meters.pending_clicks.set(0.0);
        self.meters.pending_cells.set(0.0);
        self.taken.notify_waiters();
        batch
    }
}

/// The writer: every interval (or when woken), takes what is pending and writes it.
/// Ends after the write that follows `close`.
async fn write_loop(shared: Arc<SinkState>) {
    // One id source per sink: a random name, so sources of different processes (and
    // of restarts) never collide in the store's replay table.
    let source = format!(
        "{}/{}",
        shared.config.source_prefix,
        uuid::Uuid::now_v7().simple()
    );
    let mut seq = 0u64;
    let mut tick = tokio::time::interval(shared.config.flush_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.wake_writer.notified() => {}
        }
        // Read before the take: `close` is called after the last `publish` returned, so
        // once it is set, this take holds everything there will ever be.
        let closing = shared.closing.load(Ordering::Acquire);
        let mut batch = take(&shared).await;
        if !batch.is_empty() {
            seq += 1;
            batch.id = Some(BatchId::single(source.clone(), seq));
            write(&shared, batch).await;
        }
        if closing {
            tracing::info!("stats writer flushed and stopped");
            return;
        }
    }
}

/// [`SinkState::take`] on the blocking pool: the lock may be held by an aggregation.
async fn take(shared: &Arc<SinkState>) -> BatchAggregate {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || shared.take())
        .await
        .unwrap_or_default()
}

/// Applies one batch, retrying failures with the same id (applied at most once).
/// Corrupt rows do not heal, so their batch is given up at once; while closing, after
/// [`CLOSE_ATTEMPTS`]. Otherwise it is retried until the store takes it, while new
/// clicks pile up in pending (and then in the queue).
async fn write(shared: &SinkState, batch: BatchAggregate) {
    let (events, cells) = (batch.events, batch.cells);
    // Shared, not cloned, between attempts: a pending set can hold 100,000 link-days.
    let batch = Arc::new(batch);
    let mut backoff = Duration::from_millis(100);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let started = tokio::time::Instant::now();
        let result = shared.stats.apply(batch.clone()).await;
        let closing = shared.closing.load(Ordering::Acquire);
        let elapsed = started.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                shared.meters.write_ok.record(elapsed);
                shared.meters.write_cells.record(cells as f64);
                shared.meters.aggregated.increment(events);
                // Freeing 100,000 link-days takes milliseconds: not on an async worker.
                tokio::task::spawn_blocking(move || drop(batch));
                return;
            }
            Err(error) => {
                shared.meters.write_error.record(elapsed);
                // Errors a retry cannot cure end the batch; an overlap cannot happen with
                // one position per batch, but if it did, retrying would not change it.
                let give_up = matches!(
                    error,
                    StoreError::Corrupt { .. } | StoreError::Closed | StoreError::Overlap { .. }
                ) || (closing && attempts >= CLOSE_ATTEMPTS);
                if give_up {
                    shared.meters.dropped.increment(events);
                    tracing::error!(error = %Report(&error), clicks = events, "stats write given up; clicks lost");
                    return;
                }
                tracing::warn!(error = %Report(&error), clicks = events, attempts, "stats write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shortener_core::ShortCode;
    use shortener_core::aggregate::Counts;
    use shortener_core::click::CLICK_EVENT_VERSION;
    use shortener_core::stats::{Footprint, LinkStats, StatsQuery};
    use std::sync::atomic::AtomicUsize;

    /// Records every batch it is asked to apply; fails the first `fail` of them.
    #[derive(Default)]
    struct FlakyStats {
        fail: AtomicUsize,
        calls: Mutex<Vec<(Option<BatchId>, u64)>>,
    }

    #[async_trait]
    impl StatsStore for FlakyStats {
        async fn apply(&self, batch: Arc<BatchAggregate>) -> Result<(), StoreError> {
            self.calls
                .lock()
                .expect("lock")
                .push((batch.id.clone(), batch.events));
            let failing = self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            match failing {
                Ok(_) => Err(StoreError::backend("injected")),
                Err(_) => Ok(()),
            }
        }
        async fn totals(&self, _: &ShortCode) -> Result<Counts, StoreError> {
            Ok(Counts::default())
        }
        async fn applied(&self, _: &str) -> Result<Option<u64>, StoreError> {
            Ok(None)
        }
        async fn link_stats(&self, _: &ShortCode, _: StatsQuery) -> Result<LinkStats, StoreError> {
            Ok(LinkStats::default())
        }
        async fn footprint(&self) -> Result<Footprint, StoreError> {
            Ok(Footprint::default())
        }
    }

    fn events(code: &str, n: usize) -> Vec<ClickEvent> {
        (0..n)
            .map(|i| ClickEvent {
                v: CLICK_EVENT_VERSION,
                id: uuid::Uuid::now_v7(),
                code: ShortCode::parse(code).expect("code"),
                at_ms: 1_763_790_000_000 + i as i64,
                referrer: None,
                user_agent: Some("Mozilla/5.0 Firefox/121.0".into()),
                country: None,
                visitor: i as u64,
            })
            .collect()
    }

    fn sink(stats: Arc<FlakyStats>, max_pending_cells: usize) -> AggregatingSink {
        let config = AggregatingConfig {
            flush_interval: Duration::from_millis(10),
            max_pending_cells,
            memo: MemoLimits::default(),
            source_prefix: "test",
        };
        AggregatingSink::start(stats, config, Meters::noop(), Handle::current())
    }

    #[tokio::test]
    async fn a_failed_write_is_retried_with_the_same_batch_id() {
        let stats = Arc::new(FlakyStats::default());
        stats.fail.store(2, Ordering::SeqCst);
        let sink = sink(stats.clone(), 1_000);
        sink.publish(events("a", 5)).await.expect("publish");
        sink.publish(events("b", 3)).await.expect("publish");
        sink.close().await;
        let calls = stats.calls.lock().expect("lock").clone();
        // However the two batches were grouped into writes, every write was retried
        // until it succeeded, each retry under the id it first had.
        let mut delivered = 0;
        for (i, (id, events)) in calls.iter().enumerate() {
            let id = id.as_ref().expect("every write has an id");
            // The last attempt under an id is the one that succeeded.
            if calls
                .get(i + 1)
                .is_none_or(|(next, _)| next.as_ref() != Some(id))
            {
                delivered += events;
            }
        }
        assert_eq!(delivered, 8, "every click delivered once: {calls:?}");
        assert_eq!(calls[0].0, calls[1].0, "the first retry reuses the id");
        assert_eq!(calls[1].0, calls[2].0, "and so does the second");
        let seqs: Vec<u64> = calls
            .iter()
            .filter_map(|(id, _)| id.as_ref().map(|id| id.last))
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] <= w[1]),
            "ids never go back: {seqs:?}"
        );
    }

    #[tokio::test]
    async fn a_full_pending_set_makes_publish_wait_for_the_writer() {
        let stats = Arc::new(FlakyStats::default());
        // One link-day of room, and the store fails for a while: the writer holds the
        // first set (retrying), the second fills pending, the third must wait.
        stats.fail.store(3, Ordering::SeqCst);
        let sink = Arc::new(sink(stats.clone(), 1));
        sink.publish(events("a", 1)).await.expect("publish");
        // Let the writer take the first set.
        while stats.calls.lock().expect("lock").is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        sink.publish(events("b", 1)).await.expect("publish");
        let third = tokio::spawn({
            let sink = sink.clone();
            async move { sink.publish(events("c", 1)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "waits while the store is behind");
        // The retries succeed (100 + 200 + 400 ms of backoff), and it gets in.
        third.await.expect("join").expect("publish");
        sink.close().await;
        let delivered: u64 = {
            let calls = stats.calls.lock().expect("lock");
            let mut total = 0;
            for (i, (id, events)) in calls.iter().enumerate() {
                if calls.get(i + 1).is_none_or(|(next, _)| next != id) {
                    total += events;
                }
            }
            total
        };
        assert_eq!(delivered, 3);
    }
}
