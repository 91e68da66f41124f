//! WSDL 1.1 services, ports, bindings, port types and messages → the connector's
//! operations, one per operation of every SOAP port of every service.
//!
//! An operation keeps the WSDL operation's name, unless an earlier port (in document order)
//! already has an operation of that name: then it is `PORT_OPERATION`, and
//! `[connector.NAME] soap_port` serves one port's operations under their own names.

use std::collections::HashMap;

use indexmap::IndexMap;
use junction_model::soap::{
    QName, SoapMessage, SoapOperation, SoapStyle, SoapVersion, XmlComplexType, XmlContent,
    XmlElement,
};
use junction_model::{Method, Operation, RequestBody, Response, Severity, Visibility};
use roxmltree::{Document, Node};
use serde_json::Map;

use super::files::{Report, WSDL_NS, element_pointer, node_position};
use super::json::JsonSchemas;
use super::xsd::{Builder, resolve_qname};

/// The WSDL SOAP 1.1 binding namespace.
const SOAP11_BINDING_NS: &str = "http://schemas.xmlsoap.org/wsdl/soap/";
/// The WSDL SOAP 1.2 binding namespace.
const SOAP12_BINDING_NS: &str = "http://schemas.xmlsoap.org/wsdl/soap12/";

/// One imported operation, before its JSON schemas are derived.
pub(crate) struct Imported {
    pub id: String,
    pub soap: SoapOperation,
    pub documentation: Option<String>,
    pub pointer: String,
}

/// What the WSDL says about the connector as a whole.
pub(crate) struct Service {
    /// The first service's name (or the definitions' name).
    pub title: String,
    pub description: Option<String>,
    pub operations: Vec<Imported>,
}

/// The WSDL components of every WSDL document, by qualified name.
struct Components<'a, 'i> {
    messages: HashMap<QName, Node<'a, 'i>>,
    port_types: HashMap<QName, Node<'a, 'i>>,
    bindings: HashMap<QName, Node<'a, 'i>>,
    /// Services in document order (the root WSDL's first).
    services: Vec<Node<'a, 'i>>,
}

impl<'a, 'i> Components<'a, 'i> {
    fn new(docs: &'a [Document<'i>]) -> Self {
        let mut components = Components {
            messages: HashMap::new(),
            port_types: HashMap::new(),
            bindings: HashMap::new(),
            services: Vec::new(),
        };
        for doc in docs {
            let root = doc.root_element();
            if !root.has_tag_name((WSDL_NS, "definitions")) {
                continue;
            }
            let namespace = root.attribute("targetNamespace");
            for child in root.children().filter(Node::is_element) {
                if child.tag_name().namespace() != Some(WSDL_NS) {
                    continue;
                }
                let name = QName::new(namespace, child.attribute("name").unwrap_or_default());
                match child.tag_name().name() {
                    "message" => {
                        components.messages.entry(name).or_insert(child);
                    }
                    "portType" => {
                        components.port_types.entry(name).or_insert(child);
                    }
                    "binding" => {
                        components.bindings.entry(name).or_insert(child);
                    }
                    "service" => components.services.push(child),
                    _ => {}
                }
            }
        }
        components
    }
}

