//! The upstream client and its connection pools: one small pool per worker thread for
//! plain-HTTP backends, hyper-util's pooled client for HTTPS.
//!
//! A plain-HTTP backend (the usual case behind a gateway: the same host or network) is
//! called over HTTP/1.1 connections that a [`Shard`] keeps per backend address. Each
//! thread that calls uses its own shard, so on a thread-per-core server no lock is ever
//! contended and a request never waits for a task on another core. A request takes the
//! oldest idle connection that is ready (one whose last response has been read), or opens
//! one; the connection goes back to the shard as soon as the response head has arrived and
//! is handed out again once its body has been read. HTTPS backends go through hyper-util's
//! client (rustls, HTTP/2 by ALPN), whose per-request overhead matters less next to TLS.
//!
//! The lean path behaves like hyper-util's client, which it replaces on the hot path:
//! `Host` is added from the URI when absent (the host, and the port when it is not 80),
//! the request target is sent in origin form, connections get `TCP_NODELAY`, names are
//! resolved with the system resolver and both address families are tried (the other one
//! 300 ms after the first, as Happy Eyeballs does) within the connect timeout, idle
//! connections close after 90 s, and a request that never left because its pooled
//! connection had just closed is sent once more on a new connection.

pub use junction_traffic::status::PoolSnapshot;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::BuildHasherDefault;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Method, Request, Response, Uri, header};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::RequestBody;
use crate::route::FastHasher;

/// How long a connection may stay idle in a pool.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How often idle connections are looked at, to close those past [`IDLE_TIMEOUT`].
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// Head start of the first address family over the other when connecting.
const HAPPY_EYEBALLS: Duration = Duration::from_millis(300);
/// At most this many pooled connections are looked at to find a ready one.
const SCAN_LIMIT: usize = 64;

/// hyper-util's pooled client, for HTTPS backends.
pub(crate) type TlsClient = Client<HttpsConnector<HttpConnector>, RequestBody>;

/// The upstream client. Cheap to clone; clones share the pools.
#[derive(Clone)]
pub(crate) struct HttpClient(Arc<Shared>);

struct Shared {
    connect_timeout: Duration,
    tls: TlsClient,
    shards: Box<[Mutex<Shard>]>,
    /// Whether the task that closes expired idle connections has been started.
    sweeping: AtomicBool,
    /// Plain-HTTP connections opened, and those of them that have ended.
    opened: AtomicU64,
    closed: AtomicU64,
    /// Requests sent through hyper-util's client (HTTPS).
    tls_requests: AtomicU64,
}

/// The idle connections of one thread (or a few, when there are more threads than shards),
/// by backend address as written in the URI (`Host:port`; spellings that differ only in
/// case get separate pools, which is harmless).
#[derive(Default)]
struct Shard {
    backends: HashMap<Box<str>, Backend, BuildHasherDefault<FastHasher>>,
    /// Requests this shard sent on a pooled connection (counted under its lock, which the
    /// checkout takes anyway).
    reused: u64,
}

struct Backend {
    /// The `Host` header for requests that come without one.
    host: HeaderValue,
    /// Oldest first.
    idle: VecDeque<Pooled>,
}

struct Pooled {
    sender: SendRequest<RequestBody>,
    /// When it went back to the pool.
    since: Instant,
}

/// Why an upstream exchange failed.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// From hyper-util's client (HTTPS backends).
    Tls(hyper_util::client::legacy::Error),
    /// No connection could be opened (including the connect timeout).
    Connect(std::io::Error),
    /// The HTTP/1.1 handshake on a new connection failed.
    Handshake(hyper::Error),
    /// The exchange failed on an open connection.
    Send(hyper::Error),
    /// The connector goes through agent pool `.0`, and no agent of it is connected.
    NoAgent(String),
    /// The agent's connection ended before the answer came (the agent stopped or was cut).
    AgentLost(hyper::Error),
    /// The agent answered itself: its allowlist refused the request (`forbidden`), or it
    /// could not reach the backend.
    AgentAnswered { forbidden: bool, detail: String },
}

