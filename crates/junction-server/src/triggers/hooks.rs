//! `POST /hooks/{trigger}/{token}` on the data plane: a webhook trigger's notifications
//! ([`super::subscribe`] gives the backend this URL). The token proves the backend got the
//! URL from this gateway; the body must be JSON and fit the package's
//! `x-ms-notification-content` schema; its events are stored (each once, with their
//! deliveries) before the backend is answered, so an answered notification is never lost
//! and a repeated one is not stored twice.

use std::sync::Arc;

use bytes::Bytes;
use http_body::Body;
use junction_model::Method;
use junction_runtime::{BoxError, Error, ErrorKind};
use serde_json::{Value, json};

use super::{Triggers, poll, subscribe};
use crate::access::store_error;

/// The path prefix of webhook notifications.
pub(crate) const PREFIX: &str = "/hooks/";

/// Receives one notification: `200 {"stored": N}` once its events are stored.
pub(crate) async fn receive<B>(
    triggers: &Arc<Triggers>,
    request: http::Request<B>,
) -> Result<http::Response<axum::body::Body>, Error>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    // Never the token in the answer: `/hooks/NAME/…`.
    let not_found = || {
        let name = path
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default();
        Error::new(
            ErrorKind::NotFound,
            format!("nothing is served at {PREFIX}{name}/…"),
        )
    };
    let (name, token) = path
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(not_found)?;
    let trigger = triggers
        .get(name)
        .filter(|trigger| trigger.callback.is_some())
        .ok_or_else(not_found)?
        .clone();
    let expected = subscribe::token(triggers, name).unwrap_or_default();
    if !same(expected.as_bytes(), token.as_bytes()) {
        return Err(not_found());
    }
    if parts.method != http::Method::POST {
        return Err(Error::method_not_allowed(
            &parts.method,
            &format!("the notifications of trigger '{name}'"),
            vec![Method::Post],
        ));
    }
    let limit = triggers.gateway.load().limits().max_body_bytes;
    junction_runtime::check_declared_length(&parts.headers, limit)?;
    let bytes = junction_runtime::read_body(body, limit).await?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|error| {
        Error::new(
            ErrorKind::InvalidRequest,
            format!("the notification is not JSON: {error}"),
        )
    })?;
    triggers.gateway.load().check_notification(
        &trigger.connector.name,
        &trigger.operation.id,
        &value,
    )?;
    let events = poll::events(&trigger, value);
    let stored = triggers
        .access
        .vault
        .store()
        .record_events(
            name,
            &events,
            &trigger.subscribers,
            junction_store::now_ms(),
        )
        .await
        .map_err(store_error)?;
    if stored > 0 {
        trigger.stored.send_modify(|n| *n += 1);
    }
    let mut response = http::Response::new(axum::body::Body::from(
        json!({"stored": stored}).to_string(),
    ));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Compares two secrets in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
