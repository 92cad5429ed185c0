//! [`StatsStore`] for [`RedbStore`]: statistics in the same redb file as the links.
//!
//! Tables, keyed so that a link's range is one contiguous B-tree range:
//!
//! | table | key | value |
//! |---|---|---|
//! | `stats_totals_v2` | code | all-time counts ([`encoding::encode_totals`]) |
//! | `stats_days_v2` | (code, UTC day) | the link-day: counts, hours, visitors, top-N ([`encoding::encode_day`]) |
//! | `stats_sources_v1` | batch source | last batch `seq` applied from it |
//!
//! One row per link and day holds everything about that day, so applying a batch reads
//! and rewrites one small row per changed link-day plus one totals row per link: work in
//! proportion to what changed. Version 1 kept five rows per link-day, among them a
//! 2 KiB sketch and a JSON top-N document, all re-read and rewritten for every batch
//! that touched the link; [`migrate_v1`] converts such files when they are opened.
//!
//! A batch is applied in one write transaction, together with its source's `seq`: all
//! of its increments or none, and a batch whose `seq` was already applied is skipped,
//! so replaying one (after a failed or ambiguous commit) counts it once.

use std::sync::Arc;

use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};

use crate::{RedbStore, backend};
use shortener_core::aggregate::{Applies, BatchAggregate, BatchId, Counts, DayAggregate, HOUR_MS};
use shortener_core::click::DAY_MS;
use shortener_core::encoding::{self, DecodeError};
use shortener_core::stats::{Footprint, LinkStats, StatsQuery, StatsStore, TableFootprint};
use shortener_core::topk::TopK;
use shortener_core::visitors::VisitorSketch;
use shortener_core::{ShortCode, StoreError};

pub(super) const TOTALS: TableDefinition<&str, &[u8]> = TableDefinition::new("stats_totals_v2");
const DAYS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("stats_days_v2");
/// Per source, the last position applied (the `last` of its latest batch). Version 1
/// stored a per-process flush counter under the same meaning, so it carries over.
const SOURCES: TableDefinition<&str, u64> = TableDefinition::new("stats_sources_v1");

/// Decodes a totals row read from the store.
pub(super) fn decode_totals(code: &str, bytes: &[u8]) -> Result<Counts, StoreError> {
    encoding::decode_totals(bytes).map_err(|e| corrupt(code, e))
}

fn decode_day(code: &str, bytes: &[u8]) -> Result<DayAggregate, StoreError> {
    encoding::decode_day(bytes).map_err(|e| corrupt(code, e))
}

/// Creates the statistics tables (called once when the store opens) and migrates
/// version-1 tables if the file has them.
pub(super) fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(TOTALS).map_err(backend)?;
    txn.open_table(DAYS).map_err(backend)?;
    txn.open_table(SOURCES).map_err(backend)?;
    migrate_v1(txn)
}

