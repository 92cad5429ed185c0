//! Clicks through Kafka, end to end: the real `shortener` process with the Kafka sink,
//! the test kit's broker and PostgreSQL, and the analytics consumer (its library, in this
//! process). Redirects of browsers and bots, with referrers, and HEAD requests, come back
//! as statistics that count exactly the GET redirects, humans and bots apart.
//!
//! Needs the `kafka` and `postgres` features (the README's test command enables every
//! feature), PostgreSQL's binaries, Java 17 and Maven.
#![cfg(all(feature = "kafka", feature = "postgres"))]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shortener::config::{Settings, StoreBackend};

#[path = "support/process.rs"]
mod process;
use process::Server;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_become_statistics_through_kafka_and_the_consumer() {
    let test = "kafka end to end";
    let Some(kafka) = shortener_testkit::kafka::kafka(test) else {
        return;
    };
    let Some(cluster) = shortener_testkit::postgres::cluster(test) else {
        return;
    };
    let url = cluster.fresh_database().await;
    process::migrate_postgres(&url);
    let mut settings = Settings::from_defaults().expect("defaults");
    settings.store.backend = StoreBackend::Postgres;
    settings.store.postgres.url = url.clone().into();
    settings.kafka.brokers = kafka.bootstrap();
    settings.kafka.topic = "e2e-clicks".into();
    settings.kafka.dead_letter_topic = "e2e-dead".into();
    settings.analytics.group = "e2e".into();
    settings.analytics.listen = "127.0.0.1:0".parse().expect("addr");
    shortener_kafka::topics::create(&settings.kafka)
        .await
        .expect("create topics");

    let bootstrap = kafka.bootstrap();
    let mut service = Server::start(&[
        ("APP__STORE__BACKEND", "postgres"),
        ("APP__STORE__POSTGRES__URL", &url),
        ("APP__CLICKS__SINK", "kafka"),
        ("APP__CLICKS__FLUSH_INTERVAL_MS", "50"),
        ("APP__KAFKA__BROKERS", &bootstrap),
        ("APP__KAFKA__TOPIC", "e2e-clicks"),
    ]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let consumer = tokio::spawn(shortener_analytics::run::run(settings, async move {
        let _ = stopped.await;
    }));

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

    let stats = wait_for_clicks(&service, 50).await;
    let totals = &stats["totals"];
    assert_eq!(totals["clicks"], 50, "{stats}");
    assert_eq!(totals["human"], 30, "{stats}");
    assert_eq!(totals["bot"], 20, "{stats}");
    let referrers = stats["top"]["referrer"].to_string();
    assert!(referrers.contains("news.example"), "{stats}");
    // Nothing more arrives (HEAD requests are not clicks).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(service.link("e2e").await["clicks"], 50);

    let _ = stop.send(());
    consumer
        .await
        .expect("consumer task")
        .expect("the consumer stops cleanly");
    service.terminate();
    let logs = service.drain_logs().join("\n");
    assert!(
        logs.contains("kafka producer flushed and stopped"),
        "{logs}"
    );
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
