//! XML Schema: the global components of every schema of a WSDL, and their conversion into
//! the model's XML types ([`junction_model::soap`]).
//!
//! Content models are flattened: nested `sequence`s become one list of children in order,
//! `all` and `choice` members become optional (a `choice` is remembered as a group of which
//! at most one may appear), and a group that repeats makes its members arrays. Derivation
//! by `extension` copies the base's attributes and children first; `restriction` keeps the
//! base's attributes and takes its own content. SOAP-encoded arrays (`soapenc:Array` with a
//! `wsdl:arrayType`) become a repeated `item` element. Anything else a schema may say
//! (`redefine` overrides, identity constraints, substitution groups) is read as far as it
//! affects the shape, and named in a warning where it does not fit.

use std::collections::HashMap;

use junction_model::Severity;
use junction_model::soap::{
    QName, TEXT_PROPERTY, XmlAttribute, XmlComplexType, XmlContent, XmlElement, XmlSimple,
    XsdBuiltin,
};
use roxmltree::{Document, Node, NodeId};

use super::files::{Files, Link, Report, WSDL_NS, XSD_NS, element_pointer, node_position};

/// The SOAP 1.1 encoding namespace (`soapenc:Array`, `soapenc:string` …).
pub(crate) const SOAP_ENCODING_NS: &str = "http://schemas.xmlsoap.org/soap/encoding/";
/// The SOAP 1.2 encoding namespace.
const SOAP12_ENCODING_NS: &str = "http://www.w3.org/2003/05/soap-encoding";

/// How deep derivations and group references may nest before the schema is taken as
/// circular.
const MAX_DEPTH: usize = 64;

/// The global components of one WSDL's schemas.
pub(crate) struct Schemas<'a, 'i> {
    docs: &'a [Document<'i>],
    files: &'a Files,
    elements: HashMap<QName, Node<'a, 'i>>,
    complex_types: HashMap<QName, Node<'a, 'i>>,
    simple_types: HashMap<QName, Node<'a, 'i>>,
    groups: HashMap<QName, Node<'a, 'i>>,
    attribute_groups: HashMap<QName, Node<'a, 'i>>,
    attributes: HashMap<QName, Node<'a, 'i>>,
    /// The target namespace of each `xs:schema` element, a chameleon include's included.
    namespaces: HashMap<(usize, NodeId), Option<String>>,
}

