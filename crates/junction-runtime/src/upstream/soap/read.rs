//! A SOAP answer → JSON: the envelope parsed (no DTD, bounded size and depth), a fault
//! turned into a problem, the output message's elements turned into JSON as its XML types
//! say (see `docs/soap.md`).

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use junction_model::soap::{
    SoapService, TEXT_PROPERTY, XSI_NAMESPACE, XmlComplexType, XmlContent, XmlElement, XmlSimple,
    XsdBuiltin,
};
use roxmltree::{Document, Node, ParsingOptions};
use serde_json::{Map, Number, Value};

use super::SoapPlan;
use crate::body::UpstreamBody;
use crate::error::{Error, ErrorKind};

/// How deep an answer's elements may nest.
const MAX_DEPTH: usize = 256;
/// The most XML nodes an answer may have.
const MAX_NODES: u32 = 4_000_000;

/// The JSON answer for the backend's `response` to a call of `plan` (`202` for a one-way
/// operation), or the error its fault or its malformed body stands for. At most
/// `max_bytes` of the answer are read.
pub(crate) async fn read(
    plan: &SoapPlan,
    connector: &str,
    max_bytes: u64,
    response: http::Response<UpstreamBody>,
) -> Result<http::Response<UpstreamBody>, Error> {
    let (mut head, body) = response.into_parts();
    let status = head.status;
    let bytes = crate::body::read_response(body, max_bytes).await?;
    let invalid = |why: String| {
        Error::new(
            ErrorKind::UpstreamInvalid,
            format!(
                "connector '{connector}', operation '{}': the SOAP answer {why}",
                plan.operation
            ),
        )
    };
    let answer = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let text =
            std::str::from_utf8(&bytes).map_err(|_| invalid("is not UTF-8 text".to_owned()))?;
        Some(text)
    };
    let json = match answer {
        None if plan.output.is_none() && status.is_success() => None,
        None => {
            return Err(invalid(format!("is empty (HTTP {})", status.as_u16())));
        }
        Some(text) => {
            let options = ParsingOptions {
                allow_dtd: false,
                nodes_limit: MAX_NODES,
                ..ParsingOptions::default()
            };
            let doc = Document::parse_with_options(text, options).map_err(|e| {
                invalid(match e {
                    roxmltree::Error::DtdDetected => format!(
                        "has a DOCTYPE, which is refused (no entity is expanded; HTTP {})",
                        status.as_u16()
                    ),
                    other => {
                        let pos = other.pos();
                        format!(
                            "is not well-formed XML (line {}, column {}; HTTP {})",
                            pos.row,
                            pos.col,
                            status.as_u16()
                        )
                    }
                })
            })?;
            let envelope = doc.root_element();
            if envelope.tag_name().name() != "Envelope" {
                return Err(invalid(format!(
                    "is not a SOAP envelope (its root element is '{}'; HTTP {})",
                    envelope.tag_name().name(),
                    status.as_u16()
                )));
            }
            let Some(body) = envelope
                .children()
                .find(|n| n.is_element() && n.tag_name().name() == "Body")
            else {
                return Err(invalid("has no Body".to_owned()));
            };
            if let Some(fault) = body
                .children()
                .find(|n| n.is_element() && n.tag_name().name() == "Fault")
            {
                return Err(fault_error(fault, connector, &plan.operation));
            }
            if !status.is_success() {
                return Err(invalid(format!(
                    "has HTTP status {} without a SOAP fault",
                    status.as_u16()
                )));
            }
            match &plan.output {
                None => None,
                Some(output) => {
                    let ty = plan.types.complex(output.content);
                    let holder = match &output.wrapper {
                        Some(wrapper) => body
                            .children()
                            .find(|n| n.is_element() && n.tag_name().name() == wrapper.local)
                            .ok_or_else(|| {
                                invalid(format!("has no {} element in its Body", wrapper.local))
                            })?,
                        None => body,
                    };
                    let mut reader = Reader {
                        types: &plan.types,
                        too_deep: false,
                    };
                    let value = match ty {
                        Some(ty) => reader.complex(holder, ty, 0),
                        None => Value::Object(Map::new()),
                    };
                    if reader.too_deep {
                        return Err(invalid(format!("nests deeper than {MAX_DEPTH} elements")));
                    }
                    Some(value)
                }
            }
        }
    };
    head.headers.remove(header::CONTENT_LENGTH);
    head.headers.remove(header::CONTENT_ENCODING);
    match json {
        None => {
            head.status = StatusCode::ACCEPTED;
            head.headers.remove(header::CONTENT_TYPE);
            Ok(http::Response::from_parts(
                head,
                UpstreamBody::full(Bytes::new()),
            ))
        }
        Some(value) => {
            let bytes = serde_json::to_vec(&value).map_err(|e| {
                Error::new(ErrorKind::Internal, "could not write the answer").with_cause(e)
            })?;
            head.status = StatusCode::OK;
            head.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(http::Response::from_parts(
                head,
                UpstreamBody::full(Bytes::from(bytes)),
            ))
        }
    }
}

