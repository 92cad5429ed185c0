//! The CQL link store against a real CQL engine: the test kit's Apache Cassandra 5.0
//! (ScyllaDB speaks the same protocol; `SCYLLA_NODES=host:9042` runs these against a
//! real ScyllaDB instead). A keyspace per test.

use std::sync::Arc;
use std::time::Duration;

use shortener_core::{
    ClickClaim, InsertOutcome, Link, LinkStore, RedirectKind, ShortCode, StoreError, TargetUrl,
};
use shortener_scylla::{ScyllaOptions, ScyllaStore, migrate};
use time::OffsetDateTime;

/// A migrated keyspace of its own for `test`, on `SCYLLA_NODES` or the kit's Cassandra.
async fn options(test: &str, keyspace: &str) -> Option<ScyllaOptions> {
    let nodes = match std::env::var("SCYLLA_NODES") {
        Ok(nodes) => nodes.split(',').map(str::to_owned).collect(),
        Err(_) => vec![shortener_testkit::cassandra::cassandra(test)?.node()],
    };
    let options = ScyllaOptions::single_node(nodes, keyspace);
    migrate::run(&options).await.expect("migrate");
    Some(options)
}

async fn store(options: &ScyllaOptions) -> Arc<ScyllaStore> {
    let store = ScyllaStore::connect(options).await.expect("connect");
    store.check_schema().await.expect("schema current");
    store
}

