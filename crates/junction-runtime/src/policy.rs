//! The policy stage: a package's policy templates and the configuration's jq transforms
//! around the upstream call, and server-side paging.
//!
//! Compiled at load ([`ConnectorPolicies::compile`]): every instance of the package, each
//! operation's share of them by section, its transforms and paging. An operation with none
//! of these has no [`PolicyPlan`] and its requests never come here.
//!
//! Per request ([`call`]): the request is built as usual (path, query, headers with
//! credentials, body), then the Request-section policies run in declared order, then the
//! request transform; the call goes out with the connector's client. A response with a
//! status below 400 runs the Response-section policies, one with 400 or above the
//! Failure-section ones; a status a `setconnectionstatustounauthenticated` policy names
//! becomes 401. The body is read into memory only when a policy, a transform or paging
//! needs it; otherwise it streams.
//!
//! A broken instance never disappears silently: the operations it applies to answer 500
//! naming it, and the load prints why. Operations that run the package's custom code, or
//! a template Junction does not know, answer 501.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Uri, header};
use indexmap::IndexMap;
use junction_model::{Connector, Diagnostic, Diagnostics, Operation, Severity};
use junction_policy::{
    ConnValue, Env, FailureKind, Hosts, Incoming, Kind, Outgoing, Policy, PolicyError, Section,
    SideCallError, SideCalls,
};
use serde_json::{Map, Value};

use crate::Secret;
use crate::auth::Credential;
use crate::bind::Bound;
use crate::body::{self, RequestBody, UpstreamBody};
use crate::config::{ConnectorConfig, NamedTransform, OperationConfig, Paging};
use crate::error::{Error, ErrorKind};
use crate::gateway::ConnectorPlan;
use crate::paging::{self, NextLink};
use crate::plan::{OperationPlan, Refusal, essence, is_json};
use crate::telemetry::StageTimings;
use crate::telemetry::trace::{self, Kind as SpanKind, Span};
use crate::upstream::outbound::{self, Outbound, OutboundBody};
use crate::upstream::{self, SentTo};

/// The query parameter that carries a backend next link through the gateway.
pub const NEXT_LINK_PARAMETER: &str = "junction-next";

/// What runs around one operation's upstream call.
#[derive(Debug, Default)]
pub(crate) struct PolicyPlan {
    pub request: Vec<Arc<Policy>>,
    pub response: Vec<Arc<Policy>>,
    pub failure: Vec<Arc<Policy>>,
    /// `setconnectionstatustounauthenticated`: the upstream status that means the
    /// connection's credentials are no longer accepted.
    pub unauthenticated: Option<u16>,
    /// Whether a successful response's JSON body is read by the response side (policies,
    /// transform); paging reads it on the request side.
    pub response_json: bool,
    pub request_transform: Option<NamedTransform>,
    pub response_transform: Option<NamedTransform>,
    pub paging: Option<PagingPlan>,
    /// Whether next links are rewritten, so `junction-next` calls are accepted.
    pub next_links: bool,
}

impl PolicyPlan {
    /// Whether anything runs on the response side ([`respond`]).
    pub(crate) fn responds(&self) -> bool {
        !self.response.is_empty()
            || !self.failure.is_empty()
            || self.unauthenticated.is_some()
            || self.response_transform.is_some()
    }
}

/// Server-side paging of an `x-ms-pageable` operation.
#[derive(Debug, Clone)]
pub(crate) struct PagingPlan {
    pub next_link: String,
    pub items: String,
    pub limits: Paging,
}

/// The default connection's values as policies and transforms see them.
#[derive(Debug, Default)]
pub(crate) struct Connection {
    /// Value and whether it is a secret.
    values: IndexMap<String, (Secret, bool)>,
    /// The non-secret values, as `$connection` of transforms.
    public: Value,
}

impl Connection {
    /// A value is a secret unless the package declares it with a non-secret type.
    pub(crate) fn new(connector: &Connector, configured: &IndexMap<String, Secret>) -> Self {
        let mut values = IndexMap::new();
        let mut public = Map::new();
        for (name, value) in configured {
            let declared = connector.connection_parameters().find(|p| {
                p.name.eq_ignore_ascii_case(name)
                    || p.name
                        .strip_prefix("token:")
                        .is_some_and(|bare| bare.eq_ignore_ascii_case(name))
            });
            let secret = declared.is_none_or(|p| p.is_secret());
            if !secret {
                public.insert(name.clone(), Value::String(value.expose().to_owned()));
            }
            values.insert(name.clone(), (value.clone(), secret));
        }
        Connection {
            values,
            public: Value::Object(public),
        }
    }

