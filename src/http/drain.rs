//! Graceful shutdown of the accepted connections: tell each one to finish its in-flight
//! requests and close (HTTP/1 stops keep-alive, HTTP/2 sends GOAWAY).
//!
//! hyper-util's `GracefulShutdown` does the same job, but every connection polls a
//! `watch::Receiver::changed()` future on each wake-up, and re-polling tokio's
//! `Notified` takes a mutex: ~180 instructions per cached redirect in the profile, more
//! than 1% of the request. Here a connection registers its task's waker once, on its
//! first poll, and afterwards checks one atomic flag per poll. Registering once is
//! enough because the waker of a tokio task wakes that same task for its whole life.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use hyper_util::server::graceful::GracefulConnection;
use pin_project_lite::pin_project;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

/// The drain signal, shared by the accept loop and every connection it watches.
#[derive(Default)]
pub struct Drain {
    draining: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl Drain {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wraps `connection` so that it shuts down gracefully once [`Drain::start`] runs.
    pub fn watch<C: GracefulConnection>(&self, connection: C) -> Watched<C> {
        Watched {
            connection,
            // Created now, so a `notify_waiters` before its first poll still counts
            // (tokio guarantees that for a `Notified` that already exists).
            signal: self.notify.clone().notified_owned(),
            draining: self.draining.clone(),
            registered: false,
            shutting_down: false,
        }
    }

    /// Tells every watched connection to finish and close.
    pub fn start(&self) {
        // The flag first: a woken connection must find it set.
        self.draining.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

pin_project! {
    /// A connection that shuts down gracefully when its [`Drain`] starts.
    pub struct Watched<C> {
        #[pin]
        connection: C,
        #[pin]
        signal: OwnedNotified,
        draining: Arc<AtomicBool>,
        registered: bool,
        shutting_down: bool,
    }
}

impl<C: GracefulConnection> Future for Watched<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if !*this.shutting_down {
            if !*this.registered {
                // Leaves this task's waker with the `Notify`. Its result does not matter:
                // the flag below says whether draining has started.
                let _ = this.signal.as_mut().poll(cx);
                *this.registered = true;
            }
            if this.draining.load(Ordering::Acquire) {
                this.connection.as_mut().graceful_shutdown();
                *this.shutting_down = true;
            }
        }
        this.connection.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Tells the test the first request reached the handler, then holds it until released.
    type Gate = (
        tokio::sync::oneshot::Sender<()>,
        tokio::sync::oneshot::Receiver<()>,
    );

    /// Serves one connection behind `drain` (its first request held at `gate`, if any);
    /// returns the client side and the server task.
    async fn one_connection(
        drain: &Drain,
        gate: Option<Gate>,
    ) -> (tokio::net::TcpStream, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = tokio::net::TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (stream, _) = listener.accept().await.expect("accept");
        let gate = std::sync::Mutex::new(gate);
        let service = service_fn(move |_| {
            let first = gate.lock().expect("lock").take();
            async move {
                if let Some((started, released)) = first {
                    let _ = started.send(());
                    let _ = released.await;
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("ok"))))
            }
        });
        let connection = auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let watched = drain.watch(connection);
        let server = tokio::spawn(async move {
            let _ = watched.await;
        });
        (client, server)
    }

    async fn read_some(client: &mut tokio::net::TcpStream) -> usize {
        let mut buf = [0u8; 1024];
        // A guard against a hang, not a timing assertion.
        tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf))
            .await
            .expect("the server answered or closed in time")
            .expect("read")
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_closes_when_draining_starts() {
        let drain = Drain::new();
        let (mut client, server) = one_connection(&drain, None).await;
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
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
    async fn a_request_in_flight_when_draining_starts_is_answered_then_the_connection_closes() {
        let drain = Drain::new();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (started, in_handler) = tokio::sync::oneshot::channel::<()>();
        let (mut client, server) = one_connection(&drain, Some((started, released))).await;
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        in_handler.await.expect("the request reached the handler");
        drain.start();
        release.send(()).expect("handler waiting");
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut response))
            .await
            .expect("closed in time")
            .expect("read");
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            response.ends_with("ok"),
            "answered, then closed: {response}"
        );
        server.await.expect("no panic");
    }
}
