//! Outbound agents across a real network boundary (docs/agent.md).
//!
//! The backend runs in a Linux network namespace, on that namespace's loopback only: the
//! host cannot reach it (proved first). Agents (the `junction` binary, `junction agent
//! run`) run inside the namespace and dial the gateway's agents listener on the host side
//! of a veth pair; the gateway runs in this process. Needs root (`ip netns`), as CI has.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use futures_util::StreamExt;
use junction_model::Method;
use junction_runtime::Config;
use junction_server::{RunningServer, Server};
use serde_json::{Value, json};

use crate::support::{self, admin, get_with_key as call, op};

/// The size of the large answer streamed through an agent.
const BIG: usize = 100 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// A network namespace joined to the host by a veth pair: the host is `.1`, the namespace
/// `.2` of a /30. Removed (with the pair and its `/etc/netns` folder) when dropped.
struct Netns {
    name: String,
    host_ip: Ipv4Addr,
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Netns {
    fn create() -> Netns {
        let id = std::process::id() % 10_000;
        let name = format!("junction-agent-{id}");
        let (host_if, ns_if) = (format!("jagh{id}"), format!("jagn{id}"));
        let subnet = u8::try_from(id % 250).unwrap();
        let host_ip = Ipv4Addr::new(10, 213, subnet, 1);
        let ns_ip = Ipv4Addr::new(10, 213, subnet, 2);
        // A namespace left by an earlier run that was killed goes first.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        ip(&["netns", "add", &name]);
        let netns = Netns { name, host_ip };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &netns.name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        let exec = |args: &[&str]| {
            let mut all = vec!["netns", "exec", netns.name.as_str()];
            all.extend_from_slice(args);
            ip(&all);
        };
        exec(&["ip", "addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if]);
        exec(&["ip", "link", "set", &ns_if, "up"]);
        exec(&["ip", "link", "set", "lo", "up"]);
        // `ip netns exec` shows the processes it starts this file as /etc/hosts.
        let etc = netns.etc();
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("hosts"),
            "127.0.0.1 localhost erp.internal\n::1 localhost\n",
        )
        .unwrap();
        netns
    }

    fn etc(&self) -> PathBuf {
        Path::new("/etc/netns").join(&self.name)
    }

    /// `command` run inside the namespace.
    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs the future `work` makes on a thread of its own that has entered the namespace
    /// (sockets it opens live there), on a runtime of that thread.
    fn run<F>(
        &self,
        work: impl FnOnce() -> F + Send + 'static,
    ) -> std::thread::JoinHandle<F::Output>
    where
        F: Future,
        F::Output: Send + 'static,
    {
        let path = Path::new("/var/run/netns").join(&self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap();
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(work())
        })
    }

    /// Serves with `serve` on a free port of the namespace's loopback; returns the port.
    fn listen<F>(&self, serve: impl FnOnce(tokio::net::TcpListener) -> F + Send + 'static) -> u16
    where
        F: Future<Output = ()>,
    {
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        self.run(move || async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            port_tx.send(listener.local_addr().unwrap().port()).unwrap();
            serve(listener).await;
        });
        port_rx.recv_timeout(Duration::from_secs(10)).unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(self.etc());
    }
}

/// What the backend saw.
#[derive(Debug, Default)]
struct Hits {
    items: AtomicUsize,
    secret: AtomicUsize,
}

/// The private backend: `/api/items`, `/api/big` (100 MB, streamed), `/admin/secret`.
fn backend(hits: Arc<Hits>) -> Router {
    let items = hits.clone();
    let secret = hits;
    Router::new()
        .route(
            "/api/items",
            get(move || {
                items.items.fetch_add(1, Ordering::Relaxed);
                async {
                    axum::Json(
                        json!({"items": [{"id": 1, "name": "pump"}, {"id": 2, "name": "valve"}]}),
                    )
                }
            }),
        )
        .route(
            "/api/private",
            get(|headers: http::HeaderMap| async move {
                // svc:pw-from-the-site, added by the agent from its own environment.
                let expected = "Basic c3ZjOnB3LWZyb20tdGhlLXNpdGU=";
                if headers.get("authorization").is_some_and(|v| v == expected) {
                    (http::StatusCode::OK, "private")
                } else {
                    (http::StatusCode::UNAUTHORIZED, "who are you")
                }
            }),
        )
        .route(
            "/api/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                "slow"
            }),
        )
        .route(
            "/api/catalog",
            get(|| async { axum::Json(json!({"catalog": ["pump", "valve"]})) }),
        )
        .route(
            "/api/big",
            get(|| async {
                let chunk = Bytes::from(vec![b'x'; CHUNK]);
                let stream = futures_util::stream::iter(
                    (0..BIG / CHUNK).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                );
                axum::response::Response::builder()
                    .header("content-type", "application/octet-stream")
                    .header("content-length", BIG.to_string())
                    .body(Body::from_stream(stream))
                    .unwrap()
            }),
        )
        .route(
            "/admin/secret",
            get(move || {
                secret.secret.fetch_add(1, Ordering::Relaxed);
                async { "secret" }
            }),
        )
}

