//! The processes of the soak: a private Redis and PostgreSQL, two Junction replicas on one
//! configuration, and the remote backend; each can be killed and started again.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::backends::OAUTH_CLIENT;

/// The admin token of both replicas.
pub const ADMIN_TOKEN: &str = "soak-admin-token";

/// A free loopback port (bound, then released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One child process that the soak may kill and start again, its logs numbered by
/// incarnation.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    logs: PathBuf,
    child: Option<Child>,
    /// How many times it was started.
    pub incarnation: u32,
}

impl Proc {
    pub fn new(name: &str, program: &Path, args: Vec<String>, logs: &Path) -> Proc {
        Proc {
            name: name.to_owned(),
            program: program.to_owned(),
            args,
            logs: logs.to_owned(),
            child: None,
            incarnation: 0,
        }
    }

    /// Starts it, its output in `LOGS/NAME.N.log`.
    pub fn start(&mut self) -> anyhow::Result<()> {
        self.incarnation += 1;
        let log = std::fs::File::create(
            self.logs
                .join(format!("{}.{}.log", self.name, self.incarnation)),
        )?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {} ({})", self.name, self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// `kill -9`, and waits for the exit.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Whether it exited without being asked (its status then).
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }
}

/// PostgreSQL in a private data directory, run as the `postgres` user when this is root.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

impl Postgres {
    /// A new cluster in `DIR/pgdata` (initdb, trust authentication).
    pub async fn init(dir: &Path) -> anyhow::Result<Postgres> {
        let bin = postgres_bin()?;
        let data = dir.join("pgdata");
        std::fs::create_dir_all(&data)?;
        let as_postgres = is_root().await;
        if as_postgres {
            run(
                "chown",
                &["-R", "postgres:postgres", &dir.display().to_string()],
            )
            .await?;
        }
        let pg = Postgres {
            bin,
            log: dir.join("postgres.log"),
            data,
            port: free_port()?,
            as_postgres,
        };
        pg.pg(
            "initdb",
            &[
                "-D",
                &pg.data.display().to_string(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )
        .await?;
        Ok(pg)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts it and waits until it accepts connections.
    pub async fn start(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
            self.port,
            self.data.display()
        );
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-o",
                &options,
                "-l",
                &self.log.display().to_string(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .await
    }

    /// Stops it the way a crash would (`-m immediate`: no checkpoint, clients cut off).
    pub async fn crash(&self) -> anyhow::Result<()> {
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
        .await
    }

    /// The `pg_ctl` (or `runuser … pg_ctl`) command line for `args`.
    fn pg_ctl_command(&self, args: &[&str]) -> std::process::Command {
        let program = self.bin.join("pg_ctl");
        let mut command = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            std::process::Command::new(program)
        };
        command.args(args);
        command
    }

    async fn pg(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let program = self.bin.join(tool).display().to_string();
        if self.as_postgres {
            let mut all = vec!["-u", "postgres", "--", program.as_str()];
            all.extend_from_slice(args);
            run("runuser", &all).await
        } else {
            run(&program, args).await
        }
    }
}

impl Drop for Postgres {
    /// PostgreSQL runs detached (`pg_ctl`): stop it with the run, however the run ends.
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let _ = self
            .pg_ctl_command(&["-D", &data, "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

async fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .await
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// The newest `/usr/lib/postgresql/N/bin` holding `initdb`, else `pg_config --bindir`.
fn postgres_bin() -> anyhow::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    let out = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if bin.join("initdb").exists() {
                return Ok(bin);
            }
            bail!("pg_config names {} but it holds no initdb", bin.display())
        }
        _ => bail!(
            "PostgreSQL's server programs (initdb, pg_ctl) are not installed: apt-get install postgresql"
        ),
    }
}

async fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The addresses the configuration points at.
#[derive(Debug, Clone)]
pub struct Addresses {
    pub steady: u16,
    pub flaky: u16,
    pub remote_proxy: u16,
    pub idp: u16,
    pub redis: u16,
    pub postgres_url: String,
}

/// Writes the replicas' shared configuration directory: `junction.toml`, the master key,
/// five connectors and one view.
pub fn write_config(dir: &Path, at: &Addresses) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("views"))?;
    use base64::Engine as _;
    let key: Vec<u8> = (0..32).map(|_| fastrand::u8(..)).collect();
    std::fs::write(
        dir.join("master.key"),
        base64::engine::general_purpose::STANDARD.encode(key),
    )?;
    std::fs::write(
        dir.join("junction.toml"),
        format!(
            r#"# The soak's two replicas (tests/soak): one store, one Redis.
[store]
url = "{postgres}"
key_file = "master.key"

[admin]
token = "{ADMIN_TOKEN}"

[redis]
url = "redis://127.0.0.1:{redis}"

[cache]
backend = "redis"

[rate_limit]
backend = "redis"

[connector.steady]
backend = "http://127.0.0.1:{steady}"

[connector.steady.operation.GetItem.cache]
ttl = "2s"

[connector.flaky]
backend = "http://127.0.0.1:{flaky}"
timeout = "1s"

[connector.remote]
backend = "http://127.0.0.1:{remote}"

[connector.limited]
backend = "http://127.0.0.1:{steady}"

[connector.limited.rate_limit]
per_connection = "20/1h"

[connector.oauth]
backend = "http://127.0.0.1:{idp}"
"#,
            postgres = at.postgres_url,
            redis = at.redis,
            steady = at.steady,
            flaky = at.flaky,
            remote = at.remote_proxy,
            idp = at.idp,
        ),
    )?;
    for name in ["steady", "flaky", "remote", "limited"] {
        write_json(
            &dir.join("connectors")
                .join(name)
                .join("apiDefinition.swagger.json"),
            &items_definition(name),
        )?;
    }
    let oauth = dir.join("connectors/oauth");
    write_json(
        &oauth.join("apiDefinition.swagger.json"),
        &oauth_definition(),
    )?;
    write_json(
        &oauth.join("apiProperties.json"),
        &json!({"properties": {"connectionParameters": {"token": {
            "type": "oauthSetting",
            "oAuthSettings": {
                "identityProvider": "oauth2generic",
                "clientId": OAUTH_CLIENT.0,
                "scopes": ["api"],
                "redirectMode": "Global",
                "customParameters": {
                    "authorizationUrl": {"value": format!("http://127.0.0.1:{}/auth", at.idp)},
                    "tokenUrl": {"value": format!("http://127.0.0.1:{}/token", at.idp)},
                    "refreshUrl": {"value": format!("http://127.0.0.1:{}/token", at.idp)}
                }
            }
        }}}}),
    )?;
    std::fs::write(
        dir.join("views/dashboard.toml"),
        r#"# One item from the steady backend and the same item from the remote one.
timeout = "5s"
shape = '{ item: .steps.item, remote: .steps.remote }'

[input.id]
type = "integer"
required = true

[step.item]
operation = "steady.GetItem"
args = { id = "$inputs.id" }

[step.remote]
operation = "remote.GetItem"
args = { id = "$inputs.id" }
"#,
    )?;
    Ok(())
}

