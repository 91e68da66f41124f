//! OAuth logins of the real packages against a real identity provider (node-oidc-provider):
//! every OAuth package of the corpus logs in through `[connector.NAME.oauth]` (templates
//! and certificates included) or has a named load-time diagnostic; BiG EVAL's published
//! URL, query and body templates run a login and a refresh; a certificate app
//! (`aadcertificate`) fetches and renews client-credentials tokens with signed assertions.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use futures_util::StreamExt as _;
use junction_model::oauth::Settings;
use junction_model::{ConnectionParameter, Connector};
use junction_server::Server;
use serde_json::{Map, Value, json};

use crate::harness::corpus_root;
use crate::oauth::{Backend, backend, claims, refreshes, try_drive_login};
use crate::oidc::Oidc;
use crate::store::TestStore;
use crate::support::{self, fetch, get_with_key as call};

/// The secret of every client the provider accepts in this file.
const SECRET: &str = "corpus-secret";
const PFX_PASSWORD: &str = "pfx-pass";

/// A certificate made by OpenSSL as its users make them: an RSA key, a self-signed
/// certificate, both in a password-protected PKCS#12 file. Returns (PEM of the
/// certificate, the .pfx in base64).
fn certificate(dir: &Path) -> (String, String) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs (scripts/test installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-subj",
        "/CN=junction-oauth-test",
    ]);
    run(&[
        "pkcs12",
        "-export",
        "-inkey",
        "key.pem",
        "-in",
        "cert.pem",
        "-out",
        "app.pfx",
        "-passout",
        &format!("pass:{PFX_PASSWORD}"),
    ]);
    let pem = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
    let pfx = std::fs::read(dir.join("app.pfx")).unwrap();
    (pem, base64::engine::general_purpose::STANDARD.encode(pfx))
}

/// The connection parameter sets of `connector` that hold an OAuth parameter: (set name,
/// its parameters).
fn oauth_sets(connector: &Connector) -> Vec<(Option<String>, Vec<ConnectionParameter>)> {
    let is_oauth = |p: &ConnectionParameter| p.kind.eq_ignore_ascii_case("oauthsetting");
    let Some(properties) = &connector.properties else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let plain: Vec<ConnectionParameter> =
        properties.connection_parameters.values().cloned().collect();
    let sets = properties
        .connection_parameter_sets
        .as_ref()
        .is_some_and(|s| !s.values.is_empty());
    // With parameter sets, the plain parameters do not apply (as in Power Platform).
    if !sets && plain.iter().any(is_oauth) {
        out.push((None, plain));
    }
    for set in properties
        .connection_parameter_sets
        .iter()
        .flat_map(|s| s.values.iter())
    {
        let parameters: Vec<ConnectionParameter> = set.parameters.values().cloned().collect();
        if parameters.iter().any(is_oauth) {
            out.push((Some(set.name.clone()), parameters));
        }
    }
    out
}

/// The OAuth parameter of `parameters` and its settings.
fn oauth_of(parameters: &[ConnectionParameter]) -> (&ConnectionParameter, Settings) {
    let oauth = parameters
        .iter()
        .find(|p| p.kind.eq_ignore_ascii_case("oauthsetting"))
        .unwrap();
    let settings = Settings::parse(oauth.oauth_settings.as_ref().unwrap_or(&Value::Null));
    (oauth, settings)
}

