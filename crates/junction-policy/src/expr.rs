//! The expression language of policy templates, parsed into a tiny AST.
//!
//! Template parameters mix literal text with expressions:
//!
//! | form | meaning |
//! |---|---|
//! | `@connectionParameters('p')`, `@connectionParameters('p', 'default')` | a value of the connection |
//! | `@headers('h')` (also `@header`), `@queryParameters('q')` — each with an optional default | a header or query value of the message |
//! | `@body().a.b`, `@body()['@odata.id']`, `@body().list[0]` | a value in the JSON body |
//! | `@item().a` | a value in the current item, when a policy works on each item of a collection |
//! | `{@…}`, `@{…}` | interpolation of any of the above inside text |
//! | `{name}` | the operation's parameter `name` (in paths and URLs only) |
//! | `@Request.OriginalHTTPMethod` | the method the client used (the whole value of `httpMethod` only) |
//! | `@@` | a literal `@` |
//!
//! Function names are matched case-insensitively (`@ConnectionParameters` appears in published
//! packages). In plain text a call of a string function takes no accessors, so
//! `https://@connectionParameters('sub').example.com` keeps `.example.com` as text; JSON
//! functions (`body`, `item`) take `.name`, `['name']` and `[index]`. Inside `{@…}` the
//! expression must end at the `}`.
//!
//! Every syntax error carries the character offset where it was found.

use std::fmt;

/// One step into a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// What a JSON path starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// `@body()`: the message body.
    Body,
    /// `@item()`: the current item of the collection a policy iterates over.
    Item,
    /// `@triggerBody()`: the body of a polling trigger's last response.
    TriggerBody,
}

impl Root {
    pub fn name(self) -> &'static str {
        match self {
            Root::Body => "@body()",
            Root::Item => "@item()",
            Root::TriggerBody => "@triggerBody()",
        }
    }
}

/// A JSON path: a root and the steps below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub root: Root,
    pub steps: Vec<Step>,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.root.name())?;
        write_steps(f, &self.steps)
    }
}

/// Writes steps as `.name`, `['odd name']` and `[3]`.
pub fn write_steps(f: &mut impl fmt::Write, steps: &[Step]) -> fmt::Result {
    for step in steps {
        match step {
            Step::Key(key) if !key.is_empty() && key.chars().all(is_name_char) => {
                write!(f, ".{key}")?
            }
            Step::Key(key) => write!(f, "['{}']", key.replace('\'', "''"))?,
            Step::Index(i) => write!(f, "[{i}]")?,
        }
    }
    Ok(())
}

/// Where a string function reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Connection,
    Header,
    Query,
}

/// One expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `@connectionParameters(name[, default])`, `@headers(…)`, `@queryParameters(…)`.
    Lookup {
        source: Source,
        name: String,
        default: Option<String>,
    },
    /// `@body()…`, `@item()…`, `@triggerBody()…`.
    Path(Path),
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Expr(Expr),
    /// `{name}`: the operation parameter `name`.
    Param(String),
}

/// Literal text with expressions in it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    pub pieces: Vec<Piece>,
}

impl Template {
    /// The template's text when it has no expression.
    pub fn as_constant(&self) -> Option<String> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                _ => return None,
            }
        }
        Some(out)
    }

    /// Every expression of the template.
    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Expr(e) => Some(e),
            _ => None,
        })
    }

    /// Every `{name}` placeholder of the template.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Param(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// Whether any expression reads the connection.
    pub fn reads_connection(&self) -> bool {
        self.exprs().any(|e| {
            matches!(
                e,
                Expr::Lookup {
                    source: Source::Connection,
                    ..
                }
            )
        })
    }

    /// Whether any expression reads a JSON body (`@body()`, `@item()`).
    pub fn reads_body(&self) -> bool {
        self.exprs().any(|e| matches!(e, Expr::Path(_)))
    }
}

/// Which forms a template accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flavor {
    /// Bare `@function(…)` calls in the text (headers, query values, URLs, paths). When
    /// false only `{@…}` and `@{…}` interpolate (property values), and a bare `@` is text.
    pub bare_calls: bool,
    /// `{name}` placeholders for operation parameters (paths and URLs).
    pub params: bool,
}

