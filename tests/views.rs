//! Views end to end: real gateways on ephemeral ports, views over an in-process backend
//! whose endpoints sleep, fail, count how many calls they serve at once (and how many each
//! path got), and echo. Timing tests measure the view's own answer after warming the
//! connections. Cached views at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use junction_model::{Connector, Method, ParamLocation};
use junction_runtime::{Gateway, ViewSource};
use junction_server::{RunningServer, Server};
use serde_json::{Value, json};

use crate::support::*;

/// Calls in flight at the `item` endpoint, and the most seen at once; calls per path; and
/// a switch that makes `item` fail.
#[derive(Debug, Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
    calls: AtomicUsize,
    paths: Mutex<HashMap<String, usize>>,
    failing: AtomicBool,
}

impl Gauge {
    /// How many requests the backend got for `path` (`/api/item/x`).
    fn seen(&self, path: &str) -> usize {
        self.paths.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

async fn backend(gauge: Arc<Gauge>) -> SocketAddr {
    async fn sleep(Path(ms): Path<u64>, Query(q): Query<HashMap<String, String>>) -> Json<Value> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Json(
            json!({"slept": ms, "tag": q.get("tag"), "next": format!("{}-next", q.get("tag").map_or("", String::as_str))}),
        )
    }
    async fn fail() -> (http::StatusCode, Json<Value>) {
        (
            http::StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "broken on purpose"})),
        )
    }
    async fn items(Query(q): Query<HashMap<String, String>>) -> Json<Value> {
        let n: usize = q.get("n").and_then(|n| n.parse().ok()).unwrap_or(3);
        Json(json!({"value": (0..n).map(|i| json!({"id": format!("i{i}")})).collect::<Vec<_>>()}))
    }
    async fn item(
        State(gauge): State<Arc<Gauge>>,
        Path(id): Path<String>,
    ) -> (http::StatusCode, Json<Value>) {
        let now = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
        gauge.max.fetch_max(now, Ordering::SeqCst);
        gauge.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        gauge.now.fetch_sub(1, Ordering::SeqCst);
        if gauge.failing.load(Ordering::SeqCst) {
            return (
                http::StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "down on purpose"})),
            );
        }
        let answer = json!({"id": id, "name": format!("Item {id}")});
        (http::StatusCode::OK, Json(answer))
    }
    async fn count(State(gauge): State<Arc<Gauge>>, request: Request, next: Next) -> Response {
        *gauge
            .paths
            .lock()
            .unwrap()
            .entry(request.uri().path().to_owned())
            .or_default() += 1;
        next.run(request).await
    }
    async fn echo(
        Path(id): Path<String>,
        Query(q): Query<HashMap<String, String>>,
        body: Option<Json<Value>>,
    ) -> Json<Value> {
        Json(json!({"id": id, "query": q, "body": body.map(|Json(b)| b)}))
    }
    start_backend(
        Router::new()
            .route("/api/sleep/{ms}", get(sleep))
            .route("/api/fail", get(fail))
            .route("/api/items", get(items))
            .route("/api/item/{id}", get(item))
            .route("/api/echo/{id}", get(echo).post(echo))
            .layer(axum::middleware::from_fn_with_state(gauge.clone(), count))
            .with_state(gauge),
    )
    .await
}

fn svc(addr: SocketAddr) -> Connector {
    use Method::*;
    use ParamLocation::*;
    connector(
        "svc",
        addr,
        vec![
            op(Get, "/sleep/{ms}", "Sleep")
                .param(param("ms", Path, json!({"type": "integer"})))
                .param(param("tag", Query, json!({"type": "string"}))),
            op(Get, "/fail", "Fail"),
            op(Get, "/items", "ListItems").param(param("n", Query, json!({"type": "integer"}))),
            op(Get, "/item/{id}", "GetItem").param(param("id", Path, json!({"type": "string"}))),
            op(Get, "/echo/{id}", "Echo")
                .param(param("id", Path, json!({"type": "string"})))
                .param(param(
                    "tags",
                    Query,
                    json!({"type": "array", "items": {"type": "string"}}),
                ))
                .param(
                    param("limit", Query, json!({"type": "integer", "maximum": 10})).required(),
                ),
            op(Post, "/echo/{id}", "PostEcho")
                .param(param("id", Path, json!({"type": "string"})))
                .json_body(
                    json!({"type": "object", "required": ["title"], "properties": {"title": {"type": "string"}}}),
                    true,
                ),
        ],
    )
}

