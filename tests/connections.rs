//! Connections and clients end to end, on SQLite and PostgreSQL: the admin API creates
//! connections and clients, the data plane authenticates clients, checks grants and
//! resolves each request's connection, `test` calls the connector's testConnection
//! operation, and the audit log records it all. No secret value ever appears in an
//! answer, the metrics, the logs, the audit log or the database file.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use junction_model::{ApiKeyLocation, Method, SecurityScheme};
use serde_json::{Value, json};

use crate::store::{TestStore, with_parameters};
use crate::support::{self, OperationExt, collect, fetch};

const SHARED_SECRET: &str = "shared-secret-7d1e";
const BOB_SECRET: &str = "bob-secret-44a0";
const CONFIG_SECRET: &str = "config-secret-90bb";

/// Everything the process logs, from the first call on.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buffer.clone());
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init();
        buffer
    })
    .clone()
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [SHARED_SECRET, BOB_SECRET, CONFIG_SECRET] {
        assert!(!text.contains(secret), "{what} contains a secret: {text}");
    }
}

async fn admin(method: reqwest::Method, url: String, body: Option<Value>) -> support::Reply {
    let mut request = support::client()
        .request(method, url)
        .header("x-junction-actor", "ops");
    if let Some(body) = body {
        request = request.json(&body);
    }
    collect(request.send().await.unwrap()).await
}

async fn call(url: String, key: Option<&str>) -> support::Reply {
    let mut request = support::client().get(url);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    collect(request.send().await.unwrap()).await
}

