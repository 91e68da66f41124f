//! The web console and the admin endpoints it uses: operation details, `try`, connection
//! parameters, diagnostics and view dependencies over HTTP; then the console itself in a
//! real headless Chromium driven by playwright-core (`tests/node/console.mjs`), against a
//! gateway with a SQLite store, an admin token and in-process mock backends.
//!
//! Screenshots of every browser step land in `tests/artifacts/console/` (not in git).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing;
use junction_model::{
    ApiKeyLocation, ApiProperties, ConnectionParameter, Connector, Method, ParamLocation,
    SecurityScheme, Visibility,
};
use junction_runtime::ViewSource;
use junction_server::{RunningServer, Server};
use serde_json::{Value, json};

use crate::harness::workspace_root;
use crate::store::with_parameters;
use crate::support::{self, OperationExt, ParameterExt, collect};

const ADMIN_TOKEN: &str = "console-admin-token-5b2e";
/// The key the `vault` backend wants; it echoes it back, so redaction shows.
const VAULT_KEY: &str = "vault-key-c4f19a77";

/// The pets backend: a list, one pet, and a create that echoes its body.
fn pets_backend() -> Router {
    async fn list(Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
        let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(2);
        let status = q.get("status").cloned().unwrap_or_else(|| "any".into());
        let pets: Vec<Value> = (1..=limit.min(5))
            .map(|i| json!({"id": i, "name": format!("pet-{i}"), "status": status}))
            .collect();
        axum::Json(json!({"pets": pets, "marker": "mock-pets-7731"})).into_response()
    }
    async fn one(Path(id): Path<String>) -> Response {
        axum::Json(json!({"id": id, "name": "Rex", "marker": "mock-pet-one"})).into_response()
    }
    async fn create(body: String) -> Response {
        (
            StatusCode::CREATED,
            [("content-type", "application/json")],
            body,
        )
            .into_response()
    }
    async fn authorize() -> Response {
        (
            [("content-type", "text/html; charset=utf-8")],
            "<!doctype html><title>Mock identity provider</title><p>Sign in here.</p>",
        )
            .into_response()
    }
    Router::new()
        .route("/api/pets", routing::get(list).post(create))
        .route("/api/pets/{id}", routing::get(one))
        .route("/authorize", routing::get(authorize))
}

/// The vault backend: 401 without `X-Key: VAULT_KEY`; with it, an answer that echoes the
/// key in a header and in the body.
fn vault_backend() -> Router {
    async fn secret(headers: HeaderMap) -> Response {
        match headers.get("x-key").and_then(|v| v.to_str().ok()) {
            Some(key) if key == VAULT_KEY => (
                [("x-echo-key", key.to_owned())],
                axum::Json(json!({"vault": "open", "you_sent": key, "marker": "mock-vault-ok"})),
            )
                .into_response(),
            _ => (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": "wrong or missing key"})),
            )
                .into_response(),
        }
    }
    Router::new().route("/api/secret", routing::get(secret))
}

fn pets(addr: SocketAddr) -> Connector {
    use junction_model::Method::{Get, Post};
    let mut pets = support::connector(
        "pets",
        addr,
        vec![
            support::op(Get, "/pets", "ListPets")
                .param(
                    support::param(
                        "limit",
                        ParamLocation::Query,
                        json!({"type": "integer", "minimum": 1, "maximum": 5}),
                    )
                    .default_value(json!(2)),
                )
                .param({
                    let mut p = support::param(
                        "status",
                        ParamLocation::Query,
                        json!({"type": "string", "enum": ["available", "sold"]}),
                    );
                    p.visibility = Visibility::Important;
                    p.summary = Some("Pet status".into());
                    p.description = Some("Only pets in this status.".into());
                    p
                })
                .param({
                    let mut p =
                        support::param("tag", ParamLocation::Query, json!({"type": "string"}));
                    p.visibility = Visibility::Advanced;
                    p
                })
                .param(
                    support::param("source", ParamLocation::Query, json!({"type": "string"}))
                        .default_value(json!("console"))
                        .internal(),
                ),
            support::op(Get, "/pets/{petId}", "GetPet").param(support::param(
                "petId",
                ParamLocation::Path,
                json!({"type": "string"}),
            )),
            support::op(Post, "/pets", "CreatePet")
                .json_body(json!({"$ref": "#/definitions/Pet"}), true),
            {
                // A trigger on the list's route (the console's Triggers page shows it).
                let mut trigger = support::op(Get, "/pets", "OnNewPets");
                trigger
                    .extensions
                    .insert("x-ms-trigger".into(), json!("batch"));
                trigger
            },
        ],
    );
    pets.definitions.insert(
        "Pet".into(),
        json!({"type": "object", "required": ["name"],
               "properties": {"name": {"type": "string"}, "tag": {"type": "string", "default": "new"}}}),
    );
    if let Some(op) = pets.operations.first_mut() {
        op.summary = Some("List pets".into());
        op.description = Some("Lists the pets of the shop, newest first.".into());
    }
    pets
}

