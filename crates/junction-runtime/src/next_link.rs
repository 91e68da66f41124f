//! Next links the gateway hands out: a backend's next link, signed for one operation and
//! one connection, valid until it expires.
//!
//! A paged answer's next link is rewritten (`updatenextlink`) into a gateway URL whose
//! `junction-next` query parameter is a token:
//!
//! ```text
//! v1.EXPIRY.PATH.MAC     EXPIRY: Unix seconds; PATH: base64url of the path and query
//!                        below the backend's base URL; MAC: HMAC-SHA256, 16 bytes, base64url
//! ```
//!
//! The MAC covers the connector, the operation, the connection the link was issued on, the
//! expiry and the path, so a client can neither make up a path for the gateway to call with
//! the connector's credentials, nor replay another operation's or another connection's
//! link. Every replica must sign with the same key: `[next_links] key`, else one derived
//! from the store's master key, else a key made when the process starts (one replica).

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = hmac::Hmac<Sha256>;

/// How long a next link stays valid when `[next_links] ttl` is not set.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// Bytes of the MAC kept in a link.
const MAC_LEN: usize = 16;

/// The key next links are signed with. Prints as `LinkKey([redacted])`.
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkKey([redacted])")
    }
}

impl LinkKey {
    /// A key from 32 secret bytes (such as one derived from the master key).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        LinkKey(bytes)
    }

    /// A key from configured text (`[next_links] key`): its SHA-256.
    pub fn from_text(text: &str) -> Self {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&Sha256::digest(text.as_bytes()));
        LinkKey(bytes)
    }

    /// This process's own key, made once at start (the same across reloads). Links signed
    /// with it are refused by other processes.
    pub fn process() -> Arc<LinkKey> {
        static KEY: OnceLock<Arc<LinkKey>> = OnceLock::new();
        KEY.get_or_init(|| {
            let mut bytes = [0u8; 32];
            if getrandom::fill(&mut bytes).is_err() {
                // No randomness: a key from the time and the process id is still unknown
                // to clients, if weaker.
                let seed = format!("{:?}{}", SystemTime::now(), std::process::id());
                bytes.copy_from_slice(&Sha256::digest(seed.as_bytes()));
            }
            Arc::new(LinkKey(bytes))
        })
        .clone()
    }

    fn mac(&self, scope: &Scope<'_>, expiry: u64, path: &str) -> [u8; MAC_LEN] {
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            // HMAC takes keys of any length; this cannot happen.
            Err(_) => return [0; MAC_LEN],
        };
        for part in [
            b"junction next link v1".as_slice(),
            scope.connector.as_bytes(),
            scope.operation.as_bytes(),
            scope.connection.as_bytes(),
            expiry.to_string().as_bytes(),
            path.as_bytes(),
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }
}

/// How a gateway signs its links: the key, how long a link stays valid, and whether the
/// key was configured (else a store's may replace it).
#[derive(Debug, Clone)]
pub(crate) struct Signing {
    pub key: Arc<LinkKey>,
    pub ttl: Duration,
    pub configured: bool,
}

impl Signing {
    pub(crate) fn new(config: &crate::config::NextLinksConfig) -> Self {
        Signing {
            key: match &config.key {
                Some(text) => Arc::new(LinkKey::from_text(text.expose())),
                None => LinkKey::process(),
            },
            ttl: config.ttl,
            configured: config.key.is_some(),
        }
    }
}

/// What a link is issued for: it is accepted only for the same connector, operation and
/// connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub connector: &'a str,
    pub operation: &'a str,
    /// The stored connection's id, or empty for the configuration's connection.
    pub connection: &'a str,
}

