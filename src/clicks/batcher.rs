//! The batcher: turns raw clicks into events and hands them to the sink in batches.
//!
//! A batch is flushed when it reaches `clicks.batch_max` events or when
//! `clicks.flush_interval_ms` has passed since the last flush, whichever comes first:
//! under load, batches are full and each store transaction carries many clicks; when
//! quiet, no click waits longer than the interval. On shutdown the queue is closed, then
//! drained, and everything still held is flushed before the task ends.
//!
//! **The plain version** is a loop around `rx.recv().await` with a
//! `tokio::time::interval` in a `select!`. **Why it is replaced:** the batcher *polls* the
//! queue every [`DRAIN_EVERY`] instead. A task waiting in `recv` is woken by every send,
//! and tokio runs a freshly woken task right after the current one: every redirect would
//! pay a task switch to move one click. Measured with `scripts/bench-redirect.sh`, that
//! cost more than all of the click's other processing together (throughput ratio 0.716
//! awaiting `recv`, 0.804 polling: docs/benchmarks.md). **The concept:** waking is not
//! free; when latency of a few milliseconds is acceptable, polling on a timer batches the
//! wake-ups as well as the work. A full batch still goes out within one drain tick.
//!
//! Each drain takes clicks off in chunks (`recv_many`), not one `try_recv` at a time:
//! tokio's bounded channel hands a slot back to the senders under a mutex, once per
//! receive call, so chunks make that once per chunk of up to 256 clicks.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use metrics::{Counter, Gauge, Histogram};
use shortener_core::click::{CLICK_EVENT_VERSION, ClickEvent, EventIds, VisitorHasher};
use shortener_core::report::Report;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::{EventSink, RawClick, now_ms};
use crate::metrics::{
    CLICK_AGGREGATION_LAG, CLICK_BATCH_SIZE, CLICK_BATCHES, CLICK_FLUSH_DURATION, CLICKS_DROPPED,
    CLICKS_RECORDED,
};

/// How often the queue is drained. The queue (`clicks.queue_capacity`) must hold this
/// much traffic: 5 ms at 120k redirects/s is 600 clicks, against a default of 65,536.
pub const DRAIN_EVERY: Duration = Duration::from_millis(5);

/// Clicks taken off the queue per receive call.
const DRAIN_CHUNK: usize = 256;

/// How the batcher behaves (from `[clicks]`).
#[derive(Debug, Clone)]
pub struct BatcherConfig {
    /// Flush at this many events.
    pub batch_max: usize,
    /// Flush at least this often when events are waiting.
    pub flush_interval: Duration,
    /// Key material for visitor hashes.
    pub visitor_secret: Vec<u8>,
}

struct Meters {
    recorded: Counter,
    dropped_sink: Counter,
    batches: Counter,
    batch_size: Histogram,
    flush_duration: Histogram,
    lag: Gauge,
}

/// Runs the batcher until `shutdown` resolves (or every recorder is gone), then drains
/// and flushes. Spawn it; await its handle during shutdown.
pub async fn run(
    mut rx: mpsc::Receiver<RawClick>,
    sink: Arc<dyn EventSink>,
    config: BatcherConfig,
    shutdown: impl Future<Output = ()>,
) {
    let mut batcher = Batcher {
        hasher: VisitorHasher::new(&config.visitor_secret),
        ids: EventIds::new(),
        last_flush: Instant::now(),
        batch: Vec::with_capacity(config.batch_max),
        meters: Meters {
            recorded: metrics::counter!(CLICKS_RECORDED),
            dropped_sink: metrics::counter!(CLICKS_DROPPED, "reason" => "sink_error"),
            batches: metrics::counter!(CLICK_BATCHES),
            batch_size: metrics::histogram!(CLICK_BATCH_SIZE),
            flush_duration: metrics::histogram!(CLICK_FLUSH_DURATION),
            lag: metrics::gauge!(CLICK_AGGREGATION_LAG),
        },
        sink,
        config,
    };
    let mut drain = tokio::time::interval(DRAIN_EVERY.min(batcher.config.flush_interval));
    drain.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut chunk = Vec::with_capacity(DRAIN_CHUNK);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            _ = drain.tick() => {}
        }
        // Everything queued right now. `Pending` means empty (or that this task used up
        // its cooperative budget: the rest waits for the next tick, nothing is lost).
        let recorders_gone = loop {
            // Never more than fits in the batch: while a flush is slow, clicks wait in
            // the bounded queue (and overflow is counted there), not in this chunk.
            let room = batcher.config.batch_max.saturating_sub(batcher.batch.len());
            match take_chunk(&mut rx, &mut chunk, room.clamp(1, DRAIN_CHUNK)) {
                Poll::Ready(0) => break true,
                Poll::Ready(taken) => {
                    batcher.meters.recorded.increment(taken as u64);
                    for raw in chunk.drain(..) {
                        batcher.accept(raw).await;
                    }
                }
                Poll::Pending => break false,
            }
        };
        if recorders_gone {
            break;
        }
        batcher.report_lag();
        if batcher.last_flush.elapsed() >= batcher.config.flush_interval {
            batcher.flush().await;
        }
    }
    // No new clicks from here on; whatever is queued is still flushed. `recv` (not
    // `try_recv`) also waits for sends that had already claimed a slot.
    rx.close();
    while let Some(raw) = rx.recv().await {
        batcher.meters.recorded.increment(1);
        batcher.accept(raw).await;
    }
    batcher.flush().await;
    batcher.sink.close().await;
    tracing::info!("click batcher drained and flushed");
}

