//! The stored form of statistics rows: compact, versioned bytes shared by every backend.
//!
//! A statistics row is one link's [`DayAggregate`] (counters, hourly series, visitor
//! sketch, top-N tables), or a link's all-time [`Counts`]. Rows are written once per
//! stats flush for every link-day that changed, and read by the stats API, so they must
//! be small (the long tail is most of the rows) and cheap to decode. Integers are LEB128
//! varints: a count of 3 is one byte, not eight. `total` is not stored, it is
//! `human + bot`.
//!
//! Layout of a day row (version [`DAY_VERSION`]):
//!
//! ```text
//! u8 version
//! varint human, varint bot                     the day's counters
//! varint n, n × (u8 hour, varint human, varint bot)   hours with clicks, ascending
//! u8 sketch kind: 0 exact → varint n, n × u64 LE (sorted hashes)
//!                 1 dense → 2048 register bytes
//! 5 × (varint n, n × (varint len, UTF-8 bytes, varint count))   top-N per dimension
//! ```
//!
//! The version rule: a reader refuses versions it does not know ([`DecodeError::Version`])
//! rather than guess, and a change of layout gets a new version number plus a decoder
//! for the old one (or a migration, as the redb backend does from its version-1 tables).

use crate::aggregate::{Counts, DayAggregate};
use crate::hll::{HyperLogLog, REGISTERS};
use crate::topk::TopK;
use crate::visitors::{EXACT_LIMIT, VisitorSketch};

/// Layout version of a day row.
pub const DAY_VERSION: u8 = 2;
/// Layout version of a totals row.
pub const TOTALS_VERSION: u8 = 2;

/// Why bytes are not a statistics row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end early.
    #[error("truncated statistics row")]
    Truncated,
    /// Written by a layout this version does not know.
    #[error("unknown statistics row version {0}")]
    Version(u8),
    /// A field holds an impossible value.
    #[error("invalid statistics row: {0}")]
    Invalid(&'static str),
}

/// Encodes all-time totals.
pub fn encode_totals(counts: Counts) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    out.push(TOTALS_VERSION);
    put_counts(&mut out, counts);
    out
}

/// Decodes all-time totals.
pub fn decode_totals(bytes: &[u8]) -> Result<Counts, DecodeError> {
    let mut input = Reader(bytes);
    match input.byte()? {
        TOTALS_VERSION => {}
        v => return Err(DecodeError::Version(v)),
    }
    let counts = input.counts()?;
    input.end()?;
    Ok(counts)
}

/// Encodes one link-day.
pub fn encode_day(day: &DayAggregate) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(DAY_VERSION);
    put_counts(&mut out, day.counts);
    put_varint(&mut out, day.hours.len() as u64);
    for &(hour, counts) in &day.hours {
        out.push(hour);
        put_counts(&mut out, counts);
    }
    match &day.visitors {
        VisitorSketch::Exact(hashes) => {
            out.push(0);
            put_varint(&mut out, hashes.len() as u64);
            hashes
                .iter()
                .for_each(|h| out.extend_from_slice(&h.to_le_bytes()));
        }
        VisitorSketch::Dense(hll) => {
            out.push(1);
            out.extend_from_slice(hll.as_bytes());
        }
    }
    for table in &day.top {
        put_varint(&mut out, table.len() as u64);
        for (value, count) in table.entries() {
            put_varint(&mut out, value.len() as u64);
            out.extend_from_slice(value.as_bytes());
            put_varint(&mut out, count);
        }
    }
    out
}

/// Decodes one link-day.
pub fn decode_day(bytes: &[u8]) -> Result<DayAggregate, DecodeError> {
    let mut input = Reader(bytes);
    match input.byte()? {
        DAY_VERSION => {}
        v => return Err(DecodeError::Version(v)),
    }
    let counts = input.counts()?;
    let n = input.len(24)?;
    let mut hours = Vec::with_capacity(n);
    for _ in 0..n {
        let hour = input.byte()?;
        if hour >= 24 || hours.last().is_some_and(|&(h, _)| h >= hour) {
            return Err(DecodeError::Invalid("hours out of order"));
        }
        hours.push((hour, input.counts()?));
    }
    let visitors = match input.byte()? {
        0 => {
            let n = input.len(EXACT_LIMIT)?;
            let mut hashes = Vec::with_capacity(n);
            for _ in 0..n {
                let hash = u64::from_le_bytes(input.array()?);
                if hashes.last().is_some_and(|&last| last >= hash) {
                    return Err(DecodeError::Invalid("visitor hashes out of order"));
                }
                hashes.push(hash);
            }
            VisitorSketch::Exact(hashes)
        }
        1 => {
            let registers = input.take(REGISTERS)?;
            VisitorSketch::Dense(HyperLogLog::from_bytes(registers).ok_or(DecodeError::Truncated)?)
        }
        _ => return Err(DecodeError::Invalid("sketch kind")),
    };
    let mut top: [TopK; 5] = Default::default();
    for table in &mut top {
        let n = input.len(crate::topk::CAPACITY)?;
        for _ in 0..n {
            let len = input.len(crate::click::MAX_TEXT_FIELD_LEN)?;
            let value = std::str::from_utf8(input.take(len)?)
                .map_err(|_| DecodeError::Invalid("top-N value is not UTF-8"))?;
            table.add(value, input.varint()?);
        }
    }
    input.end()?;
    Ok(DayAggregate {
        counts,
        hours,
        visitors,
        top,
    })
}

