//! Host URL templates (`dynamichosturl`, `dynamicsubdomain`) and the checks that keep the
//! gateway from becoming an open proxy.
//!
//! At load, each expression of the template gets the *position* it fills, from the literal
//! text before it:
//!
//! | position | example | a value may hold |
//! |---|---|---|
//! | whole URL | `@connectionParameters('instanceUrl')/api` | an absolute `http(s)` URL without user info, query or fragment |
//! | host | `https://@connectionParameters('sub').example.com` | letters, digits, `-` and `.` |
//! | port | `https://h.example.com:@headers('port')` | digits |
//! | path | `https://h.example.com/@connectionParameters('site')` | path characters, no `?`, `#`, `\`, whitespace, or dot segments |
//!
//! So a value can never change the scheme, the host suffix or the port the template fixes:
//! `evil.com/x?` or `a@b` in a host position is refused with 400. The whole result must
//! then be an absolute `http`/`https` URL with a valid host and a clean path.
//!
//! When a value the *client* controls (a header or query parameter) decides the host —
//! in the whole-URL position, or in the host position with no fixed suffix after it — any
//! client could send the connector's credentials anywhere. Such templates get a load
//! warning and run only against the `allowed_hosts` the operator lists.

use crate::eval::{EvalError, Evaluated, Scope, eval};
use crate::expr::{Expr, Piece, Source, Template};

/// Where an expression's value lands in the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    WholeUrl,
    Host,
    Port,
    Path,
}

impl Position {
    fn name(self) -> &'static str {
        match self {
            Position::WholeUrl => "the whole URL",
            Position::Host => "the host",
            Position::Port => "the port",
            Position::Path => "the path",
        }
    }
}

/// A compiled host URL template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTemplate {
    pub template: Template,
    /// The position of each expression piece, in order.
    pub positions: Vec<Position>,
    /// Set when a client-controlled value decides the host: what decides it.
    pub open_host: Option<String>,
}

/// Why a host URL template cannot be used.
pub type CompileError = String;

/// Where the scanner is in the URL.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Authority,
    Port,
    Path,
}

