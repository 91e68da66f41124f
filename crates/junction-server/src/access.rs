//! Gateway clients over the store: the data plane's admission step, and what the admin
//! API's connection, client and audit endpoints use.
//!
//! With `[store]` configured, every data-plane request must name its client:
//! `Authorization: Bearer jk_…` or `X-Api-Key: jk_…` (an API key), or `Authorization:
//! Bearer JWT` (when `[clients.jwt]` is set; the token's `sub` is a client's subject), or,
//! with neither, a verified TLS client certificate (`[tls] client_ca_file`; its subject,
//! such as `C=US, O=Contoso, CN=app`, is a client's subject).
//! Then the client must hold a grant for the connector (403 otherwise; unknown
//! connectors too, so grants do not reveal what exists), and for the operation when the
//! grant lists operations. The connection the call uses is the client's own for that
//! connector, else the shared one its grant names, else `[connector.NAME.connection]`.
//! Connection use is audited at most once a minute per client, connection and operation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::request::Parts;
use indexmap::IndexMap;
use junction_model::Connector;
use junction_runtime::config::access::StoreLocation;
use junction_runtime::{
    Admission, Admitted, BoxFuture, Config, Error, ErrorKind, Gateway, OAuthOverrides, Secret,
    UnauthorizedHook,
};
use junction_store::{
    ClientInfo, ConnectionRow, ExposeSecret, Location, MasterKey, StoreError, Vault, grants,
};
use serde_json::json;

use crate::jwt::JwtValidator;
use crate::oauth::memory::MemoryTokens;
use crate::standby::{Remembered, Standby};
use crate::tls::ClientIdentity;

/// The header that may carry an API key instead of `Authorization`.
pub const API_KEY_HEADER: &str = "x-api-key";
const USE_AUDIT_EVERY: Duration = Duration::from_secs(60);

/// Clients, grants and connections, over the store.
#[derive(Debug)]
pub struct Access {
    pub vault: Vault,
    jwt: Option<JwtValidator>,
    /// Every loaded connector, to check connection values against.
    connectors: HashMap<String, Connector>,
    /// When each (client, connection, operation) use was last audited.
    used: Mutex<HashMap<(String, String), Instant>>,
    /// For token endpoints.
    http: reqwest::Client,
    /// `[connector.NAME.oauth]` by connector.
    oauth: HashMap<String, OAuthOverrides>,
    /// Tokens of configured connections with OAuth client credentials, for clients that
    /// use the configured connection.
    configured: Option<MemoryTokens>,
    /// The data plane's address as browsers reach it, for the OAuth callback.
    data_url: Mutex<String>,
    /// Whether the store is down, and the last answers of the data plane's reads, which
    /// stand in meanwhile (`crate::standby`).
    standby: Standby,
    /// Clients by `key:HASH` of their API key or `sub:SUBJECT`.
    clients: Remembered<String, Option<ClientInfo>>,
    /// Connection rows by client id and connector.
    rows: Remembered<(String, String), Option<ConnectionRow>>,
}

/// Why the access layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("[clients.jwt]: {0}")]
    Jwt(String),
    #[error("cannot build the HTTP client for token endpoints: {0}")]
    Http(String),
    #[error("{0}")]
    OAuth(String),
}

/// The HTTP client for token endpoints (redirects are not followed).
fn token_client() -> Result<reqwest::Client, AccessError> {
    junction_runtime::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| AccessError::Http(e.to_string()))
}

/// Puts the data plane's admission in front of `table`: the store's clients and
/// connections with `[store]`; without, in-memory OAuth tokens when a configured
/// connection uses client credentials (`crate::oauth::memory`). Returns the store's
/// access layer, if any.
pub async fn install_admission(
    config: &Config,
    connectors: &[Connector],
    table: &mut Gateway,
) -> Result<Option<Arc<Access>>, AccessError> {
    let access = Access::open(config, connectors).await?;
    if let Some(access) = &access {
        table.set_admission(Arc::new(AccessAdmission(access.clone())));
    } else if let Some(memory) =
        MemoryTokens::new(config, connectors, token_client()?).map_err(AccessError::OAuth)?
    {
        table.set_admission(Arc::new(memory));
    }
    Ok(access)
}

