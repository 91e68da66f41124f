//! The admin plane, on its own listener: a small management API under `/api/v1`.
//!
//! - `GET /api/v1/openapi.json` — this API's OpenAPI 3.1 document.
//! - `GET /api/v1/connectors` — every connector with its operations.
//! - `GET /api/v1/connectors/{name}` — one connector.
//! - `GET /api/v1/connectors/{name}/operations/{id}` — one operation with its parameters
//!   (types, formats, enums, defaults, `x-ms-summary`, `x-ms-visibility`) and body schema.
//! - `POST /api/v1/connectors/{name}/operations/{id}/try` — calls it through the gateway
//!   in-process ([`crate::try_call`]): status, headers, body (secrets redacted), timing.
//! - `GET /api/v1/connectors/{name}/connection-parameters` — what a connection takes.
//! - `GET /api/v1/views` — every view with its inputs, steps and the steps' dependencies.
//! - `GET /api/v1/diagnostics` — the warnings the configuration was loaded with.
//! - `GET /console/` — the web console ([`crate::console`]), served without the token.
//! - `GET /metrics` — Prometheus text: request counters and latency histograms, and the
//!   traffic counters below (docs/telemetry.md).
//! - `GET /api/v1/traffic` — cache, rate limit, breaker, concurrency and retry counters,
//!   and the Redis link's health.
//! - `DELETE /api/v1/cache?connector=NAME&operation=ID&view=NAME&prefix=TEXT` — purges
//!   cache entries: of a connector, of one of its operations, of a view (not with
//!   `connector`: a view's entries are its own, and purging a connector leaves them), or
//!   whose key starts with a prefix (after the connector's, operation's or view's own
//!   prefix when they are given too). Answers `{"purged": N, "prefix": "…"}`.
//!
//! With `[store]` configured (see [`crate::access`]):
//! - `GET|POST /api/v1/connections`, `GET|DELETE /api/v1/connections/{id}`,
//!   `POST /api/v1/connections/{id}/test`, `POST /api/v1/connections/{id}/login` (an OAuth
//!   login URL) — connections, always shown redacted;
//! - `GET|POST /api/v1/clients`, `GET|DELETE /api/v1/clients/{id}`,
//!   `PUT /api/v1/clients/{id}/grants` — gateway clients; an API key is shown once, in the
//!   answer that creates it;
//! - `GET /api/v1/audit?actor=&action=&target=&since=&limit=` — the audit log, newest first.
//!
//! `[admin] token` makes every `/api/v1` call need `Authorization: Bearer TOKEN`. The
//! `X-Junction-Actor` header names who acts, for the audit log (`admin:NAME`).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRef, Path, Query, Request, State};
use axum::http::{HeaderMap, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use http::StatusCode;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use junction_runtime::{BodyTimedOut, ClientBody, Error, ErrorKind, Secret, SharedGateway};
use junction_store::{AuditQuery, ExposeSecret, Grant, NewClient, NewConnection};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use crate::access::{Access, store_error};
use crate::catalog::{self, Catalog};
use crate::listener::Plane;
use crate::try_call::{self, TryInput};
use crate::{console, problem, triggers};

/// The value of a `Result`, or an early problem response for `$request`.
macro_rules! attempt {
    ($request:expr, $body:expr) => {
        match $body {
            Ok(response) => response,
            Err(error) => return fail($request, error),
        }
    };
}

/// What the admin handlers share.
#[derive(Debug, Clone)]
struct AdminState {
    gateway: SharedGateway,
    access: Option<Arc<Access>>,
    catalog: Arc<Catalog>,
}

impl FromRef<AdminState> for SharedGateway {
    fn from_ref(state: &AdminState) -> SharedGateway {
        state.gateway.clone()
    }
}

/// The admin-plane router over `gateway`, without a store (and with an empty catalog: no
/// operation details, no diagnostics).
pub fn admin_router(gateway: SharedGateway) -> Router {
    admin_router_with(gateway, None, None, Arc::default())
}

/// The admin-plane router over `gateway`, what was loaded (`catalog`) and, when
/// configured, the store; `token` protects the API. The console's static shell is served
/// without the token: it asks for it, and every call it makes needs it.
pub fn admin_router_with(
    gateway: SharedGateway,
    access: Option<Arc<Access>>,
    token: Option<Secret>,
    catalog: Arc<Catalog>,
) -> Router {
    let console = Router::new()
        .route("/console", get(console::redirect))
        .route("/console/", get(console::index))
        .route("/console/{asset}", get(console::asset));
    let router = Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/connectors", get(list))
        .route("/api/v1/connectors/{name}", get(one))
        .route(
            "/api/v1/connectors/{name}/connection-parameters",
            get(connection_parameters),
        )
        .route("/api/v1/connectors/{name}/operations/{id}", get(operation))
        .route(
            "/api/v1/connectors/{name}/operations/{id}/try",
            post(try_operation),
        )
        .route("/api/v1/views", get(views))
        .route("/api/v1/diagnostics", get(diagnostics))
        .route("/api/v1/traffic", get(traffic))
        .route("/api/v1/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/api/v1/cache", delete(purge))
        .route(
            "/api/v1/connections",
            get(connections).post(create_connection),
        )
        .route(
            "/api/v1/connections/{id}",
            get(connection).delete(delete_connection),
        )
        .route("/api/v1/connections/{id}/test", post(test_connection))
        .route("/api/v1/connections/{id}/login", post(login))
        .route("/api/v1/clients", get(clients).post(create_client))
        .route("/api/v1/clients/{id}", get(client).delete(delete_client))
        .route("/api/v1/clients/{id}/grants", put(set_grants))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/triggers", get(triggers))
        .route(
            "/api/v1/triggers/{name}",
            put(declare_trigger).delete(remove_trigger),
        )
        .route("/api/v1/triggers/{name}/{action}", post(trigger_action))
        .route("/api/v1/agents", get(agents))
        .route("/api/v1/agents/tokens", post(create_agent_token))
        .route("/api/v1/agents/{id}", delete(revoke_agent))
        .fallback(not_found)
        .with_state(AdminState {
            gateway,
            access,
            catalog,
        });
    let tokenless = token.is_none();
    let router = match token {
        Some(token) => router.layer(middleware::from_fn(move |request: Request, next: Next| {
            let token = token.clone();
            async move { require_token(&token, request, next).await }
        })),
        None => router,
    };
    console
        .merge(router)
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            same_site(tokenless, request, next)
        }))
        .layer(middleware::from_fn(problems_only))
}

