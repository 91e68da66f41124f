//! `junction serve --config DIR`: load the configuration and every connector, compile the
//! gateway, and serve until Ctrl-C or SIGTERM.
//!
//! Like `nginx -t`, nothing is served unless everything loads: a configuration error, a
//! connector that fails to load or a gateway that does not compile prints every error and
//! exits 1. Warnings about the definitions are counted on one line (`junction validate` lists
//! them); warnings from building the gateway (a missing connection value, a schema that
//! will not be validated, a shadowed route) are printed in full.
//!
//! The runtime: by default thread-per-core (`--runtime per-core`), one single-threaded
//! runtime per worker thread, each with its own listener (`SO_REUSEPORT`) and its own
//! upstream connections, so a request never wakes a task on another core. `--runtime
//! multi-thread` is Tokio's work-stealing runtime instead. `bench/` measures both.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use junction_model::{Connector, Diagnostics};
use junction_runtime::{Config, Gateway, SharedGateway, config};
use junction_server::{Access, Catalog, RunningServer, Server, install_admission};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory holding `junction.toml` and the connector packages.
    #[arg(long, value_name = "DIR", default_value = ".")]
    config: PathBuf,
    /// Data-plane address (IP:PORT), instead of `listen` in the configuration.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Admin-plane address (IP:PORT), instead of `admin_listen` in the configuration.
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// TLS data-plane address (IP:PORT), instead of `listen_tls` in the configuration; it
    /// needs `[tls]`.
    #[arg(long, value_name = "ADDR")]
    listen_tls: Option<String>,
    /// Worker threads serving requests; default: one per CPU the process may run on. With
    /// the default `--runtime`, `1` serves everything from one single-threaded runtime.
    #[arg(long, value_name = "N", env = "JUNCTION_THREADS")]
    threads: Option<usize>,
    /// How the worker threads share the work: `per-core`, one single-threaded runtime per
    /// thread, each accepting its own connections (SO_REUSEPORT); or `multi-thread`, one
    /// work-stealing runtime (also with `--threads 1`).
    #[arg(
        long,
        value_enum,
        value_name = "KIND",
        default_value = "per-core",
        env = "JUNCTION_RUNTIME"
    )]
    runtime: RuntimeKind,
}

