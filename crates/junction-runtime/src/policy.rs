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
use http_body_util::{BodyExt, LengthLimitError, Limited};
use indexmap::IndexMap;
use junction_model::{Connector, Diagnostic, Diagnostics, Operation, Severity};
use junction_policy::expr::{Expr, Source};
use junction_policy::{
    ConnValue, Env, FailureKind, Hosts, Incoming, Kind, NextLinks, Outgoing, Policy, PolicyError,
    Section, SideCalls,
};
use serde_json::{Map, Value};

use crate::auth::Credential;
use crate::bind::{Bound, OutBody};
use crate::body::{DeadlinePassed, RequestBody, UpstreamBody};
use crate::config::{ConnectorConfig, NamedTransform, OperationConfig, Paging};
use crate::error::{Error, ErrorKind, Violation};
use crate::gateway::ConnectorPlan;
use crate::plan::{OperationPlan, Refusal, essence, is_json};
use crate::secret::Secret;
use crate::telemetry::StageTimings;
use crate::telemetry::trace::{self, Kind as SpanKind, Span};
use crate::upstream::{self, USER_AGENT};

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
    /// Whether a successful response's JSON body is read (policies, transform, paging).
    pub response_json: bool,
    pub request_transform: Option<NamedTransform>,
    pub response_transform: Option<NamedTransform>,
    pub paging: Option<PagingPlan>,
    /// Whether next links are rewritten, so `junction-next` calls are accepted.
    pub next_links: bool,
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
            let declared = connector
                .connection_parameters()
                .find(|p| p.name == *name || p.name.strip_prefix("token:") == Some(name));
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

    fn get(&self, name: &str) -> Option<ConnValue<'_>> {
        self.values.get(name).map(|(value, secret)| ConnValue {
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
                    let configured = section.connection.contains_key(&name)
                        || name
                            .strip_prefix("token:")
                            .is_some_and(|bare| section.connection.contains_key(bare));
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
        plan.response_json = plan.response_transform.is_some()
            || plan.paging.is_some()
            || plan.response.iter().any(|p| p.uses_body());
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
    let templates: Vec<&junction_policy::expr::Template> = match &policy.kind {
        Kind::SetHeader { value, .. } | Kind::SetQueryParameter { value, .. } => vec![value],
        Kind::HostUrl(host) => vec![&host.template],
        Kind::Route { path, .. } => vec![path],
        Kind::SetProperty { value, .. } => vec![value],
        Kind::SetValueFromUrl { url, .. } => vec![url],
        _ => Vec::new(),
    };
    templates
        .into_iter()
        .flat_map(|t| t.exprs())
        .filter_map(|e| match e {
            Expr::Lookup {
                source: Source::Connection,
                name,
                default: None,
            } => Some(name.clone()),
            _ => None,
        })
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

fn policy_error(connector: &ConnectorPlan, op: &OperationPlan, error: PolicyError) -> Error {
    let what = format!("connector '{}', operation '{}'", connector.name, op.id);
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
    ) -> Result<Value, String> {
        let uri: Uri = url
            .parse()
            .map_err(|_| "the side-call URL is not a valid URL".to_owned())?;
        let shown = uri.path().to_owned();
        let (response, held) = upstream::exchange(
            self.connector,
            self.op,
            &method,
            uri,
            headers.clone(),
            RequestBody::Empty,
            || headers.clone(),
        )
        .await
        .map_err(|e| format!("{method} {shown}: {}", e.detail()))?;
        let status = response.status();
        let body = UpstreamBody::new(response.into_body(), held, self.connector.timeout);
        let bytes = read_limited(body, self.limit)
            .await
            .map_err(|e| format!("{method} {shown}: {}", e.detail()))?;
        if !status.is_success() {
            return Err(format!("{method} {shown} answered {status}"));
        }
        serde_json::from_slice(&bytes)
            .map_err(|_| format!("{method} {shown} did not answer with JSON"))
    }
}

/// Rewrites backend next links into gateway URLs carrying them in `junction-next`.
struct Links<'a> {
    /// The URL of the request that was sent, to resolve relative links.
    upstream_url: &'a str,
    /// The backend base URL a next link must be under.
    base: &'a str,
    /// The gateway URL of this operation call, without query.
    public: String,
    /// The client's query without `junction-next`.
    client_query: String,
    /// Names of the query parameters that carry credentials: never handed to the client
    /// (the gateway adds them again when the link is followed).
    secret_query: Vec<String>,
}

