//! A definition document → [`Connector`]: which format it is, where the backend lives, and
//! the assembly of everything the other modules read.
//!
//! The only errors raised here are the ones that make a document unusable: a root that is not
//! an object, a missing or unsupported `swagger` / `openapi` version, and `paths` missing or
//! not an object. Everything else is a warning.

use junction_model::{ApiProperties, Connector, SourceFormat, Upstream};
use serde_json::Value;

use crate::fields::{self, Object};
use crate::paths::{self, Ctx};
use crate::ptr::Ptr;
use crate::schema::{Schemas, kind};
use crate::sink::Sink;

/// Policy templates that supply the host at run time, making a missing `host` fine.
const DYNAMIC_HOST_POLICIES: [&str; 2] = ["dynamichosturl", "dynamicsubdomain"];

/// Builds the connector named `name` from the parsed definition `doc`.
pub(crate) fn build(
    doc: &Value,
    name: &str,
    source: &str,
    properties: Option<ApiProperties>,
    sink: &mut Sink,
) -> Option<Connector> {
    let root = Ptr::ROOT;
    let Value::Object(obj) = doc else {
        sink.error(
            "not-an-object",
            &root,
            format!(
                "an API definition must be a JSON object, found {}",
                kind(doc)
            ),
        );
        return None;
    };
    let format = detect_format(obj, sink);
    let paths = match obj.get("paths") {
        Some(Value::Object(p)) => Some(p),
        Some(other) => {
            sink.error(
                "no-paths",
                &root.key("paths"),
                format!("'paths' must be an object, found {}", kind(other)),
            );
            None
        }
        None => {
            if format.is_some() {
                sink.error("no-paths", &root, "the definition has no 'paths'");
            }
            None
        }
    };
    let (format, paths) = (format?, paths?);
    if paths.keys().all(|k| k.starts_with("x-")) {
        sink.warn(
            "no-operations",
            &root.key("paths"),
            "the definition declares no paths",
        );
    }

    let info = fields::object(obj, "info", &root, sink);
    let info_at = root.key("info");
    if info.is_none() {
        sink.warn("no-info", &root, "the definition has no 'info'");
    }
    let title = info.and_then(|i| fields::string(i, "title", &info_at, sink));
    if info.is_some() && title.is_none() {
        sink.warn("no-title", &info_at, "'info' has no 'title'");
    }

    let dynamic_host = properties.as_ref().is_some_and(|p| {
        p.policy_template_instances
            .iter()
            .any(|i| DYNAMIC_HOST_POLICIES.contains(&i.template_id.as_str()))
    });
    let upstream = match format {
        SourceFormat::Swagger2 | SourceFormat::Wsdl11 => swagger_upstream(obj, dynamic_host, sink),
        SourceFormat::OpenApi30 | SourceFormat::OpenApi31 => {
            openapi_upstream(obj, dynamic_host, sink)
        }
    };

    let schemes = crate::security::schemes(doc, format, sink);
    let security = obj
        .get("security")
        .map(|s| crate::security::requirements(s, &root.key("security"), &schemes, sink))
        .unwrap_or_default();
    let (consumes, produces) = match format {
        SourceFormat::Swagger2 | SourceFormat::Wsdl11 => (
            fields::strings(obj, "consumes", &root, sink).unwrap_or_default(),
            fields::strings(obj, "produces", &root, sink).unwrap_or_default(),
        ),
        SourceFormat::OpenApi30 | SourceFormat::OpenApi31 => (Vec::new(), Vec::new()),
    };
    let schemas = Schemas::new(doc, format, sink);
    let mut ctx = Ctx {
        doc,
        format,
        schemas,
        schemes,
        consumes,
        produces,
    };
    let operations = paths::operations(&mut ctx, paths, sink);
    let definitions = ctx.schemas.finish(sink);

    Some(Connector {
        name: name.to_owned(),
        title: title.unwrap_or_else(|| name.to_owned()),
        description: info.and_then(|i| fields::string(i, "description", &info_at, sink)),
        version: info.and_then(|i| fields::string(i, "version", &info_at, sink)),
        format,
        upstream,
        operations,
        security_schemes: ctx.schemes,
        security,
        definitions,
        properties,
        extensions: fields::extensions(obj),
        source: source.to_owned(),
        soap: None,
    })
}

