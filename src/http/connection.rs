//! One connection's life: a deadline for every state it can be in, and its part in a
//! graceful shutdown.
//!
//! **The plain version.** `hyper_util::server::graceful::GracefulShutdown`: `watch` each
//! connection, call `shutdown().await` on SIGTERM; and for deadlines,
//! `tokio::time::timeout` around the connection's first read. That is how to start.
//!
//! **Why it is replaced.** Three measured reasons. hyper's graceful shutdown closes an
//! idle HTTP/1 connection at once, and under load that dropped exactly one request per
//! keep-alive connection (64 of 94,426 in `tests/hostile.rs`, with the old drain). It
//! re-polls a `watch` future (a mutex) on every wake-up: ~180 instructions per cached
//! redirect. And nothing in hyper times an HTTP/2 connection with no stream, or one that
//! has sent nothing yet.
//!
//! **The concept.** The rule for every future is that the waker of its *latest* poll is
//! the one to wake (`adapter` follows it), because a future can move: into another
//! task, a `select!`, a `FuturesUnordered`. A [`Supervised`] future cannot: it is the
//! top-level future of the task `server` spawns for the connection, polled by that task
//! alone until it ends, and a tokio task's waker wakes that same task for its whole life.
//! So here, and only because nothing else ever polls it, registering the first waker
//! once and then reading an atomic flag per poll is enough to be woken for the signal.
//!
//! # The deadlines
//!
//! | state                                      | deadline                        | kept by |
//! |--------------------------------------------|---------------------------------|---------|
//! | accepted, no request yet (any protocol)    | `http.header_read_timeout_ms`   | here    |
//! | HTTP/1, waiting for or reading headers     | `http.header_read_timeout_ms`   | hyper   |
//! | a request in the handler                   | `http.request_timeout_ms`       | `middleware::deadline` |
//! | a request body being read                  | `http.body_read_timeout_ms`     | `api::create` |
//! | HTTP/2, no open stream                     | `http.http2_idle_timeout_ms`    | here    |
//! | HTTP/2, peer silent with streams open      | `http.http2_keep_alive_*`       | hyper (PING) |
//! | a response being written, client not reading | `http.write_timeout_ms`       | `write_deadline` |
//! | draining (after SIGTERM)                   | linger, then `shutdown_grace_ms`| here, `server` |
//!
//! hyper's HTTP/1 header timer starts as soon as the connection waits for a request, so
//! on HTTP/1 it is also the keep-alive idle timeout. It cannot see a connection that has
//! sent nothing at all, though: hyper-util's protocol detection reads the first bytes
//! before there is an HTTP/1 connection to time, and HTTP/2 has no idle timer at all.
//! [`Supervised`] covers those states.
//!
//! How it knows: the connection's hyper service (`adapter::TowerService`) counts requests
//! started and in flight in the connection's [`Activity`] ([`Activity::start`]).
//! [`Supervised`] wraps the connection's future and owns one timer, armed for the current
//! state's deadline. Per request that
//! is two relaxed atomic adds on a line only this connection touches and an `Arc` bump;
//! the timer is never touched by a request. So an HTTP/2 connection is checked on a
//! coarse tick (idle = nothing started and nothing in flight for a whole tick), which
//! is why it goes between one and two idle timeouts after its last stream.
//!
//! # Draining
//!
//! When [`Drain::start`] runs (SIGTERM), each connection, at its next poll:
//!
//! - HTTP/2: sends GOAWAY (hyper's graceful shutdown). The client learns which streams
//!   were taken and opens the rest elsewhere; hyper closes once those are answered.
//! - HTTP/1 (or no request yet): every response from now on, including that of a request
//!   already in the handler, carries `Connection: close`, after which hyper closes. A
//!   connection that is idle is kept for [`DRAIN_LINGER`] and closed if nothing arrives:
//!   closing it at once, as hyper's graceful shutdown does, drops a request the client
//!   had already sent (one failed request per keep-alive connection under load).
//!
//! The signal itself: hyper-util's `GracefulShutdown` does the same job, but every
//! connection polls a `watch::Receiver::changed()` future on each wake-up, and re-polling
//! tokio's `Notified` takes a mutex: ~180 instructions per cached redirect in the
//! profile, more than 1% of the request. Here a connection registers its task's waker
//! once, on its first poll, and afterwards checks one atomic flag per poll. Registering
//! once is enough because the waker of a tokio task wakes that same task for its whole
//! life. The timer is checked the same way: polled once when armed (which leaves the
//! waker), then `Sleep::is_elapsed`, one atomic load, on every later poll.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONNECTION, HeaderValue};
use http::{Response, Version};
use hyper_util::server::graceful::GracefulConnection;
use pin_project_lite::pin_project;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;
use tokio::time::{Instant, Sleep};

