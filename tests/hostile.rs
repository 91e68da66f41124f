//! Hostile input, as an attacker sends it: forged and poisoned paging links, silent and
//! slow connections, oversized admin bodies, ambiguous JSON and request heads, and the
//! attacks that already fail (smuggling, CRLF, traversal, NUL and invalid UTF-8, deep
//! JSON, SSRF). Each test asserts the status, the problem+json body, and what the backend
//! did or did not receive. docs/security.md explains each refusal.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use junction_model::{ApiProperties, Method, ParamLocation, PolicyInstance};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

// ------------------------------------------------------------------------ paging links

/// A backend with two pages under `/api/items` (and `/api/other`), and something no client
/// should reach at any other path.
async fn paged_backend() -> Backend {
    Backend::start(|seen| {
        let host = seen.header("host").unwrap();
        let query = seen.query.clone().unwrap_or_default();
        match seen.path.as_str() {
            "/api/items" | "/api/other" if query.contains("page=2") => {
                json_answer(200, json!({"items": [2]}))
            }
            "/api/items" | "/api/other" => json_answer(
                200,
                json!({"items": [1], "next": format!("http://{host}{}?{query}&page=2", seen.path)}),
            ),
            _ => json_answer(200, json!({"secret": "not for clients"})),
        }
    })
    .await
}

/// `paged`: `ListItems` (`GET /items?q=`) and `ListOther` (`GET /other`), both pageable,
/// with the package's `updatenextlink`; `Plain` (`GET /plain`) has no policy.
fn paged_connector(backend: SocketAddr) -> junction_model::Connector {
    let pageable = json!({"nextLinkName": "next", "itemName": "items"});
    let mut items = op(Method::Get, "/items", "ListItems").param(param(
        "q",
        ParamLocation::Query,
        json!({"type": "string"}),
    ));
    items
        .extensions
        .insert("x-ms-pageable".into(), pageable.clone());
    let mut other = op(Method::Get, "/other", "ListOther");
    other.extensions.insert("x-ms-pageable".into(), pageable);
    let mut c = connector(
        "paged",
        backend,
        vec![items, other, op(Method::Get, "/plain", "Plain")],
    );
    c.properties = Some(ApiProperties {
        policy_template_instances: vec![PolicyInstance {
            template_id: "updatenextlink".into(),
            title: None,
            parameters: serde_json::from_value(json!({
                "x-ms-apimTemplateParameter.nextLinkPropertyName": "next",
                "x-ms-apimTemplate-operationName": ["ListItems", "ListOther"]
            }))
            .unwrap(),
            pointer: "/properties/policyTemplateInstances/0".into(),
        }],
        ..ApiProperties::default()
    });
    c
}

const PAGED_CACHE: &str = "[connector.paged.cache]\nttl = \"60s\"\n";

