//! `/triggers/{name}/webhooks` on the data plane: webhooks a client granted a trigger
//! registers with it. `POST` (`{"url": …, "secret"?: "whsec_…"}`) registers one and
//! answers its id and signing secret (made when not given; shown this once, kept sealed);
//! `GET` lists the client's own; `GET`/`DELETE /webhooks/{id}` reads or removes one. Each
//! new event of the trigger is then delivered to it like to a configured webhook
//! ([`super::deliver`]), with the default retry schedule. The URL's host must be one of
//! the trigger's `webhook_hosts`: clients cannot make the gateway call anywhere else.

use std::sync::Arc;

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use junction_model::Method;
use junction_runtime::config::triggers::{webhook_key, webhook_url};
use junction_runtime::{BoxError, Error, ErrorKind, Violation};
use junction_store::{ClientInfo, WebhookRow};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Trigger, Triggers};
use crate::access::store_error;

/// What registering a webhook takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    url: String,
    /// A Standard Webhooks secret (`whsec_…`) the client chose; one is made otherwise.
    secret: Option<String>,
}

/// `GET` (the client's webhooks) or `POST` (a new one) on `/triggers/{name}/webhooks`.
pub(super) async fn collection<B>(
    triggers: &Arc<Triggers>,
    trigger: &Trigger,
    client: &ClientInfo,
    parts: &http::request::Parts,
    body: B,
) -> Result<http::Response<Body>, Error>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    match parts.method {
        http::Method::GET => {
            let mine: Vec<Value> = registered(triggers, trigger)
                .await?
                .iter()
                .filter(|row| row.client_id == client.id)
                .map(|row| shown(trigger, row))
                .collect();
            Ok(json_response(StatusCode::OK, &Value::Array(mine)))
        }
        http::Method::POST => register(triggers, trigger, client, parts, body).await,
        _ => Err(Error::method_not_allowed(
            &parts.method,
            &format!("the webhooks of trigger '{}'", trigger.name),
            vec![Method::Get, Method::Post],
        )),
    }
}

/// `GET` or `DELETE` on `/triggers/{name}/webhooks/{id}`: only the client that registered
/// webhook `id` sees it.
pub(super) async fn one(
    triggers: &Arc<Triggers>,
    trigger: &Trigger,
    client: &ClientInfo,
    parts: &http::request::Parts,
    id: &str,
) -> Result<http::Response<Body>, Error> {
    let row = registered(triggers, trigger)
        .await?
        .into_iter()
        .find(|row| row.id == id && row.client_id == client.id)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "client '{}' has no webhook '{id}' on trigger '{}'",
                    client.name, trigger.name
                ),
            )
        })?;
    match parts.method {
        http::Method::GET => Ok(json_response(StatusCode::OK, &shown(trigger, &row))),
        http::Method::DELETE => {
            let vault = &triggers.access.vault;
            vault
                .store()
                .delete_webhook(&trigger.name, id)
                .await
                .map_err(store_error)?;
            vault
                .audit(
                    &client.id,
                    "webhook.delete",
                    Some(id),
                    "ok",
                    json!({"trigger": trigger.name}),
                )
                .await;
            let mut response = http::Response::new(Body::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            Ok(response)
        }
        _ => Err(Error::method_not_allowed(
            &parts.method,
            &format!("webhook '{id}' of trigger '{}'", trigger.name),
            vec![Method::Get, Method::Delete],
        )),
    }
}

/// Registers the webhook the body describes: `201` with its id and secret.
async fn register<B>(
    triggers: &Arc<Triggers>,
    trigger: &Trigger,
    client: &ClientInfo,
    parts: &http::request::Parts,
    body: B,
) -> Result<http::Response<Body>, Error>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    if trigger.config.webhook_hosts.is_empty() {
        return Err(Error::new(
            ErrorKind::Forbidden,
            format!(
                "trigger '{0}' takes no webhooks from clients: `[trigger.{0}] webhook_hosts` names no host they may point at",
                trigger.name
            ),
        ));
    }
    if triggers.access.vault.key().is_none() {
        return Err(Error::new(
            ErrorKind::Forbidden,
            "this gateway takes no webhooks from clients: it keeps their secrets sealed under the store's master key, and none is configured",
        ));
    }
    let limit = triggers.gateway.load().limits().max_body_bytes;
    junction_runtime::check_declared_length(&parts.headers, limit)?;
    let bytes = junction_runtime::read_body(body, limit).await?;
    let registration: Registration = serde_json::from_slice(&bytes).map_err(|error| {
        Error::invalid(vec![Violation::body(
            "",
            format!(
                "the body must be a JSON object {{\"url\": …, \"secret\"?: \"whsec_…\"}}: {error}"
            ),
        )])
    })?;
    let url = webhook_url(&registration.url)
        .map_err(|why| Error::invalid(vec![Violation::body("/url", why)]))?;
    if !trigger.config.webhook_host_allowed(&url) {
        return Err(Error::invalid(vec![Violation::body(
            "/url",
            format!(
                "webhooks of trigger '{}' may point at {} only, not at `{}`",
                trigger.name,
                trigger.config.webhook_hosts.join(", "),
                url.host_str().unwrap_or_default()
            ),
        )]));
    }
    let secret = match registration.secret {
        Some(secret) => secret,
        None => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|error| {
                Error::new(ErrorKind::Internal, "cannot make a webhook secret")
                    .with_cause(std::io::Error::other(error.to_string()))
            })?;
            format!("whsec_{}", STANDARD.encode(bytes))
        }
    };
    let key = webhook_key(&secret)
        .map_err(|why| Error::invalid(vec![Violation::body("/secret", why)]))?;
    let row = triggers
        .access
        .vault
        .register_webhook(&trigger.name, &client.id, url.as_str(), key.expose())
        .await
        .map_err(store_error)?;
    let mut shown = shown(trigger, &row);
    shown["secret"] = Value::String(secret);
    let mut response = json_response(StatusCode::CREATED, &shown);
    if let Ok(location) = HeaderValue::from_str(&format!(
        "{}{}/webhooks/{}",
        super::PREFIX,
        trigger.name,
        row.id
    )) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The webhooks clients registered with `trigger`.
async fn registered(triggers: &Triggers, trigger: &Trigger) -> Result<Vec<WebhookRow>, Error> {
    triggers
        .access
        .vault
        .store()
        .webhooks(&trigger.name)
        .await
        .map_err(store_error)
}

/// A registered webhook as its client sees it (never its secret).
fn shown(trigger: &Trigger, row: &WebhookRow) -> Value {
    json!({
        "id": row.id,
        "trigger": trigger.name,
        "url": row.url,
        "created_at": row.created_at,
        "disabled_at": row.disabled_at,
    })
}

fn json_response(status: StatusCode, value: &Value) -> http::Response<Body> {
    let mut response = http::Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
