//! One `tracing` span per request, at DEBUG level.
//!
//! DEBUG, not INFO, because the span is on the redirect hot path: with the default INFO
//! filter the callsite is disabled, creating the span costs a cached interest check, and
//! the request future is not wrapped at all.
//! Turn it on with `RUST_LOG=shortener=debug` when you need per-request context.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Request;
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::instrument::Instrumented;

/// Layer that applies [`Trace`].
#[derive(Debug, Clone, Copy)]
pub struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace { inner }
    }
}

/// Service that runs `inner` inside a request span.
#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Trace<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let span = tracing::debug_span!(
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            // Filled in by the request-id layer below, inside this span.
            request_id = tracing::field::Empty,
        );
        // A disabled span would still be entered and exited on every poll; skip it.
        if span.is_disabled() {
            ResponseFuture::Plain {
                inner: self.inner.call(req),
            }
        } else {
            let inner = span.in_scope(|| self.inner.call(req));
            ResponseFuture::Traced {
                inner: inner.instrument(span),
            }
        }
    }
}

pin_project! {
    /// The inner future, inside the request span when one is enabled.
    #[project = ResponseFutureProj]
    #[allow(missing_docs)] // variant fields are the inner future and its guard
    pub enum ResponseFuture<F> {
        /// DEBUG is off: no span.
        Plain { #[pin] inner: F },
        /// DEBUG is on: polled inside the span.
        Traced { #[pin] inner: Instrumented<F> },
    }
}

impl<F: Future> Future for ResponseFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project() {
            ResponseFutureProj::Plain { inner } => inner.poll(cx),
            ResponseFutureProj::Traced { inner } => inner.poll(cx),
        }
    }
}
