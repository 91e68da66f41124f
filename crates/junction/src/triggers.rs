//! `junction triggers list|pause|resume|replay` and `junction deliveries
//! list|redeliver`: the triggers of a configuration (docs/triggers.md) and the deliveries
//! of their events, on its store. Like `connections`, these work on the store directly; a
//! running gateway sees a change within a second. Every change is audited as `cli:$USER`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;
use junction_runtime::Config;
use junction_server::Access;
use junction_store::{DefinitionRow, DeliveryQuery};
use serde_json::json;

use crate::manage::{Target, actor, open, print, runtime};

#[derive(Debug, clap::Subcommand)]
pub enum Triggers {
    /// Every configured trigger and its state: cursor, next poll, polls made, last error,
    /// the replica holding it, whether it is paused.
    List(Target),
    /// Stop polling a trigger (its stored events are still served and delivered).
    Pause {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Poll a paused trigger again.
    Resume {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Deliver a trigger's events to its webhooks again: those stored within `--since`
    /// (a duration: `2h`, `30m`) or all of them (`--since all`).
    Replay {
        name: String,
        #[arg(long)]
        since: String,
        /// Only to this webhook.
        #[arg(long)]
        webhook: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum Deliveries {
    /// Deliveries, newest event first.
    List {
        #[arg(long)]
        trigger: Option<String>,
        /// `pending`, `delivered` or `dead` (the dead-letter list).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[command(flatten)]
        target: Target,
    },
    /// Make a trigger's dead deliveries pending again, and enable their webhooks.
    Redeliver {
        trigger: String,
        /// Only this webhook's.
        #[arg(long)]
        webhook: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

/// Checks that `name` is a trigger of `config` or one declared through the admin API
/// (`declared`), or fails listing them.
fn known(config: &Config, declared: &[DefinitionRow], name: &str) -> anyhow::Result<()> {
    if config.triggers.contains_key(name) || declared.iter().any(|d| d.name == name) {
        return Ok(());
    }
    let known: Vec<&str> = config
        .triggers
        .keys()
        .map(String::as_str)
        .chain(declared.iter().map(|d| d.name.as_str()))
        .collect();
    bail!(
        "{} declares no trigger '{name}', nor does the admin API (the triggers: {})",
        config.file.display(),
        junction_model::list_or_none(&known)
    )
}

/// The store of `target`'s configuration, after checking that `name` is one of its
/// triggers.
async fn trigger_store(target: &Target, name: &str) -> anyhow::Result<Arc<Access>> {
    let (config, _, access) = open(&target.config).await?;
    known(
        &config,
        &access.vault.store().trigger_definitions().await?,
        name,
    )?;
    Ok(access)
}

/// Pauses (or resumes) trigger `name`.
async fn pause(name: &str, target: &Target, paused: bool) -> anyhow::Result<()> {
    let access = trigger_store(target, name).await?;
    let changed = access.vault.pause_trigger(name, paused, &actor()).await?;
    let word = if paused { "paused" } else { "polling" };
    if changed {
        println!("trigger '{name}' is {word}");
    } else {
        println!("trigger '{name}' was {word} already");
    }
    Ok(())
}

pub fn triggers(command: Triggers) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        match command {
            Triggers::List(target) => {
                let (config, _, access) = open(&target.config).await?;
                let store = access.vault.store();
                let mut list = Vec::new();
                for (name, trigger) in &config.triggers {
                    let state = store.trigger(name).await?;
                    list.push(json!({
                        "name": name,
                        "declared": "config",
                        "connector": trigger.connector,
                        "operation": trigger.operation,
                        "webhooks": trigger.webhooks.keys().collect::<Vec<_>>(),
                        "state": state,
                    }));
                }
                for declared in store.trigger_definitions().await? {
                    let state = store.trigger(&declared.name).await?;
                    let table = declared.table()?;
                    let field = |key: &str| table.get(key).cloned().unwrap_or_default();
                    let webhooks: Vec<&String> = table
                        .get("webhook")
                        .and_then(|w| w.as_object())
                        .map(|w| w.keys().collect())
                        .unwrap_or_default();
                    list.push(json!({
                        "name": declared.name,
                        "declared": "api",
                        "connector": field("connector"),
                        "operation": field("operation"),
                        "webhooks": webhooks,
                        "state": state,
                    }));
                }
                print(&list)?;
            }
            Triggers::Pause { name, target } => pause(&name, &target, true).await?,
            Triggers::Resume { name, target } => pause(&name, &target, false).await?,
            Triggers::Replay {
                name,
                since,
                webhook,
                target,
            } => {
                let access = trigger_store(&target, &name).await?;
                let from = junction_store::since(&since)
                    .map_err(|e| anyhow::anyhow!("--since `{since}`: {e}"))?;
                let count = access
                    .vault
                    .redeliver(&name, webhook.as_deref(), Some(from), &actor())
                    .await?;
                println!("{count} deliveries of trigger '{name}' are pending again");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn deliveries(command: Deliveries) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        match command {
            Deliveries::List {
                trigger,
                state,
                limit,
                target,
            } => {
                let (_, _, access) = open(&target.config).await?;
                if let Some(state) = &state
                    && !matches!(state.as_str(), "pending" | "delivered" | "dead")
                {
                    bail!("--state `{state}` is none of pending, delivered, dead");
                }
                let rows = access
                    .vault
                    .store()
                    .deliveries(&DeliveryQuery {
                        trigger,
                        state,
                        limit: Some(limit),
                    })
                    .await?;
                print(&rows)?;
            }
            Deliveries::Redeliver {
                trigger,
                webhook,
                target,
            } => {
                let access = trigger_store(&target, &trigger).await?;
                let count = access
                    .vault
                    .redeliver(&trigger, webhook.as_deref(), None, &actor())
                    .await?;
                println!("{count} dead deliveries of trigger '{trigger}' are pending again");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
