//! Start and stop: bind the data and admin listeners and serve until told to stop.
//!
//! [`Server::start`] compiles the gateway, binds both addresses (port 0 picks a free port,
//! which tests rely on) and serves on the current Tokio runtime. [`RunningServer::shutdown`]
//! stops accepting, lets requests in flight finish (up to a grace period) and returns.
//!
//! [`Server::start_per_core`] serves the data plane thread-per-core instead: N single-threaded
//! runtimes, each on its own thread with its own listener on the same address
//! (`SO_REUSEPORT`, so the kernel spreads new connections over them). A request then never
//! leaves the thread that accepted it, and no task is ever woken on another core; this is
//! nginx's model, and on one core it is one single-threaded runtime, the cheapest setup.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use junction_model::{Connector, Diagnostics};
use junction_runtime::telemetry::AccessLog;
use junction_runtime::telemetry::otlp::Exporter;
use junction_runtime::{Config, Gateway, SharedGateway};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::access::{Access, AccessError, install_admission};
use crate::admin::AdminPlane;
use crate::admin_router_with;
use crate::catalog::Catalog;
use crate::data::DataPlane;
use crate::listener;
use crate::tls::Certificates;
use crate::triggers::Triggers;

/// How long requests in flight may take to finish after shutdown is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The connectors and configuration do not compile; every diagnostic is attached.
    #[error("the gateway could not be built: {} error(s)", .0.errors().count())]
    Compile(Diagnostics),
    #[error("cannot listen on {addr} ({plane} plane): {source}")]
    Bind {
        addr: SocketAddr,
        plane: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The store (`[store]`) or the client settings could not be opened.
    #[error("{0}")]
    Access(#[from] AccessError),
    /// `[log] file` cannot be opened for appending.
    #[error("cannot open the access log: {0}")]
    AccessLog(#[source] std::io::Error),
    /// `[telemetry] otlp_endpoint` is set but the exporter cannot be set up.
    #[error("cannot start the trace exporter: {0}")]
    Tracer(String),
    /// `[agents]` is set but its listener cannot be set up (no store key, no authority).
    #[error("cannot start the agents listener: {0}")]
    Agents(String),
    /// `[tls]`'s files cannot be read or do not make a certificate and key.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// `[trigger.NAME]` cannot run.
    #[error("cannot start the triggers: {0}")]
    Triggers(String),
    /// A serving thread or its runtime could not be started.
    #[error("cannot start a serving thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Entry point for starting the servers.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Compiles `connectors` with `config` and serves them on `config.listen` (data plane)
    /// and `config.admin_listen` (admin plane).
    pub async fn start(
        config: &Config,
        connectors: &[Connector],
    ) -> Result<RunningServer, StartError> {
        let mut compiled = Gateway::compile(config, connectors).map_err(StartError::Compile)?;
        let access = install_admission(config, connectors, &mut compiled.gateway).await?;
        let catalog = Arc::new(Catalog::new(
            config,
            connectors.to_vec(),
            compiled.diagnostics.clone(),
        ));
        let mut running = Server::start_with_access(
            config,
            SharedGateway::new(compiled.gateway),
            access,
            catalog,
        )
        .await?;
        running.diagnostics = compiled.diagnostics;
        Ok(running)
    }

    /// Serves an already compiled gateway.
    pub async fn start_with(
        config: &Config,
        gateway: SharedGateway,
    ) -> Result<RunningServer, StartError> {
        Server::start_with_access(config, gateway, None, Arc::default()).await
    }

    /// Serves an already compiled gateway whose admission (if any) is `access`, which the
    /// admin API also serves, with what was loaded (`catalog`) for the admin API and the
    /// console.
    pub async fn start_with_access(
        config: &Config,
        gateway: SharedGateway,
        access: Option<Arc<Access>>,
        catalog: Arc<Catalog>,
    ) -> Result<RunningServer, StartError> {
        open_access_log(config, &gateway)?;
        let exporter = open_tracer(config, &gateway)?;
        let data = bind(config.listen, "data").await?;
        let admin = bind(config.admin_listen, "admin").await?;
        let data_addr = local_addr(&data, config.listen, "data")?;
        let admin_addr = local_addr(&admin, config.admin_listen, "admin")?;
        let (tls, tls_listener) = match config.listen_tls {
            Some(addr) => {
                let listener = bind(addr, "data (TLS)").await?;
                (
                    Some(local_addr(&listener, addr, "data (TLS)")?),
                    Some(listener),
                )
            }
            None => (None, None),
        };
        if let (Some(access), None) = (&access, &config.public_url) {
            access.set_data_url(format!("http://{data_addr}"));
        }
        let (stop, stopped) = watch::channel(false);
        let certificates = load_certificates(config, &stopped)?;
        let (agents_addr, agents) =
            start_agents(config, &gateway, access.as_deref(), &stopped).await?;
        let triggers = open_triggers(config, &gateway, access.as_ref(), &stopped)?;
        let plane = DataPlane {
            gateway: gateway.clone(),
            triggers: triggers.clone(),
        };
        let listening = listener::Listening::new(config, None);
        let mut tasks = vec![tokio::spawn(listener::serve(
            data,
            plane.clone(),
            listening,
            stopped.clone(),
        ))];
        if let Some(listener) = tls_listener {
            tasks.push(tokio::spawn(listener::serve(
                listener,
                plane,
                listener::Listening::new(config, certificates.clone()),
                stopped.clone(),
            )));
        }
        tasks.push(spawn_admin(
            admin,
            config,
            gateway.clone(),
            access,
            catalog,
            certificates,
            stopped,
        ));
        tasks.extend(agents);
        tasks.extend(triggers.iter().flat_map(Triggers::start));
        tracing::info!(%data_addr, %admin_addr, "listening");
        Ok(RunningServer {
            data_addr,
            tls_addr: tls,
            admin_addr,
            admin_tls: config.admin_tls(),
            agents_addr,
            gateway,
            diagnostics: Diagnostics::default(),
            stop,
            tasks,
            threads: Vec::new(),
            exporter,
        })
    }

    /// Serves an already compiled gateway thread-per-core: the data plane on `threads`
    /// single-threaded runtimes (this one and `threads - 1` new threads), each accepting on
    /// its own `SO_REUSEPORT` listener; the admin plane on this runtime.
    ///
    /// Call it on a current-thread runtime: that runtime is the first data-plane thread.
    /// With one thread this is [`Server::start_with`] on that runtime. Where `SO_REUSEPORT`
    /// does not exist (not Unix), the other threads share one listener.
    pub async fn start_per_core(
        config: &Config,
        gateway: SharedGateway,
        threads: NonZeroUsize,
    ) -> Result<RunningServer, StartError> {
        Server::start_per_core_with_access(config, gateway, threads, None, Arc::default()).await
    }

    /// [`Server::start_per_core`] with the store's `access` and the `catalog` (see
    /// [`Server::start_with_access`]).
    pub async fn start_per_core_with_access(
        config: &Config,
        gateway: SharedGateway,
        threads: NonZeroUsize,
        access: Option<Arc<Access>>,
        catalog: Arc<Catalog>,
    ) -> Result<RunningServer, StartError> {
        open_access_log(config, &gateway)?;
        let exporter = open_tracer(config, &gateway)?;
        let count = threads.get();
        let data_listeners = bind_shared(config.listen, count, "data")?;
        let tls_listeners: Vec<Option<std::net::TcpListener>> = match config.listen_tls {
            Some(addr) => bind_shared(addr, count, "data (TLS)")?
                .into_iter()
                .map(Some)
                .collect(),
            None => std::iter::repeat_with(|| None)
                .take(data_listeners.len())
                .collect(),
        };
        let admin = bind(config.admin_listen, "admin").await?;
        let (stop, stopped) = watch::channel(false);
        let certificates = load_certificates(config, &stopped)?;
        // One connection limit for each listener of the data plane, whichever thread accepts.
        let plain = listener::Listening::new(config, None);
        let secure = listener::Listening::new(config, certificates.clone());
        let triggers = open_triggers(config, &gateway, access.as_ref(), &stopped)?;

        // Every runtime is built before anything is served, so that a failure stops the
        // start. The first pair of listeners is served on this runtime.
        let mut workers = Vec::new();
        for (index, (data, tls)) in data_listeners.into_iter().zip(tls_listeners).enumerate() {
            let runtime = if index == 0 {
                None
            } else {
                Some(
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(StartError::Thread)?,
                )
            };
            workers.push((runtime, data, tls));
        }
        let mut threads = Vec::new();
        let mut data_addr = None;
        let mut tls_addr = None;
        let mut tasks = Vec::new();
        for (index, (runtime, data, tls)) in workers.into_iter().enumerate() {
            let serving = Serving {
                plane: DataPlane {
                    gateway: gateway.clone(),
                    triggers: triggers.clone(),
                },
                plain: plain.clone(),
                secure: secure.clone(),
                stopped: stopped.clone(),
            };
            let Some(runtime) = runtime else {
                let (data, tls) = register(data, tls, (config.listen, config.listen_tls))?;
                data_addr = Some(local_addr(&data, config.listen, "data")?);
                if let (Some(tls), Some(addr)) = (&tls, config.listen_tls) {
                    tls_addr = Some(local_addr(tls, addr, "data (TLS)")?);
                }
                tasks.extend(serving.spawn(data, tls));
                continue;
            };
            let (done, finished) = oneshot::channel();
            let listen = (config.listen, config.listen_tls);
            std::thread::Builder::new()
                .name(format!("junction-data-{}", index + 1))
                .spawn(move || {
                    runtime.block_on(async move {
                        let registered = register(data, tls, listen);
                        match registered {
                            Ok((data, tls)) => {
                                for task in serving.spawn(data, tls) {
                                    let _ = task.await;
                                }
                            }
                            Err(error) => {
                                tracing::error!(%error, "a data-plane thread cannot listen");
                            }
                        }
                    });
                    // Connections still open after the grace period end with the runtime.
                    drop(runtime);
                    let _ = done.send(());
                })
                .map_err(StartError::Thread)?;
            threads.push(finished);
        }
        let data_addr = data_addr.ok_or_else(|| {
            StartError::Thread(std::io::Error::other("no data-plane listener was bound"))
        })?;
        let admin_addr = local_addr(&admin, config.admin_listen, "admin")?;
        if let (Some(access), None) = (&access, &config.public_url) {
            access.set_data_url(format!("http://{data_addr}"));
        }
        let (agents_addr, agents) =
            start_agents(config, &gateway, access.as_deref(), &stopped).await?;
        tasks.push(spawn_admin(
            admin,
            config,
            gateway.clone(),
            access,
            catalog,
            certificates,
            stopped,
        ));
        tasks.extend(agents);
        tasks.extend(triggers.iter().flat_map(Triggers::start));
        tracing::info!(%data_addr, %admin_addr, threads = threads.len() + 1, "listening");
        Ok(RunningServer {
            data_addr,
            tls_addr,
            admin_addr,
            admin_tls: config.admin_tls(),
            agents_addr,
            gateway,
            diagnostics: Diagnostics::default(),
            stop,
            tasks,
            threads,
            exporter,
        })
    }
}

/// What one data-plane thread of [`Server::start_per_core`] serves: its cleartext listener
/// and, with `listen_tls`, its TLS one.
struct Serving {
    plane: DataPlane,
    plain: listener::Listening,
    secure: listener::Listening,
    stopped: watch::Receiver<bool>,
}

impl Serving {
    /// Serves both listeners on the current runtime.
    fn spawn(&self, data: TcpListener, tls: Option<TcpListener>) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![tokio::spawn(listener::serve(
            data,
            self.plane.clone(),
            self.plain.clone(),
            self.stopped.clone(),
        ))];
        if let Some(tls) = tls {
            tasks.push(tokio::spawn(listener::serve(
                tls,
                self.plane.clone(),
                self.secure.clone(),
                self.stopped.clone(),
            )));
        }
        tasks
    }
}

/// Registers a data-plane thread's listeners (bound to `listen` and `listen_tls`) with
/// the current runtime.
fn register(
    data: std::net::TcpListener,
    tls: Option<std::net::TcpListener>,
    (listen, listen_tls): (SocketAddr, Option<SocketAddr>),
) -> Result<(TcpListener, Option<TcpListener>), StartError> {
    let error = |addr, plane| {
        move |source| StartError::Bind {
            addr,
            plane,
            source,
        }
    };
    let data = TcpListener::from_std(data).map_err(error(listen, "data"))?;
    let tls = match (tls, listen_tls) {
        (Some(tls), Some(addr)) => {
            Some(TcpListener::from_std(tls).map_err(error(addr, "data (TLS)"))?)
        }
        _ => None,
    };
    Ok((data, tls))
}

/// `[tls]`'s certificate, read now (a file that does not load stops the start) and then
/// looked at every second until `stopped`.
fn load_certificates(
    config: &Config,
    stopped: &watch::Receiver<bool>,
) -> Result<Option<Arc<Certificates>>, StartError> {
    let Some(settings) = &config.tls else {
        return Ok(None);
    };
    let certificates = Arc::new(Certificates::load(settings).map_err(StartError::Tls)?);
    tokio::spawn(certificates.clone().watch(stopped.clone()));
    Ok(Some(certificates))
}

/// The triggers of `[trigger.NAME]` (docs/triggers.md), for the data plane's event
/// streams; [`Triggers::start`] polls them.
fn open_triggers(
    config: &Config,
    gateway: &SharedGateway,
    access: Option<&Arc<Access>>,
    stopped: &watch::Receiver<bool>,
) -> Result<Option<Arc<Triggers>>, StartError> {
    Triggers::new(config, gateway.clone(), access.cloned(), stopped.clone())
        .map_err(StartError::Triggers)
}

/// Starts the agents listener of `[agents]` (docs/agent.md): its certificate authority is
/// the store's, made on first use. Returns its bound address and task.
async fn start_agents(
    config: &Config,
    gateway: &SharedGateway,
    access: Option<&Access>,
    stopped: &watch::Receiver<bool>,
) -> Result<(Option<SocketAddr>, Option<JoinHandle<()>>), StartError> {
    let Some(agents) = &config.agents else {
        return Ok((None, None));
    };
    let Some(access) = access else {
        return Err(StartError::Agents("agents need `[store]`".to_owned()));
    };
    let desk = junction_agent::enroll::Desk::open(access.vault.clone(), agents.cert_days)
        .await
        .map_err(|e| StartError::Agents(e.to_string()))?;
    let listener = bind(agents.listen, "agents").await?;
    let addr = local_addr(&listener, agents.listen, "agents")?;
    tracing::info!(agents_addr = %addr, "agents listener");
    let task = tokio::spawn(crate::agents::serve(
        listener,
        Arc::new(desk),
        gateway.load().agents().clone(),
        stopped.clone(),
    ));
    Ok((Some(addr), Some(task)))
}

/// Opens `[log] access` into the gateway's metrics, unless a log is already there (a
/// gateway served again keeps its log).
fn open_access_log(config: &Config, gateway: &SharedGateway) -> Result<(), StartError> {
    let table = gateway.load();
    let metrics = table.metrics();
    if metrics.access_log().is_none()
        && let Some(log) = AccessLog::open(&config.log.access).map_err(StartError::AccessLog)?
    {
        metrics.set_access_log(log);
    }
    Ok(())
}

/// Starts the span exporter of `[telemetry] otlp_endpoint` on this runtime and hands its
/// queue to the gateway's metrics, unless the gateway exports already (a gateway served
/// again keeps its exporter).
fn open_tracer(config: &Config, gateway: &SharedGateway) -> Result<Option<Exporter>, StartError> {
    let table = gateway.load();
    let metrics = table.metrics();
    let Some(settings) = config.telemetry.exporter() else {
        return Ok(None);
    };
    if metrics.tracer().is_some() {
        return Ok(None);
    }
    let (tracer, exporter) =
        junction_runtime::telemetry::start_exporter(settings).map_err(StartError::Tracer)?;
    metrics.set_tracer(tracer);
    Ok(Some(exporter))
}

/// Binds `count` listeners to `addr`, all with `SO_REUSEPORT` when there are several. Port 0
/// binds a free port for the first, and the others join it. Returned as std listeners, to
/// be registered by the runtime that serves each.
fn bind_shared(
    addr: SocketAddr,
    count: usize,
    plane: &'static str,
) -> Result<Vec<std::net::TcpListener>, StartError> {
    let error = |source| StartError::Bind {
        addr,
        plane,
        source,
    };
    let mut listeners = Vec::with_capacity(count);
    let mut at = addr;
    for _ in 0..count.max(1) {
        let socket = if at.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(error)?;
        #[cfg(unix)]
        {
            socket.set_reuseaddr(true).map_err(error)?;
            if count > 1 {
                socket.set_reuseport(true).map_err(error)?;
            }
        }
        socket.bind(at).map_err(error)?;
        let listener = socket.listen(1024).map_err(error)?;
        at = listener.local_addr().map_err(error)?;
        let listener = listener.into_std().map_err(error)?;
        if cfg!(not(unix)) {
            // No SO_REUSEPORT: every thread accepts on clones of the one socket.
            for _ in 1..count {
                listeners.push(listener.try_clone().map_err(error)?);
            }
            listeners.push(listener);
            break;
        }
        listeners.push(listener);
    }
    Ok(listeners)
}

async fn bind(addr: SocketAddr, plane: &'static str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr,
            plane,
            source,
        })
}

