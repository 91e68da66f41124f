//! `junction export`: the gateway's own surface — every connector as Junction serves it at
//! `/connectors/{name}/…`, and every view at `/views/{name}` — written for the tools that
//! call the gateway.
//!
//! Two forms, both pointing at the gateway (`--base-url`):
//! - [`openapi`]: one OpenAPI 3.1 document;
//! - [`swagger`] + [`api_properties`]: a Power Platform custom connector package, Swagger 2.0
//!   with `x-ms-summary` and `x-ms-visibility`, whose only connection parameter is the
//!   Junction client key, sent in the [`CLIENT_KEY_HEADER`] header — when the gateway checks
//!   client keys (`[store]`); without a store the gateway asks for none and neither does
//!   the export.
//!
//! Every operation also declares the answers the gateway gives itself, as RFC 9457
//! problems ([`gateway_answers`]), so that a generated client can read them.
//!
//! What is left out, because the gateway takes care of it: the backends' own security (the
//! gateway authenticates upstream with its configured connections), parameters the gateway
//! fills in itself (internal parameters with a default), triggers and operations whose route
//! another operation shadows. Schemas keep their names, prefixed with the connector's
//! (`directory_Employee`), since the names of different connectors may clash.
//!
//! Schemas in the model are JSON Schema 2020-12; OpenAPI 3.1 takes them as they are, and
//! [`schema::to_swagger`] brings them down to Swagger 2.0's subset (`x-nullable`, boolean
//! exclusive bounds, no `oneOf`/`anyOf`).

mod openapi;
mod schema;
mod swagger;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use junction_model::{Connector, Operation, ParamLocation, Parameter, Visibility};
use junction_runtime::Gateway;
use junction_runtime::view::ViewSummary;
use serde_json::{Map, Value, json};

pub use openapi::openapi;
pub use swagger::{api_properties, swagger};

/// The header that carries the Junction client key, in the exported definitions: the one
/// the gateway's admission reads (it also takes `Authorization: Bearer KEY`).
pub const CLIENT_KEY_HEADER: &str = "X-Api-Key";
/// The security scheme and connection parameter name of the client key.
pub const CLIENT_KEY_PARAMETER: &str = "api_key";

/// What to export, and where it will be reached.
#[derive(Debug, Clone)]
pub struct Options {
    /// The gateway's address as clients reach it: scheme, host, port and base path.
    pub base_url: url::Url,
    /// Title of the exported API (`info.title`).
    pub title: String,
    /// Name of the package folder (and so of the connector, when a Junction loads it).
    pub name: String,
    /// Whether the gateway checks client keys (it has a `[store]`): the export then asks
    /// for one, and declares the 401 and 403 answers.
    pub client_keys: bool,
}

/// An answer the gateway gives itself, as problem+json: status and what it means.
#[derive(Debug, Clone, Copy)]
pub struct GatewayAnswer {
    pub status: &'static str,
    pub description: &'static str,
}

/// The answers the gateway itself may give to a call of an operation (or view): input
/// refusals, client refusals when it checks client keys, body refusals when it takes a
/// body, limits, and the backend's failures as the gateway reports them.
pub fn gateway_answers(takes_body: bool, client_keys: bool) -> Vec<GatewayAnswer> {
    let answer = |status, description| GatewayAnswer {
        status,
        description,
    };
    let mut out = vec![answer(
        "400",
        "An input is missing or invalid; `errors` lists each",
    )];
    if client_keys {
        out.push(answer("401", "The client key is missing or unknown"));
        out.push(answer("403", "The client is not granted this operation"));
    }
    if takes_body {
        out.push(answer("408", "The request body did not arrive in time"));
        out.push(answer("413", "The request body is too large"));
        out.push(answer(
            "415",
            "The request body's media type is not accepted",
        ));
    }
    out.extend([
        answer(
            "429",
            "A rate limit refused the call; `Retry-After` says when to retry",
        ),
        answer(
            "502",
            "The backend could not be reached or gave an unusable answer",
        ),
        answer(
            "503",
            "The backend is held off (circuit open, busy) or a store is away",
        ),
        answer("504", "The backend did not answer in time"),
    ]);
    out
}

