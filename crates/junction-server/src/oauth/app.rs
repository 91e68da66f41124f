//! A connection's OAuth app: its endpoints, client, credential and flow, from the
//! connector's `oAuthSettings` (read by [`junction_model::oauth`]), the connection's values
//! and `[connector.NAME.oauth]`; and the requests of each step, templates filled in.

use std::sync::Arc;

use indexmap::IndexMap;
use junction_model::Connector;
use junction_model::oauth::{Endpoint, Settings, config_key, render};
use junction_runtime::{Error, ErrorKind, OAuthOverrides};
use junction_store::{ExposeSecret, SecretString, values};

use super::certificate::Signer;

/// The OAuth flow a connection uses (`TOKEN:grantType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    AuthorizationCode,
    ClientCredentials,
}

/// How the app proves itself to the token endpoint.
#[derive(Debug)]
enum Credential {
    None,
    Secret(SecretString),
    Certificate(Arc<Signer>),
}

/// A request to the token endpoint: where, and its form body.
#[derive(Debug)]
pub struct TokenRequest {
    pub url: String,
    pub body: String,
}

/// What the flow has filled in so far, for `{redirectUrl}`, `{state}`, `{code}` and
/// `{refreshToken}` (the last two are empty where a step has none).
#[derive(Debug, Default, Clone, Copy)]
struct Step<'a> {
    redirect: Option<&'a str>,
    state: Option<&'a str>,
    code: Option<&'a str>,
    refresh_token: Option<&'a str>,
}

/// A connection's OAuth app.
#[derive(Debug)]
pub struct App {
    connector: String,
    parameter: String,
    settings: Settings,
    values: IndexMap<String, SecretString>,
    overrides: OAuthOverrides,
    pub client_id: String,
    credential: Credential,
    pub scopes: Vec<String>,
    pub flow: Flow,
}

impl App {
    /// The OAuth app of a connection of `connector` (with `parameter_set` and `values`), or
    /// `None` when the connector (parameter set) has no `oauthSetting` parameter.
    pub fn build(
        connector: &Connector,
        parameter_set: Option<&str>,
        values: IndexMap<String, SecretString>,
        overrides: &OAuthOverrides,
    ) -> Result<Option<App>, Error> {
        let Ok((_, parameters)) = values::parameters(connector, parameter_set) else {
            return Ok(None);
        };
        let Some(parameter) = parameters
            .into_iter()
            .find(|p| p.kind.eq_ignore_ascii_case("oauthsetting"))
        else {
            return Ok(None);
        };
        let settings = Settings::parse(
            parameter
                .oauth_settings
                .as_ref()
                .unwrap_or(&serde_json::Value::Null),
        );
        let mut app = App {
            connector: connector.name.clone(),
            parameter: parameter.name.clone(),
            settings,
            values,
            overrides: overrides.clone(),
            client_id: String::new(),
            credential: Credential::None,
            scopes: Vec::new(),
            flow: Flow::AuthorizationCode,
        };
        app.flow = match app.connection_value("grantType").as_deref() {
            Some("client_credentials") => Flow::ClientCredentials,
            _ => Flow::AuthorizationCode,
        };
        app.scopes = match app.connection_value("scopes") {
            Some(text) => text.split_whitespace().map(str::to_owned).collect(),
            None => app.settings.scopes_for(app.flow == Flow::AuthorizationCode),
        };
        // Scopes may name placeholders (`{Scope}`) filled from the connection.
        let scopes = std::mem::take(&mut app.scopes);
        for scope in scopes {
            let filled = render(
                &scope,
                &mut |name| {
                    app.settings
                        .lookup(name, &|n: &str| app.connection_value(n))
                },
                false,
            )
            .map_err(|name| {
                app.misconfigured(format!(
                    "the scope `{scope}` needs {{{name}}}; give the connection value `{}:{name}`",
                    app.parameter
                ))
            })?;
            app.scopes
                .extend(filled.split_whitespace().map(str::to_owned));
        }
        app.client_id = match app
            .connection_value("clientId")
            .or_else(|| app.settings.client_id.clone())
        {
            Some(id) => id,
            None => {
                return Err(
                    app.misconfigured(format!("no client id; set `{}:clientId`", app.parameter))
                );
            }
        };
        app.credential = match app.connection_value("certificate") {
            Some(certificate) => {
                let password = app.connection_value("certificatePassword");
                let signer = Signer::load(&certificate, password.as_deref()).map_err(|why| {
                    app.misconfigured(format!("`{}:certificate`: {why}", app.parameter))
                })?;
                Credential::Certificate(Arc::new(signer))
            }
            None if app.settings.uses_certificate() => {
                return Err(app.misconfigured(format!(
                    "identity provider '{}' signs in with a certificate; set `{p}:certificate` (a base64 PKCS#12 file, or PEM) and `{p}:certificatePassword`",
                    app.settings.provider,
                    p = app.parameter
                )));
            }
            None => match app.connection_value("clientSecret") {
                Some(secret) => Credential::Secret(SecretString::from(secret)),
                None => Credential::None,
            },
        };
        Ok(Some(app))
    }

