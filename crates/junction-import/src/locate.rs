//! JSON pointer → line:column, for all the pointers of one file in one scan of its text.
//!
//! No position map is built while parsing: most files need none, and a map of every node of
//! a large definition costs more than the parse. Instead, once a file's diagnostics are
//! known, [`locate`] walks the text with a small tokenizer that tracks the pointer of the
//! current value. Only the branches that lead to a wanted pointer are tokenized; everything
//! else is skipped by bracket counting. A pointer that names nothing in the text (a missing
//! key, say) gets the position of its nearest existing ancestor. YAML is located the same
//! way from the events of serde-saphyr's parser.

use std::collections::{HashMap, HashSet};

use crate::ptr::push_token;

/// 1-based line and column (in characters) of the value at each pointer, in order.
pub(crate) fn locate(text: &str, pointers: &[&str]) -> Vec<Option<(u32, u32)>> {
    let wanted = wanted(pointers);
    let mut scanner = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        wanted: &wanted,
        found: HashMap::new(),
        path: String::new(),
    };
    // A scan that meets something unexpected stops; what it found so far stays valid.
    let _ = scanner.value(0);
    let found = scanner.found;

    let mut offsets: Vec<usize> = found.values().copied().collect();
    offsets.sort_unstable();
    offsets.dedup();
    let positions = line_columns(text, &offsets);
    let found: HashMap<String, (u32, u32)> = found
        .into_iter()
        .filter_map(|(p, off)| positions.get(&off).map(|&pos| (p, pos)))
        .collect();
    nearest(pointers, &found)
}

/// The column of character `offset` (0-based, counted in the decoded string) of the JSON
/// string that starts (with its `"`) at `line`:`column`. `None` when there is no string
/// there or it is shorter.
pub(crate) fn char_in_string(text: &str, line: u32, column: u32, offset: usize) -> Option<u32> {
    let line_text = text
        .lines()
        .nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let mut chars = line_text
        .chars()
        .skip(usize::try_from(column).ok()?.checked_sub(1)?);
    if chars.next()? != '"' {
        return None;
    }
    // Raw characters consumed after the quote, decoded characters passed.
    let mut raw = 0usize;
    let mut decoded = 0usize;
    while decoded < offset {
        match chars.next()? {
            '"' => return None,
            '\\' => match chars.next()? {
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    raw += 6;
                    let unit = u16::from_str_radix(&hex, 16).ok()?;
                    // A surrogate pair is one character written as two escapes.
                    if (0xD800..0xDC00).contains(&unit) {
                        chars.by_ref().take(6).for_each(drop);
                        raw += 6;
                    }
                }
                _ => raw += 2,
            },
            _ => raw += 1,
        }
        decoded += 1;
    }
    u32::try_from(raw)
        .ok()
        .and_then(|r| column.checked_add(1 + r))
}

/// The same for YAML text, from the events of the YAML parser. Only the first document is
/// read, as the loader does.
pub(crate) fn locate_yaml(text: &str, pointers: &[&str]) -> Vec<Option<(u32, u32)>> {
    use serde_saphyr::granit_parser::{Event, Parser};

    let wanted = wanted(pointers);
    let mut found: HashMap<String, (u32, u32)> = HashMap::new();
    let mut path = String::new();
    let mut frames: Vec<Frame> = Vec::new();
    // Nesting depth inside a complex (non-scalar) mapping key, which is skipped.
    let mut skip = 0usize;
    let mut documents = 0;
    let mut parser = Parser::new_from_str(text);
    while let Some(Ok((event, span))) = parser.next_event() {
        if skip > 0 {
            match event {
                Event::MappingStart(..) | Event::SequenceStart(..) => skip += 1,
                Event::MappingEnd | Event::SequenceEnd => {
                    skip -= 1;
                    if skip == 0 {
                        key(&mut frames, &mut path, "");
                    }
                }
                _ => {}
            }
            continue;
        }
        let at = (
            u32::try_from(span.start.line()).unwrap_or(u32::MAX),
            u32::try_from(span.start.col().saturating_add(1)).unwrap_or(u32::MAX),
        );
        let expecting_key = matches!(frames.last(), Some(Frame::Map { key_next: true, .. }));
        match event {
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    break;
                }
            }
            Event::Scalar(value, ..) if expecting_key => key(&mut frames, &mut path, &value),
            Event::Alias(_) if expecting_key => key(&mut frames, &mut path, ""),
            Event::MappingStart(..) | Event::SequenceStart(..) if expecting_key => skip = 1,
            Event::Scalar(..) | Event::Alias(_) => {
                begin_value(&frames, &mut path, &wanted, &mut found, at);
                end_value(&mut frames, &mut path);
            }
            Event::MappingStart(..) => {
                begin_value(&frames, &mut path, &wanted, &mut found, at);
                frames.push(Frame::Map {
                    base: path.len(),
                    key_next: true,
                });
            }
            Event::SequenceStart(..) => {
                begin_value(&frames, &mut path, &wanted, &mut found, at);
                frames.push(Frame::Seq {
                    base: path.len(),
                    index: 0,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                frames.pop();
                end_value(&mut frames, &mut path);
            }
            _ => {}
        }
    }
    nearest(pointers, &found)
}

