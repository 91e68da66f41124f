//! The fault soak: two Junction replicas sharing a private Redis and PostgreSQL, under
//! mixed load, while Redis, PostgreSQL, a replica and a backend fail in turn; it reports
//! what failed, whether the faults explain it, and whether any acknowledged write was lost
//! (docs/reliability.md, "Fault soak"). Run it with `tests/soak/run`.

mod backends;
mod cluster;
mod faults;
mod load;
mod report;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::cluster::{Addresses, Postgres, Proc, free_port, listening, wait_until};
use crate::faults::{Targets, Timing, ready_at};
use crate::load::{Load, Replica};

#[derive(Parser, Debug)]
#[command(about = "Two Junction replicas under mixed load while parts of the system fail")]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Length of the run in seconds (every fault happens at least once from about 80 s).
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// The `junction` binary the replicas run.
    #[arg(long, default_value = "target/release/junction")]
    junction: PathBuf,
    /// Where the run keeps its processes' data and logs, and writes `report.json` and
    /// `report.md`.
    #[arg(long, default_value = "target/soak")]
    out: PathBuf,
    /// Requests per second in all (the rate-limit rounds come on top).
    #[arg(long, default_value_t = 150.0)]
    rate: f64,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Serves the items API on ADDR: the remote backend's own process, which the soak kills.
    Backend {
        #[arg(long)]
        addr: String,
    },
}