use crate::metrics::HTTP_CONNECTIONS_CLOSED;

/// While draining, how long an idle HTTP/1 connection is kept open for a request its
/// client may already have sent. Long enough for a client that sends back to back (or an
/// in-flight packet) to be answered with `Connection: close`; short enough to exit fast.
pub const DRAIN_LINGER: Duration = Duration::from_millis(500);

/// The drain signal, shared by the accept loop and every connection it watches.
#[derive(Default)]
pub struct Drain {
    draining: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

/// The deadlines [`Supervised`] keeps (see the table in the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// From accept until the first request starts.
    pub first_request: Duration,
    /// An HTTP/2 connection with no stream.
    pub http2_idle: Duration,
}

impl Drain {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wraps `connection`, whose requests `activity` counts, so that it keeps
    /// `deadlines` and shuts down gracefully once [`Drain::start`] runs.
    pub fn watch<C: GracefulConnection>(
        &self,
        connection: C,
        activity: Arc<Activity>,
        deadlines: Deadlines,
    ) -> Supervised<C> {
        Supervised {
            connection,
            // Created now, so a `notify_waiters` before its first poll still counts
            // (tokio guarantees that for a `Notified` that already exists).
            signal: self.notify.clone().notified_owned(),
            timer: tokio::time::sleep(deadlines.first_request),
            draining: self.draining.clone(),
            activity,
            deadlines,
            phase: Phase::AwaitingFirst,
            seen: 0,
            armed: true,
            registered: false,
        }
    }