fn write_json(path: &Path, value: &Value) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(value)?)?;
    Ok(())
}

/// The items API as Swagger 2.0 (the backend is set in `junction.toml`).
fn items_definition(name: &str) -> Value {
    let id =
        json!([{"name": "id", "in": "path", "required": true, "type": "integer", "minimum": 1}]);
    json!({
        "swagger": "2.0",
        "info": {"title": name, "version": "1.0"},
        "host": "localhost",
        "basePath": "/",
        "schemes": ["http"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "paths": {
            "/api/items/{id}": {"get": {"operationId": "GetItem", "parameters": id,
                "responses": {"200": {"description": "The item"}}}},
            "/api/slow/{id}": {"get": {"operationId": "GetSlowItem", "parameters": id,
                "responses": {"200": {"description": "The item, 50 ms later"}}}},
            "/api/items": {"post": {"operationId": "CreateItem",
                "parameters": [{"name": "body", "in": "body", "required": true, "schema": {
                    "type": "object", "required": ["name"],
                    "properties": {"name": {"type": "string", "maxLength": 100}}}}],
                "responses": {"201": {"description": "Created"}}}}
        }
    })
}

/// The OAuth-protected API.
fn oauth_definition() -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": "oauth", "version": "1.0"},
        "host": "localhost",
        "basePath": "/",
        "schemes": ["http"],
        "produces": ["application/json"],
        "securityDefinitions": {"oauth2_auth": {"type": "oauth2", "flow": "accessCode",
            "authorizationUrl": "https://login.example/auth",
            "tokenUrl": "https://login.example/token", "scopes": {}}},
        "security": [{"oauth2_auth": []}],
        "paths": {"/api/me": {"get": {"operationId": "Me",
            "responses": {"200": {"description": "Who the token is"}}}}}
    })
}

/// Polls `check` every 100 ms until it holds or `limit` passes.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{what} within {limit:?}")
}

/// Whether something accepts TCP connections on `port`.
pub async fn listening(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}
