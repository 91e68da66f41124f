//! One trigger's loop: take its lease, wait until its next poll is due, poll, and record
//! what the poll found with the trigger's next cursor.
//!
//! A poll follows the contract of Power Platform's polling triggers: the first poll calls
//! the trigger operation; a `202` says "nothing yet": its `Location` (when it gives one)
//! is the next poll's URL, polled exactly as given (below the backend's base URL only),
//! and its `Retry-After` the wait; a `200` fires: its body is one event (`x-ms-trigger:
//! single`) or a list of them (`batch`: the body's array, or its `value` array), and its
//! `Location`, if any, is again the next URL (none: the operation again). Without a
//! `Retry-After` the trigger waits its `interval`. A failed poll is recorded with its
//! reason and repeated, from the same cursor, after the same wait.
//!
//! A trigger whose package gives it a `pollingtrigger` template keeps another cursor: the
//! query parameters its `triggerConfig` renders from the last answer. Its first poll only
//! sets that cursor (what exists already does not fire); each later one fires the items
//! at `triggerDataPath`, and moves the cursor when the answer names what it needs. An
//! answer with a next page (the property `x-ms-triggerConfig-nextLink` names, by default
//! `@odata.nextLink`) has that page polled at once (below the base URL only), firing its
//! items but leaving the cursor where the answer to the query put it; after the last page
//! the trigger polls the query again.
//!
//! A webhook trigger runs the same loop (lease, schedule, record), with a subscription
//! step ([`super::subscribe::step`]) in place of the poll.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use junction_runtime::config::NamedTransform;
use junction_runtime::resilience::retry::retry_after;
use junction_runtime::{Error, ErrorKind, Gateway, TriggerPoll};
use junction_store::TriggerRow;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::{Fires, Trigger, TriggerCall, Triggers};

/// How often, at most, a trigger with `keep` deletes its old events.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The longest a poll may take. (A poll longer than the trigger's lease may be repeated
/// by another replica meanwhile; only the holder's result is recorded.)
const POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// How soon a trigger retries when the store fails.
const STORE_RETRY: Duration = Duration::from_secs(2);

/// How often a paused trigger looks whether it was resumed.
const PAUSED_CHECK: Duration = Duration::from_secs(1);

/// What one poll found.
#[derive(Debug, PartialEq)]
pub(super) struct Polled {
    /// (deduplication key, JSON) of each event, in the backend's order.
    pub events: Vec<(String, String)>,
    /// The next poll's `Location`; `None`: the operation.
    pub location: Option<String>,
    /// The next poll's query parameters from a `pollingtrigger` template (JSON).
    pub query: Option<String>,
    /// A webhook trigger's subscription ([`super::TriggerCall`], JSON).
    pub subscription: Option<String>,
    pub wait: Duration,
    pub error: Option<String>,
}

