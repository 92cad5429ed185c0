//! The default, embedded backend: [redb](https://docs.rs/redb), a pure-Rust, ACID,
//! copy-on-write B-tree in a single file.
//!
//! Why redb (see `benches/store-choice` and docs/benchmarks.md for the numbers): it is
//! crash-safe by construction (a commit flips a checksummed root, so `kill -9` at any
//! instant leaves either the old or the new tree), a commit with the default
//! `Durability::Immediate` is fsynced before it returns, and it compiles no C. Its
//! single-writer model suits us: creates are rare next to redirects, and reads never
//! wait for writers (MVCC).
//!
//! redb's API is blocking, so every operation runs on tokio's blocking pool. Reads only
//! happen on a cache miss, so that hop is off the hot path.
//!
//! Creates are made durable by a write-ahead log (`wal.rs`): a group of creates costs one
//! sequential append and fsync, and the tree is flushed at checkpoints, once for
//! thousands of creates. Deletes and statistics commit to the tree durably, as before.
//!
//! Record format: the value is the shared versioned JSON document of [`shortener_core::record`]
//! (the same bytes the service keeps in Redis).

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

mod keys;
mod stats;
mod wal;

use wal::{Entry, Wal};

use shortener_core::aggregate::Counts;
use shortener_core::record;
use shortener_core::report::Report;
use shortener_core::store::{InsertOutcome, LinkStore, ListPage, StoreError};
use shortener_core::{Link, Owner, ShortCode};

/// Page cache when none is configured (`store.page_cache_bytes` in the service). redb's own
/// default is 1 GiB, which a long tail of statistics fills: RSS then grows to it.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// code -> JSON [`Record`].
const LINKS: TableDefinition<&str, &[u8]> = TableDefinition::new("links_v1");

/// Bookkeeping: `APPLIED_LSN` -> the highest create-log group the tree holds.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta_v1");
const APPLIED_LSN: &str = "applied_lsn";
/// Written by every readiness probe: proof that a durable commit works right now.
const PROBED_AT: &str = "probed_at";

/// After a failed attempt to reopen the database, the next one waits this long, so a
/// full disk costs one attempt per second, not one per request.
const REOPEN_RETRY: Duration = Duration::from_secs(1);

/// Past this size, the create log is checkpointed (the tree flushed) and starts over:
/// about 20,000 links. Larger means fewer flushes of the tree, each longer (the creates
/// that trigger one wait for it), and a longer replay after a crash.
const CHECKPOINT_BYTES: u64 = 4 << 20;

/// A [`LinkStore`] in one redb file (and its create log).
///
/// **Failures.** After an I/O error (a full disk, a failing device) redb refuses every
/// later operation until the database is closed and opened again. So any failed
/// operation marks the store as failed, and the next one first reopens it (waiting for
/// the operations in flight to let go of the file, and retrying at most once
/// a second while that fails): once the disk has room again the store recovers
/// by itself, with the create log replayed, and [`LinkStore::ping`] (readiness) tries a
/// real durable write, so it says "not ready" exactly while writes fail.
pub struct RedbStore {
    handle: Arc<Handle>,
    /// The create log; its lock orders groups (one at a time, as redb's writer is).
    log: Arc<Mutex<Log>>,
}

/// The open database, and what it takes to open it again.
struct Handle {
    path: PathBuf,
    cache_bytes: usize,
    /// The lock is only taken for reading (uncontended) to clone the `Arc` at the start
    /// of an operation, on the blocking pool; for writing to close or reopen.
    state: RwLock<State>,
    /// An operation failed since the database was opened: reopen before the next.
    failed: AtomicBool,
    /// No reopen attempt before this instant (the last one failed).
    retry_at: Mutex<Option<Instant>>,
}

enum State {
    Open(Arc<Database>),
    /// Dropped after a failure, and not reopened yet.
    Failed,
    Closed,
}

/// The create log and the sequence number of the next group.
struct Log {
    wal: Wal,
    next_lsn: u64,
}

