//! The gateway's own polls of trigger operations (`x-ms-trigger`): clients cannot call a
//! trigger, but a request carrying [`TriggerPoll`] (which only code in the process can
//! attach) is routed to the connector's triggers and, when the backend gave a `Location`
//! to poll next, sent there with the same credentials — only below the backend's base URL.

use serde_json::Value;

use crate::error::{Error, ErrorKind, InputLocation};
use crate::gateway::{ConnectorPlan, Gateway};
use crate::paging::{NextLink, next_link_target, under_base};

/// Marks a poll of a trigger operation, made by the trigger runner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TriggerPoll {
    /// The `Location` of the backend's last `202` (or `200`), or of a webhook
    /// subscription: called exactly as given instead of the operation's own path and query.
    pub location: Option<String>,
    /// The method of the call to `location` (default `GET`; `DELETE` ends a webhook
    /// subscription).
    pub method: Option<http::Method>,
}

impl Gateway {
    /// Checks a webhook notification for trigger `operation` of `connector` against the
    /// schema its package declares (`x-ms-notification-content`); `400` listing what is
    /// wrong.
    pub fn check_notification(
        &self,
        connector: &str,
        operation: &str,
        body: &Value,
    ) -> Result<(), Error> {
        let Some(plan) = self.connector_plan(connector) else {
            return Ok(());
        };
        let triggers = plan.operations.get(plan.actions..).unwrap_or_default();
        let Some(validator) = triggers
            .iter()
            .find(|op| op.id == operation)
            .and_then(|op| op.notification.as_deref())
        else {
            return Ok(());
        };
        let mut violations = Vec::new();
        crate::schema::check(validator, body, InputLocation::Body, None, &mut violations);
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(violations))
        }
    }

    /// What trigger `operation` of `connector` fires from a poll's answer `body`, and the
    /// query parameters of its next poll, when the package gives the trigger a
    /// `pollingtrigger` template; `None` otherwise.
    pub fn polled(
        &self,
        connector: &str,
        operation: &str,
        body: &Value,
    ) -> Option<Result<junction_policy::trigger::Polled, Error>> {
        let plan = self.connector_plan(connector)?;
        let op = plan
            .operations
            .get(plan.actions..)?
            .iter()
            .find(|op| op.id == operation)?;
        crate::policy::polled(plan, op, body)
    }
}

/// The backend path and query `location` names, when it is below the connector's base
/// URL; `upstream-invalid` (502) otherwise (the connection's credentials never go elsewhere).
pub(crate) fn follow(
    connector: &ConnectorPlan,
    location: &str,
    method: Option<&http::Method>,
) -> Result<NextLink, Error> {
    let refuse = |why: &str| {
        Error::new(
            ErrorKind::UpstreamInvalid,
            format!(
                "connector '{}': the trigger's Location `{location}` {why}",
                connector.name
            ),
        )
    };
    let Some(base) = &connector.base_url else {
        return Err(crate::upstream::no_target(connector));
    };
    let current = format!("{base}/");
    let relative = under_base(&current, base, location).ok_or_else(|| {
        refuse(&format!(
            "is not below the backend's base URL {base}: Junction sends the connection's credentials nowhere else"
        ))
    })?;
    let (path, query) = next_link_target(&relative).map_err(|why| refuse(&why))?;
    Ok(NextLink {
        path,
        query,
        method: method.cloned(),
    })
}
