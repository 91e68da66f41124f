//! Connection resolution: which connection (and so which credentials) one request uses.
//!
//! Without a store, every request of a connector uses the connection of
//! `[connector.NAME.connection]`, compiled into the table. With one, an [`Admission`]
//! (implemented by `junction-server` over the store) runs first in
//! [`Gateway::handle`](crate::Gateway::handle): it authenticates the gateway client,
//! checks its grants, and may attach a [`ResolvedConnection`] to the request — a stored
//! connection's credentials for every operation of the connector and the values its
//! policies read. The upstream stage then uses those instead of the compiled ones.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::request::Parts;
use indexmap::IndexMap;
use junction_model::{Connector, SecurityRequirement};

use crate::Secret;
use crate::auth::{self, AuthPlan, AuthProblem, Credential};
use crate::error::{Error, ErrorKind};
use crate::gateway::{ConnectorPlan, Gateway};
use crate::plan::OperationPlan;
use crate::policy;

/// A boxed future, as [`Admission`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The step that admits a data-plane request before it is routed: authenticates the
/// client, checks its grants, and attaches the connection it uses.
pub trait Admission: Send + Sync + std::fmt::Debug {
    /// Admits the request for `connector` (the first path segment after `/connectors/`),
    /// or refuses it (401, 403). May insert a [`ResolvedConnection`] into the request's
    /// extensions (through [`Gateway::resolve_connection`]).
    fn admit<'a>(
        &'a self,
        gateway: &'a Gateway,
        parts: &'a mut Parts,
        connector: &'a str,
    ) -> BoxFuture<'a, Result<Admitted, Error>>;

    /// Admits a request for view `view`: the client must hold a `view:NAME` grant. The
    /// view's steps are then admitted one by one as the same client (its credentials are
    /// passed on to them), each with its own connector grant and connection. Returns the
    /// client's id (a cached view is keyed by it: its steps may use the client's own
    /// connections).
    fn admit_view<'a>(
        &'a self,
        parts: &'a Parts,
        view: &'a str,
    ) -> BoxFuture<'a, Result<String, Error>>;

    /// Serves the data plane's `/oauth/callback?QUERY` (an OAuth login coming back): the
    /// page to show, or why not.
    fn oauth_callback<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<String, Error>> {
        let _ = query;
        Box::pin(async { Err(Error::new(ErrorKind::NotFound, "no OAuth login is pending")) })
    }

    /// The key next links are signed with when `[next_links] key` is not set: one every
    /// replica of the store shares (derived from its master key), if there is one.
    fn link_key(&self) -> Option<crate::next_link::LinkKey> {
        None
    }
}

/// Called when the backend answers 401 to a request that used an attached connection
/// (so the connection's token can be refreshed). Put into the request's extensions by the
/// admission.
#[derive(Clone)]
pub struct UnauthorizedHook(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for UnauthorizedHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnauthorizedHook")
    }
}

/// The hook the admission attached, taken before the request's parts are handed on.
pub(crate) fn unauthorized_hook(parts: &Parts) -> Option<UnauthorizedHook> {
    parts.extensions.get::<UnauthorizedHook>().cloned()
}

/// After the upstream call: tells the admission's hook about a 401.
pub(crate) fn after_call<B>(hook: Option<UnauthorizedHook>, response: &http::Response<B>) {
    if response.status() == http::StatusCode::UNAUTHORIZED
        && let Some(hook) = hook
    {
        (hook.0)();
    }
}

/// What the admission let through: which operations of the connector the client may call.
#[derive(Debug, Clone, Default)]
pub struct Admitted {
    /// `None`: every operation.
    pub operations: Option<Vec<String>>,
    /// The client, for messages.
    pub client: String,
    /// The client's id, for the access log.
    pub id: String,
}

