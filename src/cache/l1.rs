//! L1, the in-process link cache (moka): what makes a redirect cost microseconds instead
//! of a store round-trip.
//!
//! - **Single-flight misses.** A miss goes through moka's `try_get_with`, which runs one
//!   loader per key and parks every concurrent caller for that key on its result: a
//!   stampede of 10,000 requests for one cold code does one store read.
//! - **Negative entries.** An unknown code is cached as [`CacheEntry::Missing`] for a
//!   short TTL, so scanners hammering random codes hit memory, not the store.
//! - **Bounded by weight**, not entry count: entries are weighed by their key and target
//!   length, so a flood of 2 KB targets cannot blow the memory budget.
//! - **Answers without waiting.** [`LinkCache::get_now`] polls moka's lookup once, in
//!   place: a hit is answered synchronously, so the redirect handler needs no future of
//!   its own (see `http::app`). Anything that would wait falls back to the async path.
//! - **A per-thread front** ([`super::front`]) answers repeat hits on hot links without moka's
//!   bookkeeping, invalidated with it.
//! - **Ready-to-send entries.** A hit hands back an `Arc<CachedLink>` whose `Location`
//!   (and, for permanent redirects, `Cache-Control`) header values were built once, when
//!   the entry was loaded. Cloning a `HeaderValue` is a reference-count bump, so a hit
//!   allocates nothing for headers.
//!
//! This module uses `http`'s `HeaderValue`/`StatusCode` as plain data types (they are
//! the vocabulary of what a redirect *is*); it knows nothing about hyper or sockets.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::{HeaderValue, StatusCode};
use metrics::Counter;
use moka::Expiry;
use moka::future::Cache;
use shortener_core::{Link, ShortCode};
use time::OffsetDateTime;

use super::front;
use crate::config::CacheSettings;
use crate::metrics::CACHE_REQUESTS;

/// What the cache remembers about a code.
#[derive(Clone, Debug)]
pub enum CacheEntry {
    /// The link exists; everything needed to answer a redirect.
    Found(Arc<CachedLink>),
    /// The store had no such code when last asked.
    Missing,
}

/// A link prepared for answering redirects.
#[derive(Debug)]
pub struct CachedLink {
    /// The link's code (an `Arc`: the click recorder clones it per redirect).
    pub code: ShortCode,
    /// 301, 302, 307 or 308.
    pub status: StatusCode,
    /// The target, pre-validated as a header value (and, being visible ASCII, readable
    /// back as text when query forwarding needs to append to it).
    pub location: HeaderValue,
    /// After this instant the link answers 410.
    pub expires_at: Option<OffsetDateTime>,
    /// The link's click budget, if it has `max_clicks`.
    pub budget: Option<ClickBudget>,
}

/// A link's `max_clicks` and the clicks this process has counted against it (shared by
/// every cache generation of the entry: see `LinkService`).
#[derive(Debug)]
pub struct ClickBudget {
    /// The link's `max_clicks`.
    pub max_clicks: u64,
    /// Clicks counted so far.
    pub used: Arc<AtomicU64>,
}

impl CachedLink {
    /// Prepares `link` for redirects.
    ///
    /// There is no per-link `Cache-Control`: every permanent redirect that never expires
    /// sends the same one, which the service holds once (40 bytes less per cached link;
    /// see `benches/cache_footprint.rs`).
    pub fn new(link: &Link, budget: Option<Arc<AtomicU64>>) -> Self {
        Self {
            code: link.code.clone(),
            status: StatusCode::from_u16(link.redirect.status())
                .expect("RedirectKind only holds valid 3xx codes"),
            location: HeaderValue::from_str(link.target.as_str())
                .expect("TargetUrl is visible ASCII, hence a valid header value"),
            expires_at: link.expires_at,
            budget: link
                .max_clicks
                .zip(budget)
                .map(|(max_clicks, used)| ClickBudget { max_clicks, used }),
        }
    }

