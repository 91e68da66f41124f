//! The JSON Schema of each message, derived from its XML types: what the gateway validates
//! a call's JSON body against, and what `junction export` and the console show.
//!
//! Named XML types (and anonymous ones that contain themselves) become
//! `#/definitions/NAME`; other anonymous types are written inline. See `docs/soap.md` for
//! the mapping.

use std::collections::HashMap;

use junction_model::soap::{
    TEXT_PROPERTY, XmlComplexType, XmlContent, XmlElement, XmlSimple, XsdBuiltin,
};
use serde_json::{Map, Value, json};

/// Derives schemas from one connector's type table.
pub(crate) struct JsonSchemas<'t> {
    types: &'t [XmlComplexType],
    /// The connector's definitions, filled as types are referred to.
    pub definitions: Map<String, Value>,
    /// Type index → its definition name, for types that have one.
    names: HashMap<usize, String>,
}

impl<'t> JsonSchemas<'t> {
    pub(crate) fn new(types: &'t [XmlComplexType]) -> Self {
        let recursive = recursive_types(types);
        let mut names = HashMap::new();
        let mut taken: Vec<String> = Vec::new();
        for (index, ty) in types.iter().enumerate() {
            let base = match &ty.name {
                Some(name) => name.local.clone(),
                None if recursive.contains(&index) => format!("Type{index}"),
                None => continue,
            };
            let mut name = base.clone();
            let mut n = 2;
            while taken.contains(&name) {
                name = format!("{base}_{n}");
                n += 1;
            }
            taken.push(name.clone());
            names.insert(index, name);
        }
        JsonSchemas {
            types,
            definitions: Map::new(),
            names,
        }
    }

    /// The schema of a message whose content is type `index`: always written inline, so
    /// that an operation's inputs show at its top level.
    pub(crate) fn message(&mut self, index: usize) -> Value {
        self.inline(index)
    }

    /// The schema of one element: its content, `null` when nillable, an array when it
    /// repeats.
    pub(crate) fn element(&mut self, element: &XmlElement) -> Value {
        let mut schema = match &element.content {
            XmlContent::Simple(simple) => simple_schema(simple),
            XmlContent::Complex(index) => self.complex(*index),
            XmlContent::Any => json!({}),
        };
        if element.nillable {
            schema = nullable(schema);
        }
        if element.is_array() {
            let mut array = json!({"type": "array", "items": schema});
            if element.min_occurs > 0 {
                array["minItems"] = json!(element.min_occurs);
            }
            if let Some(max) = element.max_occurs {
                array["maxItems"] = json!(max);
            }
            schema = array;
        }
        schema
    }

    /// A reference to type `index`'s definition, or the type inline.
    fn complex(&mut self, index: usize) -> Value {
        let Some(name) = self.names.get(&index).cloned() else {
            return self.inline(index);
        };
        if !self.definitions.contains_key(&name) {
            // Claimed before it is written, so that a type containing itself refers to it.
            self.definitions.insert(name.clone(), json!({}));
            let schema = self.inline(index);
            self.definitions.insert(name.clone(), schema);
        }
        json!({ "$ref": format!("#/definitions/{}", pointer_token(&name)) })
    }

