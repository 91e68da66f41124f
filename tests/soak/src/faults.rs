//! The fault schedule: Redis restarted, PostgreSQL crashed and restarted, a replica
//! `kill -9`-ed and restarted, the remote backend killed, the network to it slowed; each
//! in turn, with quiet gaps between, each recorded as a window of time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Mutex;

use crate::cluster::{Postgres, Proc, listening, wait_until};
use crate::load::Load;

/// A fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Redis killed, started again 5 s later (empty: it keeps nothing on disk).
    RedisRestart,
    /// PostgreSQL stopped as by a crash (`-m immediate`), started again 12 s later: longer
    /// than a query waits for a connection, so every read in between finds it gone.
    PostgresRestart,
    /// Replica B `kill -9`-ed, started again 3 s later.
    ReplicaKill,
    /// The remote backend's process killed, started again after the fault's length.
    BackendDown,
    /// 300 ms added to every chunk between the gateway and the remote backend.
    NetworkSlow,
}

/// When a fault was in force (milliseconds since the soak began): from its injection
/// until what it broke was back.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub fault: Fault,
    pub start: u64,
    pub end: u64,
}

/// The parts the schedule breaks.
#[derive(Debug)]
pub struct Targets {
    pub redis: Proc,
    pub redis_port: u16,
    pub postgres: Postgres,
    /// Replicas A (never killed) and B.
    pub replicas: [Proc; 2],
    /// Each replica's `/readyz` URL.
    pub ready: [String; 2],
    pub remote: Proc,
    pub remote_port: u16,
    pub delay: Arc<AtomicU64>,
}

/// How the schedule is timed.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Load before the first fault.
    pub warm_up: Duration,
    /// Quiet time after each fault.
    pub gap: Duration,
    /// How long the backend stays down and the network slow.
    pub long_fault: Duration,
    /// The whole run.
    pub total: Duration,
}

impl Timing {
    /// The timing of a run of `seconds`: faults of 30 s and gaps of 20 s for 10 minutes or
    /// more; shorter for a short run (CI), so that every fault still happens once.
    pub fn for_run(seconds: u64) -> Timing {
        let total = Duration::from_secs(seconds);
        Timing {
            warm_up: Duration::from_secs((seconds / 10).max(8)),
            gap: Duration::from_secs(if seconds >= 300 { 20 } else { 6 }),
            long_fault: Duration::from_secs((seconds / 12).clamp(8, 30)),
            total,
        }
    }
}

/// Runs the schedule until the run's time is up; returns the windows.
pub async fn run(
    targets: Arc<Mutex<Targets>>,
    load: Arc<Load>,
    timing: Timing,
) -> anyhow::Result<Vec<Window>> {
    let cycle = [
        Fault::RedisRestart,
        Fault::PostgresRestart,
        Fault::ReplicaKill,
        Fault::BackendDown,
        Fault::NetworkSlow,
    ];
    let mut windows = Vec::new();
    tokio::time::sleep(timing.warm_up).await;
    for fault in cycle.iter().cycle() {
        let longest = timing.long_fault + Duration::from_secs(15);
        if load.began.elapsed() + longest + timing.gap > timing.total {
            break;
        }
        let start = load.now();
        inject(&targets, *fault, timing).await?;
        let window = Window {
            fault: *fault,
            start,
            end: load.now(),
        };
        println!(
            "  {:>6.1}s {:?} for {:.1}s",
            start as f64 / 1000.0,
            fault,
            (window.end - window.start) as f64 / 1000.0
        );
        windows.push(window);
        tokio::time::sleep(timing.gap).await;
    }
    Ok(windows)
}

/// Breaks one part and waits until it is back. The lock on the parts is held only while
/// a process is killed or started, so that the sampler can read them meanwhile.
async fn inject(targets: &Mutex<Targets>, fault: Fault, timing: Timing) -> anyhow::Result<()> {
    let back = Duration::from_secs(60);
    let sleep = tokio::time::sleep;
    match fault {
        Fault::RedisRestart => {
            targets.lock().await.redis.kill().await;
            sleep(Duration::from_secs(5)).await;
            let port = {
                let mut t = targets.lock().await;
                t.redis.start()?;
                t.redis_port
            };
            wait_until(back, "Redis listening again", || listening(port)).await?;
        }
        Fault::PostgresRestart => {
            targets.lock().await.postgres.crash().await?;
            sleep(Duration::from_secs(12)).await;
            targets.lock().await.postgres.start().await?;
        }
        Fault::ReplicaKill => {
            targets.lock().await.replicas[1].kill().await;
            sleep(Duration::from_secs(3)).await;
            let ready = {
                let mut t = targets.lock().await;
                t.replicas[1].start()?;
                t.ready[1].clone()
            };
            wait_until(back, "replica B ready again", || ready_at(&ready)).await?;
        }
        Fault::BackendDown => {
            targets.lock().await.remote.kill().await;
            sleep(timing.long_fault).await;
            let port = {
                let mut t = targets.lock().await;
                t.remote.start()?;
                t.remote_port
            };
            wait_until(back, "the remote backend listening again", || {
                listening(port)
            })
            .await?;
        }
        Fault::NetworkSlow => {
            let delay = Arc::clone(&targets.lock().await.delay);
            delay.store(300, Ordering::Relaxed);
            sleep(timing.long_fault).await;
            delay.store(0, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Whether `GET url` answers 200.
pub async fn ready_at(url: &str) -> bool {
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    client
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}