fn sources(views: &[(&str, &str)]) -> Vec<ViewSource> {
    views
        .iter()
        .map(|(name, text)| ViewSource::new(format!("views/{name}.toml"), *text))
        .collect()
}

async fn start(views: &[(&str, &str)]) -> (RunningServer, Arc<Gauge>) {
    start_with(views, "").await
}

/// [`start`] with `toml` added to `junction.toml`.
async fn start_with(views: &[(&str, &str)], toml: &str) -> (RunningServer, Arc<Gauge>) {
    let gauge = Arc::new(Gauge::default());
    let addr = backend(gauge.clone()).await;
    let mut config = config(toml);
    config.views = sources(views);
    let server = match Server::start(&config, &[svc(addr)]).await {
        Ok(server) => server,
        Err(junction_server::StartError::Compile(diagnostics)) => {
            let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            panic!("gateway did not compile:\n{}", text.join("\n"))
        }
        Err(error) => panic!("{error}"),
    };
    (server, gauge)
}

/// The load errors of `views` (over the `svc` connector), one line each.
fn load_errors(views: &[(&str, &str)]) -> Vec<String> {
    let mut config = config("");
    config.views = sources(views);
    match Gateway::compile(&config, &[svc(closed_port())]) {
        Ok(_) => panic!("the views compiled"),
        Err(diagnostics) => diagnostics.errors().map(ToString::to_string).collect(),
    }
}

/// Asserts a 200, showing the body otherwise.
fn assert_ok(reply: &Reply) {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

async fn get_view(server: &RunningServer, path_and_query: &str) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = fetch(format!("{}/views/{path_and_query}", server.data_url())).await;
    (reply, started.elapsed())
}

const THREE: &str = r#"
summary = "Three independent slow steps"
[input.ms]
type = "integer"
default = 100
[step.a]
operation = "svc.Sleep"
args = { ms = "$inputs.ms", tag = "a" }
[step.b]
operation = "svc.Sleep"
args = { ms = "$inputs.ms", tag = "b" }
[step.c]
operation = "svc.Sleep"
args = { ms = "$inputs.ms", tag = "c" }
"#;

#[tokio::test]
async fn views_three_independent_100ms_steps_answer_in_under_150ms() {
    let (server, _) = start(&[
        ("three", THREE),
        ("shaped", &format!("shape = '[.steps[] | .tag]'\n{THREE}")),
    ])
    .await;
    // Warm the gateway's connections to the backend (three at once).
    let (warm, _) = get_view(&server, "three?ms=1").await;
    assert_eq!(warm.status, 200, "{}", String::from_utf8_lossy(&warm.body));
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let (reply, elapsed) = get_view(&server, "three").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(reply.header("x-junction-partial"), None);
        let body = reply.json();
        assert_eq!(body["a"]["tag"], "a");
        assert_eq!(body["c"]["slept"], 100);
        best = best.min(elapsed);
    }
    assert!(best < Duration::from_millis(150), "the view took {best:?}");
    assert!(best >= Duration::from_millis(100), "{best:?}");
    let (reply, _) = get_view(&server, "shaped?ms=1").await;
    assert_eq!(reply.json(), json!(["a", "b", "c"]));
}

#[tokio::test]
async fn views_a_chain_of_two_dependent_steps_takes_about_200ms() {
    let chain = r#"
[step.first]
operation = "svc.Sleep"
args = { ms = 100, tag = "one" }
[step.second]
operation = "svc.Sleep"
args = { ms = 100, tag = "$steps.first.next" }
"#;
    let (server, _) = start(&[("chain", chain)]).await;
    get_view(&server, "chain").await;
    let mut elapsed = Duration::MAX;
    for _ in 0..2 {
        let (reply, took) = get_view(&server, "chain").await;
        assert_ok(&reply);
        assert_eq!(reply.json()["second"]["tag"], "one-next");
        elapsed = elapsed.min(took);
    }
    assert!(
        elapsed >= Duration::from_millis(180) && elapsed < Duration::from_millis(350),
        "the chain took {elapsed:?}"
    );
}