impl NextLinks for Links<'_> {
    fn rewrite(&self, next_link: &str) -> Option<String> {
        let relative = without_query(
            &under_base(self.upstream_url, self.base, next_link)?,
            &self.secret_query,
        );
        let mut out = self.public.clone();
        out.push('?');
        if !self.client_query.is_empty() {
            out.push_str(&self.client_query);
            out.push('&');
        }
        out.push_str(NEXT_LINK_PARAMETER);
        out.push('=');
        out.extend(percent_encoding::utf8_percent_encode(
            &relative,
            percent_encoding::NON_ALPHANUMERIC,
        ));
        Some(out)
    }
}

/// `link` resolved against `current`, as a path (and query) below `base`; `None` when it
/// leads anywhere else.
fn under_base(current: &str, base: &str, link: &str) -> Option<String> {
    let resolved = url::Url::parse(current).ok()?.join(link).ok()?;
    let base_url = url::Url::parse(base).ok()?;
    if resolved.scheme() != base_url.scheme()
        || resolved.host_str() != base_url.host_str()
        || resolved.port_or_known_default() != base_url.port_or_known_default()
        || resolved.fragment().is_some()
        || !resolved.username().is_empty()
    {
        return None;
    }
    let base_path = base_url.path().trim_end_matches('/');
    let rest = resolved.path().strip_prefix(base_path)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let mut relative = if rest.is_empty() {
        "/".to_owned()
    } else {
        rest.to_owned()
    };
    if let Some(query) = resolved.query() {
        relative.push('?');
        relative.push_str(query);
    }
    Some(relative)
}

/// `relative` (a path and query) without the query parameters named in `names`.
fn without_query(relative: &str, names: &[String]) -> String {
    let Some((path, query)) = relative.split_once('?').filter(|_| !names.is_empty()) else {
        return relative.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(k, _)| k);
            let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
            !names.iter().any(|s| *s == name)
        })
        .collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// The names of the query parameters that carry credentials.
fn secret_query(credentials: &[Credential]) -> Vec<String> {
    credentials
        .iter()
        .filter_map(|c| match c {
            Credential::Query(pair) => pair.expose().split_once('=').map(|(name, _)| {
                percent_encoding::percent_decode_str(name)
                    .decode_utf8_lossy()
                    .into_owned()
            }),
            _ => None,
        })
        .collect()
}

/// Checks a `junction-next` value: a path (and query) below the base, nothing else.
fn next_link_target(value: &str) -> Result<(String, String), String> {
    if !value.starts_with('/') || value.starts_with("//") {
        return Err("it is not a path below the backend's base URL".into());
    }
    if value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '#' || c == '\\')
    {
        return Err("it contains a character a next link cannot hold".into());
    }
    let (path, query) = value.split_once('?').unwrap_or((value, ""));
    if path.split('/').any(|segment| {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        decoded == "." || decoded == ".."
    }) {
        return Err("its path has a `.` or `..` segment".into());
    }
    Ok((path.to_owned(), query.to_owned()))
}

