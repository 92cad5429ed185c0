//! Aggregation throughput: events per second on one core (target >= 500,000).
//!
//! A realistic mix per batch of 1,000 events: 100 links, 12 user agents (browsers and
//! bots, so the classifier's memo is warm after the first batch, as in production),
//! 50 referrers, 20 countries, 5,000 visitors.
//!
//! Run: `cargo bench --bench aggregate`.

use std::hint::black_box;

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

fn events(n: usize) -> Vec<ClickEvent> {
    (0..n)
        .map(|i| ClickEvent {
            v: CLICK_EVENT_VERSION,
            id: Uuid::now_v7(),
            code: ShortCode::parse(&format!("link{:03}", i % 100)).expect("valid code"),
            at_ms: 1_763_790_000_000 + i as i64 * 997,
            referrer: (i % 4 != 0)
                .then(|| format!("https://site{}.example/page/{}", i % 50, i % 7)),
            user_agent: Some(USER_AGENTS[i % USER_AGENTS.len()].to_owned()),
            country: Some(["DE", "US", "FR", "BR", "IN"][i % 5].to_owned()),
            visitor: (i as u64 % 5_000)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(17),
        })
        .collect()
}

fn aggregate(c: &mut Criterion) {
    let batch = events(1_000);
    let mut aggregator = Aggregator::new();
    black_box(aggregator.aggregate(&batch)); // warm the memos
    let mut group = c.benchmark_group("aggregate");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("batch_of_1000", |b| {
        b.iter(|| black_box(aggregator.aggregate(black_box(&batch))))
    });
    group.finish();
}

criterion_group!(benches, aggregate);
criterion_main!(benches);
