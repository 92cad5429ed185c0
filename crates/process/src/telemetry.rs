//! Logging: `tracing` to stderr, filtered by `RUST_LOG` or `telemetry.log_filter`.
//!
//! Per-request spans are at DEBUG level so that at the default INFO level the redirect
//! hot path pays only for a disabled-callsite check. Errors are logged where they are
//! turned into 5xx answers, with the request id, so they can be found without spans.
//!
//! A filter that does not parse stops the start with the value and where it came from.
//! `EnvFilter` alone would accept `verbose`: a bare word is a *target* (a module path)
//! enabled at every level, with every other target off, so the service would log
//! nothing at all. Here a bare word must be a level (`trace` … `error`, `off`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// A log filter that would not log what its author meant.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid log filter {value:?} (from {origin}): {reason}; use a level (trace, debug, \
     info, warn, error, off) or `target=level` directives, e.g. `info,shortener=debug`"
)]
pub struct FilterError {
    /// The filter as given.
    pub value: String,
    /// `RUST_LOG` or `telemetry.log_filter`.
    pub origin: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `configured`
/// (`telemetry.log_filter`). Safe to call more than once (later calls are ignored).
pub fn init(configured: &str) -> Result<(), FilterError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) => parse(&value, "RUST_LOG")?,
        Err(_) => parse(configured, "telemetry.log_filter")?,
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    Ok(())
}

/// `value` as a filter, strictly: every directive parses, and a directive without `=`
/// is a level, not a target.
pub fn parse(value: &str, origin: &'static str) -> Result<EnvFilter, FilterError> {
    let error = |reason: String| FilterError {
        value: value.to_owned(),
        origin,
        reason,
    };
    for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !directive.contains(['=', '[']) && directive.parse::<LevelFilter>().is_err() {
            return Err(error(format!("`{directive}` is not a level")));
        }
    }
    EnvFilter::builder()
        .parse(value)
        .map_err(|e| error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_target_directives_are_filters() {
        for good in [
            "info",
            "warn,shortener=debug",
            "shortener::http=trace",
            "off",
            "",
        ] {
            assert!(parse(good, "test").is_ok(), "{good}");
        }
    }

    #[test]
    fn a_bare_word_that_is_not_a_level_is_refused_with_its_origin() {
        let error = parse("verbose", "RUST_LOG").expect_err("not a level");
        let message = error.to_string();
        assert!(message.contains("\"verbose\" (from RUST_LOG)"), "{message}");
        assert!(parse("info,shortener=loud", "test").is_err(), "a bad level");
    }
}
