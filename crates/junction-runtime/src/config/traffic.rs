//! The traffic keys of `junction.toml`: `[redis]`, `[cache]`, `[rate_limit]`, and per
//! connector `cache`, `rate_limit`, `retry`, `breaker`, `max_concurrency`,
//! `queue_timeout`, plus `[connector.NAME.operation.ID.cache]`.
//!
//! Raw structs (serde, unknown keys rejected) are turned into the typed settings of
//! [`crate::cache`], [`crate::ratelimit`], [`crate::resilience`] and [`crate::redis_link`]
//! through a [`Reader`], which expands `${VAR}` and records problems with their position;
//! the configuration builder implements it.

use std::fmt;
use std::time::Duration;

use crate::config::spanned::Spanned;
use http::{HeaderName, StatusCode};
use serde::Deserialize;

use crate::Secret;
use crate::cache::{Backend, CachePolicy, CacheSettings};
use crate::config::units;
use crate::ratelimit::{FailMode, Rate};
use crate::redis_link::RedisSettings;
use crate::resilience::breaker::BreakerSettings;
use crate::resilience::concurrency::ConcurrencySettings;
use crate::resilience::retry::RetrySettings;

/// Expands values and records problems; implemented by the configuration builder.
pub(crate) trait Reader {
    /// The text of a string value, `${VAR}` expanded; `None` after recording a problem.
    fn expand(&mut self, value: &Spanned<String>, key: &str) -> Option<String>;
    /// Records a problem at byte offset `at` of the file.
    fn problem(&mut self, at: usize, key: &str, message: &dyn fmt::Display);
}

/// A value that may be written as a string (to use `${VAR}`) or as a TOML scalar.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(crate) enum Flex {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
}

// ------------------------------------------------------------------ raw sections

/// `[redis]`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedis {
    url: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    probe_interval: Option<Spanned<String>>,
}

/// `[cache]`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCache {
    backend: Option<Spanned<String>>,
    max_size: Option<Spanned<Flex>>,
    max_entry_size: Option<Spanned<Flex>>,
}

/// `[rate_limit]`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    backend: Option<Spanned<String>>,
    on_redis_error: Option<Spanned<String>>,
    per_client: Option<Spanned<String>>,
}

/// `[connector.NAME.cache]` and `[connector.NAME.operation.ID.cache]`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCachePolicy {
    enabled: Option<Spanned<Flex>>,
    ttl: Option<Spanned<String>>,
    methods: Option<Vec<Spanned<String>>>,
    stale_while_revalidate: Option<Spanned<String>>,
    stale_if_error: Option<Spanned<String>>,
    vary_connection: Option<Spanned<Flex>>,
    vary_headers: Option<Vec<Spanned<String>>>,
    honour_cache_control: Option<Spanned<Flex>>,
}

/// `[connector.NAME.rate_limit]`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConnectorLimits {
    per_connection: Option<Spanned<String>>,
    per_backend: Option<Spanned<String>>,
}

/// `[connector.NAME.retry]`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    retries: Option<Spanned<Flex>>,
    backoff: Option<Spanned<String>>,
    max_backoff: Option<Spanned<String>>,
    retry_on: Option<Vec<Spanned<Flex>>>,
    budget_ratio: Option<Spanned<Flex>>,
    budget_min_per_sec: Option<Spanned<Flex>>,
}

/// `[connector.NAME.breaker]`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBreaker {
    enabled: Option<Spanned<Flex>>,
    failures: Option<Spanned<Flex>>,
    open_for: Option<Spanned<String>>,
    half_open_probes: Option<Spanned<Flex>>,
    failure_statuses: Option<Vec<Spanned<Flex>>>,
}

/// The traffic keys of one `[connector.NAME]` section, gathered by the builder.
#[derive(Debug, Default)]
pub(crate) struct RawConnectorTraffic {
    pub cache: Option<RawCachePolicy>,
    pub rate_limit: Option<RawConnectorLimits>,
    pub retry: Option<RawRetry>,
    pub breaker: Option<RawBreaker>,
    pub max_concurrency: Option<Spanned<Flex>>,
    pub queue_timeout: Option<Spanned<String>>,
}

