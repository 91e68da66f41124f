//! Triggers the gateway runs (docs/triggers.md): a scripted backend answers polls with
//! `202` + `Location` + `Retry-After` and then `200`s with items; the gateway's polls go
//! exactly to the `Location`s, wait what `Retry-After` says, store each item once, keep
//! their cursor across a restart, and serve the events as Server-Sent Events that resume
//! after `Last-Event-ID`.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use junction_model::{Method, ParamLocation};
use serde_json::{Value, json};

use crate::store::TestStore;
use crate::support::{self, Backend, OperationExt, ParameterExt, collect, json_answer};

/// A `shop` connector on `backend`: the action `ListOrders` and the trigger `OnNewOrder`
/// on the same route, and the trigger `OnFeed`.
fn shop(backend: std::net::SocketAddr) -> junction_model::Connector {
    let status =
        || support::param("status", ParamLocation::Query, json!({"type": "string"})).required();
    let mut on_new_order = support::op(Method::Get, "/orders", "OnNewOrder").param(status());
    on_new_order
        .extensions
        .insert("x-ms-trigger".into(), json!("batch"));
    let mut on_feed = support::op(Method::Get, "/feed", "OnFeed");
    on_feed
        .extensions
        .insert("x-ms-trigger".into(), json!("batch"));
    support::connector(
        "shop",
        backend,
        vec![
            support::op(Method::Get, "/orders", "ListOrders").param(status()),
            on_new_order,
            on_feed,
        ],
    )
}

/// Requests the backend saw: when, and path with query.
type Arrivals = Arc<Mutex<Vec<(Instant, String)>>>;

/// The scripted backend of the polling contract (see the module documentation).
async fn scripted() -> (Backend, Arrivals) {
    let base: Arc<OnceLock<String>> = Arc::default();
    let arrivals: Arrivals = Arc::default();
    let (script_base, log) = (base.clone(), arrivals.clone());
    let backend = Backend::start(move |seen| {
        // The connector's base path is `/api`.
        let path = seen.path.strip_prefix("/api").unwrap_or(&seen.path);
        let target = match &seen.query {
            Some(query) => format!("{path}?{query}"),
            None => path.to_owned(),
        };
        log.lock().unwrap().push((Instant::now(), target));
        let base = script_base.get().cloned().unwrap_or_default();
        let accepted = |location: Option<String>, retry: u64| {
            let mut headers = vec![("retry-after", retry.to_string())];
            if let Some(location) = location {
                headers.push(("location", location));
            }
            (202, headers, String::new())
        };
        let fired = |items: Value, location: String| {
            let (status, mut headers, body) = json_answer(200, json!({"value": items}));
            headers.push(("location", location));
            headers.push(("retry-after", "1".to_owned()));
            (status, headers, body)
        };
        match path {
            "/orders" => accepted(Some(format!("{base}/api/orders/poll/1")), 1),
            "/orders/poll/1" => accepted(Some(format!("{base}/api/orders/poll/2")), 2),
            "/orders/poll/2" => fired(
                json!([{"id": 1, "item": "tea"}, {"id": 2, "item": "cups"}]),
                format!("{base}/api/orders/poll/3?since=2"),
            ),
            // Order 2 again (the backend's window overlaps): stored once.
            "/orders/poll/3" => fired(
                json!([{"id": 2, "item": "cups"}, {"id": 3, "item": "pot"}]),
                format!("{base}/api/orders/poll/4"),
            ),
            "/orders/poll/4" => accepted(None, 1),
            _ => (404, Vec::new(), String::new()),
        }
    })
    .await;
    base.set(backend.url()).unwrap();
    (backend, arrivals)
}

