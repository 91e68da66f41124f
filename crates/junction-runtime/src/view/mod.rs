//! Views: one endpoint built from several connector operations (and other views), declared
//! in `views/*.toml` and served at `/views/{name}`.
//!
//! A view has typed inputs, steps and a jq `shape`. Each step calls a connector operation or
//! another view with arguments that are literals, inputs (`$inputs.NAME`) or values from the
//! results of other steps (`$steps.NAME.path`). The references give the dependency graph:
//! steps whose inputs are ready run concurrently, a step runs as soon as the steps it reads
//! have finished, and a cycle is a load-time error that spells the cycle out. A step may run
//! once per element of a list (`for_each`, at most `concurrency` calls at once), has a
//! timeout, and is required (its failure fails the view with `502 view-step-failed`) or
//! optional (its `fallback` value stands in, and the response names it in the
//! `X-Junction-Partial` header).
//!
//! Every call of a step goes through [`Gateway::handle`](crate::Gateway::handle), exactly as
//! a client's call of `/connectors/{name}/…` does: binding and validation, policies,
//! authentication, and whatever else the pipeline does for a direct call.
//!
//! The stages: `syntax` reads the TOML files into raw values with positions, `compile`
//! resolves every name and reference against the loaded connectors into immutable plans
//! (with diagnostics that name file, line, key and why), `inputs` binds a request's query
//! or JSON body to the view's inputs, and `run` executes the plan. `docs/views.md` is the
//! reference of the file format.

mod compile;
mod inputs;
mod run;
mod syntax;

use std::path::{Path, PathBuf};

pub use compile::{InputSummary, ViewSummary, Views};

/// The prefix of every view URL.
pub const VIEWS_PREFIX: &str = "/views/";
/// The response header that names the optional steps that failed (their fallback was used).
pub const PARTIAL_HEADER: &str = "x-junction-partial";

/// One view file: its path (for messages; the file name gives the view its name) and text.
#[derive(Debug, Clone)]
pub struct ViewSource {
    pub file: PathBuf,
    pub text: String,
}

impl ViewSource {
    pub fn new(file: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        ViewSource {
            file: file.into(),
            text: text.into(),
        }
    }
}

/// Reads every `*.toml` file of `dir` (not recursively), sorted by name. A missing folder
/// holds no views.
pub fn read_dir(dir: &Path) -> Result<Vec<ViewSource>, (PathBuf, std::io::Error)> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| (dir.to_path_buf(), e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_file()
                && path.extension().is_some_and(|e| e == "toml")
                && !path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| match std::fs::read_to_string(&file) {
            Ok(text) => Ok(ViewSource { file, text }),
            Err(e) => Err((file, e)),
        })
        .collect()
}

/// The name of the view a file declares: its stem, lower-cased, runs of other characters
/// turned into `-` (the rule connector names follow).
pub fn view_name(file: &Path) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    junction_model::connector_name(&stem)
}

/// The JSON Schema of a view file, generated from the type that reads it.
pub(crate) fn raw_schema() -> serde_json::Value {
    schemars::schema_for!(syntax::RawView).to_value()
}
