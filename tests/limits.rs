//! Rate limits against real Redis: the limiters shared by two "replicas" (two links, two
//! limiter objects), the same arithmetic as the memory backend, and failing open or closed
//! while Redis is away.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use junction_runtime::ratelimit::{
    FailMode, Limit, LimitStore, Rate, RateLimiter, Verdict, memory::MemoryLimiter,
};

use crate::redis_support::{Namespace, PrivateRedis, eventually};

#[tokio::test]
async fn two_replicas_share_one_allowance() {
    let ns = Namespace::new("limits-shared");
    // A long period: nothing comes back while the test runs.
    let rate = Rate::parse("10/h").unwrap();
    let a = LimitStore::Redis(ns.link()).limiter("per-connection/pets", rate);
    let b = LimitStore::Redis(ns.link()).limiter("per-connection/pets", rate);
    let mut admitted = 0;
    for i in 0..30 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        if limiter.check("default").await.unwrap().allowed {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 10);
    // Another key has its own allowance.
    assert!(a.check("other").await.unwrap().allowed);
    assert!(!ns.keys().is_empty());
}

#[tokio::test]
async fn concurrent_checks_from_two_replicas_are_atomic() {
    let ns = Namespace::new("limits-atomic");
    let rate = Rate::parse("25/h").unwrap();
    let a = LimitStore::Redis(ns.link()).limiter("rule", rate);
    let b = LimitStore::Redis(ns.link()).limiter("rule", rate);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let limiter: Arc<dyn RateLimiter> = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            limiter.check("k").await.unwrap().allowed
        }));
    }
    let mut admitted = 0;
    for task in tasks {
        if task.await.unwrap() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 25);
}

#[tokio::test]
async fn redis_and_memory_decide_alike() {
    let ns = Namespace::new("limits-alike");
    let rate = Rate::parse("5/min").unwrap();
    let redis = LimitStore::Redis(ns.link()).limiter("rule", rate);
    let memory = MemoryLimiter::new(rate);
    for _ in 0..7 {
        let r = redis.check("k").await.unwrap();
        let m = memory.check("k").await.unwrap();
        assert_eq!(r.allowed, m.allowed);
        assert_eq!(r.remaining, m.remaining);
        if !r.allowed {
            // One request back every 12 s, both ways (allowing for the time between them).
            let diff = r.retry_after.abs_diff(m.retry_after);
            assert!(diff < Duration::from_secs(2), "{r:?} vs {m:?}");
            assert!(r.retry_after > Duration::from_secs(9), "{r:?}");
        }
    }
}

#[tokio::test]
async fn fails_open_or_closed_while_redis_is_away_and_recovers() {
    let mut server = PrivateRedis::start();
    let ns = Namespace::on(&server.url(), "limits-outage");
    let rate = Rate::parse("100/h").unwrap();
    let link = ns.link();
    let open = Limit::new(
        "open",
        LimitStore::Redis(link.clone()).limiter("open", rate),
        FailMode::Open,
    );
    let closed = Limit::new(
        "closed",
        LimitStore::Redis(link.clone()).limiter("closed", rate),
        FailMode::Closed,
    );
    assert!(matches!(open.check("k").await, Verdict::Allowed(_)));
    assert!(matches!(closed.check("k").await, Verdict::Allowed(_)));

    server.stop();
    assert_eq!(open.check("k").await, Verdict::Unchecked);
    assert_eq!(closed.check("k").await, Verdict::Unavailable);
    assert!(!link.is_up());
    assert_eq!(link.status().state, "down");
    assert_eq!(open.snapshot().failed_open, 1);
    assert_eq!(closed.snapshot().failed_closed, 1);

    server.restart();
    assert!(
        eventually(Duration::from_secs(10), || link.is_up()).await,
        "the probe notices Redis is back"
    );
    let Verdict::Allowed(decision) = open.check("k").await else {
        panic!("checked again once Redis is back")
    };
    // The restarted server is empty: a whole allowance again.
    assert_eq!(decision.remaining, 99);
    assert!(matches!(closed.check("k").await, Verdict::Allowed(_)));
    assert_eq!(link.status().outages, 1);
}