/// Defects 1 and 2: a cached pageable operation keys each page by the link it continues
/// (following page 1's link gives page 2, from the backend and then from the cache), and a
/// `junction-next` the gateway did not issue reaches no backend path.
#[tokio::test]
async fn cached_pages_follow_their_own_links_and_forged_links_reach_nothing() {
    let backend = paged_backend().await;
    let gw = gateway(vec![paged_connector(backend.addr)], PAGED_CACHE).await;
    let first = format!("{}/connectors/paged/items?q=x", gw.data_url());

    let page1 = fetch(first.clone()).await;
    assert_eq!((page1.status, x_cache(&page1)), (200, "MISS"));
    assert_eq!(page1.json()["items"], json!([1]));
    let next = page1.json()["next"].as_str().unwrap().to_owned();
    assert_eq!(signed_next_link(&next, &first), "/items?q=x&page=2");

    let page2 = fetch(next.clone()).await;
    assert_eq!((page2.status, x_cache(&page2)), (200, "MISS"));
    assert_eq!(page2.json(), json!({"items": [2]}));
    // Both pages now come from the cache, each under its own key.
    let again = fetch(first.clone()).await;
    assert_eq!(
        (x_cache(&again), again.json()["items"].clone()),
        ("HIT", json!([1]))
    );
    let again = fetch(next.clone()).await;
    assert_eq!(
        (x_cache(&again), again.json()),
        ("HIT", json!({"items": [2]}))
    );
    assert_eq!(backend.seen().len(), 2);

    // Links the gateway did not issue: a bare path (the old form), a token for another
    // path, a token cut short. None reaches the backend; none is cached under page 1.
    let token = next.split("junction-next=").nth(1).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let forged_path = {
        use base64::Engine;
        let admin = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("/admin");
        format!("v1.{}.{admin}.{}", parts[1], parts[3])
    };
    for forged in [
        "%2Fany%2Fpath".to_owned(),
        forged_path,
        token[..token.len() - 2].to_owned(),
        format!("{token}x"),
    ] {
        let reply = fetch(format!("{first}&junction-next={forged}")).await;
        let problem = reply.problem(400, "invalid-request");
        assert_eq!(problem["errors"][0]["name"], "junction-next", "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("not a next link this gateway issued"),
            "{problem}"
        );
    }
    assert_eq!(backend.seen().len(), 2, "{:#?}", backend.seen());
    let again = fetch(first.clone()).await;
    assert_eq!(
        (x_cache(&again), again.json()["items"].clone()),
        ("HIT", json!([1]))
    );

    // A link is for the operation it continues: not another one, nor one without links.
    let other = format!(
        "{}/connectors/paged/other?junction-next={token}",
        gw.data_url()
    );
    fetch(other).await.problem(400, "invalid-request");
    let plain = fetch(format!(
        "{}/connectors/paged/plain?junction-next={token}",
        gw.data_url()
    ))
    .await;
    let problem = plain.problem(400, "invalid-request");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("hands out no next links"),
        "{problem}"
    );
    assert_eq!(backend.seen().len(), 2);
    gw.shutdown().await;
}

/// A link is valid for `[next_links] ttl` only; and links signed with `[next_links] key`
/// are accepted by every gateway with that key (replicas), by no other.
#[tokio::test]
async fn next_links_expire_and_need_the_shared_key() {
    let backend = paged_backend().await;
    let keyed = "[next_links]\nkey = \"a secret every replica shares\"\nttl = \"1s\"\n";
    let one = gateway(vec![paged_connector(backend.addr)], keyed).await;
    let two = gateway(vec![paged_connector(backend.addr)], keyed).await;
    let other = gateway(
        vec![paged_connector(backend.addr)],
        "[next_links]\nkey = \"another secret, another fleet\"\n",
    )
    .await;
    let first = format!("{}/connectors/paged/items?q=x", one.data_url());
    let next = fetch(first.clone()).await.json()["next"]
        .as_str()
        .unwrap()
        .to_owned();
    let on = |gw: &junction_server::RunningServer| next.replace(&one.data_url(), &gw.data_url());
    assert_eq!(fetch(on(&two)).await.json(), json!({"items": [2]}));
    fetch(on(&other)).await.problem(400, "invalid-request");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = fetch(next.clone()).await.problem(400, "invalid-request");
    assert!(
        expired["detail"].as_str().unwrap().contains("has expired"),
        "{expired}"
    );
    assert_eq!(backend.seen().len(), 2);
    for gw in [one, two, other] {
        gw.shutdown().await;
    }
}

