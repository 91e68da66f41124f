//! `[trigger.NAME]`: the triggers the gateway runs itself, polling a connector's trigger
//! operation and keeping its events in the store (docs/triggers.md).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use indexmap::IndexMap;
use junction_model::Secret;
use serde::Deserialize;
use serde_json::Value;

use super::spanned::Spanned;
use super::{Builder, Scalar, position};

/// How often a trigger polls when its backend does not say (`Retry-After`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// How long a replica holds a trigger without renewing its lease, when `lease` is not set.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// One `[trigger.NAME]` section.
#[derive(Debug, Clone)]
pub struct TriggerConfig {
    /// `connector`: the connector whose trigger operation is polled.
    pub connector: String,
    /// `operation`: the trigger operation's id (one with `x-ms-trigger`).
    pub operation: String,
    /// `connection`: the stored connection (its name or id) whose credentials the polls
    /// use; `None`: the connector's configured connection (`[connector.NAME.connection]`).
    pub connection: Option<String>,
    /// `[trigger.NAME.parameters]`: the operation's parameters, by name.
    pub parameters: IndexMap<String, Value>,
    /// `[trigger.NAME.body]`: the JSON body of a webhook trigger's subscription (the
    /// gateway puts its callback URL where the package says, `x-ms-notification-url`).
    pub body: Option<Value>,
    /// `renew`: a webhook trigger subscribes anew this often (then ends the old
    /// subscription), for backends whose subscriptions expire.
    pub renew: Option<Duration>,
    /// `interval`: the wait between polls when the backend gives no `Retry-After`
    /// (default one minute).
    pub interval: Duration,
    /// `dedup_key`: the field of an item that identifies it (`id`, `data.id`); by default
    /// the item's `id` when it has one, else a hash of the whole item.
    pub dedup_key: Option<String>,
    /// `filter`: a jq program run on each item a poll or notification brings; the item
    /// becomes an event only when its first output is neither `false` nor `null`. It sees
    /// the trigger's parameters as `$params`.
    pub filter: Option<super::NamedTransform>,
    /// `keep`: how long an event is kept once every delivery of it was made; `None`: for
    /// ever.
    pub keep: Option<Duration>,
    /// `lease`: how long a replica holds the trigger without renewing it; when the one
    /// polling it dies, another takes over within this long (default 15 s).
    pub lease: Duration,
    /// `[trigger.NAME.webhook.SUBSCRIBER]`: where each event is delivered, by name.
    pub webhooks: IndexMap<String, WebhookConfig>,
    /// `webhook_hosts`: the hosts that webhooks clients register
    /// (`POST /triggers/NAME/webhooks`) may point at, written as `allowed_hosts` is;
    /// empty: clients cannot register webhooks.
    pub webhook_hosts: Vec<String>,
    /// The section's line, for messages.
    pub line: Option<u32>,
}

/// `[trigger.NAME.webhook.SUBSCRIBER]`: an endpoint every event of the trigger is POSTed
/// to, signed per the Standard Webhooks specification.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// `url`: where events are POSTed (`http://` or `https://`).
    pub url: String,
    /// `secret`: the signing key's bytes, from `whsec_` and base64 (24 to 64 bytes) as
    /// Standard Webhooks writes it. Never logged.
    pub key: Secret,
    /// `retry`: the waits between the attempts of a failing delivery; the last one
    /// repeats.
    pub retry: Vec<Duration>,
    /// `disable_after`: a delivery failing this long disables the webhook, and its
    /// pending deliveries go to the dead-letter list.
    pub disable_after: Duration,
    /// `timeout`: how long one attempt may take.
    pub timeout: Duration,
}

/// The waits between attempts when `retry` is not set.
pub const DEFAULT_RETRY: [Duration; 9] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(2 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(3600),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(4 * 3600),
    Duration::from_secs(8 * 3600),
];

/// How long a delivery may fail before its webhook is disabled, when `disable_after` is
/// not set.
pub const DEFAULT_DISABLE_AFTER: Duration = Duration::from_secs(3 * 24 * 3600);

