//! The plain design: what the service does, in the plainest way that works.
//!
//! A hyper server, the links in a `HashMap` behind an `RwLock`, and a channel that carries
//! each click to a task that counts them. `POST /api/v1/links` makes a link (a random or
//! a chosen code), `GET /{code}` redirects and sends the click down the channel,
//! `GET /api/v1/links/{code}/stats` reads the count, `GET /healthz` says it is alive.
//!
//! It is correct for one process and a demo's traffic, and it is where the course starts:
//! every refinement in `src/` answers something this program does not do or does slowly,
//! and docs/fast-path.md names each one with its measurement. What it leaves out, on
//! purpose:
//! - nothing survives a restart (the service commits each create durably, in groups);
//! - every redirect takes a lock shared by all threads (the service reads a per-thread
//!   table, then moka, without a global lock);
//! - every redirect allocates (the code `String`, the click, the response headers; the
//!   service answers a cached link from precomputed `HeaderValue`s);
//! - the click channel is unbounded: a slow counter grows memory without limit (the
//!   service drops and counts a click when its bounded queue is full);
//! - no deadlines, no admission limits, no validation of the target beyond its scheme, no
//!   keys, no metrics.
//!
//! Run: `cargo run --release --example plain` (listens on `APP__HTTP__LISTEN`, default
//! 127.0.0.1:8080, so the load scripts drive it like the service:
//! `SERVICE_BIN=target/release/examples/plain scripts/bench-redirect.sh`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rand::RngExt;
use serde::Deserialize;
use tokio::sync::mpsc;

/// What a create asks for.
#[derive(Deserialize)]
struct NewLink {
    url: String,
    alias: Option<String>,
}

/// Everything the handlers share.
struct State {
    /// code -> target URL.
    links: RwLock<HashMap<String, String>>,
    /// code -> clicks counted so far (written by the counting task only).
    clicks: RwLock<HashMap<String, u64>>,
    /// Where a redirect sends its click.
    click_tx: mpsc::UnboundedSender<String>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::var("APP__HTTP__LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:8080".into())
        .parse()
        .map_err(std::io::Error::other)?;
    let (click_tx, mut click_rx) = mpsc::unbounded_channel::<String>();
    let state = Arc::new(State {
        links: RwLock::new(HashMap::new()),
        clicks: RwLock::new(HashMap::new()),
        click_tx,
    });

    // The click counter: one task, one click at a time.
    let counter = state.clone();
    tokio::spawn(async move {
        while let Some(code) = click_rx.recv().await {
            if let Ok(mut clicks) = counter.clicks.write() {
                *clicks.entry(code).or_insert(0) += 1;
            }
        }
    });

    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("plain: listening on {addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(state.clone(), req));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let response = match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => json(StatusCode::OK, r#"{"status":"ok"}"#.into()),
        (&Method::POST, "/api/v1/links") => create(&state, req).await,
        (&Method::GET, path) if path.starts_with("/api/v1/links/") && path.ends_with("/stats") => {
            let code = &path["/api/v1/links/".len()..path.len() - "/stats".len()];
            stats(&state, code)
        }
        (&Method::GET, path) => redirect(&state, &path[1..]),
        _ => error(StatusCode::NOT_FOUND, "not_found"),
    };
    Ok(response)
}

/// `POST /api/v1/links`: 201 with the code, 409 if the alias is taken.
async fn create(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Ok(body) = req.into_body().collect().await else {
        return error(StatusCode::BAD_REQUEST, "bad_body");
    };
    let Ok(new) = serde_json::from_slice::<NewLink>(&body.to_bytes()) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    };
    if !(new.url.starts_with("http://") || new.url.starts_with("https://")) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_url");
    }
    let Ok(mut links) = state.links.write() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal");
    };
    let code = match new.alias {
        Some(alias) if links.contains_key(&alias) => {
            return error(StatusCode::CONFLICT, "alias_taken");
        }
        Some(alias) => alias,
        None => loop {
            let code = random_code();
            if !links.contains_key(&code) {
                break code;
            }
        },
    };
    links.insert(code.clone(), new.url.clone());
    let body = serde_json::json!({"code": code, "url": new.url}).to_string();
    json(StatusCode::CREATED, body)
}

/// `GET /{code}`: 302 to the target, and the click down the channel.
fn redirect(state: &State, code: &str) -> Response<Full<Bytes>> {
    let target = match state.links.read() {
        Ok(links) => links.get(code).cloned(),
        Err(_) => None,
    };
    let Some(target) = target else {
        return error(StatusCode::NOT_FOUND, "not_found");
    };
    let _ = state.click_tx.send(code.to_owned());
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(location) = target.parse() {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

/// `GET /api/v1/links/{code}/stats`: the clicks counted so far.
fn stats(state: &State, code: &str) -> Response<Full<Bytes>> {
    let exists = state
        .links
        .read()
        .is_ok_and(|links| links.contains_key(code));
    if !exists {
        return error(StatusCode::NOT_FOUND, "not_found");
    }
    let clicks = state
        .clicks
        .read()
        .map(|clicks| clicks.get(code).copied().unwrap_or(0))
        .unwrap_or(0);
    json(
        StatusCode::OK,
        format!(r#"{{"code":"{code}","clicks":{clicks}}}"#),
    )
}

/// Seven random letters and digits.
fn random_code() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..7)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn error(status: StatusCode, code: &str) -> Response<Full<Bytes>> {
    json(status, format!(r#"{{"error":{{"code":"{code}"}}}}"#))
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
