//! [`StatsStore`] on CQL: exact statistics with no counters and no multi-partition
//! transactions (the model and its reasoning: migrations/0002_stats.cql, docs/scylla.md).
//!
//! A batch from source `S` covering positions `first..=last`, when `S` has committed
//! position `c`:
//! 1. `c` is read at SERIAL consistency and the batch judged by `BatchId::against` (a
//!    replay does nothing; a batch straddling `c` is refused).
//! 2. For each link-day and each link's totals, `S`'s row is read, its visible version
//!    taken as the base (`cur` if `cur_through <= c`, else `prev`), the delta merged in,
//!    and the row written back as `prev = base`, `cur = merged`, `cur_through = last`,
//!    by compare-and-set on `version`. All rows at once.
//! 3. `S`'s position moves from `c` to `last` by compare-and-set: the commit point.
//!    Until then readers see the rows' `prev`; a retry after a failure rebuilds the same
//!    rows from the same bases. If another writer committed first (the same batch from
//!    another handle, or a new owner of the partition), the batch is judged again
//!    against its position.
//!
//! A batch without an id (no position: tests and tools) writes the anonymous source
//! `""`, whose rows are always visible.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use scylla::client::session::Session;
use scylla::errors::ExecutionError;
use scylla::response::query_result::QueryResult;
use scylla::statement::prepared::PreparedStatement;
use shortener_core::aggregate::{Applies, BatchAggregate, Counts, DayAggregate};
use shortener_core::encoding;
use shortener_core::stats::{Footprint, LinkStats, StatsQuery, StatsStore, TableFootprint};
use shortener_core::{ShortCode, StoreError};

use crate::{Kind, ScyllaOptions, ScyllaStore, backend, corrupt};

/// Days per `stats_days` partition (the `month` column is `day.div_euclid(MONTH_DAYS)`).
pub const MONTH_DAYS: i64 = 32;

/// Compare-and-set attempts on one row before the batch fails (each failure means
/// another writer of the same source changed it meanwhile).
const CAS_ATTEMPTS: usize = 16;

pub(crate) struct StatsStatements {
    position: PreparedStatement,
    position_read: PreparedStatement,
    claim_new: PreparedStatement,
    claim_move: PreparedStatement,
    day_slice: PreparedStatement,
    day_insert: PreparedStatement,
    day_cas: PreparedStatement,
    totals_row: PreparedStatement,
    totals_insert: PreparedStatement,
    totals_cas: PreparedStatement,
    totals_all: PreparedStatement,
    range: PreparedStatement,
    month_add: PreparedStatement,
    months_of: PreparedStatement,
    delete_month: PreparedStatement,
    delete_totals: PreparedStatement,
    delete_months: PreparedStatement,
}

pub(crate) async fn prepare(
    session: &Session,
    options: &ScyllaOptions,
    serial_read: scylla::statement::Consistency,
) -> Result<StatsStatements, StoreError> {
    let statement = |cql, kind| crate::prepare(session, options, cql, kind);
    let mut position = statement(
        "SELECT seq FROM stats_sources WHERE source = ?",
        Kind::Idempotent,
    )
    .await?;
    position.set_consistency(serial_read);
    Ok(StatsStatements {
        position,
        position_read: statement("SELECT seq FROM stats_sources WHERE source = ?", Kind::Idempotent).await?,
        claim_new: statement(
            "INSERT INTO stats_sources (source, seq) VALUES (?, ?) IF NOT EXISTS", Kind::Lwt
        )
        .await?,
        claim_move: statement(
            "UPDATE stats_sources SET seq = ? WHERE source = ? IF seq = ?", Kind::Lwt
        )
        .await?,
        day_slice: statement(
            "SELECT source, prev, prev_through, cur, cur_through, version FROM stats_days
             WHERE code = ? AND month = ? AND day = ?", Kind::Idempotent
        )
        .await?,
        day_insert: statement(
            "INSERT INTO stats_days (code, month, day, source, prev, prev_through, cur, cur_through, version)
             VALUES (?, ?, ?, ?, 0x, -1, ?, ?, 1) IF NOT EXISTS", Kind::Lwt
        )
        .await?,
        day_cas: statement(
            "UPDATE stats_days SET prev = ?, prev_through = ?, cur = ?, cur_through = ?, version = ?
             WHERE code = ? AND month = ? AND day = ? AND source = ? IF version = ?", Kind::Lwt
        )
        .await?,
        totals_row: statement(
            "SELECT source, prev, prev_through, cur, cur_through, version FROM stats_totals
             WHERE code = ? AND source = ?", Kind::Idempotent
        )
        .await?,
        totals_insert: statement(
            "INSERT INTO stats_totals (code, source, prev, prev_through, cur, cur_through, version)
             VALUES (?, ?, 0x, -1, ?, ?, 1) IF NOT EXISTS", Kind::Lwt
        )
        .await?,
        totals_cas: statement(
            "UPDATE stats_totals SET prev = ?, prev_through = ?, cur = ?, cur_through = ?, version = ?
             WHERE code = ? AND source = ? IF version = ?", Kind::Lwt
        )
        .await?,
        totals_all: statement(
            "SELECT source, prev, prev_through, cur, cur_through, version FROM stats_totals WHERE code = ?", Kind::Idempotent
        )
        .await?,
        range: statement(
            "SELECT day, source, prev, prev_through, cur, cur_through FROM stats_days
             WHERE code = ? AND month = ? AND day >= ? AND day < ?", Kind::Idempotent
        )
        .await?,
        month_add: statement("INSERT INTO stats_months (code, month) VALUES (?, ?)", Kind::Idempotent).await?,
        months_of: statement("SELECT month FROM stats_months WHERE code = ?", Kind::Idempotent).await?,
        delete_month: statement("DELETE FROM stats_days WHERE code = ? AND month = ?", Kind::Idempotent).await?,
        delete_totals: statement("DELETE FROM stats_totals WHERE code = ?", Kind::Idempotent).await?,
        delete_months: statement("DELETE FROM stats_months WHERE code = ?", Kind::Idempotent).await?,
    })
}

