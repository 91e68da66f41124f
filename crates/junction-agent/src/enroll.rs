//! Enrollment on the gateway's side: the certificate authority (made on first use, its key
//! sealed in the store), single-use enrollment tokens, and the certificates they are
//! exchanged for and renewed as.
//!
//! A token reads `jat1_SECRET.CA`: the store keeps only the SHA-256 of SECRET; CA is the
//! SHA-256 of the authority's certificate, which the joining agent pins.

use std::time::Duration;

use junction_store::crypto::{hash_key, random_hex};
use junction_store::{AGENT_CA_AAD, AgentRow, StoreError, Vault, now_ms};

use crate::pki::{Authority, PkiError, Signed};

/// The prefix of enrollment tokens.
pub const TOKEN_PREFIX: &str = "jat1_";

/// Why an enrollment step failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// 401: the token is unknown, used already or expired; the agent is unknown or revoked.
    #[error("{0}")]
    Refused(String),
    /// 400: the request is not one.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// What a joining agent is given.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Joined {
    pub agent: String,
    pub pool: String,
    /// Its certificate (PEM).
    pub cert: String,
    /// The gateway's certificate authority (PEM).
    pub ca: String,
    /// When the certificate expires, Unix ms.
    pub not_after: i64,
    /// How long certificates are issued for, in days.
    pub cert_days: u32,
}

/// The certificate authority of the store, made and stored when there is none.
pub async fn authority(vault: &Vault) -> Result<Authority, EnrollError> {
    let Some(key) = vault.key() else {
        return Err(EnrollError::Store(StoreError::Invalid(vec![
            "agents need the master key (JUNCTION_MASTER_KEY): it seals the key of the \
             certificate authority that signs their certificates"
                .to_owned(),
        ])));
    };
    let store = vault.store();
    let stored = match store.agent_ca().await? {
        Some(stored) => stored,
        None => {
            let (authority, key_pem) = Authority::generate()?;
            let sealed = key.seal(key_pem.as_bytes(), AGENT_CA_AAD)?;
            // Two replicas at once: the first one stored is the one both use.
            store
                .insert_agent_ca(authority.cert_pem(), &sealed, now_ms())
                .await?;
            store.agent_ca().await?.ok_or_else(|| {
                StoreError::Database(
                    "the agents' certificate authority was stored and is gone".to_owned(),
                )
            })?
        }
    };
    let (cert, sealed) = stored;
    let key_pem = key.open(&sealed, AGENT_CA_AAD)?;
    let key_pem = std::str::from_utf8(&key_pem)
        .map_err(|_| PkiError("the authority's key is not PEM".to_owned()))?;
    Ok(Authority::from_pem(&cert, key_pem)?)
}

/// Makes a single-use enrollment token for `pool`, valid for `ttl`; returns it and when it
/// expires (Unix ms). Audited as `actor`.
pub async fn token(
    vault: &Vault,
    pool: &str,
    ttl: Duration,
    actor: &str,
) -> Result<(String, i64), EnrollError> {
    junction_runtime::config::check_pool_name(pool).map_err(EnrollError::Invalid)?;
    let authority = authority(vault).await?;
    let secret = random_hex(20)?;
    let now = now_ms();
    let expires_at = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
    vault
        .store()
        .insert_agent_token(&hash_key(&secret), pool, expires_at, actor, now)
        .await?;
    vault
        .audit(
            actor,
            "agent.token",
            Some(pool),
            "ok",
            serde_json::json!({ "expires_at": expires_at }),
        )
        .await;
    Ok((
        format!("{TOKEN_PREFIX}{secret}.{}", authority.fingerprint()),
        expires_at,
    ))
}

/// The secret and the authority's fingerprint of a token.
pub fn split_token(token: &str) -> Option<(&str, &str)> {
    let (secret, pin) = token.trim().strip_prefix(TOKEN_PREFIX)?.split_once('.')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(secret, 40) && hex(pin, 64)).then_some((secret, pin))
}

/// The gateway's enrollment desk: what the agents listener answers.
#[derive(Debug)]
pub struct Desk {
    vault: Vault,
    authority: Authority,
    cert_days: u32,
}

