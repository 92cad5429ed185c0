//! The application service: what the shortener *does*, independent of HTTP.
//!
//! Handlers in `http` translate requests into calls here; this module talks only to the
//! narrow [`LinkStore`] and [`StatsStore`] traits and the [`LinkCache`]. It owns the
//! rules: a create is acknowledged only once the store made it durable; a colliding
//! generated code is redrawn; a taken alias is a conflict; expired and exhausted
//! (`max_clicks`) links are gone; and the redirect path ([`LinkService::resolve`]) is
//! answered from memory whenever possible. Recording clicks is not its business: the
//! HTTP layer hands them to `crate::clicks` after answering.

mod budget;
pub mod keys;
pub mod targets;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::HeaderValue;
use metrics::Counter;
use shortener_core::{
    Alias, CodeGenerator, InsertOutcome, Link, LinkStore, RedirectKind, ShortCode, StoreError,
    TargetUrl,
};
use time::OffsetDateTime;

use shortener_core::aggregate::Counts;
use shortener_core::report::Report;
use shortener_core::stats::{LinkStats, StatsQuery, StatsStore};

use crate::cache::l2::{self, L2Cache, Lookup};
use crate::cache::{CacheEntry, CachedLink, LinkCache, cache_control_max_age};
use crate::config::Settings;
use crate::metrics::{CODE_COLLISIONS, LINKS_CREATED, STORE_CORRUPT_ROWS};
use crate::store_layers::MeteredStore;
use budget::{Budgets, Keeper};
use keys::Caller;
use targets::Targets;

/// A validated request to create a link. Every field is already a domain type, so the
/// service never sees unparsed input.
#[derive(Debug, Clone)]
pub struct NewLink {
    /// Where the link points.
    pub target: TargetUrl,
    /// A custom code, or `None` to generate one.
    pub alias: Option<Alias>,
    /// When the link stops working.
    pub expires_at: Option<OffsetDateTime>,
    /// The redirect status it answers with.
    pub redirect: RedirectKind,
    /// Clicks after which the link answers 410.
    pub max_clicks: Option<u64>,
}

/// What a redirect request resolves to.
#[derive(Debug)]
pub enum Resolution {
    /// Redirect with this prepared link.
    Redirect(Arc<CachedLink>),
    /// No such code.
    NotFound,
    /// The link existed but has expired.
    Expired,
    /// The link has used up its `max_clicks`.
    Exhausted,
}

/// Why a service call failed. The HTTP layer maps each variant to one status.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The requested alias is already in use.
    #[error("alias is already taken")]
    AliasTaken,
    /// No link with this code.
    #[error("no link with this code")]
    NotFound,
    /// A list cursor that is not a code.
    #[error("cursor is not a valid code")]
    InvalidCursor,
    /// The target policy refuses where the link would point.
    #[error(transparent)]
    TargetNotAllowed(#[from] shortener_core::policy::PolicyError),
    /// `max_clicks` is zero.
    #[error("max_clicks must be at least 1")]
    ZeroMaxClicks,
    /// `expires_at` is not in the future.
    #[error("expires_at must be in the future")]
    ExpiryInPast,
    /// Every generated code collided (the code space is nearly full, or too small).
    #[error("could not find a free code after {0} attempts")]
    CodesExhausted(u32),
    /// The store failed. Shared (`Arc`) because one failed load answers every waiter.
    #[error(transparent)]
    Store(Arc<StoreError>),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        Self::Store(Arc::new(e))
    }
}

/// The link service. One per process, shared behind an `Arc`.
pub struct LinkService {
    store: Arc<dyn LinkStore>,
    /// Click statistics (read by the stats API; written by the click pipeline).
    stats: Arc<dyn StatsStore>,
    cache: LinkCache,
    generator: CodeGenerator,
    /// See `links.max_create_attempts`.
    max_create_attempts: u32,
    /// See `links.permanent_redirect_max_age_s`.
    permanent_max_age: Duration,
    /// `Cache-Control` of a permanent redirect that never expires, built once.
    permanent_cache_control: HeaderValue,
    links_created: Counter,
    collisions: Counter,
    /// The click budgets of `max_clicks` links: which counter decides, and this
    /// process's counters (see `service::budget`).
    budgets: Budgets,
    l2: Option<L2Cache>,
    /// `STORE_CORRUPT_ROWS`.
    corrupt_rows: Counter,
    /// Codes of undecodable rows already logged (at most [`MAX_CORRUPT_LOGGED`]).
    corrupt_logged: Mutex<HashSet<String>>,
    /// Where new links may point.
    targets: Arc<Targets>,
}

