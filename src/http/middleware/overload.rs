//! Turns the errors of the layers below into answers: a timed-out request gets a JSON 503
//! with `Retry-After` and is counted (`shortener_http_rejected_total{reason="timeout"}`);
//! anything else becomes an opaque, logged 500.
//!
//! tower's `Timeout` reports by failing the service call; hyper would turn such an error
//! into a dropped connection. Below this layer errors are `BoxError`; above it the stack
//! is infallible.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use metrics::Counter;
use pin_project_lite::pin_project;
use tower::timeout::error::Elapsed;
use tower::{Layer, Service};

use crate::http::app::{BoxError, into_logged_response};
use crate::http::error::ApiError;
use crate::metrics::HTTP_REJECTED;

/// Counters resolved once; shared behind one `Arc` so cloning the service per request is
/// one reference-count bump.
struct Rejections {
    timeout: Counter,
}

/// Layer that applies [`HandleOverload`].
#[derive(Clone)]
pub struct OverloadLayer {
    rejections: Arc<Rejections>,
}

impl OverloadLayer {
    /// A layer counting into `shortener_http_rejected_total`.
    pub fn new() -> Self {
        Self {
            rejections: Arc::new(Rejections {
                timeout: metrics::counter!(HTTP_REJECTED, "reason" => "timeout"),
            }),
        }
    }
}

impl Default for OverloadLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for OverloadLayer {
    type Service = HandleOverload<S>;

    fn layer(&self, inner: S) -> HandleOverload<S> {
        HandleOverload {
            inner,
            rejections: self.rejections.clone(),
            not_ready: None,
        }
    }
}

/// Service mapping guard errors to 503 responses.
pub struct HandleOverload<S> {
    inner: S,
    rejections: Arc<Rejections>,
    /// A readiness error waiting to be answered by the next call.
    not_ready: Option<BoxError>,
}

// Manual: a pending readiness error belongs to this handle, not to its clones.
impl<S: Clone> Clone for HandleOverload<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            rejections: self.rejections.clone(),
            not_ready: None,
        }
    }
}

impl<S, B> Service<Request<B>> for HandleOverload<S>
where
    S: Service<Request<B>, Response = Response<Full<Bytes>>, Error = BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // An infallible service cannot fail readiness, so a readiness error is kept and
        // answered by the next `call` (without calling the unready inner service).
        if self.not_ready.is_none()
            && let Err(error) = ready!(self.inner.poll_ready(cx))
        {
            self.not_ready = Some(error);
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (inner, error) = match self.not_ready.take() {
            Some(error) => (None, Some(error)),
            None => (Some(self.inner.call(req)), None),
        };
        ResponseFuture {
            inner,
            error,
            rejections: self.rejections.clone(),
        }
    }
}

pin_project! {
    /// Maps the inner result.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        error: Option<BoxError>,
        rejections: Arc<Rejections>,
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Full<Bytes>>, BoxError>>,
{
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let error = match (this.inner.as_pin_mut(), this.error.take()) {
            (Some(inner), _) => match ready!(inner.poll(cx)) {
                Ok(response) => return Poll::Ready(Ok(response)),
                Err(error) => error,
            },
            (None, Some(error)) => error,
            (None, None) => "response future polled after completion".into(),
        };
        let response = if error.is::<Elapsed>() {
            this.rejections.timeout.increment(1);
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the request took too long; retry",
            )
            .into_response()
        } else {
            into_logged_response(ApiError::internal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                error,
            ))
        };
        Poll::Ready(Ok(response))
    }
}
