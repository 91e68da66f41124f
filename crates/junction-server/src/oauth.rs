//! OAuth2 to backends: connections whose connector declares an `oauthSetting` parameter.
//!
//! The OAuth app comes from the parameter's `oAuthSettings` in `apiProperties.json`:
//! `identityProvider` `oauth2` / `oauth2generic` (and any other that gives its URLs) use
//! `customParameters.authorizationUrl`, `tokenUrl` and `refreshUrl`; `aad` is mapped to the
//! Microsoft identity platform (`{loginUri}/{tenantId}/oauth2/v2.0/authorize` and
//! `/token`, `loginUri` default `https://login.microsoftonline.com`, `tenantId` default
//! `common`, scope `{resourceUri}/.default` when no scopes are given). A connection
//! supplies its app's secret and may override the rest, as values of the parameter
//! `TOKEN`: `TOKEN:clientSecret`, `TOKEN:clientId`, `TOKEN:scopes` (space separated) and
//! `TOKEN:grantType` — `authorization_code` (default) or `client_credentials`.
//!
//! - Authorization code + PKCE (S256): the admin API (or `junction connections login`)
//!   hands out a login URL carrying a single-use `state`; the identity provider sends the
//!   browser back to the data plane's `/oauth/callback`, which exchanges the code (with
//!   the verifier) for tokens.
//! - Client credentials: the token is fetched on first use.
//! - Refresh: a token that expires within a minute (a quarter of its lifetime for short
//!   ones) is refreshed before the call; a
//!   backend's 401 marks the token expired, so the next call refreshes it. At most one
//!   refresh per connection runs at a time, across replicas: a lease row in the store
//!   (`take_refresh_lease`); the others wait for its result.
//!
//! Tokens are sealed like every secret; token endpoint answers are never logged.

use std::time::Duration;

use base64::Engine as _;
use indexmap::IndexMap;
use junction_model::Connector;
use junction_runtime::{Error, ErrorKind};
use junction_store::{ConnectionRow, ExposeSecret, SecretString, now_ms, values};
use serde_json::{Value, json};
use sha2::Digest;

use crate::access::{Access, store_error};

/// Refresh tokens that expire within this margin (or a quarter of their lifetime, for
/// short-lived ones).
const REFRESH_MARGIN_MS: i64 = 60_000;
/// How long a refresh lease lasts at most.
const LEASE_MS: i64 = 30_000;
/// The Microsoft identity platform's default login host for `aad`.
const AAD_LOGIN: &str = "https://login.microsoftonline.com";

/// The OAuth flow a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    AuthorizationCode,
    ClientCredentials,
}

/// A connection's OAuth app.
#[derive(Debug)]
pub struct App {
    pub authorize_url: Option<String>,
    pub token_url: String,
    pub refresh_url: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub scopes: Vec<String>,
    pub flow: Flow,
}

fn custom<'a>(settings: &'a Value, name: &str) -> Option<&'a str> {
    settings
        .get("customParameters")
        .and_then(|c| c.get(name))
        .and_then(|p| p.get("value").or(Some(p)))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The OAuth app of `row`, or `None` when its connector (parameter set) has no
