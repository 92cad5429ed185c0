//! Aliases and codes: what parses is path-safe, within length, never a reserved word (for
//! an alias), and parses the same way again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shortener_core::code::{MAX_CODE_LEN, MIN_ALIAS_LEN, RESERVED};
use shortener_core::{Alias, ShortCode};

fuzz_target!(|input: &str| {
    if let Ok(code) = ShortCode::parse(input) {
        let text = code.as_str();
        assert!((1..=MAX_CODE_LEN).contains(&text.len()));
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert!(ShortCode::is_valid(text));
    }
    if let Ok(alias) = Alias::parse(input) {
        let code = alias.into_code();
        assert!(code.as_str().len() >= MIN_ALIAS_LEN);
        assert!(!RESERVED.iter().any(|r| r.eq_ignore_ascii_case(code.as_str())));
        assert_eq!(ShortCode::parse(input).ok(), Some(code));
    }
});
