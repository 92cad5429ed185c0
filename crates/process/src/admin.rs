//! The admin listener's accept loop, shared by every binary: each serves its own routes
//! (`/metrics` always; the service `/storage`, the consumer `/readyz`) on a port kept off
//! the public network.
//!
//! HTTP/1 only, one task per connection, no drain at shutdown: a scrape cut short is
//! retried by Prometheus, and a saturated public listener never delays it (it is a
//! listener of its own).

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http::{Method, Response};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Serves `answer(method, path)` on `listener` until `shutdown` resolves.
pub async fn serve<F, Fut>(listener: TcpListener, answer: F, shutdown: impl Future<Output = ()>)
where
    F: Fn(Method, String) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed");
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let answer = answer.clone();
        let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let response = answer(request.method().clone(), request.uri().path().to_owned());
            async move { Ok::<_, Infallible>(response.await) }
        });
        tokio::spawn(async move {
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "admin connection ended with an error");
            }
        });
    }
}