    /// The value of parameter `name`, matched as Power Platform matches connection
    /// parameter names: case-insensitively (a package may read `X-Token` and declare
    /// `x-Token`).
    fn get(&self, name: &str) -> Option<ConnValue<'_>> {
        let found = self.values.get(name).or_else(|| {
            self.values
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value)
        });
        found.map(|(value, secret)| ConnValue {
            value: value.expose(),
            secret: *secret,
        })
    }
}

/// The package's policies, compiled once per connector.
pub(crate) struct ConnectorPolicies {
    /// Each instance: its policy, or why it cannot run, and the operations it applies to.
    instances: Vec<Instance>,
    custom_code: Option<junction_model::CustomCode>,
}

struct Instance {
    policy: Result<Arc<Policy>, String>,
    operations: Option<Vec<String>>,
    /// For messages about a broken instance.
    label: String,
}

impl ConnectorPolicies {
    /// Compiles every instance of `connector`, reporting broken ones and those the
    /// configuration makes unusable.
    pub(crate) fn compile(
        connector: &Connector,
        section: &ConnectorConfig,
        diagnostics: &mut Diagnostics,
    ) -> Self {
        let properties_file = properties_file(&connector.source);
        let warn = |diagnostics: &mut Diagnostics, code, pointer: &str, message: String| {
            diagnostics.push(Diagnostic::new(
                Severity::Warning,
                code,
                &properties_file,
                pointer,
                message,
            ));
        };
        let mut instances = Vec::new();
        let mut missing_connection: Vec<String> = Vec::new();
        let mut host_overridden = false;
        for (position, instance) in connector.policies().iter().enumerate() {
            let index = instance
                .pointer
                .rsplit('/')
                .next()
                .and_then(|i| i.parse().ok())
                .unwrap_or(position);
            let compiled = junction_policy::compile(instance, index);
            let label = junction_policy::policy::label(
                index,
                instance.title.as_deref(),
                &instance.template_id,
            );
            let error = compiled.error().cloned();
            let policy = match (compiled.policy, error) {
                (Some(policy), _) => Ok(Arc::new(policy)),
                (None, Some(error)) => {
                    let message = format!("{label} cannot run: {}", error.message);
                    warn(
                        diagnostics,
                        "policy-broken",
                        &error.pointer,
                        format!(
                            "{message}; the operations it applies to answer 500 (`junction validate` shows every finding)"
                        ),
                    );
                    Err(format!("{message} ({}#{})", properties_file, error.pointer))
                }
                (None, None) => Err(format!("{label} cannot run")),
            };
            if let Ok(policy) = &policy {
                match &policy.kind {
                    Kind::HostUrl(host) => {
                        if section.backend.is_some() {
                            host_overridden = true;
                        } else if host.open_host.is_some() && section.allowed_hosts.is_empty() {
                            warn(
                                diagnostics,
                                "policy-open-host",
                                &policy.pointer,
                                format!(
                                    "{}: the backend host comes from the request, so the operations it applies to answer 500 until `allowed_hosts` in [connector.{}] lists the hosts they may reach",
                                    policy.label(),
                                    connector.name
                                ),
                            );
                        }
                    }
                    Kind::Unknown => warn(
                        diagnostics,
                        "unknown-policy-template",
                        &policy.pointer,
                        format!(
                            "{} uses a template Junction does not know; the operations it applies to answer 501",
                            policy.label()
                        ),
                    ),
                    _ => {}
                }
                for name in required_connection_values(policy) {
                    let has = |wanted: &str| {
                        section
                            .connection
                            .keys()
                            .any(|k| k.eq_ignore_ascii_case(wanted))
                    };
                    let configured = has(&name) || name.strip_prefix("token:").is_some_and(has);
                    if !configured && !missing_connection.contains(&name) {
                        missing_connection.push(name);
                    }
                }
            }
            instances.push(Instance {
                policy,
                operations: compiled.operations,
                label,
            });
        }
        for name in missing_connection {
            warn(
                diagnostics,
                "missing-connection-value",
                "/properties/policyTemplateInstances",
                format!(
                    "the policies of connector '{}' read connection value '{name}', which is not set; the calls that need it answer 500 (set it in [connector.{}.connection])",
                    connector.name, connector.name
                ),
            );
        }
        if host_overridden {
            warn(
                diagnostics,
                "policy-host-overridden",
                "/properties/policyTemplateInstances",
                format!(
                    "`backend` in [connector.{}] replaces the host the package's host policies would choose",
                    connector.name
                ),
            );
        }
        ConnectorPolicies {
            instances,
            custom_code: connector
                .properties
                .as_ref()
                .and_then(|p| p.custom_code.clone()),
        }
    }

