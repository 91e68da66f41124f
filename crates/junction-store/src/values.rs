//! Connection values checked against the connector's `connectionParameters` (or the
//! chosen `connectionParameterSet` of a multi-auth connector).
//!
//! Every problem is collected: unknown names, missing required values, wrong types
//! (`int`, `bool`), values outside `allowedValues`, a missing or unknown parameter set.
//! A value is secret when its parameter is (`securestring`, `oauthSetting`,
//! `secureobject`), or when the connector declares no parameters at all (a plain OpenAPI
//! definition: then, as in `[connector.NAME.connection]`, every value is a secret).

use indexmap::IndexMap;
use junction_model::oauth::{CONNECTION_SETTINGS, SECRET_SETTINGS, Settings, placeholders};
use junction_model::{ConnectionParameter, Connector};
use serde_json::Value;

/// Values split into what may be shown and what is sealed.
#[derive(Debug, Default)]
pub struct CheckedValues {
    pub parameter_set: Option<String>,
    pub public: IndexMap<String, String>,
    pub secret: IndexMap<String, String>,
    /// The OAuth parameter (an `oauthSetting`) the chosen set declares, if any.
    pub oauth_parameter: Option<ConnectionParameter>,
}

/// The parameters a connection of `connector` takes, for `parameter_set`.
pub fn parameters<'c>(
    connector: &'c Connector,
    parameter_set: Option<&str>,
) -> Result<(Option<String>, Vec<&'c ConnectionParameter>), Vec<String>> {
    let sets = connector
        .properties
        .as_ref()
        .and_then(|p| p.connection_parameter_sets.as_ref())
        .filter(|s| !s.values.is_empty());
    match (sets, parameter_set) {
        (Some(sets), Some(name)) => match sets.values.iter().find(|s| s.name == name) {
            Some(set) => Ok((Some(set.name.clone()), set.parameters.values().collect())),
            None => Err(vec![format!(
                "connector '{}' has no connection parameter set '{name}' (it has: {})",
                connector.name,
                names(sets.values.iter().map(|s| s.name.as_str()))
            )]),
        },
        (Some(sets), None) => match sets.values.as_slice() {
            [only] => Ok((Some(only.name.clone()), only.parameters.values().collect())),
            _ => Err(vec![format!(
                "connector '{}' offers several ways to authenticate; choose one with `parameter_set` ({})",
                connector.name,
                names(sets.values.iter().map(|s| s.name.as_str()))
            )]),
        },
        (None, Some(name)) => Err(vec![format!(
            "connector '{}' has no connection parameter sets, so `parameter_set` '{name}' cannot apply",
            connector.name
        )]),
        (None, None) => Ok((None, connector.connection_parameters().collect())),
    }
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let list: Vec<&str> = names.collect();
    junction_model::list_or_none(&list)
}

/// The OAuth flows a connection may use (`TOKEN:grantType`).
pub const OAUTH_GRANTS: &[&str] = &["authorization_code", "client_credentials"];

fn is_oauth(parameter: &ConnectionParameter) -> bool {
    parameter.kind.eq_ignore_ascii_case("oauthsetting")
}

/// Whether `setting` of OAuth parameter `oauth` may be given (`TOKEN:setting`), and if so
/// whether it is sealed: the settings of [`CONNECTION_SETTINGS`], and what the settings'
/// templates and additional parameters name (secret when a secure additional parameter or
/// named like a secret or password).
fn oauth_value(oauth: &ConnectionParameter, setting: &str) -> Option<bool> {
    if CONNECTION_SETTINGS.contains(&setting) {
        return Some(SECRET_SETTINGS.contains(&setting));
    }
    let settings = Settings::parse(oauth.oauth_settings.as_ref().unwrap_or(&Value::Null));
    if let Some(extra) = settings
        .additional
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(setting))
    {
        return Some(extra.secure);
    }
    let named = settings.templates().iter().any(|(_, t)| {
        placeholders(t)
            .iter()
            .any(|p| p.eq_ignore_ascii_case(setting))
    });
    let lower = setting.to_ascii_lowercase();
    named.then(|| lower.contains("secret") || lower.contains("password"))
}

