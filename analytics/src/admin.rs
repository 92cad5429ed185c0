//! The consumer's admin listener: `GET /metrics` (Prometheus) and `GET /readyz` (200 while
//! it polls and writes, 503 with the reason otherwise: see [`crate::health`]).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
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
        let (metrics, health) = (metrics.clone(), health.clone());
        let service = service_fn(move |request: Request<hyper::body::Incoming>| {
            let answer = answer(&metrics, &health, request.method(), request.uri().path());
            async move { Ok::<_, Infallible>(answer) }
        });
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
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
