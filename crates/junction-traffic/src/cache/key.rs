//! Cache keys: connector, operation, the bound arguments in a canonical order, and the
//! vary dimensions (connection identity, chosen request headers, the body's hash). A view's
//! keys put [`VIEWS`] and the view's name in place of connector and operation, and its
//! bound inputs in place of the arguments.
//!
//! A key reads like a path, so purging by prefix is meaningful:
//!
//! ```text
//! pets/GetPet/path.petId=42&query.fields=name|conn=default|h.accept=application%2Fjson
//! pets/Search/query.q=cats|conn=default|body=3f5a…   (a POST query, keyed by its body)
//! @views/home/input.employee=e1&input.news=3|conn=shared
//! ```
//!
//! Arguments are sorted by place and name, so the order of query parameters in the URL
//! never matters; objects are written with their keys sorted; array order is kept (it may
//! mean something). Values are percent-encoded, so `&`, `=`, `|` and `/` inside a value
//! cannot imitate the structure. An argument list longer than [`MAX_ARGS_TEXT`] is
//! replaced by its SHA-256. Hashes are the same on every replica.

use std::fmt::Write as _;

use http::{HeaderMap, HeaderValue};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::CachePolicy;

/// Longest argument text kept readable in a key; longer ones are hashed.
pub const MAX_ARGS_TEXT: usize = 512;

/// The prefix of every key of `connector`.
pub fn connector_prefix(connector: &str) -> String {
    let mut out = String::with_capacity(connector.len() + 1);
    push_encoded(&mut out, connector);
    out.push('/');
    out
}

/// The prefix of every key of one operation.
pub fn operation_prefix(connector: &str, operation: &str) -> String {
    let mut out = connector_prefix(connector);
    push_encoded(&mut out, operation);
    out.push('/');
    out
}

/// What stands for the connector in the keys of views. Connector names never hold `@`, so
/// purging a connector never touches a view's entries.
pub const VIEWS: &str = "@views";

/// The prefix of every key of view `name`.
pub fn view_prefix(name: &str) -> String {
    operation_prefix(VIEWS, name)
}

/// Builds one key. Feed it the arguments (any order), then the vary dimensions.
#[derive(Debug)]
pub struct KeyBuilder {
    prefix: String,
    args: Vec<String>,
    vary: String,
}

impl KeyBuilder {
    pub fn new(connector: &str, operation: &str) -> KeyBuilder {
        KeyBuilder {
            prefix: operation_prefix(connector, operation),
            args: Vec::new(),
            vary: String::new(),
        }
    }

    /// One bound argument: where it was read from (`path`, `query`, …), its name, its value.
    pub fn arg(&mut self, place: &str, name: &str, value: &Value) -> &mut Self {
        let mut text = String::with_capacity(place.len() + name.len() + 16);
        text.push_str(place);
        text.push('.');
        push_encoded(&mut text, name);
        text.push('=');
        match value {
            Value::String(s) => push_encoded(&mut text, s),
            other => {
                let mut canonical = String::new();
                write_canonical(&mut canonical, other);
                push_encoded(&mut text, &canonical);
            }
        }
        self.args.push(text);
        self
    }

    /// The connection whose credentials the backend sees.
    pub fn connection(&mut self, id: &str) -> &mut Self {
        self.vary.push_str("|conn=");
        push_encoded(&mut self.vary, id);
        self
    }

    /// A request header the response may depend on; `None` when the request lacks it.
    pub fn header(&mut self, name: &str, value: Option<&[u8]>) -> &mut Self {
        if let Some(value) = value {
            self.vary.push_str("|h.");
            self.vary.push_str(name);
            self.vary.push('=');
            push_encoded(&mut self.vary, &String::from_utf8_lossy(value));
        }
        self
    }

    /// The vary dimensions of `policy`: `connection` (when the policy varies on it) and
    /// its `vary_headers`, read from `headers`.
    pub fn vary(
        &mut self,
        policy: &CachePolicy,
        connection: &str,
        headers: &HeaderMap,
    ) -> &mut Self {
        if policy.vary_connection {
            self.connection(connection);
        }
        self.headers(&policy.vary_headers, headers)
    }

