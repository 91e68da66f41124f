//! `${VAR}` expansion of configuration values from the environment.
//!
//! Rules, applied to every string value of `junction.toml` after it is parsed (so a value
//! can never change the TOML structure around it):
//! - `${NAME}` is the variable's value; an unset variable is an error.
//! - `${NAME:-fallback}` is the value, or `fallback` when the variable is unset or empty.
//! - `$$` is a literal `$`; any other `$` is kept as written.
//!
//! `NAME` is letters, digits and `_`, not starting with a digit. Error messages name the
//! variable, never its value.

use std::fmt;

/// Why a value could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError {
    /// `${NAME}` of a variable that is not set.
    Unset(String),
    /// `${` without its closing `}`.
    Unterminated,
    /// `${…}` whose name is not a valid variable name.
    BadName(String),
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::Unset(name) => write!(
                f,
                "environment variable `{name}` is not set (write `${{{name}:-default}}` to give a fallback)"
            ),
            ExpandError::Unterminated => f.write_str("`${` without a closing `}`"),
            ExpandError::BadName(name) => write!(
                f,
                "`${{{name}}}` is not a valid variable reference (names are letters, digits and `_`)"
            ),
        }
    }
}

/// Expands `${VAR}` and `${VAR:-default}` in `input`, reading variables with `lookup`.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    if !input.contains('$') {
        return Ok(input.to_owned());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or(ExpandError::Unterminated)?;
            let inner = &body[..end];
            let (name, fallback) = match inner.split_once(":-") {
                Some((name, fallback)) => (name, Some(fallback)),
                None => (inner, None),
            };
            if !is_var_name(name) {
                return Err(ExpandError::BadName(inner.to_owned()));
            }
            match (lookup(name), fallback) {
                (Some(value), Some(fallback)) if value.is_empty() => out.push_str(fallback),
                (Some(value), _) => out.push_str(&value),
                (None, Some(fallback)) => out.push_str(fallback),
                (None, None) => return Err(ExpandError::Unset(name.to_owned())),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.com".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_and_fallbacks() {
        assert_eq!(
            expand("https://${HOST}/v1", &env).unwrap(),
            "https://example.com/v1"
        );
        assert_eq!(expand("${MISSING:-8080}", &env).unwrap(), "8080");
        assert_eq!(expand("${EMPTY:-x}", &env).unwrap(), "x");
        assert_eq!(expand("${EMPTY}", &env).unwrap(), "");
        assert_eq!(expand("${HOST:-other}", &env).unwrap(), "example.com");
        assert_eq!(expand("${MISSING:-}", &env).unwrap(), "");
        assert_eq!(
            expand("a$$b $c ${HOST}$", &env).unwrap(),
            "a$b $c example.com$"
        );
        assert_eq!(expand("no dollars", &env).unwrap(), "no dollars");
    }

    #[test]
    fn reports_unset_unterminated_and_bad_names() {
        assert_eq!(
            expand("${NOPE}", &env),
            Err(ExpandError::Unset("NOPE".into()))
        );
        assert_eq!(expand("x ${HOST", &env), Err(ExpandError::Unterminated));
        assert_eq!(
            expand("${1A}", &env),
            Err(ExpandError::BadName("1A".into()))
        );
        assert_eq!(
            expand("${}", &env),
            Err(ExpandError::BadName(String::new()))
        );
        let message = ExpandError::Unset("TOKEN".into()).to_string();
        assert!(message.contains("`TOKEN` is not set"), "{message}");
    }
}