/// Reads the services of `docs` (the root WSDL first) into operations, their XML types
/// into `types`.
pub(crate) fn read(
    docs: &[Document<'_>],
    files: &super::files::Files,
    types: &mut Builder<'_, '_, '_>,
    report: &mut Report,
) -> Service {
    let components = Components::new(docs);
    let root = docs.first().map(Document::root_element);
    let mut service = Service {
        title: root
            .and_then(|r| r.attribute("name"))
            .unwrap_or_default()
            .to_owned(),
        description: root.and_then(documentation),
        operations: Vec::new(),
    };
    let file_of = |node: Node<'_, '_>| -> String {
        docs.iter()
            .position(|d| std::ptr::eq(d, node.document()))
            .and_then(|i| files.texts.get(i))
            .map(|f| f.display.clone())
            .unwrap_or_default()
    };
    let warn = |report: &mut Report, code: &'static str, node: Node<'_, '_>, message: String| {
        report.push(
            Severity::Warning,
            code,
            &file_of(node),
            Some(node_position(node)),
            element_pointer(node),
            message,
        );
    };
    if components.services.is_empty() {
        if let Some(root) = root {
            report.push(
                Severity::Error,
                "wsdl-no-service",
                &file_of(root),
                Some(node_position(root)),
                element_pointer(root),
                "the WSDL defines no wsdl:service, so there is no address to call",
            );
        }
        return service;
    }
    // (port, first port that had the name) for names served under a prefix.
    let mut taken: HashMap<String, String> = HashMap::new();
    let mut renamed: IndexMap<(String, String), Vec<String>> = IndexMap::new();
    for service_node in &components.services {
        let service_name = service_node.attribute("name").unwrap_or_default();
        if service.title.is_empty() {
            service_name.clone_into(&mut service.title);
        }
        if service.description.is_none() {
            service.description = documentation(*service_node);
        }
        for port in service_node
            .children()
            .filter(|n| n.has_tag_name((WSDL_NS, "port")))
        {
            let port_name = port.attribute("name").unwrap_or_default();
            let Some((version, address)) = port_address(port) else {
                warn(
                    report,
                    "wsdl-port-skipped",
                    port,
                    format!(
                        "port '{port_name}' has no SOAP address (an HTTP or other binding); it \
                         is not imported"
                    ),
                );
                continue;
            };
            let Some(binding) = port
                .attribute("binding")
                .map(|b| resolve_qname(port, b))
                .and_then(|b| components.bindings.get(&b).copied())
            else {
                warn(
                    report,
                    "wsdl-unresolved",
                    port,
                    format!(
                        "the binding of port '{port_name}' is not defined; the port is not imported"
                    ),
                );
                continue;
            };
            let port_type = binding
                .attribute("type")
                .map(|t| resolve_qname(binding, t))
                .and_then(|t| components.port_types.get(&t).copied());
            let soap_binding = binding.children().find(|n| {
                n.has_tag_name((SOAP11_BINDING_NS, "binding"))
                    || n.has_tag_name((SOAP12_BINDING_NS, "binding"))
            });
            let default_style = match soap_binding.and_then(|b| b.attribute("style")) {
                Some("rpc") => SoapStyle::Rpc,
                _ => SoapStyle::Document,
            };
            let namespace = binding
                .document()
                .root_element()
                .attribute("targetNamespace");
            for operation in binding
                .children()
                .filter(|n| n.has_tag_name((WSDL_NS, "operation")))
            {
                let name = operation.attribute("name").unwrap_or_default();
                let abstract_op = port_type.and_then(|pt| {
                    pt.children().find(|o| {
                        o.has_tag_name((WSDL_NS, "operation")) && o.attribute("name") == Some(name)
                    })
                });
                let Some(abstract_op) = abstract_op else {
                    warn(
                        report,
                        "wsdl-unresolved",
                        operation,
                        format!(
                            "operation '{name}' of binding '{}' is not in its port type; it is \
                             not imported",
                            binding.attribute("name").unwrap_or_default()
                        ),
                    );
                    continue;
                };
                let soap_op = operation.children().find(|n| {
                    n.has_tag_name((SOAP11_BINDING_NS, "operation"))
                        || n.has_tag_name((SOAP12_BINDING_NS, "operation"))
                });
                let style = match soap_op.and_then(|o| o.attribute("style")) {
                    Some("rpc") => SoapStyle::Rpc,
                    Some(_) => SoapStyle::Document,
                    None => default_style,
                };
                let action = soap_op
                    .and_then(|o| o.attribute("soapAction"))
                    .unwrap_or_default()
                    .to_owned();
                let direction = |tag: &str| {
                    (
                        abstract_op
                            .children()
                            .find(|n| n.has_tag_name((WSDL_NS, tag))),
                        operation
                            .children()
                            .find(|n| n.has_tag_name((WSDL_NS, tag))),
                    )
                };
                let (input_abstract, input_binding) = direction("input");
                let (output_abstract, output_binding) = direction("output");
                let mut encoded = false;
                let mut message = |abstract_msg: Option<Node<'_, '_>>,
                                   binding_msg: Option<Node<'_, '_>>,
                                   wrapper_name: String,
                                   report: &mut Report|
                 -> SoapMessage {
                    let body = binding_msg.and_then(|b| {
                        b.children().find(|n| {
                            n.has_tag_name((SOAP11_BINDING_NS, "body"))
                                || n.has_tag_name((SOAP12_BINDING_NS, "body"))
                        })
                    });
                    if body.and_then(|b| b.attribute("use")) == Some("encoded") {
                        encoded = true;
                    }
                    if let Some(binding_msg) = binding_msg {
                        for header in binding_msg.children().filter(|n| {
                            n.has_tag_name((SOAP11_BINDING_NS, "header"))
                                || n.has_tag_name((SOAP12_BINDING_NS, "header"))
                        }) {
                            warn(
                                report,
                                "soap-header",
                                header,
                                format!(
                                    "SOAP header part '{}' of operation '{name}' is not sent or \
                                     read (only the body is mapped to JSON)",
                                    header.attribute("part").unwrap_or_default()
                                ),
                            );
                        }
                    }
                    let parts = message_parts(&components, abstract_msg, binding_msg, body);
                    let body_namespace = body.and_then(|b| b.attribute("namespace")).or(namespace);
                    match style {
                        SoapStyle::Rpc => {
                            let mut ty = XmlComplexType::default();
                            for part in parts {
                                let content = part_content(types, part, report);
                                let part_name = part.attribute("name").unwrap_or_default();
                                ty.children.push(XmlElement {
                                    name: QName::new(None, part_name),
                                    property: part_name.to_owned(),
                                    min_occurs: 1,
                                    max_occurs: Some(1),
                                    nillable: true,
                                    content,
                                });
                            }
                            SoapMessage {
                                wrapper: Some(QName::new(body_namespace, &wrapper_name)),
                                content: types.push_type(ty),
                            }
                        }
                        SoapStyle::Document => document_message(types, &parts, report),
                    }
                };
                let input = message(input_abstract, input_binding, name.to_owned(), report);
                let output = output_abstract.map(|_| {
                    message(
                        output_abstract,
                        output_binding,
                        format!("{name}Response"),
                        report,
                    )
                });
                if encoded {
                    warn(
                        report,
                        "soap-encoded",
                        operation,
                        format!(
                            "operation '{name}' uses SOAP encoding (use=\"encoded\"); it is \
                             written as literal XML, which most such services accept, but \
                             without xsi:type on each value"
                        ),
                    );
                }
                let id = match taken.get(name) {
                    Some(first_port) => {
                        renamed
                            .entry((port_name.to_owned(), first_port.clone()))
                            .or_default()
                            .push(name.to_owned());
                        format!("{port_name}_{name}")
                    }
                    None => {
                        taken.insert(name.to_owned(), port_name.to_owned());
                        name.to_owned()
                    }
                };
                service.operations.push(Imported {
                    id,
                    documentation: documentation(abstract_op).or_else(|| documentation(operation)),
                    pointer: element_pointer(operation),
                    soap: SoapOperation {
                        service: service_name.to_owned(),
                        port: port_name.to_owned(),
                        name: name.to_owned(),
                        version,
                        action,
                        style,
                        encoded,
                        address: address.clone(),
                        input,
                        output,
                    },
                });
            }
        }
    }
    for ((port, first), names) in renamed {
        if let Some(node) = components
            .services
            .iter()
            .flat_map(|s| s.children())
            .find(|n| {
                n.has_tag_name((WSDL_NS, "port")) && n.attribute("name") == Some(port.as_str())
            })
        {
            warn(
                report,
                "soap-port-names",
                node,
                format!(
                    "port '{port}' has operations that port '{first}' also has ({}); they are \
                     served as {port}_NAME. Set `soap_port = \"{port}\"` in [connector.NAME] to \
                     serve only this port, under the plain names",
                    names.join(", ")
                ),
            );
        }
    }
    service
}