    fn misconfigured(&self, why: String) -> Error {
        Error::new(
            ErrorKind::Misconfigured,
            format!(
                "connector '{}', OAuth parameter '{}': {why}",
                self.connector, self.parameter
            ),
        )
    }

    /// The connection's value `TOKEN:NAME` or `NAME` (names matched case-insensitively).
    fn connection_value(&self, name: &str) -> Option<String> {
        let prefixed = format!("{}:{name}", self.parameter);
        self.values
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&prefixed))
            .or_else(|| {
                self.values
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
            })
            .map(|(_, v)| v.expose_secret().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// The value of placeholder `name` at `step`: the connection's and the package's
    /// values first (see [`Settings::lookup`]), then the flow's.
    fn value(&self, name: &str, step: &Step<'_>) -> Option<String> {
        if let Some(value) = self
            .settings
            .lookup(name, &|n: &str| self.connection_value(n))
        {
            return Some(value);
        }
        let text = match name.to_ascii_lowercase().as_str() {
            "clientid" => self.client_id.as_str(),
            "clientsecret" => match &self.credential {
                Credential::Secret(secret) => secret.expose_secret(),
                _ => return None,
            },
            "redirecturl" => step.redirect?,
            "state" => step.state?,
            "scopes" | "scope" => return Some(self.scope_list()),
            "code" => step.code.unwrap_or_default(),
            "refreshtoken" => step.refresh_token.unwrap_or_default(),
            _ => return None,
        };
        Some(text.to_owned())
    }

    fn scope_list(&self) -> String {
        self.scopes.join(&self.settings.scope_delimiter)
    }

    /// `template` (named `place` in messages) filled in; values percent-encoded when
    /// `encode`.
    fn fill(
        &self,
        template: &str,
        place: &str,
        step: &Step<'_>,
        encode: bool,
    ) -> Result<String, Error> {
        render(template, &mut |name| self.value(name, step), encode).map_err(|name| {
            self.misconfigured(format!(
                "the {place} `{template}` needs {{{name}}}; give the connection value `{}:{name}`",
                self.parameter
            ))
        })
    }

    /// The URL of `endpoint`: `[connector.NAME.oauth]`, else the connection's
    /// `TOKEN:tokenUrl` (…), else the package's, templates filled in; the token and refresh
    /// URLs with their query string template.
    pub fn url(&self, endpoint: Endpoint) -> Result<String, Error> {
        let overridden = match endpoint {
            Endpoint::Authorization => &self.overrides.authorization_url,
            Endpoint::Token => &self.overrides.token_url,
            Endpoint::Refresh => &self.overrides.refresh_url,
        };
        let connection = self.connection_value(endpoint.setting()).or_else(|| {
            (endpoint == Endpoint::Refresh)
                .then(|| self.connection_value("tokenUrl"))
                .flatten()
        });
        let name = endpoint.name();
        let base = match (overridden, connection) {
            (Some(url), _) => url.clone(),
            (None, Some(url)) => url,
            (None, None) => {
                let template = self.settings.url(endpoint).ok_or_else(|| {
                    self.misconfigured(format!(
                        "identity provider '{}' gives no {name} URL; set `{}` in [connector.{}.oauth] or the connection value `{}:{}`",
                        self.settings.provider,
                        config_key(endpoint),
                        self.connector,
                        self.parameter,
                        endpoint.setting()
                    ))
                })?;
                self.fill(&template, &format!("{name} URL"), &Step::default(), false)?
            }
        };
        let url = match self.settings.query_template(endpoint) {
            Some(query) if endpoint != Endpoint::Authorization => join_query(
                &base,
                &self.fill(
                    query,
                    &format!("{name}UrlQueryStringTemplate"),
                    &Step::default(),
                    true,
                )?,
            ),
            _ => base,
        };
        match url::Url::parse(&url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {
                Ok(url)
            }
            _ => Err(self.misconfigured(format!(
                "the {name} URL `{url}` is not an absolute http(s) URL; set `{}` in [connector.{}.oauth] or the connection value `{}:{}`",
                config_key(endpoint),
                self.connector,
                self.parameter,
                endpoint.setting()
            ))),
        }
    }

    /// Whether the login uses PKCE: only when the package writes neither the login's
    /// query string nor the code exchange's body (those would not carry it).
    pub fn uses_pkce(&self) -> bool {
        self.settings
            .query_template(Endpoint::Authorization)
            .is_none()
            && self.settings.body_template(Endpoint::Token).is_none()
    }

    /// The login URL of an authorization code flow back to `redirect` with `state`
    /// (`challenge`: the PKCE S256 challenge, used when [`App::uses_pkce`]).
    pub fn login_url(&self, redirect: &str, state: &str, challenge: &str) -> Result<String, Error> {
        let base = self.url(Endpoint::Authorization)?;
        if let Some(template) = self.settings.query_template(Endpoint::Authorization) {
            let step = Step {
                redirect: Some(redirect),
                state: Some(state),
                ..Step::default()
            };
            let query = self.fill(template, "authorizationUrlQueryStringTemplate", &step, true)?;
            return Ok(join_query(&base, &query));
        }
        let mut url = url::Url::parse(&base).map_err(|e| {
            self.misconfigured(format!("the authorization URL `{base}` is not a URL: {e}"))
        })?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.client_id)
                .append_pair("redirect_uri", redirect);
            if !self.scopes.is_empty() {
                query.append_pair("scope", &self.scope_list());
            }
            query.append_pair("state", state);
            if self.uses_pkce() {
                query
                    .append_pair("code_challenge", challenge)
                    .append_pair("code_challenge_method", "S256");
            }
        }
        Ok(url.into())
    }

    /// The code exchange after a login (`verifier`: the PKCE verifier).
    pub fn exchange(
        &self,
        code: &str,
        redirect: &str,
        verifier: &str,
    ) -> Result<TokenRequest, Error> {
        let step = Step {
            redirect: Some(redirect),
            code: Some(code),
            ..Step::default()
        };
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect),
        ];
        if self.uses_pkce() {
            form.push(("code_verifier", verifier));
        }
        self.request(Endpoint::Token, &step, &form)
    }

    /// A refresh with `refresh_token` (`redirect`: for templates that name it).
    pub fn refresh(&self, refresh_token: &str, redirect: &str) -> Result<TokenRequest, Error> {
        let step = Step {
            redirect: Some(redirect),
            refresh_token: Some(refresh_token),
            ..Step::default()
        };
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        self.request(Endpoint::Refresh, &step, &form)
    }

    /// A client credentials grant (templates are for logins and do not apply).
    pub fn client_credentials(&self) -> Result<TokenRequest, Error> {
        let scopes = self.scope_list();
        let mut form = vec![("grant_type", "client_credentials")];
        if !scopes.is_empty() {
            form.push(("scope", &scopes));
        }
        let url = self.url(Endpoint::Token)?;
        let body = self.with_credential(&url, encode_form(&form), true)?;
        Ok(TokenRequest { url, body })
    }

    /// The request to `endpoint`: its body template filled in at `step`, or `form`.
    fn request(
        &self,
        endpoint: Endpoint,
        step: &Step<'_>,
        form: &[(&str, &str)],
    ) -> Result<TokenRequest, Error> {
        let url = self.url(endpoint)?;
        let body = match self.settings.body_template(endpoint) {
            Some(template) => {
                let place = format!("{}BodyTemplate", endpoint.name());
                let body = self.fill(template, &place, step, true)?;
                self.with_credential(&url, body, false)?
            }
            None => self.with_credential(&url, encode_form(form), true)?,
        };
        Ok(TokenRequest { url, body })
    }

    /// `body` with the app's credential: `client_id` and `client_secret` or a client
    /// assertion for a `standard` form; only an assertion for a filled-in template (which
    /// names the id and secret itself).
    fn with_credential(
        &self,
        audience: &str,
        body: String,
        standard: bool,
    ) -> Result<String, Error> {
        let mut extra: Vec<(&str, String)> = Vec::new();
        if standard {
            extra.push(("client_id", self.client_id.clone()));
        }
        match &self.credential {
            Credential::Secret(secret) if standard => {
                extra.push(("client_secret", secret.expose_secret().to_owned()));
            }
            Credential::Certificate(signer) => {
                let assertion = signer
                    .assertion(&self.client_id, audience)
                    .map_err(|why| self.misconfigured(why))?;
                extra.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
                ));
                extra.push(("client_assertion", assertion));
            }
            _ => {}
        }
        let pairs: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Ok(match (body.is_empty(), pairs.is_empty()) {
            (_, true) => body,
            (true, false) => encode_form(&pairs),
            (false, false) => format!("{body}&{}", encode_form(&pairs)),
        })
    }
}

