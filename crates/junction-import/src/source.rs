//! Source text → JSON value: lenient about what editors leave behind, exact about where.
//!
//! JSON files may start with a UTF-8 byte order mark and may contain `//` and `/* */`
//! comments; both are reported as warnings and ignored. Comments are blanked with spaces
//! (newlines kept) so that every later line:column still matches the file on disk. A file is
//! first parsed strictly — comments are only looked for when that fails, so well-formed files
//! pay for one parse. YAML (`.yaml`, `.yml`) is read with serde-saphyr.

use std::borrow::Cow;

use junction_model::{Diagnostic, Severity};
use serde_json::Value;

use crate::sink::Sink;

/// Why a source file could not be turned into a JSON value. Every variant is fatal for the
/// connector; [`SourceError::into_diagnostic`] is the one place that reports it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    #[error("cannot read file: {0}")]
    Io(#[from] std::io::Error),
    #[error("file is UTF-16 encoded; save it as UTF-8")]
    Utf16,
    #[error("file is not UTF-8 text")]
    NotUtf8 { line: u32, column: u32 },
    #[error("invalid JSON: {message}")]
    Json {
        message: String,
        line: u32,
        column: u32,
    },
    #[error("invalid YAML: {message}")]
    Yaml {
        message: String,
        position: Option<(u32, u32)>,
    },
}

impl SourceError {
    pub(crate) fn code(&self) -> &'static str {
        match self {
            SourceError::Io(_) => "io",
            SourceError::Utf16 | SourceError::NotUtf8 { .. } => "encoding",
            SourceError::Json { .. } => "json-syntax",
            SourceError::Yaml { .. } => "yaml-syntax",
        }
    }

    fn position(&self) -> Option<(u32, u32)> {
        match self {
            SourceError::Io(_) | SourceError::Utf16 => None,
            SourceError::NotUtf8 { line, column } | SourceError::Json { line, column, .. } => {
                Some((*line, *column))
            }
            SourceError::Yaml { position, .. } => *position,
        }
    }

    pub(crate) fn into_diagnostic(self, file: &str) -> Diagnostic {
        let d = Diagnostic::new(Severity::Error, self.code(), file, "", self.to_string());
        match self.position() {
            Some((line, column)) => d.at(line, column),
            None => d,
        }
    }
}

/// The syntax a source file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    Json,
    Yaml,
}

impl Syntax {
    /// YAML for `.yaml` / `.yml` files, JSON for everything else.
    pub(crate) fn of_file(file: &str) -> Syntax {
        let lower = file.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Syntax::Yaml
        } else {
            Syntax::Json
        }
    }
}

/// A parsed source file and the text its positions refer to.
#[derive(Debug)]
pub(crate) struct Source<'t> {
    /// The text without byte order mark and with comments blanked.
    pub(crate) text: Cow<'t, str>,
    pub(crate) value: Value,
    pub(crate) syntax: Syntax,
}

/// Turns raw bytes into text, refusing UTF-16 and invalid UTF-8 with a position.
pub(crate) fn decode(bytes: &[u8]) -> Result<&str, SourceError> {
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(SourceError::Utf16);
    }
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
        // The valid prefix is UTF-8 by definition.
        let prefix = String::from_utf8_lossy(valid);
        let (line, column) = line_col_at_end(&prefix);
        SourceError::NotUtf8 { line, column }
    })
}

/// Parses `text` as `syntax`, pushing warnings (byte order mark, comments) to `sink`.
pub(crate) fn parse<'t>(
    text: &'t str,
    syntax: Syntax,
    sink: &mut Sink,
) -> Result<Source<'t>, SourceError> {
    let text = match text.strip_prefix('\u{feff}') {
        Some(rest) => {
            sink.push(
                Diagnostic::new(
                    Severity::Warning,
                    "bom",
                    sink.file(),
                    "",
                    "file starts with a UTF-8 byte order mark; ignored",
                )
                .at(1, 1),
            );
            rest
        }
        None => text,
    };
    match syntax {
        Syntax::Json => parse_json(text, sink),
        Syntax::Yaml => parse_yaml(text).map(|value| Source {
            text: Cow::Borrowed(text),
            value,
            syntax,
        }),
    }
}

fn parse_json<'t>(text: &'t str, sink: &mut Sink) -> Result<Source<'t>, SourceError> {
    let strict_error = match serde_json::from_str::<Value>(text) {
        Ok(value) => {
            return Ok(Source {
                text: Cow::Borrowed(text),
                value,
                syntax: Syntax::Json,
            });
        }
        Err(e) => e,
    };
    let blanked = match blank_comments(text) {
        Blanked::None => return Err(json_error(text, &strict_error)),
        Blanked::Unterminated { line, column } => {
            return Err(SourceError::Json {
                message: "unterminated /* comment".into(),
                line,
                column,
            });
        }
        Blanked::Some { text, comments } => {
            for (line, column) in comments {
                sink.push(
                    Diagnostic::new(
                        Severity::Warning,
                        "json-comment",
                        sink.file(),
                        "",
                        "comments are not JSON; ignored",
                    )
                    .at(line, column),
                );
            }
            text
        }
    };
    match serde_json::from_str::<Value>(&blanked) {
        Ok(value) => Ok(Source {
            text: Cow::Owned(blanked),
            value,
            syntax: Syntax::Json,
        }),
        Err(e) => Err(json_error(&blanked, &e)),
    }
}

