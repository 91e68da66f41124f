//! Webhook triggers: an operation with `x-ms-trigger` whose body takes a callback URL
//! (`x-ms-notification-url`). Instead of polling, the trigger keeps one subscription:
//! it calls the operation with its own callback URL (`/hooks/NAME/TOKEN`, [`super::hooks`])
//! and stores the `Location` of the answer; after a restart it re-checks that `Location`
//! (`GET`) instead of subscribing again; every `renew` it subscribes anew and ends the old
//! subscription (`DELETE` to its `Location`); and when the trigger is taken out of the
//! configuration, the next start ends its subscription. The step runs in the trigger's
//! loop ([`super::poll`]), under its lease, so one replica keeps the subscription.

use std::sync::atomic::Ordering;
use std::time::Duration;

use hmac::{KeyInit, Mac};
use junction_model::{Connector, Operation};
use junction_runtime::{Error, TriggerPoll};
use junction_store::TriggerRow;
use serde_json::{Map, Value};
use sha2::Sha256;

use super::poll::Polled;
use super::{Trigger, TriggerCall, Triggers, request};

/// How often a subscription without `renew` is checked again.
const RECHECK: Duration = Duration::from_secs(3600);

/// Where the subscription body takes the callback URL: the property path of the field
/// marked `x-ms-notification-url` in the operation's body schema (`$ref`s followed).
pub(crate) fn callback_path(connector: &Connector, op: &Operation) -> Option<Vec<String>> {
    fn marked(schema: &Value) -> bool {
        matches!(schema.get("x-ms-notification-url"), Some(Value::Bool(true)))
            || schema.get("x-ms-notification-url").and_then(Value::as_str) == Some("true")
    }
    fn find(schema: &Value, definitions: &Map<String, Value>, depth: usize) -> Option<Vec<String>> {
        let schema = resolve(schema, definitions);
        if depth > 8 {
            return None;
        }
        for (name, property) in schema.get("properties")?.as_object()? {
            if marked(property) || marked(resolve(property, definitions)) {
                return Some(vec![name.clone()]);
            }
            if let Some(mut rest) = find(property, definitions, depth + 1) {
                rest.insert(0, name.clone());
                return Some(rest);
            }
        }
        None
    }
    fn resolve<'a>(schema: &'a Value, definitions: &'a Map<String, Value>) -> &'a Value {
        schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/definitions/"))
            .and_then(|name| definitions.get(name))
            .unwrap_or(schema)
    }
    find(&op.body.as_ref()?.schema, &connector.definitions, 0)
}

/// The secret part of trigger `name`'s callback URL: an HMAC of its name under a key
/// derived from the store's master key (the same on every replica and across restarts).
pub(crate) fn token(triggers: &Triggers, name: &str) -> Option<String> {
    let key = triggers.access.vault.derive_key("trigger hooks")?;
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key.as_ref()).ok()?;
    mac.update(name.as_bytes());
    let digest = mac.finalize().into_bytes();
    Some(digest.iter().take(20).map(|b| format!("{b:02x}")).collect())
}

/// One step of a webhook trigger, made when it is due and once when a process starts:
/// subscribe when it has no subscription; at a start, or every hour without `renew`,
/// check that the stored subscription is still there (`GET` its `Location`), subscribing
/// again when the backend no longer knows it (`404`, `410`); when `renew` is due,
/// subscribe anew and end the old one.
pub(super) async fn step(triggers: &Triggers, trigger: &Trigger, state: &TriggerRow) -> Polled {
    let mut wait = trigger.config.renew.unwrap_or(RECHECK);
    let first = !trigger.checked.swap(true, Ordering::SeqCst);
    let Some(current) = state
        .location
        .as_deref()
        .filter(|_| state.subscription.is_some())
    else {
        return subscribe(triggers, trigger, None, wait).await;
    };
    let due = state.next_poll_at - junction_store::now_ms();
    if first && due > 0 {
        // A start, not the schedule: after the check the renewal stays when it was.
        wait = Duration::from_millis(due.unsigned_abs());
    } else if trigger.config.renew.is_some() {
        return subscribe(triggers, trigger, Some(current), wait).await;
    }
    let checked = call_location(triggers, trigger, current, http::Method::GET).await;
    match checked {
        Ok(404 | 410) => subscribe(triggers, trigger, None, wait).await,
        Ok(_) => Polled {
            events: Vec::new(),
            location: state.location.clone(),
            query: None,
            subscription: state.subscription.clone(),
            wait,
            error: None,
        },
        Err(error) => Polled {
            events: Vec::new(),
            location: state.location.clone(),
            query: None,
            subscription: state.subscription.clone(),
            wait: trigger.config.interval,
            error: Some(error.to_string()),
        },
    }
}

