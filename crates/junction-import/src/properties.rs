//! `apiProperties.json` → [`ApiProperties`], checked loosely against the shape of
//! `paconn-apiProperties.schema.json`.
//!
//! Structural problems are warnings that point into the file; the entry concerned is skipped
//! or read as far as it makes sense. Only text that is not JSON rejects a package (see
//! [`crate::source`]).

use indexmap::IndexMap;
use junction_model::oauth::Settings as OAuthSettings;
use junction_model::{
    ApiProperties, ConnectionParameter, ConnectionParameterSet, ConnectionParameterSets,
    CustomCode, PolicyInstance,
};
use serde_json::{Map, Value};

use crate::extensions::edit_distance;
use crate::fields::{self, Object};
use crate::ptr::Ptr;
use crate::schema::kind;
use crate::sink::Sink;

/// The members of `properties` read into fields of [`ApiProperties`]; the others go to `other`.
const READ_PROPERTIES: [&str; 8] = [
    "iconBrandColor",
    "capabilities",
    "connectionParameters",
    "connectionParameterSets",
    "policyTemplateInstances",
    "publisher",
    "stackOwner",
    "scriptOperations",
];

/// The members of `properties` Power Platform knows.
const KNOWN_PROPERTIES: [&str; 10] = [
    "iconBrandColor",
    "capabilities",
    "connectionParameters",
    "connectionParameterSets",
    "policyTemplateInstances",
    "publisher",
    "stackOwner",
    "scriptOperations",
    "script",
    "isCustomApi",
];

/// The fields of a connection parameter.
const PARAMETER_FIELDS: [&str; 7] = [
    "type",
    "uiDefinition",
    "oAuthSettings",
    "allowedValues",
    "defaultValue",
    "metadata",
    "gatewaySettings",
];

/// The key under which `obj` holds `want`: `want` itself, or a key differing from it only in
/// case (reported as `misspelled-property` and read anyway).
fn member_key<'o>(obj: &'o Object, want: &str, at: &Ptr<'_>, sink: &mut Sink) -> Option<&'o str> {
    if let Some((k, _)) = obj.get_key_value(want) {
        return Some(k.as_str());
    }
    let k = obj.keys().find(|k| k.eq_ignore_ascii_case(want))?;
    sink.warn(
        "misspelled-property",
        &at.key(k),
        format!("'{k}' should be written '{want}'; read as '{want}'"),
    );
    Some(k.as_str())
}

/// A string member whose name may be written in any case: Power Platform's own multi-auth
/// example writes `displayname`.
fn text_any_case(obj: &Object, want: &str, at: &Ptr<'_>, sink: &mut Sink) -> Option<String> {
    let key = obj
        .keys()
        .find(|k| k.as_str() == want)
        .or_else(|| obj.keys().find(|k| k.eq_ignore_ascii_case(want)))?;
    fields::string(obj, key, at, sink)
}

const KNOWN_PARAMETER_TYPES: [&str; 8] = [
    "string",
    "securestring",
    "int",
    "bool",
    "oauthsetting",
    "gatewaysetting",
    "secureobject",
    "object",
];

