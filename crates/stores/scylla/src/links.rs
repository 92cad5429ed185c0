//! [`LinkStore`] on CQL.
//!
//! **Creation is a lightweight transaction** (`INSERT ... IF NOT EXISTS`, Paxos among
//! the partition's replicas), so that two instances creating the same alias at once
//! have exactly one winner. An LWT that times out has an **ambiguous outcome**: it may
//! have been applied, or it may yet be. The rule: read the row back at SERIAL
//! consistency, which completes any Paxos round in flight. The row carries the
//! `request_id` of the create that wrote it: our id means we won, another id means we
//! lost, no row means the write did not happen (and is sent once more).
//!
//! **Expiry is also a TTL**: a link with `expires_at` is written `USING TTL` of its
//! remaining life plus [`EXPIRED_GRACE`], so it answers 410 Gone for a month after it
//! expires and is then purged by compaction, with no sweeper.
//!
//! **The listing** reads [`LIST_BUCKETS`] partitions of `links_by_bucket` from the
//! cursor on, merges them in code order, and reads each link of the page. The index row
//! is written before the link: an index row without a link (a create that lost, or a
//! link purged by its TTL) is skipped; a link is never missing from the listing.
//!
//! **Click budgets** (`max_clicks`) are exact across instances: a claim reads the budget
//! at SERIAL consistency and moves `clicks_used` by a conditional update (`IF
//! clicks_used = <read>`), retried from the value the refusal returns. Each claim is an
//! LWT: several round trips and a Paxos round, the price of exactness without a lock.

use std::collections::BTreeSet;

use async_trait::async_trait;
use scylla::client::session::Session;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::response::query_result::QueryResult;
use scylla::statement::Consistency;
use scylla::statement::SerialConsistency;
use scylla::value::{CqlTimestamp, CqlValue, Row};
use shortener_core::{
    ClickClaim, InsertOutcome, Link, LinkStore, ListPage, Owner, RedirectKind, ShortCode,
    StoreError, TargetUrl,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Kind, ScyllaOptions, ScyllaStore, Statements, backend, corrupt};

/// Partitions of the listing index. More spread the index over more replicas and
/// shards; each page reads all of them.
pub const LIST_BUCKETS: i16 = 16;

/// How long an expired link keeps answering 410 Gone before its TTL purges it.
pub const EXPIRED_GRACE: time::Duration = time::Duration::days(30);

/// Conditional updates of one budget tried before the claim gives up (each refusal
/// means another instance claimed meanwhile).
const CLAIM_ATTEMPTS: usize = 64;

const COLUMNS: &str = "code, target, created_at, expires_at, redirect, max_clicks, owner";

pub(crate) async fn prepare(
    session: &Session,
    options: &ScyllaOptions,
) -> Result<Statements, StoreError> {
    let serial_read = serial_read(options);
    let statement = |cql, kind| crate::prepare(session, options, cql, kind);
    let mut get_serial = statement(
        format!("SELECT {COLUMNS}, request_id FROM links WHERE code = ?"),
        Kind::Idempotent,
    )
    .await?;
    get_serial.set_consistency(serial_read);
    let mut budget = statement(
        "SELECT max_clicks, clicks_used FROM links WHERE code = ?".into(),
        Kind::Idempotent,
    )
    .await?;
    budget.set_consistency(serial_read);
    Ok(Statements {
        insert: statement(
            format!(
                "INSERT INTO links ({COLUMNS}, clicks_used, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)
                 IF NOT EXISTS USING TTL ?"
            ), Kind::Lwt
        )
        .await?,
        index: statement(
            "INSERT INTO links_by_bucket (bucket, code) VALUES (?, ?) USING TTL ?".into(), Kind::Idempotent
        )
        .await?,
        get: statement(
            format!("SELECT {COLUMNS} FROM links WHERE code = ?"), Kind::Idempotent
        )
        .await?,
        get_serial,
        budget,
        claim: statement(
            "UPDATE links SET clicks_used = ? WHERE code = ? IF clicks_used = ?".into(), Kind::Lwt
        )
        .await?,
        delete: statement(
            "DELETE FROM links WHERE code = ? IF EXISTS".into(), Kind::Lwt
        )
        .await?,
        unindex: statement(
            "DELETE FROM links_by_bucket WHERE bucket = ? AND code = ?".into(), Kind::Idempotent
        )
        .await?,
        page: statement(
            "SELECT code FROM links_by_bucket WHERE bucket = ? AND code > ? LIMIT ?".into(), Kind::Idempotent
        )
        .await?,
        index_owned: statement(
            "INSERT INTO links_by_owner (owner, code) VALUES (?, ?) USING TTL ?".into(), Kind::Idempotent
        )
        .await?,
        unindex_owned: statement(
            "DELETE FROM links_by_owner WHERE owner = ? AND code = ?".into(), Kind::Idempotent
        )
        .await?,
        page_owned: statement(
            "SELECT code FROM links_by_owner WHERE owner = ? AND code > ? LIMIT ?".into(), Kind::Idempotent
        )
        .await?,
    })
}

