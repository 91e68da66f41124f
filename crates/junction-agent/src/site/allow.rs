//! The site's allowlist (`allow` in `agent.toml`): the agent performs a request only when
//! its URL matches one entry, so a compromised gateway cannot reach other hosts of the
//! private network.
//!
//! An entry is `scheme://host:port/path`: scheme, host and port must equal the request's
//! (the port defaults to the scheme's); a path ending in `*` matches every path starting
//! with what precedes it, any other path only itself. A request path with `.` or `..`
//! segments (also percent-encoded) is refused whatever the list says: the backend would
//! resolve them to a path the list did not allow.

use http::Uri;

/// One entry of the allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    scheme: String,
    host: String,
    port: u16,
    path: String,
    prefix: bool,
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

impl Allowed {
    /// Reads an entry, or says why it is not one.
    pub fn parse(entry: &str) -> Result<Allowed, String> {
        let uri: Uri = entry
            .parse()
            .map_err(|e| format!("`{entry}` is not a URL ({e})"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(format!(
                "`{entry}` is not an absolute URL such as \"http://erp.internal:8080/*\""
            ));
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!("`{entry}`: only http and https are forwarded"));
        }
        if uri.query().is_some() || authority.as_str().contains('@') {
            return Err(format!("`{entry}`: an entry has no query and no user"));
        }
        let path = uri.path();
        let (path, prefix) = match path.strip_suffix('*') {
            Some(start) => (start.to_owned(), true),
            None => (path.to_owned(), false),
        };
        if path.contains('*') {
            return Err(format!("`{entry}`: `*` may only end the path"));
        }
        Ok(Allowed {
            scheme: scheme.to_owned(),
            host: authority.host().to_ascii_lowercase(),
            port: authority.port_u16().unwrap_or(default_port(scheme)),
            path,
            prefix,
        })
    }

    fn matches(&self, scheme: &str, host: &str, port: u16, path: &str) -> bool {
        self.scheme == scheme
            && self.host == host
            && self.port == port
            && if self.prefix {
                path.starts_with(&self.path)
            } else {
                path == self.path
            }
    }
}

/// Whether `uri` may be requested: `Err` says why not.
pub fn check(allowed: &[Allowed], uri: &Uri) -> Result<(), String> {
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err("the request has no absolute URL".to_owned());
    };
    let path = uri.path();
    if has_dot_segment(path) {
        return Err(format!("`{path}` has `.` or `..` segments"));
    }
    let host = authority.host().to_ascii_lowercase();
    let port = authority.port_u16().unwrap_or(default_port(scheme));
    if allowed
        .iter()
        .any(|entry| entry.matches(scheme, &host, port, path))
    {
        Ok(())
    } else {
        Err(format!(
            "{scheme}://{host}:{port}{path} is not in this agent's allowlist"
        ))
    }
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    }) || path.to_ascii_lowercase().contains("%2f")
        || path.contains('\\')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn list(entries: &[&str]) -> Vec<Allowed> {
        entries.iter().map(|e| Allowed::parse(e).unwrap()).collect()
    }

    #[test]
    fn scheme_host_port_and_path_must_match() {
        let allowed = list(&[
            "http://erp.internal:8080/api/*",
            "https://hr.internal/status",
        ]);
        let ok = |u: &str| check(&allowed, &u.parse().unwrap());
        assert!(ok("http://erp.internal:8080/api/orders?x=1").is_ok());
        assert!(ok("http://ERP.internal:8080/api/").is_ok());
        assert!(ok("https://hr.internal:443/status").is_ok());
        assert!(ok("https://hr.internal/status/x").is_err());
        assert!(ok("http://erp.internal:8081/api/orders").is_err());
        assert!(ok("https://erp.internal:8080/api/orders").is_err());
        assert!(ok("http://erp.internal:8080/admin").is_err());
        assert!(ok("http://db.internal:8080/api/orders").is_err());
    }

    #[test]
    fn dot_segments_and_encoded_slashes_are_refused() {
        let allowed = list(&["http://erp.internal:8080/api/*"]);
        for path in [
            "/api/../admin",
            "/api/%2e%2e/admin",
            "/api/%2E./admin",
            "/api/./x",
            "/api/..%2fadmin",
            "/api/..\\admin",
        ] {
            let uri = format!("http://erp.internal:8080{path}");
            let Ok(uri) = uri.parse::<Uri>() else {
                continue;
            };
            assert!(check(&allowed, &uri).is_err(), "{path}");
        }
    }

    #[test]
    fn entries_are_read_strictly() {
        assert!(Allowed::parse("erp.internal:8080").is_err());
        assert!(Allowed::parse("ftp://erp.internal/").is_err());
        assert!(Allowed::parse("http://erp.internal/a*b").is_err());
        assert!(Allowed::parse("http://u@erp.internal/").is_err());
        assert_eq!(
            Allowed::parse("http://erp.internal").unwrap(),
            Allowed {
                scheme: "http".into(),
                host: "erp.internal".into(),
                port: 80,
                path: "/".into(),
                prefix: false
            }
        );
    }
}
