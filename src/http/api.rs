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
use shortener_core::{Alias, Link, RedirectKind, TargetUrl};
use time::OffsetDateTime;

use super::app::{AppState, BoxError, empty};
use super::error::ApiError;
use crate::service::NewLink;

/// `POST /api/v1/links` body. Unknown fields are refused so a typo (`expire_at`) is an
/// error rather than a silently ignored option.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateLinkRequest {
    url: String,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    #[serde(default)]
    redirect: Option<u16>,
}

/// A link as the API shows it.
#[derive(Serialize)]
struct LinkResponse<'a> {
    code: &'a str,
    short_url: String,
    url: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    redirect: u16,
}

/// `POST /api/v1/links`: 201 with the link, once it is durable.
pub async fn create<B>(state: &AppState, req: Request<B>) -> Result<Response<Full<Bytes>>, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    require_json(req.headers())?;
    let (parts, body) = req.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|e| body_error(e.into()))?
        .to_bytes();
    let request: CreateLinkRequest = serde_json::from_slice(&bytes).map_err(json_error)?;

    let new = NewLink {
        target: TargetUrl::parse(&request.url).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_url",
                e.to_string(),
            )
        })?,
        alias: request
            .alias
            .as_deref()
            .map(Alias::parse)
            .transpose()
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_alias",
                    format!("alias {e}"),
                )
            })?,
        expires_at: request.expires_at,
        redirect: match request.redirect {
            None => RedirectKind::default(),
            Some(status) => RedirectKind::from_status(status).ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_redirect",
                    "redirect must be one of 301, 302, 307, 308",
                )
            })?,
        },
    };
    let link = state.service.create(new).await?;
    let mut response = link_response(state, &parts.headers, &link, StatusCode::CREATED);
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/links/{}", link.code)) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// `GET /api/v1/links/{code}`.
pub async fn get(
    state: &AppState,
    headers: &HeaderMap,
    code: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let link = state.service.get(code).await?;
    Ok(link_response(state, headers, &link, StatusCode::OK))
}

/// `DELETE /api/v1/links/{code}`: 204, and the link stops redirecting at once.
pub async fn delete(state: &AppState, code: &str) -> Result<Response<Full<Bytes>>, ApiError> {
    state.service.delete(code).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /healthz`: the process is alive and serving HTTP. Checks nothing else on purpose:
/// a liveness probe that fails on a dependency outage gets healthy pods restarted.
pub fn healthz() -> Response<Full<Bytes>> {
    json(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#))
}

/// `GET /readyz`: the store answers, so this instance should receive traffic.
pub async fn readyz(state: &AppState) -> Result<Response<Full<Bytes>>, ApiError> {
    match state.service.ready().await {
        Ok(()) => Ok(json(
            StatusCode::OK,
            Bytes::from_static(br#"{"status":"ready"}"#),
        )),
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

fn link_response(
    state: &AppState,
    headers: &HeaderMap,
    link: &Link,
    status: StatusCode,
) -> Response<Full<Bytes>> {
    let body = LinkResponse {
        code: link.code.as_str(),
        short_url: short_url(state, headers, link.code.as_str()),
        url: link.target.as_str(),
        created_at: link.created_at,
        expires_at: link.expires_at,
        redirect: link.redirect.status(),
    };
    match serde_json::to_vec(&body) {
        Ok(bytes) => json(status, Bytes::from(bytes)),
        Err(e) => super::app::into_logged_response(ApiError::internal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e,
        )),
    }
}

/// `{public_base_url}/{code}`; without a configured base, derived from the Host header
/// (development convenience: production should configure it).
fn short_url(state: &AppState, headers: &HeaderMap, code: &str) -> String {
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
