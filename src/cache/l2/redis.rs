//! The Redis tier itself (the `redis` feature): the [fred] client pool behind a breaker,
//! with the commands the module docs of [`crate::cache::l2`] describe.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fred::clients::{Client, Pool, SubscriberClient, WithOptions};
use fred::error::{Error as RedisError, ErrorKind};
use fred::interfaces::{ClientLike, KeysInterface, LuaInterface, PubsubInterface};
use fred::types::config::{Config, Options, ReconnectPolicy, UnresponsiveConfig};
use fred::types::{Builder, Expiration, SetOptions};
use metrics::{Counter, Histogram};
use quanta::Instant;
use shortener_core::{Link, ShortCode, record};
use time::OffsetDateTime;

use super::breaker::{Breaker, BreakerState};
use crate::config::RedisSettings;
use crate::metrics::{INVALIDATIONS, L2_REQUESTS, REDIS_COMMAND_DURATION};

use super::{Health, Lookup};

/// The value of a "this code does not exist" entry. Records are JSON objects, so they
/// never look like this.
pub const MISSING: &[u8] = b"-";

/// Seeds a link's shared click counter from the durable count if it does not exist yet,
/// then claims one click: one round trip, atomic on the server.
const CLAIM_SCRIPT: &str = "\
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], ARGV[1]) end
return redis.call('INCR', KEYS[1])";

/// The invalidation subscriber's connection ([`super::listen`] runs it).
pub type Subscriber = SubscriberClient;

/// Why the Redis clients could not be built (bad URL or settings; not "Redis is down",
/// which is never an error at startup).
#[derive(Debug, thiserror::Error)]
#[error("redis client")]
pub struct L2Error(#[from] RedisError);

#[derive(Clone, Copy)]
enum Command {
    Get,
    Set,
    Publish,
    Claim,
    Ping,
}

impl Command {
    const ALL: [Self; 5] = [Self::Get, Self::Set, Self::Publish, Self::Claim, Self::Ping];

    fn label(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Set => "set",
            Self::Publish => "publish",
            Self::Claim => "claim",
            Self::Ping => "ping",
        }
    }
}

struct Meters {
    hit: Counter,
    negative_hit: Counter,
    miss: Counter,
    error: Counter,
    timeout: Counter,
    skipped: Counter,
    sent: Counter,
    /// Indexed like [`Command::ALL`].
    durations: [Histogram; 5],
}

impl Meters {
    fn new() -> Self {
        let result = |r: &'static str| metrics::counter!(L2_REQUESTS, "result" => r);
        Self {
            hit: result("hit"),
            negative_hit: result("negative_hit"),
            miss: result("miss"),
            error: result("error"),
            timeout: result("timeout"),
            skipped: result("skipped"),
            sent: metrics::counter!(INVALIDATIONS, "direction" => "sent"),
            durations: Command::ALL
                .map(|c| metrics::histogram!(REDIS_COMMAND_DURATION, "command" => c.label())),
        }
    }
}

/// The Redis tier; see the module docs.
pub struct L2Cache {
    pool: Pool,
    breaker: Breaker,
    prefix: String,
    channel: String,
    ttl: Duration,
    negative_ttl: Duration,
    /// Per-command options of the write path (its longer timeout).
    writes: Options,
    meters: Meters,
    /// The last background probe got every pooled connection's PONG in time.
    probe_ok: AtomicBool,
}

/// How a link entry is written.
#[derive(Clone, Copy)]
enum Write {
    /// A cache fill on the redirect path: `SET NX` (an existing entry, e.g. a delete's
    /// tombstone, wins) with the short request-path timeout.
    Fill,
    /// A create or delete: a plain `SET` with the write-path timeout, since losing it
    /// leaves every instance stale until a TTL runs out.
    Replace,
}

impl L2Cache {
    /// Builds the command pool and the subscriber connection and starts connecting both
    /// in the background. Returns at once: the service must start (degraded) when Redis
    /// is down, and the clients keep reconnecting with backoff.
    pub fn connect(settings: &RedisSettings) -> Result<(Self, SubscriberClient), L2Error> {
        let builder = builder(settings)?;
        let pool = builder.build_pool(settings.pool_size.get())?;
        let subscriber = builder.build_subscriber_client()?;
        pool.connect();
        Ok((
            Self {
                pool,
                breaker: Breaker::new(
                    settings.breaker_failures.get(),
                    Duration::from_millis(settings.breaker_open_ms.get()),
                ),
                prefix: settings.key_prefix.clone(),
                channel: settings.invalidation_channel.clone(),
                ttl: Duration::from_secs(settings.ttl_s.get()),
                negative_ttl: Duration::from_secs(settings.negative_ttl_s.get()),
                writes: Options {
                    timeout: Some(settings.write_timeout()),
                    ..Options::default()
                },
                meters: Meters::new(),
                probe_ok: AtomicBool::new(false),
            },
            subscriber,
        ))
    }

