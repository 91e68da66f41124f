//! What was loaded, as the admin API and the console describe it: every connector's model
//! (operations with their parameters, connection parameters) and the diagnostics the
//! configuration was compiled with.
//!
//! The compiled route table keeps only what serving needs; the console needs the
//! definitions' own words (summaries, descriptions, `x-ms-summary`, `x-ms-visibility`,
//! enums, defaults, body schemas), so the server keeps the models beside it.

use std::collections::HashMap;

use indexmap::IndexMap;
use junction_model::{
    ConnectionParameter, Connector, Diagnostics, Operation, Parameter, SecurityScheme, Severity,
    Visibility,
};
use junction_runtime::{Config, Secret};
use serde_json::{Map, Value, json};

/// The connector models and the load diagnostics, shared by the admin handlers.
#[derive(Debug, Default)]
pub struct Catalog {
    connectors: IndexMap<String, Connector>,
    diagnostics: Diagnostics,
    /// The secret values of each `[connector.NAME.connection]`, to redact from what the
    /// console shows.
    configured_secrets: HashMap<String, Vec<Secret>>,
    /// `[trigger.NAME]` sections, in file order.
    triggers: Vec<(String, junction_runtime::config::triggers::TriggerConfig)>,
}

impl Catalog {
    /// The catalog of `connectors` served with `config`, loaded with `diagnostics`
    /// (warnings of the import and of the compilation).
    pub fn new(config: &Config, connectors: Vec<Connector>, diagnostics: Diagnostics) -> Catalog {
        let mut configured_secrets = HashMap::new();
        for connector in &connectors {
            let Some(section) = config.connectors.get(&connector.name) else {
                continue;
            };
            // As in the store: a value is secret unless a declared parameter says it is not.
            let secrets = section
                .connection
                .iter()
                .filter(|(name, _)| {
                    !connector
                        .connection_parameters()
                        .any(|p| &p.name == *name && !p.is_secret())
                })
                .map(|(_, value)| value.clone())
                .collect();
            configured_secrets.insert(connector.name.clone(), secrets);
        }
        Catalog {
            connectors: connectors
                .into_iter()
                .map(|c| (c.name.clone(), c))
                .collect(),
            diagnostics,
            configured_secrets,
            triggers: config
                .triggers
                .iter()
                .map(|(name, trigger)| (name.clone(), trigger.clone()))
                .collect(),
        }
    }

    /// The configured triggers, by name, in file order.
    pub fn triggers(&self) -> &[(String, junction_runtime::config::triggers::TriggerConfig)] {
        &self.triggers
    }

    /// The model of connector `name`.
    pub fn connector(&self, name: &str) -> Option<&Connector> {
        self.connectors.get(name)
    }

    /// The JSON Schema of a new connection (`POST /api/v1/connections`) for the loaded
    /// connectors: one alternative per connector and parameter set, its values typed and
    /// the required ones required (OAuth settings are filled by the login, so optional).
    pub fn new_connection_schema(&self) -> Value {
        let name = json!({"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"});
        let owner = json!({"type": ["string", "null"], "pattern": "^[A-Za-z0-9._-]{1,64}$"});
        let mut alternatives: Vec<Value> = Vec::new();
        let mut names: Vec<&String> = self.connectors.keys().collect();
        names.sort();
        for connector in names.into_iter().filter_map(|n| self.connectors.get(n)) {
            let described = connection_parameters(connector);
            let derived = described["derived"] == true;
            for set in described["sets"].as_array().into_iter().flatten() {
                let mut properties = Map::new();
                let mut required = Vec::new();
                for parameter in set["parameters"].as_array().into_iter().flatten() {
                    let pname = parameter["name"].as_str().unwrap_or_default();
                    if parameter["oauth"] == true {
                        for (setting, schema) in [
                            ("clientId", json!({"type": "string"})),
                            ("clientSecret", json!({"type": "string"})),
                            (
                                "grantType",
                                json!({"enum": junction_store::values::OAUTH_GRANTS}),
                            ),
                            ("scopes", json!({"type": "string"})),
                        ] {
                            properties.insert(format!("{pname}:{setting}"), schema);
                        }
                        continue;
                    }
                    properties.insert(pname.to_owned(), value_schema(parameter));
                    if parameter["required"] == true && !derived {
                        required.push(json!(pname));
                    }
                }
                let mut values = json!({"type": "object", "properties": properties,
                                        "required": required});
                // Values of a connector that declares none: any names, scalar values.
                values["additionalProperties"] = if derived {
                    json!({"type": ["string", "number", "boolean"]})
                } else {
                    json!(false)
                };
                let mut fields = Map::new();
                fields.insert("connector".into(), json!({"const": connector.name}));
                fields.insert("name".into(), name.clone());
                fields.insert("owner".into(), owner.clone());
                fields.insert("values".into(), values);
                let mut needed = vec![json!("connector"), json!("name")];
                if !required.is_empty() {
                    needed.push(json!("values"));
                }
                if let Some(set_name) = set["name"].as_str() {
                    fields.insert("parameter_set".into(), json!({"const": set_name}));
                    needed.push(json!("parameter_set"));
                }
                alternatives.push(json!({
                    "type": "object", "properties": fields, "required": needed,
                    "additionalProperties": false
                }));
            }
        }
        if alternatives.is_empty() {
            return json!({"description": "No connector is loaded: no connection can be created", "not": {}});
        }
        json!({"oneOf": alternatives})
    }

