//! The pipeline's one error type: what went wrong, whose fault it is, and its HTTP status.
//!
//! Every stage returns [`Error`]. It carries a [`ErrorKind`] (which decides status, title
//! and problem type), a safe `detail` for the client, the list of input [`Violation`]s for
//! 400s, and an optional `cause` that only goes to the log. Turning it into an HTTP
//! response is `junction-server`'s job, done in one place (`problem.rs`).

use std::fmt;

use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode, header};
use junction_model::Method;
use serde::Serialize;

/// A boxed error, as the HTTP stack passes them around.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The request was wrong; retrying it unchanged will fail again.
    Client,
    /// The backend failed or could not be reached.
    Upstream,
    /// The gateway itself (its configuration or a bug).
    Internal,
}

/// The base of problem type URIs: the type of a problem is this and [`ErrorKind::slug`].
pub const PROBLEM_BASE: &str = "https://junction.dev/problems/";

/// What went wrong. Decides the status code and the problem type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No connector or no operation at this path.
    NotFound,
    /// The path exists, not with this method.
    MethodNotAllowed,
    /// Parameters or body failed binding or validation.
    InvalidRequest,
    /// The request body is larger than `limits.max_body_bytes`.
    PayloadTooLarge,
    /// The request body's media type is not one the operation accepts.
    UnsupportedMediaType,
    /// The request body did not arrive within `limits.body_timeout`.
    RequestTimeout,
    /// The backend could not be reached or broke the connection.
    UpstreamUnreachable,
    /// The backend did not answer within the timeout.
    UpstreamTimeout,
    /// The backend answered, but not in a way the gateway can use: a policy's side call
    /// failed, a page of a paged response failed, or the response is too large to transform.
    UpstreamInvalid,
    /// The backend no longer accepts the connection's credentials (a
    /// `setconnectionstatustounauthenticated` policy saw its status).
    ConnectionUnauthenticated,
    /// A jq transform of the configuration failed on this message.
    TransformFailed,
    /// A required step of a view failed (its call failed, answered an error status, or
    /// took longer than the step's timeout).
    ViewStepFailed,
    /// The operation cannot be served by Junction: it runs the package's custom code (C#)
    /// or a policy template Junction does not know.
    NotImplemented,
    /// A rate limit refused the request (the gateway's own, or a backend's `429` whose
    /// `Retry-After` has not passed yet).
    RateLimited,
    /// The backend's circuit breaker is open: it failed repeatedly (or asked for a pause
    /// with `503` and `Retry-After`), so the gateway does not call it for a while.
    CircuitOpen,
    /// The backend already has `max_concurrency` requests in flight.
    BackendBusy,
    /// The shared store (Redis) is away: a rate limit that fails closed cannot be checked,
    /// or the cache cannot be purged.
    StoreUnavailable,
    /// The gateway's configuration cannot serve this operation (a missing connection value,
    /// no backend address).
    Misconfigured,
    /// A bug or an unexpected failure inside the gateway.
    Internal,
    /// The gateway client did not authenticate (no, unknown or invalid API key or token).
    Unauthenticated,
    /// The gateway client is not granted what it asked for.
    Forbidden,
    /// What is being created already exists (admin API).
    Conflict,
    /// 400: a SOAP service answered with a Client (1.1) or Sender (1.2) fault: the request
    /// was wrong in the service's eyes.
    SoapFault,
    /// 502: a SOAP service answered with any other fault (Server, Receiver …).
    SoapServerFault,
    /// 503: the connector goes through an agent pool with no agent connected.
    AgentUnavailable,
    /// 503: the listener already holds `limits.max_connections` connections; this one is
    /// answered and closed.
    Overloaded,
}

