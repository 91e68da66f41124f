//! Grants: what a gateway client may call.
//!
//! A grant names a connector (optionally only some of its operations, and optionally the
//! shared connection its calls use), a view, or a trigger (its events). Written on the
//! command line as `CONNECTOR`, `CONNECTOR:OP1,OP2`, `CONNECTOR@CONNECTION`,
//! `CONNECTOR:OP@CONNECTION`, `view:NAME` or `trigger:NAME`.

use serde::{Deserialize, Serialize};

/// One grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<String>,
    /// A trigger whose events the holder may read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// Operation ids; empty means every operation of the connector.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<String>,
    /// The shared connection (id or `CONNECTOR/NAME`) calls use when the client has no
    /// connection of its own for the connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
}

impl Grant {
    /// Parses the command-line form.
    pub fn parse(text: &str) -> Result<Grant, String> {
        let text = text.trim();
        if let Some(view) = text.strip_prefix("view:") {
            if view.is_empty() {
                return Err(format!("grant `{text}` names no view"));
            }
            return Ok(Grant {
                view: Some(view.to_owned()),
                ..Grant::default()
            });
        }
        if let Some(trigger) = text.strip_prefix("trigger:") {
            if trigger.is_empty() {
                return Err(format!("grant `{text}` names no trigger"));
            }
            return Ok(Grant {
                trigger: Some(trigger.to_owned()),
                ..Grant::default()
            });
        }
        let (rest, connection) = match text.split_once('@') {
            Some((rest, connection)) if !connection.is_empty() => {
                (rest, Some(connection.to_owned()))
            }
            Some(_) => return Err(format!("grant `{text}` names no connection after `@`")),
            None => (text, None),
        };
        let (connector, operations) = match rest.split_once(':') {
            Some((connector, ops)) => (
                connector,
                ops.split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            None => (rest, Vec::new()),
        };
        if connector.is_empty() {
            return Err(format!(
                "grant `{text}` names no connector (write CONNECTOR[:OPERATION,…][@CONNECTION], view:NAME or trigger:NAME)"
            ));
        }
        Ok(Grant {
            connector: Some(connector.to_owned()),
            operations,
            connection,
            ..Grant::default()
        })
    }

    /// Whether this grant lets its holder call operation `operation` of `connector`.
    pub fn allows_operation(&self, connector: &str, operation: &str) -> bool {
        self.connector.as_deref() == Some(connector)
            && (self.operations.is_empty() || self.operations.iter().any(|o| o == operation))
    }
}

/// Whether `grants` let their holder reach connector `connector` at all.
pub fn allows_connector(grants: &[Grant], connector: &str) -> bool {
    grants
        .iter()
        .any(|g| g.connector.as_deref() == Some(connector))
}

/// Whether `grants` let their holder call view `view`.
pub fn allows_view(grants: &[Grant], view: &str) -> bool {
    grants.iter().any(|g| g.view.as_deref() == Some(view))
}

/// Whether `grants` let their holder read the events of trigger `trigger`.
pub fn allows_trigger(grants: &[Grant], trigger: &str) -> bool {
    grants.iter().any(|g| g.trigger.as_deref() == Some(trigger))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn parses_every_form() {
        let g = Grant::parse("pets:GetPet,ListPets@pets/shared").unwrap();
        assert_eq!(g.connector.as_deref(), Some("pets"));
        assert_eq!(g.operations, vec!["GetPet", "ListPets"]);
        assert_eq!(g.connection.as_deref(), Some("pets/shared"));
        assert!(g.allows_operation("pets", "GetPet"));
        assert!(!g.allows_operation("pets", "DeletePet"));
        assert!(!g.allows_operation("other", "GetPet"));
        let all = Grant::parse("pets").unwrap();
        assert!(all.allows_operation("pets", "DeletePet"));
        let view = Grant::parse("view:dashboard").unwrap();
        assert!(allows_view(&[view], "dashboard"));
        assert!(Grant::parse("").is_err());
        assert!(Grant::parse("pets@").is_err());
        assert!(Grant::parse("view:").is_err());
        let trigger = Grant::parse("trigger:new-orders").unwrap();
        assert!(allows_trigger(std::slice::from_ref(&trigger), "new-orders"));
        assert!(!allows_view(&[trigger], "new-orders"));
        assert!(Grant::parse("trigger:").is_err());
    }
}
