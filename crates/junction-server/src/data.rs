//! The data plane: `/connectors/{name}/…` and `/views/{name}` through the gateway, plus
//! `/healthz` and `/readyz`.
//!
//! [`serve_request`] is the whole plane: two fixed health paths, and every other request
//! handed to [`Gateway::handle`](junction_runtime::Gateway::handle) of the table in force.
//! The server runs it as a plain hyper service (no router in between, it is the hot path);
//! [`data_router`] wraps the same function in an axum `Router` for tests without sockets.
//!
//! Responses carry a [`DataBody`]: the backend's body as it streams in, unboxed, or a body
//! Junction wrote (a problem, a health answer).

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::IntoResponse;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use junction_runtime::RequestCtx;
use junction_runtime::telemetry::trace::{self, RequestTrace};
use junction_runtime::telemetry::{self, AccessLine, RouteName};
use junction_runtime::{BoxError, ClientBody, SharedGateway, UpstreamBody};
use serde_json::json;

use crate::listener::Plane;
use crate::problem;
use crate::triggers::{self, Triggers, hooks};

/// The data-plane router over `gateway`. Tests can drive it without sockets.
pub fn data_router(gateway: SharedGateway) -> Router {
    Router::new()
        .fallback(
            |State(gateway): State<SharedGateway>, request: Request| async move {
                serve_request(&gateway, request).await.map(Body::new)
            },
        )
        .with_state(gateway)
}

/// A data-plane response body.
#[derive(Debug)]
pub enum DataBody {
    /// The backend's body, passed on frame by frame.
    Upstream(UpstreamBody),
    /// A body Junction wrote.
    Local(Body),
}

impl HttpBody for DataBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            DataBody::Upstream(body) => Pin::new(body).poll_frame(cx),
            DataBody::Local(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(BoxError::from))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            DataBody::Upstream(body) => body.is_end_stream(),
            DataBody::Local(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            DataBody::Upstream(body) => body.size_hint(),
            DataBody::Local(body) => body.size_hint(),
        }
    }
}

fn local(response: axum::response::Response) -> http::Response<DataBody> {
    response.map(DataBody::Local)
}

/// The data plane as a listener serves it (see [`crate::listener`]): the gateway, and the
/// event streams of the triggers it runs.
#[derive(Debug, Clone)]
pub(crate) struct DataPlane {
    pub gateway: SharedGateway,
    pub triggers: Option<Arc<Triggers>>,
}

impl Plane for DataPlane {
    type Body = DataBody;

    async fn call(
        &self,
        request: http::Request<ClientBody<Incoming>>,
        peer: SocketAddr,
    ) -> http::Response<DataBody> {
        if let Some(triggers) = &self.triggers {
            let path = request.uri().path();
            if path.starts_with(triggers::PREFIX) || path.starts_with(hooks::PREFIX) {
                return for_triggers(&self.gateway, triggers, request, peer.ip()).await;
            }
        }
        serve_request_from(&self.gateway, request, Some(peer.ip())).await
    }

    fn local(response: axum::response::Response) -> http::Response<DataBody> {
        local(response)
    }
}

/// `/triggers/{name}/…` (a trigger's event stream or registered webhooks) and
/// `/hooks/{name}/{token}` (a webhook trigger's notifications): the trigger module's
/// answer, or a problem; counted and written to the access log like the gateway's own
/// answers (an event stream's line when its head is sent; a hook's token never).
async fn for_triggers(
    gateway: &SharedGateway,
    triggers: &Arc<Triggers>,
    request: http::Request<ClientBody<Incoming>>,
    peer: IpAddr,
) -> http::Response<DataBody> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let id = request.headers().get(problem::REQUEST_ID).cloned();
    let result = if path.starts_with(hooks::PREFIX) {
        hooks::receive(triggers, request).await
    } else {
        triggers::serve(triggers, request).await
    };
    let table = gateway.load();
    let metrics = table.metrics();
    // A hook's path holds its token: logged as `/hooks/NAME/…`.
    let logged = match path
        .strip_prefix(hooks::PREFIX)
        .and_then(|r| r.split_once('/'))
    {
        Some((name, _)) => format!("{}{name}/…", hooks::PREFIX),
        None => path.clone(),
    };
    let (response, failed) = match result {
        Ok(response) => (local(response), None),
        Err(error) => {
            metrics.error(error.kind().slug());
            let answer = problem::response(&error, &logged, &problem::request_id(id.as_ref()));
            (local(answer), Some(error.kind().slug()))
        }
    };
    if let Some(log) = metrics.access_log() {
        log.write(&AccessLine {
            time: telemetry::rfc3339(SystemTime::now()),
            request_id: id
                .as_ref()
                .or_else(|| response.headers().get(problem::REQUEST_ID))
                .and_then(|id| id.to_str().ok()),
            trace_id: None,
            client: Some(peer.to_canonical().to_string()),
            client_id: None,
            method: method.as_str(),
            path: &logged,
            connector: None,
            operation: None,
            view: None,
            status: response.status().as_u16(),
            error: failed,
            duration_ms: telemetry::millis(started.elapsed()),
            upstream_ms: None,
            cache: "none",
            bytes: response.body().size_hint().exact(),
        });
    }
    response
}

