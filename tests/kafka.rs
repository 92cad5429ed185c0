//! Clicks through Kafka, end to end: the real `shortener` process with the Kafka sink,
//! the test kit's broker and PostgreSQL, and the analytics consumer (its library, in this
//! process). Redirects of browsers and bots, with referrers, and HEAD requests, come back
//! as statistics that count exactly the GET redirects, humans and bots apart.
//!
//! Needs the `kafka` and `postgres` features (the README's test command enables every
//! feature), PostgreSQL's binaries, Java 17 and Maven.
#![cfg(all(feature = "kafka", feature = "postgres"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shortener::config::{Settings, StoreBackend};

#[path = "support/process.rs"]
mod process;
use process::Server;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

/// The service (a process, with the Kafka sink), the consumer (in this process), and
/// their broker and database.
struct Stack {
    service: Server,
    database: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    consumer: tokio::task::JoinHandle<Result<(), shortener_analytics::run::RunError>>,
}

impl Stack {
    async fn start(test: &str, name: &str) -> Option<Self> {
        let kafka = shortener_testkit::kafka::kafka(test)?;
        let cluster = shortener_testkit::postgres::cluster(test)?;
        let database = cluster.fresh_database().await;
        process::migrate_postgres(&database);
        let topic = format!("{name}-clicks");
        let mut settings = Settings::from_defaults().expect("defaults");
        settings.store.backend = StoreBackend::Postgres;
        settings.store.postgres.url = database.clone().into();
        settings.kafka.brokers = kafka.bootstrap();
        settings.kafka.topic = topic.clone();
        settings.kafka.dead_letter_topic = format!("{name}-dead");
        settings.analytics.group = name.into();
        settings.analytics.listen = "127.0.0.1:0".parse().expect("addr");
        shortener_kafka::topics::create(&settings.kafka)
            .await
            .expect("create topics");
        let bootstrap = kafka.bootstrap();
        let service = Server::start(&[
            ("APP__STORE__BACKEND", "postgres"),
            ("APP__STORE__POSTGRES__URL", &database),
            ("APP__CLICKS__SINK", "kafka"),
            ("APP__CLICKS__FLUSH_INTERVAL_MS", "50"),
            ("APP__KAFKA__BROKERS", &bootstrap),
            ("APP__KAFKA__TOPIC", &topic),
        ]);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let consumer = tokio::spawn(shortener_analytics::run::run(settings, async move {
            let _ = stopped.await;
        }));
        Some(Self {
            service,
            database,
            stop: Some(stop),
            consumer,
        })
    }

    /// Stops the consumer and waits for it.
    async fn stop_consumer(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.consumer)
            .await
            .expect("consumer task")
            .expect("the consumer stops cleanly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_become_statistics_through_kafka_and_the_consumer() {
    let Some(mut stack) = Stack::start("kafka end to end", "e2e").await else {
        return;
    };
    let service = &mut stack.service;
    service
        .create(json!({"url": "https://example.com/e2e", "alias": "e2e"}))
        .await;
    let get = |agent: &'static str, referrer: Option<&'static str>| {
        let mut request = service
            .client
            .get(service.url("/e2e"))
            .header("user-agent", agent);
        if let Some(referrer) = referrer {
            request = request.header("referer", referrer);
        }
        request.send()
    };
    for i in 0..30 {
        let referrer = (i % 2 == 0).then_some("https://news.example/post");
        assert_eq!(get(FIREFOX, referrer).await.expect("GET").status(), 302);
    }
    for _ in 0..20 {
        assert_eq!(get(GOOGLEBOT, None).await.expect("GET").status(), 302);
    }
    for _ in 0..15 {
        let head = service
            .client
            .head(service.url("/e2e"))
            .send()
            .await
            .expect("HEAD");
        assert_eq!(head.status(), 302);
    }

    let stats = wait_for_clicks(service, 50).await;
    let totals = &stats["totals"];
    assert_eq!(totals["clicks"], 50, "{stats}");
    assert_eq!(totals["human"], 30, "{stats}");
    assert_eq!(totals["bot"], 20, "{stats}");
    let referrers = stats["top"]["referrer"].to_string();
    assert!(referrers.contains("news.example"), "{stats}");
    // Nothing more arrives (HEAD requests are not clicks).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(service.link("e2e").await["clicks"], 50);

    service.terminate();
    let logs = service.drain_logs().join("\n");
    assert!(
        logs.contains("kafka producer flushed and stopped"),
        "{logs}"
    );
    stack.stop_consumer().await;
}

/// SIGTERM in the middle of a redirect load: every redirect answered (before the signal
/// or while draining) reaches the statistics: the producer flushes before the process
/// exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_click_answered_before_sigterm_reaches_the_statistics() {
    let Some(mut stack) = Stack::start("kafka sigterm under load", "sigterm").await else {
        return;
    };
    stack
        .service
        .create(json!({"url": "https://example.com/load", "alias": "load"}))
        .await;
    let answered = Arc::new(AtomicU64::new(0));
    let url = stack.service.url("/load");
    let load: Vec<_> = (0..8)
        .map(|_| {
            let (client, url, answered) = (process::client(), url.clone(), answered.clone());
            tokio::spawn(async move {
                // Until the server is gone: connection refused or reset.
                while let Ok(response) = client.get(&url).send().await {
                    if response.status() == 302 {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.service.signal_terminate();
    for task in load {
        task.await.expect("load task");
    }
    stack.service.wait_success();
    let answered = answered.load(Ordering::Relaxed);
    assert!(answered > 100, "a real load: {answered} redirects");
    // The service is gone; its clicks are in Kafka, and the consumer writes them.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let total = stored_total(&stack.database, "load").await;
        assert!(total <= answered, "{total} clicks for {answered} redirects");
        if total == answered {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{total} of {answered} clicks reached the statistics"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.stop_consumer().await;
}

/// The stored all-time total of `code`, read from the database directly.
async fn stored_total(database: &str, code: &str) -> u64 {
    let (client, connection) = tokio_postgres::connect(database, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .query_opt("SELECT total FROM stats_totals WHERE code = $1", &[&code])
        .await
        .expect("query")
        .map_or(0, |row| row.get::<_, i64>(0) as u64)
}

/// The link's statistics once they count `clicks`; panics after 60 s.
async fn wait_for_clicks(service: &Server, clicks: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats: Value = service
            .client
            .get(service.url("/api/v1/links/e2e/stats"))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("JSON");
        if stats["totals"]["clicks"] == clicks {
            return stats;
        }
        assert!(Instant::now() < deadline, "statistics after 60 s: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
