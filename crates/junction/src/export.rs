//! `junction export --config DIR --out OUTDIR [--base-url URL]`: write the gateway's own
//! surface (its connectors as it serves them, and its views) as OpenAPI 3.1 and as a Power
//! Platform connector package, both pointing at the gateway.
//!
//! Everything `junction serve` would load is loaded and compiled first, so an export is
//! only ever written for a configuration that serves.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use junction_export::{Options, Surface};
use junction_runtime::{Config, Gateway};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory holding `junction.toml`, the connector packages and the views.
    #[arg(long, value_name = "DIR", default_value = ".")]
    config: PathBuf,
    /// Where to write `NAME.openapi.json` and the package folder `NAME/`.
    #[arg(long, value_name = "OUTDIR")]
    out: PathBuf,
    /// The gateway's address as clients reach it; default: `public_url`, else `http://`
    /// and the `listen` address.
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// Name of the package folder (and of the connector when a Junction loads it).
    #[arg(long, value_name = "NAME", default_value = "junction")]
    name: String,
    /// Title of the exported API.
    #[arg(long, value_name = "TEXT", default_value = "Junction gateway")]
    title: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("junction: {error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let Some(connectors) = crate::serve::load_connectors(&config.connectors_dir) else {
        return Ok(ExitCode::FAILURE);
    };
    let compiled = match Gateway::compile(&config, &connectors) {
        Ok(compiled) => compiled,
        Err(diagnostics) => {
            eprintln!("junction: the gateway cannot be built:");
            for diagnostic in diagnostics.errors() {
                eprintln!("    {diagnostic}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let base = match &args.base_url {
        Some(url) => url.clone(),
        None => match &config.public_url {
            Some(url) => url.clone(),
            None => {
                let mut listen = config.listen;
                if listen.ip().is_unspecified() {
                    listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("http://{listen}")
            }
        },
    };
    let base_url = url::Url::parse(&base).with_context(|| format!("--base-url `{base}`"))?;
    let name = junction_model::connector_name(&args.name);
    let options = Options {
        base_url,
        title: args.title,
        name,
        client_keys: config.store.is_some(),
    };
    let surface = Surface::new(&connectors, &compiled.gateway);
    let written = junction_export::write(&surface, &options, &args.out)?;
    let operations: usize = surface.connectors.iter().map(|(_, ops)| ops.len()).sum();
    println!(
        "exported {} connectors ({operations} operations) and {} views for {}",
        surface.connectors.len(),
        surface.views.len(),
        options.base_url
    );
    for path in written {
        println!("  {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