/// Why a `junction-next` value is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not a token, or one not signed for this operation and connection.
    Forged,
    Expired,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Forged => f.write_str(
                "it is not a next link this gateway issued for this operation and connection",
            ),
            Refused::Expired => {
                f.write_str("the next link has expired; request the first page again")
            }
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The token for `path` (a path and query below the backend's base URL), valid for `ttl`.
pub(crate) fn issue(key: &LinkKey, scope: &Scope<'_>, path: &str, ttl: Duration) -> String {
    let expiry = now_secs().saturating_add(ttl.as_secs().max(1));
    let mac = key.mac(scope, expiry, path);
    format!(
        "v1.{expiry}.{}.{}",
        URL_SAFE_NO_PAD.encode(path),
        URL_SAFE_NO_PAD.encode(mac)
    )
}

/// The path a token names, when `key` signed it for `scope` and it has not expired.
pub(crate) fn verify(key: &LinkKey, scope: &Scope<'_>, token: &str) -> Result<String, Refused> {
    let mut parts = token.split('.');
    let (Some("v1"), Some(expiry), Some(path), Some(mac), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(Refused::Forged);
    };
    let expiry: u64 = expiry.parse().map_err(|_| Refused::Forged)?;
    let path = URL_SAFE_NO_PAD
        .decode(path)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(Refused::Forged)?;
    let given = URL_SAFE_NO_PAD.decode(mac).map_err(|_| Refused::Forged)?;
    let expected = key.mac(scope, expiry, &path);
    // Compared in constant time: every byte is looked at.
    let same = given.len() == MAC_LEN
        && given
            .iter()
            .zip(expected.iter())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0;
    if !same {
        return Err(Refused::Forged);
    }
    if expiry < now_secs() {
        return Err(Refused::Expired);
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const SCOPE: Scope<'static> = Scope {
        connector: "planner",
        operation: "ListTasks",
        connection: "",
    };

    #[test]
    fn a_link_verifies_for_its_scope_only() {
        let key = LinkKey::from_text("a shared secret");
        let token = issue(&key, &SCOPE, "/tasks?$skiptoken=2", DEFAULT_TTL);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "{token}"
        );
        assert_eq!(verify(&key, &SCOPE, &token).unwrap(), "/tasks?$skiptoken=2");
        for other in [
            Scope {
                operation: "GetTask",
                ..SCOPE
            },
            Scope {
                connection: "c-1",
                ..SCOPE
            },
            Scope {
                connector: "other",
                ..SCOPE
            },
        ] {
            assert_eq!(verify(&key, &other, &token), Err(Refused::Forged));
        }
        let other_key = LinkKey::from_text("another secret");
        assert_eq!(verify(&other_key, &SCOPE, &token), Err(Refused::Forged));
    }

    #[test]
    fn tampered_made_up_and_expired_links_are_refused() {
        let key = LinkKey::from_text("k");
        let token = issue(&key, &SCOPE, "/tasks", DEFAULT_TTL);
        let parts: Vec<&str> = token.split('.').collect();
        let forged_path = format!(
            "v1.{}.{}.{}",
            parts[1],
            URL_SAFE_NO_PAD.encode("/admin"),
            parts[3]
        );
        let later = format!(
            "v1.{}.{}.{}",
            parts[1].parse::<u64>().unwrap() + 1,
            parts[2],
            parts[3]
        );
        for bad in [
            "/any/path",
            "",
            "v1",
            "v1.1.2.3.4",
            "v2.1.AA.AA",
            forged_path.as_str(),
            later.as_str(),
        ] {
            assert_eq!(verify(&key, &SCOPE, bad), Err(Refused::Forged), "{bad}");
        }
        let expiry = now_secs() - 10;
        let mac = key.mac(&SCOPE, expiry, "/tasks");
        let expired = format!(
            "v1.{expiry}.{}.{}",
            URL_SAFE_NO_PAD.encode("/tasks"),
            URL_SAFE_NO_PAD.encode(mac)
        );
        assert_eq!(verify(&key, &SCOPE, &expired), Err(Refused::Expired));
    }

    #[test]
    fn the_process_key_is_made_once() {
        assert_eq!(LinkKey::process().0, LinkKey::process().0);
        assert!(format!("{:?}", LinkKey::process()).contains("redacted"));
    }
}
