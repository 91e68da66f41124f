//! The response cache: per-operation policies, one store behind the [`CacheStore`] trait
//! (in memory by default, Redis to share entries between replicas), coalescing of
//! concurrent misses, and the stale windows.
//!
//! What the pipeline does with it, per request of an operation that has a [`CachePolicy`]
//! for its method:
//!
//! 1. build the key ([`key::KeyBuilder`]) from the bound arguments and vary dimensions;
//! 2. [`ResponseCache::lookup`]: fresh → `X-Cache: HIT`; stale within
//!    stale-while-revalidate → `STALE` and one background refresh; store unreachable →
//!    `BYPASS` (the backend is called as if there were no cache);
//! 3. on a miss, [`ResponseCache::join`]: the first request for a key *leads* and calls the
//!    backend; concurrent ones *follow* and get the leader's response when it lands
//!    (N concurrent misses, one upstream call);
//! 4. the leader buffers the response (up to `max_entry_size`), decides with
//!    [`control::storable`] whether to keep it, and stores it;
//! 5. when the backend fails and an entry within stale-if-error exists, that entry is served
//!    (`STALE`) instead of the error.
//!
//! A view with a policy goes through the same steps with its bound inputs as arguments
//! (key prefix [`key::VIEWS`]), its steps standing in for the backend.

pub mod control;
pub mod entry;
pub mod key;
pub mod memory;
pub mod redis;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body::Body;
use http_body_util::BodyExt;
use serde::Serialize;
use tokio::sync::watch;

pub use entry::{CachedResponse, Freshness, now_ms};

use crate::BoxError;

/// Why a store could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store is away (Redis down): bypass the cache.
    #[error("cache store unavailable: {0}")]
    Unavailable(String),
    #[error("cache store failed: {0}")]
    Failed(String),
}

/// How full a store is, when it can tell.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct StoreUsage {
    pub entries: u64,
    pub bytes: u64,
}

/// Where entries live. Two implementations: [`memory::MemoryStore`] and
/// [`redis::RedisStore`].
pub trait CacheStore: Send + Sync + fmt::Debug {
    /// `memory` or `redis`, for status output.
    fn backend(&self) -> &'static str;

    /// Whether it is worth asking now; `false` makes lookups bypass at once.
    fn available(&self) -> bool {
        true
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<CachedResponse>>, StoreError>>;

    /// Stores `entry` until [`CachedResponse::keep_for`] says no window can use it.
    fn put<'a>(
        &'a self,
        key: &'a str,
        entry: Arc<CachedResponse>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Removes every entry whose key starts with `prefix`; returns how many.
    fn purge<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, StoreError>>;

    fn usage(&self) -> Option<StoreUsage> {
        None
    }

    /// Entries removed to make room, when the store evicts by itself.
    fn evictions(&self) -> u64 {
        0
    }
}

/// Which store `[cache] backend` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Memory,
    Redis,
}

pub const DEFAULT_MAX_SIZE: u64 = 64 * 1024 * 1024;
pub const DEFAULT_MAX_ENTRY_SIZE: u64 = 1024 * 1024;
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// `[cache]`: the store every cached operation shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    pub backend: Backend,
    /// Bytes the memory store may hold in all (Redis is bounded by its own `maxmemory`).
    pub max_size: u64,
    /// Largest response body that is stored (and shared with coalesced requests); larger
    /// ones stream through.
    pub max_entry_size: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            backend: Backend::Memory,
            max_size: DEFAULT_MAX_SIZE,
            max_entry_size: DEFAULT_MAX_ENTRY_SIZE,
        }
    }
}

/// What is cached for one operation, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    /// How long a stored response is fresh (the backend's `max-age` may shorten it).
    pub ttl: Duration,
    /// Methods whose responses are cached: `GET` and `HEAD` by default; `POST` is opt-in
    /// for read-only queries and keys on a hash of the body.
    pub methods: Vec<http::Method>,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    /// Key on the connection identity (default), so one user's data never reaches another.
    pub vary_connection: bool,
    /// Request headers the key includes; `Accept` and `Accept-Language` by default, the
    /// client headers that travel upstream.
    pub vary_headers: Vec<HeaderName>,
    /// Follow the backend's `Cache-Control` (`no-store`, `no-cache`, `private`, `max-age`).
    pub honour_cache_control: bool,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            ttl: DEFAULT_TTL,
            methods: vec![http::Method::GET, http::Method::HEAD],
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            vary_connection: true,
            vary_headers: vec![header::ACCEPT, header::ACCEPT_LANGUAGE],
            honour_cache_control: true,
        }
    }
}