fn local_addr(
    listener: &TcpListener,
    addr: SocketAddr,
    plane: &'static str,
) -> Result<SocketAddr, StartError> {
    listener.local_addr().map_err(|source| StartError::Bind {
        addr,
        plane,
        source,
    })
}

/// Serves the admin plane on `listener`, with the same connection limits as the data plane,
/// over TLS with `[tls] admin = true`.
fn spawn_admin(
    listener: TcpListener,
    config: &Config,
    gateway: SharedGateway,
    access: Option<Arc<Access>>,
    catalog: Arc<Catalog>,
    certificates: Option<Arc<Certificates>>,
    stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let router = admin_router_with(gateway, access, config.admin.token.clone(), catalog);
    let plane = AdminPlane::new(router, config.limits.max_body_bytes);
    let tls = certificates.filter(|_| config.admin_tls());
    tokio::spawn(listener::serve(
        listener,
        plane,
        listener::Listening::new(config, tls),
        stopped,
    ))
}

/// Servers running in the background of the current runtime.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound data-plane address (the real port when the config said 0).
    pub data_addr: SocketAddr,
    /// The bound TLS data-plane address, with `listen_tls`.
    pub tls_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    /// Whether the admin listener speaks TLS (`[tls] admin = true`).
    pub admin_tls: bool,
    /// The bound agents listener address, with `[agents]`.
    pub agents_addr: Option<SocketAddr>,
    /// The table in force; [`SharedGateway::swap`] replaces it while serving.
    pub gateway: SharedGateway,
    /// Warnings found while compiling.
    pub diagnostics: Diagnostics,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Data-plane threads of [`Server::start_per_core`]; each says when it has finished.
    threads: Vec<oneshot::Receiver<()>>,
    /// The span exporter, flushed once the requests have finished.
    exporter: Option<Exporter>,
}