/// serde_json's message without its ` at line L column C` tail, and the position with the
/// column counted in characters rather than bytes.
fn json_error(text: &str, e: &serde_json::Error) -> SourceError {
    let full = e.to_string();
    let message = match full.rfind(" at line ") {
        Some(i) => full.get(..i).unwrap_or(&full).to_owned(),
        None => full,
    };
    let line = e.line();
    let column = char_column(text, line, e.column());
    SourceError::Json {
        message,
        line: clamp(line),
        column: clamp(column),
    }
}

/// Converts a 1-based byte column on 1-based `line` into a 1-based character column.
fn char_column(text: &str, line: usize, byte_column: usize) -> usize {
    let Some(line_text) = text.split('\n').nth(line.saturating_sub(1)) else {
        return byte_column;
    };
    let mut end = byte_column.min(line_text.len());
    while end > 0 && !line_text.is_char_boundary(end) {
        end -= 1;
    }
    let chars = line_text
        .get(..end)
        .map_or(byte_column, |s| s.chars().count());
    chars.max(1)
}

fn clamp(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// 1-based line and column just past the end of `text`.
fn line_col_at_end(text: &str) -> (u32, u32) {
    let line = text.bytes().filter(|&b| b == b'\n').count() + 1;
    let last = text.rsplit('\n').next().unwrap_or_default();
    (clamp(line), clamp(last.chars().count() + 1))
}

enum Blanked {
    /// No comment outside strings.
    None,
    /// A `/*` that never closes, at this position.
    Unterminated { line: u32, column: u32 },
    /// The text with every comment replaced by spaces, and where each comment started.
    Some {
        text: String,
        comments: Vec<(u32, u32)>,
    },
}

/// Replaces `//…` and `/*…*/` outside strings with spaces, keeping newlines.
fn blank_comments(text: &str) -> Blanked {
    let bytes = text.as_bytes();
    let mut out: Option<Vec<u8>> = None;
    let mut comments = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    let mut line: u32 = 1;
    let mut line_start = 0;
    while let Some(&b) = bytes.get(i) {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            } else if b == b'\n' {
                // An unterminated string; serde_json will say so.
                in_string = false;
                line += 1;
                line_start = i + 1;
            }
            i += 1;
            continue;
        }
        match (b, bytes.get(i + 1)) {
            (b'"', _) => in_string = true,
            (b'\n', _) => {
                line += 1;
                line_start = i + 1;
            }
            (b'/', Some(b'/')) | (b'/', Some(b'*')) => {
                let column = column_of(text, line_start, i);
                let block = bytes.get(i + 1) == Some(&b'*');
                let end = if block {
                    match find(bytes, i + 2, b"*/") {
                        Some(e) => e + 2,
                        None => return Blanked::Unterminated { line, column },
                    }
                } else {
                    find(bytes, i + 2, b"\n").unwrap_or(bytes.len())
                };
                comments.push((line, column));
                let buf = out.get_or_insert_with(|| bytes.to_vec());
                for j in i..end {
                    if let Some(c) = buf.get_mut(j) {
                        if *c == b'\n' {
                            line += 1;
                            line_start = j + 1;
                        } else if *c != b'\r' {
                            *c = b' ';
                        }
                    }
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    match out {
        None => Blanked::None,
        // Only whole comments (ASCII delimiters and everything between) were replaced by
        // spaces, so the text stays UTF-8; be defensive anyway.
        Some(buf) => Blanked::Some {
            text: String::from_utf8(buf)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            comments,
        },
    }
}

fn column_of(text: &str, line_start: usize, at: usize) -> u32 {
    clamp(
        text.get(line_start..at)
            .map_or(1, |s| s.chars().count() + 1),
    )
}

fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn parse_yaml(text: &str) -> Result<Value, SourceError> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins,
        with_snippet: false,
    };
    serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| {
        let position = e
            .location()
            .map(|l| (clamp_u64(l.line()), clamp_u64(l.column())))
            .filter(|&(l, c)| l > 0 && c > 0);
        SourceError::Yaml {
            message: yaml_message(&e.to_string()),
            position,
        }
    })
}

