//! The click event on the wire: one Kafka message per click, keyed by its short code,
//! the value the event as a JSON object (documented field by field in docs/events.md).
//!
//! JSON, not a binary format: any language reads it with its standard library (the tests
//! decode produced events with Python), an operator can read a message with
//! `kafka-console-consumer`, and the cost is measured (docs/benchmarks.md, "Kafka"). The
//! format is versioned by the event's `v` field and only grows: a new field is optional,
//! unknown fields are ignored, so an older consumer reads a newer producer's events.
//!
//! The key is the code, so every click of one link lands on one partition: the consumer
//! that owns the partition is the only one aggregating that link's counts.

use shortener_core::click::ClickEvent;

/// Why a message is not a click event (the consumer sends it to the dead-letter topic).
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// No value (a tombstone, or a message from something else).
    #[error("the message has no value")]
    Empty,
    /// The value is not a click event's JSON.
    #[error("the value is not a click event")]
    Json(#[from] serde_json::Error),
    /// A version this code does not know as a click event (0 was never written).
    #[error("click event version {0} is not one this consumer reads")]
    Version(u8),
}

/// The message key of `event`: its short code.
pub fn key(event: &ClickEvent) -> &[u8] {
    event.code.as_str().as_bytes()
}

/// Appends `event`'s message value to `out`.
pub fn encode(event: &ClickEvent, out: &mut Vec<u8>) {
    // Writing a derived `Serialize` into a `Vec` cannot fail: every field is a string,
    // a number or an id, and the writer is memory.
    if let Err(error) = serde_json::to_writer(out, event) {
        tracing::error!(%error, "a click event could not be encoded");
    }
}

/// The click event in a message value.
pub fn decode(value: Option<&[u8]>) -> Result<ClickEvent, WireError> {
    let value = value.filter(|v| !v.is_empty()).ok_or(WireError::Empty)?;
    let event: ClickEvent = serde_json::from_slice(value)?;
    if event.v == 0 {
        return Err(WireError::Version(event.v));
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shortener_core::ShortCode;
    use shortener_core::click::CLICK_EVENT_VERSION;

    fn event() -> ClickEvent {
        ClickEvent {
            v: CLICK_EVENT_VERSION,
            id: uuid::Uuid::now_v7(),
            code: ShortCode::parse("abc123").expect("code"),
            at_ms: 1_765_000_000_000,
            referrer: Some("https://news.example/".into()),
            user_agent: Some("Mozilla/5.0 Firefox/121.0".into()),
            country: Some("DE".into()),
            visitor: 42,
        }
    }

    #[test]
    fn an_event_reads_back_equal() {
        let mut out = Vec::new();
        encode(&event(), &mut out);
        let json: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(json["code"], "abc123");
        assert_eq!(json["v"], 1);
        let back = decode(Some(&out)).expect("decoded");
        assert_eq!(back, event_with_id(back.id));
        assert_eq!(key(&back), b"abc123");
    }

    fn event_with_id(id: uuid::Uuid) -> ClickEvent {
        ClickEvent { id, ..event() }
    }

    #[test]
    fn a_newer_event_with_an_added_field_is_read() {
        let mut out = Vec::new();
        encode(&event(), &mut out);
        let mut json: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        json["v"] = 2.into();
        json["device"] = "phone".into();
        let newer = serde_json::to_vec(&json).expect("encode");
        let read = decode(Some(&newer)).expect("an older consumer reads a newer event");
        assert_eq!(read.code.as_str(), "abc123");
        assert_eq!(read.v, 2);
    }

    #[test]
    fn what_is_not_an_event_is_refused_with_a_reason() {
        assert!(matches!(decode(None), Err(WireError::Empty)));
        assert!(matches!(decode(Some(b"")), Err(WireError::Empty)));
        assert!(matches!(
            decode(Some(b"{not json")),
            Err(WireError::Json(_))
        ));
        assert!(matches!(
            decode(Some(br#"{"v":1,"code":"../x"}"#)),
            Err(WireError::Json(_))
        ));
        let mut out = Vec::new();
        encode(&ClickEvent { v: 0, ..event() }, &mut out);
        assert!(matches!(decode(Some(&out)), Err(WireError::Version(0))));
    }
}