/// Reads a parsed `apiProperties.json`; `None` (with a warning) when it has no usable
/// `properties` object.
pub(crate) fn build(doc: &Value, sink: &mut Sink) -> Option<ApiProperties> {
    let root = Ptr::ROOT;
    let Value::Object(obj) = doc else {
        sink.warn(
            "invalid-properties",
            &root,
            format!(
                "apiProperties.json must hold an object, found {}; ignored",
                kind(doc)
            ),
        );
        return None;
    };
    for key in obj.keys() {
        if key != "properties" && key != "$schema" {
            sink.warn(
                "unknown-field",
                &root.key(key),
                format!("'{key}' is not an apiProperties.json member; ignored"),
            );
        }
    }
    let at = root.key("properties");
    let props = match obj.get("properties") {
        Some(Value::Object(p)) => p,
        Some(other) => {
            sink.warn(
                "invalid-properties",
                &at,
                format!(
                    "'properties' must be an object, found {}; ignored",
                    kind(other)
                ),
            );
            return None;
        }
        None => {
            sink.warn(
                "invalid-properties",
                &root,
                "apiProperties.json has no 'properties'; ignored",
            );
            return None;
        }
    };

    let mut out = ApiProperties::default();
    for (key, value) in props {
        if READ_PROPERTIES.contains(&key.as_str()) {
            continue;
        }
        if !KNOWN_PROPERTIES.contains(&key.as_str())
            && let Some(near) = KNOWN_PROPERTIES
                .iter()
                .find(|k| k.eq_ignore_ascii_case(key) || edit_distance(k, key) <= 2)
        {
            sink.warn(
                "misspelled-property",
                &at.key(key),
                format!("unknown property '{key}'; did you mean '{near}'?"),
            );
        }
        out.other.insert(key.clone(), value.clone());
    }

    out.icon_brand_color = fields::string(props, "iconBrandColor", &at, sink);
    if out.icon_brand_color.is_none() {
        sink.warn("missing-field", &at, "'iconBrandColor' is required");
    }
    out.publisher = fields::string(props, "publisher", &at, sink);
    out.stack_owner = fields::string(props, "stackOwner", &at, sink);
    out.capabilities = fields::strings(props, "capabilities", &at, sink).unwrap_or_default();
    out.script_operations =
        fields::strings(props, "scriptOperations", &at, sink).unwrap_or_default();
    out.custom_code = custom_code(props, &out.script_operations, &at);
    if let Some(params) = fields::object(props, "connectionParameters", &at, sink) {
        out.connection_parameters =
            connection_parameters(params, &at.key("connectionParameters"), sink);
    }
    if let Some(sets) = fields::object(props, "connectionParameterSets", &at, sink) {
        out.connection_parameter_sets = Some(parameter_sets(
            sets,
            &at.key("connectionParameterSets"),
            sink,
        ));
    }
    match props.get("policyTemplateInstances") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            let list_at = at.key("policyTemplateInstances");
            for (i, item) in items.iter().enumerate() {
                if let Some(p) = policy(item, &list_at.index(i), sink) {
                    out.policy_template_instances.push(p);
                }
            }
        }
        Some(other) => sink.warn(
            "invalid-field",
            &at.key("policyTemplateInstances"),
            format!(
                "'policyTemplateInstances' must be an array, found {}; ignored",
                kind(other)
            ),
        ),
    }
    Some(out)
}

