//! `junction.toml`: the configuration file, read into plain values.
//!
//! Reading happens in three steps, each collecting every problem it finds:
//! 1. the TOML text is parsed into raw structs that reject unknown keys;
//! 2. every string value is expanded from the environment ([`env`]);
//! 3. the expanded strings are turned into typed values (addresses, URLs, durations, sizes).
//!
//! These structs describe what the operator asked for; the running objects built from them
//! live in [`crate::gateway`]. Connection values become [`Secret`]s at step 2 and never
//! appear in an error message.

pub mod access;
pub mod env;
pub mod listeners;
pub mod schema;
pub mod spanned;
pub mod traffic;
pub mod triggers;
pub use junction_model::units;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::spanned::Spanned;
use indexmap::IndexMap;
use serde::Deserialize;

use crate::Secret;
use traffic::{
    CacheOverrides, ConnectorTraffic, RawBreaker, RawCache, RawCachePolicy, RawConnectorLimits,
    RawConnectorTraffic, RawRateLimit, RawRedis, RawRetry, TrafficConfig, Values,
};

/// The file name looked for in the configuration directory.
pub const CONFIG_FILE: &str = "junction.toml";
/// Default request body limit: 3 MiB, close to Power Platform's own gateway limit.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 3 * 1024 * 1024;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on an upstream response body read into memory for policies, transforms or
/// paging: 16 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;
/// Paging defaults, when `[connector.NAME.paging]` leaves a key out.
pub const DEFAULT_MAX_PAGES: u32 = 10;
pub const DEFAULT_MAX_ITEMS: u64 = 1000;
/// Listener defaults (`[limits]`, docs/security.md): the time from accept (or from the end
/// of the previous response) to the end of a request head, the time a request body may
/// take to arrive, how long a connection with nothing in flight stays open, and how many
/// connections each listener holds at once.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Path of the file this was read from (for messages); `junction.toml` when built in code.
    pub file: PathBuf,
    /// Data-plane address. Port 0 asks the OS for a free port.
    pub listen: SocketAddr,
    /// `listen_tls`: the data plane over TLS too, with `[tls]`'s certificate.
    pub listen_tls: Option<SocketAddr>,
    /// `[tls]`: the certificate of `listen_tls` (and of the admin listener, with `admin`).
    pub tls: Option<listeners::TlsConfig>,
    /// `[http2]`: the limits of one HTTP/2 client connection.
    pub http2: listeners::Http2Config,
    /// Admin-plane address.
    pub admin_listen: SocketAddr,
    /// Folder holding the connector packages, already resolved against the config directory.
    pub connectors_dir: PathBuf,
    /// Folder holding the view files (`*.toml`), resolved against the config directory.
    pub views_dir: PathBuf,
    /// The view files read from `views_dir` by [`Config::load`] (compiled with the gateway).
    pub views: Vec<crate::view::ViewSource>,
    pub limits: Limits,
    pub upstream: UpstreamDefaults,
    /// `public_url`: the gateway's address as clients see it, for links it hands out
    /// (rewritten next links). Default: `http://` and the request's `Host`.
    pub public_url: Option<String>,
    /// `[next_links]`: how the next links the gateway hands out are signed.
    pub next_links: NextLinksConfig,
    /// `[redis]`, `[cache]` and `[rate_limit]`.
    pub traffic: TrafficConfig,
    /// `[connector.NAME]` sections, in file order.
    pub connectors: IndexMap<String, ConnectorConfig>,
    /// `[store]`: connections, clients and the audit log in a database. `None`: the
    /// connections of `[connector.NAME.connection]` only, and no client authentication.
    pub store: Option<access::StoreConfig>,
    /// `[clients]`: how gateway clients authenticate (API keys always; JWTs when set).
    pub clients: access::ClientsConfig,
    /// `[admin]`.
    pub admin: access::AdminConfig,
    /// `[view.NAME]` sections, in file order.
    pub view_sections: IndexMap<String, ViewConfig>,
    /// `[log]`.
    pub log: LogConfig,
    /// `[telemetry]`.
    pub telemetry: TelemetryConfig,
    /// `[agents]`: the listener outbound agents dial. `None`: no agents.
    pub agents: Option<AgentsConfig>,
    /// `[trigger.NAME]` sections, in file order.
    pub triggers: IndexMap<String, triggers::TriggerConfig>,
}

/// `[agents]`: where outbound agents connect and how long what they are given lasts
/// (docs/agent.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentsConfig {
    /// `listen`: the address agents dial (TLS 1.3; agents show the certificate they joined with).
    pub listen: SocketAddr,
    /// `cert_days`: how long an agent's certificate is valid (default 30); agents renew it
    /// when a third of that is left.
    pub cert_days: u32,
    /// `token_ttl`: how long an enrollment token can be used (default 15 minutes).
    pub token_ttl: Duration,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9443)),
            cert_days: 30,
            token_ttl: Duration::from_secs(15 * 60),
        }
    }
}

/// `[next_links]`: the key next links are signed with and how long they stay valid
/// (docs/security.md).
#[derive(Debug, Clone)]
pub struct NextLinksConfig {
    /// `key`: the signing secret every replica shares. `None`: one derived from the
    /// store's master key, else a key made at start (links then work on this process only).
    pub key: Option<Secret>,
    /// `ttl`: how long a link is accepted after it was issued.
    pub ttl: Duration,
}

impl Default for NextLinksConfig {
    fn default() -> Self {
        NextLinksConfig {
            key: None,
            ttl: crate::next_link::DEFAULT_TTL,
        }
    }
}

/// `[log]`: the access log (docs/telemetry.md).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogConfig {
    /// `access` and `file`: off (the default), standard output, or a file.
    pub access: crate::telemetry::AccessTarget,
}

