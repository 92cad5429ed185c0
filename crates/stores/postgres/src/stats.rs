//! [`StatsStore`] on PostgreSQL: a batch is one transaction of five statements, however
//! many links it touches.
//!
//! Applying a batch (all in one transaction, so all of it or nothing):
//!
//! 1. claim the batch: `INSERT INTO stats_sources ... ON CONFLICT DO UPDATE ... WHERE
//!    seq < first`, moving the source's applied position to the batch's last. No row
//!    affected means the batch does not start past the position: roll back, and read
//!    the position to tell a replay (a no-op) from an overlap (refused);
//! 2. totals: one `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO UPDATE SET total =
//!    total + EXCLUDED.total`, additive, so concurrent writers need no read;
//! 3. days: a day row holds a sketch and top-N tables that SQL cannot add, so it is
//!    merged here: insert the missing rows empty (`ON CONFLICT DO NOTHING`), lock all of
//!    the batch's rows (`SELECT ... FOR UPDATE`), merge in Rust, and write them back
//!    with one `UPDATE ... FROM unnest(...)`. Inserting before locking is what keeps two
//!    instances that both see a new link-day from overwriting each other; taking the
//!    locks in key order is what keeps them from deadlocking.
//!
//! Arrays (`unnest`) instead of one statement per row: a batch of 10,000 link-days is
//! the same five round trips as a batch of one.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use shortener_core::aggregate::{Applies, BatchAggregate, Counts, DayAggregate};
use shortener_core::encoding;
use shortener_core::stats::{Footprint, LinkStats, StatsQuery, StatsStore, TableFootprint};
use shortener_core::{ShortCode, StoreError};

use super::{PostgresStore, backend, corrupt, counts_at};

// `seq` is the source's applied position. The conflicting row is locked whether or not
// the `WHERE` lets the update through, so the `APPLIED` read after a refused claim sees
// the position that refused it, and no other writer of the source can move it meanwhile.
const CLAIM: &str = "INSERT INTO stats_sources (source, seq) VALUES ($1, $2)
    ON CONFLICT (source) DO UPDATE SET seq = EXCLUDED.seq
    WHERE stats_sources.seq < $3";
const APPLIED: &str = "SELECT seq FROM stats_sources WHERE source = $1";
const ADD_TOTALS: &str = "INSERT INTO stats_totals (code, total, human, bot)
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])
    ON CONFLICT (code) DO UPDATE SET
        total = stats_totals.total + EXCLUDED.total,
        human = stats_totals.human + EXCLUDED.human,
        bot = stats_totals.bot + EXCLUDED.bot";
const INSERT_MISSING_DAYS: &str = "INSERT INTO stats_days (code, day, body)
    SELECT code, day, '\\x'::bytea FROM unnest($1::text[], $2::integer[]) AS k (code, day)
    ORDER BY code, day
    ON CONFLICT (code, day) DO NOTHING";
const LOCK_DAYS: &str = "SELECT d.code, d.day, d.body
    FROM stats_days d JOIN unnest($1::text[], $2::integer[]) AS k (code, day)
        ON d.code = k.code AND d.day = k.day
    ORDER BY d.code, d.day
    FOR UPDATE OF d";
const WRITE_DAYS: &str = "UPDATE stats_days d SET body = u.body
    FROM unnest($1::text[], $2::integer[], $3::bytea[]) AS u (code, day, body)
    WHERE d.code = u.code AND d.day = u.day";
const TOTALS: &str = "SELECT total, human, bot FROM stats_totals WHERE code = $1";
const RANGE: &str = "SELECT day, body FROM stats_days
    WHERE code = $1 AND day >= $2 AND day < $3
    ORDER BY day";
const FOOTPRINT: &str = "SELECT 'stats_totals', (SELECT count(*) FROM stats_totals),
        pg_total_relation_size('stats_totals')
    UNION ALL SELECT 'stats_days', (SELECT count(*) FROM stats_days),
        pg_total_relation_size('stats_days')
    UNION ALL SELECT 'stats_sources', (SELECT count(*) FROM stats_sources),
        pg_total_relation_size('stats_sources')";