/// One attempt's time limit when `timeout` is not set.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrigger {
    connector: Option<Spanned<String>>,
    operation: Option<Spanned<String>>,
    connection: Option<Spanned<String>>,
    #[serde(default)]
    parameters: IndexMap<String, Spanned<Scalar>>,
    body: Option<Value>,
    renew: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    dedup_key: Option<Spanned<String>>,
    filter: Option<Spanned<String>>,
    keep: Option<Spanned<String>>,
    lease: Option<Spanned<String>>,
    #[serde(default)]
    webhook: IndexMap<String, Spanned<RawWebhook>>,
    webhook_hosts: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    url: Option<Spanned<String>>,
    secret: Option<Spanned<String>>,
    retry: Option<Vec<Spanned<String>>>,
    disable_after: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

impl Builder<'_> {
    /// `[trigger.NAME]` sections: `connector` and `operation` are required, and triggers
    /// keep their state in the store, so they need `[store]`.
    pub(super) fn triggers(
        &mut self,
        raw: IndexMap<String, Spanned<RawTrigger>>,
        has_store: bool,
    ) -> IndexMap<String, TriggerConfig> {
        let mut triggers = IndexMap::new();
        for (name, section) in raw {
            let at = section.span().start;
            let (line, _) = position(self.text, at);
            let key = format!("trigger.{name}");
            if !has_store {
                self.problem_at(
                    at,
                    &key,
                    "triggers keep their cursors and events in the store: add a `[store]` section",
                );
            }
            if !valid_name(&name) {
                self.problem_at(
                    at,
                    &key,
                    "a trigger's name is letters, digits, `-` and `_` (it is part of URLs)",
                );
            }
            let raw = section.into_inner();
            let mut required = |value: Option<Spanned<String>>, field: &str| match value {
                Some(value) => self.string(&value, &format!("{key}.{field}")),
                None => {
                    self.problem_at(at, &format!("{key}.{field}"), "is required");
                    None
                }
            };
            let connector = required(raw.connector, "connector");
            let operation = required(raw.operation, "operation");
            let connection = raw
                .connection
                .and_then(|value| self.string(&value, &format!("{key}.connection")));
            let mut parameters = IndexMap::new();
            for (param, value) in raw.parameters {
                let json = match value.get_ref() {
                    Scalar::Integer(n) => Some(Value::from(*n)),
                    Scalar::Boolean(b) => Some(Value::from(*b)),
                    Scalar::String(_) => self
                        .scalar(&value, &format!("{key}.parameters.{param}"))
                        .map(Value::String),
                };
                if let Some(json) = json {
                    parameters.insert(param, json);
                }
            }
            let interval = self
                .duration(raw.interval, &format!("{key}.interval"))
                .unwrap_or(DEFAULT_INTERVAL);
            let renew = self.duration(raw.renew, &format!("{key}.renew"));
            let dedup_key = raw
                .dedup_key
                .and_then(|value| self.string(&value, &format!("{key}.dedup_key")));
            let filter = raw
                .filter
                .and_then(|code| self.transform(&code, &format!("{key}.filter")));
            let keep = self.duration(raw.keep, &format!("{key}.keep"));
            let lease = self
                .duration(raw.lease, &format!("{key}.lease"))
                .unwrap_or(DEFAULT_LEASE);
            let mut webhooks = IndexMap::new();
            for (subscriber, raw) in raw.webhook {
                let key = format!("{key}.webhook.{subscriber}");
                if !valid_name(&subscriber) || subscriber.starts_with(REGISTERED_PREFIX) {
                    self.problem_at(
                        raw.span().start,
                        &key,
                        format!("a webhook's name is letters, digits, `-` and `_`, and does not start with `{REGISTERED_PREFIX}` (the webhooks clients register are named so)"),
                    );
                }
                if let Some(webhook) = self.webhook(raw, &key) {
                    webhooks.insert(subscriber, webhook);
                }
            }
            let mut webhook_hosts = Vec::new();
            for value in raw.webhook_hosts.unwrap_or_default() {
                let k = format!("{key}.webhook_hosts");
                if let Some(host) = self.string(&value, &k) {
                    let checked = super::check_host_pattern(&host);
                    webhook_hosts.extend(self.check(&value, &k, checked));
                }
            }
            let (Some(connector), Some(operation)) = (connector, operation) else {
                continue;
            };
            triggers.insert(
                name,
                TriggerConfig {
                    connector,
                    operation,
                    connection,
                    parameters,
                    body: raw.body,
                    renew,
                    interval,
                    dedup_key,
                    filter,
                    keep,
                    lease,
                    webhooks,
                    webhook_hosts,
                    line,
                },
            );
        }
        triggers
    }
}