/// `[telemetry]`: traces and the `Server-Timing` header (docs/telemetry.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// `otlp_endpoint`: where spans are posted (OTLP over HTTP, protobuf). `None`: no
    /// spans (the trace context is still passed on to backends).
    pub otlp_endpoint: Option<url::Url>,
    /// `service_name`: the spans' `service.name`; default `junction`.
    pub service_name: String,
    /// `server_timing`: add a `Server-Timing` header to data-plane responses.
    pub server_timing: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            server_timing: false,
        }
    }
}

impl TelemetryConfig {
    /// The exporter's settings, when spans are exported.
    pub fn exporter(&self) -> Option<crate::telemetry::otlp::ExporterSettings> {
        Some(crate::telemetry::otlp::ExporterSettings {
            endpoint: self.otlp_endpoint.clone()?,
            service_name: self.service_name.clone(),
        })
    }
}

/// The `service.name` of spans when `[telemetry] service_name` is not set.
pub const DEFAULT_SERVICE_NAME: &str = "junction";

/// `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body accepted, in bytes; larger bodies get 413.
    pub max_body_bytes: u64,
    /// Largest upstream response body read into memory to apply response policies, a
    /// transform or paging; larger ones get 502.
    pub max_response_bytes: u64,
    /// Time from accepting a connection to the end of its first request head (a later
    /// head must be complete within `idle_timeout` of the previous response).
    pub header_timeout: Duration,
    /// Time a request body may take to arrive whole, from the end of its head; past it the
    /// client gets 408 and the connection closes.
    pub body_timeout: Duration,
    /// Time a connection with no request in flight stays open after its last response.
    pub idle_timeout: Duration,
    /// Connections each listener holds at once; past it, new ones wait in the kernel's
    /// backlog until one closes.
    pub max_connections: u32,
}

/// `[upstream]`: defaults for every connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamDefaults {
    /// Time allowed to open a connection to a backend.
    pub connect_timeout: Duration,
    /// Time allowed for the whole upstream exchange, body included.
    pub timeout: Duration,
}

/// `[connector.NAME]`.
#[derive(Debug, Clone, Default)]
pub struct ConnectorConfig {
    /// Replaces scheme, host and base path of the definition.
    pub backend: Option<url::Url>,
    pub timeout: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    /// `[connector.NAME.connection]`: values of the default connection, by parameter name.
    pub connection: IndexMap<String, Secret>,
    /// Hosts host policies may send requests to: `api.example.com` or `*.example.com`.
    pub allowed_hosts: Vec<String>,
    /// `[connector.NAME.transform]`: jq transforms of every operation's bodies.
    pub transform: Transforms,
    /// `[connector.NAME.paging]`: server-side paging of `x-ms-pageable` operations.
    pub paging: Option<Paging>,
    /// `[connector.NAME.operation.OPERATION_ID]` sections.
    pub operations: IndexMap<String, OperationConfig>,
    /// Cache, rate limits, retries, breaker and concurrency limit of the connector.
    pub traffic: ConnectorTraffic,
    /// `soap_port`: of a WSDL connector, serve only this port's operations, under their
    /// own names.
    pub soap_port: Option<String>,
    /// `via = "agent:POOL"`: the pool of outbound agents its requests go through; `backend`
    /// is then the address as the agents' network sees it.
    pub via: Option<String>,
    /// `[connector.NAME.oauth]`: the identity provider's URLs, replacing the package's.
    pub oauth: OAuthOverrides,
    /// Line of the section header in the file, for messages.
    pub line: Option<u32>,
}

/// `[connector.NAME.oauth]`: URLs that replace those of the connector's OAuth settings
/// (and of every connection's), for sovereign clouds, private identity providers and
/// tests. `refresh_url` defaults to `token_url` when only that is set.
#[derive(Debug, Clone, Default)]
pub struct OAuthOverrides {
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    pub refresh_url: Option<String>,
}

/// `[connector.NAME.operation.OPERATION_ID]`: settings of one operation, overriding the
/// connector's.
#[derive(Debug, Clone, Default)]
pub struct OperationConfig {
    pub transform: Transforms,
    pub paging: Option<Paging>,
    /// `[connector.NAME.operation.ID.cache]`: overrides the connector's cache keys.
    pub cache: Option<CacheOverrides>,
    /// `read_only`: the operation changes nothing although its method is POST (a SOAP
    /// query): a cache section caches it, and it is retried like a GET.
    pub read_only: bool,
    /// `idempotent`: sending it twice does no more than once: it is retried like a PUT.
    pub idempotent: bool,
    /// Line of the section header, for messages.
    pub line: Option<u32>,
}

/// `[view.NAME]`: settings of one view.
#[derive(Debug, Clone, Default)]
pub struct ViewConfig {
    /// `[view.NAME.cache]`: caches the view's whole answer.
    pub cache: Option<CacheOverrides>,
    /// Line of the section header, for messages.
    pub line: Option<u32>,
}

/// jq transforms of the request and the response body.
#[derive(Debug, Clone, Default)]
pub struct Transforms {
    pub request: Option<NamedTransform>,
    pub response: Option<NamedTransform>,
}

/// A compiled jq transform and the key it was configured at, for messages.
#[derive(Debug, Clone)]
pub struct NamedTransform {
    pub transform: junction_policy::jq::Transform,
    /// `connector.NAME.transform.response` …
    pub key: String,
}