    /// The `pollingtrigger` template of trigger `op`, if one applies to it.
    pub(crate) fn polling(&self, op: &Operation) -> Option<Arc<Policy>> {
        self.instances
            .iter()
            .find_map(|instance| match &instance.policy {
                Ok(policy)
                    if matches!(policy.kind, Kind::PollingTrigger { .. })
                        && junction_policy::policy::applies(&instance.operations, &op.id) =>
                {
                    Some(policy.clone())
                }
                _ => None,
            })
    }

    /// What runs around operation `op`: its policy plan, or why it cannot be called, and
    /// whether its JSON request body must be read.
    pub(crate) fn for_operation(
        &self,
        connector: &Connector,
        op: &Operation,
        section: &ConnectorConfig,
        config: Option<&OperationConfig>,
    ) -> (Option<Box<PolicyPlan>>, Option<Refusal>, bool) {
        let refuse = |kind, message: String| {
            (
                None,
                Some(Refusal {
                    kind,
                    message: Arc::from(message),
                }),
                false,
            )
        };
        if let Some(code) = &self.custom_code
            && code.handles(&op.id)
        {
            return refuse(
                ErrorKind::NotImplemented,
                format!(
                    "operation '{}' of connector '{}' is implemented by the package's custom code (a C# script, declared by {}), which Junction cannot run",
                    op.id, connector.name, code.declared_by
                ),
            );
        }
        let mut plan = PolicyPlan::default();
        for instance in &self.instances {
            if !junction_policy::policy::applies(&instance.operations, &op.id) {
                continue;
            }
            let policy = match &instance.policy {
                Ok(policy) => policy,
                Err(why) => {
                    return refuse(
                        ErrorKind::Misconfigured,
                        format!("operation '{}' cannot be called: {why}", op.id),
                    );
                }
            };
            if matches!(policy.kind, Kind::Unknown) {
                return refuse(
                    ErrorKind::NotImplemented,
                    format!(
                        "operation '{}' of connector '{}' uses {}, a policy template Junction does not support",
                        op.id, connector.name, instance.label
                    ),
                );
            }
            for name in policy.placeholders() {
                if !op.parameters.iter().any(|p| p.name == name) {
                    return refuse(
                        ErrorKind::Misconfigured,
                        format!(
                            "operation '{}' cannot be called: {} uses `{{{name}}}`, which is not a parameter of the operation",
                            op.id,
                            policy.label()
                        ),
                    );
                }
            }
            match (&policy.kind, policy.section) {
                (Kind::PollingTrigger { .. }, _) => {}
                (Kind::Unauthenticated { status }, _) => {
                    plan.unauthenticated.get_or_insert(*status);
                }
                (Kind::UpdateNextLink { .. }, _) => {
                    plan.next_links = true;
                    plan.response.push(policy.clone());
                }
                (_, Section::Request) => plan.request.push(policy.clone()),
                (_, Section::Response) => plan.response.push(policy.clone()),
                (_, Section::Failure) => plan.failure.push(policy.clone()),
            }
        }
        let transforms = config.map(|c| &c.transform);
        plan.request_transform = transforms
            .and_then(|t| t.request.clone())
            .or_else(|| section.transform.request.clone());
        plan.response_transform = transforms
            .and_then(|t| t.response.clone())
            .or_else(|| section.transform.response.clone());
        let paging_limits = config.and_then(|c| c.paging).or(section.paging);
        if let Some(limits) = paging_limits
            && let Some(pageable) = op.extensions.get("x-ms-pageable")
            && let Some(next_link) = pageable.get("nextLinkName").and_then(Value::as_str)
        {
            plan.paging = Some(PagingPlan {
                next_link: next_link.to_owned(),
                items: pageable
                    .get("itemName")
                    .and_then(Value::as_str)
                    .unwrap_or("value")
                    .to_owned(),
                limits,
            });
        }
        let read_json =
            plan.request_transform.is_some() || plan.request.iter().any(|p| p.uses_body());
        plan.response_json =
            plan.response_transform.is_some() || plan.response.iter().any(|p| p.uses_body());
        let empty = plan.request.is_empty()
            && plan.response.is_empty()
            && plan.failure.is_empty()
            && plan.unauthenticated.is_none()
            && plan.request_transform.is_none()
            && plan.response_transform.is_none()
            && plan.paging.is_none();
        if empty {
            (None, None, false)
        } else {
            (Some(Box::new(plan)), None, read_json)
        }
    }
}