/// Workers sending the load.
const WORKERS: usize = 16;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The HTTP client's TLS (unused on loopback, but reqwest wants a provider).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("soak: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.mode {
            Some(Mode::Backend { addr }) => {
                backends::serve_api(TcpListener::bind(addr).await?).await?;
                Ok(true)
            }
            // Interrupted: dropping the run kills every process it started.
            None => tokio::select! {
                passed = soak(&cli) => passed,
                () = interrupted() => bail!("interrupted"),
            },
        }
    });
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(error) => {
            eprintln!("soak: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the soak; whether it passed.
async fn soak(cli: &Cli) -> anyhow::Result<bool> {
    let junction = std::fs::canonicalize(&cli.junction)
        .with_context(|| format!("no junction binary at {}", cli.junction.display()))?;
    let run = cli.out.join("run");
    if run.exists() {
        std::fs::remove_dir_all(&run)?;
    }
    let logs = run.join("logs");
    std::fs::create_dir_all(&logs)?;
    let run = std::fs::canonicalize(&run)?;
    let timing = Timing::for_run(cli.seconds);
    println!("soak: {} s, logs in {}", cli.seconds, logs.display());

    // Backends: steady, flaky and the identity provider here; the remote one in its own
    // process, behind the proxy whose delay the schedule turns up.
    let steady = TcpListener::bind("127.0.0.1:0").await?;
    let flaky = TcpListener::bind("127.0.0.1:0").await?;
    let idp_listener = TcpListener::bind("127.0.0.1:0").await?;
    let proxy = TcpListener::bind("127.0.0.1:0").await?;
    let mut addresses = Addresses {
        steady: steady.local_addr()?.port(),
        flaky: flaky.local_addr()?.port(),
        remote_proxy: proxy.local_addr()?.port(),
        idp: idp_listener.local_addr()?.port(),
        redis: free_port()?,
        postgres_url: String::new(),
    };
    let idp = Arc::new(backends::Idp::default());
    tokio::spawn(backends::serve_api(steady));
    tokio::spawn(backends::serve_flaky(flaky));
    tokio::spawn(backends::serve_idp(idp_listener, Arc::clone(&idp)));
    let remote_port = free_port()?;
    let mut remote = Proc::new(
        "remote",
        &std::env::current_exe()?,
        vec![
            "backend".into(),
            "--addr".into(),
            format!("127.0.0.1:{remote_port}"),
        ],
        &logs,
    );
    remote.start()?;
    let delay = Arc::new(AtomicU64::new(0));
    tokio::spawn(backends::serve_proxy(
        proxy,
        format!("127.0.0.1:{remote_port}"),
        Arc::clone(&delay),
    ));

    // Redis and PostgreSQL of this run only.
    let redis_dir = run.join("redis");
    std::fs::create_dir_all(&redis_dir)?;
    let mut redis = Proc::new(
        "redis",
        Path::new("redis-server"),
        [
            "--port",
            &addresses.redis.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &redis_dir.display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec(),
        &logs,
    );
    redis.start()?;
    let postgres = Postgres::init(&run.join("postgres")).await?;
    postgres.start().await?;
    addresses.postgres_url = postgres.url();
    let up = Duration::from_secs(30);
    let redis_port = addresses.redis;
    wait_until(up, "Redis listening", || listening(redis_port)).await?;
    wait_until(up, "the remote backend listening", || {
        listening(remote_port)
    })
    .await?;

    // Two replicas of one configuration.
    let config = run.join("config");
    cluster::write_config(&config, &addresses)?;
    let replicas = [
        Replica {
            data: free_port()?,
            admin: free_port()?,
        },
        Replica {
            data: free_port()?,
            admin: free_port()?,
        },
    ];
    let mut procs = Vec::new();
    let mut ready = Vec::new();
    for (i, replica) in replicas.iter().enumerate() {
        let name = ["replica-a", "replica-b"][i];
        let mut proc = Proc::new(
            name,
            &junction,
            vec![
                "serve".into(),
                "--config".into(),
                config.display().to_string(),
                "--listen".into(),
                format!("127.0.0.1:{}", replica.data),
                "--admin-listen".into(),
                format!("127.0.0.1:{}", replica.admin),
            ],
            &logs,
        );
        proc.start()?;
        let url = format!("http://127.0.0.1:{}/readyz", replica.data);
        wait_until(Duration::from_secs(60), &format!("{name} ready"), || {
            ready_at(&url)
        })
        .await
        .with_context(|| format!("see {}", logs.join(format!("{name}.1.log")).display()))?;
        procs.push(proc);
        ready.push(url);
    }
    let [proc_a, proc_b]: [Proc; 2] = procs
        .try_into()
        .map_err(|_| anyhow::anyhow!("two replicas"))?;
    let [ready_a, ready_b]: [String; 2] = ready
        .try_into()
        .map_err(|_| anyhow::anyhow!("two replicas"))?;

    let began = Instant::now();
    let key = setup(&replicas).await?;
    let load = Arc::new(Load::new(replicas, key, began)?);
    let targets = Arc::new(Mutex::new(Targets {
        redis,
        redis_port,
        postgres,
        replicas: [proc_a, proc_b],
        ready: [ready_a, ready_b],
        remote,
        remote_port,
        delay,
    }));

    // Load, rate rounds, the sampler and the schedule, until the time is up.
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        tasks.push(tokio::spawn(load::worker(
            Arc::clone(&load),
            cli.rate / WORKERS as f64,
        )));
    }
    let every = Duration::from_secs(if cli.seconds >= 300 { 15 } else { 8 });
    tasks.push(tokio::spawn(load::rate_rounds(Arc::clone(&load), every)));
    let sampler = tokio::spawn(sample(Arc::clone(&targets), Arc::clone(&load)));
    println!("faults:");
    let windows = faults::run(Arc::clone(&targets), Arc::clone(&load), timing).await?;
    println!("faults done at {:.1}s", began.elapsed().as_secs_f64());
    let left = timing.total.saturating_sub(began.elapsed());
    tokio::time::sleep(left).await;
    load.stop.store(true, Ordering::Relaxed);
    // Requests in flight finish (each has 15 s at most); the rest stop at their next turn.
    let _ = tokio::time::timeout(Duration::from_secs(30), futures_join(tasks)).await;
    sampler.abort();
    println!(
        "load stopped at {:.1}s; checking the store",
        began.elapsed().as_secs_f64()
    );

    // What the store holds, as each replica lists it.
    let ready = targets.lock().await.ready.clone();
    for url in &ready {
        wait_until(Duration::from_secs(30), "replicas ready at the end", || {
            ready_at(url)
        })
        .await?;
    }
    println!("replicas ready");
    let mut connections = Vec::new();
    let mut clients = Vec::new();
    for replica in 0..2 {
        connections.push(names(&load, replica, "connections").await?);
        clients.push(names(&load, replica, "clients").await?);
    }
    let audit = {
        let ledger = load
            .ledger
            .lock()
            .map_err(|_| anyhow::anyhow!("ledger poisoned"))?;
        report::audit(&ledger, &connections, &clients)
    };
    let inputs = report::Inputs {
        seconds: cli.seconds,
        warm_up: u64::try_from(timing.warm_up.as_millis()).unwrap_or(0),
        records: load.records.lock().map(|r| r.clone()).unwrap_or_default(),
        windows,
        rounds: load.rounds.lock().map(|r| r.clone()).unwrap_or_default(),
        samples: load.samples.lock().map(|s| s.clone()).unwrap_or_default(),
        audit,
        died: load
            .died
            .lock()
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default(),
        tokens_issued: idp.issued(),
        tokens_refused: idp.refused(),
    };
    println!("judging");
    let (report, failures) = report::judge(&inputs);
    let markdown = report::markdown(&report);
    std::fs::write(
        cli.out.join("report.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    std::fs::write(cli.out.join("report.md"), &markdown)?;
    println!("\n{markdown}");
    for record in report["unexpected"]
        .as_array()
        .into_iter()
        .flatten()
        .take(20)
    {
        println!("unexpected: {record}");
    }
    println!("report: {}", cli.out.join("report.json").display());

    let mut t = targets.lock().await;
    for proc in &mut t.replicas {
        proc.kill().await;
    }
    t.redis.kill().await;
    t.remote.kill().await;
    let _ = t.postgres.crash().await;
    Ok(failures.is_empty())
}

/// The OAuth connection and the workers' client, made on replica A; then one call of each
/// healthy kind, so that a broken configuration fails here and not as a thousand errors.
async fn setup(replicas: &[Replica; 2]) -> anyhow::Result<String> {
    let load = Load::new(*replicas, String::new(), Instant::now())?;
    let post = |path: &'static str, body: Value| {
        let request = load.admin(0, Method::POST, path).json(&body);
        async move {
            let reply = request.send().await?;
            let status = reply.status();
            let body: Value = reply.json().await.unwrap_or(Value::Null);
            if status.as_u16() != 201 {
                bail!("POST /api/v1/{path}: {status} {body}");
            }
            Ok(body)
        }
    };
    let (id, secret) = backends::OAUTH_CLIENT;
    post(
        "connections",
        json!({"connector": "oauth", "name": "svc", "values": {
            "token:clientId": id, "token:clientSecret": secret,
            "token:grantType": "client_credentials", "token:scopes": "api"}}),
    )
    .await?;
    let client = post(
        "clients",
        json!({"name": "soak-worker",
               "grants": ["steady", "flaky", "remote", "view:dashboard", "oauth@oauth/svc"]}),
    )
    .await?;
    let key = client["api_key"]
        .as_str()
        .context("the new client has no api_key")?
        .to_owned();
    for path in [
        "/connectors/steady/api/items/1",
        "/connectors/remote/api/items/1",
        "/views/dashboard?id=1",
        "/connectors/oauth/api/me",
    ] {
        for replica in replicas {
            let reply = load
                .http
                .get(format!("http://127.0.0.1:{}{path}", replica.data))
                .header("x-api-key", &key)
                .send()
                .await?;
            let status = reply.status();
            if !status.is_success() {
                bail!("setup: GET {path}: {status} {}", reply.text().await?);
            }
        }
    }
    Ok(key)
}

/// Every 2 s: each replica's RSS and descriptors, and whether a process died unasked.
async fn sample(targets: Arc<Mutex<Targets>>, load: Arc<Load>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let mut t = targets.lock().await;
        let at = load.now();
        let mut samples = Vec::new();
        let mut died = Vec::new();
        for (replica, proc) in t.replicas.iter_mut().enumerate() {
            if let Some(status) = proc.exited() {
                died.push(format!("{}#{} ({status})", proc.name, proc.incarnation));
            }
            if let Some((rss_kb, fds)) = proc.pid().and_then(report::read_proc) {
                samples.push(report::Sample {
                    at,
                    replica,
                    incarnation: proc.incarnation,
                    rss_kb,
                    fds,
                });
            }
        }
        let t = &mut *t;
        for proc in [&mut t.redis, &mut t.remote] {
            if let Some(status) = proc.exited() {
                died.push(format!("{}#{} ({status})", proc.name, proc.incarnation));
            }
        }
        if let Ok(mut all) = load.samples.lock() {
            all.extend(samples);
        }
        if let Ok(mut all) = load.died.lock() {
            all.extend(died);
        }
    }
}

/// SIGINT or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// The names a replica's admin API lists under `what` (`connections`, `clients`).
async fn names(load: &Load, replica: usize, what: &str) -> anyhow::Result<Vec<String>> {
    let reply = load.admin(replica, Method::GET, what).send().await?;
    let status = reply.status();
    let body: Value = reply.json().await?;
    if !status.is_success() {
        bail!("GET /api/v1/{what} on replica {replica}: {status} {body}");
    }
    Ok(body[what]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect())
}
