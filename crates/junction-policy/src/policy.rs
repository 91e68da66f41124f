//! Compile: one `policyTemplateInstances` entry → a typed [`Policy`], or precise findings.
//!
//! Every parameter is read with its JSON pointer, so each finding points at the value
//! that is wrong (`/properties/policyTemplateInstances/3/parameters/x-ms-apimTemplateParameter.value`)
//! and, for a malformed expression, the character in it. A finding that is an *error*
//! means the instance cannot run; a *warning* (an unknown parameter name) does not stop it.

use std::fmt;

use http::HeaderName;
use junction_model::{Method, PolicyInstance};
use serde_json::{Map, Value};

use crate::expr::{self, Expr, Flavor, Path, Piece, Root, Source, Step, Template};
use crate::host::HostTemplate;

/// The prefix of template parameter names.
pub const PARAMETER_PREFIX: &str = "x-ms-apimTemplateParameter.";
/// The operations an instance applies to (all when absent or empty).
pub const OPERATIONS_KEY: &str = "x-ms-apimTemplate-operationName";
/// When an instance runs: `Request`, `Response` or `Failure`.
pub const SECTION_KEY: &str = "x-ms-apimTemplate-policySection";

/// When a policy runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// After binding, before the upstream call.
    Request,
    /// After a successful (status below 400) upstream response.
    Response,
    /// After an upstream response with status 400 or above.
    Failure,
}

impl Section {
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Request => "Request",
            Section::Response => "Response",
            Section::Failure => "Failure",
        }
    }
}

/// `existsAction` of `setheader` and `setqueryparameter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistsAction {
    /// Replace every existing value.
    Override,
    /// Keep an existing value; set only when absent.
    Skip,
    /// Add the value next to existing ones.
    Append,
}

/// Where `setvaluefromurl` puts the value it fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueTarget {
    Header(HeaderName),
    Query(String),
    Body(Path),
}

/// A property a data policy works on: for each item of `parent` (each element when it is
/// an array), the value at `sub`; the result is written at `new`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub parent: Path,
    pub sub: Vec<Step>,
    pub new: Path,
}

/// What a policy does, with its typed parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    SetHeader {
        name: HeaderName,
        value: Template,
        action: ExistsAction,
    },
    SetQueryParameter {
        name: String,
        value: Template,
        action: ExistsAction,
    },
    /// `dynamichosturl`, `dynamicsubdomain`.
    HostUrl(HostTemplate),
    /// `routerequesttoendpoint`; `method` is `None` for the original method.
    Route {
        path: Template,
        method: Option<http::Method>,
    },
    SetProperty {
        parent: Path,
        sub: Vec<Step>,
        value: Template,
    },
    StringReplace {
        target: Target,
        from: String,
        to: String,
    },
    ConvertObjectToArray {
        target: Target,
        key_name: String,
        value_name: String,
    },
    ConvertArrayToObject {
        target: Target,
        key: Vec<Step>,
        retain_key: bool,
    },
    StringToArray {
        target: Target,
        delimiters: Vec<char>,
        child: String,
    },
    MoveProperties {
        source: Path,
        source_sub: Vec<Step>,
        destination: Path,
        destination_sub: Vec<Step>,
        only_sub_properties: bool,
    },
    EncodePropertyValue {
        target: Target,
    },
    UpdateNextLink {
        name: String,
        parent: Vec<Step>,
    },
    SetValueFromUrl {
        target: ValueTarget,
        url: Template,
        value: Path,
        method: http::Method,
    },
    /// `setconnectionstatustounauthenticated`: this upstream status means the connection's
    /// credentials are no longer accepted.
    Unauthenticated {
        status: u16,
    },
    /// `pollingtrigger`: what a polled trigger fires and where it polls next ([`crate::trigger`]).
    PollingTrigger {
        config: Vec<(String, Template)>,
        next_link: Option<String>,
        data: Path,
    },
    /// A template Junction does not know.
    Unknown,
}

/// One compiled policy template instance.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Index in `policyTemplateInstances`.
    pub index: usize,
    pub title: Option<String>,
    /// `templateId`, lower-cased.
    pub template: String,
    /// JSON pointer of the instance in `apiProperties.json`.
    pub pointer: String,
    /// The operations it applies to; `None` for all.
    pub operations: Option<Vec<String>>,
    pub section: Section,
    pub kind: Kind,
}

impl Policy {
    /// Whether the instance applies to operation `id`.
    pub fn applies_to(&self, id: &str) -> bool {
        applies(&self.operations, id)
    }

