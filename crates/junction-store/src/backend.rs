//! The [`Store`] trait and the rows it keeps; its two implementations are in [`crate::sql`].
//!
//! Rows hold secret values only sealed ([`crate::crypto`]): the store never sees plain
//! secrets. Validation, sealing and redaction happen a layer up, in [`crate::Vault`].

use async_trait::async_trait;
use serde::Serialize;

use crate::crypto::MasterKey;
use crate::error::StoreError;

/// One connection as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRow {
    pub id: String,
    pub connector: String,
    pub name: String,
    /// The chosen `connectionParameterSet` of a multi-auth connector.
    pub parameter_set: Option<String>,
    /// The client that owns this connection (a per-user connection); `None` = shared.
    pub owner: Option<String>,
    /// Non-secret values, a JSON object.
    pub public_values: String,
    /// Secret values, a sealed JSON object.
    pub secrets: Option<Vec<u8>>,
    /// OAuth tokens, a sealed JSON object.
    pub tokens: Option<Vec<u8>>,
    /// When the access token expires, Unix ms.
    pub token_expires_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One gateway client as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRow {
    pub id: String,
    pub name: String,
    /// SHA-256 (hex) of the client's API key; the key itself is never stored.
    pub key_hash: Option<String>,
    /// The key's first characters, to recognise it in listings.
    pub key_prefix: Option<String>,
    /// The JWT `sub` this client is known by.
    pub subject: Option<String>,
    /// Grants, a JSON array.
    pub grants: String,
    pub created_by: String,
    pub created_at: i64,
}

/// One audit event: who did what to what, when, and how it went. Never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// Set by the store.
    pub id: i64,
    /// Unix ms.
    pub at: i64,
    pub actor: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `ok`, `denied`, `failed` …
    pub outcome: String,
    /// A JSON object with more detail.
    pub detail: serde_json::Value,
}

/// Which audit events to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// Only events at or after this time (Unix ms).
    pub since: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// One outbound agent as stored (docs/agent.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentRow {
    pub id: String,
    /// The pool it serves (`via = "agent:POOL"`).
    pub pool: String,
    /// The name it gave when it joined (its host name by default).
    pub name: String,
    /// SHA-256 (hex) of its current certificate, by which it is known when it connects.
    pub fingerprint: String,
    /// When its current certificate expires, Unix ms.
    pub not_after: i64,
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewed_at: Option<i64>,
    /// When a gateway last had it connected, Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

/// One trigger's state as stored (docs/triggers.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TriggerRow {
    pub name: String,
    /// The `Location` to poll next; `None`: the operation itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// For a trigger with a `pollingtrigger` template, the query parameters of the next
    /// poll (a JSON object); `None` before its first poll.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// For a webhook trigger subscribed (its `location` is the subscription's), what the
    /// subscription was made with (JSON: connector, operation, connection, parameters,
    /// body), to end it when the trigger is removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription: Option<String>,
    /// When the next poll is due, Unix ms.
    pub next_poll_at: i64,
    pub paused: bool,
    /// Polls made so far.
    pub polls: i64,
    /// Why the last poll failed; `None` after a poll that did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The replica that polls it, until `lease_until` (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<i64>,
    pub updated_at: i64,
}

/// One event a trigger's poll found, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRow {
    /// Set by the store, increasing in the order events are stored.
    pub id: i64,
    pub trigger: String,
    /// What makes it unique among the trigger's events.
    pub key: String,
    /// The item, JSON.
    pub payload: String,
    pub created_at: i64,
}

/// Where one event's delivery to one webhook stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRow {
    pub trigger: String,
    /// The webhook's name (`[trigger.NAME.webhook.SUBSCRIBER]`).
    pub subscriber: String,
    pub event_id: i64,
    /// `pending`, `delivered` or `dead` (the dead-letter list).
    pub state: String,
    pub attempts: i64,
    /// When a pending delivery is tried next, Unix ms.
    pub next_attempt_at: i64,
    /// When its attempts began failing, Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failed_at: Option<i64>,
    /// The webhook's last status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i64>,
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub updated_at: i64,
}

