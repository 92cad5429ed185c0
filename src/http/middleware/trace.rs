//! One `tracing` span per request, at DEBUG level.
//!
//! DEBUG, not INFO, because the span is on the redirect hot path: with the default INFO
//! filter the callsite is disabled and creating the span costs a cached interest check.
//! Turn it on with `RUST_LOG=shortener=debug` when you need per-request context.

use std::task::{Context, Poll};

use http::Request;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::instrument::Instrumented;

use super::request_id::REQUEST_ID;

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
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let span = tracing::debug_span!(
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            request_id = ?req.headers().get(&REQUEST_ID),
        );
        self.inner.call(req).instrument(span)
    }
}