impl Builder<'_> {
    /// One `[trigger.NAME.webhook.SUBSCRIBER]`: `url` and `secret` are required.
    fn webhook(&mut self, raw: Spanned<RawWebhook>, key: &str) -> Option<WebhookConfig> {
        let at = raw.span().start;
        let raw = raw.into_inner();
        let url = match raw.url {
            Some(value) => self.string(&value, &format!("{key}.url")).and_then(|text| {
                let parsed = webhook_url(&text).map(|_| text);
                self.check(&value, &format!("{key}.url"), parsed)
            }),
            None => {
                self.problem_at(at, &format!("{key}.url"), "is required");
                None
            }
        };
        let secret = match raw.secret {
            Some(value) => self
                .string(&value, &format!("{key}.secret"))
                .and_then(|text| {
                    let checked = webhook_key(&text);
                    self.check(&value, &format!("{key}.secret"), checked)
                }),
            None => {
                self.problem_at(
                    at,
                    &format!("{key}.secret"),
                    "is required: the signing secret, `whsec_` and base64 (for example `whsec_$(openssl rand -base64 32)`)",
                );
                None
            }
        };
        let mut retry = Vec::new();
        for value in raw.retry.unwrap_or_default() {
            if let Some(wait) = self.duration(Some(value), &format!("{key}.retry")) {
                retry.push(wait);
            }
        }
        if retry.is_empty() {
            retry = DEFAULT_RETRY.to_vec();
        }
        let disable_after = self
            .duration(raw.disable_after, &format!("{key}.disable_after"))
            .unwrap_or(DEFAULT_DISABLE_AFTER);
        let timeout = self
            .duration(raw.timeout, &format!("{key}.timeout"))
            .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT);
        Some(WebhookConfig {
            url: url?,
            key: secret?,
            retry,
            disable_after,
            timeout,
        })
    }
}

/// Reads a trigger declared through the admin API: `table` holds what its
/// `[trigger.NAME]` section would, as JSON, and is read with the same checks. No `${VAR}`
/// is expanded (the gateway's environment is not the API's to read). The problems found,
/// each naming its key.
pub fn declared(
    name: &str,
    table: &serde_json::Map<String, Value>,
) -> Result<TriggerConfig, Vec<String>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Document {
        trigger: IndexMap<String, Spanned<RawTrigger>>,
    }
    let key = format!("trigger.{name}");
    let document = serde_json::json!({"trigger": {name: table}});
    // Through TOML text, so that the section's own reader (and its messages) apply.
    let text = toml::to_string(&document).map_err(|error| {
        vec![format!(
            "`{key}`: {error} (a null stands for nothing in a trigger: leave the key out)"
        )]
    })?;
    let raw: Document = toml::from_str(&text)
        .map_err(|error| vec![format!("`{key}`: {}", error.message().trim())])?;
    let lookup = |_: &str| None;
    let mut build = Builder {
        text: &text,
        lookup: &lookup,
        problems: Vec::new(),
    };
    let mut triggers = build.triggers(raw.trigger, true);
    if !build.problems.is_empty() {
        return Err(build.problems.into_iter().map(|p| p.message).collect());
    }
    let mut trigger = triggers
        .shift_remove(name)
        .ok_or_else(|| vec![format!("`{key}`: is not a trigger")])?;
    trigger.line = None;
    Ok(trigger)
}

