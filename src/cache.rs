//! The cache tiers: where a redirect finds its link before it has to ask the store.
//!
//! ```text
//! LinkService::resolve
//!   └─▶ front (per thread) ─miss─▶ l1 (moka, per process) ─miss─▶ l2 (Redis, shared) ─miss─▶ store
//!        epochs from l1             single-flight, negative         breaker, tombstones,
//!                                   entries, byte bound             pub/sub invalidation
//! ```
//!
//! Each tier is a module, in the order a lookup meets them:
//!
//! - [`front`]: a small per-thread table of hot links. Optional reading: it only saves
//!   moka's bookkeeping on repeat hits, and the service is correct without it.
//! - [`l1`]: [`LinkCache`], moka with single-flight misses, negative entries, a byte
//!   bound, and entries that are already the headers of the response.
//! - [`l2`]: the shared Redis tier (cargo feature `redis`): cache-aside reads and fills,
//!   write-through, tombstones on delete, the invalidation listener and the circuit
//!   breaker that keeps a slow Redis from slowing a redirect. Without the feature it is
//!   a type with no values and every Redis branch compiles away.
//!
//! The store is not here: it is the source of truth, not a cache (`crate::store_layers` wraps it).

pub mod front;
pub mod l1;
pub mod l2;

pub use l1::{CacheEntry, CachedLink, ClickBudget, LinkCache, cache_control_max_age, weigh};
