//! A rebuild beside the live statistics: switched in only at the live positions, the
//! old tables kept aside, and resumable.

use std::sync::Arc;
use std::time::Duration;

use shortener_core::ShortCode;
use shortener_core::aggregate::{Aggregator, BatchAggregate, BatchId};
use shortener_core::click::{CLICK_EVENT_VERSION, ClickEvent};
use shortener_core::stats::StatsStore;
use shortener_postgres::rebuild::{Rebuild, Switch};
use shortener_postgres::{PostgresOptions, PostgresStore};

fn options(url: &str) -> PostgresOptions {
    PostgresOptions {
        url: url.to_owned(),
        pool_size: 4,
        connect_timeout: Duration::from_secs(5),
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(10),
    }
}

/// `n` clicks on `code`, as the batch `(source, first, first + n - 1)`.
fn batch(code: &str, source: &str, first: u64, n: u64) -> Arc<BatchAggregate> {
    let events: Vec<ClickEvent> = (0..n)
        .map(|i| ClickEvent {
            v: CLICK_EVENT_VERSION,
            id: uuid::Uuid::now_v7(),
            code: ShortCode::parse(code).expect("code"),
            at_ms: 1_780_000_000_000 + i as i64,
            referrer: None,
            user_agent: Some("Mozilla/5.0 Firefox/121.0".into()),
            country: None,
            visitor: i,
        })
        .collect();
    let mut batch = Aggregator::new().aggregate(&events);
    batch.id = Some(BatchId {
        source: source.into(),
        first,
        last: first + n - 1,
    });
    Arc::new(batch)
}

async fn total(stats: &dyn StatsStore, code: &str) -> u64 {
    stats
        .totals(&ShortCode::parse(code).expect("code"))
        .await
        .expect("totals")
        .total
}

#[tokio::test]
async fn a_rebuild_switches_in_only_at_the_live_positions_and_keeps_the_old_tables() {
    let Some(cluster) = shortener_testkit::postgres::cluster("postgres rebuild") else {
        return;
    };
    let url = cluster.fresh_database().await;
    let live = PostgresStore::connect(&options(&url)).expect("connect");
    live.migrate().await.expect("migrate");
    live.apply(batch("abc", "clicks/0", 0, 10))
        .await
        .expect("live");

    let rebuild = Rebuild::open(&options(&url)).await.expect("open rebuild");
    assert_eq!(
        rebuild.switch("clicks/").await.expect("switch"),
        Switch::Behind
    );
    assert_eq!(
        total(&*live, "abc").await,
        10,
        "nothing changed while behind"
    );
    // The rebuild's position is its own: only what it wrote.
    let fresh = rebuild.fresh();
    fresh
        .apply(batch("abc", "clicks/0", 0, 6))
        .await
        .expect("fresh");
    assert_eq!(fresh.applied("clicks/0").await.expect("applied"), Some(5));
    assert_eq!(
        rebuild.switch("clicks/").await.expect("switch"),
        Switch::Behind
    );
    rebuild.close();

    // Reopened, it resumes: what it wrote is still there.
    let rebuild = Rebuild::open(&options(&url)).await.expect("reopen rebuild");
    let fresh = rebuild.fresh();
    assert_eq!(total(&*fresh, "abc").await, 6);
    // Rebuilt differently (a different batching of the same offsets), then level.
    fresh
        .apply(batch("abc", "clicks/0", 6, 4))
        .await
        .expect("fresh");
    // Another prefix's sources do not hold the switch back.
    live.apply(batch("xyz", "other/0", 0, 3))
        .await
        .expect("other");
    assert_eq!(
        rebuild.switch("clicks/").await.expect("switch"),
        Switch::Switched
    );
    rebuild.close();

    // The live handle reads the rebuilt tables now (its prepared statements follow the
    // rename), and writes into them.
    assert_eq!(total(&*live, "abc").await, 10);
    assert_eq!(total(&*live, "xyz").await, 0, "not in the rebuilt sources");
    live.apply(batch("abc", "clicks/0", 10, 5))
        .await
        .expect("live after");
    assert_eq!(total(&*live, "abc").await, 15);
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let old: i64 = client
        .query_one(
            "SELECT sum(total)::bigint FROM stats_totals_before_rebuild",
            &[],
        )
        .await
        .expect("old totals")
        .get(0);
    assert_eq!(old, 13, "the replaced numbers stay readable");
    let schemas: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'stats_rebuild'",
            &[],
        )
        .await
        .expect("schemas")
        .get(0);
    assert_eq!(schemas, 0, "the rebuild's schema is gone");
}