/// One source's row: its two versions.
#[derive(Debug, Clone, Default)]
struct Versions {
    source: String,
    prev: Vec<u8>,
    prev_through: i64,
    cur: Vec<u8>,
    cur_through: i64,
    version: i64,
}

type VersionsRow = (
    String,
    Option<Vec<u8>>,
    Option<i64>,
    Option<Vec<u8>>,
    Option<i64>,
    Option<i64>,
);

impl Versions {
    fn from_row(row: VersionsRow) -> Self {
        let (source, prev, prev_through, cur, cur_through, version) = row;
        Self {
            source,
            prev: prev.unwrap_or_default(),
            prev_through: prev_through.unwrap_or(-1),
            cur: cur.unwrap_or_default(),
            cur_through: cur_through.unwrap_or(-1),
            version: version.unwrap_or(0),
        }
    }

    /// The version a reader (or the next writer) sees when the source has committed
    /// `committed`: `cur` if it is within it, else `prev`.
    fn visible(&self, committed: i64) -> (&[u8], i64) {
        if self.cur_through <= committed {
            (&self.cur, self.cur_through)
        } else {
            (&self.prev, self.prev_through)
        }
    }
}

/// The position a reader takes a source's rows at: the anonymous source's rows are
/// always visible; a source never committed shows nothing but `prev` (empty).
fn committed_of(source: &str, positions: &HashMap<String, Option<u64>>) -> i64 {
    if source.is_empty() {
        return i64::MAX;
    }
    positions
        .get(source)
        .copied()
        .flatten()
        .map_or(-1, |p| i64::try_from(p).unwrap_or(i64::MAX))
}

fn decode_day(code: &str, body: &[u8]) -> Result<Option<DayAggregate>, StoreError> {
    if body.is_empty() {
        return Ok(None);
    }
    encoding::decode_day(body)
        .map(Some)
        .map_err(|e| corrupt(code, e))
}

fn decode_counts(code: &str, body: &[u8]) -> Result<Counts, StoreError> {
    if body.is_empty() {
        return Ok(Counts::default());
    }
    encoding::decode_totals(body).map_err(|e| corrupt(code, e))
}

type Write<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;
type Read<'a> = Pin<Box<dyn Future<Output = Result<Option<Versions>, StoreError>> + Send + 'a>>;
type Answer<'a> = Pin<Box<dyn Future<Output = Result<QueryResult, ExecutionError>> + Send + 'a>>;

/// A compare-and-set of one source's row: `prev = base`, `cur = body`, and the version
/// moved on from `version` (if it is still that).
struct Rewrite {
    base: Vec<u8>,
    base_through: i64,
    body: Vec<u8>,
    version: i64,
}

