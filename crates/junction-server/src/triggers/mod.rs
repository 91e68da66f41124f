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

/// The triggers of a running gateway.
#[derive(Debug)]
pub struct Triggers {
    pub(crate) triggers: HashMap<String, Arc<Trigger>>,
    pub(crate) access: Arc<Access>,
    pub(crate) gateway: SharedGateway,
    /// Who holds leases: this process, for its life.
    pub(crate) owner: String,
    /// Set when the server stops: polls and event streams end.
    pub(crate) stopped: watch::Receiver<bool>,
}

impl Triggers {
    /// The triggers of `config`, resolved against the connectors `access` loaded; `None`
    /// without a store. A trigger whose connector or operation is missing was refused when the
    /// gateway was compiled (`unknown-trigger`); here it is an error too.
    pub fn new(
        config: &Config,
        gateway: SharedGateway,
        access: Option<Arc<Access>>,
        stopped: watch::Receiver<bool>,
    ) -> Result<Option<Arc<Triggers>>, String> {
        // With a store and no trigger, the runner still ends the subscriptions of the
        // webhook triggers taken out of the configuration.
        let Some(access) = access else {
            if config.triggers.is_empty() {
                return Ok(None);
            }
            return Err("triggers keep their state in the store: add a `[store]` section".into());
        };
        let mut triggers = HashMap::new();
        for (name, trigger) in &config.triggers {
            let connector = access
                .connector(&trigger.connector)
                .ok_or_else(|| {
                    format!(
                        "[trigger.{name}]: connector '{}' is not loaded",
                        trigger.connector
                    )
                })?
                .clone();
            let operation = connector
                .operation(&trigger.operation)
                .filter(|op| op.is_trigger())
                .ok_or_else(|| {
                    format!(
                        "[trigger.{name}]: '{}' is not a trigger of connector '{}'",
                        trigger.operation, trigger.connector
                    )
                })?
                .clone();
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
            triggers.insert(
                name.clone(),
                Arc::new(Trigger {
                    name: name.clone(),
                    config: trigger.clone(),
                    connector,
                    operation,
                    fires,
                    callback,
                    checked: std::sync::atomic::AtomicBool::new(false),
                    subscribers: trigger.webhooks.keys().cloned().collect(),
                    stored: watch::channel(0).0,
                }),
            );
        }
        Ok(Some(Arc::new(Triggers {
            triggers,
            access,
            gateway,
            owner: owner_id(),
            stopped,
        })))
    }

    /// Starts polling every trigger and delivering its events, until the server stops;
    /// then gives their leases up.
    pub fn start(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = vec![tokio::spawn(subscribe::end_removed(self.clone()))];
        for trigger in self.triggers.values() {
            let (triggers, stopped) = (self.clone(), self.stopped.clone());
            tasks.push(tokio::spawn(poll::run(triggers, trigger.clone(), stopped)));
            let (triggers, stopped) = (self.clone(), self.stopped.clone());
            tasks.push(tokio::spawn(deliver::run(
                triggers,
                trigger.clone(),
                stopped,
            )));
        }
        tasks
    }

    /// The trigger named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Arc<Trigger>> {
        self.triggers.get(name)
    }
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
