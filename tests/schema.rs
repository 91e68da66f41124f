//! The configuration declared once: the JSON Schema of `junction.toml` and of view files is
//! generated from the types that read them (`junction config schema`); every TOML example
//! in the documentation must satisfy it, and the key tables of docs/config.md must name
//! exactly the keys it has.

use std::collections::BTreeSet;
use std::path::Path;

use junction_runtime::config::schema;
use serde_json::Value;

use crate::harness::workspace_root;

/// Every ```toml block of a Markdown file, with the line it starts on.
fn toml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (number, line) in text.lines().enumerate() {
        match &mut current {
            None if line.trim_start().starts_with("```toml") => {
                current = Some((number + 2, String::new()));
            }
            Some(_) if line.trim_start().starts_with("```") => {
                blocks.extend(current.take());
            }
            Some((_, block)) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// Whether a block is a view file (docs/views.md) rather than a `junction.toml`.
fn is_view(block: &str) -> bool {
    block.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with("[step.") || l.starts_with("[input.") || l.starts_with("shape")
    })
}

fn toml_json(text: &str) -> Result<Value, String> {
    let value: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
    serde_json::to_value(value).map_err(|e| e.to_string())
}

#[test]
fn schema_every_toml_example_in_the_docs_satisfies_the_generated_schemas() {
    let config = jsonschema::validator_for(&schema::config()).unwrap();
    let view = jsonschema::validator_for(&schema::view()).unwrap();
    let root = workspace_root();
    let mut files: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.push(root.join("README.md"));
    files.sort();
    let mut checked = 0;
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        for (line, block) in toml_blocks(&text) {
            // An agent's `agent.toml` (docs/agent.md) is read by the agent itself.
            if block.starts_with("# agent.toml") {
                if let Err(e) =
                    junction_agent::site::files::parse_site(&block, "agent.toml", &|_| {
                        Some("set".to_owned())
                    })
                {
                    problems.push(format!("{shown}:{line}: {e}"));
                }
                checked += 1;
                continue;
            }
            let value = match toml_json(&block) {
                Ok(value) => value,
                Err(e) => {
                    problems.push(format!("{shown}:{line}: not TOML: {e}"));
                    continue;
                }
            };
            let validator = if is_view(&block) { &view } else { &config };
            for error in validator.iter_errors(&value) {
                problems.push(format!(
                    "{shown}:{line}: {error} at {}",
                    error.instance_path()
                ));
            }
            checked += 1;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 9, "only {checked} TOML examples found");
}

/// The keys a row of a `| key | default | meaning |` table of docs/config.md names, as
/// schema paths: `limits.max_body_bytes`, `connector.*.cache.ttl` …
fn documented_keys(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut in_key_table = false;
    for line in text.lines() {
        if line.starts_with("| key | default | meaning |") {
            in_key_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_key_table = false;
            continue;
        }
        if !in_key_table || line.starts_with("|---") {
            continue;
        }
        let cell = line.split('|').nth(1).unwrap_or_default();
        let mut section: Option<String> = None;
        for token in cell.split('`').skip(1).step_by(2) {
            let (table, key) = match token.strip_prefix('[') {
                Some(rest) => match rest.split_once(']') {
                    Some((table, key)) => (Some(table.to_owned()), key.trim().to_owned()),
                    None => continue,
                },
                None => (None, token.trim().to_owned()),
            };
            // `…cache.ttl`: a key of every cache (retry, breaker) table of a connector.
            let (table, key) = match key.strip_prefix('…') {
                Some(rest) => match rest.split_once('.') {
                    Some((kind, key)) => (Some(format!("connector.NAME.{kind}")), key.to_owned()),
                    None => continue,
                },
                None => (table.or_else(|| section.clone()), key),
            };
            section.clone_from(&table);
            let path = match (table, key.is_empty()) {
                (Some(table), true) => table,
                (Some(table), false) => format!("{table}.{key}"),
                (None, _) => key,
            };
            keys.insert(
                path.replace(".NAME", ".*")
                    .replace(".ID", ".*")
                    .replace("NAME", "*"),
            );
        }
    }
    keys
}

/// Every key path of a schema: `limits.max_body_bytes`, `connector.*.cache.ttl` (a table
/// keyed by names is `*`), each table too.
fn schema_keys(schema: &Value) -> BTreeSet<String> {
    fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
        match node.get("$ref").and_then(Value::as_str) {
            Some(target) => target
                .strip_prefix('#')
                .and_then(|p| root.pointer(p))
                .unwrap_or(node),
            None => node,
        }
    }
    fn walk(root: &Value, node: &Value, prefix: &str, out: &mut BTreeSet<String>, depth: usize) {
        let node = resolve(root, node);
        if depth > 8 {
            return;
        }
        if let Some(Value::Object(properties)) = node.get("properties") {
            for (name, child) in properties {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                out.insert(path.clone());
                walk(root, child, &path, out, depth + 1);
            }
        }
        if let Some(child @ Value::Object(_)) = node.get("additionalProperties") {
            let child = resolve(root, child);
            if child.get("properties").is_some() {
                walk(root, child, &format!("{prefix}.*"), out, depth + 1);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(schema, schema, "", &mut out, 0);
    out
}

#[test]
fn schema_the_key_tables_of_the_config_reference_match_the_schema() {
    let path = workspace_root().join("docs/config.md");
    let documented = documented_keys(&std::fs::read_to_string(Path::new(&path)).unwrap());
    let schema = schema::config();
    let known = schema_keys(&schema);
    let unknown: Vec<&String> = documented.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "docs/config.md documents keys the configuration does not have: {unknown:#?}"
    );
    // Every key is documented: by its own row, by a row of a table that holds it (`[view.NAME.cache]`
    // for the keys of a cache policy), or, for a table, by rows of its keys.
    let covered = |key: &str| {
        documented.contains(key)
            || key
                .match_indices('.')
                .any(|(at, _)| documented.contains(&key[..at]))
            || documented.iter().any(|d| d.starts_with(&format!("{key}.")))
    };
    let undocumented: Vec<&String> = known.iter().filter(|key| !covered(key)).collect();
    assert!(
        undocumented.is_empty(),
        "keys missing from the tables of docs/config.md: {undocumented:#?}"
    );
}

#[test]
fn schema_is_printed_by_the_command_line_and_is_a_2020_12_schema() {
    for schema in [schema::config(), schema::view()] {
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(schema["additionalProperties"], false);
        jsonschema::meta::validate(&schema).unwrap();
    }
}