// ------------------------------------------------------------------ typed settings

/// The gateway-wide traffic settings.
#[derive(Debug, Clone, Default)]
pub struct TrafficConfig {
    /// `[redis]`; `None` when no section and no backend asks for Redis.
    pub redis: Option<RedisSettings>,
    pub cache: CacheSettings,
    pub rate_limit: RateLimitSettings,
}

/// `[rate_limit]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitSettings {
    pub backend: Backend,
    pub on_redis_error: FailMode,
    /// Every client (by source address until client identities exist), across connectors.
    pub per_client: Option<Rate>,
}

/// A cache section as written: every key optional, so an operation's section can
/// override some of its connector's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheOverrides {
    pub enabled: Option<bool>,
    pub ttl: Option<Duration>,
    pub methods: Option<Vec<http::Method>>,
    pub stale_while_revalidate: Option<Duration>,
    pub stale_if_error: Option<Duration>,
    pub vary_connection: Option<bool>,
    pub vary_headers: Option<Vec<HeaderName>>,
    pub honour_cache_control: Option<bool>,
}

impl CacheOverrides {
    /// The policy of an operation from its connector's section and its own: `None` when
    /// neither exists or the result is disabled.
    pub fn resolve(
        connector: Option<&CacheOverrides>,
        operation: Option<&CacheOverrides>,
    ) -> Option<CachePolicy> {
        if connector.is_none() && operation.is_none() {
            return None;
        }
        macro_rules! pick {
            ($field:ident) => {
                operation
                    .and_then(|o| o.$field.clone())
                    .or_else(|| connector.and_then(|c| c.$field.clone()))
            };
        }
        if !pick!(enabled).unwrap_or(true) {
            return None;
        }
        let default = CachePolicy::default();
        Some(CachePolicy {
            ttl: pick!(ttl).unwrap_or(default.ttl),
            methods: pick!(methods).unwrap_or(default.methods),
            stale_while_revalidate: pick!(stale_while_revalidate)
                .unwrap_or(default.stale_while_revalidate),
            stale_if_error: pick!(stale_if_error).unwrap_or(default.stale_if_error),
            vary_connection: pick!(vary_connection).unwrap_or(default.vary_connection),
            vary_headers: pick!(vary_headers).unwrap_or(default.vary_headers),
            honour_cache_control: pick!(honour_cache_control)
                .unwrap_or(default.honour_cache_control),
        })
    }
}

/// The traffic settings of one connector. The default has the breaker on and nothing else.
#[derive(Debug, Clone)]
pub struct ConnectorTraffic {
    /// `[connector.NAME.cache]`.
    pub cache: Option<CacheOverrides>,
    /// Every connection of the connector (the default one until the connection store).
    pub per_connection: Option<Rate>,
    /// All calls to the backend, to protect it.
    pub per_backend: Option<Rate>,
    /// `[connector.NAME.retry]`; `None` (no section) sends every request once.
    pub retry: Option<RetrySettings>,
    /// `None` when `enabled = false`.
    pub breaker: Option<BreakerSettings>,
    pub concurrency: Option<ConcurrencySettings>,
}

impl Default for ConnectorTraffic {
    fn default() -> Self {
        ConnectorTraffic {
            cache: None,
            per_connection: None,
            per_backend: None,
            retry: None,
            breaker: Some(BreakerSettings::default()),
            concurrency: None,
        }
    }
}

// ------------------------------------------------------------------ building

/// Typed helpers over a [`Reader`].
pub(crate) struct Values<'a>(pub &'a mut dyn Reader);