/// How many distinct undecodable rows one process logs by code; later ones are only
/// counted (in `shortener_store_corrupt_rows_skipped_total`).
const MAX_CORRUPT_LOGGED: usize = 1_024;

impl LinkService {
    /// Builds the service over `store` (wrapped with store metrics) as `settings` say.
    pub fn new(
        settings: &Settings,
        store: Arc<dyn LinkStore>,
        stats: Arc<dyn StatsStore>,
    ) -> Result<Self, crate::config::ConfigError> {
        let generator = settings.code_generator()?;
        let permanent_max_age = Duration::from_secs(settings.links.permanent_redirect_max_age_s);
        Ok(Self {
            budgets: Budgets::new(Keeper::choose(store.keeps_click_budgets(), false)),
            store: Arc::new(MeteredStore::new(store)),
            stats,
            cache: LinkCache::new(&settings.cache),
            generator,
            max_create_attempts: settings.links.max_create_attempts.get(),
            permanent_max_age,
            permanent_cache_control: cache_control_max_age(permanent_max_age.as_secs()),
            links_created: metrics::counter!(LINKS_CREATED),
            collisions: metrics::counter!(CODE_COLLISIONS),
            l2: None,
            corrupt_rows: metrics::counter!(STORE_CORRUPT_ROWS),
            corrupt_logged: Mutex::new(HashSet::new()),
            targets: Arc::new(Targets::without_file(&settings.targets)),
        })
    }

    /// The target policy (for the task that watches its blocklist file).
    pub fn targets(&self) -> Arc<Targets> {
        self.targets.clone()
    }

    /// The target policy with its blocklist file (read by `startup`, which also watches it).
    pub fn with_targets(mut self, targets: Arc<Targets>) -> Self {
        self.targets = targets;
        self
    }

    /// Adds the shared Redis tier between the in-process cache and the store.
    pub fn with_l2(mut self, l2: L2Cache) -> Self {
        self.l2 = Some(l2);
        self.budgets = self.budgets.with_redis();
        self
    }

    /// A handle to the in-process cache (for the invalidation listener).
    pub fn l1(&self) -> LinkCache {
        self.cache.clone()
    }

    /// Probes Redis once for readiness (nothing when it is not configured).
    pub async fn probe_l2(&self) {
        if let Some(l2) = &self.l2 {
            l2.probe().await;
        }
    }

    /// Redis as seen by readiness: `None` when it is not configured.
    pub fn l2_health(&self) -> Option<l2::Health> {
        self.l2.as_ref().map(L2Cache::health)
    }

    /// The configured max-age for permanent redirects.
    pub fn permanent_max_age(&self) -> Duration {
        self.permanent_max_age
    }

    /// `Cache-Control` for permanent redirects of links that never expire.
    pub fn permanent_cache_control(&self) -> &HeaderValue {
        &self.permanent_cache_control
    }

    /// Creates a link; returns it once it is durable.
    pub async fn create(&self, new: NewLink, caller: &Caller) -> Result<Link, ServiceError> {
        let now = now_truncated_to_ms();
        if new.expires_at.is_some_and(|at| at <= now) {
            return Err(ServiceError::ExpiryInPast);
        }
        if new.max_clicks == Some(0) {
            return Err(ServiceError::ZeroMaxClicks);
        }
        self.targets.current().check(&new.target)?;
        let mut link = Link {
            code: match &new.alias {
                Some(alias) => alias.clone().into_code(),
                None => self.generator.generate(),
            },
            target: new.target,
            created_at: now,
            expires_at: new.expires_at,
            redirect: new.redirect,
            max_clicks: new.max_clicks,
            owner: caller.owner.clone(),
        };
        let mut attempts = 1;
        while self.store.insert_if_absent(&link).await? == InsertOutcome::AlreadyExists {
            if new.alias.is_some() {
                return Err(ServiceError::AliasTaken);
            }
            self.collisions.increment(1);
            if attempts == self.max_create_attempts {
                return Err(ServiceError::CodesExhausted(attempts));
            }
            attempts += 1;
            link.code = self.generator.generate();
        }
        // Someone may have asked for this code before it existed: forget the cached
        // "unknown" so the new link redirects at once (bound: docs/caching.md).
        self.cache.invalidate(&link.code).await;
        if let Some(l2) = &self.l2 {
            l2.created(&link).await;
        }
        self.links_created.increment(1);
        Ok(link)
    }