/// Defect 3: links are built for each request from its own `Host` (cached answers keep
/// what the backend said), and a `Host` that is not a host and port is refused.
#[tokio::test]
async fn the_host_header_never_reaches_another_clients_links() {
    let backend = paged_backend().await;
    let gw = gateway(vec![paged_connector(backend.addr)], PAGED_CACHE).await;
    let path = "/connectors/paged/items?q=x";

    let poisoned = raw_bytes(
        gw.data_addr,
        format!("GET {path} HTTP/1.1\r\nHost: a\"b<c>\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(poisoned.starts_with("HTTP/1.1 400"), "{poisoned}");
    assert!(
        poisoned.contains("application/problem+json") && poisoned.contains("Host header"),
        "{poisoned}"
    );
    assert!(backend.seen().is_empty());

    // A client naming another (valid) host gets links to it: its own request.
    let theirs = raw_bytes(
        gw.data_addr,
        format!("GET {path} HTTP/1.1\r\nHost: evil.example:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    let body = theirs.split_once("\r\n\r\n").unwrap().1;
    let theirs: Value = serde_json::from_str(body).unwrap();
    let link = theirs["next"].as_str().unwrap().to_owned();
    assert!(
        link.starts_with("http://evil.example:8080/connectors/paged/items?q=x&junction-next="),
        "{link}"
    );
    // Everyone else, from the same cache entry, gets links to the gateway they called.
    let mine = fetch(format!("{}{path}", gw.data_url())).await;
    assert_eq!(x_cache(&mine), "HIT");
    let link = mine.json()["next"].as_str().unwrap().to_owned();
    assert_eq!(
        signed_next_link(&link, &format!("{}{path}", gw.data_url())),
        "/items?q=x&page=2"
    );
    assert_eq!(backend.seen().len(), 1);
    gw.shutdown().await;
}

// ------------------------------------------------------------------------ connections

/// Reads from `stream` until the server closes it (or `limit` passes); whatever it said.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&answer).into_owned()),
            Ok(Ok(n)) => answer.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Reads from `stream` until one whole answer has arrived (its head and the body its
/// `Content-Length` announces) or the server closes; `None` if neither happens in `limit`.
async fn answer_of(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return Some(text);
            }
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(text),
            Ok(Ok(n)) => answer.extend_from_slice(&buffer[..n]),
        }
    }
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Defect 4: 1,000 connections that never send a byte (to both listeners), HTTP/2
/// connections that send only their preface, and 100 request bodies that stop halfway are
/// all closed within the documented timeouts, while other clients keep getting answers;
/// then the process holds as many file descriptors as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_and_slow_bodies_are_closed_in_time() {
    let echo = start_echo().await;
    let svc = connector(
        "svc",
        echo,
        vec![
            op(Method::Get, "/items", "ListItems"),
            op(Method::Post, "/items", "CreateItem").json_body(
                json!({"type": "object", "properties": {"name": {"type": "string"}}}),
                true,
            ),
        ],
    );
    let gw = gateway(
        vec![svc],
        "[limits]\nheader_timeout = \"1s\"\nbody_timeout = \"2s\"\nidle_timeout = \"2s\"\n",
    )
    .await;
    // Warm the client pool and the backend's, so that only what this test opens counts.
    assert_eq!(
        fetch(format!("{}/connectors/svc/items", gw.data_url()))
            .await
            .status,
        200
    );
    let before = open_descriptors();

    let started = Instant::now();
    let mut silent = Vec::new();
    for i in 0..1000 {
        let addr = if i % 5 == 0 {
            gw.admin_addr
        } else {
            gw.data_addr
        };
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut prefaces = Vec::new();
    for _ in 0..10 {
        let mut stream = TcpStream::connect(gw.data_addr).await.unwrap();
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .unwrap();
        prefaces.push(stream);
    }
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut stream = TcpStream::connect(gw.data_addr).await.unwrap();
        stream
            .write_all(
                b"POST /connectors/svc/items HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":",
            )
            .await
            .unwrap();
        slow.push(stream);
    }

    // Other clients are served meanwhile.
    for _ in 0..20 {
        let reply = fetch(format!("{}/connectors/svc/items", gw.data_url())).await;
        assert_eq!(reply.status, 200);
        let health = admin(&gw, reqwest::Method::GET, "/api/v1/connectors").await;
        assert_eq!(health.status, 200);
    }

    // Silent ones: closed once the header timeout (1 s) has passed, without an answer.
    for stream in silent.iter_mut().chain(prefaces.iter_mut()) {
        let said = until_closed(stream, Duration::from_secs(4)).await;
        let said = said.expect("a silent connection was still open 4 s after it was accepted");
        assert!(!said.contains("HTTP/1.1 200"), "{said}");
    }
    // Slow bodies: 408 problem+json once the body timeout (2 s) has passed, then closed.
    for stream in &mut slow {
        let said = until_closed(stream, Duration::from_secs(5))
            .await
            .expect("a slow body's connection was still open 5 s after it started");
        assert!(said.starts_with("HTTP/1.1 408"), "{said}");
        assert!(said.contains("request-timeout"), "{said}");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    drop((silent, prefaces, slow));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = open_descriptors();
    assert!(
        after <= before + 4,
        "file descriptors: {before} before, {after} after"
    );
    gw.shutdown().await;
}

/// An idle keep-alive connection is closed after `idle_timeout`; one that keeps asking is
/// not.
#[tokio::test]
async fn idle_keep_alive_connections_close_after_the_idle_timeout() {
    let gw = gateway(vec![], "[limits]\nidle_timeout = \"1s\"\n").await;
    let mut stream = TcpStream::connect(gw.data_addr).await.unwrap();
    for _ in 0..3 {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = [0u8; 512];
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(buffer[..n].starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let said = until_closed(&mut stream, Duration::from_secs(3)).await;
    assert_eq!(said.as_deref(), Some(""), "closed without another word");
    gw.shutdown().await;
}

/// A kept-alive connection stays open for its `idle_timeout` even when that is longer than
/// `header_timeout` (hyper's header-read timer once closed it at `header_timeout`; found by
/// the 10,000-idle-connections benchmark).
#[tokio::test]
async fn kept_alive_connections_outlive_the_header_timeout() {
    let gw = gateway(
        vec![],
        "[limits]\nheader_timeout = \"1s\"\nidle_timeout = \"3s\"\n",
    )
    .await;
    let mut stream = TcpStream::connect(gw.data_addr).await.unwrap();
    for pause in [0, 2_000] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = [0u8; 512];
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(
            buffer[..n].starts_with(b"HTTP/1.1 200"),
            "after {pause} ms idle: {}",
            String::from_utf8_lossy(&buffer[..n])
        );
    }
    let said = until_closed(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(said.as_deref(), Some(""), "closed after idle_timeout");
    gw.shutdown().await;
}

// ------------------------------------------------------------------------ admin bodies

/// Defect 5: the admin listener refuses a body over `limits.max_body_bytes`, declared or
/// streamed, with 413 problem+json, without reading it whole.
#[tokio::test]
async fn admin_bodies_are_bounded() {
    let gw = gateway(vec![], "[limits]\nmax_body_bytes = \"64KiB\"\n").await;
    let url = format!("{}/api/v1/connectors/none/operations/x/try", gw.admin_url());

    // Declared: answered before any of the 64 MiB is sent.
    let mut stream = TcpStream::connect(gw.admin_addr).await.unwrap();
    stream
        .write_all(
            format!(
                "POST /api/v1/connectors/none/operations/x/try HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 67108864\r\n\r\n",
                gw.admin_addr
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let said = answer_of(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(said.starts_with("HTTP/1.1 413"), "{said}");
    assert!(said.contains("application/problem+json"), "{said}");
    // The rest of the body is never read: the connection closes.
    assert!(
        until_closed(&mut stream, Duration::from_secs(2))
            .await
            .is_some()
    );

    // Streamed without a length: cut off at the limit.
    let chunks = futures_util::stream::iter(
        (0..64).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 16 * 1024]))),
    );
    let reply = collect(
        client()
            .post(&url)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let problem = reply.problem(413, "payload-too-large");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("max_body_bytes"),
        "{problem}"
    );
    gw.shutdown().await;
}

// ------------------------------------------------------------------------ ambiguous input

/// A backend that records requests and echoes them.
async fn recorder() -> Backend {
    Backend::start(|seen| {
        json_answer(
            200,
            json!({"path": seen.path, "query": seen.query, "body": String::from_utf8_lossy(&seen.body)}),
        )
    })
    .await
}

fn strict_connector(backend: SocketAddr) -> junction_model::Connector {
    connector(
        "strict",
        backend,
        vec![
            op(Method::Post, "/people", "CreatePerson").json_body(
                json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 5}}}),
                true,
            ),
            op(Method::Get, "/people/{id}", "GetPerson")
                .param(param("id", ParamLocation::Path, json!({"type": "string"})))
                .param(param("q", ParamLocation::Query, json!({"type": "string"}))),
        ],
    )
}