impl<'a, 'i> Schemas<'a, 'i> {
    /// Indexes every schema of `docs` (a WSDL's `types` and every XSD file).
    pub(crate) fn new(docs: &'a [Document<'i>], files: &'a Files, report: &mut Report) -> Self {
        let mut schemas = Schemas {
            docs,
            files,
            elements: HashMap::new(),
            complex_types: HashMap::new(),
            simple_types: HashMap::new(),
            groups: HashMap::new(),
            attribute_groups: HashMap::new(),
            attributes: HashMap::new(),
            namespaces: HashMap::new(),
        };
        for (index, doc) in docs.iter().enumerate() {
            let root = doc.root_element();
            let schema_nodes: Vec<Node<'a, 'i>> = if root.has_tag_name((XSD_NS, "schema")) {
                vec![root]
            } else {
                root.descendants()
                    .filter(|n| n.has_tag_name((XSD_NS, "schema")))
                    .collect()
            };
            for schema in schema_nodes {
                let namespace = match schema.attribute("targetNamespace") {
                    Some(ns) => Some(ns.to_owned()).filter(|ns| !ns.is_empty()),
                    // A chameleon include: the includer's namespace.
                    None => files
                        .links
                        .iter()
                        .find(|l| l.to == index && l.link == Link::Include)
                        .and_then(|l| l.namespace.clone()),
                };
                schemas
                    .namespaces
                    .insert((index, schema.id()), namespace.clone());
                schemas.index_schema(index, schema, namespace.as_deref(), report);
            }
        }
        schemas
    }

    fn index_schema(
        &mut self,
        index: usize,
        schema: Node<'a, 'i>,
        namespace: Option<&str>,
        report: &mut Report,
    ) {
        let file = self.display(index);
        for child in schema.children().filter(Node::is_element) {
            let Some(name) = child.attribute("name") else {
                continue;
            };
            let qname = QName::new(namespace, name);
            let table = match (child.tag_name().namespace(), child.tag_name().name()) {
                (Some(XSD_NS), "element") => &mut self.elements,
                (Some(XSD_NS), "complexType") => &mut self.complex_types,
                (Some(XSD_NS), "simpleType") => &mut self.simple_types,
                (Some(XSD_NS), "group") => &mut self.groups,
                (Some(XSD_NS), "attributeGroup") => &mut self.attribute_groups,
                (Some(XSD_NS), "attribute") => &mut self.attributes,
                _ => continue,
            };
            if let Some(first) = table.get(&qname) {
                // The same file reached twice (an include and an import) defines nothing
                // twice; a real duplicate is reported.
                if first.range() != child.range()
                    || !std::ptr::eq(first.document(), child.document())
                {
                    report.push(
                        Severity::Warning,
                        "xsd-duplicate",
                        &file,
                        Some(node_position(child)),
                        element_pointer(child),
                        format!(
                            "{} '{}' is defined twice in namespace '{}'; the first definition is used",
                            child.tag_name().name(),
                            name,
                            namespace.unwrap_or_default()
                        ),
                    );
                }
                continue;
            }
            table.insert(qname, child);
        }
    }

    /// The file index of `node`'s document.
    fn doc_index(&self, node: Node<'_, '_>) -> usize {
        self.docs
            .iter()
            .position(|d| std::ptr::eq(d, node.document()))
            .unwrap_or(0)
    }

    pub(crate) fn display(&self, index: usize) -> String {
        self.files
            .texts
            .get(index)
            .map(|f| f.display.clone())
            .unwrap_or_default()
    }

    /// The global element `name`, if any schema defines it.
    pub(crate) fn element(&self, name: &QName) -> Option<Node<'a, 'i>> {
        self.elements.get(name).copied()
    }

    /// The `xs:schema` element around `node` and its target namespace.
    fn schema_of(&self, node: Node<'a, 'i>) -> (Option<Node<'a, 'i>>, Option<String>) {
        let schema = node
            .ancestors()
            .find(|n| n.has_tag_name((XSD_NS, "schema")));
        let namespace = schema.and_then(|s| {
            self.namespaces
                .get(&(self.doc_index(s), s.id()))
                .cloned()
                .flatten()
        });
        (schema, namespace)
    }
}

/// Resolves a `prefix:local` reference written on `node` to a qualified name.
pub(crate) fn resolve_qname(node: Node<'_, '_>, text: &str) -> QName {
    let text = text.trim();
    match text.split_once(':') {
        Some((prefix, local)) => QName::new(node.lookup_namespace_uri(Some(prefix)), local),
        None => QName::new(node.lookup_namespace_uri(None), text),
    }
}

/// Converts schema components into the model's XML types, one table for a connector.
pub(crate) struct Builder<'s, 'a, 'i> {
    schemas: &'s Schemas<'a, 'i>,
    pub types: Vec<XmlComplexType>,
    /// Complex type nodes already converted (or being converted) → their index.
    done: HashMap<(usize, NodeId), usize>,
    depth: usize,
}

impl<'s, 'a, 'i> Builder<'s, 'a, 'i> {
    pub(crate) fn new(schemas: &'s Schemas<'a, 'i>) -> Self {
        Builder {
            schemas,
            types: Vec::new(),
            done: HashMap::new(),
            depth: 0,
        }
    }

    fn warn(&self, report: &mut Report, code: &'static str, node: Node<'_, '_>, message: String) {
        let file = self.schemas.display(self.schemas.doc_index(node));
        report.push(
            Severity::Warning,
            code,
            &file,
            Some(node_position(node)),
            element_pointer(node),
            message,
        );
    }

    /// A new complex type in the table (for a message's content); its index.
    pub(crate) fn push_type(&mut self, ty: XmlComplexType) -> usize {
        self.types.push(ty);
        self.types.len() - 1
    }

