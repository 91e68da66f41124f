//! Retries: which requests may be sent again, when, and how many in all.
//!
//! - Only idempotent methods (`GET`, `HEAD`, `PUT`, `DELETE`, `OPTIONS`, `TRACE`) with a
//!   body in memory are ever retried; a `POST` or `PATCH` never is.
//! - A request that went out on a pooled connection the backend had already closed (the
//!   keep-alive race) is sent again at once, once: nothing reached the backend.
//! - Otherwise a retry follows a connection failure or a status in `retry_on` (502, 503,
//!   504 by default), after a jittered exponential backoff: attempt *n* waits between half
//!   and all of `min(backoff × 2ⁿ, max_backoff)`.
//! - A `Retry-After` from the backend is a floor: the retry never comes sooner. When it asks
//!   for longer than `max_backoff`, the answer goes back to the client as it is.
//! - A [`RetryBudget`] caps retries at a share of the requests (plus a small reserve per
//!   second), so a failing backend never sees the load multiplied.
//! - Every attempt fits in the connector's `timeout`, which bounds the whole exchange.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, StatusCode, header};

/// `retry` settings of a connector.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySettings {
    /// Retries after the first attempt (0 turns retries off; the stale-connection resend
    /// stays).
    pub retries: u32,
    /// The first backoff.
    pub backoff: Duration,
    /// The longest backoff, and the longest `Retry-After` waited for.
    pub max_backoff: Duration,
    /// Backend statuses that are retried.
    pub retry_on: Vec<StatusCode>,
    /// Retries allowed per request, on average (0.2: one retry per five requests).
    pub budget_ratio: f64,
    /// Retries allowed per second whatever the traffic, so a quiet gateway can still retry.
    pub budget_min_per_sec: u32,
}

pub const DEFAULT_RETRIES: u32 = 2;
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(25);
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_millis(250);
pub const DEFAULT_BUDGET_RATIO: f64 = 0.2;
pub const DEFAULT_BUDGET_MIN_PER_SEC: u32 = 10;

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            retries: DEFAULT_RETRIES,
            backoff: DEFAULT_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            retry_on: vec![
                StatusCode::BAD_GATEWAY,
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::GATEWAY_TIMEOUT,
            ],
            budget_ratio: DEFAULT_BUDGET_RATIO,
            budget_min_per_sec: DEFAULT_BUDGET_MIN_PER_SEC,
        }
    }
}

/// Whether a method may be sent twice with the same effect (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &http::Method) -> bool {
    matches!(
        *method,
        http::Method::GET
            | http::Method::HEAD
            | http::Method::PUT
            | http::Method::DELETE
            | http::Method::OPTIONS
            | http::Method::TRACE
    )
}

/// What the last attempt gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// No connection, or it broke before a response.
    Failed,
    /// A response with this status and, if it said so, how long to wait.
    Answered(StatusCode, Option<Duration>),
}

/// A connector's retry policy with its budget.
#[derive(Debug)]
pub struct RetryPolicy {
    settings: RetrySettings,
    budget: RetryBudget,
    retries: AtomicU64,
    exhausted: AtomicU64,
}

impl RetryPolicy {
    pub fn new(settings: RetrySettings) -> RetryPolicy {
        let budget = RetryBudget::new(settings.budget_ratio, settings.budget_min_per_sec);
        RetryPolicy {
            settings,
            budget,
            retries: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
        }
    }

    pub fn settings(&self) -> &RetrySettings {
        &self.settings
    }

    /// Called once per request (not per attempt): feeds the budget.
    pub fn on_request(&self) {
        self.budget.deposit();
    }

    /// Retries so far, and retries refused by the budget.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.retries.load(Ordering::Relaxed),
            self.exhausted.load(Ordering::Relaxed),
        )
    }

    /// After attempt number `attempt` (0 for the first) of a request that may be sent again
    /// gave `outcome`: how long to wait before the next one, or `None` to stop. `left` is the
    /// time remaining until the connector's deadline. Whether a request may be sent again
    /// is the caller's to know: its method is idempotent ([`is_idempotent`]), or the
    /// configuration says the operation is.
    pub fn next(&self, attempt: u32, outcome: Attempt, left: Duration) -> Option<Duration> {
        if attempt >= self.settings.retries {
            return None;
        }
        let floor = match outcome {
            Attempt::Failed => Duration::ZERO,
            Attempt::Answered(status, retry_after) => {
                if !self.settings.retry_on.contains(&status) {
                    return None;
                }
                match retry_after {
                    Some(wait) if wait > self.settings.max_backoff => return None,
                    Some(wait) => wait,
                    None => Duration::ZERO,
                }
            }
        };
        let wait = self.backoff(attempt).max(floor);
        if wait >= left {
            return None;
        }
        if !self.budget.withdraw() {
            self.exhausted.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.retries.fetch_add(1, Ordering::Relaxed);
        Some(wait)
    }

    /// The jittered backoff before retry `attempt + 1`: between half and all of
    /// `min(backoff × 2^attempt, max_backoff)`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .settings
            .backoff
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.settings.max_backoff);
        let half = ceiling / 2;
        let jitter = u64::try_from(half.as_micros()).unwrap_or(u64::MAX);
        half + Duration::from_micros(fastrand::u64(0..=jitter))
    }
}

