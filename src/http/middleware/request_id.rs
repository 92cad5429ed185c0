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

/// Service that ensures every request and response carries `x-request-id`.
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

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = match req.headers().get(&REQUEST_ID) {
            Some(id) if is_acceptable(id) => id.clone(),
            _ => {
                let id = self.ids.mint();
                req.headers_mut().insert(REQUEST_ID.clone(), id.clone());
                id
            }
        };
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
}
