//! Seeds an embedded store with N links for the long-tail benchmark, in bulk
//! (`RedbStore::import`: one transaction per 100,000 links), because creating a
//! million links through the API, one fsync each, takes minutes.
//!
//! Codes are `{prefix}{i}` for `i` in `0..count`, which `scripts/zipf-codes.lua` asks for
//! by popularity rank (rank 1 is `{prefix}0`).
//!
//! Run: `cargo run --release --example seed-links -- data/links.redb 100000 L`
//! (scripts/bench-longtail.sh does this).

use std::path::PathBuf;

use anyhow::Context;
use shortener_core::{Link, RedirectKind, ShortCode, TargetUrl};
use shortener_redb::RedbStore;

/// Links per transaction: bounds the memory of one import step.
const CHUNK: usize = 100_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(
        args.next()
            .context("usage: seed-links PATH COUNT [PREFIX]")?,
    );
    let count: usize = args.next().context("COUNT missing")?.parse()?;
    let prefix = args.next().unwrap_or_else(|| "L".into());
    let store = RedbStore::open(&path)?;
    let created_at = time::OffsetDateTime::now_utc();
    let mut inserted = 0;
    for start in (0..count).step_by(CHUNK) {
        let links = (start..count.min(start + CHUNK))
            .map(|i| {
                Ok(Link {
                    code: ShortCode::parse(&format!("{prefix}{i}"))?,
                    target: TargetUrl::parse(&format!("https://example.com/landing/{i}"))?,
                    created_at,
                    expires_at: None,
                    redirect: RedirectKind::Found,
                    max_clicks: None,
                    owner: None,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        inserted += store.import(links).await?;
    }
    eprintln!("{inserted} links seeded into {}", path.display());
    Ok(())
}
