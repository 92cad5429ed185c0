//! Rate limits: GCRA (the generic cell rate algorithm) over a fixed table of atomics.
//!
//! **The algorithm.** Each client has a *theoretical arrival time* (TAT): when its
//! budget would be back to empty if it kept sending at exactly the allowed rate. A
//! request at `now` is allowed if `max(TAT, now) + T - now <= burst * T` (`T` = one
//! request's share of a second); then TAT moves on by `T`. Otherwise it is refused, and
//! the client may retry after the difference. One number per client, no timers and no
//! background refill: the same sustained rate and burst as a token bucket.
//!
//! **Bounded memory.** The TATs live in one fixed array of `limits.table_slots`
//! `AtomicU64`s, and a client is hashed (with a per-process random seed, so an attacker
//! cannot aim at a slot) to one of them. However many addresses send, the table stays
//! the same size (2 MiB for the default 262,144 slots); a crate with a map per client
//! (governor's keyed limiter) needs a sweep to forget idle clients and grows between
//! sweeps under a flood of new addresses. The price: two clients hashed to one slot
//! share a budget. With 10,000 active clients and 262,144 slots, 96% have a slot of
//! their own; a shared slot only makes the limit stricter, never looser.
//!
//! **Per instance.** Each instance counts for itself; N instances behind a balancer
//! allow up to N times the rate (docs/security.md says why this is the trade-off
//! chosen: a shared counter in Redis would put a network round trip on every request).

use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shortener_config::{LimitSettings, Rate};

/// A refused request: when it may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// How long until one more request fits.
    pub retry_after: Duration,
}

/// One limit: a rate, and the table of TATs.
pub struct Limiter {
    /// Nanoseconds between requests at the sustained rate (`T`).
    interval: u64,
    /// How far ahead of now a TAT may run (`burst * T`).
    tolerance: u64,
    slots: Box<[AtomicU64]>,
    hasher: foldhash::quality::RandomState,
    clock: quanta::Clock,
    /// The clock's reading at construction: TATs are nanoseconds since then.
    start: u64,
}

impl Limiter {
    /// A limiter for `rate` with `slots` slots; `None` when the rate is 0 (no limit).
    pub fn new(rate: Rate, slots: usize) -> Option<Self> {
        if rate.per_s == 0 {
            return None;
        }
        let interval = 1_000_000_000 / u64::from(rate.per_s);
        let clock = quanta::Clock::new();
        Some(Self {
            interval,
            tolerance: interval * u64::from(rate.burst.max(1)),
            slots: (0..slots.max(1)).map(|_| AtomicU64::new(0)).collect(),
            hasher: foldhash::quality::RandomState::default(),
            start: clock.raw(),
            clock,
        })
    }

    fn now(&self) -> u64 {
        // Offset by the tolerance so that a fresh slot (TAT 0) starts with a full burst.
        self.clock.delta_as_nanos(self.start, self.clock.raw()) + self.tolerance
    }

    /// Counts one request of `key`, or refuses it.
    pub fn check(&self, key: impl Hash) -> Result<(), Limited> {
        let slot = &self.slots[(self.hasher.hash_one(key) % self.slots.len() as u64) as usize];
        let now = self.now();
        let mut tat = slot.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now) + self.interval;
            if next - now > self.tolerance {
                return Err(Limited {
                    retry_after: Duration::from_nanos(next - now - self.tolerance),
                });
            }
            match slot.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }
}

/// Which limit refused a request (the `limit` label of `shortener_rate_limited_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `limits.api_per_client`.
    ApiClient,
    /// `limits.api_per_key`.
    ApiKey,
    /// `limits.redirect_miss_per_client`.
    RedirectMiss,
    /// `limits.cached_redirect_per_client`.
    CachedRedirect,
}

impl Kind {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::ApiClient => "api_client",
            Self::ApiKey => "api_key",
            Self::RedirectMiss => "redirect_miss",
            Self::CachedRedirect => "cached_redirect",
        }
    }
}

/// Every limit of `[limits]`; each `None` when off.
pub struct Limits {
    api_client: Option<Limiter>,
    api_key: Option<Limiter>,
    redirect_miss: Option<Limiter>,
    cached_redirect: Option<Limiter>,
}

