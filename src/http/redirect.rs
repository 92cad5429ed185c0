//! `GET|HEAD /{code}`: the hot path.
//!
//! On a cache hit this does no I/O and allocates only the response itself: the
//! `Location` and (for permanent redirects) `Cache-Control` values come precomputed from
//! the cache entry, and 404/410 bodies are static bytes. The two exceptions, both opt-in
//! per link or per config, build a header per request: query forwarding, and the max-age
//! of a permanent redirect that expires (capped by the time it has left).

use bytes::Bytes;
use std::net::IpAddr;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use time::OffsetDateTime;

use super::app::HandlerState;
use super::error::{ApiError, into_logged_response};
use crate::cache::{CachedLink, cache_control_max_age};
use crate::limits::Kind;
use crate::service::{Resolution, ServiceError};

/// `404` body, built at compile time (see the test that keeps it equal to `ApiError`'s).
const NOT_FOUND_BODY: &[u8] =
    b"{\"error\":{\"code\":\"not_found\",\"message\":\"no link with this code\"}}\n";
/// `410` body for an expired link.
const GONE_BODY: &[u8] =
    b"{\"error\":{\"code\":\"expired\",\"message\":\"this link has expired\"}}\n";
/// `410` body for a link that used up its `max_clicks`.
const EXHAUSTED_BODY: &[u8] =
    b"{\"error\":{\"code\":\"exhausted\",\"message\":\"this link has reached its click limit\"}}\n";

/// What the redirect needs from the request: borrowed, nothing copied up front.
pub struct RedirectRequest<'a> {
    /// The path segment.
    pub code: &'a str,
    /// The query string (forwarded when `links.forward_query` is on).
    pub query: Option<&'a str>,
    /// Request headers (what the click records from them: see `crate::clicks`).
    pub headers: &'a HeaderMap,
    /// The connection's TCP peer.
    pub peer: IpAddr,
    /// GET (a click) rather than HEAD.
    pub is_click: bool,
}

/// Answers a redirect request if the in-process cache can without waiting (the common
/// case: a hot link); `None` means "await [`redirect`]".
pub fn redirect_now(
    state: &HandlerState,
    request: &RedirectRequest<'_>,
) -> Option<Response<Full<Bytes>>> {
    let resolution = state.service.resolve_now(request.code, request.is_click)?;
    // Off by default: one branch on the hot path, and cached answers cost no I/O.
    if state.limits.limits_cached_redirects()
        && let Err(limited) = state.limits.client(Kind::CachedRedirect, || {
            state.client(request.peer, request.headers)
        })
    {
        return Some(ApiError::rate_limited(limited).into_response());
    }
    Some(respond(state, Ok(resolution), request))
}

/// Answers a redirect request, loading the link if it is not cached. Each such request
/// may cost a store (or Redis) read, so a client's misses are rate limited
/// (`limits.redirect_miss_per_client`): a scan of random codes is answered 429 before
/// it reaches the store.
pub async fn redirect(state: &HandlerState, request: RedirectRequest<'_>) -> Response<Full<Bytes>> {
    let client = || state.client(request.peer, request.headers);
    if let Err(limited) = state.limits.client(Kind::RedirectMiss, client) {
        return ApiError::rate_limited(limited).into_response();
    }
    let resolution = state.service.resolve(request.code, request.is_click).await;
    respond(state, resolution, &request)
}

