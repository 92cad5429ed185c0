//! Real servers for tests, one recipe each: the tests of every crate, and the scripts,
//! start them the same way instead of each keeping its own copy.
//!
//! Each server is looked for first; if its binaries are missing, [`skip`] says so where
//! a person sees it (the test harness captures `eprintln!`, and a skipped test would
//! read `ok`) and the test returns early, unless `CI` is set, where a missing server is
//! a failure. Each is started on a free loopback port in a temporary directory, waited
//! for until it answers, and stopped when dropped (PostgreSQL: when the test process
//! exits, however it exits).
//!
//! # Layout
//!
//! ```text
//! crates/testkit/src/
//! ├── lib.rs        skip: the one way a test says a server is missing
//! ├── redis.rs      RedisServer: redis-server per test, restartable
//! ├── postgres.rs   PgCluster: one cluster per test binary, a fresh database per test
//! ├── kafka.rs      Kafka 4.4.0 (KRaft, one node) per test binary, jars from Maven Central
//! ├── cassandra.rs  Cassandra 5.0 (one node) per test binary, the CQL engine of the tests
//! ├── python.rs     Python with packages from PyPI (a cached venv), for interop tests
//! ├── jvm.rs        (private) Java and Maven, the jar cache, ports and directories
//! └── main.rs       `testkit up <server>`: the same servers for scripts and people
//! ```

#![allow(clippy::unwrap_used, clippy::print_stdout)] // test support: panics are the point

pub mod cassandra;
pub mod go;
mod jvm;
pub mod kafka;
pub mod postgres;
pub mod python;
pub mod redis;

use std::io::Write;
use std::sync::OnceLock;

/// Reports that `test` cannot run because `why` (a missing server, with the command that
/// installs it): a panic when `CI` is set (CI must not silently skip), otherwise a
/// `SKIPPED` line written straight to the terminal's stderr, past the test harness's
/// capture, so that it shows in the summary of `cargo test`.
pub fn skip(test: &str, why: &str) {
    assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// The server in `cell`, started by `start` on first use and shared by every test of the
/// binary; `None` (said through [`skip`] with `hint`) when `start` found it missing.
fn shared<T>(
    cell: &'static OnceLock<Option<T>>,
    start: fn() -> Option<T>,
    test: &str,
    hint: &str,
) -> Option<&'static T> {
    let server = cell.get_or_init(start).as_ref();
    if server.is_none() {
        skip(test, hint);
    }
    server
}
