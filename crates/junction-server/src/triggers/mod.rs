//! Triggers the gateway runs itself (`[trigger.NAME]`, docs/triggers.md): each polls a
//! connector's trigger operation ([`poll`]) or keeps a webhook subscription with it
//! ([`subscribe`], notifications arriving at [`hooks`]), keeps its cursor and the events
//! it found in the store, delivers each event to the trigger's webhooks ([`deliver`]) and
//! serves them as an event stream ([`stream`]); clients granted a trigger may register
//! webhooks of their own with it ([`webhooks`]). Every call a trigger makes of its
//! operation (a poll, a subscription, its check or end) is built by [`request`] and goes
//! through the gateway like a client's call.
//!
//! A trigger is polled by one replica at a time: the one holding its lease in the store
//! (`[trigger.NAME] lease`), renewed while it runs; when that replica dies another takes
//! the trigger over once the lease has run out. A poll's new events and the trigger's
//! next cursor are recorded in one transaction, each event once (unique per trigger by
//! its deduplication key), so a crash between a poll and its record loses nothing and
//! repeats nothing: the next poll asks again from the same cursor.

mod deliver;
pub(crate) mod hooks;
mod poll;
mod stream;
mod subscribe;
mod webhooks;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use junction_model::{Connector, Operation};
use junction_runtime::config::triggers::TriggerConfig;
use junction_runtime::{Config, Error, ErrorKind, SharedGateway, TriggerPoll};
use junction_store::grants;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::access::{Access, store_error};
use crate::call::{self, Inputs, Stored};

/// Whether a trigger's answer is one event (`x-ms-trigger: single`) or a list of them
/// (`batch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fires {
    Single,
    Batch,
}

/// One configured trigger, resolved against the loaded connectors.
#[derive(Debug)]
pub(crate) struct Trigger {
    pub name: String,
    pub config: TriggerConfig,
    pub connector: Connector,
    pub operation: Operation,
    pub fires: Fires,
    /// A webhook trigger's callback field in its subscription body (`x-ms-notification-url`);
    /// `None` for a polled trigger.
    pub callback: Option<Vec<String>>,
    /// Whether this process has checked the webhook subscription it found stored.
    pub checked: std::sync::atomic::AtomicBool,
    /// The names of its webhooks: each new event gets a delivery to each.
    pub subscribers: Vec<String>,
    /// Counts the polls that stored events in this process, for streams and deliveries
    /// to wake on.
    pub stored: watch::Sender<u64>,
}

/// The triggers of a running gateway: those of `junction.toml`, and those declared
/// through the admin API (read from the store every [`DECLARED_CHECK`]: started when
/// declared, restarted when changed, stopped when removed, on every replica).
#[derive(Debug)]
pub struct Triggers {
    /// The triggers `[trigger.NAME]` declares, resolved at start.
    configured: HashMap<String, Arc<Trigger>>,
    /// The triggers running in this process, by name.
    running: std::sync::RwLock<HashMap<String, Running>>,
    /// The version (`updated_at`) of each declared trigger that could not be run, so that
    /// the reason is logged once.
    refused: std::sync::Mutex<HashMap<String, i64>>,
    pub(crate) access: Arc<Access>,
    pub(crate) gateway: SharedGateway,
    /// Who holds leases: this process, for its life.
    pub(crate) owner: String,
    /// Set when the server stops: polls and event streams end.
    pub(crate) stopped: watch::Receiver<bool>,
}

/// One trigger running in this process: its poll and delivery loops.
#[derive(Debug)]
struct Running {
    trigger: Arc<Trigger>,
    /// For a trigger declared through the admin API, the version running.
    declared: Option<i64>,
    /// Stops its loops.
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// How often the triggers declared through the admin API are read from the store.
const DECLARED_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Every how many checks the subscriptions of removed webhook triggers are looked for
/// again (they are at start and after a removal).
const END_REMOVED_EVERY: u32 = 60;

impl Triggers {
    /// The triggers of `config`, resolved against the connectors `access` loaded; `None`
    /// without a store. A trigger whose connector or operation is missing was refused when
    /// the gateway was compiled (`unknown-trigger`); here it is an error too.
    pub fn new(
        config: &Config,
        gateway: SharedGateway,
        access: Option<Arc<Access>>,
        stopped: watch::Receiver<bool>,
    ) -> Result<Option<Arc<Triggers>>, String> {
        // With a store and no trigger, the runner still runs the triggers declared through
        // the admin API, and ends the subscriptions of webhook triggers taken out.
        let Some(access) = access else {
            if config.triggers.is_empty() {
                return Ok(None);
            }
            return Err("triggers keep their state in the store: add a `[store]` section".into());
        };
        let mut configured = HashMap::new();
        for (name, trigger) in &config.triggers {
            configured.insert(
                name.clone(),
                Arc::new(resolve(&access, name, trigger.clone())?),
            );
        }
        Ok(Some(Arc::new(Triggers {
            configured,
            running: std::sync::RwLock::default(),
            refused: std::sync::Mutex::default(),
            access,
            gateway,
            owner: owner_id(),
            stopped,
        })))
    }