fn put_counts(out: &mut Vec<u8>, counts: Counts) {
    put_varint(out, counts.human);
    put_varint(out, counts.bot);
}

/// LEB128: seven bits per byte, low bits first, high bit set on all but the last.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A cursor over the bytes being decoded.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError::Truncated)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Invalid("varint longer than 64 bits"))
    }

    /// A length, refused above `max` (so hostile bytes cannot make us allocate).
    fn len(&mut self, max: usize) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= max)
            .ok_or(DecodeError::Invalid("length out of range"))
    }

    fn counts(&mut self) -> Result<Counts, DecodeError> {
        let human = self.varint()?;
        let bot = self.varint()?;
        let total = human
            .checked_add(bot)
            .ok_or(DecodeError::Invalid("counter overflow"))?;
        Ok(Counts { total, human, bot })
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Invalid("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `scripts/fuzz.sh` (click_event): a corrupt day row whose top list holds
    /// one value twice with counts that sum past u64::MAX panicked (debug) or wrapped
    /// (release) while decoding. Counts now saturate.
    #[test]
    fn a_corrupt_row_with_overflowing_top_counts_decodes_without_panicking() {
        let bytes = b"\x02\x00\x00\x00\x00\x00\x00\x001\x00\x8b\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x00\x00\x00\x00\x00\x00\x0e\xff\xff\x00\x09\x00\x00\x00\x00\x00\x00\x00\x001\x01";
        let _ = decode_day(bytes);
    }

    fn counts(human: u64, bot: u64) -> Counts {
        Counts {
            total: human + bot,
            human,
            bot,
        }
    }

    fn day(visitors: u64) -> DayAggregate {
        let mut day = DayAggregate {
            counts: counts(visitors + 300, 2),
            hours: vec![(0, counts(1, 0)), (13, counts(visitors + 299, 2))],
            ..DayAggregate::default()
        };
        (0..visitors).for_each(|i| {
            day.visitors
                .insert(i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31))
        });
        day.top[0].add("news.example", 5);
        day.top[0].add("(direct)", u64::MAX);
        day.top[3].add("Windows 10 ünïcode", 1);
        day
    }

    #[test]
    fn rows_round_trip_in_both_sketch_forms() {
        for visitors in [0, 1, 256, 257, 5_000] {
            let original = day(visitors);
            let bytes = encode_day(&original);
            assert_eq!(decode_day(&bytes), Ok(original.clone()), "{visitors}");
        }
        let totals = counts(u64::MAX / 2, 7);
        assert_eq!(decode_totals(&encode_totals(totals)), Ok(totals));
    }

    #[test]
    fn a_link_clicked_once_costs_a_few_dozen_bytes() {
        let mut once = DayAggregate {
            counts: counts(1, 0),
            hours: vec![(9, counts(1, 0))],
            ..DayAggregate::default()
        };
        once.visitors.insert(42);
        for (table, value) in
            once.top
                .iter_mut()
                .zip(["(direct)", "(unknown)", "Chrome", "Windows 10", "desktop"])
        {
            table.add(value, 1);
        }
        // 17 bytes of structure and 55 of labels (a 2 KiB dense sketch in version 1).
        let bytes = encode_day(&once).len();
        assert!(bytes <= 80, "{bytes} bytes");
        assert!(
            encode_day(&day(5_000)).len() < REGISTERS + 100,
            "dense: registers + a little"
        );
    }

    #[test]
    fn unknown_versions_and_damaged_rows_are_refused() {
        let mut bytes = encode_day(&day(10));
        bytes[0] = 1;
        assert_eq!(decode_day(&bytes), Err(DecodeError::Version(1)));
        let bytes = encode_day(&day(10));
        for cut in 1..bytes.len() {
            assert!(decode_day(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode_day(&longer),
            Err(DecodeError::Invalid("trailing bytes"))
        );
        assert_eq!(decode_totals(&[9, 1, 1]), Err(DecodeError::Version(9)));
        // A hostile length does not allocate: refused before reading on.
        assert!(decode_day(&[DAY_VERSION, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }
}
