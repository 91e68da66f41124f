//! Certificate credentials of OAuth apps (`aadcertificate`): a PKCS#12 (.pfx) file or PEM
//! text, read from sealed connection values, signs RFC 7523 client assertions.
//!
//! `TOKEN:certificate` holds the PKCS#12 file in base64 (as Power Platform takes it, with
//! `TOKEN:certificatePassword`), or PEM text with the certificate and its unencrypted
//! private key (`PRIVATE KEY` or `RSA PRIVATE KEY`). RSA keys sign RS256, P-256 keys ES256.
//! The assertion's header carries the certificate's SHA-1 thumbprint (`x5t`), which the
//! Microsoft identity platform uses to find the registered certificate.

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use sha1::Digest as _;

/// What signs an app's client assertions.
pub struct Signer {
    key: EncodingKey,
    algorithm: Algorithm,
    /// base64url SHA-1 of the certificate (DER).
    x5t: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("algorithm", &self.algorithm)
            .field("x5t", &self.x5t)
            .finish_non_exhaustive()
    }
}

/// `RSA` and `id-ecPublicKey` (PKCS#8 algorithm identifiers).
const RSA: &str = "1.2.840.113549.1.1.1";
const EC: &str = "1.2.840.10045.2.1";

impl Signer {
    /// Reads `certificate` (base64 PKCS#12 or PEM) with `password`. Errors say what is
    /// wrong without showing any of it.
    pub fn load(certificate: &str, password: Option<&str>) -> Result<Signer, String> {
        let (key_der, cert_der) = if certificate.contains("-----BEGIN") {
            pem_parts(certificate)?
        } else {
            let compact: String = certificate.split_whitespace().collect();
            let data = base64::engine::general_purpose::STANDARD
                .decode(compact.as_bytes())
                .map_err(|_| {
                    "the certificate is neither PEM nor a base64 PKCS#12 (.pfx) file".to_owned()
                })?;
            let store = p12_keystore::KeyStore::from_pkcs12(
                &data,
                password.unwrap_or_default(),
                p12_keystore::Pkcs12ImportPolicy::Relaxed,
            )
            .map_err(|e| format!("the PKCS#12 file cannot be opened (wrong password?): {e}"))?;
            let (_, chain) = store
                .private_key_chain()
                .ok_or("the PKCS#12 file holds no private key")?;
            let cert = chain
                .certs()
                .first()
                .ok_or("the PKCS#12 file holds no certificate for its private key")?;
            (chain.key().as_der().to_vec(), cert.as_der().to_vec())
        };
        let info = pkcs8::PrivateKeyInfo::try_from(key_der.as_slice())
            .map_err(|_| "the private key is not a PKCS#8 key".to_owned())?;
        let (key, algorithm) = match info.algorithm.oid.to_string().as_str() {
            RSA => (
                EncodingKey::from_rsa_der(info.private_key),
                Algorithm::RS256,
            ),
            EC => (EncodingKey::from_ec_der(&key_der), Algorithm::ES256),
            other => {
                return Err(format!(
                    "keys of algorithm {other} cannot sign (RSA or P-256)"
                ));
            }
        };
        Ok(Signer {
            key,
            algorithm,
            x5t: base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha1::Sha1::digest(&cert_der)),
        })
    }

    /// A client assertion for `client_id` at token endpoint `audience`, valid 5 minutes.
    pub fn assertion(&self, client_id: &str, audience: &str) -> Result<String, String> {
        let now = junction_store::now_ms() / 1000;
        let mut header = Header::new(self.algorithm);
        header.x5t = Some(self.x5t.clone());
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| format!("no randomness: {e}"))?;
        let claims = json!({
            "aud": audience, "iss": client_id, "sub": client_id,
            "jti": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id),
            "iat": now, "nbf": now, "exp": now + 300,
        });
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| format!("cannot sign the client assertion: {e}"))
    }
}

/// The private key (as PKCS#8 DER) and certificate (DER) of PEM text.
fn pem_parts(text: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut key = None;
    let mut cert = None;
    let mut rest = text;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let after = &rest[begin + 11..];
        let label_end = after
            .find("-----")
            .ok_or("a PEM block has no end of its label")?;
        let label = &after[..label_end];
        let body_start = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let end = body_start
            .find(&end_marker)
            .ok_or_else(|| format!("the PEM block {label} has no end"))?;
        let body: String = body_start[..end].split_whitespace().collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|_| format!("the PEM block {label} is not base64"))?;
        match label {
            "CERTIFICATE" if cert.is_none() => cert = Some(der),
            "PRIVATE KEY" => key = Some(der),
            "RSA PRIVATE KEY" => key = Some(rsa_pkcs8(&der)),
            "ENCRYPTED PRIVATE KEY" => {
                return Err(
                    "encrypted PEM keys are not read; give a PKCS#12 file and its password".into(),
                );
            }
            "EC PRIVATE KEY" => {
                return Err(
                    "SEC1 EC keys are not read; convert with `openssl pkcs8 -topk8 -nocrypt`"
                        .into(),
                );
            }
            _ => {}
        }
        rest = &body_start[end + end_marker.len()..];
    }
    match (key, cert) {
        (Some(key), Some(cert)) => Ok((key, cert)),
        (None, _) => Err("the PEM text holds no private key".into()),
        (_, None) => Err("the PEM text holds no certificate".into()),
    }
}

/// A PKCS#1 RSA key wrapped as PKCS#8 (version 0, rsaEncryption with NULL parameters).
fn rsa_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(content);
        out
    }
    // SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    let algorithm = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(&algorithm);
    body.extend(tlv(0x04, pkcs1));
    tlv(0x30, &body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn pem_and_pkcs12_sign_assertions_with_the_thumbprint() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["app".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = format!("{}{}", cert.pem(), key.serialize_pem());
        let signer = Signer::load(&pem, None).unwrap();
        let jwt = signer.assertion("app-id", "https://idp/token").unwrap();
        let header: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(jwt.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], "ES256");
        let thumbprint =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(cert.der()));
        assert_eq!(header["x5t"], thumbprint);

        let mut store = p12_keystore::KeyStore::new();
        let chain = p12_keystore::PrivateKeyChain::new(
            vec![1u8],
            p12_keystore::PrivateKey::from_der(&key.serialize_der()).unwrap(),
            [p12_keystore::Certificate::from_der(cert.der()).unwrap()],
        );
        store.add_entry("app", p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
        let pfx =
            base64::engine::general_purpose::STANDARD.encode(store.writer("pw").write().unwrap());
        assert!(Signer::load(&pfx, Some("pw")).is_ok());
        let wrong = Signer::load(&pfx, Some("nope")).unwrap_err();
        assert!(wrong.contains("wrong password"), "{wrong}");
        assert!(!wrong.contains("pw"));
        assert!(Signer::load("not a certificate", None).is_err());
    }
}
