//! The store: connections, gateway clients and the audit log, kept in SQLite (a file in
//! the data directory, the default) or PostgreSQL, with every secret value encrypted at rest.
//!
//! Three layers:
//! - [`Store`]: rows in and out, one trait with two implementations ([`SqliteStore`],
//!   [`PostgresStore`]) sharing their SQL, each with its own migrations folder;
//! - [`crypto`]: XChaCha20-Poly1305 under the [`MasterKey`];
//! - [`Vault`]: what the admin API, the CLI and the data plane call. It checks connection
//!   values against the connector's parameters, seals secrets before they reach the store,
//!   hashes client API keys, answers redacted views, resolves which connection a client's
//!   request uses, and writes the audit log. Plain secrets leave it only as
//!   [`SecretString`]s, for building upstream credentials.

mod backend;
pub mod crypto;
mod error;
pub mod grants;
mod sql;
pub mod values;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use indexmap::IndexMap;
use junction_model::Connector;
pub use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Map, Value, json};

pub use backend::{
    AgentRow, AuditEvent, AuditQuery, ClientRow, ConnectionRow, DefinitionRow, DeliveryQuery,
    DeliveryRow, EventRow, Store, TriggerRow, TriggerStats, WebhookRow,
};
pub use crypto::{MASTER_KEY_ENV, MasterKey};
pub use error::StoreError;
pub use grants::Grant;
pub use sql::AGENT_CA_AAD;
pub use sql::{PostgresStore, SqliteStore};

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, tables in `schema`.
    Postgres { url: String, schema: String },
}

/// Opens the store at `location` and migrates it.
pub async fn open(location: &Location) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match location {
        Location::Sqlite(path) => Arc::new(SqliteStore::open(path).await?),
        Location::Postgres { url, schema } => Arc::new(PostgresStore::open(url, schema).await?),
    })
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How long a login URL stays usable.
pub const OAUTH_STATE_TTL_MS: i64 = 10 * 60 * 1000;

/// The prefix of gateway API keys: `jk_` and 40 hex digits.
pub const API_KEY_PREFIX: &str = "jk_";

/// A connection as the API shows it: every secret redacted.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionInfo {
    pub id: String,
    pub connector: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter_set: Option<String>,
    /// The client that owns this connection; absent for a shared connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Non-secret values.
    pub values: IndexMap<String, String>,
    /// Names of the secret values that are set (the values are never shown).
    pub secrets: Vec<String>,
    /// Whether OAuth tokens are held, and until when the access token is valid.
    pub oauth: OAuthStatus,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The OAuth state of a connection, without the tokens.
#[derive(Debug, Clone, Serialize)]
pub struct OAuthStatus {
    pub authorized: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// What creating a connection takes.
#[derive(Debug, Clone, Default)]
pub struct NewConnection {
    pub name: String,
    pub parameter_set: Option<String>,
    /// The owning client (id or name); `None` for a shared connection.
    pub owner: Option<String>,
    pub values: Map<String, Value>,
}

/// A gateway client as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ClientInfo {
    pub id: String,
    pub name: String,
    /// `api_key` or `jwt`.
    pub auth: &'static str,
    /// The API key's first characters (`jk_1a2b…`), to recognise it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub grants: Vec<Grant>,
    pub created_by: String,
    pub created_at: i64,
}

/// Takes the webhooks' secrets out of a `[trigger.NAME]` section as JSON: webhook name to
/// secret. What is left may be stored or shown.
pub fn take_webhook_secrets(table: &mut Map<String, Value>) -> Map<String, Value> {
    let mut secrets = Map::new();
    if let Some(Value::Object(webhooks)) = table.get_mut("webhook") {
        for (webhook, section) in webhooks.iter_mut() {
            if let Some(secret) = section.as_object_mut().and_then(|s| s.remove("secret")) {
                secrets.insert(webhook.clone(), secret);
            }
        }
    }
    secrets
}

/// The start of a replay: `all` (every event: 0), or a duration ago (`2h`, `30m`), Unix ms.
pub fn since(text: &str) -> Result<i64, String> {
    if text == "all" {
        return Ok(0);
    }
    let ago = junction_model::units::parse_duration(text)
        .map_err(|e| format!("{e} (a duration such as 2h, or `all`)"))?;
    Ok(now_ms() - i64::try_from(ago.as_millis()).unwrap_or(i64::MAX))
}