impl RedbStore {
    /// Opens (or creates) the database file at `path` with a page cache of
    /// [`DEFAULT_CACHE_BYTES`]; see [`RedbStore::open_with_cache`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the database file at `path`, creating parent directories, with
    /// at most `cache_bytes` of page cache. After an unclean shutdown redb repairs the
    /// file here, before we serve anything.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        // Whatever fails here, the operator needs to know which file it was.
        let at =
            |error: StoreError| StoreError::caused(format!("opening {}", path.display()), error);
        let db = open_database(path, cache_bytes).map_err(at)?;
        let log = recover(&db, &Wal::path_for(path)).map_err(at)?;
        Ok(Self {
            handle: Arc::new(Handle {
                path: path.to_owned(),
                cache_bytes,
                state: RwLock::new(State::Open(Arc::new(db))),
                failed: AtomicBool::new(false),
                retry_at: Mutex::new(None),
            }),
            log: Arc::new(Mutex::new(log)),
        })
    }

    /// Bulk load: inserts every link whose code is free, in one transaction and one
    /// fsync, and returns how many were inserted. For seeding benchmarks and importing
    /// from another shortener.
    pub async fn import(&self, links: Vec<Link>) -> Result<usize, StoreError> {
        let outcomes = self.commit_group(&links).await?;
        Ok(outcomes
            .iter()
            .filter(|outcome| **outcome == InsertOutcome::Inserted)
            .count())
    }

    /// The group of `links` in one durable commit (create log, then the tree): each
    /// link's outcome, or the commit's error. See [`LinkStore::insert_batch`].
    async fn commit_group(&self, links: &[Link]) -> Result<Vec<InsertOutcome>, StoreError> {
        let entries: Vec<Entry> = links
            .iter()
            .map(|link| (link.code.clone(), encode(link)))
            .collect();
        let log = self.log.clone();
        self.run(move |db| {
            let mut log = log.lock().map_err(|_| poisoned())?;
            // redb has one writer at a time, so check-then-insert inside one write
            // transaction is atomic: no other insert can interleave. A later link with
            // the code of an earlier one in the batch sees it, and loses.
            let mut txn = db.begin_write().map_err(backend)?;
            txn.set_durability(Durability::None).map_err(backend)?;
            let mut outcomes = Vec::with_capacity(entries.len());
            let mut inserted = Vec::with_capacity(entries.len());
            {
                let mut table = txn.open_table(LINKS).map_err(backend)?;
                for entry @ (code, value) in &entries {
                    if table.get(code.as_str()).map_err(backend)?.is_some() {
                        outcomes.push(InsertOutcome::AlreadyExists);
                        continue;
                    }
                    table
                        .insert(code.as_str(), value.as_slice())
                        .map_err(backend)?;
                    outcomes.push(InsertOutcome::Inserted);
                    inserted.push(entry);
                }
            }
            if inserted.is_empty() {
                // Nothing to make durable; dropping the transaction aborts it.
                return Ok(outcomes);
            }
            let lsn = log.next_lsn;
            txn.open_table(META)
                .map_err(backend)?
                .insert(APPLIED_LSN, lsn)
                .map_err(backend)?;
            // Log first, then apply: the group is durable once the append returns. If
            // the append fails, the transaction is dropped (aborted) and no link of the
            // group is visible; if the commit fails, the append is taken back.
            let before = log.wal.len();
            log.wal.append(lsn, &inserted).map_err(backend)?;
            if let Err(error) = txn.commit() {
                log.wal.truncate(before).map_err(backend)?;
                return Err(backend(error));
            }
            log.next_lsn += 1;
            if log.wal.len() > CHECKPOINT_BYTES
                && let Err(error) = checkpoint(db, &mut log)
            {
                // The creates are durable in the log; the next group tries again.
                tracing::warn!(error = %Report(&error), "create log checkpoint failed");
            }
            Ok(outcomes)
        })
        .await
    }

    /// Stores `value` under `code` as it is, unchecked and durably: how tests make the
    /// row that an older version, a bug or a hand edit could leave, and that no read can
    /// decode. Not for anything else: the service only writes through [`LinkStore`].
    #[doc(hidden)]
    pub async fn put_raw(&self, code: &str, value: &[u8]) -> Result<(), StoreError> {
        let (code, value) = (code.to_owned(), value.to_vec());
        self.run(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            txn.open_table(LINKS)
                .map_err(backend)?
                .insert(code.as_str(), value.as_slice())
                .map_err(backend)?;
            txn.commit().map_err(backend)
        })
        .await
    }

    /// Runs a blocking redb operation on the blocking pool; a backend error marks the
    /// store as failed (see [`RedbStore`]).
    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let (handle, log) = (self.handle.clone(), self.log.clone());
        tokio::task::spawn_blocking(move || {
            let db = handle.database(&log)?;
            let result = op(&db);
            if let Err(error @ StoreError::Backend { .. }) = &result {
                tracing::warn!(
                    error = %Report(error),
                    "embedded store operation failed; reopening before the next"
                );
                handle.failed.store(true, Ordering::Release);
            }
            result
        })
        .await
        .map_err(|e| StoreError::caused("blocking task failed", e))?
    }
}

