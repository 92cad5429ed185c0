//! The test harness: a real server on 127.0.0.1:0 over a real (temporary) redb store,
//! wrapped in a store that counts reads and can be slowed down or broken on demand.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use shortener::config::Settings;
use shortener::service::LinkService;
use shortener::startup::Application;
use shortener_core::access::{KeyRecord, KeyStore};
use shortener_core::aggregate::{BatchAggregate, Counts};
use shortener_core::stats::{Footprint, LinkStats, StatsQuery, StatsStore};
use shortener_core::{InsertOutcome, Link, LinkStore, ListPage, Owner, ShortCode, StoreError};
use shortener_redb::RedbStore;
use tokio::sync::oneshot;

#[path = "../support/prometheus.rs"]
mod prometheus;
use prometheus::metric_value;
#[cfg(feature = "redis")]
pub use shortener_testkit::redis;

/// A real store with knobs: counts `get`s, optionally sleeps in `get`, optionally fails.
pub struct ProbeStore {
    inner: RedbStore,
    pub gets: AtomicUsize,
    pub get_delay_ms: AtomicU64,
    pub failing: AtomicBool,
    /// The next N inserts report the code as taken, as if a generated code collided.
    pub collide_next: AtomicUsize,
    /// Sleeps in `apply`, to hold the click batcher in a flush.
    pub apply_delay_ms: AtomicU64,
    /// Calls to `list` and to `totals` (the N+1 test counts them).
    pub lists: AtomicUsize,
    pub totals_calls: AtomicUsize,
}

impl ProbeStore {
    /// Bulk-inserts links straight into the store (`RedbStore::import`), for tests that
    /// need thousands of them: through the API each would cost an fsync.
    pub async fn seed(&self, links: Vec<Link>) -> usize {
        self.inner.import(links).await.expect("import")
    }

    /// Stores `value` under `code` unchecked (`RedbStore::put_raw`): an undecodable row.
    pub async fn put_raw(&self, code: &str, value: &[u8]) -> Result<(), StoreError> {
        self.inner.put_raw(code, value).await
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::backend("injected failure"));
        }
        Ok(())
    }
}

#[async_trait]
impl KeyStore for ProbeStore {
    async fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert_key(key).await
    }

    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.check()?;
        self.inner.get_key(id).await
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list_keys().await
    }

    async fn revoke_key(&self, id: &str, at: time::OffsetDateTime) -> Result<bool, StoreError> {
        self.inner.revoke_key(id, at).await
    }
}

#[async_trait]
impl LinkStore for ProbeStore {
    async fn insert_if_absent(&self, link: &Link) -> Result<InsertOutcome, StoreError> {
        self.check()?;
        let collide = self
            .collide_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if collide.is_ok() {
            return Ok(InsertOutcome::AlreadyExists);
        }
        self.inner.insert_if_absent(link).await
    }

    async fn get(&self, code: &ShortCode) -> Result<Option<Link>, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        let delay = self.get_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.check()?;
        self.inner.get(code).await
    }

    async fn delete(&self, code: &ShortCode) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete(code).await
    }

    async fn list(
        &self,
        after: Option<ShortCode>,
        limit: usize,
        owner: Option<&Owner>,
    ) -> Result<ListPage, StoreError> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.list(after, limit, owner).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.check()?;
        self.inner.ping().await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}

#[async_trait]
impl StatsStore for ProbeStore {
    async fn apply(&self, batch: Arc<BatchAggregate>) -> Result<(), StoreError> {
        let delay = self.apply_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.check()?;
        self.inner.apply(batch).await
    }

    async fn totals(&self, code: &ShortCode) -> Result<Counts, StoreError> {
        self.totals_calls.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.totals(code).await
    }

    async fn link_stats(
        &self,
        code: &ShortCode,
        query: StatsQuery,
    ) -> Result<LinkStats, StoreError> {
        self.check()?;
        self.inner.link_stats(code, query).await
    }

    async fn applied(&self, source: &str) -> Result<Option<u64>, StoreError> {
        self.inner.applied(source).await
    }

    async fn footprint(&self) -> Result<Footprint, StoreError> {
        self.inner.footprint().await
    }
}

/// A running server and a client for it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub client: reqwest::Client,
    pub store: Arc<ProbeStore>,
    pub service: Arc<LinkService>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _dir: Arc<tempfile::TempDir>,
}

