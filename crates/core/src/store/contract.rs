//! The storage contract as tests: one set of cases, written once, run against every
//! backend.
//!
//! The guarantees in [`crate::store`] and [`crate::stats`] are only worth something if
//! every backend gives them, so they are checked by the same code for each. A backend's
//! test file implements [`Harness`] (fresh, empty storage, and more handles on the same
//! data, as other instances would open them) and invokes [`store_contract!`](crate::store_contract) once, which
//! expands to one `#[tokio::test]` per case below:
//!
//! ```ignore
//! shortener_core::store_contract!(my_backend());   // an async fn returning Option<impl Harness>
//! ```
//!
//! The factory returns `None` when the backend's server is not available on this machine
//! (the test is then skipped, loudly, by the factory); CI makes that an error.
//!
//! Compiled for this crate's tests and, with the `contract` feature, for other crates'.

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::access::{KeyHasher, KeyStore, Owner, Scopes};
use crate::aggregate::{Aggregator, BatchAggregate, BatchId, Counts, Dimension, HOUR_MS};
use crate::click::{CLICK_EVENT_VERSION, ClickEvent, DAY_MS};
use crate::stats::{Granularity, StatsQuery, StatsStore};
use crate::{ClickClaim, InsertOutcome, Link, LinkStore, RedirectKind, ShortCode, TargetUrl};

/// A backend under test: how the suite gets fresh storage, more handles on it, and the
/// rows only a test writes (named `Harness`, not `Backend`, which is also a
/// [`crate::StoreError`] variant).
#[async_trait]
pub trait Harness: Send + Sync + 'static {
    /// The store type; one value serves links and statistics, as in the service.
    type Store: LinkStore + StatsStore + KeyStore;

    /// The store the case starts with: empty, and private to this case.
    fn store(&self) -> Arc<Self::Store>;

    /// Another handle on the same data, with its own connections, as a second instance
    /// of the service would open it. A backend that cannot be opened twice (an embedded
    /// file is locked by its process) returns the same handle.
    async fn another_handle(&self) -> Arc<Self::Store>;

    /// Overwrites the stored link `code` with a row this backend cannot decode, as an
    /// older version, a bug or a hand edit could leave it.
    async fn corrupt(&self, code: &ShortCode);

    /// Overwrites the statistics row of `code` on `day` (which exists) with bytes no read
    /// can decode: what makes a batch that touches it fail half way.
    async fn corrupt_day(&self, code: &ShortCode, day: i64);
}

/// Expands to one `#[tokio::test]` per contract case, for the backend that `$fresh`
/// (an `async fn() -> Option<impl Harness>`) makes.
#[macro_export]
macro_rules! store_contract {
    ($fresh:expr) => {
        $crate::store_contract!(@cases $fresh;
            insert_if_absent_signals_a_taken_code,
            racing_inserts_through_separate_handles_have_one_winner,
            a_batch_insert_fails_only_the_taken_codes,
            racing_batches_through_separate_handles_have_one_winner_per_code,
            click_budgets_are_exact_across_handles_or_not_kept_at_all,
            expired_links_are_returned_with_their_expiry,
            delete_removes_the_link_and_its_statistics,
            list_pages_in_code_order_with_totals,
            a_row_that_cannot_be_decoded_costs_only_its_own_link,
            links_at_the_edges_of_what_is_accepted_read_back,
            batches_accumulate_and_ranges_read_back,
            a_replayed_batch_counts_once_from_any_handle,
            writers_of_different_sources_on_one_link_both_count,
            a_new_owner_replaying_from_an_older_position_counts_each_click_once,
            a_batch_that_fails_half_way_counts_once_when_retried,
            a_batch_without_clicks_still_moves_its_position,
            range_reads_return_only_the_range,
            visitor_sketches_merge_across_days_and_batches,
            top_n_ranks_values_over_the_range,
            a_fresh_store_answers_reads_with_zeros,
            keys_are_stored_listed_and_revoked_for_every_handle,
            links_keep_their_owner_and_list_by_owner,
        );
    };
    (@cases $fresh:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some(backend) = $fresh.await {
                    $crate::store::contract::$case(&backend).await;
                }
            }
        )*
    };
}

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const BOT: &str = "Twitterbot/1.0";
/// A UTC day number inside the range every backend must store (2024-10-04).
const DAY: i64 = 20_000;

fn code(text: &str) -> ShortCode {
    ShortCode::parse(text).expect("valid code")
}

fn link(text: &str, url: &str) -> Link {
    Link {
        code: code(text),
        target: TargetUrl::parse(url).expect("valid url"),
        created_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid time"),
        expires_at: Some(OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("valid")),
        redirect: RedirectKind::PermanentRedirect,
        max_clicks: Some(3),
        owner: None,
    }
}

