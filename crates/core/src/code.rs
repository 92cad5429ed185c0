//! Short codes: the path segment that names a link.
//!
//! A code is either generated ([`CodeGenerator`], nanoid-style: uniform characters drawn
//! from a CSPRNG) or chosen by the user ([`Alias`]). Both end up as a [`ShortCode`], and a
//! `ShortCode` can only be built by parsing, so every code the service handles is known to
//! be URL-path safe: 1 to 64 characters of `[A-Za-z0-9_-]`.
//!
//! Why a CSPRNG: codes are unguessable capabilities for unlisted links. A predictable
//! generator would let anyone enumerate every link ever created.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// Longest code (generated or alias) in bytes. Keeps keys small in the cache and the store.
pub const MAX_CODE_LEN: usize = 64;

/// Shortest custom alias. Shorter aliases are a scarce namespace better left to generation.
pub const MIN_ALIAS_LEN: usize = 3;

/// Default alphabet: base62. No `-`/`_` so codes survive double-click selection in most UIs.
pub const BASE62: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Default generated length: 62^7 ≈ 3.5e12 codes, so collisions stay rare (and are retried)
/// well past a billion links.
pub const DEFAULT_CODE_LEN: usize = 7;

/// Path segments the service itself uses or may use; an alias may not shadow them.
/// Compared case-insensitively.
pub const RESERVED: &[&str] = &[
    "admin", "api", "assets", "docs", "favicon", "health", "healthz", "login", "logout", "metrics",
    "readyz", "robots", "static", "stats", "status", "www",
];

/// Why a string is not a valid code or alias.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// Empty, or longer than [`MAX_CODE_LEN`].
    #[error("must be between {min} and {MAX_CODE_LEN} characters long")]
    Length {
        /// The minimum that applied (1 for codes, [`MIN_ALIAS_LEN`] for aliases).
        min: usize,
    },
    /// A character outside `[A-Za-z0-9_-]`.
    #[error("may only contain letters, digits, '-' and '_'")]
    Charset,
    /// The alias is one of [`RESERVED`].
    #[error("'{0}' is reserved")]
    Reserved(String),
}

/// A syntactically valid short code. Cheap to clone (`Arc<str>`): the cache clones keys.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShortCode(Arc<str>);

impl ShortCode {
    /// Parses any code (generated or alias) as it appears in a request path.
    pub fn parse(s: &str) -> Result<Self, CodeError> {
        check_syntax(s, 1)?;
        Ok(Self(Arc::from(s)))
    }

    /// Whether `s` could be a code, without allocating. The redirect hot path uses this to
    /// reject junk paths before they reach the cache.
    #[inline]
    pub fn is_valid(s: &str) -> bool {
        check_syntax(s, 1).is_ok()
    }

    /// The code as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// `Borrow<str>` lets the cache be queried with the `&str` from the request path, so a
// cache hit allocates no key. Sound because the derived `Hash`/`Eq` of a one-field tuple
// struct are exactly those of the inner `str`.
impl Borrow<str> for ShortCode {
    fn borrow(&self) -> &str {
        &self.0
    }
}

// Serialized as the plain string (it travels in click events); deserializing validates,
// so a malformed event cannot smuggle a non-code into statistics.
impl serde::Serialize for ShortCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ShortCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&code).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for ShortCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ShortCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShortCode({:?})", &*self.0)
    }
}

/// A user-chosen code: 3 to 64 characters of `[A-Za-z0-9_-]`, not a reserved word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias(ShortCode);

impl Alias {
    /// Parses a requested alias.
    pub fn parse(s: &str) -> Result<Self, CodeError> {
        check_syntax(s, MIN_ALIAS_LEN)?;
        if is_reserved(s) {
            return Err(CodeError::Reserved(s.to_owned()));
        }
        Ok(Self(ShortCode(Arc::from(s))))
    }

    /// The alias as the code it will be stored under.
    pub fn into_code(self) -> ShortCode {
        self.0
    }
}

fn is_reserved(s: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(s))
}

#[inline]
fn check_syntax(s: &str, min: usize) -> Result<(), CodeError> {
    if s.len() < min || s.len() > MAX_CODE_LEN {
        return Err(CodeError::Length { min });
    }
    if !s.bytes().all(is_code_byte) {
        return Err(CodeError::Charset);
    }
    Ok(())
}

#[inline]
fn is_code_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Why a generator configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeneratorConfigError {
    /// The length is outside 4..=64.
    #[error("code length must be between 4 and {MAX_CODE_LEN}, got {0}")]
    Length(usize),
    /// The alphabet has a character that is not `[A-Za-z0-9_-]`.
    #[error("code alphabet may only contain letters, digits, '-' and '_'")]
    Charset,
    /// Fewer than 16 distinct characters, or a repeated character (which would bias codes).
    #[error("code alphabet needs at least 16 distinct characters and no repeats")]
    Alphabet,
}

/// Generates random codes. Construct once from config and share (it is immutable).
#[derive(Debug, Clone)]
pub struct CodeGenerator {
    alphabet: Box<[char]>,
    length: usize,
}

impl Default for CodeGenerator {
    fn default() -> Self {
        Self::new(BASE62, DEFAULT_CODE_LEN).expect("the default alphabet and length are valid")
    }
}

