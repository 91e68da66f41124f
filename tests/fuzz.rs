//! Schemathesis (PyPI), an independent OpenAPI fuzzer, against the gateway's two documents:
//! the admin API's own (`/api/v1/openapi.json`), and the data plane as `junction export`
//! describes it for a test configuration (the demo's connectors and views, behind a store
//! that checks client keys). Each run uses Schemathesis's default checks (every built-in
//! one: server errors, status codes, content types, headers and bodies against the
//! document, acceptance of valid and refusal of invalid input, authentication) with a
//! bounded, deterministic set of examples, and must find nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use junction_export::{Options, Surface};
use junction_runtime::Gateway;
use junction_server::{RunningServer, Server};
use serde_json::json;

use crate::support::*;

/// Examples per operation and phase: enough to reach every parameter and body shape.
const EXAMPLES: &str = "25";

/// `st`: `$SCHEMATHESIS`, else the one on PATH.
fn schemathesis() -> String {
    let candidate = std::env::var("SCHEMATHESIS").unwrap_or_else(|_| "st".into());
    match std::process::Command::new(&candidate)
        .arg("--version")
        .output()
    {
        Ok(output) if output.status.success() => candidate,
        _ => panic!(
            "Schemathesis (PyPI) is needed: run scripts/test, which installs it, or set \
             SCHEMATHESIS to its `st` (tried `{candidate}`)"
        ),
    }
}

/// Runs Schemathesis on `schema` (a URL or a file) against `base_url`, sending `headers`;
/// fails the test with its report when it finds anything.
async fn fuzz(schema: &str, base_url: &str, headers: &[(&str, &str)], work: &Path) {
    // No cache or example database carried between runs: every run is the same. No NUL in
    // generated strings: the gateway refuses a NUL in any path or parameter value by design
    // (docs/security.md), whatever a schema's `type: string` allows.
    std::fs::write(
        work.join("schemathesis.toml"),
        "[cache]\nenabled = false\n\n[generation]\nallow-x00 = false\n",
    )
    .unwrap();
    let mut command = tokio::process::Command::new(schemathesis());
    command
        .current_dir(work)
        .env("HYPOTHESIS_STORAGE_DIRECTORY", work.join("hypothesis"))
        .arg("--config-file")
        .arg(work.join("schemathesis.toml"))
        .args(["run", schema, "--url", base_url])
        .args(["--max-examples", EXAMPLES, "--generation-deterministic"])
        .args(["--continue-on-failure", "--workers", "1", "--no-color"])
        .args(["--request-timeout", "10"])
        .arg("--report")
        .arg("junit")
        .arg("--report-junit-path")
        .arg(work.join("junit.xml"));
    for (name, value) in headers {
        command.arg("-H").arg(format!("{name}: {value}"));
    }
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("Schemathesis ran for more than 5 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "Schemathesis found problems in {schema} (exit {:?}):\n{stdout}\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    // It really ran: operations were tested, none was skipped for want of data.
    assert!(stdout.contains("passed"), "{stdout}");
}

/// A gateway with the demo's connectors and views in front of the demo's backends, with a
/// store (client keys, connections, the audit log) in `dir`.
async fn demo_with_store(dir: &Path) -> (junction_demo::Backends, RunningServer) {
    let backends = junction_demo::backends::start().await.unwrap();
    let free = "127.0.0.1:0".parse().unwrap();
    let mut config = junction_demo::config(&backends, free, free);
    let key_file = master_key_file(dir);
    let store = crate::support::config(&format!(
        "[store]\npath = \"{}\"\nkey_file = \"{}\"\n",
        dir.join("junction.db").display(),
        key_file.display()
    ))
    .store;
    config.store = store;
    let connectors = junction_demo::connectors().unwrap();
    let server = Server::start(&config, &connectors).await.unwrap();
    (backends, server)
}

/// A client key granted every connector and view of the demo.
async fn client_key(server: &RunningServer) -> String {
    let reply = collect(
        client()
            .post(format!("{}/api/v1/clients", server.admin_url()))
            .json(&json!({"name": "fuzzer", "grants": ["directory", "helpdesk", "news", "view:home"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["api_key"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_in_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let (_backends, server) = demo_with_store(dir.path()).await;
    let work = tempfile::tempdir().unwrap();
    fuzz(
        &format!("{}/api/v1/openapi.json", server.admin_url()),
        &server.admin_url(),
        &[],
        work.path(),
    )
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_in_the_exported_data_plane() {
    let dir = tempfile::tempdir().unwrap();
    let (backends, server) = demo_with_store(dir.path()).await;
    let key = client_key(&server).await;
    let free = "127.0.0.1:0".parse().unwrap();
    let connectors = junction_demo::connectors().unwrap();
    let config = junction_demo::config(&backends, free, free);
    let compiled = Gateway::compile(&config, &connectors).unwrap();
    let surface = Surface::new(&connectors, &compiled.gateway);
    let out = tempfile::tempdir().unwrap();
    let options = Options {
        base_url: url::Url::parse(&server.data_url()).unwrap(),
        title: "Demo gateway".into(),
        name: "junction".into(),
        client_keys: true,
    };
    junction_export::write(&surface, &options, out.path()).unwrap();
    let schema: PathBuf = out.path().join("junction.openapi.json");
    fuzz(
        &schema.display().to_string(),
        &server.data_url(),
        &[("X-Api-Key", &key)],
        out.path(),
    )
    .await;
    server.shutdown().await;
}