/// `oauthSetting` parameter.
pub fn app(
    connector: &Connector,
    row: &ConnectionRow,
    values: &IndexMap<String, SecretString>,
) -> Result<Option<App>, Error> {
    let Ok((_, parameters)) = values::parameters(connector, row.parameter_set.as_deref()) else {
        return Ok(None);
    };
    let Some(parameter) = parameters
        .into_iter()
        .find(|p| p.kind.eq_ignore_ascii_case("oauthsetting"))
    else {
        return Ok(None);
    };
    let settings = parameter.oauth_settings.clone().unwrap_or(Value::Null);
    let value = |setting: &str| {
        values
            .get(&format!("{}:{setting}", parameter.name))
            .map(|v| v.expose_secret().to_owned())
    };
    let misconfigured = |why: String| {
        Error::new(
            ErrorKind::Misconfigured,
            format!(
                "connector '{}', OAuth parameter '{}': {why}",
                connector.name, parameter.name
            ),
        )
    };
    let provider = settings
        .get("identityProvider")
        .and_then(Value::as_str)
        .unwrap_or("oauth2generic")
        .to_ascii_lowercase();
    let mut scopes: Vec<String> = match value("scopes") {
        Some(text) => text.split_whitespace().map(str::to_owned).collect(),
        None => settings
            .get("scopes")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .flat_map(str::split_whitespace)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    };
    let (authorize_url, token_url, refresh_url) = if provider == "aad" {
        let login = custom(&settings, "loginUri")
            .map(|l| l.replace("login.windows.net", "login.microsoftonline.com"))
            .unwrap_or_else(|| AAD_LOGIN.to_owned());
        let login = login.trim_end_matches('/');
        let tenant = custom(&settings, "tenantId").unwrap_or("common");
        if scopes.is_empty()
            && let Some(resource) = custom(&settings, "resourceUri")
        {
            scopes.push(format!("{}/.default", resource.trim_end_matches('/')));
        }
        let token = format!("{login}/{tenant}/oauth2/v2.0/token");
        (
            Some(format!("{login}/{tenant}/oauth2/v2.0/authorize")),
            token.clone(),
            token,
        )
    } else {
        let Some(token) = custom(&settings, "tokenUrl") else {
            return Err(misconfigured(format!(
                "identity provider '{provider}' gives no tokenUrl (Junction supports oauth2, oauth2generic, aad, and others that give their URLs)"
            )));
        };
        (
            custom(&settings, "authorizationUrl").map(str::to_owned),
            token.to_owned(),
            custom(&settings, "refreshUrl").unwrap_or(token).to_owned(),
        )
    };
    let flow = match value("grantType").as_deref() {
        Some("client_credentials") => Flow::ClientCredentials,
        _ => Flow::AuthorizationCode,
    };
    if flow == Flow::AuthorizationCode
        && provider == "aad"
        && !scopes.iter().any(|s| s == "offline_access")
    {
        scopes.push("offline_access".to_owned());
    }
    let Some(client_id) = value("clientId").or_else(|| {
        settings
            .get("clientId")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }) else {
        return Err(misconfigured(format!(
            "no client id; set `{}:clientId`",
            parameter.name
        )));
    };
    Ok(Some(App {
        authorize_url,
        token_url,
        refresh_url,
        client_id,
        client_secret: values
            .get(&format!("{}:clientSecret", parameter.name))
            .cloned(),
        scopes,
        flow,
    }))
}

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A login URL for connection `reference` (authorization code + PKCE).
pub async fn login_url(access: &Access, reference: &str, actor: &str) -> Result<Value, Error> {
    let row = access
        .vault
        .find_connection(reference)
        .await
        .map_err(store_error)?;
    let app = app_of(access, &row)?;
    let Some(authorize) = app
        .authorize_url
        .as_deref()
        .filter(|_| app.flow == Flow::AuthorizationCode)
    else {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!(
                "connection '{}' does not log in with the authorization code flow",
                row.id
            ),
        ));
    };
    let (state, verifier) = access
        .vault
        .begin_login(&row.id)
        .await
        .map_err(store_error)?;
    let challenge = base64url(&sha2::Sha256::digest(verifier.expose_secret().as_bytes()));
    let redirect = access.callback_url();
    let mut url = url::Url::parse(authorize).map_err(|e| {
        Error::new(
            ErrorKind::Misconfigured,
            format!("authorizationUrl `{authorize}` is not a URL: {e}"),
        )
    })?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &app.client_id)
        .append_pair("redirect_uri", &redirect)
        .append_pair("scope", &app.scopes.join(" "))
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    access
        .vault
        .audit(actor, "connection.login", Some(&row.id), "ok", json!({}))
        .await;
    Ok(
        json!({"connection": row.id, "login_url": url.as_str(), "redirect_uri": redirect,
              "expires_in": junction_store::OAUTH_STATE_TTL_MS / 1000}),
    )
}

fn app_of(access: &Access, row: &ConnectionRow) -> Result<App, Error> {
    let connector = access.connector(&row.connector).ok_or_else(|| {
        Error::new(
            ErrorKind::Misconfigured,
            format!("connector '{}' is not loaded", row.connector),
        )
    })?;
    let values = access.vault.values(row).map_err(store_error)?;
    app(connector, row, &values)?.ok_or_else(|| {
        Error::new(
            ErrorKind::Conflict,
            format!("connection '{}' does not use OAuth", row.id),
        )
    })
}

/// The callback: exchanges the code of login `state` for tokens.
pub async fn callback(access: &Access, query: &str) -> Result<String, Error> {
    let pairs: IndexMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if let Some(error) = pairs.get("error") {
        let state = pairs.get("state").cloned().unwrap_or_default();
        let _ = access.vault.finish_login(&state).await;
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!("the identity provider refused the login: {error}"),
        ));
    }
    let (Some(code), Some(state)) = (pairs.get("code"), pairs.get("state")) else {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            "the callback needs `code` and `state`",
        ));
    };
    let (row, verifier) = access
        .vault
        .finish_login(state)
        .await
        .map_err(store_error)?;
    let app = app_of(access, &row)?;
    let redirect = access.callback_url();
    let form = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code.clone()),
        ("redirect_uri", redirect),
        ("code_verifier", verifier.expose_secret().to_owned()),
    ];
    let tokens = token_request(access, &app, &app.token_url, form).await?;
    store(access, &row, tokens, None).await?;
    access
        .vault
        .audit(
            "oauth",
            "connection.authorize",
            Some(&row.id),
            "ok",
            json!({}),
        )
        .await;
    Ok(format!(
        "<!doctype html><title>Connected</title><p>Connection <code>{}</code> is authorized. You can close this page.</p>",
        row.id
    ))
}