fn vault(addr: SocketAddr) -> Connector {
    let mut vault = support::with_security(
        with_parameters(support::connector(
            "vault",
            addr,
            vec![support::op(Method::Get, "/secret", "GetSecret")],
        )),
        vec![(
            "key",
            SecurityScheme::ApiKey {
                name: "X-Key".into(),
                location: ApiKeyLocation::Header,
            },
        )],
    );
    vault.extensions.insert(
        "x-ms-capabilities".into(),
        json!({"testConnection": {"operationId": "GetSecret"}}),
    );
    vault
}

/// `files`: OAuth (authorization code) whose identity provider's login page is the pets
/// backend's `/authorize`.
fn files(idp: SocketAddr) -> Connector {
    let mut files = support::with_security(
        support::connector(
            "files",
            idp,
            vec![support::op(Method::Get, "/files", "ListFiles")],
        ),
        vec![(
            "oauth",
            SecurityScheme::OAuth2 {
                flow: Some("accessCode".into()),
                authorization_url: None,
                token_url: None,
                refresh_url: None,
                scopes: Vec::new(),
            },
        )],
    );
    let token = ConnectionParameter {
        name: "token".into(),
        kind: "oauthSetting".into(),
        display_name: Some("Sign in".into()),
        description: None,
        required: true,
        allowed_values: Vec::new(),
        oauth_settings: Some(json!({
            "identityProvider": "oauth2generic",
            "clientId": "console",
            "scopes": ["files.read"],
            "customParameters": {
                "authorizationUrl": {"value": format!("http://{idp}/authorize")},
                "tokenUrl": {"value": format!("http://{idp}/token")},
                "refreshUrl": {"value": format!("http://{idp}/token")}
            }
        })),
        raw: Value::Null,
    };
    files.properties = Some(ApiProperties {
        connection_parameters: [("token".to_owned(), token)].into_iter().collect(),
        ..ApiProperties::default()
    });
    files
}

/// `home`: `profile` and `news` at once, `detail` after `profile`.
const HOME_VIEW: &str = r#"
summary = "Pet home"
description = "A list, one pet after it, and the list again."
shape = '{list: .steps.profile, pet: .steps.detail, again: .steps.news}'
[step.profile]
operation = "pets.ListPets"
[step.detail]
operation = "pets.GetPet"
args = { petId = "$steps.profile.marker" }
[step.news]
operation = "pets.ListPets"
args = { limit = 1 }
"#;

/// A gateway with both connectors, the view, a SQLite store and the admin token.
struct Setup {
    server: RunningServer,
    /// The login page of the `files` connector's identity provider.
    idp: String,
    _dir: tempfile::TempDir,
    /// The demo's backends: the SOAP payroll is one of the console's connectors.
    _backends: junction_demo::Backends,
}

async fn setup() -> Setup {
    let pets_addr = support::start_backend(pets_backend()).await;
    let vault_addr = support::start_backend(vault_backend()).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = support::master_key_file(dir.path());
    let toml = format!(
        "[store]\npath = \"{}\"\nkey_file = \"{}\"\n\n[admin]\ntoken = \"{ADMIN_TOKEN}\"\n\n\
         [trigger.new-pets]\nconnector = \"pets\"\noperation = \"OnNewPets\"\n",
        dir.path().join("junction.db").display(),
        key_file.display()
    );
    let backends = junction_demo::backends::start().await.unwrap();
    let toml = format!(
        "{toml}\n[connector.payroll]\nbackend = \"http://{}\"\n",
        backends.payroll
    );
    let mut config = support::config(&toml);
    config.views = vec![ViewSource::new("views/home.toml", HOME_VIEW)];
    // A SOAP connector: its form comes from the schema derived from the WSDL.
    let payroll = junction_demo::connectors()
        .unwrap()
        .into_iter()
        .find(|c| c.name == "payroll")
        .unwrap();
    let connectors = [
        pets(pets_addr),
        vault(vault_addr),
        files(pets_addr),
        payroll,
    ];
    let server = match Server::start(&config, &connectors).await {
        Ok(server) => server,
        Err(junction_server::StartError::Compile(diagnostics)) => {
            let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            panic!("gateway did not compile:\n{}", text.join("\n"))
        }
        Err(error) => panic!("{error}"),
    };
    Setup {
        server,
        idp: format!("http://{pets_addr}/authorize"),
        _dir: dir,
        _backends: backends,
    }
}