async fn wait_for(arrivals: &Arrivals, count: usize, within: Duration) {
    let until = Instant::now() + within;
    while arrivals.lock().unwrap().len() < count {
        assert!(
            Instant::now() < until,
            "the backend saw {:?}",
            arrivals.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client with `grants`; its API key.
async fn client_key(server: &junction_server::RunningServer, name: &str, grants: Value) -> String {
    let reply = collect(
        support::client()
            .post(format!("{}/api/v1/clients", server.admin_url()))
            .json(&json!({"name": name, "grants": grants}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()["api_key"].as_str().unwrap().to_owned()
}

/// Reads `count` events of an event stream: (id, data as JSON); the rest of the last chunk
/// read is left out (a chunk may carry a whole batch).
async fn read_events(response: &mut reqwest::Response, count: usize) -> Vec<(i64, Value)> {
    let mut events = Vec::new();
    let mut pending = String::new();
    while events.len() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(20), response.chunk())
            .await
            .expect("no event within 20 s")
            .unwrap()
            .expect("the stream ended");
        pending.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = pending.find("\n\n") {
            let block: String = pending.drain(..end + 2).collect();
            let (mut id, mut data) = (None, None);
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("id: ") {
                    id = Some(value.parse::<i64>().unwrap());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str::<Value>(value).unwrap());
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                events.push((id, data));
            }
        }
    }
    events.truncate(count);
    events
}

async fn subscribe(
    server: &junction_server::RunningServer,
    trigger: &str,
    key: &str,
    last: Option<i64>,
) -> reqwest::Response {
    let mut request = support::client()
        .get(format!("{}/triggers/{trigger}/events", server.data_url()))
        .header("x-api-key", key);
    if let Some(last) = last {
        request = request.header("last-event-id", last.to_string());
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    response
}

async fn polls_follow_the_backend(test: TestStore) {
    let (backend, arrivals) = scripted().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = support::master_key_file(dir.path());
    let toml = format!(
        "{}\n[trigger.orders]\nconnector = \"shop\"\noperation = \"OnNewOrder\"\ninterval = \"30s\"\n[trigger.orders.parameters]\nstatus = \"open\"\n",
        test.toml(&key_file)
    );
    let server = support::gateway(vec![shop(backend.addr)], &toml).await;

    // First the operation with its parameters, then each Location exactly as given, each
    // after the wait its Retry-After asked for (within 10 %).
    wait_for(&arrivals, 6, Duration::from_secs(30)).await;
    let seen = arrivals.lock().unwrap().clone();
    let targets: Vec<&str> = seen.iter().map(|(_, target)| target.as_str()).collect();
    assert_eq!(
        targets[..6],
        [
            "/orders?status=open",
            "/orders/poll/1",
            "/orders/poll/2",
            "/orders/poll/3?since=2",
            "/orders/poll/4",
            "/orders/poll/4",
        ]
    );
    for (pair, asked) in seen.windows(2).zip([1.0, 2.0, 1.0, 1.0, 1.0]) {
        let waited = pair[1].0.duration_since(pair[0].0).as_secs_f64();
        assert!(
            waited >= asked - 0.02 && waited <= asked * 1.1,
            "asked {asked} s, waited {waited:.3} s before {}",
            pair[1].1
        );
    }

    // Clients: the trigger's events need its grant; a trigger operation is not callable.
    let reader = client_key(&server, "reader", json!(["trigger:orders", "shop"])).await;
    let other = client_key(&server, "other", json!(["shop"])).await;
    let refused = |path: &str, key: &str| {
        let request = support::client()
            .get(format!("{}{path}", server.data_url()))
            .header("x-api-key", key);
        async move { collect(request.send().await.unwrap()).await }
    };
    refused("/triggers/orders/events", &other)
        .await
        .problem(403, "forbidden");
    refused("/triggers/nope/events", &reader)
        .await
        .problem(404, "not-found");
    let problem = refused("/connectors/shop/feed", &reader)
        .await
        .problem(404, "not-found");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("no operation at /feed"),
        "{problem}"
    );

    // Three events: order 2 once.
    let mut stream = subscribe(&server, "orders", &reader, None).await;
    let events = read_events(&mut stream, 3).await;
    let items: Vec<&Value> = events.iter().map(|(_, data)| &data["item"]).collect();
    assert_eq!(items, [&json!("tea"), &json!("cups"), &json!("pot")]);
    assert!(
        events.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "{events:?}"
    );
    drop(stream);

    // A restart goes on from the stored cursor: the next poll is the last Location, and
    // nothing is stored twice.
    let before = arrivals.lock().unwrap().len();
    server.shutdown().await;
    let server = support::gateway(vec![shop(backend.addr)], &toml).await;
    wait_for(&arrivals, before + 1, Duration::from_secs(10)).await;
    assert_eq!(arrivals.lock().unwrap()[before].1, "/orders/poll/4");
    let store = test.open().await;
    let stored = store.trigger_events("orders", 0, 100).await.unwrap();
    assert_eq!(stored.len(), 3, "{stored:?}");
    let state = store.trigger("orders").await.unwrap().unwrap();
    assert!(state.polls >= 7, "{state:?}");
    assert_eq!(state.last_error, None);
    server.shutdown().await;
    test.cleanup().await;
}

#[tokio::test]
async fn polls_follow_location_and_retry_after_sqlite() {
    polls_follow_the_backend(TestStore::sqlite()).await;
}

#[tokio::test]
async fn polls_follow_location_and_retry_after_postgres() {
    polls_follow_the_backend(TestStore::postgres()).await;
}

/// 1,000 items over ten polls; a subscriber cut after event 500 resumes at 501.
#[tokio::test]
async fn event_stream_resumes_after_the_last_event_id() {
    let base: Arc<OnceLock<String>> = Arc::default();
    let script_base = base.clone();
    let backend = Backend::start(move |seen| {
        let page: usize = seen
            .query
            .as_deref()
            .and_then(|q| q.strip_prefix("page="))
            .map_or(1, |p| p.parse().unwrap());
        if page > 10 {
            return (202, vec![("retry-after", "60".to_owned())], String::new());
        }
        let items: Vec<Value> = (1..=100)
            .map(|n| json!({"id": format!("item-{}", (page - 1) * 100 + n), "n": (page - 1) * 100 + n}))
            .collect();
        let (status, mut headers, body) = json_answer(200, json!({"value": items}));
        let base = script_base.get().cloned().unwrap_or_default();
        headers.push(("location", format!("{base}/api/feed?page={}", page + 1)));
        headers.push(("retry-after", "0".to_owned()));
        (status, headers, body)
    })
    .await;
    base.set(backend.url()).unwrap();
    let test = TestStore::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let key_file = support::master_key_file(dir.path());
    let toml = format!(
        "{}\n[trigger.feed]\nconnector = \"shop\"\noperation = \"OnFeed\"\n",
        test.toml(&key_file)
    );
    let server = support::gateway(vec![shop(backend.addr)], &toml).await;
    let key = client_key(&server, "reader", json!(["trigger:feed"])).await;

    let mut stream = subscribe(&server, "feed", &key, None).await;
    let first = read_events(&mut stream, 500).await;
    drop(stream);
    let last = first[499].0;
    assert_eq!(first[499].1["n"], 500);
    let mut stream = subscribe(&server, "feed", &key, Some(last)).await;
    let rest = read_events(&mut stream, 500).await;
    assert_eq!(rest[0].1["n"], 501, "{:?}", rest[0]);
    let numbers: Vec<u64> = first
        .iter()
        .chain(&rest)
        .map(|(_, data)| data["n"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (1..=1000).collect::<Vec<u64>>());
    assert!(rest[0].0 > last);
    server.shutdown().await;
}

/// A webhook receiver: records what it was sent; answers `answer(attempt of this event)`.
struct Receiver {
    backend: Backend,
}

impl Receiver {
    async fn start(answer: impl Fn(usize) -> u16 + Send + Sync + 'static) -> Receiver {
        let attempts: Arc<Mutex<std::collections::HashMap<String, usize>>> = Arc::default();
        let backend = Backend::start(move |seen| {
            let id = seen.header("webhook-id").unwrap_or_default();
            let mut attempts = attempts.lock().unwrap();
            let n = attempts.entry(id).or_default();
            *n += 1;
            let status = answer(*n);
            let headers = if status == 503 {
                vec![("retry-after", "1".to_owned())]
            } else {
                Vec::new()
            };
            (status, headers, String::new())
        })
        .await;
        Receiver { backend }
    }

    /// (webhook-id, arrival) of every request, in order.
    fn ids(&self) -> Vec<String> {
        self.backend
            .seen()
            .iter()
            .map(|seen| seen.header("webhook-id").unwrap())
            .collect()
    }
}

const GOOD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTE=";

/// `$JUNCTION_TEST_PYTHON` with the Standard Webhooks library (scripts/test installs it).
fn python() -> String {
    let candidate = std::env::var("JUNCTION_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = std::process::Command::new(&candidate)
        .args(["-c", "import standardwebhooks"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "a Python with the standardwebhooks package is needed: run scripts/test, which \
         installs it, or set JUNCTION_TEST_PYTHON (tried `{candidate}`)"
    );
    candidate
}

/// Checks every request `receiver` got with the Standard Webhooks reference library.
fn verify_with_standard_webhooks(receiver: &Receiver, secret: &str) {
    let deliveries: Vec<Value> = receiver
        .backend
        .seen()
        .iter()
        .map(|seen| {
            let headers: serde_json::Map<String, Value> =
                ["webhook-id", "webhook-timestamp", "webhook-signature"]
                    .iter()
                    .map(|name| ((*name).to_owned(), json!(seen.header(name).unwrap())))
                    .collect();
            json!({"headers": headers, "body": String::from_utf8(seen.body.to_vec()).unwrap()})
        })
        .collect();
    let script = crate::harness::workspace_root().join("tests/python/verify_webhooks.py");
    let mut child = std::process::Command::new(python())
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = json!({"secret": secret, "deliveries": deliveries}).to_string();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    assert_eq!(
        report.lines().filter(|l| l.starts_with("ok ")).count(),
        deliveries.len(),
        "{report}"
    );
}

async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < until, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Three events (a fourth item left out by the trigger's `filter`) to three webhooks: one accepts (signatures checked with the reference
/// library), one fails each event once with `Retry-After: 1` (retried with the same id
/// after a second), one fails until it is disabled (dead-lettered), then is redelivered
/// with `junction deliveries redeliver` once it is up again.
#[tokio::test]
async fn webhooks_are_signed_retried_and_dead_lettered() {
    let trigger_backend = Backend::start(move |seen| {
        if seen.query.is_some() {
            return (202, vec![("retry-after", "60".to_owned())], String::new());
        }
        let (status, mut headers, body) = json_answer(
            200,
            json!({"value": [{"id": "a"}, {"id": "b"}, {"id": "test", "test": true}, {"id": "c"}]}),
        );
        headers.push((
            "location",
            format!("http://{}/api/feed?page=2", seen.header("host").unwrap()),
        ));
        (status, headers, body)
    })
    .await;
    let good = Receiver::start(|_| 200).await;
    let flaky = Receiver::start(|attempt| if attempt == 1 { 503 } else { 204 }).await;
    let down_is_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let up = down_is_up.clone();
    let down = Receiver::start(move |_| {
        if up.load(std::sync::atomic::Ordering::SeqCst) {
            200
        } else {
            500
        }
    })
    .await;

    let test = TestStore::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let key_file = support::master_key_file(dir.path());
    let toml = format!(
        "{}\n[trigger.feed]\nconnector = \"shop\"\noperation = \"OnFeed\"\nfilter = \".test != true\"\n\
         [trigger.feed.webhook.good]\nurl = \"{}/hook\"\nsecret = \"{GOOD_SECRET}\"\n\
         [trigger.feed.webhook.flaky]\nurl = \"{}/hook\"\nsecret = \"{OTHER_SECRET}\"\nretry = [\"100ms\"]\n\
         [trigger.feed.webhook.down]\nurl = \"{}/hook\"\nsecret = \"{OTHER_SECRET}\"\nretry = [\"200ms\"]\ndisable_after = \"1s\"\n",
        test.toml(&key_file),
        good.backend.url(),
        flaky.backend.url(),
        down.backend.url(),
    );
    let server = support::gateway(vec![shop(trigger_backend.addr)], &toml).await;

    wait_until("three deliveries accepted", Duration::from_secs(20), || {
        good.ids().len() == 3
    })
    .await;
    let mut ids = good.ids();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "{ids:?}");
    verify_with_standard_webhooks(&good, GOOD_SECRET);

    // Each event refused once with Retry-After: 1, then accepted: the same id twice, the
    // second after the asked second (not the schedule's 100 ms).
    wait_until("flaky retried", Duration::from_secs(20), || {
        flaky.ids().len() == 6
    })
    .await;
    let seen = flaky.backend.seen();
    for id in &ids {
        let attempts: Vec<&support::Seen> = seen
            .iter()
            .filter(|s| s.header("webhook-id").as_ref() == Some(id))
            .collect();
        assert_eq!(attempts.len(), 2, "{id}");
        let first: u64 = attempts[0]
            .header("webhook-timestamp")
            .unwrap()
            .parse()
            .unwrap();
        let second: u64 = attempts[1]
            .header("webhook-timestamp")
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            second > first,
            "{id}: retried at {second}, first at {first}"
        );
    }
    verify_with_standard_webhooks(&flaky, OTHER_SECRET);

    // The webhook that fails is disabled after a second: its deliveries are dead.
    let store = test.open().await;
    let dead = || {
        let store = store.clone();
        async move {
            store
                .deliveries(&junction_store::DeliveryQuery {
                    trigger: Some("feed".into()),
                    state: Some("dead".into()),
                    limit: None,
                })
                .await
                .unwrap()
        }
    };
    let until = Instant::now() + Duration::from_secs(20);
    while dead().await.len() < 3 {
        assert!(
            Instant::now() < until,
            "no dead letters: {:?}",
            dead().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let letters = dead().await;
    assert!(
        letters
            .iter()
            .all(|d| d.subscriber == "down" && d.attempts >= 1 && d.last_status == Some(500)),
        "{letters:?}"
    );
    assert!(
        letters[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("disable_after"),
        "{letters:?}"
    );

    // Up again: `junction deliveries` lists and redelivers them, with their ids.
    let config_dir = tempfile::tempdir().unwrap();
    std::fs::write(config_dir.path().join("junction.toml"), &toml).unwrap();
    // On the blocking pool: the gateway and the webhooks keep running meanwhile.
    let cli = |args: &[&str]| {
        let mut command = std::process::Command::new(crate::cli::junction_binary());
        command.args(args).arg("--config").arg(config_dir.path());
        async move {
            let output = tokio::task::spawn_blocking(move || command.output().unwrap())
                .await
                .unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8(output.stdout).unwrap()
        }
    };
    let dead_letters = || async {
        let listed = cli(&["deliveries", "list", "--trigger", "feed", "--state", "dead"]).await;
        serde_json::from_str::<Value>(&listed).unwrap()
    };
    let listed = dead_letters().await;
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    let before = down.ids().len();
    down_is_up.store(true, std::sync::atomic::Ordering::SeqCst);
    let said = cli(&["deliveries", "redeliver", "feed", "--webhook", "down"]).await;
    assert!(said.starts_with("3 dead deliveries"), "{said}");
    wait_until("redelivered", Duration::from_secs(20), || {
        down.ids().len() >= before + 3
    })
    .await;
    let mut again: Vec<String> = down.ids()[before..].to_vec();
    again.sort();
    assert_eq!(again, ids);
    assert_eq!(dead_letters().await, json!([]));

    // The figures on /metrics, from the store.
    wait_until("all delivered", Duration::from_secs(20), || {
        down.ids().len() >= before + 3
    })
    .await;
    let metrics = support::admin(&server, reqwest::Method::GET, "/metrics")
        .await
        .text();
    for line in [
        "junction_trigger_events_total{trigger=\"feed\"} 3",
        "junction_trigger_deliveries_delivered_total{trigger=\"feed\"} 9",
        "junction_trigger_deliveries_dead{trigger=\"feed\"} 0",
        "junction_trigger_deliveries_pending{trigger=\"feed\"} 0",
        "junction_trigger_lag_seconds{trigger=\"feed\"} 0",
        "junction_trigger_failing{trigger=\"feed\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    let retries = metrics
        .lines()
        .find_map(|l| l.strip_prefix("junction_trigger_delivery_retries_total{trigger=\"feed\"} "))
        .unwrap();
    assert!(retries.parse::<f64>().unwrap() >= 3.0, "{retries}");
    server.shutdown().await;
}

/// A client granted a trigger registers its own webhook (`POST /triggers/NAME/webhooks`):
/// it gets a secret once, the trigger's next events reach it signed with that secret
/// (checked with the reference library), other clients neither see nor remove it, hosts
/// outside `webhook_hosts` are refused, a redirect is never followed, and once removed it
/// gets nothing more.
#[tokio::test]
async fn clients_register_their_own_webhooks() {
    let items = Arc::new(Mutex::new(Vec::<Value>::new()));
    let served = items.clone();
    let trigger_backend = Backend::start(move |seen| {
        if seen.path.ends_with("/orders") {
            return (202, vec![("retry-after", "3600".to_owned())], String::new());
        }
        let items = std::mem::take(&mut *served.lock().unwrap());
        if items.is_empty() {
            return (202, vec![("retry-after", "1".to_owned())], String::new());
        }
        let (status, mut headers, body) = json_answer(200, json!({"value": items}));
        headers.push(("retry-after", "1".to_owned()));
        (status, headers, body)
    })
    .await;
    let receiver = Receiver::start(|_| 204).await;
    let test = TestStore::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let key_file = support::master_key_file(dir.path());
    let toml = format!(
        "{}\n[trigger.feed]\nconnector = \"shop\"\noperation = \"OnFeed\"\ninterval = \"100ms\"\n\
         webhook_hosts = [\"127.0.0.1:*\"]\n\
         [trigger.closed]\nconnector = \"shop\"\noperation = \"OnNewOrder\"\n\
         [trigger.closed.parameters]\nstatus = \"open\"\n",
        test.toml(&key_file)
    );
    let server = support::gateway(vec![shop(trigger_backend.addr)], &toml).await;
    let app = client_key(&server, "app", json!(["trigger:feed", "trigger:closed"])).await;
    let other = client_key(&server, "other", json!(["trigger:feed"])).await;
    let stranger = client_key(&server, "stranger", json!([])).await;
    let call = |method: reqwest::Method, path: &str, key: &str, body: Option<Value>| {
        let mut request = support::client()
            .request(method, format!("{}{path}", server.data_url()))
            .header("x-api-key", key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move { collect(request.send().await.unwrap()).await }
    };
    let hook = json!({"url": format!("{}/hook", receiver.backend.url())});

    let refused = call(
        reqwest::Method::POST,
        "/triggers/feed/webhooks",
        &stranger,
        Some(hook.clone()),
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.text().contains("trigger:feed"),
        "{}",
        refused.text()
    );
    let closed = call(
        reqwest::Method::POST,
        "/triggers/closed/webhooks",
        &app,
        Some(hook.clone()),
    )
    .await;
    assert_eq!(closed.status, 403, "{}", closed.text());
    assert!(closed.text().contains("webhook_hosts"), "{}", closed.text());
    let elsewhere = call(
        reqwest::Method::POST,
        "/triggers/feed/webhooks",
        &app,
        Some(json!({"url": "http://metadata.internal/latest"})),
    )
    .await;
    assert_eq!(elsewhere.status, 400, "{}", elsewhere.text());
    assert_eq!(
        elsewhere.json()["errors"][0]["pointer"],
        "/url",
        "{}",
        elsewhere.text()
    );
    let weak = call(
        reqwest::Method::POST,
        "/triggers/feed/webhooks",
        &app,
        Some(json!({"url": hook["url"], "secret": "whsec_c2hvcnQ="})),
    )
    .await;
    assert_eq!(weak.status, 400, "{}", weak.text());
    assert!(weak.text().contains("24 to 64"), "{}", weak.text());

    let made = call(
        reqwest::Method::POST,
        "/triggers/feed/webhooks",
        &app,
        Some(hook.clone()),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.text());
    let made_json = made.json();
    let id = made_json["id"].as_str().unwrap().to_owned();
    let secret = made_json["secret"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with("wh_") && secret.starts_with("whsec_"),
        "{made_json}"
    );
    assert_eq!(
        made.header("location"),
        Some(format!("/triggers/feed/webhooks/{id}").as_str())
    );
    let listed = call(reqwest::Method::GET, "/triggers/feed/webhooks", &app, None).await;
    assert_eq!(listed.json()[0]["id"], json!(id), "{}", listed.text());
    assert!(!listed.text().contains(&secret), "{}", listed.text());
    let theirs = call(
        reqwest::Method::GET,
        "/triggers/feed/webhooks",
        &other,
        None,
    )
    .await;
    assert_eq!(theirs.json(), json!([]));
    let path = format!("/triggers/feed/webhooks/{id}");
    let not_theirs = call(reqwest::Method::DELETE, &path, &other, None).await;
    assert_eq!(not_theirs.status, 404, "{}", not_theirs.text());

    // The trigger's next events reach it, signed with its secret.
    items
        .lock()
        .unwrap()
        .extend([json!({"id": "a"}), json!({"id": "b"})]);
    wait_until("two deliveries", Duration::from_secs(20), || {
        receiver.ids().len() == 2
    })
    .await;
    verify_with_standard_webhooks(&receiver, &secret);
    let admin = support::admin(&server, reqwest::Method::GET, "/api/v1/triggers").await;
    let feed = admin.json()["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "feed")
        .cloned()
        .unwrap();
    assert_eq!(feed["registered_webhooks"][0]["id"], json!(id), "{feed}");
    assert!(
        !admin.text().contains(&secret[6..]),
        "the admin API shows a secret"
    );

    // A webhook that redirects is failing, and the redirect is not followed.
    let elsewhere_receiver = Receiver::start(|_| 204).await;
    let target = format!("{}/stolen", elsewhere_receiver.backend.url());
    let redirecting =
        Backend::start(move |_| (307, vec![("location", target.clone())], String::new())).await;
    let bounced = call(
        reqwest::Method::POST,
        "/triggers/feed/webhooks",
        &other,
        Some(json!({"url": format!("{}/hook", redirecting.url())})),
    )
    .await;
    assert_eq!(bounced.status, 201, "{}", bounced.text());
    items.lock().unwrap().push(json!({"id": "r"}));
    wait_until(
        "the redirecting webhook tried",
        Duration::from_secs(20),
        || !redirecting.seen().is_empty(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        elsewhere_receiver.ids().is_empty(),
        "a redirect was followed"
    );
    let store = test.open().await;
    let failing = store
        .deliveries(&junction_store::DeliveryQuery {
            trigger: Some("feed".into()),
            state: Some("pending".into()),
            limit: None,
        })
        .await
        .unwrap();
    assert!(
        failing
            .iter()
            .any(|d| d.last_status == Some(307) && d.attempts >= 1),
        "{failing:?}"
    );
    wait_until("three deliveries", Duration::from_secs(20), || {
        receiver.ids().len() == 3
    })
    .await;

    // Removed: later events do not go there.
    let removed = call(reqwest::Method::DELETE, &path, &app, None).await;
    assert_eq!(removed.status, 204, "{}", removed.text());
    let gone = call(reqwest::Method::GET, &path, &app, None).await;
    assert_eq!(gone.status, 404, "{}", gone.text());
    items.lock().unwrap().push(json!({"id": "c"}));
    let until = Instant::now() + Duration::from_secs(20);
    while store.trigger_events("feed", 0, 10).await.unwrap().len() < 4 {
        assert!(Instant::now() < until, "event c not stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.ids().len(), 3);
    server.shutdown().await;
}

/// A trigger declared through the admin API (`PUT /api/v1/triggers/NAME`) runs like a
/// configured one (polls, signed deliveries with its sealed secret), is restarted when
/// replaced, paused, resumed and replayed through the API, survives a restart of the
/// gateway, and stops when removed; definitions are checked as the TOML section is.
#[tokio::test]
async fn triggers_are_declared_through_the_admin_api() {
    let arrivals: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = arrivals.clone();
    let backend = Backend::start(move |seen| {
        if seen.path.ends_with("/feed") {
            return (202, vec![("retry-after", "3600".to_owned())], String::new());
        }
        let status = seen
            .query
            .as_deref()
            .and_then(|q| q.strip_prefix("status="))
            .unwrap_or_default()
            .to_owned();
        log.lock().unwrap().push(status.clone());
        let (code, mut headers, body) =
            json_answer(200, json!({"value": [{"id": format!("{status}-1")}]}));
        headers.push(("retry-after", "1".to_owned()));
        (code, headers, body)
    })
    .await;
    let receiver = Receiver::start(|_| 204).await;
    let test = TestStore::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let key_file = support::master_key_file(dir.path());
    let toml = format!(
        "{}\n[trigger.fixed]\nconnector = \"shop\"\noperation = \"OnFeed\"\n",
        test.toml(&key_file)
    );
    let server = support::gateway(vec![shop(backend.addr)], &toml).await;
    let admin = |server: &junction_server::RunningServer,
                 method: reqwest::Method,
                 path: &str,
                 body: Option<Value>| {
        let mut request =
            support::client().request(method, format!("{}{path}", server.admin_url()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move { collect(request.send().await.unwrap()).await }
    };
    let count = |status: &str| {
        arrivals
            .lock()
            .unwrap()
            .iter()
            .filter(|s| *s == status)
            .count()
    };

    // Checked as the section is, and against the connectors.
    let clash = admin(
        &server,
        reqwest::Method::PUT,
        "/api/v1/triggers/fixed",
        Some(json!({"connector": "shop", "operation": "OnFeed"})),
    )
    .await;
    assert_eq!(clash.status, 409, "{}", clash.text());
    let bad = admin(
        &server,
        reqwest::Method::PUT,
        "/api/v1/triggers/orders",
        Some(json!({"connector": "shop", "operation": "OnNewOrder", "interval": "soon"})),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(
        bad.text().contains("`trigger.orders.interval`"),
        "{}",
        bad.text()
    );
    let action = admin(
        &server,
        reqwest::Method::PUT,
        "/api/v1/triggers/orders",
        Some(json!({"connector": "shop", "operation": "ListOrders"})),
    )
    .await;
    assert_eq!(action.status, 404, "{}", action.text());
    assert!(
        action.text().contains(
            "'ListOrders' is not a trigger of connector 'shop' (its triggers: OnNewOrder, OnFeed)"
        ),
        "{}",
        action.text()
    );

    // Declared: it polls, and its webhook gets the event signed with the secret given.
    let definition = |status: &str| {
        json!({"connector": "shop", "operation": "OnNewOrder", "interval": "1s",
               "parameters": {"status": status},
               "webhook": {"app": {"url": format!("{}/hook", receiver.backend.url()),
                                   "secret": GOOD_SECRET}}})
    };
    let made = admin(
        &server,
        reqwest::Method::PUT,
        "/api/v1/triggers/orders",
        Some(definition("open")),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.text());
    assert!(!made.text().contains(&GOOD_SECRET[6..]), "{}", made.text());
    assert_eq!(
        made.json()["definition"]["webhook"]["app"]["url"],
        definition("open")["webhook"]["app"]["url"]
    );
    wait_until(
        "the declared trigger delivered",
        Duration::from_secs(20),
        || receiver.ids().len() == 1,
    )
    .await;
    verify_with_standard_webhooks(&receiver, GOOD_SECRET);
    let listed = admin(&server, reqwest::Method::GET, "/api/v1/triggers", None).await;
    let orders = listed.json()["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders")
        .cloned()
        .unwrap();
    assert_eq!(
        (orders["declared"].as_str(), orders["events"].as_i64()),
        (Some("api"), Some(1)),
        "{orders}"
    );
    assert!(
        !listed.text().contains(&GOOD_SECRET[6..]),
        "the listing shows a secret"
    );

    // Replaced: the new parameters are polled, the old ones no more.
    let replaced = admin(
        &server,
        reqwest::Method::PUT,
        "/api/v1/triggers/orders",
        Some(definition("closed")),
    )
    .await;
    assert_eq!(replaced.status, 200, "{}", replaced.text());
    wait_until(
        "the replaced trigger polled",
        Duration::from_secs(20),
        || count("closed") >= 1,
    )
    .await;
    let open = count("open");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(count("open"), open, "{:?}", arrivals.lock().unwrap());
    assert!(count("closed") >= 2, "{:?}", arrivals.lock().unwrap());

    // Paused and resumed, replayed.
    let paused = admin(
        &server,
        reqwest::Method::POST,
        "/api/v1/triggers/orders/pause",
        None,
    )
    .await;
    assert_eq!(paused.json()["paused"], true, "{}", paused.text());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let closed = count("closed");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(count("closed"), closed, "polled while paused");
    let resumed = admin(
        &server,
        reqwest::Method::POST,
        "/api/v1/triggers/orders/resume",
        None,
    )
    .await;
    assert_eq!(resumed.json()["changed"], true, "{}", resumed.text());
    wait_until("polled again", Duration::from_secs(20), || {
        count("closed") > closed
    })
    .await;
    wait_until("both events delivered", Duration::from_secs(20), || {
        receiver.ids().len() == 2
    })
    .await;
    let replay = admin(
        &server,
        reqwest::Method::POST,
        "/api/v1/triggers/orders/replay",
        Some(json!({"since": "all"})),
    )
    .await;
    assert_eq!(replay.json()["deliveries"], 2, "{}", replay.text());
    wait_until("replayed", Duration::from_secs(20), || {
        receiver.ids().len() == 4
    })
    .await;
    let ids = receiver.ids();
    assert_eq!(
        ids[2..].iter().collect::<std::collections::BTreeSet<_>>(),
        ids[..2].iter().collect()
    );
    let no_since = admin(
        &server,
        reqwest::Method::POST,
        "/api/v1/triggers/orders/replay",
        Some(json!({})),
    )
    .await;
    assert_eq!(no_since.status, 400, "{}", no_since.text());

    // A restarted gateway runs it from the store.
    server.shutdown().await;
    let before = count("closed");
    let server = support::gateway(vec![shop(backend.addr)], &toml).await;
    wait_until("polled after the restart", Duration::from_secs(20), || {
        count("closed") > before
    })
    .await;

    // Removed: it stops.
    let removed = admin(
        &server,
        reqwest::Method::DELETE,
        "/api/v1/triggers/orders",
        None,
    )
    .await;
    assert_eq!(removed.status, 204, "{}", removed.text());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let last = count("closed");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(count("closed"), last, "polled after its removal");
    let again = admin(
        &server,
        reqwest::Method::DELETE,
        "/api/v1/triggers/orders",
        None,
    )
    .await;
    assert_eq!(again.status, 404, "{}", again.text());
    let fixed = admin(
        &server,
        reqwest::Method::DELETE,
        "/api/v1/triggers/fixed",
        None,
    )
    .await;
    assert_eq!(fixed.status, 409, "{}", fixed.text());
    server.shutdown().await;
}

/// An attempt's outcome is recorded only over the delivery it read: not over one an
/// operator requeued meanwhile, nor twice (the CI race where a stale `500` disabled a
/// webhook again just after `junction deliveries redeliver`).
async fn a_stale_attempt_changes_nothing(test: TestStore) {
    let store = test.open().await;
    let now = junction_store::now_ms();
    let state = store
        .lease_trigger("stale", "replica-a", now, now + 60_000)
        .await
        .unwrap()
        .unwrap();
    let stored = store
        .record_poll(&state, &[("k".into(), "{}".into())], &["hook".into()], now)
        .await
        .unwrap();
    assert_eq!(stored, Some(1));
    let due = |at: i64| {
        let store = store.clone();
        async move { store.due_deliveries("stale", at, 10).await.unwrap() }
    };
    let (read, _) = due(now + 1).await.remove(0);
    let failed = |read: &junction_store::DeliveryRow, at: i64| junction_store::DeliveryRow {
        state: "dead".into(),
        attempts: read.attempts + 1,
        last_status: Some(500),
        last_error: Some("the webhook answered 500".into()),
        updated_at: at,
        ..read.clone()
    };

    // Requeued (a redelivery) while the attempt was out: its failure is dropped.
    let requeued = store
        .requeue_deliveries("stale", None, false, 0, now + 5)
        .await
        .unwrap();
    assert_eq!(requeued, 1);
    assert!(
        !store
            .update_delivery(&failed(&read, now + 10), read.updated_at)
            .await
            .unwrap()
    );
    let (pending, _) = due(now + 20).await.remove(0);
    assert_eq!(
        (pending.state.as_str(), pending.attempts, pending.updated_at),
        ("pending", 0, now + 5)
    );

    // The next attempt's outcome is recorded, once.
    let delivered = junction_store::DeliveryRow {
        state: "delivered".into(),
        ..failed(&pending, now + 30)
    };
    assert!(
        store
            .update_delivery(&delivered, pending.updated_at)
            .await
            .unwrap()
    );
    assert!(
        !store
            .update_delivery(&failed(&pending, now + 40), pending.updated_at)
            .await
            .unwrap()
    );
    let rows = store
        .deliveries(&junction_store::DeliveryQuery {
            trigger: Some("stale".into()),
            state: None,
            limit: None,
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].state.as_str(), rows[0].attempts), ("delivered", 1));
    test.cleanup().await;
}

#[tokio::test]
async fn a_stale_attempt_changes_nothing_sqlite() {
    a_stale_attempt_changes_nothing(TestStore::sqlite()).await;
}

#[tokio::test]
async fn a_stale_attempt_changes_nothing_postgres() {
    a_stale_attempt_changes_nothing(TestStore::postgres()).await;
}

/// Retention: old events whose every delivery was made are deleted with those deliveries;
/// an event with a delivery pending or dead stays, and the totals do not go down.
async fn old_events_are_pruned_once_delivered(test: TestStore) {
    let store = test.open().await;
    let now = junction_store::now_ms();
    let state = store
        .lease_trigger("kept", "replica-a", now, now + 60_000)
        .await
        .unwrap()
        .unwrap();
    let events: Vec<(String, String)> = ["a", "b", "c"]
        .iter()
        .map(|k| ((*k).to_owned(), json!({"id": k}).to_string()))
        .collect();
    store
        .record_poll(&state, &events, &["hook".into()], now - 10_000)
        .await
        .unwrap();
    // a delivered after a retry, b dead, c pending.
    let due = store.due_deliveries("kept", now, 10).await.unwrap();
    assert_eq!(due.len(), 3);
    for (row, payload) in due {
        let id: Value = serde_json::from_str(&payload).unwrap();
        let state = match id["id"].as_str().unwrap() {
            "a" => "delivered",
            "b" => "dead",
            _ => continue,
        };
        let made = junction_store::DeliveryRow {
            state: state.into(),
            attempts: 2,
            updated_at: now + 1,
            ..row.clone()
        };
        // Two attempts: one read, the record of the second over the first.
        let first = junction_store::DeliveryRow {
            state: "pending".into(),
            attempts: 1,
            updated_at: now,
            ..row.clone()
        };
        assert!(store.update_delivery(&first, row.updated_at).await.unwrap());
        assert!(store.update_delivery(&made, now).await.unwrap());
    }
    let before = store.trigger_stats().await.unwrap();
    let before = before.iter().find(|s| s.trigger == "kept").unwrap().clone();
    assert_eq!((before.events, before.delivered, before.retries), (3, 1, 2));

    // Not old enough yet: nothing goes.
    assert_eq!(store.prune_events("kept", now - 20_000).await.unwrap(), 0);
    assert_eq!(store.prune_events("kept", now).await.unwrap(), 1);
    let left: Vec<String> = store
        .trigger_events("kept", 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.key.clone())
        .collect();
    assert_eq!(left, ["b", "c"]);
    let after = store.trigger_stats().await.unwrap();
    let after = after.iter().find(|s| s.trigger == "kept").unwrap().clone();
    assert_eq!(
        (
            after.events,
            after.delivered,
            after.retries,
            after.dead,
            after.pending
        ),
        (3, 1, 2, 1, 1)
    );
    let rows = store
        .deliveries(&junction_store::DeliveryQuery {
            trigger: Some("kept".into()),
            state: None,
            limit: None,
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    test.cleanup().await;
}

#[tokio::test]
async fn old_events_are_pruned_once_delivered_sqlite() {
    old_events_are_pruned_once_delivered(TestStore::sqlite()).await;
}

#[tokio::test]
async fn old_events_are_pruned_once_delivered_postgres() {
    old_events_are_pruned_once_delivered(TestStore::postgres()).await;
}

/// `keep`: a running trigger deletes its delivered events once they are older than that,
/// and `/metrics` still counts them.
#[tokio::test]
async fn a_trigger_keeps_its_events_for_keep() {
    let served = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let once = served.clone();
    let backend = Backend::start(move |_| {
        if once.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return (202, vec![("retry-after", "1".to_owned())], String::new());
        }
        let (status, mut headers, body) =
            json_answer(200, json!({"value": [{"id": "x"}, {"id": "y"}]}));
        headers.push(("retry-after", "1".to_owned()));
        (status, headers, body)
    })
    .await;
    let receiver = Receiver::start(|_| 204).await;
    let test = TestStore::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let key_file = support::master_key_file(dir.path());
    let toml = format!(
        "{}\n[trigger.feed]\nconnector = \"shop\"\noperation = \"OnFeed\"\nkeep = \"1s\"\n\
         [trigger.feed.webhook.app]\nurl = \"{}/hook\"\nsecret = \"{GOOD_SECRET}\"\n",
        test.toml(&key_file),
        receiver.backend.url(),
    );
    let server = support::gateway(vec![shop(backend.addr)], &toml).await;
    wait_until("both delivered", Duration::from_secs(20), || {
        receiver.ids().len() == 2
    })
    .await;
    let store = test.open().await;
    let until = Instant::now() + Duration::from_secs(20);
    while !store
        .trigger_events("feed", 0, 10)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < until, "the old events were not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = support::admin(&server, reqwest::Method::GET, "/metrics")
        .await
        .text();
    for line in [
        "junction_trigger_events_total{trigger=\"feed\"} 2",
        "junction_trigger_deliveries_delivered_total{trigger=\"feed\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    server.shutdown().await;
}

/// Event streams and notifications are in the access log like every other request, and a
/// hook's token is not.
#[tokio::test]
async fn trigger_requests_are_in_the_access_log() {
    let backend =
        Backend::start(|_| (202, vec![("retry-after", "60".to_owned())], String::new())).await;
    let test = TestStore::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let key_file = support::master_key_file(dir.path());
    let log = dir.path().join("access.log");
    let toml = format!(
        "{}\n[log]\naccess = true\nfile = \"{}\"\n\
         [trigger.feed]\nconnector = \"shop\"\noperation = \"OnFeed\"\n",
        test.toml(&key_file),
        log.display()
    );
    let server = support::gateway(vec![shop(backend.addr)], &toml).await;
    let key = client_key(&server, "reader", json!(["trigger:feed"])).await;
    let stream = subscribe(&server, "feed", &key, None).await;
    drop(stream);
    let data = server.data_url();
    let missing = support::client()
        .get(format!("{data}/triggers/nope/events"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let hook = support::client()
        .post(format!("{data}/hooks/feed/hook-s3cret-token"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status(), 404);
    assert!(!hook.text().await.unwrap().contains("hook-s3cret-token"));
    let (text, lines) = support::access_log(&server, &log);
    let lines: Vec<Value> = lines
        .into_iter()
        .filter(|line: &Value| {
            line["path"]
                .as_str()
                .is_some_and(|p| !p.starts_with("/connectors"))
        })
        .collect();
    let seen: Vec<(String, u64, Value)> = lines
        .iter()
        .map(|l| {
            (
                l["path"].as_str().unwrap().to_owned(),
                l["status"].as_u64().unwrap(),
                l["error"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("/triggers/feed/events".to_owned(), 200, Value::Null),
            ("/triggers/nope/events".to_owned(), 404, json!("not-found")),
            ("/hooks/feed/…".to_owned(), 404, json!("not-found")),
        ],
        "{text}"
    );
    assert!(!text.contains("hook-s3cret-token"), "{text}");
    server.shutdown().await;
}

/// Items the crash test's backend serves, and how many per poll.
const CRASH_ITEMS: u64 = 1000;
const CRASH_PAGE: u64 = 20;

/// When the paged feed answered which cursor (`after`).
type Polls = Arc<Mutex<Vec<(Instant, u64)>>>;

/// A backend serving `items` items, `page` per poll (each answer after `delay`),
/// continued by `Location: …/feed?after=N`, then `202`s; and the polls it answered.
async fn paged_feed(items: u64, page: u64, delay: Duration) -> (std::net::SocketAddr, Polls) {
    use axum::extract::{Query, State};
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;

    type Feed = (u64, u64, Duration, Polls);
    async fn feed(
        State((items, page, delay, polls)): State<Feed>,
        Query(query): Query<std::collections::HashMap<String, u64>>,
        headers: HeaderMap,
    ) -> axum::response::Response {
        tokio::time::sleep(delay).await;
        let after = query.get("after").copied().unwrap_or(0);
        polls.lock().unwrap().push((Instant::now(), after));
        let host = headers[header::HOST].to_str().unwrap().to_owned();
        if after >= items {
            return (StatusCode::ACCEPTED, [(header::RETRY_AFTER, "1")]).into_response();
        }
        let last = (after + page).min(items);
        let items: Vec<Value> = (after + 1..=last)
            .map(|n| json!({"id": n, "n": n}))
            .collect();
        let location = format!("http://{host}/api/feed?after={last}");
        (
            [
                (header::LOCATION, location.as_str()),
                (header::RETRY_AFTER, "0"),
            ],
            axum::Json(json!({"value": items})),
        )
            .into_response()
    }
    let polls: Polls = Arc::default();
    let router = axum::Router::new()
        .route("/api/feed", axum::routing::get(feed))
        .with_state((items, page, delay, polls.clone()));
    (support::start_backend(router).await, polls)
}

/// A configuration directory for `junction serve`: the feed's package (its trigger
/// `OnFeed` on `backend`), a master key, and `junction.toml` with `toml`.
fn deployment(backend: std::net::SocketAddr, toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let package = dir.path().join("connectors/feed");
    std::fs::create_dir_all(&package).unwrap();
    let definition = json!({
        "swagger": "2.0",
        "info": {"title": "Feed", "version": "1.0"},
        "host": backend.to_string(),
        "basePath": "/api",
        "schemes": ["http"],
        "paths": {"/feed": {"get": {
            "operationId": "OnFeed",
            "x-ms-trigger": "batch",
            "responses": {"200": {"description": "new items"}}
        }}}
    });
    std::fs::write(
        package.join("apiDefinition.swagger.json"),
        definition.to_string(),
    )
    .unwrap();
    support::master_key_file(dir.path());
    std::fs::write(dir.path().join("junction.toml"), toml).unwrap();
    dir
}

/// `junction serve` on `dir` (a real process, killed when dropped), as replica `name`
/// (its lease holder id starts with it).
fn serve(dir: &std::path::Path, name: &str) -> tokio::process::Child {
    tokio::process::Command::new(crate::cli::junction_binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(dir)
        .env("HOSTNAME", name)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn kill(mut gateway: tokio::process::Child) {
    gateway.start_kill().unwrap();
    gateway.wait().await.unwrap();
}

/// Every delivery a receiver got: (webhook-id, body), in order. The first attempt of every
/// tenth item is refused (a retry), each answer takes 20 ms (kills land mid-delivery).
async fn crash_receiver() -> (std::net::SocketAddr, Arc<Mutex<Vec<(String, String)>>>) {
    use axum::http::{HeaderMap, StatusCode};

    let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let log = got.clone();
    let hook = move |headers: HeaderMap, body: String| {
        let log = log.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let id = headers["webhook-id"].to_str().unwrap().to_owned();
            let n = serde_json::from_str::<Value>(&body).unwrap()["n"]
                .as_u64()
                .unwrap();
            let mut log = log.lock().unwrap();
            let first = !log.iter().any(|(seen, _)| *seen == id);
            log.push((id, body));
            if first && n.is_multiple_of(10) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::NO_CONTENT
            }
        }
    };
    let addr =
        support::start_backend(axum::Router::new().route("/hook", axum::routing::post(hook))).await;
    (addr, got)
}

/// A tiny generator for the kill times (xorshift), seeded and printed so a failure can be
/// replayed.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// 1,000 items over 50 polls while the gateway (`junction serve`, a real process) is
/// killed with SIGKILL at random points five times: exactly 1,000 events are stored, each
/// delivered at least once, and every repeated delivery carries the id and body of the
/// first.
#[tokio::test]
async fn a_gateway_killed_at_random_points_loses_and_repeats_nothing() {
    let (backend, _) = paged_feed(CRASH_ITEMS, CRASH_PAGE, Duration::from_millis(30)).await;
    let (receiver, got) = crash_receiver().await;
    let dir = deployment(
        backend,
        &format!(
            "[store]\npath = \"junction.db\"\nkey_file = \"master.key\"\n\n\
             [trigger.feed]\nconnector = \"feed\"\noperation = \"OnFeed\"\nlease = \"1s\"\n\n\
             [trigger.feed.webhook.app]\nurl = \"http://{receiver}/hook\"\nsecret = \"{GOOD_SECRET}\"\nretry = [\"100ms\"]\n"
        ),
    );
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("kill times seeded with {seed}");
    let mut kills = Vec::new();
    for _ in 0..5 {
        let gateway = serve(dir.path(), "crash");
        // Up for 0.4 to 2 s (it waits out the killed one's 1 s lease first), then SIGKILL.
        let up = Duration::from_millis(400 + next_random(&mut seed) % 1600);
        tokio::time::sleep(up).await;
        kill(gateway).await;
        kills.push((up, got.lock().unwrap().len()));
    }
    // The kills must have cut into the work, not only before or after it.
    assert!(
        kills
            .iter()
            .any(|(_, received)| (1..CRASH_ITEMS as usize).contains(received)),
        "no kill landed while events were being delivered: {kills:?}"
    );
    let gateway = serve(dir.path(), "crash");
    let location = junction_store::Location::Sqlite(dir.path().join("junction.db"));
    let store = junction_store::open(&location).await.unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let delivered = store
            .deliveries(&junction_store::DeliveryQuery {
                trigger: Some("feed".into()),
                state: Some("delivered".into()),
                limit: Some(1000),
            })
            .await
            .unwrap()
            .len();
        if delivered as u64 == CRASH_ITEMS {
            break;
        }
        assert!(
            Instant::now() < until,
            "{delivered} of {CRASH_ITEMS} delivered after the kills at {kills:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    kill(gateway).await;

    // Exactly the 1,000 items, each once.
    let events = store.trigger_events("feed", 0, 5000).await.unwrap();
    let mut numbers: Vec<u64> = events
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(&e.payload).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=CRASH_ITEMS).collect::<Vec<u64>>());

    // Each delivered at least once; a repeat has the first one's id and body.
    let got = got.lock().unwrap().clone();
    let mut first: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for (id, body) in &got {
        let body_first = *first.entry(id).or_insert(body);
        assert_eq!(body_first, body, "{id} was delivered with two bodies");
    }
    assert_eq!(first.len() as u64, CRASH_ITEMS);
    let repeats = got.len() - first.len();
    assert!(
        repeats as u64 >= CRASH_ITEMS / 10,
        "only {repeats} repeated deliveries"
    );
    println!(
        "killed after (up, deliveries received) {kills:?}; {} events, {} deliveries ({repeats} repeated, same ids)",
        events.len(),
        got.len()
    );
}

/// Two replicas on one PostgreSQL store poll one trigger: while both live each page is
/// polled once, by the lease holder; killed (SIGKILL), the holder's trigger moves to the
/// other within the lease and a third of it (the documented bound), and every item is
/// stored once.
#[tokio::test]
async fn two_replicas_poll_each_page_once_and_take_over_from_a_killed_one() {
    const ITEMS: u64 = 100;
    let lease = Duration::from_secs(2);
    let (backend, polls) = paged_feed(ITEMS, 5, Duration::from_millis(100)).await;
    let test = TestStore::postgres();
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = support::master_key_file(key_dir.path());
    let dir = deployment(
        backend,
        &format!(
            "{}\n[trigger.feed]\nconnector = \"feed\"\noperation = \"OnFeed\"\nlease = \"2s\"\n",
            test.toml(&key_file)
        ),
    );
    let mut replicas = vec![("a", serve(dir.path(), "a")), ("b", serve(dir.path(), "b"))];
    let until = Instant::now() + Duration::from_secs(60);
    while polls.lock().unwrap().len() < 6 {
        assert!(Instant::now() < until, "the replicas do not poll");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let store = test.open().await;
    let holder = || async {
        store
            .trigger("feed")
            .await
            .unwrap()
            .unwrap()
            .lease_owner
            .unwrap()
    };
    let holder_now = holder().await;
    let index = replicas
        .iter()
        .position(|(name, _)| holder_now.starts_with(&format!("{name}-")))
        .unwrap_or_else(|| panic!("holder {holder_now}"));
    let (killed, gateway) = replicas.remove(index);
    let polls_before = polls.lock().unwrap().len();
    kill(gateway).await;
    let killed_at = Instant::now();

    // The other one goes on to the end.
    while !polls
        .lock()
        .unwrap()
        .iter()
        .any(|(_, after)| *after == ITEMS)
    {
        assert!(
            Instant::now() < until,
            "no replica finished: {:?}",
            polls.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let polls = polls.lock().unwrap().clone();
    let resumed = polls
        .iter()
        .find(|(at, _)| *at > killed_at)
        .map(|(at, _)| at.duration_since(killed_at))
        .unwrap();
    assert!(
        resumed <= lease + lease / 3 + Duration::from_millis(500),
        "taken over after {resumed:?}"
    );
    let (survivor, _) = &replicas[0];
    let holder = holder().await;
    assert!(
        holder.starts_with(&format!("{survivor}-")),
        "{holder} after {killed} was killed"
    );

    // Both alive: each cursor polled once. Across the kill, at most the page in flight
    // is polled again.
    let cursors = |polls: &[(Instant, u64)]| {
        let mut cursors: Vec<u64> = polls
            .iter()
            .map(|(_, after)| *after)
            .filter(|after| *after < ITEMS)
            .collect();
        let all = cursors.len();
        cursors.sort_unstable();
        cursors.dedup();
        all - cursors.len()
    };
    assert_eq!(cursors(&polls[..polls_before]), 0, "{polls:?}");
    assert!(cursors(&polls) <= 1, "{polls:?}");
    let events = store.trigger_events("feed", 0, 1000).await.unwrap();
    assert_eq!(events.len() as u64, ITEMS);
    println!("replica {killed} killed; {survivor} polled again after {resumed:?}");
    drop(replicas);
    test.cleanup().await;
}

/// A corpus package's `pollingtrigger` (Feathery Forms' DataReceived: `triggerConfig`
/// `last_requested_at = @{triggerBody().requested_at}`, `triggerDataPath`
/// `@triggerBody().results`) against a mock whose answers drive the cursor: the first poll
/// only sets it, each later one sends the last answer's `requested_at` and fires the
/// results; the package's `/trigger` path prefix is not sent to the backend. One answer
/// has a next page (`@odata.nextLink`, the default of `x-ms-triggerConfig-nextLink`): it
/// is polled next, fires its results, and leaves the cursor to the answer before it.
#[tokio::test]
async fn a_corpus_pollingtrigger_is_driven_by_the_answers() {
    let base: Arc<OnceLock<String>> = Arc::default();
    let script_base = base.clone();
    let backend = Backend::start(move |seen| {
        if seen.query.as_deref() == Some("page=2") {
            // The next page: its requested_at is not the cursor.
            return json_answer(
                200,
                json!({"requested_at": "T9", "results": [{"id": "s3"}]}),
            );
        }
        let cursor = seen
            .query
            .as_deref()
            .and_then(|q| {
                q.split('&')
                    .find_map(|p| p.strip_prefix("last_requested_at="))
            })
            .unwrap_or("");
        let (requested_at, results) = match cursor {
            "" => ("T1", json!([{"id": "old-1"}, {"id": "old-2"}])),
            "T1" => ("T2", json!([{"id": "s1"}])),
            "T2" => ("T3", json!([])),
            "T3" => {
                let next = format!(
                    "{}/api/power-automate/poll/data_received/?page=2",
                    script_base.get().unwrap()
                );
                return json_answer(
                    200,
                    json!({"requested_at": "T4", "results": [{"id": "s2"}],
                           "@odata.nextLink": next}),
                );
            }
            _ => ("T4", json!([])),
        };
        json_answer(
            200,
            json!({"requested_at": requested_at, "results": results}),
        )
    })
    .await;
    base.set(backend.url()).unwrap();
    let loaded = junction_import::load(&crate::harness::package("Feathery Forms"));
    let connector = loaded.connector.unwrap();
    assert_eq!(connector.name, "feathery-forms");
    let test = TestStore::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let key_file = support::master_key_file(dir.path());
    let toml = format!(
        "{}\n[connector.feathery-forms]\nbackend = \"{}/api\"\n[connector.feathery-forms.connection]\napi_key = \"Token abc\"\n\
         [trigger.signups]\nconnector = \"feathery-forms\"\noperation = \"DataReceived\"\ninterval = \"200ms\"\n\
         [trigger.signups.parameters]\nform_key = \"signup\"\n",
        test.toml(&key_file),
        backend.url()
    );
    let server = support::gateway(vec![connector], &toml).await;
    let cursors = || -> Vec<String> {
        backend
            .seen()
            .iter()
            .map(|seen| seen.query.clone().unwrap_or_default())
            .collect()
    };
    wait_until("six polls", Duration::from_secs(20), || {
        cursors().len() >= 6
    })
    .await;
    assert_eq!(
        cursors()[..6],
        [
            "form_key=signup",
            "form_key=signup&last_requested_at=T1",
            "form_key=signup&last_requested_at=T2",
            "form_key=signup&last_requested_at=T3",
            "page=2",
            "form_key=signup&last_requested_at=T4",
        ]
    );

    let first = &backend.seen()[0];
    assert_eq!(first.path, "/api/power-automate/poll/data_received/");
    assert_eq!(first.header("authorization").as_deref(), Some("Token abc"));
    let store = test.open().await;
    let events = store.trigger_events("signups", 0, 100).await.unwrap();
    let ids: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.payload).unwrap()["id"].clone())
        .collect();
    assert_eq!(ids, [json!("s1"), json!("s2"), json!("s3")]);
    let state = store.trigger("signups").await.unwrap().unwrap();
    assert_eq!(
        state.query.as_deref(),
        Some(r#"{"last_requested_at":"T4"}"#)
    );
    server.shutdown().await;
}

/// A `hooks` connector whose trigger `OnPush` subscribes with a callback URL
/// (`x-ms-notification-url`) and whose notifications have a schema
/// (`x-ms-notification-content`).
fn hooks_connector(backend: std::net::SocketAddr) -> junction_model::Connector {
    let mut on_push = support::op(Method::Post, "/hooks", "OnPush").json_body(
        json!({"type": "object", "properties": {
            "event": {"type": "string"},
            "config": {"type": "object", "properties": {
                "url": {"type": "string", "x-ms-notification-url": true}
            }}
        }}),
        true,
    );
    on_push
        .extensions
        .insert("x-ms-trigger".into(), json!("single"));
    on_push.extensions.insert(
        "x-ms-notification-content".into(),
        json!({"schema": {"type": "object", "required": ["id"],
                          "properties": {"id": {"type": "string"}, "action": {"type": "string"}}}}),
    );
    support::connector("hooks", backend, vec![on_push])
}

/// Webhook trigger lifecycle against a test backend: one subscription with the
/// gateway's callback URL (where the package's schema marks it); notifications stored
/// once, checked against the schema, refused without the right token; after a restart the
/// stored subscription is checked, not made again; a removed trigger's subscription is
/// ended (`DELETE` to its `Location`); with `renew`, a new subscription is made before
/// the old one is ended.
#[tokio::test]
async fn webhook_triggers_subscribe_once_renew_and_unsubscribe() {
    let active: Arc<Mutex<Vec<u64>>> = Arc::default();
    let base: Arc<OnceLock<String>> = Arc::default();
    let (live, url) = (active.clone(), base.clone());
    let made = std::sync::atomic::AtomicU64::new(0);
    let backend = Backend::start(move |seen| {
        let mut live = live.lock().unwrap();
        let id = seen
            .path
            .strip_prefix("/api/hooks/")
            .and_then(|n| n.parse::<u64>().ok());
        match (seen.method.as_str(), id) {
            ("POST", None) => {
                let next = made.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                live.push(next);
                let location = format!("{}/api/hooks/{next}", url.get().unwrap());
                let (_, mut headers, body) = json_answer(201, json!({"id": next}));
                headers.push(("location", location));
                (201, headers, body)
            }
            ("GET", Some(n)) if live.contains(&n) => json_answer(200, json!({"id": n})),
            ("DELETE", Some(n)) if live.contains(&n) => {
                live.retain(|m| *m != n);
                (204, Vec::new(), String::new())
            }
            _ => (404, Vec::new(), String::new()),
        }
    })
    .await;
    base.set(backend.url()).unwrap();
    let requests = || -> Vec<String> {
        backend
            .seen()
            .iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect()
    };
    let test = TestStore::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let key_file = support::master_key_file(dir.path());
    let store_toml = test.toml(&key_file);
    let trigger = "[trigger.pushes]\nconnector = \"hooks\"\noperation = \"OnPush\"\n[trigger.pushes.body]\nevent = \"push\"\n";
    let with_trigger = format!("{store_toml}\n{trigger}");

    // Subscribed once, with the callback URL in `config.url`.
    let server = support::gateway(vec![hooks_connector(backend.addr)], &with_trigger).await;
    wait_until("subscribed", Duration::from_secs(20), || {
        requests().len() == 1
    })
    .await;
    assert_eq!(requests(), ["POST /api/hooks"]);
    let subscription = backend.seen()[0].json();
    assert_eq!(subscription["event"], "push");
    let callback = subscription["config"]["url"].as_str().unwrap().to_owned();
    let prefix = format!("{}/hooks/pushes/", server.data_url());
    assert!(callback.starts_with(&prefix), "{callback}");

    // Notifications: stored once, checked against the package's schema, and only with
    // the token of the URL.
    let notify = |url: String, body: Value| async move { support::post_json(url, &body).await };
    let stored = notify(callback.clone(), json!({"id": "e1", "action": "opened"})).await;
    assert_eq!(stored.status, 200, "{}", stored.text());
    assert_eq!(stored.json(), json!({"stored": 1}));
    let again = notify(callback.clone(), json!({"id": "e1", "action": "opened"})).await;
    assert_eq!(again.json(), json!({"stored": 0}));
    let invalid = notify(callback.clone(), json!({"action": 5})).await;
    let problem = invalid.problem(400, "invalid-request");
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2, "{problem}");
    notify(format!("{prefix}0000"), json!({"id": "e2"}))
        .await
        .problem(404, "not-found");
    let store = test.open().await;
    assert_eq!(
        store.trigger_events("pushes", 0, 10).await.unwrap().len(),
        1
    );

    // A restart checks the stored subscription instead of making another.
    server.shutdown().await;
    let server = support::gateway(vec![hooks_connector(backend.addr)], &with_trigger).await;
    wait_until("checked", Duration::from_secs(20), || requests().len() == 2).await;
    assert_eq!(requests()[1], "GET /api/hooks/1");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(requests().len(), 2, "{:?}", requests());

    // Taken out of the configuration: its subscription is ended, its state forgotten.
    server.shutdown().await;
    let server = support::gateway(vec![hooks_connector(backend.addr)], &store_toml).await;
    wait_until("unsubscribed", Duration::from_secs(20), || {
        requests().len() == 3
    })
    .await;
    assert_eq!(requests()[2], "DELETE /api/hooks/1");
    assert!(active.lock().unwrap().is_empty());
    assert_eq!(store.trigger("pushes").await.unwrap(), None);
    server.shutdown().await;

    // With `renew`: a new subscription, then the old one ended, every second.
    let renewing = with_trigger.replace(
        "operation = \"OnPush\"\n",
        "operation = \"OnPush\"\nrenew = \"1s\"\n",
    );
    let server = support::gateway(vec![hooks_connector(backend.addr)], &renewing).await;
    wait_until("renewed", Duration::from_secs(20), || requests().len() >= 5).await;
    let log = requests();
    assert_eq!(log[3], "POST /api/hooks");
    assert_eq!(log[4], "POST /api/hooks");
    wait_until("old one ended", Duration::from_secs(20), || {
        requests().len() >= 6
    })
    .await;
    let log = requests();
    let first_new = log[3..]
        .iter()
        .position(|r| r == "POST /api/hooks")
        .unwrap()
        + 3;
    let ended = log
        .iter()
        .position(|r| r.starts_with("DELETE /api/hooks/") && r != "DELETE /api/hooks/1")
        .unwrap();
    assert!(
        ended > first_new + 1,
        "the old subscription ended before the new one was made: {log:?}"
    );
    assert!(
        active.lock().unwrap().len() <= 2,
        "{:?}",
        active.lock().unwrap()
    );
    server.shutdown().await;
}
