//! Redis for the tests: a namespace on the shared server at 127.0.0.1:6379 that is
//! emptied when the test ends, and private `redis-server` processes on ephemeral ports for
//! tests that stop and restart Redis (never the shared one).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use junction_runtime::Secret;
use junction_runtime::redis_link::{RedisLink, RedisSettings};

/// The shared server the machine runs.
pub const SHARED_REDIS: &str = "redis://127.0.0.1:6379";

/// A key prefix of its own for one test; every key under it is deleted on drop.
#[derive(Debug)]
pub struct Namespace {
    pub url: String,
    pub prefix: String,
}

impl Namespace {
    /// A fresh namespace on the shared server.
    pub fn new(test: &str) -> Namespace {
        Namespace::on(SHARED_REDIS, test)
    }

    pub fn on(url: &str, test: &str) -> Namespace {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Namespace {
            url: url.to_owned(),
            prefix: format!("junction-test:{test}:{}:{nanos}:", std::process::id()),
        }
    }

    /// Settings for a link into this namespace (one per simulated replica).
    pub fn settings(&self) -> RedisSettings {
        RedisSettings {
            url: Secret::new(self.url.clone()),
            prefix: self.prefix.clone(),
            timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(500),
            probe_interval: Duration::from_millis(100),
        }
    }

    pub fn link(&self) -> RedisLink {
        RedisLink::new(self.settings()).unwrap()
    }

    /// Keys now under the prefix.
    pub fn keys(&self) -> Vec<String> {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
            return Vec::new();
        };
        let pattern = format!("{}*", self.prefix);
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut connection)
                .unwrap_or((0, Vec::new()));
            keys.extend(batch);
            if next == 0 {
                return keys;
            }
            cursor = next;
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let keys = self.keys();
        if keys.is_empty() {
            return;
        }
        let client = redis::Client::open(self.url.as_str()).unwrap();
        if let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_secs(2)) {
            let _: Result<u64, _> = redis::cmd("DEL").arg(keys).query(&mut connection);
        }
    }
}

/// A `redis-server` of the test's own, on a free port; killed on drop.
#[derive(Debug)]
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = PrivateRedis { port, child: None };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(self.url()).unwrap();
        loop {
            if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200))
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server (connections drop at once).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `check` every 25 ms until it holds, at most `limit`.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
