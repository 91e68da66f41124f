//! The `pollingtrigger` template on one poll's answer: the items it fires
//! (`triggerDataPath`), the query parameters of the next poll (`triggerConfig`,
//! rendered with `@triggerBody()` as this answer) and the link to the answer's next page
//! (the property `x-ms-triggerConfig-nextLink` names, `@odata.nextLink` by default).

use serde_json::Value;

use crate::eval::{self, Env, EvalError, Evaluated, Scope};
use crate::expr::{Path, Piece, Root, Template};
use crate::json;

/// What the template makes of one answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Polled {
    /// The items the answer fires: the array `triggerDataPath` names (a single value is one
    /// item; nothing, or `null`, none).
    pub items: Vec<Value>,
    /// The next poll's query parameters, by name; `None` when an expression names
    /// nothing in this answer (`@{triggerBody().value[0].time}` of an empty list): the
    /// cursor stays where it was.
    pub query: Option<Vec<(String, String)>>,
    /// The URL of the answer's next page, when it has one.
    pub next: Option<String>,
}

/// The property of an answer that links to its next page, when the template's
/// `x-ms-triggerConfig-nextLink` names none.
pub const DEFAULT_NEXT_LINK: &str = "@odata.nextLink";

/// Runs the template's `config` (`triggerConfig`), `next_link`
/// (`x-ms-triggerConfig-nextLink`) and `data` (`triggerDataPath`) on `body`, the answer of
/// a poll; connection values come from `env`.
pub fn polled(
    config: &[(String, Template)],
    next_link: Option<&str>,
    data: &Path,
    env: &dyn Env,
    body: &Value,
) -> Result<Polled, EvalError> {
    let next = next_page(next_link.unwrap_or(DEFAULT_NEXT_LINK), body);
    let items = match data.root {
        Root::TriggerBody | Root::Body | Root::Item => json::get(body, &data.steps),
    };
    let items = match items {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(other) => vec![other.clone()],
    };
    let mut scope = Scope::new(env);
    scope.trigger_body = Some(body);
    scope.body = Some(body);
    let mut query = Vec::with_capacity(config.len());
    for (name, template) in config {
        let names_something = template.pieces.iter().all(|piece| match piece {
            Piece::Expr(expr) => !matches!(eval::eval(expr, &scope), Ok((Evaluated::Missing, _))),
            Piece::Text(_) | Piece::Param(_) => true,
        });
        if !names_something {
            return Ok(Polled {
                items,
                query: None,
                next,
            });
        }
        query.push((name.clone(), eval::render(template, &scope, false)?.text));
    }
    Ok(Polled {
        items,
        query: Some(query),
        next,
    })
}

/// The next page's URL in `body`: the property `name` of the answer (or, written as a
/// path such as `@triggerBody().links.next`, what it names), when it is a non-empty string.
fn next_page(name: &str, body: &Value) -> Option<String> {
    let found = if name.starts_with("@triggerBody()") || name.starts_with("@body()") {
        crate::expr::parse_path(name)
            .ok()
            .and_then(|path| json::get(body, &path.steps))
    } else {
        body.get(name)
    };
    found
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|link| !link.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use serde_json::json;

    use super::*;
    use crate::eval::ConnValue;
    use crate::expr::{Flavor, parse_path, parse_template};

    struct NoConnection;

    impl Env for NoConnection {
        fn connection(&self, _: &str) -> Option<ConnValue<'_>> {
            None
        }
        fn parameter(&self, _: &str) -> Option<&Value> {
            None
        }
    }

    #[test]
    fn the_answer_gives_the_items_and_the_next_cursor() {
        // MicrosoftGraphSecurity's OnNewHighSeverityAlerts.
        let config = vec![(
            "$filter".to_owned(),
            parse_template(
                "Severity eq 'High' and lastModifiedDateTime gt @{triggerBody().value[0].lastModifiedDateTime}",
                Flavor::TEXT,
            )
            .unwrap(),
        )];
        let data = parse_path("@triggerBody().value").unwrap();
        let body = json!({"value": [{"id": "a", "lastModifiedDateTime": "2026-12-01T10:00:00Z"}, {"id": "b"}]});
        let polled = polled(&config, None, &data, &NoConnection, &body).unwrap();
        assert_eq!(polled.items.len(), 2);
        assert_eq!(polled.next, None);
        assert_eq!(
            polled.query,
            Some(vec![(
                "$filter".to_owned(),
                "Severity eq 'High' and lastModifiedDateTime gt 2026-12-01T10:00:00Z".to_owned()
            )])
        );
        // Nothing new: no item, and the cursor stays.
        let polled =
            super::polled(&config, None, &data, &NoConnection, &json!({"value": []})).unwrap();
        assert!(polled.items.is_empty());
        assert_eq!(polled.query, None);
    }

    #[test]
    fn the_next_page_is_where_the_template_says() {
        let data = parse_path("@triggerBody().value").unwrap();
        let page = json!({"value": [], "@odata.nextLink": "https://api.example.com/x?page=2",
                          "links": {"next": "https://api.example.com/x?page=3"}, "more": ""});
        let next =
            |name: Option<&str>| polled(&[], name, &data, &NoConnection, &page).unwrap().next;
        assert_eq!(
            next(None).as_deref(),
            Some("https://api.example.com/x?page=2")
        );
        assert_eq!(
            next(Some("@triggerBody().links['next']")).as_deref(),
            Some("https://api.example.com/x?page=3")
        );
        assert_eq!(next(Some("more")), None);
        assert_eq!(next(Some("missing")), None);
    }
}
