//! Upstream authentication: credentials from the default connection, placed where the
//! connector's security scheme says.
//!
//! The operation's security requirements (or the document's) are tried in order; the first
//! one whose every scheme has a value in `[connector.NAME.connection]` is used, and an empty
//! requirement means "no authentication". When a definition requires nothing (or only names
//! schemes it never defines), Power Platform's rule applies: the first *defined* scheme
//! whose values are configured authenticates every operation. Which connection value a
//! scheme takes:
//!
//! | scheme | value |
//! |---|---|
//! | `apiKey` (header, query or cookie named by the scheme) | `api_key`; else the value named like the scheme; else the value of the connector's only secret-typed connection parameter |
//! | `basic` | `username` and `password` |
//! | `oauth2`, `bearer`, `openIdConnect` | `access_token`, else `token`, sent as `Authorization: Bearer …` |
//! | WS-Security UsernameToken (SOAP connectors) | `username`, `password` and `ws_security` = `PasswordText` or `PasswordDigest`, written into each envelope's header |
//!
//! An API key scheme that travels in a header uses the header `api_key_header` names, when
//! the connection sets it (a SOAP service names its own).
//!
//! Credentials are built once at load; header values are marked sensitive.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use indexmap::IndexMap;
use junction_model::{ApiKeyLocation, Connector, SecurityRequirement, SecurityScheme};

use crate::Secret;
use crate::encode;
use crate::upstream::soap::wsse::UsernameToken;

/// One credential to attach to every upstream request of an operation.
#[derive(Debug, Clone)]
pub(crate) enum Credential {
    Header(HeaderName, HeaderValue),
    /// An already encoded `name=value` query pair.
    Query(Secret),
    /// An already encoded `name=value` cookie pair.
    Cookie(Secret),
    /// A WS-Security UsernameToken the SOAP codec writes into the envelope.
    UsernameToken(UsernameToken),
    /// An OAuth token fetched per request with the connection's client credentials
    /// (`TOKEN:grantType = "client_credentials"`): the admission attaches a connection that
    /// carries it; the compiled plan sends nothing.
    Fetched,
}

/// How an operation authenticates upstream.
#[derive(Debug, Clone)]
pub(crate) enum AuthPlan {
    None,
    Apply(Arc<[Credential]>),
    /// The configuration lacks a value; the message names what to set (never a value).
    Missing(Arc<str>),
}

/// Why credentials could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthProblem {
    /// Nothing satisfies the requirements; the request gets a 500 with this message.
    Missing(String),
    /// The definition defines schemes without requiring them and none is configured:
    /// requests go without credentials (a load warning).
    Unconfigured(String),
    /// A configured value cannot be sent (CR/LF in a header value); the load fails.
    Invalid(String),
}

/// Plans authentication for an operation whose own requirements are `operation` (`None`
/// when it declares none).
///
/// Explicit requirements (the operation's, else the document's) naming defined schemes are
/// honoured as OpenAPI says. When there are none — no `security` at all, or only references
/// to undefined schemes, both common in published packages — Power Platform's behaviour
/// applies: the connection authenticates every operation with the defined scheme, so the
/// first defined scheme that has its values configured is used.
pub(crate) fn plan(
    connector: &Connector,
    operation: Option<&[SecurityRequirement]>,
    connection: &IndexMap<String, Secret>,
) -> Result<AuthPlan, AuthProblem> {
    let explicit = match operation {
        Some(requirements) => requirements,
        None => connector.security.as_slice(),
    };
    if operation.is_some_and(<[_]>::is_empty) {
        return Ok(AuthPlan::None);
    }
    let defined: Vec<&SecurityRequirement> = explicit
        .iter()
        .filter(|r| {
            r.keys()
                .all(|name| connector.security_schemes.contains_key(name))
        })
        .collect();
    if defined.is_empty() {
        return implicit(connector, connection);
    }
    let mut lacking = Vec::new();
    'requirements: for requirement in defined {
        if requirement.is_empty() {
            return Ok(AuthPlan::None);
        }
        let mut credentials = Vec::new();
        for scheme_name in requirement.keys() {
            let Some(scheme) = connector.security_schemes.get(scheme_name) else {
                continue 'requirements;
            };
            match credential(connector, scheme_name, scheme, connection)? {
                Some(credential) => credentials.push(credential),
                None => {
                    lacking.push(need(connector, scheme_name, scheme));
                    continue 'requirements;
                }
            }
        }
        return Ok(AuthPlan::Apply(credentials.into()));
    }
    lacking.dedup();
    Err(AuthProblem::Missing(format!(
        "connector '{}' has no usable connection: {}",
        connector.name,
        lacking.join("; ")
    )))
}