#[tokio::test]
async fn views_an_optional_step_that_fails_takes_its_fallback_and_is_reported() {
    let view = r#"
shape = '{tag: .steps.ok.tag, cases: .steps.broken, failed: [.failed[].step]}'
[step.ok]
operation = "svc.Sleep"
args = { ms = 1, tag = "fine" }
[step.broken]
operation = "svc.Fail"
optional = true
fallback = []
"#;
    let (server, _) = start(&[("partial", view)]).await;
    let (reply, _) = get_view(&server, "partial").await;
    assert_ok(&reply);
    assert_eq!(reply.header("x-junction-partial"), Some("broken"));
    assert_eq!(
        reply.json(),
        json!({"tag": "fine", "cases": [], "failed": ["broken"]})
    );
}

#[tokio::test]
async fn views_a_required_step_that_fails_is_a_502_naming_the_step() {
    let view = r#"
[step.ok]
operation = "svc.Sleep"
args = { ms = 1 }
[step.broken]
operation = "svc.Fail"
"#;
    let (server, _) = start(&[("required", view)]).await;
    let (reply, _) = get_view(&server, "required").await;
    let problem = reply.problem(502, "view-step-failed");
    assert_eq!(
        problem["detail"],
        "view 'required': required step 'broken' (svc.Fail) failed: the backend answered 500 Internal Server Error"
    );
    assert_eq!(problem["instance"], "/views/required");
}

#[tokio::test]
async fn views_for_each_over_50_elements_holds_concurrency_8() {
    let view = r#"
shape = '{count: (.steps.details | length), first: .steps.details[0], last: .steps.details[-1].id}'
[step.list]
operation = "svc.ListItems"
args = { n = 50 }
[step.details]
operation = "svc.GetItem"
for_each = "$steps.list.value"
concurrency = 8
args = { id = "$item.id" }
"#;
    let (server, gauge) = start(&[("fanout", view)]).await;
    let (reply, elapsed) = get_view(&server, "fanout").await;
    assert_ok(&reply);
    assert_eq!(
        reply.json(),
        json!({"count": 50, "first": {"id": "i0", "name": "Item i0"}, "last": "i49"})
    );
    assert_eq!(gauge.calls.load(Ordering::SeqCst), 50);
    let max = gauge.max.load(Ordering::SeqCst);
    assert!(max <= 8, "{max} calls ran at once");
    assert!(max >= 4, "only {max} calls ran at once");
    // 50 calls of 20 ms, 8 at a time: at least 7 rounds.
    assert!(elapsed >= Duration::from_millis(140), "{elapsed:?}");
}

#[tokio::test]
async fn views_step_timeouts_fail_required_steps_and_fall_back_for_optional_ones() {
    let required = r#"
[step.slow]
operation = "svc.Sleep"
args = { ms = 3000 }
timeout = "50ms"
"#;
    let optional = r#"
timeout = "50ms"
[step.slow]
operation = "svc.Sleep"
args = { ms = 3000 }
optional = true
fallback = { slept = 0 }
[step.fast]
operation = "svc.Sleep"
args = { ms = 1 }
timeout = "2s"
"#;
    let (server, _) = start(&[("required", required), ("optional", optional)]).await;
    let (reply, elapsed) = get_view(&server, "required").await;
    // A step that timed out is a timeout of the view (504), not a broken step.
    let problem = reply.problem(504, "upstream-timeout");
    assert_eq!(
        problem["detail"],
        "view 'required': required step 'slow' (svc.Sleep) failed: it did not finish within its timeout of 50ms"
    );
    // Far below the backend's 3 s: the step was cut at its timeout (generous for a
    // loaded 2-core machine).
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    let (reply, elapsed) = get_view(&server, "optional").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-junction-partial"), Some("slow"));
    assert_eq!(reply.json()["slow"], json!({"slept": 0}));
    assert_eq!(reply.json()["fast"]["slept"], 1);
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
}

