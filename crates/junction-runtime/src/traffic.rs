//! Traffic, running: the response cache, the rate limits and the guards of each backend
//! (circuit breaker, concurrency limit, per-backend limit, hold-offs), built once from the
//! configuration when the gateway is compiled.
//!
//! Everything here is optional and costs nothing when it is not configured: an operation
//! without a cache policy never builds a key, a connector without limits never counts, and
//! a backend's breaker is read with one atomic load while it is closed.
//!
//! Backends are guarded by address (`host:port`): connectors that call the same backend
//! share one breaker, one concurrency limit and one per-backend limit, each with the
//! settings of the first connector (in load order) that sets them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use junction_model::{Diagnostic, Diagnostics, Severity};
use sha2::{Digest, Sha256};

pub use junction_traffic::status::{RetryCounts, TrafficStatus};

use crate::Secret;
use crate::cache::memory::MemoryStore;
use crate::cache::redis::RedisStore;
use crate::cache::{Backend, CacheStore, ResponseCache};
use crate::config::traffic::ConnectorTraffic;
use crate::config::{Config, ConnectorConfig};
use crate::error::{Error, ErrorKind};
use crate::ratelimit::{self, Decision, Limit, LimitStore, Rate, Verdict};
use crate::redis_link::RedisLink;
use crate::resilience::HoldOffs;
use crate::resilience::breaker::Breaker;
use crate::resilience::concurrency::ConcurrencyLimit;
use crate::resilience::retry::RetryPolicy;

/// The gateway-wide traffic objects.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    pub redis: Option<RedisLink>,
    /// `None` when no connector, operation or view has a cache section.
    pub cache: Option<ResponseCache>,
    /// `[rate_limit] per_client`.
    pub per_client: Option<Limit>,
    /// Every per-connection and per-backend limit, for the status.
    limits: Vec<Arc<Limit>>,
    /// Every backend guard, for the status.
    guards: Vec<Arc<BackendGuard>>,
    /// Connectors with retries, for the status.
    retries: Vec<(String, Arc<RetryPolicy>)>,
    /// The limit store (memory or Redis), kept to build limiters.
    store: Option<LimitStore>,
    /// `[rate_limit] on_redis_error`.
    fail_mode: ratelimit::FailMode,
    /// Guards by backend address, while compiling.
    by_address: HashMap<String, Arc<BackendGuard>>,
}

/// The traffic objects of one connector.
#[derive(Debug, Default)]
pub(crate) struct ConnectorTrafficPlan {
    /// `rate_limit.per_connection`, counted by [`connection_id`](Self::connection_id).
    pub per_connection: Option<Arc<Limit>>,
    /// The guards of the connector's backend (`None` without a backend address).
    pub guard: Option<Arc<BackendGuard>>,
    pub retry: Option<Arc<RetryPolicy>>,
    /// The default connection's identity: its name and a hash of its values, so entries
    /// and limits of different credentials never mix (across replicas too).
    pub connection_id: Box<str>,
}

/// What protects one backend.
#[derive(Debug)]
pub(crate) struct BackendGuard {
    /// `host:port`, as the upstream URL names it.
    pub authority: String,
    pub breaker: Option<Breaker>,
    pub concurrency: Option<ConcurrencyLimit>,
    pub per_backend: Option<Arc<Limit>>,
    /// A backend's `429` + `Retry-After`, per connection.
    pub holds: HoldOffs,
}

impl Traffic {
    /// Builds the gateway-wide objects. Problems (a Redis URL that cannot be used) are
    /// errors in `diagnostics`.
    pub fn new(config: &Config, diagnostics: &mut Diagnostics) -> Traffic {
        let settings = &config.traffic;
        let file = config.file.display().to_string();
        let redis = settings
            .redis
            .as_ref()
            .and_then(|redis| match RedisLink::new(redis.clone()) {
                Ok(link) => Some(link),
                Err(message) => {
                    diagnostics.push(Diagnostic::new(
                        Severity::Error,
                        "redis",
                        &file,
                        "/redis/url",
                        message,
                    ));
                    None
                }
            });
        let caches =
            config.connectors.values().any(|c| {
                c.traffic.cache.is_some() || c.operations.values().any(|o| o.cache.is_some())
            }) || config.view_sections.values().any(|v| v.cache.is_some());
        let cache = caches
            .then(|| {
                let store: Arc<dyn CacheStore> = match (settings.cache.backend, &redis) {
                    (Backend::Redis, Some(link)) => Arc::new(RedisStore::new(link.clone())),
                    (Backend::Redis, None) => return None,
                    (Backend::Memory, _) => Arc::new(MemoryStore::new(settings.cache.max_size)),
                };
                Some(ResponseCache::new(store, settings.cache))
            })
            .flatten();
        let store = match (settings.rate_limit.backend, &redis) {
            (Backend::Redis, Some(link)) => Some(LimitStore::Redis(link.clone())),
            (Backend::Redis, None) => None,
            (Backend::Memory, _) => Some(LimitStore::Memory),
        };
        let mut traffic = Traffic {
            redis,
            cache,
            store,
            fail_mode: settings.rate_limit.on_redis_error,
            ..Traffic::default()
        };
        traffic.per_client = settings
            .rate_limit
            .per_client
            .and_then(|rate| traffic.limit("client", rate));
        traffic
    }

    fn limit(&self, name: &str, rate: Rate) -> Option<Limit> {
        let store = self.store.as_ref()?;
        Some(Limit::new(
            name,
            store.limiter(name, rate),
            self.redis_fail_mode(store),
        ))
    }