    /// What Redis knows about `code`. Never fails: trouble is [`Lookup::AskTheStore`].
    pub async fn get(&self, code: &ShortCode) -> Lookup {
        let key = self.link_key(code);
        let Some(value) = self
            .call(Command::Get, || self.pool.get::<Option<Bytes>, _>(key))
            .await
        else {
            return Lookup::AskTheStore;
        };
        match value {
            None => {
                self.meters.miss.increment(1);
                Lookup::AskTheStore
            }
            Some(bytes) if bytes.as_ref() == MISSING => {
                self.meters.negative_hit.increment(1);
                Lookup::Missing
            }
            Some(bytes) => match record::decode(code, &bytes) {
                Ok(link) => {
                    self.meters.hit.increment(1);
                    Lookup::Found(link)
                }
                Err(error) => {
                    // Not trusted: the store is asked and its answer overwrites this.
                    tracing::warn!(%code, %error, "corrupt link in redis");
                    self.meters.error.increment(1);
                    Lookup::AskTheStore
                }
            },
        }
    }

    /// Caches what the store said about `code`, unless Redis already has an entry: a
    /// delete's tombstone must win over a fill that read the store just before it.
    pub async fn fill(&self, code: &ShortCode, link: Option<&Link>) {
        let (value, ttl) = match link {
            Some(link) => (Bytes::from(record::encode(link)), self.link_ttl(link)),
            None => (Bytes::from_static(MISSING), Some(self.negative_ttl)),
        };
        if let Some(ttl) = ttl {
            self.set(code, value, ttl, Write::Fill).await;
        }
    }

    /// A link was created: cache it (replacing a cached "missing") and tell the other
    /// instances, whose L1 may remember the code as unknown.
    pub async fn created(&self, link: &Link) {
        if let Some(ttl) = self.link_ttl(link) {
            self.set(
                &link.code,
                Bytes::from(record::encode(link)),
                ttl,
                Write::Replace,
            )
            .await;
        }
        self.publish(&link.code).await;
    }

    /// A link was deleted: leave a tombstone (so no instance re-caches it from a stale
    /// read) and tell the other instances to evict it.
    pub async fn deleted(&self, code: &ShortCode) {
        self.set(
            code,
            Bytes::from_static(MISSING),
            self.negative_ttl,
            Write::Replace,
        )
        .await;
        let key = self.clicks_key(code);
        self.call(Command::Set, || async {
            self.writer().del::<i64, _>(key).await
        })
        .await;
        self.publish(code).await;
    }

    /// Claims one click of a link with `max_clicks`, on the counter shared by all
    /// instances (seeded from `durable`, the clicks already in statistics, the first
    /// time). Returns how many clicks were claimed before this one, or `None` if Redis
    /// could not be asked (the caller falls back to its own counter).
    pub async fn claim_click(&self, code: &ShortCode, durable: u64) -> Option<u64> {
        let key = self.clicks_key(code);
        let after: u64 = self
            .call(Command::Claim, || {
                self.pool.eval(CLAIM_SCRIPT, key, vec![durable.to_string()])
            })
            .await?;
        Some(after.saturating_sub(1))
    }

    /// PINGs every pooled connection through the breaker, with the request path's
    /// timeout, and remembers whether all answered. Run on a timer (`startup`'s probe task),
    /// so readiness follows Redis without waiting for traffic: a Redis that came back is
    /// seen at the next probe (the probe is also the breaker's trial request once its
    /// open period is over), and one that is paused or slower than the redirect path can
    /// wait for counts as degraded, though its connections are up.
    pub async fn probe(&self) {
        let mut ok = true;
        for client in self.pool.clients() {
            ok &= self
                .call(Command::Ping, || client.ping::<()>(None))
                .await
                .is_some();
        }
        self.probe_ok.store(ok, Ordering::Relaxed);
    }

    /// For `/readyz`: connected, the breaker closed, and the last probe answered.
    pub fn health(&self) -> Health {
        if self.pool.is_connected()
            && self.breaker.state() == BreakerState::Closed
            && self.probe_ok.load(Ordering::Relaxed)
        {
            Health::Ok
        } else {
            Health::Degraded
        }
    }

    /// Closes the pool's connections (at shutdown).
    pub async fn close(&self) {
        let _ = self.pool.quit().await;
    }

    /// A pooled client with the write path's options.
    fn writer(&self) -> WithOptions<Client> {
        self.pool.next().with_options(&self.writes)
    }

    async fn set(&self, code: &ShortCode, value: Bytes, ttl: Duration, write: Write) {
        let key = self.link_key(code);
        let expire = Some(Expiration::PX(
            i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
        ));
        self.call(Command::Set, || async {
            match write {
                Write::Fill => {
                    let options = Some(SetOptions::NX);
                    self.pool
                        .set::<(), _, _>(key, value, expire, options, false)
                        .await
                }
                Write::Replace => {
                    self.writer()
                        .set::<(), _, _>(key, value, expire, None, false)
                        .await
                }
            }
        })
        .await;
    }

    async fn publish(&self, code: &ShortCode) {
        let sent = self
            .call(Command::Publish, || async {
                // Pub/sub commands are per connection, not pooled: any one will do.
                self.writer()
                    .publish::<i64, _, _>(self.channel.as_str(), code.as_str())
                    .await
            })
            .await;
        if sent.is_some() {
            self.meters.sent.increment(1);
        }
    }

