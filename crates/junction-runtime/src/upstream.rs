//! Upstream: build the backend request exactly as the definition says, call it with the
//! pooled client, and pass the answer back.
//!
//! The URL is the base (definition or `backend`), then the template with each path value
//! encoded as one segment, then the query per `collectionFormat`. Only declared header
//! parameters travel, plus the client's `Accept` and `Accept-Language`; the client's
//! `Authorization` and `Cookie` never do. The response keeps status, headers (minus
//! hop-by-hop ones) and a streamed body.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use junction_model::{CollectionFormat, ParamLocation};
use serde_json::Value;
use tokio::time::Sleep;

use crate::auth::{AuthPlan, Credential};
use crate::bind::{Bound, FilePart, Origin, OutBody};
use crate::body::{self, DeadlinePassed, RequestBody, UpstreamBody};
use crate::encode;
use crate::error::{Error, ErrorKind, Violation};
use crate::gateway::ConnectorPlan;
use crate::plan::{OperationPlan, ParamPlan, UpstreamPiece, value_text};
use crate::resilience::concurrency::Slot;
use crate::resilience::retry::{Attempt, is_idempotent, retry_after};
use crate::telemetry::StageTimings;
use crate::telemetry::trace::{Span, UpstreamCall};

mod pool;
pub use pool::PoolSnapshot;
pub(crate) use pool::{ClientError, HttpClient};

/// The `User-Agent` of upstream requests.
pub const USER_AGENT: &str = concat!("junction/", env!("CARGO_PKG_VERSION"));

/// Installs `ring` as the process's TLS crypto provider, if none is installed yet.
///
/// The workspace builds rustls without its default provider (aws-lc, which needs a C
/// toolchain and a long build). The gateway's client names its provider itself; call this
/// before building other rustls users, such as a `reqwest::Client` in tests.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds a pooled client (see [`pool`]). One is shared by every connector with the same
/// connect timeout.
pub(crate) fn client(connect_timeout: Duration) -> Result<HttpClient, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())
        .map_err(|e| format!("cannot set up TLS for upstream calls: {e}"))?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let tls = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(pool::IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .build(https);
    Ok(HttpClient::new(connect_timeout, tls))
}

/// Where a connector's requests go: scheme, host and base path, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    scheme: Scheme,
    authority: Authority,
    /// Without a trailing slash; empty for `/`.
    base_path: String,
}

impl Target {
    /// `host:port` as written, which names the backend's guards.
    pub(crate) fn authority(&self) -> &str {
        self.authority.as_str()
    }