/// The consistency of a read that settles lightweight transactions.
pub(crate) fn serial_read(options: &ScyllaOptions) -> Consistency {
    match options.serial_consistency {
        SerialConsistency::LocalSerial => Consistency::LocalSerial,
        SerialConsistency::Serial => Consistency::Serial,
    }
}

/// The listing partition of `code`: FNV-1a of its bytes (stable across processes and
/// versions, unlike std's hasher), modulo [`LIST_BUCKETS`].
pub fn bucket(code: &str) -> i16 {
    let hash = code.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % LIST_BUCKETS as u64) as i16
}

/// The longest TTL CQL accepts: 20 years.
const MAX_TTL: i64 = 20 * 365 * 24 * 3600;

/// The TTL (seconds) a link is written with: 0 (none) without an expiry; else its
/// remaining life plus [`EXPIRED_GRACE`], at least a second. An expiry further away than
/// CQL's longest TTL is kept by its date alone.
fn ttl(link: &Link, now: OffsetDateTime) -> i32 {
    link.expires_at.map_or(0, |at| {
        let seconds = at
            .checked_add(EXPIRED_GRACE)
            .map_or(i64::MAX, |until| (until - now).whole_seconds());
        if seconds > MAX_TTL {
            0
        } else {
            i32::try_from(seconds.max(1)).unwrap_or(0)
        }
    })
}

/// Whether `error` leaves a write's outcome unknown: it may have been applied.
fn ambiguous(error: &ExecutionError) -> bool {
    match error {
        ExecutionError::RequestTimeout(_) => true,
        ExecutionError::LastAttemptError(attempt) => matches!(
            attempt,
            RequestAttemptError::DbError(DbError::WriteTimeout { .. }, _)
                | RequestAttemptError::BrokenConnectionError(_)
        ),
        _ => false,
    }
}

/// Rounds of SERIAL read and re-send before an ambiguous create is reported as failed.
const SETTLE_ATTEMPTS: u32 = 5;

/// The `[applied]` column of a create's answer, and the `request_id` of the row that
/// holds the code when it was not applied.
fn applied_by(result: QueryResult) -> Result<(bool, Option<Uuid>), StoreError> {
    let rows = result.into_rows_result().map_err(backend)?;
    let id_column = rows
        .column_specs()
        .get_by_name("request_id")
        .map(|(i, _)| i);
    let row: Row = rows.first_row().map_err(backend)?;
    let applied = matches!(row.columns.first(), Some(Some(CqlValue::Boolean(true))));
    let holder = id_column.and_then(|i| match row.columns.get(i) {
        Some(Some(CqlValue::Uuid(id))) => Some(*id),
        _ => None,
    });
    Ok((applied, holder))
}

/// The `[applied]` column of an LWT's answer.
pub(crate) fn applied(result: QueryResult) -> Result<bool, StoreError> {
    let rows = result.into_rows_result().map_err(backend)?;
    let row: Row = rows.first_row().map_err(backend)?;
    match row.columns.first() {
        Some(Some(CqlValue::Boolean(applied))) => Ok(*applied),
        other => Err(StoreError::backend(format!(
            "an LWT answered without [applied]: {other:?}"
        ))),
    }
}

type LinkRow = (
    String,
    String,
    CqlTimestamp,
    Option<CqlTimestamp>,
    i16,
    Option<i64>,
    Option<String>,
);

