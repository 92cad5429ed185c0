//! The admin listener: `GET /metrics` in Prometheus text format, and `GET /storage`:
//! the bytes and rows each statistics table occupies, as JSON (a full metadata scan, so
//! it is asked for, not scraped; the long-tail benchmark divides it by the clicks).
//!
//! A separate port so that metrics (which reveal traffic levels and internals) are never
//! reachable through the public load balancer, and so that a saturated public listener
//! (shedding load) can still be scraped: that is exactly when you need the numbers.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use shortener_core::stats::StatsStore;
use tokio::net::TcpListener;

use super::error::ApiError;

/// Serves `/metrics` until `shutdown` resolves. Connections are not drained: a scrape
/// cut short by shutdown is retried by Prometheus.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    stats: Arc<dyn StatsStore>,
    shutdown: impl Future<Output = ()>,
) {
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
        let (handle, stats) = (handle.clone(), stats.clone());
        let service = service_fn(move |req| {
            let (handle, stats) = (handle.clone(), stats.clone());
            async move { Ok::<_, Infallible>(answer(&handle, &*stats, &req).await) }
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

async fn answer(
    handle: &PrometheusHandle,
    stats: &dyn StatsStore,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let mut response = Response::new(Full::new(Bytes::from(handle.render())));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        (&Method::GET, "/storage") => match stats.footprint().await {
            Ok(footprint) => {
                let body = serde_json::json!({
                    "stats_bytes": footprint.bytes(),
                    "tables": footprint.tables,
                });
                let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response
            }
            Err(e) => ApiError::from(crate::service::ServiceError::from(e)).into_response(),
        },
        (_, "/metrics" | "/storage") => ApiError::method_not_allowed("GET").into_response(),
        _ => ApiError::no_route().into_response(),
    }
}