/// The media type of the gateway's problems.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The description of the `default` response: anything else, from the gateway or the backend.
pub const DEFAULT_ANSWER: &str =
    "Any other answer: the gateway's own as problem+json, or the backend's";

/// The schema of a problem the gateway answers (RFC 9457).
pub fn problem_schema() -> Value {
    json!({
        "type": "object",
        "description": "An RFC 9457 problem, as Junction answers its own errors.",
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "detail": {"type": "string"}, "instance": {"type": "string"}, "request_id": {"type": "string"},
            "trace_id": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "object"}}
        }
    })
}

/// The served surface: connectors with the operations the gateway routes, and the views.
#[derive(Debug)]
pub struct Surface<'a> {
    pub connectors: Vec<(&'a Connector, Vec<&'a Operation>)>,
    pub views: Vec<ViewSummary>,
}

impl<'a> Surface<'a> {
    /// The operations `gateway` serves out of `connectors`, and its views.
    pub fn new(connectors: &'a [Connector], gateway: &Gateway) -> Surface<'a> {
        let connectors = connectors
            .iter()
            .filter_map(|connector| {
                let served = gateway.connector(&connector.name)?;
                let ids: HashSet<&str> = served.operations.iter().map(|o| o.id.as_str()).collect();
                let operations = connector
                    .operations
                    .iter()
                    .filter(|op| !op.is_trigger() && ids.contains(op.id.as_str()))
                    .collect();
                Some((connector, operations))
            })
            .collect();
        Surface {
            connectors,
            views: gateway.views(),
        }
    }
}

/// Why the export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--base-url `{0}` must be an http:// or https:// URL with a host")]
    BaseUrl(String),
}

