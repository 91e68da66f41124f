//! Schemas: Swagger / OpenAPI schema objects → JSON Schema draft 2020-12 the runtime compiles.
//!
//! Every local `$ref` ends up as `#/definitions/NAME` with NAME a key of
//! [`junction_model::Connector::definitions`]:
//! - `#/definitions/X` (Swagger) and `#/components/schemas/X` (OpenAPI 3) keep the name `X`
//!   when it is made of `A-Z a-z 0-9 . _ -`; other characters become `_` (so a reference
//!   never needs escaping, in a JSON pointer or in a URI), and clashes get a `_2`, `_3` suffix;
//! - a reference to anywhere else in the document (`#/definitions/X/properties/y`,
//!   `#/paths/…/schema`) hoists a copy of its target into the definitions under a generated
//!   name (`X.properties.y`);
//! - an external or dangling reference is reported (`unresolved-ref`) and dropped, leaving `{}`.
//!
//! Cycles through properties or items are fine and stay references. A cycle that never
//! consumes any input — `A = {"$ref": B}`, `B = {"allOf": [{"$ref": A}]}` — would make a
//! validator recurse forever, so it is reported (`ref-cycle`) and broken.
//!
//! Draft 4 idioms are rewritten (`x-nullable` / `nullable`, boolean `exclusiveMaximum`, tuple
//! `items`, `type: file`), and every keyword whose value the 2020-12 meta-schema would refuse
//! is repaired when the intent is clear (`"maxLength": "10"`, `"type": "String"`) or dropped,
//! with a warning either way, so that every schema compiles. In Swagger 2.0 and OpenAPI 3.0 a
//! `$ref` replaces its siblings; only annotations (`description`, `x-…` …) are kept beside it.

use std::collections::{HashMap, HashSet, VecDeque};

use junction_model::SourceFormat;
use serde_json::{Map, Number, Value};

use crate::ptr::{self, Ptr, RefTarget};
use crate::sink::Sink;

const TYPES: [&str; 7] = [
    "array", "boolean", "integer", "null", "number", "object", "string",
];

/// Keywords kept beside a `$ref` in Swagger 2.0 / OpenAPI 3.0, where siblings are ignored.
const REF_ANNOTATIONS: [&str; 11] = [
    "$ref",
    "description",
    "title",
    "example",
    "examples",
    "default",
    "readOnly",
    "writeOnly",
    "deprecated",
    "externalDocs",
    "$comment",
];

/// Keywords whose value is one schema.
const SCHEMA_KEYWORDS: [&str; 11] = [
    "additionalProperties",
    "items",
    "not",
    "contains",
    "propertyNames",
    "if",
    "then",
    "else",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
];

/// Keywords whose value is a map of name → schema.
const SCHEMA_MAP_KEYWORDS: [&str; 5] = [
    "properties",
    "patternProperties",
    "definitions",
    "$defs",
    "dependentSchemas",
];

/// Keywords whose value is a non-empty array of schemas.
const SCHEMA_ARRAY_KEYWORDS: [&str; 4] = ["allOf", "anyOf", "oneOf", "prefixItems"];

/// Keywords that must be strings.
const STRING_KEYWORDS: [&str; 7] = [
    "format",
    "pattern",
    "title",
    "description",
    "$comment",
    "contentMediaType",
    "contentEncoding",
];

/// Keywords that must be booleans.
const BOOL_KEYWORDS: [&str; 4] = ["uniqueItems", "readOnly", "writeOnly", "deprecated"];

/// Keywords that must be non-negative integers.
const COUNT_KEYWORDS: [&str; 8] = [
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minContains",
    "maxContains",
];

/// Identifier keywords that would re-base references or switch dialects; dropped.
const DROPPED_KEYWORDS: [&str; 8] = [
    "$id",
    "$schema",
    "$anchor",
    "$dynamicAnchor",
    "$dynamicRef",
    "$recursiveRef",
    "$recursiveAnchor",
    "$vocabulary",
];

/// Schemas nested deeper than this are cut (parsers already stop far earlier).
const MAX_DEPTH: usize = 256;

/// A schema to be hoisted into the definitions: where it is, and its name.
#[derive(Debug)]
struct Pending {
    tokens: Vec<String>,
    pointer: String,
    name: String,
}

/// The definitions of one document, built up as its schemas are normalized.
#[derive(Debug)]
pub(crate) struct Schemas<'d> {
    doc: &'d Value,
    format: SourceFormat,
    /// Canonical source pointer → definition name.
    names: HashMap<String, String>,
    /// Definition name → source pointer.
    sources: HashMap<String, String>,
    taken: HashSet<String>,
    pending: VecDeque<Pending>,
    out: Map<String, Value>,
}