fn encode_form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// `base` with `query` (a template's `?a=b&…`) appended.
fn join_query(base: &str, query: &str) -> String {
    let query = query.trim_start_matches(['?', '&']);
    if query.is_empty() {
        base.to_owned()
    } else if base.contains('?') {
        format!("{base}&{query}")
    } else {
        format!("{base}?{query}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use junction_model::oauth::Endpoint;
    use serde_json::{Value, json};

    fn connector(settings: Value) -> Connector {
        let mut parameters = IndexMap::new();
        parameters.insert(
            "token".to_owned(),
            junction_model::ConnectionParameter::oauth_setting("token", settings),
        );
        Connector {
            name: "graph".into(),
            title: "Graph".into(),
            description: None,
            version: None,
            format: junction_model::SourceFormat::Swagger2,
            upstream: junction_model::Upstream {
                scheme: "https".into(),
                host: "graph.microsoft.com".into(),
                base_path: "/".into(),
            },
            operations: Vec::new(),
            security_schemes: IndexMap::new(),
            security: Vec::new(),
            definitions: serde_json::Map::new(),
            properties: Some(junction_model::ApiProperties {
                connection_parameters: parameters,
                ..Default::default()
            }),
            extensions: serde_json::Map::new(),
            source: "graph".into(),
            soap: None,
        }
    }

    fn values(pairs: &[(&str, &str)]) -> IndexMap<String, SecretString> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), SecretString::from((*v).to_owned())))
            .collect()
    }

    fn build(settings: Value, pairs: &[(&str, &str)], overrides: &OAuthOverrides) -> App {
        App::build(&connector(settings), None, values(pairs), overrides)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn aad_maps_to_the_microsoft_identity_platform() {
        let settings = json!({
            "identityProvider": "aad", "clientId": "app-id",
            "customParameters": {"loginUri": {"value": "https://login.windows.net"},
                                 "tenantId": {"value": "common"},
                                 "resourceUri": {"value": "https://graph.microsoft.com"}}
        });
        // The connection's `token:TenantId` (as aad packages declare it) picks the tenant.
        let app = build(
            settings,
            &[("token:TenantId", "contoso")],
            &OAuthOverrides::default(),
        );
        assert_eq!(
            app.url(Endpoint::Token).unwrap(),
            "https://login.microsoftonline.com/contoso/oauth2/v2.0/token"
        );
        let login = app
            .login_url("https://gw/oauth/callback", "st", "ch")
            .unwrap();
        assert!(
            login.starts_with("https://login.microsoftonline.com/contoso/oauth2/v2.0/authorize?response_type=code&client_id=app-id"),
            "{login}"
        );
        assert!(login.contains("code_challenge=ch"), "{login}");
        assert_eq!(
            app.scopes,
            vec!["https://graph.microsoft.com/.default", "offline_access"]
        );
        assert_eq!(app.flow, Flow::AuthorizationCode);
    }

    #[test]
    fn generic_oauth2_uses_its_urls_and_connection_overrides() {
        let settings = json!({
            "identityProvider": "oauth2generic", "clientId": "from-package", "scopes": ["read write"],
            "customParameters": {"authorizationUrl": {"value": "https://idp/auth"},
                                 "tokenUrl": {"value": "https://idp/token"},
                                 "refreshUrl": {"value": "https://idp/refresh"}}
        });
        let app = build(
            settings.clone(),
            &[
                ("token:clientId", "mine"),
                ("token:clientSecret", "s3"),
                ("token:grantType", "client_credentials"),
            ],
            &OAuthOverrides::default(),
        );
        assert_eq!(app.url(Endpoint::Refresh).unwrap(), "https://idp/refresh");
        assert_eq!(app.scopes, vec!["read", "write"]);
        assert_eq!(app.flow, Flow::ClientCredentials);
        let request = app.client_credentials().unwrap();
        assert_eq!(request.url, "https://idp/token");
        assert_eq!(
            request.body,
            "grant_type=client_credentials&scope=read+write&client_id=mine&client_secret=s3"
        );
        // [connector.NAME.oauth] wins over the package and the connection.
        let pinned = OAuthOverrides {
            authorization_url: Some("http://127.0.0.1:9/auth".into()),
            token_url: Some("http://127.0.0.1:9/token".into()),
            refresh_url: Some("http://127.0.0.1:9/token".into()),
        };
        let app = build(
            settings,
            &[("token:tokenUrl", "https://elsewhere/token")],
            &pinned,
        );
        assert_eq!(
            app.url(Endpoint::Token).unwrap(),
            "http://127.0.0.1:9/token"
        );
        assert_eq!(
            app.url(Endpoint::Refresh).unwrap(),
            "http://127.0.0.1:9/token"
        );

        let github = App::build(
            &connector(json!({"identityProvider": "acme", "clientId": "x"})),
            None,
            IndexMap::new(),
            &OAuthOverrides::default(),
        )
        .unwrap()
        .unwrap();
        let error = github.url(Endpoint::Token).unwrap_err();
        assert!(
            error
                .detail()
                .contains("set `token_url` in [connector.graph.oauth]"),
            "{}",
            error.detail()
        );
    }

    #[test]
    fn templates_fill_urls_queries_and_bodies() {
        // Talkdesk's settings, as published.
        let settings = json!({
            "identityProvider": "oauth2generic", "clientId": "dummy",
            "scopes": ["contacts:read callback:write"],
            "customParameters": {
                "authorizationUrlTemplate": {"value": "https://{talkdeskAccountName}.talkdeskid.com/oauth/authorize"},
                "authorizationUrlQueryStringTemplate": {"value": "?response_type=code&client_id={TalkdeskClientId}&redirect_uri={RedirectUrl}&scope={Scopes}&state={State}"},
                "tokenUrlTemplate": {"value": "https://integrations-webhooks.talkdeskapp.com/webhooks/oauth/token"},
                "tokenBodyTemplate": {"value": "grant_type=authorization_code&code={Code}&redirect_uri={RedirectUrl}&client_id={TalkdeskClientId}&client_secret={TalkdeskClientSecret}&account_name={talkdeskAccountName}"},
                "refreshBodyTemplate": {"value": "grant_type=refresh_token&refresh_token={RefreshToken}&client_id={TalkdeskClientId}&client_secret={TalkdeskClientSecret}"}
            }
        });
        let pairs = [
            ("token:talkdeskAccountName", "acme"),
            ("token:TalkdeskClientId", "td app"),
            ("token:TalkdeskClientSecret", "s&cret"),
        ];
        let app = build(settings.clone(), &pairs, &OAuthOverrides::default());
        assert!(!app.uses_pkce());
        assert_eq!(
            app.login_url("https://gw/oauth/callback", "st8", "unused")
                .unwrap(),
            "https://acme.talkdeskid.com/oauth/authorize?response_type=code&client_id=td%20app&redirect_uri=https%3A%2F%2Fgw%2Foauth%2Fcallback&scope=contacts%3Aread%20callback%3Awrite&state=st8"
        );
        let exchange = app.exchange("c/1", "https://gw/cb", "v").unwrap();
        assert_eq!(
            exchange.body,
            "grant_type=authorization_code&code=c%2F1&redirect_uri=https%3A%2F%2Fgw%2Fcb&client_id=td%20app&client_secret=s%26cret&account_name=acme"
        );
        let refresh = app.refresh("r1", "https://gw/cb").unwrap();
        assert_eq!(
            refresh.url,
            "https://integrations-webhooks.talkdeskapp.com/webhooks/oauth/token"
        );
        assert!(
            refresh
                .body
                .starts_with("grant_type=refresh_token&refresh_token=r1&"),
            "{}",
            refresh.body
        );

        // A value the templates need and the connection lacks: named.
        let app = build(settings, &pairs[1..], &OAuthOverrides::default());
        let error = app.login_url("https://gw/cb", "s", "c").unwrap_err();
        assert!(
            error.detail().contains(
                "needs {talkdeskAccountName}; give the connection value `token:talkdeskAccountName`"
            ),
            "{}",
            error.detail()
        );
    }

    #[test]
    fn a_certificate_app_needs_its_certificate() {
        let settings = json!({"identityProvider": "aadcertificate", "clientId": "app",
            "customParameters": {"resourceUri": {"value": "https://graph.microsoft.com"}}});
        let error = App::build(
            &connector(settings),
            None,
            IndexMap::new(),
            &OAuthOverrides::default(),
        )
        .unwrap_err();
        assert!(
            error.detail().contains("`token:certificate`"),
            "{}",
            error.detail()
        );
    }
}