/// Values a user fills in for a connection with `parameters`: every declared one (its
/// first allowed value, a number, a boolean, the secret, a URL, or a word), the app's id and
/// secret, values for additional parameters the package leaves empty, and for a
/// certificate app its certificate.
fn connection_values(parameters: &[ConnectionParameter], pfx: &str) -> (Map<String, Value>, bool) {
    let mut values = Map::new();
    let (oauth, settings) = oauth_of(parameters);
    for p in parameters.iter().filter(|p| p.name != oauth.name) {
        let kind = p.kind.to_ascii_lowercase();
        let value = if let Some(first) = p.allowed_values.first() {
            first.clone()
        } else if p.is_secret() || p.name.to_ascii_lowercase().contains("secret") {
            SECRET.to_owned()
        } else {
            let lower = p.name.to_ascii_lowercase();
            match kind.as_str() {
                "int" | "integer" => "1".to_owned(),
                "bool" | "boolean" => "true".to_owned(),
                _ if lower.ends_with("url") || lower.ends_with("uri") => {
                    "https://idp.example".to_owned()
                }
                _ => "test".to_owned(),
            }
        };
        values.insert(p.name.clone(), Value::String(value));
    }
    let token = &oauth.name;
    let mut set = |name: &str, value: &str| {
        let key = format!("{token}:{name}");
        if !parameters.iter().any(|p| p.name.eq_ignore_ascii_case(&key)) {
            values.insert(key, Value::String(value.to_owned()));
        }
    };
    let certificate = settings.uses_certificate();
    if certificate {
        set("certificate", pfx);
        set("certificatePassword", PFX_PASSWORD);
    } else {
        set("clientSecret", SECRET);
    }
    for extra in &settings.additional {
        if settings.custom(&extra.name).is_none() {
            set(&extra.name, if extra.secure { SECRET } else { "test" });
        }
    }
    // A certificate app is registered with the provider under its own id.
    let id = if certificate {
        "certificate-app"
    } else {
        "corpus-app"
    };
    let key = format!("{token}:clientId");
    match values
        .keys()
        .find(|k| k.eq_ignore_ascii_case(&key))
        .cloned()
    {
        Some(declared) if certificate => {
            values.insert(declared, Value::String(id.to_owned()));
        }
        Some(_) => {}
        None => {
            values.insert(key, Value::String(id.to_owned()));
        }
    }
    (values, certificate)
}

/// What became of one package's login.
enum Outcome {
    LoggedIn {
        connection: String,
        certificate: bool,
        templates: bool,
    },
    Failed(String),
}