    /// Tells every watched connection to finish and close.
    pub fn start(&self) {
        // The flag first: a woken connection must find it set.
        self.draining.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// What a connection's requests tell its [`Supervised`] future: one per connection, shared
/// with the connection's hyper service (`adapter::TowerService`), which counts them.
#[derive(Debug, Default)]
pub struct Activity {
    /// Requests started on this connection (written only by the connection's task).
    started: AtomicU64,
    /// Requests whose response future is still alive (HTTP/2 streams end on their own
    /// tasks, hence an atomic add rather than a plain store).
    in_flight: AtomicUsize,
    /// A request came over HTTP/2.
    http2: AtomicBool,
    /// Draining: HTTP/1 responses carry `Connection: close` from now on.
    closing: AtomicBool,
}

impl Activity {
    /// A new connection's (nothing started yet).
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Nothing in flight, and nothing started since the count was `seen`.
    fn idle_since(&self, seen: u64) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0 && self.started() == seen
    }

    /// Counts a request of `version` starting on this connection (called by the
    /// connection's hyper service, `adapter::TowerService`, from the connection's task).
    pub fn start(self: &Arc<Self>, version: Version) -> InFlight {
        let http1 = version < Version::HTTP_2;
        if !http1 {
            self.http2.store(true, Ordering::Relaxed);
        }
        // One writer (hyper calls services from the connection's task): no RMW needed.
        self.started.store(self.started() + 1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            activity: self.clone(),
            http1,
        }
    }
}

/// A request in flight on a connection, from [`Activity::start`]: counted finished when
/// dropped (whether its response was sent or the request was cancelled).
#[derive(Debug)]
pub struct InFlight {
    activity: Arc<Activity>,
    http1: bool,
}

impl InFlight {
    /// Marks `response` `Connection: close` if its connection is draining (HTTP/1; an
    /// HTTP/2 client gets GOAWAY instead). Decided when the response is ready, not when
    /// the request came: a request already in the handler when draining started must
    /// close its connection too.
    pub fn finish<B>(&self, response: &mut Response<B>) {
        if self.http1 && self.activity.closing.load(Ordering::Relaxed) {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a watched connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepted, no request yet: closed at `first_request` unless one starts.
    AwaitingFirst,
    /// HTTP/1 after its first request: hyper's header timer bounds the idle time.
    Http1,
    /// HTTP/2: told to go away after `http2_idle` with no stream.
    Http2,
    /// An idle HTTP/2 connection was sent GOAWAY; dropped if still open, and still idle,
    /// a tick later (a stream the client opened before it read the GOAWAY is answered).
    GoingAway,
    /// Draining, HTTP/1 or no request yet: closed once idle for [`DRAIN_LINGER`].
    Lingering,
    /// Draining, HTTP/2: GOAWAY sent; hyper closes once the open streams are answered.
    Draining,
}

pin_project! {
    /// A connection that keeps its deadlines and drains when its [`Drain`] starts.
    pub struct Supervised<C> {
        #[pin]
        connection: C,
        #[pin]
        signal: OwnedNotified,
        #[pin]
        timer: Sleep,
        draining: Arc<AtomicBool>,
        activity: Arc<Activity>,
        deadlines: Deadlines,
        phase: Phase,
        // `activity.started` when the timer was last armed.
        seen: u64,
        // Whether the current phase has a deadline on the timer.
        armed: bool,
        registered: bool,
    }
}

impl<C> Supervised<C> {
    /// Arms the timer `after` from now (polling it once leaves this task's waker).
    fn arm(mut timer: Pin<&mut Sleep>, after: Duration, cx: &mut Context<'_>) {
        timer.as_mut().reset(Instant::now() + after);
        let _ = timer.poll(cx);
    }
}

impl<C: GracefulConnection> Future for Supervised<C> {
    type Output = Result<(), C::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if !*this.registered {
            // Leaves this task's waker with the `Notify` and the timer. The results do
            // not matter: the flag and `is_elapsed` below say what happened.
            let _ = this.signal.as_mut().poll(cx);
            let _ = this.timer.as_mut().poll(cx);
            *this.registered = true;
        }
        let draining = matches!(*this.phase, Phase::Lingering | Phase::Draining);
        if !draining && this.draining.load(Ordering::Acquire) {
            if this.activity.http2.load(Ordering::Relaxed) {
                this.connection.as_mut().graceful_shutdown();
                *this.phase = Phase::Draining;
                *this.armed = false;
            } else {
                this.activity.closing.store(true, Ordering::Relaxed);
                *this.phase = Phase::Lingering;
                *this.seen = this.activity.started();
                *this.armed = true;
                Self::arm(this.timer.as_mut(), DRAIN_LINGER, cx);
            }
        }
        if *this.armed && this.timer.is_elapsed() {
            let activity = &this.activity;
            let started = activity.started();
            let (next, close) = match *this.phase {
                Phase::AwaitingFirst if started == 0 => (None, Some("first_request_timeout")),
                Phase::AwaitingFirst if activity.http2.load(Ordering::Relaxed) => {
                    (Some((Phase::Http2, this.deadlines.http2_idle)), None)
                }
                Phase::AwaitingFirst => {
                    *this.phase = Phase::Http1;
                    *this.armed = false;
                    (None, None)
                }
                Phase::Http2 if activity.idle_since(*this.seen) => {
                    this.connection.as_mut().graceful_shutdown();
                    (Some((Phase::GoingAway, this.deadlines.http2_idle)), None)
                }
                Phase::Http2 => (Some((Phase::Http2, this.deadlines.http2_idle)), None),
                Phase::GoingAway if activity.idle_since(*this.seen) => (None, Some("http2_idle")),
                Phase::GoingAway => (Some((Phase::GoingAway, this.deadlines.http2_idle)), None),
                Phase::Lingering if activity.idle_since(*this.seen) => (None, Some("drain")),
                Phase::Lingering => (Some((Phase::Lingering, DRAIN_LINGER)), None),
                Phase::Http1 | Phase::Draining => (None, None),
            };
            if let Some(reason) = close {
                // Nothing is in flight and no request has started since the last tick:
                // dropping the connection closes the socket and loses no request.
                metrics::counter!(HTTP_CONNECTIONS_CLOSED, "reason" => reason).increment(1);
                return Poll::Ready(Ok(()));
            }
            if let Some((phase, after)) = next {
                *this.phase = phase;
                *this.seen = started;
                Self::arm(this.timer.as_mut(), after, cx);
            }
        }
        this.connection.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::service_fn;

    /// Tells the test the first request reached the handler, then holds it until released.
    type Gate = (
        tokio::sync::oneshot::Sender<()>,
        tokio::sync::oneshot::Receiver<()>,
    );

    /// Long enough never to fire in a test that is not about it.
    const NEVER: Duration = Duration::from_secs(3600);

    /// Serves one connection behind `drain` with `deadlines` (its first request held at
    /// `gate`, if any); returns the client side and the server task.
    async fn one_connection(
        drain: &Drain,
        deadlines: Deadlines,
        gate: Option<Gate>,
    ) -> (tokio::net::TcpStream, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = tokio::net::TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (stream, _) = listener.accept().await.expect("accept");
        let gate = std::sync::Arc::new(std::sync::Mutex::new(gate));
        let service = service_fn(move |_: http::Request<hyper::body::Incoming>| {
            let first = gate.lock().expect("lock").take();
            async move {
                if let Some((started, released)) = first {
                    let _ = started.send(());
                    let _ = released.await;
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("ok"))))
            }
        });
        let activity = Activity::new();
        let connection = auto::Builder::new(TokioExecutor::new())
            .serve_connection(
                TokioIo::new(stream),
                crate::http::adapter::TowerService::new(service, activity.clone()),
            )
            .into_owned();
        let watched = drain.watch(connection, activity, deadlines);
        let server = tokio::spawn(async move {
            let _ = watched.await;
        });
        (client, server)
    }