/// The admin plane as a listener serves it ([`crate::listener`]): the router, with request
/// bodies bounded by `limits.max_body_bytes` (a larger declared length is refused before
/// anything is read, and a body that grows past it fails to read: `413`).
#[derive(Debug, Clone)]
pub(crate) struct AdminPlane {
    router: Router,
    max_body_bytes: u64,
}

impl AdminPlane {
    pub(crate) fn new(router: Router, max_body_bytes: u64) -> Self {
        AdminPlane {
            router,
            max_body_bytes,
        }
    }
}

impl Plane for AdminPlane {
    type Body = Body;

    fn call(
        &self,
        request: http::Request<ClientBody<Incoming>>,
        _peer: std::net::SocketAddr,
    ) -> impl Future<Output = Response> + Send {
        let router = self.router.clone();
        let limit = self.max_body_bytes;
        async move {
            let declared = request
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if declared.is_some_and(|length| length > limit) {
                let request = request.map(|_| Body::empty());
                return fail(&request, too_large(limit));
            }
            let cap = usize::try_from(limit).unwrap_or(usize::MAX);
            let request = request.map(|body| Body::new(Limited::new(body, cap)));
            match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    }

    fn local(response: Response) -> Response {
        response
    }
}

fn too_large(limit: u64) -> Error {
    Error::new(
        ErrorKind::PayloadTooLarge,
        format!(
            "the admin API takes request bodies of at most {limit} bytes (limits.max_body_bytes)"
        ),
    )
}

/// Makes every error answer of the admin listener problem+json: the framework's own
/// rejections (a query string or path it cannot read, a method a route does not take, a
/// body it refuses) arrive as plain text or empty, and leave through [`problem`] like the
/// handlers' errors, keeping their status, their message and `Allow`.
async fn problems_only(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let request_id = problem::request_id(request.headers().get(problem::REQUEST_ID));
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(problem::PROBLEM_JSON.as_bytes()));
    if status.as_u16() < 400 || is_problem {
        return response;
    }
    let (head, body) = response.into_parts();
    // The framework's messages are short; a longer body is not one of them.
    let text = match Limited::new(body, 4096).collect().await {
        Ok(bytes) => String::from_utf8_lossy(&bytes.to_bytes()).trim().to_owned(),
        Err(_) => String::new(),
    };
    let error = problem::rejection(status, &text, &head.headers, (&method, &path));
    problem::response(&error, &path, &request_id)
}

/// Refuses what a web page of another site could make a browser send to the admin
/// listener: a change (any method but GET/HEAD/OPTIONS) whose `Origin` is not the listener
/// itself, and, without `[admin] token`, any request addressed by a host name other than
/// `localhost` (DNS rebinding points a site's name at 127.0.0.1, making it "same origin").
async fn same_site(tokenless: bool, request: Request, next: Next) -> Response {
    // HTTP/1.1 names the listener in `Host` (the listener refuses a request without one);
    // HTTP/2 in the request's authority.
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .map(str::to_owned);
    if tokenless {
        let name = host.as_deref().map(|host| match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        });
        let name = name.map(|n| n.trim_start_matches('[').trim_end_matches(']'));
        let local = name.is_some_and(|name| {
            name.parse::<std::net::IpAddr>().is_ok()
                || name.eq_ignore_ascii_case("localhost")
                || name.to_ascii_lowercase().ends_with(".localhost")
        });
        if !local {
            let error = Error::new(
                ErrorKind::Forbidden,
                format!(
                    "without an `[admin] token` the admin listener answers only requests addressed to an IP address or localhost, not {} (a guard against DNS rebinding); set a token to reach it by name",
                    name.map_or_else(
                        || "a request that names no host".to_owned(),
                        |n| format!("'{n}'")
                    )
                ),
            );
            return fail(&request, error);
        }
    }
    let safe = matches!(
        *request.method(),
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    );
    if !safe && let Some(origin) = request.headers().get(http::header::ORIGIN) {
        // The listener speaks plain HTTP: its own pages' origin is `http://` and its host.
        let same = match (origin.to_str().ok(), &host) {
            (Some(origin), Some(host)) => origin
                .strip_prefix("http://")
                .is_some_and(|authority| authority.eq_ignore_ascii_case(host)),
            _ => false,
        };
        if !same {
            let error = Error::new(
                ErrorKind::Forbidden,
                "the admin API refuses changes sent by a page of another origin",
            );
            return fail(&request, error);
        }
    }
    next.run(request).await
}

async fn require_token(token: &Secret, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let matches = given.is_some_and(|given| {
        use sha2::Digest;
        sha2::Sha256::digest(given.as_bytes()) == sha2::Sha256::digest(token.expose().as_bytes())
    });
    if matches {
        next.run(request).await
    } else {
        fail(
            &request,
            Error::new(
                ErrorKind::Unauthenticated,
                "the admin API needs `Authorization: Bearer` with the `[admin] token`",
            ),
        )
    }
}

fn fail(request: &Request, error: Error) -> Response {
    problem::response(
        &error,
        request.uri().path(),
        &problem::request_id(request.headers().get(problem::REQUEST_ID)),
    )
}

/// Who acts: `admin:` and the `X-Junction-Actor` header when it is plain, else `admin`.
fn actor(request: &Request) -> String {
    match request
        .headers()
        .get("x-junction-actor")
        .and_then(|v| v.to_str().ok())
    {
        Some(name)
            if !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@:".contains(c)) =>
        {
            format!("admin:{name}")
        }
        _ => "admin".to_owned(),
    }
}