/// Removes every statistics row of `code` (inside the caller's transaction).
pub(super) fn purge(txn: &redb::WriteTransaction, code: &str) -> Result<(), StoreError> {
    txn.open_table(TOTALS)
        .map_err(backend)?
        .remove(code)
        .map_err(backend)?;
    txn.open_table(DAYS)
        .map_err(backend)?
        .retain_in((code, i64::MIN)..=(code, i64::MAX), |_, _| false)
        .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl StatsStore for RedbStore {
    async fn apply(&self, batch: Arc<BatchAggregate>) -> Result<(), StoreError> {
        // A batch with a position and no clicks still moves the position.
        if batch.is_empty() && batch.id.is_none() {
            return Ok(());
        }
        self.run(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                if let Some(id) = &batch.id {
                    // The source's applied position moves in this transaction, with the
                    // increments: both commit, or neither.
                    let mut sources = txn.open_table(SOURCES).map_err(backend)?;
                    let applied = sources
                        .get(id.source.as_str())
                        .map_err(backend)?
                        .map(|position| position.value());
                    match id.against(applied) {
                        Applies::Yes => {}
                        Applies::AlreadyApplied => {
                            tracing::debug!(source = %id.source, last = id.last, "batch already applied");
                            return Ok(());
                        }
                        Applies::Overlaps { applied } => return Err(overlap(id, applied)),
                    }
                    sources
                        .insert(id.source.as_str(), id.last)
                        .map_err(backend)?;
                }
                let mut totals = txn.open_table(TOTALS).map_err(backend)?;
                let mut days = txn.open_table(DAYS).map_err(backend)?;
                // In key order: consecutive updates then land on the same or the next
                // B-tree pages (hot in the CPU cache and in redb's page cache), where
                // the map's order sent each one to a random page.
                let mut links: Vec<_> = batch.links.iter().collect();
                links.sort_unstable_by(|a, b| a.0.cmp(b.0));
                for (code, link) in links {
                    let code = code.as_str();
                    let mut total = match totals.get(code).map_err(backend)? {
                        Some(v) => decode_totals(code, v.value())?,
                        None => Counts::default(),
                    };
                    total.add(link.total());
                    totals
                        .insert(code, encoding::encode_totals(total).as_slice())
                        .map_err(backend)?;
                    for (day, delta) in &link.days {
                        let key = (code, *day);
                        let row = match days.get(key).map_err(backend)? {
                            Some(v) => {
                                let mut stored = decode_day(code, v.value())?;
                                stored.merge(delta);
                                encoding::encode_day(&stored)
                            }
                            None => encoding::encode_day(delta),
                        };
                        days.insert(key, row.as_slice()).map_err(backend)?;
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
            match totals.get(code.as_str()).map_err(backend)? {
                Some(v) => decode_totals(code.as_str(), v.value()),
                None => Ok(Counts::default()),
            }
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
            let table = txn.open_table(DAYS).map_err(backend)?;
            let (first_day, end_day) = query.days();
            let mut days = Vec::new();
            for row in table
                .range((code, first_day)..(code, end_day))
                .map_err(backend)?
            {
                let (key, value) = row.map_err(backend)?;
                days.push((key.value().1, decode_day(code, value.value())?));
            }
            Ok(LinkStats::summarize(days, &query))
        })
        .await
    }

    async fn applied(&self, source: &str) -> Result<Option<u64>, StoreError> {
        let source = source.to_owned();
        self.run(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let sources = txn.open_table(SOURCES).map_err(backend)?;
            let applied = sources.get(source.as_str()).map_err(backend)?;
            Ok(applied.map(|position| position.value()))
        })
        .await
    }

    async fn footprint(&self) -> Result<Footprint, StoreError> {
        self.run(|db| {
            let txn = db.begin_read().map_err(backend)?;
            let mut tables = Vec::new();
            let totals = txn.open_table(TOTALS).map_err(backend)?;
            tables.push(table_footprint(TOTALS.name(), &totals)?);
            let days = txn.open_table(DAYS).map_err(backend)?;
            tables.push(table_footprint(DAYS.name(), &days)?);
            let sources = txn.open_table(SOURCES).map_err(backend)?;
            tables.push(table_footprint(SOURCES.name(), &sources)?);
            Ok(Footprint { tables })
        })
        .await
    }
}

/// A table's rows and the bytes its B-tree occupies: keys and values, branch pages and
/// the unused space inside its pages (what the table costs on disk, short of free pages
/// not yet reclaimed by the file as a whole).
fn table_footprint(
    name: &str,
    table: &impl ReadableTableMetadata,
) -> Result<TableFootprint, StoreError> {
    let stats = table.stats().map_err(backend)?;
    Ok(TableFootprint {
        name: name.to_owned(),
        rows: table.len().map_err(backend)?,
        bytes: stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes(),
    })
}

impl RedbStore {
    /// Stores `value` as the statistics row of `code` on `day`, unchecked: how the
    /// contract suite makes a row that fails a batch half way. Not for anything else.
    #[doc(hidden)]
    pub async fn put_raw_day(&self, code: &str, day: i64, value: &[u8]) -> Result<(), StoreError> {
        let (code, value) = (code.to_owned(), value.to_vec());
        self.run(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            txn.open_table(DAYS)
                .map_err(backend)?
                .insert((code.as_str(), day), value.as_slice())
                .map_err(backend)?;
            txn.commit().map_err(backend)
        })
        .await
    }
}

/// The refusal of a batch that straddles its source's applied position.
fn overlap(id: &BatchId, applied: u64) -> StoreError {
    StoreError::Overlap {
        id: id.clone(),
        applied,
    }
}

fn corrupt(code: &str, error: DecodeError) -> StoreError {
    StoreError::Corrupt {
        code: code.to_owned(),
        reason: error.to_string(),
    }
}

/// The version-1 layout, kept only to migrate it.
mod v1 {
    use redb::TableDefinition;

    pub const TOTALS: TableDefinition<&str, [u8; 24]> = TableDefinition::new("stats_totals_v1");
    pub const HOURLY: TableDefinition<(&str, i64), [u8; 24]> =
        TableDefinition::new("stats_hourly_v1");
    pub const DAILY: TableDefinition<(&str, i64), [u8; 24]> =
        TableDefinition::new("stats_daily_v1");
    pub const VISITORS: TableDefinition<(&str, i64), &[u8]> =
        TableDefinition::new("stats_visitors_v1");
    pub const TOP: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("stats_top_v1");

