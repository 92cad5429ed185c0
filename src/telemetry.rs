//! Logging: `tracing` to stderr, filtered by `RUST_LOG` or `telemetry.log_filter`.
//!
//! Per-request spans are at DEBUG level so that at the default INFO level the redirect
//! hot path pays only for a disabled-callsite check. Errors are logged where they are
//! turned into 5xx answers, with the request id, so they can be found without spans.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `default_filter`.
/// Safe to call more than once (later calls are ignored).
pub fn init(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default_filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
