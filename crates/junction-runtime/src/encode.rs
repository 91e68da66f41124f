//! Percent-encoding for the upstream URL, and base64 for basic credentials.
//!
//! A path value is encoded as *one segment*: every byte outside RFC 3986's unreserved set
//! (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`, so `/`, `?`, `#`, `%` and spaces in a value can
//! never change the upstream path. Query names and values use the same set. Literal parts
//! of a template are kept as written except for characters that are never valid in a path.

use std::fmt::Write as _;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but RFC 3986 unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Characters never valid in a path; `%`, `/` and sub-delimiters stay as the template wrote them.
const PATH_LITERAL: &AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'^')
    .add(b'|')
    .add(b'\\')
    .add(b'[')
    .add(b']');

/// Appends `value` encoded as (part of) one path segment; `double` encodes the result again
/// (`x-ms-url-encoding: double`).
pub fn push_segment(out: &mut String, value: &str, double: bool) {
    if double {
        let once = utf8_percent_encode(value, COMPONENT).to_string();
        let _ = write!(out, "{}", utf8_percent_encode(&once, COMPONENT));
    } else {
        let _ = write!(out, "{}", utf8_percent_encode(value, COMPONENT));
    }
}

/// Appends a query name or value.
pub fn push_component(out: &mut String, value: &str) {
    let _ = write!(out, "{}", utf8_percent_encode(value, COMPONENT));
}

/// Appends a literal piece of a path template.
pub fn push_path_literal(out: &mut String, literal: &str) {
    let _ = write!(out, "{}", utf8_percent_encode(literal, PATH_LITERAL));
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn segment(value: &str, double: bool) -> String {
        let mut out = String::new();
        push_segment(&mut out, value, double);
        out
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Whether `text` holds only unreserved characters and `%XX` escapes.
        fn only_unreserved_and_escapes(text: &str) -> bool {
            let bytes = text.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'%' if bytes.len() > i + 2
                        && bytes[i + 1].is_ascii_hexdigit()
                        && bytes[i + 2].is_ascii_hexdigit() =>
                    {
                        i += 3;
                    }
                    b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => i += 1,
                    _ => return false,
                }
            }
            true
        }

        fn decoded(text: &str) -> String {
            percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .unwrap()
                .into_owned()
        }

        proptest! {
            /// Any value (any Unicode, `/`, `?`, `#`, `%`, spaces, controls) becomes one
            /// path segment or query component that decodes back to it exactly; with
            /// `x-ms-url-encoding: double`, after two decodings.
            #[test]
            fn every_value_round_trips_as_one_component(value in "\\PC*|[/?#%& +=;,\\x00-\\x1f]{0,12}") {
                let once = segment(&value, false);
                prop_assert!(only_unreserved_and_escapes(&once), "{}", once);
                prop_assert_eq!(decoded(&once), value.clone());
                let twice = segment(&value, true);
                prop_assert!(only_unreserved_and_escapes(&twice), "{}", twice);
                prop_assert_eq!(decoded(&decoded(&twice)), value.clone());
                let mut component = String::new();
                push_component(&mut component, &value);
                prop_assert_eq!(component, once);
            }

            /// A template's literal text keeps what it wrote, and never gains a character
            /// that ends the path (`?`, `#`) or is invalid in one.
            #[test]
            fn literals_cannot_end_the_path(literal in "\\PC{0,20}") {
                let mut out = String::new();
                push_path_literal(&mut out, &literal);
                prop_assert!(!out.contains(['?', '#', ' ', '"', '<', '>', '{', '}', '\\']), "{}", out);
                prop_assert!(out.is_ascii() || out == literal, "{}", out);
            }
        }
    }

    #[test]
    fn a_value_stays_one_segment() {
        assert_eq!(segment("a/b", false), "a%2Fb");
        assert_eq!(segment("?x", false), "%3Fx");
        assert_eq!(segment("#f", false), "%23f");
        assert_eq!(segment("a b", false), "a%20b");
        assert_eq!(segment("100%", false), "100%25");
        assert_eq!(segment("..", false), "..");
        assert_eq!(segment("ü", false), "%C3%BC");
        assert_eq!(segment("A-z_0.9~", false), "A-z_0.9~");
    }

    #[test]
    fn double_encoding_encodes_the_percent_signs_again() {
        assert_eq!(segment("a/b", true), "a%252Fb");
        assert_eq!(segment("a b", true), "a%2520b");
        assert_eq!(segment("plain", true), "plain");
    }

    #[test]
    fn template_literals_keep_path_characters() {
        let mut out = String::new();
        push_path_literal(&mut out, "$x:(y)@z%20 ?");
        assert_eq!(out, "$x:(y)@z%20%20%3F");
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pa ss"), "dXNlcjpwYSBzcw==");
    }
}