/// A trigger declared through the admin API: its `[trigger.NAME]` section as JSON, with
/// its webhooks' secrets.
#[derive(Debug, Clone)]
pub struct DeclaredTrigger {
    pub name: String,
    pub table: Map<String, Value>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What creating a client takes: an API key is made unless `subject` (a JWT `sub`) is given.
#[derive(Debug, Clone, Default)]
pub struct NewClient {
    pub name: String,
    pub subject: Option<String>,
    pub grants: Vec<Grant>,
}

/// Which connection a request of a client uses for a connector.
#[derive(Debug, Clone)]
pub enum Resolution {
    /// A stored connection: its id and plain values (for building credentials).
    Stored {
        id: String,
        values: IndexMap<String, SecretString>,
    },
    /// None stored: the configuration file's connection applies.
    Configured,
}

/// The store with the master key: the API every other crate uses.
#[derive(Debug, Clone)]
pub struct Vault {
    store: Arc<dyn Store>,
    key: Option<MasterKey>,
}

impl Vault {
    /// A key for `purpose` derived from the master key (see [`MasterKey::derive`]), when
    /// there is one.
    pub fn derive_key(&self, purpose: &str) -> Option<zeroize::Zeroizing<[u8; 32]>> {
        self.key.as_ref().map(|key| key.derive(purpose))
    }

