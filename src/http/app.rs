//! The innermost tower service: dispatches a request to its handler by route and method.
//!
//! Generic over the request body so benches and unit tests can drive it with an in-memory
//! body; the server hands it hyper's `Incoming` (wrapped by the body-limit layer).
//!
//! **The plain version.** `call` returns `Box::pin(async move { dispatch(&state, req).await })`
//! for every route, the redirect included (`dispatch` would route it to
//! `redirect::redirect`). That is all the router needs to be correct.
//!
//! **Why it is refined.** Boxing a future per redirect is a malloc, a copy of the future
//! and a free, and holding the request inside that future until it is polled kept hyper's
//! read buffer borrowed (see `adapter`). Together with the adapter this took a cached
//! redirect from 17,026 to 15,767 instructions (docs/benchmarks.md, "Counting
//! instructions instead of requests"). A cached link is now answered inside `call`
//! ([`ResponseFuture::Ready`]); only a miss boxes.
//!
//! **The concept.** A `Future` is just a value with a `poll` method: when the answer is
//! known at call time, the future can be that answer, ready on its first poll.

use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, HeaderValue};
use http::{HeaderMap, Method, Request, Response};
use http_body::Body;
use http_body_util::Full;
use ipnet::IpNet;
use shortener_core::Scopes;

use super::error::{ApiError, BoxError, into_logged_response};
use super::router::Route;
use super::{api, keys_api, redirect};
use crate::clicks::ClickRecorder;
use crate::clicks::client_ip::client_ip;
use crate::config::Settings;
use crate::limits::{self, Limits};
use crate::service::LinkService;
use crate::service::keys::Keys;

/// What handlers share: the service and the HTTP-level settings.
pub struct HandlerState {
    /// The application service.
    pub service: Arc<LinkService>,
    /// `links.forward_query`.
    pub forward_query: bool,
    /// `http.public_base_url`, without a trailing slash; `None` = use the Host header.
    pub public_base_url: Option<Arc<str>>,
    /// Where redirects record clicks; `None` when `clicks.enabled` is off.
    pub clicks: Option<Arc<ClickRecorder>>,
    /// `http.body_read_timeout_ms`: the most a request body may take to arrive.
    pub body_read_timeout: Duration,
    /// API keys: who is calling the management API.
    pub keys: Arc<Keys>,
    /// The rate limits of `[limits]`.
    pub limits: Arc<Limits>,
    /// `clicks.trusted_proxies`: whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<[IpNet]>,
}

impl HandlerState {
    /// The handlers' state as `settings` configure it.
    pub fn new(
        settings: &Settings,
        service: Arc<LinkService>,
        keys: Arc<Keys>,
        clicks: Option<Arc<ClickRecorder>>,
    ) -> Self {
        let base = settings.http.public_base_url.trim_end_matches('/');
        Self {
            service,
            forward_query: settings.links.forward_query,
            public_base_url: (!base.is_empty()).then(|| Arc::from(base)),
            clicks,
            body_read_timeout: settings.http.body_read_timeout(),
            keys,
            limits: Arc::new(Limits::new(&settings.limits)),
            trusted_proxies: settings.clicks.trusted_proxies.clone().into(),
        }
    }

    /// The client of a request: the TCP peer, or what a trusted proxy says it is.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let forwarded = headers.get("x-forwarded-for").map(HeaderValue::as_bytes);
        client_ip(peer, forwarded, &self.trusted_proxies)
    }
}

/// The innermost tower service, one per connection: routes each request to its handler.
/// (Named for what it calls; `HandlerState` is what the handlers share, and
/// `startup::Application` the whole built service.) Cloning is an `Arc` bump and a copy
/// of the peer address (hyper clones it per request).
#[derive(Clone)]
pub struct Handlers {
    state: Arc<HandlerState>,
    /// The TCP peer of this connection (the client, unless behind a proxy).
    peer: IpAddr,
}

impl Handlers {
    /// Wraps the shared state; the peer is unspecified until [`Handlers::with_peer`].
    pub fn new(state: HandlerState) -> Self {
        Self {
            state: Arc::new(state),
            peer: IpAddr::from([0, 0, 0, 0]),
        }
    }

    /// The same application for a connection from `peer`.
    pub fn with_peer(&self, peer: IpAddr) -> Self {
        Self {
            state: self.state.clone(),
            peer,
        }
    }
}

impl<B> tower::Service<Request<B>> for Handlers
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let state = self.state.clone();
        // Routed here, before boxing, so each route boxes only its own future. A single
        // `async` block for all routes would be as large as the largest (create, with
        // its body collection), and every redirect would allocate and copy that much.
        let (route, _) = Route::classify(req.uri().path());
        match (route, req.method()) {
            (Route::Redirect, &Method::GET | &Method::HEAD) => {
                // A cached link is answered here and now: no future to allocate, and the
                // request (whose bytes are hyper's read buffer) is released before hyper
                // reads the next one, so the buffer is reused rather than reallocated.
                if let Some(response) =
                    redirect::redirect_now(&state, &redirect_request(&req, self.peer))
                {
                    return ResponseFuture::Ready(Some(response));
                }
                let peer = self.peer;
                ResponseFuture::Boxed(Box::pin(async move {
                    Ok(redirect::redirect(&state, redirect_request(&req, peer)).await)
                }))
            }
            _ => {
                let peer = self.peer;
                ResponseFuture::Boxed(Box::pin(
                    async move { Ok(dispatch(&state, req, peer).await) },
                ))
            }
        }
    }
}

