//! Security schemes and requirements, for Swagger 2.0 and OpenAPI 3.x.

use indexmap::IndexMap;
use junction_model::{ApiKeyLocation, SecurityRequirement, SecurityScheme, SourceFormat};
use serde_json::Value;

use crate::fields::{self, Object};
use crate::ptr::Ptr;
use crate::schema::kind;
use crate::sink::Sink;

/// Reads Swagger `securityDefinitions` or OpenAPI `components.securitySchemes`.
pub(crate) fn schemes(
    doc: &Value,
    format: SourceFormat,
    sink: &mut Sink,
) -> IndexMap<String, SecurityScheme> {
    let mut out = IndexMap::new();
    let (defs, at_str) = match format {
        SourceFormat::Swagger2 | SourceFormat::Wsdl11 => {
            (doc.get("securityDefinitions"), "/securityDefinitions")
        }
        SourceFormat::OpenApi30 | SourceFormat::OpenApi31 => (
            doc.get("components").and_then(|c| c.get("securitySchemes")),
            "/components/securitySchemes",
        ),
    };
    let at = Ptr::rendered(at_str);
    let defs = match defs {
        None | Some(Value::Null) => return out,
        Some(Value::Object(m)) => m,
        Some(other) => {
            sink.warn(
                "invalid-field",
                &at,
                format!(
                    "must be an object of security schemes, found {}; ignored",
                    kind(other)
                ),
            );
            return out;
        }
    };
    for (name, raw) in defs {
        let entry_at = at.key(name);
        let Some(resolved) = fields::resolve(doc, raw, entry_at.render(), "security scheme", sink)
        else {
            continue;
        };
        let scheme_at = Ptr::rendered(&resolved.pointer);
        let scheme = match format {
            SourceFormat::Swagger2 | SourceFormat::Wsdl11 => {
                swagger_scheme(resolved.map, &scheme_at, sink)
            }
            SourceFormat::OpenApi30 | SourceFormat::OpenApi31 => {
                openapi_scheme(resolved.map, &scheme_at, sink)
            }
        };
        if let Some(scheme) = scheme {
            out.insert(name.clone(), scheme);
        }
    }
    out
}

fn api_key(obj: &Object, at: &Ptr<'_>, sink: &mut Sink) -> Option<SecurityScheme> {
    let name = fields::string(obj, "name", at, sink).filter(|n| !n.is_empty());
    let location = fields::string(obj, "in", at, sink);
    let location = match location.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("header") => ApiKeyLocation::Header,
        Some("query") => ApiKeyLocation::Query,
        Some("cookie") => ApiKeyLocation::Cookie,
        _ => {
            sink.warn(
                "invalid-security",
                &at.key("in"),
                "an apiKey scheme needs 'in': header, query or cookie; scheme ignored",
            );
            return None;
        }
    };
    let Some(name) = name else {
        sink.warn(
            "invalid-security",
            &at.key("name"),
            "an apiKey scheme needs a 'name'; scheme ignored",
        );
        return None;
    };
    Some(SecurityScheme::ApiKey { name, location })
}

fn scopes(obj: &Object, at: &Ptr<'_>, sink: &mut Sink) -> Vec<String> {
    fields::object(obj, "scopes", at, sink)
        .map(|s| s.keys().cloned().collect())
        .unwrap_or_default()
}

fn swagger_scheme(obj: &Object, at: &Ptr<'_>, sink: &mut Sink) -> Option<SecurityScheme> {
    let kind = fields::string(obj, "type", at, sink).unwrap_or_default();
    match kind.to_ascii_lowercase().as_str() {
        "apikey" => api_key(obj, at, sink),
        "basic" => Some(SecurityScheme::Basic),
        "oauth2" => Some(SecurityScheme::OAuth2 {
            flow: fields::string(obj, "flow", at, sink),
            authorization_url: fields::string(obj, "authorizationUrl", at, sink),
            token_url: fields::string(obj, "tokenUrl", at, sink),
            refresh_url: None,
            scopes: scopes(obj, at, sink),
        }),
        _ => {
            sink.warn(
                "invalid-security",
                &at.key("type"),
                format!("'{kind}' is not a Swagger 2.0 security type (apiKey, basic, oauth2); scheme ignored"),
            );
            None
        }
    }
}

