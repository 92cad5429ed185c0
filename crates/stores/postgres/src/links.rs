//! [`LinkStore`] on PostgreSQL: one statement per operation, each on the primary key.
//!
//! The queries (docs/postgres.md shows their plans):
//!
//! - insert-if-absent: `INSERT ... ON CONFLICT (code) DO NOTHING`; one row affected means
//!   this insert won. The unique index decides races between instances, so no lock or
//!   read-before-write is needed;
//! - batch insert (group commit): the same, for many rows in one statement, from arrays
//!   (`unnest`), sorted by code so that two instances' batches take their index locks in
//!   the same order and cannot deadlock; `RETURNING code` names the winners;
//! - click claim (`max_clicks`): `UPDATE ... SET clicks_used = clicks_used + 1 WHERE
//!   code = $1 AND clicks_used < max_clicks RETURNING clicks_used`: the row lock orders
//!   claims from every instance and the condition refuses the one past the limit;
//! - get: `SELECT ... WHERE code = $1` (primary-key lookup);
//! - delete: the link and its statistics in one transaction;
//! - list: links after a cursor in code order, `LEFT JOIN` their totals, `LIMIT`: one
//!   index range scan and one round trip for a page (keyset pagination, not `OFFSET`);
//!   one owner's links are a range of the `(owner, code)` index.

use async_trait::async_trait;
use shortener_core::report::Report;
use shortener_core::{
    ClickClaim, InsertOutcome, Link, LinkStore, ListPage, Owner, RedirectKind, ShortCode,
    StoreError, TargetUrl,
};
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::{PostgresStore, backend, corrupt, counts_at};

const INSERT: &str =
    "INSERT INTO links (code, target, created_at, expires_at, redirect, max_clicks, owner)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (code) DO NOTHING";
const INSERT_BATCH: &str =
    "INSERT INTO links (code, target, created_at, expires_at, redirect, max_clicks, owner)
    SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[],
        $5::smallint[], $6::bigint[], $7::text[])
    ON CONFLICT (code) DO NOTHING
    RETURNING code";
const GET: &str = "SELECT code, target, created_at, expires_at, redirect, max_clicks, owner
    FROM links WHERE code = $1";
/// Where [`GET`] has the owner.
const GET_OWNER: usize = 6;
const CLAIM_CLICK: &str = "UPDATE links SET clicks_used = clicks_used + 1
    WHERE code = $1 AND clicks_used < max_clicks
    RETURNING clicks_used";
const DELETE: &str = "DELETE FROM links WHERE code = $1";
const DELETE_TOTALS: &str = "DELETE FROM stats_totals WHERE code = $1";
const DELETE_DAYS: &str = "DELETE FROM stats_days WHERE code = $1";
// `t.code > $1` is implied by the join, but spelled out it bounds the totals' index scan
// too: without it the merge join read the totals from the first code on, 50,000 rows for
// a page of 100 in the middle of a million links (86 ms; 0.3 ms with it; docs/postgres.md).
const LIST: &str = "SELECT l.code, l.target, l.created_at, l.expires_at, l.redirect, l.max_clicks,
        coalesce(t.total, 0), coalesce(t.human, 0), coalesce(t.bot, 0), l.owner
    FROM links l LEFT JOIN stats_totals t ON t.code = l.code AND t.code > $1
    WHERE l.code > $1
    ORDER BY l.code
    LIMIT $2";
/// One owner's links: the same page, a range of the `(owner, code)` index.
const LIST_OWNED: &str = "SELECT l.code, l.target, l.created_at, l.expires_at, l.redirect,
        l.max_clicks, coalesce(t.total, 0), coalesce(t.human, 0), coalesce(t.bot, 0), l.owner
    FROM links l LEFT JOIN stats_totals t ON t.code = l.code AND t.code > $1
    WHERE l.owner = $3 AND l.code > $1
    ORDER BY l.code
    LIMIT $2";
/// Where [`LIST`] has the owner.
const LIST_OWNER: usize = 9;

