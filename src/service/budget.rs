//! Click budgets: which counter decides whether a `max_clicks` link has a click left.
//!
//! A link with `max_clicks` answers 410 once that many clicks were claimed. Three
//! counters can keep the tally, and exactly one of them decides, chosen once when the
//! service is built ([`Keeper`]):
//!
//! 1. **The store's**, if it keeps budgets (a shared store such as PostgreSQL): exact for
//!    any number of instances. A failure to claim there fails the redirect; it is never
//!    a free click.
//! 2. **Redis's**, shared by every instance, while Redis answers; when it cannot, this
//!    process's counter stands in (graceful degradation: the limit may be overshot by
//!    what other instances count meanwhile, never blocks redirects).
//! 3. **This process's**, one atomic per link: exact with one instance.
//!
//! This process's counter exists under all three: it is seeded from the stored click
//! totals the first time the process loads the link, answers HEAD (which reads, never
//! claims), and is kept current with what a shared counter answered. It lives outside the
//! link cache on purpose: an evicted and reloaded entry keeps counting where it was,
//! instead of restarting from statistics that lag by the clicks not yet flushed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use shortener_core::stats::StatsStore;
use shortener_core::{ClickClaim, LinkStore, ShortCode, StoreError};

use crate::cache::l2::L2Cache;
use crate::cache::{CachedLink, ClickBudget};

/// The counter that decides (see the module docs for the order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keeper {
    /// The store keeps the budgets.
    Store,
    /// Redis's shared counter, with this process's as the fallback.
    Redis,
    /// This process's counter alone.
    Process,
}

impl Keeper {
    /// The keeper for a service whose store does (or does not) keep budgets and that
    /// has (or has not) a Redis tier.
    pub(super) fn choose(store_keeps_budgets: bool, has_redis: bool) -> Self {
        match (store_keeps_budgets, has_redis) {
            (true, _) => Self::Store,
            (false, true) => Self::Redis,
            (false, false) => Self::Process,
        }
    }
}

/// The click budgets of one process: the keeper and this process's counters.
pub(super) struct Budgets {
    keeper: Keeper,
    /// This process's counter per link with `max_clicks`, for the life of the process.
    counters: Mutex<HashMap<ShortCode, Arc<AtomicU64>>>,
}

impl Budgets {
    pub(super) fn new(keeper: Keeper) -> Self {
        Self {
            keeper,
            counters: Mutex::new(HashMap::new()),
        }
    }

    /// A Redis tier joined: its counter decides unless the store's does.
    pub(super) fn with_redis(self) -> Self {
        Self {
            keeper: Keeper::choose(self.keeper == Keeper::Store, true),
            ..self
        }
    }

    /// Clicks claimed before this one, if this process can say so without waiting: for a
    /// HEAD (`is_click` false, a read of this process's view), and for every request when
    /// this process's counter decides. Claims one if `is_click`. `None` means a shared
    /// counter must be asked: await [`Budgets::claim`].
    pub(super) fn claim_now(&self, budget: &ClickBudget, is_click: bool) -> Option<u64> {
        if !is_click {
            return Some(budget.used.load(Ordering::Relaxed));
        }
        // `fetch_add` claims atomically: of two racing clicks for the last one, exactly
        // one sees `used < max`.
        (self.keeper == Keeper::Process).then(|| budget.used.fetch_add(1, Ordering::Relaxed))
    }

    /// Claims one click of `link` from the keeper; returns how many were claimed before
    /// it (0 for a link without `max_clicks`: it has nothing to claim). `l2` is the Redis
    /// tier when the keeper is [`Keeper::Redis`].
    pub(super) async fn claim(
        &self,
        link: &CachedLink,
        store: &dyn LinkStore,
        l2: Option<&L2Cache>,
    ) -> Result<u64, StoreError> {
        let Some(budget) = &link.budget else {
            return Ok(0);
        };
        let (code, local) = (&link.code, &budget.used);
        let shared = match (self.keeper, l2) {
            (Keeper::Store, _) => Some(match store.claim_click(code).await? {
                ClickClaim::Claimed { used_before } => used_before,
                ClickClaim::Exhausted => budget.max_clicks,
            }),
            (Keeper::Redis, Some(l2)) => l2.claim_click(code, local.load(Ordering::Relaxed)).await,
            (Keeper::Redis, None) | (Keeper::Process, _) => None,
        };
        Ok(match shared {
            Some(before) => {
                // Keep this process's view current, for HEAD and for the fallback.
                local.fetch_max(before + 1, Ordering::Relaxed);
                before
            }
            None => local.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// This process's counter for `code`, seeded from its stored click totals the first
    /// time.
    pub(super) async fn counter(
        &self,
        code: &ShortCode,
        stats: &dyn StatsStore,
    ) -> Result<Arc<AtomicU64>, StoreError> {
        if let Some(used) = self.lock().get(code) {
            return Ok(used.clone());
        }
        let seed = stats.totals(code).await?.total;
        // A concurrent load may have seeded it meanwhile; the first one wins.
        Ok(self
            .lock()
            .entry(code.clone())
            .or_insert_with(|| Arc::new(AtomicU64::new(seed)))
            .clone())
    }

    /// Forgets `code`'s counter (the link was deleted).
    pub(super) fn forget(&self, code: &ShortCode) {
        self.lock().remove(code);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ShortCode, Arc<AtomicU64>>> {
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(max_clicks: u64, used: u64) -> ClickBudget {
        ClickBudget {
            max_clicks,
            used: Arc::new(AtomicU64::new(used)),
        }
    }

    #[test]
    fn the_store_decides_before_redis_and_redis_before_the_process() {
        assert_eq!(Keeper::choose(true, true), Keeper::Store);
        assert_eq!(Keeper::choose(true, false), Keeper::Store);
        assert_eq!(Keeper::choose(false, true), Keeper::Redis);
        assert_eq!(Keeper::choose(false, false), Keeper::Process);
    }

    #[test]
    fn only_the_process_keeper_claims_without_waiting() {
        let process = Budgets::new(Keeper::Process);
        let b = budget(2, 0);
        assert_eq!(process.claim_now(&b, true), Some(0));
        assert_eq!(process.claim_now(&b, true), Some(1));
        assert_eq!(process.claim_now(&b, false), Some(2), "a HEAD only reads");
        assert_eq!(b.used.load(Ordering::Relaxed), 2);
        for keeper in [Keeper::Store, Keeper::Redis] {
            let shared = Budgets::new(keeper);
            let b = budget(2, 1);
            assert_eq!(shared.claim_now(&b, true), None, "{keeper:?} must be asked");
            assert_eq!(shared.claim_now(&b, false), Some(1), "a HEAD reads locally");
            assert_eq!(b.used.load(Ordering::Relaxed), 1, "nothing claimed");
        }
    }
}
