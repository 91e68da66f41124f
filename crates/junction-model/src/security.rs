//! How a connector authenticates to its backend: security schemes and requirements.

use indexmap::IndexMap;
use serde::Serialize;

/// Where an API key travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKeyLocation {
    Header,
    Query,
    Cookie,
}

/// A security scheme (Swagger `securityDefinitions` entry, OpenAPI `securitySchemes` entry).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum SecurityScheme {
    /// An API key sent in the header, query parameter or cookie `name`.
    ApiKey {
        name: String,
        location: ApiKeyLocation,
    },
    /// HTTP basic authentication.
    Basic,
    /// HTTP bearer authentication (OpenAPI 3 `http` + `bearer`).
    Bearer,
    /// OAuth 2.0. `flow` is Swagger's flow name (`accessCode`, `implicit`, `password`,
    /// `application`) or the OpenAPI 3 flow key (`authorizationCode`, `clientCredentials` …).
    #[serde(rename = "oauth2")]
    OAuth2 {
        flow: Option<String>,
        authorization_url: Option<String>,
        token_url: Option<String>,
        refresh_url: Option<String>,
        scopes: Vec<String>,
    },
    /// OpenID Connect discovery.
    OpenIdConnect { url: String },
    /// WS-Security UsernameToken in the SOAP envelope's header (SOAP connectors).
    WsSecurity,
}

/// One way to satisfy security: scheme name → required scopes. All entries apply together;
/// a list of requirements is satisfied by any one of them. An empty requirement means
/// "no authentication".
pub type SecurityRequirement = IndexMap<String, Vec<String>>;