impl CachePolicy {
    pub fn applies_to(&self, method: &http::Method) -> bool {
        self.methods.contains(method)
    }

    /// The cached methods, for messages: `GET, HEAD`.
    pub fn method_list(&self) -> String {
        let names: Vec<&str> = self.methods.iter().map(http::Method::as_str).collect();
        names.join(", ")
    }

    /// Whether the key includes a hash of the request body.
    pub fn keys_body(method: &http::Method) -> bool {
        !matches!(*method, http::Method::GET | http::Method::HEAD)
    }

    /// The entry to store for a response, or why not.
    pub fn entry(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Bytes,
        now: u64,
    ) -> Result<CachedResponse, &'static str> {
        let (fresh_for, age) =
            match control::storable(status, headers, self.ttl, self.honour_cache_control) {
                control::Storable::Yes { fresh_for, age } => (fresh_for, age),
                control::Storable::No(why) => return Err(why),
            };
        let mut kept = headers.clone();
        kept.remove(header::AGE);
        let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        Ok(CachedResponse {
            status,
            headers: kept,
            body,
            stored_at: now.saturating_sub(age_ms),
            fresh_for,
            stale_while_revalidate: self.stale_while_revalidate,
            stale_if_error: self.stale_if_error,
            sent_to: None,
        })
    }
}

/// The `X-Cache` value of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CacheStatus {
    /// Served from the cache, fresh.
    Hit,
    /// Fetched from the backend (alone, or coalesced with a concurrent request).
    Miss,
    /// Served from the cache past its freshness: while refreshing, or because the backend
    /// failed.
    Stale,
    /// The cache could not be used (its store is away); the backend answered.
    Bypass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Stale => "STALE",
            CacheStatus::Bypass => "BYPASS",
        }
    }

    pub fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }
}

/// The `X-Cache` header name.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// A response extension that keeps a response out of the cache whatever its status and
/// headers say (and whatever `honour_cache_control` is): a view's partial answer, whose
/// fallbacks must not be served for a whole `ttl`. The text says why, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoNotStore(pub &'static str);

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Fresh(Arc<CachedResponse>),
    /// Stale within stale-while-revalidate: serve it and refresh in the background.
    Revalidate(Arc<CachedResponse>),
    /// Nothing usable now; `stale` may stand in if the backend fails.
    Miss {
        stale: Option<Arc<CachedResponse>>,
    },
    /// The store is away.
    Bypass,
}

/// Counters for the admin API (and, later, `/metrics`).
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub stale: AtomicU64,
    pub bypasses: AtomicU64,
    /// Requests answered with another request's upstream response.
    pub coalesced: AtomicU64,
    /// Background refreshes started by stale-while-revalidate.
    pub revalidations: AtomicU64,
    pub stores: AtomicU64,
    /// Responses not stored: status, `Cache-Control`, cookies, or too large.
    pub not_stored: AtomicU64,
    pub store_errors: AtomicU64,
    pub purged: AtomicU64,
}

/// [`CacheStats`] as numbers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CacheSnapshot {
    pub backend: Backend,
    pub available: bool,
    pub hits: u64,
    pub misses: u64,
    pub stale: u64,
    pub bypasses: u64,
    pub coalesced: u64,
    pub revalidations: u64,
    pub stores: u64,
    pub not_stored: u64,
    pub store_errors: u64,
    pub purged: u64,
    /// Entries the store removed to make room (the memory store; Redis evicts on its own).
    pub evictions: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<StoreUsage>,
}

