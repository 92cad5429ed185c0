//! Unique visitors per link per day, in bytes proportional to the visitors seen.
//!
//! A dense [`HyperLogLog`] costs 2 KiB whether a link had one visitor or a million, and
//! most links of a real shortener get a handful of clicks a day: stored densely, the
//! long tail spent more bytes on sketches than the raw clicks took (docs/benchmarks.md,
//! "The long tail"). So a [`VisitorSketch`] starts *exact*: a sorted set of the visitor
//! hashes themselves, 8 bytes each. Once it holds more than [`EXACT_LIMIT`] hashes the
//! set would be larger than the dense registers, and it turns into a [`HyperLogLog`]
//! for good (the idea of HyperLogLog++'s sparse mode, with a simpler sparse form).
//!
//! Privacy: what the exact form stores are visitor *ids*, keyed hashes of address and
//! user agent under a key derived per UTC day from the service's secret (see
//! `click::VisitorHasher`), never addresses; without the secret they cannot be reversed
//! or linked across days. The dense form keeps even less (a maximum per register).
//!
//! Accuracy: exact (up to 64-bit hash collisions, about `n² / 2^65`) while exact; once
//! dense, exactly today's 2.3% standard error, because the switch replays every kept
//! hash into the registers: the result is the sketch that would have been built had it
//! been dense from the start. Merging works across the two forms the same way.

use crate::hll::{HyperLogLog, REGISTERS};

/// Most hashes kept exactly: 256 × 8 bytes is the size of the dense registers, so the
/// exact form is never the larger one.
pub const EXACT_LIMIT: usize = REGISTERS / 8;

/// Distinct-visitor counter: exact while small, a HyperLogLog once large.
#[derive(Clone, PartialEq, Eq)]
pub enum VisitorSketch {
    /// Sorted, deduplicated hashes; at most [`EXACT_LIMIT`].
    Exact(Vec<u64>),
    /// The dense registers.
    Dense(HyperLogLog),
}

impl Default for VisitorSketch {
    fn default() -> Self {
        Self::Exact(Vec::new())
    }
}

impl std::fmt::Debug for VisitorSketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(hashes) => write!(f, "Exact({})", hashes.len()),
            Self::Dense(hll) => write!(f, "Dense({hll:?})"),
        }
    }
}

impl VisitorSketch {
    /// Adds one (uniformly hashed) visitor id.
    pub fn insert(&mut self, hash: u64) {
        match self {
            Self::Exact(hashes) => {
                // Binary search + shift: at most 256 elements, so a memmove of at most
                // 2 KiB, cheaper than any hash set at this size and with no overhead.
                if let Err(at) = hashes.binary_search(&hash) {
                    crate::doubling::insert(hashes, at, hash);
                    if hashes.len() > EXACT_LIMIT {
                        self.densify();
                    }
                }
            }
            Self::Dense(hll) => hll.insert(hash),
        }
    }

    /// Folds `other` in: afterwards this sketch counts the union of both.
    pub fn merge(&mut self, other: &Self) {
        match (&mut *self, other) {
            (Self::Exact(mine), Self::Exact(theirs)) => {
                *mine = union(mine, theirs);
                if mine.len() > EXACT_LIMIT {
                    self.densify();
                }
            }
            (Self::Dense(mine), Self::Exact(theirs)) => {
                theirs.iter().for_each(|&h| mine.insert(h));
            }
            (Self::Exact(_), Self::Dense(_)) => {
                self.densify();
                self.merge(other);
            }
            (Self::Dense(mine), Self::Dense(theirs)) => mine.merge(theirs),
        }
    }

    /// The number of distinct visitors: exact, or the HyperLogLog estimate.
    pub fn estimate(&self) -> u64 {
        match self {
            Self::Exact(hashes) => hashes.len() as u64,
            Self::Dense(hll) => hll.estimate(),
        }
    }

    /// Whether the sketch has turned dense.
    pub fn is_dense(&self) -> bool {
        matches!(self, Self::Dense(_))
    }

    /// Replays the exact hashes into dense registers (no-op when already dense).
    fn densify(&mut self) {
        if let Self::Exact(hashes) = self {
            let mut hll = HyperLogLog::default();
            hashes.iter().for_each(|&h| hll.insert(h));
            *self = Self::Dense(hll);
        }
    }
}

/// The sorted union of two sorted, deduplicated slices.
fn union(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hll::test_hash as hash;

    fn sketch_of(range: std::ops::Range<u64>) -> VisitorSketch {
        let mut sketch = VisitorSketch::default();
        range.for_each(|i| sketch.insert(hash(i)));
        sketch
    }

    fn dense_of(range: std::ops::Range<u64>) -> HyperLogLog {
        let mut hll = HyperLogLog::default();
        range.for_each(|i| hll.insert(hash(i)));
        hll
    }

    #[test]
    fn small_cardinalities_are_exact_and_large_ones_within_three_standard_errors() {
        for truth in [1u64, 10, 100, 256, 257, 1_000, 100_000] {
            let sketch = sketch_of(0..truth);
            assert_eq!(sketch.is_dense(), truth > EXACT_LIMIT as u64, "{truth}");
            let estimate = sketch.estimate();
            if truth <= EXACT_LIMIT as u64 {
                assert_eq!(estimate, truth);
            } else {
                let error = (estimate as f64 - truth as f64).abs() / truth as f64;
                assert!(error < 0.07, "{truth}: {estimate} ({:.1}%)", error * 100.0);
            }
        }
    }

    #[test]
    fn once_dense_it_is_exactly_the_sketch_a_dense_start_would_have_built() {
        // Same error bound as the old always-dense sketch, because it is the same sketch.
        for truth in [257u64, 1_000, 100_000] {
            assert_eq!(
                sketch_of(0..truth),
                VisitorSketch::Dense(dense_of(0..truth))
            );
        }
    }

    #[test]
    fn repeated_visitors_do_not_count_or_grow_the_set() {
        let mut sketch = VisitorSketch::default();
        for _ in 0..100 {
            (0..7).for_each(|i| sketch.insert(hash(i)));
        }
        assert_eq!(sketch, sketch_of(0..7));
        assert_eq!(sketch.estimate(), 7);
    }

    #[test]
    fn merges_count_the_union_in_every_combination_of_forms() {
        // (a, b): exact + exact staying exact, exact + exact crossing the limit,
        // exact + dense, dense + exact, dense + dense.
        let cases = [
            (0..100, 50..150),
            (0..200, 100..300),
            (0..10, 5..5_000),
            (0..5_000, 4_990..5_010),
            (0..30_000, 20_000..50_000),
        ];
        for (a, b) in cases {
            let union = a.start.min(b.start)..a.end.max(b.end);
            let mut merged = sketch_of(a.clone());
            merged.merge(&sketch_of(b.clone()));
            assert_eq!(merged, sketch_of(union.clone()), "{a:?} ∪ {b:?}");
        }
    }
}
