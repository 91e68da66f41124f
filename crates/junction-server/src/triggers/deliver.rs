//! Deliveries: each stored event POSTed to each webhook of its trigger
//! (`[trigger.NAME.webhook.SUBSCRIBER]`), signed per the Standard Webhooks specification,
//! retried on the webhook's schedule until it is accepted.
//!
//! A delivery is created with its event, in the poll's transaction, so no stored event
//! goes undelivered. It carries the same `webhook-id` (`evt_` and the event's number) on
//! every attempt, so a receiver can drop a repeat; `webhook-timestamp` is the attempt's
//! time and `webhook-signature` is `v1,` and the base64 HMAC-SHA256 of
//! `ID.TIMESTAMP.BODY` under the webhook's secret. A 2xx accepts it. Anything else waits
//! the schedule's next step (or the webhook's `Retry-After`, when longer) and tries
//! again; a delivery that has been failing for `disable_after` disables the webhook: its
//! pending deliveries go to the dead-letter list, as do new events for it, until
//! `junction deliveries redeliver` enables it again. Like polls, deliveries are made by
//! the replica holding the trigger's lease; one cut off by a crash is made again
//! (at least once). The webhooks clients registered ([`super::webhooks`]) are read from
//! the store with each batch and delivered to the same way, on the default schedule.
//! An attempt's outcome is recorded only over the delivery it read: one disabled,
//! redelivered or removed meanwhile stays as it is.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt;
use hmac::{KeyInit, Mac};
use junction_runtime::config::triggers::{
    DEFAULT_DISABLE_AFTER, DEFAULT_RETRY, DEFAULT_WEBHOOK_TIMEOUT, REGISTERED_PREFIX, WebhookConfig,
};
use junction_runtime::resilience::retry::retry_after;
use junction_store::{DeliveryRow, Store};
use sha2::Sha256;
use tokio::sync::watch;

use super::{Trigger, Triggers};

/// Deliveries read from the store at once.
const BATCH: i64 = 64;

/// Attempts made at once, per trigger.
const CONCURRENCY: usize = 8;

/// How often the delivery loop looks for due deliveries when nothing wakes it.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Delivers `trigger`'s events until `stopped`, whenever this process holds its lease.
pub(super) async fn run(
    triggers: Arc<Triggers>,
    trigger: Arc<Trigger>,
    mut stopped: watch::Receiver<bool>,
) {
    if trigger.config.webhooks.is_empty() && trigger.config.webhook_hosts.is_empty() {
        return;
    }
    let store = triggers.access.vault.store().clone();
    let mut notices = trigger.stored.subscribe();
    // A redirect is an answer like any other non-2xx: it is never followed, so a webhook
    // (one a client registered, say) cannot send the gateway's POSTs somewhere else.
    let http = match reqwest::Client::builder()
        .user_agent(junction_runtime::USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(trigger = %trigger.name, %error, "cannot build the webhook client");
            return;
        }
    };
    loop {
        let now = junction_store::now_ms();
        let holder = match store.trigger(&trigger.name).await {
            Ok(state) => state.is_some_and(|s| {
                s.lease_owner.as_deref() == Some(triggers.owner.as_str())
                    && s.lease_until.is_some_and(|until| until > now)
            }),
            Err(error) => {
                tracing::warn!(trigger = %trigger.name, %error, "cannot read the trigger's state");
                false
            }
        };
        let due = if holder {
            match store.due_deliveries(&trigger.name, now, BATCH).await {
                Ok(due) => due,
                Err(error) => {
                    tracing::warn!(trigger = %trigger.name, %error, "cannot read the due deliveries");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        if due.is_empty() {
            // Until the next retry is due, a poll stores events, or a second has passed
            // (a replay, another replica's events, the lease).
            let next = match store.next_delivery_at(&trigger.name).await {
                Ok(Some(at)) if holder => Duration::from_millis((at - now).max(0).unsigned_abs()),
                _ => CHECK_EVERY,
            };
            tokio::select! {
                _ = notices.changed() => {}
                () = tokio::time::sleep(next.min(CHECK_EVERY)) => {}
                _ = stopped.wait_for(|stop| *stop) => break,
            }
            continue;
        }
        let registered = if due
            .iter()
            .any(|(row, _)| row.subscriber.starts_with(REGISTERED_PREFIX))
        {
            registered(&triggers, &trigger).await
        } else {
            HashMap::new()
        };
        let attempts = due.into_iter().map(|(row, payload)| {
            let (http, store, trigger, registered) = (&http, &store, &trigger, &registered);
            async move {
                let webhook = trigger
                    .config
                    .webhooks
                    .get(&row.subscriber)
                    .or_else(|| registered.get(&row.subscriber));
                let Some(webhook) = webhook else {
                    // A webhook taken out of the configuration: its deliveries wait for it.
                    return;
                };
                let outcome = attempt(http, webhook, row.event_id, &payload).await;
                record(store.as_ref(), trigger, webhook, row, outcome).await;
            }
        });
        let all = futures_util::stream::iter(attempts)
            .buffer_unordered(CONCURRENCY)
            .for_each(|()| async {});
        tokio::select! {
            () = all => {}
            _ = stopped.wait_for(|stop| *stop) => break,
        }
    }
}

/// The webhooks clients registered with `trigger`, by id, with their keys opened; the
/// default schedule applies to them.
async fn registered(triggers: &Triggers, trigger: &Trigger) -> HashMap<String, WebhookConfig> {
    let vault = &triggers.access.vault;
    let rows = match vault.store().webhooks(&trigger.name).await {
        Ok(rows) => rows,
        Err(error) => {
            tracing::warn!(trigger = %trigger.name, %error, "cannot read the registered webhooks");
            return HashMap::new();
        }
    };
    let mut webhooks = HashMap::new();
    for row in rows {
        match vault.webhook_key(&row) {
            Ok(key) => {
                let webhook = WebhookConfig {
                    url: row.url,
                    key,
                    retry: DEFAULT_RETRY.to_vec(),
                    disable_after: DEFAULT_DISABLE_AFTER,
                    timeout: DEFAULT_WEBHOOK_TIMEOUT,
                };
                webhooks.insert(row.id, webhook);
            }
            Err(error) => {
                tracing::warn!(trigger = %trigger.name, webhook = %row.id, %error, "cannot open a registered webhook's secret");
            }
        }
    }
    webhooks
}

/// How one attempt went.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Failed {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
}

/// The `webhook-id` of an event: the same on every attempt and for every webhook.
pub(crate) fn message_id(event_id: i64) -> String {
    format!("evt_{event_id}")
}

/// `v1,` and the base64 HMAC-SHA256 of `ID.TIMESTAMP.BODY` under `key` (base64).
pub(crate) fn signature(key: &str, id: &str, timestamp: u64, body: &str) -> String {
    let key = STANDARD.decode(key).unwrap_or_default();
    let mut mac = match hmac::Hmac::<Sha256>::new_from_slice(&key) {
        Ok(mac) => mac,
        // HMAC takes keys of any length.
        Err(_) => return String::new(),
    };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// POSTs event `event_id` (`payload`) to `webhook`, signed.
async fn attempt(
    http: &reqwest::Client,
    webhook: &WebhookConfig,
    event_id: i64,
    payload: &str,
) -> Outcome {
    let id = message_id(event_id);
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let sent = http
        .post(&webhook.url)
        .timeout(webhook.timeout)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            signature(webhook.key.expose(), &id, timestamp, payload),
        )
        .body(payload.to_owned())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => Outcome::Accepted,
        Ok(response) => Outcome::Failed {
            status: Some(response.status().as_u16()),
            error: format!("the webhook answered {}", response.status()),
            retry_after: retry_after(response.headers()),
        },
        // Without the URL: its query may hold a token.
        Err(error) => Outcome::Failed {
            status: None,
            error: format!("the webhook could not be reached: {}", error.without_url()),
            retry_after: None,
        },
    }
}