impl HostTemplate {
    /// Checks a parsed template and gives each expression its position.
    pub fn compile(template: Template) -> Result<HostTemplate, CompileError> {
        let mut state = State::Start;
        let mut positions = Vec::new();
        let mut start_text = String::new();
        // For each host-position expression: whether fixed text followed it in the host.
        let mut host_exprs: Vec<(usize, bool)> = Vec::new();
        for piece in &template.pieces {
            match piece {
                Piece::Text(text) => {
                    for c in text.chars() {
                        match state {
                            State::Start => {
                                start_text.push(c);
                                if start_text.ends_with("://") {
                                    let scheme = start_text.trim_end_matches("://");
                                    if !scheme.eq_ignore_ascii_case("https")
                                        && !scheme.eq_ignore_ascii_case("http")
                                    {
                                        return Err(format!(
                                            "the URL must start with http:// or https://, not `{start_text}`"
                                        ));
                                    }
                                    state = State::Authority;
                                }
                            }
                            State::Authority => match c {
                                ':' => state = State::Port,
                                '/' => state = State::Path,
                                '?' | '#' => {}
                                '.' | '-' | 'a'..='z' | 'A'..='Z' | '0'..='9' => {
                                    if c == '.'
                                        && let Some(last) = host_exprs.last_mut()
                                    {
                                        last.1 = true;
                                    }
                                }
                                other => {
                                    return Err(format!(
                                        "`{other}` cannot appear in the host of the URL"
                                    ));
                                }
                            },
                            State::Port => match c {
                                '/' => state = State::Path,
                                '0'..='9' | '?' | '#' => {}
                                other => {
                                    return Err(format!(
                                        "`{other}` cannot appear in the port of the URL"
                                    ));
                                }
                            },
                            State::Path => {}
                        }
                        if c == '?' || c == '#' {
                            return Err(
                                "a host URL cannot have a query or a fragment (`?`, `#`)".into()
                            );
                        }
                    }
                }
                Piece::Expr(expr) => {
                    if let Expr::Path(path) = expr {
                        return Err(format!(
                            "a host URL cannot depend on the message body (`{path}`)"
                        ));
                    }
                    let position = match state {
                        State::Start if start_text.is_empty() => Position::WholeUrl,
                        State::Start => {
                            return Err(format!(
                                "an expression after `{start_text}` would be part of the scheme; write the scheme as `https://`"
                            ));
                        }
                        State::Authority => Position::Host,
                        State::Port => Position::Port,
                        State::Path => Position::Path,
                    };
                    if position == Position::Host {
                        host_exprs.push((positions.len(), false));
                    }
                    if position == Position::WholeUrl {
                        // What follows a whole URL is its path.
                        state = State::Path;
                    }
                    positions.push(position);
                }
                Piece::Param(name) => {
                    return Err(format!(
                        "a host URL cannot use the operation parameter `{{{name}}}`"
                    ));
                }
            }
        }
        if state == State::Start {
            return Err(format!(
                "`{start_text}` is not an absolute URL; write it as https://host/path"
            ));
        }
        let exprs: Vec<&Expr> = template.exprs().collect();
        let client_controlled = |i: usize| -> Option<String> {
            match exprs.get(i) {
                Some(Expr::Lookup {
                    source: Source::Header,
                    name,
                    ..
                }) => Some(format!("header '{name}'")),
                Some(Expr::Lookup {
                    source: Source::Query,
                    name,
                    ..
                }) => Some(format!("query parameter '{name}'")),
                _ => None,
            }
        };
        let mut open_host = None;
        for (i, position) in positions.iter().enumerate() {
            let unconfined = match position {
                Position::WholeUrl => true,
                Position::Host => {
                    // Confined when fixed text with a `.` follows it in the host (a suffix such
                    // as `.example.com`), and it is the last expression of the host.
                    let last_host_expr = host_exprs.last().map(|(idx, _)| *idx);
                    let suffix = host_exprs
                        .iter()
                        .find(|(idx, _)| *idx == i)
                        .is_some_and(|(_, suffix)| *suffix);
                    !(suffix || last_host_expr != Some(i))
                }
                Position::Port | Position::Path => false,
            };
            if unconfined && let Some(what) = client_controlled(i) {
                open_host = Some(what);
                break;
            }
        }
        Ok(HostTemplate {
            template,
            positions,
            open_host,
        })
    }

    /// Evaluates the template and checks the result. The error says what was refused and
    /// why, without echoing connection values.
    pub(crate) fn evaluate(&self, scope: &Scope<'_>) -> Result<String, HostError> {
        let mut out = String::new();
        let mut position = self.positions.iter();
        for piece in &self.template.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Expr(expr) => {
                    let position = position.next().copied().unwrap_or(Position::Path);
                    let (value, _) = eval(expr, scope).map_err(HostError::Eval)?;
                    let value = match value {
                        Evaluated::Text(t) => t.into_owned(),
                        Evaluated::Json(v) => crate::json::text(v).into_owned(),
                        Evaluated::Missing => String::new(),
                    };
                    if let Err(why) = check_value(position, &value) {
                        return Err(HostError::Refused(format!(
                            "{} cannot be used as {} of the backend URL: {why}",
                            describe(expr, &value),
                            position.name()
                        )));
                    }
                    out.push_str(&value);
                }
                Piece::Param(_) => {}
            }
        }
        check_url(&out).map_err(|why| {
            HostError::Refused(format!(
                "the backend URL built from the template is not usable: {why}"
            ))
        })
    }
}

/// Why a host URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostError {
    Eval(EvalError),
    Refused(String),
}

/// Names a value for a message; connection values are never echoed.
fn describe(expr: &Expr, value: &str) -> String {
    let shown: String = value.chars().take(60).collect();
    match expr {
        Expr::Lookup {
            source: Source::Connection,
            name,
            ..
        } => format!("connection value '{name}'"),
        Expr::Lookup {
            source: Source::Header,
            name,
            ..
        } => format!("header '{name}' ({shown:?})"),
        Expr::Lookup {
            source: Source::Query,
            name,
            ..
        } => format!("query parameter '{name}' ({shown:?})"),
        Expr::Path(path) => format!("`{path}`"),
    }
}