fn clamp_u64(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// serde-saphyr says `error: line 3 column 3: did not find expected '-'`; keep the message
/// alone, on one line.
fn yaml_message(full: &str) -> String {
    let first = full.lines().next().unwrap_or_default();
    let mut s = first.strip_prefix("error: ").unwrap_or(first);
    if let Some(rest) = s.strip_prefix("line ")
        && let Some(i) = rest.find(": ")
        && rest.get(..i).is_some_and(|p| p.contains(" column "))
    {
        s = rest.get(i + 2..).unwrap_or(s);
    }
    // … or `did not find expected '-' at line 3, column 3`.
    if let Some(i) = s.rfind(" at line ")
        && s.get(i..).is_some_and(|tail| tail.contains(", column "))
    {
        s = s.get(..i).unwrap_or(s);
    }
    s.trim().to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn parse_ok(text: &str) -> (Value, Vec<Diagnostic>) {
        let mut sink = Sink::new("f.json");
        let v = parse(text, Syntax::Json, &mut sink).unwrap().value;
        (v, sink.into_diagnostics())
    }

    #[test]
    fn strips_bom_with_warning() {
        let (v, d) = parse_ok("\u{feff}{\"a\": 1}");
        assert_eq!(v, serde_json::json!({"a": 1}));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].code, "bom");
        assert!(!d[0].is_error());
    }

    #[test]
    fn blanks_comments_outside_strings_and_keeps_positions() {
        let text = "{\n  // line comment\n  \"a\": \"//not a comment\", /* block\n  */ \"b\": 2\n}";
        let mut sink = Sink::new("f.json");
        let src = parse(text, Syntax::Json, &mut sink).unwrap();
        assert_eq!(
            src.value,
            serde_json::json!({"a": "//not a comment", "b": 2})
        );
        assert_eq!(src.text.len(), text.len());
        assert_eq!(src.text.lines().count(), text.lines().count());
        let d = sink.into_diagnostics();
        assert_eq!(d.len(), 2);
        assert!(d.iter().all(|d| d.code == "json-comment"));
        assert_eq!((d[0].line, d[0].column), (Some(2), Some(3)));
        assert_eq!((d[1].line, d[1].column), (Some(3), Some(27)));
    }

    #[test]
    fn trailing_comma_is_an_error_with_position() {
        let text = "{\n  \"a\": 1,\n  \"b\": [1, 2,],\n}";
        let mut sink = Sink::new("f.json");
        let e = parse(text, Syntax::Json, &mut sink).unwrap_err();
        let d = e.into_diagnostic("f.json");
        assert_eq!(d.code, "json-syntax");
        assert!(d.is_error());
        assert_eq!(d.message, "invalid JSON: trailing comma");
        assert_eq!((d.line, d.column), (Some(3), Some(14)));
        assert_eq!(
            d.to_string(),
            "f.json#:3:14: error[json-syntax]: invalid JSON: trailing comma"
        );
    }

    #[test]
    fn comment_and_syntax_error_reports_the_syntax_error() {
        let text = "{ /* c */ \"a\": 1,, }";
        let mut sink = Sink::new("f.json");
        let e = parse(text, Syntax::Json, &mut sink).unwrap_err();
        assert!(matches!(e, SourceError::Json { .. }));
        let text = "{ \"a\": 1 /* open";
        let e = parse(text, Syntax::Json, &mut sink).unwrap_err();
        assert_eq!(e.to_string(), "invalid JSON: unterminated /* comment");
    }

    #[test]
    fn columns_count_characters() {
        let text = "{\"é\": 1,}";
        let mut sink = Sink::new("f.json");
        let e = parse(text, Syntax::Json, &mut sink).unwrap_err();
        let d = e.into_diagnostic("f");
        assert_eq!((d.line, d.column), (Some(1), Some(9)));
    }

    #[test]
    fn refuses_utf16_and_reports_invalid_utf8_position() {
        assert!(matches!(
            decode(&[0xFF, 0xFE, 0x7B]),
            Err(SourceError::Utf16)
        ));
        match decode(b"{\n  \"a\": \"\xff\"}") {
            Err(SourceError::NotUtf8 { line, column }) => assert_eq!((line, column), (2, 9)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn yaml_values_and_errors() {
        let mut sink = Sink::new("f.yaml");
        let src = parse(
            "openapi: 3.0.3\npaths:\n  /a:\n    get:\n      responses:\n        200:\n          description: ok\n",
            Syntax::Yaml,
            &mut sink,
        )
        .unwrap();
        assert_eq!(
            src.value
                .pointer("/paths/~1a/get/responses/200/description"),
            Some(&Value::String("ok".into()))
        );
        let e = parse("a:\n  - b\n  c: d\n", Syntax::Yaml, &mut sink).unwrap_err();
        let d = e.into_diagnostic("f.yaml");
        assert_eq!(d.code, "yaml-syntax");
        assert_eq!((d.line, d.column), (Some(3), Some(3)));
        assert!(!d.message.contains('\n'));
        assert!(d.message.starts_with("invalid YAML: "), "{}", d.message);
        assert!(!d.message.contains("line 3"), "{}", d.message);
    }
}