    /// The global element `name` as it appears in a message part (once, required).
    pub(crate) fn global_element(
        &mut self,
        name: &QName,
        at: Node<'_, '_>,
        report: &mut Report,
    ) -> XmlElement {
        match self.schemas.element(name) {
            Some(node) => {
                let mut element = self.element(node, true, report);
                element.min_occurs = 1;
                element.max_occurs = Some(1);
                element
            }
            None => {
                self.warn(
                    report,
                    "xsd-unresolved",
                    at,
                    format!(
                        "element '{}' is not defined by any schema of this WSDL; its content \
                         is taken as any XML",
                        display_qname(name)
                    ),
                );
                XmlElement {
                    property: name.local.clone(),
                    name: name.clone(),
                    min_occurs: 1,
                    max_occurs: Some(1),
                    nillable: false,
                    content: XmlContent::Any,
                }
            }
        }
    }

    /// The content of the type `name` (a message part's `type`).
    pub(crate) fn type_content(
        &mut self,
        name: &QName,
        at: Node<'_, '_>,
        report: &mut Report,
    ) -> XmlContent {
        if let Some(simple) = builtin(name) {
            return simple;
        }
        if let Some(node) = self.schemas.complex_types.get(name).copied() {
            return XmlContent::Complex(self.complex(node, report));
        }
        if let Some(node) = self.schemas.simple_types.get(name).copied() {
            return XmlContent::Simple(Box::new(self.simple_type(node, report)));
        }
        if name.namespace.as_deref() == Some(SOAP_ENCODING_NS) && name.local == "Array" {
            return XmlContent::Any;
        }
        self.warn(
            report,
            "xsd-unresolved",
            at,
            format!(
                "type '{}' is not defined by any schema of this WSDL; values of it are taken \
                 as any XML",
                display_qname(name)
            ),
        );
        XmlContent::Any
    }

    /// An element declaration (global or local, or a `ref` to a global one).
    fn element(&mut self, node: Node<'a, 'i>, global: bool, report: &mut Report) -> XmlElement {
        let (min_occurs, max_occurs) = occurs(node);
        if let Some(reference) = node.attribute("ref") {
            let name = resolve_qname(node, reference);
            let mut element = self.global_element(&name, node, report);
            element.min_occurs = min_occurs;
            element.max_occurs = max_occurs;
            return element;
        }
        let local = node.attribute("name").unwrap_or_default();
        let (schema, target) = self.schemas.schema_of(node);
        let qualified = global
            || match node.attribute("form") {
                Some(form) => form == "qualified",
                None => schema.and_then(|s| s.attribute("elementFormDefault")) == Some("qualified"),
            };
        let namespace = if qualified { target.as_deref() } else { None };
        let nillable = matches!(node.attribute("nillable"), Some("true" | "1"));
        let content = if let Some(type_name) = node.attribute("type") {
            let name = resolve_qname(node, type_name);
            self.type_content(&name, node, report)
        } else if let Some(inline) = xsd_child(node, "complexType") {
            XmlContent::Complex(self.complex(inline, report))
        } else if let Some(inline) = xsd_child(node, "simpleType") {
            XmlContent::Simple(Box::new(self.simple_type(inline, report)))
        } else {
            XmlContent::Any
        };
        XmlElement {
            name: QName::new(namespace, local),
            property: local.to_owned(),
            min_occurs: if global { 1 } else { min_occurs },
            max_occurs: if global { Some(1) } else { max_occurs },
            nillable,
            content,
        }
    }

