//! Telemetry end to end: `/metrics` on the admin listener after known traffic (counts by
//! operation, status class and cache outcome; histograms; valid Prometheus text), and the
//! JSON-lines access log (its fields, and no secret in it), and the last hour's statistics
//! at `/api/v1/stats`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::get;
use junction_model::{ApiKeyLocation, Method, Operation, ParamLocation, SecurityScheme};
use junction_runtime::Config;
use junction_server::RunningServer;
use serde_json::{Value, json};

use crate::support::*;

/// A backend: `/api/items/{id}` answers JSON, `/api/fail` answers 500.
async fn backend() -> std::net::SocketAddr {
    let router = Router::new()
        .route(
            "/api/items/{id}",
            get(|| async {
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from(json!({"item": 1}).to_string()))
                    .unwrap()
            }),
        )
        .route(
            "/api/fail",
            get(|| async {
                Response::builder()
                    .status(500)
                    .body(Body::from("broken"))
                    .unwrap()
            }),
        );
    start_backend(router).await
}

/// A GET operation with a string path parameter `id`.
fn get_by_id(path: &str, id: &str) -> Operation {
    op(Method::Get, path, id).param(param("id", ParamLocation::Path, json!({"type": "string"})))
}

async fn svc_gateway(toml: &str) -> RunningServer {
    let addr = backend().await;
    gateway(
        vec![connector(
            "svc",
            addr,
            vec![
                get_by_id("/items/{id}", "GetItem"),
                op(Method::Get, "/fail", "Fail"),
            ],
        )],
        toml,
    )
    .await
}

/// Parses the Prometheus text exposition: every line is a comment (`# HELP`/`# TYPE`) or a
/// sample `name{labels} value`; returns the samples by `name{labels}`.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut typed = BTreeMap::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let keyword = words.next().unwrap();
            let name = words.next().unwrap();
            let rest = words.next().unwrap_or_default();
            assert!(keyword == "HELP" || keyword == "TYPE", "{line}");
            if keyword == "TYPE" {
                assert!(["counter", "gauge", "histogram"].contains(&rest), "{line}");
                assert!(
                    typed.insert(name.to_owned(), rest.to_owned()).is_none(),
                    "{line}"
                );
            }
            continue;
        }
        assert!(!line.is_empty(), "an empty line in:\n{text}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("not a value: {line}")),
        };
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
                check_labels(labels, line);
                name
            }
            None => series,
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| typed.get(*base).is_some_and(|t| t == "histogram"))
            .unwrap_or(name);
        assert!(typed.contains_key(family), "no # TYPE before {line}");
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "a sample twice: {line}"
        );
    }
    samples
}

/// `key="value",…` with escaped values.
fn check_labels(labels: &str, line: &str) {
    let mut rest = labels;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => {
                    chars.next();
                }
                Some((at, '"')) => break at,
                Some(_) => {}
                None => panic!("unterminated label value: {line}"),
            }
        };
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