/// Power Platform's rule: the first defined scheme with configured values applies.
fn implicit(
    connector: &Connector,
    connection: &IndexMap<String, Secret>,
) -> Result<AuthPlan, AuthProblem> {
    let mut lacking = Vec::new();
    for (name, scheme) in &connector.security_schemes {
        match credential(connector, name, scheme, connection)? {
            Some(credential) => return Ok(AuthPlan::Apply(vec![credential].into())),
            None => lacking.push(need(connector, name, scheme)),
        }
    }
    if lacking.is_empty() {
        Ok(AuthPlan::None)
    } else {
        Err(AuthProblem::Unconfigured(format!(
            "connector '{}' calls its backend without credentials: {}",
            connector.name,
            lacking.join("; ")
        )))
    }
}

fn need(connector: &Connector, scheme_name: &str, scheme: &SecurityScheme) -> String {
    let section = format!("[connector.{}.connection]", connector.name);
    match scheme {
        SecurityScheme::ApiKey { name, location } => format!(
            "security scheme '{scheme_name}' needs an API key for {} '{name}'; set `api_key` in {section}",
            match location {
                ApiKeyLocation::Header => "header",
                ApiKeyLocation::Query => "query parameter",
                ApiKeyLocation::Cookie => "cookie",
            }
        ),
        SecurityScheme::Basic => {
            format!("security scheme '{scheme_name}' needs `username` and `password` in {section}")
        }
        SecurityScheme::Bearer
        | SecurityScheme::OAuth2 { .. }
        | SecurityScheme::OpenIdConnect { .. } => {
            let token = connector
                .connection_parameters()
                .find(|p| p.kind.eq_ignore_ascii_case("oauthsetting"))
                .map_or("token", |p| p.name.as_str());
            format!(
                "security scheme '{scheme_name}' needs `access_token` in {section}; an OAuth login needs `[store]`, \
                 while client credentials work without it (`{token}:clientId`, `{token}:clientSecret` and \
                 `{token}:grantType = \"client_credentials\"` in {section})"
            )
        }
        SecurityScheme::WsSecurity => format!(
            "security scheme '{scheme_name}' needs `username`, `password` and `ws_security` \
             (PasswordText or PasswordDigest) in {section}"
        ),
    }
}

/// Whether `connection` asks for OAuth client credentials (`TOKEN:grantType =
/// "client_credentials"`), whose tokens the gateway fetches itself.
pub fn fetches_tokens(connection: &IndexMap<String, Secret>) -> bool {
    connection.iter().any(|(name, value)| {
        name.split_once(':').is_some_and(|(_, setting)| {
            setting.eq_ignore_ascii_case("grantType") && value.expose() == "client_credentials"
        })
    })
}

