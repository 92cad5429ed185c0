//! A per-thread front for the link cache: the hottest links, answered without moka.
//!
//! **The plain version.** No front at all: `LinkCache` (moka) alone is correct, and the
//! service behaves the same without this module.
//!
//! **Why it is added.** A moka hit is ~1,200 instructions, about a tenth of a cached
//! redirect; with the front a repeat hit costs ~130, and a cached redirect went from
//! 13,221 to 12,161 instructions (docs/benchmarks.md, "The click path, browser
//! headers, and the noise floor").
//!
//! **The concept.** A thread-local table needs no locks and no atomics to read, only to
//! know when it is stale: here, epoch counters that any invalidation bumps, read before
//! the slot is filled, so a racing invalidation makes the slot unusable, never stale.
//!
//! # How
//!
//! A moka hit costs ~1,200 instructions (hashing, a lookup under an epoch guard, and the
//! read log that feeds its admission and eviction policy), about a tenth of a whole
//! cached redirect. Each worker thread keeps a small direct-mapped table of the links it
//! found in moka recently; a repeat hit costs a hash, a slot compare and two atomic
//! loads. moka stays the source of truth:
//!
//! - **Explicit invalidations are immediate.** Forgetting a code bumps the epoch of its
//!   stripe (one of [`STRIPES`] counters, chosen by the code's hash); forgetting
//!   everything bumps a global epoch. A slot is used only while both epochs it was filled
//!   under are unchanged, and the epochs are read *before* the moka lookup that fills it,
//!   so an invalidation that races a fill makes the slot unusable rather than stale.
//! - **Everything else is bounded by [`FRESH_FOR`].** Entries moka expires or evicts on
//!   its own may still be answered from a slot for up to that long. Link expiry
//!   (`expires_at`) is checked on every hit as before, so it is exact.
//! - **moka still sees the hot links**: each thread goes back to it at least once per
//!   [`FRESH_FOR`] per link, so their frequency keeps them admitted.
//!
//! Only found links without a click budget are kept here: unknown codes stay in moka's
//! negative entries, and `max_clicks` links keep their own accounting path.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use quanta::Instant;
use shortener_core::ShortCode;

use super::CachedLink;

/// Slots per thread (a power of two). 256 × ~64 bytes: 16 KiB per worker.
const SLOTS: usize = 256;

/// Invalidation stripes: a create or delete disturbs 1/`STRIPES` of the hot set.
pub const STRIPES: usize = 1024;

/// How long a slot may answer without going back to moka.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// Which front a slot belongs to: every [`FrontTable`] gets its own id (tests and benches run
/// several caches in one process, on the same threads).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static TABLE: RefCell<Vec<Option<Slot>>> = const { RefCell::new(Vec::new()) };
}

struct Slot {
    front: u64,
    code: ShortCode,
    link: Arc<CachedLink>,
    epochs: InvalidationEpochs,
    filled: Instant,
}

/// The epochs a slot was filled under.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct InvalidationEpochs {
    global: u64,
    stripe: u64,
}

/// A code's hash, computed once per lookup and shared by the slot and stripe choice.
#[derive(Clone, Copy)]
pub struct CodeHash(u64);

impl CodeHash {
    fn slot(self) -> usize {
        (self.0 as usize) & (SLOTS - 1)
    }

    fn stripe(self) -> usize {
        ((self.0 >> 32) as usize) & (STRIPES - 1)
    }
}

/// The shared half of the front: epochs and identity. Clones of a `LinkCache` share it.
pub struct FrontTable {
    id: u64,
    hasher: foldhash::fast::RandomState,
    global: AtomicU64,
    stripes: Box<[AtomicU64]>,
    fresh_for: Duration,
}