/// Reads `swagger` / `openapi`; reports an error and returns `None` when neither names a
/// supported version.
fn detect_format(obj: &Object, sink: &mut Sink) -> Option<SourceFormat> {
    let root = Ptr::ROOT;
    const SUPPORTED: &str = "Junction reads Swagger 2.0 and OpenAPI 3.0 and 3.1";
    let (swagger, openapi) = (obj.get("swagger"), obj.get("openapi"));
    if swagger.is_some() && openapi.is_some() {
        sink.warn(
            "version",
            &root,
            "the document has both 'swagger' and 'openapi'; read as OpenAPI",
        );
    }
    if let Some(v) = openapi {
        let at = root.key("openapi");
        let text = match v {
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => {
                sink.warn(
                    "version",
                    &at,
                    format!("'openapi' must be a string; read as \"{n}\""),
                );
                n.to_string()
            }
            other => {
                sink.error(
                    "unsupported-version",
                    &at,
                    format!("'openapi' must be a version string, found {}", kind(other)),
                );
                return None;
            }
        };
        let mut parts = text.split('.');
        let major = parts.next().and_then(|p| p.parse::<u32>().ok());
        let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
        return match (major, minor) {
            (Some(3), Some(0)) => Some(SourceFormat::OpenApi30),
            (Some(3), Some(1)) => Some(SourceFormat::OpenApi31),
            (Some(3), Some(_)) => {
                sink.warn(
                    "version",
                    &at,
                    format!("OpenAPI {text} is newer than 3.1; read as 3.1"),
                );
                Some(SourceFormat::OpenApi31)
            }
            _ => {
                sink.error(
                    "unsupported-version",
                    &at,
                    format!("OpenAPI version '{text}' is not supported; {SUPPORTED}"),
                );
                None
            }
        };
    }
    if let Some(v) = swagger {
        let at = root.key("swagger");
        return match v {
            Value::String(s) if s.trim() == "2.0" => Some(SourceFormat::Swagger2),
            Value::Number(n) if n.as_f64() == Some(2.0) => {
                sink.warn(
                    "version",
                    &at,
                    "'swagger' must be the string \"2.0\"; read as \"2.0\"",
                );
                Some(SourceFormat::Swagger2)
            }
            other => {
                let shown = match other {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                sink.error(
                    "unsupported-version",
                    &at,
                    format!("Swagger version '{shown}' is not supported; {SUPPORTED}"),
                );
                None
            }
        };
    }
    sink.error(
        "not-a-definition",
        &root,
        "neither 'swagger: \"2.0\"' nor 'openapi: 3.x' found; not an API definition",
    );
    None
}

/// `/` or `/v1`: a leading slash and no trailing one.
fn normalize_base_path(base: &str) -> String {
    let trimmed = base.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else if trimmed.starts_with('/') {
        trimmed.to_owned()
    } else {
        format!("/{trimmed}")
    }
}

fn no_host(dynamic_host: bool, at: &Ptr<'_>, sink: &mut Sink) {
    if !dynamic_host {
        sink.warn(
            "no-host",
            at,
            "the definition names no backend host; set one with [connector.NAME] backend = \"URL\"",
        );
    }
}

fn swagger_upstream(obj: &Object, dynamic_host: bool, sink: &mut Sink) -> Upstream {
    let root = Ptr::ROOT;
    let schemes = fields::strings(obj, "schemes", &root, sink).unwrap_or_default();
    let has = |s: &str| schemes.iter().any(|x| x.eq_ignore_ascii_case(s));
    let mut scheme = if has("https") || schemes.is_empty() {
        "https".to_owned()
    } else if has("http") {
        "http".to_owned()
    } else {
        sink.warn(
            "invalid-scheme",
            &root.key("schemes"),
            "no http or https among 'schemes'; https is used",
        );
        "https".to_owned()
    };
    let mut host = fields::string(obj, "host", &root, sink)
        .unwrap_or_default()
        .trim()
        .to_owned();
    let base = fields::string(obj, "basePath", &root, sink).unwrap_or_else(|| "/".to_owned());
    if !base.trim().is_empty() && !base.trim().starts_with('/') {
        sink.warn(
            "invalid-base-path",
            &root.key("basePath"),
            format!(
                "basePath '{base}' must start with '/'; read as '/{}'",
                base.trim()
            ),
        );
    }
    let mut base = normalize_base_path(&base);
    if let Some((s, rest)) = host.split_once("://") {
        sink.warn(
            "invalid-host",
            &root.key("host"),
            format!("host '{host}' must not include a scheme; read as '{rest}'"),
        );
        if schemes.is_empty() && (s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"))
        {
            scheme = s.to_ascii_lowercase();
        }
        host = rest.to_owned();
    }
    if let Some(i) = host.find('/') {
        let path = host
            .get(i..)
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned();
        sink.warn(
            "invalid-host",
            &root.key("host"),
            format!("host '{host}' must not include a path; '{path}' is put before the base path"),
        );
        host.truncate(i);
        base = normalize_base_path(&format!("{path}{}", if base == "/" { "" } else { &base }));
    }
    if host.is_empty() {
        no_host(dynamic_host, &root, sink);
    }
    Upstream {
        scheme,
        host,
        base_path: base,
    }
}

fn openapi_upstream(obj: &Object, dynamic_host: bool, sink: &mut Sink) -> Upstream {
    let root = Ptr::ROOT;
    let none = Upstream {
        scheme: "https".into(),
        host: String::new(),
        base_path: "/".into(),
    };
    let servers_at = root.key("servers");
    let server = match obj.get("servers") {
        Some(Value::Array(list)) => list.first(),
        Some(other) => {
            sink.warn(
                "invalid-field",
                &servers_at,
                format!("'servers' must be an array, found {}; ignored", kind(other)),
            );
            None
        }
        None => None,
    };
    let server_at = servers_at.index(0);
    let Some(Value::Object(server)) = server else {
        no_host(dynamic_host, &root, sink);
        return none;
    };
    let Some(template) = fields::string(server, "url", &server_at, sink) else {
        no_host(dynamic_host, &server_at, sink);
        return none;
    };
    // Substitute server variables with their defaults.
    let variables = server.get("variables").and_then(Value::as_object);
    let mut url = String::with_capacity(template.len());
    let mut rest = template.as_str();
    let mut unresolved = Vec::new();
    while let Some(open) = rest.find('{') {
        url.push_str(rest.get(..open).unwrap_or_default());
        let after = rest.get(open + 1..).unwrap_or_default();
        let Some(close) = after.find('}') else {
            url.push_str(rest.get(open..).unwrap_or_default());
            rest = "";
            break;
        };
        let var = after.get(..close).unwrap_or_default();
        match variables
            .and_then(|v| v.get(var))
            .and_then(|v| v.get("default"))
            .and_then(Value::as_str)
        {
            Some(default) => url.push_str(default),
            None => {
                unresolved.push(var.to_owned());
                url.push('{');
                url.push_str(var);
                url.push('}');
            }
        }
        rest = after.get(close + 1..).unwrap_or_default();
    }
    url.push_str(rest);
    let url_at = server_at.key("url");
    if !unresolved.is_empty() {
        sink.warn(
            "templated-server",
            &url_at,
            format!(
                "server URL '{template}' uses variables without a default ({}); set the backend with [connector.NAME] backend = \"URL\"",
                unresolved.join(", ")
            ),
        );
        return none;
    }
    let (scheme, rest) = match url.split_once("://") {
        Some((s, rest)) => (s.to_ascii_lowercase(), rest.to_owned()),
        None => match url.strip_prefix("//") {
            Some(rest) => ("https".to_owned(), rest.to_owned()),
            None => {
                if !dynamic_host {
                    sink.warn(
                        "relative-server",
                        &url_at,
                        format!(
                            "server URL '{url}' is relative; the backend host must be set with [connector.NAME] backend = \"URL\""
                        ),
                    );
                }
                let path = url.split(['?', '#']).next().unwrap_or_default();
                return Upstream {
                    base_path: normalize_base_path(path),
                    ..none
                };
            }
        },
    };
    let scheme = if scheme == "http" || scheme == "https" {
        scheme
    } else {
        sink.warn(
            "invalid-scheme",
            &url_at,
            format!("server scheme '{scheme}' is not http or https; https is used"),
        );
        "https".to_owned()
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (
            rest.get(..i).unwrap_or_default(),
            rest.get(i..).unwrap_or_default(),
        ),
        None => (rest.as_str(), ""),
    };
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => {
            sink.warn(
                "invalid-host",
                &url_at,
                "credentials in the server URL are ignored; use a security scheme",
            );
            host
        }
        None => authority,
    };
    let path_only = path.split(['?', '#']).next().unwrap_or_default();
    if path_only.len() != path.len() {
        sink.warn(
            "invalid-host",
            &url_at,
            "the query or fragment of the server URL is ignored",
        );
    }
    if host.is_empty() {
        no_host(dynamic_host, &url_at, sink);
    }
    Upstream {
        scheme,
        host: host.to_owned(),
        base_path: normalize_base_path(path_only),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn upstream(doc: Value) -> (Upstream, Vec<&'static str>) {
        let mut sink = Sink::new("f");
        let obj = doc.as_object().unwrap();
        let u = if obj.contains_key("openapi") {
            openapi_upstream(obj, false, &mut sink)
        } else {
            swagger_upstream(obj, false, &mut sink)
        };
        (u, sink.into_diagnostics().iter().map(|d| d.code).collect())
    }

    #[test]
    fn swagger_hosts() {
        let (u, w) = upstream(
            json!({"host": "api.x.com", "basePath": "/v1/", "schemes": ["http", "https"]}),
        );
        assert_eq!(u.base_url(), "https://api.x.com/v1");
        assert!(w.is_empty());
        let (u, w) = upstream(json!({"host": "http://api.x.com/api", "basePath": "/v2"}));
        assert_eq!(u.base_url(), "http://api.x.com/api/v2");
        assert_eq!(w, ["invalid-host", "invalid-host"]);
        let (u, w) = upstream(json!({"schemes": ["http"]}));
        assert_eq!(
            (u.scheme.as_str(), u.host.as_str(), u.base_path.as_str()),
            ("http", "", "/")
        );
        assert_eq!(w, ["no-host"]);
    }

    #[test]
    fn openapi_servers() {
        let (u, w) = upstream(
            json!({"openapi": "3.0.0", "servers": [{"url": "https://{region}.x.com:8443/v1?x=1",
            "variables": {"region": {"default": "eu"}}}]}),
        );
        assert_eq!(
            (u.host.as_str(), u.base_path.as_str()),
            ("eu.x.com:8443", "/v1")
        );
        assert_eq!(w, ["invalid-host"]);
        let (u, w) = upstream(json!({"openapi": "3.0.0", "servers": [{"url": "/api/v3"}]}));
        assert_eq!((u.host.as_str(), u.base_path.as_str()), ("", "/api/v3"));
        assert_eq!(w, ["relative-server"]);
        let (u, w) =
            upstream(json!({"openapi": "3.0.0", "servers": [{"url": "https://{tenant}.x.com"}]}));
        assert_eq!(u.host, "");
        assert_eq!(w, ["templated-server"]);
        let (_, w) = upstream(json!({"openapi": "3.1.0"}));
        assert_eq!(w, ["no-host"]);
    }
}