fn click(text: &str, at_ms: i64, visitor: u64, ua: &str, referrer: &str) -> ClickEvent {
    ClickEvent {
        v: CLICK_EVENT_VERSION,
        id: uuid::Uuid::now_v7(),
        code: code(text),
        at_ms,
        referrer: Some(referrer.into()),
        user_agent: Some(ua.into()),
        country: Some("NL".into()),
        visitor: mix(visitor),
    }
}

/// SplitMix64's finalizer: visitor ids as well spread as the service's keyed hashes.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn batch(events: &[ClickEvent]) -> Arc<BatchAggregate> {
    Arc::new(Aggregator::new().aggregate(events))
}

/// Stores a link to `https://example.com/` under each code.
async fn insert_links(store: &impl LinkStore, codes: &[&str]) {
    for c in codes {
        store
            .insert_if_absent(&link(c, "https://example.com/"))
            .await
            .expect("insert");
    }
}

fn counts(total: u64, human: u64, bot: u64) -> Counts {
    Counts { total, human, bot }
}

fn query(from_ms: i64, to_ms: i64, granularity: Granularity) -> StatsQuery {
    StatsQuery::new(from_ms, to_ms, granularity, 5).expect("valid query")
}

/// Insert-if-absent: the first insert wins, a second of the same code reports the
/// collision and leaves the first untouched.
pub async fn insert_if_absent_signals_a_taken_code(backend: &impl Harness) {
    let store = backend.store();
    let first = link("taken", "https://first.example/a?b=c");
    let second = link("taken", "https://second.example/");
    assert_eq!(
        store.insert_if_absent(&first).await.expect("insert"),
        InsertOutcome::Inserted
    );
    assert_eq!(
        store.insert_if_absent(&second).await.expect("insert"),
        InsertOutcome::AlreadyExists
    );
    assert_eq!(store.get(&first.code).await.expect("get"), Some(first));
    assert_eq!(store.get(&code("absent")).await.expect("get"), None);
}

