//! The gateway: every connector compiled into an immutable route table, built once from
//! the configuration and the loaded connectors, and swapped atomically on reload.
//!
//! [`Gateway::compile`] collects every problem as a [`Diagnostic`]: errors (a config section
//! for a connector or view that does not exist, a connection value that cannot be sent)
//! reject the whole table; warnings (a schema that does not compile, a missing connection value, two
//! operations on one route) are reported and serving goes on. A request only reads the
//! table; [`SharedGateway`] holds it behind an `ArcSwap`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use junction_model::{
    Connector, Diagnostic, Diagnostics, Method, SecurityRequirement, Severity, list_or_none,
};
use serde::Serialize;

use crate::auth::{self, AuthPlan, AuthProblem};
use crate::config::traffic::CacheOverrides;
use crate::config::{Config, ConnectorConfig, Limits};
use crate::plan::{self, OperationPlan};
use crate::policy;
use crate::route::{self, RouteTable};
use crate::schema::SchemaCompiler;
use crate::telemetry::{Metrics, RouteMetrics, RouteName, UpstreamMetrics};
use crate::traffic::{ConnectorTrafficPlan, Traffic, TrafficStatus};
use crate::upstream;
use crate::upstream::agent::AgentPools;

/// One connector, compiled.
#[derive(Debug)]
pub(crate) struct ConnectorPlan {
    pub name: String,
    pub title: String,
    pub description: Option<String>,
    pub version: Option<String>,
    pub routes: RouteTable,
    /// The operations clients call (`actions`, routed by `routes`), then its triggers
    /// (`x-ms-trigger`, routed by `trigger_routes` for the gateway's own polls only).
    pub operations: Vec<OperationPlan>,
    /// How many of `operations` are actions; the rest are triggers.
    pub actions: usize,
    /// The triggers' routes: only a request carrying [`crate::TriggerPoll`] is routed here.
    pub trigger_routes: RouteTable,
    /// Where requests go; `None` when neither the definition nor the configuration names a
    /// usable host.
    pub target: Option<upstream::Target>,
    /// How its requests reach the backend.
    pub transport: upstream::Transport,
    pub timeout: Duration,
    /// The target as a URL, for policies (`None` when there is none).
    pub base_url: Option<String>,
    /// Whether `backend` is configured: it then wins over host policies.
    pub backend_configured: bool,
    /// `allowed_hosts`.
    pub allowed_hosts: Vec<String>,
    /// The default connection's values, as policies and transforms read them.
    pub connection: policy::Connection,
    /// `public_url`.
    pub public_url: Option<String>,
    /// `limits.max_response_bytes`.
    pub max_response_bytes: u64,
    /// Rate limits, retries and the backend's guards.
    pub traffic: ConnectorTrafficPlan,
    /// What building a stored connection's credentials needs.
    pub auth_model: crate::connection::AuthModel,
    /// The request counters of each operation, indexed like `operations`.
    pub op_metrics: Vec<Arc<RouteMetrics>>,
    /// The latency of the connector's upstream calls.
    pub upstream_metrics: Arc<UpstreamMetrics>,
}

impl ConnectorPlan {
    /// The operations clients call: every operation but the triggers.
    pub(crate) fn actions(&self) -> &[OperationPlan] {
        self.operations.get(..self.actions).unwrap_or_default()
    }
}

/// The compiled route table of every connector. Immutable once built.
#[derive(Debug)]
pub struct Gateway {
    connectors: HashMap<String, ConnectorPlan>,
    /// Connector names in load order, for listings.
    order: Vec<String>,
    pub(crate) limits: Limits,
    /// The views of `views_dir`, compiled against the connectors above.
    pub(crate) views: crate::view::Views,
    /// The response cache, rate limits and backend guards.
    pub(crate) traffic: Traffic,
    /// Client authentication and connection resolution, when a store is configured.
    pub(crate) admission: Option<Arc<dyn crate::connection::Admission>>,
    /// Request counters and the access log; handed on to the table that replaces this one.
    metrics: Arc<Metrics>,
    /// The upstream clients (one per connect timeout), for their pools' figures.
    clients: Vec<upstream::HttpClient>,
    /// `[telemetry] server_timing`.
    server_timing: bool,
    /// How next links are signed (`[next_links]`).
    pub(crate) links: crate::next_link::Signing,
    /// The outbound agents connected to this gateway, by pool (`via = "agent:POOL"`).
    agents: AgentPools,
}

