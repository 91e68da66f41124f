//! Generates a valid example value from a connector's JSON Schema, for calling operations in
//! end-to-end tests with arguments their definition accepts.
//!
//! The generator is deterministic (a fixed seed) and prefers the simplest value a schema
//! allows: the first `enum` member, the lower bound of a range, the required properties of
//! an object, one item of an array. Patterns are sampled with `rand_regex` over ASCII.

use junction_model::Connector;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};

/// How deep the generator follows nested schemas before it gives up on optional structure.
const MAX_DEPTH: usize = 12;

/// A deterministic example generator over one connector's schemas.
#[derive(Debug)]
pub struct Examples<'a> {
    connector: &'a Connector,
    rng: StdRng,
}

impl<'a> Examples<'a> {
    pub fn new(connector: &'a Connector) -> Self {
        Self {
            connector,
            rng: StdRng::seed_from_u64(0x6a75_6e63),
        }
    }

    /// An example value valid against `schema`.
    pub fn value(&mut self, schema: &Value) -> Value {
        self.generate(schema, 0)
    }

    fn generate(&mut self, schema: &Value, depth: usize) -> Value {
        let Some(schema) = self.connector.resolve(schema) else {
            return json!("example");
        };
        let Some(obj) = schema.as_object() else {
            return json!("example");
        };
        if let Some(value) = obj.get("const") {
            return value.clone();
        }
        if let Some(first) = obj
            .get("enum")
            .and_then(Value::as_array)
            .and_then(|e| e.iter().find(|v| !v.is_null()))
        {
            return first.clone();
        }
        if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
            let mut merged = Map::new();
            for part in all {
                match self.generate(part, depth + 1) {
                    Value::Object(map) => merged.extend(map),
                    other if all.len() == 1 => return other,
                    _ => {}
                }
            }
            if let Value::Object(own) = self.object(obj, depth) {
                merged.extend(own);
            }
            return Value::Object(merged);
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(first) = obj
                .get(key)
                .and_then(Value::as_array)
                .and_then(|a| a.first())
            {
                return self.generate(first, depth + 1);
            }
        }
        match schema_type(obj) {
            Some("string") => self.string(obj),
            Some("integer") => integer(obj),
            Some("number") => number(obj),
            Some("boolean") => json!(true),
            Some("array") => {
                let count = obj
                    .get("minItems")
                    .and_then(Value::as_u64)
                    .unwrap_or(1)
                    .max(1);
                let items = obj.get("items").cloned().unwrap_or(json!({}));
                let mut out: Vec<Value> = Vec::new();
                for i in 0..count.min(8) {
                    let mut item = self.generate(&items, depth + 1);
                    if obj.get("uniqueItems") == Some(&json!(true)) && out.contains(&item) {
                        item = uniquify(item, i);
                    }
                    out.push(item);
                }
                Value::Array(out)
            }
            Some("object") => self.object(obj, depth),
            Some("null") => Value::Null,
            _ if obj.contains_key("properties") => self.object(obj, depth),
            _ => json!("example"),
        }
    }

    fn object(&mut self, obj: &Map<String, Value>, depth: usize) -> Value {
        let mut out = Map::new();
        let Some(props) = obj.get("properties").and_then(Value::as_object) else {
            return Value::Object(out);
        };
        let required: Vec<&str> = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (name, schema) in props {
            let wanted = required.contains(&name.as_str())
                || (depth == 0 && is_simple(self.connector, schema));
            if wanted && depth < MAX_DEPTH && !is_read_only(self.connector, schema) {
                out.insert(name.clone(), self.generate(schema, depth + 1));
            }
        }
        Value::Object(out)
    }

    fn string(&mut self, obj: &Map<String, Value>) -> Value {
        let format = obj.get("format").and_then(Value::as_str).unwrap_or("");
        let mut s = match format.to_ascii_lowercase().as_str() {
            "date-time" => "2024-05-06T07:08:09Z".to_owned(),
            "date" => "2024-05-06".to_owned(),
            "time" => "07:08:09Z".to_owned(),
            "email" => "someone@example.com".to_owned(),
            "uuid" | "guid" => "3fa85f64-5717-4562-b3fc-2c963f66afa6".to_owned(),
            "uri" | "url" => "https://example.com/x".to_owned(),
            "byte" => "ZXhhbXBsZQ==".to_owned(),
            "ipv4" => "192.0.2.1".to_owned(),
            "ipv6" => "2001:db8::1".to_owned(),
            "hostname" => "example.com".to_owned(),
            _ => "example".to_owned(),
        };
        if let Some(pattern) = obj.get("pattern").and_then(Value::as_str)
            && let Some(sample) = self.sample(pattern)
        {
            s = sample;
        }
        let min = obj.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = obj
            .get("maxLength")
            .and_then(Value::as_u64)
            .map(|m| m as usize);
        while s.chars().count() < min {
            s.push('x');
        }
        if let Some(max) = max {
            s = s.chars().take(max).collect();
        }
        Value::String(s)
    }

    /// A string matching `pattern`, or `None` when the pattern uses what the sampler cannot
    /// express (look-around, back references).
    fn sample(&mut self, pattern: &str) -> Option<String> {
        use rand::RngExt as _;
        // The sampler cannot express anchors; a sample is a whole string anyway.
        let body = pattern.strip_prefix('^').unwrap_or(pattern);
        let body = match body.strip_suffix('$') {
            Some(inner) if !inner.ends_with('\\') => inner,
            _ => body,
        };
        let hir = regex_syntax::ParserBuilder::new()
            .unicode(false)
            .build()
            .parse(body)
            .ok()?;
        let generator = rand_regex::Regex::with_hir(hir, 8).ok()?;
        let check = regex::Regex::new(pattern).ok()?;
        for _ in 0..32 {
            let candidate: String = self.rng.sample(&generator);
            if check.is_match(&candidate) && !candidate.chars().any(char::is_control) {
                return Some(candidate);
            }
        }
        None
    }
}

