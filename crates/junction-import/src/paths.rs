//! Paths → operations: what Swagger 2.0 and OpenAPI 3.x have in common.
//!
//! This module walks `paths`, reads the fields every operation has (id, summary, tags,
//! security …), merges path-level parameters into each operation's (the operation wins on
//! the same name and location) and checks the path template against the declared path
//! parameters. Parameters, bodies and responses differ between the formats and are read by
//! [`crate::swagger`] and [`crate::openapi`].

use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;
use junction_model::{
    Method, Operation, ParamLocation, Parameter, RequestBody, Response, SecurityScheme,
    SourceFormat,
};
use serde_json::Value;

use crate::fields::{self, Object};
use crate::ptr::Ptr;
use crate::schema::{Schemas, kind};
use crate::sink::Sink;
use crate::{openapi, swagger};

/// What the operation readers share: the document, its schemas and document-wide defaults.
#[derive(Debug)]
pub(crate) struct Ctx<'d> {
    pub(crate) doc: &'d Value,
    pub(crate) format: SourceFormat,
    pub(crate) schemas: Schemas<'d>,
    pub(crate) schemes: IndexMap<String, SecurityScheme>,
    /// Swagger's document-wide `consumes` and `produces`.
    pub(crate) consumes: Vec<String>,
    pub(crate) produces: Vec<String>,
}

/// A parameter object after `$ref` resolution, before it is read.
#[derive(Debug)]
pub(crate) struct RawParam<'d> {
    pub(crate) map: &'d Object,
    /// Where the parameter object itself is (the `$ref` target, if any).
    pub(crate) src: String,
    /// Where the operation lists it.
    pub(crate) at: String,
    pub(crate) name: String,
    /// `in`, as written.
    pub(crate) location: String,
}

/// The format-specific parts of an operation.
#[derive(Debug, Default)]
pub(crate) struct Parts {
    pub(crate) parameters: Vec<Parameter>,
    pub(crate) body: Option<RequestBody>,
    pub(crate) consumes: Vec<String>,
    pub(crate) produces: Vec<String>,
    pub(crate) responses: Vec<Response>,
}

const PATH_ITEM_FIELDS: [&str; 5] = ["parameters", "$ref", "summary", "description", "servers"];

/// Reads every operation of `paths`.
pub(crate) fn operations(ctx: &mut Ctx<'_>, paths: &Object, sink: &mut Sink) -> Vec<Operation> {
    let root = Ptr::ROOT;
    let paths_at = root.key("paths");
    let mut ops = Vec::new();
    for (path, item) in paths {
        if path.starts_with("x-") {
            continue;
        }
        let item_at = paths_at.key(path);
        let Some(item) = fields::resolve(ctx.doc, item, item_at.render(), "path item", sink) else {
            continue;
        };
        let item_ptr = Ptr::rendered(&item.pointer);
        let template = if path.starts_with('/') {
            path.clone()
        } else {
            sink.warn(
                "invalid-path",
                &item_at,
                format!("path '{path}' does not start with '/'; read as '/{path}'"),
            );
            format!("/{path}")
        };
        let path_params = item.map.get("parameters");
        for (key, op) in item.map {
            if key.starts_with("x-") || PATH_ITEM_FIELDS.contains(&key.as_str()) {
                if key == "servers" {
                    sink.warn(
                        "ignored-servers",
                        &item_ptr.key(key),
                        "servers of a single path are not supported; the document's server is used",
                    );
                }
                continue;
            }
            let Ok(method) = key.parse::<Method>() else {
                sink.warn(
                    "unknown-field",
                    &item_ptr.key(key),
                    format!("'{key}' is not an HTTP method or a path item field; ignored"),
                );
                continue;
            };
            let op_at = item_ptr.key(key);
            if key.chars().any(|c| c.is_ascii_uppercase()) {
                sink.warn(
                    "method-case",
                    &op_at,
                    format!(
                        "method '{key}' should be lower-case; read as '{}'",
                        key.to_ascii_lowercase()
                    ),
                );
            }
            let Value::Object(op) = op else {
                sink.warn(
                    "invalid-field",
                    &op_at,
                    format!(
                        "an operation must be an object, found {}; ignored",
                        kind(op)
                    ),
                );
                continue;
            };
            let params = collect_params(ctx.doc, path_params, &item_ptr, op, &op_at, sink);
            let mut operation = operation(ctx, method, &template, op, &op_at, params, sink);
            // A webhook trigger's notification schema is declared on its path item.
            if let Some(content) = item.map.get("x-ms-notification-content")
                && operation.is_trigger()
            {
                operation
                    .extensions
                    .entry("x-ms-notification-content")
                    .or_insert_with(|| content.clone());
            }
            ops.push(operation);
        }
    }
    check_duplicate_ids(&ops, sink);
    ops
}

