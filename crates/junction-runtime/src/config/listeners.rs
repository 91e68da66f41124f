//! `listen_tls`, `[tls]` and `[http2]`: how clients reach the listeners (docs/config.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::spanned::Spanned;
use super::{Builder, Scalar};

/// `[tls]`: the certificate clients are shown on `listen_tls` (and on the admin listener
/// with `admin = true`), and whether clients show one back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// `cert_file`: the PEM certificate chain, the server's own first. Read again when it
    /// changes on disk.
    pub cert_file: PathBuf,
    /// `key_file`: the PEM private key (PKCS#8, SEC1 or PKCS#1). Read again with the chain.
    pub key_file: PathBuf,
    /// `client_ca_file`: PEM certificates of the authorities whose client certificates are
    /// accepted; a verified client certificate's subject names a gateway client.
    pub client_ca_file: Option<PathBuf>,
    /// `client_certificate`: whether a client must show a certificate (`"required"`) or
    /// may (`"optional"`, the default when `client_ca_file` is set).
    pub client_certificate: ClientCertificate,
    /// `admin`: the admin listener speaks TLS too, with the same certificate.
    pub admin: bool,
}

/// Whether the TLS listeners ask clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientCertificate {
    /// No `client_ca_file`: none is asked for.
    #[default]
    None,
    /// Asked for; a client without one goes on to API keys and JWTs.
    Optional,
    /// Asked for; the handshake fails without a valid one.
    Required,
}

/// `[http2]`: what one HTTP/2 client connection may do (docs/security.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Config {
    /// `max_concurrent_streams`: requests in flight on one connection (default 128).
    pub max_concurrent_streams: u32,
    /// `max_header_list_size`: the largest request head, decoded (default 64 KiB).
    pub max_header_list_size: u32,
    /// `max_pending_resets`: streams a client may open and reset before the gateway has
    /// looked at them; past it the connection is closed (rapid reset, CVE-2023-44487;
    /// default 20).
    pub max_pending_resets: usize,
    /// `max_error_resets`: streams the gateway may reset for a client's protocol errors
    /// before it closes the connection (default 256).
    pub max_error_resets: usize,
    /// `keep_alive_interval`: a PING after this much silence; a connection that does not
    /// answer within as long again is closed (default 30 s).
    pub keep_alive_interval: Duration,
}

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config {
            max_concurrent_streams: 128,
            max_header_list_size: 64 * 1024,
            max_pending_resets: 20,
            max_error_resets: 256,
            keep_alive_interval: Duration::from_secs(30),
        }
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    cert_file: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    client_ca_file: Option<Spanned<String>>,
    client_certificate: Option<Spanned<String>>,
    admin: Option<bool>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp2 {
    max_concurrent_streams: Option<Spanned<Scalar>>,
    max_header_list_size: Option<Spanned<Scalar>>,
    max_pending_resets: Option<Spanned<Scalar>>,
    max_error_resets: Option<Spanned<Scalar>>,
    keep_alive_interval: Option<Spanned<String>>,
}