/// An open YAML collection: where its pointer ends and what comes next in it.
enum Frame {
    Map { base: usize, key_next: bool },
    Seq { base: usize, index: usize },
}

fn key(frames: &mut [Frame], path: &mut String, key: &str) {
    if let Some(Frame::Map { base, key_next }) = frames.last_mut() {
        path.truncate(*base);
        push_token(path, key);
        *key_next = false;
    }
}

fn begin_value(
    frames: &[Frame],
    path: &mut String,
    wanted: &HashSet<&str>,
    found: &mut HashMap<String, (u32, u32)>,
    at: (u32, u32),
) {
    if let Some(Frame::Seq { index, .. }) = frames.last() {
        path.push('/');
        path.push_str(&index.to_string());
    }
    if wanted.contains(path.as_str()) {
        found.insert(path.clone(), at);
    }
}

fn end_value(frames: &mut [Frame], path: &mut String) {
    match frames.last_mut() {
        Some(Frame::Map { base, key_next }) => {
            path.truncate(*base);
            *key_next = true;
        }
        Some(Frame::Seq { base, index }) => {
            path.truncate(*base);
            *index += 1;
        }
        None => {}
    }
}

/// The pointers asked for and all their ancestors.
fn wanted<'p>(pointers: &[&'p str]) -> HashSet<&'p str> {
    let mut wanted: HashSet<&str> = HashSet::new();
    for p in pointers {
        wanted.insert(p);
        for (i, b) in p.bytes().enumerate() {
            if b == b'/' {
                wanted.insert(p.get(..i).unwrap_or_default());
            }
        }
    }
    wanted.insert("");
    wanted
}

/// The position of each pointer, or of its nearest ancestor that was found.
fn nearest(pointers: &[&str], found: &HashMap<String, (u32, u32)>) -> Vec<Option<(u32, u32)>> {
    pointers
        .iter()
        .map(|p| {
            let mut cur: &str = p;
            loop {
                if let Some(pos) = found.get(cur) {
                    return Some(*pos);
                }
                let (parent, _) = cur.rsplit_once('/')?;
                cur = parent;
            }
        })
        .collect()
}

/// The scan stopped: malformed or unexpectedly deep text.
struct Stop;

struct Scanner<'t, 'w> {
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
    wanted: &'w HashSet<&'w str>,
    /// Pointer → byte offset of the value's first character.
    found: HashMap<String, usize>,
    /// The pointer of the value being scanned.
    path: String,
}

const MAX_DEPTH: usize = 512;

impl Scanner<'_, '_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), Stop> {
        self.skip_ws();
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Stop)
        }
    }

    /// Scans the value at `self.path`, recording it and descending only if it is wanted.
    fn value(&mut self, depth: usize) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop);
        }
        self.skip_ws();
        if !self.wanted.contains(self.path.as_str()) {
            return self.skip_value();
        }
        self.found.insert(self.path.clone(), self.pos);
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                self.skip_ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.skip_ws();
                    let key = self.string()?;
                    self.expect(b':')?;
                    let len = self.path.len();
                    push_token(&mut self.path, &key);
                    let r = self.value(depth + 1);
                    self.path.truncate(len);
                    r?;
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(Stop),
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                self.skip_ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(());
                }
                let mut index = 0usize;
                loop {
                    let len = self.path.len();
                    self.path.push('/');
                    self.path.push_str(&index.to_string());
                    let r = self.value(depth + 1);
                    self.path.truncate(len);
                    r?;
                    index += 1;
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(Stop),
                    }
                }
            }
            _ => self.skip_value(),
        }
    }

    /// Reads a string token and returns its decoded content.
    fn string(&mut self) -> Result<String, Stop> {
        let start = self.pos;
        self.skip_string()?;
        let raw = self.text.get(start..self.pos).ok_or(Stop)?;
        let inner = raw.get(1..raw.len().saturating_sub(1)).ok_or(Stop)?;
        if inner.contains('\\') {
            serde_json::from_str::<String>(raw).map_err(|_| Stop)
        } else {
            Ok(inner.to_owned())
        }
    }

    fn skip_string(&mut self) -> Result<(), Stop> {
        if self.peek() != Some(b'"') {
            return Err(Stop);
        }
        self.pos += 1;
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => self.pos += 2,
                Some(_) => self.pos += 1,
                None => return Err(Stop),
            }
        }
    }

    /// Skips one value of any kind without recording anything inside it.
    fn skip_value(&mut self) -> Result<(), Stop> {
        self.skip_ws();
        match self.peek() {
            Some(b'"') => self.skip_string(),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    match self.peek() {
                        Some(b'"') => self.skip_string()?,
                        Some(b'{' | b'[') => {
                            depth += 1;
                            self.pos += 1;
                        }
                        Some(b'}' | b']') => {
                            self.pos += 1;
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                return Ok(());
                            }
                        }
                        Some(_) => self.pos += 1,
                        None => return Err(Stop),
                    }
                }
            }
            Some(_) => {
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.pos += 1;
                }
                Ok(())
            }
            None => Err(Stop),
        }
    }
}