/// Stores what an attempt did to `row`: delivered; or its next attempt; or, failing for
/// `disable_after`, the webhook disabled and its pending deliveries dead.
async fn record(
    store: &dyn Store,
    trigger: &Trigger,
    webhook: &WebhookConfig,
    mut row: DeliveryRow,
    outcome: Outcome,
) {
    let now = junction_store::now_ms();
    let read_at = row.updated_at;
    row.attempts += 1;
    row.updated_at = now;
    let mut disable = None;
    match outcome {
        Outcome::Accepted => {
            row.state = "delivered".into();
            row.last_error = None;
        }
        Outcome::Failed {
            status,
            error,
            retry_after,
        } => {
            let since = *row.first_failed_at.get_or_insert(now);
            row.last_status = status.map(i64::from);
            let failing = Duration::from_millis((now - since).unsigned_abs());
            tracing::debug!(trigger = %trigger.name, subscriber = %row.subscriber, event = row.event_id, %error, "a delivery failed");
            if failing >= webhook.disable_after {
                let reason = format!(
                    "the webhook has failed for {}s (disable_after): {error}",
                    failing.as_secs()
                );
                row.state = "dead".into();
                row.last_error = Some(reason.clone());
                disable = Some(reason);
            } else {
                let step = usize::try_from(row.attempts - 1).unwrap_or(usize::MAX);
                let scheduled = webhook
                    .retry
                    .get(step)
                    .or(webhook.retry.last())
                    .copied()
                    .unwrap_or(CHECK_EVERY);
                let wait = retry_after
                    .map_or(scheduled, |asked| asked.min(MAX_RETRY_AFTER).max(scheduled));
                row.next_attempt_at = now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
                row.last_error = Some(error);
            }
        }
    }
    match store.update_delivery(&row, read_at).await {
        Ok(true) => {}
        Ok(false) => {
            // Disabled, redelivered or attempted elsewhere meanwhile: that stands.
            tracing::debug!(trigger = %trigger.name, subscriber = %row.subscriber, event = row.event_id, "a delivery changed during its attempt; the attempt's outcome is dropped");
            return;
        }
        Err(error) => {
            tracing::warn!(trigger = %trigger.name, %error, "cannot record a delivery");
            return;
        }
    }
    if let Some(reason) = disable {
        tracing::warn!(trigger = %trigger.name, subscriber = %row.subscriber, %reason, "a webhook is disabled");
        if let Err(error) = store
            .disable_subscriber(&trigger.name, &row.subscriber, &reason, now)
            .await
        {
            tracing::warn!(trigger = %trigger.name, %error, "cannot disable a webhook");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn signs_like_the_specification() {
        // The example of the Standard Webhooks specification (webhook-id, timestamp, body,
        // secret `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`).
        let key = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
