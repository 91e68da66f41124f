//! Swagger 2.0: parameters, bodies and responses of one operation.
//!
//! Swagger keeps the schema of a non-body parameter on the parameter itself (`type`,
//! `format`, `items`, `enum`, bounds …); these keywords are gathered into
//! [`junction_model::Parameter::schema`] and normalized like any schema, so warnings about
//! them point at the parameter's own keys.

use junction_model::{
    CollectionFormat, ParamLocation, Parameter, RequestBody, Response, UrlEncoding,
};
use serde_json::{Map, Value};

use crate::fields::{self, Object};
use crate::paths::{self, Ctx, Parts, RawParam};
use crate::ptr::Ptr;
use crate::schema::kind;
use crate::sink::Sink;

/// The keywords of a Swagger parameter (and items object) that describe its value.
const VALUE_KEYWORDS: [&str; 17] = [
    "type",
    "format",
    "items",
    "enum",
    "default",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "multipleOf",
    "x-nullable",
];

pub(crate) fn operation_parts(
    ctx: &mut Ctx<'_>,
    op: &Object,
    at: &Ptr<'_>,
    params: Vec<RawParam<'_>>,
    sink: &mut Sink,
) -> Parts {
    let consumes =
        fields::strings(op, "consumes", at, sink).unwrap_or_else(|| ctx.consumes.clone());
    let produces =
        fields::strings(op, "produces", at, sink).unwrap_or_else(|| ctx.produces.clone());
    let mut parts = Parts {
        consumes,
        produces,
        ..Parts::default()
    };
    let mut body_at: Option<String> = None;
    for raw in params {
        let location = match raw.location.as_str() {
            "body" => None,
            "formData" => Some(ParamLocation::FormData),
            "path" => Some(ParamLocation::Path),
            "query" => Some(ParamLocation::Query),
            "header" => Some(ParamLocation::Header),
            other => {
                let lower = other.to_ascii_lowercase();
                let known = match lower.as_str() {
                    "body" => Some(None),
                    "formdata" => Some(Some(ParamLocation::FormData)),
                    "path" => Some(Some(ParamLocation::Path)),
                    "query" => Some(Some(ParamLocation::Query)),
                    "header" => Some(Some(ParamLocation::Header)),
                    "cookie" => Some(Some(ParamLocation::Cookie)),
                    _ => None,
                };
                let src = Ptr::rendered(&raw.src);
                match known {
                    Some(location) => {
                        if lower != "cookie" {
                            sink.warn(
                                "invalid-parameter",
                                &src.key("in"),
                                format!(
                                    "'in: {other}' is written in the wrong case; read as '{lower}'"
                                ),
                            );
                        }
                        location
                    }
                    None => {
                        sink.warn(
                            "invalid-parameter",
                            &src.key("in"),
                            format!("'{other}' is not a parameter location (path, query, header, body, formData); ignored"),
                        );
                        continue;
                    }
                }
            }
        };
        match location {
            None => {
                if let Some(first) = &body_at {
                    sink.warn(
                        "duplicate-body",
                        &Ptr::rendered(&raw.at),
                        format!("an operation has at most one body parameter; the one at {first} is used"),
                    );
                    continue;
                }
                body_at = Some(raw.at.clone());
                parts.body = Some(body(ctx, &raw, &parts.consumes, sink));
            }
            Some(location) => parts.parameters.push(parameter(ctx, &raw, location, sink)),
        }
    }
    if parts.body.is_some()
        && parts
            .parameters
            .iter()
            .any(|p| p.location == ParamLocation::FormData)
    {
        sink.warn(
            "body-and-form",
            at,
            "an operation cannot have both a body parameter and formData parameters",
        );
    }
    parts.responses = responses(ctx, op, at, sink);
    parts
}

fn parameter(
    ctx: &mut Ctx<'_>,
    raw: &RawParam<'_>,
    location: ParamLocation,
    sink: &mut Sink,
) -> Parameter {
    let src = Ptr::rendered(&raw.src);
    let map = raw.map;
    let is_file = map
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("file"));
    if is_file && location != ParamLocation::FormData {
        sink.warn(
            "invalid-parameter",
            &src.key("type"),
            "'type: file' is only allowed for formData parameters",
        );
    }
    let schema = match map.get("schema") {
        Some(schema) if !map.contains_key("type") => {
            sink.warn(
                "schema-on-parameter",
                &src.key("schema"),
                "a non-body Swagger 2.0 parameter has 'type', not 'schema'; the schema is used",
            );
            ctx.schemas.normalize(schema, &src.key("schema"), sink)
        }
        _ => {
            let gathered: Map<String, Value> = VALUE_KEYWORDS
                .iter()
                .filter_map(|k| map.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                .collect();
            ctx.schemas.normalize(&Value::Object(gathered), &src, sink)
        }
    };
    let mut required = fields::boolean(map, "required", &src, sink).unwrap_or(false);
    if location == ParamLocation::Path && !required {
        sink.warn(
            "optional-path-param",
            &src,
            format!(
                "path parameter '{}' must be required; read as required",
                raw.name
            ),
        );
        required = true;
    }
    Parameter {
        name: raw.name.clone(),
        location,
        required,
        description: fields::string(map, "description", &src, sink),
        summary: fields::string(map, "x-ms-summary", &src, sink),
        schema,
        default: map.get("default").cloned(),
        collection_format: collection_format(map, location, &src, sink),
        url_encoding: url_encoding(map, &src, sink),
        visibility: fields::visibility(map, &src, sink),
        is_file,
        extensions: fields::extensions(map),
        pointer: raw.at.clone(),
    }
}