/// Subscribes with the trigger's callback URL; then ends `previous` (a renewal).
async fn subscribe(
    triggers: &Triggers,
    trigger: &Trigger,
    previous: Option<&str>,
    wait: Duration,
) -> Polled {
    let failed = |error: String| Polled {
        events: Vec::new(),
        location: previous.map(str::to_owned),
        query: None,
        subscription: None,
        wait: trigger.config.interval,
        error: Some(error),
    };
    let subscription = subscription_of(triggers, trigger);
    let request = match request(
        triggers,
        &trigger.connector,
        &trigger.operation,
        &subscription,
        None,
    )
    .await
    {
        Ok(request) => request,
        Err(error) => return failed(error.to_string()),
    };
    let answered = match triggers.gateway.load().handle(request).await {
        Ok(answered) => answered,
        Err(error) => return failed(error.to_string()),
    };
    if !answered.status().is_success() {
        return failed(format!(
            "the backend refused the subscription: {}",
            answered.status()
        ));
    }
    let Some(location) = answered
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return failed(format!(
            "the subscription's answer ({}) has no Location: without it the subscription could never be ended",
            answered.status()
        ));
    };
    tracing::info!(trigger = %trigger.name, %location, "webhook trigger subscribed");
    if let Some(previous) = previous
        && let Err(error) = call_location(triggers, trigger, previous, http::Method::DELETE).await
    {
        tracing::warn!(trigger = %trigger.name, %error, "cannot end the previous subscription");
    }
    Polled {
        events: Vec::new(),
        location: Some(location),
        query: None,
        subscription: serde_json::to_string(&subscription).ok(),
        wait,
        error: None,
    }
}

/// What the trigger subscribes with: its parameters, connection, and body with the
/// callback URL.
fn subscription_of(triggers: &Triggers, trigger: &Trigger) -> TriggerCall {
    TriggerCall {
        connector: trigger.connector.name.clone(),
        operation: trigger.operation.id.clone(),
        connection: trigger.config.connection.clone(),
        parameters: trigger
            .config
            .parameters
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        body: Some(callback_body(triggers, trigger)),
    }
}

/// The configured body with the callback URL put where the package wants it.
fn callback_body(triggers: &Triggers, trigger: &Trigger) -> Value {
    let mut body = trigger
        .config
        .body
        .clone()
        .unwrap_or_else(|| Value::Object(Map::new()));
    let url = format!(
        "{}/hooks/{}/{}",
        triggers.access.data_url(),
        trigger.name,
        token(triggers, &trigger.name).unwrap_or_default()
    );
    let Some(path) = &trigger.callback else {
        return body;
    };
    let mut at = &mut body;
    for (index, name) in path.iter().enumerate() {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        let Value::Object(object) = at else {
            break;
        };
        if index + 1 == path.len() {
            object.insert(name.clone(), Value::String(url.clone()));
            break;
        }
        at = object
            .entry(name.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    body
}

/// Calls the subscription at `location` with `method` (`GET` to check, `DELETE` to end
/// it) with the trigger's connection; the status the backend answered.
async fn call_location(
    triggers: &Triggers,
    trigger: &Trigger,
    location: &str,
    method: http::Method,
) -> Result<u16, Error> {
    let subscription = subscription_of(triggers, trigger);
    let poll = TriggerPoll {
        location: Some(location.to_owned()),
        method: Some(method),
    };
    let request = request(
        triggers,
        &trigger.connector,
        &trigger.operation,
        &subscription,
        Some(poll),
    )
    .await?;
    let answered = triggers.gateway.load().handle(request).await?;
    Ok(answered.status().as_u16())
}

/// Ends the subscriptions of webhook triggers no longer configured nor declared (their
/// stored state says how they were made), and forgets their state.
pub(super) async fn end_removed(triggers: &Triggers) {
    let store = triggers.access.vault.store().clone();
    let rows = match store.triggers().await {
        Ok(rows) => rows,
        Err(error) => {
            tracing::warn!(%error, "cannot list the stored triggers");
            return;
        }
    };
    let now = junction_store::now_ms();
    for row in rows {
        if triggers.get(&row.name).is_some() || triggers.is_refused(&row.name) {
            continue;
        }
        // Still run by another replica (which has not seen the removal yet): it ends the
        // subscription itself once it has stopped and given the lease up.
        let held = row
            .lease_owner
            .as_deref()
            .is_some_and(|o| o != triggers.owner)
            && row.lease_until.is_some_and(|until| until > now);
        if held {
            continue;
        }
        let (Some(location), Some(made)) = (&row.location, &row.subscription) else {
            continue;
        };
        let Ok(subscription) = serde_json::from_str::<TriggerCall>(made) else {
            continue;
        };
        let Some(connector) = triggers.access.connector(&subscription.connector) else {
            tracing::warn!(trigger = %row.name, connector = %subscription.connector, "cannot end a removed trigger's subscription: its connector is not loaded");
            continue;
        };
        let Some(op) = connector.operation(&subscription.operation) else {
            continue;
        };
        let poll = TriggerPoll {
            location: Some(location.clone()),
            method: Some(http::Method::DELETE),
        };
        let ended = match request(triggers, connector, op, &subscription, Some(poll)).await {
            Ok(request) => triggers
                .gateway
                .load()
                .handle(request)
                .await
                .map(|r| r.status()),
            Err(error) => Err(error),
        };
        match ended {
            Ok(status)
                if status.is_success() || status.as_u16() == 404 || status.as_u16() == 410 =>
            {
                tracing::info!(trigger = %row.name, %location, "ended the subscription of a removed trigger");
                if let Err(error) = store.delete_trigger(&row.name).await {
                    tracing::warn!(trigger = %row.name, %error, "cannot forget a removed trigger");
                }
            }
            Ok(status) => {
                tracing::warn!(trigger = %row.name, %status, "the backend did not end a removed trigger's subscription");
            }
            Err(error) => {
                tracing::warn!(trigger = %row.name, %error, "cannot end a removed trigger's subscription");
            }
        }
    }
}