fn operation(
    ctx: &mut Ctx<'_>,
    method: Method,
    template: &str,
    op: &Object,
    at: &Ptr<'_>,
    params: Vec<RawParam<'_>>,
    sink: &mut Sink,
) -> Operation {
    let id = match op.get("operationId") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        other => {
            let id = format!("{method} {template}");
            let message = match other {
                Some(v) if !v.is_string() => format!(
                    "'operationId' must be a string, found {}; the operation is called '{id}'",
                    kind(v)
                ),
                _ => format!("operation has no operationId; it is called '{id}'"),
            };
            sink.warn("missing-operation-id", at, message);
            id
        }
    };
    let parts = match ctx.format {
        SourceFormat::Swagger2 | SourceFormat::Wsdl11 => {
            swagger::operation_parts(ctx, op, at, params, sink)
        }
        SourceFormat::OpenApi30 | SourceFormat::OpenApi31 => {
            openapi::operation_parts(ctx, op, at, params, sink)
        }
    };
    check_path_params(template, &parts.parameters, at, sink);
    if op.contains_key("servers") {
        sink.warn(
            "ignored-servers",
            &at.key("servers"),
            "servers of a single operation are not supported; the document's server is used",
        );
    }
    let security = op
        .get("security")
        .map(|s| crate::security::requirements(s, &at.key("security"), &ctx.schemes, sink));
    Operation {
        id,
        method,
        path: template.to_owned(),
        summary: fields::string(op, "summary", at, sink),
        description: fields::string(op, "description", at, sink),
        parameters: parts.parameters,
        body: parts.body,
        consumes: parts.consumes,
        produces: parts.produces,
        responses: parts.responses,
        security,
        deprecated: fields::boolean(op, "deprecated", at, sink).unwrap_or(false),
        visibility: fields::visibility(op, at, sink),
        tags: fields::strings(op, "tags", at, sink).unwrap_or_default(),
        extensions: fields::extensions(op),
        pointer: at.render(),
        soap: None,
    }
}

/// Path-level then operation-level parameters, `$ref`s resolved; a later parameter with the
/// same name and location replaces an earlier one.
fn collect_params<'d>(
    doc: &'d Value,
    path_level: Option<&'d Value>,
    item_at: &Ptr<'_>,
    op: &'d Object,
    op_at: &Ptr<'_>,
    sink: &mut Sink,
) -> Vec<RawParam<'d>> {
    let mut out: Vec<RawParam<'d>> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for (list, owner_at) in [(path_level, item_at), (op.get("parameters"), op_at)] {
        let Some(list) = list else { continue };
        let list_at = owner_at.key("parameters");
        let Value::Array(items) = list else {
            if !list.is_null() {
                sink.warn(
                    "invalid-field",
                    &list_at,
                    format!(
                        "'parameters' must be an array, found {}; ignored",
                        kind(list)
                    ),
                );
            }
            continue;
        };
        let mut seen_here: HashSet<(String, String)> = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let at = list_at.index(i);
            let Some(resolved) = fields::resolve(doc, item, at.render(), "parameter", sink) else {
                continue;
            };
            let src = Ptr::rendered(&resolved.pointer);
            let name = fields::string(resolved.map, "name", &src, sink);
            let location = fields::string(resolved.map, "in", &src, sink);
            let (Some(name), Some(location)) = (name, location) else {
                sink.warn(
                    "invalid-parameter",
                    &src,
                    "a parameter needs 'name' and 'in'; ignored",
                );
                continue;
            };
            let lower_in = location.to_ascii_lowercase();
            let key_name = if lower_in == "header" {
                name.to_ascii_lowercase()
            } else {
                name.clone()
            };
            let key = (lower_in, key_name);
            if !seen_here.insert(key.clone()) {
                sink.warn(
                    "duplicate-parameter",
                    &at,
                    format!(
                        "parameter '{name}' in {location} is declared twice; the last one is used"
                    ),
                );
            }
            let raw = RawParam {
                map: resolved.map,
                src: resolved.pointer,
                at: at.render(),
                name,
                location,
            };
            match index.get(&key) {
                Some(&j) => {
                    if let Some(slot) = out.get_mut(j) {
                        *slot = raw;
                    }
                }
                None => {
                    index.insert(key, out.len());
                    out.push(raw);
                }
            }
        }
    }
    out
}

