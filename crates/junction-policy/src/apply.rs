//! Run: compiled policies applied, in declared order, to one request or one response.
//!
//! The runtime hands over the request it would send ([`Outgoing`]: method, base URL, path,
//! query, headers, JSON body), already authenticated, so policies see the credentials as
//! Power Platform's do (`Bearer @headers('Authorization')`). `setvaluefromurl` makes its side
//! call through [`SideCalls`], which the runtime implements with the connector's own
//! client. Nothing here does I/O.

use std::future::Future;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value};

use crate::eval::{self, Env, EvalError, Scope, decode, encode, render, render_value};
use crate::expr::{Root, Step};
use crate::host::{self, HostError};
use crate::json;
use crate::policy::{ExistsAction, Kind, Policy, Target, ValueTarget};

/// The request about to be sent upstream.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub method: http::Method,
    /// The method the client used (`@Request.OriginalHTTPMethod`).
    pub original_method: http::Method,
    /// Absolute base URL (scheme, authority, base path) without a trailing `/`.
    pub base: String,
    /// Encoded path below the base, starting with `/`.
    pub path: String,
    /// Encoded query string, without `?`.
    pub query: String,
    pub headers: HeaderMap,
    /// The JSON body, when the operation's policies read it.
    pub body: Option<Value>,
    /// Whether a policy changed the body.
    pub body_changed: bool,
    /// A call of a next link: the URL is the backend's own, so policies that change the
    /// method, path or query do not run.
    pub next_link: bool,
}

impl Outgoing {
    /// The full URL: base, path and query.
    pub fn url(&self) -> String {
        let mut url =
            String::with_capacity(self.base.len() + self.path.len() + self.query.len() + 1);
        url.push_str(&self.base);
        url.push_str(&self.path);
        if !self.query.is_empty() {
            url.push('?');
            url.push_str(&self.query);
        }
        url
    }
}

/// How host policies may change where requests go.
#[derive(Debug, Clone, Copy)]
pub struct Hosts<'a> {
    /// False when the operator's `backend` replaces every host policy.
    pub apply: bool,
    /// `allowed_hosts`: when not empty, every host a policy computes must match.
    pub allowed: &'a [String],
}

/// The side calls of `setvaluefromurl`, made by the runtime with the connector's client,
/// timeout and (through `headers`) credentials.
pub trait SideCalls: Sync {
    /// Sends `method url` with `headers` and no body; returns the JSON body of a 2xx answer,
    /// or why there is none.
    fn call(
        &self,
        method: http::Method,
        url: String,
        headers: HeaderMap,
    ) -> impl Future<Output = Result<Value, SideCallError>> + Send;
}

/// Why a side call gave no value: what to tell the client, and the caller's own error (a
/// rate limit, a time-out …), which the policy's failure carries on so that its kind is
/// not lost.
#[derive(Debug, Clone)]
pub struct SideCallError {
    pub message: String,
    pub cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl SideCallError {
    pub fn new(message: impl Into<String>) -> Self {
        SideCallError {
            message: message.into(),
            cause: None,
        }
    }
}

/// Whose fault a policy failure is; decides the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A value from the request cannot be used (400).
    Client,
    /// The configuration cannot serve it: a missing connection value, a host that would
    /// come from the client without `allowed_hosts` (500).
    Misconfigured,
    /// The backend's answer cannot be used, or a side call failed (502).
    Upstream,
    /// The backend no longer accepts the connection's credentials (401).
    Unauthenticated,
}