fn check_value(position: Position, value: &str) -> Result<(), String> {
    match position {
        Position::WholeUrl => Ok(()),
        Position::Host => {
            if value.is_empty() {
                return Err("it is empty".into());
            }
            match value
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
            {
                Some(c) => Err(format!(
                    "it contains {}, and a host may only hold letters, digits, `-` and `.`",
                    show_char(c)
                )),
                None => Ok(()),
            }
        }
        Position::Port => {
            if !value.is_empty() && value.chars().all(|c| c.is_ascii_digit()) {
                Ok(())
            } else {
                Err("a port is made of digits only".into())
            }
        }
        Position::Path => match value.chars().find(|c| !is_path_char(*c)) {
            Some(c) => Err(format!("it contains {}", show_char(c))),
            None => Ok(()),
        },
    }
}

fn show_char(c: char) -> String {
    if c.is_whitespace() {
        "whitespace".into()
    } else if c.is_control() {
        "a control character".into()
    } else {
        format!("`{c}`")
    }
}

/// RFC 3986 `pchar` and `/`.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/%".contains(c)
}

/// Checks an absolute base URL: `http(s)://host[:port][/path]`, no user info, query or
/// fragment, a valid host, a clean path. Returns it without a trailing `/`.
pub(crate) fn check_url(url: &str) -> Result<String, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "it is not an absolute http:// or https:// URL".to_owned())?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err("its scheme is not http or https".into());
    }
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if let Some(c) = url.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("it contains {}", show_char(c)));
    }
    if authority.contains('@') {
        return Err("it has user information (`@`) in its authority".into());
    }
    if authority.contains(['?', '#', '\\']) || path.contains(['?', '#', '\\']) {
        return Err("a base URL cannot have a query or a fragment".into());
    }
    let (host, port) = split_port(authority)?;
    check_host(host)?;
    if let Some(port) = port
        && (port.is_empty() || port.parse::<u16>().is_err())
    {
        return Err(format!("`{port}` is not a port"));
    }
    if let Some(c) = path.chars().find(|c| !is_path_char(*c)) {
        return Err(format!("its path contains {}", show_char(c)));
    }
    for segment in path.split('/') {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        if decoded == "." || decoded == ".." {
            return Err("its path has a `.` or `..` segment".into());
        }
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn split_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (addr, rest) = v6
            .split_once(']')
            .ok_or_else(|| "an IPv6 address is not closed by `]`".to_owned())?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`[{addr}]` is not an IPv6 address"));
        }
        return match rest.strip_prefix(':') {
            Some(port) => Ok((
                authority.get(..addr.len() + 2).unwrap_or_default(),
                Some(port),
            )),
            None if rest.is_empty() => Ok((authority, None)),
            None => Err("unexpected text after the IPv6 address".into()),
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

/// Whether `text` is `host[:port]` as [`check_host`] reads a host: what a `Host` header set
/// by a policy may hold.
pub(crate) fn is_authority(text: &str) -> bool {
    match split_port(text) {
        Ok((host, port)) => {
            check_host(host).is_ok()
                && port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok())
        }
        Err(_) => false,
    }
}

/// A DNS name (labels of letters, digits and `-`), an IPv4 address or a bracketed IPv6.
fn check_host(host: &str) -> Result<(), String> {
    if host.starts_with('[') {
        return Ok(());
    }
    if host.is_empty() {
        return Err("it has no host".into());
    }
    if host.len() > 253 {
        return Err("its host is longer than 253 characters".into());
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err("its host has an empty label".into());
        }
        if label.len() > 63 {
            return Err(format!(
                "its host `{host}` has a label longer than 63 characters"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "its host `{host}` has a label that starts or ends with `-`"
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!("its host contains {}", show_char(c)));
        }
    }
    Ok(())
}

/// The host of an absolute URL checked by [`check_url`], lower-cased, and its port (the
/// scheme's default when the URL names none).
pub(crate) fn host_of(url: &str) -> (String, u16) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = split_port(authority).unwrap_or((authority, None));
    let default = if scheme.eq_ignore_ascii_case("http") {
        80
    } else {
        443
    };
    let port = port.and_then(|p| p.parse().ok()).unwrap_or(default);
    (host.to_ascii_lowercase(), port)
}