#[tokio::test]
async fn every_oauth_package_of_the_corpus_logs_in() {
    // Every package of the corpus with an OAuth parameter, and whether `junction validate`
    // warns about its OAuth settings.
    let mut packages: Vec<(Connector, Vec<String>)> = Vec::new();
    for path in junction_import::discover(&corpus_root()) {
        let loaded = junction_import::load(&path);
        let Some(connector) = loaded.connector else {
            continue;
        };
        if oauth_sets(&connector).is_empty()
            || packages.iter().any(|(c, _)| c.name == connector.name)
        {
            continue;
        }
        let warnings = loaded
            .diagnostics
            .iter()
            .filter(|d| d.code == "oauth-setting")
            .map(|d| d.message.clone())
            .collect();
        packages.push((connector, warnings));
    }
    assert!(packages.len() >= 200, "{} OAuth packages", packages.len());

    let port = support::closed_port().port();
    let callback = format!("http://127.0.0.1:{port}/oauth/callback");
    let oidc = Oidc::start_with(60, &callback, &[("OIDC_ANY_CLIENT_SECRET", SECRET)]).await;
    let dir = tempfile::tempdir().unwrap();
    let (pem, pfx) = certificate(dir.path());
    oidc.certificate_client("certificate-app", &pem).await;
    let key_file = support::master_key_file(dir.path());
    let test = TestStore::sqlite();
    let mut text = test.toml(&key_file);
    for (connector, _) in &packages {
        text.push_str(&format!(
            "\n[connector.\"{}\".oauth]\nauthorization_url = \"{issuer}/auth\"\ntoken_url = \"{issuer}/token\"\n",
            connector.name,
            issuer = oidc.issuer
        ));
    }
    let config = support::config_listening(&format!("127.0.0.1:{port}"), &text);
    let connectors: Vec<Connector> = packages.iter().map(|(c, _)| c.clone()).collect();
    let server = Server::start(&config, &connectors).await.unwrap();
    let admin = server.admin_url();

    let mut attempts = Vec::new();
    for (connector, warnings) in &packages {
        for (set, parameters) in oauth_sets(connector) {
            attempts.push(Attempt {
                n: attempts.len(),
                name: connector.name.clone(),
                set,
                warnings: warnings.clone(),
                parameters,
            });
        }
    }
    let attempts_total = attempts.len();
    let walk = Walk {
        admin: admin.clone(),
        callback: callback.clone(),
        issuer: oidc.issuer.clone(),
        pfx,
    };
    let outcomes: Vec<(Attempt, Outcome)> = futures_util::stream::iter(attempts)
        .map(|attempt| {
            let walk = &walk;
            async move {
                let outcome = walk.log_in(&attempt, None).await;
                (attempt, outcome)
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;

    let mut logged_in = 0;
    let mut with_certificate = 0;
    let mut with_templates = 0;
    let mut diagnosed = Vec::new();
    let mut unexplained = Vec::new();
    let mut fixed = 0;
    let mut own_urls = Vec::new();
    for (attempt, outcome) in outcomes {
        let warnings = &attempt.warnings;
        let label = match &attempt.set {
            Some(set) => format!("{} ({set})", attempt.name),
            None => attempt.name.clone(),
        };
        match outcome {
            Outcome::LoggedIn {
                connection,
                certificate,
                templates,
            } => {
                own_urls.push((label.clone(), connection, attempt.warnings.clone()));
                logged_in += 1;
                with_certificate += usize::from(certificate);
                with_templates += usize::from(templates);
            }
            Outcome::Failed(why) if !warnings.is_empty() => {
                diagnosed.push(format!(
                    "{label}: `junction validate` warned: {}\n    and the login failed: {why}",
                    warnings.join("; ")
                ));
                // Doing what the warning says makes the login work.
                if warnings.iter().any(|w| w.contains(":scopes`")) {
                    match walk.log_in(&attempt, Some("api")).await {
                        Outcome::LoggedIn { .. } => fixed += 1,
                        Outcome::Failed(why) => {
                            unexplained.push(format!("{label}, with `token:scopes` given: {why}"));
                        }
                    }
                }
            }
            Outcome::Failed(why) => unexplained.push(format!("{label}: {why}")),
        }
    }
    // The same connections on a gateway without [connector.NAME.oauth]: the package's own
    // URLs, templates filled from the connection, make each login URL.
    server.shutdown().await;
    let plain_config = support::config(&test.toml(&key_file));
    let plain = Server::start(&plain_config, &connectors).await.unwrap();
    let plain_admin = plain.admin_url();
    let mut own = 0;
    for (label, id, warnings) in &own_urls {
        let login = support::post_json(
            format!("{plain_admin}/api/v1/connections/{id}/login"),
            &json!({}),
        )
        .await;
        let url = login.json()["login_url"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let decoded = percent_encoding::percent_decode_str(&url)
            .decode_utf8_lossy()
            .into_owned();
        let parsed = url::Url::parse(&url);
        if login.status == 200
            && parsed.is_ok_and(|u| u.scheme() == "https" && u.has_host())
            && !decoded.contains(['{', '}'])
        {
            own += 1;
        } else if warnings.is_empty() {
            unexplained.push(format!(
                "{label}, with the package's own URLs: {} {} {url}",
                login.status,
                String::from_utf8_lossy(&login.body)
            ));
        }
    }
    plain.shutdown().await;
    println!(
        "with the packages' own URLs (no [connector.NAME.oauth]), {own} of the {} got a https login URL",
        own_urls.len()
    );
    let warned = packages.iter().filter(|(_, w)| !w.is_empty()).count();
    println!(
        "OAuth packages: {} ({attempts_total} OAuth parameter sets); logged in and exchanged: {logged_in} \
         (templates {with_templates}, certificate {with_certificate}); failed with a load-time diagnostic: {} \
         ({fixed} of them logged in once the connection gave what the diagnostic asks for); \
         packages `junction validate` warns about (oauth-setting): {warned}",
        packages.len(),
        diagnosed.len()
    );
    for line in &diagnosed {
        println!("  diagnosed: {line}");
    }
    assert!(
        unexplained.is_empty(),
        "{} logins failed without a load-time diagnostic:\n{}",
        unexplained.len(),
        unexplained.join("\n")
    );
    assert!(
        with_templates >= 25 && with_certificate >= 8,
        "{with_templates} {with_certificate}"
    );
    test.cleanup().await;
}

/// One OAuth parameter set of one package to log in with.
struct Attempt {
    n: usize,
    name: String,
    set: Option<String>,
    /// What `junction validate` warns about its OAuth settings.
    warnings: Vec<String>,
    parameters: Vec<ConnectionParameter>,
}

/// The gateway and provider of the corpus walk.
struct Walk {
    admin: String,
    callback: String,
    issuer: String,
    pfx: String,
}

impl Walk {
    /// Creates a connection for `attempt` (with `token:scopes` when given), gets its login
    /// URL, logs in at the provider and completes the exchange at the gateway's callback.
    async fn log_in(&self, attempt: &Attempt, scopes: Option<&str>) -> Outcome {
        let Walk {
            admin,
            callback,
            issuer,
            pfx,
        } = self;
        let parameters = &attempt.parameters;
        let (mut values, certificate) = connection_values(parameters, pfx);
        if let Some(scopes) = scopes {
            let (token, _) = oauth_of(parameters);
            values.insert(format!("{}:scopes", token.name), json!(scopes));
        }
        let mut body = json!({"connector": attempt.name,
            "name": format!("walk-{}-{}", attempt.n, scopes.is_some()), "values": values});
        if let Some(set) = &attempt.set {
            body["parameter_set"] = json!(set);
        }
        let created = support::post_json(format!("{admin}/api/v1/connections"), &body).await;
        if created.status != 201 {
            return Outcome::Failed(format!(
                "creating the connection: {}",
                String::from_utf8_lossy(&created.body)
            ));
        }
        let id = created.json()["id"].as_str().unwrap().to_owned();
        let login =
            support::post_json(format!("{admin}/api/v1/connections/{id}/login"), &json!({})).await;
        if login.status != 200 {
            return Outcome::Failed(format!(
                "login URL: {}",
                String::from_utf8_lossy(&login.body)
            ));
        }
        let url = login.json()["login_url"].as_str().unwrap().to_owned();
        let decoded = percent_encoding::percent_decode_str(&url)
            .decode_utf8_lossy()
            .into_owned();
        if !url.starts_with(&format!("{issuer}/auth?")) {
            return Outcome::Failed(format!("the login URL is not the provider's: {url}"));
        }
        if let Some(open) = decoded.find('{')
            && decoded[open..].contains('}')
        {
            return Outcome::Failed(format!("a placeholder is left in the login URL: {decoded}"));
        }
        let back = match try_drive_login(&url, callback).await {
            Ok(back) => back,
            Err(why) => {
                return Outcome::Failed(format!("at the provider: {why} (login URL {url})"));
            }
        };
        let done = fetch(back).await;
        if done.status != 200 {
            return Outcome::Failed(format!(
                "the exchange: {} {}",
                done.status,
                String::from_utf8_lossy(&done.body)
            ));
        }
        let shown = fetch(format!("{admin}/api/v1/connections/{id}")).await;
        if shown.json()["oauth"]["authorized"] != true {
            return Outcome::Failed(format!(
                "not authorized after the exchange: {}",
                shown.json()
            ));
        }
        let (_, settings) = oauth_of(parameters);
        Outcome::LoggedIn {
            connection: id,
            certificate,
            templates: settings.custom.iter().any(|(name, value)| {
                name.to_ascii_lowercase().contains("template") && value.is_some()
            }),
        }
    }
}

/// A definition with one operation, `GET /alerts`, on `backend`.
fn one_operation(backend: std::net::SocketAddr) -> String {
    json!({
        "swagger": "2.0",
        "info": {"title": "BiG EVAL", "version": "1.0"},
        "host": backend.to_string(),
        "schemes": ["http"],
        "securityDefinitions": {"oauth": {"type": "oauth2", "flow": "accessCode",
            "authorizationUrl": "https://bigeval.example/connect/authorize",
            "tokenUrl": "https://bigeval.example/connect/token", "scopes": {}}},
        "paths": {"/alerts": {"get": {"operationId": "ListAlerts",
            "responses": {"200": {"description": "ok"}}}}}
    })
    .to_string()
}

#[tokio::test]
async fn published_templates_log_in_and_refresh() {
    // BiG EVAL's OAuth settings as published: URL templates on the connection's
    // {BigEvalUrl}, a query string template, token and refresh body templates.
    let properties = std::fs::read_to_string(
        corpus_root().join("certified-connectors/BiG EVAL/apiProperties.json"),
    )
    .unwrap();
    let port = support::closed_port().port();
    let callback = format!("http://127.0.0.1:{port}/oauth/callback");
    let oidc = Oidc::start_with(
        4,
        &callback,
        &[
            ("OIDC_ANY_CLIENT_SECRET", SECRET),
            ("OIDC_IDENTITYSERVER_ROUTES", "1"),
        ],
    )
    .await;
    let state = Backend::default();
    let backend_addr = support::start_backend(backend(state.clone())).await;
    let loaded = junction_import::load_from_str(
        "bigeval",
        "apiDefinition.swagger.json",
        &one_operation(backend_addr),
        Some(("apiProperties.json", &properties)),
    );
    let connector = loaded
        .connector
        .unwrap_or_else(|| panic!("{:#?}", loaded.diagnostics));
    let name = connector.name.clone();
    let dir = tempfile::tempdir().unwrap();
    let key_file = support::master_key_file(dir.path());
    let test = TestStore::sqlite();
    let config = support::config_listening(&format!("127.0.0.1:{port}"), &test.toml(&key_file));
    let server = Server::start(&config, &[connector]).await.unwrap();
    let admin = server.admin_url();
    let client = support::post_json(
        format!("{admin}/api/v1/clients"),
        &json!({"name": "ann", "grants": [name]}),
    )
    .await;
    let key = client.json()["api_key"].as_str().unwrap().to_owned();
    let id = support::create(
        format!("{admin}/api/v1/connections"),
        &json!({"connector": name, "name": "ann", "owner": "ann", "values": {
            "token:BigEvalUrl": oidc.issuer, "token:BigEvalClientId": "bigeval-app",
            "token:BigEvalClientSecret": SECRET}}),
    )
    .await;
    let login =
        support::post_json(format!("{admin}/api/v1/connections/{id}/login"), &json!({})).await;
    let url = login.json()["login_url"].as_str().unwrap().to_owned();
    let expected = format!(
        "{}/connect/authorize?response_type=code&client_id=bigeval-app&redirect_uri={}&scope=bigeval-api-v1&state=",
        oidc.issuer,
        junction_model::oauth::encode_component(&callback)
    );
    assert!(url.starts_with(&expected), "{url}\n{expected}");
    assert!(
        !url.contains("code_challenge"),
        "the template carries no PKCE: {url}"
    );
    let back = try_drive_login(&url, &callback).await.unwrap();
    let done = fetch(back).await;
    assert_eq!(done.status, 200, "{}", String::from_utf8_lossy(&done.body));

    let alerts = format!("{}/connectors/{name}/alerts", server.data_url());
    assert_eq!(call(&alerts, &key).await.status, 200);
    let first = state.seen.lock().unwrap().last().unwrap().clone();
    // The token lives 4 s: refreshed (refreshBodyTemplate) in its last quarter.
    tokio::time::sleep(Duration::from_millis(3_300)).await;
    assert_eq!(call(&alerts, &key).await.status, 200);
    let second = state.seen.lock().unwrap().last().unwrap().clone();
    assert_ne!(first, second);
    assert_eq!(refreshes(&admin, &id).await, 1);
    server.shutdown().await;
    test.cleanup().await;
}

#[tokio::test]
async fn a_certificate_app_gets_and_renews_tokens() {
    // AzureAdIp as published: `aadcertificate`, the Microsoft identity platform's URLs,
    // pinned to the local provider by [connector.NAME.oauth].
    let dir = tempfile::tempdir().unwrap();
    let (pem, pfx) = certificate(dir.path());
    let port = support::closed_port().port();
    let callback = format!("http://127.0.0.1:{port}/oauth/callback");
    let oidc = Oidc::start_for(4, &callback).await;
    oidc.certificate_client("certificate-app", &pem).await;
    let state = Backend::default();
    let backend_addr = support::start_backend(backend(state.clone())).await;
    let loaded = junction_import::load(&corpus_root().join("custom-connectors/AzureAdIp"));
    let connector = loaded
        .connector
        .unwrap_or_else(|| panic!("{:#?}", loaded.diagnostics));
    let name = connector.name.clone();
    let key_file = support::master_key_file(dir.path());
    let test = TestStore::sqlite();
    let config = support::config_listening(
        &format!("127.0.0.1:{port}"),
        &format!(
            "{}\n[connector.\"{name}\"]\nbackend = \"http://{backend_addr}\"\n\
             [connector.\"{name}\".oauth]\nauthorization_url = \"{issuer}/auth\"\n\
             token_url = \"{issuer}/token\"\n",
            test.toml(&key_file),
            issuer = oidc.issuer
        ),
    );
    let server = Server::start(&config, &[connector]).await.unwrap();
    let admin = server.admin_url();
    let url = format!("{}/connectors/{name}/beta/riskyUsers/u1", server.data_url());
    let certificate = json!({"token:clientId": "certificate-app", "token:certificate": pfx,
                             "token:certificatePassword": PFX_PASSWORD, "token:scopes": "api"});

    // Client credentials: the token is fetched with a signed assertion, then renewed.
    let mut values = certificate.clone();
    values["token:grantType"] = json!("client_credentials");
    let svc = support::create(
        format!("{admin}/api/v1/connections"),
        &json!({"connector": name, "name": "svc", "values": values}),
    )
    .await;
    let shown = fetch(format!("{admin}/api/v1/connections/{svc}"))
        .await
        .text();
    assert!(
        !shown.contains(&pfx[..40]) && !shown.contains(PFX_PASSWORD),
        "{shown}"
    );
    let client = support::post_json(
        format!("{admin}/api/v1/clients"),
        &json!({"name": "svc", "grants": [format!("{name}@{svc}")]}),
    )
    .await;
    let key = client.json()["api_key"].as_str().unwrap().to_owned();
    let reply = call(&url, &key).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let first = state.seen.lock().unwrap().last().unwrap().clone();
    let claims = claims(&first);
    assert_eq!(claims["sub"], "certificate-app", "{claims}");
    tokio::time::sleep(Duration::from_millis(3_300)).await;
    assert_eq!(call(&url, &key).await.status, 200);
    let second = state.seen.lock().unwrap().last().unwrap().clone();
    assert_ne!(first, second);
    assert_eq!(refreshes(&admin, &svc).await, 1);

    // A login (authorization code): the code and the refresh token are redeemed with
    // signed assertions too.
    let client = support::post_json(
        format!("{admin}/api/v1/clients"),
        &json!({"name": "ann", "grants": [name]}),
    )
    .await;
    let ann = client.json()["api_key"].as_str().unwrap().to_owned();
    let own = support::create(
        format!("{admin}/api/v1/connections"),
        &json!({"connector": name, "name": "ann", "owner": "ann", "values": certificate}),
    )
    .await;
    let login = support::post_json(
        format!("{admin}/api/v1/connections/{own}/login"),
        &json!({}),
    )
    .await;
    let login_url = login.json()["login_url"].as_str().unwrap().to_owned();
    let back = try_drive_login(&login_url, &callback).await.unwrap();
    let done = fetch(back).await;
    assert_eq!(done.status, 200, "{}", done.text());
    assert_eq!(call(&url, &ann).await.status, 200);
    let third = state.seen.lock().unwrap().last().unwrap().clone();
    tokio::time::sleep(Duration::from_millis(3_300)).await;
    assert_eq!(call(&url, &ann).await.status, 200);
    let fourth = state.seen.lock().unwrap().last().unwrap().clone();
    assert_ne!(third, fourth);
    assert_eq!(refreshes(&admin, &own).await, 1);
    server.shutdown().await;
    test.cleanup().await;
}
