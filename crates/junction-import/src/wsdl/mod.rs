//! WSDL 1.1 into a connector whose operations take and give JSON (`docs/soap.md`).
//!
//! The stages: [`files`] reads the WSDL and every file it imports or includes (local files
//! only, no DTDs), [`xsd`] indexes their schemas and converts the types the messages use
//! into the model's XML types, [`binding`] turns each operation of each SOAP port into an
//! operation, and [`json`] derives the JSON Schemas of its input and output. Every problem
//! is a diagnostic with file, line and column; the connector loads unless one is an error.

mod binding;
mod files;
mod json;
mod xsd;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use junction_model::soap::SoapService;
use junction_model::{
    ApiKeyLocation, Connector, Diagnostic, Diagnostics, SecurityRequirement, SecurityScheme,
    Severity, SourceFormat, Upstream, connector_name,
};
use roxmltree::Document;
use serde_json::Map;

use crate::Loaded;
use files::{Report, WSDL_NS, WSDL20_NS};

/// Whether the file at `path` is a WSDL (read only as far as its start).
pub(crate) fn is_wsdl_file(path: &Path) -> bool {
    use std::io::Read;
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = Vec::with_capacity(8192);
    if file.take(8192).read_to_end(&mut head).is_err() {
        return false;
    }
    // A UTF-16 file's start, read as bytes, has NULs between the ASCII letters.
    let head: Vec<u8> = head.into_iter().filter(|&b| b != 0).collect();
    files::looks_like_wsdl(&String::from_utf8_lossy(&head))
}

/// The WSDL of a connector folder: the one WSDL file in it that no other WSDL file imports.
/// `Ok(None)` when the folder holds no WSDL; an error when it holds several unrelated ones.
pub(crate) fn folder_wsdl(dir: &Path) -> Result<Option<PathBuf>, Diagnostic> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && is_wsdl_file(p))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    if candidates.len() <= 1 {
        return Ok(candidates.pop());
    }
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let mut imported = Vec::new();
    for candidate in &candidates {
        let files = files::collect(candidate, "", &mut Report::default());
        imported.extend(files.texts.iter().skip(1).map(|f| canonical(&f.path)));
    }
    let roots: Vec<&PathBuf> = candidates
        .iter()
        .filter(|c| !imported.contains(&canonical(c)))
        .collect();
    match roots.as_slice() {
        [root] => Ok(Some((*root).clone())),
        _ => {
            let names: Vec<String> = candidates
                .iter()
                .filter_map(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect();
            Err(Diagnostic::new(
                Severity::Error,
                "wsdl-several",
                dir.display().to_string(),
                "",
                format!(
                    "this folder holds several WSDLs and no single one imports the others ({}); \
                     put each service in a folder of its own",
                    names.join(", ")
                ),
            ))
        }
    }
}

/// Loads the WSDL at `path` (and what it imports) as the connector `name`.
pub(crate) fn load(name: &str, path: &Path) -> Loaded {
    let display = path.display().to_string();
    let mut report = Report::default();
    let files = files::collect(path, &display, &mut report);
    finish(name, path, &files, report)
}

/// Loads a WSDL held in memory (an embedded one, without imports) as the connector `name`;
/// `file` names it in messages.
pub(crate) fn load_text(name: &str, file: &str, text: &str) -> Loaded {
    let files = files::Files {
        texts: vec![files::FileText {
            display: file.to_owned(),
            path: PathBuf::from(file),
            text: text.to_owned(),
        }],
        links: Vec::new(),
    };
    finish(name, Path::new(file), &files, Report::default())
}

/// The connector built from `files` (unless reading them failed), with every diagnostic in
/// the order the files were read, then by position.
fn finish(name: &str, path: &Path, files: &files::Files, mut report: Report) -> Loaded {
    let display = files
        .texts
        .first()
        .map(|f| f.display.clone())
        .unwrap_or_default();
    let connector = if report.has_errors() {
        None
    } else {
        build(name, &display, files, &mut report)
    };
    let mut diagnostics = report.diagnostics;
    let order = |file: &str| files.texts.iter().position(|f| f.display == file);
    diagnostics.sort_by_key(|d| (order(&d.file), d.line, d.column));
    let diagnostics = Diagnostics(diagnostics);
    Loaded {
        source: path.to_path_buf(),
        connector: connector.filter(|_| !diagnostics.has_errors()),
        diagnostics,
    }
}

