//! A view's inputs bound from the request: query parameters (GET) or a JSON object (POST),
//! coerced by type, defaults filled in, every violation collected into one 400.

use std::borrow::Cow;

use junction_model::CollectionFormat;
use serde_json::{Map, Value};

use super::compile::ViewPlan;
use crate::bind;
use crate::error::{Error, InputLocation, Violation};
use crate::plan::Shape;

/// Most violations reported at once.
const MAX_VIOLATIONS: usize = 50;

/// Binds the query string of a GET.
pub(crate) fn from_query(
    view: &ViewPlan,
    query: Option<&str>,
) -> Result<Map<String, Value>, Error> {
    let mut raw: Vec<(String, Vec<Cow<'_, str>>)> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match raw.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => raw.push((name.into_owned(), vec![value])),
        }
    }
    let mut violations = Vec::new();
    let mut values = Map::new();
    for (name, raws) in raw {
        let Some(input) = view.inputs.iter().find(|i| i.name == name) else {
            violations.push(unknown(view, &name, InputLocation::Query));
            continue;
        };
        let collection = if raws.len() > 1 {
            CollectionFormat::Multi
        } else {
            CollectionFormat::Csv
        };
        if raws.len() > 1 && !matches!(input.shape, Shape::Array(_)) {
            violations.push(Violation::parameter(
                InputLocation::Query,
                &name,
                format!(
                    "query parameter '{name}': given {} times; it takes one value",
                    raws.len()
                ),
            ));
            continue;
        }
        match bind::coerce(input.shape, collection, &raws) {
            Ok(value) => {
                values.insert(name, value);
            }
            Err(why) => violations.push(Violation::parameter(
                InputLocation::Query,
                &name,
                format!("query parameter '{name}'{why}"),
            )),
        }
    }
    finish(view, values, InputLocation::Query, violations)
}

/// Binds the JSON body of a POST (an object of inputs; an empty body is `{}`).
pub(crate) fn from_json(view: &ViewPlan, body: &[u8]) -> Result<Map<String, Value>, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return finish(view, Map::new(), InputLocation::Body, Vec::new());
    }
    let value: Value = crate::strict_json::from_slice(body).map_err(|e| {
        Error::invalid(vec![Violation::body(
            "",
            format!("request body: not JSON ({e})"),
        )])
    })?;
    let Value::Object(map) = value else {
        return Err(Error::invalid(vec![Violation::body(
            "",
            "request body: the view's inputs go in a JSON object",
        )]));
    };
    from_object(view, map, InputLocation::Body)
}

/// Checks the inputs another view's step passes.
pub(crate) fn from_object(
    view: &ViewPlan,
    map: Map<String, Value>,
    location: InputLocation,
) -> Result<Map<String, Value>, Error> {
    let mut violations = Vec::new();
    let mut values = Map::new();
    for (name, value) in map {
        if view.inputs.iter().any(|i| i.name == name) {
            // `null` is the same as leaving the input out.
            if !value.is_null() {
                values.insert(name, value);
            }
        } else {
            violations.push(unknown(view, &name, location));
        }
    }
    finish(view, values, location, violations)
}

fn unknown(view: &ViewPlan, name: &str, location: InputLocation) -> Violation {
    let names: Vec<&str> = view.inputs.iter().map(|i| i.name.as_str()).collect();
    let known = if names.is_empty() {
        "it has none".to_owned()
    } else {
        format!("inputs: {}", names.join(", "))
    };
    let message = format!("view '{}' has no input '{name}' ({known})", view.name);
    match location {
        InputLocation::Body => Violation::body(format!("/{name}"), message),
        other => Violation::parameter(other, name, message),
    }
}

/// Fills in defaults, checks required inputs and every input's schema.
fn finish(
    view: &ViewPlan,
    mut values: Map<String, Value>,
    location: InputLocation,
    mut violations: Vec<Violation>,
) -> Result<Map<String, Value>, Error> {
    for input in &view.inputs {
        let name = input.name.as_str();
        let label = match location {
            InputLocation::Body => format!("request body at /{name}"),
            other => format!("{} parameter '{name}'", other.as_str()),
        };
        let Some(value) = values.get(name) else {
            if let Some(default) = &input.default {
                values.insert(name.to_owned(), default.clone());
            } else if input.required {
                let message = format!("{label}: the input is required");
                violations.push(match location {
                    InputLocation::Body => Violation::body(format!("/{name}"), message),
                    other => Violation::parameter(other, name, message),
                });
            }
            continue;
        };
        for error in input.validator.iter_errors(value) {
            if violations.len() >= MAX_VIOLATIONS {
                break;
            }
            let long = match error.instance().as_ref() {
                Value::Object(_) | Value::Array(_) => true,
                Value::String(s) => s.len() > 80,
                _ => false,
            };
            let why = if long {
                error.masked_with("the value").to_string()
            } else {
                error.to_string()
            };
            let pointer = error.instance_path().as_str().to_owned();
            violations.push(match location {
                InputLocation::Body => Violation::body(
                    format!("/{name}{pointer}"),
                    format!("request body at /{name}{pointer}: {why}"),
                ),
                other => {
                    let mut v = Violation::parameter(other, name, format!("{label}: {why}"));
                    if !pointer.is_empty() {
                        v.pointer = Some(pointer);
                    }
                    v
                }
            });
        }
    }
    if violations.is_empty() {
        Ok(values)
    } else {
        Err(Error::invalid(violations))
    }
}
