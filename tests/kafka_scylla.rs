//! The Kafka pipeline end to end on the ScyllaDB backend: the service (Kafka sink), the
//! broker, `analytics run` writing to CQL, and the API reading the statistics back from
//! CQL. The CQL engine is the test kit's Apache Cassandra 5.0 (ScyllaDB cannot run on
//! these machines; the same driver and statements run against it).
#![cfg(all(feature = "kafka", feature = "scylla"))]

use serde_json::json;

#[path = "support/kafka_stack.rs"]
mod kafka_stack;
#[path = "support/access.rs"]
mod matrix;
#[path = "support/process.rs"]
mod process;
use kafka_stack::{Stack, Store, wait_for_clicks};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_become_statistics_in_cql_through_kafka_and_the_consumer() {
    let Some(mut stack) = Stack::start_on(Store::Cql, "kafka on scylla", "cql-e2e", &[]).await
    else {
        return;
    };
    let service = &mut stack.service;
    service
        .create(json!({"url": "https://example.com/cql", "alias": "cql"}))
        .await;
    for i in 0..40 {
        let agent = if i % 4 == 0 { GOOGLEBOT } else { FIREFOX };
        let response = service
            .client
            .get(service.url("/cql"))
            .header("user-agent", agent)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 302);
    }
    let stats = wait_for_clicks(service, "cql", 40).await;
    assert_eq!(stats["totals"]["clicks"], 40, "{stats}");
    assert_eq!(stats["totals"]["human"], 30, "{stats}");
    assert_eq!(stats["totals"]["bot"], 10, "{stats}");
    // The listing reads the totals from CQL too.
    assert_eq!(service.link("cql").await["clicks"], 40);
    stack.service.terminate();
    stack.stop_consumer().await;
}

/// The access matrix with keys and owners kept in CQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_owners_hold_on_cql() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("admin.key").display().to_string();
    let env = [
        ("APP__AUTH__MODE", "keys"),
        ("APP__AUTH__BOOTSTRAP_KEY_FILE", file.as_str()),
    ];
    let Some(mut stack) = Stack::start_on(Store::Cql, "kafka on scylla", "cql-keys", &env).await
    else {
        return;
    };
    let admin = std::fs::read_to_string(&file)
        .expect("the key file")
        .trim()
        .to_owned();
    let base = stack.service.url("");
    let api = matrix::Api {
        client: &stack.service.client,
        base: &base,
        admin: &admin,
    };
    matrix::run(&api).await;
    stack.service.terminate();
    stack.stop_consumer().await;
}