#[async_trait]
impl StatsStore for PostgresStore {
    async fn apply(&self, batch: Arc<BatchAggregate>) -> Result<(), StoreError> {
        // A batch with a position and no clicks still moves the position.
        if batch.is_empty() && batch.id.is_none() {
            return Ok(());
        }
        let mut links: Vec<_> = batch.links.iter().collect();
        links.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut codes = Vec::with_capacity(links.len());
        let (mut total, mut human, mut bot) = (Vec::new(), Vec::new(), Vec::new());
        let (mut day_codes, mut days) = (Vec::new(), Vec::new());
        let mut deltas: HashMap<(&str, i32), &DayAggregate> = HashMap::new();
        for (code, link) in &links {
            let counts = link.total();
            codes.push(code.as_str());
            total.push(signed(counts.total)?);
            human.push(signed(counts.human)?);
            bot.push(signed(counts.bot)?);
            for (day, delta) in &link.days {
                let day = i32::try_from(*day).map_err(backend)?;
                day_codes.push(code.as_str());
                days.push(day);
                deltas.insert((code.as_str(), day), delta);
            }
        }

        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(backend)?;
        if let Some(id) = &batch.id {
            let claim = txn.prepare_cached(CLAIM).await.map_err(backend)?;
            self.sent(1);
            let (first, last) = (signed(id.first)?, signed(id.last)?);
            let claimed = txn
                .execute(&claim, &[&id.source, &last, &first])
                .await
                .map_err(backend)?;
            if claimed == 0 {
                // Refused: a replay, or a batch straddling the applied position. Dropping
                // the transaction rolls it back either way.
                let applied = txn.prepare_cached(APPLIED).await.map_err(backend)?;
                self.sent(1);
                let row = txn
                    .query_one(&applied, &[&id.source])
                    .await
                    .map_err(backend)?;
                let applied =
                    u64::try_from(row.try_get::<_, i64>(0).map_err(backend)?).map_err(backend)?;
                return match id.against(Some(applied)) {
                    Applies::Overlaps { applied } => Err(StoreError::Overlap {
                        id: id.clone(),
                        applied,
                    }),
                    Applies::AlreadyApplied => {
                        tracing::debug!(source = %id.source, last = id.last, "batch already applied");
                        Ok(())
                    }
                    // The claim only refuses a batch that does not start past the position.
                    Applies::Yes => Err(StoreError::backend(
                        "postgres: the source's position refused a batch past it",
                    )),
                };
            }
        }
        let add_totals = txn.prepare_cached(ADD_TOTALS).await.map_err(backend)?;
        let insert_missing = txn
            .prepare_cached(INSERT_MISSING_DAYS)
            .await
            .map_err(backend)?;
        let lock = txn.prepare_cached(LOCK_DAYS).await.map_err(backend)?;
        let write = txn.prepare_cached(WRITE_DAYS).await.map_err(backend)?;
        self.sent(3);
        txn.execute(&add_totals, &[&codes, &total, &human, &bot])
            .await
            .map_err(backend)?;
        txn.execute(&insert_missing, &[&day_codes, &days])
            .await
            .map_err(backend)?;
        let stored = txn
            .query(&lock, &[&day_codes, &days])
            .await
            .map_err(backend)?;
        let mut bodies = Vec::with_capacity(stored.len());
        let (mut write_codes, mut write_days) = (Vec::new(), Vec::new());
        for row in &stored {
            let (code, day, body): (&str, i32, &[u8]) = (row.get(0), row.get(1), row.get(2));
            let delta = deltas.get(&(code, day)).ok_or_else(|| {
                StoreError::backend(format!("locked a row not in the batch: {code} {day}"))
            })?;
            let merged = if body.is_empty() {
                encoding::encode_day(delta)
            } else {
                let mut day_aggregate = encoding::decode_day(body).map_err(|e| corrupt(code, e))?;
                day_aggregate.merge(delta);
                encoding::encode_day(&day_aggregate)
            };
            write_codes.push(code);
            write_days.push(day);
            bodies.push(merged);
        }
        self.sent(2);
        txn.execute(&write, &[&write_codes, &write_days, &bodies])
            .await
            .map_err(backend)?;
        txn.commit().await.map_err(backend)
    }

    async fn totals(&self, code: &ShortCode) -> Result<Counts, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(TOTALS).await.map_err(backend)?;
        self.sent(1);
        let row = client
            .query_opt(&statement, &[&code.as_str()])
            .await
            .map_err(backend)?;
        Ok(row.map_or_else(Counts::default, |row| counts_at(&row, 0)))
    }

    async fn link_stats(
        &self,
        code: &ShortCode,
        query: StatsQuery,
    ) -> Result<LinkStats, StoreError> {
        let (first, end) = query.days();
        let day = |d: i64| i32::try_from(d).map_err(backend);
        let (first, end) = (day(first)?, day(end)?);
        let client = self.client().await?;
        let statement = client.prepare_cached(RANGE).await.map_err(backend)?;
        self.sent(1);
        let rows = client
            .query(&statement, &[&code.as_str(), &first, &end])
            .await
            .map_err(backend)?;
        let days = rows
            .iter()
            .filter(|row| !row.get::<_, &[u8]>(1).is_empty())
            .map(|row| {
                let body: &[u8] = row.get(1);
                let aggregate =
                    encoding::decode_day(body).map_err(|e| corrupt(code.as_str(), e))?;
                Ok((i64::from(row.get::<_, i32>(0)), aggregate))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(LinkStats::summarize(days, &query))
    }

    async fn applied(&self, source: &str) -> Result<Option<u64>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(APPLIED).await.map_err(backend)?;
        self.sent(1);
        let row = client
            .query_opt(&statement, &[&source])
            .await
            .map_err(backend)?;
        row.map(|row| {
            let position: i64 = row.try_get(0).map_err(backend)?;
            u64::try_from(position).map_err(backend)
        })
        .transpose()
    }

    async fn footprint(&self) -> Result<Footprint, StoreError> {
        let client = self.client().await?;
        self.sent(1);
        let rows = client.query(FOOTPRINT, &[]).await.map_err(backend)?;
        Ok(Footprint {
            tables: rows
                .iter()
                .map(|row| TableFootprint {
                    name: row.get(0),
                    rows: row.get::<_, i64>(1).max(0) as u64,
                    bytes: row.get::<_, i64>(2).max(0) as u64,
                })
                .collect(),
        })
    }
}

fn signed(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(backend)
}
