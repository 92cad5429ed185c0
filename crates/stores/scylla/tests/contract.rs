//! The storage contract (`shortener_core::store::contract`) on a real CQL engine: the
//! test kit's Apache Cassandra 5.0, or a ScyllaDB named by `SCYLLA_NODES=host:9042`.
//! A keyspace per case.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use shortener_core::ShortCode;
use shortener_core::store::contract::Harness;
use shortener_scylla::{MONTH_DAYS, ScyllaOptions, ScyllaStore, migrate};

struct Cql {
    options: ScyllaOptions,
    store: Arc<ScyllaStore>,
}

impl Cql {
    async fn session(&self) -> Session {
        SessionBuilder::new()
            .known_nodes(&self.options.nodes)
            .use_keyspace(&self.options.keyspace, true)
            .build()
            .await
            .expect("session")
    }
}

#[async_trait]
impl Harness for Cql {
    type Store = ScyllaStore;

    fn store(&self) -> Arc<ScyllaStore> {
        self.store.clone()
    }

    async fn another_handle(&self) -> Arc<ScyllaStore> {
        ScyllaStore::connect(&self.options).await.expect("connect")
    }

    async fn corrupt(&self, code: &ShortCode) {
        // A redirect status no version writes, as another program could leave it.
        self.session()
            .await
            .query_unpaged(
                "UPDATE links SET redirect = 999 WHERE code = ?",
                (code.as_str(),),
            )
            .await
            .expect("corrupt the link");
    }

    async fn corrupt_day(&self, code: &ShortCode, day: i64) {
        let session = self.session().await;
        let month = i32::try_from(day.div_euclid(MONTH_DAYS)).expect("month");
        let day = i32::try_from(day).expect("day");
        let rows = session
            .query_unpaged(
                "SELECT source FROM stats_days WHERE code = ? AND month = ? AND day = ?",
                (code.as_str(), month, day),
            )
            .await
            .expect("read the day")
            .into_rows_result()
            .expect("rows");
        let sources: Vec<String> = rows
            .rows::<(String,)>()
            .expect("typed")
            .map(|row| row.expect("row").0)
            .collect();
        assert!(!sources.is_empty(), "no row to corrupt");
        for source in sources {
            session
                .query_unpaged(
                    "UPDATE stats_days SET cur = 0xff, prev = 0xff WHERE code = ? AND month = ? AND day = ? AND source = ?",
                    (code.as_str(), month, day, source),
                )
                .await
                .expect("corrupt the day");
        }
    }
}

static CASES: AtomicU32 = AtomicU32::new(0);

async fn fresh() -> Option<Cql> {
    let nodes = match std::env::var("SCYLLA_NODES") {
        Ok(nodes) => nodes.split(',').map(str::to_owned).collect(),
        Err(_) => vec![shortener_testkit::cassandra::cassandra("scylla contract")?.node()],
    };
    let keyspace = format!(
        "contract_{}_{}",
        std::process::id(),
        CASES.fetch_add(1, Ordering::Relaxed)
    );
    let options = ScyllaOptions::single_node(nodes, &keyspace);
    migrate::run(&options).await.expect("migrate");
    let store = ScyllaStore::connect(&options).await.expect("connect");
    store.check_schema().await.expect("schema current");
    Some(Cql { options, store })
}

shortener_core::store_contract!(fresh());
