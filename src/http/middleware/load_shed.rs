//! Load shedding: at most `http.concurrency_limit` requests in flight; past that, answer
//! 503 at once instead of queueing.
//!
//! Why shed rather than queue: a queue in front of a saturated server only adds waiting
//! time to every request, and clients time out and retry, adding more load. Refusing
//! the excess immediately keeps latency bounded for the requests we do admit and tells
//! clients (and load balancers, via `Retry-After`) to go elsewhere.
//!
//! Why not tower's `ConcurrencyLimit` + `LoadShed`: that pair is built for backpressure
//! (a caller waiting in `poll_ready`), and its semaphore handle allocates a boxed future
//! every time the service is cloned, which hyper does for every request. Shedding needs
//! only a non-blocking `try_acquire` in `call`: one atomic compare-and-swap when admitted,
//! and the permit is released when the response future completes or is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use metrics::Counter;
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

use crate::http::error::ApiError;
use crate::metrics::HTTP_REJECTED;

/// Layer that applies [`LoadShed`].
#[derive(Clone)]
pub struct LoadShedLayer {
    permits: Arc<Semaphore>,
    shed: Counter,
}

impl LoadShedLayer {
    /// Admits at most `limit` concurrent requests.
    pub fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            shed: metrics::counter!(HTTP_REJECTED, "reason" => "concurrency"),
        }
    }
}

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShed<S>;

    fn layer(&self, inner: S) -> LoadShed<S> {
        LoadShed {
            inner,
            permits: self.permits.clone(),
            shed: self.shed.clone(),
        }
    }
}

/// Service that sheds requests past the limit with a JSON 503.
#[derive(Clone)]
pub struct LoadShed<S> {
    inner: S,
    permits: Arc<Semaphore>,
    shed: Counter,
}

impl<S, B> Service<Request<B>> for LoadShed<S>
where
    S: Service<Request<B>, Response = Response<Full<Bytes>>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => ResponseFuture::Admitted {
                inner: self.inner.call(req),
                _permit: permit,
            },
            Err(_) => {
                self.shed.increment(1);
                ResponseFuture::Shed
            }
        }
    }
}

pin_project! {
    /// Either the admitted request (holding its permit) or an immediate 503.
    #[project = ResponseFutureProj]
    #[allow(missing_docs)] // variant fields are the inner future and its guard
    pub enum ResponseFuture<F> {
        /// Admitted: the permit is released when this future is dropped.
        Admitted { #[pin] inner: F, _permit: OwnedSemaphorePermit },
        /// Shed.
        Shed,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Full<Bytes>>, E>>,
{
    type Output = Result<Response<Full<Bytes>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Admitted { inner, .. } => inner.poll(cx),
            ResponseFutureProj::Shed => Poll::Ready(Ok(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many requests in flight; retry",
            )
            .into_response())),
        }
    }
}
