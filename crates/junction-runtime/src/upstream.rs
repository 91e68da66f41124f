//! Upstream: build the backend request exactly as the definition says, call it with the
//! pooled client, and pass the answer back.
//!
//! The URL is the base (definition or `backend`), then the template with each path value
//! encoded as one segment, then the query per `collectionFormat`. Only declared header
//! parameters travel, plus the client's `Accept` and `Accept-Language`; the client's
//! `Authorization` and `Cookie` never do. The response keeps status, headers (minus
//! hop-by-hop ones) and a streamed body.

use std::time::Duration;

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use junction_model::{CollectionFormat, ParamLocation};
use serde_json::Value;

use crate::auth::{AuthPlan, Credential};
use crate::bind::{Bound, Origin, OutBody};
use crate::body;
use crate::encode;
use crate::error::{Error, ErrorKind, Violation};
use crate::gateway::ConnectorPlan;
use crate::plan::{OperationPlan, ParamPlan, UpstreamPiece, value_text};

/// The `User-Agent` of upstream requests.
pub const USER_AGENT: &str = concat!("junction/", env!("CARGO_PKG_VERSION"));

/// Builds a pooled client. One is shared by every connector with the same connect timeout.
pub(crate) fn client(connect_timeout: Duration) -> Result<reqwest::Client, String> {
    install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("cannot build the upstream HTTP client: {e}"))
}

/// Installs `ring` as the process's TLS crypto provider, if none is installed yet.
///
/// reqwest is built without a default provider (the default, aws-lc, needs a C toolchain
/// and a long build), so every process must do this before building a `reqwest::Client`.
/// The gateway does it itself; call it before building other clients.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Sends the bound request to the backend and returns its response.
pub(crate) async fn call(
    connector: &ConnectorPlan,
    op: &OperationPlan,
    parts: &Parts,
    bound: Bound,
) -> Result<http::Response<reqwest::Body>, Error> {
    let credentials: &[Credential] = match &op.auth {
        AuthPlan::None => &[],
        AuthPlan::Apply(credentials) => credentials,
        AuthPlan::Missing(message) => {
            return Err(Error::new(ErrorKind::Misconfigured, message.to_string()));
        }
    };
    let Some(base) = connector.base_url.as_deref() else {
        return Err(Error::new(
            ErrorKind::Misconfigured,
            format!(
                "connector '{}' has no backend address; set `backend` in [connector.{}]",
                connector.name, connector.name
            ),
        ));
    };

    let mut violations = Vec::new();
    let url = build_url(base, op, &bound, credentials, &mut violations);
    let mut headers = build_headers(op, parts, &bound, credentials, &mut violations)?;
    if !violations.is_empty() {
        return Err(Error::invalid(violations));
    }

    let mut request = connector
        .client
        .request(parts.method.clone(), url)
        .timeout(connector.timeout);
    match bound.body {
        OutBody::Empty => {}
        OutBody::Bytes {
            bytes,
            content_type,
        } => {
            headers.insert(header::CONTENT_TYPE, content_type);
            request = request.body(bytes);
        }
        OutBody::Stream { body, content_type } => {
            if let Some(content_type) = content_type {
                headers.insert(header::CONTENT_TYPE, content_type);
            }
            if let Some(length) = parts.headers.get(header::CONTENT_LENGTH) {
                headers.insert(header::CONTENT_LENGTH, length.clone());
            }
            request = request.body(body);
        }
        OutBody::Form { multipart: false } => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            request = request.body(urlencoded(op, &bound));
        }
        OutBody::Form { multipart: true } => {
            request = request.multipart(multipart(op, bound.values, bound.files));
        }
    }
    let response = request
        .headers(headers)
        .send()
        .await
        .map_err(|e| upstream_error(e, connector, op))?;
    let mut response: http::Response<reqwest::Body> = response.into();
    strip_hop_by_hop(response.headers_mut());
    Ok(response)
}

fn upstream_error(error: reqwest::Error, connector: &ConnectorPlan, op: &OperationPlan) -> Error {
    // The URL may carry an API key in its query: keep it out of every message.
    let error = error.without_url();
    if let Some(limit) = body::limit_exceeded(&error) {
        return body::too_large(limit);
    }
    let kind = if error.is_timeout() {
        ErrorKind::UpstreamTimeout
    } else if error.is_builder() {
        ErrorKind::Internal
    } else {
        ErrorKind::UpstreamUnreachable
    };
    let what = format!("connector '{}', operation '{}'", connector.name, op.id);
    let detail = match kind {
        ErrorKind::UpstreamTimeout => format!(
            "{what}: the backend did not answer within {}",
            humane(connector.timeout)
        ),
        ErrorKind::Internal => format!("{what}: the upstream request could not be built"),
        _ if error.is_connect() => format!("{what}: could not connect to the backend"),
        _ => format!("{what}: the backend closed the connection or sent an invalid response"),
    };
    Error::new(kind, detail).with_cause(error)
}

