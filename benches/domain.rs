//! Micro-benchmarks of the domain types on the create path: code generation and target
//! URL validation. Run: `cargo bench --bench domain`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use shortener_core::{Alias, CodeGenerator, ShortCode, TargetUrl};

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

criterion_group!(benches, codes, urls);
criterion_main!(benches);