    /// Wraps `store`, checking `key` against it: secrets stored and no key is an error, and
    /// so is a key other than the one the secrets were sealed with.
    pub async fn new(store: Arc<dyn Store>, key: Option<MasterKey>) -> Result<Vault, StoreError> {
        let recorded = store.meta("key_id").await?;
        let sealed = store.has_sealed_values().await?;
        match (&key, recorded) {
            (None, _) if sealed => {
                return Err(StoreError::Key(format!(
                    "the store holds encrypted secrets but no master key is configured; set `[store] key_file` or the environment variable {MASTER_KEY_ENV}"
                )));
            }
            (Some(key), Some(recorded)) if sealed && recorded != key.id() => {
                return Err(StoreError::Key(format!(
                    "the store's secrets are encrypted under key {recorded}, but the master key given is {} (after `junction keys rotate`, configure the new key)",
                    key.id()
                )));
            }
            (Some(key), _) => store.set_meta("key_id", &key.id()).await?,
            (None, _) => {}
        }
        Ok(Vault { store, key })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn key(&self) -> Option<&MasterKey> {
        self.key.as_ref()
    }

    fn key_for(&self, what: &str) -> Result<&MasterKey, StoreError> {
        self.key.as_ref().ok_or_else(|| {
            StoreError::Key(format!(
                "{what} needs the master key to encrypt secrets; set `[store] key_file` or the environment variable {MASTER_KEY_ENV}"
            ))
        })
    }

    // ------------------------------------------------------------ audit

    /// Appends an audit event. Failures are logged, never returned: auditing never stops
    /// the action it records.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        outcome: &str,
        detail: Value,
    ) {
        let event = AuditEvent {
            id: 0,
            at: now_ms(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.map(str::to_owned),
            outcome: outcome.to_owned(),
            detail,
        };
        if let Err(error) = self.store.append_audit(&event).await {
            tracing::error!(%error, action, "cannot write the audit log");
        }
    }

    // ------------------------------------------------------------ connections

    /// Creates a connection of `connector` after checking its values.
    pub async fn create_connection(
        &self,
        connector: &Connector,
        input: NewConnection,
        actor: &str,
    ) -> Result<ConnectionInfo, StoreError> {
        let mut problems = Vec::new();
        if !valid_name(&input.name) {
            problems.push(format!(
                "connection name '{}' must be 1 to 64 letters, digits, `-`, `_` or `.`",
                input.name
            ));
        }
        let checked = match values::check(connector, input.parameter_set.as_deref(), &input.values)
        {
            Ok(checked) => Some(checked),
            Err(more) => {
                problems.extend(more);
                None
            }
        };
        let owner = match &input.owner {
            Some(owner) => match self.store.client(owner).await? {
                Some(client) => Some(client.id),
                None => {
                    return Err(StoreError::Conflict(format!(
                        "there is no client '{owner}' to own the connection"
                    )));
                }
            },
            None => None,
        };
        let Some(checked) = checked.filter(|_| problems.is_empty()) else {
            return Err(StoreError::Invalid(problems));
        };
        let id = format!("conn_{}", crypto::random_hex(12)?);
        let secrets = if checked.secret.is_empty() {
            None
        } else {
            let key = self.key_for("a connection with secret values")?;
            let plain = zeroize::Zeroizing::new(
                serde_json::to_vec(&checked.secret)
                    .map_err(|e| StoreError::Crypto(e.to_string()))?,
            );
            Some(key.seal(&plain, &sql::connection_aad(&id, "secrets"))?)
        };
        let now = now_ms();
        let row = ConnectionRow {
            id: id.clone(),
            connector: connector.name.clone(),
            name: input.name.clone(),
            parameter_set: checked.parameter_set.clone(),
            owner,
            public_values: serde_json::to_string(&checked.public)
                .map_err(|e| StoreError::Database(e.to_string()))?,
            secrets,
            tokens: None,
            token_expires_at: None,
            created_by: actor.to_owned(),
            created_at: now,
            updated_at: now,
        };
        self.store.insert_connection(&row).await?;
        let info = self.info(&row)?;
        self.audit(
            actor,
            "connection.create",
            Some(&id),
            "ok",
            json!({"connector": row.connector, "name": row.name, "owner": row.owner,
                   "parameter_set": row.parameter_set, "secrets": info.secrets}),
        )
        .await;
        Ok(info)
    }

    /// Finds a connection by id, or by `CONNECTOR/NAME`.
    pub async fn find_connection(&self, reference: &str) -> Result<ConnectionRow, StoreError> {
        let found = match reference.split_once('/') {
            Some((connector, name)) => self.store.connection_named(connector, name).await?,
            None => self.store.connection(reference).await?,
        };
        found.ok_or_else(|| StoreError::NotFound(format!("there is no connection '{reference}'")))
    }

    /// The redacted view of a stored connection.
    pub fn info(&self, row: &ConnectionRow) -> Result<ConnectionInfo, StoreError> {
        let values: IndexMap<String, String> =
            serde_json::from_str(&row.public_values).unwrap_or_default();
        let secrets = match &row.secrets {
            Some(sealed) => match &self.key {
                Some(key) => {
                    let plain = key.open(sealed, &sql::connection_aad(&row.id, "secrets"))?;
                    let map: IndexMap<String, SecretString> = secret_map(&plain)?;
                    map.keys().cloned().collect()
                }
                None => vec!["[sealed]".to_owned()],
            },
            None => Vec::new(),
        };
        Ok(ConnectionInfo {
            id: row.id.clone(),
            connector: row.connector.clone(),
            name: row.name.clone(),
            parameter_set: row.parameter_set.clone(),
            owner: row.owner.clone(),
            values,
            secrets,
            oauth: OAuthStatus {
                authorized: row.tokens.is_some(),
                expires_at: row.token_expires_at,
            },
            created_by: row.created_by.clone(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }

    pub async fn connections(&self) -> Result<Vec<ConnectionInfo>, StoreError> {
        let rows = self.store.connections().await?;
        rows.iter().map(|row| self.info(row)).collect()
    }

    /// Deletes a connection; `false` when there was none.
    pub async fn delete_connection(&self, id: &str, actor: &str) -> Result<bool, StoreError> {
        let deleted = self.store.delete_connection(id).await?;
        self.audit(
            actor,
            "connection.delete",
            Some(id),
            if deleted { "ok" } else { "not-found" },
            json!({}),
        )
        .await;
        Ok(deleted)
    }

    /// Every value of a connection, secrets opened: for building upstream credentials.
    pub fn values(
        &self,
        row: &ConnectionRow,
    ) -> Result<IndexMap<String, SecretString>, StoreError> {
        let public: IndexMap<String, String> =
            serde_json::from_str(&row.public_values).unwrap_or_default();
        let mut values: IndexMap<String, SecretString> = public
            .into_iter()
            .map(|(k, v)| (k, SecretString::from(v)))
            .collect();
        if let Some(sealed) = &row.secrets {
            let key = self.key_for("reading a connection")?;
            let plain = key.open(sealed, &sql::connection_aad(&row.id, "secrets"))?;
            values.extend(secret_map(&plain)?);
        }
        if let Some(sealed) = &row.tokens {
            let key = self.key_for("reading a connection")?;
            let plain = key.open(sealed, &sql::connection_aad(&row.id, "tokens"))?;
            let tokens = secret_map(&plain)?;
            if let Some(access) = tokens.get("access_token") {
                values.insert("access_token".to_owned(), access.clone());
            }
        }
        Ok(values)
    }

    /// Opens the sealed OAuth tokens of a connection.
    pub fn tokens(
        &self,
        row: &ConnectionRow,
    ) -> Result<IndexMap<String, SecretString>, StoreError> {
        match &row.tokens {
            Some(sealed) => {
                let key = self.key_for("reading OAuth tokens")?;
                let plain = key.open(sealed, &sql::connection_aad(&row.id, "tokens"))?;
                secret_map(&plain)
            }
            None => Ok(IndexMap::new()),
        }
    }

    /// Seals and stores OAuth tokens of connection `id`.
    pub async fn store_tokens(
        &self,
        id: &str,
        tokens: &IndexMap<String, SecretString>,
        expires_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let key = self.key_for("storing OAuth tokens")?;
        let plain: IndexMap<&str, &str> = tokens
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose_secret()))
            .collect();
        let plain = zeroize::Zeroizing::new(
            serde_json::to_vec(&plain).map_err(|e| StoreError::Crypto(e.to_string()))?,
        );
        let sealed = key.seal(&plain, &sql::connection_aad(id, "tokens"))?;
        self.store
            .set_tokens(id, Some(&sealed), expires_at, now_ms())
            .await
    }

    // ------------------------------------------------------------ clients

    /// Creates a client. Returns the API key once (clients known by a JWT subject get none).
    pub async fn create_client(
        &self,
        input: NewClient,
        actor: &str,
    ) -> Result<(ClientInfo, Option<SecretString>), StoreError> {
        if !valid_name(&input.name) {
            return Err(StoreError::Invalid(vec![format!(
                "client name '{}' must be 1 to 64 letters, digits, `-`, `_` or `.`",
                input.name
            )]));
        }
        for grant in &input.grants {
            self.check_grant_connection(grant, None).await?;
        }
        let id = format!("cli_{}", crypto::random_hex(12)?);
        let (key, key_hash, key_prefix) = match &input.subject {
            Some(_) => (None, None, None),
            None => {
                let key = format!("{API_KEY_PREFIX}{}", crypto::random_hex(20)?);
                let hash = crypto::hash_key(&key);
                let prefix = key
                    .chars()
                    .take(API_KEY_PREFIX.len() + 6)
                    .collect::<String>();
                (Some(SecretString::from(key)), Some(hash), Some(prefix))
            }
        };
        let row = ClientRow {
            id: id.clone(),
            name: input.name.clone(),
            key_hash,
            key_prefix,
            subject: input.subject.clone(),
            grants: serde_json::to_string(&input.grants)
                .map_err(|e| StoreError::Database(e.to_string()))?,
            created_by: actor.to_owned(),
            created_at: now_ms(),
        };
        self.store.insert_client(&row).await?;
        self.audit(
            actor,
            "client.create",
            Some(&id),
            "ok",
            json!({"name": row.name, "subject": row.subject, "grants": input.grants}),
        )
        .await;
        Ok((client_info(&row), key))
    }

    /// A grant's connection must exist, be for the grant's connector, and be shared (or
    /// owned by `owner`).
    async fn check_grant_connection(
        &self,
        grant: &Grant,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        let (Some(reference), Some(connector)) = (&grant.connection, &grant.connector) else {
            return Ok(());
        };
        // A grant that names a connection the store does not hold as it says conflicts
        // with what is stored (409), like a name already taken.
        let row = match self.find_connection(reference).await {
            Err(StoreError::NotFound(message)) => return Err(StoreError::Conflict(message)),
            found => found?,
        };
        if row.connector != *connector {
            return Err(StoreError::Conflict(format!(
                "connection '{reference}' belongs to connector '{}', not '{connector}'",
                row.connector
            )));
        }
        if row.owner.is_some() && row.owner.as_deref() != owner {
            return Err(StoreError::Conflict(format!(
                "connection '{reference}' belongs to another client; grant a shared connection"
            )));
        }
        Ok(())
    }

    pub async fn client(&self, reference: &str) -> Result<ClientInfo, StoreError> {
        self.store
            .client(reference)
            .await?
            .map(|row| client_info(&row))
            .ok_or_else(|| StoreError::NotFound(format!("there is no client '{reference}'")))
    }

    pub async fn clients(&self) -> Result<Vec<ClientInfo>, StoreError> {
        Ok(self
            .store
            .clients()
            .await?
            .iter()
            .map(client_info)
            .collect())
    }

    /// Replaces a client's grants.
    pub async fn set_grants(
        &self,
        reference: &str,
        grants: Vec<Grant>,
        actor: &str,
    ) -> Result<ClientInfo, StoreError> {
        let client = self.client(reference).await?;
        for grant in &grants {
            self.check_grant_connection(grant, Some(&client.id)).await?;
        }
        let text =
            serde_json::to_string(&grants).map_err(|e| StoreError::Database(e.to_string()))?;
        self.store.set_grants(&client.id, &text).await?;
        self.audit(
            actor,
            "client.grant",
            Some(&client.id),
            "ok",
            json!({"grants": grants}),
        )
        .await;
        self.client(&client.id).await
    }

    /// Deletes a client and the connections it owns.
    pub async fn delete_client(&self, reference: &str, actor: &str) -> Result<bool, StoreError> {
        let Some(row) = self.store.client(reference).await? else {
            return Ok(false);
        };
        let deleted = self.store.delete_client(&row.id).await?;
        self.audit(
            actor,
            "client.delete",
            Some(&row.id),
            "ok",
            json!({"name": row.name}),
        )
        .await;
        Ok(deleted)
    }

    /// The client an API key belongs to.
    pub async fn client_by_key(&self, key: &str) -> Result<Option<ClientInfo>, StoreError> {
        if !key.starts_with(API_KEY_PREFIX) {
            return Ok(None);
        }
        self.client_by_key_hash(&crypto::hash_key(key)).await
    }

    /// The client whose API key has SHA-256 `hash` (`crypto::hash_key`), for callers that
    /// hashed the key already.
    pub async fn client_by_key_hash(&self, hash: &str) -> Result<Option<ClientInfo>, StoreError> {
        Ok(self
            .store
            .client_by_key_hash(hash)
            .await?
            .map(|row| client_info(&row)))
    }

    /// The client a JWT subject belongs to.
    pub async fn client_by_subject(&self, subject: &str) -> Result<Option<ClientInfo>, StoreError> {
        Ok(self
            .store
            .client_by_subject(subject)
            .await?
            .map(|row| client_info(&row)))
    }

    /// Which connection `client` uses for `connector` (see [`Vault::resolve_row`]).
    pub async fn resolve(
        &self,
        client: &ClientInfo,
        connector: &str,
    ) -> Result<Resolution, StoreError> {
        Ok(match self.resolve_row(client, connector).await? {
            Some(row) => Resolution::Stored {
                values: self.values(&row)?,
                id: row.id,
            },
            None => Resolution::Configured,
        })
    }

    /// The stored connection `client` uses for `connector`: its own connection for the
    /// connector when it has one; else the shared connection its grant names; else none
    /// (the configuration file's applies). Never another client's connection.
    pub async fn resolve_row(
        &self,
        client: &ClientInfo,
        connector: &str,
    ) -> Result<Option<ConnectionRow>, StoreError> {
        if let Some(row) = self.store.owned_connection(&client.id, connector).await? {
            return Ok(Some(row));
        }
        let named = client
            .grants
            .iter()
            .filter(|g| g.connector.as_deref() == Some(connector))
            .find_map(|g| g.connection.clone());
        if let Some(reference) = named {
            let row = self.find_connection(&reference).await?;
            let allowed = row.connector == connector
                && row.owner.as_deref().is_none_or(|owner| owner == client.id);
            if !allowed {
                return Err(StoreError::NotFound(format!(
                    "connection '{reference}' is not usable by client '{}'",
                    client.name
                )));
            }
            return Ok(Some(row));
        }
        Ok(None)
    }

    // ------------------------------------------------------------ triggers

    /// Stores trigger `name` declared through the admin API: `table` is its
    /// `[trigger.NAME]` section as JSON (checked by the caller); its webhooks' secrets are
    /// sealed apart. Whether it is new (else it replaced one).
    pub async fn declare_trigger(
        &self,
        name: &str,
        mut table: Map<String, Value>,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let secrets = take_webhook_secrets(&mut table);
        let sealed = if secrets.is_empty() {
            None
        } else {
            let key = self.key_for("a trigger with webhooks")?;
            let plain = zeroize::Zeroizing::new(
                serde_json::to_vec(&secrets).map_err(|e| StoreError::Crypto(e.to_string()))?,
            );
            Some(key.seal(&plain, &sql::definition_aad(name))?)
        };
        let now = now_ms();
        let row = DefinitionRow {
            name: name.to_owned(),
            definition: Value::Object(table).to_string(),
            secrets: sealed,
            created_by: actor.to_owned(),
            created_at: now,
            updated_at: now,
        };
        let created = self.store.put_trigger_definition(&row).await?;
        self.audit(
            actor,
            "trigger.declare",
            Some(name),
            "ok",
            json!({"created": created}),
        )
        .await;
        Ok(created)
    }

    /// The triggers declared through the admin API, with their webhooks' secrets in place.
    pub async fn declared_triggers(&self) -> Result<Vec<DeclaredTrigger>, StoreError> {
        let mut declared = Vec::new();
        for row in self.store.trigger_definitions().await? {
            let mut table = row.table()?;
            if let Some(sealed) = &row.secrets {
                let key = self.key_for("a trigger with webhooks")?;
                let plain = key.open(sealed, &sql::definition_aad(&row.name))?;
                let secrets: Map<String, Value> = serde_json::from_slice(&plain)
                    .map_err(|e| StoreError::Crypto(e.to_string()))?;
                if let Some(Value::Object(webhooks)) = table.get_mut("webhook") {
                    for (webhook, secret) in secrets {
                        if let Some(section) =
                            webhooks.get_mut(&webhook).and_then(Value::as_object_mut)
                        {
                            section.insert("secret".into(), secret);
                        }
                    }
                }
            }
            declared.push(DeclaredTrigger {
                name: row.name,
                table,
                created_by: row.created_by,
                created_at: row.created_at,
                updated_at: row.updated_at,
            });
        }
        Ok(declared)
    }

    /// Removes trigger `name` declared through the admin API; whether there was one. Its
    /// state and events stay (a trigger declared again under the name goes on from them).
    pub async fn forget_trigger(&self, name: &str, actor: &str) -> Result<bool, StoreError> {
        let removed = self.store.delete_trigger_definition(name).await?;
        if removed {
            self.audit(actor, "trigger.remove", Some(name), "ok", json!({}))
                .await;
        }
        Ok(removed)
    }

    /// Pauses (or resumes) the polls of trigger `name`; whether that changed anything.
    pub async fn pause_trigger(
        &self,
        name: &str,
        paused: bool,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let changed = self
            .store
            .set_trigger_paused(name, paused, now_ms())
            .await?;
        let action = if paused {
            "trigger.pause"
        } else {
            "trigger.resume"
        };
        self.audit(actor, action, Some(name), "ok", json!({"changed": changed}))
            .await;
        Ok(changed)
    }

    /// Makes the deliveries of trigger `name` pending again (only `webhook`'s, when
    /// given): the dead ones (`since`: `None`, a redelivery), or every one whose event was
    /// stored at or after `since` (Unix ms, a replay). How many.
    pub async fn redeliver(
        &self,
        name: &str,
        webhook: Option<&str>,
        since: Option<i64>,
        actor: &str,
    ) -> Result<u64, StoreError> {
        let now = now_ms();
        let count = self
            .store
            .requeue_deliveries(name, webhook, since.is_none(), since.unwrap_or(0), now)
            .await?;
        let (action, detail) = match since {
            None => (
                "delivery.redeliver",
                json!({"webhook": webhook, "deliveries": count}),
            ),
            Some(since) => (
                "trigger.replay",
                json!({"since": since, "webhook": webhook, "deliveries": count}),
            ),
        };
        self.audit(actor, action, Some(name), "ok", detail).await;
        Ok(count)
    }

    // ------------------------------------------------------------ registered webhooks

    /// Registers a webhook for client `client_id` with trigger `trigger`: events go to
    /// `url`, signed with `key` (base64 of the key's bytes), which is sealed.
    pub async fn register_webhook(
        &self,
        trigger: &str,
        client_id: &str,
        url: &str,
        key: &str,
    ) -> Result<WebhookRow, StoreError> {
        let master = self.key_for("a webhook's signing secret")?;
        let id = format!("wh_{}", crypto::random_hex(12)?);
        let row = WebhookRow {
            trigger: trigger.to_owned(),
            secret: master.seal(key.as_bytes(), &sql::webhook_aad(trigger, &id))?,
            id,
            url: url.to_owned(),
            client_id: client_id.to_owned(),
            created_at: now_ms(),
            disabled_at: None,
        };
        self.store.insert_webhook(&row).await?;
        self.audit(
            client_id,
            "webhook.register",
            Some(&row.id),
            "ok",
            json!({"trigger": trigger, "url": url}),
        )
        .await;
        Ok(row)
    }

    /// The signing key (base64 of its bytes) of registered webhook `row`.
    pub fn webhook_key(&self, row: &WebhookRow) -> Result<junction_model::Secret, StoreError> {
        let master = self.key_for("a webhook's signing secret")?;
        let plain = master.open(&row.secret, &sql::webhook_aad(&row.trigger, &row.id))?;
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| StoreError::Crypto("a sealed webhook secret is not text".into()))?;
        Ok(junction_model::Secret::new(text))
    }

    /// Starts an OAuth login for connection `id`: a single-use state and the PKCE
    /// verifier, kept (sealed) until the callback takes them.
    pub async fn begin_login(&self, id: &str) -> Result<(String, SecretString), StoreError> {
        let key = self.key_for("an OAuth login")?;
        let state = crypto::random_hex(16)?;
        let verifier = SecretString::from(crypto::random_hex(32)?);
        let sealed = key.seal(
            verifier.expose_secret().as_bytes(),
            &format!("oauth_state:{state}"),
        )?;
        self.store
            .insert_oauth_state(&state, id, &sealed, now_ms())
            .await?;
        Ok((state, verifier))
    }

    /// Takes the login `state` started (once; within ten minutes): its connection and
    /// PKCE verifier.
    pub async fn finish_login(
        &self,
        state: &str,
    ) -> Result<(ConnectionRow, SecretString), StoreError> {
        let unknown = || StoreError::NotFound("this login link is unknown, used or expired".into());
        let (id, sealed, created) = self
            .store
            .take_oauth_state(state)
            .await?
            .ok_or_else(unknown)?;
        if now_ms() - created > OAUTH_STATE_TTL_MS {
            return Err(unknown());
        }
        let key = self.key_for("an OAuth login")?;
        let plain = key.open(&sealed, &format!("oauth_state:{state}"))?;
        let verifier = String::from_utf8(plain.to_vec())
            .map_err(|_| StoreError::Crypto("a sealed verifier is not text".into()))?;
        let row =
            self.store.connection(&id).await?.ok_or_else(|| {
                StoreError::NotFound(format!("connection '{id}' no longer exists"))
            })?;
        Ok((row, SecretString::from(verifier)))
    }

    /// Re-encrypts every secret under `new` (one transaction) and records it as the key.
    pub async fn rotate(&self, new: &MasterKey, actor: &str) -> Result<usize, StoreError> {
        let old = self.key_for("rotating the master key")?;
        let count = self.store.rotate_key(old, new).await?;
        self.audit(
            actor,
            "keys.rotate",
            None,
            "ok",
            json!({"from": old.id(), "to": new.id(), "values": count}),
        )
        .await;
        Ok(count)
    }
}

fn secret_map(plain: &[u8]) -> Result<IndexMap<String, SecretString>, StoreError> {
    let map: IndexMap<String, String> = serde_json::from_slice(plain)
        .map_err(|_| StoreError::Crypto("a sealed value is not a JSON object".into()))?;
    Ok(map
        .into_iter()
        .map(|(k, v)| (k, SecretString::from(v)))
        .collect())
}

fn client_info(row: &ClientRow) -> ClientInfo {
    ClientInfo {
        id: row.id.clone(),
        name: row.name.clone(),
        auth: if row.subject.is_some() {
            "jwt"
        } else {
            "api_key"
        },
        key_prefix: row.key_prefix.clone(),
        subject: row.subject.clone(),
        grants: serde_json::from_str(&row.grants).unwrap_or_default(),
        created_by: row.created_by.clone(),
        created_at: row.created_at,
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
