//! The shared Redis connection behind the Redis cache and rate limits: one multiplexed,
//! self-reconnecting connection per gateway, a time limit on every command, and a health
//! flag that lets requests skip Redis at once while it is away.
//!
//! Redis is never on the critical path of correctness: when a command fails with a
//! connection problem or takes longer than `timeout`, the link is marked *down* (one
//! warning in the log) and every later command fails fast with [`Unavailable`] until a
//! background probe (`PING` every `probe_interval`) succeeds again (one info line). The
//! callers decide what "unavailable" means: the cache is bypassed, limits fail open or
//! closed. Nothing here needs a runtime until the first command, so a gateway can be
//! compiled outside one.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Serialize;
use tokio::sync::OnceCell;

use junction_model::Secret;

/// How to reach Redis (`[redis]` in `junction.toml`).
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]`; may carry a password, so it is a secret.
    pub url: Secret,
    /// Prepended to every key Junction writes, so several gateways (or tests) can share a
    /// server without seeing each other's keys.
    pub prefix: String,
    /// Longest wait for one command; past it the link is marked down.
    pub timeout: Duration,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// How often the background probe pings.
    pub probe_interval: Duration,
}

pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_REDIS_PREFIX: &str = "junction:";
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(250);
pub const DEFAULT_REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_REDIS_PROBE_INTERVAL: Duration = Duration::from_millis(500);

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: Secret::new(DEFAULT_REDIS_URL),
            prefix: DEFAULT_REDIS_PREFIX.to_owned(),
            timeout: DEFAULT_REDIS_TIMEOUT,
            connect_timeout: DEFAULT_REDIS_CONNECT_TIMEOUT,
            probe_interval: DEFAULT_REDIS_PROBE_INTERVAL,
        }
    }
}

/// Why a Redis command did not run.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// Redis is (or just went) away; the caller falls back at once.
    #[error("redis is unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with an error (a bug, or a server that is not Redis 6+).
    #[error("redis refused the command: {0}")]
    Command(String),
}

/// The shorthand for [`RedisError::Unavailable`] in signatures.
pub type Unavailable = RedisError;

/// The link's health, as the admin API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RedisStatus {
    /// `up` or `down`.
    pub state: &'static str,
    /// Commands that failed (connection problems, time-outs, server errors).
    pub errors: u64,
    /// Times the link went down.
    pub outages: u64,
    /// When the current state began (seconds since the Unix epoch); `None` before the
    /// first command.
    pub since: Option<u64>,
}

/// A handle on the shared connection; cheap to clone.
#[derive(Clone)]
pub struct RedisLink(Arc<Inner>);

struct Inner {
    client: redis::Client,
    settings: RedisSettings,
    manager: OnceCell<ConnectionManager>,
    healthy: AtomicBool,
    errors: AtomicU64,
    outages: AtomicU64,
    since: Mutex<Option<SystemTime>>,
}

impl fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client holds the URL, which may hold a password: never print it.
        f.debug_struct("RedisLink")
            .field("prefix", &self.0.settings.prefix)
            .field("healthy", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// Parses the URL; connects only when the first command runs.
    pub fn new(settings: RedisSettings) -> Result<RedisLink, String> {
        let client = redis::Client::open(settings.url.expose()).map_err(|e| {
            // The message of a parse error does not repeat the URL.
            format!("the Redis URL is not usable: {e}")
        })?;
        Ok(RedisLink(Arc::new(Inner {
            client,
            settings,
            manager: OnceCell::new(),
            healthy: AtomicBool::new(true),
            errors: AtomicU64::new(0),
            outages: AtomicU64::new(0),
            since: Mutex::new(None),
        })))
    }

    /// The key prefix every user of the link writes under.
    pub fn prefix(&self) -> &str {
        &self.0.settings.prefix
    }

    /// Whether commands are being sent (the last one worked, or the probe says Redis is back).
    pub fn is_up(&self) -> bool {
        self.0.healthy.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> RedisStatus {
        let since = self
            .0
            .since
            .lock()
            .ok()
            .and_then(|s| *s)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        RedisStatus {
            state: if self.is_up() { "up" } else { "down" },
            errors: self.0.errors.load(Ordering::Relaxed),
            outages: self.0.outages.load(Ordering::Relaxed),
            since,
        }
    }

    /// Runs `command` on the shared connection, within the time limit. Fails fast while
    /// the link is down.
    pub async fn run<T, F, Fut>(&self, command: F) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.is_up() {
            return Err(RedisError::Unavailable("marked down".into()));
        }
        let manager = self.manager().await?;
        self.timed(command(manager)).await
    }

    async fn timed<T>(
        &self,
        command: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisError> {
        match tokio::time::timeout(self.0.settings.timeout, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                self.0.errors.fetch_add(1, Ordering::Relaxed);
                if is_connection_problem(&error) {
                    let why = error.to_string();
                    self.mark_down(&why);
                    Err(RedisError::Unavailable(why))
                } else {
                    Err(RedisError::Command(error.to_string()))
                }
            }
            Err(_) => {
                self.0.errors.fetch_add(1, Ordering::Relaxed);
                let why = format!("no answer within {}ms", self.0.settings.timeout.as_millis());
                self.mark_down(&why);
                Err(RedisError::Unavailable(why))
            }
        }
    }

    /// The connection manager, created (lazily connecting) on first use, together with the
    /// background probe.
    async fn manager(&self) -> Result<ConnectionManager, RedisError> {
        let inner = &self.0;
        let manager = inner
            .manager
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(inner.settings.connect_timeout))
                    .set_response_timeout(Some(inner.settings.timeout))
                    // Reconnect once per failure; the probe keeps trying after that.
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(10))
                    .set_max_delay(Duration::from_millis(200));
                let manager = ConnectionManager::new_lazy_with_config(inner.client.clone(), config)
                    .map_err(|e| RedisError::Unavailable(e.to_string()))?;
                self.set_since();
                tokio::spawn(probe(Arc::downgrade(&self.0)));
                Ok::<_, RedisError>(manager)
            })
            .await?;
        Ok(manager.clone())
    }

    fn set_since(&self) {
        if let Ok(mut since) = self.0.since.lock() {
            *since = Some(SystemTime::now());
        }
    }

    fn mark_down(&self, why: &str) {
        if self.0.healthy.swap(false, Ordering::Relaxed) {
            self.0.outages.fetch_add(1, Ordering::Relaxed);
            self.set_since();
            tracing::warn!(
                prefix = %self.0.settings.prefix,
                reason = why,
                "redis is unavailable: the shared cache is bypassed and rate limits apply their \
                 `on_redis_error` policy until it is back"
            );
        }
    }

    fn mark_up(&self) {
        if !self.0.healthy.swap(true, Ordering::Relaxed) {
            self.set_since();
            tracing::info!(prefix = %self.0.settings.prefix, "redis is back: shared cache and limits resume");
        }
    }

    /// One probe: `PING` within the time limit, whatever the health flag says.
    async fn ping(&self) -> bool {
        // The probe starts once the manager exists.
        let Some(manager) = self.0.manager.get() else {
            return false;
        };
        let mut connection = manager.clone();
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        matches!(
            tokio::time::timeout(self.0.settings.timeout, ping).await,
            Ok(Ok(_))
        )
    }
}

/// The background probe: pings while the link lives, marking it down or up as Redis comes
/// and goes. It holds only a weak reference, so it ends with the gateway.
async fn probe(link: Weak<Inner>) {
    loop {
        let interval = match link.upgrade() {
            Some(inner) => inner.settings.probe_interval,
            None => return,
        };
        tokio::time::sleep(interval).await;
        let Some(inner) = link.upgrade() else {
            return;
        };
        let link = RedisLink(inner);
        if link.ping().await {
            link.mark_up();
        } else if link.is_up() {
            link.0.errors.fetch_add(1, Ordering::Relaxed);
            link.mark_down("the health probe got no answer");
        }
    }
}

fn is_connection_problem(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn the_url_never_shows_in_debug_output() {
        let link = RedisLink::new(RedisSettings {
            url: Secret::new("redis://user:hunter2@127.0.0.1:1/0"),
            ..RedisSettings::default()
        })
        .unwrap();
        assert!(!format!("{link:?}").contains("hunter2"));
        assert!(
            RedisLink::new(RedisSettings {
                url: Secret::new("http://nope"),
                ..RedisSettings::default()
            })
            .is_err()
        );
    }

    #[tokio::test]
    async fn a_missing_server_marks_the_link_down_and_later_commands_fail_fast() {
        let link = RedisLink::new(RedisSettings {
            url: Secret::new(format!("redis://127.0.0.1:{}", closed_port())),
            probe_interval: Duration::from_secs(60),
            ..RedisSettings::default()
        })
        .unwrap();
        assert!(link.is_up(), "optimistic before the first command");
        let first = link
            .run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await;
        assert!(
            matches!(first, Err(RedisError::Unavailable(_))),
            "{first:?}"
        );
        assert!(!link.is_up());
        let status = link.status();
        assert_eq!(status.state, "down");
        assert_eq!(status.outages, 1);
        // Fails fast without touching the network.
        let started = std::time::Instant::now();
        let again = link
            .run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await;
        assert!(matches!(again, Err(RedisError::Unavailable(_))));
        assert!(started.elapsed() < Duration::from_millis(50));
    }
}
