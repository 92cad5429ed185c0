//! What the shortener service and the (future) analytics consumer share.
//!
//! The service (`src/`) and the analytics consumer (`analytics/`) never depend on each
//! other; everything both need lives here: the validated domain types ([`code`],
//! [`target`], [`link`]) and the storage contracts ([`store`], [`stats`]) that every
//! backend under `stores/` implements. Nothing in this crate knows about HTTP or any
//! storage engine.

pub mod agent;
pub mod aggregate;
pub mod click;
pub mod code;
pub mod encoding;
pub mod hll;
pub mod link;
pub mod record;
pub mod stats;
pub mod store;
pub mod target;
mod tight;
pub mod topk;
pub mod visitors;

pub use code::{Alias, CodeError, CodeGenerator, GeneratorConfigError, ShortCode};
pub use link::{Link, RedirectKind};
pub use store::{ClickClaim, InsertOutcome, LinkStore, StoreError};
pub use target::{TargetUrl, TargetUrlError};