impl Flavor {
    /// Header and query values, host URLs.
    pub const TEXT: Flavor = Flavor {
        bare_calls: true,
        params: false,
    };
    /// Paths and URLs relative to the backend (`newPath`, `parameterValueUrl`).
    pub const URL_PATH: Flavor = Flavor {
        bare_calls: true,
        params: true,
    };
    /// Property values (`propertyValuePathTemplate`): only `{@…}` interpolates.
    pub const VALUE: Flavor = Flavor {
        bare_calls: false,
        params: false,
    };
}

/// A malformed expression: what is wrong and at which character (0-based) of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.offset + 1, self.message)
    }
}

impl std::error::Error for SyntaxError {}

/// The functions the language knows, for messages and suggestions.
pub const FUNCTIONS: [&str; 6] = [
    "connectionParameters",
    "headers",
    "queryParameters",
    "body",
    "item",
    "triggerBody",
];

/// Parses a template.
pub fn parse_template(src: &str, flavor: Flavor) -> Result<Template, SyntaxError> {
    let mut parser = Parser { src, pos: 0 };
    let mut pieces: Vec<Piece> = Vec::new();
    let mut text = String::new();
    let flush = |text: &mut String, pieces: &mut Vec<Piece>| {
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(text)));
        }
    };
    while let Some(c) = parser.peek() {
        let rest = parser.rest();
        if rest.starts_with("@@") {
            text.push('@');
            parser.pos += 2;
        } else if rest.starts_with("@{") {
            let start = parser.pos;
            parser.pos += 2;
            parser.skip_ws();
            let expr = parser.expr(false, true)?;
            parser.skip_ws();
            if !parser.eat('}') {
                return Err(parser.error_at(start, "`@{` is not closed by `}`"));
            }
            flush(&mut text, &mut pieces);
            pieces.push(Piece::Expr(expr));
        } else if rest.starts_with("{@") {
            let start = parser.pos;
            parser.pos += 1;
            let expr = parser.expr(true, true)?;
            parser.skip_ws();
            if !parser.eat('}') {
                return Err(if parser.peek().is_none() {
                    parser.error_at(start, "`{@` is not closed by `}`")
                } else {
                    parser.error("expected `}` to end the expression")
                });
            }
            flush(&mut text, &mut pieces);
            pieces.push(Piece::Expr(expr));
        } else if c == '@' && flavor.bare_calls && parser.starts_call() {
            let expr = parser.expr(true, true)?;
            flush(&mut text, &mut pieces);
            pieces.push(Piece::Expr(expr));
        } else if c == '@' && flavor.bare_calls && rest.starts_with("@Request.") {
            return Err(parser.error(
                "`@Request.OriginalHTTPMethod` can only be the whole value of `httpMethod`",
            ));
        } else if c == '{' && flavor.params && parser.starts_param() {
            parser.pos += 1;
            let name = parser.take_while(|c| c != '}');
            parser.pos += 1;
            flush(&mut text, &mut pieces);
            pieces.push(Piece::Param(name.to_owned()));
        } else {
            text.push(c);
            parser.pos += c.len_utf8();
        }
    }
    flush(&mut text, &mut pieces);
    Ok(Template { pieces })
}

/// Parses a value that must be one JSON path, such as `@body().value` (the `@` may be
/// left out, as some published packages do).
pub fn parse_path(src: &str) -> Result<Path, SyntaxError> {
    let mut parser = Parser { src, pos: 0 };
    parser.skip_ws();
    if parser.peek().is_none() {
        return Err(parser.error("expected a path such as `@body()` or `@body().items`"));
    }
    let start = parser.pos;
    match parser.expr(false, false)? {
        Expr::Path(path) => {
            parser.skip_ws();
            if parser.peek().is_some() {
                return Err(parser.error(
                    "unexpected text after the path; write steps as `.name`, `['name']` or `[0]`",
                ));
            }
            Ok(path)
        }
        Expr::Lookup { .. } => Err(parser.error_at(
            start,
            "expected a path into the body (`@body()…` or `@item()…`), not a header, query or connection value",
        )),
    }
}