#[async_trait]
impl LinkStore for PostgresStore {
    async fn insert_if_absent(&self, link: &Link) -> Result<InsertOutcome, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(INSERT).await.map_err(backend)?;
        let max_clicks = link
            .max_clicks
            .map(i64::try_from)
            .transpose()
            .map_err(backend)?;
        self.sent(1);
        let inserted = client
            .execute(
                &statement,
                &[
                    &link.code.as_str(),
                    &link.target.as_str(),
                    &millis(link.created_at),
                    &link.expires_at.map(millis),
                    &(link.redirect.status() as i16),
                    &max_clicks,
                    &link.owner.as_ref().map(Owner::as_str),
                ],
            )
            .await
            .map_err(backend)?;
        Ok(if inserted == 1 {
            InsertOutcome::Inserted
        } else {
            InsertOutcome::AlreadyExists
        })
    }

    async fn insert_batch(&self, links: &[Link]) -> Vec<Result<InsertOutcome, StoreError>> {
        // One statement: its outcome, or its error, is every link's.
        match self.insert_group(links).await {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
            Err(error) => vec![Err(error); links.len()],
        }
    }

    async fn get(&self, code: &ShortCode) -> Result<Option<Link>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(GET).await.map_err(backend)?;
        self.sent(1);
        let row = client
            .query_opt(&statement, &[&code.as_str()])
            .await
            .map_err(backend)?;
        row.map(|row| decode(&row, GET_OWNER)).transpose()
    }

    fn keeps_click_budgets(&self) -> bool {
        true
    }

    async fn claim_click(&self, code: &ShortCode) -> Result<ClickClaim, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(CLAIM_CLICK).await.map_err(backend)?;
        self.sent(1);
        let row = client
            .query_opt(&statement, &[&code.as_str()])
            .await
            .map_err(backend)?;
        Ok(match row {
            Some(row) => ClickClaim::Claimed {
                used_before: u64::try_from(row.get::<_, i64>(0) - 1).unwrap_or(0),
            },
            None => ClickClaim::Exhausted,
        })
    }

    async fn delete(&self, code: &ShortCode) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(backend)?;
        let mut existed = false;
        for (i, sql) in [DELETE, DELETE_TOTALS, DELETE_DAYS].into_iter().enumerate() {
            let statement = txn.prepare_cached(sql).await.map_err(backend)?;
            self.sent(1);
            let rows = txn
                .execute(&statement, &[&code.as_str()])
                .await
                .map_err(backend)?;
            existed |= i == 0 && rows == 1;
        }
        txn.commit().await.map_err(backend)?;
        Ok(existed)
    }

    async fn list(
        &self,
        after: Option<ShortCode>,
        limit: usize,
        owner: Option<&Owner>,
    ) -> Result<ListPage, StoreError> {
        let client = self.client().await?;
        let sql = if owner.is_some() { LIST_OWNED } else { LIST };
        let statement = client.prepare_cached(sql).await.map_err(backend)?;
        let mut after = after.map_or_else(String::new, |code| code.as_str().to_owned());
        let mut page = ListPage::default();
        // One query per page, unless rows were skipped: then the next rows fill it.
        while page.links.len() < limit {
            let wanted = limit - page.links.len();
            self.sent(1);
            let wanted_rows = i64::try_from(wanted).unwrap_or(i64::MAX);
            let rows = match owner {
                Some(owner) => {
                    client
                        .query(&statement, &[&after, &wanted_rows, &owner.as_str()])
                        .await
                }
                None => client.query(&statement, &[&after, &wanted_rows]).await,
            }
            .map_err(backend)?;
            for row in &rows {
                match decode(row, LIST_OWNER) {
                    Ok(link) => page.links.push((link, counts_at(row, 6))),
                    Err(corrupt) => page.skipped.push(corrupt),
                }
            }
            match rows.last() {
                Some(last) if rows.len() == wanted => after = column(last, 0, "")?,
                _ => break,
            }
        }
        Ok(page)
    }

    /// Readiness: a connection, and a server that takes writes (a standby in recovery
    /// answers reads but would fail every create).
    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        self.sent(1);
        let row = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(backend)?;
        if row.get::<_, bool>(0) {
            return Err(StoreError::backend(
                "postgres: the server is a standby in recovery and takes no writes",
            ));
        }
        Ok(())
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.close_pool();
        Ok(())
    }
}

