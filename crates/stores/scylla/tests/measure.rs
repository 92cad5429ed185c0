//! Measurements on the test kit's Cassandra, run by hand (docs/benchmarks.md, "ScyllaDB
//! backend"): creates by LWT against plain inserts, and statistics writes.
//!
//! `cargo test --release -p shortener-scylla --test measure -- --ignored --nocapture`

use std::sync::Arc;
use std::time::{Duration, Instant};

use scylla::statement::Consistency;
use shortener_core::aggregate::{Aggregator, BatchId};
use shortener_core::click::{CLICK_EVENT_VERSION, ClickEvent};
use shortener_core::stats::StatsStore;
use shortener_core::{Link, LinkStore, RedirectKind, ShortCode, TargetUrl};
use shortener_scylla::{ScyllaOptions, ScyllaStore, migrate};
use time::OffsetDateTime;

const TASKS: usize = 32;

async fn store(keyspace: &str) -> Option<(ScyllaOptions, Arc<ScyllaStore>)> {
    let node = shortener_testkit::cassandra::cassandra("scylla measurements")?.node();
    let options = ScyllaOptions::single_node(vec![node], keyspace);
    migrate::run(&options).await.expect("migrate");
    let store = ScyllaStore::connect(&options).await.expect("connect");
    Some((options, store))
}

/// Runs `TASKS` tasks of `per_task` timed calls of `call(task, i)` at once; reports them.
async fn concurrently<F, Fut>(what: &str, per_task: usize, call: F)
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    let at = Instant::now();
                    call(t, i).await;
                    latencies.push(at.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    report(what, all, started.elapsed());
}

