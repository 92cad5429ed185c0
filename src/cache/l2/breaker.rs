//! A circuit breaker: stop calling a dependency that keeps failing, and find out cheaply
//! when it is back.
//!
//! ```text
//!            failures reach the threshold
//!   Closed ───────────────────────────────▶ Open ──(open_for elapsed)──▶ HalfOpen
//!     ▲                                      ▲                              │
//!     │            probe failed              │                              │ one probe
//!     │    ◀──────────────────────────────── ┴──────────────────────────────┤ let through
//!     └───────────────────────── probe succeeded ◀──────────────────────────┘
//! ```
//!
//! Why: a Redis that is down or hung costs every cache miss a full command timeout before
//! the store is asked. With the breaker open, misses go straight to the store, so an
//! outage costs one timeout per `open_for` instead of one per request, and nothing piles
//! up in the client's buffers.
//!
//! Callers ask [`Breaker::try_acquire`] for a [`Permit`] and report the outcome on it. A
//! permit dropped without a report belongs to a cancelled request (a client hung up): that
//! says nothing about Redis, so it is not a failure; but if it was the half-open probe,
//! the probe slot is freed so the next call can probe instead of waiting forever.
//!
//! The breaker is consulted only on cache misses, never on the L1-hit path, so a mutex is
//! cheap enough and keeps the state machine obvious.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge};

use crate::metrics::{REDIS_BREAKER_STATE, REDIS_BREAKER_TRANSITIONS};

/// Where the breaker is. The gauge `shortener_redis_breaker_state` exports
/// [`BreakerState::as_gauge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; consecutive failures are counted.
    Closed,
    /// Calls are refused until the open period ends.
    Open,
    /// One probe call is allowed; its outcome decides.
    HalfOpen,
}

impl BreakerState {
    /// 0 closed, 1 half-open, 2 open (higher is worse, for alerting).
    pub fn as_gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

impl State {
    fn public(&self) -> BreakerState {
        match self {
            Self::Closed { .. } => BreakerState::Closed,
            Self::Open { .. } => BreakerState::Open,
            Self::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// A circuit breaker; see the module docs.
#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    open_for: Duration,
    gauge: Gauge,
    to_closed: Counter,
    to_open: Counter,
    to_half_open: Counter,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures, for `open_for` at a time.
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        let transition =
            |to: BreakerState| metrics::counter!(REDIS_BREAKER_TRANSITIONS, "to" => to.label());
        let gauge = metrics::gauge!(REDIS_BREAKER_STATE);
        gauge.set(BreakerState::Closed.as_gauge());
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold: threshold.max(1),
            open_for,
            gauge,
            to_closed: transition(BreakerState::Closed),
            to_open: transition(BreakerState::Open),
            to_half_open: transition(BreakerState::HalfOpen),
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.lock().public()
    }

    /// A permit to make one call, or `None` if the breaker refuses calls right now.
    pub fn try_acquire(&self) -> Option<Permit<'_>> {
        self.try_acquire_at(Instant::now())
    }