/// Runs one operation call with its policy plan.
pub(crate) async fn call(
    connector: &ConnectorPlan,
    op: &OperationPlan,
    plan: &PolicyPlan,
    parts: &Parts,
    mut bound: Bound,
    credentials: &[Credential],
) -> Result<http::Response<UpstreamBody>, Error> {
    let out_body = std::mem::replace(&mut bound.body, OutBody::Empty);
    let env = RequestEnv {
        connection: crate::connection::for_policies(connector, parts),
        op,
        values: &bound.values,
    };

    // The request policies: their time (and span, which their side calls hang under).
    let request_started = Instant::now();
    let span = Span::start("request policies", SpanKind::Internal, request_started);
    let span_id = span.as_ref().map(Span::id);
    // Build the request as the plain path does, but keep its pieces apart (no await here:
    // the bound request, whose body is not `Sync`, is not held across one).
    let built = (|| {
        let mut violations = Vec::new();
        let mut path = String::with_capacity(96);
        upstream::push_path(&mut path, op, &bound, &mut violations);
        let mut query = String::new();
        if upstream::push_query(&mut query, op, &bound) {
            query.remove(0);
        }
        let mut headers =
            upstream::build_headers(op, parts, &bound.values, credentials, &mut violations)?;
        if !violations.is_empty() {
            return Err(Error::invalid(violations));
        }
        let (json, original, other) = match out_body {
            OutBody::Json {
                value,
                original,
                content_type,
            } => {
                headers.insert(header::CONTENT_TYPE, content_type);
                (Some(value), original, OutBody::Empty)
            }
            other => (None, None, other),
        };
        let mut other_body =
            upstream::request_body(op, parts, other, &bound.values, &bound.files, &mut headers)?;
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));

        let mut out = Outgoing {
            method: parts.method.clone(),
            original_method: parts.method.clone(),
            base: connector.base_url.clone().unwrap_or_default(),
            path,
            query,
            headers,
            body: json,
            body_changed: false,
            next_link: false,
        };

        // A rewritten next link names the backend URL to call.
        let client_query = parts.uri.query().unwrap_or_default();
        if plan.next_links
            && let Some(next) =
                junction_policy::eval::query_value(client_query, NEXT_LINK_PARAMETER)
        {
            let (next_path, next_query) = next_link_target(&next).map_err(|why| {
                Error::invalid(vec![Violation::parameter(
                    crate::error::InputLocation::Query,
                    NEXT_LINK_PARAMETER,
                    format!("query parameter '{NEXT_LINK_PARAMETER}': {why}"),
                )])
            })?;
            out.path = next_path;
            out.query = next_query;
            out.method = http::Method::GET;
            out.body = None;
            other_body = RequestBody::Empty;
            out.headers.remove(header::CONTENT_TYPE);
            out.headers.remove(header::CONTENT_LENGTH);
            out.next_link = true;
        }

        let side = Side {
            connector,
            op,
            limit: connector.max_response_bytes,
        };
        let hosts = Hosts {
            apply: !connector.backend_configured,
            allowed: &connector.allowed_hosts,
        };
        Ok::<_, Error>((out, other_body, original, side, hosts))
    })();
    let prepared = async {
        let (mut out, mut other_body, original, side, hosts) = built?;
        junction_policy::run_request(&plan.request, &mut out, &env, &hosts, &side)
            .await
            .map_err(|e| policy_error(connector, op, e))?;
        if out.base.is_empty() {
            return Err(upstream::no_target(connector));
        }

        let mut transformed = None;
        if let Some(transform) = &plan.request_transform
            && let Some(body) = out.body.take()
        {
            let result = transform
                .transform
                .run_to_json(body, &env.params_json(), &env.connection.public)
                .map_err(|why| transform_error(connector, op, transform, &why))?;
            transformed = Some(Bytes::from(result));
        }

        // Assemble and send.
        let mut url = out.url();
        let mut first = !url.contains('?');
        upstream::push_credential_query(&mut url, credentials, &mut first);
        let uri: Uri = url.parse().map_err(|_| {
            Error::new(
                ErrorKind::Misconfigured,
                format!(
                    "connector '{}', operation '{}': the policies made a URL that cannot be sent",
                    connector.name, op.id
                ),
            )
        })?;
        // No re-serialisation when nothing changed the body.
        let bytes = match (transformed, &out.body) {
            (Some(bytes), _) => Some(bytes),
            (None, Some(_)) if !out.body_changed && original.is_some() => original,
            (None, Some(body)) => Some(Bytes::from(serde_json::to_vec(body).map_err(|e| {
                Error::new(ErrorKind::Internal, "could not write the request body").with_cause(e)
            })?)),
            (None, None) => None,
        };
        if let Some(bytes) = bytes {
            other_body = RequestBody::full(bytes);
            out.headers.remove(header::CONTENT_LENGTH);
        }
        Ok::<_, Error>((out, uri, url, other_body))
    };
    let prepared = trace::within(span_id, prepared).await;
    let request_ended = Instant::now();
    end_span(span, request_ended, prepared.as_ref().err());
    let (out, uri, url, other_body) = prepared?;

    let sent_headers = out.headers.clone();
    let retry = out.headers.clone();
    let (response, held) = upstream::exchange(
        connector,
        op,
        &out.method,
        uri,
        out.headers,
        other_body,
        || retry.clone(),
    )
    .await?;

    // The response policies, timed and traced like the request's.
    let response_started = Instant::now();
    let span = Span::start("response policies", SpanKind::Internal, response_started);
    let span_id = span.as_ref().map(Span::id);
    let client_query = parts.uri.query().unwrap_or_default();
    let answered = trace::within(span_id, async {
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
    let (mut head, incoming) = response.into_parts();
    upstream::strip_hop_by_hop(&mut head.headers);
    let body = UpstreamBody::new(incoming, held, connector.timeout);
    let success = status.as_u16() < 400;
    let chain = if success {
        &plan.response
    } else {
        &plan.failure
    };
    let read = success && plan.response_json && json_response(&head.headers);
    let links = Links {
        upstream_url: &url,
        base: &out.base,
        public: public_url(connector, parts),
        client_query: without_next_link(client_query),
        secret_query: secret_query(credentials),
    };
    if !read {
        if !chain.is_empty() {
            let mut message = Incoming {
                status: status.as_u16(),
                headers: &mut head.headers,
                body: None,
            };
            junction_policy::run_response(chain, &mut message, &env, &links)
                .map_err(|e| policy_error(connector, op, e))?;
        }
        return Ok(http::Response::from_parts(head, body));
    }

    let bytes = read_limited(body, connector.max_response_bytes).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        // Nothing to work on.
        return Ok(http::Response::from_parts(head, UpstreamBody::full(bytes)));
    }
    let rewritten = if plan.paging.is_none() && !chain.iter().any(|p| p.uses_body()) {
        // Only the transform reads the body: straight from the text, no document.
        let mut message = Incoming {
            status: status.as_u16(),
            headers: &mut head.headers,
            body: None,
        };
        junction_policy::run_response(chain, &mut message, &env, &links)
            .map_err(|e| policy_error(connector, op, e))?;
        match &plan.response_transform {
            Some(transform) => Some(
                transform
                    .transform
                    .run_json(&bytes, &env.params_json(), &env.connection.public)
                    .map_err(|why| transform_error(connector, op, transform, &why))?,
            ),
            None => None,
        }
    } else {
        let mut value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                ErrorKind::UpstreamInvalid,
                format!(
                    "connector '{}', operation '{}': the backend's response is not valid JSON, so its policies cannot run",
                    connector.name, op.id
                ),
            )
            .with_cause(e)
        })?;
        let mut changed = false;
        if let Some(paging) = &plan.paging {
            changed |= follow_pages(
                connector,
                op,
                paging,
                &mut value,
                (&url, &out.base),
                &sent_headers,
                credentials,
            )
            .await?;
        }
        let mut message = Incoming {
            status: status.as_u16(),
            headers: &mut head.headers,
            body: Some(&mut value),
        };
        changed |= junction_policy::run_response(chain, &mut message, &env, &links)
            .map_err(|e| policy_error(connector, op, e))?;
        match &plan.response_transform {
            Some(transform) => Some(
                transform
                    .transform
                    .run_to_json(value, &env.params_json(), &env.connection.public)
                    .map_err(|why| transform_error(connector, op, transform, &why))?,
            ),
            // No re-serialisation when nothing changed the body.
            None if !changed => None,
            None => Some(serde_json::to_vec(&value).map_err(|e| {
                Error::new(ErrorKind::Internal, "could not write the response body").with_cause(e)
            })?),
        }
    };
    let Some(bytes) = rewritten else {
        return Ok(http::Response::from_parts(head, UpstreamBody::full(bytes)));
    };
    head.headers.remove(header::CONTENT_LENGTH);
    head.headers.remove(header::CONTENT_ENCODING);
    head.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok::<_, Error>(http::Response::from_parts(
        head,
        UpstreamBody::full(Bytes::from(bytes)),
    ))
    })
    .await;
    let response_ended = Instant::now();
    end_span(span, response_ended, answered.as_ref().err());
    let policies = request_ended.duration_since(request_started)
        + response_ended.duration_since(response_started);
    answered.map(|mut response| {
        StageTimings::of(response.extensions_mut()).policies = Some(policies);
        response
    })
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

