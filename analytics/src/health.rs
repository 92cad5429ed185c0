//! Whether the consumer is doing its job, for `/readyz`: it polls Kafka, and its writes
//! to the store succeed. Not ready while the loop is stuck (no poll for
//! [`STALLED_AFTER`]) or the store has been refusing writes for as long: lag then grows
//! and an orchestrator should know.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::now_ms;

/// How long without a poll, or with failing writes, before the consumer is not ready.
pub const STALLED_AFTER: Duration = Duration::from_secs(30);

/// Timestamps the consumer leaves as it works (Unix ms; 0 = never).
#[derive(Debug, Default)]
pub struct Health {
    last_poll: AtomicI64,
    /// When writes started failing (0: the last one succeeded).
    failing_since: AtomicI64,
}

impl Health {
    /// The loop polled.
    pub fn polled(&self) {
        self.last_poll.store(now_ms(), Ordering::Relaxed);
    }

    /// A write succeeded.
    pub fn wrote(&self) {
        self.failing_since.store(0, Ordering::Relaxed);
    }

    /// A write (or a position read) failed.
    pub fn write_failed(&self) {
        let _ =
            self.failing_since
                .compare_exchange(0, now_ms(), Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Why the consumer is not ready, if it is not.
    pub fn problem(&self) -> Option<&'static str> {
        let now = now_ms();
        let limit = STALLED_AFTER.as_millis() as i64;
        let last_poll = self.last_poll.load(Ordering::Relaxed);
        if last_poll == 0 || now - last_poll > limit {
            return Some("not polling kafka");
        }
        let failing = self.failing_since.load(Ordering::Relaxed);
        if failing != 0 && now - failing > limit {
            return Some("stats writes failing");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_polling_and_writing() {
        let health = Health::default();
        assert_eq!(health.problem(), Some("not polling kafka"));
        health.polled();
        assert_eq!(health.problem(), None);
        health.write_failed();
        assert_eq!(health.problem(), None, "a short failure is not a stall");
        health
            .failing_since
            .store(now_ms() - 60_000, Ordering::Relaxed);
        assert_eq!(health.problem(), Some("stats writes failing"));
        health.wrote();
        assert_eq!(health.problem(), None);
    }
}
