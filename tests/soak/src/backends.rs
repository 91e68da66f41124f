//! The soak's backends: a healthy JSON API, a flaky raw-TCP one, an identity provider with
//! an API that wants its tokens, and a TCP proxy whose latency the fault schedule turns up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The client the identity provider knows, and its secret.
pub const OAUTH_CLIENT: (&str, &str) = ("soak-app", "soak-secret");
/// Lifetime of the identity provider's tokens: short, so that a 10-minute soak refreshes
/// a hundred times.
pub const TOKEN_SECONDS: u64 = 8;

/// The healthy API: `GET /api/items/{id}`, `POST /api/items` (201, echoes the body with an
/// id), `GET /api/slow/{id}` (50 ms later). Also the remote backend, in its own process.
pub async fn serve_api(listener: TcpListener) -> anyhow::Result<()> {
    let app = axum::Router::new()
        .route("/api/items/{id}", get(item))
        .route("/api/items", post(create_item))
        .route("/api/slow/{id}", get(slow_item));
    axum::serve(listener, app).await?;
    Ok(())
}

async fn item(Path(id): Path<u64>) -> Json<Value> {
    Json(json!({"id": id, "name": format!("item {id}"), "price": 9.99}))
}

async fn slow_item(Path(id): Path<u64>) -> Json<Value> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    item(Path(id)).await
}

async fn create_item(Json(mut body): Json<Value>) -> (StatusCode, Json<Value>) {
    if let Some(object) = body.as_object_mut() {
        object.insert("id".into(), json!(fastrand::u32(..)));
    }
    (StatusCode::CREATED, Json(body))
}

/// The flaky backend: one request per connection, answered in turn with a 200, a 500, a
/// 503, a body cut short of its `Content-Length`, a stall of 3 s, or a reset.
pub async fn serve_flaky(listener: TcpListener) -> anyhow::Result<()> {
    let mut turn = 0u64;
    loop {
        let (stream, _) = listener.accept().await?;
        turn += 1;
        tokio::spawn(flaky_answer(stream, turn % 6));
    }
}

async fn flaky_answer(mut stream: TcpStream, mode: u64) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let answer: &[u8] = match mode {
        0 => b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{\"ok\":true}",
        1 => b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{\"error\":\"500\"}",
        2 => b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{\"error\":\"503\"}",
        3 => b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"partial\":",
        4 => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            return;
        }
        _ => {
            // A reset: no answer, an RST instead of a FIN.
            let _ = stream.set_zero_linger();
            return;
        }
    };
    let _ = stream.write_all(answer).await;
    let _ = stream.shutdown().await;
}

/// The identity provider's state: the tokens it issued and when each expires.
#[derive(Debug, Default)]
pub struct Idp {
    tokens: Mutex<HashMap<String, Instant>>,
    issued: AtomicU64,
    refused: AtomicU64,
}

impl Idp {
    /// Tokens issued so far.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    /// API calls refused for a missing, unknown or expired token.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// The identity provider (`POST /token`, client credentials, tokens for [`TOKEN_SECONDS`])
/// and the API that wants its tokens (`GET /api/me`: 401 without a live one).
pub async fn serve_idp(listener: TcpListener, idp: Arc<Idp>) -> anyhow::Result<()> {
    let app = axum::Router::new()
        .route("/token", post(token))
        .route("/api/me", get(me))
        .with_state(idp);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn token(State(idp): State<Arc<Idp>>, headers: HeaderMap, body: String) -> Response {
    let form: HashMap<String, String> = url_form(&body);
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(v).ok()
        })
        .and_then(|v| String::from_utf8(v).ok());
    let (id, secret) = match &basic {
        Some(pair) => pair.split_once(':').unwrap_or((pair.as_str(), "")),
        None => (
            form.get("client_id").map_or("", String::as_str),
            form.get("client_secret").map_or("", String::as_str),
        ),
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials")
        || (id, secret) != OAUTH_CLIENT
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_client", "form": form.keys().collect::<Vec<_>>()})),
        )
            .into_response();
    }
    let token = format!("tok-{:016x}", fastrand::u64(..));
    let expires = Instant::now() + Duration::from_secs(TOKEN_SECONDS);
    if let Ok(mut tokens) = idp.tokens.lock() {
        tokens.retain(|_, at| *at > Instant::now());
        tokens.insert(token.clone(), expires);
    }
    idp.issued.fetch_add(1, Ordering::Relaxed);
    Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_SECONDS}))
        .into_response()
}

async fn me(State(idp): State<Arc<Idp>>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let live = idp
        .tokens
        .lock()
        .map(|tokens| tokens.get(token).is_some_and(|at| *at > Instant::now()))
        .unwrap_or(false);
    if live {
        Json(json!({"sub": OAUTH_CLIENT.0})).into_response()
    } else {
        idp.refused.fetch_add(1, Ordering::Relaxed);
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_token"})),
        )
            .into_response()
    }
}

/// `a=b&c=d` (no percent-decoding beyond `+`; the soak's values are plain).
fn url_form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace('+', " ").replace("%20", " ")))
        .collect()
}

/// A TCP proxy to `target`: each chunk, either way, waits `delay` milliseconds first. A
/// target that refuses makes the proxy close the client's connection.
pub async fn serve_proxy(
    listener: TcpListener,
    target: String,
    delay: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    loop {
        let (client, _) = listener.accept().await?;
        let target = target.clone();
        let delay = Arc::clone(&delay);
        tokio::spawn(async move {
            let Ok(upstream) = TcpStream::connect(&target).await else {
                return;
            };
            let (client_read, client_write) = client.into_split();
            let (upstream_read, upstream_write) = upstream.into_split();
            tokio::select! {
                () = pipe(client_read, upstream_write, Arc::clone(&delay)) => {}
                () = pipe(upstream_read, client_write, delay) => {}
            }
        });
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 16384];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let wait = delay.load(Ordering::Relaxed);
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
