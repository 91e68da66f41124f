//! The Power Platform package: `apiDefinition.swagger.json` (Swagger 2.0 with
//! `x-ms-summary` / `x-ms-visibility`) and `apiProperties.json` (the client key).

use junction_model::{Connector, Operation, ParamLocation, Response};
use serde_json::{Map, Value, json};

use crate::schema::{rename_refs, swagger_simple, to_swagger};
use crate::{
    CLIENT_KEY_HEADER, CLIENT_KEY_PARAMETER, DEFAULT_ANSWER, Options, Surface, client_parameters,
    gateway_answers, humanize, problem_schema, view_takes_query, visibility,
};

const DEFINITIONS: &str = "#/definitions/";

/// `apiDefinition.swagger.json`.
pub fn swagger(surface: &Surface<'_>, options: &Options) -> Value {
    let url = &options.base_url;
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    let base_path = match url.path().trim_end_matches('/') {
        "" => "/".to_owned(),
        path => path.to_owned(),
    };
    let client_keys = options.client_keys;
    let (mut paths, mut definitions) = crate::connector_paths(
        surface,
        DEFINITIONS,
        |schema| to_swagger(&schema),
        |connector, op| operation(connector, op, client_keys),
    );
    for view in &surface.views {
        let query = view_takes_query(view);
        let mut parameters = Vec::new();
        if query {
            for input in &view.inputs {
                let mut p = Map::new();
                p.insert("name".into(), json!(input.name));
                p.insert("in".into(), json!("query"));
                p.insert("required".into(), json!(input.required));
                p.extend(swagger_simple(&input.schema, None));
                if p.get("type") == Some(&json!("array")) {
                    p.insert("collectionFormat".into(), json!("csv"));
                }
                annotate(
                    &mut p,
                    input.schema.get("description"),
                    input.summary.as_deref(),
                    &input.name,
                    input.visibility.as_deref(),
                );
                parameters.push(Value::Object(p));
            }
        } else {
            let mut properties = Map::new();
            let mut required = Vec::new();
            for input in &view.inputs {
                let mut schema = to_swagger(&input.schema);
                if let Value::Object(map) = &mut schema {
                    map.insert(
                        "x-ms-summary".into(),
                        json!(
                            input
                                .summary
                                .clone()
                                .unwrap_or_else(|| humanize(&input.name))
                        ),
                    );
                    if let Some(v) = &input.visibility {
                        map.insert("x-ms-visibility".into(), json!(v));
                    }
                }
                properties.insert(input.name.clone(), schema);
                if input.required {
                    required.push(json!(input.name));
                }
            }
            parameters.push(json!({
                "name": "body", "in": "body", "required": true, "x-ms-summary": "Inputs",
                "schema": {"type": "object", "properties": properties, "required": required, "additionalProperties": false}
            }));
        }
        let output = view
            .output
            .as_ref()
            .map_or_else(|| json!({"type": "object"}), to_swagger);
        let mut op = crate::view_head(view);
        if !query {
            op.insert("consumes".into(), json!(["application/json"]));
        }
        op.insert("produces".into(), json!(["application/json"]));
        op.insert("parameters".into(), Value::Array(parameters));
        let mut responses = Map::new();
        responses.insert(
            "200".into(),
            json!({"description": "The view's result", "schema": output}),
        );
        add_gateway_answers(&mut responses, !query, client_keys);
        op.insert("responses".into(), Value::Object(responses));
        let method = if query { "get" } else { "post" };
        paths.insert(
            format!("/views/{}", view.name),
            json!({ method: Value::Object(op) }),
        );
    }
    definitions.insert("Problem".into(), to_swagger(&problem_schema()));
    let mut document = json!({
        "swagger": "2.0",
        "info": {
            "title": options.title,
            "description": "The connectors and views of a Junction gateway, as the gateway serves them.",
            "version": "1.0"
        },
        "host": host,
        "basePath": base_path,
        "schemes": [url.scheme()],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "paths": paths,
        "definitions": definitions
    });
    if client_keys {
        document["securityDefinitions"] = json!({
            CLIENT_KEY_PARAMETER: {"type": "apiKey", "in": "header", "name": CLIENT_KEY_HEADER}
        });
        document["security"] = json!([{CLIENT_KEY_PARAMETER: []}]);
    }
    document
}

/// The problem answers of the gateway that the backend does not declare, and `default`.
fn add_gateway_answers(responses: &mut Map<String, Value>, takes_body: bool, client_keys: bool) {
    let problem = json!({"$ref": format!("{DEFINITIONS}Problem")});
    for answer in gateway_answers(takes_body, client_keys) {
        responses
            .entry(answer.status)
            .or_insert_with(|| json!({"description": answer.description, "schema": problem}));
    }
    responses
        .entry("default")
        .or_insert_with(|| json!({"description": DEFAULT_ANSWER, "schema": problem}));
}

