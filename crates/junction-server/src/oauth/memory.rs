//! OAuth client credentials of configured connections (`[connector.NAME.connection]` with
//! `TOKEN:grantType = "client_credentials"`, and a secret or a certificate), their tokens
//! fetched on first use and kept in memory: the admission without `[store]`, and the
//! store's fallback for clients that use the configured connection.
//!
//! Each connector's token is fetched by one request at a time and refreshed like a stored
//! one (before expiry, and after the backend's 401). A login (authorization code) needs
//! the store: its tokens must outlive the process.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use junction_model::Connector;
use junction_runtime::{
    Admission, Admitted, BoxFuture, Config, Error, Gateway, Secret, UnauthorizedHook,
};
use junction_store::{ExposeSecret, SecretString, now_ms};

use super::{App, Flow, fresh_until, token};

/// A token in memory and when it was issued.
struct Held {
    access: SecretString,
    expires_at: Option<i64>,
    issued_at: i64,
}

/// One configured connection that uses client credentials.
struct Entry {
    app: App,
    values: IndexMap<String, Secret>,
    token: tokio::sync::Mutex<Option<Held>>,
}

/// The admission of a gateway without a store whose configured connections fetch tokens.
pub struct MemoryTokens {
    http: reqwest::Client,
    entries: HashMap<String, Arc<Entry>>,
}

impl std::fmt::Debug for MemoryTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTokens")
            .field("connectors", &self.entries.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl MemoryTokens {
    /// The admission for `config`, when some configured connection uses client
    /// credentials; errors name a connection whose OAuth app cannot be set up.
    pub fn new(
        config: &Config,
        connectors: &[Connector],
        http: reqwest::Client,
    ) -> Result<Option<MemoryTokens>, String> {
        let mut entries = HashMap::new();
        for connector in connectors {
            let Some(section) = config.connectors.get(&connector.name) else {
                continue;
            };
            if !junction_runtime::fetches_tokens(&section.connection) {
                continue;
            }
            let values: IndexMap<String, SecretString> = section
                .connection
                .iter()
                .map(|(k, v)| (k.clone(), SecretString::from(v.expose().to_owned())))
                .collect();
            let app = App::build(connector, None, values, &section.oauth).map_err(|e| {
                format!("[connector.{}.connection]: {}", connector.name, e.detail())
            })?;
            if let Some(app) = app.filter(|a| a.flow == Flow::ClientCredentials) {
                entries.insert(
                    connector.name.clone(),
                    Arc::new(Entry {
                        app,
                        values: section.connection.clone(),
                        token: tokio::sync::Mutex::new(None),
                    }),
                );
            }
        }
        Ok((!entries.is_empty()).then_some(MemoryTokens { http, entries }))
    }
}

impl Entry {
    /// A usable access token: the held one, or a new one.
    async fn access_token(&self, http: &reqwest::Client) -> Result<SecretString, Error> {
        let mut held = self.token.lock().await;
        if let Some(current) = held.as_ref()
            && fresh_until(current.expires_at, current.issued_at)
        {
            return Ok(current.access.clone());
        }
        let tokens = token::post(http, self.app.client_credentials()?).await?;
        let access = tokens.access.clone();
        *held = Some(Held {
            access: tokens.access,
            expires_at: tokens.expires_at,
            issued_at: now_ms(),
        });
        Ok(access)
    }
}

impl MemoryTokens {
    /// Attaches the configured connection of `connector`, with its token, to the request,
    /// when it uses client credentials.
    pub async fn attach(
        &self,
        gateway: &Gateway,
        parts: &mut http::request::Parts,
        connector: &str,
    ) -> Result<(), Error> {
        let Some(entry) = self.entries.get(connector) else {
            return Ok(());
        };
        let token = entry.access_token(&self.http).await?;
        let mut values = entry.values.clone();
        values.insert(
            "access_token".to_owned(),
            Secret::new(token.expose_secret().to_owned()),
        );
        if let Some(resolved) = gateway.resolve_connection(connector, "configured", &values) {
            parts.extensions.insert(resolved?);
        }
        let entry = Arc::clone(entry);
        parts.extensions.insert(UnauthorizedHook(Arc::new(move || {
            let entry = Arc::clone(&entry);
            tokio::spawn(async move {
                // The backend refused it: the next call fetches another.
                entry.token.lock().await.take();
            });
        })));
        Ok(())
    }
}

impl Admission for MemoryTokens {
    fn admit<'a>(
        &'a self,
        gateway: &'a Gateway,
        parts: &'a mut http::request::Parts,
        connector: &'a str,
    ) -> BoxFuture<'a, Result<Admitted, Error>> {
        Box::pin(async move {
            self.attach(gateway, parts, connector).await?;
            Ok(Admitted::default())
        })
    }

    fn admit_view<'a>(
        &'a self,
        _parts: &'a http::request::Parts,
        _view: &'a str,
    ) -> BoxFuture<'a, Result<String, Error>> {
        // Without a store every client may call every view, as without an admission.
        Box::pin(async { Ok(String::new()) })
    }
}