impl CacheStats {
    pub fn record(&self, status: CacheStatus) {
        let counter = match status {
            CacheStatus::Hit => &self.hits,
            CacheStatus::Miss => &self.misses,
            CacheStatus::Stale => &self.stale,
            CacheStatus::Bypass => &self.bypasses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a coalesced request receives from its leader.
#[derive(Debug, Clone)]
pub enum Landed {
    /// The leader's response, whole, and how it was served.
    Response(Arc<CachedResponse>, CacheStatus),
    /// The leader could not share (its response streamed, failed, or it was cancelled):
    /// try again.
    Nothing,
}

type Slot = Arc<watch::Sender<Option<Landed>>>;

/// The response cache of a gateway: a store, the requests in flight, counters.
#[derive(Debug, Clone)]
pub struct ResponseCache(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    store: Arc<dyn CacheStore>,
    settings: CacheSettings,
    inflight: Mutex<HashMap<String, Slot>>,
    stats: CacheStats,
}

impl ResponseCache {
    pub fn new(store: Arc<dyn CacheStore>, settings: CacheSettings) -> ResponseCache {
        ResponseCache(Arc::new(Inner {
            store,
            settings,
            inflight: Mutex::new(HashMap::new()),
            stats: CacheStats::default(),
        }))
    }

    pub fn settings(&self) -> &CacheSettings {
        &self.0.settings
    }

    pub fn stats(&self) -> &CacheStats {
        &self.0.stats
    }

    pub fn snapshot(&self) -> CacheSnapshot {
        let s = &self.0.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheSnapshot {
            backend: self.0.settings.backend,
            available: self.0.store.available(),
            hits: get(&s.hits),
            misses: get(&s.misses),
            stale: get(&s.stale),
            bypasses: get(&s.bypasses),
            coalesced: get(&s.coalesced),
            revalidations: get(&s.revalidations),
            stores: get(&s.stores),
            not_stored: get(&s.not_stored),
            store_errors: get(&s.store_errors),
            purged: get(&s.purged),
            evictions: self.0.store.evictions(),
            usage: self.0.store.usage(),
        }
    }

    /// Looks `key` up and says what the entry (if any) may be used for now.
    pub async fn lookup(&self, key: &str) -> Lookup {
        if !self.0.store.available() {
            return Lookup::Bypass;
        }
        match self.0.store.get(key).await {
            Ok(Some(entry)) => match entry.freshness(now_ms()) {
                Freshness::Fresh => Lookup::Fresh(entry),
                Freshness::Revalidate => Lookup::Revalidate(entry),
                Freshness::OnErrorOnly => Lookup::Miss { stale: Some(entry) },
                Freshness::Expired => Lookup::Miss { stale: None },
            },
            Ok(None) => Lookup::Miss { stale: None },
            Err(StoreError::Unavailable(_)) => Lookup::Bypass,
            Err(StoreError::Failed(why)) => {
                self.0.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(reason = %why, "cache lookup failed; calling the backend");
                Lookup::Bypass
            }
        }
    }

    /// Stores `entry` under `key` unless it is larger than `max_entry_size`. Failures are
    /// counted and logged, never passed on: a response is served whether or not it was
    /// stored.
    pub async fn store(&self, key: &str, entry: Arc<CachedResponse>) {
        if entry.body.len() as u64 > self.0.settings.max_entry_size {
            self.0.stats.not_stored.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.0.store.put(key, entry).await {
            Ok(()) => {
                self.0.stats.stores.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.0.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%error, "response not stored");
            }
        }
    }

    /// Removes every entry whose key starts with `prefix` (see [`key`] for prefixes of a
    /// connector or an operation).
    pub async fn purge(&self, prefix: &str) -> Result<u64, StoreError> {
        let purged = self.0.store.purge(prefix).await?;
        self.0.stats.purged.fetch_add(purged, Ordering::Relaxed);
        tracing::info!(prefix, purged, "cache purged");
        Ok(purged)
    }

    /// Joins the flight for `key`: the first caller leads (calls the backend and must
    /// [`Leader::land`] its result); callers while it is in the air follow.
    pub fn join(&self, key: &str) -> Flight {
        let Ok(mut inflight) = self.0.inflight.lock() else {
            // A poisoned lock only means a panic elsewhere; lead without coalescing.
            return Flight::Lead(Leader {
                cache: None,
                key: String::new(),
                slot: Arc::new(watch::channel(None).0),
            });
        };
        if let Some(slot) = inflight.get(key) {
            return Flight::Follow(Follower(slot.subscribe()));
        }
        let slot: Slot = Arc::new(watch::channel(None).0);
        inflight.insert(key.to_owned(), slot.clone());
        Flight::Lead(Leader {
            cache: Some(self.clone()),
            key: key.to_owned(),
            slot,
        })
    }

    /// Whether a flight for `key` is in the air.
    pub fn in_flight(&self, key: &str) -> bool {
        self.0
            .inflight
            .lock()
            .map(|m| m.contains_key(key))
            .unwrap_or(false)
    }
}

/// A place in the flight of one key.
#[derive(Debug)]
pub enum Flight {
    Lead(Leader),
    Follow(Follower),
}

/// The request that calls the backend for a key. Dropping it without landing tells the
/// followers to try again.
#[derive(Debug)]
pub struct Leader {
    cache: Option<ResponseCache>,
    key: String,
    slot: Slot,
}

impl Leader {
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Hands the result to every follower and ends the flight.
    pub fn land(self, landed: Landed) {
        self.slot.send_replace(Some(landed));
        // Drop ends the flight.
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if self.slot.borrow().is_none() {
            self.slot.send_replace(Some(Landed::Nothing));
        }
        if let Some(cache) = &self.cache
            && let Ok(mut inflight) = cache.0.inflight.lock()
            && inflight
                .get(&self.key)
                .is_some_and(|slot| Arc::ptr_eq(slot, &self.slot))
        {
            inflight.remove(&self.key);
        }
    }
}

/// A request waiting for its leader.
#[derive(Debug)]
pub struct Follower(watch::Receiver<Option<Landed>>);

impl Follower {
    /// Waits for the leader's result, at most `limit`.
    pub async fn wait(mut self, limit: Duration) -> Landed {
        match tokio::time::timeout(limit, self.0.wait_for(Option::is_some)).await {
            Ok(Ok(landed)) => landed.clone().unwrap_or(Landed::Nothing),
            _ => Landed::Nothing,
        }
    }
}

/// A response body read for the cache.
#[derive(Debug)]
pub enum Buffered<B> {
    /// The whole body (trailers, if any, are dropped).
    Whole(Bytes),
    /// Longer than the limit: the bytes read so far and the rest, to stream on.
    TooLarge { head: Bytes, rest: B },
    /// The body failed while being read.
    Failed(BoxError),
}

/// Reads `body` whole if it is at most `limit` bytes.
pub async fn buffer<B>(mut body: B, limit: u64) -> Buffered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    if body.size_hint().lower() > limit {
        return Buffered::TooLarge {
            head: Bytes::new(),
            rest: body,
        };
    }
    let mut collected = BytesMut::new();
    loop {
        match body.frame().await {
            None => return Buffered::Whole(collected.freeze()),
            Some(Err(error)) => return Buffered::Failed(error.into()),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    collected.extend_from_slice(&data);
                    if collected.len() as u64 > limit {
                        return Buffered::TooLarge {
                            head: collected.freeze(),
                            rest: body,
                        };
                    }
                }
            }
        }
    }
}