    /// The link behind `code` from the store (authoritative, not cached), if `caller`
    /// may see it. Expired links are returned: their owner may still want to see them.
    /// Another owner's link is "not found", like a link that does not exist: an answer
    /// of its own would tell a caller which codes others use.
    pub async fn get(&self, code: &str, caller: &Caller) -> Result<Link, ServiceError> {
        let code = ShortCode::parse(code).map_err(|_| ServiceError::NotFound)?;
        self.store
            .get(&code)
            .await?
            .filter(|link| caller.sees(link))
            .ok_or(ServiceError::NotFound)
    }

    /// The link behind `code` with its all-time click totals.
    pub async fn get_with_clicks(
        &self,
        code: &str,
        caller: &Caller,
    ) -> Result<(Link, Counts), ServiceError> {
        let link = self.get(code, caller).await?;
        let clicks = self.stats.totals(&link.code).await?;
        Ok((link, clicks))
    }

    /// A page of links after `after`, each with its click totals: one store call.
    pub async fn list(
        &self,
        after: Option<&str>,
        limit: usize,
        caller: &Caller,
    ) -> Result<Vec<(Link, Counts)>, ServiceError> {
        // A cursor is the last code of the previous page: one that cannot be a code was
        // not issued by us.
        let after = after
            .map(ShortCode::parse)
            .transpose()
            .map_err(|_| ServiceError::InvalidCursor)?;
        let page = self
            .store
            .list(after, limit, caller.listing_owner())
            .await?;
        self.report_skipped(&page.skipped);
        Ok(page.links)
    }

    /// Counts the rows a listing skipped, and logs each one the first time this process
    /// meets it: a bad row is seen by every listing that passes it, and one line per
    /// listing would bury the log. The set of logged codes is bounded; past that, rows
    /// are still counted, just not logged again.
    fn report_skipped(&self, skipped: &[StoreError]) {
        if skipped.is_empty() {
            return;
        }
        self.corrupt_rows.increment(skipped.len() as u64);
        let mut logged = self
            .corrupt_logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for error in skipped {
            // `ListPage::skipped` holds only `Corrupt`, each naming its row.
            let StoreError::Corrupt { code, .. } = error else {
                continue;
            };
            if logged.len() < MAX_CORRUPT_LOGGED && logged.insert(code.clone()) {
                tracing::error!(
                    code = code.as_str(),
                    error = %Report(error),
                    "a stored link cannot be read; listings skip it (delete it to clear)"
                );
            }
        }
    }

    /// Statistics of an existing link over `query`.
    pub async fn stats(
        &self,
        code: &str,
        query: StatsQuery,
        caller: &Caller,
    ) -> Result<LinkStats, ServiceError> {
        let link = self.get(code, caller).await?;
        Ok(self.stats.link_stats(&link.code, query).await?)
    }

    /// Deletes the link; it stops redirecting on this instance immediately.
    pub async fn delete(&self, code: &str, caller: &Caller) -> Result<(), ServiceError> {
        // An admin deletes without reading the link first, so that a row that cannot be
        // decoded can still be cleared; anyone else must be shown to own it.
        let code = if caller.scopes.is_admin() {
            ShortCode::parse(code).map_err(|_| ServiceError::NotFound)?
        } else {
            self.get(code, caller).await?.code
        };
        let existed = self.store.delete(&code).await?;
        // Redis first: once the local entry is gone, a local miss must find the tombstone.
        if let Some(l2) = &self.l2 {
            l2.deleted(&code).await;
        }
        self.cache.invalidate(&code).await;
        self.budgets.forget(&code);
        if existed {
            Ok(())
        } else {
            Err(ServiceError::NotFound)
        }
    }

    /// The redirect hot path's synchronous half: the answer if it can be given without
    /// waiting, else `None` and the caller awaits [`LinkService::resolve`]. `None` for
    /// codes not in L1, and for clicks whose budget a shared counter keeps.
    pub fn resolve_now(&self, code: &str, is_click: bool) -> Option<Resolution> {
        if !ShortCode::is_valid(code) {
            return Some(Resolution::NotFound);
        }
        match self.decide(self.cache.get_now(code)?, is_click) {
            Decision::Answer(answer) => {
                // Counted only when answered here: `resolve` counts its own lookup.
                self.cache
                    .count_hit(!matches!(answer, Resolution::NotFound));
                Some(answer)
            }
            Decision::Claim(_) => None,
        }
    }

