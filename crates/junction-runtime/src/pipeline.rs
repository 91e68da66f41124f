//! The request lifecycle, stage by stage: route → rate limit → body limit → bind +
//! validate → cache → request policies → upstream → response policies.
//!
//! [`Gateway::handle`] is the whole data plane for one request under
//! `/connectors/{name}/…`. Each stage either hands its result to the next or returns an
//! [`Error`]; the server turns that error into problem+json. See `docs/lifecycle.md`.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body::Body;

use crate::bind;
use crate::body::{self, UpstreamBody};
use crate::cache::stage::{self, OpRef};
use crate::context::RequestCtx;
use crate::error::{BoxError, Error, ErrorKind, Violation};
use crate::gateway::{ConnectorPlan, Gateway};
use crate::ratelimit::{self, Decision};
use crate::route::{self, Lookup};
use crate::traffic;
use crate::upstream;

/// The prefix of every data-plane operation URL.
pub const CONNECTORS_PREFIX: &str = "/connectors/";

impl Gateway {
    /// Serves one request: finds the operation, binds and validates its inputs, calls the
    /// backend, and returns the backend's response with a streamed body.
    ///
    /// Without a [`RequestCtx`], per-client limits count every caller as one, and a cache
    /// entry within stale-while-revalidate is refreshed before answering (see
    /// [`Gateway::serve_in`]).
    pub async fn handle<B>(
        &self,
        request: http::Request<B>,
    ) -> Result<http::Response<UpstreamBody>, Error>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        self.serve_in(&mut RequestCtx::default(), request).await
    }

    /// Serves one request in its context `ctx` (who sent it, the shared table), telling
    /// `ctx` which operation answered, which client (with a store) asked, and how long
    /// the stages took.
    pub async fn serve_in<'g, B>(
        &'g self,
        ctx: &mut RequestCtx<'g>,
        request: http::Request<B>,
    ) -> Result<http::Response<UpstreamBody>, Error>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, request_body) = request.into_parts();

        // Admit: the client and its connection, when a store is configured (see `connection`).
        let admitted = match &self.admission {
            Some(admission) => {
                let name = connector_name(parts.uri.path())?.to_owned();
                Some(admission.admit(self, &mut parts, &name).await?)
            }
            None => None,
        };
        if let Some(admitted) = admitted.as_ref().filter(|a| !a.id.is_empty()) {
            ctx.client_id = Some(admitted.id.clone());
        }

        // Route.
        let Routed {
            connector,
            index,
            op,
            captures,
        } = self.route(&parts)?;
        ctx.route = connector.op_metrics.get(index).map(Arc::as_ref);
        ctx.operation_path = Some(op.path.as_str());
        if let Some(admitted) = &admitted {
            admitted.check(&connector.name, &op.id)?;
        }
        if let Some(refusal) = &op.refusal {
            return Err(Error::new(refusal.kind, refusal.message.to_string()));
        }
        // A followed next link: only one the gateway issued, for this operation and
        // connection (see `paging`); or the Location a trigger's backend gave (`trigger`).
        let poll = parts.extensions.get::<crate::TriggerPoll>();
        if let Some((location, method)) =
            poll.and_then(|poll| Some((poll.location.as_deref()?, poll.method.as_ref())))
        {
            let next = crate::trigger::follow(connector, location, method)?;
            parts.extensions.insert(next);
        } else if let Some(next) = crate::paging::continued(&self.links, connector, op, &parts)? {
            parts.extensions.insert(next);
        }

        // Rate limits (cache hits count too: they are the client's requests).
        let decision =
            if self.traffic.per_client.is_some() || connector.traffic.per_connection.is_some() {
                let connection = crate::connection::attached(&parts).map(|c| c.id.as_str());
                self.rate_limit(connector, ctx.peer, connection).await?
            } else {
                None
            };

        // Body limit, then bind and validate.
        let limit = self.limits.max_body_bytes;
        body::check_declared_length(&parts.headers, limit)?;
        let bound = bind::bind(op, &parts, captures, request_body, limit).await?;

        let at = Routed {
            connector,
            index,
            op,
            captures: Vec::new(),
        };
        let mut response = self.answer(ctx, at, parts, bound).await?;
        if let Some(decision) = decision {
            ratelimit::write_headers(response.headers_mut(), &decision);
        }
        ctx.answered(&mut response);
        Ok(response)
    }

    /// Finds the operation a request's path and method name: its connector, its index and
    /// plan, and the values the path template captured.
    fn route(&self, parts: &http::request::Parts) -> Result<Routed<'_>, Error> {
        let path = parts.uri.path();
        let rest = path.strip_prefix(CONNECTORS_PREFIX).ok_or_else(|| {
            Error::new(ErrorKind::NotFound, format!("nothing is served at {path}"))
        })?;
        let (name, operation_path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let Some(connector) = self.connector_plan(name) else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("there is no connector named '{name}'"),
            ));
        };
        let segments = decode_segments(operation_path)?;
        let method = route::model_method(&parts.method);
        // Clients call actions; the trigger runner polls triggers (see `trigger`).
        let routes = if parts.extensions.get::<crate::TriggerPoll>().is_some() {
            &connector.trigger_routes
        } else {
            &connector.routes
        };
        let (index, captures) = match routes.lookup(&segments, method) {
            Lookup::Found(index, captures) => (index, captures),
            Lookup::MethodNotAllowed(allow) => {
                return Err(Error::method_not_allowed(
                    &parts.method,
                    &format!("operation path {}", display_path(operation_path)),
                    allow,
                ));
            }
            Lookup::NotFound => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "connector '{name}' has no operation at {}",
                        display_path(operation_path)
                    ),
                ));
            }
        };
        let index = usize::try_from(index).unwrap_or(usize::MAX);
        let op = connector
            .operations
            .get(index)
            .ok_or_else(|| Error::new(ErrorKind::Internal, "the route table is inconsistent"))?;
        Ok(Routed {
            connector,
            index,
            op,
            captures,
        })
    }

    /// The answer to a bound request: from the cache or the backend (with the request
    /// policies when the operation has some), i.e. what the backend said; then the
    /// response policies, for this request.
    async fn answer(
        &self,
        ctx: &RequestCtx<'_>,
        at: Routed<'_>,
        parts: http::request::Parts,
        bound: bind::Bound,
    ) -> Result<http::Response<UpstreamBody>, Error> {
        let Routed {
            connector,
            index,
            op,
            ..
        } = at;
        let refused = crate::connection::unauthorized_hook(&parts);
        let responds = op.policies.as_deref().filter(|plan| plan.responds());
        let values = responds.map(|_| bound.values.clone());
        let (response, parts) = match (&op.cache, &self.traffic.cache) {
            (Some(policy), Some(cache)) => {
                let at = OpRef {
                    connector,
                    index,
                    op,
                    policy,
                };
                let kept = responds.map(|_| parts.clone());
                (
                    stage::serve(ctx.shared(), cache, at, parts, bound).await?,
                    kept,
                )
            }
            _ => (
                upstream::call(connector, op, &parts, bound).await?,
                Some(parts),
            ),
        };
        crate::connection::after_call(refused, &response);
        match (responds, values, &parts) {
            (Some(plan), Some(values), Some(parts)) => {
                crate::policy::respond(connector, op, plan, parts, &values, &self.links, response)
                    .await
            }
            _ => Ok(response),
        }
    }

    /// Counts the request against the per-client and per-connection limits; the decision
    /// closest to refusing, for the `RateLimit-*` fields.
    async fn rate_limit(
        &self,
        connector: &ConnectorPlan,
        client: Option<IpAddr>,
        connection: Option<&str>,
    ) -> Result<Option<Decision>, Error> {
        let mut decisions = [None, None];
        if let Some(limit) = &self.traffic.per_client {
            let key = match client {
                Some(ip) => ip.to_canonical().to_string(),
                None => "unknown".to_owned(),
            };
            decisions[0] =
                traffic::check(limit, &key, &|| format!("the limit per client ({key})")).await?;
        }
        if let Some(limit) = &connector.traffic.per_connection {
            // A stored connection is counted on its own.
            let key = connection.unwrap_or(&connector.traffic.connection_id);
            decisions[1] = traffic::check(limit, key, &|| {
                format!("the limit per connection of connector '{}'", connector.name)
            })
            .await?;
        }
        let decided: Vec<Decision> = decisions.into_iter().flatten().collect();
        Ok(ratelimit::tightest(&decided))
    }
}

