//! [`StatsStore`] for [`RedbStore`]: statistics in the same redb file as the links.
//!
//! Tables, all keyed by `(code, bucket)` so a link's range is one contiguous B-tree range:
//!
//! | table | key | value |
//! |---|---|---|
//! | `stats_totals_v1` | code | all-time [`Counts`] |
//! | `stats_hourly_v1` | (code, hour start ms) | [`Counts`] |
//! | `stats_daily_v1` | (code, UTC day) | [`Counts`] |
//! | `stats_visitors_v1` | (code, UTC day) | HyperLogLog registers (2 KiB) |
//! | `stats_top_v1` | (code, UTC day) | JSON: per dimension, `[value, count]` pairs |
//!
//! A batch is applied in one write transaction: all of its increments or none.

use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{RedbStore, backend};
use crate::aggregate::{BatchAggregate, Counts, DayAggregate, Dimension};
use crate::click::DAY_MS;
use crate::hll::HyperLogLog;
use crate::stats::{Granularity, LinkStats, StatsQuery, StatsStore};
use crate::topk::TopK;
use crate::{ShortCode, StoreError};

pub(super) const TOTALS: TableDefinition<&str, [u8; 24]> = TableDefinition::new("stats_totals_v1");
const HOURLY: TableDefinition<(&str, i64), [u8; 24]> = TableDefinition::new("stats_hourly_v1");
const DAILY: TableDefinition<(&str, i64), [u8; 24]> = TableDefinition::new("stats_daily_v1");
const VISITORS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("stats_visitors_v1");
const TOP: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("stats_top_v1");

pub(super) fn encode_counts(c: Counts) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&c.total.to_le_bytes());
    out[8..16].copy_from_slice(&c.human.to_le_bytes());
    out[16..].copy_from_slice(&c.bot.to_le_bytes());
    out
}

pub(super) fn decode_counts(b: [u8; 24]) -> Counts {
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    Counts {
        total: word(0),
        human: word(1),
        bot: word(2),
    }
}

fn encode_top(top: &[TopK; 5]) -> Result<Vec<u8>, StoreError> {
    let lists: Vec<Vec<(&str, u64)>> = top.iter().map(|t| t.entries().collect()).collect();
    serde_json::to_vec(&lists).map_err(backend)
}

fn decode_top(bytes: &[u8]) -> Result<[TopK; 5], StoreError> {
    let lists: Vec<Vec<(String, u64)>> = serde_json::from_slice(bytes).map_err(backend)?;
    let mut top: [TopK; 5] = Default::default();
    for (table, list) in top.iter_mut().zip(lists) {
        *table = TopK::from_entries(list.iter().map(|(k, v)| (k.as_str(), *v)));
    }
    Ok(top)
}

/// Creates the statistics tables (called once when the store opens).
pub(super) fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(TOTALS).map_err(backend)?;
    txn.open_table(HOURLY).map_err(backend)?;
    txn.open_table(DAILY).map_err(backend)?;
    txn.open_table(VISITORS).map_err(backend)?;
    txn.open_table(TOP).map_err(backend)?;
    Ok(())
}

