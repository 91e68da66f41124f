//! One exchange with the backend, through its guards, with its transport.
//!
//! 1. [`admit`]: a backend's earlier `429` with `Retry-After` for this connection is
//!    answered here (429) until it has passed; the per-backend limit is counted; the
//!    circuit breaker lets the call through or answers 503 at once; under a concurrency
//!    limit a slot is taken (held until the body has been read).
//! 2. [`attempts`]: the request goes out through the connector's transport, once more on a
//!    fresh connection when an idempotent in-memory request met a pooled connection the
//!    backend had closed; with `[connector.NAME.retry]`, idempotent in-memory requests are
//!    also retried after connection failures and `retry_on` statuses, with jittered
//!    backoff, never sooner than the backend's `Retry-After`, within the retry budget and
//!    the connector's timeout.
//! 3. [`settle`]: the outcome feeds the breaker; a `503` with `Retry-After` holds it open
//!    that long and a `429` with `Retry-After` starts the hold-off of step 1; the latency
//!    goes to the connector's histogram and the client span ends.

use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Uri};
use hyper::body::Incoming;
use tokio::time::Sleep;

use super::pool::ClientError;
use crate::body::{self, DeadlinePassed, RequestBody};
use crate::error::{Error, ErrorKind};
use crate::gateway::ConnectorPlan;
use crate::plan::OperationPlan;
use crate::resilience::breaker::Ticket;
use crate::resilience::concurrency::Slot;
use crate::resilience::retry::{Attempt, is_idempotent, retry_after};
use crate::telemetry::StageTimings;
use crate::telemetry::trace::{Span, UpstreamCall};
use crate::traffic::BackendGuard;

/// What an upstream response holds until its body has been read: the deadline the body
/// must meet and, under a concurrency limit, the backend's slot.
pub(crate) struct Held {
    pub deadline: Pin<Box<Sleep>>,
    pub slot: Option<Slot>,
}

/// One request to a backend, as [`exchange`] sends it.
pub(crate) struct Call<'a> {
    pub connector: &'a ConnectorPlan,
    pub op: &'a OperationPlan,
    pub method: &'a http::Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: RequestBody,
}

/// Sends `call` through the backend's guards and transport (see the module documentation);
/// returns the response head with what its body must hold on to.
pub(crate) async fn exchange(call: Call<'_>) -> Result<(http::Response<Incoming>, Held), Error> {
    let Call {
        connector,
        op,
        method,
        uri,
        mut headers,
        body,
    } = call;
    // The trace context travels on every call, each with its own span id.
    let mut traced = UpstreamCall::start();
    let mut span = traced.as_mut().and_then(|call| call.span.take());
    if let Some(call) = &traced {
        call.apply(&mut headers);
    }
    if let Some(span) = &mut span {
        span.rename(format!("{method} {}/{}", connector.name, op.id));
    }
    let admitted = admit(connector, &uri).await?;
    let replay = Replay::of(op, method, &uri, &headers, &body);
    // Scheme, host and path of the call (never its query), for the client span.
    let span_uri = span.as_ref().map(|_| uri.clone());
    let started = Instant::now();
    let mut deadline = Box::pin(tokio::time::sleep(connector.timeout));
    let mut request = http::Request::new(body);
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    let (outcome, retries) = attempts(connector, op, request, replay.as_ref(), &mut deadline).await;
    let ended = Instant::now();
    connector
        .upstream_metrics
        .latency
        .record(ended.duration_since(started));
    if let Some(mut span) = span {
        span.begin(started);
        let status = outcome.as_ref().ok().map(http::Response::status);
        client_attributes(
            &mut span,
            (connector, op, method),
            &span_uri,
            retries,
            status,
        );
        match &outcome {
            Ok(response) if response.status().as_u16() >= 400 => {
                span.fail(response.status().as_str().to_owned());
            }
            Ok(_) => {}
            Err(failure) => span.fail(failure.kind().slug()),
        }
        span.end(ended);
    }
    let elapsed = ended.duration_since(started);
    let (response, slot) = settle(connector, op, admitted, outcome, elapsed)?;
    Ok((response, Held { deadline, slot }))
}

/// What the guards let through: the guard of the connector's backend (when the call goes
/// there), the breaker's ticket and the concurrency slot.
struct Admitted<'a> {
    guard: Option<&'a BackendGuard>,
    ticket: Option<Ticket<'a>>,
    slot: Option<Slot>,
}

