//! Schemas for export: references renamed into the exported document's definitions, and
//! JSON Schema 2020-12 brought down to Swagger 2.0 where needed.

use junction_model::Connector;
use serde_json::{Map, Value, json};

/// The exported name of a connector's definition `name`.
pub(crate) fn definition_name(connector: &str, name: &str) -> String {
    format!("{connector}_{name}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Rewrites every `#/definitions/NAME` of `connector` to `PREFIX` + the exported name
/// (`#/definitions/` for Swagger, `#/components/schemas/` for OpenAPI).
pub(crate) fn rename_refs(schema: &Value, connector: &Connector, prefix: &str) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let value = match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => match r.strip_prefix("#/definitions/") {
                            Some(name) => Value::String(format!(
                                "{prefix}{}",
                                definition_name(
                                    &connector.name,
                                    &name.replace("~1", "/").replace("~0", "~")
                                )
                            )),
                            None => v.clone(),
                        },
                        _ => rename_refs(v, connector, prefix),
                    };
                    (k.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| rename_refs(v, connector, prefix))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Keywords Swagger 2.0 schema objects share with JSON Schema 2020-12, copied as they are.
const SWAGGER_KEEP: [&str; 17] = [
    "format",
    "title",
    "description",
    "default",
    "multipleOf",
    "maximum",
    "minimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "readOnly",
];

/// A 2020-12 schema (refs already renamed) as a Swagger 2.0 schema object.
pub(crate) fn to_swagger(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return json!({});
    };
    if let Some(reference) = map.get("$ref") {
        return json!({ "$ref": reference });
    }
    let mut out = Map::new();
    for (key, value) in map {
        match (key.as_str(), value) {
            ("type", Value::String(t)) if t != "null" => {
                out.insert("type".into(), value.clone());
            }
            ("type", Value::Array(types)) => {
                let real: Vec<&Value> = types
                    .iter()
                    .filter(|t| t.as_str() != Some("null"))
                    .collect();
                if let [one] = real.as_slice() {
                    out.insert("type".into(), (*one).clone());
                }
                if real.len() < types.len() {
                    out.insert("x-nullable".into(), Value::Bool(true));
                }
            }
            ("enum", Value::Array(values)) => {
                let values: Vec<Value> = values.iter().filter(|v| !v.is_null()).cloned().collect();
                if !values.is_empty() {
                    out.insert("enum".into(), Value::Array(values));
                }
            }
            ("const", v) => {
                out.insert("enum".into(), json!([v]));
            }
            ("exclusiveMinimum", Value::Number(n)) => {
                out.insert("minimum".into(), Value::Number(n.clone()));
                out.insert("exclusiveMinimum".into(), Value::Bool(true));
            }
            ("exclusiveMaximum", Value::Number(n)) => {
                out.insert("maximum".into(), Value::Number(n.clone()));
                out.insert("exclusiveMaximum".into(), Value::Bool(true));
            }
            ("examples", Value::Array(values)) => {
                if let Some(first) = values.first() {
                    out.entry("example").or_insert_with(|| first.clone());
                }
            }
            ("example", v) => {
                out.insert("example".into(), v.clone());
            }
            ("properties", Value::Object(properties)) => {
                out.insert(
                    "properties".into(),
                    Value::Object(
                        properties
                            .iter()
                            .map(|(k, v)| (k.clone(), to_swagger(v)))
                            .collect(),
                    ),
                );
            }
            ("additionalProperties", Value::Bool(b)) => {
                out.insert("additionalProperties".into(), Value::Bool(*b));
            }
            ("additionalProperties", v) => {
                out.insert("additionalProperties".into(), to_swagger(v));
            }
            ("items", Value::Array(items)) => {
                out.insert(
                    "items".into(),
                    items.first().map_or_else(|| json!({}), to_swagger),
                );
            }
            ("items", v) => {
                out.insert("items".into(), to_swagger(v));
            }
            ("allOf", Value::Array(parts)) => {
                out.insert(
                    "allOf".into(),
                    Value::Array(parts.iter().map(to_swagger).collect()),
                );
            }
            (k, v) if k.starts_with("x-") || SWAGGER_KEEP.contains(&k) => {
                out.insert(k.to_owned(), v.clone());
            }
            _ => {}
        }
    }
    // Swagger 2.0 needs `items` beside `type: array`.
    if out.get("type").and_then(Value::as_str) == Some("array") && !out.contains_key("items") {
        out.insert("items".into(), json!({}));
    }
    Value::Object(out)
}

/// Keywords a Swagger 2.0 non-body parameter (or its `items`) may carry.
const PARAMETER_KEEP: [&str; 14] = [
    "format",
    "default",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "multipleOf",
];

/// The inline keywords of a Swagger 2.0 non-body parameter (or `items`) from a schema:
/// `type` always (objects and unknown types travel as strings), then the simple keywords.
pub(crate) fn swagger_simple(schema: &Value, connector: Option<&Connector>) -> Map<String, Value> {
    let resolved = connector.and_then(|c| c.resolve(schema)).unwrap_or(schema);
    let converted = to_swagger(resolved);
    let mut out = Map::new();
    let ty = converted
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| matches!(*t, "string" | "number" | "integer" | "boolean" | "array"))
        .unwrap_or("string");
    out.insert("type".into(), Value::String(ty.to_owned()));
    if ty == "array" {
        let items = resolved
            .get("items")
            .map(|items| Value::Object(swagger_simple(items, connector)))
            .unwrap_or_else(|| json!({"type": "string"}));
        out.insert("items".into(), items);
    }
    for key in PARAMETER_KEEP {
        if let Some(value) = converted.get(key) {
            out.insert(key.to_owned(), value.clone());
        }
    }
    if converted.get("x-nullable") == Some(&Value::Bool(true)) {
        out.insert("x-nullable".into(), Value::Bool(true));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn schemas_come_down_to_swagger() {
        let s = json!({
            "type": "object",
            "properties": {
                "a": {"type": ["string", "null"], "enum": ["x", null]},
                "b": {"type": "integer", "exclusiveMaximum": 10, "oneOf": [{}]},
                "c": {"const": 3, "examples": [3]},
                "d": {"$ref": "#/definitions/x", "description": "dropped"},
                "e": {"type": "array"}
            }
        });
        assert_eq!(
            to_swagger(&s),
            json!({
                "type": "object",
                "properties": {
                    "a": {"type": "string", "x-nullable": true, "enum": ["x"]},
                    "b": {"type": "integer", "maximum": 10, "exclusiveMaximum": true},
                    "c": {"enum": [3], "example": 3},
                    "d": {"$ref": "#/definitions/x"},
                    "e": {"type": "array", "items": {}}
                }
            })
        );
        assert_eq!(
            swagger_simple(&json!({"type": "object"}), None),
            json!({"type": "string"}).as_object().unwrap().clone()
        );
        assert_eq!(
            Value::Object(swagger_simple(
                &json!({"type": "array", "items": {"type": "integer", "minimum": 1}}),
                None
            )),
            json!({"type": "array", "items": {"type": "integer", "minimum": 1}})
        );
    }
}