/// A policy that could not be applied.
#[derive(Debug, Clone)]
pub struct PolicyError {
    pub kind: FailureKind,
    /// Names the policy and says why; never contains a secret.
    pub message: String,
    /// The error of a side call the policy made, as its caller gave it.
    pub cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl PartialEq for PolicyError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PolicyError {}

fn fail(policy: &Policy, kind: FailureKind, why: impl std::fmt::Display) -> PolicyError {
    PolicyError {
        kind,
        message: format!("{}: {why}", policy.label()),
        cause: None,
    }
}

fn eval_error(policy: &Policy, error: EvalError) -> PolicyError {
    match error {
        EvalError::MissingConnection(name) => fail(
            policy,
            FailureKind::Misconfigured,
            format!("connection value '{name}' is not set"),
        ),
    }
}

/// Applies the request policies `chain` to `out`, in order.
pub async fn run_request<S: SideCalls>(
    chain: &[Arc<Policy>],
    out: &mut Outgoing,
    env: &dyn Env,
    hosts: &Hosts<'_>,
    side: &S,
) -> Result<(), PolicyError> {
    for policy in chain {
        match &policy.kind {
            Kind::SetHeader {
                name,
                value,
                action,
            } => {
                if *action == ExistsAction::Skip && out.headers.contains_key(name) {
                    continue;
                }
                let rendered = {
                    let scope = request_scope(env, out);
                    render(value, &scope, false).map_err(|e| eval_error(policy, e))?
                };
                // `Host` reaches a virtual host on the backend's address: a host and
                // port, nothing that could change what the request means.
                if *name == http::header::HOST && !host::is_authority(rendered.text.trim()) {
                    return Err(fail(
                        policy,
                        FailureKind::Client,
                        "the Host it sets is not a host name with an optional port".to_owned(),
                    ));
                }
                let header = header_value(
                    policy,
                    &rendered.text,
                    rendered.secret,
                    value.exprs().next().is_some(),
                )?;
                match action {
                    ExistsAction::Override | ExistsAction::Skip => {
                        out.headers.insert(name.clone(), header);
                    }
                    ExistsAction::Append => {
                        out.headers.append(name.clone(), header);
                    }
                }
            }
            Kind::SetQueryParameter {
                name,
                value,
                action,
            } => {
                if out.next_link {
                    continue;
                }
                let exists = eval::query_value(&out.query, name).is_some();
                if *action == ExistsAction::Skip && exists {
                    continue;
                }
                let rendered = {
                    let scope = request_scope(env, out);
                    render(value, &scope, false).map_err(|e| eval_error(policy, e))?
                };
                if *action == ExistsAction::Override && exists {
                    remove_query(&mut out.query, name);
                }
                if !out.query.is_empty() {
                    out.query.push('&');
                }
                encode(&mut out.query, name);
                out.query.push('=');
                encode(&mut out.query, &rendered.text);
            }
            Kind::HostUrl(template) => {
                if !hosts.apply {
                    continue;
                }
                let base = {
                    let scope = request_scope(env, out);
                    template.evaluate(&scope).map_err(|e| match e {
                        HostError::Eval(e) => eval_error(policy, e),
                        HostError::Refused(why) => fail(policy, FailureKind::Client, why),
                    })?
                };
                let host = host::host_of(&base);
                if let Some(what) = &template.open_host
                    && hosts.allowed.is_empty()
                {
                    return Err(fail(
                        policy,
                        FailureKind::Misconfigured,
                        format!(
                            "the backend host would come from the request ({what}); list the hosts it may reach in `allowed_hosts` of the connector's configuration"
                        ),
                    ));
                }
                let (name, port) = &host;
                let default_port = if base.starts_with("http://") { 80 } else { 443 };
                if !hosts.allowed.is_empty()
                    && !host::host_allowed((name, *port), default_port, hosts.allowed)
                {
                    return Err(fail(
                        policy,
                        FailureKind::Client,
                        format!("the backend host `{name}:{port}` is not in `allowed_hosts`"),
                    ));
                }
                out.base = base;
            }
            Kind::Route { path, method } => {
                if out.next_link {
                    continue;
                }
                if let Some(method) = method {
                    out.method = method.clone();
                }
                let rendered = {
                    let scope = request_scope(env, out);
                    render(path, &scope, true).map_err(|e| eval_error(policy, e))?
                };
                let (new_path, new_query) = match rendered.text.split_once('?') {
                    Some((p, q)) => (p.to_owned(), q.to_owned()),
                    None => (rendered.text, String::new()),
                };
                if new_path
                    .split('/')
                    .any(|segment| segment == "." || segment == "..")
                {
                    return Err(fail(
                        policy,
                        FailureKind::Client,
                        "a parameter value would make a `.` or `..` segment in the new path, which cannot be sent safely",
                    ));
                }
                out.path = new_path;
                if !new_query.is_empty() {
                    out.query = if out.query.is_empty() {
                        new_query
                    } else {
                        format!("{new_query}&{}", out.query)
                    };
                }
            }
            Kind::SetValueFromUrl {
                target,
                url,
                value,
                method,
            } => {
                let rendered = {
                    let scope = request_scope(env, out);
                    render(url, &scope, true).map_err(|e| eval_error(policy, e))?
                };
                let mut headers = out.headers.clone();
                headers.remove(http::header::CONTENT_LENGTH);
                let answer = side
                    .call(
                        method.clone(),
                        format!("{}{}", out.base, rendered.text),
                        headers,
                    )
                    .await
                    .map_err(|why| PolicyError {
                        cause: why.cause,
                        ..fail(policy, FailureKind::Upstream, why.message)
                    })?;
                let found = json::get(&answer, &value.steps).ok_or_else(|| {
                    fail(
                        policy,
                        FailureKind::Upstream,
                        format!("the answer of {method} {} has no `{value}`", rendered.text),
                    )
                })?;
                match target {
                    ValueTarget::Header(name) => {
                        let header = header_value(policy, &json::text(found), true, true)?;
                        out.headers.insert(name.clone(), header);
                    }
                    ValueTarget::Query(name) => {
                        remove_query(&mut out.query, name);
                        if !out.query.is_empty() {
                            out.query.push('&');
                        }
                        encode(&mut out.query, name);
                        out.query.push('=');
                        encode(&mut out.query, &json::text(found));
                    }
                    ValueTarget::Body(path) => {
                        let found = found.clone();
                        let body = out.body.get_or_insert_with(|| Value::Object(Map::new()));
                        if json::set(body, &path.steps, found) {
                            out.body_changed = true;
                        }
                    }
                }
            }
            Kind::Unauthenticated { .. }
            | Kind::PollingTrigger { .. }
            | Kind::UpdateNextLink { .. }
            | Kind::Unknown => {}
            data => {
                let headers = &out.headers;
                let query = out.query.as_str();
                if let Some(body) = out.body.as_mut() {
                    let scope = Scope {
                        headers: Some(headers),
                        query: Some(query),
                        ..Scope::new(env)
                    };
                    if apply_data(policy, data, body, &scope)? {
                        out.body_changed = true;
                    }
                }
            }
        }
    }
    Ok(())
}

fn request_scope<'a>(env: &'a dyn Env, out: &'a Outgoing) -> Scope<'a> {
    Scope {
        headers: Some(&out.headers),
        query: Some(&out.query),
        body: out.body.as_ref(),
        ..Scope::new(env)
    }
}

fn header_value(
    policy: &Policy,
    text: &str,
    secret: bool,
    from_message: bool,
) -> Result<HeaderValue, PolicyError> {
    let mut value = HeaderValue::from_str(text.trim()).map_err(|_| {
        fail(
            policy,
            if from_message {
                FailureKind::Client
            } else {
                FailureKind::Misconfigured
            },
            "the header value contains CR, LF or another character a header cannot hold",
        )
    })?;
    value.set_sensitive(secret);
    Ok(value)
}

/// Removes every pair named `name` from an encoded query string.
fn remove_query(query: &mut String, name: &str) {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !pair.is_empty() && decode(key) != name
        })
        .collect();
    *query = kept.join("&");
}