async fn list(State(state): State<AdminState>) -> Response {
    axum::Json(json!({"connectors": state.gateway.load().connectors()})).into_response()
}

async fn views(State(gateway): State<SharedGateway>) -> Response {
    axum::Json(json!({"views": gateway.load().views()})).into_response()
}

async fn one(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    match state.gateway.load().connector(&name) {
        Some(connector) => axum::Json(connector).into_response(),
        None => fail(
            &request,
            Error::new(
                ErrorKind::NotFound,
                format!("there is no connector named '{name}'"),
            ),
        ),
    }
}

/// `GET /api/v1/connectors/{name}/operations/{id}`: one operation with its parameters.
async fn operation(
    State(state): State<AdminState>,
    Path((name, id)): Path<(String, String)>,
    request: Request,
) -> Response {
    let connector = attempt!(&request, model(&state, &name));
    match connector.operation(&id) {
        Some(op) => axum::Json(catalog::operation_detail(connector, op)).into_response(),
        None => fail(
            &request,
            Error::new(
                ErrorKind::NotFound,
                format!("connector '{name}' has no operation '{id}'"),
            ),
        ),
    }
}

/// `GET /api/v1/connectors/{name}/connection-parameters`.
async fn connection_parameters(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let connector = attempt!(&request, model(&state, &name));
    axum::Json(catalog::connection_parameters(connector)).into_response()
}

/// The loaded model of connector `name`, or a 404.
fn model<'s>(state: &'s AdminState, name: &str) -> Result<&'s junction_model::Connector, Error> {
    state.catalog.connector(name).ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!("there is no connector named '{name}'"),
        )
    })
}

/// `POST /api/v1/connectors/{name}/operations/{id}/try`: one call through the gateway.
async fn try_operation(
    State(state): State<AdminState>,
    Path((name, id)): Path<(String, String)>,
    request: Request,
) -> Response {
    let who = actor(&request);
    let (head, body) = request.into_parts();
    let head_request = Request::from_parts(head.clone(), Body::empty());
    // JSON only: a page of another site cannot send that without the browser asking this
    // API first (CORS), so it cannot make the gateway call a backend.
    let is_json = head
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
    if !is_json {
        return fail(
            &head_request,
            Error::new(
                ErrorKind::UnsupportedMediaType,
                "send the input as `Content-Type: application/json` (`{}` for none)",
            ),
        );
    }
    let input = attempt!(
        &head_request,
        json_body::<TryInput>(Request::from_parts(head, body)).await
    );
    let place = try_call::Place {
        gateway: &state.gateway,
        catalog: &state.catalog,
        access: state.access.as_ref(),
    };
    let answer = attempt!(
        &head_request,
        try_call::run(place, &name, &id, input, &who).await
    );
    let mut response = axum::Json(answer).into_response();
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

/// `GET /api/v1/diagnostics`: the warnings the configuration was compiled with.
async fn diagnostics(State(state): State<AdminState>) -> Response {
    axum::Json(state.catalog.diagnostics()).into_response()
}

async fn traffic(State(gateway): State<SharedGateway>) -> Response {
    axum::Json(gateway.load().traffic_status()).into_response()
}

/// How long a scrape waits for the store's answer before calling it down.
const STORE_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Appends the store's series: up, the time of a `SELECT 1`, and its connection pool.
/// One series of [`trigger_metrics`]: name, type, help, and a value per trigger.
type Series<'a> = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(&'a str, f64)>,
);

/// The triggers' series, read from the store (so every replica shows the same figures):
/// polls, events, deliveries by state, retries, and how long the oldest undelivered event
/// has waited.
async fn trigger_metrics(out: &mut String, access: &Access) {
    use junction_runtime::telemetry::write_labelled;
    let store = access.vault.store();
    let (Ok(states), Ok(stats)) = (store.triggers().await, store.trigger_stats().await) else {
        return;
    };
    let now = junction_store::now_ms();
    let by_state = |pick: fn(&junction_store::TriggerRow) -> f64| -> Vec<(&str, f64)> {
        states.iter().map(|s| (s.name.as_str(), pick(s))).collect()
    };
    let by_stats = |pick: fn(&junction_store::TriggerStats) -> f64| -> Vec<(&str, f64)> {
        stats
            .iter()
            .map(|s| (s.trigger.as_str(), pick(s)))
            .collect()
    };
    let series: [Series<'_>; 8] = [
        (
            "junction_trigger_polls_total",
            "counter",
            "Polls a trigger made (webhook triggers: subscription steps).",
            by_state(|s| s.polls as f64),
        ),
        (
            "junction_trigger_failing",
            "gauge",
            "1 while a trigger's last poll failed.",
            by_state(|s| f64::from(u8::from(s.last_error.is_some()))),
        ),
        (
            "junction_trigger_paused",
            "gauge",
            "1 while a trigger is paused.",
            by_state(|s| f64::from(u8::from(s.paused))),
        ),
        (
            "junction_trigger_events_total",
            "counter",
            "Events a trigger stored.",
            by_stats(|s| s.events as f64),
        ),
        (
            "junction_trigger_deliveries_pending",
            "gauge",
            "Deliveries waiting for their webhook.",
            by_stats(|s| s.pending as f64),
        ),
        (
            "junction_trigger_deliveries_delivered_total",
            "counter",
            "Deliveries their webhook accepted.",
            by_stats(|s| s.delivered as f64),
        ),
        (
            "junction_trigger_deliveries_dead",
            "gauge",
            "Deliveries in the dead-letter list.",
            by_stats(|s| s.dead as f64),
        ),
        (
            "junction_trigger_delivery_retries_total",
            "counter",
            "Delivery attempts beyond the first.",
            by_stats(|s| s.retries as f64),
        ),
    ];
    for (name, kind, help, samples) in &series {
        write_labelled(out, (name, kind, help), "trigger", samples);
    }
    let lag: Vec<(&str, f64)> = stats
        .iter()
        .map(|s| {
            let waited = s.oldest_pending.map_or(0, |at| (now - at).max(0));
            (s.trigger.as_str(), waited as f64 / 1000.0)
        })
        .collect();
    write_labelled(
        out,
        (
            "junction_trigger_lag_seconds",
            "gauge",
            "How long the oldest event not yet delivered to every webhook has waited.",
        ),
        "trigger",
        &lag,
    );
}

