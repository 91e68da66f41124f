//! The cache stage of the pipeline: for an operation with a [`CachePolicy`], the key from
//! the bound request, the lookup, coalescing of concurrent misses, the stale windows, and
//! storing what the backend answered. Only operations with a policy ever come here.
//!
//! The flow itself ([`through`]) serves any [`Origin`]: cached views go through it too,
//! with their steps in place of the backend.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;
use http::request::Parts;
use http_body_util::BodyExt;

use super::key::KeyBuilder;
use super::{
    Buffered, CachePolicy, CacheStatus, CachedResponse, DoNotStore, Flight, Landed, Leader, Lookup,
    ResponseCache, X_CACHE, buffer, now_ms, served_headers,
};
use crate::bind::{Bound, OutBody};
use crate::body::{self, DeadlinePassed, RequestBody, UpstreamBody};
use crate::error::{Error, ErrorKind};
use crate::gateway::{ConnectorPlan, Gateway};
use crate::paging::NextLink;
use crate::plan::OperationPlan;
use crate::policy::NEXT_LINK_PARAMETER;
use crate::telemetry::StageTimings;
use crate::telemetry::trace::{Kind, Span};
use crate::upstream::{self, SentTo};

/// Where one operation sits in the gateway, to find it again from a background task.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpRef<'a> {
    pub connector: &'a ConnectorPlan,
    pub index: usize,
    pub op: &'a OperationPlan,
    pub policy: &'a CachePolicy,
}

/// What a cached response comes from: an operation's backend, or the steps of a view.
pub(crate) trait Origin: Sized {
    /// How long a request waits for the leader of its key, at most (a margin is added).
    fn wait(&self) -> Duration;
    /// The shared table a background refresh runs from; without one, an entry within
    /// stale-while-revalidate is refreshed before answering.
    fn shared(&self) -> Option<&Arc<Gateway>>;
    /// The background refresh, run from `gateway`, which lands in `leader`.
    fn refresh(
        self,
        gateway: Arc<Gateway>,
        leader: Leader,
    ) -> impl Future<Output = ()> + Send + 'static;
    /// Produces the response: calls the backend, or runs the view.
    fn fetch(self) -> impl Future<Output = Result<http::Response<UpstreamBody>, Error>> + Send;
}

/// Serves a request of a cached operation: from the cache, from another request's flight,
/// or from the backend (storing the answer).
pub(crate) async fn serve(
    shared: Option<&Arc<Gateway>>,
    cache: &ResponseCache,
    at: OpRef<'_>,
    parts: Parts,
    mut bound: Bound,
) -> Result<http::Response<UpstreamBody>, Error> {
    let body = if CachePolicy::keys_body(&parts.method) {
        Some(body_for_key(&mut bound).await?)
    } else {
        None
    };
    let key = key(at, &parts, &bound, body.as_deref());
    let origin = Operation {
        shared,
        at,
        parts,
        bound,
    };
    through(cache, at.policy, &key, origin).await
}

/// Serves `key` from the cache, from another request's flight, or from `origin` (storing
/// what it produces when `policy` allows).
///
/// The lookup is timed into the response's [`StageTimings`] and, when the request is
/// traced, a `cache` span with the response's `X-Cache` outcome.
pub(crate) async fn through<O: Origin>(
    cache: &ResponseCache,
    policy: &CachePolicy,
    key: &str,
    origin: O,
) -> Result<http::Response<UpstreamBody>, Error> {
    let started = Instant::now();
    let span = Span::start("cache", Kind::Internal, started);
    let looked = cache.lookup(key).await;
    let ended = Instant::now();
    let result = answer(cache, policy, key, origin, looked).await;
    if let Some(mut span) = span {
        match &result {
            Ok(response) => {
                span.set(
                    "junction.cache",
                    crate::telemetry::cache_outcome(response.headers()).unwrap_or("none"),
                );
            }
            Err(error) => span.fail(error.kind().slug()),
        }
        span.end(ended);
    }
    result.map(|mut response| {
        StageTimings::of(response.extensions_mut()).cache = Some(ended.duration_since(started));
        response
    })
}

/// [`through`] after the lookup.
async fn answer<O: Origin>(
    cache: &ResponseCache,
    policy: &CachePolicy,
    key: &str,
    origin: O,
    looked: Lookup,
) -> Result<http::Response<UpstreamBody>, Error> {
    let stale = match looked {
        Lookup::Fresh(entry) => return Ok(from_cache(cache, &entry, CacheStatus::Hit)),
        Lookup::Revalidate(entry) => match origin.shared().cloned() {
            Some(shared) => {
                if let Flight::Lead(leader) = cache.join(key) {
                    cache.stats().revalidations.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(origin.refresh(shared, leader));
                }
                return Ok(from_cache(cache, &entry, CacheStatus::Stale));
            }
            // No shared table to refresh from in the background: refresh now.
            None => Some(entry),
        },
        Lookup::Miss { stale } => stale,
        Lookup::Bypass => {
            let mut response = origin.fetch().await?;
            mark(cache, &mut response, CacheStatus::Bypass);
            return Ok(response);
        }
    };
    let leader = match cache.join(key) {
        Flight::Lead(leader) => leader,
        Flight::Follow(follower) => {
            // Wait as long as the leader may take, and a little more.
            let landed = follower.wait(origin.wait() + WAIT_MARGIN).await;
            if let Landed::Response(entry, status) = landed {
                cache.stats().coalesced.fetch_add(1, Ordering::Relaxed);
                return Ok(from_cache(cache, &entry, status));
            }
            // The leader had nothing to share (its answer was not storable, or it failed):
            // fetch alone.
            let mut response = origin.fetch().await?;
            mark(cache, &mut response, CacheStatus::Miss);
            return Ok(response);
        }
    };
    let result = origin.fetch().await;
    land(cache, policy, leader, result, stale).await
}