/// The redirect's view of a request that [`Route::classify`] found to be `/{code}`.
fn redirect_request<B>(req: &Request<B>, peer: IpAddr) -> redirect::RedirectRequest<'_> {
    redirect::RedirectRequest {
        code: req.uri().path().strip_prefix('/').unwrap_or_default(),
        query: req.uri().query(),
        headers: req.headers(),
        peer,
        // HEAD is a link checker or a preview probe, not a visit.
        is_click: req.method() == Method::GET,
    }
}

/// A handler's future, boxed (each route's future has its own size).
pub type BoxedHandler =
    Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

/// The future of [`Handlers`]: the response itself when the handler could answer at once,
/// else the handler's boxed future.
pub enum ResponseFuture {
    /// Answered synchronously (taken on the first poll).
    Ready(Option<Response<Full<Bytes>>>),
    /// A handler that has to wait (cache miss, store, JSON API).
    Boxed(BoxedHandler),
}

impl Future for ResponseFuture {
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Ready(response) => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("ResponseFuture polled after completion"),
            },
            Self::Boxed(future) => future.as_mut().poll(cx),
        }
    }
}

/// Every route but the redirect (which [`Handlers::call`] dispatches itself).
async fn dispatch<B>(state: &HandlerState, req: Request<B>, peer: IpAddr) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (route, code) = Route::classify(req.uri().path());
    let probe = matches!(req.method(), &Method::GET | &Method::HEAD);
    let result = match route {
        Route::Redirect => Err(ApiError::method_not_allowed("GET, HEAD")),
        Route::Healthz if probe => Ok(api::healthz()),
        Route::Readyz if probe => api::readyz(state).await,
        Route::OpenApi if probe => Ok(api::openapi()),
        Route::Healthz | Route::Readyz | Route::OpenApi => {
            Err(ApiError::method_not_allowed("GET, HEAD"))
        }
        Route::Unmatched => Err(ApiError::no_route()),
        Route::Links | Route::Link | Route::LinkStats | Route::Keys | Route::Key => {
            let code = code.to_owned();
            management(state, route, &code, req, peer).await
        }
    };
    result.unwrap_or_else(into_logged_response)
}

/// A management operation, and the scope it needs.
#[derive(Clone, Copy)]
enum Operation {
    Create,
    List,
    Get,
    Delete,
    Stats,
    CreateKey,
    ListKeys,
    RevokeKey,
}

impl Operation {
    /// The operation a route and method ask for, or 405 naming what the route takes.
    fn of(route: Route, method: &Method) -> Result<Self, ApiError> {
        Ok(match (route, method) {
            (Route::Links, &Method::POST) => Self::Create,
            (Route::Links, &Method::GET) => Self::List,
            (Route::Links, _) => return Err(ApiError::method_not_allowed("GET, POST")),
            (Route::Link, &Method::GET) => Self::Get,
            (Route::Link, &Method::DELETE) => Self::Delete,
            (Route::Link, _) => return Err(ApiError::method_not_allowed("GET, DELETE")),
            (Route::LinkStats, &Method::GET) => Self::Stats,
            (Route::LinkStats, _) => return Err(ApiError::method_not_allowed("GET")),
            (Route::Keys, &Method::POST) => Self::CreateKey,
            (Route::Keys, &Method::GET) => Self::ListKeys,
            (Route::Keys, _) => return Err(ApiError::method_not_allowed("GET, POST")),
            (Route::Key, &Method::DELETE) => Self::RevokeKey,
            _ => return Err(ApiError::method_not_allowed("DELETE")),
        })
    }

    fn scope(self) -> Scopes {
        match self {
            Self::Create | Self::Delete => Scopes::LINKS_WRITE,
            Self::List | Self::Get => Scopes::LINKS_READ,
            Self::Stats => Scopes::STATS_READ,
            Self::CreateKey | Self::ListKeys | Self::RevokeKey => Scopes::ADMIN,
        }
    }
}

/// The management API: the method, the client's rate, the key, its rate and its scope,
/// in that order (each check cheaper than the next; the store is asked about a key only
/// for a client within its rate), then the handler.
async fn management<B>(
    state: &HandlerState,
    route: Route,
    code: &str,
    req: Request<B>,
    peer: IpAddr,
) -> Result<Response<Full<Bytes>>, ApiError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let operation = Operation::of(route, req.method())?;
    state
        .limits
        .client(limits::Kind::ApiClient, || {
            state.client(peer, req.headers())
        })
        .map_err(ApiError::rate_limited)?;
    let header = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes);
    let caller = state.keys.authenticate(header).await?;
    if let Some(id) = &caller.key_id {
        state.limits.key(id).map_err(ApiError::rate_limited)?;
    }
    if !caller.scopes.allow(operation.scope()) {
        return Err(ApiError::insufficient_scope(operation.scope()));
    }
    let query = req.uri().query();
    match operation {
        Operation::Create => api::create(state, req, &caller).await,
        Operation::List => api::list(state, req.headers(), query, &caller).await,
        Operation::Get => api::get(state, req.headers(), code, &caller).await,
        Operation::Delete => api::delete(state, code, &caller).await,
        Operation::Stats => api::stats(state, code, query, &caller).await,
        Operation::CreateKey => keys_api::create(state, req).await,
        Operation::ListKeys => keys_api::list(state).await,
        Operation::RevokeKey => keys_api::revoke(state, code, &caller).await,
    }
}
