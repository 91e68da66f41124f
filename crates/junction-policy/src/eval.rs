//! Evaluating templates against one message: its headers, query, body, the connection
//! and the operation's bound parameters.

use std::borrow::Cow;

use http::HeaderMap;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::Value;

use crate::expr::{Expr, Piece, Root, Source, Template};
use crate::json;

/// RFC 3986 unreserved characters stay; everything else is percent-encoded.
pub(crate) const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A connection value as policies see it.
#[derive(Debug, Clone, Copy)]
pub struct ConnValue<'a> {
    pub value: &'a str,
    /// Whether the value is a secret (a `securestring`, an OAuth setting, or a value the
    /// package does not declare): headers built from it are marked sensitive.
    pub secret: bool,
}

/// What expressions read besides the message: the connection and the operation's bound
/// parameters. The runtime implements it.
pub trait Env: Sync {
    /// The connection value `name`, as configured.
    fn connection(&self, name: &str) -> Option<ConnValue<'_>>;
    /// The bound value of the operation parameter `name` (path, query, header or form).
    fn parameter(&self, name: &str) -> Option<&Value>;
}

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    /// `@connectionParameters('name')` without a default, and no such value configured.
    MissingConnection(String),
}

/// The message an expression is evaluated against.
#[derive(Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub env: &'a dyn Env,
    pub headers: Option<&'a HeaderMap>,
    /// The encoded query string (without `?`).
    pub query: Option<&'a str>,
    pub body: Option<&'a Value>,
    pub item: Option<&'a Value>,
    pub trigger_body: Option<&'a Value>,
}

impl<'a> Scope<'a> {
    pub(crate) fn new(env: &'a dyn Env) -> Self {
        Scope {
            env,
            headers: None,
            query: None,
            body: None,
            item: None,
            trigger_body: None,
        }
    }
}

/// An evaluated expression.
pub(crate) enum Evaluated<'a> {
    Text(Cow<'a, str>),
    Json(&'a Value),
    Missing,
}

/// Looks `name` up in the connection, also without a `token:` prefix (Power Platform's
/// name for values that come with an OAuth token).
pub(crate) fn connection<'e>(env: &'e dyn Env, name: &str) -> Option<ConnValue<'e>> {
    env.connection(name).or_else(|| {
        name.strip_prefix("token:")
            .and_then(|bare| env.connection(bare))
    })
}

/// The first value of query parameter `name` in an encoded query string, decoded.
pub fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(v).into_owned())
    })
}

/// Percent-decodes a query component (`+` is a space).
pub(crate) fn decode(s: &str) -> Cow<'_, str> {
    if s.contains('+') {
        Cow::Owned(
            percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned(),
        )
    } else {
        percent_decode_str(s).decode_utf8_lossy()
    }
}

/// Percent-encodes a path segment or query component.
pub(crate) fn encode(out: &mut String, value: &str) {
    out.extend(utf8_percent_encode(value, COMPONENT));
}

/// Evaluates one expression. Also says whether the value came from a secret.
pub(crate) fn eval<'s>(expr: &Expr, scope: &Scope<'s>) -> Result<(Evaluated<'s>, bool), EvalError> {
    match expr {
        Expr::Lookup {
            source: Source::Connection,
            name,
            default,
        } => match connection(scope.env, name) {
            Some(v) => Ok((Evaluated::Text(Cow::Borrowed(v.value)), v.secret)),
            None => match default {
                Some(d) => Ok((Evaluated::Text(Cow::Owned(d.clone())), false)),
                None => Err(EvalError::MissingConnection(name.clone())),
            },
        },
        Expr::Lookup {
            source: Source::Header,
            name,
            default,
        } => {
            let found = scope.headers.and_then(|h| {
                let values: Vec<&str> = h
                    .get_all(name.as_str())
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                (!values.is_empty()).then(|| values.join(", "))
            });
            let secret = scope
                .headers
                .and_then(|h| h.get(name.as_str()))
                .is_some_and(http::HeaderValue::is_sensitive);
            Ok((text_or(found, default), secret))
        }
        Expr::Lookup {
            source: Source::Query,
            name,
            default,
        } => {
            let found = scope.query.and_then(|q| query_value(q, name));
            Ok((text_or(found, default), false))
        }
        Expr::Path(path) => {
            let root = match path.root {
                Root::Body => scope.body,
                Root::Item => scope.item.or(scope.body),
                Root::TriggerBody => scope.trigger_body,
            };
            Ok((
                root.and_then(|r| json::get(r, &path.steps))
                    .map_or(Evaluated::Missing, Evaluated::Json),
                false,
            ))
        }
    }
}

fn text_or<'a>(found: Option<String>, default: &Option<String>) -> Evaluated<'a> {
    match (found, default) {
        (Some(v), _) => Evaluated::Text(Cow::Owned(v)),
        (None, Some(d)) => Evaluated::Text(Cow::Owned(d.clone())),
        (None, None) => Evaluated::Missing,
    }
}

/// A rendered template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rendered {
    pub text: String,
    /// Whether a secret connection value went into it.
    pub secret: bool,
}

