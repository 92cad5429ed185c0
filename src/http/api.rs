//! The JSON API: create, read and delete links; health and readiness.
//!
//! Handlers only translate: request bytes into domain types (which validate themselves),
//! a call on [`LinkService`](crate::service::LinkService), and the result into JSON. Each
//! kind of bad input has exactly one status: malformed JSON 400, wrong content type 415,
//! body too large 413 (enforced by the body-limit layer), invalid values 422.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, LOCATION};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError};
use serde::{Deserialize, Serialize};
use shortener_core::aggregate::Counts;
use shortener_core::stats::{Granularity, StatsQuery};
use shortener_core::{Alias, Link, RedirectKind, TargetUrl, instant};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::form_urlencoded;

use super::app::HandlerState;
use super::error::{ApiError, BoxError, InvalidField, empty};
use crate::cache::l2::Health;
use crate::metrics::HTTP_REJECTED;
use crate::service::NewLink;
use crate::service::keys::Caller;

/// `POST /api/v1/links` body. Unknown fields are refused so a typo (`expire_at`) is an
/// error rather than a silently ignored option.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateLinkRequest {
    url: String,
    #[serde(default)]
    alias: Option<String>,
    /// Any JSON value, parsed in [`NewLink`]'s `TryFrom`: so that a malformed time is
    /// answered as `invalid_expires_at`, not as a generic error that names no field.
    #[serde(default)]
    expires_at: Option<serde_json::Value>,
    #[serde(default)]
    redirect: Option<u16>,
    #[serde(default)]
    max_clicks: Option<u64>,
}

/// The one place a create request becomes the domain's [`NewLink`]: every field is
/// parsed into its type (which cannot hold an invalid value), and the first that does
/// not parse is the answer. The error module maps [`InvalidField`] to its 422.
impl TryFrom<CreateLinkRequest> for NewLink {
    type Error = InvalidField;

    fn try_from(request: CreateLinkRequest) -> Result<Self, InvalidField> {
        Ok(Self {
            target: TargetUrl::parse(&request.url).map_err(InvalidField::Url)?,
            alias: request
                .alias
                .as_deref()
                .map(Alias::parse)
                .transpose()
                .map_err(InvalidField::Alias)?,
            // UTC at millisecond precision, as every store keeps it, so the 201 shows
            // what every later read returns; and within what every store can read back.
            expires_at: request
                .expires_at
                .filter(|value| !value.is_null())
                .map(|value| {
                    let at = value
                        .as_str()
                        .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
                        .ok_or(InvalidField::ExpiresAtFormat)?;
                    instant::storable(at).map_err(InvalidField::ExpiresAt)
                })
                .transpose()?,
            redirect: match request.redirect {
                None => RedirectKind::default(),
                Some(status) => RedirectKind::from_status(status).ok_or(InvalidField::Redirect)?,
            },
            max_clicks: request
                .max_clicks
                .map(|n| {
                    (n <= instant::MAX_CLICKS)
                        .then_some(n)
                        .ok_or(InvalidField::MaxClicks)
                })
                .transpose()?,
        })
    }
}

/// A link as the API shows it.
#[derive(Serialize)]
struct LinkResponse<'a> {
    /// All-time clicks (aggregated so far: up to `clicks.flush_interval_ms` +
    /// `stats.flush_interval_ms` behind).
    clicks: u64,
    code: &'a str,
    short_url: String,
    url: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    redirect: u16,
    max_clicks: Option<u64>,
}

