//! Paging: a backend's next links followed for the client (server-side paging,
//! `[connector.NAME.paging]`), and handed out as gateway links the client follows
//! (`updatenextlink`), signed so that only links the gateway issued are followed.
//!
//! A handed-out link is `PUBLIC/connectors/NAME/PATH?CLIENT_QUERY&junction-next=TOKEN`:
//! built for each request from that request's own address and query (never stored in the
//! cache, which keeps what the backend said), with a token ([`crate::next_link`]) naming
//! the backend path below its base URL, for this operation and connection only. A request
//! carrying `junction-next` is checked before anything else reads it ([`continued`]); the
//! cache keys it by the path the token names.

use bytes::Bytes;
use http::request::Parts;
use http::response;
use http::{HeaderMap, HeaderValue, Uri, header};
use junction_policy::NextLinks;
use serde_json::Value;

use crate::auth::Credential;
use crate::body::{self, RequestBody, UpstreamBody};
use crate::error::{Error, ErrorKind, InputLocation, Violation};
use crate::gateway::ConnectorPlan;
use crate::next_link::{self, Scope, Signing};
use crate::plan::OperationPlan;
use crate::policy::{NEXT_LINK_PARAMETER, PagingPlan};
use crate::upstream::{self, SentTo};

/// The backend path (and query) a verified `junction-next` continues with; put into the
/// request's extensions by [`continued`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NextLink {
    pub path: String,
    pub query: String,
    /// Another method than `GET` (a trigger's `DELETE` of its subscription).
    pub method: Option<http::Method>,
}

impl NextLink {
    /// Path and query as one string, for cache keys.
    pub(crate) fn target(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }
}

/// The connection a link is scoped to: the request's stored connection, or none.
fn connection_of(parts: &Parts) -> &str {
    crate::connection::attached(parts).map_or("", |c| c.id.as_str())
}

/// Reads the request's `junction-next`, if any: the path it continues with, when the
/// gateway issued it for this operation and connection and it has not expired; `400`
/// otherwise, and for an operation that hands out no next links.
pub(crate) fn continued(
    signing: &Signing,
    connector: &ConnectorPlan,
    op: &OperationPlan,
    parts: &Parts,
) -> Result<Option<NextLink>, Error> {
    let Some(query) = parts
        .uri
        .query()
        .filter(|q| q.contains(NEXT_LINK_PARAMETER))
    else {
        return Ok(None);
    };
    let Some(token) = junction_policy::eval::query_value(query, NEXT_LINK_PARAMETER) else {
        return Ok(None);
    };
    let refuse = |why: &dyn std::fmt::Display| {
        Error::invalid(vec![Violation::parameter(
            InputLocation::Query,
            NEXT_LINK_PARAMETER,
            format!("query parameter '{NEXT_LINK_PARAMETER}': {why}"),
        )])
    };
    if !op.policies.as_ref().is_some_and(|plan| plan.next_links) {
        return Err(refuse(&format!(
            "operation '{}' hands out no next links to follow",
            op.id
        )));
    }
    let scope = Scope {
        connector: &connector.name,
        operation: &op.id,
        connection: connection_of(parts),
    };
    let target = next_link::verify(&signing.key, &scope, &token).map_err(|why| refuse(&why))?;
    let (path, query) = next_link_target(&target).map_err(|why| refuse(&why))?;
    Ok(Some(NextLink {
        path,
        query,
        method: None,
    }))
}

/// Rewrites backend next links into gateway URLs carrying them, signed, in `junction-next`.
pub(crate) struct Links<'a> {
    /// The URL of the request that was sent, to resolve relative links.
    upstream_url: &'a str,
    /// The backend base URL a next link must be under.
    base: &'a str,
    /// The gateway URL of this operation call, without query.
    public: String,
    /// The client's query without `junction-next`.
    client_query: String,
    /// Names of the query parameters that carry credentials: never handed to the client
    /// (the gateway adds them again when the link is followed).
    secret_query: Vec<String>,
    signing: &'a Signing,
    scope: Scope<'a>,
}

impl<'a> Links<'a> {
    pub(crate) fn new(
        connector: &'a ConnectorPlan,
        op: &'a OperationPlan,
        parts: &'a Parts,
        sent: &'a SentTo,
        signing: &'a Signing,
        credentials: &[Credential],
    ) -> Self {
        Links {
            upstream_url: &sent.url,
            base: &sent.base,
            public: public_url(connector, parts),
            client_query: without_next_link(parts.uri.query().unwrap_or_default()),
            secret_query: secret_query(credentials),
            signing,
            scope: Scope {
                connector: &connector.name,
                operation: &op.id,
                connection: connection_of(parts),
            },
        }
    }
}

impl NextLinks for Links<'_> {
    fn rewrite(&self, next_link: &str) -> Option<String> {
        let relative = without_query(
            &under_base(self.upstream_url, self.base, next_link)?,
            &self.secret_query,
        );
        let token = next_link::issue(&self.signing.key, &self.scope, &relative, self.signing.ttl);
        let mut out = self.public.clone();
        out.push('?');
        if !self.client_query.is_empty() {
            out.push_str(&self.client_query);
            out.push('&');
        }
        out.push_str(NEXT_LINK_PARAMETER);
        out.push('=');
        out.push_str(&token);
        Some(out)
    }
}

