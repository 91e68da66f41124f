//! The in-memory limiter, the default: governor's keyed GCRA, one process's counters.
//!
//! Keys that have been idle long enough to be whole again are dropped every few thousand
//! checks, so a stream of new client addresses cannot grow the table without end.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter as Governor};

use super::{Decision, LimitError, Rate, RateLimiter};

type Keyed = Governor<String, DashMapStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// Checks between two sweeps of idle keys.
const SWEEP_EVERY: u32 = 4096;

/// Per-key GCRA in this process.
pub struct MemoryLimiter {
    rate: Rate,
    limiter: Keyed,
    checks: AtomicU32,
}

impl std::fmt::Debug for MemoryLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLimiter")
            .field("rate", &self.rate)
            .field("keys", &self.limiter.len())
            .finish()
    }
}

impl MemoryLimiter {
    pub fn new(rate: Rate) -> MemoryLimiter {
        // A burst of N, one more every period / N. `with_period` fails only for a zero
        // interval, which `Rate` rules out; fall back to per-second rather than panic.
        let quota = Quota::with_period(rate.emission_interval())
            .map_or(Quota::per_second(rate.limit), |q| q.allow_burst(rate.limit));
        MemoryLimiter {
            rate,
            limiter: Governor::dashmap(quota).with_middleware::<StateInformationMiddleware>(),
            checks: AtomicU32::new(0),
        }
    }

    /// Decides synchronously (the trait's future is ready at once).
    pub fn check_now(&self, key: &str) -> Decision {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        let interval = self.rate.emission_interval();
        let limit = self.rate.limit.get();
        match self.limiter.check_key(&key.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    rate: self.rate,
                    remaining,
                    reset: interval * limit.saturating_sub(remaining),
                    retry_after: Duration::ZERO,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                Decision {
                    allowed: false,
                    rate: self.rate,
                    remaining: 0,
                    reset: wait + interval * limit.saturating_sub(1),
                    retry_after: wait,
                }
            }
        }
    }
}

impl RateLimiter for MemoryLimiter {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn rate(&self) -> Rate {
        self.rate
    }

    fn check<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Decision, LimitError>> {
        let decision = self.check_now(key);
        Box::pin(std::future::ready(Ok(decision)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[tokio::test]
    async fn admits_the_burst_then_refuses_with_a_wait() {
        let limiter = MemoryLimiter::new(Rate::parse("5/min").unwrap());
        for expected in (0..5).rev() {
            let decision = limiter.check("client-a").await.unwrap();
            assert!(decision.allowed);
            assert_eq!(decision.remaining, expected);
        }
        let refused = limiter.check("client-a").await.unwrap();
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        // One request comes back every 12 s.
        assert!(refused.retry_after > Duration::from_secs(10), "{refused:?}");
        assert!(
            refused.retry_after <= Duration::from_secs(12),
            "{refused:?}"
        );
        // Other keys are untouched.
        assert!(limiter.check("client-b").await.unwrap().allowed);
    }

    #[tokio::test]
    async fn the_allowance_comes_back_over_time() {
        let limiter = MemoryLimiter::new(Rate::parse("2/100ms").unwrap());
        assert!(limiter.check("k").await.unwrap().allowed);
        assert!(limiter.check("k").await.unwrap().allowed);
        assert!(!limiter.check("k").await.unwrap().allowed);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(limiter.check("k").await.unwrap().allowed);
    }
}