impl<'d> Schemas<'d> {
    /// Registers the named schemas of `doc` (Swagger `definitions` or OpenAPI
    /// `components.schemas`) so that they come first, in source order.
    pub(crate) fn new(doc: &'d Value, format: SourceFormat, sink: &mut Sink) -> Self {
        let mut schemas = Schemas {
            doc,
            format,
            names: HashMap::new(),
            sources: HashMap::new(),
            taken: HashSet::new(),
            pending: VecDeque::new(),
            out: Map::new(),
        };
        let root: &[&str] = match format {
            SourceFormat::Swagger2 | SourceFormat::Wsdl11 => &["definitions"],
            SourceFormat::OpenApi30 | SourceFormat::OpenApi31 => &["components", "schemas"],
        };
        let mut cur = Some(doc);
        for k in root {
            cur = cur.and_then(|v| v.get(k));
        }
        match cur {
            Some(Value::Object(map)) => {
                for key in map.keys() {
                    let mut tokens: Vec<String> = root.iter().map(|s| (*s).to_owned()).collect();
                    tokens.push(key.clone());
                    schemas.register(tokens);
                }
            }
            Some(other) => {
                let toks: Vec<String> = root.iter().map(|s| (*s).to_owned()).collect();
                let pointer = ptr::render_tokens(&toks);
                sink.warn(
                    "invalid-field",
                    &Ptr::rendered(&pointer),
                    format!(
                        "must be an object of schemas, found {}; ignored",
                        kind(other)
                    ),
                );
            }
            None => {}
        }
        schemas
    }

    /// A normalized copy of `schema`, which sits at `at` in the source.
    pub(crate) fn normalize(&mut self, schema: &Value, at: &Ptr<'_>, sink: &mut Sink) -> Value {
        let mut v = schema.clone();
        self.normalize_in_place(&mut v, at, sink, 0);
        v
    }

    /// The schema at `pointer`, reached through a shared object (a `$ref`'d parameter,
    /// request body or response). A large one is hoisted into the definitions once and
    /// returned as a reference, so that it is not copied into every operation that uses it
    /// (which could make a small file expand into gigabytes); a small one is copied, so that
    /// a parameter's `type` stays at hand.
    pub(crate) fn normalize_shared(
        &mut self,
        schema: &Value,
        pointer: &str,
        sink: &mut Sink,
    ) -> Value {
        if count_nodes(schema, SHARED_INLINE_LIMIT) > SHARED_INLINE_LIMIT
            && let Some(tokens) = pointer
                .strip_prefix('/')
                .map(|p| p.split('/').map(ptr::unescape_token).collect::<Vec<_>>())
            && let Some(name) = self.name_for(tokens)
        {
            let mut reference = Map::new();
            reference.insert(
                "$ref".into(),
                Value::String(format!("#/definitions/{name}")),
            );
            return Value::Object(reference);
        }
        self.normalize(schema, &Ptr::rendered(pointer), sink)
    }

    /// Normalizes every registered and hoisted schema and returns the definitions.
    pub(crate) fn finish(mut self, sink: &mut Sink) -> Map<String, Value> {
        while let Some(p) = self.pending.pop_front() {
            let Some(source) = ptr::get(self.doc, &p.tokens) else {
                continue;
            };
            let at = Ptr::rendered(&p.pointer);
            let v = self.normalize(source, &at, sink);
            self.out.insert(p.name, v);
        }
        break_cycles(&mut self.out, &self.sources, sink);
        self.out
    }

    /// The name of the definition for the schema at `tokens`, registering it if needed.
    /// `None` when nothing is there.
    fn name_for(&mut self, tokens: Vec<String>) -> Option<String> {
        let pointer = ptr::render_tokens(&tokens);
        if let Some(name) = self.names.get(&pointer) {
            return Some(name.clone());
        }
        ptr::get(self.doc, &tokens)?;
        Some(self.register(tokens))
    }

    fn register(&mut self, tokens: Vec<String>) -> String {
        let pointer = ptr::render_tokens(&tokens);
        let base = match tokens.as_slice() {
            [d, rest @ ..] if d == "definitions" && !rest.is_empty() => rest.join("."),
            [c, s, rest @ ..] if c == "components" && s == "schemas" && !rest.is_empty() => {
                rest.join(".")
            }
            all => all.join("."),
        };
        let mut base: String = base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if base.is_empty() {
            base.push_str("schema");
        }
        let mut name = base.clone();
        let mut n = 2;
        while self.taken.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.taken.insert(name.clone());
        self.names.insert(pointer.clone(), name.clone());
        self.sources.insert(name.clone(), pointer.clone());
        self.pending.push_back(Pending {
            tokens,
            pointer,
            name: name.clone(),
        });
        name
    }

    /// Resolves a `$ref` to a definition name, or says why it cannot be.
    fn resolve_ref(&mut self, reference: &str) -> Result<String, String> {
        match ptr::parse_ref(reference) {
            RefTarget::External => Err(format!(
                "reference '{reference}' points outside this document, which is not supported; \
                 replaced by {{}}"
            )),
            RefTarget::Local(tokens) if tokens.is_empty() => Err(format!(
                "reference '{reference}' points at the whole document; replaced by {{}}"
            )),
            RefTarget::Local(tokens) => self.name_for(tokens).ok_or_else(|| {
                format!(
                    "reference '{reference}' points at nothing in this document; replaced by {{}}"
                )
            }),
        }
    }

    fn normalize_in_place(&mut self, v: &mut Value, at: &Ptr<'_>, sink: &mut Sink, depth: usize) {
        if depth > MAX_DEPTH {
            sink.warn(
                "invalid-schema",
                at,
                "schema nested too deeply; replaced by {}",
            );
            *v = Value::Object(Map::new());
            return;
        }
        match v {
            Value::Bool(_) => {}
            Value::Object(map) => self.normalize_object(map, at, sink, depth),
            _ => {
                sink.warn(
                    "invalid-schema",
                    at,
                    format!(
                        "a schema must be an object, found {}; replaced by {{}}",
                        kind(v)
                    ),
                );
                *v = Value::Object(Map::new());
            }
        }
    }

