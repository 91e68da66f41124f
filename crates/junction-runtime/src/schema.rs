//! Validate: JSON Schema validators compiled once per connector at load.
//!
//! Every `$ref` of a connector points to `#/definitions/NAME`. The definitions are registered
//! once per connector as one resource (`junction:///NAME/definitions`), and the top-level
//! `$ref`s of each schema compiled against it are rewritten to point there, so the
//! definitions are indexed once however many operations use them. Before compiling, schemas
//! get the bounds their `int32`/`int64` formats imply. Formats are asserted (`date-time`,
//! `date`, `email`, `uuid` …); unknown formats are annotations. A schema that does not
//! compile (published definitions contain some junk) is reported and left unvalidated.

use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, Registry, ValidationError, Validator};
use junction_model::Connector;
use serde_json::{Map, Value, json};

use crate::error::{InputLocation, Violation};

/// Most violations reported for one input, so a huge bad document gives a bounded answer.
pub(crate) const MAX_VIOLATIONS: usize = 50;

/// Compiles the schemas of one connector.
pub(crate) struct SchemaCompiler {
    registry: Option<Registry<'static>>,
    base: String,
}

impl SchemaCompiler {
    /// Registers the connector's definitions. On failure, returns the compiler (every schema
    /// with a `$ref` will then fail to compile) and the reason.
    pub(crate) fn new(connector: &Connector) -> (SchemaCompiler, Option<String>) {
        let base = format!("junction:///{}/definitions", connector.name);
        if connector.definitions.is_empty() {
            return (
                SchemaCompiler {
                    registry: None,
                    base,
                },
                None,
            );
        }
        let mut definitions = Value::Object(connector.definitions.clone());
        prepare(&mut definitions, None);
        let document = json!({ "definitions": definitions });
        let registry = Registry::new()
            .draft(Draft::Draft202012)
            .add(&base, document)
            .and_then(|builder| builder.prepare());
        match registry {
            Ok(registry) => (
                SchemaCompiler {
                    registry: Some(registry),
                    base,
                },
                None,
            ),
            Err(error) => (
                SchemaCompiler {
                    registry: None,
                    base,
                },
                Some(format!(
                    "definitions cannot be used for validation: {error}"
                )),
            ),
        }
    }

    /// Compiles `schema`. `Ok(None)` when the schema constrains nothing beyond what
    /// `ignore` (such as `type`, already checked by coercion) names.
    pub(crate) fn compile(
        &self,
        schema: &Value,
        ignore: &[&str],
    ) -> Result<Option<Validator>, String> {
        if !constrains(schema, ignore) {
            return Ok(None);
        }
        let mut schema = schema.clone();
        prepare(&mut schema, Some(&self.base));
        let options = jsonschema::options()
            .with_draft(Draft::Draft202012)
            .should_validate_formats(true);
        let built = match &self.registry {
            Some(registry) => options.with_registry(registry).build(&schema),
            None => options.build(&schema),
        };
        built.map(Some).map_err(|error| error.to_string())
    }
}

/// Keywords that only annotate: a schema made of these (and `x-…`) validates nothing.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "example",
    "examples",
    "readOnly",
    "writeOnly",
    "deprecated",
    "$comment",
    "nullable",
    "discriminator",
    "xml",
    "externalDocs",
    "$schema",
    "$id",
];

fn constrains(schema: &Value, ignore: &[&str]) -> bool {
    match schema {
        Value::Object(map) => map.keys().any(|k| {
            !k.starts_with("x-")
                && !ANNOTATIONS.contains(&k.as_str())
                && !ignore.contains(&k.as_str())
        }),
        Value::Bool(b) => !b,
        _ => false,
    }
}