async fn admin(
    server: &RunningServer,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> support::Reply {
    let mut request = support::client().request(method, format!("{}{path}", server.admin_url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    collect(request.send().await.unwrap()).await
}

async fn get(server: &RunningServer, path: &str) -> support::Reply {
    admin(server, reqwest::Method::GET, path, Some(ADMIN_TOKEN), None).await
}

async fn post(server: &RunningServer, path: &str, body: Value) -> support::Reply {
    admin(
        server,
        reqwest::Method::POST,
        path,
        Some(ADMIN_TOKEN),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn console_admin_endpoints_describe_operations_try_them_and_redact_secrets() {
    let setup = setup().await;
    let server = &setup.server;

    // The token guards the API, not the console's static files.
    admin(
        server,
        reqwest::Method::GET,
        "/api/v1/diagnostics",
        None,
        None,
    )
    .await
    .problem(401, "unauthenticated");
    admin(
        server,
        reqwest::Method::GET,
        "/api/v1/connectors/pets/operations/ListPets",
        Some("wrong"),
        None,
    )
    .await
    .problem(401, "unauthenticated");
    let shell = admin(server, reqwest::Method::GET, "/console/", None, None).await;
    assert_eq!(shell.status, 200);
    assert_eq!(
        shell.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = shell.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert!(String::from_utf8_lossy(&shell.body).contains("Skip to main content"));
    let script = admin(server, reqwest::Method::GET, "/console/app.js", None, None).await;
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let missing = admin(server, reqwest::Method::GET, "/console/nope.js", None, None).await;
    assert_eq!(missing.status, 404);
    let bare = support::client()
        .get(format!("{}/console", server.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 200, "the redirect leads to the console");
    assert_eq!(bare.url().path(), "/console/");

    // Operation detail: visibility order, x-ms-summary, enum, default, body schema inlined.
    let detail = get(server, "/api/v1/connectors/pets/operations/ListPets").await;
    assert_eq!(detail.status, 200, "{:?}", detail.body);
    let detail = detail.json();
    assert_eq!(detail["summary"], "List pets");
    assert_eq!(
        detail["description"],
        "Lists the pets of the shop, newest first."
    );
    let names: Vec<&str> = detail["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["status", "limit", "tag", "source"]);
    let status = &detail["parameters"][0];
    assert_eq!(status["summary"], "Pet status");
    assert_eq!(status["visibility"], "important");
    assert_eq!(status["in"], "query");
    assert_eq!(status["enum"], json!(["available", "sold"]));
    assert_eq!(detail["parameters"][1]["default"], 2);
    assert_eq!(detail["parameters"][1]["type"], "integer");
    assert_eq!(detail["parameters"][2]["visibility"], "advanced");
    assert_eq!(detail["parameters"][3]["visibility"], "internal");
    let create = get(server, "/api/v1/connectors/pets/operations/CreatePet")
        .await
        .json();
    assert_eq!(create["body"]["required"], true);
    assert_eq!(
        create["body"]["schema"]["properties"]["tag"]["default"],
        "new"
    );
    get(server, "/api/v1/connectors/pets/operations/Nope")
        .await
        .problem(404, "not-found");
    get(server, "/api/v1/connectors/nope/operations/ListPets")
        .await
        .problem(404, "not-found");

    // Connection parameters: secrets marked, allowed values listed.
    let parameters = get(server, "/api/v1/connectors/vault/connection-parameters")
        .await
        .json();
    let listed = &parameters["sets"][0]["parameters"];
    assert_eq!(listed[0]["name"], "api_key");
    assert_eq!(listed[0]["secret"], true);
    assert_eq!(listed[1]["allowed_values"], json!(["eu", "us"]));
    let derived = get(server, "/api/v1/connectors/pets/connection-parameters")
        .await
        .json();
    assert_eq!(derived["derived"], true);

    // Try: through the gateway, with the answer, the headers and the timing.
    let tried = post(
        server,
        "/api/v1/connectors/pets/operations/ListPets/try",
        json!({"parameters": {"status": "sold", "limit": 3}}),
    )
    .await;
    assert_eq!(tried.status, 200, "{:?}", tried.body);
    assert_eq!(tried.header("cache-control"), Some("no-store"));
    let tried = tried.json();
    assert_eq!(tried["status"], 200, "{tried}");
    assert_eq!(tried["body"]["marker"], "mock-pets-7731");
    assert_eq!(tried["body"]["pets"].as_array().unwrap().len(), 3);
    assert_eq!(tried["body"]["pets"][0]["status"], "sold");
    assert!(
        tried["headers"]["content-type"]
            .as_str()
            .unwrap()
            .contains("json")
    );
    let timing = &tried["timing"];
    assert!(timing["total_ms"].as_f64().unwrap() > 0.0, "{timing}");
    assert!(timing["upstream_ms"].as_f64().unwrap() > 0.0, "{timing}");
    assert!(
        timing["upstream_ms"].as_f64().unwrap() <= timing["total_ms"].as_f64().unwrap(),
        "{timing}"
    );
    // A path parameter and a JSON body.
    let one = post(
        server,
        "/api/v1/connectors/pets/operations/GetPet/try",
        json!({"parameters": {"petId": "p 1"}}),
    )
    .await
    .json();
    assert_eq!(one["body"]["id"], "p 1", "{one}");
    let created = post(
        server,
        "/api/v1/connectors/pets/operations/CreatePet/try",
        json!({"body": {"name": "Tom"}}),
    )
    .await
    .json();
    assert_eq!(created["status"], 201, "{created}");
    assert_eq!(created["body"]["name"], "Tom");
    // What the gateway refuses is shown as its problem.
    let refused = post(
        server,
        "/api/v1/connectors/pets/operations/ListPets/try",
        json!({"parameters": {"limit": 99}}),
    )
    .await
    .json();
    assert_eq!(refused["status"], 400, "{refused}");
    assert_eq!(
        refused["body"]["type"],
        "https://junction.dev/problems/invalid-request"
    );
    assert!(refused["timing"].get("upstream_ms").is_none(), "{refused}");
    // Problems of the call itself are the admin API's own.
    post(
        server,
        "/api/v1/connectors/pets/operations/ListPets/try",
        json!({"parameter": {}}),
    )
    .await
    .problem(400, "invalid-request");
    post(
        server,
        "/api/v1/connectors/pets/operations/GetPet/try",
        json!({}),
    )
    .await
    .problem(400, "invalid-request");
    post(
        server,
        "/api/v1/connectors/pets/operations/ListPets/try",
        json!({"connection": "nope"}),
    )
    .await
    .problem(404, "not-found");
    // JSON only, so that no page of another site can make the gateway call a backend.
    let plain = collect(
        support::client()
            .post(format!(
                "{}/api/v1/connectors/pets/operations/ListPets/try",
                server.admin_url()
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    plain.problem(415, "unsupported-media-type");

    // A stored connection: the backend echoes its key, which never comes back.
    let without = post(
        server,
        "/api/v1/connectors/vault/operations/GetSecret/try",
        json!({}),
    )
    .await
    .json();
    assert_ne!(without["status"], 200, "{without}");
    let connection = post(
        server,
        "/api/v1/connections",
        json!({"connector": "vault", "name": "main", "values": {"api_key": VAULT_KEY, "region": "eu"}}),
    )
    .await;
    assert_eq!(connection.status, 201, "{:?}", connection.body);
    let id = connection.json()["id"].as_str().unwrap().to_owned();
    let used = post(
        server,
        "/api/v1/connectors/vault/operations/GetSecret/try",
        json!({"connection": id}),
    )
    .await;
    let text = String::from_utf8_lossy(&used.body).into_owned();
    assert!(!text.contains(VAULT_KEY), "the key leaked: {text}");
    let used = used.json();
    assert_eq!(used["status"], 200, "{used}");
    assert_eq!(used["body"]["marker"], "mock-vault-ok");
    assert_eq!(used["body"]["you_sent"], "[redacted]");
    assert_eq!(used["headers"]["x-echo-key"], "[redacted]");
    let by_name = post(
        server,
        "/api/v1/connectors/vault/operations/GetSecret/try",
        json!({"connection": "vault/main"}),
    )
    .await
    .json();
    assert_eq!(by_name["status"], 200, "{by_name}");
    post(
        server,
        "/api/v1/connectors/pets/operations/ListPets/try",
        json!({"connection": id}),
    )
    .await
    .problem(400, "invalid-request");
    let audit = get(server, "/api/v1/audit?action=connection.try")
        .await
        .json();
    assert_eq!(audit["events"].as_array().unwrap().len(), 2, "{audit}");

    // Diagnostics: vault has no configured connection value, which the gateway warned about.
    let diagnostics = get(server, "/api/v1/diagnostics").await.json();
    assert_eq!(diagnostics["errors"], 0);
    assert!(
        diagnostics["warnings"].as_u64().unwrap() >= 1,
        "{diagnostics}"
    );
    let first = &diagnostics["diagnostics"][0];
    assert_eq!(first["severity"], "warning");
    assert!(
        first["code"].is_string() && first["message"].is_string(),
        "{first}"
    );

    // Views: the steps and which waits for which.
    let views = get(server, "/api/v1/views").await.json();
    let home = &views["views"][0];
    assert_eq!(home["steps"].as_array().unwrap().len(), 3);
    assert_eq!(home["dependencies"], json!([["detail", "profile"]]));

    setup.server.shutdown().await;
}

/// `$JUNCTION_CHROMIUM`, else Debian's `/usr/bin/chromium` (scripts/test installs it).
fn chromium() -> PathBuf {
    let path = PathBuf::from(
        std::env::var("JUNCTION_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    );
    assert!(
        path.is_file(),
        "Chromium is missing at {} (scripts/test installs Debian's chromium; set JUNCTION_CHROMIUM)",
        path.display()
    );
    path
}

#[tokio::test]
async fn console_in_a_real_browser() {
    let node = workspace_root().join("tests/node");
    assert!(
        node.join("node_modules/playwright-core").is_dir(),
        "run `npm ci --prefix tests/node` (scripts/test does) to install playwright-core"
    );
    let browser = chromium();
    let setup = setup().await;
    let server = &setup.server;

    // A client of the data plane, for the traffic the charts show.
    let client = post(
        server,
        "/api/v1/clients",
        json!({"name": "charts", "grants": ["pets"]}),
    )
    .await;
    assert_eq!(client.status, 201, "{:?}", client.body);
    let client_key = client.json()["api_key"].as_str().unwrap().to_owned();

    let artifacts = workspace_root().join("tests/artifacts/console");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();
    let run = tokio::process::Command::new("node")
        .arg("console.mjs")
        .current_dir(&node)
        .env("CONSOLE_URL", format!("{}/console/", server.admin_url()))
        .env("DATA_URL", server.data_url())
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("CLIENT_KEY", &client_key)
        .env("VAULT_KEY", VAULT_KEY)
        .env("IDP_URL", &setup.idp)
        .env("ARTIFACTS", &artifacts)
        .env("JUNCTION_CHROMIUM", &browser)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser test finishes within 3 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tests/node/console.mjs failed ({}):\n{stdout}\n{stderr}\nscreenshots: {}",
        output.status,
        artifacts.display()
    );
    assert!(
        stdout.contains("console: all steps passed"),
        "{stdout}\n{stderr}"
    );
    setup.server.shutdown().await;
}

/// A web page of another site cannot change anything through a browser: a change with a
/// foreign `Origin` is refused, and without an admin token a request addressed by a host
/// name (DNS rebinding) is refused too. The command line and curl send no `Origin`.
#[tokio::test]
async fn the_admin_listener_refuses_other_sites_pages() {
    let backend = support::start_echo().await;
    let server = support::gateway(vec![pets(backend)], "").await;
    let addr: SocketAddr = server
        .admin_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let send = |head: String| async move {
        let answer = support::raw_bytes(addr, head.as_bytes()).await;
        let status: u16 = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{answer}"));
        (status, answer)
    };
    let purge = |host: &str, origin: Option<&str>| {
        let origin = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        format!(
            "DELETE /api/v1/cache HTTP/1.1\r\nHost: {host}\r\n{origin}Connection: close\r\n\r\n"
        )
    };
    let here = addr.to_string();

    // Another site's page: refused, whatever the method's body.
    let (status, answer) = send(purge(&here, Some("http://evil.example"))).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("another origin"), "{answer}");
    let (status, _) = send(format!(
        "POST /api/v1/connectors/pets/operations/ListPets/try HTTP/1.1\r\nHost: {here}\r\n\
         Origin: null\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ))
    .await;
    assert_eq!(status, 403);
    // The console's own page, and a client without `Origin`, are let through (no cache is
    // configured, which the purge then says).
    for origin in [Some(format!("http://{here}")), None] {
        let (status, answer) = send(purge(&here, origin.as_deref())).await;
        assert_ne!(status, 403, "{answer}");
    }
    // DNS rebinding: a name pointed at the loopback address.
    let (status, answer) = send(format!(
        "GET /api/v1/connectors HTTP/1.1\r\nHost: evil.example:{}\r\nConnection: close\r\n\r\n",
        addr.port()
    ))
    .await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("DNS rebinding"), "{answer}");
    for host in [format!("localhost:{}", addr.port()), here.clone()] {
        let (status, answer) = send(format!(
            "GET /api/v1/connectors HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ))
        .await;
        assert_eq!(status, 200, "{answer}");
    }
}