impl ErrorKind {
    /// Every kind, in declaration order (for counters indexed by kind).
    pub const ALL: [ErrorKind; 26] = [
        ErrorKind::NotFound,
        ErrorKind::MethodNotAllowed,
        ErrorKind::InvalidRequest,
        ErrorKind::PayloadTooLarge,
        ErrorKind::UnsupportedMediaType,
        ErrorKind::RequestTimeout,
        ErrorKind::UpstreamUnreachable,
        ErrorKind::UpstreamTimeout,
        ErrorKind::UpstreamInvalid,
        ErrorKind::ConnectionUnauthenticated,
        ErrorKind::TransformFailed,
        ErrorKind::ViewStepFailed,
        ErrorKind::NotImplemented,
        ErrorKind::RateLimited,
        ErrorKind::CircuitOpen,
        ErrorKind::BackendBusy,
        ErrorKind::StoreUnavailable,
        ErrorKind::Misconfigured,
        ErrorKind::Internal,
        ErrorKind::Unauthenticated,
        ErrorKind::Forbidden,
        ErrorKind::Conflict,
        ErrorKind::SoapFault,
        ErrorKind::SoapServerFault,
        ErrorKind::AgentUnavailable,
        ErrorKind::Overloaded,
    ];

    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::UpstreamInvalid | ErrorKind::TransformFailed | ErrorKind::ViewStepFailed => {
                StatusCode::BAD_GATEWAY
            }
            ErrorKind::ConnectionUnauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::CircuitOpen
            | ErrorKind::BackendBusy
            | ErrorKind::StoreUnavailable
            | ErrorKind::AgentUnavailable
            | ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Misconfigured | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::SoapFault => StatusCode::BAD_REQUEST,
            ErrorKind::SoapServerFault => StatusCode::BAD_GATEWAY,
        }
    }

    pub fn source(self) -> Source {
        match self {
            ErrorKind::NotFound
            | ErrorKind::MethodNotAllowed
            | ErrorKind::InvalidRequest
            | ErrorKind::PayloadTooLarge
            | ErrorKind::UnsupportedMediaType
            | ErrorKind::RequestTimeout
            | ErrorKind::RateLimited
            | ErrorKind::Unauthenticated
            | ErrorKind::Forbidden
            | ErrorKind::Conflict
            | ErrorKind::SoapFault => Source::Client,
            ErrorKind::UpstreamUnreachable
            | ErrorKind::CircuitOpen
            | ErrorKind::BackendBusy
            | ErrorKind::UpstreamTimeout
            | ErrorKind::UpstreamInvalid
            | ErrorKind::ViewStepFailed
            | ErrorKind::SoapServerFault
            | ErrorKind::AgentUnavailable
            | ErrorKind::ConnectionUnauthenticated => Source::Upstream,
            ErrorKind::Misconfigured
            | ErrorKind::Internal
            | ErrorKind::TransformFailed
            | ErrorKind::StoreUnavailable
            | ErrorKind::Overloaded
            | ErrorKind::NotImplemented => Source::Internal,
        }
    }

    /// Whether the same request may succeed if tried again later.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::UpstreamUnreachable
                | ErrorKind::UpstreamTimeout
                | ErrorKind::RequestTimeout
                | ErrorKind::RateLimited
                | ErrorKind::CircuitOpen
                | ErrorKind::BackendBusy
                | ErrorKind::StoreUnavailable
                | ErrorKind::AgentUnavailable
                | ErrorKind::Overloaded
        )
    }

    /// The last segment of the problem type URI.
    pub fn slug(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not-found",
            ErrorKind::MethodNotAllowed => "method-not-allowed",
            ErrorKind::InvalidRequest => "invalid-request",
            ErrorKind::PayloadTooLarge => "payload-too-large",
            ErrorKind::UnsupportedMediaType => "unsupported-media-type",
            ErrorKind::RequestTimeout => "request-timeout",
            ErrorKind::UpstreamUnreachable => "upstream-unreachable",
            ErrorKind::UpstreamTimeout => "upstream-timeout",
            ErrorKind::UpstreamInvalid => "upstream-invalid",
            ErrorKind::ConnectionUnauthenticated => "connection-unauthenticated",
            ErrorKind::TransformFailed => "transform-failed",
            ErrorKind::ViewStepFailed => "view-step-failed",
            ErrorKind::NotImplemented => "not-implemented",
            ErrorKind::RateLimited => "rate-limited",
            ErrorKind::CircuitOpen => "circuit-open",
            ErrorKind::BackendBusy => "backend-busy",
            ErrorKind::StoreUnavailable => "store-unavailable",
            ErrorKind::Misconfigured => "gateway-misconfigured",
            ErrorKind::Internal => "internal",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Conflict => "conflict",
            ErrorKind::SoapFault => "soap-fault",
            ErrorKind::SoapServerFault => "soap-server-fault",
            ErrorKind::AgentUnavailable => "agent-unavailable",
            ErrorKind::Overloaded => "overloaded",
        }
    }

    /// The short, fixed summary of the problem type.
    pub fn title(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "Not found",
            ErrorKind::MethodNotAllowed => "Method not allowed",
            ErrorKind::InvalidRequest => "Invalid request",
            ErrorKind::PayloadTooLarge => "Request body too large",
            ErrorKind::UnsupportedMediaType => "Unsupported media type",
            ErrorKind::RequestTimeout => "Request body too slow",
            ErrorKind::UpstreamUnreachable => "Backend unreachable",
            ErrorKind::UpstreamTimeout => "Backend timed out",
            ErrorKind::UpstreamInvalid => "Backend response unusable",
            ErrorKind::ConnectionUnauthenticated => "Connection not authenticated",
            ErrorKind::TransformFailed => "Transform failed",
            ErrorKind::ViewStepFailed => "View step failed",
            ErrorKind::NotImplemented => "Not implemented",
            ErrorKind::RateLimited => "Too many requests",
            ErrorKind::CircuitOpen => "Backend unavailable",
            ErrorKind::BackendBusy => "Backend busy",
            ErrorKind::StoreUnavailable => "Shared store unavailable",
            ErrorKind::Misconfigured => "Gateway misconfigured",
            ErrorKind::Internal => "Internal error",
            ErrorKind::Unauthenticated => "Client not authenticated",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::Conflict => "Conflict",
            ErrorKind::SoapFault => "The service refused the request",
            ErrorKind::SoapServerFault => "The service failed",
            ErrorKind::AgentUnavailable => "No agent connected",
            ErrorKind::Overloaded => "Too many connections",
        }
    }
}

