//! Reading typed fields out of untyped JSON objects, with a warning for each wrong type.

use junction_model::{Extensions, Visibility};
use serde_json::{Map, Value};

use crate::ptr::{self, Ptr, RefTarget};
use crate::schema::kind;
use crate::sink::Sink;

pub(crate) type Object = Map<String, Value>;

/// A string field. Numbers and booleans are written as text without complaint (YAML reads
/// `version: 1.0` as a number); other kinds are reported and ignored.
pub(crate) fn string(obj: &Object, key: &str, at: &Ptr<'_>, sink: &mut Sink) -> Option<String> {
    match obj.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => None,
        other => {
            sink.warn(
                "invalid-field",
                &at.key(key),
                format!("'{key}' must be a string, found {}; ignored", kind(other)),
            );
            None
        }
    }
}

/// A boolean field; `"true"` and `"false"` are read as booleans with a warning.
pub(crate) fn boolean(obj: &Object, key: &str, at: &Ptr<'_>, sink: &mut Sink) -> Option<bool> {
    match obj.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") => {
            let b = s.eq_ignore_ascii_case("true");
            sink.warn(
                "invalid-field",
                &at.key(key),
                format!("'{key}' must be a boolean, not a string; read as {b}"),
            );
            Some(b)
        }
        Value::Null => None,
        other => {
            sink.warn(
                "invalid-field",
                &at.key(key),
                format!("'{key}' must be a boolean, found {}; ignored", kind(other)),
            );
            None
        }
    }
}

/// A list of strings; a single string is read as a list of one, with a warning.
pub(crate) fn strings(
    obj: &Object,
    key: &str,
    at: &Ptr<'_>,
    sink: &mut Sink,
) -> Option<Vec<String>> {
    match obj.get(key)? {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    other => sink.warn(
                        "invalid-field",
                        &at.key(key).index(i),
                        format!("must be a string, found {}; ignored", kind(other)),
                    ),
                }
            }
            Some(out)
        }
        Value::String(s) => {
            sink.warn(
                "invalid-field",
                &at.key(key),
                format!("'{key}' must be an array of strings; read as [\"{s}\"]"),
            );
            Some(vec![s.clone()])
        }
        Value::Null => None,
        other => {
            sink.warn(
                "invalid-field",
                &at.key(key),
                format!(
                    "'{key}' must be an array of strings, found {}; ignored",
                    kind(other)
                ),
            );
            None
        }
    }
}

/// An object field; other kinds are reported and ignored.
pub(crate) fn object<'v>(
    obj: &'v Object,
    key: &str,
    at: &Ptr<'_>,
    sink: &mut Sink,
) -> Option<&'v Object> {
    match obj.get(key)? {
        Value::Object(m) => Some(m),
        Value::Null => None,
        other => {
            sink.warn(
                "invalid-field",
                &at.key(key),
                format!("'{key}' must be an object, found {}; ignored", kind(other)),
            );
            None
        }
    }
}

/// Every `x-…` member, as written.
pub(crate) fn extensions(obj: &Object) -> Extensions {
    obj.iter()
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `x-ms-visibility`; an unknown value is reported and read as `none`.
pub(crate) fn visibility(obj: &Object, at: &Ptr<'_>, sink: &mut Sink) -> Visibility {
    let Some(v) = obj.get("x-ms-visibility") else {
        return Visibility::None;
    };
    let key_at = at.key("x-ms-visibility");
    match v {
        Value::String(s) => {
            let parsed = Visibility::parse(s);
            if parsed == Visibility::None && !s.eq_ignore_ascii_case("none") && !s.is_empty() {
                sink.warn(
                    "invalid-visibility",
                    &key_at,
                    format!(
                        "'{s}' is not a visibility (important, advanced, internal or none); read as none"
                    ),
                );
            }
            parsed
        }
        other => {
            sink.warn(
                "invalid-visibility",
                &key_at,
                format!(
                    "'x-ms-visibility' must be a string, found {}; ignored",
                    kind(other)
                ),
            );
            Visibility::None
        }
    }
}

/// An object reached through any chain of local `$ref`s, and the pointer where it sits.
#[derive(Debug)]
pub(crate) struct Resolved<'d> {
    pub(crate) map: &'d Object,
    pub(crate) pointer: String,
}

/// Follows `$ref` from `value` (at `pointer`) to an object; `what` names it in messages.
pub(crate) fn resolve<'d>(
    doc: &'d Value,
    value: &'d Value,
    pointer: String,
    what: &str,
    sink: &mut Sink,
) -> Option<Resolved<'d>> {
    let mut cur = value;
    let mut pointer = pointer;
    for _ in 0..32 {
        let map = match cur {
            Value::Object(m) => m,
            other => {
                sink.warn(
                    "invalid-field",
                    &Ptr::rendered(&pointer),
                    format!("{what} must be an object, found {}; ignored", kind(other)),
                );
                return None;
            }
        };
        let Some(reference) = map.get("$ref") else {
            return Some(Resolved { map, pointer });
        };
        let ref_at = Ptr::rendered(&pointer);
        let ref_at = ref_at.key("$ref");
        let Value::String(r) = reference else {
            sink.warn(
                "unresolved-ref",
                &ref_at,
                format!("'$ref' must be a string; {what} ignored"),
            );
            return None;
        };
        match ptr::parse_ref(r) {
            RefTarget::Local(tokens) if !tokens.is_empty() => match ptr::get(doc, &tokens) {
                Some(target) => {
                    cur = target;
                    pointer = ptr::render_tokens(&tokens);
                }
                None => {
                    sink.warn(
                        "unresolved-ref",
                        &ref_at,
                        format!(
                            "reference '{r}' points at nothing in this document; {what} ignored"
                        ),
                    );
                    return None;
                }
            },
            _ => {
                sink.warn(
                    "unresolved-ref",
                    &ref_at,
                    format!(
                        "reference '{r}' does not point into this document, which is not supported; \
                         {what} ignored"
                    ),
                );
                return None;
            }
        }
    }
    sink.warn(
        "unresolved-ref",
        &Ptr::rendered(&pointer),
        format!("reference chain is circular; {what} ignored"),
    );
    None
}