impl ClientError {
    /// Whether the connection could not be set up (as opposed to an exchange that failed).
    pub(crate) fn is_connect(&self) -> bool {
        match self {
            ClientError::Tls(error) => error.is_connect(),
            ClientError::Connect(_) | ClientError::Handshake(_) | ClientError::NoAgent(_) => true,
            ClientError::AgentAnswered { forbidden, .. } => !forbidden,
            ClientError::Send(_) | ClientError::AgentLost(_) => false,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Tls(error) => write!(f, "{error}"),
            ClientError::Connect(error) => write!(f, "cannot connect: {error}"),
            ClientError::Handshake(error) => write!(f, "connection set-up failed: {error}"),
            ClientError::Send(error) => write!(f, "request failed: {error}"),
            ClientError::NoAgent(pool) => write!(f, "no agent of pool '{pool}' is connected"),
            ClientError::AgentLost(error) => write!(f, "the agent's connection ended: {error}"),
            ClientError::AgentAnswered { detail, .. } => f.write_str(detail),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Tls(error) => Some(error),
            ClientError::Connect(error) => Some(error),
            ClientError::Handshake(error)
            | ClientError::Send(error)
            | ClientError::AgentLost(error) => Some(error),
            ClientError::NoAgent(_) | ClientError::AgentAnswered { .. } => None,
        }
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("connect_timeout", &self.0.connect_timeout)
            .field("shards", &self.0.shards.len())
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// This thread's shard number, given out in the order threads first call a backend.
    static THREAD_SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // Nothing panics while holding it; if something did, the pool is still consistent.
    shard
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl HttpClient {
    /// A client opening connections within `connect_timeout`, with `tls` for HTTPS.
    pub(crate) fn new(connect_timeout: Duration, tls: TlsClient) -> Self {
        // Two shards per CPU: threads beyond that share, which is correct, only less private.
        let count = std::thread::available_parallelism().map_or(2, |n| n.get() * 2);
        HttpClient(Arc::new(Shared {
            connect_timeout,
            tls,
            shards: (0..count).map(|_| Mutex::default()).collect(),
            sweeping: AtomicBool::new(false),
            opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            tls_requests: AtomicU64::new(0),
        }))
    }

    /// The pools' figures now.
    pub(crate) fn snapshot(&self) -> PoolSnapshot {
        let mut snapshot = PoolSnapshot {
            opened: self.0.opened.load(Ordering::Relaxed),
            tls_requests: self.0.tls_requests.load(Ordering::Relaxed),
            ..PoolSnapshot::default()
        };
        let closed = self.0.closed.load(Ordering::Relaxed);
        snapshot.open = snapshot.opened.saturating_sub(closed);
        for shard in &self.0.shards {
            let shard = lock(shard);
            snapshot.reused += shard.reused;
            let idle: usize = shard.backends.values().map(|b| b.idle.len()).sum();
            snapshot.idle += idle as u64;
        }
        snapshot.idle = snapshot.idle.min(snapshot.open);
        snapshot
    }

    /// Sends `request` (absolute URI) and returns the response head with its streamed body.
    pub(crate) async fn request(
        &self,
        mut request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, ClientError> {
        let authority = match (request.uri().scheme(), request.uri().authority()) {
            (Some(scheme), Some(authority))
                if *scheme == Scheme::HTTP && request.method() != Method::CONNECT =>
            {
                authority.clone()
            }
            _ => {
                self.0.tls_requests.fetch_add(1, Ordering::Relaxed);
                return self.0.tls.request(request).await.map_err(ClientError::Tls);
            }
        };
        let shard = self.shard();
        let (pooled, host) = self.checkout(shard, &authority);
        if !request.headers().contains_key(header::HOST) {
            request.headers_mut().insert(header::HOST, host);
        }
        origin_form(request.uri_mut());

        let reused = pooled.is_some();
        let mut sender = match pooled {
            Some(sender) => sender,
            None => self.connect(&authority).await?,
        };
        match sender.try_send_request(request).await {
            Ok(response) => {
                self.put(shard, authority, sender);
                Ok(response)
            }
            Err(mut error) => match error.take_message() {
                // The request never left: the pooled connection closed in the meantime.
                Some(request) if reused => {
                    drop(sender);
                    let mut fresh = self.connect(&authority).await?;
                    let response = fresh
                        .send_request(request)
                        .await
                        .map_err(ClientError::Send)?;
                    self.put(shard, authority, fresh);
                    Ok(response)
                }
                _ => Err(ClientError::Send(error.into_error())),
            },
        }
    }

    fn shard(&self) -> &Mutex<Shard> {
        let index = THREAD_SHARD.with(|n| *n) % self.0.shards.len().max(1);
        // `new` makes at least one shard; an empty slice would only mean no pooling.
        static NONE: Mutex<Shard> = Mutex::new(Shard {
            backends: HashMap::with_hasher(BuildHasherDefault::new()),
            reused: 0,
        });
        self.0.shards.get(index).unwrap_or(&NONE)
    }

    /// The oldest idle connection to `authority` that is ready, if any, and the `Host`
    /// header for it. Closed and expired connections met on the way are dropped.
    fn checkout(
        &self,
        shard: &Mutex<Shard>,
        authority: &Authority,
    ) -> (Option<SendRequest<RequestBody>>, HeaderValue) {
        let mut shard = lock(shard);
        let backend = match shard.backends.get_mut(authority.as_str()) {
            Some(backend) => backend,
            None => shard
                .backends
                .entry(authority.as_str().into())
                .or_insert_with(|| Backend {
                    host: host_header(authority),
                    idle: VecDeque::new(),
                }),
        };
        let host = backend.host.clone();
        let mut now = None;
        let mut at = 0;
        let mut looked = 0;
        while at < backend.idle.len() && looked < SCAN_LIMIT {
            looked += 1;
            let Some(pooled) = backend.idle.get(at) else {
                break;
            };
            if pooled.sender.is_closed() {
                backend.idle.remove(at);
                continue;
            }
            if !pooled.sender.is_ready() {
                // Its last response body is still being read.
                at += 1;
                continue;
            }
            let now = *now.get_or_insert_with(Instant::now);
            let expired = now.saturating_duration_since(pooled.since) > IDLE_TIMEOUT;
            let Some(pooled) = backend.idle.remove(at) else {
                break;
            };
            if !expired {
                shard.reused += 1;
                return (Some(pooled.sender), host);
            }
        }
        (None, host)
    }

    fn put(&self, shard: &Mutex<Shard>, authority: Authority, sender: SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
        let pooled = Pooled {
            sender,
            since: Instant::now(),
        };
        {
            let mut shard = lock(shard);
            match shard.backends.get_mut(authority.as_str()) {
                Some(backend) => backend.idle.push_back(pooled),
                None => {
                    let host = host_header(&authority);
                    let idle = VecDeque::from([pooled]);
                    let key = authority.as_str().into();
                    shard.backends.insert(key, Backend { host, idle });
                }
            }
        }
        if !self.0.sweeping.swap(true, Ordering::Relaxed) {
            tokio::spawn(sweep(Arc::downgrade(&self.0)));
        }
    }

    async fn connect(
        &self,
        authority: &Authority,
    ) -> Result<SendRequest<RequestBody>, ClientError> {
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = authority.port_u16().unwrap_or(80);
        let stream = tokio::time::timeout(self.0.connect_timeout, open(host, port))
            .await
            .map_err(|_| {
                ClientError::Connect(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                ))
            })?
            .map_err(ClientError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(ClientError::Handshake)?;
        self.0.opened.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
            if let Some(shared) = shared.upgrade() {
                shared.closed.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(sender)
    }
}

/// Closes idle connections past [`IDLE_TIMEOUT`] and forgets closed ones, until the client
/// is dropped.
async fn sweep(shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        for shard in &shared.shards {
            let mut shard = lock(shard);
            for backend in shard.backends.values_mut() {
                backend.idle.retain(|pooled| {
                    let expired = pooled.sender.is_ready()
                        && now.saturating_duration_since(pooled.since) > IDLE_TIMEOUT;
                    !(expired || pooled.sender.is_closed())
                });
            }
            shard.backends.retain(|_, backend| !backend.idle.is_empty());
        }
    }
}

/// `Host` as hyper-util writes it: the host, and the port unless it is 80.
fn host_header(authority: &Authority) -> HeaderValue {
    let text = match authority.port_u16() {
        Some(port) if port != 80 => format!("{}:{port}", authority.host()),
        _ => authority.host().to_owned(),
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("localhost"))
}

/// Replaces an absolute URI by its path and query, as HTTP/1.1 sends it to an origin.
fn origin_form(uri: &mut Uri) {
    let origin = match uri.path_and_query() {
        Some(path) if path.as_str() != "/" => {
            let mut parts = http::uri::Parts::default();
            parts.path_and_query = Some(path.clone());
            Uri::from_parts(parts).unwrap_or_default()
        }
        _ => Uri::default(),
    };
    *uri = origin;
}

/// Connects to `host:port`: an IP address directly, a name through the system resolver.
/// Addresses of the first family are tried in turn; those of the other family start
/// [`HAPPY_EYEBALLS`] later, and the first connection made wins.
async fn open(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port)).await?.collect(),
    };
    let first_v6 = addresses.first().is_some_and(SocketAddr::is_ipv6);
    let (preferred, other): (Vec<_>, Vec<_>) =
        addresses.into_iter().partition(|a| a.is_ipv6() == first_v6);
    if other.is_empty() {
        return in_turn(preferred).await;
    }
    let preferred = in_turn(preferred);
    let other = async {
        tokio::time::sleep(HAPPY_EYEBALLS).await;
        in_turn(other).await
    };
    tokio::pin!(preferred, other);
    tokio::select! {
        biased;
        first = &mut preferred => match first {
            Ok(stream) => Ok(stream),
            Err(_) => other.await,
        },
        second = &mut other => match second {
            Ok(stream) => Ok(stream),
            Err(_) => preferred.await,
        },
    }
}

