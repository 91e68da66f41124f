//! `junction export` end to end: the demo's connectors and views exported, the package
//! loaded back by the importer (what `junction validate` runs), `apiProperties.json` checked
//! against paconn's schema, the OpenAPI 3.1 document checked by `openapi-spec-validator`
//! (PyPI; `scripts/test` installs it), and a second Junction that imports the export and
//! fronts the first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use junction_export::{Options, Surface};
use junction_runtime::{Gateway, ViewSource};
use junction_server::{RunningServer, Server};
use serde_json::{Value, json};

use crate::harness::{serve_dir, workspace_root};
use crate::support::*;

/// A view that takes an object, so it is exported as a POST with a JSON body.
const OPEN_CASE: &str = r#"
summary = "Open a helpdesk case"
shape = '{case: .steps.create.id, status: .steps.create.status}'
[input.case]
type = "object"
required = true
properties = { title = { type = "string" }, requester = { type = "string" }, priority = { type = "string" } }
[step.create]
operation = "helpdesk.CreateCase"
args = { body = "$inputs.case" }
"#;

/// The demo's backends, a first gateway in front of them (with the demo's views and one
/// more), and its export in `out`, asking for a client key when `client_keys`.
async fn first_gateway_and_export(
    out: &Path,
    client_keys: bool,
) -> (junction_demo::Backends, RunningServer, Vec<PathBuf>) {
    first_gateway_with_store_and_export(out, client_keys, None).await
}

/// [`first_gateway_and_export`], the first gateway with a store in `store` (it then checks
/// client keys).
async fn first_gateway_with_store_and_export(
    out: &Path,
    client_keys: bool,
    store: Option<&Path>,
) -> (junction_demo::Backends, RunningServer, Vec<PathBuf>) {
    let backends = junction_demo::backends::start().await.unwrap();
    let free = "127.0.0.1:0".parse().unwrap();
    let mut config = junction_demo::config(&backends, free, free);
    config
        .views
        .push(ViewSource::new("views/open-case.toml", OPEN_CASE));
    if let Some(dir) = store {
        let key_file = master_key_file(dir);
        config.store = crate::support::config(&format!(
            "[store]\npath = \"{}\"\nkey_file = \"{}\"\n",
            dir.join("junction.db").display(),
            key_file.display()
        ))
        .store;
    }
    let connectors = junction_demo::connectors().unwrap();
    let server = Server::start(&config, &connectors).await.unwrap();
    let compiled = Gateway::compile(&config, &connectors).unwrap();
    let surface = Surface::new(&connectors, &compiled.gateway);
    let options = Options {
        base_url: url::Url::parse(&server.data_url()).unwrap(),
        title: "Demo gateway".into(),
        name: "junction".into(),
        client_keys,
    };
    let written = junction_export::write(&surface, &options, out).unwrap();
    (backends, server, written)
}

