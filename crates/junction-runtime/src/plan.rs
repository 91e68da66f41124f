//! Compile: one operation of the model turned into the plan every request of it follows.
//!
//! Everything that can be decided without a request is decided here: how each parameter is
//! read and coerced, its compiled validator and its default, the upstream path as literal
//! pieces and parameter slots, how the body travels, and the credentials. Requests only read
//! these plans.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use jsonschema::Validator;
use junction_model::{
    CollectionFormat, Connector, Method, Operation, ParamLocation, UrlEncoding, Visibility,
};
use serde_json::Value;

use crate::auth::AuthPlan;
use crate::encode;
use crate::error::{ErrorKind, InputLocation};
use crate::policy::PolicyPlan;
use crate::route::{self, Piece};
use crate::schema::SchemaCompiler;

/// The JSON type a raw string is coerced to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar {
    String,
    Integer,
    Number,
    Boolean,
    /// No declared type: kept as a string.
    Any,
}

/// The shape of a parameter value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Scalar(Scalar),
    Array(Scalar),
    /// An object, written as JSON text.
    Object,
}

/// How one parameter is bound and sent.
#[derive(Debug)]
pub(crate) struct ParamPlan {
    pub name: String,
    pub location: ParamLocation,
    pub input: InputLocation,
    pub required: bool,
    pub shape: Shape,
    pub validator: Option<Validator>,
    pub default: Option<Value>,
    pub collection: CollectionFormat,
    pub double_encode: bool,
    pub is_file: bool,
    /// Header params: the name, checked at load. `None` when it is not a valid header name.
    pub header: Option<HeaderName>,
    /// Header params with a default: the default as a header value, or why it is not one.
    pub default_header: Option<Result<HeaderValue, String>>,
}

/// One piece of the upstream path.
#[derive(Debug)]
pub(crate) enum UpstreamPiece {
    /// Already encoded.
    Literal(String),
    /// Index into [`OperationPlan::params`].
    Param(usize),
}

/// How the request body travels.
#[derive(Debug)]
pub(crate) enum BodyPlan {
    /// The operation declares no body: a client body is not forwarded.
    None,
    Json(JsonBody),
    /// Bytes of another media type, streamed through unread.
    Raw {
        required: bool,
        default_type: Option<HeaderValue>,
    },
    /// Form fields (the FormData params), sent urlencoded or as multipart.
    Form {
        multipart: bool,
    },
}

#[derive(Debug)]
pub(crate) struct JsonBody {
    pub required: bool,
    pub validator: Option<Validator>,
    /// Properties with `x-ms-visibility: internal` and a default, by property path.
    pub defaults: Vec<(Vec<String>, Value)>,
    /// Content-Type sent upstream when the client sent none.
    pub content_type: HeaderValue,
    /// Declared media types that are not JSON; such bodies stream through unread.
    pub other_media: Vec<String>,
}

/// The compiled form of one operation.
#[derive(Debug)]
pub(crate) struct OperationPlan {
    pub id: String,
    pub method: Method,
    pub path: String,
    pub summary: Option<String>,
    pub params: Vec<ParamPlan>,
    /// For each parameter the route matcher captures, its index in `params`.
    pub path_params: Vec<usize>,
    /// Upstream path segments, each a run of pieces.
    pub segments: Vec<Vec<UpstreamPiece>>,
    pub body: BodyPlan,
    pub auth: AuthPlan,
    /// Whether the JSON request body is parsed for the policy stage.
    pub read_json: bool,
    /// Policies and transforms around the upstream call; `None` (the common case) keeps
    /// the request path free of any policy work.
    pub policies: Option<Box<PolicyPlan>>,
    /// Why the operation cannot be served at all (custom code, a broken policy).
    pub refusal: Option<Refusal>,
    /// The response cache policy; `None` (the default) never touches the cache.
    pub cache: Option<Box<crate::cache::CachePolicy>>,
    /// A header parameter `Content-Type` (its index in `params`): it declares the body's
    /// media type, as Power Platform sends it, whatever `consumes` says.
    pub content_type_param: Option<usize>,
    /// Whether the request may be sent again (its method is idempotent, or the
    /// configuration says the operation is `idempotent` or `read_only`).
    pub idempotent: bool,
    /// How the operation talks SOAP, for operations imported from a WSDL.
    pub soap: Option<Box<crate::upstream::soap::SoapPlan>>,
    /// A trigger's `pollingtrigger` template: what its answers fire and where it polls next.
    pub polling: Option<Arc<junction_policy::Policy>>,
    /// A webhook trigger's notification schema (`x-ms-notification-content`).
    pub notification: Option<Box<Validator>>,
}

/// An operation the gateway refuses to call, and why.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub kind: ErrorKind,
    pub message: Arc<str>,
}

/// A finding while compiling, turned into a diagnostic by the caller.
pub(crate) struct Note {
    pub pointer: String,
    pub code: &'static str,
    pub message: String,
}

