//! Fuzz targets: each takes arbitrary bytes as one kind of input Junction reads from outside
//! and runs the code that reads it. None may panic, whatever the bytes (docs/reliability.md).
//! `fuzz/run` runs them under AFL++ (`cargo afl`, coverage-guided); the regression test
//! below replays every input kept in `fuzz/regressions/TARGET/` (crashes once found, now
//! fixed) and a few hand-written ones.

use std::path::Path;
use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::Full;
use junction_model::Connector;
use junction_policy::expr::{self, Flavor};
use junction_runtime::{Config, Gateway};
use serde_json::Value;

/// A fuzz target: its name (`fuzz/run TARGET`) and what it runs on one input.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: [Target; 9] = [
    ("swagger", swagger),
    ("openapi-yaml", openapi_yaml),
    ("wsdl", wsdl),
    ("api-properties", api_properties),
    ("policy-expression", policy_expression),
    ("jq", jq),
    ("view", view),
    ("config", config),
    ("request", request),
];

/// The target named `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, run)| *run)
}

/// The fixture connector's definition: path, query, header, JSON and form inputs.
const PETS: &str = include_str!("../fixtures/pets.swagger.json");

/// `data` as text, when it is UTF-8 (what every reader takes).
fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// `data` split at its first NUL byte: two inputs of one target.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// Compiles `connectors` with `config`, as `junction serve` does.
fn compile(config: &Config, connectors: &[Connector]) -> Option<Gateway> {
    Gateway::compile(config, connectors)
        .ok()
        .map(|compiled| compiled.gateway)
}

/// An imported definition, then compiled when it loaded.
fn import(definition_file: &str, data: &[u8], properties: Option<&str>) {
    let Some(definition) = text(data) else {
        return;
    };
    let loaded = junction_import::load_from_str(
        "fuzz",
        definition_file,
        definition,
        properties.map(|p| ("apiProperties.json", p)),
    );
    if let Some(connector) = loaded.connector {
        let _ = compile(&Config::default(), &[connector]);
    }
}

/// A Swagger 2.0 or OpenAPI 3 definition as JSON (`apiDefinition.swagger.json`).
pub fn swagger(data: &[u8]) {
    import("apiDefinition.swagger.json", data, None);
}

/// An OpenAPI definition as YAML.
pub fn openapi_yaml(data: &[u8]) {
    import("openapi.yaml", data, None);
}

/// A WSDL (without imports).
pub fn wsdl(data: &[u8]) {
    import("service.wsdl", data, None);
}

/// `apiProperties.json` (connection parameters, policy templates) beside the fixture.
pub fn api_properties(data: &[u8]) {
    let Some(properties) = text(data) else {
        return;
    };
    let loaded = junction_import::load_from_str(
        "fuzz",
        "apiDefinition.swagger.json",
        PETS,
        Some(("apiProperties.json", properties)),
    );
    if let Some(connector) = loaded.connector {
        let _ = compile(&Config::default(), &[connector]);
    }
}

/// A policy expression (`@{…}` template, and path) and, after a NUL, a JSON answer a
/// `pollingtrigger` template reads.
pub fn policy_expression(data: &[u8]) {
    let (source, body) = split(data);
    let Some(source) = text(source) else {
        return;
    };
    for flavor in [Flavor::TEXT, Flavor::URL_PATH, Flavor::VALUE] {
        let _ = expr::parse_template(source, flavor);
    }
    let _ = expr::parse_path(source);
    let Ok(template) = expr::parse_template(source, Flavor::TEXT) else {
        return;
    };
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let data_path = expr::parse_path(source).or_else(|_| expr::parse_path("@triggerBody().value"));
    if let Ok(data_path) = data_path {
        let config = [("q".to_owned(), template)];
        let _ =
            junction_policy::trigger::polled(&config, Some(source), &data_path, &NoValues, &body);
    }
}

/// A jq program and, after a NUL, the JSON it runs on. Programs come from the
/// configuration, not from clients; those that never end are AFL's hangs, not crashes.
pub fn jq(data: &[u8]) {
    let (program, input) = split(data);
    let Some(program) = text(program) else {
        return;
    };
    let Ok(transform) = junction_policy::jq::Transform::compile(program) else {
        return;
    };
    let input: Value = serde_json::from_slice(input).unwrap_or(Value::Null);
    let _ = transform.run(&input, &Value::Null, &Value::Null);
    let _ = transform.run_json(input.to_string().as_bytes(), &Value::Null, &Value::Null);
}

/// A view file (`views/NAME.toml`) over the fixture connector.
pub fn view(data: &[u8]) {
    if let Some(source) = text(data) {
        let _ = view_gateway(source);
    }
}

/// The gateway serving view `source` over the fixture connector, or why not.
fn view_gateway(source: &str) -> Result<Gateway, String> {
    let config = Config {
        views: vec![junction_runtime::ViewSource::new("views/home.toml", source)],
        ..Config::default()
    };
    Gateway::compile(&config, &[pets().clone()])
        .map(|compiled| compiled.gateway)
        .map_err(|diagnostics| format!("{diagnostics:?}"))
}

