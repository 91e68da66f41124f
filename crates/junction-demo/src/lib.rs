//! The demo: sample backends, the connectors that front them, and a gateway over both.
//!
//! `junction demo` and the tests start the same thing with [`start`]: four backends on
//! ephemeral loopback ports, a gateway whose connectors point at them with the
//! credentials each backend expects, a view over three of them (`views/home.toml`) and
//! one over a REST and a SOAP service (`views/pay.toml`).

pub mod backends;

use std::net::SocketAddr;

use indexmap::IndexMap;
use junction_model::{Connector, Diagnostics};
use junction_runtime::config::traffic::CacheOverrides;
use junction_runtime::{Config, ConnectorConfig, Secret, ViewSource};
use junction_server::{RunningServer, Server, StartError};

pub use backends::Backends;

/// One sample connector package, embedded in the binary.
#[derive(Debug, Clone, Copy)]
pub struct SampleConnector {
    /// The folder name, which gives the connector its name.
    pub folder: &'static str,
    pub definition_file: &'static str,
    pub definition: &'static str,
    pub properties: Option<&'static str>,
}

/// The sample connectors: a Power Platform package with an API key (directory), one with
/// basic authentication (helpdesk), a plain OpenAPI 3.0 YAML file (news) and a SOAP
/// service's WSDL (payroll).
pub const CONNECTORS: [SampleConnector; 4] = [
    SampleConnector {
        folder: "directory",
        definition_file: "apiDefinition.swagger.json",
        definition: include_str!("../connectors/directory/apiDefinition.swagger.json"),
        properties: Some(include_str!("../connectors/directory/apiProperties.json")),
    },
    SampleConnector {
        folder: "helpdesk",
        definition_file: "apiDefinition.swagger.json",
        definition: include_str!("../connectors/helpdesk/apiDefinition.swagger.json"),
        properties: Some(include_str!("../connectors/helpdesk/apiProperties.json")),
    },
    SampleConnector {
        folder: "news",
        definition_file: "openapi.yaml",
        definition: include_str!("../connectors/news/openapi.yaml"),
        properties: None,
    },
    SampleConnector {
        folder: "payroll",
        definition_file: "Payroll.wsdl",
        definition: include_str!("../connectors/payroll/Payroll.wsdl"),
        properties: None,
    },
];

/// The sample views: `(file name, text)`.
pub const VIEWS: [(&str, &str); 2] = [
    ("home.toml", include_str!("../views/home.toml")),
    ("pay.toml", include_str!("../views/pay.toml")),
];

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the sample backends: {0}")]
    Backends(#[from] std::io::Error),
    #[error("sample connector '{0}' does not load: {1:?}")]
    Connector(&'static str, Diagnostics),
    #[error(transparent)]
    Start(#[from] StartError),
}

/// The running demo: backends and the gateway in front of them.
#[derive(Debug)]
pub struct Demo {
    pub backends: Backends,
    pub server: RunningServer,
}

/// Loads the embedded sample connectors.
pub fn connectors() -> Result<Vec<Connector>, DemoError> {
    CONNECTORS
        .iter()
        .map(|sample| {
            let loaded = junction_import::load_from_str(
                sample.folder,
                sample.definition_file,
                sample.definition,
                sample.properties.map(|p| ("apiProperties.json", p)),
            );
            loaded
                .connector
                .ok_or(DemoError::Connector(sample.folder, loaded.diagnostics))
        })
        .collect()
}

/// The gateway configuration that points each sample connector at its backend.
pub fn config(backends: &Backends, listen: SocketAddr, admin_listen: SocketAddr) -> Config {
    let section = |addr: SocketAddr, path: &str, connection: &[(&str, &str)]| ConnectorConfig {
        backend: url::Url::parse(&format!("http://{addr}{path}")).ok(),
        connection: connection
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Secret::new(*v)))
            .collect::<IndexMap<_, _>>(),
        ..ConnectorConfig::default()
    };
    let mut config = Config {
        listen,
        admin_listen,
        ..Config::default()
    };
    config.connectors.insert(
        "directory".into(),
        section(
            backends.directory,
            "/api/v1",
            &[("api_key", backends::DIRECTORY_API_KEY)],
        ),
    );
    config.connectors.insert(
        "helpdesk".into(),
        section(
            backends.helpdesk,
            "/",
            &[
                ("username", backends::HELPDESK_USER),
                ("password", backends::HELPDESK_PASSWORD),
            ],
        ),
    );
    config
        .connectors
        .insert("news".into(), section(backends.news, "/v2", &[]));
    // A bare address: the WSDL's port path (`/payroll/Payroll.svc`) is kept.
    config
        .connectors
        .insert("payroll".into(), section(backends.payroll, "", &[]));
    config.views = VIEWS
        .iter()
        .map(|(file, text)| ViewSource::new(format!("views/{file}"), *text))
        .collect();
    // The directory changes rarely: its answers are cached for 30 s (see `X-Cache`).
    if let Some(directory) = config.connectors.get_mut("directory") {
        directory.traffic.cache = Some(CacheOverrides {
            ttl: Some(std::time::Duration::from_secs(30)),
            ..CacheOverrides::default()
        });
    }
    config
}

/// Starts the sample backends and a gateway in front of them on `listen` / `admin_listen`.
pub async fn start(listen: SocketAddr, admin_listen: SocketAddr) -> Result<Demo, DemoError> {
    let connectors = connectors()?;
    let backends = backends::start().await?;
    let config = config(&backends, listen, admin_listen);
    let server = Server::start(&config, &connectors).await?;
    Ok(Demo { backends, server })
}

/// URLs worth trying against a demo whose data plane is at `base` (`http://HOST:PORT`).
pub fn urls_to_try(base: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "employees of one department (API key added by the gateway)",
            format!("{base}/connectors/directory/employees?department=Engineering"),
        ),
        (
            "one profile (cached for 30 s: a second call says X-Cache: HIT)",
            format!("{base}/connectors/directory/employees/e1"),
        ),
        (
            "open and pending cases (basic auth, internal api-version filled in)",
            format!("{base}/connectors/helpdesk/cases?requester=e1&status=open,pending"),
        ),
        (
            "news from an OpenAPI 3.0 YAML definition",
            format!("{base}/connectors/news/articles?limit=2"),
        ),
        (
            "a view: profile, news and open cases in one call, the three backends called at once",
            format!("{base}/views/home?employee=e1"),
        ),
        (
            "a view over a REST service and a SOAP one: a profile and its payslips",
            format!("{base}/views/pay?employee=e1"),
        ),
        (
            "a bad request: 400 problem+json naming every violation",
            format!("{base}/connectors/news/articles?limit=500&category=gossip"),
        ),
    ]
}
