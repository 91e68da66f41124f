//! Reads connector definitions (Power Platform packages, Swagger 2.0, OpenAPI 3.x, WSDL 1.1) into the model, with diagnostics.
//!
//! [`load`] reads a connector folder or a definition file, [`load_from_str`] the same from
//! text in memory, and [`discover`] finds every connector under a directory tree. Loading
//! never stops at the first problem: every finding becomes a [`Diagnostic`] naming the file,
//! the JSON pointer, and the line and column. A connector is produced unless
//! one of them is an error, and errors are kept for real defects only — a file that is not
//! JSON (or YAML), a document that is not a Swagger 2.0 / OpenAPI 3.x definition, or one
//! without `paths`. Everything else published connectors do is a warning.
//!
//! The stages, in order: [`source`] turns text into a value, [`properties`] reads
//! `apiProperties.json`, [`document`] reads the definition (with [`paths`], [`swagger`],
//! [`openapi`], [`security`] and [`schema`]), [`extensions`] looks for misspelled `x-ms-…`
//! keys, and [`locate`] finally gives each diagnostic its line and column in one scan per file.
//! A WSDL takes its own path, [`wsdl`], from XML to the same model.

mod document;
mod extensions;
mod fields;
mod locate;
mod openapi;
mod paths;
mod policies;
mod properties;
mod ptr;
mod schema;
mod security;
mod sink;
mod source;
mod swagger;
mod wsdl;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use junction_model::{Connector, Diagnostic, Diagnostics, Severity, connector_name};

use crate::extensions::FileKind;
use crate::sink::Sink;
use crate::source::{SourceError, Syntax};

/// The result of loading one connector.
#[derive(Debug)]
pub struct Loaded {
    /// The folder or file that was loaded.
    pub source: PathBuf,
    /// The connector, or `None` when any diagnostic is an error.
    pub connector: Option<Connector>,
    /// Every finding, errors and warnings, in file order.
    pub diagnostics: Diagnostics,
}

/// The custom code file of a Power Platform package (C#; Junction cannot run it).
pub const PACKAGE_SCRIPT: &str = "script.csx";

/// The definition file name of a Power Platform package.
pub const PACKAGE_DEFINITION: &str = "apiDefinition.swagger.json";
/// The properties file name of a Power Platform package.
pub const PACKAGE_PROPERTIES: &str = "apiProperties.json";

/// Definition file names a plain connector folder may hold, in order of preference.
const FOLDER_DEFINITIONS: [&str; 6] = [
    "openapi.json",
    "openapi.yaml",
    "openapi.yml",
    "swagger.json",
    "swagger.yaml",
    "swagger.yml",
];

/// Loads a connector folder (Power Platform package: `apiDefinition.swagger.json` [+
/// `apiProperties.json`]; a folder holding one `openapi.{json,yaml,yml}` /
/// `swagger.{json,yaml,yml}`; or a folder holding a WSDL 1.1, under any name, with the
/// files it imports) or a single definition file (`.json`/`.yaml`/`.yml`, or a WSDL).
/// `connector` is `None` when any diagnostic is an error.
pub fn load(path: &Path) -> Loaded {
    let display = path.display().to_string();
    let fail = |d: Diagnostic| Loaded {
        source: path.to_path_buf(),
        connector: None,
        diagnostics: Diagnostics(vec![d]),
    };
    let metadata = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return fail(SourceError::Io(e).into_diagnostic(&display)),
    };
    let (name, definition, properties) = if metadata.is_dir() {
        let folder = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .or_else(|| {
                fs::canonicalize(path)
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            })
            .unwrap_or_default();
        let Some(def) = folder_definition(path) else {
            return match wsdl::folder_wsdl(path) {
                Ok(Some(wsdl)) => {
                    let mut loaded = wsdl::load(&folder, &wsdl);
                    loaded.source = path.to_path_buf();
                    loaded
                }
                Ok(None) => fail(Diagnostic::new(
                    Severity::Error,
                    "no-definition",
                    display,
                    "",
                    format!(
                        "no {PACKAGE_DEFINITION}, openapi.{{json,yaml,yml}}, \
                         swagger.{{json,yaml,yml}} or WSDL in this folder"
                    ),
                )),
                Err(diagnostic) => fail(diagnostic),
            };
        };
        let props = find_file(path, PACKAGE_PROPERTIES);
        (folder, def, props)
    } else {
        let stem = path
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if wsdl::is_wsdl_file(path) {
            return wsdl::load(&stem, path);
        }
        (stem, path.to_path_buf(), None)
    };
    let script = if metadata.is_dir() {
        find_file(path, PACKAGE_SCRIPT).map(|p| p.display().to_string())
    } else {
        None
    };

    let def_file = definition.display().to_string();
    let def_bytes = match fs::read(&definition) {
        Ok(b) => b,
        Err(e) => return fail(SourceError::Io(e).into_diagnostic(&def_file)),
    };
    let props_file = properties.as_ref().map(|p| p.display().to_string());
    let props_bytes = match &properties {
        Some(p) => match fs::read(p) {
            Ok(b) => Some(b),
            Err(e) => {
                return fail(
                    SourceError::Io(e).into_diagnostic(props_file.as_deref().unwrap_or_default()),
                );
            }
        },
        None => None,
    };

    let mut loaded = load_bytes(
        &name,
        &def_file,
        &def_bytes,
        props_file.as_deref().zip(props_bytes.as_deref()),
        script.as_deref(),
    );
    loaded.source = path.to_path_buf();
    loaded
}

