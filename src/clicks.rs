//! The click pipeline, service side: record on the hot path, enrich and batch in the
//! background, hand batches to an [`EventSink`].
//!
//! ```text
//! redirect ──try_send──▶ bounded queue ──▶ batcher task ──batch──▶ EventSink
//!  (never waits;           (queue_capacity)   enrich: id, visitor,     (in process:
//!   full = dropped                            cap, country; flush at    aggregate +
//!   and counted)                              batch_max or interval)    StatsStore)
//! ```
//!
//! The redirect captures only what it already holds (the code's `Arc`, the peer address,
//! header values: reference-count bumps) plus a timestamp, so recording costs one channel
//! send. Everything that allocates or hashes happens in the batcher.
//!
//! Accounting (all in `crate::metrics`): every GET redirect is either recorded or dropped
//! with a reason; every recorded click is aggregated, dropped by a failing sink, or still
//! queued. After a flush, `redirects = recorded + dropped{queue_full,closed}` and
//! `recorded = aggregated + dropped{sink_error}`.

pub mod batcher;
pub mod client_ip;
pub mod sink;

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use metrics::Counter;
use shortener_core::ShortCode;
use tokio::sync::mpsc;

pub use sink::{AggregatingSink, EventSink, SinkError};

use crate::metrics::{CLICKS_DROPPED, REDIRECTS};

/// What the redirect knows about a click: cheap to build, enriched later.
#[derive(Debug)]
pub struct RawClick {
    /// The code followed (an `Arc` clone).
    pub code: ShortCode,
    /// Wall-clock time of the redirect, Unix ms.
    pub at_ms: i64,
    /// TCP peer address.
    pub peer: IpAddr,
    /// `X-Forwarded-For`, if present (resolved against trusted proxies later).
    pub forwarded_for: Option<HeaderValue>,
    /// `Referer`.
    pub referrer: Option<HeaderValue>,
    /// `User-Agent`.
    pub user_agent: Option<HeaderValue>,
    /// The configured country header.
    pub country: Option<HeaderValue>,
}

/// Counters resolved once. `recorded` is counted by the batcher as clicks leave the
/// queue (one atomic less per redirect, and the accounting identity then also checks that
/// the queue loses nothing).
struct Counters {
    redirects: Counter,
    dropped_queue_full: Counter,
    dropped_closed: Counter,
}

/// The hot-path handle: records clicks without ever waiting.
pub struct ClickRecorder {
    tx: mpsc::Sender<RawClick>,
    counters: Counters,
}

impl ClickRecorder {
    /// A recorder and the receiving end for the batcher, with room for `capacity` clicks.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<RawClick>) {
        let (tx, rx) = mpsc::channel(capacity);
        let counters = Counters {
            redirects: metrics::counter!(REDIRECTS),
            dropped_queue_full: metrics::counter!(CLICKS_DROPPED, "reason" => "queue_full"),
            dropped_closed: metrics::counter!(CLICKS_DROPPED, "reason" => "closed"),
        };
        (Self { tx, counters }, rx)
    }

    /// Records a click. `try_send`, not `send`: if analytics falls behind, we lose (and
    /// count) clicks rather than slowing down redirects.
    pub fn record(&self, click: RawClick) {
        self.counters.redirects.increment(1);
        match self.tx.try_send(click) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.dropped_queue_full.increment(1)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.counters.dropped_closed.increment(1),
        }
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