impl Limits {
    /// The limits `settings` configure (all off when `limits.enabled` is false).
    pub fn new(settings: &LimitSettings) -> Self {
        let limiter = |rate: Rate| {
            settings
                .enabled
                .then(|| Limiter::new(rate, settings.table_slots.get()))
                .flatten()
        };
        Self {
            api_client: limiter(settings.api_per_client),
            api_key: limiter(settings.api_per_key),
            redirect_miss: limiter(settings.redirect_miss_per_client),
            cached_redirect: limiter(settings.cached_redirect_per_client),
        }
    }

    /// Whether cached redirects are limited at all (checked before hashing anything).
    pub fn limits_cached_redirects(&self) -> bool {
        self.cached_redirect.is_some()
    }

    /// Counts a request of `kind` from the client `client` names; the address is only
    /// worked out (`X-Forwarded-For` parsed) when that limit is on.
    pub fn client(
        &self,
        kind: Kind,
        client: impl FnOnce() -> IpAddr,
    ) -> Result<(), (Kind, Limited)> {
        let limiter = match kind {
            Kind::ApiClient => &self.api_client,
            Kind::RedirectMiss => &self.redirect_miss,
            Kind::CachedRedirect => &self.cached_redirect,
            Kind::ApiKey => &None,
        };
        match limiter {
            Some(limiter) => limiter.check(client_key(client())).map_err(|l| (kind, l)),
            None => Ok(()),
        }
    }

    /// Counts an API request made with the key `id`.
    pub fn key(&self, id: &str) -> Result<(), (Kind, Limited)> {
        match &self.api_key {
            Some(limiter) => limiter.check(id).map_err(|l| (Kind::ApiKey, l)),
            None => Ok(()),
        }
    }
}

/// The part of an address that names a client: all of IPv4, the /64 network of IPv6
/// (one subscriber gets a /64 or more, so its addresses must share one budget).
fn client_key(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u64::from(u32::from(v4)),
            None => (u128::from(v6) >> 64) as u64 | 1 << 63,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_s: u32, burst: u32) -> Limiter {
        Limiter::new(Rate { per_s, burst }, 1024).expect("a rate")
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let limiter = limiter(10, 5);
        for _ in 0..5 {
            assert_eq!(limiter.check("a"), Ok(()));
        }
        let refused = limiter.check("a").expect_err("past the burst");
        // The next request fits one interval (100 ms) after the burst began, less the
        // few microseconds this test took.
        assert!(refused.retry_after <= Duration::from_millis(100));
        assert!(refused.retry_after > Duration::from_millis(90));
        assert_eq!(limiter.check("b"), Ok(()), "another key has its own budget");
    }

    #[test]
    fn the_budget_refills_at_the_rate() {
        let limiter = limiter(1_000, 2);
        assert!(limiter.check(1).is_ok() && limiter.check(1).is_ok());
        assert!(limiter.check(1).is_err());
        std::thread::sleep(Duration::from_millis(3));
        assert_eq!(limiter.check(1), Ok(()));
    }

    #[test]
    fn a_zero_rate_is_no_limiter_and_a_disabled_config_limits_nothing() {
        assert!(Limiter::new(Rate { per_s: 0, burst: 0 }, 8).is_none());
        let settings = LimitSettings {
            enabled: false,
            api_per_client: Rate { per_s: 1, burst: 1 },
            api_per_key: Rate { per_s: 1, burst: 1 },
            redirect_miss_per_client: Rate { per_s: 1, burst: 1 },
            cached_redirect_per_client: Rate { per_s: 1, burst: 1 },
            table_slots: std::num::NonZeroUsize::MIN,
        };
        let limits = Limits::new(&settings);
        let ip = IpAddr::from([192, 0, 2, 1]);
        for _ in 0..10 {
            assert!(limits.client(Kind::ApiClient, || ip).is_ok());
            assert!(limits.key("k").is_ok());
        }
        assert!(!limits.limits_cached_redirects());
    }

    #[test]
    fn ipv6_clients_are_their_slash_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert_eq!(client_key(mapped), client_key(IpAddr::from([192, 0, 2, 1])));
    }

    #[test]
    fn concurrent_requests_never_pass_more_than_the_burst() {
        let limiter = std::sync::Arc::new(limiter(1, 100));
        let passed: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let limiter = limiter.clone();
                    scope.spawn(move || (0..1_000).filter(|_| limiter.check("x").is_ok()).count())
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).sum()
        });
        assert_eq!(passed, 100);
    }
}
