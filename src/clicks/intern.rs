//! Shared copies of repeated header values, so that recording a click allocates
//! nothing for a `User-Agent` or `Referer` it has seen recently.
//!
//! Real traffic repeats these values: a link shared in one place is followed by many
//! browsers of a few kinds, from the same page. Copying them per click cost two
//! allocations on the redirect path, and two frees on the thread that aggregates: glibc
//! pays for frees of another thread's allocations with arena locks and consolidation,
//! which the long-tail profile in docs/benchmarks.md showed as the largest single cost of
//! recording clicks. An interned value is an `Arc` clone instead (one atomic increment),
//! and the aggregator drops it with one atomic decrement.
//!
//! The table is direct-mapped: a value hashes to one slot, and a different value there
//! replaces it. No probing, no eviction order to maintain, and the memory is bounded by
//! construction (`SLOTS` values of at most `MAX_TEXT_FIELD_LEN` bytes, per worker thread,
//! ~0.5 MiB at worst). Unique values (hostile or just rare) cost what they cost before:
//! one allocation each. The hash is seeded per table, so which values collide cannot be
//! chosen from outside; a collision costs an allocation, never a wrong value, because a
//! hit compares the text.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::fast::RandomState;

/// Slots per table: comfortably more than the distinct user agents and referrers one
/// worker sees within a few seconds of real traffic.
pub const SLOTS: usize = 512;

/// A direct-mapped table of shared strings (see the module docs).
pub struct Interner {
    slots: Box<[Option<Arc<str>>]>,
    hasher: RandomState,
}

impl Interner {
    /// An empty table of [`SLOTS`] slots.
    pub fn new() -> Self {
        Self {
            slots: vec![None; SLOTS].into_boxed_slice(),
            hasher: RandomState::default(),
        }
    }

    /// A shared copy of `text`: the one already held if `text` was interned last in its
    /// slot, a new one (which takes the slot) otherwise.
    pub fn intern(&mut self, text: &str) -> Arc<str> {
        // SLOTS is a power of two: the mask keeps the low bits of the hash.
        let slot = &mut self.slots[self.hasher.hash_one(text) as usize & (SLOTS - 1)];
        match slot {
            Some(held) if **held == *text => held.clone(),
            _ => slot.insert(Arc::from(text)).clone(),
        }
    }
}

impl Default for Interner {
    fn default() -> Self {
        Self::new()
    }
}

thread_local! {
    /// One table per thread: the redirect path runs on every worker, and a shared table
    /// would need a lock on the hottest path there is.
    static LOCAL: RefCell<Interner> = RefCell::new(Interner::new());
}

/// [`Interner::intern`] on this thread's table.
pub fn intern(text: &str) -> Arc<str> {
    LOCAL.with(|table| table.borrow_mut().intern(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_value_is_the_same_allocation() {
        let mut table = Interner::new();
        let first = table.intern("Mozilla/5.0");
        let again = table.intern("Mozilla/5.0");
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(&*again, "Mozilla/5.0");
    }

    #[test]
    fn colliding_values_never_answer_for_each_other_and_memory_stays_bounded() {
        let mut table = Interner::new();
        // Far more distinct values than slots: every answer is still its own text, and
        // the table holds at most SLOTS of them.
        for i in 0..(SLOTS * 8) {
            let text = format!("agent {i}");
            assert_eq!(&*table.intern(&text), text);
        }
        let held = table.slots.iter().filter(|slot| slot.is_some()).count();
        assert!(held <= SLOTS);
        assert!(held > SLOTS / 2, "the table is used: {held} slots held");
    }

    #[test]
    fn the_thread_local_table_shares_within_a_thread() {
        let a = intern("https://news.example/");
        let b = intern("https://news.example/");
        assert!(Arc::ptr_eq(&a, &b));
    }
}