    fn normalize_object(
        &mut self,
        map: &mut Map<String, Value>,
        at: &Ptr<'_>,
        sink: &mut Sink,
        depth: usize,
    ) {
        // One pass over the keys says which keywords are present, so that the (hashed)
        // lookups below are only made for those: most schema objects hold two or three keys.
        let mut present = keywords_present(map);
        if present == 0 {
            return;
        }
        let has = |present: u64, key: &str| present & keyword_bit(key) != 0;

        // References first: in Swagger 2.0 and OpenAPI 3.0 they replace their siblings.
        if has(present, "$ref")
            && let Some(reference) = map.get("$ref")
        {
            match reference {
                Value::String(r) => {
                    let r = r.clone();
                    match self.resolve_ref(&r) {
                        Ok(name) => {
                            map.insert(
                                "$ref".into(),
                                Value::String(format!("#/definitions/{name}")),
                            );
                        }
                        Err(message) => {
                            sink.warn("unresolved-ref", &at.key("$ref"), message);
                            map.shift_remove("$ref");
                        }
                    }
                }
                other => {
                    sink.warn(
                        "unresolved-ref",
                        &at.key("$ref"),
                        format!("'$ref' must be a string, found {}; ignored", kind(other)),
                    );
                    map.shift_remove("$ref");
                }
            }
            if self.format != SourceFormat::OpenApi31 {
                map.retain(|k, _| REF_ANNOTATIONS.contains(&k.as_str()) || k.starts_with("x-"));
                present = keywords_present(map);
            }
        }

        if has(present, "$id") {
            for k in DROPPED_KEYWORDS {
                map.shift_remove(k);
            }
        }

        if has(present, "type")
            && let Some(t) = map.get_mut("type")
            && !fix_type(t, &at.key("type"), sink)
        {
            map.shift_remove("type");
        }

        // `x-nullable: true` (Swagger) and `nullable: true` (OpenAPI 3.0) → "null" in `type`.
        if has(present, "nullable") || has(present, "x-nullable") {
            let nullable = map.get("x-nullable") == Some(&Value::Bool(true))
                || map.get("nullable") == Some(&Value::Bool(true));
            map.shift_remove("nullable");
            if nullable {
                add_null(map);
            }
        }

        for key in ["minimum", "maximum", "multipleOf"] {
            if has(present, key) {
                fix_number(map, key, at, sink);
            }
        }
        if has(present, "multipleOf")
            && let Some(Value::Number(n)) = map.get("multipleOf")
            && n.as_f64().is_none_or(|f| f <= 0.0)
        {
            sink.warn(
                "invalid-keyword",
                &at.key("multipleOf"),
                "'multipleOf' must be greater than 0; ignored",
            );
            map.shift_remove("multipleOf");
        }
        for key in COUNT_KEYWORDS {
            if has(present, key) {
                fix_count(map, key, at, sink);
            }
        }
        if has(present, "exclusiveMaximum") {
            fix_exclusive(map, "exclusiveMaximum", "maximum", at, sink);
        }
        if has(present, "exclusiveMinimum") {
            fix_exclusive(map, "exclusiveMinimum", "minimum", at, sink);
        }
        if has(present, "required") {
            fix_required(map, at, sink);
        }
        if has(present, "enum")
            && let Some(e) = map.get("enum")
            && !e.is_array()
        {
            sink.warn(
                "invalid-keyword",
                &at.key("enum"),
                format!("'enum' must be an array, found {}; ignored", kind(e)),
            );
            map.shift_remove("enum");
        }
        for key in STRING_KEYWORDS {
            if has(present, key)
                && let Some(v) = map.get(key)
                && !v.is_string()
            {
                sink.warn(
                    "invalid-keyword",
                    &at.key(key),
                    format!("'{key}' must be a string, found {}; ignored", kind(v)),
                );
                map.shift_remove(key);
            }
        }
        for key in BOOL_KEYWORDS {
            if has(present, key) {
                fix_bool(map, key, at, sink);
            }
        }
        if has(present, "examples")
            && let Some(e) = map.get_mut("examples")
            && !e.is_array()
        {
            *e = Value::Array(vec![e.take()]);
        }
        if has(present, "dependentRequired") {
            fix_dependent_required(map, at, sink);
        }

        // Draft 4 tuples: `items: [..]` → `prefixItems`, `additionalItems` → `items`.
        if has(present, "items") || has(present, "additionalItems") {
            if let Some(Value::Array(_)) = map.get("items") {
                let tuple = map.shift_remove("items").unwrap_or_default();
                if let Some(additional) = map.shift_remove("additionalItems") {
                    map.insert("items".into(), additional);
                }
                map.insert("prefixItems".into(), tuple);
            } else {
                map.shift_remove("additionalItems");
            }
            present = keywords_present(map);
        }

        for key in SCHEMA_KEYWORDS {
            if !has(present, key) {
                continue;
            }
            let Some(sub) = map.get_mut(key) else {
                continue;
            };
            if sub.is_object() || sub.is_boolean() {
                self.normalize_in_place(sub, &at.key(key), sink, depth + 1);
            } else {
                sink.warn(
                    "invalid-keyword",
                    &at.key(key),
                    format!("'{key}' must be a schema, found {}; ignored", kind(sub)),
                );
                map.shift_remove(key);
            }
        }
        for key in SCHEMA_MAP_KEYWORDS {
            if !has(present, key) {
                continue;
            }
            let Some(sub) = map.get_mut(key) else {
                continue;
            };
            let key_at = at.key(key);
            match sub {
                Value::Object(members) => {
                    for (name, schema) in members.iter_mut() {
                        self.normalize_in_place(schema, &key_at.key(name), sink, depth + 1);
                    }
                }
                other => {
                    sink.warn(
                        "invalid-keyword",
                        &key_at,
                        format!("'{key}' must be an object, found {}; ignored", kind(other)),
                    );
                    map.shift_remove(key);
                }
            }
        }
        for key in SCHEMA_ARRAY_KEYWORDS {
            if !has(present, key) {
                continue;
            }
            let Some(sub) = map.get_mut(key) else {
                continue;
            };
            let key_at = at.key(key);
            match sub {
                Value::Array(items) if !items.is_empty() => {
                    for (i, schema) in items.iter_mut().enumerate() {
                        self.normalize_in_place(schema, &key_at.index(i), sink, depth + 1);
                    }
                }
                other => {
                    let found = if other.is_array() {
                        "an empty array"
                    } else {
                        kind(other)
                    };
                    sink.warn(
                        "invalid-keyword",
                        &key_at,
                        format!(
                            "'{key}' must be a non-empty array of schemas, found {found}; ignored"
                        ),
                    );
                    map.shift_remove(key);
                }
            }
        }
        if has(present, "dependencies") {
            self.normalize_dependencies(map, at, sink, depth);
        }
    }