/// The `--runtime` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RuntimeKind {
    PerCore,
    MultiThread,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    init_logging();
    let mut config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("junction: {error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(listen) = &args.listen {
        config.listen = config::parse_address(listen)
            .map_err(anyhow::Error::msg)
            .context("--listen")?;
    }
    if let Some(admin_listen) = &args.admin_listen {
        config.admin_listen = config::parse_address(admin_listen)
            .map_err(anyhow::Error::msg)
            .context("--admin-listen")?;
    }

    if let Some(listen_tls) = &args.listen_tls {
        if config.tls.is_none() {
            eprintln!(
                "junction: --listen-tls needs `[tls]` with `cert_file` and `key_file` in {}",
                config.file.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        config.listen_tls = Some(
            config::parse_address(listen_tls)
                .map_err(anyhow::Error::msg)
                .context("--listen-tls")?,
        );
    }
    raise_open_files_limit(&config);

    let Some((connectors, mut diagnostics)) = load_connectors_with_warnings(&config.connectors_dir)
    else {
        return Ok(ExitCode::FAILURE);
    };
    let compiled = match Gateway::compile(&config, &connectors) {
        Ok(compiled) => compiled,
        Err(diagnostics) => {
            eprintln!("junction: the gateway cannot be built:");
            print_errors(&diagnostics);
            return Ok(ExitCode::FAILURE);
        }
    };
    // Gateway warnings concern serving (unvalidated schemas, shadowed routes, missing
    // connection values): all of them are shown.
    for warning in compiled.diagnostics.warnings() {
        eprintln!("{warning}");
    }
    // The console lists both kinds (`GET /api/v1/diagnostics`).
    diagnostics.extend(compiled.diagnostics.warnings().cloned());
    let operations: usize = compiled
        .gateway
        .connectors()
        .iter()
        .map(|c| c.operations.len())
        .sum();
    println!(
        "serving {} connectors, {operations} operations, {} views",
        connectors.len(),
        compiled.gateway.views().len()
    );

    let threads = match args.threads {
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        Some(n) => NonZeroUsize::new(n),
        None => std::thread::available_parallelism().ok(),
    }
    .unwrap_or(NonZeroUsize::MIN);
    let table = compiled.gateway;
    if args.runtime == RuntimeKind::MultiThread {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.get())
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(async move {
            let (gateway, access) = with_store(&config, &connectors, table).await?;
            let catalog = Arc::new(Catalog::new(&config, connectors, diagnostics));
            let running = Server::start_with_access(&config, gateway, access, catalog).await?;
            print_addresses(&running);
            running.run_until_signal().await;
            anyhow::Ok(())
        })?;
    } else {
        // Thread-per-core: this thread's runtime is the first; with one thread, the only one.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(async move {
            let (gateway, access) = with_store(&config, &connectors, table).await?;
            let catalog = Arc::new(Catalog::new(&config, connectors, diagnostics));
            let running =
                Server::start_per_core_with_access(&config, gateway, threads, access, catalog)
                    .await?;
            print_addresses(&running);
            running.run_until_signal().await;
            anyhow::Ok(())
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the store when `[store]` is configured (refusing to start when its secrets
/// cannot be read) and puts its client admission in front of `table`.
async fn with_store(
    config: &Config,
    connectors: &[Connector],
    mut table: Gateway,
) -> anyhow::Result<(SharedGateway, Option<Arc<Access>>)> {
    let access = install_admission(config, connectors, &mut table).await?;
    if let Some(access) = &access {
        println!(
            "store: {} (clients must authenticate on the data plane)",
            access.vault.store().backend()
        );
    }
    Ok((SharedGateway::new(table), access))
}

/// Raises the soft limit of open files to the hard one: each client connection takes a
/// descriptor and so may each backend connection. Warns when even the hard limit is below
/// what `max_connections` on every listener could take.
fn raise_open_files_limit(config: &Config) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let limit = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let listeners = 2 + u64::from(config.listen_tls.is_some());
    let wanted = u64::from(config.limits.max_connections) * listeners * 2 + 256;
    if limit < wanted {
        tracing::warn!(
            open_files = limit,
            wanted,
            "the open-files limit (ulimit -n) is below what `limits.max_connections` may take; \
             raise it (LimitNOFILE= in a systemd unit) or lower max_connections"
        );
    }
}

fn print_addresses(running: &RunningServer) {
    println!("data plane:  {}/connectors/{{name}}/…", running.data_url());
    println!("             {}/views/{{name}}", running.data_url());
    if let Some(tls) = running.tls_addr {
        println!("             https://{tls}/connectors/{{name}}/… (TLS, HTTP/2)");
    }
    println!("admin plane: {}/api/v1/connectors", running.admin_url());
    println!("console:     {}/console/", running.admin_url());
}

/// Loads every connector under `dir`, printing errors in full and warnings as a count.
/// `None` when any connector failed.
pub(crate) fn load_connectors(dir: &Path) -> Option<Vec<Connector>> {
    load_connectors_with_warnings(dir).map(|(connectors, _)| connectors)
}

/// [`load_connectors`], with the warnings found.
fn load_connectors_with_warnings(dir: &Path) -> Option<(Vec<Connector>, Diagnostics)> {
    if !dir.is_dir() {
        eprintln!(
            "junction: the connectors folder {} does not exist (set `connectors_dir` in junction.toml)",
            dir.display()
        );
        return None;
    }
    let mut connectors = Vec::new();
    let mut failed = Vec::new();
    let mut warnings = Diagnostics::default();
    for path in junction_import::discover(dir) {
        let loaded = junction_import::load(&path);
        warnings.extend(loaded.diagnostics.warnings().cloned());
        match loaded.connector {
            Some(connector) => connectors.push(connector),
            None => failed.push((path, loaded.diagnostics)),
        }
    }
    report_warnings("connector definitions", &warnings);
    if failed.is_empty() {
        return Some((connectors, warnings));
    }
    eprintln!(
        "junction: {} of {} connectors failed to load:",
        failed.len(),
        failed.len() + connectors.len()
    );
    for (path, diagnostics) in &failed {
        eprintln!("  {}", path.display());
        print_errors(diagnostics);
    }
    None
}

fn print_errors(diagnostics: &Diagnostics) {
    for diagnostic in diagnostics.errors() {
        eprintln!("    {diagnostic}");
    }
}

fn report_warnings(what: &str, diagnostics: &Diagnostics) {
    let count = diagnostics.warnings().count();
    if count > 0 {
        eprintln!("{what}: {count} warnings (run `junction validate` to see them)");
    }
}

pub(crate) fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("JUNCTION_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
