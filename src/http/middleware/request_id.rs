//! `x-request-id`: accept the caller's id or mint one, and echo it on the response.
//!
//! A load balancer in front usually sets the id; we keep it (if it is short and plain
//! ASCII) so one id follows the request across hops. Otherwise we mint
//! `<instance prefix>-<counter>` (hex): unique per process by construction, distinguishable
//! across instances by the random prefix, and far cheaper than a UUID on the hot path
//! (one atomic increment and one small string).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use rand::RngExt;
use tower::{Layer, Service};

/// The header name.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest caller-supplied id we keep; longer ones are replaced (log hygiene).
const MAX_INBOUND_LEN: usize = 128;

/// Layer that applies [`RequestId`].
#[derive(Debug, Clone)]
pub struct RequestIdLayer {
    ids: Arc<IdSource>,
}

#[derive(Debug)]
struct IdSource {
    /// The instance prefix and the dash, formatted once.
    prefix: [u8; 9],
    next: AtomicU64,
}

impl RequestIdLayer {
    /// A layer with a fresh random instance prefix.
    pub fn new() -> Self {
        Self {
            ids: Arc::new(IdSource::new(rand::rng().random())),
        }
    }
}

impl Default for RequestIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl IdSource {
    fn new(instance: u32) -> Self {
        let mut prefix = [b'-'; 9];
        write_hex(&mut prefix[..8], u64::from(instance));
        Self {
            prefix,
            next: AtomicU64::new(1),
        }
    }

    /// `pppppppp-nnnnnnnnnnnnnnnn` (prefix, counter; lowercase hex). Formatted by hand
    /// into a stack buffer: `format!` costs more than everything else in this layer.
    fn mint(&self) -> HeaderValue {
        // Relaxed: we need uniqueness, not ordering with other memory.
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 8 + 1 + 16];
        buf[..9].copy_from_slice(&self.prefix);
        write_hex(&mut buf[9..], n);
        // `from_owner`: one allocation holding bytes and refcount, so the clone that goes
        // onto the response is an atomic increment (a `Vec`-backed value would allocate
        // again on its first clone).
        HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buf))
            .expect("hex digits and '-' are a valid header value")
    }
}

/// Writes `value` as fixed-width lowercase hex filling `out` (most significant first).
fn write_hex(out: &mut [u8], mut value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in out.iter_mut().rev() {
        *byte = DIGITS[(value & 0xf) as usize];
        value >>= 4;
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> RequestId<S> {
        RequestId {
            inner,
            ids: self.ids.clone(),
        }
    }
}

/// Service that gives every request an id: on its span and on its response.
#[derive(Debug, Clone)]
pub struct RequestId<S> {
    inner: S,
    ids: Arc<IdSource>,
}

impl<S, B, R> Service<Request<B>> for RequestId<S>
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
        let id = match req.headers().get(&REQUEST_ID) {
            Some(id) if is_acceptable(id) => id.clone(),
            _ => self.ids.mint(),
        };
        // Into the request span (entered by the trace layer around this call), not into
        // the request's headers: nothing downstream reads them, and inserting a header
        // grew hyper's exactly-sized header map on every request.
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::Span::current().record("request_id", tracing::field::debug(&id));
        }
        ResponseFuture {
            inner: self.inner.call(req),
            id: Some(id),
        }
    }
}

fn is_acceptable(id: &HeaderValue) -> bool {
    !id.is_empty() && id.len() <= MAX_INBOUND_LEN && id.as_bytes().iter().all(u8::is_ascii_graphic)
}

pin_project! {
    /// Copies the id onto the response.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F, R, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            response.headers_mut().insert(REQUEST_ID.clone(), id);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_are_unique_and_share_the_instance_prefix() {
        let layer = RequestIdLayer::new();
        let a = layer.ids.mint();
        let b = layer.ids.mint();
        assert_ne!(a, b);
        let prefix = |v: &HeaderValue| {
            v.to_str()
                .expect("ascii")
                .split('-')
                .next()
                .map(str::to_owned)
        };
        assert_eq!(prefix(&a), prefix(&b));
    }

    #[test]
    fn only_short_plain_inbound_ids_are_kept() {
        assert!(is_acceptable(&HeaderValue::from_static("abc-123")));
        assert!(!is_acceptable(&HeaderValue::from_static("")));
        assert!(!is_acceptable(&HeaderValue::from_static("has space")));
        let long = HeaderValue::from_str(&"x".repeat(MAX_INBOUND_LEN + 1)).expect("valid");
        assert!(!is_acceptable(&long));
    }

    /// Collects the `request_id` values recorded on spans.
    #[derive(Clone, Default)]
    struct RecordedIds(Arc<std::sync::Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RecordedIds {
        fn on_record(
            &self,
            _: &tracing::span::Id,
            values: &tracing::span::Record<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            struct Visitor<'a>(&'a mut Vec<String>);
            impl tracing::field::Visit for Visitor<'_> {
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    if field.name() == "request_id" {
                        self.0.push(format!("{value:?}"));
                    }
                }
            }
            values.record(&mut Visitor(&mut self.0.lock().expect("lock")));
        }
    }

    #[tokio::test]
    async fn the_request_span_carries_the_id_that_the_response_echoes() {
        use tower::{ServiceBuilder, ServiceExt};
        use tracing_subscriber::layer::SubscriberExt;

        let recorded = RecordedIds::default();
        let subscriber = tracing_subscriber::registry()
            .with(recorded.clone())
            .with(tracing_subscriber::filter::LevelFilter::DEBUG);
        let _guard = tracing::subscriber::set_default(subscriber);
        let stack = ServiceBuilder::new()
            .layer(super::super::trace::TraceLayer)
            .layer(RequestIdLayer::new())
            .service_fn(|req: Request<()>| async move {
                assert!(
                    req.headers().get(&REQUEST_ID).is_none()
                        || req.headers()[&REQUEST_ID] == "lb-7",
                    "a minted id is not added to the request"
                );
                Ok::<_, std::convert::Infallible>(Response::new(()))
            });
        let minted = stack.clone().oneshot(Request::new(())).await.expect("ok");
        let inbound = Request::builder()
            .header(&REQUEST_ID, "lb-7")
            .body(())
            .expect("request");
        let echoed = stack.oneshot(inbound).await.expect("ok");
        assert_eq!(echoed.headers()[&REQUEST_ID], "lb-7");
        let recorded = recorded.0.lock().expect("lock").clone();
        assert_eq!(
            recorded,
            vec![
                format!("{:?}", minted.headers()[&REQUEST_ID]),
                "\"lb-7\"".to_owned()
            ]
        );
    }
}
