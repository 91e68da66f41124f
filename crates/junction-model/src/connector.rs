//! A connector: one backend API with its operations, auth, connection parameters and policies.

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::operation::{Method, Operation};
use crate::security::{SecurityRequirement, SecurityScheme};

/// Vendor extensions (`x-…` keys) exactly as written, in source order.
pub type Extensions = Map<String, Value>;

/// The format a connector's definition was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SourceFormat {
    #[serde(rename = "swagger-2.0")]
    Swagger2,
    #[serde(rename = "openapi-3.0")]
    OpenApi30,
    #[serde(rename = "openapi-3.1")]
    OpenApi31,
    /// A WSDL 1.1 service whose SOAP operations are served as JSON.
    #[serde(rename = "wsdl-1.1")]
    Wsdl11,
}

/// Where the definition says the backend lives. `[connector.NAME] backend = "URL"` replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upstream {
    /// `https` or `http`; the first of Swagger's `schemes`, preferring `https`.
    pub scheme: String,
    /// Host and optional port, e.g. `api.example.com:8443`. Empty when the definition
    /// names none (Power Platform then needs a policy such as `dynamichosturl`).
    pub host: String,
    /// Path prefix of every operation: `/` or `/v1`, never with a trailing slash unless `/`.
    pub base_path: String,
}

impl Upstream {
    /// `scheme://host` followed by the base path without its trailing slash.
    pub fn base_url(&self) -> String {
        let base = self.base_path.trim_end_matches('/');
        format!("{}://{}{}", self.scheme, self.host, base)
    }
}

/// One backend API, normalized.
#[derive(Debug, Clone, Serialize)]
pub struct Connector {
    /// The URL and config name: the folder name lower-cased, see [`crate::connector_name`].
    pub name: String,
    /// `info.title`.
    pub title: String,
    pub description: Option<String>,
    /// `info.version`.
    pub version: Option<String>,
    pub format: SourceFormat,
    pub upstream: Upstream,
    pub operations: Vec<Operation>,
    /// Security schemes by name (Swagger `securityDefinitions`, OpenAPI `components.securitySchemes`).
    pub security_schemes: IndexMap<String, SecurityScheme>,
    /// The document-wide security requirement; operations may override it.
    pub security: Vec<SecurityRequirement>,
    /// Named JSON Schemas every `$ref` in this connector points into, as `#/definitions/NAME`.
    pub definitions: Map<String, Value>,
    /// `apiProperties.json`, present for Power Platform packages.
    pub properties: Option<ApiProperties>,
    /// Top-level `x-…` extensions of the definition.
    pub extensions: Extensions,
    /// The XML types of a connector imported from a WSDL.
    pub soap: Option<crate::soap::SoapService>,
    /// Path of the definition file the connector was read from, for messages.
    pub source: String,
}

impl Connector {
    /// Finds an operation by its `operationId`.
    pub fn operation(&self, id: &str) -> Option<&Operation> {
        self.operations.iter().find(|op| op.id == id)
    }

    /// Finds the operation declared for `method` on the path template `path`.
    pub fn operation_at(&self, method: Method, path: &str) -> Option<&Operation> {
        self.operations
            .iter()
            .find(|op| op.method == method && op.path == path)
    }

    /// Follows `$ref` chains (`#/definitions/NAME`) from `schema` to the schema they name.
    /// Returns `schema` itself when it is not a reference, and `None` for a dangling or
    /// circular chain (which the importer has already reported).
    pub fn resolve<'a>(&'a self, mut schema: &'a Value) -> Option<&'a Value> {
        for _ in 0..64 {
            match schema.get("$ref").and_then(Value::as_str) {
                Some(reference) => {
                    let name = reference.strip_prefix("#/definitions/")?;
                    schema = self.definitions.get(&unescape_pointer_token(name))?;
                }
                None => return Some(schema),
            }
        }
        None
    }

    /// The connection parameters from `apiProperties.json`, or none.
    pub fn connection_parameters(&self) -> impl Iterator<Item = &ConnectionParameter> {
        self.properties
            .iter()
            .flat_map(|p| p.connection_parameters.values())
    }

