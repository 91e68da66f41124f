//! AGENTDIR: what the agent reads and what joining writes.
//!
//! - `agent.toml`, written by the site's admin (joining writes a starter when there is
//!   none): `allow` (the allowlist), `proxy` (an HTTP proxy for the connection to the
//!   gateway, HTTP CONNECT), `connect_timeout` (to backends, default 10s) and
//!   `[backend_auth."HOST:PORT"]` (`basic = { user, password }` or `api_key = { header,
//!   value }`: credentials added on this side, never sent to the gateway; values may be
//!   `${VAR}`);
//! - `enrollment.json` (gateway address, agent id, pool, certificate expiry),
//!   `agent.key` (mode 0600, never leaves the host), `agent.crt` and `gateway-ca.crt`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::SiteError;
use super::allow::Allowed;

pub const SITE_FILE: &str = "agent.toml";
const ENROLLMENT_FILE: &str = "enrollment.json";
const KEY_FILE: &str = "agent.key";
const CERT_FILE: &str = "agent.crt";
const CA_FILE: &str = "gateway-ca.crt";

/// What joining writes into `agent.toml` when there is none.
pub const STARTER: &str = r#"# The rules of this site for the Junction agent (docs/agent.md).
# The agent performs only requests whose URL matches an entry of `allow`:
# scheme://host:port/path, a path ending in * matching every path that starts so.
allow = [
  # "http://erp.internal:8080/*",
]
# An HTTP proxy for the connection to the gateway (HTTP CONNECT):
# proxy = "http://proxy.internal:3128"
# Credentials added here, for a backend, that the gateway never sees:
# [backend_auth."erp.internal:8080"]
# basic = { user = "svc-junction", password = "${ERP_PASSWORD}" }
"#;

/// The site's rules, from `agent.toml`.
#[derive(Debug, Clone)]
pub struct Site {
    pub allow: Vec<Allowed>,
    /// `host:port` of the HTTP proxy to dial the gateway through.
    pub proxy: Option<String>,
    pub connect_timeout: Duration,
    /// Headers added to requests for `host:port` (lower case), values marked sensitive.
    pub backend_auth: HashMap<String, (HeaderName, HeaderValue)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    allow: Vec<String>,
    proxy: Option<String>,
    connect_timeout: Option<String>,
    #[serde(default)]
    backend_auth: HashMap<String, RawAuth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    basic: Option<RawBasic>,
    api_key: Option<RawApiKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasic {
    user: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    header: String,
    value: String,
}

/// Looks up an environment variable for `${VAR}`.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn expand(text: &str, what: &str, lookup: Lookup<'_>) -> Result<String, SiteError> {
    junction_runtime::config::env::expand(text, lookup)
        .map_err(|e| SiteError(format!("{what}: {e}")))
}

/// Reads `DIR/agent.toml`.
pub fn load_site(dir: &Path) -> Result<Site, SiteError> {
    let path = dir.join(SITE_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| SiteError(format!("{}: {e}", path.display())))?;
    parse_site(&text, &path.display().to_string(), &|name| {
        std::env::var(name).ok()
    })
}

