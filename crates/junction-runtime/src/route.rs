//! Route: find the operation for a request path and method.
//!
//! Each connector has one [`RouteTable`], a tree with one level per path segment, built at
//! load from the operations' path templates. A template segment is a run of literal and
//! parameter pieces, so `/data/1/{entity}({id})`, `/v{v}/Email` and `/{name}.json` all work.
//!
//! Matching works on the request path split at `/` *before* percent-decoding, so an encoded
//! `%2F` inside a value stays in its segment. Each segment is decoded once and compared with
//! the templates: a literal segment beats a pattern, a pattern with more literal characters
//! beats one with fewer, and the search backtracks when a branch ends without a match. When
//! the path matches but not the method, the methods of the first matching path make the
//! `Allow` header of the 405.
//!
//! Literal segments are found with a cheap multiplicative hash instead of SipHash: the keys
//! are fixed when the table is built from the definitions, so a request can choose what it
//! looks up but never what collides in the table.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use junction_model::Method;

/// One piece of a template segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Literal(String),
    Param(String),
}

/// Splits a path template into segments of pieces: `/a/{b}.json` → `[[a], [{b}, .json]]`.
/// The template `/` is one empty segment.
pub(crate) fn parse_template(path: &str) -> Vec<Vec<Piece>> {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.split('/').map(parse_segment).collect()
}

fn parse_segment(segment: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = segment;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        let name = &rest[open + 1..close];
        if name.is_empty() {
            literal.push_str(&rest[..=close]);
        } else {
            literal.push_str(&rest[..open]);
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Param(name.to_owned()));
        }
        rest = &rest[close + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    pieces
}

/// The parameter names of a template, in the order the matcher captures them.
pub(crate) fn template_params(segments: &[Vec<Piece>]) -> impl Iterator<Item = &str> {
    segments.iter().flatten().filter_map(|piece| match piece {
        Piece::Param(name) => Some(name.as_str()),
        Piece::Literal(_) => None,
    })
}

/// A matching-only form of a segment: literals (percent-decoded) and holes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hole {
    Literal(String),
    Param,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    pieces: Vec<Hole>,
}

impl Pattern {
    fn literal_len(&self) -> usize {
        self.pieces
            .iter()
            .map(|p| match p {
                Hole::Literal(l) => l.len(),
                Hole::Param => 0,
            })
            .sum()
    }

    fn holes(&self) -> usize {
        self.pieces.iter().filter(|p| **p == Hole::Param).count()
    }

    /// Matches `segment`, pushing one capture per hole. On failure `captures` may hold
    /// partial results; the caller truncates.
    fn matches(&self, segment: &str, captures: &mut Vec<String>) -> bool {
        match_pieces(&self.pieces, segment, captures)
    }
}

fn match_pieces(pieces: &[Hole], segment: &str, captures: &mut Vec<String>) -> bool {
    match pieces {
        [] => segment.is_empty(),
        [Hole::Literal(literal), rest @ ..] => segment
            .strip_prefix(literal.as_str())
            .is_some_and(|tail| match_pieces(rest, tail, captures)),
        [Hole::Param] => {
            if segment.is_empty() {
                return false;
            }
            captures.push(segment.to_owned());
            true
        }
        [Hole::Param, Hole::Literal(next), rest @ ..] => {
            // Try every place the next literal occurs, leftmost first; a value is never empty.
            let mark = captures.len();
            for (at, _) in segment.match_indices(next.as_str()) {
                if at == 0 {
                    continue;
                }
                captures.push(segment[..at].to_owned());
                if match_pieces(rest, &segment[at + next.len()..], captures) {
                    return true;
                }
                captures.truncate(mark);
            }
            false
        }
        [Hole::Param, rest @ ..] => {
            // Two adjacent parameters: the first takes one character at a time.
            let mark = captures.len();
            for (at, _) in segment.char_indices().skip(1) {
                captures.push(segment[..at].to_owned());
                if match_pieces(rest, &segment[at..], captures) {
                    return true;
                }
                captures.truncate(mark);
            }
            false
        }
    }
}

const METHODS: usize = Method::ALL.len();

fn method_index(method: Method) -> usize {
    method as usize
}

/// An Fx-style hasher (as in rustc): one rotate, xor and multiply per 8 bytes. For keys
/// that are fixed before requests look them up (route segments, backend addresses).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl FastHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            for (slot, byte) in word.iter_mut().zip(rest) {
                *slot = *byte;
            }
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Statics = HashMap<String, Node, BuildHasherDefault<FastHasher>>;

#[derive(Debug, Default)]
struct Node {
    statics: Statics,
    /// Sorted: more literal characters first, then fewer holes, then insertion order.
    patterns: Vec<(Pattern, Node)>,
    methods: [Option<u32>; METHODS],
}

impl Node {
    fn is_endpoint(&self) -> bool {
        self.methods.iter().any(Option::is_some)
    }

    fn allowed(&self) -> Vec<Method> {
        Method::ALL
            .into_iter()
            .filter(|m| self.methods[method_index(*m)].is_some())
            .collect()
    }
}