/// A response as the response policies see it.
#[derive(Debug)]
pub struct Incoming<'a> {
    pub status: u16,
    pub headers: &'a mut HeaderMap,
    /// The JSON body, when it was read.
    pub body: Option<&'a mut Value>,
}

/// Turns a backend's next link into one that points back through the gateway.
pub trait NextLinks {
    /// The rewritten link, or `None` to leave it as it is (not on the backend).
    fn rewrite(&self, next_link: &str) -> Option<String>;
}

/// Applies the response (or failure) policies `chain`. Returns whether the body changed.
pub fn run_response(
    chain: &[Arc<Policy>],
    message: &mut Incoming<'_>,
    env: &dyn Env,
    links: &dyn NextLinks,
) -> Result<bool, PolicyError> {
    let mut changed = false;
    for policy in chain {
        match &policy.kind {
            Kind::SetHeader {
                name,
                value,
                action,
            } => {
                if *action == ExistsAction::Skip && message.headers.contains_key(name) {
                    continue;
                }
                let rendered = {
                    let scope = Scope {
                        headers: Some(message.headers),
                        body: message.body.as_deref(),
                        ..Scope::new(env)
                    };
                    render(value, &scope, false).map_err(|e| eval_error(policy, e))?
                };
                let header =
                    header_value(policy, &rendered.text, rendered.secret, false).map_err(|e| {
                        PolicyError {
                            kind: FailureKind::Upstream,
                            ..e
                        }
                    })?;
                if *action == ExistsAction::Append {
                    message.headers.append(name.clone(), header);
                } else {
                    message.headers.insert(name.clone(), header);
                }
            }
            Kind::UpdateNextLink { name, parent } => {
                let Some(body) = message.body.as_deref_mut() else {
                    continue;
                };
                let mut steps = parent.clone();
                steps.push(Step::Key(name.clone()));
                let Some(Value::String(link)) = json::get(body, &steps) else {
                    continue;
                };
                if let Some(rewritten) = links.rewrite(link) {
                    changed |= json::set(body, &steps, Value::String(rewritten));
                }
            }
            // Request-section only (checked at load).
            Kind::SetValueFromUrl { .. }
            | Kind::HostUrl(_)
            | Kind::Route { .. }
            | Kind::SetQueryParameter { .. }
            | Kind::Unauthenticated { .. }
            | Kind::PollingTrigger { .. }
            | Kind::Unknown => {}
            data => {
                let headers: &HeaderMap = message.headers;
                if let Some(body) = message.body.as_deref_mut() {
                    let scope = Scope {
                        headers: Some(headers),
                        ..Scope::new(env)
                    };
                    changed |= apply_data(policy, data, body, &scope)?;
                }
            }
        }
    }
    Ok(changed)
}