/// Defect 6: an object that names a key twice is refused, since the backend might read
/// the other value than the one validated.
#[tokio::test]
async fn json_with_a_key_twice_is_refused() {
    let backend = recorder().await;
    let gw = gateway(vec![strict_connector(backend.addr)], "").await;
    let url = format!("{}/connectors/strict/people", gw.data_url());
    let long = "x".repeat(60);
    let reply = collect(
        client()
            .post(&url)
            .header("content-type", "application/json")
            .body(format!("{{\"name\":\"{long}\",\"name\":\"ok\"}}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let problem = reply.problem(400, "invalid-request");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("\"name\" appears twice"),
        "{problem}"
    );
    // Not UTF-8 JSON: refused, whatever the bytes.
    let reply = collect(
        client()
            .post(&url)
            .header("content-type", "application/json; charset=utf-16")
            .body("{\"name\":\"ok\"}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.problem(415, "unsupported-media-type");
    // Nesting past serde's depth limit.
    let deep = "[".repeat(5000) + &"]".repeat(5000);
    let reply = collect(
        client()
            .post(&url)
            .header("content-type", "application/json")
            .body(deep)
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.problem(400, "invalid-request");
    assert!(backend.seen().is_empty(), "{:#?}", backend.seen());
    gw.shutdown().await;
}

/// Defect 10 (paths): a `%` without two hex digits, a NUL or bytes that are not UTF-8 in a
/// path segment, a NUL in a query value, and a dot segment are refused; what is accepted
/// (`/`, `..` inside a value, CR and LF) travels as one encoded segment or value.
#[tokio::test]
async fn paths_and_values_that_backends_could_read_otherwise_are_refused() {
    let backend = recorder().await;
    let gw = gateway(vec![strict_connector(backend.addr)], "").await;
    for (target, why) in [
        ("/connectors/strict/people/a%zzb", "two hex digits"),
        ("/connectors/strict/people/a%2", "two hex digits"),
        ("/connectors/strict/people/a%00b", "NUL"),
        ("/connectors/strict/people/%ff%fe", "not UTF-8"),
        ("/connectors/strict/people/%2e%2e", "dot segment"),
        ("/connectors/strict/people/ok?q=a%00b", "NUL"),
    ] {
        let reply = raw(gw.data_addr, "GET", target, &[], Bytes::new()).await;
        let problem = reply.problem(400, "invalid-request");
        let text = problem.to_string();
        assert!(text.contains(why), "{target}: {problem}");
    }
    assert!(backend.seen().is_empty(), "{:#?}", backend.seen());
    // Traversal and CRLF inside values stay inside their segment or value.
    let reply = raw(
        gw.data_addr,
        "GET",
        "/connectors/strict/people/..%2F..%2Fadmin%0D%0AX-Evil:%201?q=a%0D%0AX-Evil:1",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let seen = backend.only();
    assert_eq!(seen.path, "/api/people/..%2F..%2Fadmin%0D%0AX-Evil%3A%201");
    assert_eq!(seen.query.as_deref(), Some("q=a%0D%0AX-Evil%3A1"));
    assert!(seen.header("x-evil").is_none());
    gw.shutdown().await;
}

/// What a client and the gateway's parser could read in two ways is refused before any
/// plane sees it: HTTP/1.1 without `Host`, two `Host`s, a body framed twice. Request
/// smuggling (`Content-Length` with `Transfer-Encoding`, two lengths) is refused by the
/// HTTP parser itself.
#[tokio::test]
async fn ambiguous_request_heads_are_refused() {
    let backend = recorder().await;
    let gw = gateway(vec![strict_connector(backend.addr)], "").await;
    let problem_heads: [(&str, &str); 3] = [
        (
            "GET /connectors/strict/people/a HTTP/1.1\r\n\r\n",
            "Host header",
        ),
        (
            "GET /connectors/strict/people/a HTTP/1.1\r\nHost: gw\r\nHost: other\r\n\r\n",
            "more than one Host",
        ),
        (
            "POST /connectors/strict/people HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\nD\r\n{\"name\":\"a\"}\r\n0\r\n\r\n",
            "single `chunked`",
        ),
    ];
    for (head, why) in problem_heads {
        for addr in [gw.data_addr, gw.admin_addr] {
            let said = raw_bytes(addr, head.as_bytes()).await;
            assert!(said.starts_with("HTTP/1.1 400"), "{head:?}: {said}");
            assert!(said.contains("application/problem+json"), "{said}");
            assert!(said.contains(why), "{head:?}: {said}");
        }
    }
    for smuggled in [
        "POST /connectors/strict/people HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /connectors/strict/people/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n",
        "POST /connectors/strict/people HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 13\r\nContent-Length: 2\r\n\r\n{\"name\":\"a\"}",
        "GET /connectors/strict/people/a HTTP/1.1\r\nHost: gw\r\nX-Evil: a\rb\r\n\r\n",
    ] {
        let said = raw_bytes(gw.data_addr, smuggled.as_bytes()).await;
        assert!(said.starts_with("HTTP/1.1 400"), "{smuggled:?}: {said}");
        assert!(!said.contains("HTTP/1.1 200"), "{said}");
    }
    assert!(backend.seen().is_empty(), "{:#?}", backend.seen());
    gw.shutdown().await;
}

// ------------------------------------------------------------------------ answers

/// Defect 7 and 10: a backend speaking HTTP/1.0 does not downgrade the client's connection
/// (two requests on one connection, both answered as HTTP/1.1), and the backend's `Server`
/// header is not passed on.
#[tokio::test]
async fn backends_do_not_downgrade_or_name_themselves_to_clients() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let old = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(b"HTTP/1.0 200 OK\r\nServer: Apache/2.2.3 (CentOS)\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"old\":true}")
                    .await;
            });
        }
    });
    let gw = gateway(
        vec![connector(
            "old",
            old,
            vec![op(Method::Get, "/thing", "GetThing")],
        )],
        "",
    )
    .await;
    let stream = TcpStream::connect(gw.data_addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    for _ in 0..2 {
        let request = http::Request::get("/connectors/old/thing")
            .header("host", gw.data_addr.to_string())
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), http::Version::HTTP_11);
        assert!(
            response.headers().get("server").is_none(),
            "{:?}",
            response.headers()
        );
        assert_ne!(
            response.headers().get("connection").map(|v| v.as_bytes()),
            Some(b"close".as_slice())
        );
        use http_body_util::BodyExt;
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "{\"old\":true}");
    }
    gw.shutdown().await;
}