    /// The request headers `names`, read from `headers`.
    pub fn headers(&mut self, names: &[http::HeaderName], headers: &HeaderMap) -> &mut Self {
        for name in names {
            self.header(name.as_str(), headers.get(name).map(HeaderValue::as_bytes));
        }
        self
    }

    /// The request body, for methods whose responses depend on it (opt-in POST queries).
    pub fn body(&mut self, bytes: &[u8]) -> &mut Self {
        self.vary.push_str("|body=");
        push_hex(&mut self.vary, &Sha256::digest(bytes));
        self
    }

    pub fn finish(mut self) -> String {
        self.args.sort_unstable();
        let args = self.args.join("&");
        let mut key = self.prefix;
        if args.len() > MAX_ARGS_TEXT {
            key.push('~');
            push_hex(&mut key, &Sha256::digest(args.as_bytes()));
        } else {
            key.push_str(&args);
        }
        key.push_str(&self.vary);
        key
    }
}

/// JSON with object keys sorted, so equal values give equal text.
fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(out, value);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Percent-encodes everything but unreserved characters and a few harmless ones.
fn push_encoded(out: &mut String, text: &str) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:,;@!$'()*+".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use serde_json::json;

    use super::*;

    mod properties {
        use std::collections::BTreeMap;

        use proptest::prelude::*;

        use super::*;

        /// Arguments as the binder gives them: place, name, and a string value (what
        /// travels upstream), at most one per place and name.
        fn args() -> impl Strategy<Value = BTreeMap<(String, String), String>> {
            let place = prop_oneof![Just("path"), Just("query"), Just("header"), Just("body")];
            proptest::collection::btree_map(
                (place.prop_map(str::to_owned), "\\PC{0,12}"),
                "\\PC{0,24}",
                0..6,
            )
        }

        fn key_of(args: &[(&(String, String), &String)], connection: &str) -> String {
            let mut key = KeyBuilder::new("c", "o");
            for ((place, name), value) in args {
                key.arg(place, name, &Value::String((*value).clone()));
            }
            key.connection(connection);
            key.finish()
        }

        proptest! {
            /// The same arguments in any order give the same key, on every replica (no
            /// hash seed, no map order).
            #[test]
            fn the_order_of_arguments_does_not_matter(args in args(), seed in any::<u64>()) {
                let list: Vec<_> = args.iter().collect();
                let mut shuffled = list.clone();
                // A deterministic shuffle from the seed.
                let mut state = seed | 1;
                for i in (1..shuffled.len()).rev() {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let j = usize::try_from(state % (i as u64 + 1)).unwrap();
                    shuffled.swap(i, j);
                }
                prop_assert_eq!(key_of(&list, "conn"), key_of(&shuffled, "conn"));
            }

            /// Different arguments, or another connection, give another key: no value,
            /// name or connection can imitate the key's structure.
            #[test]
            fn different_arguments_give_different_keys(
                a in args(), b in args(), conn_a in "\\PC{0,10}", conn_b in "\\PC{0,10}",
            ) {
                let key_a = key_of(&a.iter().collect::<Vec<_>>(), &conn_a);
                let key_b = key_of(&b.iter().collect::<Vec<_>>(), &conn_b);
                prop_assert_eq!(key_a == key_b, a == b && conn_a == conn_b, "{} / {}", key_a, key_b);
            }
        }
    }

    #[test]
    fn arguments_are_order_independent() {
        let mut a = KeyBuilder::new("pets", "ListPets");
        a.arg("query", "limit", &json!(10))
            .arg("query", "status", &json!("sold"));
        let mut b = KeyBuilder::new("pets", "ListPets");
        b.arg("query", "status", &json!("sold"))
            .arg("query", "limit", &json!(10));
        assert_eq!(a.finish(), b.finish());

        let mut a = KeyBuilder::new("pets", "Find");
        a.arg("query", "filter", &json!({"b": 1, "a": [2, 1]}));
        let mut b = KeyBuilder::new("pets", "Find");
        b.arg("query", "filter", &json!({"a": [2, 1], "b": 1}));
        assert_eq!(a.finish(), b.finish());

        // Array order is significant.
        let mut c = KeyBuilder::new("pets", "Find");
        c.arg("query", "filter", &json!({"a": [1, 2], "b": 1}));
        let mut d = KeyBuilder::new("pets", "Find");
        d.arg("query", "filter", &json!({"a": [2, 1], "b": 1}));
        assert_ne!(c.finish(), d.finish());
    }

    #[test]
    fn keys_read_like_paths_and_values_cannot_forge_structure() {
        let mut key = KeyBuilder::new("pets", "GetPet");
        key.arg("path", "petId", &json!("42"))
            .connection("default")
            .header("accept", Some(b"application/json"))
            .header("accept-language", None);
        let key = key.finish();
        assert_eq!(
            key,
            "pets/GetPet/path.petId=42|conn=default|h.accept=application%2Fjson"
        );
        assert!(key.starts_with(&operation_prefix("pets", "GetPet")));
        assert!(key.starts_with(&connector_prefix("pets")));

        let mut forged = KeyBuilder::new("pets", "GetPet");
        forged.arg("path", "petId", &json!("42|conn=default"));
        let forged = forged.finish();
        assert_eq!(forged, "pets/GetPet/path.petId=42%7Cconn%3Ddefault");
        assert!(!forged.contains("|conn="));

        // A string "1" and a number 1 travel upstream as the same text: one key.
        let mut s = KeyBuilder::new("c", "o");
        s.arg("query", "n", &json!("1"));
        let mut n = KeyBuilder::new("c", "o");
        n.arg("query", "n", &json!(1));
        assert_eq!(s.finish(), n.finish());
    }

    #[test]
    fn identity_headers_and_bodies_vary_the_key() {
        let base = |f: &dyn Fn(&mut KeyBuilder)| {
            let mut key = KeyBuilder::new("c", "o");
            key.arg("query", "q", &json!("x"));
            f(&mut key);
            key.finish()
        };
        let alice = base(&|k| {
            k.connection("alice");
        });
        let bob = base(&|k| {
            k.connection("bob");
        });
        assert_ne!(alice, bob);
        let en = base(&|k| {
            k.header("accept-language", Some(b"en"));
        });
        let fr = base(&|k| {
            k.header("accept-language", Some(b"fr"));
        });
        assert_ne!(en, fr);
        let one = base(&|k| {
            k.body(b"{\"q\":1}");
        });
        let two = base(&|k| {
            k.body(b"{\"q\":2}");
        });
        assert_ne!(one, two);
        assert_eq!(one.len(), base(&|_| {}).len() + "|body=".len() + 64);
    }

    #[test]
    fn long_arguments_are_hashed_but_keep_the_prefix() {
        let mut key = KeyBuilder::new("c", "o");
        key.arg("query", "q", &json!("x".repeat(2000)));
        let key = key.finish();
        assert!(key.starts_with("c/o/~"), "{key}");
        assert_eq!(key.len(), "c/o/~".len() + 64);
    }

    #[test]
    fn view_keys_never_share_a_prefix_with_a_connector() {
        let mut key = KeyBuilder::new(VIEWS, "home");
        key.arg("input", "employee", &json!("e1"))
            .arg("input", "news", &json!(3))
            .connection("shared");
        let key = key.finish();
        assert_eq!(
            key,
            "@views/home/input.employee=e1&input.news=3|conn=shared"
        );
        assert!(key.starts_with(&view_prefix("home")));
        assert!(!key.starts_with(&connector_prefix("views")));
    }

    #[test]
    fn names_with_slashes_are_encoded() {
        assert_eq!(operation_prefix("a", "b/c"), "a/b%2Fc/");
    }
}
