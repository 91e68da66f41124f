//! The Redis limiter: the same GCRA as the memory one, run as one Lua script so that every
//! replica counts against the same allowance, atomically.
//!
//! The key `{prefix}rl:{rule}:{key}` holds the *theoretical arrival time* (TAT) in
//! microseconds of Redis's own clock (`TIME`), so replicas with different clocks agree.
//! It expires when the allowance is whole again, so idle keys cost nothing.

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{Decision, LimitError, Rate, RateLimiter};
use crate::redis_link::{RedisError, RedisLink};

/// GCRA in one step. KEYS[1]: the key. ARGV[1]: emission interval (µs), ARGV[2]: burst.
/// Returns {allowed, remaining, retry_after_µs, reset_µs}.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
local diff = now - allow_at
if diff < 0 then
  return {0, 0, allow_at - now, tat - now}
end
local ttl_ms = math.ceil((new_tat - now) / 1000)
if ttl_ms < 1 then ttl_ms = 1 end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', ttl_ms))
return {1, math.floor(diff / interval), 0, new_tat - now}
";

/// Per-key GCRA shared through Redis.
#[derive(Debug)]
pub struct RedisLimiter {
    link: RedisLink,
    rate: Rate,
    /// `{prefix}rl:{rule}:`.
    namespace: String,
    script: redis::Script,
}

impl RedisLimiter {
    pub fn new(link: RedisLink, rule: &str, rate: Rate) -> RedisLimiter {
        let namespace = format!("{}rl:{rule}:", link.prefix());
        RedisLimiter {
            link,
            rate,
            namespace,
            script: redis::Script::new(GCRA),
        }
    }
}

impl RateLimiter for RedisLimiter {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn rate(&self) -> Rate {
        self.rate
    }

    fn check<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Decision, LimitError>> {
        Box::pin(async move {
            let redis_key = format!("{}{key}", self.namespace);
            let interval = u64::try_from(self.rate.emission_interval().as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            let burst = self.rate.limit.get();
            let script = &self.script;
            let answer: Result<(i64, i64, i64, i64), RedisError> = self
                .link
                .run(|mut c| async move {
                    let mut invocation = script.prepare_invoke();
                    invocation.key(redis_key).arg(interval).arg(burst);
                    invocation.invoke_async(&mut c).await
                })
                .await;
            let (allowed, remaining, retry_after, reset) = match answer {
                Ok(answer) => answer,
                Err(RedisError::Unavailable(why)) => return Err(LimitError::Unavailable(why)),
                // A script error is a bug or a server too old for it; the rule cannot be
                // checked either way.
                Err(RedisError::Command(why)) => return Err(LimitError::Unavailable(why)),
            };
            let micros = |n: i64| Duration::from_micros(u64::try_from(n).unwrap_or(0));
            Ok(Decision {
                allowed: allowed == 1,
                rate: self.rate,
                remaining: u32::try_from(remaining).unwrap_or(0),
                reset: micros(reset),
                retry_after: micros(retry_after),
            })
        })
    }
}
