//! The circuit breaker of one backend host: after `failures` failures in a row it *opens*
//! and requests get a fast 503 for `open_for`; then it lets `half_open_probes` requests
//! through (*half-open*); a probe that succeeds closes it, one that fails opens it again.
//!
//! A failure is a connection failure, a time-out, or a status in `failure_statuses`
//! (502, 503, 504 by default: the backend, or what stands behind it, is unavailable); any
//! other answer shows the backend is alive. A `500` is one request's error, not a sign of
//! an unavailable backend, unless configured (as nginx counts only errors and time-outs by
//! default). A backend that answers 503 with `Retry-After` holds the breaker open that long
//! ([`Breaker::hold_open`]), so nobody calls it sooner.
//!
//! The closed state is read with one atomic load; only failures and transitions take the
//! lock.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use serde::Serialize;

/// `breaker` settings of a connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Failures in a row that open the breaker.
    pub failures: u32,
    /// How long it stays open before probing.
    pub open_for: Duration,
    /// Requests let through at once while half-open.
    pub half_open_probes: u32,
    /// Statuses that count as failures.
    pub failure_statuses: Vec<StatusCode>,
}

pub const DEFAULT_FAILURES: u32 = 5;
pub const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(10);
pub const DEFAULT_HALF_OPEN_PROBES: u32 = 1;

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failures: DEFAULT_FAILURES,
            open_for: DEFAULT_OPEN_FOR,
            half_open_probes: DEFAULT_HALF_OPEN_PROBES,
            failure_statuses: vec![
                StatusCode::BAD_GATEWAY,
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::GATEWAY_TIMEOUT,
            ],
        }
    }
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// The breaker's state, as the admin API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
struct Transitions {
    open_until: Instant,
    probes_in_flight: u32,
}

/// One backend's breaker.
#[derive(Debug)]
pub struct Breaker {
    name: String,
    settings: BreakerSettings,
    state: AtomicU8,
    failures: AtomicU32,
    opened: AtomicU64,
    rejected: AtomicU64,
    transitions: Mutex<Transitions>,
}

/// Leave to call the backend. A probe ticket must be [`Breaker::record`]ed, or dropped
/// (which frees its slot without judging the backend).
#[derive(Debug)]
#[must_use]
pub struct Ticket<'a> {
    breaker: &'a Breaker,
    probe: bool,
    done: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.probe
            && !self.done
            && let Ok(mut t) = self.breaker.transitions.lock()
        {
            t.probes_in_flight = t.probes_in_flight.saturating_sub(1);
        }
    }
}

/// The breaker's counters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BreakerSnapshot {
    pub backend: String,
    pub state: BreakerState,
    /// Failures in a row so far (while closed).
    pub failures: u32,
    /// Times it opened.
    pub opened: u64,
    /// Requests answered 503 without calling the backend.
    pub rejected: u64,
}

