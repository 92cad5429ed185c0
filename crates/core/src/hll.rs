//! HyperLogLog: the dense form of a [`crate::visitors::VisitorSketch`], 2 KiB, mergeable.
//!
//! Exact distinct counting needs memory proportional to the number of visitors; a
//! popular link has millions. A HyperLogLog sketch keeps, for each of `2^P` registers,
//! the longest run of leading zeros seen among the hashes routed to it; the harmonic mean
//! of `2^run` estimates the cardinality with a standard error of `1.04 / sqrt(2^P)`
//! (2.3% at P = 11). Two sketches merge by taking the per-register maximum. A link-day
//! only pays these 2 KiB once it has had more distinct visitors than the exact form of
//! its sketch holds in the same space (256).

/// Register index bits: 2^11 = 2048 one-byte registers, 2.3% standard error.
pub const P: u32 = 11;
/// Number of registers.
pub const REGISTERS: usize = 1 << P;

/// A HyperLogLog sketch over 64-bit hashes.
#[derive(Clone, PartialEq, Eq)]
pub struct HyperLogLog {
    registers: Box<[u8; REGISTERS]>,
}

impl Default for HyperLogLog {
    fn default() -> Self {
        Self {
            registers: Box::new([0; REGISTERS]),
        }
    }
}

impl std::fmt::Debug for HyperLogLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HyperLogLog(~{})", self.estimate())
    }
}

impl HyperLogLog {
    /// Adds one (already uniformly hashed) item.
    pub fn insert(&mut self, hash: u64) {
        // The visitor id is a keyed BLAKE3 hash, so its bits are uniform already; the
        // top P bits pick the register, the rest supply the run of zeros.
        let index = (hash >> (64 - P)) as usize;
        // The sentinel bit bounds the rank when the remaining bits are all zero.
        let rest = (hash << P) | (1 << (P - 1));
        let rank = (rest.leading_zeros() + 1) as u8;
        let register = &mut self.registers[index];
        *register = (*register).max(rank);
    }

    /// Folds `other` in: afterwards this sketch counts the union of both.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.registers.iter_mut().zip(other.registers.iter()) {
            *mine = (*mine).max(*theirs);
        }
    }

    /// The estimated number of distinct items.
    pub fn estimate(&self) -> u64 {
        let m = REGISTERS as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let (sum, zeros) = self.registers.iter().fold((0.0, 0u32), |(sum, zeros), &r| {
            (sum + (-f64::from(r)).exp2(), zeros + u32::from(r == 0))
        });
        let raw = alpha * m * m / sum;
        // Small cardinalities: linear counting over empty registers is more accurate.
        let estimate = if raw <= 2.5 * m && zeros > 0 {
            m * (m / f64::from(zeros)).ln()
        } else {
            raw
        };
        estimate.round() as u64
    }

    /// The registers, for storage.
    pub fn as_bytes(&self) -> &[u8] {
        &self.registers[..]
    }

    /// A sketch from stored registers; `None` if the length is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let registers: [u8; REGISTERS] = bytes.try_into().ok()?;
        Some(Self {
            registers: Box::new(registers),
        })
    }
}

/// splitmix64: a well-mixed stand-in for visitor hashes in tests (the sketches here and
/// in `visitors`).
#[cfg(test)]
pub(crate) fn test_hash(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::test_hash as hash;
    use super::*;

    fn relative_error(estimate: u64, truth: u64) -> f64 {
        (estimate as f64 - truth as f64).abs() / truth as f64
    }

    #[test]
    fn estimates_are_within_a_few_standard_errors() {
        for truth in [10u64, 100, 1_000, 10_000, 100_000, 1_000_000] {
            let mut sketch = HyperLogLog::default();
            for i in 0..truth {
                sketch.insert(hash(i));
            }
            // 3 standard errors (3 x 2.3%); small counts use linear counting, near exact.
            let error = relative_error(sketch.estimate(), truth);
            assert!(
                error < 0.07,
                "{truth}: estimate {} ({:.1}%)",
                sketch.estimate(),
                error * 100.0
            );
        }
    }

    #[test]
    fn duplicates_do_not_count() {
        let mut sketch = HyperLogLog::default();
        for _ in 0..1_000 {
            for i in 0..50 {
                sketch.insert(hash(i));
            }
        }
        assert_eq!(sketch.estimate(), 50);
    }

    #[test]
    fn merging_counts_the_union() {
        let (mut a, mut b) = (HyperLogLog::default(), HyperLogLog::default());
        for i in 0..30_000 {
            a.insert(hash(i));
        }
        for i in 20_000..50_000 {
            b.insert(hash(i));
        }
        a.merge(&b);
        assert!(
            relative_error(a.estimate(), 50_000) < 0.07,
            "{}",
            a.estimate()
        );
    }

    #[test]
    fn registers_round_trip_through_bytes() {
        let mut sketch = HyperLogLog::default();
        (0..1_000).for_each(|i| sketch.insert(hash(i)));
        let restored = HyperLogLog::from_bytes(sketch.as_bytes()).expect("right length");
        assert_eq!(restored, sketch);
        assert!(HyperLogLog::from_bytes(&[0; 10]).is_none());
    }
}
