//! The request context: what one request carries through every stage — who sent it, the
//! table it runs on, what it matched — and, for each call a view's step makes, a child that
//! keeps the caller.
//!
//! The server makes one per request ([`RequestCtx::new`]), hands it to
//! [`Gateway::serve_in`] or [`Gateway::serve_view_in`], and reads it back once the answer
//! is made: the route's counters, the client a store admitted, for the metrics, the span and
//! the access log. A view's step calls run as [`RequestCtx::child`]ren: with the caller's
//! address and identity, so that per-client limits count them against the caller (not
//! against an anonymous "unknown" that every caller would share) and grants are the
//! caller's.

use std::net::IpAddr;
use std::sync::Arc;

use crate::gateway::Gateway;
use crate::telemetry::RouteMetrics;

/// One request's context. See the module documentation.
#[derive(Debug, Default)]
pub struct RequestCtx<'g> {
    /// The peer's address: per-client limits count by it. `None`: a caller of its own
    /// (tests, the admin API's `try`), counted as one.
    pub peer: Option<IpAddr>,
    /// The client a store admitted, once admitted.
    pub client_id: Option<String>,
    /// The route's counters, once routed.
    pub route: Option<&'g RouteMetrics>,
    /// The operation's path template (relative to its connector), for the span's route.
    pub operation_path: Option<&'g str>,
    /// The table the request runs on, for work that outlives the request (a stale cache
    /// entry's refresh); without it, such work is done before answering.
    shared: Option<Arc<Gateway>>,
}

impl<'g> RequestCtx<'g> {
    /// The context of a request from `peer`, run on `shared`.
    pub fn new(shared: &Arc<Gateway>, peer: Option<IpAddr>) -> Self {
        RequestCtx {
            peer,
            shared: Some(shared.clone()),
            ..RequestCtx::default()
        }
    }

    /// The context of a call made on this request's behalf (a view's step): the same
    /// caller, table and client, a route of its own.
    pub(crate) fn child<'c>(&self) -> RequestCtx<'c> {
        RequestCtx {
            peer: self.peer,
            client_id: self.client_id.clone(),
            route: None,
            operation_path: None,
            shared: self.shared.clone(),
        }
    }

    /// The shared table, when the request runs on one.
    pub(crate) fn shared(&self) -> Option<&Arc<Gateway>> {
        self.shared.as_ref()
    }
}
