//! `[trigger.NAME]`: the triggers the gateway runs itself, polling a connector's trigger
//! operation and keeping its events in the store (docs/triggers.md).

use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;

use super::spanned::Spanned;
use super::{Builder, Scalar, position};

/// How often a trigger polls when its backend does not say (`Retry-After`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// One `[trigger.NAME]` section.
#[derive(Debug, Clone, PartialEq)]
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
    /// `interval`: the wait between polls when the backend gives no `Retry-After`
    /// (default one minute).
    pub interval: Duration,
    /// `dedup_key`: the field of an item that identifies it (`id`, `data.id`); by default
    /// the item's `id` when it has one, else a hash of the whole item.
    pub dedup_key: Option<String>,
    /// The section's line, for messages.
    pub line: Option<u32>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrigger {
    connector: Option<Spanned<String>>,
    operation: Option<Spanned<String>>,
    connection: Option<Spanned<String>>,
    #[serde(default)]
    parameters: IndexMap<String, Spanned<Scalar>>,
    interval: Option<Spanned<String>>,
    dedup_key: Option<Spanned<String>>,
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
            let dedup_key = raw
                .dedup_key
                .and_then(|value| self.string(&value, &format!("{key}.dedup_key")));
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
                    interval,
                    dedup_key,
                    line,
                },
            );
        }
        triggers
    }
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
    }
}