impl RunningServer {
    /// `http://ADDR` of the data plane.
    pub fn data_url(&self) -> String {
        format!("http://{}", self.data_addr)
    }

    /// `http://ADDR` of the admin plane (`https://` with `[tls] admin = true`).
    pub fn admin_url(&self) -> String {
        let scheme = if self.admin_tls { "https" } else { "http" };
        format!("{scheme}://{}", self.admin_addr)
    }

    /// `https://ADDR` of the TLS data plane, with `listen_tls`.
    pub fn tls_url(&self) -> Option<String> {
        self.tls_addr.map(|addr| format!("https://{addr}"))
    }

    /// Stops accepting connections and waits for requests in flight, at most
    /// [`SHUTDOWN_GRACE`].
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let mut tasks = self.tasks;
        let threads = self.threads;
        let all = async {
            for task in &mut tasks {
                let _ = task.await;
            }
            for thread in threads {
                let _ = thread.await;
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
            tracing::warn!("requests still running after the grace period were cut off");
            for task in &tasks {
                task.abort();
            }
        }
        // The last requests' access log lines and spans go out before the process ends.
        if let Some(log) = self.gateway.load().metrics().access_log() {
            log.flush();
        }
        if let Some(exporter) = self.exporter {
            exporter.shutdown().await;
        }
    }

    /// Serves until Ctrl-C or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

/// Resolves on Ctrl-C, or SIGTERM on Unix.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn serves_per_core_on_one_port_and_stops() {
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        let gateway = Gateway::compile(&config, &[]).unwrap().gateway;
        let running = Server::start_per_core(
            &config,
            SharedGateway::new(gateway),
            NonZeroUsize::new(3).unwrap(),
        )
        .await
        .unwrap();
        assert_ne!(running.data_addr.port(), 0);
        // The kernel spreads connections over the three listeners; every one answers.
        for _ in 0..12 {
            let answer = get(running.data_addr, "/healthz").await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
        let answer = get(running.data_addr, "/connectors/none/x").await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
        let addr = running.data_addr;
        tokio::time::timeout(Duration::from_secs(5), running.shutdown())
            .await
            .unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