/// The result of a lookup.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Operation index, and the decoded path values in template order.
    Found(u32, Vec<String>),
    /// The path exists; these are its methods.
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

/// The routes of one connector.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    root: Node,
}

impl RouteTable {
    /// Adds operation `op` at `template` for `method`. When another operation already has the
    /// same method on an equivalent template, keeps it and returns its index.
    pub(crate) fn insert(
        &mut self,
        template: &[Vec<Piece>],
        method: Method,
        op: u32,
    ) -> Result<(), u32> {
        let mut node = &mut self.root;
        for segment in template {
            node = match segment.as_slice() {
                [Piece::Literal(literal)] => {
                    node.statics.entry(decode_literal(literal)).or_default()
                }
                pieces => {
                    let pattern = Pattern {
                        pieces: pieces
                            .iter()
                            .map(|p| match p {
                                Piece::Literal(l) => Hole::Literal(decode_literal(l)),
                                Piece::Param(_) => Hole::Param,
                            })
                            .collect(),
                    };
                    let at = match node.patterns.iter().position(|(p, _)| *p == pattern) {
                        Some(at) => at,
                        None => {
                            let key = |p: &Pattern| (std::cmp::Reverse(p.literal_len()), p.holes());
                            let at = node
                                .patterns
                                .iter()
                                .position(|(p, _)| key(p) > key(&pattern))
                                .unwrap_or(node.patterns.len());
                            node.patterns.insert(at, (pattern, Node::default()));
                            at
                        }
                    };
                    match node.patterns.get_mut(at) {
                        Some((_, child)) => child,
                        None => return Err(op),
                    }
                }
            };
        }
        let slot = &mut node.methods[method_index(method)];
        match slot {
            Some(existing) => Err(*existing),
            None => {
                *slot = Some(op);
                Ok(())
            }
        }
    }