/// Reads the text of an `agent.toml` (`file` names it in messages), `${VAR}` looked up
/// with `lookup`.
pub fn parse_site(text: &str, file: &str, lookup: Lookup<'_>) -> Result<Site, SiteError> {
    let raw: RawSite = toml::from_str(text).map_err(|e| SiteError(format!("{file}: {e}")))?;
    let allow = raw
        .allow
        .iter()
        .map(|entry| Allowed::parse(entry).map_err(|e| SiteError(format!("{file}: allow: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let proxy = match raw.proxy {
        Some(proxy) => {
            let uri: http::Uri = proxy
                .parse()
                .map_err(|e| SiteError(format!("{file}: proxy `{proxy}`: {e}")))?;
            let (Some("http"), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
                return Err(SiteError(format!(
                    "{file}: proxy `{proxy}` is not an http:// proxy URL"
                )));
            };
            Some(format!(
                "{}:{}",
                authority.host(),
                authority.port_u16().unwrap_or(80)
            ))
        }
        None => None,
    };
    let connect_timeout = match raw.connect_timeout {
        Some(text) => junction_runtime::config::units::parse_duration(&text)
            .map_err(|e| SiteError(format!("{file}: connect_timeout: {e}")))?,
        None => Duration::from_secs(10),
    };
    let mut backend_auth = HashMap::new();
    for (backend, auth) in raw.backend_auth {
        let what = format!("{file}: backend_auth.\"{backend}\"");
        let (name, value) = match (auth.basic, auth.api_key) {
            (Some(basic), None) => {
                let user = expand(&basic.user, &what, lookup)?;
                let password = expand(&basic.password, &what, lookup)?;
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                (http::header::AUTHORIZATION, format!("Basic {token}"))
            }
            (None, Some(key)) => {
                let name = HeaderName::from_bytes(key.header.as_bytes()).map_err(|_| {
                    SiteError(format!("{what}: `{}` is not a header name", key.header))
                })?;
                (name, expand(&key.value, &what, lookup)?)
            }
            _ => {
                return Err(SiteError(format!(
                    "{what}: give one of `basic` and `api_key`"
                )));
            }
        };
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| SiteError(format!("{what}: the value is not a header value")))?;
        value.set_sensitive(true);
        if !backend.contains(':') {
            return Err(SiteError(format!(
                "{what}: name the backend as HOST:PORT, e.g. \"erp.internal:8080\""
            )));
        }
        backend_auth.insert(backend.to_ascii_lowercase(), (name, value));
    }
    Ok(Site {
        allow,
        proxy,
        connect_timeout,
        backend_auth,
    })
}

/// What joining gave this agent, from `enrollment.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Enrollment {
    /// The agents listener, `https://HOST:PORT`.
    pub gateway: String,
    pub agent: String,
    pub pool: String,
    /// When the certificate expires, Unix ms.
    pub not_after: i64,
    pub cert_days: u32,
}

/// The agent's identity: its certificate and key, and the gateway's authority (PEM).
#[derive(Debug)]
pub struct Identity {
    pub ca: String,
    pub cert: String,
    pub key: zeroize::Zeroizing<String>,
}

fn read(dir: &Path, name: &str) -> Result<String, SiteError> {
    let path = dir.join(name);
    std::fs::read_to_string(&path).map_err(|e| {
        SiteError(format!(
            "{}: {e} (has this agent joined? `junction agent join`)",
            path.display()
        ))
    })
}

/// Reads what joining wrote.
pub fn read_enrollment(dir: &Path) -> Result<(Enrollment, Identity), SiteError> {
    let text = read(dir, ENROLLMENT_FILE)?;
    let enrollment: Enrollment = serde_json::from_str(&text)
        .map_err(|e| SiteError(format!("{}: {e}", dir.join(ENROLLMENT_FILE).display())))?;
    let identity = Identity {
        ca: read(dir, CA_FILE)?,
        cert: read(dir, CERT_FILE)?,
        key: zeroize::Zeroizing::new(read(dir, KEY_FILE)?),
    };
    Ok((enrollment, identity))
}

/// Writes what joining or renewing gave, each file replaced whole (written aside, then
/// renamed), the key readable by its owner only.
pub fn write_enrollment(
    dir: &Path,
    enrollment: &Enrollment,
    identity: &Identity,
) -> Result<(), SiteError> {
    std::fs::create_dir_all(dir).map_err(|e| SiteError(format!("{}: {e}", dir.display())))?;
    let json = serde_json::to_string_pretty(enrollment)
        .map_err(|e| SiteError(format!("cannot write the enrollment: {e}")))?;
    replace(&dir.join(KEY_FILE), identity.key.as_bytes(), true)?;
    replace(&dir.join(CERT_FILE), identity.cert.as_bytes(), false)?;
    replace(&dir.join(CA_FILE), identity.ca.as_bytes(), false)?;
    replace(&dir.join(ENROLLMENT_FILE), json.as_bytes(), false)?;
    let site = dir.join(SITE_FILE);
    if !site.exists() {
        replace(&site, STARTER.as_bytes(), false)?;
    }
    Ok(())
}

fn replace(path: &Path, bytes: &[u8], private: bool) -> Result<(), SiteError> {
    let fail = |e: std::io::Error| SiteError(format!("{}: {e}", path.display()));
    let aside = PathBuf::from(format!("{}.new", path.display()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&aside).map_err(fail)?;
    std::io::Write::write_all(&mut file, bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&aside, path).map_err(fail)
}
