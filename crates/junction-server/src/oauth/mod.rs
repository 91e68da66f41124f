//! OAuth2 to backends: connections whose connector declares an `oauthSetting` parameter.
//!
//! The OAuth app comes from the parameter's `oAuthSettings` in `apiProperties.json`, read by
//! [`junction_model::oauth`]: URLs or URL templates, query string and body templates,
//! first-party providers (`aad` and `aadcertificate` map to the Microsoft identity
//! platform). [`app::App`] puts them together with the connection's values
//! (`TOKEN:clientId`, `TOKEN:clientSecret`, `TOKEN:certificate` … and the values the
//! templates' placeholders name) and `[connector.NAME.oauth]`, which replaces the URLs.
//!
//! - Authorization code: the admin API (or `junction connections login`) hands out a
//!   login URL carrying a single-use `state` (with PKCE S256 unless the package writes the
//!   login's query string or the exchange's body); the identity provider sends the browser
//!   back to the data plane's `/oauth/callback`, which exchanges the code for tokens.
//! - Client credentials: the token is fetched on first use. Without `[store]`,
//!   [`memory`] keeps such tokens of configured connections in memory.
//! - Certificates (`aadcertificate`, or any app given `TOKEN:certificate`): the token
//!   requests carry an RFC 7523 client assertion instead of a secret ([`certificate`]).
//! - Refresh: a token that expires within a minute (a quarter of its lifetime for short
//!   ones) is refreshed before the call; a
//!   backend's 401 marks the token expired, so the next call refreshes it. At most one
//!   refresh per connection runs at a time, across replicas: a lease row in the store
//!   (`take_refresh_lease`); the others wait for its result.
//!
//! Tokens are sealed like every secret; token endpoint answers are never logged.

mod app;
mod certificate;
pub mod memory;
mod token;

use std::time::Duration;

use base64::Engine as _;
use indexmap::IndexMap;
use junction_runtime::{Error, ErrorKind};
use junction_store::{ConnectionRow, ExposeSecret, SecretString, now_ms};
use serde_json::json;
use sha2::Digest;

pub use app::{App, Flow};
use token::Tokens;

use crate::access::{Access, store_error};

/// Refresh tokens that expire within this margin (or a quarter of their lifetime, for
/// short-lived ones).
const REFRESH_MARGIN_MS: i64 = 60_000;
/// How long a refresh lease lasts at most.
const LEASE_MS: i64 = 30_000;

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A login URL for connection `reference` (authorization code).
pub async fn login_url(
    access: &Access,
    reference: &str,
    actor: &str,
) -> Result<serde_json::Value, Error> {
    let row = access
        .vault
        .find_connection(reference)
        .await
        .map_err(store_error)?;
    let app = app_of(access, &row)?;
    if app.flow != Flow::AuthorizationCode {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!(
                "connection '{}' does not log in with the authorization code flow",
                row.id
            ),
        ));
    }
    let (state, verifier) = access
        .vault
        .begin_login(&row.id)
        .await
        .map_err(store_error)?;
    let challenge = base64url(&sha2::Sha256::digest(verifier.expose_secret().as_bytes()));
    let redirect = access.callback_url();
    let url = app.login_url(&redirect, &state, &challenge)?;
    access
        .vault
        .audit(actor, "connection.login", Some(&row.id), "ok", json!({}))
        .await;
    Ok(
        json!({"connection": row.id, "login_url": url, "redirect_uri": redirect,
              "expires_in": junction_store::OAUTH_STATE_TTL_MS / 1000}),
    )
}

/// The OAuth app of `row`, or why there is none.
fn app_of(access: &Access, row: &ConnectionRow) -> Result<App, Error> {
    app_if_any(access, row)?.ok_or_else(|| {
        Error::new(
            ErrorKind::Conflict,
            format!("connection '{}' does not use OAuth", row.id),
        )
    })
}

/// The OAuth app of `row`, `None` when its connector (parameter set) has none.
fn app_if_any(access: &Access, row: &ConnectionRow) -> Result<Option<App>, Error> {
    let connector = access.connector(&row.connector).ok_or_else(|| {
        Error::new(
            ErrorKind::Misconfigured,
            format!("connector '{}' is not loaded", row.connector),
        )
    })?;
    let values = access.vault.values(row).map_err(store_error)?;
    App::build(
        connector,
        row.parameter_set.as_deref(),
        values,
        access.oauth_overrides(&row.connector),
    )
}

/// The callback: exchanges the code of login `state` for tokens.
pub async fn callback(access: &Access, query: &str) -> Result<String, Error> {
    let pairs: IndexMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if let Some(error) = pairs.get("error") {
        let state = pairs.get("state").cloned().unwrap_or_default();
        let _ = access.vault.finish_login(&state).await;
        // The provider's own words (RFC 6749 §4.1.2.1), cut short: they say why.
        let description = pairs
            .get("error_description")
            .map(|d| format!(" ({})", d.chars().take(200).collect::<String>()))
            .unwrap_or_default();
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!("the identity provider refused the login: {error}{description}"),
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
    let request = app.exchange(code, &access.callback_url(), verifier.expose_secret())?;
    let tokens = token::post(access.http(), request).await?;
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

/// Whether a token that expires at `expires_at` (issued at `issued_at`) is still good to
/// use: not within the refresh margin of its end.
fn fresh_until(expires_at: Option<i64>, issued_at: i64) -> bool {
    expires_at.is_none_or(|at| {
        let margin = REFRESH_MARGIN_MS.min((at - issued_at) / 4).max(0);
        at > now_ms() + margin
    })
}

fn is_fresh(row: &ConnectionRow) -> bool {
    row.tokens.is_some() && fresh_until(row.token_expires_at, row.updated_at)
}

/// `row` with a usable access token: fetched (client credentials) or refreshed first when
/// missing or about to expire. Rows of connections without OAuth come back unchanged.
pub async fn fresh(access: &Access, row: ConnectionRow) -> Result<ConnectionRow, Error> {
    if is_fresh(&row) {
        return Ok(row);
    }
    if access.connector(&row.connector).is_none() {
        return Ok(row);
    }
    let Some(app) = app_if_any(access, &row)? else {
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
    let (request, action) = match (app.flow, &refresh_token) {
        (_, Some(refresh)) => (
            app.refresh(refresh.expose_secret(), &access.callback_url())?,
            "connection.refresh",
        ),
        (Flow::ClientCredentials, None) => (
            app.client_credentials()?,
            if stale.tokens.is_some() {
                "connection.refresh"
            } else {
                "connection.token"
            },
        ),
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
    let tokens = token::post(access.http(), request).await;
    let outcome = if tokens.is_ok() { "ok" } else { "failed" };
    access
        .vault
        .audit("oauth", action, Some(&stale.id), outcome, json!({}))
        .await;
    store(access, stale, tokens?, refresh_token).await
}
