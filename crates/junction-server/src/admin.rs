//! The admin plane, on its own listener: a small management API under `/api/v1`.
//!
//! - `GET /api/v1/connectors` — every connector with its operations.
//! - `GET /api/v1/connectors/{name}` — one connector.
//! - `GET /api/v1/views` — every view with its inputs and steps.

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use junction_runtime::{Error, ErrorKind, SharedGateway};
use serde_json::json;

use crate::problem;

/// The admin-plane router over `gateway`.
pub fn admin_router(gateway: SharedGateway) -> Router {
    Router::new()
        .route("/api/v1/connectors", get(list))
        .route("/api/v1/connectors/{name}", get(one))
        .route("/api/v1/views", get(views))
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
        None => problem::response(
            &Error::new(
                ErrorKind::NotFound,
                format!("there is no connector named '{name}'"),
            ),
            request.uri().path(),
            &problem::request_id(request.headers().get(problem::REQUEST_ID)),
        ),
    }
}

async fn not_found(request: Request) -> Response {
    problem::response(
        &Error::new(
            ErrorKind::NotFound,
            format!("nothing is served at {}", request.uri().path()),
        ),
        request.uri().path(),
        &problem::request_id(request.headers().get(problem::REQUEST_ID)),
    )
}