/// Server-side paging on a first page's response: reads it, fetches the following pages
/// within the limits and answers with all their items in one document (or the first page
/// as it was, when there was no other).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn all_pages(
    connector: &ConnectorPlan,
    op: &OperationPlan,
    paging: &PagingPlan,
    head: &mut response::Parts,
    body: UpstreamBody,
    sent: (&str, &str),
    headers: &HeaderMap,
    credentials: &[Credential],
) -> Result<UpstreamBody, Error> {
    let bytes = body::read_response(body, connector.max_response_bytes).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(UpstreamBody::full(bytes));
    }
    let mut value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        Error::new(
            ErrorKind::UpstreamInvalid,
            format!(
                "connector '{}', operation '{}': the backend's response is not valid JSON, so its pages cannot be followed",
                connector.name, op.id
            ),
        )
        .with_cause(e)
    })?;
    if !follow_pages(
        connector,
        op,
        paging,
        &mut value,
        sent,
        headers,
        credentials,
    )
    .await?
    {
        return Ok(UpstreamBody::full(bytes));
    }
    let all = serde_json::to_vec(&value).map_err(|e| {
        Error::new(ErrorKind::Internal, "could not write the response body").with_cause(e)
    })?;
    head.headers.remove(header::CONTENT_LENGTH);
    head.headers.remove(header::CONTENT_ENCODING);
    head.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(UpstreamBody::full(Bytes::from(all)))
}

/// `link` resolved against `current`, as a path (and query) below `base`; `None` when it
/// leads anywhere else.
pub(crate) fn under_base(current: &str, base: &str, link: &str) -> Option<String> {
    let resolved = url::Url::parse(current).ok()?.join(link).ok()?;
    let base_url = url::Url::parse(base).ok()?;
    if resolved.scheme() != base_url.scheme()
        || resolved.host_str() != base_url.host_str()
        || resolved.port_or_known_default() != base_url.port_or_known_default()
        || resolved.fragment().is_some()
        || !resolved.username().is_empty()
    {
        return None;
    }
    let base_path = base_url.path().trim_end_matches('/');
    let rest = resolved.path().strip_prefix(base_path)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let mut relative = if rest.is_empty() {
        "/".to_owned()
    } else {
        rest.to_owned()
    };
    if let Some(query) = resolved.query() {
        relative.push('?');
        relative.push_str(query);
    }
    Some(relative)
}

/// `relative` (a path and query) without the query parameters named in `names`.
fn without_query(relative: &str, names: &[String]) -> String {
    let Some((path, query)) = relative.split_once('?').filter(|_| !names.is_empty()) else {
        return relative.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(k, _)| k);
            let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
            !names.iter().any(|s| *s == name)
        })
        .collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// The names of the query parameters that carry credentials.
pub(crate) fn secret_query(credentials: &[Credential]) -> Vec<String> {
    credentials
        .iter()
        .filter_map(|c| match c {
            Credential::Query(pair) => pair.expose().split_once('=').map(|(name, _)| {
                percent_encoding::percent_decode_str(name)
                    .decode_utf8_lossy()
                    .into_owned()
            }),
            _ => None,
        })
        .collect()
}

/// Checks a `junction-next` value: a path (and query) below the base, nothing else.
pub(crate) fn next_link_target(value: &str) -> Result<(String, String), String> {
    if !value.starts_with('/') || value.starts_with("//") {
        return Err("it is not a path below the backend's base URL".into());
    }
    if value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '#' || c == '\\')
    {
        return Err("it contains a character a next link cannot hold".into());
    }
    let (path, query) = value.split_once('?').unwrap_or((value, ""));
    if path.split('/').any(|segment| {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        decoded == "." || decoded == ".."
    }) {
        return Err("its path has a `.` or `..` segment".into());
    }
    Ok((path.to_owned(), query.to_owned()))
}

/// The gateway URL of this call, without query: `public_url`, else `http://` and the
/// request's `Host` (or HTTP/2 authority) when it is a plain host and port, else the path
/// alone (a link relative to the gateway).
fn public_url(connector: &ConnectorPlan, parts: &Parts) -> String {
    let base = match &connector.public_url {
        Some(url) => url.clone(),
        None => parts
            .headers
            .get(header::HOST)
            .map(HeaderValue::as_bytes)
            .or_else(|| parts.uri.authority().map(|a| a.as_str().as_bytes()))
            .filter(|host| crate::host::valid_host(host))
            .and_then(|host| std::str::from_utf8(host).ok())
            .map(|host| format!("http://{host}"))
            .unwrap_or_default(),
    };
    format!("{base}{}", parts.uri.path())
}