/// Checks `values` for a connection of `connector`.
pub fn check(
    connector: &Connector,
    parameter_set: Option<&str>,
    values: &serde_json::Map<String, Value>,
) -> Result<CheckedValues, Vec<String>> {
    let (set, declared) = parameters(connector, parameter_set)?;
    let mut problems = Vec::new();
    let mut checked = CheckedValues {
        parameter_set: set,
        ..CheckedValues::default()
    };
    checked.oauth_parameter = declared.iter().find(|p| is_oauth(p)).map(|p| (*p).clone());
    for (name, value) in values {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                problems.push(format!(
                    "connection value '{name}' must be a string, a number or a boolean"
                ));
                continue;
            }
        };
        if declared.is_empty() {
            checked.secret.insert(name.clone(), text);
            continue;
        }
        // `TOKEN:clientId`, `TOKEN:clientSecret`, `TOKEN:grantType` … of an oauthSetting
        // parameter TOKEN (the OAuth app and flow this connection uses), and values for
        // its templates' placeholders and additional parameters.
        if let Some((base, setting)) = name.split_once(':')
            && let Some(oauth) = declared.iter().find(|p| p.name == base && is_oauth(p))
            && !declared.iter().any(|p| p.name == *name)
        {
            match oauth_value(oauth, setting) {
                Some(_) if setting == "grantType" && !OAUTH_GRANTS.contains(&text.as_str()) => {
                    problems.push(format!(
                        "connection value '{name}' must be one of {}",
                        OAUTH_GRANTS.join(", ")
                    ));
                }
                Some(true) => {
                    checked.secret.insert(name.clone(), text);
                }
                Some(false) => {
                    checked.public.insert(name.clone(), text);
                }
                None => problems.push(format!(
                    "connection value '{name}': an OAuth setting is one of {}, or a value the OAuth settings' templates or additional parameters name",
                    CONNECTION_SETTINGS.join(", ")
                )),
            }
            continue;
        }
        let Some(parameter) = declared.iter().find(|p| p.name == *name) else {
            problems.push(format!(
                "connector '{}' has no connection parameter '{name}' (it has: {})",
                connector.name,
                names(declared.iter().map(|p| p.name.as_str()))
            ));
            continue;
        };
        let kind = parameter.kind.to_ascii_lowercase();
        let typed_ok = match kind.as_str() {
            "int" | "integer" => text.trim().parse::<i64>().is_ok(),
            "bool" | "boolean" => matches!(text.as_str(), "true" | "false"),
            _ => true,
        };
        if !typed_ok {
            problems.push(format!(
                "connection value '{name}' must be of type {} (the value is not shown)",
                parameter.kind
            ));
            continue;
        }
        if !parameter.allowed_values.is_empty() && !parameter.allowed_values.contains(&text) {
            let shown = if parameter.is_secret() {
                "the value".to_owned()
            } else {
                format!("\"{text}\"")
            };
            problems.push(format!(
                "connection value '{name}': {shown} is not one of the allowed values ({})",
                parameter.allowed_values.join(", ")
            ));
            continue;
        }
        if parameter.is_secret() {
            checked.secret.insert(name.clone(), text);
        } else {
            checked.public.insert(name.clone(), text);
        }
    }
    for parameter in &declared {
        // OAuth settings are filled by the login flow, not typed in.
        if parameter.required && !is_oauth(parameter) && !values.contains_key(&parameter.name) {
            problems.push(format!(
                "connection value '{}' is required by connector '{}'",
                parameter.name, connector.name
            ));
        }
    }
    if problems.is_empty() {
        Ok(checked)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn oauth(settings: Value) -> ConnectionParameter {
        ConnectionParameter::oauth_setting("token", settings)
    }

    #[test]
    fn oauth_values_are_the_settings_and_what_the_templates_name() {
        let p = oauth(json!({
            "identityProvider": "oauth2generic",
            "additionalParameters": {"uS_clientSecret": {"type": "securestring"},
                                     "uS_domain": {"type": "string"}},
            "customParameters": {
                "tokenUrlTemplate": {"value": "https://{talkdeskAccountName}.example/token"},
                "tokenBodyTemplate": {"value": "client_secret={TalkdeskClientSecret}&code={code}"}
            }
        }));
        // Settings: sealed or not as their kind says.
        assert_eq!(oauth_value(&p, "certificate"), Some(true));
        assert_eq!(oauth_value(&p, "certificatePassword"), Some(true));
        assert_eq!(oauth_value(&p, "tokenUrl"), Some(false));
        assert_eq!(oauth_value(&p, "clientId"), Some(false));
        // Additional parameters: sealed when secure.
        assert_eq!(oauth_value(&p, "uS_clientSecret"), Some(true));
        assert_eq!(oauth_value(&p, "US_domain"), Some(false));
        // Placeholders: sealed when named like a secret.
        assert_eq!(oauth_value(&p, "talkdeskAccountName"), Some(false));
        assert_eq!(oauth_value(&p, "TalkdeskClientSecret"), Some(true));
        // Anything else is refused.
        assert_eq!(oauth_value(&p, "colour"), None);
    }
}