fn link(code: &str) -> Link {
    Link {
        code: ShortCode::parse(code).expect("code"),
        target: TargetUrl::parse(&format!("https://example.com/{code}")).expect("url"),
        created_at: OffsetDateTime::from_unix_timestamp(1_780_000_000).expect("time"),
        expires_at: None,
        redirect: RedirectKind::Found,
        max_clicks: None,
        owner: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_racing_through_two_sessions_have_one_winner_and_read_back() {
    let Some(options) = options("scylla links", "race").await else {
        return;
    };
    let (a, b) = (store(&options).await, store(&options).await);
    for i in 0..20 {
        let code = format!("race{i}");
        let mut mine = link(&code);
        mine.target = TargetUrl::parse("https://a.example/").expect("url");
        let mut theirs = link(&code);
        theirs.target = TargetUrl::parse("https://b.example/").expect("url");
        let (x, y) = tokio::join!(a.insert_if_absent(&mine), b.insert_if_absent(&theirs));
        let outcomes = [x.expect("a"), y.expect("b")];
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o == InsertOutcome::Inserted)
                .count(),
            1,
            "{code}: {outcomes:?}"
        );
        let stored = a.get(&mine.code).await.expect("get").expect("present");
        let winner = if outcomes[0] == InsertOutcome::Inserted {
            &mine
        } else {
            &theirs
        };
        assert_eq!(&stored, winner);
    }
    assert_eq!(
        a.get(&ShortCode::parse("absent").expect("code"))
            .await
            .expect("get"),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_create_is_settled_by_a_serial_read_of_its_request_id() {
    let Some(options) = options("scylla links", "ambiguous").await else {
        return;
    };
    let store = store(&options).await;
    // Our create went through, but its answer was lost: the SERIAL read recognises it.
    let ours = link("ours");
    let id = uuid::Uuid::new_v4();
    assert_eq!(
        store.insert_with_id(&ours, id).await.expect("insert"),
        InsertOutcome::Inserted
    );
    assert_eq!(
        store
            .resolve_ambiguous_create(&ours, id)
            .await
            .expect("settle"),
        InsertOutcome::Inserted
    );
    // Someone else's row under our code: we lost.
    assert_eq!(
        store
            .resolve_ambiguous_create(&ours, uuid::Uuid::new_v4())
            .await
            .expect("settle"),
        InsertOutcome::AlreadyExists
    );
    // Nothing was written: the create is sent again and wins.
    let lost = link("lost");
    assert_eq!(
        store
            .resolve_ambiguous_create(&lost, uuid::Uuid::new_v4())
            .await
            .expect("settle"),
        InsertOutcome::Inserted
    );
    assert!(store.get(&lost.code).await.expect("get").is_some());

    // Injected for real: an LWT timeout shorter than the transaction takes, so the
    // driver gives up on every create while Cassandra goes on with it.
    let hasty = store_with_lwt_timeout(&options, Duration::from_micros(500)).await;
    for i in 0..10 {
        let code = format!("hasty{i}");
        let outcome = hasty.insert_if_absent(&link(&code)).await;
        match outcome {
            Ok(InsertOutcome::Inserted) => {}
            other => panic!("{code}: {other:?}"),
        }
        assert!(
            store.get(&link(&code).code).await.expect("get").is_some(),
            "{code} stored"
        );
        assert_eq!(
            store.insert_if_absent(&link(&code)).await.expect("again"),
            InsertOutcome::AlreadyExists
        );
    }
}

async fn store_with_lwt_timeout(options: &ScyllaOptions, timeout: Duration) -> Arc<ScyllaStore> {
    let mut options = options.clone();
    options.lwt_timeout = timeout;
    store(&options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_link_answers_until_its_ttl_purges_it() {
    let Some(options) = options("scylla links", "ttl").await else {
        return;
    };
    let store = store(&options).await;
    let now = OffsetDateTime::now_utc();
    // Expired a day ago: still read back with its expiry (the service answers 410).
    let mut recent = link("recent");
    recent.expires_at = Some(now - time::Duration::days(1));
    store.insert_if_absent(&recent).await.expect("insert");
    let read = store
        .get(&recent.code)
        .await
        .expect("get")
        .expect("present");
    assert!(read.is_expired_at(now));
    // Expired just under the grace ago: its TTL is a second or two, then it is gone.
    let mut old = link("old");
    old.expires_at = Some(now - shortener_scylla::EXPIRED_GRACE + time::Duration::seconds(2));
    store.insert_if_absent(&old).await.expect("insert");
    assert!(store.get(&old.code).await.expect("get").is_some());
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        store.get(&old.code).await.expect("get"),
        None,
        "purged by its TTL"
    );
    let listed: Vec<String> = store
        .list(None, 10, None)
        .await
        .expect("list")
        .links
        .iter()
        .map(|(l, _)| l.code.as_str().to_owned())
        .collect();
    assert_eq!(listed, ["recent"], "the index row expired with it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn click_budgets_are_exact_across_sessions() {
    let Some(options) = options("scylla links", "budget").await else {
        return;
    };
    // One session sends idempotent reads speculatively (a second copy after 1 ms).
    let speculative = ScyllaOptions {
        speculative_after: Some(Duration::from_millis(1)),
        ..options.clone()
    };
    let (a, b) = (store(&options).await, store(&speculative).await);
    let mut capped = link("capped");
    capped.max_clicks = Some(25);
    a.insert_if_absent(&capped).await.expect("insert");
    let claims: Vec<_> = (0..40)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let code = capped.code.clone();
            tokio::spawn(async move { store.claim_click(&code).await })
        })
        .collect();
    let mut used = Vec::new();
    for claim in claims {
        match claim.await.expect("task").expect("claim") {
            ClickClaim::Claimed { used_before } => used.push(used_before),
            ClickClaim::Exhausted => {}
        }
    }
    used.sort_unstable();
    assert_eq!(
        used,
        (0..25).collect::<Vec<u64>>(),
        "each click of the budget once"
    );
    assert_eq!(
        a.claim_click(&link("nobudget").code).await.expect("claim"),
        ClickClaim::Exhausted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_pages_in_code_order_skips_corrupt_rows_and_forgets_deleted_links() {
    let Some(options) = options("scylla links", "listing").await else {
        return;
    };
    let store = store(&options).await;
    let mut codes: Vec<String> = (0..45).map(|i| format!("l{i:03}")).collect();
    for code in &codes {
        store.insert_if_absent(&link(code)).await.expect("insert");
    }
    // A row another program wrote: an unknown redirect status.
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&options.nodes)
        .use_keyspace(&options.keyspace, true)
        .build()
        .await
        .expect("session");
    session
        .query_unpaged(
            "INSERT INTO links (code, target, created_at, redirect) VALUES ('l010', 'https://x.example/', 0, 999)",
            &[],
        )
        .await
        .expect("corrupt the row");
    assert!(
        store
            .delete(&ShortCode::parse("l020").expect("code"))
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete(&ShortCode::parse("l020").expect("code"))
            .await
            .expect("delete again")
    );
    codes.retain(|c| c != "l010" && c != "l020");
    let mut listed = Vec::new();
    let mut skipped = Vec::new();
    let mut after = None;
    loop {
        let page = store.list(after.clone(), 10, None).await.expect("list");
        skipped.extend(page.skipped);
        let Some((last, _)) = page.links.last() else {
            break;
        };
        after = Some(last.code.clone());
        listed.extend(page.links.iter().map(|(l, _)| l.code.as_str().to_owned()));
    }
    assert_eq!(listed, codes);
    assert!(
        matches!(skipped.as_slice(), [StoreError::Corrupt { code, .. }] if code == "l010"),
        "{skipped:?}"
    );
    assert!(matches!(
        store.get(&ShortCode::parse("l010").expect("code")).await,
        Err(StoreError::Corrupt { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_links_statistics_spread_over_bounded_partitions() {
    use shortener_core::aggregate::{Aggregator, BatchId};
    use shortener_core::click::{CLICK_EVENT_VERSION, ClickEvent, DAY_MS};
    use shortener_core::stats::{Granularity, StatsQuery, StatsStore};
    let Some(options) = options("scylla links", "hot").await else {
        return;
    };
    let store = store(&options).await;
    // 100 days of clicks from three sources (three topic partitions).
    let first_day = 20_000_i64;
    for source in 0..3u64 {
        let events: Vec<ClickEvent> = (0..100i64)
            .flat_map(|d| {
                (0..3).map(move |i| ClickEvent {
                    v: CLICK_EVENT_VERSION,
                    id: uuid::Uuid::new_v4(),
                    code: ShortCode::parse("viral").expect("code"),
                    at_ms: (first_day + d) * DAY_MS + i,
                    referrer: None,
                    user_agent: Some("Mozilla/5.0 Firefox/121.0".into()),
                    country: None,
                    visitor: (d * 3 + i) as u64,
                })
            })
            .collect();
        let mut batch = Aggregator::new().aggregate(&events);
        batch.id = Some(BatchId {
            source: format!("clicks/{source}"),
            first: 0,
            last: 299,
        });
        store.apply(Arc::new(batch)).await.expect("apply");
    }
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&options.nodes)
        .use_keyspace(&options.keyspace, true)
        .build()
        .await
        .expect("session");
    let rows = session
        .query_unpaged(
            "SELECT month, day FROM stats_days WHERE code = 'viral' ALLOW FILTERING",
            &[],
        )
        .await
        .expect("scan")
        .into_rows_result()
        .expect("rows");
    let mut per_partition = std::collections::BTreeMap::<i32, usize>::new();
    for row in rows.rows::<(i32, i32)>().expect("typed") {
        let (month, _) = row.expect("row");
        *per_partition.entry(month).or_default() += 1;
    }
    // 100 days fall in 4 partitions of 32 days; none holds more than 32 days x 3 sources.
    assert_eq!(per_partition.len(), 4, "{per_partition:?}");
    assert!(
        per_partition.values().all(|&rows| rows <= 32 * 3),
        "{per_partition:?}"
    );
    assert_eq!(per_partition.values().sum::<usize>(), 300);
    // A 90-day range read merges them: every click of the range counted once.
    let query = StatsQuery::new(
        first_day * DAY_MS,
        (first_day + 90) * DAY_MS,
        Granularity::Day,
        10,
    )
    .expect("query");
    let stats = store
        .link_stats(&ShortCode::parse("viral").expect("code"), query)
        .await
        .expect("stats");
    let clicks: u64 = stats.series.iter().map(|(_, counts)| counts.total).sum();
    assert_eq!(clicks, 90 * 3 * 3);
    assert_eq!(stats.totals.total, 90 * 3 * 3);
    assert_eq!(
        store
            .totals(&ShortCode::parse("viral").expect("code"))
            .await
            .expect("totals")
            .total,
        900
    );
}