/// Starts the backend inside the namespace on its loopback; returns its port.
fn start_backend(netns: &Netns, hits: Arc<Hits>) -> u16 {
    netns.listen(move |listener| async move {
        let _ = axum::serve(listener, backend(hits)).await;
    })
}

/// Starts an HTTP CONNECT proxy inside the namespace on its loopback; returns its port and
/// the targets it was asked to connect to.
fn start_proxy(netns: &Netns) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = asked.clone();
    let port = netns.listen(move |listener| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                seen.lock().unwrap().push(target.clone());
                let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                let _ = client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (port, asked)
}

/// `GET url` made from inside the namespace: (status, body).
fn call_inside(netns: &Netns, url: String) -> (u16, Bytes) {
    netns
        .run(move || async move {
            let response = support::client().get(url).send().await.unwrap();
            (response.status().as_u16(), response.bytes().await.unwrap())
        })
        .join()
        .unwrap()
}

/// A running agent process, killed when dropped.
struct AgentProcess {
    child: Child,
}

impl AgentProcess {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Resident memory, in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The site: a namespace, its backend, the `junction` binary and the folders of its agents.
struct Site {
    netns: Netns,
    binary: PathBuf,
    dir: tempfile::TempDir,
    backend_port: u16,
}

impl Site {
    fn agent_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn join(&self, name: &str, gateway: SocketAddr, token: &str) -> Output {
        self.netns
            .command(&self.binary)
            .args(["agent", "join", "--gateway"])
            .arg(format!("https://{gateway}"))
            .args(["--token", token, "--name", name, "--dir"])
            .arg(self.agent_dir(name))
            .output()
            .unwrap()
    }

    /// Joins agent `name` and writes its allowlist (the backend's `/api/` only), the
    /// backend's credentials (from the agent's environment) and, when given, a proxy.
    fn enroll(&self, name: &str, gateway: SocketAddr, token: &str, proxy: Option<u16>) {
        let joined = self.join(name, gateway, token);
        assert!(
            joined.status.success(),
            "join: {}",
            String::from_utf8_lossy(&joined.stderr)
        );
        std::fs::write(
            self.agent_dir(name).join("agent.toml"),
            format!(
                "allow = [\"http://erp.internal:{port}/api/*\"]\n{}\n\
                 [backend_auth.\"erp.internal:{port}\"]\n\
                 basic = {{ user = \"svc\", password = \"${{ERP_PASSWORD}}\" }}\n",
                proxy.map_or(String::new(), |p| format!(
                    "proxy = \"http://127.0.0.1:{p}\""
                )),
                port = self.backend_port
            ),
        )
        .unwrap();
    }

