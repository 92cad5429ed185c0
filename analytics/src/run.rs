//! `analytics run`: the settings, the store, the admin listener and the consumer thread,
//! then a graceful stop at SIGINT or SIGTERM (what is held is written before the process
//! leaves the group).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use shortener_config::Settings;
use shortener_core::aggregate::MemoLimits;
use shortener_storage::{OpenError, StoreBackend};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::consumer::{self, ConsumerConfig, ConsumerError};
use crate::health::Health;
use crate::metrics::{CLICK_TO_STATS, Meters, WRITE_CELLS};

/// Why `analytics run` could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The embedded store is one file owned by the service process.
    #[error(
        "store.backend = \"embedded\": the consumer writes to a shared store; set store.backend = \"postgres\" or \"scylla\" (the embedded file belongs to the service)"
    )]
    EmbeddedStore,
    /// The store could not be opened.
    #[error("cannot open the statistics store")]
    Store(#[from] OpenError),
    /// The admin listener could not be bound.
    #[error("cannot bind the admin listener on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The metrics recorder could not be installed.
    #[error("cannot install the metrics recorder")]
    Metrics(#[from] BuildError),
    /// The consumer failed.
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    /// The consumer thread could not be started.
    #[error("cannot start the consumer thread")]
    Spawn(#[source] std::io::Error),
    /// The consumer thread panicked.
    #[error("the consumer thread panicked")]
    Panicked,
}

/// The consumer's settings from the shared tree.
pub fn consumer_config(settings: &Settings) -> ConsumerConfig {
    let a = &settings.analytics;
    ConsumerConfig {
        brokers: settings.kafka.brokers.clone(),
        topic: settings.kafka.topic.clone(),
        dead_letter_topic: settings.kafka.dead_letter_topic.clone(),
        group: a.group.clone(),
        session_timeout: Duration::from_millis(a.session_timeout_ms.get()),
        flush_interval: Duration::from_millis(a.flush_interval_ms.get()),
        max_pending_cells: settings.stats.max_pending_cells.get(),
        memo: MemoLimits {
            agents: settings.stats.agent_memo_entries.get(),
            referrers: settings.stats.referrer_memo_entries.get(),
        },
    }
}

/// Installs the Prometheus recorder; later calls (a second consumer in one test
/// process) get the same handle.
fn install_metrics() -> Result<PrometheusHandle, BuildError> {
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut slot = HANDLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = slot.as_ref() {
        return Ok(handle.clone());
    }
    let handle = build_recorder()?;
    *slot = Some(handle.clone());
    Ok(handle)
}

fn build_recorder() -> Result<PrometheusHandle, BuildError> {
    const SECONDS: &[f64] = &[
        0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
    ];
    // Fine enough to read a p50 and a p99 of the delay the course's SLO is about (2 s).
    const CLICK_TO_STATS_SECONDS: &[f64] = &[
        0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4,
        1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 10.0, 30.0, 60.0,
    ];
    const CELLS: &[f64] = &[1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0];
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)?
        .set_buckets_for_metric(Matcher::Full(CLICK_TO_STATS.into()), CLICK_TO_STATS_SECONDS)?
        .set_buckets_for_metric(Matcher::Full(WRITE_CELLS.into()), CELLS)?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    Ok(handle)
}

/// Runs the consumer until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    if settings.store.backend == StoreBackend::Embedded {
        return Err(RunError::EmbeddedStore);
    }
    let handle = install_metrics()?;
    let stores = shortener_storage::open(&settings.store).await?;
    let addr = settings.analytics.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Listen { addr, source })?;
    tracing::info!(%addr, "admin listener bound (GET /metrics, GET /readyz)");
    let health = Arc::new(Health::default());
    let (admin_stop, admin_stopped) = oneshot::channel::<()>();
    let admin = tokio::spawn(crate::admin::serve(
        listener,
        handle,
        health.clone(),
        async move {
            let _ = admin_stopped.await;
        },
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let (done, finished) = oneshot::channel();
    let thread = {
        let (config, stats, runtime) = (
            consumer_config(&settings),
            stores.stats.clone(),
            tokio::runtime::Handle::current(),
        );
        let (health, stop) = (health.clone(), stop.clone());
        std::thread::Builder::new()
            .name("consumer".into())
            .spawn(move || {
                let result =
                    consumer::run(config, stats, runtime, Meters::registered(), health, stop);
                let _ = done.send(());
                result
            })
            .map_err(RunError::Spawn)?
    };
    tokio::pin!(shutdown);
    tokio::pin!(finished);
    tokio::select! {
        () = &mut shutdown => {}
        _ = &mut finished => {}
    }
    stop.store(true, Ordering::Release);
    let result = tokio::task::spawn_blocking(move || thread.join())
        .await
        .map_err(|_| RunError::Panicked)?
        .map_err(|_| RunError::Panicked)?;
    let _ = admin_stop.send(());
    let _ = admin.await;
    if let Err(error) = stores.links.close().await {
        tracing::warn!(%error, "closing the store failed");
    }
    result?;
    tracing::info!("analytics stopped");
    Ok(())
}