    /// `policy #3 'Set If-Match header' (setvaluefromurl)`, for messages.
    pub fn label(&self) -> String {
        label(self.index, self.title.as_deref(), &self.template)
    }

    /// Whether the policy reads or writes the JSON body of the message it runs on.
    pub fn uses_body(&self) -> bool {
        match &self.kind {
            Kind::SetHeader { value, .. } | Kind::SetQueryParameter { value, .. } => {
                value.reads_body()
            }
            Kind::Route { path, .. } => path.reads_body(),
            Kind::SetValueFromUrl { target, url, .. } => {
                matches!(target, ValueTarget::Body(_)) || url.reads_body()
            }
            Kind::SetProperty { .. }
            | Kind::StringReplace { .. }
            | Kind::ConvertObjectToArray { .. }
            | Kind::ConvertArrayToObject { .. }
            | Kind::StringToArray { .. }
            | Kind::MoveProperties { .. }
            | Kind::EncodePropertyValue { .. }
            | Kind::UpdateNextLink { .. } => true,
            Kind::HostUrl(_)
            | Kind::Unauthenticated { .. }
            | Kind::PollingTrigger { .. }
            | Kind::Unknown => false,
        }
    }

    /// The connection values the policy reads (`@connectionParameters('name'[, default])`),
    /// each with whether the expression gives a default.
    pub fn connection_values(&self) -> Vec<(&str, bool)> {
        let templates: Vec<&Template> = match &self.kind {
            Kind::SetHeader { value, .. } | Kind::SetQueryParameter { value, .. } => vec![value],
            Kind::HostUrl(host) => vec![&host.template],
            Kind::Route { path, .. } => vec![path],
            Kind::SetProperty { value, .. } => vec![value],
            Kind::SetValueFromUrl { url, .. } => vec![url],
            _ => Vec::new(),
        };
        templates
            .into_iter()
            .flat_map(|t| t.exprs())
            .filter_map(|e| match e {
                Expr::Lookup {
                    source: Source::Connection,
                    name,
                    default,
                } => Some((name.as_str(), default.is_some())),
                _ => None,
            })
            .collect()
    }

    /// The operation parameters (`{name}`) the policy's URLs use.
    pub fn placeholders(&self) -> Vec<&str> {
        match &self.kind {
            Kind::Route { path, .. } => path.params().collect(),
            Kind::SetValueFromUrl { url, .. } => url.params().collect(),
            _ => Vec::new(),
        }
    }
}

/// Whether an operation filter lets `id` through.
pub fn applies(operations: &Option<Vec<String>>, id: &str) -> bool {
    match operations {
        None => true,
        Some(ids) => ids.iter().any(|o| o == id),
    }
}

/// `policy #3 'title' (templateid)`.
pub fn label(index: usize, title: Option<&str>, template: &str) -> String {
    match title {
        Some(title) if !title.is_empty() => format!("policy #{index} '{title}' ({template})"),
        _ => format!("policy #{index} ({template})"),
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The instance cannot run.
    Error,
    /// Reported; the instance still runs.
    Warning,
}

/// A problem with one instance, pointing at the parameter concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// `policy-parameter`, `policy-expression`, `policy-unknown-parameter`, `policy-open-host`.
    pub code: &'static str,
    /// JSON pointer into `apiProperties.json`.
    pub pointer: String,
    pub message: String,
    /// For expressions: the character (0-based) of the string value where the problem is.
    pub offset: Option<usize>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pointer, self.message)
    }
}

/// The result of compiling one instance.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The policy, unless an error finding says it cannot run.
    pub policy: Option<Policy>,
    /// The operation filter as far as it could be read (`None`: all operations).
    pub operations: Option<Vec<String>>,
    pub findings: Vec<Finding>,
}

impl Compiled {
    /// The first error, if the instance cannot run.
    pub fn error(&self) -> Option<&Finding> {
        self.findings.iter().find(|f| f.severity == Severity::Error)
    }
}