/// Defect 8: every error answer of the admin listener is problem+json, the framework's own
/// rejections included: a query it cannot read, a method a route does not take, a console
/// asset that does not exist.
#[tokio::test]
async fn every_admin_error_is_problem_json() {
    let gw = gateway(vec![], "").await;
    let reply = admin(&gw, reqwest::Method::GET, "/api/v1/audit?limit=abc").await;
    let problem = reply.problem(400, "invalid-request");
    assert!(
        problem["detail"].as_str().unwrap().contains("limit"),
        "{problem}"
    );
    let reply = admin(&gw, reqwest::Method::GET, "/api/v1/audit?unknown=1").await;
    reply.problem(400, "invalid-request");
    let reply = admin(&gw, reqwest::Method::PUT, "/api/v1/connectors").await;
    let problem = reply.problem(405, "method-not-allowed");
    assert!(reply.header("allow").unwrap().contains("GET"), "{problem}");
    let reply = admin(&gw, reqwest::Method::GET, "/console/missing.js").await;
    reply.problem(404, "not-found");
    let reply = admin(&gw, reqwest::Method::DELETE, "/metrics").await;
    reply.problem(405, "method-not-allowed");
    gw.shutdown().await;
}

/// Defect 10 (admin guards): without a token the admin listener needs a host it can trust
/// (an HTTP/1.0 request without `Host` is refused too), and a change must come from its
/// own origin, scheme included.
#[tokio::test]
async fn the_admin_guards_need_a_host_and_the_exact_origin() {
    let gw = gateway(vec![], "").await;
    let said = raw_bytes(gw.admin_addr, b"GET /api/v1/connectors HTTP/1.0\r\n\r\n").await;
    assert!(said.starts_with("HTTP/1.0 403"), "{said}");
    assert!(said.contains("names no host"), "{said}");
    let purge = |origin: String| {
        let url = format!("{}/api/v1/cache", gw.admin_url());
        async move {
            collect(
                client()
                    .delete(url)
                    .header("origin", origin)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    purge(format!("https://{}", gw.admin_addr))
        .await
        .problem(403, "forbidden");
    purge(format!("http://{}.evil.example", gw.admin_addr))
        .await
        .problem(403, "forbidden");
    let same = purge(format!("http://{}", gw.admin_addr)).await;
    assert_ne!(same.status, 403, "{}", String::from_utf8_lossy(&same.body));
    gw.shutdown().await;
}

// ------------------------------------------------------------------------ SSRF

/// A host policy whose host comes from the client reaches only `allowed_hosts`, on their
/// ports: none of the usual disguises of a loopback or internal address gets through, and
/// the backend sees none of them.
#[tokio::test]
async fn ssrf_forms_reach_no_backend() {
    let backend = Backend::ok().await;
    let port = backend.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let connectors = dir.path().join("connectors");
    std::fs::create_dir_all(&connectors).unwrap();
    crate::harness::symlink_dir(
        &crate::harness::corpus_root().join("certified-connectors/Asite"),
        &connectors.join("Asite"),
    );
    std::fs::write(
        dir.path().join("junction.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[connector.asite]\nallowed_hosts = [\"api.asite.com\", \"127.0.0.1:{port}\"]\n[connector.asite.connection]\naccess_token = \"t\"\n"
        ),
    )
    .unwrap();
    let gw = crate::harness::serve_dir(dir.path()).await;
    let forms = [
        format!("http://127.0.0.1:{}/api", port + 1),
        "http://127.0.0.1/api".to_owned(),
        format!("http://localhost:{port}/api"),
        format!("http://0x7f.0.0.1:{port}/api"),
        format!("http://0x7f000001:{port}/api"),
        format!("http://2130706433:{port}/api"),
        format!("http://017700000001:{port}/api"),
        format!("http://127.1:{port}/api"),
        format!("http://[::1]:{port}/api"),
        format!("http://[::ffff:127.0.0.1]:{port}/api"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        format!("http://api.asite.com@127.0.0.1:{port}/api"),
        "http://api.asite.com.evil.example/api".to_owned(),
        "http://api.asite.com:22/api".to_owned(),
        format!("http://127.0.0.1:{port}#@api.asite.com/api"),
        format!("http://127.0.0.1:{port}\\@api.asite.com/api"),
        "file:///etc/passwd".to_owned(),
        "gopher://127.0.0.1:6379/_INFO".to_owned(),
        "//api.asite.com/api".to_owned(),
    ];
    for form in &forms {
        let url = format!(
            "{}/connectors/asite/folderAndFileList?projectId={}&isWorkspace=1&isFolderDataReq=true",
            gw.data_url(),
            percent_encoding::utf8_percent_encode(form, percent_encoding::NON_ALPHANUMERIC)
        );
        let reply = collect(
            client()
                .get(url)
                .header("accept", "application/json")
                .send()
                .await
                .unwrap(),
        )
        .await;
        let problem = reply.problem(400, "invalid-request");
        let detail: Value = problem["detail"].clone();
        assert!(
            !detail.to_string().contains("access_token"),
            "{form}: {problem}"
        );
    }
    assert!(backend.seen().is_empty(), "{:#?}", backend.seen());
    gw.shutdown().await;
}
