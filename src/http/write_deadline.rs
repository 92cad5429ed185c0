//! The deadline on writing: a connection whose client stops reading is closed once a
//! write has made no progress for `http.write_timeout_ms`.
//!
//! **Why.** Every other state of a connection has a deadline (see `connection`), but a
//! response being written had none: a client that pipelines requests and never reads
//! fills its receive buffer and our send buffer, hyper's write returns `Pending`, and
//! the connection (its buffers, its descriptor, its slot under `http.max_connections`)
//! was held for as long as the client cared to wait: 50 connections for 120 s in an
//! attack run, until the attacker gave up. HTTP/2 had a bound only by accident (the
//! keep-alive PING goes unanswered).
//!
//! **How.** [`WriteDeadline`] wraps the socket under hyper. A write that returns `Pending`
//! arms a timer (the first time, allocated; afterwards reset); a write that makes
//! progress disarms it. If the timer fires while the write is still blocked, the write
//! fails with `TimedOut`, hyper ends the connection with that error, and the socket is
//! closed (counted as `shortener_http_connections_closed_total{reason="write_timeout"}`).
//! As nginx's `send_timeout`, it bounds the time between two writes that make progress,
//! not the whole response: a slow reader that keeps reading is never cut.
//!
//! **Cost on the hot path.** A write the kernel takes at once (every cached redirect's)
//! costs one branch on a flag; no timer is touched and nothing is allocated until a
//! write actually blocks.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::metrics::HTTP_CONNECTIONS_CLOSED;

pin_project! {
    /// `io` whose writes fail with `TimedOut` after `timeout` without progress.
    pub struct WriteDeadline<T> {
        #[pin]
        io: T,
        timeout: Duration,
        // Allocated the first time a write blocks, then reused.
        timer: Option<Pin<Box<Sleep>>>,
        // A write is blocked and `timer` runs for it.
        armed: bool,
    }
}

impl<T> WriteDeadline<T> {
    /// Wraps `io`; a blocked write may wait at most `timeout` for progress.
    pub fn new(io: T, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            timer: None,
            armed: false,
        }
    }
}

/// What a write's `poll` says, with the deadline applied.
fn deadline<R>(
    result: Poll<io::Result<R>>,
    cx: &mut Context<'_>,
    timeout: Duration,
    timer: &mut Option<Pin<Box<Sleep>>>,
    armed: &mut bool,
) -> Poll<io::Result<R>> {
    if result.is_ready() {
        // Progress (or a real error): the deadline starts again at the next block.
        *armed = false;
        return result;
    }
    let timer = match timer {
        Some(timer) if *armed => timer,
        Some(timer) => {
            timer.as_mut().reset(Instant::now() + timeout);
            timer
        }
        None => timer.insert(Box::pin(tokio::time::sleep(timeout))),
    };
    *armed = true;
    // Polling leaves this task's waker with the timer: the task is woken when it
    // fires, hyper writes again, and this returns the error.
    if timer.as_mut().poll(cx).is_ready() {
        metrics::counter!(HTTP_CONNECTIONS_CLOSED, "reason" => "write_timeout").increment(1);
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read nothing of the response within http.write_timeout_ms",
        )));
    }
    Poll::Pending
}

impl<T: AsyncRead> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.io.poll_write(cx, buf);
        deadline(result, cx, *this.timeout, this.timer, this.armed)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.io.poll_write_vectored(cx, bufs);
        deadline(result, cx, *this.timeout, this.timer, this.armed)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let result = this.io.poll_flush(cx);
        deadline(result, cx, *this.timeout, this.timer, this.armed)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let result = this.io.poll_shutdown(cx);
        deadline(result, cx, *this.timeout, this.timer, this.armed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_write_nobody_reads_fails_at_the_deadline() {
        // A pipe of 64 bytes that nobody reads: the second write blocks for good.
        let (client, _server) = tokio::io::duplex(64);
        let mut io = WriteDeadline::new(client, Duration::from_millis(50));
        io.write_all(&[0; 64]).await.expect("fits the buffer");
        let error = tokio::time::timeout(Duration::from_secs(10), io.write_all(&[0; 64]))
            .await
            .expect("not a hang")
            .expect_err("the deadline fails the write");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_never_cut() {
        use tokio::io::AsyncReadExt;
        let (client, mut server) = tokio::io::duplex(16);
        let mut io = WriteDeadline::new(client, Duration::from_millis(100));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let mut total = 0;
            // 16 bytes every 60 ms: each blocked write progresses within its 100 ms.
            while total < 1024 {
                tokio::time::sleep(Duration::from_millis(60)).await;
                total += server.read(&mut buf).await.expect("read");
            }
            total
        });
        io.write_all(&[7; 1024])
            .await
            .expect("progress keeps the deadline away");
        assert_eq!(reader.await.expect("reader"), 1024);
    }
}
