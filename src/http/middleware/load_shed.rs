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
//! only a counter of requests in flight: one atomic add when a request is admitted, one
//! subtract when its response future completes or is dropped. (A tokio `Semaphore` did
//! the same job, but its release takes a mutex on every request, to hand permits to
//! waiters that shedding never has; callgrind showed it.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use metrics::Counter;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::http::error::ApiError;
use crate::metrics::HTTP_REJECTED;

/// Layer that applies [`LoadShed`].
#[derive(Clone)]
pub struct LoadShedLayer {
    in_flight: Arc<InFlight>,
    shed: Counter,
}

/// Requests in flight across all connections, and the most allowed.
struct InFlight {
    count: AtomicUsize,
    limit: usize,
}

impl InFlight {
    /// A slot, if one is free; it is given back when the [`Admission`] drops.
    fn try_admit(self: &Arc<Self>) -> Option<Admission> {
        if self.count.fetch_add(1, Ordering::Acquire) < self.limit {
            Some(Admission(self.clone()))
        } else {
            self.count.fetch_sub(1, Ordering::Release);
            None
        }
    }
}

/// One admitted request's slot.
pub struct Admission(Arc<InFlight>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::Release);
    }
}

impl LoadShedLayer {
    /// Admits at most `limit` concurrent requests.
    pub fn new(limit: usize) -> Self {
        Self {
            in_flight: Arc::new(InFlight {
                count: AtomicUsize::new(0),
                limit,
            }),
            shed: metrics::counter!(HTTP_REJECTED, "reason" => "concurrency"),
        }
    }
}

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShed<S>;

    fn layer(&self, inner: S) -> LoadShed<S> {
        LoadShed {
            inner,
            in_flight: self.in_flight.clone(),
            shed: self.shed.clone(),
        }
    }
}

/// Service that sheds requests past the limit with a JSON 503.
#[derive(Clone)]
pub struct LoadShed<S> {
    inner: S,
    in_flight: Arc<InFlight>,
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
        match self.in_flight.try_admit() {
            Some(admission) => ResponseFuture::Admitted {
                inner: self.inner.call(req),
                _admission: admission,
            },
            None => {
                self.shed.increment(1);
                ResponseFuture::Shed
            }
        }
    }
}

pin_project! {
    /// Either the admitted request (holding its slot) or an immediate 503.
    #[project = ResponseFutureProj]
    #[allow(missing_docs)] // variant fields are the inner future and its guard
    pub enum ResponseFuture<F> {
        /// Admitted: the slot is freed when this future is dropped.
        Admitted { #[pin] inner: F, _admission: Admission },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_and_frees_slots_on_drop() {
        let in_flight = Arc::new(InFlight {
            count: AtomicUsize::new(0),
            limit: 2,
        });
        let first = in_flight.try_admit().expect("slot 1");
        let second = in_flight.try_admit().expect("slot 2");
        assert!(in_flight.try_admit().is_none(), "over the limit");
        assert_eq!(
            in_flight.count.load(Ordering::SeqCst),
            2,
            "a refusal holds nothing"
        );
        drop(first);
        let third = in_flight.try_admit().expect("a freed slot is reused");
        drop((second, third));
        assert_eq!(in_flight.count.load(Ordering::SeqCst), 0);
    }
}