/// The `{name}` variables of a path template.
pub(crate) fn template_variables(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = rest.get(open + 1..).unwrap_or_default();
        let Some(close) = after.find('}') else { break };
        out.push(after.get(..close).unwrap_or_default());
        rest = after.get(close + 1..).unwrap_or_default();
    }
    out
}

fn check_path_params(template: &str, params: &[Parameter], at: &Ptr<'_>, sink: &mut Sink) {
    let vars = template_variables(template);
    let declared: Vec<&Parameter> = params
        .iter()
        .filter(|p| p.location == ParamLocation::Path)
        .collect();
    for var in &vars {
        if !declared.iter().any(|p| p.name == *var) {
            sink.warn(
                "undeclared-path-param",
                at,
                format!("path parameter '{{{var}}}' of '{template}' is not declared"),
            );
        }
    }
    for p in declared {
        if !vars.contains(&p.name.as_str()) {
            sink.warn(
                "unused-path-param",
                &Ptr::rendered(&p.pointer),
                format!(
                    "path parameter '{}' does not appear in '{template}'",
                    p.name
                ),
            );
        }
    }
}

fn check_duplicate_ids(ops: &[Operation], sink: &mut Sink) {
    let mut first: HashMap<&str, &Operation> = HashMap::new();
    for op in ops {
        match first.get(op.id.as_str()) {
            Some(prev) => sink.warn(
                "duplicate-operation-id",
                &Ptr::rendered(&op.pointer),
                format!(
                    "operationId '{}' is also used by {} {}",
                    op.id, prev.method, prev.path
                ),
            ),
            None => {
                first.insert(op.id.as_str(), op);
            }
        }
    }
}

/// Whether a media type is JSON (`application/json`, `text/json`, `…+json`).
pub(crate) fn is_json(media_type: &str) -> bool {
    let base = media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    base == "application/json" || base == "text/json" || base.ends_with("+json") || base == "*/*"
}

/// Whether a media type is a form (`application/x-www-form-urlencoded`, `multipart/form-data`).
pub(crate) fn is_form(media_type: &str) -> bool {
    let base = media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    base == "application/x-www-form-urlencoded" || base == "multipart/form-data"
}

/// A status key of `responses`: `default`, `200` or `2XX`.
pub(crate) fn check_status(status: &str, at: &Ptr<'_>, sink: &mut Sink) {
    let b = status.as_bytes();
    let ok = status == "default"
        || (b.len() == 3
            && b.first().is_some_and(|c| (b'1'..=b'5').contains(c))
            && (b.get(1..).is_some_and(|r| r.iter().all(u8::is_ascii_digit))
                || b.get(1..).is_some_and(|r| r.eq_ignore_ascii_case(b"xx"))));
    if !ok {
        sink.warn(
            "invalid-status",
            at,
            format!("'{status}' is not a status code (200, 2XX or default); kept as written"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_variables_are_found() {
        assert_eq!(template_variables("/a/{id}/b/{x}.json"), ["id", "x"]);
        assert_eq!(template_variables("/a/{unclosed"), Vec::<&str>::new());
        assert_eq!(template_variables("/{}"), [""]);
    }
}