/// Tokens from a token endpoint, and when the access token expires.
struct Tokens {
    access: SecretString,
    refresh: Option<SecretString>,
    expires_at: Option<i64>,
}

async fn token_request(
    access: &Access,
    app: &App,
    url: &str,
    mut form: Vec<(&'static str, String)>,
) -> Result<Tokens, Error> {
    form.push(("client_id", app.client_id.clone()));
    if let Some(secret) = &app.client_secret {
        form.push(("client_secret", secret.expose_secret().to_owned()));
    }
    let failed = |why: String| Error::new(ErrorKind::UpstreamInvalid, why);
    let response = access
        .http()
        .post(url)
        .header(http::header::ACCEPT, "application/json")
        .form(&form)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .map_err(|e| failed("the token endpoint cannot be reached".into()).with_cause(e))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|_| failed(format!("the token endpoint answered {status} without JSON")))?;
    if !status.is_success() {
        // Only the standard error code: the rest of a token answer is never shown.
        let code = body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        let kind = if code == "invalid_grant" {
            ErrorKind::ConnectionUnauthenticated
        } else {
            ErrorKind::UpstreamInvalid
        };
        return Err(Error::new(
            kind,
            format!("the token endpoint refused the request ({status}, {code})"),
        ));
    }
    let Some(access_token) = body.get("access_token").and_then(Value::as_str) else {
        return Err(failed(
            "the token endpoint's answer has no access_token".into(),
        ));
    };
    Ok(Tokens {
        access: SecretString::from(access_token.to_owned()),
        refresh: body
            .get("refresh_token")
            .and_then(Value::as_str)
            .map(|t| SecretString::from(t.to_owned())),
        expires_at: body
            .get("expires_in")
            .and_then(Value::as_i64)
            .map(|s| now_ms() + s * 1000),
    })
}

async fn store(
    access: &Access,
    row: &ConnectionRow,
    tokens: Tokens,
    previous_refresh: Option<SecretString>,
) -> Result<(), Error> {
    let mut map = IndexMap::new();
    map.insert("access_token".to_owned(), tokens.access);
    if let Some(refresh) = tokens.refresh.or(previous_refresh) {
        map.insert("refresh_token".to_owned(), refresh);
    }
    access
        .vault
        .store_tokens(&row.id, &map, tokens.expires_at)
        .await
        .map_err(store_error)
}

fn is_fresh(row: &ConnectionRow) -> bool {
    row.tokens.is_some()
        && row.token_expires_at.is_none_or(|at| {
            let margin = REFRESH_MARGIN_MS.min((at - row.updated_at) / 4).max(0);
            at > now_ms() + margin
        })
}

/// `row` with a usable access token: fetched (client credentials) or refreshed first when
/// missing or about to expire. Rows of connections without OAuth come back unchanged.
pub async fn fresh(access: &Access, row: ConnectionRow) -> Result<ConnectionRow, Error> {
    if is_fresh(&row) {
        return Ok(row);
    }
    let Some(connector) = access.connector(&row.connector) else {
        return Ok(row);
    };
    let values = access.vault.values(&row).map_err(store_error)?;
    let Some(app) = app(connector, &row, &values)? else {
        return Ok(row);
    };
    let store_api = access.vault.store();
    let now = now_ms();
    if !store_api
        .take_refresh_lease(&row.id, now, now + LEASE_MS)
        .await
        .map_err(store_error)?
    {
        // Another request (or replica) refreshes: wait for its result.
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Some(current) = store_api.connection(&row.id).await.map_err(store_error)?
                && (is_fresh(&current) || current.token_expires_at != row.token_expires_at)
            {
                return Ok(current);
            }
        }
        return Ok(row);
    }
    let result = refresh(access, &app, &row).await;
    let _ = store_api.release_refresh_lease(&row.id).await;
    result?;
    store_api
        .connection(&row.id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| Error::new(ErrorKind::NotFound, "the connection was deleted"))
}