pub(crate) fn compile_operation(
    connector: &Connector,
    op: &Operation,
    template: &[Vec<Piece>],
    schemas: &SchemaCompiler,
    auth: AuthPlan,
    notes: &mut Vec<Note>,
) -> OperationPlan {
    let mut params: Vec<ParamPlan> = op
        .parameters
        .iter()
        .map(|p| {
            let pointer = p.pointer.clone();
            let shape = shape_of(connector, &p.schema);
            let validator = match schemas.compile(&p.schema, &["type"]) {
                Ok(v) => v,
                Err(message) => {
                    notes.push(Note {
                        pointer: pointer.clone(),
                        code: "schema-not-validated",
                        message: format!(
                            "parameter '{}' of operation '{}' will not be validated: its schema does not compile: {message}",
                            p.name, op.id
                        ),
                    });
                    None
                }
            };
            let (header, default_header) = if p.location == ParamLocation::Header {
                let header = HeaderName::from_bytes(p.name.as_bytes()).ok();
                if header.is_none() {
                    notes.push(Note {
                        pointer: pointer.clone(),
                        code: "invalid-header-name",
                        message: format!(
                            "header parameter '{}' of operation '{}' is not a valid header name; it is never sent",
                            p.name, op.id
                        ),
                    });
                }
                let default_header = p.default.as_ref().map(|d| {
                    // Surrounding whitespace (a stray trailing CR is common in published
                    // definitions) is not part of a field value (RFC 9110 §5.5).
                    let text = value_text(d);
                    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
                    HeaderValue::from_str(text).map_err(|_| {
                        let message = format!(
                            "the default of header parameter '{}' of operation '{}' is not a \
                             valid header value (CR, LF or another control character)",
                            p.name, op.id
                        );
                        notes.push(Note {
                            pointer: pointer.clone(),
                            code: "invalid-header-default",
                            message: message.clone(),
                        });
                        message
                    })
                });
                (header, default_header)
            } else {
                (None, None)
            };
            ParamPlan {
                name: p.name.clone(),
                location: p.location,
                input: input_location(p.location),
                required: p.required || p.location == ParamLocation::Path,
                shape,
                validator,
                default: p.default.clone(),
                collection: p.collection_format,
                double_encode: p.url_encoding == UrlEncoding::Double,
                is_file: p.is_file,
                header,
                default_header,
            }
        })
        .collect();

    // Path parameters, in the order the matcher captures them.
    let mut path_params = Vec::new();
    for name in route::template_params(template) {
        let found = params
            .iter()
            .position(|p| p.location == ParamLocation::Path && p.name == name)
            .or_else(|| {
                params.iter().position(|p| {
                    p.location == ParamLocation::Path && p.name.eq_ignore_ascii_case(name)
                })
            });
        let index = match found {
            Some(index) => index,
            None => {
                notes.push(Note {
                    pointer: op.pointer.clone(),
                    code: "undeclared-path-parameter",
                    message: format!(
                        "path '{}' of operation '{}' uses '{{{name}}}', which no parameter declares; it is passed as a string",
                        op.path, op.id
                    ),
                });
                params.push(ParamPlan {
                    name: name.to_owned(),
                    location: ParamLocation::Path,
                    input: InputLocation::Path,
                    required: true,
                    shape: Shape::Scalar(Scalar::String),
                    validator: None,
                    default: None,
                    collection: CollectionFormat::Csv,
                    double_encode: false,
                    is_file: false,
                    header: None,
                    default_header: None,
                });
                params.len() - 1
            }
        };
        path_params.push(index);
    }

    let mut next_capture = path_params.iter();
    // A SOAP operation is routed by its name and sent to its port's address.
    let soap_path = op.soap.as_ref().map(|soap| {
        let path = soap.address_path();
        let path = path.split(['?', '#']).next().unwrap_or(path);
        path.trim_start_matches('/')
            .split('/')
            .map(|segment| vec![Piece::Literal(segment.to_owned())])
            .collect::<Vec<_>>()
    });
    let segments = soap_path
        .as_deref()
        .unwrap_or(template)
        .iter()
        .map(|segment| {
            segment
                .iter()
                .map(|piece| match piece {
                    Piece::Literal(literal) => {
                        let mut encoded = String::new();
                        encode::push_path_literal(&mut encoded, literal);
                        UpstreamPiece::Literal(encoded)
                    }
                    Piece::Param(_) => {
                        UpstreamPiece::Param(next_capture.next().copied().unwrap_or(0))
                    }
                })
                .collect()
        })
        .collect();

    let body = body_plan(connector, op, schemas, &params, notes);

    let content_type_param = params.iter().position(|p| {
        p.location == ParamLocation::Header && p.name.eq_ignore_ascii_case("content-type")
    });
    OperationPlan {
        id: op.id.clone(),
        method: op.method,
        path: op.path.clone(),
        summary: op.summary.clone(),
        content_type_param,
        params,
        path_params,
        segments,
        body,
        auth,
        read_json: op.soap.is_some(),
        policies: None,
        refusal: None,
        cache: None,
        idempotent: op.method.is_idempotent(),
        soap: None,
        polling: None,
        notification: None,
    }
}

