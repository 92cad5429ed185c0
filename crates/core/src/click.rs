//! The click event: the one serialized boundary between the service, which records
//! clicks, and analytics, which aggregates them (in process, or in the analytics consumer
//! behind Kafka; its JSON on the wire is docs/events.md).
//!
//! Versioned and changed additively only: a new field must be optional
//! (`#[serde(default)]`), so consumers of version N read events of version N+1, and the
//! other way round. Raw client addresses never appear here: the visitor is a keyed hash
//! (see [`VisitorHasher`]) whose key rotates daily, so events cannot be joined across days
//! or reversed into an address by anyone without the secret.

use std::borrow::Cow;
use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ShortCode;

/// Version of [`ClickEvent`] written by this code.
pub const CLICK_EVENT_VERSION: u8 = 1;

/// Longest referrer or user agent kept, in bytes. Real ones are well under it; longer
/// ones are junk or attacks, and they cost memory in every batch and every top-N table.
pub const MAX_TEXT_FIELD_LEN: usize = 512;

/// Milliseconds in a UTC day: the visitor-hash key and daily statistics roll over on it.
pub const DAY_MS: i64 = 86_400_000;

/// One redirect, as analytics sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickEvent {
    /// Format version ([`CLICK_EVENT_VERSION`]).
    pub v: u8,
    /// Unique per click (UUIDv7: time-ordered), so a consumer can drop redeliveries.
    pub id: Uuid,
    /// The short code that was followed (a shared `Arc`: no copy per event).
    pub code: ShortCode,
    /// When, in Unix milliseconds (UTC).
    pub at_ms: i64,
    /// The `Referer` header, capped ([`cap_text`]). Shared: the recorder interns
    /// repeated values, so most events point at the same few allocations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<Arc<str>>,
    /// The `User-Agent` header, capped; shared like the referrer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<Arc<str>>,
    /// ISO 3166-1 alpha-2 country from a trusted edge header, if configured and valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Keyed hash of client address + user agent, with a daily key: counts unique
    /// visitors within a day without storing who they are.
    pub visitor: u64,
}

/// Header bytes as safe text: invalid UTF-8 replaced by U+FFFD, then cut to at most
/// [`MAX_TEXT_FIELD_LEN`] bytes on a character boundary. Markup is kept as data (it is
/// escaped wherever it is rendered: JSON here); nothing is interpreted.
///
/// Runs on the redirect path (see the service's `clicks` module), so the common case is
/// fast: a valid prefix is checked by `str::from_utf8` (word-at-a-time on ASCII) and
/// copied once. `String::from_utf8_lossy` walks byte chunks and cost ~5 instructions a
/// byte on a browser's user agent; it now runs only for input that is not UTF-8.
///
/// Borrows when it can (valid UTF-8, the common case), so a caller that interns the
/// result copies nothing for a value it has seen before.
pub fn cap_text(raw: &[u8]) -> Cow<'_, str> {
    // Checking only the prefix bounds the work for a 10 KB header. A multi-byte sequence
    // cut by the prefix makes it invalid: the lossy path turns it into one U+FFFD, which
    // the truncation then handles.
    let prefix = &raw[..raw.len().min(MAX_TEXT_FIELD_LEN + 4)];
    match std::str::from_utf8(prefix) {
        Ok(text) => Cow::Borrowed(truncate(text)),
        Err(_) => Cow::Owned(truncate(&String::from_utf8_lossy(prefix)).to_owned()),
    }
}

