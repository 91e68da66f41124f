//! Traces end to end: a gateway exporting to an OTLP receiver started by the test, which
//! decodes the protobuf it is sent. Checks the spans (names, kinds, one trace, parents,
//! attributes, no secret), the `traceparent` the backend receives, malformed client
//! headers, views' step spans, the cache and policy stages, `Server-Timing`, and an
//! unreachable collector.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use junction_model::{ApiKeyLocation, Method, Operation, ParamLocation, SecurityScheme};
use junction_runtime::telemetry::otlp::proto::{
    self, ExportTraceServiceRequest, Message as _, any_value,
};
use junction_runtime::telemetry::trace::{TraceParent, span_hex, trace_hex};
use junction_server::RunningServer;
use serde_json::{Value, json};

use crate::support::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_PARENT: &str = "00f067aa0ba902b7";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

const INTERNAL: i32 = 1;
const SERVER: i32 = 2;
const CLIENT: i32 = 3;

/// An OTLP/HTTP receiver: every body posted to `/v1/traces`, as received.
#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<Bytes>>>,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let router =
            Router::new()
                .route(
                    "/v1/traces",
                    post(
                        |State(receiver): State<Receiver>,
                         headers: http::HeaderMap,
                         body: Bytes| async move {
                            assert_eq!(headers["content-type"], "application/x-protobuf");
                            receiver.bodies.lock().unwrap().push(body);
                            ""
                        },
                    ),
                )
                .with_state(receiver.clone());
        let addr = start_backend(router).await;
        (receiver, format!("http://{addr}/v1/traces"))
    }

    /// Every span received so far, decoded.
    fn spans(&self) -> Vec<proto::Span> {
        let bodies = self.bodies.lock().unwrap();
        let mut spans = Vec::new();
        for body in bodies.iter() {
            let request = ExportTraceServiceRequest::decode(body.as_ref()).unwrap();
            for resource in request.resource_spans {
                let service = resource
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                    .and_then(|kv| text(kv.value.as_ref()));
                assert_eq!(service.as_deref(), Some("gateway-under-test"));
                for scope in resource.scope_spans {
                    spans.extend(scope.spans);
                }
            }
        }
        spans
    }

    /// All bytes received, for the secret search.
    fn bytes(&self) -> Vec<u8> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b.to_vec())
            .collect()
    }

    /// The spans of trace `trace_id` (hex) once there are `count` of them; fails after a
    /// bounded wait (the exporter sends every second).
    async fn trace(&self, trace_id: &str, count: usize) -> Vec<proto::Span> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let spans: Vec<proto::Span> = self
                .spans()
                .into_iter()
                .filter(|s| hex(&s.trace_id) == trace_id)
                .collect();
            if spans.len() >= count {
                assert_eq!(spans.len(), count, "{spans:#?}");
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} spans of trace {trace_id} arrived: {spans:#?}",
                spans.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&proto::AnyValue>) -> Option<String> {
    match value?.value.as_ref()? {
        any_value::Value::StringValue(text) => Some(text.clone()),
        _ => None,
    }
}

fn attribute(span: &proto::Span, key: &str) -> Option<Value> {
    let value = span.attributes.iter().find(|kv| kv.key == key)?;
    Some(match value.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(text) => json!(text),
        any_value::Value::IntValue(n) => json!(n),
        any_value::Value::BoolValue(b) => json!(b),
    })
}

fn named<'s>(spans: &'s [proto::Span], name: &str) -> &'s proto::Span {
    let found: Vec<&proto::Span> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one span named {name:?} in {spans:#?}");
    found[0]
}

fn telemetry_toml(endpoint: &str, extra: &str) -> String {
    format!(
        "[telemetry]\notlp_endpoint = \"{endpoint}\"\nservice_name = \"gateway-under-test\"\n{extra}"
    )
}

/// A GET operation with a string path parameter `id` (and a query parameter `q`).
fn get_by_id(path: &str, id: &str) -> Operation {
    op(Method::Get, path, id)
        .param(param("id", ParamLocation::Path, json!({"type": "string"})))
        .param(param("q", ParamLocation::Query, json!({"type": "string"})))
}

