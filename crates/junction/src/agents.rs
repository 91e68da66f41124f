//! `junction agent join|run`: the agent, on a host of a private network; and `junction
//! agents enroll|list|revoke`: its enrollment and revocation, on the gateway's store (like
//! `junction connections`, without a running gateway). docs/agent.md tells the whole story.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use junction_runtime::AgentsConfig;
use junction_runtime::config::units::parse_duration;
use junction_store::now_ms;
use serde_json::json;

use crate::manage::{Target, actor, open, print, runtime};

#[derive(Debug, clap::Subcommand)]
pub enum Agent {
    /// Join a gateway with an enrollment token: makes this agent's key, gets its
    /// certificate, and writes both (and a starter agent.toml) into --dir.
    Join {
        /// The gateway's agents listener, https://HOST:PORT.
        #[arg(long, value_name = "URL")]
        gateway: String,
        /// The token of `junction agents enroll` (single use).
        #[arg(long, env = "JUNCTION_AGENT_TOKEN", hide_env_values = true)]
        token: String,
        /// The agent's directory.
        #[arg(long, value_name = "AGENTDIR")]
        dir: PathBuf,
        /// The agent's name in listings; default: this host's name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Connect to the gateway and perform the requests it sends that agent.toml allows,
    /// until SIGTERM or Ctrl-C.
    Run {
        /// The agent's directory (see `join`).
        #[arg(long, value_name = "AGENTDIR")]
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum Agents {
    /// Print a single-use enrollment token for an agent of POOL.
    Enroll {
        /// The pool the agent serves (`via = "agent:POOL"`).
        #[arg(long)]
        pool: String,
        /// How long the token can be used; default `[agents] token_ttl` (15m).
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// List the agents enrolled, with their pools, certificates and when a gateway last
    /// had them connected (a running gateway's admin API adds live connections).
    List(Target),
    /// Revoke an agent (by id or name): a running gateway cuts its connection within a
    /// second, and it cannot connect again.
    Revoke {
        agent: String,
        #[command(flatten)]
        target: Target,
    },
}

pub fn agent(command: Agent) -> anyhow::Result<ExitCode> {
    crate::serve::init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match command {
            Agent::Join {
                gateway,
                token,
                dir,
                name,
            } => {
                let name = name.unwrap_or_else(host_name);
                let joined = junction_agent::site::join::join(&gateway, &token, &name, &dir)
                    .await
                    .map_err(anyhow::Error::msg)?;
                println!(
                    "joined pool '{}' as agent {} ('{name}'); certificate valid until {} (Unix ms)",
                    joined.pool, joined.agent, joined.not_after
                );
                println!(
                    "next: list the backends it may call in {}, then `junction agent run --dir {}`",
                    dir.join(junction_agent::site::files::SITE_FILE).display(),
                    dir.display()
                );
                Ok(ExitCode::SUCCESS)
            }
            Agent::Run { dir } => {
                junction_agent::site::run::run(&dir, junction_server::shutdown_signal())
                    .await
                    .map_err(anyhow::Error::msg)?;
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "agent".to_owned())
}

pub fn agents(command: Agents) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        match command {
            Agents::Enroll { pool, ttl, target } => {
                let (config, _, access) = open(&target.config).await?;
                let ttl = match ttl {
                    Some(text) => parse_duration(&text).map_err(anyhow::Error::msg)?,
                    None => config
                        .agents
                        .as_ref()
                        .map_or(AgentsConfig::default().token_ttl, |a| a.token_ttl),
                };
                let (token, expires_at) =
                    junction_agent::enroll::token(&access.vault, &pool, ttl, &actor())
                        .await
                        .map_err(anyhow::Error::msg)?;
                eprintln!(
                    "an enrollment token for pool '{pool}', usable once until {expires_at} (Unix ms):"
                );
                println!("{token}");
                Ok(ExitCode::SUCCESS)
            }
            Agents::List(target) => {
                let (_, _, access) = open(&target.config).await?;
                print(&access.vault.store().agents().await?)?;
                Ok(ExitCode::SUCCESS)
            }
            Agents::Revoke { agent, target } => {
                let (_, _, access) = open(&target.config).await?;
                if !access.vault.store().revoke_agent(&agent, now_ms()).await? {
                    eprintln!("junction: no agent '{agent}' that is not revoked already");
                    return Ok(ExitCode::FAILURE);
                }
                access
                    .vault
                    .audit(&actor(), "agent.revoke", Some(&agent), "ok", json!({}))
                    .await;
                eprintln!("agent '{agent}' revoked; a running gateway cuts it off within a second");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