/// JSON with `//` comments (paconn's schema has some) made plain JSON.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == '/' && chars.peek() == Some(&'/') {
            for skipped in chars.by_ref() {
                if skipped == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// paconn's schema writes `$ref`s with `<` and `>`, which are not URI references: encode
/// them (a fragment is percent-decoded before it is resolved, so they point where they did).
fn encode_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    Value::String(text) if key == "$ref" => {
                        *text = text.replace('<', "%3C").replace('>', "%3E");
                    }
                    other => encode_refs(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(encode_refs),
        _ => {}
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `openapi-spec-validator`: `$OPENAPI_SPEC_VALIDATOR`, else the one on PATH.
pub(crate) fn spec_validator() -> String {
    let candidate =
        std::env::var("OPENAPI_SPEC_VALIDATOR").unwrap_or_else(|_| "openapi-spec-validator".into());
    match Command::new(&candidate).arg("--help").output() {
        Ok(output) if output.status.success() => candidate,
        _ => panic!(
            "openapi-spec-validator (PyPI) is needed to check the OpenAPI export: run scripts/test, \
             which installs it, or set OPENAPI_SPEC_VALIDATOR (tried `{candidate}`)"
        ),
    }
}

#[tokio::test]
async fn export_the_package_loads_back_and_api_properties_fit_paconns_schema() {
    let out = tempfile::tempdir().unwrap();
    let (_backends, _server, written) = first_gateway_and_export(out.path(), true).await;
    assert_eq!(
        written,
        [
            out.path().join("junction.openapi.json"),
            out.path().join("junction/apiDefinition.swagger.json"),
            out.path().join("junction/apiProperties.json"),
        ]
    );

    // What `junction validate OUT` does: both forms load, without a warning.
    let found = junction_import::discover(out.path());
    assert_eq!(found.len(), 2, "{found:?}");
    for path in found {
        let loaded = junction_import::load(&path);
        let lines: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
        assert!(
            lines.is_empty(),
            "{}:\n{}",
            path.display(),
            lines.join("\n")
        );
        let connector = loaded.connector.unwrap();
        let ids: Vec<&str> = connector.operations.iter().map(|o| o.id.as_str()).collect();
        assert!(ids.contains(&"directory_GetEmployee"), "{ids:?}");
        assert!(ids.contains(&"View_home"), "{ids:?}");
        assert!(ids.contains(&"View_open_case"), "{ids:?}");
    }

    let swagger = read_json(&out.path().join("junction/apiDefinition.swagger.json"));
    let home = &swagger["paths"]["/views/home"]["get"];
    assert_eq!(home["parameters"][0]["x-ms-summary"], "Employee ID");
    assert_eq!(home["parameters"][1]["x-ms-visibility"], "advanced");
    assert_eq!(
        swagger["paths"]["/views/open-case"]["post"]["parameters"][0]["in"],
        "body"
    );
    assert_eq!(
        swagger["securityDefinitions"]["api_key"],
        json!({"type": "apiKey", "in": "header", "name": "X-Api-Key"})
    );
    // Every operation declares the gateway's own answers as problems.
    let get = &swagger["paths"]["/connectors/directory/employees/{employeeId}"]["get"];
    for status in ["400", "401", "403", "429", "502", "503", "504", "default"] {
        assert_eq!(
            get["responses"][status]["schema"]["$ref"], "#/definitions/Problem",
            "{status}: {get}"
        );
    }
    assert!(get["responses"]["413"].is_null(), "no body, no 413: {get}");
    // The backends' own credentials and gateway-filled parameters are not the client's business.
    let cases = &swagger["paths"]["/connectors/helpdesk/cases"]["get"]["parameters"];
    assert!(!cases.to_string().contains("api-version"), "{cases}");

    let schema_path = workspace_root().join("../shared/reference/paconn-apiProperties.schema.json");
    let mut schema: Value = serde_json::from_str(&strip_comments(
        &std::fs::read_to_string(&schema_path).unwrap(),
    ))
    .unwrap();
    encode_refs(&mut schema);
    let validator = jsonschema::validator_for(&schema).unwrap();
    let properties = read_json(&out.path().join("junction/apiProperties.json"));
    let errors: Vec<String> = validator
        .iter_errors(&properties)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(
        properties["properties"]["connectionParameters"]["api_key"]["type"],
        "securestring"
    );
    // The schema really checks: a misspelt key is refused.
    let mut broken = properties.clone();
    broken["properties"]["connectionParameter"] = json!({});
    assert!(!validator.is_valid(&broken));
}

/// Both documents `junction export` wrote in `out` pass `validator` (openapi-spec-validator).
pub(crate) fn assert_exports_pass_the_validator(validator: &str, out: &Path) {
    for file in [
        "junction.openapi.json",
        "junction/apiDefinition.swagger.json",
    ] {
        let output = Command::new(validator)
            .arg(out.join(file))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "openapi-spec-validator refused {file}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[tokio::test]
async fn export_the_openapi_document_passes_openapi_spec_validator() {
    let validator = spec_validator();
    let out = tempfile::tempdir().unwrap();
    let (_backends, _server, _) = first_gateway_and_export(out.path(), true).await;
    let document = read_json(&out.path().join("junction.openapi.json"));
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["paths"]["/views/home"]["get"].is_object());
    let get = &document["paths"]["/connectors/directory/employees/{employeeId}"]["get"];
    assert_eq!(
        get["responses"]["400"]["content"]["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/Problem",
        "{get}"
    );
    assert!(get["responses"]["default"]["content"]["application/problem+json"].is_object());
    assert_eq!(
        document["components"]["securitySchemes"]["api_key"]["name"],
        "X-Api-Key"
    );
    assert_exports_pass_the_validator(&validator, out.path());
}

#[tokio::test]
async fn export_round_trip_a_second_junction_fronts_the_first() {
    let out = tempfile::tempdir().unwrap();
    // The first gateway has no store: it asks for no client key, and neither does its export.
    let (_backends, first, _) = first_gateway_and_export(out.path(), false).await;
    let swagger = read_json(&out.path().join("junction/apiDefinition.swagger.json"));
    assert!(swagger.get("securityDefinitions").is_none(), "{swagger}");
    let properties = read_json(&out.path().join("junction/apiProperties.json"));
    assert_eq!(properties["properties"]["connectionParameters"], json!({}));
    let config_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        config_dir.path().join("junction.toml"),
        format!(
            r#"listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
connectors_dir = "{}"
"#,
            out.path().display()
        ),
    )
    .unwrap();
    let second = serve_dir(config_dir.path()).await;
    assert!(second.diagnostics.is_empty(), "{:?}", second.diagnostics);
    second_fronts_the_first(&second).await;
    // The first gateway is still answering directly too.
    let reply = fetch(format!("{}/views/home?employee=e3", first.data_url())).await;
    assert_eq!(reply.json()["employee"]["department"], "Finance");
}

/// Calls the first gateway through `second`, which imported its export (both forms): an
/// operation, one the second refuses itself (its input does not validate), a view by GET
/// and a view by POST.
async fn second_fronts_the_first(second: &RunningServer) {
    let base = second.data_url();
    for connector in ["junction", "junction-openapi"] {
        // An operation of the first gateway, through the second.
        let reply = fetch(format!(
            "{base}/connectors/{connector}/connectors/directory/employees/e1"
        ))
        .await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.json()["name"], "Ada Lovelace");
        // The second validates with the exported definition before calling the first.
        let reply = fetch(format!(
            "{base}/connectors/{connector}/connectors/news/articles?limit=500"
        ))
        .await;
        reply.problem(400, "invalid-request");
        // A view (GET), through the second.
        let reply = fetch(format!(
            "{base}/connectors/{connector}/views/home?employee=e1"
        ))
        .await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.json()["employee"]["name"], "Ada Lovelace");
        assert_eq!(reply.json()["open_cases"][0]["id"], 998);
        // A view (POST with a JSON body), through the second.
        let reply = collect(
            client()
                .post(format!("{base}/connectors/{connector}/views/open-case"))
                .json(&json!({"case": {"title": "Printer on fire", "requester": "e4", "priority": "high"}}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.json()["status"], "open");
        // The SOAP payroll's operation, and the view over it and the directory.
        let reply = collect(
            client()
                .post(format!(
                    "{base}/connectors/{connector}/connectors/payroll/GetPayslips"
                ))
                .json(&json!({"employeeId": "e1", "months": 1}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.json()["payslip"][0]["currency"], "EUR");
        assert_eq!(reply.json()["payslip"].as_array().unwrap().len(), 1);
        let reply = fetch(format!(
            "{base}/connectors/{connector}/views/pay?employee=e2&months=2"
        ))
        .await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.json()["employee"]["id"], "e2");
        assert_eq!(reply.json()["payslips"].as_array().unwrap().len(), 2);
    }
}

/// The first gateway checks client keys (it has a store): the export asks for one in
/// `X-Api-Key`, the header the gateway reads, and a second Junction that imported the package
/// and holds a client's key as its connection value gets through, for operations and views,
/// GET and POST; without the key the first answers 401.
#[tokio::test]
async fn export_round_trip_through_a_gateway_that_checks_client_keys() {
    let out = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let (_backends, first, _) =
        first_gateway_with_store_and_export(out.path(), true, Some(store.path())).await;
    let created = collect(
        client()
            .post(format!("{}/api/v1/clients", first.admin_url()))
            .json(&json!({"name": "power-app", "grants": ["directory", "helpdesk", "news", "payroll", "view:home", "view:open-case", "view:pay"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let key = created.json()["api_key"].as_str().unwrap().to_owned();

    let config_dir = tempfile::tempdir().unwrap();
    let second_toml = |key: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nconnectors_dir = \"{}\"\n[connector.junction.connection]\napi_key = \"{key}\"\n[connector.junction-openapi.connection]\napi_key = \"{key}\"\n",
            out.path().display()
        )
    };
    std::fs::write(config_dir.path().join("junction.toml"), second_toml(&key)).unwrap();
    let second = serve_dir(config_dir.path()).await;
    assert!(second.diagnostics.is_empty(), "{:?}", second.diagnostics);
    second_fronts_the_first(&second).await;
    second.shutdown().await;

    // A wrong key: the first gateway refuses it, and the second passes its 401 on.
    std::fs::write(
        config_dir.path().join("junction.toml"),
        second_toml("jk_not-a-key-of-the-first"),
    )
    .unwrap();
    let second = serve_dir(config_dir.path()).await;
    let reply = fetch(format!(
        "{}/connectors/junction/connectors/directory/employees/e1",
        second.data_url()
    ))
    .await;
    assert_eq!(
        reply.status,
        401,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    second.shutdown().await;
    first.shutdown().await;
}

/// The admin API describes itself: `/api/v1/openapi.json` passes a real validator and
/// names exactly the routes the admin router serves (read from its source, so a new route
/// without documentation fails here).
#[tokio::test]
async fn export_admin_api_document_names_every_route_and_passes_the_validator() {
    let server = Server::start(&config(""), &[]).await.unwrap();
    let reply = admin(&server, reqwest::Method::GET, "/api/v1/openapi.json").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let document = reply.json();
    assert_eq!(document["openapi"], "3.1.0");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin.openapi.json");
    std::fs::write(&file, &reply.body).unwrap();
    let output = Command::new(spec_validator()).arg(&file).output().unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let source =
        std::fs::read_to_string(workspace_root().join("crates/junction-server/src/admin.rs"))
            .unwrap();
    let mut routed: Vec<String> = source
        .split(".route(")
        .skip(1)
        .filter_map(|rest| {
            let start = rest.find('"')? + 1;
            let end = start + rest[start..].find('"')?;
            Some(rest[start..end].to_owned())
        })
        .collect();
    routed.sort();
    let mut documented: Vec<String> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    documented.sort();
    assert!(routed.len() >= 10, "{routed:?}");
    assert_eq!(routed, documented);
    server.shutdown().await;
}

// -------------------------------------------------------------- round trip, as a property

mod round_trip {
    use junction_model::{CollectionFormat, Connector, Method, ParamLocation};
    use proptest::prelude::*;

    use super::*;

    /// A parameter's generated shape: its JSON Schema and collection format.
    fn schema() -> impl Strategy<Value = (Value, CollectionFormat)> {
        let format = prop_oneof![
            Just(CollectionFormat::Csv),
            Just(CollectionFormat::Ssv),
            Just(CollectionFormat::Tsv),
            Just(CollectionFormat::Pipes),
            Just(CollectionFormat::Multi),
        ];
        prop_oneof![
            proptest::option::of(1u32..50)
                .prop_map(|max| match max {
                    Some(max) => json!({"type": "string", "maxLength": max}),
                    None => json!({"type": "string"}),
                })
                .prop_map(|s| (s, CollectionFormat::Csv)),
            proptest::collection::btree_set("[a-z]{1,6}", 1..4).prop_map(|values| (
                json!({"type": "string", "enum": values}),
                CollectionFormat::Csv
            )),
            (-100i64..0, 1i64..100).prop_map(|(min, max)| {
                (
                    json!({"type": "integer", "minimum": min, "maximum": max}),
                    CollectionFormat::Csv,
                )
            }),
            Just((json!({"type": "boolean"}), CollectionFormat::Csv)),
            Just((json!({"type": "number"}), CollectionFormat::Csv)),
            format.prop_map(|f| (json!({"type": "array", "items": {"type": "string"}}), f)),
        ]
    }

    /// One generated parameter: name, place, required, schema and format.
    type Param = (String, ParamLocation, bool, Value, CollectionFormat);

    fn parameters() -> impl Strategy<Value = Vec<Param>> {
        let place = prop_oneof![Just(ParamLocation::Query), Just(ParamLocation::Header)];
        proptest::collection::btree_map(
            "[a-z][a-z0-9]{0,5}",
            (place, any::<bool>(), schema()),
            0..5,
        )
        .prop_map(|params| {
            params
                .into_iter()
                .map(|(name, (place, required, (schema, format)))| {
                    let (name, format) = match place {
                        // Header names in their own namespace; `multi` is a query form.
                        ParamLocation::Header if format == CollectionFormat::Multi => {
                            (format!("x-{name}"), CollectionFormat::Csv)
                        }
                        ParamLocation::Header => (format!("x-{name}"), format),
                        _ => (name, format),
                    };
                    (name, place, required, schema, format)
                })
                .collect()
        })
    }

    /// A connector of one to three operations, each with a path parameter or not, its
    /// query and header parameters, and a JSON body when its method takes one.
    fn connector() -> impl Strategy<Value = Connector> {
        let method = prop_oneof![
            Just(Method::Get),
            Just(Method::Post),
            Just(Method::Put),
            Just(Method::Delete)
        ];
        proptest::collection::vec((method, any::<bool>(), parameters(), any::<bool>()), 1..4)
            .prop_map(|operations| {
                let operations = operations
                    .into_iter()
                    .enumerate()
                    .map(|(i, (method, with_path, params, with_body))| {
                        let path = if with_path {
                            format!("/r{i}/{{id}}")
                        } else {
                            format!("/r{i}")
                        };
                        let mut op = op(method, &path, &format!("Op{i}"));
                        if with_path {
                            op = op.param(param(
                                "id",
                                ParamLocation::Path,
                                json!({"type": "string"}),
                            ));
                        }
                        for (name, place, required, schema, format) in params {
                            let mut p = param(&name, place, schema).collection(format);
                            p.required = required;
                            op = op.param(p);
                        }
                        if with_body && matches!(method, Method::Post | Method::Put) {
                            op = op.json_body(
                                json!({"type": "object", "properties": {"a": {"type": "string"}}}),
                                true,
                            );
                        }
                        op
                    })
                    .collect();
                crate::support::connector("rt", closed_port(), operations)
            })
    }

    /// What a parameter is to a client: place, required, type, item type, enum, bounds,
    /// and (for arrays) the collection format.
    fn described(p: &junction_model::Parameter) -> (String, String, bool, Value) {
        let mut shape = serde_json::Map::new();
        for key in ["type", "enum", "minimum", "maximum", "maxLength", "items"] {
            if let Some(value) = p.schema.get(key) {
                shape.insert(key.to_owned(), value.clone());
            }
        }
        if p.schema.get("type") == Some(&json!("array")) {
            shape.insert("format".into(), json!(format!("{:?}", p.collection_format)));
        }
        (
            p.name.to_ascii_lowercase(),
            format!("{:?}", p.location),
            p.required,
            Value::Object(shape),
        )
    }

    fn check(connector: &Connector) -> Result<(), TestCaseError> {
        let gateway = Gateway::compile(
            &junction_runtime::Config::default(),
            std::slice::from_ref(connector),
        )
        .map_err(|d| TestCaseError::fail(format!("{d:?}")))?
        .gateway;
        let connectors = [connector.clone()];
        let surface = Surface::new(&connectors, &gateway);
        let options = Options {
            base_url: url::Url::parse("https://gateway.example.com/").unwrap(),
            title: "Junction".into(),
            name: "junction".into(),
            client_keys: false,
        };
        let openapi = junction_export::openapi(&surface, &options).to_string();
        let swagger = junction_export::swagger(&surface, &options).to_string();
        let properties = junction_export::api_properties(&options).to_string();
        for (file, text, props) in [
            ("junction.openapi.json", &openapi, None),
            (
                "apiDefinition.swagger.json",
                &swagger,
                Some(("apiProperties.json", properties.as_str())),
            ),
        ] {
            let loaded = junction_import::load_from_str("junction", file, text, props);
            let errors: Vec<String> = loaded
                .diagnostics
                .iter()
                .filter(|d| d.severity == junction_model::Severity::Error)
                .map(ToString::to_string)
                .collect();
            prop_assert!(errors.is_empty(), "{file}: {errors:?}\n{text}");
            let back = loaded.connector.unwrap();
            prop_assert_eq!(
                back.operations.len(),
                connector.operations.len(),
                "{}",
                file
            );
            for original in &connector.operations {
                let id = format!("rt_{}", original.id);
                let found = back.operations.iter().find(|o| o.id == id);
                prop_assert!(found.is_some(), "{file}: no {id}");
                let found = found.unwrap();
                prop_assert_eq!(&found.method, &original.method, "{}", file);
                let mut want: Vec<_> = original.parameters.iter().map(described).collect();
                let mut got: Vec<_> = found.parameters.iter().map(described).collect();
                want.sort_by(|a, b| a.0.cmp(&b.0));
                got.sort_by(|a, b| a.0.cmp(&b.0));
                prop_assert_eq!(got, want, "{}: {}", file, id);
                prop_assert_eq!(
                    found.body.is_some(),
                    original.body.is_some(),
                    "{}: {}",
                    file,
                    id
                );
            }
        }
        Ok(())
    }

    /// Export, then import, as a property: any generated connector, exported as OpenAPI 3.1
    /// and as a Power Platform package, loads back without an error and with every
    /// operation, its method, its parameters (place, required, type, enum, bounds, array
    /// format) and its body. `PROPTEST_CASES` runs more cases (64 by default).
    #[test]
    fn export_then_import_keeps_every_operation_and_parameter() {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(64);
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases,
            ..ProptestConfig::default()
        });
        runner
            .run(&connector(), |connector| check(&connector))
            .unwrap();
    }
}