/// A gateway and the warnings found while building it.
#[derive(Debug)]
pub struct Compiled {
    pub gateway: Gateway,
    /// Warnings only; errors make [`Gateway::compile`] fail.
    pub diagnostics: Diagnostics,
}

/// A connector as the admin API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorSummary {
    pub name: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub operations: Vec<OperationSummary>,
}

/// An operation as the admin API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct OperationSummary {
    pub id: String,
    pub method: Method,
    /// The path template, relative to `/connectors/{name}`.
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

impl Gateway {
    /// Compiles `connectors` with `config`. Fails with every diagnostic (errors and
    /// warnings) when any error was found.
    pub fn compile(config: &Config, connectors: &[Connector]) -> Result<Compiled, Diagnostics> {
        Gateway::compile_with_metrics(
            config,
            connectors,
            Metrics::new(crate::telemetry::problem_types()),
        )
    }

    /// [`Gateway::compile`], counting into `metrics`: a reload passes the metrics of the
    /// table it replaces ([`Gateway::metrics`]), so counters go on across the swap.
    pub fn compile_with_metrics(
        config: &Config,
        connectors: &[Connector],
        metrics: Arc<Metrics>,
    ) -> Result<Compiled, Diagnostics> {
        let config_file = config.file.display().to_string();
        let mut diagnostics = Diagnostics::default();
        let mut plans: HashMap<String, ConnectorPlan> = HashMap::new();
        let mut order = Vec::new();
        let mut clients: HashMap<Duration, upstream::HttpClient> = HashMap::new();
        let empty = ConnectorConfig::default();
        let mut traffic = Traffic::new(config, &mut diagnostics);
        let agents = AgentPools::default();

        for connector in connectors {
            if plans.contains_key(&connector.name) {
                diagnostics.push(Diagnostic::new(
                    Severity::Error,
                    "duplicate-connector",
                    &connector.source,
                    "",
                    format!("another connector is already named '{}'", connector.name),
                ));
                continue;
            }
            let section = config.connectors.get(&connector.name).unwrap_or(&empty);
            let timeouts = config.upstream_for(&connector.name);
            let client = match clients.get(&timeouts.connect_timeout) {
                Some(client) => client.clone(),
                None => match upstream::client(timeouts.connect_timeout) {
                    Ok(client) => {
                        clients.insert(timeouts.connect_timeout, client.clone());
                        client
                    }
                    Err(message) => {
                        diagnostics.push(Diagnostic::new(
                            Severity::Error,
                            "http-client",
                            &config_file,
                            "",
                            message,
                        ));
                        continue;
                    }
                },
            };
            let transport = match &section.via {
                Some(pool) => upstream::Transport::Agent {
                    pool: pool.clone(),
                    pools: agents.clone(),
                },
                None => upstream::Transport::Direct(client),
            };
            let mut plan = compile_connector(
                connector,
                section,
                config,
                transport,
                timeouts.timeout,
                &mut traffic,
                &mut diagnostics,
            );
            attach_metrics(&mut plan, &metrics);
            order.push(connector.name.clone());
            plans.insert(connector.name.clone(), plan);
        }

        for (name, section) in &config.connectors {
            if !plans.contains_key(name) {
                let known = order.iter().map(String::as_str).collect();
                diagnostics.push(unknown_section(
                    &config_file,
                    "connector",
                    name,
                    known,
                    section.line,
                ));
            }
        }

        check_triggers(config, &plans, &order, &mut diagnostics);

        let view_policies = view_cache_policies(config, &traffic, &mut diagnostics);
        let views = crate::view::Views::compile(
            &config.views,
            connectors,
            &|connector, operation| {
                plans
                    .get(connector)
                    .is_some_and(|plan| plan.actions().iter().any(|op| op.id == operation))
            },
            &|view| view_policies.get(view).cloned(),
            config.upstream.timeout,
            &mut diagnostics,
        );

        views.attach_metrics(&metrics);

        if diagnostics.has_errors() {
            return Err(diagnostics);
        }
        Ok(Compiled {
            gateway: Gateway {
                connectors: plans,
                order,
                limits: config.limits,
                views,
                traffic,
                admission: None,
                metrics,
                clients: clients.into_values().collect(),
                server_timing: config.telemetry.server_timing,
                links: crate::next_link::Signing::new(&config.next_links),
                agents,
            },
            diagnostics,
        })
    }