impl Access {
    /// Opens the store of `config` (none configured: `None`) with its master key.
    pub async fn open(
        config: &Config,
        connectors: &[Connector],
    ) -> Result<Option<Arc<Access>>, AccessError> {
        let Some(store) = &config.store else {
            return Ok(None);
        };
        let location = match &store.location {
            StoreLocation::Sqlite(path) => Location::Sqlite(path.clone()),
            StoreLocation::Postgres { url, schema } => Location::Postgres {
                url: url.clone(),
                schema: schema.clone(),
            },
        };
        let key = MasterKey::load(store.key_file.as_deref(), &|name| std::env::var(name).ok())?;
        let vault = Vault::new(junction_store::open(&location).await?, key).await?;
        let jwt = match &config.clients.jwt {
            Some(jwt) => Some(JwtValidator::new(jwt.clone()).map_err(AccessError::Jwt)?),
            None => None,
        };
        Ok(Some(Arc::new(Access {
            vault,
            jwt,
            connectors: connectors
                .iter()
                .map(|c| (c.name.clone(), c.clone()))
                .collect(),
            used: Mutex::new(HashMap::new()),
            oauth: config
                .connectors
                .iter()
                .map(|(name, c)| (name.clone(), c.oauth.clone()))
                .collect(),
            configured: MemoryTokens::new(config, connectors, token_client()?)
                .map_err(AccessError::OAuth)?,
            http: token_client()?,
            data_url: Mutex::new(
                config
                    .public_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{}", config.listen)),
            ),
            standby: Standby::default(),
            clients: Remembered::default(),
            rows: Remembered::default(),
        })))
    }

    /// The client for token endpoints.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sets the data plane's address (the bound one, when `public_url` is not set).
    pub fn set_data_url(&self, url: String) {
        if let Ok(mut current) = self.data_url.lock() {
            *current = url;
        }
    }

    /// Where identity providers send logins back: `DATA_URL/oauth/callback`.
    pub fn callback_url(&self) -> String {
        format!("{}/oauth/callback", self.data_url())
    }

    /// The data plane's address as others reach it (`public_url`, else the bound one),
    /// without a trailing slash.
    pub fn data_url(&self) -> String {
        let base = self.data_url.lock().map(|u| u.clone()).unwrap_or_default();
        base.trim_end_matches('/').to_owned()
    }

    /// `[connector.NAME.oauth]` of connector `name` (empty when not configured).
    pub fn oauth_overrides(&self, name: &str) -> &OAuthOverrides {
        static NONE: std::sync::LazyLock<OAuthOverrides> =
            std::sync::LazyLock::new(OAuthOverrides::default);
        self.oauth.get(name).unwrap_or(&NONE)
    }

    /// The connector model named `name`.
    pub fn connector(&self, name: &str) -> Option<&Connector> {
        self.connectors.get(name)
    }

