//! jq transforms, with jaq: compiled once at load, run on request and response bodies.
//!
//! A transform sees the body as `.`, the operation's bound parameters as `$params` and the
//! connection's non-secret values as `$connection`. It runs with jaq's core and standard
//! library minus everything that reaches outside the value: `env` (the process
//! environment, where secrets live), `input`/`inputs`, `halt`, and the filters that write
//! to the log (`debug`, `stderr`). The first output is the result; a transform that
//! produces none, or raises an error, fails the request.

use std::fmt;
use std::sync::Arc;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
use jaq_json::Val;
use serde_json::{Map, Number, Value};

type Data = data::JustLut<Val>;

/// Native filters left out: they read the environment or input, stop the process, or log.
const DENIED_FUNS: [&str; 6] = [
    "env",
    "input",
    "inputs",
    "halt",
    "debug_empty",
    "stderr_empty",
];
/// Definitions left out, because they use a denied filter.
const DENIED_DEFS: [&str; 5] = ["debug", "stderr", "halt", "halt_error", "input_line_number"];

/// The variables every transform can read.
pub const VARIABLES: [&str; 2] = ["$params", "$connection"];

/// A compiled jq program, shared across threads.
#[derive(Clone)]
pub struct Transform {
    filter: Arc<jaq_core::Filter<Data>>,
    code: Arc<str>,
}

impl fmt::Debug for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transform")
            .field("code", &self.code)
            .finish_non_exhaustive()
    }
}

/// Why a jq program does not compile: the message and the character (0-based) in the
/// program where the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.offset + 1, self.message)
    }
}

impl std::error::Error for CompileError {}

fn offset_of(code: &str, part: &str) -> usize {
    let range = jaq_core::load::span(code, part);
    code.get(..range.start.min(code.len()))
        .map_or(0, |s| s.chars().count())
}

impl Transform {
    /// Compiles `code`.
    pub fn compile(code: &str) -> Result<Transform, CompileError> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs())
            .filter(|d| !DENIED_DEFS.contains(&d.name));
        let funs = jaq_core::funs::<Data>()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs())
            .filter(|(name, _, _)| !DENIED_FUNS.contains(name));
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader
            .load(&arena, File { code, path: () })
            .map_err(|errors| {
                let first = errors.into_iter().next().map(|(_, e)| e);
                match first {
                    Some(jaq_core::load::Error::Lex(errs)) => match errs.first() {
                        Some((expect, at)) => CompileError {
                            offset: offset_of(code, at),
                            message: format!("expected {}", lex_expect(expect)),
                        },
                        None => CompileError {
                            offset: 0,
                            message: "the program cannot be read".into(),
                        },
                    },
                    Some(jaq_core::load::Error::Parse(errs)) => match errs.first() {
                        Some((expect, at)) => CompileError {
                            offset: offset_of(code, at),
                            message: if at.is_empty() {
                                format!("expected {} at the end", expect.as_str())
                            } else {
                                format!(
                                    "expected {}, found `{}`",
                                    expect.as_str(),
                                    at.chars().take(20).collect::<String>()
                                )
                            },
                        },
                        None => CompileError {
                            offset: 0,
                            message: "the program cannot be parsed".into(),
                        },
                    },
                    Some(jaq_core::load::Error::Io(errs)) => CompileError {
                        offset: errs.first().map_or(0, |(at, _)| offset_of(code, at)),
                        message: "modules cannot be imported in a transform".into(),
                    },
                    None => CompileError {
                        offset: 0,
                        message: "the program cannot be read".into(),
                    },
                }
            })?;
        let filter = Compiler::default()
            .with_funs(funs)
            .with_global_vars(VARIABLES)
            .compile(modules)
            .map_err(|errors| {
                let first = errors
                    .into_iter()
                    .next()
                    .and_then(|(_, errs)| errs.into_iter().next());
                match first {
                    Some((name, undefined)) => CompileError {
                        offset: offset_of(code, name),
                        message: format!(
                            "undefined {} `{name}`{}",
                            undefined.as_str(),
                            if name.starts_with('$') {
                                " (transforms can read $params and $connection)"
                            } else if DENIED_FUNS.contains(&name) || DENIED_DEFS.contains(&name) {
                                " (not available in transforms)"
                            } else {
                                ""
                            }
                        ),
                    },
                    None => CompileError {
                        offset: 0,
                        message: "the program does not compile".into(),
                    },
                }
            })?;
        Ok(Transform {
            filter: Arc::new(filter),
            code: Arc::from(code),
        })
    }

    /// The program's text.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// Runs the program on `input` with the two variables; the first output is the result.
    pub fn run(&self, input: &Value, params: &Value, connection: &Value) -> Result<Value, String> {
        self.run_val(to_val(input), params, connection)
            .map(|value| from_val(&value))
    }

    /// Runs the program on a value (moved, not copied) and writes the result as JSON text.
    pub fn run_to_json(
        &self,
        input: Value,
        params: &Value,
        connection: &Value,
    ) -> Result<Vec<u8>, String> {
        let out = self.run_val(into_val(input), params, connection)?;
        serde_json::to_vec(&Json(&out)).map_err(|e| e.to_string())
    }

    /// Runs the program on JSON text and writes the result as JSON text, without an
    /// intermediate document: what a response transform does when no policy reads the body.
    pub fn run_json(
        &self,
        input: &[u8],
        params: &Value,
        connection: &Value,
    ) -> Result<Vec<u8>, String> {
        let input: Val =
            serde_json::from_slice(input).map_err(|e| format!("the body is not JSON: {e}"))?;
        let out = self.run_val(input, params, connection)?;
        serde_json::to_vec(&Json(&out)).map_err(|e| e.to_string())
    }

    fn run_val(&self, input: Val, params: &Value, connection: &Value) -> Result<Val, String> {
        let vars = Vars::new([to_val(params), to_val(connection)]);
        let ctx = Ctx::<Data>::new(&self.filter.lut, vars);
        let mut outputs = self.filter.id.run((ctx, input)).map(unwrap_valr);
        match outputs.next() {
            Some(Ok(value)) => Ok(value),
            Some(Err(error)) => Err(match error.into_val() {
                Val::TStr(text) => String::from_utf8_lossy(&text).into_owned(),
                other => other.to_string(),
            }),
            None => Err("the transform produced no value".into()),
        }
    }
}

