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
//! Record format: the value is the shared versioned JSON document of [`crate::record`]
//! (the same bytes the service keeps in Redis).

use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

mod stats;

use super::{InsertOutcome, LinkStore, StoreError};
use crate::aggregate::Counts;
use crate::record;
use crate::{Link, ShortCode};

/// Page cache when none is configured (`store.cache_bytes` in the service). redb's own
/// default is 1 GiB, which a long tail of statistics fills: RSS then grows to it.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// code -> JSON [`Record`].
const LINKS: TableDefinition<&str, &[u8]> = TableDefinition::new("links_v1");

/// A [`LinkStore`] in one redb file.
pub struct RedbStore {
    /// `None` once closed. The lock is only taken (uncontended, for reading) to clone the
    /// `Arc` at the start of an operation, on the blocking pool.
    db: RwLock<Option<Arc<Database>>>,
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
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(backend)?;
        }
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(backend)?;
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(LINKS).map_err(backend)?;
        stats::create_tables(&txn)?;
        txn.commit().map_err(backend)?;
        Ok(Self {
            db: RwLock::new(Some(Arc::new(db))),
        })
    }

    /// Bulk load: inserts every link whose code is free, in one transaction and one
    /// fsync, and returns how many were inserted. For seeding benchmarks and importing
    /// from another shortener; the service's creates go through `insert_if_absent`.
    pub async fn import(&self, links: Vec<Link>) -> Result<usize, StoreError> {
        self.run(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let mut inserted = 0;
            {
                let mut table = txn.open_table(LINKS).map_err(backend)?;
                for link in &links {
                    if table.get(link.code.as_str()).map_err(backend)?.is_none() {
                        table
                            .insert(link.code.as_str(), encode(link).as_slice())
                            .map_err(backend)?;
                        inserted += 1;
                    }
                }
            }
            txn.commit().map_err(backend)?;
            Ok(inserted)
        })
        .await
    }

    fn db(&self) -> Result<Arc<Database>, StoreError> {
        let guard = self
            .db
            .read()
            .map_err(|_| StoreError::Backend("lock poisoned".into()))?;
        guard.clone().ok_or(StoreError::Closed)
    }

    /// Runs a blocking redb operation on the blocking pool.
    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.db()?;
        tokio::task::spawn_blocking(move || op(&db))
            .await
            .map_err(|e| StoreError::Backend(format!("blocking task failed: {e}")))?
    }
}

#[async_trait]
impl LinkStore for RedbStore {
    async fn insert_if_absent(&self, link: &Link) -> Result<InsertOutcome, StoreError> {
        let code = link.code.clone();
        let value = encode(link);
        self.run(move |db| {
            // redb has one writer at a time, so check-then-insert inside one write
            // transaction is atomic: no other insert can interleave.
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut table = txn.open_table(LINKS).map_err(backend)?;
                if table.get(code.as_str()).map_err(backend)?.is_some() {
                    return Ok(InsertOutcome::AlreadyExists);
                }
                table
                    .insert(code.as_str(), value.as_slice())
                    .map_err(backend)?;
            }
            // Durability::Immediate (the default): fsynced before commit returns.
            txn.commit().map_err(backend)?;
            Ok(InsertOutcome::Inserted)
        })
        .await
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
    ) -> Result<Vec<(Link, Counts)>, StoreError> {
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
            let mut page = Vec::with_capacity(limit.min(1_000));
            for row in range.take(limit) {
                let (key, value) = row.map_err(backend)?;
                let code = ShortCode::parse(key.value()).map_err(|e| StoreError::Corrupt {
                    code: key.value().to_owned(),
                    reason: e.to_string(),
                })?;
                let clicks = match totals.get(code.as_str()).map_err(backend)? {
                    Some(v) => stats::decode_totals(code.as_str(), v.value())?,
                    None => Counts::default(),
                };
                page.push((decode(code, value.value())?, clicks));
            }
            Ok(page)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|db| {
            let txn = db.begin_read().map_err(backend)?;
            txn.open_table(LINKS).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        let db = self
            .db
            .write()
            .map_err(|_| StoreError::Backend("lock poisoned".into()))?
            .take();
        // Operations still running hold their own `Arc`; the file is released (and marked
        // clean) when the last one drops it. The server drains requests before closing,
        // so normally this is the last reference.
        if let Some(db) = db {
            match Arc::try_unwrap(db) {
                Ok(db) => drop(db),
                Err(_) => tracing::warn!("store closed while operations were in flight"),
            }
        }
        Ok(())
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
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
    use crate::{RedirectKind, TargetUrl};
    use time::OffsetDateTime;

    fn link(code: &str, url: &str) -> Link {
        Link {
            code: ShortCode::parse(code).expect("valid code"),
            target: TargetUrl::parse(url).expect("valid url"),
            created_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid time"),
            expires_at: Some(OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("valid")),
            redirect: RedirectKind::PermanentRedirect,
            max_clicks: Some(3),
        }
    }

    /// The embedded store under the shared contract: a fresh file per case. A second
    /// process cannot open a redb file (it is locked), so "another handle" is the same.
    struct Redb {
        _dir: tempfile::TempDir,
        store: Arc<RedbStore>,
    }

    #[async_trait]
    impl crate::store::contract::Backend for Redb {
        type Store = RedbStore;

        fn store(&self) -> Arc<RedbStore> {
            self.store.clone()
        }

        async fn another_handle(&self) -> Arc<RedbStore> {
            self.store.clone()
        }
    }

    async fn fresh() -> Option<Redb> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(RedbStore::open(&dir.path().join("store.redb")).expect("open"));
        Some(Redb { _dir: dir, store })
    }

    mod contract {
        use super::fresh;
        crate::store_contract!(fresh());
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