impl Builder<'_> {
    /// `[tls]`: both files are needed; `client_certificate` needs `client_ca_file`. A
    /// `[tls]` that nothing uses (no `listen_tls`, no `admin = true`) is an error, as is a
    /// `listen_tls` without `[tls]`.
    pub(super) fn tls(
        &mut self,
        raw: Option<Spanned<RawTls>>,
        listen_tls: Option<&Spanned<String>>,
        dir: &Path,
    ) -> Option<TlsConfig> {
        let Some(raw) = raw else {
            if let Some(listen) = listen_tls {
                self.push(
                    listen,
                    "listen_tls",
                    "a TLS listener needs a certificate: add `[tls]` with `cert_file` and `key_file`",
                );
            }
            return None;
        };
        let section = raw.span().start;
        let raw = raw.into_inner();
        let mut file = |value: Option<Spanned<String>>, key: &str| match value {
            Some(value) => self.string(&value, key).map(|path| dir.join(path)),
            None => {
                self.problem_at(section, key, "is required: the PEM file to read");
                None
            }
        };
        let cert_file = file(raw.cert_file, "tls.cert_file");
        let key_file = file(raw.key_file, "tls.key_file");
        let client_ca_file = raw
            .client_ca_file
            .and_then(|value| self.string(&value, "tls.client_ca_file"))
            .map(|path| dir.join(path));
        let client_certificate = match (&raw.client_certificate, &client_ca_file) {
            (None, None) => ClientCertificate::None,
            (None, Some(_)) => ClientCertificate::Optional,
            (Some(value), ca) => {
                let text = self.string(value, "tls.client_certificate")?;
                match (text.as_str(), ca) {
                    ("optional", Some(_)) => ClientCertificate::Optional,
                    ("required", Some(_)) => ClientCertificate::Required,
                    ("optional" | "required", None) => {
                        self.push(
                            value,
                            "tls.client_certificate",
                            "client certificates are checked against `client_ca_file`: set it",
                        );
                        ClientCertificate::None
                    }
                    _ => {
                        self.push(
                            value,
                            "tls.client_certificate",
                            format!("`{text}` is neither \"optional\" nor \"required\""),
                        );
                        ClientCertificate::None
                    }
                }
            }
        };
        let admin = raw.admin.unwrap_or(false);
        if listen_tls.is_none() && !admin {
            self.problem_at(
                section,
                "tls",
                "nothing uses this certificate: set `listen_tls`, or `admin = true` for the admin listener",
            );
        }
        Some(TlsConfig {
            cert_file: cert_file?,
            key_file: key_file?,
            client_ca_file,
            client_certificate,
            admin,
        })
    }

    /// `[http2]`: each limit a whole number above 0.
    pub(super) fn http2(&mut self, raw: Option<RawHttp2>) -> Http2Config {
        let mut config = Http2Config::default();
        let Some(raw) = raw else {
            return config;
        };
        if let Some(n) = self.count(raw.max_concurrent_streams, "http2.max_concurrent_streams") {
            config.max_concurrent_streams = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(value) = raw.max_header_list_size
            && let Some(size) = self.size(Some(value), "http2.max_header_list_size")
        {
            config.max_header_list_size = u32::try_from(size).unwrap_or(u32::MAX);
        }
        if let Some(n) = self.count(raw.max_pending_resets, "http2.max_pending_resets") {
            config.max_pending_resets = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = self.count(raw.max_error_resets, "http2.max_error_resets") {
            config.max_error_resets = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(d) = self.duration(raw.keep_alive_interval, "http2.keep_alive_interval") {
            config.keep_alive_interval = d;
        }
        config
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::path::Path;

    use super::*;
    use crate::config::{Config, ConfigError};

    fn problems(text: &str) -> Vec<String> {
        match Config::parse(text, Path::new("junction.toml"), Path::new("conf"), &|_| {
            None
        }) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid { problems, .. }) => problems
                .into_iter()
                .map(|p| format!("{}: {}", p.line.unwrap_or(0), p.message))
                .collect(),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn tls_and_http2_are_read_and_checked() {
        let config = Config::parse(
            "listen_tls = \":8443\"\n[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nclient_ca_file = \"ca.pem\"\nadmin = true\n[http2]\nmax_concurrent_streams = 50\nmax_header_list_size = \"32KiB\"\n",
            Path::new("junction.toml"),
            Path::new("conf"),
            &|_| None,
        )
        .unwrap();
        assert_eq!(config.listen_tls, Some("0.0.0.0:8443".parse().unwrap()));
        let tls = config.tls.unwrap();
        assert_eq!(tls.cert_file, Path::new("conf/c.pem"));
        assert_eq!(tls.client_certificate, ClientCertificate::Optional);
        assert!(tls.admin);
        assert_eq!(config.http2.max_concurrent_streams, 50);
        assert_eq!(config.http2.max_header_list_size, 32 * 1024);
        assert_eq!(config.http2.max_pending_resets, 20);

        let found = problems("listen_tls = \":8443\"\n");
        assert!(found[0].starts_with("1: `listen_tls`: a TLS listener needs a certificate"));
        let found = problems("[tls]\ncert_file = \"c.pem\"\n");
        assert!(
            found
                .iter()
                .any(|p| p.contains("`tls.key_file`: is required"))
        );
        assert!(
            found
                .iter()
                .any(|p| p.contains("nothing uses this certificate"))
        );
        let found = problems(
            "listen_tls = \":1\"\n[tls]\ncert_file = \"c\"\nkey_file = \"k\"\nclient_certificate = \"required\"\n",
        );
        assert!(found[0].starts_with(
            "5: `tls.client_certificate`: client certificates are checked against `client_ca_file`"
        ));
        let found =
            problems("[http2]\nmax_concurrent_streams = 0\nmax_pending_resets = \"many\"\n");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].contains("`http2.max_concurrent_streams`: `0` is not a whole number above 0")
        );
    }
}
