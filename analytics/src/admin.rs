//! The consumer's admin listener: `GET /metrics` (Prometheus) and `GET /readyz` (200 while
//! it polls and writes, 503 with the reason otherwise: see [`crate::health`]).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::health::Health;

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: PrometheusHandle,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
) {
    let answer = move |method: Method, path: String| {
        let response = answer(&metrics, &health, &method, &path);
        async move { response }
    };
    shortener_process::admin::serve(listener, answer, shutdown).await;
}

fn answer(
    metrics: &PrometheusHandle,
    health: &Health,
    method: &Method,
    path: &str,
) -> Response<Full<Bytes>> {
    let (status, body) = match (method, path) {
        (&Method::GET, "/metrics") => (StatusCode::OK, metrics.render()),
        (&Method::GET, "/readyz") => match health.problem() {
            None => (StatusCode::OK, "{\"status\":\"ready\"}\n".to_owned()),
            Some(problem) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{{\"status\":\"not_ready\",\"reason\":\"{problem}\"}}\n"),
            ),
        },
        _ => (
            StatusCode::NOT_FOUND,
            "{\"error\":\"not_found\"}\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