    /// Whether the link has expired at `now`.
    pub fn is_expired_at(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// `Cache-Control: private, max-age=<secs>`: `private` because a shared cache (CDN,
/// corporate proxy) would keep serving the redirect after a delete, for everyone.
pub fn cache_control_max_age(secs: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("private, max-age={secs}"))
        .expect("digits and ASCII are a valid header value")
}

/// Metric handles resolved once: the hot path increments handles, never looks names up.
#[derive(Clone)]
struct Meters {
    hit: Counter,
    negative_hit: Counter,
    miss: Counter,
}

/// The moka-backed link cache. Clones are handles to the same cache (the invalidation
/// listener holds one).
#[derive(Clone)]
pub struct LinkCache {
    /// foldhash, seeded per process, instead of moka's default SipHash: hashing the code
    /// was ~15% of a cache hit. Codes in requests are attacker-chosen, and the random
    /// seed is what keeps them from being crafted into collisions.
    inner: Cache<ShortCode, CacheEntry, foldhash::fast::RandomState>,
    front: Arc<front::FrontTable>,
    meters: Meters,
}

impl LinkCache {
    /// A cache sized and timed by `[cache]`.
    pub fn new(settings: &CacheSettings) -> Self {
        let inner = Cache::builder()
            .max_capacity(settings.max_capacity_bytes.get())
            .weigher(weigh)
            .expire_after(TieredExpiry {
                found: Duration::from_secs(settings.ttl_s.get()),
                missing: Duration::from_secs(settings.negative_ttl_s),
            })
            .build_with_hasher(foldhash::fast::RandomState::default());
        Self {
            inner,
            front: Arc::new(front::FrontTable::new(front::FRESH_FOR)),
            meters: Meters {
                hit: metrics::counter!(CACHE_REQUESTS, "result" => "hit"),
                negative_hit: metrics::counter!(CACHE_REQUESTS, "result" => "negative_hit"),
                miss: metrics::counter!(CACHE_REQUESTS, "result" => "miss"),
            },
        }
    }

    /// The entry for `code`, loading it with `load` on a miss. Concurrent misses for one
    /// code share a single `load`. Load errors are not cached; every waiter gets the error.
    pub async fn get_or_load<F, Fut, E>(&self, code: &str, load: F) -> Result<CacheEntry, Arc<E>>
    where
        F: FnOnce(ShortCode) -> Fut,
        Fut: Future<Output = Result<Option<Arc<CachedLink>>, E>>,
        E: Send + Sync + 'static,
    {
        // Fast path: look up by `&str` (ShortCode: Borrow<str>), so a hit allocates no key.
        if let Some(entry) = self.inner.get(code).await {
            self.count_hit(matches!(entry, CacheEntry::Found(_)));
            return Ok(entry);
        }
        self.meters.miss.increment(1);
        // Boxed: moka's single-flight machinery makes this future ~1.7 KB. Inline, every
        // hit would carry (and copy) that space; boxed, only misses pay an allocation.
        Box::pin(self.load(code, load)).await
    }

    /// The entry for `code` if the cache holds it *and* can say so without waiting;
    /// `None` otherwise (not cached, or moka would have to wait, e.g. for its own
    /// housekeeping). Not counted: the caller counts with [`LinkCache::count_hit`] once
    /// it uses the entry, or falls back to [`LinkCache::get_or_load`], which counts.
    ///
    /// The plain version is `self.inner.get(code).await` inside the redirect's `async`
    /// block. moka's lookup is an `async fn` that almost never waits; this polls it once
    /// with a no-op waker and drops it if it is pending, so a hit needs no future of the
    /// redirect's own (boxing that future per request was malloc, a copy and a free:
    /// docs/benchmarks.md, "Counting instructions instead of requests").
    ///
    /// Why that is safe: a waker is only how a pending future asks to be polled again.
    /// With a no-op waker nobody will, so the future must be dropped, not kept; dropping
    /// a future cancels it, and moka's futures are cancel-safe (an interrupted operation
    /// leaves nothing half-done, and the fallback's lookup simply runs again).
    ///
    /// The thread's front is asked first, and a link found in moka is put there.
    pub fn get_now(&self, code: &str) -> Option<CacheEntry> {
        let hashed = self.front.hash(code);
        if let Some(link) = self.front.get(hashed, code) {
            return Some(CacheEntry::Found(link));
        }
        // Before the lookup: an invalidation after this point voids the fill below.
        let epochs = self.front.epochs(hashed);
        let lookup = pin!(self.inner.get(code));
        let entry = match lookup.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(entry) => entry,
            Poll::Pending => None,
        };
        if let Some(CacheEntry::Found(link)) = &entry {
            self.front.fill(hashed, epochs, link);
        }
        entry
    }

    /// Counts a hit: of a link (`found`), or of a cached "no such code".
    pub fn count_hit(&self, found: bool) {
        if found {
            self.meters.hit.increment(1);
        } else {
            self.meters.negative_hit.increment(1);
        }
    }

