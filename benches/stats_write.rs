//! What a stats store write costs per link-day on a long tail, outside the service.
//!
//! Seeds a redb store with 100,000 link-days (one click each), then applies 20 batches
//! of `CELLS` (default 10,000) link-days from the same links, each one
//! transaction, and prints the time per link-day of each. Aggregation happens before
//! the timed part, so only `StatsStore::apply` is measured (read, decode, merge,
//! encode and rewrite each row, then commit with an fsync).
//!
//! Run: `cargo run --release --example stats-write` (pin it with `taskset -c 0`).

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::sync::Arc;
use std::time::Instant;

use shortener_core::ShortCode;
use shortener_core::aggregate::Aggregator;
use shortener_core::click::{CLICK_EVENT_VERSION, ClickEvent};
use shortener_core::stats::StatsStore;
use shortener_redb::RedbStore;
use uuid::Uuid;

const LINKS: usize = 100_000;

fn events(n: usize, offset: usize, ua: &Arc<str>, referrer: &Arc<str>) -> Vec<ClickEvent> {
    (0..n)
        .map(|i| ClickEvent {
            v: CLICK_EVENT_VERSION,
            id: Uuid::now_v7(),
            code: ShortCode::parse(&format!("L{}", (offset + i) % LINKS)).expect("valid code"),
            at_ms: 1_763_790_000_000 + i as i64,
            referrer: Some(referrer.clone()),
            user_agent: Some(ua.clone()),
            country: Some("DE".into()),
            visitor: ((offset + i) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let cells: usize = std::env::var("CELLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = RedbStore::open(&dir.path().join("stats.redb")).expect("open the store");
    let ua: Arc<str> =
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0".into();
    let referrer: Arc<str> = "https://news.example/".into();
    let mut aggregator = Aggregator::new();
    let seed = aggregator.aggregate(&events(LINKS, 0, &ua, &referrer));
    store.apply(Arc::new(seed)).await.expect("seed");
    let batches: Vec<_> = (0..20)
        .map(|round| aggregator.aggregate(&events(cells, round * 7919, &ua, &referrer)))
        .collect();
    for (round, batch) in batches.into_iter().enumerate() {
        let n = batch.links.len();
        let started = Instant::now();
        store.apply(Arc::new(batch)).await.expect("apply");
        let elapsed = started.elapsed();
        println!(
            "batch {round:>2}: {n} link-days in {:>6.1} ms: {:>5.2} us per link-day",
            elapsed.as_secs_f64() * 1e3,
            elapsed.as_secs_f64() * 1e6 / n as f64
        );
    }
}