impl Handle {
    /// The open database, reopened first if an operation failed.
    fn database(&self, log: &Mutex<Log>) -> Result<Arc<Database>, StoreError> {
        if self.failed.load(Ordering::Acquire) {
            self.reopen(log)?;
        }
        match &*self.state.read().map_err(|_| poisoned())? {
            State::Open(db) => Ok(db.clone()),
            State::Failed => Err(StoreError::backend(
                "the embedded store failed and could not be reopened yet",
            )),
            State::Closed => Err(StoreError::Closed),
        }
    }

    /// Closes the failed database and opens it again, replaying the create log.
    fn reopen(&self, log: &Mutex<Log>) -> Result<(), StoreError> {
        let mut state = self.state.write().map_err(|_| poisoned())?;
        if !self.failed.load(Ordering::Acquire) || matches!(*state, State::Closed) {
            return Ok(()); // reopened meanwhile, or closing anyway
        }
        {
            let mut retry_at = self.retry_at.lock().map_err(|_| poisoned())?;
            let now = Instant::now();
            if retry_at.is_some_and(|at| now < at) {
                return Err(StoreError::backend(
                    "the embedded store failed; reopening it is retried every second",
                ));
            }
            *retry_at = Some(now + REOPEN_RETRY);
        }
        // New operations wait on the lock we hold; let those in flight finish and drop
        // their handles, so that the file (locked by redb while open) is released.
        if let State::Open(db) = &*state {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Arc::strong_count(db) > 1 {
                if Instant::now() > deadline {
                    return Err(StoreError::backend(
                        "the embedded store failed; operations still hold it",
                    ));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        *state = State::Failed;
        let db = open_database(&self.path, self.cache_bytes)?;
        *log.lock().map_err(|_| poisoned())? = recover(&db, &Wal::path_for(&self.path))?;
        *state = State::Open(Arc::new(db));
        self.failed.store(false, Ordering::Release);
        tracing::warn!(path = %self.path.display(), "embedded store reopened after a failure");
        Ok(())
    }
}

/// Opens (or creates) the database file, creating parent directories and the tables.
fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(backend)?;
    }
    let db = redb::Builder::new()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(backend)?;
    let txn = db.begin_write().map_err(backend)?;
    txn.open_table(LINKS).map_err(backend)?;
    txn.open_table(META).map_err(backend)?;
    stats::create_tables(&txn)?;
    keys::create_table(&txn)?;
    txn.commit().map_err(backend)?;
    Ok(db)
}

#[async_trait]
impl LinkStore for RedbStore {
    async fn insert_if_absent(&self, link: &Link) -> Result<InsertOutcome, StoreError> {
        let mut outcomes = self.commit_group(std::slice::from_ref(link)).await?;
        outcomes
            .pop()
            .ok_or_else(|| StoreError::backend("no outcome for the insert"))
    }

    async fn insert_batch(&self, links: &[Link]) -> Vec<Result<InsertOutcome, StoreError>> {
        // One transaction: its outcome, or its error, is every link's.
        match self.commit_group(links).await {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
            Err(error) => vec![Err(error); links.len()],
        }
    }

