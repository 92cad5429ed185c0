//! Load shedding: at most so many requests in flight; past that, answer 503 at once
//! instead of queueing.
//!
//! **The plain version.** `ServiceBuilder::new().load_shed().concurrency_limit(n)` from
//! tower: correct, and what to write first.
//!
//! **Why it is replaced.** That pair allocates a boxed future per clone of the service
//! (hyper clones it per request), and a tokio `Semaphore`, tried next, takes a mutex on
//! every release; callgrind showed both on every cached redirect (docs/benchmarks.md,
//! "Counting instructions instead of requests"). Here admission is one atomic add and
//! release one atomic subtract.
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
//! **A connection's share.** HTTP/2 multiplexes up to 256 streams on one connection, so
//! without more, two connections that each open 256 POST streams declaring a body they
//! never send held all 512 API slots for `http.body_read_timeout_ms`, and repeating that
//! kept every create, read and list at 503. So each connection may hold at most
//! `http.api_concurrency_per_connection` API slots (its own counter, checked before the
//! shared one; past it the request is shed with `budget="api_connection"`). Taking the
//! API then needs `api_concurrency_limit / api_concurrency_per_connection` connections
//! (32 by default), each of which `http.max_connections` and, later, per-client rate
//! limits count. Other ways were weighed: a lower HTTP/2 stream limit would cap
//! redirects too, and a shorter deadline for a body that has not started only shortens
//! each round of the attack. Redirects have no per-connection share: they never wait on
//! the client.
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

/// Layer that applies [`LoadShed`]: one per process, made into one per connection by
/// [`LoadShedLayer::for_connection`].
#[derive(Clone)]
pub struct LoadShedLayer {
    budgets: Arc<Budgets>,
    /// `http.api_concurrency_per_connection`.
    api_per_connection: usize,
}

/// A connection's view of the budgets: the shared ones, and its own share of the API's.
/// One `Arc` per connection, so a request clones one `Arc` as before.
struct Connection {
    budgets: Arc<Budgets>,
    /// This connection's API requests in flight, at most `api_per_connection`.
    api: InFlight,
}

/// The two admission budgets and what each has shed. Behind one `Arc`: hyper clones
/// the stack for every request, and each `Arc` in it is an atomic increment and
/// decrement per request (four of them, unshared, cost ~40 instructions per redirect).
struct Budgets {
    redirect: Arc<InFlight>,
    api: Arc<InFlight>,
    redirect_shed: Counter,
    api_shed: Counter,
    /// API requests shed because their connection had its share in flight.
    connection_shed: Counter,
}

/// Requests in flight in one budget, and the most allowed.
struct InFlight {
    count: AtomicUsize,
    limit: usize,
}

impl InFlight {
    fn new(limit: usize) -> Self {
        Self {
            count: AtomicUsize::new(0),
            limit,
        }
    }

    fn with_limit(limit: usize) -> Arc<Self> {
        Arc::new(Self::new(limit))
    }

    /// Takes a slot if one is free; the caller gives it back with [`InFlight::release`].
    #[inline]
    fn take(&self) -> bool {
        if self.count.fetch_add(1, Ordering::Acquire) < self.limit {
            true
        } else {
            self.release();
            false
        }
    }

    #[inline]
    fn release(&self) {
        self.count.fetch_sub(1, Ordering::Release);
    }

    /// A slot, if one is free; it is given back when the [`Admission`] drops.
    fn try_admit(self: &Arc<Self>) -> Option<Admission> {
        self.take().then(|| Admission(Slots::Shared(self.clone())))
    }
}

impl Connection {
    /// An API slot: one of this connection's share, then one of the shared budget.
    /// `Err` names the budget that was full.
    fn try_admit_api(self: &Arc<Self>) -> Result<Admission, &Counter> {
        if !self.api.take() {
            return Err(&self.budgets.connection_shed);
        }
        if !self.budgets.api.take() {
            self.api.release();
            return Err(&self.budgets.api_shed);
        }
        Ok(Admission(Slots::Api(self.clone())))
    }
}

/// One admitted request's slot(s), given back on drop.
pub struct Admission(Slots);

enum Slots {
    /// A slot of a shared budget (redirects).
    Shared(Arc<InFlight>),
    /// An API slot: the connection's share and the shared API budget.
    Api(Arc<Connection>),
}

