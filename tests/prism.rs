//! End to end against real definitions: corpus connectors served by Junction in front of
//! Prism mock servers built from the same definitions. Prism rejects any request that does
//! not match its definition, so it judges whether Junction built each upstream request right.
//!
//! Selection rule (stated, not hand-picked): walk the corpus folders in path order; keep the
//! connectors that load, authenticate with API key, basic or nothing, declare no policy
//! templates and have at least one operation that is not a trigger; take every 6th of them.
//! Then, from the connectors that declare policy templates which Prism can judge (headers,
//! query parameters, host — a routing or body policy would send Prism a request its
//! definition does not describe), all compiling and without custom code, take every 6th
//! too; their policies run, with a plain value for each connection parameter they read.
//! (Both start with the first.) Each operation that is not a trigger and not run by the
//! package's custom code (those answer 501; see `policies`) is called.
//!
//! Prism serves each definition as Power Platform reads it: an operation with a body but no
//! `consumes` gets the media type Power Platform sends (see [`as_power_platform_reads_it`]).
//! Every operation is called once through Junction with arguments generated from its
//! schemas ([`crate::example`]). A call passes when neither Junction nor Prism rejected it
//! (Prism's own failures to mock a *response* do not count against the request); the test
//! demands that every call passes. The report goes to stdout and to `target/prism-report.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use junction_model::{Connector, Operation, ParamLocation, SecurityScheme, Visibility};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use crate::example::Examples;
use crate::harness::{self, corpus_root, workspace_root};

/// Take every `STRIDE`th eligible connector.
const STRIDE: usize = 6;
/// How many Prism servers start at once.
const PRISM_PARALLEL: usize = 6;
const API_KEY: &str = "prism-test-key";

/// RFC 3986 unreserved characters stay; everything else in a path segment is encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A Prism process serving one connector's definition; killed when dropped.
struct Prism {
    child: Child,
    port: u16,
}

