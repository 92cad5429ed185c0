//! The storage contract for pre-computed click statistics.
//!
//! Statistics are written only by applying [`BatchAggregate`]s and read by bounded
//! queries over a link's hour or day buckets: reading stats never scans raw clicks, so
//! the cost of a query depends on the range asked for, not on how popular the link is.

use std::sync::Arc;

use async_trait::async_trait;

use crate::aggregate::{BatchAggregate, Counts, DayAggregate, Dimension, HOUR_MS};
use crate::click::DAY_MS;
use crate::topk::TopK;
use crate::visitors::VisitorSketch;
use crate::{ShortCode, StoreError};

/// Most buckets one query may cover: 93 days of hours, or 10 years of days.
pub const MAX_HOUR_BUCKETS: i64 = 24 * 93;
/// See [`MAX_HOUR_BUCKETS`].
pub const MAX_DAY_BUCKETS: i64 = 3_660;

/// Bucket size of a time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// One bucket per UTC hour.
    Hour,
    /// One bucket per UTC day.
    Day,
}

impl Granularity {
    /// Bucket length in milliseconds.
    pub fn bucket_ms(self) -> i64 {
        match self {
            Self::Hour => HOUR_MS,
            Self::Day => DAY_MS,
        }
    }

    /// The most buckets a query may span.
    pub fn max_buckets(self) -> i64 {
        match self {
            Self::Hour => MAX_HOUR_BUCKETS,
            Self::Day => MAX_DAY_BUCKETS,
        }
    }
}

/// A validated statistics query: `[from_ms, to_ms)` aligned outward to buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsQuery {
    /// First bucket start (inclusive), Unix ms.
    pub from_ms: i64,
    /// End (exclusive), Unix ms, on a bucket boundary.
    pub to_ms: i64,
    /// Bucket size.
    pub granularity: Granularity,
    /// Entries per top-N list.
    pub top_n: usize,
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// `from` is not before `to`.
    #[error("`from` must be before `to`")]
    EmptyRange,
    /// The range spans more buckets than allowed.
    #[error("range too long: at most {0} buckets at this granularity")]
    TooLong(i64),
}

impl StatsQuery {
    /// Aligns `[from_ms, to_ms)` outward to whole buckets and checks its length.
    pub fn new(
        from_ms: i64,
        to_ms: i64,
        granularity: Granularity,
        top_n: usize,
    ) -> Result<Self, QueryError> {
        if from_ms >= to_ms {
            return Err(QueryError::EmptyRange);
        }
        let size = granularity.bucket_ms();
        let from = from_ms.div_euclid(size) * size;
        let to = (to_ms - 1).div_euclid(size) * size + size;
        if (to - from) / size > granularity.max_buckets() {
            return Err(QueryError::TooLong(granularity.max_buckets()));
        }
        Ok(Self {
            from_ms: from,
            to_ms: to,
            granularity,
            top_n,
        })
    }
}

/// A link's statistics over a query range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Sum over the range.
    pub totals: Counts,
    /// Distinct human visitors on the UTC days the range touches (HyperLogLog estimate).
    pub unique_visitors: u64,
    /// Non-empty buckets, oldest first: (bucket start in Unix ms, counts).
    pub series: Vec<(i64, Counts)>,
    /// Top values per dimension over the days the range touches, largest first.
    pub top: Vec<(Dimension, Vec<(String, u64)>)>,
}

impl StatsQuery {
    /// The UTC day numbers whose rows the range touches, `[first, end)`: at most 93
    /// (hourly) or 3,660 (daily). Every backend reads exactly these rows.
    pub fn days(&self) -> (i64, i64) {
        (
            self.from_ms.div_euclid(DAY_MS),
            (self.to_ms - 1).div_euclid(DAY_MS) + 1,
        )
    }
}

