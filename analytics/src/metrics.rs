//! Every metric the consumer exports, named once, and the handles the loop uses.

use metrics::{Counter, Gauge, Histogram};

/// Messages read from the click topic.
pub const CONSUMED: &str = "analytics_messages_consumed_total";
/// Messages sent to the dead-letter topic.
pub const DEAD_LETTERS: &str = "analytics_dead_letters_total";
/// Clicks whose statistics were written (with their offsets).
pub const AGGREGATED: &str = "analytics_clicks_aggregated_total";
/// Writes to the statistics store (one per partition batch).
pub const WRITES: &str = "analytics_writes_total";
/// Duration of writes, by `outcome` (`ok`, `error`).
pub const WRITE_DURATION: &str = "analytics_write_duration_seconds";
/// Link-days per write.
pub const WRITE_CELLS: &str = "analytics_write_cells";
/// From a click to its statistics being written.
pub const CLICK_TO_STATS: &str = "analytics_click_to_stats_seconds";
/// Rebalances seen (assignments and revocations).
pub const REBALANCES: &str = "analytics_rebalances_total";
/// Batches refused because another consumer had written past them.
pub const OVERLAPS: &str = "analytics_overlaps_total";
/// Errors returned by poll.
pub const POLL_ERRORS: &str = "analytics_poll_errors_total";
/// Clicks aggregated and not yet written (the last partition that aggregated).
pub const PENDING_CLICKS: &str = "analytics_pending_clicks";
/// Messages in a partition after the last one written, by `partition`.
pub const LAG: &str = "analytics_lag_messages";

/// The handles of the consumer loop.
#[derive(Clone)]
#[allow(missing_docs)]
pub struct Meters {
    pub consumed: Counter,
    pub dead_letters: Counter,
    pub aggregated: Counter,
    pub writes: Counter,
    pub write_ok: Histogram,
    pub write_error: Histogram,
    pub write_cells: Histogram,
    pub click_to_stats: Histogram,
    pub rebalances: Counter,
    pub overlaps: Counter,
    pub poll_errors: Counter,
    pub pending_clicks: Gauge,
}

impl Meters {
    /// Handles registered with the installed recorder.
    pub fn registered() -> Self {
        Self {
            consumed: metrics::counter!(CONSUMED),
            dead_letters: metrics::counter!(DEAD_LETTERS),
            aggregated: metrics::counter!(AGGREGATED),
            writes: metrics::counter!(WRITES),
            write_ok: metrics::histogram!(WRITE_DURATION, "outcome" => "ok"),
            write_error: metrics::histogram!(WRITE_DURATION, "outcome" => "error"),
            write_cells: metrics::histogram!(WRITE_CELLS),
            click_to_stats: metrics::histogram!(CLICK_TO_STATS),
            rebalances: metrics::counter!(REBALANCES),
            overlaps: metrics::counter!(OVERLAPS),
            poll_errors: metrics::counter!(POLL_ERRORS),
            pending_clicks: metrics::gauge!(PENDING_CLICKS),
        }
    }
}