    fn normalize_dependencies(
        &mut self,
        map: &mut Map<String, Value>,
        at: &Ptr<'_>,
        sink: &mut Sink,
        depth: usize,
    ) {
        let Some(deps) = map.get_mut("dependencies") else {
            return;
        };
        let deps_at = at.key("dependencies");
        match deps {
            Value::Object(members) => {
                for (name, dep) in members.iter_mut() {
                    match dep {
                        Value::Array(names) => names.retain(Value::is_string),
                        Value::Object(_) | Value::Bool(_) => {
                            self.normalize_in_place(dep, &deps_at.key(name), sink, depth + 1);
                        }
                        _ => {
                            sink.warn(
                                "invalid-keyword",
                                &deps_at.key(name),
                                format!(
                                    "a dependency must be a schema or a list of names, found {}; ignored",
                                    kind(dep)
                                ),
                            );
                            *dep = Value::Array(Vec::new());
                        }
                    }
                }
            }
            other => {
                sink.warn(
                    "invalid-keyword",
                    &deps_at,
                    format!(
                        "'dependencies' must be an object, found {}; ignored",
                        kind(other)
                    ),
                );
                map.shift_remove("dependencies");
            }
        }
    }
}

/// The bit of a keyword the normalizer acts on, 0 for any other key.
fn keyword_bit(key: &str) -> u64 {
    let i = match key {
        "$ref" => 0,
        "type" => 1,
        "nullable" => 2,
        "x-nullable" => 3,
        "minimum" => 4,
        "maximum" => 5,
        "multipleOf" => 6,
        "minLength" => 7,
        "maxLength" => 8,
        "minItems" => 9,
        "maxItems" => 10,
        "minProperties" => 11,
        "maxProperties" => 12,
        "minContains" => 13,
        "maxContains" => 14,
        "exclusiveMaximum" => 15,
        "exclusiveMinimum" => 16,
        "required" => 17,
        "enum" => 18,
        "format" => 19,
        "pattern" => 20,
        "title" => 21,
        "description" => 22,
        "$comment" => 23,
        "contentMediaType" => 24,
        "contentEncoding" => 25,
        "uniqueItems" => 26,
        "readOnly" => 27,
        "writeOnly" => 28,
        "deprecated" => 29,
        "examples" => 30,
        "dependentRequired" => 31,
        "items" => 32,
        "additionalItems" => 33,
        "additionalProperties" => 34,
        "not" => 35,
        "contains" => 36,
        "propertyNames" => 37,
        "if" => 38,
        "then" => 39,
        "else" => 40,
        "unevaluatedItems" => 41,
        "unevaluatedProperties" => 42,
        "contentSchema" => 43,
        "properties" => 44,
        "patternProperties" => 45,
        "definitions" => 46,
        "$defs" => 47,
        "dependentSchemas" => 48,
        "allOf" => 49,
        "anyOf" => 50,
        "oneOf" => 51,
        "prefixItems" => 52,
        "dependencies" => 53,
        // All of DROPPED_KEYWORDS share one bit, tested as "$id".
        "$id" | "$schema" | "$anchor" | "$dynamicAnchor" | "$dynamicRef" | "$recursiveRef"
        | "$recursiveAnchor" | "$vocabulary" => 54,
        _ => return 0,
    };
    1u64 << i
}

fn keywords_present(map: &Map<String, Value>) -> u64 {
    map.keys().fold(0, |acc, k| acc | keyword_bit(k))
}

/// Schemas reached through a shared object with more nodes than this are hoisted.
const SHARED_INLINE_LIMIT: usize = 64;

/// The number of values in `v`, counting no further than just past `limit`.
fn count_nodes(v: &Value, limit: usize) -> usize {
    let mut count = 0;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        count += 1;
        if count > limit {
            break;
        }
        match v {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.values()),
            _ => {}
        }
    }
    count
}