/// Parses a path relative to a parent object, such as `name`, `a.b`, `['@odata.type']` or
/// `items[0].id`. Empty text and `null` mean the parent itself.
pub fn parse_steps(src: &str) -> Result<Vec<Step>, SyntaxError> {
    let trimmed = src.trim();
    if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("null") {
        return Ok(Vec::new());
    }
    let mut parser = Parser { src, pos: 0 };
    parser.skip_ws();
    let mut steps = Vec::new();
    if parser.peek() != Some('[') {
        if parser.rest().starts_with('@') || parser.rest().starts_with('{') {
            return Err(parser.error(
                "a sub path is a property name or path such as `name` or `a.b`, not an expression",
            ));
        }
        let name = parser.take_while(|c| c != '.' && c != '[');
        steps.push(Step::Key(name.trim_end().to_owned()));
    }
    parser.steps(&mut steps, true)?;
    parser.skip_ws();
    if parser.peek().is_some() {
        return Err(parser.error("unexpected text in the property path"));
    }
    Ok(steps)
}

/// Whether `c` may appear in a `.name` step without brackets.
pub fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '$' | '-')
}

struct Parser<'s> {
    src: &'s str,
    /// Byte position.
    pos: usize,
}

impl<'s> Parser<'s> {
    fn rest(&self) -> &'s str {
        self.src.get(self.pos..).unwrap_or_default()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.pos += c.len_utf8();
        }
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'s str {
        let start = self.pos;
        while let Some(c) = self.peek().filter(|c| keep(*c)) {
            self.pos += c.len_utf8();
        }
        self.src.get(start..self.pos).unwrap_or_default()
    }

    fn char_offset(&self, byte: usize) -> usize {
        self.src.get(..byte).map_or(0, |s| s.chars().count())
    }

    fn error(&self, message: impl Into<String>) -> SyntaxError {
        self.error_at(self.pos, message)
    }

    fn error_at(&self, byte: usize, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            offset: self.char_offset(byte),
            message: message.into(),
        }
    }

    /// Whether the text at the cursor is `@name(` (possibly with spaces before the `(`).
    fn starts_call(&self) -> bool {
        let rest = self.rest();
        let Some(after) = rest.strip_prefix('@') else {
            return false;
        };
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        name_len > 0
            && after
                .get(..1)
                .is_some_and(|c| c.chars().all(|c| c.is_ascii_alphabetic()))
            && after
                .get(name_len..)
                .is_some_and(|s| s.trim_start().starts_with('('))
    }

    /// Whether the text at the cursor is `{name}` with a plain parameter name.
    fn starts_param(&self) -> bool {
        let Some(after) = self.rest().strip_prefix('{') else {
            return false;
        };
        match after.find('}') {
            Some(end) => {
                let name = after.get(..end).unwrap_or_default();
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'))
            }
            None => false,
        }
    }

    /// Parses one expression: `[@]name(args)` and, for JSON functions, the steps after it:
    /// made of name characters when `strict` (inside text), running to the next `.` or `[`
    /// otherwise (a whole-value path). `at_required` demands the leading `@`.
    fn expr(&mut self, at_required: bool, strict: bool) -> Result<Expr, SyntaxError> {
        let start = self.pos;
        if !self.eat('@') && at_required {
            return Err(self.error("expected `@` to start an expression"));
        }
        let name_at = self.pos;
        let name = self.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
        if name.is_empty() {
            return Err(
                self.error("expected a function name such as `body` or `connectionParameters`")
            );
        }
        if name.eq_ignore_ascii_case("Request") && self.peek() == Some('.') {
            return Err(self.error_at(
                start,
                "`@Request.OriginalHTTPMethod` can only be the whole value of `httpMethod`",
            ));
        }
        self.skip_ws();
        if !self.eat('(') {
            return Err(self.error(format!("expected `(` after `{name}`")));
        }
        let mut args = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(')') {
                break;
            }
            if !args.is_empty() {
                if !self.eat(',') {
                    return Err(self.error("expected `,` or `)` between arguments"));
                }
                self.skip_ws();
            }
            args.push(self.string()?);
        }
        let lower = name.to_ascii_lowercase();
        let lookup = match lower.as_str() {
            "connectionparameters" => Some(Source::Connection),
            "headers" | "header" => Some(Source::Header),
            "queryparameters" => Some(Source::Query),
            _ => None,
        };
        if let Some(source) = lookup {
            let mut args = args.into_iter();
            let (Some(name), default, None) = (args.next(), args.next(), args.next()) else {
                return Err(self.error_at(
                    name_at,
                    format!("`{name}` takes a name and an optional default, such as `{name}('x')` or `{name}('x', 'default')`"),
                ));
            };
            return Ok(Expr::Lookup {
                source,
                name,
                default,
            });
        }
        let root = match lower.as_str() {
            "body" => Root::Body,
            "item" => Root::Item,
            "triggerbody" => Root::TriggerBody,
            _ => {
                let suggestion = FUNCTIONS
                    .iter()
                    .find(|f| close(f, name))
                    .map(|f| format!("; did you mean `{f}`?"))
                    .unwrap_or_else(|| format!(" (known: {})", FUNCTIONS.join(", ")));
                return Err(
                    self.error_at(name_at, format!("unknown function `{name}`{suggestion}"))
                );
            }
        };
        if !args.is_empty() {
            return Err(self.error_at(name_at, format!("`{name}()` takes no arguments")));
        }
        let mut steps = Vec::new();
        self.steps(&mut steps, !strict)?;
        Ok(Expr::Path(Path { root, steps }))
    }

    /// Parses `.name`, `['name']`, `["name"]` and `[index]` steps. With `loose`, a `.name`
    /// runs to the next `.` or `[` (whole-value paths); otherwise it is made of name
    /// characters only.
    fn steps(&mut self, steps: &mut Vec<Step>, loose: bool) -> Result<(), SyntaxError> {
        loop {
            if self.peek() == Some('.') {
                let dot = self.pos;
                self.pos += 1;
                let name = if loose {
                    self.take_while(|c| c != '.' && c != '[')
                } else {
                    self.take_while(is_name_char)
                };
                let name = if loose { name.trim_end() } else { name };
                if name.is_empty() {
                    if loose {
                        return Err(self.error_at(dot, "expected a property name after `.`"));
                    }
                    // `.` followed by text that cannot be a name: the `.` is text.
                    self.pos = dot;
                    return Ok(());
                }
                steps.push(Step::Key(name.to_owned()));
            } else if self.peek() == Some('[') {
                let open = self.pos;
                self.pos += 1;
                self.skip_ws();
                let step = match self.peek() {
                    Some('\'') | Some('"') => Step::Key(self.string()?),
                    Some(c) if c.is_ascii_digit() => {
                        let digits = self.take_while(|c| c.is_ascii_digit());
                        Step::Index(digits.parse().map_err(|_| {
                            self.error_at(open, format!("index {digits} is too large"))
                        })?)
                    }
                    _ => {
                        return Err(self.error(
                            "expected a quoted name or an index inside `[…]`, such as `['@odata.id']` or `[0]`",
                        ));
                    }
                };
                self.skip_ws();
                if !self.eat(']') {
                    return Err(self.error("expected `]`"));
                }
                steps.push(step);
            } else {
                return Ok(());
            }
        }
    }

    /// A string argument in single (or double) quotes; a doubled quote is a literal quote.
    fn string(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos;
        let quote = match self.peek() {
            Some(q @ ('\'' | '"')) => q,
            Some('‘' | '’' | '“' | '”') => {
                return Err(self.error("typographic quotes are not string quotes; use `'`"));
            }
            _ => return Err(self.error("expected a string in single quotes, such as `'name'`")),
        };
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error_at(start, "the string is not closed")),
                Some(c) if c == quote => {
                    self.pos += 1;
                    if self.peek() == Some(quote) {
                        out.push(quote);
                        self.pos += 1;
                    } else {
                        return Ok(out);
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }
}

