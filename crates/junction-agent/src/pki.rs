//! The agents' certificates: the gateway's own certificate authority, what it signs (the
//! agents listener's certificate and each agent's), and the TLS settings of both ends.
//!
//! Agents check the gateway by this authority, not by the address they dial: the
//! listener's certificate always names [`GATEWAY_NAME`], so a gateway behind NAT, a load
//! balancer or a changed DNS name needs no new certificate. Before it has the authority's
//! certificate, a joining agent pins it by the SHA-256 its enrollment token carries.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use time::OffsetDateTime;

use junction_store::crypto::sha256_hex;

/// The name in the agents listener's certificate, which agents check.
pub const GATEWAY_NAME: &str = "junction-gateway";
/// ALPN of the tunnel: after the handshake the gateway speaks HTTP/2 as the client.
pub const ALPN_TUNNEL: &[u8] = b"junction-agent/1";
/// ALPN of enrollment and renewal (HTTP/1.1, the agent as the client).
pub const ALPN_ENROLL: &[u8] = b"http/1.1";

/// A certificate, its key or a TLS setting could not be made or read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PkiError(pub String);

fn pki(what: &str) -> impl Fn(rcgen::Error) -> PkiError + '_ {
    move |e| PkiError(format!("{what}: {e}"))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The gateway's certificate authority for agents.
#[derive(Debug)]
pub struct Authority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate an [`Authority`] signed.
#[derive(Debug, Clone)]
pub struct Signed {
    pub cert_pem: String,
    /// SHA-256 (hex) of its DER.
    pub fingerprint: String,
    /// When it expires, Unix ms.
    pub not_after: i64,
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| PkiError(format!("no randomness available: {e}")))?;
    bytes[0] &= 0x7f; // a positive number
    Ok(SerialNumber::from_slice(&bytes))
}

fn validity(params: &mut CertificateParams, days: u32) -> i64 {
    let now = OffsetDateTime::now_utc();
    // An hour back: clocks of agents and gateway need not agree to the second.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    i64::try_from(params.not_after.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl Authority {
    /// A new authority; returns it with its key as PKCS#8 PEM (to be sealed).
    pub fn generate() -> Result<(Authority, zeroize::Zeroizing<String>), PkiError> {
        let key = KeyPair::generate().map_err(pki("cannot make the authority's key"))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "Junction agents CA");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial()?);
        validity(&mut params, 3650);
        let cert = params
            .self_signed(&key)
            .map_err(pki("cannot sign the authority's certificate"))?;
        let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
        let authority = Authority {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        };
        Ok((authority, key_pem))
    }

    /// The authority of a stored certificate and key (both PEM).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Authority, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(pki("the authority's key"))?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| PkiError(format!("the authority's certificate: {e}")))?;
        let issuer =
            Issuer::from_ca_cert_der(&cert_der, key).map_err(pki("the authority's certificate"))?;
        Ok(Authority {
            cert_pem: cert_pem.to_owned(),
            cert_der,
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 (hex) of the authority's certificate: what enrollment tokens carry.
    pub fn fingerprint(&self) -> String {
        sha256_hex(&self.cert_der)
    }

    /// A fresh certificate and key for the agents listener, naming [`GATEWAY_NAME`].
    fn listener_identity(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PkiError> {
        let key = KeyPair::generate().map_err(pki("cannot make the listener's key"))?;
        let mut params = CertificateParams::new(vec![GATEWAY_NAME.to_owned()])
            .map_err(pki("the listener's certificate"))?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.serial_number = Some(random_serial()?);
        validity(&mut params, 825);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(pki("cannot sign the listener's certificate"))?;
        let key = PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| PkiError(format!("the listener's key: {e}")))?;
        Ok((vec![cert.der().clone(), self.cert_der.clone()], key))
    }

    /// Signs an agent's certificate request (PEM) for `days`: the agent's key never leaves
    /// it. The subject is the gateway's choice (`agent` id, `pool`), never the request's.
    pub fn sign_agent(
        &self,
        csr_pem: &str,
        agent: &str,
        pool: &str,
        days: u32,
    ) -> Result<Signed, PkiError> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(pki("the certificate request"))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, agent);
        name.push(DnType::OrganizationalUnitName, pool);
        params.distinguished_name = name;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial()?);
        let not_after = validity(&mut params, days);
        csr.params = params;
        let cert = csr
            .signed_by(&self.issuer)
            .map_err(pki("cannot sign the agent's certificate"))?;
        Ok(Signed {
            cert_pem: cert.pem(),
            fingerprint: sha256_hex(cert.der()),
            not_after,
        })
    }

    /// TLS of the agents listener: TLS 1.3, its own certificate, agents' certificates
    /// checked against this authority when shown (enrollment comes without one).
    pub fn listener_tls(&self) -> Result<ServerConfig, PkiError> {
        let (chain, key) = self.listener_identity()?;
        let mut roots = RootCertStore::empty();
        roots
            .add(self.cert_der.clone())
            .map_err(|e| PkiError(format!("the authority's certificate: {e}")))?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| PkiError(format!("cannot check agents' certificates: {e}")))?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| PkiError(format!("TLS 1.3: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| PkiError(format!("the listener's certificate: {e}")))?;
        config.alpn_protocols = vec![ALPN_TUNNEL.to_vec(), ALPN_ENROLL.to_vec()];
        Ok(config)
    }
}

/// A new key pair for an agent and its certificate request: (key PEM, request PEM).
pub fn agent_key_and_request(name: &str) -> Result<(zeroize::Zeroizing<String>, String), PkiError> {
    let key = KeyPair::generate().map_err(pki("cannot make the agent's key"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    let request = params
        .serialize_request(&key)
        .map_err(pki("cannot make the certificate request"))?
        .pem()
        .map_err(pki("cannot write the certificate request"))?;
    Ok((zeroize::Zeroizing::new(key.serialize_pem()), request))
}

/// TLS of an agent that has joined: the gateway checked by `ca_pem`, this agent shown by
/// `cert_pem` and `key_pem`, speaking `alpn`.
pub fn agent_tls(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    alpn: &[u8],
) -> Result<ClientConfig, PkiError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| PkiError(format!("the gateway's authority: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| PkiError(format!("the gateway's authority: {e}")))?;
    }
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError(format!("the agent's certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| PkiError(format!("the agent's key: {e}")))?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| PkiError(format!("TLS 1.3: {e}")))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| PkiError(format!("the agent's certificate: {e}")))?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// TLS of a joining agent: the gateway is trusted when its chain holds the authority
/// whose SHA-256 is `pin` and its certificate is valid under that authority.
pub fn joining_tls(pin: &str) -> Result<ClientConfig, PkiError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| PkiError(format!("TLS 1.3: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            pin: pin.to_ascii_lowercase(),
            provider: provider(),
        }))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_ENROLL.to_vec()];
    Ok(config)
}

/// The verifier of [`joining_tls`].
#[derive(Debug)]
struct Pinned {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(authority) = intermediates.iter().find(|c| sha256_hex(c) == self.pin) else {
            return Err(rustls::Error::General(
                "the gateway's certificate authority is not the one the enrollment token names"
                    .to_owned(),
            ));
        };
        let mut roots = RootCertStore::empty();
        roots.add(authority.clone().into_owned())?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms().supported_schemes()
    }
}

impl Pinned {
    fn algorithms(&self) -> WebPkiSupportedAlgorithms {
        self.provider.signature_verification_algorithms
    }
}
