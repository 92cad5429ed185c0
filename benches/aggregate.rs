//! Aggregation throughput: events per second on one core (target >= 500,000).
//!
//! Three batches of 1,000 events, all with warm memos (as in production after the first
//! batch), because the aggregation tallies identical clicks before updating its top-N
//! tables, so its cost depends on how alike a batch's clicks are:
//!
//! - `batch_of_1000`: a mix: 100 links, 12 user agents (browsers and bots), 50
//!   referrers, 5 countries, 5,000 visitors; about 3 distinct combinations per link;
//! - `all_alike`: one link, no headers, one visitor (what `wrk` sends in the redirect
//!   benchmark);
//! - `all_distinct`: 100 links whose 10 clicks each all differ in user agent, referrer
//!   and country: the worst case for the tally.
//!
//! - `long_tail`: 1,000 events over 1,000 distinct links (a Zipf tail: each link clicked
//!   once), each from its own visitor, with a browser's headers: every event creates a
//!   link-day (the case the long-tail benchmark stresses; target >= 1M events/s);
//! - `merge_long_tail`: folding such a batch into 100,000 link-days pending in memory
//!   (what the stats sink does with every batch between two store writes).
//!
//! User agents and referrers are shared `Arc`s, as in events from the service (its
//! recorder interns them).
//!
//! Run: `cargo bench --bench aggregate`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shortener_core::ShortCode;
use shortener_core::aggregate::Aggregator;
use shortener_core::click::{CLICK_EVENT_VERSION, ClickEvent};
use uuid::Uuid;

const USER_AGENTS: [&str; 12] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Twitterbot/1.0",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "curl/8.5.0",
];

/// One shared copy per distinct value, like the service's interned header values.
fn shared(text: String) -> Arc<str> {
    thread_local! {
        static VALUES: RefCell<HashMap<String, Arc<str>>> = RefCell::default();
    }
    VALUES.with(|values| {
        values
            .borrow_mut()
            .entry(text)
            .or_insert_with_key(|text| Arc::from(text.as_str()))
            .clone()
    })
}

fn event(
    link: usize,
    at: usize,
    ua: Option<usize>,
    referrer: Option<usize>,
    country: Option<usize>,
) -> ClickEvent {
    ClickEvent {
        v: CLICK_EVENT_VERSION,
        id: Uuid::now_v7(),
        code: ShortCode::parse(&format!("link{link:03}")).expect("valid code"),
        at_ms: 1_763_790_000_000 + at as i64 * 997,
        referrer: referrer.map(|r| shared(format!("https://site{r}.example/page/{}", r % 7))),
        user_agent: ua.map(|u| shared(USER_AGENTS[u % USER_AGENTS.len()].to_owned())),
        country: country.map(|c| ["DE", "US", "FR", "BR", "IN"][c % 5].to_owned()),
        visitor: (at as u64 % 5_000)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(17),
    }
}

fn mixed(n: usize) -> Vec<ClickEvent> {
    (0..n)
        .map(|i| event(i % 100, i, Some(i), (i % 4 != 0).then_some(i % 50), Some(i)))
        .collect()
}

fn all_alike(n: usize) -> Vec<ClickEvent> {
    (0..n)
        .map(|i| ClickEvent {
            visitor: 7,
            ..event(0, i, None, None, None)
        })
        .collect()
}

fn all_distinct(n: usize) -> Vec<ClickEvent> {
    // Links are runs of 10 consecutive events, so user agent (i % 12), referrer (i % 50)
    // and country (i % 5) never repeat together within a link.
    (0..n)
        .map(|i| event(i / 10, i, Some(i), Some(i % 50), Some(i)))
        .collect()
}

fn long_tail(n: usize, offset: usize) -> Vec<ClickEvent> {
    (0..n)
        .map(|i| ClickEvent {
            code: ShortCode::parse(&format!("L{}", offset + i)).expect("valid code"),
            visitor: ((offset + i) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ..event(0, i, Some(0), Some(1), Some(1))
        })
        .collect()
}

fn aggregate(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregate");
    for (name, batch) in [
        ("batch_of_1000", mixed(1_000)),
        ("all_alike", all_alike(1_000)),
        ("all_distinct", all_distinct(1_000)),
        ("long_tail", long_tail(1_000, 0)),
    ] {
        let mut aggregator = Aggregator::new();
        black_box(aggregator.aggregate(&batch)); // warm the memos
        group.throughput(Throughput::Elements(batch.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| black_box(aggregator.aggregate(black_box(&batch))))
        });
    }
    // Pending: 100,000 link-days, as between two writes of a long tail. Each iteration
    // merges a fresh batch (half new links, half already pending) into a clone of it.
    let mut aggregator = Aggregator::new();
    let mut pending = aggregator.aggregate(&long_tail(100_000, 0));
    let batch = aggregator.aggregate(&long_tail(1_000, 99_500));
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("merge_long_tail", |b| {
        b.iter_batched(
            || batch.clone(),
            |batch| pending.merge(black_box(batch)),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, aggregate);
criterion_main!(benches);
