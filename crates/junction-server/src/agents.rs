//! The agents listener (`[agents] listen`): TLS 1.3; ALPN decides what a connection is.
//!
//! - `junction-agent/1`, with the agent's certificate: a tunnel. The gateway checks that the
//!   certificate is the agent's current one and not revoked, then speaks HTTP/2 as the
//!   *client* on it and attaches it to the agent's pool ([`AgentPools`]); HTTP/2 PINGs
//!   every [`PING_INTERVAL`] find a silent agent within [`LIVENESS`].
//! - `http/1.1`: enrollment. `POST /agents/join` (a token and a certificate request, no
//!   certificate yet) and `POST /agents/renew` (with the current certificate).
//!
//! Once a second the listener reads which agents are revoked and cuts their tunnels; every
//! [`TOUCH_EVERY`] it records the connected agents as seen.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;
use http::Method;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use junction_agent::enroll::{Desk, EnrollError};
use junction_agent::pki::{ALPN_ENROLL, ALPN_TUNNEL};
use junction_agent::tokio_rustls::TlsAcceptor;
use junction_agent::tokio_rustls::server::TlsStream;
use junction_runtime::{AgentPools, Error, ErrorKind, Link, RequestBody};
use junction_store::crypto::sha256_hex;
use junction_store::now_ms;
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How often the gateway pings an agent's connection.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// How long a ping may go unanswered before the connection is dropped.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a dead agent that sent nothing (network cut, host frozen) stays in its pool:
/// a ping interval and its timeout. An agent whose process ends is noticed at once (its
/// connection closes).
pub const LIVENESS: Duration = Duration::from_secs(10);
/// How often connected agents are recorded as seen.
pub const TOUCH_EVERY: Duration = Duration::from_secs(30);
/// The TLS handshake and an enrollment exchange must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Enrollment bodies are small: a token, a name and a certificate request.
const MAX_ENROLL_BODY: usize = 64 * 1024;

/// Serves agents on `listener` until `stopped` turns true.
pub async fn serve(
    listener: TcpListener,
    desk: Arc<Desk>,
    pools: AgentPools,
    mut stopped: watch::Receiver<bool>,
) {
    let tls = match desk.authority().listener_tls() {
        Ok(config) => TlsAcceptor::from(Arc::new(config)),
        Err(error) => {
            tracing::error!(%error, "the agents listener cannot set up TLS");
            return;
        }
    };
    tokio::spawn(watch_revocations(
        desk.clone(),
        pools.clone(),
        stopped.clone(),
    ));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "agents listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            peer,
            tls.clone(),
            desk.clone(),
            pools.clone(),
            stopped.clone(),
        ));
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: TlsAcceptor,
    desk: Arc<Desk>,
    pools: AgentPools,
    stopped: watch::Receiver<bool>,
) {
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::info!(%peer, %error, "agents listener: TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "agents listener: TLS handshake timed out");
            return;
        }
    };
    let (_, session) = stream.get_ref();
    let fingerprint = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| sha256_hex(cert));
    match session.alpn_protocol() {
        Some(ALPN_TUNNEL) => match fingerprint {
            Some(fingerprint) => tunnel(stream, peer, fingerprint, desk, pools, stopped).await,
            None => tracing::info!(%peer, "agents listener: a tunnel without a certificate"),
        },
        Some(ALPN_ENROLL) => enrollment(stream, fingerprint, desk).await,
        _ => tracing::info!(%peer, "agents listener: no known ALPN protocol"),
    }
}

/// A joined agent's connection: HTTP/2 with the gateway as the client, until it ends, the
/// agent is revoked or the gateway stops.
async fn tunnel(
    stream: TlsStream<TcpStream>,
    peer: SocketAddr,
    fingerprint: String,
    desk: Arc<Desk>,
    pools: AgentPools,
    mut stopped: watch::Receiver<bool>,
) {
    let agent = match desk.agent(&fingerprint).await {
        Ok(agent) => agent,
        Err(error) => {
            tracing::warn!(%peer, %error, "agents listener: tunnel refused");
            return;
        }
    };
    let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT)
        .keep_alive_while_idle(true)
        .handshake::<_, RequestBody>(TokioIo::new(stream));
    let (sender, connection) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(error)) => {
            tracing::warn!(%peer, agent = %agent.id, %error, "agents listener: HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, agent = %agent.id, "agents listener: HTTP/2 handshake timed out");
            return;
        }
    };
    let link = Arc::new(Link::new(
        agent.id.clone(),
        agent.name.clone(),
        agent.pool.clone(),
        now_ms(),
        sender,
    ));
    pools.attach(link.clone());
    touch(&desk, std::slice::from_ref(&agent.id)).await;
    tracing::info!(%peer, agent = %agent.id, name = %agent.name, pool = %agent.pool, "agent connected");
    let ended = tokio::select! {
        ended = connection => match ended {
            Ok(()) => "closed".to_owned(),
            Err(error) => error.to_string(),
        },
        () = link.cut() => "revoked".to_owned(),
        _ = stopped.changed() => "gateway stopping".to_owned(),
    };
    pools.detach(&link);
    touch(&desk, std::slice::from_ref(&agent.id)).await;
    tracing::info!(%peer, agent = %agent.id, pool = %agent.pool, %ended, "agent disconnected");
}