/// Polls `trigger` until `stopped`, whenever this process holds its lease.
pub(super) async fn run(
    triggers: Arc<Triggers>,
    trigger: Arc<Trigger>,
    mut stopped: watch::Receiver<bool>,
) {
    let store = triggers.access.vault.store().clone();
    let owner = triggers.owner.as_str();
    let name = trigger.name.as_str();
    let lease = trigger.config.lease;
    let mut pruned_at: Option<std::time::Instant> = None;
    loop {
        let now = junction_store::now_ms();
        let until = now + millis(lease);
        let state = match store.lease_trigger(name, owner, now, until).await {
            Ok(Some(state)) => state,
            // Another replica polls it: look again before its lease could run out.
            Ok(None) => {
                if pause(&mut stopped, lease / 3).await {
                    continue;
                }
                break;
            }
            Err(error) => {
                tracing::warn!(trigger = name, %error, "cannot take the trigger's lease");
                if pause(&mut stopped, STORE_RETRY).await {
                    continue;
                }
                break;
            }
        };
        let due = state.next_poll_at - now;
        // A webhook trigger's stored subscription is checked as soon as a process starts.
        let unchecked = trigger.callback.is_some()
            && !trigger.checked.load(std::sync::atomic::Ordering::SeqCst);
        let wait = if state.paused {
            Some(PAUSED_CHECK)
        } else if due > 0 && !unchecked {
            // Wake to renew the lease while waiting.
            Some(Duration::from_millis(due.unsigned_abs()).min(lease / 3))
        } else {
            None
        };
        if let Some(wait) = wait {
            if pause(&mut stopped, wait).await {
                continue;
            }
            break;
        }
        let work = async {
            if trigger.callback.is_some() {
                super::subscribe::step(&triggers, &trigger, &state).await
            } else {
                poll(&triggers, &trigger, &state).await
            }
        };
        let polled = tokio::select! {
            polled = work => polled,
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        if let Some(error) = &polled.error {
            tracing::warn!(trigger = name, %error, "the trigger's poll failed");
        }
        let now = junction_store::now_ms();
        let next = TriggerRow {
            location: polled.location,
            query: polled.query,
            subscription: polled.subscription,
            next_poll_at: now + millis(polled.wait),
            last_error: polled.error,
            ..state
        };
        match store
            .record_poll(&next, &polled.events, &trigger.subscribers, now)
            .await
        {
            Ok(Some(stored)) => {
                if stored > 0 {
                    trigger.stored.send_modify(|n| *n += 1);
                    tracing::debug!(trigger = name, stored, "trigger events stored");
                }
                if let Some(keep) = trigger.config.keep
                    && pruned_at.is_none_or(|at| at.elapsed() >= keep.min(PRUNE_EVERY))
                {
                    pruned_at = Some(std::time::Instant::now());
                    match store.prune_events(name, now - millis(keep)).await {
                        Ok(0) => {}
                        Ok(pruned) => tracing::debug!(trigger = name, pruned, "old events deleted"),
                        Err(error) => {
                            tracing::warn!(trigger = name, %error, "cannot delete old events")
                        }
                    }
                }
            }
            Ok(None) => {
                tracing::warn!(
                    trigger = name,
                    "another replica took the trigger over during the poll; its result is dropped (it polls again)"
                );
            }
            Err(error) => {
                tracing::warn!(trigger = name, %error, "cannot record the trigger's poll; it is polled again");
                if !pause(&mut stopped, STORE_RETRY).await {
                    break;
                }
            }
        }
    }
    if let Err(error) = store.release_trigger(name, owner).await {
        tracing::debug!(trigger = name, %error, "cannot give the trigger's lease up");
    }
}

/// Waits `wait`; `false` when the server stops first.
async fn pause(stopped: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    if *stopped.borrow() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        _ = stopped.wait_for(|stop| *stop) => false,
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// One poll of `trigger` from `state`'s cursor, through the gateway like any call of the
/// operation (its connection's credentials, policies, guards), and what it found.
async fn poll(triggers: &Triggers, trigger: &Trigger, state: &TriggerRow) -> Polled {
    let interval = trigger.config.interval;
    let failed = |error: &Error, wait: Duration| Polled {
        events: Vec::new(),
        location: state.location.clone(),
        query: state.query.clone(),
        subscription: None,
        wait,
        error: Some(error.to_string()),
    };
    let request = match request(triggers, trigger, state).await {
        Ok(request) => request,
        Err(error) => return failed(&error, interval),
    };
    let table = triggers.gateway.load();
    let limit = usize::try_from(table.limits().max_response_bytes).unwrap_or(usize::MAX);
    let answered = match tokio::time::timeout(POLL_TIMEOUT, table.handle(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => return failed(&error, interval),
        Err(_) => {
            let error = Error::new(
                ErrorKind::UpstreamTimeout,
                format!("the poll took longer than {}s", POLL_TIMEOUT.as_secs()),
            );
            return failed(&error, interval);
        }
    };
    let (head, body) = answered.into_parts();
    let wait = retry_after(&head.headers).unwrap_or(interval);
    let location = head
        .headers
        .get(http::header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let error = Error::new(
                ErrorKind::UpstreamInvalid,
                format!("the poll's answer could not be read: {error}"),
            );
            return failed(&error, wait);
        }
    };
    let answered = Answered {
        status: head.status,
        location,
        wait,
        body: &body,
    };
    answer(&table, trigger, state, &answered)
}

/// A poll's answer, read.
struct Answered<'a> {
    status: http::StatusCode,
    location: Option<String>,
    wait: Duration,
    body: &'a Bytes,
}

/// What a poll's answer means for the trigger (see the module documentation).
fn answer(
    table: &Gateway,
    trigger: &Trigger,
    state: &TriggerRow,
    answered: &Answered<'_>,
) -> Polled {
    let Answered {
        status, wait, body, ..
    } = *answered;
    let location = answered.location.clone();
    let failed = |error: String| Polled {
        events: Vec::new(),
        location: state.location.clone(),
        query: state.query.clone(),
        subscription: None,
        wait,
        error: Some(error),
    };
    match status.as_u16() {
        202 => Polled {
            events: Vec::new(),
            location: location.or_else(|| state.location.clone()),
            query: state.query.clone(),
            subscription: None,
            wait,
            error: None,
        },
        200..=299 => {
            let value = if body.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                match serde_json::from_slice::<Value>(body) {
                    Ok(value) => value,
                    Err(error) => {
                        return failed(format!(
                            "the backend answered {status} with a body that is not JSON: {error}"
                        ));
                    }
                }
            };
            let (fired, query, next) =
                match table.polled(&trigger.connector.name, &trigger.operation.id, &value) {
                    None => (items(trigger.fires, value), state.query.clone(), None),
                    Some(Err(error)) => return failed(error.to_string()),
                    Some(Ok(polled)) => {
                        // The first poll sets the cursor (and fires nothing, nor follows
                        // pages); an answer that does not name what the cursor needs leaves
                        // it, and so does a page reached by a link: the cursor comes from the
                        // answer to the query.
                        let first = state.query.is_none();
                        let query = match polled.query {
                            Some(pairs) if state.location.is_none() => Some(
                                Value::Object(
                                    pairs
                                        .into_iter()
                                        .map(|(k, v)| (k, Value::String(v)))
                                        .collect(),
                                )
                                .to_string(),
                            ),
                            _ => state.query.clone().or_else(|| Some("{}".to_owned())),
                        };
                        if first {
                            (Vec::new(), query, None)
                        } else {
                            (polled.items, query, polled.next)
                        }
                    }
                };
            let events = keyed(trigger, fired);
            // A next page is polled at once; the last one goes back to the query.
            let (location, wait) = match next {
                Some(next) => (Some(next), Duration::ZERO),
                None => (location, wait),
            };
            Polled {
                events,
                location,
                query,
                subscription: None,
                wait,
                error: None,
            }
        }
        _ => {
            let text = String::from_utf8_lossy(body.get(..body.len().min(300)).unwrap_or_default())
                .into_owned();
            failed(format!("the backend answered {status}: {}", text.trim()))
        }
    }
}