    fn try_acquire_at(&self, now: Instant) -> Option<Permit<'_>> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => {}
            State::Open { until } if now >= until => {
                self.transition(&mut state, State::HalfOpen { probing: true });
            }
            State::Open { .. } | State::HalfOpen { probing: true } => return None,
            State::HalfOpen { probing: false } => *state = State::HalfOpen { probing: true },
        }
        Some(Permit {
            breaker: self,
            reported: false,
        })
    }

    fn report_at(&self, ok: bool, now: Instant) {
        let mut state = self.lock();
        let next = match (&*state, ok) {
            (State::Closed { .. }, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            (State::HalfOpen { .. }, true) => State::Closed { failures: 0 },
            (State::Closed { .. } | State::HalfOpen { .. }, false) => State::Open {
                until: now + self.open_for,
            },
            // Calls admitted before the breaker opened finish while it is open: their
            // outcome says nothing new.
            (State::Open { .. }, _) => return,
        };
        self.transition(&mut state, next);
    }

    /// A call ended without an outcome: free the probe slot if it held it.
    fn cancelled(&self) {
        let mut state = self.lock();
        if matches!(*state, State::HalfOpen { probing: true }) {
            *state = State::HalfOpen { probing: false };
        }
    }

    fn transition(&self, state: &mut State, next: State) {
        let (from, to) = (state.public(), next.public());
        *state = next;
        if from != to {
            self.gauge.set(to.as_gauge());
            match to {
                BreakerState::Closed => self.to_closed.increment(1),
                BreakerState::Open => self.to_open.increment(1),
                BreakerState::HalfOpen => self.to_half_open.increment(1),
            }
            tracing::warn!(
                from = from.label(),
                to = to.label(),
                "redis circuit breaker"
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is valid after any panic (each transition is one assignment).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Leave to make one call; report how it went. Dropped unreported = cancelled.
#[derive(Debug)]
#[must_use = "report the call's outcome"]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    reported: bool,
}

impl Permit<'_> {
    /// The call succeeded.
    pub fn succeeded(mut self) {
        self.reported = true;
        self.breaker.report_at(true, Instant::now());
    }

    /// The call failed or timed out.
    pub fn failed(mut self) {
        self.reported = true;
        self.breaker.report_at(false, Instant::now());
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.cancelled();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN_FOR: Duration = Duration::from_secs(1);

    fn fail(breaker: &Breaker, now: Instant) {
        let permit = breaker.try_acquire_at(now).expect("admitted");
        std::mem::forget(permit);
        breaker.report_at(false, now);
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let breaker = Breaker::new(3, OPEN_FOR);
        let now = Instant::now();
        fail(&breaker, now);
        fail(&breaker, now);
        breaker.try_acquire_at(now).expect("closed").succeeded();
        fail(&breaker, now);
        fail(&breaker, now);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "the success reset the count"
        );
        fail(&breaker, now);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.try_acquire_at(now).is_none());
        assert!(breaker.try_acquire_at(now + OPEN_FOR / 2).is_none());
    }

    #[test]
    fn half_opens_after_the_period_with_a_single_probe() {
        let breaker = Breaker::new(1, OPEN_FOR);
        let now = Instant::now();
        fail(&breaker, now);
        let later = now + OPEN_FOR;
        let probe = breaker
            .try_acquire_at(later)
            .expect("a probe is let through");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(
            breaker.try_acquire_at(later).is_none(),
            "only one probe at a time"
        );
        probe.succeeded();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.try_acquire_at(later).is_some());
    }

    #[test]
    fn a_failed_probe_opens_again_for_a_full_period() {
        let breaker = Breaker::new(1, OPEN_FOR);
        let now = Instant::now();
        fail(&breaker, now);
        let later = now + OPEN_FOR;
        let probe = breaker.try_acquire_at(later).expect("probe");
        std::mem::forget(probe);
        breaker.report_at(false, later);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.try_acquire_at(later + OPEN_FOR / 2).is_none());
        assert!(breaker.try_acquire_at(later + OPEN_FOR).is_some());
    }

    #[test]
    fn cancelled_calls_are_not_failures() {
        let breaker = Breaker::new(1, OPEN_FOR);
        for _ in 0..10 {
            drop(breaker.try_acquire().expect("closed"));
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn a_cancelled_probe_lets_the_next_call_probe() {
        let breaker = Breaker::new(1, OPEN_FOR);
        let now = Instant::now();
        fail(&breaker, now);
        let later = now + OPEN_FOR;
        drop(breaker.try_acquire_at(later).expect("probe"));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        breaker
            .try_acquire_at(later)
            .expect("a new probe")
            .succeeded();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn late_outcomes_while_open_change_nothing() {
        let breaker = Breaker::new(1, OPEN_FOR);
        let now = Instant::now();
        let slow = breaker.try_acquire_at(now).expect("closed");
        fail(&breaker, now);
        slow.succeeded();
        assert_eq!(breaker.state(), BreakerState::Open);
    }
}
