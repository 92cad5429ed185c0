//! Bounds a request's time in the handler: past `http.request_timeout_ms` the client gets
//! a JSON 503 `timeout` with `Retry-After`, and the rejection is counted
//! (`shortener_http_rejected_total{reason="timeout"}`). The handler's future is dropped,
//! which cancels whatever it was waiting on.
//!
//! **The plain version.** `tower::timeout::TimeoutLayer::new(limit)`, with a
//! `HandleErrorLayer` turning its error into the 503.
//!
//! **Why it is replaced.** tower's `Timeout` registers a timer in tokio's wheel when the
//! request is called and removes it when it finishes: ~1% of a cached redirect's profile
//! (`sleep`, the wheel's `reregister`, `TimerEntry` drop; docs/benchmarks.md, the
//! 2026-11-22 re-measurement),
//! for a redirect that never waits. Here the timer exists only for requests that wait.
//!
//! **The concept.** Dropping a future cancels it: every `.await` inside it stops where it
//! was, and destructors run. So a timeout is "race the handler against a timer; drop the
//! loser", and a handler that finishes in its first poll can never be late.
//!
//! # How
//!
//! The timer is armed lazily, on the handler's first `Pending`. Most requests (every
//! cached redirect) finish in their first poll and never touch the timer wheel: tower's
//! `Timeout` registers and removes a timer for each of them, which showed up in the
//! redirect profile. The price is that the bound counts from the handler's first wait
//! rather than from the call; the first poll is synchronous CPU work that no timer could
//! interrupt anyway.
//!
//! Below this layer the stack is infallible, so the timeout is an answer here, not a
//! service error that hyper would turn into a dropped connection.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use metrics::Counter;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::{Layer, Service};

use crate::http::error::ApiError;
use crate::metrics::HTTP_REJECTED;

/// Layer that applies [`Deadline`].
#[derive(Clone)]
pub struct DeadlineLayer {
    limit: Duration,
    timeouts: Counter,
}

impl DeadlineLayer {
    /// Requests get at most `limit` of waiting in the handler.
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            timeouts: metrics::counter!(HTTP_REJECTED, "reason" => "timeout"),
        }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            limit: self.limit,
            timeouts: self.timeouts.clone(),
        }
    }
}

/// Service answering 503 when its inner service takes too long.
#[derive(Clone)]
pub struct Deadline<S> {
    inner: S,
    limit: Duration,
    timeouts: Counter,
}

impl<S, B> Service<Request<B>> for Deadline<S>
where
    S: Service<Request<B>, Response = Response<Full<Bytes>>, Error = Infallible>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
            sleep: None,
            limit: self.limit,
            timeouts: self.timeouts.clone(),
        }
    }
}

pin_project! {
    /// The handler's future, raced against a timer armed at its first wait.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        limit: Duration,
        timeouts: Counter,
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
{
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep(*this.limit)));
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
        }
        this.timeouts.increment(1);
        Poll::Ready(Ok(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long; retry",
        )
        .into_response()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower::{ServiceExt, service_fn};

    use super::*;

    /// A handler that waits `wait` and then answers 200.
    fn handler(
        wait: Duration,
    ) -> impl Service<
        Request<()>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
    > + Clone {
        service_fn(move |_req: Request<()>| async move {
            tokio::time::sleep(wait).await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        })
    }

    async fn status_after(wait: Duration, limit: Duration) -> StatusCode {
        let service = DeadlineLayer::new(limit).layer(handler(wait));
        let response = service.oneshot(Request::new(())).await.expect("infallible");
        response.status()
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_within_the_bound_answers_even_after_waiting() {
        let status = status_after(Duration::from_millis(99), Duration::from_millis(100)).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_past_the_bound_gets_a_503() {
        let started = tokio::time::Instant::now();
        let status = status_after(Duration::from_secs(3600), Duration::from_millis(100)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(started.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_ready_at_once_answers() {
        let status = status_after(Duration::ZERO, Duration::from_millis(100)).await;
        assert_eq!(status, StatusCode::OK);
    }
}
