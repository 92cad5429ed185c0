//! Request count and latency, by route template and status.
//!
//! Every (route, status) pair the service normally answers has its counter and histogram
//! handle resolved once, on first use, into a table indexed by
//! [`Route::index`] and status. Recording is then two atomic operations: no name hashing,
//! no label allocation, no registry lock on the hot path. Rare statuses fall back to the
//! `metrics` macros (a registry lookup), which is fine because they are rare.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use http::{Request, Response, StatusCode};
use metrics::{Counter, Histogram};
use pin_project_lite::pin_project;
use quanta::Instant;
use tower::{Layer, Service};

use crate::http::router::Route;
use crate::metrics::{HTTP_REQUEST_DURATION, HTTP_REQUESTS};

/// Statuses with pre-resolved handles: everything this service answers in normal
/// operation. Labels are `'static` strings so registering them allocates nothing.
const TRACKED: [(u16, &str); 18] = [
    (200, "200"),
    (201, "201"),
    (204, "204"),
    (301, "301"),
    (302, "302"),
    (307, "307"),
    (308, "308"),
    (400, "400"),
    (404, "404"),
    (405, "405"),
    (409, "409"),
    (410, "410"),
    (413, "413"),
    (415, "415"),
    (422, "422"),
    (431, "431"),
    (500, "500"),
    (503, "503"),
];

struct Handles {
    requests: Counter,
    duration: Histogram,
}

/// `[route][status]` -> handles, each registered on first use (so `/metrics` lists only
/// pairs that occurred) and then read with one atomic load.
struct Table {
    rows: Vec<Vec<OnceLock<Handles>>>,
}

impl Table {
    fn new() -> Self {
        let rows = Route::ALL
            .iter()
            .map(|_| TRACKED.iter().map(|_| OnceLock::new()).collect())
            .collect();
        Self { rows }
    }

    fn record(&self, route: Route, status: StatusCode, seconds: f64) {
        let tracked = TRACKED
            .iter()
            .position(|&(code, _)| code == status.as_u16());
        let cell = tracked.and_then(|i| Some((i, self.rows.get(route.index())?.get(i)?)));
        match cell {
            Some((i, cell)) => {
                let handles = cell.get_or_init(|| {
                    let (template, status) = (route.template(), TRACKED[i].1);
                    Handles {
                        requests: metrics::counter!(HTTP_REQUESTS, "route" => template, "status" => status),
                        duration: metrics::histogram!(HTTP_REQUEST_DURATION, "route" => template, "status" => status),
                    }
                });
                handles.requests.increment(1);
                handles.duration.record(seconds);
            }
            None => {
                let status = status.as_u16().to_string();
                let route = route.template();
                metrics::counter!(HTTP_REQUESTS, "route" => route, "status" => status.clone())
                    .increment(1);
                metrics::histogram!(HTTP_REQUEST_DURATION, "route" => route, "status" => status)
                    .record(seconds);
            }
        }
    }
}

/// Layer that applies [`Metrics`].
#[derive(Clone)]
pub struct MetricsLayer {
    table: Arc<Table>,
}

impl MetricsLayer {
    /// Resolves all handles against the installed recorder (install it first).
    pub fn new() -> Self {
        Self {
            table: Arc::new(Table::new()),
        }
    }
}

impl Default for MetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Metrics<S> {
        Metrics {
            inner,
            table: self.table.clone(),
        }
    }
}

/// Service that records each answer.
#[derive(Clone)]
pub struct Metrics<S> {
    inner: S,
    table: Arc<Table>,
}

impl<S, B, R> Service<Request<B>> for Metrics<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // quanta reads the TSC (a few ns) where `std::time::Instant` costs a
        // clock_gettime call; two clock reads per request are the bulk of this layer.
        // Classifying twice (here and in the router) costs a few byte comparisons and
        // keeps the layers independent; passing it in request extensions would allocate.
        let (route, _) = Route::classify(req.uri().path());
        ResponseFuture {
            inner: self.inner.call(req),
            table: self.table.clone(),
            route,
            started: Instant::now(),
        }
    }
}

pin_project! {
    /// Records when the inner future completes.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        table: Arc<Table>,
        route: Route,
        started: Instant,
    }
}

impl<F, R, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            this.table.record(
                *this.route,
                response.status(),
                this.started.elapsed().as_secs_f64(),
            );
        }
        Poll::Ready(result)
    }
}
