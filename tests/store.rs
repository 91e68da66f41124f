//! The store on both backends: SQLite in a temporary directory and the real PostgreSQL at
//! 127.0.0.1:5432 (database `test`; `JUNCTION_TEST_POSTGRES` overrides the URL), each
//! test in a schema of its own that is dropped afterwards.

use std::sync::Arc;

use indexmap::IndexMap;
use junction_model::{
    ApiProperties, ConnectionParameter, ConnectionParameterSet, ConnectionParameterSets, Connector,
};
use junction_store::{
    AuditQuery, ExposeSecret, Grant, Location, MasterKey, NewClient, NewConnection, PostgresStore,
    Resolution, Store, StoreError, Vault,
};
use serde_json::{Map, Value, json};

use crate::support;

/// The PostgreSQL the tests use.
pub fn postgres_url() -> String {
    std::env::var("JUNCTION_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

/// A store for one test: SQLite in a temporary directory, or a fresh PostgreSQL schema.
pub enum TestStore {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl TestStore {
    pub fn sqlite() -> TestStore {
        TestStore::Sqlite(tempfile::tempdir().unwrap())
    }

    pub fn postgres() -> TestStore {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        TestStore::Postgres(format!("jt_{}_{n}", std::process::id()))
    }

    pub fn location(&self) -> Location {
        match self {
            TestStore::Sqlite(dir) => Location::Sqlite(dir.path().join("junction.db")),
            TestStore::Postgres(schema) => Location::Postgres {
                url: postgres_url(),
                schema: schema.clone(),
            },
        }
    }

    /// The `[store]` section that points at this store.
    pub fn toml(&self, key_file: &std::path::Path) -> String {
        match self {
            TestStore::Sqlite(dir) => format!(
                "[store]\npath = \"{}\"\nkey_file = \"{}\"\n",
                dir.path().join("junction.db").display(),
                key_file.display()
            ),
            TestStore::Postgres(schema) => format!(
                "[store]\nurl = \"{}\"\nschema = \"{schema}\"\nkey_file = \"{}\"\n",
                postgres_url(),
                key_file.display()
            ),
        }
    }

    pub async fn open(&self) -> Arc<dyn Store> {
        junction_store::open(&self.location()).await.unwrap()
    }

    /// Drops the PostgreSQL schema (the SQLite directory goes with the value).
    pub async fn cleanup(self) {
        if let TestStore::Postgres(schema) = &self {
            PostgresStore::drop_schema(&postgres_url(), schema)
                .await
                .unwrap();
        }
    }
}

fn parameter(name: &str, kind: &str, required: bool, allowed: &[&str]) -> ConnectionParameter {
    ConnectionParameter {
        name: name.to_owned(),
        kind: kind.to_owned(),
        display_name: None,
        description: None,
        required,
        allowed_values: allowed.iter().map(|s| (*s).to_owned()).collect(),
        oauth_settings: None,
        raw: Value::Null,
    }
}

/// A connector whose package declares `api_key` (secure, required), `region` (eu|us) and
/// `retries` (int).
pub fn with_parameters(mut connector: Connector) -> Connector {
    let mut parameters = IndexMap::new();
    for p in [
        parameter("api_key", "securestring", true, &[]),
        parameter("region", "string", false, &["eu", "us"]),
        parameter("retries", "int", false, &[]),
    ] {
        parameters.insert(p.name.clone(), p);
    }
    connector.properties = Some(ApiProperties {
        connection_parameters: parameters,
        ..ApiProperties::default()
    });
    connector
}

/// A multi-auth connector: `basic-auth` (username, password) or `api-auth` (api_key).
fn multi_auth(mut connector: Connector) -> Connector {
    let set = |name: &str, params: Vec<ConnectionParameter>| ConnectionParameterSet {
        name: name.to_owned(),
        display_name: None,
        parameters: params.into_iter().map(|p| (p.name.clone(), p)).collect(),
    };
    connector.properties = Some(ApiProperties {
        connection_parameter_sets: Some(ConnectionParameterSets {
            ui_definition: Value::Null,
            values: vec![
                set(
                    "basic-auth",
                    vec![
                        parameter("username", "string", true, &[]),
                        parameter("password", "securestring", true, &[]),
                    ],
                ),
                set(
                    "api-auth",
                    vec![parameter("api_key", "securestring", true, &[])],
                ),
            ],
        }),
        ..ApiProperties::default()
    });
    connector
}

fn values(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("values must be an object"),
    }
}

const SECRET: &str = "s3cr3t-never-shown-9f1c";

async fn connections_and_clients(test: TestStore) {
    let key = MasterKey::generate().unwrap();
    let vault = Vault::new(test.open().await, Some(key.clone()))
        .await
        .unwrap();
    let backend = support::closed_port();
    let pets = with_parameters(support::connector("pets", backend, Vec::new()));

    // Every problem at once.
    let Err(StoreError::Invalid(problems)) = vault
        .create_connection(
            &pets,
            NewConnection {
                name: "bad name!".into(),
                values: values(json!({"region": "mars", "retries": "many", "colour": "red"})),
                ..NewConnection::default()
            },
            "test",
        )
        .await
    else {
        panic!("invalid values were accepted")
    };
    let text = problems.join("\n");
    for expected in [
        "bad name!",
        "mars",
        "retries",
        "colour",
        "api_key' is required",
    ] {
        assert!(text.contains(expected), "{expected} missing in {text}");
    }

    let shared = vault
        .create_connection(
            &pets,
            NewConnection {
                name: "shared".into(),
                values: values(json!({"api_key": SECRET, "region": "eu", "retries": 3})),
                ..NewConnection::default()
            },
            "test",
        )
        .await
        .unwrap();
    assert_eq!(shared.secrets, vec!["api_key"]);
    assert_eq!(shared.values["region"], "eu");
    let shown = serde_json::to_string(&vault.connections().await.unwrap()).unwrap();
    assert!(!shown.contains(SECRET), "{shown}");
    let row = vault.find_connection("pets/shared").await.unwrap();
    assert!(
        !row.secrets
            .as_ref()
            .unwrap()
            .windows(SECRET.len())
            .any(|w| w == SECRET.as_bytes())
    );
    assert_eq!(
        vault.values(&row).unwrap()["api_key"].expose_secret(),
        SECRET
    );
    let duplicate = vault
        .create_connection(
            &pets,
            NewConnection {
                name: "shared".into(),
                values: values(json!({"api_key": "x"})),
                ..NewConnection::default()
            },
            "test",
        )
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Conflict(_))),
        "{duplicate:?}"
    );

    // Multi-auth: the set must be named when there are several.
    let multi = multi_auth(support::connector("multi", backend, Vec::new()));
    let unnamed = vault
        .create_connection(
            &multi,
            NewConnection {
                name: "m".into(),
                values: values(json!({"api_key": "k"})),
                ..NewConnection::default()
            },
            "test",
        )
        .await;
    assert!(
        matches!(unnamed, Err(StoreError::Invalid(_))),
        "{unnamed:?}"
    );
    let wrong_set = vault
        .create_connection(
            &multi,
            NewConnection {
                name: "m".into(),
                parameter_set: Some("basic-auth".into()),
                values: values(json!({"api_key": "k"})),
                ..NewConnection::default()
            },
            "test",
        )
        .await;
    assert!(
        matches!(wrong_set, Err(StoreError::Invalid(_))),
        "{wrong_set:?}"
    );
    let m = vault
        .create_connection(
            &multi,
            NewConnection {
                name: "m".into(),
                parameter_set: Some("basic-auth".into()),
                values: values(json!({"username": "ann", "password": SECRET})),
                ..NewConnection::default()
            },
            "test",
        )
        .await
        .unwrap();
    assert_eq!(m.parameter_set.as_deref(), Some("basic-auth"));
    assert_eq!(m.values["username"], "ann");
    assert_eq!(m.secrets, vec!["password"]);

    // Clients: the key is shown once and stored hashed.
    let (alice, alice_key) = vault
        .create_client(
            NewClient {
                name: "alice".into(),
                grants: vec![Grant::parse("pets@pets/shared").unwrap()],
                ..NewClient::default()
            },
            "test",
        )
        .await
        .unwrap();
    let alice_key = alice_key.unwrap();
    assert!(alice_key.expose_secret().starts_with("jk_"));
    let stored = vault.store().client(&alice.id).await.unwrap().unwrap();
    assert_ne!(stored.key_hash.as_deref(), Some(alice_key.expose_secret()));
    assert_eq!(
        vault
            .client_by_key(alice_key.expose_secret())
            .await
            .unwrap()
            .unwrap()
            .id,
        alice.id
    );
    assert!(vault.client_by_key("jk_0000").await.unwrap().is_none());
    let (bob, _) = vault
        .create_client(
            NewClient {
                name: "bob".into(),
                subject: Some("user-bob".into()),
                grants: vec![Grant::parse("pets").unwrap()],
            },
            "test",
        )
        .await
        .unwrap();
    assert_eq!(bob.auth, "jwt");
    assert_eq!(
        vault
            .client_by_subject("user-bob")
            .await
            .unwrap()
            .unwrap()
            .id,
        bob.id
    );

    // Resolution: alice uses the shared connection her grant names; bob has none until
    // he gets his own; nobody may name another client's connection.
    match vault.resolve(&alice, "pets").await.unwrap() {
        Resolution::Stored { id, values } => {
            assert_eq!(id, shared.id);
            assert_eq!(values["api_key"].expose_secret(), SECRET);
        }
        Resolution::Configured => panic!("alice should use the shared connection"),
    }
    assert!(matches!(
        vault.resolve(&bob, "pets").await.unwrap(),
        Resolution::Configured
    ));
    let bobs = vault
        .create_connection(
            &pets,
            NewConnection {
                name: "bobs".into(),
                owner: Some("bob".into()),
                values: values(json!({"api_key": "bob-key"})),
                ..NewConnection::default()
            },
            "test",
        )
        .await
        .unwrap();
    assert_eq!(bobs.owner.as_deref(), Some(bob.id.as_str()));
    match vault.resolve(&bob, "pets").await.unwrap() {
        Resolution::Stored { id, .. } => assert_eq!(id, bobs.id),
        Resolution::Configured => panic!("bob should use his own connection"),
    }
    let steal = vault
        .set_grants(
            "alice",
            vec![Grant::parse(&format!("pets@{}", bobs.id)).unwrap()],
            "test",
        )
        .await;
    assert!(matches!(steal, Err(StoreError::Conflict(_))), "{steal:?}");

    // The audit log has who, what and when, and no secret.
    let events = vault.store().audit(&AuditQuery::default()).await.unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"connection.create"), "{actions:?}");
    assert!(actions.contains(&"client.create"), "{actions:?}");
    let log = serde_json::to_string(&events).unwrap();
    assert!(!log.contains(SECRET) && !log.contains(alice_key.expose_secret()));
    let only = vault
        .store()
        .audit(&AuditQuery {
            action: Some("client.create".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(only.len(), 2);

    // Deleting a client deletes its connections.
    assert!(vault.delete_client("bob", "test").await.unwrap());
    assert!(vault.store().connection(&bobs.id).await.unwrap().is_none());
    assert!(vault.delete_connection(&shared.id, "test").await.unwrap());
    assert!(!vault.delete_connection(&shared.id, "test").await.unwrap());
    test.cleanup().await;
}

async fn keys_are_required_checked_and_rotated(test: TestStore) {
    let store = test.open().await;
    let pets = with_parameters(support::connector(
        "pets",
        support::closed_port(),
        Vec::new(),
    ));
    // No key: connections without secrets work, secrets are refused.
    let keyless = Vault::new(store.clone(), None).await.unwrap();
    let refused = keyless
        .create_connection(
            &pets,
            NewConnection {
                name: "c".into(),
                values: values(json!({"api_key": SECRET})),
                ..NewConnection::default()
            },
            "test",
        )
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Key(m)) if m.contains("JUNCTION_MASTER_KEY")),
        "{refused:?}"
    );
    let key = MasterKey::generate().unwrap();
    let vault = Vault::new(store.clone(), Some(key.clone())).await.unwrap();
    let created = vault
        .create_connection(
            &pets,
            NewConnection {
                name: "c".into(),
                values: values(json!({"api_key": SECRET})),
                ..NewConnection::default()
            },
            "test",
        )
        .await
        .unwrap();
    // Secrets stored: no key, or another key, refuses to start.
    let error = Vault::new(store.clone(), None).await.unwrap_err();
    assert!(error.to_string().contains("no master key"), "{error}");
    let other = MasterKey::generate().unwrap();
    let error = Vault::new(store.clone(), Some(other.clone()))
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&key.id()), "{error}");

    // A webhook a client registered keeps its signing secret sealed too.
    let webhook_key = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let registered = vault
        .register_webhook("feed", "cli_1", "https://hooks.example.com/x", webhook_key)
        .await
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&registered.secret).contains(webhook_key),
        "the webhook secret is stored in the clear"
    );

    // Rotation re-seals everything; then only the new key opens the store.
    assert_eq!(vault.rotate(&other, "test").await.unwrap(), 2);
    assert!(Vault::new(store.clone(), Some(key.clone())).await.is_err());
    let rotated = Vault::new(store.clone(), Some(other)).await.unwrap();
    let row = rotated.find_connection(&created.id).await.unwrap();
    assert_eq!(
        rotated.values(&row).unwrap()["api_key"].expose_secret(),
        SECRET
    );
    let webhooks = store.webhooks("feed").await.unwrap();
    assert_eq!(webhooks.len(), 1);
    assert_eq!(
        rotated.webhook_key(&webhooks[0]).unwrap().expose(),
        webhook_key
    );

    // The refresh lease is held by one at a time and expires.
    assert!(
        store
            .take_refresh_lease(&created.id, 1_000, 2_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .take_refresh_lease(&created.id, 1_500, 2_500)
            .await
            .unwrap()
    );
    assert!(
        store
            .take_refresh_lease(&created.id, 2_001, 3_000)
            .await
            .unwrap()
    );
    store.release_refresh_lease(&created.id).await.unwrap();
    assert!(
        store
            .take_refresh_lease(&created.id, 2_002, 3_000)
            .await
            .unwrap()
    );
    test.cleanup().await;
}

