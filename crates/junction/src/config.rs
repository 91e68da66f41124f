//! `junction config`: what a configuration may hold. `junction config schema` prints the
//! JSON Schema (draft 2020-12) of `junction.toml`, `--view` that of a view file, both
//! generated from the types that read them; editors and CI can check files against them.

use std::process::ExitCode;

/// `junction config …`.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the JSON Schema of `junction.toml` (or, with `--view`, of a view file).
    Schema {
        /// The schema of a view file (`views/NAME.toml`) instead.
        #[arg(long)]
        view: bool,
    },
}

pub fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Schema { view } => {
            let schema = if view {
                junction_runtime::config::schema::view()
            } else {
                junction_runtime::config::schema::config()
            };
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
