//! The two [`Store`] implementations: SQLite (a file in the data directory, the default)
//! and PostgreSQL. Both run the same SQL (`$1` placeholders work in both), written once in
//! [`impl_store!`]; each backend has its own migrations folder, embedded in the binary.
//!
//! Queries are checked at run time (sqlx's `query`, not `query!`), so building needs no
//! database. On PostgreSQL the tables live in the configured schema (`[store] schema`,
//! default `public`), which is created when missing.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Row, SqlSafeStr};

use crate::backend::{
    AgentRow, AuditEvent, AuditQuery, ClientRow, ConnectionRow, DefinitionRow, DeliveryQuery,
    DeliveryRow, EventRow, Store, TriggerRow, TriggerStats, WebhookRow,
};
use crate::crypto::MasterKey;
use crate::error::StoreError;

fn migrator(files: &[(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        files
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "store",
        include_str!("../migrations/sqlite/0001_store.sql"),
    ),
    (
        2,
        "oauth states",
        include_str!("../migrations/sqlite/0002_oauth_states.sql"),
    ),
    (
        3,
        "agents",
        include_str!("../migrations/sqlite/0003_agents.sql"),
    ),
    (
        4,
        "triggers",
        include_str!("../migrations/sqlite/0004_triggers.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "store",
        include_str!("../migrations/postgres/0001_store.sql"),
    ),
    (
        2,
        "oauth states",
        include_str!("../migrations/postgres/0002_oauth_states.sql"),
    ),
    (
        3,
        "agents",
        include_str!("../migrations/postgres/0003_agents.sql"),
    ),
    (
        4,
        "triggers",
        include_str!("../migrations/postgres/0004_triggers.sql"),
    ),
];

/// The store in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating when missing) the database file at `path` and migrates it.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Database(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| {
                StoreError::Database(format!(
                    "cannot open SQLite database {}: {e}",
                    path.display()
                ))
            })?;
        migrator(SQLITE_MIGRATIONS).run(&pool).await?;
        Ok(SqliteStore { pool })
    }
}

/// The store in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url`, creates `schema` when missing, and migrates it.
    pub async fn open(url: &str, schema: &str) -> Result<PostgresStore, StoreError> {
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(StoreError::Invalid(vec![format!(
                "schema `{schema}` must be letters, digits and `_`"
            )]));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Database(format!("`[store] url` is not usable: {e}")))?
            .options([("search_path", schema)]);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            // While PostgreSQL is down, a query waits this long for it before failing as
            // `Unavailable` (the gateway then answers from its stand-ins, or 503).
            .acquire_timeout(Duration::from_secs(2))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Database(format!("cannot connect to PostgreSQL: {e}")))?;
        sqlx::query(AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
        )))
        .execute(&pool)
        .await?;
        migrator(POSTGRES_MIGRATIONS).run(&pool).await?;
        Ok(PostgresStore { pool })
    }

    /// Drops `schema` and everything in it (tests clean up with this).
    pub async fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .map_err(|e| StoreError::Database(format!("cannot connect to PostgreSQL: {e}")))?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&pool)
        .await?;
        pool.close().await;
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

const CONNECTION_COLUMNS: &str = "id, connector, name, parameter_set, owner, public_values, secrets, tokens, token_expires_at, created_by, created_at, updated_at";
const CLIENT_COLUMNS: &str =
    "id, name, key_hash, key_prefix, subject, grants, created_by, created_at";

fn connection_row<R: Row>(row: &R) -> Result<ConnectionRow, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<Vec<u8>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ConnectionRow {
        id: row.try_get("id")?,
        connector: row.try_get("connector")?,
        name: row.try_get("name")?,
        parameter_set: row.try_get("parameter_set")?,
        owner: row.try_get("owner")?,
        public_values: row.try_get("public_values")?,
        secrets: row.try_get("secrets")?,
        tokens: row.try_get("tokens")?,
        token_expires_at: row.try_get("token_expires_at")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn client_row<R: Row>(row: &R) -> Result<ClientRow, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ClientRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        key_hash: row.try_get("key_hash")?,
        key_prefix: row.try_get("key_prefix")?,
        subject: row.try_get("subject")?,
        grants: row.try_get("grants")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
    })
}

const AGENT_COLUMNS: &str =
    "id, pool, name, fingerprint, not_after, created_at, renewed_at, last_seen, revoked_at";

