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
use crate::call::{self, Inputs, Stored};

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
        // A valid body that the loaded connector cannot serve: like an unknown operation.
        return Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "connector '{}' declares no testConnection capability; name the operation to call",
                row.connector
            ),
        ));
    };
    let Some((connector, op)) = access
        .connector(&row.connector)
        .and_then(|c| Some((c, c.operation(&operation)?)))
    else {
        // A body that names what the connector does not have conflicts with what is loaded.
        return Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "connector '{}' has no operation '{operation}'",
                row.connector
            ),
        ));
    };
    let mut request = call::request(
        connector,
        op,
        &Inputs {
            parameters: Some(parameters),
            body: None,
        },
    )?;
    let stored = Stored::resolve(access, &table, row).await?;
    let row = stored.row;
    request.extensions_mut().insert(stored.resolved);
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
