//! The one backend request of an operation, built from its bound request, and sent.
//!
//! [`build`] makes it for every operation alike: the path below the base URL (each value
//! one encoded segment), the query per `collectionFormat`, the declared headers (plus the
//! client's `Accept` and `Accept-Language`, and `User-Agent`), the credentials and the
//! body through the operation's codec. An operation with request policies has them rewrite
//! it (`policy`); then [`send`] puts the credentials that travel in the query last, and
//! hands it to the exchange (guards, retries, transport) and the answer to the codec.

use bytes::Bytes;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Uri, header};
use junction_model::{CollectionFormat, ParamLocation};
use serde_json::Value;

use super::exchange::{self, Call};
use super::{USER_AGENT, codec, no_target, strip_hop_by_hop};
use crate::auth::Credential;
use crate::bind::{Bound, Origin, OutBody};
use crate::body::{RequestBody, UpstreamBody};
use crate::encode;
use crate::error::{Error, ErrorKind, Violation};
use crate::gateway::ConnectorPlan;
use crate::plan::{OperationPlan, ParamPlan, UpstreamPiece, value_text};

/// Where a request goes.
#[derive(Debug)]
pub(crate) enum Base {
    /// The connector's target (definition or `backend`), parsed once at load.
    Target,
    /// Another base URL (scheme, host, base path), chosen by a host policy.
    Url(String),
}

/// The body of an outbound request.
#[derive(Debug)]
pub(crate) enum OutboundBody {
    /// A JSON body kept as a value, for the request policies; `original` holds the
    /// client's bytes while nothing changed it.
    Json {
        value: Value,
        original: Option<Bytes>,
    },
    /// A body ready to send.
    Encoded(RequestBody),
}

/// One request to the backend, in the pieces policies rewrite.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub method: http::Method,
    pub base: Base,
    /// Encoded path below the base, starting with `/`.
    pub path: String,
    /// Encoded query without `?`; credentials that travel in the query are not in it yet.
    pub query: String,
    pub headers: HeaderMap,
    pub body: OutboundBody,
}

impl Outbound {
    /// Sends this request to a next link (or a trigger's `Location`) instead: its path
    /// and query, without a body, as a GET unless the link says otherwise.
    pub(crate) fn continue_at(&mut self, next: &crate::paging::NextLink) {
        self.path.clone_from(&next.path);
        self.query.clone_from(&next.query);
        self.method = next.method.clone().unwrap_or(http::Method::GET);
        self.body = OutboundBody::Encoded(RequestBody::Empty);
        self.headers.remove(header::CONTENT_TYPE);
        self.headers.remove(header::CONTENT_LENGTH);
    }
}

/// Builds the request of `op` from `bound` (see the module documentation). With
/// `keep_json`, a JSON body stays a value, for the request policies to read.
pub(crate) fn build(
    op: &OperationPlan,
    parts: &Parts,
    bound: Bound,
    credentials: &[Credential],
    keep_json: bool,
) -> Result<Outbound, Error> {
    let mut violations = Vec::new();
    let mut path = String::with_capacity(96);
    push_path(&mut path, op, &bound, &mut violations);
    let mut query = String::new();
    if push_query(&mut query, op, &bound) {
        query.remove(0);
    }
    let mut headers = build_headers(op, parts, &bound.values, credentials, &mut violations)?;
    if !violations.is_empty() {
        return Err(Error::invalid(violations));
    }
    let body = match bound.body {
        // A SOAP operation's JSON is written as an envelope when it is sent.
        OutBody::Empty if op.soap.is_some() => OutboundBody::Json {
            value: Value::Null,
            original: None,
        },
        OutBody::Json {
            value,
            original,
            content_type,
        } if keep_json || op.soap.is_some() => {
            headers.insert(header::CONTENT_TYPE, content_type);
            OutboundBody::Json { value, original }
        }
        other => OutboundBody::Encoded(codec::encode(
            op,
            parts,
            other,
            &bound.values,
            &bound.files,
            &mut headers,
        )?),
    };
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    Ok(Outbound {
        method: parts.method.clone(),
        base: Base::Target,
        path,
        query,
        headers,
        body,
    })
}

