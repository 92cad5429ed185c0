//! JSON bodies for the answers hyper writes itself: 400 and 431 to a request it could not
//! parse.
//!
//! **Why.** Every error this service answers is JSON (`http::error`), except two that
//! never reach it: when a request head is malformed (400), or has more or larger header
//! fields than `http.max_headers` / `http.max_header_bytes` allow (431), hyper answers on
//! its own, with `content-length: 0`, and closes the connection. hyper has no hook for
//! that answer, so a client that logs error bodies saw an empty one, for exactly the
//! requests it most needs to fix.
//!
//! **How.** [`ParseErrorBodies`] wraps the socket under hyper and recognises hyper's
//! answer by its shape: one write holding a whole head, `HTTP/1.1 400 ` or
//! `HTTP/1.1 431 `, with `content-length: 0`. Nothing the service writes has that
//! shape: its 400s carry a JSON body, and it never answers 431. The write is replaced by
//! the same head (hyper's `date` and `connection: close` kept) with a JSON
//! `content-type`, the body's length, and the body; hyper is told its bytes were
//! written. HTTP/2 reports such errors as stream resets, which carry no body.
//!
//! **Cost on the hot path.** One comparison of the first ten bytes of each write.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The body of a 400 for a request hyper could not parse.
const BAD_REQUEST: &[u8] =
    b"{\"error\":{\"code\":\"malformed_request\",\"message\":\"the request is not valid HTTP\"}}\n";
/// The body of a 431.
const HEADERS_TOO_LARGE: &[u8] = b"{\"error\":{\"code\":\"headers_too_large\",\"message\":\"too many header fields, or too large (see http.max_headers and http.max_header_bytes)\"}}\n";

/// What every write is compared with first; a response of the service's own starts with
/// `HTTP/1.1 ` too, but almost never with a 4xx.
const CLIENT_ERROR: &[u8] = b"HTTP/1.1 4";
/// The header hyper writes in its own error answers.
const EMPTY_BODY: &[u8] = b"\r\ncontent-length: 0\r\n";

pin_project! {
    /// `io` whose writes of hyper's own 400 and 431 answers carry a JSON body.
    pub struct ParseErrorBodies<T> {
        #[pin]
        io: T,
        // The replacement being written, and how much of it is written.
        replacing: Option<(Vec<u8>, usize)>,
    }
}

impl<T> ParseErrorBodies<T> {
    /// Wraps `io`.
    pub fn new(io: T) -> Self {
        Self {
            io,
            replacing: None,
        }
    }
}

/// The answer to write instead of `head`, if `head` is hyper's own 400 or 431.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    if !head.starts_with(CLIENT_ERROR) || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let body = match head.get(CLIENT_ERROR.len()..CLIENT_ERROR.len() + 3)? {
        b"00 " => BAD_REQUEST,
        b"31 " => HEADERS_TOO_LARGE,
        _ => return None,
    };
    let at = head
        .windows(EMPTY_BODY.len())
        .position(|window| window == EMPTY_BODY)?;
    let (before, after) = head.split_at(at);
    let after = after.get(EMPTY_BODY.len()..)?;
    let mut answer = Vec::with_capacity(head.len() + body.len() + 48);
    answer.extend_from_slice(before);
    answer.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
    answer.extend_from_slice(body.len().to_string().as_bytes());
    answer.extend_from_slice(b"\r\n");
    answer.extend_from_slice(after);
    answer.extend_from_slice(body);
    Some(answer)
}

impl<T: AsyncWrite> ParseErrorBodies<T> {
    /// Writes `buf`, or its replacement. Either way, `Ready(Ok(buf.len()))` once the
    /// replacement is written whole: hyper retries a pending write with the same bytes,
    /// and the replacement goes on where it stopped.
    fn write_replacing(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
        write: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let mut this = self.project();
        if this.replacing.is_none() {
            match replacement(buf) {
                Some(answer) => *this.replacing = Some((answer, 0)),
                None => return write(this.io, cx),
            }
        }
        while let Some((answer, written)) = this.replacing.as_mut() {
            let Some(rest) = answer.get(*written..).filter(|rest| !rest.is_empty()) else {
                *this.replacing = None;
                break;
            };
            match ready!(this.io.as_mut().poll_write(cx, rest)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => *written += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(buf.len()))
    }
}

impl<T: AsyncRead> AsyncRead for ParseErrorBodies<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for ParseErrorBodies<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_replacing(cx, buf, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper's own answer is a head alone: one slice. Anything else is written as is.
        match bufs {
            [head] => self.write_replacing(cx, head, |io, cx| io.poll_write_vectored(cx, bufs)),
            _ => self.project().io.poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const HYPER_431: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 08:53:15 GMT\r\n\r\n";

    #[test]
    fn hypers_own_answers_get_a_json_body_and_keep_their_headers() {
        let answer = replacement(HYPER_431).expect("replaced");
        let text = String::from_utf8(answer).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(head.contains("\r\ndate: "), "{head}");
        assert!(
            head.contains("\r\ncontent-type: application/json\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}", body.len())),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(json["error"]["code"], "headers_too_large");

        let bad = HYPER_431.to_vec();
        let bad = [b"HTTP/1.1 400 Bad Request".as_slice(), &bad[44..]].concat();
        let text = String::from_utf8(replacement(&bad).expect("replaced")).expect("utf-8");
        assert!(text.contains("malformed_request"), "{text}");
    }

    #[test]
    fn the_services_own_answers_are_left_alone() {
        for head in [
            b"HTTP/1.1 302 Found\r\nlocation: https://example.com/\r\ncontent-length: 0\r\n\r\n"
                .as_slice(),
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 73\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            // A head and its body in one write.
            b"HTTP/1.1 431 X\r\ncontent-length: 0\r\n\r\n{}",
        ] {
            assert!(replacement(head).is_none(), "{}", String::from_utf8_lossy(head));
        }
    }

    #[tokio::test]
    async fn a_replacement_written_in_pieces_arrives_whole() {
        // A pipe of 16 bytes: the replacement needs many writes, each resumed.
        let (client, mut server) = tokio::io::duplex(16);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            server.read_to_end(&mut all).await.expect("read");
            all
        });
        let mut io = ParseErrorBodies::new(client);
        io.write_all(HYPER_431).await.expect("written");
        io.shutdown().await.expect("shut down");
        drop(io);
        let all = reader.await.expect("reader");
        assert_eq!(all, replacement(HYPER_431).expect("replaced"));
    }
}