/// Rewrites local `$ref`s to the registered definitions (when `base` is given) and adds the
/// bounds of `int32`/`int64` formats.
fn prepare(value: &mut Value, base: Option<&str>) {
    match value {
        Value::Object(map) => {
            if let (Some(base), Some(Value::String(reference))) = (base, map.get_mut("$ref"))
                && reference.starts_with("#/definitions/")
            {
                reference.insert_str(0, base);
            }
            add_integer_bounds(map);
            for child in map.values_mut() {
                prepare(child, base);
            }
        }
        Value::Array(items) => {
            for item in items {
                prepare(item, base);
            }
        }
        _ => {}
    }
}

fn add_integer_bounds(map: &mut Map<String, Value>) {
    let (min, max) = match map.get("format").and_then(Value::as_str) {
        Some("int32") => (json!(i32::MIN), json!(i32::MAX)),
        Some("int64") => (json!(i64::MIN), json!(i64::MAX)),
        _ => return,
    };
    map.entry("minimum").or_insert(min);
    map.entry("maximum").or_insert(max);
}

/// Adds `error` to `out`; for an `anyOf` or `oneOf` that no branch satisfied, the errors of
/// the one branch whose type fits the value instead, recursively: a nullable object sent
/// with a bad member reports that member, not "not valid under any of the schemas".
fn fitting_branch(error: ValidationError<'static>, out: &mut Vec<ValidationError<'static>>) {
    let fits = |branch: &Vec<ValidationError<'static>>| {
        !branch.iter().any(|e| {
            matches!(e.kind(), ValidationErrorKind::Type { .. })
                && e.instance_path() == error.instance_path()
        })
    };
    let single = match error.kind() {
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            let mut fitting = context.iter().enumerate().filter(|(_, b)| fits(b));
            match (fitting.next(), fitting.next()) {
                (Some((index, _)), None) => Some(index),
                _ => None,
            }
        }
        _ => None,
    };
    let Some(index) = single else {
        out.push(error);
        return;
    };
    let (ValidationErrorKind::AnyOf { mut context }
    | ValidationErrorKind::OneOfNotValid { mut context }) = error.into_parts().kind
    else {
        return;
    };
    if index < context.len() {
        for inner in context.swap_remove(index) {
            fitting_branch(inner, out);
        }
    }
}