/// Reads a response body whole, up to `limit` bytes, under its deadline.
async fn read_limited(body: UpstreamBody, limit: u64) -> Result<Bytes, Error> {
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, cap).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(Error::new(
            ErrorKind::UpstreamInvalid,
            format!(
                "the backend's response is larger than limits.max_response_bytes ({limit} bytes), so its policies or transform cannot run"
            ),
        )),
        Err(error) if is_deadline(error.as_ref()) => Err(Error::new(
            ErrorKind::UpstreamTimeout,
            "the backend did not send its whole response in time",
        )),
        Err(error) => Err(Error::new(
            ErrorKind::UpstreamUnreachable,
            "the backend broke off its response",
        )
        .with_cause(error)),
    }
}

fn is_deadline(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<DeadlinePassed>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// The gateway URL of this call, without query: `public_url` or `http://` and the
/// request's `Host`, then the path the client called.
fn public_url(connector: &ConnectorPlan, parts: &Parts) -> String {
    let base = match &connector.public_url {
        Some(url) => url.clone(),
        None => parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .map(|host| format!("http://{host}"))
            .unwrap_or_default(),
    };
    format!("{base}{}", parts.uri.path())
}

fn without_next_link(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| {
            !pair.is_empty()
                && pair.split_once('=').map_or(*pair, |(k, _)| k) != NEXT_LINK_PARAMETER
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Follows `nextLinkName` from `first` (the first page), appending each page's items,
/// until the limits; leaves the last next link (if any) in the document. Returns whether
/// it fetched any page.
async fn follow_pages(
    connector: &ConnectorPlan,
    op: &OperationPlan,
    paging: &PagingPlan,
    first: &mut Value,
    (first_url, base): (&str, &str),
    headers: &HeaderMap,
    credentials: &[Credential],
) -> Result<bool, Error> {
    let secret = secret_query(credentials);
    let Some(Value::Array(items)) = first.get(&paging.items) else {
        return Ok(false);
    };
    let mut items = items.clone();
    let mut next = first
        .get(&paging.next_link)
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut current = first_url.to_owned();
    let mut pages = 1u32;
    let mut page_headers = headers.clone();
    page_headers.remove(header::CONTENT_TYPE);
    page_headers.remove(header::CONTENT_LENGTH);
    while let Some(link) = next.take() {
        if pages >= paging.limits.max_pages
            || u64::try_from(items.len()).unwrap_or(u64::MAX) >= paging.limits.max_items
        {
            next = Some(link);
            break;
        }
        let Some(relative) = under_base(&current, base, &link) else {
            tracing::debug!(connector = %connector.name, operation = %op.id, "next link leaves the backend; paging stops");
            next = Some(link);
            break;
        };
        // The credentials travel as for the first page, whatever the link carries.
        let mut url = format!("{base}{}", without_query(&relative, &secret));
        let mut first_pair = !url.contains('?');
        upstream::push_credential_query(&mut url, credentials, &mut first_pair);
        let uri: Uri = url.parse().map_err(|_| {
            Error::new(
                ErrorKind::UpstreamInvalid,
                format!(
                    "connector '{}', operation '{}': page {} has a next link that is not a URL",
                    connector.name,
                    op.id,
                    pages + 1
                ),
            )
        })?;
        let (response, held) = upstream::exchange(
            connector,
            op,
            &http::Method::GET,
            uri,
            page_headers.clone(),
            RequestBody::Empty,
            || page_headers.clone(),
        )
        .await?;
        pages += 1;
        let status = response.status();
        let body = UpstreamBody::new(response.into_body(), held, connector.timeout);
        let bytes = read_limited(body, connector.max_response_bytes).await?;
        if !status.is_success() {
            return Err(Error::new(
                ErrorKind::UpstreamInvalid,
                format!(
                    "connector '{}', operation '{}': page {pages} answered {status}",
                    connector.name, op.id
                ),
            ));
        }
        let page: Value = serde_json::from_slice(&bytes).map_err(|_| {
            Error::new(
                ErrorKind::UpstreamInvalid,
                format!(
                    "connector '{}', operation '{}': page {pages} is not JSON",
                    connector.name, op.id
                ),
            )
        })?;
        if let Some(Value::Array(more)) = page.get(&paging.items) {
            items.extend(more.iter().cloned());
        }
        next = page
            .get(&paging.next_link)
            .and_then(Value::as_str)
            .map(str::to_owned);
        current = url;
    }
    if pages == 1 {
        return Ok(false);
    }
    if let Value::Object(map) = first {
        map.insert(paging.items.clone(), Value::Array(items));
        match next {
            Some(link) => {
                map.insert(paging.next_link.clone(), Value::String(link));
            }
            None => {
                map.shift_remove(&paging.next_link);
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn next_links_stay_below_the_base() {
        let base = "https://graph.example.com/v1.0";
        let current = "https://graph.example.com/v1.0/me/tasks?$top=2";
        assert_eq!(
            under_base(
                current,
                base,
                "https://graph.example.com/v1.0/me/tasks?$skiptoken=X"
            )
            .as_deref(),
            Some("/me/tasks?$skiptoken=X")
        );
        assert_eq!(
            under_base(current, base, "?page=2").as_deref(),
            Some("/me/tasks?page=2")
        );
        assert_eq!(under_base(current, base, "https://evil.com/v1.0/x"), None);
        assert_eq!(
            under_base(current, base, "https://graph.example.com/v2/x"),
            None
        );
        assert_eq!(
            under_base(current, base, "https://graph.example.com:8443/v1.0/x"),
            None
        );
        assert_eq!(
            under_base(current, base, "http://graph.example.com/v1.0/x"),
            None
        );
        assert_eq!(
            under_base(current, base, "https://u:p@graph.example.com/v1.0/x"),
            None
        );
        assert_eq!(
            under_base(current, base, "https://graph.example.com/v1.0x"),
            None
        );
    }

    #[test]
    fn next_link_values_are_paths_below_the_base() {
        assert_eq!(
            next_link_target("/me/tasks?$skiptoken=X"),
            Ok(("/me/tasks".into(), "$skiptoken=X".into()))
        );
        for bad in [
            "me",
            "//evil.com/x",
            "/a/../b",
            "/a/%2e%2e/b",
            "/a b",
            "/a#f",
            "/a\\b",
        ] {
            assert!(next_link_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_next_link_parameter_is_dropped_from_the_client_query() {
        assert_eq!(without_next_link("a=1&junction-next=%2Fx&b=2"), "a=1&b=2");
        assert_eq!(without_next_link(""), "");
    }
}
