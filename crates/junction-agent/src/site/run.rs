//! `junction agent run`: the connection to the gateway, kept up, and the requests on it.
//!
//! The agent dials the agents listener (directly or through the site's HTTP proxy), shows
//! its certificate (TLS 1.3), and then serves HTTP/2 on that connection: the gateway is
//! the client, each request a stream, so flow control paces both bodies and neither is
//! held whole here. A request is performed only when the allowlist allows its URL (else
//! `403`, logged here); credentials of `[backend_auth]` are added here. PINGs every
//! [`PING_INTERVAL`] find a silent gateway; the agent dials again after a jittered
//! backoff (at most [`MAX_BACKOFF`]), and renews its certificate when a third of it is
//! left (checked before each connection and hourly while connected). On SIGTERM it sends
//! GOAWAY and lets the requests in flight finish.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use junction_runtime::{AGENT_PROBLEM, ErrorKind, Forwarder, PROBLEM_BASE, strip_hop_by_hop};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::SiteError;
use super::allow;
use super::files::{self, Site};
use super::join::{due_for_renewal, gateway_authority, renew};
use crate::pki::{self, ALPN_TUNNEL, GATEWAY_NAME};

/// How often the agent pings the gateway.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// How long a ping may go unanswered before the agent dials again.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait between two dials.
pub const MAX_BACKOFF: Duration = Duration::from_secs(4);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Dialling and the TLS handshake must finish within this.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests in flight may run on after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The body of an answer: the backend's, streamed, or the agent's own problem.
type AnswerBody = Either<Incoming, Full<Bytes>>;

/// What every request on the connection needs.
struct Forwarding {
    site: Site,
    client: Forwarder,
}

/// Keeps a connection to the gateway up until `stop` resolves.
pub async fn run(dir: &Path, stop: impl Future<Output = ()>) -> Result<(), SiteError> {
    let site = files::load_site(dir)?;
    let (enrollment, _) = files::read_enrollment(dir)?;
    let authority = gateway_authority(&enrollment.gateway)?;
    if site.allow.is_empty() {
        tracing::warn!(file = %dir.join(files::SITE_FILE).display(), "the allowlist is empty: every request will be refused");
    }
    let client = Forwarder::new(site.connect_timeout).map_err(SiteError)?;
    let forwarding = Arc::new(Forwarding { site, client });
    // A connection may last longer than a certificate: renewals are also checked while
    // connected (the connection goes on; the next one shows the new certificate).
    let renewals = tokio::spawn(keep_renewed(
        dir.to_path_buf(),
        forwarding.site.proxy.clone(),
    ));
    let _stop_renewals = AbortOnDrop(renewals);
    tokio::pin!(stop);
    let mut backoff = FIRST_BACKOFF;
    loop {
        // Read each time: a renewal (here or while connected) replaces the files.
        let (enrollment, identity) = files::read_enrollment(dir)?;
        if due_for_renewal(&enrollment) {
            match renew(
                dir,
                &enrollment,
                &identity,
                forwarding.site.proxy.as_deref(),
            )
            .await
            {
                Ok(renewed) => {
                    tracing::info!(not_after = renewed.not_after, "certificate renewed");
                    continue;
                }
                Err(error) => tracing::warn!(%error, "cannot renew the certificate yet"),
            }
        }
        let tls = pki::agent_tls(&identity.ca, &identity.cert, &identity.key, ALPN_TUNNEL)?;
        let proxy = forwarding.site.proxy.as_deref();
        let dialled = tokio::time::timeout(DIAL_TIMEOUT, connect(tls, &authority, proxy));
        let connected = tokio::select! {
            connected = dialled => connected,
            () = &mut stop => return Ok(()),
        };
        match connected {
            Ok(Ok(stream)) => {
                tracing::info!(gateway = %authority, agent = %enrollment.agent, pool = %enrollment.pool, "connected");
                let served = serve(stream, forwarding.clone(), &mut stop).await;
                match served {
                    Served::Stopped => return Ok(()),
                    Served::Ended(why) => {
                        tracing::warn!(gateway = %authority, %why, "the connection to the gateway ended (a revoked agent must join again)");
                        // A connection that lasted resets the wait; one refused at once does not.
                        if why.lasted {
                            backoff = FIRST_BACKOFF;
                        }
                    }
                }
            }
            Ok(Err(error)) => tracing::warn!(gateway = %authority, %error, "cannot connect"),
            Err(_) => tracing::warn!(gateway = %authority, "cannot connect: timed out"),
        }
        let wait = backoff.mul_f64(0.5 + fastrand::f64());
        backoff = (backoff * 2).min(MAX_BACKOFF);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = &mut stop => return Ok(()),
        }
    }
}

/// How often a connected agent checks whether its certificate is due for renewal.
const RENEWAL_CHECK: Duration = Duration::from_secs(3600);