/// Sends `out`, the credentials that travel in the query added last; returns what the
/// backend said (hop-by-hop headers removed), through the operation's codec.
pub(crate) async fn send(
    connector: &ConnectorPlan,
    op: &OperationPlan,
    out: Outbound,
    credentials: &[Credential],
) -> Result<http::Response<UpstreamBody>, Error> {
    let uri = uri(connector, op, &out, credentials)?;
    let mut headers = out.headers;
    let body = match (out.body, &op.soap) {
        (OutboundBody::Json { value, original }, Some(soap)) => {
            let value = match (value, original) {
                (Value::Null, Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
                (value, _) => value,
            };
            let token = credentials.iter().find_map(|c| match c {
                Credential::UsernameToken(token) => Some(token),
                _ => None,
            });
            soap.headers(&mut headers);
            RequestBody::full(Bytes::from(super::soap::write(soap, &value, token)?))
        }
        (body, _) => plain_body(body)?,
    };
    let (response, held) = exchange::exchange(Call {
        connector,
        op,
        method: &out.method,
        uri,
        headers,
        body,
    })
    .await?;
    let mut response =
        response.map(|incoming| UpstreamBody::new(incoming, held, connector.timeout));
    strip_hop_by_hop(response.headers_mut());
    codec::decode(connector, op, response).await
}

/// The body of a request that is not a SOAP envelope, as bytes to send.
fn plain_body(body: OutboundBody) -> Result<RequestBody, Error> {
    Ok(match body {
        OutboundBody::Encoded(body) => body,
        OutboundBody::Json {
            original: Some(bytes),
            ..
        } => RequestBody::full(bytes),
        OutboundBody::Json { value, .. } => {
            RequestBody::full(Bytes::from(serde_json::to_vec(&value).map_err(|e| {
                Error::new(ErrorKind::Internal, "could not write the request body").with_cause(e)
            })?))
        }
    })
}

/// The URI of `out`: on the connector's target from its parsed pieces (no URL parsing on
/// the common path), on another base by parsing the assembled URL.
fn uri(
    connector: &ConnectorPlan,
    op: &OperationPlan,
    out: &Outbound,
    credentials: &[Credential],
) -> Result<Uri, Error> {
    let built = |url: String| -> Result<String, Error> {
        let mut url = url;
        let mut first = !url.contains('?');
        push_credential_query(&mut url, credentials, &mut first);
        Ok(url)
    };
    let cannot = |e: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::Misconfigured,
            format!(
                "connector '{}', operation '{}': the request's URL cannot be sent ({e})",
                connector.name, op.id
            ),
        )
    };
    match &out.base {
        Base::Target => {
            let Some(target) = &connector.target else {
                return Err(no_target(connector));
            };
            let mut path = String::with_capacity(
                target.base_path.len() + out.path.len() + out.query.len() + 1,
            );
            path.push_str(&target.base_path);
            path.push_str(&out.path);
            if !out.query.is_empty() {
                path.push('?');
                path.push_str(&out.query);
            }
            let path = PathAndQuery::try_from(built(path)?).map_err(|e| cannot(&e))?;
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(target.scheme.clone());
            parts.authority = Some(target.authority.clone());
            parts.path_and_query = Some(path);
            Uri::from_parts(parts).map_err(|e| cannot(&e))
        }
        Base::Url(base) => {
            let mut url = format!("{base}{}", out.path);
            if !out.query.is_empty() {
                url.push('?');
                url.push_str(&out.query);
            }
            built(url)?
                .parse()
                .map_err(|e: http::uri::InvalidUri| cannot(&e))
        }
    }
}

fn separator(format: CollectionFormat, in_query: bool) -> &'static str {
    match (format, in_query) {
        (CollectionFormat::Ssv, true) => "%20",
        (CollectionFormat::Ssv, false) => " ",
        (CollectionFormat::Tsv, true) => "%09",
        (CollectionFormat::Tsv, false) => "\t",
        (CollectionFormat::Pipes, _) => "|",
        (CollectionFormat::Csv | CollectionFormat::Multi, _) => ",",
    }
}

/// A value as one piece of text; arrays joined by their separator.
pub(crate) fn joined(param: &ParamPlan, value: &Value) -> String {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|i| value_text(i).into_owned())
            .collect::<Vec<_>>()
            .join(separator(param.collection, false)),
        other => value_text(other).into_owned(),
    }
}

/// Appends the operation's path: each template segment, values encoded as one segment.
pub(crate) fn push_path(
    url: &mut String,
    op: &OperationPlan,
    bound: &Bound,
    violations: &mut Vec<Violation>,
) {
    if op.segments.is_empty() {
        url.push('/');
    }
    for segment in &op.segments {
        url.push('/');
        let start = url.len();
        let mut first_param = None;
        for piece in segment {
            match piece {
                UpstreamPiece::Literal(literal) => url.push_str(literal),
                UpstreamPiece::Param(index) => {
                    let param = op.params.get(*index);
                    first_param = first_param.or(param);
                    if let (Some(param), Some(Some((value, _)))) = (param, bound.values.get(*index))
                    {
                        encode::push_segment(url, &joined(param, value), param.double_encode);
                    }
                }
            }
        }
        if let Some(param) = first_param {
            let segment = url.get(start..).unwrap_or_default();
            if segment == "." || segment == ".." {
                violations.push(Violation::parameter(
                    param.input,
                    &param.name,
                    format!(
                        "path parameter '{}': {:?} would make a dot segment, which cannot be sent safely",
                        param.name, segment
                    ),
                ));
            }
        }
    }
}