/// What a JSON value is, for messages: "a string", "an array" …
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Repairs `type`; false when it must be dropped.
fn fix_type(t: &mut Value, at: &Ptr<'_>, sink: &mut Sink) -> bool {
    match t {
        Value::String(s) => match fix_type_name(s, at, sink) {
            Some(name) => {
                *s = name;
                true
            }
            None => false,
        },
        Value::Array(items) => {
            let mut names: Vec<Value> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => {
                        if let Some(name) = fix_type_name(s, &at.index(i), sink) {
                            let name = Value::String(name);
                            if !names.contains(&name) {
                                names.push(name);
                            }
                        }
                    }
                    other => sink.warn(
                        "invalid-type",
                        &at.index(i),
                        format!(
                            "a type name must be a string, found {}; ignored",
                            kind(other)
                        ),
                    ),
                }
            }
            if names.is_empty() {
                false
            } else {
                *items = names;
                true
            }
        }
        other => {
            sink.warn(
                "invalid-type",
                at,
                format!("'type' must be a string, found {}; ignored", kind(other)),
            );
            false
        }
    }
}

fn fix_type_name(s: &str, at: &Ptr<'_>, sink: &mut Sink) -> Option<String> {
    if TYPES.contains(&s) {
        return Some(s.to_owned());
    }
    let lower = s.trim().to_ascii_lowercase();
    if lower == "file" {
        // Swagger's file type has no JSON Schema counterpart; the parameter records it.
        return None;
    }
    if TYPES.contains(&lower.as_str()) {
        sink.warn(
            "type-case",
            at,
            format!("type '{s}' should be written '{lower}'; read as '{lower}'"),
        );
        Some(lower)
    } else {
        sink.warn(
            "invalid-type",
            at,
            format!("'{s}' is not a JSON Schema type; ignored"),
        );
        None
    }
}

fn add_null(map: &mut Map<String, Value>) {
    let null = Value::String("null".into());
    match map.get_mut("type") {
        Some(Value::String(t)) if t != "null" => {
            let t = Value::String(std::mem::take(t));
            map.insert("type".into(), Value::Array(vec![t, null]));
        }
        Some(Value::Array(types)) if !types.contains(&null) => types.push(null),
        _ => {}
    }
    if let Some(Value::Array(values)) = map.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
}

/// Reads a number written as a string (`"10"`), keeping integers integral.
fn parse_number(s: &str) -> Option<Number> {
    let s = s.trim();
    if let Ok(i) = s.parse::<i64>() {
        return Some(Number::from(i));
    }
    if let Ok(u) = s.parse::<u64>() {
        return Some(Number::from(u));
    }
    s.parse::<f64>().ok().and_then(Number::from_f64)
}

fn fix_number(map: &mut Map<String, Value>, key: &str, at: &Ptr<'_>, sink: &mut Sink) {
    match map.get(key) {
        None | Some(Value::Number(_)) => {}
        Some(Value::String(s)) if parse_number(s).is_some() => {
            let n = parse_number(s).unwrap_or_else(|| Number::from(0));
            sink.warn(
                "invalid-keyword",
                &at.key(key),
                format!("'{key}' must be a number, not a string; read as {n}"),
            );
            map.insert(key.to_owned(), Value::Number(n));
        }
        Some(other) => {
            sink.warn(
                "invalid-keyword",
                &at.key(key),
                format!("'{key}' must be a number, found {}; ignored", kind(other)),
            );
            map.shift_remove(key);
        }
    }
}

fn fix_count(map: &mut Map<String, Value>, key: &str, at: &Ptr<'_>, sink: &mut Sink) {
    let Some(v) = map.get(key) else { return };
    if v.as_u64().is_some() {
        return;
    }
    let as_count = |n: &Number| {
        n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= 9.0e15)
                .map(|f| f as u64)
        })
    };
    let repaired = match v {
        Value::Number(n) => as_count(n),
        Value::String(s) => parse_number(s).as_ref().and_then(as_count),
        _ => None,
    };
    match repaired {
        Some(n) => {
            if v.is_string() {
                sink.warn(
                    "invalid-keyword",
                    &at.key(key),
                    format!("'{key}' must be a number, not a string; read as {n}"),
                );
            }
            map.insert(key.to_owned(), Value::from(n));
        }
        None => {
            sink.warn(
                "invalid-keyword",
                &at.key(key),
                format!("'{key}' must be a non-negative integer, found {v}; ignored"),
            );
            map.shift_remove(key);
        }
    }
}

/// Draft 4 `exclusiveMaximum: true` + `maximum: N` → 2020-12 `exclusiveMaximum: N`.
fn fix_exclusive(
    map: &mut Map<String, Value>,
    key: &str,
    bound: &str,
    at: &Ptr<'_>,
    sink: &mut Sink,
) {
    let flag = match map.get(key) {
        None | Some(Value::Number(_)) => return,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s))
            if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") =>
        {
            sink.warn(
                "invalid-keyword",
                &at.key(key),
                format!("'{key}' must be a boolean or a number, not a string; read as {s}"),
            );
            s.eq_ignore_ascii_case("true")
        }
        Some(Value::String(s)) if parse_number(s).is_some() => {
            let n = parse_number(s).unwrap_or_else(|| Number::from(0));
            sink.warn(
                "invalid-keyword",
                &at.key(key),
                format!("'{key}' must be a number, not a string; read as {n}"),
            );
            map.insert(key.to_owned(), Value::Number(n));
            return;
        }
        Some(other) => {
            sink.warn(
                "invalid-keyword",
                &at.key(key),
                format!(
                    "'{key}' must be a boolean or a number, found {}; ignored",
                    kind(other)
                ),
            );
            map.shift_remove(key);
            return;
        }
    };
    map.shift_remove(key);
    if !flag {
        return;
    }
    match map.shift_remove(bound) {
        Some(Value::Number(n)) => {
            map.insert(key.to_owned(), Value::Number(n));
        }
        other => {
            if let Some(v) = other {
                map.insert(bound.to_owned(), v);
            }
            sink.warn(
                "invalid-keyword",
                &at.key(key),
                format!("'{key}: true' needs a numeric '{bound}'; ignored"),
            );
        }
    }
}