/// The templates Junction runs, and the parameters each takes (without the prefix).
const TEMPLATES: &[(&str, &[&str])] = &[
    ("setheader", &["name", "value", "existsAction"]),
    ("setqueryparameter", &["name", "value", "existsAction"]),
    ("dynamichosturl", &["urlTemplate"]),
    ("dynamicsubdomain", &["urlTemplate"]),
    ("routerequesttoendpoint", &["newPath", "httpMethod"]),
    (
        "setproperty",
        &[
            "newPropertyParentPathTemplate",
            "newPropertySubPathTemplate",
            "propertyValuePathTemplate",
        ],
    ),
    (
        "stringreplace",
        &[
            "propertyParentPath",
            "propertySubPath",
            "sourceString",
            "replacementString",
            "newPropertyPath",
        ],
    ),
    (
        "convertobjecttoarray",
        &[
            "propertyParentPath",
            "propertySubPath",
            "newPropertyPath",
            "keyName",
            "valueName",
        ],
    ),
    (
        "convertarraytoobject",
        &[
            "propertyParentPath",
            "propertySubPath",
            "keyWithinCollectionPath",
            "newPropertyPath",
            "retainKey",
        ],
    ),
    (
        "stringtoarray",
        &[
            "propertyParentPath",
            "propertySubPath",
            "delimiterList",
            "childPropertyName",
            "newPropertyPath",
        ],
    ),
    (
        "moveproperties",
        &[
            "srcParentPath",
            "srcSubPath",
            "dstParentPath",
            "dstSubPath",
            "copyOnlySubProperties",
        ],
    ),
    (
        "encodepropertyvalue",
        &["propertyParentPath", "propertySubPath", "newPropertyPath"],
    ),
    (
        "updatenextlink",
        &["nextLinkPropertyName", "nextLinkParentPropertyPath"],
    ),
    (
        "setvaluefromurl",
        &[
            "parameterTemplate",
            "parameterValueUrl",
            "parameterValuePathTemplate",
            "httpMethod",
        ],
    ),
    ("setconnectionstatustounauthenticated", &["statusCode"]),
    ("pollingtrigger", &["triggerConfig", "triggerDataPath"]),
];

/// Whether Junction knows the template (`templateId` lower-cased).
pub fn is_known(template: &str) -> bool {
    TEMPLATES.iter().any(|(t, _)| *t == template)
}

/// Compiles instance number `index` of `policyTemplateInstances`.
pub fn compile(instance: &PolicyInstance, index: usize) -> Compiled {
    let mut reader = Reader {
        params: &instance.parameters,
        base: format!("{}/parameters", instance.pointer),
        findings: Vec::new(),
    };
    let operations = reader.operations();
    let template = instance.template_id.as_str();
    let known = TEMPLATES.iter().find(|(t, _)| *t == template);
    if let Some((_, names)) = known {
        reader.unknown_parameters(names);
    }
    let kind = match template {
        "setheader" => reader.set_header(),
        "setqueryparameter" => reader.set_query_parameter(),
        "dynamichosturl" | "dynamicsubdomain" => reader.host_url(),
        "routerequesttoendpoint" => reader.route(),
        "setproperty" => reader.set_property(),
        "stringreplace" => reader.string_replace(),
        "convertobjecttoarray" => reader.object_to_array(),
        "convertarraytoobject" => reader.array_to_object(),
        "stringtoarray" => reader.string_to_array(),
        "moveproperties" => reader.move_properties(),
        "encodepropertyvalue" => reader
            .target_of("propertyParentPath", "propertySubPath", "newPropertyPath")
            .map(|target| Kind::EncodePropertyValue { target }),
        "updatenextlink" => reader.update_next_link(),
        "setvaluefromurl" => reader.set_value_from_url(),
        "setconnectionstatustounauthenticated" => reader.unauthenticated(),
        "pollingtrigger" => reader.polling_trigger(),
        _ => Some(Kind::Unknown),
    };
    let allowed: &[Section] = match template {
        "setheader" => &[Section::Request, Section::Response, Section::Failure],
        "setproperty"
        | "stringreplace"
        | "convertobjecttoarray"
        | "convertarraytoobject"
        | "stringtoarray"
        | "moveproperties"
        | "encodepropertyvalue" => &[Section::Request, Section::Response],
        // Its side call feeds the request; the paconn schema also allows Response, but no
        // published package uses it and nothing in a response could be fetched for.
        "setvaluefromurl" => &[Section::Request],
        "updatenextlink" => &[Section::Response],
        "setconnectionstatustounauthenticated" => &[Section::Response, Section::Failure],
        _ => &[Section::Request],
    };
    let section = reader.section(allowed);
    let broken = reader
        .findings
        .iter()
        .any(|f| f.severity == Severity::Error);
    let policy = match (kind, section, broken) {
        (Some(kind), Some(section), false) => Some(Policy {
            index,
            title: instance.title.clone(),
            template: instance.template_id.clone(),
            pointer: instance.pointer.clone(),
            operations: operations.clone(),
            section,
            kind,
        }),
        _ => None,
    };
    Compiled {
        policy,
        operations,
        findings: reader.findings,
    }
}

