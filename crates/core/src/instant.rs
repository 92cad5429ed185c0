//! The span of time every backend can store and read back, and the one function that
//! brings an instant from a request into it.
//!
//! Why it exists: `time` parses RFC 3339 up to `9999-12-31T23:59:59-00:01`, which is
//! 00:00:59 on 10000-01-01 in UTC. Stored as Unix milliseconds that instant is fine, but
//! it cannot be turned back into an `OffsetDateTime` (years end at 9999 without `time`'s
//! `large-dates`) nor formatted as RFC 3339, and PostgreSQL's driver refuses it too. A
//! create that accepted it wrote a row no read could decode. So every instant that comes
//! in from outside passes through [`storable`] first: in UTC, at the millisecond
//! precision stores keep, and inside [`EARLIEST`]`..=`[`LATEST`]; or refused by name.

use time::OffsetDateTime;
use time::macros::datetime;

/// The earliest instant stored: the Unix epoch. Links are created now and expire later,
/// and no click happened before 1970, so nothing earlier has a meaning here.
pub const EARLIEST: OffsetDateTime = datetime!(1970-01-01 00:00:00 UTC);

/// The latest instant stored: the last millisecond of year 9999 in UTC, the last one
/// that decodes, formats as RFC 3339 and fits every backend's timestamp type.
pub const LATEST: OffsetDateTime = datetime!(9999-12-31 23:59:59.999 UTC);

/// The largest `max_clicks` every backend stores: PostgreSQL keeps it in a `bigint`.
pub const MAX_CLICKS: u64 = i64::MAX as u64;

/// An instant outside [`EARLIEST`]`..=`[`LATEST`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z")]
pub struct OutOfRange;

/// `at` as stores keep it, UTC and truncated to the millisecond, if it is in range.
/// What a 201 echoes is then exactly what every later read returns.
pub fn storable(at: OffsetDateTime) -> Result<OffsetDateTime, OutOfRange> {
    // Compared as Unix nanoseconds: converting an out-of-range instant to UTC is the
    // very operation that cannot be done (`to_offset` panics past year 9999).
    let nanos = at.unix_timestamp_nanos();
    let range = EARLIEST.unix_timestamp_nanos()..=LATEST.unix_timestamp_nanos() + 999_999;
    if !range.contains(&nanos) {
        return Err(OutOfRange);
    }
    // From a Unix timestamp, the instant comes back in UTC.
    let ms = nanos.div_euclid(1_000_000) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(ms).map_err(|_| OutOfRange)
}

/// `at` moved into [`EARLIEST`]`..=`[`LATEST`] (the nearest end when outside), in UTC at
/// millisecond precision. For query ranges, where asking for "from the year 0" means
/// "from the beginning" rather than an error.
pub fn clamped(at: OffsetDateTime) -> OffsetDateTime {
    let nanos = at.unix_timestamp_nanos();
    if nanos < EARLIEST.unix_timestamp_nanos() {
        EARLIEST
    } else if nanos > LATEST.unix_timestamp_nanos() {
        LATEST
    } else {
        storable(at).unwrap_or(LATEST)
    }
}

/// Unix milliseconds of a storable instant (always in `i64` range).
pub fn unix_ms(at: OffsetDateTime) -> i64 {
    // i128 -> i64 cannot overflow for any year representable by `time` (±9999).
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::UtcOffset;
    use time::format_description::well_known::Rfc3339;

    fn parse(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &Rfc3339).expect("RFC 3339")
    }

    #[test]
    fn an_instant_past_year_9999_in_utc_is_refused() {
        // Year 9999 with a negative offset is year 10000 in UTC: the poisoned create.
        assert_eq!(
            storable(parse("9999-12-31T23:59:59-00:01")),
            Err(OutOfRange)
        );
        assert_eq!(storable(parse("0000-01-01T00:00:00Z")), Err(OutOfRange));
        assert_eq!(storable(parse("1969-12-31T23:59:59.999Z")), Err(OutOfRange));
    }

    #[test]
    fn a_storable_instant_is_utc_at_millisecond_precision() {
        let at = storable(parse("2030-01-01T01:00:00.123456+01:00")).expect("in range");
        assert_eq!(at, parse("2030-01-01T00:00:00.123Z"));
        assert_eq!(at.offset(), UtcOffset::UTC);
        assert_eq!(storable(parse("9999-12-31T23:59:59.999999Z")), Ok(LATEST));
        assert_eq!(storable(EARLIEST), Ok(EARLIEST));
    }

    #[test]
    fn both_ends_format_and_decode() {
        for end in [EARLIEST, LATEST] {
            assert!(end.format(&Rfc3339).is_ok());
            let back =
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms(end)) * 1_000_000);
            assert_eq!(back, Ok(end));
        }
    }

    #[test]
    fn clamping_moves_an_instant_to_the_nearest_end() {
        assert_eq!(clamped(parse("0000-01-01T00:00:00+00:01")), EARLIEST);
        assert_eq!(clamped(parse("9999-12-31T23:59:59-23:59")), LATEST);
        assert_eq!(
            clamped(parse("2024-05-05T05:05:05.5555+02:00")),
            parse("2024-05-05T03:05:05.555Z")
        );
    }
}