/// Same as [`load`] but from text already in memory. `name` is the folder name before
/// normalization; `definition_file` names the definition in messages and decides its syntax
/// (`.yaml` / `.yml` → YAML, `.wsdl` → a WSDL without imports, anything else JSON);
/// `properties` is the file name and text of `apiProperties.json`, if any.
pub fn load_from_str(
    name: &str,
    definition_file: &str,
    definition: &str,
    properties: Option<(&str, &str)>,
) -> Loaded {
    if definition_file.ends_with(".wsdl") {
        return wsdl::load_text(name, definition_file, definition);
    }
    load_texts(
        name,
        definition_file,
        Ok(definition),
        properties.map(|(f, t)| (f, Ok(t))),
        None,
    )
}

fn load_bytes(
    name: &str,
    definition_file: &str,
    definition: &[u8],
    properties: Option<(&str, &[u8])>,
    script: Option<&str>,
) -> Loaded {
    load_texts(
        name,
        definition_file,
        source::decode(definition),
        properties.map(|(f, b)| (f, source::decode(b))),
        script,
    )
}

fn load_texts(
    name: &str,
    definition_file: &str,
    definition: Result<&str, SourceError>,
    properties: Option<(&str, Result<&str, SourceError>)>,
    script: Option<&str>,
) -> Loaded {
    let name = connector_name(name);
    let mut diagnostics = Vec::new();

    // apiProperties.json first: the definition reader needs its policies. Its diagnostics
    // are finished once the definition is known, for the checks that need operations.
    let mut props_model = None;
    let mut props_open = None;
    if let Some((file, text)) = properties {
        let mut sink = Sink::new(file);
        match text.and_then(|t| source::parse(t, Syntax::Json, &mut sink)) {
            Ok(src) => {
                props_model = properties::build(&src.value, &mut sink);
                extensions::check(&src.value, FileKind::Properties, &mut sink);
                props_open = Some((sink, src));
            }
            Err(e) => {
                let mut d = finish(sink, None);
                d.push(e.into_diagnostic(file));
                diagnostics.extend(d);
            }
        }
    }
    if let Some(script) = script {
        let props = props_model.get_or_insert_with(Default::default);
        if props.custom_code.is_none() {
            props.custom_code = Some(junction_model::CustomCode {
                operations: Vec::new(),
                declared_by: script
                    .rsplit(['/', '\\'])
                    .next()
                    .unwrap_or(script)
                    .to_owned(),
                pointer: String::new(),
            });
        }
    }
    let policies = match (&props_model, &mut props_open) {
        (Some(props), Some((sink, _))) => policies::compile(props, sink),
        _ => Vec::new(),
    };

    let mut sink = Sink::new(definition_file);
    let syntax = Syntax::of_file(definition_file);
    let connector = match definition.and_then(|t| source::parse(t, syntax, &mut sink)) {
        Ok(src) => {
            let connector =
                document::build(&src.value, &name, definition_file, props_model, &mut sink);
            extensions::check(&src.value, FileKind::Definition, &mut sink);
            let d = finish(sink, Some((&src.text, src.syntax)));
            let c = connector.filter(|_| !d.iter().any(Diagnostic::is_error));
            if let Some((props_sink, _)) = &mut props_open {
                policies::check_operations(&policies, c.as_ref(), props_sink);
            }
            if let Some(props) = props_open.take() {
                diagnostics.extend(finish_open(props));
            }
            diagnostics.extend(d);
            c
        }
        Err(e) => {
            let mut d = finish(sink, None);
            d.push(e.into_diagnostic(definition_file));
            if let Some(props) = props_open.take() {
                diagnostics.extend(finish_open(props));
            }
            diagnostics.extend(d);
            None
        }
    };

    let connector = connector.filter(|_| !diagnostics.iter().any(Diagnostic::is_error));
    Loaded {
        source: PathBuf::from(definition_file),
        connector,
        diagnostics: Diagnostics(diagnostics),
    }
}