/// A trigger declared through the admin API (`PUT /api/v1/triggers/NAME`), as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionRow {
    pub name: String,
    /// Its `[trigger.NAME]` section as a JSON object, without its webhooks' secrets.
    pub definition: String,
    /// Those secrets (a JSON object: webhook name to secret), sealed; `None` without
    /// webhooks.
    pub secrets: Option<Vec<u8>>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl DefinitionRow {
    /// The section as declared, without its webhooks' secrets.
    pub fn table(&self) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
        serde_json::from_str(&self.definition)
            .map_err(|e| StoreError::Database(format!("trigger '{}': {e}", self.name)))
    }
}

/// A webhook a client registered with a trigger (`POST /triggers/NAME/webhooks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookRow {
    pub trigger: String,
    /// `wh_…`: its subscriber name in deliveries.
    pub id: String,
    pub url: String,
    /// The signing key (base64 of its bytes), sealed under the master key.
    #[serde(skip)]
    pub secret: Vec<u8>,
    /// The client that registered it, and alone may see or remove it.
    pub client_id: String,
    pub created_at: i64,
    /// When it was disabled for failing (`disable_after`); a redelivery enables it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<i64>,
}

/// A trigger's events and deliveries in numbers, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TriggerStats {
    pub trigger: String,
    /// Events stored.
    pub events: i64,
    pub pending: i64,
    pub delivered: i64,
    pub dead: i64,
    /// Attempts beyond the first, over every delivery.
    pub retries: i64,
    /// When the oldest event with a pending delivery was stored (Unix ms).
    pub oldest_pending: Option<i64>,
}

/// Which deliveries to list, newest event first.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub trigger: Option<String>,
    /// `pending`, `delivered` or `dead`.
    pub state: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// Where connections, clients and the audit log live. Implemented for SQLite and
