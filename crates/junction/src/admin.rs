//! `junction cache …` and `junction traffic`: commands that talk to a running gateway's
//! admin listener.
//!
//! The address is `--admin` (an `IP:PORT` or an `http://` URL), else `admin_listen` of
//! `--config DIR/junction.toml`, else the default `127.0.0.1:9090`. The answer is printed
//! as JSON; a problem answer is printed to stderr and the command exits 1.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use junction_runtime::Config;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// Where the admin listener is.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The admin listener: `IP:PORT` or `http://HOST:PORT`. Default: `admin_listen` of
    /// `--config`, else 127.0.0.1:9090.
    #[arg(long, value_name = "ADDR", env = "JUNCTION_ADMIN")]
    admin: Option<String>,
    /// A configuration directory whose `admin_listen` to use.
    #[arg(long, value_name = "DIR")]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum CacheCommand {
    /// Remove cache entries: of a connector, of one of its operations, of a view, or by key
    /// prefix.
    Purge(PurgeArgs),
}

#[derive(Debug, clap::Args)]
pub struct PurgeArgs {
    /// Purge this connector's entries.
    #[arg(long)]
    connector: Option<String>,
    /// Purge only this operation's entries (by operationId; needs --connector).
    #[arg(long, requires = "connector")]
    operation: Option<String>,
    /// Purge this view's entries (whole answers of `/views/NAME`; a connector's purge
    /// leaves them).
    #[arg(long, value_name = "NAME", conflicts_with = "connector")]
    view: Option<String>,
    /// Purge entries whose key starts with this text (after the connector's, operation's
    /// or view's part when those are given), e.g. `path.petId=42` or `input.employee=e1`.
    #[arg(long)]
    prefix: Option<String>,
    #[command(flatten)]
    target: Target,
}

pub fn cache(command: CacheCommand) -> anyhow::Result<ExitCode> {
    match command {
        CacheCommand::Purge(args) => {
            if args.connector.is_none() && args.view.is_none() && args.prefix.is_none() {
                bail!(
                    "name what to purge: --connector NAME [--operation ID], --view NAME, and/or --prefix TEXT"
                );
            }
            let mut query = Vec::new();
            for (name, value) in [
                ("connector", &args.connector),
                ("operation", &args.operation),
                ("view", &args.view),
                ("prefix", &args.prefix),
            ] {
                if let Some(value) = value {
                    query.push(format!(
                        "{name}={}",
                        utf8_percent_encode(value, NON_ALPHANUMERIC)
                    ));
                }
            }
            let path = format!("/api/v1/cache?{}", query.join("&"));
            call(&args.target, http::Method::DELETE, &path)
        }
    }
}

/// `junction traffic`: the gateway's cache, limit, breaker and retry counters.
pub fn traffic(target: Target) -> anyhow::Result<ExitCode> {
    call(&target, http::Method::GET, "/api/v1/traffic")
}

fn call(target: &Target, method: http::Method, path: &str) -> anyhow::Result<ExitCode> {
    let authority = authority(target)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let response = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), send(&authority, method, path))
            .await
            .map_err(|_| anyhow::anyhow!("the admin listener at {authority} did not answer"))?
    })?;
    let status = response.status();
    let body = response.into_body();
    let text = String::from_utf8_lossy(&body);
    let pretty = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.into_owned());
    if status.is_success() {
        println!("{pretty}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("junction: the gateway answered {status}:\n{pretty}");
        Ok(ExitCode::FAILURE)
    }
}

/// One request over a fresh HTTP/1.1 connection; the answer read whole.
async fn send(
    authority: &str,
    method: http::Method,
    path: &str,
) -> anyhow::Result<http::Response<Bytes>> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("cannot reach the admin listener at {authority}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .context("cannot talk HTTP to the admin listener")?;
    tokio::spawn(connection);
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .context("cannot build the request")?;
    let response = sender
        .send_request(request)
        .await
        .context("the admin request failed")?;
    let (head, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .context("cannot read the admin answer")?
        .to_bytes();
    Ok(http::Response::from_parts(head, body))
}

/// `HOST:PORT` of the admin listener.
fn authority(target: &Target) -> anyhow::Result<String> {
    if let Some(admin) = &target.admin {
        let text = admin.trim();
        let text = text
            .strip_prefix("http://")
            .unwrap_or(text)
            .trim_end_matches('/');
        if text.starts_with("https://") {
            bail!("--admin: the admin listener speaks plain HTTP");
        }
        return Ok(text.to_owned());
    }
    if let Some(dir) = &target.config {
        let config = Config::load(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
        let addr = config.admin_listen;
        // A listener on all interfaces is reached on loopback.
        let ip = if addr.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            addr.ip()
        };
        return Ok(std::net::SocketAddr::new(ip, addr.port()).to_string());
    }
    Ok("127.0.0.1:9090".to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use clap::Parser as _;

    use super::*;

    #[test]
    fn purges_the_cache_and_shows_traffic_through_the_admin_listener() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let any = "127.0.0.1:0".parse().unwrap();
        let demo = runtime.block_on(junction_demo::start(any, any)).unwrap();
        let data = demo.server.data_addr.to_string();
        let admin = demo.server.admin_addr.to_string();
        let x_cache = |path: &str| {
            let response = runtime
                .block_on(send(&data, http::Method::GET, path))
                .unwrap();
            assert_eq!(response.status(), 200, "{:?}", response.body());
            response.headers()["x-cache"].to_str().unwrap().to_owned()
        };
        let profile = "/connectors/directory/employees/e1";
        assert_eq!(x_cache(profile), "MISS");
        assert_eq!(x_cache(profile), "HIT");

        let run = |args: &[&str]| {
            let mut argv = vec!["junction"];
            argv.extend_from_slice(args);
            argv.extend_from_slice(&["--admin", &admin]);
            crate::run(crate::Cli::try_parse_from(argv).unwrap()).unwrap()
        };
        let directory = ["cache", "purge", "--connector", "directory"];
        assert_eq!(run(&directory), ExitCode::SUCCESS);
        assert_eq!(x_cache(profile), "MISS", "the purge removed the entry");

        // By operation and key prefix too; an unknown connector is an error (exit 1).
        let one = [
            "cache",
            "purge",
            "--connector",
            "directory",
            "--operation",
            "GetEmployee",
            "--prefix",
            "path.employeeId=e1",
        ];
        assert_eq!(run(&one), ExitCode::SUCCESS);
        assert_eq!(x_cache(profile), "MISS");
        assert_eq!(x_cache(profile), "HIT");
        let unknown = ["cache", "purge", "--connector", "nope"];
        assert_eq!(run(&unknown), ExitCode::FAILURE);
        // A view's entries are purged by view; never together with a connector.
        assert_eq!(
            run(&["cache", "purge", "--view", "home"]),
            ExitCode::SUCCESS
        );
        assert_eq!(
            run(&["cache", "purge", "--view", "nope"]),
            ExitCode::FAILURE
        );
        let both = [
            "junction",
            "cache",
            "purge",
            "--view",
            "home",
            "--connector",
            "x",
        ];
        assert!(crate::Cli::try_parse_from(both).is_err());
        assert_eq!(run(&["traffic"]), ExitCode::SUCCESS);
        drop(demo);
    }
}
