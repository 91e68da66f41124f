//! SOAP connectors against a real SOAP server: `tests/python/soap_people.py`, a spyne
//! (PyPI) service started by the test, whose WSDLs are fetched from it once and placed in
//! the connector folders. Covers SOAP 1.1 and 1.2 ports, document/literal wrapped and
//! rpc/literal operations, simple, nested and recursive-free complex types, arrays of one
//! and of many, optional and nillable elements, attributes, an enumeration, dates, faults,
//! a one-way operation, WS-Security UsernameToken, the read-only cache and a view that
//! combines a SOAP and a REST operation. Import problems (remote imports, cycles, DTDs)
//! are checked on files written by the test.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use axum::Router;
use axum::extract::Path as UrlPath;
use axum::routing::get;
use junction_server::RunningServer;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::harness::{serve_dir, write_config};
use crate::support::*;

/// `$JUNCTION_TEST_PYTHON` (scripts/test sets it to its virtual environment's, with spyne
/// and lxml installed), else `python3` when that one has spyne.
fn python() -> String {
    let candidate = std::env::var("JUNCTION_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = std::process::Command::new(&candidate)
        .args(["-c", "import spyne, lxml"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "a Python with spyne and lxml is needed: run scripts/test, which installs them, or \
         set JUNCTION_TEST_PYTHON (tried `{candidate}`)"
    );
    candidate
}

/// The spyne service, stopped when dropped.
pub struct SoapService {
    _child: tokio::process::Child,
    pub port: u16,
}

impl SoapService {
    pub async fn start() -> SoapService {
        let script = crate::harness::workspace_root().join("tests/python/soap_people.py");
        let mut child = tokio::process::Command::new(python())
            .arg(script)
            .arg("0")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the SOAP service did not start within 30 s")
            .unwrap()
            .expect("the SOAP service exited");
        let port = line
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {line}"));
        SoapService {
            _child: child,
            port,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Fetches the WSDL of `path` and writes it to `connectors/{folder}/service.wsdl`.
    pub async fn place_wsdl(&self, path: &str, dir: &Path, folder: &str) {
        let reply = fetch(self.url(&format!("{path}?wsdl"))).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let folder = dir.join("connectors").join(folder);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("service.wsdl"), &reply.body).unwrap();
    }

    /// How many POSTs each path answered.
    async fn calls(&self, path: &str) -> u64 {
        let reply = fetch(self.url("/stats")).await;
        String::from_utf8_lossy(&reply.body)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{path} ")))
            .map_or(0, |n| n.parse().unwrap())
    }
}

/// A gateway over the service's SOAP 1.1, SOAP 1.2 and rpc/literal endpoints (`people`,
/// `people12`, `calc`), with `toml` added to its configuration and `more` run on the
/// configuration directory before it starts.
async fn gateway_over(
    service: &SoapService,
    toml: &str,
    more: impl AsyncFnOnce(&Path),
) -> (RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    service.place_wsdl("/soap11", dir.path(), "people").await;
    service.place_wsdl("/soap12", dir.path(), "people12").await;
    service.place_wsdl("/rpc", dir.path(), "calc").await;
    more(dir.path()).await;
    write_config(dir.path(), toml);
    let server = serve_dir(dir.path()).await;
    (server, dir)
}

async fn call(server: &RunningServer, path: &str, body: Value) -> Reply {
    collect(
        client()
            .post(format!("{}/connectors/{path}", server.data_url()))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn ada() -> Value {
    json!({
        "id": 1,
        "name": "Ada Lovelace",
        "age": 36,
        "born": "1815-12-10",
        "seen": "1852-11-27T12:00:00+00:00",
        "height": 1.65,
        "salary": 1234.5,
        "active": false,
        "status": "retired",
        "address": {"street": "12 St James's Square", "city": "London", "zip": "10001"},
        "nicknames": {"string": ["Enchantress of Numbers"]},
        "phones": ["+44 20 0000 0001", "+44 20 0000 0002"],
    })
}

#[tokio::test]
async fn soap_spyne_operations_over_soap_1_1_1_2_and_rpc_literal() {
    let service = SoapService::start().await;
    let (server, _dir) = gateway_over(&service, "", async |_: &Path| {}).await;
    assert!(server.diagnostics.is_empty(), "{:?}", server.diagnostics);

    // Arrays of many and of one: always arrays.
    let reply = call(
        &server,
        "people/SayHello",
        json!({"name": "Ann", "times": 2}),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.json(),
        json!({"SayHelloResult": {"string": ["Hello, Ann (1)", "Hello, Ann (2)"]}})
    );
    let reply = call(
        &server,
        "people/SayHello",
        json!({"name": "Ann", "times": 1}),
    )
    .await;
    assert_eq!(
        reply.json(),
        json!({"SayHelloResult": {"string": ["Hello, Ann (1)"]}})
    );

    // Nested types, an attribute, an enumeration, dates, numbers and booleans, typed; the
    // properties in schema order. The same over SOAP 1.2.
    for connector in ["people", "people12"] {
        let reply = call(&server, &format!("{connector}/GetPerson"), json!({"id": 1})).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.json(), json!({"GetPersonResult": ada()}));
        let keys: Vec<String> = reply.json()["GetPersonResult"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys.first().map(String::as_str), Some("id"), "{keys:?}");
        assert_eq!(keys.get(1).map(String::as_str), Some("name"), "{keys:?}");
    }
    // Optional elements absent, an empty array present, markup in text read back intact.
    let reply = call(&server, "people/GetPerson", json!({"id": 2})).await;
    assert_eq!(
        reply.json(),
        json!({"GetPersonResult": {"id": 2, "name": "Grace <Hopper> & Co",
            "nicknames": {"string": []}, "phones": ["+1 555 0100"]}})
    );

    // A round trip: escaping of & < > " and non-ASCII, nested objects, an explicit null
    // (xsi:nil) read back as absent by spyne.
    let person = json!({
        "id": 5, "name": "Zoë <&> \"q\" ' 日本", "age": 7, "born": "2019-01-02",
        "status": "active", "address": {"street": "Main & 1st", "zip": "12345"},
        "nicknames": {"string": ["a", "b"]}, "phones": ["1"], "height": null,
    });
    let reply = call(&server, "people/EchoPerson", json!({"person": person})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let mut expected = person.clone();
    expected.as_object_mut().unwrap().remove("height");
    assert_eq!(reply.json(), json!({"EchoPersonResult": expected}));

    // rpc/literal: parts as unqualified children of the operation element.
    let reply = call(&server, "calc/Add", json!({"a": 2, "b": 40})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json(), json!({"sum": 42}));

    // One-way: 202 with no body; the service did get it.
    let reply = call(&server, "people/Notify", json!({"line": "hi"})).await;
    assert_eq!(reply.status, 202, "{reply:?}");
    assert!(reply.body.is_empty());
    let reply = call(&server, "people/Logged", json!({})).await;
    assert_eq!(
        reply.json(),
        json!({"LoggedResult": {"string": ["notified: hi"]}})
    );
}

#[tokio::test]
async fn soap_faults_and_invalid_input_are_problems() {
    let service = SoapService::start().await;
    let (server, _dir) = gateway_over(&service, "", async |_: &Path| {}).await;

    // A Client fault (SOAP 1.1) and a Sender fault (SOAP 1.2): 400, with code, reason and
    // detail as JSON.
    for connector in ["people", "people12"] {
        let reply = call(&server, &format!("{connector}/GetPerson"), json!({"id": 9})).await;
        let problem = reply.problem(400, "soap-fault");
        assert_eq!(problem["fault"]["reason"], "no person 9", "{problem}");
        assert_eq!(problem["fault"]["detail"], json!({"id": "9"}), "{problem}");
        assert!(
            problem["fault"]["code"]
                .as_str()
                .is_some_and(|c| c.contains("Client") || c.contains("Sender")),
            "{problem}"
        );
    }
    // A Server fault: 502.
    let reply = call(&server, "people/Explode", json!({"why": "boom"})).await;
    let problem = reply.problem(502, "soap-server-fault");
    assert_eq!(problem["fault"]["reason"], "exploded: boom", "{problem}");

    // Invalid input is refused before any call, naming each field.
    let before = service.calls("/soap11").await;
    let reply = call(
        &server,
        "people/EchoPerson",
        json!({"person": {"name": "x", "age": 200, "status": "nope", "address": {"zip": "12"}}}),
    )
    .await;
    let problem = reply.problem(400, "invalid-request");
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    for pointer in [
        "/person/age",
        "/person/status",
        "/person/address",
        "/person/address/zip",
    ] {
        assert!(pointers.contains(&pointer), "{pointer}: {problem}");
    }
    let reply = call(&server, "people/SayHello", json!({"times": 1})).await;
    let problem = reply.problem(400, "invalid-request");
    assert!(
        problem["detail"].as_str().unwrap().contains("name"),
        "{problem}"
    );
    assert_eq!(service.calls("/soap11").await, before);
}

#[tokio::test]
async fn soap_ws_security_username_token_text_and_digest() {
    let service = SoapService::start().await;
    let toml = r#"
[connector.secure-text.connection]
username = "alice"
password = "wonderland"
ws_security = "PasswordText"

[connector.secure-digest.connection]
username = "alice"
password = "wonderland"
ws_security = "PasswordDigest"

[connector.secure-wrong.connection]
username = "alice"
password = "queen"
ws_security = "PasswordDigest"
"#;
    let (server, _dir) = gateway_over(&service, toml, async |dir: &Path| {
        for folder in ["secure-text", "secure-digest", "secure-wrong", "open"] {
            service.place_wsdl("/secure", dir, folder).await;
        }
    })
    .await;
    for connector in ["secure-text", "secure-digest"] {
        let reply = call(&server, &format!("{connector}/GetPerson"), json!({"id": 1})).await;
        assert_eq!(reply.status, 200, "{connector}: {reply:?}");
        assert_eq!(reply.json(), json!({"GetPersonResult": ada()}));
    }
    // The service refuses a wrong digest and a missing token with a Client fault.
    let reply = call(&server, "secure-wrong/GetPerson", json!({"id": 1})).await;
    let problem = reply.problem(400, "soap-fault");
    assert_eq!(problem["fault"]["reason"], "wrong digest", "{problem}");
    assert!(!reply.body.windows(5).any(|w| w == b"queen"));
    let reply = call(&server, "open/GetPerson", json!({"id": 1})).await;
    let problem = reply.problem(400, "soap-fault");
    assert_eq!(
        problem["fault"]["reason"], "no wsse:UsernameToken",
        "{problem}"
    );
}

/// A REST backend for the view: `GET /badges/{id}`.
const BADGES: &str = r#"{
  "swagger": "2.0",
  "info": {"title": "Badges", "version": "1.0"},
  "host": "localhost",
  "basePath": "/",
  "schemes": ["http"],
  "paths": {"/badges/{id}": {"get": {
    "operationId": "GetBadge",
    "parameters": [{"name": "id", "in": "path", "required": true, "type": "integer"}],
    "responses": {"200": {"description": "a badge", "schema": {"type": "object"}}}
  }}}
}"#;

const PROFILE_VIEW: &str = r#"summary = "A person with their badge"
shape = '{name: .steps.person.GetPersonResult.name, city: .steps.person.GetPersonResult.address.city, badge: .steps.badge.badge}'

[input.id]
type = "integer"
required = true

[step.person]
operation = "people.GetPerson"
args = { body = { id = "$inputs.id" } }

[step.badge]
operation = "badges.GetBadge"
args = { id = "$inputs.id" }
"#;

#[tokio::test]
async fn soap_read_only_operation_is_cached_and_a_view_combines_soap_and_rest() {
    let service = SoapService::start().await;
    let badges =
        start_backend(Router::new().route(
            "/badges/{id}",
            get(|UrlPath(id): UrlPath<u32>| async move {
                axum::Json(json!({"badge": format!("B-{id}")}))
            }),
        ))
        .await;
    let toml = format!(
        r#"
[connector.badges]
backend = "http://{badges}/"

[connector.people.cache]
ttl = "60s"

[connector.people.operation.GetPerson]
read_only = true

[rate_limit]
per_client = "1000/min"
"#
    );
    let (server, _dir) = gateway_over(&service, &toml, async |dir: &Path| {
        let folder = dir.join("connectors/badges");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("apiDefinition.swagger.json"), BADGES).unwrap();
        let views = dir.join("views");
        std::fs::create_dir_all(&views).unwrap();
        std::fs::write(views.join("profile.toml"), PROFILE_VIEW).unwrap();
    })
    .await;
    assert!(server.diagnostics.is_empty(), "{:?}", server.diagnostics);

    // The read-only operation is cached (keyed by its body); the others are not.
    let before = service.calls("/soap11").await;
    let first = call(&server, "people/GetPerson", json!({"id": 1})).await;
    assert_eq!(x_cache(&first), "MISS");
    let second = call(&server, "people/GetPerson", json!({"id": 1})).await;
    assert_eq!(x_cache(&second), "HIT");
    assert_eq!(second.json(), first.json());
    let other = call(&server, "people/GetPerson", json!({"id": 2})).await;
    assert_eq!(x_cache(&other), "MISS");
    assert_eq!(service.calls("/soap11").await, before + 2);
    let reply = call(&server, "people/SayHello", json!({"name": "A"})).await;
    assert_eq!(reply.header("x-cache"), None);

    // The view: the SOAP step (from the cache) and the REST step at once.
    let reply = fetch(format!("{}/views/profile?id=1", server.data_url())).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.json(),
        json!({"name": "Ada Lovelace", "city": "London", "badge": "B-1"})
    );
    // A fault in a required step fails the view with the step's problem, named.
    let reply = fetch(format!("{}/views/profile?id=9", server.data_url())).await;
    let problem = reply.problem(400, "soap-fault");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("required step 'person' (people.GetPerson) failed"),
        "{problem}"
    );
}

// ---------------------------------------------------------------- import problems

fn load_codes(path: &Path) -> (bool, Vec<String>) {
    let loaded = junction_import::load(path);
    let codes = loaded
        .diagnostics
        .iter()
        .map(|d| {
            format!(
                "{} {}:{}:{} {}",
                d.code,
                d.file,
                d.line.unwrap_or(0),
                d.column.unwrap_or(0),
                d.message
            )
        })
        .collect();
    (loaded.connector.is_some(), codes)
}

const WSDL_HEAD: &str = r#"<?xml version="1.0"?>
<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:tns="urn:t" targetNamespace="urn:t">
"#;

/// A WSDL whose types import `types.xsd`, which includes `more.xsd` and imports `other.xsd`,
/// and whose operation is defined in `ops.wsdl` (a `wsdl:import`).
fn write_imports(dir: &Path, types_import: &str) {
    std::fs::write(
        dir.join("main.wsdl"),
        format!(
            r#"{WSDL_HEAD}  <import namespace="urn:t" location="ops.wsdl"/>
  <types><xsd:schema targetNamespace="urn:t">
    <xsd:import namespace="urn:t" schemaLocation="{types_import}"/>
  </xsd:schema></types>
  <service name="S"><port name="P" binding="tns:B"><soap:address location="http://127.0.0.1:1/s"/></port></service>
</definitions>"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("ops.wsdl"),
        format!(
            r#"{WSDL_HEAD}  <message name="In"><part name="p" element="tns:Ask"/></message>
  <message name="Out"><part name="p" element="tns:Answer"/></message>
  <portType name="PT"><operation name="Ask"><input message="tns:In"/><output message="tns:Out"/></operation></portType>
  <binding name="B" type="tns:PT"><soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="Ask"><soap:operation soapAction="urn:t#Ask"/>
      <input><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation>
  </binding>
</definitions>"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("types.xsd"),
        r#"<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:o="urn:o" targetNamespace="urn:t" xmlns:tns="urn:t" elementFormDefault="qualified">
  <xsd:include schemaLocation="more.xsd"/>
  <xsd:import namespace="urn:o" schemaLocation="other.xsd"/>
  <xsd:element name="Ask"><xsd:complexType><xsd:sequence>
    <xsd:element name="query" type="xsd:string"/><xsd:element name="where" type="o:Place"/>
  </xsd:sequence></xsd:complexType></xsd:element>
  <xsd:element name="Answer" type="tns:Answer"/>
</xsd:schema>"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("more.xsd"),
        r#"<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema" elementFormDefault="qualified">
  <xsd:complexType name="Answer"><xsd:sequence><xsd:element name="text" type="xsd:string" maxOccurs="unbounded"/></xsd:sequence></xsd:complexType>
</xsd:schema>"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("other.xsd"),
        r#"<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:o">
  <xsd:complexType name="Place"><xsd:attribute name="city" type="xsd:string"/></xsd:complexType>
</xsd:schema>"#,
    )
    .unwrap();
}

#[test]
fn soap_import_follows_wsdl_and_schema_imports_and_includes() {
    let dir = tempfile::tempdir().unwrap();
    write_imports(dir.path(), "types.xsd");
    let loaded = junction_import::load(dir.path());
    let connector = loaded
        .connector
        .unwrap_or_else(|| panic!("{:#?}", loaded.diagnostics));
    let op = &connector.operations[0];
    assert_eq!(op.id, "Ask");
    let schema = &op.body.as_ref().unwrap().schema;
    assert_eq!(schema["required"], json!(["query", "where"]), "{schema}");
}

#[test]
fn soap_import_problems_are_diagnostics_with_positions() {
    // A remote import names the file to place beside the WSDL.
    let dir = tempfile::tempdir().unwrap();
    write_imports(dir.path(), "https://example.com/schemas/types.xsd?v=2");
    let (ok, codes) = load_codes(dir.path());
    assert!(!ok);
    let remote = codes
        .iter()
        .find(|c| c.starts_with("remote-import"))
        .unwrap();
    assert!(remote.contains("main.wsdl:6:5 "), "{remote}");
    assert!(remote.contains("save types.xsd beside"), "{remote}");

    // A cycle loads, with a warning where it closes.
    let dir = tempfile::tempdir().unwrap();
    write_imports(dir.path(), "types.xsd");
    let more = dir.path().join("more.xsd");
    let text = std::fs::read_to_string(&more).unwrap().replace(
        "elementFormDefault=\"qualified\">",
        "elementFormDefault=\"qualified\">\n  <xsd:include schemaLocation=\"types.xsd\"/>",
    );
    std::fs::write(&more, text).unwrap();
    let (ok, codes) = load_codes(dir.path());
    assert!(ok, "{codes:?}");
    assert!(
        codes
            .iter()
            .any(|c| c.starts_with("import-cycle") && c.contains("more.xsd:2:")),
        "{codes:?}"
    );

    // A DOCTYPE (here an external entity) is refused, naming where.
    let dir = tempfile::tempdir().unwrap();
    write_imports(dir.path(), "types.xsd");
    std::fs::write(
        dir.path().join("other.xsd"),
        "<?xml version=\"1.0\"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>\n<x>&e;</x>",
    )
    .unwrap();
    let (ok, codes) = load_codes(dir.path());
    assert!(!ok);
    assert!(
        codes
            .iter()
            .any(|c| c.starts_with("xml-doctype") && c.contains("other.xsd:2:1")),
        "{codes:?}"
    );

    // A billion-laughs WSDL: refused before any entity is expanded.
    let dir = tempfile::tempdir().unwrap();
    let mut laughs =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_owned()
        } else {
            format!("lol{}", i - 1)
        };
        laughs.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">\n",
            format!("&{prev};").repeat(10)
        ));
    }
    laughs.push_str(
        "]>\n<definitions xmlns=\"http://schemas.xmlsoap.org/wsdl/\">&lol9;</definitions>\n",
    );
    std::fs::write(dir.path().join("laughs.wsdl"), laughs).unwrap();
    let (ok, codes) = load_codes(dir.path());
    assert!(!ok);
    assert_eq!(codes.len(), 1, "{codes:?}");
    assert!(
        codes[0].starts_with("xml-doctype") && codes[0].contains(":2:1"),
        "{codes:?}"
    );
}