impl Breaker {
    pub fn new(name: impl Into<String>, settings: BreakerSettings) -> Breaker {
        Breaker {
            name: name.into(),
            settings,
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            opened: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            transitions: Mutex::new(Transitions {
                open_until: Instant::now(),
                probes_in_flight: 0,
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            OPEN => BreakerState::Open,
            HALF_OPEN => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// Leave to call the backend, or how long until the breaker will probe again.
    pub fn acquire(&self) -> Result<Ticket<'_>, Duration> {
        if self.state.load(Ordering::Acquire) == CLOSED {
            return Ok(self.ticket(false));
        }
        let Ok(mut t) = self.transitions.lock() else {
            return Ok(self.ticket(false));
        };
        let now = Instant::now();
        match self.state.load(Ordering::Acquire) {
            CLOSED => Ok(self.ticket(false)),
            OPEN if now < t.open_until => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                Err(t.open_until - now)
            }
            _ => {
                // Open and due, or half-open: a probe if a slot is free.
                if t.probes_in_flight < self.settings.half_open_probes.max(1) {
                    if self.state.swap(HALF_OPEN, Ordering::AcqRel) == OPEN {
                        tracing::info!(backend = %self.name, "circuit half-open: probing the backend");
                    }
                    t.probes_in_flight += 1;
                    Ok(self.ticket(true))
                } else {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    Err(Duration::from_secs(1))
                }
            }
        }
    }

    fn ticket(&self, probe: bool) -> Ticket<'_> {
        Ticket {
            breaker: self,
            probe,
            done: false,
        }
    }

    /// Whether `status` counts as a failure of the backend.
    pub fn is_failure(&self, status: StatusCode) -> bool {
        self.settings.failure_statuses.contains(&status)
    }

    /// Reports how the call went.
    pub fn record(&self, mut ticket: Ticket<'_>, success: bool) {
        ticket.done = true;
        if !ticket.probe {
            if success {
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
            } else {
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if failures >= self.settings.failures.max(1)
                    && self.state.load(Ordering::Acquire) == CLOSED
                    && let Ok(mut t) = self.transitions.lock()
                {
                    self.trip(&mut t, self.settings.open_for, "failures in a row");
                }
            }
            return;
        }
        let Ok(mut t) = self.transitions.lock() else {
            return;
        };
        t.probes_in_flight = t.probes_in_flight.saturating_sub(1);
        if self.state.load(Ordering::Acquire) != HALF_OPEN {
            return;
        }
        if success {
            self.failures.store(0, Ordering::Relaxed);
            self.state.store(CLOSED, Ordering::Release);
            tracing::info!(backend = %self.name, "circuit closed: the backend answers again");
        } else {
            self.trip(&mut t, self.settings.open_for, "the probe failed");
        }
    }

    /// Opens the breaker for at least `wait` (a backend's 503 with `Retry-After`).
    pub fn hold_open(&self, wait: Duration) {
        if wait.is_zero() {
            return;
        }
        if let Ok(mut t) = self.transitions.lock() {
            let until = Instant::now() + wait;
            if self.state.load(Ordering::Acquire) == OPEN && t.open_until >= until {
                return;
            }
            self.trip(&mut t, wait, "the backend asked to retry later");
        }
    }

    fn trip(&self, t: &mut Transitions, open_for: Duration, why: &'static str) {
        t.open_until = Instant::now() + open_for;
        if self.state.swap(OPEN, Ordering::AcqRel) != OPEN {
            self.opened.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                backend = %self.name,
                reason = why,
                open_for_ms = u64::try_from(open_for.as_millis()).unwrap_or(u64::MAX),
                "circuit open: requests to this backend get 503 until it recovers"
            );
        }
    }

    pub fn snapshot(&self) -> BreakerSnapshot {
        BreakerSnapshot {
            backend: self.name.clone(),
            state: self.state(),
            failures: self.failures.load(Ordering::Relaxed),
            opened: self.opened.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn breaker(open_for_ms: u64) -> Breaker {
        Breaker::new(
            "127.0.0.1:1",
            BreakerSettings {
                failures: 3,
                open_for: Duration::from_millis(open_for_ms),
                ..BreakerSettings::default()
            },
        )
    }

    fn fail(b: &Breaker) {
        let ticket = b.acquire().unwrap();
        b.record(ticket, false);
    }

    #[test]
    fn opens_after_failures_in_a_row_only() {
        let b = breaker(60_000);
        fail(&b);
        fail(&b);
        let ticket = b.acquire().unwrap();
        b.record(ticket, true);
        fail(&b);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Open);
        let wait = b.acquire().unwrap_err();
        assert!(wait > Duration::from_secs(50));
        let snapshot = b.snapshot();
        assert_eq!((snapshot.opened, snapshot.rejected), (1, 1));
    }

    #[test]
    fn half_open_lets_one_probe_through_and_closes_on_success() {
        let b = breaker(20);
        for _ in 0..3 {
            fail(&b);
        }
        std::thread::sleep(Duration::from_millis(40));
        let probe = b.acquire().unwrap();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.acquire().is_err(), "one probe at a time");
        b.record(probe, true);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.acquire().is_ok());
    }

    #[test]
    fn a_failed_probe_opens_it_again_and_a_dropped_one_frees_its_slot() {
        let b = breaker(20);
        for _ in 0..3 {
            fail(&b);
        }
        std::thread::sleep(Duration::from_millis(40));
        let probe = b.acquire().unwrap();
        b.record(probe, false);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.snapshot().opened, 2);

        std::thread::sleep(Duration::from_millis(40));
        drop(b.acquire().unwrap());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(
            b.acquire().is_ok(),
            "the dropped probe's slot is free again"
        );
    }

    #[test]
    fn a_backend_can_hold_it_open() {
        let b = breaker(20);
        b.hold_open(Duration::from_secs(30));
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.acquire().unwrap_err() > Duration::from_secs(25));
        // A shorter hold does not shorten it.
        b.hold_open(Duration::from_millis(1));
        assert!(b.acquire().unwrap_err() > Duration::from_secs(25));
    }
}
