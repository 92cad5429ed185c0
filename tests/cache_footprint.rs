//! What one cached link costs in heap bytes, against what the cache's weigher charges
//! for it: `cache.max_capacity_bytes` is a memory bound only if the weigher is honest.
//!
//! Its own test binary because it counts every allocation of the process (a wrapping
//! global allocator), so nothing else may run beside it. Exact and deterministic, no
//! timing. Prints its table with
//! `cargo test --release --test cache_footprint -- --nocapture` (docs/benchmarks.md).

use std::alloc::System;
use std::sync::Arc;

use shortener::cache::{CacheEntry, CachedLink, LinkCache, weigh};
use shortener::config::CacheSettings;
use shortener_core::{Link, RedirectKind, ShortCode, TargetUrl};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

/// The system allocator, counting (the crate forbids `unsafe`, so the wrapper comes
/// from `stats_alloc`).
#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Links per measurement: enough that moka's fixed costs vanish per entry.
const LINKS: usize = 20_000;

/// Live heap bytes, counted as glibc's malloc pays for them: each allocation also
/// carries an 8-byte header and is rounded up to 16 bytes (about 12 more on average),
/// so 20 bytes per live allocation on top of the requested sizes.
fn live() -> f64 {
    let stats = ALLOCATOR.stats();
    // (`stats_alloc` already adds a realloc's growth to `bytes_allocated` and its
    // shrinking to `bytes_deallocated`.)
    let bytes = stats.bytes_allocated as isize - stats.bytes_deallocated as isize;
    let chunks = stats.allocations as isize - stats.deallocations as isize;
    (bytes + 20 * chunks) as f64
}

fn link(i: usize, target_len: usize) -> Link {
    let path = "p".repeat(target_len.saturating_sub(20));
    Link {
        code: ShortCode::parse(&format!("L{i:06}")).expect("valid code"),
        target: TargetUrl::parse(&format!("https://e.com/{path}/{i:05}")).expect("valid target"),
        created_at: time::OffsetDateTime::now_utc(),
        expires_at: None,
        redirect: RedirectKind::Found,
        max_clicks: None,
        owner: None,
    }
}

/// Bytes per entry of a cache holding `LINKS` entries made by `entry`, split into the
/// prepared values and the cache's own bookkeeping; and the weight of one of them.
async fn measure(entry: impl Fn(usize) -> (ShortCode, CacheEntry)) -> (f64, f64, u32) {
    let mut entries = Vec::with_capacity(LINKS);
    let before = live();
    for i in 0..LINKS {
        let (code, value) = entry(i);
        if let CacheEntry::Found(link) = &value {
            // A redirect clones `Location`, which makes its bytes shared (one more small
            // allocation): measure a link as it is once it has served.
            drop(link.location.clone());
        }
        entries.push((code, value));
    }
    let values = live() - before;
    let cache = LinkCache::new(&CacheSettings {
        max_capacity_bytes: (1 << 40).try_into().expect("> 0"), // nothing evicted: every entry is measured
        ttl_s: 300.try_into().expect("> 0"),
        negative_ttl_s: 5,
    });
    let empty = live();
    for (code, value) in &entries {
        let value = value.clone();
        cache
            .get_or_load(code.as_str(), |_| async move {
                Ok::<_, std::io::Error>(match value {
                    CacheEntry::Found(link) => Some(link),
                    CacheEntry::Missing => None,
                })
            })
            .await
            .expect("loaded");
    }
    cache.run_pending_tasks().await;
    assert_eq!(cache.entry_count(), LINKS as u64);
    let bookkeeping = live() - empty;
    let weight = weigh(&entries[0].0, &entries[0].1);
    (values / LINKS as f64, bookkeeping / LINKS as f64, weight)
}

/// Makes the `i`-th entry of a measurement.
type MakeEntry = Box<dyn Fn(usize) -> (ShortCode, CacheEntry)>;

#[tokio::test]
#[allow(clippy::print_stdout)] // the table is the point when run with --nocapture
async fn the_weigher_charges_what_an_entry_costs() {
    let found = |target_len| {
        move |i| {
            let link = link(i, target_len);
            let cached = CacheEntry::Found(Arc::new(CachedLink::new(&link, None)));
            (link.code, cached)
        }
    };
    let missing = |i| (link(i, 0).code, CacheEntry::Missing);
    println!("entry                    value B   moka B   total B   weight B");
    let cases: [(&str, MakeEntry); 3] = [
        ("link, 40-byte target", Box::new(found(40))),
        ("link, 400-byte target", Box::new(found(400))),
        ("unknown code", Box::new(missing)),
    ];
    for (name, entry) in cases {
        let (value, bookkeeping, weight) = measure(entry).await;
        let total = value + bookkeeping;
        println!("{name:<22} {value:9.1} {bookkeeping:8.1} {total:9.1} {weight:10}");
        let weight = f64::from(weight);
        assert!(
            weight >= total,
            "{name}: weighed {weight} B, costs {total:.0} B: the byte budget would be exceeded"
        );
        assert!(
            weight <= total * 1.25,
            "{name}: weighed {weight} B, costs {total:.0} B: the budget would hold too few"
        );
    }
}