impl std::fmt::Debug for ConnectorPolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorPolicies")
            .field("instances", &self.instances.len())
            .finish_non_exhaustive()
    }
}

/// The connection values a policy needs and gives no default for.
fn required_connection_values(policy: &Policy) -> Vec<String> {
    policy
        .connection_values()
        .into_iter()
        .filter(|(_, has_default)| !has_default)
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// `apiProperties.json` next to the definition, for messages.
fn properties_file(definition: &str) -> String {
    let path = std::path::Path::new(definition);
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            dir.join("apiProperties.json").display().to_string()
        }
        _ => "apiProperties.json".to_owned(),
    }
}

/// Expressions read the connection and the operation's bound parameters through this.
struct RequestEnv<'a> {
    connection: &'a Connection,
    op: &'a OperationPlan,
    values: &'a [Option<(Value, crate::bind::Origin)>],
}

impl Env for RequestEnv<'_> {
    fn connection(&self, name: &str) -> Option<ConnValue<'_>> {
        self.connection.get(name)
    }

    fn parameter(&self, name: &str) -> Option<&Value> {
        let index = self.op.params.iter().position(|p| p.name == name)?;
        self.values
            .get(index)
            .and_then(Option::as_ref)
            .map(|(value, _)| value)
    }
}

impl RequestEnv<'_> {
    /// The bound parameters as `$params`.
    fn params_json(&self) -> Value {
        let mut out = Map::new();
        for (param, slot) in self.op.params.iter().zip(self.values) {
            if let Some((value, _)) = slot {
                out.insert(param.name.clone(), value.clone());
            }
        }
        Value::Object(out)
    }
}

/// What trigger `op`'s `pollingtrigger` template makes of a poll's answer `body`; `None`
/// without one.
pub(crate) fn polled(
    connector: &ConnectorPlan,
    op: &OperationPlan,
    body: &Value,
) -> Option<Result<junction_policy::trigger::Polled, Error>> {
    let Kind::PollingTrigger {
        config,
        next_link,
        data,
    } = &op.polling.as_ref()?.kind
    else {
        return None;
    };
    let env = RequestEnv {
        connection: &connector.connection,
        op,
        values: &[],
    };
    let polled = junction_policy::trigger::polled(config, next_link.as_deref(), data, &env, body);
    Some(polled.map_err(|error| {
        let junction_policy::eval::EvalError::MissingConnection(name) = error;
        Error::new(
            ErrorKind::Misconfigured,
            format!(
                "connector '{}', trigger '{}': its pollingtrigger template reads connection value '{name}', which is not set",
                connector.name, op.id
            ),
        )
    }))
}

fn policy_error(connector: &ConnectorPlan, op: &OperationPlan, error: PolicyError) -> Error {
    let what = format!("connector '{}', operation '{}'", connector.name, op.id);
    // A side call's own error keeps its kind (and its Retry-After).
    if let Some(cause) = error
        .cause
        .as_deref()
        .and_then(|c| c.downcast_ref::<Error>())
    {
        return cause.same_kind(format!("{what}: {}", error.message));
    }
    match error.kind {
        FailureKind::Client => Error::new(ErrorKind::InvalidRequest, error.message),
        FailureKind::Misconfigured => Error::new(
            ErrorKind::Misconfigured,
            format!("{what}: {}", error.message),
        ),
        FailureKind::Upstream => Error::new(
            ErrorKind::UpstreamInvalid,
            format!("{what}: {}", error.message),
        ),
        FailureKind::Unauthenticated => Error::new(
            ErrorKind::ConnectionUnauthenticated,
            format!("{what}: {}", error.message),
        ),
    }
}

/// The side calls of `setvaluefromurl`: the connector's client and timeout.
struct Side<'a> {
    connector: &'a ConnectorPlan,
    op: &'a OperationPlan,
    limit: u64,
}