impl Drop for Admission {
    fn drop(&mut self) {
        match &self.0 {
            Slots::Shared(budget) => budget.release(),
            Slots::Api(connection) => {
                connection.budgets.api.release();
                connection.api.release();
            }
        }
    }
}

impl LoadShedLayer {
    /// Admits at most `redirect_limit` concurrent requests outside `/api/` and at most
    /// `api_limit` under it.
    pub fn new(redirect_limit: usize, api_limit: usize, api_per_connection: usize) -> Self {
        let shed = |budget| metrics::counter!(HTTP_REJECTED, "reason" => "concurrency", "budget" => budget);
        Self {
            budgets: Arc::new(Budgets {
                redirect: InFlight::with_limit(redirect_limit),
                api: InFlight::with_limit(api_limit),
                redirect_shed: shed("redirect"),
                api_shed: shed("api"),
                connection_shed: shed("api_connection"),
            }),
            api_per_connection,
        }
    }

    /// The layer for one connection, with its own share of the API budget. Called once
    /// per connection (the stack is built per connection: it knows the peer).
    pub fn for_connection(&self) -> ConnectionLayer {
        ConnectionLayer(Arc::new(Connection {
            budgets: self.budgets.clone(),
            api: InFlight::new(self.api_per_connection),
        }))
    }
}

/// [`LoadShedLayer`] for one connection.
pub struct ConnectionLayer(Arc<Connection>);

impl<S> Layer<S> for ConnectionLayer {
    type Service = LoadShed<S>;

    fn layer(&self, inner: S) -> LoadShed<S> {
        LoadShed {
            inner,
            connection: self.0.clone(),
        }
    }
}

/// Service that sheds requests past their budget with a JSON 503.
#[derive(Clone)]
pub struct LoadShed<S> {
    inner: S,
    connection: Arc<Connection>,
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
        let admitted = if req.uri().path().starts_with("/api/") {
            self.connection.try_admit_api()
        } else {
            let budgets = &self.connection.budgets;
            budgets.redirect.try_admit().ok_or(&budgets.redirect_shed)
        };
        match admitted {
            Ok(admission) => ResponseFuture::Admitted {
                inner: self.inner.call(req),
                _admission: admission,
            },
            Err(shed) => {
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

    /// A request to `path` through `connection`: admitted (and holding its slots) or not.
    fn admit(connection: &Arc<Connection>, path: &str) -> Option<Admission> {
        if path.starts_with("/api/") {
            connection.try_admit_api().ok()
        } else {
            connection.budgets.redirect.try_admit()
        }
    }

    #[test]
    fn the_api_and_everything_else_draw_on_separate_budgets() {
        let connection = LoadShedLayer::new(1, 1, 1).for_connection().0;
        let api = admit(&connection, "/api/v1/links").expect("api slot");
        assert!(admit(&connection, "/api/v1/links/x").is_none(), "api full");
        let redirect = admit(&connection, "/abc1234");
        assert!(
            redirect.is_some(),
            "a full API budget leaves redirects theirs"
        );
        assert!(
            admit(&connection, "/healthz").is_none(),
            "probes share the redirect budget"
        );
        drop((api, redirect));
    }

    #[test]
    fn one_connection_holds_at_most_its_share_of_the_api_budget() {
        let layer = LoadShedLayer::new(8, 4, 2);
        let (greedy, other) = (layer.for_connection().0, layer.for_connection().0);
        let held: Vec<_> = (0..2)
            .map(|_| admit(&greedy, "/api/v1/links").expect("share"))
            .collect();
        assert!(admit(&greedy, "/api/v1/links").is_none(), "past its share");
        let fair = admit(&other, "/api/v1/links").expect("another connection still gets in");
        assert_eq!(
            layer.budgets.api.count.load(Ordering::SeqCst),
            3,
            "refusals hold nothing"
        );
        drop(held);
        assert_eq!(greedy.api.count.load(Ordering::SeqCst), 0);
        assert!(admit(&greedy, "/api/v1/links").is_some(), "slots come back");
        drop(fair);
    }

    #[test]
    fn a_full_shared_api_budget_gives_back_the_connection_share() {
        let layer = LoadShedLayer::new(8, 1, 4);
        let (a, b) = (layer.for_connection().0, layer.for_connection().0);
        let first = admit(&a, "/api/x").expect("slot");
        assert!(admit(&b, "/api/x").is_none(), "shared budget full");
        assert_eq!(
            b.api.count.load(Ordering::SeqCst),
            0,
            "its share was given back"
        );
        drop(first);
    }
}