    /// Type `index` written out.
    fn inline(&mut self, index: usize) -> Value {
        let Some(ty) = self.types.get(index) else {
            return json!({});
        };
        if ty.is_text_only() {
            return ty.text.as_ref().map(simple_schema).unwrap_or_default();
        }
        let mut properties = Map::new();
        let mut required = Vec::new();
        for attribute in &ty.attributes {
            properties.insert(attribute.property.clone(), simple_schema(&attribute.simple));
            if attribute.required {
                required.push(Value::String(attribute.property.clone()));
            }
        }
        if let Some(text) = &ty.text {
            properties.insert(TEXT_PROPERTY.to_owned(), simple_schema(text));
        }
        for child in &ty.children {
            let schema = self.element(child);
            properties.insert(child.property.clone(), schema);
            if child.min_occurs > 0 {
                required.push(Value::String(child.property.clone()));
            }
        }
        let mut schema = json!({"type": "object", "properties": properties});
        if let Some(name) = &ty.name {
            schema["title"] = json!(name.local);
        }
        if !required.is_empty() {
            schema["required"] = Value::Array(required);
        }
        if !ty.open {
            schema["additionalProperties"] = json!(false);
        }
        let exclusive: Vec<Value> = ty
            .choices
            .iter()
            .flat_map(|members| {
                let names: Vec<&str> = members
                    .iter()
                    .filter_map(|&i| ty.children.get(i).map(|c| c.property.as_str()))
                    .collect();
                let mut pairs = Vec::new();
                for (i, a) in names.iter().enumerate() {
                    for b in names.iter().skip(i + 1) {
                        pairs.push(json!({"required": [a, b]}));
                    }
                }
                pairs
            })
            .collect();
        if !exclusive.is_empty() {
            schema["not"] = json!({"anyOf": exclusive});
        }
        schema
    }
}

/// The schema of a simple type.
pub(crate) fn simple_schema(simple: &XmlSimple) -> Value {
    let mut schema = Map::new();
    let numeric = |text: &str| -> Option<Value> {
        serde_json::from_str::<serde_json::Number>(text.trim())
            .ok()
            .map(Value::Number)
    };
    match simple.base {
        XsdBuiltin::String | XsdBuiltin::Duration | XsdBuiltin::AnyUri | XsdBuiltin::Time => {
            schema.insert("type".into(), json!("string"));
        }
        XsdBuiltin::Boolean => {
            schema.insert("type".into(), json!("boolean"));
        }
        XsdBuiltin::Integer { min, max } => {
            schema.insert("type".into(), json!("integer"));
            if let Some(min) = min.and_then(|m| i64::try_from(m).ok()) {
                schema.insert("minimum".into(), json!(min));
            }
            if let Some(max) = max.and_then(|m| u64::try_from(m).ok()) {
                schema.insert("maximum".into(), json!(max));
            } else if let Some(max) = max.and_then(|m| i64::try_from(m).ok()) {
                schema.insert("maximum".into(), json!(max));
            }
        }
        XsdBuiltin::Decimal | XsdBuiltin::Float | XsdBuiltin::Double => {
            schema.insert("type".into(), json!("number"));
        }
        XsdBuiltin::Date => {
            schema.insert("type".into(), json!("string"));
            schema.insert("format".into(), json!("date"));
        }
        XsdBuiltin::DateTime => {
            schema.insert("type".into(), json!("string"));
            schema.insert("format".into(), json!("date-time"));
        }
        XsdBuiltin::Base64Binary => {
            schema.insert("type".into(), json!("string"));
            schema.insert("contentEncoding".into(), json!("base64"));
        }
        XsdBuiltin::HexBinary => {
            schema.insert("type".into(), json!("string"));
            schema.insert("pattern".into(), json!("^([0-9a-fA-F]{2})*$"));
        }
    }
    let is_number = matches!(
        simple.base,
        XsdBuiltin::Integer { .. } | XsdBuiltin::Decimal | XsdBuiltin::Float | XsdBuiltin::Double
    );
    if is_number {
        for (facet, key) in [
            (&simple.min_inclusive, "minimum"),
            (&simple.max_inclusive, "maximum"),
            (&simple.min_exclusive, "exclusiveMinimum"),
            (&simple.max_exclusive, "exclusiveMaximum"),
        ] {
            if let Some(value) = facet.as_deref().and_then(numeric) {
                schema.insert(key.into(), value);
            }
        }
    } else {
        if let Some(min) = simple.min_length {
            schema.insert("minLength".into(), json!(min));
        }
        if let Some(max) = simple.max_length {
            schema.insert("maxLength".into(), json!(max));
        }
        if let Some(pattern) = simple.pattern.as_deref().filter(|p| ecma_compatible(p)) {
            // XML Schema patterns match the whole value.
            schema.insert("pattern".into(), json!(format!("^(?:{pattern})$")));
        }
    }
    if !simple.enumeration.is_empty() {
        let values: Vec<Value> = simple
            .enumeration
            .iter()
            .map(|v| match simple.base {
                XsdBuiltin::Boolean => json!(matches!(v.trim(), "true" | "1")),
                _ if is_number => numeric(v).unwrap_or_else(|| json!(v)),
                _ => json!(v),
            })
            .collect();
        schema.insert("enum".into(), Value::Array(values));
    }
    if simple.list {
        return json!({"type": "array", "items": Value::Object(schema)});
    }
    Value::Object(schema)
}