    /// The client a request names, or why not.
    pub(crate) async fn authenticate(&self, parts: &Parts) -> Result<ClientInfo, Error> {
        let bearer = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let api_key = parts
            .headers
            .get(API_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        let unauthenticated = |why: &str| Error::new(ErrorKind::Unauthenticated, why.to_owned());
        let key = match (api_key, bearer) {
            (Some(key), _) => Some(key),
            (None, Some(token)) if token.starts_with(junction_store::API_KEY_PREFIX) => Some(token),
            _ => None,
        };
        if let Some(key) = key {
            // Hashed once: the stand-in's key and the store's lookup.
            let hash = junction_store::crypto::hash_key(key);
            return self
                .standby
                .read(
                    &self.clients,
                    format!("key:{hash}"),
                    Option::is_some,
                    self.vault.client_by_key_hash(&hash),
                )
                .await
                .map_err(store_error)?
                .ok_or_else(|| unauthenticated("the API key is not valid"));
        }
        let Some(token) = bearer else {
            // A verified client certificate (`[tls] client_ca_file`) names its client by
            // its subject.
            if let Some(ClientIdentity(subject)) = parts.extensions.get::<ClientIdentity>() {
                return self
                    .client_by_subject(subject)
                    .await?
                    .ok_or_else(|| {
                        unauthenticated(&format!(
                            "the client certificate's subject `{subject}` is not a client of this gateway"
                        ))
                    });
            }
            return Err(unauthenticated(
                "this gateway needs a client API key (`X-Api-Key` or `Authorization: Bearer`), a bearer token or a client certificate",
            ));
        };
        let Some(jwt) = &self.jwt else {
            return Err(unauthenticated("the bearer token is not a valid API key"));
        };
        let claims = jwt
            .validate(token)
            .await
            .map_err(|why| unauthenticated(&why))?;
        self.client_by_subject(&claims.sub)
            .await?
            .ok_or_else(|| unauthenticated("the token's subject is not a client of this gateway"))
    }

    /// The client whose subject (a JWT's `sub`, a certificate's subject) is `subject`.
    async fn client_by_subject(&self, subject: &str) -> Result<Option<ClientInfo>, Error> {
        self.standby
            .read(
                &self.clients,
                format!("sub:{subject}"),
                Option::is_some,
                self.vault.client_by_subject(subject),
            )
            .await
            .map_err(store_error)
    }

    /// The stored connection `client` uses for `connector` (`Vault::resolve_row`).
    async fn resolve_row(
        &self,
        client: &ClientInfo,
        connector: &str,
    ) -> Result<Option<ConnectionRow>, StoreError> {
        self.standby
            .read(
                &self.rows,
                (client.id.clone(), connector.to_owned()),
                |_| true,
                self.vault.resolve_row(client, connector),
            )
            .await
    }

    /// Audits a client's use of a connection, at most once a minute per pair.
    fn audit_use(self: &Arc<Self>, client: &ClientInfo, connector: &str, connection: Option<&str>) {
        let target = connection.map_or_else(|| format!("{connector}:configured"), str::to_owned);
        let due = match self.used.lock() {
            Ok(mut used) => {
                let key = (client.id.clone(), target.clone());
                match used.get(&key) {
                    Some(at) if at.elapsed() < USE_AUDIT_EVERY => false,
                    _ => {
                        used.insert(key, Instant::now());
                        true
                    }
                }
            }
            Err(_) => false,
        };
        if due {
            let access = Arc::clone(self);
            let actor = format!("client:{}", client.name);
            let connector = connector.to_owned();
            tokio::spawn(async move {
                access
                    .vault
                    .audit(
                        &actor,
                        "connection.use",
                        Some(&target),
                        "ok",
                        json!({"connector": connector}),
                    )
                    .await;
            });
        }
    }
}

/// The admission step, in front of [`Gateway::handle`].
#[derive(Debug, Clone)]
pub struct AccessAdmission(pub Arc<Access>);

impl Admission for AccessAdmission {
    fn link_key(&self) -> Option<junction_runtime::next_link::LinkKey> {
        let derived = self.0.vault.derive_key("next links")?;
        Some(junction_runtime::next_link::LinkKey::from_bytes(*derived))
    }

