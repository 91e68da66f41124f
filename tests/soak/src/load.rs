//! The soak's load: workers mixing cached GETs, POSTs, views, flaky and remote calls, OAuth
//! calls and admin writes over both replicas, plus rounds that check a shared rate limit.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder};
use serde::Serialize;
use serde_json::{Value, json};

use crate::cluster::ADMIN_TOKEN;

/// What a request exercised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `GET` of the steady backend, cached 2 s on Redis.
    CachedGet,
    /// `POST` to the steady backend.
    Post,
    /// `GET` of the steady backend's 50 ms operation.
    Slow,
    /// The flaky backend: 5xx, cut bodies, stalls and resets are its normal answers.
    Flaky,
    /// The remote backend, behind the proxy (killed, slowed).
    Remote,
    /// The view over the steady and the remote backend.
    View,
    /// The OAuth-protected API, through the shared client-credentials connection.
    Oauth,
    /// An admin write: a connection or a client created or deleted.
    Admin,
    /// A client's new key, used on the other replica right after its creation.
    NewKey,
    /// A deleted client's key, used on the other replica right after the deletion.
    RevokedKey,
    /// A call of a rate-limit round.
    Limited,
}

/// One request and what came of it; times in milliseconds since the soak began.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub kind: Kind,
    pub replica: usize,
    pub start: u64,
    pub end: u64,
    pub status: Option<u16>,
    /// The problem type's slug (`store-unavailable`) of a problem+json answer.
    pub problem: Option<String>,
    /// A transport error: no answer, or a body cut short.
    pub error: Option<String>,
}

/// Whether a write was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ack {
    /// `201`/`204`: it happened.
    Yes,
    /// An error answer: it did not.
    Refused,
    /// No answer: it may have.
    Unknown,
}

/// One connection or client the soak created.
#[derive(Debug, Clone, Serialize)]
pub struct Write {
    pub name: String,
    pub id: Option<String>,
    #[serde(skip)]
    pub key: Option<String>,
    pub created: Ack,
    pub deleted: Option<Ack>,
}

/// Every admin write, to check against what the store holds at the end.
#[derive(Debug, Default, Serialize)]
pub struct Ledger {
    pub connections: Vec<Write>,
    pub clients: Vec<Write>,
}

/// One rate-limit round: a new connection allowed 20 calls an hour, called 60 times over
/// both replicas.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub n: u32,
    pub start: u64,
    pub end: u64,
    pub admitted: u32,
    pub limited: u32,
    pub other: u32,
}

/// The calls each rate-limit round makes, and what its limit admits.
pub const ROUND_CALLS: u32 = 60;
pub const ROUND_LIMIT: u32 = 20;

/// A replica's two listeners.
#[derive(Debug, Clone, Copy)]
pub struct Replica {
    pub data: u16,
    pub admin: u16,
}

/// What every worker shares.
#[derive(Debug)]
pub struct Load {
    pub replicas: [Replica; 2],
    /// The workers' client key.
    pub key: String,
    pub http: reqwest::Client,
    pub began: Instant,
    pub records: Mutex<Vec<Record>>,
    pub ledger: Mutex<Ledger>,
    pub rounds: Mutex<Vec<Round>>,
    /// The replicas' resources over time (the sampler's readings).
    pub samples: Mutex<Vec<crate::report::Sample>>,
    /// Processes that exited without being killed.
    pub died: Mutex<BTreeSet<String>>,
    pub stop: AtomicBool,
    names: AtomicU64,
}

/// An answer: status, problem slug, body; or why there was none.
type Answer = Result<(u16, Option<String>, Value), String>;

impl Load {
    pub fn new(replicas: [Replica; 2], key: String, began: Instant) -> anyhow::Result<Load> {
        Ok(Load {
            replicas,
            key,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .connect_timeout(Duration::from_secs(2))
                .pool_idle_timeout(Duration::from_secs(5))
                .build()?,
            began,
            records: Mutex::new(Vec::new()),
            ledger: Mutex::new(Ledger::default()),
            rounds: Mutex::new(Vec::new()),
            samples: Mutex::new(Vec::new()),
            died: Mutex::new(BTreeSet::new()),
            stop: AtomicBool::new(false),
            names: AtomicU64::new(0),
        })
    }