/// `text` cut to at most [`MAX_TEXT_FIELD_LEN`] bytes, on a character boundary.
fn truncate(text: &str) -> &str {
    let mut end = text.len().min(MAX_TEXT_FIELD_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// An ISO 3166-1 alpha-2 code, upper-case ASCII: two bytes, no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Country([u8; 2]);

impl Country {
    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Built only by `parse_country`, from two ASCII letters.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

/// A country header value, if it is exactly two ASCII letters (upper-cased). Anything
/// else (a spoofed or garbled header) is ignored rather than counted.
pub fn parse_country(raw: &[u8]) -> Option<Country> {
    match *raw {
        [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            Some(Country([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
        }
        _ => None,
    }
}

/// Event ids: UUIDv7 whose 74 "random" bits start at a random value and then count up
/// (RFC 9562, section 6.2, method 2: monotonic random).
///
/// Unique within a process by construction (2^74 ids before the counter wraps), and
/// across processes because each starts at its own random point in that space; ids of
/// one process also sort in the order it created them. A fresh random draw per event
/// cost more than building the rest of the event.
#[derive(Debug)]
pub struct EventIds {
    next: u128,
}

impl EventIds {
    /// Bits after the timestamp, version and variant.
    const RANDOM_BITS: u32 = 74;
    const RANDOM_MASK: u128 = (1 << Self::RANDOM_BITS) - 1;

    /// A source starting at a random point.
    pub fn new() -> Self {
        Self::starting_at(rand::random())
    }

    /// A source starting at `start` (masked to 74 bits): for tests.
    pub fn starting_at(start: u128) -> Self {
        Self {
            next: start & Self::RANDOM_MASK,
        }
    }

    /// The id of an event at `at_ms` (Unix milliseconds).
    pub fn next(&mut self, at_ms: i64) -> Uuid {
        let random = self.next;
        self.next = (self.next + 1) & Self::RANDOM_MASK;
        let millis = u128::from(u64::try_from(at_ms).unwrap_or(0) & 0xffff_ffff_ffff);
        // 48 bits of time | version 7 | 12 bits | variant 0b10 | 62 bits.
        Uuid::from_u128(
            millis << 80
                | 0x7 << 76
                | (random >> 62) << 64
                | 0b10 << 62
                | (random & ((1 << 62) - 1)),
        )
    }
}

impl Default for EventIds {
    fn default() -> Self {
        Self::new()
    }
}

/// Hashes (client address, user agent) into a visitor id with a key that changes every
/// UTC day.
///
/// The daily key is derived from a long-lived secret and the day number (BLAKE3
/// `derive_key`), so nothing needs to be stored or coordinated to rotate it, and every
/// instance sharing the secret computes the same visitor id on the same day (so uniques
/// are counted correctly across instances). Per click, the hash is SipHash-1-3 under the
/// day's 128-bit key: a keyed PRF, so ids cannot be reversed or linked across days
/// without the secret, at a fraction of BLAKE3's cost on inputs this short.
#[derive(Clone)]
pub struct VisitorHasher {
    secret: [u8; 32],
    /// The last day seen and its key: deriving a key costs more than hashing an event.
    current: Option<(i64, [u8; 16])>,
}

impl VisitorHasher {
    /// A hasher keyed by `secret` (any length; hashed into a 32-byte key).
    pub fn new(secret: &[u8]) -> Self {
        Self {
            secret: blake3::derive_key("shortener visitor secret v1", secret),
            current: None,
        }
    }

    /// The visitor id of `ip` + `user_agent` at `at_ms`.
    pub fn visitor(&mut self, at_ms: i64, ip: IpAddr, user_agent: &[u8]) -> u64 {
        let day = at_ms.div_euclid(DAY_MS);
        let key = match self.current {
            Some((cached, key)) if cached == day => key,
            _ => {
                let mut material = self.secret.to_vec();
                material.extend_from_slice(&day.to_le_bytes());
                let derived = blake3::derive_key("shortener visitor day key v1", &material);
                let mut key = [0u8; 16];
                key.copy_from_slice(&derived[..16]);
                self.current = Some((day, key));
                key
            }
        };
        let mut hasher = siphasher::sip::SipHasher13::new_with_key(&key);
        // The address bytes in network order, then a 0 separator (so (address, agent)
        // pairs cannot collide by shifting bytes), then the agent. Integer writes feed
        // their little-endian bytes through SipHash's short-input path, which is cheaper
        // than a slice write; `from_le_bytes` makes those bytes the octets themselves, so
        // ids equal those of a plain byte-slice write (tested).
        match ip {
            IpAddr::V4(v4) => hasher.write_u32(u32::from_le_bytes(v4.octets())),
            IpAddr::V6(v6) => hasher.write_u128(u128::from_le_bytes(v6.octets())),
        }
        hasher.write_u8(0);
        hasher.write(user_agent);
        hasher.finish()
    }
}

impl std::fmt::Debug for VisitorHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VisitorHasher(<secret>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_capped_on_a_character_boundary() {
        let ten_kb = "é".repeat(5_000);
        let capped = cap_text(ten_kb.as_bytes());
        assert!(capped.len() <= MAX_TEXT_FIELD_LEN);
        assert_eq!(
            capped.len(),
            MAX_TEXT_FIELD_LEN,
            "512 is even, 'é' is 2 bytes"
        );
        assert!(capped.chars().all(|c| c == 'é'));
    }

    #[test]
    fn invalid_utf8_is_replaced_and_markup_kept_as_data() {
        assert_eq!(cap_text(b"abc\xff\xfedef"), "abc\u{fffd}\u{fffd}def");
        let html = "<script>alert('x')</script>";
        assert_eq!(cap_text(html.as_bytes()), html);
        let mut cut_sequence = vec![b'a'; MAX_TEXT_FIELD_LEN - 1];
        cut_sequence.extend_from_slice("€".as_bytes());
        assert!(cap_text(&cut_sequence).len() <= MAX_TEXT_FIELD_LEN);
    }

    #[test]
    fn countries_are_two_letters_or_nothing() {
        assert_eq!(
            parse_country(b"de").map(|c| c.as_str().to_owned()),
            Some("DE".into())
        );
        assert_eq!(
            parse_country(b"US").map(|c| c.as_str().to_owned()),
            Some("US".into())
        );
        for bad in [&b""[..], b"D", b"DEU", b"1A", b"<s", b"\xff\xff"] {
            assert_eq!(parse_country(bad), None);
        }
    }

    #[test]
    fn valid_text_is_copied_as_is_and_a_cut_character_is_dropped() {
        let agent = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0";
        assert_eq!(cap_text(agent.as_bytes()), agent);
        // Valid UTF-8 whose 512-byte cut falls inside a character: the fast path.
        let mut text = "a".repeat(MAX_TEXT_FIELD_LEN - 1);
        text.push_str("ééé");
        assert_eq!(
            cap_text(text.as_bytes()),
            "a".repeat(MAX_TEXT_FIELD_LEN - 1)
        );
    }

    #[test]
    fn event_ids_are_v7_unique_and_ordered_even_within_a_millisecond() {
        let mut ids = EventIds::new();
        let at = 1_763_790_000_000;
        let batch: Vec<Uuid> = (0..1_000).map(|_| ids.next(at)).collect();
        for id in &batch {
            assert_eq!(id.get_version_num(), 7);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            let (secs, nanos) = id.get_timestamp().expect("v7 has a timestamp").to_unix();
            assert_eq!(secs * 1_000 + u64::from(nanos) / 1_000_000, at as u64);
        }
        assert!(batch.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
        // The counter carries from the 62 low bits into the 12 above the version.
        let mut ids = EventIds::starting_at((1 << 62) - 1);
        let (a, b) = (ids.next(at), ids.next(at));
        assert!(a < b);
        assert_eq!(b.get_version_num(), 7);
        // Two processes start at independent random points.
        assert_ne!(EventIds::new().next(at), EventIds::new().next(at));
    }

    #[test]
    fn visitor_ids_equal_a_plain_hash_of_the_address_octets_and_agent() {
        let mut hasher = VisitorHasher::new(b"secret");
        let at = 20_000 * DAY_MS;
        hasher.visitor(at, IpAddr::from([0, 0, 0, 0]), b""); // derive the day key
        let (_, key) = hasher.current.expect("day key");
        for ip in ["203.0.113.9", "2001:db8::1"] {
            let ip: IpAddr = ip.parse().expect("ip");
            let mut plain = siphasher::sip::SipHasher13::new_with_key(&key);
            match ip {
                IpAddr::V4(v4) => plain.write(&v4.octets()),
                IpAddr::V6(v6) => plain.write(&v6.octets()),
            }
            plain.write(&[0]);
            plain.write(b"Firefox");
            assert_eq!(hasher.visitor(at, ip, b"Firefox"), plain.finish(), "{ip}");
        }
    }

    #[test]
    fn visitors_are_stable_within_a_day_and_change_across_days_and_secrets() {
        let ip: IpAddr = "203.0.113.9".parse().expect("ip");
        let mut hasher = VisitorHasher::new(b"secret");
        let morning = 20_000 * DAY_MS + 1_000;
        let evening = 20_000 * DAY_MS + DAY_MS - 1;
        let a = hasher.visitor(morning, ip, b"Firefox");
        assert_eq!(a, hasher.visitor(evening, ip, b"Firefox"));
        assert_ne!(
            a,
            hasher.visitor(evening + 1, ip, b"Firefox"),
            "new day, new key"
        );
        assert_ne!(a, hasher.visitor(morning, ip, b"Chrome"));
        assert_ne!(
            a,
            hasher.visitor(morning, "203.0.113.10".parse().expect("ip"), b"Firefox")
        );
        assert_ne!(
            a,
            VisitorHasher::new(b"other").visitor(morning, ip, b"Firefox")
        );
    }

    #[test]
    fn events_round_trip_and_tolerate_unknown_fields() {
        let event = ClickEvent {
            v: CLICK_EVENT_VERSION,
            id: Uuid::now_v7(),
            code: ShortCode::parse("abc").expect("valid code"),
            at_ms: 1_763_790_000_000,
            referrer: Some("https://news.example/".into()),
            user_agent: None,
            country: Some("DE".into()),
            visitor: 42,
        };
        let json = serde_json::to_string(&event).expect("serialize");
        assert_eq!(
            serde_json::from_str::<ClickEvent>(&json).expect("parse"),
            event
        );
        let newer = json.replacen('{', r#"{"added_in_v2":true,"#, 1);
        assert_eq!(
            serde_json::from_str::<ClickEvent>(&newer).expect("additive change"),
            event
        );
    }
}