fn humane(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

fn separator(format: CollectionFormat, in_query: bool) -> &'static str {
    match (format, in_query) {
        (CollectionFormat::Ssv, true) => "%20",
        (CollectionFormat::Ssv, false) => " ",
        (CollectionFormat::Tsv, true) => "%09",
        (CollectionFormat::Tsv, false) => "\t",
        (CollectionFormat::Pipes, _) => "|",
        (CollectionFormat::Csv | CollectionFormat::Multi, _) => ",",
    }
}

/// A value as one piece of text; arrays joined by their separator.
fn joined(param: &ParamPlan, value: &Value) -> String {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|i| value_text(i).into_owned())
            .collect::<Vec<_>>()
            .join(separator(param.collection, false)),
        other => value_text(other).into_owned(),
    }
}

fn build_url(
    base: &str,
    op: &OperationPlan,
    bound: &Bound,
    credentials: &[Credential],
    violations: &mut Vec<Violation>,
) -> String {
    let mut url = String::with_capacity(base.len() + 96);
    url.push_str(base);
    for segment in &op.segments {
        url.push('/');
        let start = url.len();
        let mut first_param = None;
        for piece in segment {
            match piece {
                UpstreamPiece::Literal(literal) => url.push_str(literal),
                UpstreamPiece::Param(index) => {
                    let param = op.params.get(*index);
                    first_param = first_param.or(param);
                    if let (Some(param), Some(Some((value, _)))) = (param, bound.values.get(*index))
                    {
                        encode::push_segment(&mut url, &joined(param, value), param.double_encode);
                    }
                }
            }
        }
        if let Some(param) = first_param {
            let segment = url.get(start..).unwrap_or_default();
            if segment == "." || segment == ".." {
                violations.push(Violation::parameter(
                    param.input,
                    &param.name,
                    format!(
                        "path parameter '{}': {:?} would make a dot segment, which cannot be sent safely",
                        param.name, segment
                    ),
                ));
            }
        }
    }

    let mut first = true;
    let mut next = |url: &mut String| {
        url.push(if first { '?' } else { '&' });
        first = false;
    };
    for (param, slot) in op.params.iter().zip(&bound.values) {
        let (ParamLocation::Query, Some((value, _))) = (param.location, slot) else {
            continue;
        };
        match value {
            Value::Array(items) if param.collection == CollectionFormat::Multi => {
                for item in items {
                    next(&mut url);
                    encode::push_component(&mut url, &param.name);
                    url.push('=');
                    encode::push_component(&mut url, &value_text(item));
                }
            }
            Value::Array(items) => {
                next(&mut url);
                encode::push_component(&mut url, &param.name);
                url.push('=');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        url.push_str(separator(param.collection, true));
                    }
                    encode::push_component(&mut url, &value_text(item));
                }
            }
            other => {
                next(&mut url);
                encode::push_component(&mut url, &param.name);
                url.push('=');
                encode::push_component(&mut url, &value_text(other));
            }
        }
    }
    for credential in credentials {
        if let Credential::Query(pair) = credential {
            next(&mut url);
            url.push_str(pair.expose());
        }
    }
    url
}

