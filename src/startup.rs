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
use std::time::Duration;

use http::HeaderName;

use metrics_exporter_prometheus::{BuildError, PrometheusHandle};
use shortener_core::LinkStore;
use shortener_core::access::KeyStore;
use shortener_core::aggregate::MemoLimits;
use shortener_core::stats::StatsStore;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;

use crate::cache::l2::{self, L2Cache, L2Error};
use crate::clicks::batcher::{self, BatcherConfig};
use crate::clicks::{AggregatingSink, Capture, ClickRecorder, EventSink, RawClick};
use crate::config::{AuthMode, ClickSink, ConfigError, Settings};
use crate::http::app::{HandlerState, Handlers};
use crate::http::middleware::Stack;
use crate::http::{admin, server};
use crate::service::keys::Keys;
use crate::service::targets::Targets;
use crate::service::{LinkService, ServiceError};
use crate::shutdown::{Background, TaskPanicked};
use crate::store_layers::GroupCommit;
use shortener_aggregation::AggregatingConfig;

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration is inconsistent.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error("cannot open the link store")]
    Open(#[from] shortener_storage::OpenError),
    /// The store failed to flush and close at shutdown.
    #[error("cannot close the link store")]
    Close(#[source] ServiceError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address from config.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The metrics recorder could not be installed.
    #[error("cannot install the metrics recorder")]
    Metrics(#[from] BuildError),
    /// `clicks.sink = "kafka"` in a build without the Kafka client.
    #[cfg(not(feature = "kafka"))]
    #[error(
        "clicks.sink = \"kafka\", but this build has no Kafka client: rebuild with `--features kafka`"
    )]
    NoKafka,
    /// The Kafka producer could not be built.
    #[cfg(feature = "kafka")]
    #[error(transparent)]
    Kafka(#[from] shortener_kafka::producer::ProducerError),
    /// The Redis client could not be built (a bad URL; an unreachable Redis is not an
    /// error: the service starts degraded and keeps reconnecting).
    #[error(transparent)]
    Redis(#[from] L2Error),
    /// The first admin key could not be made.
    #[error(transparent)]
    Bootstrap(#[from] crate::service::keys::BootstrapError),
    /// The target blocklist file is missing or malformed.
    #[error(transparent)]
    Blocklist(#[from] crate::service::targets::BlocklistError),
    /// A background task panicked while the service ran (reported at shutdown, after
    /// the store was closed).
    #[error(transparent)]
    Task(#[from] TaskPanicked),
}

/// A built, bound, not yet running application.
pub struct Application {
    settings: Settings,
    public: TcpListener,
    admin: TcpListener,
    service: Arc<LinkService>,
    metrics: PrometheusHandle,
    /// Statistics, for the admin listener's `/storage`.
    stats: Arc<dyn StatsStore>,
    /// The click pipeline, when `clicks.enabled`: the recorder goes to the handlers, the
    /// receiver and sink to the batcher task started by `run_until_stopped`.
    clicks: Option<ClickPipeline>,
    /// The invalidation subscriber, when Redis is configured.
    subscriber: Option<l2::Subscriber>,
    /// API keys, for the handlers.
    keys: Arc<Keys>,
}

struct ClickPipeline {
    recorder: Arc<ClickRecorder>,
    queue: mpsc::Receiver<RawClick>,
    sink: Arc<dyn EventSink>,
}

impl Application {
    /// Opens the configured store (`shortener_storage::open`), then builds as
    /// [`Application::build_with_stores`].
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let stores = shortener_storage::open(&settings.store).await?;
        Self::build_with_stores(settings, stores.links, stores.stats, stores.keys).await
    }

    /// Builds around already opened stores (tests inject instrumented stores here).
    pub async fn build_with_stores(
        settings: Settings,
        links: Arc<dyn LinkStore>,
        stats: Arc<dyn StatsStore>,
        keys: Arc<dyn KeyStore>,
    ) -> Result<Self, StartupError> {
        // Metrics first: every component resolves its metric handles at construction.
        let metrics = crate::metrics::install()?;
        let links = Arc::new(GroupCommit::new(links, settings.store.max_group.get()));
        let targets = Arc::new(Targets::load(&settings.targets)?);
        let keys = Arc::new(Keys::new(&settings.auth, keys));
        let mut service = LinkService::new(&settings, links, stats.clone())?.with_targets(targets);
        let mut subscriber = None;
        if settings.redis.enabled() {
            let (l2, listener) = L2Cache::connect(&settings.redis)?;
            service = service.with_l2(l2);
            subscriber = Some(listener);
            tracing::info!("redis second-level cache configured (connecting in the background)");
        }
        let service = Arc::new(service);
        let clicks = match settings.clicks.enabled {
            true => Some(click_sink(&settings, &stats)?),
            false => None,
        };
        let clicks = clicks.map(|sink| {
            let capture = Capture {
                trusted_proxies: settings.clicks.trusted_proxies.clone(),
                country_header: country_header(&settings),
            };
            let (recorder, queue) =
                ClickRecorder::new(settings.clicks.queue_capacity.get(), capture);
            ClickPipeline {
                recorder: Arc::new(recorder),
                queue,
                sink,
            }
        });
        let public = bind(settings.http.listen, settings.http.listen_backlog.get())?;
        let admin = bind(settings.admin.listen, ADMIN_BACKLOG)?;
        // After binding: a start that fails (a port in use) makes no key.
        match settings.auth.mode {
            AuthMode::Open => tracing::warn!(
                listen = %settings.http.listen,
                "auth.mode = \"open\": the management API takes no keys and every request acts as an administrator; for development only"
            ),
            AuthMode::Keys if !settings.auth.bootstrap_key_file.is_empty() => {
                let path = std::path::Path::new(&settings.auth.bootstrap_key_file);
                keys.bootstrap(path).await?;
            }
            AuthMode::Keys => {}
        }
        tracing::info!(addr = %local_addr(&public), "public listener bound");
        tracing::info!(addr = %local_addr(&admin), "admin listener bound (GET /metrics, GET /storage)");
        Ok(Self {
            settings,
            public,
            admin,
            service,
            metrics,
            stats,
            clicks,
            subscriber,
            keys,
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

    /// Three steps: spawn the background tasks (`spawn_background`), serve until
    /// `shutdown` resolves and the connections drained, then stop the tasks in order
    /// (the batcher first: it flushes every recorded click into statistics) and close
    /// the store. A task that panicked is returned as [`StartupError::Task`], after the
    /// store is closed.
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
            stats,
            clicks,
            subscriber,
            keys,
        } = self;
        let (background, recorder) = spawn_background(
            &settings, &service, admin, metrics, stats, clicks, subscriber,
        );
        serve_public(public, &settings, &service, keys, recorder, shutdown).await;
        // Every request has finished, so every click of an answered redirect is queued:
        // the batcher, stopped first, flushes them all; the store closes last, when no
        // task can touch it any more, even if one of them panicked.
        let stopped = background.stop_in_order().await;
        service.close().await.map_err(StartupError::Close)?;
        tracing::info!("store closed; bye");
        Ok(stopped?)
    }
}

/// Starts the background tasks, registered in the order they must stop: the click
/// batcher (it flushes what the drained requests queued), the invalidation listener, the
/// Redis probe, and the admin listener last (so the drain itself can be observed).
/// Returns them and the click recorder the handlers use.
fn spawn_background(
    settings: &Settings,
    service: &Arc<LinkService>,
    admin: TcpListener,
    metrics: PrometheusHandle,
    stats: Arc<dyn StatsStore>,
    clicks: Option<ClickPipeline>,
    subscriber: Option<l2::Subscriber>,
) -> (Background, Option<Arc<ClickRecorder>>) {
    let mut background = Background::new();
    let recorder = clicks.map(|pipeline| {
        let config = batcher_config(settings);
        let ClickPipeline {
            recorder,
            queue,
            sink,
        } = pipeline;
        background.spawn("click batcher", |stop| {
            batcher::run(queue, sink, config, stop)
        });
        recorder
    });
    if let Some(subscriber) = subscriber {
        let (channel, l1) = (settings.redis.invalidation_channel.clone(), service.l1());
        background.spawn("invalidation listener", |stop| {
            l2::listen(subscriber, channel, l1, stop)
        });
    }
    if settings.redis.enabled() {
        let (service, interval) = (service.clone(), settings.redis.probe_interval());
        background.spawn("redis probe", |stop| probe_redis(service, interval, stop));
    }
    if settings.targets.blocklist_reload_ms > 0 {
        let interval = Duration::from_millis(settings.targets.blocklist_reload_ms);
        let targets = service.targets();
        background.spawn("blocklist watcher", |stop| targets.watch(interval, stop));
    }
    background.spawn("admin listener", |stop| {
        admin::serve(admin, metrics, stats, stop)
    });
    (background, recorder)
}

/// Serves the public listener until `shutdown` resolves and its connections drained.
async fn serve_public(
    public: TcpListener,
    settings: &Settings,
    service: &Arc<LinkService>,
    keys: Arc<Keys>,
    clicks: Option<Arc<ClickRecorder>>,
    shutdown: impl Future<Output = ()>,
) {
    let app = Handlers::new(HandlerState::new(settings, service.clone(), keys, clicks));
    let stack = Stack::new(&settings.http);
    let make_service = move |peer: SocketAddr| stack.clone().service(app.with_peer(peer.ip()));
    let max_connections = server::connection_cap(&settings.http);
    tracing::info!(max_connections, "public listener serving");
    server::serve(
        public,
        make_service,
        &settings.http,
        max_connections,
        shutdown,
    )
    .await;
}

/// Probes Redis every `interval` until `stop` resolves, so that readiness follows Redis
/// without waiting for traffic to find out (see `L2Cache::probe`).
async fn probe_redis(
    service: Arc<LinkService>,
    interval: Duration,
    stop: impl Future<Output = ()>,
) {
    let mut ticks = tokio::time::interval(interval);
    // A probe that took long (a timeout) is not followed by a burst of catch-up probes.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = ticks.tick() => service.probe_l2().await,
            () = &mut stop => return,
        }
    }
}

fn batcher_config(settings: &Settings) -> BatcherConfig {
    let c = &settings.clicks;
    let visitor_secret = if c.visitor_secret.expose().is_empty() {
        tracing::warn!(
            "clicks.visitor_secret is empty: using a random one; unique visitors restart with the process"
        );
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        secret.to_vec()
    } else {
        c.visitor_secret.expose().as_bytes().to_vec()
    };
    BatcherConfig {
        batch_max: c.batch_max.get(),
        flush_interval: handover_interval(settings),
        visitor_secret,
    }
}

/// How long the batcher holds clicks before handing them to the sink. In process, the
/// batch is a store transaction: `clicks.flush_interval_ms`. To Kafka, librdkafka does
/// the batching (`kafka.linger_ms`), so the batcher hands over at the linger (at least
/// every millisecond): a click then waits at most about two lingers before it is sent,
/// not a second.
fn handover_interval(settings: &Settings) -> Duration {
    match settings.clicks.sink {
        ClickSink::InProcess => Duration::from_millis(settings.clicks.flush_interval_ms.get()),
        ClickSink::Kafka => Duration::from_millis(settings.kafka.linger_ms.max(1)),
    }
}

/// Where clicks go (`clicks.sink`): aggregated here, or produced to Kafka.
fn click_sink(
    settings: &Settings,
    stats: &Arc<dyn StatsStore>,
) -> Result<Arc<dyn EventSink>, StartupError> {
    Ok(match settings.clicks.sink {
        ClickSink::InProcess => Arc::new(AggregatingSink::start(
            stats.clone(),
            aggregating_config(settings),
            crate::metrics::aggregation_meters(),
            tokio::runtime::Handle::current(),
        )),
        ClickSink::Kafka => kafka_sink(settings)?,
    })
}

#[cfg(feature = "kafka")]
fn kafka_sink(settings: &Settings) -> Result<Arc<dyn EventSink>, StartupError> {
    let sink = shortener_kafka::producer::KafkaSink::new(
        &settings.kafka,
        crate::metrics::producer_meters(),
    )?;
    tracing::info!(
        brokers = settings.kafka.brokers,
        topic = settings.kafka.topic,
        "clicks go to kafka"
    );
    Ok(Arc::new(sink))
}

#[cfg(not(feature = "kafka"))]
fn kafka_sink(_: &Settings) -> Result<Arc<dyn EventSink>, StartupError> {
    Err(StartupError::NoKafka)
}

fn aggregating_config(settings: &Settings) -> AggregatingConfig {
    let s = &settings.stats;
    AggregatingConfig {
        flush_interval: s.flush_interval(),
        max_pending_cells: s.max_pending_cells.get(),
        memo: MemoLimits {
            agents: s.agent_memo_entries.get(),
            referrers: s.referrer_memo_entries.get(),
        },
        // One source per process start; the store keeps its applied position.
        source_prefix: "local",
    }
}

fn country_header(settings: &Settings) -> Option<HeaderName> {
    let name = settings.clicks.country_header.as_str();
    (!name.is_empty())
        .then(|| HeaderName::try_from(name).ok())
        .flatten()
}

/// The listen(2) backlog of the admin listener: a scrape or a probe at a time.
const ADMIN_BACKLOG: u32 = 128;

/// A listener on `addr` whose kernel queue holds `backlog` completed connections
/// (`http.listen_backlog`; `TcpListener::bind` would fix it at 1,024, which a connect
/// burst overflowed). `SO_REUSEADDR` as `TcpListener::bind` sets it, so a restart does
/// not wait for the old sockets' TIME_WAIT.
fn bind(addr: SocketAddr, backlog: u32) -> Result<TcpListener, StartupError> {
    let bind = || {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }?;
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(backlog)
    };
    bind().map_err(|source| StartupError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound TCP listener has a local address")
}

/// `shortener migrate`: brings the configured store's schema up to date and says what
/// was applied (`shortener_storage::migrate`).
pub async fn migrate(settings: &Settings) -> Result<String, StartupError> {
    Ok(shortener_storage::migrate(&settings.store).await?)
}

/// The configured store's keys, for `shortener keys` (the embedded file can be opened
/// by one process at a time: stop the service first, or use the key API).
pub async fn keys(settings: &Settings) -> Result<Keys, StartupError> {
    let stores = shortener_storage::open(&settings.store).await?;
    Ok(Keys::new(&settings.auth, stores.keys))
}

/// What only the default build (no `kafka` feature) can show; `.ci/run` runs it.
#[cfg(all(test, not(feature = "kafka")))]
mod no_kafka {
    use super::*;

    #[tokio::test]
    async fn clicks_through_kafka_are_refused_with_the_feature_that_builds_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = Settings::from_defaults().expect("defaults");
        settings.store.path = dir.path().join("links.redb");
        settings.clicks.sink = ClickSink::Kafka;
        let stores = shortener_storage::open(&settings.store)
            .await
            .expect("open");
        let error = click_sink(&settings, &stores.stats).err().expect("refused");
        assert!(error.to_string().contains("--features kafka"), "{error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clicks_for_kafka_are_handed_over_at_the_linger_not_the_flush_interval() {
        let mut settings = Settings::from_defaults().expect("defaults");
        settings.clicks.flush_interval_ms = 1_000.try_into().expect("> 0");
        assert_eq!(handover_interval(&settings), Duration::from_secs(1));
        settings.clicks.sink = ClickSink::Kafka;
        settings.kafka.linger_ms = 20;
        assert_eq!(handover_interval(&settings), Duration::from_millis(20));
        settings.kafka.linger_ms = 0;
        assert_eq!(handover_interval(&settings), Duration::from_millis(1));
    }

    #[tokio::test]
    async fn the_listener_queues_as_many_connections_as_its_backlog_and_no_more() {
        let listener = bind("127.0.0.1:0".parse().expect("addr"), 2).expect("bind");
        let addr = local_addr(&listener);
        // Nobody accepts: Linux completes backlog + 1 handshakes, then drops SYNs.
        let mut completed = Vec::new();
        for _ in 0..8 {
            let connect = tokio::net::TcpStream::connect(addr);
            if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_millis(300), connect).await
            {
                completed.push(stream);
            }
        }
        assert!(
            (2..=3).contains(&completed.len()),
            "{} connections queued for a backlog of 2",
            completed.len()
        );
    }
}
