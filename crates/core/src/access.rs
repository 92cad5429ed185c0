//! API keys, owners and scopes: who may use the management API, and on which links.
//!
//! A key is a bearer token `sk_<id>_<secret>`: a 12-character public id (the lookup key)
//! and a 32-character secret of letters and digits (190 random bits, drawn by `nanoid`
//! from the operating system's CSPRNG). It is shown once, when it is made; the
//! store keeps only a keyed BLAKE3 hash of the secret. A password hash (argon2, bcrypt)
//! is slow on purpose to make guessing a human's password costly; a 190-bit random
//! secret cannot be guessed, so a fast hash is enough, and costs every authenticated
//! request a fraction of a microsecond. The hashes are compared in constant time
//! (`blake3::Hash`'s equality), so timing tells nothing about how close a guess was.
//!
//! A key has an [`Owner`] and [`Scopes`]. A link belongs to the owner whose key created
//! it; reading, listing, deleting and statistics are limited to the owner's links unless
//! the key has the `admin` scope. [`KeyStore`] is the storage contract, kept by every
//! backend and checked by the contract suite.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::StoreError;
use crate::instant::unix_ms;

/// Why an owner, scope list or token is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// Not 1 to 64 characters of `[A-Za-z0-9._@-]`.
    #[error("owner must be 1 to 64 characters of letters, digits, '.', '_', '@' or '-'")]
    Owner,
    /// A scope name that does not exist, or an empty list.
    #[error("scopes must be a non-empty list of links:write, links:read, stats:read, admin")]
    Scopes,
}

/// Who a key (and every link it creates) belongs to: a user or team name.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Owner(Arc<str>);

impl Owner {
    /// Validates an owner name.
    pub fn parse(name: &str) -> Result<Self, AccessError> {
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
        if valid {
            Ok(Self(Arc::from(name)))
        } else {
            Err(AccessError::Owner)
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Owner({:?})", &*self.0)
    }
}

/// What a key may do: a set of scopes, stored as bits.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// Create links.
    pub const LINKS_WRITE: Self = Self(1);
    /// Read, list and delete the owner's links (deleting needs `links:write` too).
    pub const LINKS_READ: Self = Self(2);
    /// Read the owner's links' statistics.
    pub const STATS_READ: Self = Self(4);
    /// Everything, on every owner's links, and managing keys.
    pub const ADMIN: Self = Self(8);
    /// The names, in bit order.
    const NAMES: [(&'static str, Self); 4] = [
        ("links:write", Self::LINKS_WRITE),
        ("links:read", Self::LINKS_READ),
        ("stats:read", Self::STATS_READ),
        ("admin", Self::ADMIN),
    ];

    /// A comma-separated list of scope names (`links:write,links:read`).
    pub fn parse(list: &str) -> Result<Self, AccessError> {
        Self::from_names(list.split(',').map(str::trim))
    }

    /// Scopes from their names; an unknown name or none at all is an error.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, AccessError> {
        let mut bits = 0;
        for name in names {
            let (_, scope) = Self::NAMES
                .iter()
                .find(|(known, _)| *known == name)
                .ok_or(AccessError::Scopes)?;
            bits |= scope.0;
        }
        if bits == 0 {
            return Err(AccessError::Scopes);
        }
        Ok(Self(bits))
    }

    /// Whether these scopes allow `needed` (admin allows everything).
    pub fn allow(self, needed: Self) -> bool {
        self.is_admin() || self.0 & needed.0 == needed.0
    }

    /// Whether this is an admin key.
    pub fn is_admin(self) -> bool {
        self.0 & Self::ADMIN.0 != 0
    }

    /// The scope names, in a fixed order.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(_, scope)| self.0 & scope.0 != 0)
            .map(|(name, _)| *name)
            .collect()
    }

    /// The stored form.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// From the stored form; `None` for bits no scope has.
    pub fn from_bits(bits: u8) -> Option<Self> {
        (bits != 0 && bits & !0b1111 == 0).then_some(Self(bits))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({})", self.names().join(","))
    }
}

/// A stored key: everything but its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The public id (the lookup key; shown in listings and used to revoke).
    pub id: String,
    /// Who it belongs to.
    pub owner: Owner,
    /// What it may do.
    pub scopes: Scopes,
    /// The keyed BLAKE3 hash of the secret.
    pub hash: [u8; 32],
    /// When it was made (millisecond precision once stored).
    pub created_at: OffsetDateTime,
    /// When it was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<OffsetDateTime>,
}