    fn admit_view<'a>(
        &'a self,
        parts: &'a Parts,
        view: &'a str,
    ) -> BoxFuture<'a, Result<String, Error>> {
        Box::pin(async move {
            let client = self.0.authenticate(parts).await?;
            if grants::allows_view(&client.grants, view) {
                Ok(client.id)
            } else {
                Err(Error::new(
                    ErrorKind::Forbidden,
                    format!("client '{}' is not granted view '{view}'", client.name),
                ))
            }
        })
    }

    fn oauth_callback<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<String, Error>> {
        Box::pin(crate::oauth::callback(&self.0, query))
    }

    fn admit<'a>(
        &'a self,
        gateway: &'a Gateway,
        parts: &'a mut Parts,
        connector: &'a str,
    ) -> BoxFuture<'a, Result<Admitted, Error>> {
        Box::pin(async move {
            // The admin API's `test` and `try` attach the connection themselves, or call
            // with the configured one (see `crate::call`); so do trigger polls.
            if parts
                .extensions
                .get::<Arc<junction_runtime::ResolvedConnection>>()
                .is_some()
                || parts.extensions.get::<crate::call::AdminCall>().is_some()
                || parts
                    .extensions
                    .get::<junction_runtime::TriggerPoll>()
                    .is_some()
            {
                return Ok(Admitted::default());
            }
            let access = &self.0;
            let client = access.authenticate(parts).await?;
            if !grants::allows_connector(&client.grants, connector) {
                return Err(Error::new(
                    ErrorKind::Forbidden,
                    format!(
                        "client '{}' is not granted connector '{connector}'",
                        client.name
                    ),
                ));
            }
            let mut operations = Some(Vec::new());
            for grant in client
                .grants
                .iter()
                .filter(|g| g.connector.as_deref() == Some(connector))
            {
                match (&mut operations, grant.operations.is_empty()) {
                    (_, true) => operations = None,
                    (Some(list), false) => list.extend(grant.operations.iter().cloned()),
                    (None, false) => {}
                }
            }
            let row = access
                .resolve_row(&client, connector)
                .await
                .map_err(|e| match e {
                    StoreError::NotFound(message) => Error::new(ErrorKind::Forbidden, message),
                    other => store_error(other),
                })?;
            let connection = match row {
                Some(row) => {
                    let row = crate::oauth::fresh(access, row).await?;
                    let values = runtime_values(&access.vault.values(&row).map_err(store_error)?);
                    if let Some(resolved) = gateway.resolve_connection(connector, &row.id, &values)
                    {
                        parts.extensions.insert(resolved?);
                    }
                    if row.tokens.is_some() {
                        parts.extensions.insert(unauthorized_hook(access, &row.id));
                    }
                    Some(row.id)
                }
                None => {
                    if let Some(configured) = &access.configured {
                        configured.attach(gateway, parts, connector).await?;
                    }
                    None
                }
            };
            access.audit_use(&client, connector, connection.as_deref());
            Ok(Admitted {
                operations,
                client: client.name,
                id: client.id,
            })
        })
    }
}

/// When the backend refuses a connection's token: mark it expired, so the next call
/// refreshes it (under the refresh lease).
fn unauthorized_hook(access: &Arc<Access>, id: &str) -> UnauthorizedHook {
    let access = Arc::clone(access);
    let id = id.to_owned();
    UnauthorizedHook(Arc::new(move || {
        let access = Arc::clone(&access);
        let id = id.clone();
        tokio::spawn(async move {
            if let Err(error) = access.vault.store().expire_token(&id).await {
                tracing::warn!(%error, connection = %id, "cannot mark a refused token expired");
            }
        });
    }))
}

/// Store values as the runtime's secrets.
pub fn runtime_values(
    values: &IndexMap<String, junction_store::SecretString>,
) -> IndexMap<String, Secret> {
    values
        .iter()
        .map(|(k, v)| (k.clone(), Secret::new(v.expose_secret())))
        .collect()
}

/// A store failure as the pipeline's error.
pub fn store_error(error: StoreError) -> Error {
    match error {
        StoreError::NotFound(message) => Error::new(ErrorKind::NotFound, message),
        StoreError::Conflict(message) => Error::new(ErrorKind::Conflict, message),
        StoreError::Invalid(problems) => Error::invalid(
            problems
                .into_iter()
                .map(|message| junction_runtime::Violation {
                    location: junction_runtime::InputLocation::Body,
                    name: None,
                    pointer: None,
                    message,
                })
                .collect(),
        ),
        unavailable @ StoreError::Unavailable(_) => Error::new(
            ErrorKind::StoreUnavailable,
            "the store of connections and clients cannot be reached; try again shortly",
        )
        .with_retry_after(Duration::from_secs(1))
        .with_cause(unavailable),
        other @ (StoreError::Key(_) | StoreError::Crypto(_) | StoreError::Database(_)) => {
            Error::new(ErrorKind::Internal, "the store failed").with_cause(other)
        }
    }
}