/// The request of one poll: the operation with the trigger's parameters, its connection
/// attached, marked as a poll (continued at `state.location`).
async fn request(
    triggers: &Triggers,
    trigger: &Trigger,
    state: &TriggerRow,
) -> Result<http::Request<Full<Bytes>>, Error> {
    let mut parameters: Map<String, Value> = trigger
        .config
        .parameters
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    // A `pollingtrigger` cursor: its query parameters replace the configured ones.
    if let Some(Value::Object(query)) = state
        .query
        .as_deref()
        .and_then(|q| serde_json::from_str(q).ok())
    {
        parameters.extend(query);
    }
    let made = TriggerCall {
        connector: trigger.connector.name.clone(),
        operation: trigger.operation.id.clone(),
        connection: trigger.config.connection.clone(),
        parameters,
        body: None,
    };
    let poll = TriggerPoll {
        location: state.location.clone(),
        method: None,
    };
    super::request(
        triggers,
        &trigger.connector,
        &trigger.operation,
        &made,
        Some(poll),
    )
    .await
}

/// The events of a notification or an answer without a `pollingtrigger` template:
/// (deduplication key, JSON) of each item.
pub(super) fn events(trigger: &Trigger, body: Value) -> Vec<(String, String)> {
    keyed(trigger, items(trigger.fires, body))
}

/// Each item the trigger's `filter` keeps, with its deduplication key.
fn keyed(trigger: &Trigger, items: Vec<Value>) -> Vec<(String, String)> {
    let dedup = trigger.config.dedup_key.as_deref();
    // The filter's `$params`, made once for the answer.
    let filter = trigger.config.filter.as_ref().map(|filter| {
        let params = trigger.config.parameters.clone().into_iter().collect();
        (filter, Value::Object(params))
    });
    items
        .into_iter()
        .filter(|item| {
            filter
                .as_ref()
                .is_none_or(|(filter, params)| kept(&trigger.name, filter, params, item))
        })
        .map(|item| (key(dedup, &item), item.to_string()))
        .collect()
}

