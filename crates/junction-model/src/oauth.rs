//! OAuth settings of an `oauthSetting` connection parameter, read as Power Platform runs them.
//!
//! [`Settings`] reads `oAuthSettings`: the identity provider, the app's client id and
//! scopes, `customParameters` and `additionalParameters`. Endpoints come, in this order,
//! from `authorizationUrlTemplate` / `tokenUrlTemplate` / `refreshUrlTemplate`, from
//! `authorizationUrl` / `tokenUrl` / `refreshUrl`, or from the first-party provider table
//! [`PROVIDERS`] (`aad`, `aadcertificate`, `facebook`, `docusign` …). Templates carry
//! `{placeholders}`, filled by [`Settings::lookup`] from connection values, additional and
//! custom parameters and provider defaults, or from the flow ([`FLOW_VALUES`]): see
//! [`render`]. [`Settings::problems`] finds at load time what would fail at login.
//! Nothing here does I/O.

use serde_json::Value;

/// Placeholders the flow fills (matched case-insensitively): the app, the login and its
/// answer. `{scopes}` / `{scope}` are the scopes joined by `scopeListDelimiter`.
pub const FLOW_VALUES: &[&str] = &[
    "clientId",
    "clientSecret",
    "redirectUrl",
    "state",
    "scopes",
    "scope",
    "code",
    "refreshToken",
];

/// Connection values of an OAuth parameter `TOKEN` (as `TOKEN:NAME`) that set up its app
/// and flow, besides values for the settings' placeholders and additional parameters.
pub const CONNECTION_SETTINGS: &[&str] = &[
    "clientId",
    "clientSecret",
    "grantType",
    "scopes",
    "authorizationUrl",
    "tokenUrl",
    "refreshUrl",
    "tenantId",
    "certificate",
    "certificatePassword",
];

/// Which of those are sealed like secrets.
pub const SECRET_SETTINGS: &[&str] = &["clientSecret", "certificate", "certificatePassword"];

/// A first-party identity provider whose settings give no URLs: its well-known endpoints,
/// as templates over its custom parameters (with defaults).
#[derive(Debug)]
pub struct Provider {
    /// `identityProvider`, lower-cased.
    pub name: &'static str,
    pub authorize: &'static str,
    pub token: &'static str,
    /// Values of the custom parameters the templates use, when the settings give none.
    pub defaults: &'static [(&'static str, &'static str)],
}

/// The Microsoft identity platform (v2 endpoints) for `aad` and `aadcertificate`.
const AAD_DEFAULTS: &[(&str, &str)] = &[
    ("loginUri", "https://login.microsoftonline.com"),
    ("tenantId", "common"),
];

/// First-party identity providers (docs/config.md, "OAuth2 to backends", has the same table).
pub const PROVIDERS: &[Provider] = &[
    Provider {
        name: "aad",
        authorize: "{loginUri}/{tenantId}/oauth2/v2.0/authorize",
        token: "{loginUri}/{tenantId}/oauth2/v2.0/token",
        defaults: AAD_DEFAULTS,
    },
    Provider {
        name: "aadcertificate",
        authorize: "{loginUri}/{tenantId}/oauth2/v2.0/authorize",
        token: "{loginUri}/{tenantId}/oauth2/v2.0/token",
        defaults: AAD_DEFAULTS,
    },
    Provider {
        name: "facebook",
        authorize: "https://www.facebook.com/dialog/oauth",
        token: "https://graph.facebook.com/oauth/access_token",
        defaults: &[],
    },
    Provider {
        name: "docusign",
        authorize: "{LoginUri}/oauth/auth",
        token: "{LoginUri}/oauth/token",
        defaults: &[("LoginUri", "https://account.docusign.com")],
    },
    Provider {
        name: "github",
        authorize: "https://github.com/login/oauth/authorize",
        token: "https://github.com/login/oauth/access_token",
        defaults: &[],
    },
    Provider {
        name: "google",
        authorize: "https://accounts.google.com/o/oauth2/v2/auth",
        token: "https://oauth2.googleapis.com/token",
        defaults: &[],
    },
    Provider {
        name: "dropbox",
        authorize: "https://www.dropbox.com/oauth2/authorize",
        token: "https://api.dropboxapi.com/oauth2/token",
        defaults: &[],
    },
    Provider {
        name: "salesforce",
        authorize: "{LoginUri}/services/oauth2/authorize",
        token: "{LoginUri}/services/oauth2/token",
        defaults: &[("LoginUri", "https://login.salesforce.com")],
    },
];