/// Appends `?` (or `&`) and the query parameters per `collectionFormat`. Returns whether
/// any was written.
pub(crate) fn push_query(url: &mut String, op: &OperationPlan, bound: &Bound) -> bool {
    let mut first = true;
    let mut next = |url: &mut String| {
        url.push(if first { '?' } else { '&' });
        first = false;
    };
    for (param, slot) in op.params.iter().zip(&bound.values) {
        let (ParamLocation::Query, Some((value, _))) = (param.location, slot) else {
            continue;
        };
        match value {
            Value::Array(items) if param.collection == CollectionFormat::Multi => {
                for item in items {
                    next(url);
                    encode::push_component(url, &param.name);
                    url.push('=');
                    encode::push_component(url, &value_text(item));
                }
            }
            Value::Array(items) => {
                next(url);
                encode::push_component(url, &param.name);
                url.push('=');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        url.push_str(separator(param.collection, true));
                    }
                    encode::push_component(url, &value_text(item));
                }
            }
            other => {
                next(url);
                encode::push_component(url, &param.name);
                url.push('=');
                encode::push_component(url, &value_text(other));
            }
        }
    }
    !first
}

/// Appends the API keys that travel in the query. `first` says whether a `?` is still due.
pub(crate) fn push_credential_query(
    url: &mut String,
    credentials: &[Credential],
    first: &mut bool,
) {
    for credential in credentials {
        if let Credential::Query(pair) = credential {
            // The credential replaces a parameter of the same name, as a header credential
            // does: one value, the connection's.
            let name = pair.expose().split('=').next().unwrap_or_default();
            if drop_query_pairs(url, name) {
                *first = !url.contains('?');
            }
            url.push(if *first { '?' } else { '&' });
            *first = false;
            url.push_str(pair.expose());
        }
    }
}

/// Removes every `name=…` pair (`name` as encoded) from the query of `url`; whether any was.
fn drop_query_pairs(url: &mut String, name: &str) -> bool {
    let Some((path, query)) = url.split_once('?') else {
        return false;
    };
    let matches = |pair: &str| pair.split('=').next() == Some(name);
    if !query.split('&').any(matches) {
        return false;
    }
    let kept: Vec<&str> = query.split('&').filter(|pair| !matches(pair)).collect();
    *url = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    true
}

pub(crate) fn build_headers(
    op: &OperationPlan,
    parts: &Parts,
    values: &[Option<(Value, Origin)>],
    credentials: &[Credential],
    violations: &mut Vec<Violation>,
) -> Result<HeaderMap, Error> {
    let mut headers = HeaderMap::with_capacity(8);
    let mut cookie = String::new();
    for (param, slot) in op.params.iter().zip(values) {
        let Some((value, origin)) = slot else {
            continue;
        };
        match param.location {
            ParamLocation::Header => {
                let Some(name) = &param.header else {
                    continue;
                };
                let header_value = match (origin, &param.default_header) {
                    (Origin::Default, Some(Ok(default))) => default.clone(),
                    (Origin::Default, Some(Err(message))) => {
                        return Err(Error::new(ErrorKind::Misconfigured, message.clone()));
                    }
                    _ => {
                        let text = joined(param, value);
                        match HeaderValue::from_str(&text) {
                            Ok(v) => v,
                            Err(_) => {
                                let why = if text.contains(['\r', '\n']) {
                                    "must not contain CR or LF"
                                } else {
                                    "contains a character not allowed in a header"
                                };
                                violations.push(Violation::parameter(
                                    param.input,
                                    &param.name,
                                    format!("header parameter '{}': the value {why}", param.name),
                                ));
                                continue;
                            }
                        }
                    }
                };
                headers.append(name.clone(), header_value);
            }
            ParamLocation::Cookie => {
                if !cookie.is_empty() {
                    cookie.push_str("; ");
                }
                cookie.push_str(&param.name);
                cookie.push('=');
                encode::push_component(&mut cookie, &joined(param, value));
            }
            _ => {}
        }
    }
    for name in [header::ACCEPT, header::ACCEPT_LANGUAGE] {
        if !headers.contains_key(&name)
            && let Some(value) = parts.headers.get(&name)
        {
            headers.insert(name, value.clone());
        }
    }
    for credential in credentials {
        match credential {
            Credential::Header(name, value) => {
                headers.insert(name.clone(), value.clone());
            }
            Credential::Cookie(pair) => {
                if !cookie.is_empty() {
                    cookie.push_str("; ");
                }
                cookie.push_str(pair.expose());
            }
            Credential::Query(_) | Credential::UsernameToken(_) | Credential::Fetched => {}
        }
    }
    if !cookie.is_empty() {
        match HeaderValue::from_str(&cookie) {
            Ok(mut value) => {
                value.set_sensitive(true);
                headers.insert(header::COOKIE, value);
            }
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    "the upstream Cookie header could not be built",
                ));
            }
        }
    }
    Ok(headers)
}
