//! JSON arguments → a SOAP envelope, element by element as the message's XML types say.
//!
//! Namespaces are written as default namespace declarations where they change
//! (`<Name xmlns="urn:x">`, `xmlns=""` for unqualified elements inside), so that no prefix
//! bookkeeping is needed; attributes in a namespace get a prefix of their own. Text is
//! escaped (`& < >`, and `"` in attributes; CR as `&#13;` so that it survives); a character
//! XML 1.0 cannot hold is refused with `400`.

use junction_model::soap::{
    QName, SoapService, TEXT_PROPERTY, XSI_NAMESPACE, XmlComplexType, XmlContent, XmlElement,
    XmlSimple,
};
use serde_json::{Map, Value};

use super::SoapPlan;
use super::wsse::UsernameToken;
use crate::error::{Error, Violation};

/// How deep a JSON value may nest inside an element of any type before it is refused.
const MAX_DEPTH: usize = 128;

/// The envelope of a call of `plan` with `value` (the validated JSON body; `Null` for
/// none), with a WS-Security header when `token` is given.
pub(crate) fn write(
    plan: &SoapPlan,
    value: &Value,
    token: Option<&UsernameToken>,
) -> Result<Vec<u8>, Error> {
    let env = plan.version.envelope_namespace();
    let mut w = Writer {
        out: String::with_capacity(512),
        types: &plan.types,
        violations: Vec::new(),
    };
    w.out
        .push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"");
    w.out.push_str(env);
    w.out.push_str("\" xmlns:xsi=\"");
    w.out.push_str(XSI_NAMESPACE);
    w.out.push_str("\">");
    if let Some(token) = token {
        w.out.push_str("<soap:Header>");
        token.write(&mut w.out);
        w.out.push_str("</soap:Header>");
    }
    w.out.push_str("<soap:Body>");
    let empty = Value::Object(Map::new());
    let value = if value.is_null() { &empty } else { value };
    let content = plan.types.complex(plan.input.content);
    match (&plan.input.wrapper, content) {
        (Some(wrapper), Some(ty)) => {
            w.open_start(wrapper, None);
            w.attributes(ty, value, "");
            w.out.push('>');
            w.complex_body(ty, value, wrapper.namespace.as_deref(), "", 0);
            w.close(wrapper);
        }
        (None, Some(ty)) => w.complex_body(ty, value, None, "", 0),
        (_, None) => {}
    }
    w.out.push_str("</soap:Body></soap:Envelope>");
    if !w.violations.is_empty() {
        return Err(Error::invalid(w.violations));
    }
    Ok(w.out.into_bytes())
}

struct Writer<'t> {
    out: String,
    types: &'t SoapService,
    violations: Vec<Violation>,
}