/// Step 2 of the module docs for one row (a link-day's or a link's totals): `read`
/// gives the source's row, `merge` the new body from its visible version, then `insert`
/// writes a first row or `cas` replaces the one read. Read again and retried while
/// another writer of the same source changes the row in between; `what` names the row
/// in the error after [`CAS_ATTEMPTS`].
///
/// The steps are closures returning boxed `Send` futures rather than async closures:
/// the compiler cannot yet prove an async closure's future `Send` for every lifetime it
/// borrows with, which the batch's boxed writes need.
async fn rewrite<'a>(
    committed: i64,
    read: impl Fn() -> Read<'a>,
    merge: impl Fn(&[u8]) -> Result<Vec<u8>, StoreError>,
    insert: impl Fn(Vec<u8>) -> Answer<'a>,
    cas: impl Fn(Rewrite) -> Answer<'a>,
    what: impl Fn() -> String,
) -> Result<(), StoreError> {
    for _ in 0..CAS_ATTEMPTS {
        let mine = read().await?;
        let (base, base_through) = mine
            .as_ref()
            .map_or((&[][..], -1), |row| row.visible(committed));
        let body = merge(base)?;
        let result = match &mine {
            None => insert(body).await,
            Some(row) => {
                cas(Rewrite {
                    base: base.to_vec(),
                    base_through,
                    body,
                    version: row.version,
                })
                .await
            }
        };
        if crate::links::applied(result.map_err(backend)?)? {
            return Ok(());
        }
    }
    Err(StoreError::backend(format!(
        "{}: {CAS_ATTEMPTS} compare-and-sets lost to another writer of the source",
        what()
    )))
}

impl ScyllaStore {
    fn stats(&self) -> &StatsStatements {
        &self.stats
    }

    /// A source's committed position; `serial` settles any commit in flight.
    async fn position(&self, source: &str, serial: bool) -> Result<Option<u64>, StoreError> {
        let statement = if serial {
            &self.stats().position
        } else {
            &self.stats().position_read
        };
        let rows = self
            .session
            .execute_unpaged(statement, (source,))
            .await
            .map_err(backend)?
            .into_rows_result()
            .map_err(backend)?;
        let row: Option<(Option<i64>,)> = rows.maybe_first_row().map_err(backend)?;
        Ok(row
            .and_then(|(seq,)| seq)
            .map(|seq| u64::try_from(seq).unwrap_or(0)))
    }

    /// The positions of `sources` (plain reads, for readers).
    async fn positions(
        &self,
        sources: impl Iterator<Item = &str>,
    ) -> Result<HashMap<String, Option<u64>>, StoreError> {
        let mut positions = HashMap::new();
        for source in sources {
            if !source.is_empty() && !positions.contains_key(source) {
                positions.insert(source.to_owned(), self.position(source, false).await?);
            }
        }
        Ok(positions)
    }

