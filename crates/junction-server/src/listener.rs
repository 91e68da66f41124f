//! Accepting connections, the same for every listener: TLS when the listener has a
//! certificate, HTTP/1.1 or HTTP/2 (ALPN, or prior knowledge in cleartext), how long a
//! client may take to send its request head and body, how long an idle connection stays
//! open, how many connections a listener holds, and the checks of a request head before a
//! plane sees it.
//!
//! Each connection is watched from accept to close. With nothing in flight it must finish
//! its TLS handshake and send a complete request head within `header_timeout` of being
//! accepted, and after a response its next one within `idle_timeout`; otherwise it is
//! closed (this covers a client that never sends a byte, and an HTTP/2 connection that
//! sends only its preface). A kept-alive connection's next request head must be complete
//! within `idle_timeout` of the previous response (hyper's header-read timer, which starts
//! as it waits for the next head, is set to that). A request body must arrive whole within `body_timeout` of its head
//! ([`ClientBody`]; the client gets 408 and the connection closes). HTTP/2 connections are
//! held to `[http2]` (streams, head size, resets: rapid reset closes the connection).
//! Past `max_connections` a new connection is answered `503 overloaded` and closed; the
//! connections already open go on.
//!
//! Before a request reaches its plane, its head must be unambiguous (see [`check_head`]):
//! one valid `Host` (HTTP/1.1 needs it), no transfer coding but a single `chunked`.
//! Every answer leaves as HTTP/1.1 (or HTTP/2), whatever version a backend spoke.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, Version, header};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use junction_runtime::config::listeners::Http2Config;
use junction_runtime::{BoxError, ClientBody, Config, Error, ErrorKind};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, TryAcquireError, watch};

use crate::problem;
use crate::server::SHUTDOWN_GRACE;
use crate::tls::{self, Certificates, ClientIdentity};

/// What a listener allows each connection (`[limits]`, `[http2]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Allowance {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub http2: Http2Config,
}

impl Allowance {
    pub(crate) fn of(config: &Config) -> Self {
        Allowance {
            header_timeout: config.limits.header_timeout,
            body_timeout: config.limits.body_timeout,
            idle_timeout: config.limits.idle_timeout,
            http2: config.http2,
        }
    }

    /// The HTTP/1.1 and HTTP/2 settings of every connection.
    fn builder(&self) -> Builder<TokioExecutor> {
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // hyper's timer runs from the moment it waits for a head, idle time included:
            // at `header_timeout` alone it would close kept-alive connections before their
            // `idle_timeout` (the watchdog holds the first head to `header_timeout`).
            .header_read_timeout(self.header_timeout.max(self.idle_timeout))
            .max_buf_size(MAX_HTTP1_BUFFER);
        let http2 = self.http2;
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(http2.max_concurrent_streams)
            .max_header_list_size(http2.max_header_list_size)
            .max_pending_accept_reset_streams(http2.max_pending_resets)
            .max_local_error_reset_streams(http2.max_error_resets)
            .keep_alive_interval(http2.keep_alive_interval)
            .keep_alive_timeout(http2.keep_alive_interval);
        builder
    }
}

/// The largest HTTP/1.1 read buffer of a connection: a request head must fit in it.
const MAX_HTTP1_BUFFER: usize = 64 * 1024;

/// Connections answered `503 overloaded` at once, past `max_connections`; beyond them new
/// connections are closed unanswered.
const MAX_REFUSING: usize = 256;

/// How long a refused connection is kept for its answer.
const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// How a listener takes connections: what each may do, the slots they share
/// (`limits.max_connections`, shared by every thread that accepts for the plane), and the
/// certificate when the listener speaks TLS.
#[derive(Debug, Clone)]
pub(crate) struct Listening {
    pub allowance: Allowance,
    pub slots: Arc<Semaphore>,
    pub tls: Option<Arc<Certificates>>,
}

impl Listening {
    pub(crate) fn new(config: &Config, tls: Option<Arc<Certificates>>) -> Self {
        Listening {
            allowance: Allowance::of(config),
            slots: Arc::new(Semaphore::new(
                usize::try_from(config.limits.max_connections).unwrap_or(usize::MAX),
            )),
            tls,
        }
    }
}

/// What a listener serves: the data plane or the admin plane.
pub(crate) trait Plane: Clone + Send + Sync + 'static {
    type Body: Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static;

    /// Answers one request whose head passed [`check_head`].
    fn call(
        &self,
        request: Request<ClientBody<Incoming>>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Self::Body>> + Send;

    /// A response Junction wrote (a problem), as this plane's response.
    fn local(response: axum::response::Response) -> Response<Self::Body>;
}

