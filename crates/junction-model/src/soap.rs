//! SOAP operations: what a WSDL's binding and schema say about turning a JSON call into an
//! envelope and its XML answer back into JSON.
//!
//! The importer (`junction-import`'s `wsdl` module) reads a WSDL 1.1 and its XML Schemas
//! into these values; the runtime's SOAP codec writes and reads envelopes from them alone.
//! The XML side of a message is a tree of [`XmlElement`]s whose complex types live in one
//! table per connector ([`SoapService::types`], referred to by index), so recursive types
//! are plain indices. The JSON side is derived from the same tree (see `docs/soap.md`):
//!
//! - an element is a property named by its local name; `maxOccurs > 1` makes it an array
//!   always, `xsi:nil` is `null`;
//! - an attribute is a property named by its local name (`@name` when a child element has
//!   the same name);
//! - the text of an element with simple content is the property [`TEXT_PROPERTY`];
//! - `choice` alternatives are optional properties of which at most one may be given.

use serde::Serialize;

/// The JSON property holding the text of an element with simple content and attributes.
pub const TEXT_PROPERTY: &str = "_value";

/// The namespace of XML Schema instance attributes (`xsi:nil`, `xsi:type`).
pub const XSI_NAMESPACE: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// The SOAP version of a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SoapVersion {
    #[serde(rename = "1.1")]
    Soap11,
    #[serde(rename = "1.2")]
    Soap12,
}

impl SoapVersion {
    /// The envelope's namespace.
    pub fn envelope_namespace(self) -> &'static str {
        match self {
            SoapVersion::Soap11 => "http://schemas.xmlsoap.org/soap/envelope/",
            SoapVersion::Soap12 => "http://www.w3.org/2003/05/soap-envelope",
        }
    }

    /// The media type of a request envelope (SOAP 1.2 adds the action as a parameter).
    pub fn media_type(self) -> &'static str {
        match self {
            SoapVersion::Soap11 => "text/xml",
            SoapVersion::Soap12 => "application/soap+xml",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SoapVersion::Soap11 => "1.1",
            SoapVersion::Soap12 => "1.2",
        }
    }
}

/// `style` of a SOAP binding operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SoapStyle {
    /// The body holds the message parts' elements (wrapped: one element named like the
    /// operation).
    Document,
    /// The body holds one element named like the operation, with one child per part.
    Rpc,
}

/// A namespace-qualified XML name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct QName {
    /// `None`: no namespace.
    pub namespace: Option<String>,
    pub local: String,
}

impl QName {
    pub fn new(namespace: Option<&str>, local: &str) -> QName {
        QName {
            namespace: namespace.filter(|n| !n.is_empty()).map(str::to_owned),
            local: local.to_owned(),
        }
    }
}

/// The SOAP facts of a connector imported from a WSDL: its complex types.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SoapService {
    /// Every complex type the operations use, referred to by [`XmlContent::Complex`].
    pub types: Vec<XmlComplexType>,
}

impl SoapService {
    /// The complex type at `index` (importers only make valid indices).
    pub fn complex(&self, index: usize) -> Option<&XmlComplexType> {
        self.types.get(index)
    }
}

/// How one operation talks SOAP.
#[derive(Debug, Clone, Serialize)]
pub struct SoapOperation {
    /// The WSDL service and port the operation was imported from.
    pub service: String,
    pub port: String,
    /// The WSDL operation's own name (the gateway's operation id may carry the port's name
    /// in front when two ports have the same operation).
    pub name: String,
    pub version: SoapVersion,
    /// `soapAction` (SOAP 1.1 header, SOAP 1.2 `action` parameter); empty when none.
    pub action: String,
    pub style: SoapStyle,
    /// `use="encoded"`: written as literal, best effort.
    pub encoded: bool,
    /// The port's `soap:address`.
    pub address: String,
    pub input: SoapMessage,
    /// `None` for a one-way operation (no answer is expected: the gateway answers `202`).
    pub output: Option<SoapMessage>,
}

impl SoapOperation {
    /// The path and query of the address (what follows its host), `/` when it has none.
    pub fn address_path(&self) -> &str {
        let address = self.address.as_str();
        let rest = address.split_once("://").map_or(address, |(_, rest)| rest);
        match rest.find('/') {
            Some(at) => rest.get(at..).unwrap_or("/"),
            None => "/",
        }
    }
}

/// The body of one message: an optional element around its content (the rpc operation
/// element, or the one element of a wrapped document message) and the content, a complex
/// type whose JSON form is the client's JSON.
#[derive(Debug, Clone, Serialize)]
pub struct SoapMessage {
    /// The element written around the content; `None` when the parts' elements are the
    /// body's children.
    pub wrapper: Option<QName>,
    /// The content: index into [`SoapService::types`].
    pub content: usize,
}

/// A complex type: attributes, child elements in order, and text for simple content.
#[derive(Debug, Clone, Default, Serialize)]
pub struct XmlComplexType {
    /// The type's name, when it has one (for messages and the JSON Schema's definitions).
    pub name: Option<QName>,
    pub attributes: Vec<XmlAttribute>,
    /// The children in schema order (`sequence`s flattened, `all` and `choice` members
    /// made optional).
    pub children: Vec<XmlElement>,
    /// Groups of children (indices) of which at most one may appear (`choice`).
    pub choices: Vec<Vec<usize>>,
    /// The type of the element's text (`simpleContent`), if it has one.
    pub text: Option<XmlSimple>,
    /// Other elements may appear (`xs:any`): kept, as JSON built from their XML.
    pub open: bool,
}