    /// Runs every trigger (polling it, delivering its events) until the server stops;
    /// then stops them, and they give their leases up.
    pub fn start(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        vec![tokio::spawn(self.clone().supervise())]
    }

    /// The trigger named `name`, when it runs here.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Trigger>> {
        let running = self.running.read().unwrap_or_else(|e| e.into_inner());
        running.get(name).map(|r| r.trigger.clone())
    }

    /// Whether `name` is declared through the admin API but cannot run here (its
    /// subscription is not ended for that).
    fn is_refused(&self, name: &str) -> bool {
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused.contains_key(name)
    }

    /// Starts the configured triggers, then follows the declared ones until the server
    /// stops.
    async fn supervise(self: Arc<Self>) {
        for trigger in self.configured.values() {
            self.launch(trigger.clone(), None);
        }
        let mut stopped = self.stopped.clone();
        let mut round: u32 = 0;
        loop {
            // Subscriptions are ended only when the declared triggers were read: one whose
            // definition could not be read is not a removed one.
            let removed = self.reconcile().await;
            if removed == Some(true)
                || (removed.is_some() && round.is_multiple_of(END_REMOVED_EVERY))
            {
                subscribe::end_removed(&self).await;
            }
            round = round.wrapping_add(1);
            tokio::select! {
                () = tokio::time::sleep(DECLARED_CHECK) => {}
                _ = stopped.wait_for(|stop| *stop) => break,
            }
        }
        let all: Vec<Running> = {
            let mut running = self.running.write().unwrap_or_else(|e| e.into_inner());
            running.drain().map(|(_, r)| r).collect()
        };
        for running in all {
            halt(running).await;
        }
    }

    /// Starts `trigger`'s poll and delivery loops.
    fn launch(self: &Arc<Self>, trigger: Arc<Trigger>, declared: Option<i64>) {
        let (stop, stopped) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(poll::run(self.clone(), trigger.clone(), stopped.clone())),
            tokio::spawn(deliver::run(self.clone(), trigger.clone(), stopped)),
        ];
        let mut running = self.running.write().unwrap_or_else(|e| e.into_inner());
        running.insert(
            trigger.name.clone(),
            Running {
                trigger,
                declared,
                stop,
                tasks,
            },
        );
    }

    /// Brings the declared triggers running here in line with the store: stops those
    /// removed or changed, starts those new or changed. Whether one was removed; `None`
    /// when the declared triggers could not be read.
    async fn reconcile(self: &Arc<Self>) -> Option<bool> {
        let declared = match self.access.vault.declared_triggers().await {
            Ok(declared) => declared,
            Err(error) => {
                tracing::warn!(%error, "cannot read the triggers declared through the admin API");
                return None;
            }
        };
        let version = |name: &str| {
            declared
                .iter()
                .find(|d| d.name == name)
                .map(|d| d.updated_at)
        };
        let stale: Vec<Running> = {
            let mut running = self.running.write().unwrap_or_else(|e| e.into_inner());
            let names: Vec<String> = running
                .iter()
                .filter(|(name, r)| r.declared.is_some() && r.declared != version(name))
                .map(|(name, _)| name.clone())
                .collect();
            names
                .iter()
                .filter_map(|name| running.remove(name))
                .collect()
        };
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|name, _| version(name).is_some());
        let mut removed = false;
        for running in stale {
            let name = running.trigger.name.clone();
            halt(running).await;
            if version(&name).is_none() {
                tracing::info!(trigger = %name, "a trigger declared through the admin API was removed");
                removed = true;
            }
        }
        for trigger in declared {
            let name = trigger.name.as_str();
            let running = self
                .running
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(name);
            if running {
                continue;
            }
            let made = if self.configured.contains_key(name) {
                Err(format!(
                    "junction.toml declares a trigger '{name}' too; the file's runs"
                ))
            } else {
                junction_runtime::config::triggers::declared(name, &trigger.table)
                    .map_err(|problems| problems.join("; "))
                    .and_then(|config| resolve(&self.access, name, config))
            };
            match made {
                Ok(made) => {
                    self.refused
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(name);
                    tracing::info!(
                        trigger = name,
                        "running a trigger declared through the admin API"
                    );
                    self.launch(Arc::new(made), Some(trigger.updated_at));
                }
                Err(why) => {
                    let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
                    if refused.insert(name.to_owned(), trigger.updated_at)
                        != Some(trigger.updated_at)
                    {
                        tracing::error!(trigger = name, %why, "cannot run a trigger declared through the admin API");
                    }
                }
            }
        }
        Some(removed)
    }
}

/// Stops a running trigger's loops and waits for them (they give its lease up).
async fn halt(running: Running) {
    let _ = running.stop.send(true);
    for task in running.tasks {
        let _ = task.await;
    }
}