    /// The outbound agents connected to this gateway: the agents listener attaches them,
    /// connectors with `via = "agent:POOL"` send through them.
    pub fn agents(&self) -> &AgentPools {
        &self.agents
    }

    /// The request counters and the access log.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether data-plane responses carry a `Server-Timing` header.
    pub fn server_timing(&self) -> bool {
        self.server_timing
    }

    /// The step that admits data-plane requests, when a store is configured.
    pub fn admission(&self) -> Option<&Arc<dyn crate::connection::Admission>> {
        self.admission.as_ref()
    }

    /// Sets the step that admits every data-plane request (see [`crate::connection`]).
    /// Unless `[next_links] key` is set, next links are then signed with the admission's
    /// key (shared by every replica of its store), when it has one.
    pub fn set_admission(&mut self, admission: Arc<dyn crate::connection::Admission>) {
        if !self.links.configured
            && let Some(key) = admission.link_key()
        {
            self.links.key = Arc::new(key);
        }
        self.admission = Some(admission);
    }

    /// The operation that tests a connection of connector `name`: the one its package names
    /// as its `testConnection` capability, else its first served `GET` that needs no input.
    pub fn test_operation(&self, name: &str) -> Option<String> {
        let plan = self.connectors.get(name)?;
        let declared = plan
            .auth_model
            .connector
            .extensions
            .get("x-ms-capabilities")
            .and_then(|c| c.get("testConnection"))
            .and_then(|t| t.get("operationId"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        // Else the first GET that needs no input: reading is safe.
        declared.or_else(|| {
            plan.actions()
                .iter()
                .find(|op| {
                    op.method == Method::Get
                        && op.refusal.is_none()
                        && op.params.iter().all(|p| !p.required || p.default.is_some())
                        && matches!(op.body, plan::BodyPlan::None)
                })
                .map(|op| op.id.clone())
        })
    }

    pub(crate) fn connector_plan(&self, name: &str) -> Option<&ConnectorPlan> {
        self.connectors.get(name)
    }

    /// Every view, in file order.
    pub fn views(&self) -> Vec<crate::view::ViewSummary> {
        self.views.summaries()
    }

    /// The request limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Cache, rate limit, breaker and retry counters.
    pub fn traffic_status(&self) -> TrafficStatus {
        let mut status = self.traffic.status();
        for client in &self.clients {
            status.pool.add(client.snapshot());
        }
        status
    }

    /// Purges the cache entries of `connector`, of its `operation`, of a `view`, or whose
    /// key starts with `prefix` (after the connector's, operation's or view's prefix when
    /// those are given). Returns the key prefix purged and how many entries went.
    pub async fn purge_cache(
        &self,
        connector: Option<&str>,
        operation: Option<&str>,
        view: Option<&str>,
        prefix: Option<&str>,
    ) -> Result<(String, u64), crate::Error> {
        use crate::cache::key::{connector_prefix, operation_prefix, view_prefix};
        use crate::error::{Error, ErrorKind};
        let Some(cache) = &self.traffic.cache else {
            return Err(Error::new(
                ErrorKind::NotFound,
                "no response cache is configured (no `cache` section in junction.toml)",
            ));
        };
        let base = match (connector, operation, view) {
            // What is named does not exist: an operation outside a connector, entries of
            // a connector and a view at once.
            (None, Some(id), _) => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "there is no operation '{id}' outside a connector: name its `connector` too"
                    ),
                ));
            }
            (Some(_), _, Some(_)) => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    "no cache entry belongs to a connector and a view at once: name one of them",
                ));
            }
            // Nothing named: every entry.
            (None, None, None) => String::new(),
            (None, None, Some(name)) => {
                if self.views.get(name).is_none() {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("there is no view named '{name}'"),
                    ));
                }
                view_prefix(name)
            }
            (Some(name), operation, None) => {
                let Some(plan) = self.connectors.get(name) else {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("there is no connector named '{name}'"),
                    ));
                };
                match operation {
                    None => connector_prefix(name),
                    Some(id) if plan.actions().iter().any(|op| op.id == id) => {
                        operation_prefix(name, id)
                    }
                    Some(id) => {
                        return Err(Error::new(
                            ErrorKind::NotFound,
                            format!("connector '{name}' has no operation '{id}'"),
                        ));
                    }
                }
            }
        };
        let full = format!("{base}{}", prefix.unwrap_or_default());
        match cache.purge(&full).await {
            Ok(purged) => Ok((full, purged)),
            Err(error) => Err(Error::new(
                ErrorKind::StoreUnavailable,
                "the cache could not be purged: its store is unavailable; try again",
            )
            .with_cause(error)),
        }
    }

    /// Every connector, in load order.
    pub fn connectors(&self) -> Vec<ConnectorSummary> {
        self.order
            .iter()
            .filter_map(|name| self.connector(name))
            .collect()
    }

    /// One connector by name.
    pub fn connector(&self, name: &str) -> Option<ConnectorSummary> {
        let plan = self.connectors.get(name)?;
        Some(ConnectorSummary {
            name: plan.name.clone(),
            title: plan.title.clone(),
            description: plan.description.clone(),
            version: plan.version.clone(),
            operations: plan
                .actions()
                .iter()
                .map(|op| OperationSummary {
                    id: op.id.clone(),
                    method: op.method,
                    path: op.path.clone(),
                    summary: op.summary.clone(),
                })
                .collect(),
        })
    }
}