/// How much longer than its origin may take a follower waits for its leader.
const WAIT_MARGIN: Duration = Duration::from_secs(1);

/// A request of a cached operation, on its way to the backend.
struct Operation<'a> {
    shared: Option<&'a Arc<Gateway>>,
    at: OpRef<'a>,
    parts: Parts,
    bound: Bound,
}

impl Origin for Operation<'_> {
    fn wait(&self) -> Duration {
        self.at.connector.timeout
    }

    fn shared(&self) -> Option<&Arc<Gateway>> {
        self.shared
    }

    fn refresh(
        self,
        gateway: Arc<Gateway>,
        leader: Leader,
    ) -> impl Future<Output = ()> + Send + 'static {
        let connector = self.at.connector.name.clone();
        refresh(
            gateway,
            connector,
            self.at.index,
            self.parts,
            self.bound,
            leader,
        )
    }

    fn fetch(self) -> impl Future<Output = Result<http::Response<UpstreamBody>, Error>> + Send {
        let Operation {
            at, parts, bound, ..
        } = self;
        async move { upstream::call(at.connector, at.op, &parts, bound).await }
    }
}

/// The background refresh of an entry within stale-while-revalidate.
async fn refresh(
    gateway: Arc<Gateway>,
    connector: String,
    index: usize,
    parts: Parts,
    bound: Bound,
    leader: Leader,
) {
    let Some(connector) = gateway.connector_plan(&connector) else {
        return;
    };
    let (Some(op), Some(cache)) = (connector.operations.get(index), &gateway.traffic.cache) else {
        return;
    };
    let Some(policy) = op.cache.as_deref() else {
        return;
    };
    let result = upstream::call(connector, op, &parts, bound).await;
    if let Err(error) = land(cache, policy, leader, result, None).await {
        tracing::debug!(connector = %connector.name, operation = %op.id, error = %error, "background refresh failed; the stale entry stays");
    }
}

/// Turns the leader's answer into the response: stores it when it may be stored (not when
/// it carries [`DoNotStore`]), hands it to the followers, and serves `stale` instead of a
/// failure while stale-if-error allows.
pub(crate) async fn land(
    cache: &ResponseCache,
    policy: &CachePolicy,
    leader: Leader,
    result: Result<http::Response<UpstreamBody>, Error>,
    stale: Option<Arc<CachedResponse>>,
) -> Result<http::Response<UpstreamBody>, Error> {
    let now = now_ms();
    let stale = stale.filter(|entry| entry.usable_on_error(now));
    let response = match result {
        Ok(response) if !response.status().is_server_error() => response,
        failed => {
            if let Some(entry) = stale
                && failed.as_ref().map_or_else(stands_in_for, |_| true)
            {
                leader.land(Landed::Response(entry.clone(), CacheStatus::Stale));
                return Ok(from_cache(cache, &entry, CacheStatus::Stale));
            }
            match failed {
                Ok(response) => response,
                Err(error) => return Err(error),
            }
        }
    };
    let (head, body) = response.into_parts();
    // The backend's stage times stay with the answer, which is rebuilt from the entry.
    let timings = head.extensions.get::<StageTimings>().copied();
    let keep = |mut response: http::Response<UpstreamBody>| {
        if let Some(timings) = timings {
            response.extensions_mut().insert(timings);
        }
        response
    };
    match buffer(body, cache.settings().max_entry_size).await {
        Buffered::Whole(bytes) => {
            let entry = match head.extensions.get::<DoNotStore>() {
                Some(DoNotStore(why)) => Err(*why),
                None => policy
                    .entry(head.status, &head.headers, bytes.clone(), now)
                    .map(|entry| CachedResponse {
                        sent_to: head.extensions.get::<SentTo>().cloned(),
                        ..entry
                    }),
            };
            match entry {
                Ok(entry) => {
                    let entry = Arc::new(entry);
                    cache.store(leader.key(), entry.clone()).await;
                    leader.land(Landed::Response(entry.clone(), CacheStatus::Miss));
                    Ok(keep(from_cache(cache, &entry, CacheStatus::Miss)))
                }
                Err(why) => {
                    tracing::trace!(reason = why, "response not stored");
                    cache.stats().not_stored.fetch_add(1, Ordering::Relaxed);
                    drop(leader);
                    let mut response = http::Response::from_parts(head, UpstreamBody::full(bytes));
                    mark(cache, &mut response, CacheStatus::Miss);
                    Ok(response)
                }
            }
        }
        Buffered::TooLarge { head: first, rest } => {
            cache.stats().not_stored.fetch_add(1, Ordering::Relaxed);
            drop(leader);
            let mut response = http::Response::from_parts(head, UpstreamBody::chain(first, rest));
            mark(cache, &mut response, CacheStatus::Miss);
            Ok(response)
        }
        Buffered::Failed(error) => {
            drop(leader);
            let kind = if body::limit_exceeded(error.as_ref()).is_none()
                && error.downcast_ref::<DeadlinePassed>().is_some()
            {
                ErrorKind::UpstreamTimeout
            } else {
                ErrorKind::UpstreamUnreachable
            };
            Err(Error::new(kind, "the backend's response broke off").with_cause(error))
        }
    }
}

