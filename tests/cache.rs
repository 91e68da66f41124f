//! The response cache against real Redis: entries shared by two "replicas" (two links,
//! two stores), purging by prefix, and bypassing while Redis is away.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use junction_runtime::cache::key::{KeyBuilder, connector_prefix, operation_prefix};
use junction_runtime::cache::redis::RedisStore;
use junction_runtime::cache::{
    Backend, CachePolicy, CacheSettings, CacheStore, Lookup, ResponseCache, now_ms,
};
use serde_json::json;

use crate::redis_support::{Namespace, PrivateRedis, eventually};

fn settings() -> CacheSettings {
    CacheSettings {
        backend: Backend::Redis,
        ..CacheSettings::default()
    }
}

fn entry(body: &'static str) -> Arc<junction_runtime::cache::CachedResponse> {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    Arc::new(
        CachePolicy::default()
            .entry(
                StatusCode::OK,
                &headers,
                Bytes::from_static(body.as_bytes()),
                now_ms(),
            )
            .unwrap(),
    )
}

fn key(connector: &str, operation: &str, id: &str) -> String {
    let mut key = KeyBuilder::new(connector, operation);
    key.arg("path", "id", &json!(id)).connection("default");
    key.finish()
}

#[tokio::test]
async fn an_entry_written_by_one_replica_is_a_hit_on_the_other() {
    let ns = Namespace::new("cache-shared");
    let a = ResponseCache::new(Arc::new(RedisStore::new(ns.link())), settings());
    let b = ResponseCache::new(Arc::new(RedisStore::new(ns.link())), settings());
    let k = key("pets", "GetPet", "42");
    assert!(matches!(b.lookup(&k).await, Lookup::Miss { stale: None }));
    a.store(&k, entry("{\"id\":42}")).await;
    let Lookup::Fresh(found) = b.lookup(&k).await else {
        panic!("replica b sees replica a's entry")
    };
    assert_eq!(found.body, "{\"id\":42}");
    assert_eq!(found.headers["content-type"], "application/json");
    // Redis expires it when no window can use it.
    let ttl: i64 = {
        let client = redis::Client::open(ns.url.as_str()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("PTTL")
            .arg(format!("{}cache:{k}", ns.prefix))
            .query_async(&mut c)
            .await
            .unwrap()
    };
    assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
}

#[tokio::test]
async fn purges_by_connector_operation_or_key_prefix() {
    let ns = Namespace::new("cache-purge");
    let store = RedisStore::new(ns.link());
    let cache = ResponseCache::new(Arc::new(store), settings());
    for (c, o, id) in [
        ("pets", "GetPet", "1"),
        ("pets", "GetPet", "2"),
        ("pets", "ListPets", "1"),
        ("owners", "GetOwner", "1"),
        // A connector whose name starts like another's is not caught by its prefix.
        ("pets2", "GetPet", "1"),
    ] {
        cache.store(&key(c, o, id), entry("x")).await;
    }
    assert_eq!(ns.keys().len(), 5);
    assert_eq!(cache.purge(&key("pets", "GetPet", "1")).await.unwrap(), 1);
    assert_eq!(
        cache
            .purge(&operation_prefix("pets", "GetPet"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(cache.purge(&connector_prefix("pets")).await.unwrap(), 1);
    assert!(matches!(
        cache.lookup(&key("owners", "GetOwner", "1")).await,
        Lookup::Fresh(_)
    ));
    assert!(matches!(
        cache.lookup(&key("pets2", "GetPet", "1")).await,
        Lookup::Fresh(_)
    ));
    // Glob characters in a prefix are literal.
    assert_eq!(cache.purge("*").await.unwrap(), 0);
    assert_eq!(ns.keys().len(), 2);
}

#[tokio::test]
async fn a_value_that_is_not_an_entry_reads_as_a_miss() {
    let ns = Namespace::new("cache-garbage");
    let store = RedisStore::new(ns.link());
    let client = redis::Client::open(ns.url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SET")
        .arg(format!("{}cache:c/o/x", ns.prefix))
        .arg("not an entry")
        .query_async::<()>(&mut c)
        .await
        .unwrap();
    assert!(store.get("c/o/x").await.unwrap().is_none());
}

#[tokio::test]
async fn bypasses_while_redis_is_away_and_resumes_when_it_is_back() {
    let mut server = PrivateRedis::start();
    let ns = Namespace::on(&server.url(), "cache-outage");
    let link = ns.link();
    let cache = ResponseCache::new(Arc::new(RedisStore::new(link.clone())), settings());
    let k = key("pets", "GetPet", "7");
    cache.store(&k, entry("seven")).await;
    assert!(matches!(cache.lookup(&k).await, Lookup::Fresh(_)));

    server.stop();
    // The first lookup finds out; the next ones bypass without waiting.
    assert!(matches!(cache.lookup(&k).await, Lookup::Bypass));
    let started = std::time::Instant::now();
    assert!(matches!(cache.lookup(&k).await, Lookup::Bypass));
    assert!(started.elapsed() < Duration::from_millis(100));
    cache.store(&k, entry("lost")).await;
    let snapshot = cache.snapshot();
    assert!(!snapshot.available);

    server.restart();
    assert!(eventually(Duration::from_secs(10), || link.is_up()).await);
    // The new server is empty, and usable.
    assert!(matches!(
        cache.lookup(&k).await,
        Lookup::Miss { stale: None }
    ));
    cache.store(&k, entry("again")).await;
    assert!(matches!(cache.lookup(&k).await, Lookup::Fresh(_)));
}