/// The response for a resolved code; records the click if it is one.
fn respond(
    state: &HandlerState,
    resolution: Result<Resolution, ServiceError>,
    request: &RedirectRequest<'_>,
) -> Response<Full<Bytes>> {
    let &RedirectRequest {
        code: _,
        query,
        headers: request_headers,
        peer,
        is_click,
    } = request;
    let link = match resolution {
        Ok(Resolution::Redirect(link)) => link,
        Ok(Resolution::NotFound) => return static_error(StatusCode::NOT_FOUND, NOT_FOUND_BODY),
        Ok(Resolution::Expired) => return static_error(StatusCode::GONE, GONE_BODY),
        Ok(Resolution::Exhausted) => return static_error(StatusCode::GONE, EXHAUSTED_BODY),
        Err(e) => return into_logged_response(ApiError::from(e)),
    };

    // The body is empty for GET as well as HEAD: browsers follow `Location` and never
    // render a redirect body, so bytes there are pure overhead.
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = link.status;
    let headers = response.headers_mut();

    let location = match query {
        Some(query) if state.forward_query && !query.is_empty() => {
            forwarded_location(&link, query).unwrap_or_else(|| link.location.clone())
        }
        // A clone of a `HeaderValue` is a reference-count bump on shared bytes.
        _ => link.location.clone(),
    };
    headers.insert(LOCATION, location);

    if is_permanent(link.status) {
        let cache_control = match link.expires_at {
            // Shared by every such link: a reference-count bump, like `Location`.
            None => state.service.permanent_cache_control().clone(),
            Some(expires_at) => {
                let left = (expires_at - OffsetDateTime::now_utc())
                    .whole_seconds()
                    .max(0)
                    .unsigned_abs();
                cache_control_max_age(state.service.permanent_max_age().as_secs().min(left))
            }
        };
        headers.insert(CACHE_CONTROL, cache_control);
    }

    if is_click && let Some(clicks) = &state.clicks {
        clicks.record(&link.code, peer, request_headers);
    }
    response
}

fn is_permanent(status: StatusCode) -> bool {
    status == StatusCode::MOVED_PERMANENTLY || status == StatusCode::PERMANENT_REDIRECT
}

/// The target with the request's query appended (before any `#fragment`, which must stay
/// last). `None` if the result is not a valid header value, in which case the plain
/// target is used: a bad query must not break the redirect.
fn forwarded_location(link: &CachedLink, query: &str) -> Option<HeaderValue> {
    let target = link.location.to_str().ok()?;
    let (base, fragment) = match target.find('#') {
        Some(i) => target.split_at(i),
        None => (target, ""),
    };
    let separator = if base.contains('?') { '&' } else { '?' };
    let mut location = String::with_capacity(target.len() + 1 + query.len());
    location.push_str(base);
    location.push(separator);
    location.push_str(query);
    location.push_str(fragment);
    HeaderValue::from_maybe_shared(Bytes::from(location)).ok()
}

fn static_error(status: StatusCode, body: &'static [u8]) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use shortener_core::{Link, RedirectKind, ShortCode, TargetUrl};

    fn cached(target: &str) -> CachedLink {
        let link = Link {
            code: ShortCode::parse("abc").expect("valid"),
            target: TargetUrl::parse(target).expect("valid"),
            created_at: OffsetDateTime::now_utc(),
            expires_at: None,
            redirect: RedirectKind::Found,
            max_clicks: None,
            owner: None,
        };
        CachedLink::new(&link, None)
    }

    #[test]
    fn forwarded_queries_are_appended_before_the_fragment() {
        let cases = [
            ("https://a.com/x", "utm=1", "https://a.com/x?utm=1"),
            ("https://a.com/x?b=2", "utm=1", "https://a.com/x?b=2&utm=1"),
            ("https://a.com/x#top", "utm=1", "https://a.com/x?utm=1#top"),
            (
                "https://a.com/x?b=2#top",
                "utm=1&c=3",
                "https://a.com/x?b=2&utm=1&c=3#top",
            ),
        ];
        for (target, query, expected) in cases {
            let location = forwarded_location(&cached(target), query).expect("valid");
            assert_eq!(location, expected);
        }
    }

    #[test]
    fn static_bodies_match_the_error_envelope() {
        assert_eq!(
            NOT_FOUND_BODY,
            &super::super::error::json_error("not_found", "no link with this code")[..]
        );
        assert_eq!(
            EXHAUSTED_BODY,
            &super::super::error::json_error("exhausted", "this link has reached its click limit")
                [..]
        );
        assert_eq!(
            GONE_BODY,
            &super::super::error::json_error("expired", "this link has expired")[..]
        );
    }
}