/// Serves one data-plane request from an unknown client.
pub async fn serve_request<B>(
    gateway: &SharedGateway,
    request: http::Request<B>,
) -> http::Response<DataBody>
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    serve_request_from(gateway, request, None).await
}

/// Serves one data-plane request from `client`, the peer address (per-client rate limits
/// count by it).
pub async fn serve_request_from<B>(
    gateway: &SharedGateway,
    request: http::Request<B>,
    client: Option<IpAddr>,
) -> http::Response<DataBody>
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    match request.uri().path() {
        "/healthz" => return local(axum::Json(json!({"status": "ok"})).into_response()),
        "/readyz" => {
            let connectors = gateway.load().connectors().len();
            return local(
                axum::Json(json!({"status": "ready", "connectors": connectors})).into_response(),
            );
        }
        "/oauth/callback" => {
            let table = gateway.load();
            if let Some(admission) = table.admission() {
                let query = request.uri().query().unwrap_or_default().to_owned();
                return match admission.oauth_callback(&query).await {
                    Ok(page) => local(axum::response::Html(page).into_response()),
                    Err(error) => local(problem::response(
                        &error,
                        request.uri().path(),
                        &problem::request_id(request.headers().get(problem::REQUEST_ID)),
                    )),
                };
            }
        }
        _ => {}
    }
    let started = Instant::now();
    let uri = request.uri().clone();
    let request_id = request.headers().get(problem::REQUEST_ID).cloned();
    let table = gateway.load();
    let metrics = table.metrics();
    // The request's trace: the client's, or a new one (spans only with an exporter).
    let trace = RequestTrace::start(request.headers(), metrics.tracer());
    let method = request.method().clone();
    let mut ctx = RequestCtx::new(&table, client);
    let result = trace
        .scope(async {
            if uri.path().starts_with(junction_runtime::VIEWS_PREFIX) {
                table.serve_view_in(&mut ctx, request).await
            } else {
                table.serve_in(&mut ctx, request).await
            }
        })
        .await;
    let trace_id = trace::trace_hex(&trace.trace_id());
    let mut failed = None;
    let mut response = match result {
        Ok(response) => response.map(DataBody::Upstream),
        Err(error) => {
            metrics.error(error.kind().slug());
            failed = Some(error.kind().slug());
            local(problem::traced_response(
                &error,
                uri.path(),
                &problem::request_id(request_id.as_ref()),
                Some(trace_id.as_str()),
            ))
        }
    };
    let ended = Instant::now();
    ctx.timings.total = ended.duration_since(started);
    if table.server_timing()
        && let Ok(value) = HeaderValue::from_str(&ctx.timings.server_timing())
    {
        response.headers_mut().insert(SERVER_TIMING, value);
    }
    let served = Served {
        method: &method,
        path: uri.path(),
        peer: client,
        request_id: request_id.as_ref(),
        trace_id: trace_id.as_str(),
        started,
        ended,
        failed,
    };
    record(metrics, &ctx, &trace, &served, &response);
    response
}

/// What the server knows of a request once it is answered, for its telemetry.
struct Served<'a> {
    method: &'a http::Method,
    path: &'a str,
    peer: Option<IpAddr>,
    request_id: Option<&'a HeaderValue>,
    trace_id: &'a str,
    started: Instant,
    ended: Instant,
    /// The problem type, when the gateway answered a problem.
    failed: Option<&'static str>,
}