fn credential(
    connector: &Connector,
    scheme_name: &str,
    scheme: &SecurityScheme,
    connection: &IndexMap<String, Secret>,
) -> Result<Option<Credential>, AuthProblem> {
    match scheme {
        SecurityScheme::ApiKey { name, location } => {
            let Some((key, value)) = api_key_value(connector, scheme_name, connection) else {
                return Ok(None);
            };
            Ok(Some(match location {
                ApiKeyLocation::Header => {
                    let name = connection
                        .get("api_key_header")
                        .map_or(name.as_str(), Secret::expose);
                    let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        AuthProblem::Invalid(format!(
                            "security scheme '{scheme_name}' of connector '{}' names header '{name}', which is not a valid header name",
                            connector.name
                        ))
                    })?;
                    Credential::Header(header, header_value(connector, key, value.expose())?)
                }
                ApiKeyLocation::Query => Credential::Query(pair(name, value.expose())),
                ApiKeyLocation::Cookie => Credential::Cookie(pair(name, value.expose())),
            }))
        }
        SecurityScheme::Basic => {
            let (Some(user), Some(password)) =
                (connection.get("username"), connection.get("password"))
            else {
                return Ok(None);
            };
            let token =
                encode::base64(format!("{}:{}", user.expose(), password.expose()).as_bytes());
            let value = header_value(connector, "username/password", &format!("Basic {token}"))?;
            Ok(Some(Credential::Header(http::header::AUTHORIZATION, value)))
        }
        SecurityScheme::Bearer
        | SecurityScheme::OAuth2 { .. }
        | SecurityScheme::OpenIdConnect { .. } => {
            let Some((key, token)) = ["access_token", "token"]
                .into_iter()
                .find_map(|key| connection.get(key).map(|v| (key, v)))
            else {
                return Ok(fetches_tokens(connection).then_some(Credential::Fetched));
            };
            let value = header_value(connector, key, &format!("Bearer {}", token.expose()))?;
            Ok(Some(Credential::Header(http::header::AUTHORIZATION, value)))
        }
        SecurityScheme::WsSecurity => {
            let (Some(username), Some(password), Some(kind)) = (
                connection.get("username"),
                connection.get("password"),
                connection.get("ws_security"),
            ) else {
                return Ok(None);
            };
            let Some(digest) = UsernameToken::kind(kind.expose()) else {
                return Err(AuthProblem::Invalid(format!(
                    "connection value 'ws_security' of connector '{}' must be PasswordText or \
                     PasswordDigest",
                    connector.name
                )));
            };
            Ok(Some(Credential::UsernameToken(UsernameToken {
                username: username.clone(),
                password: password.clone(),
                digest,
            })))
        }
    }
}

/// The connection value an API key scheme uses, with its name. See the module table.
fn api_key_value<'a>(
    connector: &Connector,
    scheme_name: &str,
    connection: &'a IndexMap<String, Secret>,
) -> Option<(&'a str, &'a Secret)> {
    if let Some((key, value)) = connection.get_key_value("api_key") {
        return Some((key.as_str(), value));
    }
    if let Some((key, value)) = connection.get_key_value(scheme_name) {
        return Some((key.as_str(), value));
    }
    let mut secret_params = connector.connection_parameters().filter(|p| p.is_secret());
    match (secret_params.next(), secret_params.next()) {
        (Some(only), None) => connection
            .get_key_value(only.name.as_str())
            .map(|(key, value)| (key.as_str(), value)),
        _ => None,
    }
}

fn pair(name: &str, value: &str) -> Secret {
    let mut out = String::with_capacity(name.len() + value.len() + 1);
    encode::push_component(&mut out, name);
    out.push('=');
    encode::push_component(&mut out, value);
    Secret::new(out)
}

fn header_value(connector: &Connector, key: &str, value: &str) -> Result<HeaderValue, AuthProblem> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        let why = if value.contains(['\r', '\n']) {
            "contains CR or LF"
        } else {
            "contains a control character"
        };
        AuthProblem::Invalid(format!(
            "connection value '{key}' of connector '{}' {why}, so it cannot be sent in a header",
            connector.name
        ))
    })?;
    header.set_sensitive(true);
    Ok(header)
}