/// Whether a failure may be answered with a stale entry (stale-if-error): the backend
/// could not be reached, was too slow, or is held off by its breaker or concurrency limit;
/// or a required step of a view failed.
fn stands_in_for(error: &Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::UpstreamUnreachable
            | ErrorKind::UpstreamTimeout
            | ErrorKind::UpstreamInvalid
            | ErrorKind::CircuitOpen
            | ErrorKind::BackendBusy
            | ErrorKind::ViewStepFailed
    )
}

/// A response from a cache entry, counted.
fn from_cache(
    cache: &ResponseCache,
    entry: &CachedResponse,
    status: CacheStatus,
) -> http::Response<UpstreamBody> {
    cache.stats().record(status);
    let mut response = http::Response::new(UpstreamBody::full(entry.body.clone()));
    *response.status_mut() = entry.status;
    *response.headers_mut() = served_headers(entry, status, now_ms());
    if let Some(sent) = &entry.sent_to {
        response.extensions_mut().insert(sent.clone());
    }
    response
}

/// `X-Cache` on a response that came from the backend, counted.
fn mark(cache: &ResponseCache, response: &mut http::Response<UpstreamBody>, status: CacheStatus) {
    cache.stats().record(status);
    response
        .headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(status.as_str()));
}

/// The key of a request: connector, operation, every bound argument, and the vary
/// dimensions of the policy.
fn key(at: OpRef<'_>, parts: &Parts, bound: &Bound, body: Option<&[u8]>) -> String {
    let mut key = KeyBuilder::new(&at.connector.name, &at.op.id);
    for (param, slot) in at.op.params.iter().zip(&bound.values) {
        if let Some((value, _)) = slot {
            key.arg(param.input.as_str(), &param.name, value);
        }
    }
    // A stored connection (a client's own, or a granted shared one) always keys the
    // entry: one client's answers never serve another's connection.
    match crate::connection::attached(parts) {
        Some(connection) => {
            key.connection(&connection.id);
        }
        None if at.policy.vary_connection => {
            key.connection(&at.connector.traffic.connection_id);
        }
        None => {}
    }
    key.headers(&at.policy.vary_headers, &parts.headers);
    // A followed next link is another page: keyed by the backend path it continues with.
    if let Some(next) = parts.extensions.get::<NextLink>() {
        key.arg(
            "next",
            NEXT_LINK_PARAMETER,
            &serde_json::Value::String(next.target()),
        );
    }
    if let Some(body) = body {
        key.body(body);
    }
    key.finish()
}

/// The request body as the key sees it; a streamed body is read into memory (it is at
/// most `max_body_bytes`) and sent from there.
async fn body_for_key(bound: &mut Bound) -> Result<Bytes, Error> {
    Ok(match &mut bound.body {
        OutBody::Empty => Bytes::new(),
        OutBody::Bytes { bytes, .. } => bytes.clone(),
        OutBody::Json {
            original: Some(bytes),
            ..
        } => bytes.clone(),
        OutBody::Json { value, .. } => Bytes::from(serde_json::to_vec(value).map_err(|e| {
            Error::new(ErrorKind::Internal, "could not write the request body").with_cause(e)
        })?),
        OutBody::Stream { body, .. } => {
            let bytes = std::mem::take(body)
                .collect()
                .await
                .map_err(|error| match body::limit_exceeded(error.as_ref()) {
                    Some(limit) => body::too_large(limit),
                    None => body::timed_out(error.as_ref()).unwrap_or_else(|| {
                        Error::new(
                            ErrorKind::InvalidRequest,
                            "the request body could not be read",
                        )
                        .with_cause(error)
                    }),
                })?
                .to_bytes();
            *body = RequestBody::full(bytes.clone());
            bytes
        }
        OutBody::Form { .. } => {
            // The fields are arguments already; the files go in by parameter.
            let mut all = Vec::new();
            for file in &bound.files {
                all.extend_from_slice(&(file.param as u64).to_be_bytes());
                all.extend_from_slice(&(file.bytes.len() as u64).to_be_bytes());
                all.extend_from_slice(&file.bytes);
            }
            Bytes::from(all)
        }
    })
}