/// Retries as a share of requests: every request deposits `ratio` of a token, every retry
/// takes a whole one; `min_per_sec` tokens come back each second regardless. The balance
/// is capped, so a long quiet spell does not bank an avalanche.
#[derive(Debug)]
pub struct RetryBudget {
    /// Thousandths of a token.
    ratio_milli: i64,
    min_per_sec: i64,
    cap_milli: i64,
    balance: AtomicI64,
    refilled: Mutex<Instant>,
}

impl RetryBudget {
    pub fn new(ratio: f64, min_per_sec: u32) -> RetryBudget {
        let ratio_milli = if ratio.is_finite() && ratio > 0.0 {
            (ratio * 1000.0).round() as i64
        } else {
            0
        };
        let min_per_sec = i64::from(min_per_sec);
        // Ten seconds of the floor, or a hundred requests' worth, whichever is more.
        let cap_milli = (min_per_sec * 10_000).max(ratio_milli * 100).max(1000);
        RetryBudget {
            ratio_milli,
            min_per_sec,
            cap_milli,
            balance: AtomicI64::new((min_per_sec * 1000).min(cap_milli)),
            refilled: Mutex::new(Instant::now()),
        }
    }

    pub fn deposit(&self) {
        if self.ratio_milli > 0 && self.balance.load(Ordering::Relaxed) < self.cap_milli {
            self.balance.fetch_add(self.ratio_milli, Ordering::Relaxed);
        }
    }

    /// Takes one retry's worth, if the budget has it.
    pub fn withdraw(&self) -> bool {
        if let Ok(mut refilled) = self.refilled.lock() {
            let elapsed = refilled.elapsed();
            let earned = i64::try_from(elapsed.as_millis())
                .unwrap_or(i64::MAX)
                .saturating_mul(self.min_per_sec);
            if earned >= 1 {
                *refilled = Instant::now();
                let _ = self
                    .balance
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                        Some(b.saturating_add(earned).min(self.cap_milli))
                    });
            }
        }
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= 1000).then_some(b - 1000)
            })
            .is_ok()
    }
}

/// Reads `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3). A date in the
/// past means "now".
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(text).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use http::HeaderValue;

    use super::*;

    const LONG: Duration = Duration::from_secs(30);

    fn policy() -> RetryPolicy {
        RetryPolicy::new(RetrySettings::default())
    }

    #[test]
    fn stops_after_the_configured_retries_and_on_other_statuses() {
        let policy = policy();
        assert!(policy.next(1, Attempt::Failed, LONG).is_some());
        assert_eq!(policy.next(2, Attempt::Failed, LONG), None);
        for status in [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::TOO_MANY_REQUESTS,
        ] {
            assert_eq!(policy.next(0, Attempt::Answered(status, None), LONG), None);
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_stays_capped() {
        let policy = policy();
        for _ in 0..100 {
            let first = policy.backoff(0);
            assert!(first >= Duration::from_micros(12_500) && first <= DEFAULT_BACKOFF);
            let third = policy.backoff(2);
            assert!(third >= Duration::from_millis(50) && third <= Duration::from_millis(100));
            assert!(policy.backoff(20) <= DEFAULT_MAX_BACKOFF);
        }
    }

    #[test]
    fn retry_after_is_a_floor_and_a_long_one_is_passed_on() {
        let policy = policy();
        let wait = policy
            .next(
                0,
                Attempt::Answered(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some(Duration::from_millis(200)),
                ),
                LONG,
            )
            .unwrap();
        assert!(wait >= Duration::from_millis(200));
        assert_eq!(
            policy.next(
                0,
                Attempt::Answered(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some(Duration::from_secs(5))
                ),
                LONG
            ),
            None
        );
        // No retry that would pass the deadline.
        assert_eq!(
            policy.next(
                0,
                Attempt::Answered(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some(Duration::from_millis(200))
                ),
                Duration::from_millis(100)
            ),
            None
        );
    }

    #[test]
    fn the_budget_caps_retries_at_a_share_of_requests() {
        let budget = RetryBudget::new(0.5, 0);
        assert!(!budget.withdraw(), "nothing banked yet");
        for _ in 0..4 {
            budget.deposit();
        }
        assert!(budget.withdraw());
        assert!(budget.withdraw());
        assert!(!budget.withdraw());

        let floor = RetryBudget::new(0.0, 3);
        assert!(floor.withdraw() && floor.withdraw() && floor.withdraw());
        assert!(!floor.withdraw());
    }

    #[test]
    fn reads_retry_after_in_both_forms() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        headers.insert(header::RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
