//! Helpers for the gateway tests: hand-built connectors, an echo backend, a gateway on
//! ephemeral ports, and a raw HTTP client that sends paths exactly as written.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;
use junction_model::{
    CollectionFormat, Connector, Method, Operation, ParamLocation, Parameter, RequestBody,
    SecurityRequirement, SecurityScheme, SourceFormat, Upstream, UrlEncoding, Visibility,
};
use junction_runtime::Config;
use junction_server::{RunningServer, Server};
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------- connectors by hand

pub fn connector(name: &str, backend: SocketAddr, operations: Vec<Operation>) -> Connector {
    Connector {
        name: name.to_owned(),
        title: format!("{name} API"),
        description: None,
        version: Some("1.0".into()),
        format: SourceFormat::Swagger2,
        upstream: Upstream {
            scheme: "http".into(),
            host: backend.to_string(),
            base_path: "/api".into(),
        },
        operations,
        security_schemes: Default::default(),
        security: Vec::new(),
        definitions: Map::new(),
        properties: None,
        extensions: Map::new(),
        source: format!("{name}/apiDefinition.swagger.json"),
        soap: None,
    }
}

pub fn with_definitions(mut connector: Connector, definitions: Value) -> Connector {
    let Value::Object(definitions) = definitions else {
        panic!("definitions must be an object")
    };
    connector.definitions = definitions;
    connector
}

pub fn with_security(mut connector: Connector, schemes: Vec<(&str, SecurityScheme)>) -> Connector {
    let mut requirement = SecurityRequirement::new();
    for (name, scheme) in schemes {
        connector.security_schemes.insert(name.to_owned(), scheme);
        requirement.insert(name.to_owned(), Vec::new());
    }
    connector.security = vec![requirement];
    connector
}

pub fn op(method: Method, path: &str, id: &str) -> Operation {
    Operation {
        id: id.to_owned(),
        method,
        path: path.to_owned(),
        summary: Some(format!("{id} summary")),
        description: None,
        parameters: Vec::new(),
        body: None,
        consumes: Vec::new(),
        produces: vec!["application/json".into()],
        responses: Vec::new(),
        security: None,
        deprecated: false,
        visibility: Visibility::None,
        tags: Vec::new(),
        extensions: Map::new(),
        pointer: format!(
            "/paths/{}/{}",
            path.replace('/', "~1"),
            method.as_str().to_lowercase()
        ),
        soap: None,
    }
}

pub trait OperationExt {
    fn param(self, parameter: Parameter) -> Self;
    fn json_body(self, schema: Value, required: bool) -> Self;
    fn raw_body(self, media_type: &str) -> Self;
    fn consumes(self, media_type: &str) -> Self;
}

impl OperationExt for Operation {
    fn param(mut self, parameter: Parameter) -> Self {
        self.parameters.push(parameter);
        self
    }

    fn json_body(mut self, schema: Value, required: bool) -> Self {
        self.body = Some(RequestBody {
            name: "body".into(),
            required,
            description: None,
            summary: None,
            media_types: vec!["application/json".into()],
            schema,
            visibility: Visibility::None,
            extensions: Map::new(),
            pointer: format!("{}/parameters/0", self.pointer),
        });
        self
    }

    fn raw_body(mut self, media_type: &str) -> Self {
        self.body = Some(RequestBody {
            name: "body".into(),
            required: true,
            description: None,
            summary: None,
            media_types: vec![media_type.to_owned()],
            schema: json!({"type": "string", "format": "binary"}),
            visibility: Visibility::None,
            extensions: Map::new(),
            pointer: format!("{}/parameters/0", self.pointer),
        });
        self
    }

    fn consumes(mut self, media_type: &str) -> Self {
        self.consumes.push(media_type.to_owned());
        self
    }
}

pub fn param(name: &str, location: ParamLocation, schema: Value) -> Parameter {
    Parameter {
        name: name.to_owned(),
        location,
        required: location == ParamLocation::Path,
        description: None,
        summary: None,
        schema,
        default: None,
        collection_format: CollectionFormat::Csv,
        url_encoding: UrlEncoding::Single,
        visibility: Visibility::None,
        is_file: false,
        extensions: Map::new(),
        pointer: format!("/parameters/{name}"),
    }
}