/// The problem a fault stands for: Client/Sender → 400, anything else → 502; its code,
/// reason and detail (as JSON) in the problem's `fault` member.
fn fault_error(fault: Node<'_, '_>, connector: &str, operation: &str) -> Error {
    fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
        node.children()
            .find(|n| n.is_element() && n.tag_name().name() == name)
    }
    let text = |node: Option<Node<'_, '_>>| -> String {
        node.map(|n| {
            n.descendants()
                .filter(Node::is_text)
                .filter_map(|t| t.text())
                .collect::<String>()
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
    };
    // SOAP 1.2: Code/Value (+ Subcode/Value), Reason/Text, Detail; 1.1: faultcode,
    // faultstring, detail.
    let (code, reason, detail) = match child(fault, "Code") {
        Some(code) => {
            let value = text(child(code, "Value"));
            let sub = child(code, "Subcode").map(|s| text(child(s, "Value")));
            let code = match sub {
                Some(sub) if !sub.is_empty() => format!("{value} / {sub}"),
                _ => value,
            };
            (
                code,
                text(child(fault, "Reason").and_then(|r| child(r, "Text"))),
                child(fault, "Detail"),
            )
        }
        None => (
            text(child(fault, "faultcode")),
            text(child(fault, "faultstring")),
            child(fault, "detail"),
        ),
    };
    let local = code.split('/').next().unwrap_or_default().trim();
    let local = local.rsplit(':').next().unwrap_or(local);
    let kind = if local == "Client" || local == "Sender" || local.starts_with("Client.") {
        ErrorKind::SoapFault
    } else {
        ErrorKind::SoapServerFault
    };
    let mut reader = Reader {
        types: &EMPTY,
        too_deep: false,
    };
    let detail = detail.map_or(Value::Null, |d| reader.any(d, 0));
    let reason_text = if reason.is_empty() {
        "no reason given".to_owned()
    } else {
        reason.clone()
    };
    Error::new(
        kind,
        format!("connector '{connector}', operation '{operation}': the service answered a {code} fault: {reason_text}"),
    )
    .with_fault(serde_json::json!({"code": code, "reason": reason, "detail": detail}))
}

static EMPTY: SoapService = SoapService { types: Vec::new() };

/// Reads elements into JSON.
struct Reader<'t> {
    types: &'t SoapService,
    too_deep: bool,
}

impl Reader<'_> {
    /// The JSON of the element `node` holding `ty`'s content: its attributes, text and
    /// children.
    fn complex(&mut self, node: Node<'_, '_>, ty: &XmlComplexType, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            self.too_deep = true;
            return Value::Null;
        }
        if ty.is_text_only() {
            return match &ty.text {
                Some(simple) => simple_value(&own_text(node), simple),
                None => Value::Null,
            };
        }
        let mut out = Map::new();
        for attribute in &ty.attributes {
            let value = match &attribute.name.namespace {
                Some(ns) => node.attribute((ns.as_str(), attribute.name.local.as_str())),
                None => node.attribute(attribute.name.local.as_str()),
            };
            if let Some(value) = value {
                out.insert(
                    attribute.property.clone(),
                    simple_value(value, &attribute.simple),
                );
            }
        }
        if let Some(simple) = &ty.text {
            let text = own_text(node);
            if !text.is_empty() {
                out.insert(TEXT_PROPERTY.to_owned(), simple_value(&text, simple));
            }
        }
        // Declared children in schema order (an array always present), then any others.
        let mut slots: Vec<Option<Value>> = ty
            .children
            .iter()
            .map(|c| c.is_array().then(|| Value::Array(Vec::new())))
            .collect();
        let mut others = Map::new();
        for element in node.children().filter(Node::is_element) {
            let name = element.tag_name();
            let declared = ty
                .children
                .iter()
                .position(|c| {
                    c.name.local == name.name()
                        && c.name
                            .namespace
                            .as_deref()
                            .is_none_or(|ns| Some(ns) == name.namespace())
                })
                .or_else(|| ty.children.iter().position(|c| c.name.local == name.name()));
            match declared.and_then(|i| Some((ty.children.get(i)?, slots.get_mut(i)?))) {
                Some((child, slot)) => {
                    let value = self.element(element, child, depth + 1);
                    match slot {
                        Some(Value::Array(items)) if child.is_array() => items.push(value),
                        _ => *slot = Some(value),
                    }
                }
                None if ty.open || ty.children.is_empty() => {
                    let value = self.any(element, depth + 1);
                    push_property(&mut others, name.name(), value);
                }
                None => {}
            }
        }
        for (child, slot) in ty.children.iter().zip(slots) {
            if let Some(value) = slot {
                out.insert(child.property.clone(), value);
            }
        }
        out.extend(others);
        Value::Object(out)
    }

    /// The JSON of one occurrence of `declared`.
    fn element(&mut self, node: Node<'_, '_>, declared: &XmlElement, depth: usize) -> Value {
        if is_nil(node) {
            return Value::Null;
        }
        match &declared.content {
            XmlContent::Simple(simple) => simple_value(&own_text(node), simple),
            XmlContent::Complex(index) => match self.types.complex(*index) {
                Some(ty) => self.complex(node, ty, depth),
                None => Value::Null,
            },
            XmlContent::Any => self.any(node, depth),
        }
    }

    /// Any element as JSON without a schema: text alone is a string; attributes and child
    /// elements make an object (a name seen twice makes an array); `xsi:nil` is `null`.
    fn any(&mut self, node: Node<'_, '_>, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            self.too_deep = true;
            return Value::Null;
        }
        if is_nil(node) {
            return Value::Null;
        }
        let attributes: Vec<_> = node
            .attributes()
            .filter(|a| a.namespace() != Some(XSI_NAMESPACE))
            .collect();
        let has_elements = node.children().any(|n| n.is_element());
        if attributes.is_empty() && !has_elements {
            return Value::String(own_text(node));
        }
        let mut out = Map::new();
        for attribute in attributes {
            out.insert(
                attribute.name().to_owned(),
                Value::String(attribute.value().to_owned()),
            );
        }
        for element in node.children().filter(Node::is_element) {
            let value = self.any(element, depth + 1);
            push_property(&mut out, element.tag_name().name(), value);
        }
        let text = own_text(node);
        if !text.trim().is_empty() {
            out.insert(TEXT_PROPERTY.to_owned(), Value::String(text));
        }
        Value::Object(out)
    }
}