fn report(what: &str, mut latencies: Vec<Duration>, elapsed: Duration) {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    eprintln!(
        "{what}: {} in {elapsed:.2?}: {:.0}/s, p50 {:.2?}, p99 {:.2?}",
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        at(0.5),
        at(0.99)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn creates_by_lwt_against_plain_inserts() {
    let Some((options, store)) = store("measure_creates").await else {
        return;
    };
    for round in 0..2 {
        // LWT: INSERT ... IF NOT EXISTS, the store's create.
        let lwt = store.clone();
        concurrently(
            "create by LWT (index row + INSERT IF NOT EXISTS)",
            300,
            move |t, i| {
                let store = lwt.clone();
                async move {
                    let link = Link {
                        code: ShortCode::parse(&format!("r{round}t{t}i{i}")).expect("code"),
                        target: TargetUrl::parse("https://example.com/x").expect("url"),
                        created_at: OffsetDateTime::now_utc(),
                        expires_at: None,
                        redirect: RedirectKind::Found,
                        max_clicks: None,
                        owner: None,
                    };
                    store.insert_if_absent(&link).await.expect("insert");
                }
            },
        )
        .await;

        // Plain: the same row without IF NOT EXISTS (last write wins: no uniqueness).
        let session = Arc::new(
            scylla::client::session_builder::SessionBuilder::new()
                .known_nodes(&options.nodes)
                .use_keyspace(&options.keyspace, true)
                .build()
                .await
                .expect("session"),
        );
        let mut plain = session
            .prepare("INSERT INTO links (code, target, redirect) VALUES (?, ?, 302)")
            .await
            .expect("prepare");
        plain.set_consistency(Consistency::LocalQuorum);
        let plain = Arc::new(plain);
        concurrently("plain INSERT", 300, move |t, i| {
            let (session, plain) = (session.clone(), plain.clone());
            async move {
                session
                    .execute_unpaged(
                        &plain,
                        (format!("p{round}t{t}i{i}"), "https://example.com/x"),
                    )
                    .await
                    .expect("insert");
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn statistics_writes_as_the_consumer_makes_them() {
    let Some((_, store)) = store("measure_stats").await else {
        return;
    };
    // Batches as a consumer's partition writes them: 2,000 clicks over 1,000 links.
    let now = OffsetDateTime::now_utc().unix_timestamp() * 1_000;
    let mut cells = 0;
    let started = Instant::now();
    let mut latencies = Vec::new();
    for batch_no in 0..10u64 {
        let events: Vec<ClickEvent> = (0..2_000u64)
            .map(|i| ClickEvent {
                v: CLICK_EVENT_VERSION,
                id: uuid::Uuid::new_v4(),
                code: ShortCode::parse(&format!("s{}", (i * 7919 + batch_no) % 1_000))
                    .expect("code"),
                at_ms: now,
                referrer: Some("https://news.example/".into()),
                user_agent: Some("Mozilla/5.0 Firefox/121.0".into()),
                country: None,
                visitor: i,
            })
            .collect();
        let mut batch = Aggregator::new().aggregate(&events);
        batch.id = Some(BatchId {
            source: "clicks/0".into(),
            first: batch_no * 2_000,
            last: batch_no * 2_000 + 1_999,
        });
        cells += batch.cells;
        let at = Instant::now();
        store.apply(Arc::new(batch)).await.expect("apply");
        latencies.push(at.elapsed());
    }
    let elapsed = started.elapsed();
    eprintln!(
        "statistics: 10 batches of 2,000 clicks, {cells} link-days in {elapsed:.2?}: {:.0} link-days/s, {:.0} clicks/s; per batch {:?}",
        cells as f64 / elapsed.as_secs_f64(),
        20_000.0 / elapsed.as_secs_f64(),
        latencies
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn a_range_read_of_a_million_clicks_over_ninety_days() {
    use shortener_core::click::DAY_MS;
    use shortener_core::stats::{Granularity, StatsQuery};
    let Some((_, store)) = store("measure_range").await else {
        return;
    };
    // 1,000,000 clicks of one link over 90 days, from 6 sources (topic partitions),
    // as a consumer would have written them: ~11,111 a day.
    let first_day = OffsetDateTime::now_utc().unix_timestamp() * 1_000 / DAY_MS - 90;
    let referrers: Vec<String> = (0..200).map(|i| format!("https://r{i}.example/")).collect();
    for source in 0..6u64 {
        let events: Vec<ClickEvent> = (0..1_000_000u64 / 6)
            .map(|i| ClickEvent {
                v: CLICK_EVENT_VERSION,
                id: uuid::Uuid::new_v4(),
                code: ShortCode::parse("popular").expect("code"),
                at_ms: (first_day + (i % 90) as i64) * DAY_MS + (i as i64 % DAY_MS),
                referrer: Some(referrers[(i % 200) as usize].as_str().into()),
                user_agent: Some("Mozilla/5.0 Firefox/121.0".into()),
                country: None,
                visitor: i,
            })
            .collect();
        let mut batch = Aggregator::new().aggregate(&events);
        batch.id = Some(BatchId {
            source: format!("clicks/{source}"),
            first: 0,
            last: events.len() as u64 - 1,
        });
        store.apply(Arc::new(batch)).await.expect("apply");
    }
    let code = ShortCode::parse("popular").expect("code");
    let mut latencies = Vec::new();
    let started = Instant::now();
    for _ in 0..200 {
        let query = StatsQuery::new(
            first_day * DAY_MS,
            (first_day + 90) * DAY_MS,
            Granularity::Day,
            10,
        )
        .expect("query");
        let at = Instant::now();
        let stats = store.link_stats(&code, query).await.expect("stats");
        latencies.push(at.elapsed());
        assert!(stats.totals.total >= 999_990, "{}", stats.totals.total);
    }
    report(
        "stats range read, 1,000,000 clicks over 90 days, 6 sources",
        latencies,
        started.elapsed(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn reads_of_links_and_click_budget_claims() {
    let Some((_, store)) = store("measure_reads").await else {
        return;
    };
    let links = 2_000;
    for i in 0..links {
        let link = Link {
            code: ShortCode::parse(&format!("g{i}")).expect("code"),
            target: TargetUrl::parse("https://example.com/landing").expect("url"),
            created_at: OffsetDateTime::now_utc(),
            expires_at: None,
            redirect: RedirectKind::Found,
            max_clicks: Some(1_000_000),
            owner: None,
        };
        store.insert_if_absent(&link).await.expect("insert");
    }
    for (what, claims) in [
        ("get (what an L1 miss asks the store)", false),
        ("claim_click (LWT)", true),
    ] {
        let store = store.clone();
        concurrently(what, if claims { 100 } else { 1_000 }, move |t, i| {
            let store = store.clone();
            async move {
                let code =
                    ShortCode::parse(&format!("g{}", (t * 7919 + i * 31) % links)).expect("code");
                if claims {
                    store.claim_click(&code).await.expect("claim");
                } else {
                    store.get(&code).await.expect("get").expect("present");
                }
            }
        })
        .await;
    }
}