async fn store_health(out: &mut String, access: &Access) {
    use junction_runtime::telemetry::write_series;
    let store = access.vault.store();
    let started = std::time::Instant::now();
    let up = matches!(
        tokio::time::timeout(STORE_PING_TIMEOUT, store.ping()).await,
        Ok(Ok(()))
    );
    if !up {
        tracing::warn!(
            backend = store.backend(),
            "the store did not answer a health check"
        );
    }
    let (size, idle) = store.pool_size();
    let series: [(&str, &str, &str, f64); 4] = [
        (
            "junction_store_up",
            "gauge",
            "1 when the store answered a query during this scrape.",
            f64::from(u8::from(up)),
        ),
        (
            "junction_store_ping_seconds",
            "gauge",
            "Time the store took to answer that query (or the time waited).",
            started.elapsed().as_secs_f64(),
        ),
        (
            "junction_store_pool_connections",
            "gauge",
            "Database connections the store holds open.",
            f64::from(size),
        ),
        (
            "junction_store_pool_idle_connections",
            "gauge",
            "Of those, the idle ones.",
            idle as f64,
        ),
    ];
    for (name, kind, help, value) in series {
        write_series(out, name, kind, help, value);
    }
}

/// The outbound agents connected to this gateway, by pool (none without agents).
fn agent_metrics(out: &mut String, links: &[junction_runtime::LinkInfo]) {
    use junction_runtime::telemetry::write_labelled;
    let mut pools: std::collections::BTreeMap<&str, (f64, f64, f64)> = Default::default();
    for link in links {
        let pool = pools.entry(link.pool.as_str()).or_default();
        pool.0 += 1.0;
        pool.1 += link.in_flight as f64;
        pool.2 += link.served as f64;
    }
    let series = |pick: fn(&(f64, f64, f64)) -> f64| -> Vec<(&str, f64)> {
        pools.iter().map(|(pool, f)| (*pool, pick(f))).collect()
    };
    write_labelled(
        out,
        (
            "junction_agent_connections",
            "gauge",
            "Outbound agents connected to this gateway.",
        ),
        "pool",
        &series(|f| f.0),
    );
    write_labelled(
        out,
        (
            "junction_agent_requests_in_flight",
            "gauge",
            "Requests sent through the pool's agents and not answered yet.",
        ),
        "pool",
        &series(|f| f.1),
    );
    write_labelled(
        out,
        (
            "junction_agent_requests_total",
            "counter",
            "Requests answered through the pool's agents connected now (since each connected).",
        ),
        "pool",
        &series(|f| f.2),
    );
}

/// `GET /api/v1/stats`: every operation's and view's last hour, by minute.
async fn stats(State(gateway): State<SharedGateway>) -> Response {
    axum::Json(gateway.load().metrics().stats()).into_response()
}

/// `GET /metrics`: the Prometheus text exposition, with the store's health when there is
/// one.
async fn metrics(State(state): State<AdminState>) -> Response {
    let table = state.gateway.load();
    let mut text = junction_runtime::telemetry::render(table.metrics(), &table.traffic_status());
    agent_metrics(&mut text, &table.agents().links());
    if let Some(access) = &state.access {
        store_health(&mut text, access).await;
        trigger_metrics(&mut text, access).await;
    }
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The query of `DELETE /api/v1/cache`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeQuery {
    connector: Option<String>,
    operation: Option<String>,
    view: Option<String>,
    prefix: Option<String>,
}

async fn purge(
    State(gateway): State<SharedGateway>,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<PurgeQuery>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => {
            let error = Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "{}; the parameters are `connector`, `operation`, `view` and `prefix`",
                    rejection.body_text()
                ),
            );
            return failed(&error, &uri, &headers);
        }
    };
    let table = gateway.load();
    let result = table
        .purge_cache(
            query.connector.as_deref(),
            query.operation.as_deref(),
            query.view.as_deref(),
            query.prefix.as_deref(),
        )
        .await;
    match result {
        Ok((prefix, purged)) => {
            axum::Json(json!({"purged": purged, "prefix": prefix})).into_response()
        }
        Err(error) => failed(&error, &uri, &headers),
    }
}

/// This API's OpenAPI 3.1 document (`admin-openapi.json`; the `admin` integration test
/// checks that it names every route above and passes a validator).
pub const OPENAPI: &str = include_str!("admin-openapi.json");

/// The admin API's document: [`OPENAPI`], with the body of a new connection described for
/// the connectors this gateway loaded.
async fn openapi(State(state): State<AdminState>) -> Response {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let mut document = DOCUMENT
        .get_or_init(|| serde_json::from_str(OPENAPI).unwrap_or(Value::Null))
        .clone();
    if let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.insert(
            "NewConnection".into(),
            state.catalog.new_connection_schema(),
        );
    }
    axum::Json(document).into_response()
}

async fn not_found(request: Request) -> Response {
    let path = request.uri().path().to_owned();
    fail(
        &request,
        Error::new(ErrorKind::NotFound, format!("nothing is served at {path}")),
    )
}

fn failed(error: &Error, uri: &Uri, headers: &HeaderMap) -> Response {
    problem::response(
        error,
        uri.path(),
        &problem::request_id(headers.get(problem::REQUEST_ID)),
    )
}

