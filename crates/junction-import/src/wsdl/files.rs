//! The files of one WSDL: the WSDL itself and every WSDL and XML Schema it imports or
//! includes, read from disk by relative path (never from the network), each read once.
//!
//! XML with a DOCTYPE is refused before anything else is read from it: no entity is ever
//! expanded and no external entity is fetched. A `schemaLocation` or `location` with a URL
//! scheme is an error naming the file to place beside the WSDL, except for the namespaces
//! every SOAP toolkit knows (SOAP encoding, `xml.xsd`), which need no file.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use junction_model::{Diagnostic, Severity};
use roxmltree::{Document, Node, ParsingOptions};

/// The WSDL 1.1 namespace.
pub(crate) const WSDL_NS: &str = "http://schemas.xmlsoap.org/wsdl/";
/// The WSDL 2.0 namespace (not supported).
pub(crate) const WSDL20_NS: &str = "http://www.w3.org/ns/wsdl";
/// The XML Schema namespace.
pub(crate) const XSD_NS: &str = "http://www.w3.org/2001/XMLSchema";

/// Namespaces whose schemas are built in: an import of them needs no file.
pub(crate) const BUILT_IN_NAMESPACES: [&str; 5] = [
    "http://schemas.xmlsoap.org/soap/encoding/",
    "http://www.w3.org/2003/05/soap-encoding",
    "http://www.w3.org/XML/1998/namespace",
    "http://schemas.xmlsoap.org/wsdl/",
    XSD_NS,
];

/// The most nodes one file may have (a WSDL with its schemas rarely has 100 000).
const NODES_LIMIT: u32 = 2_000_000;

/// One file's text.
#[derive(Debug)]
pub(crate) struct FileText {
    /// As named in messages.
    pub display: String,
    pub path: PathBuf,
    pub text: String,
}

/// What a file brings in: its kind and the files it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// `wsdl:import location`.
    Wsdl,
    /// `xsd:import schemaLocation`.
    Import,
    /// `xsd:include schemaLocation` (also `xsd:redefine`).
    Include,
}

/// A followed reference from one file to another.
#[derive(Debug, Clone)]
pub(crate) struct Reference {
    pub from: usize,
    pub to: usize,
    pub link: Link,
    /// The target namespace of the schema that holds an `xsd:include`: an included schema
    /// without one takes it (a "chameleon" include).
    pub namespace: Option<String>,
}

/// The files of one WSDL, their texts in the order they were reached (the WSDL first).
#[derive(Debug, Default)]
pub(crate) struct Files {
    pub texts: Vec<FileText>,
    /// Every followed reference.
    pub links: Vec<Reference>,
}

/// Collects diagnostics with their file, position and pointer.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub(crate) fn push(
        &mut self,
        severity: Severity,
        code: &'static str,
        file: &str,
        at: Option<(u32, u32)>,
        pointer: String,
        message: impl Into<String>,
    ) {
        let mut d = Diagnostic::new(severity, code, file, pointer, message);
        if let Some((line, column)) = at {
            d = d.at(line, column);
        }
        self.diagnostics.push(d);
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// The options every XML text is parsed with: no DTD, a bounded number of nodes.
pub(crate) fn options<'i>() -> ParsingOptions<'i> {
    ParsingOptions {
        allow_dtd: false,
        nodes_limit: NODES_LIMIT,
        ..ParsingOptions::default()
    }
}

/// Line and column (1-based) of byte `offset` in `text`.
pub(crate) fn position(text: &str, offset: usize) -> (u32, u32) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    )
}

/// Line and column of `node` in its document.
pub(crate) fn node_position(node: Node<'_, '_>) -> (u32, u32) {
    let pos = node.document().text_pos_at(node.range().start);
    (pos.row, pos.col)
}

/// Why a text is not usable XML, with the position: a DOCTYPE (refused outright), or a
/// syntax error.
pub(crate) fn parse_error(text: &str, error: &roxmltree::Error) -> (String, (u32, u32)) {
    match error {
        roxmltree::Error::DtdDetected => {
            let at = text.find("<!DOCTYPE").unwrap_or(0);
            (
                "the document has a DOCTYPE; DTDs are refused (no entity is expanded and no \
                 external entity fetched): remove the DOCTYPE"
                    .to_owned(),
                position(text, at),
            )
        }
        roxmltree::Error::NodesLimitReached => (
            format!("the document has more than {NODES_LIMIT} XML nodes"),
            (1, 1),
        ),
        other => {
            let pos = other.pos();
            (format!("invalid XML: {other}"), (pos.row, pos.col))
        }
    }
}

/// Reads a file as text: UTF-8, or UTF-16 with a byte order mark.
pub(crate) fn read_text(path: &Path) -> Result<String, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read file: {e}"))?;
    decode(&bytes)
}