/// A row of `links`, re-validated: what another version or a hand wrote must not
/// become a `Location` header unchecked.
fn decode(code: &str, row: LinkRow) -> Result<Link, StoreError> {
    let (stored, target, created_at, expires_at, redirect, max_clicks, owner) = row;
    let bad = |reason: String| corrupt(code, reason);
    let at = |t: CqlTimestamp| {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.0) * 1_000_000)
            .map_err(|e| bad(e.to_string()))
    };
    Ok(Link {
        code: ShortCode::parse(&stored).map_err(|e| bad(e.to_string()))?,
        target: TargetUrl::parse(&target).map_err(|e| bad(e.to_string()))?,
        created_at: at(created_at)?,
        expires_at: expires_at.map(at).transpose()?,
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

fn millis(at: OffsetDateTime) -> CqlTimestamp {
    CqlTimestamp((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

impl ScyllaStore {
    /// Sends the create once: `Ok(true)` when the code is ours (applied now, or found
    /// holding our own id: an earlier attempt of this create got there first), `Ok(false)`
    /// when another create holds it; `Err` carries the driver's error for the caller to
    /// judge.
    async fn try_insert(
        &self,
        link: &Link,
        request_id: Uuid,
        ttl: i32,
    ) -> Result<bool, ExecutionError> {
        let max_clicks = link
            .max_clicks
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let result = self
            .session
            .execute_unpaged(
                &self.statements.insert,
                (
                    link.code.as_str(),
                    link.target.as_str(),
                    millis(link.created_at),
                    link.expires_at.map(millis),
                    link.redirect.status() as i16,
                    max_clicks,
                    link.owner.as_ref().map(Owner::as_str),
                    request_id,
                    ttl,
                ),
            )
            .await?;
        // A malformed answer is not a timeout: report it as not ambiguous.
        let (applied, holder) = applied_by(result).map_err(|_| ExecutionError::EmptyPlan)?;
        Ok(applied || holder == Some(request_id))
    }

    /// Settles an ambiguous create by reading the row at SERIAL consistency: `Some`
    /// outcome, or `None` when the create did not happen.
    async fn settle(
        &self,
        code: &ShortCode,
        request_id: Uuid,
    ) -> Result<Option<InsertOutcome>, StoreError> {
        let rows = self
            .session
            .execute_unpaged(&self.statements.get_serial, (code.as_str(),))
            .await
            .map_err(backend)?
            .into_rows_result()
            .map_err(backend)?;
        type Serial = (
            String,
            String,
            CqlTimestamp,
            Option<CqlTimestamp>,
            i16,
            Option<i64>,
            Option<String>,
            Option<Uuid>,
        );
        let row: Option<Serial> = rows.maybe_first_row().map_err(backend)?;
        Ok(row.map(|row| {
            if row.7 == Some(request_id) {
                InsertOutcome::Inserted
            } else {
                InsertOutcome::AlreadyExists
            }
        }))
    }

    /// Settles an ambiguous create (public for tests that inject the ambiguity).
    ///
    /// A SERIAL read that finds no row does not prove the create never happens: the
    /// request may still wait in a replica's queue, before its Paxos round begins. So
    /// the create is sent again with the same id. Whichever attempt applies first, the
    /// others find the row holding our id and report it ours; a row with another id
    /// means another create won.
    pub async fn resolve_ambiguous_create(
        &self,
        link: &Link,
        request_id: Uuid,
    ) -> Result<InsertOutcome, StoreError> {
        let mut last = None;
        for attempt in 0..SETTLE_ATTEMPTS {
            if let Some(outcome) = self.settle(&link.code, request_id).await? {
                tracing::info!(
                    code = link.code.as_str(),
                    ?outcome,
                    "an ambiguous create settled by a SERIAL read"
                );
                return Ok(outcome);
            }
            match self
                .try_insert(link, request_id, ttl(link, OffsetDateTime::now_utc()))
                .await
            {
                Ok(true) => return Ok(InsertOutcome::Inserted),
                Ok(false) => return Ok(InsertOutcome::AlreadyExists),
                Err(error) if ambiguous(&error) => last = Some(error),
                Err(error) => return Err(backend(error)),
            }
            tokio::time::sleep(std::time::Duration::from_millis(10 << attempt)).await;
        }
        Err(last.map_or_else(|| StoreError::backend("an ambiguous create"), backend))
    }

    /// Creates `link` with a given request id (tests use it to play the part of a
    /// create whose answer was lost).
    pub async fn insert_with_id(
        &self,
        link: &Link,
        request_id: Uuid,
    ) -> Result<InsertOutcome, StoreError> {
        let ttl = ttl(link, OffsetDateTime::now_utc());
        // The index first: a listed code without a link is skipped, never the reverse.
        self.session
            .execute_unpaged(
                &self.statements.index,
                (bucket(link.code.as_str()), link.code.as_str(), ttl),
            )
            .await
            .map_err(backend)?;
        if let Some(owner) = &link.owner {
            self.session
                .execute_unpaged(
                    &self.statements.index_owned,
                    (owner.as_str(), link.code.as_str(), ttl),
                )
                .await
                .map_err(backend)?;
        }
        match self.try_insert(link, request_id, ttl).await {
            Ok(true) => Ok(InsertOutcome::Inserted),
            Ok(false) => Ok(InsertOutcome::AlreadyExists),
            Err(error) if ambiguous(&error) => {
                tracing::warn!(code = link.code.as_str(), error = %error, "create timed out; settling it with a SERIAL read");
                self.resolve_ambiguous_create(link, request_id).await
            }
            Err(error) => Err(backend(error)),
        }
    }

    /// The codes after `after` in code order, at most `limit`: one owner's from its
    /// partition, or everyone's from every bucket.
    async fn page_codes(
        &self,
        after: &str,
        limit: usize,
        owner: Option<&Owner>,
    ) -> Result<Vec<String>, StoreError> {
        let limit_i32 = i32::try_from(limit).unwrap_or(i32::MAX);
        if let Some(owner) = owner {
            let rows = self
                .session
                .execute_unpaged(
                    &self.statements.page_owned,
                    (owner.as_str(), after, limit_i32),
                )
                .await
                .map_err(backend)?
                .into_rows_result()
                .map_err(backend)?;
            return rows
                .rows::<(String,)>()
                .map_err(backend)?
                .map(|row| row.map(|(code,)| code).map_err(backend))
                .collect();
        }
        let mut codes = BTreeSet::new();
        for bucket in 0..LIST_BUCKETS {
            let rows = self
                .session
                .execute_unpaged(&self.statements.page, (bucket, after, limit_i32))
                .await
                .map_err(backend)?
                .into_rows_result()
                .map_err(backend)?;
            for row in rows.rows::<(String,)>().map_err(backend)? {
                codes.insert(row.map_err(backend)?.0);
            }
        }
        Ok(codes.into_iter().take(limit).collect())
    }

    /// The link of `code`: `None` if absent, `Some(Err)` if its row cannot be decoded.
    async fn read(&self, code: &str) -> Result<Option<Result<Link, StoreError>>, StoreError> {
        let rows = self
            .session
            .execute_unpaged(&self.statements.get, (code,))
            .await
            .map_err(backend)?
            .into_rows_result()
            .map_err(backend)?;
        match rows.maybe_first_row::<LinkRow>() {
            Ok(row) => Ok(row.map(|row| decode(code, row))),
            // A present row whose columns do not have the expected types or are null.
            Err(error) => Ok(Some(Err(corrupt(code, error)))),
        }
    }
}

#[async_trait]
impl LinkStore for ScyllaStore {
    async fn insert_if_absent(&self, link: &Link) -> Result<InsertOutcome, StoreError> {
        self.insert_with_id(link, Uuid::new_v4()).await
    }

    async fn get(&self, code: &ShortCode) -> Result<Option<Link>, StoreError> {
        self.read(code.as_str()).await?.transpose()
    }

    fn keeps_click_budgets(&self) -> bool {
        true
    }

    async fn claim_click(&self, code: &ShortCode) -> Result<ClickClaim, StoreError> {
        let read = self
            .session
            .execute_unpaged(&self.statements.budget, (code.as_str(),))
            .await
            .map_err(backend)?
            .into_rows_result()
            .map_err(backend)?;
        let Some((max_clicks, used)) = read
            .maybe_first_row::<(Option<i64>, Option<i64>)>()
            .map_err(backend)?
        else {
            return Ok(ClickClaim::Exhausted);
        };
        let Some(max_clicks) = max_clicks else {
            return Ok(ClickClaim::Exhausted);
        };
        let mut used = used.unwrap_or(0);
        for _ in 0..CLAIM_ATTEMPTS {
            if used >= max_clicks {
                return Ok(ClickClaim::Exhausted);
            }
            let result = self
                .session
                .execute_unpaged(&self.statements.claim, (used + 1, code.as_str(), used))
                .await
                .map_err(backend)?;
            let rows = result.into_rows_result().map_err(backend)?;
            let row: Row = rows.first_row().map_err(backend)?;
            match (row.columns.first(), row.columns.get(1)) {
                (Some(Some(CqlValue::Boolean(true))), _) => {
                    return Ok(ClickClaim::Claimed {
                        used_before: u64::try_from(used).unwrap_or(0),
                    });
                }
                // Refused: another claim moved it; the answer holds the current value.
                (Some(Some(CqlValue::Boolean(false))), Some(Some(CqlValue::BigInt(now)))) => {
                    used = *now;
                }
                // The link was deleted meanwhile.
                _ => return Ok(ClickClaim::Exhausted),
            }
        }
        Err(StoreError::backend(format!(
            "click budget of {}: {CLAIM_ATTEMPTS} conditional updates lost to other claims",
            code.as_str()
        )))
    }

    async fn delete(&self, code: &ShortCode) -> Result<bool, StoreError> {
        // The owner's listing row goes too; the link is read first to know whose it is.
        let owner = self
            .read(code.as_str())
            .await?
            .and_then(Result::ok)
            .and_then(|l| l.owner);
        let existed = applied(
            self.session
                .execute_unpaged(&self.statements.delete, (code.as_str(),))
                .await
                .map_err(backend)?,
        )?;
        self.session
            .execute_unpaged(
                &self.statements.unindex,
                (bucket(code.as_str()), code.as_str()),
            )
            .await
            .map_err(backend)?;
        if let Some(owner) = owner {
            self.session
                .execute_unpaged(
                    &self.statements.unindex_owned,
                    (owner.as_str(), code.as_str()),
                )
                .await
                .map_err(backend)?;
        }
        self.delete_stats(code.as_str()).await?;
        Ok(existed)
    }

    async fn list(
        &self,
        after: Option<ShortCode>,
        limit: usize,
        owner: Option<&Owner>,
    ) -> Result<ListPage, StoreError> {
        let mut after = after.map_or_else(String::new, |code| code.as_str().to_owned());
        let mut page = ListPage::default();
        while page.links.len() < limit {
            let wanted = limit - page.links.len();
            let codes = self.page_codes(&after, wanted, owner).await?;
            for code in &codes {
                match self.read(code).await? {
                    // An owner's listing row whose code another create won.
                    Some(Ok(link)) if owner.is_some() && link.owner.as_ref() != owner => {}
                    Some(Ok(link)) => {
                        let totals =
                            shortener_core::stats::StatsStore::totals(self, &link.code).await?;
                        page.links.push((link, totals));
                    }
                    Some(Err(corrupt)) => page.skipped.push(corrupt),
                    None => {} // an index row whose link lost, or was purged
                }
            }
            match codes.last() {
                Some(last) if codes.len() == wanted => after.clone_from(last),
                _ => break,
            }
        }
        Ok(page)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.session
            .query_unpaged("SELECT release_version FROM system.local", &[])
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ttl_covers_the_grace_and_stays_within_what_cql_accepts() {
        let now = OffsetDateTime::from_unix_timestamp(1_780_000_000).expect("time");
        let mut link = Link {
            code: ShortCode::parse("t").expect("code"),
            target: TargetUrl::parse("https://example.com/").expect("url"),
            created_at: now,
            expires_at: None,
            redirect: RedirectKind::Found,
            max_clicks: None,
            owner: None,
        };
        assert_eq!(ttl(&link, now), 0, "no expiry, no TTL");
        link.expires_at = Some(now + time::Duration::days(1));
        assert_eq!(ttl(&link, now), 31 * 24 * 3600);
        link.expires_at = Some(now - EXPIRED_GRACE - time::Duration::days(1));
        assert_eq!(ttl(&link, now), 1, "long expired: gone in a second");
        link.expires_at = Some(now + time::Duration::days(365 * 30));
        assert_eq!(ttl(&link, now), 0, "past CQL's 20 years: kept by its date");
        link.expires_at = Some(time::macros::datetime!(9999-12-31 23:59:59 UTC));
        assert_eq!(ttl(&link, now), 0);
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket("abc"), bucket("abc"));
        let used: BTreeSet<i16> = (0..1000).map(|i| bucket(&format!("c{i}"))).collect();
        assert_eq!(used.len(), LIST_BUCKETS as usize);
    }
}
