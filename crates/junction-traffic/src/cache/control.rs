//! Whether a backend response may be stored, and for how long: the status, `Set-Cookie`,
//! `Vary: *` and (when honoured) the backend's `Cache-Control`.
//!
//! Rules, in order:
//! - only statuses that are cacheable by default (RFC 9110 §15.1) are stored: 200, 203,
//!   204, 300, 301, 308, 404, 405, 410, 414, 501;
//! - a response that sets a cookie, or says `Vary: *`, is never stored;
//! - with `honour_cache_control` (the default): `no-store`, `no-cache` and `private` mean
//!   "do not store"; `s-maxage`, else `max-age`, shortens the freshness below the
//!   configured `ttl` (it never lengthens it); `max-age=0` stores nothing;
//! - the `Age` the backend reports is subtracted, so an entry that arrives old is less fresh.

use std::time::Duration;

use http::{HeaderMap, StatusCode, header};

/// The `Cache-Control` directives of a response that matter to a shared cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Directives {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
}

impl Directives {
    /// Reads every `Cache-Control` field of `headers`. Unknown directives are ignored, as
    /// are values that are not text.
    pub fn parse(headers: &HeaderMap) -> Directives {
        let mut directives = Directives::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(text) = value.to_str() else { continue };
            for item in text.split(',') {
                let (name, argument) = match item.split_once('=') {
                    Some((name, argument)) => (name, Some(argument.trim().trim_matches('"'))),
                    None => (item, None),
                };
                let seconds = || argument.and_then(|a| a.parse::<u64>().ok());
                match name.trim().to_ascii_lowercase().as_str() {
                    "no-store" => directives.no_store = true,
                    "no-cache" => directives.no_cache = true,
                    "private" => directives.private = true,
                    // A malformed max-age makes the response stale (RFC 9111 §4.2.1).
                    "max-age" => directives.max_age = Some(seconds().unwrap_or(0)),
                    "s-maxage" => directives.s_maxage = Some(seconds().unwrap_or(0)),
                    _ => {}
                }
            }
        }
        directives
    }
}

/// Whether to store a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storable {
    /// Store it, fresh for this long (after the backend's `Age`).
    Yes { fresh_for: Duration, age: Duration },
    /// Do not; the reason is for logs and tests.
    No(&'static str),
}

/// Statuses a cache may store without explicit freshness information (RFC 9110 §15.1).
pub fn cacheable_status(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Decides whether a response of `status` with `headers` is stored, given the configured
/// `ttl` and whether the backend's `Cache-Control` is honoured.
pub fn storable(status: StatusCode, headers: &HeaderMap, ttl: Duration, honour: bool) -> Storable {
    if !cacheable_status(status) {
        return Storable::No("status not cacheable");
    }
    if headers.contains_key(header::SET_COOKIE) {
        return Storable::No("sets a cookie");
    }
    if headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|f| f.trim() == "*"))
    {
        return Storable::No("Vary: *");
    }
    let age = Duration::from_secs(
        headers
            .get(header::AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0),
    );
    let mut fresh_for = ttl;
    if honour {
        let directives = Directives::parse(headers);
        if directives.no_store {
            return Storable::No("Cache-Control: no-store");
        }
        if directives.no_cache {
            return Storable::No("Cache-Control: no-cache");
        }
        if directives.private {
            return Storable::No("Cache-Control: private");
        }
        if let Some(seconds) = directives.s_maxage.or(directives.max_age) {
            fresh_for = fresh_for.min(Duration::from_secs(seconds));
        }
        fresh_for = fresh_for.saturating_sub(age);
        if fresh_for.is_zero() {
            return Storable::No("already stale (max-age or Age)");
        }
    }
    Storable::Yes { fresh_for, age }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn parses_directives_in_any_case_across_fields() {
        let d = Directives::parse(&headers(&[
            ("cache-control", "Public, MAX-AGE=30"),
            ("cache-control", "s-maxage=\"10\", must-revalidate"),
        ]));
        assert_eq!(
            d,
            Directives {
                max_age: Some(30),
                s_maxage: Some(10),
                ..Directives::default()
            }
        );
        assert_eq!(
            Directives::parse(&headers(&[("cache-control", "max-age=soon")])).max_age,
            Some(0)
        );
    }

    #[test]
    fn honours_the_backends_cache_control() {
        let ok = StatusCode::OK;
        assert_eq!(
            storable(ok, &headers(&[]), TTL, true),
            Storable::Yes {
                fresh_for: TTL,
                age: Duration::ZERO
            }
        );
        for (value, reason) in [
            ("no-store", "Cache-Control: no-store"),
            ("no-cache", "Cache-Control: no-cache"),
            ("private, max-age=100", "Cache-Control: private"),
            ("max-age=0", "already stale (max-age or Age)"),
        ] {
            assert_eq!(
                storable(ok, &headers(&[("cache-control", value)]), TTL, true),
                Storable::No(reason),
                "{value}"
            );
        }
        // max-age shortens, never lengthens; s-maxage wins over max-age.
        let fresh = |pairs: &[(&str, &str)]| match storable(ok, &headers(pairs), TTL, true) {
            Storable::Yes { fresh_for, .. } => fresh_for,
            Storable::No(why) => panic!("{why}"),
        };
        assert_eq!(
            fresh(&[("cache-control", "max-age=5")]),
            Duration::from_secs(5)
        );
        assert_eq!(fresh(&[("cache-control", "max-age=600")]), TTL);
        assert_eq!(
            fresh(&[("cache-control", "max-age=600, s-maxage=7")]),
            Duration::from_secs(7)
        );
        assert_eq!(
            fresh(&[("cache-control", "max-age=20"), ("age", "15")]),
            Duration::from_secs(5)
        );
        // Not honoured: the configured TTL alone.
        assert_eq!(
            storable(ok, &headers(&[("cache-control", "no-store")]), TTL, false),
            Storable::Yes {
                fresh_for: TTL,
                age: Duration::ZERO
            }
        );
    }

    #[test]
    fn never_stores_cookies_vary_star_or_errors() {
        let ok = StatusCode::OK;
        assert_eq!(
            storable(ok, &headers(&[("set-cookie", "a=b")]), TTL, false),
            Storable::No("sets a cookie")
        );
        assert_eq!(
            storable(ok, &headers(&[("vary", "Accept, *")]), TTL, false),
            Storable::No("Vary: *")
        );
        for status in [500, 502, 503, 201, 302, 429] {
            assert_eq!(
                storable(
                    StatusCode::from_u16(status).unwrap(),
                    &headers(&[]),
                    TTL,
                    true
                ),
                Storable::No("status not cacheable"),
                "{status}"
            );
        }
        assert!(matches!(
            storable(StatusCode::NOT_FOUND, &headers(&[]), TTL, true),
            Storable::Yes { .. }
        ));
    }
}