impl XmlComplexType {
    /// Whether the type is only text (simple content without attributes): its JSON is the
    /// text's value itself, not an object.
    pub fn is_text_only(&self) -> bool {
        self.text.is_some() && self.attributes.is_empty() && self.children.is_empty() && !self.open
    }
}

/// An element in a complex type or a message.
#[derive(Debug, Clone, Serialize)]
pub struct XmlElement {
    pub name: QName,
    /// The JSON property (the local name, unless it would collide).
    pub property: String,
    pub min_occurs: u32,
    /// `None`: unbounded.
    pub max_occurs: Option<u32>,
    pub nillable: bool,
    pub content: XmlContent,
}

impl XmlElement {
    /// Whether the element may repeat: its JSON is an array.
    pub fn is_array(&self) -> bool {
        self.max_occurs.is_none_or(|max| max > 1)
    }
}

/// What an element holds.
#[derive(Debug, Clone, Serialize)]
pub enum XmlContent {
    Simple(Box<XmlSimple>),
    /// Index into [`SoapService::types`].
    Complex(usize),
    /// Any XML (`xs:anyType`): JSON built from what arrives; sent from a JSON value.
    Any,
}

/// An attribute.
#[derive(Debug, Clone, Serialize)]
pub struct XmlAttribute {
    pub name: QName,
    pub property: String,
    pub required: bool,
    pub simple: XmlSimple,
}

/// A simple type: a built-in base and its facets.
#[derive(Debug, Clone, Default, Serialize)]
pub struct XmlSimple {
    pub base: XsdBuiltin,
    /// `xs:list`: space-separated items, a JSON array.
    pub list: bool,
    pub enumeration: Vec<String>,
    pub pattern: Option<String>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    /// Bounds as written in the schema (numbers for numeric types).
    pub min_inclusive: Option<String>,
    pub max_inclusive: Option<String>,
    pub min_exclusive: Option<String>,
    pub max_exclusive: Option<String>,
}

/// The XML Schema built-in types, as far as JSON tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum XsdBuiltin {
    #[default]
    String,
    Boolean,
    /// An integer type with its bounds (`int`, `unsignedShort`, `integer` …).
    Integer {
        min: Option<i128>,
        max: Option<i128>,
    },
    Decimal,
    Float,
    Double,
    Date,
    DateTime,
    Time,
    Duration,
    Base64Binary,
    HexBinary,
    AnyUri,
}

impl XsdBuiltin {
    /// The built-in type named `local` in the XML Schema namespace, if any. Types JSON
    /// cannot tell from a string (`token`, `NCName`, `gYear` …) are strings.
    pub fn from_name(local: &str) -> Option<XsdBuiltin> {
        let integer = |min: Option<i128>, max: Option<i128>| XsdBuiltin::Integer { min, max };
        Some(match local {
            "string" | "normalizedString" | "token" | "language" | "Name" | "NCName" | "ID"
            | "IDREF" | "IDREFS" | "ENTITY" | "ENTITIES" | "NMTOKEN" | "NMTOKENS" | "QName"
            | "NOTATION" | "gYear" | "gYearMonth" | "gMonth" | "gMonthDay" | "gDay"
            | "anySimpleType" => XsdBuiltin::String,
            "boolean" => XsdBuiltin::Boolean,
            "decimal" => XsdBuiltin::Decimal,
            "float" => XsdBuiltin::Float,
            "double" => XsdBuiltin::Double,
            "integer" => integer(None, None),
            "long" => integer(Some(i64::MIN.into()), Some(i64::MAX.into())),
            "int" => integer(Some(i32::MIN.into()), Some(i32::MAX.into())),
            "short" => integer(Some(i16::MIN.into()), Some(i16::MAX.into())),
            "byte" => integer(Some(i8::MIN.into()), Some(i8::MAX.into())),
            "nonNegativeInteger" => integer(Some(0), None),
            "positiveInteger" => integer(Some(1), None),
            "nonPositiveInteger" => integer(None, Some(0)),
            "negativeInteger" => integer(None, Some(-1)),
            "unsignedLong" => integer(Some(0), Some(u64::MAX.into())),
            "unsignedInt" => integer(Some(0), Some(u32::MAX.into())),
            "unsignedShort" => integer(Some(0), Some(u16::MAX.into())),
            "unsignedByte" => integer(Some(0), Some(u8::MAX.into())),
            "date" => XsdBuiltin::Date,
            "dateTime" | "dateTimeStamp" => XsdBuiltin::DateTime,
            "time" => XsdBuiltin::Time,
            "duration" | "dayTimeDuration" | "yearMonthDuration" => XsdBuiltin::Duration,
            "base64Binary" => XsdBuiltin::Base64Binary,
            "hexBinary" => XsdBuiltin::HexBinary,
            "anyURI" => XsdBuiltin::AnyUri,
            _ => return None,
        })
    }
}
