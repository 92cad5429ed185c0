//! Request routing and bearer tokens: any path maps to one route whose code segment is
//! a single non-empty path segment taken from the path itself; any Authorization value
//! splits into a key id and secret of the exact shapes, or into nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shortener::http::router::Route;
use shortener_core::access::{is_key_id, split_token};

fuzz_target!(|input: &str| {
    let (route, code) = Route::classify(input);
    match route {
        Route::Redirect | Route::Link | Route::LinkStats | Route::Key => {
            assert!(!code.is_empty() && !code.contains('/'), "{input:?} -> {code:?}");
            assert!(input.contains(code));
        }
        _ => assert!(code.is_empty()),
    }
    assert!(Route::ALL.contains(&route));
    if let Some((id, secret)) = split_token(input) {
        assert!(is_key_id(id));
        assert_eq!(input, format!("sk_{id}_{secret}"));
    }
});