/// The custom code `properties` declares: `scriptOperations` (an empty list means every
/// operation, as `paconn` documents) and the newer `script: {"operationIds": […]}`.
fn custom_code(props: &Object, script_operations: &[String], at: &Ptr<'_>) -> Option<CustomCode> {
    let mut declared = Vec::new();
    let mut operations: Vec<String> = Vec::new();
    let mut all = false;
    let mut pointer = None;
    if matches!(
        props.get("scriptOperations"),
        Some(Value::Array(_) | Value::String(_))
    ) {
        declared.push("scriptOperations");
        pointer = Some(at.key("scriptOperations").render());
        all |= script_operations.is_empty();
        operations.extend(script_operations.iter().cloned());
    }
    if let Some(Value::Object(script)) = props.get("script") {
        declared.push("script.operationIds");
        pointer.get_or_insert_with(|| at.key("script").render());
        match script.get("operationIds") {
            Some(Value::Array(ids)) if !ids.is_empty() => {
                operations.extend(ids.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            _ => all = true,
        }
    }
    if declared.is_empty() {
        return None;
    }
    if all {
        operations.clear();
    }
    operations.dedup();
    Some(CustomCode {
        operations,
        declared_by: declared.join(" and "),
        pointer: pointer.unwrap_or_default(),
    })
}

fn connection_parameters(
    params: &Object,
    at: &Ptr<'_>,
    sink: &mut Sink,
) -> IndexMap<String, ConnectionParameter> {
    let mut out = IndexMap::new();
    for (name, raw) in params {
        let p_at = at.key(name);
        let Value::Object(obj) = raw else {
            sink.warn(
                "invalid-connection-parameter",
                &p_at,
                format!(
                    "a connection parameter must be an object, found {}; ignored",
                    kind(raw)
                ),
            );
            continue;
        };
        let param_kind = match fields::string(obj, "type", &p_at, sink) {
            Some(k) => {
                if !KNOWN_PARAMETER_TYPES.contains(&k.to_ascii_lowercase().as_str()) {
                    sink.warn(
                        "invalid-connection-parameter",
                        &p_at.key("type"),
                        format!("'{k}' is not a connection parameter type"),
                    );
                }
                k
            }
            None => {
                sink.warn(
                    "invalid-connection-parameter",
                    &p_at,
                    "a connection parameter needs a 'type'; read as string",
                );
                "string".to_owned()
            }
        };
        let oauth_key = member_key(obj, "oAuthSettings", &p_at, sink);
        let ui_key = member_key(obj, "uiDefinition", &p_at, sink);
        for key in obj.keys() {
            if !PARAMETER_FIELDS.contains(&key.as_str())
                && !key.eq_ignore_ascii_case("oAuthSettings")
                && !key.eq_ignore_ascii_case("uiDefinition")
                && let Some(near) = PARAMETER_FIELDS.iter().find(|k| edit_distance(k, key) <= 2)
            {
                sink.warn(
                    "misspelled-property",
                    &p_at.key(key),
                    format!("unknown connection parameter field '{key}'; did you mean '{near}'?"),
                );
            }
        }
        let oauth_settings = match oauth_key.and_then(|k| obj.get(k)) {
            Some(Value::Object(settings)) => {
                let s_at = p_at.key(oauth_key.unwrap_or_default());
                if !matches!(settings.get("identityProvider"), Some(Value::String(_))) {
                    sink.warn(
                        "invalid-connection-parameter",
                        &s_at,
                        "OAuth settings need an 'identityProvider'",
                    );
                }
                let value = Value::Object(settings.clone());
                let declared: Vec<&str> = params.keys().map(String::as_str).collect();
                for problem in OAuthSettings::parse(&value).problems(name, &declared) {
                    sink.warn("oauth-setting", &s_at, problem);
                }
                Some(value)
            }
            Some(other) => {
                sink.warn(
                    "invalid-connection-parameter",
                    &p_at.key(oauth_key.unwrap_or_default()),
                    format!(
                        "'oAuthSettings' must be an object, found {}; ignored",
                        kind(other)
                    ),
                );
                None
            }
            None => {
                if param_kind.eq_ignore_ascii_case("oauthSetting") {
                    sink.warn(
                        "invalid-connection-parameter",
                        &p_at,
                        "an oauthSetting parameter needs 'oAuthSettings'",
                    );
                }
                None
            }
        };
        let ui = ui_key.and_then(|k| fields::object(obj, k, &p_at, sink));
        let ui_at = p_at.key("uiDefinition");
        let constraints = ui.and_then(|u| fields::object(u, "constraints", &ui_at, sink));
        let c_at = ui_at.key("constraints");
        let required = match constraints.and_then(|c| c.get("required")) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
            _ => false,
        };
        let mut allowed_values = Vec::new();
        for (list, list_at) in [
            (
                constraints.and_then(|c| c.get("allowedValues")),
                c_at.key("allowedValues"),
            ),
            (obj.get("allowedValues"), p_at.key("allowedValues")),
        ] {
            match list {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for item in items {
                        match item.get("value") {
                            Some(Value::String(s)) => allowed_values.push(s.clone()),
                            Some(v @ (Value::Number(_) | Value::Bool(_))) => {
                                allowed_values.push(v.to_string());
                            }
                            _ => {}
                        }
                    }
                }
                Some(other) => sink.warn(
                    "invalid-connection-parameter",
                    &list_at,
                    format!(
                        "'allowedValues' must be an array, found {}; ignored",
                        kind(other)
                    ),
                ),
            }
        }
        out.insert(
            name.clone(),
            ConnectionParameter {
                name: name.clone(),
                kind: param_kind,
                display_name: ui.and_then(|u| text_any_case(u, "displayName", &ui_at, sink)),
                description: ui.and_then(|u| text_any_case(u, "description", &ui_at, sink)),
                required,
                allowed_values,
                oauth_settings,
                raw: raw.clone(),
            },
        );
    }
    out
}

