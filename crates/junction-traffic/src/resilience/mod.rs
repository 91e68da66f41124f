//! Resilience: protecting backends from the gateway and clients from slow or failing
//! backends.
//!
//! - [`retry`]: idempotent requests only, jittered exponential backoff, `Retry-After` as a
//!   floor, a budget;
//! - [`breaker`]: one circuit breaker per backend host — open means a fast 503, then
//!   half-open probes;
//! - [`concurrency`]: at most N requests in flight per backend;
//! - [`HoldOffs`]: a backend's `429` with `Retry-After` is remembered per connection, so
//!   the gateway answers that connection's requests itself until the time has passed
//!   instead of calling sooner.

pub mod breaker;
pub mod concurrency;
pub mod retry;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Times until which a backend asked not to be called, per key (backend and connection).
#[derive(Debug, Default)]
pub struct HoldOffs {
    /// Entries in `until`, read without the lock on the hot path.
    count: AtomicUsize,
    until: Mutex<HashMap<String, Instant>>,
}

/// Most keys remembered; past it, expired ones are dropped and new ones ignored.
const MAX_HOLD_OFFS: usize = 10_000;

impl HoldOffs {
    /// How long `key` must still wait, if at all.
    pub fn remaining(&self, key: &str) -> Option<Duration> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut until = self.until.lock().ok()?;
        let now = Instant::now();
        match until.get(key) {
            Some(&when) if when > now => Some(when - now),
            Some(_) => {
                until.remove(key);
                self.count.store(until.len(), Ordering::Relaxed);
                None
            }
            None => None,
        }
    }

    /// Remembers that `key` must not call before `wait` has passed.
    pub fn hold(&self, key: &str, wait: Duration) {
        if wait.is_zero() {
            return;
        }
        let Ok(mut until) = self.until.lock() else {
            return;
        };
        let now = Instant::now();
        if until.len() >= MAX_HOLD_OFFS {
            until.retain(|_, when| *when > now);
            if until.len() >= MAX_HOLD_OFFS {
                return;
            }
        }
        let when = now + wait;
        let entry = until.entry(key.to_owned()).or_insert(when);
        if *entry < when {
            *entry = when;
        }
        self.count.store(until.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn holds_expire_and_never_shrink() {
        let holds = HoldOffs::default();
        assert_eq!(holds.remaining("a"), None);
        holds.hold("a", Duration::from_secs(30));
        holds.hold("a", Duration::from_secs(1));
        assert!(holds.remaining("a").unwrap() > Duration::from_secs(25));
        assert_eq!(holds.remaining("b"), None);
        holds.hold("c", Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(holds.remaining("c"), None);
    }
}