#[tokio::test]
async fn soap_malformed_answers_are_502_naming_the_problem() {
    // A backend that answers the SOAP call with what a broken service might.
    let answers = Router::new()
        .route(
            "/doctype",
            axum::routing::post(|| async {
                "<?xml version=\"1.0\"?><!DOCTYPE e [<!ENTITY a \"aaaa\">]><e>&a;</e>"
            }),
        )
        .route(
            "/html",
            axum::routing::post(|| async {
                (
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "<html><body>Proxy error</body></html>",
                )
            }),
        )
        .route(
            "/cut",
            axum::routing::post(|| async {
                "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><x"
            }),
        );
    let backend = start_backend(answers).await;
    let service = SoapService::start().await;
    let toml = format!(
        "[connector.doctype]\nbackend = \"http://{backend}/doctype\"\n\
         [connector.html]\nbackend = \"http://{backend}/html\"\n\
         [connector.cut]\nbackend = \"http://{backend}/cut\"\n"
    );
    let (server, _dir) = gateway_over(&service, &toml, async |dir: &Path| {
        for folder in ["doctype", "html", "cut"] {
            service.place_wsdl("/soap11", dir, folder).await;
        }
    })
    .await;
    for (connector, expected) in [
        ("doctype", "has a DOCTYPE"),
        (
            "html",
            "is not a SOAP envelope (its root element is 'html'; HTTP 500)",
        ),
        ("cut", "is not well-formed XML (line 1"),
    ] {
        let reply = call(&server, &format!("{connector}/GetPerson"), json!({"id": 1})).await;
        let problem = reply.problem(502, "upstream-invalid");
        assert!(
            problem["detail"].as_str().unwrap().contains(expected),
            "{connector}: {problem}"
        );
    }
}

