//! Trying an operation from the admin API (the console's test form): one call through the
//! gateway in-process, answered with the status, headers, body and a timing breakdown.
//!
//! Unlike a connection `test`, the answer shows the backend's body, so every secret value
//! of the connection used (a stored one, or `[connector.NAME.connection]`) that appears
//! verbatim in a header or the body is replaced by `[redacted]`. Bodies are shown up to
//! [`BODY_LIMIT`] bytes. A call the gateway refuses is shown as the client would see it:
//! its problem+json.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;
use junction_runtime::telemetry::{StageTimings, millis};
use junction_runtime::{Error, ErrorKind, RequestCtx, SharedGateway};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::access::{Access, store_error};
use crate::call::{self, AdminCall, Inputs, Stored};
use crate::catalog::Catalog;
use crate::problem;

/// How much of a response body the answer shows.
pub const BODY_LIMIT: usize = 1 << 20;

/// What replaces a secret value.
pub const REDACTED: &str = "[redacted]";

/// The body of `POST /api/v1/connectors/{name}/operations/{id}/try`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TryInput {
    /// Path, query, header, cookie and form parameters by name.
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// The JSON request body.
    #[serde(default)]
    pub body: Option<Value>,
    /// A stored connection (id or `connector/name`); none: the configured one.
    #[serde(default)]
    pub connection: Option<String>,
}

/// Where the call runs.
#[derive(Debug)]
pub struct Place<'a> {
    pub gateway: &'a SharedGateway,
    pub catalog: &'a Catalog,
    pub access: Option<&'a Arc<Access>>,
}

/// Calls operation `operation` of `connector` with `input`.
pub async fn run(
    place: Place<'_>,
    connector: &str,
    operation: &str,
    input: TryInput,
    actor: &str,
) -> Result<Value, Error> {
    let Some(model) = place.catalog.connector(connector) else {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("there is no connector named '{connector}'"),
        ));
    };
    let Some(op) = model.operation(operation) else {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("connector '{connector}' has no operation '{operation}'"),
        ));
    };
    let mut request = call::request(
        model,
        op,
        &Inputs {
            parameters: Some(&input.parameters),
            body: input.body.as_ref(),
        },
    )?;
    let table = place.gateway.load();
    let mut audit = None;
    let secrets: Vec<String> = match (&input.connection, place.access) {
        (Some(_), None) => {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                "`connection` needs a store; add a [store] section to junction.toml",
            ));
        }
        (Some(reference), Some(access)) => {
            let row = access
                .vault
                .find_connection(reference)
                .await
                .map_err(store_error)?;
            if row.connector != connector {
                return Err(Error::new(
                    ErrorKind::InvalidRequest,
                    format!(
                        "connection '{reference}' is a connection of '{}', not of '{connector}'",
                        row.connector
                    ),
                ));
            }
            let stored = Stored::resolve(access, &table, row).await?;
            request.extensions_mut().insert(stored.resolved);
            audit = Some((access, stored.row.id));
            stored.secrets
        }
        (None, _) => {
            request.extensions_mut().insert(AdminCall);
            place
                .catalog
                .configured_secrets(connector)
                .iter()
                .map(|s| s.expose().to_owned())
                .collect()
        }
    };
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let mut ctx = RequestCtx::default();
    let answer = match table.serve_in(&mut ctx, request).await {
        Ok(response) => shown(response, started, &ctx.timings, &secrets).await,
        Err(error) => {
            let response = problem::response(&error, &path, &problem::request_id(None));
            shown(response, started, &ctx.timings, &secrets).await
        }
    };
    if let Some((access, id)) = audit {
        let status = answer["status"].as_u64().unwrap_or_default();
        access
            .vault
            .audit(
                actor,
                "connection.try",
                Some(&id),
                if status < 400 { "ok" } else { "failed" },
                json!({"operation": operation, "status": status}),
            )
            .await;
    }
    Ok(answer)
}