impl Admitted {
    /// Refuses an operation the client was not granted.
    pub fn check(&self, connector: &str, operation: &str) -> Result<(), Error> {
        match &self.operations {
            Some(allowed) if !allowed.iter().any(|o| o == operation) => Err(Error::new(
                ErrorKind::Forbidden,
                format!(
                    "client '{}' is not granted operation '{operation}' of connector '{connector}'",
                    self.client
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// A stored connection, ready for one connector's requests.
#[derive(Debug)]
pub struct ResolvedConnection {
    /// The stored connection's id.
    pub id: String,
    /// Credentials of each operation, in the table's order.
    auth: Vec<AuthPlan>,
    /// The values policies and transforms read.
    pub(crate) policy: policy::Connection,
}

/// The per-connector data resolution needs: the connector's auth model and each
/// operation's own requirements.
#[derive(Debug)]
pub(crate) struct AuthModel {
    /// The connector without operations and schemas.
    pub connector: Connector,
    pub operations: Vec<Option<Vec<SecurityRequirement>>>,
}

impl Gateway {
    /// Builds the credentials of connection `id` with `values` for every operation of
    /// `connector`. `None` when there is no such connector.
    pub fn resolve_connection(
        &self,
        connector: &str,
        id: &str,
        values: &IndexMap<String, Secret>,
    ) -> Option<Result<Arc<ResolvedConnection>, Error>> {
        let plan = self.connector_plan(connector)?;
        let model = &plan.auth_model;
        let mut plans: Vec<(Option<&Vec<SecurityRequirement>>, AuthPlan)> = Vec::new();
        let mut auth = Vec::with_capacity(model.operations.len());
        for requirements in &model.operations {
            if let Some((_, found)) = plans.iter().find(|(r, _)| *r == requirements.as_ref()) {
                auth.push(found.clone());
                continue;
            }
            let built = match auth::plan(
                &model.connector,
                requirements.as_ref().map(Vec::as_slice),
                values,
            ) {
                Ok(plan) => plan,
                Err(AuthProblem::Unconfigured(_)) => AuthPlan::None,
                Err(AuthProblem::Missing(message)) => AuthPlan::Missing(
                    format!(
                        "connection '{id}': {}",
                        message.replace(
                            &format!("in [connector.{connector}.connection]"),
                            "in the connection"
                        )
                    )
                    .into(),
                ),
                Err(AuthProblem::Invalid(message)) => {
                    return Some(Err(Error::new(
                        ErrorKind::Misconfigured,
                        format!("connection '{id}': {message}"),
                    )));
                }
            };
            plans.push((requirements.as_ref(), built.clone()));
            auth.push(built);
        }
        Some(Ok(Arc::new(ResolvedConnection {
            id: id.to_owned(),
            auth,
            policy: policy::Connection::new(&model.connector, values),
        })))
    }
}

/// The connection a request uses, when the admission attached one.
pub(crate) fn attached(parts: &Parts) -> Option<&ResolvedConnection> {
    parts
        .extensions
        .get::<Arc<ResolvedConnection>>()
        .map(Arc::as_ref)
}

/// The credentials of `op` for this request: the attached connection's, else the
/// compiled ones.
pub(crate) fn credentials<'a>(
    connector: &ConnectorPlan,
    op: &'a OperationPlan,
    parts: &'a Parts,
) -> Result<&'a [Credential], Error> {
    let Some(connection) = attached(parts) else {
        return crate::upstream::credentials(op);
    };
    let index = connector
        .operations
        .iter()
        .position(|o| std::ptr::eq(o, op))
        .ok_or_else(|| Error::new(ErrorKind::Internal, "the route table is inconsistent"))?;
    match connection.auth.get(index) {
        Some(AuthPlan::Apply(credentials)) => Ok(credentials),
        Some(AuthPlan::None) => Ok(&[]),
        Some(AuthPlan::Missing(message)) => {
            Err(Error::new(ErrorKind::Misconfigured, message.to_string()))
        }
        None => Err(Error::new(
            ErrorKind::Internal,
            "the route table is inconsistent",
        )),
    }
}

/// The connection values policies read for this request.
pub(crate) fn for_policies<'a>(
    connector: &'a ConnectorPlan,
    parts: &'a Parts,
) -> &'a policy::Connection {
    attached(parts).map_or(&connector.connection, |c| &c.policy)
}