/// A key just made: its record (to store) and its token (to show once, then forget).
pub struct IssuedKey {
    /// What the store keeps.
    pub record: KeyRecord,
    /// `sk_<id>_<secret>`: what the client sends as `Authorization: Bearer`.
    pub token: String,
}

impl fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedKey")
            .field("record", &self.record)
            .field("token", &"<redacted>")
            .finish()
    }
}

const ID_LEN: usize = 12;
const SECRET_LEN: usize = 32;
const PREFIX: &str = "sk_";
/// Letters and digits: each character is log2(62) = 5.95 random bits, so a secret holds
/// 190, and no id starts with a character a shell or a command line takes for a flag.
const ALPHABET: [char; 62] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I',
    'J', 'K', 'L', 'M', 'N', 'O', 'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'a', 'b',
    'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's', 't', 'u',
    'v', 'w', 'x', 'y', 'z',
];

/// Hashes secrets with a key derived from the configured pepper.
#[derive(Clone)]
pub struct KeyHasher([u8; 32]);

impl KeyHasher {
    /// The hasher for `pepper` (`auth.pepper`; may be empty).
    pub fn new(pepper: &str) -> Self {
        Self(blake3::derive_key(
            "shortener 2026-12 API key secret hash",
            pepper.as_bytes(),
        ))
    }

    fn hash(&self, secret: &str) -> blake3::Hash {
        blake3::keyed_hash(&self.0, secret.as_bytes())
    }

    /// Makes a key for `owner` with `scopes`.
    pub fn issue(&self, owner: Owner, scopes: Scopes, now: OffsetDateTime) -> IssuedKey {
        let random = |len| nanoid::format(nanoid::rngs::default, &ALPHABET, len);
        let (id, secret) = (random(ID_LEN), random(SECRET_LEN));
        let token = format!("{PREFIX}{id}_{secret}");
        IssuedKey {
            record: KeyRecord {
                id,
                owner,
                scopes,
                hash: *self.hash(&secret).as_bytes(),
                created_at: crate::instant::clamped(now),
                revoked_at: None,
            },
            token,
        }
    }

    /// Whether `secret` is the one `record` was made with, in constant time.
    pub fn verify(&self, record: &KeyRecord, secret: &str) -> bool {
        self.hash(secret) == blake3::Hash::from(record.hash)
    }
}

/// The id and secret of a bearer token, if it has the shape of one.
pub fn split_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    if rest.len() != ID_LEN + 1 + SECRET_LEN || rest.as_bytes()[ID_LEN] != b'_' {
        return None;
    }
    let (id, secret) = (&rest[..ID_LEN], &rest[ID_LEN + 1..]);
    let valid = |part: &str| part.chars().all(|c| ALPHABET.contains(&c));
    (valid(id) && valid(secret)).then_some((id, secret))
}

/// Whether `id` has the shape of a key id (checked before any store lookup).
pub fn is_key_id(id: &str) -> bool {
    id.len() == ID_LEN && id.chars().all(|c| ALPHABET.contains(&c))
}

/// Durable key storage: every backend keeps keys beside its links.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new key (ids are random: a taken id is an error, not a retry).
    async fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError>;

    /// The key with this id, revoked or not.
    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError>;

    /// Every key, revoked ones included, in id order.
    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;

    /// Marks the key revoked at `at` (kept, so a listing shows it); `false` if there is
    /// no such key. Revoking a revoked key keeps its first revocation time.
    async fn revoke_key(&self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError>;
}

/// The serialized form of a key for stores that keep bytes (redb): versioned JSON, like
/// a link's record.
#[derive(Serialize, Deserialize)]
struct Stored {
    v: u8,
    owner: String,
    scopes: u8,
    hash: String,
    created_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked_ms: Option<i64>,
}

/// The bytes of `key` (its id is the row's key, not part of the value).
pub fn encode_key(key: &KeyRecord) -> Vec<u8> {
    let stored = Stored {
        v: 1,
        owner: key.owner.as_str().to_owned(),
        scopes: key.scopes.bits(),
        hash: blake3::Hash::from(key.hash).to_hex().to_string(),
        created_ms: unix_ms(key.created_at),
        revoked_ms: key.revoked_at.map(unix_ms),
    };
    serde_json::to_vec(&stored).unwrap_or_default()
}

