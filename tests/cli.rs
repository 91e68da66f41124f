//! The `junction connections|clients|audit|keys` commands on a SQLite store, run as the
//! real binary: values are checked, secrets never printed, the key rotates, and `serve`
//! refuses a store whose secrets it cannot read.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::support;

const SECRET: &str = "cli-secret-5be2";

/// The `junction` binary of this build, built first (a no-op when up to date).
pub(crate) fn junction_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // …/TARGET/PROFILE/deps/integration-HASH
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let profile = profile_dir.file_name().unwrap().to_str().unwrap();
    let mut build = Command::new(env!("CARGO"));
    // The test runner's own CARGO_* variables would make cargo rebuild the binary. The
    // RUSTUP_* ones stay: they pin the toolchain this test was built with.
    for (name, _) in std::env::vars() {
        if (name.starts_with("CARGO_") || name.starts_with("NEXTEST"))
            && !matches!(name.as_str(), "CARGO_HOME" | "CARGO_BUILD_JOBS")
        {
            build.env_remove(name);
        }
    }
    // The same package selection as `scripts/test`'s build step (so the same features and
    // artifacts): a no-op there.
    build
        .args(["build", "--quiet", "--locked", "--workspace", "--bins"])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(crate::harness::workspace_root());
    if profile == "release" {
        build.arg("--release");
    }
    let status = build.status().unwrap();
    assert!(status.success(), "cargo build -p junction failed");
    profile_dir.join("junction")
}

struct Cli {
    binary: PathBuf,
    dir: PathBuf,
    key: Option<String>,
    printed: String,
}

impl Cli {
    fn run(&mut self, args: &[&str]) -> Output {
        let mut command = Command::new(&self.binary);
        command.args(args);
        if args != ["keys", "generate"] {
            command.arg("--config").arg(&self.dir);
        }
        command
            .env("PETS_KEY", SECRET)
            .env("USER", "tester")
            .env_remove("JUNCTION_MASTER_KEY");
        if let Some(key) = &self.key {
            command.env("JUNCTION_MASTER_KEY", key);
        }
        let output = command.output().unwrap();
        self.printed
            .push_str(&String::from_utf8_lossy(&output.stdout));
        self.printed
            .push_str(&String::from_utf8_lossy(&output.stderr));
        output
    }

