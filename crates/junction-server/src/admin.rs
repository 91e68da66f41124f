//! The admin plane, on its own listener: a small management API under `/api/v1`.
//!
//! - `GET /api/v1/connectors` — every connector with its operations.
//! - `GET /api/v1/connectors/{name}` — one connector.
//! - `GET /api/v1/views` — every view with its inputs and steps.
//! - `GET /api/v1/traffic` — cache, rate limit, breaker, concurrency and retry counters,
//!   and the Redis link's health.
//! - `DELETE /api/v1/cache?connector=NAME&operation=ID&view=NAME&prefix=TEXT` — purges
//!   cache entries: of a connector, of one of its operations, of a view (not with
//!   `connector`: a view's entries are its own, and purging a connector leaves them), or
//!   whose key starts with a prefix (after the connector's, operation's or view's own
//!   prefix when they are given too). Answers `{"purged": N, "prefix": "…"}`.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use junction_runtime::{Error, ErrorKind, SharedGateway};
use serde::Deserialize;
use serde_json::json;

use crate::problem;

/// The admin-plane router over `gateway`.
pub fn admin_router(gateway: SharedGateway) -> Router {
    Router::new()
        .route("/api/v1/connectors", get(list))
        .route("/api/v1/connectors/{name}", get(one))
        .route("/api/v1/views", get(views))
        .route("/api/v1/traffic", get(traffic))
        .route("/api/v1/cache", delete(purge))
        .fallback(not_found)
        .with_state(gateway)
}

async fn list(State(gateway): State<SharedGateway>) -> Response {
    axum::Json(json!({"connectors": gateway.load().connectors()})).into_response()
}

async fn views(State(gateway): State<SharedGateway>) -> Response {
    axum::Json(json!({"views": gateway.load().views()})).into_response()
}

async fn one(
    State(gateway): State<SharedGateway>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    match gateway.load().connector(&name) {
        Some(connector) => axum::Json(connector).into_response(),
        None => failed(
            &Error::new(
                ErrorKind::NotFound,
                format!("there is no connector named '{name}'"),
            ),
            request.uri(),
            request.headers(),
        ),
    }
}

async fn traffic(State(gateway): State<SharedGateway>) -> Response {
    axum::Json(gateway.load().traffic_status()).into_response()
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

async fn not_found(request: Request) -> Response {
    failed(
        &Error::new(
            ErrorKind::NotFound,
            format!("nothing is served at {}", request.uri().path()),
        ),
        request.uri(),
        request.headers(),
    )
}

fn failed(error: &Error, uri: &Uri, headers: &HeaderMap) -> Response {
    problem::response(
        error,
        uri.path(),
        &problem::request_id(headers.get(problem::REQUEST_ID)),
    )
}
