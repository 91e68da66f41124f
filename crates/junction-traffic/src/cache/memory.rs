//! The in-memory cache store, the default: moka's async cache, bounded by the bytes its
//! entries take, each entry expiring when neither its fresh nor its stale windows can use
//! it any more.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use moka::Expiry;
use moka::future::Cache;

use super::entry::{CachedResponse, now_ms};
use super::{CacheStore, StoreError, StoreUsage};

/// Entries in one process's memory.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    entries: Cache<String, Arc<CachedResponse>>,
    /// Entries removed to make room (not those that expired or were purged).
    evictions: Arc<AtomicU64>,
}

struct KeepFor;

impl Expiry<String, Arc<CachedResponse>> for KeepFor {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<CachedResponse>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.keep_for(now_ms()))
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Arc<CachedResponse>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.keep_for(now_ms()))
    }
}

impl MemoryStore {
    /// A store holding at most `max_bytes` of entries (keys included).
    pub fn new(max_bytes: u64) -> MemoryStore {
        let evictions = Arc::new(AtomicU64::new(0));
        let evicted = evictions.clone();
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .eviction_listener(move |_key, _value, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    evicted.fetch_add(1, Ordering::Relaxed);
                }
            })
            .weigher(|key: &String, value: &Arc<CachedResponse>| {
                u32::try_from(key.len() as u64 + value.weight()).unwrap_or(u32::MAX)
            })
            .expire_after(KeepFor)
            .build();
        MemoryStore { entries, evictions }
    }
}

impl CacheStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<CachedResponse>>, StoreError>> {
        Box::pin(async move { Ok(self.entries.get(key).await) })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        entry: Arc<CachedResponse>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.entries.insert(key.to_owned(), entry).await;
            Ok(())
        })
    }

    fn purge<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let matching: Vec<Arc<String>> = self
                .entries
                .iter()
                .filter(|(key, _)| key.starts_with(prefix))
                .map(|(key, _)| key)
                .collect();
            let mut purged = 0;
            for key in matching {
                if self.entries.remove(key.as_str()).await.is_some() {
                    purged += 1;
                }
            }
            Ok(purged)
        })
    }

    fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    fn usage(&self) -> Option<StoreUsage> {
        Some(StoreUsage {
            entries: self.entries.entry_count(),
            bytes: self.entries.weighted_size(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    use super::*;

    fn entry(body: usize, fresh: Duration) -> Arc<CachedResponse> {
        Arc::new(CachedResponse {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from(vec![b'x'; body]),
            stored_at: now_ms(),
            fresh_for: fresh,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            sent_to: None,
        })
    }

    #[tokio::test]
    async fn stores_purges_by_prefix_and_expires() {
        let store = MemoryStore::new(1 << 20);
        let long = Duration::from_secs(60);
        store.put("a/one/x", entry(10, long)).await.unwrap();
        store.put("a/two/x", entry(10, long)).await.unwrap();
        store.put("b/one/x", entry(10, long)).await.unwrap();
        store
            .put("a/short/x", entry(10, Duration::from_millis(50)))
            .await
            .unwrap();
        assert!(store.get("a/one/x").await.unwrap().is_some());
        assert_eq!(store.purge("a/one/").await.unwrap(), 1);
        assert!(store.get("a/one/x").await.unwrap().is_none());
        assert!(store.get("a/two/x").await.unwrap().is_some());

        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(store.get("a/short/x").await.unwrap().is_none());

        assert_eq!(store.purge("a/").await.unwrap(), 1);
        assert!(store.get("b/one/x").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn the_whole_cache_stays_within_its_byte_bound() {
        let store = MemoryStore::new(64 * 1024);
        for i in 0..100 {
            store
                .put(&format!("c/o/{i}"), entry(4096, Duration::from_secs(60)))
                .await
                .unwrap();
        }
        store.entries.run_pending_tasks().await;
        let usage = store.usage().unwrap();
        assert!(usage.bytes <= 64 * 1024, "{usage:?}");
        assert!(usage.entries < 100, "{usage:?}");
    }
}
