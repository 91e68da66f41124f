//! Cache, rate limits and resilience end to end: real gateways on ephemeral ports in front
//! of in-process mock backends, with the memory backends and with the real Redis (shared
//! server at 127.0.0.1:6379 in a namespace of the test's own, or a private `redis-server`
//! that the test stops and restarts).
//!
//! Timing: waits are generous and only ever bound things from below (a retry came no
//! sooner than the backend asked); nothing asserts that something was fast.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http_body_util::BodyExt;
use junction_model::{Connector, Method, ParamLocation};
use junction_server::RunningServer;
use serde_json::{Value, json};

use crate::redis_support::{Namespace, PrivateRedis, eventually};
use crate::support::*;

// ------------------------------------------------------------------------ mock backend

/// One request as the mock backend saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query.
    target: String,
    body: String,
}

/// What the mock answers: status, headers, body, and how long it takes first.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

impl Answer {
    fn ok(body: Value) -> Answer {
        Answer {
            status: 200,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    fn status(status: u16) -> Answer {
        Answer {
            status,
            ..Answer::ok(json!({"status": status}))
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Answer {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn after(mut self, delay: Duration) -> Answer {
        self.delay = delay;
        self
    }
}

/// A backend that counts and records requests and answers with `respond(call number, request)`.
struct Mock {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Mock {
    async fn start(respond: impl Fn(usize, &Seen) -> Answer + Send + Sync + 'static) -> Mock {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let respond = Arc::new(respond);
        let (count, log) = (calls.clone(), seen.clone());
        let router = Router::new().fallback(move |request: Request| {
            let (count, log, respond) = (count.clone(), log.clone(), respond.clone());
            async move {
                let (parts, body) = request.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                let seen = Seen {
                    method: parts.method.to_string(),
                    target: parts.uri.to_string(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                };
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                let answer = respond(n, &seen);
                log.lock().unwrap().push(seen);
                tokio::time::sleep(answer.delay).await;
                let mut response = Response::builder().status(answer.status);
                for (name, value) in answer.headers {
                    response = response.header(name, value);
                }
                response.body(Body::from(answer.body)).unwrap()
            }
        });
        Mock {
            addr: start_backend(router).await,
            calls,
            seen,
        }
    }

    /// Answers `status` while the returned flag is set, `{"call": N}` otherwise.
    async fn failing(status: u16, failing: bool) -> (Mock, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(failing));
        let failing = flag.clone();
        let mock = Mock::start(move |n, _| {
            if failing.load(Ordering::SeqCst) {
                Answer::status(status)
            } else {
                Answer::ok(json!({"call": n}))
            }
        })
        .await;
        (mock, flag)
    }

    /// Answers `first` to the first request, `{"call": N}` to the others.
    async fn first(first: Answer) -> Mock {
        Mock::start(move |n, _| {
            if n == 1 {
                first.clone()
            } else {
                Answer::ok(json!({"call": n}))
            }
        })
        .await
    }

    /// Answers `{"call": N, "target": …}`.
    async fn counting() -> Mock {
        Mock::start(|n, seen| Answer::ok(json!({"call": n, "target": seen.target}))).await
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// The test connector `svc`: a GET with a path and two query parameters, a POST query and
/// a POST that creates something.
fn svc(backend: SocketAddr) -> Connector {
    connector(
        "svc",
        backend,
        vec![
            op(Method::Get, "/items/{id}", "GetItem")
                .param(param("id", ParamLocation::Path, json!({"type": "string"})))
                .param(param("q", ParamLocation::Query, json!({"type": "string"})))
                .param(param("n", ParamLocation::Query, json!({"type": "integer"}))),
            op(Method::Post, "/search", "Search").json_body(json!({"type": "object"}), true),
            op(Method::Post, "/orders", "CreateOrder").json_body(json!({"type": "object"}), true),
        ],
    )
}

async fn start(backend: &Mock, toml: &str) -> RunningServer {
    gateway(vec![svc(backend.addr)], toml).await
}

async fn get(server: &RunningServer, path: &str) -> Reply {
    fetch(format!("{}/connectors/svc{path}", server.data_url())).await
}

async fn post(server: &RunningServer, path: &str, body: Value) -> Reply {
    collect(
        client()
            .post(format!("{}/connectors/svc{path}", server.data_url()))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn traffic_status(server: &RunningServer) -> Value {
    admin(server, reqwest::Method::GET, "/api/v1/traffic")
        .await
        .json()
}

// ------------------------------------------------------------------------ cache

#[tokio::test]
async fn cache_hits_carry_x_cache_and_age_and_keys_ignore_argument_order() {
    let backend = Mock::counting().await;
    let server = start(&backend, "[connector.svc.cache]\nttl = \"60s\"\n").await;

    let first = get(&server, "/items/1?q=a&n=2").await;
    assert_eq!((first.status, x_cache(&first)), (200, "MISS"));
    assert!(first.header("age").is_none());
    let hit = get(&server, "/items/1?q=a&n=2").await;
    assert_eq!((hit.status, x_cache(&hit)), (200, "HIT"));
    assert_eq!(hit.header("age"), Some("0"));
    assert_eq!(hit.json(), first.json());
    assert_eq!(hit.header("content-type"), Some("application/json"));
    // The same arguments in another order: the same entry.
    let reordered = get(&server, "/items/1?n=2&q=a").await;
    assert_eq!(x_cache(&reordered), "HIT");
    assert_eq!(backend.calls(), 1);

    // Other arguments, another Accept: other entries.
    assert_eq!(x_cache(&get(&server, "/items/2?q=a&n=2").await), "MISS");
    let json_only = collect(
        client()
            .get(format!(
                "{}/connectors/svc/items/1?q=a&n=2",
                server.data_url()
            ))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(x_cache(&json_only), "MISS");
    assert_eq!(backend.calls(), 3);

    // Age grows.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let older = get(&server, "/items/1?q=a&n=2").await;
    assert_eq!(x_cache(&older), "HIT");
    let age: u64 = older.header("age").unwrap().parse().unwrap();
    assert!(age >= 1, "{age}");

    // POST is not cached unless opted in: no X-Cache, every call reaches the backend.
    for _ in 0..2 {
        let created = post(&server, "/orders", json!({"item": 1})).await;
        assert_eq!((created.status, x_cache(&created)), (200, "(none)"));
        let searched = post(&server, "/search", json!({"q": "x"})).await;
        assert_eq!(x_cache(&searched), "(none)");
    }
    assert_eq!(backend.calls(), 7);

    let status = traffic_status(&server).await;
    assert_eq!(status["cache"]["backend"], "memory");
    assert_eq!(status["cache"]["hits"], 3);
    assert_eq!(status["cache"]["misses"], 3);
    assert_eq!(status["cache"]["stores"], 3);
    assert_eq!(status["cache"]["usage"]["entries"], 3);
}

#[tokio::test]
async fn post_queries_are_cached_when_opted_in_and_keyed_by_their_body() {
    let backend = Mock::counting().await;
    let server = start(
        &backend,
        "[connector.svc.operation.Search.cache]\nmethods = [\"POST\"]\n",
    )
    .await;
    let a = post(&server, "/search", json!({"q": "a", "limit": 5})).await;
    assert_eq!(x_cache(&a), "MISS");
    // The same JSON, keys in another order, is another body text: keyed by its bytes.
    let again = post(&server, "/search", json!({"q": "a", "limit": 5})).await;
    assert_eq!(x_cache(&again), "HIT");
    assert_eq!(again.json(), a.json());
    let b = post(&server, "/search", json!({"q": "b", "limit": 5})).await;
    assert_eq!(x_cache(&b), "MISS");
    // The backend got the body as sent.
    assert_eq!(backend.seen()[1].body, r#"{"q":"b","limit":5}"#);
    // Other operations are not cached.
    assert_eq!(
        x_cache(&post(&server, "/orders", json!({})).await),
        "(none)"
    );
    assert_eq!(x_cache(&get(&server, "/items/1").await), "(none)");
    assert_eq!(backend.calls(), 4);
}

#[tokio::test]
async fn upstream_cache_control_is_honoured_unless_configured_otherwise() {
    let backend = Mock::start(|n, seen| {
        let answer = Answer::ok(json!({"call": n}));
        if seen.target.contains("nostore") {
            answer.header("cache-control", "no-store")
        } else if seen.target.contains("private") {
            answer.header("cache-control", "private, max-age=60")
        } else if seen.target.contains("short") {
            answer.header("cache-control", "max-age=2")
        } else if seen.target.contains("cookie") {
            answer.header("set-cookie", "session=1")
        } else {
            answer
        }
    })
    .await;
    let server = start(&backend, "[connector.svc.cache]\nttl = \"60s\"\n").await;
    for path in ["/items/nostore", "/items/private", "/items/cookie"] {
        assert_eq!(x_cache(&get(&server, path).await), "MISS", "{path}");
        assert_eq!(x_cache(&get(&server, path).await), "MISS", "{path}");
    }
    assert_eq!(backend.calls(), 6);
    // max-age shortens the configured ttl.
    assert_eq!(x_cache(&get(&server, "/items/short").await), "MISS");
    assert_eq!(x_cache(&get(&server, "/items/short").await), "HIT");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(x_cache(&get(&server, "/items/short").await), "MISS");

    let ignoring = start(
        &backend,
        "[connector.svc.cache]\nttl = \"60s\"\nhonour_cache_control = false\n",
    )
    .await;
    assert_eq!(x_cache(&get(&ignoring, "/items/nostore").await), "MISS");
    assert_eq!(x_cache(&get(&ignoring, "/items/nostore").await), "HIT");
    // A response that sets a cookie is never stored, whatever the configuration.
    assert_eq!(x_cache(&get(&ignoring, "/items/cookie").await), "MISS");
    assert_eq!(x_cache(&get(&ignoring, "/items/cookie").await), "MISS");
}

#[tokio::test]
async fn responses_larger_than_max_entry_size_stream_through_and_are_not_stored() {
    let big = "x".repeat(5000);
    let text = big.clone();
    let backend = Mock::start(move |n, _| Answer::ok(json!({"call": n, "big": text}))).await;
    let server = start(
        &backend,
        "[cache]\nmax_entry_size = \"1KiB\"\n[connector.svc.cache]\nttl = \"60s\"\n",
    )
    .await;
    for n in 1..=2 {
        let reply = get(&server, "/items/big").await;
        assert_eq!((reply.status, x_cache(&reply)), (200, "MISS"));
        assert_eq!(reply.json(), json!({"call": n, "big": big}));
    }
    assert_eq!(traffic_status(&server).await["cache"]["not_stored"], 2);
}

#[tokio::test]
async fn a_hundred_concurrent_misses_make_exactly_one_upstream_call() {
    let backend =
        Mock::start(|n, _| Answer::ok(json!({"call": n})).after(Duration::from_millis(500))).await;
    let server = start(&backend, "[connector.svc.cache]\nttl = \"60s\"\n").await;
    let url = format!("{}/connectors/svc/items/hot?q=x", server.data_url());
    let client = client();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let request = client.get(&url).send();
        tasks.push(tokio::spawn(async move {
            collect(request.await.unwrap()).await
        }));
    }
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json(), json!({"call": 1}));
        assert!(matches!(x_cache(&reply), "MISS" | "HIT"), "{reply:?}");
    }
    assert_eq!(backend.calls(), 1);
    let status = traffic_status(&server).await;
    let coalesced = status["cache"]["coalesced"].as_u64().unwrap();
    let hits = status["cache"]["hits"].as_u64().unwrap();
    assert_eq!(coalesced + hits, 99, "{status}");
}

#[tokio::test]
async fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let backend = Mock::counting().await;
    let server = start(
        &backend,
        "[connector.svc.cache]\nttl = \"1s\"\nstale_while_revalidate = \"60s\"\n",
    )
    .await;
    let first = get(&server, "/items/1").await;
    assert_eq!(
        (x_cache(&first), first.json()["call"].clone()),
        ("MISS", json!(1))
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let stale = get(&server, "/items/1").await;
    assert_eq!(x_cache(&stale), "STALE");
    assert_eq!(stale.json()["call"], 1);
    assert!(stale.header("age").unwrap().parse::<u64>().unwrap() >= 1);
    assert!(
        eventually(Duration::from_secs(10), || backend.calls() == 2).await,
        "the background refresh called the backend"
    );
    // The refreshed entry is served once it is stored.
    let mut refreshed = None;
    for _ in 0..100 {
        let reply = get(&server, "/items/1").await;
        if reply.json()["call"] == 2 {
            refreshed = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(x_cache(&refreshed.expect("the refreshed entry")), "HIT");
    assert_eq!(backend.calls(), 2);
}

#[tokio::test]
async fn stale_if_error_stands_in_for_a_failing_backend() {
    let (backend, failing) = Mock::failing(500, false).await;
    let server = start(
        &backend,
        "[connector.svc.cache]\nttl = \"1s\"\nstale_if_error = \"60s\"\n",
    )
    .await;
    assert_eq!(x_cache(&get(&server, "/items/1").await), "MISS");
    failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let stale = get(&server, "/items/1").await;
    assert_eq!((stale.status, x_cache(&stale)), (200, "STALE"));
    assert_eq!(stale.json(), json!({"call": 1}));
    // Without an entry, the failure goes to the client.
    let failed = get(&server, "/items/2").await;
    assert_eq!((failed.status, x_cache(&failed)), (500, "MISS"));
}

#[tokio::test]
async fn purges_by_connector_operation_and_prefix_through_the_admin_api() {
    let backend = Mock::counting().await;
    let server = start(
        &backend,
        "[connector.svc.cache]\nttl = \"60s\"\n[connector.svc.operation.Search.cache]\nmethods = [\"POST\"]\n",
    )
    .await;
    for path in ["/items/1", "/items/2"] {
        assert_eq!(x_cache(&get(&server, path).await), "MISS");
    }
    assert_eq!(x_cache(&post(&server, "/search", json!({})).await), "MISS");

    let purged = admin(
        &server,
        reqwest::Method::DELETE,
        "/api/v1/cache?connector=svc&operation=GetItem&prefix=path.id%3D1",
    )
    .await;
    assert_eq!(purged.status, 200, "{purged:?}");
    assert_eq!(purged.json()["purged"], 1);
    assert_eq!(purged.json()["prefix"], "svc/GetItem/path.id=1");
    assert_eq!(x_cache(&get(&server, "/items/1").await), "MISS");
    assert_eq!(x_cache(&get(&server, "/items/2").await), "HIT");

    let operation = admin(
        &server,
        reqwest::Method::DELETE,
        "/api/v1/cache?connector=svc&operation=GetItem",
    )
    .await;
    assert_eq!(operation.json()["purged"], 2);
    assert_eq!(x_cache(&post(&server, "/search", json!({})).await), "HIT");
    let connector = admin(
        &server,
        reqwest::Method::DELETE,
        "/api/v1/cache?connector=svc",
    )
    .await;
    assert_eq!(connector.json()["purged"], 1);
    assert_eq!(x_cache(&post(&server, "/search", json!({})).await), "MISS");

    // Mistakes are problems.
    admin(
        &server,
        reqwest::Method::DELETE,
        "/api/v1/cache?connector=nope",
    )
    .await
    .problem(404, "not-found");
    admin(
        &server,
        reqwest::Method::DELETE,
        "/api/v1/cache?connector=svc&operation=Nope",
    )
    .await
    .problem(404, "not-found");
    admin(
        &server,
        reqwest::Method::DELETE,
        "/api/v1/cache?conector=svc",
    )
    .await
    .problem(400, "invalid-request");
    // Naming nothing purges every entry.
    let all = admin(&server, reqwest::Method::DELETE, "/api/v1/cache").await;
    assert_eq!(all.json(), json!({"purged": 1, "prefix": ""}));
    assert_eq!(traffic_status(&server).await["cache"]["purged"], 5);
}

// ------------------------------------------------------------------------ rate limits

#[tokio::test]
async fn limits_per_connection_answer_429_with_ratelimit_headers_and_count_cache_hits() {
    let backend = Mock::counting().await;
    let server = start(
        &backend,
        "[connector.svc.cache]\nttl = \"60s\"\n[connector.svc.rate_limit]\nper_connection = \"3/h\"\n",
    )
    .await;
    for remaining in ["2", "1", "0"] {
        let reply = get(&server, "/items/1").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("ratelimit-limit"), Some("3"));
        assert_eq!(reply.header("ratelimit-remaining"), Some(remaining));
        assert_eq!(reply.header("ratelimit-policy"), Some("3;w=3600"));
    }
    // Two of the three were cache hits; they counted all the same.
    assert_eq!(backend.calls(), 1);
    let refused = get(&server, "/items/1").await;
    let problem = refused.problem(429, "rate-limited");
    assert!(
        problem["detail"].as_str().unwrap().contains("3/h"),
        "{problem}"
    );
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(retry_after > 1000 && retry_after <= 1200, "{retry_after}");
    assert_eq!(refused.header("ratelimit-remaining"), Some("0"));
    assert_eq!(backend.calls(), 1);
    let status = traffic_status(&server).await;
    assert_eq!(status["limits"][0]["name"], "connection/svc");
    assert_eq!(status["limits"][0]["denied"], 1);
}

#[tokio::test]
async fn limits_per_client_count_each_source_address_apart() {
    let backend = Mock::counting().await;
    let server = start(&backend, "[rate_limit]\nper_client = \"2/h\"\n").await;
    let from = |ip: [u8; 4]| {
        junction_runtime::install_crypto_provider();
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let url = format!("{}/connectors/svc/items/1", server.data_url());
    let (one, two) = (from([127, 0, 0, 1]), from([127, 0, 0, 2]));
    for client in [&one, &one] {
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    }
    let refused = collect(one.get(&url).send().await.unwrap()).await;
    refused.problem(429, "rate-limited");
    // Another address has an allowance of its own.
    assert_eq!(two.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(backend.calls(), 3);
}

#[tokio::test]
async fn a_limit_per_backend_counts_only_calls_that_reach_it() {
    let backend = Mock::counting().await;
    let server = start(
        &backend,
        "[connector.svc.cache]\nttl = \"60s\"\n[connector.svc.rate_limit]\nper_backend = \"2/h\"\n",
    )
    .await;
    for path in ["/items/1", "/items/2"] {
        assert_eq!(get(&server, path).await.status, 200);
    }
    get(&server, "/items/3").await.problem(429, "rate-limited");
    // Cache hits never reach the backend, so they are not refused.
    for path in ["/items/1", "/items/2"] {
        let hit = get(&server, path).await;
        assert_eq!((hit.status, x_cache(&hit)), (200, "HIT"));
    }
    assert_eq!(backend.calls(), 2);
}

// ------------------------------------------------------------------------ Redis

fn redis_toml(url: &str, prefix: &str, extra: &str) -> String {
    format!(
        r#"
[redis]
url = "{url}"
prefix = "{prefix}"
timeout = "300ms"
probe_interval = "100ms"
[cache]
backend = "redis"
[rate_limit]
backend = "redis"
{extra}
[connector.svc.cache]
ttl = "60s"
"#
    )
}

#[tokio::test]
async fn two_gateways_on_redis_share_cache_entries_and_limits() {
    let ns = Namespace::new("traffic-shared");
    let backend = Mock::counting().await;
    let toml = redis_toml(
        &ns.url,
        &ns.prefix,
        "[connector.svc.rate_limit]\nper_connection = \"10/h\"",
    );
    let a = start(&backend, &toml).await;
    let b = start(&backend, &toml).await;

    let written = get(&a, "/items/1").await;
    assert_eq!(x_cache(&written), "MISS");
    let shared = get(&b, "/items/1").await;
    assert_eq!(
        x_cache(&shared),
        "HIT",
        "an entry written by one gateway is a hit on the other"
    );
    assert_eq!(shared.json(), written.json());
    assert_eq!(backend.calls(), 1);
    let status = traffic_status(&b).await;
    assert_eq!(status["cache"]["backend"], "redis");
    assert_eq!(status["redis"]["state"], "up");

    // A purge through one gateway empties the shared cache for both.
    let purged = admin(&a, reqwest::Method::DELETE, "/api/v1/cache?connector=svc").await;
    assert_eq!(purged.json()["purged"], 1);
    assert_eq!(x_cache(&get(&b, "/items/1").await), "MISS");

    // The limit of 10 holds across both: 3 used above, 7 more pass, then every one is refused.
    let mut admitted = 3;
    for i in 0..20 {
        let server = if i % 2 == 0 { &a } else { &b };
        let reply = get(server, &format!("/items/{}", i % 3)).await;
        match reply.status {
            200 => admitted += 1,
            429 => {
                reply.problem(429, "rate-limited");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        (9..=11).contains(&admitted),
        "admitted {admitted} of a limit of 10"
    );
    assert!(ns.keys().iter().any(|k| k.contains(":rl:connection/svc:")));
    assert!(ns.keys().iter().any(|k| k.contains(":cache:svc/GetItem/")));
}

#[tokio::test]
async fn when_redis_goes_away_the_gateway_keeps_serving_and_recovers() {
    let mut redis = PrivateRedis::start();
    let ns = Namespace::on(&redis.url(), "traffic-outage");
    let backend = Mock::counting().await;
    let open = start(
        &backend,
        &redis_toml(
            &ns.url,
            &ns.prefix,
            "[connector.svc.rate_limit]\nper_connection = \"1000/h\"",
        ),
    )
    .await;
    let closed = start(
        &backend,
        &redis_toml(
            &ns.url,
            &format!("{}closed:", ns.prefix),
            "on_redis_error = \"closed\"\n[connector.svc.rate_limit]\nper_connection = \"1000/h\"",
        ),
    )
    .await;
    assert_eq!(x_cache(&get(&open, "/items/1").await), "MISS");
    assert_eq!(x_cache(&get(&open, "/items/1").await), "HIT");
    assert_eq!(get(&closed, "/items/1").await.status, 200);

    redis.stop();
    // Fail open: every request is served, the cache is bypassed.
    for i in 0..20 {
        let reply = get(&open, &format!("/items/{}", i % 2)).await;
        assert_eq!(
            reply.status, 200,
            "request {i} during the outage: {reply:?}"
        );
        assert_eq!(x_cache(&reply), "BYPASS");
    }
    let status = traffic_status(&open).await;
    assert_eq!(status["redis"]["state"], "down");
    assert!(status["limits"][0]["failed_open"].as_u64().unwrap() >= 1);
    // Fail closed: refused with 503 while Redis is away.
    let refused = get(&closed, "/items/1").await;
    refused.problem(503, "store-unavailable");
    assert!(refused.header("retry-after").is_some());

    redis.restart();
    let mut recovered = false;
    for _ in 0..200 {
        let reply = get(&open, "/items/1").await;
        assert_eq!(reply.status, 200, "no request fails while Redis comes back");
        if x_cache(&reply) != "BYPASS" {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "the cache is used again once Redis is back");
    // The restarted Redis is empty: one miss, then hits.
    let mut hit = false;
    for _ in 0..3 {
        if x_cache(&get(&open, "/items/1").await) == "HIT" {
            hit = true;
        }
    }
    assert!(hit);
    let mut closed_back = false;
    for _ in 0..200 {
        if get(&closed, "/items/1").await.status == 200 {
            closed_back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        closed_back,
        "fail-closed limits admit again once Redis is back"
    );
    assert_eq!(traffic_status(&open).await["redis"]["outages"], 1);
}

// ------------------------------------------------------------------------ faults

#[tokio::test]
async fn a_slow_backend_is_504_a_dead_one_502_and_one_that_resets_502() {
    let slow = Mock::start(|_, _| Answer::ok(json!({})).after(Duration::from_secs(3))).await;
    let server = start(&slow, "[connector.svc]\ntimeout = \"300ms\"\n").await;
    get(&server, "/items/1")
        .await
        .problem(504, "upstream-timeout");

    let down = gateway(vec![svc(closed_port())], "").await;
    get(&down, "/items/1")
        .await
        .problem(502, "upstream-unreachable");

    // Accepts, reads a little, and closes without an answer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resetting = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut buffer = [0u8; 64];
            let _ = stream.read(&mut buffer).await;
            drop(stream);
        }
    });
    let reset = gateway(vec![svc(resetting)], "").await;
    get(&reset, "/items/1")
        .await
        .problem(502, "upstream-unreachable");
}

#[tokio::test]
async fn bursts_of_500s_open_the_breaker_then_a_probe_closes_it() {
    let (backend, failing) = Mock::failing(500, true).await;
    // By default a 500 is one request's error: the breaker stays closed.
    let default = start(&backend, "").await;
    for _ in 0..8 {
        assert_eq!(get(&default, "/items/1").await.status, 500);
    }
    assert_eq!(
        traffic_status(&default).await["breakers"][0]["state"],
        "closed"
    );
    backend.calls.store(0, Ordering::SeqCst);
    // Counted as failures when configured so.
    let server = start(
        &backend,
        "[connector.svc.breaker]\nfailures = 3\nopen_for = \"2s\"\nfailure_statuses = [500, 502, 503, 504]\n",
    )
    .await;
    for _ in 0..3 {
        // The backend's own 500s are passed on.
        assert_eq!(get(&server, "/items/1").await.status, 500);
    }
    // Open: a fast 503 without calling the backend.
    let open = get(&server, "/items/1").await;
    open.problem(503, "circuit-open");
    assert!(open.header("retry-after").is_some());
    assert_eq!(backend.calls(), 3);
    let status = traffic_status(&server).await;
    assert_eq!(status["breakers"][0]["state"], "open");
    assert_eq!(status["breakers"][0]["backend"], backend.addr.to_string());

    // The backend recovers; after open_for a probe goes through and closes the breaker.
    failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(get(&server, "/items/1").await.status, 200);
    assert_eq!(get(&server, "/items/1").await.status, 200);
    let status = traffic_status(&server).await;
    assert_eq!(status["breakers"][0]["state"], "closed");
    assert_eq!(status["breakers"][0]["opened"], 1);
}

#[tokio::test]
async fn a_failed_probe_opens_the_breaker_again() {
    let (backend, _) = Mock::failing(503, true).await;
    let server = start(
        &backend,
        "[connector.svc.breaker]\nfailures = 2\nopen_for = \"2s\"\n",
    )
    .await;
    for _ in 0..2 {
        assert_eq!(get(&server, "/items/1").await.status, 503);
    }
    get(&server, "/items/1").await.problem(503, "circuit-open");
    tokio::time::sleep(Duration::from_millis(2300)).await;
    // The probe reaches the backend, fails, and the breaker opens again.
    let probe = get(&server, "/items/1").await;
    assert_eq!(probe.status, 503);
    assert_ne!(
        probe.header("content-type"),
        Some("application/problem+json")
    );
    get(&server, "/items/1").await.problem(503, "circuit-open");
    assert_eq!(backend.calls(), 3);
    assert_eq!(traffic_status(&server).await["breakers"][0]["opened"], 2);
}

#[tokio::test]
async fn gets_are_retried_with_backoff_and_posts_never() {
    let backend = Mock::start(|n, seen| {
        if seen.method == "POST" || n <= 2 {
            Answer::status(503)
        } else {
            Answer::ok(json!({"call": n}))
        }
    })
    .await;
    let server = start(
        &backend,
        "[connector.svc.retry]\nretries = 2\nbackoff = \"100ms\"\nmax_backoff = \"1s\"\n",
    )
    .await;
    let started = Instant::now();
    let reply = get(&server, "/items/1").await;
    let elapsed = started.elapsed();
    assert_eq!((reply.status, reply.json()), (200, json!({"call": 3})));
    assert_eq!(backend.calls(), 3);
    // Jittered: between half and all of 100 ms, then of 200 ms.
    assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");

    let posted = post(&server, "/orders", json!({"item": 1})).await;
    assert_eq!(posted.status, 503);
    assert_eq!(backend.calls(), 4, "a POST is sent once");
    let status = traffic_status(&server).await;
    assert_eq!(status["retries"][0]["retries"], 2);
}

#[tokio::test]
async fn an_upstream_429_or_503_retry_after_is_never_called_sooner() {
    // 429 with Retry-After: passed on, and the gateway answers the connection's next
    // requests itself until the time has passed.
    let backend = Mock::first(Answer::status(429).header("retry-after", "2")).await;
    let server = start(&backend, "").await;
    let first = get(&server, "/items/1").await;
    assert_eq!(
        (first.status, first.header("retry-after")),
        (429, Some("2"))
    );
    let held = get(&server, "/items/1").await;
    held.problem(429, "rate-limited");
    let wait: u64 = held.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    assert_eq!(backend.calls(), 1);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(get(&server, "/items/1").await.status, 200);
    assert_eq!(backend.calls(), 2);

    // 503 with Retry-After within max_backoff: retried, but not sooner than asked.
    let backend = Mock::first(Answer::status(503).header("retry-after", "1")).await;
    let server = start(
        &backend,
        "[connector.svc.retry]\nretries = 1\nmax_backoff = \"2s\"\n",
    )
    .await;
    let started = Instant::now();
    assert_eq!(get(&server, "/items/1").await.status, 200);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(backend.calls(), 2);

    // Longer than max_backoff: passed on, and the breaker holds the backend off meanwhile.
    let backend = Mock::first(Answer::status(503).header("retry-after", "2")).await;
    let server = start(&backend, "[connector.svc.retry]\nretries = 1\n").await;
    let passed = get(&server, "/items/1").await;
    assert_eq!(
        (passed.status, passed.header("retry-after")),
        (503, Some("2"))
    );
    get(&server, "/items/1").await.problem(503, "circuit-open");
    assert_eq!(backend.calls(), 1);
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(get(&server, "/items/1").await.status, 200);
}

#[tokio::test]
async fn the_concurrency_limit_refuses_requests_past_max_in_flight() {
    let backend =
        Mock::start(|n, _| Answer::ok(json!({"call": n})).after(Duration::from_secs(3))).await;
    let server = start(&backend, "[connector.svc]\nmax_concurrency = 2\n").await;
    let url = format!("{}/connectors/svc/items/1", server.data_url());
    let client = client();
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let request = client.get(&url).send();
        tasks.push(tokio::spawn(async move {
            collect(request.await.unwrap()).await
        }));
    }
    let mut ok = 0;
    let mut busy = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            200 => ok += 1,
            503 => {
                reply.problem(503, "backend-busy");
                busy += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, busy), (2, 3));
    assert_eq!(backend.calls(), 2);
    // The slots are free again once the responses are done.
    assert_eq!(
        traffic_status(&server).await["concurrency"][0]["in_flight"],
        0
    );
}

// ------------------------------------------------------------------------ configuration

#[test]
fn traffic_keys_with_bad_values_are_reported_with_their_position() {
    let error = junction_runtime::Config::parse(
        "[cache]\nbackend = \"disk\"\n[connector.svc.rate_limit]\nper_connection = \"500/fortnight\"\n[connector.svc.cache]\nttl = \"0s\"\n",
        std::path::Path::new("junction.toml"),
        std::path::Path::new("."),
        &|_| None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("junction.toml:2:11: `cache.backend`: `disk` is not a backend"),
        "{error}"
    );
    assert!(
        error.contains("junction.toml:4:18: `connector.svc.rate_limit.per_connection`"),
        "{error}"
    );
    assert!(
        error.contains("junction.toml:6:7: `connector.svc.cache.ttl`: must be longer than zero"),
        "{error}"
    );
}
