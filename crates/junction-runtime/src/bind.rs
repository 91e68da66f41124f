//! Bind: read every parameter of the operation from the request, coerce it to its declared
//! type, apply defaults, validate, and prepare the body to send.
//!
//! Strings from the path, query, headers, cookies and form fields are coerced by the
//! schema's `type` (`integer`, `number`, `boolean`, arrays split per `collectionFormat`)
//! and then checked by the compiled validator (enums, formats, bounds, patterns). A missing
//! parameter takes its `default` (also for `x-ms-visibility: internal` ones). A JSON body is
//! parsed only when there is a schema to validate, an internal default to fill in, or a
//! policy or transform that reads it; otherwise it streams through. Every violation is collected and reported together.

use std::borrow::Cow;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, header};
use http_body::Body;
use junction_model::{CollectionFormat, ParamLocation};
use serde_json::{Map, Value};

use crate::body::{self, RequestBody};
use crate::error::{BoxError, Error, ErrorKind, InputLocation, Violation};
use crate::plan::{
    BodyPlan, JsonBody, OperationPlan, ParamPlan, Scalar, Shape, charset, essence, is_json,
};
use crate::schema::{self, MAX_VIOLATIONS};

/// Where a bound value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Client,
    Default,
}

/// A file field of a form.
#[derive(Debug)]
pub(crate) struct FilePart {
    pub param: usize,
    pub bytes: Bytes,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
}

/// The body to send upstream.
#[derive(Debug)]
pub(crate) enum OutBody {
    Empty,
    Bytes {
        bytes: Bytes,
        content_type: HeaderValue,
    },
    Stream {
        body: RequestBody,
        content_type: Option<HeaderValue>,
    },
    /// A JSON body parsed for the policy stage; written out after the policies ran, as
    /// `original` when nothing changed it.
    Json {
        value: Value,
        original: Option<Bytes>,
        content_type: HeaderValue,
    },
    /// Built from the bound FormData values and `files`.
    Form {
        multipart: bool,
    },
}

/// Everything bound from one request.
#[derive(Debug)]
pub(crate) struct Bound {
    /// One slot per [`OperationPlan::params`] entry.
    pub values: Vec<Option<(Value, Origin)>>,
    pub files: Vec<FilePart>,
    pub body: OutBody,
}

pub(crate) async fn bind<B>(
    op: &OperationPlan,
    parts: &Parts,
    captures: Vec<String>,
    request_body: B,
    limit: u64,
) -> Result<Bound, Error>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let mut binder = Binder {
        values: Vec::with_capacity(op.params.len()),
        violations: Vec::new(),
    };
    binder.values.resize_with(op.params.len(), || None);
    for (capture, &index) in captures.into_iter().zip(&op.path_params) {
        if let Some(param) = op.params.get(index) {
            binder.bind(index, param, vec![Cow::Owned(capture)]);
        }
    }
    bind_parameters(&mut binder, op, parts);
    let mut files = Vec::new();
    let body = bind_body(&mut binder, &mut files, op, parts, request_body, limit).await?;
    if binder.violations.is_empty() {
        Ok(Bound {
            values: binder.values,
            files,
            body,
        })
    } else {
        Err(Error::invalid(binder.violations))
    }
}

