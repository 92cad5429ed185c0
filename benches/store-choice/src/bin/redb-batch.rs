//! How much of a create's cost in the embedded store is per transaction, and how much per
//! inserted key: random 7-character codes (as the service generates them) inserted into
//! a redb tree that already holds `PRELOAD` links, in transactions of 1 to 16,384 inserts,
//! each committed like a group of creates (`Durability::None`, the create log being the
//! durable part) and closed by one durable commit (the checkpoint), all timed.
//!
//!   cargo build --release -p store-choice --bin redb-batch
//!   taskset -c 0 target/release/redb-batch            # PRELOAD=500000 INSERTS=65536
//!
//! Answers whether applying creates to the tree in larger batches (an in-memory table
//! over the create log) could make a create cheap enough for 20,000/s on one core. For
//! comparison, the same keys into fjall (an LSM tree: inserts go to a memtable and its
//! journal), with one `persist(SyncAll)` per batch.

// A benchmark binary: printing its results is its job.
#![allow(clippy::print_stdout)]

use redb::{Database, Durability, TableDefinition};

const LINKS: TableDefinition<&str, &[u8]> = TableDefinition::new("links_v1");
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// xorshift64*: enough randomness for key order, no dependency.
struct Codes(u64);

impl Codes {
    fn next(&mut self) -> String {
        (0..7)
            .map(|_| {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
                char::from(ALPHABET[(r >> 58) as usize % ALPHABET.len()])
            })
            .collect()
    }
}

/// This process's CPU time (user + system) in seconds, from /proc (10 ms resolution:
/// each measurement below runs for seconds). Wall time would count fsync waits, which
/// cost the service's core nothing.
fn cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of the line (utime, stime), 11 and 12 after the name; 100 Hz.
    (ticks(11) + ticks(12)) / 100.0
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let preload = env("PRELOAD", 500_000);
    let inserts = env("INSERTS", 65_536);
    let value = vec![b'x'; 150]; // about a link record's size
    let mut codes = Codes(0x9E37_79B9_7F4A_7C15);
    println!(
        "tree of {preload} links, {inserts} inserts per transaction size, then one durable commit"
    );
    for batch in [1usize, 27, 256, 2048, 16_384] {
        let dir = tempfile::tempdir()?;
        let db = Database::builder()
            .set_cache_size(64 << 20)
            .create(dir.path().join("links.redb"))?;
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(LINKS)?;
            for _ in 0..preload {
                table.insert(codes.next().as_str(), value.as_slice())?;
            }
        }
        txn.commit()?;

        let started = cpu();
        let mut left = inserts;
        while left > 0 {
            let n = batch.min(left);
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::None)?;
            {
                let mut table = txn.open_table(LINKS)?;
                for _ in 0..n {
                    table.insert(codes.next().as_str(), value.as_slice())?;
                }
            }
            txn.commit()?;
            left -= n;
        }
        let applied = cpu() - started;
        let txn = db.begin_write()?; // the checkpoint: flush everything, durably
        txn.commit()?;
        let total = cpu() - started;
        println!(
            "  redb, {batch:>6} per transaction: {:6.2} us CPU per insert applied, {:6.2} with the checkpoint",
            applied * 1e6 / inserts as f64,
            total * 1e6 / inserts as f64,
        );
    }
    for batch in [27usize, 2048] {
        let dir = tempfile::tempdir()?;
        let db = fjall::Database::builder(dir.path().join("fjall")).open()?;
        let links = db.keyspace("links", fjall::KeyspaceCreateOptions::default)?;
        for _ in 0..preload {
            links.insert(codes.next().as_str(), value.as_slice())?;
        }
        db.persist(fjall::PersistMode::SyncAll)?;
        let started = cpu();
        let mut left = inserts;
        while left > 0 {
            let n = batch.min(left);
            for _ in 0..n {
                links.insert(codes.next().as_str(), value.as_slice())?;
            }
            db.persist(fjall::PersistMode::SyncAll)?;
            left -= n;
        }
        println!(
            "  fjall, {batch:>6} per fsync: {:6.2} us CPU per insert, durable",
            (cpu() - started) * 1e6 / inserts as f64,
        );
    }
    Ok(())
}
