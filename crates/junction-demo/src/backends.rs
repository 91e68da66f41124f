//! The sample backends: small in-process HTTP services the demo connectors front.
//!
//! Each one checks what a real service would (its API key, its basic credentials, its
//! `api-version`, the payroll's `SOAPAction` and envelope), so a request the gateway built
//! wrongly fails visibly here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The API key the directory backend accepts.
pub const DIRECTORY_API_KEY: &str = "demo-directory-key";
/// The basic credentials the helpdesk backend accepts.
pub const HELPDESK_USER: &str = "demo";
pub const HELPDESK_PASSWORD: &str = "demo-password";

/// The running sample backends and their addresses.
#[derive(Debug)]
pub struct Backends {
    pub directory: SocketAddr,
    pub news: SocketAddr,
    pub helpdesk: SocketAddr,
    /// The SOAP payroll service, at `/payroll/Payroll.svc`.
    pub payroll: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Backends {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts the four sample backends on ephemeral loopback ports.
pub async fn start() -> std::io::Result<Backends> {
    let (directory, t1) = spawn(directory()).await?;
    let (news, t2) = spawn(news()).await?;
    let (helpdesk, t3) = spawn(helpdesk()).await?;
    let (payroll, t4) = spawn(payroll()).await?;
    Ok(Backends {
        directory,
        news,
        helpdesk,
        payroll,
        tasks: vec![t1, t2, t3, t4],
    })
}

async fn spawn(router: Router) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((addr, task))
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn employees() -> Vec<Value> {
    vec![
        json!({"id": "e1", "name": "Ada Lovelace", "title": "Principal Engineer", "department": "Engineering", "email": "ada@example.com"}),
        json!({"id": "e2", "name": "Grace Hopper", "title": "Engineering Manager", "department": "Engineering", "email": "grace@example.com"}),
        json!({"id": "e3", "name": "Katherine Johnson", "title": "Analyst", "department": "Finance", "email": "katherine@example.com"}),
        json!({"id": "e4", "name": "Alan Turing", "title": "Support Lead", "department": "Support", "email": "alan@example.com"}),
    ]
}

fn directory() -> Router {
    async fn list(headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
        if let Some(denied) = check_key(&headers) {
            return denied;
        }
        let top = q
            .get("top")
            .and_then(|t| t.parse::<usize>().ok())
            .unwrap_or(20);
        let people: Vec<Value> = employees()
            .into_iter()
            .filter(|e| {
                q.get("department")
                    .is_none_or(|d| e["department"] == d.as_str())
            })
            .take(top)
            .collect();
        Json(Value::Array(people)).into_response()
    }
    async fn one(headers: HeaderMap, Path(id): Path<String>) -> Response {
        if let Some(denied) = check_key(&headers) {
            return denied;
        }
        let mut people = employees();
        match people.iter().position(|e| e["id"] == id.as_str()) {
            Some(i) => {
                let mut person = people.swap_remove(i);
                if id != "e2" {
                    person["manager"] = json!({"id": "e2", "name": "Grace Hopper"});
                }
                Json(person).into_response()
            }
            None => error(StatusCode::NOT_FOUND, &format!("no employee '{id}'")),
        }
    }
    /// `Some(401)` unless the request carries the directory's API key.
    fn check_key(headers: &HeaderMap) -> Option<Response> {
        match headers.get("x-api-key").map(|v| v.as_bytes()) {
            Some(key) if key == DIRECTORY_API_KEY.as_bytes() => None,
            _ => Some(error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong X-Api-Key",
            )),
        }
    }
    Router::new()
        .route("/api/v1/employees", get(list))
        .route("/api/v1/employees/{id}", get(one))
}

fn news() -> Router {
    fn articles() -> Vec<Value> {
        vec![
            json!({"slug": "q3-results", "title": "Q3 results are in", "category": "company", "published": "2026-10-20T09:00:00Z", "summary": "Revenue up 12%."}),
            json!({"slug": "new-build-system", "title": "A faster build system", "category": "engineering", "published": "2026-10-18T14:30:00Z", "summary": null}),
            json!({"slug": "welcome-interns", "title": "Welcome, interns!", "category": "people", "published": "2026-10-15T08:00:00Z", "summary": "Twelve new faces."}),
            json!({"slug": "winter-party", "title": "Winter party on 12 December", "category": "events", "published": "2026-10-10T12:00:00Z", "summary": "Tickets are free."}),
        ]
    }
    async fn list(Query(q): Query<HashMap<String, String>>) -> Response {
        let limit = q
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(5);
        let items: Vec<Value> = articles()
            .into_iter()
            .filter(|a| {
                q.get("category")
                    .is_none_or(|c| a["category"] == c.as_str())
            })
            .take(limit)
            .collect();
        Json(Value::Array(items)).into_response()
    }
    async fn one(Path(slug): Path<String>) -> Response {
        match articles().into_iter().find(|a| a["slug"] == slug.as_str()) {
            Some(article) => Json(article).into_response(),
            None => error(StatusCode::NOT_FOUND, &format!("no article '{slug}'")),
        }
    }
    Router::new()
        .route("/v2/articles", get(list))
        .route("/v2/articles/{slug}", get(one))
}

type Cases = Arc<Mutex<Vec<Value>>>;

fn helpdesk() -> Router {
    /// `Some(error)` unless the request has the helpdesk's credentials and api-version.
    fn check(headers: &HeaderMap, q: &HashMap<String, String>) -> Option<Response> {
        let expected = format!(
            "Basic {}",
            STANDARD.encode(format!("{HELPDESK_USER}:{HELPDESK_PASSWORD}"))
        );
        if headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()) != Some(expected.as_bytes()) {
            return Some(error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong basic credentials",
            ));
        }
        if q.get("api-version").map(String::as_str) != Some("2024-01") {
            return Some(error(
                StatusCode::BAD_REQUEST,
                "api-version=2024-01 is required",
            ));
        }
        None
    }
    async fn list(
        State(cases): State<Cases>,
        headers: HeaderMap,
        Query(q): Query<HashMap<String, String>>,
    ) -> Response {
        if let Some(denied) = check(&headers, &q) {
            return denied;
        }
        let statuses: Option<Vec<&str>> = q.get("status").map(|s| s.split(',').collect());
        let all = cases.lock().map(|c| c.clone()).unwrap_or_default();
        let items: Vec<Value> = all
            .into_iter()
            .filter(|c| {
                q.get("requester")
                    .is_none_or(|r| c["requester"] == r.as_str())
            })
            .filter(|c| {
                statuses
                    .as_ref()
                    .is_none_or(|s| s.iter().any(|s| c["status"] == *s))
            })
            .collect();
        Json(Value::Array(items)).into_response()
    }
    async fn create(
        State(cases): State<Cases>,
        headers: HeaderMap,
        Query(q): Query<HashMap<String, String>>,
        Json(mut body): Json<Value>,
    ) -> Response {
        if let Some(denied) = check(&headers, &q) {
            return denied;
        }
        let Ok(mut all) = cases.lock() else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned");
        };
        let next = all
            .iter()
            .filter_map(|c| c["id"].as_u64())
            .max()
            .unwrap_or(0)
            + 1;
        body["id"] = json!(next);
        // The definition's default, as a real helpdesk would apply it.
        if body.get("priority").is_none_or(Value::is_null) {
            body["priority"] = json!("normal");
        }
        body["status"] = json!("open");
        body["opened"] = json!("2026-11-27T10:00:00Z");
        all.push(body.clone());
        (StatusCode::CREATED, Json(body)).into_response()
    }
    async fn one(
        State(cases): State<Cases>,
        headers: HeaderMap,
        Query(q): Query<HashMap<String, String>>,
        Path(id): Path<String>,
    ) -> Response {
        if let Some(denied) = check(&headers, &q) {
            return denied;
        }
        let all = cases.lock().map(|c| c.clone()).unwrap_or_default();
        match all
            .into_iter()
            .find(|c| c["id"].as_u64().is_some_and(|n| n.to_string() == id))
        {
            Some(case) => Json(case).into_response(),
            None => error(StatusCode::NOT_FOUND, &format!("no case {id}")),
        }
    }
    let seed = vec![
        json!({"id": 998, "title": "Laptop will not boot", "requester": "e1", "priority": "high", "status": "open", "opened": "2026-11-20T08:15:00Z"}),
        json!({"id": 999, "title": "Access to the finance share", "requester": "e1", "priority": "normal", "status": "pending", "opened": "2026-11-22T13:40:00Z"}),
        json!({"id": 1000, "title": "New monitor", "requester": "e3", "priority": "low", "status": "closed", "opened": "2026-11-01T10:00:00Z"}),
    ];
    Router::new()
        .route("/cases", get(list).post(create))
        .route("/cases/{id}", get(one))
        .with_state(Arc::new(Mutex::new(seed)))
}

