//! The bridge from the tower stack to hyper: a request is handed to the stack the moment
//! hyper parses it.
//!
//! **The plain version.** `hyper_util::service::TowerToHyperService::new(stack)`, handed
//! to `serve_connection`: one line, and correct. Start there when you write a service.
//!
//! **Why it is replaced.** With it, hyper allocated a fresh 8 KB read buffer for every
//! request (the reason is below). This adapter, with the synchronous cache hit it makes
//! possible, took a cached redirect from 17,026 to 15,767 instructions (docs/benchmarks.md,
//! "Counting instructions instead of requests").
//!
//! **The concept.** `bytes::Bytes` lets a parsed request borrow hyper's read buffer
//! without copying; while any slice of it is alive, hyper cannot reuse the buffer for
//! the next read and must allocate another. Releasing borrowed memory *early* is what
//! keeps zero-copy parsing cheap.
//!
//! # How
//!
//! hyper calls services through `&self` and has no `poll_ready`; tower services take
//! `&mut self` and must be ready before `call`. hyper-util's `TowerToHyperService`
//! bridges the two by cloning the service and returning a future that asks for readiness
//! and calls it *when first polled*. Until then the future holds the request. hyper
//! polls it only after trying one more read on the connection (to notice a client that
//! hangs up mid-request), and that read finds its buffer still shared with the request
//! (the URI and header values are slices of it), so hyper allocates a new read buffer for
//! every request. callgrind showed one 8 KB allocation, its free and a fresh cache
//! footprint per redirect.
//!
//! [`TowerService`] asks for readiness at once, with a no-op waker, and calls the stack
//! immediately when it is ready (ours always is: load shedding answers 503 from `call`),
//! so a handler that answers synchronously has dropped the request before hyper reads
//! again. A stack that is not ready gets the general path: the returned future polls
//! readiness with the real waker, then calls, exactly like hyper-util's adapter.
//!
//! It is also where a connection sees its requests: each one is counted in the
//! connection's [`Activity`] (for its deadlines and its drain, see `connection`), and
//! while the connection drains an HTTP/1 response is marked `Connection: close`. That
//! lives here rather than in a tower layer of its own because this is the one
//! per-connection wrapper that hyper does not clone per request, and whose future every
//! response already passes through: a separate layer cost an `Arc` clone and a move of
//! the response more per request.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

use super::connection::{Activity, InFlight};

/// A tower service as a hyper service, counting requests in its connection's
/// [`Activity`]; see the module docs.
#[derive(Debug, Clone)]
pub struct TowerService<S> {
    service: S,
    activity: Arc<Activity>,
}

impl<S> TowerService<S> {
    /// Wraps `service` (cloned per request, as tower's `&mut self` requires) for the
    /// connection whose requests `activity` counts.
    pub fn new(service: S, activity: Arc<Activity>) -> Self {
        Self { service, activity }
    }
}

impl<S, B, RB> hyper::service::Service<Request<B>> for TowerService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<B>>;

    fn call(&self, req: Request<B>) -> Self::Future {
        let in_flight = self.activity.start(req.version());
        let mut service = self.service.clone();
        // A `Pending` here registers nothing useful, and that is safe: the `Waiting`
        // future polls readiness again with the task's real waker, and the latest poll's
        // waker is the one a service must wake. (This future belongs to hyper, which may
        // poll it from any task: unlike `connection::Supervised`, it must follow that rule.)
        let state = match service.poll_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => State::Called {
                future: service.call(req),
            },
            Poll::Ready(Err(error)) => State::Failed { error: Some(error) },
            Poll::Pending => State::Waiting {
                future: service.oneshot(req),
            },
        };
        ResponseFuture { state, in_flight }
    }
}

pin_project! {
    /// The future of [`TowerService`].
    pub struct ResponseFuture<S, R>
    where
        S: Service<R>,
    {
        #[pin]
        state: State<S, R>,
        in_flight: InFlight,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, R>
    where
        S: Service<R>,
    {
        // The service was ready and has been called.
        Called { #[pin] future: S::Future },
        // The service was not ready yet: readiness, then the call.
        Waiting { #[pin] future: Oneshot<S, R> },
        // The service failed its readiness check.
        Failed { error: Option<S::Error> },
    }
}

impl<S, R, RB> Future for ResponseFuture<S, R>
where
    S: Service<R, Response = Response<RB>>,
{
    type Output = Result<Response<RB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(match this.state.project() {
            StateProj::Called { future } => future.poll(cx),
            StateProj::Waiting { future } => future.poll(cx),
            StateProj::Failed { error } => match error.take() {
                Some(error) => Poll::Ready(Err(error)),
                None => Poll::Pending,
            },
        })?;
        this.in_flight.finish(&mut response);
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::service::Service as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Counts calls; ready only once `ready` is set (and then wakes nobody: the test
    /// polls by hand).
    #[derive(Clone, Default)]
    struct Probe {
        ready: Arc<AtomicBool>,
        calls: Arc<AtomicUsize>,
    }

    impl Service<Request<u32>> for Probe {
        type Response = Response<u32>;
        type Error = &'static str;
        type Future = std::future::Ready<Result<Response<u32>, &'static str>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            if self.ready.load(Ordering::SeqCst) {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }

        fn call(&mut self, req: Request<u32>) -> Self::Future {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(Response::new(req.into_body() + 1)))
        }
    }

    /// Polls once; the body of a ready response.
    fn poll_once<F: Future<Output = Result<Response<u32>, &'static str>>>(
        future: Pin<&mut F>,
    ) -> Poll<Result<u32, &'static str>> {
        future
            .poll(&mut Context::from_waker(Waker::noop()))
            .map_ok(Response::into_body)
    }

    fn adapter(probe: &Probe) -> TowerService<Probe> {
        TowerService::new(probe.clone(), Activity::new())
    }

    #[test]
    fn a_ready_service_is_called_before_the_future_is_polled() {
        let probe = Probe::default();
        probe.ready.store(true, Ordering::SeqCst);
        let future = adapter(&probe).call(Request::new(41));
        assert_eq!(probe.calls.load(Ordering::SeqCst), 1, "called by `call`");
        let mut future = std::pin::pin!(future);
        assert_eq!(poll_once(future.as_mut()), Poll::Ready(Ok(42)));
    }

    #[test]
    fn a_service_that_is_not_ready_is_called_once_it_is() {
        let probe = Probe::default();
        let future = adapter(&probe).call(Request::new(1));
        let mut future = std::pin::pin!(future);
        assert_eq!(poll_once(future.as_mut()), Poll::Pending);
        assert_eq!(probe.calls.load(Ordering::SeqCst), 0);
        probe.ready.store(true, Ordering::SeqCst);
        assert_eq!(poll_once(future.as_mut()), Poll::Ready(Ok(2)));
        assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
    }
}