    /// The secret values of connector `name`'s configured connection.
    pub(crate) fn configured_secrets(&self, name: &str) -> &[Secret] {
        self.configured_secrets.get(name).map_or(&[], Vec::as_slice)
    }

    /// `{"diagnostics": [...], "errors": N, "warnings": N}`.
    pub fn diagnostics(&self) -> Value {
        let count = |severity| {
            self.diagnostics
                .iter()
                .filter(|d| d.severity == severity)
                .count()
        };
        json!({
            "diagnostics": self.diagnostics.iter().collect::<Vec<_>>(),
            "errors": count(Severity::Error),
            "warnings": count(Severity::Warning),
        })
    }
}

/// One operation with everything a form needs. Parameters come in display order:
/// `important` first, then the plain ones, then `advanced`; `internal` ones (which the
/// gateway fills in itself) are listed last with `"visibility": "internal"`.
pub fn operation_detail(connector: &Connector, op: &Operation) -> Value {
    let mut parameters: Vec<&Parameter> = op.parameters.iter().collect();
    // A stable sort keeps the definition's order within each visibility.
    parameters.sort_by_key(|p| p.visibility);
    let parameters: Vec<Value> = parameters
        .into_iter()
        .map(|p| {
            let schema = resolved(connector, &p.schema);
            let mut out = json!({
                "name": p.name,
                "in": p.location.as_str(),
                "required": p.required,
                "visibility": visibility(p.visibility),
                "schema": schema,
            });
            put(&mut out, "summary", p.summary.as_deref());
            put(&mut out, "description", p.description.as_deref());
            put_value(&mut out, "type", schema.get("type"));
            put_value(&mut out, "format", schema.get("format"));
            put_value(&mut out, "enum", schema.get("enum"));
            put_value(
                &mut out,
                "default",
                p.default.as_ref().or(schema.get("default")),
            );
            if p.schema.get("type").and_then(Value::as_str) == Some("array") {
                out["collection_format"] = json!(p.collection_format);
            }
            if p.is_file {
                out["file"] = Value::Bool(true);
            }
            out
        })
        .collect();
    let mut detail = json!({
        "connector": connector.name,
        "id": op.id,
        "method": op.method,
        "path": op.path,
        "deprecated": op.deprecated,
        "visibility": visibility(op.visibility),
        "parameters": parameters,
    });
    put(&mut detail, "summary", op.summary.as_deref());
    put(&mut detail, "description", op.description.as_deref());
    if let Some(body) = &op.body {
        let mut out = json!({
            "name": body.name,
            "required": body.required,
            "media_types": body.media_types,
            "visibility": visibility(body.visibility),
            "schema": inline_refs(connector, &body.schema, 0),
        });
        put(&mut out, "summary", body.summary.as_deref());
        put(&mut out, "description", body.description.as_deref());
        detail["body"] = out;
    }
    if op.is_trigger() {
        detail["trigger"] = Value::Bool(true);
    }
    detail
}

fn visibility(v: Visibility) -> Value {
    json!(v)
}

fn put(target: &mut Value, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        target[key] = Value::String(value.to_owned());
    }
}

fn put_value(target: &mut Value, key: &str, value: Option<&Value>) {
    if let Some(value) = value {
        target[key] = value.clone();
    }
}