    /// One command through the breaker, timed and counted; `None` if it was skipped
    /// (breaker open), timed out or failed. fred applies the command timeout and the
    /// buffer bound.
    async fn call<T, F, Fut>(&self, command: Command, run: F) -> Option<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let Some(permit) = self.breaker.try_acquire() else {
            self.meters.skipped.increment(1);
            return None;
        };
        let started = Instant::now();
        let result = run().await;
        self.meters.durations[command as usize].record(started.elapsed().as_secs_f64());
        match result {
            Ok(value) => {
                permit.succeeded();
                Some(value)
            }
            Err(error) => {
                permit.failed();
                if *error.kind() == ErrorKind::Timeout {
                    self.meters.timeout.increment(1);
                } else {
                    self.meters.error.increment(1);
                    tracing::debug!(%error, command = command.label(), "redis command failed");
                }
                None
            }
        }
    }

    /// How long `link` may live in Redis: the configured TTL, cut short by the link's own
    /// expiry; `None` if it has already expired (nothing worth caching).
    fn link_ttl(&self, link: &Link) -> Option<Duration> {
        let Some(expires_at) = link.expires_at else {
            return Some(self.ttl);
        };
        let left = expires_at - OffsetDateTime::now_utc();
        let left = Duration::try_from(left).ok().filter(|d| !d.is_zero())?;
        Some(left.min(self.ttl))
    }

    fn link_key(&self, code: &ShortCode) -> String {
        format!("{}link:{code}", self.prefix)
    }

    fn clicks_key(&self, code: &ShortCode) -> String {
        format!("{}clicks:{code}", self.prefix)
    }
}

/// fred with the limits its defaults leave open: a command timeout (default: none), a
/// bounded command buffer (default: unbounded), a connect timeout, detection of a hung
/// connection, and reconnection forever with capped exponential backoff.
fn builder(settings: &RedisSettings) -> Result<Builder, RedisError> {
    let mut config = Config::from_url(settings.url.expose())?;
    // fred's default gives up if the *first* connection fails; the service must start
    // before Redis does (and outlive it), so the first connect retries like any other.
    config.fail_fast = false;
    let mut builder = Builder::from_config(config);
    builder
        .with_performance_config(|perf| {
            perf.default_command_timeout = settings.command_timeout();
            // Room for bursts of invalidations before the subscriber task falls behind
            // (which it handles by clearing its L1, so this is about cost, not safety).
            perf.broadcast_channel_capacity = 4096;
        })
        .with_connection_config(|conn| {
            conn.connection_timeout = Duration::from_millis(settings.connect_timeout_ms);
            conn.internal_command_timeout = Duration::from_millis(settings.connect_timeout_ms);
            conn.max_command_buffer_len = settings.max_command_buffer.get();
            // A command that is not retried: a timeout is answered from the store, and
            // retrying would only keep a dead command alive in the buffer.
            conn.max_command_attempts = 1;
            conn.unresponsive = UnresponsiveConfig {
                max_timeout: Some(Duration::from_secs(2)),
                interval: Duration::from_millis(500),
            };
        })
        // 0 attempts = forever; 10 ms doubling up to 2 s.
        .set_policy(ReconnectPolicy::new_exponential(0, 10, 2_000, 2));
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shortener_core::{RedirectKind, TargetUrl};

    fn settings() -> RedisSettings {
        let mut settings = crate::config::Settings::from_defaults()
            .expect("defaults")
            .redis;
        settings.url = "redis://127.0.0.1:1".into();
        settings
    }

    fn link(expires_in: Option<time::Duration>) -> Link {
        let now = OffsetDateTime::now_utc();
        Link {
            code: ShortCode::parse("abc").expect("valid"),
            target: TargetUrl::parse("https://example.com/").expect("valid"),
            created_at: now,
            expires_at: expires_in.map(|d| now + d),
            redirect: RedirectKind::Found,
            max_clicks: None,
            owner: None,
        }
    }

    #[tokio::test]
    async fn ttls_never_outlive_the_link() {
        let (l2, _subscriber) = L2Cache::connect(&settings()).expect("builds");
        assert_eq!(l2.link_ttl(&link(None)), Some(l2.ttl));
        let soon = l2
            .link_ttl(&link(Some(time::Duration::seconds(10))))
            .expect("still valid");
        assert!(soon <= Duration::from_secs(10) && soon > Duration::from_secs(8));
        assert_eq!(l2.link_ttl(&link(Some(time::Duration::seconds(-1)))), None);
        assert_eq!(
            l2.link_ttl(&link(Some(time::Duration::days(365)))),
            Some(l2.ttl)
        );
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_unknown_not_an_error() {
        let (l2, _subscriber) = L2Cache::connect(&settings()).expect("builds");
        let code = ShortCode::parse("abc").expect("valid");
        assert!(matches!(l2.get(&code).await, Lookup::AskTheStore));
        assert_eq!(l2.health(), Health::Degraded);
        assert_eq!(l2.claim_click(&code, 0).await, None);
    }
}