/// `POST /api/v1/links`: 201 with the link, once it is durable.
pub async fn create<B>(
    state: &HandlerState,
    req: Request<B>,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let (parts, request) = read_json::<CreateLinkRequest, B>(state, req).await?;
    let new = NewLink::try_from(request)?;
    if points_here(state, &parts.headers, &new.target) {
        return Err(InvalidField::Loop.into());
    }
    let link = state.service.create(new, caller).await?;
    let body = link_body(state, &parts.headers, &link, Counts::default());
    let mut response = serialize(StatusCode::CREATED, &body)?;
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/links/{}", link.code)) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// `GET /api/v1/links/{code}`.
pub async fn get(
    state: &HandlerState,
    headers: &HeaderMap,
    code: &str,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (link, clicks) = state.service.get_with_clicks(code, caller).await?;
    serialize(StatusCode::OK, &link_body(state, headers, &link, clicks))
}

/// `DELETE /api/v1/links/{code}`: 204, and the link stops redirecting at once.
pub async fn delete(
    state: &HandlerState,
    code: &str,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, ApiError> {
    state.service.delete(code, caller).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /healthz`: the process is alive and serving HTTP. Checks nothing else on purpose:
/// a liveness probe that fails on a dependency outage gets healthy pods restarted.
pub fn healthz() -> Response<Full<Bytes>> {
    json(StatusCode::OK, Bytes::from_static(b"{\"status\":\"ok\"}\n"))
}

/// `GET /api/v1/openapi.json`: the API's OpenAPI 3.1 description (docs/openapi.json,
/// compiled in; a test checks it against the router).
pub fn openapi() -> Response<Full<Bytes>> {
    json(StatusCode::OK, Bytes::from_static(OPENAPI))
}

/// The OpenAPI document.
pub const OPENAPI: &[u8] = include_bytes!("../../docs/openapi.json");

/// `GET /readyz`: the store answers, so this instance should receive traffic.
pub async fn readyz(state: &HandlerState) -> Result<Response<Full<Bytes>>, ApiError> {
    // Redis is reported, never required: without it the service serves from the store.
    let body: &'static [u8] = match state.service.l2_health() {
        None => b"{\"status\":\"ready\"}\n",
        Some(Health::Ok) => b"{\"status\":\"ready\",\"redis\":\"ok\"}\n",
        Some(Health::Degraded) => b"{\"status\":\"ready\",\"redis\":\"degraded\"}\n",
    };
    match state.service.ready().await {
        Ok(()) => Ok(json(StatusCode::OK, Bytes::from_static(body))),
        Err(e) => Err(ApiError::internal(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            e,
        )),
    }
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json",
        ))
    }
}

/// The body did not arrive within `http.body_read_timeout_ms`: 408, and (as RFC 9110
/// asks) the connection is closed, since the rest of the body is still on its way.
fn body_timeout() -> ApiError {
    metrics::counter!(HTTP_REJECTED, "reason" => "body_timeout").increment(1);
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        "the request body did not arrive in time",
    )
}

fn body_error(e: BoxError) -> ApiError {
    if e.is::<LengthLimitError>() {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request body is too large",
        )
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("could not read request body: {e}"),
        )
    }
}

/// A JSON request body, read under its time limit and parsed into `T`.
pub(super) async fn read_json<T, B>(
    state: &HandlerState,
    req: Request<B>,
) -> Result<(http::request::Parts, T), ApiError>
where
    T: serde::de::DeserializeOwned,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    require_json(req.headers())?;
    let (parts, body) = req.into_parts();
    // A total deadline on the body, so one trickled a byte at a time cannot hold its
    // request (and its admission slot) for long. A body that is already here costs no
    // timer: `timeout` polls the read first and registers its timer only if it waits.
    let bytes = tokio::time::timeout(state.body_read_timeout, body.collect())
        .await
        .map_err(|_| body_timeout())?
        .map_err(|e| body_error(e.into()))?
        .to_bytes();
    Ok((parts, parse_object(&bytes)?))
}

/// A body that must be a JSON object of `T`'s fields. serde also reads a struct from a
/// JSON array of its fields in order (`["https://a.com/"]`); that shape is nobody's API,
/// so anything but an object is refused with 422 like any wrong shape.
fn parse_object<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let parsed = serde_json::from_slice(bytes).map_err(json_error)?;
    if bytes.trim_ascii_start().first() == Some(&b'{') {
        Ok(parsed)
    } else {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "the body must be a JSON object",
        ))
    }
}

fn json_error(e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        // Well-formed JSON of the wrong shape is a semantic error, not a syntax error.
        Category::Data => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            e.to_string(),
        ),
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("malformed JSON: {e}"),
        ),
    }
}

fn link_body<'a>(
    state: &HandlerState,
    headers: &HeaderMap,
    link: &'a Link,
    clicks: Counts,
) -> LinkResponse<'a> {
    LinkResponse {
        clicks: clicks.total,
        code: link.code.as_str(),
        short_url: short_url(state, headers, link.code.as_str()),
        url: link.target.as_str(),
        created_at: link.created_at,
        expires_at: link.expires_at,
        redirect: link.redirect.status(),
        max_clicks: link.max_clicks,
    }
}

/// Default and largest page for `GET /api/v1/links`.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1_000;

#[derive(Serialize)]
struct ListResponse<'a> {
    links: Vec<LinkResponse<'a>>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<&'a str>,
}

/// `GET /api/v1/links?limit=&cursor=`: links in code order with their click totals,
/// fetched in one store call.
pub async fn list(
    state: &HandlerState,
    headers: &HeaderMap,
    query: Option<&str>,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let mut limit = DEFAULT_PAGE;
    let mut cursor = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        invalid_query(format!("limit must be between 1 and {MAX_PAGE}"))
                    })?;
            }
            "cursor" => cursor = Some(value.into_owned()),
            _ => return Err(invalid_query(format!("unknown parameter `{key}`"))),
        }
    }
    let page = state.service.list(cursor.as_deref(), limit, caller).await?;
    let next_cursor = (page.len() == limit)
        .then(|| page.last().map(|(l, _)| l.code.as_str()))
        .flatten();
    let body = ListResponse {
        links: page
            .iter()
            .map(|(link, clicks)| link_body(state, headers, link, *clicks))
            .collect(),
        next_cursor,
    };
    serialize(StatusCode::OK, &body)
}

#[derive(Serialize)]
struct StatsResponse<'a> {
    code: &'a str,
    granularity: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    to: OffsetDateTime,
    totals: Totals,
    series: Vec<Bucket>,
    top: std::collections::BTreeMap<&'static str, Vec<TopEntry>>,
}

#[derive(Serialize)]
struct Totals {
    clicks: u64,
    human: u64,
    bot: u64,
    unique_visitors: u64,
}

#[derive(Serialize)]
struct Bucket {
    #[serde(with = "time::serde::rfc3339")]
    start: OffsetDateTime,
    clicks: u64,
    human: u64,
    bot: u64,
}

#[derive(Serialize)]
struct TopEntry {
    value: String,
    clicks: u64,
}

/// Largest top-N list a client may ask for.
const MAX_TOP: usize = 50;

/// `GET /api/v1/links/{code}/stats?from=&to=&granularity=hour|day&top=`: pre-computed
/// statistics over a bounded range. Defaults: the last 30 days by day, or the last 24
/// hours by hour; top 10.
pub async fn stats(
    state: &HandlerState,
    code: &str,
    query: Option<&str>,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (mut from, mut to, mut granularity, mut top) = (None, None, Granularity::Day, 10);
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let instant = |v: &str| {
            OffsetDateTime::parse(v, &Rfc3339)
                .map_err(|_| invalid_query(format!("`{key}` must be an RFC 3339 time")))
        };
        match &*key {
            "from" => from = Some(instant(&value)?),
            "to" => to = Some(instant(&value)?),
            "granularity" => {
                granularity = match &*value {
                    "hour" => Granularity::Hour,
                    "day" => Granularity::Day,
                    _ => return Err(invalid_query("granularity must be `hour` or `day`".into())),
                }
            }
            "top" => {
                top = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_TOP).contains(n))
                    .ok_or_else(|| invalid_query(format!("top must be between 1 and {MAX_TOP}")))?;
            }
            _ => return Err(invalid_query(format!("unknown parameter `{key}`"))),
        }
    }
    // Clamped explicitly, before any arithmetic: `time` panics on an instant pushed past
    // its years, and an end past `STATS_END` would align to a year it cannot format.
    let to = instant::clamped(to.unwrap_or_else(OffsetDateTime::now_utc)).min(STATS_END);
    let from = instant::clamped(from.unwrap_or(match granularity {
        Granularity::Hour => to - time::Duration::hours(24),
        Granularity::Day => to - time::Duration::days(30),
    }));
    let query = StatsQuery::new(
        instant::unix_ms(from),
        instant::unix_ms(to),
        granularity,
        top,
    )
    .map_err(|e| invalid_query(e.to_string()))?;
    let stats = state.service.stats(code, query, caller).await?;
    let body = StatsResponse {
        code,
        granularity: match granularity {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        },
        from: from_ms(query.from_ms)?,
        to: from_ms(query.to_ms)?,
        totals: Totals {
            clicks: stats.totals.total,
            human: stats.totals.human,
            bot: stats.totals.bot,
            unique_visitors: stats.unique_visitors,
        },
        series: stats
            .series
            .iter()
            .map(|&(start, c)| {
                Ok(Bucket {
                    start: from_ms(start)?,
                    clicks: c.total,
                    human: c.human,
                    bot: c.bot,
                })
            })
            .collect::<Result<_, ApiError>>()?,
        top: stats
            .top
            .into_iter()
            .map(|(dimension, entries)| {
                let entries = entries
                    .into_iter()
                    .map(|(value, clicks)| TopEntry { value, clicks })
                    .collect();
                (dimension.as_str(), entries)
            })
            .collect(),
    };
    serialize(StatusCode::OK, &body)
}

fn invalid_query(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", message)
}

/// The latest end a stats range may have (exclusive): aligned outward to a whole day or
/// hour it is still in year 9999, so the answer can show it. A later `to` is moved here.
const STATS_END: OffsetDateTime = time::macros::datetime!(9999-12-31 00:00:00 UTC);

/// An instant of a stats answer. Every one is inside the clamped range, so a failure is
/// a bug, answered 500 and logged, never shown as some other instant.
fn from_ms(ms: i64) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))
}

/// `body` as a JSON answer, with a final newline (every JSON answer has one, so `curl -s`
/// output does not run into the next shell prompt).
pub(super) fn serialize(
    status: StatusCode,
    body: &impl Serialize,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let mut bytes = serde_json::to_vec(body)
        .map_err(|e| ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
    bytes.push(b'\n');
    Ok(json(status, Bytes::from(bytes)))
}

/// Whether `target` is on this shortener (the host and port of `http.public_base_url`,
/// or without one, of the request's Host header): such a link would redirect to itself,
/// or through another link, in a loop.
fn points_here(state: &HandlerState, headers: &HeaderMap, target: &TargetUrl) -> bool {
    let Ok(target) = url::Url::parse(target.as_str()) else {
        return false;
    };
    let here = match (&state.public_base_url, headers.get(HOST)) {
        (Some(base), _) => url::Url::parse(base).ok(),
        (None, Some(host)) => host
            .to_str()
            .ok()
            .and_then(|host| url::Url::parse(&format!("http://{host}/")).ok()),
        (None, None) => None,
    };
    here.is_some_and(|here| {
        here.host_str() == target.host_str()
            && here.port_or_known_default() == target.port_or_known_default()
    })
}

/// `{public_base_url}/{code}`; without a configured base, derived from the Host header
/// (development convenience: production should configure it).
fn short_url(state: &HandlerState, headers: &HeaderMap, code: &str) -> String {
    match (
        &state.public_base_url,
        headers.get(HOST).and_then(|h| h.to_str().ok()),
    ) {
        (Some(base), _) => format!("{base}/{code}"),
        (None, Some(host)) => format!("http://{host}/{code}"),
        (None, None) => format!("/{code}"),
    }
}

fn json(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