impl Drop for Prism {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prism_binary() -> PathBuf {
    let bin = workspace_root().join("tests/node/node_modules/.bin/prism");
    assert!(
        bin.exists(),
        "Prism is not installed at {}: run the README's test command (scripts/test), which runs \
         `npm ci --prefix tests/node`",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Starts Prism on `definition` and waits until it listens, or returns why it could not.
/// A start that fails is tried twice more on other ports: the free port may have been taken
/// by a test running alongside before Prism bound it.
fn start_prism(definition: &Path) -> Result<Prism, String> {
    let mut outcome = start_prism_once(definition);
    for _ in 0..2 {
        if outcome.is_ok() {
            break;
        }
        outcome = start_prism_once(definition);
    }
    outcome
}

fn start_prism_once(definition: &Path) -> Result<Prism, String> {
    let port = free_port();
    let mut child = Command::new(prism_binary())
        .args(["mock", "--host", "127.0.0.1", "--port", &port.to_string()])
        .arg(definition)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start Prism: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
    std::thread::spawn(move || {
        let mut log = String::new();
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        for line in lines.by_ref() {
            if line.contains("Prism is listening") {
                let _ = tx.send(Ok(()));
                // Keep draining: Prism dies of EPIPE if its log has nowhere to go.
                lines.for_each(drop);
                return;
            }
            log.push_str(&line);
            log.push('\n');
        }
        let _ = tx.send(Err(log));
    });
    let prism = Prism { child, port };
    match rx.recv_timeout(Duration::from_secs(90)) {
        Ok(Ok(())) => Ok(prism),
        Ok(Err(log)) => Err(format!(
            "Prism cannot serve this definition: {}",
            last_error_line(&log)
        )),
        Err(_) => Err("Prism did not start within 90 s".to_owned()),
    }
}

fn last_error_line(log: &str) -> String {
    log.lines()
        .rev()
        .find(|l| l.contains("rror"))
        .or_else(|| log.lines().last())
        .unwrap_or("(no output)")
        .trim()
        .chars()
        .take(200)
        .collect()
}

/// Writes the definition of the package at `folder` as Power Platform reads it, for Prism:
/// an operation with a body but no `consumes` (neither its own nor the document's) gets
/// the media type Power Platform sends: `application/json` for a body parameter,
/// `multipart/form-data` or `application/x-www-form-urlencoded` for form fields. Prism's
/// Swagger 2.0 conversion would otherwise accept no request body at all. Nothing else
/// changes.
fn as_power_platform_reads_it(folder: &Path, out: &Path) -> Result<PathBuf, String> {
    let file = folder.join("apiDefinition.swagger.json");
    let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut doc: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let declared = |v: &Value| {
        v.get("consumes")
            .and_then(Value::as_array)
            .is_some_and(|c| !c.is_empty())
    };
    if !declared(&doc)
        && let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut)
    {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in item.values_mut().filter_map(Value::as_object_mut) {
                let Some(params) = op.get("parameters").and_then(Value::as_array) else {
                    continue;
                };
                let located = |place: &str| {
                    params
                        .iter()
                        .any(|p| p.get("in").and_then(Value::as_str) == Some(place))
                };
                let media = if located("body") {
                    "application/json"
                } else if params
                    .iter()
                    .any(|p| p.get("type").and_then(Value::as_str) == Some("file"))
                {
                    "multipart/form-data"
                } else if located("formData") {
                    "application/x-www-form-urlencoded"
                } else {
                    continue;
                };
                if !declared(&Value::Object(op.clone())) {
                    op.insert("consumes".into(), serde_json::json!([media]));
                }
            }
        }
    }
    let name = folder.file_name().unwrap_or_default().to_string_lossy();
    let target = out.join(format!("{name}.json"));
    std::fs::write(&target, serde_json::to_vec(&doc).unwrap_or_default())
        .map_err(|e| format!("{}: {e}", target.display()))?;
    Ok(target)
}

/// Whether `connector` is in the population the selection rule draws from.
fn eligible(connector: &Connector) -> bool {
    auth_ok(connector)
        && connector.policies().is_empty()
        && connector.operations.iter().any(|op| !op.is_trigger())
}

fn auth_ok(connector: &Connector) -> bool {
    connector
        .security_schemes
        .values()
        .all(|s| matches!(s, SecurityScheme::ApiKey { .. } | SecurityScheme::Basic))
}

/// Policy templates whose effect Prism can judge against the definition: they add headers
/// or query parameters, or choose the host (which `backend` replaces here), but do not
/// move the request to a path or body the definition does not describe.
const JUDGEABLE_TEMPLATES: [&str; 7] = [
    "setheader",
    "setqueryparameter",
    "dynamichosturl",
    "dynamicsubdomain",
    "setconnectionstatustounauthenticated",
    "updatenextlink",
    "pollingtrigger",
];

/// The second population: connectors whose policies are all judgeable and all compile,
/// with no custom code.
fn eligible_with_policies(connector: &Connector) -> bool {
    auth_ok(connector)
        && !connector.policies().is_empty()
        && connector.policies().iter().enumerate().all(|(i, p)| {
            JUDGEABLE_TEMPLATES.contains(&p.template_id.as_str())
                && junction_policy::compile(p, i).policy.is_some()
        })
        && connector
            .properties
            .as_ref()
            .is_none_or(|p| p.custom_code.is_none())
        && connector.operations.iter().any(|op| !op.is_trigger())
}

/// The `[connector.NAME]` section pointing the connector at its Prism, with test credentials.
fn config_section(connector: &Connector, port: u16) -> String {
    let mut out = format!(
        "[connector.{}]\nbackend = \"http://127.0.0.1:{port}\"\n",
        connector.name
    );
    let mut values = BTreeMap::new();
    for scheme in connector.security_schemes.values() {
        match scheme {
            SecurityScheme::ApiKey { .. } => {
                values.insert("api_key".to_owned(), API_KEY.to_owned());
            }
            SecurityScheme::Basic => {
                values.insert("username".to_owned(), "prism-user".to_owned());
                values.insert("password".to_owned(), "prism-password".to_owned());
            }
            _ => {}
        }
    }
    // Connectors that name their key parameter otherwise (`apiKey`, `token` …) get the same key;
    // other connection parameters (which policies read) get a plain value.
    for param in connector.connection_parameters() {
        if param.is_secret() && !values.contains_key(&param.name) {
            values.insert(param.name.clone(), API_KEY.to_owned());
        } else if !values.contains_key(&param.name) {
            let value = param
                .allowed_values
                .first()
                .cloned()
                .unwrap_or_else(|| "prism-test".to_owned());
            values.insert(param.name.clone(), value);
        }
    }
    // Values the policies read that the package does not declare (`token:…`).
    for name in policy_connection_values(connector) {
        values
            .entry(name)
            .or_insert_with(|| "prism-test".to_owned());
    }
    if !values.is_empty() {
        out.push_str(&format!("[connector.{}.connection]\n", connector.name));
        for (k, v) in values {
            out.push_str(&format!("{} = \"{v}\"\n", toml_key(&k)));
        }
    }
    out
}

/// The connection values the connector's policies read (`@connectionParameters('name')`).
fn policy_connection_values(connector: &Connector) -> Vec<String> {
    use junction_policy::expr::{Expr, Flavor, Source, parse_template};
    let mut names = Vec::new();
    for instance in connector.policies() {
        for value in instance.parameters.values() {
            let Some(text) = value.as_str() else { continue };
            let Ok(template) = parse_template(text, Flavor::TEXT) else {
                continue;
            };
            for expr in template.exprs() {
                if let Expr::Lookup {
                    source: Source::Connection,
                    name,
                    ..
                } = expr
                {
                    names.push(name.clone());
                }
            }
        }
    }
    names
}

fn toml_key(key: &str) -> String {
    if key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// One generated call of one operation.
struct Call {
    method: reqwest::Method,
    url: String,
    headers: Vec<(String, String)>,
    body: CallBody,
}

enum CallBody {
    None,
    Json(Value),
    Raw(String),
    Form(Vec<(String, String)>),
    Multipart(Vec<(String, String, bool)>),
}

/// Builds the call of `op` through the gateway at `base` with generated arguments.
fn build_call(base: &str, connector: &Connector, op: &Operation) -> Call {
    let mut examples = Examples::new(connector);
    let mut path = op.path.clone();
    let mut query = Vec::new();
    let mut headers = Vec::new();
    let mut form = Vec::new();
    for param in &op.parameters {
        // The gateway fills in internal parameters from their defaults.
        if param.visibility == Visibility::Internal && param.default.is_some() {
            continue;
        }
        if !param.required && param.location == ParamLocation::Header {
            continue;
        }
        let value = if param.location == ParamLocation::Header
            && param.name.eq_ignore_ascii_case("content-type")
            && param.schema.get("enum").is_none()
        {
            // A declared Content-Type must name a media type the operation consumes.
            let media = op.consumes.first().map(String::as_str);
            Value::String(media.unwrap_or("application/json").to_owned())
        } else {
            examples.value(&param.schema)
        };
        let text = scalar_text(&value, param.collection_format.separator());
        match param.location {
            ParamLocation::Path => {
                let encoded = utf8_percent_encode(&text, SEGMENT).to_string();
                path = path.replace(&format!("{{{}}}", param.name), &encoded);
            }
            ParamLocation::Query => {
                if let (Value::Array(items), None) = (&value, param.collection_format.separator()) {
                    for item in items {
                        query.push((param.name.clone(), scalar_text(item, None)));
                    }
                } else {
                    query.push((param.name.clone(), text));
                }
            }
            ParamLocation::Header => headers.push((param.name.clone(), text)),
            ParamLocation::Cookie => {
                headers.push(("cookie".to_owned(), format!("{}={text}", param.name)))
            }
            ParamLocation::FormData => form.push((param.name.clone(), text, param.is_file)),
        }
    }
    let mut url = format!("{base}/connectors/{}{}", connector.name, path);
    if !query.is_empty() {
        let qs = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        url.push('?');
        url.push_str(&qs);
    }
    let body = if let Some(body) = &op.body {
        let value = examples.value(&body.schema);
        match body.media_types.first() {
            Some(media) if !is_json(media) => {
                headers.push(("content-type".to_owned(), media.clone()));
                CallBody::Raw(scalar_text(&value, None))
            }
            _ => CallBody::Json(value),
        }
    } else if form.is_empty() {
        CallBody::None
    } else if op.is_multipart() {
        CallBody::Multipart(form)
    } else {
        CallBody::Form(form.into_iter().map(|(k, v, _)| (k, v)).collect())
    };
    Call {
        method: reqwest::Method::from_bytes(op.method.as_str().as_bytes())
            .unwrap_or(reqwest::Method::GET),
        url,
        headers,
        body,
    }
}

fn is_json(media: &str) -> bool {
    let essence = media
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

fn scalar_text(value: &Value, separator: Option<char>) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let sep = separator.unwrap_or(',').to_string();
            items
                .iter()
                .map(|v| scalar_text(v, None))
                .collect::<Vec<_>>()
                .join(&sep)
        }
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// What became of one call.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Passed(u16),
    /// Junction refused the generated arguments or could not reach Prism.
    Junction(u16, String),
    /// Prism said the request does not match the definition.
    Prism(u16, String),
}

async fn perform(client: &reqwest::Client, call: Call) -> Outcome {
    let mut request = client.request(call.method, &call.url);
    for (name, value) in call.headers {
        request = request.header(name, value);
    }
    request = match call.body {
        CallBody::None => request,
        CallBody::Json(value) => request.json(&value),
        CallBody::Raw(text) => request.body(text),
        CallBody::Form(pairs) => request.form(&pairs),
        CallBody::Multipart(fields) => {
            let mut form = reqwest::multipart::Form::new();
            for (name, value, is_file) in fields {
                form = if is_file {
                    let part = reqwest::multipart::Part::bytes(b"example file".to_vec())
                        .file_name("example.txt")
                        .mime_str("text/plain")
                        .unwrap_or_else(|_| reqwest::multipart::Part::bytes(Vec::new()));
                    form.part(name, part)
                } else {
                    form.text(name, value)
                };
            }
            request.multipart(form)
        }
    };
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Junction(0, format!("request failed: {e}")),
    };
    let status = response.status().as_u16();
    let violations = response
        .headers()
        .get("sl-violations")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await.unwrap_or_default();
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let problem_type = parsed.get("type").and_then(Value::as_str).unwrap_or("");
    // Errors Prism raises while mocking the *response* mean it accepted the request.
    const RESPONSE_SIDE: [&str; 2] = ["NO_COMPLEX_OBJECT_TEXT", "NOT_ACCEPTABLE"];
    let title = parsed.get("title").and_then(Value::as_str).unwrap_or("");
    let response_side = RESPONSE_SIDE
        .iter()
        .any(|kind| problem_type.ends_with(kind))
        || title.starts_with("Cannot find serializer");
    if problem_type.starts_with("https://stoplight.io/prism/errors") && !response_side {
        let detail = parsed.get("detail").and_then(Value::as_str).unwrap_or("");
        return Outcome::Prism(status, short(&format!("{problem_type}: {detail}")));
    }
    if let Some(v) = violations.as_deref().and_then(request_errors) {
        return Outcome::Prism(status, short(&v));
    }
    if problem_type.starts_with("https://junction.dev/problems") || status == 502 || status == 504 {
        return Outcome::Junction(status, short(&body));
    }
    Outcome::Passed(status)
}

