//! Caps request bodies at `http.max_body_bytes`.
//!
//! A body whose declared size (`Content-Length`, which hyper parsed into the body's
//! size hint) is over the limit is refused here, at once: 413 before a byte of it is
//! read. That also answers `Expect: 100-continue` correctly: hyper sends
//! `100 Continue` only when a handler first reads the body, so a client told 413 never
//! gets invited to send a body that would be refused. (Before, such a request waited for
//! its body until the body deadline and got 408.) The check reads the size hint, not
//! the header map: no hash lookup on the redirect path.
//!
//! Any other body is wrapped in `http_body_util::Limited`, which fails the read with a
//! `LengthLimitError` as soon as more than the limit arrives (a chunked body declares
//! no size). The handler that reads the body maps that error to 413. Nothing beyond the
//! limit is ever buffered. A 413 closes the connection: the rest of the body may still
//! be on its way.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{Full, Limited};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::http::error::ApiError;
use crate::metrics::HTTP_REJECTED;

/// Layer that applies [`BodyLimit`].
#[derive(Debug, Clone, Copy)]
pub struct BodyLimitLayer {
    limit: usize,
}

impl BodyLimitLayer {
    /// Limits bodies to `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;

    fn layer(&self, inner: S) -> BodyLimit<S> {
        BodyLimit {
            inner,
            limit: self.limit,
        }
    }
}

/// Service that hands `inner` a `Limited` body.
#[derive(Debug, Clone)]
pub struct BodyLimit<S> {
    inner: S,
    limit: usize,
}

impl<S, B> Service<Request<B>> for BodyLimit<S>
where
    S: Service<Request<Limited<B>>, Response = Response<Full<Bytes>>>,
    B: Body,
{
    type Response = Response<Full<Bytes>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let limit = self.limit;
        // Declared larger than the limit: refused before anything of it is read.
        if req.body().size_hint().lower() > limit as u64 {
            metrics::counter!(HTTP_REJECTED, "reason" => "body_too_large").increment(1);
            return ResponseFuture::TooLarge;
        }
        ResponseFuture::Inner {
            inner: self.inner.call(req.map(|body| Limited::new(body, limit))),
        }
    }
}

pin_project! {
    /// The inner service's future, or an immediate 413.
    #[project = ResponseFutureProj]
    #[allow(missing_docs)] // the variant's field is the inner future
    pub enum ResponseFuture<F> {
        /// The request went on to the handler.
        Inner { #[pin] inner: F },
        /// Its declared body is over the limit.
        TooLarge,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Full<Bytes>>, E>>,
{
    type Output = Result<Response<Full<Bytes>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Inner { inner } => inner.poll(cx),
            ResponseFutureProj::TooLarge => Poll::Ready(Ok(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "request body is too large",
            )
            .into_response())),
        }
    }
}