/// The headers of a response served from `entry`: its own, plus `Age` and `X-Cache`.
pub fn served_headers(entry: &CachedResponse, status: CacheStatus, now: u64) -> HeaderMap {
    let mut headers = entry.headers.clone();
    if matches!(status, CacheStatus::Hit | CacheStatus::Stale) {
        headers.insert(header::AGE, HeaderValue::from(entry.age_secs(now)));
    }
    headers.insert(X_CACHE, status.header_value());
    headers
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::sync::atomic::AtomicUsize;

    use http_body_util::{Full, StreamBody};

    use super::*;

    fn cache() -> ResponseCache {
        ResponseCache::new(
            Arc::new(memory::MemoryStore::new(1 << 20)),
            CacheSettings::default(),
        )
    }

    fn response(body: &'static [u8]) -> Arc<CachedResponse> {
        Arc::new(
            CachePolicy::default()
                .entry(
                    StatusCode::OK,
                    &HeaderMap::new(),
                    Bytes::from_static(body),
                    now_ms(),
                )
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn a_hundred_concurrent_misses_make_one_call() {
        let cache = cache();
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let cache = cache.clone();
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                match cache.join("c/o/x") {
                    Flight::Lead(leader) => {
                        calls.fetch_add(1, Ordering::SeqCst);
                        // The "backend" takes a while, so every other task joins.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let entry = response(b"one");
                        cache.store(leader.key(), entry.clone()).await;
                        leader.land(Landed::Response(entry.clone(), CacheStatus::Miss));
                        entry
                    }
                    Flight::Follow(follower) => {
                        match follower.wait(Duration::from_secs(10)).await {
                            Landed::Response(entry, _) => entry,
                            Landed::Nothing => panic!("the leader landed nothing"),
                        }
                    }
                }
            }));
            tokio::task::yield_now().await;
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().body, "one");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(!cache.in_flight("c/o/x"));
        assert!(matches!(cache.lookup("c/o/x").await, Lookup::Fresh(_)));
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_its_followers() {
        let cache = cache();
        let Flight::Lead(leader) = cache.join("k") else {
            panic!("first caller leads")
        };
        let Flight::Follow(follower) = cache.join("k") else {
            panic!("second caller follows")
        };
        drop(leader);
        assert!(matches!(
            follower.wait(Duration::from_secs(5)).await,
            Landed::Nothing
        ));
        // The flight is over: the next caller leads.
        assert!(matches!(cache.join("k"), Flight::Lead(_)));
    }

    #[tokio::test]
    async fn lookups_follow_the_windows() {
        let cache = cache();
        let policy = CachePolicy {
            ttl: Duration::from_secs(10),
            stale_while_revalidate: Duration::from_secs(10),
            stale_if_error: Duration::from_secs(100),
            ..CachePolicy::default()
        };
        let entry = |age_secs: u64| {
            let mut e = policy
                .entry(StatusCode::OK, &HeaderMap::new(), Bytes::new(), now_ms())
                .unwrap();
            e.stored_at -= age_secs * 1000;
            Arc::new(e)
        };
        cache.store("fresh", entry(1)).await;
        cache.store("swr", entry(15)).await;
        cache.store("sie", entry(50)).await;
        assert!(matches!(cache.lookup("fresh").await, Lookup::Fresh(_)));
        assert!(matches!(cache.lookup("swr").await, Lookup::Revalidate(_)));
        assert!(matches!(
            cache.lookup("sie").await,
            Lookup::Miss { stale: Some(_) }
        ));
        assert!(matches!(
            cache.lookup("none").await,
            Lookup::Miss { stale: None }
        ));
        assert_eq!(cache.purge("s").await.unwrap(), 2);
        assert_eq!(cache.snapshot().purged, 2);
    }

    #[tokio::test]
    async fn oversized_entries_are_not_stored() {
        let cache = ResponseCache::new(
            Arc::new(memory::MemoryStore::new(1 << 20)),
            CacheSettings {
                max_entry_size: 4,
                ..CacheSettings::default()
            },
        );
        cache.store("big", response(b"too long")).await;
        assert!(matches!(
            cache.lookup("big").await,
            Lookup::Miss { stale: None }
        ));
        assert_eq!(cache.snapshot().not_stored, 1);
    }

    #[tokio::test]
    async fn buffers_small_bodies_and_hands_back_large_ones() {
        let Buffered::Whole(bytes) = buffer(Full::new(Bytes::from_static(b"abc")), 3).await else {
            panic!("fits")
        };
        assert_eq!(bytes, "abc");
        let chunks = futures_util::stream::iter(
            [b"ab".as_slice(), b"cd", b"ef"]
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from_static(c)))),
        );
        match buffer(StreamBody::new(chunks), 3).await {
            Buffered::TooLarge { head, rest } => {
                assert_eq!(head, "abcd");
                let rest = rest.collect().await.unwrap().to_bytes();
                assert_eq!(rest, "ef");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn served_headers_carry_age_and_x_cache() {
        let mut entry = (*response(b"x")).clone();
        entry.stored_at = 1_000_000;
        let headers = served_headers(&entry, CacheStatus::Hit, 1_007_500);
        assert_eq!(headers["age"], "7");
        assert_eq!(headers["x-cache"], "HIT");
        let headers = served_headers(&entry, CacheStatus::Miss, 1_007_500);
        assert!(headers.get("age").is_none());
        assert_eq!(headers["x-cache"], "MISS");
    }

    #[test]
    fn post_keys_on_the_body() {
        assert!(CachePolicy::keys_body(&http::Method::POST));
        assert!(!CachePolicy::keys_body(&http::Method::GET));
        assert!(CachePolicy::default().applies_to(&http::Method::HEAD));
        assert!(!CachePolicy::default().applies_to(&http::Method::POST));
    }
}