    fn deadlines(first_request: Duration) -> Deadlines {
        Deadlines {
            first_request,
            http2_idle: NEVER,
        }
    }

    async fn read_some(client: &mut tokio::net::TcpStream) -> usize {
        let mut buf = [0u8; 1024];
        // A guard against a hang, not a timing assertion.
        tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf))
            .await
            .expect("the server answered or closed in time")
            .expect("read")
    }

    async fn read_to_close(client: &mut tokio::net::TcpStream) -> String {
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut response))
            .await
            .expect("closed in time")
            .expect("read");
        String::from_utf8_lossy(&response).into_owned()
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_closed_at_the_first_request_deadline() {
        let drain = Drain::new();
        let (mut client, server) =
            one_connection(&drain, deadlines(Duration::from_millis(100)), None).await;
        assert_eq!(read_some(&mut client).await, 0, "closed by the server");
        server.await.expect("no panic");
    }

    #[tokio::test]
    async fn a_connection_that_sent_a_request_outlives_the_first_request_deadline() {
        let drain = Drain::new();
        let (mut client, _server) =
            one_connection(&drain, deadlines(Duration::from_millis(100)), None).await;
        client.write_all(GET).await.expect("write");
        assert!(read_some(&mut client).await > 0, "a response");
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.write_all(GET).await.expect("write");
        assert!(
            read_some(&mut client).await > 0,
            "still served: HTTP/1 idle is hyper's header timer"
        );
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_closes_after_the_drain_linger() {
        let drain = Drain::new();
        let (mut client, server) = one_connection(&drain, deadlines(NEVER), None).await;
        client.write_all(GET).await.expect("write");
        assert!(read_some(&mut client).await > 0, "a response");
        // Now idle: only the drain signal can wake the connection's task.
        drain.start();
        assert_eq!(read_some(&mut client).await, 0, "closed by the server");
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the connection task ended")
            .expect("no panic");
    }

    #[tokio::test]
    async fn a_request_sent_on_an_idle_connection_after_the_signal_is_answered_with_close() {
        let drain = Drain::new();
        let (mut client, server) = one_connection(&drain, deadlines(NEVER), None).await;
        client.write_all(GET).await.expect("write");
        assert!(read_some(&mut client).await > 0, "a response");
        drain.start();
        // What hyper's own graceful shutdown would read and drop: the client's next
        // request, sent before it could know the server is going away.
        tokio::task::yield_now().await;
        client.write_all(GET).await.expect("write");
        let response = read_to_close(&mut client).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("connection: close"), "{response}");
        server.await.expect("no panic");
    }

    #[tokio::test]
    async fn a_request_in_flight_when_draining_starts_is_answered_then_the_connection_closes() {
        let drain = Drain::new();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (started, in_handler) = tokio::sync::oneshot::channel::<()>();
        let (mut client, server) =
            one_connection(&drain, deadlines(NEVER), Some((started, released))).await;
        client.write_all(GET).await.expect("write");
        in_handler.await.expect("the request reached the handler");
        drain.start();
        release.send(()).expect("handler waiting");
        let response = read_to_close(&mut client).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("connection: close"), "{response}");
        assert!(
            response.ends_with("ok"),
            "answered, then closed: {response}"
        );
        server.await.expect("no panic");
    }
}