/// A request's telemetry, read from its context once it is answered: the route's counters
/// and latency, the server span, the access log line.
fn record(
    metrics: &telemetry::Metrics,
    ctx: &RequestCtx<'_>,
    trace: &RequestTrace,
    served: &Served<'_>,
    response: &http::Response<DataBody>,
) {
    let elapsed = ctx.timings.total;
    let route = ctx.route.unwrap_or(metrics.unrouted());
    route.record(response.status(), ctx.cache, elapsed);
    let (connector, operation, view) = match &route.name {
        RouteName::Operation {
            connector,
            operation,
        } => (Some(connector.as_str()), Some(operation.as_str()), None),
        RouteName::View(view) => (None, None, Some(view.as_str())),
        RouteName::Unrouted => (None, None, None),
    };
    if trace.recorded() {
        server_span(ctx, trace, served, response, (connector, operation, view));
    }
    if let Some(log) = metrics.access_log() {
        log.write(&AccessLine {
            time: telemetry::rfc3339(SystemTime::now()),
            // The client's, else the one a problem answer was given.
            request_id: served
                .request_id
                .or_else(|| response.headers().get(problem::REQUEST_ID))
                .and_then(|id| id.to_str().ok()),
            trace_id: Some(served.trace_id),
            client: served.peer.map(|ip| ip.to_canonical().to_string()),
            client_id: ctx.client_id.as_deref(),
            method: served.method.as_str(),
            path: served.path,
            connector,
            operation,
            view,
            status: response.status().as_u16(),
            error: served.failed,
            duration_ms: telemetry::millis(elapsed),
            upstream_ms: ctx.timings.upstream.map(telemetry::millis),
            cache: ctx.cache.unwrap_or("none"),
            bytes: response.body().size_hint().exact(),
        });
    }
}

/// The request's server span: its route, status, connector, operation or view, client and
/// cache outcome (never a query or a header value).
fn server_span(
    ctx: &RequestCtx<'_>,
    trace: &RequestTrace,
    served: &Served<'_>,
    response: &http::Response<DataBody>,
    (connector, operation, view): (Option<&str>, Option<&str>, Option<&str>),
) {
    let method = served.method;
    let route_template = match (connector, view) {
        (Some(connector), _) => Some(format!(
            "/connectors/{connector}{}",
            ctx.operation_path.unwrap_or_default()
        )),
        (None, Some(view)) => Some(format!("{}{view}", junction_runtime::VIEWS_PREFIX)),
        (None, None) => None,
    };
    let name = match &route_template {
        Some(route) => format!("{method} {route}"),
        None => method.to_string(),
    };
    let Some(mut span) = trace.server_span(name, served.started, served.ended) else {
        return;
    };
    span.set("http.request.method", method.as_str().to_owned());
    span.set("url.path", served.path.to_owned());
    if let Some(route) = route_template {
        span.set("http.route", route);
    }
    span.set(
        "http.response.status_code",
        i64::from(response.status().as_u16()),
    );
    if let Some(connector) = connector {
        span.set("junction.connector", connector.to_owned());
    }
    if let Some(operation) = operation {
        span.set("junction.operation", operation.to_owned());
    }
    if let Some(view) = view {
        span.set("junction.view", view.to_owned());
    }
    if let Some(client_id) = &ctx.client_id {
        span.set("junction.client_id", client_id.clone());
    }
    if let Some(ip) = served.peer {
        span.set("client.address", ip.to_canonical().to_string());
    }
    span.set("junction.cache", ctx.cache.unwrap_or("none"));
    match served.failed {
        Some(slug) => {
            span.set("error.type", slug);
            span.fail(slug);
        }
        None if response.status().is_server_error() => {
            let status = response.status().as_str().to_owned();
            span.set("error.type", status.clone());
            span.fail(status);
        }
        None => {}
    }
    span.end(served.ended);
}

/// The W3C `Server-Timing` response header.
const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use http_body_util::BodyExt;
    use junction_runtime::{Config, Gateway};
    use tower::ServiceExt;

    use super::*;

    async fn call(path: &str) -> (http::StatusCode, serde_json::Value) {
        let gateway = Gateway::compile(&Config::default(), &[]).unwrap().gateway;
        let router = data_router(SharedGateway::new(gateway));
        let request = http::Request::get(path).body(Body::empty()).unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn serves_health_and_problems_without_sockets() {
        assert_eq!(
            call("/healthz").await,
            (http::StatusCode::OK, json!({"status": "ok"}))
        );
        assert_eq!(
            call("/readyz").await,
            (
                http::StatusCode::OK,
                json!({"status": "ready", "connectors": 0})
            )
        );
        let (status, problem) = call("/connectors/none/x").await;
        assert_eq!(status, http::StatusCode::NOT_FOUND);
        assert_eq!(problem["detail"], "there is no connector named 'none'");
        assert_eq!(problem["instance"], "/connectors/none/x");
    }
}