impl SideCalls for Side<'_> {
    async fn call(
        &self,
        method: http::Method,
        url: String,
        headers: HeaderMap,
    ) -> Result<Value, SideCallError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| SideCallError::new("the side-call URL is not a valid URL"))?;
        let shown = uri.path().to_owned();
        // The call's own error (a rate limit, a time-out …) goes on as the cause, so that
        // the operation answers with its kind.
        let failed = |e: Error| SideCallError {
            message: format!("{method} {shown}: {}", e.detail()),
            cause: Some(Arc::new(e)),
        };
        let (response, held) = upstream::exchange::exchange(upstream::Call {
            connector: self.connector,
            op: self.op,
            method: &method,
            uri,
            headers,
            body: RequestBody::Empty,
        })
        .await
        .map_err(failed)?;
        let status = response.status();
        let head_headers = response.headers().clone();
        let body = UpstreamBody::new(response.into_body(), held, self.connector.timeout);
        let bytes = body::read_response(body, self.limit)
            .await
            .map_err(failed)?;
        if status == http::StatusCode::TOO_MANY_REQUESTS {
            // The backend asks for a pause: so does the operation.
            let wait = crate::resilience::retry::retry_after(&head_headers)
                .unwrap_or(std::time::Duration::from_secs(1));
            return Err(failed(
                Error::new(ErrorKind::RateLimited, format!("answered {status}"))
                    .with_retry_after(wait),
            ));
        }
        if !status.is_success() {
            return Err(SideCallError::new(format!(
                "{method} {shown} answered {status}"
            )));
        }
        serde_json::from_slice(&bytes)
            .map_err(|_| SideCallError::new(format!("{method} {shown} did not answer with JSON")))
    }
}

/// The request side of an operation with a policy plan, then the call: the request is built
/// as for every operation ([`upstream::outbound::build`]), the Request-section policies and
/// the request transform rewrite it, it is sent through the one path, and pages are
/// followed when server-side paging is on. Returns what the backend said, with the
/// [`SentTo`] its response side needs (also when it comes from the cache).
pub(crate) async fn send(
    connector: &ConnectorPlan,
    op: &OperationPlan,
    plan: &PolicyPlan,
    parts: &Parts,
    bound: Bound,
    credentials: &[Credential],
) -> Result<http::Response<UpstreamBody>, Error> {
    let started = Instant::now();
    let span = Span::start("request policies", SpanKind::Internal, started);
    let span_id = span.as_ref().map(Span::id);
    let prepared = trace::within(
        span_id,
        prepare(connector, op, plan, parts, bound, credentials),
    )
    .await;
    let ended = Instant::now();
    end_span(span, ended, prepared.as_ref().err());
    let (out, sent) = prepared?;
    let sent_headers = out.headers.clone();
    let response = outbound::send(connector, op, out, credentials).await?;
    let (mut head, mut body) = response.into_parts();
    if let Some(paging) = &plan.paging
        && head.status.as_u16() < 400
        && json_response(&head.headers)
    {
        body = paging::all_pages(
            connector,
            op,
            paging,
            &mut head,
            body,
            (&sent.url, &sent.base),
            &sent_headers,
            credentials,
        )
        .await?;
    }
    head.extensions.insert(sent);
    StageTimings::of(&mut head.extensions).policies = Some(ended.duration_since(started));
    Ok(http::Response::from_parts(head, body))
}