fn without_next_link(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| {
            !pair.is_empty()
                && pair.split_once('=').map_or(*pair, |(k, _)| k) != NEXT_LINK_PARAMETER
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Follows `nextLinkName` from `first` (the first page), appending each page's items,
/// until the limits; leaves the last next link (if any) in the document. Returns whether
/// it fetched any page.
async fn follow_pages(
    connector: &ConnectorPlan,
    op: &OperationPlan,
    paging: &PagingPlan,
    first: &mut Value,
    (first_url, base): (&str, &str),
    headers: &HeaderMap,
    credentials: &[Credential],
) -> Result<bool, Error> {
    let secret = secret_query(credentials);
    let Some(Value::Array(items)) = first.get(&paging.items) else {
        return Ok(false);
    };
    let mut items = items.clone();
    let mut next = first
        .get(&paging.next_link)
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut current = first_url.to_owned();
    let mut pages = 1u32;
    let mut page_headers = headers.clone();
    page_headers.remove(header::CONTENT_TYPE);
    page_headers.remove(header::CONTENT_LENGTH);
    while let Some(link) = next.take() {
        if pages >= paging.limits.max_pages
            || u64::try_from(items.len()).unwrap_or(u64::MAX) >= paging.limits.max_items
        {
            next = Some(link);
            break;
        }
        let Some(relative) = under_base(&current, base, &link) else {
            tracing::debug!(connector = %connector.name, operation = %op.id, "next link leaves the backend; paging stops");
            next = Some(link);
            break;
        };
        // The credentials travel as for the first page, whatever the link carries.
        let mut url = format!("{base}{}", without_query(&relative, &secret));
        let mut first_pair = !url.contains('?');
        upstream::push_credential_query(&mut url, credentials, &mut first_pair);
        let uri: Uri = url.parse().map_err(|_| {
            Error::new(
                ErrorKind::UpstreamInvalid,
                format!(
                    "connector '{}', operation '{}': page {} has a next link that is not a URL",
                    connector.name,
                    op.id,
                    pages + 1
                ),
            )
        })?;
        let (response, held) = upstream::exchange::exchange(upstream::Call {
            connector,
            op,
            method: &http::Method::GET,
            uri,
            headers: page_headers.clone(),
            body: RequestBody::Empty,
        })
        .await?;
        pages += 1;
        let status = response.status();
        let body = UpstreamBody::new(response.into_body(), held, connector.timeout);
        let bytes = body::read_response(body, connector.max_response_bytes).await?;
        if !status.is_success() {
            return Err(Error::new(
                ErrorKind::UpstreamInvalid,
                format!(
                    "connector '{}', operation '{}': page {pages} answered {status}",
                    connector.name, op.id
                ),
            ));
        }
        let page: Value = serde_json::from_slice(&bytes).map_err(|_| {
            Error::new(
                ErrorKind::UpstreamInvalid,
                format!(
                    "connector '{}', operation '{}': page {pages} is not JSON",
                    connector.name, op.id
                ),
            )
        })?;
        if let Some(Value::Array(more)) = page.get(&paging.items) {
            items.extend(more.iter().cloned());
        }
        next = page
            .get(&paging.next_link)
            .and_then(Value::as_str)
            .map(str::to_owned);
        current = url;
    }
    if pages == 1 {
        return Ok(false);
    }
    if let Value::Object(map) = first {
        map.insert(paging.items.clone(), Value::Array(items));
        match next {
            Some(link) => {
                map.insert(paging.next_link.clone(), Value::String(link));
            }
            None => {
                map.shift_remove(&paging.next_link);
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn next_links_stay_below_the_base() {
        let base = "https://graph.example.com/v1.0";
        let current = "https://graph.example.com/v1.0/me/tasks?$top=2";
        assert_eq!(
            under_base(
                current,
                base,
                "https://graph.example.com/v1.0/me/tasks?$skiptoken=X"
            )
            .as_deref(),
            Some("/me/tasks?$skiptoken=X")
        );
        assert_eq!(
            under_base(current, base, "?page=2").as_deref(),
            Some("/me/tasks?page=2")
        );
        assert_eq!(under_base(current, base, "https://evil.com/v1.0/x"), None);
        assert_eq!(
            under_base(current, base, "https://graph.example.com/v2/x"),
            None
        );
        assert_eq!(
            under_base(current, base, "https://graph.example.com:8443/v1.0/x"),
            None
        );
        assert_eq!(
            under_base(current, base, "http://graph.example.com/v1.0/x"),
            None
        );
        assert_eq!(
            under_base(current, base, "https://u:p@graph.example.com/v1.0/x"),
            None
        );
        assert_eq!(
            under_base(current, base, "https://graph.example.com/v1.0x"),
            None
        );
    }

    #[test]
    fn next_link_values_are_paths_below_the_base() {
        assert_eq!(
            next_link_target("/me/tasks?$skiptoken=X"),
            Ok(("/me/tasks".into(), "$skiptoken=X".into()))
        );
        for bad in [
            "me",
            "//evil.com/x",
            "/a/../b",
            "/a/%2e%2e/b",
            "/a b",
            "/a#f",
            "/a\\b",
        ] {
            assert!(next_link_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_next_link_parameter_is_dropped_from_the_client_query() {
        assert_eq!(without_next_link("a=1&junction-next=%2Fx&b=2"), "a=1&b=2");
        assert_eq!(without_next_link(""), "");
    }
}