/// 64 inserts of one alias, racing through eight handles (as eight instances would):
/// exactly one wins, and the stored link is the winner's.
pub async fn racing_inserts_through_separate_handles_have_one_winner(backend: &impl Harness) {
    let mut handles = Vec::new();
    for _ in 0..8 {
        handles.push(backend.another_handle().await);
    }
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = handles[i % handles.len()].clone();
            tokio::spawn(async move {
                let candidate = link("race", &format!("https://e{i}.example/"));
                let outcome = store.insert_if_absent(&candidate).await.expect("insert");
                (outcome, candidate)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (outcome, candidate) = task.await.expect("join");
        if outcome == InsertOutcome::Inserted {
            winners.push(candidate);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one insert wins");
    let stored = backend.store().get(&code("race")).await.expect("get");
    assert_eq!(stored.as_ref(), winners.first());
}

/// A batch insert (what group commit sends) answers each link on its own: a code taken
/// before the batch, or by an earlier link of the same batch, fails that link alone, and
/// every other link is stored.
pub async fn a_batch_insert_fails_only_the_taken_codes(backend: &impl Harness) {
    let store = backend.store();
    insert_links(&*store, &["before"]).await;
    let batch = [
        link("fresh1", "https://one.example/"),
        link("before", "https://two.example/"),
        link("twice", "https://first.example/"),
        link("twice", "https://second.example/"),
        link("fresh2", "https://three.example/"),
    ];
    let outcomes = outcomes_of(store.insert_batch(&batch).await);
    use InsertOutcome::{AlreadyExists, Inserted};
    assert_eq!(
        outcomes,
        [Inserted, AlreadyExists, Inserted, AlreadyExists, Inserted]
    );
    for stored in [&batch[0], &batch[2], &batch[4]] {
        assert_eq!(
            store.get(&stored.code).await.expect("get").as_ref(),
            Some(stored)
        );
    }
    let before = store
        .get(&code("before"))
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(before.target.as_str(), "https://example.com/");
    assert!(store.insert_batch(&[]).await.is_empty());
}

/// Each link's outcome of a batch insert, which must all be answers, not errors.
fn outcomes_of(outcomes: Vec<Result<InsertOutcome, crate::StoreError>>) -> Vec<InsertOutcome> {
    outcomes
        .into_iter()
        .map(|outcome| outcome.expect("each link answered"))
        .collect()
}

/// Batches that share codes, racing through separate handles: each code has exactly one
/// winner across all of them, and none of them deadlocks.
pub async fn racing_batches_through_separate_handles_have_one_winner_per_code(
    backend: &impl Harness,
) {
    let mut handles = Vec::new();
    for _ in 0..8 {
        handles.push(backend.another_handle().await);
    }
    for round in 0..4 {
        let start = Arc::new(tokio::sync::Barrier::new(handles.len()));
        let tasks: Vec<_> = handles
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let (store, start) = (store.clone(), start.clone());
                tokio::spawn(async move {
                    // Half of the batches list the codes backwards: a backend that
                    // locks rows in the order given would deadlock here.
                    let order: Vec<usize> = match i % 2 {
                        0 => (0..16).collect(),
                        _ => (0..16).rev().collect(),
                    };
                    let batch: Vec<Link> = order
                        .iter()
                        .map(|c| link(&format!("r{round}c{c}"), &format!("https://e{i}.example/")))
                        .collect();
                    start.wait().await;
                    let outcomes = outcomes_of(store.insert_batch(&batch).await);
                    order.into_iter().zip(outcomes).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut wins = [0; 16];
        for task in tasks {
            for (c, outcome) in task.await.expect("join") {
                wins[c] += usize::from(outcome == InsertOutcome::Inserted);
            }
        }
        assert_eq!(wins, [1; 16], "one winner per code in round {round}");
    }
}

/// `max_clicks` budgets. A backend that keeps them: 80 claims on a link with 10 clicks,
/// racing through eight handles, succeed exactly 10 times, each seeing a different count
/// before it; a link without `max_clicks`, an unknown code and a deleted-and-recreated
/// link behave. A backend that does not keep them says so and refuses every claim (the
/// service then counts in its one process).
pub async fn click_budgets_are_exact_across_handles_or_not_kept_at_all(backend: &impl Harness) {
    let store = backend.store();
    let mut limited = link("limited", "https://example.com/");
    limited.max_clicks = Some(10);
    store.insert_if_absent(&limited).await.expect("insert");
    if !store.keeps_click_budgets() {
        assert!(store.claim_click(&limited.code).await.is_err());
        return;
    }
    let mut handles = Vec::new();
    for _ in 0..8 {
        handles.push(backend.another_handle().await);
    }
    let tasks: Vec<_> = (0..80)
        .map(|i| {
            let store = handles[i % handles.len()].clone();
            tokio::spawn(async move { store.claim_click(&code("limited")).await.expect("claim") })
        })
        .collect();
    let mut before = Vec::new();
    for task in tasks {
        if let ClickClaim::Claimed { used_before } = task.await.expect("join") {
            before.push(used_before);
        }
    }
    before.sort_unstable();
    assert_eq!(
        before,
        (0..10).collect::<Vec<u64>>(),
        "exactly max_clicks claims"
    );

    let mut unlimited = link("unlimited", "https://example.com/");
    unlimited.max_clicks = None;
    store.insert_if_absent(&unlimited).await.expect("insert");
    for code in [&unlimited.code, &code("nosuch")] {
        assert_eq!(
            store.claim_click(code).await.expect("claim"),
            ClickClaim::Exhausted
        );
    }
    assert!(store.delete(&limited.code).await.expect("delete"));
    store
        .insert_if_absent(&limited)
        .await
        .expect("insert again");
    assert_eq!(
        store.claim_click(&limited.code).await.expect("claim"),
        ClickClaim::Claimed { used_before: 0 },
        "a recreated link starts with its whole budget"
    );
}

/// Expiry is the caller's policy: the store keeps and returns an expired link with its
/// expiry instant, and a link without one as such.
pub async fn expired_links_are_returned_with_their_expiry(backend: &impl Harness) {
    let store = backend.store();
    let mut expired = link("old", "https://example.com/old");
    expired.expires_at = Some(OffsetDateTime::from_unix_timestamp(1_000_000_000).expect("time"));
    let mut forever = link("forever", "https://example.com/");
    forever.expires_at = None;
    forever.max_clicks = None;
    forever.redirect = RedirectKind::Found;
    for l in [&expired, &forever] {
        store.insert_if_absent(l).await.expect("insert");
    }
    let got = store.get(&expired.code).await.expect("get").expect("kept");
    assert!(got.is_expired_at(OffsetDateTime::now_utc()));
    assert_eq!(got, expired);
    assert_eq!(store.get(&forever.code).await.expect("get"), Some(forever));
}

/// Delete removes the link and purges its statistics; other links keep theirs, and a
/// second delete reports that nothing was there.
pub async fn delete_removes_the_link_and_its_statistics(backend: &impl Harness) {
    let store = backend.store();
    insert_links(&*store, &["gone", "kept"]).await;
    let at = DAY * DAY_MS;
    store
        .apply(batch(&[
            click("gone", at, 1, CHROME, "https://a.example/"),
            click("kept", at, 2, CHROME, "https://a.example/"),
        ]))
        .await
        .expect("apply");
    assert!(store.delete(&code("gone")).await.expect("delete"));
    assert!(!store.delete(&code("gone")).await.expect("delete again"));
    assert_eq!(store.get(&code("gone")).await.expect("get"), None);
    assert_eq!(
        store.totals(&code("gone")).await.expect("totals"),
        Counts::default()
    );
    let days = query(at, at + DAY_MS, Granularity::Day);
    let stats = store.link_stats(&code("gone"), days).await.expect("stats");
    assert!(stats.series.is_empty());
    assert_eq!(stats.unique_visitors, 0);
    assert_eq!(
        store.totals(&code("kept")).await.expect("totals"),
        counts(1, 1, 0)
    );
}

/// Listing pages through links in code order after a cursor, each with its totals.
pub async fn list_pages_in_code_order_with_totals(backend: &impl Harness) {
    let store = backend.store();
    insert_links(&*store, &["c", "a", "e", "b", "d"]).await;
    let at = DAY * DAY_MS;
    store
        .apply(batch(&[
            click("b", at, 1, CHROME, "https://a.example/"),
            click("b", at, 2, BOT, "https://a.example/"),
            click("d", at, 3, CHROME, "https://a.example/"),
        ]))
        .await
        .expect("apply");
    let page = |links: Vec<(Link, Counts)>| {
        links
            .into_iter()
            .map(|(l, c)| (l.code.to_string(), c.total))
            .collect::<Vec<_>>()
    };
    let first = store.list(None, 2, None).await.expect("page").links;
    assert_eq!(first[0].0, link("a", "https://example.com/"));
    assert_eq!(page(first), [("a".into(), 0), ("b".into(), 2)]);
    let rest = store
        .list(Some(code("b")), 10, None)
        .await
        .expect("page")
        .links;
    assert_eq!(
        page(rest),
        [("c".into(), 0), ("d".into(), 1), ("e".into(), 0)]
    );
    assert!(
        store
            .list(Some(code("e")), 10, None)
            .await
            .expect("page")
            .links
            .is_empty()
    );
}

/// A row no read can decode fails its own link's reads, and nothing else: a listing
/// skips it (and names it), fills its page from the rows after it, and every other
/// link reads as before.
pub async fn a_row_that_cannot_be_decoded_costs_only_its_own_link(backend: &impl Harness) {
    let store = backend.store();
    insert_links(&*store, &["a", "b", "c", "d"]).await;
    backend.corrupt(&code("b")).await;
    assert!(
        matches!(store.get(&code("b")).await, Err(crate::StoreError::Corrupt { ref code, .. }) if code == "b"),
        "the row's own read fails as corrupt"
    );
    let codes = |page: &crate::ListPage| {
        page.links
            .iter()
            .map(|(l, _)| l.code.to_string())
            .collect::<Vec<_>>()
    };
    let first = store
        .list(None, 2, None)
        .await
        .expect("a page despite the bad row");
    assert_eq!(codes(&first), ["a", "c"], "filled from the rows after it");
    assert!(
        matches!(first.skipped.as_slice(), [crate::StoreError::Corrupt { code, .. }] if code == "b"),
        "{:?}",
        first.skipped
    );
    let rest = store.list(Some(code("c")), 10, None).await.expect("page");
    assert_eq!(codes(&rest), ["d"]);
    assert!(rest.skipped.is_empty());
    for other in ["a", "c", "d"] {
        assert!(store.get(&code(other)).await.expect("get").is_some());
    }
    assert!(
        store
            .delete(&code("b"))
            .await
            .expect("a bad row can be deleted")
    );
    let all = store.list(None, 10, None).await.expect("page");
    assert_eq!(
        (codes(&all), all.skipped.len()),
        (vec!["a".into(), "c".into(), "d".into()], 0)
    );
}

/// The largest values the API accepts (`crate::instant`) are stored and read back
/// unchanged, by `get` and by `list`: what is accepted can always be read.
pub async fn links_at_the_edges_of_what_is_accepted_read_back(backend: &impl Harness) {
    let store = backend.store();
    let longest_code = "Z".repeat(crate::code::MAX_CODE_LEN);
    let longest_url = format!(
        "https://example.com/{}",
        "p".repeat(crate::target::MAX_URL_LEN - 20)
    );
    let mut edge = link(&longest_code, &longest_url);
    edge.expires_at = Some(crate::instant::LATEST);
    edge.max_clicks = Some(crate::instant::MAX_CLICKS);
    edge.created_at = crate::instant::EARLIEST;
    let mut unicode = link(
        "u",
        "https://xn--e1afmkfd.xn--p1ai/%D0%BF%D1%83%D1%82%D1%8C?q=%E2%9C%93",
    );
    unicode.expires_at = Some(crate::instant::storable(OffsetDateTime::now_utc()).expect("now"));
    unicode.max_clicks = None;
    for l in [&edge, &unicode] {
        assert_eq!(
            store.insert_if_absent(l).await.expect("insert"),
            InsertOutcome::Inserted
        );
        assert_eq!(store.get(&l.code).await.expect("get").as_ref(), Some(l));
    }
    let page = store.list(None, 10, None).await.expect("list");
    assert!(page.skipped.is_empty(), "{:?}", page.skipped);
    let listed: Vec<&Link> = page.links.iter().map(|(l, _)| l).collect();
    assert_eq!(listed, [&edge, &unicode]);
}

/// Batches add up: totals, daily and hourly series, and the human/bot split.
pub async fn batches_accumulate_and_ranges_read_back(backend: &impl Harness) {
    let store = backend.store();
    let day0 = DAY * DAY_MS;
    let first: Vec<_> = (0..10)
        .map(|i| {
            click(
                "abc",
                day0 + i * HOUR_MS,
                i as u64,
                CHROME,
                "https://r.example/",
            )
        })
        .collect();
    let second: Vec<_> = (0..5)
        .map(|i| {
            click(
                "abc",
                day0 + DAY_MS + i,
                100 + i as u64,
                BOT,
                "https://r.example/",
            )
        })
        .collect();
    for events in [&first[..], &second[..], &first[..2]] {
        store.apply(batch(events)).await.expect("apply");
    }
    let abc = code("abc");
    assert_eq!(store.totals(&abc).await.expect("totals"), counts(17, 12, 5));
    let days = query(day0, day0 + 2 * DAY_MS, Granularity::Day);
    let stats = store.link_stats(&abc, days).await.expect("stats");
    assert_eq!(stats.totals, counts(17, 12, 5));
    assert_eq!(
        stats.series,
        vec![(day0, counts(12, 12, 0)), (day0 + DAY_MS, counts(5, 0, 5))]
    );
    let hours = query(day0, day0 + 3 * HOUR_MS, Granularity::Hour);
    let stats = store.link_stats(&abc, hours).await.expect("stats");
    assert_eq!(
        stats.series,
        vec![
            (day0, counts(2, 2, 0)),
            (day0 + HOUR_MS, counts(2, 2, 0)),
            (day0 + 2 * HOUR_MS, counts(1, 1, 0))
        ]
    );
}

/// A batch with an id applies once: a replay of it (or of an older one) from the same
/// source is a no-op, even through another handle; other sources and later batches
/// apply, and a batch without an id always applies.
pub async fn a_replayed_batch_counts_once_from_any_handle(backend: &impl Harness) {
    let store = backend.store();
    let other = backend.another_handle().await;
    let events: Vec<_> = (0..4)
        .map(|i| {
            click(
                "abc",
                DAY * DAY_MS + i,
                i as u64,
                CHROME,
                "https://r.example/",
            )
        })
        .collect();
    let with_id = |source: &str, seq| {
        let mut batch = Aggregator::new().aggregate(&events);
        batch.id = Some(BatchId::single(source, seq));
        Arc::new(batch)
    };
    store.apply(with_id("a", 1)).await.expect("apply");
    store
        .apply(with_id("a", 1))
        .await
        .expect("a replay is no error");
    other
        .apply(with_id("a", 1))
        .await
        .expect("nor through another handle");
    store
        .apply(with_id("a", 0))
        .await
        .expect("nor an older batch");
    other.apply(with_id("b", 1)).await.expect("another source");
    store.apply(with_id("a", 2)).await.expect("the next one");
    store
        .apply(batch(&events))
        .await
        .expect("no id: always applies");
    assert_eq!(store.totals(&code("abc")).await.expect("totals").total, 16);
    let days = query(DAY * DAY_MS, (DAY + 1) * DAY_MS, Granularity::Day);
    let stats = other.link_stats(&code("abc"), days).await.expect("stats");
    assert_eq!(stats.series, vec![(DAY * DAY_MS, counts(16, 16, 0))]);
    assert_eq!(stats.unique_visitors, 4);
}

/// A range read returns the buckets inside the range only, for one link only.
pub async fn range_reads_return_only_the_range(backend: &impl Harness) {
    let store = backend.store();
    let events: Vec<_> = (0..5)
        .flat_map(|d| {
            [
                click(
                    "abc",
                    (DAY + d) * DAY_MS + 5 * HOUR_MS,
                    1,
                    CHROME,
                    "https://r/",
                ),
                click("abd", (DAY + d) * DAY_MS, 1, CHROME, "https://r/"),
            ]
        })
        .collect();
    store.apply(batch(&events)).await.expect("apply");
    let abc = code("abc");
    let days = query((DAY + 1) * DAY_MS, (DAY + 3) * DAY_MS, Granularity::Day);
    let stats = store.link_stats(&abc, days).await.expect("stats");
    assert_eq!(
        stats.series,
        vec![
            ((DAY + 1) * DAY_MS, counts(1, 1, 0)),
            ((DAY + 2) * DAY_MS, counts(1, 1, 0))
        ]
    );
    let start = (DAY + 2) * DAY_MS + 5 * HOUR_MS;
    let hours = query(start, start + HOUR_MS, Granularity::Hour);
    let stats = store.link_stats(&abc, hours).await.expect("stats");
    assert_eq!(stats.series, vec![(start, counts(1, 1, 0))]);
    let before = query((DAY - 30) * DAY_MS, DAY * DAY_MS, Granularity::Day);
    assert!(
        store
            .link_stats(&abc, before)
            .await
            .expect("stats")
            .series
            .is_empty()
    );
}

/// Unique visitors: a visitor counts once per range however many batches and days saw
/// them, and sketches of different days merge (exact while small, then the HyperLogLog
/// estimate within its error).
pub async fn visitor_sketches_merge_across_days_and_batches(backend: &impl Harness) {
    let store = backend.store();
    let day0 = DAY * DAY_MS;
    // Day 0: visitors 0..3000; day 1: 2000..5000, in batches of 500.
    let events: Vec<_> = (0..3000u64)
        .map(|v| click("abc", day0 + v as i64, v, CHROME, "https://r/"))
        .chain(
            (2000..5000u64)
                .map(|v| click("abc", day0 + DAY_MS + v as i64, v, CHROME, "https://r/")),
        )
        .collect();
    for chunk in events.chunks(500) {
        store.apply(batch(chunk)).await.expect("apply");
    }
    let one_day = query(day0, day0 + DAY_MS, Granularity::Day);
    let both = query(day0, day0 + 2 * DAY_MS, Granularity::Day);
    let abc = code("abc");
    let day = store.link_stats(&abc, one_day).await.expect("stats");
    let all = store.link_stats(&abc, both).await.expect("stats");
    let within = |estimate: u64, truth: f64| (estimate as f64 - truth).abs() / truth < 0.05;
    assert!(
        within(day.unique_visitors, 3000.0),
        "{}",
        day.unique_visitors
    );
    assert!(
        within(all.unique_visitors, 5000.0),
        "{}",
        all.unique_visitors
    );
    assert_eq!(all.totals.total, 6000);
}

/// Top-N per dimension, over the days of the range, largest first.
pub async fn top_n_ranks_values_over_the_range(backend: &impl Harness) {
    let store = backend.store();
    let day0 = DAY * DAY_MS;
    let mut events = Vec::new();
    for (i, (referrer, n)) in [
        ("https://a.example/x", 5),
        ("https://b.example/", 3),
        ("https://c.example/", 1),
    ]
    .iter()
    .enumerate()
    {
        for k in 0..*n {
            events.push(click(
                "abc",
                day0 + i as i64 * DAY_MS / 2 + k,
                k as u64,
                CHROME,
                referrer,
            ));
        }
    }
    events.push(click(
        "abc",
        day0 + 2 * DAY_MS,
        9,
        BOT,
        "https://b.example/",
    ));
    store.apply(batch(&events)).await.expect("apply");
    let top = |stats: &crate::stats::LinkStats, dimension: Dimension| {
        stats
            .top
            .iter()
            .find(|(d, _)| *d == dimension)
            .map(|(_, values)| values.clone())
            .expect("dimension present")
    };
    let two_days = query(day0, day0 + 2 * DAY_MS, Granularity::Day);
    let stats = store
        .link_stats(&code("abc"), two_days)
        .await
        .expect("stats");
    assert_eq!(
        top(&stats, Dimension::Referrer),
        vec![
            ("a.example".to_owned(), 5),
            ("b.example".to_owned(), 3),
            ("c.example".to_owned(), 1)
        ]
    );
    assert_eq!(top(&stats, Dimension::Country), vec![("NL".to_owned(), 9)]);
    let three_days = query(day0, day0 + 3 * DAY_MS, Granularity::Day);
    let stats = store
        .link_stats(&code("abc"), three_days)
        .await
        .expect("stats");
    assert_eq!(
        top(&stats, Dimension::Referrer)[1],
        ("b.example".to_owned(), 4)
    );
}

/// A store that never saw a click answers with zeros, not errors.
pub async fn a_fresh_store_answers_reads_with_zeros(backend: &impl Harness) {
    let store = backend.store();
    let never = code("never");
    assert_eq!(
        store.totals(&never).await.expect("totals"),
        Counts::default()
    );
    let stats = store
        .link_stats(&never, query(0, DAY_MS, Granularity::Hour))
        .await
        .expect("stats");
    assert_eq!(
        (stats.totals, stats.unique_visitors, stats.series.len()),
        (Counts::default(), 0, 0)
    );
    assert!(
        store
            .list(None, 10, None)
            .await
            .expect("list")
            .links
            .is_empty()
    );
    store.ping().await.expect("ping");
}

/// All-time clicks of `text`.
async fn total(store: &impl StatsStore, text: &str) -> u64 {
    store.totals(&code(text)).await.expect("totals").total
}

/// A batch of `source`'s positions `first..=last` holding `events`.
fn positioned(source: &str, first: u64, last: u64, events: &[ClickEvent]) -> Arc<BatchAggregate> {
    let mut batch = Aggregator::new().aggregate(events);
    batch.id = Some(BatchId {
        source: source.into(),
        first,
        last,
    });
    Arc::new(batch)
}

/// Clicks on `text` at positions `range` (one click per position, each its own visitor).
fn clicks_at(text: &str, range: std::ops::Range<u64>) -> Vec<ClickEvent> {
    range
        .map(|i| {
            let at = DAY * DAY_MS + i64::try_from(i).expect("small");
            click(text, at, i, CHROME, "https://r.example/")
        })
        .collect()
}

/// Two writers, each the one owner of its source (a partition), write clicks of the same
/// link-day at the same time, through separate handles: both count, and each source
/// keeps its own applied position.
pub async fn writers_of_different_sources_on_one_link_both_count(backend: &impl Harness) {
    let (a, b) = (backend.store(), backend.another_handle().await);
    let (p0, p1) = (clicks_at("shared", 0..10), clicks_at("shared", 100..107));
    let (ra, rb) = tokio::join!(
        a.apply(positioned("clicks/0", 0, 9, &p0)),
        b.apply(positioned("clicks/1", 0, 6, &p1)),
    );
    ra.expect("partition 0");
    rb.expect("partition 1");
    assert_eq!(a.totals(&code("shared")).await.expect("totals").total, 17);
    let stats = b
        .link_stats(
            &code("shared"),
            query(DAY * DAY_MS, (DAY + 1) * DAY_MS, Granularity::Day),
        )
        .await
        .expect("stats");
    assert_eq!(stats.unique_visitors, 17, "the sketches merged");
    assert_eq!(a.applied("clicks/0").await.expect("applied"), Some(9));
    assert_eq!(a.applied("clicks/1").await.expect("applied"), Some(6));
    assert_eq!(a.applied("clicks/2").await.expect("applied"), None);
}

/// A log range that held no clicks (only messages a consumer set aside) is still a
/// position: applying it records the position, so a restart does not read it again.
pub async fn a_batch_without_clicks_still_moves_its_position(backend: &impl Harness) {
    let store = backend.store();
    store
        .apply(positioned("clicks/5", 0, 4, &[]))
        .await
        .expect("an empty positioned batch");
    assert_eq!(store.applied("clicks/5").await.expect("applied"), Some(4));
    let events = clicks_at("after-empty", 0..3);
    store
        .apply(positioned("clicks/5", 5, 7, &events))
        .await
        .expect("the next range");
    assert_eq!(total(&*store, "after-empty").await, 3);
    assert_eq!(store.applied("clicks/5").await.expect("applied"), Some(7));
}

/// A source changes owner (a rebalance): the new owner's log position is older than what
/// the old one applied. It reads the applied position; a batch straddling it is refused
/// with nothing written, the rest after it counts, and a late retry of the old owner's
/// last batch is a no-op. Every click counts once.
pub async fn a_new_owner_replaying_from_an_older_position_counts_each_click_once(
    backend: &impl Harness,
) {
    let (old, new) = (backend.store(), backend.another_handle().await);
    let events = clicks_at("moved", 0..30);
    old.apply(positioned("clicks/3", 0, 9, &events[0..10]))
        .await
        .expect("old owner, first batch");
    old.apply(positioned("clicks/3", 10, 19, &events[10..20]))
        .await
        .expect("old owner, second batch");
    // The old owner's last committed log offset was 10: the new owner replays from there.
    let applied = new.applied("clicks/3").await.expect("applied");
    assert_eq!(applied, Some(19));
    let straddling = new
        .apply(positioned("clicks/3", 10, 24, &events[10..25]))
        .await;
    assert!(
        matches!(
            straddling,
            Err(crate::StoreError::Overlap { applied: 19, .. })
        ),
        "{straddling:?}"
    );
    assert_eq!(
        total(&*new, "moved").await,
        20,
        "the refused batch wrote nothing"
    );
    new.apply(positioned("clicks/3", 20, 29, &events[20..30]))
        .await
        .expect("after the applied position");
    old.apply(positioned("clicks/3", 10, 19, &events[10..20]))
        .await
        .expect("a late retry by the old owner is no error");
    assert_eq!(total(&*old, "moved").await, 30, "each click once");
    assert_eq!(new.applied("clicks/3").await.expect("applied"), Some(29));
}

/// A batch whose write fails after part of it was written (here: its last link's day
/// row cannot be decoded) leaves no part counted and the position where it was; retried
/// after the cause is gone, it counts once, and once more is a no-op.
pub async fn a_batch_that_fails_half_way_counts_once_when_retried(backend: &impl Harness) {
    let store = backend.store();
    // "zzz" sorts last: every backend has written the other link's increments when it
    // meets this one's row.
    store
        .apply(positioned("seed", 0, 0, &clicks_at("zzz", 0..1)))
        .await
        .expect("seed");
    backend.corrupt_day(&code("zzz"), DAY).await;
    let mut events = clicks_at("aaa", 0..5);
    events.extend(clicks_at("zzz", 5..6));
    let batch = positioned("clicks/5", 0, 3, &events);
    assert!(
        store.apply(batch.clone()).await.is_err(),
        "the bad row fails the batch"
    );
    assert_eq!(
        store.totals(&code("aaa")).await.expect("totals").total,
        0,
        "no part of it counted"
    );
    assert_eq!(
        store.applied("clicks/5").await.expect("applied"),
        None,
        "the position did not move"
    );
    assert!(
        !store
            .delete(&code("zzz"))
            .await
            .expect("delete its statistics")
    );
    store.apply(batch.clone()).await.expect("the retry");
    store.apply(batch).await.expect("and a replay");
    assert_eq!(store.totals(&code("aaa")).await.expect("totals").total, 5);
    assert_eq!(store.totals(&code("zzz")).await.expect("totals").total, 1);
    assert_eq!(store.applied("clicks/5").await.expect("applied"), Some(3));
}

/// API keys: stored without their secret, read back equal from any handle, listed in
/// id order, and revoked once (a second revocation keeps the first time).
pub async fn keys_are_stored_listed_and_revoked_for_every_handle(backend: &impl Harness) {
    let store = backend.store();
    let hasher = KeyHasher::new("");
    let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid");
    let issue = |owner: &str, scopes| hasher.issue(Owner::parse(owner).expect("owner"), scopes, at);
    let (a, admin) = (
        issue("team-a", Scopes::LINKS_WRITE),
        issue("ops", Scopes::ADMIN),
    );
    store.insert_key(&a.record).await.expect("insert");
    store.insert_key(&admin.record).await.expect("insert");

    let other = backend.another_handle().await;
    let read = other
        .get_key(&a.record.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(read, a.record);
    let (_, secret) = crate::access::split_token(&a.token).expect("a token");
    assert!(hasher.verify(&read, secret));
    assert_eq!(other.get_key("nosuchkeyid0").await.expect("get"), None);

    let mut expected = vec![a.record.clone(), admin.record.clone()];
    expected.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(other.list_keys().await.expect("list"), expected);

    let revoked_at = at + time::Duration::hours(1);
    assert!(
        store
            .revoke_key(&a.record.id, revoked_at)
            .await
            .expect("revoke")
    );
    assert!(
        store
            .revoke_key(&a.record.id, revoked_at + time::Duration::hours(1))
            .await
            .expect("revoke again")
    );
    assert!(!store.revoke_key("nosuchkeyid0", at).await.expect("revoke"));
    let read = other
        .get_key(&a.record.id)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(
        read.revoked_at,
        Some(revoked_at),
        "the first revocation stays"
    );
    let untouched = other
        .get_key(&admin.record.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(untouched.revoked_at, None);
}

/// A link keeps the owner it was created with; a listing for one owner pages through
/// only that owner's links, in code order, and a deleted link leaves it.
pub async fn links_keep_their_owner_and_list_by_owner(backend: &impl Harness) {
    let store = backend.store();
    let (a, b) = (
        Owner::parse("team-a").expect("owner"),
        Owner::parse("team-b").expect("owner"),
    );
    for (text, owner) in [
        ("a1", Some(&a)),
        ("b1", Some(&b)),
        ("a2", Some(&a)),
        ("n1", None),
        ("a3", Some(&a)),
        ("b2", Some(&b)),
    ] {
        let link = Link {
            owner: owner.cloned(),
            ..link(text, "https://example.com/")
        };
        assert_eq!(
            store.insert_if_absent(&link).await.expect("insert"),
            InsertOutcome::Inserted
        );
    }
    // A create of a taken code by another owner must not show in that owner's listing.
    let taken = Link {
        owner: Some(b.clone()),
        ..link("a1", "https://example.com/other")
    };
    assert_eq!(
        store.insert_if_absent(&taken).await.expect("insert"),
        InsertOutcome::AlreadyExists
    );

    let other = backend.another_handle().await;
    let got = other.get(&code("a2")).await.expect("get").expect("present");
    assert_eq!(got.owner.as_ref(), Some(&a));
    assert_eq!(
        other
            .get(&code("n1"))
            .await
            .expect("get")
            .expect("present")
            .owner,
        None
    );

    let codes = |page: crate::ListPage| -> Vec<String> {
        page.links
            .iter()
            .map(|(l, _)| l.code.as_str().to_owned())
            .collect()
    };
    let first = other.list(None, 2, Some(&a)).await.expect("page");
    assert_eq!(codes(first), ["a1", "a2"]);
    let rest = other
        .list(Some(code("a2")), 10, Some(&a))
        .await
        .expect("page");
    assert_eq!(codes(rest), ["a3"]);
    let of_b = other.list(None, 10, Some(&b)).await.expect("page");
    assert_eq!(codes(of_b), ["b1", "b2"]);
    let all = other.list(None, 10, None).await.expect("page");
    assert_eq!(codes(all), ["a1", "a2", "a3", "b1", "b2", "n1"]);

    assert!(store.delete(&code("a2")).await.expect("delete"));
    let after_delete = other.list(None, 10, Some(&a)).await.expect("page");
    assert_eq!(codes(after_delete), ["a1", "a3"]);
    let nobody = Owner::parse("nobody").expect("owner");
    assert!(
        other
            .list(None, 10, Some(&nobody))
            .await
            .expect("page")
            .links
            .is_empty()
    );
}