/// Moves up to `limit` (> 0) queued clicks into `chunk`: `Ready(0)` once the queue is
/// closed and empty, `Pending` when it is empty. Polled with a waker that does nothing,
/// so a later send wakes nobody (see the module docs).
///
/// The plain version is `rx.recv_many(chunk, limit).await`. A `Pending` poll here leaves
/// a no-op waker in the channel, which is the point: the next send "wakes" nothing, and
/// the drain tick, not the send, decides when the batcher runs. Nothing is lost, since
/// `poll_recv_many` either moved clicks or took none.
fn take_chunk(
    rx: &mut mpsc::Receiver<RawClick>,
    chunk: &mut Vec<RawClick>,
    limit: usize,
) -> Poll<usize> {
    rx.poll_recv_many(&mut Context::from_waker(Waker::noop()), chunk, limit)
}

struct Batcher {
    hasher: VisitorHasher,
    ids: EventIds,
    /// When the last flush ran (the interval counts from it).
    last_flush: Instant,
    batch: Vec<ClickEvent>,
    meters: Meters,
    sink: Arc<dyn EventSink>,
    config: BatcherConfig,
}

impl Batcher {
    /// Takes one click off the queue; flushes if that fills the batch.
    async fn accept(&mut self, raw: RawClick) {
        self.push(raw);
        if self.batch.len() >= self.config.batch_max {
            self.flush().await;
        }
    }

    /// Enriches a raw click into a [`ClickEvent`] and queues it for the next flush.
    fn push(&mut self, raw: RawClick) {
        let user_agent = raw.user_agent.as_deref().unwrap_or_default();
        let event = ClickEvent {
            v: CLICK_EVENT_VERSION,
            id: self.ids.next(raw.at_ms),
            visitor: self
                .hasher
                .visitor(raw.at_ms, raw.client, user_agent.as_bytes()),
            code: raw.code,
            at_ms: raw.at_ms,
            referrer: raw.referrer,
            user_agent: raw.user_agent,
            country: raw.country.map(|c| c.as_str().to_owned()),
        };
        self.batch.push(event);
    }

    /// Now minus the oldest click still waiting (0 when nothing waits).
    fn report_lag(&self) {
        let lag_ms = self
            .batch
            .first()
            .map_or(0, |oldest| (now_ms() - oldest.at_ms).max(0));
        self.meters.lag.set(lag_ms as f64 / 1_000.0);
    }