    /// The miss path of [`LinkCache::get_or_load`].
    async fn load<F, Fut, E>(&self, code: &str, load: F) -> Result<CacheEntry, Arc<E>>
    where
        F: FnOnce(ShortCode) -> Fut,
        Fut: Future<Output = Result<Option<Arc<CachedLink>>, E>>,
        E: Send + Sync + 'static,
    {
        // The key is allocated only now, on the miss path. A string that cannot be a code
        // is unknown by definition: answer without caching it (it would only waste space).
        let Ok(key) = ShortCode::parse(code) else {
            return Ok(CacheEntry::Missing);
        };
        self.inner
            .try_get_with(key.clone(), async move {
                Ok(match load(key).await? {
                    Some(link) => CacheEntry::Found(link),
                    None => CacheEntry::Missing,
                })
            })
            .await
    }

    /// Forgets `code` (after a create, so a cached "unknown" does not hide the new link;
    /// after a delete, so the link stops redirecting at once on this instance).
    pub async fn invalidate(&self, code: &ShortCode) {
        self.inner.invalidate(code).await;
        self.front.forget(code.as_str());
    }

    /// Entries held (approximate until moka's pending bookkeeping has run).
    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }

    /// Runs moka's pending bookkeeping (admission, eviction, expiry) now instead of on
    /// a later access: for measurements and tests that need settled numbers.
    pub async fn run_pending_tasks(&self) {
        self.inner.run_pending_tasks().await;
    }

    /// Forgets every entry (another instance's changes may have been missed).
    pub fn clear(&self) {
        self.inner.invalidate_all();
        self.front.forget_all();
    }
}

/// The heap bytes an entry costs, so that `cache.max_capacity_bytes` bounds memory.
///
/// Measured, not guessed: `tests/cache_footprint.rs` counts every allocation of a
/// cache full of entries (with malloc's per-chunk overhead) and fails if this charges
/// less than an entry costs, or more than 25% above it. It used to charge a flat 160
/// bytes plus the text, about a quarter of the real cost: a "64 MiB" cache held links
/// worth ~240 MiB.
pub fn weigh(code: &ShortCode, entry: &CacheEntry) -> u32 {
    /// moka's bookkeeping per entry: its hash-table bucket, entry record, access-order
    /// node and expiry timer (eight allocations).
    const MOKA_ENTRY: usize = 470;
    /// The key's shared allocation, besides its text.
    const KEY: usize = 40;
    /// A [`CachedLink`] besides its target's bytes: the `Arc` and its fields, and the
    /// shared buffer behind `Location` (three allocations).
    const LINK: usize = 250;
    let value = match entry {
        CacheEntry::Found(link) => LINK + link.location.len(),
        CacheEntry::Missing => 0,
    };
    u32::try_from(MOKA_ENTRY + KEY + code.as_str().len() + value).unwrap_or(u32::MAX)
}

/// Found links live `found`, unknown codes `missing` (shorter), from insertion.
struct TieredExpiry {
    found: Duration,
    missing: Duration,
}