/// Binds the query, header and cookie parameters.
fn bind_parameters(binder: &mut Binder, op: &OperationPlan, parts: &Parts) {
    let mut query: Option<Vec<(Cow<'_, str>, Cow<'_, str>)>> = None;
    let mut cookies: Option<Vec<(&str, &str)>> = None;
    for (index, param) in op.params.iter().enumerate() {
        match param.location {
            ParamLocation::Path | ParamLocation::FormData => {}
            ParamLocation::Query => {
                let pairs = query.get_or_insert_with(|| {
                    url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
                        .collect()
                });
                let raws = pairs
                    .iter()
                    .filter(|(k, _)| *k == param.name)
                    .map(|(_, v)| v.clone())
                    .collect();
                binder.bind(index, param, raws);
            }
            // A header parameter whose name is not a valid header name can be neither
            // received nor sent (reported at load).
            ParamLocation::Header if param.header.is_none() => {}
            ParamLocation::Header => {
                let mut raws = Vec::new();
                for value in parts.headers.get_all(param.name.as_str()) {
                    match value.to_str() {
                        Ok(text) => raws.push(Cow::Borrowed(text)),
                        Err(_) => binder.violation(
                            param,
                            " is not valid text (only visible ASCII is accepted in headers)".into(),
                        ),
                    }
                }
                binder.bind(index, param, raws);
            }
            ParamLocation::Cookie => {
                let jar = cookies.get_or_insert_with(|| parse_cookies(&parts.headers));
                let raws = jar
                    .iter()
                    .filter(|(k, _)| *k == param.name)
                    .map(|(_, v)| Cow::Borrowed(*v))
                    .collect();
                binder.bind(index, param, raws);
            }
        }
    }
}

/// Binds the body: streamed, read as JSON, or read as form fields (which bind the
/// `formData` parameters, files into `files`).
async fn bind_body<B>(
    binder: &mut Binder,
    files: &mut Vec<FilePart>,
    op: &OperationPlan,
    parts: &Parts,
    request_body: B,
    limit: u64,
) -> Result<OutBody, Error>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    Ok(match &op.body {
        BodyPlan::None => OutBody::Empty,
        BodyPlan::Raw {
            required,
            default_type,
        } => {
            let empty = body::is_empty(&request_body);
            if empty && *required {
                binder
                    .violations
                    .push(Violation::body("", "request body is required"));
            }
            if empty {
                OutBody::Empty
            } else {
                OutBody::Stream {
                    body: RequestBody::stream(request_body, limit),
                    content_type: declared_type(op, &binder.values)
                        .or_else(|| parts.headers.get(header::CONTENT_TYPE).cloned())
                        .or_else(|| default_type.clone()),
                }
            }
        }
        BodyPlan::Json(plan) => {
            let declared = declared_type(op, &binder.values);
            match declared {
                // The operation's Content-Type parameter names a type that is not JSON: the
                // body goes as that type, unread (as Power Platform sends it).
                Some(declared) if !is_json(&essence(declared.to_str().unwrap_or_default())) => {
                    if body::is_empty(&request_body) {
                        if plan.required {
                            binder
                                .violations
                                .push(Violation::body("", "request body is required"));
                        }
                        OutBody::Empty
                    } else {
                        OutBody::Stream {
                            body: RequestBody::stream(request_body, limit),
                            content_type: Some(declared),
                        }
                    }
                }
                _ => {
                    json_body(plan, op, parts, request_body, limit, &mut binder.violations).await?
                }
            }
        }
        BodyPlan::Form { multipart } => {
            let fields = read_form(parts, request_body, limit, &mut binder.violations).await?;
            for (index, param) in op.params.iter().enumerate() {
                if param.location != ParamLocation::FormData {
                    continue;
                }
                let mut raws = Vec::new();
                for field in fields.iter().filter(|f| f.name == param.name) {
                    if param.is_file {
                        files.push(FilePart {
                            param: index,
                            bytes: field.bytes.clone(),
                            file_name: field.file_name.clone(),
                            content_type: field.content_type.clone(),
                        });
                        break;
                    }
                    raws.push(String::from_utf8_lossy(&field.bytes));
                }
                if param.is_file {
                    if param.required && !files.iter().any(|f| f.param == index) {
                        binder.violation(param, " is required".into());
                    }
                } else {
                    binder.bind(index, param, raws);
                }
            }
            OutBody::Form {
                multipart: *multipart,
            }
        }
    })
}

struct Binder {
    values: Vec<Option<(Value, Origin)>>,
    violations: Vec<Violation>,
}