/// The answer for `response`: status, redacted headers and body, timing.
async fn shown<B>(
    response: http::Response<B>,
    started: Instant,
    stages: &StageTimings,
    secrets: &[String],
) -> Value
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let total = started.elapsed();
    let (parts, body) = response.into_parts();
    let mut headers = Map::new();
    for name in parts.headers.keys() {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| redact(&String::from_utf8_lossy(v.as_bytes()), secrets))
            .collect();
        headers.insert(name.as_str().to_owned(), Value::String(values.join(", ")));
    }
    let (bytes, truncated, failed) = read_bounded(body, BODY_LIMIT).await;
    let is_json = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().contains("json"));
    let body = match serde_json::from_slice::<Value>(&bytes) {
        Ok(value) if is_json && !truncated => redact_json(value, secrets),
        _ => Value::String(redact(&String::from_utf8_lossy(&bytes), secrets)),
    };
    let mut answer = json!({
        "status": parts.status.as_u16(),
        "headers": headers,
        "body": body,
        "size": bytes.len(),
        "timing": timing(stages, total),
    });
    if truncated {
        answer["truncated"] = Value::Bool(true);
    }
    if let Some(why) = failed {
        answer["body_error"] = Value::String(redact(&why, secrets));
    }
    answer
}

/// The timing breakdown of a call: `total_ms` as measured to the response headers, and
/// the stages the pipeline recorded in the request's context (`cache_ms`, `policies_ms`,
/// `upstream_ms`). Stages that did not happen are left out.
pub fn timing(stages: &StageTimings, total: Duration) -> Value {
    let mut out = json!({"total_ms": millis(total)});
    for (name, stage) in [
        ("cache_ms", stages.cache),
        ("policies_ms", stages.policies),
        ("upstream_ms", stages.upstream),
    ] {
        if let Some(stage) = stage {
            out[name] = json!(millis(stage));
        }
    }
    out
}

/// Reads `body` up to `limit` bytes: the bytes, whether more was left, and why reading
/// failed, if it did.
async fn read_bounded<B>(mut body: B, limit: usize) -> (Bytes, bool, Option<String>)
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    let room = limit.saturating_sub(out.len());
                    if data.len() > room {
                        out.extend_from_slice(&data[..room]);
                        return (out.freeze(), true, None);
                    }
                    out.extend_from_slice(&data);
                }
            }
            Err(error) => return (out.freeze(), false, Some(error.to_string())),
        }
    }
    (out.freeze(), false, None)
}

/// `text` with every secret replaced by [`REDACTED`] (longest first, so a secret that
/// contains another goes whole).
fn redact(text: &str, secrets: &[String]) -> String {
    let mut sorted: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_owned();
    for secret in sorted {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), REDACTED);
        }
    }
    out
}

/// `value` with secrets redacted from every string and key.
fn redact_json(value: Value, secrets: &[String]) -> Value {
    if secrets.is_empty() {
        return value;
    }
    match value {
        Value::String(s) => Value::String(redact(&s, secrets)),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| redact_json(v, secrets)).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (redact(&k, secrets), redact_json(v, secrets)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn secrets_are_redacted_longest_first_in_text_and_json() {
        let secrets = vec!["abc".to_owned(), "abcdef".to_owned(), String::new()];
        assert_eq!(
            redact("x abcdef y abc", &secrets),
            "x [redacted] y [redacted]"
        );
        let value = redact_json(json!({"abc": ["abcdef", 1, {"k": "zabc"}]}), &secrets);
        assert_eq!(
            value,
            json!({"[redacted]": ["[redacted]", 1, {"k": "z[redacted]"}]})
        );
    }

    #[test]
    fn timing_has_the_total_and_the_stages_that_happened() {
        let mut stages = StageTimings::default();
        assert_eq!(
            timing(&stages, Duration::from_micros(2500)),
            json!({"total_ms": 2.5})
        );
        stages.upstream = Some(Duration::from_millis(2));
        stages.cache = Some(Duration::from_micros(100));
        assert_eq!(
            timing(&stages, Duration::from_millis(3)),
            json!({"total_ms": 3.0, "upstream_ms": 2.0, "cache_ms": 0.1})
        );
    }

    #[tokio::test]
    async fn bodies_are_read_up_to_the_limit() {
        let body = http_body_util::Full::new(Bytes::from_static(b"0123456789"));
        let (bytes, truncated, failed) = read_bounded(body, 4).await;
        assert_eq!(&bytes[..], b"0123");
        assert!(truncated && failed.is_none());
    }
}