struct Reader<'p> {
    params: &'p Map<String, Value>,
    /// Pointer of `parameters`.
    base: String,
    findings: Vec<Finding>,
}

/// RFC 6901 escaping of one reference token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

impl<'p> Reader<'p> {
    fn pointer(&self, key: &str) -> String {
        format!("{}/{}", self.base, escape(key))
    }

    fn error(&mut self, code: &'static str, key: &str, message: String, offset: Option<usize>) {
        self.findings.push(Finding {
            severity: Severity::Error,
            code,
            pointer: self.pointer(key),
            message,
            offset,
        });
    }

    fn bad(&mut self, short: &str, message: String) {
        let key = format!("{PARAMETER_PREFIX}{short}");
        self.error("policy-parameter", &key, message, None);
    }

    fn operations(&mut self) -> Option<Vec<String>> {
        match self.params.get(OPERATIONS_KEY) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut ids = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(id) => ids.push(id.clone()),
                        other => self.findings.push(Finding {
                            severity: Severity::Error,
                            code: "policy-parameter",
                            pointer: format!("{}/{i}", self.pointer(OPERATIONS_KEY)),
                            message: format!(
                                "an operation name must be a string, found {}",
                                kind_of(other)
                            ),
                            offset: None,
                        }),
                    }
                }
                (!ids.is_empty()).then_some(ids)
            }
            Some(Value::String(one)) => Some(vec![one.clone()]),
            Some(other) => {
                let message = format!(
                    "'{OPERATIONS_KEY}' must be an array of operation ids, found {}",
                    kind_of(other)
                );
                self.error("policy-parameter", OPERATIONS_KEY, message, None);
                None
            }
        }
    }

    fn section(&mut self, allowed: &[Section]) -> Option<Section> {
        let default = allowed.first().copied().unwrap_or(Section::Request);
        let value = match self.params.get(SECTION_KEY) {
            None | Some(Value::Null) => return Some(default),
            Some(Value::String(s)) => s.trim(),
            Some(other) => {
                let message = format!(
                    "'{SECTION_KEY}' must be a string (Request, Response or Failure), found {}",
                    kind_of(other)
                );
                self.error("policy-parameter", SECTION_KEY, message, None);
                return None;
            }
        };
        let section = [Section::Request, Section::Response, Section::Failure]
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(value));
        match section {
            Some(s) if allowed.contains(&s) => Some(s),
            _ => {
                let names: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
                let message = format!(
                    "this template runs in the {} section{}, not '{value}'",
                    names.join(" or "),
                    if names.len() > 1 { "s" } else { "" }
                );
                self.error("policy-parameter", SECTION_KEY, message, None);
                None
            }
        }
    }

    fn unknown_parameters(&mut self, names: &[&str]) {
        for key in self.params.keys() {
            if key == OPERATIONS_KEY || key == SECTION_KEY {
                continue;
            }
            let short = key.strip_prefix(PARAMETER_PREFIX);
            if short.is_some_and(|s| names.contains(&s)) {
                continue;
            }
            let near = short.and_then(|s| {
                names
                    .iter()
                    .find(|n| n.eq_ignore_ascii_case(s))
                    .map(|n| format!("; did you mean '{PARAMETER_PREFIX}{n}'?"))
            });
            let message = format!(
                "'{key}' is not a parameter of this template; ignored{}",
                near.unwrap_or_else(|| format!(
                    " (it takes {})",
                    names
                        .iter()
                        .map(|n| format!("'{n}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            );
            self.findings.push(Finding {
                severity: Severity::Warning,
                code: "policy-unknown-parameter",
                pointer: self.pointer(key),
                message,
                offset: None,
            });
        }
    }

    /// A string parameter; numbers and booleans are read as their text.
    fn string(&mut self, short: &str, required: bool) -> Option<String> {
        let key = format!("{PARAMETER_PREFIX}{short}");
        match self.params.get(&key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(v.to_string()),
            None | Some(Value::Null) => {
                if required {
                    self.findings.push(Finding {
                        severity: Severity::Error,
                        code: "policy-parameter",
                        pointer: self.base.clone(),
                        message: format!("the required parameter '{key}' is missing"),
                        offset: None,
                    });
                }
                None
            }
            Some(other) => {
                self.bad(
                    short,
                    format!("'{key}' must be a string, found {}", kind_of(other)),
                );
                None
            }
        }
    }

    fn template(&mut self, short: &str, text: &str, flavor: Flavor) -> Option<Template> {
        match expr::parse_template(text, flavor) {
            Ok(t) => Some(t),
            Err(e) => {
                let key = format!("{PARAMETER_PREFIX}{short}");
                self.error(
                    "policy-expression",
                    &key,
                    format!("{e} in `{}`", shorten(text)),
                    Some(e.offset),
                );
                None
            }
        }
    }

    fn path(&mut self, short: &str, required: bool, roots: &[Root]) -> Option<Path> {
        let text = self.string(short, required)?;
        match expr::parse_path(&text) {
            Ok(path) if roots.contains(&path.root) => Some(path),
            Ok(path) => {
                let names: Vec<&str> = roots.iter().map(|r| r.name()).collect();
                self.bad(
                    short,
                    format!(
                        "the path must start at {}, not {}",
                        names.join(" or "),
                        path.root.name()
                    ),
                );
                None
            }
            Err(e) => {
                let key = format!("{PARAMETER_PREFIX}{short}");
                self.error(
                    "policy-expression",
                    &key,
                    format!("{e} in `{}`", shorten(&text)),
                    Some(e.offset),
                );
                None
            }
        }
    }

    fn steps(&mut self, short: &str) -> Option<Vec<Step>> {
        let Some(text) = self.string(short, false) else {
            return Some(Vec::new());
        };
        match expr::parse_steps(&text) {
            Ok(steps) => Some(steps),
            Err(e) => {
                let key = format!("{PARAMETER_PREFIX}{short}");
                self.error(
                    "policy-expression",
                    &key,
                    format!("{e} in `{}`", shorten(&text)),
                    Some(e.offset),
                );
                None
            }
        }
    }

    fn flag(&mut self, short: &str, default: bool) -> Option<bool> {
        let key = format!("{PARAMETER_PREFIX}{short}");
        match self.params.get(&key) {
            None | Some(Value::Null) => Some(default),
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(s)) if s.trim().is_empty() => Some(default),
            Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("true") => Some(true),
            Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("false") => Some(false),
            Some(other) => {
                self.bad(
                    short,
                    format!("'{key}' must be \"true\" or \"false\", found {other}"),
                );
                None
            }
        }
    }

    fn exists_action(&mut self) -> Option<ExistsAction> {
        let Some(text) = self.string("existsAction", false) else {
            return Some(ExistsAction::Override);
        };
        match text.trim().to_ascii_lowercase().as_str() {
            "override" | "" => Some(ExistsAction::Override),
            "skip" => Some(ExistsAction::Skip),
            "append" => Some(ExistsAction::Append),
            _ => {
                self.bad(
                    "existsAction",
                    format!("'{text}' is not an action; use override, skip or append"),
                );
                None
            }
        }
    }

    fn set_header(&mut self) -> Option<Kind> {
        let name = self.string("name", true);
        let value = self.string("value", true);
        let action = self.exists_action();
        let header = name.and_then(|name| {
            let trimmed = name.trim();
            match HeaderName::from_bytes(trimmed.as_bytes()) {
                Ok(h) if MANAGED_HEADERS.contains(&h.as_str()) => {
                    self.bad(
                        "name",
                        format!(
                            "'{trimmed}' is managed by the gateway and cannot be set by a policy"
                        ),
                    );
                    None
                }
                Ok(h) => Some(h),
                Err(_) => {
                    self.bad("name", format!("'{name}' is not a valid header name"));
                    None
                }
            }
        });
        let value = value.and_then(|v| self.template("value", &v, Flavor::TEXT));
        Some(Kind::SetHeader {
            name: header?,
            value: value?,
            action: action?,
        })
    }

    fn set_query_parameter(&mut self) -> Option<Kind> {
        let name = self.string("name", true);
        let value = self.string("value", true);
        let action = self.exists_action();
        let name = name.and_then(|n| {
            // Some packages write the name encoded (`%24top` for `$top`).
            let decoded = percent_encoding::percent_decode_str(n.trim())
                .decode_utf8_lossy()
                .into_owned();
            if decoded.is_empty() {
                self.bad("name", "the query parameter name is empty".into());
                None
            } else {
                Some(decoded)
            }
        });
        let value = value.and_then(|v| self.template("value", &v, Flavor::TEXT));
        if value.as_ref().is_some_and(Template::reads_body) {
            self.bad(
                "value",
                "a query parameter cannot be read from the body".into(),
            );
            return None;
        }
        Some(Kind::SetQueryParameter {
            name: name?,
            value: value?,
            action: action?,
        })
    }

    fn host_url(&mut self) -> Option<Kind> {
        let text = self.string("urlTemplate", true)?;
        let template = self.template("urlTemplate", text.trim(), Flavor::TEXT)?;
        match HostTemplate::compile(template) {
            Ok(host) => {
                if let Some(what) = &host.open_host {
                    self.findings.push(Finding {
                        severity: Severity::Warning,
                        code: "policy-open-host",
                        pointer: self.pointer(&format!("{PARAMETER_PREFIX}urlTemplate")),
                        message: format!(
                            "the backend host comes from the request ({what}), so any client could send this connector's credentials anywhere; calls are refused unless `allowed_hosts` lists the hosts they may reach"
                        ),
                        offset: None,
                    });
                }
                Some(Kind::HostUrl(host))
            }
            Err(why) => {
                self.bad("urlTemplate", format!("{why} (in `{}`)", shorten(&text)));
                None
            }
        }
    }

    fn route(&mut self) -> Option<Kind> {
        let path = self.string("newPath", true);
        let method = match self.string("httpMethod", false) {
            None => Some(None),
            Some(m) if m.trim().eq_ignore_ascii_case("@Request.OriginalHTTPMethod") => Some(None),
            Some(m) => match m.trim().parse::<Method>() {
                Ok(method) => http::Method::from_bytes(method.as_str().as_bytes())
                    .ok()
                    .map(Some),
                Err(()) => {
                    self.bad(
                        "httpMethod",
                        format!(
                            "'{m}' is not a method; use GET, POST, PUT, PATCH, DELETE, OPTIONS, HEAD or @Request.OriginalHTTPMethod"
                        ),
                    );
                    None
                }
            },
        };
        let path = path.and_then(|p| self.url_path("newPath", &p));
        Some(Kind::Route {
            path: path?,
            method: method?,
        })
    }

    /// A path (and optional query) relative to the backend base URL.
    fn url_path(&mut self, short: &str, text: &str) -> Option<Template> {
        let trimmed = text.trim();
        if trimmed.contains("://") {
            self.bad(
                short,
                format!(
                    "`{}` must be a path on the same backend, not an absolute URL",
                    shorten(text)
                ),
            );
            return None;
        }
        if trimmed.contains('#') {
            self.bad(short, "a path cannot have a fragment (`#`)".into());
            return None;
        }
        let mut template = self.template(short, trimmed, Flavor::URL_PATH)?;
        if template.reads_body() {
            self.bad(short, "a path cannot be read from the body".into());
            return None;
        }
        if !matches!(template.pieces.first(), Some(Piece::Text(t)) if t.starts_with('/')) {
            template.pieces.insert(0, Piece::Text("/".into()));
        }
        Some(template)
    }

    fn target_of(&mut self, parent: &str, sub: &str, new: &str) -> Option<Target> {
        let parent = self.path(parent, true, &[Root::Body]);
        let sub = self.steps(sub);
        // A plain property name (`peopleObject`, as Power Platform's own examples write it)
        // is a property of each item of the parent.
        let plain = self
            .string(new, false)
            .filter(|t| !t.trim_start().starts_with('@') && !t.contains('('))
            .and_then(|t| expr::parse_steps(&t).ok())
            .filter(|steps| !steps.is_empty());
        let new = match plain {
            Some(steps) => Some(Path {
                root: Root::Item,
                steps,
            }),
            None => self.path(new, true, &[Root::Body, Root::Item]),
        };
        Some(Target {
            parent: parent?,
            sub: sub?,
            new: new?,
        })
    }

    fn set_property(&mut self) -> Option<Kind> {
        let parent = self.path("newPropertyParentPathTemplate", true, &[Root::Body]);
        let sub_text = self.string("newPropertySubPathTemplate", true);
        let sub = sub_text.and_then(|text| match expr::parse_steps(&text) {
            Ok(steps) => Some(steps),
            Err(e) => {
                let key = format!("{PARAMETER_PREFIX}newPropertySubPathTemplate");
                self.error(
                    "policy-expression",
                    &key,
                    format!("{e} in `{}`", shorten(&text)),
                    Some(e.offset),
                );
                None
            }
        });
        let value = self
            .string("propertyValuePathTemplate", true)
            .and_then(|v| self.template("propertyValuePathTemplate", &v, Flavor::VALUE));
        Some(Kind::SetProperty {
            parent: parent?,
            sub: sub?,
            value: value?,
        })
    }

    fn string_replace(&mut self) -> Option<Kind> {
        let target = self.target_of("propertyParentPath", "propertySubPath", "newPropertyPath");
        let from = self.string("sourceString", true);
        let to = self.string("replacementString", true);
        if from.as_deref() == Some("") {
            self.bad("sourceString", "the string to replace is empty".into());
            return None;
        }
        Some(Kind::StringReplace {
            target: target?,
            from: from?,
            to: to?,
        })
    }

    fn object_to_array(&mut self) -> Option<Kind> {
        let target = self.target_of("propertyParentPath", "propertySubPath", "newPropertyPath");
        let key_name = self
            .string("keyName", false)
            .unwrap_or_else(|| "key".into());
        let value_name = self
            .string("valueName", false)
            .unwrap_or_else(|| "value".into());
        Some(Kind::ConvertObjectToArray {
            target: target?,
            key_name,
            value_name,
        })
    }

    fn array_to_object(&mut self) -> Option<Kind> {
        let target = self.target_of("propertyParentPath", "propertySubPath", "newPropertyPath");
        let key_text = self.string("keyWithinCollectionPath", true);
        let key = key_text.and_then(|text| match expr::parse_steps(&text) {
            Ok(steps) if !steps.is_empty() => Some(steps),
            Ok(_) => {
                self.bad(
                    "keyWithinCollectionPath",
                    "the key property of each item is empty".into(),
                );
                None
            }
            Err(e) => {
                let key = format!("{PARAMETER_PREFIX}keyWithinCollectionPath");
                self.error("policy-expression", &key, e.to_string(), Some(e.offset));
                None
            }
        });
        let retain_key = self.flag("retainKey", true);
        Some(Kind::ConvertArrayToObject {
            target: target?,
            key: key?,
            retain_key: retain_key?,
        })
    }

    fn string_to_array(&mut self) -> Option<Kind> {
        let target = self.target_of("propertyParentPath", "propertySubPath", "newPropertyPath");
        let delimiters = self.string("delimiterList", true);
        let child = self.string("childPropertyName", true);
        if delimiters.as_deref() == Some("") {
            self.bad("delimiterList", "no delimiter is given".into());
            return None;
        }
        if child.as_deref().is_some_and(|c| c.trim().is_empty()) {
            self.bad(
                "childPropertyName",
                "the child property name is empty".into(),
            );
            return None;
        }
        Some(Kind::StringToArray {
            target: target?,
            delimiters: delimiters?.chars().collect(),
            child: child?,
        })
    }

    fn move_properties(&mut self) -> Option<Kind> {
        let source = self.path("srcParentPath", true, &[Root::Body]);
        let source_sub = self.steps("srcSubPath");
        let destination = self.path("dstParentPath", true, &[Root::Body]);
        let destination_sub = self.steps("dstSubPath");
        let only = self.flag("copyOnlySubProperties", false);
        Some(Kind::MoveProperties {
            source: source?,
            source_sub: source_sub?,
            destination: destination?,
            destination_sub: destination_sub?,
            only_sub_properties: only?,
        })
    }

    fn update_next_link(&mut self) -> Option<Kind> {
        let name = self.string("nextLinkPropertyName", true);
        let parent = match self.string("nextLinkParentPropertyPath", false) {
            None => Some(Vec::new()),
            Some(text) if text.trim_start().starts_with('@') => match expr::parse_path(&text) {
                Ok(path) if path.root == Root::Body => Some(path.steps),
                _ => {
                    self.bad(
                        "nextLinkParentPropertyPath",
                        format!("`{}` is not a path such as `@body().page`", shorten(&text)),
                    );
                    None
                }
            },
            Some(_) => self.steps("nextLinkParentPropertyPath"),
        };
        if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            self.bad(
                "nextLinkPropertyName",
                "the next link property name is empty".into(),
            );
            return None;
        }
        Some(Kind::UpdateNextLink {
            name: name?,
            parent: parent?,
        })
    }

    fn set_value_from_url(&mut self) -> Option<Kind> {
        let target_text = self.string("parameterTemplate", true);
        let url = self.string("parameterValueUrl", true);
        let value = self.path("parameterValuePathTemplate", true, &[Root::Body]);
        let method = match self.string("httpMethod", false) {
            None => Some(http::Method::GET),
            Some(m) => match m.trim().to_ascii_uppercase().as_str() {
                "GET" => Some(http::Method::GET),
                "POST" => Some(http::Method::POST),
                "PUT" => Some(http::Method::PUT),
                _ => {
                    self.bad("httpMethod", format!("'{m}' is not GET, POST or PUT"));
                    None
                }
            },
        };
        let target = target_text.and_then(|text| {
            let template = self.template("parameterTemplate", text.trim(), Flavor::TEXT)?;
            match template.pieces.as_slice() {
                [Piece::Expr(Expr::Lookup { source: Source::Header, name, .. })] => {
                    match HeaderName::from_bytes(name.as_bytes()) {
                        Ok(h) => Some(ValueTarget::Header(h)),
                        Err(_) => {
                            self.bad("parameterTemplate", format!("'{name}' is not a valid header name"));
                            None
                        }
                    }
                }
                [Piece::Expr(Expr::Lookup { source: Source::Query, name, .. })] => {
                    Some(ValueTarget::Query(name.clone()))
                }
                [Piece::Expr(Expr::Path(path))] if path.root == Root::Body => {
                    Some(ValueTarget::Body(path.clone()))
                }
                _ => {
                    self.bad(
                        "parameterTemplate",
                        format!(
                            "`{}` must name one place to set: `@headers('name')`, `@queryParameters('name')` or `@body().path`",
                            shorten(&text)
                        ),
                    );
                    None
                }
            }
        });
        let url = url.and_then(|u| self.url_path("parameterValueUrl", &u));
        Some(Kind::SetValueFromUrl {
            target: target?,
            url: url?,
            value: value?,
            method: method?,
        })
    }

    fn unauthenticated(&mut self) -> Option<Kind> {
        let key = format!("{PARAMETER_PREFIX}statusCode");
        let status = match self.params.get(&key) {
            None | Some(Value::Null) => Some(401),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(_) => None,
        };
        match status
            .and_then(|s| u16::try_from(s).ok())
            .filter(|s| (400..=599).contains(s))
        {
            Some(status) => Some(Kind::Unauthenticated { status }),
            None => {
                self.bad(
                    "statusCode",
                    format!(
                        "'{key}' must be an HTTP error status (400–599), found {}",
                        self.params
                            .get(&key)
                            .map_or("nothing".into(), Value::to_string)
                    ),
                );
                None
            }
        }
    }

    fn polling_trigger(&mut self) -> Option<Kind> {
        let key = format!("{PARAMETER_PREFIX}triggerConfig");
        let mut config = Vec::new();
        let mut next_link = None;
        let mut ok = true;
        match self.params.get(&key) {
            Some(Value::Object(entries)) => {
                for (name, value) in entries {
                    let pointer = format!("{}/{}", self.pointer(&key), escape(name));
                    let Value::String(text) = value else {
                        self.findings.push(Finding {
                            severity: Severity::Error,
                            code: "policy-parameter",
                            pointer,
                            message: format!(
                                "the value of query parameter '{name}' must be a string, found {}",
                                kind_of(value)
                            ),
                            offset: None,
                        });
                        ok = false;
                        continue;
                    };
                    if name == "x-ms-triggerConfig-nextLink" {
                        next_link = Some(text.clone());
                        continue;
                    }
                    if name.is_empty() {
                        self.findings.push(Finding {
                            severity: Severity::Error,
                            code: "policy-parameter",
                            pointer,
                            message: "a query parameter of the trigger has an empty name".into(),
                            offset: None,
                        });
                        ok = false;
                        continue;
                    }
                    match expr::parse_template(text, Flavor::TEXT) {
                        Ok(t) => config.push((name.clone(), t)),
                        Err(e) => {
                            self.findings.push(Finding {
                                severity: Severity::Error,
                                code: "policy-expression",
                                pointer,
                                message: format!("{e} in `{}`", shorten(text)),
                                offset: Some(e.offset),
                            });
                            ok = false;
                        }
                    }
                }
            }
            None | Some(Value::Null) => {
                self.findings.push(Finding {
                    severity: Severity::Error,
                    code: "policy-parameter",
                    pointer: self.base.clone(),
                    message: format!("the required parameter '{key}' is missing"),
                    offset: None,
                });
                ok = false;
            }
            Some(other) => {
                self.bad(
                    "triggerConfig",
                    format!(
                        "'{key}' must be an object of query parameters, found {}",
                        kind_of(other)
                    ),
                );
                ok = false;
            }
        }
        let data = self.path("triggerDataPath", true, &[Root::TriggerBody, Root::Body]);
        if !ok {
            return None;
        }
        Some(Kind::PollingTrigger {
            config,
            next_link,
            data: data?,
        })
    }
}

/// Headers the gateway sets itself. (`Host` is not among them: a package may set it to
/// reach a virtual host on the backend's address; see `apply`.)
const MANAGED_HEADERS: [&str; 6] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "keep-alive",
];

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn shorten(text: &str) -> String {
    let mut out: String = text.chars().take(120).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}
