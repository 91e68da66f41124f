//! The data plane end to end: real gateways on ephemeral ports in front of in-process
//! backends. Every bad input gets its status and problem+json body checked; every good one
//! is checked at the backend, which echoes what it received.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use junction_model::{
    ApiKeyLocation, CollectionFormat, Connector, Method, ParamLocation, SecurityScheme,
};
use junction_runtime::{Config, Gateway};
use serde_json::{Value, json};

use crate::support::*;

/// The connector most tests use: a pet store with every kind of parameter.
fn pets(backend: SocketAddr) -> Connector {
    use Method::*;
    use ParamLocation::*;
    let definitions = json!({
        "Pet": {
            "type": "object",
            "required": ["name", "source"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "age": {"type": "integer", "format": "int32", "minimum": 0},
                "kind": {"type": "string", "enum": ["cat", "dog"]},
                "source": {"type": "string", "default": "junction", "x-ms-visibility": "internal"},
                "note": {"type": "string", "default": "ignored", "x-ms-visibility": "internal"}
            }
        }
    });
    let operations = vec![
        op(Get, "/pets", "ListPets")
            .param(param(
                "limit",
                Query,
                json!({"type": "integer", "format": "int32", "minimum": 1, "maximum": 100}),
            ))
            .param(param(
                "status",
                Query,
                json!({"type": "string", "enum": ["available", "pending", "sold"]}),
            ))
            .param(param(
                "since",
                Query,
                json!({"type": "string", "format": "date-time"}),
            ))
            .param(param(
                "tags",
                Query,
                json!({"type": "array", "items": {"type": "string"}}),
            ))
            .param(
                param(
                    "ids",
                    Query,
                    json!({"type": "array", "items": {"type": "integer"}}),
                )
                .collection(CollectionFormat::Multi),
            )
            .param(
                param(
                    "names",
                    Query,
                    json!({"type": "array", "items": {"type": "string"}}),
                )
                .collection(CollectionFormat::Pipes),
            )
            .param(
                param("api-version", Query, json!({"type": "string"}))
                    .required()
                    .internal()
                    .default_value(json!("2024-01-01")),
            )
            .param(param("X-Trace", Header, json!({"type": "string"})))
            .param(
                param("X-Mode", Header, json!({"type": "string"}))
                    .required()
                    .internal()
                    .default_value(json!("fast")),
            )
            // Optional: Power Platform ignores its default, and so does Junction.
            .param(
                param("X-Optional", Header, json!({"type": "string"}))
                    .internal()
                    .default_value(json!("ignored")),
            ),
        op(Post, "/pets", "CreatePet")
            .param(param("dryRun", Query, json!({"type": "boolean"})))
            .json_body(json!({"$ref": "#/definitions/Pet"}), true),
        op(Get, "/pets/{petId}", "GetPet").param(param("petId", Path, json!({"type": "string"}))),
        op(Delete, "/pets/{id}", "DeletePet").param(param("id", Path, json!({"type": "string"}))),
        op(Get, "/files/{path}", "GetFile")
            .param(param("path", Path, json!({"type": "string"})).double_encoded()),
        op(Get, "/search", "Search").param(param("q", Query, json!({"type": "string"})).required()),
        op(Post, "/forms", "PostForm")
            .consumes("application/x-www-form-urlencoded")
            .param(param("name", FormData, json!({"type": "string"})).required())
            .param(param("count", FormData, json!({"type": "integer"})))
            .param(
                param(
                    "tags",
                    FormData,
                    json!({"type": "array", "items": {"type": "string"}}),
                )
                .collection(CollectionFormat::Multi),
            ),
        op(Post, "/upload", "Upload")
            .consumes("multipart/form-data")
            .param(
                param("photo", FormData, json!({"type": "file"}))
                    .required()
                    .file(),
            )
            .param(param("description", FormData, json!({"type": "string"}))),
        op(Post, "/xml", "PostXml").raw_body("application/xml"),
    ];
    with_definitions(connector("pets", backend, operations), definitions)
}

async fn pets_gateway(toml: &str) -> junction_server::RunningServer {
    let backend = start_echo().await;
    gateway(vec![pets(backend)], toml).await
}

fn messages(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors in {problem}"))
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect()
}

// ------------------------------------------------------------------------ route

#[tokio::test]
async fn unknown_connector_is_404() {
    let gw = pets_gateway("").await;
    let reply = fetch(format!("{}/connectors/nope/pets", gw.data_url())).await;
    let problem = reply.problem(404, "not-found");
    assert_eq!(problem["instance"], "/connectors/nope/pets");
    assert_eq!(problem["detail"], "there is no connector named 'nope'");
    assert!(problem.get("errors").is_none());
}