    /// A complex type node → its index in the table (converted once; a recursive use finds
    /// the index of the type being converted).
    fn complex(&mut self, node: Node<'a, 'i>, report: &mut Report) -> usize {
        let key = (self.schemas.doc_index(node), node.id());
        if let Some(&index) = self.done.get(&key) {
            return index;
        }
        let index = self.push_type(XmlComplexType::default());
        self.done.insert(key, index);
        if self.depth > MAX_DEPTH {
            self.warn(
                report,
                "xsd-too-deep",
                node,
                format!("types nest more than {MAX_DEPTH} levels deep here; the rest is any XML"),
            );
            if let Some(ty) = self.types.get_mut(index) {
                ty.open = true;
            }
            return index;
        }
        self.depth += 1;
        let (_, target) = self.schemas.schema_of(node);
        let mut ty = XmlComplexType {
            name: node
                .attribute("name")
                .map(|name| QName::new(target.as_deref(), name)),
            ..XmlComplexType::default()
        };
        self.complex_body(node, &mut ty, report);
        name_properties(&mut ty);
        if let Some(slot) = self.types.get_mut(index) {
            *slot = ty;
        }
        self.depth -= 1;
        index
    }

    /// The content of a `complexType` (or of an extension/restriction) into `ty`.
    fn complex_body(&mut self, node: Node<'a, 'i>, ty: &mut XmlComplexType, report: &mut Report) {
        for child in node.children().filter(Node::is_element) {
            if child.tag_name().namespace() != Some(XSD_NS) {
                continue;
            }
            match child.tag_name().name() {
                "sequence" | "choice" | "all" | "group" | "any" | "element" => {
                    self.particle(child, ty, (1, Some(1)), report);
                }
                "attribute" | "attributeGroup" => self.attribute(child, ty, report),
                "simpleContent" => self.simple_content(child, ty, report),
                "complexContent" => self.complex_content(child, ty, report),
                "anyAttribute" | "annotation" => {}
                other => self.warn(
                    report,
                    "xsd-unsupported",
                    child,
                    format!("xs:{other} is not supported here and is ignored"),
                ),
            }
        }
        if node.attribute("mixed") == Some("true") && ty.text.is_none() {
            ty.text = Some(XmlSimple::default());
        }
    }

    /// A particle (element, group, wildcard) with the occurrence bounds of what holds it.
    fn particle(
        &mut self,
        node: Node<'a, 'i>,
        ty: &mut XmlComplexType,
        outer: (u32, Option<u32>),
        report: &mut Report,
    ) {
        let (min, max) = occurs(node);
        let bounds = (
            outer.0.saturating_mul(min),
            outer.1.zip(max).map(|(a, b)| a.saturating_mul(b)),
        );
        match node.tag_name().name() {
            "element" => {
                let mut element = self.element(node, false, report);
                element.min_occurs = bounds.0;
                element.max_occurs = bounds.1;
                ty.children.push(element);
            }
            "sequence" | "all" => {
                for child in node.children().filter(Node::is_element) {
                    if child.tag_name().namespace() == Some(XSD_NS)
                        && child.tag_name().name() != "annotation"
                    {
                        self.particle(child, ty, bounds, report);
                    }
                }
            }
            "choice" => {
                let first = ty.children.len();
                for child in node.children().filter(Node::is_element) {
                    if child.tag_name().namespace() == Some(XSD_NS)
                        && child.tag_name().name() != "annotation"
                    {
                        self.particle(child, ty, (0, bounds.1), report);
                    }
                }
                let members: Vec<usize> = (first..ty.children.len()).collect();
                if members.len() > 1 && bounds.1 == Some(1) {
                    ty.choices.push(members);
                }
            }
            "group" => {
                let Some(reference) = node.attribute("ref") else {
                    return;
                };
                let name = resolve_qname(node, reference);
                let Some(group) = self.schemas.groups.get(&name).copied() else {
                    self.warn(
                        report,
                        "xsd-unresolved",
                        node,
                        format!(
                            "group '{}' is not defined; it is left out",
                            display_qname(&name)
                        ),
                    );
                    return;
                };
                if self.depth > MAX_DEPTH {
                    self.warn(
                        report,
                        "xsd-too-deep",
                        node,
                        format!("group '{}' refers to itself", display_qname(&name)),
                    );
                    return;
                }
                self.depth += 1;
                for child in group.children().filter(Node::is_element) {
                    if matches!(child.tag_name().name(), "sequence" | "choice" | "all") {
                        self.particle(child, ty, bounds, report);
                    }
                }
                self.depth -= 1;
            }
            "any" => ty.open = true,
            _ => {}
        }
    }