fn schema_type(obj: &Map<String, Value>) -> Option<&str> {
    match obj.get("type") {
        Some(Value::String(t)) => Some(t.as_str()),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null"),
        _ => None,
    }
}

fn integer(obj: &Map<String, Value>) -> Value {
    let (low, high) = bounds(obj, 1.0);
    let mut value = low.ceil();
    if let Some(step) = obj.get("multipleOf").and_then(Value::as_f64)
        && step > 0.0
    {
        value = (value / step).ceil() * step;
    }
    json!(value.min(high.floor()) as i64)
}

fn number(obj: &Map<String, Value>) -> Value {
    let (low, high) = bounds(obj, 1.5);
    let mut value = low;
    if let Some(step) = obj.get("multipleOf").and_then(Value::as_f64)
        && step > 0.0
    {
        value = (value / step).ceil() * step;
    }
    json!(value.min(high))
}

/// The lowest value allowed, or `preferred` when it lies inside the bounds; and the highest.
fn bounds(obj: &Map<String, Value>, preferred: f64) -> (f64, f64) {
    let mut low = f64::MIN;
    let mut high = f64::MAX;
    if let Some(m) = obj.get("minimum").and_then(Value::as_f64) {
        low = m;
    }
    if let Some(m) = obj.get("exclusiveMinimum").and_then(Value::as_f64) {
        low = m + 1.0;
    }
    if let Some(m) = obj.get("maximum").and_then(Value::as_f64) {
        high = m;
    }
    if let Some(m) = obj.get("exclusiveMaximum").and_then(Value::as_f64) {
        high = m - 1.0;
    }
    let value = if (low..=high).contains(&preferred) {
        preferred
    } else if low > f64::MIN {
        low
    } else {
        high
    };
    (value, high)
}

fn uniquify(item: Value, i: u64) -> Value {
    match item {
        Value::String(s) => Value::String(format!("{s}{i}")),
        Value::Number(n) => json!(n.as_f64().unwrap_or(0.0) + i as f64),
        other => other,
    }
}

fn is_simple(connector: &Connector, schema: &Value) -> bool {
    connector
        .resolve(schema)
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| matches!(t, "string" | "integer" | "number" | "boolean"))
}

fn is_read_only(connector: &Connector, schema: &Value) -> bool {
    connector
        .resolve(schema)
        .and_then(|s| s.get("readOnly"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn connector() -> Connector {
        junction_import::load_from_str(
            "x",
            "openapi.json",
            r#"{"openapi":"3.0.0","info":{"title":"x","version":"1"},"paths":{}}"#,
            None,
        )
        .connector
        .unwrap()
    }

    #[test]
    fn patterns_give_matching_strings() {
        let c = connector();
        let mut ex = Examples::new(&c);
        for pattern in [
            r"^d\d{1,8}c\d{1,8}v\d{1,8}$",
            r"^[A-Z]{3}$",
            r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$",
        ] {
            let value = ex.value(&json!({"type": "string", "pattern": pattern}));
            let text = value.as_str().unwrap();
            assert!(
                regex::Regex::new(pattern).unwrap().is_match(text),
                "{pattern}: {text}"
            );
        }
    }
}
