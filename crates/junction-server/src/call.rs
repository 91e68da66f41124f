//! In-process calls of one operation for the admin API (`connections/{id}/test` and
//! `operations/{id}/try`): the data-plane request built from named parameter values, and a
//! stored connection attached to it so that admission lets it through.
//!
//! The request goes through [`junction_runtime::Gateway::handle`] like any other: binding,
//! validation, cache, policies and the upstream call all apply.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use junction_model::{CollectionFormat, Connector, Operation, ParamLocation};
use junction_runtime::{Error, ErrorKind, Gateway, ResolvedConnection};
use junction_store::{ConnectionRow, ExposeSecret};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

use crate::access::{Access, runtime_values, store_error};

/// A stored connection made ready for one call.
#[derive(Debug)]
pub(crate) struct Stored {
    /// The row, its OAuth token refreshed when it was due.
    pub row: ConnectionRow,
    /// Its credentials for every operation of the connector, to put in the request's
    /// extensions.
    pub resolved: Arc<ResolvedConnection>,
    /// Its secret values in plain text (also the OAuth access token), for redaction only.
    pub secrets: Vec<String>,
}

impl Stored {
    /// Refreshes `row`'s token when due, opens its values and builds its credentials
    /// against `table`.
    pub async fn resolve(
        access: &Access,
        table: &Gateway,
        row: ConnectionRow,
    ) -> Result<Stored, Error> {
        let row = crate::oauth::fresh(access, row).await?;
        let values = access.vault.values(&row).map_err(store_error)?;
        let public = access.vault.info(&row).map_err(store_error)?.values;
        let secrets = values
            .iter()
            .filter(|(name, _)| !public.contains_key(name.as_str()))
            .map(|(_, value)| value.expose_secret().to_owned())
            .collect();
        let resolved = table
            .resolve_connection(&row.connector, &row.id, &runtime_values(&values))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidRequest,
                    format!("connector '{}' is not loaded", row.connector),
                )
            })??;
        Ok(Stored {
            row,
            resolved,
            secrets,
        })
    }
}

/// Marks a request the admin API makes itself without a stored connection (`try` with
/// none): admission lets it through with the configured connection
/// (`[connector.NAME.connection]`), as the data plane does without a store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdminCall;

/// The values of one call: parameters by name and a JSON body.
#[derive(Debug, Default)]
pub(crate) struct Inputs<'a> {
    pub parameters: Option<&'a Map<String, Value>>,
    pub body: Option<&'a Value>,
}

/// The data-plane request for `op` of `connector`: path, query, header and cookie
/// parameters from `inputs.parameters` (arrays written per `collectionFormat`), form
/// fields as an urlencoded body, or `inputs.body` as JSON. Parameters left out are left
/// out: the gateway fills in defaults and reports what is missing, as for any client.
pub(crate) fn request(
    connector: &Connector,
    op: &Operation,
    inputs: &Inputs<'_>,
) -> Result<http::Request<Full<Bytes>>, Error> {
    let empty = Map::new();
    let parameters = inputs.parameters.unwrap_or(&empty);
    let mut path = String::new();
    let mut rest = op.path.as_str();
    while let Some(open) = rest.find('{') {
        path.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = &rest[open + 1..open + close];
        let Some(value) = parameters.get(name) else {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "operation '{}' needs path parameter '{name}'; pass it in `parameters`",
                    op.id
                ),
            ));
        };
        path.push_str(&encode(&text(value, CollectionFormat::Csv)));
        rest = &rest[open + close + 1..];
    }
    path.push_str(rest);

    let mut query = Vec::new();
    let mut form = Vec::new();
    let mut headers = Vec::new();
    let mut cookies = Vec::new();
    for parameter in &op.parameters {
        let Some(value) = parameters.get(&parameter.name) else {
            continue;
        };
        let format = parameter.collection_format;
        let pairs = |out: &mut Vec<String>| match (value, format) {
            (Value::Array(items), CollectionFormat::Multi) => {
                for item in items {
                    out.push(format!(
                        "{}={}",
                        encode(&parameter.name),
                        encode(&text(item, format))
                    ));
                }
            }
            _ => out.push(format!(
                "{}={}",
                encode(&parameter.name),
                encode(&text(value, format))
            )),
        };
        match parameter.location {
            ParamLocation::Path => {}
            ParamLocation::Query => pairs(&mut query),
            ParamLocation::FormData => pairs(&mut form),
            ParamLocation::Header => headers.push((parameter.name.as_str(), text(value, format))),
            ParamLocation::Cookie => cookies.push(format!(
                "{}={}",
                parameter.name,
                encode(&text(value, format))
            )),
        }
    }

    let mut target = format!(
        "{}{}{path}",
        junction_runtime::CONNECTORS_PREFIX,
        connector.name
    );
    if !query.is_empty() {
        target.push('?');
        target.push_str(&query.join("&"));
    }
    let method = http::Method::from_bytes(op.method.as_str().as_bytes())
        .map_err(|e| Error::new(ErrorKind::Internal, "bad method").with_cause(e))?;
    let mut builder = http::Request::builder()
        .method(method)
        .uri(&target)
        .header(http::header::ACCEPT, "application/json");
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    if !cookies.is_empty() {
        builder = builder.header(http::header::COOKIE, cookies.join("; "));
    }
    let body = if !form.is_empty() {
        builder = builder.header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
        Bytes::from(form.join("&"))
    } else if let (Some(body), Some(declared)) = (inputs.body, &op.body) {
        let media = declared
            .media_types
            .iter()
            .find(|m| m.contains("json"))
            .map_or("application/json", String::as_str);
        builder = builder.header(http::header::CONTENT_TYPE, media);
        Bytes::from(body.to_string())
    } else {
        Bytes::new()
    };
    builder.body(Full::new(body)).map_err(|e| {
        Error::new(
            ErrorKind::InvalidRequest,
            format!("the request cannot be built: {e}"),
        )
    })
}

fn encode(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

/// A value as the text a client would send; arrays joined per `format`.
fn text(value: &Value, format: CollectionFormat) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let separator = format.separator().unwrap_or(',').to_string();
            items
                .iter()
                .map(|item| text(item, format))
                .collect::<Vec<_>>()
                .join(&separator)
        }
        other => other.to_string(),
    }
}