fn openapi_scheme(obj: &Object, at: &Ptr<'_>, sink: &mut Sink) -> Option<SecurityScheme> {
    let kind = fields::string(obj, "type", at, sink).unwrap_or_default();
    match kind.to_ascii_lowercase().as_str() {
        "apikey" => api_key(obj, at, sink),
        "http" => {
            let scheme = fields::string(obj, "scheme", at, sink).unwrap_or_default();
            match scheme.to_ascii_lowercase().as_str() {
                "basic" => Some(SecurityScheme::Basic),
                "bearer" => Some(SecurityScheme::Bearer),
                _ => {
                    sink.warn(
                        "invalid-security",
                        &at.key("scheme"),
                        format!("HTTP authentication scheme '{scheme}' is not supported (basic, bearer); scheme ignored"),
                    );
                    None
                }
            }
        }
        "oauth2" => {
            let flows_at = at.key("flows");
            let flow = fields::object(obj, "flows", at, sink).and_then(|flows| {
                flows
                    .iter()
                    .find_map(|(k, v)| v.as_object().map(|f| (k, f)))
            });
            match flow {
                Some((name, f)) => {
                    let f_at = flows_at.key(name);
                    Some(SecurityScheme::OAuth2 {
                        flow: Some(name.clone()),
                        authorization_url: fields::string(f, "authorizationUrl", &f_at, sink),
                        token_url: fields::string(f, "tokenUrl", &f_at, sink),
                        refresh_url: fields::string(f, "refreshUrl", &f_at, sink),
                        scopes: scopes(f, &f_at, sink),
                    })
                }
                None => {
                    sink.warn(
                        "invalid-security",
                        &flows_at,
                        "an oauth2 scheme needs at least one flow; read without one",
                    );
                    Some(SecurityScheme::OAuth2 {
                        flow: None,
                        authorization_url: None,
                        token_url: None,
                        refresh_url: None,
                        scopes: Vec::new(),
                    })
                }
            }
        }
        "openidconnect" => match fields::string(obj, "openIdConnectUrl", at, sink) {
            Some(url) => Some(SecurityScheme::OpenIdConnect { url }),
            None => {
                sink.warn(
                    "invalid-security",
                    &at.key("openIdConnectUrl"),
                    "an openIdConnect scheme needs 'openIdConnectUrl'; scheme ignored",
                );
                None
            }
        },
        _ => {
            sink.warn(
                "invalid-security",
                &at.key("type"),
                format!("security type '{kind}' is not supported (apiKey, http, oauth2, openIdConnect); scheme ignored"),
            );
            None
        }
    }
}

/// Reads a list of security requirements, checking that each names a known scheme.
pub(crate) fn requirements(
    value: &Value,
    at: &Ptr<'_>,
    known: &IndexMap<String, SecurityScheme>,
    sink: &mut Sink,
) -> Vec<SecurityRequirement> {
    let Value::Array(items) = value else {
        sink.warn(
            "invalid-security",
            at,
            format!(
                "'security' must be an array, found {}; ignored",
                kind(value)
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_at = at.index(i);
        let Value::Object(map) = item else {
            sink.warn(
                "invalid-security",
                &item_at,
                format!(
                    "a security requirement must be an object, found {}; ignored",
                    kind(item)
                ),
            );
            continue;
        };
        let mut req = SecurityRequirement::new();
        for (name, scopes) in map {
            if !known.contains_key(name) {
                sink.warn(
                    "unknown-security-scheme",
                    &item_at.key(name),
                    format!("security scheme '{name}' is not defined"),
                );
            }
            let scopes = match scopes {
                Value::Array(s) => s
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                _ => Vec::new(),
            };
            req.insert(name.clone(), scopes);
        }
        out.push(req);
    }
    out
}
