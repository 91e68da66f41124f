//! The data plane: `/connectors/{name}/…` through the gateway, plus `/healthz` and `/readyz`.
//!
//! One fallback handler hands every request to [`Gateway::handle`](junction_runtime::Gateway::handle)
//! of the table in force; the axum router only adds the two health routes.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use junction_runtime::SharedGateway;
use serde_json::json;

use crate::problem;

/// The data-plane router over `gateway`. Tests can drive it without sockets.
pub fn data_router(gateway: SharedGateway) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(serve)
        .with_state(gateway)
}

async fn serve(State(gateway): State<SharedGateway>, request: Request) -> Response {
    let uri = request.uri().clone();
    let request_id = request.headers().get(problem::REQUEST_ID).cloned();
    let table = gateway.load();
    match table.handle(request).await {
        Ok(response) => response.map(Body::new),
        Err(error) => problem::response(
            &error,
            uri.path(),
            &problem::request_id(request_id.as_ref()),
        ),
    }
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(gateway): State<SharedGateway>) -> Response {
    let connectors = gateway.load().connectors().len();
    axum::Json(json!({"status": "ready", "connectors": connectors})).into_response()
}