fn collection_format(
    map: &Object,
    location: ParamLocation,
    at: &Ptr<'_>,
    sink: &mut Sink,
) -> CollectionFormat {
    let Some(s) = fields::string(map, "collectionFormat", at, sink) else {
        return CollectionFormat::Csv;
    };
    let format = match CollectionFormat::from_name(&s) {
        Some(format) => format,
        None => {
            sink.warn(
                "invalid-parameter",
                &at.key("collectionFormat"),
                format!(
                    "'{s}' is not a collection format (csv, ssv, tsv, pipes, multi); read as csv"
                ),
            );
            return CollectionFormat::Csv;
        }
    };
    if format == CollectionFormat::Multi
        && !matches!(location, ParamLocation::Query | ParamLocation::FormData)
    {
        sink.warn(
            "invalid-parameter",
            &at.key("collectionFormat"),
            "'multi' is only valid for query and formData parameters; read as csv",
        );
        return CollectionFormat::Csv;
    }
    format
}

/// `x-ms-url-encoding`.
pub(crate) fn url_encoding(map: &Object, at: &Ptr<'_>, sink: &mut Sink) -> UrlEncoding {
    let Some(v) = map.get("x-ms-url-encoding") else {
        return UrlEncoding::Single;
    };
    match v.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("single") => UrlEncoding::Single,
        Some("double") => UrlEncoding::Double,
        _ => {
            sink.warn(
                "invalid-parameter",
                &at.key("x-ms-url-encoding"),
                format!(
                    "x-ms-url-encoding must be 'single' or 'double', found {v}; read as single"
                ),
            );
            UrlEncoding::Single
        }
    }
}

fn body(
    ctx: &mut Ctx<'_>,
    raw: &RawParam<'_>,
    consumes: &[String],
    sink: &mut Sink,
) -> RequestBody {
    let src = Ptr::rendered(&raw.src);
    let map = raw.map;
    let schema = match map.get("schema") {
        Some(s) if raw.src != raw.at => {
            ctx.schemas
                .normalize_shared(s, &src.key("schema").render(), sink)
        }
        Some(s) => ctx.schemas.normalize(s, &src.key("schema"), sink),
        None => {
            sink.warn(
                "no-schema",
                &src,
                "body parameter has no 'schema'; any body is accepted",
            );
            Value::Object(Map::new())
        }
    };
    let media_types = if consumes.is_empty() {
        vec!["application/json".to_owned()]
    } else {
        consumes.to_vec()
    };
    RequestBody {
        name: raw.name.clone(),
        required: fields::boolean(map, "required", &src, sink).unwrap_or(false),
        description: fields::string(map, "description", &src, sink),
        summary: fields::string(map, "x-ms-summary", &src, sink),
        media_types,
        schema,
        visibility: fields::visibility(map, &src, sink),
        extensions: fields::extensions(map),
        pointer: raw.at.clone(),
    }
}

fn responses(ctx: &mut Ctx<'_>, op: &Object, at: &Ptr<'_>, sink: &mut Sink) -> Vec<Response> {
    let Some(responses) = fields::object(op, "responses", at, sink) else {
        return Vec::new();
    };
    let responses_at = at.key("responses");
    let mut out = Vec::with_capacity(responses.len());
    for (status, r) in responses {
        if status.starts_with("x-") {
            continue;
        }
        let r_at = responses_at.key(status);
        paths::check_status(status, &r_at, sink);
        let Some(resolved) = fields::resolve(ctx.doc, r, r_at.render(), "response", sink) else {
            continue;
        };
        let src = Ptr::rendered(&resolved.pointer);
        let map = resolved.map;
        let shared = resolved.pointer != r_at.render();
        let schema = map.get("schema").map(|s| {
            if shared {
                ctx.schemas
                    .normalize_shared(s, &src.key("schema").render(), sink)
            } else {
                ctx.schemas.normalize(s, &src.key("schema"), sink)
            }
        });
        let headers = match map.get("headers") {
            Some(Value::Object(h)) => h.keys().cloned().collect(),
            Some(other) if !other.is_null() => {
                sink.warn(
                    "invalid-field",
                    &src.key("headers"),
                    format!(
                        "'headers' must be an object, found {}; ignored",
                        kind(other)
                    ),
                );
                Vec::new()
            }
            _ => Vec::new(),
        };
        out.push(Response {
            status: status.clone(),
            description: fields::string(map, "description", &src, sink),
            schema,
            headers,
        });
    }
    out
}