async fn refresh(access: &Access, app: &App, stale: &ConnectionRow) -> Result<(), Error> {
    // Someone may have refreshed between our read and the lease.
    if let Some(current) = access
        .vault
        .store()
        .connection(&stale.id)
        .await
        .map_err(store_error)?
        && is_fresh(&current)
    {
        return Ok(());
    }
    let tokens = access.vault.tokens(stale).map_err(store_error)?;
    let refresh_token = tokens.get("refresh_token").cloned();
    let (tokens, action) = match (app.flow, &refresh_token) {
        (_, Some(refresh)) => (
            token_request(
                access,
                app,
                &app.refresh_url,
                vec![
                    ("grant_type", "refresh_token".to_owned()),
                    ("refresh_token", refresh.expose_secret().to_owned()),
                ],
            )
            .await,
            "connection.refresh",
        ),
        (Flow::ClientCredentials, None) => {
            let mut form = vec![("grant_type", "client_credentials".to_owned())];
            if !app.scopes.is_empty() {
                form.push(("scope", app.scopes.join(" ")));
            }
            (
                token_request(access, app, &app.token_url, form).await,
                if stale.tokens.is_some() {
                    "connection.refresh"
                } else {
                    "connection.token"
                },
            )
        }
        (Flow::AuthorizationCode, None) => {
            return Err(Error::new(
                ErrorKind::ConnectionUnauthenticated,
                format!(
                    "connection '{}' is not authorized; log in first (POST /api/v1/connections/{}/login or `junction connections login {}`)",
                    stale.id, stale.id, stale.id
                ),
            ));
        }
    };
    let outcome = if tokens.is_ok() { "ok" } else { "failed" };
    access
        .vault
        .audit("oauth", action, Some(&stale.id), outcome, json!({}))
        .await;
    store(access, stale, tokens?, refresh_token).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn connector(settings: Value) -> Connector {
        let mut parameters = IndexMap::new();
        parameters.insert(
            "token".to_owned(),
            junction_model::ConnectionParameter {
                name: "token".into(),
                kind: "oauthSetting".into(),
                display_name: None,
                description: None,
                required: true,
                allowed_values: Vec::new(),
                oauth_settings: Some(settings),
                raw: Value::Null,
            },
        );
        Connector {
            name: "graph".into(),
            title: "Graph".into(),
            description: None,
            version: None,
            format: junction_model::SourceFormat::Swagger2,
            upstream: junction_model::Upstream {
                scheme: "https".into(),
                host: "graph.microsoft.com".into(),
                base_path: "/".into(),
            },
            operations: Vec::new(),
            security_schemes: IndexMap::new(),
            security: Vec::new(),
            definitions: serde_json::Map::new(),
            properties: Some(junction_model::ApiProperties {
                connection_parameters: parameters,
                ..Default::default()
            }),
            extensions: serde_json::Map::new(),
            source: "graph".into(),
            soap: None,
        }
    }

    fn row() -> ConnectionRow {
        ConnectionRow {
            id: "conn_1".into(),
            connector: "graph".into(),
            name: "c".into(),
            parameter_set: None,
            owner: None,
            public_values: "{}".into(),
            secrets: None,
            tokens: None,
            token_expires_at: None,
            created_by: "t".into(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn aad_maps_to_the_microsoft_identity_platform() {
        let c = connector(json!({
            "identityProvider": "aad", "clientId": "app-id",
            "customParameters": {"loginUri": {"value": "https://login.windows.net"},
                                 "tenantId": {"value": "contoso"},
                                 "resourceUri": {"value": "https://graph.microsoft.com"}}
        }));
        let app = app(&c, &row(), &IndexMap::new()).unwrap().unwrap();
        assert_eq!(
            app.authorize_url.as_deref(),
            Some("https://login.microsoftonline.com/contoso/oauth2/v2.0/authorize")
        );
        assert_eq!(
            app.token_url,
            "https://login.microsoftonline.com/contoso/oauth2/v2.0/token"
        );
        assert_eq!(
            app.scopes,
            vec!["https://graph.microsoft.com/.default", "offline_access"]
        );
        assert_eq!(app.client_id, "app-id");
        assert_eq!(app.flow, Flow::AuthorizationCode);
    }

    #[test]
    fn generic_oauth2_uses_its_urls_and_connection_overrides() {
        let c = connector(json!({
            "identityProvider": "oauth2generic", "clientId": "from-package", "scopes": ["read write"],
            "customParameters": {"authorizationUrl": {"value": "https://idp/auth"},
                                 "tokenUrl": {"value": "https://idp/token"},
                                 "refreshUrl": {"value": "https://idp/refresh"}}
        }));
        let mut values = IndexMap::new();
        values.insert("token:clientId".to_owned(), SecretString::from("mine"));
        values.insert(
            "token:grantType".to_owned(),
            SecretString::from("client_credentials"),
        );
        let app = app(&c, &row(), &values).unwrap().unwrap();
        assert_eq!(app.authorize_url.as_deref(), Some("https://idp/auth"));
        assert_eq!(app.refresh_url, "https://idp/refresh");
        assert_eq!(app.scopes, vec!["read", "write"]);
        assert_eq!(app.client_id, "mine");
        assert_eq!(app.flow, Flow::ClientCredentials);
        let github = connector(json!({"identityProvider": "github", "clientId": "x"}));
        assert!(super::app(&github, &row(), &IndexMap::new()).is_err());
    }
}
