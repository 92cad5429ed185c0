//! Why the embedded store is redb: the same workload on redb, fjall and SQLite (rusqlite),
//! each configured for the guarantee the service needs, namely that a create is durable
//! (fsynced) before it is acknowledged.
//!
//! Workload per engine, in a fresh temporary directory:
//! - `insert`: N durable single-link inserts, one transaction + fsync each (a create);
//! - `get`: N point reads of existing keys (a cache miss);
//!
//! Prints the median per-operation time over `ROUNDS` rounds.
//!
//! Run: `cargo run --release -p store-choice` (not part of `cargo test`: it builds two
//! storage engines we do not ship).

// A benchmark binary: printing its results is its job.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::time::{Duration, Instant};

const N_INSERT: usize = 300;
const N_GET: usize = 50_000;
const ROUNDS: usize = 3;

/// A realistic record: ~120 bytes of JSON, keyed by a 7-character code.
fn record(i: usize) -> (String, Vec<u8>) {
    let key = format!("c{i:06}");
    let value = format!(
        r#"{{"v":1,"url":"https://example.com/articles/{i}?utm_source=newsletter","created_ms":1763790000000,"redirect":302}}"#
    );
    (key, value.into_bytes())
}

trait Engine {
    fn name(&self) -> &'static str;
    fn insert_durable(&mut self, key: &str, value: &[u8]);
    fn get(&mut self, key: &str) -> Option<Vec<u8>>;
}

struct Redb(redb::Database);
const TABLE: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("links");

impl Engine for Redb {
    fn name(&self) -> &'static str {
        "redb"
    }
    fn insert_durable(&mut self, key: &str, value: &[u8]) {
        let txn = self.0.begin_write().expect("txn");
        txn.open_table(TABLE)
            .expect("table")
            .insert(key, value)
            .expect("insert");
        txn.commit().expect("commit (Durability::Immediate: fsync)");
    }
    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        use redb::ReadableDatabase;
        let txn = self.0.begin_read().expect("txn");
        let table = txn.open_table(TABLE).expect("table");
        table.get(key).expect("get").map(|v| v.value().to_vec())
    }
}

struct Fjall {
    db: fjall::Database,
    links: fjall::Keyspace,
}

impl Engine for Fjall {
    fn name(&self) -> &'static str {
        "fjall"
    }
    fn insert_durable(&mut self, key: &str, value: &[u8]) {
        self.links.insert(key, value).expect("insert");
        self.db.persist(fjall::PersistMode::SyncAll).expect("fsync");
    }
    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.links.get(key).expect("get").map(|v| v.to_vec())
    }
}

struct Sqlite(rusqlite::Connection);

impl Engine for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite (WAL, synchronous=FULL)"
    }
    fn insert_durable(&mut self, key: &str, value: &[u8]) {
        self.0
            .prepare_cached("INSERT OR IGNORE INTO links (code, value) VALUES (?1, ?2)")
            .expect("prepare")
            .execute(rusqlite::params![key, value])
            .expect("insert");
    }
    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        use rusqlite::OptionalExtension;
        self.0
            .prepare_cached("SELECT value FROM links WHERE code = ?1")
            .expect("prepare")
            .query_row([key], |row| row.get(0))
            .optional()
            .expect("get")
    }
}

fn open(which: usize, dir: &Path) -> Box<dyn Engine> {
    match which {
        0 => Box::new(Redb(
            redb::Database::create(dir.join("links.redb")).expect("redb"),
        )),
        1 => {
            let db = fjall::Database::builder(dir.join("fjall"))
                .open()
                .expect("fjall");
            let links = db
                .keyspace("links", fjall::KeyspaceCreateOptions::default)
                .expect("keyspace");
            Box::new(Fjall { db, links })
        }
        _ => {
            let conn = rusqlite::Connection::open(dir.join("links.sqlite")).expect("sqlite");
            conn.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
                 CREATE TABLE links (code TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;",
            )
            .expect("schema");
            Box::new(Sqlite(conn))
        }
    }
}

fn per_op(total: Duration, n: usize) -> Duration {
    total / u32::try_from(n).expect("small n")
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() {
    println!(
        "{N_INSERT} durable inserts and {N_GET} point reads per round, median of {ROUNDS} rounds"
    );
    println!("{:<32} {:>16} {:>14}", "engine", "insert+fsync", "get");
    for which in 0..3 {
        let (mut inserts, mut gets, mut name) = (Vec::new(), Vec::new(), "");
        for _ in 0..ROUNDS {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut engine = open(which, dir.path());
            name = engine.name();
            let started = Instant::now();
            for i in 0..N_INSERT {
                let (key, value) = record(i);
                engine.insert_durable(&key, &value);
            }
            inserts.push(per_op(started.elapsed(), N_INSERT));
            let started = Instant::now();
            for i in 0..N_GET {
                let (key, _) = record(i % N_INSERT);
                assert!(engine.get(&key).is_some());
            }
            gets.push(per_op(started.elapsed(), N_GET));
        }
        println!(
            "{:<32} {:>16?} {:>14?}",
            name,
            median(inserts),
            median(gets)
        );
    }
}