fn compile_connector(
    connector: &Connector,
    section: &ConnectorConfig,
    config: &Config,
    transport: upstream::Transport,
    timeout: Duration,
    traffic: &mut Traffic,
    diagnostics: &mut Diagnostics,
) -> ConnectorPlan {
    let source = connector.source.as_str();
    let warn = |diagnostics: &mut Diagnostics, code, pointer: &str, message: String| {
        diagnostics.push(Diagnostic::new(
            Severity::Warning,
            code,
            source,
            pointer,
            message,
        ));
    };

    let (schemas, problem) = SchemaCompiler::new(connector);
    if let Some(message) = problem {
        warn(diagnostics, "schema-not-validated", "/definitions", message);
    }

    let base_url = match &section.backend {
        // A WSDL connector's operations are sent to their port's address path; a `backend`
        // with a path replaces that path (see `soap_view`).
        Some(url) if connector.soap.is_some() => Some(url.origin().ascii_serialization()),
        Some(url) => {
            let mut url = url.clone();
            url.set_query(None);
            url.set_fragment(None);
            Some(url.as_str().trim_end_matches('/').to_owned())
        }
        None if connector.upstream.host.is_empty() && !has_host_policy(connector) => {
            warn(
                diagnostics,
                "no-backend",
                "/host",
                format!(
                    "connector '{}' names no host; set `backend` in [connector.{}] to call it",
                    connector.name, connector.name
                ),
            );
            None
        }
        None if connector.upstream.host.is_empty() => None,
        None => Some(connector.upstream.base_url()),
    };
    let policies = policy::ConnectorPolicies::compile(connector, section, diagnostics);
    let target = base_url.and_then(|base| match upstream::Target::parse(&base) {
        Ok(target) => Some(target),
        Err(message) => {
            warn(
                diagnostics,
                "no-backend",
                "/host",
                format!(
                    "connector '{}': {message}; set `backend` in [connector.{}] to call it",
                    connector.name, connector.name
                ),
            );
            None
        }
    });

    // Authentication plans, shared by operations with the same requirements.
    let mut auth_plans: Vec<(Option<&Vec<SecurityRequirement>>, AuthPlan)> = Vec::new();
    let mut routes = RouteTable::default();
    let mut trigger_routes = RouteTable::default();
    let mut operations = Vec::new();
    let mut actions = 0;
    let mut operation_security = Vec::new();
    let soap_types = connector.soap.clone().map(Arc::new);
    check_soap_port(connector, section, &config.file, diagnostics);
    // Actions first, then triggers: `operations[..actions]` are what clients may call.
    let (triggers, plain): (Vec<_>, Vec<_>) =
        connector.operations.iter().partition(|op| op.is_trigger());
    for op in plain.into_iter().chain(triggers) {
        let trigger = op.is_trigger();
        if !trigger {
            actions += 1;
        }
        let table = if trigger {
            &mut trigger_routes
        } else {
            &mut routes
        };
        // Requirements are borrowed from the connector: a renamed SOAP operation is a copy.
        let security = op.security.as_ref();
        let Some(op) = soap_view(op, section) else {
            continue;
        };
        let op = op.as_ref();
        let template = route::parse_template(&op.path);
        let index = u32::try_from(operations.len()).unwrap_or(u32::MAX);
        if let Err(existing) = table.insert(&template, op.method, index) {
            let first = usize::try_from(existing)
                .ok()
                .and_then(|i| operations.get(i))
                .map_or("another operation", |o: &OperationPlan| o.id.as_str());
            warn(
                diagnostics,
                "ambiguous-route",
                &op.pointer,
                format!(
                    "operation '{}' ({} {}) has the same route as '{first}', which is served instead",
                    op.id, op.method, op.path
                ),
            );
            continue;
        }
        let auth = auth_for(&mut auth_plans, connector, security, section, diagnostics);
        let mut notes = Vec::new();
        let mut compiled =
            plan::compile_operation(connector, op, &template, &schemas, auth, &mut notes);
        let (plan, refusal, read_json) =
            policies.for_operation(connector, op, section, section.operations.get(&op.id));
        compiled.policies = plan;
        compiled.refusal = refusal;
        compiled.read_json |= read_json;
        let op_config = section.operations.get(&op.id);
        compiled.idempotent |= op_config.is_some_and(|o| o.idempotent || o.read_only);
        compiled.soap = soap_types
            .as_ref()
            .and_then(|types| upstream::soap::SoapPlan::compile(types, op).map(Box::new));
        // A trigger's poll always reaches the backend. With the `pollingtrigger` template
        // its path's `/trigger` prefix (how Power Platform routes such triggers) is not
        // the backend's.
        if trigger {
            compiled.polling = policies.polling(op);
            compiled.notification = op
                .extensions
                .get("x-ms-notification-content")
                .and_then(|content| content.get("schema"))
                .and_then(|schema| schemas.compile(schema, &[]).ok().flatten())
                .map(Box::new);
            let prefixed = matches!(compiled.segments.first().map(Vec::as_slice),
                Some([plan::UpstreamPiece::Literal(first)]) if first == "trigger");
            if compiled.polling.is_some() && prefixed {
                compiled.segments.remove(0);
            }
        } else {
            compiled.cache = cache_policy(connector, op, section, traffic, diagnostics);
        }
        operations.push(compiled);
        operation_security.push(op.security.clone());
        for note in notes {
            warn(diagnostics, note.code, &note.pointer, note.message);
        }
    }
    let config_file = config.file.display().to_string();
    for (id, op_config) in &section.operations {
        if connector.operation(id).is_none_or(|op| op.is_trigger()) {
            let mut diagnostic = Diagnostic::new(
                Severity::Error,
                "unknown-operation",
                &config_file,
                format!("/connector/{}/operation/{id}", connector.name),
                format!(
                    "[connector.{}.operation.{id}] configures an operation connector '{}' does not have",
                    connector.name, connector.name
                ),
            );
            if let Some(line) = op_config.line {
                diagnostic = diagnostic.at(line, 1);
            }
            diagnostics.push(diagnostic);
        }
    }

    let connector_traffic = traffic.connector(
        &connector.name,
        section,
        target.as_ref().map(upstream::Target::authority),
    );
    ConnectorPlan {
        traffic: connector_traffic,
        name: connector.name.clone(),
        title: connector.title.clone(),
        description: connector.description.clone(),
        version: connector.version.clone(),
        base_url: target.as_ref().map(upstream::Target::base_url),
        routes,
        operations,
        actions,
        trigger_routes,
        target,
        transport,
        timeout,
        backend_configured: section.backend.is_some(),
        allowed_hosts: section.allowed_hosts.clone(),
        connection: policy::Connection::new(connector, &section.connection),
        public_url: config.public_url.clone(),
        max_response_bytes: config.limits.max_response_bytes,
        auth_model: crate::connection::AuthModel {
            connector: Connector {
                operations: Vec::new(),
                definitions: serde_json::Map::new(),
                soap: None,
                ..connector.clone()
            },
            operations: operation_security,
        },
        op_metrics: Vec::new(),
        upstream_metrics: Arc::default(),
    }
}