impl Desk {
    /// The desk of `vault`'s authority, issuing certificates for `cert_days`.
    pub async fn open(vault: Vault, cert_days: u32) -> Result<Desk, EnrollError> {
        let authority = authority(&vault).await?;
        Ok(Desk {
            vault,
            authority,
            cert_days,
        })
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// Exchanges `token` for a certificate of the request `csr`: a new agent of the
    /// token's pool, named `name`.
    pub async fn join(&self, token: &str, name: &str, csr: &str) -> Result<Joined, EnrollError> {
        let refused = || {
            EnrollError::Refused(
                "the enrollment token is unknown, used already or expired; make a new one with \
                 `junction agents enroll`"
                    .to_owned(),
            )
        };
        let (secret, _) = split_token(token).ok_or_else(refused)?;
        let name = name.trim();
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(EnrollError::Invalid(
                "an agent's name is 1 to 128 printable characters".to_owned(),
            ));
        }
        let now = now_ms();
        let store = self.vault.store();
        let Some(pool) = store.take_agent_token(&hash_key(secret), now).await? else {
            self.vault
                .audit(
                    "agent",
                    "agent.join",
                    Some(name),
                    "denied",
                    serde_json::json!({}),
                )
                .await;
            return Err(refused());
        };
        let agent = format!("ag_{}", random_hex(8)?);
        let signed = self
            .authority
            .sign_agent(csr, &agent, &pool, self.cert_days)?;
        store
            .insert_agent(&AgentRow {
                id: agent.clone(),
                pool: pool.clone(),
                name: name.to_owned(),
                fingerprint: signed.fingerprint.clone(),
                not_after: signed.not_after,
                created_at: now,
                renewed_at: None,
                last_seen: None,
                revoked_at: None,
            })
            .await?;
        self.vault
            .audit(
                &format!("agent:{agent}"),
                "agent.join",
                Some(&pool),
                "ok",
                serde_json::json!({ "name": name }),
            )
            .await;
        Ok(self.joined(agent, pool, signed))
    }

    /// Renews the certificate of the agent known by `fingerprint` (the certificate it
    /// connected with) for the request `csr`.
    pub async fn renew(&self, fingerprint: &str, csr: &str) -> Result<Joined, EnrollError> {
        let agent = self.agent(fingerprint).await?;
        let signed = self
            .authority
            .sign_agent(csr, &agent.id, &agent.pool, self.cert_days)?;
        let store = self.vault.store();
        if !store
            .renew_agent(&agent.id, &signed.fingerprint, signed.not_after, now_ms())
            .await?
        {
            return Err(EnrollError::Refused(format!(
                "agent {} is revoked",
                agent.id
            )));
        }
        self.vault
            .audit(
                &format!("agent:{}", agent.id),
                "agent.renew",
                Some(&agent.pool),
                "ok",
                serde_json::json!({ "not_after": signed.not_after }),
            )
            .await;
        Ok(self.joined(agent.id, agent.pool, signed))
    }

    /// The agent whose current certificate has `fingerprint`, unless it is revoked.
    pub async fn agent(&self, fingerprint: &str) -> Result<AgentRow, EnrollError> {
        match self.vault.store().agent_by_fingerprint(fingerprint).await? {
            Some(agent) if agent.revoked_at.is_none() => Ok(agent),
            Some(agent) => Err(EnrollError::Refused(format!(
                "agent {} is revoked",
                agent.id
            ))),
            None => Err(EnrollError::Refused(
                "this certificate is not an agent's current one (renewed or never issued)"
                    .to_owned(),
            )),
        }
    }

    fn joined(&self, agent: String, pool: String, signed: Signed) -> Joined {
        Joined {
            agent,
            pool,
            cert: signed.cert_pem,
            ca: self.authority.cert_pem().to_owned(),
            not_after: signed.not_after,
            cert_days: self.cert_days,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn tokens_are_read_strictly() {
        let secret = "a".repeat(40);
        let pin = "b".repeat(64);
        assert_eq!(
            split_token(&format!("jat1_{secret}.{pin}\n")),
            Some((secret.as_str(), pin.as_str()))
        );
        assert_eq!(split_token(&format!("jat1_{secret}")), None);
        assert_eq!(split_token(&format!("jat2_{secret}.{pin}")), None);
        assert_eq!(split_token(&format!("jat1_{secret}x.{pin}")), None);
        assert_eq!(split_token("jat1_é.b"), None);
    }

    #[test]
    fn an_agent_certificate_is_signed_for_the_gateway_s_subject_and_checks_as_a_client() {
        let (authority, key) = Authority::generate().unwrap();
        let again = Authority::from_pem(authority.cert_pem(), &key).unwrap();
        assert_eq!(again.fingerprint(), authority.fingerprint());
        let (_, request) = crate::pki::agent_key_and_request("site-1").unwrap();
        let signed = again.sign_agent(&request, "ag_1", "erp", 30).unwrap();
        assert_eq!(signed.fingerprint.len(), 64);
        assert!(signed.not_after > now_ms() + 29 * 86_400_000);
        assert!(again.listener_tls().is_ok());
        assert!(
            again
                .sign_agent("not a request", "ag_1", "erp", 30)
                .is_err()
        );
    }
}