/// The body policies. `scope` gives headers, query and the environment; the body itself is
/// read from `body` as it changes.
fn apply_data(
    policy: &Policy,
    kind: &Kind,
    body: &mut Value,
    scope: &Scope<'_>,
) -> Result<bool, PolicyError> {
    let mut changed = false;
    match kind {
        Kind::SetProperty { parent, sub, value } => {
            if let Some(constant) = value.as_constant() {
                // A constant: no expression reads the body, so set in place.
                let new = render_value(value, scope)
                    .map_err(|e| eval_error(policy, e))?
                    .unwrap_or(Value::String(constant));
                let mut set = |item: &mut Value| changed |= json::set(item, sub, new.clone());
                match json::get_mut(body, &parent.steps) {
                    Some(Value::Array(items)) => items.iter_mut().for_each(&mut set),
                    Some(item) => set(item),
                    None => {}
                }
                return Ok(changed);
            }
            for item_path in json::items(body, &parent.steps) {
                let new = {
                    let item = json::get(body, &item_path);
                    let item_scope = Scope {
                        body: Some(&*body),
                        item,
                        ..*scope
                    };
                    render_value(value, &item_scope).map_err(|e| eval_error(policy, e))?
                };
                if let Some(new) = new {
                    changed |= json::set(body, &json::join(&item_path, sub), new);
                }
            }
        }
        Kind::StringReplace { target, from, to } => {
            changed |= each_target(body, target, |old, _| match old {
                Value::String(s) if s.contains(from.as_str()) => {
                    Some(Value::String(s.replace(from.as_str(), to)))
                }
                _ => None,
            });
        }
        Kind::EncodePropertyValue { target } => {
            changed |= each_target(body, target, |old, _| {
                let text = match old {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                let mut encoded = String::new();
                encode(&mut encoded, &text);
                (encoded != text).then_some(Value::String(encoded))
            });
        }
        Kind::StringToArray {
            target,
            delimiters,
            child,
        } => {
            changed |= each_target(body, target, |old, _| {
                let Value::String(s) = old else { return None };
                let items = s
                    .split(|c| delimiters.contains(&c))
                    .map(str::trim)
                    .filter(|part| !part.is_empty())
                    .map(|part| {
                        let mut object = Map::new();
                        object.insert(child.clone(), Value::String(part.to_owned()));
                        Value::Object(object)
                    })
                    .collect();
                Some(Value::Array(items))
            });
        }
        Kind::ConvertObjectToArray {
            target,
            key_name,
            value_name,
        } => {
            changed |= each_target(body, target, |old, _| {
                let Value::Object(map) = old else { return None };
                let items = map
                    .iter()
                    .map(|(key, value)| {
                        let mut object = Map::new();
                        object.insert(key_name.clone(), Value::String(key.clone()));
                        object.insert(value_name.clone(), value.clone());
                        Value::Object(object)
                    })
                    .collect();
                Some(Value::Array(items))
            });
        }
        Kind::ConvertArrayToObject {
            target,
            key,
            retain_key,
        } => {
            changed |= each_target(body, target, |old, _| {
                let Value::Array(items) = old else {
                    return None;
                };
                let mut object = Map::new();
                for item in items {
                    let Some(k) = json::get(item, key) else {
                        continue;
                    };
                    let k = match k {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => continue,
                    };
                    let mut value = item.clone();
                    if !retain_key {
                        json::remove(&mut value, key);
                    }
                    object.insert(k, value);
                }
                Some(Value::Object(object))
            });
        }
        Kind::MoveProperties {
            source,
            source_sub,
            destination,
            destination_sub,
            only_sub_properties,
        } => {
            let from = json::join(&source.steps, source_sub);
            let to = json::join(&destination.steps, destination_sub);
            if from.is_empty() || from == to {
                return Ok(false);
            }
            let Some(moved) = json::remove(body, &from) else {
                return Ok(false);
            };
            changed = true;
            if *only_sub_properties {
                if let Value::Object(map) = moved {
                    for (k, v) in map {
                        let mut at = to.clone();
                        at.push(Step::Key(k));
                        json::set(body, &at, v);
                    }
                } else {
                    json::set(body, &from, moved);
                    changed = false;
                }
            } else {
                json::set(body, &to, moved);
            }
        }
        _ => {}
    }
    Ok(changed)
}

/// For each item of `target.parent`: reads the value at `target.sub`, and writes what `f`
/// makes of it at `target.new` (relative to the item for `@item()`). Returns whether
/// anything was written.
fn each_target(
    body: &mut Value,
    target: &Target,
    mut f: impl FnMut(&Value, &Value) -> Option<Value>,
) -> bool {
    let mut changed = false;
    if target.new.root == Root::Item {
        // Everything happens inside each item: work on it in place.
        let mut apply = |item: &mut Value| {
            let new = match json::get(item, &target.sub) {
                Some(old) => f(old, item),
                None => None,
            };
            if let Some(new) = new {
                changed |= json::set(item, &target.new.steps, new);
            }
        };
        match json::get_mut(body, &target.parent.steps) {
            Some(Value::Array(items)) => items.iter_mut().for_each(&mut apply),
            Some(item) => apply(item),
            None => {}
        }
        return changed;
    }
    for item_path in json::items(body, &target.parent.steps) {
        let new = {
            let Some(item) = json::get(body, &item_path) else {
                continue;
            };
            let Some(old) = json::get(item, &target.sub) else {
                continue;
            };
            f(old, item)
        };
        let Some(new) = new else { continue };
        let at = match target.new.root {
            Root::Item => json::join(&item_path, &target.new.steps),
            Root::Body | Root::TriggerBody => target.new.steps.clone(),
        };
        changed |= json::set(body, &at, new);
    }
    changed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use junction_model::PolicyInstance;
    use serde_json::json;

    use super::*;
    use crate::eval::ConnValue;
    use crate::policy::compile;

    struct NoEnv;

    impl Env for NoEnv {
        fn connection(&self, name: &str) -> Option<ConnValue<'_>> {
            (name == "subdomain").then_some(ConnValue {
                value: "acme",
                secret: false,
            })
        }
        fn parameter(&self, name: &str) -> Option<&Value> {
            static ID: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
            (name == "id").then(|| ID.get_or_init(|| json!("42")))
        }
    }

    struct NoLinks;

    impl NextLinks for NoLinks {
        fn rewrite(&self, link: &str) -> Option<String> {
            Some(format!("rewritten:{link}"))
        }
    }

    fn policy(template: &str, parameters: Value) -> Arc<Policy> {
        let instance = PolicyInstance {
            template_id: template.into(),
            title: None,
            parameters: parameters.as_object().unwrap().clone(),
            pointer: "/properties/policyTemplateInstances/0".into(),
        };
        let compiled = compile(&instance, 0);
        Arc::new(
            compiled
                .policy
                .unwrap_or_else(|| panic!("{:?}", compiled.findings)),
        )
    }

    /// Runs one response-section policy on `body`.
    fn on_body(template: &str, parameters: Value, mut body: Value) -> Value {
        let mut parameters = parameters;
        parameters["x-ms-apimTemplate-policySection"] = json!("Response");
        let chain = [policy(template, parameters)];
        let mut headers = HeaderMap::new();
        let mut message = Incoming {
            status: 200,
            headers: &mut headers,
            body: Some(&mut body),
        };
        run_response(&chain, &mut message, &NoEnv, &NoLinks).unwrap();
        body
    }

    #[test]
    fn setproperty_on_objects_and_collections() {
        // The three examples of Power Platform's documentation.
        assert_eq!(
            on_body(
                "setproperty",
                json!({"x-ms-apimTemplateParameter.newPropertyParentPathTemplate": "@body().peopleObject",
                       "x-ms-apimTemplateParameter.newPropertySubPathTemplate": "location",
                       "x-ms-apimTemplateParameter.propertyValuePathTemplate": "USA"}),
                json!({"peopleObject": {"XYZ": {"Age": "30"}}})
            ),
            json!({"peopleObject": {"XYZ": {"Age": "30"}, "location": "USA"}})
        );
        assert_eq!(
            on_body(
                "setproperty",
                json!({"x-ms-apimTemplateParameter.newPropertyParentPathTemplate": "@body().people",
                       "x-ms-apimTemplateParameter.newPropertySubPathTemplate": "age",
                       "x-ms-apimTemplateParameter.propertyValuePathTemplate": "30"}),
                json!({"people": [{"name": "xyz"}, {"name": "pqr"}]})
            ),
            json!({"people": [{"name": "xyz", "age": "30"}, {"name": "pqr", "age": "30"}]})
        );
        assert_eq!(
            on_body(
                "setproperty",
                json!({"x-ms-apimTemplateParameter.newPropertyParentPathTemplate": "@body()",
                       "x-ms-apimTemplateParameter.newPropertySubPathTemplate": "name",
                       "x-ms-apimTemplateParameter.propertyValuePathTemplate": "{@body().firstName} {@body().lastName}"}),
                json!({"firstName": "John", "lastName": "Smith"})
            ),
            json!({"firstName": "John", "lastName": "Smith", "name": "John Smith"})
        );
        // Each item of a collection, from the item.
        assert_eq!(
            on_body(
                "setproperty",
                json!({"x-ms-apimTemplateParameter.newPropertyParentPathTemplate": "@body().people",
                       "x-ms-apimTemplateParameter.newPropertySubPathTemplate": "label",
                       "x-ms-apimTemplateParameter.propertyValuePathTemplate": "#{@item().name}"}),
                json!({"people": [{"name": "a"}, {"name": "b"}]})
            ),
            json!({"people": [{"name": "a", "label": "#a"}, {"name": "b", "label": "#b"}]})
        );
    }

    #[test]
    fn conversions() {
        // convertobjecttoarray, on a collection: for each item (`@item()`).
        assert_eq!(
            on_body(
                "convertobjecttoarray",
                json!({"x-ms-apimTemplateParameter.propertyParentPath": "@body().sets",
                       "x-ms-apimTemplateParameter.propertySubPath": "people",
                       "x-ms-apimTemplateParameter.newPropertyPath": "@item().people",
                       "x-ms-apimTemplateParameter.keyName": "Name",
                       "x-ms-apimTemplateParameter.valueName": "Details"}),
                json!({"sets": [{"people": {"XYZ": {"Age": "30"}}}, {"people": {"ABC": {"Age": "23"}}}]})
            ),
            json!({"sets": [
                {"people": [{"Name": "XYZ", "Details": {"Age": "30"}}]},
                {"people": [{"Name": "ABC", "Details": {"Age": "23"}}]}
            ]})
        );
        // convertarraytoobject: the documentation's example (a new path without `@body()`
        // is a property of the parent).
        let parameters = json!({"x-ms-apimTemplateParameter.propertyParentPath": "@body()",
               "x-ms-apimTemplateParameter.propertySubPath": "peopleArray",
               "x-ms-apimTemplateParameter.keyWithinCollectionPath": "Name",
               "x-ms-apimTemplateParameter.newPropertyPath": "peopleObject",
               "x-ms-apimTemplateParameter.retainKey": "false"});
        assert_eq!(
            on_body(
                "convertarraytoobject",
                parameters.clone(),
                json!({"peopleArray": [{"Name": "XYZ", "Age": "30"}, {"Name": "ABC", "Age": "23"}]})
            ),
            json!({"peopleArray": [{"Name": "XYZ", "Age": "30"}, {"Name": "ABC", "Age": "23"}],
                   "peopleObject": {"XYZ": {"Age": "30"}, "ABC": {"Age": "23"}}})
        );
        let mut retain = parameters;
        retain["x-ms-apimTemplateParameter.retainKey"] = json!("true");
        assert_eq!(
            on_body(
                "convertarraytoobject",
                retain,
                json!({"peopleArray": [{"Name": "XYZ"}]})
            )["peopleObject"],
            json!({"XYZ": {"Name": "XYZ"}})
        );
        // stringtoarray: the documentation's example.
        assert_eq!(
            on_body(
                "stringtoarray",
                json!({"x-ms-apimTemplateParameter.propertyParentPath": "@body()",
                       "x-ms-apimTemplateParameter.propertySubPath": "peopleObject.XYZ.Age",
                       "x-ms-apimTemplateParameter.delimiterList": ";",
                       "x-ms-apimTemplateParameter.childPropertyName": "AgeW",
                       "x-ms-apimTemplateParameter.newPropertyPath": "@body().peopleObject.XYZ.Age"}),
                json!({"peopleObject": {"XYZ": {"Age": "3;0"}, "ABC": {"Age": "23;45"}}})
            ),
            json!({"peopleObject": {"XYZ": {"Age": [{"AgeW": "3"}, {"AgeW": "0"}]}, "ABC": {"Age": "23;45"}}})
        );
        // encodepropertyvalue and stringreplace on each item.
        let encoded = on_body(
            "encodepropertyvalue",
            json!({"x-ms-apimTemplateParameter.propertyParentPath": "@body().refs",
                   "x-ms-apimTemplateParameter.propertySubPath": "id",
                   "x-ms-apimTemplateParameter.newPropertyPath": "@item().id"}),
            json!({"refs": [{"id": "a b/c@d"}, {"id": 7}, {"x": 1}]}),
        );
        assert_eq!(
            encoded,
            json!({"refs": [{"id": "a%20b%2Fc%40d"}, {"id": 7}, {"x": 1}]})
        );
        let replaced = on_body(
            "stringreplace",
            json!({"x-ms-apimTemplateParameter.propertyParentPath": "@body().refs",
                   "x-ms-apimTemplateParameter.propertySubPath": "id",
                   "x-ms-apimTemplateParameter.sourceString": "%",
                   "x-ms-apimTemplateParameter.replacementString": "%25",
                   "x-ms-apimTemplateParameter.newPropertyPath": "@item().id"}),
            encoded,
        );
        assert_eq!(replaced["refs"][0]["id"], "a%2520b%252Fc%2540d");
        // moveproperties, the whole object.
        assert_eq!(
            on_body(
                "moveproperties",
                json!({"x-ms-apimTemplateParameter.srcParentPath": "@body()",
                       "x-ms-apimTemplateParameter.srcSubPath": "a",
                       "x-ms-apimTemplateParameter.dstParentPath": "@body().b",
                       "x-ms-apimTemplateParameter.dstSubPath": "c"}),
                json!({"a": {"x": 1}, "b": {}})
            ),
            json!({"b": {"c": {"x": 1}}})
        );
        // updatenextlink.
        assert_eq!(
            on_body(
                "updatenextlink",
                json!({"x-ms-apimTemplateParameter.nextLinkPropertyName": "@odata.nextLink"}),
                json!({"value": [], "@odata.nextLink": "https://b/x?page=2"})
            ),
            json!({"value": [], "@odata.nextLink": "rewritten:https://b/x?page=2"})
        );
    }

    struct NoSide;

    impl SideCalls for NoSide {
        async fn call(
            &self,
            _: http::Method,
            url: String,
            _: HeaderMap,
        ) -> Result<Value, SideCallError> {
            Ok(json!({"token": format!("for {url}")}))
        }
    }

    fn outgoing() -> Outgoing {
        Outgoing {
            method: http::Method::GET,
            original_method: http::Method::GET,
            base: "https://api.example.com/v1".into(),
            path: "/items/42".into(),
            query: "a=1".into(),
            headers: HeaderMap::new(),
            body: None,
            body_changed: false,
            next_link: false,
        }
    }

    fn run(chain: &[Arc<Policy>], out: &mut Outgoing) -> Result<(), PolicyError> {
        let hosts = Hosts {
            apply: true,
            allowed: &[],
        };
        // A tiny executor: the side call above never waits.
        let future = run_request(chain, out, &NoEnv, &hosts, &NoSide);
        let mut future = std::pin::pin!(future);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        loop {
            if let std::task::Poll::Ready(result) = future.as_mut().poll(&mut cx) {
                return result;
            }
        }
    }

    #[test]
    fn request_policies_in_declared_order() {
        let chain = [
            policy(
                "dynamicsubdomain",
                json!({"x-ms-apimTemplateParameter.urlTemplate": "https://@connectionParameters('subdomain').alisqi.com/api/"}),
            ),
            policy(
                "routerequesttoendpoint",
                json!({"x-ms-apimTemplateParameter.newPath": "/v2/{id}/x?b=2",
                       "x-ms-apimTemplateParameter.httpMethod": "PUT"}),
            ),
            policy(
                "setqueryparameter",
                json!({"x-ms-apimTemplateParameter.name": "a",
                       "x-ms-apimTemplateParameter.value": "one two",
                       "x-ms-apimTemplateParameter.existsAction": "override"}),
            ),
            policy(
                "setvaluefromurl",
                json!({"x-ms-apimTemplateParameter.parameterTemplate": "@headers('X-Token')",
                       "x-ms-apimTemplateParameter.parameterValueUrl": "/token/{id}",
                       "x-ms-apimTemplateParameter.parameterValuePathTemplate": "@body().token"}),
            ),
            policy(
                "setheader",
                json!({"x-ms-apimTemplateParameter.name": "Authorization",
                       "x-ms-apimTemplateParameter.value": "Bearer @headers('X-Token')"}),
            ),
        ];
        let mut out = outgoing();
        run(&chain, &mut out).unwrap();
        assert_eq!(out.method, http::Method::PUT);
        assert_eq!(
            out.url(),
            "https://acme.alisqi.com/api/v2/42/x?b=2&a=one%20two"
        );
        assert_eq!(
            out.headers["authorization"],
            "Bearer for https://acme.alisqi.com/api/token/42"
        );
        assert!(out.headers["x-token"].is_sensitive());
    }

    /// The published AlisQI instance (its host is not reachable from the integration
    /// tests, so the URL a good value gives is checked here).
    #[test]
    fn alisqi_subdomain_from_the_corpus() {
        let package = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/corpus/power-platform-connectors/certified-connectors/AlisQI");
        let loaded = junction_import::load(&package);
        let connector = loaded.connector.unwrap();
        let instance = &connector.policies()[0];
        assert_eq!(instance.template_id, "dynamicsubdomain");
        let chain = [Arc::new(compile(instance, 0).policy.unwrap())];
        let mut out = outgoing();
        out.path = "/getAllSets".into();
        out.query = String::new();
        run(&chain, &mut out).unwrap();
        assert_eq!(out.url(), "https://acme.alisqi.com/api/getAllSets");
    }
}
