//! The JSON Schema (draft 2020-12) of `junction.toml`, generated from the types that read
//! it: every key they accept and nothing else, so the schema cannot drift from the reader.
//! `junction config schema` prints it (and, with `--view`, the view file's: [`view`]).

use serde_json::Value;

use super::RawConfig;

/// The schema of `junction.toml`.
pub fn config() -> Value {
    let mut schema = schemars::schema_for!(RawConfig).to_value();
    describe(
        &mut schema,
        "junction.toml",
        "The configuration of a Junction gateway (docs/config.md). Strings may use ${VAR} and ${VAR:-default}.",
    );
    schema
}

/// The schema of a view file (`views/NAME.toml`, docs/views.md).
pub fn view() -> Value {
    let mut schema = crate::view::raw_schema();
    describe(
        &mut schema,
        "Junction view file",
        "One view served at /views/NAME: its inputs, steps and shape (docs/views.md).",
    );
    schema
}

fn describe(schema: &mut Value, title: &str, description: &str) {
    tidy(schema);
    if let Value::Object(map) = schema {
        map.insert("title".into(), Value::String(title.to_owned()));
        map.insert("description".into(), Value::String(description.to_owned()));
    }
}

/// Reads the generated schema as a TOML writer would: an optional key is absent, never
/// `null` (TOML has none), and definitions are named after what they describe, not after
/// the reader's `Raw…` types.
fn tidy(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            let single = match map.get_mut("anyOf") {
                Some(Value::Array(options)) => {
                    options.retain(|o| o.get("type").and_then(Value::as_str) != Some("null"));
                    (options.len() == 1).then(|| options.remove(0))
                }
                _ => None,
            };
            if let Some(Value::Object(only)) = single {
                map.remove("anyOf");
                map.extend(only);
            }
            if let Some(Value::String(target)) = map.get_mut("$ref") {
                *target = target.replace("/Raw", "/");
            }
            if let Some(Value::Object(defs)) = map.get_mut("$defs") {
                let renamed: serde_json::Map<String, Value> = std::mem::take(defs)
                    .into_iter()
                    .map(|(name, def)| (name.strip_prefix("Raw").unwrap_or(&name).to_owned(), def))
                    .collect();
                *defs = renamed;
            }
            map.values_mut().for_each(tidy);
        }
        Value::Array(items) => items.iter_mut().for_each(tidy),
        _ => {}
    }
}
