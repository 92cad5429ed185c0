//! The layers the service puts around the configured store backend before it uses it.
//!
//! The backends themselves are crates of their own (`crates/stores/redb`, `crates/stores/postgres`)
//! implementing `shortener_core::LinkStore`; this module holds the two decorators put
//! around whichever is configured, outermost first:
//!
//! - [`metered`]: [`MeteredStore`] times every operation and counts failures
//!   (`shortener_store_*`), the same series for every backend; `LinkService::new` adds it.
//! - [`group_commit`]: [`GroupCommit`] lets creates that wait for durability at the same
//!   moment share one commit; `startup` adds it, so tests that inject a store get it too.

pub mod group_commit;
pub mod metered;

pub use group_commit::GroupCommit;
pub use metered::MeteredStore;