/// A connector on the echo backend whose API key travels in the query.
async fn keyed_gateway(toml: &str) -> RunningServer {
    let echo = start_echo().await;
    let keyed = with_security(
        connector("keyed", echo, vec![get_by_id("/things/{id}", "GetThing")]),
        vec![(
            "key",
            SecurityScheme::ApiKey {
                name: "code".into(),
                location: ApiKeyLocation::Query,
            },
        )],
    );
    gateway(
        vec![keyed],
        &format!("{toml}\n[connector.keyed.connection]\napi_key = \"conn-s3cret-value\"\n"),
    )
    .await
}

#[tokio::test]
async fn tracing_continues_the_clients_trace_to_the_backend_and_exports_no_secret() {
    let (receiver, endpoint) = Receiver::start().await;
    let server = keyed_gateway(&telemetry_toml(&endpoint, "")).await;
    let reply = collect(
        client()
            .get(format!(
                "{}/connectors/keyed/things/7?q=query-s3cret",
                server.data_url()
            ))
            .header("authorization", "Bearer client-s3cret")
            .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_PARENT}-01"))
            .header("tracestate", TRACESTATE)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200);
    // Off by default.
    assert_eq!(reply.header("server-timing"), None);
    let echoed = reply.echoed();
    // The secrets were in play: the backend got the key and the query value.
    let query = echoed["query"].as_str().unwrap();
    assert!(
        query.contains("conn-s3cret-value") && query.contains("query-s3cret"),
        "{query}"
    );

    let spans = receiver.trace(TRACE_ID, 2).await;
    let server_span = named(&spans, "GET /connectors/keyed/things/{id}");
    let upstream = named(&spans, "GET keyed/GetThing");
    assert_eq!(server_span.kind, SERVER);
    assert_eq!(upstream.kind, CLIENT);
    // Under the client's span, and the upstream call under the server span.
    assert_eq!(hex(&server_span.parent_span_id), CLIENT_PARENT);
    assert_eq!(upstream.parent_span_id, server_span.span_id);
    assert_eq!(server_span.trace_state, TRACESTATE);
    assert!(server_span.start_time_unix_nano <= upstream.start_time_unix_nano);
    assert!(upstream.end_time_unix_nano <= server_span.end_time_unix_nano);
    assert!(server_span.status.is_none(), "{server_span:#?}");

    for (key, expected) in [
        ("http.request.method", json!("GET")),
        ("http.route", json!("/connectors/keyed/things/{id}")),
        ("url.path", json!("/connectors/keyed/things/7")),
        ("http.response.status_code", json!(200)),
        ("junction.connector", json!("keyed")),
        ("junction.operation", json!("GetThing")),
        ("junction.cache", json!("none")),
        ("client.address", json!("127.0.0.1")),
    ] {
        assert_eq!(attribute(server_span, key), Some(expected), "{key}");
    }
    let backend = echoed["headers"]["host"].as_str().unwrap();
    for (key, expected) in [
        ("http.request.method", json!("GET")),
        ("url.full", json!(format!("http://{backend}/api/things/7"))),
        ("server.address", json!("127.0.0.1")),
        ("http.response.status_code", json!(200)),
        ("junction.connector", json!("keyed")),
        ("junction.operation", json!("GetThing")),
    ] {
        assert_eq!(attribute(upstream, key), Some(expected), "{key}");
    }

    // The backend was called in the same trace, under the upstream call's span.
    let sent = echoed["headers"]["traceparent"].as_str().unwrap();
    let parent = TraceParent::parse(sent.as_bytes()).unwrap();
    assert_eq!(trace_hex(&parent.trace_id).as_str(), TRACE_ID);
    assert_eq!(span_hex(&parent.parent_id).as_str(), hex(&upstream.span_id));
    assert_eq!(parent.flags, 1);
    assert_eq!(echoed["headers"]["tracestate"], TRACESTATE);

    let bytes = receiver.bytes();
    for secret in [
        "conn-s3cret-value",
        "query-s3cret",
        "client-s3cret",
        "Bearer",
    ] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} was exported"
        );
    }
}

