//! The view file as written: TOML read into raw values that keep their positions, and the
//! reference syntax of arguments (`$inputs.NAME`, `$steps.NAME.a[0]`, `$item`, `$index`).

use std::ops::Range;

use crate::config::spanned::Spanned;
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Number, Value};

/// A view file. Top-level keys come before the first `[input.…]` / `[step.…]` table (TOML
/// puts later keys into the table above them).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawView {
    pub summary: Option<Spanned<String>>,
    pub description: Option<Spanned<String>>,
    /// Default timeout of every step.
    pub timeout: Option<Spanned<String>>,
    /// jq program producing the result; default `.steps`.
    pub shape: Option<Spanned<String>>,
    /// JSON Schema of the result (for `junction export`).
    #[schemars(with = "Option<serde_json::Value>")]
    pub output: Option<Spanned<toml::Value>>,
    /// `[input.NAME]`: a JSON Schema written in TOML, plus `required`, `summary`,
    /// `visibility`.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, IndexMap<String, serde_json::Value>>")]
    pub input: IndexMap<String, Spanned<IndexMap<String, Spanned<toml::Value>>>>,
    #[serde(default)]
    pub step: IndexMap<String, Spanned<RawStep>>,
}

/// `[step.NAME]`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    /// `CONNECTOR.OPERATION_ID`.
    pub operation: Option<Spanned<String>>,
    /// Another view, by name.
    pub view: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "IndexMap<String, serde_json::Value>")]
    pub args: IndexMap<String, Spanned<toml::Value>>,
    pub timeout: Option<Spanned<String>>,
    pub optional: Option<Spanned<bool>>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub fallback: Option<Spanned<toml::Value>>,
    pub for_each: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<i64>>,
    pub after: Option<Spanned<Vec<Spanned<String>>>>,
}

/// Where a reference starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RawRoot {
    Input(String),
    Step(String),
    Item,
    Index,
}

/// One step into a value: `.key` or `[N]` (the policy expressions' own path step).
pub(crate) use junction_policy::expr::Step as PathStep;

/// A reference as written, before its names are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawReference {
    pub root: RawRoot,
    pub path: Vec<PathStep>,
}

/// What an argument string is: a literal (`$$` at the start stands for one `$`) or a
/// reference.
pub(super) enum ArgText {
    Literal(String),
    Reference(RawReference),
}

/// Reads an argument string.
pub(super) fn arg_text(text: &str) -> Result<ArgText, String> {
    if let Some(rest) = text.strip_prefix("$$") {
        return Ok(ArgText::Literal(format!("${rest}")));
    }
    if !text.starts_with('$') {
        return Ok(ArgText::Literal(text.to_owned()));
    }
    parse_reference(text).map(ArgText::Reference)
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `name` may name a step or an input: a letter or `_`, then letters, digits, `_`.
pub(super) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(is_ident_char)
}

/// Parses `$inputs.NAME…`, `$steps.NAME…`, `$item…` or `$index`.
pub(super) fn parse_reference(text: &str) -> Result<RawReference, String> {
    const HELP: &str = "write $inputs.NAME, $steps.NAME, $item or $index, followed by .key or [N] \
                        steps (start a literal with $$ for a $)";
    let body = text.strip_prefix('$').unwrap_or(text);
    let head_len = body.find(['.', '[']).unwrap_or(body.len());
    let (head, mut rest) = body.split_at(head_len);
    let root = match head {
        "inputs" | "steps" => {
            let Some(after_dot) = rest.strip_prefix('.') else {
                return Err(format!("`{text}` names no {head}: {HELP}"));
            };
            let len = after_dot.find(['.', '[']).unwrap_or(after_dot.len());
            let (name, tail) = after_dot.split_at(len);
            if !is_identifier(name) {
                return Err(format!("`{text}`: `{name}` is not a name: {HELP}"));
            }
            rest = tail;
            if head == "inputs" {
                RawRoot::Input(name.to_owned())
            } else {
                RawRoot::Step(name.to_owned())
            }
        }
        "item" => RawRoot::Item,
        "index" => RawRoot::Index,
        _ => return Err(format!("`{text}` is not a reference: {HELP}")),
    };
    let path = parse_path(rest).map_err(|why| format!("`{text}`: {why}"))?;
    if root == RawRoot::Index && !path.is_empty() {
        return Err(format!("`{text}`: $index is a number and has no fields"));
    }
    Ok(RawReference { root, path })
}

/// Parses `.a.b[0].c`.
fn parse_path(mut rest: &str) -> Result<Vec<PathStep>, String> {
    let mut path = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let len = after.find(['.', '[']).unwrap_or(after.len());
            let (key, tail) = after.split_at(len);
            if key.is_empty() {
                return Err("an empty key after `.`".into());
            }
            path.push(PathStep::Key(key.to_owned()));
            rest = tail;
        } else if let Some(after) = rest.strip_prefix('[') {
            let Some(close) = after.find(']') else {
                return Err("a `[` without its `]`".into());
            };
            let (index, tail) = after.split_at(close);
            let index = index
                .trim()
                .parse::<usize>()
                .map_err(|_| format!("`[{index}]` is not a list index (0, 1, 2 …)"))?;
            path.push(PathStep::Index(index));
            rest = tail.get(1..).unwrap_or_default();
        } else {
            return Err(format!("unexpected `{rest}` (fields are .key or [N])"));
        }
    }
    Ok(path)
}

/// Follows `path` into `value`; a missing key or index gives `None` (`null`, as in jq).
pub(crate) use junction_policy::json::get as follow;

/// A TOML value as JSON (dates and times become their RFC 3339 text).
pub(super) fn toml_to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::Number(Number::from(*i)),
        toml::Value::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => Value::Object(
            table
                .iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect::<Map<_, _>>(),
        ),
    }
}

/// 1-based line and column of byte `offset` in `text`.
pub(super) fn position(text: &str, offset: usize) -> (u32, u32) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    )
}

/// The span of a TOML parse error, if it has one.
pub(super) fn error_span(error: &toml::de::Error) -> Option<Range<usize>> {
    error.span()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn references_parse() {
        let r = parse_reference("$steps.profile.manager.id").unwrap();
        assert_eq!(r.root, RawRoot::Step("profile".into()));
        assert_eq!(
            r.path,
            vec![PathStep::Key("manager".into()), PathStep::Key("id".into())]
        );
        let r = parse_reference("$item[2].a").unwrap();
        assert_eq!(r.root, RawRoot::Item);
        assert_eq!(r.path, vec![PathStep::Index(2), PathStep::Key("a".into())]);
        assert_eq!(
            parse_reference("$inputs.employee").unwrap().root,
            RawRoot::Input("employee".into())
        );
        assert!(
            parse_reference("$input.x")
                .unwrap_err()
                .contains("not a reference")
        );
        assert!(parse_reference("$steps").is_err());
        assert!(parse_reference("$steps.a[x]").is_err());
        assert!(parse_reference("$index.a").is_err());
        assert!(matches!(arg_text("$$5").unwrap(), ArgText::Literal(s) if s == "$5"));
        assert!(matches!(arg_text("plain").unwrap(), ArgText::Literal(s) if s == "plain"));
    }

    #[test]
    fn follow_gives_none_for_missing_parts() {
        let v = serde_json::json!({"a": [{"b": 1}]});
        let path = parse_path(".a[0].b").unwrap();
        assert_eq!(follow(&v, &path), Some(&serde_json::json!(1)));
        assert_eq!(follow(&v, &parse_path(".a[3]").unwrap()), None);
        assert_eq!(follow(&v, &parse_path(".x.y").unwrap()), None);
    }
}