/// `schema` with a top-level `$ref` followed (a parameter's own schema).
fn resolved(connector: &Connector, schema: &Value) -> Value {
    connector.resolve(schema).unwrap_or(schema).clone()
}

/// How deep [`inline_refs`] follows `$ref`s: enough for a form, bounded for recursive
/// definitions.
const INLINE_DEPTH: usize = 6;

/// `schema` with its `$ref`s replaced by the definitions they name, down to
/// [`INLINE_DEPTH`] levels (deeper ones, and dangling ones, stay references), so the
/// console can show a body's shape without the connector's `definitions`.
fn inline_refs(connector: &Connector, schema: &Value, depth: usize) -> Value {
    match schema {
        Value::Object(map) => {
            if map.contains_key("$ref") {
                if depth >= INLINE_DEPTH {
                    return schema.clone();
                }
                return match connector.resolve(schema) {
                    Some(target) if !std::ptr::eq(target, schema) => {
                        inline_refs(connector, target, depth + 1)
                    }
                    _ => schema.clone(),
                };
            }
            let mut out = Map::new();
            for (key, value) in map {
                out.insert(key.clone(), inline_refs(connector, value, depth));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| inline_refs(connector, v, depth))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The connection parameters of `connector`, as forms need them:
/// `{"sets": [{"name", "display_name", "parameters": [...]}], "derived": bool}`. A connector
/// without parameter sets has one set named `null`. A plain OpenAPI definition declares no
/// connection parameters; its security schemes say which values the gateway reads
/// (`api_key`, `username` + `password`, `access_token`), and those are listed with
/// `"derived": true` (every such value is a secret).
pub fn connection_parameters(connector: &Connector) -> Value {
    let sets = connector
        .properties
        .as_ref()
        .and_then(|p| p.connection_parameter_sets.as_ref())
        .filter(|s| !s.values.is_empty());
    if let Some(sets) = sets {
        let sets: Vec<Value> = sets
            .values
            .iter()
            .map(|set| {
                json!({
                    "name": set.name,
                    "display_name": set.display_name,
                    "parameters": set.parameters.values().map(parameter).collect::<Vec<_>>(),
                })
            })
            .collect();
        return json!({"connector": connector.name, "sets": sets, "derived": false});
    }
    let declared: Vec<Value> = connector.connection_parameters().map(parameter).collect();
    if !declared.is_empty() {
        return json!({"connector": connector.name, "derived": false,
                      "sets": [{"name": null, "display_name": null, "parameters": declared}]});
    }
    let mut derived: Vec<Value> = Vec::new();
    let mut add = |name: &str, display: &str| {
        if !derived.iter().any(|p| p["name"] == name) {
            derived.push(
                json!({"name": name, "type": "securestring", "display_name": display,
                                "required": false, "secret": true, "allowed_values": []}),
            );
        }
    };
    for scheme in connector.security_schemes.values() {
        match scheme {
            SecurityScheme::ApiKey { .. } => add("api_key", "API key"),
            SecurityScheme::Basic => {
                add("username", "User name");
                add("password", "Password");
            }
            _ => add("access_token", "Access token"),
        }
    }
    json!({"connector": connector.name, "derived": true,
           "sets": [{"name": null, "display_name": null, "parameters": derived}]})
}

/// The schema of one connection value, as the store reads it: text (numbers and booleans
/// are taken as their text), an integer or a boolean (also as text), one of the allowed
/// values when the package lists them.
fn value_schema(parameter: &Value) -> Value {
    if let Some(allowed) = parameter["allowed_values"]
        .as_array()
        .filter(|a| !a.is_empty())
    {
        return json!({"enum": allowed});
    }
    match parameter["type"]
        .as_str()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("int" | "integer") => {
            json!({"type": ["integer", "string"], "pattern": "^[-+]?[0-9]{1,18}$"})
        }
        Some("bool" | "boolean") => json!({"enum": [true, false, "true", "false"]}),
        _ => json!({"type": ["string", "number", "boolean"]}),
    }
}

fn parameter(p: &ConnectionParameter) -> Value {
    json!({
        "name": p.name,
        "type": p.kind,
        "display_name": p.display_name,
        "description": p.description,
        "required": p.required,
        "secret": p.is_secret(),
        "allowed_values": p.allowed_values,
        "oauth": p.kind.eq_ignore_ascii_case("oauthsetting"),
    })
}