    fn ok(&mut self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "junction {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

fn write_package(dir: &Path, backend: std::net::SocketAddr) {
    let package = dir.join("connectors/pets");
    std::fs::create_dir_all(&package).unwrap();
    let definition = json!({
        "swagger": "2.0",
        "info": {"title": "Pets", "version": "1.0"},
        "host": backend.to_string(), "basePath": "/api", "schemes": ["http"],
        "securityDefinitions": {"key": {"type": "apiKey", "in": "header", "name": "X-Key"}},
        "security": [{"key": []}],
        "paths": {"/pets": {"get": {"operationId": "ListPets", "responses": {"200": {"description": "ok"}}}}}
    });
    let properties = json!({"properties": {"connectionParameters": {
        "api_key": {"type": "securestring", "uiDefinition": {"displayName": "API key", "constraints": {"required": "true"}}},
        "region": {"type": "string", "uiDefinition": {"displayName": "Region",
            "constraints": {"allowedValues": [{"text": "EU", "value": "eu"}, {"text": "US", "value": "us"}]}}}
    }}});
    std::fs::write(
        package.join("apiDefinition.swagger.json"),
        definition.to_string(),
    )
    .unwrap();
    std::fs::write(package.join("apiProperties.json"), properties.to_string()).unwrap();
}

// Multi-threaded: the echo backend is served while the test waits for the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_connections_from_the_command_line() {
    let backend = support::start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    write_package(dir.path(), backend);
    std::fs::write(
        dir.path().join("junction.toml"),
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[store]\npath = \"data/junction.db\"\n",
    )
    .unwrap();
    let binary = tokio::task::spawn_blocking(junction_binary).await.unwrap();
    let mut cli = Cli {
        binary,
        dir: dir.path().to_path_buf(),
        key: None,
        printed: String::new(),
    };
    let key = cli.ok(&["keys", "generate"]).trim().to_owned();
    assert_eq!(key.len(), 44);
    // No key: a secret is refused, with the way out named.
    let refused = cli.run(&[
        "connections",
        "create",
        "--connector",
        "pets",
        "--name",
        "shared",
        "--value-env",
        "api_key=PETS_KEY",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("JUNCTION_MASTER_KEY"));

    cli.key = Some(key.clone());
    let invalid = cli.run(&[
        "connections",
        "create",
        "--connector",
        "pets",
        "--name",
        "x",
        "--value",
        "region=mars",
    ]);
    let why = String::from_utf8_lossy(&invalid.stderr).into_owned();
    assert!(why.contains("mars") && why.contains("api_key"), "{why}");
    let created: Value = serde_json::from_str(&cli.ok(&[
        "connections",
        "create",
        "--connector",
        "pets",
        "--name",
        "shared",
        "--value-env",
        "api_key=PETS_KEY",
        "--value",
        "region=eu",
    ]))
    .unwrap();
    assert_eq!(created["secrets"], json!(["api_key"]));
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(cli.ok(&["connections", "list"]).contains("pets/shared"));
    let shown: Value =
        serde_json::from_str(&cli.ok(&["connections", "show", "pets/shared"])).unwrap();
    assert_eq!(shown["values"], json!({"region": "eu"}));
    let client: Value =
        serde_json::from_str(&cli.ok(&["clients", "create", "app", "--grant", "pets@pets/shared"]))
            .unwrap();
    assert!(client["api_key"].as_str().unwrap().starts_with("jk_"));
    assert!(cli.ok(&["clients", "list"]).contains("app"));
    // The package names no testConnection operation: its first GET that needs no input.
    let unnamed: Value = serde_json::from_str(&cli.ok(&["connections", "test", &id])).unwrap();
    assert_eq!(unnamed["operation"], "ListPets", "{unnamed}");
    let tested: Value =
        serde_json::from_str(&cli.ok(&["connections", "test", &id, "--operation", "ListPets"]))
            .unwrap();
    assert_eq!(tested["ok"], true, "{tested}");
    assert_eq!(tested["status"], 200, "{tested}");
    let audit = cli.ok(&["audit"]);
    assert!(
        audit.contains("cli:tester") && audit.contains("connection.test"),
        "{audit}"
    );

    // Rotation: the old key no longer opens the store, the new one does.
    let new_key = cli.ok(&["keys", "generate"]).trim().to_owned();
    let new_key_file = dir.path().join("new.key");
    std::fs::write(&new_key_file, &new_key).unwrap();
    assert!(
        cli.ok(&[
            "keys",
            "rotate",
            "--new-key-file",
            new_key_file.to_str().unwrap()
        ])
        .contains("re-encrypted 1 values")
    );
    let old = cli.run(&["connections", "list"]);
    assert!(!old.status.success());
    assert!(String::from_utf8_lossy(&old.stderr).contains("encrypted under key"));
    cli.key = Some(new_key);
    cli.ok(&["connections", "list"]);

    // `serve` refuses a store with secrets and no key.
    cli.key = None;
    let serve = cli.run(&["serve"]);
    assert!(!serve.status.success());
    assert!(String::from_utf8_lossy(&serve.stderr).contains("no master key"));

    cli.key = Some(key);
    assert!(!cli.printed.contains(SECRET), "{}", cli.printed);
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("data")).unwrap() {
        stored.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(!String::from_utf8_lossy(&stored).contains(SECRET));
}

/// `junction config schema` prints the generated schema of `junction.toml`; `--view`
/// that of a view file; both are the library's.
#[test]
fn config_schema_is_printed() {
    for (args, expected) in [
        (
            vec!["config", "schema"],
            junction_runtime::config::schema::config(),
        ),
        (
            vec!["config", "schema", "--view"],
            junction_runtime::config::schema::view(),
        ),
    ] {
        let output = Command::new(junction_binary())
            .args(&args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(printed, expected);
    }
}