fn parameter_sets(sets: &Object, at: &Ptr<'_>, sink: &mut Sink) -> ConnectionParameterSets {
    let mut values = Vec::new();
    match sets.get("values") {
        Some(Value::Array(items)) => {
            let values_at = at.key("values");
            for (i, item) in items.iter().enumerate() {
                let item_at = values_at.index(i);
                let Value::Object(obj) = item else {
                    sink.warn(
                        "invalid-field",
                        &item_at,
                        format!(
                            "a parameter set must be an object, found {}; ignored",
                            kind(item)
                        ),
                    );
                    continue;
                };
                let Some(name) = fields::string(obj, "name", &item_at, sink) else {
                    sink.warn(
                        "invalid-field",
                        &item_at,
                        "a parameter set needs a 'name'; ignored",
                    );
                    continue;
                };
                let display_name =
                    fields::object(obj, "uiDefinition", &item_at, sink).and_then(|u| {
                        let u_at = item_at.key("uiDefinition");
                        text_any_case(u, "displayName", &u_at, sink)
                    });
                let parameters = fields::object(obj, "parameters", &item_at, sink)
                    .map(|p| connection_parameters(p, &item_at.key("parameters"), sink))
                    .unwrap_or_default();
                values.push(ConnectionParameterSet {
                    name,
                    display_name,
                    parameters,
                });
            }
        }
        Some(other) => sink.warn(
            "invalid-field",
            &at.key("values"),
            format!("'values' must be an array, found {}; ignored", kind(other)),
        ),
        None => sink.warn(
            "invalid-field",
            at,
            "'connectionParameterSets' has no 'values'",
        ),
    }
    ConnectionParameterSets {
        ui_definition: sets.get("uiDefinition").cloned().unwrap_or(Value::Null),
        values,
    }
}