/// Step 1: the backend's guards (only for the connector's own backend; a host policy may
/// send elsewhere).
async fn admit<'a>(connector: &'a ConnectorPlan, uri: &Uri) -> Result<Admitted<'a>, Error> {
    let guard = connector
        .traffic
        .guard
        .as_deref()
        .filter(|g| uri.authority().is_some_and(|a| a.as_str() == g.authority));
    let Some(guard) = guard else {
        return Ok(Admitted {
            guard: None,
            ticket: None,
            slot: None,
        });
    };
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
    let ticket = match &guard.breaker {
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
    let slot = match &guard.concurrency {
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
    Ok(Admitted {
        guard: Some(guard),
        ticket,
        slot,
    })
}

/// What it takes to send a request again: an idempotent one whose body is in memory.
struct Replay {
    method: http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Option<Bytes>,
}

impl Replay {
    fn of(
        op: &OperationPlan,
        method: &http::Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &RequestBody,
    ) -> Option<Self> {
        // The operation's own method may be rewritten by a policy: both must allow it.
        if !(is_idempotent(method) || (op.idempotent && method == http::Method::POST)) {
            return None;
        }
        let body = match body {
            RequestBody::Empty => None,
            RequestBody::Full(Some(bytes)) => Some(bytes.clone()),
            _ => return None,
        };
        Some(Replay {
            method: method.clone(),
            uri: uri.clone(),
            headers: headers.clone(),
            body,
        })
    }

    fn request(&self) -> http::Request<RequestBody> {
        let body = match &self.body {
            Some(bytes) => RequestBody::full(bytes.clone()),
            None => RequestBody::Empty,
        };
        let mut request = http::Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// Why an exchange gave no response.
enum Failure {
    Client(ClientError),
    TimedOut,
}

impl Failure {
    fn kind(&self) -> ErrorKind {
        match self {
            Failure::Client(error) => upstream_error_kind(error),
            Failure::TimedOut => ErrorKind::UpstreamTimeout,
        }
    }
}

/// Step 2: the request through the transport, resent and retried while that may help,
/// under the deadline. Returns the outcome and how many times it was resent.
async fn attempts(
    connector: &ConnectorPlan,
    op: &OperationPlan,
    mut next: http::Request<RequestBody>,
    replay: Option<&Replay>,
    deadline: &mut Pin<Box<Sleep>>,
) -> (Result<http::Response<Incoming>, Failure>, u32) {
    let retry = connector.traffic.retry.as_deref();
    if let Some(retry) = retry {
        retry.on_request();
    }
    let mut attempt = 0;
    loop {
        let exchange = async {
            match connector.transport.request(next).await {
                // The keep-alive race: nothing reached the backend; once more, at once.
                Err(error)
                    if let Some(replay) = replay
                        && stale_connection(&error) =>
                {
                    tracing::debug!(connector = %connector.name, operation = %op.id, "retrying on a fresh connection");
                    connector.transport.request(replay.request()).await
                }
                other => other,
            }
        };
        let response = tokio::select! {
            response = exchange => response.map_err(Failure::Client),
            () = deadline.as_mut() => return (Err(Failure::TimedOut), attempt),
        };
        let (Some(retry), Some(replay)) = (retry, replay) else {
            return (response, attempt);
        };
        let attempted = match &response {
            Ok(answer) => Attempt::Answered(answer.status(), retry_after(answer.headers())),
            Err(_) => Attempt::Failed,
        };
        let left = deadline
            .deadline()
            .saturating_duration_since(tokio::time::Instant::now());
        let Some(wait) = retry.next(attempt, attempted, left) else {
            return (response, attempt);
        };
        drop(response);
        tracing::debug!(connector = %connector.name, operation = %op.id, attempt = attempt + 1, wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "retrying");
        tokio::time::sleep(wait).await;
        attempt += 1;
        next = replay.request();
    }
}

/// Step 3: the outcome fed back to the guards, and turned into the response or the error.
fn settle(
    connector: &ConnectorPlan,
    op: &OperationPlan,
    admitted: Admitted<'_>,
    outcome: Result<http::Response<Incoming>, Failure>,
    elapsed: Duration,
) -> Result<(http::Response<Incoming>, Option<Slot>), Error> {
    let Admitted {
        guard,
        ticket,
        slot,
    } = admitted;
    let breaker = guard.and_then(|g| g.breaker.as_ref());
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
            Ok((response, slot))
        }
        Err(failure) => {
            // An agent's allowlist refused: the backend was not asked, so the breaker learns
            // nothing (the ticket is let go without a verdict).
            let refused = matches!(
                &failure,
                Failure::Client(ClientError::AgentAnswered {
                    forbidden: true,
                    ..
                })
            );
            if let (Some(breaker), Some(ticket)) = (breaker, ticket)
                && !refused
            {
                breaker.record(ticket, false);
            }
            Err(match failure {
                Failure::TimedOut => Error::new(
                    ErrorKind::UpstreamTimeout,
                    format!(
                        "connector '{}', operation '{}': the backend did not answer within {}",
                        connector.name,
                        op.id,
                        humane(connector.timeout)
                    ),
                ),
                Failure::Client(error) => upstream_error(error, connector, op),
            })
        }
    }
}

/// The attributes of an upstream call's client span: method, scheme, host, port and path
/// (never the query, which may carry a key, nor any header), status and retries.
fn client_attributes(
    span: &mut Span,
    (connector, op, method): (&ConnectorPlan, &OperationPlan, &http::Method),
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
    // The agent hop: the call went through an outbound agent of this pool.
    if let super::Transport::Agent { pool, .. } = &connector.transport {
        span.set("junction.via", format!("agent:{pool}"));
    }
}

/// The problem type a failed exchange becomes.
fn upstream_error_kind(error: &ClientError) -> ErrorKind {
    if let ClientError::NoAgent(_) = error {
        ErrorKind::AgentUnavailable
    } else if let ClientError::AgentAnswered {
        forbidden: true, ..
    } = error
    {
        ErrorKind::Forbidden
    } else if body::limit_exceeded(error).is_some() {
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
    let (kind, detail) = if let ClientError::NoAgent(pool) = &error {
        (
            ErrorKind::AgentUnavailable,
            format!("{what}: no agent of pool '{pool}' is connected (see `junction agents list`)"),
        )
    } else if let ClientError::AgentAnswered { forbidden, detail } = &error {
        let kind = if *forbidden {
            ErrorKind::Forbidden
        } else {
            ErrorKind::UpstreamUnreachable
        };
        (kind, format!("{what}: {detail}"))
    } else if let ClientError::AgentLost(_) = &error {
        (
            ErrorKind::UpstreamUnreachable,
            format!("{what}: the agent's connection ended before the backend's answer came"),
        )
    } else if error.is_connect() {
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
    // A request lost with its agent's connection is sent through another agent.
    if let ClientError::AgentLost(_) = error {
        return true;
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