    fn redis_fail_mode(&self, store: &LimitStore) -> ratelimit::FailMode {
        match store {
            LimitStore::Memory => ratelimit::FailMode::Open,
            LimitStore::Redis(_) => self.fail_mode,
        }
    }

    /// The objects of connector `name`, whose backend is at `authority` (when it has one).
    pub fn connector(
        &mut self,
        name: &str,
        section: &ConnectorConfig,
        authority: Option<&str>,
    ) -> ConnectorTrafficPlan {
        let settings: &ConnectorTraffic = &section.traffic;
        let connection_id = connection_id(&section.connection);
        let per_connection = settings.per_connection.and_then(|rate| {
            let limit = Arc::new(self.limit(&format!("connection/{name}"), rate)?);
            self.limits.push(limit.clone());
            Some(limit)
        });
        let retry = settings.retry.clone().map(|retry| {
            let policy = Arc::new(RetryPolicy::new(retry));
            self.retries.push((name.to_owned(), policy.clone()));
            policy
        });
        let guard = authority.map(|authority| self.guard(authority, settings));
        ConnectorTrafficPlan {
            per_connection,
            guard,
            retry,
            connection_id,
        }
    }

    /// The guard of the backend at `authority`, made (or completed) with `settings`.
    fn guard(&mut self, authority: &str, settings: &ConnectorTraffic) -> Arc<BackendGuard> {
        if let Some(guard) = self.by_address.get(authority) {
            // Shared with an earlier connector, whose settings stand.
            return guard.clone();
        }
        let per_backend = settings.per_backend.and_then(|rate| {
            let limit = Arc::new(self.limit(&format!("backend/{authority}"), rate)?);
            self.limits.push(limit.clone());
            Some(limit)
        });
        let guard = Arc::new(BackendGuard {
            authority: authority.to_owned(),
            breaker: settings
                .breaker
                .clone()
                .map(|breaker| Breaker::new(authority, breaker)),
            concurrency: settings
                .concurrency
                .map(|limit| ConcurrencyLimit::new(authority, limit)),
            per_backend,
            holds: HoldOffs::default(),
        });
        self.by_address.insert(authority.to_owned(), guard.clone());
        self.guards.push(guard.clone());
        guard
    }

    pub fn status(&self) -> TrafficStatus {
        let mut limits = Vec::new();
        if let Some(limit) = &self.per_client {
            limits.push(limit.snapshot());
        }
        limits.extend(self.limits.iter().map(|l| l.snapshot()));
        TrafficStatus {
            redis: self.redis.as_ref().map(RedisLink::status),
            cache: self.cache.as_ref().map(ResponseCache::snapshot),
            limits,
            breakers: self
                .guards
                .iter()
                .filter_map(|g| g.breaker.as_ref().map(Breaker::snapshot))
                .collect(),
            concurrency: self
                .guards
                .iter()
                .filter_map(|g| g.concurrency.as_ref().map(ConcurrencyLimit::snapshot))
                .collect(),
            pool: crate::upstream::PoolSnapshot::default(),
            retries: self
                .retries
                .iter()
                .map(|(connector, policy)| {
                    let (retries, budget_exhausted) = policy.counts();
                    RetryCounts {
                        connector: connector.clone(),
                        retries,
                        budget_exhausted,
                    }
                })
                .collect(),
        }
    }
}

/// `default`, or `default~HASH` when the connection has values: the first 16 hex digits of
/// the SHA-256 of its sorted `name=value` pairs. The values themselves never leave the
/// process.
fn connection_id(values: &IndexMap<String, Secret>) -> Box<str> {
    if values.is_empty() {
        return "default".into();
    }
    let mut pairs: Vec<(&String, &Secret)> = values.iter().collect();
    pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut hasher = Sha256::new();
    hasher.update(b"junction-connection\0");
    for (name, value) in pairs {
        hasher.update(name.as_bytes());
        hasher.update(b"=");
        hasher.update(value.expose().as_bytes());
        hasher.update(b"\0");
    }
    let digest = hasher.finalize();
    let mut id = String::from("default~");
    for byte in digest.iter().take(8) {
        let _ = write!(id, "{byte:02x}");
    }
    id.into()
}

/// Checks one rule for `key`: the decision to report, or the refusal.
pub(crate) async fn check(
    limit: &Limit,
    key: &str,
    what: &(dyn Fn() -> String + Sync),
) -> Result<Option<Decision>, Error> {
    match limit.check(key).await {
        Verdict::Allowed(decision) => Ok(Some(decision)),
        Verdict::Unchecked => Ok(None),
        Verdict::Denied(decision) => Err(Error::new(
            ErrorKind::RateLimited,
            format!(
                "{} allows {} requests; retry in {}s",
                what(),
                limit.rate(),
                ratelimit::ceil_secs(decision.retry_after).max(1)
            ),
        )
        .with_rate_limit(&decision)),
        Verdict::Unavailable => Err(Error::new(
            ErrorKind::StoreUnavailable,
            format!(
                "{} cannot be checked while its store (Redis) is unavailable",
                what()
            ),
        )
        .with_retry_after(Duration::from_secs(1))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn connection_ids_hash_values_without_showing_them() {
        let mut values = IndexMap::new();
        assert_eq!(&*connection_id(&values), "default");
        values.insert("api_key".to_owned(), Secret::new("k1"));
        let one = connection_id(&values);
        assert!(one.starts_with("default~") && one.len() == "default~".len() + 16);
        assert!(!one.contains("k1"));
        values.insert("api_key".to_owned(), Secret::new("k2"));
        assert_ne!(one, connection_id(&values));
    }
}