impl Values<'_> {
    fn text(&mut self, value: &Spanned<String>, key: &str) -> Option<String> {
        self.0.expand(value, key)
    }

    fn flex(&mut self, value: &Spanned<Flex>, key: &str) -> Option<String> {
        match value.get_ref() {
            Flex::String(text) => {
                let spanned = Spanned::new(value.span(), text.clone());
                self.0.expand(&spanned, key)
            }
            Flex::Integer(n) => Some(n.to_string()),
            Flex::Float(n) => Some(n.to_string()),
            Flex::Boolean(b) => Some(b.to_string()),
        }
    }

    fn check<T, V>(
        &mut self,
        value: &Spanned<T>,
        key: &str,
        parsed: Result<V, String>,
    ) -> Option<V> {
        match parsed {
            Ok(v) => Some(v),
            Err(message) => {
                self.0.problem(value.span().start, key, &message);
                None
            }
        }
    }

    fn duration(
        &mut self,
        value: Option<&Spanned<String>>,
        key: &str,
        zero_ok: bool,
    ) -> Option<Duration> {
        let value = value?;
        let text = self.text(value, key)?;
        let parsed = units::parse_duration(&text).and_then(|d| {
            if d.is_zero() && !zero_ok {
                Err("must be longer than zero".to_owned())
            } else {
                Ok(d)
            }
        });
        self.check(value, key, parsed)
    }

    fn size(&mut self, value: Option<&Spanned<Flex>>, key: &str) -> Option<u64> {
        let value = value?;
        let text = self.flex(value, key)?;
        let parsed = units::parse_size(&text);
        self.check(value, key, parsed)
    }

    fn boolean(&mut self, value: Option<&Spanned<Flex>>, key: &str) -> Option<bool> {
        let value = value?;
        let text = self.flex(value, key)?;
        let parsed = match text.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(format!("`{other}` is not true or false")),
        };
        self.check(value, key, parsed)
    }

    fn count(&mut self, value: Option<&Spanned<Flex>>, key: &str, min: u32) -> Option<u32> {
        let value = value?;
        let text = self.flex(value, key)?;
        let parsed = text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= min)
            .ok_or_else(|| format!("`{text}` is not a whole number of at least {min}"));
        self.check(value, key, parsed)
    }

    /// A list of HTTP statuses from `min` to 599.
    fn statuses(&mut self, list: &[Spanned<Flex>], key: &str, min: u16) -> Vec<StatusCode> {
        let mut statuses = Vec::new();
        for value in list {
            let Some(text) = self.flex(value, key) else {
                continue;
            };
            let parsed = text
                .trim()
                .parse::<u16>()
                .ok()
                .and_then(|n| StatusCode::from_u16(n).ok())
                .filter(|s| (min..=599).contains(&s.as_u16()))
                .ok_or_else(|| format!("`{text}` is not an error status ({min}–599)"));
            if let Some(status) = self.check(value, key, parsed) {
                statuses.push(status);
            }
        }
        statuses
    }

    fn rate(&mut self, value: Option<&Spanned<String>>, key: &str) -> Option<Rate> {
        let value = value?;
        let text = self.text(value, key)?;
        let parsed = Rate::parse(&text);
        self.check(value, key, parsed)
    }

    fn backend(&mut self, value: Option<&Spanned<String>>, key: &str) -> Option<Backend> {
        let value = value?;
        let text = self.text(value, key)?;
        let parsed = match text.trim() {
            "memory" => Ok(Backend::Memory),
            "redis" => Ok(Backend::Redis),
            other => Err(format!(
                "`{other}` is not a backend; write \"memory\" or \"redis\""
            )),
        };
        self.check(value, key, parsed)
    }

    pub fn redis(&mut self, raw: &RawRedis) -> RedisSettings {
        let mut settings = RedisSettings::default();
        if let Some(url) = raw.url.as_ref() {
            // The URL may carry a password: expanded, checked, never echoed.
            if let Some(text) = self.text(url, "redis.url") {
                let parsed = if text.starts_with("redis://")
                    || text.starts_with("rediss://")
                    || text.starts_with("unix://")
                    || text.starts_with("redis+unix://")
                {
                    Ok(Secret::new(text))
                } else {
                    Err("must be a redis:// URL, such as \"redis://127.0.0.1:6379/0\"".to_owned())
                };
                if let Some(url) = self.check(url, "redis.url", parsed) {
                    settings.url = url;
                }
            }
        }
        if let Some(prefix) = raw
            .prefix
            .as_ref()
            .and_then(|p| self.text(p, "redis.prefix"))
        {
            settings.prefix = prefix;
        }
        if let Some(d) = self.duration(raw.timeout.as_ref(), "redis.timeout", false) {
            settings.timeout = d;
        }
        if let Some(d) = self.duration(raw.connect_timeout.as_ref(), "redis.connect_timeout", false)
        {
            settings.connect_timeout = d;
        }
        if let Some(d) = self.duration(raw.probe_interval.as_ref(), "redis.probe_interval", false) {
            settings.probe_interval = d;
        }
        settings
    }

    pub fn cache(&mut self, raw: &RawCache) -> CacheSettings {
        let mut settings = CacheSettings::default();
        if let Some(b) = self.backend(raw.backend.as_ref(), "cache.backend") {
            settings.backend = b;
        }
        if let Some(n) = self.size(raw.max_size.as_ref(), "cache.max_size") {
            settings.max_size = n;
        }
        if let Some(n) = self.size(raw.max_entry_size.as_ref(), "cache.max_entry_size") {
            settings.max_entry_size = n;
        }
        settings
    }

    pub fn rate_limit(&mut self, raw: &RawRateLimit) -> RateLimitSettings {
        let mut settings = RateLimitSettings::default();
        if let Some(b) = self.backend(raw.backend.as_ref(), "rate_limit.backend") {
            settings.backend = b;
        }
        if let Some(value) = raw.on_redis_error.as_ref()
            && let Some(text) = self.text(value, "rate_limit.on_redis_error")
        {
            let parsed = match text.trim() {
                "open" => Ok(FailMode::Open),
                "closed" => Ok(FailMode::Closed),
                other => Err(format!("`{other}` is not \"open\" or \"closed\"")),
            };
            if let Some(mode) = self.check(value, "rate_limit.on_redis_error", parsed) {
                settings.on_redis_error = mode;
            }
        }
        settings.per_client = self.rate(raw.per_client.as_ref(), "rate_limit.per_client");
        settings
    }

    /// A cache section; `key` is where it sits (`connector.a.cache`).
    pub fn cache_policy(&mut self, raw: &RawCachePolicy, key: &str) -> CacheOverrides {
        let k = |name: &str| format!("{key}.{name}");
        let methods = raw.methods.as_ref().map(|list| {
            let mut methods = Vec::new();
            for value in list {
                let Some(text) = self.text(value, &k("methods")) else {
                    continue;
                };
                let upper = text.trim().to_ascii_uppercase();
                let parsed = match upper.as_str() {
                    "GET" | "HEAD" | "POST" => http::Method::from_bytes(upper.as_bytes())
                        .map_err(|e| e.to_string()),
                    _ => Err(format!(
                        "`{text}` cannot be cached; cached methods are GET, HEAD and POST (read-only queries)"
                    )),
                };
                if let Some(method) = self.check(value, &k("methods"), parsed) {
                    methods.push(method);
                }
            }
            methods
        });
        let vary_headers = raw.vary_headers.as_ref().map(|list| {
            let mut names = Vec::new();
            for value in list {
                let Some(text) = self.text(value, &k("vary_headers")) else {
                    continue;
                };
                let parsed = HeaderName::from_bytes(text.trim().as_bytes())
                    .map_err(|_| format!("`{text}` is not a header name"));
                if let Some(name) = self.check(value, &k("vary_headers"), parsed) {
                    names.push(name);
                }
            }
            names
        });
        CacheOverrides {
            enabled: self.boolean(raw.enabled.as_ref(), &k("enabled")),
            ttl: self.duration(raw.ttl.as_ref(), &k("ttl"), false),
            methods,
            stale_while_revalidate: self.duration(
                raw.stale_while_revalidate.as_ref(),
                &k("stale_while_revalidate"),
                true,
            ),
            stale_if_error: self.duration(raw.stale_if_error.as_ref(), &k("stale_if_error"), true),
            vary_connection: self.boolean(raw.vary_connection.as_ref(), &k("vary_connection")),
            vary_headers,
            honour_cache_control: self.boolean(
                raw.honour_cache_control.as_ref(),
                &k("honour_cache_control"),
            ),
        }
    }

    /// The traffic keys of `[connector.NAME]`; `key` is `connector.NAME`.
    pub fn connector(&mut self, raw: &RawConnectorTraffic, key: &str) -> ConnectorTraffic {
        let k = |name: &str| format!("{key}.{name}");
        let mut traffic = ConnectorTraffic {
            cache: raw
                .cache
                .as_ref()
                .map(|c| self.cache_policy(c, &k("cache"))),
            ..ConnectorTraffic::default()
        };
        if let Some(limits) = &raw.rate_limit {
            traffic.per_connection = self.rate(
                limits.per_connection.as_ref(),
                &k("rate_limit.per_connection"),
            );
            traffic.per_backend =
                self.rate(limits.per_backend.as_ref(), &k("rate_limit.per_backend"));
        }
        if let Some(retry) = &raw.retry {
            let settings = traffic.retry.insert(RetrySettings::default());
            if let Some(n) = self.count(retry.retries.as_ref(), &k("retry.retries"), 0) {
                settings.retries = n;
            }
            if let Some(d) = self.duration(retry.backoff.as_ref(), &k("retry.backoff"), true) {
                settings.backoff = d;
            }
            if let Some(d) =
                self.duration(retry.max_backoff.as_ref(), &k("retry.max_backoff"), true)
            {
                settings.max_backoff = d;
            }
            if let Some(list) = &retry.retry_on {
                settings.retry_on = self.statuses(list, &k("retry.retry_on"), 400);
            }
            if let Some(value) = retry.budget_ratio.as_ref()
                && let Some(text) = self.flex(value, &k("retry.budget_ratio"))
            {
                let parsed = text
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|r| r.is_finite() && (0.0..=10.0).contains(r))
                    .ok_or_else(|| format!("`{text}` is not a ratio between 0 and 10"));
                if let Some(ratio) = self.check(value, &k("retry.budget_ratio"), parsed) {
                    settings.budget_ratio = ratio;
                }
            }
            if let Some(n) = self.count(
                retry.budget_min_per_sec.as_ref(),
                &k("retry.budget_min_per_sec"),
                0,
            ) {
                settings.budget_min_per_sec = n;
            }
        }
        if let Some(breaker) = &raw.breaker {
            let mut settings = BreakerSettings::default();
            if let Some(n) = self.count(breaker.failures.as_ref(), &k("breaker.failures"), 1) {
                settings.failures = n;
            }
            if let Some(d) = self.duration(breaker.open_for.as_ref(), &k("breaker.open_for"), false)
            {
                settings.open_for = d;
            }
            if let Some(n) = self.count(
                breaker.half_open_probes.as_ref(),
                &k("breaker.half_open_probes"),
                1,
            ) {
                settings.half_open_probes = n;
            }
            if let Some(list) = &breaker.failure_statuses {
                settings.failure_statuses =
                    self.statuses(list, &k("breaker.failure_statuses"), 500);
            }
            let enabled = self
                .boolean(breaker.enabled.as_ref(), &k("breaker.enabled"))
                .unwrap_or(true);
            traffic.breaker = enabled.then_some(settings);
        }
        if let Some(max) = self.count(raw.max_concurrency.as_ref(), &k("max_concurrency"), 1) {
            traffic.concurrency = Some(ConcurrencySettings {
                max,
                queue_timeout: self
                    .duration(raw.queue_timeout.as_ref(), &k("queue_timeout"), true)
                    .unwrap_or(Duration::ZERO),
            });
        } else if let Some(value) = &raw.queue_timeout {
            self.0.problem(
                value.span().start,
                &k("queue_timeout"),
                &"has no effect without `max_concurrency`",
            );
        }
        traffic
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[derive(Default)]
    struct Collect(Vec<String>);

    impl Reader for Collect {
        fn expand(&mut self, value: &Spanned<String>, _key: &str) -> Option<String> {
            Some(value.get_ref().replace("${RETRIES}", "4"))
        }
        fn problem(&mut self, _at: usize, key: &str, message: &dyn fmt::Display) {
            self.0.push(format!("`{key}`: {message}"));
        }
    }

    #[derive(Deserialize)]
    struct Doc {
        redis: Option<RawRedis>,
        cache: Option<RawCache>,
        rate_limit: Option<RawRateLimit>,
        connector_cache: Option<RawCachePolicy>,
        connector_limits: Option<RawConnectorLimits>,
        retry: Option<RawRetry>,
        breaker: Option<RawBreaker>,
        max_concurrency: Option<Spanned<Flex>>,
        queue_timeout: Option<Spanned<String>>,
    }

    fn read(text: &str) -> (TrafficConfig, ConnectorTraffic, Vec<String>) {
        let doc: Doc = toml::from_str(text).unwrap();
        let mut reader = Collect::default();
        let mut values = Values(&mut reader);
        let config = TrafficConfig {
            redis: doc.redis.as_ref().map(|r| values.redis(r)),
            cache: doc
                .cache
                .as_ref()
                .map(|c| values.cache(c))
                .unwrap_or_default(),
            rate_limit: doc
                .rate_limit
                .as_ref()
                .map(|r| values.rate_limit(r))
                .unwrap_or_default(),
        };
        let raw = RawConnectorTraffic {
            cache: doc.connector_cache,
            rate_limit: doc.connector_limits,
            retry: doc.retry,
            breaker: doc.breaker,
            max_concurrency: doc.max_concurrency,
            queue_timeout: doc.queue_timeout,
        };
        let connector = values.connector(&raw, "connector.a");
        (config, connector, reader.0)
    }

    #[test]
    fn defaults_cache_nothing_and_limit_nothing() {
        let (config, connector, problems) = read("");
        assert!(problems.is_empty());
        assert!(config.redis.is_none());
        assert_eq!(config.cache, CacheSettings::default());
        assert_eq!(config.rate_limit, RateLimitSettings::default());
        assert!(connector.cache.is_none());
        assert!(connector.per_connection.is_none());
        assert!(connector.concurrency.is_none());
        assert_eq!(connector.retry, None);
        assert_eq!(connector.breaker, Some(BreakerSettings::default()));
    }

    #[test]
    fn reads_every_key() {
        let (config, connector, problems) = read(
            r#"
max_concurrency = 8
queue_timeout = "50ms"
[redis]
url = "redis://127.0.0.1:6379/2"
prefix = "test:"
timeout = "100ms"
connect_timeout = "2s"
probe_interval = "1s"
[cache]
backend = "redis"
max_size = "16MiB"
max_entry_size = 65536
[rate_limit]
backend = "redis"
on_redis_error = "closed"
per_client = "600/min"
[connector_cache]
ttl = "30s"
methods = ["get", "POST"]
stale_while_revalidate = "5s"
stale_if_error = "5m"
vary_connection = false
vary_headers = ["Accept", "X-Tenant"]
honour_cache_control = "false"
[connector_limits]
per_connection = "500/min"
per_backend = "50/s"
[retry]
retries = "${RETRIES}"
backoff = "10ms"
max_backoff = "1s"
retry_on = [503, "429"]
budget_ratio = 0.5
budget_min_per_sec = 2
[breaker]
failures = 3
open_for = "2s"
half_open_probes = 2
failure_statuses = [500, "503"]
"#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let redis = config.redis.unwrap();
        assert_eq!(redis.url.expose(), "redis://127.0.0.1:6379/2");
        assert_eq!(redis.prefix, "test:");
        assert_eq!(redis.timeout, Duration::from_millis(100));
        assert_eq!(config.cache.backend, Backend::Redis);
        assert_eq!(config.cache.max_size, 16 << 20);
        assert_eq!(config.cache.max_entry_size, 65536);
        assert_eq!(config.rate_limit.on_redis_error, FailMode::Closed);
        assert_eq!(config.rate_limit.per_client.unwrap().to_string(), "600/min");

        let policy = CacheOverrides::resolve(connector.cache.as_ref(), None).unwrap();
        assert_eq!(policy.ttl, Duration::from_secs(30));
        assert_eq!(policy.methods, [http::Method::GET, http::Method::POST]);
        assert_eq!(policy.stale_if_error, Duration::from_secs(300));
        assert!(!policy.vary_connection);
        assert_eq!(policy.vary_headers.len(), 2);
        assert!(!policy.honour_cache_control);

        assert_eq!(connector.per_connection.unwrap().to_string(), "500/min");
        assert_eq!(connector.per_backend.unwrap().to_string(), "50/s");
        let retry = connector.retry.unwrap();
        assert_eq!(retry.retries, 4);
        assert_eq!(
            retry.retry_on,
            [
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::TOO_MANY_REQUESTS
            ]
        );
        assert_eq!(retry.budget_ratio, 0.5);
        let breaker = connector.breaker.unwrap();
        assert_eq!((breaker.failures, breaker.half_open_probes), (3, 2));
        assert_eq!(
            breaker.failure_statuses,
            [
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::SERVICE_UNAVAILABLE
            ]
        );
        let concurrency = connector.concurrency.unwrap();
        assert_eq!(concurrency.max, 8);
        assert_eq!(concurrency.queue_timeout, Duration::from_millis(50));
    }

    #[test]
    fn operations_override_their_connector_field_by_field() {
        let connector = CacheOverrides {
            ttl: Some(Duration::from_secs(30)),
            stale_if_error: Some(Duration::from_secs(60)),
            ..CacheOverrides::default()
        };
        let operation = CacheOverrides {
            ttl: Some(Duration::from_secs(5)),
            ..CacheOverrides::default()
        };
        let policy = CacheOverrides::resolve(Some(&connector), Some(&operation)).unwrap();
        assert_eq!(policy.ttl, Duration::from_secs(5));
        assert_eq!(policy.stale_if_error, Duration::from_secs(60));
        let off = CacheOverrides {
            enabled: Some(false),
            ..CacheOverrides::default()
        };
        assert!(CacheOverrides::resolve(Some(&connector), Some(&off)).is_none());
        assert!(CacheOverrides::resolve(None, None).is_none());
        assert!(CacheOverrides::resolve(None, Some(&operation)).is_some());
    }

    #[test]
    fn collects_every_problem() {
        let (_, connector, problems) = read(
            r#"
queue_timeout = "1s"
[redis]
url = "http://nope"
timeout = "0s"
[cache]
backend = "disk"
max_size = "lots"
[rate_limit]
on_redis_error = "ajar"
per_client = "many/min"
[connector_cache]
methods = ["DELETE"]
vary_headers = ["bad header"]
enabled = "maybe"
[retry]
retry_on = [200]
budget_ratio = -1
[breaker]
failures = 0
enabled = false
"#,
        );
        let joined = problems.join("\n");
        for expected in [
            "`redis.url`: must be a redis:// URL",
            "`redis.timeout`: must be longer than zero",
            "`cache.backend`: `disk` is not a backend",
            "`cache.max_size`:",
            "`rate_limit.on_redis_error`: `ajar` is not \"open\" or \"closed\"",
            "`rate_limit.per_client`:",
            "`connector.a.cache.methods`: `DELETE` cannot be cached",
            "`connector.a.cache.vary_headers`: `bad header` is not a header name",
            "`connector.a.cache.enabled`: `maybe` is not true or false",
            "`connector.a.retry.retry_on`: `200` is not an error status",
            "`connector.a.retry.budget_ratio`:",
            "`connector.a.breaker.failures`:",
            "`connector.a.queue_timeout`: has no effect without `max_concurrency`",
        ] {
            assert!(
                joined.contains(expected),
                "missing {expected:?} in:\n{joined}"
            );
        }
        assert_eq!(problems.len(), 13, "{joined}");
        assert!(connector.breaker.is_none());
        assert!(!joined.contains("nope"), "the Redis URL is never echoed");
    }
}
