//! `junction connections|clients|audit|keys`: manage the store of a configuration.
//!
//! These commands work on the store directly (the `[store]` of `DIR/junction.toml`, with
//! its master key), not through a running gateway: they need no admin address or token,
//! and work while no gateway runs. A running gateway reads the store on every request, so
//! changes apply at once. `connections test` compiles the gateway in-process and makes
//! the call from here. Every action is audited as `cli:$USER`.
//!
//! Secret values never appear in the output: connections are shown redacted; a client's
//! API key is printed once, when it is created.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use junction_runtime::{Config, Gateway, SharedGateway};
use junction_server::Access;
use junction_store::{AuditQuery, ExposeSecret, Grant, MasterKey, NewClient, NewConnection};
use serde_json::{Map, Value, json};

#[derive(Debug, clap::Args)]
pub struct Target {
    /// Directory holding `junction.toml` (with its `[store]`) and the connector packages.
    #[arg(long, value_name = "DIR", default_value = ".", global = true)]
    pub(crate) config: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
pub enum Connections {
    /// List every connection (redacted).
    List(Target),
    /// Show one connection (redacted), by id or CONNECTOR/NAME.
    Show {
        reference: String,
        #[command(flatten)]
        target: Target,
    },
    /// Create a connection of a connector; values are checked against its
    /// connectionParameters.
    Create {
        /// The connector the connection belongs to.
        #[arg(long)]
        connector: String,
        /// A name unique within the connector.
        #[arg(long)]
        name: String,
        /// For multi-auth connectors: the connectionParameterSet to use.
        #[arg(long)]
        parameter_set: Option<String>,
        /// The client (id or name) that owns this per-user connection; shared when absent.
        #[arg(long)]
        owner: Option<String>,
        /// A value, NAME=VALUE (repeatable). Prefer --value-env for secrets.
        #[arg(long = "value", value_name = "NAME=VALUE")]
        values: Vec<String>,
        /// A value read from an environment variable, NAME=VARIABLE (repeatable).
        #[arg(long = "value-env", value_name = "NAME=VARIABLE")]
        values_env: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Call the connector's testConnection operation (or --operation) with the connection.
    Test {
        reference: String,
        #[arg(long)]
        operation: Option<String>,
        /// A parameter of the call, NAME=VALUE (repeatable).
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Print a login URL for an OAuth connection (authorization code + PKCE). The browser
    /// comes back to the gateway's /oauth/callback (at `public_url`, else `listen`).
    Login {
        reference: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a connection.
    Delete {
        reference: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum Clients {
    /// List every client.
    List(Target),
    /// Show one client, by id or name.
    Show {
        reference: String,
        #[command(flatten)]
        target: Target,
    },
    /// Create a client. Prints its API key once, unless --subject makes it a JWT or
    /// client-certificate client.
    Create {
        name: String,
        /// The JWT `sub`, or the TLS client certificate's subject (`CN=app, O=Contoso`), that
        /// identifies this client (no API key is made).
        #[arg(long)]
        subject: Option<String>,
        /// A grant: CONNECTOR, CONNECTOR:OP1,OP2, CONNECTOR@CONNECTION or view:NAME (repeatable).
        #[arg(long = "grant", value_name = "GRANT")]
        grants: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Replace a client's grants.
    Grant {
        reference: String,
        #[arg(long = "grant", value_name = "GRANT")]
        grants: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a client and the connections it owns.
    Delete {
        reference: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, clap::Args)]
pub struct Audit {
    #[arg(long)]
    actor: Option<String>,
    #[arg(long)]
    action: Option<String>,
    #[arg(long)]
    target_id: Option<String>,
    /// At most this many events, newest first.
    #[arg(long, default_value_t = 50)]
    limit: i64,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Subcommand)]
pub enum Keys {
    /// Print a new random master key (base64), to write to a key file.
    Generate,
    /// Re-encrypt every secret of the store under a new master key, in one transaction.
    /// Then point `[store] key_file` (or JUNCTION_MASTER_KEY) at the new key and restart.
    Rotate {
        /// File holding the new key (`junction keys generate > new.key`).
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
}

pub(crate) fn actor() -> String {
    let user = std::env::var("USER").unwrap_or_default();
    let user: String = user
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(32)
        .collect();
    if user.is_empty() {
        "cli".to_owned()
    } else {
        format!("cli:{user}")
    }
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The configuration, the connectors and the store of `dir`.
pub(crate) async fn open(
    dir: &Path,
) -> anyhow::Result<(Config, Vec<junction_model::Connector>, Arc<Access>)> {
    let config = Config::load(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let connectors = if config.connectors_dir.is_dir() {
        crate::serve::load_connectors(&config.connectors_dir)
            .ok_or_else(|| anyhow::anyhow!("some connectors do not load"))?
    } else {
        Vec::new()
    };
    let access = Access::open(&config, &connectors)
        .await?
        .ok_or_else(|| anyhow::anyhow!("{} has no [store] section", config.file.display()))?;
    Ok((config, connectors, access))
}

pub(crate) fn print(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn pairs(list: &[String], what: &str) -> anyhow::Result<Vec<(String, String)>> {
    list.iter()
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| {
                    format!(
                        "{what} `{}` is not NAME=VALUE",
                        item.split('=').next().unwrap_or_default()
                    )
                })
        })
        .collect()
}

fn grants(list: &[String]) -> anyhow::Result<Vec<Grant>> {
    list.iter()
        .map(|g| Grant::parse(g).map_err(anyhow::Error::msg))
        .collect()
}

pub fn connections(command: Connections) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        match command {
            Connections::List(target) => {
                let (_, _, access) = open(&target.config).await?;
                let list = access.vault.connections().await?;
                for c in &list {
                    println!(
                        "{}  {}/{}  {}  secrets: {}",
                        c.id,
                        c.connector,
                        c.name,
                        c.owner
                            .as_deref()
                            .map_or("shared".to_owned(), |o| format!("owner {o}")),
                        junction_model::list_or_none(&c.secrets)
                    );
                }
                println!("{} connections", list.len());
            }
            Connections::Show { reference, target } => {
                let (_, _, access) = open(&target.config).await?;
                let row = access.vault.find_connection(&reference).await?;
                print(&access.vault.info(&row)?)?;
            }
            Connections::Create {
                connector,
                name,
                parameter_set,
                owner,
                values,
                values_env,
                target,
            } => {
                let (_, _, access) = open(&target.config).await?;
                let Some(model) = access.connector(&connector) else {
                    bail!("there is no connector named '{connector}'");
                };
                let mut map = Map::new();
                for (k, v) in pairs(&values, "--value")? {
                    map.insert(k, Value::String(v));
                }
                for (k, var) in pairs(&values_env, "--value-env")? {
                    let v = std::env::var(&var).with_context(|| {
                        format!("--value-env {k}: environment variable {var} is not set")
                    })?;
                    map.insert(k, Value::String(v));
                }
                let created = access
                    .vault
                    .create_connection(
                        model,
                        NewConnection {
                            name,
                            parameter_set,
                            owner,
                            values: map,
                        },
                        &actor(),
                    )
                    .await?;
                print(&created)?;
            }
            Connections::Test {
                reference,
                operation,
                params,
                target,
            } => {
                let (config, connectors, access) = open(&target.config).await?;
                let compiled = Gateway::compile(&config, &connectors).map_err(|d| {
                    anyhow::anyhow!(
                        "the gateway cannot be built: {}",
                        d.errors()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                })?;
                let gateway = SharedGateway::new(compiled.gateway);
                let mut map = Map::new();
                for (k, v) in pairs(&params, "--param")? {
                    map.insert(k, Value::String(v));
                }
                let result = junction_server::test_connection(
                    &gateway,
                    &access,
                    &reference,
                    operation,
                    &map,
                    &actor(),
                )
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.detail()))?;
                print(&result)?;
                if result["ok"] != Value::Bool(true) {
                    return Ok(ExitCode::FAILURE);
                }
            }
            Connections::Login { reference, target } => {
                let (_, _, access) = open(&target.config).await?;
                let answer = junction_server::oauth::login_url(&access, &reference, &actor())
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", e.detail()))?;
                print(&answer)?;
            }
            Connections::Delete { reference, target } => {
                let (_, _, access) = open(&target.config).await?;
                let row = access.vault.find_connection(&reference).await?;
                access.vault.delete_connection(&row.id, &actor()).await?;
                println!("deleted {}", row.id);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn clients(command: Clients) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        match command {
            Clients::List(target) => {
                let (_, _, access) = open(&target.config).await?;
                let list = access.vault.clients().await?;
                for c in &list {
                    let grants: Vec<String> = c
                        .grants
                        .iter()
                        .map(|g| serde_json::to_string(g).unwrap_or_default())
                        .collect();
                    println!(
                        "{}  {}  {}  grants: {}",
                        c.id,
                        c.name,
                        c.auth,
                        grants.join(" ")
                    );
                }
                println!("{} clients", list.len());
            }
            Clients::Show { reference, target } => {
                let (_, _, access) = open(&target.config).await?;
                print(&access.vault.client(&reference).await?)?;
            }
            Clients::Create {
                name,
                subject,
                grants: list,
                target,
            } => {
                let (_, _, access) = open(&target.config).await?;
                let (client, key) = access
                    .vault
                    .create_client(
                        NewClient {
                            name,
                            subject,
                            grants: grants(&list)?,
                        },
                        &actor(),
                    )
                    .await?;
                let mut out = json!({"client": client});
                if let Some(key) = key {
                    out["api_key"] = Value::String(key.expose_secret().to_owned());
                    eprintln!("The API key is shown once; only its hash is stored.");
                }
                print(&out)?;
            }
            Clients::Grant {
                reference,
                grants: list,
                target,
            } => {
                let (_, _, access) = open(&target.config).await?;
                print(
                    &access
                        .vault
                        .set_grants(&reference, grants(&list)?, &actor())
                        .await?,
                )?;
            }
            Clients::Delete { reference, target } => {
                let (_, _, access) = open(&target.config).await?;
                if !access.vault.delete_client(&reference, &actor()).await? {
                    bail!("there is no client '{reference}'");
                }
                println!("deleted {reference}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn audit(args: Audit) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        let (_, _, access) = open(&args.target.config).await?;
        let events = access
            .vault
            .store()
            .audit(&AuditQuery {
                actor: args.actor,
                action: args.action,
                target: args.target_id,
                since: None,
                limit: Some(args.limit),
            })
            .await?;
        for e in &events {
            println!(
                "{}  {}  {}  {}  {}  {}",
                e.at,
                e.actor,
                e.action,
                e.target.as_deref().unwrap_or("-"),
                e.outcome,
                e.detail
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn keys(command: Keys) -> anyhow::Result<ExitCode> {
    match command {
        Keys::Generate => {
            let key = MasterKey::generate()?;
            println!("{}", key.to_base64().as_str());
            Ok(ExitCode::SUCCESS)
        }
        Keys::Rotate {
            new_key_file,
            target,
        } => runtime()?.block_on(async move {
            let (_, _, access) = open(&target.config).await?;
            let new = MasterKey::from_file(&new_key_file)?;
            let count = access.vault.rotate(&new, &actor()).await?;
            println!(
                "re-encrypted {count} values under key {}; now point `[store] key_file` (or JUNCTION_MASTER_KEY) at {} and restart the gateways",
                new.id(),
                new_key_file.display()
            );
            Ok(ExitCode::SUCCESS)
        }),
    }
}