/// Accepts connections on `listener` and serves `plane` on each, until `stopped`; then
/// waits for the requests in flight, at most [`SHUTDOWN_GRACE`]. Past `max_connections`
/// a new connection is answered `503 overloaded` and closed ([`refuse`]).
pub(crate) async fn serve<P: Plane>(
    listener: TcpListener,
    plane: P,
    listening: Listening,
    mut stopped: watch::Receiver<bool>,
) {
    let builder = Arc::new(listening.allowance.builder());
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let permit = match listening.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => {
                if let Ok(refusal) = refusing.clone().try_acquire_owned() {
                    let (builder, tls) = (builder.clone(), listening.tls.clone());
                    tokio::spawn(async move {
                        let _refusal = refusal;
                        refuse(stream, peer, &builder, tls).await;
                    });
                }
                continue;
            }
        };
        let connection = Connection {
            plane: plane.clone(),
            peer,
            allowance: listening.allowance,
            builder: builder.clone(),
            graceful: graceful.watcher(),
        };
        let tls = listening.tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => connection.run(stream, None).await,
                Some(certificates) => {
                    let limit = connection.allowance.header_timeout;
                    if let Some(stream) = handshake(&certificates, stream, peer, limit).await {
                        let identity = tls::client_identity(stream.get_ref().1.peer_certificates());
                        connection.run(stream, identity).await;
                    }
                }
            }
        });
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after the grace period were cut off");
    }
}

/// The TLS handshake of an accepted connection, with the certificate in force, within
/// `limit`; `None` (logged at debug) when it fails or takes longer.
async fn handshake(
    certificates: &Certificates,
    stream: TcpStream,
    peer: SocketAddr,
    limit: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(certificates.current());
    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake too slow");
            None
        }
    }
}

/// One accepted connection and what serving it takes.
struct Connection<P> {
    plane: P,
    peer: SocketAddr,
    allowance: Allowance,
    builder: Arc<Builder<TokioExecutor>>,
    graceful: Watcher,
}

impl<P: Plane> Connection<P> {
    /// Serves requests on `io` until the client or the watchdog closes it; every request
    /// carries the client's certificate `identity`, when it showed one.
    async fn run<I>(self, io: I, identity: Option<ClientIdentity>)
    where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let Connection {
            plane,
            peer,
            allowance,
            builder,
            graceful,
        } = self;
        let watch = Arc::new(Watch::new());
        let service = {
            let watch = watch.clone();
            service_fn(move |mut request: Request<Incoming>| {
                let plane = plane.clone();
                let in_flight = watch.begin();
                if let Some(identity) = &identity {
                    request.extensions_mut().insert(identity.clone());
                }
                // Boxed: hyper keeps a slot of the future's size for the connection's
                // whole life; a box only as long as a request is in flight keeps idle
                // connections small.
                Box::pin(async move {
                    Ok::<_, Infallible>(answer(&plane, request, peer, allowance, in_flight).await)
                })
            })
        };
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::select! {
            ended = connection => {
                if let Err(error) = ended {
                    tracing::debug!(%error, "connection ended with an error");
                }
            }
            () = watch.expired(allowance) => {
                tracing::debug!(%peer, "closed a connection that sent no request in time");
            }
        }
    }
}

