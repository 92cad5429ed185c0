//! The storage contract for links, and its backends.
//!
//! [`LinkStore`] is deliberately narrow: insert-if-absent, get, delete, and health. Every
//! backend (the embedded redb store in `crates/stores/redb`, PostgreSQL in `crates/stores/postgres`,
//! ScyllaDB later) must give the
//! same guarantees:
//!
//! - `insert_if_absent` is atomic: of two concurrent inserts of one code, exactly one
//!   returns [`InsertOutcome::Inserted`]. This is what makes custom aliases safe and lets
//!   the service retry a colliding generated code.
//! - A returned `Ok` from a write means the write is durable: it survives a process crash
//!   (`kill -9`). The service acknowledges a create only after that.
//!
//! The trait is object-safe (`Arc<dyn LinkStore>`) because the backend is chosen at
//! start-up from config, and one virtual call is noise next to a storage round-trip.

#[cfg(any(test, feature = "contract"))]
pub mod contract;

use std::borrow::Cow;
use std::error::Error;
use std::sync::Arc;

use async_trait::async_trait;

use crate::aggregate::Counts;
use crate::{Link, Owner, ShortCode};

/// The result of [`LinkStore::insert_if_absent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The link was stored (durably).
    Inserted,
    /// A link with that code already exists; nothing was written.
    AlreadyExists,
}

/// The result of [`LinkStore::claim_click`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClickClaim {
    /// One click of the budget was left and is now used; this many were used before it.
    Claimed {
        /// Clicks claimed before this one.
        used_before: u64,
    },
    /// The link has used up its `max_clicks` (or has none, or does not exist).
    Exhausted,
}

/// A storage failure. The HTTP layer answers these with an opaque 5xx and logs the cause.
///
/// `Clone` because one failed group commit answers every create in the group.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, engine error). Build it with [`StoreError::backend`] or
    /// [`StoreError::caused`].
    #[error("storage backend error: {context}")]
    Backend {
        /// What the backend was doing, or what it found wrong.
        context: Cow<'static, str>,
        /// The engine's or driver's own error, when there is one (shared: `Clone`).
        #[source]
        source: Option<Arc<dyn Error + Send + Sync>>,
    },
    /// A stored record could not be decoded.
    #[error("corrupt record for code {code}: {reason}")]
    Corrupt {
        /// The key whose value is unreadable.
        code: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The store was closed (during shutdown).
    #[error("store is closed")]
    Closed,
    /// A statistics batch overlaps what its source already applied
    /// ([`crate::aggregate::Applies::Overlaps`]); nothing was written.
    #[error(
        "batch {}..={} of {} overlaps its applied position {applied}",
        id.first,
        id.last,
        id.source
    )]
    Overlap {
        /// The refused batch.
        id: crate::aggregate::BatchId,
        /// What the store had applied from its source.
        applied: u64,
    },
}

impl StoreError {
    /// A backend failure with no underlying error (a state the backend refuses to work in).
    pub fn backend(context: impl Into<Cow<'static, str>>) -> Self {
        Self::Backend {
            context: context.into(),
            source: None,
        }
    }

    /// A backend failure caused by `source`, which is kept for the log
    /// ([`crate::report::Report`]), not flattened into the message.
    pub fn caused(
        context: impl Into<Cow<'static, str>>,
        source: impl Error + Send + Sync + 'static,
    ) -> Self {
        Self::Backend {
            context: context.into(),
            source: Some(Arc::new(source)),
        }
    }
}

/// A page of [`LinkStore::list`].
#[derive(Debug, Default)]
pub struct ListPage {
    /// Links in code order, each with its all-time click totals.
    pub links: Vec<(Link, Counts)>,
    /// The rows in the page's range that could not be decoded, in code order (each a
    /// [`StoreError::Corrupt`] naming its code), left out of `links`.
    pub skipped: Vec<StoreError>,
}

/// Durable link storage. See the module docs for the guarantees every backend gives.
#[async_trait]
pub trait LinkStore: Send + Sync + 'static {
    /// Stores `link` unless its code is taken. Durable when it returns `Inserted`.
    async fn insert_if_absent(&self, link: &Link) -> Result<InsertOutcome, StoreError>;

    /// Stores every link whose code is free and answers for each link, in order, with
    /// its own outcome: `Ok(Inserted)` (stored, durable), `Ok(AlreadyExists)` (the code
    /// was taken, also by an earlier link of the same batch: the first wins), or `Err`
    /// (this link's write failed). Outcomes are per link because that is what every
    /// backend can promise: a store without multi-partition transactions (CQL) writes
    /// each link on its own, so some may succeed while others fail. Where the batch is
    /// one transaction (redb, PostgreSQL: one commit, one fsync for the group), an error
    /// is every link's and none was stored.
    ///
    /// This is what group commit (creates arriving together share one commit) is built
    /// on. The default inserts one at a time, each with its own outcome: correct, but
    /// one commit per link.
    async fn insert_batch(&self, links: &[Link]) -> Vec<Result<InsertOutcome, StoreError>> {
        let mut outcomes = Vec::with_capacity(links.len());
        for link in links {
            outcomes.push(self.insert_if_absent(link).await);
        }
        outcomes
    }

    /// Whether this backend keeps the click budgets of `max_clicks` links itself, one
    /// counter per link for every instance ([`LinkStore::claim_click`]). A backend that
    /// only one process can open (the embedded file) does not need to: that process's
    /// own counter is exact.
    fn keeps_click_budgets(&self) -> bool {
        false
    }

    /// Claims one click of the link's `max_clicks` budget, atomically across every handle
    /// on the store: of any number of concurrent claims, exactly as many succeed as
    /// clicks were left. Durable like any write. Only for backends that
    /// [keep click budgets](LinkStore::keeps_click_budgets); the default refuses.
    async fn claim_click(&self, code: &ShortCode) -> Result<ClickClaim, StoreError> {
        Err(StoreError::backend(format!(
            "this store keeps no click budgets (claim for {code})"
        )))
    }

    /// The link with this code, if any (expired links are returned; policy is the caller's).
    async fn get(&self, code: &ShortCode) -> Result<Option<Link>, StoreError>;

    /// Deletes the link; `true` if it existed. Durable when it returns.
    async fn delete(&self, code: &ShortCode) -> Result<bool, StoreError>;

    /// A page of links in code order, after `after` (exclusive), each with its all-time
    /// click totals; with `owner`, only that owner's links. The backend joins links and totals itself, in one round trip: a
    /// listing must not cost one statistics query per link (the N+1 problem).
    ///
    /// A row that cannot be decoded is skipped and reported in [`ListPage::skipped`],
    /// and the page is filled from the rows after it: one bad row costs its own link,
    /// never the page. The page holds `limit` links unless the table ends first.
    async fn list(
        &self,
        after: Option<ShortCode>,
        limit: usize,
        owner: Option<&Owner>,
    ) -> Result<ListPage, StoreError>;

    /// Cheap end-to-end check that the store can serve reads (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Flushes and releases the store. Later calls fail with [`StoreError::Closed`].
    async fn close(&self) -> Result<(), StoreError>;
}