async fn touch(desk: &Desk, ids: &[String]) {
    if let Err(error) = desk.vault().store().touch_agents(ids, now_ms()).await {
        tracing::warn!(%error, "cannot record agents as seen");
    }
}

/// Cuts the tunnels of revoked agents (revoked by this gateway, another replica or the
/// CLI) within a second, and records connected agents as seen.
async fn watch_revocations(desk: Arc<Desk>, pools: AgentPools, mut stopped: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut since_touch = Duration::ZERO;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => return,
        }
        let connected: HashSet<String> = pools.links().into_iter().map(|l| l.agent).collect();
        if connected.is_empty() {
            continue;
        }
        match desk.vault().store().agents().await {
            Ok(agents) => {
                for agent in agents {
                    if agent.revoked_at.is_some() && connected.contains(&agent.id) {
                        let cut = pools.cut(&agent.id);
                        tracing::warn!(agent = %agent.id, pool = %agent.pool, cut, "revoked agent cut off");
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read which agents are revoked"),
        }
        since_touch += Duration::from_secs(1);
        if since_touch >= TOUCH_EVERY {
            since_touch = Duration::ZERO;
            let ids: Vec<String> = connected.into_iter().collect();
            touch(&desk, &ids).await;
        }
    }
}

#[derive(Deserialize)]
struct JoinRequest {
    token: String,
    name: String,
    csr: String,
}

#[derive(Deserialize)]
struct RenewRequest {
    csr: String,
}

/// An enrollment connection: HTTP/1.1 requests to `/agents/join` and `/agents/renew`.
async fn enrollment(stream: TlsStream<TcpStream>, fingerprint: Option<String>, desk: Arc<Desk>) {
    let service = hyper::service::service_fn(move |request| {
        let desk = desk.clone();
        let fingerprint = fingerprint.clone();
        async move {
            let answer = enroll(request, fingerprint.as_deref(), &desk).await;
            Ok::<_, std::convert::Infallible>(answer)
        }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(error) = served.await {
        tracing::info!(%error, "agents listener: enrollment connection failed");
    }
}

async fn enroll(
    request: http::Request<Incoming>,
    fingerprint: Option<&str>,
    desk: &Desk,
) -> Response {
    let path = request.uri().path().to_owned();
    let answer = answer(request, &path, fingerprint, desk).await;
    match answer.and_then(|joined| {
        serde_json::to_vec(&joined).map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))
    }) {
        Ok(body) => http::Response::builder()
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(body))
            .unwrap_or_default(),
        Err(error) => crate::problem::response(&error, &path, &crate::problem::request_id(None)),
    }
}

async fn answer(
    request: http::Request<Incoming>,
    path: &str,
    fingerprint: Option<&str>,
    desk: &Desk,
) -> Result<junction_agent::enroll::Joined, Error> {
    if request.method() != Method::POST || !matches!(path, "/agents/join" | "/agents/renew") {
        return Err(Error::new(
            ErrorKind::NotFound,
            "the agents listener answers POST /agents/join and POST /agents/renew",
        ));
    }
    let body = Limited::new(request.into_body(), MAX_ENROLL_BODY)
        .collect()
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::InvalidRequest,
                "the body did not arrive or is larger than 64 KiB",
            )
        })?
        .to_bytes();
    let invalid = |what: &str, error: serde_json::Error| {
        Error::new(
            ErrorKind::InvalidRequest,
            format!("the body is not {what}: {error}"),
        )
    };
    let answered = if path == "/agents/join" {
        let join: JoinRequest =
            serde_json::from_slice(&body).map_err(|e| invalid("a join request", e))?;
        desk.join(&join.token, &join.name, &join.csr).await
    } else {
        let renew: RenewRequest =
            serde_json::from_slice(&body).map_err(|e| invalid("a renewal request", e))?;
        let Some(fingerprint) = fingerprint else {
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                "renewing takes the agent's current certificate",
            ));
        };
        desk.renew(fingerprint, &renew.csr).await
    };
    answered.map_err(|error| match error {
        EnrollError::Refused(detail) => Error::new(ErrorKind::Unauthenticated, detail),
        EnrollError::Invalid(detail) => Error::new(ErrorKind::InvalidRequest, detail),
        other => {
            tracing::error!(error = %other, "agents listener: enrollment failed");
            Error::new(
                ErrorKind::StoreUnavailable,
                "the gateway cannot enroll agents now; its log says why",
            )
        }
    })
}