fn finish_open((sink, src): (Sink, source::Source<'_>)) -> Vec<Diagnostic> {
    finish(sink, Some((&src.text, src.syntax)))
}

/// Drops repeated diagnostics (a shared parameter or response is read once per use), gives
/// the rest their line and column in one scan of the file's text and puts them in file order.
/// A diagnostic about a character inside a JSON string gets that character's column.
fn finish(sink: Sink, text: Option<(&str, Syntax)>) -> Vec<Diagnostic> {
    let mut seen = HashSet::new();
    let (mut diags, offsets): (Vec<Diagnostic>, Vec<Option<usize>>) = sink
        .into_parts()
        .into_iter()
        .filter(|(d, _)| {
            seen.insert((
                d.code,
                d.pointer.clone(),
                d.message.clone(),
                d.line,
                d.column,
            ))
        })
        .unzip();
    if let Some((text, syntax)) = text {
        let wanted: Vec<usize> = diags
            .iter()
            .enumerate()
            .filter(|(_, d)| d.line.is_none())
            .map(|(i, _)| i)
            .collect();
        if !wanted.is_empty() {
            let pointers: Vec<&str> = wanted
                .iter()
                .filter_map(|&i| diags.get(i).map(|d| d.pointer.as_str()))
                .collect();
            let positions = match syntax {
                Syntax::Json => locate::locate(text, &pointers),
                Syntax::Yaml => locate::locate_yaml(text, &pointers),
            };
            for (i, pos) in wanted.into_iter().zip(positions) {
                if let (Some(d), Some((line, column))) = (diags.get_mut(i), pos) {
                    d.line = Some(line);
                    d.column = Some(column);
                    if let (Some(Some(offset)), Syntax::Json) = (offsets.get(i), syntax) {
                        d.column =
                            locate::char_in_string(text, line, column, *offset).or(Some(column));
                    }
                }
            }
        }
        diags.sort_by_key(|d| (d.line.unwrap_or(u32::MAX), d.column.unwrap_or(u32::MAX)));
    }
    diags
}

/// The names of the files in `dir`.
fn file_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The file of `dir` called `want`, in any case (packages are often made on Windows).
fn find_file(dir: &Path, want: &str) -> Option<PathBuf> {
    let names = file_names(dir);
    names
        .iter()
        .find(|n| n.as_str() == want)
        .or_else(|| names.iter().find(|n| n.eq_ignore_ascii_case(want)))
        .map(|n| dir.join(n))
}

/// The definition file of a connector folder, if it is one.
fn folder_definition(dir: &Path) -> Option<PathBuf> {
    let names = file_names(dir);
    std::iter::once(PACKAGE_DEFINITION)
        .chain(FOLDER_DEFINITIONS)
        .find_map(|want| {
            names
                .iter()
                .find(|n| n.as_str() == want)
                .or_else(|| names.iter().find(|n| n.eq_ignore_ascii_case(want)))
        })
        .map(|found| dir.join(found))
}

/// Whether `dir` is a connector folder: it has a definition file or a WSDL (an invalid
/// mix of WSDLs counts: loading it explains why).
fn is_connector_folder(dir: &Path) -> bool {
    folder_definition(dir).is_some() || !matches!(wsdl::folder_wsdl(dir), Ok(None))
}

/// Whether a loose file in a tree looks like a definition: `openapi*` / `swagger*` /
/// `*.openapi` / `*.swagger` with a `.json`, `.yaml` or `.yml` extension.
fn is_definition_file(path: &Path) -> bool {
    let Some(name) = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
    else {
        return false;
    };
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    matches!(ext, "json" | "yaml" | "yml")
        && (stem.starts_with("openapi")
            || stem.starts_with("swagger")
            || stem.ends_with(".openapi")
            || stem.ends_with(".swagger"))
}

/// Every connector folder / definition file under `root` (recursively; a folder that is a
/// package, or holds a WSDL, is not descended further), sorted by path. If `root` itself
/// is a package or a file, just `[root]`.
///
/// In a folder that is not a package, loose files named like definitions (`openapi*.json`,
/// `*.swagger.yaml` …) count as connectors; other files are ignored. Hidden folders,
/// `target` and `node_modules` are not searched, and a folder reached twice through links is
/// searched once.
pub fn discover(root: &Path) -> Vec<PathBuf> {
    if !root.is_dir() || is_connector_folder(root) {
        return vec![root.to_path_buf()];
    }
    let mut out = Vec::new();
    let mut visited = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(canonical) = fs::canonicalize(&dir)
            && !visited.insert(canonical)
        {
            continue;
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name.starts_with('.') || name == "target" || name == "node_modules" {
                    continue;
                }
                if is_connector_folder(&path) {
                    out.push(path);
                } else {
                    stack.push(path);
                }
            } else if is_definition_file(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests;
