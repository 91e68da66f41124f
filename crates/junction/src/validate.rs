//! `junction validate`: load connector definitions and report every problem found.
//!
//! Each PATH is a connector folder, a definition file, or a tree of connector folders.
//! Connectors load in parallel, one worker per core; only their diagnostics are kept, so a
//! large tree validates in little memory. Text output prints every diagnostic on its own line
//! (`file#pointer:line:column: severity[code]: message`), connector by connector in path
//! order, and ends with the one summary line other tools read:
//! `validated N connectors: K loaded, F failed, W warnings`.
//! Exit status: 0 when no connector failed, 1 when one did (or, with `--deny-warnings`,
//! when there is any warning), 2 for usage errors.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use junction_model::Diagnostic;
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connector folders, definition files (.json, .yaml, .yml), or trees of connector
    /// folders (searched recursively).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Print one JSON object: {"total","loaded","failed":[{"path","errors"}],"warnings"}.
    #[arg(long)]
    json: bool,
    /// Do not print warnings (they are still counted).
    #[arg(short, long)]
    quiet: bool,
    /// Exit with status 1 when there is any warning.
    #[arg(long)]
    deny_warnings: bool,
    /// Connectors loaded at once (default: one per core).
    #[arg(short, long, value_name = "N")]
    jobs: Option<usize>,
}

/// What is kept of one loaded connector.
#[derive(Debug)]
struct Outcome {
    path: PathBuf,
    loaded: bool,
    diagnostics: Vec<Diagnostic>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut targets = Vec::new();
    let mut seen = HashSet::new();
    for path in &args.paths {
        std::fs::metadata(path).with_context(|| format!("cannot read '{}'", path.display()))?;
        for found in junction_import::discover(path) {
            if seen.insert(found.clone()) {
                targets.push(found);
            }
        }
    }
    if targets.is_empty() {
        bail!(
            "no connector found under {}",
            args.paths
                .iter()
                .map(|p| format!("'{}'", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let outcomes = load_all(&targets, args.jobs);
    let total = outcomes.len();
    let loaded = outcomes.iter().filter(|o| o.loaded).count();
    let failed = total - loaded;
    let warnings = outcomes
        .iter()
        .flat_map(|o| &o.diagnostics)
        .filter(|d| !d.is_error())
        .count();

    let report = if args.json {
        json_report(&outcomes, total, loaded, warnings)
    } else {
        text_report(&outcomes, args.quiet, total, loaded, failed, warnings)
    };
    let mut out = io::stdout().lock();
    match out.write_all(report.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => {}
        // `junction validate … | head` is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(e).context("cannot write the report"),
    }

    let ok = failed == 0 && !(args.deny_warnings && warnings > 0);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Loads every target on `jobs` threads, keeping results in target order.
fn load_all(targets: &[PathBuf], jobs: Option<usize>) -> Vec<Outcome> {
    let jobs = jobs
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
        .clamp(1, 64)
        .min(targets.len());
    let progress = progress_bar(targets.len());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(
        std::iter::repeat_with(|| None)
            .take(targets.len())
            .collect(),
    );
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = targets.get(i) else { break };
                    let outcome = load_one(path);
                    if let Ok(mut results) = results.lock()
                        && let Some(slot) = results.get_mut(i)
                    {
                        *slot = Some(outcome);
                    }
                    progress.inc(1);
                }
            });
        }
    });
    progress.finish_and_clear();
    results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .flatten()
        .collect()
}

fn load_one(path: &Path) -> Outcome {
    let loaded = junction_import::load(path);
    Outcome {
        path: loaded.source,
        loaded: loaded.connector.is_some(),
        diagnostics: loaded.diagnostics.0,
    }
}

/// A progress bar on stderr for runs long enough to want one, when both stdout and stderr
/// are terminals (so a redirected report is never interleaved with it).
fn progress_bar(len: usize) -> ProgressBar {
    let interactive = io::stdout().is_terminal() && io::stderr().is_terminal();
    if !interactive || len < 50 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(
        Some(u64::try_from(len).unwrap_or(u64::MAX)),
        ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = ProgressStyle::with_template("validating {bar:40} {pos}/{len} connectors") {
        bar.set_style(style);
    }
    bar
}

fn text_report(
    outcomes: &[Outcome],
    quiet: bool,
    total: usize,
    loaded: usize,
    failed: usize,
    warnings: usize,
) -> String {
    let mut out = String::new();
    for outcome in outcomes {
        let shown: Vec<&Diagnostic> = outcome
            .diagnostics
            .iter()
            .filter(|d| d.is_error() || !quiet)
            .collect();
        if shown.is_empty() {
            continue;
        }
        for d in shown {
            out.push_str(&d.to_string());
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "validated {total} connectors: {loaded} loaded, {failed} failed, {warnings} warnings\n"
    ));
    out
}

fn json_report(outcomes: &[Outcome], total: usize, loaded: usize, warnings: usize) -> String {
    let failed: Vec<Value> = outcomes
        .iter()
        .filter(|o| !o.loaded)
        .map(|o| {
            let errors: Vec<Value> = o
                .diagnostics
                .iter()
                .filter(|d| d.is_error())
                .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
                .collect();
            json!({"path": o.path.display().to_string(), "errors": errors})
        })
        .collect();
    let mut by_code: BTreeMap<&str, usize> = BTreeMap::new();
    for d in outcomes.iter().flat_map(|o| &o.diagnostics) {
        if !d.is_error() {
            *by_code.entry(d.code).or_default() += 1;
        }
    }
    let report = json!({
        "total": total,
        "loaded": loaded,
        "failed": failed,
        "warnings": warnings,
        "warnings_by_code": by_code,
    });
    format!("{report}\n")
}