/// Starts a server on the default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server after `configure` adjusted the settings.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        shortener::telemetry::init("debug").expect("a valid filter");
    }
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let settings = test_settings(&dir, configure);
    let store = Arc::new(ProbeStore {
        inner: RedbStore::open(&settings.store.path).expect("open store"),
        gets: AtomicUsize::new(0),
        get_delay_ms: AtomicU64::new(0),
        failing: AtomicBool::new(false),
        collide_next: AtomicUsize::new(0),
        apply_delay_ms: AtomicU64::new(0),
        lists: AtomicUsize::new(0),
        totals_calls: AtomicUsize::new(0),
    });
    start(settings, store, dir).await
}

/// Two instances sharing one store, as behind a load balancer (each has its own L1).
#[cfg(feature = "redis")]
pub async fn spawn_pair_with(configure: impl Fn(&mut Settings)) -> (TestApp, TestApp) {
    let a = spawn_app_with(&configure).await;
    let settings = test_settings(&a._dir, &configure);
    let b = start(settings, a.store.clone(), a._dir.clone()).await;
    (a, b)
}

fn test_settings(dir: &tempfile::TempDir, configure: impl FnOnce(&mut Settings)) -> Settings {
    let mut settings = Settings::from_defaults().expect("defaults");
    settings.http.listen = "127.0.0.1:0".parse().expect("addr");
    settings.admin.listen = "127.0.0.1:0".parse().expect("addr");
    settings.store.path = dir.path().join("links.redb");
    // Most tests are about something else than keys and limits: open mode (loopback)
    // and no rate limits, unless a test turns them on (tests/api/access.rs does).
    settings.auth.mode = shortener::config::AuthMode::Open;
    settings.auth.bootstrap_key_file = dir.path().join("admin.key").display().to_string();
    settings.limits.enabled = false;
    configure(&mut settings);
    settings.validate().expect("test settings are valid");
    settings
}

async fn start(settings: Settings, store: Arc<ProbeStore>, dir: Arc<tempfile::TempDir>) -> TestApp {
    let app = Application::build_with_stores(settings, store.clone(), store.clone(), store.clone())
        .await
        .expect("build");
    let (addr, admin_addr, service) = (app.public_addr(), app.admin_addr(), app.service());
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
    });
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    TestApp {
        addr,
        admin_addr,
        client,
        store,
        service,
        shutdown: Some(tx),
        server: Some(server),
        _dir: dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The directory of the test's store (and of its bootstrap key file).
    pub fn store_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// The admin key the server wrote at its first start (`auth.mode = "keys"`).
    pub fn admin_key(&self) -> String {
        let path = self.store_dir().join("admin.key");
        let text = std::fs::read_to_string(&path).expect("the bootstrap key file");
        text.trim().to_owned()
    }

    /// `POST /api/v1/links` with a JSON body.
    pub async fn create(&self, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/links"))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    /// Creates a link and returns its code, asserting 201.
    pub async fn create_ok(&self, body: Value) -> String {
        let response = self.create(body).await;
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        let body: Value = response.json().await.expect("json");
        body["code"].as_str().expect("code").to_owned()
    }

    /// Creates `n` links to distinct targets and returns their codes.
    #[cfg(feature = "redis")]
    pub async fn create_links(&self, n: usize) -> Vec<String> {
        let mut codes = Vec::with_capacity(n);
        for i in 0..n {
            codes.push(
                self.create_ok(link(&format!("https://example.com/{i}")))
                    .await,
            );
        }
        codes
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// A client that speaks HTTP/2 without upgrade (prior knowledge), not following redirects.
    pub fn h2_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .http2_prior_knowledge()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    /// The Prometheus text from the admin listener.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.admin_addr);
        self.client
            .get(url)
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text")
    }

    /// Polls the link's click total until it reaches `expected` (the batcher flushes on
    /// its interval); panics after 10 s. Returns the last link JSON.
    pub async fn wait_for_clicks(&self, code: &str, expected: u64) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let link: Value = self
                .get(&format!("/api/v1/links/{code}"))
                .await
                .json()
                .await
                .expect("json");
            if link["clicks"].as_u64() == Some(expected) {
                return link;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "clicks stuck at {} (want {expected})",
                link["clicks"]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A metric's value from `/metrics` (0 when absent). `series` is the full series
    /// name with labels, as Prometheus prints it.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }

    pub fn store_gets(&self) -> usize {
        self.store.gets.load(Ordering::SeqCst)
    }

    /// Stops the server and waits for the drain to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Asserts the JSON error envelope and returns its `code`.
pub async fn error_code(response: reqwest::Response) -> String {
    let ct = response.headers().get("content-type").cloned();
    assert_eq!(
        ct.as_ref().and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let body: Value = response.json().await.expect("json error body");
    assert!(body["error"]["message"].is_string(), "{body}");
    body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned()
}

/// A JSON body for a simple create.
pub fn link(url: &str) -> Value {
    json!({ "url": url })
}