/// Builds the request as every operation's is built, then runs the request policies and
/// the request transform on it (in the pieces policies see: [`Outgoing`]). Returns the
/// request to send and where it goes.
async fn prepare(
    connector: &ConnectorPlan,
    op: &OperationPlan,
    plan: &PolicyPlan,
    parts: &Parts,
    bound: Bound,
    credentials: &[Credential],
) -> Result<(Outbound, SentTo), Error> {
    let env_values = bound.values.clone();
    let env = RequestEnv {
        connection: crate::connection::for_policies(connector, parts),
        op,
        values: &env_values,
    };
    let built = outbound::build(op, parts, bound, credentials, true)?;
    let (mut out, mut body, original) = outgoing(connector, parts, built);
    let side = Side {
        connector,
        op,
        limit: connector.max_response_bytes,
    };
    let hosts = Hosts {
        apply: !connector.backend_configured,
        allowed: &connector.allowed_hosts,
    };
    junction_policy::run_request(&plan.request, &mut out, &env, &hosts, &side)
        .await
        .map_err(|e| policy_error(connector, op, e))?;
    if out.base.is_empty() {
        return Err(upstream::no_target(connector));
    }
    let mut transformed = None;
    if let Some(transform) = &plan.request_transform
        && let Some(json) = out.body.take()
    {
        let result = transform
            .transform
            .run_to_json(json, &env.params_json(), &env.connection.public)
            .map_err(|why| transform_error(connector, op, transform, &why))?;
        transformed = Some(Bytes::from(result));
    }
    // No re-serialisation when nothing changed the body.
    let bytes = match (transformed, &out.body) {
        (Some(bytes), _) => Some(bytes),
        (None, Some(_)) if !out.body_changed && original.is_some() => original,
        (None, Some(json)) => Some(Bytes::from(serde_json::to_vec(json).map_err(|e| {
            Error::new(ErrorKind::Internal, "could not write the request body").with_cause(e)
        })?)),
        (None, None) => None,
    };
    if let Some(bytes) = bytes {
        body = RequestBody::full(bytes);
        out.headers.remove(header::CONTENT_LENGTH);
    }
    let sent = SentTo::new(&out.url(), &out.base);
    Ok((
        Outbound {
            method: out.method,
            base: outbound::Base::Url(out.base),
            path: out.path,
            query: out.query,
            headers: out.headers,
            body: OutboundBody::Encoded(body),
        },
        sent,
    ))
}

/// The built request in the pieces policies rewrite, its non-JSON body, and the client's
/// JSON bytes (sent as they are while nothing changes the body); a continued next link
/// ([`NextLink`]) replaces path, query, method and body.
fn outgoing(
    connector: &ConnectorPlan,
    parts: &Parts,
    mut built: Outbound,
) -> (Outgoing, RequestBody, Option<Bytes>) {
    let next = parts.extensions.get::<NextLink>();
    if let Some(next) = next {
        built.continue_at(next);
    }
    let (json, original, body) = match built.body {
        OutboundBody::Json { value, original } => (Some(value), original, RequestBody::Empty),
        OutboundBody::Encoded(body) => (None, None, body),
    };
    let out = Outgoing {
        method: built.method,
        original_method: parts.method.clone(),
        base: connector.base_url.clone().unwrap_or_default(),
        path: built.path,
        query: built.query,
        headers: built.headers,
        body: json,
        body_changed: false,
        next_link: next.is_some(),
    };
    (out, body, original)
}

/// The response side of an operation with a policy plan, on what the backend said (fresh,
/// or from the cache): a status that means the connection's credentials are no longer
/// accepted becomes 401; below 400 the Response-section policies run (next links are
/// signed here, for this request and its caller), from 400 the Failure-section ones; then
/// the response transform. The body is read only when one of them needs it.
pub(crate) async fn respond(
    connector: &ConnectorPlan,
    op: &OperationPlan,
    plan: &PolicyPlan,
    parts: &Parts,
    values: &[Option<(Value, crate::bind::Origin)>],
    links: &crate::next_link::Signing,
    response: http::Response<UpstreamBody>,
) -> Result<http::Response<UpstreamBody>, Error> {
    let status = response.status();
    if plan.unauthenticated == Some(status.as_u16()) {
        return Err(Error::new(
            ErrorKind::ConnectionUnauthenticated,
            format!(
                "connector '{}', operation '{}': the backend answered {status}, which means it no longer accepts the connection's credentials; renew them in [connector.{}.connection]",
                connector.name, op.id, connector.name
            ),
        ));
    }
    let success = status.as_u16() < 400;
    let chain = if success {
        &plan.response
    } else {
        &plan.failure
    };
    let read = success && plan.response_json && json_response(response.headers());
    if chain.is_empty() && !read {
        return Ok(response);
    }
    let started = Instant::now();
    let span = Span::start("response policies", SpanKind::Internal, started);
    let span_id = span.as_ref().map(Span::id);
    let env = RequestEnv {
        connection: crate::connection::for_policies(connector, parts),
        op,
        values,
    };
    let answered = trace::within(span_id, async {
        let credentials = crate::connection::credentials(connector, op, parts)?;
        let sent = response
            .extensions()
            .get::<SentTo>()
            .cloned()
            .unwrap_or_default();
        let links = paging::Links::new(connector, op, parts, &sent, links, credentials);
        let (mut head, body) = response.into_parts();
        if !read {
            let mut message = Incoming {
                status: status.as_u16(),
                headers: &mut head.headers,
                body: None,
            };
            junction_policy::run_response(chain, &mut message, &env, &links)
                .map_err(|e| policy_error(connector, op, e))?;
            return Ok(http::Response::from_parts(head, body));
        }
        let bytes = body::read_response(body, connector.max_response_bytes).await?;
        let rewritten = if bytes.iter().all(u8::is_ascii_whitespace) {
            // Nothing to work on.
            None
        } else {
            let message = (status.as_u16(), &mut head.headers);
            rewrite_body(connector, op, plan, chain, &env, &links, message, &bytes)?
        };
        let Some(rewritten) = rewritten else {
            return Ok(http::Response::from_parts(head, UpstreamBody::full(bytes)));
        };
        head.headers.remove(header::CONTENT_LENGTH);
        head.headers.remove(header::CONTENT_ENCODING);
        head.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(http::Response::from_parts(
            head,
            UpstreamBody::full(Bytes::from(rewritten)),
        ))
    })
    .await;
    let ended = Instant::now();
    end_span(span, ended, answered.as_ref().err());
    answered.map(|mut response| {
        let timings = StageTimings::of(response.extensions_mut());
        timings.policies =
            Some(timings.policies.unwrap_or_default() + ended.duration_since(started));
        response
    })
}