/// The start of the names of the webhooks clients register (`wh_…`).
pub const REGISTERED_PREFIX: &str = "wh_";

impl TriggerConfig {
    /// Whether a webhook a client registers may point at `url` (`webhook_hosts`).
    pub fn webhook_host_allowed(&self, url: &url::Url) -> bool {
        let default = url.port_or_known_default().unwrap_or(443);
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        junction_policy::host::host_allowed(
            (host, url.port().unwrap_or(default)),
            default,
            &self.webhook_hosts,
        )
    }
}

/// A webhook's URL: `http://` or `https://` with a host.
pub fn webhook_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.has_host() => Ok(url),
        _ => Err(format!("`{text}` must be an http:// or https:// URL")),
    }
}

/// The key bytes of a Standard Webhooks secret (`whsec_` and base64 of 24 to 64 bytes),
/// kept as text (base64) in a [`Secret`].
pub fn webhook_key(text: &str) -> Result<Secret, String> {
    let encoded = text.strip_prefix("whsec_").ok_or_else(|| {
        "a webhook secret starts with `whsec_` (then base64 of 24 to 64 random bytes)".to_owned()
    })?;
    let bytes = STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
        .map_err(|_| "the part after `whsec_` is not base64".to_owned())?;
    if !(24..=64).contains(&bytes.len()) {
        return Err(format!(
            "the secret holds {} bytes; Standard Webhooks secrets hold 24 to 64",
            bytes.len()
        ));
    }
    Ok(Secret::new(STANDARD.encode(bytes)))
}

