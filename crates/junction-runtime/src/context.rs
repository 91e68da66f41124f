//! The request context: what one request carries through every stage — who sent it, the
//! table it runs on, what it matched — and, for each call a view's step makes, a child that
//! keeps the caller.
//!
//! The server makes one per request ([`RequestCtx::new`]), hands it to
//! [`Gateway::serve_in`] or [`Gateway::serve_view_in`], and reads it back once the answer
//! is made: the route's counters, the client a store admitted, the stages' times and the
//! cache outcome, for the metrics, the span, `Server-Timing` and the access log. (The
//! request's trace travels as the scope of its task, `telemetry::trace`, because spans
//! are started deep inside stages that also serve side calls and background refreshes.) A view's step calls run as [`RequestCtx::child`]ren: with the caller's
//! address and identity, so that per-client limits count them against the caller (not
//! against an anonymous "unknown" that every caller would share) and grants are the
//! caller's.

use std::net::IpAddr;
use std::sync::Arc;

use http::Response;

use crate::body::UpstreamBody;
use crate::gateway::Gateway;
use crate::telemetry::{RouteMetrics, StageTimings, cache_outcome};

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
    /// How long the stages that ran took, once answered (the server adds the total).
    pub timings: StageTimings,
    /// The cache outcome (`HIT`, `MISS`, `STALE`, `BYPASS`), once answered from a cached
    /// operation or view.
    pub cache: Option<&'static str>,
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
            timings: StageTimings::default(),
            cache: None,
            shared: self.shared.clone(),
        }
    }

    /// Takes what the stages wrote on `response` on their way (their times, the cache's
    /// outcome) into the context.
    pub(crate) fn answered(&mut self, response: &mut Response<UpstreamBody>) {
        if let Some(timings) = response.extensions_mut().remove::<StageTimings>() {
            self.timings = timings;
        }
        self.cache = cache_outcome(response.headers());
    }

    /// The shared table, when the request runs on one.
    pub(crate) fn shared(&self) -> Option<&Arc<Gateway>> {
        self.shared.as_ref()
    }
}
