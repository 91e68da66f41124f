//! The access keys of `junction.toml`: `[store]` (where connections, clients and the audit
//! log live, and the master key), `[clients.jwt]` (the issuer whose tokens identify
//! clients) and `[admin]` (the admin API's token).
//!
//! None of them present: the gateway works as before, with the connections of
//! `[connector.NAME.connection]` and no client authentication.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::spanned::Spanned;
use serde::Deserialize;

use super::{Builder, Scalar, units};
use crate::Secret;

/// The default SQLite file, relative to the configuration directory.
pub const DEFAULT_STORE_FILE: &str = "junction.db";
/// Allowed JWT algorithms when `[clients.jwt] algorithms` is not set.
pub const DEFAULT_JWT_ALGORITHMS: &[&str] = &["RS256", "ES256"];

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub location: StoreLocation,
    /// `key_file`: the master key file; else `JUNCTION_MASTER_KEY`.
    pub key_file: Option<PathBuf>,
}

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `path`: a SQLite file (default `junction.db` in the configuration directory).
    Sqlite(PathBuf),
    /// `url = "postgres://…"`, tables in `schema` (default `public`).
    Postgres { url: String, schema: String },
}

/// `[clients]`.
#[derive(Debug, Clone, Default)]
pub struct ClientsConfig {
    pub jwt: Option<JwtConfig>,
}

/// `[clients.jwt]`: bearer tokens of this issuer identify clients by their `sub`.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub issuer: String,
    /// Accepted `aud` values; a token must name one.
    pub audience: Vec<String>,
    /// Where the issuer's signing keys are (JWKS).
    pub jwks_url: url::Url,
    /// Accepted `alg` values.
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

/// `[admin]`.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// `token`: when set, the admin API requires `Authorization: Bearer TOKEN`.
    pub token: Option<Secret>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    path: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    schema: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClients {
    jwt: Option<RawJwt>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwt {
    issuer: Spanned<String>,
    audience: Spanned<StringOrList>,
    jwks_url: Spanned<String>,
    algorithms: Option<Vec<Spanned<String>>>,
    leeway: Option<Spanned<String>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    token: Option<Spanned<Scalar>>,
}

const ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

impl Builder<'_> {
    pub(super) fn store(
        &mut self,
        raw: Option<RawStore>,
        dir: &std::path::Path,
    ) -> Option<StoreConfig> {
        let raw = raw?;
        let key_file = raw
            .key_file
            .and_then(|v| self.string(&v, "store.key_file"))
            .map(|p| dir.join(p));
        let location = match (raw.url, raw.path) {
            (Some(url), path) => {
                if let Some(path) = path {
                    self.push(
                        &path,
                        "store.path",
                        "set either `path` (SQLite) or `url` (PostgreSQL), not both",
                    );
                }
                let text = self.string(&url, "store.url")?;
                if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
                    self.push(
                        &url,
                        "store.url",
                        "must be a postgres:// URL (leave it out for SQLite)",
                    );
                    return None;
                }
                let schema = match raw.schema {
                    Some(schema) => {
                        let name = self.string(&schema, "store.schema")?;
                        let valid = !name.is_empty()
                            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                        if !valid {
                            self.push(
                                &schema,
                                "store.schema",
                                format!("`{name}` must be letters, digits and `_`"),
                            );
                            return None;
                        }
                        name
                    }
                    None => "public".to_owned(),
                };
                StoreLocation::Postgres { url: text, schema }
            }
            (None, path) => {
                if let Some(schema) = raw.schema {
                    self.push(
                        &schema,
                        "store.schema",
                        "only applies to PostgreSQL (`url`)",
                    );
                }
                let file = match path {
                    Some(path) => self.string(&path, "store.path")?,
                    None => DEFAULT_STORE_FILE.to_owned(),
                };
                StoreLocation::Sqlite(dir.join(file))
            }
        };
        Some(StoreConfig { location, key_file })
    }

    pub(super) fn clients(&mut self, raw: Option<RawClients>) -> ClientsConfig {
        let Some(jwt) = raw.and_then(|r| r.jwt) else {
            return ClientsConfig::default();
        };
        let issuer = self.string(&jwt.issuer, "clients.jwt.issuer");
        let audience = match jwt.audience.get_ref() {
            StringOrList::One(one) => vec![one.clone()],
            StringOrList::Many(many) => many.clone(),
        };
        if audience.is_empty() {
            self.push(
                &jwt.audience,
                "clients.jwt.audience",
                "name at least one audience",
            );
        }
        let jwks_url = self
            .string(&jwt.jwks_url, "clients.jwt.jwks_url")
            .and_then(|text| {
                let parsed = url::Url::parse(&text)
                    .map_err(|e| format!("`{text}` is not a URL: {e}"))
                    .and_then(|url| match url.scheme() {
                        "http" | "https" => Ok(url),
                        _ => Err(format!("`{text}` must be an http:// or https:// URL")),
                    });
                self.check(&jwt.jwks_url, "clients.jwt.jwks_url", parsed)
            });
        let mut algorithms = Vec::new();
        match jwt.algorithms {
            Some(list) => {
                for value in list {
                    let Some(text) = self.string(&value, "clients.jwt.algorithms") else {
                        continue;
                    };
                    if ALGORITHMS.contains(&text.as_str()) {
                        algorithms.push(text);
                    } else {
                        self.push(
                            &value,
                            "clients.jwt.algorithms",
                            format!(
                                "`{text}` is not an accepted signing algorithm (one of {}; shared-secret HS* and `none` are refused)",
                                ALGORITHMS.join(", ")
                            ),
                        );
                    }
                }
            }
            None => {
                algorithms = DEFAULT_JWT_ALGORITHMS
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect()
            }
        }
        let leeway = match jwt.leeway {
            Some(value) => {
                let text = self.string(&value, "clients.jwt.leeway");
                let parsed = text.map(|t| units::parse_duration(&t));
                match parsed {
                    Some(result) => self.check(&value, "clients.jwt.leeway", result),
                    None => None,
                }
                .unwrap_or(Duration::from_secs(30))
            }
            None => Duration::from_secs(30),
        };
        match (issuer, jwks_url) {
            (Some(issuer), Some(jwks_url)) => ClientsConfig {
                jwt: Some(JwtConfig {
                    issuer,
                    audience,
                    jwks_url,
                    algorithms,
                    leeway,
                }),
            },
            _ => ClientsConfig::default(),
        }
    }

    pub(super) fn admin(&mut self, raw: Option<RawAdmin>) -> AdminConfig {
        let token = raw
            .and_then(|r| r.token)
            .and_then(|value| self.scalar(&value, "admin.token"))
            .filter(|t| !t.is_empty())
            .map(Secret::new);
        AdminConfig { token }
    }
}