#[tokio::test]
async fn tracing_starts_a_new_trace_for_a_malformed_traceparent() {
    let (receiver, endpoint) = Receiver::start().await;
    let server = keyed_gateway(&telemetry_toml(&endpoint, "")).await;
    for malformed in [
        format!("00-{}-{CLIENT_PARENT}-01", TRACE_ID.to_uppercase()),
        format!("00-00000000000000000000000000000000-{CLIENT_PARENT}-01"),
        format!("00-{TRACE_ID}-0000000000000000-01"),
        "garbage".to_owned(),
    ] {
        let reply = collect(
            client()
                .get(format!("{}/connectors/keyed/things/1", server.data_url()))
                .header("traceparent", &malformed)
                .header("tracestate", TRACESTATE)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, 200, "{malformed}");
        let echoed = reply.echoed();
        let sent = echoed["headers"]["traceparent"].as_str().unwrap();
        let parent = TraceParent::parse(sent.as_bytes()).unwrap();
        let trace_id = trace_hex(&parent.trace_id).as_str().to_owned();
        assert_ne!(trace_id, TRACE_ID.to_lowercase(), "{malformed}");
        // A new trace does not carry the client's tracestate.
        assert!(echoed["headers"].get("tracestate").is_none(), "{echoed}");

        let spans = receiver.trace(&trace_id, 2).await;
        let server_span = spans.iter().find(|s| s.kind == SERVER).unwrap();
        assert!(server_span.parent_span_id.is_empty(), "{server_span:#?}");
        let upstream = spans.iter().find(|s| s.kind == CLIENT).unwrap();
        assert_eq!(span_hex(&parent.parent_id).as_str(), hex(&upstream.span_id));
    }
}

#[tokio::test]
async fn tracing_propagates_without_an_exporter_and_logs_the_trace_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let server = keyed_gateway(&format!(
        "[log]\naccess = true\nfile = \"{}\"\n",
        log.display()
    ))
    .await;
    let reply = fetch(format!("{}/connectors/keyed/things/1", server.data_url())).await;
    assert_eq!(reply.status, 200);
    let echoed = reply.echoed();
    let sent = echoed["headers"]["traceparent"].as_str().unwrap();
    let parent = TraceParent::parse(sent.as_bytes()).unwrap();
    // Not sampled: nothing records it here.
    assert_eq!(parent.flags, 0);
    let line = access_log(&server, &log).1.remove(0);
    assert_eq!(
        line["trace_id"],
        trace_hex(&parent.trace_id).as_str(),
        "{line}"
    );

    // A problem answer names the trace, so a client's report leads to the spans and logs.
    let refused = collect(
        client()
            .get(format!(
                "{}/connectors/keyed/nothing/here",
                server.data_url()
            ))
            .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_PARENT}-00"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    refused.problem(404, "not-found");
    assert_eq!(refused.json()["trace_id"], TRACE_ID, "{:?}", refused.json());
}

