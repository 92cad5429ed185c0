//! The redirect handler on a cache hit, in process (no socket): the cost of our code on
//! the hot path, without the kernel and hyper's connection handling.
//!
//! - `redirect/resolve`: the service call alone (validation, cache hit, expiry check).
//! - `redirect/app`: the router and handler alone (cache lookup, response building).
//! - `redirect/stack`: the full tower stack around it (metrics, request id, tracing,
//!   load shedding, deadline, body limit), i.e. what every real request goes through.
//! - `redirect/stack_404`: an unknown code answered from the negative cache.
//! - `redirect/stack_with_click`: the full stack with click recording on (the hot-path
//!   share of the click pipeline: building the `RawClick` and `try_send`; the queue is
//!   drained outside the timed section).
//!
//! Request construction is excluded (`iter_batched`); dropping the response is included.
//!
//! Run: `cargo bench --bench redirect`.

use std::sync::Arc;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::Request;
use http_body_util::Empty;
use shortener::clicks::{Capture, ClickRecorder};
use shortener::config::Settings;
use shortener::http::app::{HandlerState, Handlers};
use shortener::http::middleware::Stack;
use shortener::service::keys::{Caller, Keys};
use shortener::service::{LinkService, NewLink};
use shortener_core::{Alias, RedirectKind, TargetUrl};
use shortener_redb::RedbStore;
use tower::ServiceExt;

/// Key checks over the bench's store (redirects never ask for one).
fn keys(store: &Arc<RedbStore>) -> Arc<Keys> {
    let settings = Settings::from_defaults().expect("defaults");
    Arc::new(Keys::new(&settings.auth, store.clone()))
}

fn redirect(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::from_defaults().expect("defaults");
    settings.store.path = dir.path().join("links.redb");
    shortener::metrics::install().expect("metrics recorder");

    let store = Arc::new(RedbStore::open(&settings.store.path).expect("store"));
    let (service, app, stack) = runtime.block_on(async {
        let service =
            Arc::new(LinkService::new(&settings, store.clone(), store.clone()).expect("service"));
        service
            .create(
                NewLink {
                    target: TargetUrl::parse("https://example.com/landing?campaign=bench")
                        .expect("url"),
                    alias: Some(Alias::parse("bench01").expect("alias")),
                    expires_at: None,
                    redirect: RedirectKind::Found,
                    max_clicks: None,
                },
                &Caller::open(),
            )
            .await
            .expect("create");
        let app = Handlers::new(HandlerState::new(
            &settings,
            service.clone(),
            keys(&store),
            None,
        ));
        let stack = Stack::new(&settings.http).service::<Empty<Bytes>>(app.clone());
        // Warm the cache (and the negative entry) so the loop measures hits only.
        for path in ["/bench01", "/unknown"] {
            let response = stack
                .clone()
                .oneshot(request(path))
                .await
                .expect("infallible");
            assert!(response.status().is_redirection() || response.status() == 404);
        }
        (service, app, stack)
    });

    c.bench_function("redirect/resolve", |b| {
        b.to_async(&runtime)
            .iter(|| service.resolve("bench01", true))
    });
    c.bench_function("redirect/app", |b| {
        b.to_async(&runtime).iter_batched(
            || request("/bench01"),
            |req| app.clone().oneshot(req),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("redirect/stack", |b| {
        b.to_async(&runtime).iter_batched(
            || request("/bench01"),
            |req| stack.clone().oneshot(req),
            BatchSize::SmallInput,
        )
    });
    let (recorder, queue) = ClickRecorder::new(1 << 20, Capture::default());
    let queue = std::sync::Mutex::new(queue);
    let clicking = runtime.block_on(async {
        let app = Handlers::new(HandlerState::new(
            &settings,
            service.clone(),
            keys(&store),
            Some(Arc::new(recorder)),
        ));
        Stack::new(&settings.http).service::<Empty<Bytes>>(app)
    });
    c.bench_function("redirect/stack_with_click", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                // Untimed: empty the queue so every timed send finds room.
                let mut queue = queue.lock().expect("lock");
                while queue.try_recv().is_ok() {}
                request("/bench01")
            },
            |req| clicking.clone().oneshot(req),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("redirect/stack_404", |b| {
        b.to_async(&runtime).iter_batched(
            || request("/unknown"),
            |req| stack.clone().oneshot(req),
            BatchSize::SmallInput,
        )
    });
}

fn request(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header("host", "sho.rt")
        .body(Empty::new())
        .expect("request")
}

criterion_group!(benches, redirect);
criterion_main!(benches);
