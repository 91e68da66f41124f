//! OAuth2 to backends against a real OpenID Connect provider (node-oidc-provider): the
//! authorization code + PKCE login driven over HTTP through the gateway's login URL and
//! callback, refresh before expiry and after a backend's 401 (one refresh at a time),
//! client credentials, and tokens that never show.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use indexmap::IndexMap;
use junction_model::{ApiProperties, ConnectionParameter, Method, SecurityScheme};
use junction_runtime::Config;
use junction_server::Server;
use serde_json::{Value, json};

use crate::oidc::Oidc;
use crate::store::TestStore;
use crate::support::{self, fetch, get_with_key as call};

/// Tokens the backend has seen, and those it refuses.
#[derive(Clone, Default)]
pub struct Backend {
    pub seen: Arc<Mutex<Vec<String>>>,
    pub revoked: Arc<Mutex<HashSet<String>>>,
}

/// A backend that answers like the echo backend when a bearer token it has not revoked
/// comes, and 401 otherwise.
pub fn backend(state: Backend) -> Router {
    Router::new().fallback(move |request: Request| {
        let state = state.clone();
        async move {
            let token = request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default()
                .to_owned();
            if token.is_empty() || state.revoked.lock().unwrap().contains(&token) {
                return (http::StatusCode::UNAUTHORIZED, "token refused").into_response();
            }
            state.seen.lock().unwrap().push(token);
            let response: Response = support::echo_handler(request).await;
            response
        }
    })
}