/// Whether `host` and `port` match one of `patterns`: an exact host, or `*.suffix` for any
/// host below `suffix`; then `:PORT` for that port, `:*` for any, and nothing for the
/// scheme's default port only (so `api.example.com` does not open `api.example.com:22`).
pub fn host_allowed((host, port): (&str, u16), default_port: u16, patterns: &[String]) -> bool {
    patterns.iter().any(|pattern| {
        let pattern = pattern.to_ascii_lowercase();
        let (name, ports) = match pattern.rsplit_once(':') {
            Some((name, "*")) => (name, None),
            Some((name, p)) => match p.parse::<u16>() {
                Ok(p) => (name, Some(p)),
                Err(_) => return false,
            },
            None => (pattern.as_str(), Some(default_port)),
        };
        if ports.is_some_and(|p| p != port) {
            return false;
        }
        match name.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            None => host == name,
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::collections::HashMap;

    use http::HeaderMap;
    use serde_json::Value;

    use super::*;
    use crate::eval::{ConnValue, Env};
    use crate::expr::{Flavor, parse_template};

    struct Conn(HashMap<&'static str, &'static str>);

    impl Env for Conn {
        fn connection(&self, name: &str) -> Option<ConnValue<'_>> {
            self.0.get(name).map(|v| ConnValue {
                value: v,
                secret: false,
            })
        }
        fn parameter(&self, _: &str) -> Option<&Value> {
            None
        }
    }

    fn host(src: &str) -> HostTemplate {
        HostTemplate::compile(parse_template(src, Flavor::TEXT).unwrap()).unwrap()
    }

    fn run(src: &str, conn: &[(&'static str, &'static str)]) -> Result<String, String> {
        let env = Conn(conn.iter().copied().collect());
        let mut headers = HeaderMap::new();
        headers.insert("x-region", http::HeaderValue::from_static("eu"));
        let scope = Scope {
            headers: Some(&headers),
            query: Some("host=evil.com"),
            ..Scope::new(&env)
        };
        host(src).evaluate(&scope).map_err(|e| match e {
            HostError::Refused(why) => why,
            HostError::Eval(e) => format!("{e:?}"),
        })
    }

    #[test]
    fn positions_come_from_the_literal_text() {
        use Position::*;
        assert_eq!(
            host("https://@connectionParameters('sub').alisqi.com/api/").positions,
            vec![Host]
        );
        assert_eq!(
            host("@connectionParameters('url')/x/@connectionParameters('site')").positions,
            vec![WholeUrl, Path]
        );
        assert_eq!(
            host("https://@headers('a').x.com:@headers('p')/@queryParameters('q')").positions,
            vec![Host, Port, Path]
        );
        let e = HostTemplate::compile(
            parse_template("https://x.com/?@headers('q')", Flavor::TEXT).unwrap(),
        )
        .unwrap_err();
        assert!(e.contains("query"), "{e}");
        let e =
            HostTemplate::compile(parse_template("ftp://x", Flavor::TEXT).unwrap()).unwrap_err();
        assert!(e.contains("http"), "{e}");
        let e = HostTemplate::compile(parse_template("https://@body().h", Flavor::TEXT).unwrap())
            .unwrap_err();
        assert!(e.contains("body"), "{e}");
        assert!(HostTemplate::compile(parse_template("not a url", Flavor::TEXT).unwrap()).is_err());
    }

    #[test]
    fn client_controlled_hosts_are_flagged() {
        assert_eq!(
            host("@queryParameters('projectId')").open_host.as_deref(),
            Some("query parameter 'projectId'")
        );
        assert_eq!(
            host("https://@headers('HostURL')").open_host.as_deref(),
            Some("header 'HostURL'")
        );
        // A fixed suffix confines the value to a domain.
        assert_eq!(
            host("https://@headers('Instance').executestrategy.net/api/v2").open_host,
            None
        );
        assert_eq!(
            host("https://r@headers('Region')-api.dotmailer.com").open_host,
            None
        );
        // Connection values are the operator's.
        assert_eq!(host("@connectionParameters('instanceUrl')").open_host, None);
        // A path value cannot move the host.
        assert_eq!(
            host("https://x.com/@queryParameters('site')").open_host,
            None
        );
    }

    #[test]
    fn values_cannot_leave_their_position() {
        let alisqi = "https://@connectionParameters('subdomain').alisqi.com/api/";
        assert_eq!(
            run(alisqi, &[("subdomain", "acme")]),
            Ok("https://acme.alisqi.com/api".into())
        );
        for evil in [
            "evil.com/x?",
            "a@b",
            "evil.com#",
            "x:80",
            "a b",
            "evil.com\t",
            "",
        ] {
            let Err(why) = run(alisqi, &[("subdomain", evil)]) else {
                panic!("{evil:?} was accepted")
            };
            assert!(
                why.starts_with("connection value 'subdomain' cannot be used as the host"),
                "{why}"
            );
            assert!(
                !why.contains("evil"),
                "connection values are not echoed: {why}"
            );
        }
        // An empty label is refused by the URL check.
        let why = run(alisqi, &[("subdomain", "evil.com.")]).unwrap_err();
        assert!(why.contains("empty label"), "{why}");
        assert_eq!(
            run("https://@headers('x-region').example.com", &[]),
            Ok("https://eu.example.com".into())
        );
        let why = run("https://x.com:@queryParameters('host')", &[]).unwrap_err();
        assert!(why.contains("port"), "{why}");
        let why = run(
            "https://x.com/@connectionParameters('p')",
            &[("p", "a/../b")],
        )
        .unwrap_err();
        assert!(why.contains("`..`"), "{why}");
        let why = run("https://x.com/@connectionParameters('p')", &[("p", "a?b")]).unwrap_err();
        assert!(why.contains("`?`"), "{why}");
    }

    #[test]
    fn whole_urls_must_be_plain_http_urls() {
        let t = "@connectionParameters('url')/connector";
        assert_eq!(
            run(t, &[("url", "http://127.0.0.1:8080")]),
            Ok("http://127.0.0.1:8080/connector".into())
        );
        assert_eq!(
            run(t, &[("url", "https://[::1]:8443/base")]),
            Ok("https://[::1]:8443/base/connector".into())
        );
        for bad in [
            "ftp://x.com",
            "https://user:pw@x.com",
            "https://x.com?a=1",
            "x.com",
            "https://x.com:99999",
            "https://",
            "https://x_y.com",
        ] {
            assert!(run(t, &[("url", bad)]).is_err(), "{bad}");
        }
        assert_eq!(run(t, &[]), Err("MissingConnection(\"url\")".to_owned()));
    }

    #[test]
    fn allowed_hosts() {
        let allowed = vec!["*.asite.com".to_owned(), "api.example.com".to_owned()];
        let ok = |host: &str| host_allowed((host, 443), 443, &allowed);
        assert!(ok("eu.asite.com"));
        assert!(ok("a.b.asite.com"));
        assert!(!ok("asite.com"));
        assert!(!ok("evilasite.com"));
        assert!(ok("api.example.com"));
        assert!(!ok("x.api.example.com"));
        // Ports: the scheme's default only, unless the pattern names one or `*`.
        assert!(!host_allowed(("api.example.com", 22), 443, &allowed));
        let ports = vec![
            "api.example.com:8443".to_owned(),
            "*.asite.com:*".to_owned(),
        ];
        assert!(host_allowed(("api.example.com", 8443), 443, &ports));
        assert!(!host_allowed(("api.example.com", 443), 443, &ports));
        assert!(host_allowed(("x.asite.com", 22), 443, &ports));
        assert_eq!(
            host_of("http://H.example.com/x"),
            ("h.example.com".into(), 80)
        );
        assert_eq!(host_of("https://h:8443"), ("h".into(), 8443));
        assert_eq!(
            host_of("https://EU.Asite.com:443/x"),
            ("eu.asite.com".into(), 443)
        );
        assert_eq!(host_of("http://[::1]:80"), ("[::1]".into(), 80));
    }
}