impl Binder {
    fn violation(&mut self, param: &ParamPlan, why: String) {
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(Violation::parameter(
                param.input,
                &param.name,
                format!("{} parameter '{}'{why}", param.input.as_str(), param.name),
            ));
        }
    }

    fn bind(&mut self, index: usize, param: &ParamPlan, raws: Vec<Cow<'_, str>>) {
        if raws.is_empty() {
            // As Power Platform does: the default of a required parameter (internal ones
            // included) is sent; an optional parameter the caller left out is not sent at
            // all, default or not ("only required properties are guaranteed to be
            // included in requests").
            match (&param.default, param.required) {
                (Some(default), true) => {
                    if let Some(slot) = self.values.get_mut(index) {
                        *slot = Some((default.clone(), Origin::Default));
                    }
                }
                (None, true) => self.violation(param, " is required".into()),
                (_, false) => {}
            }
            return;
        }
        // A NUL ends a string in many backends' languages: what is checked here would not
        // be what they read.
        if raws.iter().any(|raw| raw.contains('\0')) {
            self.violation(param, " holds a NUL character".into());
            return;
        }
        match coerce(param.shape, param.collection, &raws) {
            Ok(value) => {
                if let Some(validator) = &param.validator {
                    schema::check(
                        validator,
                        &value,
                        param.input,
                        Some(&param.name),
                        &mut self.violations,
                    );
                }
                if let Some(slot) = self.values.get_mut(index) {
                    *slot = Some((value, Origin::Client));
                }
            }
            Err(why) => self.violation(param, why),
        }
    }
}

/// Quotes a client value for a message, shortened when long.
fn quoted(raw: &str) -> String {
    let mut shown: String = raw.chars().take(80).collect();
    if shown.len() < raw.len() {
        shown.push('…');
    }
    Value::String(shown).to_string()
}

/// Coerces raw strings to the JSON value the schema describes. The error says why, as the
/// end of a sentence starting with the parameter's name.
pub(crate) fn coerce(
    shape: Shape,
    collection: CollectionFormat,
    raws: &[Cow<'_, str>],
) -> Result<Value, String> {
    let first = raws.first().map(Cow::as_ref).unwrap_or_default();
    match shape {
        Shape::Scalar(scalar) => coerce_scalar(scalar, first).map_err(|why| format!(": {why}")),
        Shape::Object => match serde_json::from_str::<Value>(first) {
            Ok(value @ Value::Object(_)) => Ok(value),
            _ => Err(format!(": {} is not a JSON object", quoted(first))),
        },
        Shape::Array(item) => {
            let items: Vec<&str> = match collection.separator() {
                None => raws.iter().map(Cow::as_ref).collect(),
                Some(_) if first.is_empty() => Vec::new(),
                Some(separator) => first.split(separator).collect(),
            };
            let mut values = Vec::with_capacity(items.len());
            let mut problems = Vec::new();
            for (i, raw) in items.iter().enumerate() {
                match coerce_scalar(item, raw) {
                    Ok(value) => values.push(value),
                    Err(why) => problems.push(format!("item {i}: {why}")),
                }
            }
            if problems.is_empty() {
                Ok(Value::Array(values))
            } else {
                Err(format!(": {}", problems.join("; ")))
            }
        }
    }
}

fn coerce_scalar(scalar: Scalar, raw: &str) -> Result<Value, String> {
    match scalar {
        Scalar::String | Scalar::Any => Ok(Value::String(raw.to_owned())),
        Scalar::Integer => {
            if let Ok(n) = raw.parse::<i64>() {
                Ok(Value::from(n))
            } else if let Ok(n) = raw.parse::<u64>() {
                Ok(Value::from(n))
            } else {
                Err(format!("{} is not an integer", quoted(raw)))
            }
        }
        Scalar::Number => {
            if let Ok(n) = raw.parse::<i64>() {
                return Ok(Value::from(n));
            }
            raw.parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| format!("{} is not a number", quoted(raw)))
        }
        Scalar::Boolean => {
            if raw.eq_ignore_ascii_case("true") {
                Ok(Value::Bool(true))
            } else if raw.eq_ignore_ascii_case("false") {
                Ok(Value::Bool(false))
            } else {
                Err(format!("{} is not a boolean (true or false)", quoted(raw)))
            }
        }
    }
}