/// Renews the certificate whenever it is due, checking every [`RENEWAL_CHECK`].
async fn keep_renewed(dir: std::path::PathBuf, proxy: Option<String>) {
    loop {
        tokio::time::sleep(RENEWAL_CHECK).await;
        let (enrollment, identity) = match files::read_enrollment(&dir) {
            Ok(read) => read,
            Err(error) => {
                tracing::warn!(%error, "cannot read the enrollment to check its renewal");
                continue;
            }
        };
        if due_for_renewal(&enrollment) {
            match renew(&dir, &enrollment, &identity, proxy.as_deref()).await {
                Ok(renewed) => tracing::info!(not_after = renewed.not_after, "certificate renewed"),
                Err(error) => tracing::warn!(%error, "cannot renew the certificate yet"),
            }
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a served connection ended.
#[derive(Debug)]
struct Ended {
    error: String,
    /// Whether it lasted long enough to count as having worked.
    lasted: bool,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error)
    }
}

enum Served {
    Stopped,
    Ended(Ended),
}

/// Serves HTTP/2 on the connection until it ends or `stop` resolves (then drains it).
async fn serve<S>(
    stream: S,
    forwarding: Arc<Forwarding>,
    stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Served
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let started = tokio::time::Instant::now();
    let service = hyper::service::service_fn(move |request| {
        let forwarding = forwarding.clone();
        async move { Ok::<_, std::convert::Infallible>(forward(request, &forwarding).await) }
    });
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT)
        .max_concurrent_streams(1024)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = stop.as_mut() => {
            tracing::info!("stopping: GOAWAY sent, requests in flight finish");
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, connection).await;
            return Served::Stopped;
        }
    };
    Served::Ended(Ended {
        error: match ended {
            Ok(()) => "closed by the gateway".to_owned(),
            Err(error) => error.to_string(),
        },
        lasted: started.elapsed() > Duration::from_secs(2),
    })
}

/// One request from the gateway: checked, credentials added, performed, answered.
async fn forward(
    mut request: http::Request<Incoming>,
    forwarding: &Forwarding,
) -> http::Response<AnswerBody> {
    let uri = request.uri().clone();
    let method = request.method().clone();
    if let Err(why) = allow::check(&forwarding.site.allow, &uri) {
        tracing::warn!(%method, url = %without_query(&uri), %why, "refused");
        return problem(
            ErrorKind::Forbidden,
            format!("this agent refuses {method} {}: {why}", without_query(&uri)),
        );
    }
    if let Some(authority) = uri.authority() {
        let port = authority
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let key = format!("{}:{port}", authority.host().to_ascii_lowercase());
        if let Some((name, value)) = forwarding.site.backend_auth.get(&key) {
            request.headers_mut().insert(name.clone(), value.clone());
        }
    }
    match forwarding.client.send(request).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            tracing::debug!(%method, url = %without_query(&uri), status = parts.status.as_u16(), "forwarded");
            http::Response::from_parts(parts, Either::Left(body))
        }
        Err(error) => {
            tracing::warn!(%method, url = %without_query(&uri), %error, "the backend is unreachable from here");
            problem(
                ErrorKind::UpstreamUnreachable,
                format!("the agent could not reach {}: {error}", without_query(&uri)),
            )
        }
    }
}

/// Scheme, host, port and path: never the query, which may carry a key.
fn without_query(uri: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map_or("", |a| a.as_str()),
        uri.path()
    )
}

/// The agent's own answer, as RFC 9457 problem+json of the gateway's problem types, marked
/// with [`AGENT_PROBLEM`] so that the gateway answers its client with its own problem.
fn problem(kind: ErrorKind, detail: String) -> http::Response<AnswerBody> {
    let body = serde_json::json!({
        "type": format!("{PROBLEM_BASE}{}", kind.slug()),
        "title": kind.title(),
        "status": kind.status().as_u16(),
        "detail": detail,
    });
    let mut response = http::Response::new(Either::Right(Full::new(Bytes::from(body.to_string()))));
    *response.status_mut() = kind.status();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/problem+json"),
    );
    response
        .headers_mut()
        .insert(AGENT_PROBLEM, http::HeaderValue::from_static(kind.slug()));
    response
}

/// The TLS connection to the gateway, its protocol checked.
async fn connect(
    tls: rustls::ClientConfig,
    authority: &str,
    proxy: Option<&str>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, SiteError> {
    let stream = dial(authority, proxy).await?;
    let name = ServerName::try_from(GATEWAY_NAME)
        .map_err(|e| SiteError(format!("{GATEWAY_NAME}: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, stream)
        .await
        .map_err(|e| SiteError(format!("TLS: {e}")))?;
    if stream.get_ref().1.alpn_protocol() != Some(ALPN_TUNNEL) {
        return Err(SiteError(
            "the gateway does not speak the agent protocol (ALPN junction-agent/1)".to_owned(),
        ));
    }
    Ok(stream)
}

/// A TCP connection to `authority` (`host:port`), through the HTTP proxy `proxy` when
/// given (HTTP CONNECT).
pub(super) async fn dial(authority: &str, proxy: Option<&str>) -> Result<TcpStream, SiteError> {
    let Some(proxy) = proxy else {
        let stream = TcpStream::connect(authority)
            .await
            .map_err(|e| SiteError(format!("cannot connect to {authority}: {e}")))?;
        let _ = stream.set_nodelay(true);
        return Ok(stream);
    };
    let mut stream = TcpStream::connect(proxy)
        .await
        .map_err(|e| SiteError(format!("cannot connect to the proxy {proxy}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| SiteError(format!("the proxy {proxy}: {e}")))?;
    // The proxy's answer head, read a byte at a time so nothing after it is consumed.
    let mut reader = BufReader::with_capacity(1, &mut stream);
    let mut status = String::new();
    reader
        .read_line(&mut status)
        .await
        .map_err(|e| SiteError(format!("the proxy {proxy}: {e}")))?;
    let code = status
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let mut read = status.len();
    loop {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .await
            .map_err(|e| SiteError(format!("the proxy {proxy}: {e}")))?;
        read += n;
        if n == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if read > 16 * 1024 {
            return Err(SiteError(format!(
                "the proxy {proxy} sent an endless answer"
            )));
        }
    }
    if code != "200" {
        return Err(SiteError(format!(
            "the proxy {proxy} refused CONNECT {authority}: {}",
            status.trim()
        )));
    }
    Ok(stream)
}