/// A SOAP operation as its connector's section serves it: with `soap_port`, only the
/// operations of that port, each under its WSDL name (`None` for another port's); with a
/// `backend` that has a path, sent to that address. Any other operation as it is.
fn soap_view<'o>(
    op: &'o junction_model::Operation,
    section: &ConnectorConfig,
) -> Option<std::borrow::Cow<'o, junction_model::Operation>> {
    use std::borrow::Cow;
    let Some(soap) = &op.soap else {
        return Some(Cow::Borrowed(op));
    };
    let mut view = Cow::Borrowed(op);
    if let Some(port) = &section.soap_port {
        if &soap.port != port {
            return None;
        }
        if op.id != soap.name {
            let op = view.to_mut();
            op.id = soap.name.clone();
            op.path = format!("/{}", soap.name);
        }
    }
    // `backend = "http://host:port/path"` is the service's address: its path replaces the
    // port's (a bare `http://host:port` keeps the port's path).
    if let Some(backend) = &section.backend
        && backend.path() != "/"
        && let Some(soap) = &mut view.to_mut().soap
    {
        soap.address = backend.to_string();
    }
    Some(view)
}

/// An error when `soap_port` names no port of the connector (or it is not a WSDL one).
fn check_soap_port(
    connector: &Connector,
    section: &ConnectorConfig,
    file: &std::path::Path,
    diagnostics: &mut Diagnostics,
) {
    let Some(port) = &section.soap_port else {
        return;
    };
    let mut ports: Vec<&str> = connector
        .operations
        .iter()
        .filter_map(|op| op.soap.as_ref().map(|s| s.port.as_str()))
        .collect();
    ports.dedup();
    if ports.contains(&port.as_str()) {
        return;
    }
    let known = if ports.is_empty() {
        "it is not a WSDL connector".to_owned()
    } else {
        format!("its ports are {}", ports.join(", "))
    };
    let mut diagnostic = Diagnostic::new(
        Severity::Error,
        "unknown-soap-port",
        file.display().to_string(),
        format!("/connector/{}/soap_port", connector.name),
        format!(
            "[connector.{}] soap_port = \"{port}\" names no port of connector '{}': {known}",
            connector.name, connector.name
        ),
    );
    if let Some(line) = section.line {
        diagnostic = diagnostic.at(line, 1);
    }
    diagnostics.push(diagnostic);
}