fn input_location(location: ParamLocation) -> InputLocation {
    match location {
        ParamLocation::Path => InputLocation::Path,
        ParamLocation::Query => InputLocation::Query,
        ParamLocation::Header => InputLocation::Header,
        ParamLocation::Cookie => InputLocation::Cookie,
        ParamLocation::FormData => InputLocation::FormData,
    }
}

/// The first non-null `type` of a schema (following `$ref`).
fn type_of<'a>(connector: &'a Connector, schema: &'a Value) -> (Option<&'a str>, &'a Value) {
    let schema = connector.resolve(schema).unwrap_or(schema);
    let ty = match schema.get("type") {
        Some(Value::String(t)) => Some(t.as_str()),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null"),
        _ => None,
    };
    (ty, schema)
}

fn scalar(ty: Option<&str>) -> Scalar {
    match ty {
        Some("integer") => Scalar::Integer,
        Some("number") => Scalar::Number,
        Some("boolean") => Scalar::Boolean,
        Some("string") | Some("file") => Scalar::String,
        _ => Scalar::Any,
    }
}

pub(crate) fn shape_of(connector: &Connector, schema: &Value) -> Shape {
    let (ty, schema) = type_of(connector, schema);
    match ty {
        Some("array") => {
            let items = schema.get("items").map(|items| type_of(connector, items).0);
            Shape::Array(scalar(items.flatten()))
        }
        None if schema.get("items").is_some() => Shape::Array(Scalar::Any),
        Some("object") => Shape::Object,
        other => Shape::Scalar(scalar(other)),
    }
}

/// Whether a media type (essence, lower-case) is JSON.
pub(crate) fn is_json(essence: &str) -> bool {
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// The `charset` parameter of a Content-Type value, unquoted.
pub(crate) fn charset(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// The lower-cased `type/subtype` of a Content-Type value.
pub(crate) fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn body_plan(
    connector: &Connector,
    op: &Operation,
    schemas: &SchemaCompiler,
    params: &[ParamPlan],
    notes: &mut Vec<Note>,
) -> BodyPlan {
    if params.iter().any(|p| p.location == ParamLocation::FormData) {
        return BodyPlan::Form {
            multipart: op.is_multipart(),
        };
    }
    let Some(body) = &op.body else {
        return BodyPlan::None;
    };
    let declared: Vec<String> = if body.media_types.is_empty() {
        op.consumes.iter().map(|m| essence(m)).collect()
    } else {
        body.media_types.iter().map(|m| essence(m)).collect()
    };
    let json_type = declared.iter().find(|m| is_json(m));
    if !declared.is_empty() && json_type.is_none() {
        return BodyPlan::Raw {
            required: body.required,
            default_type: declared.first().and_then(|m| HeaderValue::from_str(m).ok()),
        };
    }
    let validator = match schemas.compile(&body.schema, &[]) {
        Ok(v) => v,
        Err(message) => {
            notes.push(Note {
                pointer: body.pointer.clone(),
                code: "schema-not-validated",
                message: format!(
                    "the body of operation '{}' will not be validated: its schema does not compile: {message}",
                    op.id
                ),
            });
            None
        }
    };
    let mut defaults = Vec::new();
    collect_defaults(connector, &body.schema, &mut Vec::new(), &mut defaults, 0);
    let content_type = json_type
        .and_then(|m| HeaderValue::from_str(m).ok())
        .unwrap_or(HeaderValue::from_static("application/json"));
    BodyPlan::Json(JsonBody {
        required: body.required,
        validator,
        defaults,
        content_type,
        other_media: declared.into_iter().filter(|m| !is_json(m)).collect(),
    })
}

/// Finds body properties that are `x-ms-visibility: internal`, required and have a default
/// (Power Platform fills those in; an optional internal property is ignored).
fn collect_defaults(
    connector: &Connector,
    schema: &Value,
    path: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, Value)>,
    depth: usize,
) {
    if depth > 8 {
        return;
    }
    let schema = connector.resolve(schema).unwrap_or(schema);
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, property) in properties {
        let resolved = connector.resolve(property).unwrap_or(property);
        let internal = [property, resolved].iter().any(|s| {
            s.get("x-ms-visibility")
                .and_then(Value::as_str)
                .is_some_and(|v| Visibility::parse(v) == Visibility::Internal)
        });
        let default = property.get("default").or_else(|| resolved.get("default"));
        path.push(name.clone());
        match default {
            Some(default) if internal && required.contains(&name.as_str()) => {
                out.push((path.clone(), default.clone()));
            }
            Some(_) if internal => {}
            _ => collect_defaults(connector, resolved, path, out, depth + 1),
        }
        path.pop();
    }
}

/// The text a JSON value is sent as in a path, query, header or form field.
pub(crate) fn value_text(value: &Value) -> std::borrow::Cow<'_, str> {
    match value {
        Value::String(s) => std::borrow::Cow::Borrowed(s),
        Value::Null => std::borrow::Cow::Borrowed(""),
        Value::Bool(true) => std::borrow::Cow::Borrowed("true"),
        Value::Bool(false) => std::borrow::Cow::Borrowed("false"),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}