    /// The redirect hot path: answers from the cache, loading (once per code, however many
    /// callers) from the store on a miss. `is_click` (a GET, not a HEAD) consumes one of
    /// the link's `max_clicks`.
    pub async fn resolve(&self, code: &str, is_click: bool) -> Result<Resolution, ServiceError> {
        // Junk paths (`/favicon.ico`, `/../x`) are not codes: answer without touching the
        // cache, so they can neither evict real entries nor reach the store.
        if !ShortCode::is_valid(code) {
            return Ok(Resolution::NotFound);
        }
        let entry = self
            .cache
            .get_or_load(code, |code| self.load(code))
            .await
            .map_err(ServiceError::Store)?;
        match self.decide(entry, is_click) {
            Decision::Answer(answer) => Ok(answer),
            Decision::Claim(link) => {
                // Boxed: the claim may talk to Redis or the store, and its future inline
                // would make every redirect's future larger; only these clicks pay for it.
                let claim = self
                    .budgets
                    .claim(&link, self.store.as_ref(), self.l2.as_ref());
                let before = Box::pin(claim).await?;
                Ok(spend(link, before))
            }
        }
    }

    /// The redirect's rule, for both halves: what a cache entry answers. Unknown codes
    /// are 404, expired links 410; a link without `max_clicks` redirects; one with it
    /// redirects while clicks are left, by the counter that decides
    /// ([`budget`]), which may have to be asked first.
    fn decide(&self, entry: CacheEntry, is_click: bool) -> Decision {
        let link = match entry {
            CacheEntry::Found(link) if is_expired(&link) => {
                return Decision::Answer(Resolution::Expired);
            }
            CacheEntry::Found(link) => link,
            CacheEntry::Missing => return Decision::Answer(Resolution::NotFound),
        };
        let Some(budget) = &link.budget else {
            return Decision::Answer(Resolution::Redirect(link));
        };
        match self.budgets.claim_now(budget, is_click) {
            Some(before) => Decision::Answer(spend(link, before)),
            None => Decision::Claim(link),
        }
    }

    /// The cache's miss path: the link, prepared, with its click budget if it has one.
    /// From Redis if it knows the code, else from the store (then Redis is filled for
    /// the other instances).
    async fn load(&self, code: ShortCode) -> Result<Option<Arc<CachedLink>>, StoreError> {
        let link = match &self.l2 {
            None => self.store.get(&code).await?,
            Some(l2) => match l2.get(&code).await {
                Lookup::Found(link) => Some(link),
                Lookup::Missing => None,
                Lookup::AskTheStore => {
                    let link = self.store.get(&code).await?;
                    l2.fill(&code, link.as_ref()).await;
                    link
                }
            },
        };
        let Some(link) = link else {
            return Ok(None);
        };
        let budget = match link.max_clicks {
            Some(_) => Some(
                self.budgets
                    .counter(&link.code, self.stats.as_ref())
                    .await?,
            ),
            None => None,
        };
        Ok(Some(Arc::new(CachedLink::new(&link, budget))))
    }

    /// Whether the store can serve (for `/readyz`).
    pub async fn ready(&self) -> Result<(), ServiceError> {
        Ok(self.store.ping().await?)
    }

    /// Closes the store; call after the server has drained.
    pub async fn close(&self) -> Result<(), ServiceError> {
        if let Some(l2) = &self.l2 {
            l2.close().await;
        }
        Ok(self.store.close().await?)
    }
}

/// Now, truncated to milliseconds: what the store keeps, so that the answer to a create
/// equals what a later read returns.
fn now_truncated_to_ms() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000_000 * 1_000_000)
        .expect("a truncated nanosecond is in range")
}

/// What [`LinkService::decide`] makes of a cache entry.
enum Decision {
    /// The answer, known without waiting.
    Answer(Resolution),
    /// A click of this `max_clicks` link, whose budget a shared counter keeps: claim it
    /// there, then [`spend`].
    Claim(Arc<CachedLink>),
}

/// The answer for a click of a `max_clicks` link, given how many were claimed before it.
fn spend(link: Arc<CachedLink>, claimed_before: u64) -> Resolution {
    match &link.budget {
        Some(budget) if claimed_before >= budget.max_clicks => Resolution::Exhausted,
        _ => Resolution::Redirect(link),
    }
}

/// Whether `link` has expired. Only links with an expiry pay for reading the clock.
fn is_expired(link: &CachedLink) -> bool {
    link.expires_at.is_some() && link.is_expired_at(OffsetDateTime::now_utc())
}