/// Removes every statistics row of `code` (inside the caller's transaction).
pub(super) fn purge(txn: &redb::WriteTransaction, code: &str) -> Result<(), StoreError> {
    txn.open_table(TOTALS)
        .map_err(backend)?
        .remove(code)
        .map_err(backend)?;
    let all = (code, i64::MIN)..=(code, i64::MAX);
    txn.open_table(HOURLY)
        .map_err(backend)?
        .retain_in(all.clone(), |_, _| false)
        .map_err(backend)?;
    txn.open_table(DAILY)
        .map_err(backend)?
        .retain_in(all.clone(), |_, _| false)
        .map_err(backend)?;
    txn.open_table(VISITORS)
        .map_err(backend)?
        .retain_in(all.clone(), |_, _| false)
        .map_err(backend)?;
    txn.open_table(TOP)
        .map_err(backend)?
        .retain_in(all, |_, _| false)
        .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl StatsStore for RedbStore {
    async fn apply(&self, batch: BatchAggregate) -> Result<(), StoreError> {
        if batch.links.is_empty() {
            return Ok(());
        }
        self.run(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut totals = txn.open_table(TOTALS).map_err(backend)?;
                let mut hourly = txn.open_table(HOURLY).map_err(backend)?;
                let mut daily = txn.open_table(DAILY).map_err(backend)?;
                let mut visitors = txn.open_table(VISITORS).map_err(backend)?;
                let mut top = txn.open_table(TOP).map_err(backend)?;
                for (code, link) in &batch.links {
                    let code = code.as_str();
                    let mut total = totals
                        .get(code)
                        .map_err(backend)?
                        .map(|v| decode_counts(v.value()))
                        .unwrap_or_default();
                    total.add(link.total);
                    totals.insert(code, encode_counts(total)).map_err(backend)?;
                    for (&hour, &counts) in &link.hours {
                        let mut sum = hourly
                            .get((code, hour))
                            .map_err(backend)?
                            .map(|v| decode_counts(v.value()))
                            .unwrap_or_default();
                        sum.add(counts);
                        hourly
                            .insert((code, hour), encode_counts(sum))
                            .map_err(backend)?;
                    }
                    for (&day, delta) in &link.days {
                        let mut stored = DayAggregate {
                            counts: daily
                                .get((code, day))
                                .map_err(backend)?
                                .map(|v| decode_counts(v.value()))
                                .unwrap_or_default(),
                            visitors: match visitors.get((code, day)).map_err(backend)? {
                                Some(v) => HyperLogLog::from_bytes(v.value())
                                    .ok_or_else(|| corrupt(code, "visitor sketch"))?,
                                None => HyperLogLog::default(),
                            },
                            top: match top.get((code, day)).map_err(backend)? {
                                Some(v) => decode_top(v.value())?,
                                None => Default::default(),
                            },
                        };
                        stored.merge(delta);
                        daily
                            .insert((code, day), encode_counts(stored.counts))
                            .map_err(backend)?;
                        visitors
                            .insert((code, day), stored.visitors.as_bytes())
                            .map_err(backend)?;
                        top.insert((code, day), encode_top(&stored.top)?.as_slice())
                            .map_err(backend)?;
                    }
                }
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn totals(&self, code: &ShortCode) -> Result<Counts, StoreError> {
        let code = code.clone();
        self.run(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let totals = txn.open_table(TOTALS).map_err(backend)?;
            Ok(totals
                .get(code.as_str())
                .map_err(backend)?
                .map(|v| decode_counts(v.value()))
                .unwrap_or_default())
        })
        .await
    }

    async fn link_stats(
        &self,
        code: &ShortCode,
        query: StatsQuery,
    ) -> Result<LinkStats, StoreError> {
        let code = code.clone();
        self.run(move |db| {
            let code = code.as_str();
            let txn = db.begin_read().map_err(backend)?;
            let mut stats = LinkStats::default();
            let series_table = match query.granularity {
                Granularity::Hour => txn.open_table(HOURLY).map_err(backend)?,
                Granularity::Day => txn.open_table(DAILY).map_err(backend)?,
            };
            let (from_key, to_key) = match query.granularity {
                Granularity::Hour => (query.from_ms, query.to_ms),
                Granularity::Day => (query.from_ms / DAY_MS, query.to_ms / DAY_MS),
            };
            for row in series_table
                .range((code, from_key)..(code, to_key))
                .map_err(backend)?
            {
                let (key, value) = row.map_err(backend)?;
                let counts = decode_counts(value.value());
                let start = match query.granularity {
                    Granularity::Hour => key.value().1,
                    Granularity::Day => key.value().1 * DAY_MS,
                };
                stats.totals.add(counts);
                stats.series.push((start, counts));
            }
            // Uniques and top-N exist per day: merge the days the range touches.
            let (first_day, end_day) = (
                query.from_ms.div_euclid(DAY_MS),
                (query.to_ms - 1).div_euclid(DAY_MS) + 1,
            );
            let visitors_table = txn.open_table(VISITORS).map_err(backend)?;
            let mut visitors = HyperLogLog::default();
            for row in visitors_table
                .range((code, first_day)..(code, end_day))
                .map_err(backend)?
            {
                let (_, value) = row.map_err(backend)?;
                visitors.merge(
                    &HyperLogLog::from_bytes(value.value())
                        .ok_or_else(|| corrupt(code, "visitor sketch"))?,
                );
            }
            stats.unique_visitors = visitors.estimate();
            let top_table = txn.open_table(TOP).map_err(backend)?;
            let mut top: [TopK; 5] = Default::default();
            for row in top_table
                .range((code, first_day)..(code, end_day))
                .map_err(backend)?
            {
                let (_, value) = row.map_err(backend)?;
                for (mine, day) in top.iter_mut().zip(decode_top(value.value())?.iter()) {
                    mine.merge(day);
                }
            }
            stats.top = Dimension::ALL
                .iter()
                .zip(top.iter())
                .map(|(&d, t)| (d, t.top(query.top_n)))
                .collect();
            Ok(stats)
        })
        .await
    }
}

fn corrupt(code: &str, what: &str) -> StoreError {
    StoreError::Corrupt {
        code: code.to_owned(),
        reason: format!("bad {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{Aggregator, HOUR_MS};
    use crate::click::{CLICK_EVENT_VERSION, ClickEvent};

    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

    fn click(code: &str, at_ms: i64, visitor: u64, ua: &str) -> ClickEvent {
        ClickEvent {
            v: CLICK_EVENT_VERSION,
            id: uuid::Uuid::now_v7(),
            code: ShortCode::parse(code).expect("valid code"),
            at_ms,
            referrer: Some("https://ref.example/".into()),
            user_agent: Some(ua.into()),
            country: Some("NL".into()),
            visitor: visitor.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29),
        }
    }

    #[tokio::test]
    async fn a_fresh_store_answers_reads_with_zeros() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(&dir.path().join("s.redb")).expect("open");
        let code = ShortCode::parse("never").expect("code");
        assert_eq!(
            store.totals(&code).await.expect("totals"),
            Counts::default()
        );
        let query = StatsQuery::new(0, DAY_MS, Granularity::Hour, 5).expect("query");
        let stats = store.link_stats(&code, query).await.expect("stats");
        assert_eq!(
            (stats.totals, stats.unique_visitors, stats.series.len()),
            (Counts::default(), 0, 0)
        );
    }

    #[tokio::test]
    async fn batches_accumulate_and_ranges_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(&dir.path().join("s.redb")).expect("open");
        let mut aggregator = Aggregator::new();
        let day0 = 20_000 * DAY_MS;
        let first: Vec<_> = (0..10)
            .map(|i| click("abc", day0 + i * HOUR_MS, i as u64, CHROME))
            .collect();
        let second: Vec<_> = (0..5)
            .map(|i| click("abc", day0 + DAY_MS + i, 100 + i as u64, "Twitterbot/1.0"))
            .collect();
        store
            .apply(aggregator.aggregate(&first))
            .await
            .expect("apply");
        store
            .apply(aggregator.aggregate(&second))
            .await
            .expect("apply");
        store
            .apply(aggregator.aggregate(&first[..2]))
            .await
            .expect("apply again");

        let code = ShortCode::parse("abc").expect("code");
        assert_eq!(
            store.totals(&code).await.expect("totals"),
            Counts {
                total: 17,
                human: 12,
                bot: 5
            }
        );

        let days = StatsQuery::new(day0, day0 + 2 * DAY_MS, Granularity::Day, 3).expect("query");
        let stats = store.link_stats(&code, days).await.expect("stats");
        assert_eq!(
            stats.totals,
            Counts {
                total: 17,
                human: 12,
                bot: 5
            }
        );
        assert_eq!(
            stats.series,
            vec![
                (
                    day0,
                    Counts {
                        total: 12,
                        human: 12,
                        bot: 0
                    }
                ),
                (
                    day0 + DAY_MS,
                    Counts {
                        total: 5,
                        human: 0,
                        bot: 5
                    }
                )
            ]
        );
        assert_eq!(stats.unique_visitors, 10, "re-applied visitors are not new");
        let countries = &stats
            .top
            .iter()
            .find(|(d, _)| *d == Dimension::Country)
            .expect("country")
            .1;
        assert_eq!(countries, &vec![("NL".to_owned(), 17)]);

        let hours = StatsQuery::new(day0, day0 + 3 * HOUR_MS, Granularity::Hour, 3).expect("query");
        let stats = store.link_stats(&code, hours).await.expect("stats");
        assert_eq!(stats.series.len(), 3);
        assert_eq!(
            stats.series[0],
            (
                day0,
                Counts {
                    total: 2,
                    human: 2,
                    bot: 0
                }
            )
        );
        assert_eq!(
            stats.totals.total, 5,
            "3 from the first batch + 2 re-applied"
        );

        let other = ShortCode::parse("other").expect("code");
        store
            .apply(aggregator.aggregate(&[click("other", day0, 1, CHROME)]))
            .await
            .expect("apply");
        crate::LinkStore::delete(&store, &other)
            .await
            .expect("delete purges stats");
        assert_eq!(
            store.totals(&code).await.expect("totals").total,
            17,
            "other links keep theirs"
        );
        assert_eq!(
            store.totals(&other).await.expect("totals"),
            Counts::default()
        );
        assert_eq!(
            store.link_stats(&other, days).await.expect("stats").series,
            vec![]
        );
    }
}