/// Text from bytes: UTF-8 (a BOM dropped), or UTF-16 with a byte order mark.
pub(crate) fn decode(bytes: &[u8]) -> Result<String, String> {
    let utf16 = |le: bool| {
        let units: Vec<u16> = bytes
            .get(2..)
            .unwrap_or_default()
            .chunks_exact(2)
            .map(|c| match c {
                [a, b] if le => u16::from_le_bytes([*a, *b]),
                [a, b] => u16::from_be_bytes([*a, *b]),
                _ => 0,
            })
            .collect();
        String::from_utf16(&units).map_err(|_| "the file is not valid UTF-16".to_owned())
    };
    if bytes.starts_with(&[0xFF, 0xFE]) {
        return utf16(true);
    }
    if bytes.starts_with(&[0xFE, 0xFF]) {
        return utf16(false);
    }
    let bytes = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        let (line, column) = position(
            &String::from_utf8_lossy(
                bytes
                    .get(..e.utf8_error().valid_up_to())
                    .unwrap_or_default(),
            ),
            e.utf8_error().valid_up_to(),
        );
        format!("the file is not UTF-8 text (line {line}, column {column})")
    })
}

/// Whether `text` is a WSDL (1.1 or 2.0): its root element is `definitions` or
/// `description` in a WSDL namespace. Cheap: looks at the start of the text only.
pub(crate) fn looks_like_wsdl(text: &str) -> bool {
    let head: String = text.chars().take(8192).collect();
    (head.contains(WSDL_NS) || head.contains(WSDL20_NS))
        && (head.contains("definitions") || head.contains("description"))
}

/// The references of one parsed document, with the node that makes each.
fn references<'a, 'i>(doc: &'a Document<'i>) -> Vec<(Node<'a, 'i>, Link, Option<&'a str>)> {
    let mut out = Vec::new();
    for node in doc.descendants().filter(Node::is_element) {
        let tag = node.tag_name();
        match (tag.namespace(), tag.name()) {
            (Some(WSDL_NS), "import") => out.push((node, Link::Wsdl, node.attribute("location"))),
            (Some(XSD_NS), "import") => {
                out.push((node, Link::Import, node.attribute("schemaLocation")));
            }
            (Some(XSD_NS), "include" | "redefine") => {
                out.push((node, Link::Include, node.attribute("schemaLocation")));
            }
            _ => {}
        }
    }
    out
}

/// Reads `root` and everything it references, recursively. Problems (unreadable or
/// malformed files, remote locations, cycles) go to `report`; the files that could be read
/// are returned.
pub(crate) fn collect(root: &Path, display: &str, report: &mut Report) -> Files {
    let mut files = Files::default();
    let mut index: HashMap<PathBuf, usize> = HashMap::new();
    let text = match read_text(root) {
        Ok(text) => text,
        Err(message) => {
            report.push(Severity::Error, "io", display, None, String::new(), message);
            return files;
        }
    };
    index.insert(canonical(root), 0);
    files.texts.push(FileText {
        display: display.to_owned(),
        path: root.to_path_buf(),
        text,
    });
    // Files still to scan; each is scanned once, in the order reached.
    let mut next = 0;
    while next < files.texts.len() {
        let from = next;
        next += 1;
        let Some(file) = files.texts.get(from) else {
            break;
        };
        let Some(found) = scan(file, report) else {
            continue;
        };
        for Found {
            at,
            pointer,
            link,
            location,
            target,
            namespace,
        } in found
        {
            let key = canonical(&target);
            if let Some(&to) = index.get(&key) {
                if reaches(&files.links, to, from) || to == from {
                    report.push(
                        Severity::Warning,
                        "import-cycle",
                        &files
                            .texts
                            .get(from)
                            .map(|f| f.display.clone())
                            .unwrap_or_default(),
                        Some(at),
                        pointer,
                        format!(
                            "'{location}' leads back to this file (an import cycle); each \
                             file is read once"
                        ),
                    );
                }
                files.links.push(Reference {
                    from,
                    to,
                    link,
                    namespace,
                });
                continue;
            }
            let display = target.display().to_string();
            match read_text(&target) {
                Ok(text) => {
                    let to = files.texts.len();
                    index.insert(key, to);
                    files.links.push(Reference {
                        from,
                        to,
                        link,
                        namespace,
                    });
                    files.texts.push(FileText {
                        display,
                        path: target,
                        text,
                    });
                }
                Err(message) => {
                    let from_display = files
                        .texts
                        .get(from)
                        .map(|f| f.display.clone())
                        .unwrap_or_default();
                    report.push(
                        Severity::Error,
                        "import-missing",
                        &from_display,
                        Some(at),
                        pointer,
                        format!("cannot read '{location}' ({display}): {message}"),
                    );
                }
            }
        }
    }
    files
}