/// Line and character column of each (sorted) byte offset.
fn line_columns(text: &str, sorted_offsets: &[usize]) -> HashMap<usize, (u32, u32)> {
    let bytes = text.as_bytes();
    let mut out = HashMap::with_capacity(sorted_offsets.len());
    let mut line: u32 = 1;
    let mut line_start = 0usize;
    let mut i = 0usize;
    for &off in sorted_offsets {
        while i < off {
            if bytes.get(i) == Some(&b'\n') {
                line = line.saturating_add(1);
                line_start = i + 1;
            }
            i += 1;
        }
        let column = text
            .get(line_start..off)
            .map_or(1, |s| s.chars().count() + 1);
        out.insert(off, (line, u32::try_from(column).unwrap_or(u32::MAX)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{
  "swagger": "2.0",
  "paths": {
    "/items/{id}": {
      "get": {
        "parameters": [
          {"name": "id", "in": "path"},
          { "name": "a~b", "in": "query" }
        ]
      }
    }
  },
  "definitions": {"a/b": {"x": "é", "y~z": [1, {"k": null}]}, "\u0041": 3}
}"#;

    #[test]
    fn finds_values_including_escaped_tokens() {
        let got = locate(
            DOC,
            &[
                "",
                "/swagger",
                "/paths/~1items~1{id}/get/parameters/1/name",
                "/definitions/a~1b/y~0z/1/k",
                "/definitions/A",
                "/paths/~1items~1{id}/get/parameters/0",
            ],
        );
        assert_eq!(
            got,
            vec![
                Some((1, 1)),
                Some((2, 14)),
                Some((8, 21)),
                Some((13, 54)),
                Some((13, 73)),
                Some((7, 11)),
            ]
        );
    }

    #[test]
    fn missing_pointers_fall_back_to_the_nearest_ancestor() {
        let got = locate(DOC, &["/host", "/paths/~1items~1{id}/get/responses"]);
        assert_eq!(got, vec![Some((1, 1)), Some((5, 14))]);
    }

    #[test]
    fn finds_yaml_values() {
        let yaml = "openapi: 3.0.0\npaths:\n  /a/{id}:\n    get:\n      parameters:\n        - name: id\n          in: path\n        - {name: q, in: query}\n      tags: [x, y]\n? [complex, key]\n: 1\nlast: 2\n";
        let got = locate_yaml(
            yaml,
            &[
                "/openapi",
                "/paths/~1a~1{id}/get/parameters/0/in",
                "/paths/~1a~1{id}/get/parameters/1/in",
                "/paths/~1a~1{id}/get/tags/1",
                "/paths/~1a~1{id}/get/responses",
                "/last",
                "/missing",
            ],
        );
        assert_eq!(
            got,
            vec![
                Some((1, 10)),
                Some((7, 15)),
                Some((8, 25)),
                Some((9, 17)),
                Some((5, 7)),
                Some((12, 7)),
                Some((1, 1)),
            ]
        );
    }

    #[test]
    fn garbage_does_not_panic() {
        for text in [
            "",
            "{",
            "[1,",
            "{\"a\" 1}",
            "\"abc",
            "{\"a\":[}",
            "\u{e9}",
            "a: [",
            "? a\n",
        ] {
            let _ = locate(text, &["/a", "/0", ""]);
            let _ = locate_yaml(text, &["/a", "/0", ""]);
        }
    }
}
