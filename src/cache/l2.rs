//! The shared second-level cache: links in Redis, for every instance behind the load
//! balancer.
//!
//! ```text
//! resolve ─▶ L1 (moka, per process) ─miss─▶ L2 (Redis, shared) ─miss─▶ store
//!                 ▲ single-flight              │ fill: SET NX EX        │
//!                 └───────────────────────────┴────────────────────────┘
//! ```
//!
//! What it holds, under `{key_prefix}link:{code}`: the link's
//! [`record`](shortener_core::record) (the same bytes as the embedded store), or
//! `MISSING` (`-`) for a code known not to exist (shorter TTL).
//! Creates write through (plain `SET`, replacing a cached "missing"); deletes replace the
//! entry with a "missing" tombstone rather than deleting it, and cache fills use
//! `SET NX`, so an instance that read the link from the store just before the delete
//! cannot put it back (the classic cache-aside race). Every change is announced on the
//! invalidation channel (`invalidation`) so other instances evict their L1 copy.
//!
//! Redis is an accelerator, never a dependency. Every call goes through a breaker
//! ([`breaker`]) and has a short command timeout; any failure is reported to the caller as
//! [`Lookup::AskTheStore`] (or ignored, for writes), and the service asks the store. Nothing
//! here returns an error to a request.
//!
//! It also keeps the shared click counters that make `max_clicks` exact across
//! instances (`L2Cache::claim_click`).
//!
//! Redis support is the cargo feature `redis` (`cargo run --release --features redis`):
//! the default embedded build does not compile a Redis client. Without it, [`L2Cache`] is
//! a type with no values (`cache/l2/absent.rs`), so the service's `Option<L2Cache>` is always
//! `None`, the compiler drops every Redis branch, and a configured `redis.url` is refused
//! at startup with that hint.

#[cfg(not(feature = "redis"))]
mod absent;
#[cfg(feature = "redis")]
pub mod breaker;
#[cfg(feature = "redis")]
pub mod invalidation;
#[cfg(feature = "redis")]
mod redis;

#[cfg(not(feature = "redis"))]
pub use absent::{L2Cache, L2Error, Subscriber, listen};
#[cfg(feature = "redis")]
pub use invalidation::run as listen;
#[cfg(feature = "redis")]
pub use redis::{L2Cache, L2Error, MISSING, Subscriber};

use shortener_core::Link;

/// What Redis knows about a code.
#[derive(Debug)]
pub enum Lookup {
    /// The link.
    Found(Link),
    /// Known not to exist (cached "missing" or a delete tombstone).
    Missing,
    /// Not cached, or Redis could not be asked: Redis has no answer (not to be
    /// confused with a code known not to exist, which is [`Lookup::Missing`]).
    AskTheStore,
}

/// Redis as seen by `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Connected and the breaker is closed.
    Ok,
    /// Not connected or the breaker is not closed: requests bypass Redis.
    Degraded,
}