fn fix_required(map: &mut Map<String, Value>, at: &Ptr<'_>, sink: &mut Sink) {
    let Some(required) = map.get_mut("required") else {
        return;
    };
    match required {
        Value::Array(names) => {
            let mut seen = HashSet::new();
            let before = names.len();
            names.retain(|n| n.as_str().is_some_and(|s| seen.insert(s.to_owned())));
            if names.len() != before {
                sink.warn(
                    "invalid-keyword",
                    &at.key("required"),
                    "'required' must list distinct property names; other entries ignored",
                );
            }
        }
        Value::Bool(_) => {
            sink.warn(
                "property-required",
                &at.key("required"),
                "'required: true|false' on a property is not valid in a schema; ignored \
                 (list the property in its object's 'required' array instead)",
            );
            map.shift_remove("required");
        }
        other => {
            sink.warn(
                "invalid-keyword",
                &at.key("required"),
                format!(
                    "'required' must be an array of names, found {}; ignored",
                    kind(other)
                ),
            );
            map.shift_remove("required");
        }
    }
}

fn fix_bool(map: &mut Map<String, Value>, key: &str, at: &Ptr<'_>, sink: &mut Sink) {
    match map.get(key) {
        None | Some(Value::Bool(_)) => {}
        Some(Value::String(s))
            if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") =>
        {
            let b = s.eq_ignore_ascii_case("true");
            sink.warn(
                "invalid-keyword",
                &at.key(key),
                format!("'{key}' must be a boolean, not a string; read as {b}"),
            );
            map.insert(key.to_owned(), Value::Bool(b));
        }
        Some(other) => {
            sink.warn(
                "invalid-keyword",
                &at.key(key),
                format!("'{key}' must be a boolean, found {}; ignored", kind(other)),
            );
            map.shift_remove(key);
        }
    }
}

fn fix_dependent_required(map: &mut Map<String, Value>, at: &Ptr<'_>, sink: &mut Sink) {
    let Some(dr) = map.get_mut("dependentRequired") else {
        return;
    };
    let ok = match dr {
        Value::Object(members) => {
            for names in members.values_mut() {
                match names {
                    Value::Array(list) => list.retain(Value::is_string),
                    other => *other = Value::Array(Vec::new()),
                }
            }
            true
        }
        _ => false,
    };
    if !ok {
        sink.warn(
            "invalid-keyword",
            &at.key("dependentRequired"),
            "'dependentRequired' must be an object of name lists; ignored",
        );
        map.shift_remove("dependentRequired");
    }
}

/// One step from a schema to a subschema.
#[derive(Debug, Clone)]
enum Step {
    Key(&'static str),
    Member(String),
    Index(usize),
}

/// The `$ref`s a schema applies to the same instance (through `allOf`, `not`, `if` …), and
/// how to reach each.
fn in_place_refs(v: &Value, path: &mut Vec<Step>, out: &mut Vec<(String, Vec<Step>)>) {
    let Value::Object(m) = v else { return };
    if let Some(name) = m
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/definitions/"))
    {
        out.push((name.to_owned(), path.clone()));
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(items)) = m.get(key) {
            for (i, s) in items.iter().enumerate() {
                path.push(Step::Key(key));
                path.push(Step::Index(i));
                in_place_refs(s, path, out);
                path.pop();
                path.pop();
            }
        }
    }
    for key in ["not", "if", "then", "else"] {
        if let Some(s) = m.get(key) {
            path.push(Step::Key(key));
            in_place_refs(s, path, out);
            path.pop();
        }
    }
    if let Some(Value::Object(deps)) = m.get("dependentSchemas") {
        for (name, s) in deps {
            path.push(Step::Key("dependentSchemas"));
            path.push(Step::Member(name.clone()));
            in_place_refs(s, path, out);
            path.pop();
            path.pop();
        }
    }
}