/// The key stored under `id` as `bytes`.
pub fn decode_key(id: &str, bytes: &[u8]) -> Result<KeyRecord, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        code: format!("key {id}"),
        reason,
    };
    let stored: Stored = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if stored.v != 1 {
        return Err(corrupt(format!("unknown key record version {}", stored.v)));
    }
    let hash = blake3::Hash::from_hex(&stored.hash).map_err(|e| corrupt(e.to_string()))?;
    key_from_parts(
        id,
        &stored.owner,
        stored.scopes,
        hash.as_bytes(),
        stored.created_ms,
        stored.revoked_ms,
    )
}

/// A key from the columns a store keeps (each backend's decoder ends here).
pub fn key_from_parts(
    id: &str,
    owner: &str,
    scopes: u8,
    hash: &[u8],
    created_ms: i64,
    revoked_ms: Option<i64>,
) -> Result<KeyRecord, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        code: format!("key {id}"),
        reason,
    };
    let at = |ms: i64| {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .map_err(|e| corrupt(e.to_string()))
    };
    Ok(KeyRecord {
        id: id.to_owned(),
        owner: Owner::parse(owner).map_err(|e| corrupt(e.to_string()))?,
        scopes: Scopes::from_bits(scopes).ok_or_else(|| corrupt(format!("bad scopes {scopes}")))?,
        hash: hash
            .try_into()
            .map_err(|_| corrupt("a key hash is 32 bytes".into()))?,
        created_at: at(created_ms)?,
        revoked_at: revoked_ms.map(at).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_verifies_and_nothing_else_does() {
        let hasher = KeyHasher::new("");
        let owner = Owner::parse("team-a").expect("valid");
        let issued = hasher.issue(owner, Scopes::LINKS_WRITE, OffsetDateTime::now_utc());
        let (id, secret) = split_token(&issued.token).expect("a token");
        assert_eq!(id, issued.record.id);
        assert!(is_key_id(id));
        assert!(hasher.verify(&issued.record, secret));
        let mut wrong = secret.to_owned();
        wrong.replace_range(0..1, if wrong.starts_with('A') { "B" } else { "A" });
        assert!(!hasher.verify(&issued.record, &wrong));
        assert!(!KeyHasher::new("pepper").verify(&issued.record, secret));
        assert!(
            !format!("{issued:?}").contains(secret),
            "Debug hides the token"
        );
    }

    #[test]
    fn malformed_tokens_are_not_split() {
        let good = format!("sk_{}_{}", "a".repeat(12), "b".repeat(32));
        assert!(split_token(&good).is_some());
        for bad in [
            String::new(),
            "sk_".into(),
            good.replacen("sk_", "pk_", 1),
            format!("{good}x"),
            good.replacen('_', "-", 2),
            format!("sk_{}_{}", "a".repeat(12), "b/".repeat(16)),
            format!("sk_{}_{}", "é".repeat(6), "b".repeat(32)),
        ] {
            assert_eq!(split_token(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn scopes_parse_allow_and_round_trip() {
        let scopes = Scopes::parse("links:read, stats:read").expect("valid");
        assert!(scopes.allow(Scopes::LINKS_READ));
        assert!(!scopes.allow(Scopes::LINKS_WRITE));
        assert_eq!(scopes.names(), ["links:read", "stats:read"]);
        assert_eq!(Scopes::from_bits(scopes.bits()), Some(scopes));
        let admin = Scopes::parse("admin").expect("valid");
        assert!(admin.allow(Scopes::LINKS_WRITE) && admin.allow(Scopes::STATS_READ));
        for bad in ["", "links:delete", "links:read,", "ADMIN"] {
            assert_eq!(Scopes::parse(bad), Err(AccessError::Scopes), "{bad:?}");
        }
        assert_eq!(Scopes::from_bits(0), None);
        assert_eq!(Scopes::from_bits(16), None);
    }

    #[test]
    fn owners_are_short_plain_names() {
        for good in ["a", "team-a", "alice@example.com", &"x".repeat(64)] {
            assert!(Owner::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a/b", "ä", &"x".repeat(65)] {
            assert_eq!(Owner::parse(bad), Err(AccessError::Owner), "{bad}");
        }
    }

    #[test]
    fn keys_round_trip_through_their_stored_form() {
        let hasher = KeyHasher::new("");
        let mut key = hasher
            .issue(
                Owner::parse("o").expect("valid"),
                Scopes::ADMIN,
                OffsetDateTime::now_utc(),
            )
            .record;
        key.revoked_at = Some(key.created_at);
        assert_eq!(
            decode_key(&key.id, &encode_key(&key)).expect("decodes"),
            key
        );
        assert!(decode_key("x", b"{}").is_err());
    }
}