/// Runs `chain` and the response transform on a JSON body; the new body, or `None` when
/// nothing changed it.
#[allow(clippy::too_many_arguments)]
fn rewrite_body(
    connector: &ConnectorPlan,
    op: &OperationPlan,
    plan: &PolicyPlan,
    chain: &[Arc<Policy>],
    env: &RequestEnv<'_>,
    links: &paging::Links<'_>,
    (status, headers): (u16, &mut HeaderMap),
    bytes: &[u8],
) -> Result<Option<Vec<u8>>, Error> {
    if !chain.iter().any(|p| p.uses_body()) {
        // Only the transform reads the body: straight from the text, no document.
        let mut message = Incoming {
            status,
            headers,
            body: None,
        };
        junction_policy::run_response(chain, &mut message, env, links)
            .map_err(|e| policy_error(connector, op, e))?;
        return match &plan.response_transform {
            Some(transform) => transform
                .transform
                .run_json(bytes, &env.params_json(), &env.connection.public)
                .map(Some)
                .map_err(|why| transform_error(connector, op, transform, &why)),
            None => Ok(None),
        };
    }
    let mut value: Value = serde_json::from_slice(bytes).map_err(|e| {
        Error::new(
            ErrorKind::UpstreamInvalid,
            format!(
                "connector '{}', operation '{}': the backend's response is not valid JSON, so its policies cannot run",
                connector.name, op.id
            ),
        )
        .with_cause(e)
    })?;
    let mut message = Incoming {
        status,
        headers,
        body: Some(&mut value),
    };
    let changed = junction_policy::run_response(chain, &mut message, env, links)
        .map_err(|e| policy_error(connector, op, e))?;
    match &plan.response_transform {
        Some(transform) => transform
            .transform
            .run_to_json(value, &env.params_json(), &env.connection.public)
            .map(Some)
            .map_err(|why| transform_error(connector, op, transform, &why)),
        // No re-serialisation when nothing changed the body.
        None if !changed => Ok(None),
        None => serde_json::to_vec(&value).map(Some).map_err(|e| {
            Error::new(ErrorKind::Internal, "could not write the response body").with_cause(e)
        }),
    }
}

/// Ends a policy stage's span, failed with the problem type when the stage failed.
fn end_span(span: Option<Span>, end: Instant, error: Option<&Error>) {
    if let Some(mut span) = span {
        if let Some(error) = error {
            span.fail(error.kind().slug());
        }
        span.end(end);
    }
}

fn transform_error(
    connector: &ConnectorPlan,
    op: &OperationPlan,
    transform: &NamedTransform,
    why: &str,
) -> Error {
    Error::new(
        ErrorKind::TransformFailed,
        format!(
            "connector '{}', operation '{}': the transform `{}` failed: {why}",
            connector.name, op.id, transform.key
        ),
    )
}

/// Whether a response is JSON (or says nothing of its type) and not encoded.
fn json_response(headers: &HeaderMap) -> bool {
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return false;
    }
    match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        Some(content_type) => is_json(&essence(content_type)),
        None => true,
    }
}