fn agent_row<R: Row>(row: &R) -> Result<AgentRow, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(AgentRow {
        id: row.try_get("id")?,
        pool: row.try_get("pool")?,
        name: row.try_get("name")?,
        fingerprint: row.try_get("fingerprint")?,
        not_after: row.try_get("not_after")?,
        created_at: row.try_get("created_at")?,
        renewed_at: row.try_get("renewed_at")?,
        last_seen: row.try_get("last_seen")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const TRIGGER_COLUMNS: &str = "name, location, query, subscription, next_poll_at, paused, polls, last_error, lease_owner, lease_until, updated_at";

fn trigger_row<R: Row>(row: &R) -> Result<TriggerRow, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let paused: i64 = row.try_get("paused")?;
    Ok(TriggerRow {
        name: row.try_get("name")?,
        location: row.try_get("location")?,
        query: row.try_get("query")?,
        subscription: row.try_get("subscription")?,
        next_poll_at: row.try_get("next_poll_at")?,
        paused: paused != 0,
        polls: row.try_get("polls")?,
        last_error: row.try_get("last_error")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_until: row.try_get("lease_until")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn event_row<R: Row>(row: &R) -> Result<EventRow, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(EventRow {
        id: row.try_get("id")?,
        trigger: row.try_get("trigger_name")?,
        key: row.try_get("dedup_key")?,
        payload: row.try_get("payload")?,
        created_at: row.try_get("created_at")?,
    })
}

const DELIVERY_COLUMNS: &str = "trigger_name, subscriber, event_id, state, attempts, next_attempt_at, first_failed_at, last_status, last_error, updated_at";

fn delivery_row<R: Row>(row: &R) -> Result<DeliveryRow, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(DeliveryRow {
        trigger: row.try_get("trigger_name")?,
        subscriber: row.try_get("subscriber")?,
        event_id: row.try_get("event_id")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        first_failed_at: row.try_get("first_failed_at")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// `AAD` of the agents' certificate authority's sealed key.
pub const AGENT_CA_AAD: &str = "agent_ca:key";

fn audit_row<R: Row>(row: &R) -> Result<AuditEvent, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let detail: String = row.try_get("detail")?;
    Ok(AuditEvent {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        outcome: row.try_get("outcome")?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
    })
}

/// `AAD` of a connection's sealed column.
pub(crate) fn connection_aad(id: &str, column: &str) -> String {
    format!("connection:{id}:{column}")
}

/// `AAD` of the sealed webhook secrets of a trigger declared through the admin API.
pub(crate) fn definition_aad(name: &str) -> String {
    format!("trigger:{name}:secrets")
}

/// `AAD` of a registered webhook's sealed secret.
pub(crate) fn webhook_aad(trigger: &str, id: &str) -> String {
    format!("webhook:{trigger}:{id}")
}

fn reseal(
    old: &MasterKey,
    new: &MasterKey,
    sealed: Option<Vec<u8>>,
    aad: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    match sealed {
        None => Ok(None),
        Some(sealed) => {
            let plain = old.open(&sealed, aad)?;
            new.seal(&plain, aad).map(Some)
        }
    }
}

/// Inserts `events` (key, JSON) of trigger `name` that it does not have yet, each with a
/// delivery to each of `subscribers` (dead at once for a disabled one), in transaction
/// `tx`; evaluates to the number inserted.
macro_rules! insert_events {
    ($tx:ident, $name:expr, $events:expr, $subscribers:expr, $now:expr) => {{
        let (name, events, subscribers, now) = ($name, $events, $subscribers, $now);
        let mut stored: u64 = 0;
        for (key, payload) in events {
            // No row back: the trigger has this event already.
            let inserted = sqlx::query(
                "INSERT INTO trigger_events (trigger_name, dedup_key, payload, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (trigger_name, dedup_key) DO NOTHING \
                 RETURNING id",
            )
            .bind(name)
            .bind(key)
            .bind(payload)
            .bind(now)
            .fetch_optional(&mut *$tx)
            .await?;
            let Some(inserted) = inserted else {
                continue;
            };
            stored += 1;
            let id: i64 = inserted.try_get("id")?;
            for subscriber in subscribers {
                sqlx::query(
                    "INSERT INTO trigger_deliveries (trigger_name, subscriber, event_id, state, \
                     next_attempt_at, last_error, updated_at) \
                     SELECT $1, $2, $3, CASE WHEN s.disabled_at IS NULL THEN 'pending' ELSE 'dead' END, \
                     $4, CASE WHEN s.disabled_at IS NULL THEN NULL ELSE 'the webhook is disabled' END, $4 \
                     FROM (SELECT 1) AS one LEFT JOIN trigger_subscribers s \
                     ON s.trigger_name = $1 AND s.name = $2",
                )
                .bind(name)
                .bind(subscriber)
                .bind(id)
                .bind(now)
                .execute(&mut *$tx)
                .await?;
            }
            // And to each webhook a client registered.
            sqlx::query(
                "INSERT INTO trigger_deliveries (trigger_name, subscriber, event_id, state, \
                 next_attempt_at, last_error, updated_at) \
                 SELECT $1, s.name, $2, CASE WHEN s.disabled_at IS NULL THEN 'pending' ELSE 'dead' END, \
                 $3, CASE WHEN s.disabled_at IS NULL THEN NULL ELSE 'the webhook is disabled' END, $3 \
                 FROM trigger_subscribers s WHERE s.trigger_name = $1 AND s.url IS NOT NULL",
            )
            .bind(name)
            .bind(id)
            .bind(now)
            .execute(&mut *$tx)
            .await?;
        }
        stored
    }};
}

macro_rules! impl_store {
    ($store:ty, $name:literal) => {
        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $name
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            fn pool_size(&self) -> (u32, usize) {
                (self.pool.size(), self.pool.num_idle())
            }

            async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
                let row = sqlx::query("SELECT value FROM junction_meta WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(match row {
                    Some(row) => Some(row.try_get("value")?),
                    None => None,
                })
            }

            async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO junction_meta (key, value) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(key)
                .bind(value)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn insert_connection(&self, row: &ConnectionRow) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO connections (id, connector, name, parameter_set, owner, \
                     public_values, secrets, tokens, token_expires_at, created_by, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(&row.id)
                .bind(&row.connector)
                .bind(&row.name)
                .bind(&row.parameter_set)
                .bind(&row.owner)
                .bind(&row.public_values)
                .bind(&row.secrets)
                .bind(&row.tokens)
                .bind(row.token_expires_at)
                .bind(&row.created_by)
                .bind(row.created_at)
                .bind(row.updated_at)
                .execute(&self.pool)
                .await
                .map_err(|e| match StoreError::from(e) {
                    StoreError::Conflict(_) => StoreError::Conflict(format!(
                        "connector '{}' already has a connection named '{}'",
                        row.connector, row.name
                    )),
                    other => other,
                })?;
                Ok(())
            }

            async fn connection(&self, id: &str) -> Result<Option<ConnectionRow>, StoreError> {
                let sql = AssertSqlSafe(format!(
                    "SELECT {CONNECTION_COLUMNS} FROM connections WHERE id = $1"
                ));
                let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
                Ok(row.map(|r| connection_row(&r)).transpose()?)
            }

            async fn connection_named(
                &self,
                connector: &str,
                name: &str,
            ) -> Result<Option<ConnectionRow>, StoreError> {
                let sql = AssertSqlSafe(format!(
                    "SELECT {CONNECTION_COLUMNS} FROM connections WHERE connector = $1 AND name = $2"
                ));
                let row = sqlx::query(sql)
                    .bind(connector)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| connection_row(&r)).transpose()?)
            }

            async fn connections(&self) -> Result<Vec<ConnectionRow>, StoreError> {
                let sql = AssertSqlSafe(format!(
                    "SELECT {CONNECTION_COLUMNS} FROM connections ORDER BY connector, name"
                ));
                let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
                Ok(rows
                    .iter()
                    .map(connection_row)
                    .collect::<Result<_, _>>()?)
            }

            async fn owned_connection(
                &self,
                owner: &str,
                connector: &str,
            ) -> Result<Option<ConnectionRow>, StoreError> {
                let sql = AssertSqlSafe(format!(
                    "SELECT {CONNECTION_COLUMNS} FROM connections \
                     WHERE owner = $1 AND connector = $2 ORDER BY created_at LIMIT 1"
                ));
                let row = sqlx::query(sql)
                    .bind(owner)
                    .bind(connector)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| connection_row(&r)).transpose()?)
            }

            async fn delete_connection(&self, id: &str) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM connections WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_tokens(
                &self,
                id: &str,
                tokens: Option<&[u8]>,
                expires_at: Option<i64>,
                now: i64,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE connections SET tokens = $2, token_expires_at = $3, updated_at = $4 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(tokens)
                .bind(expires_at)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn take_refresh_lease(
                &self,
                id: &str,
                now: i64,
                until: i64,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE connections SET refresh_lease = $3 WHERE id = $1 \
                     AND (refresh_lease IS NULL OR refresh_lease < $2)",
                )
                .bind(id)
                .bind(now)
                .bind(until)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn expire_token(&self, id: &str) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE connections SET token_expires_at = 0 WHERE id = $1 AND tokens IS NOT NULL",
                )
                .bind(id)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn insert_oauth_state(
                &self,
                state: &str,
                connection: &str,
                verifier: &[u8],
                now: i64,
            ) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM oauth_states WHERE created_at < $1")
                    .bind(now - crate::OAUTH_STATE_TTL_MS)
                    .execute(&self.pool)
                    .await?;
                sqlx::query(
                    "INSERT INTO oauth_states (state, connection, verifier, created_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(state)
                .bind(connection)
                .bind(verifier)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn take_oauth_state(
                &self,
                state: &str,
            ) -> Result<Option<(String, Vec<u8>, i64)>, StoreError> {
                let row = sqlx::query(
                    "DELETE FROM oauth_states WHERE state = $1 \
                     RETURNING connection, verifier, created_at",
                )
                .bind(state)
                .fetch_optional(&self.pool)
                .await?;
                Ok(match row {
                    Some(row) => Some((
                        row.try_get("connection")?,
                        row.try_get("verifier")?,
                        row.try_get("created_at")?,
                    )),
                    None => None,
                })
            }

            async fn release_refresh_lease(&self, id: &str) -> Result<(), StoreError> {
                sqlx::query("UPDATE connections SET refresh_lease = NULL WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn insert_client(&self, row: &ClientRow) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO clients (id, name, key_hash, key_prefix, subject, grants, \
                     created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&row.id)
                .bind(&row.name)
                .bind(&row.key_hash)
                .bind(&row.key_prefix)
                .bind(&row.subject)
                .bind(&row.grants)
                .bind(&row.created_by)
                .bind(row.created_at)
                .execute(&self.pool)
                .await
                .map_err(|e| match StoreError::from(e) {
                    StoreError::Conflict(_) => StoreError::Conflict(format!(
                        "a client named '{}' or with the same subject already exists",
                        row.name
                    )),
                    other => other,
                })?;
                Ok(())
            }

            async fn client(&self, id: &str) -> Result<Option<ClientRow>, StoreError> {
                let sql = AssertSqlSafe(format!(
                    "SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1 OR name = $1"
                ));
                let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
                Ok(row.map(|r| client_row(&r)).transpose()?)
            }

            async fn client_by_key_hash(
                &self,
                hash: &str,
            ) -> Result<Option<ClientRow>, StoreError> {
                let sql = AssertSqlSafe(format!(
                    "SELECT {CLIENT_COLUMNS} FROM clients WHERE key_hash = $1"
                ));
                let row = sqlx::query(sql).bind(hash).fetch_optional(&self.pool).await?;
                Ok(row.map(|r| client_row(&r)).transpose()?)
            }

            async fn client_by_subject(
                &self,
                subject: &str,
            ) -> Result<Option<ClientRow>, StoreError> {
                let sql = AssertSqlSafe(format!(
                    "SELECT {CLIENT_COLUMNS} FROM clients WHERE subject = $1"
                ));
                let row = sqlx::query(sql)
                    .bind(subject)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| client_row(&r)).transpose()?)
            }

            async fn clients(&self) -> Result<Vec<ClientRow>, StoreError> {
                let sql = AssertSqlSafe(format!(
                    "SELECT {CLIENT_COLUMNS} FROM clients ORDER BY name"
                ));
                let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
                Ok(rows.iter().map(client_row).collect::<Result<_, _>>()?)
            }

            async fn set_grants(&self, id: &str, grants: &str) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE clients SET grants = $2 WHERE id = $1")
                    .bind(id)
                    .bind(grants)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_client(&self, id: &str) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("DELETE FROM connections WHERE owner = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let done = sqlx::query("DELETE FROM clients WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            }

            async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO audit (at, actor, action, target, outcome, detail) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(event.at)
                .bind(&event.actor)
                .bind(&event.action)
                .bind(&event.target)
                .bind(&event.outcome)
                .bind(event.detail.to_string())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
                let rows = sqlx::query(
                    "SELECT id, at, actor, action, target, outcome, detail FROM audit \
                     WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR action = $2) \
                     AND ($3 IS NULL OR target = $3) AND at >= $4 \
                     ORDER BY id DESC LIMIT $5",
                )
                .bind(&query.actor)
                .bind(&query.action)
                .bind(&query.target)
                .bind(query.since.unwrap_or(0))
                .bind(query.limit.unwrap_or(100).clamp(1, 1000))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.iter().map(audit_row).collect::<Result<_, _>>()?)
            }

            async fn agent_ca(&self) -> Result<Option<(String, Vec<u8>)>, StoreError> {
                let row = sqlx::query("SELECT cert, key FROM agent_ca WHERE id = 1")
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(match row {
                    Some(row) => Some((row.try_get("cert")?, row.try_get("key")?)),
                    None => None,
                })
            }

            async fn insert_agent_ca(
                &self,
                cert: &str,
                key: &[u8],
                now: i64,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO agent_ca (id, cert, key, created_at) VALUES (1, $1, $2, $3) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(cert)
                .bind(key)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn insert_agent_token(
                &self,
                hash: &str,
                pool: &str,
                expires_at: i64,
                created_by: &str,
                now: i64,
            ) -> Result<(), StoreError> {
                // Tokens past their time are of no use: drop them as new ones come.
                sqlx::query("DELETE FROM agent_tokens WHERE expires_at < $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                sqlx::query(
                    "INSERT INTO agent_tokens (hash, pool, expires_at, created_by, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(hash)
                .bind(pool)
                .bind(expires_at)
                .bind(created_by)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn take_agent_token(
                &self,
                hash: &str,
                now: i64,
            ) -> Result<Option<String>, StoreError> {
                let row = sqlx::query(
                    "UPDATE agent_tokens SET used_at = $2 \
                     WHERE hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING pool",
                )
                .bind(hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                Ok(match row {
                    Some(row) => Some(row.try_get("pool")?),
                    None => None,
                })
            }

            async fn insert_agent(&self, row: &AgentRow) -> Result<(), StoreError> {
                let sql = AssertSqlSafe(format!(
                    "INSERT INTO agents ({AGENT_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ));
                sqlx::query(sql)
                    .bind(&row.id)
                    .bind(&row.pool)
                    .bind(&row.name)
                    .bind(&row.fingerprint)
                    .bind(row.not_after)
                    .bind(row.created_at)
                    .bind(row.renewed_at)
                    .bind(row.last_seen)
                    .bind(row.revoked_at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn agent_by_fingerprint(
                &self,
                fingerprint: &str,
            ) -> Result<Option<AgentRow>, StoreError> {
                let sql = AssertSqlSafe(format!(
                    "SELECT {AGENT_COLUMNS} FROM agents WHERE fingerprint = $1"
                ));
                let row = sqlx::query(sql)
                    .bind(fingerprint)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.as_ref().map(agent_row).transpose()?)
            }

            async fn agents(&self) -> Result<Vec<AgentRow>, StoreError> {
                let sql = AssertSqlSafe(format!(
                    "SELECT {AGENT_COLUMNS} FROM agents ORDER BY pool, name, id"
                ));
                let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
                Ok(rows.iter().map(agent_row).collect::<Result<_, _>>()?)
            }

            async fn renew_agent(
                &self,
                id: &str,
                fingerprint: &str,
                not_after: i64,
                now: i64,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE agents SET fingerprint = $2, not_after = $3, renewed_at = $4 \
                     WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(fingerprint)
                .bind(not_after)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn revoke_agent(&self, id: &str, now: i64) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE agents SET revoked_at = $2 \
                     WHERE (id = $1 OR name = $1) AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn touch_agents(&self, ids: &[String], now: i64) -> Result<(), StoreError> {
                for id in ids {
                    sqlx::query("UPDATE agents SET last_seen = $2 WHERE id = $1")
                        .bind(id)
                        .bind(now)
                        .execute(&self.pool)
                        .await?;
                }
                Ok(())
            }

            async fn trigger(&self, name: &str) -> Result<Option<TriggerRow>, StoreError> {
                let row = sqlx::query(AssertSqlSafe(format!(
                    "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE name = $1"
                )))
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.as_ref().map(trigger_row).transpose()?)
            }

            async fn triggers(&self) -> Result<Vec<TriggerRow>, StoreError> {
                let rows = sqlx::query(AssertSqlSafe(format!(
                    "SELECT {TRIGGER_COLUMNS} FROM triggers ORDER BY name"
                )))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.iter().map(trigger_row).collect::<Result<_, _>>()?)
            }

            async fn lease_trigger(
                &self,
                name: &str,
                owner: &str,
                now: i64,
                until: i64,
            ) -> Result<Option<TriggerRow>, StoreError> {
                sqlx::query(
                    "INSERT INTO triggers (name, next_poll_at, updated_at) VALUES ($1, $2, $2) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(now)
                .execute(&self.pool)
                .await?;
                let row = sqlx::query(AssertSqlSafe(format!(
                    "UPDATE triggers SET lease_owner = $2, lease_until = $4 WHERE name = $1 \
                     AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < $3) \
                     RETURNING {TRIGGER_COLUMNS}"
                )))
                .bind(name)
                .bind(owner)
                .bind(now)
                .bind(until)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.as_ref().map(trigger_row).transpose()?)
            }

            async fn release_trigger(&self, name: &str, owner: &str) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE triggers SET lease_owner = NULL, lease_until = NULL \
                     WHERE name = $1 AND lease_owner = $2",
                )
                .bind(name)
                .bind(owner)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn record_poll(
                &self,
                state: &TriggerRow,
                events: &[(String, String)],
                subscribers: &[String],
                now: i64,
            ) -> Result<Option<u64>, StoreError> {
                let mut tx = self.pool.begin().await?;
                // The state first: it fails (and nothing is recorded) once another
                // replica holds the lease.
                let held = sqlx::query(
                    "UPDATE triggers SET location = $3, next_poll_at = $4, polls = polls + 1, \
                     last_error = $5, updated_at = $6, query = $7, subscription = $8 \
                     WHERE name = $1 AND lease_owner = $2",
                )
                .bind(&state.name)
                .bind(&state.lease_owner)
                .bind(&state.location)
                .bind(state.next_poll_at)
                .bind(&state.last_error)
                .bind(now)
                .bind(&state.query)
                .bind(&state.subscription)
                .execute(&mut *tx)
                .await?;
                if held.rows_affected() != 1 {
                    tx.rollback().await?;
                    return Ok(None);
                }
                let stored = insert_events!(tx, &state.name, events, subscribers, now);
                tx.commit().await?;
                Ok(Some(stored))
            }

            async fn record_events(
                &self,
                name: &str,
                events: &[(String, String)],
                subscribers: &[String],
                now: i64,
            ) -> Result<u64, StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO triggers (name, next_poll_at, updated_at) VALUES ($1, $2, $2) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let stored = insert_events!(tx, name, events, subscribers, now);
                tx.commit().await?;
                Ok(stored)
            }

            async fn delete_trigger(&self, name: &str) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM triggers WHERE name = $1")
                    .bind(name)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn set_trigger_paused(
                &self,
                name: &str,
                paused: bool,
                now: i64,
            ) -> Result<bool, StoreError> {
                sqlx::query(
                    "INSERT INTO triggers (name, next_poll_at, updated_at) VALUES ($1, $2, $2) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(now)
                .execute(&self.pool)
                .await?;
                let done = sqlx::query(
                    "UPDATE triggers SET paused = $2, updated_at = $3 WHERE name = $1 AND paused <> $2",
                )
                .bind(name)
                .bind(i64::from(paused))
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn trigger_events(
                &self,
                name: &str,
                after: i64,
                limit: i64,
            ) -> Result<Vec<EventRow>, StoreError> {
                let rows = sqlx::query(
                    "SELECT id, trigger_name, dedup_key, payload, created_at FROM trigger_events \
                     WHERE trigger_name = $1 AND id > $2 ORDER BY id LIMIT $3",
                )
                .bind(name)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.iter().map(event_row).collect::<Result<_, _>>()?)
            }

            async fn due_deliveries(
                &self,
                trigger: &str,
                now: i64,
                limit: i64,
            ) -> Result<Vec<(DeliveryRow, String)>, StoreError> {
                let rows = sqlx::query(
                    "SELECT d.trigger_name, d.subscriber, d.event_id, d.state, d.attempts, \
                     d.next_attempt_at, d.first_failed_at, d.last_status, d.last_error, d.updated_at, \
                     e.payload FROM trigger_deliveries d JOIN trigger_events e ON e.id = d.event_id \
                     WHERE d.trigger_name = $1 AND d.state = 'pending' AND d.next_attempt_at <= $2 \
                     ORDER BY d.event_id LIMIT $3",
                )
                .bind(trigger)
                .bind(now)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                let mut due = Vec::with_capacity(rows.len());
                for row in &rows {
                    due.push((delivery_row(row)?, row.try_get("payload")?));
                }
                Ok(due)
            }

            async fn next_delivery_at(&self, trigger: &str) -> Result<Option<i64>, StoreError> {
                let row = sqlx::query(
                    "SELECT MIN(next_attempt_at) AS due FROM trigger_deliveries \
                     WHERE trigger_name = $1 AND state = 'pending'",
                )
                .bind(trigger)
                .fetch_one(&self.pool)
                .await?;
                Ok(row.try_get("due")?)
            }

            async fn update_delivery(
                &self,
                row: &DeliveryRow,
                read_at: i64,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE trigger_deliveries SET state = $4, attempts = $5, next_attempt_at = $6, \
                     first_failed_at = $7, last_status = $8, last_error = $9, updated_at = $10 \
                     WHERE trigger_name = $1 AND subscriber = $2 AND event_id = $3 \
                     AND state = 'pending' AND attempts = $5 - 1 AND updated_at = $11",
                )
                .bind(&row.trigger)
                .bind(&row.subscriber)
                .bind(row.event_id)
                .bind(&row.state)
                .bind(row.attempts)
                .bind(row.next_attempt_at)
                .bind(row.first_failed_at)
                .bind(row.last_status)
                .bind(&row.last_error)
                .bind(row.updated_at)
                .bind(read_at)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn put_trigger_definition(
                &self,
                row: &DefinitionRow,
            ) -> Result<bool, StoreError> {
                let existed = sqlx::query("SELECT 1 AS one FROM trigger_definitions WHERE name = $1")
                    .bind(&row.name)
                    .fetch_optional(&self.pool)
                    .await?
                    .is_some();
                sqlx::query(
                    "INSERT INTO trigger_definitions \
                     (name, definition, secrets, created_by, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, \
                     secrets = excluded.secrets, updated_at = excluded.updated_at",
                )
                .bind(&row.name)
                .bind(&row.definition)
                .bind(&row.secrets)
                .bind(&row.created_by)
                .bind(row.created_at)
                .bind(row.updated_at)
                .execute(&self.pool)
                .await?;
                Ok(!existed)
            }

            async fn trigger_definitions(&self) -> Result<Vec<DefinitionRow>, StoreError> {
                let rows = sqlx::query(
                    "SELECT name, definition, secrets, created_by, created_at, updated_at \
                     FROM trigger_definitions ORDER BY name",
                )
                .fetch_all(&self.pool)
                .await?;
                let mut definitions = Vec::with_capacity(rows.len());
                for row in &rows {
                    definitions.push(DefinitionRow {
                        name: row.try_get("name")?,
                        definition: row.try_get("definition")?,
                        secrets: row.try_get("secrets")?,
                        created_by: row.try_get("created_by")?,
                        created_at: row.try_get("created_at")?,
                        updated_at: row.try_get("updated_at")?,
                    });
                }
                Ok(definitions)
            }

            async fn delete_trigger_definition(&self, name: &str) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM trigger_definitions WHERE name = $1")
                    .bind(name)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_webhook(&self, row: &WebhookRow) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO trigger_subscribers \
                     (trigger_name, name, url, secret, client_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&row.trigger)
                .bind(&row.id)
                .bind(&row.url)
                .bind(&row.secret)
                .bind(&row.client_id)
                .bind(row.created_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn webhooks(&self, trigger: &str) -> Result<Vec<WebhookRow>, StoreError> {
                let rows = sqlx::query(
                    "SELECT trigger_name, name, url, secret, client_id, created_at, disabled_at \
                     FROM trigger_subscribers WHERE trigger_name = $1 AND url IS NOT NULL \
                     ORDER BY created_at, name",
                )
                .bind(trigger)
                .fetch_all(&self.pool)
                .await?;
                let mut webhooks = Vec::with_capacity(rows.len());
                for row in &rows {
                    webhooks.push(WebhookRow {
                        trigger: row.try_get("trigger_name")?,
                        id: row.try_get("name")?,
                        url: row.try_get("url")?,
                        secret: row.try_get("secret")?,
                        client_id: row.try_get("client_id")?,
                        created_at: row.try_get("created_at")?,
                        disabled_at: row.try_get("disabled_at")?,
                    });
                }
                Ok(webhooks)
            }

            async fn delete_webhook(&self, trigger: &str, id: &str) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "DELETE FROM trigger_subscribers \
                     WHERE trigger_name = $1 AND name = $2 AND url IS NOT NULL",
                )
                .bind(trigger)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "DELETE FROM trigger_deliveries \
                     WHERE trigger_name = $1 AND subscriber = $2 AND state <> 'delivered'",
                )
                .bind(trigger)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(done.rows_affected() == 1)
            }

            async fn disable_subscriber(
                &self,
                trigger: &str,
                subscriber: &str,
                reason: &str,
                now: i64,
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO trigger_subscribers (trigger_name, name, disabled_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (trigger_name, name) DO UPDATE SET disabled_at = $3",
                )
                .bind(trigger)
                .bind(subscriber)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE trigger_deliveries SET state = 'dead', last_error = $3, updated_at = $4 \
                     WHERE trigger_name = $1 AND subscriber = $2 AND state = 'pending'",
                )
                .bind(trigger)
                .bind(subscriber)
                .bind(reason)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn latest_events(
                &self,
                name: &str,
                limit: i64,
            ) -> Result<Vec<EventRow>, StoreError> {
                let rows = sqlx::query(
                    "SELECT id, trigger_name, dedup_key, payload, created_at FROM trigger_events \
                     WHERE trigger_name = $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(name)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.iter().map(event_row).collect::<Result<_, _>>()?)
            }

            async fn prune_events(&self, name: &str, before: i64) -> Result<u64, StoreError> {
                let mut tx = self.pool.begin().await?;
                // Events stored before `before` whose every delivery was made.
                let old = "SELECT e.id FROM trigger_events e WHERE e.trigger_name = $1 \
                           AND e.created_at < $2 AND NOT EXISTS (SELECT 1 FROM trigger_deliveries d \
                           WHERE d.event_id = e.id AND d.state <> 'delivered')";
                let counted = sqlx::query(AssertSqlSafe(format!(
                    "SELECT COUNT(*) AS n, \
                     CAST(COALESCE(SUM(CASE WHEN attempts > 1 THEN attempts - 1 ELSE 0 END), 0) AS BIGINT) AS retries \
                     FROM trigger_deliveries WHERE trigger_name = $1 AND event_id IN ({old})"
                )))
                .bind(name)
                .bind(before)
                .fetch_one(&mut *tx)
                .await?;
                let delivered: i64 = counted.try_get("n")?;
                let retries: i64 = counted.try_get("retries")?;
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM trigger_deliveries WHERE trigger_name = $1 AND event_id IN ({old})"
                )))
                .bind(name)
                .bind(before)
                .execute(&mut *tx)
                .await?;
                // With their deliveries gone, the same condition selects those events again.
                let pruned = sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM trigger_events WHERE id IN ({old})"
                )))
                .bind(name)
                .bind(before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                sqlx::query(
                    "UPDATE triggers SET pruned_events = pruned_events + $2, \
                     pruned_delivered = pruned_delivered + $3, pruned_retries = pruned_retries + $4 \
                     WHERE name = $1",
                )
                .bind(name)
                .bind(i64::try_from(pruned).unwrap_or(i64::MAX))
                .bind(delivered)
                .bind(retries)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(pruned)
            }

            async fn trigger_stats(&self) -> Result<Vec<TriggerStats>, StoreError> {
                let mut stats: Vec<TriggerStats> = Vec::new();
                let events = sqlx::query(
                    "SELECT trigger_name, COUNT(*) AS n FROM trigger_events GROUP BY trigger_name \
                     ORDER BY trigger_name",
                )
                .fetch_all(&self.pool)
                .await?;
                for row in &events {
                    stats.push(TriggerStats {
                        trigger: row.try_get("trigger_name")?,
                        events: row.try_get("n")?,
                        ..TriggerStats::default()
                    });
                }
                let deliveries = sqlx::query(
                    "SELECT d.trigger_name, d.state, COUNT(*) AS n, \
                     CAST(SUM(CASE WHEN d.attempts > 1 THEN d.attempts - 1 ELSE 0 END) AS BIGINT) AS retries, \
                     MIN(e.created_at) AS oldest \
                     FROM trigger_deliveries d JOIN trigger_events e ON e.id = d.event_id \
                     GROUP BY d.trigger_name, d.state",
                )
                .fetch_all(&self.pool)
                .await?;
                for row in &deliveries {
                    let trigger: String = row.try_get("trigger_name")?;
                    let state: String = row.try_get("state")?;
                    let n: i64 = row.try_get("n")?;
                    let retries: Option<i64> = row.try_get("retries")?;
                    let oldest: Option<i64> = row.try_get("oldest")?;
                    let Some(entry) = stats.iter_mut().find(|s| s.trigger == trigger) else {
                        continue;
                    };
                    entry.retries += retries.unwrap_or(0);
                    match state.as_str() {
                        "pending" => {
                            entry.pending = n;
                            entry.oldest_pending = oldest;
                        }
                        "delivered" => entry.delivered = n,
                        _ => entry.dead = n,
                    }
                }
                // What retention deleted still counts.
                let pruned = sqlx::query(
                    "SELECT name, pruned_events, pruned_delivered, pruned_retries FROM triggers \
                     WHERE pruned_events > 0 OR pruned_delivered > 0",
                )
                .fetch_all(&self.pool)
                .await?;
                for row in &pruned {
                    let trigger: String = row.try_get("name")?;
                    let at = match stats.iter().position(|s| s.trigger == trigger) {
                        Some(at) => at,
                        None => {
                            stats.push(TriggerStats {
                                trigger,
                                ..TriggerStats::default()
                            });
                            stats.len() - 1
                        }
                    };
                    if let Some(entry) = stats.get_mut(at) {
                        entry.events += row.try_get::<i64, _>("pruned_events")?;
                        entry.delivered += row.try_get::<i64, _>("pruned_delivered")?;
                        entry.retries += row.try_get::<i64, _>("pruned_retries")?;
                    }
                }
                stats.sort_by(|a, b| a.trigger.cmp(&b.trigger));
                Ok(stats)
            }

            async fn deliveries(
                &self,
                query: &DeliveryQuery,
            ) -> Result<Vec<DeliveryRow>, StoreError> {
                let rows = sqlx::query(AssertSqlSafe(format!(
                    "SELECT {DELIVERY_COLUMNS} FROM trigger_deliveries \
                     WHERE ($1 IS NULL OR trigger_name = $1) AND ($2 IS NULL OR state = $2) \
                     ORDER BY event_id DESC, subscriber LIMIT $3"
                )))
                .bind(&query.trigger)
                .bind(&query.state)
                .bind(query.limit.unwrap_or(100).clamp(1, 1000))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.iter().map(delivery_row).collect::<Result<_, _>>()?)
            }

            async fn requeue_deliveries(
                &self,
                trigger: &str,
                subscriber: Option<&str>,
                dead_only: bool,
                since: i64,
                now: i64,
            ) -> Result<u64, StoreError> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE trigger_deliveries SET state = 'pending', attempts = 0, \
                     next_attempt_at = $5, first_failed_at = NULL, last_error = NULL, updated_at = $5 \
                     WHERE trigger_name = $1 AND ($2 IS NULL OR subscriber = $2) \
                     AND ($3 = 0 OR state = 'dead') \
                     AND event_id IN (SELECT id FROM trigger_events WHERE trigger_name = $1 AND created_at >= $4)",
                )
                .bind(trigger)
                .bind(subscriber)
                .bind(i64::from(dead_only))
                .bind(since)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE trigger_subscribers SET disabled_at = NULL \
                     WHERE trigger_name = $1 AND ($2 IS NULL OR name = $2)",
                )
                .bind(trigger)
                .bind(subscriber)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(done.rows_affected())
            }

            async fn has_sealed_values(&self) -> Result<bool, StoreError> {
                let row = sqlx::query(
                    "SELECT (SELECT COUNT(*) FROM connections \
                     WHERE secrets IS NOT NULL OR tokens IS NOT NULL) \
                     + (SELECT COUNT(*) FROM agent_ca) \
                     + (SELECT COUNT(*) FROM trigger_subscribers WHERE secret IS NOT NULL) \
                     + (SELECT COUNT(*) FROM trigger_definitions WHERE secrets IS NOT NULL) AS n",
                )
                .fetch_one(&self.pool)
                .await?;
                let n: i64 = row.try_get("n")?;
                Ok(n > 0)
            }

            async fn rotate_key(
                &self,
                old: &MasterKey,
                new: &MasterKey,
            ) -> Result<usize, StoreError> {
                let mut tx = self.pool.begin().await?;
                let rows = sqlx::query(
                    "SELECT id, secrets, tokens FROM connections \
                     WHERE secrets IS NOT NULL OR tokens IS NOT NULL",
                )
                .fetch_all(&mut *tx)
                .await?;
                let mut count = 0;
                for row in rows {
                    let id: String = row.try_get("id")?;
                    let secrets: Option<Vec<u8>> = row.try_get("secrets")?;
                    let tokens: Option<Vec<u8>> = row.try_get("tokens")?;
                    count += usize::from(secrets.is_some()) + usize::from(tokens.is_some());
                    let secrets =
                        reseal(old, new, secrets, &connection_aad(&id, "secrets"))?;
                    let tokens = reseal(old, new, tokens, &connection_aad(&id, "tokens"))?;
                    sqlx::query("UPDATE connections SET secrets = $2, tokens = $3 WHERE id = $1")
                        .bind(&id)
                        .bind(secrets)
                        .bind(tokens)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(row) = sqlx::query("SELECT key FROM agent_ca WHERE id = 1")
                    .fetch_optional(&mut *tx)
                    .await?
                {
                    let key: Vec<u8> = row.try_get("key")?;
                    let key = reseal(old, new, Some(key), AGENT_CA_AAD)?;
                    sqlx::query("UPDATE agent_ca SET key = $1 WHERE id = 1")
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                    count += 1;
                }
                let webhooks = sqlx::query(
                    "SELECT trigger_name, name, secret FROM trigger_subscribers \
                     WHERE secret IS NOT NULL",
                )
                .fetch_all(&mut *tx)
                .await?;
                for row in webhooks {
                    let trigger: String = row.try_get("trigger_name")?;
                    let id: String = row.try_get("name")?;
                    let secret: Vec<u8> = row.try_get("secret")?;
                    let secret = reseal(old, new, Some(secret), &webhook_aad(&trigger, &id))?;
                    sqlx::query(
                        "UPDATE trigger_subscribers SET secret = $3 \
                         WHERE trigger_name = $1 AND name = $2",
                    )
                    .bind(&trigger)
                    .bind(&id)
                    .bind(secret)
                    .execute(&mut *tx)
                    .await?;
                    count += 1;
                }
                let definitions = sqlx::query(
                    "SELECT name, secrets FROM trigger_definitions WHERE secrets IS NOT NULL",
                )
                .fetch_all(&mut *tx)
                .await?;
                for row in definitions {
                    let name: String = row.try_get("name")?;
                    let secrets: Vec<u8> = row.try_get("secrets")?;
                    let secrets = reseal(old, new, Some(secrets), &definition_aad(&name))?;
                    sqlx::query("UPDATE trigger_definitions SET secrets = $2 WHERE name = $1")
                        .bind(&name)
                        .bind(secrets)
                        .execute(&mut *tx)
                        .await?;
                    count += 1;
                }
                // Pending logins are short-lived: they start again under the new key.
                sqlx::query("DELETE FROM oauth_states")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO junction_meta (key, value) VALUES ('key_id', $1) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(new.id())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(count)
            }
        }
    };
}

impl_store!(SqliteStore, "sqlite");
impl_store!(PostgresStore, "postgres");
