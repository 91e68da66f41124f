//! The agent transport: a connector with `via = "agent:POOL"` sends its requests over the
//! connections the pool's outbound agents opened to the gateway, one HTTP/2 stream each
//! (docs/agent.md).
//!
//! The gateway is the HTTP/2 *client* on a connection the agent dialled: the agents
//! listener (`junction-agent`) authenticates the agent, runs the HTTP/2 handshake and
//! [`AgentPools::attach`]es the connection here. A request picks the live link with the
//! fewest requests in flight; a request that never left a dying link is sent on another
//! one, and one that was lost with its link is an [`ClientError::AgentLost`], which the
//! exchange resends once when it may (idempotent, body in memory). An answer the agent
//! made itself (its allowlist refused the request, or it could not reach the backend) is
//! marked [`AGENT_PROBLEM`] and becomes the gateway's own error
//! ([`ClientError::AgentAnswered`]), so the client gets the gateway's problem.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use serde::Serialize;
use tokio::sync::Notify;

use super::pool::ClientError;
use crate::body::RequestBody;

/// The header marking an answer the agent made itself; its value is the problem's slug.
pub const AGENT_PROBLEM: &str = "x-junction-agent-problem";

/// The connected agents of every pool, shared by the gateway and its agents listener.
#[derive(Debug, Clone, Default)]
pub struct AgentPools(Arc<Mutex<HashMap<String, Vec<Arc<Link>>>>>);

/// One agent's connection to this gateway.
#[derive(Debug)]
pub struct Link {
    /// The agent's id (from the store).
    pub agent: String,
    /// The name it joined with.
    pub name: String,
    pub pool: String,
    /// When it connected, Unix ms.
    pub connected_at: i64,
    sender: SendRequest<RequestBody>,
    in_flight: AtomicUsize,
    served: AtomicU64,
    cut: Notify,
}

/// A connected agent as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LinkInfo {
    pub agent: String,
    pub name: String,
    pub pool: String,
    pub connected_at: i64,
    /// Requests sent and not answered yet.
    pub in_flight: usize,
    /// Requests answered since it connected.
    pub served: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding it; if something did, the map is still consistent.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Link {
    /// A link for `agent` of `pool` over an HTTP/2 connection's `sender`.
    pub fn new(
        agent: String,
        name: String,
        pool: String,
        connected_at: i64,
        sender: SendRequest<RequestBody>,
    ) -> Link {
        Link {
            agent,
            name,
            pool,
            connected_at,
            sender,
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            cut: Notify::new(),
        }
    }

    /// Resolves when the link is cut ([`AgentPools::cut`]): its connection must close.
    pub async fn cut(&self) {
        self.cut.notified().await;
    }

    fn info(&self) -> LinkInfo {
        LinkInfo {
            agent: self.agent.clone(),
            name: self.name.clone(),
            pool: self.pool.clone(),
            connected_at: self.connected_at,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
        }
    }
}

impl AgentPools {
    /// Makes `link` available to its pool's connectors.
    pub fn attach(&self, link: Arc<Link>) {
        lock(&self.0)
            .entry(link.pool.clone())
            .or_default()
            .push(link);
    }

    /// Removes `link` (its connection ended).
    pub fn detach(&self, link: &Arc<Link>) {
        let mut pools = lock(&self.0);
        if let Some(links) = pools.get_mut(&link.pool) {
            links.retain(|l| !Arc::ptr_eq(l, link));
            if links.is_empty() {
                pools.remove(&link.pool);
            }
        }
    }

    /// Cuts every link of `agent` at once (it was revoked); returns how many.
    pub fn cut(&self, agent: &str) -> usize {
        let mut cut = 0;
        for link in lock(&self.0).values().flatten() {
            if link.agent == agent {
                // `notify_one` keeps the permit if the connection task is not waiting yet.
                link.cut.notify_one();
                cut += 1;
            }
        }
        cut
    }

    /// The connected agents, by pool and name.
    pub fn links(&self) -> Vec<LinkInfo> {
        let mut links: Vec<LinkInfo> = lock(&self.0).values().flatten().map(|l| l.info()).collect();
        links.sort_by(|a, b| (&a.pool, &a.name, &a.agent).cmp(&(&b.pool, &b.name, &b.agent)));
        links
    }

    /// The live link of `pool` with the fewest requests in flight.
    fn pick(&self, pool: &str) -> Option<Arc<Link>> {
        lock(&self.0)
            .get(pool)?
            .iter()
            .filter(|link| !link.sender.is_closed())
            .min_by_key(|link| link.in_flight.load(Ordering::Relaxed))
            .cloned()
    }

    /// Sends `request` (absolute URI: the backend as the agent's network sees it) through
    /// an agent of `pool`.
    pub(crate) async fn request(
        &self,
        pool: &str,
        mut request: http::Request<RequestBody>,
    ) -> Result<http::Response<Incoming>, ClientError> {
        // A request that never left a closing link goes to the next one: at most once per
        // link the pool had when it started.
        let mut tries = lock(&self.0).get(pool).map_or(0, Vec::len);
        loop {
            let Some(link) = self.pick(pool) else {
                return Err(ClientError::NoAgent(pool.to_owned()));
            };
            link.in_flight.fetch_add(1, Ordering::Relaxed);
            let mut sender = link.sender.clone();
            let sent = match sender.ready().await {
                Ok(()) => sender.try_send_request(request).await,
                Err(error) => {
                    link.in_flight.fetch_sub(1, Ordering::Relaxed);
                    tries = tries.saturating_sub(1);
                    if tries == 0 {
                        return Err(ClientError::AgentLost(error));
                    }
                    continue;
                }
            };
            link.in_flight.fetch_sub(1, Ordering::Relaxed);
            match sent {
                Ok(response) => {
                    link.served.fetch_add(1, Ordering::Relaxed);
                    if response.headers().contains_key(AGENT_PROBLEM) {
                        return Err(agent_answer(&link, response).await);
                    }
                    return Ok(response);
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) if tries > 1 => {
                        tries -= 1;
                        request = unsent;
                    }
                    _ => return Err(ClientError::AgentLost(error.into_error())),
                },
            }
        }
    }
}

/// The problem an agent answered itself, read (a few KiB at most) into an error.
async fn agent_answer(link: &Link, response: http::Response<Incoming>) -> ClientError {
    let forbidden = response
        .headers()
        .get(AGENT_PROBLEM)
        .is_some_and(|kind| kind.as_bytes() == b"forbidden");
    let detail = match Limited::new(response.into_body(), 16 * 1024)
        .collect()
        .await
    {
        Ok(body) => serde_json::from_slice::<serde_json::Value>(&body.to_bytes())
            .ok()
            .and_then(|problem| problem.get("detail")?.as_str().map(str::to_owned)),
        Err(_) => None,
    }
    .unwrap_or_else(|| "the agent gave no reason".to_owned());
    ClientError::AgentAnswered {
        forbidden,
        detail: format!("agent '{}' of pool '{}': {detail}", link.name, link.pool),
    }
}
