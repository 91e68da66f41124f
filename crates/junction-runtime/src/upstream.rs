//! Upstream: the backend request of an operation, built, sent and answered.
//!
//! The stage has four parts, in the order a request meets them:
//! [`outbound`] builds the one request every operation sends (an operation with request
//! policies has them rewrite it in between), [`codec`] turns its arguments into the
//! backend's body and the answer into the client's, [`exchange`] passes the backend's
//! guards and retries, and [`transport`] carries the request to the backend. `codec` and
//! `transport` are where new kinds of backends plug in: [`soap`] is the codec of operations
//! imported from a WSDL, [`agent`] the transport through outbound agents.
//! The response keeps status, headers (minus hop-by-hop ones) and a streamed body.

use http::request::Parts;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderName, Uri, header};

use crate::auth::{AuthPlan, Credential};
use crate::bind::Bound;
use crate::body::UpstreamBody;
use crate::error::{Error, ErrorKind};
use crate::gateway::ConnectorPlan;
use crate::plan::OperationPlan;

pub mod agent;
pub(crate) mod codec;
pub(crate) mod exchange;
pub(crate) mod outbound;
mod pool;
pub(crate) mod soap;
pub(crate) mod transport;

pub(crate) use exchange::{Call, Held};
pub(crate) use outbound::push_credential_query;
pub(crate) use pool::HttpClient;
pub use pool::PoolSnapshot;
pub use transport::Forwarder;
pub(crate) use transport::{Transport, client};

/// The `User-Agent` of upstream requests.
pub const USER_AGENT: &str = concat!("junction/", env!("CARGO_PKG_VERSION"));

/// Installs `ring` as the process's TLS crypto provider, if none is installed yet.
///
/// The workspace builds rustls without its default provider (aws-lc, which needs a C
/// toolchain and a long build). The gateway's client names its provider itself; call this
/// before building other rustls users, such as a `reqwest::Client` in tests.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Where a connector's requests go: scheme, host and base path, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    /// Without a trailing slash; empty for `/`.
    pub(crate) base_path: String,
}

impl Target {
    /// `host:port` as written, which names the backend's guards.
    pub(crate) fn authority(&self) -> &str {
        self.authority.as_str()
    }

    /// `scheme://authority/base`, without a trailing slash.
    pub(crate) fn base_url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

impl Target {
    pub(crate) fn parse(base: &str) -> Result<Target, String> {
        let uri: Uri = base
            .parse()
            .map_err(|e| format!("`{base}` is not a usable backend address ({e})"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(format!("`{base}` is not an absolute http(s) URL"));
        };
        if *scheme != Scheme::HTTP && *scheme != Scheme::HTTPS {
            return Err(format!("`{base}` is not an http:// or https:// URL"));
        }
        Ok(Target {
            scheme: scheme.clone(),
            authority: authority.clone(),
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }
}

pub use junction_traffic::cache::entry::SentTo;

/// The credentials an operation sends, or why it cannot be called.
pub(crate) fn credentials(op: &OperationPlan) -> Result<&[Credential], Error> {
    match &op.auth {
        AuthPlan::None => Ok(&[]),
        AuthPlan::Apply(credentials) => Ok(credentials),
        AuthPlan::Missing(message) => {
            Err(Error::new(ErrorKind::Misconfigured, message.to_string()))
        }
    }
}

/// The connector's base URL, or why it has none.
pub(crate) fn no_target(connector: &ConnectorPlan) -> Error {
    Error::new(
        ErrorKind::Misconfigured,
        format!(
            "connector '{}' has no backend address; set `backend` in [connector.{}]",
            connector.name, connector.name
        ),
    )
}

/// Sends the bound request of `op` to the backend and returns what it said: built once,
/// rewritten by the request policies when the operation has some, sent through one path.
///
/// The sending is boxed: its state (the client's, the retries', a policy's side calls) is
/// kilobytes, and inline it would make every request's future that large, cache hits
/// included, and be copied with it (`RequestTrace::scope` boxes the whole request).
pub(crate) async fn call(
    connector: &ConnectorPlan,
    op: &OperationPlan,
    parts: &Parts,
    bound: Bound,
) -> Result<http::Response<UpstreamBody>, Error> {
    let credentials = crate::connection::credentials(connector, op, parts)?;
    if let Some(plan) = &op.policies {
        return Box::pin(crate::policy::send(
            connector,
            op,
            plan,
            parts,
            bound,
            credentials,
        ))
        .await;
    }
    if connector.target.is_none() {
        return Err(no_target(connector));
    }
    let mut out = outbound::build(op, parts, bound, credentials, false)?;
    if let Some(next) = parts.extensions.get::<crate::paging::NextLink>() {
        out.continue_at(next);
    }
    Box::pin(outbound::send(connector, op, out, credentials)).await
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): `Connection` and the headers it names,
/// `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`; and `Server`,
/// which names the backend's software to whoever calls the gateway.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the (few) headers; most responses have nothing to remove.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_hop_by_hop(k))
        .cloned()
        .collect();
    for name in present {
        headers.remove(name);
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
        || name == header::SERVER
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::time::Duration;

    use http::HeaderValue;

    use super::exchange::humane;
    use super::*;

    #[test]
    fn strips_hop_by_hop_headers_and_those_connection_names() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop"),
        );
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert("proxy-authenticate", HeaderValue::from_static("Basic"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        headers.insert("x-kept", HeaderValue::from_static("yes"));
        headers.insert(
            header::SERVER,
            HeaderValue::from_static("Apache/2.4.1 (Unix)"),
        );
        strip_hop_by_hop(&mut headers);
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "x-kept"]);
    }

    #[test]
    fn a_query_credential_replaces_a_parameter_of_its_name() {
        let credentials = [Credential::Query(crate::Secret::new("code=s3cret"))];
        let mut url = "/items?code=mine&q=1".to_owned();
        let mut first = false;
        push_credential_query(&mut url, &credentials, &mut first);
        assert_eq!(url, "/items?q=1&code=s3cret");
        let mut url = "/items?code=mine".to_owned();
        let mut first = false;
        push_credential_query(&mut url, &credentials, &mut first);
        assert_eq!(url, "/items?code=s3cret");
        let mut url = "/items".to_owned();
        let mut first = true;
        push_credential_query(&mut url, &credentials, &mut first);
        assert_eq!(url, "/items?code=s3cret");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(humane(Duration::from_secs(30)), "30s");
        assert_eq!(humane(Duration::from_millis(250)), "250ms");
    }
}
