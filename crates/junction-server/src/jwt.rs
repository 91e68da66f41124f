//! JWT bearer tokens of gateway clients, checked against the configured issuer's JWKS.
//!
//! A token is accepted when its `alg` is in `[clients.jwt] algorithms` (never `none` or a
//! shared-secret HS* algorithm), its `kid` names a key of the issuer's JWKS, its signature
//! verifies, `iss` is the issuer, `aud` names an accepted audience, and `exp` (required)
//! and `nbf` hold, with `leeway` of clock skew. The JWKS is fetched when first needed,
//! again after 10 minutes, and again when a token names a key it does not hold (the
//! issuer rotated its signing keys), at most once every 5 seconds.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use junction_runtime::config::access::JwtConfig;
use serde::Deserialize;

const MAX_AGE: Duration = Duration::from_secs(600);
const MIN_REFETCH: Duration = Duration::from_secs(5);

/// The claims Junction reads.
#[derive(Debug, Deserialize)]
pub struct Claims {
    pub sub: String,
}

/// Checks tokens of one issuer.
#[derive(Debug)]
pub struct JwtValidator {
    config: JwtConfig,
    algorithms: Vec<Algorithm>,
    http: reqwest::Client,
    keys: Mutex<Option<(Instant, JwkSet)>>,
}

impl JwtValidator {
    pub fn new(config: JwtConfig) -> Result<JwtValidator, String> {
        let algorithms = config
            .algorithms
            .iter()
            .map(|a| Algorithm::from_str(a).map_err(|_| format!("unknown JWT algorithm `{a}`")))
            .collect::<Result<Vec<_>, _>>()?;
        junction_runtime::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the JWKS client: {e}"))?;
        Ok(JwtValidator {
            config,
            algorithms,
            http,
            keys: Mutex::new(None),
        })
    }

    /// The subject of a valid token, or why the token is refused (safe to show).
    pub async fn validate(&self, token: &str) -> Result<Claims, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| "the bearer token is not a JWT")?;
        if !self.algorithms.contains(&header.alg) {
            return Err(format!(
                "the token is signed with {:?}, which is not an accepted algorithm",
                header.alg
            ));
        }
        let kid = header.kid.unwrap_or_default();
        let key = match self.key(&kid, false).await? {
            Some(key) => key,
            None => self
                .key(&kid, true)
                .await?
                .ok_or_else(|| format!("the token's signing key '{kid}' is not the issuer's"))?,
        };
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&self.config.audience);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::ExpiredSignature => "the token has expired".to_owned(),
                    K::ImmatureSignature => "the token is not valid yet".to_owned(),
                    K::InvalidIssuer => "the token is from another issuer".to_owned(),
                    K::InvalidAudience => "the token is for another audience".to_owned(),
                    K::InvalidSignature => "the token's signature does not verify".to_owned(),
                    K::MissingRequiredClaim(claim) => format!("the token has no `{claim}`"),
                    _ => "the token is invalid".to_owned(),
                }
            })
    }

    /// The decoding key for `kid` from the cached JWKS, fetched first when missing, stale,
    /// or (`refresh`) when a rotation may have happened.
    async fn key(&self, kid: &str, refresh: bool) -> Result<Option<DecodingKey>, String> {
        let cached = {
            let guard = self.keys.lock().map_err(|_| "the JWKS cache is poisoned")?;
            match guard.as_ref() {
                Some((at, set)) if at.elapsed() < MAX_AGE => {
                    let can_refetch = at.elapsed() >= MIN_REFETCH;
                    match set.find(kid).or_else(|| single(set, kid)) {
                        Some(jwk) => Some(Some(jwk.clone())),
                        None if refresh && can_refetch => None,
                        None => Some(None),
                    }
                }
                _ => None,
            }
        };
        let jwk = match cached {
            Some(jwk) => jwk,
            None => {
                let set = self.fetch().await?;
                let found = set.find(kid).or_else(|| single(&set, kid)).cloned();
                if let Ok(mut guard) = self.keys.lock() {
                    *guard = Some((Instant::now(), set));
                }
                found
            }
        };
        jwk.map(|jwk| {
            DecodingKey::from_jwk(&jwk)
                .map_err(|e| format!("the issuer's key '{kid}' is unusable: {e}"))
        })
        .transpose()
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        let url = self.config.jwks_url.clone();
        let response = self.http.get(url).send().await.map_err(|e| {
            tracing::warn!(error = %e, "cannot fetch the JWT issuer's keys");
            "the issuer's signing keys cannot be fetched".to_owned()
        })?;
        if !response.status().is_success() {
            tracing::warn!(status = %response.status(), "cannot fetch the JWT issuer's keys");
            return Err("the issuer's signing keys cannot be fetched".into());
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|_| "the issuer's signing keys cannot be fetched".to_owned())?;
        serde_json::from_slice(&bytes).map_err(|e| {
            tracing::warn!(error = %e, "the JWT issuer's keys are not a JWKS");
            "the issuer's signing keys are unreadable".to_owned()
        })
    }
}

/// A token without `kid` may use the only key of a set.
fn single<'a>(set: &'a JwkSet, kid: &str) -> Option<&'a jsonwebtoken::jwk::Jwk> {
    match set.keys.as_slice() {
        [only] if kid.is_empty() => Some(only),
        _ => None,
    }
}