pub trait ParameterExt {
    fn required(self) -> Self;
    fn default_value(self, value: Value) -> Self;
    fn internal(self) -> Self;
    fn collection(self, format: CollectionFormat) -> Self;
    fn double_encoded(self) -> Self;
    fn file(self) -> Self;
}

impl ParameterExt for Parameter {
    fn required(mut self) -> Self {
        self.required = true;
        self
    }
    fn default_value(mut self, value: Value) -> Self {
        self.default = Some(value);
        self
    }
    fn internal(mut self) -> Self {
        self.visibility = Visibility::Internal;
        self
    }
    fn collection(mut self, format: CollectionFormat) -> Self {
        self.collection_format = format;
        self
    }
    fn double_encoded(mut self) -> Self {
        self.url_encoding = UrlEncoding::Double;
        self
    }
    fn file(mut self) -> Self {
        self.is_file = true;
        self
    }
}

// ---------------------------------------------------------------- backends

/// Starts `router` on a free port and returns its address.
pub async fn start_backend(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// A backend that answers every request with a JSON description of it:
/// `{"method", "path", "query", "headers": {name: value}, "body"}` (path and query raw).
pub fn echo() -> Router {
    Router::new().fallback(echo_handler)
}

pub async fn echo_handler(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut headers = Map::new();
    for name in parts.headers.keys() {
        let values: Vec<&str> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("<binary>"))
            .collect();
        headers.insert(name.as_str().to_owned(), Value::String(values.join(", ")));
    }
    let described = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("x-backend", "echo")
        .body(Body::from(described.to_string()))
        .unwrap()
}

pub async fn start_echo() -> SocketAddr {
    start_backend(echo()).await
}

// ---------------------------------------------------------------- a recording backend