    fn run(&self, name: &str) -> AgentProcess {
        let log = File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let child = self
            .netns
            .command(&self.binary)
            .args(["agent", "run", "--dir"])
            .arg(self.agent_dir(name))
            .env("JUNCTION_LOG", "info")
            .env("ERP_PASSWORD", "pw-from-the-site")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        AgentProcess { child }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }
}

/// A free port on `ip` (bound and let go): the agents listener keeps its port across a
/// gateway restart, as a configured one would.
fn free_port(ip: Ipv4Addr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_gateway_config(dir: &Path, agents: SocketAddr, backend_port: u16) {
    std::fs::create_dir_all(dir.join("connectors")).unwrap();
    // A view over two operations of the private backend, both through the agents.
    std::fs::create_dir_all(dir.join("views")).unwrap();
    std::fs::write(
        dir.join("views").join("stock.toml"),
        "shape = '{names: [.steps.items.items[].name], catalog: .steps.catalog.catalog}'\n\n\
         [step.items]\noperation = \"erp.listItems\"\n\n\
         [step.catalog]\noperation = \"erp.catalog\"\n",
    )
    .unwrap();
    let key_file = support::master_key_file(dir);
    std::fs::write(
        dir.join("junction.toml"),
        format!(
            r#"listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[store]
path = "store.db"
key_file = "{}"

[agents]
listen = "{agents}"
token_ttl = "5m"

[connector.erp]
backend = "http://erp.internal:{backend_port}"
via = "agent:site"

# Refusals by an agent's allowlist are not backend failures: they never open it.
[connector.erp.breaker]
failures = 2

[connector.erp.operation.catalog.cache]
ttl = "60s"
"#,
            key_file.display()
        ),
    )
    .unwrap();
}

async fn start_gateway(dir: &Path) -> RunningServer {
    let config = Config::load(dir).unwrap();
    let erp = support::connector(
        "erp",
        "127.0.0.1:9".parse().unwrap(),
        vec![
            op(Method::Get, "/api/items", "listItems"),
            op(Method::Get, "/api/catalog", "catalog"),
            op(Method::Get, "/api/private", "private"),
            op(Method::Get, "/api/slow", "slow"),
            op(Method::Get, "/api/big", "big"),
            op(Method::Get, "/admin/secret", "secret"),
        ],
    );
    Server::start(&config, &[erp]).await.unwrap()
}

/// The agents the gateway's admin API shows connected, by name.
async fn connected(server: &RunningServer) -> Vec<String> {
    let reply = admin(server, reqwest::Method::GET, "/api/v1/agents").await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let mut names: Vec<String> = reply.json()["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| !a["connections"].as_array().unwrap().is_empty())
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// Waits (up to `within`) until exactly `names` are connected; returns how long it took.
async fn wait_connected(server: &RunningServer, names: &[&str], within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let now = connected(server).await;
        if now == names {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "after {within:?} the connected agents are {now:?}, not {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn token(server: &RunningServer, ttl: &str) -> String {
    let reply = support::client()
        .post(format!("{}/api/v1/agents/tokens", server.admin_url()))
        .json(&json!({"pool": "site", "ttl": ttl}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);
    let body: Value = reply.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// A client granted connector `erp`: its API key.
async fn client_key(server: &RunningServer) -> String {
    let reply = support::client()
        .post(format!("{}/api/v1/clients", server.admin_url()))
        .json(&json!({"name": "app", "grants": [{"connector": "erp"}, {"view": "stock"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);
    let body: Value = reply.json().await.unwrap();
    body["api_key"].as_str().unwrap().to_owned()
}

fn agent_id(server_reply: &Value, name: &str) -> String {
    server_reply["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_reach_a_private_network_and_keep_it_safe() {
    let netns = Netns::create();
    let hits = Arc::new(Hits::default());
    let backend_port = start_backend(&netns, hits.clone());
    // The host cannot reach the backend: it listens on the namespace's loopback only.
    for host in [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V4(netns.host_ip)] {
        let refused = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect((host, backend_port)),
        )
        .await;
        assert!(
            !matches!(refused, Ok(Ok(_))),
            "the host reached the backend at {host}:{backend_port}"
        );
    }
    let (status, direct) =
        call_inside(&netns, format!("http://127.0.0.1:{backend_port}/api/items"));
    assert_eq!(status, 200);

    let site = Site {
        binary: crate::cli::junction_binary(),
        dir: tempfile::tempdir().unwrap(),
        netns,
        backend_port,
    };
    let gateway_dir = site.dir.path().join("gateway");
    let agents_addr = SocketAddr::from((site.netns.host_ip, free_port(site.netns.host_ip)));
    write_gateway_config(&gateway_dir, agents_addr, backend_port);
    let server = start_gateway(&gateway_dir).await;
    assert_eq!(server.agents_addr, Some(agents_addr));
    let items = format!("{}/connectors/erp/api/items", server.data_url());
    let key = client_key(&server).await;

    // No agent yet: 503 naming the pool.
    let none = call(&items, &key).await;
    let problem = none.problem(503, "agent-unavailable");
    assert!(
        problem["detail"].as_str().unwrap().contains("pool 'site'"),
        "{problem}"
    );

    // Enrollment: a token from the CLI (on the gateway's store) for the first agent.
    let enroll = Command::new(&site.binary)
        .args(["agents", "enroll", "--pool", "site", "--config"])
        .arg(&gateway_dir)
        .output()
        .unwrap();
    assert!(
        enroll.status.success(),
        "{}",
        String::from_utf8_lossy(&enroll.stderr)
    );
    let first_token = String::from_utf8(enroll.stdout).unwrap().trim().to_owned();
    site.enroll("alpha", agents_addr, &first_token, None);
    let key_mode = std::fs::metadata(site.agent_dir("alpha").join("agent.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key_mode.permissions()) & 0o777,
        0o600
    );
    // The token is single-use, and an expired one is refused.
    let reused = site.join("again", agents_addr, &first_token);
    assert!(!reused.status.success());
    assert!(
        String::from_utf8_lossy(&reused.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&reused.stderr)
    );
    let short = token(&server, "1s").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let expired = site.join("late", agents_addr, &short);
    assert!(String::from_utf8_lossy(&expired.stderr).contains("401"));

    let mut alpha = site.run("alpha");
    wait_connected(&server, &["alpha"], Duration::from_secs(10)).await;

    // Through the agent: the same answer as from inside the network.
    let through = call(&items, &key).await;
    assert_eq!(through.status, 200, "{:?}", through.body);
    assert_eq!(through.body, direct);
    // The backend's credentials are the site's, added by the agent.
    // A view whose steps go through the agent.
    let view = call(&format!("{}/views/stock", server.data_url()), &key).await;
    assert_eq!(view.status, 200, "{:?}", view.body);
    assert_eq!(
        view.json(),
        json!({"names": ["pump", "valve"], "catalog": ["pump", "valve"]})
    );
    let private = call(
        &format!("{}/connectors/erp/api/private", server.data_url()),
        &key,
    )
    .await;
    assert_eq!(private.status, 200, "{:?}", private.body);
    // The cache works through an agent as through any backend.
    let catalog = format!("{}/connectors/erp/api/catalog", server.data_url());
    assert_eq!(support::x_cache(&call(&catalog, &key).await), "MISS");
    assert_eq!(support::x_cache(&call(&catalog, &key).await), "HIT");

    // The agent listens on nothing in the namespace: only the backend does.
    let listening = site
        .netns
        .command(Path::new("ss"))
        .args(["-ltnp"])
        .output()
        .unwrap();
    let listening = String::from_utf8_lossy(&listening.stdout).into_owned();
    assert!(
        listening.contains(&format!(":{backend_port}")),
        "{listening}"
    );
    assert!(
        !listening.contains(&format!("pid={},", alpha.pid())),
        "the agent listens: {listening}"
    );

    // Outside the allowlist: 403 from the agent, and the backend sees nothing.
    for _ in 0..3 {
        let again = call(
            &format!("{}/connectors/erp/admin/secret", server.data_url()),
            &key,
        )
        .await;
        assert_eq!(again.status, 403);
    }
    assert_eq!(call(&items, &key).await.status, 200, "the breaker opened");
    let refused = call(
        &format!("{}/connectors/erp/admin/secret", server.data_url()),
        &key,
    )
    .await;
    let problem = refused.problem(403, "forbidden");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not in this agent's allowlist"),
        "{problem}"
    );
    assert_eq!(hits.secret.load(Ordering::Relaxed), 0);
    assert!(site.log("alpha").contains("refused"));

    // SIGTERM: the agent sends GOAWAY and finishes the request in flight before it exits.
    let slow = {
        let (url, key) = (
            format!("{}/connectors/erp/api/slow", server.data_url()),
            key.clone(),
        );
        tokio::spawn(async move { call(&url, &key).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(alpha.pid()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let finished = slow.await.unwrap();
    assert_eq!(finished.status, 200, "{:?}", finished.body);
    assert_eq!(&finished.body[..], b"slow");
    let exited = tokio::task::spawn_blocking(move || {
        let status = alpha.child.wait().unwrap();
        (alpha, status)
    });
    let (stopped, status) = tokio::time::timeout(Duration::from_secs(10), exited)
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}: {}", site.log("alpha"));
    drop(stopped);
    alpha = site.run("alpha");
    wait_connected(&server, &["alpha"], Duration::from_secs(10)).await;

    // Metrics name the pool; the span of the upstream call names the agent hop.
    let metrics = admin(&server, reqwest::Method::GET, "/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        metrics.contains("junction_agent_connections{pool=\"site\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("junction_errors_total{type=\"agent-unavailable\"} 1"),
        "{metrics}"
    );

    // A second agent, through the site's HTTP proxy; then, under load, the first is
    // killed: nothing fails.
    let (proxy_port, proxied) = start_proxy(&site.netns);
    site.enroll(
        "beta",
        agents_addr,
        &token(&server, "5m").await,
        Some(proxy_port),
    );
    let mut beta = site.run("beta");
    wait_connected(&server, &["alpha", "beta"], Duration::from_secs(10)).await;
    assert!(
        proxied.lock().unwrap().contains(&agents_addr.to_string()),
        "the proxy saw {:?}",
        proxied.lock().unwrap()
    );
    let load = {
        let (items, key) = (items.clone(), key.clone());
        tokio::spawn(async move {
            let client = support::client();
            let failures = Arc::new(AtomicUsize::new(0));
            let sent = Arc::new(AtomicUsize::new(0));
            let deadline = Instant::now() + Duration::from_secs(4);
            let mut workers = Vec::new();
            for _ in 0..8 {
                let (client, failures, sent, items, key) = (
                    client.clone(),
                    failures.clone(),
                    sent.clone(),
                    items.clone(),
                    key.clone(),
                );
                workers.push(tokio::spawn(async move {
                    let mut n = 0u32;
                    while Instant::now() < deadline && n < 5_000 {
                        n += 1;
                        sent.fetch_add(1, Ordering::Relaxed);
                        let response = client.get(&items).header("x-api-key", &key).send().await;
                        match response {
                            Ok(r) if r.status() == 200 => {}
                            Ok(r) => {
                                eprintln!(
                                    "load: {} {}",
                                    r.status(),
                                    r.text().await.unwrap_or_default()
                                );
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                eprintln!("load: {e}");
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }));
            }
            for worker in workers {
                worker.await.unwrap();
            }
            (
                sent.load(Ordering::Relaxed),
                failures.load(Ordering::Relaxed),
            )
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_kill = hits.items.load(Ordering::Relaxed);
    let killed = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(alpha.pid()).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = alpha.child.wait();
    let noticed = wait_connected(&server, &["beta"], Duration::from_secs(10)).await;
    let noticed_after = killed.elapsed();
    let (sent, failures) = load.await.unwrap();
    eprintln!(
        "agents: {sent} requests under load, {failures} failed; the killed agent left the pool after {noticed_after:?} ({noticed:?} of polling)"
    );
    assert_eq!(failures, 0, "requests failed when an agent was killed");
    assert!(hits.items.load(Ordering::Relaxed) > before_kill + 10);
    assert!(noticed_after < Duration::from_secs(10));
    // It comes back with the same enrollment; its certificate is due (a third of its
    // validity left, as the enrollment says), so it renews it first.
    let enrollment_file = site.agent_dir("alpha").join("enrollment.json");
    let mut enrollment: Value =
        serde_json::from_str(&std::fs::read_to_string(&enrollment_file).unwrap()).unwrap();
    let old_cert = std::fs::read_to_string(site.agent_dir("alpha").join("agent.crt")).unwrap();
    enrollment["not_after"] = json!(junction_store::now_ms() + 3_600_000);
    std::fs::write(&enrollment_file, enrollment.to_string()).unwrap();
    alpha = site.run("alpha");
    wait_connected(&server, &["alpha", "beta"], Duration::from_secs(10)).await;
    let new_cert = std::fs::read_to_string(site.agent_dir("alpha").join("agent.crt")).unwrap();
    assert_ne!(new_cert, old_cert, "{}", site.log("alpha"));
    let agents = admin(&server, reqwest::Method::GET, "/api/v1/agents")
        .await
        .json();
    let renewed = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "alpha")
        .unwrap();
    assert!(renewed["renewed_at"].is_i64(), "{renewed}");

    // 100 MB through an agent: streamed, the agents' memory stays flat.
    let rss_before = alpha.rss_kib().max(beta.rss_kib());
    let response = support::client()
        .get(format!("{}/connectors/erp/api/big", server.data_url()))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut received = 0usize;
    let mut body = response.bytes_stream();
    let mut rss_peak = rss_before;
    while let Some(chunk) = body.next().await {
        received += chunk.unwrap().len();
        if received % (8 * 1024 * 1024) < CHUNK {
            rss_peak = rss_peak.max(alpha.rss_kib().max(beta.rss_kib()));
        }
    }
    assert_eq!(received, BIG);
    let grown = rss_peak.saturating_sub(rss_before);
    eprintln!(
        "agents: 100 MB streamed; agent RSS {rss_before} KiB before, peak {rss_peak} KiB (+{grown} KiB)"
    );
    assert!(grown < 32 * 1024, "an agent grew by {grown} KiB");

    // The gateway restarts: both agents come back within 10 s, no new enrollment.
    server.shutdown().await;
    let server = start_gateway(&gateway_dir).await;
    let back = wait_connected(&server, &["alpha", "beta"], Duration::from_secs(10)).await;
    eprintln!("agents: both reconnected {back:?} after the gateway restarted");
    let items = format!("{}/connectors/erp/api/items", server.data_url());
    assert_eq!(call(&items, &key).await.status, 200);

    // Revoked through the admin API: cut at once, and it cannot come back.
    let agents = admin(&server, reqwest::Method::GET, "/api/v1/agents")
        .await
        .json();
    assert_eq!(agents["pools"]["site"]["connected"], 2, "{agents}");
    let alpha_id = agent_id(&agents, "alpha");
    let revoked_at = Instant::now();
    let reply = admin(
        &server,
        reqwest::Method::DELETE,
        &format!("/api/v1/agents/{alpha_id}"),
    )
    .await;
    assert_eq!(reply.status, 204, "{:?}", reply.body);
    wait_connected(&server, &["beta"], Duration::from_secs(2)).await;
    // Revoked by the CLI (another process, on the store): the gateway cuts it within 2 s.
    let revoke = Command::new(&site.binary)
        .args(["agents", "revoke", "beta", "--config"])
        .arg(&gateway_dir)
        .output()
        .unwrap();
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    let cut = wait_connected(&server, &[], Duration::from_secs(2)).await;
    eprintln!("agents: revoked through the API cut at once; through the CLI cut after {cut:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(connected(&server).await.is_empty());
    assert!(revoked_at.elapsed() > Duration::from_secs(3));
    assert!(
        site.log("alpha")
            .contains("connection to the gateway ended")
    );
    beta.kill();
    alpha.kill();
    server.shutdown().await;
}