/// PostgreSQL with the same SQL.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// One round trip to the database (`SELECT 1`), for health checks.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The database connections open now, and how many of them are idle.
    fn pool_size(&self) -> (u32, usize);

    async fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError>;

    async fn insert_connection(&self, row: &ConnectionRow) -> Result<(), StoreError>;
    async fn connection(&self, id: &str) -> Result<Option<ConnectionRow>, StoreError>;
    async fn connection_named(
        &self,
        connector: &str,
        name: &str,
    ) -> Result<Option<ConnectionRow>, StoreError>;
    async fn connections(&self) -> Result<Vec<ConnectionRow>, StoreError>;
    /// The connection `owner` has for `connector`, if any.
    async fn owned_connection(
        &self,
        owner: &str,
        connector: &str,
    ) -> Result<Option<ConnectionRow>, StoreError>;
    async fn delete_connection(&self, id: &str) -> Result<bool, StoreError>;
    /// Replaces the sealed tokens of a connection.
    async fn set_tokens(
        &self,
        id: &str,
        tokens: Option<&[u8]>,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Takes the refresh lease of connection `id` until `until` (Unix ms) when nobody holds
    /// an unexpired one: at most one replica refreshes a connection's token at a time.
    async fn take_refresh_lease(&self, id: &str, now: i64, until: i64) -> Result<bool, StoreError>;
    async fn release_refresh_lease(&self, id: &str) -> Result<(), StoreError>;
    /// Marks a connection's access token as expired (the backend refused it), so the next
    /// use refreshes it.
    async fn expire_token(&self, id: &str) -> Result<(), StoreError>;
    /// Records a pending OAuth login (sealed PKCE verifier); drops stale ones.
    async fn insert_oauth_state(
        &self,
        state: &str,
        connection: &str,
        verifier: &[u8],
        now: i64,
    ) -> Result<(), StoreError>;
    /// Takes (deletes and returns) a pending login: connection, sealed verifier, created_at.
    async fn take_oauth_state(
        &self,
        state: &str,
    ) -> Result<Option<(String, Vec<u8>, i64)>, StoreError>;

    async fn insert_client(&self, row: &ClientRow) -> Result<(), StoreError>;
    async fn client(&self, id: &str) -> Result<Option<ClientRow>, StoreError>;
    async fn client_by_key_hash(&self, hash: &str) -> Result<Option<ClientRow>, StoreError>;
    async fn client_by_subject(&self, subject: &str) -> Result<Option<ClientRow>, StoreError>;
    async fn clients(&self) -> Result<Vec<ClientRow>, StoreError>;
    async fn set_grants(&self, id: &str, grants: &str) -> Result<bool, StoreError>;
    async fn delete_client(&self, id: &str) -> Result<bool, StoreError>;

    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError>;

    /// The agents' certificate authority: its certificate (PEM) and sealed key.
    async fn agent_ca(&self) -> Result<Option<(String, Vec<u8>)>, StoreError>;
    /// Stores the agents' certificate authority unless one is stored already (two
    /// replicas creating one at once keep the first).
    async fn insert_agent_ca(&self, cert: &str, key: &[u8], now: i64) -> Result<(), StoreError>;
    async fn insert_agent_token(
        &self,
        hash: &str,
        pool: &str,
        expires_at: i64,
        created_by: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Uses the enrollment token with SHA-256 `hash` (once, before it expires): its pool.
    async fn take_agent_token(&self, hash: &str, now: i64) -> Result<Option<String>, StoreError>;
    async fn insert_agent(&self, row: &AgentRow) -> Result<(), StoreError>;
    async fn agent_by_fingerprint(&self, fingerprint: &str)
    -> Result<Option<AgentRow>, StoreError>;
    async fn agents(&self) -> Result<Vec<AgentRow>, StoreError>;
    /// Records the renewed certificate of agent `id`; `false` when it is unknown or revoked.
    async fn renew_agent(
        &self,
        id: &str,
        fingerprint: &str,
        not_after: i64,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Revokes agent `id` (by id or name); `false` when there is none not revoked yet.
    async fn revoke_agent(&self, id: &str, now: i64) -> Result<bool, StoreError>;
    /// Records that agents `ids` are connected now.
    async fn touch_agents(&self, ids: &[String], now: i64) -> Result<(), StoreError>;

    /// The state of trigger `name`, if it has polled or been leased.
    async fn trigger(&self, name: &str) -> Result<Option<TriggerRow>, StoreError>;
    /// Every trigger's state, by name.
    async fn triggers(&self) -> Result<Vec<TriggerRow>, StoreError>;
    /// Takes (or renews) the lease of trigger `name` for `owner` until `until` (Unix ms)
    /// when nobody else holds an unexpired one, creating its row (first poll due `now`)
    /// when missing; the trigger's state when taken, `None` when another replica holds it.
    async fn lease_trigger(
        &self,
        name: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<Option<TriggerRow>, StoreError>;
    /// Gives the lease of trigger `name` up, if `owner` holds it.
    async fn release_trigger(&self, name: &str, owner: &str) -> Result<(), StoreError>;
    /// Records one poll of trigger `state.name` in one transaction: `events` (key, JSON)
    /// that the trigger does not have yet, a pending delivery of each to each of
    /// `subscribers` (dead at once for a disabled one), and `state`'s location, next poll
    /// and error. Nothing is recorded when `state.lease_owner` no longer holds the lease
    /// (another replica took it): `Ok(None)`. Otherwise the number of events stored.
    async fn record_poll(
        &self,
        state: &TriggerRow,
        events: &[(String, String)],
        subscribers: &[String],
        now: i64,
    ) -> Result<Option<u64>, StoreError>;
    /// Pending deliveries of trigger `trigger` due at `now`, oldest event first, with the
    /// event's JSON.
    async fn due_deliveries(
        &self,
        trigger: &str,
        now: i64,
        limit: i64,
    ) -> Result<Vec<(DeliveryRow, String)>, StoreError>;
    /// When the next pending delivery of `trigger` is due (Unix ms), if any is pending.
    async fn next_delivery_at(&self, trigger: &str) -> Result<Option<i64>, StoreError>;
    /// Records an attempt's outcome: `row`'s state, attempts, next attempt and error,
    /// when the delivery is still as the attempt read it (pending, one attempt fewer,
    /// last updated at `read_at`). `false`, recording nothing, when it changed meanwhile:
    /// dead because its webhook was disabled, requeued by an operator, or attempted by
    /// another replica; a stale outcome never undoes those.
    async fn update_delivery(&self, row: &DeliveryRow, read_at: i64) -> Result<bool, StoreError>;
    /// Stores (or replaces) a trigger declared through the admin API; whether it is new.
    async fn put_trigger_definition(&self, row: &DefinitionRow) -> Result<bool, StoreError>;
    /// The triggers declared through the admin API, by name.
    async fn trigger_definitions(&self) -> Result<Vec<DefinitionRow>, StoreError>;
    /// Removes the declared trigger `name` (not its state or events); whether there was one.
    async fn delete_trigger_definition(&self, name: &str) -> Result<bool, StoreError>;
    /// Stores a webhook a client registered: from now on each new event of its trigger
    /// gets a delivery to it.
    async fn insert_webhook(&self, row: &WebhookRow) -> Result<(), StoreError>;
    /// The webhooks clients registered with `trigger`, oldest first.
    async fn webhooks(&self, trigger: &str) -> Result<Vec<WebhookRow>, StoreError>;
    /// Removes registered webhook `id` of `trigger` with its deliveries not yet made;
    /// whether there was one.
    async fn delete_webhook(&self, trigger: &str, id: &str) -> Result<bool, StoreError>;
    /// Disables webhook `subscriber` of `trigger`: its pending deliveries become dead
    /// with `reason`, and new events for it are dead at once.
    async fn disable_subscriber(
        &self,
        trigger: &str,
        subscriber: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// The last `limit` events of trigger `name`, newest first.
    async fn latest_events(&self, name: &str, limit: i64) -> Result<Vec<EventRow>, StoreError>;
    /// Deletes the events of trigger `name` stored before `before` (Unix ms) whose every
    /// delivery was made (none pending, none dead), with those deliveries; their numbers
    /// stay in the trigger's totals. How many events.
    async fn prune_events(&self, name: &str, before: i64) -> Result<u64, StoreError>;
    /// Every trigger's events and deliveries in numbers (with those retention deleted).
    async fn trigger_stats(&self) -> Result<Vec<TriggerStats>, StoreError>;
    /// Deliveries, by `query`.
    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<DeliveryRow>, StoreError>;
    /// Makes deliveries of `trigger` pending again, due now: the dead ones
    /// (`dead_only`), or all whose event was stored at or after `since` (Unix ms: a
    /// replay); only `subscriber`'s when given. Their webhooks are enabled again. Returns
    /// how many.
    async fn requeue_deliveries(
        &self,
        trigger: &str,
        subscriber: Option<&str>,
        dead_only: bool,
        since: i64,
        now: i64,
    ) -> Result<u64, StoreError>;
    /// Stores `events` (key, JSON) of trigger `name` that it does not have yet, each with
    /// a pending delivery to each of `subscribers`, in one transaction (a webhook
    /// trigger's notification); the number stored.
    async fn record_events(
        &self,
        name: &str,
        events: &[(String, String)],
        subscribers: &[String],
        now: i64,
    ) -> Result<u64, StoreError>;
    /// Forgets trigger `name`'s state (its events stay); whether it had some.
    async fn delete_trigger(&self, name: &str) -> Result<bool, StoreError>;
    /// Pauses or resumes trigger `name` (creating its row); whether it changed.
    async fn set_trigger_paused(
        &self,
        name: &str,
        paused: bool,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Events of trigger `name` stored after event `after`, oldest first, at most `limit`.
    async fn trigger_events(
        &self,
        name: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>, StoreError>;

    /// Whether any sealed value is stored.
    async fn has_sealed_values(&self) -> Result<bool, StoreError>;
    /// Re-seals every sealed value from `old` to `new` in one transaction; returns how many
    /// values were re-sealed.
    async fn rotate_key(&self, old: &MasterKey, new: &MasterKey) -> Result<usize, StoreError>;
}