    /// Three little-endian u64s: total, human, bot.
    pub fn counts(b: [u8; 24]) -> shortener_core::aggregate::Counts {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        shortener_core::aggregate::Counts {
            total: word(0),
            human: word(1),
            bot: word(2),
        }
    }
}

/// Rewrites version-1 statistics (five tables, dense sketches, JSON top-N) as version-2
/// rows and drops the old tables, inside the opening transaction: a crash mid-way leaves
/// the file as it was. Sketches stay dense (their exact hashes are long gone), so a
/// migrated day reads back exactly as before.
fn migrate_v1(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let present = txn
        .list_tables()
        .map_err(backend)?
        .any(|t| t.name() == v1::TOTALS.name());
    if !present {
        return Ok(());
    }
    let mut days: std::collections::BTreeMap<(String, i64), DayAggregate> = Default::default();
    {
        let daily = txn.open_table(v1::DAILY).map_err(backend)?;
        for row in daily.iter().map_err(backend)? {
            let (key, value) = row.map_err(backend)?;
            let (code, day) = key.value();
            days.entry((code.to_owned(), day)).or_default().counts = v1::counts(value.value());
        }
        let hourly = txn.open_table(v1::HOURLY).map_err(backend)?;
        for row in hourly.iter().map_err(backend)? {
            let (key, value) = row.map_err(backend)?;
            let (code, start) = key.value();
            let hour = (start.rem_euclid(DAY_MS) / HOUR_MS) as u8;
            let day = days
                .entry((code.to_owned(), start.div_euclid(DAY_MS)))
                .or_default();
            day.hours.push((hour, v1::counts(value.value())));
        }
        let visitors = txn.open_table(v1::VISITORS).map_err(backend)?;
        for row in visitors.iter().map_err(backend)? {
            let (key, value) = row.map_err(backend)?;
            let (code, day) = key.value();
            let registers = shortener_core::hll::HyperLogLog::from_bytes(value.value())
                .ok_or_else(|| corrupt(code, DecodeError::Invalid("version-1 visitor sketch")))?;
            days.entry((code.to_owned(), day)).or_default().visitors =
                VisitorSketch::Dense(registers);
        }
        let top = txn.open_table(v1::TOP).map_err(backend)?;
        for row in top.iter().map_err(backend)? {
            let (key, value) = row.map_err(backend)?;
            let (code, day) = key.value();
            let lists: Vec<Vec<(String, u64)>> = serde_json::from_slice(value.value())
                .map_err(|_| corrupt(code, DecodeError::Invalid("version-1 top-N")))?;
            let aggregate = days.entry((code.to_owned(), day)).or_default();
            for (table, list) in aggregate.top.iter_mut().zip(lists) {
                *table = TopK::from_entries(list.iter().map(|(k, v)| (k.as_str(), *v)));
            }
        }
        let mut new_days = txn.open_table(DAYS).map_err(backend)?;
        for ((code, day), mut aggregate) in days {
            // Hourly rows of v1 were keyed by hour start, so they come in order per day.
            aggregate.hours.sort_by_key(|(h, _)| *h);
            new_days
                .insert(
                    (code.as_str(), day),
                    encoding::encode_day(&aggregate).as_slice(),
                )
                .map_err(backend)?;
        }
        let old_totals = txn.open_table(v1::TOTALS).map_err(backend)?;
        let mut new_totals = txn.open_table(TOTALS).map_err(backend)?;
        for row in old_totals.iter().map_err(backend)? {
            let (key, value) = row.map_err(backend)?;
            let counts = encoding::encode_totals(v1::counts(value.value()));
            new_totals
                .insert(key.value(), counts.as_slice())
                .map_err(backend)?;
        }
    }
    txn.delete_table(v1::TOTALS).map_err(backend)?;
    txn.delete_table(v1::HOURLY).map_err(backend)?;
    txn.delete_table(v1::DAILY).map_err(backend)?;
    txn.delete_table(v1::VISITORS).map_err(backend)?;
    txn.delete_table(v1::TOP).map_err(backend)?;
    tracing::info!("statistics migrated from the version-1 tables");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shortener_core::aggregate::Dimension;
    use shortener_core::aggregate::{Aggregator, HOUR_MS};
    use shortener_core::click::{CLICK_EVENT_VERSION, ClickEvent};
    use shortener_core::stats::Granularity;

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
    async fn version_1_statistics_are_migrated_when_the_file_is_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.redb");
        let day = 20_000i64;
        let counts = |total: u64, human: u64| {
            let mut b = [0u8; 24];
            b[..8].copy_from_slice(&total.to_le_bytes());
            b[8..16].copy_from_slice(&human.to_le_bytes());
            b[16..].copy_from_slice(&(total - human).to_le_bytes());
            b
        };
        let mut sketch = shortener_core::hll::HyperLogLog::default();
        (0..500u64)
            .for_each(|i| sketch.insert(i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(7)));
        {
            let db = redb::Database::create(&path).expect("create");
            let txn = db.begin_write().expect("txn");
            {
                let start = day * DAY_MS;
                txn.open_table(v1::TOTALS)
                    .expect("t")
                    .insert("old", counts(7, 5))
                    .expect("insert");
                let mut hourly = txn.open_table(v1::HOURLY).expect("t");
                hourly
                    .insert(("old", start + 2 * HOUR_MS), counts(3, 3))
                    .expect("insert");
                hourly
                    .insert(("old", start + 23 * HOUR_MS), counts(4, 2))
                    .expect("insert");
                txn.open_table(v1::DAILY)
                    .expect("t")
                    .insert(("old", day), counts(7, 5))
                    .expect("insert");
                txn.open_table(v1::VISITORS)
                    .expect("t")
                    .insert(("old", day), sketch.as_bytes())
                    .expect("insert");
                let top = br#"[[["news.example",7]],[["NL",7]],[],[],[["desktop",5],["bot",2]]]"#;
                txn.open_table(v1::TOP)
                    .expect("t")
                    .insert(("old", day), top.as_slice())
                    .expect("insert");
            }
            txn.commit().expect("commit");
        }
        let store = RedbStore::open(&path).expect("open migrates");
        let code = ShortCode::parse("old").expect("code");
        assert_eq!(
            store.totals(&code).await.expect("totals"),
            Counts {
                total: 7,
                human: 5,
                bot: 2
            }
        );
        let hours =
            StatsQuery::new(day * DAY_MS, (day + 1) * DAY_MS, Granularity::Hour, 5).expect("query");
        let stats = store.link_stats(&code, hours).await.expect("stats");
        assert_eq!(
            stats
                .series
                .iter()
                .map(|(start, c)| (start - day * DAY_MS, c.total))
                .collect::<Vec<_>>(),
            vec![(2 * HOUR_MS, 3), (23 * HOUR_MS, 4)]
        );
        assert_eq!(
            stats.unique_visitors,
            sketch.estimate(),
            "the dense sketch is kept as it was"
        );
        let devices = &stats
            .top
            .iter()
            .find(|(d, _)| *d == Dimension::Device)
            .expect("device")
            .1;
        assert_eq!(
            devices,
            &vec![("desktop".to_owned(), 5), ("bot".to_owned(), 2)]
        );
        drop(store);
        // The old tables are gone, and opening again changes nothing.
        let store = RedbStore::open(&path).expect("reopen");
        assert_eq!(store.totals(&code).await.expect("totals").total, 7);
        let db_tables = store.footprint().await.expect("footprint");
        assert_eq!(
            db_tables
                .tables
                .iter()
                .find(|t| t.name == "stats_days_v2")
                .map(|t| t.rows),
            Some(1)
        );
    }

    #[tokio::test]
    async fn hourly_reads_return_only_the_hours_in_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(&dir.path().join("s.redb")).expect("open");
        let day0 = 20_000 * DAY_MS;
        // One click in each of 48 hours over two days.
        let events: Vec<_> = (0..48)
            .map(|i| click("abc", day0 + i * HOUR_MS + 1, i as u64, CHROME))
            .collect();
        store
            .apply(Arc::new(Aggregator::new().aggregate(&events)))
            .await
            .expect("apply");
        let code = ShortCode::parse("abc").expect("code");
        let query = StatsQuery::new(
            day0 + 20 * HOUR_MS,
            day0 + 26 * HOUR_MS,
            Granularity::Hour,
            3,
        )
        .expect("query");
        let stats = store.link_stats(&code, query).await.expect("stats");
        let starts: Vec<i64> = stats
            .series
            .iter()
            .map(|(s, _)| (s - day0) / HOUR_MS)
            .collect();
        assert_eq!(starts, vec![20, 21, 22, 23, 24, 25]);
        assert_eq!(stats.totals.total, 6);
        assert_eq!(
            stats.unique_visitors, 48,
            "uniques cover the days the range touches"
        );
    }
}
