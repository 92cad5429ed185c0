//! Micro-benchmarks of the domain types on the create path: code generation, target URL
//! validation and the target policy; and of access control: checking a key's secret and
//! one rate-limit decision. Run: `cargo bench --bench domain`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use shortener::config::Rate;
use shortener::limits::Limiter;
use shortener_core::access::{KeyHasher, split_token};
use shortener_core::policy::TargetPolicy;
use shortener_core::{Alias, CodeGenerator, Owner, Scopes, ShortCode, TargetUrl};

fn codes(c: &mut Criterion) {
    let generator = CodeGenerator::default();
    c.bench_function("code/generate_7_base62", |b| {
        b.iter(|| black_box(generator.generate()))
    });
    c.bench_function("code/alias_parse", |b| {
        b.iter(|| Alias::parse(black_box("spring-sale_2026")))
    });
    c.bench_function("code/is_valid (hot path)", |b| {
        b.iter(|| ShortCode::is_valid(black_box("aB3dE9x")))
    });
}

fn urls(c: &mut Criterion) {
    let long_query = format!("https://example.com/search?q={}", "x".repeat(1900));
    let cases = [
        (
            "typical",
            "https://example.com/blog/2026/11/how-we-scale?utm_source=newsletter",
        ),
        ("idn", "https://münchen.example/straße?q=ü"),
        ("long_query", long_query.as_str()),
        ("rejected_javascript", "javascript:alert(document.cookie)"),
    ];
    let mut group = c.benchmark_group("url/parse");
    for (name, input) in cases {
        group.bench_function(name, |b| b.iter(|| TargetUrl::parse(black_box(input))));
    }
    group.finish();
}

fn access(c: &mut Criterion) {
    let hasher = KeyHasher::new("");
    let owner = Owner::parse("team-a").expect("owner");
    let issued = hasher.issue(owner, Scopes::LINKS_WRITE, time::OffsetDateTime::now_utc());
    c.bench_function("access/verify_key", |b| {
        b.iter(|| {
            let (_, secret) = split_token(black_box(&issued.token)).expect("a token");
            hasher.verify(&issued.record, secret)
        })
    });
    let policy = TargetPolicy::default();
    for (name, url) in [
        (
            "typical",
            "https://example.com/blog/2026/11/how-we-scale?utm_source=newsletter",
        ),
        ("idn", "https://xn--mnchen-3ya.de/stra%C3%9Fe"),
    ] {
        let target = TargetUrl::parse(url).expect("url");
        c.bench_function(&format!("policy/check_{name}"), |b| {
            b.iter(|| policy.check(black_box(&target)))
        });
    }
    let limiter = Limiter::new(
        Rate {
            per_s: 1_000_000_000,
            burst: 1_000,
        },
        262_144,
    )
    .expect("a rate");
    let mut client = 0u32;
    c.bench_function("limits/check", |b| {
        b.iter(|| {
            client = client.wrapping_add(1);
            limiter.check(black_box(client))
        })
    });
}

criterion_group!(benches, codes, urls, access);
criterion_main!(benches);