#[tokio::test]
async fn views_inputs_are_validated_from_the_query_and_the_json_body() {
    let view = r#"
[input.id]
type = "string"
required = true
pattern = "^[a-z0-9]+$"
[input.limit]
type = "integer"
minimum = 1
maximum = 10
default = 5
[input.tags]
type = "array"
items = { type = "string" }
[step.echo]
operation = "svc.Echo"
args = { id = "$inputs.id", limit = "$inputs.limit", tags = "$inputs.tags" }
[step.post]
operation = "svc.PostEcho"
args = { id = "$inputs.id", body = { title = "$inputs.id", tags = "$inputs.tags" } }
"#;
    let (server, _) = start(&[("inputs", view)]).await;
    let (reply, _) = get_view(&server, "inputs?id=abc&tags=x,y").await;
    assert_ok(&reply);
    let body = reply.json();
    assert_eq!(
        body["echo"],
        json!({"id": "abc", "query": {"limit": "5", "tags": "x,y"}, "body": null})
    );
    assert_eq!(
        body["post"]["body"],
        json!({"title": "abc", "tags": ["x", "y"]})
    );

    let (reply, _) = get_view(&server, "inputs?limit=abc&colour=red").await;
    let problem = reply.problem(400, "invalid-request");
    let mut messages: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    messages.sort_unstable();
    assert_eq!(
        messages,
        [
            "query parameter 'id': the input is required",
            "query parameter 'limit': \"abc\" is not an integer",
            "view 'inputs' has no input 'colour' (inputs: id, limit, tags)",
        ]
    );

    let reply = collect(
        client()
            .post(format!("{}/views/inputs", server.data_url()))
            .json(&json!({"id": "q1", "limit": 2, "tags": ["t"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_ok(&reply);
    assert_eq!(
        reply.json()["echo"]["query"],
        json!({"limit": "2", "tags": "t"})
    );
    let reply = collect(
        client()
            .post(format!("{}/views/inputs", server.data_url()))
            .json(&json!({"id": "NOT OK", "limit": 11}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let problem = reply.problem(400, "invalid-request");
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2, "{problem}");
    assert_eq!(problem["errors"][0]["pointer"], "/id");

    let reply = collect(
        client()
            .post(format!("{}/views/inputs", server.data_url()))
            .header("content-type", "text/plain")
            .body("id=abc")
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.problem(415, "unsupported-media-type");
    let reply = collect(
        client()
            .delete(format!("{}/views/inputs", server.data_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.problem(405, "method-not-allowed");
    assert_eq!(reply.header("allow"), Some("GET, POST"));
    let (reply, _) = get_view(&server, "nope").await;
    assert_eq!(
        reply.problem(404, "not-found")["detail"],
        "there is no view named 'nope'"
    );
}

#[tokio::test]
async fn views_call_other_views_and_pass_their_partial_failures_on() {
    let inner = r#"
[input.tag]
type = "string"
required = true
[step.a]
operation = "svc.Sleep"
args = { ms = 1, tag = "$inputs.tag" }
[step.broken]
operation = "svc.Fail"
optional = true
"#;
    let outer = r#"
shape = '{inner: .steps.inner.a.tag, each: [.steps.each[].a.tag]}'
[step.inner]
view = "inner"
args = { tag = "x" }
[step.each]
view = "inner"
for_each = "$steps.inner.a.tag"
args = { tag = "$item" }
optional = true
fallback = []
"#;
    let (server, _) = start(&[("inner", inner), ("outer", outer)]).await;
    let (reply, _) = get_view(&server, "outer").await;
    assert_ok(&reply);
    // `each` iterates over a string, not a list: it fails and falls back.
    assert_eq!(reply.json(), json!({"inner": "x", "each": []}));
    assert_eq!(
        reply.header("x-junction-partial"),
        Some("inner.broken, each")
    );
}

#[test]
fn views_cycles_are_load_errors_that_spell_the_cycle_out() {
    let steps = r#"
[step.a]
operation = "svc.Sleep"
args = { ms = "$steps.c.slept" }
[step.b]
operation = "svc.Sleep"
args = { ms = "$steps.a.slept" }
[step.c]
operation = "svc.Sleep"
args = { ms = 1 }
after = ["b"]
[step.d]
operation = "svc.Sleep"
args = { ms = 1 }
"#;
    let errors = load_errors(&[("loop", steps)]);
    assert_eq!(
        errors,
        [
            "views/loop.toml#/step/a:2:1: error[view-cycle]: `step.a`: the steps depend on each other in a cycle: a → c → b → a (each uses the result of the next)"
        ]
    );
    let x = "[step.y]\nview = \"y\"\n";
    let y = "[step.x]\nview = \"x\"\n";
    let errors = load_errors(&[("x", x), ("y", y)]);
    assert_eq!(
        errors,
        [
            "views/x.toml#/step/y/view:2:8: error[view-cycle]: `step.y.view`: views call each other in a cycle: x → y → x"
        ]
    );
}

#[test]
fn views_load_errors_name_file_line_key_and_why() {
    let view = r#"summary = "Everything wrong"
[input.n]
type = "integr"
[step.a]
operation = "nowhere.Thing"
[step.b]
operation = "svc.Slep"
[step.c]
operation = "svc.Sleep"
args = { ms = "$inputs.missing", colour = "red" }
fallback = 1
[step.d]
operation = "svc.GetItem"
args = { id = "$item.id" }
timeout = "soon"
[step.e]
operation = "svc.Sleep"
args = { ms = "$steps.zz.x" }
concurrency = 3
"#;
    let errors = load_errors(&[("bad", view), ("syntax", "shape = 'frob'\nstep = 3\n")]);
    let expected = [
        "views/syntax.toml#:2:8: error[view-syntax]: invalid type: integer `3`, expected a map",
        "views/bad.toml#/input/n/type:3:8: error[view-input]: `input.n.type`: \"integr\" is not a type; write one of string, integer, number, boolean, array, object",
        "views/bad.toml#/step/a/operation:5:13: error[view-step]: `step.a.operation`: there is no connector named 'nowhere' (connectors: svc)",
        "views/bad.toml#/step/b/operation:7:13: error[view-step]: `step.b.operation`: connector 'svc' has no operation 'Slep' (operations: Sleep, Fail, ListItems, GetItem, Echo, PostEcho)",
        "views/bad.toml#/step/c/fallback:11:12: error[view-step]: `step.c.fallback`: a fallback is used when an optional step fails; add `optional = true`",
        "views/bad.toml#/step/c/args/ms:10:15: error[view-reference]: `step.c.args.ms`: `$inputs.missing`: the view has no input 'missing' (inputs: none)",
        "views/bad.toml#/step/c/args/colour:10:43: error[view-argument]: `step.c.args.colour`: operation svc.Sleep has no parameter 'colour' (it takes: ms, tag)",
        "views/bad.toml#/step/d/timeout:15:11: error[view-step]: `step.d.timeout`: `soon` is not a duration; write e.g. \"5s\" or \"250ms\"",
        "views/bad.toml#/step/d/args/id:14:15: error[view-reference]: `step.d.args.id`: `$item.id`: $item and $index exist only in the arguments of a step with `for_each`",
        "views/bad.toml#/step/e/concurrency:19:15: error[view-step]: `step.e.concurrency`: `concurrency` bounds the calls of a `for_each` step; this step has no `for_each`",
        "views/bad.toml#/step/e/args/ms:18:15: error[view-reference]: `step.e.args.ms`: `$steps.zz.x`: there is no step 'zz' (steps: a, b, c, d, e)",
    ];
    for (got, want) in errors.iter().zip(expected.iter()) {
        assert_eq!(got, want, "{errors:#?}");
    }
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
}

#[test]
fn views_missing_required_arguments_are_load_errors() {
    let view = "[step.a]\noperation = \"svc.Echo\"\nargs = { tags = [\"x\"] }\n";
    assert_eq!(
        load_errors(&[("v", view)]),
        [
            "views/v.toml#/step/a/args:1:1: error[view-argument]: `step.a.args`: operation svc.Echo needs argument 'id' (path parameter)",
            "views/v.toml#/step/a/args:1:1: error[view-argument]: `step.a.args`: operation svc.Echo needs argument 'limit' (query parameter)",
        ]
    );
}

#[tokio::test]
async fn views_the_demo_home_screen_combines_three_backends() {
    let free = "127.0.0.1:0".parse().unwrap();
    let demo = junction_demo::start(free, free).await.unwrap();
    let (reply, _) = get_view(&demo.server, "home?employee=e1").await;
    assert_ok(&reply);
    assert_eq!(reply.header("x-junction-partial"), None);
    let body = reply.json();
    assert_eq!(body["employee"]["name"], "Ada Lovelace");
    assert_eq!(body["manager"], "Grace Hopper");
    assert_eq!(body["news"].as_array().unwrap().len(), 3);
    assert_eq!(
        body["open_cases"],
        json!([
            {"id": 998, "title": "Laptop will not boot", "priority": "high", "status": "open"},
            {"id": 999, "title": "Access to the finance share", "priority": "normal", "status": "pending"}
        ])
    );
    assert_eq!(body["unavailable"], json!([]));
    let listed = fetch(format!("{}/api/v1/views", demo.server.admin_url()))
        .await
        .json();
    assert_eq!(listed["views"][0]["name"], "home");
    assert_eq!(listed["views"][0]["inputs"][0]["name"], "employee");
    assert_eq!(
        listed["views"][0]["steps"][0],
        json!(["profile", "directory.GetEmployee"])
    );
    let (reply, _) = get_view(&demo.server, "home?employee=x9&news=0").await;
    assert_eq!(
        reply.problem(400, "invalid-request")["errors"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (reply, _) = get_view(&demo.server, "home?employee=e77").await;
    // The profile lookup found nothing: the caller asked for an employee who is not there.
    let problem = reply.problem(404, "not-found");
    assert_eq!(
        problem["detail"],
        "view 'home': required step 'profile' (directory.GetEmployee) failed: the backend answered 404 Not Found"
    );
}

// ------------------------------------------------------------------------ cache

/// Two steps over the counted `item` endpoint, keyed by inputs `a` and `b` (default 1).
const CACHED: &str = r#"
[input.a]
type = "string"
required = true
[input.b]
type = "integer"
default = 1
[step.one]
operation = "svc.GetItem"
args = { id = "$inputs.a" }
[step.two]
operation = "svc.Echo"
args = { id = "$inputs.a", limit = "$inputs.b" }
"#;

async fn post_view(server: &RunningServer, name: &str, inputs: Value) -> Reply {
    collect(
        client()
            .post(format!("{}/views/{name}", server.data_url()))
            .json(&inputs)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn views_cache_hits_the_same_inputs_in_any_order_and_misses_other_inputs() {
    let (server, gauge) = start_with(
        &[("cached", CACHED), ("both", CACHED), ("plain", CACHED)],
        "[view.cached.cache]\nttl = \"60s\"\n[view.both.cache]\nmethods = [\"GET\", \"POST\"]\n",
    )
    .await;
    let (first, _) = get_view(&server, "cached?a=x&b=2").await;
    assert_ok(&first);
    assert_eq!(x_cache(&first), "MISS");
    assert_eq!(first.header("age"), None);
    let (second, _) = get_view(&server, "cached?b=2&a=x").await;
    assert_ok(&second);
    assert_eq!(x_cache(&second), "HIT");
    assert!(second.header("age").is_some(), "{:?}", second.headers);
    assert_eq!(second.header("content-type"), Some("application/json"));
    assert_eq!(second.json(), first.json());
    assert_eq!(
        (gauge.seen("/api/item/x"), gauge.seen("/api/echo/x")),
        (1, 1)
    );

    // Other inputs, another entry; a left-out input and its default share one.
    let (other, _) = get_view(&server, "cached?a=y&b=2").await;
    assert_eq!(x_cache(&other), "MISS");
    assert_eq!(other.json()["one"]["id"], "y");
    assert_eq!(x_cache(&get_view(&server, "cached?a=x").await.0), "MISS");
    assert_eq!(x_cache(&get_view(&server, "cached?a=x&b=1").await.0), "HIT");
    assert_eq!(gauge.seen("/api/item/x"), 2);

    // POST is cached only when the policy lists it, keyed by the same bound inputs.
    let posted = post_view(&server, "cached", json!({"a": "x", "b": 2})).await;
    assert_ok(&posted);
    assert_eq!(x_cache(&posted), "(none)");
    assert_eq!(x_cache(&get_view(&server, "both?a=z&b=2").await.0), "MISS");
    let posted = post_view(&server, "both", json!({"b": 2, "a": "z"})).await;
    assert_eq!(x_cache(&posted), "HIT");
    // A view without a cache section is not cached.
    assert_eq!(x_cache(&get_view(&server, "plain?a=x").await.0), "(none)");
    let status = admin(&server, reqwest::Method::GET, "/api/v1/traffic").await;
    assert_eq!(status.json()["cache"]["hits"], 3, "{}", status.json());
}

#[tokio::test]
async fn views_cache_stores_neither_partial_answers_nor_failures() {
    let partial = r#"
[step.ok]
operation = "svc.GetItem"
args = { id = "p" }
[step.broken]
operation = "svc.Fail"
optional = true
"#;
    let failing = "[step.broken]\noperation = \"svc.Fail\"\n";
    let flaky = "[step.item]\noperation = \"svc.GetItem\"\nargs = { id = \"f\" }\n";
    let (server, gauge) = start_with(
        &[("partial", partial), ("failing", failing), ("flaky", flaky)],
        "[view.partial.cache]\nhonour_cache_control = false\n[view.failing.cache]\n\
         [view.flaky.cache]\nttl = \"1s\"\nstale_if_error = \"60s\"\n",
    )
    .await;
    for _ in 0..2 {
        let (reply, _) = get_view(&server, "partial").await;
        assert_ok(&reply);
        assert_eq!(reply.header("x-junction-partial"), Some("broken"));
        assert_eq!(x_cache(&reply), "MISS", "a partial answer is never a hit");
    }
    assert_eq!(gauge.seen("/api/item/p"), 2);
    for _ in 0..2 {
        let (reply, _) = get_view(&server, "failing").await;
        reply.problem(502, "view-step-failed");
    }
    assert_eq!(gauge.seen("/api/fail"), 4);

    // A failed view within stale-if-error is answered with the old entry.
    let (fresh, _) = get_view(&server, "flaky").await;
    assert_eq!(x_cache(&fresh), "MISS");
    gauge.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (stale, _) = get_view(&server, "flaky").await;
    assert_ok(&stale);
    assert_eq!(x_cache(&stale), "STALE");
    assert_eq!(stale.json(), fresh.json());
    assert_eq!(gauge.seen("/api/item/f"), 2);
}

#[tokio::test]
async fn views_cache_serves_stale_while_one_background_run_refreshes() {
    let (server, gauge) = start_with(
        &[("cached", CACHED)],
        "[view.cached.cache]\nttl = \"1s\"\nstale_while_revalidate = \"60s\"\n",
    )
    .await;
    assert_eq!(x_cache(&get_view(&server, "cached?a=s").await.0), "MISS");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (stale, _) = get_view(&server, "cached?a=s").await;
    assert_ok(&stale);
    assert_eq!(x_cache(&stale), "STALE");
    // The refresh runs the view again, once, after the stale answer went out; until it
    // lands, requests get the stale entry without starting another.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (reply, _) = get_view(&server, "cached?a=s").await;
        match x_cache(&reply) {
            "HIT" => break,
            "STALE" => assert!(Instant::now() < deadline, "no background refresh landed"),
            other => panic!("{other}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        (gauge.seen("/api/item/s"), gauge.seen("/api/echo/s")),
        (2, 2)
    );
}

#[tokio::test]
async fn views_cache_20_concurrent_misses_call_each_step_once() {
    let slow = r#"
[input.t]
type = "string"
[step.slow]
operation = "svc.Sleep"
args = { ms = 300, tag = "$inputs.t" }
[step.item]
operation = "svc.GetItem"
args = { id = "$inputs.t" }
"#;
    let (server, gauge) = start_with(&[("slow", slow)], "[view.slow.cache]\n").await;
    let server = Arc::new(server);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let server = server.clone();
            tokio::spawn(async move { get_view(&server, "slow?t=z").await.0 })
        })
        .collect();
    let mut bodies = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_ok(&reply);
        // A request that reached the gateway after the leader landed (a loaded machine)
        // is a hit: either way the steps ran once.
        assert!(matches!(x_cache(&reply), "MISS" | "HIT"), "{reply:?}");
        bodies.push(reply.json());
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    assert_eq!(gauge.seen("/api/sleep/300"), 1);
    assert_eq!(gauge.seen("/api/item/z"), 1);
    let cache = &admin(&server, reqwest::Method::GET, "/api/v1/traffic")
        .await
        .json()["cache"];
    let shared = cache["coalesced"].as_u64().unwrap() + cache["hits"].as_u64().unwrap();
    assert_eq!(shared, 19, "{cache}");
}

#[tokio::test]
async fn views_cache_purges_by_view_and_purging_a_connector_leaves_views_alone() {
    let (server, _) = start_with(
        &[("cached", CACHED)],
        "[view.cached.cache]\n[connector.svc.operation.GetItem.cache]\n",
    )
    .await;
    let purge = |query: &'static str| {
        let server = &server;
        async move {
            admin(
                server,
                reqwest::Method::DELETE,
                &format!("/api/v1/cache?{query}"),
            )
            .await
        }
    };
    for a in ["x", "y"] {
        assert_eq!(
            x_cache(&get_view(&server, &format!("cached?a={a}")).await.0),
            "MISS"
        );
    }
    // The step's own entries (svc.GetItem is cached too) go with the connector …
    let connector = purge("connector=svc").await;
    assert_eq!(connector.status, 200, "{connector:?}");
    assert_eq!(connector.json()["purged"], 2);
    // … the view's stay.
    assert_eq!(x_cache(&get_view(&server, "cached?a=x").await.0), "HIT");

    let one = purge("view=cached&prefix=input.a%3Dx").await;
    assert_eq!(
        one.json(),
        json!({"purged": 1, "prefix": "@views/cached/input.a=x"})
    );
    assert_eq!(x_cache(&get_view(&server, "cached?a=x").await.0), "MISS");
    assert_eq!(x_cache(&get_view(&server, "cached?a=y").await.0), "HIT");
    let all = purge("view=cached").await;
    assert_eq!(all.json(), json!({"purged": 2, "prefix": "@views/cached/"}));
    assert_eq!(x_cache(&get_view(&server, "cached?a=y").await.0), "MISS");

    purge("view=cached&connector=svc")
        .await
        .problem(404, "not-found");
    let unknown = purge("view=nope").await;
    assert_eq!(
        unknown.problem(404, "not-found")["detail"],
        "there is no view named 'nope'"
    );
}

#[test]
fn views_cache_sections_for_unknown_views_and_bad_values_are_load_errors() {
    let mut config = config("[view.nope.cache]\nttl = \"10s\"\n");
    config.views = sources(&[("cached", CACHED)]);
    let errors: Vec<String> = match Gateway::compile(&config, &[svc(closed_port())]) {
        Ok(_) => panic!("the gateway compiled"),
        Err(diagnostics) => diagnostics.errors().map(ToString::to_string).collect(),
    };
    assert_eq!(
        errors,
        [
            "junction.toml#/view/nope:3:1: error[unknown-view]: [view.nope] configures a view that does not exist (loaded: cached)"
        ]
    );

    let parse = |text: &str| {
        junction_runtime::Config::parse(
            text,
            std::path::Path::new("junction.toml"),
            std::path::Path::new("."),
            &|_| None,
        )
        .unwrap_err()
        .to_string()
    };
    assert_eq!(
        parse("[view.home.cache]\nttl = \"soon\"\nmethods = [\"DELETE\"]\n"),
        "junction.toml:3:12: `view.home.cache.methods`: `DELETE` cannot be cached; cached methods are GET, HEAD and POST (read-only queries)\n\
         junction.toml:2:7: `view.home.cache.ttl`: `soon` is not a duration; write e.g. \"5s\" or \"250ms\""
    );
    let unknown = parse("[view.home]\ntimeout = \"1s\"\n");
    assert!(
        unknown.starts_with("junction.toml:2:1: unknown field `timeout`"),
        "{unknown}"
    );
}

/// A view's steps run as its caller: under `[rate_limit] per_client`, each step counts
/// against the address that called the view (not against one anonymous caller that every
/// address would share), and the refusal a step meets is the view's answer: `429` with
/// `Retry-After`, naming the caller's limit.
#[tokio::test]
async fn views_steps_count_against_the_callers_own_limit() {
    let pair = r#"
[step.a]
operation = "svc.GetItem"
args = { id = "a" }
[step.b]
operation = "svc.GetItem"
args = { id = "b" }
"#;
    let (server, _) = start_with(&[("pair", pair)], "[rate_limit]\nper_client = \"6/min\"\n").await;
    junction_runtime::install_crypto_provider();
    let from = |address: &str| {
        reqwest::Client::builder()
            .local_address(address.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let (one, two) = (from("127.0.0.1"), from("127.0.0.2"));
    let view = format!("{}/views/pair", server.data_url());
    let call = |client: &reqwest::Client| {
        let request = client.get(&view).send();
        async move { collect(request.await.unwrap()).await }
    };
    // 127.0.0.1 spends 4 of its 6 (two steps a call), 127.0.0.2 2 of its own 6.
    for _ in 0..2 {
        assert_ok(&call(&one).await);
    }
    assert_ok(&call(&two).await);
    // The third call of 127.0.0.1 takes its last two: still answered.
    assert_ok(&call(&one).await);
    // Then its limit is spent: the view answers what its step met.
    let refused = call(&one).await;
    let problem = refused.problem(429, "rate-limited");
    assert!(refused.header("retry-after").is_some(), "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("the limit per client (127.0.0.1)"),
        "{problem}"
    );
    // The other address still has its own allowance.
    assert_ok(&call(&two).await);
    server.shutdown().await;
}