    /// `scheme://authority/base`, without a trailing slash.
    pub(crate) fn base_url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

impl Target {
    pub(crate) fn parse(base: &str) -> Result<Target, String> {
        let uri: Uri = base
            .parse()
            .map_err(|e| format!("`{base}` is not a usable backend address ({e})"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(format!("`{base}` is not an absolute http(s) URL"));
        };
        if *scheme != Scheme::HTTP && *scheme != Scheme::HTTPS {
            return Err(format!("`{base}` is not an http:// or https:// URL"));
        }
        Ok(Target {
            scheme: scheme.clone(),
            authority: authority.clone(),
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }
}

/// Where a request with a policy plan was sent: what its response side needs to read the
/// backend's next links (relative ones resolve against `url`; they must stay below
/// `base`). It travels with the answer, through the cache too. The URL is kept without its
/// query, which may carry credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentTo {
    pub url: String,
    pub base: String,
}

impl SentTo {
    pub(crate) fn new(url: &str, base: &str) -> Self {
        SentTo {
            url: url.split_once('?').map_or(url, |(path, _)| path).to_owned(),
            base: base.to_owned(),
        }
    }
}

/// The credentials an operation sends, or why it cannot be called.
pub(crate) fn credentials(op: &OperationPlan) -> Result<&[Credential], Error> {
    match &op.auth {
        AuthPlan::None => Ok(&[]),
        AuthPlan::Apply(credentials) => Ok(credentials),
        AuthPlan::Missing(message) => {
            Err(Error::new(ErrorKind::Misconfigured, message.to_string()))
        }
    }
}

/// The connector's base URL, or why it has none.
pub(crate) fn no_target(connector: &ConnectorPlan) -> Error {
    Error::new(
        ErrorKind::Misconfigured,
        format!(
            "connector '{}' has no backend address; set `backend` in [connector.{}]",
            connector.name, connector.name
        ),
    )
}

/// Sends the bound request to the backend and returns its response.
pub(crate) async fn call(
    connector: &ConnectorPlan,
    op: &OperationPlan,
    parts: &Parts,
    bound: Bound,
) -> Result<http::Response<UpstreamBody>, Error> {
    let credentials = crate::connection::credentials(connector, op, parts)?;
    if let Some(plan) = &op.policies {
        return crate::policy::send(connector, op, plan, parts, bound, credentials).await;
    }
    let Some(target) = &connector.target else {
        return Err(no_target(connector));
    };

    let mut violations = Vec::new();
    let mut path = String::with_capacity(target.base_path.len() + 96);
    path.push_str(&target.base_path);
    push_path(&mut path, op, &bound, &mut violations);
    let mut first = !push_query(&mut path, op, &bound);
    push_credential_query(&mut path, credentials, &mut first);
    let mut headers = build_headers(op, parts, &bound.values, credentials, &mut violations)?;
    if !violations.is_empty() {
        return Err(Error::invalid(violations));
    }
    let path = PathAndQuery::try_from(path).map_err(|e| {
        Error::new(ErrorKind::Internal, "the upstream URL could not be built").with_cause(e)
    })?;
    let uri = Uri::from_parts({
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(target.scheme.clone());
        uri.authority = Some(target.authority.clone());
        uri.path_and_query = Some(path);
        uri
    })
    .map_err(|e| {
        Error::new(ErrorKind::Internal, "the upstream URL could not be built").with_cause(e)
    })?;

    let body = request_body(
        op,
        parts,
        bound.body,
        &bound.values,
        &bound.files,
        &mut headers,
    )?;
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    let content_type = headers.get(header::CONTENT_TYPE).cloned();
    let retry_headers = || {
        let mut headers = build_headers(op, parts, &bound.values, credentials, &mut Vec::new())
            .unwrap_or_default();
        if let Some(content_type) = &content_type {
            headers.insert(header::CONTENT_TYPE, content_type.clone());
        }
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        headers
    };
    let (response, held) = exchange(
        connector,
        op,
        &parts.method,
        uri,
        headers,
        body,
        retry_headers,
    )
    .await?;
    let timeout = connector.timeout;
    let mut response = response.map(|incoming| UpstreamBody::new(incoming, held, timeout));
    strip_hop_by_hop(response.headers_mut());
    Ok(response)
}

/// The body to send: `bound` as bytes, a stream or a form, with its Content-Type set in
/// `headers`.
pub(crate) fn request_body(
    op: &OperationPlan,
    parts: &Parts,
    body: OutBody,
    values: &[Option<(Value, Origin)>],
    files: &[FilePart],
    headers: &mut HeaderMap,
) -> Result<RequestBody, Error> {
    Ok(match body {
        OutBody::Empty => RequestBody::Empty,
        OutBody::Bytes {
            bytes,
            content_type,
        } => {
            headers.insert(header::CONTENT_TYPE, content_type);
            RequestBody::full(bytes)
        }
        OutBody::Json {
            value,
            original,
            content_type,
        } => {
            headers.insert(header::CONTENT_TYPE, content_type);
            match original {
                Some(bytes) => RequestBody::full(bytes),
                None => RequestBody::full(serde_json::to_vec(&value).map_err(|e| {
                    Error::new(ErrorKind::Internal, "could not write the request body")
                        .with_cause(e)
                })?),
            }
        }
        OutBody::Stream { body, content_type } => {
            if let Some(content_type) = content_type {
                headers.insert(header::CONTENT_TYPE, content_type);
            }
            if let Some(length) = parts.headers.get(header::CONTENT_LENGTH) {
                headers.insert(header::CONTENT_LENGTH, length.clone());
            }
            body
        }
        OutBody::Form { multipart: false } => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            RequestBody::full(urlencoded(op, values, files))
        }
        OutBody::Form { multipart: true } => {
            let (content_type, bytes) = multipart(op, values, files);
            headers.insert(header::CONTENT_TYPE, content_type);
            RequestBody::full(bytes)
        }
    })
}

/// What an upstream response holds until its body has been read: the deadline the body
/// must meet and, under a concurrency limit, the backend's slot.
pub(crate) struct Held {
    pub deadline: Pin<Box<Sleep>>,
    pub slot: Option<Slot>,
}

/// One upstream exchange under the connector's timeout, through the backend's guards:
///
/// 1. a backend's earlier `429` with `Retry-After` for this connection is answered here
///    (429) until it has passed; the per-backend rate limit is counted;
/// 2. the circuit breaker lets the call through, or answers 503 at once;
/// 3. under a concurrency limit, a slot is taken (held until the body has been read);
/// 4. the request is sent, and sent once more on a fresh connection (with
///    `retry_headers`) when an idempotent in-memory request met a pooled connection the
///    backend had closed; with `[connector.NAME.retry]`, idempotent in-memory requests are
///    also retried after connection failures and `retry_on` statuses, with jittered
///    backoff, never sooner than the backend's `Retry-After`, within the retry budget and
///    the connector's timeout;
/// 5. the outcome feeds the breaker; a `503` with `Retry-After` holds it open that long and
///    a `429` with `Retry-After` starts the hold-off of step 1.
///
/// Returns the response head with what its body must hold on to.
pub(crate) async fn exchange(
    connector: &ConnectorPlan,
    op: &OperationPlan,
    method: &http::Method,
    uri: Uri,
    mut headers: HeaderMap,
    body: RequestBody,
    retry_headers: impl Fn() -> HeaderMap,
) -> Result<(http::Response<hyper::body::Incoming>, Held), Error> {
    // The trace context travels on every call, each with its own span id.
    let mut traced = UpstreamCall::start();
    let mut span = traced.as_mut().and_then(|call| call.span.take());
    if let Some(call) = &traced {
        call.apply(&mut headers);
    }
    if let Some(span) = &mut span {
        span.rename(format!("{method} {}/{}", connector.name, op.id));
    }
    let retry_headers = || {
        let mut headers = retry_headers();
        if let Some(call) = &traced {
            call.apply(&mut headers);
        }
        headers
    };
    let traffic = &connector.traffic;
    // The guards protect the connector's own backend; a host policy may send elsewhere.
    let guard = traffic
        .guard
        .as_deref()
        .filter(|g| uri.authority().is_some_and(|a| a.as_str() == g.authority));
    if let Some(guard) = guard {
        if let Some(wait) = guard.holds.remaining(&connector.name) {
            return Err(Error::new(
                ErrorKind::RateLimited,
                format!(
                    "connector '{}': the backend asked not to be called again for {}s (429 with Retry-After)",
                    connector.name,
                    crate::ratelimit::ceil_secs(wait).max(1)
                ),
            )
            .with_retry_after(wait));
        }
        if let Some(limit) = &guard.per_backend {
            crate::traffic::check(limit, "all", &|| {
                format!("the backend of connector '{}'", connector.name)
            })
            .await?;
        }
    }
    let breaker = guard.and_then(|g| g.breaker.as_ref());
    let ticket = match breaker {
        Some(breaker) => Some(breaker.acquire().map_err(|wait| {
            Error::new(
                ErrorKind::CircuitOpen,
                format!(
                    "connector '{}': the backend failed repeatedly; calls resume in {}s",
                    connector.name,
                    crate::ratelimit::ceil_secs(wait).max(1)
                ),
            )
            .with_retry_after(wait)
        })?),
        None => None,
    };
    let slot = match guard.and_then(|g| g.concurrency.as_ref()) {
        Some(limit) => Some(limit.acquire().await.ok_or_else(|| {
            Error::new(
                ErrorKind::BackendBusy,
                format!(
                    "connector '{}': the backend has as many requests in flight as `max_concurrency` allows",
                    connector.name
                ),
            )
            .with_retry_after(Duration::from_secs(1))
        })?),
        None => None,
    };

    // An idempotent request whose body is in memory may be sent again.
    let replay: Option<(Uri, Option<Bytes>)> = match &body {
        _ if !is_idempotent(method) => None,
        RequestBody::Empty => Some((uri.clone(), None)),
        RequestBody::Full(Some(bytes)) => Some((uri.clone(), Some(bytes.clone()))),
        _ => None,
    };
    let retry = traffic.retry.as_deref();
    if let Some(retry) = retry {
        retry.on_request();
    }
    let again = |(uri, bytes): &(Uri, Option<Bytes>)| {
        let body = match bytes {
            Some(bytes) => RequestBody::full(bytes.clone()),
            None => RequestBody::Empty,
        };
        let mut request = http::Request::new(body);
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = retry_headers();
        request
    };

    // Scheme, host and path of the call (never its query), for the client span.
    let span_uri = span.as_ref().map(|_| uri.clone());
    let timeout = connector.timeout;
    let started = std::time::Instant::now();
    let mut deadline = Box::pin(tokio::time::sleep(timeout));
    let mut next = {
        let mut request = http::Request::new(body);
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        request
    };
    let mut attempt = 0;
    let outcome = loop {
        let exchange = async {
            match connector.client.request(next).await {
                // The keep-alive race: nothing reached the backend; once more, at once.
                Err(error)
                    if let Some(replay) = &replay
                        && stale_connection(&error) =>
                {
                    tracing::debug!(connector = %connector.name, operation = %op.id, "retrying on a fresh connection");
                    connector.client.request(again(replay)).await
                }
                other => other,
            }
        };
        let response = tokio::select! {
            response = exchange => response,
            () = &mut deadline => {
                let ended = std::time::Instant::now();
                connector.upstream_metrics.latency.record(ended.duration_since(started));
                if let (Some(breaker), Some(ticket)) = (breaker, ticket) {
                    breaker.record(ticket, false);
                }
                if let Some(mut span) = span.take() {
                    span.begin(started);
                    client_attributes(&mut span, connector, op, method, &span_uri, attempt, None);
                    span.fail(ErrorKind::UpstreamTimeout.slug());
                    span.end(ended);
                }
                return Err(Error::new(
                    ErrorKind::UpstreamTimeout,
                    format!(
                        "connector '{}', operation '{}': the backend did not answer within {}",
                        connector.name, op.id, humane(timeout)
                    ),
                ));
            }
        };
        let (Some(retry), Some(replay)) = (retry, &replay) else {
            break response;
        };
        let attempted = match &response {
            Ok(answer) => Attempt::Answered(answer.status(), retry_after(answer.headers())),
            Err(_) => Attempt::Failed,
        };
        let left = deadline
            .deadline()
            .saturating_duration_since(tokio::time::Instant::now());
        let Some(wait) = retry.next(method, attempt, attempted, left) else {
            break response;
        };
        drop(response);
        tracing::debug!(connector = %connector.name, operation = %op.id, attempt = attempt + 1, wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "retrying");
        tokio::time::sleep(wait).await;
        attempt += 1;
        next = again(replay);
    };

    let ended = std::time::Instant::now();
    let elapsed = ended.duration_since(started);
    connector.upstream_metrics.latency.record(elapsed);
    if let Some(mut span) = span {
        span.begin(started);
        let status = outcome.as_ref().ok().map(http::Response::status);
        client_attributes(&mut span, connector, op, method, &span_uri, attempt, status);
        match &outcome {
            Ok(response) if response.status().as_u16() >= 400 => {
                span.fail(response.status().as_str().to_owned());
            }
            Ok(_) => {}
            Err(error) => span.fail(upstream_error_kind(error).slug()),
        }
        span.end(ended);
    }
    match outcome {
        Ok(mut response) => {
            StageTimings::of(response.extensions_mut()).upstream = Some(elapsed);
            let status = response.status();
            if let (Some(breaker), Some(ticket)) = (breaker, ticket) {
                breaker.record(ticket, !breaker.is_failure(status));
            }
            if let Some(guard) = guard
                && matches!(status.as_u16(), 429 | 503)
                && let Some(wait) = retry_after(response.headers())
            {
                if status.as_u16() == 429 {
                    guard.holds.hold(&connector.name, wait);
                } else if let Some(breaker) = breaker {
                    breaker.hold_open(wait);
                }
            }
            Ok((response, Held { deadline, slot }))
        }
        Err(error) => {
            if let (Some(breaker), Some(ticket)) = (breaker, ticket) {
                breaker.record(ticket, false);
            }
            Err(upstream_error(error, connector, op))
        }
    }
}

/// The attributes of an upstream call's client span: method, scheme, host, port and path
/// (never the query, which may carry a key, nor any header), status and retries.
fn client_attributes(
    span: &mut Span,
    connector: &ConnectorPlan,
    op: &OperationPlan,
    method: &http::Method,
    uri: &Option<Uri>,
    retries: u32,
    status: Option<http::StatusCode>,
) {
    span.set("http.request.method", method.as_str().to_owned());
    if let Some(uri) = uri {
        let scheme = uri.scheme_str().unwrap_or("http");
        let host = uri.host().unwrap_or_default();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        span.set(
            "url.full",
            format!("{scheme}://{host}:{port}{}", uri.path()),
        );
        span.set("server.address", host.to_owned());
        span.set("server.port", i64::from(port));
    }
    if let Some(status) = status {
        span.set("http.response.status_code", i64::from(status.as_u16()));
    }
    if retries > 0 {
        span.set("http.request.resend_count", i64::from(retries));
    }
    span.set("junction.connector", connector.name.clone());
    span.set("junction.operation", op.id.clone());
}

/// The problem type a failed exchange becomes.
fn upstream_error_kind(error: &ClientError) -> ErrorKind {
    if body::limit_exceeded(error).is_some() {
        ErrorKind::PayloadTooLarge
    } else if body::timed_out(error).is_some() {
        ErrorKind::RequestTimeout
    } else if error.is_connect() && timed_out(error) {
        ErrorKind::UpstreamTimeout
    } else {
        ErrorKind::UpstreamUnreachable
    }
}

fn upstream_error(error: ClientError, connector: &ConnectorPlan, op: &OperationPlan) -> Error {
    if let Some(limit) = body::limit_exceeded(&error) {
        return body::too_large(limit);
    }
    if let Some(timed_out) = body::timed_out(&error) {
        return timed_out;
    }
    let what = format!("connector '{}', operation '{}'", connector.name, op.id);
    let (kind, detail) = if error.is_connect() {
        if timed_out(&error) {
            (
                ErrorKind::UpstreamTimeout,
                format!("{what}: could not connect to the backend in time"),
            )
        } else {
            (
                ErrorKind::UpstreamUnreachable,
                format!("{what}: could not connect to the backend"),
            )
        }
    } else {
        (
            ErrorKind::UpstreamUnreachable,
            format!("{what}: the backend closed the connection or sent an invalid response"),
        )
    };
    Error::new(kind, detail).with_cause(error)
}

/// Whether the request failed because the backend had closed a pooled connection: the
/// response never started.
fn stale_connection(error: &ClientError) -> bool {
    if error.is_connect() {
        return false;
    }
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(hyper) = e.downcast_ref::<hyper::Error>()
            && (hyper.is_incomplete_message() || hyper.is_canceled())
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            )
        {
            return true;
        }
        current = e.source();
    }
    false
}

fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        if e.is::<DeadlinePassed>() {
            return true;
        }
        current = e.source();
    }
    false
}

pub(crate) fn humane(duration: Duration) -> String {
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

/// Appends the operation's path: each template segment, values encoded as one segment.
pub(crate) fn push_path(
    url: &mut String,
    op: &OperationPlan,
    bound: &Bound,
    violations: &mut Vec<Violation>,
) {
    if op.segments.is_empty() {
        url.push('/');
    }
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
                        encode::push_segment(url, &joined(param, value), param.double_encode);
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
}

/// Appends `?` (or `&`) and the query parameters per `collectionFormat`. Returns whether
/// any was written.
pub(crate) fn push_query(url: &mut String, op: &OperationPlan, bound: &Bound) -> bool {
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
                    next(url);
                    encode::push_component(url, &param.name);
                    url.push('=');
                    encode::push_component(url, &value_text(item));
                }
            }
            Value::Array(items) => {
                next(url);
                encode::push_component(url, &param.name);
                url.push('=');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        url.push_str(separator(param.collection, true));
                    }
                    encode::push_component(url, &value_text(item));
                }
            }
            other => {
                next(url);
                encode::push_component(url, &param.name);
                url.push('=');
                encode::push_component(url, &value_text(other));
            }
        }
    }
    !first
}

