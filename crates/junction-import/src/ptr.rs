//! JSON pointers: built lazily while walking a document, rendered only when needed.
//!
//! Walking a large definition visits hundreds of thousands of nodes, but only a handful of
//! them ever end up in a diagnostic. A [`Ptr`] is therefore a chain of borrowed segments on
//! the stack, free to extend, and turned into an RFC 6901 string only by [`Ptr::render`].

use std::borrow::Cow;
use std::fmt;

use serde_json::Value;

/// One step of a pointer.
#[derive(Debug, Clone, Copy)]
enum Seg<'a> {
    /// The document root.
    Root,
    /// An already rendered (escaped) pointer, e.g. the target of a `$ref`.
    Rendered(&'a str),
    Key(&'a str),
    Index(usize),
}

/// A JSON pointer under construction: a segment and the pointer it extends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ptr<'a> {
    parent: Option<&'a Ptr<'a>>,
    seg: Seg<'a>,
}

impl Ptr<'static> {
    /// The whole document (`""`).
    pub(crate) const ROOT: Ptr<'static> = Ptr {
        parent: None,
        seg: Seg::Root,
    };
}

impl<'a> Ptr<'a> {
    /// A pointer given as an escaped string, such as the target of a `$ref`.
    pub(crate) fn rendered(pointer: &'a str) -> Ptr<'a> {
        Ptr {
            parent: None,
            seg: Seg::Rendered(pointer),
        }
    }

    /// The member `key` of the object at `self`.
    pub(crate) fn key<'b>(&'b self, key: &'b str) -> Ptr<'b> {
        Ptr {
            parent: Some(self),
            seg: Seg::Key(key),
        }
    }

    /// The element `index` of the array at `self`.
    pub(crate) fn index(&self, index: usize) -> Ptr<'_> {
        Ptr {
            parent: Some(self),
            seg: Seg::Index(index),
        }
    }

    /// The RFC 6901 string of this pointer.
    pub(crate) fn render(&self) -> String {
        let mut segs = Vec::new();
        let mut cur = Some(self);
        while let Some(p) = cur {
            segs.push(p.seg);
            cur = p.parent;
        }
        let mut out = String::new();
        for seg in segs.iter().rev() {
            match *seg {
                Seg::Root => {}
                Seg::Rendered(s) => out.push_str(s),
                Seg::Key(k) => push_token(&mut out, k),
                Seg::Index(i) => {
                    out.push('/');
                    out.push_str(&i.to_string());
                }
            }
        }
        out
    }
}

impl fmt::Display for Ptr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// Escapes one reference token (`~` → `~0`, `/` → `~1`).
pub(crate) fn escape_token(token: &str) -> Cow<'_, str> {
    if token.contains(['~', '/']) {
        Cow::Owned(token.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(token)
    }
}

/// Appends `/token`, escaped, to a rendered pointer.
pub(crate) fn push_token(out: &mut String, token: &str) {
    out.push('/');
    out.push_str(&escape_token(token));
}

/// Renders a list of unescaped tokens as a pointer.
pub(crate) fn render_tokens(tokens: &[String]) -> String {
    let mut out = String::new();
    for t in tokens {
        push_token(&mut out, t);
    }
    out
}

/// Undoes the escaping of one reference token.
pub(crate) fn unescape_token(token: &str) -> String {
    if token.contains('~') {
        token.replace("~1", "/").replace("~0", "~")
    } else {
        token.to_owned()
    }
}

/// A `$ref` value, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RefTarget {
    /// A pointer into this document, as unescaped tokens (`#` alone gives no tokens).
    Local(Vec<String>),
    /// Anything else: another file, a URL, or a fragment that is not a JSON pointer.
    External,
}

/// Reads a `$ref` string: `#/a/b%20c/d~1e` → `Local(["a", "b c", "d/e"])`.
pub(crate) fn parse_ref(reference: &str) -> RefTarget {
    let Some(fragment) = reference.trim().strip_prefix('#') else {
        return RefTarget::External;
    };
    if fragment.is_empty() {
        return RefTarget::Local(Vec::new());
    }
    let Some(path) = fragment.strip_prefix('/') else {
        return RefTarget::External;
    };
    let decoded = percent_decode(path);
    RefTarget::Local(decoded.split('/').map(unescape_token).collect())
}

/// Decodes `%XX` escapes; malformed escapes are kept as written.
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|c| hex(*c)),
                bytes.get(i + 2).and_then(|c| hex(*c)),
            )
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The value at `tokens` below `root`, if any.
pub(crate) fn get<'v>(root: &'v Value, tokens: &[String]) -> Option<&'v Value> {
    let mut cur = root;
    for t in tokens {
        cur = match cur {
            Value::Object(map) => map.get(t.as_str())?,
            Value::Array(items) => {
                if t.is_empty() || (t.len() > 1 && t.starts_with('0')) {
                    return None;
                }
                let i: usize = t.parse().ok()?;
                items.get(i)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_escaped_tokens() {
        let root = Ptr::ROOT;
        let paths = root.key("paths");
        let item = paths.key("/items/{id}");
        let op = item.key("get");
        let params = op.key("parameters");
        let p = params.index(2);
        assert_eq!(p.render(), "/paths/~1items~1{id}/get/parameters/2");
        assert_eq!(root.render(), "");
        let tilde = root.key("a~b");
        assert_eq!(tilde.render(), "/a~0b");
        let base = Ptr::rendered("/definitions/X");
        let child = base.key("properties");
        assert_eq!(child.render(), "/definitions/X/properties");
    }

    #[test]
    fn parses_refs() {
        assert_eq!(
            parse_ref("#/definitions/Foo%20Bar/properties/a~1b~0c"),
            RefTarget::Local(vec![
                "definitions".into(),
                "Foo Bar".into(),
                "properties".into(),
                "a/b~c".into()
            ])
        );
        assert_eq!(parse_ref("#"), RefTarget::Local(vec![]));
        assert_eq!(parse_ref("other.json#/x"), RefTarget::External);
        assert_eq!(parse_ref("#definitions/x"), RefTarget::External);
        assert_eq!(
            parse_ref("#/a/%zz"),
            RefTarget::Local(vec!["a".into(), "%zz".into()])
        );
    }

    #[test]
    fn gets_values() {
        let doc = json!({"a": [{"b/c": 1}], "0": 2});
        let toks = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(get(&doc, &toks(&["a", "0", "b/c"])), Some(&json!(1)));
        assert_eq!(get(&doc, &toks(&["a", "01"])), None);
        assert_eq!(get(&doc, &toks(&["a", "1"])), None);
        assert_eq!(get(&doc, &toks(&["0"])), Some(&json!(2)));
    }
}
