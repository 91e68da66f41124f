//! The OpenAPI 3.1 document of the served surface.

use junction_model::{CollectionFormat, Connector, Operation, ParamLocation, Response};
use junction_runtime::view::ViewSummary;
use serde_json::{Map, Value, json};

use crate::schema::rename_refs;
use crate::{
    CLIENT_KEY_HEADER, CLIENT_KEY_PARAMETER, DEFAULT_ANSWER, Options, Surface, client_parameters,
    gateway_answers, humanize, problem_schema, view_takes_query, visibility,
};

const SCHEMAS: &str = "#/components/schemas/";

/// Header parameters OpenAPI says to ignore (they are set by other means).
const RESERVED_HEADERS: [&str; 3] = ["accept", "content-type", "authorization"];

/// The OpenAPI 3.1 document.
pub fn openapi(surface: &Surface<'_>, options: &Options) -> Value {
    let client_keys = options.client_keys;
    let (mut paths, mut schemas) = crate::connector_paths(
        surface,
        SCHEMAS,
        |schema| schema,
        |connector, op| operation(connector, op, client_keys),
    );
    for view in &surface.views {
        paths.insert(
            format!("/views/{}", view.name),
            view_item(view, client_keys),
        );
    }
    schemas.insert("Problem".into(), problem_schema());
    let server = options.base_url.as_str().trim_end_matches('/').to_owned();
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": options.title,
            "description": "The connectors and views of a Junction gateway, as the gateway serves them.",
            "version": "1.0"
        },
        "servers": [{"url": server}],
        "paths": paths,
        "components": {"schemas": schemas}
    });
    if client_keys {
        document["components"]["securitySchemes"] = json!({
            CLIENT_KEY_PARAMETER: {"type": "apiKey", "in": "header", "name": CLIENT_KEY_HEADER,
                "description": "The Junction client key (also accepted as `Authorization: Bearer KEY`)"}
        });
        document["security"] = json!([{CLIENT_KEY_PARAMETER: []}]);
    }
    document
}

/// A view's path item: a `POST` taking its inputs as a JSON object, and, when every input
/// fits in a query string, a `GET` taking them as query parameters (the gateway serves both).
fn view_item(view: &ViewSummary, client_keys: bool) -> Value {
    let output = view
        .output
        .clone()
        .unwrap_or_else(|| json!({"type": "object"}));
    let answers = |takes_body: bool| {
        let mut responses = Map::new();
        responses.insert(
            "200".into(),
            json!({"description": "The view's result", "content": {"application/json": {"schema": output}}}),
        );
        add_gateway_answers(&mut responses, takes_body, client_keys);
        Value::Object(responses)
    };
    let mut item = Map::new();
    if view_takes_query(view) {
        let parameters: Vec<Value> = view.inputs.iter().map(query_input).collect();
        let mut get = crate::view_head(view);
        get.insert("parameters".into(), Value::Array(parameters));
        get.insert("responses".into(), answers(false));
        item.insert("get".into(), Value::Object(get));
    }
    let properties: Map<String, Value> = view
        .inputs
        .iter()
        .map(|i| (i.name.clone(), i.schema.clone()))
        .collect();
    let required: Vec<&str> = view
        .inputs
        .iter()
        .filter(|i| i.required)
        .map(|i| i.name.as_str())
        .collect();
    let mut post = crate::view_head(view);
    if item.contains_key("get") {
        // Both methods: the POST gets an id of its own.
        post.insert(
            "operationId".into(),
            json!(format!("{}_body", crate::view_operation_id(&view.name))),
        );
    }
    post.insert(
        "requestBody".into(),
        json!({"required": true, "content": {"application/json": {"schema": {
            "type": "object", "properties": properties, "required": required,
            "additionalProperties": false
        }}}}),
    );
    post.insert("responses".into(), answers(true));
    item.insert("post".into(), Value::Object(post));
    Value::Object(item)
}

/// A view input as a query parameter.
fn query_input(input: &junction_runtime::view::InputSummary) -> Value {
    let mut p = json!({
        "name": input.name,
        "in": "query",
        "required": input.required,
        "schema": input.schema,
        "x-ms-summary": input.summary.clone().unwrap_or_else(|| humanize(&input.name)),
    });
    if let Value::Object(map) = &mut p {
        if let Some(d) = input.schema.get("description") {
            map.insert("description".into(), d.clone());
        }
        if input.schema.get("type").and_then(Value::as_str) == Some("array") {
            map.insert("style".into(), json!("form"));
            map.insert("explode".into(), json!(false));
        }
        if let Some(v) = &input.visibility {
            map.insert("x-ms-visibility".into(), json!(v));
        }
    }
    p
}

/// The problem answers of the gateway, beside what the backend declares: a status the
/// backend declares too gains the problem media type; `default` covers the rest.
fn add_gateway_answers(responses: &mut Map<String, Value>, takes_body: bool, client_keys: bool) {
    let problem = json!({"schema": {"$ref": format!("{SCHEMAS}Problem")}});
    for answer in gateway_answers(takes_body, client_keys) {
        let entry = responses
            .entry(answer.status)
            .or_insert_with(|| json!({"description": answer.description}));
        if let Value::Object(entry) = entry {
            let content = entry.entry("content").or_insert_with(|| json!({}));
            if let Value::Object(content) = content {
                content.insert(crate::PROBLEM_JSON.into(), problem.clone());
            }
        }
    }
    responses.entry("default").or_insert_with(|| {
        json!({"description": DEFAULT_ANSWER, "content": {crate::PROBLEM_JSON: problem, "*/*": {}}})
    });
}