/// Validates `value`, appending at most [`MAX_VIOLATIONS`] violations in total.
/// Parameters are named by `name`; the body by JSON pointer.
pub(crate) fn check(
    validator: &Validator,
    value: &Value,
    location: InputLocation,
    name: Option<&str>,
    out: &mut Vec<Violation>,
) {
    let mut errors = Vec::new();
    for error in validator.iter_errors(value) {
        fitting_branch(error.to_owned(), &mut errors);
    }
    for error in errors {
        if out.len() >= MAX_VIOLATIONS {
            break;
        }
        let instance = error.instance();
        let long = match instance.as_ref() {
            Value::Object(_) | Value::Array(_) => true,
            Value::String(s) => s.len() > 80,
            _ => false,
        };
        let message = if long {
            error.masked_with("the value").to_string()
        } else {
            error.to_string()
        };
        let pointer = error.instance_path().as_str().to_owned();
        out.push(match (location, name) {
            (InputLocation::Body, _) => Violation::body(
                pointer.clone(),
                if pointer.is_empty() {
                    format!("request body: {message}")
                } else {
                    format!("request body at {pointer}: {message}")
                },
            ),
            (location, name) => {
                let name = name.unwrap_or_default();
                let mut violation = Violation::parameter(
                    location,
                    name,
                    format!("{} parameter '{name}': {message}", location.as_str()),
                );
                if !pointer.is_empty() {
                    violation.pointer = Some(pointer);
                }
                violation
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn connector(definitions: Value) -> Connector {
        let Value::Object(definitions) = definitions else {
            unreachable!()
        };
        Connector {
            name: "pets".into(),
            title: "Pets".into(),
            description: None,
            version: None,
            format: junction_model::SourceFormat::Swagger2,
            upstream: junction_model::Upstream {
                scheme: "https".into(),
                host: "example.com".into(),
                base_path: "/".into(),
            },
            operations: Vec::new(),
            security_schemes: Default::default(),
            security: Vec::new(),
            definitions,
            properties: None,
            extensions: Map::new(),
            source: "pets.json".into(),
            soap: None,
        }
    }

    fn violations(validator: &Validator, value: Value) -> Vec<Violation> {
        let mut out = Vec::new();
        check(validator, &value, InputLocation::Body, None, &mut out);
        out
    }

    #[test]
    fn references_resolve_through_the_shared_definitions() {
        let c = connector(json!({
            "Pet": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"},
                "tag": {"$ref": "#/definitions/Tag"}
            }},
            "Tag": {"type": "object", "properties": {"id": {"type": "integer", "format": "int32"}}}
        }));
        let (compiler, problem) = SchemaCompiler::new(&c);
        assert_eq!(problem, None);
        let validator = compiler
            .compile(
                &json!({"type": "array", "items": {"$ref": "#/definitions/Pet"}}),
                &[],
            )
            .unwrap()
            .unwrap();
        assert!(violations(&validator, json!([{"name": "rex", "tag": {"id": 1}}])).is_empty());
        let found = violations(
            &validator,
            json!([{"tag": {"id": 3_000_000_000_i64}}, {"name": 5}]),
        );
        let pointers: Vec<_> = found.iter().map(|v| v.pointer.clone().unwrap()).collect();
        assert_eq!(pointers.len(), 3, "{found:?}");
        assert!(pointers.contains(&"/0".to_owned()));
        assert!(pointers.contains(&"/0/tag/id".to_owned()));
        assert!(pointers.contains(&"/1/name".to_owned()));
    }

    #[test]
    fn a_nullable_object_reports_its_members_not_the_any_of() {
        let (compiler, _) = SchemaCompiler::new(&connector(json!({
            "Address": {"type": "object", "required": ["street"],
                        "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}}}
        })));
        let v = compiler
            .compile(
                &json!({"type": "object", "properties": {"address": {"anyOf": [
                    {"$ref": "#/definitions/Address"}, {"type": "null"}
                ]}}}),
                &[],
            )
            .unwrap()
            .unwrap();
        let found = violations(&v, json!({"address": {"zip": "12"}}));
        let pointers: Vec<_> = found.iter().map(|v| v.pointer.clone().unwrap()).collect();
        assert_eq!(pointers, ["/address", "/address/zip"], "{found:?}");
        assert!(
            found[0]
                .message
                .contains("\"street\" is a required property"),
            "{found:?}"
        );
        assert!(found[1].message.contains("does not match"), "{found:?}");
        // A value of neither type still names the alternatives.
        let found = violations(&v, json!({"address": 5}));
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("anyOf"), "{found:?}");
        assert!(violations(&v, json!({"address": null})).is_empty());
    }

    #[test]
    fn formats_are_asserted_and_annotations_are_skipped() {
        let (compiler, _) = SchemaCompiler::new(&connector(json!({})));
        let v = compiler
            .compile(&json!({"type": "string", "format": "date-time"}), &["type"])
            .unwrap()
            .unwrap();
        assert!(v.is_valid(&json!("2024-05-01T10:00:00Z")));
        assert!(!v.is_valid(&json!("yesterday")));
        let uuid = compiler
            .compile(&json!({"format": "uuid"}), &[])
            .unwrap()
            .unwrap();
        assert!(!uuid.is_valid(&json!("nope")));
        assert!(
            compiler
                .compile(
                    &json!({"type": "string", "description": "x", "x-ms-summary": "y"}),
                    &["type"]
                )
                .unwrap()
                .is_none()
        );
        assert!(compiler.compile(&json!({}), &[]).unwrap().is_none());
    }

    #[test]
    fn junk_schemas_fail_to_compile_instead_of_panicking() {
        let (compiler, _) = SchemaCompiler::new(&connector(json!({})));
        assert!(compiler.compile(&json!({"type": "file"}), &[]).is_err());
        assert!(
            compiler
                .compile(&json!({"$ref": "#/definitions/Missing"}), &[])
                .is_err()
        );
    }
}
