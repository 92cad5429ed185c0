//! Caps request bodies at `http.max_body_bytes`.
//!
//! The body is wrapped in `http_body_util::Limited`, which fails the read with a
//! `LengthLimitError` as soon as more than the limit arrives, whether the size was
//! announced (`Content-Length`) or not (chunked). The handler that reads the body maps
//! that error to 413. Nothing beyond the limit is ever buffered.

use std::task::{Context, Poll};

use http::Request;
use http_body_util::Limited;
use tower::{Layer, Service};

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
    S: Service<Request<Limited<B>>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> S::Future {
        let limit = self.limit;
        self.inner.call(req.map(|body| Limited::new(body, limit)))
    }
}