/// The store, or a 404 saying none is configured.
fn access(state: &AdminState) -> Result<&Arc<Access>, Error> {
    state.access.as_ref().ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            "no store is configured; add a [store] section to junction.toml",
        )
    })
}

/// Reads a JSON body into `T`.
async fn json_body<T: serde::de::DeserializeOwned>(request: Request) -> Result<T, Error> {
    let bytes = request
        .into_body()
        .collect()
        .await
        .map_err(read_error)?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        // serde's message names the field, never echoes a value.
        Error::new(
            ErrorKind::InvalidRequest,
            format!("the body is not what this call takes: {e}"),
        )
    })
}

/// Why a request body could not be read: too large (`413`), too slow (`408`), or broken.
fn read_error(error: axum::Error) -> Error {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = current {
        if e.is::<LengthLimitError>() {
            return Error::new(
                ErrorKind::PayloadTooLarge,
                "the request body is larger than limits.max_body_bytes",
            );
        }
        if let Some(timed_out) = e.downcast_ref::<BodyTimedOut>() {
            return Error::new(ErrorKind::RequestTimeout, timed_out.to_string());
        }
        current = e.source();
    }
    Error::new(ErrorKind::InvalidRequest, "the body could not be read").with_cause(error)
}

/// A request's head (to answer problems for it) and its JSON body.
async fn split<T: serde::de::DeserializeOwned>(request: Request) -> (Request, Result<T, Error>) {
    let (head, body) = request.into_parts();
    let head_request = Request::from_parts(head.clone(), Body::empty());
    (
        head_request,
        json_body(Request::from_parts(head, body)).await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateConnection {
    connector: String,
    name: String,
    #[serde(default)]
    parameter_set: Option<String>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    values: Map<String, Value>,
}

async fn connections(State(state): State<AdminState>, request: Request) -> Response {
    let access = attempt!(&request, access(&state));
    let list = attempt!(
        &request,
        access.vault.connections().await.map_err(store_error)
    );
    axum::Json(json!({"connections": list})).into_response()
}

async fn create_connection(State(state): State<AdminState>, request: Request) -> Response {
    let access = attempt!(&request, access(&state)).clone();
    let who = actor(&request);
    let (head_request, input) = split::<CreateConnection>(request).await;
    let input = attempt!(&head_request, input);
    let Some(connector) = access.connector(&input.connector) else {
        return fail(
            &head_request,
            Error::new(
                ErrorKind::Conflict,
                format!("there is no connector named '{}'", input.connector),
            ),
        );
    };
    let created = attempt!(
        &head_request,
        access
            .vault
            .create_connection(
                connector,
                NewConnection {
                    name: input.name,
                    parameter_set: input.parameter_set,
                    owner: input.owner,
                    values: input.values,
                },
                &who,
            )
            .await
            .map_err(store_error)
    );
    (StatusCode::CREATED, axum::Json(created)).into_response()
}

async fn connection(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let access = attempt!(&request, access(&state));
    let row = attempt!(
        &request,
        access.vault.find_connection(&id).await.map_err(store_error)
    );
    let info = attempt!(&request, access.vault.info(&row).map_err(store_error));
    axum::Json(info).into_response()
}

async fn delete_connection(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let access = attempt!(&request, access(&state));
    let row = attempt!(
        &request,
        access.vault.find_connection(&id).await.map_err(store_error)
    );
    attempt!(
        &request,
        access
            .vault
            .delete_connection(&row.id, &actor(&request))
            .await
            .map_err(store_error)
    );
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TestInput {
    #[serde(default)]
    operation: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
}

async fn test_connection(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let access = attempt!(&request, access(&state)).clone();
    let who = actor(&request);
    let (head, body) = request.into_parts();
    let head_request = Request::from_parts(head.clone(), Body::empty());
    let has_body = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .is_some_and(|v| v != "0");
    let input: TestInput = if has_body {
        attempt!(
            &head_request,
            json_body(Request::from_parts(head, body)).await
        )
    } else {
        TestInput::default()
    };
    let result = attempt!(
        &head_request,
        crate::test_call::run(
            &state.gateway,
            &access,
            &id,
            input.operation,
            &input.parameters,
            &who
        )
        .await
    );
    axum::Json(result).into_response()
}

async fn login(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let access = attempt!(&request, access(&state));
    let answer = attempt!(
        &request,
        crate::oauth::login_url(access, &id, &actor(&request)).await
    );
    axum::Json(answer).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateClient {
    name: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    grants: Vec<GrantInput>,
}

/// A grant as the command line writes it, or as an object.
#[derive(Deserialize)]
#[serde(untagged)]
enum GrantInput {
    Text(String),
    Object(Map<String, Value>),
}

fn grants(input: Vec<GrantInput>) -> Result<Vec<Grant>, Error> {
    input
        .into_iter()
        .map(|g| match g {
            GrantInput::Text(text) => {
                Grant::parse(&text).map_err(|e| Error::new(ErrorKind::InvalidRequest, e))
            }
            GrantInput::Object(object) => grant_object(&object),
        })
        .collect()
}

/// A grant written as an object: `{"connector", "operations"?, "connection"?}` or
/// `{"view"}`, each value of its type (no `null`s), nothing else.
fn grant_object(object: &Map<String, Value>) -> Result<Grant, Error> {
    let invalid = |why: &str| {
        Error::new(
            ErrorKind::InvalidRequest,
            format!(
                "a grant object {why}: write {{\"connector\", \"operations\", \"connection\"}}, {{\"view\"}} or {{\"trigger\"}}"
            ),
        )
    };
    let text = |key: &str| match object.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(invalid(&format!("has a `{key}` that is not a name"))),
    };
    if let Some(key) = object.keys().find(|k| {
        !matches!(
            k.as_str(),
            "connector" | "operations" | "connection" | "view" | "trigger"
        )
    }) {
        return Err(invalid(&format!("has an unknown key `{key}`")));
    }
    let operations = match object.get("operations") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("lists an operation that is not a string"))?,
        Some(_) => return Err(invalid("has `operations` that are not a list")),
    };
    let grant = Grant {
        connector: text("connector")?,
        view: text("view")?,
        trigger: text("trigger")?,
        operations,
        connection: text("connection")?,
    };
    let only_a_name = grant.operations.is_empty() && grant.connection.is_none();
    match (&grant.connector, &grant.view, &grant.trigger) {
        (Some(_), None, None) => Ok(grant),
        (None, Some(_), None) | (None, None, Some(_)) if only_a_name => Ok(grant),
        _ => Err(invalid(
            "names a connector, a view or a trigger, one of them",
        )),
    }
}

/// How many of a trigger's latest events and failing deliveries `GET /api/v1/triggers`
/// shows.
const TRIGGER_RECENT: i64 = 10;

/// `GET /api/v1/triggers`: every trigger, configured or declared through the admin API,
/// with its stored state, its figures, its latest events, its failing deliveries (retried
/// or dead) and the webhooks clients registered.
async fn triggers(State(state): State<AdminState>, request: Request) -> Response {
    let access = attempt!(&request, access(&state));
    let store = access.vault.store();
    let stats = attempt!(&request, store.trigger_stats().await.map_err(store_error));
    // Their definitions without their secrets: nothing here needs them.
    let declared = attempt!(
        &request,
        store.trigger_definitions().await.map_err(store_error)
    );
    // (name, declared where, connector, operation, webhooks)
    let mut all: Vec<(String, &str, Value, Value, Vec<String>)> = Vec::new();
    for (name, trigger) in state.catalog.triggers() {
        let webhooks = trigger.webhooks.keys().cloned().collect();
        all.push((
            name.clone(),
            "config",
            json!(trigger.connector),
            json!(trigger.operation),
            webhooks,
        ));
    }
    for row in &declared {
        let table = attempt!(&request, row.table().map_err(store_error));
        let field = |key: &str| table.get(key).cloned().unwrap_or_default();
        let webhooks = table
            .get("webhook")
            .and_then(Value::as_object)
            .map(|w| w.keys().cloned().collect())
            .unwrap_or_default();
        all.push((
            row.name.clone(),
            "api",
            field("connector"),
            field("operation"),
            webhooks,
        ));
    }
    let mut list = Vec::new();
    for (name, declared, connector, operation, webhooks) in all {
        let name = &name;
        let stored = attempt!(&request, store.trigger(name).await.map_err(store_error));
        let figures = stats.iter().find(|s| &s.trigger == name);
        let total = figures.map_or(0, |s| s.events);
        let recent = attempt!(
            &request,
            store
                .latest_events(name, TRIGGER_RECENT)
                .await
                .map_err(store_error)
        );
        let failing: Vec<_> = attempt!(
            &request,
            store
                .deliveries(&junction_store::DeliveryQuery {
                    trigger: Some(name.clone()),
                    state: None,
                    limit: Some(200),
                })
                .await
                .map_err(store_error)
        )
        .into_iter()
        .filter(|d| d.state == "dead" || (d.state == "pending" && d.attempts > 0))
        .take(usize::try_from(TRIGGER_RECENT).unwrap_or(10))
        .collect();
        let registered = attempt!(&request, store.webhooks(name).await.map_err(store_error));
        let recent: Vec<Value> = recent
            .iter()
            .map(|e| {
                json!({"id": e.id, "created_at": e.created_at, "key": e.key,
                       "payload": serde_json::from_str::<Value>(&e.payload).unwrap_or(Value::Null)})
            })
            .collect();
        list.push(json!({
            "name": name,
            "declared": declared,
            "connector": connector,
            "operation": operation,
            "webhooks": webhooks,
            "registered_webhooks": registered,
            "state": stored,
            "events": total,
            "stats": figures,
            "recent": recent,
            "failing": failing,
        }));
    }
    axum::Json(json!({"triggers": list})).into_response()
}

/// Whether `junction.toml` declares trigger `name`: the admin API does not change it.
fn configured_trigger(state: &AdminState, name: &str) -> Result<(), Error> {
    if state.catalog.triggers().iter().any(|(n, _)| n == name) {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("trigger '{name}' is declared in junction.toml: change it there"),
        ));
    }
    Ok(())
}