const SOAP_ENVELOPE: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const PAYROLL_NS: &str = "urn:junction:demo:payroll";

/// A SOAP 1.1 envelope around `body`.
fn soap(status: StatusCode, body: &str) -> Response {
    let envelope = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <s:Envelope xmlns:s=\"{SOAP_ENVELOPE}\"><s:Body>{body}</s:Body></s:Envelope>"
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        envelope,
    )
        .into_response()
}

/// A SOAP 1.1 fault: `Client` (the caller's mistake) or `Server`.
fn soap_fault(code: &str, reason: &str) -> Response {
    soap(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!(
            "<s:Fault><faultcode>s:{code}</faultcode><faultstring>{reason}</faultstring>\
             </s:Fault>"
        ),
    )
}

/// The payroll: `GetPayslips(employeeId, months?)` over SOAP 1.1, the payslips of the
/// directory's employees, newest first.
fn payroll() -> Router {
    async fn call(headers: HeaderMap, body: String) -> Response {
        if headers.get("soapaction").map(|v| v.as_bytes())
            != Some(b"\"urn:junction:demo:payroll#GetPayslips\"")
        {
            return soap_fault("Client", "unknown SOAPAction");
        }
        let options = roxmltree::ParsingOptions {
            allow_dtd: false,
            ..roxmltree::ParsingOptions::default()
        };
        let Ok(doc) = roxmltree::Document::parse_with_options(&body, options) else {
            return soap_fault("Client", "the request is not well-formed XML");
        };
        let Some(request) = doc
            .descendants()
            .find(|n| n.has_tag_name((SOAP_ENVELOPE, "Body")))
            .and_then(|b| {
                b.children()
                    .find(|n| n.has_tag_name((PAYROLL_NS, "GetPayslips")))
            })
        else {
            return soap_fault("Client", "expected a GetPayslips element in the SOAP body");
        };
        let field = |name: &str| {
            request
                .children()
                .find(|n| n.has_tag_name((PAYROLL_NS, name)))
                .and_then(|n| n.text())
        };
        let Some(employee) = field("employeeId") else {
            return soap_fault("Client", "employeeId is required");
        };
        let months: usize = field("months").and_then(|m| m.parse().ok()).unwrap_or(3);
        let Some(index) = employees().iter().position(|e| e["id"] == employee) else {
            return soap_fault("Client", &format!("no employee {employee}"));
        };
        let base = 4000 + 300 * index;
        let slips: String = (0..months.min(12))
            .map(|i| {
                let month = 11 - i;
                let gross = base + if month == 11 { 500 } else { 0 };
                let note = if month == 11 {
                    "<note>includes the Q4 bonus &amp; overtime</note>"
                } else {
                    ""
                };
                format!(
                    "<payslip currency=\"EUR\"><month>2026-{month:02}-30</month>\
                     <gross>{gross}.00</gross><net>{}.50</net>{note}</payslip>",
                    gross * 3 / 4
                )
            })
            .collect();
        soap(
            StatusCode::OK,
            &format!("<GetPayslipsResponse xmlns=\"{PAYROLL_NS}\">{slips}</GetPayslipsResponse>"),
        )
    }
    Router::new().route("/payroll/Payroll.svc", post(call))
}
