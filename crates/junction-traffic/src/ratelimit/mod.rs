//! Rate limits: GCRA (the token bucket as a single timestamp) per key, behind the
//! [`RateLimiter`] trait, in memory ([`memory`], governor) or shared through Redis
//! ([`redis`], one Lua script, atomic across replicas).
//!
//! A [`Rate`] of `N/period` admits a burst of `N` and then one request every `period / N`:
//! over any window of length `period` at most `2N` pass, and a client that starts full and
//! hammers gets exactly `N` at once. Both backends implement the same arithmetic, so
//! switching backends never changes what a client sees.
//!
//! A [`Limit`] is one rule (per client, per connection, per backend) with its limiter and
//! what to do when Redis is away: fail *open* (admit, the default) or *closed* (refuse with
//! 503). Answers carry the `RateLimit-*` fields of the IETF draft
//! (`RateLimit-Limit`, `-Remaining`, `-Reset`, `-Policy`) and, on refusal, `Retry-After`.

pub mod memory;
pub mod redis;

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use serde::Serialize;

use crate::redis_link::RedisLink;

/// `N` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub limit: NonZeroU32,
    pub period: Duration,
}

impl Rate {
    /// Reads `N/UNIT` or `N/DURATION`: `500/min`, `10/s`, `100/1m`, `5/250ms`. Units:
    /// `s`, `sec`, `second`, `m`, `min`, `minute`, `h`, `hour`, `d`, `day`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let help = || format!("`{text}` is not a rate; write e.g. \"500/min\" or \"10/s\"");
        let (count, per) = text.split_once('/').ok_or_else(help)?;
        let limit = count
            .trim()
            .parse::<u32>()
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| format!("`{text}`: the count must be a whole number above 0"))?;
        let per = per.trim();
        let period = match per {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => junction_model::units::parse_duration(other).map_err(|_| help())?,
        };
        if period.is_zero() {
            return Err(format!("`{text}`: the period must be longer than zero"));
        }
        Ok(Rate { limit, period })
    }

    /// The time one request takes from the allowance: `period / N`.
    pub fn emission_interval(&self) -> Duration {
        self.period / self.limit.get()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let period = self.period;
        let unit = match period.as_secs() {
            1 if period.subsec_nanos() == 0 => "s".to_owned(),
            60 if period.subsec_nanos() == 0 => "min".to_owned(),
            3600 if period.subsec_nanos() == 0 => "h".to_owned(),
            _ if period.subsec_millis() == 0 && period.subsec_nanos() == 0 => {
                format!("{}s", period.as_secs())
            }
            _ => format!("{}ms", period.as_millis()),
        };
        write!(f, "{}/{unit}", self.limit)
    }
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub rate: Rate,
    /// Requests that would still pass right now.
    pub remaining: u32,
    /// Until the allowance is whole again.
    pub reset: Duration,
    /// Until a refused request would pass; zero when allowed.
    pub retry_after: Duration,
}

/// Why a limiter could not decide.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LimitError {
    /// The shared store (Redis) is away.
    #[error("rate limit store unavailable: {0}")]
    Unavailable(String),
}

/// Counts requests per key against one [`Rate`]. Two implementations:
/// [`memory::MemoryLimiter`] and [`redis::RedisLimiter`].
pub trait RateLimiter: Send + Sync + fmt::Debug {
    /// `memory` or `redis`.
    fn backend(&self) -> &'static str;

    fn rate(&self) -> Rate;

    /// Takes one request from `key`'s allowance, if there is one.
    fn check<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Decision, LimitError>>;
}

/// Where limit counters live (`[rate_limit] backend`).
#[derive(Debug, Clone)]
pub enum LimitStore {
    Memory,
    Redis(RedisLink),
}

impl LimitStore {
    /// A limiter for the rule `name` (stable across replicas: it names the Redis keys).
    pub fn limiter(&self, name: &str, rate: Rate) -> Arc<dyn RateLimiter> {
        match self {
            LimitStore::Memory => Arc::new(memory::MemoryLimiter::new(rate)),
            LimitStore::Redis(link) => Arc::new(redis::RedisLimiter::new(link.clone(), name, rate)),
        }
    }
}

/// What to do when the shared store is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Admit requests (and say so in the log): availability over strictness.
    #[default]
    Open,
    /// Refuse them with 503 until the store is back.
    Closed,
}

/// The outcome of one rule for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed(Decision),
    Denied(Decision),
    /// The store is away and the rule fails open.
    Unchecked,
    /// The store is away and the rule fails closed.
    Unavailable,
}

/// Counters for the admin API.
#[derive(Debug, Default)]
pub struct LimitStats {
    pub allowed: AtomicU64,
    pub denied: AtomicU64,
    /// Admitted unchecked because the store was away (fail open).
    pub failed_open: AtomicU64,
    /// Refused because the store was away (fail closed).
    pub failed_closed: AtomicU64,
}

/// [`LimitStats`] as numbers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LimitSnapshot {
    pub name: String,
    pub rate: String,
    pub backend: &'static str,
    pub on_redis_error: FailMode,
    pub allowed: u64,
    pub denied: u64,
    pub failed_open: u64,
    pub failed_closed: u64,
}

/// One rule: a limiter, what to do when its store is away, and counters.
#[derive(Debug)]
pub struct Limit {
    name: String,
    limiter: Arc<dyn RateLimiter>,
    on_error: FailMode,
    stats: LimitStats,
}