    async fn flush(&mut self) {
        self.last_flush = Instant::now();
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(self.config.batch_max));
        let size = batch.len() as u64;
        let started = Instant::now();
        let result = self.sink.publish(batch).await;
        self.meters
            .flush_duration
            .record(started.elapsed().as_secs_f64());
        self.meters.batches.increment(1);
        self.meters.batch_size.record(size as f64);
        // On `Ok` the sink accounts for the clicks itself (`aggregated` once stored).
        if let Err(error) = result {
            self.meters.dropped_sink.increment(size);
            tracing::error!(error = %Report(&error), clicks = size, "click batch lost");
        }
        self.meters.lag.set(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clicks::SinkError;
    use async_trait::async_trait;
    use shortener_core::ShortCode;
    use std::sync::Mutex;

    #[derive(Default)]
    struct CollectingSink {
        batches: Mutex<Vec<Vec<ClickEvent>>>,
    }

    #[async_trait]
    impl EventSink for CollectingSink {
        async fn publish(&self, batch: Vec<ClickEvent>) -> Result<(), SinkError> {
            self.batches.lock().expect("lock").push(batch);
            Ok(())
        }

        async fn close(&self) {}
    }

    impl CollectingSink {
        fn sizes(&self) -> Vec<usize> {
            self.batches
                .lock()
                .expect("lock")
                .iter()
                .map(Vec::len)
                .collect()
        }
    }

    fn raw(code: &str) -> RawClick {
        RawClick {
            code: ShortCode::parse(code).expect("code"),
            at_ms: 1_763_790_000_000,
            client: "198.51.100.1".parse().expect("ip"),
            referrer: Some("https://ref.example/".into()),
            user_agent: Some("Mozilla/5.0".into()),
            country: shortener_core::click::parse_country(b"fr"),
        }
    }

    fn config(batch_max: usize) -> BatcherConfig {
        BatcherConfig {
            batch_max,
            flush_interval: Duration::from_secs(1),
            visitor_secret: b"test".to_vec(),
        }
    }

    /// Lets spawned tasks run until they block (paused clock: no real time passes).
    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_batch_is_flushed_when_the_interval_elapses() {
        let sink = Arc::new(CollectingSink::default());
        let (tx, rx) = mpsc::channel(100);
        let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(run(rx, sink.clone(), config(100), async {
            let _ = stopped.await;
        }));
        for _ in 0..3 {
            tx.send(raw("abc")).await.expect("send");
        }
        tokio::time::advance(DRAIN_EVERY * 2).await;
        settle().await;
        assert!(
            sink.sizes().is_empty(),
            "drained but not flushed before the interval"
        );
        tokio::time::advance(Duration::from_millis(1_000)).await;
        settle().await;
        assert_eq!(sink.sizes(), vec![3]);
        let event = &sink.batches.lock().expect("lock")[0][0];
        assert_eq!(
            (event.code.as_str(), event.country.as_deref()),
            ("abc", Some("FR"))
        );
        assert_eq!(event.referrer.as_deref(), Some("https://ref.example/"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_is_flushed_at_once() {
        let sink = Arc::new(CollectingSink::default());
        let (tx, rx) = mpsc::channel(100);
        let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(run(rx, sink.clone(), config(4), async {
            let _ = stopped.await;
        }));
        for _ in 0..9 {
            tx.send(raw("abc")).await.expect("send");
        }
        settle().await;
        assert_eq!(
            sink.sizes(),
            vec![4, 4],
            "two full batches without any time passing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_drains_the_queue_and_flushes_everything() {
        let sink = Arc::new(CollectingSink::default());
        let (tx, rx) = mpsc::channel(100);
        for _ in 0..7 {
            tx.send(raw("abc")).await.expect("send");
        }
        // Already stopped: the batcher must still flush what is queued.
        run(rx, sink.clone(), config(5), async {}).await;
        assert_eq!(sink.sizes().iter().sum::<usize>(), 7);
        assert!(
            tx.try_send(raw("abc")).is_err(),
            "the queue is closed after shutdown"
        );
    }

    #[test]
    fn uuids_are_time_ordered_v7() {
        let sink: Arc<dyn EventSink> = Arc::new(CollectingSink::default());
        let mut batcher = Batcher {
            hasher: VisitorHasher::new(b"k"),
            ids: EventIds::new(),
            last_flush: Instant::now(),
            batch: Vec::new(),
            meters: Meters {
                recorded: metrics::counter!("t"),
                dropped_sink: metrics::counter!("t"),
                batches: metrics::counter!("t"),
                batch_size: metrics::histogram!("t"),
                flush_duration: metrics::histogram!("t"),
                lag: metrics::gauge!("t"),
            },
            sink,
            config: config(10),
        };
        let mut early = raw("abc");
        early.at_ms -= 1_000;
        batcher.push(early);
        batcher.push(raw("abc"));
        let (a, b) = (&batcher.batch[0], &batcher.batch[1]);
        assert_eq!(a.id.get_version_num(), 7);
        assert!(a.id < b.id);
        assert_eq!(a.visitor, b.visitor, "same visitor on the same day");
    }
}