impl FrontTable {
    /// A front whose slots answer for at most `fresh_for` after they were filled.
    pub fn new(fresh_for: Duration) -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            hasher: foldhash::fast::RandomState::default(),
            global: AtomicU64::new(0),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            fresh_for,
        }
    }

    /// Hashes `code` for [`FrontTable::get`], [`FrontTable::epochs`] and [`FrontTable::fill`].
    pub fn hash(&self, code: &str) -> CodeHash {
        CodeHash(self.hasher.hash_one(code))
    }

    /// The link in this thread's slot for `code`, if it is still good.
    pub fn get(&self, hashed: CodeHash, code: &str) -> Option<Arc<CachedLink>> {
        TABLE.with_borrow(|table| {
            let slot = table.get(hashed.slot())?.as_ref()?;
            let good = slot.front == self.id
                && slot.code.as_str() == code
                && slot.epochs == self.epochs(hashed)
                && slot.filled.elapsed() < self.fresh_for;
            good.then(|| slot.link.clone())
        })
    }

    /// The current epochs for `code`: read them *before* the lookup whose result you
    /// will [`FrontTable::fill`] in.
    pub fn epochs(&self, hashed: CodeHash) -> InvalidationEpochs {
        InvalidationEpochs {
            global: self.global.load(Ordering::Acquire),
            stripe: self.stripes[hashed.stripe()].load(Ordering::Acquire),
        }
    }

    /// Puts `link` in this thread's slot for its code, valid while `epochs` hold.
    pub fn fill(&self, hashed: CodeHash, epochs: InvalidationEpochs, link: &Arc<CachedLink>) {
        if link.budget.is_some() {
            return;
        }
        TABLE.with_borrow_mut(|table| {
            if table.is_empty() {
                table.resize_with(SLOTS, || None);
            }
            table[hashed.slot()] = Some(Slot {
                front: self.id,
                code: link.code.clone(),
                link: link.clone(),
                epochs,
                filled: Instant::now(),
            });
        });
    }

    /// Makes every slot holding `code`, on every thread, unusable.
    pub fn forget(&self, code: &str) {
        let stripe = self.hash(code).stripe();
        self.stripes[stripe].fetch_add(1, Ordering::AcqRel);
    }

    /// Makes every slot of this front unusable.
    pub fn forget_all(&self) {
        self.global.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shortener_core::{Link, RedirectKind, TargetUrl};
    use time::OffsetDateTime;

    fn link(code: &str, max_clicks: Option<u64>) -> Arc<CachedLink> {
        let link = Link {
            code: ShortCode::parse(code).expect("code"),
            target: TargetUrl::parse("https://example.com/").expect("url"),
            created_at: OffsetDateTime::now_utc(),
            expires_at: None,
            redirect: RedirectKind::Found,
            max_clicks,
            owner: None,
        };
        let used = max_clicks.map(|_| Arc::new(AtomicU64::new(0)));
        Arc::new(CachedLink::new(&link, used))
    }

    fn filled(front: &FrontTable, code: &str) -> CodeHash {
        let hashed = front.hash(code);
        front.fill(hashed, front.epochs(hashed), &link(code, None));
        hashed
    }

    #[test]
    fn a_filled_slot_answers_until_its_code_is_forgotten() {
        let front = FrontTable::new(Duration::from_secs(60));
        let hashed = filled(&front, "abc");
        assert!(front.get(hashed, "abc").is_some());
        assert!(
            front.get(hashed, "abd").is_none(),
            "another code, same slot or not"
        );
        front.forget("abc");
        assert!(front.get(hashed, "abc").is_none());
        let hashed = filled(&front, "abc");
        front.forget_all();
        assert!(front.get(hashed, "abc").is_none());
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_never_used() {
        let front = FrontTable::new(Duration::from_secs(60));
        let hashed = front.hash("abc");
        let before = front.epochs(hashed); // read, then the (slow) lookup...
        front.forget("abc"); // ...while another thread deletes the link
        front.fill(hashed, before, &link("abc", None));
        assert!(front.get(hashed, "abc").is_none());
    }

    #[test]
    fn slots_go_stale_after_fresh_for_and_skip_budgeted_links() {
        let front = FrontTable::new(Duration::ZERO);
        let hashed = filled(&front, "abc");
        assert!(front.get(hashed, "abc").is_none(), "older than fresh_for");
        let front = FrontTable::new(Duration::from_secs(60));
        let hashed = front.hash("lim");
        front.fill(hashed, front.epochs(hashed), &link("lim", Some(5)));
        assert!(
            front.get(hashed, "lim").is_none(),
            "max_clicks links stay in moka"
        );
    }

    #[test]
    fn two_fronts_on_one_thread_do_not_share_slots() {
        let (a, b) = (
            FrontTable::new(Duration::from_secs(60)),
            FrontTable::new(Duration::from_secs(60)),
        );
        let hashed = filled(&a, "abc");
        assert!(a.get(hashed, "abc").is_some());
        assert!(b.get(b.hash("abc"), "abc").is_none());
    }
}
