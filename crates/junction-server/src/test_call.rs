//! Testing a stored connection: one call of the connector's `testConnection` operation
//! (its `x-ms-capabilities`) or of a chosen one, through the gateway with the
//! connection's credentials.
//!
//! The answer says whether it worked and the backend's status, never the backend's body
//! (a backend may echo the credentials it was sent).

use std::sync::Arc;

use http_body_util::BodyExt;
use junction_runtime::{Error, ErrorKind, SharedGateway};
use serde_json::{Map, Value, json};

use crate::access::{Access, store_error};

/// Runs the test call of connection `reference`.
pub async fn run(
    gateway: &SharedGateway,
    access: &Arc<Access>,
    reference: &str,
    operation: Option<String>,
    parameters: &Map<String, Value>,
    actor: &str,
) -> Result<Value, Error> {
    let row = access
        .vault
        .find_connection(reference)
        .await
        .map_err(store_error)?;
    let table = gateway.load();
    let Some(operation) = operation.or_else(|| table.test_operation(&row.connector)) else {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!(
                "connector '{}' declares no testConnection capability; name the operation to call",
                row.connector
            ),
        ));
    };
    let Some(op) = access
        .connector(&row.connector)
        .and_then(|c| c.operation(&operation))
    else {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!(
                "connector '{}' has no operation '{operation}'",
                row.connector
            ),
        ));
    };
    let target = request_target(&row.connector, op, parameters)?;
    let row = crate::oauth::fresh(access, row).await?;
    let values = crate::admin::values_for_test(access, &row)?;
    let resolved = table
        .resolve_connection(&row.connector, &row.id, &values)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidRequest,
                format!("connector '{}' is not loaded", row.connector),
            )
        })??;
    let method = http::Method::from_bytes(op.method.as_str().as_bytes())
        .map_err(|e| Error::new(ErrorKind::Internal, "bad method").with_cause(e))?;
    let mut request = http::Request::builder()
        .method(method)
        .uri(&target)
        .header(http::header::ACCEPT, "application/json")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidRequest,
                "the test request cannot be built",
            )
            .with_cause(e)
        })?;
    request.extensions_mut().insert(resolved);
    let (outcome, body) = match table.handle(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            // Drain the body so the connection can be reused; it is not shown.
            let _ = response.into_body().collect().await;
            (
                if status < 400 { "ok" } else { "failed" },
                json!({"connection": row.id, "operation": operation, "ok": status < 400, "status": status}),
            )
        }
        Err(error) => (
            "failed",
            json!({"connection": row.id, "operation": operation, "ok": false,
                   "status": error.status().as_u16(),
                   "error": {"type": error.kind().slug(), "detail": error.detail()}}),
        ),
    };
    access
        .vault
        .audit(
            actor,
            "connection.test",
            Some(&row.id),
            outcome,
            json!({"operation": operation, "status": body["status"]}),
        )
        .await;
    Ok(body)
}

/// `/connectors/NAME/PATH?QUERY` for `op`, path and query parameters from `parameters`.
fn request_target(
    connector: &str,
    op: &junction_model::Operation,
    parameters: &Map<String, Value>,
) -> Result<String, Error> {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut path = String::new();
    let mut rest = op.path.as_str();
    while let Some(open) = rest.find('{') {
        path.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = &rest[open + 1..open + close];
        let Some(value) = parameters.get(name) else {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "operation '{}' needs path parameter '{name}'; pass it in `parameters`",
                    op.id
                ),
            ));
        };
        path.push_str(&utf8_percent_encode(&text(value), NON_ALPHANUMERIC).to_string());
        rest = &rest[open + close + 1..];
    }
    path.push_str(rest);
    let mut query = Vec::new();
    for parameter in op.parameters_in(junction_model::ParamLocation::Query) {
        if let Some(value) = parameters.get(&parameter.name) {
            query.push(format!(
                "{}={}",
                utf8_percent_encode(&parameter.name, NON_ALPHANUMERIC),
                utf8_percent_encode(&text(value), NON_ALPHANUMERIC)
            ));
        }
    }
    let mut target = format!("{}{connector}{path}", junction_runtime::CONNECTORS_PREFIX);
    if !query.is_empty() {
        target.push('?');
        target.push_str(&query.join("&"));
    }
    Ok(target)
}