/// Gives `plan` its series in `metrics`: one per operation, and its upstream histogram.
fn attach_metrics(plan: &mut ConnectorPlan, metrics: &Metrics) {
    plan.op_metrics = plan
        .actions()
        .iter()
        .map(|op| {
            metrics.route(RouteName::Operation {
                connector: plan.name.clone(),
                operation: op.id.clone(),
            })
        })
        .collect();
    plan.upstream_metrics = metrics.upstream(&plan.name);
}

fn auth_for<'c>(
    cache: &mut Vec<(Option<&'c Vec<SecurityRequirement>>, AuthPlan)>,
    connector: &'c Connector,
    requirements: Option<&'c Vec<SecurityRequirement>>,
    section: &ConnectorConfig,
    diagnostics: &mut Diagnostics,
) -> AuthPlan {
    if let Some((_, plan)) = cache.iter().find(|(r, _)| *r == requirements) {
        return plan.clone();
    }
    let source = connector.source.as_str();
    let plan = match auth::plan(
        connector,
        requirements.map(Vec::as_slice),
        &section.connection,
    ) {
        Ok(plan) => plan,
        Err(AuthProblem::Unconfigured(message)) => {
            diagnostics.push(Diagnostic::new(
                Severity::Warning,
                "missing-connection-value",
                source,
                "/securityDefinitions",
                message,
            ));
            AuthPlan::None
        }
        Err(AuthProblem::Missing(message)) => {
            diagnostics.push(Diagnostic::new(
                Severity::Warning,
                "missing-connection-value",
                source,
                "/securityDefinitions",
                message.clone(),
            ));
            AuthPlan::Missing(message.into())
        }
        Err(AuthProblem::Invalid(message)) => {
            diagnostics.push(Diagnostic::new(
                Severity::Error,
                "invalid-connection-value",
                source,
                "/securityDefinitions",
                message.clone(),
            ));
            AuthPlan::Missing(message.into())
        }
    };
    cache.push((requirements, plan.clone()));
    plan
}