#[tokio::test]
async fn unknown_operation_path_is_404() {
    let gw = pets_gateway("").await;
    let reply = fetch(format!("{}/connectors/pets/owners", gw.data_url())).await;
    let problem = reply.problem(404, "not-found");
    assert_eq!(
        problem["detail"],
        "connector 'pets' has no operation at /owners"
    );
    let reply = fetch(format!("{}/elsewhere", gw.data_url())).await;
    reply.problem(404, "not-found");
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let gw = pets_gateway("").await;
    let reply = collect(
        client()
            .delete(format!("{}/connectors/pets/pets", gw.data_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let problem = reply.problem(405, "method-not-allowed");
    assert_eq!(reply.header("allow"), Some("GET, POST"));
    assert!(
        problem["detail"].as_str().unwrap().contains("DELETE"),
        "{problem}"
    );
    // Two templates on one path with different parameter names still share the 405.
    let reply = collect(
        client()
            .put(format!("{}/connectors/pets/pets/7", gw.data_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.problem(405, "method-not-allowed");
    assert_eq!(reply.header("allow"), Some("GET, DELETE"));
}

// ------------------------------------------------------------------------ bind and validate

#[tokio::test]
async fn missing_required_parameter_is_400() {
    let gw = pets_gateway("").await;
    let reply = fetch(format!("{}/connectors/pets/search", gw.data_url())).await;
    let problem = reply.problem(400, "invalid-request");
    assert_eq!(
        problem["errors"],
        json!([{"in": "query", "name": "q", "message": "query parameter 'q' is required"}])
    );
    assert_eq!(problem["detail"], "query parameter 'q' is required");
}

#[tokio::test]
async fn wrong_type_is_400() {
    let gw = pets_gateway("").await;
    let reply = fetch(format!("{}/connectors/pets/pets?limit=abc", gw.data_url())).await;
    let problem = reply.problem(400, "invalid-request");
    assert_eq!(
        problem["errors"],
        json!([{"in": "query", "name": "limit", "message": "query parameter 'limit': \"abc\" is not an integer"}])
    );
    // int32 bounds and declared bounds are checked after coercion.
    let reply = fetch(format!(
        "{}/connectors/pets/pets?limit=5000000000",
        gw.data_url()
    ))
    .await;
    let problem = reply.problem(400, "invalid-request");
    assert_eq!(problem["errors"][0]["name"], "limit");
    assert!(messages(&problem)[0].contains("5000000000"), "{problem}");
}

#[tokio::test]
async fn bad_enum_is_400() {
    let gw = pets_gateway("").await;
    let reply = fetch(format!(
        "{}/connectors/pets/pets?status=lost",
        gw.data_url()
    ))
    .await;
    let problem = reply.problem(400, "invalid-request");
    assert_eq!(problem["errors"][0]["in"], "query");
    assert_eq!(problem["errors"][0]["name"], "status");
    let message = &messages(&problem)[0];
    assert!(
        message.starts_with("query parameter 'status': \"lost\""),
        "{message}"
    );
    assert!(message.contains("available"), "{message}");
}

#[tokio::test]
async fn bad_format_is_400() {
    let gw = pets_gateway("").await;
    let reply = fetch(format!(
        "{}/connectors/pets/pets?since=yesterday",
        gw.data_url()
    ))
    .await;
    let problem = reply.problem(400, "invalid-request");
    assert_eq!(
        problem["errors"],
        json!([{"in": "query", "name": "since", "message": "query parameter 'since': \"yesterday\" is not a \"date-time\""}])
    );
    let ok = fetch(format!(
        "{}/connectors/pets/pets?since=2024-05-01T10:00:00Z",
        gw.data_url()
    ))
    .await;
    assert_eq!(ok.echoed()["path"], "/api/pets");
}

#[tokio::test]
async fn body_schema_violations_are_all_listed() {
    let gw = pets_gateway("").await;
    let reply = collect(
        client()
            .post(format!("{}/connectors/pets/pets", gw.data_url()))
            .json(&json!({"age": -1, "kind": "dragon"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let problem = reply.problem(400, "invalid-request");
    let errors = problem["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3, "{problem}");
    let mut pointers: Vec<&str> = errors
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    pointers.sort_unstable();
    assert_eq!(pointers, ["", "/age", "/kind"]);
    assert!(errors.iter().all(|e| e["in"] == "body"));
    assert!(
        messages(&problem)
            .iter()
            .any(|m| m.contains("\"name\" is a required property")),
        "{problem}"
    );
    assert_eq!(problem["detail"], "3 inputs are invalid; see `errors`");
}

#[tokio::test]
async fn every_violation_of_a_request_is_listed_at_once() {
    let gw = pets_gateway("").await;
    let reply = fetch(format!(
        "{}/connectors/pets/pets?limit=abc&status=lost&since=yesterday&ids=1&ids=x",
        gw.data_url()
    ))
    .await;
    let problem = reply.problem(400, "invalid-request");
    let names: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["limit", "status", "since", "ids"], "{problem}");
    assert_eq!(
        messages(&problem)[3],
        "query parameter 'ids': item 1: \"x\" is not an integer"
    );

    let reply = collect(
        client()
            .post(format!(
                "{}/connectors/pets/pets?dryRun=maybe",
                gw.data_url()
            ))
            .json(&json!({"name": "", "age": "old"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let problem = reply.problem(400, "invalid-request");
    let places: Vec<String> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["in"].as_str().unwrap(),
                e["name"].as_str().or(e["pointer"].as_str()).unwrap()
            )
        })
        .collect();
    assert_eq!(places.len(), 3, "{problem}");
    assert!(places.contains(&"query:dryRun".to_owned()), "{places:?}");
    assert!(places.contains(&"body:/name".to_owned()), "{places:?}");
    assert!(places.contains(&"body:/age".to_owned()), "{places:?}");
}

#[tokio::test]
async fn malformed_json_body_is_400() {
    let gw = pets_gateway("").await;
    let reply = collect(
        client()
            .post(format!("{}/connectors/pets/pets", gw.data_url()))
            .header("content-type", "application/json")
            .body("{\"name\": ")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let problem = reply.problem(400, "invalid-request");
    assert_eq!(problem["errors"][0]["in"], "body");
    assert_eq!(problem["errors"][0]["pointer"], "");
    let message = &messages(&problem)[0];
    assert!(
        message.starts_with("request body is not valid JSON: EOF while parsing"),
        "{message}"
    );
}

#[tokio::test]
async fn missing_required_body_is_400_and_wrong_media_type_is_415() {
    let gw = pets_gateway("").await;
    let reply = collect(
        client()
            .post(format!("{}/connectors/pets/pets", gw.data_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let problem = reply.problem(400, "invalid-request");
    assert_eq!(
        problem["errors"],
        json!([{"in": "body", "pointer": "", "message": "request body is required"}])
    );

    let reply = collect(
        client()
            .post(format!("{}/connectors/pets/pets", gw.data_url()))
            .header("content-type", "text/plain")
            .body("name=rex")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let problem = reply.problem(415, "unsupported-media-type");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("application/json"),
        "{problem}"
    );
}

#[tokio::test]
async fn defaults_fill_missing_parameters_and_internal_body_properties() {
    let gw = pets_gateway("").await;
    let echoed = fetch(format!("{}/connectors/pets/pets", gw.data_url()))
        .await
        .echoed();
    assert_eq!(echoed["query"], "api-version=2024-01-01");
    assert_eq!(echoed["headers"]["x-mode"], "fast");
    // An optional parameter the caller left out is not sent, default or not.
    assert!(echoed["headers"].get("x-optional").is_none(), "{echoed}");
    let echoed = fetch(format!(
        "{}/connectors/pets/pets?api-version=v2",
        gw.data_url()
    ))
    .await
    .echoed();
    assert_eq!(echoed["query"], "api-version=v2");

    let echoed = collect(
        client()
            .post(format!(
                "{}/connectors/pets/pets?dryRun=TRUE",
                gw.data_url()
            ))
            .json(&json!({"name": "rex", "age": 3}))
            .send()
            .await
            .unwrap(),
    )
    .await
    .echoed();
    assert_eq!(echoed["query"], "dryRun=true");
    let sent: Value = serde_json::from_str(echoed["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent, json!({"name": "rex", "age": 3, "source": "junction"}));
    assert_eq!(echoed["headers"]["content-type"], "application/json");
}

#[tokio::test]
async fn a_valid_body_is_forwarded_byte_for_byte() {
    let gw = pets_gateway("").await;
    let text = "{ \"name\" : \"rex\",  \"source\": \"me\" }";
    let echoed = collect(
        client()
            .post(format!("{}/connectors/pets/pets", gw.data_url()))
            .header("content-type", "application/json; charset=utf-8")
            .body(text)
            .send()
            .await
            .unwrap(),
    )
    .await
    .echoed();
    assert_eq!(echoed["body"], text);
    assert_eq!(
        echoed["headers"]["content-type"],
        "application/json; charset=utf-8"
    );
}

// ------------------------------------------------------------------------ limits

#[tokio::test]
async fn body_over_the_limit_is_413_with_content_length() {
    let gw = pets_gateway("[limits]\nmax_body_bytes = \"1KiB\"").await;
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(2000));
    for path in ["pets", "xml"] {
        let reply = collect(
            client()
                .post(format!("{}/connectors/pets/{path}", gw.data_url()))
                .header(
                    "content-type",
                    if path == "xml" {
                        "application/xml"
                    } else {
                        "application/json"
                    },
                )
                .body(big.clone())
                .send()
                .await
                .unwrap(),
        )
        .await;
        let problem = reply.problem(413, "payload-too-large");
        assert_eq!(
            problem["detail"],
            format!(
                "the request body of {} bytes exceeds the limit of 1024 bytes",
                big.len()
            )
        );
    }
}

#[tokio::test]
async fn body_over_the_limit_is_413_without_content_length() {
    let gw = pets_gateway("[limits]\nmax_body_bytes = \"1KiB\"").await;
    // A JSON body that is read to be validated, and an XML body that streams through.
    for (path, content_type) in [("pets", "application/json"), ("xml", "application/xml")] {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            (0..8).map(|_| Ok(Bytes::from(vec![b' '; 512]))).collect();
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
        let reply = collect(
            client()
                .post(format!("{}/connectors/pets/{path}", gw.data_url()))
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        let problem = reply.problem(413, "payload-too-large");
        assert_eq!(
            problem["detail"], "the request body exceeds the limit of 1024 bytes",
            "{path}"
        );
    }
    // Under the limit, the streamed body arrives whole.
    let echoed = collect(
        client()
            .post(format!("{}/connectors/pets/xml", gw.data_url()))
            .header("content-type", "application/xml")
            .body("<pet>rex</pet>")
            .send()
            .await
            .unwrap(),
    )
    .await
    .echoed();
    assert_eq!(echoed["body"], "<pet>rex</pet>");
    assert_eq!(echoed["headers"]["content-type"], "application/xml");
}

#[tokio::test]
async fn folded_or_raw_cr_lf_in_client_headers_is_rejected() {
    let gw = pets_gateway("").await;
    let folded = b"GET /connectors/pets/pets HTTP/1.1\r\nHost: x\r\nX-Trace: a\r\n b\r\nConnection: close\r\n\r\n";
    let answer = raw_bytes(gw.data_addr, folded).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let bare_cr = b"GET /connectors/pets/pets HTTP/1.1\r\nHost: x\r\nX-Trace: a\rX-Evil: 1\r\nConnection: close\r\n\r\n";
    let answer = raw_bytes(gw.data_addr, bare_cr).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // A clean header parameter travels.
    let echoed = collect(
        client()
            .get(format!("{}/connectors/pets/pets", gw.data_url()))
            .header("X-Trace", "abc 123")
            .send()
            .await
            .unwrap(),
    )
    .await
    .echoed();
    assert_eq!(echoed["headers"]["x-trace"], "abc 123");
}

#[tokio::test]
async fn cr_lf_in_a_header_parameter_default_is_a_gateway_error() {
    let backend = start_echo().await;
    let connector = connector(
        "crlf",
        backend,
        vec![
            op(Method::Get, "/x", "X").param(
                param("X-Mode", ParamLocation::Header, json!({"type": "string"}))
                    .required()
                    .default_value(json!("fast\r\nX-Injected: yes")),
            ),
            // Published definitions have defaults like "*/*\r": surrounding whitespace is
            // not part of a header value, so it is trimmed. A parameter whose name is not a
            // header name is never required nor sent.
            op(Method::Get, "/y", "Y")
                .param(
                    param("X-Format", ParamLocation::Header, json!({"type": "string"}))
                        .required()
                        .default_value(json!("json\r")),
                )
                .param(
                    param(
                        "Account Id",
                        ParamLocation::Header,
                        json!({"type": "string"}),
                    )
                    .required(),
                ),
        ],
    );
    let config = config("");
    let compiled = Gateway::compile(&config, std::slice::from_ref(&connector)).unwrap();
    assert!(
        compiled
            .diagnostics
            .iter()
            .any(|d| d.code == "invalid-header-default"),
        "{:?}",
        compiled.diagnostics
    );
    let gw = gateway(vec![connector], "").await;
    let reply = fetch(format!("{}/connectors/crlf/x", gw.data_url())).await;
    let problem = reply.problem(500, "gateway-misconfigured");
    assert!(
        problem["detail"].as_str().unwrap().contains("'X-Mode'"),
        "{problem}"
    );
    // A client value replaces the default and travels.
    let echoed = collect(
        client()
            .get(format!("{}/connectors/crlf/x", gw.data_url()))
            .header("X-Mode", "slow")
            .send()
            .await
            .unwrap(),
    )
    .await
    .echoed();
    assert_eq!(echoed["headers"]["x-mode"], "slow");
    let echoed = fetch(format!("{}/connectors/crlf/y", gw.data_url()))
        .await
        .echoed();
    assert_eq!(echoed["headers"]["x-format"], "json");
}

#[tokio::test]
async fn cr_lf_in_a_connection_value_fails_the_load_without_echoing_it() {
    let backend = start_echo().await;
    let connector = with_security(
        connector("keyed", backend, vec![op(Method::Get, "/x", "X")]),
        vec![(
            "key",
            SecurityScheme::ApiKey {
                name: "X-Api-Key".into(),
                location: ApiKeyLocation::Header,
            },
        )],
    );
    let config = config("[connector.keyed.connection]\napi_key = \"s3cret\\r\\nX-Evil: 1\"\n");
    let diagnostics = Gateway::compile(&config, &[connector]).unwrap_err();
    let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    let text = text.join("\n");
    assert!(text.contains("error[invalid-connection-value]"), "{text}");
    assert!(text.contains("contains CR or LF"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}

// ------------------------------------------------------------------------ upstream request

#[tokio::test]
async fn path_values_stay_one_encoded_segment() {
    let gw = pets_gateway("").await;
    for (sent, upstream) in [
        ("a%2Fb", "/api/pets/a%2Fb"),
        ("%3Fx", "/api/pets/%3Fx"),
        ("%23f", "/api/pets/%23f"),
        ("a%20b", "/api/pets/a%20b"),
        ("..%2F..%2Fadmin", "/api/pets/..%2F..%2Fadmin"),
        ("%2e%2e%2fadmin", "/api/pets/..%2Fadmin"),
        ("caf%C3%A9%25", "/api/pets/caf%C3%A9%25"),
        ("...", "/api/pets/..."),
    ] {
        let reply = raw(
            gw.data_addr,
            "GET",
            &format!("/connectors/pets/pets/{sent}"),
            &[],
            Bytes::new(),
        )
        .await;
        let echoed = reply.echoed();
        assert_eq!(echoed["path"], upstream, "for {sent}");
        assert_eq!(echoed["query"], Value::Null, "for {sent}");
    }
}

#[tokio::test]
async fn dot_segments_are_rejected() {
    let gw = pets_gateway("").await;
    for sent in ["..", ".", "%2e%2e", "%2E", ".%2e"] {
        let reply = raw(
            gw.data_addr,
            "GET",
            &format!("/connectors/pets/pets/{sent}"),
            &[],
            Bytes::new(),
        )
        .await;
        let problem = reply.problem(400, "invalid-request");
        assert_eq!(problem["errors"][0]["in"], "path", "for {sent}");
        assert_eq!(problem["errors"][0]["name"], "petId", "for {sent}");
        assert!(messages(&problem)[0].contains("dot segment"), "{problem}");
    }
}

#[tokio::test]
async fn double_url_encoding_encodes_twice() {
    let gw = pets_gateway("").await;
    let reply = raw(
        gw.data_addr,
        "GET",
        "/connectors/pets/files/dir%2Fa%20b.txt",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(reply.echoed()["path"], "/api/files/dir%252Fa%2520b.txt");
}

#[tokio::test]
async fn collection_formats_shape_the_query() {
    let gw = pets_gateway("").await;
    let echoed = fetch(format!(
        "{}/connectors/pets/pets?names=x|y%20z&ids=1&ids=2&tags=a,b%26c&limit=10",
        gw.data_url()
    ))
    .await
    .echoed();
    assert_eq!(
        echoed["query"],
        "limit=10&tags=a,b%26c&ids=1&ids=2&names=x|y%20z&api-version=2024-01-01"
    );
}

#[tokio::test]
async fn urlencoded_form_fields_reach_the_backend() {
    let gw = pets_gateway("").await;
    let echoed = collect(
        client()
            .post(format!("{}/connectors/pets/forms", gw.data_url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("name=Rex+Jr&count=3&tags=a&tags=b%26c&unknown=dropped")
            .send()
            .await
            .unwrap(),
    )
    .await
    .echoed();
    assert_eq!(echoed["body"], "name=Rex%20Jr&count=3&tags=a&tags=b%26c");
    assert_eq!(
        echoed["headers"]["content-type"],
        "application/x-www-form-urlencoded"
    );

    let reply = collect(
        client()
            .post(format!("{}/connectors/pets/forms", gw.data_url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("count=many")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let problem = reply.problem(400, "invalid-request");
    assert_eq!(
        messages(&problem),
        [
            "formData parameter 'name' is required",
            "formData parameter 'count': \"many\" is not an integer"
        ]
    );
}

#[tokio::test]
async fn multipart_files_and_fields_reach_the_backend() {
    let gw = pets_gateway("").await;
    let form = reqwest::multipart::Form::new()
        .text("description", "a good dog")
        .part(
            "photo",
            reqwest::multipart::Part::bytes(b"\x89PNG-bytes".to_vec())
                .file_name("rex.png")
                .mime_str("image/png")
                .unwrap(),
        );
    let echoed = collect(
        client()
            .post(format!("{}/connectors/pets/upload", gw.data_url()))
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await
    .echoed();
    let content_type = echoed["headers"]["content-type"].as_str().unwrap();
    assert!(
        content_type.starts_with("multipart/form-data; boundary="),
        "{content_type}"
    );
    let body = echoed["body"].as_str().unwrap();
    assert!(
        body.contains("name=\"description\"\r\n\r\na good dog\r\n"),
        "{body}"
    );
    assert!(
        body.contains("name=\"photo\"; filename=\"rex.png\"\r\nContent-Type: image/png\r\n"),
        "{body}"
    );
    assert!(body.contains("PNG-bytes"), "{body}");

    let reply = collect(
        client()
            .post(format!("{}/connectors/pets/upload", gw.data_url()))
            .multipart(reqwest::multipart::Form::new().text("description", "no photo"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let problem = reply.problem(400, "invalid-request");
    assert_eq!(
        problem["errors"],
        json!([{"in": "formData", "name": "photo", "message": "formData parameter 'photo' is required"}])
    );
}

#[tokio::test]
async fn only_declared_headers_travel_and_client_credentials_never_do() {
    let gw = pets_gateway("").await;
    let echoed = collect(
        client()
            .get(format!("{}/connectors/pets/pets", gw.data_url()))
            .header("authorization", "Bearer client-token")
            .header("cookie", "session=abc")
            .header("x-undeclared", "1")
            .header("accept", "application/json")
            .header("accept-language", "fr-CH")
            .send()
            .await
            .unwrap(),
    )
    .await
    .echoed();
    let headers = echoed["headers"].as_object().unwrap();
    assert!(!headers.contains_key("authorization"), "{echoed}");
    assert!(!headers.contains_key("cookie"), "{echoed}");
    assert!(!headers.contains_key("x-undeclared"), "{echoed}");
    assert_eq!(headers["accept"], "application/json");
    assert_eq!(headers["accept-language"], "fr-CH");
    assert_eq!(headers["user-agent"], junction_runtime::USER_AGENT);
}

// ------------------------------------------------------------------------ upstream auth

fn keyed(backend: SocketAddr, name: &str, scheme: SecurityScheme) -> Connector {
    with_security(
        connector(name, backend, vec![op(Method::Get, "/me", "Me")]),
        vec![("auth", scheme)],
    )
}

#[tokio::test]
async fn api_key_in_a_header_reaches_the_backend() {
    let backend = start_echo().await;
    let connector = keyed(
        backend,
        "hkey",
        SecurityScheme::ApiKey {
            name: "X-Api-Key".into(),
            location: ApiKeyLocation::Header,
        },
    );
    let gw = gateway(
        vec![connector],
        "[connector.hkey.connection]\napi_key = \"k-123\"\n",
    )
    .await;
    let echoed = collect(
        client()
            .get(format!("{}/connectors/hkey/me", gw.data_url()))
            .header("X-Api-Key", "client-supplied")
            .send()
            .await
            .unwrap(),
    )
    .await
    .echoed();
    assert_eq!(echoed["headers"]["x-api-key"], "k-123");
}

#[tokio::test]
async fn api_key_in_the_query_reaches_the_backend() {
    let backend = start_echo().await;
    let connector = keyed(
        backend,
        "qkey",
        SecurityScheme::ApiKey {
            name: "code".into(),
            location: ApiKeyLocation::Query,
        },
    );
    let gw = gateway(
        vec![connector],
        "[connector.qkey.connection]\nauth = \"k x&y\"\n",
    )
    .await;
    let echoed = fetch(format!("{}/connectors/qkey/me", gw.data_url()))
        .await
        .echoed();
    assert_eq!(echoed["query"], "code=k%20x%26y");
}

#[tokio::test]
async fn basic_auth_reaches_the_backend() {
    let backend = start_echo().await;
    let connector = keyed(backend, "basic", SecurityScheme::Basic);
    let gw = gateway(
        vec![connector],
        "[connector.basic.connection]\nusername = \"aladdin\"\npassword = \"open sesame\"\n",
    )
    .await;
    let echoed = fetch(format!("{}/connectors/basic/me", gw.data_url()))
        .await
        .echoed();
    assert_eq!(
        echoed["headers"]["authorization"],
        "Basic YWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
}

#[tokio::test]
async fn a_missing_connection_value_is_a_gateway_error_and_a_load_warning() {
    let backend = start_echo().await;
    let connector = keyed(
        backend,
        "nokey",
        SecurityScheme::ApiKey {
            name: "X-Api-Key".into(),
            location: ApiKeyLocation::Header,
        },
    );
    let compiled = Gateway::compile(&config(""), std::slice::from_ref(&connector)).unwrap();
    let warning = compiled
        .diagnostics
        .iter()
        .find(|d| d.code == "missing-connection-value")
        .expect("a warning");
    assert!(
        warning.message.contains("[connector.nokey.connection]"),
        "{warning}"
    );
    let gw = gateway(vec![connector], "").await;
    let reply = fetch(format!("{}/connectors/nokey/me", gw.data_url())).await;
    let problem = reply.problem(500, "gateway-misconfigured");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("set `api_key`"),
        "{problem}"
    );
}

#[tokio::test]
async fn defined_schemes_apply_when_the_definition_requires_none_as_in_power_platform() {
    let backend = start_echo().await;
    let scheme = SecurityScheme::ApiKey {
        name: "X-Api-Key".into(),
        location: ApiKeyLocation::Header,
    };
    // No `security` at all, and `security` naming a scheme that is not defined.
    let mut silent = keyed(backend, "silent", scheme.clone());
    silent.security.clear();
    let mut dangling = keyed(backend, "dangling", scheme.clone());
    dangling.security = vec![[("API Key".to_owned(), Vec::new())].into_iter().collect()];
    let unconfigured = {
        let mut c = keyed(backend, "unconfigured", scheme);
        c.security.clear();
        c
    };
    let compiled = Gateway::compile(&config(""), std::slice::from_ref(&unconfigured)).unwrap();
    assert!(
        compiled
            .diagnostics
            .iter()
            .any(|d| d.code == "missing-connection-value"
                && d.message.contains("without credentials")),
        "{:?}",
        compiled.diagnostics
    );
    let gw = gateway(
        vec![silent, dangling, unconfigured],
        "[connector.silent.connection]\napi_key = \"k1\"\n[connector.dangling.connection]\napi_key = \"k2\"\n",
    )
    .await;
    let echoed = fetch(format!("{}/connectors/silent/me", gw.data_url()))
        .await
        .echoed();
    assert_eq!(echoed["headers"]["x-api-key"], "k1");
    let echoed = fetch(format!("{}/connectors/dangling/me", gw.data_url()))
        .await
        .echoed();
    assert_eq!(echoed["headers"]["x-api-key"], "k2");
    // Nothing configured and nothing required: the call goes out without credentials.
    let echoed = fetch(format!("{}/connectors/unconfigured/me", gw.data_url()))
        .await
        .echoed();
    assert!(echoed["headers"].get("x-api-key").is_none(), "{echoed}");
}

// ------------------------------------------------------------------------ responses

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_from_responses() {
    let backend = start_backend(Router::new().fallback(|| async {
        Response::builder()
            .status(201)
            .header("connection", "X-Hop-Private")
            .header("x-hop-private", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic")
            .header("trailer", "x-checksum")
            .header("x-kept", "yes")
            .header("content-type", "text/plain")
            .body(Body::from("made"))
            .unwrap()
    }))
    .await;
    let gw = gateway(
        vec![connector("hop", backend, vec![op(Method::Get, "/x", "X")])],
        "",
    )
    .await;
    let reply = fetch(format!("{}/connectors/hop/x", gw.data_url())).await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.body, "made");
    assert_eq!(reply.header("x-kept"), Some("yes"));
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    for name in [
        "x-hop-private",
        "keep-alive",
        "proxy-authenticate",
        "trailer",
    ] {
        assert!(
            reply.headers.get(name).is_none(),
            "{name} was passed on: {:?}",
            reply.headers
        );
    }
}

#[tokio::test]
async fn backend_status_and_error_bodies_pass_through() {
    let backend = start_backend(Router::new().fallback(|| async {
        Response::builder()
            .status(409)
            .header("content-type", "application/json")
            .body(Body::from("{\"error\":\"conflict\"}"))
            .unwrap()
    }))
    .await;
    let gw = gateway(
        vec![connector(
            "conflict",
            backend,
            vec![op(Method::Get, "/x", "X")],
        )],
        "",
    )
    .await;
    let reply = fetch(format!("{}/connectors/conflict/x", gw.data_url())).await;
    assert_eq!(reply.status, 409);
    assert_eq!(reply.json(), json!({"error": "conflict"}));
}

/// A backend that answers the first request of each connection and silently closes the
/// connection when a second one arrives on it: the keep-alive race, made certain.
async fn one_request_per_connection_backend() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 8192];
                let mut seen = Vec::new();
                // Read the first request's head, answer it, keep the connection open.
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n) = stream.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buffer[..n]);
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: text/plain\r\n\r\nfresh")
                    .await;
                // Whatever comes next is dropped with the connection.
                let _ = stream.read(&mut buffer).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn idempotent_requests_survive_a_backend_closing_a_pooled_connection() {
    let backend = one_request_per_connection_backend().await;
    let gw = gateway(
        vec![connector(
            "flaky",
            backend,
            vec![
                op(Method::Get, "/x", "GetX"),
                op(Method::Post, "/x", "PostX"),
            ],
        )],
        "",
    )
    .await;
    for _ in 0..3 {
        let reply = fetch(format!("{}/connectors/flaky/x", gw.data_url())).await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.body, "fresh");
    }
    // A POST is not sent twice: the first one after a pooled connection went stale fails.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let reply = collect(
            client()
                .post(format!("{}/connectors/flaky/x", gw.data_url()))
                .send()
                .await
                .unwrap(),
        )
        .await;
        statuses.push(reply.status);
    }
    assert!(statuses.contains(&502), "{statuses:?}");
}

#[tokio::test]
async fn unreachable_backend_is_502() {
    let gw = gateway(
        vec![connector(
            "gone",
            closed_port(),
            vec![op(Method::Get, "/x", "GetX")],
        )],
        "",
    )
    .await;
    let reply = fetch(format!("{}/connectors/gone/x", gw.data_url())).await;
    let problem = reply.problem(502, "upstream-unreachable");
    assert_eq!(
        problem["detail"],
        "connector 'gone', operation 'GetX': could not connect to the backend"
    );
}

#[tokio::test]
async fn slow_backend_is_504() {
    let backend = start_backend(Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        "late"
    }))
    .await;
    let connectors = vec![
        connector("slow", backend, vec![op(Method::Get, "/x", "GetX")]),
        connector("slower", backend, vec![op(Method::Get, "/y", "GetY")]),
    ];
    let gw = gateway(
        connectors,
        "[upstream]\ntimeout = \"300ms\"\n[connector.slower]\ntimeout = \"200ms\"\n",
    )
    .await;
    let started = std::time::Instant::now();
    let problem = fetch(format!("{}/connectors/slow/x", gw.data_url()))
        .await
        .problem(504, "upstream-timeout");
    assert_eq!(
        problem["detail"],
        "connector 'slow', operation 'GetX': the backend did not answer within 300ms"
    );
    let problem = fetch(format!("{}/connectors/slower/y", gw.data_url()))
        .await
        .problem(504, "upstream-timeout");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .ends_with("within 200ms"),
        "{problem}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn the_total_timeout_also_bounds_a_streaming_body() {
    let backend = start_backend(Router::new().fallback(|| async {
        let first = futures_util::stream::once(async {
            Ok::<Bytes, std::io::Error>(Bytes::from_static(b"partial"))
        });
        let stalled = futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<Bytes, std::io::Error>(Bytes::from_static(b"late"))
        });
        use futures_util::StreamExt;
        Response::new(Body::from_stream(first.chain(stalled)))
    }))
    .await;
    let gw = gateway(
        vec![connector(
            "stall",
            backend,
            vec![op(Method::Get, "/x", "X")],
        )],
        "[upstream]\ntimeout = \"400ms\"\n",
    )
    .await;
    let started = std::time::Instant::now();
    let response = client()
        .get(format!("{}/connectors/stall/x", gw.data_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.bytes().await.is_err(),
        "the cut-off body must not look complete"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn large_responses_stream_through() {
    // The backend sends a first chunk, then waits until the client has seen it through the
    // gateway before sending 8 MiB more: a gateway that buffered would never deliver it.
    let release = Arc::new(tokio::sync::Notify::new());
    let backend_release = release.clone();
    let backend = start_backend(Router::new().route(
        "/api/big",
        get(move || {
            let release = backend_release.clone();
            async move {
                let first = futures_util::stream::once(async {
                    Ok::<Bytes, std::io::Error>(Bytes::from_static(b"first-chunk\n"))
                });
                let rest = futures_util::stream::once(async move {
                    release.notified().await;
                    Ok::<Bytes, std::io::Error>(Bytes::new())
                });
                let bulk = futures_util::stream::iter(
                    (0..128)
                        .map(|_| Ok::<Bytes, std::io::Error>(Bytes::from(vec![b'x'; 64 * 1024]))),
                );
                use futures_util::StreamExt;
                Response::new(Body::from_stream(first.chain(rest).chain(bulk)))
            }
        }),
    ))
    .await;
    let gw = gateway(
        vec![connector(
            "big",
            backend,
            vec![op(Method::Get, "/big", "Big")],
        )],
        "",
    )
    .await;
    let mut response = client()
        .get(format!("{}/connectors/big/big", gw.data_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(10), response.chunk())
        .await
        .expect("the first chunk arrives before the backend finishes")
        .unwrap()
        .unwrap();
    assert!(first.starts_with(b"first"), "{first:?}");
    release.notify_one();
    let mut total = first.len();
    while let Some(chunk) = response.chunk().await.unwrap() {
        total += chunk.len();
    }
    assert_eq!(total, 12 + 128 * 64 * 1024);
}

// ------------------------------------------------------------------------ configuration and planes

#[tokio::test]
async fn backend_in_config_replaces_the_definition_upstream() {
    let backend = start_echo().await;
    let connectors = vec![connector(
        "moved",
        closed_port(),
        vec![op(Method::Get, "/x", "X")],
    )];
    let gw = gateway(
        connectors,
        &format!("[connector.moved]\nbackend = \"http://{backend}/v2/\"\n"),
    )
    .await;
    assert_eq!(
        fetch(format!("{}/connectors/moved/x", gw.data_url()))
            .await
            .echoed()["path"],
        "/v2/x"
    );
}

#[test]
fn a_section_for_an_unknown_connector_is_an_error() {
    let config: Config = config("[connector.ghost]\nbackend = \"http://127.0.0.1:1\"\n");
    let diagnostics = Gateway::compile(&config, &[]).unwrap_err();
    let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "junction.toml#/connector/ghost:3:1: error[unknown-connector]: [connector.ghost] configures a connector that does not exist (loaded: none)"
        ]
    );
}

#[tokio::test]
async fn health_and_admin_planes_answer() {
    let gw = pets_gateway("").await;
    assert_eq!(
        fetch(format!("{}/healthz", gw.data_url())).await.json(),
        json!({"status": "ok"})
    );
    assert_eq!(
        fetch(format!("{}/readyz", gw.data_url())).await.json(),
        json!({"status": "ready", "connectors": 1})
    );
    let list = fetch(format!("{}/api/v1/connectors", gw.admin_url()))
        .await
        .json();
    let pets = &list["connectors"][0];
    assert_eq!(pets["name"], "pets");
    assert_eq!(pets["title"], "pets API");
    assert_eq!(
        pets["operations"][0],
        json!({"id": "ListPets", "method": "GET", "path": "/pets", "summary": "ListPets summary"})
    );
    let one = fetch(format!("{}/api/v1/connectors/pets", gw.admin_url()))
        .await
        .json();
    assert_eq!(one["operations"].as_array().unwrap().len(), 9);
    fetch(format!("{}/api/v1/connectors/nope", gw.admin_url()))
        .await
        .problem(404, "not-found");
    // The data plane does not serve the admin API.
    fetch(format!("{}/api/v1/connectors", gw.data_url()))
        .await
        .problem(404, "not-found");
    gw.shutdown().await;
}
