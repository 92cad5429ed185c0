//! The public listener: a raw hyper accept loop with graceful shutdown.
//!
//! Why raw hyper rather than a framework's `serve`: every knob that matters under load is
//! visible here (header read timeout against slowloris, header limits, `TCP_NODELAY`,
//! HTTP/1 + HTTP/2 auto-detection), and the tower stack is glued in with
//! [`TowerService`], which honours `poll_ready` and calls the stack as soon as hyper
//! parses a request (see `adapter` for why that matters).
//!
//! Shutdown: when `shutdown` resolves we stop accepting (the listener is dropped), ask every
//! connection to finish its in-flight requests and close (HTTP/1 stops keep-alive, HTTP/2
//! sends GOAWAY; see `drain`), and wait at most `grace` for them. Connection tasks live in
//! a `JoinSet`, so the ones still running after `grace` are aborted, not left behind.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::Service;

use super::adapter::TowerService;
use super::drain::Drain;
use crate::config::HttpSettings;
use crate::metrics::HTTP_CONNECTIONS;

/// Pause after a failed `accept` (typically EMFILE: out of file descriptors), so the loop
/// does not spin while connections close and free descriptors.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// HTTP/2 streams per connection. Bounds the work one client can start at once; the
/// global concurrency limit still applies across connections.
const MAX_CONCURRENT_STREAMS: u32 = 256;

/// The connection builder for `[http]`.
pub fn connection_builder(settings: &HttpSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout())
        .max_headers(settings.max_headers)
        .max_buf_size(settings.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    builder
}

/// Serves on `listener` until `shutdown` resolves, then drains for at most `grace`.
/// `make_service` builds each connection's service from the peer address (the click
/// pipeline needs the client address; one call per connection, not per request).
pub async fn serve<S, M>(
    listener: TcpListener,
    make_service: M,
    settings: &HttpSettings,
    shutdown: impl Future<Output = ()>,
) where
    M: Fn(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let builder = connection_builder(settings);
    let drain = Drain::new();
    let mut tasks = JoinSet::new();
    let connections = metrics::gauge!(HTTP_CONNECTIONS);
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed; backing off");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Reap finished connection tasks, so the set holds only live ones.
        while tasks.try_join_next().is_some() {}
        // Small responses must leave now, not wait for Nagle's algorithm to coalesce them.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let connection = builder
            .serve_connection(TokioIo::new(stream), TowerService::new(make_service(peer)))
            .into_owned();
        let connection = drain.watch(connection);
        let connections = connections.clone();
        tasks.spawn(async move {
            let _open = OpenConnection::new(connections);
            if let Err(error) = connection.await {
                // Client resets and timeouts are routine on the public internet.
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }

    drop(listener);
    while tasks.try_join_next().is_some() {}
    tracing::info!(
        connections = tasks.len(),
        "stopped accepting; draining connections"
    );
    drain.start();
    let grace = settings.shutdown_grace();
    let drained = async { while tasks.join_next().await.is_some() {} };
    match tokio::time::timeout(grace, drained).await {
        Ok(()) => tracing::info!("all connections drained"),
        Err(_) => {
            tracing::warn!(
                ?grace,
                connections = tasks.len(),
                "grace period expired; dropping remaining connections"
            );
            tasks.shutdown().await;
        }
    }
}

/// Counts a connection in the `HTTP_CONNECTIONS` gauge while it lives, including when
/// its task is aborted at the end of the grace period.
struct OpenConnection(metrics::Gauge);

impl OpenConnection {
    fn new(gauge: metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