/// Parses one file and lists the local files it references; remote locations and
/// unparsable XML go to `report`. `None` when the file is not XML.
fn scan(file: &FileText, report: &mut Report) -> Option<Vec<Found>> {
    let doc = match Document::parse_with_options(&file.text, options()) {
        Ok(doc) => doc,
        Err(error) => {
            let (message, at) = parse_error(&file.text, &error);
            let code = if matches!(error, roxmltree::Error::DtdDetected) {
                "xml-doctype"
            } else {
                "xml-syntax"
            };
            report.push(
                Severity::Error,
                code,
                &file.display,
                Some(at),
                String::new(),
                message,
            );
            return None;
        }
    };
    let dir = file
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut found = Vec::new();
    for (node, link, location) in references(&doc) {
        let namespace = node.attribute("namespace");
        let Some(location) = location.filter(|l| !l.trim().is_empty()) else {
            // An import without a location names a namespace defined elsewhere (another
            // schema of the WSDL, or a built-in one); an include needs a location.
            if link == Link::Include {
                report.push(
                    Severity::Error,
                    "xsd-include",
                    &file.display,
                    Some(node_position(node)),
                    element_pointer(node),
                    "xsd:include without a schemaLocation",
                );
            }
            continue;
        };
        let location = location.trim();
        if let Some(scheme) = url_scheme(location) {
            if namespace.is_some_and(|ns| BUILT_IN_NAMESPACES.contains(&ns))
                || location.ends_with("www.w3.org/2001/xml.xsd")
            {
                continue;
            }
            let name = location
                .split(['?', '#'])
                .next()
                .unwrap_or(location)
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty())
                .unwrap_or("the document");
            report.push(
                Severity::Error,
                "remote-import",
                &file.display,
                Some(node_position(node)),
                element_pointer(node),
                format!(
                    "'{location}' is a {scheme} location, and Junction never fetches \
                         definitions over the network: save {name} beside this file and \
                         refer to it by relative path"
                ),
            );
            continue;
        }
        let target = dir.join(percent_decoded(location));
        let namespace = node
            .ancestors()
            .find(|n| n.has_tag_name((XSD_NS, "schema")))
            .and_then(|schema| schema.attribute("targetNamespace"))
            .map(str::to_owned);
        found.push(Found {
            at: node_position(node),
            pointer: element_pointer(node),
            link,
            location: location.to_owned(),
            target,
            namespace,
        });
    }
    Some(found)
}

/// A reference found in a file, to follow.
struct Found {
    at: (u32, u32),
    pointer: String,
    link: Link,
    location: String,
    target: PathBuf,
    namespace: Option<String>,
}

/// Whether `from` reaches `to` through `links`.
fn reaches(links: &[Reference], from: usize, to: usize) -> bool {
    let mut seen = vec![from];
    let mut stack = vec![from];
    while let Some(at) = stack.pop() {
        if at == to {
            return true;
        }
        for link in links {
            if link.from == at && !seen.contains(&link.to) {
                seen.push(link.to);
                stack.push(link.to);
            }
        }
    }
    false
}

/// The URL scheme of `location`, when it has one (`http`, `https`, `file` …), not a
/// Windows drive letter.
fn url_scheme(location: &str) -> Option<&str> {
    let (scheme, _) = location.split_once(':')?;
    (scheme.len() > 1
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

/// A relative URI reference as a path: `%20` and the like decoded.
fn percent_decoded(location: &str) -> String {
    let bytes = location.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let Some(hex) = location.get(i + 1..i + 3)
            && let Ok(value) = u8::from_str_radix(hex, 16)
        {
            out.push(value);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// A readable pointer to an element: `/definitions/binding[@name='X']/operation[@name='Y']`.
pub(crate) fn element_pointer(node: Node<'_, '_>) -> String {
    let mut parts: Vec<String> = node
        .ancestors()
        .filter(Node::is_element)
        .map(|n| match n.attribute("name") {
            Some(name) => format!("{}[@name='{name}']", n.tag_name().name()),
            None => n.tag_name().name().to_owned(),
        })
        .collect();
    parts.reverse();
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_with_a_scheme_are_remote() {
        assert_eq!(url_scheme("http://x/y.xsd"), Some("http"));
        assert_eq!(url_scheme("file:///x.xsd"), Some("file"));
        assert_eq!(url_scheme("types.xsd"), None);
        assert_eq!(url_scheme("C:\\x.xsd"), None);
        assert_eq!(url_scheme("../a b.xsd"), None);
        assert_eq!(percent_decoded("a%20b.xsd"), "a b.xsd");
    }

    #[test]
    fn positions_are_one_based() {
        assert_eq!(position("ab\ncd", 4), (2, 2));
        assert_eq!(position("x", 0), (1, 1));
    }

    #[test]
    fn utf16_with_a_bom_is_read() {
        let text = "<a/>";
        let mut bytes = vec![0xFF, 0xFE];
        for unit in text.encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        assert_eq!(decode(&bytes).unwrap_or_default(), text);
    }
}