impl Writer<'_> {
    /// `<name` with the namespace declaration it needs given the enclosing default
    /// namespace `outer` (`None` at the top of the body, where no default is declared).
    fn open_start(&mut self, name: &QName, outer: Option<&str>) {
        self.out.push('<');
        self.out.push_str(&name.local);
        match (name.namespace.as_deref(), outer) {
            (Some(ns), Some(outer)) if ns == outer => {}
            (Some(ns), _) => {
                self.out.push_str(" xmlns=\"");
                escape(&mut self.out, ns, true);
                self.out.push('"');
            }
            (None, Some(outer)) if !outer.is_empty() => self.out.push_str(" xmlns=\"\""),
            (None, _) => {}
        }
    }

    fn open(&mut self, name: &QName, outer: Option<&str>) {
        self.open_start(name, outer);
        self.out.push('>');
    }

    fn close(&mut self, name: &QName) {
        self.out.push_str("</");
        self.out.push_str(&name.local);
        self.out.push('>');
    }

    /// The default namespace inside an element named `name` opened within `outer`.
    fn inner<'n>(name: &'n QName, outer: Option<&'n str>) -> Option<&'n str> {
        match name.namespace.as_deref() {
            Some(ns) => Some(ns),
            None if outer.is_some() => Some(""),
            None => None,
        }
    }

    /// The attributes, text and children of `ty` from the JSON object `value`, inside an
    /// element whose default namespace is `ns`.
    fn complex_body(
        &mut self,
        ty: &XmlComplexType,
        value: &Value,
        ns: Option<&str>,
        pointer: &str,
        depth: usize,
    ) {
        if ty.is_text_only() {
            if let Some(text) = &ty.text {
                self.text(value, text, pointer);
            }
            return;
        }
        let Some(object) = value.as_object() else {
            self.refuse(pointer, "must be an object");
            return;
        };
        if let Some(text) = &ty.text
            && let Some(value) = object.get(TEXT_PROPERTY)
        {
            self.text(value, text, &format!("{pointer}/{TEXT_PROPERTY}"));
        }
        for child in &ty.children {
            let Some(value) = object.get(&child.property) else {
                continue;
            };
            let pointer = format!("{pointer}/{}", pointer_token(&child.property));
            match value {
                Value::Array(items) if child.is_array() => {
                    for (i, item) in items.iter().enumerate() {
                        self.element(child, item, ns, &format!("{pointer}/{i}"), depth + 1);
                    }
                }
                other => self.element(child, other, ns, &pointer, depth + 1),
            }
        }
        if ty.open {
            // Properties no child declares, written as elements of the same namespace.
            for (key, value) in object {
                let declared = ty.children.iter().any(|c| &c.property == key)
                    || ty.attributes.iter().any(|a| &a.property == key)
                    || key == TEXT_PROPERTY;
                if !declared && is_xml_name(key) {
                    let name = QName::new(ns, key);
                    self.any(
                        &name,
                        value,
                        ns,
                        &format!("{pointer}/{}", pointer_token(key)),
                        depth + 1,
                    );
                }
            }
        }
    }

    /// One occurrence of `element` holding `value`.
    fn element(
        &mut self,
        element: &XmlElement,
        value: &Value,
        outer: Option<&str>,
        pointer: &str,
        depth: usize,
    ) {
        if depth > MAX_DEPTH {
            self.refuse(pointer, "nests too deep");
            return;
        }
        let name = &element.name;
        if value.is_null() {
            if element.nillable {
                self.open_start(name, outer);
                self.out.push_str(" xsi:nil=\"true\"/>");
            }
            return;
        }
        match &element.content {
            XmlContent::Simple(simple) => {
                self.open(name, outer);
                self.text(value, simple, pointer);
                self.close(name);
            }
            XmlContent::Complex(index) => {
                let Some(ty) = self.types.complex(*index) else {
                    return;
                };
                self.open_start(name, outer);
                let inner = Self::inner(name, outer);
                self.attributes(ty, value, pointer);
                self.out.push('>');
                self.complex_body(ty, value, inner, pointer, depth);
                self.close(name);
            }
            XmlContent::Any => self.any(name, value, outer, pointer, depth),
        }
    }

    /// The attributes of `ty` from `value`, inside an open start tag.
    fn attributes(&mut self, ty: &XmlComplexType, value: &Value, pointer: &str) {
        let Some(object) = value.as_object() else {
            return;
        };
        for (n, attribute) in ty.attributes.iter().enumerate() {
            let Some(value) = object.get(&attribute.property).filter(|v| !v.is_null()) else {
                continue;
            };
            let Some(text) = self.scalar(
                value,
                &attribute.simple,
                &format!("{pointer}/{}", pointer_token(&attribute.property)),
            ) else {
                continue;
            };
            self.out.push(' ');
            if let Some(ns) = &attribute.name.namespace {
                self.out.push_str(&format!("xmlns:a{n}=\""));
                escape(&mut self.out, ns, true);
                self.out.push_str(&format!("\" a{n}:"));
            }
            self.out.push_str(&attribute.name.local);
            self.out.push_str("=\"");
            escape(&mut self.out, &text, true);
            self.out.push('"');
        }
    }

    /// Any JSON as XML: an object's properties as child elements, an array as repeated
    /// elements, a scalar as text.
    fn any(
        &mut self,
        name: &QName,
        value: &Value,
        outer: Option<&str>,
        pointer: &str,
        depth: usize,
    ) {
        if depth > MAX_DEPTH {
            self.refuse(pointer, "nests too deep");
            return;
        }
        match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.any(name, item, outer, &format!("{pointer}/{i}"), depth + 1);
                }
            }
            Value::Null => {
                self.open_start(name, outer);
                self.out.push_str(" xsi:nil=\"true\"/>");
            }
            Value::Object(object) => {
                self.open(name, outer);
                let inner = Self::inner(name, outer);
                for (key, value) in object {
                    if is_xml_name(key) {
                        let child = QName::new(inner, key);
                        self.any(
                            &child,
                            value,
                            inner,
                            &format!("{pointer}/{}", pointer_token(key)),
                            depth + 1,
                        );
                    } else {
                        self.refuse(
                            pointer,
                            &format!("has property '{key}', which is not an XML name"),
                        );
                    }
                }
                self.close(name);
            }
            scalar => {
                self.open(name, outer);
                let text = match scalar {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                self.escaped_text(&text, pointer);
                self.close(name);
            }
        }
    }

    /// A simple value as element text.
    fn text(&mut self, value: &Value, simple: &XmlSimple, pointer: &str) {
        if let Some(text) = self.scalar(value, simple, pointer) {
            self.escaped_text(&text, pointer);
        }
    }

    fn escaped_text(&mut self, text: &str, pointer: &str) {
        if let Some(bad) = text.chars().find(|&c| !is_xml_char(c)) {
            self.refuse(
                pointer,
                &format!(
                    "holds the character U+{:04X}, which XML cannot carry",
                    u32::from(bad)
                ),
            );
            return;
        }
        escape(&mut self.out, text, false);
    }

    /// The lexical form of a simple value (`xs:list`: items joined by spaces).
    fn scalar(&mut self, value: &Value, simple: &XmlSimple, pointer: &str) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            Value::Array(items) if simple.list => {
                let mut parts = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let item_simple = XmlSimple {
                        list: false,
                        ..simple.clone()
                    };
                    parts.push(self.scalar(item, &item_simple, &format!("{pointer}/{i}"))?);
                }
                Some(parts.join(" "))
            }
            Value::Null => None,
            _ => {
                self.refuse(pointer, "must be a single value");
                None
            }
        }
    }

    fn refuse(&mut self, pointer: &str, why: &str) {
        if self.violations.len() < 20 {
            self.violations.push(Violation::body(
                pointer.to_owned(),
                format!(
                    "request body at {}: {why}",
                    if pointer.is_empty() { "/" } else { pointer }
                ),
            ));
        }
    }
}

/// Escapes `text` into `out`: `& < >` always, `"` in attributes, CR as a character
/// reference (a parser would turn a literal one into LF).
pub(crate) fn escape(out: &mut String, text: &str, attribute: bool) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' if attribute => out.push_str("&#10;"),
            c => out.push(c),
        }
    }
}

/// Whether XML 1.0 can hold `c`.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Whether `name` can be an element's name (a simple check: a letter or `_` first, then
/// letters, digits, `-`, `.`, `_`).
fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

fn pointer_token(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_xml() {
        let mut out = String::new();
        escape(&mut out, "a & b < c > d \"e\" \r", false);
        assert_eq!(out, "a &amp; b &lt; c &gt; d \"e\" &#13;");
        let mut out = String::new();
        escape(&mut out, "\"é\"", true);
        assert_eq!(out, "&quot;é&quot;");
        assert!(!is_xml_char('\u{1}'));
        assert!(is_xml_char('€'));
        assert!(is_xml_name("Name_1") && !is_xml_name("1x") && !is_xml_name("a b"));
    }
}
