//! The public listener: a raw hyper accept loop with graceful shutdown.
//!
//! Why raw hyper rather than a framework's `serve`: every knob that matters under load is
//! visible here (a deadline for every connection state, a cap on open connections,
//! header limits, `TCP_NODELAY`, HTTP/1 + HTTP/2 auto-detection), and the tower stack is
//! glued in with [`TowerService`], which honours `poll_ready` and calls the stack as soon
//! as hyper parses a request (see `adapter` for why that matters).
//!
//! The accept loop never stops accepting: past `http.max_connections` a new connection is
//! closed at once (counted), and when the process is out of file descriptors (`EMFILE`,
//! `ENFILE`) it backs off, logs once per episode and counts, rather than spinning on an
//! error that only closing connections can clear.
//!
//! Shutdown: when `shutdown` resolves we stop accepting (the listener is dropped, so new
//! connections are refused and a load balancer moves on), tell every connection to finish
//! and close (see `connection` for what each protocol gets), and wait at most `grace` for
//! them. Connection tasks live in a `JoinSet`, so the ones still running after `grace`
//! are aborted, not left behind.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tower::Service;

use super::adapter::TowerService;
use super::connection::{Activity, Deadlines, Drain};
use super::parse_errors::ParseErrorBodies;
use super::write_deadline::WriteDeadline;
use crate::config::HttpSettings;
use crate::metrics::{HTTP_ACCEPT_ERRORS, HTTP_CONNECTIONS, HTTP_CONNECTIONS_REFUSED};

/// Pause after `accept` failed for lack of file descriptors, so the loop does not spin
/// while connections close and free descriptors.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// HTTP/2 streams per connection. Bounds the work one client can start at once; the
/// admission budgets still apply across connections.
const MAX_CONCURRENT_STREAMS: u32 = 256;

/// File descriptors kept free of connections, at least: the store, logs, Redis and
/// PostgreSQL pools, the admin listener, and the descriptor `accept` needs to close an
/// over-cap connection.
const MIN_FD_HEADROOM: usize = 64;

/// The connection builder for `[http]`.
pub fn connection_builder(settings: &HttpSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout())
        .max_headers(settings.max_headers.get())
        .max_buf_size(settings.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.http2_keep_alive_interval())
        .keep_alive_timeout(settings.http2_keep_alive_timeout())
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    builder
}

/// `http.max_connections`, or when it is 0, the cap derived from the open-file limit:
/// the soft limit is raised to the hard one first (as Go's runtime does; the soft default
/// of 1,024 is a relic), then `limit - max(64, limit / 10)` is left for connections.
pub fn connection_cap(settings: &HttpSettings) -> usize {
    if settings.max_connections > 0 {
        return settings.max_connections;
    }
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot raise the open-file limit; reading it as is");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    limit.saturating_sub(MIN_FD_HEADROOM.max(limit / 10)).max(1)
}

/// Serves on `listener` until `shutdown` resolves, then drains for at most the grace
/// period. At most `max_connections` are open at once (see [`connection_cap`]).
/// `make_service` builds each connection's service from the peer address (the click
/// pipeline needs the client address; one call per connection, not per request).
pub async fn serve<S, M>(
    listener: TcpListener,
    make_service: M,
    settings: &HttpSettings,
    max_connections: usize,
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
    let deadlines = Deadlines {
        first_request: settings.header_read_timeout(),
        http2_idle: settings.http2_idle_timeout(),
    };
    let write_timeout = settings.write_timeout();
    let drain = Drain::new();
    let mut tasks = JoinSet::new();
    let connections = metrics::gauge!(HTTP_CONNECTIONS);
    let refused = metrics::counter!(HTTP_CONNECTIONS_REFUSED);
    let mut accept = Accept::new(listener);
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = accept.next() => accepted,
            () = &mut shutdown => break,
        };
        // Reap finished connection tasks, so the set holds only live ones.
        while tasks.try_join_next().is_some() {}
        if tasks.len() >= max_connections {
            // Dropping the stream closes it: the client learns at once, and the
            // descriptor is free again for a connection that fits.
            refused.increment(1);
            drop(stream);
            continue;
        }
        // Small responses must leave now, not wait for Nagle's algorithm to coalesce them.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let activity = Activity::new();
        let service = TowerService::new(make_service(peer), activity.clone());
        // Under hyper, the write deadline (a client that stops reading is cut) and JSON
        // bodies for the 400 and 431 hyper answers on its own.
        let io = TokioIo::new(WriteDeadline::new(
            ParseErrorBodies::new(stream),
            write_timeout,
        ));
        let connection = builder.serve_connection(io, service).into_owned();
        let connection = drain.watch(connection, activity, deadlines);
        let connections = connections.clone();
        tasks.spawn(async move {
            let _open = OpenConnection::new(connections);
            if let Err(error) = connection.await {
                // Client resets and timeouts are routine on the public internet.
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }

    drop(accept);
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

/// The listener's accept calls, surviving their errors.
struct Accept {
    listener: TcpListener,
    /// Out of descriptors since the last successful accept (logged once per episode).
    exhausted: bool,
    fd_exhausted: metrics::Counter,
    connection_errors: metrics::Counter,
}

impl Accept {
    fn new(listener: TcpListener) -> Self {
        Self {
            listener,
            exhausted: false,
            fd_exhausted: metrics::counter!(HTTP_ACCEPT_ERRORS, "kind" => "fd_exhausted"),
            connection_errors: metrics::counter!(HTTP_ACCEPT_ERRORS, "kind" => "connection"),
        }
    }

    /// The next connection. Cancel-safe: dropping it between accepts loses nothing.
    async fn next(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(accepted) => {
                    if self.exhausted {
                        self.exhausted = false;
                        tracing::info!("file descriptors available again; accepting");
                    }
                    return accepted;
                }
                Err(error) if out_of_descriptors(&error) => {
                    self.fd_exhausted.increment(1);
                    if !self.exhausted {
                        self.exhausted = true;
                        tracing::warn!(
                            %error,
                            "out of file descriptors; backing off until connections close"
                        );
                    }
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
                Err(error) => {
                    // The connection died in the backlog (e.g. ECONNABORTED): the next
                    // one is unaffected, so no pause.
                    self.connection_errors.increment(1);
                    tracing::debug!(%error, "accept failed for one connection");
                }
            }
        }
    }
}

/// Whether `accept` failed because the process or the system has no descriptor (or
/// buffer) for a new socket, which only closing connections can fix.
fn out_of_descriptors(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
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
