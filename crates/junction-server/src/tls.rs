//! TLS for clients: the listeners' certificate, read again when its files change, and the
//! identity a client certificate gives.
//!
//! [`Certificates`] holds the rustls server configuration of `[tls]` (TLS 1.2 and 1.3 with
//! ring, ALPN `h2` and `http/1.1`). A task reads `cert_file`, `key_file` and
//! `client_ca_file` every [`RELOAD_EVERY`]; when their bytes change and they still make a
//! valid configuration, new connections get it, and connections already open keep theirs
//! (nothing is dropped). A change that does not load is logged and the one in force stays.
//!
//! With `client_ca_file`, clients are asked for a certificate signed by one of its
//! authorities; a verified one's subject ([`ClientIdentity`]) names a gateway client, next
//! to API keys and JWTs (see `crate::access`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use junction_runtime::config::listeners::{ClientCertificate, TlsConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::sync::watch;

/// How often the certificate files are looked at.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// The subject of the verified certificate a client showed, as `C=US, O=Contoso, CN=app`
/// (the certificate's order); put into each request's extensions on that connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity(pub Arc<str>);

/// The server configuration of `[tls]`, replaced when its files change.
#[derive(Debug)]
pub struct Certificates {
    settings: TlsConfig,
    current: ArcSwap<ServerConfig>,
    /// The files' bytes the current configuration was made from.
    read: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl Certificates {
    /// Reads the files of `settings`; an error names the file and what is wrong with it.
    pub fn load(settings: &TlsConfig) -> Result<Certificates, String> {
        let files = read_files(settings)?;
        let config = server_config(settings, &files)?;
        Ok(Certificates {
            settings: settings.clone(),
            current: ArcSwap::from_pointee(config),
            read: std::sync::Mutex::new(files),
        })
    }

    /// The configuration a new connection gets.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Reads the files again; when they changed and load, they are in force for the next
    /// connection. Returns whether the configuration was replaced.
    pub fn reload(&self) -> Result<bool, String> {
        let files = read_files(&self.settings)?;
        let Ok(mut read) = self.read.lock() else {
            return Ok(false);
        };
        if *read == files {
            return Ok(false);
        }
        let config = server_config(&self.settings, &files)?;
        self.current.store(Arc::new(config));
        *read = files;
        Ok(true)
    }

    /// Looks at the files every [`RELOAD_EVERY`] until `stopped`.
    pub async fn watch(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(RELOAD_EVERY) => {}
                _ = stopped.wait_for(|stop| *stop) => return,
            }
            match self.reload() {
                Ok(true) => tracing::info!(
                    cert_file = %self.settings.cert_file.display(),
                    "the TLS certificate changed on disk: new connections use it"
                ),
                Ok(false) => {}
                // Files being written are read again a second later.
                Err(error) => {
                    tracing::warn!(%error, "the TLS files changed but do not load; the certificate in force stays")
                }
            }
        }
    }
}

/// The subject of the first certificate a client showed, if any (rustls verified it).
pub fn client_identity(certificates: Option<&[CertificateDer<'_>]>) -> Option<ClientIdentity> {
    let first = certificates?.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(first.as_ref()).ok()?;
    Some(ClientIdentity(parsed.subject().to_string().into()))
}

fn read_files(settings: &TlsConfig) -> Result<Vec<Vec<u8>>, String> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
    };
    let mut files = vec![
        read(&settings.cert_file, "`tls.cert_file`")?,
        read(&settings.key_file, "`tls.key_file`")?,
    ];
    if let Some(ca) = &settings.client_ca_file {
        files.push(read(ca, "`tls.client_ca_file`")?);
    }
    Ok(files)
}

/// The rustls configuration of `files` (chain, key, client authorities).
fn server_config(settings: &TlsConfig, files: &[Vec<u8>]) -> Result<ServerConfig, String> {
    let (chain, key, ca) = match files {
        [chain, key] => (chain, key, None),
        [chain, key, ca] => (chain, key, Some(ca)),
        _ => return Err("the TLS files were not read".to_owned()),
    };
    let cert_file = settings.cert_file.display();
    let chain = CertificateDer::pem_slice_iter(chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{cert_file}: not a PEM certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{cert_file}: holds no `CERTIFICATE` block"));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
        format!(
            "{}: not a PEM private key (PKCS#8, SEC1 or PKCS#1): {e}",
            settings.key_file.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = match (ca, settings.client_certificate) {
        (Some(ca), mode) if mode != ClientCertificate::None => {
            let ca_file = settings
                .client_ca_file
                .as_deref()
                .map(Path::display)
                .map(|d| d.to_string())
                .unwrap_or_default();
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca) {
                let cert = cert.map_err(|e| format!("{ca_file}: not a PEM certificate: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{ca_file}: not a usable authority: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("{ca_file}: holds no `CERTIFICATE` block"));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == ClientCertificate::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("{ca_file}: cannot check client certificates: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("{cert_file}: the certificate and key do not go together: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