#[tokio::test]
async fn tracing_a_view_puts_each_steps_calls_under_its_step() {
    let (receiver, endpoint) = Receiver::start().await;
    let echo = start_echo().await;
    let svc = connector("svc", echo, vec![get_by_id("/items/{id}", "GetItem")]);
    let mut config = config(&telemetry_toml(&endpoint, ""));
    config.views = vec![junction_runtime::ViewSource::new(
        "views/pair.toml",
        "[step.first]\noperation = \"svc.GetItem\"\nargs = { id = \"1\" }\n\
         [step.second]\noperation = \"svc.GetItem\"\nargs = { id = \"$steps.first.path\" }\n",
    )];
    let server = junction_server::Server::start(&config, &[svc])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let reply = collect(
        client()
            .get(format!("{}/views/pair", server.data_url()))
            .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_PARENT}-01"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );

    let spans = receiver.trace(TRACE_ID, 5).await;
    let view = named(&spans, "GET /views/pair");
    assert_eq!(view.kind, SERVER);
    assert_eq!(hex(&view.parent_span_id), CLIENT_PARENT);
    assert_eq!(attribute(view, "junction.view"), Some(json!("pair")));
    assert_eq!(attribute(view, "http.route"), Some(json!("/views/pair")));
    let calls: Vec<&proto::Span> = spans.iter().filter(|s| s.kind == CLIENT).collect();
    assert_eq!(calls.len(), 2, "{spans:#?}");
    for name in ["first", "second"] {
        let step = named(&spans, &format!("step {name}"));
        assert_eq!(step.kind, INTERNAL);
        assert_eq!(step.parent_span_id, view.span_id);
        assert_eq!(attribute(step, "junction.step"), Some(json!(name)));
        assert_eq!(
            attribute(step, "junction.step.calls"),
            Some(json!("svc.GetItem"))
        );
        let under: Vec<&&proto::Span> = calls
            .iter()
            .filter(|c| c.parent_span_id == step.span_id)
            .collect();
        assert_eq!(under.len(), 1, "one call under step {name}: {spans:#?}");
        assert_eq!(under[0].name, "GET svc/GetItem");
        assert!(step.start_time_unix_nano <= under[0].start_time_unix_nano);
        assert!(under[0].end_time_unix_nano <= step.end_time_unix_nano);
    }
}