/// The three endpoints of an OAuth app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Authorization,
    Token,
    Refresh,
}

impl Endpoint {
    /// The name Power Platform's custom parameters use: `authorization`, `token`, `refresh`.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Authorization => "authorization",
            Endpoint::Token => "token",
            Endpoint::Refresh => "refresh",
        }
    }

    /// The connection value (`TOKEN:NAME`) and `[connector.NAME.oauth]` key that replace
    /// its URL: `authorizationUrl`, `tokenUrl`, `refreshUrl`.
    pub fn setting(self) -> &'static str {
        match self {
            Endpoint::Authorization => "authorizationUrl",
            Endpoint::Token => "tokenUrl",
            Endpoint::Refresh => "refreshUrl",
        }
    }
}

/// One of `additionalParameters`: a value that applies only when another connection
/// parameter has one of some values (it is empty otherwise).
#[derive(Debug, Clone)]
pub struct Additional {
    pub name: String,
    pub secure: bool,
    /// (parameter, values it may have; `None` for unset).
    pub applicable_when: Vec<(String, Vec<Option<String>>)>,
}

/// `oAuthSettings`, read.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `identityProvider` lower-cased (`oauth2generic` when missing).
    pub provider: String,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// `scopes`, each entry split at whitespace.
    pub scopes: Vec<String>,
    /// `scopeListDelimiter` (a space when missing or empty).
    pub scope_delimiter: String,
    /// `customParameters` by name as written, with their value (`None` for null).
    pub custom: Vec<(String, Option<String>)>,
    pub additional: Vec<Additional>,
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("value").and_then(text),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Settings {
    /// Reads `oAuthSettings` (anything not an object reads as empty settings).
    pub fn parse(value: &Value) -> Settings {
        let get = |name: &str| {
            value.as_object().and_then(|o| {
                o.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            })
        };
        let custom: Vec<(String, Option<String>)> = get("customParameters")
            .and_then(Value::as_object)
            .map(|o| o.iter().map(|(k, v)| (k.clone(), text(v))).collect())
            .unwrap_or_default();
        let additional = get("additionalParameters")
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .map(|(name, spec)| Additional {
                        name: name.clone(),
                        secure: spec
                            .get("type")
                            .and_then(Value::as_str)
                            .is_some_and(|t| t.eq_ignore_ascii_case("securestring")),
                        applicable_when: spec
                            .get("applicableWhen")
                            .and_then(Value::as_array)
                            .map(|list| {
                                list.iter()
                                    .filter_map(|c| {
                                        let parameter = c.get("parameter")?.as_str()?.to_owned();
                                        let values = c
                                            .get("oneOf")?
                                            .as_array()?
                                            .iter()
                                            .map(|v| v.as_str().map(str::to_owned))
                                            .collect();
                                        Some((parameter, values))
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut settings = Settings {
            provider: get("identityProvider")
                .and_then(Value::as_str)
                .unwrap_or("oauth2generic")
                .to_ascii_lowercase(),
            client_id: get("clientId")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            client_secret: get("clientSecret")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            scopes: get("scopes")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(Value::as_str)
                        .flat_map(str::split_whitespace)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            scope_delimiter: " ".to_owned(),
            custom,
            additional,
        };
        if let Some(delimiter) = settings.custom("scopeListDelimiter") {
            settings.scope_delimiter = delimiter.to_owned();
        }
        settings
    }

    /// A custom parameter's value (name matched case-insensitively; empty counts as none).
    pub fn custom(&self, name: &str) -> Option<&str> {
        self.custom
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_deref())
            .filter(|v| !v.is_empty())
    }

    /// The first-party provider, when the settings name one.
    pub fn known_provider(&self) -> Option<&'static Provider> {
        PROVIDERS.iter().find(|p| p.name == self.provider)
    }

    /// Whether the app proves itself with a certificate (`aadcertificate`).
    pub fn uses_certificate(&self) -> bool {
        self.provider == "aadcertificate"
    }

    /// Whether the provider is the Microsoft identity platform.
    pub fn is_aad(&self) -> bool {
        matches!(self.provider.as_str(), "aad" | "aadcertificate")
    }

    /// The URL (a template) of `endpoint` as the package gives it: its `…UrlTemplate`,
    /// its `…Url`, the provider table's; the refresh endpoint falls back to the token one.
    pub fn url(&self, endpoint: Endpoint) -> Option<String> {
        let name = endpoint.name();
        if let Some(url) = self
            .custom(&format!("{name}UrlTemplate"))
            .or_else(|| self.custom(&format!("{name}Url")))
        {
            return Some(url.to_owned());
        }
        if let Some(provider) = self.known_provider() {
            return Some(
                match endpoint {
                    Endpoint::Authorization => provider.authorize,
                    Endpoint::Token | Endpoint::Refresh => provider.token,
                }
                .to_owned(),
            );
        }
        match endpoint {
            Endpoint::Refresh => self.url(Endpoint::Token),
            _ => None,
        }
    }

    /// `…UrlQueryStringTemplate` of `endpoint`, when given and not empty.
    pub fn query_template(&self, endpoint: Endpoint) -> Option<&str> {
        self.custom(&format!("{}UrlQueryStringTemplate", endpoint.name()))
    }

    /// `tokenBodyTemplate` / `refreshBodyTemplate`, when given and not empty.
    pub fn body_template(&self, endpoint: Endpoint) -> Option<&str> {
        match endpoint {
            Endpoint::Authorization => None,
            other => self.custom(&format!("{}BodyTemplate", other.name())),
        }
    }

    /// Every template the settings use: (where, text). Scopes may name placeholders too
    /// (`{Scope}`, filled from the connection's `token:Scope`).
    pub fn templates(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for scope in &self.scopes {
            if !placeholders(scope).is_empty() {
                out.push(("scopes".to_owned(), scope.clone()));
            }
        }
        for endpoint in [Endpoint::Authorization, Endpoint::Token, Endpoint::Refresh] {
            let name = endpoint.name();
            if let Some(url) = self.url(endpoint) {
                out.push((format!("{name} URL"), url));
            }
            if let Some(query) = self.query_template(endpoint) {
                out.push((format!("{name}UrlQueryStringTemplate"), query.to_owned()));
            }
            if let Some(body) = self.body_template(endpoint) {
                out.push((format!("{name}BodyTemplate"), body.to_owned()));
            }
        }
        out
    }

    /// The value of placeholder `name` from the connection and the package, or `None`
    /// (then the flow's values apply, see [`FLOW_VALUES`]). An additional parameter is
    /// empty when its `applicableWhen` does not hold, else the connection's value or its
    /// custom parameter's. Any other name: the connection's value (`connection(name)`,
    /// which looks up `TOKEN:NAME` and `NAME`), a custom parameter, the provider's
    /// default. For `aad`, `login.windows.net` reads as
    /// `login.microsoftonline.com` (the v2 endpoints live there).
    pub fn lookup(
        &self,
        name: &str,
        connection: &dyn Fn(&str) -> Option<String>,
    ) -> Option<String> {
        let value = self.lookup_raw(name, connection)?;
        if self.is_aad() && name.eq_ignore_ascii_case("loginUri") {
            return Some(
                value
                    .replace("login.windows.net", "login.microsoftonline.com")
                    .trim_end_matches('/')
                    .to_owned(),
            );
        }
        Some(value)
    }

    fn lookup_raw(
        &self,
        name: &str,
        connection: &dyn Fn(&str) -> Option<String>,
    ) -> Option<String> {
        let given = connection(name).filter(|v| !v.is_empty());
        if let Some(extra) = self
            .additional
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
        {
            let applies = extra.applicable_when.iter().all(|(parameter, one_of)| {
                let current = connection(parameter).filter(|v| !v.is_empty());
                one_of.contains(&current)
            });
            if !applies {
                return Some(String::new());
            }
            return given.or_else(|| self.custom(name).map(str::to_owned));
        }
        if given.is_some() {
            return given;
        }
        if self.is_aad() && name.eq_ignore_ascii_case("loginUri") {
            // `aadcertificate` packages name it `loginUriAAD` too.
            if let Some(login) = self
                .custom("loginUri")
                .or_else(|| self.custom("loginUriAAD"))
            {
                return Some(login.to_owned());
            }
        }
        if let Some(value) = self.custom(name) {
            return Some(value.to_owned());
        }
        self.known_provider().and_then(|p| {
            p.defaults
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| (*v).to_owned())
        })
    }

    /// The scopes a login asks for when the connection names none: the settings'; for
    /// `aad` without any, `{resourceUri}/.default`; `offline_access` added for an `aad`
    /// authorization code login.
    pub fn scopes_for(&self, authorization_code: bool) -> Vec<String> {
        let mut scopes = self.scopes.clone();
        if self.is_aad() {
            if scopes.is_empty()
                && let Some(resource) = self.custom("resourceUri")
            {
                scopes.push(format!("{}/.default", resource.trim_end_matches('/')));
            }
            if authorization_code && !scopes.iter().any(|s| s == "offline_access") {
                scopes.push("offline_access".to_owned());
            }
        }
        scopes
    }

    /// What would fail at login, found at load time: each message names the setting and
    /// what is missing. `declared` are the names of the other connection parameters (of
    /// the same parameter set).
    pub fn problems(&self, parameter: &str, declared: &[&str]) -> Vec<String> {
        let mut problems = Vec::new();
        let has_value = |setting: &str| {
            declared.iter().any(|d| {
                d.eq_ignore_ascii_case(&format!("{parameter}:{setting}"))
                    || d.eq_ignore_ascii_case(setting)
            })
        };
        for endpoint in [Endpoint::Token, Endpoint::Authorization] {
            let setting = endpoint.setting();
            match self.url(endpoint) {
                None if endpoint == Endpoint::Token => problems.push(format!(
                    "identity provider '{}' gives no token URL and is not one Junction knows ({}); \
                     set `token_url` (and `authorization_url`) in [connector.NAME.oauth], or the connection value `{parameter}:{setting}`",
                    self.provider,
                    PROVIDERS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
                )),
                None => {}
                // A URL that starts with a connection's value cannot be judged here.
                Some(url)
                    if !has_value(setting)
                        && !placeholders(&url)
                            .first()
                            .is_some_and(|first| url.starts_with('{') && has_value(first)) =>
                {
                    // Placeholders a connection fills count as fine; the package's own
                    // values are filled in, to catch a publisher's placeholder there.
                    let filled = render(
                        &url,
                        &mut |name| {
                            Some(if has_value(name) {
                                "x".to_owned()
                            } else {
                                self.lookup(name, &|_| None).unwrap_or_else(|| "x".to_owned())
                            })
                        },
                        false,
                    )
                    .unwrap_or_default();
                    if let Some(why) = not_a_url(&filled) {
                        let shown = if filled == url {
                            format!("`{url}`")
                        } else {
                            format!("`{url}` (`{filled}` as filled in)")
                        };
                        problems.push(format!(
                            "the {} URL {shown} {why}; set `{}` in [connector.NAME.oauth] or the connection value `{parameter}:{setting}`",
                            endpoint.name(),
                            config_key(endpoint)
                        ));
                    }
                }
                Some(_) => {}
            }
        }
        for (place, template) in self.templates() {
            for name in placeholders(&template) {
                let known = FLOW_VALUES.iter().any(|f| f.eq_ignore_ascii_case(name))
                    || has_value(name)
                    || self.lookup(name, &|_| None).is_some()
                    || self
                        .additional
                        .iter()
                        .any(|a| a.name.eq_ignore_ascii_case(name));
                if !known {
                    problems.push(format!(
                        "placeholder {{{name}}} of the {place} matches no connection parameter, custom parameter or flow value; a connection must give it as `{parameter}:{name}`"
                    ));
                }
            }
        }
        if self.is_aad() && !has_value("scopes") && !has_value("resourceUri") {
            match self.custom("resourceUri") {
                _ if !self.scopes.is_empty() => {}
                None => problems.push(format!(
                    "identity provider '{}' with neither `scopes` nor a `resourceUri`: a login would ask for no resource; a connection must give `{parameter}:scopes`",
                    self.provider
                )),
                Some(resource) if is_placeholder(resource) => problems.push(format!(
                    "resourceUri `{resource}` is a publisher's placeholder, and the login's scope is made from it; a connection must give `{parameter}:scopes`"
                )),
                Some(_) => {}
            }
        }
        // The package's client id is used unless every template names its own.
        let templates = self.templates();
        let names_client_id = self.query_template(Endpoint::Authorization).is_none()
            || templates.iter().any(|(_, t)| {
                placeholders(t)
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case("clientId"))
            });
        if names_client_id && !has_value("clientId") {
            match &self.client_id {
                None => problems.push(format!(
                    "no clientId; a connection must give its app's id as `{parameter}:clientId`"
                )),
                Some(id) if is_placeholder(id) => problems.push(format!(
                    "clientId `{id}` is a publisher's placeholder; a connection must give its app's id as `{parameter}:clientId`"
                )),
                Some(_) => {}
            }
        }
        problems
    }
}

/// Whether a package's value reads like a publisher's placeholder for the user's own
/// (`<<Please add your clientID here>>`, `[DUMMY]`, `{{ client id }}`).
fn is_placeholder(value: &str) -> bool {
    value.contains(['<', '>', '[', ']', '*']) || value.contains("{{")
}

/// The `[connector.NAME.oauth]` key that replaces `endpoint`'s URL.
pub fn config_key(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Authorization => "authorization_url",
        Endpoint::Token => "token_url",
        Endpoint::Refresh => "refresh_url",
    }
}

/// Why `filled` (a URL with its placeholders filled in) cannot be an endpoint, if it
/// cannot: not absolute http(s), no host, or characters a URL cannot hold (a publisher's
/// `<…>` placeholder).
pub fn not_a_url(filled: &str) -> Option<&'static str> {
    let Some(rest) = filled
        .strip_prefix("https://")
        .or_else(|| filled.strip_prefix("http://"))
    else {
        return Some(if filled.starts_with('/') {
            "is relative"
        } else {
            "is not an absolute http(s) URL"
        });
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Some("has no host");
    }
    if filled.contains(['<', '>', ' ', '"', '\\', '^', '`', '|']) || host.contains(['[', ']']) {
        return Some("holds characters a URL cannot (a publisher's placeholder?)");
    }
    None
}

