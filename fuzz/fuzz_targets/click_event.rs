//! Click events off the wire (what a Kafka message holds, from any producer): any bytes
//! decode to an event whose code is valid, or to an error; a decoded event encodes and
//! decodes back to itself. Statistics rows and link records, also read from storage,
//! get the same treatment: an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shortener_core::{ShortCode, encoding, record};
use shortener_kafka::wire;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(event) = wire::decode(Some(bytes)) {
        assert!(ShortCode::is_valid(event.code.as_str()));
        let mut out = Vec::new();
        wire::encode(&event, &mut out);
        let again = wire::decode(Some(&out)).expect("what we encode decodes");
        assert_eq!(again, event);
    }
    let _ = encoding::decode_day(bytes);
    let _ = encoding::decode_totals(bytes);
    if let Ok(code) = ShortCode::parse("fuzz") {
        let _ = record::decode(&code, bytes);
    }
});
