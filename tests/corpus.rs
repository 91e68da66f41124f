//! The published Power Platform connectors load: every package whose two files are
//! well-formed JSON, and only those.
//!
//! The corpus is `../../shared/corpus/power-platform-connectors` from this crate (639 folders,
//! each `apiDefinition.swagger.json` + `apiProperties.json`). The numbers below are exact on
//! purpose: a change in what the importer accepts or reports shows up here first, and
//! `docs/corpus-rejections.md` must be regenerated with it.

#![allow(clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use junction_import::{Loaded, discover, load};
use serde_json::{Value, json};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/power-platform-connectors")
}

/// Every connector of the corpus, loaded once for all the tests here.
fn corpus_loaded() -> &'static [Loaded] {
    static LOADED: OnceLock<Vec<Loaded>> = OnceLock::new();
    LOADED.get_or_init(load_corpus)
}

/// Loads every connector of the corpus on two threads, in path order.
fn load_corpus() -> Vec<Loaded> {
    let root = corpus();
    assert!(
        root.is_dir(),
        "the connector corpus is missing at {}",
        root.display()
    );
    let paths = discover(&root);
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<Loaded>>> = Mutex::new(paths.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = paths.get(i) else { break };
                    let loaded = load(path);
                    out.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(loaded);
                }
            });
        }
    });
    out.into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

fn folder_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether serde_json's strict parser accepts the file (after a UTF-8 byte order mark, which
/// Python's `utf-8-sig` would also skip).
fn strict_json(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    serde_json::from_slice::<Value>(bytes).is_ok()
}

const REJECTED: [&str; 14] = [
    "Cireson Service Manager Portal",
    "CognitiveServicesTextAnalytics",
    "DocuMotor",
    "DocuSignDemo",
    "Easyvista_Service._Manager",
    "IN-D Invoice Data Capture",
    "PUG Gamified Engagement",
    "Plumsail Documents",
    "Revizto (Ireland)",
    "Shopranos",
    "SigningHub",
    "ZohoSign",
    "envoy",
    "gofileroom",
];

#[test]
fn corpus_loads_everything_but_malformed_json() {
    let all = corpus_loaded();
    let total = all.len();
    let loaded = all.iter().filter(|l| l.connector.is_some()).count();
    let failed: BTreeSet<String> = all
        .iter()
        .filter(|l| l.connector.is_none())
        .map(|l| folder_name(&l.source))
        .collect();
    let mut warnings: BTreeMap<&str, usize> = BTreeMap::new();
    for d in all.iter().flat_map(|l| l.diagnostics.iter()) {
        if !d.is_error() {
            *warnings.entry(d.code).or_default() += 1;
        }
    }
    let warning_total: usize = warnings.values().sum();

    assert_eq!(total, 639);
    assert_eq!(loaded, 625);
    assert_eq!(failed.len(), 14);
    assert_eq!(warning_total, 442);
    assert_eq!(
        warnings,
        BTreeMap::from([
            ("bom", 4),
            ("custom-code", 44),
            ("misspelled-extension", 51),
            ("misspelled-property", 2),
            ("oauth-setting", 133),
            ("policy-connection-case", 6),
            ("policy-open-host", 21),
            ("policy-parameter", 3),
            ("policy-unknown-operation", 11),
            ("template-id-case", 57),
            ("unknown-security-scheme", 110),
        ])
    );
    let expected: BTreeSet<String> = REJECTED.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(failed, expected);

    // Independently: the rejected packages are exactly those with a file strict JSON refuses.
    let malformed: BTreeSet<String> = all
        .iter()
        .filter(|l| {
            !strict_json(&l.source.join("apiDefinition.swagger.json"))
                || !strict_json(&l.source.join("apiProperties.json"))
        })
        .map(|l| folder_name(&l.source))
        .collect();
    assert_eq!(failed, malformed);

    // Each rejection is one JSON syntax error with its position.
    for l in all.iter().filter(|l| l.connector.is_none()) {
        let errors: Vec<_> = l.diagnostics.errors().collect();
        assert_eq!(errors.len(), 1, "{}: {errors:?}", l.source.display());
        let e = errors[0];
        assert_eq!(e.code, "json-syntax");
        assert!(e.line.is_some() && e.column.is_some(), "{e}");
        assert!(!e.to_string().contains('\n'));
    }
    // Every other diagnostic knows where it is.
    for d in all.iter().flat_map(|l| l.diagnostics.iter()) {
        assert!(d.line.is_some(), "{d}");
    }
}

/// Every schema of every loaded connector compiles as JSON Schema 2020-12, with its
/// `#/definitions/NAME` references resolved, as the runtime will compile it.
#[test]
fn corpus_schemas_compile() {
    let mut compiled = 0;
    for l in corpus_loaded() {
        let Some(c) = &l.connector else { continue };
        let mut branches: Vec<Value> = c
            .definitions
            .keys()
            .map(|name| json!({"$ref": format!("#/definitions/{name}")}))
            .collect();
        for op in &c.operations {
            branches.extend(op.parameters.iter().map(|p| p.schema.clone()));
            branches.extend(op.body.iter().map(|b| b.schema.clone()));
            branches.extend(op.responses.iter().filter_map(|r| r.schema.clone()));
        }
        for v in c.definitions.values().chain(&branches) {
            if let Some(r) = v.get("$ref").and_then(Value::as_str) {
                assert!(c.resolve(v).is_some(), "{}: {r} does not resolve", c.name);
            }
        }
        compiled += branches.len();
        if branches.is_empty() {
            continue;
        }
        let root = json!({"definitions": c.definitions, "anyOf": branches});
        if let Err(e) = jsonschema::validator_for(&root) {
            panic!("{}: {e} at {}", l.source.display(), e.schema_path());
        }
    }
    assert!(compiled > 50_000, "{compiled}");
}