/// Appends the API keys that travel in the query. `first` says whether a `?` is still due.
pub(crate) fn push_credential_query(
    url: &mut String,
    credentials: &[Credential],
    first: &mut bool,
) {
    for credential in credentials {
        if let Credential::Query(pair) = credential {
            // The credential replaces a parameter of the same name, as a header credential
            // does: one value, the connection's.
            let name = pair.expose().split('=').next().unwrap_or_default();
            if drop_query_pairs(url, name) {
                *first = !url.contains('?');
            }
            url.push(if *first { '?' } else { '&' });
            *first = false;
            url.push_str(pair.expose());
        }
    }
}

/// Removes every `name=…` pair (`name` as encoded) from the query of `url`; whether any was.
fn drop_query_pairs(url: &mut String, name: &str) -> bool {
    let Some((path, query)) = url.split_once('?') else {
        return false;
    };
    let matches = |pair: &str| pair.split('=').next() == Some(name);
    if !query.split('&').any(matches) {
        return false;
    }
    let kept: Vec<&str> = query.split('&').filter(|pair| !matches(pair)).collect();
    *url = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    true
}

pub(crate) fn build_headers(
    op: &OperationPlan,
    parts: &Parts,
    values: &[Option<(Value, Origin)>],
    credentials: &[Credential],
    violations: &mut Vec<Violation>,
) -> Result<HeaderMap, Error> {
    let mut headers = HeaderMap::with_capacity(8);
    let mut cookie = String::new();
    for (param, slot) in op.params.iter().zip(values) {
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
fn urlencoded(
    op: &OperationPlan,
    values: &[Option<(Value, Origin)>],
    files: &[FilePart],
) -> String {
    let mut out = String::new();
    let pair = |out: &mut String, name: &str, value: &str| {
        if !out.is_empty() {
            out.push('&');
        }
        encode::push_component(out, name);
        out.push('=');
        encode::push_component(out, value);
    };
    for (param, slot) in op.params.iter().zip(values) {
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
    for file in files {
        if let Some(param) = op.params.get(file.param) {
            pair(&mut out, &param.name, &String::from_utf8_lossy(&file.bytes));
        }
    }
    out
}

/// Form values and files as `multipart/form-data` (RFC 7578): the Content-Type with its
/// boundary, and the body.
fn multipart(
    op: &OperationPlan,
    values: &[Option<(Value, Origin)>],
    files: &[FilePart],
) -> (HeaderValue, Bytes) {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let boundary = format!(
        "junction-{:016x}{:016x}",
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    );
    let mut out: Vec<u8> = Vec::new();
    let part = |out: &mut Vec<u8>,
                name: &str,
                file: Option<(&Option<String>, &Option<String>)>,
                data: &[u8]| {
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"");
        out.extend_from_slice(quoted_name(name).as_bytes());
        out.push(b'"');
        if let Some((file_name, content_type)) = file {
            if let Some(file_name) = file_name {
                out.extend_from_slice(b"; filename=\"");
                out.extend_from_slice(quoted_name(file_name).as_bytes());
                out.push(b'"');
            }
            out.extend_from_slice(b"\r\nContent-Type: ");
            let content_type = content_type
                .as_deref()
                .filter(|t| HeaderValue::from_str(t).is_ok())
                .unwrap_or("application/octet-stream");
            out.extend_from_slice(content_type.as_bytes());
        }
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    };
    for (param, slot) in op.params.iter().zip(values) {
        let (ParamLocation::FormData, Some((value, _))) = (param.location, slot) else {
            continue;
        };
        match value {
            Value::Array(items) if param.collection == CollectionFormat::Multi => {
                for item in items {
                    part(&mut out, &param.name, None, value_text(item).as_bytes());
                }
            }
            other => part(&mut out, &param.name, None, joined(param, other).as_bytes()),
        }
    }
    for file in files {
        if let Some(param) = op.params.get(file.param) {
            part(
                &mut out,
                &param.name,
                Some((&file.file_name, &file.content_type)),
                &file.bytes,
            );
        }
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
    let content_type = HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}"))
        .unwrap_or(HeaderValue::from_static("multipart/form-data"));
    (content_type, Bytes::from(out))
}

/// A name or file name inside a quoted multipart header: quotes and line breaks escaped as
/// browsers do.
fn quoted_name(name: &str) -> String {
    name.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): `Connection` and the headers it names,
/// `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`; and `Server`,
/// which names the backend's software to whoever calls the gateway.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the (few) headers; most responses have nothing to remove.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
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
    }
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_hop_by_hop(k))
        .cloned()
        .collect();
    for name in present {
        headers.remove(name);
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
        || name == header::SERVER
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
        headers.insert(
            header::SERVER,
            HeaderValue::from_static("Apache/2.4.1 (Unix)"),
        );
        strip_hop_by_hop(&mut headers);
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "x-kept"]);
    }

    #[test]
    fn a_query_credential_replaces_a_parameter_of_its_name() {
        let credentials = [Credential::Query(crate::secret::Secret::new("code=s3cret"))];
        let mut url = "/items?code=mine&q=1".to_owned();
        let mut first = false;
        push_credential_query(&mut url, &credentials, &mut first);
        assert_eq!(url, "/items?q=1&code=s3cret");
        let mut url = "/items?code=mine".to_owned();
        let mut first = false;
        push_credential_query(&mut url, &credentials, &mut first);
        assert_eq!(url, "/items?code=s3cret");
        let mut url = "/items".to_owned();
        let mut first = true;
        push_credential_query(&mut url, &credentials, &mut first);
        assert_eq!(url, "/items?code=s3cret");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(humane(Duration::from_secs(30)), "30s");
        assert_eq!(humane(Duration::from_millis(250)), "250ms");
    }
}
