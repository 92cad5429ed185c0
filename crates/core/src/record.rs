//! The serialized form of a [`Link`]: one small, versioned JSON document, shared by every
//! place a link is kept outside the process (the embedded store's values, the Redis
//! cache's values) so that they cannot drift apart.
//!
//! JSON because it is inspectable with standard tools (`redis-cli GET`, redb dumps) and
//! extends additively (new optional fields) as the link model grows; decoding is paid
//! once per cache miss, never per redirect. Decoding re-validates the target: bytes
//! written by a buggy or older version must not become a `Location` header unchecked.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::instant::unix_ms;
use crate::{Link, Owner, RedirectKind, ShortCode, TargetUrl};

/// Why bytes are not a valid record.
#[derive(Debug, thiserror::Error)]
#[error("corrupt link record: {0}")]
pub struct RecordError(String);

/// The document. Change it additively only: new fields must be optional, so that old
/// records keep decoding.
#[derive(Serialize, Deserialize)]
struct Record {
    /// Format version; bumped only for incompatible changes.
    v: u8,
    url: String,
    /// Unix time in milliseconds.
    created_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_ms: Option<i64>,
    redirect: u16,
    /// Added after v1 shipped: optional, so older records still decode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_clicks: Option<u64>,
    /// Added with API keys: optional, so links made before keys still decode (unowned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

/// The record of `link` (its code is the key, not part of the value).
pub fn encode(link: &Link) -> Vec<u8> {
    let record = Record {
        v: 1,
        url: link.target.as_str().to_owned(),
        created_ms: unix_ms(link.created_at),
        expires_ms: link.expires_at.map(unix_ms),
        redirect: link.redirect.status(),
        max_clicks: link.max_clicks,
        owner: link.owner.as_ref().map(|o| o.as_str().to_owned()),
    };
    // Serializing a struct of strings and integers cannot fail.
    serde_json::to_vec(&record).unwrap_or_default()
}

/// The link stored under `code` as `bytes`.
pub fn decode(code: &ShortCode, bytes: &[u8]) -> Result<Link, RecordError> {
    let corrupt = |reason: String| RecordError(reason);
    let record: Record = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if record.v != 1 {
        return Err(corrupt(format!("unknown record version {}", record.v)));
    }
    let target = TargetUrl::parse(&record.url).map_err(|e| corrupt(e.to_string()))?;
    let redirect = RedirectKind::from_status(record.redirect)
        .ok_or_else(|| corrupt(format!("bad redirect status {}", record.redirect)))?;
    let from_ms = |ms: i64| {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .map_err(|e| corrupt(e.to_string()))
    };
    Ok(Link {
        created_at: from_ms(record.created_ms)?,
        expires_at: record.expires_ms.map(from_ms).transpose()?,
        code: code.clone(),
        target,
        redirect,
        max_clicks: record.max_clicks,
        owner: record
            .owner
            .as_deref()
            .map(Owner::parse)
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_round_trip() {
        let link = Link {
            code: ShortCode::parse("abc").expect("valid"),
            target: TargetUrl::parse("https://example.com/a?b=c").expect("valid"),
            created_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid"),
            expires_at: Some(OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("valid")),
            redirect: RedirectKind::TemporaryRedirect,
            max_clicks: Some(3),
            owner: Some(Owner::parse("team-a").expect("valid")),
        };
        let decoded = decode(&link.code, &encode(&link)).expect("decodes");
        assert_eq!(decoded, link);
    }

    #[test]
    fn corrupt_records_are_refused() {
        let code = ShortCode::parse("bad").expect("valid");
        for bytes in [
            &b"not json"[..],
            br#"{"v":2,"url":"https://a.com/","created_ms":0,"redirect":302}"#,
            br#"{"v":1,"url":"javascript:alert(1)","created_ms":0,"redirect":302}"#,
            br#"{"v":1,"url":"https://a.com/","created_ms":0,"redirect":200}"#,
        ] {
            assert!(decode(&code, bytes).is_err());
        }
    }
}