/// `apiProperties.json`: one connection parameter, the Junction client key, when the
/// gateway checks client keys; none otherwise.
pub fn api_properties(options: &Options) -> Value {
    let parameters = if options.client_keys {
        json!({
                CLIENT_KEY_PARAMETER: {
                    "type": "securestring",
                    "uiDefinition": {
                        "displayName": "Junction client key",
                        "description": format!("The client key the Junction gateway at {} gave this app; sent in the {CLIENT_KEY_HEADER} header.", options.base_url),
                        "tooltip": "Ask the gateway's operator for a client key",
                        "constraints": {"tabIndex": 2, "clearText": false, "required": "true"}
                    }
                }
        })
    } else {
        json!({})
    };
    json!({
        "properties": {
            "connectionParameters": parameters,
            "iconBrandColor": "#007ee5",
            "capabilities": [],
            "publisher": "Junction",
            "stackOwner": "Junction"
        }
    })
}

fn annotate(
    p: &mut Map<String, Value>,
    description: Option<&Value>,
    summary: Option<&str>,
    name: &str,
    visibility: Option<&str>,
) {
    if let Some(d) = description {
        p.insert("description".into(), d.clone());
    }
    p.insert(
        "x-ms-summary".into(),
        json!(summary.map_or_else(|| humanize(name), str::to_owned)),
    );
    if let Some(v) = visibility {
        p.insert("x-ms-visibility".into(), json!(v));
    }
}

fn operation(connector: &Connector, op: &Operation, client_keys: bool) -> Value {
    let mut parameters = Vec::new();
    for p in client_parameters(op) {
        let mut out = Map::new();
        out.insert("name".into(), json!(p.name));
        out.insert("in".into(), json!(p.location.as_str()));
        out.insert(
            "required".into(),
            json!(p.required || p.location == ParamLocation::Path),
        );
        if p.is_file {
            out.insert("type".into(), json!("file"));
        } else {
            let schema = rename_refs(&p.schema, connector, DEFINITIONS);
            out.extend(swagger_simple(&schema, Some(connector)));
            if let Some(default) = &p.default {
                out.insert("default".into(), default.clone());
            }
            if out.get("type") == Some(&json!("array")) {
                out.insert(
                    "collectionFormat".into(),
                    json!(p.collection_format.as_str()),
                );
            }
        }
        annotate(
            &mut out,
            p.description.as_ref().map(|d| json!(d)).as_ref(),
            p.summary.as_deref(),
            &p.name,
            visibility(p.visibility),
        );
        parameters.push(Value::Object(out));
    }
    if let Some(body) = &op.body {
        let mut out = Map::new();
        out.insert("name".into(), json!(body.name));
        out.insert("in".into(), json!("body"));
        out.insert("required".into(), json!(body.required));
        out.insert(
            "schema".into(),
            to_swagger(&rename_refs(&body.schema, connector, DEFINITIONS)),
        );
        annotate(
            &mut out,
            body.description.as_ref().map(|d| json!(d)).as_ref(),
            body.summary.as_deref(),
            &body.name,
            visibility(body.visibility),
        );
        parameters.push(Value::Object(out));
    }
    let mut out = crate::operation_head(connector, op);
    let consumes = match &op.body {
        Some(body) if !body.media_types.is_empty() => body.media_types.clone(),
        _ => op.consumes.clone(),
    };
    if !consumes.is_empty() {
        out.insert("consumes".into(), json!(consumes));
    }
    if !op.produces.is_empty() {
        out.insert("produces".into(), json!(op.produces));
    }
    out.insert("parameters".into(), Value::Array(parameters));
    let mut responses = responses(connector, &op.responses);
    let takes_body =
        op.body.is_some() || op.parameters_in(ParamLocation::FormData).next().is_some();
    add_gateway_answers(&mut responses, takes_body, client_keys);
    out.insert("responses".into(), Value::Object(responses));
    crate::operation_tail(op, &mut out);
    Value::Object(out)
}

fn responses(connector: &Connector, responses: &[Response]) -> Map<String, Value> {
    let mut out = Map::new();
    for r in responses {
        // Swagger 2.0 has no `2XX` ranges: `2XX` becomes `200`.
        let status = match r.status.as_bytes() {
            [d, b'X' | b'x', b'X' | b'x'] => format!("{}00", char::from(*d)),
            _ => r.status.clone(),
        };
        let mut response = Map::new();
        response.insert(
            "description".into(),
            json!(r.description.clone().unwrap_or_else(|| "Response".into())),
        );
        if let Some(schema) = &r.schema {
            response.insert(
                "schema".into(),
                to_swagger(&rename_refs(schema, connector, DEFINITIONS)),
            );
        }
        out.entry(status).or_insert(Value::Object(response));
    }
    out
}
