//! The Redis cache store: entries shared by every replica that uses the same Redis and key
//! prefix. An entry one gateway writes is a hit on the others.
//!
//! Keys are `{prefix}cache:{key}`; values are [`CachedResponse::encode`]d bytes written with
//! `SET … PX`, so Redis drops them when no window can use them. Redis bounds the whole
//! cache itself (`maxmemory` with an eviction policy such as `allkeys-lru`). Purging scans
//! with `SCAN MATCH` and deletes with `UNLINK`, batch by batch.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::entry::{CachedResponse, now_ms};
use super::{CacheStore, StoreError};
use crate::redis_link::{RedisError, RedisLink};

/// Entries in Redis.
#[derive(Debug, Clone)]
pub struct RedisStore {
    link: RedisLink,
    /// `{prefix}cache:`.
    namespace: String,
}

/// Keys examined per `SCAN` step while purging.
const SCAN_BATCH: usize = 500;

impl RedisStore {
    pub fn new(link: RedisLink) -> RedisStore {
        let namespace = format!("{}cache:", link.prefix());
        RedisStore { link, namespace }
    }

    fn redis_key(&self, key: &str) -> String {
        let mut out = String::with_capacity(self.namespace.len() + key.len());
        out.push_str(&self.namespace);
        out.push_str(key);
        out
    }
}

impl From<RedisError> for StoreError {
    fn from(error: RedisError) -> Self {
        match error {
            RedisError::Unavailable(why) => StoreError::Unavailable(why),
            RedisError::Command(why) => StoreError::Failed(why),
        }
    }
}

impl CacheStore for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn available(&self) -> bool {
        self.link.is_up()
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<CachedResponse>>, StoreError>> {
        Box::pin(async move {
            let key = self.redis_key(key);
            let bytes: Option<Vec<u8>> = self
                .link
                .run(|mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await })
                .await?;
            // A value that does not decode (another program's, an older format) is a miss.
            Ok(bytes
                .as_deref()
                .and_then(CachedResponse::decode)
                .map(Arc::new))
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        entry: Arc<CachedResponse>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let keep = u64::try_from(entry.keep_for(now_ms()).as_millis()).unwrap_or(u64::MAX);
            if keep == 0 {
                return Ok(());
            }
            let key = self.redis_key(key);
            let bytes = entry.encode();
            self.link
                .run(|mut c| async move {
                    redis::cmd("SET")
                        .arg(key)
                        .arg(bytes)
                        .arg("PX")
                        .arg(keep)
                        .query_async::<()>(&mut c)
                        .await
                })
                .await?;
            Ok(())
        })
    }

    fn purge<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let pattern = format!("{}*", glob_escape(&self.redis_key(prefix)));
            let mut cursor: u64 = 0;
            let mut purged: u64 = 0;
            loop {
                let pattern = pattern.clone();
                let (next, keys): (u64, Vec<Vec<u8>>) = self
                    .link
                    .run(|mut c| async move {
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(SCAN_BATCH)
                            .query_async(&mut c)
                            .await
                    })
                    .await?;
                if !keys.is_empty() {
                    let removed: u64 = self
                        .link
                        .run(|mut c| async move {
                            redis::cmd("UNLINK").arg(keys).query_async(&mut c).await
                        })
                        .await?;
                    purged += removed;
                }
                if next == 0 {
                    return Ok(purged);
                }
                cursor = next;
            }
        })
    }
}

/// Escapes the characters `SCAN MATCH` treats as a pattern.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_only_the_prefix() {
        assert_eq!(glob_escape("j:cache:a/b*[x]?"), "j:cache:a/b\\*\\[x\\]\\?");
        assert_eq!(glob_escape("a-b\\c"), "a\\-b\\\\c");
    }
}
