//! The storage contract (`shortener_core::store::contract`) on a real PostgreSQL, plus
//! what only this backend has to show: its migrations, and a listing in one statement.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use shortener_core::LinkStore;
use shortener_core::store::contract::Harness;
use shortener_postgres::{PostgresOptions, PostgresStore, migrate};

/// A fresh database per case; every handle is a separate pool, as separate instances
/// would have.
struct Postgres {
    url: String,
    store: Arc<PostgresStore>,
}

fn options(url: &str) -> PostgresOptions {
    PostgresOptions {
        url: url.to_owned(),
        pool_size: 8,
        connect_timeout: Duration::from_secs(5),
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(10),
    }
}

#[async_trait]
impl Harness for Postgres {
    type Store = PostgresStore;

    fn store(&self) -> Arc<PostgresStore> {
        self.store.clone()
    }

    async fn another_handle(&self) -> Arc<PostgresStore> {
        PostgresStore::connect(&options(&self.url)).expect("connect")
    }

    async fn corrupt_day(&self, code: &shortener_core::ShortCode, day: i64) {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        let day = i32::try_from(day).expect("a day number");
        let updated = client
            .execute(
                "UPDATE stats_days SET body = '\\xff'::bytea WHERE code = $1 AND day = $2",
                &[&code.as_str(), &day],
            )
            .await
            .expect("update");
        assert_eq!(updated, 1);
    }

    async fn corrupt(&self, code: &shortener_core::ShortCode) {
        // A timestamp the driver cannot turn into an `OffsetDateTime`, as a hand edit
        // or another program could leave it.
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        let updated = client
            .execute(
                "UPDATE links SET expires_at = 'infinity' WHERE code = $1",
                &[&code.as_str()],
            )
            .await
            .expect("update");
        assert_eq!(updated, 1);
    }
}

async fn fresh() -> Option<Postgres> {
    let cluster = shortener_testkit::postgres::cluster("postgres contract")?;
    let url = cluster.fresh_database().await;
    let store = PostgresStore::connect(&options(&url)).expect("connect");
    store.migrate().await.expect("migrate");
    store.check_schema().await.expect("schema is current");
    Some(Postgres { url, store })
}

shortener_core::store_contract!(fresh());

#[tokio::test]
async fn migrations_apply_once_and_the_schema_check_says_what_to_do() {
    let Some(cluster) = shortener_testkit::postgres::cluster("migrations") else {
        return;
    };
    let url = cluster.fresh_database().await;
    let store = PostgresStore::connect(&options(&url)).expect("connect");
    let error = store
        .check_schema()
        .await
        .expect_err("an empty database is not current");
    assert!(
        error.to_string().contains("run `shortener migrate`"),
        "{error}"
    );
    // Two instances migrating at once: each migration is applied by exactly one.
    let other = PostgresStore::connect(&options(&url)).expect("connect");
    let (a, b) = tokio::join!(store.migrate(), other.migrate());
    let mut applied = [a.expect("migrate"), b.expect("migrate")].concat();
    applied.sort();
    let all: Vec<i32> = migrate::MIGRATIONS.iter().map(|m| m.0).collect();
    assert_eq!(applied, all);
    assert_eq!(store.migrate().await.expect("again"), Vec::<i32>::new());
    store.check_schema().await.expect("current");
}

#[tokio::test]
async fn a_page_of_links_with_totals_is_one_statement() {
    let Some(backend) = fresh().await else {
        return;
    };
    let store = backend.store();
    for code in ["a", "b", "c"] {
        let link = shortener_core::Link {
            code: shortener_core::ShortCode::parse(code).expect("code"),
            target: shortener_core::TargetUrl::parse("https://example.com/").expect("url"),
            created_at: time::OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time"),
            expires_at: None,
            redirect: shortener_core::RedirectKind::Found,
            max_clicks: None,
            owner: None,
        };
        store.insert_if_absent(&link).await.expect("insert");
    }
    let before = store.statements();
    let page = store.list(None, 10, None).await.expect("list");
    assert_eq!(page.links.len(), 3);
    assert_eq!(store.statements() - before, 1, "no query per link (N+1)");
}

#[tokio::test]
async fn a_stopped_database_is_an_error_not_a_hang() {
    // A port nothing listens on: connecting fails within the connect timeout.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut opts = options(&format!("postgres://postgres@127.0.0.1:{port}/none"));
    opts.connect_timeout = Duration::from_millis(500);
    let store = PostgresStore::connect(&opts).expect("connect is lazy");
    let started = std::time::Instant::now();
    let error = store.ping().await.expect_err("nothing listens");
    assert!(
        matches!(error, shortener_core::StoreError::Backend { .. }),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}
