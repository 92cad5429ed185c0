//! The click pipeline, service side: record on the hot path, enrich and batch in the
//! background, hand batches to an [`EventSink`].
//!
//! ```text
//! redirect ──try_send──▶ bounded queue ──▶ batcher task ──batch──▶ EventSink
//!  (never waits;           (queue_capacity)   enrich: id, visitor      (in process:
//!   full = dropped                            hash; flush at           aggregate into
//!   and counted)                              batch_max or interval)    memory; write to
//!                                                                       StatsStore each
//!                                                                       stats interval)
//! ```
//!
//! The redirect pays for what must happen while the request is alive: it takes the
//! user agent and referrer (capped) out of the request, resolves the client address and
//! parses the country, plus one channel send. It must not *borrow*: header values are
//! slices of hyper's connection read buffer, and a click holding one for the few
//! milliseconds until the batcher runs keeps that buffer shared, so hyper allocates a
//! fresh 8 KB buffer for the next request on the connection (~860 instructions per
//! request, measured with a browser's headers). It need not *copy* either: values seen
//! recently on this thread are shared ([`intern`]), which on the long-tail workload
//! removed the allocator's work per click. Hashing, ids and the rest of the event happen
//! in the batcher.
//!
//! The sink contract is `shortener_core::sink`; the in-process sink is the shared
//! aggregation engine (`shortener_aggregation::AggregatingSink`), which the analytics
//! consumer runs too.
//!
//! Accounting (all in `crate::metrics`): every GET redirect is either recorded or dropped
//! with a reason; every recorded click is aggregated, dropped by a failing sink, or still
//! queued or pending. After a flush, `redirects = recorded + dropped{queue_full,closed}`
//! and, once nothing is pending, `recorded = aggregated + dropped{sink_error}`.

pub mod batcher;
pub mod client_ip;
pub mod intern;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{REFERER, USER_AGENT};
use http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use metrics::Counter;
use shortener_core::ShortCode;
use shortener_core::click::{Country, cap_text, parse_country};
use tokio::sync::mpsc;

pub use shortener_aggregation::AggregatingSink;
pub use shortener_core::sink::{EventSink, SinkError};

use crate::metrics::{CLICKS_DROPPED, REDIRECTS};

/// What the redirect knows about a click. Owns everything: nothing here borrows the
/// connection's read buffer (see the module docs).
#[derive(Debug)]
pub struct RawClick {
    /// The code followed (an `Arc` clone).
    pub code: ShortCode,
    /// Wall-clock time of the redirect, Unix ms.
    pub at_ms: i64,
    /// The client: the TCP peer, or from `X-Forwarded-For` behind trusted proxies.
    pub client: IpAddr,
    /// `Referer`, capped ([`cap_text`]) and interned ([`intern`]).
    pub referrer: Option<Arc<str>>,
    /// `User-Agent`, capped and interned.
    pub user_agent: Option<Arc<str>>,
    /// The configured country header, if it holds a valid code.
    pub country: Option<Country>,
}

/// Which request headers a click reads (from `[clicks]`).
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// Proxies whose `X-Forwarded-For` entries we trust; empty = use the TCP peer.
    pub trusted_proxies: Vec<IpNet>,
    /// The header an edge sets to the client's country, if any.
    pub country_header: Option<HeaderName>,
}

impl Capture {
    /// The click of a redirect to `code`, from `peer`, with request `headers`.
    pub fn click(&self, code: &ShortCode, peer: IpAddr, headers: &HeaderMap) -> RawClick {
        // One pass over the request's headers (a browser sends about ten) instead of a
        // hash lookup per header we want. The first value of each wins, as with `get`.
        let (mut referrer, mut user_agent, mut forwarded_for, mut country) =
            (None, None, None, None);
        for (name, value) in headers {
            let slot = if name == REFERER {
                &mut referrer
            } else if name == USER_AGENT {
                &mut user_agent
            } else if name == X_FORWARDED_FOR {
                &mut forwarded_for
            } else if self.country_header.as_ref() == Some(name) {
                &mut country
            } else {
                continue;
            };
            slot.get_or_insert(value.as_bytes());
        }
        RawClick {
            code: code.clone(),
            at_ms: now_ms(),
            client: client_ip::client_ip(peer, forwarded_for, &self.trusted_proxies),
            referrer: referrer.map(|value| intern::intern(&cap_text(value))),
            user_agent: user_agent.map(|value| intern::intern(&cap_text(value))),
            country: country.and_then(parse_country),
        }
    }
}