impl PostgresStore {
    /// The group of `links` in one multi-row `INSERT`: each link's outcome, or the
    /// statement's error. See [`LinkStore::insert_batch`].
    async fn insert_group(&self, links: &[Link]) -> Result<Vec<InsertOutcome>, StoreError> {
        // The first link of each code is sent, in code order; later ones lose at once.
        let mut sent: Vec<usize> = (0..links.len()).collect();
        sent.sort_by(|&a, &b| links[a].code.cmp(&links[b].code).then(a.cmp(&b)));
        sent.dedup_by(|later, first| links[*later].code == links[*first].code);
        if sent.is_empty() {
            return Ok(Vec::new());
        }
        let codes: Vec<&str> = sent.iter().map(|&i| links[i].code.as_str()).collect();
        let targets: Vec<&str> = sent.iter().map(|&i| links[i].target.as_str()).collect();
        let created: Vec<OffsetDateTime> =
            sent.iter().map(|&i| millis(links[i].created_at)).collect();
        let expires: Vec<Option<OffsetDateTime>> = sent
            .iter()
            .map(|&i| links[i].expires_at.map(millis))
            .collect();
        let redirects: Vec<i16> = sent
            .iter()
            .map(|&i| links[i].redirect.status() as i16)
            .collect();
        let max_clicks = sent
            .iter()
            .map(|&i| links[i].max_clicks.map(i64::try_from).transpose())
            .collect::<Result<Vec<Option<i64>>, _>>()
            .map_err(backend)?;
        let owners: Vec<Option<&str>> = sent
            .iter()
            .map(|&i| links[i].owner.as_ref().map(Owner::as_str))
            .collect();
        let client = self.client().await?;
        let statement = client.prepare_cached(INSERT_BATCH).await.map_err(backend)?;
        self.sent(1);
        let rows = client
            .query(
                &statement,
                &[
                    &codes,
                    &targets,
                    &created,
                    &expires,
                    &redirects,
                    &max_clicks,
                    &owners,
                ],
            )
            .await
            .map_err(backend)?;
        let won: std::collections::HashSet<&str> = rows.iter().map(|row| row.get(0)).collect();
        let mut outcomes = vec![InsertOutcome::AlreadyExists; links.len()];
        for &i in &sent {
            if won.contains(links[i].code.as_str()) {
                outcomes[i] = InsertOutcome::Inserted;
            }
        }
        Ok(outcomes)
    }
}

/// Unix milliseconds, the precision every backend keeps (as the embedded store's
/// records do), so that a link reads back equal to what was stored.
fn millis(at: OffsetDateTime) -> OffsetDateTime {
    let ms = at.unix_timestamp_nanos() / 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).unwrap_or(at)
}

/// A row of `links` (columns in [`GET`]'s order), re-validated: bytes written by another
/// version or by hand must not become a `Location` header unchecked.
///
/// Every column is read with `try_get`: a value the driver cannot convert (a timestamp
/// past year 9999, `infinity`) is this row's `Corrupt`, never a panic.
fn decode(row: &Row, owner_column: usize) -> Result<Link, StoreError> {
    let code: String = column(row, 0, "?")?;
    let code = code.as_str();
    let bad = |reason: String| corrupt(code, reason);
    let redirect: i16 = column(row, 4, code)?;
    let max_clicks: Option<i64> = column(row, 5, code)?;
    let target: String = column(row, 1, code)?;
    let owner: Option<String> = column(row, owner_column, code)?;
    Ok(Link {
        code: ShortCode::parse(code).map_err(|e| bad(e.to_string()))?,
        target: TargetUrl::parse(&target).map_err(|e| bad(e.to_string()))?,
        created_at: column(row, 2, code)?,
        expires_at: column(row, 3, code)?,
        redirect: u16::try_from(redirect)
            .ok()
            .and_then(RedirectKind::from_status)
            .ok_or_else(|| bad(format!("unknown redirect status {redirect}")))?,
        max_clicks: max_clicks
            .map(u64::try_from)
            .transpose()
            .map_err(|e| bad(e.to_string()))?,
        owner: owner
            .as_deref()
            .map(Owner::parse)
            .transpose()
            .map_err(|e| bad(e.to_string()))?,
    })
}

/// Column `i` of the row of `code`, or why it cannot be read as a `T`.
fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    i: usize,
    code: &str,
) -> Result<T, StoreError> {
    row.try_get(i)
        .map_err(|e| corrupt(code, format!("column {i}: {}", Report(&e))))
}