/// The SOAP version and address of a port, if it is a SOAP port.
fn port_address(port: Node<'_, '_>) -> Option<(SoapVersion, String)> {
    port.children().find_map(|n| {
        let version = if n.has_tag_name((SOAP11_BINDING_NS, "address")) {
            SoapVersion::Soap11
        } else if n.has_tag_name((SOAP12_BINDING_NS, "address")) {
            SoapVersion::Soap12
        } else {
            return None;
        };
        Some((
            version,
            n.attribute("location")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        ))
    })
}

/// The parts of a message the body carries: those `soap:body parts` names, else every part
/// that no `soap:header` of the binding's message (`binding_msg`) carries.
fn message_parts<'a, 'i>(
    components: &Components<'a, 'i>,
    abstract_msg: Option<Node<'_, '_>>,
    binding_msg: Option<Node<'_, '_>>,
    body: Option<Node<'_, '_>>,
) -> Vec<Node<'a, 'i>> {
    let Some(name) =
        abstract_msg.and_then(|m| m.attribute("message").map(|name| resolve_qname(m, name)))
    else {
        return Vec::new();
    };
    let Some(message) = components.messages.get(&name).copied() else {
        return Vec::new();
    };
    let wanted: Option<Vec<&str>> = body
        .and_then(|b| b.attribute("parts"))
        .map(|p| p.split_whitespace().collect());
    let in_headers: Vec<&str> = binding_msg
        .iter()
        .flat_map(|b| b.children())
        .filter(|n| {
            n.has_tag_name((SOAP11_BINDING_NS, "header"))
                || n.has_tag_name((SOAP12_BINDING_NS, "header"))
        })
        .filter(|h| {
            h.attribute("message")
                .is_some_and(|m| resolve_qname(*h, m) == name)
        })
        .filter_map(|h| h.attribute("part"))
        .collect();
    message
        .children()
        .filter(|n| n.has_tag_name((WSDL_NS, "part")))
        .filter(|part| {
            let part_name = part.attribute("name").unwrap_or_default();
            match &wanted {
                Some(wanted) => wanted.contains(&part_name),
                None => !in_headers.contains(&part_name),
            }
        })
        .collect()
}