/// The placeholder names of `template` (`{name}`), in order.
pub fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = &rest[open + 1..open + close];
        if !name.is_empty() && !name.contains(['{', ' ']) {
            out.push(name);
        }
        rest = &rest[open + close + 1..];
    }
    out
}

/// Characters left as they are in a filled-in query or form value (RFC 3986 unreserved).
fn unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

/// Percent-encodes `value` for a query string or form body.
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if unreserved(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    out
}

/// Fills `template`'s placeholders with `value(name)`; values are percent-encoded when
/// `encode` (query strings and form bodies), inserted as they are otherwise (URLs, whose
/// placeholders hold hosts and paths). Returns the first placeholder without a value.
pub fn render(
    template: &str,
    value: &mut dyn FnMut(&str) -> Option<String>,
    encode: bool,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = &rest[open + 1..open + close];
        out.push_str(&rest[..open]);
        if name.is_empty() || name.contains(['{', ' ']) {
            out.push_str(&rest[open..=open + close]);
        } else {
            let Some(filled) = value(name) else {
                return Err(name.to_owned());
            };
            if encode {
                out.push_str(&encode_component(&filled));
            } else {
                out.push_str(&filled);
            }
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn zoho() -> Settings {
        Settings::parse(&json!({
            "identityProvider": "oauth2generic",
            "clientId": "<Enter Your Client ID>",
            "scopes": ["VirtualOffice.accounts.READ", "VirtualOffice.messages.ALL"],
            "customParameters": {
                "authorizationUrlTemplate": {"value": "https://accounts.zoho{CustomHost}/oauth/v2/auth"},
                "authorizationUrlQueryStringTemplate": {"value": "?response_type=code&client_id={clientId}&redirect_uri={redirectUrl}&state={State}&scope={Scopes}"},
                "tokenUrlTemplate": {"value": "https://accounts.zoho{CustomHost}/oauth/v2/token"},
                "tokenBodyTemplate": {"value": "code={code}&grant_type=authorization_code&client_id={clientId}"},
                "refreshBodyTemplate": {"value": "grant_type=refresh_token&refresh_token={refreshToken}"}
            }
        }))
    }

    #[test]
    fn templates_fill_from_the_connection_then_the_flow() {
        let settings = zoho();
        assert_eq!(
            settings.url(Endpoint::Refresh).unwrap(),
            "https://accounts.zoho{CustomHost}/oauth/v2/token"
        );
        let connection =
            |name: &str| (name.eq_ignore_ascii_case("customHost")).then(|| ".eu".to_owned());
        let url = render(
            &settings.url(Endpoint::Authorization).unwrap(),
            &mut |n| settings.lookup(n, &connection),
            false,
        )
        .unwrap();
        assert_eq!(url, "https://accounts.zoho.eu/oauth/v2/auth");
        let query = render(
            settings.query_template(Endpoint::Authorization).unwrap(),
            &mut |n| match n.to_ascii_lowercase().as_str() {
                "clientid" => Some("app 1".into()),
                "redirecturl" => Some("https://gw/oauth/callback".into()),
                "state" => Some("s".into()),
                "scopes" => Some(settings.scopes.join(&settings.scope_delimiter)),
                _ => None,
            },
            true,
        )
        .unwrap();
        assert_eq!(
            query,
            "?response_type=code&client_id=app%201&redirect_uri=https%3A%2F%2Fgw%2Foauth%2Fcallback&state=s&scope=VirtualOffice.accounts.READ%20VirtualOffice.messages.ALL"
        );
        assert_eq!(
            render("{missing}/x", &mut |_| None, false),
            Err("missing".into())
        );
    }

    #[test]
    fn load_time_problems_name_what_is_missing() {
        // {CustomHost} is no declared parameter here, and the client id is a placeholder.
        let problems = zoho().problems("token", &[]);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("{CustomHost}") && p.contains("`token:CustomHost`")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("publisher's placeholder")),
            "{problems:?}"
        );
        assert!(
            zoho()
                .problems("token", &["token:customHost", "token:clientId"])
                .is_empty()
        );

        let unknown = Settings::parse(&json!({"identityProvider": "acme"}));
        let problems = unknown.problems("token", &[]);
        assert!(
            problems[0].contains("identity provider 'acme' gives no token URL"),
            "{problems:?}"
        );
        assert!(problems[1].starts_with("no clientId;"), "{problems:?}");
        let placeholder = Settings::parse(&json!({"identityProvider": "oauth2", "clientId": "app",
            "customParameters": {"tokenUrl": {"value": "https://<replace with token api>"},
                                 "authorizationUrl": {"value": "/Authorization"}}}));
        let problems = placeholder.problems("token", &[]);
        assert!(
            problems.iter().any(
                |p| p.contains("token URL `https://<replace with token api>` holds characters")
            ),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`/Authorization` is relative")),
            "{problems:?}"
        );
        // A connection parameter for the URL answers the problem.
        assert_eq!(
            placeholder.problems("token", &["token:tokenUrl", "token:authorizationUrl"]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn first_party_providers_and_additional_parameters() {
        let docusign = Settings::parse(&json!({"identityProvider": "DocuSign",
            "customParameters": {"LoginUri": {"value": "https://account-d.docusign.com"}}}));
        let url = render(
            &docusign.url(Endpoint::Token).unwrap(),
            &mut |n| docusign.lookup(n, &|_| None),
            false,
        )
        .unwrap();
        assert_eq!(url, "https://account-d.docusign.com/oauth/token");

        let aad = Settings::parse(&json!({"identityProvider": "aadcertificate",
            "customParameters": {"loginUriAAD": {"value": "https://login.windows.net"},
                                 "resourceUri": {"value": "https://graph.microsoft.com/"}}}));
        let tenant = |n: &str| {
            n.eq_ignore_ascii_case("tenantId")
                .then(|| "contoso".to_owned())
        };
        let url = render(
            &aad.url(Endpoint::Authorization).unwrap(),
            &mut |n| aad.lookup(n, &tenant),
            false,
        )
        .unwrap();
        assert_eq!(
            url,
            "https://login.microsoftonline.com/contoso/oauth2/v2.0/authorize"
        );
        assert_eq!(
            aad.scopes_for(false),
            vec!["https://graph.microsoft.com/.default"]
        );
        assert!(aad.uses_certificate());

        let regional = Settings::parse(
            &json!({"identityProvider": "oauth2generic", "clientId": "app",
            "additionalParameters": {
                "uS_domain": {"type": "string", "applicableWhen": [{"parameter": "apiRegion", "oneOf": [null, "US"]}]},
                "eU_domain": {"type": "string", "applicableWhen": [{"parameter": "apiRegion", "oneOf": ["EU"]}]}},
            "customParameters": {"tokenUrlTemplate": {"value": "https://api.{US_domain}{EU_domain}/v1/OAuth"},
                                 "uS_domain": {"value": "vault.netvoyage.com"}, "eU_domain": {"value": "eu.netdocuments.com"}}}),
        );
        let fill = |region: Option<&'static str>| {
            let connection = move |n: &str| {
                if n == "apiRegion" {
                    region.map(str::to_owned)
                } else {
                    None
                }
            };
            render(
                &regional.url(Endpoint::Token).unwrap(),
                &mut |n| regional.lookup(n, &connection),
                false,
            )
            .unwrap()
        };
        assert_eq!(fill(None), "https://api.vault.netvoyage.com/v1/OAuth");
        assert_eq!(fill(Some("EU")), "https://api.eu.netdocuments.com/v1/OAuth");
        assert!(regional.problems("token", &["token:apiRegion"]).is_empty());
    }
}