/// Server-side paging: follow `nextLinkName` until one of these limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// Pages fetched at most, the first included.
    pub max_pages: u32,
    /// No further page is fetched once this many items are collected.
    pub max_items: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            file: PathBuf::from(CONFIG_FILE),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            listen_tls: None,
            tls: None,
            http2: listeners::Http2Config::default(),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            connectors_dir: PathBuf::from("connectors"),
            views_dir: PathBuf::from("views"),
            views: Vec::new(),
            limits: Limits::default(),
            upstream: UpstreamDefaults::default(),
            public_url: None,
            next_links: NextLinksConfig::default(),
            traffic: TrafficConfig::default(),
            connectors: IndexMap::new(),
            store: None,
            clients: access::ClientsConfig::default(),
            admin: access::AdminConfig::default(),
            view_sections: IndexMap::new(),
            log: LogConfig::default(),
            telemetry: TelemetryConfig::default(),
            agents: None,
            triggers: IndexMap::new(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl Default for UpstreamDefaults {
    fn default() -> Self {
        UpstreamDefaults {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// One problem in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub message: String,
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", Rendered(file, problems))]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
}

struct Rendered<'a>(&'a Path, &'a [Problem]);

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.1.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.0.display())?;
            if let Some(line) = problem.line {
                write!(f, ":{line}")?;
                if let Some(column) = problem.column {
                    write!(f, ":{column}")?;
                }
            }
            write!(f, ": {}", problem.message)?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads `DIR/junction.toml`, expanding `${VAR}` from the process environment, and the
    /// view files of `views_dir` (when that folder exists).
    pub fn load(dir: &Path) -> Result<Config, ConfigError> {
        let file = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
            path: file.clone(),
            source,
        })?;
        let mut config = Config::parse(&text, &file, dir, &|name| std::env::var(name).ok())?;
        config.views = crate::view::read_dir(&config.views_dir)
            .map_err(|(path, source)| ConfigError::Read { path, source })?;
        Ok(config)
    }

    /// Parses configuration text. `file` is used in messages, `dir` resolves
    /// `connectors_dir`, and `lookup` reads environment variables.
    pub fn parse(
        text: &str,
        file: &Path,
        dir: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let invalid = |problems| ConfigError::Invalid {
            file: file.to_path_buf(),
            problems,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|error| {
            let (line, column) = match error.span() {
                Some(span) => position(text, span.start),
                None => (None, None),
            };
            invalid(vec![Problem {
                line,
                column,
                message: error.message().trim().to_owned(),
            }])
        })?;
        let mut build = Builder {
            text,
            lookup,
            problems: Vec::new(),
        };
        let config = build.config(raw, file, dir);
        if build.problems.is_empty() {
            Ok(config)
        } else {
            Err(invalid(build.problems))
        }
    }

    /// Whether the admin listener speaks TLS (`[tls] admin = true`).
    pub fn admin_tls(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.admin)
    }

    /// The timeout settings that apply to connector `name`.
    pub fn upstream_for(&self, name: &str) -> UpstreamDefaults {
        let section = self.connectors.get(name);
        UpstreamDefaults {
            connect_timeout: section
                .and_then(|c| c.connect_timeout)
                .unwrap_or(self.upstream.connect_timeout),
            timeout: section
                .and_then(|c| c.timeout)
                .unwrap_or(self.upstream.timeout),
        }
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (Option<u32>, Option<u32>) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (u32::try_from(line).ok(), u32::try_from(column).ok())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    listen_tls: Option<Spanned<String>>,
    admin_listen: Option<Spanned<String>>,
    tls: Option<Spanned<listeners::RawTls>>,
    http2: Option<listeners::RawHttp2>,
    connectors_dir: Option<Spanned<String>>,
    views_dir: Option<Spanned<String>>,
    limits: Option<RawLimits>,
    upstream: Option<RawUpstream>,
    public_url: Option<Spanned<String>>,
    next_links: Option<RawNextLinks>,
    redis: Option<RawRedis>,
    cache: Option<RawCache>,
    rate_limit: Option<RawRateLimit>,
    #[serde(default)]
    connector: IndexMap<String, Spanned<RawConnector>>,
    store: Option<access::RawStore>,
    clients: Option<access::RawClients>,
    admin: Option<access::RawAdmin>,
    #[serde(default)]
    view: IndexMap<String, Spanned<RawViewSection>>,
    log: Option<RawLog>,
    telemetry: Option<RawTelemetry>,
    agents: Option<Spanned<RawAgents>>,
    #[serde(default)]
    trigger: IndexMap<String, Spanned<triggers::RawTrigger>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawAgents {
    listen: Option<Spanned<String>>,
    cert_days: Option<Spanned<u32>>,
    token_ttl: Option<Spanned<String>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    otlp_endpoint: Option<Spanned<String>>,
    service_name: Option<Spanned<String>>,
    server_timing: Option<bool>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawNextLinks {
    key: Option<Spanned<String>>,
    ttl: Option<Spanned<String>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawLog {
    access: Option<bool>,
    file: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawViewSection {
    cache: Option<RawCachePolicy>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_body_bytes: Option<Spanned<Scalar>>,
    max_response_bytes: Option<Spanned<Scalar>>,
    header_timeout: Option<Spanned<String>>,
    body_timeout: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
    max_connections: Option<Spanned<Scalar>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    connect_timeout: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawConnector {
    backend: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    #[serde(default)]
    connection: IndexMap<String, Spanned<Scalar>>,
    allowed_hosts: Option<Vec<Spanned<String>>>,
    transform: Option<RawTransforms>,
    paging: Option<Spanned<RawPaging>>,
    #[serde(default)]
    operation: IndexMap<String, Spanned<RawOperation>>,
    cache: Option<RawCachePolicy>,
    rate_limit: Option<RawConnectorLimits>,
    retry: Option<RawRetry>,
    breaker: Option<RawBreaker>,
    max_concurrency: Option<Spanned<traffic::Flex>>,
    queue_timeout: Option<Spanned<String>>,
    soap_port: Option<Spanned<String>>,
    via: Option<Spanned<String>>,
    oauth: Option<RawOAuth>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawOAuth {
    authorization_url: Option<Spanned<String>>,
    token_url: Option<Spanned<String>>,
    refresh_url: Option<Spanned<String>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawOperation {
    transform: Option<RawTransforms>,
    paging: Option<Spanned<RawPaging>>,
    cache: Option<RawCachePolicy>,
    read_only: Option<bool>,
    idempotent: Option<bool>,
}

/// jq code is not expanded from the environment: `$name` is jq syntax, and `$ENV` would
/// reach the process environment.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawTransforms {
    request: Option<Spanned<String>>,
    response: Option<Spanned<String>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawPaging {
    max_pages: Option<Spanned<Scalar>>,
    max_items: Option<Spanned<Scalar>>,
}

/// A value that may be written as a string (and so use `${VAR}`) or as a number or boolean.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum Scalar {
    String(String),
    Integer(i64),
    Boolean(bool),
}

struct Builder<'a> {
    text: &'a str,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
}

impl Builder<'_> {
    fn config(&mut self, raw: RawConfig, file: &Path, dir: &Path) -> Config {
        let defaults = Config::default();
        let listen = self.address(raw.listen, "listen", defaults.listen);
        let admin_listen = self.address(raw.admin_listen, "admin_listen", defaults.admin_listen);
        let tls = self.tls(raw.tls, raw.listen_tls.as_ref(), dir);
        let listen_tls = raw
            .listen_tls
            .map(|value| self.address(Some(value), "listen_tls", defaults.listen));
        let http2 = self.http2(raw.http2);
        let connectors_dir = match raw
            .connectors_dir
            .and_then(|v| self.string(&v, "connectors_dir"))
        {
            Some(path) => dir.join(path),
            None => dir.join("connectors"),
        };
        let views_dir = match raw.views_dir.and_then(|v| self.string(&v, "views_dir")) {
            Some(path) => dir.join(path),
            None => dir.join("views"),
        };
        let limits = self.limits(raw.limits);
        let public_url = raw.public_url.and_then(|value| {
            let text = self.string(&value, "public_url")?;
            let parsed = url::Url::parse(&text)
                .map_err(|e| format!("`{text}` is not a URL: {e}"))
                .and_then(|url| match url.scheme() {
                    "http" | "https" if url.has_host() && url.query().is_none() => {
                        Ok(url.as_str().trim_end_matches('/').to_owned())
                    }
                    _ => Err(format!(
                        "`{text}` must be an http:// or https:// URL with a host and no query"
                    )),
                });
            self.check(&value, "public_url", parsed)
        });
        let next_links = self.next_links(raw.next_links);
        let mut upstream = UpstreamDefaults::default();
        if let Some(raw_upstream) = raw.upstream {
            if let Some(d) = self.duration(raw_upstream.connect_timeout, "upstream.connect_timeout")
            {
                upstream.connect_timeout = d;
            }
            if let Some(d) = self.duration(raw_upstream.timeout, "upstream.timeout") {
                upstream.timeout = d;
            }
        }
        let traffic = self.traffic(raw.redis, raw.cache, raw.rate_limit);
        let mut connectors = IndexMap::new();
        for (name, section) in raw.connector {
            let (line, _) = position(self.text, section.span().start);
            let section = section.into_inner();
            let key = format!("connector.{name}");
            let backend = section
                .backend
                .and_then(|value| self.http_url(&value, &format!("{key}.backend")));
            let mut oauth = OAuthOverrides::default();
            if let Some(raw_oauth) = section.oauth {
                let mut url = |value: Option<Spanned<String>>, name: &str| {
                    value.and_then(|v| {
                        self.http_url(&v, &format!("{key}.oauth.{name}"))
                            .map(String::from)
                    })
                };
                oauth.authorization_url = url(raw_oauth.authorization_url, "authorization_url");
                oauth.token_url = url(raw_oauth.token_url, "token_url");
                oauth.refresh_url =
                    url(raw_oauth.refresh_url, "refresh_url").or_else(|| oauth.token_url.clone());
            }
            let timeout = self.duration(section.timeout, &format!("{key}.timeout"));
            let connect_timeout =
                self.duration(section.connect_timeout, &format!("{key}.connect_timeout"));
            let mut connection = IndexMap::new();
            for (param, value) in section.connection {
                if let Some(text) = self.scalar(&value, &format!("{key}.connection.{param}")) {
                    connection.insert(param, Secret::new(text));
                }
            }
            let mut allowed_hosts = Vec::new();
            for value in section.allowed_hosts.unwrap_or_default() {
                let Some(text) = self.string(&value, &format!("{key}.allowed_hosts")) else {
                    continue;
                };
                let checked = check_host_pattern(&text);
                if let Some(pattern) = self.check(&value, &format!("{key}.allowed_hosts"), checked)
                {
                    allowed_hosts.push(pattern);
                }
            }
            let via = section.via.as_ref().and_then(|value| {
                let text = self.string(value, &format!("{key}.via"))?;
                let pool = parse_via(&text);
                self.check(value, &format!("{key}.via"), pool)
            });
            if let (Some(value), None) = (&section.via, &raw.agents) {
                self.push(
                    value,
                    &format!("{key}.via"),
                    "agents connect to the gateway's `[agents]` listener: add an `[agents]` section",
                );
            }
            let transform = self.transforms(section.transform, &format!("{key}.transform"));
            let paging = self.paging(section.paging, &format!("{key}.paging"));
            let raw_traffic = RawConnectorTraffic {
                cache: section.cache,
                rate_limit: section.rate_limit,
                retry: section.retry,
                breaker: section.breaker,
                max_concurrency: section.max_concurrency,
                queue_timeout: section.queue_timeout,
            };
            let connector_traffic = Values(self).connector(&raw_traffic, &key);
            let mut operations = IndexMap::new();
            for (id, op) in section.operation {
                let (op_line, _) = position(self.text, op.span().start);
                let op = op.into_inner();
                let op_key = format!("{key}.operation.{id}");
                operations.insert(
                    id,
                    OperationConfig {
                        transform: self.transforms(op.transform, &format!("{op_key}.transform")),
                        paging: self.paging(op.paging, &format!("{op_key}.paging")),
                        cache: op
                            .cache
                            .as_ref()
                            .map(|c| Values(self).cache_policy(c, &format!("{op_key}.cache"))),
                        read_only: op.read_only.unwrap_or(false),
                        idempotent: op.idempotent.unwrap_or(false),
                        line: op_line,
                    },
                );
            }
            connectors.insert(
                name,
                ConnectorConfig {
                    backend,
                    timeout,
                    connect_timeout,
                    connection,
                    allowed_hosts,
                    transform,
                    paging,
                    operations,
                    traffic: connector_traffic,
                    soap_port: section.soap_port.map(Spanned::into_inner),
                    via,
                    oauth,
                    line,
                },
            );
        }
        let agents = self.agents(raw.agents, raw.store.is_some());
        let triggers = self.triggers(raw.trigger, raw.store.is_some());
        let store = self.store(raw.store, dir);
        let clients = self.clients(raw.clients);
        let admin = self.admin(raw.admin);
        let log = self.log(raw.log, dir);
        let telemetry = self.telemetry(raw.telemetry);
        let mut view_sections = IndexMap::new();
        for (name, section) in raw.view {
            let (line, _) = position(self.text, section.span().start);
            let cache = section
                .into_inner()
                .cache
                .map(|c| Values(self).cache_policy(&c, &format!("view.{name}.cache")));
            view_sections.insert(name, ViewConfig { cache, line });
        }
        Config {
            file: file.to_path_buf(),
            listen,
            listen_tls,
            tls,
            http2,
            admin_listen,
            connectors_dir,
            views_dir,
            views: Vec::new(),
            limits,
            upstream,
            public_url,
            next_links,
            traffic,
            connectors,
            store,
            clients,
            admin,
            view_sections,
            log,
            telemetry,
            agents,
            triggers,
        }
    }

    /// `[agents]`: `listen`, `cert_days`, `token_ttl`; it needs `[store]`, which keeps the
    /// enrollment tokens, the agents and the key of their certificate authority.
    fn agents(&mut self, raw: Option<Spanned<RawAgents>>, store: bool) -> Option<AgentsConfig> {
        let raw = raw?;
        if !store {
            self.push(
                &raw,
                "agents",
                "agents need `[store]`: it keeps their enrollment tokens, their certificates' \
                 fingerprints and the key of the certificate authority that signs them",
            );
        }
        let defaults = AgentsConfig::default();
        let raw = raw.into_inner();
        let listen = self.address(raw.listen, "agents.listen", defaults.listen);
        let cert_days = match raw.cert_days {
            Some(days) if *days.get_ref() == 0 || *days.get_ref() > 825 => {
                self.push(&days, "agents.cert_days", "must be between 1 and 825 days");
                defaults.cert_days
            }
            Some(days) => days.into_inner(),
            None => defaults.cert_days,
        };
        let token_ttl = self
            .duration(raw.token_ttl, "agents.token_ttl")
            .unwrap_or(defaults.token_ttl);
        Some(AgentsConfig {
            listen,
            cert_days,
            token_ttl,
        })
    }

    /// `[next_links]`: `key` (at least 16 characters, usually `${VAR}`) and `ttl`.
    fn next_links(&mut self, raw: Option<RawNextLinks>) -> NextLinksConfig {
        let mut config = NextLinksConfig::default();
        let Some(raw) = raw else {
            return config;
        };
        if let Some(value) = raw.key
            && let Some(text) = self.string(&value, "next_links.key")
        {
            let checked = if text.chars().count() >= 16 {
                Ok(Secret::new(text))
            } else {
                Err("the key must be at least 16 characters of secret text".to_owned())
            };
            config.key = self.check(&value, "next_links.key", checked);
        }
        if let Some(ttl) = self.duration(raw.ttl, "next_links.ttl") {
            config.ttl = ttl;
        }
        config
    }

    /// `[limits]`: body sizes, the listeners' timeouts and their connection limit.
    fn limits(&mut self, raw: Option<RawLimits>) -> Limits {
        let mut limits = Limits::default();
        let Some(raw) = raw else {
            return limits;
        };
        if let Some(size) = self.size(raw.max_body_bytes, "limits.max_body_bytes") {
            limits.max_body_bytes = size;
        }
        if let Some(size) = self.size(raw.max_response_bytes, "limits.max_response_bytes") {
            limits.max_response_bytes = size;
        }
        if let Some(d) = self.duration(raw.header_timeout, "limits.header_timeout") {
            limits.header_timeout = d;
        }
        if let Some(d) = self.duration(raw.body_timeout, "limits.body_timeout") {
            limits.body_timeout = d;
        }
        if let Some(d) = self.duration(raw.idle_timeout, "limits.idle_timeout") {
            limits.idle_timeout = d;
        }
        if let Some(n) = self.count(raw.max_connections, "limits.max_connections") {
            limits.max_connections = u32::try_from(n).unwrap_or(u32::MAX);
        }
        limits
    }

    /// `[telemetry]`: `otlp_endpoint` turns span export on; `server_timing` the header.
    fn telemetry(&mut self, raw: Option<RawTelemetry>) -> TelemetryConfig {
        let mut config = TelemetryConfig::default();
        let Some(raw) = raw else {
            return config;
        };
        config.otlp_endpoint = raw.otlp_endpoint.and_then(|value| {
            let text = self.string(&value, "telemetry.otlp_endpoint")?;
            let parsed = url::Url::parse(&text)
                .map_err(|e| format!("`{text}` is not a URL: {e}"))
                .and_then(|url| match url.scheme() {
                    "http" | "https" if url.has_host() => Ok(url),
                    _ => Err(format!(
                        "`{text}` must be an http:// or https:// URL with a host, such as http://127.0.0.1:4318/v1/traces"
                    )),
                });
            self.check(&value, "telemetry.otlp_endpoint", parsed)
        });
        if let Some(value) = raw.service_name
            && let Some(text) = self.string(&value, "telemetry.service_name")
        {
            if text.trim().is_empty() {
                self.push(
                    &value,
                    "telemetry.service_name",
                    "the service name must not be empty".to_owned(),
                );
            } else {
                config.service_name = text;
            }
        }
        config.server_timing = raw.server_timing.unwrap_or(false);
        config
    }

    /// `[log]`: `access = true` writes access log lines to standard output, or to `file`.
    fn log(&mut self, raw: Option<RawLog>, dir: &Path) -> LogConfig {
        let Some(raw) = raw else {
            return LogConfig::default();
        };
        if let Some(format) = &raw.format
            && let Some(text) = self.string(format, "log.format")
            && text != "json"
        {
            self.push(
                format,
                "log.format",
                format!("`{text}` is not a log format; the one there is is \"json\""),
            );
        }
        let file = raw
            .file
            .and_then(|value| self.string(&value, "log.file"))
            .map(|path| dir.join(path));
        let access = match (raw.access.unwrap_or(false), file) {
            (false, _) => crate::telemetry::AccessTarget::Off,
            (true, Some(path)) => crate::telemetry::AccessTarget::File(path),
            (true, None) => crate::telemetry::AccessTarget::Stdout,
        };
        LogConfig { access }
    }

    /// `[redis]`, `[cache]` and `[rate_limit]`. Redis is set up when a backend asks for it,
    /// with the defaults when there is no `[redis]` section.
    fn traffic(
        &mut self,
        redis: Option<RawRedis>,
        cache: Option<RawCache>,
        rate_limit: Option<RawRateLimit>,
    ) -> TrafficConfig {
        let mut values = Values(self);
        let redis_settings = redis.as_ref().map(|r| values.redis(r));
        let cache = cache.as_ref().map(|c| values.cache(c)).unwrap_or_default();
        let rate_limit = rate_limit
            .as_ref()
            .map(|r| values.rate_limit(r))
            .unwrap_or_default();
        let wants_redis = cache.backend == crate::cache::Backend::Redis
            || rate_limit.backend == crate::cache::Backend::Redis;
        TrafficConfig {
            redis: match redis_settings {
                Some(settings) => Some(settings),
                None if wants_redis => Some(crate::redis_link::RedisSettings::default()),
                None => None,
            },
            cache,
            rate_limit,
        }
    }

    /// A whole number above 0.
    fn count(&mut self, value: Option<Spanned<Scalar>>, key: &str) -> Option<u64> {
        let value = value?;
        let text = self.scalar(&value, key)?;
        let parsed = text
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("`{text}` is not a whole number above 0"));
        self.check(&value, key, parsed)
    }

    fn size(&mut self, value: Option<Spanned<Scalar>>, key: &str) -> Option<u64> {
        let value = value?;
        let text = self.scalar(&value, key)?;
        self.check(&value, key, units::parse_size(&text))
    }

    fn transforms(&mut self, raw: Option<RawTransforms>, key: &str) -> Transforms {
        let Some(raw) = raw else {
            return Transforms::default();
        };
        Transforms {
            request: raw
                .request
                .and_then(|code| self.transform(&code, &format!("{key}.request"))),
            response: raw
                .response
                .and_then(|code| self.transform(&code, &format!("{key}.response"))),
        }
    }

    /// Compiles a jq transform; an error points at the character of the program.
    fn transform(&mut self, code: &Spanned<String>, key: &str) -> Option<NamedTransform> {
        match junction_policy::jq::Transform::compile(code.get_ref()) {
            Ok(transform) => Some(NamedTransform {
                transform,
                key: key.to_owned(),
            }),
            Err(error) => {
                // Point at the character when the program is written verbatim in the file.
                let span = code.span();
                let raw = self.text.get(span.clone()).unwrap_or_default();
                let at = match raw.find(code.get_ref().as_str()) {
                    Some(start) if !code.get_ref().is_empty() => {
                        let inner: usize = code
                            .get_ref()
                            .chars()
                            .take(error.offset)
                            .map(char::len_utf8)
                            .sum();
                        span.start + start + inner
                    }
                    _ => span.start,
                };
                let (line, column) = position(self.text, at);
                self.problems.push(Problem {
                    line,
                    column,
                    message: format!("`{key}`: the jq program does not compile: {error}"),
                });
                None
            }
        }
    }

    fn paging(&mut self, raw: Option<Spanned<RawPaging>>, key: &str) -> Option<Paging> {
        let raw = raw?.into_inner();
        let mut paging = Paging {
            max_pages: DEFAULT_MAX_PAGES,
            max_items: DEFAULT_MAX_ITEMS,
        };
        if let Some(value) = raw.max_pages {
            let k = format!("{key}.max_pages");
            let parsed = self.scalar(&value, &k).and_then(|text| {
                let n = text
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("`{text}` is not a number of pages (1 or more)"));
                self.check(&value, &k, n)
            });
            paging.max_pages = parsed.unwrap_or(paging.max_pages);
        }
        if let Some(value) = raw.max_items {
            let k = format!("{key}.max_items");
            let parsed = self.scalar(&value, &k).and_then(|text| {
                let n = text
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("`{text}` is not a number of items (1 or more)"));
                self.check(&value, &k, n)
            });
            paging.max_items = parsed.unwrap_or(paging.max_items);
        }
        Some(paging)
    }

    fn push<T>(&mut self, value: &Spanned<T>, key: &str, message: impl fmt::Display) {
        self.problem_at(value.span().start, key, message);
    }

    /// A problem at byte `at` of the file.
    fn problem_at(&mut self, at: usize, key: &str, message: impl fmt::Display) {
        let (line, column) = position(self.text, at);
        self.problems.push(Problem {
            line,
            column,
            message: format!("`{key}`: {message}"),
        });
    }

    /// An http:// or https:// URL with a host.
    fn http_url(&mut self, value: &Spanned<String>, key: &str) -> Option<url::Url> {
        let text = self.string(value, key)?;
        let parsed = url::Url::parse(&text)
            .map_err(|e| format!("`{text}` is not a URL: {e}"))
            .and_then(|url| match url.scheme() {
                "http" | "https" if url.has_host() => Ok(url),
                _ => Err(format!(
                    "`{text}` must be an http:// or https:// URL with a host"
                )),
            });
        self.check(value, key, parsed)
    }

    fn check<T, V>(
        &mut self,
        value: &Spanned<T>,
        key: &str,
        result: Result<V, String>,
    ) -> Option<V> {
        match result {
            Ok(v) => Some(v),
            Err(message) => {
                self.push(value, key, message);
                None
            }
        }
    }

    /// The expanded text of a string value.
    fn string(&mut self, value: &Spanned<String>, key: &str) -> Option<String> {
        let expanded = env::expand(value.get_ref(), self.lookup).map_err(|e| e.to_string());
        self.check(value, key, expanded)
    }

    /// The expanded text of a scalar value.
    fn scalar(&mut self, value: &Spanned<Scalar>, key: &str) -> Option<String> {
        let expanded = match value.get_ref() {
            Scalar::String(text) => env::expand(text, self.lookup).map_err(|e| e.to_string()),
            Scalar::Integer(n) => Ok(n.to_string()),
            Scalar::Boolean(b) => Ok(b.to_string()),
        };
        self.check(value, key, expanded)
    }

    fn duration(&mut self, value: Option<Spanned<String>>, key: &str) -> Option<Duration> {
        let value = value?;
        let text = self.string(&value, key)?;
        let parsed = units::parse_duration(&text).and_then(|d| {
            if d.is_zero() {
                Err("a timeout of zero would fail every request".to_owned())
            } else {
                Ok(d)
            }
        });
        self.check(&value, key, parsed)
    }

    fn address(
        &mut self,
        value: Option<Spanned<String>>,
        key: &str,
        default: SocketAddr,
    ) -> SocketAddr {
        let Some(value) = value else {
            return default;
        };
        let Some(text) = self.string(&value, key) else {
            return default;
        };
        let parsed = parse_address(&text);
        self.check(&value, key, parsed).unwrap_or(default)
    }
}

impl traffic::Reader for Builder<'_> {
    fn expand(&mut self, value: &Spanned<String>, key: &str) -> Option<String> {
        self.string(value, key)
    }

    fn problem(&mut self, at: usize, key: &str, message: &dyn fmt::Display) {
        self.problem_at(at, key, message);
    }
}

