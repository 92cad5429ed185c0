//! The Kafka deployment shape for tests: the service as a process with the Kafka sink,
//! the analytics consumer's library in the test process, the test kit's broker and a
//! fresh PostgreSQL database. Shared by the Kafka test binaries (included with `#[path]`
//! next to `process.rs`).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::Value;
use shortener::config::{Settings, StoreBackend};

use super::process::{self, Server};

/// The service (a process, with the Kafka sink), the consumer (in this process), and
/// their broker and database.
pub struct Stack {
    pub service: Server,
    pub database: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    consumer: tokio::task::JoinHandle<Result<(), shortener_analytics::run::RunError>>,
}

/// The shared store of a stack.
pub enum Store {
    /// A fresh PostgreSQL database from the test kit.
    Postgres,
    /// A fresh keyspace on the test kit's Cassandra (the CQL engine of the ScyllaDB
    /// backend).
    Cql,
}

impl Stack {
    /// The stack on a fresh PostgreSQL database.
    pub async fn start(test: &str, name: &str, env: &[(&str, &str)]) -> Option<Self> {
        Self::start_on(Store::Postgres, test, name, env).await
    }

    /// The stack on `store`. `database` is the PostgreSQL URL, or the CQL keyspace.
    pub async fn start_on(
        store: Store,
        test: &str,
        name: &str,
        env: &[(&str, &str)],
    ) -> Option<Self> {
        let kafka = shortener_testkit::kafka::kafka(test)?;
        let mut settings = Settings::from_defaults().expect("defaults");
        let mut store_env: Vec<(String, String)> = Vec::new();
        let database = match store {
            Store::Postgres => {
                let cluster = shortener_testkit::postgres::cluster(test)?;
                let database = cluster.fresh_database().await;
                settings.store.backend = StoreBackend::Postgres;
                settings.store.postgres.url = database.clone().into();
                store_env.push(("APP__STORE__BACKEND".into(), "postgres".into()));
                store_env.push(("APP__STORE__POSTGRES__URL".into(), database.clone()));
                database
            }
            Store::Cql => {
                let node = shortener_testkit::cassandra::cassandra(test)?.node();
                let keyspace = format!("{}_{}", name.replace('-', "_"), std::process::id());
                settings.store.backend = StoreBackend::Scylla;
                settings.store.scylla.nodes = vec![node.clone()];
                settings.store.scylla.keyspace = keyspace.clone();
                store_env.push(("APP__STORE__BACKEND".into(), "scylla".into()));
                store_env.push(("APP__STORE__SCYLLA__NODES".into(), node.clone()));
                store_env.push(("APP__STORE__SCYLLA__KEYSPACE".into(), keyspace.clone()));
                keyspace
            }
        };
        let store_env: Vec<(&str, &str)> = store_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        process::migrate(&store_env);
        let topic = format!("{name}-clicks");
        settings.kafka.brokers = kafka.bootstrap();
        settings.kafka.topic = topic.clone();
        settings.kafka.dead_letter_topic = format!("{name}-dead");
        settings.analytics.group = name.into();
        settings.analytics.listen = "127.0.0.1:0".parse().expect("addr");
        shortener_kafka::topics::create(&settings.kafka)
            .await
            .expect("create topics");
        let bootstrap = kafka.bootstrap();
        let mut all = store_env.clone();
        all.extend_from_slice(&[
            ("APP__CLICKS__SINK", "kafka"),
            ("APP__CLICKS__FLUSH_INTERVAL_MS", "50"),
            ("APP__KAFKA__BROKERS", bootstrap.as_str()),
            ("APP__KAFKA__TOPIC", topic.as_str()),
        ]);
        all.extend_from_slice(env);
        let service = Server::start(&all);
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
    pub async fn stop_consumer(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.consumer)
            .await
            .expect("consumer task")
            .expect("the consumer stops cleanly");
    }
}

/// The stored all-time total of `code`, read from the database directly.
pub async fn stored_total(database: &str, code: &str) -> u64 {
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
pub async fn wait_for_clicks(service: &Server, code: &str, clicks: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats: Value = service
            .client
            .get(service.url(&format!("/api/v1/links/{code}/stats")))
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