async fn in_turn(addresses: Vec<SocketAddr>) -> std::io::Result<TcpStream> {
    let mut last = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address")
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;

    use super::*;

    /// A backend answering `METHOD TARGET host=HOST`, closing every connection after one
    /// response when `close`; counts the connections it accepted.
    async fn backend(close: bool, delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let service = service_fn(move |request: Request<Incoming>| async move {
                    tokio::time::sleep(delay).await;
                    let host = request.headers().get(header::HOST).cloned();
                    let text = format!(
                        "{} {} host={}",
                        request.method(),
                        request.uri(),
                        host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("-")
                    );
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .keep_alive(!close)
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (addr, accepted)
    }

    fn client() -> HttpClient {
        crate::upstream::client(Duration::from_secs(2)).unwrap()
    }

    async fn get(client: &HttpClient, url: &str) -> Result<String, ClientError> {
        let request = Request::get(url).body(RequestBody::Empty).unwrap();
        let response = client.request(request).await?;
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Ok(String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn reuses_a_connection_and_sends_origin_form_with_host() {
        let (addr, accepted) = backend(false, Duration::ZERO).await;
        let client = client();
        for _ in 0..5 {
            let answer = get(&client, &format!("http://{addr}/a/b?c=1"))
                .await
                .unwrap();
            assert_eq!(answer, format!("GET /a/b?c=1 host={addr}"));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_get_their_own_connections_then_share_them() {
        let (addr, accepted) = backend(false, Duration::from_millis(50)).await;
        let client = client();
        let url = format!("http://{addr}/x");
        let (a, b, c) = tokio::join!(get(&client, &url), get(&client, &url), get(&client, &url));
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        for _ in 0..4 {
            get(&client, &url).await.unwrap();
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn connections_the_backend_closes_are_replaced() {
        let (addr, accepted) = backend(true, Duration::ZERO).await;
        let client = client();
        for _ in 0..3 {
            get(&client, &format!("http://{addr}/")).await.unwrap();
            // Let the connection task see the close.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let error = get(&client(), &format!("http://{addr}/"))
            .await
            .unwrap_err();
        assert!(error.is_connect(), "{error}");
        assert!(matches!(error, ClientError::Connect(_)), "{error:?}");
    }

    #[test]
    fn host_header_names_the_port_unless_it_is_80() {
        let host = |a: &str| host_header(&a.parse().unwrap());
        assert_eq!(host("example.com"), "example.com");
        assert_eq!(host("example.com:80"), "example.com");
        assert_eq!(host("example.com:8080"), "example.com:8080");
        assert_eq!(host("user:pw@example.com:81"), "example.com:81");
        assert_eq!(host("[::1]:8080"), "[::1]:8080");
    }

    #[test]
    fn origin_form_keeps_path_and_query() {
        let mut uri: Uri = "http://h:1/a/b?c=d".parse().unwrap();
        origin_form(&mut uri);
        assert_eq!(uri, "/a/b?c=d");
        let mut uri: Uri = "http://h:1".parse().unwrap();
        origin_form(&mut uri);
        assert_eq!(uri, "/");
    }
}