impl Limit {
    pub fn new(
        name: impl Into<String>,
        limiter: Arc<dyn RateLimiter>,
        on_error: FailMode,
    ) -> Limit {
        Limit {
            name: name.into(),
            limiter,
            on_error,
            stats: LimitStats::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn rate(&self) -> Rate {
        self.limiter.rate()
    }

    /// Counts one request of `key`.
    pub async fn check(&self, key: &str) -> Verdict {
        match self.limiter.check(key).await {
            Ok(decision) if decision.allowed => {
                self.stats.allowed.fetch_add(1, Ordering::Relaxed);
                Verdict::Allowed(decision)
            }
            Ok(decision) => {
                self.stats.denied.fetch_add(1, Ordering::Relaxed);
                Verdict::Denied(decision)
            }
            Err(error) => match self.on_error {
                FailMode::Open => {
                    self.stats.failed_open.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(limit = %self.name, %error, "rate limit not checked (fails open)");
                    Verdict::Unchecked
                }
                FailMode::Closed => {
                    self.stats.failed_closed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(limit = %self.name, %error, "request refused: rate limit store away (fails closed)");
                    Verdict::Unavailable
                }
            },
        }
    }

    pub fn snapshot(&self) -> LimitSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LimitSnapshot {
            name: self.name.clone(),
            rate: self.rate().to_string(),
            backend: self.limiter.backend(),
            on_redis_error: self.on_error,
            allowed: get(&self.stats.allowed),
            denied: get(&self.stats.denied),
            failed_open: get(&self.stats.failed_open),
            failed_closed: get(&self.stats.failed_closed),
        }
    }
}

/// Of several decisions, the one a client should hear about: a refusal with the longest
/// wait, else the allowance closest to running out.
pub fn tightest(decisions: &[Decision]) -> Option<Decision> {
    decisions.iter().copied().min_by(|a, b| {
        a.allowed
            .cmp(&b.allowed)
            .then(b.retry_after.cmp(&a.retry_after))
            .then(a.remaining.cmp(&b.remaining))
            .then(b.reset.cmp(&a.reset))
    })
}

pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Whole seconds, rounded up: a client told "0" would retry at once.
pub fn ceil_secs(duration: Duration) -> u64 {
    let secs = duration.as_secs();
    if duration.subsec_nanos() > 0 {
        secs + 1
    } else {
        secs
    }
}

/// Adds the `RateLimit-*` fields for `decision` (and `Retry-After` when it refuses).
pub fn write_headers(headers: &mut HeaderMap, decision: &Decision) {
    headers.insert(
        RATELIMIT_LIMIT,
        HeaderValue::from(decision.rate.limit.get()),
    );
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(decision.remaining));
    headers.insert(
        RATELIMIT_RESET,
        HeaderValue::from(ceil_secs(decision.reset)),
    );
    let window = ceil_secs(decision.rate.period).max(1);
    if let Ok(policy) = HeaderValue::from_str(&format!("{};w={window}", decision.rate.limit)) {
        headers.insert(RATELIMIT_POLICY, policy);
    }
    if !decision.allowed {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(ceil_secs(decision.retry_after).max(1)),
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn rate(text: &str) -> Rate {
        Rate::parse(text).unwrap()
    }

    #[test]
    fn parses_rates() {
        assert_eq!(rate("500/min").period, Duration::from_secs(60));
        assert_eq!(rate("500/min").limit.get(), 500);
        assert_eq!(rate("10/s").emission_interval(), Duration::from_millis(100));
        assert_eq!(rate(" 100 / 1m ").period, Duration::from_secs(60));
        assert_eq!(rate("5/250ms").period, Duration::from_millis(250));
        assert_eq!(rate("1/day").period, Duration::from_secs(86_400));
        assert!(Rate::parse("0/s").unwrap_err().contains("above 0"));
        assert!(Rate::parse("ten/s").is_err());
        assert!(Rate::parse("10").is_err());
        assert!(Rate::parse("10/fortnight").is_err());
        assert_eq!(rate("500/min").to_string(), "500/min");
        assert_eq!(rate("5/250ms").to_string(), "5/250ms");
        assert_eq!(rate("5/10s").to_string(), "5/10s");
    }

    fn decision(allowed: bool, remaining: u32, retry_ms: u64) -> Decision {
        Decision {
            allowed,
            rate: rate("10/s"),
            remaining,
            reset: Duration::from_millis(1500),
            retry_after: Duration::from_millis(retry_ms),
        }
    }

    #[test]
    fn the_tightest_decision_is_reported() {
        let a = decision(true, 5, 0);
        let b = decision(true, 2, 0);
        let c = decision(false, 0, 300);
        let d = decision(false, 0, 900);
        assert_eq!(tightest(&[a, b]), Some(b));
        assert_eq!(tightest(&[a, c, b, d]), Some(d));
        assert_eq!(tightest(&[]), None);
    }

    #[test]
    fn headers_follow_the_draft() {
        let mut headers = HeaderMap::new();
        write_headers(&mut headers, &decision(true, 3, 0));
        assert_eq!(headers["ratelimit-limit"], "10");
        assert_eq!(headers["ratelimit-remaining"], "3");
        assert_eq!(headers["ratelimit-reset"], "2");
        assert_eq!(headers["ratelimit-policy"], "10;w=1");
        assert!(headers.get("retry-after").is_none());
        write_headers(&mut headers, &decision(false, 0, 10));
        assert_eq!(headers["retry-after"], "1");
    }
}