/// Writes `OUT/NAME.openapi.json` and the package `OUT/NAME/{apiDefinition.swagger.json,
/// apiProperties.json}`; returns the files written.
pub fn write(
    surface: &Surface<'_>,
    options: &Options,
    out: &Path,
) -> Result<Vec<PathBuf>, ExportError> {
    if !matches!(options.base_url.scheme(), "http" | "https") || !options.base_url.has_host() {
        return Err(ExportError::BaseUrl(options.base_url.to_string()));
    }
    let package = out.join(&options.name);
    let files = [
        (
            out.join(format!("{}.openapi.json", options.name)),
            openapi(surface, options),
        ),
        (
            package.join("apiDefinition.swagger.json"),
            swagger(surface, options),
        ),
        (package.join("apiProperties.json"), api_properties(options)),
    ];
    let mut written = Vec::new();
    for (path, document) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ExportError::Write {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
        text.push('\n');
        std::fs::write(&path, text).map_err(|source| ExportError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// The exported operation id: `CONNECTOR_OPERATION`, letters, digits and `_` only.
fn operation_id(connector: &str, id: &str) -> String {
    sanitize(&format!("{connector}_{id}"))
}

/// The exported operation id of a view.
fn view_operation_id(name: &str) -> String {
    sanitize(&format!("View_{name}"))
}

fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The paths and schema definitions of every served connector operation: each schema
/// renamed under `prefix` and passed through `schema`, each operation written by `operation`.
fn connector_paths(
    surface: &Surface<'_>,
    prefix: &str,
    schema: impl Fn(Value) -> Value,
    operation: impl Fn(&Connector, &Operation) -> Value,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    for (connector, operations) in &surface.connectors {
        for (name, value) in &connector.definitions {
            definitions.insert(
                schema::definition_name(&connector.name, name),
                schema(schema::rename_refs(value, connector, prefix)),
            );
        }
        for op in operations {
            let item = paths
                .entry(gateway_path(&connector.name, &op.path))
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(item) = item {
                item.insert(
                    op.method.as_str().to_ascii_lowercase(),
                    operation(connector, op),
                );
            }
        }
    }
    (paths, definitions)
}

/// What every exported operation starts with: id, summary, description, tags.
fn operation_head(connector: &Connector, op: &Operation) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert(
        "operationId".into(),
        json!(operation_id(&connector.name, &op.id)),
    );
    out.insert(
        "summary".into(),
        json!(op.summary.clone().unwrap_or_else(|| humanize(&op.id))),
    );
    if let Some(d) = &op.description {
        out.insert("description".into(), json!(d));
    }
    out.insert("tags".into(), json!([connector.title]));
    out
}

/// What every exported operation ends with: `deprecated`, `x-ms-visibility`.
fn operation_tail(op: &Operation, out: &mut Map<String, Value>) {
    if op.deprecated {
        out.insert("deprecated".into(), json!(true));
    }
    if let Some(v) = visibility(op.visibility) {
        out.insert("x-ms-visibility".into(), json!(v));
    }
}

/// What an exported view starts with: id, summary, description, tags.
fn view_head(view: &ViewSummary) -> Map<String, Value> {
    let mut op = Map::new();
    op.insert("operationId".into(), json!(view_operation_id(&view.name)));
    op.insert(
        "summary".into(),
        json!(
            view.summary
                .clone()
                .unwrap_or_else(|| format!("View {}", view.name))
        ),
    );
    if let Some(d) = &view.description {
        op.insert("description".into(), json!(d));
    }
    op.insert("tags".into(), json!(["Views"]));
    op
}

/// The gateway path of an operation: `/connectors/NAME/PATH`.
fn gateway_path(connector: &str, path: &str) -> String {
    if path.is_empty() || path == "/" {
        format!("/connectors/{connector}/")
    } else if path.starts_with('/') {
        format!("/connectors/{connector}{path}")
    } else {
        format!("/connectors/{connector}/{path}")
    }
}

/// Whether the gateway fills the parameter in itself (clients need not see it).
fn filled_by_gateway(p: &Parameter) -> bool {
    p.visibility == Visibility::Internal && p.default.is_some()
}

/// The parameters a client of the gateway sends (not cookies, not gateway-filled ones).
fn client_parameters(op: &Operation) -> impl Iterator<Item = &Parameter> {
    op.parameters
        .iter()
        .filter(|p| p.location != ParamLocation::Cookie && !filled_by_gateway(p))
}

/// A readable title for a parameter without `x-ms-summary`: `employeeId` → `Employee id`.
fn humanize(name: &str) -> String {
    let mut out = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if c == '_' || c == '-' || c == '.' {
            out.push(' ');
            previous_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && previous_lower {
            out.push(' ');
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        if out.is_empty() {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
    let trimmed = out.split_whitespace().collect::<Vec<_>>().join(" ");
    if trimmed.is_empty() {
        name.to_owned()
    } else {
        trimmed
    }
}

/// `x-ms-visibility` text, or `None` for the default.
fn visibility(v: Visibility) -> Option<&'static str> {
    match v {
        Visibility::Important => Some("important"),
        Visibility::Advanced => Some("advanced"),
        Visibility::Internal => Some("internal"),
        Visibility::None => None,
    }
}

/// Whether every input of a view can travel in a query string (else the view is exported
/// as a POST with a JSON body).
fn view_takes_query(view: &ViewSummary) -> bool {
    view.inputs.iter().all(
        |input| match input.schema.get("type").and_then(Value::as_str) {
            Some("object") => false,
            Some("array") => input
                .schema
                .get("items")
                .and_then(|i| i.get("type"))
                .and_then(Value::as_str)
                .is_none_or(|t| t != "object" && t != "array"),
            _ => true,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(operation_id("my-api", "Get.Thing"), "my_api_Get_Thing");
        assert_eq!(humanize("employeeId"), "Employee id");
        assert_eq!(humanize("api-version"), "Api version");
        assert_eq!(gateway_path("a", "/x/{id}"), "/connectors/a/x/{id}");
        assert_eq!(gateway_path("a", "/"), "/connectors/a/");
    }
}