    /// An attribute (or a group of them) into `ty`.
    fn attribute(&mut self, node: Node<'a, 'i>, ty: &mut XmlComplexType, report: &mut Report) {
        if node.tag_name().name() == "attributeGroup" {
            let Some(reference) = node.attribute("ref") else {
                return;
            };
            let name = resolve_qname(node, reference);
            let Some(group) = self.schemas.attribute_groups.get(&name).copied() else {
                self.warn(
                    report,
                    "xsd-unresolved",
                    node,
                    format!(
                        "attribute group '{}' is not defined; it is left out",
                        display_qname(&name)
                    ),
                );
                return;
            };
            if self.depth > MAX_DEPTH {
                return;
            }
            self.depth += 1;
            for child in group.children().filter(Node::is_element) {
                if matches!(child.tag_name().name(), "attribute" | "attributeGroup") {
                    self.attribute(child, ty, report);
                }
            }
            self.depth -= 1;
            return;
        }
        if node.attribute("use") == Some("prohibited") {
            return;
        }
        let required = node.attribute("use") == Some("required");
        let (name, declaration) = match node.attribute("ref") {
            Some(reference) => {
                let name = resolve_qname(node, reference);
                if name.namespace.as_deref() == Some(SOAP_ENCODING_NS) {
                    // soapenc:arrayType and the like describe encoding, not data.
                    return;
                }
                let declaration = self.schemas.attributes.get(&name).copied();
                (name, declaration)
            }
            None => {
                let local = node.attribute("name").unwrap_or_default();
                let (schema, target) = self.schemas.schema_of(node);
                let qualified = match node.attribute("form") {
                    Some(form) => form == "qualified",
                    None => {
                        schema.and_then(|s| s.attribute("attributeFormDefault"))
                            == Some("qualified")
                    }
                };
                let namespace = if qualified { target } else { None };
                (QName::new(namespace.as_deref(), local), Some(node))
            }
        };
        let simple = match declaration {
            Some(declaration) => {
                if let Some(type_name) = declaration.attribute("type") {
                    match self.type_content(
                        &resolve_qname(declaration, type_name),
                        declaration,
                        report,
                    ) {
                        XmlContent::Simple(simple) => *simple,
                        _ => XmlSimple::default(),
                    }
                } else if let Some(inline) = xsd_child(declaration, "simpleType") {
                    self.simple_type(inline, report)
                } else {
                    XmlSimple::default()
                }
            }
            None => XmlSimple::default(),
        };
        if ty.attributes.iter().any(|a| a.name == name) {
            return;
        }
        ty.attributes.push(XmlAttribute {
            property: name.local.clone(),
            name,
            required,
            simple,
        });
    }

    /// `simpleContent`: text of a simple type, with attributes.
    fn simple_content(&mut self, node: Node<'a, 'i>, ty: &mut XmlComplexType, report: &mut Report) {
        let Some(derivation) = node.children().find(|c| {
            c.has_tag_name((XSD_NS, "extension")) || c.has_tag_name((XSD_NS, "restriction"))
        }) else {
            return;
        };
        if let Some(base) = derivation.attribute("base") {
            let base = resolve_qname(derivation, base);
            match self.type_content(&base, derivation, report) {
                XmlContent::Simple(simple) => ty.text = Some(*simple),
                XmlContent::Complex(index) => {
                    if let Some(base_ty) = self.types.get(index).cloned() {
                        ty.text = base_ty.text.or(Some(XmlSimple::default()));
                        ty.attributes.extend(base_ty.attributes);
                    }
                }
                XmlContent::Any => ty.text = Some(XmlSimple::default()),
            }
        }
        if derivation.tag_name().name() == "restriction"
            && let Some(text) = &mut ty.text
        {
            apply_facets(derivation, text);
        }
        for child in derivation.children().filter(Node::is_element) {
            if matches!(child.tag_name().name(), "attribute" | "attributeGroup") {
                self.attribute(child, ty, report);
            }
        }
    }

