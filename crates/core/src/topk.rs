//! Bounded top-N counting (the Space-Saving algorithm).
//!
//! Counting every referrer host a popular link ever saw is unbounded (every spam domain
//! becomes a row). Space-Saving keeps at most `capacity` counters: a new value, when the
//! table is full, evicts the smallest counter and inherits its count plus one. Values
//! whose true count exceeds `total / capacity` are guaranteed to be in the table, and
//! each kept count overestimates the truth by at most the evicted minimum. While a link
//! has fewer distinct values than `capacity` (the common case), counts are exact.

use std::sync::Arc;

/// Counters kept per link, day and dimension.
pub const CAPACITY: usize = 64;

/// A Space-Saving table of at most [`CAPACITY`] values.
///
/// A plain vector, searched linearly: a link's table holds what that link actually
/// received (one entry for most links in the long tail, never more than 64), so it costs
/// 24 bytes per value kept. A hash map started at ~120 bytes for one entry, five tables
/// per link and day, which is what in-memory aggregates of a long tail are made of.
/// Lookups compare the interned `Arc` pointer first, so the common hit is a pointer
/// comparison.
#[derive(Debug, Clone, Default)]
pub struct TopK {
    counts: Vec<(Arc<str>, u64)>,
}

/// Equal when the same values have the same counts, in whatever order they were added.
impl PartialEq for TopK {
    fn eq(&self, other: &Self) -> bool {
        self.counts.len() == other.counts.len()
            && self
                .counts
                .iter()
                .all(|(k, v)| other.entries().any(|(k2, v2)| k2 == &**k && v2 == *v))
    }
}

impl Eq for TopK {}

impl TopK {
    /// Counts `n` occurrences of `value`.
    pub fn add(&mut self, value: &str, n: u64) {
        self.add_with(value, n, || Arc::from(value));
    }

    /// Like [`TopK::add`] for an interned value: a new entry shares the `Arc` instead of
    /// allocating a copy.
    pub fn add_shared(&mut self, value: &Arc<str>, n: u64) {
        if let Some(entry) = self.counts.iter_mut().find(|(k, _)| Arc::ptr_eq(k, value)) {
            entry.1 = entry.1.saturating_add(n);
            return;
        }
        self.add_with(value, n, || value.clone());
    }

    fn add_with(&mut self, value: &str, n: u64, key: impl FnOnce() -> Arc<str>) {
        if let Some(entry) = self.counts.iter_mut().find(|(k, _)| &**k == value) {
            entry.1 = entry.1.saturating_add(n);
            return;
        }
        if self.counts.len() < CAPACITY {
            crate::doubling::push(&mut self.counts, (key(), n));
            return;
        }
        // Full: the smallest counter (ties: the largest value, for determinism) is
        // replaced and its count inherited. O(CAPACITY), on the rare path only.
        let evict = self
            .counts
            .iter_mut()
            .min_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)));
        if let Some(slot) = evict {
            *slot = (key(), slot.1.saturating_add(n));
        }
    }

    /// Folds `other` in (used when applying a batch to stored statistics).
    pub fn merge(&mut self, other: &Self) {
        for (value, n) in &other.counts {
            self.add_shared(value, *n);
        }
    }

    /// The `n` largest counts, largest first (ties by value, for stable output).
    pub fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<_> = self
            .counts
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    /// All counters, for storage.
    pub fn entries(&self) -> impl Iterator<Item = (&str, u64)> {
        self.counts.iter().map(|(k, v)| (&**k, *v))
    }

    /// Number of values kept.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Rebuilds a table from stored counters.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = (&'a str, u64)>) -> Self {
        let mut table = Self::default();
        for (value, n) in entries {
            table.add(value, n);
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_exact_below_capacity() {
        let mut top = TopK::default();
        for (value, n) in [("a.com", 5), ("b.com", 3), ("a.com", 2), ("c.com", 1)] {
            top.add(value, n);
        }
        assert_eq!(top.top(2), vec![("a.com".into(), 7), ("b.com".into(), 3)]);
    }

    #[test]
    fn heavy_hitters_survive_a_flood_of_distinct_values() {
        let mut top = TopK::default();
        for i in 0..10_000 {
            top.add("news.example", 1);
            top.add(&format!("spam{i}.example"), 1);
            if i % 2 == 0 {
                top.add("blog.example", 1);
            }
        }
        assert!(top.counts.len() <= CAPACITY);
        let best = top.top(2);
        assert_eq!(best[0].0, "news.example");
        assert_eq!(best[1].0, "blog.example");
        assert!(best[0].1 >= 10_000, "never underestimates");
    }

    #[test]
    fn merge_and_storage_round_trip() {
        let (mut a, mut b) = (TopK::default(), TopK::default());
        a.add("x", 2);
        b.add("x", 3);
        b.add("y", 1);
        a.merge(&b);
        assert_eq!(a.top(5), vec![("x".into(), 5), ("y".into(), 1)]);
        let stored: Vec<(String, u64)> = a.entries().map(|(k, v)| (k.to_owned(), v)).collect();
        let restored = TopK::from_entries(stored.iter().map(|(k, v)| (k.as_str(), *v)));
        assert_eq!(restored, a);
    }
}
