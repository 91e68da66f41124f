//! Misspelled `x-ms-…` extension names.
//!
//! Power Platform silently ignores an extension it does not know, so `x-ms-visibilty` leaves
//! a parameter visible and nobody notices. Every object *key* starting with `x-ms-` that is
//! not a known extension but lies within two edits of one is reported. Keys of maps whose
//! keys are names chosen by the author (properties, headers, paths, definitions …) are not
//! checked — a response header may well be called `x-ms-request-id` — and example data is
//! not looked into.

use std::collections::HashSet;
use std::sync::LazyLock;

use serde_json::Value;

use crate::ptr::Ptr;
use crate::sink::Sink;

/// The extensions documented in `openapi-extensions.md`, those the published connectors use
/// on purpose, and the AutoRest ones that appear in Power Platform definitions.
const KNOWN: &[&str] = &[
    // Documented for custom connectors.
    "x-ms-summary",
    "x-ms-visibility",
    "x-ms-api-annotation",
    "x-ms-operation-context",
    "x-ms-capabilities",
    "x-ms-trigger",
    "x-ms-trigger-hint",
    "x-ms-notification-content",
    "x-ms-notification-url",
    "x-ms-notification",
    "x-ms-url-encoding",
    "x-ms-dynamic-values",
    "x-ms-dynamic-list",
    "x-ms-dynamic-schema",
    "x-ms-dynamic-properties",
    "x-ms-dynamic-tree",
    "x-ms-enum-values",
    "x-ms-editor",
    "x-ms-editor-options",
    "x-ms-apimTemplateParameter",
    "x-ms-apimTemplate-operationName",
    "x-ms-apimTemplate-policySection",
    // Used by published connectors.
    "x-ms-connector-metadata",
    "x-ms-test-value",
    "x-ms-no-generic-test",
    "x-ms-openai-data",
    "x-ms-openai-manifest",
    "x-ms-openai-published-to-copilots",
    "x-ms-require-user-confirmation",
    "x-ms-trigger-metadata",
    "x-ms-trigger-value",
    "x-ms-apihub-cached-response",
    "x-ms-keywords",
    "x-ms-deployment-version",
    "x-ms-async-operation-timeout",
    "x-ms-docs-operation-type",
    "x-ms-safe-operation",
    "x-ms-media-kind",
    "x-ms-permission",
    "x-ms-primary-error-message",
    "x-ms-lcsstamp",
    "x-ms-function-status",
    "x-ms-cookie-header",
    "x-ms-correlation-id",
    "x-ms-navigationProperty",
    "x-ms-property-name-alias",
    "x-ms-dynamic-schema-output",
    "x-ms-docs",
    "x-ms-api-version",
    "x-ms-request-id",
    // AutoRest.
    "x-ms-enum",
    "x-ms-pageable",
    "x-ms-mutability",
    "x-ms-discriminator-value",
    "x-ms-identifiers",
    "x-ms-client-name",
    "x-ms-client-flatten",
    "x-ms-client-default",
    "x-ms-long-running-operation",
    "x-ms-long-running-operation-options",
    "x-ms-parameter-location",
    "x-ms-parameter-grouping",
    "x-ms-parameterized-host",
    "x-ms-secret",
    "x-ms-examples",
    "x-ms-skip-url-encoding",
    "x-ms-azure-resource",
    "x-ms-paths",
    "x-ms-odata",
    "x-ms-error-response",
    "x-ms-header-collection-prefix",
    "x-ms-external",
    "x-ms-code-generation-settings",
    "x-ms-flatten",
    "x-ms-client-request-id",
    "x-ms-request-id-header",
    "x-ms-azure-resource-id",
    "x-ms-arm-id-details",
];

static KNOWN_SET: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| KNOWN.iter().copied().collect());

/// Keys whose object value maps author-chosen names to things (no field names inside).
const DEFINITION_NAME_MAPS: &[&str] = &[
    "properties",
    "patternProperties",
    "definitions",
    "$defs",
    "dependentSchemas",
    "dependencies",
    "headers",
    "paths",
    "responses",
    "parameters",
    "securityDefinitions",
    "schemas",
    "securitySchemes",
    "requestBodies",
    "links",
    "callbacks",
    "content",
    "scopes",
    "variables",
    "encoding",
    "mapping",
    "webhooks",
    "pathItems",
];

const PROPERTIES_NAME_MAPS: &[&str] = &["connectionParameters"];

/// Keys whose value is example or default data, not structure.
const DATA: &[&str] = &[
    "example",
    "examples",
    "default",
    "enum",
    "const",
    "x-ms-test-value",
];

/// Which kind of file is walked.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FileKind {
    Definition,
    Properties,
}

/// Reports every misspelled `x-ms-…` key of `doc`.
pub(crate) fn check(doc: &Value, kind: FileKind, sink: &mut Sink) {
    let name_maps = match kind {
        FileKind::Definition => DEFINITION_NAME_MAPS,
        FileKind::Properties => PROPERTIES_NAME_MAPS,
    };
    walk(doc, &Ptr::ROOT, false, name_maps, sink, 0);
}

fn walk(v: &Value, at: &Ptr<'_>, names: bool, name_maps: &[&str], sink: &mut Sink, depth: usize) {
    if depth > 256 {
        return;
    }
    match v {
        Value::Object(map) => {
            for (key, child) in map {
                if !names && key.starts_with("x-ms-") {
                    check_key(key, at, sink);
                }
                if !names && DATA.contains(&key.as_str()) {
                    continue;
                }
                let child_names = !names && child.is_object() && name_maps.contains(&key.as_str());
                walk(child, &at.key(key), child_names, name_maps, sink, depth + 1);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &at.index(i), false, name_maps, sink, depth + 1);
            }
        }
        _ => {}
    }
}

