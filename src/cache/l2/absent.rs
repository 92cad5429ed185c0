//! The Redis tier compiled out (the `redis` feature is off).
//!
//! [`L2Cache`] and [`Subscriber`] are enums with no variants: no value of them can exist,
//! so the service's `Option<L2Cache>` is always `None` and every method body is the empty
//! `match *self {}`, which the compiler knows is unreachable. The only thing that runs is
//! [`L2Cache::connect`], which refuses a configured `redis.url` with the rebuild hint.
//! The signatures are the Redis tier's (`cache/l2/redis.rs`), so callers compile unchanged.

use std::future::Future;

use shortener_core::{Link, ShortCode};

use super::{Health, Lookup};
use crate::cache::LinkCache;
use crate::config::RedisSettings;

/// Redis is configured, but this build has no Redis client.
#[derive(Debug, thiserror::Error)]
#[error("redis.url is set, but this build has no Redis support: rebuild with `--features redis`")]
pub struct L2Error;

/// The Redis tier; in this build, a type with no values.
pub enum L2Cache {}

/// The invalidation subscriber's connection; in this build, a type with no values.
pub enum Subscriber {}

#[expect(
    missing_docs,
    reason = "the same methods as the Redis tier's, documented there"
)]
impl L2Cache {
    /// Always refuses: there is no Redis client to connect with.
    pub fn connect(_: &RedisSettings) -> Result<(Self, Subscriber), L2Error> {
        Err(L2Error)
    }

    pub async fn get(&self, _: &ShortCode) -> Lookup {
        match *self {}
    }

    pub async fn fill(&self, _: &ShortCode, _: Option<&Link>) {
        match *self {}
    }

    pub async fn created(&self, _: &Link) {
        match *self {}
    }

    pub async fn deleted(&self, _: &ShortCode) {
        match *self {}
    }

    pub async fn claim_click(&self, _: &ShortCode, _: u64) -> Option<u64> {
        match *self {}
    }

    pub async fn probe(&self) {
        match *self {}
    }

    pub fn health(&self) -> Health {
        match *self {}
    }

    pub async fn close(&self) {
        match *self {}
    }
}

/// Never runs: there is no subscriber to listen with.
pub async fn listen(subscriber: Subscriber, _: String, _: LinkCache, _: impl Future<Output = ()>) {
    match subscriber {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_redis_is_refused_with_the_rebuild_hint() {
        let mut settings = crate::config::Settings::from_defaults()
            .expect("defaults")
            .redis;
        settings.url = "redis://127.0.0.1:6379".into();
        // Irrefutable: the `Ok` side holds an `L2Cache`, which cannot exist.
        let Err(error) = L2Cache::connect(&settings);
        assert!(error.to_string().contains("--features redis"), "{error}");
    }
}