/// `Server-Timing: cache;dur=0.041, policy;dur=0.210, upstream;dur=12.5, total;dur=13.1`
/// as name → milliseconds.
fn server_timing(reply: &Reply) -> Vec<(String, f64)> {
    let header = reply
        .header("server-timing")
        .expect("a Server-Timing header");
    header
        .split(',')
        .map(|metric| {
            let (name, duration) = metric.trim().split_once(";dur=").unwrap();
            (name.to_owned(), duration.parse::<f64>().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn tracing_times_the_cache_and_policy_stages_in_spans_and_server_timing() {
    let (receiver, endpoint) = Receiver::start().await;
    let echo = start_echo().await;
    let svc = connector("svc", echo, vec![get_by_id("/items/{id}", "GetItem")]);
    let toml = telemetry_toml(
        &endpoint,
        "server_timing = true\n\
         [connector.svc.operation.GetItem.cache]\nttl = \"60s\"\n\
         [connector.svc.operation.GetItem.transform]\nresponse = '{path}'\n",
    );
    let server = gateway(vec![svc], &toml).await;
    let url = format!("{}/connectors/svc/items/5", server.data_url());
    let send = |traceparent: String| {
        let url = url.clone();
        async move {
            collect(
                client()
                    .get(url)
                    .header("traceparent", traceparent)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };

    let miss = send(format!("00-{TRACE_ID}-{CLIENT_PARENT}-01")).await;
    assert_eq!(miss.status, 200);
    assert_eq!(x_cache(&miss), "MISS");
    assert_eq!(miss.json(), json!({"path": "/api/items/5"}));
    let timing = server_timing(&miss);
    let names: Vec<&str> = timing.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["cache", "policy", "upstream", "total"]);
    let total = timing[3].1;
    assert!(
        timing.iter().all(|(_, ms)| *ms >= 0.0 && *ms <= total),
        "{timing:?}"
    );

    let spans = receiver.trace(TRACE_ID, 5).await;
    let server_span = named(&spans, "GET /connectors/svc/items/{id}");
    for name in ["cache", "request policies", "response policies"] {
        let stage = named(&spans, name);
        assert_eq!(stage.kind, INTERNAL, "{name}");
        assert_eq!(stage.parent_span_id, server_span.span_id, "{name}");
    }
    assert_eq!(
        attribute(named(&spans, "cache"), "junction.cache"),
        Some(json!("MISS"))
    );
    assert_eq!(
        attribute(server_span, "junction.cache"),
        Some(json!("MISS"))
    );
    let upstream = named(&spans, "GET svc/GetItem");
    assert_eq!(upstream.parent_span_id, server_span.span_id);
    // The request policies run before the call, the response policies after it.
    let request_policies = named(&spans, "request policies");
    let response_policies = named(&spans, "response policies");
    assert!(request_policies.end_time_unix_nano <= upstream.start_time_unix_nano);
    assert!(upstream.end_time_unix_nano <= response_policies.start_time_unix_nano);

    // A hit: the cache keeps what the backend said, and the response side runs again for
    // this request (its transform, its links); no upstream span.
    let other_trace = "0af7651916cd43dd8448eb211c80319c";
    let hit = send(format!("00-{other_trace}-b7ad6b7169203331-01")).await;
    assert_eq!(x_cache(&hit), "HIT");
    assert_eq!(hit.json(), json!({"path": "/api/items/5"}));
    let names: Vec<String> = server_timing(&hit).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["cache", "policy", "total"]);
    let spans = receiver.trace(other_trace, 3).await;
    assert_eq!(
        attribute(named(&spans, "cache"), "junction.cache"),
        Some(json!("HIT"))
    );
    named(&spans, "response policies");
    assert!(spans.iter().all(|s| s.kind != CLIENT), "{spans:#?}");

    // A problem the gateway answers: the total only, and an error status with its type.
    let problem_trace = "11111111111111111111111111111111";
    let missing = collect(
        client()
            .get(format!("{}/connectors/svc/nothing", server.data_url()))
            .header(
                "traceparent",
                format!("00-{problem_trace}-b7ad6b7169203331-01"),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(missing.status, 404);
    let names: Vec<String> = server_timing(&missing)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["total"]);
    let spans = receiver.trace(problem_trace, 1).await;
    assert_eq!(spans[0].name, "GET");
    let status = spans[0].status.as_ref().unwrap();
    assert_eq!((status.code, status.message.as_str()), (2, "not-found"));
    assert_eq!(attribute(&spans[0], "error.type"), Some(json!("not-found")));
}

#[tokio::test]
async fn tracing_to_a_closed_port_fails_no_request() {
    let closed = closed_port();
    let server = keyed_gateway(&telemetry_toml(&format!("http://{closed}/v1/traces"), "")).await;
    for _ in 0..3 {
        let reply = fetch(format!("{}/connectors/keyed/things/1", server.data_url())).await;
        assert_eq!(reply.status, 200);
    }
    // The spans are counted as dropped once the exporter has tried (it sends every second).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = admin(&server, reqwest::Method::GET, "/metrics").await;
        let text = String::from_utf8(metrics.body.to_vec()).unwrap();
        let dropped = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("junction_trace_spans_dropped_total{reason=\"export_failed\"} ")
            })
            .map(|v| v.parse::<f64>().unwrap());
        if dropped.is_some_and(|n| n >= 6.0) {
            assert!(
                text.contains("junction_trace_spans_dropped_total{reason=\"queue_full\"} 0"),
                "{text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no export failure counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::timeout(Duration::from_secs(15), server.shutdown())
        .await
        .unwrap();
}

#[test]
fn tracing_settings_are_checked() {
    let parse = |text: &str| {
        junction_runtime::Config::parse(
            text,
            std::path::Path::new("junction.toml"),
            std::path::Path::new("."),
            &|_| None,
        )
    };
    let defaults = parse("").unwrap().telemetry;
    assert_eq!(defaults.otlp_endpoint, None);
    assert_eq!(defaults.service_name, "junction");
    assert!(!defaults.server_timing);
    let set = parse(
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"\nserver_timing = true\n",
    )
    .unwrap()
    .telemetry;
    assert_eq!(
        set.otlp_endpoint.unwrap().as_str(),
        "http://127.0.0.1:4318/v1/traces"
    );
    assert!(set.server_timing);
    for (bad, says) in [
        ("[telemetry]\nsampling = 1\n", "sampling"),
        (
            "[telemetry]\notlp_endpoint = \"grpc://x:4317\"\n",
            "telemetry.otlp_endpoint",
        ),
        (
            "[telemetry]\nservice_name = \" \"\n",
            "telemetry.service_name",
        ),
    ] {
        let error = parse(bad).unwrap_err().to_string();
        assert!(error.contains(says), "{bad}: {error}");
    }
}
