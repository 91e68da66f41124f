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

use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use junction_runtime::telemetry::{self, AccessLine, Observed, RouteName, UpstreamTime};
use junction_runtime::{BoxError, SharedGateway, UpstreamBody};
use serde_json::json;

use crate::problem;

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
    // What the access log needs from the request, read before the gateway consumes it.
    let logged = metrics.access_log().map(|log| {
        let trace = telemetry::trace_id(request.headers()).map(str::to_owned);
        (log, request.method().clone(), trace)
    });
    let mut observed = Observed::default();
    let result = if uri.path().starts_with(junction_runtime::VIEWS_PREFIX) {
        table.serve_view_observed(request, &mut observed).await
    } else {
        table.serve_observed(request, client, &mut observed).await
    };
    let mut failed = None;
    let response = match result {
        Ok(response) => response.map(DataBody::Upstream),
        Err(error) => {
            metrics.error(error.kind());
            failed = Some(error.kind().slug());
            local(problem::response(
                &error,
                uri.path(),
                &problem::request_id(request_id.as_ref()),
            ))
        }
    };
    let elapsed = started.elapsed();
    let cache = telemetry::cache_outcome(response.headers());
    let route = observed.route.unwrap_or(metrics.unrouted());
    route.record(response.status(), cache, elapsed);
    if let Some((log, method, trace)) = logged {
        let (connector, operation, view) = match &route.name {
            RouteName::Operation {
                connector,
                operation,
            } => (Some(connector.as_str()), Some(operation.as_str()), None),
            RouteName::View(view) => (None, None, Some(view.as_str())),
            RouteName::Unrouted => (None, None, None),
        };
        log.write(&AccessLine {
            time: telemetry::rfc3339(SystemTime::now()),
            // The client's, else the one a problem answer was given.
            request_id: request_id
                .as_ref()
                .or_else(|| response.headers().get(problem::REQUEST_ID))
                .and_then(|id| id.to_str().ok()),
            trace_id: trace.as_deref(),
            client: client.map(|ip| ip.to_canonical().to_string()),
            client_id: observed.client_id.as_deref(),
            method: method.as_str(),
            path: uri.path(),
            connector,
            operation,
            view,
            status: response.status().as_u16(),
            error: failed,
            duration_ms: telemetry::millis(elapsed),
            upstream_ms: response
                .extensions()
                .get::<UpstreamTime>()
                .map(|t| telemetry::millis(t.0)),
            cache: cache.unwrap_or("none"),
            bytes: response.body().size_hint().exact(),
        });
    }
    response
}

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
