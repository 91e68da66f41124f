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
//!
//! A PATH that is a configuration directory (it holds `junction.toml`) also has its views
//! checked against the connectors it holds: their problems are printed after the
//! connectors', with a line `validated N views: K loaded, F failed` before the summary line
//! (in `--json`, a `views` object), and a view that fails makes the exit status 1.

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
    let views = check_views(&args.paths);
    let total = outcomes.len();
    let loaded = outcomes.iter().filter(|o| o.loaded).count();
    let failed = total - loaded;
    let warnings = outcomes
        .iter()
        .flat_map(|o| &o.diagnostics)
        .filter(|d| !d.is_error())
        .count();

    let report = if args.json {
        json_report(&outcomes, total, loaded, warnings, &views)
    } else {
        text_report(
            &outcomes, args.quiet, total, loaded, failed, warnings, &views,
        )
    };
    let mut out = io::stdout().lock();
    match out.write_all(report.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => {}
        // `junction validate … | head` is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(e).context("cannot write the report"),
    }

    let ok = failed == 0 && views.failed.is_empty() && !(args.deny_warnings && warnings > 0);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The views of the configuration directories among the paths.
#[derive(Debug, Default)]
struct ViewCheck {
    total: usize,
    /// Each view file with errors, and its errors.
    failed: Vec<(String, Vec<Diagnostic>)>,
}

/// Checks the views of every PATH that holds `junction.toml` against the connectors under
/// its `connectors_dir` (`views_dir` and `connectors_dir` from the file when it reads, else
/// the defaults).
fn check_views(paths: &[PathBuf]) -> ViewCheck {
    use junction_runtime::config::{CONFIG_FILE, DEFAULT_TIMEOUT};
    use junction_runtime::view::{self, Views};
    let mut check = ViewCheck::default();
    for path in paths {
        if !path.join(CONFIG_FILE).is_file() {
            continue;
        }
        let (connectors_dir, sources) = match junction_runtime::Config::load(path) {
            Ok(config) => (config.connectors_dir, Ok(config.views)),
            Err(_) => (path.join("connectors"), view::read_dir(&path.join("views"))),
        };
        let sources = match sources {
            Ok(sources) => sources,
            Err((file, error)) => {
                check.total += 1;
                check.failed.push((
                    file.display().to_string(),
                    vec![Diagnostic::new(
                        junction_model::Severity::Error,
                        "io",
                        file.display().to_string(),
                        "",
                        error.to_string(),
                    )],
                ));
                continue;
            }
        };
        if sources.is_empty() {
            continue;
        }
        let connectors: Vec<junction_model::Connector> = junction_import::discover(&connectors_dir)
            .iter()
            .filter_map(|p| junction_import::load(p).connector)
            .collect();
        let mut diagnostics = junction_model::Diagnostics::default();
        Views::compile(
            &sources,
            &connectors,
            &|_, _| true,
            &|_| None,
            DEFAULT_TIMEOUT,
            &mut diagnostics,
        );
        check.total += sources.len();
        for source in &sources {
            let file = source.file.display().to_string();
            let errors: Vec<Diagnostic> = diagnostics
                .errors()
                .filter(|d| d.file == file)
                .cloned()
                .collect();
            if !errors.is_empty() {
                check.failed.push((file, errors));
            }
        }
    }
    check
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
    views: &ViewCheck,
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
    for (_, errors) in &views.failed {
        for d in errors {
            out.push_str(&d.to_string());
            out.push('\n');
        }
        out.push('\n');
    }
    if views.total > 0 {
        out.push_str(&format!(
            "validated {} views: {} loaded, {} failed\n",
            views.total,
            views.total - views.failed.len(),
            views.failed.len()
        ));
    }
    out.push_str(&format!(
        "validated {total} connectors: {loaded} loaded, {failed} failed, {warnings} warnings\n"
    ));
    out
}

fn json_report(
    outcomes: &[Outcome],
    total: usize,
    loaded: usize,
    warnings: usize,
    views: &ViewCheck,
) -> String {
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
    let mut report = json!({
        "total": total,
        "loaded": loaded,
        "failed": failed,
        "warnings": warnings,
        "warnings_by_code": by_code,
    });
    if views.total > 0
        && let Value::Object(map) = &mut report
    {
        let failed: Vec<Value> = views
            .failed
            .iter()
            .map(|(path, errors)| {
                let errors: Vec<Value> = errors
                    .iter()
                    .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
                    .collect();
                json!({"path": path, "errors": errors})
            })
            .collect();
        map.insert(
            "views".into(),
            json!({"total": views.total, "loaded": views.total - views.failed.len(), "failed": failed}),
        );
    }
    format!("{report}\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn configuration_directories_have_their_views_checked() {
        let dir = std::env::temp_dir().join(format!("junction-validate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("views")).unwrap();
        std::fs::create_dir_all(dir.join("connectors/things")).unwrap();
        std::fs::write(dir.join("junction.toml"), "").unwrap();
        std::fs::write(
            dir.join("connectors/things/openapi.json"),
            r#"{"openapi": "3.0.0", "info": {"title": "T", "version": "1"},
                "servers": [{"url": "http://127.0.0.1:1"}],
                "paths": {"/things": {"get": {"operationId": "ListThings",
                    "responses": {"200": {"description": "ok"}}}}}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("views/good.toml"),
            "[step.a]\noperation = \"things.ListThings\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("views/bad.toml"),
            "[step.a]\noperation = \"things.ListThing\"\n",
        )
        .unwrap();
        let check = check_views(std::slice::from_ref(&dir));
        assert_eq!(check.total, 2);
        assert_eq!(check.failed.len(), 1);
        let (file, errors) = &check.failed[0];
        assert!(file.ends_with("bad.toml"), "{file}");
        assert!(
            errors[0].message.contains(
                "connector 'things' has no operation 'ListThing' (operations: ListThings)"
            ),
            "{errors:?}"
        );
        let text = text_report(&[], false, 0, 0, 0, 0, &check);
        assert!(
            text.ends_with(
                "validated 2 views: 1 loaded, 1 failed\nvalidated 0 connectors: 0 loaded, 0 failed, 0 warnings\n"
            ),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
