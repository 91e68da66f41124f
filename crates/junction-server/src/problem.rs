//! The one place where errors become HTTP responses: RFC 9457 `application/problem+json`.
//!
//! ```json
//! {"type": "https://junction.dev/problems/invalid-request", "title": "Invalid request",
//!  "status": 400, "detail": "…", "instance": "/connectors/pets/pets",
//!  "request_id": "…", "errors": [{"in": "query", "name": "limit", "message": "…"}]}
//! ```
//!
//! The client gets the safe `detail`; the cause goes to the log with the request id, at a
//! level that follows whose fault it was.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, header};
use junction_runtime::{Error, Source, Violation};
use serde::Serialize;

/// Base of every problem `type` URI.
pub use junction_runtime::PROBLEM_BASE;
pub const PROBLEM_JSON: &str = "application/problem+json";
pub const REQUEST_ID: &str = "x-request-id";

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: &'a str,
    instance: &'a str,
    request_id: &'a str,
    /// The W3C trace id of a data-plane request, to find its spans and its backends' logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [Violation],
    /// A SOAP service's fault: code, reason and detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    fault: Option<&'a serde_json::Value>,
}

/// The request id: the client's `X-Request-Id` when it is short and plain, else a new one.
pub fn request_id(client: Option<&HeaderValue>) -> String {
    if let Some(id) = client.and_then(|v| v.to_str().ok())
        && !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return id.to_owned();
    }
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:016x}",
        start.rotate_left(17) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
}

/// Turns `error` into a problem+json response, and logs it.
pub fn response(error: &Error, instance: &str, request_id: &str) -> Response {
    traced_response(error, instance, request_id, None)
}

/// [`response`] for a request of trace `trace_id` (hex), which the body names too.
pub fn traced_response(
    error: &Error,
    instance: &str,
    request_id: &str,
    trace_id: Option<&str>,
) -> Response {
    log(error, instance, request_id, trace_id);
    let status = error.status();
    let problem = Problem {
        kind: format!("{PROBLEM_BASE}{}", error.kind().slug()),
        title: error.kind().title(),
        status: status.as_u16(),
        detail: error.detail(),
        instance,
        request_id,
        trace_id,
        errors: error.violations(),
        fault: error.fault(),
    };
    let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, id);
    }
    for (name, value) in error.headers() {
        headers.insert(name, value.clone());
    }
    if error.kind() == junction_runtime::ErrorKind::Unauthenticated {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if !error.allow().is_empty() {
        let allow: Vec<&str> = error.allow().iter().map(|m| m.as_str()).collect();
        if let Ok(value) = HeaderValue::from_str(&allow.join(", ")) {
            headers.insert(header::ALLOW, value);
        }
    }
    response
}

/// The error an HTTP framework's own rejection stands for: its status decides the kind,
/// its plain-text message (or, when it has none, a sentence for the status) the detail;
/// `Allow` is kept.
pub fn rejection(
    status: http::StatusCode,
    text: &str,
    headers: &http::HeaderMap,
    (method, path): (&http::Method, &str),
) -> Error {
    use junction_runtime::ErrorKind;
    let kind = match status.as_u16() {
        400 | 422 => ErrorKind::InvalidRequest,
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        405 => ErrorKind::MethodNotAllowed,
        408 => ErrorKind::RequestTimeout,
        409 => ErrorKind::Conflict,
        413 => ErrorKind::PayloadTooLarge,
        415 => ErrorKind::UnsupportedMediaType,
        429 => ErrorKind::RateLimited,
        501 => ErrorKind::NotImplemented,
        503 => ErrorKind::StoreUnavailable,
        _ if status.is_client_error() => ErrorKind::InvalidRequest,
        _ => ErrorKind::Internal,
    };
    if kind == ErrorKind::MethodNotAllowed {
        let allow = headers
            .get_all(header::ALLOW)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|m| m.trim().parse::<junction_model::Method>().ok())
            .collect();
        return Error::method_not_allowed(method, path, allow);
    }
    let detail = match (text.is_empty(), kind) {
        (false, _) => text.to_owned(),
        (true, ErrorKind::NotFound) => format!("nothing is served at {path}"),
        (true, _) => status
            .canonical_reason()
            .unwrap_or("the request was refused")
            .to_owned(),
    };
    Error::new(kind, detail)
}

fn log(error: &Error, instance: &str, request_id: &str, trace_id: Option<&str>) {
    let cause = error.cause().map(|c| chain(c)).unwrap_or_default();
    let kind = error.kind().slug();
    let detail = error.detail();
    let trace_id = trace_id.unwrap_or_default();
    match error.source() {
        Source::Client => {
            tracing::debug!(
                request_id,
                trace_id,
                instance,
                kind,
                detail,
                "request rejected"
            )
        }
        Source::Upstream => {
            tracing::warn!(
                request_id,
                trace_id,
                instance,
                kind,
                detail,
                cause,
                "upstream failed"
            )
        }
        Source::Internal => {
            tracing::error!(
                request_id,
                trace_id,
                instance,
                kind,
                detail,
                cause,
                "gateway error"
            )
        }
    }
}

/// `outer: inner: innermost`.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        current = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use junction_runtime::{ErrorKind, InputLocation};

    use super::*;

    #[test]
    fn request_ids_are_reused_when_plain_and_made_otherwise() {
        assert_eq!(
            request_id(Some(&HeaderValue::from_static("abc-123"))),
            "abc-123"
        );
        let made = request_id(Some(&HeaderValue::from_static("bad id with spaces")));
        assert_eq!(made.len(), 16);
        assert_ne!(made, request_id(None));
    }

    #[tokio::test]
    async fn problem_bodies_follow_rfc_9457() {
        use http_body_util::BodyExt;
        let error = Error::invalid(vec![Violation::parameter(
            InputLocation::Query,
            "limit",
            "bad",
        )]);
        let response = response(&error, "/connectors/x/y", "rid");
        assert_eq!(response.status(), 400);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "https://junction.dev/problems/invalid-request",
                "title": "Invalid request",
                "status": 400,
                "detail": "bad",
                "instance": "/connectors/x/y",
                "request_id": "rid",
                "errors": [{"in": "query", "name": "limit", "message": "bad"}]
            })
        );
        let not_found = super::response(&Error::new(ErrorKind::NotFound, "no"), "/x", "r");
        let body = not_found.into_body().collect().await.unwrap().to_bytes();
        assert!(!String::from_utf8_lossy(&body).contains("errors"));
    }
}