// ---------------------------------------------------------------- zeep's test WSDLs

/// Operations and their top-level input names, per `python -m zeep FILE` (SOAP ports only;
/// header arguments, which Junction does not map, left out).
fn zeep_operations(file: &Path) -> Result<Vec<(String, Vec<String>)>, String> {
    let output = std::process::Command::new(python())
        .args(["-m", "zeep"])
        .arg(file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(stderr.lines().last().unwrap_or_default().to_owned());
    }
    let mut out = Vec::new();
    let mut soap_port = false;
    for line in stdout.lines() {
        if let Some(port) = line.trim_start().strip_prefix("Port: ") {
            soap_port = port.contains("(Soap11Binding") || port.contains("(Soap12Binding");
            continue;
        }
        if !soap_port || !line.starts_with("            ") {
            continue;
        }
        let line = line.trim();
        let Some((name, rest)) = line.split_once('(') else {
            continue;
        };
        // The arguments: up to the `)` that closes the list, split at top-level commas.
        let (mut depth, mut args, mut current) = (0, Vec::new(), String::new());
        for c in rest.chars() {
            match c {
                '(' | '{' => depth += 1,
                '}' => depth -= 1,
                ')' if depth == 0 => break,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    args.push(std::mem::take(&mut current));
                    continue;
                }
                _ => {}
            }
            current.push(c);
        }
        args.push(current);
        let mut names: Vec<String> = args
            .iter()
            .map(|a| a.trim())
            .filter(|a| !a.is_empty() && !a.starts_with("_soapheaders="))
            .map(|a| a.split_once(": ").map_or("", |(n, _)| n).to_owned())
            .collect();
        names.sort();
        out.push((name.to_owned(), names));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The same from Junction's import: each SOAP operation's WSDL name and the properties of
/// its JSON body.
fn junction_operations(file: &Path) -> Result<Vec<(String, Vec<String>)>, String> {
    let loaded = junction_import::load(file);
    let Some(connector) = loaded.connector else {
        let codes: Vec<&str> = loaded.diagnostics.iter().map(|d| d.code).collect();
        return Err(codes.join(", "));
    };
    let mut out: Vec<(String, Vec<String>)> = connector
        .operations
        .iter()
        .map(|op| {
            let mut schema = op
                .body
                .as_ref()
                .map(|b| b.schema.clone())
                .unwrap_or_default();
            if let Some(name) = schema["$ref"].as_str().and_then(|r| r.rsplit('/').next()) {
                schema = connector.definitions.get(name).cloned().unwrap_or_default();
            }
            let mut names: Vec<String> = match schema.get("properties") {
                Some(Value::Object(properties)) => properties.keys().cloned().collect(),
                // A bare simple-typed part: one nameless argument, as zeep shows it.
                _ if schema.get("type").is_some_and(|t| t != "object") => vec![String::new()],
                _ => Vec::new(),
            };
            names.sort();
            (op.soap.as_ref().unwrap().name.clone(), names)
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Whether zeep's and Junction's operations agree. zeep shows the content of a bare
/// document part of simple type as one nameless argument; in JSON it needs a name, the
/// element's.
fn same(zeep: &[(String, Vec<String>)], junction: &[(String, Vec<String>)]) -> bool {
    zeep.len() == junction.len()
        && zeep.iter().zip(junction).all(|((zn, za), (jn, ja))| {
            zn == jn && (za == ja || (za.as_slice() == [String::new()] && ja.len() == 1))
        })
}

#[test]
fn soap_import_agrees_with_zeep_on_its_test_wsdls() {
    let Ok(tests) = std::env::var("JUNCTION_TEST_ZEEP_TESTS") else {
        panic!(
            "JUNCTION_TEST_ZEEP_TESTS must name the tests/ folder of zeep's source \
             distribution: run scripts/test, which downloads it"
        );
    };
    let tests = Path::new(&tests);
    let mut files = Vec::new();
    for dir in ["wsdl_files", "integration"] {
        for entry in std::fs::read_dir(tests.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "wsdl") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    let mut compared = 0;
    let mut report = Vec::new();
    for file in &files {
        let name = file.strip_prefix(tests).unwrap().display().to_string();
        let zeep = zeep_operations(file);
        let junction = junction_operations(file);
        match (&zeep, &junction) {
            (Ok(z), Ok(j)) if same(z, j) => compared += 1,
            // No SOAP port: zeep lists none, Junction refuses the file saying so.
            (Ok(z), Err(codes)) if z.is_empty() && codes.contains("wsdl-no-operation") => {
                compared += 1;
            }
            // zeep lists the services of the file it is given only; Junction also those of
            // the WSDLs it imports (this file imports the one with the service).
            (Ok(z), Ok(j))
                if z.is_empty() && name.ends_with("hello_world_recursive_import.wsdl") =>
            {
                assert_eq!(j.len(), 6, "{j:?}");
                report.push(format!("{name}: services only in an imported WSDL"));
            }
            // Files zeep itself cannot read (it fetches the SOAP encoding schema from the
            // network, which this machine does not reach); Junction must still load them.
            (Err(reason), Ok(_)) => report.push(format!("{name}: zeep cannot read it: {reason}")),
            // A WSDL made to be imported (no service of its own), which zeep cannot read
            // either.
            (Err(reason), Err(codes)) if codes.contains("wsdl-no-service") => {
                report.push(format!("{name}: no service; zeep cannot read it: {reason}"));
            }
            _ => panic!("{name}: zeep says {zeep:?}, Junction {junction:?}"),
        }
    }
    eprintln!("compared {compared} of {} WSDLs; {report:#?}", files.len());
    assert!(compared >= 7, "{report:#?}");
}

// ---------------------------------------------------------------- export

#[tokio::test]
async fn soap_export_round_trip_a_second_junction_calls_the_soap_operation() {
    let service = SoapService::start().await;
    let (first, dir) = gateway_over(&service, "", async |_: &Path| {}).await;
    let config = junction_runtime::Config::load(dir.path()).unwrap();
    let connectors: Vec<_> = junction_import::discover(&config.connectors_dir)
        .iter()
        .filter_map(|path| junction_import::load(path).connector)
        .collect();
    assert_eq!(connectors.len(), 3);
    let compiled = junction_runtime::Gateway::compile(&config, &connectors).unwrap();
    let surface = junction_export::Surface::new(&connectors, &compiled.gateway);
    let options = junction_export::Options {
        base_url: url::Url::parse(&first.data_url()).unwrap(),
        title: "SOAP through Junction".into(),
        name: "junction".into(),
        client_keys: false,
    };
    let out = tempfile::tempdir().unwrap();
    junction_export::write(&surface, &options, out.path()).unwrap();

    // Both documents pass an independent validator, and the package loads back.
    let validator = crate::export::spec_validator();
    crate::export::assert_exports_pass_the_validator(&validator, out.path());
    let package = junction_import::load(&out.path().join("junction"));
    assert!(
        !package.diagnostics.has_errors(),
        "{:#?}",
        package.diagnostics
    );

    // A second Junction, fronting the first with its export, calls the SOAP operations.
    let second_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        second_dir.path().join("junction.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nconnectors_dir = \"{}\"\n",
            out.path().display()
        ),
    )
    .unwrap();
    let second = serve_dir(second_dir.path()).await;
    for connector in ["junction", "junction-openapi"] {
        let through = format!("{connector}/connectors/people/GetPerson");
        let reply = call(&second, &through, json!({"id": 1})).await;
        assert_eq!(reply.status, 200, "{connector}: {reply:?}");
        assert_eq!(reply.json(), json!({"GetPersonResult": ada()}));
        let reply = call(
            &second,
            &format!("{connector}/connectors/calc/Add"),
            json!({"a": 1, "b": 2}),
        )
        .await;
        assert_eq!(reply.json(), json!({"sum": 3}), "{connector}");
        // The second refuses what the derived schema refuses, before calling the first.
        let reply = call(&second, &through, json!({"id": "one"})).await;
        reply.problem(400, "invalid-request");
        // A fault comes back through both as the first's problem.
        let reply = call(&second, &through, json!({"id": 9})).await;
        assert_eq!(reply.status, 400, "{connector}: {reply:?}");
        assert_eq!(reply.json()["fault"]["reason"], "no person 9");
    }
}

// ---------------------------------------------------------------- several ports

/// spyne's SOAP 1.1 WSDL with its SOAP 1.2 binding and port added to the same service, as
/// a WCF or Axis service publishes them: two ports with the same operations.
async fn two_port_wsdl(service: &SoapService) -> String {
    let get = async |path: &str| {
        String::from_utf8(
            fetch(service.url(&format!("{path}?wsdl")))
                .await
                .body
                .to_vec(),
        )
        .unwrap()
    };
    let (wsdl11, wsdl12) = (get("/soap11").await, get("/soap12").await);
    let start = wsdl12.find("<wsdl:binding").unwrap();
    let end = wsdl12.find("</wsdl:binding>").unwrap() + "</wsdl:binding>".len();
    let binding =
        wsdl12[start..end].replacen("name=\"PeopleService\"", "name=\"PeopleService12\"", 1);
    let port = format!(
        "<wsdl:port name=\"PeopleService12\" binding=\"tns:PeopleService12\">\
         <wsdlsoap12:address location=\"{}\"/></wsdl:port>",
        service.url("/soap12")
    );
    wsdl11
        .replacen("</wsdl:service>", &format!("{port}</wsdl:service>"), 1)
        .replacen(
            "</wsdl:definitions>",
            &format!("{binding}</wsdl:definitions>"),
            1,
        )
}

#[tokio::test]
async fn soap_every_port_is_served_and_soap_port_picks_one() {
    let service = SoapService::start().await;
    let wsdl = two_port_wsdl(&service).await;
    let place = async |dir: &Path| {
        let folder = dir.join("connectors/both");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("People.wsdl"), &wsdl).unwrap();
    };

    // Both ports: the second port's operations under PORT_NAME, with a warning that says so.
    let dir = tempfile::tempdir().unwrap();
    place(dir.path()).await;
    let loaded = junction_import::load(&dir.path().join("connectors/both"));
    let warning = loaded
        .diagnostics
        .iter()
        .find(|d| d.code == "soap-port-names")
        .unwrap_or_else(|| panic!("{:#?}", loaded.diagnostics));
    assert!(
        warning.message.contains("soap_port = \"PeopleService12\""),
        "{warning}"
    );
    let (server, _dir) = gateway_over(&service, "", place).await;
    let (calls11, calls12) = (
        service.calls("/soap11").await,
        service.calls("/soap12").await,
    );
    for operation in ["GetPerson", "PeopleService12_GetPerson"] {
        let reply = call(&server, &format!("both/{operation}"), json!({"id": 1})).await;
        assert_eq!(reply.status, 200, "{operation}: {reply:?}");
        assert_eq!(reply.json(), json!({"GetPersonResult": ada()}));
    }
    assert_eq!(service.calls("/soap11").await, calls11 + 1);
    assert_eq!(service.calls("/soap12").await, calls12 + 1);

    // soap_port: that port only, under the plain names.
    let toml = "[connector.both]\nsoap_port = \"PeopleService12\"\n";
    let (server, _dir) = gateway_over(&service, toml, place).await;
    let reply = call(&server, "both/GetPerson", json!({"id": 2})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(service.calls("/soap12").await, calls12 + 2);
    let reply = call(&server, "both/PeopleService12_GetPerson", json!({"id": 2})).await;
    assert_eq!(reply.status, 404, "{reply:?}");

    // A port the WSDL does not have: the start fails, naming the ports there are.
    let dir = tempfile::tempdir().unwrap();
    place(dir.path()).await;
    write_config(dir.path(), "[connector.both]\nsoap_port = \"Nope\"\n");
    let config = junction_runtime::Config::load(dir.path()).unwrap();
    let connectors: Vec<_> = junction_import::discover(&config.connectors_dir)
        .iter()
        .filter_map(|path| junction_import::load(path).connector)
        .collect();
    let Err(junction_server::StartError::Compile(diagnostics)) =
        junction_server::Server::start(&config, &connectors).await
    else {
        panic!("a gateway with an unknown soap_port started");
    };
    let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    let text = text.join("\n");
    assert!(text.contains("unknown-soap-port"), "{text}");
    assert!(
        text.contains("its ports are PeopleService, PeopleService12"),
        "{text}"
    );
}

// ---------------------------------------------------------------- retries and credentials

/// A payroll backend (the demo's WSDL) that answers `503` to every other request, starting
/// with the first.
async fn flaky_payroll() -> Backend {
    let count = std::sync::atomic::AtomicUsize::new(0);
    Backend::start(move |_| {
        if count
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            .is_multiple_of(2)
        {
            return (
                503,
                vec![("content-type", "text/plain".to_owned())],
                "busy".to_owned(),
            );
        }
        (
            200,
            vec![("content-type", "text/xml".to_owned())],
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>\
             <GetPayslipsResponse xmlns=\"urn:junction:demo:payroll\"/></s:Body></s:Envelope>"
                .to_owned(),
        )
    })
    .await
}

#[tokio::test]
async fn soap_idempotent_operations_are_retried_and_credentials_travel() {
    let wsdl = crate::harness::workspace_root()
        .join("crates/junction-demo/connectors/payroll/Payroll.wsdl");
    let (retried, once, keyed) = (
        flaky_payroll().await,
        flaky_payroll().await,
        flaky_payroll().await,
    );
    let dir = tempfile::tempdir().unwrap();
    for folder in ["retried", "once", "keyed"] {
        let folder = dir.path().join("connectors").join(folder);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(&wsdl, folder.join("Payroll.wsdl")).unwrap();
    }
    write_config(
        dir.path(),
        &format!(
            r#"
[connector.retried]
backend = "{}"
[connector.retried.connection]
username = "svc"
password = "s3cret"
[connector.retried.retry]
retries = 2
backoff = "1ms"
[connector.retried.operation.GetPayslips]
idempotent = true

[connector.once]
backend = "{}"
[connector.once.retry]
retries = 2

[connector.keyed]
backend = "{}"
[connector.keyed.connection]
api_key = "k-123"
api_key_header = "X-Payroll-Key"
[connector.keyed.retry]
retries = 2
[connector.keyed.operation.GetPayslips]
read_only = true
"#,
            retried.url(),
            once.url(),
            keyed.url()
        ),
    );
    let server = serve_dir(dir.path()).await;
    let body = json!({"employeeId": "e1"});

    // Idempotent: the 503 is retried; basic credentials on every attempt.
    let reply = call(&server, "retried/GetPayslips", body.clone()).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json(), json!({"payslip": []}));
    let seen = retried.seen();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/payroll/Payroll.svc");
        assert_eq!(
            request.header("authorization").as_deref(),
            Some("Basic c3ZjOnMzY3JldA==")
        );
        assert_eq!(
            request.header("soapaction").as_deref(),
            Some("\"urn:junction:demo:payroll#GetPayslips\"")
        );
        assert!(String::from_utf8_lossy(&request.body).contains("<employeeId>e1</employeeId>"));
    }

    // Not marked: a POST is sent once; the backend's 503 without a fault is a 502 that says so.
    let reply = call(&server, "once/GetPayslips", body.clone()).await;
    let problem = reply.problem(502, "upstream-invalid");
    assert!(
        problem["detail"].as_str().unwrap().contains("HTTP 503"),
        "{problem}"
    );
    assert_eq!(once.seen().len(), 1);

    // Read-only is retried too; the API key travels in the header the connection names.
    let reply = call(&server, "keyed/GetPayslips", body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(keyed.seen().len(), 2);
    assert_eq!(
        keyed.seen()[1].header("x-payroll-key").as_deref(),
        Some("k-123")
    );
}

// ---------------------------------------------------------------- the store

#[tokio::test]
async fn soap_ws_security_from_a_stored_connection() {
    let service = SoapService::start().await;
    let store = crate::store::TestStore::sqlite();
    let keys = tempfile::tempdir().unwrap();
    let key_file = master_key_file(keys.path());
    let (server, _dir) = gateway_over(&service, &store.toml(&key_file), async |dir: &Path| {
        service.place_wsdl("/secure", dir, "secure").await;
    })
    .await;
    let api = format!("{}/api/v1", server.admin_url());

    // The connection's values are sealed: the answer names them, never shows them.
    let created = collect(
        client()
            .post(format!("{api}/connections"))
            .json(&json!({"connector": "secure", "name": "hr",
                "values": {"username": "alice", "password": "wonderland",
                           "ws_security": "PasswordDigest"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    assert!(!String::from_utf8_lossy(&created.body).contains("wonderland"));
    let client_reply = collect(
        client()
            .post(format!("{api}/clients"))
            .json(&json!({"name": "hr-app", "grants": ["secure@secure/hr"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(client_reply.status, 201, "{client_reply:?}");
    let key = client_reply.json()["api_key"].as_str().unwrap().to_owned();

    // The client's calls carry the stored connection's UsernameToken (a digest).
    let reply = collect(
        client()
            .post(format!("{}/connectors/secure/GetPerson", server.data_url()))
            .bearer_auth(&key)
            .json(&json!({"id": 1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json(), json!({"GetPersonResult": ada()}));
    if let crate::store::TestStore::Sqlite(dir) = &store {
        let file = std::fs::read(dir.path().join("junction.db")).unwrap();
        assert!(!file.windows(10).any(|w| w == b"wonderland"));
    }
}

// ---------------------------------------------------------------- schema constructs

const SHAPES_WSDL: &str = r#"<?xml version="1.0"?>
<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:tns="urn:shapes" targetNamespace="urn:shapes">
  <types><xs:schema targetNamespace="urn:shapes" elementFormDefault="qualified">
    <xs:complexType name="Base"><xs:sequence><xs:element name="id" type="xs:int"/></xs:sequence>
      <xs:attribute name="kind" type="xs:string"/></xs:complexType>
    <xs:complexType name="Derived"><xs:complexContent><xs:extension base="tns:Base">
      <xs:sequence><xs:element name="label" type="xs:string"/></xs:sequence></xs:extension></xs:complexContent></xs:complexType>
    <xs:complexType name="Amount"><xs:simpleContent><xs:extension base="xs:decimal">
      <xs:attribute name="currency" type="xs:string"/></xs:extension></xs:simpleContent></xs:complexType>
    <xs:complexType name="Node"><xs:sequence><xs:element name="name" type="xs:string"/>
      <xs:element name="child" type="tns:Node" minOccurs="0" maxOccurs="unbounded"/></xs:sequence></xs:complexType>
    <xs:group name="Contact"><xs:choice>
      <xs:element name="email" type="xs:string"/><xs:element name="phone" type="xs:string"/></xs:choice></xs:group>
    <xs:complexType name="Shapes"><xs:sequence>
      <xs:element name="item" type="tns:Derived"/>
      <xs:group ref="tns:Contact"/>
      <xs:element name="price" type="tns:Amount"/>
      <xs:element name="tree" type="tns:Node"/>
      <xs:element name="when" type="xs:date" nillable="true"/>
    </xs:sequence></xs:complexType>
    <xs:element name="Put" type="tns:Shapes"/>
    <xs:element name="PutResponse" type="tns:Shapes"/>
  </xs:schema></types>
  <message name="In"><part name="p" element="tns:Put"/></message>
  <message name="Out"><part name="p" element="tns:PutResponse"/></message>
  <portType name="PT"><operation name="Put"><input message="tns:In"/><output message="tns:Out"/></operation></portType>
  <binding name="B" type="tns:PT"><soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="Put"><soap:operation soapAction="urn:shapes#Put"/>
      <input><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation></binding>
  <service name="S"><port name="P" binding="tns:B"><soap:address location="http://127.0.0.1:1/shapes"/></port></service>
</definitions>"#;

/// The answer of the shapes backend: the same constructs, in a prefixed namespace.
const SHAPES_ANSWER: &str = r#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><e:Body>
  <s:PutResponse xmlns:s="urn:shapes">
    <s:item kind="k"><s:id>1</s:id><s:label>L &amp; M</s:label></s:item>
    <s:phone>+1 555</s:phone>
    <s:price currency="EUR">9.50</s:price>
    <s:tree><s:name>root</s:name><s:child><s:name>leaf</s:name></s:child></s:tree>
    <s:when xsi:nil="true"/>
  </s:PutResponse></e:Body></e:Envelope>"#;

#[tokio::test]
async fn soap_extension_simple_content_choice_recursion_and_nil() {
    let backend = Backend::start(|_| {
        (
            200,
            vec![("content-type", "text/xml".to_owned())],
            SHAPES_ANSWER.to_owned(),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("connectors/shapes");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("shapes.wsdl"), SHAPES_WSDL).unwrap();
    write_config(
        dir.path(),
        &format!(
            "[connector.shapes]\nbackend = \"{}/shapes\"\n",
            backend.url()
        ),
    );
    let server = serve_dir(dir.path()).await;

    // The input: an extension's attribute and both sequences, one member of a choice, text
    // with an attribute (`_value`), a recursive type, and nil.
    let input = json!({
        "item": {"kind": "k", "id": 1, "label": "L & M"},
        "email": "a@example.com",
        "price": {"currency": "EUR", "_value": 9.5},
        "tree": {"name": "root", "child": [{"name": "leaf", "child": []}]},
        "when": null,
    });
    let reply = call(&server, "shapes/Put", input.clone()).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.json(),
        json!({
            "item": {"kind": "k", "id": 1, "label": "L & M"},
            "phone": "+1 555",
            "price": {"currency": "EUR", "_value": 9.5},
            "tree": {"name": "root", "child": [{"name": "leaf", "child": []}]},
            "when": null,
        })
    );
    let sent = String::from_utf8(backend.only().body.to_vec()).unwrap();
    for fragment in [
        "kind=\"k\"",
        ">1</",
        ">L &amp; M</",
        ">a@example.com</",
        "currency=\"EUR\"",
        ">9.5</",
        ">leaf</",
        "nil=\"true\"",
    ] {
        assert!(sent.contains(fragment), "{fragment} not in {sent}");
    }
    assert!(!sent.contains("phone"), "{sent}");

    // Two members of the choice, or a member of the wrong type: refused before any call.
    let mut both = input.clone();
    both["phone"] = json!("+1 555");
    call(&server, "shapes/Put", both)
        .await
        .problem(400, "invalid-request");
    let mut deep = input;
    deep["tree"]["child"][0]["child"] = json!([{"name": 5}]);
    let problem = call(&server, "shapes/Put", deep)
        .await
        .problem(400, "invalid-request");
    assert!(
        problem["errors"][0]["pointer"]
            .as_str()
            .unwrap()
            .starts_with("/tree/child/0/child/0/name"),
        "{problem}"
    );
    assert_eq!(backend.seen().len(), 1);
}
