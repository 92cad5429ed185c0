//! Load shedding: at most so many requests in flight; past that, answer 503 at once
//! instead of queueing.
//!
//! **The plain version.** `ServiceBuilder::new().load_shed().concurrency_limit(n)` from
//! tower: correct, and what to write first.
//!
//! **Why it is replaced.** That pair allocates a boxed future per clone of the service
//! (hyper clones it per request), and a tokio `Semaphore`, tried next, takes a mutex on
//! every release; callgrind showed both on every cached redirect (docs/benchmarks.md,
//! session 3). Here admission is one atomic add and release one atomic subtract.
//!
//! **The concept.** Shedding is not backpressure: nobody waits for a slot, so a counter
//! is enough; the waiter bookkeeping a semaphore pays for on every release has no waiter
//! to serve.
//!
//! # The budgets
//!
//! Two budgets, not one: `http.api_concurrency_limit` for the JSON API (every path under
//! `/api/`) and `http.redirect_concurrency_limit` for everything else (redirects, and the
//! health probes a load balancer depends on). An API request can be slow for reasons the
//! client controls (a body trickled in, a large listing) and it waits on the store; with
//! one shared budget, 4,200 connections posting a body at 1 byte/s made 55-61% of cached
//! redirects answer 503. With two, nothing the API receives can take a redirect's slot.
//! The check is one prefix comparison on the path, before the router runs.
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
    budgets: Arc<Budgets>,
}

/// The two admission budgets and what each has shed. Behind one `Arc`: hyper clones
/// the stack for every request, and each `Arc` in it is an atomic increment and
/// decrement per request (four of them, unshared, cost ~40 instructions per redirect).
struct Budgets {
    redirect: Arc<InFlight>,
    api: Arc<InFlight>,
    redirect_shed: Counter,
    api_shed: Counter,
}

impl Budgets {
    /// The budget a request to `path` is admitted from, and its shed counter.
    #[inline]
    fn for_path(&self, path: &str) -> (&Arc<InFlight>, &Counter) {
        if path.starts_with("/api/") {
            (&self.api, &self.api_shed)
        } else {
            (&self.redirect, &self.redirect_shed)
        }
    }
}

/// Requests in flight in one budget, and the most allowed.
struct InFlight {
    count: AtomicUsize,
    limit: usize,
}

impl InFlight {
    fn with_limit(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            count: AtomicUsize::new(0),
            limit,
        })
    }

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
    /// Admits at most `redirect_limit` concurrent requests outside `/api/` and at most
    /// `api_limit` under it.
    pub fn new(redirect_limit: usize, api_limit: usize) -> Self {
        let shed = |budget| metrics::counter!(HTTP_REJECTED, "reason" => "concurrency", "budget" => budget);
        Self {
            budgets: Arc::new(Budgets {
                redirect: InFlight::with_limit(redirect_limit),
                api: InFlight::with_limit(api_limit),
                redirect_shed: shed("redirect"),
                api_shed: shed("api"),
            }),
        }
    }
}

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShed<S>;

    fn layer(&self, inner: S) -> LoadShed<S> {
        LoadShed {
            inner,
            budgets: self.budgets.clone(),
        }
    }
}

/// Service that sheds requests past their budget with a JSON 503.
#[derive(Clone)]
pub struct LoadShed<S> {
    inner: S,
    budgets: Arc<Budgets>,
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
        let (budget, shed) = self.budgets.for_path(req.uri().path());
        match budget.try_admit() {
            Some(admission) => ResponseFuture::Admitted {
                inner: self.inner.call(req),
                _admission: admission,
            },
            None => {
                shed.increment(1);
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
        let in_flight = InFlight::with_limit(2);
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

    #[test]
    fn the_api_and_everything_else_draw_on_separate_budgets() {
        let layer = LoadShedLayer::new(1, 1);
        let budgets = &layer.budgets;
        let api = budgets
            .for_path("/api/v1/links")
            .0
            .try_admit()
            .expect("api slot");
        assert!(
            budgets.for_path("/api/v1/links/x").0.try_admit().is_none(),
            "api full"
        );
        let redirect = budgets.for_path("/abc1234").0.try_admit();
        assert!(
            redirect.is_some(),
            "a full API budget leaves redirects theirs"
        );
        assert!(
            budgets.for_path("/healthz").0.try_admit().is_none(),
            "probes share the redirect budget"
        );
        drop((api, redirect));
    }
}
