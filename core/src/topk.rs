//! Bounded top-N counting (the Space-Saving algorithm).
//!
//! Counting every referrer host a popular link ever saw is unbounded (every spam domain
//! becomes a row). Space-Saving keeps at most `capacity` counters: a new value, when the
//! table is full, evicts the smallest counter and inherits its count plus one. Values
//! whose true count exceeds `total / capacity` are guaranteed to be in the table, and
//! each kept count overestimates the truth by at most the evicted minimum. While a link
//! has fewer distinct values than `capacity` (the common case), counts are exact.

use std::collections::HashMap;

use foldhash::fast::RandomState;
use std::sync::Arc;

/// Counters kept per link, day and dimension.
pub const CAPACITY: usize = 64;

/// A Space-Saving table of at most [`CAPACITY`] values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopK {
    /// foldhash, seeded per process: several times faster than SipHash on short keys,
    /// and the random seed keeps attacker-chosen values (referrer hosts) from being
    /// crafted into collisions.
    counts: HashMap<Arc<str>, u64, RandomState>,
}

impl TopK {
    /// Counts `n` occurrences of `value`.
    pub fn add(&mut self, value: &str, n: u64) {
        self.add_with(value, n, || Arc::from(value));
    }

    /// Like [`TopK::add`] for an interned value: a new entry shares the `Arc` instead of
    /// allocating a copy (tables are rebuilt per batch, so most adds insert).
    pub fn add_shared(&mut self, value: &Arc<str>, n: u64) {
        self.add_with(value, n, || value.clone());
    }

    fn add_with(&mut self, value: &str, n: u64, key: impl FnOnce() -> Arc<str>) {
        if let Some(count) = self.counts.get_mut(value) {
            *count += n;
            return;
        }
        let inherited = if self.counts.len() >= CAPACITY {
            // O(CAPACITY) scan; only on a new value when full, which is the rare path.
            let evict = self
                .counts
                .iter()
                .min_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)));
            match evict.map(|(k, v)| (k.clone(), *v)) {
                Some((key, min)) => {
                    self.counts.remove(&key);
                    min
                }
                None => 0,
            }
        } else {
            0
        };
        self.counts.insert(key(), inherited + n);
    }

    /// Folds `other` in (used when applying a batch to stored statistics).
    pub fn merge(&mut self, other: &Self) {
        for (value, &n) in &other.counts {
            self.add(value, n);
        }
    }

    /// The `n` largest counts, largest first (ties by value, for stable output).
    pub fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<_> = self
            .counts
            .iter()
            .map(|(k, &v)| (k.to_string(), v))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    /// All counters, for storage.
    pub fn entries(&self) -> impl Iterator<Item = (&str, u64)> {
        self.counts.iter().map(|(k, &v)| (&**k, v))
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