impl CodeGenerator {
    /// Validates an alphabet and length. Refuses configurations that could produce invalid
    /// or biased codes.
    pub fn new(alphabet: &str, length: usize) -> Result<Self, GeneratorConfigError> {
        if !(4..=MAX_CODE_LEN).contains(&length) {
            return Err(GeneratorConfigError::Length(length));
        }
        if !alphabet.bytes().all(is_code_byte) {
            return Err(GeneratorConfigError::Charset);
        }
        let mut seen = [false; 128];
        for b in alphabet.bytes() {
            if std::mem::replace(&mut seen[usize::from(b)], true) {
                return Err(GeneratorConfigError::Alphabet);
            }
        }
        if alphabet.len() < 16 {
            return Err(GeneratorConfigError::Alphabet);
        }
        Ok(Self {
            alphabet: alphabet.chars().collect(),
            length,
        })
    }

    /// Configured code length.
    pub fn length(&self) -> usize {
        self.length
    }

    /// A fresh random code, by `nanoid`: random bytes from the operating system's CSPRNG
    /// (`nanoid::rngs::default`), each masked to the next power of two above the
    /// alphabet and discarded when past its end, so every character is equally likely
    /// (no modulo bias). A code that happens to spell a reserved word is redrawn.
    pub fn generate(&self) -> ShortCode {
        loop {
            let code = nanoid::format(nanoid::rngs::default, &self.alphabet, self.length);
            if !is_reserved(&code) {
                return ShortCode(Arc::from(code));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_codes_have_the_configured_length_and_alphabet() {
        let generator = CodeGenerator::new("abcdefghijklmnop", 12).expect("valid config");
        for _ in 0..1000 {
            let code = generator.generate();
            assert_eq!(code.as_str().len(), 12);
            assert!(code.as_str().bytes().all(|b| (b'a'..=b'p').contains(&b)));
            assert!(ShortCode::is_valid(code.as_str()));
        }
    }

    #[test]
    fn default_codes_are_seven_base62_characters_and_do_not_repeat() {
        let generator = CodeGenerator::default();
        let codes: HashSet<_> = (0..10_000).map(|_| generator.generate()).collect();
        assert_eq!(
            codes.len(),
            10_000,
            "10k draws from 62^7 should not collide"
        );
        assert!(codes.iter().all(
            |c| c.as_str().len() == 7 && c.as_str().bytes().all(|b| b.is_ascii_alphanumeric())
        ));
    }

    #[test]
    fn every_alphabet_character_is_drawn_roughly_uniformly() {
        let generator = CodeGenerator::new(BASE62, 64).expect("valid config");
        let mut counts = [0u32; 128];
        for _ in 0..2_000 {
            for b in generator.generate().as_str().bytes() {
                counts[usize::from(b)] += 1;
            }
        }
        // 128,000 draws over 62 symbols: 2,064 expected each; a biased generator (e.g.
        // `byte % 62`) would skew the first symbols by ~25%.
        for b in BASE62.bytes() {
            let n = counts[usize::from(b)];
            assert!(
                (1_800..2_350).contains(&n),
                "{} drawn {n} times",
                char::from(b)
            );
        }
    }

    #[test]
    fn generator_rejects_bad_configs() {
        assert_eq!(
            CodeGenerator::new(BASE62, 3).unwrap_err(),
            GeneratorConfigError::Length(3)
        );
        assert_eq!(
            CodeGenerator::new(BASE62, 65).unwrap_err(),
            GeneratorConfigError::Length(65)
        );
        assert_eq!(
            CodeGenerator::new("abc/def", 7).unwrap_err(),
            GeneratorConfigError::Charset
        );
        assert_eq!(
            CodeGenerator::new("abcdefgh", 7).unwrap_err(),
            GeneratorConfigError::Alphabet
        );
        assert_eq!(
            CodeGenerator::new("aabcdefghijklmnopq", 7).unwrap_err(),
            GeneratorConfigError::Alphabet
        );
    }

    #[test]
    fn aliases_follow_the_length_charset_and_reserved_rules() {
        assert!(Alias::parse("my-link_2026").is_ok());
        assert!(Alias::parse("abc").is_ok());
        assert!(Alias::parse(&"a".repeat(64)).is_ok());
        assert_eq!(
            Alias::parse("ab").unwrap_err(),
            CodeError::Length { min: 3 }
        );
        assert_eq!(
            Alias::parse(&"a".repeat(65)).unwrap_err(),
            CodeError::Length { min: 3 }
        );
        for bad in ["a b c", "abc/", "a.b.c", "ünï", "abc%20", "abc?x", "../etc"] {
            assert_eq!(Alias::parse(bad).unwrap_err(), CodeError::Charset, "{bad}");
        }
        for reserved in ["api", "API", "healthz", "Metrics", "readyz", "static"] {
            assert!(
                matches!(Alias::parse(reserved), Err(CodeError::Reserved(_))),
                "{reserved}"
            );
        }
    }

    #[test]
    fn short_codes_accept_any_path_safe_segment() {
        assert!(ShortCode::is_valid("a"));
        assert!(
            ShortCode::is_valid("api"),
            "lookups may name reserved words; they just 404"
        );
        assert!(!ShortCode::is_valid(""));
        assert!(!ShortCode::is_valid("favicon.ico"));
        assert!(!ShortCode::is_valid(&"x".repeat(65)));
    }

    #[test]
    fn short_codes_travel_as_plain_strings_and_are_validated_on_the_way_in() {
        let code = ShortCode::parse("abc_12").expect("valid");
        assert_eq!(serde_json::to_string(&code).expect("json"), r#""abc_12""#);
        let back: ShortCode = serde_json::from_str(r#""abc_12""#).expect("valid");
        assert_eq!(back, code);
        for junk in [r#""""#, r#""a/b""#, r#""<script>""#, "42"] {
            assert!(serde_json::from_str::<ShortCode>(junk).is_err(), "{junk}");
        }
    }
}