impl Expiry<ShortCode, CacheEntry> for TieredExpiry {
    fn expire_after_create(
        &self,
        _: &ShortCode,
        entry: &CacheEntry,
        _: Instant,
    ) -> Option<Duration> {
        Some(match entry {
            CacheEntry::Found(_) => self.found,
            CacheEntry::Missing => self.missing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shortener_core::{RedirectKind, TargetUrl};
    use std::num::NonZeroU64;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn link(redirect: RedirectKind, expires_at: Option<OffsetDateTime>) -> Link {
        Link {
            code: ShortCode::parse("abc").expect("valid"),
            target: TargetUrl::parse("https://example.com/x?y=1").expect("valid"),
            created_at: OffsetDateTime::now_utc(),
            expires_at,
            redirect,
            max_clicks: None,
            owner: None,
        }
    }

    fn prepared(target: &str) -> Arc<CachedLink> {
        let mut link = link(RedirectKind::Found, None);
        link.target = TargetUrl::parse(target).expect("valid");
        Arc::new(CachedLink::new(&link, None))
    }

    fn settings(max_capacity_bytes: u64) -> CacheSettings {
        CacheSettings {
            max_capacity_bytes: NonZeroU64::new(max_capacity_bytes).expect("a capacity"),
            ttl_s: NonZeroU64::new(60).expect("> 0"),
            negative_ttl_s: 60,
        }
    }

    #[test]
    fn cached_links_carry_ready_headers() {
        let cached = CachedLink::new(&link(RedirectKind::Found, None), None);
        assert_eq!(cached.status, StatusCode::FOUND);
        assert_eq!(cached.location, "https://example.com/x?y=1");
        assert!(cached.budget.is_none());

        let permanent = CachedLink::new(&link(RedirectKind::PermanentRedirect, None), None);
        assert_eq!(permanent.status, StatusCode::PERMANENT_REDIRECT);

        let mut limited = link(RedirectKind::Found, None);
        limited.max_clicks = Some(5);
        let budget = Arc::new(AtomicU64::new(2));
        let cached = CachedLink::new(&limited, Some(budget));
        assert!(
            cached
                .budget
                .as_ref()
                .is_some_and(|b| b.max_clicks == 5 && b.used.load(Ordering::SeqCst) == 2)
        );
    }

    #[tokio::test]
    async fn unknown_codes_are_cached_as_missing_and_invalidation_forgets_them() {
        let cache = LinkCache::new(&settings(1 << 20));
        let loads = AtomicUsize::new(0);
        let load = |_| async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(None)
        };
        assert!(matches!(
            cache.get_or_load("nope", load).await,
            Ok(CacheEntry::Missing)
        ));
        assert!(matches!(
            cache.get_or_load("nope", load).await,
            Ok(CacheEntry::Missing)
        ));
        assert_eq!(loads.load(Ordering::SeqCst), 1);

        cache
            .invalidate(&ShortCode::parse("nope").expect("valid"))
            .await;
        assert!(matches!(
            cache.get_or_load("nope", load).await,
            Ok(CacheEntry::Missing)
        ));
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn load_errors_are_not_cached() {
        let cache = LinkCache::new(&settings(1 << 20));
        let failing =
            |_| async { Err::<Option<Arc<CachedLink>>, _>(std::io::Error::other("down")) };
        assert!(cache.get_or_load("abc", failing).await.is_err());
        let working = |_| async { Ok::<_, std::io::Error>(Some(prepared("https://example.com/"))) };
        assert!(matches!(
            cache.get_or_load("abc", working).await,
            Ok(CacheEntry::Found(_))
        ));
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_byte_budget() {
        let budget = 20_000;
        let cache = LinkCache::new(&settings(budget));
        let long_target = format!("https://example.com/{}", "x".repeat(1_000));
        for i in 0..500 {
            let load = |_| async { Ok::<_, std::io::Error>(Some(prepared(&long_target))) };
            cache
                .get_or_load(&format!("code{i}"), load)
                .await
                .expect("load");
        }
        cache.inner.run_pending_tasks().await;
        // 500 entries of ~2.2 KB each would be ~1.1 MB; the budget holds ~9 of them.
        assert!(
            cache.inner.weighted_size() <= budget,
            "{} > {budget}",
            cache.inner.weighted_size()
        );
        assert!(cache.inner.entry_count() < 20);
    }

    #[test]
    fn weight_grows_with_the_target() {
        let code = ShortCode::parse("abc").expect("valid");
        let small = weigh(&code, &CacheEntry::Missing);
        let big = weigh(
            &code,
            &CacheEntry::Found(prepared("https://example.com/a-longer-target")),
        );
        assert!(big > small);
    }

    #[tokio::test]
    async fn get_now_answers_cached_entries_without_waiting_and_nothing_else() {
        let cache = LinkCache::new(&settings(1 << 20));
        assert!(
            cache.get_now("abc").is_none(),
            "not cached: the async path loads it"
        );
        let loaded = cache
            .get_or_load("abc", |_| async {
                Ok::<_, std::io::Error>(Some(prepared("https://example.com/")))
            })
            .await
            .expect("loaded");
        assert!(matches!(loaded, CacheEntry::Found(_)));
        match cache.get_now("abc") {
            Some(CacheEntry::Found(link)) => assert_eq!(link.location, "https://example.com/"),
            other => panic!("expected the cached link, got {other:?}"),
        }
        cache
            .get_or_load("nope", |_| async { Ok::<_, std::io::Error>(None) })
            .await
            .expect("loaded");
        assert!(matches!(cache.get_now("nope"), Some(CacheEntry::Missing)));
        cache
            .invalidate(&ShortCode::parse("abc").expect("valid"))
            .await;
        assert!(cache.get_now("abc").is_none(), "invalidated");
    }
}
