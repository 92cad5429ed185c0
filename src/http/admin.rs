//! The admin listener: `GET /metrics` in Prometheus text format, and `GET /storage`:
//! the bytes and rows each statistics table occupies, as JSON (a full metadata scan, so
//! it is asked for, not scraped; the long-tail benchmark divides it by the clicks).
//!
//! A separate port so that metrics (which reveal traffic levels and internals) are never
//! reachable through the public load balancer, and so that a saturated public listener
//! (shedding load) can still be scraped: that is exactly when you need the numbers.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Response};
use http_body_util::Full;
use metrics_exporter_prometheus::PrometheusHandle;
use shortener_core::stats::StatsStore;
use tokio::net::TcpListener;

use super::error::ApiError;

/// Serves `/metrics` and `/storage` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    stats: Arc<dyn StatsStore>,
    shutdown: impl Future<Output = ()>,
) {
    let answer = move |method: Method, path: String| {
        let (handle, stats) = (handle.clone(), stats.clone());
        async move { answer(&handle, &*stats, &method, &path).await }
    };
    shortener_process::admin::serve(listener, answer, shutdown).await;
}

async fn answer(
    handle: &PrometheusHandle,
    stats: &dyn StatsStore,
    method: &Method,
    path: &str,
) -> Response<Full<Bytes>> {
    match (method, path) {
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