/// Checks an `allowed_hosts` entry: a host name, or `*.` and a domain; lower-cased.
fn check_host_pattern(text: &str) -> Result<String, String> {
    let pattern = text.trim().to_ascii_lowercase();
    let (name, port) = match pattern.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (pattern.as_str(), None),
    };
    let host = name.strip_prefix("*.").unwrap_or(name);
    let valid = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && port.is_none_or(|p| p == "*" || p.parse::<u16>().is_ok_and(|p| p > 0));
    if valid {
        Ok(pattern)
    } else {
        Err(format!(
            "`{text}` is not a host such as \"api.example.com\", a pattern such as \"*.example.com\", or either with a port (`:8443`, or `:*` for any)"
        ))
    }
}

/// Parses `HOST:PORT` where HOST is an IP address or `localhost`, or a bare `:PORT`
/// (meaning all interfaces).
/// The pool of `via = "agent:POOL"`.
pub fn parse_via(text: &str) -> Result<String, String> {
    let Some(pool) = text.strip_prefix("agent:") else {
        return Err(format!(
            "`{text}` is not a route; write \"agent:POOL\" to go through the agents of POOL"
        ));
    };
    check_pool_name(pool).map(|()| pool.to_owned())
}

/// A pool name: 1 to 64 letters, digits, `-`, `_` and `.`.
pub fn check_pool_name(pool: &str) -> Result<(), String> {
    if pool.is_empty()
        || pool.len() > 64
        || !pool
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "`{pool}` is not a pool name (1 to 64 letters, digits, `-`, `_` and `.`)"
        ));
    }
    Ok(())
}