/// Not in `http::header` (it is a de-facto standard, not an RFC 9110 field).
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Metric handles resolved once. `recorded` is counted by the batcher as clicks leave the
/// queue (one atomic less per redirect, and the accounting identity then also checks that
/// the queue loses nothing).
struct Meters {
    redirects: Counter,
    dropped_queue_full: Counter,
    dropped_closed: Counter,
}

/// The hot-path handle: records clicks without ever waiting.
pub struct ClickRecorder {
    tx: mpsc::Sender<RawClick>,
    capture: Capture,
    meters: Meters,
}

impl ClickRecorder {
    /// A recorder and the receiving end for the batcher, with room for `capacity` clicks.
    pub fn new(capacity: usize, capture: Capture) -> (Self, mpsc::Receiver<RawClick>) {
        let (tx, rx) = mpsc::channel(capacity);
        let meters = Meters {
            redirects: metrics::counter!(REDIRECTS),
            dropped_queue_full: metrics::counter!(CLICKS_DROPPED, "reason" => "queue_full"),
            dropped_closed: metrics::counter!(CLICKS_DROPPED, "reason" => "closed"),
        };
        (
            Self {
                tx,
                capture,
                meters,
            },
            rx,
        )
    }

    /// Records the click of a redirect to `code`. `try_reserve`, not `reserve`: if
    /// analytics falls behind, we lose (and count) clicks rather than slowing down
    /// redirects. Reserving before capturing means a full queue costs no copies.
    pub fn record(&self, code: &ShortCode, peer: IpAddr, headers: &HeaderMap) {
        self.meters.redirects.increment(1);
        match self.tx.try_reserve() {
            Ok(slot) => slot.send(self.capture.click(code, peer, headers)),
            Err(mpsc::error::TrySendError::Full(_)) => self.meters.dropped_queue_full.increment(1),
            Err(mpsc::error::TrySendError::Closed(_)) => self.meters.dropped_closed.increment(1),
        }
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for &(name, value) in pairs {
            map.append(name, HeaderValue::from_bytes(value).expect("header value"));
        }
        map
    }

    #[test]
    fn a_click_owns_capped_copies_of_the_request_headers() {
        let code = ShortCode::parse("abc").expect("code");
        let peer: IpAddr = "198.51.100.7".parse().expect("ip");
        let long_agent = vec![b'a'; 10_000];
        let request = headers(&[
            ("user-agent", &long_agent),
            ("user-agent", b"a second one is ignored"),
            ("referer", b"https://news.example/\xff"),
            ("x-country", b"fr"),
            ("x-forwarded-for", b"203.0.113.1"),
        ]);
        let capture = Capture {
            trusted_proxies: vec![],
            country_header: Some(HeaderName::from_static("x-country")),
        };
        let click = capture.click(&code, peer, &request);
        drop(request);
        assert_eq!(click.code, code);
        assert_eq!(
            click.client, peer,
            "no trusted proxies: the forwarded-for is ignored"
        );
        assert_eq!(click.user_agent.map(|ua| ua.len()), Some(512));
        assert_eq!(
            click.referrer.as_deref(),
            Some("https://news.example/\u{fffd}")
        );
        assert_eq!(
            click.country.map(|c| c.as_str().to_owned()),
            Some("FR".into())
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_client_comes_from_forwarded_for() {
        let code = ShortCode::parse("abc").expect("code");
        let proxy: IpAddr = "10.0.0.2".parse().expect("ip");
        let capture = Capture {
            trusted_proxies: vec!["10.0.0.0/8".parse().expect("net")],
            country_header: None,
        };
        let request = headers(&[("x-forwarded-for", b"192.0.2.1, 203.0.113.5")]);
        let click = capture.click(&code, proxy, &request);
        assert_eq!(click.client, "203.0.113.5".parse::<IpAddr>().expect("ip"));
        assert_eq!((click.user_agent, click.country), (None, None));
    }
}