fn parse_cookies(headers: &http::HeaderMap) -> Vec<(&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.trim(), value.trim().trim_matches('"')))
        })
        .collect()
}

async fn json_body<B>(
    plan: &JsonBody,
    op: &OperationPlan,
    parts: &Parts,
    request_body: B,
    limit: u64,
    violations: &mut Vec<Violation>,
) -> Result<OutBody, Error>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let client_type = parts.headers.get(header::CONTENT_TYPE);
    if let Some(client_type) = client_type
        && !json_media(plan, op, client_type)?
    {
        // A declared type that is not JSON: streamed through unread.
        return Ok(if body::is_empty(&request_body) {
            OutBody::Empty
        } else {
            OutBody::Stream {
                body: RequestBody::stream(request_body, limit),
                content_type: Some(client_type.clone()),
            }
        });
    }
    let content_type = client_type
        .cloned()
        .unwrap_or_else(|| plan.content_type.clone());

    if plan.validator.is_none() && plan.defaults.is_empty() && !op.read_json {
        // Nothing reads the body: stream it.
        if body::is_empty(&request_body) {
            if plan.required {
                violations.push(Violation::body("", "request body is required"));
            }
            return Ok(OutBody::Empty);
        }
        return Ok(OutBody::Stream {
            body: RequestBody::stream(request_body, limit),
            content_type: Some(content_type),
        });
    }

    let bytes = body::read(request_body, limit).await?;
    let mut value = if bytes.iter().all(u8::is_ascii_whitespace) {
        if plan.required {
            violations.push(Violation::body("", "request body is required"));
            return Ok(OutBody::Empty);
        }
        if plan.defaults.is_empty() {
            return Ok(OutBody::Empty);
        }
        // An optional body made only of internal defaults.
        Value::Object(Map::new())
    } else {
        match crate::strict_json::from_slice(&bytes) {
            Ok(value) => value,
            Err(error) => {
                violations.push(Violation::body(
                    "",
                    format!("request body is not valid JSON: {error}"),
                ));
                return Ok(OutBody::Empty);
            }
        }
    };
    let changed = apply_defaults(&mut value, &plan.defaults);
    if let Some(validator) = &plan.validator {
        schema::check(validator, &value, InputLocation::Body, None, violations);
    }
    if op.read_json {
        return Ok(OutBody::Json {
            value,
            original: (!changed).then_some(bytes),
            content_type,
        });
    }
    let bytes = if changed {
        Bytes::from(serde_json::to_vec(&value).map_err(|e| {
            Error::new(ErrorKind::Internal, "could not write the request body").with_cause(e)
        })?)
    } else {
        bytes
    };
    Ok(OutBody::Bytes {
        bytes,
        content_type,
    })
}

/// The body's media type as the operation's `Content-Type` header parameter says it (the
/// client's value, else the parameter's default — also when the parameter is optional: it
/// describes the body that is sent), when it has one.
fn declared_type(op: &OperationPlan, values: &[Option<(Value, Origin)>]) -> Option<HeaderValue> {
    let index = op.content_type_param?;
    let value = match values.get(index)? {
        Some((value, _)) => value,
        None => op.params.get(index)?.default.as_ref()?,
    };
    HeaderValue::from_str(value.as_str()?).ok()
}