/// Renders a template to text. With `encode`, expression values and `{param}`s are
/// percent-encoded as URL components (literal text stays as written).
pub(crate) fn render(
    template: &Template,
    scope: &Scope<'_>,
    encode_values: bool,
) -> Result<Rendered, EvalError> {
    let mut out = Rendered {
        text: String::new(),
        secret: false,
    };
    for piece in &template.pieces {
        let value: Cow<'_, str> = match piece {
            Piece::Text(text) => {
                out.text.push_str(text);
                continue;
            }
            Piece::Expr(expr) => {
                let (value, secret) = eval(expr, scope)?;
                out.secret |= secret;
                match value {
                    Evaluated::Text(t) => t,
                    Evaluated::Json(v) => json::text(v),
                    Evaluated::Missing => Cow::Borrowed(""),
                }
            }
            Piece::Param(name) => match scope.env.parameter(name) {
                Some(Value::Array(items)) => Cow::Owned(
                    items
                        .iter()
                        .map(|i| json::text(i).into_owned())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                Some(v) => json::text(v),
                None => Cow::Borrowed(""),
            },
        };
        if encode_values {
            encode(&mut out.text, &value);
        } else {
            out.text.push_str(&value);
        }
    }
    Ok(out)
}

/// Renders a property value (`propertyValuePathTemplate`): one `{@…}` alone keeps the JSON
/// value it names (`None` when it names nothing); otherwise the text, read as JSON when
/// it is an array or object (`[{@body().items}]`), else a string.
pub(crate) fn render_value(
    template: &Template,
    scope: &Scope<'_>,
) -> Result<Option<Value>, EvalError> {
    if let [Piece::Expr(expr)] = template.pieces.as_slice() {
        let (value, _) = eval(expr, scope)?;
        return Ok(match value {
            Evaluated::Text(t) => Some(Value::String(t.into_owned())),
            Evaluated::Json(v) => Some(v.clone()),
            Evaluated::Missing => None,
        });
    }
    let rendered = render(template, scope, false)?;
    let trimmed = rendered.text.trim_start();
    if (trimmed.starts_with('[') || trimmed.starts_with('{'))
        && let Ok(value) = serde_json::from_str::<Value>(&rendered.text)
    {
        return Ok(Some(value));
    }
    Ok(Some(Value::String(rendered.text)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;
    use crate::expr::{Flavor, parse_template};

    struct Fixed {
        conn: HashMap<&'static str, (&'static str, bool)>,
        params: HashMap<&'static str, Value>,
    }

    impl Env for Fixed {
        fn connection(&self, name: &str) -> Option<ConnValue<'_>> {
            self.conn.get(name).map(|(value, secret)| ConnValue {
                value,
                secret: *secret,
            })
        }
        fn parameter(&self, name: &str) -> Option<&Value> {
            self.params.get(name)
        }
    }

    fn env() -> Fixed {
        Fixed {
            conn: HashMap::from([("api_key", ("k3y", true)), ("region", ("eu", false))]),
            params: HashMap::from([("id", json!("a/b")), ("ids", json!([1, 2]))]),
        }
    }

    #[test]
    fn renders_text_and_tracks_secrets() {
        let env = env();
        let mut headers = HeaderMap::new();
        headers.insert("x-h", http::HeaderValue::from_static("hv"));
        let scope = Scope {
            headers: Some(&headers),
            query: Some("q=a%20b&x=1"),
            ..Scope::new(&env)
        };
        let t = parse_template(
            "Bearer @connectionParameters('api_key') @headers('X-H') @queryParameters('q') @queryParameters('none', 'd') @connectionParameters('token:region')",
            Flavor::TEXT,
        )
        .unwrap();
        assert_eq!(
            render(&t, &scope, false).unwrap(),
            Rendered {
                text: "Bearer k3y hv a b d eu".into(),
                secret: true
            }
        );
        let t = parse_template("x-@connectionParameters('region')", Flavor::TEXT).unwrap();
        assert!(!render(&t, &scope, false).unwrap().secret);
        let t = parse_template("@connectionParameters('nope')", Flavor::TEXT).unwrap();
        assert_eq!(
            render(&t, &scope, false),
            Err(EvalError::MissingConnection("nope".into()))
        );
        let t = parse_template("@connectionParameters('nope', '')x", Flavor::TEXT).unwrap();
        assert_eq!(render(&t, &scope, false).unwrap().text, "x");
    }

    #[test]
    fn encodes_values_in_urls_only() {
        let env = env();
        let scope = Scope::new(&env);
        let t = parse_template("/tasks/{id}/x('{ids}')", Flavor::URL_PATH).unwrap();
        assert_eq!(
            render(&t, &scope, true).unwrap().text,
            "/tasks/a%2Fb/x('1%2C2')"
        );
    }

    #[test]
    fn property_values_keep_json() {
        let env = env();
        let body = json!({"first": "John", "last": "Smith", "payments": {"a": 1}, "n": 3});
        let scope = Scope {
            body: Some(&body),
            ..Scope::new(&env)
        };
        let value = |s: &str| render_value(&parse_template(s, Flavor::VALUE).unwrap(), &scope);
        assert_eq!(
            value("{@body().first} {@body().last}").unwrap(),
            Some(json!("John Smith"))
        );
        assert_eq!(value("{@body().n}").unwrap(), Some(json!(3)));
        assert_eq!(
            value("[{@body().payments}]").unwrap(),
            Some(json!([{"a": 1}]))
        );
        assert_eq!(
            value("[\"matter.created\"]").unwrap(),
            Some(json!(["matter.created"]))
        );
        assert_eq!(value("30").unwrap(), Some(json!("30")));
        assert_eq!(value(" !").unwrap(), Some(json!(" !")));
        assert_eq!(value("{@body().missing}").unwrap(), None);
        assert_eq!(value("[x").unwrap(), Some(json!("[x")));
    }
}
