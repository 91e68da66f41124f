//! Gateway clients with JWT bearer tokens from a real OpenID Connect provider
//! (node-oidc-provider, `tests/node/oidc.mjs`): tokens are checked against its JWKS, and
//! expiry, foreign signatures, unknown subjects and signing-key rotation behave.

use std::process::Stdio;
use std::time::Duration;

use junction_model::{ApiKeyLocation, Method, SecurityScheme};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::harness::workspace_root;
use crate::store::TestStore;
use crate::support::{self, collect};

/// The provider, stopped when dropped.
pub struct Oidc {
    pub issuer: String,
    _child: Child,
}

impl Oidc {
    /// Starts `tests/node/oidc.mjs` with access tokens valid for `ttl` seconds.
    pub async fn start(ttl: u32) -> Oidc {
        Oidc::start_for(ttl, "http://127.0.0.1:1/oauth/callback").await
    }

    /// The same, with client `web` sending logins back to `redirect`.
    pub async fn start_for(ttl: u32, redirect: &str) -> Oidc {
        Oidc::start_with(ttl, redirect, &[]).await
    }

    /// The same, with `env` for `oidc.mjs` (`OIDC_ANY_CLIENT_SECRET`,
    /// `OIDC_IDENTITYSERVER_ROUTES`: see there).
    pub async fn start_with(ttl: u32, redirect: &str, env: &[(&str, &str)]) -> Oidc {
        let node = workspace_root().join("tests/node");
        assert!(
            node.join("node_modules/oidc-provider").is_dir(),
            "run `npm ci --prefix tests/node` (scripts/test does) to install oidc-provider"
        );
        let mut child = Command::new("node")
            .arg("oidc.mjs")
            .arg(ttl.to_string())
            .arg(redirect)
            .current_dir(&node)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let issuer = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    return value["issuer"].as_str().unwrap().to_owned();
                }
            }
            panic!("the OpenID provider stopped before saying where it listens")
        })
        .await
        .expect("the OpenID provider starts");
        // Keep reading what it prints, so it never writes into a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Oidc {
            issuer,
            _child: child,
        }
    }

    /// An access token (a JWT) for client `client` by the client credentials grant.
    pub async fn token(&self, client: &str) -> String {
        let reply = support::client()
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client),
                ("client_secret", &format!("{client}-secret")),
                ("scope", "api"),
            ])
            .send()
            .await
            .unwrap();
        let body: Value = reply.json().await.unwrap();
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {body}"))
            .to_owned()
    }

    /// Registers client `id`, which authenticates with assertions signed by the key of
    /// `certificate` (PEM).
    pub async fn certificate_client(&self, id: &str, certificate: &str) {
        let reply = support::client()
            .post(format!("{}/_certificate_client", self.issuer))
            .json(&json!({"client_id": id, "certificate": certificate}))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 204, "{}", reply.text().await.unwrap());
    }

    /// Replaces the provider's signing key.
    pub async fn rotate(&self) {
        let reply = support::client()
            .post(format!("{}/_rotate", self.issuer))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 204);
    }
}

async fn call(url: &str, token: &str) -> support::Reply {
    collect(
        support::client()
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn clients_jwt_bearer_tokens_against_a_real_issuer() {
    let oidc = Oidc::start(3).await;
    let backend = support::start_echo().await;
    let pets = support::with_security(
        support::connector(
            "pets",
            backend,
            vec![support::op(Method::Get, "/pets", "ListPets")],
        ),
        vec![(
            "key",
            SecurityScheme::ApiKey {
                name: "X-Key".into(),
                location: ApiKeyLocation::Header,
            },
        )],
    );
    let dir = tempfile::tempdir().unwrap();
    let key_file = support::master_key_file(dir.path());
    let test = TestStore::sqlite();
    let toml = format!(
        "{}\n[clients.jwt]\nissuer = \"{issuer}\"\naudience = \"urn:junction\"\njwks_url = \"{issuer}/jwks\"\nalgorithms = [\"RS256\"]\nleeway = \"0s\"\n\n[connector.pets.connection]\napi_key = \"configured\"\n",
        test.toml(&key_file),
        issuer = oidc.issuer
    );
    let server = support::gateway(vec![pets], &toml).await;
    let created = collect(
        support::client()
            .post(format!("{}/api/v1/clients", server.admin_url()))
            .json(&json!({"name": "app", "subject": "app", "grants": ["pets"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(created.status, 201);
    assert!(created.json().get("api_key").is_none());
    let url = format!("{}/connectors/pets/pets", server.data_url());

    // A token of the issuer for a registered subject is accepted.
    let token = oidc.token("app").await;
    let reply = call(&url, &token).await;
    assert_eq!(reply.echoed()["headers"]["x-key"], "configured");
    assert!(reply.echoed()["headers"].get("authorization").is_none());

    // An altered signature, another subject, garbage: 401.
    // (a character inside the signature: the last one may carry padding bits)
    let at = token.len() - 10;
    let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
    let body = call(&url, &forged).await.problem(401, "unauthenticated");
    assert!(
        body["detail"].as_str().unwrap().contains("signature"),
        "{body}"
    );
    let stranger = oidc.token("stranger").await;
    let body = call(&url, &stranger).await.problem(401, "unauthenticated");
    assert!(
        body["detail"].as_str().unwrap().contains("subject"),
        "{body}"
    );
    call(&url, "not-a-jwt")
        .await
        .problem(401, "unauthenticated");

    // Expiry: the token lives 3 s and no leeway is allowed.
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    let body = call(&url, &token).await.problem(401, "unauthenticated");
    assert!(
        body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );

    // Key rotation: a token signed with the retired key is refused once the gateway has
    // fetched the new JWKS, and tokens with the new key are accepted.
    let old_key = oidc.token("app").await;
    oidc.rotate().await;
    let new_key = oidc.token("app").await;
    assert_eq!(call(&url, &new_key).await.status, 200);
    let body = call(&url, &old_key).await.problem(401, "unauthenticated");
    assert!(
        body["detail"].as_str().unwrap().contains("signing key"),
        "{body}"
    );

    server.shutdown().await;
    test.cleanup().await;
}