fn operation(connector: &Connector, op: &Operation, client_keys: bool) -> Value {
    let mut parameters = Vec::new();
    let mut form = Map::new();
    let mut form_required = Vec::new();
    for p in client_parameters(op) {
        let schema = rename_refs(&p.schema, connector, SCHEMAS);
        let schema = match (&p.default, schema) {
            (Some(default), Value::Object(mut map)) => {
                map.insert("default".into(), default.clone());
                Value::Object(map)
            }
            (_, schema) => schema,
        };
        if p.location == ParamLocation::FormData {
            let schema = if p.is_file {
                json!({"type": "string", "format": "binary"})
            } else {
                schema
            };
            form.insert(p.name.clone(), schema);
            if p.required {
                form_required.push(json!(p.name));
            }
            continue;
        }
        if p.location == ParamLocation::Header
            && RESERVED_HEADERS.contains(&p.name.to_ascii_lowercase().as_str())
        {
            continue;
        }
        let mut out = Map::new();
        out.insert("name".into(), json!(p.name));
        out.insert("in".into(), json!(p.location.as_str()));
        out.insert(
            "required".into(),
            json!(p.required || p.location == ParamLocation::Path),
        );
        if let Some(d) = &p.description {
            out.insert("description".into(), json!(d));
        }
        let is_array = connector
            .resolve(&p.schema)
            .and_then(|s| s.get("type"))
            .and_then(Value::as_str)
            == Some("array");
        let mut schema = schema;
        if is_array {
            match style(p.location, p.collection_format) {
                Some((style, explode)) => {
                    out.insert("style".into(), json!(style));
                    out.insert("explode".into(), json!(explode));
                }
                None => {
                    // No OpenAPI 3 style says how the gateway reads this value: it is
                    // described as the text a client sends, and the array it stands for is
                    // kept in `x-junction-array` (which the importer reads back).
                    let separator = match p.collection_format.separator() {
                        Some('\t') => "a tab".to_owned(),
                        Some(' ') => "a space".to_owned(),
                        Some(other) => format!("`{other}`"),
                        None => "its own parameter".to_owned(),
                    };
                    out.insert(
                        "x-junction-array".into(),
                        json!({"collectionFormat": p.collection_format.as_str(), "schema": schema}),
                    );
                    schema = json!({
                        "type": "string",
                        "description": format!("The items, separated by {separator}."),
                    });
                }
            }
        }
        out.insert("schema".into(), schema);
        out.insert(
            "x-ms-summary".into(),
            json!(p.summary.clone().unwrap_or_else(|| humanize(&p.name))),
        );
        if let Some(v) = visibility(p.visibility) {
            out.insert("x-ms-visibility".into(), json!(v));
        }
        parameters.push(Value::Object(out));
    }
    let mut out = crate::operation_head(connector, op);
    if !parameters.is_empty() {
        out.insert("parameters".into(), Value::Array(parameters));
    }
    if let Some(body) = &op.body {
        let schema = rename_refs(&body.schema, connector, SCHEMAS);
        let types = if body.media_types.is_empty() {
            vec!["application/json".to_owned()]
        } else {
            body.media_types.clone()
        };
        let content: Map<String, Value> = types
            .into_iter()
            .map(|t| (t, json!({"schema": schema})))
            .collect();
        let mut request = json!({"required": body.required, "content": content});
        if let (Some(d), Value::Object(map)) = (&body.description, &mut request) {
            map.insert("description".into(), json!(d));
        }
        out.insert("requestBody".into(), request);
    } else if !form.is_empty() {
        let media = if op.is_multipart() {
            "multipart/form-data"
        } else {
            "application/x-www-form-urlencoded"
        };
        out.insert(
            "requestBody".into(),
            json!({"required": !form_required.is_empty(), "content": {media: {"schema": {
                "type": "object", "properties": form, "required": form_required
            }}}}),
        );
    }
    let produces = op
        .produces
        .first()
        .cloned()
        .unwrap_or_else(|| "application/json".into());
    let mut responses = responses(connector, &op.responses, &produces);
    let takes_body =
        op.body.is_some() || op.parameters_in(ParamLocation::FormData).next().is_some();
    add_gateway_answers(&mut responses, takes_body, client_keys);
    out.insert("responses".into(), Value::Object(responses));
    crate::operation_tail(op, &mut out);
    Value::Object(out)
}

fn responses(connector: &Connector, responses: &[Response], produces: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for r in responses {
        let status = if r.status == "default" {
            r.status.clone()
        } else {
            r.status.to_ascii_uppercase()
        };
        let mut response = Map::new();
        response.insert(
            "description".into(),
            json!(r.description.clone().unwrap_or_else(|| "Response".into())),
        );
        if let Some(schema) = &r.schema {
            response.insert(
                "content".into(),
                json!({ produces: {"schema": rename_refs(schema, connector, SCHEMAS)} }),
            );
        }
        out.entry(status).or_insert(Value::Object(response));
    }
    out
}

/// OpenAPI 3's `style` and `explode` for an array parameter written in `format` at
/// `location`; `None` where OpenAPI 3 has none (tab-separated values anywhere, space- or
/// pipe-separated ones outside the query).
fn style(location: ParamLocation, format: CollectionFormat) -> Option<(&'static str, bool)> {
    match (location, format) {
        (ParamLocation::Query | ParamLocation::Cookie, CollectionFormat::Csv) => {
            Some(("form", false))
        }
        (ParamLocation::Query, CollectionFormat::Multi) => Some(("form", true)),
        (ParamLocation::Query, CollectionFormat::Pipes) => Some(("pipeDelimited", false)),
        (ParamLocation::Query, CollectionFormat::Ssv) => Some(("spaceDelimited", false)),
        (ParamLocation::Path | ParamLocation::Header, CollectionFormat::Csv) => {
            Some(("simple", false))
        }
        _ => None,
    }
}