/// Where a bad input was found, as the client names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum InputLocation {
    Path,
    Query,
    Header,
    Cookie,
    FormData,
    Body,
}

impl InputLocation {
    pub fn as_str(self) -> &'static str {
        match self {
            InputLocation::Path => "path",
            InputLocation::Query => "query",
            InputLocation::Header => "header",
            InputLocation::Cookie => "cookie",
            InputLocation::FormData => "formData",
            InputLocation::Body => "body",
        }
    }
}

/// One bad input: a parameter (by `name`) or a place in the body (by JSON `pointer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    #[serde(rename = "in")]
    pub location: InputLocation,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    pub message: String,
}

impl Violation {
    pub fn parameter(location: InputLocation, name: &str, message: impl Into<String>) -> Self {
        Violation {
            location,
            name: Some(name.to_owned()),
            pointer: None,
            message: message.into(),
        }
    }

    pub fn body(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Violation {
            location: InputLocation::Body,
            name: None,
            pointer: Some(pointer.into()),
            message: message.into(),
        }
    }
}

/// A pipeline failure.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    detail: String,
    violations: Vec<Violation>,
    allow: Vec<Method>,
    /// Headers the response carries besides the problem's own (`Retry-After`,
    /// `RateLimit-*`); boxed, as most errors have none.
    headers: Option<Box<HeaderMap>>,
    /// A SOAP fault's code, reason and detail (as JSON), for the problem's `fault` member.
    fault: Option<Box<serde_json::Value>>,
    cause: Option<BoxError>,
}

impl Error {
    /// An error with a client-safe `detail`.
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Error {
            kind,
            detail: detail.into(),
            violations: Vec::new(),
            allow: Vec::new(),
            headers: None,
            fault: None,
            cause: None,
        }
    }

    /// A 400 listing every bad input.
    pub fn invalid(violations: Vec<Violation>) -> Self {
        let detail = match violations.as_slice() {
            [one] => one.message.clone(),
            many => format!("{} inputs are invalid; see `errors`", many.len()),
        };
        Error {
            violations,
            ..Error::new(ErrorKind::InvalidRequest, detail)
        }
    }

    /// A 405 naming the methods the path does accept.
    pub fn method_not_allowed(method: &http::Method, path: &str, allow: Vec<Method>) -> Self {
        let list: Vec<&str> = allow.iter().map(|m| m.as_str()).collect();
        Error {
            allow,
            ..Error::new(
                ErrorKind::MethodNotAllowed,
                format!(
                    "{path} does not accept {method}; it accepts {}",
                    list.join(", ")
                ),
            )
        }
    }

    /// Adds `Retry-After`, in whole seconds rounded up (at least 1).
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.headers
            .get_or_insert_default()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        self
    }

    /// Adds the `RateLimit-*` fields (and `Retry-After`) of a refusal.
    pub fn with_rate_limit(mut self, decision: &crate::ratelimit::Decision) -> Self {
        crate::ratelimit::write_headers(self.headers.get_or_insert_default(), decision);
        self
    }

    /// Headers the response must carry besides the problem's own.
    pub fn headers(&self) -> impl Iterator<Item = (&http::HeaderName, &HeaderValue)> {
        self.headers.iter().flat_map(|headers| headers.iter())
    }

    /// An error of the same kind, status and headers (`Retry-After` …) with another detail,
    /// for a failure that wraps this one.
    pub fn same_kind(&self, detail: impl Into<String>) -> Self {
        Error {
            kind: self.kind,
            detail: detail.into(),
            violations: Vec::new(),
            allow: self.allow.clone(),
            headers: self.headers.clone(),
            fault: self.fault.clone(),
            cause: None,
        }
    }

    /// The same error said where it happened: its detail prefixed with `context` (a view's
    /// step, a side call); kind, status, headers, violations and cause stay.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.detail = format!("{context}: {}", self.detail);
        self
    }

    /// Attaches the underlying cause, for the log only. It must not contain secrets.
    pub fn with_cause(mut self, cause: impl Into<BoxError>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// Adds a SOAP fault (`{"code", "reason", "detail"}`) for the problem's `fault` member.
    pub fn with_fault(mut self, fault: serde_json::Value) -> Self {
        self.fault = Some(Box::new(fault));
        self
    }

    /// The SOAP fault the service answered, if this error is one.
    pub fn fault(&self) -> Option<&serde_json::Value> {
        self.fault.as_deref()
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    pub fn source(&self) -> Source {
        self.kind.source()
    }

    /// The explanation safe to show the client.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// For 405: the methods the path accepts, for the `Allow` header.
    pub fn allow(&self) -> &[Method] {
        &self.allow
    }

    /// The underlying cause, for the log.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.cause.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.title(), self.detail)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
