//! The tower middleware stack of the public listener, one module per concern.
//!
//! Order, outermost first, and why:
//!
//! 1. [`metrics`]: outermost so it times and counts *every* answer, including the 503s
//!    produced by the guards below it.
//! 2. [`trace`]: a DEBUG span per request (free when DEBUG is off), entered while the
//!    layers below are called.
//! 3. [`request_id`]: inside the span, so it records the id there and every log line of
//!    the request carries it; it also sets the id on the response.
//! 4. [`load_shed`]: at most `http.redirect_concurrency_limit` requests in flight outside
//!    `/api/` and `http.api_concurrency_limit` under it, of which one connection may hold
//!    `http.api_concurrency_per_connection`; past its budget, a request gets a 503 at
//!    once instead of a queue. Outside the timeout so shed requests cost no timer.
//! 5. [`deadline`]: bounds a request's time in the handler and answers a JSON 503 past
//!    it; the timer is armed only for requests that actually wait.
//! 6. [`body_limit`]: caps the request body before any handler reads it.

pub mod body_limit;
pub mod deadline;
pub mod load_shed;
pub mod metrics;
pub mod request_id;
pub mod trace;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower::{Service, ServiceBuilder};

use super::app::Handlers;
use super::error::BoxError;
use crate::config::HttpSettings;

/// The layers of the public stack, built once and shared by every connection (one
/// load-shedding semaphore, one metrics table, one request-id sequence).
#[derive(Clone)]
pub struct Stack {
    metrics: metrics::MetricsLayer,
    request_id: request_id::RequestIdLayer,
    load_shed: load_shed::LoadShedLayer,
    deadline: deadline::DeadlineLayer,
    max_body_bytes: usize,
}

impl Stack {
    /// The layers configured by `[http]`. Install the metrics recorder first.
    pub fn new(settings: &HttpSettings) -> Self {
        Self {
            metrics: metrics::MetricsLayer::new(),
            request_id: request_id::RequestIdLayer::new(),
            load_shed: load_shed::LoadShedLayer::new(
                settings.redirect_concurrency_limit.get(),
                settings.api_concurrency_limit.get(),
                settings.api_concurrency_per_connection.get(),
            ),
            deadline: deadline::DeadlineLayer::new(Duration::from_millis(
                settings.request_timeout_ms.get(),
            )),
            max_body_bytes: settings.max_body_bytes.get(),
        }
    }

    /// Wraps `app` (one per connection: it knows the peer) in the stack. By value: a
    /// `Stack` clone is a handful of `Arc` bumps, paid once per connection.
    pub fn service<B>(
        self,
        app: Handlers,
    ) -> impl Service<
        Request<B>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Send + 'static,
    > + Clone
    + Send
    + 'static
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        ServiceBuilder::new()
            .layer(self.metrics)
            .layer(trace::TraceLayer)
            .layer(self.request_id)
            .layer(self.load_shed.for_connection())
            .layer(self.deadline)
            .layer(body_limit::BodyLimitLayer::new(self.max_body_bytes))
            .service(app)
    }
}