/// Writes a jaq value as JSON through serde (faster than building a serde_json value):
/// numbers that are not finite become `null`, byte strings are read as UTF-8, non-string
/// object keys are written as their JSON text.
struct Json<'a>(&'a Val);

impl serde::Serialize for Json<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Val::Null => s.serialize_unit(),
            Val::Bool(b) => s.serialize_bool(*b),
            Val::Num(n) => number(n).serialize(s),
            Val::TStr(bytes) | Val::BStr(bytes) => s.serialize_str(&String::from_utf8_lossy(bytes)),
            Val::Arr(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items.iter() {
                    seq.serialize_element(&Json(item))?;
                }
                seq.end()
            }
            Val::Obj(map) => {
                let mut out = s.serialize_map(Some(map.len()))?;
                for (k, v) in map.iter() {
                    match k {
                        Val::TStr(bytes) | Val::BStr(bytes) => {
                            out.serialize_entry(&String::from_utf8_lossy(bytes), &Json(v))?
                        }
                        other => out.serialize_entry(&other.to_string(), &Json(v))?,
                    }
                }
                out.end()
            }
        }
    }
}

fn lex_expect(expect: &jaq_core::load::lex::Expect<&str>) -> &'static str {
    use jaq_core::load::lex::Expect;
    match expect {
        Expect::Delim("(") | Expect::Delim("[") | Expect::Delim("{") | Expect::Delim("\"") => {
            expect.as_str()
        }
        Expect::Delim(_) => "a closing delimiter",
        other => other.as_str(),
    }
}