    async fn write_day(
        &self,
        code: &str,
        day: i64,
        source: &str,
        committed: i64,
        last: i64,
        delta: &DayAggregate,
    ) -> Result<(), StoreError> {
        let s = self.stats();
        let month = i32::try_from(day.div_euclid(MONTH_DAYS)).map_err(backend)?;
        let day = i32::try_from(day).map_err(backend)?;
        self.session
            .execute_unpaged(&s.month_add, (code, month))
            .await
            .map_err(backend)?;
        let read = move || -> Read<'_> {
            Box::pin(async move {
                let rows = self
                    .session
                    .execute_unpaged(&s.day_slice, (code, month, day))
                    .await
                    .map_err(backend)?
                    .into_rows_result()
                    .map_err(backend)?;
                let mut mine = None;
                for row in rows.rows::<VersionsRow>().map_err(backend)? {
                    let row = Versions::from_row(row.map_err(|e| corrupt(code, e))?);
                    // Every source's row of the link-day must be readable: a bad one fails
                    // the batch here, as it would fail every read of the day.
                    decode_day(code, &row.cur)?;
                    decode_day(code, &row.prev)?;
                    if row.source == source {
                        mine = Some(row);
                    }
                }
                Ok(mine)
            })
        };
        let merge = |base: &[u8]| {
            let mut merged = decode_day(code, base)?.unwrap_or_default();
            merged.merge(delta);
            Ok(encoding::encode_day(&merged))
        };
        let insert = move |body| -> Answer<'_> {
            let values = (code, month, day, source, body, last);
            Box::pin(async move { self.session.execute_unpaged(&s.day_insert, values).await })
        };
        let cas = move |w: Rewrite| -> Answer<'_> {
            let values = (
                w.base,
                w.base_through,
                w.body,
                last,
                w.version + 1,
                code,
                month,
                day,
                source,
                w.version,
            );
            Box::pin(async move { self.session.execute_unpaged(&s.day_cas, values).await })
        };
        let what = || format!("stats of {code} day {day} from {source}");
        rewrite(committed, read, merge, insert, cas, what).await
    }

    async fn write_totals(
        &self,
        code: &str,
        source: &str,
        committed: i64,
        last: i64,
        delta: Counts,
    ) -> Result<(), StoreError> {
        let s = self.stats();
        let read = move || -> Read<'_> {
            Box::pin(async move {
                let rows = self
                    .session
                    .execute_unpaged(&s.totals_row, (code, source))
                    .await
                    .map_err(backend)?
                    .into_rows_result()
                    .map_err(backend)?;
                Ok(rows
                    .maybe_first_row::<VersionsRow>()
                    .map_err(|e| corrupt(code, e))?
                    .map(Versions::from_row))
            })
        };
        let merge = |base: &[u8]| {
            let mut counts = decode_counts(code, base)?;
            counts.add(delta);
            Ok(encoding::encode_totals(counts))
        };
        let insert = move |body| -> Answer<'_> {
            let values = (code, source, body, last);
            Box::pin(async move { self.session.execute_unpaged(&s.totals_insert, values).await })
        };
        let cas = move |w: Rewrite| -> Answer<'_> {
            let values = (
                w.base,
                w.base_through,
                w.body,
                last,
                w.version + 1,
                code,
                source,
                w.version,
            );
            Box::pin(async move { self.session.execute_unpaged(&s.totals_cas, values).await })
        };
        let what = || format!("totals of {code} from {source}");
        rewrite(committed, read, merge, insert, cas, what).await
    }

    /// Moves `source` from `from` to `to`; `false` if another writer moved it first.
    async fn commit(&self, source: &str, from: Option<u64>, to: u64) -> Result<bool, StoreError> {
        let s = self.stats();
        let to = i64::try_from(to).map_err(backend)?;
        let result = match from {
            None => {
                self.session
                    .execute_unpaged(&s.claim_new, (source, to))
                    .await
            }
            Some(from) => {
                let from = i64::try_from(from).map_err(backend)?;
                self.session
                    .execute_unpaged(&s.claim_move, (to, source, from))
                    .await
            }
        };
        crate::links::applied(result.map_err(backend)?)
    }

    /// Removes every statistics row of `code` (its link may be gone already).
    pub(crate) async fn delete_stats(&self, code: &str) -> Result<(), StoreError> {
        let s = self.stats();
        let rows = self
            .session
            .execute_unpaged(&s.months_of, (code,))
            .await
            .map_err(backend)?
            .into_rows_result()
            .map_err(backend)?;
        for month in rows.rows::<(i32,)>().map_err(backend)? {
            let (month,) = month.map_err(backend)?;
            self.session
                .execute_unpaged(&s.delete_month, (code, month))
                .await
                .map_err(backend)?;
        }
        self.session
            .execute_unpaged(&s.delete_totals, (code,))
            .await
            .map_err(backend)?;
        self.session
            .execute_unpaged(&s.delete_months, (code,))
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn count_rows(&self, table: &str) -> Result<u64, StoreError> {
        let rows = self
            .session
            .query_unpaged(format!("SELECT count(*) FROM {table}"), &[])
            .await
            .map_err(backend)?
            .into_rows_result()
            .map_err(backend)?;
        let (count,): (i64,) = rows.single_row().map_err(backend)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

#[async_trait]
impl StatsStore for ScyllaStore {
    async fn apply(&self, batch: Arc<BatchAggregate>) -> Result<(), StoreError> {
        if batch.is_empty() && batch.id.is_none() {
            return Ok(());
        }
        let (source, from, committed, last) = match &batch.id {
            Some(id) => {
                let from = self.position(&id.source, true).await?;
                match id.against(from) {
                    Applies::AlreadyApplied => return Ok(()),
                    Applies::Overlaps { applied } => {
                        return Err(StoreError::Overlap {
                            id: id.clone(),
                            applied,
                        });
                    }
                    Applies::Yes => {}
                }
                let committed = from.map_or(-1, |p| i64::try_from(p).unwrap_or(i64::MAX));
                let last = i64::try_from(id.last).map_err(backend)?;
                (id.source.as_str(), from, committed, last)
            }
            None => ("", None, i64::MAX, 0),
        };
        let mut writes: Vec<Write<'_>> = Vec::new();
        for (code, link) in &batch.links {
            let code = code.as_str();
            writes.push(Box::pin(self.write_totals(
                code,
                source,
                committed,
                last,
                link.total(),
            )));
            for (day, delta) in &link.days {
                writes.push(Box::pin(
                    self.write_day(code, *day, source, committed, last, delta),
                ));
            }
        }
        futures::future::try_join_all(writes).await?;
        let Some(id) = &batch.id else {
            return Ok(());
        };
        if self.commit(source, from, id.last).await? {
            return Ok(());
        }
        // Another writer committed first: judge the batch against where it left the source.
        match id.against(self.position(source, true).await?) {
            Applies::AlreadyApplied => Ok(()),
            Applies::Overlaps { applied } => Err(StoreError::Overlap {
                id: id.clone(),
                applied,
            }),
            Applies::Yes => Err(StoreError::backend(
                "scylla: the source's position moved during the batch and is behind it",
            )),
        }
    }

    async fn applied(&self, source: &str) -> Result<Option<u64>, StoreError> {
        self.position(source, true).await
    }

    async fn totals(&self, code: &ShortCode) -> Result<Counts, StoreError> {
        let rows = self
            .session
            .execute_unpaged(&self.stats().totals_all, (code.as_str(),))
            .await
            .map_err(backend)?
            .into_rows_result()
            .map_err(backend)?;
        let rows: Vec<Versions> = rows
            .rows::<VersionsRow>()
            .map_err(backend)?
            .map(|row| {
                row.map(Versions::from_row)
                    .map_err(|e| corrupt(code.as_str(), e))
            })
            .collect::<Result<_, _>>()?;
        let positions = self
            .positions(rows.iter().map(|r| r.source.as_str()))
            .await?;
        let mut total = Counts::default();
        for row in &rows {
            let (body, _) = row.visible(committed_of(&row.source, &positions));
            total.add(decode_counts(code.as_str(), body)?);
        }
        Ok(total)
    }

    async fn link_stats(
        &self,
        code: &ShortCode,
        query: StatsQuery,
    ) -> Result<LinkStats, StoreError> {
        let (first, end) = query.days();
        let mut by_day: BTreeMap<i64, DayAggregate> = BTreeMap::new();
        let mut rows = Vec::new();
        let (first_month, last_month) = (
            first.div_euclid(MONTH_DAYS),
            (end - 1).div_euclid(MONTH_DAYS),
        );
        for month in first_month..=last_month {
            let month = i32::try_from(month).map_err(backend)?;
            let (from, to) = (
                i32::try_from(first).map_err(backend)?,
                i32::try_from(end).map_err(backend)?,
            );
            let result = self
                .session
                .execute_unpaged(&self.stats().range, (code.as_str(), month, from, to))
                .await
                .map_err(backend)?
                .into_rows_result()
                .map_err(backend)?;
            type RangeRow = (
                i32,
                String,
                Option<Vec<u8>>,
                Option<i64>,
                Option<Vec<u8>>,
                Option<i64>,
            );
            for row in result.rows::<RangeRow>().map_err(backend)? {
                let (day, source, prev, prev_through, cur, cur_through) =
                    row.map_err(|e| corrupt(code.as_str(), e))?;
                rows.push((
                    i64::from(day),
                    Versions::from_row((source, prev, prev_through, cur, cur_through, None)),
                ));
            }
        }
        let positions = self
            .positions(rows.iter().map(|(_, r)| r.source.as_str()))
            .await?;
        for (day, row) in &rows {
            let (body, _) = row.visible(committed_of(&row.source, &positions));
            if let Some(aggregate) = decode_day(code.as_str(), body)? {
                by_day.entry(*day).or_default().merge(&aggregate);
            }
        }
        Ok(LinkStats::summarize(by_day, &query))
    }

    async fn footprint(&self) -> Result<Footprint, StoreError> {
        let mut tables = Vec::new();
        for table in [
            "stats_totals",
            "stats_days",
            "stats_sources",
            "stats_months",
        ] {
            tables.push(TableFootprint {
                name: table.to_owned(),
                rows: self.count_rows(table).await?,
                // CQL does not say; see docs/scylla.md for the partition arithmetic.
                bytes: 0,
            });
        }
        Ok(Footprint { tables })
    }
}
