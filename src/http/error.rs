//! API errors: one JSON shape, one status per failure, opaque 5xx.
//!
//! Every error answer is `{"error": {"code": "...", "message": "..."}}`. `code` is a
//! stable machine-readable token clients can switch on; `message` is for humans. For 5xx
//! answers the message is generic and the real cause travels in [`ApiError::cause`] to
//! the log line (with the request id), never to the client. The cause is kept as an
//! error, not a string, and [`into_logged_response`] logs it with every source under it
//! (`shortener_core::report::Report`).
//!
//! Every handler returns `Result<_, ApiError>`; the one place an error becomes a response
//! (and a log line) is [`into_logged_response`], called by the router and the redirect.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use shortener_core::instant::{self, OutOfRange};
use shortener_core::report::Report;
use shortener_core::{CodeError, TargetUrlError};

use crate::service::ServiceError;
use crate::service::keys::AuthError;

/// A boxed error: a request body's, or the cause of a server error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A failed request, ready to become a response.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Stable error token, e.g. `alias_taken`.
    pub code: &'static str,
    /// Human-readable explanation (generic for 5xx).
    pub message: Cow<'static, str>,
    /// For 405: the allowed methods.
    pub allow: Option<&'static str>,
    /// For 5xx: what actually went wrong, with its sources, for the log only.
    pub cause: Option<BoxError>,
    /// For 429: whole seconds until a retry fits (`Retry-After`).
    pub retry_after_s: Option<u64>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// A client error with its own message.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            allow: None,
            cause: None,
            retry_after_s: None,
        }
    }

    /// 429 from a rate limit: `Retry-After` in whole seconds (rounded up), counted by
    /// limit.
    pub fn rate_limited((kind, limited): (crate::limits::Kind, crate::limits::Limited)) -> Self {
        metrics::counter!(crate::metrics::RATE_LIMITED, "limit" => kind.label()).increment(1);
        let seconds = limited
            .retry_after
            .as_nanos()
            .div_ceil(1_000_000_000)
            .max(1);
        Self {
            retry_after_s: Some(u64::try_from(seconds).unwrap_or(u64::MAX)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests; retry after {seconds} s"),
            )
        }
    }

    /// 403: the key lacks the scope this operation needs.
    pub fn insufficient_scope(needed: shortener_core::Scopes) -> Self {
        metrics::counter!(crate::metrics::AUTH_REFUSED, "reason" => "insufficient_scope")
            .increment(1);
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("this API key lacks the scope {}", needed.names().join(", ")),
        )
    }

    /// 405 with the `Allow` header listing what the route accepts.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("allowed methods: {allow}"),
            )
        }
    }

    /// 404 for paths that match no route.
    pub fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    /// An opaque server error; `cause` is logged, not sent.
    pub fn internal(status: StatusCode, code: &'static str, cause: impl Into<BoxError>) -> Self {
        Self {
            cause: Some(cause.into()),
            ..Self::new(
                status,
                code,
                "the server could not complete the request; retry later",
            )
        }
    }

    /// The JSON body for this error.
    pub fn body(&self) -> Bytes {
        json_error(self.code, &self.message)
    }

    /// The response: status, JSON body, `Allow`/`Retry-After` where they apply.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(allow) = self.allow {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Tell well-behaved clients and load balancers when to come back.
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(seconds) = self.retry_after_s {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(
            self.status,
            StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE
        ) {
            // The rest of the request may still be arriving: this connection is done.
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Turns an error into its response, logging server errors with their whole cause chain.
pub fn into_logged_response(error: ApiError) -> Response<Full<Bytes>> {
    if error.status.is_server_error() {
        let cause = error
            .cause
            .as_deref()
            .map(|cause| Report(cause).to_string());
        tracing::error!(
            status = error.status.as_u16(),
            code = error.code,
            cause,
            "request failed"
        );
    }
    error.into_response()
}

/// An empty response with a status.
pub fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// Serializes the error envelope, with a final newline like every JSON answer (so
/// `curl -s` output does not run into the next shell prompt).
pub fn json_error(code: &str, message: &str) -> Bytes {
    let envelope = Envelope {
        error: Body { code, message },
    };
    let mut bytes = serde_json::to_vec(&envelope).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// A field of a request body that does not hold a valid value: 422, with the field's
/// error token. Produced where a request becomes a domain type (`TryFrom` in `api`).
///
/// The field's own error is part of the message, not a `source()`: this error is shown
/// to the client, who needs the detail, and never logged as a chain.
#[derive(Debug, thiserror::Error)]
pub enum InvalidField {
    /// `url`.
    #[error("{0}")]
    Url(TargetUrlError),
    /// `alias`.
    #[error("alias {0}")]
    Alias(CodeError),
    /// `redirect`.
    #[error("redirect must be one of 301, 302, 307, 308")]
    Redirect,
    /// `expires_at`, not an RFC 3339 time.
    #[error("expires_at must be an RFC 3339 time, e.g. 2030-01-01T00:00:00Z")]
    ExpiresAtFormat,
    /// `expires_at`, outside what every store can read back.
    #[error("expires_at {0}")]
    ExpiresAt(OutOfRange),
    /// `url` points at this shortener: a redirect loop.
    #[error("url points at this shortener, which would redirect to itself")]
    Loop,
    /// `max_clicks`, above what every store can keep.
    #[error("max_clicks must be at most {}", instant::MAX_CLICKS)]
    MaxClicks,
}

impl From<InvalidField> for ApiError {
    fn from(e: InvalidField) -> Self {
        let code = match e {
            InvalidField::Url(_) => "invalid_url",
            InvalidField::Alias(_) => "invalid_alias",
            InvalidField::Redirect => "invalid_redirect",
            InvalidField::ExpiresAt(_) | InvalidField::ExpiresAtFormat => "invalid_expires_at",
            InvalidField::Loop => "invalid_url",
            InvalidField::MaxClicks => "invalid_max_clicks",
        };
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let code = match e {
            AuthError::Missing => "missing_key",
            AuthError::Malformed => "malformed_key",
            AuthError::Unknown => "unknown_key",
            AuthError::Revoked => "key_revoked",
            AuthError::Store(_) => {
                return Self::internal(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e);
            }
        };
        metrics::counter!(crate::metrics::AUTH_REFUSED, "reason" => code).increment(1);
        Self::new(StatusCode::UNAUTHORIZED, code, e.to_string())
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::AliasTaken => {
                Self::new(StatusCode::CONFLICT, "alias_taken", e.to_string())
            }
            ServiceError::NotFound => Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            ServiceError::InvalidCursor => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_query",
                e.to_string(),
            ),
            ServiceError::TargetNotAllowed(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "target_not_allowed",
                e.to_string(),
            ),
            ServiceError::ZeroMaxClicks => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_max_clicks",
                e.to_string(),
            ),
            ServiceError::ExpiryInPast => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_expires_at",
                e.to_string(),
            ),
            ServiceError::CodesExhausted(_) => {
                Self::internal(StatusCode::SERVICE_UNAVAILABLE, "codes_exhausted", e)
            }
            ServiceError::Store(_) => {
                Self::internal(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shortener_core::StoreError;
    use std::io::Write;
    use std::sync::{Arc, Mutex, PoisonError};

    /// A log destination the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let mut buffer = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            buffer.extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_server_error_is_logged_with_every_source_and_answered_without_them() {
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let error = ApiError::from(ServiceError::from(StoreError::caused(
            "redb",
            std::io::Error::other("disk on fire"),
        )));
        let response =
            tracing::subscriber::with_default(subscriber, || into_logged_response(error));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let log = String::from_utf8_lossy(&log.0.lock().expect("log")).into_owned();
        assert!(
            log.contains("storage backend error: redb: disk on fire"),
            "the whole chain, outermost first: {log}"
        );
    }

    #[test]
    fn server_errors_hide_their_cause() {
        let error = ApiError::from(ServiceError::from(StoreError::caused(
            "redb",
            std::io::Error::other("disk on fire at /var/x"),
        )));
        assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!String::from_utf8_lossy(&error.body()).contains("disk"));
        // What is logged: the cause with every source under it.
        assert!(
            error
                .cause
                .as_deref()
                .is_some_and(|c| Report(c).to_string().contains("disk on fire"))
        );
    }

    #[test]
    fn error_bodies_are_the_documented_envelope() {
        let body = ApiError::new(StatusCode::CONFLICT, "alias_taken", "taken").body();
        let value: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            value,
            serde_json::json!({"error": {"code": "alias_taken", "message": "taken"}})
        );
    }
}