fn build_headers(
    op: &OperationPlan,
    parts: &Parts,
    bound: &Bound,
    credentials: &[Credential],
    violations: &mut Vec<Violation>,
) -> Result<HeaderMap, Error> {
    let mut headers = HeaderMap::with_capacity(8);
    let mut cookie = String::new();
    for (param, slot) in op.params.iter().zip(&bound.values) {
        let Some((value, origin)) = slot else {
            continue;
        };
        match param.location {
            ParamLocation::Header => {
                let Some(name) = &param.header else {
                    continue;
                };
                let header_value = match (origin, &param.default_header) {
                    (Origin::Default, Some(Ok(default))) => default.clone(),
                    (Origin::Default, Some(Err(message))) => {
                        return Err(Error::new(ErrorKind::Misconfigured, message.clone()));
                    }
                    _ => {
                        let text = joined(param, value);
                        match HeaderValue::from_str(&text) {
                            Ok(v) => v,
                            Err(_) => {
                                let why = if text.contains(['\r', '\n']) {
                                    "must not contain CR or LF"
                                } else {
                                    "contains a character not allowed in a header"
                                };
                                violations.push(Violation::parameter(
                                    param.input,
                                    &param.name,
                                    format!("header parameter '{}': the value {why}", param.name),
                                ));
                                continue;
                            }
                        }
                    }
                };
                headers.append(name.clone(), header_value);
            }
            ParamLocation::Cookie => {
                if !cookie.is_empty() {
                    cookie.push_str("; ");
                }
                cookie.push_str(&param.name);
                cookie.push('=');
                encode::push_component(&mut cookie, &joined(param, value));
            }
            _ => {}
        }
    }
    for name in [header::ACCEPT, header::ACCEPT_LANGUAGE] {
        if !headers.contains_key(&name)
            && let Some(value) = parts.headers.get(&name)
        {
            headers.insert(name, value.clone());
        }
    }
    for credential in credentials {
        match credential {
            Credential::Header(name, value) => {
                headers.insert(name.clone(), value.clone());
            }
            Credential::Cookie(pair) => {
                if !cookie.is_empty() {
                    cookie.push_str("; ");
                }
                cookie.push_str(pair.expose());
            }
            Credential::Query(_) => {}
        }
    }
    if !cookie.is_empty() {
        match HeaderValue::from_str(&cookie) {
            Ok(mut value) => {
                value.set_sensitive(true);
                headers.insert(header::COOKIE, value);
            }
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    "the upstream Cookie header could not be built",
                ));
            }
        }
    }
    Ok(headers)
}

/// Form values as `application/x-www-form-urlencoded`.
fn urlencoded(op: &OperationPlan, bound: &Bound) -> String {
    let mut out = String::new();
    let pair = |out: &mut String, name: &str, value: &str| {
        if !out.is_empty() {
            out.push('&');
        }
        encode::push_component(out, name);
        out.push('=');
        encode::push_component(out, value);
    };
    for (param, slot) in op.params.iter().zip(&bound.values) {
        let (ParamLocation::FormData, Some((value, _))) = (param.location, slot) else {
            continue;
        };
        match value {
            Value::Array(items) if param.collection == CollectionFormat::Multi => {
                for item in items {
                    pair(&mut out, &param.name, &value_text(item));
                }
            }
            other => pair(&mut out, &param.name, &joined(param, other)),
        }
    }
    for file in &bound.files {
        if let Some(param) = op.params.get(file.param) {
            pair(&mut out, &param.name, &String::from_utf8_lossy(&file.bytes));
        }
    }
    out
}

/// Form values and files as `multipart/form-data`.
fn multipart(
    op: &OperationPlan,
    values: Vec<Option<(Value, Origin)>>,
    files: Vec<crate::bind::FilePart>,
) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new();
    for (param, slot) in op.params.iter().zip(values) {
        let (ParamLocation::FormData, Some((value, _))) = (param.location, slot) else {
            continue;
        };
        match value {
            Value::Array(items) if param.collection == CollectionFormat::Multi => {
                for item in &items {
                    form = form.text(param.name.clone(), value_text(item).into_owned());
                }
            }
            other => form = form.text(param.name.clone(), joined(param, &other)),
        }
    }
    for file in files {
        let Some(param) = op.params.get(file.param) else {
            continue;
        };
        let length = file.bytes.len() as u64;
        let mut part =
            reqwest::multipart::Part::stream_with_length(reqwest::Body::from(file.bytes), length);
        if let Some(name) = file.file_name {
            part = part.file_name(name);
        }
        if let Some(content_type) = &file.content_type {
            part = match part.mime_str(content_type) {
                Ok(part) => part,
                Err(_) => continue,
            };
        }
        form = form.part(param.name.clone(), part);
    }
    form
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): `Connection` and the headers it names,
/// `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
        headers.remove(header::CONNECTION);
    }
    for name in [
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    for name in ["keep-alive", "proxy-connection"] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn strips_hop_by_hop_headers_and_those_connection_names() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop"),
        );
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert("proxy-authenticate", HeaderValue::from_static("Basic"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        headers.insert("x-kept", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut headers);
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "x-kept"]);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(humane(Duration::from_secs(30)), "30s");
        assert_eq!(humane(Duration::from_millis(250)), "250ms");
    }
}
