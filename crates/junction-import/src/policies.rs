//! Policy template instances and custom code, checked at import exactly as the gateway
//! will compile them.
//!
//! Every instance is compiled by `junction-policy`; each finding becomes a warning that
//! points at the parameter concerned in `apiProperties.json` (and, for a malformed
//! expression, at the character in it). The connector still loads — Power Platform
//! accepted these packages — but `junction serve` will answer the operations a broken
//! instance applies to with `500` naming it, and `junction validate` lists them here:
//!
//! | code | meaning |
//! |---|---|
//! | `policy-parameter` | a parameter is missing, has the wrong type or an impossible value: the instance cannot run |
//! | `policy-expression` | an expression is malformed or calls an unknown function: the instance cannot run |
//! | `policy-unknown-parameter` | a parameter the template does not take; ignored |
//! | `policy-unknown-operation` | `x-ms-apimTemplate-operationName` names an operation the definition does not declare; ignored |
//! | `policy-open-host` | the backend host would come from the client; refused unless `allowed_hosts` is set |
//! | `policy-connection-case` | a connection parameter read under another case than declared; matched case-insensitively |
//! | `custom-code` | operations implemented by the package's C# script, which Junction cannot run (they answer 501) |

use std::collections::HashSet;

use junction_model::{ApiProperties, Connector, CustomCode};
use junction_policy::Kind;

use crate::ptr::Ptr;
use crate::sink::Sink;

/// One compiled instance and where it is.
pub(crate) struct Checked {
    pointer: String,
    compiled: junction_policy::Compiled,
}

/// Compiles every policy instance of `properties` and reports what is wrong with each.
pub(crate) fn compile(properties: &ApiProperties, sink: &mut Sink) -> Vec<Checked> {
    let mut out = Vec::with_capacity(properties.policy_template_instances.len());
    for (position, instance) in properties.policy_template_instances.iter().enumerate() {
        let index = instance
            .pointer
            .rsplit('/')
            .next()
            .and_then(|i| i.parse().ok())
            .unwrap_or(position);
        let compiled = junction_policy::compile(instance, index);
        for finding in &compiled.findings {
            sink.warn_at_char(
                finding.code,
                &Ptr::rendered(&finding.pointer),
                finding.message.clone(),
                finding.offset,
            );
        }
        out.push(Checked {
            pointer: instance.pointer.clone(),
            compiled,
        });
    }
    out
}

/// The checks that need the definition: operation names, `{param}`s of each operation,
/// and the operations custom code takes over.
pub(crate) fn check_operations(
    checked: &[Checked],
    connector: Option<&Connector>,
    sink: &mut Sink,
) {
    let Some(connector) = connector else { return };
    let ids: HashSet<&str> = connector
        .operations
        .iter()
        .map(|op| op.id.as_str())
        .collect();
    for Checked { pointer, compiled } in checked {
        if let Some(listed) = &compiled.operations {
            let names = format!("{pointer}/parameters/x-ms-apimTemplate-operationName");
            let names = Ptr::rendered(&names);
            for (i, id) in listed.iter().enumerate() {
                if !ids.contains(id.as_str()) {
                    sink.warn(
                        "policy-unknown-operation",
                        &names.index(i),
                        format!("no operation '{id}' is declared; this entry is ignored"),
                    );
                }
            }
        }
        let Some(policy) = &compiled.policy else {
            continue;
        };
        connection_case(policy, connector, pointer, sink);
        // `{name}` in a new path or side-call URL must be a parameter of each operation.
        let placeholders = policy.placeholders();
        if placeholders.is_empty() {
            continue;
        }
        let key = match policy.kind {
            Kind::Route { .. } => "x-ms-apimTemplateParameter.newPath",
            _ => "x-ms-apimTemplateParameter.parameterValueUrl",
        };
        let at = format!("{pointer}/parameters/{key}");
        for op in connector
            .operations
            .iter()
            .filter(|op| policy.applies_to(&op.id) && !op.is_trigger())
        {
            for name in &placeholders {
                if !op.parameters.iter().any(|p| p.name == *name) {
                    sink.warn(
                        "policy-parameter",
                        &Ptr::rendered(&at),
                        format!(
                            "`{{{name}}}` is not a parameter of operation '{}', so {} cannot run for it (the operation answers 500)",
                            op.id,
                            policy.label()
                        ),
                    );
                }
            }
        }
    }
    if let Some(code) = connector
        .properties
        .as_ref()
        .and_then(|p| p.custom_code.as_ref())
    {
        custom_code(code, connector, sink);
    }
}

/// Warns about a connection value a policy reads under another case than the package
/// declares it (`CompanyId` and `companyId`): Power Platform matches such names
/// case-insensitively, and so does Junction; the warning says so.
fn connection_case(
    policy: &junction_policy::Policy,
    connector: &Connector,
    pointer: &str,
    sink: &mut Sink,
) {
    let properties = connector.properties.as_ref();
    let declared: Vec<&str> = connector
        .connection_parameters()
        .map(|p| p.name.as_str())
        .chain(
            properties
                .and_then(|p| p.connection_parameter_sets.as_ref())
                .into_iter()
                .flat_map(|sets| sets.values.iter())
                .flat_map(|set| set.parameters.keys().map(String::as_str)),
        )
        .collect();
    let mut seen = HashSet::new();
    for (name, _) in policy.connection_values() {
        let name = name.strip_prefix("token:").unwrap_or(name);
        if declared.contains(&name) || !seen.insert(name) {
            continue;
        }
        if let Some(as_declared) = declared.iter().find(|d| d.eq_ignore_ascii_case(name)) {
            sink.warn(
                "policy-connection-case",
                &Ptr::rendered(&format!("{pointer}/parameters")),
                format!(
                    "{} reads connection parameter '{name}', which the package declares as '{as_declared}'; names are matched without regard to case, as Power Platform does",
                    policy.label()
                ),
            );
        }
    }
}

/// Reports the operations a package's custom code implements.
fn custom_code(code: &CustomCode, connector: &Connector, sink: &mut Sink) {
    let affected: Vec<&str> = connector
        .operations
        .iter()
        .filter(|op| !op.is_trigger() && code.handles(&op.id))
        .map(|op| op.id.as_str())
        .collect();
    let pointer = Ptr::rendered(&code.pointer);
    let mut listed = affected
        .iter()
        .take(12)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if affected.len() > 12 {
        listed.push_str(&format!(" and {} more", affected.len() - 12));
    }
    let message = if affected.is_empty() {
        format!(
            "the package declares custom code ({}) for operations the definition does not declare; nothing is affected",
            code.declared_by
        )
    } else {
        format!(
            "{} operation{} run{} the package's custom code (C# script, declared by {}), which Junction cannot run; {} answer{} 501: {listed}",
            affected.len(),
            if affected.len() == 1 { "" } else { "s" },
            if affected.len() == 1 { "s" } else { "" },
            code.declared_by,
            if affected.len() == 1 { "it" } else { "they" },
            if affected.len() == 1 { "s" } else { "" },
        )
    };
    sink.warn("custom-code", &pointer, message);
}