/// Sets `name` in `out`, making an array when it is already there.
fn push_property(out: &mut Map<String, Value>, name: &str, value: Value) {
    match out.get_mut(name) {
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            out.insert(name.to_owned(), value);
        }
    }
}

fn is_nil(node: Node<'_, '_>) -> bool {
    matches!(node.attribute((XSI_NAMESPACE, "nil")), Some("true" | "1"))
}

/// The text directly inside `node` (CDATA included), not its children's.
fn own_text(node: Node<'_, '_>) -> String {
    node.children()
        .filter(Node::is_text)
        .filter_map(|n| n.text())
        .collect()
}

/// A simple value as JSON: numbers and booleans typed, lists split, the rest a string. A
/// value that does not read as its type stays a string (nothing is lost).
fn simple_value(text: &str, simple: &XmlSimple) -> Value {
    if simple.list {
        let item = XmlSimple {
            list: false,
            ..simple.clone()
        };
        return Value::Array(
            text.split_whitespace()
                .map(|t| simple_value(t, &item))
                .collect(),
        );
    }
    let trimmed = text.trim();
    match simple.base {
        XsdBuiltin::Boolean => match trimmed {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => Value::String(text.to_owned()),
        },
        XsdBuiltin::Integer { .. } => trimmed
            .strip_prefix('+')
            .unwrap_or(trimmed)
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| trimmed.parse::<u64>().map(Value::from))
            .unwrap_or_else(|_| Value::String(text.to_owned())),
        XsdBuiltin::Decimal | XsdBuiltin::Float | XsdBuiltin::Double => trimmed
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .and_then(|f| {
                // Whole numbers stay integers (`12.0` → 12 reads better in JSON).
                if f.fract() == 0.0 && f.abs() < 9.0e15 && !trimmed.contains(['e', 'E']) {
                    trimmed
                        .split('.')
                        .next()
                        .and_then(|i| i.parse::<i64>().ok())
                        .map(Value::from)
                } else {
                    Number::from_f64(f).map(Value::Number)
                }
            })
            .unwrap_or_else(|| Value::String(text.to_owned())),
        XsdBuiltin::String => Value::String(text.to_owned()),
        _ => Value::String(trimmed.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_values_are_typed() {
        let int = XmlSimple {
            base: XsdBuiltin::Integer {
                min: None,
                max: None,
            },
            ..XmlSimple::default()
        };
        assert_eq!(simple_value(" 42 ", &int), Value::from(42));
        assert_eq!(simple_value("x", &int), Value::from("x"));
        let dec = XmlSimple {
            base: XsdBuiltin::Decimal,
            ..XmlSimple::default()
        };
        assert_eq!(simple_value("12.50", &dec), serde_json::json!(12.5));
        assert_eq!(simple_value("-0.0", &dec), serde_json::json!(0));
        let list = XmlSimple {
            base: XsdBuiltin::Boolean,
            list: true,
            ..XmlSimple::default()
        };
        assert_eq!(
            simple_value("true 0", &list),
            serde_json::json!([true, false])
        );
    }
}