/// Whether a client's Content-Type says JSON (in UTF-8), or another type the operation
/// declares; anything else is refused (415).
fn json_media(
    plan: &JsonBody,
    op: &OperationPlan,
    client_type: &HeaderValue,
) -> Result<bool, Error> {
    let text = client_type.to_str().unwrap_or_default();
    let essence = essence(text);
    if is_json(&essence) {
        // RFC 8259: JSON between systems is UTF-8; a body labelled otherwise would be read
        // one way here and another way by the backend.
        return match charset(text) {
            Some(charset)
                if !charset.eq_ignore_ascii_case("utf-8")
                    && !charset.eq_ignore_ascii_case("utf8") =>
            {
                Err(Error::new(
                    ErrorKind::UnsupportedMediaType,
                    format!(
                        "operation '{}' takes JSON in UTF-8, not in charset {charset}",
                        op.id
                    ),
                ))
            }
            _ => Ok(true),
        };
    }
    if plan.other_media.iter().any(|m| *m == essence || m == "*/*") {
        return Ok(false);
    }
    let accepted = std::iter::once(plan.content_type.to_str().unwrap_or("application/json"))
        .chain(plan.other_media.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(", ");
    Err(Error::new(
        ErrorKind::UnsupportedMediaType,
        format!(
            "operation '{}' accepts a body of type {accepted}, not {}",
            op.id,
            if essence.is_empty() {
                "this Content-Type"
            } else {
                &essence
            }
        ),
    ))
}

/// Fills in missing internal properties; returns whether anything changed.
fn apply_defaults(value: &mut Value, defaults: &[(Vec<String>, Value)]) -> bool {
    let mut changed = false;
    for (path, default) in defaults {
        let Some((last, parents)) = path.split_last() else {
            continue;
        };
        let mut target = &mut *value;
        let mut reachable = true;
        for key in parents {
            let Value::Object(map) = target else {
                reachable = false;
                break;
            };
            target = map
                .entry(key.clone())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        if let (true, Value::Object(map)) = (reachable, target)
            && !map.contains_key(last)
        {
            map.insert(last.clone(), default.clone());
            changed = true;
        }
    }
    changed
}

/// A form field as received.
struct Field {
    name: String,
    bytes: Bytes,
    file_name: Option<String>,
    content_type: Option<String>,
}

async fn read_form<B>(
    parts: &Parts,
    request_body: B,
    limit: u64,
    violations: &mut Vec<Violation>,
) -> Result<Vec<Field>, Error>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = essence(content_type);
    if body::is_empty(&request_body) && essence.is_empty() {
        return Ok(Vec::new());
    }
    match essence.as_str() {
        "application/x-www-form-urlencoded" | "" => {
            let bytes = body::read(request_body, limit).await?;
            Ok(url::form_urlencoded::parse(&bytes)
                .map(|(name, value)| Field {
                    name: name.into_owned(),
                    bytes: Bytes::from(value.into_owned()),
                    file_name: None,
                    content_type: None,
                })
                .collect())
        }
        "multipart/form-data" => {
            let Ok(boundary) = multer::parse_boundary(content_type) else {
                violations.push(Violation::body(
                    "",
                    "multipart body has no boundary in its Content-Type",
                ));
                return Ok(Vec::new());
            };
            let bytes = body::read(request_body, limit).await?;
            let stream =
                futures_util::stream::once(
                    async move { Ok::<Bytes, std::convert::Infallible>(bytes) },
                );
            let mut multipart = multer::Multipart::new(stream, boundary);
            let mut fields = Vec::new();
            loop {
                match multipart.next_field().await {
                    Ok(Some(field)) => {
                        let name = field.name().unwrap_or_default().to_owned();
                        let file_name = field.file_name().map(str::to_owned);
                        let content_type = field.content_type().map(ToString::to_string);
                        match field.bytes().await {
                            Ok(bytes) => fields.push(Field {
                                name,
                                bytes,
                                file_name,
                                content_type,
                            }),
                            Err(error) => {
                                violations.push(Violation::body(
                                    "",
                                    format!("multipart body is malformed: {error}"),
                                ));
                                break;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        violations.push(Violation::body(
                            "",
                            format!("multipart body is malformed: {error}"),
                        ));
                        break;
                    }
                }
            }
            Ok(fields)
        }
        other => Err(Error::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "form fields must be sent as application/x-www-form-urlencoded or multipart/form-data, not {other}"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use serde_json::json;

    use super::*;

    fn c(raws: &[&str]) -> Vec<Cow<'static, str>> {
        raws.iter().map(|r| Cow::Owned((*r).to_owned())).collect()
    }

    #[test]
    fn coerces_scalars_by_type() {
        let csv = CollectionFormat::Csv;
        assert_eq!(
            coerce(Shape::Scalar(Scalar::Integer), csv, &c(&["42"])),
            Ok(json!(42))
        );
        assert_eq!(
            coerce(Shape::Scalar(Scalar::Integer), csv, &c(&["-7"])),
            Ok(json!(-7))
        );
        assert_eq!(
            coerce(Shape::Scalar(Scalar::Integer), csv, &c(&["abc"])),
            Err(": \"abc\" is not an integer".into())
        );
        assert!(coerce(Shape::Scalar(Scalar::Integer), csv, &c(&["1.5"])).is_err());
        assert_eq!(
            coerce(Shape::Scalar(Scalar::Number), csv, &c(&["1.5"])),
            Ok(json!(1.5))
        );
        assert!(coerce(Shape::Scalar(Scalar::Number), csv, &c(&["NaN"])).is_err());
        assert_eq!(
            coerce(Shape::Scalar(Scalar::Boolean), csv, &c(&["TRUE"])),
            Ok(json!(true))
        );
        assert!(coerce(Shape::Scalar(Scalar::Boolean), csv, &c(&["yes"])).is_err());
        assert_eq!(
            coerce(Shape::Scalar(Scalar::String), csv, &c(&["007"])),
            Ok(json!("007"))
        );
        assert_eq!(
            coerce(Shape::Object, csv, &c(&[r#"{"a":1}"#])),
            Ok(json!({"a": 1}))
        );
    }

    #[test]
    fn splits_arrays_per_collection_format() {
        let ints = Shape::Array(Scalar::Integer);
        assert_eq!(
            coerce(ints, CollectionFormat::Csv, &c(&["1,2,3"])),
            Ok(json!([1, 2, 3]))
        );
        assert_eq!(
            coerce(ints, CollectionFormat::Pipes, &c(&["1|2"])),
            Ok(json!([1, 2]))
        );
        assert_eq!(
            coerce(ints, CollectionFormat::Ssv, &c(&["1 2"])),
            Ok(json!([1, 2]))
        );
        assert_eq!(
            coerce(ints, CollectionFormat::Tsv, &c(&["1\t2"])),
            Ok(json!([1, 2]))
        );
        assert_eq!(
            coerce(ints, CollectionFormat::Multi, &c(&["1", "2"])),
            Ok(json!([1, 2]))
        );
        assert_eq!(
            coerce(ints, CollectionFormat::Csv, &c(&[""])),
            Ok(json!([]))
        );
        assert_eq!(
            coerce(ints, CollectionFormat::Csv, &c(&["1,x,3,y"])),
            Err(": item 1: \"x\" is not an integer; item 3: \"y\" is not an integer".into())
        );
    }

    #[test]
    fn fills_internal_defaults_without_overwriting() {
        let defaults = vec![
            (vec!["mode".to_owned()], json!("fast")),
            (vec!["options".to_owned(), "level".to_owned()], json!(3)),
        ];
        let mut body = json!({"mode": "slow"});
        assert!(apply_defaults(&mut body, &defaults));
        assert_eq!(body, json!({"mode": "slow", "options": {"level": 3}}));
        assert!(!apply_defaults(&mut body, &defaults));
        let mut list = json!([1]);
        assert!(!apply_defaults(&mut list, &defaults));
    }

    #[test]
    fn reads_cookies() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; b=\"two\"; junk"),
        );
        assert_eq!(parse_cookies(&headers), vec![("a", "1"), ("b", "two")]);
    }
}
