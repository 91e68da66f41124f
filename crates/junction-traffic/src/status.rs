//! What the traffic controls report: the figures of the cache, the limits, the breakers,
//! the concurrency limits, the retries, the upstream connection pools and the Redis link,
//! as `GET /api/v1/traffic` shows them and `/metrics` renders them.

use serde::Serialize;

use crate::cache::CacheSnapshot;
use crate::ratelimit::LimitSnapshot;
use crate::redis_link::RedisStatus;
use crate::resilience::breaker::BreakerSnapshot;
use crate::resilience::concurrency::ConcurrencySnapshot;

/// Traffic state as the admin API shows it (`GET /api/v1/traffic`).
#[derive(Debug, Clone, Serialize)]
pub struct TrafficStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSnapshot>,
    pub limits: Vec<LimitSnapshot>,
    pub breakers: Vec<BreakerSnapshot>,
    pub concurrency: Vec<ConcurrencySnapshot>,
    pub retries: Vec<RetryCounts>,
    /// The upstream connection pools (filled in by the gateway, which owns the clients).
    pub pool: PoolSnapshot,
}

/// A connector's retry counters.
#[derive(Debug, Clone, Serialize)]
pub struct RetryCounts {
    pub connector: String,
    /// Retries sent.
    pub retries: u64,
    /// Retries the budget refused.
    pub budget_exhausted: u64,
}

/// How the pools of a client are used, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolSnapshot {
    /// Plain-HTTP connections open now (idle or carrying a request).
    pub open: u64,
    /// Of those, the ones waiting in a pool.
    pub idle: u64,
    /// Plain-HTTP connections opened since the client was made.
    pub opened: u64,
    /// Requests sent on a connection taken from a pool.
    pub reused: u64,
    /// Requests to HTTPS backends (hyper-util's pool, not itemised).
    pub tls_requests: u64,
}

impl PoolSnapshot {
    /// Adds `other`'s figures to these.
    pub fn add(&mut self, other: PoolSnapshot) {
        self.open += other.open;
        self.idle += other.idle;
        self.opened += other.opened;
        self.reused += other.reused;
        self.tls_requests += other.tls_requests;
    }
}
