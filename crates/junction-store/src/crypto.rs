//! Secret values at rest: XChaCha20-Poly1305 under the master key.
//!
//! The master key is 32 random bytes, written as base64 (`junction keys generate` prints
//! one). It comes from the file `[store] key_file` names, else from the environment
//! variable `JUNCTION_MASTER_KEY`; it is never stored in the database.
//!
//! A sealed value is `"jx1" ‖ key id (8 bytes) ‖ nonce (24 bytes) ‖ ciphertext ‖ tag`. The
//! key id (the first 8 bytes of SHA-256 over a label and the key) tells which key sealed it,
//! so a wrong key is reported as such instead of as corrupt data. Every value is sealed
//! with associated data naming its row and column (`connection:ID:secrets`), so a sealed
//! value copied into another row does not open.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::error::StoreError;

/// The environment variable the master key is read from when no key file is configured.
pub const MASTER_KEY_ENV: &str = "JUNCTION_MASTER_KEY";

const MAGIC: &[u8; 3] = b"jx1";
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;

/// The key that seals every secret value. Prints as its id only; zeroed on drop.
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<[u8; 32]>,
    id: [u8; KEY_ID_LEN],
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id())
    }
}

impl MasterKey {
    /// A new random key.
    pub fn generate() -> Result<MasterKey, StoreError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut())
            .map_err(|e| StoreError::Crypto(format!("no randomness available: {e}")))?;
        Ok(MasterKey::from_bytes(bytes))
    }

    fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> MasterKey {
        let mut hasher = Sha256::new();
        hasher.update(b"junction master key id\0");
        hasher.update(bytes.as_ref());
        let digest = hasher.finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        MasterKey { bytes, id }
    }

    /// Parses the base64 text of a key (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<MasterKey, StoreError> {
        let mut decoded = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| {
                StoreError::Key("the master key is not base64 text (write 32 random bytes as base64; `junction keys generate` prints one)".into())
            })?;
        if decoded.len() != 32 {
            let len = decoded.len();
            decoded.zeroize();
            return Err(StoreError::Key(format!(
                "the master key is {len} bytes long; it must be 32 bytes (44 characters of base64)"
            )));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&decoded);
        decoded.zeroize();
        Ok(MasterKey::from_bytes(bytes))
    }

    /// Reads a key file (base64 text).
    pub fn from_file(path: &Path) -> Result<MasterKey, StoreError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            StoreError::Key(format!(
                "cannot read the master key file {}: {e}",
                path.display()
            ))
        })?);
        MasterKey::parse(&text).map_err(|e| StoreError::Key(format!("{}: {e}", path.display())))
    }

    /// The key from `file` when given, else from `JUNCTION_MASTER_KEY` (through `lookup`),
    /// else none.
    pub fn load(
        file: Option<&Path>,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<MasterKey>, StoreError> {
        if let Some(file) = file {
            return MasterKey::from_file(file).map(Some);
        }
        match lookup(MASTER_KEY_ENV) {
            Some(text) if !text.trim().is_empty() => {
                let text = Zeroizing::new(text);
                MasterKey::parse(&text)
                    .map(Some)
                    .map_err(|e| StoreError::Key(format!("{MASTER_KEY_ENV}: {e}")))
            }
            _ => Ok(None),
        }
    }

    /// The key as base64 text, to write into a key file.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.bytes.as_ref()))
    }

    /// A key for another purpose (`purpose` names it), derived with HMAC-SHA256: every
    /// holder of this master key derives the same, and it reveals nothing of this one.
    pub fn derive(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        use hmac::{KeyInit, Mac};
        let mut out = Zeroizing::new([0u8; 32]);
        if let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(self.bytes.as_ref()) {
            mac.update(b"junction derived key\0");
            mac.update(purpose.as_bytes());
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        out
    }

    /// The key's id, 16 hex digits: safe to print and to store.
    pub fn id(&self) -> String {
        hex(&self.id)
    }

    fn cipher(&self) -> Result<XChaCha20Poly1305, StoreError> {
        XChaCha20Poly1305::new_from_slice(self.bytes.as_ref())
            .map_err(|_| StoreError::Crypto("bad key length".into()))
    }

    /// Seals `plain` for the place `aad` names.
    pub fn seal(&self, plain: &[u8], aad: &str) -> Result<Vec<u8>, StoreError> {
        let cipher = self.cipher()?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| StoreError::Crypto(format!("no randomness available: {e}")))?;
        let sealed = cipher
            .encrypt(
                &XNonce::try_from(&nonce[..])
                    .map_err(|_| StoreError::Crypto("bad nonce length".into()))?,
                Payload {
                    msg: plain,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Crypto("encryption failed".into()))?;
        let mut out = Vec::with_capacity(MAGIC.len() + KEY_ID_LEN + NONCE_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a value sealed for `aad`. The plain text is zeroed when dropped.
    pub fn open(&self, sealed: &[u8], aad: &str) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let key_id = sealed_key_id(sealed)
            .ok_or_else(|| StoreError::Crypto(format!("{aad}: not a sealed value")))?;
        if key_id != self.id() {
            return Err(StoreError::Key(format!(
                "{aad} is encrypted under key {key_id}, but the master key given is {}",
                self.id()
            )));
        }
        let start = MAGIC.len() + KEY_ID_LEN;
        let nonce = sealed
            .get(start..start + NONCE_LEN)
            .ok_or_else(|| StoreError::Crypto(format!("{aad}: sealed value is truncated")))?;
        let body = sealed.get(start + NONCE_LEN..).unwrap_or_default();
        let cipher = self.cipher()?;
        cipher
            .decrypt(
                &XNonce::try_from(nonce)
                    .map_err(|_| StoreError::Crypto(format!("{aad}: bad nonce length")))?,
                Payload {
                    msg: body,
                    aad: aad.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| {
                StoreError::Crypto(format!(
                    "{aad}: the sealed value does not open (altered, or moved from another row)"
                ))
            })
    }
}

/// The id of the key that sealed `sealed`, or `None` when it is not a sealed value.
pub fn sealed_key_id(sealed: &[u8]) -> Option<String> {
    if sealed.len() < MAGIC.len() + KEY_ID_LEN + NONCE_LEN || !sealed.starts_with(MAGIC) {
        return None;
    }
    sealed.get(MAGIC.len()..MAGIC.len() + KEY_ID_LEN).map(hex)
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// SHA-256 of `bytes` as hex: how agents' certificates are known.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// SHA-256 of `text` as hex: how gateway API keys are stored.
pub fn hash_key(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> Result<String, StoreError> {
    let mut bytes = Zeroizing::new(vec![0u8; n]);
    getrandom::fill(bytes.as_mut_slice())
        .map_err(|e| StoreError::Crypto(format!("no randomness available: {e}")))?;
    Ok(hex(&bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn seals_and_opens_only_in_its_place_and_under_its_key() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(b"hunter2", "connection:a:secrets").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            key.open(&sealed, "connection:a:secrets")
                .unwrap()
                .as_slice(),
            b"hunter2"
        );
        assert!(key.open(&sealed, "connection:b:secrets").is_err());
        let other = MasterKey::generate().unwrap();
        let error = other.open(&sealed, "connection:a:secrets").unwrap_err();
        assert!(error.to_string().contains(&key.id()), "{error}");
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(key.open(&altered, "connection:a:secrets").is_err());
    }

    #[test]
    fn keys_parse_from_base64_and_print_only_their_id() {
        let key = MasterKey::generate().unwrap();
        let again = MasterKey::parse(&format!(" {}\n", key.to_base64().as_str())).unwrap();
        assert_eq!(again.id(), key.id());
        assert_eq!(format!("{key:?}"), format!("MasterKey({})", key.id()));
        assert!(MasterKey::parse("c2hvcnQ=").is_err());
        assert!(MasterKey::parse("not base64!").is_err());
        let env = |name: &str| (name == MASTER_KEY_ENV).then(|| key.to_base64().to_string());
        assert_eq!(MasterKey::load(None, &env).unwrap().unwrap().id(), key.id());
        assert!(MasterKey::load(None, &|_| None).unwrap().is_none());
    }
}
