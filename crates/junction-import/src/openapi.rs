//! OpenAPI 3.0 / 3.1: parameters, request bodies and responses of one operation.
//!
//! A request body whose media types are all forms (`application/x-www-form-urlencoded`,
//! `multipart/form-data`) becomes form-field parameters, one per property of its (resolved)
//! object schema, as Swagger's `formData` parameters would be; any other body becomes a
//! [`junction_model::RequestBody`] with the JSON media type preferred.

use junction_model::{
    CollectionFormat, ParamLocation, Parameter, RequestBody, Response, UrlEncoding,
};
use serde_json::{Map, Value};

use crate::fields::{self, Object};
use crate::paths::{self, Ctx, Parts, RawParam};
use crate::ptr::Ptr;
use crate::schema::kind;
use crate::sink::Sink;
use crate::swagger::url_encoding;

pub(crate) fn operation_parts(
    ctx: &mut Ctx<'_>,
    op: &Object,
    at: &Ptr<'_>,
    params: Vec<RawParam<'_>>,
    sink: &mut Sink,
) -> Parts {
    let mut parts = Parts::default();
    for raw in params {
        let src = Ptr::rendered(&raw.src);
        let location = match raw.location.to_ascii_lowercase().as_str() {
            "path" => ParamLocation::Path,
            "query" => ParamLocation::Query,
            "header" => ParamLocation::Header,
            "cookie" => ParamLocation::Cookie,
            _ => {
                sink.warn(
                    "invalid-parameter",
                    &src.key("in"),
                    format!(
                        "'{}' is not an OpenAPI 3 parameter location (path, query, header, cookie); ignored",
                        raw.location
                    ),
                );
                continue;
            }
        };
        parts.parameters.push(parameter(ctx, &raw, location, sink));
    }
    if let Some(rb) = op.get("requestBody") {
        let rb_at = at.key("requestBody");
        if let Some(resolved) = fields::resolve(ctx.doc, rb, rb_at.render(), "request body", sink) {
            request_body(
                ctx,
                resolved.map,
                &resolved.pointer,
                &rb_at,
                &mut parts,
                sink,
            );
        }
    }
    parts.responses = responses(ctx, op, at, &mut parts.produces, sink);
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
    let (schema, raw_schema) = match (
        map.get("schema"),
        fields::object(map, "content", &src, sink),
    ) {
        (Some(s), _) if raw.src != raw.at => (
            ctx.schemas
                .normalize_shared(s, &src.key("schema").render(), sink),
            Some(s),
        ),
        (Some(s), _) => (ctx.schemas.normalize(s, &src.key("schema"), sink), Some(s)),
        (None, Some(content)) => {
            let content_at = src.key("content");
            match content.iter().next() {
                Some((media, m)) => {
                    let m_at = content_at.key(media);
                    match m.get("schema") {
                        Some(s) => (ctx.schemas.normalize(s, &m_at.key("schema"), sink), Some(s)),
                        None => (Value::Object(Map::new()), None),
                    }
                }
                None => (Value::Object(Map::new()), None),
            }
        }
        (None, None) => {
            sink.warn(
                "no-schema",
                &src,
                "parameter has neither 'schema' nor 'content'; any value is accepted",
            );
            (Value::Object(Map::new()), None)
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
    let mut collection_format = style(map, location, &src, sink);
    let mut schema = schema;
    // An array in a format OpenAPI 3 has no style for, as `junction export` writes it: the
    // parameter's schema is the text clients send, `x-junction-array` the array it holds.
    if let Some(array) = map.get("x-junction-array").and_then(Value::as_object) {
        let at = src.key("x-junction-array");
        let format = array
            .get("collectionFormat")
            .and_then(Value::as_str)
            .and_then(CollectionFormat::from_name);
        match (format, array.get("schema")) {
            (Some(format), Some(items)) => {
                schema = ctx.schemas.normalize(items, &at.key("schema"), sink);
                collection_format = format;
            }
            _ => sink.warn(
                "invalid-parameter",
                &at,
                "x-junction-array needs a collectionFormat (csv, ssv, tsv, pipes, multi) and a schema; ignored",
            ),
        }
    }
    Parameter {
        name: raw.name.clone(),
        location,
        required,
        description: fields::string(map, "description", &src, sink),
        summary: fields::string(map, "x-ms-summary", &src, sink),
        default: raw_schema.and_then(|s| s.get("default")).cloned(),
        schema,
        collection_format,
        url_encoding: url_encoding(map, &src, sink),
        visibility: fields::visibility(map, &src, sink),
        is_file: false,
        extensions: fields::extensions(map),
        pointer: raw.at.clone(),
    }
}

/// `style` + `explode` → the collection format of an array value.
fn style(map: &Object, location: ParamLocation, at: &Ptr<'_>, sink: &mut Sink) -> CollectionFormat {
    let default_style = match location {
        ParamLocation::Query | ParamLocation::Cookie | ParamLocation::FormData => "form",
        ParamLocation::Path | ParamLocation::Header => "simple",
    };
    let style = fields::string(map, "style", at, sink).unwrap_or_else(|| default_style.to_owned());
    let explode = fields::boolean(map, "explode", at, sink).unwrap_or(style == "form");
    match style.as_str() {
        "form" if explode => CollectionFormat::Multi,
        "form" | "simple" => CollectionFormat::Csv,
        "spaceDelimited" if explode => CollectionFormat::Multi,
        "spaceDelimited" => CollectionFormat::Ssv,
        "pipeDelimited" if explode => CollectionFormat::Multi,
        "pipeDelimited" => CollectionFormat::Pipes,
        other => {
            sink.warn(
                "unsupported-style",
                &at.key("style"),
                format!("parameter style '{other}' is not supported (form, simple, spaceDelimited, pipeDelimited); read as simple"),
            );
            CollectionFormat::Csv
        }
    }
}

fn request_body(
    ctx: &mut Ctx<'_>,
    rb: &Object,
    src_pointer: &str,
    use_at: &Ptr<'_>,
    parts: &mut Parts,
    sink: &mut Sink,
) {
    let src = Ptr::rendered(src_pointer);
    let content = fields::object(rb, "content", &src, sink);
    let content_at = src.key("content");
    let keys: Vec<String> = content
        .map(|c| c.keys().cloned().collect())
        .unwrap_or_default();
    parts.consumes = keys.clone();
    let required = fields::boolean(rb, "required", &src, sink).unwrap_or(false);

    if let Some(content) = content
        && !keys.is_empty()
        && keys.iter().all(|k| paths::is_form(k))
        && let Some((media, m)) = content.iter().next()
        && let Some(fields) = form_fields(ctx, m, &content_at.key(media), sink)
    {
        parts.parameters.extend(fields);
        return;
    }

    let chosen = keys
        .iter()
        .find(|k| paths::is_json(k))
        .or_else(|| keys.first())
        .cloned();
    let schema = match (&chosen, content) {
        (Some(media), Some(content)) => match content.get(media).and_then(|m| m.get("schema")) {
            Some(s) => {
                let media_at = content_at.key(media);
                let s_at = media_at.key("schema");
                if src_pointer != use_at.render() {
                    ctx.schemas.normalize_shared(s, &s_at.render(), sink)
                } else {
                    ctx.schemas.normalize(s, &s_at, sink)
                }
            }
            None => Value::Object(Map::new()),
        },
        _ => {
            sink.warn(
                "no-schema",
                &src,
                "request body has no 'content'; any body is accepted",
            );
            Value::Object(Map::new())
        }
    };
    let mut media_types: Vec<String> = chosen.iter().cloned().collect();
    media_types.extend(keys.into_iter().filter(|k| Some(k) != chosen.as_ref()));
    if media_types.is_empty() {
        media_types.push("application/json".into());
    }
    let name = match rb
        .get("x-bodyName")
        .or_else(|| rb.get("x-codegen-request-body-name"))
    {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => "body".into(),
    };
    parts.body = Some(RequestBody {
        name,
        required,
        description: fields::string(rb, "description", &src, sink),
        summary: fields::string(rb, "x-ms-summary", &src, sink),
        media_types,
        schema,
        visibility: fields::visibility(rb, &src, sink),
        extensions: fields::extensions(rb),
        pointer: use_at.render(),
    });
}

/// The properties of a form body's object schema as form-field parameters; `None` (with a
/// warning) when the schema has no properties to read.
fn form_fields(
    ctx: &mut Ctx<'_>,
    media: &Value,
    media_at: &Ptr<'_>,
    sink: &mut Sink,
) -> Option<Vec<Parameter>> {
    let schema_at = media_at.key("schema");
    let schema = media.get("schema")?;
    let resolved = fields::resolve(ctx.doc, schema, schema_at.render(), "form schema", sink)?;
    let src = Ptr::rendered(&resolved.pointer);
    let Some(Value::Object(props)) = resolved.map.get("properties") else {
        sink.warn(
            "unsupported-form-schema",
            &src,
            "a form body needs an object schema with 'properties'; read as an opaque body",
        );
        return None;
    };
    let props_at = src.key("properties");
    let required: Vec<&str> = match resolved.map.get("required") {
        Some(Value::Array(r)) => r.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let encoding = media.get("encoding").and_then(Value::as_object);
    let mut out = Vec::with_capacity(props.len());
    for (name, prop) in props {
        let at = props_at.key(name);
        let normalized = ctx.schemas.normalize(prop, &at, sink);
        // Look through a `$ref` for the description and the binary format.
        let described = match prop.get("$ref") {
            Some(_) => {
                fields::resolve(ctx.doc, prop, at.render(), "form field", sink).map(|r| r.map)
            }
            None => prop.as_object(),
        };
        let empty = Map::new();
        let obj = described.unwrap_or(&empty);
        let is_binary = |s: &Object| {
            s.get("format").and_then(Value::as_str) == Some("binary")
                || (s.contains_key("contentMediaType") && !s.contains_key("contentEncoding"))
        };
        let is_file = is_binary(obj)
            || obj
                .get("items")
                .and_then(Value::as_object)
                .is_some_and(is_binary);
        let collection_format = match encoding
            .and_then(|e| e.get(name))
            .and_then(Value::as_object)
        {
            Some(enc) => style(
                enc,
                ParamLocation::FormData,
                &media_at.key("encoding").key(name),
                sink,
            ),
            None => CollectionFormat::Multi,
        };
        if !prop.is_object() && !prop.is_boolean() {
            sink.warn(
                "invalid-schema",
                &at,
                format!(
                    "a form field schema must be an object, found {}",
                    kind(prop)
                ),
            );
        }
        out.push(Parameter {
            name: name.clone(),
            location: ParamLocation::FormData,
            required: required.contains(&name.as_str()),
            description: obj
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_owned),
            summary: obj
                .get("x-ms-summary")
                .and_then(Value::as_str)
                .map(str::to_owned),
            default: obj.get("default").cloned(),
            schema: normalized,
            collection_format,
            url_encoding: UrlEncoding::Single,
            visibility: fields::visibility(obj, &at, sink),
            is_file,
            extensions: fields::extensions(obj),
            pointer: at.render(),
        });
    }
    Some(out)
}

fn responses(
    ctx: &mut Ctx<'_>,
    op: &Object,
    at: &Ptr<'_>,
    produces: &mut Vec<String>,
    sink: &mut Sink,
) -> Vec<Response> {
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
        let mut schema = None;
        if let Some(content) = fields::object(map, "content", &src, sink) {
            for media in content.keys() {
                if !produces.contains(media) {
                    produces.push(media.clone());
                }
            }
            let chosen = content
                .keys()
                .find(|k| paths::is_json(k))
                .or_else(|| content.keys().next());
            if let Some(media) = chosen
                && let Some(s) = content.get(media).and_then(|m| m.get("schema"))
            {
                let content_at = src.key("content");
                let media_at = content_at.key(media);
                let s_at = media_at.key("schema");
                schema = Some(if resolved.pointer != r_at.render() {
                    ctx.schemas.normalize_shared(s, &s_at.render(), sink)
                } else {
                    ctx.schemas.normalize(s, &s_at, sink)
                });
            }
        }
        let headers = match map.get("headers") {
            Some(Value::Object(h)) => h.keys().cloned().collect(),
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
