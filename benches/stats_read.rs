//! How long the statistics of one busy link take to read: 1,000,000 clicks spread over
//! 90 days, read back as 90 daily buckets with top-N tables and unique visitors.
//!
//! Seeds the link through `StatsStore::apply` (100 batches of 10,000 clicks, as the
//! pipeline would write them), then times `link_stats` over the 90 days `READS` times
//! (default 1,000) and prints p50, p99 and max. Only the store is measured: no HTTP.
//!
//! Run on the embedded store: `cargo run --release --example stats-read`. On PostgreSQL
//! (a build with `--features postgres`), `PG_URL=postgres://... ` on a migrated
//! database; `scripts/bench-stats-read.sh` runs both.

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::sync::Arc;
use std::time::{Duration, Instant};

use shortener_core::ShortCode;
use shortener_core::aggregate::Aggregator;
use shortener_core::click::{CLICK_EVENT_VERSION, ClickEvent, DAY_MS};
use shortener_core::stats::{Granularity, StatsQuery, StatsStore};
use shortener_redb::RedbStore;
use uuid::Uuid;

const CLICKS: usize = 1_000_000;
const DAYS: i64 = 90;
const BATCH: usize = 10_000;
/// 2025-11-22, a UTC midnight.
const START_MS: i64 = 1_763_769_600_000;

const AGENTS: [&str; 4] = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
    "Twitterbot/1.0",
];
const COUNTRIES: [&str; 8] = ["DE", "US", "NL", "FR", "GB", "JP", "BR", "IN"];

/// Click `i` of the million: spread evenly over the 90 days, 200,000 distinct visitors,
/// 40 referrers, four agents (one a bot), eight countries.
fn click(code: &ShortCode, i: usize, referrers: &[Arc<str>], agents: &[Arc<str>]) -> ClickEvent {
    let span = DAYS * DAY_MS;
    ClickEvent {
        v: CLICK_EVENT_VERSION,
        id: Uuid::now_v7(),
        code: code.clone(),
        at_ms: START_MS + (i as i64 * span) / CLICKS as i64,
        referrer: Some(referrers[i % referrers.len()].clone()),
        user_agent: Some(agents[i % agents.len()].clone()),
        country: Some(COUNTRIES[i % COUNTRIES.len()].into()),
        visitor: ((i % 200_000) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    }
}

async fn store() -> (Arc<dyn StatsStore>, &'static str, Option<tempfile::TempDir>) {
    #[cfg(feature = "postgres")]
    if let Ok(url) = std::env::var("PG_URL") {
        let store =
            shortener_postgres::PostgresStore::connect(&shortener_postgres::PostgresOptions {
                url,
                pool_size: 4,
                connect_timeout: Duration::from_secs(5),
                acquire_timeout: Duration::from_secs(5),
                statement_timeout: Duration::from_secs(30),
            })
            .expect("connect to PG_URL");
        return (store, "postgres", None);
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = RedbStore::open(&dir.path().join("stats.redb")).expect("open the store");
    (Arc::new(store), "embedded", Some(dir))
}

#[tokio::main]
async fn main() {
    let reads: usize = std::env::var("READS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let (store, backend, _dir) = store().await;
    let code = ShortCode::parse("busy90").expect("valid code");
    let referrers: Vec<Arc<str>> = (0..40)
        .map(|i| format!("https://site{i}.example/article").into())
        .collect();
    let agents: Vec<Arc<str>> = AGENTS.iter().map(|a| (*a).into()).collect();

    let started = Instant::now();
    let mut aggregator = Aggregator::new();
    for first in (0..CLICKS).step_by(BATCH) {
        let events: Vec<ClickEvent> = (first..first + BATCH)
            .map(|i| click(&code, i, &referrers, &agents))
            .collect();
        let batch = aggregator.aggregate(&events);
        store.apply(Arc::new(batch)).await.expect("apply");
    }
    println!(
        "{backend}: seeded {CLICKS} clicks over {DAYS} days in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let query = StatsQuery::new(START_MS, START_MS + DAYS * DAY_MS, Granularity::Day, 10)
        .expect("valid query");
    let mut times: Vec<Duration> = Vec::with_capacity(reads);
    let mut total = 0;
    for _ in 0..reads {
        let started = Instant::now();
        let stats = store.link_stats(&code, query).await.expect("read");
        times.push(started.elapsed());
        total = stats.totals.total;
    }
    assert_eq!(total, CLICKS as u64, "every click read back");
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    println!(
        "{backend}: {reads} reads of 90 daily buckets: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    );
}