/// `junction.toml`, then the gateway it describes over the fixture connector.
pub fn config(data: &[u8]) {
    if let Some(source) = text(data) {
        let _ = config_gateway(source);
    }
}

/// The gateway `source` describes over the fixture connector, or why not.
fn config_gateway(source: &str) -> Result<Gateway, String> {
    let config = Config::parse(source, Path::new("junction.toml"), Path::new("."), &|_| {
        None
    })
    .map_err(|error| error.to_string())?;
    Gateway::compile(&config, &[pets().clone()])
        .map(|compiled| compiled.gateway)
        .map_err(|diagnostics| format!("{diagnostics:?}"))
}

/// A client's request to the fixture connector: the head (`METHOD TARGET` on the first
/// line, then `Name: value` lines) and, after a NUL, the body. Its backend is a closed
/// port, so a request that binds ends at the connection refused.
pub fn request(data: &[u8]) {
    let (head, body) = split(data);
    let Some(head) = text(head) else {
        return;
    };
    let mut lines = head.lines();
    let Some((method, target)) = lines.next().and_then(|line| line.split_once(' ')) else {
        return;
    };
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("http://gateway{target}"));
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            builder = builder.header(name.trim(), value.trim());
        }
    }
    let Ok(request) = builder.body(Full::new(Bytes::copy_from_slice(body))) else {
        return;
    };
    let (runtime, gateway) = served();
    runtime.block_on(async {
        let _ = gateway.handle(request).await;
    });
}

/// The fixture connector, imported once.
fn pets() -> &'static Connector {
    static PETS_CONNECTOR: OnceLock<Connector> = OnceLock::new();
    PETS_CONNECTOR.get_or_init(|| {
        let loaded =
            junction_import::load_from_str("pets", "apiDefinition.swagger.json", PETS, None);
        match loaded.connector {
            Some(connector) => connector,
            None => unreachable_fixture(&loaded.diagnostics),
        }
    })
}

/// The runtime and gateway the request target serves with, built once.
fn served() -> &'static (tokio::runtime::Runtime, Gateway) {
    static SERVED: OnceLock<(tokio::runtime::Runtime, Gateway)> = OnceLock::new();
    SERVED.get_or_init(|| {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => unreachable_fixture(&error),
        };
        // The gateway's background tasks (if any) belong to this runtime.
        let gateway = runtime.block_on(async {
            match Gateway::compile(&Config::default(), &[pets().clone()]) {
                Ok(compiled) => compiled.gateway,
                Err(diagnostics) => unreachable_fixture(&diagnostics),
            }
        });
        (runtime, gateway)
    })
}

/// The fixture is part of this crate and loads; if it ever does not, the fuzzer must stop
/// at once rather than fuzz nothing.
fn unreachable_fixture(why: &dyn std::fmt::Debug) -> ! {
    eprintln!("the fuzz fixture does not load: {why:?}");
    std::process::exit(2)
}

/// No connection values, no parameters.
struct NoValues;

impl junction_policy::Env for NoValues {
    fn connection(&self, _: &str) -> Option<junction_policy::ConnValue<'_>> {
        None
    }
    fn parameter(&self, _: &str) -> Option<&Value> {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// Every kept input of every target runs without a panic.
    #[test]
    fn regressions_and_seeds_do_not_panic() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut ran = 0;
        for (name, run) in TARGETS {
            for folder in ["regressions", "seeds"] {
                let dir = root.join(folder).join(name);
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries {
                    let path = entry.unwrap().path();
                    let data = std::fs::read(&path).unwrap();
                    run(&data);
                    ran += 1;
                }
            }
        }
        assert!(ran >= TARGETS.len(), "only {ran} inputs replayed");
    }

    /// The fuzzer starts from inputs that go deep: the seeds of the view and configuration
    /// targets are accepted whole.
    #[test]
    fn the_seeds_are_valid_inputs() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
        for (folder, check) in [
            ("view", view_gateway as fn(&str) -> Result<Gateway, String>),
            ("config", config_gateway),
        ] {
            for entry in std::fs::read_dir(root.join(folder)).unwrap() {
                let path = entry.unwrap().path();
                let text = std::fs::read_to_string(&path).unwrap();
                if let Err(why) = check(&text) {
                    panic!("{}: {why}", path.display());
                }
            }
        }
    }

    #[test]
    fn the_fixture_binds_a_request() {
        // A valid request reaches the (closed) backend; an invalid one stops at binding.
        let (runtime, gateway) = served();
        let call = |target: &str| {
            let request = http::Request::get(format!("http://gateway{target}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            runtime
                .block_on(gateway.handle(request))
                .err()
                .map(|e| e.kind())
        };
        let refused = call("/connectors/pets/pets/rex?limit=5");
        let invalid = call("/connectors/pets/pets/rex?limit=500");
        assert_ne!(refused, invalid, "{refused:?} {invalid:?}");
        assert_eq!(invalid, Some(junction_runtime::ErrorKind::InvalidRequest));
    }
}