/// The subschema of `root` at `path`.
fn walk_mut<'v>(root: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    let mut node = root;
    for step in path {
        node = match (step, node) {
            (Step::Key(k), Value::Object(m)) => m.get_mut(*k)?,
            (Step::Member(k), Value::Object(m)) => m.get_mut(k.as_str())?,
            (Step::Index(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Finds reference cycles that consume no input and removes the reference that closes each.
fn break_cycles(defs: &mut Map<String, Value>, sources: &HashMap<String, String>, sink: &mut Sink) {
    let names: Vec<String> = defs.keys().cloned().collect();
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let edges: Vec<Vec<(usize, Vec<Step>)>> = names
        .iter()
        .map(|n| {
            let mut refs = Vec::new();
            if let Some(v) = defs.get(n) {
                in_place_refs(v, &mut Vec::new(), &mut refs);
            }
            refs.into_iter()
                .filter_map(|(target, path)| index.get(target.as_str()).map(|&t| (t, path)))
                .collect()
        })
        .collect();

    // Iterative depth-first search; an edge back to a node on the stack closes a cycle.
    let mut color = vec![0u8; names.len()];
    let mut back_edges: Vec<(usize, usize)> = Vec::new();
    for start in 0..names.len() {
        if color.get(start) != Some(&0) {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        if let Some(c) = color.get_mut(start) {
            *c = 1;
        }
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            let node_edges = edges.get(node).map_or(&[][..], Vec::as_slice);
            if let Some((target, _)) = node_edges.get(next) {
                top.1 += 1;
                match color.get(*target) {
                    Some(0) => {
                        if let Some(c) = color.get_mut(*target) {
                            *c = 1;
                        }
                        stack.push((*target, 0));
                    }
                    Some(1) => back_edges.push((node, next)),
                    _ => {}
                }
            } else {
                if let Some(c) = color.get_mut(node) {
                    *c = 2;
                }
                stack.pop();
            }
        }
    }

    for (from, edge) in back_edges {
        let (Some(name), Some((target, path))) =
            (names.get(from), edges.get(from).and_then(|e| e.get(edge)))
        else {
            continue;
        };
        let target_name = names.get(*target).map_or("", String::as_str);
        if let Some(Value::Object(m)) = defs.get_mut(name).and_then(|root| walk_mut(root, path)) {
            m.remove("$ref");
        }
        let mut pointer = sources.get(name).cloned().unwrap_or_default();
        for step in path {
            match step {
                Step::Key(k) => ptr::push_token(&mut pointer, k),
                Step::Member(k) => ptr::push_token(&mut pointer, k),
                Step::Index(i) => ptr::push_token(&mut pointer, &i.to_string()),
            }
        }
        ptr::push_token(&mut pointer, "$ref");
        sink.warn(
            "ref-cycle",
            &Ptr::rendered(&pointer),
            format!(
                "reference from '{name}' to '{target_name}' closes a cycle that never reaches a \
                 value; the reference is ignored"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn run(
        doc: &Value,
        schema: &Value,
        format: SourceFormat,
    ) -> (Value, Map<String, Value>, Vec<(String, String)>) {
        let mut sink = Sink::new("f.json");
        let mut schemas = Schemas::new(doc, format, &mut sink);
        let out = schemas.normalize(schema, &Ptr::rendered("/x"), &mut sink);
        let defs = schemas.finish(&mut sink);
        let diags = sink
            .into_diagnostics()
            .into_iter()
            .map(|d| (d.code.to_owned(), d.pointer))
            .collect();
        (out, defs, diags)
    }

    #[test]
    fn rewrites_named_deep_cyclic_and_dangling_refs() {
        let doc = json!({
            "definitions": {
                "Node": {"type": "object", "properties": {
                    "next": {"$ref": "#/definitions/Node"},
                    "tag": {"type": "string", "enum": ["a"]}
                }},
                "Foo Bar": {"type": "integer"},
            },
            "paths": {"/a": {"get": {"responses": {"200": {"schema": {"type": "boolean"}}}}}}
        });
        let schema = json!({"type": "object", "properties": {
            "n": {"$ref": "#/definitions/Node"},
            "tag": {"$ref": "#/definitions/Node/properties/tag"},
            "fb": {"$ref": "#/definitions/Foo%20Bar"},
            "deep": {"$ref": "#/paths/~1a/get/responses/200/schema", "description": "d", "type": "string"},
            "gone": {"$ref": "#/definitions/Missing", "x-ms-summary": "s"},
            "ext": {"$ref": "other.json#/X"}
        }});
        let (out, defs, diags) = run(&doc, &schema, SourceFormat::Swagger2);
        assert_eq!(
            out["properties"]["n"],
            json!({"$ref": "#/definitions/Node"})
        );
        assert_eq!(
            out["properties"]["tag"],
            json!({"$ref": "#/definitions/Node.properties.tag"})
        );
        assert_eq!(
            out["properties"]["fb"],
            json!({"$ref": "#/definitions/Foo_Bar"})
        );
        assert_eq!(
            out["properties"]["deep"],
            json!({"$ref": "#/definitions/paths._a.get.responses.200.schema", "description": "d"})
        );
        assert_eq!(out["properties"]["gone"], json!({"x-ms-summary": "s"}));
        assert_eq!(out["properties"]["ext"], json!({}));
        let names: Vec<&str> = defs.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "Node",
                "Foo_Bar",
                "Node.properties.tag",
                "paths._a.get.responses.200.schema"
            ]
        );
        assert_eq!(
            defs["Node"]["properties"]["next"],
            json!({"$ref": "#/definitions/Node"})
        );
        assert_eq!(
            defs["Node.properties.tag"],
            json!({"type": "string", "enum": ["a"]})
        );
        assert_eq!(
            diags,
            vec![
                ("unresolved-ref".into(), "/x/properties/gone/$ref".into()),
                ("unresolved-ref".into(), "/x/properties/ext/$ref".into()),
            ]
        );
    }

    #[test]
    fn breaks_cycles_that_consume_nothing() {
        let doc = json!({"definitions": {
            "A": {"$ref": "#/definitions/B"},
            "B": {"allOf": [{"$ref": "#/definitions/A"}, {"type": "object"}]},
            "C": {"properties": {"c": {"$ref": "#/definitions/C"}}},
            "D": {"$ref": "#/definitions/D"}
        }});
        let (_, defs, diags) = run(&doc, &json!({}), SourceFormat::Swagger2);
        assert_eq!(defs["A"], json!({"$ref": "#/definitions/B"}));
        assert_eq!(defs["B"], json!({"allOf": [{}, {"type": "object"}]}));
        assert_eq!(
            defs["C"]["properties"]["c"],
            json!({"$ref": "#/definitions/C"})
        );
        assert_eq!(defs["D"], json!({}));
        assert_eq!(
            diags,
            vec![
                ("ref-cycle".into(), "/definitions/B/allOf/0/$ref".into()),
                ("ref-cycle".into(), "/definitions/D/$ref".into()),
            ]
        );
    }

    #[test]
    fn converts_draft4_and_openapi_idioms() {
        let schema = json!({
            "type": "object",
            "required": ["a", "a", 3],
            "properties": {
                "a": {"type": "String", "x-nullable": true, "enum": ["x"]},
                "b": {"type": "integer", "maximum": 10, "exclusiveMaximum": true, "minimum": "1", "exclusiveMinimum": false},
                "c": {"type": "file"},
                "d": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}], "additionalItems": false},
                "e": {"type": "string", "required": true, "maxLength": "20", "minLength": -1},
                "f": {"type": "strnig", "enum": "x", "nullable": true},
                "g": 5,
                "h": {"type": ["String", "null", 1], "description": 4, "readOnly": "true"}
            }
        });
        let (out, _, diags) = run(&json!({}), &schema, SourceFormat::Swagger2);
        let p = &out["properties"];
        assert_eq!(out["required"], json!(["a"]));
        assert_eq!(
            p["a"],
            json!({"type": ["string", "null"], "x-nullable": true, "enum": ["x", null]})
        );
        assert_eq!(
            p["b"],
            json!({"type": "integer", "exclusiveMaximum": 10, "minimum": 1})
        );
        assert_eq!(p["c"], json!({}));
        assert_eq!(
            p["d"],
            json!({"type": "array", "items": false, "prefixItems": [{"type": "string"}, {"type": "integer"}]})
        );
        assert_eq!(p["e"], json!({"type": "string", "maxLength": 20}));
        assert_eq!(p["f"], json!({}));
        assert_eq!(p["g"], json!({}));
        assert_eq!(
            p["h"],
            json!({"type": ["string", "null"], "readOnly": true})
        );
        let codes: Vec<&str> = diags.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(
            codes,
            [
                "invalid-keyword",
                "type-case",
                "invalid-keyword",
                "invalid-keyword",
                "invalid-keyword",
                "property-required",
                "invalid-type",
                "invalid-keyword",
                "invalid-schema",
                "type-case",
                "invalid-type",
                "invalid-keyword",
                "invalid-keyword",
            ]
        );
    }

    #[test]
    fn openapi_31_keeps_ref_siblings_and_30_converts_nullable() {
        let doc = json!({"components": {"schemas": {"S": {"type": "string"}}}});
        let schema = json!({"$ref": "#/components/schemas/S", "maxLength": 3});
        let (out, _, _) = run(&doc, &schema, SourceFormat::OpenApi31);
        assert_eq!(out, json!({"$ref": "#/definitions/S", "maxLength": 3}));
        let (out, _, _) = run(&doc, &schema, SourceFormat::OpenApi30);
        assert_eq!(out, json!({"$ref": "#/definitions/S"}));
        let (out, _, _) = run(
            &doc,
            &json!({"type": "integer", "nullable": true}),
            SourceFormat::OpenApi30,
        );
        assert_eq!(out, json!({"type": ["integer", "null"]}));
    }

    #[test]
    fn large_shared_schemas_are_hoisted_once() {
        let big: Map<String, Value> = (0..40)
            .map(|i| (format!("p{i}"), json!({"type": "string"})))
            .collect();
        let doc = json!({"responses": {"Big": {"schema": {"type": "object", "properties": big}},
                                       "Small": {"schema": {"type": "string"}}}});
        let mut sink = Sink::new("f");
        let mut schemas = Schemas::new(&doc, SourceFormat::Swagger2, &mut sink);
        let a = schemas.normalize_shared(
            &doc["responses"]["Big"]["schema"],
            "/responses/Big/schema",
            &mut sink,
        );
        let b = schemas.normalize_shared(
            &doc["responses"]["Big"]["schema"],
            "/responses/Big/schema",
            &mut sink,
        );
        let c = schemas.normalize_shared(
            &doc["responses"]["Small"]["schema"],
            "/responses/Small/schema",
            &mut sink,
        );
        assert_eq!(a, json!({"$ref": "#/definitions/responses.Big.schema"}));
        assert_eq!(a, b);
        assert_eq!(c, json!({"type": "string"}));
        let defs = schemas.finish(&mut sink);
        assert_eq!(defs.len(), 1);
        assert_eq!(
            defs["responses.Big.schema"]["properties"]["p7"],
            json!({"type": "string"})
        );
    }

    #[test]
    fn weird_schemas_do_not_panic() {
        let doc = json!({"definitions": [1, 2]});
        for s in [
            json!(null),
            json!(true),
            json!([]),
            json!("x"),
            json!({"properties": []}),
            json!({"allOf": []}),
            json!({"items": 3}),
            json!({"$ref": 3}),
            json!({"$ref": "#"}),
            json!({"$ref": "#/definitions/0"}),
            json!({"dependencies": {"a": 1, "b": ["x", 1]}}),
        ] {
            let _ = run(&doc, &s, SourceFormat::Swagger2);
        }
    }
}