    /// Milliseconds since the soak began.
    pub fn now(&self) -> u64 {
        u64::try_from(self.began.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A request to a replica's data plane with a client key.
    fn data(&self, replica: usize, method: Method, path: &str, key: &str) -> RequestBuilder {
        let port = self.replicas[replica].data;
        self.http
            .request(method, format!("http://127.0.0.1:{port}{path}"))
            .header("x-api-key", key)
    }

    /// A request to a replica's admin API.
    pub fn admin(&self, replica: usize, method: Method, path: &str) -> RequestBuilder {
        let port = self.replicas[replica].admin;
        self.http
            .request(method, format!("http://127.0.0.1:{port}/api/v1/{path}"))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// Sends what `build` makes for `replica`; a refused connection (the replica is down)
    /// goes to the other one. Records it as `kind`.
    async fn call<F>(&self, kind: Kind, replica: usize, build: F) -> (usize, Answer)
    where
        F: Fn(usize) -> RequestBuilder,
    {
        let start = self.now();
        let mut used = replica;
        let mut answer = send(build(used)).await;
        if let Err(error) = &answer
            && error.starts_with("connect")
        {
            used = 1 - replica;
            answer = send(build(used)).await;
        }
        let record = Record {
            kind,
            replica: used,
            start,
            end: self.now(),
            status: answer.as_ref().ok().map(|a| a.0),
            problem: answer.as_ref().ok().and_then(|a| a.1.clone()),
            error: answer.as_ref().err().cloned(),
        };
        if let Ok(mut records) = self.records.lock() {
            records.push(record);
        }
        (used, answer)
    }

    fn name(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.names.fetch_add(1, Ordering::Relaxed))
    }
}

async fn send(request: RequestBuilder) -> Answer {
    let reply = request.send().await.map_err(describe)?;
    let status = reply.status().as_u16();
    let problem = reply
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    let body = reply
        .bytes()
        .await
        .map_err(|e| format!("body: {}", describe(e)))?;
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let slug = problem.then(|| {
        value["type"]
            .as_str()
            .and_then(|t| t.rsplit('/').next())
            .unwrap_or("untyped")
            .to_owned()
    });
    Ok((status, slug, value))
}

fn describe(error: reqwest::Error) -> String {
    let mut text = if error.is_connect() {
        "connect".to_owned()
    } else if error.is_timeout() {
        "timeout".to_owned()
    } else {
        "transport".to_owned()
    };
    let mut source: Option<&dyn std::error::Error> = Some(&error);
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// One worker: `rate` requests a second of a random kind, until told to stop.
pub async fn worker(load: Arc<Load>, rate: f64) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !load.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let replica = fastrand::usize(..2);
        let id = fastrand::u32(1..=50);
        let key = load.key.clone();
        let get = |kind: Kind, path: String| {
            let load = Arc::clone(&load);
            let key = key.clone();
            async move {
                let _recorded = load
                    .call(kind, replica, |r| load.data(r, Method::GET, &path, &key))
                    .await;
            }
        };
        match fastrand::u32(..100) {
            0..30 => {
                get(
                    Kind::CachedGet,
                    format!("/connectors/steady/api/items/{id}"),
                )
                .await
            }
            30..42 => {
                let body = json!({"name": format!("item {id}")});
                let _recorded = load
                    .call(Kind::Post, replica, |r| {
                        load.data(r, Method::POST, "/connectors/steady/api/items", &key)
                            .json(&body)
                    })
                    .await;
            }
            42..48 => get(Kind::Slow, format!("/connectors/steady/api/slow/{id}")).await,
            48..58 => get(Kind::Flaky, format!("/connectors/flaky/api/items/{id}")).await,
            58..72 => get(Kind::Remote, format!("/connectors/remote/api/items/{id}")).await,
            72..82 => get(Kind::View, format!("/views/dashboard?id={id}")).await,
            82..94 => get(Kind::Oauth, "/connectors/oauth/api/me".to_owned()).await,
            _ => admin_write(&load, replica).await,
        }
    }
}

/// One admin write: create or delete a connection or a client. A created client's key is
/// then used on the other replica; a deleted one's must be refused there.
async fn admin_write(load: &Load, replica: usize) {
    let pick = fastrand::u32(..10);
    let deletable = |writes: &[Write]| {
        let open: Vec<usize> = writes
            .iter()
            .enumerate()
            .filter(|(_, w)| w.created == Ack::Yes && w.deleted.is_none() && w.id.is_some())
            .map(|(i, _)| i)
            .collect();
        (open.len() > 3).then(|| open[fastrand::usize(..open.len())])
    };
    let ledger = |f: &mut dyn FnMut(&mut Ledger)| {
        if let Ok(mut ledger) = load.ledger.lock() {
            f(&mut ledger);
        }
    };
    match pick {
        0..4 => {
            let name = load.name("soak-conn");
            let body = json!({"connector": "steady", "name": name, "values": {}});
            let (_, answer) = load
                .call(Kind::Admin, replica, |r| {
                    load.admin(r, Method::POST, "connections").json(&body)
                })
                .await;
            let (created, id) = acknowledged(&answer, 201, |v| v["id"].as_str());
            ledger(&mut |l| {
                l.connections.push(Write {
                    name: name.clone(),
                    id: id.clone(),
                    key: None,
                    created,
                    deleted: None,
                });
            });
        }
        4..8 => {
            let name = load.name("soak-client");
            let body = json!({"name": name, "grants": ["steady"]});
            let (used, answer) = load
                .call(Kind::Admin, replica, |r| {
                    load.admin(r, Method::POST, "clients").json(&body)
                })
                .await;
            let (created, id) = acknowledged(&answer, 201, |v| v["client"]["id"].as_str());
            let key = answer
                .as_ref()
                .ok()
                .and_then(|a| a.2["api_key"].as_str().map(str::to_owned));
            ledger(&mut |l| {
                l.clients.push(Write {
                    name: name.clone(),
                    id: id.clone(),
                    key: key.clone(),
                    created,
                    deleted: None,
                });
            });
            if let Some(key) = key {
                let _recorded = load
                    .call(Kind::NewKey, 1 - used, |r| {
                        load.data(r, Method::GET, "/connectors/steady/api/items/7", &key)
                    })
                    .await;
            }
        }
        8 => {
            let Some((index, id)) =
                load.ledger.lock().ok().and_then(|l| {
                    deletable(&l.connections).map(|i| (i, l.connections[i].id.clone()))
                })
            else {
                return;
            };
            let path = format!("connections/{}", id.unwrap_or_default());
            ledger(&mut |l| l.connections[index].deleted = Some(Ack::Unknown));
            let (_, answer) = load
                .call(Kind::Admin, replica, |r| {
                    load.admin(r, Method::DELETE, &path)
                })
                .await;
            let (deleted, _) = acknowledged(&answer, 204, |_| None);
            ledger(&mut |l| l.connections[index].deleted = Some(deleted));
        }
        _ => {
            let Some((index, id, key)) = load.ledger.lock().ok().and_then(|l| {
                deletable(&l.clients)
                    .map(|i| (i, l.clients[i].id.clone(), l.clients[i].key.clone()))
            }) else {
                return;
            };
            let path = format!("clients/{}", id.unwrap_or_default());
            ledger(&mut |l| l.clients[index].deleted = Some(Ack::Unknown));
            let (used, answer) = load
                .call(Kind::Admin, replica, |r| {
                    load.admin(r, Method::DELETE, &path)
                })
                .await;
            let (deleted, _) = acknowledged(&answer, 204, |_| None);
            ledger(&mut |l| l.clients[index].deleted = Some(deleted));
            if let (Ack::Yes, Some(key)) = (deleted, key) {
                let _recorded = load
                    .call(Kind::RevokedKey, 1 - used, |r| {
                        load.data(r, Method::GET, "/connectors/steady/api/items/7", &key)
                    })
                    .await;
            }
        }
    }
}

/// Whether an answer acknowledged a write (`expected` status), and the id it gave.
fn acknowledged(
    answer: &Answer,
    expected: u16,
    id: impl Fn(&Value) -> Option<&str>,
) -> (Ack, Option<String>) {
    match answer {
        Ok((status, _, body)) if *status == expected => (Ack::Yes, id(body).map(str::to_owned)),
        Ok(_) => (Ack::Refused, None),
        Err(_) => (Ack::Unknown, None),
    }
}

/// Rate-limit rounds, one every `every`: a new connection of `limited` and a client
/// granted it (on replica A, which is never killed), then [`ROUND_CALLS`] calls alternating between the replicas.
pub async fn rate_rounds(load: Arc<Load>, every: Duration) {
    let mut n = 0;
    while !load.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(every).await;
        n += 1;
        let name = format!("round-{n}");
        let created = send(
            load.admin(0, Method::POST, "connections")
                .json(&json!({"connector": "limited", "name": name, "values": {}})),
        )
        .await;
        if !matches!(created, Ok((201, _, _))) {
            continue;
        }
        let client = send(load.admin(0, Method::POST, "clients").json(&json!({
            "name": format!("rl-{n}"), "grants": [format!("limited@limited/{name}")]
        })))
        .await;
        let Some(key) = client
            .ok()
            .and_then(|(status, _, body)| (status == 201).then_some(body))
            .and_then(|b| b["api_key"].as_str().map(str::to_owned))
        else {
            continue;
        };
        let start = load.now();
        let mut round = Round {
            n,
            start,
            end: start,
            admitted: 0,
            limited: 0,
            other: 0,
        };
        for i in 0..ROUND_CALLS {
            let (_, answer) = load
                .call(Kind::Limited, (i % 2) as usize, |r| {
                    load.data(r, Method::GET, "/connectors/limited/api/items/1", &key)
                })
                .await;
            match answer {
                Ok((200, _, _)) => round.admitted += 1,
                Ok((429, _, _)) => round.limited += 1,
                _ => round.other += 1,
            }
        }
        round.end = load.now();
        if let Ok(mut rounds) = load.rounds.lock() {
            rounds.push(round);
        }
    }
}