    /// The policy template instances from `apiProperties.json`, in declared order.
    pub fn policies(&self) -> &[PolicyInstance] {
        self.properties
            .as_ref()
            .map(|p| p.policy_template_instances.as_slice())
            .unwrap_or(&[])
    }
}

/// Undoes RFC 6901 escaping of one reference token (`~1` → `/`, `~0` → `~`).
pub(crate) fn unescape_pointer_token(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// `apiProperties.json` of a Power Platform package.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApiProperties {
    pub connection_parameters: IndexMap<String, ConnectionParameter>,
    pub connection_parameter_sets: Option<ConnectionParameterSets>,
    pub policy_template_instances: Vec<PolicyInstance>,
    pub capabilities: Vec<String>,
    pub publisher: Option<String>,
    pub stack_owner: Option<String>,
    pub icon_brand_color: Option<String>,
    /// Operation ids handled by the package's custom code script (`scriptOperations`).
    pub script_operations: Vec<String>,
    /// Custom code (a C# `script.csx`) the package declares, if any. Junction cannot run it.
    pub custom_code: Option<CustomCode>,
    /// Every other key of `properties`, as written.
    pub other: Map<String, Value>,
}

/// Custom code of a package: `script.csx`, run by Power Platform instead of (or around) the
/// backend call for some operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomCode {
    /// The operation ids the script handles; empty when it handles every operation.
    pub operations: Vec<String>,
    /// What declares it: `scriptOperations`, `script.operationIds` or a `script.csx` file.
    pub declared_by: String,
    /// JSON pointer of the declaration in `apiProperties.json` (empty for a file).
    pub pointer: String,
}

impl CustomCode {
    /// Whether the script handles operation `id`.
    pub fn handles(&self, id: &str) -> bool {
        self.operations.is_empty() || self.operations.iter().any(|o| o == id)
    }
}

/// One entry of `connectionParameters`: a value the user supplies when creating a connection.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionParameter {
    pub name: String,
    /// `string`, `securestring`, `oauthSetting`, `int`, `bool`, `gatewaySetting` …, as written
    /// (the importer lower-cases nothing here; use [`ConnectionParameter::is_secret`]).
    pub kind: String,
    /// `uiDefinition.displayName`.
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub required: bool,
    /// `uiDefinition.constraints.allowedValues[].value`, when constrained.
    pub allowed_values: Vec<String>,
    /// `oAuthSettings` for OAuth parameters.
    pub oauth_settings: Option<Value>,
    /// The whole entry as written.
    pub raw: Value,
}

impl ConnectionParameter {
    /// A required `oauthSetting` parameter `name` with `oAuthSettings` `settings`.
    pub fn oauth_setting(name: &str, settings: Value) -> ConnectionParameter {
        ConnectionParameter {
            name: name.to_owned(),
            kind: "oauthSetting".into(),
            display_name: None,
            description: None,
            required: true,
            allowed_values: Vec::new(),
            oauth_settings: Some(settings),
            raw: Value::Null,
        }
    }

    /// Whether values of this parameter are secrets (secure strings and OAuth settings).
    pub fn is_secret(&self) -> bool {
        self.kind.eq_ignore_ascii_case("securestring")
            || self.kind.eq_ignore_ascii_case("oauthsetting")
            || self.kind.eq_ignore_ascii_case("secureobject")
    }
}

/// `connectionParameterSets`: the alternative ways to authenticate of a multi-auth connector.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionParameterSets {
    pub ui_definition: Value,
    pub values: Vec<ConnectionParameterSet>,
}

/// One alternative of a multi-auth connector.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionParameterSet {
    pub name: String,
    pub display_name: Option<String>,
    pub parameters: IndexMap<String, ConnectionParameter>,
}

/// One entry of `policyTemplateInstances`.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInstance {
    /// `templateId` lower-cased; Power Platform matches it case-insensitively.
    pub template_id: String,
    pub title: Option<String>,
    /// `parameters` as written; the policy stage interprets them.
    pub parameters: Map<String, Value>,
    /// JSON pointer of this instance in `apiProperties.json`, for load-time diagnostics.
    pub pointer: String,
}
