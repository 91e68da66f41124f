//! Paths and processes shared by the tests that use real definitions: the workspace and
//! corpus roots, and a gateway served from a configuration directory as `junction serve` does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::{Path, PathBuf};

use junction_runtime::Config;
use junction_server::{RunningServer, Server};

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `../shared/corpus/power-platform-connectors`, next to the repository.
pub fn corpus_root() -> PathBuf {
    let root = workspace_root().join("../shared/corpus/power-platform-connectors");
    assert!(
        root.is_dir(),
        "the shared corpus is missing at {}",
        root.display()
    );
    root
}

/// Makes `link` point at the directory `target`.
pub fn symlink_dir(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link)
        .unwrap_or_else(|e| panic!("symlink {} → {}: {e}", link.display(), target.display()));
}

/// Loads `dir/junction.toml` and every connector under its `connectors_dir`, and serves them,
/// failing the test with every diagnostic when anything does not load.
pub async fn serve_dir(dir: &Path) -> RunningServer {
    let config = Config::load(dir).unwrap_or_else(|e| panic!("{e}"));
    let mut connectors = Vec::new();
    for path in junction_import::discover(&config.connectors_dir) {
        let loaded = junction_import::load(&path);
        match loaded.connector {
            Some(connector) => connectors.push(connector),
            None => panic!(
                "{} does not load: {:#?}",
                path.display(),
                loaded.diagnostics
            ),
        }
    }
    Server::start(&config, &connectors)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The folder of certified connector `folder` in the corpus.
pub fn package(folder: &str) -> PathBuf {
    let path = corpus_root().join("certified-connectors").join(folder);
    assert!(path.is_dir(), "{} is not in the corpus", path.display());
    path
}

/// Serves corpus packages (as published) with `toml`, as `junction serve` does.
pub async fn serve(folders: &[&str], toml: &str) -> (RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let connectors = dir.path().join("connectors");
    std::fs::create_dir_all(&connectors).unwrap();
    for folder in folders {
        symlink_dir(&package(folder), &connectors.join(folder));
    }
    write_config(dir.path(), toml);
    let server = serve_dir(dir.path()).await;
    (server, dir)
}

pub fn write_config(dir: &Path, toml: &str) {
    std::fs::write(
        dir.join("junction.toml"),
        format!("listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{toml}"),
    )
    .unwrap();
}