async fn scrape(server: &RunningServer) -> (String, BTreeMap<String, f64>) {
    let reply = admin(server, reqwest::Method::GET, "/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        reply.header("content-type")
    );
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    let samples = parse_prometheus(&text);
    (text, samples)
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no sample {series} in {:#?}", samples.keys()))
}

#[tokio::test]
async fn metrics_count_requests_by_operation_status_and_cache_outcome() {
    let server = svc_gateway("[connector.svc.operation.GetItem.cache]\nttl = \"60s\"\n").await;
    let data = server.data_url();
    assert_eq!(
        x_cache(&fetch(format!("{data}/connectors/svc/items/1")).await),
        "MISS"
    );
    for _ in 0..2 {
        assert_eq!(
            x_cache(&fetch(format!("{data}/connectors/svc/items/1")).await),
            "HIT"
        );
    }
    assert_eq!(
        fetch(format!("{data}/connectors/svc/fail")).await.status,
        500
    );
    fetch(format!("{data}/connectors/svc/nothing/here"))
        .await
        .problem(404, "not-found");
    let refused = collect(
        client()
            .delete(format!("{data}/connectors/svc/items/1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(refused.status, 405);

    let (_, samples) = scrape(&server).await;
    let get_item = "connector=\"svc\",operation=\"GetItem\"";
    let requests = |labels: &str| value(&samples, &format!("junction_requests_total{{{labels}}}"));
    assert_eq!(
        requests(&format!("{get_item},status=\"2xx\",cache=\"MISS\"")),
        1.0
    );
    assert_eq!(
        requests(&format!("{get_item},status=\"2xx\",cache=\"HIT\"")),
        2.0
    );
    assert_eq!(
        requests("connector=\"svc\",operation=\"Fail\",status=\"5xx\",cache=\"none\""),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "junction_unrouted_requests_total{status=\"4xx\",cache=\"none\"}"
        ),
        2.0
    );
    // Series never counted are not listed, but each route shows its 2xx/none line.
    assert_eq!(
        requests("connector=\"svc\",operation=\"Fail\",status=\"2xx\",cache=\"none\""),
        0.0
    );
    assert!(!samples.keys().any(|k| k.contains("status=\"3xx\"")));

    // The request histogram: three GetItem requests, cumulative buckets ending at +Inf.
    let histogram = "junction_request_duration_seconds";
    assert_eq!(
        value(&samples, &format!("{histogram}_count{{{get_item}}}")),
        3.0
    );
    assert!(value(&samples, &format!("{histogram}_sum{{{get_item}}}")) > 0.0);
    let buckets: Vec<f64> = samples
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{histogram}_bucket{{{get_item},le=")))
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(buckets.len(), 15, "{buckets:?}");
    assert_eq!(
        value(
            &samples,
            &format!("{histogram}_bucket{{{get_item},le=\"+Inf\"}}")
        ),
        3.0
    );
    let mut ordered: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|(k, v)| {
            let bound = k
                .strip_prefix(&format!("{histogram}_bucket{{{get_item},le=\""))?
                .strip_suffix("\"}")?;
            Some((bound.parse::<f64>().unwrap(), *v))
        })
        .collect();
    ordered.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(ordered.windows(2).all(|w| w[0].1 <= w[1].1), "{ordered:?}");

    // Upstream calls: the miss and the failure reached the backend, the hits did not.
    assert_eq!(
        value(
            &samples,
            "junction_upstream_duration_seconds_count{connector=\"svc\"}"
        ),
        2.0
    );
    // The pool: the two calls went one after the other, on one or two connections.
    let opened = value(&samples, "junction_upstream_pool_connections_opened_total");
    let reused = value(&samples, "junction_upstream_pool_reused_total");
    assert!(opened >= 1.0 && opened + reused == 2.0, "{opened} {reused}");
    let open = value(&samples, "junction_upstream_pool_connections");
    assert!(value(&samples, "junction_upstream_pool_idle_connections") <= open);
    assert!(open <= opened);
    assert_eq!(value(&samples, "junction_upstream_tls_requests_total"), 0.0);
    // The cache's own counters, read at scrape time.
    assert_eq!(value(&samples, "junction_cache_hits_total"), 2.0);
    assert_eq!(value(&samples, "junction_cache_misses_total"), 1.0);
    // The memory store counts its entries lazily (moka): listed, not exact at once.
    assert!(value(&samples, "junction_cache_entries") <= 1.0);
    // Failures by problem type.
    assert_eq!(
        value(&samples, "junction_errors_total{type=\"not-found\"}"),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "junction_errors_total{type=\"method-not-allowed\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&samples, "junction_errors_total{type=\"transform-failed\"}"),
        0.0
    );
}

#[tokio::test]
async fn metrics_show_rate_limit_rejections_and_breaker_state() {
    let server = svc_gateway(
        "[connector.svc.rate_limit]\nper_connection = \"2/h\"\n\
         [connector.svc.breaker]\nfailures = 2\nopen_for = \"60s\"\nfailure_statuses = [500]\n",
    )
    .await;
    let data = server.data_url();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(fetch(format!("{data}/connectors/svc/fail")).await.status);
    }
    assert_eq!(statuses, [500, 500, 429]);
    let (_, samples) = scrape(&server).await;
    assert_eq!(
        value(
            &samples,
            "junction_ratelimit_rejected_total{limit=\"connection/svc\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "junction_ratelimit_allowed_total{limit=\"connection/svc\"}"
        ),
        2.0
    );
    assert_eq!(
        value(&samples, "junction_errors_total{type=\"rate-limited\"}"),
        1.0
    );
    let backend = samples
        .keys()
        .find_map(|k| {
            k.strip_prefix("junction_breaker_state{backend=\"")
                .and_then(|rest| rest.split_once('"'))
                .map(|(backend, _)| backend.to_owned())
        })
        .expect("a breaker series");
    let state = |s: &str| {
        value(
            &samples,
            &format!("junction_breaker_state{{backend=\"{backend}\",state=\"{s}\"}}"),
        )
    };
    assert_eq!(
        (state("open"), state("closed"), state("half-open")),
        (1.0, 0.0, 0.0)
    );
    assert_eq!(
        value(
            &samples,
            &format!("junction_breaker_opened_total{{backend=\"{backend}\"}}")
        ),
        1.0
    );
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn access_log_lines_carry_the_route_and_timings_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let echo = start_echo().await;
    let keyed = with_security(
        connector("keyed", echo, vec![get_by_id("/things/{id}", "GetThing")]),
        vec![(
            "key",
            SecurityScheme::ApiKey {
                name: "X-Api-Key".into(),
                location: ApiKeyLocation::Header,
            },
        )],
    );
    let server = gateway(
        vec![keyed],
        &format!(
            "[log]\naccess = true\nformat = \"json\"\nfile = \"{}\"\n\
             [connector.keyed.connection]\napi_key = \"conn-s3cret-value\"\n",
            log.display()
        ),
    )
    .await;
    let data = server.data_url();
    let reply = collect(
        client()
            .get(format!(
                "{data}/connectors/keyed/things/7?token=query-s3cret"
            ))
            .header("authorization", "Bearer client-s3cret")
            .header("x-api-key", "key-s3cret")
            .header("x-request-id", "req-42")
            .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    // The backend got the connection's key (so the secret really was in play).
    assert_eq!(reply.echoed()["headers"]["x-api-key"], "conn-s3cret-value");
    fetch(format!("{data}/connectors/keyed/nothing"))
        .await
        .problem(404, "not-found");

    let (text, lines) = access_log(&server, &log);
    assert_eq!(lines.len(), 2, "{text}");
    let ok = &lines[0];
    assert_eq!(ok["connector"], "keyed", "{ok}");
    assert_eq!(ok["operation"], "GetThing");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["path"], "/connectors/keyed/things/7");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["cache"], "none");
    assert_eq!(ok["request_id"], "req-42");
    assert_eq!(ok["trace_id"], TRACE_ID);
    assert_eq!(ok["client"], "127.0.0.1");
    assert!(
        ok["duration_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{ok}"
    );
    let upstream = ok["upstream_ms"].as_f64().expect("upstream_ms");
    assert!(
        upstream > 0.0 && upstream <= ok["duration_ms"].as_f64().unwrap(),
        "{ok}"
    );
    assert!(ok["bytes"].as_u64().is_some_and(|b| b > 0), "{ok}");
    assert!(
        ok["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{ok}"
    );
    assert!(ok.get("error").is_none(), "{ok}");

    let missing = &lines[1];
    assert_eq!(missing["status"], 404);
    assert_eq!(missing["error"], "not-found");
    // The id the problem answer carries, so the line and the answer meet.
    assert!(
        missing["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{missing}"
    );
    assert!(missing.get("connector").is_none(), "{missing}");
    assert!(missing.get("upstream_ms").is_none(), "{missing}");

    let (metrics, _) = scrape(&server).await;
    for secret in [
        "client-s3cret",
        "key-s3cret",
        "conn-s3cret-value",
        "query-s3cret",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} in the access log:\n{text}"
        );
        assert!(!metrics.contains(secret), "{secret} in /metrics");
    }
}

#[test]
fn access_log_is_off_by_default_and_json_is_the_only_format() {
    assert_eq!(
        config("").log.access,
        junction_runtime::telemetry::AccessTarget::Off
    );
    assert_eq!(
        config("[log]\naccess = true\n").log.access,
        junction_runtime::telemetry::AccessTarget::Stdout
    );
    let error = Config::parse(
        "[log]\naccess = true\nformat = \"text\"\n",
        std::path::Path::new("junction.toml"),
        std::path::Path::new("."),
        &|_| None,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("log.format"), "{error}");
}

#[tokio::test]
async fn views_are_counted_as_views_and_their_steps_as_upstream_calls() {
    let addr = backend().await;
    let svc = connector("svc", addr, vec![get_by_id("/items/{id}", "GetItem")]);
    let mut config = config("");
    config.views = vec![junction_runtime::ViewSource::new(
        "views/one.toml",
        "[input.id]\ntype = \"string\"\ndefault = \"1\"\n\
         [step.item]\noperation = \"svc.GetItem\"\nargs = { id = \"$inputs.id\" }\n",
    )];
    let server = junction_server::Server::start(&config, &[svc])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let reply = fetch(format!("{}/views/one", server.data_url())).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );

    let (_, samples) = scrape(&server).await;
    assert_eq!(
        value(
            &samples,
            "junction_view_requests_total{view=\"one\",status=\"2xx\",cache=\"none\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "junction_view_request_duration_seconds_count{view=\"one\"}"
        ),
        1.0
    );
    // The console's statistics list the view, and not its step's operation.
    let stats = admin(&server, reqwest::Method::GET, "/api/v1/stats")
        .await
        .json();
    let routes = stats["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 1, "{stats:#}");
    assert_eq!(routes[0]["kind"], "view");
    assert_eq!(routes[0]["view"], "one");
    assert_eq!(routes[0]["requests"], 1);
    // The step is not a client's request of the operation, but it called the backend.
    assert_eq!(
        value(
            &samples,
            "junction_requests_total{connector=\"svc\",operation=\"GetItem\",status=\"2xx\",cache=\"none\"}"
        ),
        0.0
    );
    assert_eq!(
        value(
            &samples,
            "junction_upstream_duration_seconds_count{connector=\"svc\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn stats_of_the_last_hour_count_rates_errors_hits_and_percentiles() {
    let server = svc_gateway("[connector.svc.operation.GetItem.cache]\nttl = \"60s\"\n").await;
    let data = server.data_url();
    let empty = admin(&server, reqwest::Method::GET, "/api/v1/stats").await;
    assert_eq!(empty.status, 200);
    let empty = empty.json();
    assert_eq!(empty["window_seconds"], 3600);
    assert_eq!(empty["slot_seconds"], 60);
    assert_eq!(
        empty["routes"],
        json!([]),
        "routes without requests are not listed"
    );

    for _ in 0..4 {
        assert_eq!(
            fetch(format!("{data}/connectors/svc/items/1")).await.status,
            200
        );
    }
    for _ in 0..2 {
        assert_eq!(
            fetch(format!("{data}/connectors/svc/fail")).await.status,
            500
        );
    }
    fetch(format!("{data}/connectors/svc/nothing"))
        .await
        .problem(404, "not-found");

    let stats = admin(&server, reqwest::Method::GET, "/api/v1/stats")
        .await
        .json();
    let routes = stats["routes"].as_array().unwrap();
    assert_eq!(
        routes.len(),
        2,
        "unrouted requests are not a route: {stats:#}"
    );
    let route = |operation: &str| {
        routes
            .iter()
            .find(|r| {
                r["kind"] == "operation" && r["connector"] == "svc" && r["operation"] == operation
            })
            .unwrap_or_else(|| panic!("no {operation} in {stats:#}"))
            .clone()
    };
    let item = route("GetItem");
    assert_eq!(item["requests"], 4);
    assert_eq!(item["errors"], 0);
    assert_eq!(item["error_rate"], 0.0);
    assert_eq!(
        (item["cache_hits"].clone(), item["cache_lookups"].clone()),
        (json!(3), json!(4))
    );
    assert_eq!(item["cache_hit_ratio"], 0.75);
    assert!(item["rate_per_second"].as_f64().unwrap() > 0.0);
    let latency = &item["latency_ms"];
    let (p50, p95, p99) = (
        latency["p50"].as_f64().unwrap(),
        latency["p95"].as_f64().unwrap(),
        latency["p99"].as_f64().unwrap(),
    );
    assert!(
        0.0 < p50 && p50 <= p95 && p95 <= p99 && p99 < 5_000.0,
        "{latency}"
    );
    let series = item["series"].as_array().unwrap();
    assert_eq!(series.len(), 60);
    let t: Vec<u64> = series.iter().map(|p| p["t"].as_u64().unwrap()).collect();
    assert!(
        t.windows(2).all(|w| w[1] == w[0] + 60),
        "one point a minute, oldest first"
    );
    assert!(t[59] <= stats["now"].as_u64().unwrap() && stats["now"].as_u64().unwrap() < t[59] + 60);
    // The requests fall in the last minute, or the two last when a minute turned meanwhile.
    let recent: u64 = series[58..]
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(recent, 4);
    let hits: u64 = series
        .iter()
        .map(|p| p["cache_hits"].as_u64().unwrap())
        .sum();
    assert_eq!(hits, 3);

    let fail = route("Fail");
    assert_eq!(fail["requests"], 2);
    assert_eq!(fail["errors"], 2);
    assert_eq!(fail["error_rate"], 1.0);
    assert_eq!(
        fail["cache_hit_ratio"],
        Value::Null,
        "an operation without a cache"
    );
}