    /// Finds the operation for decoded `segments` and `method` (`None` for a method no
    /// operation can have, which still tells 404 from 405).
    pub(crate) fn lookup(
        &self,
        segments: &[std::borrow::Cow<'_, str>],
        method: Option<Method>,
    ) -> Lookup {
        let mut captures = Vec::new();
        let mut first = None;
        let wanted = method.map(method_index);
        match search(&self.root, segments, wanted, &mut captures, &mut first) {
            Some(op) => Lookup::Found(op, captures),
            None => match first {
                Some(node) => Lookup::MethodNotAllowed(node.allowed()),
                None => Lookup::NotFound,
            },
        }
    }
}

fn search<'a>(
    node: &'a Node,
    segments: &[std::borrow::Cow<'_, str>],
    method: Option<usize>,
    captures: &mut Vec<String>,
    first: &mut Option<&'a Node>,
) -> Option<u32> {
    let Some((segment, rest)) = segments.split_first() else {
        if !node.is_endpoint() {
            return None;
        }
        first.get_or_insert(node);
        return method.and_then(|m| node.methods[m]);
    };
    if let Some(child) = node.statics.get(segment.as_ref())
        && let Some(op) = search(child, rest, method, captures, first)
    {
        return Some(op);
    }
    for (pattern, child) in &node.patterns {
        let mark = captures.len();
        if pattern.matches(segment, captures)
            && let Some(op) = search(child, rest, method, captures, first)
        {
            return Some(op);
        }
        captures.truncate(mark);
    }
    None
}

/// Template literals are compared with decoded request segments, so decode them too.
fn decode_literal(literal: &str) -> String {
    percent_encoding::percent_decode_str(literal)
        .decode_utf8_lossy()
        .into_owned()
}

/// Converts an HTTP method to the model's, or `None` for one no operation can declare.
pub(crate) fn model_method(method: &http::Method) -> Option<Method> {
    Some(match *method {
        http::Method::GET => Method::Get,
        http::Method::POST => Method::Post,
        http::Method::PUT => Method::Put,
        http::Method::DELETE => Method::Delete,
        http::Method::PATCH => Method::Patch,
        http::Method::HEAD => Method::Head,
        http::Method::OPTIONS => Method::Options,
        http::Method::TRACE => Method::Trace,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::borrow::Cow;

    use super::*;

    fn table(routes: &[(&str, Method)]) -> RouteTable {
        let mut table = RouteTable::default();
        for (i, (path, method)) in routes.iter().enumerate() {
            table
                .insert(&parse_template(path), *method, u32::try_from(i).unwrap())
                .unwrap();
        }
        table
    }

    fn find(table: &RouteTable, path: &str, method: Method) -> Lookup {
        let path = path.strip_prefix('/').unwrap();
        let segments: Vec<Cow<'_, str>> = path
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .unwrap()
            })
            .collect();
        table.lookup(&segments, Some(method))
    }

    fn found(op: u32, captures: &[&str]) -> Lookup {
        Lookup::Found(op, captures.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn parses_templates_into_pieces() {
        use Piece::{Literal as L, Param as P};
        assert_eq!(
            parse_template("/data/1/{entity}({id})"),
            vec![
                vec![L("data".into())],
                vec![L("1".into())],
                vec![
                    P("entity".into()),
                    L("(".into()),
                    P("id".into()),
                    L(")".into())
                ]
            ]
        );
        assert_eq!(parse_template("/"), vec![vec![L(String::new())]]);
        assert_eq!(
            parse_template("/v{v}/x${id}"),
            vec![
                vec![L("v".into()), P("v".into())],
                vec![L("x$".into()), P("id".into())]
            ]
        );
        assert_eq!(
            parse_template("/a{/b{}"),
            vec![vec![L("a{".into())], vec![L("b{}".into())]]
        );
    }

    #[test]
    fn matches_whole_and_mid_segment_parameters() {
        let t = table(&[
            ("/items/{id}", Method::Get),
            ("/consultations/{cid}.json", Method::Get),
            ("/data/1/{entity}({id})", Method::Get),
            ("/v{v}/Email", Method::Post),
            ("/document-processes/${pid}", Method::Get),
            ("/", Method::Get),
        ]);
        assert_eq!(find(&t, "/items/42", Method::Get), found(0, &["42"]));
        assert_eq!(find(&t, "/items/a%2Fb", Method::Get), found(0, &["a/b"]));
        assert_eq!(
            find(&t, "/consultations/abc.json", Method::Get),
            found(1, &["abc"])
        );
        assert_eq!(
            find(&t, "/consultations/a.b.json", Method::Get),
            found(1, &["a.b"])
        );
        assert_eq!(
            find(&t, "/data/1/accounts(7)", Method::Get),
            found(2, &["accounts", "7"])
        );
        assert_eq!(
            find(&t, "/data/1/a(b)(c)", Method::Get),
            found(2, &["a", "b)(c"])
        );
        assert_eq!(find(&t, "/v2/Email", Method::Post), found(3, &["2"]));
        assert_eq!(
            find(&t, "/document-processes/$9", Method::Get),
            found(4, &["9"])
        );
        assert_eq!(find(&t, "/", Method::Get), found(5, &[]));
        assert_eq!(
            find(&t, "/consultations/.json", Method::Get),
            Lookup::NotFound
        );
        assert_eq!(find(&t, "/items", Method::Get), Lookup::NotFound);
        assert_eq!(find(&t, "/items/1/2", Method::Get), Lookup::NotFound);
        assert_eq!(find(&t, "/nothing", Method::Get), Lookup::NotFound);
    }

    #[test]
    fn static_beats_parameter_and_search_backtracks() {
        let t = table(&[
            ("/items/{id}", Method::Get),
            ("/items/search", Method::Get),
            ("/items/{id}/tags", Method::Get),
            ("/items/search/{q}", Method::Get),
            ("/files/{name}", Method::Get),
            ("/files/{name}.json", Method::Get),
        ]);
        assert_eq!(find(&t, "/items/search", Method::Get), found(1, &[]));
        assert_eq!(find(&t, "/items/7", Method::Get), found(0, &["7"]));
        // `search` is static, but only `{id}/tags` continues with `tags`.
        assert_eq!(
            find(&t, "/items/search/tags", Method::Get),
            found(3, &["tags"])
        );
        assert_eq!(find(&t, "/items/x/tags", Method::Get), found(2, &["x"]));
        // More literal characters win.
        assert_eq!(find(&t, "/files/a.json", Method::Get), found(5, &["a"]));
        assert_eq!(find(&t, "/files/a.xml", Method::Get), found(4, &["a.xml"]));
    }

    #[test]
    fn wrong_method_lists_the_allowed_ones() {
        let t = table(&[
            ("/items/{id}", Method::Get),
            ("/items/{itemId}", Method::Delete),
            ("/items", Method::Post),
        ]);
        assert_eq!(find(&t, "/items/1", Method::Delete), found(1, &["1"]));
        assert_eq!(
            find(&t, "/items/1", Method::Put),
            Lookup::MethodNotAllowed(vec![Method::Get, Method::Delete])
        );
        assert_eq!(
            t.lookup(&[Cow::Borrowed("items")], None),
            Lookup::MethodNotAllowed(vec![Method::Post])
        );
    }

    #[test]
    fn segment_hashes_differ_and_repeat() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<FastHasher>::default();
        let keys = [
            "",
            "a",
            "b",
            "items",
            "itemz",
            "items/",
            "0123456789abcdef",
            "0123456789abcdeg",
        ];
        let hashes: Vec<u64> = keys.iter().map(|k| build.hash_one(k)).collect();
        for (i, a) in hashes.iter().enumerate() {
            assert_eq!(*a, build.hash_one(keys[i]));
            for b in &hashes[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn duplicates_keep_the_first() {
        let mut t = RouteTable::default();
        t.insert(&parse_template("/a/{x}"), Method::Get, 0).unwrap();
        assert_eq!(t.insert(&parse_template("/a/{y}"), Method::Get, 1), Err(0));
        assert_eq!(t.insert(&parse_template("/a/{y}"), Method::Put, 2), Ok(()));
    }
}