    /// `complexContent`: derivation from another complex type (or a SOAP-encoded array).
    fn complex_content(
        &mut self,
        node: Node<'a, 'i>,
        ty: &mut XmlComplexType,
        report: &mut Report,
    ) {
        let Some(derivation) = node.children().find(|c| {
            c.has_tag_name((XSD_NS, "extension")) || c.has_tag_name((XSD_NS, "restriction"))
        }) else {
            return;
        };
        let extension = derivation.tag_name().name() == "extension";
        let base = derivation
            .attribute("base")
            .map(|b| resolve_qname(derivation, b));
        if let Some(base) = &base {
            let encoded_array = base.local == "Array"
                && matches!(
                    base.namespace.as_deref(),
                    Some(SOAP_ENCODING_NS | SOAP12_ENCODING_NS)
                );
            if encoded_array {
                self.encoded_array(derivation, ty, report);
                return;
            }
            if base.namespace.as_deref() == Some(XSD_NS) && base.local == "anyType" {
                // Derived from anyType: only its own content.
            } else if let Some(base_node) = self.schemas.complex_types.get(base).copied() {
                let index = self.complex(base_node, report);
                if let Some(base_ty) = self.types.get(index).cloned() {
                    ty.attributes.extend(base_ty.attributes);
                    ty.open |= base_ty.open;
                    if extension {
                        let offset = ty.children.len();
                        ty.children.extend(base_ty.children);
                        ty.choices.extend(
                            base_ty
                                .choices
                                .into_iter()
                                .map(|c| c.into_iter().map(|i| i + offset).collect()),
                        );
                        ty.text = ty.text.take().or(base_ty.text);
                    }
                }
            } else {
                self.warn(
                    report,
                    "xsd-unresolved",
                    derivation,
                    format!(
                        "base type '{}' is not defined; only this type's own content is used",
                        display_qname(base)
                    ),
                );
            }
        }
        self.complex_body(derivation, ty, report);
    }

    /// A SOAP-encoded array: its declared item element, else `item` elements of the
    /// `wsdl:arrayType`.
    fn encoded_array(
        &mut self,
        derivation: Node<'a, 'i>,
        ty: &mut XmlComplexType,
        report: &mut Report,
    ) {
        self.complex_body(derivation, ty, report);
        if ty.children.len() == 1
            && let Some(only) = ty.children.first_mut()
        {
            only.min_occurs = 0;
            only.max_occurs = None;
            return;
        }
        let array_type = derivation
            .descendants()
            .find_map(|n| n.attribute((WSDL_NS, "arrayType")).map(|t| (n, t)));
        let content = match array_type {
            Some((at, text)) => {
                let item = text.split('[').next().unwrap_or(text);
                self.type_content(&resolve_qname(at, item), at, report)
            }
            None => XmlContent::Any,
        };
        ty.children = vec![XmlElement {
            name: QName::new(None, "item"),
            property: "item".to_owned(),
            min_occurs: 0,
            max_occurs: None,
            nillable: true,
            content,
        }];
        ty.choices.clear();
    }

    /// A `simpleType` node → the simple type it restricts, lists or unites.
    fn simple_type(&mut self, node: Node<'a, 'i>, report: &mut Report) -> XmlSimple {
        if self.depth > MAX_DEPTH {
            return XmlSimple::default();
        }
        self.depth += 1;
        let out = self.simple_type_inner(node, report);
        self.depth -= 1;
        out
    }

    fn simple_type_inner(&mut self, node: Node<'a, 'i>, report: &mut Report) -> XmlSimple {
        for child in node.children().filter(Node::is_element) {
            match child.tag_name().name() {
                "restriction" => {
                    let mut simple = match child.attribute("base") {
                        Some(base) => self.simple_named(&resolve_qname(child, base), child, report),
                        None => match xsd_child(child, "simpleType") {
                            Some(inline) => self.simple_type(inline, report),
                            None => XmlSimple::default(),
                        },
                    };
                    apply_facets(child, &mut simple);
                    return simple;
                }
                "list" => {
                    let item = match child.attribute("itemType") {
                        Some(item) => self.simple_named(&resolve_qname(child, item), child, report),
                        None => match xsd_child(child, "simpleType") {
                            Some(inline) => self.simple_type(inline, report),
                            None => XmlSimple::default(),
                        },
                    };
                    return XmlSimple {
                        base: item.base,
                        list: true,
                        enumeration: item.enumeration,
                        ..XmlSimple::default()
                    };
                }
                "union" => return XmlSimple::default(),
                _ => {}
            }
        }
        XmlSimple::default()
    }