/// The gateway in force, swappable as a whole while requests are served.
#[derive(Debug, Clone)]
pub struct SharedGateway(Arc<ArcSwap<Gateway>>);

impl SharedGateway {
    pub fn new(gateway: Gateway) -> Self {
        SharedGateway(Arc::new(ArcSwap::from_pointee(gateway)))
    }

    /// The table in force now. Requests hold it to their end, so a swap never changes a
    /// request midway.
    pub fn load(&self) -> Arc<Gateway> {
        self.0.load_full()
    }

    /// Replaces the table; requests already running keep the old one.
    pub fn swap(&self, gateway: Gateway) {
        self.0.store(Arc::new(gateway));
    }
}

/// The cache policy of `op` from its connector's and its own `cache` sections; a warning
/// when the sections exist but can never apply.
fn cache_policy(
    connector: &Connector,
    op: &junction_model::Operation,
    section: &ConnectorConfig,
    traffic: &Traffic,
    diagnostics: &mut Diagnostics,
) -> Option<Box<crate::cache::CachePolicy>> {
    let own = section
        .operations
        .get(&op.id)
        .and_then(|o| o.cache.as_ref());
    let policy = CacheOverrides::resolve(section.traffic.cache.as_ref(), own)?;
    traffic.cache.as_ref()?;
    let method = http::Method::from_bytes(op.method.as_str().as_bytes()).ok()?;
    // A `read_only` operation is cached wherever a GET would be.
    let read_only = section.operations.get(&op.id).is_some_and(|o| o.read_only);
    if !(policy.applies_to(&method) || read_only && policy.applies_to(&http::Method::GET)) {
        // A connector-wide section quietly skips the methods it does not cache; an
        // operation's own section that cannot apply is almost always a mistake.
        if own.is_some() {
            diagnostics.push(Diagnostic::new(
                Severity::Warning,
                "cache-never-applies",
                &connector.source,
                &op.pointer,
                format!(
                    "[connector.{}.operation.{}.cache] caches {} requests, but the operation is {}; add it to `methods` (POST only for read-only queries)",
                    connector.name,
                    op.id,
                    policy.method_list(),
                    op.method
                ),
            ));
        }
        return None;
    }
    Some(Box::new(policy))
}