/// Where a request was routed.
struct Routed<'a> {
    connector: &'a ConnectorPlan,
    index: usize,
    op: &'a crate::plan::OperationPlan,
    /// The path template's captures, in order.
    captures: Vec<String>,
}

/// The connector named by a path under `/connectors/`.
fn connector_name(path: &str) -> Result<&str, Error> {
    let rest = path
        .strip_prefix(CONNECTORS_PREFIX)
        .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("nothing is served at {path}")))?;
    Ok(rest.split('/').next().unwrap_or_default())
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}

/// Splits the operation path at `/` and percent-decodes each segment. A segment whose `%`
/// is not followed by two hex digits, that is not UTF-8 once decoded, or that holds a NUL
/// (`%00`) is refused: a backend could read any of them in more than one way (a NUL ends a
/// string in many backends' languages). Other characters, control characters included,
/// travel percent-encoded inside their segment.
fn decode_segments(path: &str) -> Result<Vec<Cow<'_, str>>, Error> {
    let refuse = |segment: &str, why: &str| {
        Error::invalid(vec![Violation {
            location: crate::error::InputLocation::Path,
            name: None,
            pointer: None,
            message: format!("path segment '{}' {why}", segment.escape_debug()),
        }])
    };
    let path = path.strip_prefix('/').unwrap_or(path);
    path.split('/')
        .map(|segment| {
            let bytes = segment.as_bytes();
            let malformed = bytes.iter().enumerate().any(|(i, b)| {
                *b == b'%'
                    && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                        && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            });
            if malformed {
                return Err(refuse(
                    segment,
                    "has a `%` that is not followed by two hex digits",
                ));
            }
            let decoded = percent_encoding::percent_decode_str(segment)
                .decode_utf8()
                .map_err(|_| refuse(segment, "is not UTF-8 once percent-decoded"))?;
            if decoded.contains('\0') {
                return Err(refuse(segment, "holds a NUL (`%00`) once percent-decoded"));
            }
            Ok(decoded)
        })
        .collect()
}