/// Whether `filter` (of trigger `trigger`, with the trigger's parameters as `params`) keeps
/// `item`: its first output is neither `false` nor `null`. An item the program fails on is
/// kept (and the failure logged): a filter's mistake must not lose events.
fn kept(trigger: &str, filter: &NamedTransform, params: &Value, item: &Value) -> bool {
    match filter.transform.run(item, params, &Value::Null) {
        Ok(Value::Null | Value::Bool(false)) => false,
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(trigger, key = %filter.key, %error, "the trigger's filter failed on an item; the item is kept");
            true
        }
    }
}

/// The events of one answer: the body itself (`single`), or each element of its list
/// (`batch`: the body when it is an array, else its `value` array, else the body alone).
fn items(fires: Fires, body: Value) -> Vec<Value> {
    match (fires, body) {
        (_, Value::Null) => Vec::new(),
        (Fires::Single, body) => vec![body],
        (Fires::Batch, Value::Array(items)) => items,
        (Fires::Batch, Value::Object(mut object)) => match object.remove("value") {
            Some(Value::Array(items)) => items,
            Some(other) => {
                object.insert("value".into(), other);
                vec![Value::Object(object)]
            }
            None => vec![Value::Object(object)],
        },
        (Fires::Batch, other) => vec![other],
    }
}

/// An item's deduplication key: the field `dedup` names (dots go into objects), by
/// default `id`, when it is a string or a number; else the SHA-256 of the item's JSON.
fn key(dedup: Option<&str>, item: &Value) -> String {
    let field = dedup.unwrap_or("id");
    let found = field
        .split('.')
        .try_fold(item, |value, name| value.get(name));
    match found {
        Some(Value::String(text)) => format!("{field}:{text}"),
        Some(Value::Number(number)) => format!("{field}:{number}"),
        _ => {
            let digest = Sha256::digest(item.to_string().as_bytes());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            format!("sha256:{hex}")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use serde_json::json;

    use super::*;

    #[test]
    fn answers_become_events_by_kind() {
        let list = json!({"value": [{"id": 1}, {"id": 2}], "@odata.nextLink": "x"});
        assert_eq!(items(Fires::Batch, list.clone()).len(), 2);
        assert_eq!(items(Fires::Single, list.clone()), vec![list]);
        assert_eq!(items(Fires::Batch, json!([1, 2, 3])).len(), 3);
        assert_eq!(
            items(Fires::Batch, json!({"id": 9})),
            vec![json!({"id": 9})]
        );
        assert!(items(Fires::Batch, Value::Null).is_empty());
    }

    #[test]
    fn the_filter_keeps_what_it_says_and_what_it_fails_on() {
        let filter = NamedTransform {
            transform: junction_policy::jq::Transform::compile(
                ".status == $params.status and (.total | . > 10)",
            )
            .unwrap(),
            key: "trigger.t.filter".into(),
        };
        let params = json!({"status": "open"});
        let keeps = |item: Value| kept("t", &filter, &params, &item);
        assert!(keeps(json!({"status": "open", "total": 12})));
        assert!(!keeps(json!({"status": "open", "total": 3})));
        assert!(!keeps(json!({"status": "closed", "total": 12})));
        let null = NamedTransform {
            transform: junction_policy::jq::Transform::compile(".missing").unwrap(),
            key: "trigger.t.filter".into(),
        };
        assert!(!kept("t", &null, &params, &json!({"id": 1})));
        let failing = NamedTransform {
            transform: junction_policy::jq::Transform::compile(".a.b").unwrap(),
            key: "trigger.t.filter".into(),
        };
        assert!(kept("t", &failing, &params, &json!({"a": "text"})));
    }

    #[test]
    fn items_are_known_by_id_field_or_hash() {
        assert_eq!(key(None, &json!({"id": "a1"})), "id:a1");
        assert_eq!(key(None, &json!({"id": 7})), "id:7");
        assert_eq!(
            key(Some("order.number"), &json!({"order": {"number": 12}})),
            "order.number:12"
        );
        let hashed = key(None, &json!({"name": "x"}));
        assert!(
            hashed.starts_with("sha256:") && hashed.len() == 71,
            "{hashed}"
        );
        assert_eq!(hashed, key(None, &json!({"name": "x"})));
        assert_ne!(hashed, key(None, &json!({"name": "y"})));
    }
}
