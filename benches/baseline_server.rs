//! The physical baseline for the redirect benchmark: a bare hyper server that answers
//! every request with a fixed `301` and a `Location` header, nothing else.
//!
//! It uses hyper-util's auto builder like the service (HTTP/1 + HTTP/2 auto-detection, the
//! same timer; the service only adds header limits, which cost nothing on small requests)
//! so the ratio service/baseline measures *our* code (tower stack, routing, cache, click
//! recording, metrics), not a difference in hyper configuration.
//!
//! Run: `cargo run --release --example baseline-server -- 127.0.0.1:8090`
//! (scripts/bench-redirect.sh does this, pinned to one CPU).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::header::LOCATION;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into())
        .parse()
        .map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let location = HeaderValue::from_static("https://example.com/landing?campaign=bench");
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let location = location.clone();
        let service = service_fn(move |_req| {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
            response.headers_mut().insert(LOCATION, location.clone());
            std::future::ready(Ok::<_, Infallible>(response))
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(connection);
    }
}