impl LinkStats {
    /// Folds a link's stored days (ascending, as read for [`StatsQuery::days`]) into the
    /// answer to `query`. Shared by every backend: they differ in how they read the rows,
    /// not in what a row means.
    pub fn summarize(
        days: impl IntoIterator<Item = (i64, DayAggregate)>,
        query: &StatsQuery,
    ) -> Self {
        let mut stats = LinkStats::default();
        let mut visitors = VisitorSketch::default();
        let mut top: [TopK; 5] = Default::default();
        for (day, aggregate) in days {
            let day_start = day * DAY_MS;
            match query.granularity {
                Granularity::Day => {
                    stats.totals.add(aggregate.counts);
                    stats.series.push((day_start, aggregate.counts));
                }
                Granularity::Hour => {
                    for (hour, counts) in &aggregate.hours {
                        let start = day_start + i64::from(*hour) * HOUR_MS;
                        if (query.from_ms..query.to_ms).contains(&start) {
                            stats.totals.add(*counts);
                            stats.series.push((start, *counts));
                        }
                    }
                }
            }
            // Uniques and top-N exist per day: merge the days the range touches.
            visitors.merge(&aggregate.visitors);
            for (mine, theirs) in top.iter_mut().zip(aggregate.top.iter()) {
                mine.merge(theirs);
            }
        }
        stats.unique_visitors = visitors.estimate();
        stats.top = Dimension::ALL
            .iter()
            .zip(top.iter())
            .map(|(&d, t)| (d, t.top(query.top_n)))
            .collect();
        stats
    }
}

/// What a store's statistics occupy, table by table (the long-tail benchmark reports
/// bytes per click from it; `GET /storage` on the admin listener serves it).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Footprint {
    /// One entry per statistics table.
    pub tables: Vec<TableFootprint>,
}

impl Footprint {
    /// Bytes over all tables.
    pub fn bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.bytes).sum()
    }
}

/// One table's share of a [`Footprint`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableFootprint {
    /// The table's name in the backend.
    pub name: String,
    /// Rows it holds.
    pub rows: u64,
    /// Bytes it occupies, indexes and page overhead included.
    pub bytes: u64,
}

/// Durable statistics storage.
#[async_trait]
pub trait StatsStore: Send + Sync + 'static {
    /// Applies a batch, durably when it returns, and exactly once per batch id, whoever
    /// writes it and however often:
    ///
    /// - **One writer per source at a time, many sources at once.** Batches of different
    ///   sources (partitions) touching the same link-day both count.
    /// - **Applied position.** The store keeps, per source, the last position applied,
    ///   written together with the increments: a batch ending at or before it is a replay
    ///   and is skipped (`Ok`); one starting after it is applied and moves it; one that
    ///   straddles it is refused with [`StoreError::Overlap`], and nothing is written
    ///   ([`crate::aggregate::BatchId::against`]). A batch without an id applies
    ///   unconditionally.
    /// - **All or nothing per batch, as seen by a retry.** A write that fails half way
    ///   leaves the batch either not applied at all (redb and PostgreSQL: one
    ///   transaction) or applied in parts whose retry completes it without counting any
    ///   part twice (a store without multi-partition transactions: per-source partial
    ///   rows written as absolute values with the position; docs/storage.md). Either way,
    ///   retrying the same batch until it succeeds counts it once.
    ///
    /// Shared (`Arc`) so that a caller can retry without copying it.
    async fn apply(&self, batch: Arc<BatchAggregate>) -> Result<(), StoreError>;

    /// The last position applied from `source`, if any: where a writer that takes over a
    /// source (a partition after a rebalance) starts, so that its replay from an older
    /// committed offset counts once.
    async fn applied(&self, source: &str) -> Result<Option<u64>, StoreError>;

    /// All-time click totals of a link (zero if it was never clicked).
    async fn totals(&self, code: &ShortCode) -> Result<Counts, StoreError>;

    /// Statistics of a link over a range: one bounded read.
    async fn link_stats(
        &self,
        code: &ShortCode,
        query: StatsQuery,
    ) -> Result<LinkStats, StoreError>;

    /// The space statistics occupy (a full scan of table metadata: for operators and
    /// benchmarks, not for the request path).
    async fn footprint(&self) -> Result<Footprint, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_align_outward_to_buckets_and_are_bounded() {
        let q =
            StatsQuery::new(HOUR_MS + 5, 3 * HOUR_MS - 1, Granularity::Hour, 10).expect("valid");
        assert_eq!((q.from_ms, q.to_ms), (HOUR_MS, 3 * HOUR_MS));
        let q = StatsQuery::new(1, 2, Granularity::Day, 10).expect("valid");
        assert_eq!((q.from_ms, q.to_ms), (0, DAY_MS));
        assert_eq!(
            StatsQuery::new(5, 5, Granularity::Hour, 1),
            Err(QueryError::EmptyRange)
        );
        let too_long = StatsQuery::new(0, (MAX_HOUR_BUCKETS + 1) * HOUR_MS, Granularity::Hour, 1);
        assert_eq!(too_long, Err(QueryError::TooLong(MAX_HOUR_BUCKETS)));
        assert!(StatsQuery::new(0, MAX_HOUR_BUCKETS * HOUR_MS, Granularity::Hour, 1).is_ok());
    }
}