/// What a part holds: its element's content or its type.
fn part_content(
    types: &mut Builder<'_, '_, '_>,
    part: Node<'_, '_>,
    report: &mut Report,
) -> XmlContent {
    if let Some(element) = part.attribute("element") {
        return types
            .global_element(&resolve_qname(part, element), part, report)
            .content;
    }
    match part.attribute("type") {
        Some(ty) => types.type_content(&resolve_qname(part, ty), part, report),
        None => XmlContent::Any,
    }
}

/// A document-style message: one element part with complex content is written as that
/// element around its content (the JSON is the content); otherwise each part is a child.
fn document_message(
    types: &mut Builder<'_, '_, '_>,
    parts: &[Node<'_, '_>],
    report: &mut Report,
) -> SoapMessage {
    if let [part] = parts
        && let Some(element) = part.attribute("element")
    {
        let name = resolve_qname(*part, element);
        let element = types.global_element(&name, *part, report);
        if let XmlContent::Complex(content) = element.content {
            return SoapMessage {
                wrapper: Some(element.name),
                content,
            };
        }
    }
    let mut ty = XmlComplexType::default();
    for part in parts {
        let element = match part.attribute("element") {
            Some(element) => types.global_element(&resolve_qname(*part, element), *part, report),
            None => {
                let part_name = part.attribute("name").unwrap_or_default();
                XmlElement {
                    name: QName::new(None, part_name),
                    property: part_name.to_owned(),
                    min_occurs: 1,
                    max_occurs: Some(1),
                    nillable: false,
                    content: part_content(types, *part, report),
                }
            }
        };
        ty.children.push(element);
    }
    SoapMessage {
        wrapper: None,
        content: types.push_type(ty),
    }
}

/// The text of a `wsdl:documentation` child, trimmed; `None` when empty.
fn documentation(node: Node<'_, '_>) -> Option<String> {
    let doc = node
        .children()
        .find(|n| n.has_tag_name((WSDL_NS, "documentation")))?;
    let text: String = doc
        .descendants()
        .filter(Node::is_text)
        .filter_map(|n| n.text())
        .collect();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!text.is_empty()).then_some(text)
}

/// The model operation of an imported one: `POST /{id}`, a JSON body of the input message,
/// a JSON answer of the output message (`202` without one).
pub(crate) fn operation(imported: Imported, schemas: &mut JsonSchemas<'_>) -> Operation {
    let Imported {
        id,
        soap,
        documentation,
        pointer,
    } = imported;
    let input = schemas.message(soap.input.content);
    let required = input
        .get("required")
        .and_then(|r| r.as_array())
        .is_some_and(|r| !r.is_empty());
    let responses = match &soap.output {
        Some(output) => vec![Response {
            status: "200".to_owned(),
            description: Some(format!("The answer of {}", soap.name)),
            schema: Some(schemas.message(output.content)),
            headers: Vec::new(),
        }],
        None => vec![Response {
            status: "202".to_owned(),
            description: Some(format!("{} is one-way: accepted, no answer", soap.name)),
            schema: None,
            headers: Vec::new(),
        }],
    };
    let summary = documentation
        .as_deref()
        .map(|d| d.split(". ").next().unwrap_or(d).to_owned())
        .or_else(|| Some(soap.name.clone()));
    Operation {
        method: Method::Post,
        path: format!("/{id}"),
        summary,
        description: documentation,
        parameters: Vec::new(),
        body: Some(RequestBody {
            name: "body".to_owned(),
            required,
            description: Some(format!(
                "The input of {} as JSON; it is sent as a SOAP {} envelope",
                soap.name,
                soap.version.as_str()
            )),
            summary: None,
            media_types: vec!["application/json".to_owned()],
            schema: input,
            visibility: Visibility::None,
            extensions: Map::new(),
            pointer: pointer.clone(),
        }),
        consumes: vec!["application/json".to_owned()],
        produces: vec!["application/json".to_owned()],
        responses,
        security: None,
        deprecated: false,
        visibility: Visibility::None,
        tags: vec![soap.service.clone()],
        extensions: Map::new(),
        id,
        soap: Some(soap),
        pointer,
    }
}