fn check_key(key: &str, at: &Ptr<'_>, sink: &mut Sink) {
    // `x-ms-apimTemplateParameter.NAME` names a policy parameter.
    let base = match key.split_once('.') {
        Some((base, _)) => base,
        None => key,
    };
    if KNOWN_SET.contains(base) {
        return;
    }
    let best = KNOWN
        .iter()
        .map(|k| (edit_distance(k, base), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d);
    if let Some((_, known)) = best {
        let suggestion = match key.split_once('.') {
            Some((_, rest)) => format!("{known}.{rest}"),
            None => known.to_owned(),
        };
        sink.warn(
            "misspelled-extension",
            &at.key(key),
            format!("unknown extension '{key}'; did you mean '{suggestion}'?"),
        );
    }
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions), counted in
/// bytes; anything above 3 is reported as 3.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len().abs_diff(b.len()) > 2 {
        return 3;
    }
    let width = b.len() + 1;
    let mut prev2: Vec<usize> = vec![0; width];
    let mut prev: Vec<usize> = (0..width).collect();
    let mut cur: Vec<usize> = vec![0; width];
    for i in 1..=a.len() {
        if let Some(c) = cur.first_mut() {
            *c = i;
        }
        for j in 1..width {
            let ai = a.get(i - 1);
            let bj = b.get(j - 1);
            let cost = usize::from(ai != bj);
            let del = prev.get(j).map_or(usize::MAX, |v| v + 1);
            let ins = cur.get(j - 1).map_or(usize::MAX, |v| v + 1);
            let sub = prev.get(j - 1).map_or(usize::MAX, |v| v + cost);
            let mut best = del.min(ins).min(sub);
            if i > 1 && j > 1 && a.get(i - 1) == b.get(j - 2) && a.get(i - 2) == b.get(j - 1) {
                best = best.min(prev2.get(j - 2).map_or(usize::MAX, |v| v + 1));
            }
            if let Some(c) = cur.get_mut(j) {
                *c = best;
            }
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev.get(b.len()).copied().unwrap_or(3).min(3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("x-ms-visibility", "x-ms-visibilty"), 1);
        assert_eq!(edit_distance("x-ms-summary", "x-ms-sumamry"), 1);
        assert_eq!(edit_distance("x-ms-summary", "x-ms-summmary"), 1);
        assert_eq!(edit_distance("x-ms-visibility", "x-ms-visibiltiy"), 1);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("abc", "xyz"), 3);
        assert_eq!(edit_distance("", "abcdef"), 3);
    }

    #[test]
    fn flags_misspelled_keys_only() {
        let doc = json!({
            "paths": {"/a": {"get": {
                "x-ms-visibilty": "internal",
                "parameters": [{"name": "x", "x-ms-summmary": "X", "x-ms-sumamry": "Y", "x-ms-visbility": "advanced"}],
                "responses": {"200": {"headers": {"x-ms-request-id": {"type": "string"}, "x-ms-reqest-id": {}}}}
            }}},
            "definitions": {"x-ms-visibilty": {"properties": {"x-ms-summry": {}}, "example": {"x-ms-visibilty": 1}}},
            "x-ms-connector-metadata": [{"x-ms-visibiltiy": 1}],
            "x-ms-brand-new-thing": true
        });
        let mut sink = Sink::new("f");
        check(&doc, FileKind::Definition, &mut sink);
        let got: Vec<(String, String)> = sink
            .into_diagnostics()
            .into_iter()
            .map(|d| (d.pointer, d.message))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "/paths/~1a/get/x-ms-visibilty".into(),
                    "unknown extension 'x-ms-visibilty'; did you mean 'x-ms-visibility'?".into()
                ),
                (
                    "/paths/~1a/get/parameters/0/x-ms-summmary".into(),
                    "unknown extension 'x-ms-summmary'; did you mean 'x-ms-summary'?".into()
                ),
                (
                    "/paths/~1a/get/parameters/0/x-ms-sumamry".into(),
                    "unknown extension 'x-ms-sumamry'; did you mean 'x-ms-summary'?".into()
                ),
                (
                    "/paths/~1a/get/parameters/0/x-ms-visbility".into(),
                    "unknown extension 'x-ms-visbility'; did you mean 'x-ms-visibility'?".into()
                ),
                (
                    "/x-ms-connector-metadata/0/x-ms-visibiltiy".into(),
                    "unknown extension 'x-ms-visibiltiy'; did you mean 'x-ms-visibility'?".into()
                ),
            ]
        );
    }

    #[test]
    fn policy_parameter_names() {
        let doc = json!({"properties": {"policyTemplateInstances": [{"parameters": {
            "x-ms-apimTemplateParameter.name": "a",
            "x-ms-apimTemplateParamter.value": "b",
            "x-ms-apimTemplate-operationName": ["op"]
        }}]}});
        let mut sink = Sink::new("p");
        check(&doc, FileKind::Properties, &mut sink);
        let d = sink.into_diagnostics();
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].message,
            "unknown extension 'x-ms-apimTemplateParamter.value'; did you mean 'x-ms-apimTemplateParameter.value'?"
        );
    }
}
