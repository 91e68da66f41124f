//! The request lifecycle, stage by stage: route → limit → bind + validate → request
//! policies → upstream → response policies.
//!
//! [`Gateway::handle`] is the whole data plane for one request under
//! `/connectors/{name}/…`. Each stage either hands its result to the next or returns an
//! [`Error`]; the server turns that error into problem+json. See `docs/lifecycle.md`.

use std::borrow::Cow;

use bytes::Bytes;
use http_body::Body;

use crate::bind;
use crate::body::{self, UpstreamBody};
use crate::error::{BoxError, Error, ErrorKind, Violation};
use crate::gateway::Gateway;
use crate::route::{self, Lookup};
use crate::upstream;

/// The prefix of every data-plane operation URL.
pub const CONNECTORS_PREFIX: &str = "/connectors/";

impl Gateway {
    /// Serves one request: finds the operation, binds and validates its inputs, calls the
    /// backend, and returns the backend's response with a streamed body.
    pub async fn handle<B>(
        &self,
        request: http::Request<B>,
    ) -> Result<http::Response<UpstreamBody>, Error>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, request_body) = request.into_parts();

        // Route.
        let path = parts.uri.path();
        let Some(rest) = path.strip_prefix(CONNECTORS_PREFIX) else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("nothing is served at {path}"),
            ));
        };
        // Admit: the client and its connection, when a store is configured (see `connection`).
        let admitted = match &self.admission {
            Some(admission) => {
                let name = rest.split('/').next().unwrap_or_default().to_owned();
                Some(admission.admit(self, &mut parts, &name).await?)
            }
            None => None,
        };
        let path = parts.uri.path();
        let rest = path.strip_prefix(CONNECTORS_PREFIX).unwrap_or_default();
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
        let (index, captures) = match connector.routes.lookup(&segments, method) {
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
        drop(segments);
        let op = usize::try_from(index)
            .ok()
            .and_then(|i| connector.operations.get(i))
            .ok_or_else(|| Error::new(ErrorKind::Internal, "the route table is inconsistent"))?;

        if let Some(admitted) = &admitted {
            admitted.check(name, &op.id)?;
        }

        if let Some(refusal) = &op.refusal {
            return Err(Error::new(refusal.kind, refusal.message.to_string()));
        }

        // Limit.
        let limit = self.limits.max_body_bytes;
        body::check_declared_length(&parts.headers, limit)?;

        // Bind and validate.
        let bound = bind::bind(op, &parts, captures, request_body, limit).await?;

        // Upstream, with the policy stage around it when the operation has one.
        let response = upstream::call(connector, op, &parts, bound).await;
        crate::connection::after_call(&parts, &response);
        response
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}

/// Splits the operation path at `/` and percent-decodes each segment.
fn decode_segments(path: &str) -> Result<Vec<Cow<'_, str>>, Error> {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.split('/')
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8()
                .map_err(|_| {
                    Error::invalid(vec![Violation {
                        location: crate::error::InputLocation::Path,
                        name: None,
                        pointer: None,
                        message: format!(
                            "path segment '{segment}' is not UTF-8 once percent-decoded"
                        ),
                    }])
                })
        })
        .collect()
}
