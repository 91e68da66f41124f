//! The `junction` command line: validate definitions, serve them, export the gateway's
//! surface, run the demo, and talk to a running gateway's admin listener.

mod admin;
mod agents;
mod config;
mod demo;
mod export;
mod manage;
mod serve;
mod triggers;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Junction turns REST services into custom connectors for low-code apps and serves them
/// through one gateway.
#[derive(Debug, Parser)]
#[command(name = "junction", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check connector definitions and report every problem found.
    Validate(validate::Args),
    /// Serve the connectors of a configuration directory.
    Serve(serve::Args),
    /// Start sample backends and a gateway in front of them, and print URLs to try.
    Demo(demo::Args),
    /// Write the gateway's surface (connectors as served, views) as OpenAPI 3.1 and as a
    /// Power Platform connector package.
    Export(export::Args),
    /// Manage a running gateway's response cache (through its admin listener).
    #[command(subcommand)]
    Cache(admin::CacheCommand),
    /// Show a running gateway's cache, rate limit, breaker and retry counters.
    Traffic(admin::Target),
    /// Manage the connections of the store (`[store]`).
    #[command(subcommand)]
    Connections(manage::Connections),
    /// Manage the gateway's clients: API keys, JWT subjects and their grants.
    #[command(subcommand)]
    Clients(manage::Clients),
    /// Show the audit log of the store.
    Audit(manage::Audit),
    /// The triggers the gateway runs: `list`, `pause`, `resume`, `replay --since`.
    #[command(subcommand)]
    Triggers(triggers::Triggers),
    /// Deliveries of trigger events to webhooks: `list`, `redeliver` the dead ones.
    #[command(subcommand)]
    Deliveries(triggers::Deliveries),
    /// Master key: generate one, or rotate the store to a new one.
    #[command(subcommand)]
    Keys(manage::Keys),
    /// The outbound agent, on a host of a private network: `join` a gateway, `run`.
    #[command(subcommand)]
    Agent(agents::Agent),
    /// The gateway's outbound agents: `enroll` one (a single-use token), `list`, `revoke`.
    #[command(subcommand)]
    Agents(agents::Agents),
    /// What a configuration may hold: `junction config schema [--view]`.
    #[command(subcommand)]
    Config(config::ConfigCommand),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("junction: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Export(args) => export::run(args),
        Command::Cache(command) => admin::cache(command),
        Command::Traffic(target) => admin::traffic(target),
        Command::Connections(command) => manage::connections(command),
        Command::Clients(command) => manage::clients(command),
        Command::Audit(args) => manage::audit(args),
        Command::Keys(command) => manage::keys(command),
        Command::Triggers(command) => triggers::triggers(command),
        Command::Deliveries(command) => triggers::deliveries(command),
        Command::Agent(command) => agents::agent(command),
        Command::Agents(command) => agents::agents(command),
        Command::Config(command) => config::run(command),
    }
}