/// The error-severity violations of the *request* in Prism's `sl-violations` header
/// (it also reports where its own generated response breaks the schema, which is no
/// concern of the gateway's).
fn request_errors(header: &str) -> Option<String> {
    let violations: Vec<Value> = serde_json::from_str(header).ok()?;
    let errors: Vec<&Value> = violations
        .iter()
        .filter(|v| v.get("severity").and_then(Value::as_str) == Some("Error"))
        .filter(|v| v.pointer("/location/0").and_then(Value::as_str) != Some("response"))
        .collect();
    (!errors.is_empty()).then(|| serde_json::to_string(&errors).unwrap_or_default())
}

fn short(s: &str) -> String {
    s.chars().take(300).collect()
}

#[test]
fn corpus_operations_through_junction_satisfy_prism() {
    let prism = prism_binary();
    assert!(prism.exists());
    let mut eligible_connectors = Vec::new();
    let mut with_policies = Vec::new();
    for path in junction_import::discover(&corpus_root()) {
        let loaded = junction_import::load(&path);
        if let Some(connector) = loaded.connector {
            if eligible(&connector) {
                eligible_connectors.push((path, connector));
            } else if eligible_with_policies(&connector) {
                with_policies.push((path, connector));
            }
        }
    }
    let mut selected: Vec<(PathBuf, Connector)> =
        eligible_connectors.into_iter().step_by(STRIDE).collect();
    assert!(
        selected.len() >= 40,
        "the selection rule yields only {} connectors",
        selected.len()
    );
    let policy_connectors = with_policies.len().div_ceil(STRIDE);
    selected.extend(with_policies.into_iter().step_by(STRIDE));

    // Start the Prism servers, a few at a time.
    let prism_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let prism_dir = &prism_dir;
    let mut prisms: Vec<Result<Prism, String>> = Vec::new();
    for chunk in selected.chunks(PRISM_PARALLEL) {
        let started: Vec<Result<Prism, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(path, _)| {
                    scope.spawn(move || {
                        let definition = as_power_platform_reads_it(path, prism_dir.path())?;
                        start_prism(&definition)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("Prism thread panicked".into()))
                })
                .collect()
        });
        prisms.extend(started);
    }

    // One gateway for every selected connector whose Prism runs.
    let config_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let connectors_dir = config_dir.path().join("connectors");
    std::fs::create_dir_all(&connectors_dir).unwrap_or_else(|e| panic!("{e}"));
    let mut toml = String::from("listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n");
    let mut served = Vec::new();
    let mut definition_failures = BTreeMap::new();
    for ((path, connector), prism) in selected.iter().zip(&prisms) {
        match prism {
            Ok(prism) => {
                let folder = path.file_name().unwrap_or_default();
                harness::symlink_dir(path, &connectors_dir.join(folder));
                toml.push_str(&config_section(connector, prism.port));
                served.push(connector);
            }
            Err(why) => {
                definition_failures.insert(connector.name.clone(), why.clone());
            }
        }
    }
    std::fs::write(config_dir.path().join("junction.toml"), &toml)
        .unwrap_or_else(|e| panic!("{e}"));

    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let outcomes: Vec<(String, String, Outcome)> =
        runtime.block_on(async {
            let gateway = harness::serve_dir(config_dir.path()).await;
            let base = gateway.data_url();
            let client = crate::support::client();
            let mut outcomes = Vec::new();
            for connector in &served {
                // Operations run by the package's custom code answer 501 (tested in
                // `policies`); Prism cannot judge them.
                let custom_code = connector
                    .properties
                    .as_ref()
                    .and_then(|p| p.custom_code.as_ref());
                for op in connector.operations.iter().filter(|op| {
                    !op.is_trigger() && !custom_code.is_some_and(|c| c.handles(&op.id))
                }) {
                    let call = build_call(&base, connector, op);
                    let outcome = perform(&client, call).await;
                    outcomes.push((connector.name.clone(), op.id.clone(), outcome));
                }
            }
            gateway.shutdown().await;
            outcomes
        });
    drop(prisms);

    let total = outcomes.len();
    let passed = outcomes
        .iter()
        .filter(|(_, _, o)| matches!(o, Outcome::Passed(_)))
        .count();
    let mut report = String::new();
    let _ = writeln!(
        report,
        "# Prism end-to-end report\n\n{} connectors selected (every {STRIDE}th eligible; {policy_connectors} of them \
         with policy templates), {} served, {} operations called, {passed} passed ({:.1}%).\n",
        selected.len(),
        served.len(),
        total,
        100.0 * passed as f64 / total.max(1) as f64
    );
    let mut failures = Vec::new();
    for (name, why) in &definition_failures {
        failures.push(format!("definition `{name}`: {why}"));
    }
    for (connector, op, outcome) in &outcomes {
        match outcome {
            Outcome::Passed(_) => {}
            Outcome::Junction(status, why) => {
                failures.push(format!("`{connector}/{op}`: junction {status}: {why}"));
            }
            Outcome::Prism(status, why) => {
                failures.push(format!("`{connector}/{op}`: prism {status}: {why}"));
            }
        }
    }
    for failure in &failures {
        let _ = writeln!(report, "- {failure}");
    }
    println!("{report}");
    let _ = std::fs::create_dir_all(workspace_root().join("target"));
    let _ = std::fs::write(workspace_root().join("target/prism-report.md"), &report);
    assert!(
        failures.is_empty(),
        "{} of {total} calls failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