/// Answers every request of a connection past `max_connections` with `503 overloaded`
/// (`Connection: close`, `Retry-After: 1`), for at most [`REFUSAL_TIME`].
async fn refuse(
    stream: TcpStream,
    peer: SocketAddr,
    builder: &Builder<TokioExecutor>,
    tls: Option<Arc<Certificates>>,
) {
    tracing::debug!(%peer, "refused a connection: the listener holds max_connections");
    let service = service_fn(|request: Request<Incoming>| {
        let error = Error::new(
            ErrorKind::Overloaded,
            "the gateway holds as many client connections as it may (`limits.max_connections`); try again shortly",
        )
        .with_retry_after(Duration::from_secs(1));
        let mut response = problem::response(
            &error,
            request.uri().path(),
            &problem::request_id(request.headers().get(problem::REQUEST_ID)),
        );
        if request.version() != Version::HTTP_2 {
            response
                .headers_mut()
                .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
        }
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let served = async {
        match tls {
            None => {
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
            Some(certificates) => {
                if let Some(stream) = handshake(&certificates, stream, peer, REFUSAL_TIME).await {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_TIME, served).await;
}

/// One request: its head checked, its body under the body timeout, its answer as HTTP/1.1
/// and holding the connection busy until the answer's body is done.
async fn answer<P: Plane>(
    plane: &P,
    request: Request<Incoming>,
    peer: SocketAddr,
    allowance: Allowance,
    in_flight: InFlight,
) -> Response<Tracked<P::Body>> {
    let version = request.version();
    let checked = check_head(version, request.headers());
    let refused = checked.is_err();
    let mut response = match checked {
        Ok(()) => {
            let request = request.map(|body| ClientBody::new(body, allowance.body_timeout));
            plane.call(request, peer).await
        }
        Err(error) => P::local(problem::response(
            &error,
            request.uri().path(),
            &problem::request_id(request.headers().get(problem::REQUEST_ID)),
        )),
    };
    // An answer that refuses the request head, or leaves the body unread (too large, too
    // slow), ends an HTTP/1 connection: what follows on it cannot be trusted to be a
    // request.
    let unread = matches!(response.status().as_u16(), 408 | 413);
    if version != Version::HTTP_2 && (refused || unread) {
        response
            .headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    // A backend's HTTP/1.0 answer must not downgrade the client's connection.
    *response.version_mut() = Version::HTTP_11;
    response.map(|body| Tracked {
        body,
        _in_flight: in_flight,
    })
}

/// Refuses a request head that different parsers could read differently: without `Host`
/// in HTTP/1.1, with more than one `Host` or one that is not a host and port, or with a
/// transfer coding other than a single `chunked` (a body framed twice).
pub(crate) fn check_head(version: Version, headers: &HeaderMap) -> Result<(), Error> {
    let refuse = |message: &str| Err(Error::new(ErrorKind::InvalidRequest, message.to_owned()));
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if version == Version::HTTP_11 => {
            return refuse("an HTTP/1.1 request must have a Host header");
        }
        (Some(_), Some(_)) => return refuse("the request has more than one Host header"),
        (Some(host), None) if !junction_runtime::valid_host(host.as_bytes()) => {
            return refuse("the Host header is not a host name or address with an optional port");
        }
        _ => {}
    }
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.is_empty());
    match (codings.next(), codings.next()) {
        (None, _) => Ok(()),
        (Some(coding), None) if coding.eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => refuse("the only transfer coding accepted is a single `chunked`"),
    }
}

/// What the watchdog of one connection reads: when it was accepted, whether a request is
/// in flight, and when the last one ended. Requests only update it; the watchdog looks at
/// it when its own timer fires (see [`Watch::expired`]), so a request costs no wake-up.
#[derive(Debug)]
struct Watch {
    accepted: Instant,
    in_flight: AtomicU32,
    served: AtomicBool,
    /// When the last request ended, in ms after `accepted`.
    idle_since: AtomicU64,
}

impl Watch {
    fn new() -> Self {
        Watch {
            accepted: Instant::now(),
            in_flight: AtomicU32::new(0),
            served: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.store(true, Ordering::Release);
        InFlight(self.clone())
    }

    /// When the connection must be closed if nothing happens before; `None` while a
    /// request is in flight.
    fn deadline(&self, allowance: Allowance) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if !self.served.load(Ordering::Acquire) {
            return Some(self.accepted + allowance.header_timeout);
        }
        let idle = Duration::from_millis(self.idle_since.load(Ordering::Acquire));
        Some(self.accepted + idle + allowance.idle_timeout)
    }

    /// Resolves once the connection has been quiet for longer than it may be. It looks at
    /// the state at least every `min(header_timeout, idle_timeout)`: a request that ends
    /// after a look leaves a deadline at least that far away, which the next look finds in
    /// time, so the close is on time without requests waking the watchdog.
    async fn expired(&self, allowance: Allowance) {
        let tick = allowance.header_timeout.min(allowance.idle_timeout);
        loop {
            let now = Instant::now();
            let at = match self.deadline(allowance) {
                // Busy: look again later.
                None => now + tick,
                Some(at) if at <= now => return,
                Some(at) => at.min(now + tick),
            };
            tokio::time::sleep_until(at.into()).await;
        }
    }
}

/// A request in flight on a watched connection; dropped when its answer's body is done.
#[derive(Debug)]
struct InFlight(Arc<Watch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let watch = &self.0;
        let idle = u64::try_from(watch.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        watch.idle_since.store(idle, Ordering::Release);
        watch.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it is dropped.
#[derive(Debug)]
pub(crate) struct Tracked<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use http::HeaderValue;

    use super::*;

    #[test]
    fn heads_with_two_hosts_or_two_codings_are_refused() {
        let mut headers = HeaderMap::new();
        assert!(check_head(Version::HTTP_11, &headers).is_err());
        assert!(check_head(Version::HTTP_10, &headers).is_ok());
        headers.insert(header::HOST, HeaderValue::from_static("gw:8080"));
        assert!(check_head(Version::HTTP_11, &headers).is_ok());
        headers.append(header::HOST, HeaderValue::from_static("other"));
        assert!(check_head(Version::HTTP_11, &headers).is_err());
        headers.insert(header::HOST, HeaderValue::from_static("gw"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("Chunked"),
        );
        assert!(check_head(Version::HTTP_11, &headers).is_ok());
        headers.append(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert!(check_head(Version::HTTP_11, &headers).is_err());
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("gzip, chunked"),
        );
        assert!(check_head(Version::HTTP_11, &headers).is_err());
    }
}