/// The cache policies of the views, from their `[view.NAME.cache]` sections (when the
/// gateway has a cache); a warning when one can never apply. Sections for views that do not
/// exist are errors.
fn view_cache_policies(
    config: &Config,
    traffic: &Traffic,
    diagnostics: &mut Diagnostics,
) -> HashMap<String, crate::cache::CachePolicy> {
    let file = config.file.display().to_string();
    let declared: Vec<String> = config
        .views
        .iter()
        .map(|source| crate::view::view_name(&source.file))
        .collect();
    let mut policies = HashMap::new();
    for (name, section) in &config.view_sections {
        if !declared.contains(name) {
            let known = declared.iter().map(String::as_str).collect();
            diagnostics.push(unknown_section(&file, "view", name, known, section.line));
            continue;
        }
        let Some(policy) = CacheOverrides::resolve(None, section.cache.as_ref()) else {
            continue;
        };
        if traffic.cache.is_none() {
            continue;
        }
        // Views answer GET and POST.
        if !policy.applies_to(&http::Method::GET) && !policy.applies_to(&http::Method::POST) {
            let mut diagnostic = Diagnostic::new(
                Severity::Warning,
                "cache-never-applies",
                &file,
                format!("/view/{name}/cache"),
                format!(
                    "[view.{name}.cache] caches {} requests, but views answer GET and POST; add one to `methods`",
                    policy.method_list(),
                ),
            );
            if let Some(line) = section.line {
                diagnostic = diagnostic.at(line, 1);
            }
            diagnostics.push(diagnostic);
            continue;
        }
        policies.insert(name.clone(), policy);
    }
    policies
}

/// Errors for `[trigger.NAME]` sections whose connector is not loaded or whose operation
/// is not one of that connector's triggers.
fn check_triggers(
    config: &Config,
    plans: &HashMap<String, ConnectorPlan>,
    order: &[String],
    diagnostics: &mut Diagnostics,
) {
    let file = config.file.display().to_string();
    for (name, trigger) in &config.triggers {
        let message = match plans.get(&trigger.connector) {
            None => format!(
                "[trigger.{name}] polls connector '{}', which is not loaded (loaded: {})",
                trigger.connector,
                list_or_none(order)
            ),
            Some(plan) => {
                let triggers = plan.operations.get(plan.actions..).unwrap_or_default();
                if triggers.iter().any(|op| op.id == trigger.operation) {
                    continue;
                }
                let ids: Vec<&str> = triggers.iter().map(|op| op.id.as_str()).collect();
                format!(
                    "[trigger.{name}] polls '{}', which is not a trigger operation (`x-ms-trigger`) of connector '{}' (its triggers: {})",
                    trigger.operation,
                    trigger.connector,
                    list_or_none(&ids)
                )
            }
        };
        let mut diagnostic = Diagnostic::new(
            Severity::Error,
            "unknown-trigger",
            &file,
            format!("/trigger/{name}"),
            message,
        );
        if let Some(line) = trigger.line {
            diagnostic = diagnostic.at(line, 1);
        }
        diagnostics.push(diagnostic);
    }
}

/// The error for a `[KIND.NAME]` section of `file` (`kind` is `connector` or `view`) when
/// nothing of that name is loaded; `known` lists what is.
fn unknown_section(
    file: &str,
    kind: &'static str,
    name: &str,
    mut known: Vec<&str>,
    line: Option<u32>,
) -> Diagnostic {
    known.sort_unstable();
    let code = if kind == "view" {
        "unknown-view"
    } else {
        "unknown-connector"
    };
    let diagnostic = Diagnostic::new(
        Severity::Error,
        code,
        file,
        format!("/{kind}/{name}"),
        format!(
            "[{kind}.{name}] configures a {kind} that does not exist (loaded: {})",
            list_or_none(&known)
        ),
    );
    match line {
        Some(line) => diagnostic.at(line, 1),
        None => diagnostic,
    }
}

/// Whether the package has a host policy, which supplies the backend address itself.
fn has_host_policy(connector: &Connector) -> bool {
    connector
        .policies()
        .iter()
        .any(|p| p.template_id == "dynamichosturl" || p.template_id == "dynamicsubdomain")
}