/// `PUT /api/v1/triggers/{name}`: declares (or replaces) trigger `name`, its
/// `[trigger.NAME]` section as a JSON object, checked as the section is and against the
/// loaded connectors. Every replica runs it within a second; `201` when new, else `200`.
async fn declare_trigger(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let access = attempt!(&request, access(&state)).clone();
    let who = actor(&request);
    let (head, input) = split::<Map<String, Value>>(request).await;
    let table = attempt!(&head, input);
    attempt!(&head, configured_trigger(&state, &name));
    // What the definition names must exist: 404 otherwise.
    if let (Some(Value::String(connector)), Some(Value::String(operation))) =
        (table.get("connector"), table.get("operation"))
    {
        attempt!(
            &head,
            triggers::trigger_operation(&access, connector, operation)
                .map(drop)
                .map_err(|why| Error::new(ErrorKind::NotFound, why))
        );
    }
    let invalid = |problems| store_error(junction_store::StoreError::Invalid(problems));
    let config = attempt!(
        &head,
        junction_runtime::config::triggers::declared(&name, &table).map_err(invalid)
    );
    if !config.webhooks.is_empty() && access.vault.key().is_none() {
        return fail(
            &head,
            Error::new(
                ErrorKind::Conflict,
                "a trigger's webhook secrets are kept sealed under the store's master key, and none is configured (`[store] key_file`)",
            ),
        );
    }
    attempt!(
        &head,
        triggers::resolve(&access, &name, config)
            .map(drop)
            .map_err(|why| invalid(vec![why]))
    );
    let mut shown = table.clone();
    junction_store::take_webhook_secrets(&mut shown);
    let created = attempt!(
        &head,
        access
            .vault
            .declare_trigger(&name, table, &who)
            .await
            .map_err(store_error)
    );
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (
        status,
        axum::Json(json!({"name": name, "declared": "api", "definition": Value::Object(shown)})),
    )
        .into_response()
}