pub fn parse_address(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some(port) = text.strip_prefix("localhost:")
        && let Ok(port) = port.parse::<u16>()
    {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Some(port) = text.strip_prefix(':')
        && let Ok(port) = port.parse::<u16>()
    {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    Err(format!(
        "`{text}` is not an address; write IP:PORT such as \"127.0.0.1:8080\" or \"[::]:8080\""
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The example at the top of docs/config.md is a configuration Junction accepts, and
    /// its keys land where the comments say.
    #[test]
    fn the_reference_example_parses() {
        let doc = include_str!("../../../../docs/config.md");
        let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let text = &doc[start..start + doc[start..].find("```").expect("its end")];
        let config = Config::parse(text, Path::new("junction.toml"), Path::new("."), &|_| {
            Some("a value from the environment".to_owned())
        })
        .unwrap_or_else(|e| panic!("docs/config.md's example: {e}"));
        assert!(config.connectors.contains_key("petstore"));
        assert!(config.connectors.contains_key("planner"));
        assert_eq!(
            config.log.access,
            crate::telemetry::AccessTarget::File(Path::new(".").join("access.log"))
        );
        assert!(
            !config.connectors["petstore"]
                .connection
                .contains_key("public_url")
        );
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let env = |name: &str| match name {
            "TOKEN" => Some("s3cr3t".to_owned()),
            "PORT" => Some("8181".to_owned()),
            _ => None,
        };
        Config::parse(
            text,
            Path::new("conf/junction.toml"),
            Path::new("conf"),
            &env,
        )
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.admin_listen, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(config.connectors_dir, Path::new("conf/connectors"));
        assert_eq!(config.limits.max_body_bytes, 3 * 1024 * 1024);
        assert_eq!(config.upstream.connect_timeout, Duration::from_secs(5));
        assert_eq!(config.upstream.timeout, Duration::from_secs(30));
        assert!(config.connectors.is_empty());
    }

    #[test]
    fn reads_every_key_and_expands_the_environment() {
        let config = parse(
            r#"
listen = "127.0.0.1:${PORT}"
admin_listen = "localhost:0"
connectors_dir = "packages"

[limits]
max_body_bytes = "1MiB"

[upstream]
connect_timeout = "250ms"
timeout = "1m"

[connector.petstore]
backend = "http://127.0.0.1:${BACKEND_PORT:-9000}/api"
timeout = "2s"

[connector.petstore.connection]
api_key = "${TOKEN}"
region = 3
"#,
        )
        .unwrap();
        assert_eq!(config.listen.port(), 8181);
        assert_eq!(config.admin_listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.connectors_dir, Path::new("conf/packages"));
        assert_eq!(config.limits.max_body_bytes, 1 << 20);
        assert_eq!(config.upstream.connect_timeout, Duration::from_millis(250));
        let petstore = &config.connectors["petstore"];
        assert_eq!(
            petstore.backend.as_ref().unwrap().as_str(),
            "http://127.0.0.1:9000/api"
        );
        assert_eq!(petstore.connection["api_key"].expose(), "s3cr3t");
        assert_eq!(petstore.connection["region"].expose(), "3");
        assert_eq!(petstore.line, Some(13));
        let timeouts = config.upstream_for("petstore");
        assert_eq!(timeouts.timeout, Duration::from_secs(2));
        assert_eq!(timeouts.connect_timeout, Duration::from_millis(250));
        // Secrets stay out of Debug output.
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }

    #[test]
    fn unknown_keys_are_errors_with_a_line() {
        let error = parse("listen = \"127.0.0.1:1\"\nlisten_addr = \"x\"\n").unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("conf/junction.toml:2:1: unknown field `listen_addr`"),
            "{message}"
        );
        let error = parse("[connector.a]\nbackend = \"http://x\"\nbakend = 1\n").unwrap_err();
        assert!(
            error.to_string().contains("unknown field `bakend`"),
            "{error}"
        );
        let error = parse("[limits]\nmax_body = 3\n").unwrap_err();
        assert!(
            error.to_string().contains("unknown field `max_body`"),
            "{error}"
        );
    }

    #[test]
    fn collects_every_value_problem_without_echoing_secrets() {
        let error = parse(
            r#"
listen = "nowhere"
[upstream]
timeout = "5"
[connector.a]
backend = "ftp://example.com"
[connector.a.connection]
api_key = "${MISSING_TOKEN}"
"#,
        )
        .unwrap_err();
        let ConfigError::Invalid { problems, .. } = &error else {
            panic!("{error}")
        };
        assert_eq!(problems.len(), 4, "{error}");
        let message = error.to_string();
        assert!(
            message.contains(":2:10: `listen`: `nowhere` is not an address"),
            "{message}"
        );
        assert!(
            message.contains("`upstream.timeout`: `5` has no unit"),
            "{message}"
        );
        assert!(
            message.contains("`connector.a.backend`: `ftp://example.com` must be an http"),
            "{message}"
        );
        assert!(
            message.contains(
                "`connector.a.connection.api_key`: environment variable `MISSING_TOKEN` is not set"
            ),
            "{message}"
        );
    }

    #[test]
    fn reads_policy_keys() {
        let config = parse(
            r#"
public_url = "https://gw.example.com/"
[limits]
max_response_bytes = "1MiB"
[connector.a]
allowed_hosts = ["API.example.com", "*.example.net"]
[connector.a.transform]
request = '. + {x: 1}'
response = '.value'
[connector.a.paging]
max_pages = 3
[connector.a.operation.ListThings.transform]
response = '.items'
[connector.a.operation.ListThings.paging]
max_items = "50"
"#,
        )
        .unwrap();
        assert_eq!(config.public_url.as_deref(), Some("https://gw.example.com"));
        assert_eq!(config.limits.max_response_bytes, 1 << 20);
        let a = &config.connectors["a"];
        assert_eq!(a.allowed_hosts, ["api.example.com", "*.example.net"]);
        assert_eq!(
            a.transform.response.as_ref().map(|t| t.key.as_str()),
            Some("connector.a.transform.response")
        );
        assert_eq!(
            a.paging,
            Some(Paging {
                max_pages: 3,
                max_items: DEFAULT_MAX_ITEMS
            })
        );
        let op = &a.operations["ListThings"];
        assert_eq!(
            op.transform.response.as_ref().unwrap().transform.code(),
            ".items"
        );
        assert!(op.transform.request.is_none());
        assert_eq!(
            op.paging,
            Some(Paging {
                max_pages: DEFAULT_MAX_PAGES,
                max_items: 50
            })
        );
        assert_eq!(op.line, Some(12));
    }

    #[test]
    fn policy_key_problems_are_reported_with_positions() {
        let error = parse(
            r#"[connector.a]
allowed_hosts = ["evil.com/x"]
[connector.a.transform]
response = '.a | frob'
[connector.a.paging]
max_pages = 0
"#,
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(":2:18: `connector.a.allowed_hosts`: `evil.com/x` is not a host"),
            "{message}"
        );
        assert!(
            message.contains(":4:18: `connector.a.transform.response`: the jq program does not compile: at character 6: undefined filter `frob`"),
            "{message}"
        );
        assert!(
            message.contains(":6:13: `connector.a.paging.max_pages`: `0` is not a number of pages"),
            "{message}"
        );
        let error = parse(
            "[connector.a.paging]
max_page = 3
",
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("unknown field `max_page`"),
            "{error}"
        );
        let error = parse("public_url = \"ftp://x\"\n").unwrap_err();
        assert!(error.to_string().contains("`public_url`"), "{error}");
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_address(":80").unwrap(), "0.0.0.0:80".parse().unwrap());
        assert_eq!(
            parse_address("[::1]:80").unwrap(),
            "[::1]:80".parse().unwrap()
        );
        assert!(parse_address("example.com:80").is_err());
    }
}
