//! Building and running the application, in a fixed order.
//!
//! [`Application::build`] does everything that can fail because of configuration or the
//! environment (install metrics, open the store, bind both listeners) and logs every
//! bound address; binding port 0 is supported so tests run many servers side by side.
//! [`Application::run_until_stopped`] serves until the shutdown future resolves, drains,
//! and closes the store last, after no request can touch it any more.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use metrics_exporter_prometheus::{BuildError, PrometheusHandle};
use shortener_core::store::redb::RedbStore;
use shortener_core::{LinkStore, StoreError};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{ConfigError, Settings, StoreBackend};
use crate::http::app::{App, AppState};
use crate::http::{admin, middleware, server};
use crate::service::LinkService;

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration is inconsistent.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error("cannot open the link store: {0}")]
    Store(#[from] StoreError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from config.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The metrics recorder could not be installed.
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(#[from] BuildError),
}

/// A built, bound, not yet running application.
pub struct Application {
    settings: Settings,
    public: TcpListener,
    admin: TcpListener,
    service: Arc<LinkService>,
    metrics: PrometheusHandle,
}

impl Application {
    /// Opens the configured store, then builds as [`Application::build_with_store`].
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let store: Arc<dyn LinkStore> = match settings.store.backend {
            StoreBackend::Embedded => {
                let path = settings.store.path.clone();
                let store = tokio::task::spawn_blocking(move || RedbStore::open(&path))
                    .await
                    .map_err(|e| StoreError::Backend(e.to_string()))??;
                tracing::info!(path = %settings.store.path.display(), "embedded store opened");
                Arc::new(store)
            }
        };
        Self::build_with_store(settings, store).await
    }

    /// Builds around an already opened store (tests inject instrumented stores here).
    pub async fn build_with_store(
        settings: Settings,
        store: Arc<dyn LinkStore>,
    ) -> Result<Self, StartupError> {
        // Metrics first: every component resolves its metric handles at construction.
        let metrics = crate::metrics::install()?;
        let service = Arc::new(LinkService::new(&settings, store)?);
        let public = bind(settings.http.listen).await?;
        let admin = bind(settings.admin.listen).await?;
        tracing::info!(addr = %local_addr(&public), "public listener bound");
        tracing::info!(addr = %local_addr(&admin), "admin listener bound (GET /metrics)");
        Ok(Self {
            settings,
            public,
            admin,
            service,
            metrics,
        })
    }

    /// The bound public address (the real port when configured with port 0).
    pub fn public_addr(&self) -> SocketAddr {
        local_addr(&self.public)
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        local_addr(&self.admin)
    }

    /// The application service (for tests and benches).
    pub fn service(&self) -> Arc<LinkService> {
        self.service.clone()
    }

    /// Serves until `shutdown` resolves; drains in-flight requests, then closes the store.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), StartupError> {
        let Self {
            settings,
            public,
            admin,
            service,
            metrics,
        } = self;
        let (stop_admin, admin_stopped) = watch::channel(());
        let mut admin_stopped_rx = admin_stopped.clone();
        let admin_task = tokio::spawn(admin::serve(admin, metrics, async move {
            let _ = admin_stopped_rx.changed().await;
        }));

        let app = App::new(AppState {
            service: service.clone(),
            forward_query: settings.links.forward_query,
            public_base_url: public_base_url(&settings),
        });
        let stack = middleware::stack(app, &settings.http);
        server::serve(public, stack, &settings.http, shutdown).await;

        // The admin listener outlives the drain so the drain itself can be observed.
        let _ = stop_admin.send(());
        let _ = admin_task.await;
        service
            .close()
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        tracing::info!("store closed; bye");
        Ok(())
    }
}

fn public_base_url(settings: &Settings) -> Option<Arc<str>> {
    let base = settings.http.public_base_url.trim_end_matches('/');
    (!base.is_empty()).then(|| Arc::from(base))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound TCP listener has a local address")
}