/// `schema` that also allows `null`.
fn nullable(mut schema: Value) -> Value {
    match schema.get("type").cloned() {
        Some(Value::String(ty)) => {
            schema["type"] = json!([ty, "null"]);
            if let Some(Value::Array(values)) = schema.get_mut("enum") {
                values.push(Value::Null);
            }
            schema
        }
        _ if schema.as_object().is_some_and(Map::is_empty) => schema,
        _ => json!({"anyOf": [schema, {"type": "null"}]}),
    }
}

/// Whether an XML Schema pattern means the same in ECMA 262 regular expressions: not when
/// it uses character class subtraction or the XML name escapes.
fn ecma_compatible(pattern: &str) -> bool {
    !(pattern.contains("-[")
        || ["\\i", "\\I", "\\c", "\\C", "\\p{Is"]
            .iter()
            .any(|e| pattern.contains(e)))
}

/// The types that contain themselves (through any path of children).
fn recursive_types(types: &[XmlComplexType]) -> Vec<usize> {
    let edges = |index: usize| -> Vec<usize> {
        types
            .get(index)
            .map(|ty| {
                ty.children
                    .iter()
                    .filter_map(|c| match c.content {
                        XmlContent::Complex(i) => Some(i),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    (0..types.len())
        .filter(|&start| {
            let mut seen = vec![false; types.len()];
            let mut stack = edges(start);
            while let Some(at) = stack.pop() {
                if at == start {
                    return true;
                }
                if let Some(flag) = seen.get_mut(at)
                    && !*flag
                {
                    *flag = true;
                    stack.extend(edges(at));
                }
            }
            false
        })
        .collect()
}

/// `name` as one JSON pointer token.
fn pointer_token(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use junction_model::soap::QName;

    fn element(name: &str, content: XmlContent, max: Option<u32>) -> XmlElement {
        XmlElement {
            name: QName::new(None, name),
            property: name.to_owned(),
            min_occurs: 1,
            max_occurs: max,
            nillable: false,
            content,
        }
    }

    #[test]
    fn a_recursive_anonymous_type_gets_a_definition() {
        let node = XmlComplexType {
            children: vec![
                element("label", XmlContent::Simple(Box::default()), Some(1)),
                element("child", XmlContent::Complex(0), None),
            ],
            ..XmlComplexType::default()
        };
        let types = vec![node];
        let mut schemas = JsonSchemas::new(&types);
        let schema = schemas.message(0);
        assert_eq!(
            schema["properties"]["child"],
            json!({"type": "array", "items": {"$ref": "#/definitions/Type0"}, "minItems": 1})
        );
        assert_eq!(
            schemas.definitions["Type0"]["properties"]["label"],
            json!({"type": "string"})
        );
    }

    #[test]
    fn simple_types_carry_their_facets() {
        let simple = XmlSimple {
            base: XsdBuiltin::Integer {
                min: Some(0),
                max: Some(65535),
            },
            max_inclusive: Some("100".into()),
            ..XmlSimple::default()
        };
        assert_eq!(
            simple_schema(&simple),
            json!({"type": "integer", "minimum": 0, "maximum": 100})
        );
        let pattern = XmlSimple {
            pattern: Some("[A-Z]{2}".into()),
            enumeration: vec!["AB".into()],
            ..XmlSimple::default()
        };
        assert_eq!(
            simple_schema(&pattern),
            json!({"type": "string", "pattern": "^(?:[A-Z]{2})$", "enum": ["AB"]})
        );
        assert_eq!(
            nullable(json!({"type": "string", "enum": ["a"]})),
            json!({"type": ["string", "null"], "enum": ["a", null]})
        );
    }
}