/// Whether two names are one typo apart (case-insensitive).
fn close(known: &str, written: &str) -> bool {
    let (a, b) = (known.to_ascii_lowercase(), written.to_ascii_lowercase());
    if a.len().abs_diff(b.len()) > 2 {
        return false;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let best = (prev
                .get(j + 1)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(1))
            .min(cur.get(j).copied().unwrap_or(usize::MAX).saturating_add(1))
            .min(
                prev.get(j)
                    .copied()
                    .unwrap_or(usize::MAX)
                    .saturating_add(cost),
            );
            if let Some(slot) = cur.get_mut(j + 1) {
                *slot = best;
            }
        }
        prev = cur;
    }
    prev.last().is_some_and(|d| *d <= 2)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn text(s: &str) -> Piece {
        Piece::Text(s.to_owned())
    }

    fn conn(name: &str, default: Option<&str>) -> Piece {
        Piece::Expr(Expr::Lookup {
            source: Source::Connection,
            name: name.to_owned(),
            default: default.map(str::to_owned),
        })
    }

    fn body(steps: &[Step]) -> Piece {
        Piece::Expr(Expr::Path(Path {
            root: Root::Body,
            steps: steps.to_vec(),
        }))
    }

    fn key(k: &str) -> Step {
        Step::Key(k.to_owned())
    }

    #[test]
    fn bare_calls_in_text() {
        let t = parse_template("Bearer @connectionParameters('api_key')", Flavor::TEXT).unwrap();
        assert_eq!(t.pieces, vec![text("Bearer "), conn("api_key", None)]);
        let t = parse_template(
            "@connectionParameters('api_key','');@connectionParameters('url', 'x''y')",
            Flavor::TEXT,
        )
        .unwrap();
        assert_eq!(
            t.pieces,
            vec![
                conn("api_key", Some("")),
                text(";"),
                conn("url", Some("x'y"))
            ]
        );
        // A string function takes no accessors in text: `.alisqi.com` stays text.
        let t = parse_template(
            "https://@connectionParameters('subdomain').alisqi.com/api/",
            Flavor::TEXT,
        )
        .unwrap();
        assert_eq!(
            t.pieces,
            vec![
                text("https://"),
                conn("subdomain", None),
                text(".alisqi.com/api/")
            ]
        );
        // Case-insensitive names, `header` as an alias, `@@` and lone `@`.
        let t = parse_template(
            "@ConnectionParameters('a')@header('h', 'd') me@@x.com a@b",
            Flavor::TEXT,
        )
        .unwrap();
        assert_eq!(
            t.pieces,
            vec![
                conn("a", None),
                Piece::Expr(Expr::Lookup {
                    source: Source::Header,
                    name: "h".into(),
                    default: Some("d".into())
                }),
                text(" me@x.com a@b"),
            ]
        );
    }

    #[test]
    fn json_functions_take_accessors() {
        let t = parse_template("@body()['@odata.etag']", Flavor::TEXT).unwrap();
        assert_eq!(t.pieces, vec![body(&[key("@odata.etag")])]);
        let t = parse_template("id=@body().a.b[2]/x", Flavor::TEXT).unwrap();
        assert_eq!(
            t.pieces,
            vec![
                text("id="),
                body(&[key("a"), key("b"), Step::Index(2)]),
                text("/x")
            ]
        );
        // A `.` not followed by a name is text.
        let t = parse_template("@body().x. done", Flavor::TEXT).unwrap();
        assert_eq!(t.pieces, vec![body(&[key("x")]), text(". done")]);
    }

    #[test]
    fn interpolation() {
        let t = parse_template(
            "and(eq(destinationType, '{@body().destinationType}'))",
            Flavor::VALUE,
        )
        .unwrap();
        assert_eq!(
            t.pieces,
            vec![
                text("and(eq(destinationType, '"),
                body(&[key("destinationType")]),
                text("'))")
            ]
        );
        // In values, a bare `@` is text and `{…}` without `@` is text.
        let t = parse_template("a@body() {x} [{@item().id}]", Flavor::VALUE).unwrap();
        assert_eq!(
            t.pieces,
            vec![
                text("a@body() {x} ["),
                Piece::Expr(Expr::Path(Path {
                    root: Root::Item,
                    steps: vec![key("id")]
                })),
                text("]")
            ]
        );
        let t = parse_template(
            "lastModifiedDateTime gt @{triggerBody().value[0].lastModifiedDateTime}",
            Flavor::TEXT,
        )
        .unwrap();
        assert_eq!(
            t.pieces,
            vec![
                text("lastModifiedDateTime gt "),
                Piece::Expr(Expr::Path(Path {
                    root: Root::TriggerBody,
                    steps: vec![key("value"), Step::Index(0), key("lastModifiedDateTime")]
                }))
            ]
        );
    }

    #[test]
    fn params_in_paths() {
        let t = parse_template(
            "/me/taskfolders('{folder_id}')/@queryParameters('x')?a={id}",
            Flavor::URL_PATH,
        )
        .unwrap();
        assert_eq!(
            t.pieces,
            vec![
                text("/me/taskfolders('"),
                Piece::Param("folder_id".into()),
                text("')/"),
                Piece::Expr(Expr::Lookup {
                    source: Source::Query,
                    name: "x".into(),
                    default: None
                }),
                text("?a="),
                Piece::Param("id".into()),
            ]
        );
        // Not a placeholder in plain text.
        let t = parse_template("{id}", Flavor::TEXT).unwrap();
        assert_eq!(t.pieces, vec![text("{id}")]);
    }

    #[test]
    fn errors_carry_their_offset() {
        let e = parse_template("Bearer @conectionParameters('k')", Flavor::TEXT).unwrap_err();
        assert_eq!(e.offset, 8);
        assert_eq!(
            e.message,
            "unknown function `conectionParameters`; did you mean `connectionParameters`?"
        );
        assert_eq!(
            e.to_string(),
            "at character 9: unknown function `conectionParameters`; did you mean `connectionParameters`?"
        );
        let e = parse_template("x @frobnicate('k')", Flavor::TEXT).unwrap_err();
        assert_eq!(e.offset, 3);
        assert!(e.message.contains("known: connectionParameters"), "{e}");
        let e = parse_template("@headers('k)", Flavor::TEXT).unwrap_err();
        assert_eq!(
            (e.offset, e.message.as_str()),
            (9, "the string is not closed")
        );
        let e = parse_template("@headers(k)", Flavor::TEXT).unwrap_err();
        assert_eq!(e.offset, 9);
        let e = parse_template("@headers('a', 'b', 'c')", Flavor::TEXT).unwrap_err();
        assert_eq!(e.offset, 1);
        let e = parse_template("@body('x')", Flavor::TEXT).unwrap_err();
        assert_eq!(e.message, "`body()` takes no arguments");
        let e = parse_template("x {@body().a", Flavor::VALUE).unwrap_err();
        assert_eq!(
            (e.offset, e.message.as_str()),
            (2, "`{@` is not closed by `}`")
        );
        let e = parse_template("{@headers('a').x}", Flavor::VALUE).unwrap_err();
        assert_eq!(e.message, "expected `}` to end the expression");
        let e = parse_template("@body()[x]", Flavor::TEXT).unwrap_err();
        assert_eq!(e.offset, 8);
        let e = parse_template("m=@Request.OriginalHTTPMethod", Flavor::TEXT).unwrap_err();
        assert_eq!(e.offset, 2);
        let e = parse_template("@headers(‘k’)", Flavor::TEXT).unwrap_err();
        assert!(e.message.contains("typographic"), "{e}");
    }

    #[test]
    fn whole_value_paths() {
        assert_eq!(
            parse_path("@body().references").unwrap(),
            Path {
                root: Root::Body,
                steps: vec![key("references")]
            }
        );
        // Without `@`, as some packages write it.
        assert_eq!(
            parse_path(" body() ").unwrap(),
            Path {
                root: Root::Body,
                steps: vec![]
            }
        );
        assert_eq!(
            parse_path("@body()['@odata.etag']").unwrap().steps,
            vec![key("@odata.etag")]
        );
        assert_eq!(
            parse_path("@item()._assignments").unwrap(),
            Path {
                root: Root::Item,
                steps: vec![key("_assignments")]
            }
        );
        assert_eq!(
            parse_path("@body().First Name").unwrap().steps,
            vec![key("First Name")]
        );
        let e = parse_path("@headers('x')").unwrap_err();
        assert_eq!(e.offset, 0);
        let e = parse_path("@body()x").unwrap_err();
        assert_eq!(e.offset, 7);
        assert!(parse_path("").is_err());
        assert!(parse_path("@body().").is_err());
        assert_eq!(
            parse_path("@body().a").unwrap().to_string(),
            "@body().a".to_owned()
        );
    }

    #[test]
    fn sub_paths() {
        assert_eq!(parse_steps("version").unwrap(), vec![key("version")]);
        assert_eq!(
            parse_steps("['@odata.id']").unwrap(),
            vec![key("@odata.id")]
        );
        assert_eq!(
            parse_steps("peopleObject.XYZ.Age").unwrap(),
            vec![key("peopleObject"), key("XYZ"), key("Age")]
        );
        assert_eq!(
            parse_steps("items[0].id").unwrap(),
            vec![key("items"), Step::Index(0), key("id")]
        );
        assert_eq!(parse_steps("null").unwrap(), vec![]);
        assert_eq!(parse_steps("").unwrap(), vec![]);
        assert!(parse_steps("@body().x").is_err());
        assert!(parse_steps("a['x'").is_err());
    }
}