async fn end_to_end(test: TestStore) {
    let logs = captured_logs();
    let backend = support::start_echo().await;
    let mut pets = support::with_security(
        with_parameters(support::connector(
            "pets",
            backend,
            vec![
                support::op(Method::Get, "/pets/{id}", "GetPet").param(support::param(
                    "id",
                    junction_model::ParamLocation::Path,
                    json!({"type": "string"}),
                )),
                support::op(Method::Get, "/whoami", "WhoAmI"),
            ],
        )),
        vec![(
            "key",
            SecurityScheme::ApiKey {
                name: "X-Key".into(),
                location: ApiKeyLocation::Header,
            },
        )],
    );
    pets.extensions.insert(
        "x-ms-capabilities".into(),
        json!({"testConnection": {"operationId": "WhoAmI"}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let key_file = support::master_key_file(dir.path());
    let toml = format!(
        "{}\n[connector.pets.connection]\napi_key = \"{CONFIG_SECRET}\"\n",
        test.toml(&key_file)
    );
    let server = support::gateway(vec![pets], &toml).await;
    let api = format!("{}/api/v1", server.admin_url());
    let data = format!("{}/connectors/pets", server.data_url());
    let mut answers = String::new();

    // Connections: checked against the package's parameters, shown redacted.
    let bad = admin(
        reqwest::Method::POST,
        format!("{api}/connections"),
        Some(json!({"connector": "pets", "name": "x", "values": {"region": "mars"}})),
    )
    .await;
    let problem = bad.problem(400, "invalid-request");
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2, "{problem}");
    let created = admin(
        reqwest::Method::POST,
        format!("{api}/connections"),
        Some(json!({"connector": "pets", "name": "shared",
                    "values": {"api_key": SHARED_SECRET, "region": "eu"}})),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let shared = created.json();
    assert_eq!(shared["secrets"], json!(["api_key"]));
    assert_eq!(shared["values"], json!({"region": "eu"}));
    let shared_id = shared["id"].as_str().unwrap().to_owned();
    answers.push_str(&String::from_utf8_lossy(&created.body));

    // Clients: alice uses the shared connection, bob his own and only GetPet, carol the
    // configuration file's, dave is granted another connector.
    let mut keys = std::collections::HashMap::new();
    for (name, grants) in [
        ("alice", json!(["pets@pets/shared"])),
        ("bob", json!(["pets:GetPet"])),
        ("carol", json!([{"connector": "pets"}])),
        ("dave", json!(["other"])),
    ] {
        let reply = admin(
            reqwest::Method::POST,
            format!("{api}/clients"),
            Some(json!({"name": name, "grants": grants})),
        )
        .await;
        assert_eq!(
            reply.status,
            201,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let body = reply.json();
        keys.insert(name, body["api_key"].as_str().unwrap().to_owned());
    }
    let bobs = admin(
        reqwest::Method::POST,
        format!("{api}/connections"),
        Some(json!({"connector": "pets", "name": "bobs", "owner": "bob",
                    "values": {"api_key": BOB_SECRET}})),
    )
    .await;
    assert_eq!(bobs.status, 201, "{}", String::from_utf8_lossy(&bobs.body));
    let bobs_id = bobs.json()["id"].as_str().unwrap().to_owned();
    answers.push_str(&String::from_utf8_lossy(&bobs.body));

    // A client can never be granted another client's connection.
    let steal = admin(
        reqwest::Method::PUT,
        format!("{api}/clients/alice/grants"),
        Some(json!({"grants": [format!("pets@{bobs_id}")]})),
    )
    .await;
    // Another client's connection: the grant conflicts with what is stored.
    steal.problem(409, "conflict");

    // The data plane: who may call, and with which connection.
    call(format!("{data}/pets/1"), None)
        .await
        .problem(401, "unauthenticated");
    call(format!("{data}/pets/1"), Some("jk_0123456789"))
        .await
        .problem(401, "unauthenticated");
    let alice = call(format!("{data}/pets/1"), Some(&keys["alice"])).await;
    assert_eq!(alice.echoed()["headers"]["x-key"], SHARED_SECRET);
    let bob = call(format!("{data}/pets/1"), Some(&keys["bob"])).await;
    assert_eq!(bob.echoed()["headers"]["x-key"], BOB_SECRET);
    let bearer = collect(
        support::client()
            .get(format!("{data}/pets/2"))
            .bearer_auth(&keys["bob"])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(bearer.echoed()["headers"]["x-key"], BOB_SECRET);
    assert!(bearer.echoed()["headers"].get("authorization").is_none());
    call(format!("{data}/whoami"), Some(&keys["bob"]))
        .await
        .problem(403, "forbidden");
    let carol = call(format!("{data}/pets/1"), Some(&keys["carol"])).await;
    assert_eq!(carol.echoed()["headers"]["x-key"], CONFIG_SECRET);
    call(format!("{data}/pets/1"), Some(&keys["dave"]))
        .await
        .problem(403, "forbidden");
    call(
        format!("{}/connectors/nothing/x", server.data_url()),
        Some(&keys["alice"]),
    )
    .await
    .problem(403, "forbidden");

    // Listing, showing and testing never show a secret.
    for url in [
        format!("{api}/connections"),
        format!("{api}/connections/{shared_id}"),
        format!("{api}/connections/{bobs_id}"),
        format!("{api}/clients"),
    ] {
        let reply = fetch(url.clone()).await;
        assert_eq!(reply.status, 200, "{url}");
        answers.push_str(&String::from_utf8_lossy(&reply.body));
    }
    let tested = admin(
        reqwest::Method::POST,
        format!("{api}/connections/{shared_id}/test"),
        None,
    )
    .await;
    assert_eq!(
        tested.json(),
        json!({"connection": shared_id, "operation": "WhoAmI", "ok": true, "status": 200})
    );
    answers.push_str(&String::from_utf8_lossy(&tested.body));
    let chosen = admin(
        reqwest::Method::POST,
        format!("{api}/connections/{bobs_id}/test"),
        Some(json!({"operation": "GetPet", "parameters": {"id": "7"}})),
    )
    .await;
    assert_eq!(chosen.json()["ok"], true, "{}", chosen.json());

    // The audit log: who did what, when.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let audit = fetch(format!("{api}/audit?limit=1000")).await;
    let events = audit.json()["events"].as_array().unwrap().clone();
    let has = |action: &str, actor: &str| {
        events
            .iter()
            .any(|e| e["action"] == action && e["actor"] == actor && e["at"].as_i64().unwrap() > 0)
    };
    assert!(has("connection.create", "admin:ops"), "{events:?}");
    assert!(has("client.create", "admin:ops"), "{events:?}");
    assert!(has("connection.test", "admin:ops"), "{events:?}");
    assert!(has("connection.use", "client:alice"), "{events:?}");
    assert!(has("connection.use", "client:bob"), "{events:?}");
    let filtered = fetch(format!(
        "{api}/audit?action=connection.use&actor=client:bob"
    ))
    .await;
    assert!(
        filtered.json()["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "client:bob")
    );
    answers.push_str(&String::from_utf8_lossy(&audit.body));

    // Deleting.
    let deleted = admin(
        reqwest::Method::DELETE,
        format!("{api}/connections/{shared_id}"),
        None,
    )
    .await;
    assert_eq!(deleted.status, 204);
    fetch(format!("{api}/connections/{shared_id}"))
        .await
        .problem(404, "not-found");

    assert_no_secret("an admin answer", &answers);
    // The metrics, after all of the above went through the gateway.
    let metrics = fetch(format!("{}/metrics", server.admin_url())).await;
    assert_eq!(metrics.status, 200);
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(metrics.contains("connector=\"pets\""), "{metrics}");
    // The store's health, read at scrape time.
    assert!(metrics.contains("\njunction_store_up 1\n"), "{metrics}");
    assert!(
        metrics.contains("\njunction_store_ping_seconds "),
        "{metrics}"
    );
    assert_no_secret("the metrics", &metrics);
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(logged.contains("listening"), "logs were not captured");
    assert_no_secret("the log", &logged);
    if let TestStore::Sqlite(dir) = &test {
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        assert!(!bytes.is_empty());
        assert_no_secret("the database file", &String::from_utf8_lossy(&bytes));
    }
    server.shutdown().await;
    test.cleanup().await;
}

#[tokio::test]
async fn connections_and_clients_sqlite() {
    end_to_end(TestStore::sqlite()).await;
}

#[tokio::test]
async fn connections_and_clients_postgres() {
    end_to_end(TestStore::postgres()).await;
}

#[tokio::test]
async fn connections_need_a_store() {
    let server = support::gateway(Vec::new(), "").await;
    fetch(format!("{}/api/v1/connections", server.admin_url()))
        .await
        .problem(404, "not-found");
    server.shutdown().await;
}

/// Views with a store: the client needs the view's grant, and each step runs as the same
/// client, with its grant and connection for the step's connector.
#[tokio::test]
async fn clients_in_views() {
    let test = TestStore::sqlite();
    let backend = support::start_echo().await;
    let pets = support::with_security(
        with_parameters(support::connector(
            "pets",
            backend,
            vec![support::op(Method::Get, "/whoami", "WhoAmI")],
        )),
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
    let mut config = support::config(&test.toml(&key_file));
    config.views = vec![junction_runtime::ViewSource::new(
        "views/me.toml",
        "shape = '.steps.me.headers[\"x-key\"] | length'\n[step.me]\noperation = \"pets.WhoAmI\"\n",
    )];
    let server = junction_server::Server::start(&config, &[pets])
        .await
        .unwrap();
    let api = format!("{}/api/v1", server.admin_url());
    let mut keys = std::collections::HashMap::new();
    for (name, grants) in [
        ("viewer", json!(["view:me", "pets@pets/shared"])),
        ("noview", json!(["pets@pets/shared"])),
        ("nopets", json!(["view:me"])),
    ] {
        if name == "viewer" {
            let created = admin(
                reqwest::Method::POST,
                format!("{api}/connections"),
                Some(json!({"connector": "pets", "name": "shared", "values": {"api_key": SHARED_SECRET}})),
            )
            .await;
            assert_eq!(created.status, 201);
        }
        let reply = admin(
            reqwest::Method::POST,
            format!("{api}/clients"),
            Some(json!({"name": name, "grants": grants})),
        )
        .await;
        keys.insert(name, reply.json()["api_key"].as_str().unwrap().to_owned());
    }
    let view = format!("{}/views/me", server.data_url());
    call(view.clone(), None)
        .await
        .problem(401, "unauthenticated");
    call(view.clone(), Some(&keys["noview"]))
        .await
        .problem(403, "forbidden");
    // The view is granted, the connector its step calls is not: the step fails.
    let refused = call(view.clone(), Some(&keys["nopets"])).await;
    assert_ne!(
        refused.status,
        200,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    assert!(!String::from_utf8_lossy(&refused.body).contains(SHARED_SECRET));
    let reply = call(view, Some(&keys["viewer"])).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    // The step went out with the shared connection's key (its length, not the key).
    assert_eq!(reply.json(), json!(SHARED_SECRET.len()));
    server.shutdown().await;
    test.cleanup().await;
}

/// A cached view whose steps run on each client's own connection: the entry of one client
/// is never served to another (the client keys the entry), and is a hit for the same one.
#[tokio::test]
async fn cached_views_are_keyed_by_the_client() {
    let test = TestStore::sqlite();
    let backend = support::start_echo().await;
    let pets = support::with_security(
        with_parameters(support::connector(
            "pets",
            backend,
            vec![support::op(Method::Get, "/whoami", "WhoAmI")],
        )),
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
    let toml = format!(
        "{}[cache]\n[view.me.cache]\nttl = \"5m\"\n",
        test.toml(&key_file)
    );
    let mut config = support::config(&toml);
    config.views = vec![junction_runtime::ViewSource::new(
        "views/me.toml",
        "shape = '.steps.me.headers[\"x-key\"] | length'\n[step.me]\noperation = \"pets.WhoAmI\"\n",
    )];
    let server = junction_server::Server::start(&config, &[pets])
        .await
        .unwrap();
    let api = format!("{}/api/v1", server.admin_url());
    let mut keys = std::collections::HashMap::new();
    for (name, secret) in [("alice", "alice-key"), ("bob", "bob-key-which-is-longer")] {
        let reply = admin(
            reqwest::Method::POST,
            format!("{api}/clients"),
            Some(json!({"name": name, "grants": ["view:me", "pets"]})),
        )
        .await;
        assert_eq!(
            reply.status,
            201,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        keys.insert(name, reply.json()["api_key"].as_str().unwrap().to_owned());
        let own = admin(
            reqwest::Method::POST,
            format!("{api}/connections"),
            Some(
                json!({"connector": "pets", "name": format!("{name}s"), "owner": name,
                        "values": {"api_key": secret}}),
            ),
        )
        .await;
        assert_eq!(own.status, 201, "{}", String::from_utf8_lossy(&own.body));
    }
    let view = format!("{}/views/me", server.data_url());
    let alice = call(view.clone(), Some(&keys["alice"])).await;
    assert_eq!(
        alice.status,
        200,
        "{}",
        String::from_utf8_lossy(&alice.body)
    );
    assert_eq!(alice.header("x-cache"), Some("MISS"));
    assert_eq!(alice.json(), json!("alice-key".len()));
    // Bob asks the same view with the same inputs: his own connection, not Alice's entry.
    let bob = call(view.clone(), Some(&keys["bob"])).await;
    assert_eq!(bob.header("x-cache"), Some("MISS"));
    assert_eq!(bob.json(), json!("bob-key-which-is-longer".len()));
    // Each is a hit for the client who stored it.
    let alice = call(view.clone(), Some(&keys["alice"])).await;
    assert_eq!(alice.header("x-cache"), Some("HIT"));
    assert_eq!(alice.json(), json!("alice-key".len()));
    let bob = call(view, Some(&keys["bob"])).await;
    assert_eq!(bob.header("x-cache"), Some("HIT"));
    assert_eq!(bob.json(), json!("bob-key-which-is-longer".len()));
    server.shutdown().await;
    test.cleanup().await;
}