/// Connector `connector` that `access` loaded and its trigger operation `operation`
/// (one with `x-ms-trigger`), or why not (naming the connector's triggers).
pub(crate) fn trigger_operation<'a>(
    access: &'a Access,
    connector: &str,
    operation: &str,
) -> Result<(&'a Connector, &'a Operation), String> {
    let found = access
        .connector(connector)
        .ok_or_else(|| format!("connector '{connector}' is not loaded"))?;
    let op = found
        .operation(operation)
        .filter(|op| op.is_trigger())
        .ok_or_else(|| {
            let known: Vec<&str> = found
                .operations
                .iter()
                .filter(|op| op.is_trigger())
                .map(|op| op.id.as_str())
                .collect();
            format!(
                "'{operation}' is not a trigger of connector '{connector}' (its triggers: {})",
                junction_model::list_or_none(&known)
            )
        })?;
    Ok((found, op))
}

/// Trigger `name` of `config`, resolved against the connectors `access` loaded: its
/// connector and operation (one with `x-ms-trigger`), or why not.
pub(crate) fn resolve(
    access: &Access,
    name: &str,
    config: TriggerConfig,
) -> Result<Trigger, String> {
    let (connector, operation) = trigger_operation(access, &config.connector, &config.operation)
        .map_err(|why| format!("[trigger.{name}]: {why}"))?;
    let (connector, operation) = (connector.clone(), operation.clone());
    let fires = match operation
        .extensions
        .get("x-ms-trigger")
        .and_then(Value::as_str)
    {
        Some(kind) if kind.eq_ignore_ascii_case("single") => Fires::Single,
        _ => Fires::Batch,
    };
    let callback = subscribe::callback_path(&connector, &operation);
    if callback.is_some() && access.vault.derive_key("trigger hooks").is_none() {
        return Err(format!(
            "[trigger.{name}] is a webhook trigger: its callback URL is signed with a key derived from the store's master key, and none is configured (`[store] key_file`)"
        ));
    }
    Ok(Trigger {
        name: name.to_owned(),
        subscribers: config.webhooks.keys().cloned().collect(),
        config,
        connector,
        operation,
        fires,
        callback,
        checked: std::sync::atomic::AtomicBool::new(false),
        stored: watch::channel(0).0,
    })
}

/// The path prefix of what clients reach of triggers: `/triggers/{name}/events`
/// ([`stream`]) and `/triggers/{name}/webhooks` ([`webhooks`]).
pub(crate) const PREFIX: &str = "/triggers/";

/// Answers a client's request under [`PREFIX`]; the client needs the grant `trigger:NAME`.
pub(crate) async fn serve<B>(
    triggers: &Arc<Triggers>,
    request: http::Request<B>,
) -> Result<http::Response<axum::body::Body>, Error>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<junction_runtime::BoxError>,
{
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let not_found = || Error::new(ErrorKind::NotFound, format!("nothing is served at {path}"));
    let (name, rest) = path
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(not_found)?;
    let webhook = match rest {
        "events" | "webhooks" => None,
        _ => Some(
            rest.strip_prefix("webhooks/")
                .filter(|id| !id.is_empty() && !id.contains('/'))
                .ok_or_else(not_found)?,
        ),
    };
    let trigger = triggers
        .get(name)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("there is no trigger named '{name}'"),
            )
        })?
        .clone();
    let client = triggers.access.authenticate(&parts).await?;
    if !grants::allows_trigger(&client.grants, name) {
        return Err(Error::new(
            ErrorKind::Forbidden,
            format!(
                "client '{}' is not granted trigger '{name}' (grant `trigger:{name}`)",
                client.name
            ),
        ));
    }
    match (rest, webhook) {
        ("events", _) => stream::serve(triggers, trigger, &parts),
        (_, None) => webhooks::collection(triggers, &trigger, &client, &parts, body).await,
        (_, Some(id)) => webhooks::one(triggers, &trigger, &client, &parts, id).await,
    }
}

/// A lease holder's id: random, so that a restarted process is a new holder.
fn owner_id() -> String {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if host.is_empty() {
        format!("{}-{hex}", std::process::id())
    } else {
        format!("{host}-{}-{hex}", std::process::id())
    }
}

/// What a trigger's call of its operation is made with; stored with a subscription, it
/// is enough to end it after the trigger is gone.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TriggerCall {
    pub connector: String,
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    pub parameters: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

/// The request of a trigger's own call of its operation (a poll, a subscription): with
/// `made`'s parameters, body and connection, marked as the trigger's (`poll`: sent to a
/// `Location` instead).
async fn request(
    triggers: &Triggers,
    connector: &Connector,
    op: &Operation,
    made: &TriggerCall,
    poll: Option<TriggerPoll>,
) -> Result<http::Request<Full<Bytes>>, Error> {
    let inputs = Inputs {
        parameters: Some(&made.parameters),
        body: made.body.as_ref(),
    };
    let mut request = call::request(connector, op, &inputs)?;
    if let Some(connection) = &made.connection {
        let access = &triggers.access;
        let named = format!("{}/{connection}", connector.name);
        let row = match access.vault.find_connection(&named).await {
            Ok(row) => row,
            Err(_) => access
                .vault
                .find_connection(connection)
                .await
                .map_err(store_error)?,
        };
        let stored = Stored::resolve(access, &triggers.gateway.load(), row).await?;
        request.extensions_mut().insert(stored.resolved);
    }
    request.extensions_mut().insert(poll.unwrap_or_default());
    Ok(request)
}
