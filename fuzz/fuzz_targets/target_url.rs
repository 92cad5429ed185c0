//! Target URLs: any string either is refused with a reason, or becomes a URL that is
//! visible ASCII, within the length limit, parses back to itself, and that the target
//! policy can judge without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shortener_core::policy::TargetPolicy;
use shortener_core::target::{MAX_URL_LEN, TargetUrl};

fuzz_target!(|input: &str| {
    let Ok(url) = TargetUrl::parse(input) else {
        return;
    };
    let text = url.as_str();
    assert!(text.len() <= MAX_URL_LEN);
    assert!(text.bytes().all(|b| b.is_ascii_graphic()), "{text:?}");
    let again = TargetUrl::parse(text).expect("a stored URL parses again");
    assert_eq!(again.as_str(), text, "normalising is idempotent");
    let _ = TargetPolicy::default().check(&url);
});