#[tokio::test]
async fn store_sqlite_connections_and_clients() {
    connections_and_clients(TestStore::sqlite()).await;
}

#[tokio::test]
async fn store_postgres_connections_and_clients() {
    connections_and_clients(TestStore::postgres()).await;
}

#[tokio::test]
async fn store_sqlite_keys() {
    keys_are_required_checked_and_rotated(TestStore::sqlite()).await;
}

#[tokio::test]
async fn store_postgres_keys() {
    keys_are_required_checked_and_rotated(TestStore::postgres()).await;
}

#[tokio::test]
async fn store_sqlite_file_holds_no_plain_secret() {
    let test = TestStore::sqlite();
    let Location::Sqlite(path) = test.location() else {
        unreachable!()
    };
    let vault = Vault::new(test.open().await, Some(MasterKey::generate().unwrap()))
        .await
        .unwrap();
    let pets = with_parameters(support::connector(
        "pets",
        support::closed_port(),
        Vec::new(),
    ));
    vault
        .create_connection(
            &pets,
            NewConnection {
                name: "c".into(),
                values: values(json!({"api_key": SECRET, "region": "us"})),
                ..NewConnection::default()
            },
            "test",
        )
        .await
        .unwrap();
    vault.store().clients().await.unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    for suffix in ["-wal", "-shm"] {
        let mut side = path.clone().into_os_string();
        side.push(suffix);
        bytes.extend(std::fs::read(side).unwrap_or_default());
    }
    assert!(bytes.windows(6).any(|w| w == b"region"));
    assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    test.cleanup().await;
}