    async fn get(&self, code: &ShortCode) -> Result<Option<Link>, StoreError> {
        let code = code.clone();
        self.run(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(LINKS).map_err(backend)?;
            match table.get(code.as_str()).map_err(backend)? {
                Some(value) => decode(code, value.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn delete(&self, code: &ShortCode) -> Result<bool, StoreError> {
        let code = code.clone();
        self.run(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let existed = {
                let mut table = txn.open_table(LINKS).map_err(backend)?;
                table.remove(code.as_str()).map_err(backend)?.is_some()
            };
            // A deleted link's statistics go with it, in the same transaction: a later
            // link that reuses the alias starts from zero (and with a full click budget).
            stats::purge(&txn, code.as_str())?;
            txn.commit().map_err(backend)?;
            Ok(existed)
        })
        .await
    }

    async fn list(
        &self,
        after: Option<ShortCode>,
        limit: usize,
        owner: Option<&Owner>,
    ) -> Result<ListPage, StoreError> {
        let owner = owner.cloned();
        self.run(move |db| {
            // One read transaction: a consistent snapshot of links and their totals.
            let txn = db.begin_read().map_err(backend)?;
            let links = txn.open_table(LINKS).map_err(backend)?;
            let totals = txn.open_table(stats::TOTALS).map_err(backend)?;
            let range = match &after {
                Some(code) => {
                    links.range::<&str>((Bound::Excluded(code.as_str()), Bound::Unbounded))
                }
                None => links.range::<&str>(..),
            }
            .map_err(backend)?;
            let mut page = ListPage {
                links: Vec::with_capacity(limit.min(1_000)),
                skipped: Vec::new(),
            };
            for row in range {
                if page.links.len() == limit {
                    break;
                }
                let (key, value) = row.map_err(backend)?;
                // A row that does not decode is this link's problem, not the page's.
                let decoded = ShortCode::parse(key.value())
                    .map_err(|e| StoreError::Corrupt {
                        code: key.value().to_owned(),
                        reason: e.to_string(),
                    })
                    .and_then(|code| decode(code, value.value()))
                    .and_then(|link| {
                        // One owner's listing scans every link after the cursor: the
                        // embedded store is one process's, sized for thousands of links
                        // per owner, not for a shared multi-tenant table (PostgreSQL
                        // and CQL keep an index by owner).
                        if owner.is_some() && link.owner != owner {
                            return Ok(None);
                        }
                        let clicks = match totals.get(link.code.as_str()).map_err(backend)? {
                            Some(v) => stats::decode_totals(link.code.as_str(), v.value())?,
                            None => Counts::default(),
                        };
                        Ok(Some((link, clicks)))
                    });
                match decoded {
                    Ok(Some(entry)) => page.links.push(entry),
                    Ok(None) => {}
                    Err(corrupt @ StoreError::Corrupt { .. }) => page.skipped.push(corrupt),
                    Err(error) => return Err(error),
                }
            }
            Ok(page)
        })
        .await
    }

    /// Readiness: whether a create would be durable right now. Appends an empty group to
    /// the create log and commits a timestamp durably (two small fsyncs), so a full or
    /// failing disk is "not ready", not only once a create has failed.
    async fn ping(&self) -> Result<(), StoreError> {
        let log = self.log.clone();
        self.run(move |db| {
            log.lock()
                .map_err(|_| poisoned())?
                .wal
                .append(0, &[])
                .map_err(backend)?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let txn = db.begin_write().map_err(backend)?;
            txn.open_table(META)
                .map_err(backend)?
                .insert(PROBED_AT, u64::try_from(now).unwrap_or(0))
                .map_err(backend)?;
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        let (handle, log) = (self.handle.clone(), self.log.clone());
        tokio::task::spawn_blocking(move || handle.close(&log))
            .await
            .map_err(|e| StoreError::caused("blocking task failed", e))?
    }
}

impl Handle {
    /// Checkpoints (a clean close leaves an empty create log) and releases the file.
    /// Later calls fail with [`StoreError::Closed`].
    fn close(&self, log: &Mutex<Log>) -> Result<(), StoreError> {
        // A failed store is reopened first, so that what the log holds reaches the tree.
        let db = self.database(log);
        let previous = std::mem::replace(
            &mut *self.state.write().map_err(|_| poisoned())?,
            State::Closed,
        );
        drop(previous);
        let db = match db {
            Ok(db) => db,
            Err(StoreError::Closed) => return Ok(()),
            Err(error) => return Err(error),
        };
        checkpoint(&db, &mut *log.lock().map_err(|_| poisoned())?)?;
        // Operations still running hold their own `Arc`; the file is released (and
        // marked clean) when the last one drops it. The server drains requests before
        // closing, so normally this is the last reference.
        match Arc::try_unwrap(db) {
            Ok(db) => drop(db),
            Err(_) => tracing::warn!("store closed while operations were in flight"),
        }
        Ok(())
    }
}

/// Flushes the tree (a durable commit also persists every non-durable one before it) and
/// empties the create log, which the tree now holds entirely.
fn checkpoint(db: &Database, log: &mut Log) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(backend)?;
    txn.commit().map_err(backend)?;
    log.wal.reset().map_err(backend)
}

/// Opens the create log of the database and applies the groups the tree lost in a crash
/// (those after its stored LSN), durably; then empties the log.
fn recover(db: &Database, path: &Path) -> Result<Log, StoreError> {
    let (mut wal, groups) = Wal::open(path).map_err(backend)?;
    let txn = db.begin_write().map_err(backend)?;
    let mut replayed = 0;
    let last = {
        let mut meta = txn.open_table(META).map_err(backend)?;
        let applied = meta
            .get(APPLIED_LSN)
            .map_err(backend)?
            .map_or(0, |v| v.value());
        let mut links = txn.open_table(LINKS).map_err(backend)?;
        let mut last = applied;
        for group in groups.into_iter().filter(|g| g.lsn > applied) {
            for (code, value) in &group.links {
                if links.get(code.as_str()).map_err(backend)?.is_none() {
                    links
                        .insert(code.as_str(), value.as_slice())
                        .map_err(backend)?;
                    replayed += 1;
                }
            }
            last = last.max(group.lsn);
        }
        meta.insert(APPLIED_LSN, last).map_err(backend)?;
        last
    };
    txn.commit().map_err(backend)?;
    wal.reset().map_err(backend)?;
    if replayed > 0 {
        tracing::info!(replayed, "applied acknowledged creates from the create log");
    }
    Ok(Log {
        wal,
        next_lsn: last + 1,
    })
}

fn poisoned() -> StoreError {
    StoreError::backend("lock poisoned")
}

/// An engine (redb) or file (create log) failure, kept as the error's source.
fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::caused("embedded store", e)
}

fn encode(link: &Link) -> Vec<u8> {
    record::encode(link)
}

fn decode(code: ShortCode, bytes: &[u8]) -> Result<Link, StoreError> {
    record::decode(&code, bytes).map_err(|e| StoreError::Corrupt {
        code: code.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shortener_core::{RedirectKind, TargetUrl};
    use time::OffsetDateTime;

    fn link(code: &str, url: &str) -> Link {
        Link {
            code: ShortCode::parse(code).expect("valid code"),
            target: TargetUrl::parse(url).expect("valid url"),
            created_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid time"),
            expires_at: Some(OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("valid")),
            redirect: RedirectKind::PermanentRedirect,
            max_clicks: Some(3),
            owner: None,
        }
    }

    /// The embedded store under the shared contract: a fresh file per case. A second
    /// process cannot open a redb file (it is locked), so "another handle" is the same.
    struct Redb {
        _dir: tempfile::TempDir,
        store: Arc<RedbStore>,
    }

    #[async_trait]
    impl shortener_core::store::contract::Harness for Redb {
        type Store = RedbStore;

        fn store(&self) -> Arc<RedbStore> {
            self.store.clone()
        }

        async fn another_handle(&self) -> Arc<RedbStore> {
            self.store.clone()
        }

        async fn corrupt_day(&self, code: &ShortCode, day: i64) {
            self.store
                .put_raw_day(code.as_str(), day, &[0xff])
                .await
                .expect("write the raw row");
        }

        async fn corrupt(&self, code: &ShortCode) {
            self.store
                .put_raw(code.as_str(), br#"{"v":1,"url":"https://a.com/","created_ms":253402300800000,"redirect":302}"#)
                .await
                .expect("write the raw row");
        }
    }

    async fn fresh() -> Option<Redb> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(RedbStore::open(&dir.path().join("store.redb")).expect("open"));
        Some(Redb { _dir: dir, store })
    }

    mod contract {
        use super::fresh;
        shortener_core::store_contract!(fresh());
    }

    #[tokio::test]
    async fn links_survive_reopening_and_close_rejects_later_calls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/dir/links.redb");
        let original = link("persist", "https://example.com/");
        {
            let store = RedbStore::open(&path).expect("open");
            store.insert_if_absent(&original).await.expect("insert");
            store.close().await.expect("close");
            assert!(matches!(
                store.get(&original.code).await,
                Err(StoreError::Closed)
            ));
        }
        let store = RedbStore::open(&path).expect("reopen");
        assert_eq!(
            store.get(&original.code).await.expect("get"),
            Some(original)
        );
        store.ping().await.expect("ping");
    }

    /// A crash after acknowledged creates, before a checkpoint: the files as the disk
    /// has them (copied while the store is open: the tree at its last durable commit, and
    /// the log) hold every acknowledged create once reopened, and deletes stay deleted.
    #[tokio::test]
    async fn acknowledged_creates_survive_a_crash_before_the_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("links.redb");
        let store = RedbStore::open(&path).expect("open");
        store
            .commit_group(&[link("gone", "https://example.com/gone")])
            .await
            .expect("batch");
        assert!(
            store
                .delete(&ShortCode::parse("gone").expect("code"))
                .await
                .expect("delete")
        );
        let mut acknowledged = Vec::new();
        for group in 0..5 {
            let batch: Vec<Link> = (0..10)
                .map(|i| link(&format!("g{group}n{i}"), "https://example.com/"))
                .collect();
            store.commit_group(&batch).await.expect("batch");
            acknowledged.extend(batch);
        }
        let wal = Wal::path_for(&path);
        assert!(
            std::fs::metadata(&wal).expect("log").len() > 0,
            "creates are in the log"
        );
        let crashed = dir.path().join("crashed.redb");
        std::fs::copy(&path, &crashed).expect("copy tree");
        std::fs::copy(&wal, Wal::path_for(&crashed)).expect("copy log");
        drop(store);

        let store = RedbStore::open(&crashed).expect("reopen after the crash");
        for link in &acknowledged {
            assert_eq!(
                store.get(&link.code).await.expect("get").as_ref(),
                Some(link)
            );
        }
        let gone = ShortCode::parse("gone").expect("code");
        assert_eq!(
            store.get(&gone).await.expect("get"),
            None,
            "a delete stays deleted"
        );
        let replayed = std::fs::metadata(Wal::path_for(&crashed))
            .expect("log")
            .len();
        assert_eq!(replayed, 0, "the replayed log is emptied");
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn import_inserts_free_codes_only_in_one_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(&dir.path().join("links.redb")).expect("open");
        let taken = link("b", "https://taken.example/");
        store.insert_if_absent(&taken).await.expect("insert");
        let batch = ["a", "b", "c"]
            .map(|c| link(c, "https://bulk.example/"))
            .to_vec();
        assert_eq!(store.import(batch).await.expect("import"), 2);
        assert_eq!(store.get(&taken.code).await.expect("get"), Some(taken));
        let a = ShortCode::parse("a").expect("code");
        assert!(store.get(&a).await.expect("get").is_some());
    }

    #[test]
    fn corrupt_records_are_reported_not_trusted() {
        // Which bytes are corrupt is `record`'s business (tested there); the store's is
        // to report them as `Corrupt` rather than trust them.
        let code = ShortCode::parse("bad").expect("valid");
        assert!(matches!(
            decode(code, b"not json"),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
