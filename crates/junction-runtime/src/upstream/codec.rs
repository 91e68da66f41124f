//! How an operation's arguments become the backend's request body, and its answer the
//! client's: the codec of the operation. JSON (forwarded byte for byte, or written from
//! the validated value), url-encoded and multipart forms, and raw bodies streamed through,
//! whose answers pass unchanged; and SOAP ([`super::soap`]): the JSON arguments written as
//! an envelope when the request is sent, the XML answer read back into JSON here.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, header};
use junction_model::{CollectionFormat, ParamLocation};
use serde_json::Value;

use super::outbound::joined;
use crate::bind::{FilePart, Origin, OutBody};
use crate::body::{RequestBody, UpstreamBody};
use crate::encode;
use crate::error::{Error, ErrorKind};
use crate::gateway::ConnectorPlan;
use crate::plan::{OperationPlan, value_text};

/// Encodes the body to send: `bound` as bytes, a stream or a form, with its Content-Type set in
/// `headers`.
pub(crate) fn encode(
    op: &OperationPlan,
    parts: &Parts,
    body: OutBody,
    values: &[Option<(Value, Origin)>],
    files: &[FilePart],
    headers: &mut HeaderMap,
) -> Result<RequestBody, Error> {
    Ok(match body {
        OutBody::Empty => RequestBody::Empty,
        OutBody::Bytes {
            bytes,
            content_type,
        } => {
            headers.insert(header::CONTENT_TYPE, content_type);
            RequestBody::full(bytes)
        }
        OutBody::Json {
            value,
            original,
            content_type,
        } => {
            headers.insert(header::CONTENT_TYPE, content_type);
            match original {
                Some(bytes) => RequestBody::full(bytes),
                None => RequestBody::full(serde_json::to_vec(&value).map_err(|e| {
                    Error::new(ErrorKind::Internal, "could not write the request body")
                        .with_cause(e)
                })?),
            }
        }
        OutBody::Stream { body, content_type } => {
            if let Some(content_type) = content_type {
                headers.insert(header::CONTENT_TYPE, content_type);
            }
            if let Some(length) = parts.headers.get(header::CONTENT_LENGTH) {
                headers.insert(header::CONTENT_LENGTH, length.clone());
            }
            body
        }
        OutBody::Form { multipart: false } => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            RequestBody::full(urlencoded(op, values, files))
        }
        OutBody::Form { multipart: true } => {
            let (content_type, bytes) = multipart(op, values, files);
            headers.insert(header::CONTENT_TYPE, content_type);
            RequestBody::full(bytes)
        }
    })
}

/// The backend's answer as the client gets it: a SOAP envelope read into JSON (or its
/// fault into an error), anything else unchanged; before the response policies and the
/// cache see it.
pub(crate) async fn decode(
    connector: &ConnectorPlan,
    op: &OperationPlan,
    response: http::Response<UpstreamBody>,
) -> Result<http::Response<UpstreamBody>, Error> {
    match &op.soap {
        Some(soap) => {
            super::soap::read(
                soap,
                &connector.name,
                connector.max_response_bytes,
                response,
            )
            .await
        }
        None => Ok(response),
    }
}

/// Form values as `application/x-www-form-urlencoded`.
fn urlencoded(
    op: &OperationPlan,
    values: &[Option<(Value, Origin)>],
    files: &[FilePart],
) -> String {
    let mut out = String::new();
    let pair = |out: &mut String, name: &str, value: &str| {
        if !out.is_empty() {
            out.push('&');
        }
        encode::push_component(out, name);
        out.push('=');
        encode::push_component(out, value);
    };
    for (param, slot) in op.params.iter().zip(values) {
        let (ParamLocation::FormData, Some((value, _))) = (param.location, slot) else {
            continue;
        };
        match value {
            Value::Array(items) if param.collection == CollectionFormat::Multi => {
                for item in items {
                    pair(&mut out, &param.name, &value_text(item));
                }
            }
            other => pair(&mut out, &param.name, &joined(param, other)),
        }
    }
    for file in files {
        if let Some(param) = op.params.get(file.param) {
            pair(&mut out, &param.name, &String::from_utf8_lossy(&file.bytes));
        }
    }
    out
}

/// Form values and files as `multipart/form-data` (RFC 7578): the Content-Type with its
/// boundary, and the body.
fn multipart(
    op: &OperationPlan,
    values: &[Option<(Value, Origin)>],
    files: &[FilePart],
) -> (HeaderValue, Bytes) {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let boundary = format!(
        "junction-{:016x}{:016x}",
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    );
    let mut out: Vec<u8> = Vec::new();
    let part = |out: &mut Vec<u8>,
                name: &str,
                file: Option<(&Option<String>, &Option<String>)>,
                data: &[u8]| {
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"");
        out.extend_from_slice(quoted_name(name).as_bytes());
        out.push(b'"');
        if let Some((file_name, content_type)) = file {
            if let Some(file_name) = file_name {
                out.extend_from_slice(b"; filename=\"");
                out.extend_from_slice(quoted_name(file_name).as_bytes());
                out.push(b'"');
            }
            out.extend_from_slice(b"\r\nContent-Type: ");
            let content_type = content_type
                .as_deref()
                .filter(|t| HeaderValue::from_str(t).is_ok())
                .unwrap_or("application/octet-stream");
            out.extend_from_slice(content_type.as_bytes());
        }
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    };
    for (param, slot) in op.params.iter().zip(values) {
        let (ParamLocation::FormData, Some((value, _))) = (param.location, slot) else {
            continue;
        };
        match value {
            Value::Array(items) if param.collection == CollectionFormat::Multi => {
                for item in items {
                    part(&mut out, &param.name, None, value_text(item).as_bytes());
                }
            }
            other => part(&mut out, &param.name, None, joined(param, other).as_bytes()),
        }
    }
    for file in files {
        if let Some(param) = op.params.get(file.param) {
            part(
                &mut out,
                &param.name,
                Some((&file.file_name, &file.content_type)),
                &file.bytes,
            );
        }
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
    let content_type = HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}"))
        .unwrap_or(HeaderValue::from_static("multipart/form-data"));
    (content_type, Bytes::from(out))
}

/// A name or file name inside a quoted multipart header: quotes and line breaks escaped as
/// browsers do.
fn quoted_name(name: &str) -> String {
    name.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}