/// One request as the backend saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// What the backend answers: status, headers, body.
pub type Answer = (u16, Vec<(&'static str, String)>, String);
pub type Respond = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

/// A backend that records every request and answers with `respond`.
pub struct Backend {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Backend {
    pub async fn start(respond: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Backend {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let respond: Respond = Arc::new(respond);
        let log = seen.clone();
        let router = Router::new().fallback(move |request: Request| {
            let log = log.clone();
            let respond = respond.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                let seen = Seen {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().map(str::to_owned),
                    headers: parts.headers,
                    body,
                };
                let (status, headers, body) = respond(&seen);
                log.lock().unwrap().push(seen);
                let mut response = Response::builder().status(status);
                for (name, value) in headers {
                    response = response.header(name, value);
                }
                response.body(Body::from(body)).unwrap()
            }
        });
        Backend {
            addr: start_backend(router).await,
            seen,
        }
    }

    /// A backend that answers every request with `{}` (JSON).
    pub async fn ok() -> Backend {
        Backend::start(|_| json_answer(200, json!({}))).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn only(&self) -> Seen {
        let seen = self.seen();
        assert_eq!(seen.len(), 1, "{seen:#?}");
        seen.into_iter().next().unwrap()
    }
}

pub fn json_answer(status: u16, body: Value) -> Answer {
    (
        status,
        vec![("content-type", "application/json".to_owned())],
        body.to_string(),
    )
}

/// An address nothing listens on.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

// ---------------------------------------------------------------- gateways

/// Starts a gateway for `connectors` with extra configuration `toml` (listening on free
/// ports whatever it says).
pub async fn gateway(connectors: Vec<Connector>, toml: &str) -> RunningServer {
    let config = config(toml);
    match Server::start(&config, &connectors).await {
        Ok(server) => server,
        Err(junction_server::StartError::Compile(diagnostics)) => {
            let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            panic!("gateway did not compile:\n{}", text.join("\n"))
        }
        Err(error) => panic!("{error}"),
    }
}

pub fn config(toml: &str) -> Config {
    config_listening("127.0.0.1:0", toml)
}

/// [`config`] with the data plane on `listen` (a callback URL must be known beforehand).
pub fn config_listening(listen: &str, toml: &str) -> Config {
    let text = format!("listen = \"{listen}\"\nadmin_listen = \"127.0.0.1:0\"\n{toml}");
    Config::parse(
        &text,
        std::path::Path::new("junction.toml"),
        std::path::Path::new("."),
        &|name| std::env::var(name).ok(),
    )
    .unwrap()
}

pub fn client() -> reqwest::Client {
    junction_runtime::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json response of `status` and problem kind `slug`; returns the body.
    pub fn problem(&self, status: u16, slug: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "expected {status}, got {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let body = self.json();
        assert_eq!(
            body["type"],
            format!("https://junction.dev/problems/{slug}"),
            "{body}"
        );
        assert_eq!(body["status"], status, "{body}");
        assert!(body["title"].is_string(), "{body}");
        assert!(body["detail"].is_string(), "{body}");
        assert!(body["instance"].is_string(), "{body}");
        assert!(
            body["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{body}"
        );
        body
    }

    /// The echo backend's description of the request it got.
    pub fn echoed(&self) -> Value {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.header("x-backend"), Some("echo"));
        self.json()
    }
}

pub async fn collect(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    Reply {
        status,
        headers,
        body,
    }
}

/// `GET url` as the gateway client with API key `key`.
pub async fn get_with_key(url: &str, key: &str) -> Reply {
    collect(
        client()
            .get(url)
            .header("x-api-key", key)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// The access log `server` writes to `file`, flushed now: its text and its lines as JSON.
pub fn access_log(server: &RunningServer, file: &std::path::Path) -> (String, Vec<Value>) {
    // Lines are written out every 100 ms, or now.
    server
        .gateway
        .load()
        .metrics()
        .access_log()
        .unwrap()
        .flush();
    let text = std::fs::read_to_string(file).unwrap();
    let lines = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    (text, lines)
}

/// POSTs `body` as JSON to `url`; the response read whole.
pub async fn post_json(url: String, body: &Value) -> Reply {
    collect(client().post(url).json(body).send().await.unwrap()).await
}

/// POSTs `body` to the collection `url` and returns the id of what was created (`201`).
pub async fn create(url: String, body: &Value) -> String {
    let reply = post_json(url, body).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()["id"].as_str().unwrap().to_owned()
}

pub async fn fetch(url: String) -> Reply {
    collect(client().get(url).send().await.unwrap()).await
}

/// A request to the admin listener of `server`.
pub async fn admin(server: &RunningServer, method: reqwest::Method, path: &str) -> Reply {
    collect(
        client()
            .request(method, format!("{}{path}", server.admin_url()))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// The `X-Cache` of a reply, `(none)` without one.
pub fn x_cache(reply: &Reply) -> &str {
    reply.header("x-cache").unwrap_or("(none)")
}

/// Sends `method target` with the request target exactly as written (no URL
/// normalisation), over a fresh HTTP/1.1 connection.
pub async fn raw(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method(method)
        .uri(target)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(http_body_util::Full::new(body)).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

/// Writes `bytes` to a fresh connection and returns everything the server answers.
pub async fn raw_bytes(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The backend path a next link the gateway handed out continues with: the link must be
/// `prefix` (the first page's URL, or it with `?`), then `junction-next=` and a signed
/// token (`v1.EXPIRY.PATH.MAC`, PATH in base64url).
pub fn signed_next_link(link: &str, prefix: &str) -> String {
    use base64::Engine;
    let rest = link
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{link} does not start with {prefix}"));
    let token = rest
        .trim_start_matches('&')
        .strip_prefix("junction-next=")
        .unwrap_or_else(|| panic!("{link} has no junction-next after {prefix}"));
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!((parts.len(), parts[0]), (4, "v1"), "{token}");
    let path = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[2])
        .unwrap();
    String::from_utf8(path).unwrap()
}

/// Writes a new master key into `dir/master.key` (for `[store] key_file`) and returns
/// its path.
pub fn master_key_file(dir: &std::path::Path) -> std::path::PathBuf {
    let key_file = dir.join("master.key");
    let key = junction_store::MasterKey::generate().unwrap();
    std::fs::write(&key_file, key.to_base64().as_bytes()).unwrap();
    key_file
}