fn build(
    name: &str,
    display: &str,
    files: &files::Files,
    report: &mut Report,
) -> Option<Connector> {
    let docs: Vec<Document<'_>> = files
        .texts
        .iter()
        .filter_map(|f| Document::parse_with_options(&f.text, files::options()).ok())
        .collect();
    if docs.len() != files.texts.len() {
        return None;
    }
    let root = docs.first()?.root_element();
    if !root.has_tag_name((WSDL_NS, "definitions")) {
        let message = if root.tag_name().namespace() == Some(WSDL20_NS) {
            "this is a WSDL 2.0 description; Junction reads WSDL 1.1 (wsdl:definitions)".to_owned()
        } else {
            format!(
                "the root element is '{}', not a WSDL 1.1 wsdl:definitions",
                root.tag_name().name()
            )
        };
        report.push(
            Severity::Error,
            "wsdl-root",
            display,
            Some(files::node_position(root)),
            String::new(),
            message,
        );
        return None;
    }
    let schemas = xsd::Schemas::new(&docs, files, report);
    let mut types = xsd::Builder::new(&schemas);
    let service = binding::read(&docs, files, &mut types, report);
    if service.operations.is_empty() && !report.has_errors() {
        report.push(
            Severity::Error,
            "wsdl-no-operation",
            display,
            Some(files::node_position(root)),
            String::new(),
            "the WSDL has no operation on a SOAP port (SOAP 1.1 or 1.2 address) to serve",
        );
        return None;
    }
    let types = types.types;
    let mut schemas = json::JsonSchemas::new(&types);
    let upstream = service
        .operations
        .first()
        .map(|op| upstream(&op.soap.address))
        .unwrap_or_else(|| upstream(""));
    if upstream.host.is_empty() {
        report.push(
            Severity::Warning,
            "soap-address",
            display,
            Some(files::node_position(root)),
            String::new(),
            "the SOAP address is not an absolute http(s) URL; set `backend` in \
             [connector.NAME] to say where the service is",
        );
    }
    let operations = service
        .operations
        .into_iter()
        .map(|op| binding::operation(op, &mut schemas))
        .collect();
    let definitions = schemas.definitions;
    Some(Connector {
        name: connector_name(name),
        title: service.title,
        description: service.description,
        version: None,
        format: SourceFormat::Wsdl11,
        upstream,
        operations,
        security_schemes: security_schemes(),
        security: security(),
        definitions,
        properties: None,
        extensions: Map::new(),
        soap: Some(SoapService { types }),
        source: display.to_owned(),
    })
}

/// The ways a SOAP connection may authenticate, in the order they are tried: WS-Security
/// UsernameToken (`username`, `password` and `ws_security`), HTTP basic (`username` and
/// `password`), an API key header (`api_key`).
fn security_schemes() -> IndexMap<String, SecurityScheme> {
    IndexMap::from([
        ("usernameToken".to_owned(), SecurityScheme::WsSecurity),
        ("basic".to_owned(), SecurityScheme::Basic),
        (
            "apiKey".to_owned(),
            SecurityScheme::ApiKey {
                name: "X-API-Key".to_owned(),
                location: ApiKeyLocation::Header,
            },
        ),
    ])
}

/// Each scheme in turn, then none: a WSDL rarely says how its service authenticates, so a
/// connection without credentials is no mistake.
fn security() -> Vec<SecurityRequirement> {
    let mut requirements: Vec<SecurityRequirement> = security_schemes()
        .into_keys()
        .map(|name| SecurityRequirement::from([(name, Vec::new())]))
        .collect();
    requirements.push(SecurityRequirement::new());
    requirements
}

/// The upstream of an address: scheme and host; the path stays with each operation.
fn upstream(address: &str) -> Upstream {
    let (scheme, rest) = match address.split_once("://") {
        Some((scheme, rest))
            if matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") =>
        {
            (scheme.to_ascii_lowercase(), rest)
        }
        _ => {
            return Upstream {
                scheme: "http".to_owned(),
                host: String::new(),
                base_path: "/".to_owned(),
            };
        }
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    Upstream {
        scheme,
        host: host.to_owned(),
        base_path: "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_host_and_path() {
        let up = upstream("http://localhost:8000/soap/Service.asmx?x=1");
        assert_eq!(
            (up.scheme.as_str(), up.host.as_str()),
            ("http", "localhost:8000")
        );
        assert!(upstream("REPLACE_WITH_ACTUAL_URL").host.is_empty());
    }
}