/// `DELETE /api/v1/triggers/{name}`: removes a trigger declared through the admin API.
/// Every replica stops it within a second; a webhook trigger's subscription is ended.
async fn remove_trigger(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let access = attempt!(&request, access(&state));
    attempt!(&request, configured_trigger(&state, &name));
    let removed = attempt!(
        &request,
        access
            .vault
            .forget_trigger(&name, &actor(&request))
            .await
            .map_err(store_error)
    );
    if removed {
        StatusCode::NO_CONTENT.into_response()
    } else {
        fail(
            &request,
            Error::new(
                ErrorKind::NotFound,
                format!("no trigger '{name}' is declared through the admin API"),
            ),
        )
    }
}

/// The body of `POST /api/v1/triggers/{name}/replay` and `…/redeliver`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Redelivery {
    /// A replay's start: `all`, or a duration ago (`2h`).
    since: Option<String>,
    /// Only this webhook's deliveries.
    webhook: Option<String>,
}

/// `POST /api/v1/triggers/{name}/pause`, `…/resume`, `…/replay` (`{"since": "2h",
/// "webhook"?: W}`) and `…/redeliver` (`{"webhook"?: W}`): what `junction triggers` and
/// `junction deliveries` do, for a configured or a declared trigger.
async fn trigger_action(
    State(state): State<AdminState>,
    Path((name, action)): Path<(String, String)>,
    request: Request,
) -> Response {
    let access = attempt!(&request, access(&state)).clone();
    let who = actor(&request);
    let declared = attempt!(
        &request,
        access
            .vault
            .store()
            .trigger_definitions()
            .await
            .map_err(store_error)
    );
    let known = state.catalog.triggers().iter().any(|(n, _)| *n == name)
        || declared.iter().any(|d| d.name == name);
    if !known {
        return fail(
            &request,
            Error::new(ErrorKind::NotFound, format!("there is no trigger '{name}'")),
        );
    }
    let vault = &access.vault;
    match action.as_str() {
        "pause" | "resume" => {
            let paused = action == "pause";
            let changed = attempt!(
                &request,
                vault
                    .pause_trigger(&name, paused, &who)
                    .await
                    .map_err(store_error)
            );
            axum::Json(json!({"name": name, "paused": paused, "changed": changed})).into_response()
        }
        "replay" | "redeliver" => {
            let empty = request
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|l| l == "0");
            let (head, input) = if empty {
                (request, Ok(Redelivery::default()))
            } else {
                split::<Redelivery>(request).await
            };
            let input = attempt!(&head, input);
            let since = match (action.as_str(), &input.since) {
                ("replay", Some(text)) => Some(attempt!(
                    &head,
                    junction_store::since(text).map_err(|why| {
                        store_error(junction_store::StoreError::Invalid(vec![format!(
                            "`since`: `{text}`: {why}"
                        )]))
                    })
                )),
                ("replay", None) => {
                    return fail(
                        &head,
                        store_error(junction_store::StoreError::Invalid(vec![
                            "`since` is required: `all`, or a duration ago such as `2h`".into(),
                        ])),
                    );
                }
                (_, Some(_)) => {
                    return fail(
                        &head,
                        store_error(junction_store::StoreError::Invalid(vec![
                            "`since` belongs to a replay; a redelivery takes the dead deliveries"
                                .into(),
                        ])),
                    );
                }
                (_, None) => None,
            };
            let count = attempt!(
                &head,
                vault
                    .redeliver(&name, input.webhook.as_deref(), since, &who)
                    .await
                    .map_err(store_error)
            );
            axum::Json(json!({"name": name, "deliveries": count})).into_response()
        }
        _ => fail(
            &request,
            Error::new(
                ErrorKind::NotFound,
                format!("a trigger takes pause, resume, replay and redeliver, not `{action}`"),
            ),
        ),
    }
}

async fn clients(State(state): State<AdminState>, request: Request) -> Response {
    let access = attempt!(&request, access(&state));
    let list = attempt!(&request, access.vault.clients().await.map_err(store_error));
    axum::Json(json!({"clients": list})).into_response()
}

