//! The bridge from the tower stack to hyper: a request is handed to the stack the moment
//! hyper parses it.
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

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

/// A tower service as a hyper service; see the module docs.
#[derive(Debug, Clone)]
pub struct TowerService<S> {
    service: S,
}

impl<S> TowerService<S> {
    /// Wraps `service` (cloned per request, as tower's `&mut self` requires).
    pub fn new(service: S) -> Self {
        Self { service }
    }
}

impl<S, R> hyper::service::Service<R> for TowerService<S>
where
    S: Service<R> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, R>;

    fn call(&self, req: R) -> Self::Future {
        let mut service = self.service.clone();
        // A `Pending` here registers nothing: the `Waiting` future polls again with the
        // task's real waker.
        match service.poll_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => ResponseFuture::Called {
                future: service.call(req),
            },
            Poll::Ready(Err(error)) => ResponseFuture::Failed { error: Some(error) },
            Poll::Pending => ResponseFuture::Waiting {
                future: service.oneshot(req),
            },
        }
    }
}

pin_project! {
    /// The future of [`TowerService`].
    #[project = ResponseFutureProj]
    #[allow(missing_docs)] // variant fields: the inner future or the readiness error
    pub enum ResponseFuture<S, R>
    where
        S: Service<R>,
    {
        /// The service was ready and has been called.
        Called { #[pin] future: S::Future },
        /// The service was not ready yet: readiness, then the call.
        Waiting { #[pin] future: Oneshot<S, R> },
        /// The service failed its readiness check.
        Failed { error: Option<S::Error> },
    }
}

impl<S, R> Future for ResponseFuture<S, R>
where
    S: Service<R>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Called { future } => future.poll(cx),
            ResponseFutureProj::Waiting { future } => future.poll(cx),
            ResponseFutureProj::Failed { error } => match error.take() {
                Some(error) => Poll::Ready(Err(error)),
                None => Poll::Pending,
            },
        }
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

    impl Service<u32> for Probe {
        type Response = u32;
        type Error = &'static str;
        type Future = std::future::Ready<Result<u32, &'static str>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            if self.ready.load(Ordering::SeqCst) {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }

        fn call(&mut self, req: u32) -> Self::Future {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(req + 1))
        }
    }

    fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_ready_service_is_called_before_the_future_is_polled() {
        let probe = Probe::default();
        probe.ready.store(true, Ordering::SeqCst);
        let future = TowerService::new(probe.clone()).call(41);
        assert_eq!(probe.calls.load(Ordering::SeqCst), 1, "called by `call`");
        let mut future = std::pin::pin!(future);
        assert_eq!(poll_once(future.as_mut()), Poll::Ready(Ok(42)));
    }

    #[test]
    fn a_service_that_is_not_ready_is_called_once_it_is() {
        let probe = Probe::default();
        let future = TowerService::new(probe.clone()).call(1);
        let mut future = std::pin::pin!(future);
        assert_eq!(poll_once(future.as_mut()), Poll::Pending);
        assert_eq!(probe.calls.load(Ordering::SeqCst), 0);
        probe.ready.store(true, Ordering::SeqCst);
        assert_eq!(poll_once(future.as_mut()), Poll::Ready(Ok(2)));
        assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
    }
}