/// A name that can stand in a URL path segment as it is.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::path::Path;

    use super::*;
    use crate::config::{Config, ConfigError};

    fn parse(text: &str) -> Result<Config, Vec<String>> {
        match Config::parse(text, Path::new("junction.toml"), Path::new("conf"), &|_| {
            None
        }) {
            Ok(config) => Ok(config),
            Err(ConfigError::Invalid { problems, .. }) => Err(problems
                .into_iter()
                .map(|p| format!("{}: {}", p.line.unwrap_or(0), p.message))
                .collect()),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn triggers_are_read_and_checked() {
        let config = parse(
            "[store]\npath = \"s.db\"\n[trigger.new-orders]\nconnector = \"shop\"\noperation = \"OnNewOrder\"\ninterval = \"30s\"\ndedup_key = \"orderId\"\n[trigger.new-orders.parameters]\nstatus = \"open\"\nlimit = 20\n",
        )
        .unwrap();
        let trigger = &config.triggers["new-orders"];
        assert_eq!(trigger.connector, "shop");
        assert_eq!(trigger.operation, "OnNewOrder");
        assert_eq!(trigger.interval, Duration::from_secs(30));
        assert_eq!(trigger.dedup_key.as_deref(), Some("orderId"));
        assert_eq!(trigger.parameters["status"], "open");
        assert_eq!(trigger.parameters["limit"], 20);
        assert_eq!(trigger.line, Some(3));

        let found = parse("[trigger.x]\nconnector = \"shop\"\n").unwrap_err();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("add a `[store]` section"), "{found:?}");
        assert!(
            found[1].contains("`trigger.x.operation`: is required"),
            "{found:?}"
        );
        let found = parse(
            "[store]\npath = \"s.db\"\n[trigger.\"a b\"]\nconnector = \"c\"\noperation = \"o\"\ninterval = \"soon\"\n",
        )
        .unwrap_err();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("letters, digits"), "{found:?}");
        assert!(
            found[1].starts_with("6: `trigger.a b.interval`"),
            "{found:?}"
        );
        let base = "[store]\npath = \"s.db\"\n[trigger.t]\nconnector = \"c\"\noperation = \"o\"\n";
        let config = parse(&format!("{base}filter = '.total > 10'\nkeep = \"30d\"\n")).unwrap();
        assert_eq!(
            config.triggers["t"].keep,
            Some(Duration::from_secs(30 * 24 * 3600))
        );
        let filter = config.triggers["t"].filter.as_ref().unwrap();
        assert_eq!(filter.key, "trigger.t.filter");
        let found = parse(&format!("{base}filter = '.total >'\n")).unwrap_err();
        assert!(found[0].starts_with("6: `trigger.t.filter`"), "{found:?}");
    }

    #[test]
    fn a_declared_trigger_is_read_like_its_section() {
        let table = |value: Value| value.as_object().unwrap().clone();
        let trigger = declared(
            "orders",
            &table(serde_json::json!({
                "connector": "shop", "operation": "OnNewOrder", "interval": "30s",
                "parameters": {"status": "open", "limit": 20},
                "filter": ".total > 10",
                "webhook": {"app": {"url": "https://app.example.com/h",
                                    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
                "body": {"notificationUrl": "", "events": ["created"]}
            })),
        )
        .unwrap();
        assert_eq!(trigger.interval, Duration::from_secs(30));
        assert_eq!(trigger.parameters["limit"], 20);
        assert_eq!(trigger.webhooks["app"].url, "https://app.example.com/h");
        assert_eq!(trigger.body.as_ref().unwrap()["events"][0], "created");
        assert_eq!(trigger.line, None);

        let found = declared(
            "orders",
            &table(
                serde_json::json!({"connector": "shop", "interval": "soon", "token": "${SECRET}"}),
            ),
        )
        .unwrap_err();
        assert!(found[0].contains("unknown field `token`"), "{found:?}");
        let found = declared(
            "orders",
            &table(serde_json::json!({"connector": "shop", "interval": "soon",
                                      "parameters": {"key": "${HOME}"}})),
        )
        .unwrap_err();
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("`trigger.orders.operation`: is required")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("`trigger.orders.interval`")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("`trigger.orders.parameters.key`") && p.contains("HOME")),
            "{found:?}"
        );
        let found = declared(
            "a b",
            &table(serde_json::json!({"connector": "c", "operation": "o"})),
        )
        .unwrap_err();
        assert!(found[0].contains("letters, digits"), "{found:?}");
        let found = declared("t", &table(serde_json::json!({"connector": null}))).unwrap_err();
        assert!(found[0].contains("leave the key out"), "{found:?}");
    }

    #[test]
    fn webhooks_need_a_url_and_a_standard_webhooks_secret() {
        let base = "[store]\npath = \"s.db\"\n[trigger.t]\nconnector = \"c\"\noperation = \"o\"\n";
        let config = parse(&format!(
            "{base}[trigger.t.webhook.app]\nurl = \"https://app.example.com/hook\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nretry = [\"1s\", \"1m\"]\n"
        ))
        .unwrap();
        let webhook = &config.triggers["t"].webhooks["app"];
        assert_eq!(webhook.url, "https://app.example.com/hook");
        assert_eq!(webhook.key.expose(), "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(
            webhook.retry,
            [Duration::from_secs(1), Duration::from_secs(60)]
        );
        assert_eq!(webhook.disable_after, DEFAULT_DISABLE_AFTER);

        let found = parse(&format!(
            "{base}[trigger.t.webhook.a]\nurl = \"ftp://x\"\nsecret = \"plain\"\n[trigger.t.webhook.b]\nsecret = \"whsec_c2hvcnQ=\"\n"
        ))
        .unwrap_err();
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(
            found[0].contains("must be an http:// or https:// URL"),
            "{found:?}"
        );
        assert!(found[1].contains("starts with `whsec_`"), "{found:?}");
        assert!(
            found[2].contains("`trigger.t.webhook.b.url`: is required"),
            "{found:?}"
        );
        assert!(found[3].contains("holds 5 bytes"), "{found:?}");
        // A secret never appears in a message.
        assert!(
            found
                .iter()
                .all(|p| !p.contains("plain") && !p.contains("c2hvcnQ"))
        );
    }
}
