//! Start and stop: bind the data and admin listeners and serve until told to stop.
//!
//! [`Server::start`] compiles the gateway, binds both addresses (port 0 picks a free port,
//! which tests rely on) and serves on the current Tokio runtime. [`RunningServer::shutdown`]
//! stops accepting, lets requests in flight finish (up to a grace period) and returns.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt;
use junction_model::{Connector, Diagnostics};
use junction_runtime::{Config, Gateway, SharedGateway};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use std::convert::Infallible;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;

use crate::admin_router;
use crate::data::serve_request;

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
        let compiled = Gateway::compile(config, connectors).map_err(StartError::Compile)?;
        let mut running = Server::start_with(config, SharedGateway::new(compiled.gateway)).await?;
        running.diagnostics = compiled.diagnostics;
        Ok(running)
    }

    /// Serves an already compiled gateway.
    pub async fn start_with(
        config: &Config,
        gateway: SharedGateway,
    ) -> Result<RunningServer, StartError> {
        let data = bind(config.listen, "data").await?;
        let admin = bind(config.admin_listen, "admin").await?;
        let data_addr = local_addr(&data, config.listen, "data")?;
        let admin_addr = local_addr(&admin, config.admin_listen, "admin")?;
        let (stop, stopped) = watch::channel(false);
        let tasks = vec![
            spawn_data(data, gateway.clone(), stopped.clone()),
            spawn(admin, admin_router(gateway.clone()), stopped),
        ];
        tracing::info!(%data_addr, %admin_addr, "listening");
        Ok(RunningServer {
            data_addr,
            admin_addr,
            gateway,
            diagnostics: Diagnostics::default(),
            stop,
            tasks,
        })
    }
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

fn spawn(
    listener: TcpListener,
    router: Router,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "server stopped with an error");
        }
    })
}

/// Serves the data plane: an accept loop running [`serve_request`] as a plain hyper
/// service over HTTP/1.1 and HTTP/2, without a router in between.
fn spawn_data(
    listener: TcpListener,
    gateway: SharedGateway,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        // A client gets 30 s to send its request headers (hyper's default, once it has a timer).
        builder.http1().timer(TokioTimer::new());
        let graceful = GracefulShutdown::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stopped.wait_for(|stop| *stop) => break,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let gateway = gateway.clone();
            let service = service_fn(move |request: http::Request<Incoming>| {
                let gateway = gateway.clone();
                async move { Ok::<_, Infallible>(serve_request(&gateway, request).await) }
            });
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(error = %error, "connection ended with an error");
                }
            });
        }
        graceful.shutdown().await;
    })
}

/// Servers running in the background of the current runtime.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound data-plane address (the real port when the config said 0).
    pub data_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The table in force; [`SharedGateway::swap`] replaces it while serving.
    pub gateway: SharedGateway,
    /// Warnings found while compiling.
    pub diagnostics: Diagnostics,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// `http://ADDR` of the data plane.
    pub fn data_url(&self) -> String {
        format!("http://{}", self.data_addr)
    }

    /// `http://ADDR` of the admin plane.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    /// Stops accepting connections and waits for requests in flight, at most
    /// [`SHUTDOWN_GRACE`].
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let mut tasks = self.tasks;
        let all = async {
            for task in &mut tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
            tracing::warn!("requests still running after the grace period were cut off");
            for task in &tasks {
                task.abort();
            }
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
