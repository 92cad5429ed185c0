//! What the shortener service and the (future) analytics consumer share.
//!
//! The service (`src/`) and the analytics consumer (`analytics/`) never depend on each
//! other; everything both need lives here: the validated domain types ([`code`],
//! [`target`], [`link`]) and the storage contracts ([`store`], [`stats`]) that every
//! backend under `crates/stores/` implements. Nothing in this crate knows about HTTP or any
//! storage engine.
//!
//! # Layout
//!
//! ```text
//! crates/core/src/
//! ├── code.rs, target.rs, link.rs   a link's parts, valid by construction
//! ├── access.rs                     API keys, owners and scopes; the KeyStore contract
//! ├── policy.rs                     where a new link may point (private hosts, homographs)
//! ├── instant.rs                    the span of time every store keeps (1970 to 9999)
//! ├── record.rs                     the one serialized form of a link (store and Redis)
//! ├── store.rs, store/contract.rs   the LinkStore contract and its test suite
//! ├── report.rs                     an error and its sources on one log line
//! ├── secret.rs                     Secret: a config value Debug never prints
//! ├── click.rs                      the click event contract, visitor hashing
//! ├── sink.rs                       EventSink: where batches of click events go
//! ├── agent.rs                      user-agent classes: browser, OS, device, bot
//! ├── aggregate.rs                  clicks folded into per-link, per-day counts
//! ├── visitors.rs, hll.rs, topk.rs  the sketches aggregate.rs uses
//! ├── stats.rs                      the StatsStore contract and what /stats answers
//! ├── encoding.rs                   the versioned bytes of a statistics row
//! └── doubling.rs                   (private) vectors that grow 1, 2, 4, ... for aggregation
//! ```

pub mod access;
pub mod agent;
pub mod aggregate;
pub mod click;
pub mod code;
mod doubling;
pub mod encoding;
pub mod hll;
pub mod instant;
pub mod link;
pub mod policy;
pub mod record;
pub mod report;
pub mod secret;
pub mod sink;
pub mod stats;
pub mod store;
pub mod target;
pub mod topk;
pub mod visitors;

pub use access::{KeyRecord, KeyStore, Owner, Scopes};
pub use code::{Alias, CodeError, CodeGenerator, GeneratorConfigError, ShortCode};
pub use link::{Link, RedirectKind};
pub use store::{ClickClaim, InsertOutcome, LinkStore, ListPage, StoreError};
pub use target::{TargetUrl, TargetUrlError};