/// A serde_json value as a jaq value.
pub fn to_val(value: &Value) -> Val {
    match value {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Val::Num(jaq_json::Num::from_integral(i))
            } else if let Some(u) = n.as_u64() {
                Val::Num(jaq_json::Num::from_integral(u))
            } else {
                Val::Num(jaq_json::Num::Float(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        Value::String(s) => Val::utf8_str(s.clone().into_bytes()),
        Value::Array(items) => items.iter().map(to_val).collect(),
        Value::Object(map) => Val::obj(
            map.iter()
                .map(|(k, v)| (Val::utf8_str(k.clone().into_bytes()), to_val(v)))
                .collect(),
        ),
    }
}

/// A serde_json value as a jaq value, moving its strings instead of copying them.
pub fn into_val(value: Value) -> Val {
    match value {
        Value::String(s) => Val::utf8_str(s.into_bytes()),
        Value::Array(items) => items.into_iter().map(into_val).collect(),
        Value::Object(map) => Val::obj(
            map.into_iter()
                .map(|(k, v)| (Val::utf8_str(k.into_bytes()), into_val(v)))
                .collect(),
        ),
        scalar => to_val(&scalar),
    }
}

/// A jaq value as a serde_json value. Numbers that are not finite become `null`, as jq
/// prints them; byte strings are read as UTF-8.
pub fn from_val(value: &Val) -> Value {
    match value {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => number(n),
        Val::TStr(bytes) | Val::BStr(bytes) => {
            Value::String(String::from_utf8_lossy(bytes).into_owned())
        }
        Val::Arr(items) => Value::Array(items.iter().map(from_val).collect()),
        Val::Obj(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map.iter() {
                let key = match k {
                    Val::TStr(bytes) | Val::BStr(bytes) => {
                        String::from_utf8_lossy(bytes).into_owned()
                    }
                    other => other.to_string(),
                };
                out.insert(key, from_val(v));
            }
            Value::Object(out)
        }
    }
}

fn number(n: &jaq_json::Num) -> Value {
    use jaq_json::Num;
    match n {
        Num::Int(i) => Value::Number(Number::from(*i as i64)),
        Num::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Num::BigInt(b) => {
            let text = b.to_string();
            text.parse::<i64>()
                .map(Number::from)
                .or_else(|_| text.parse::<u64>().map(Number::from))
                .ok()
                .or_else(|| text.parse::<f64>().ok().and_then(Number::from_f64))
                .map_or(Value::Null, Value::Number)
        }
        Num::Dec(text) => text
            .parse::<i64>()
            .map(Number::from)
            .ok()
            .or_else(|| text.parse::<f64>().ok().and_then(Number::from_f64))
            .map_or(Value::Null, Value::Number),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use serde_json::json;

    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn transforms_are_shared_across_threads() {
        assert_send_sync::<Transform>();
    }

    #[test]
    fn runs_with_params_and_connection() {
        let t = Transform::compile(
            r#"{id: .value[0].id, n: (.value | length), who: $params.user, region: $connection.region}"#,
        )
        .unwrap();
        let out = t
            .run(
                &json!({"value": [{"id": 7}, {"id": 8}]}),
                &json!({"user": "ann"}),
                &json!({"region": "eu"}),
            )
            .unwrap();
        assert_eq!(out, json!({"id": 7, "n": 2, "who": "ann", "region": "eu"}));
        let t = Transform::compile(".a / .b | floor").unwrap();
        assert_eq!(
            t.run(&json!({"a": 7, "b": 2}), &json!({}), &json!({}))
                .unwrap(),
            json!(3)
        );
        let t = Transform::compile("map(select(.ok)) | sort_by(.n) | .[0].s + \"!\"").unwrap();
        assert_eq!(
            t.run(
                &json!([{"ok": true, "n": 2, "s": "b"}, {"ok": true, "n": 1, "s": "a"}, {"ok": false, "n": 0}]),
                &json!({}),
                &json!({})
            )
            .unwrap(),
            json!("a!")
        );
    }

    #[test]
    fn runtime_errors_and_empty_output() {
        let t = Transform::compile(".a + 1").unwrap();
        let e = t
            .run(&json!({"a": "x"}), &json!({}), &json!({}))
            .unwrap_err();
        assert!(e.contains("cannot"), "{e}");
        let t = Transform::compile("error(\"nope\")").unwrap();
        assert_eq!(
            t.run(&json!(1), &json!({}), &json!({})).unwrap_err(),
            "nope"
        );
        let t = Transform::compile("empty").unwrap();
        assert_eq!(
            t.run(&json!(1), &json!({}), &json!({})).unwrap_err(),
            "the transform produced no value"
        );
    }

    #[test]
    fn compile_errors_have_offsets_and_the_environment_is_out_of_reach() {
        let e = Transform::compile(".a | ").unwrap_err();
        assert!(e.message.starts_with("expected term"), "{e}");
        let e = Transform::compile(".a | frob").unwrap_err();
        assert_eq!(e.offset, 5);
        assert_eq!(e.message, "undefined filter `frob`");
        let e = Transform::compile("$ENV.HOME").unwrap_err();
        assert_eq!(e.offset, 0);
        assert!(e.message.contains("undefined variable"), "{e}");
        let e = Transform::compile("env").unwrap_err();
        assert!(e.message.contains("not available"), "{e}");
        assert!(Transform::compile("input").is_err());
        assert!(Transform::compile("halt").is_err());
        assert!(Transform::compile("debug").is_err());
        assert!(Transform::compile("import \"x\" as x; .").is_err());
        let e = Transform::compile("{a: 1").unwrap_err();
        assert!(!e.message.is_empty());
    }

    #[test]
    fn json_text_in_and_out() {
        let t = Transform::compile(
            "{n: (.items | length), first: .items[0], f: 1.5, big: 18446744073709551615}",
        )
        .unwrap();
        let out = t
            .run_json(br#"{"items": [{"a": "x\"y"}, 2]}"#, &json!({}), &json!({}))
            .unwrap();
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            value,
            json!({"n": 2, "first": {"a": "x\"y"}, "f": 1.5, "big": 18446744073709551615u64})
        );
        assert_eq!(
            t.run_to_json(json!({"items": []}), &json!({}), &json!({}))
                .unwrap(),
            br#"{"n":0,"first":null,"f":1.5,"big":18446744073709551615}"#
        );
        assert!(t.run_json(b"{not json", &json!({}), &json!({})).is_err());
    }

    #[test]
    fn values_round_trip() {
        let v = json!({"s": "é", "i": -3, "u": 18446744073709551615u64, "f": 1.5, "b": true, "n": null, "a": [1, {"x": []}]});
        assert_eq!(from_val(&to_val(&v)), v);
        assert_eq!(from_val(&into_val(v.clone())), v);
    }
}