fn policy(item: &Value, at: &Ptr<'_>, sink: &mut Sink) -> Option<PolicyInstance> {
    let Value::Object(obj) = item else {
        sink.warn(
            "invalid-policy",
            at,
            format!(
                "a policy template instance must be an object, found {}; ignored",
                kind(item)
            ),
        );
        return None;
    };
    let Some(id) = fields::string(obj, "templateId", at, sink).filter(|s| !s.trim().is_empty())
    else {
        sink.warn(
            "invalid-policy",
            at,
            "a policy template instance needs a 'templateId'; ignored",
        );
        return None;
    };
    let lower = id.trim().to_ascii_lowercase();
    if lower != id {
        sink.warn(
            "template-id-case",
            &at.key("templateId"),
            format!("templateId '{id}' is not lower-case; read as '{lower}'"),
        );
    }
    if !junction_policy::is_known(&lower) {
        sink.warn(
            "unknown-policy-template",
            &at.key("templateId"),
            format!("'{lower}' is not a known policy template"),
        );
    }
    let parameters = match obj.get("parameters") {
        Some(Value::Object(p)) => p.clone(),
        None | Some(Value::Null) => Map::new(),
        Some(other) => {
            sink.warn(
                "invalid-policy",
                &at.key("parameters"),
                format!(
                    "'parameters' must be an object, found {}; ignored",
                    kind(other)
                ),
            );
            Map::new()
        }
    };
    Some(PolicyInstance {
        template_id: lower,
        title: fields::string(obj, "title", at, sink),
        parameters,
        pointer: at.render(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_parameters_policies_and_flags_template_case() {
        let doc = json!({"properties": {
            "iconBrandColor": "#fff",
            "capabilities": ["actions"],
            "connectionParameters": {
                "api_key": {"type": "securestring", "uiDefinition": {
                    "displayName": "Key", "description": "d",
                    "constraints": {"required": "true", "allowedValues": [{"value": "a"}]}}},
                "token": {"type": "oauthSetting", "oAuthSettings": {"identityProvider": "oauth2", "clientId": "app"}}
            },
            "policyTemplateInstances": [
                {"templateId": "setheader", "title": "t", "parameters": {"x-ms-apimTemplateParameter.name": "h"}},
                {"templateId": "SetProperty", "parameters": {}},
                {"title": "no id"},
                {"templateId": "frobnicate"}
            ],
            "stackowner": "me",
            "publisher": "p"
        }});
        let mut sink = Sink::new("apiProperties.json");
        let p = build(&doc, &mut sink).unwrap();
        assert_eq!(p.connection_parameters.len(), 2);
        let key = &p.connection_parameters["api_key"];
        assert!(key.required && key.is_secret());
        assert_eq!(key.allowed_values, ["a"]);
        assert!(p.connection_parameters["token"].oauth_settings.is_some());
        let ids: Vec<&str> = p
            .policy_template_instances
            .iter()
            .map(|i| i.template_id.as_str())
            .collect();
        assert_eq!(ids, ["setheader", "setproperty", "frobnicate"]);
        assert_eq!(
            p.policy_template_instances[1].pointer,
            "/properties/policyTemplateInstances/1"
        );
        assert_eq!(p.other.get("stackowner"), Some(&json!("me")));
        let d: Vec<(&str, String)> = sink
            .into_diagnostics()
            .into_iter()
            .map(|d| (d.code, d.pointer))
            .collect();
        assert_eq!(
            d,
            vec![
                ("misspelled-property", "/properties/stackowner".into()),
                // `oauth2` without URLs: a login could not run.
                (
                    "oauth-setting",
                    "/properties/connectionParameters/token/oAuthSettings".into()
                ),
                (
                    "template-id-case",
                    "/properties/policyTemplateInstances/1/templateId".into()
                ),
                (
                    "invalid-policy",
                    "/properties/policyTemplateInstances/2".into()
                ),
                (
                    "unknown-policy-template",
                    "/properties/policyTemplateInstances/3/templateId".into()
                ),
            ]
        );
    }

    #[test]
    fn field_names_in_the_wrong_case_are_read_and_reported() {
        let doc = json!({"properties": {"iconBrandColor": "#fff", "connectionParameterSets": {
            "uiDefinition": {"displayname": "Pick one"},
            "values": [{"name": "aad", "uiDefinition": {"displayname": "AAD"}, "parameters": {
                "token": {"type": "oauthSetting", "oauthSettings": {"identityProvider": "aad",
                              "clientId": "app", "scopes": ["https://graph.microsoft.com/.default"]},
                          "uiDefinition": {"displayname": "Sign in"}},
                "other": {"type": "oauthSetting", "uidefinition": {}, "typ": 1}
            }}]
        }}});
        let mut sink = Sink::new("p");
        let p = build(&doc, &mut sink).unwrap();
        let sets = p.connection_parameter_sets.unwrap();
        let set = &sets.values[0];
        assert_eq!(set.display_name.as_deref(), Some("AAD"));
        let token = &set.parameters["token"];
        assert_eq!(token.display_name.as_deref(), Some("Sign in"));
        assert_eq!(
            token.oauth_settings,
            Some(json!({"identityProvider": "aad", "clientId": "app",
                        "scopes": ["https://graph.microsoft.com/.default"]}))
        );
        let d: Vec<(&str, String)> = sink
            .into_diagnostics()
            .into_iter()
            .map(|d| (d.code, d.message))
            .collect();
        assert_eq!(
            d,
            vec![
                (
                    "misspelled-property",
                    "'oauthSettings' should be written 'oAuthSettings'; read as 'oAuthSettings'"
                        .into()
                ),
                (
                    "misspelled-property",
                    "'uidefinition' should be written 'uiDefinition'; read as 'uiDefinition'"
                        .into()
                ),
                (
                    "misspelled-property",
                    "unknown connection parameter field 'typ'; did you mean 'type'?".into()
                ),
                (
                    "invalid-connection-parameter",
                    "an oauthSetting parameter needs 'oAuthSettings'".into()
                ),
            ]
        );
    }

    #[test]
    fn odd_shapes_are_warnings() {
        for doc in [
            json!([]),
            json!({}),
            json!({"properties": 3}),
            json!({"properties": {"connectionParameters": [], "policyTemplateInstances": {}, "capabilities": "x"}}),
        ] {
            let mut sink = Sink::new("p");
            let _ = build(&doc, &mut sink);
            assert!(sink.into_diagnostics().iter().all(|d| !d.is_error()));
        }
    }
}