fn files_connector(addr: std::net::SocketAddr, issuer: &str) -> junction_model::Connector {
    let mut connector = support::with_security(
        support::connector(
            "files",
            addr,
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
    let mut parameters = IndexMap::new();
    parameters.insert(
        "token".to_owned(),
        ConnectionParameter::oauth_setting(
            "token",
            json!({
                "identityProvider": "oauth2generic",
                "clientId": "web",
                "scopes": ["openid offline_access api"],
                "redirectMode": "Global",
                "customParameters": {
                    "authorizationUrl": {"value": format!("{issuer}/auth")},
                    "tokenUrl": {"value": format!("{issuer}/token")},
                    "refreshUrl": {"value": format!("{issuer}/token")}
                }
            }),
        ),
    );
    connector.properties = Some(ApiProperties {
        connection_parameters: parameters,
        ..ApiProperties::default()
    });
    connector
}

/// Follows the identity provider's redirects (carrying its cookies) until one leads back
/// to `callback`; returns that URL.
async fn drive_login(login_url: &str, callback: &str) -> String {
    try_drive_login(login_url, callback)
        .await
        .unwrap_or_else(|why| panic!("{why}"))
}

/// The same, or what stopped it: a page without a redirect, or too many redirects.
pub async fn try_drive_login(login_url: &str, callback: &str) -> Result<String, String> {
    junction_runtime::install_crypto_provider();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut cookies: IndexMap<String, String> = IndexMap::new();
    let mut url = url::Url::parse(login_url).map_err(|e| format!("{login_url}: {e}"))?;
    for _ in 0..10 {
        let cookie = cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let reply = browser
            .get(url.clone())
            .header("cookie", cookie)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        for value in reply.headers().get_all("set-cookie") {
            let pair = value.to_str().unwrap().split(';').next().unwrap();
            if let Some((k, v)) = pair.split_once('=') {
                cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let status = reply.status();
        let Some(location) = reply
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned())
        else {
            let page = reply.text().await.unwrap_or_default();
            return Err(format!("{status} without a redirect: {page}"));
        };
        let next = url
            .join(&location)
            .map_err(|e| format!("{location}: {e}"))?;
        if next.as_str().starts_with(callback) {
            return Ok(next.to_string());
        }
        url = next;
    }
    Err(format!("the login never came back to {callback}"))
}

/// The claims of JWT `token` (not checked: the backend's view).
pub fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// How many times connection `connection` was refreshed (audit `connection.refresh`).
pub async fn refreshes(admin: &str, connection: &str) -> usize {
    let audit = fetch(format!(
        "{admin}/api/v1/audit?action=connection.refresh&target={connection}&limit=1000"
    ))
    .await;
    audit.json()["events"].as_array().unwrap().len()
}

#[tokio::test]
async fn oauth_against_a_real_provider_sqlite() {
    login_refresh_and_client_credentials(TestStore::sqlite()).await;
}

#[tokio::test]
async fn oauth_against_a_real_provider_postgres() {
    login_refresh_and_client_credentials(TestStore::postgres()).await;
}

async fn login_refresh_and_client_credentials(test: TestStore) {
    // The gateway's data plane port is chosen first: the provider must know the callback.
    let port = support::closed_port().port();
    let callback = format!("http://127.0.0.1:{port}/oauth/callback");
    let oidc = Oidc::start_for(4, &callback).await;
    let state = Backend::default();
    let backend_addr = support::start_backend(backend(state.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = support::master_key_file(dir.path());
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:0\"\n{}",
        test.toml(&key_file)
    );
    let config = Config::parse(
        &text,
        std::path::Path::new("junction.toml"),
        std::path::Path::new("."),
        &|name| std::env::var(name).ok(),
    )
    .unwrap();
    let server = Server::start(&config, &[files_connector(backend_addr, &oidc.issuer)])
        .await
        .unwrap();
    let admin = server.admin_url();
    let post = |path: &str, body: Value| {
        let url = format!("{admin}/api/v1/{path}");
        async move { support::post_json(url, &body).await }
    };
    let ann = post("clients", json!({"name": "ann", "grants": ["files"]})).await;
    let ann_key = ann.json()["api_key"].as_str().unwrap().to_owned();
    let created = post(
        "connections",
        json!({"connector": "files", "name": "ann", "owner": "ann",
               "values": {"token:clientSecret": "web-secret"}}),
    )
    .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let files = format!("{}/connectors/files/files", server.data_url());

    // Not logged in yet.
    let body = call(&files, &ann_key)
        .await
        .problem(401, "connection-unauthenticated");
    assert!(
        body["detail"].as_str().unwrap().contains("log in"),
        "{body}"
    );

    // The login: the gateway's URL, the provider's pages, the gateway's callback.
    let login = post(&format!("connections/{id}/login"), json!({})).await;
    assert_eq!(
        login.status,
        200,
        "{}",
        String::from_utf8_lossy(&login.body)
    );
    let login_url = login.json()["login_url"].as_str().unwrap().to_owned();
    assert!(
        login_url.contains("code_challenge_method=S256"),
        "{login_url}"
    );
    let back = drive_login(&login_url, &callback).await;
    let done = fetch(back.clone()).await;
    assert_eq!(done.status, 200, "{}", String::from_utf8_lossy(&done.body));
    // A login link works once.
    fetch(back).await.problem(404, "not-found");

    let first = call(&files, &ann_key).await;
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let token1 = state.seen.lock().unwrap().last().unwrap().clone();
    assert_eq!(token1.split('.').count(), 3, "a JWT access token");
    let shown = fetch(format!("{admin}/api/v1/connections/{id}")).await;
    assert_eq!(shown.json()["oauth"]["authorized"], true);
    assert!(!String::from_utf8_lossy(&shown.body).contains(&token1));

    // Refresh before expiry: the token lives 4 s and is refreshed in its last quarter.
    tokio::time::sleep(Duration::from_millis(3_300)).await;
    assert_eq!(call(&files, &ann_key).await.status, 200);
    let token2 = state.seen.lock().unwrap().last().unwrap().clone();
    assert_ne!(token1, token2);
    assert_eq!(refreshes(&admin, &id).await, 1);

    // Refresh after the backend refuses the token, once, however many calls wait for it.
    state.revoked.lock().unwrap().insert(token2.clone());
    assert_eq!(call(&files, &ann_key).await.status, 401);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let calls = (0..5).map(|_| call(&files, &ann_key));
    for reply in futures_util::future::join_all(calls).await {
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    let token3 = state.seen.lock().unwrap().last().unwrap().clone();
    assert_ne!(token3, token2);
    assert_eq!(refreshes(&admin, &id).await, 2);

    // Client credentials: a shared connection of the provider's `app` client.
    let svc = post(
        "connections",
        json!({"connector": "files", "name": "svc",
               "values": {"token:clientId": "app", "token:clientSecret": "app-secret",
                          "token:grantType": "client_credentials", "token:scopes": "api"}}),
    )
    .await;
    assert_eq!(svc.status, 201, "{}", String::from_utf8_lossy(&svc.body));
    let bob = post(
        "clients",
        json!({"name": "bob", "grants": ["files@files/svc"]}),
    )
    .await;
    let bob_key = bob.json()["api_key"].as_str().unwrap().to_owned();
    assert_eq!(call(&files, &bob_key).await.status, 200);
    let service_token = state.seen.lock().unwrap().last().unwrap().clone();
    assert!(![&token1, &token2, &token3].contains(&&service_token));
    let claims = claims(&service_token);
    assert_eq!(claims["sub"], "app");
    assert_eq!(claims["aud"], "urn:junction");
    // Ann still uses her own connection.
    assert_eq!(call(&files, &ann_key).await.status, 200);
    assert_eq!(state.seen.lock().unwrap().last().unwrap(), &token3);

    // No token or client secret in any admin answer.
    let everything = [
        fetch(format!("{admin}/api/v1/connections")).await,
        fetch(format!("{admin}/api/v1/audit?limit=1000")).await,
    ];
    for reply in everything {
        let text = String::from_utf8_lossy(&reply.body);
        for secret in [&token1, &token2, &token3, &service_token] {
            assert!(!text.contains(secret.as_str()));
        }
        assert!(
            !text.contains("web-secret") && !text.contains("app-secret"),
            "{text}"
        );
    }
    server.shutdown().await;
    test.cleanup().await;
}

/// `[connector.files.connection]` with the provider's `app` client credentials.
const CONFIGURED_CLIENT_CREDENTIALS: &str = "[connector.files.connection]\n\
    \"token:clientId\" = \"app\"\n\"token:clientSecret\" = \"app-secret\"\n\
    \"token:grantType\" = \"client_credentials\"\n\"token:scopes\" = \"api\"\n";

#[tokio::test]
async fn client_credentials_without_a_store() {
    // No [store]: the configured connection's client credentials fetch the tokens, which
    // stay in memory.
    let oidc = Oidc::start(4).await;
    let state = Backend::default();
    let backend_addr = support::start_backend(backend(state.clone())).await;
    // Without any value, the load says what would work.
    let bare = Server::start(
        &support::config(""),
        &[files_connector(backend_addr, &oidc.issuer)],
    )
    .await
    .unwrap();
    let said: Vec<&str> = bare
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert!(
        said.iter()
            .any(|m| m.contains("an OAuth login needs `[store]`")
                && m.contains("`token:grantType = \"client_credentials\"`")),
        "{said:?}"
    );
    bare.shutdown().await;
    let config = support::config(CONFIGURED_CLIENT_CREDENTIALS);
    let server = Server::start(&config, &[files_connector(backend_addr, &oidc.issuer)])
        .await
        .unwrap();
    // Nothing is missing: the token is fetched per request.
    assert!(
        server
            .diagnostics
            .iter()
            .all(|d| d.code != "missing-connection-value"),
        "{:?}",
        server.diagnostics
    );
    let files = format!("{}/connectors/files/files", server.data_url());
    let get = || async { fetch(files.clone()).await };
    let first = get().await;
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let token1 = state.seen.lock().unwrap().last().unwrap().clone();
    assert_eq!(token1.split('.').count(), 3, "a JWT of the provider");
    // Concurrent calls share the token.
    for reply in futures_util::future::join_all((0..4).map(|_| get())).await {
        assert_eq!(reply.status, 200);
    }
    assert!(state.seen.lock().unwrap().iter().all(|t| t == &token1));
    // Renewed before it expires.
    tokio::time::sleep(Duration::from_millis(3_300)).await;
    assert_eq!(get().await.status, 200);
    let token2 = state.seen.lock().unwrap().last().unwrap().clone();
    assert_ne!(token1, token2);
    // A token the backend refuses is dropped: the next call fetches another.
    state.revoked.lock().unwrap().insert(token2.clone());
    assert_eq!(get().await.status, 401);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get().await.status, 200);
    let token3 = state.seen.lock().unwrap().last().unwrap().clone();
    assert_ne!(token3, token2);
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_without_a_connection_of_its_own_uses_the_configured_client_credentials() {
    // With [store], a client granted the connector but holding no connection of its own
    // falls back to the configured connection: its token is fetched too.
    let oidc = Oidc::start(60).await;
    let state = Backend::default();
    let backend_addr = support::start_backend(backend(state.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = support::master_key_file(dir.path());
    let test = TestStore::sqlite();
    let config = support::config(&format!(
        "{}\n{CONFIGURED_CLIENT_CREDENTIALS}",
        test.toml(&key_file)
    ));
    let server = Server::start(&config, &[files_connector(backend_addr, &oidc.issuer)])
        .await
        .unwrap();
    let client = support::post_json(
        format!("{}/api/v1/clients", server.admin_url()),
        &json!({"name": "kiosk", "grants": ["files"]}),
    )
    .await;
    let key = client.json()["api_key"].as_str().unwrap().to_owned();
    let files = format!("{}/connectors/files/files", server.data_url());
    let reply = call(&files, &key).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let token = state.seen.lock().unwrap().last().unwrap().clone();
    assert_eq!(claims(&token)["sub"], "app");
    server.shutdown().await;
    test.cleanup().await;
}