    /// The simple type named `name` (built in or defined).
    fn simple_named(&mut self, name: &QName, at: Node<'a, 'i>, report: &mut Report) -> XmlSimple {
        match self.type_content(name, at, report) {
            XmlContent::Simple(simple) => *simple,
            _ => XmlSimple::default(),
        }
    }
}

/// A built-in type of XML Schema or SOAP encoding, as content.
fn builtin(name: &QName) -> Option<XmlContent> {
    match name.namespace.as_deref() {
        Some(XSD_NS | SOAP_ENCODING_NS | SOAP12_ENCODING_NS) => {
            if name.local == "anyType" {
                return Some(XmlContent::Any);
            }
            XsdBuiltin::from_name(&name.local).map(|base| {
                XmlContent::Simple(Box::new(XmlSimple {
                    base,
                    ..XmlSimple::default()
                }))
            })
        }
        _ => None,
    }
}

/// The facets of a `restriction` applied to `simple`.
fn apply_facets(restriction: Node<'_, '_>, simple: &mut XmlSimple) {
    let mut enumeration = Vec::new();
    for facet in restriction.children().filter(Node::is_element) {
        let Some(value) = facet.attribute("value") else {
            continue;
        };
        match facet.tag_name().name() {
            "enumeration" => enumeration.push(value.to_owned()),
            "pattern" => simple.pattern = Some(value.to_owned()),
            "length" => {
                simple.min_length = value.parse().ok();
                simple.max_length = value.parse().ok();
            }
            "minLength" => simple.min_length = value.parse().ok(),
            "maxLength" => simple.max_length = value.parse().ok(),
            "minInclusive" => simple.min_inclusive = Some(value.to_owned()),
            "maxInclusive" => simple.max_inclusive = Some(value.to_owned()),
            "minExclusive" => simple.min_exclusive = Some(value.to_owned()),
            "maxExclusive" => simple.max_exclusive = Some(value.to_owned()),
            _ => {}
        }
    }
    if !enumeration.is_empty() {
        simple.enumeration = enumeration;
    }
}

/// `minOccurs` and `maxOccurs` of a particle (`None`: unbounded).
fn occurs(node: Node<'_, '_>) -> (u32, Option<u32>) {
    let min = node
        .attribute("minOccurs")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1);
    let max = match node.attribute("maxOccurs").map(str::trim) {
        Some("unbounded") => None,
        Some(v) => Some(v.parse().unwrap_or(1)),
        None => Some(1),
    };
    (min, max)
}

/// The first `xs:NAME` child of `node`.
fn xsd_child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|c| c.has_tag_name((XSD_NS, name)))
}

/// Gives each child and attribute of `ty` its JSON property: the local name; a second child
/// of the same name gets `_2`, an attribute named like a child `@name`.
fn name_properties(ty: &mut XmlComplexType) {
    let mut taken: Vec<String> = Vec::new();
    for child in &mut ty.children {
        let mut property = child.name.local.clone();
        let mut n = 2;
        while taken.contains(&property) {
            property = format!("{}_{n}", child.name.local);
            n += 1;
        }
        taken.push(property.clone());
        child.property = property;
    }
    for attribute in &mut ty.attributes {
        let local = &attribute.name.local;
        attribute.property = if taken.contains(local) || local == TEXT_PROPERTY {
            format!("@{local}")
        } else {
            local.clone()
        };
        taken.push(attribute.property.clone());
    }
}

/// `{namespace}local`, or `local` without a namespace.
pub(crate) fn display_qname(name: &QName) -> String {
    match &name.namespace {
        Some(ns) => format!("{{{ns}}}{}", name.local),
        None => name.local.clone(),
    }
}