async fn create_client(State(state): State<AdminState>, request: Request) -> Response {
    let access = attempt!(&request, access(&state)).clone();
    let who = actor(&request);
    let (head_request, input) = split::<CreateClient>(request).await;
    let input = attempt!(&head_request, input);
    if input.subject.as_deref().is_some_and(str::is_empty) {
        return fail(
            &head_request,
            Error::new(
                ErrorKind::InvalidRequest,
                "`subject` names the JWT subject of the client; it cannot be empty",
            ),
        );
    }
    let grants = attempt!(&head_request, grants(input.grants));
    let (client, key) = attempt!(
        &head_request,
        access
            .vault
            .create_client(
                NewClient {
                    name: input.name,
                    subject: input.subject,
                    grants,
                },
                &who,
            )
            .await
            .map_err(store_error)
    );
    let mut body = json!({"client": client});
    if let Some(key) = key {
        // Shown once: only its hash is stored.
        body["api_key"] = Value::String(key.expose_secret().to_owned());
    }
    let mut response = (StatusCode::CREATED, axum::Json(body)).into_response();
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

async fn client(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let access = attempt!(&request, access(&state));
    let client = attempt!(
        &request,
        access.vault.client(&id).await.map_err(store_error)
    );
    axum::Json(client).into_response()
}

async fn delete_client(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let access = attempt!(&request, access(&state));
    let deleted = attempt!(
        &request,
        access
            .vault
            .delete_client(&id, &actor(&request))
            .await
            .map_err(store_error)
    );
    if deleted {
        StatusCode::NO_CONTENT.into_response()
    } else {
        fail(
            &request,
            Error::new(ErrorKind::NotFound, format!("there is no client '{id}'")),
        )
    }
}

/// The enrolled agents (from the store) and the live connections to this gateway, by pool.
async fn agents(State(state): State<AdminState>, request: Request) -> Response {
    let access = attempt!(&request, access(&state));
    let enrolled = attempt!(
        &request,
        access.vault.store().agents().await.map_err(store_error)
    );
    let links = state.gateway.load().agents().links();
    let mut pools: std::collections::BTreeMap<&str, Value> = std::collections::BTreeMap::new();
    for agent in &enrolled {
        pools
            .entry(agent.pool.as_str())
            .or_insert_with(|| json!({"enrolled": 0, "connected": 0, "in_flight": 0}));
    }
    for link in &links {
        pools
            .entry(link.pool.as_str())
            .or_insert_with(|| json!({"enrolled": 0, "connected": 0, "in_flight": 0}));
    }
    for (pool, figures) in &mut pools {
        let of_pool = links.iter().filter(|l| l.pool == *pool);
        figures["enrolled"] = json!(
            enrolled
                .iter()
                .filter(|a| a.pool == *pool && a.revoked_at.is_none())
                .count()
        );
        figures["connected"] = json!(of_pool.clone().count());
        figures["in_flight"] = json!(of_pool.map(|l| l.in_flight).sum::<usize>());
    }
    let agents: Vec<Value> = enrolled
        .iter()
        .map(|agent| {
            let connections: Vec<&junction_runtime::LinkInfo> =
                links.iter().filter(|l| l.agent == agent.id).collect();
            let mut row = json!(agent);
            row["connections"] = json!(connections);
            row
        })
        .collect();
    axum::Json(json!({"pools": pools, "agents": agents})).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentTokenInput {
    pool: String,
    /// How long it can be used, e.g. `15m`.
    ttl: Option<String>,
}

/// A single-use enrollment token for an agent of a pool (shown once).
async fn create_agent_token(State(state): State<AdminState>, request: Request) -> Response {
    let access = attempt!(&request, access(&state)).clone();
    let who = actor(&request);
    let (head_request, input) = split::<AgentTokenInput>(request).await;
    let input = attempt!(&head_request, input);
    let ttl = match input.ttl.as_deref() {
        Some(text) => attempt!(
            &head_request,
            junction_runtime::config::units::parse_duration(text)
                .map_err(|e| Error::new(ErrorKind::InvalidRequest, format!("`ttl`: {e}")))
        ),
        None => junction_runtime::AgentsConfig::default().token_ttl,
    };
    let made = junction_agent::enroll::token(&access.vault, &input.pool, ttl, &who).await;
    let (token, expires_at) = attempt!(
        &head_request,
        made.map_err(|error| match error {
            junction_agent::enroll::EnrollError::Invalid(detail) => {
                Error::new(ErrorKind::InvalidRequest, format!("`pool`: {detail}"))
            }
            junction_agent::enroll::EnrollError::Store(error) => store_error(error),
            other => Error::new(ErrorKind::Internal, other.to_string()),
        })
    );
    let mut response = (
        StatusCode::CREATED,
        axum::Json(json!({"pool": input.pool, "token": token, "expires_at": expires_at})),
    )
        .into_response();
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

/// Revokes an agent and cuts its connections to this gateway at once (other replicas cut
/// theirs within a second).
async fn revoke_agent(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let access = attempt!(&request, access(&state));
    let revoked = attempt!(
        &request,
        access
            .vault
            .store()
            .revoke_agent(&id, junction_store::now_ms())
            .await
            .map_err(store_error)
    );
    if !revoked {
        return fail(
            &request,
            Error::new(
                ErrorKind::NotFound,
                format!("there is no agent '{id}' that is not revoked already"),
            ),
        );
    }
    access
        .vault
        .audit(&actor(&request), "agent.revoke", Some(&id), "ok", json!({}))
        .await;
    // By name or id: cut every connection of the agent the store revoked.
    if let Ok(enrolled) = access.vault.store().agents().await {
        for agent in enrolled.iter().filter(|a| a.id == id || a.name == id) {
            state.gateway.load().agents().cut(&agent.id);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsInput {
    grants: Vec<GrantInput>,
}

async fn set_grants(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let access = attempt!(&request, access(&state)).clone();
    let who = actor(&request);
    let (head_request, input) = split::<GrantsInput>(request).await;
    let input = attempt!(&head_request, input);
    let grants = attempt!(&head_request, grants(input.grants));
    let client = attempt!(
        &head_request,
        access
            .vault
            .set_grants(&id, grants, &who)
            .await
            .map_err(store_error)
    );
    axum::Json(client).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    since: Option<i64>,
    limit: Option<i64>,
}

/// The most entries one audit query answers.
const AUDIT_LIMIT: i64 = 10_000;

async fn audit(
    State(state): State<AdminState>,
    Query(params): Query<AuditParams>,
    request: Request,
) -> Response {
    let access = attempt!(&request, access(&state));
    let out_of_range = |name: &str, range: &str| {
        Error::invalid(vec![junction_runtime::Violation::parameter(
            junction_runtime::InputLocation::Query,
            name,
            format!("query parameter '{name}' must be {range}"),
        )])
    };
    if params.since.is_some_and(|since| since < 0) {
        return fail(
            &request,
            out_of_range("since", "0 or more (Unix milliseconds)"),
        );
    }
    if params
        .limit
        .is_some_and(|limit| !(1..=AUDIT_LIMIT).contains(&limit))
    {
        return fail(
            &request,
            out_of_range("limit", &format!("between 1 and {AUDIT_LIMIT}")),
        );
    }
    let events = attempt!(
        &request,
        access
            .vault
            .store()
            .audit(&AuditQuery {
                actor: params.actor,
                action: params.action,
                target: params.target,
                since: params.since,
                limit: params.limit,
            })
            .await
            .map_err(store_error)
    );
    axum::Json(json!({"events": events})).into_response()
}
