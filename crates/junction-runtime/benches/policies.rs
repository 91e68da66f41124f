//! The per-request cost of the policy stage: one GET through `Gateway::handle` to a local
//! backend answering 10 KB of JSON, with no policies, and with a 5-policy chain plus a jq
//! response transform. Reported as times per request and as their ratio.
//!
//! `cargo bench -p junction-runtime --bench policies` (add `-- --quick` for a short run).
//!
//! The chain, on the same operation: request `setheader` (from a connection value),
//! `setqueryparameter`, `routerequesttoendpoint`; response `setheader`, and `setproperty` on
//! each of the 118 items of the body (which makes the gateway read and rewrite the body);
//! then the transform `.items |= map(select(.active)) | .count = (.items | length)`.
//! The backend runs on the same single-threaded runtime as the gateway, so both variants
//! pay the same loopback cost; the ratio is an upper bound of the policy overhead.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use http_body_util::{BodyExt, Full};
use junction_model::{
    ApiProperties, CollectionFormat, Connector, Method, Operation, ParamLocation, Parameter,
    PolicyInstance, SourceFormat, Upstream, UrlEncoding, Visibility,
};
use junction_runtime::{Config, Gateway};
use serde_json::{Map, Value, json};

/// About 10 KB of JSON: 118 items.
fn body() -> Bytes {
    let items: Vec<Value> = (0..118)
        .map(|i| {
            json!({"id": i, "name": format!("item number {i:03}"), "active": i % 3 != 0,
                   "tags": ["alpha", "beta"], "price": 10.5})
        })
        .collect();
    let text = json!({"items": items, "nextLink": null}).to_string();
    Bytes::from(text)
}

async fn backend(body: Bytes) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_request| {
                    let body = body.clone();
                    async move {
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(body))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn operation() -> Operation {
    Operation {
        id: "GetItems".into(),
        method: Method::Get,
        path: "/items/{id}".into(),
        summary: None,
        description: None,
        parameters: vec![Parameter {
            name: "id".into(),
            location: ParamLocation::Path,
            required: true,
            description: None,
            summary: None,
            schema: json!({"type": "string"}),
            default: None,
            collection_format: CollectionFormat::Csv,
            url_encoding: UrlEncoding::Single,
            visibility: Visibility::None,
            is_file: false,
            extensions: Map::new(),
            pointer: "/paths/~1items~1{id}/get/parameters/0".into(),
        }],
        body: None,
        consumes: Vec::new(),
        produces: vec!["application/json".into()],
        responses: Vec::new(),
        security: None,
        deprecated: false,
        visibility: Visibility::None,
        tags: Vec::new(),
        extensions: Map::new(),
        pointer: "/paths/~1items~1{id}/get".into(),
        soap: None,
    }
}

fn connector(name: &str, backend: SocketAddr, policies: Vec<Value>) -> Connector {
    let instances = policies
        .into_iter()
        .enumerate()
        .map(|(i, p)| PolicyInstance {
            template_id: p["templateId"].as_str().unwrap().to_owned(),
            title: None,
            parameters: p["parameters"].as_object().unwrap().clone(),
            pointer: format!("/properties/policyTemplateInstances/{i}"),
        })
        .collect();
    Connector {
        name: name.into(),
        title: name.into(),
        description: None,
        version: None,
        format: SourceFormat::Swagger2,
        upstream: Upstream {
            scheme: "http".into(),
            host: backend.to_string(),
            base_path: "/api".into(),
        },
        operations: vec![operation()],
        security_schemes: Default::default(),
        security: Vec::new(),
        definitions: Map::new(),
        properties: Some(ApiProperties {
            policy_template_instances: instances,
            ..ApiProperties::default()
        }),
        extensions: Map::new(),
        source: format!("{name}/apiDefinition.swagger.json"),
        soap: None,
    }
}

fn chain() -> Vec<Value> {
    vec![
        json!({"templateId": "setheader", "parameters": {
            "x-ms-apimTemplateParameter.name": "X-Tenant",
            "x-ms-apimTemplateParameter.value": "@connectionParameters('tenant')",
            "x-ms-apimTemplateParameter.existsAction": "override",
            "x-ms-apimTemplate-policySection": "Request"}}),
        json!({"templateId": "setqueryparameter", "parameters": {
            "x-ms-apimTemplateParameter.name": "api-version",
            "x-ms-apimTemplateParameter.value": "2024-01-01",
            "x-ms-apimTemplateParameter.existsAction": "skip"}}),
        json!({"templateId": "routerequesttoendpoint", "parameters": {
            "x-ms-apimTemplateParameter.newPath": "/v2/items/{id}",
            "x-ms-apimTemplateParameter.httpMethod": "@Request.OriginalHTTPMethod"}}),
        json!({"templateId": "setheader", "parameters": {
            "x-ms-apimTemplateParameter.name": "X-Served-By",
            "x-ms-apimTemplateParameter.value": "junction",
            "x-ms-apimTemplate-policySection": "Response"}}),
        json!({"templateId": "setproperty", "parameters": {
            "x-ms-apimTemplateParameter.newPropertyParentPathTemplate": "@body().items",
            "x-ms-apimTemplateParameter.newPropertySubPathTemplate": "source",
            "x-ms-apimTemplateParameter.propertyValuePathTemplate": "junction",
            "x-ms-apimTemplate-policySection": "Response"}}),
    ]
}

async fn call(gateway: &Gateway, path: &str) -> usize {
    let request = http::Request::get(path)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = gateway.handle(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .len()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = body();
    assert!((9_000..12_000).contains(&body.len()), "{}", body.len());
    let addr = runtime.block_on(backend(body));
    let config = Config::parse(
        "[connector.policies.connection]\ntenant = \"acme\"\n\
         [connector.policies.transform]\n\
         response = '.items |= map(select(.active)) | .count = (.items | length)'\n",
        Path::new("junction.toml"),
        Path::new("."),
        &|_| None,
    )
    .unwrap();
    let gateway = Gateway::compile(
        &config,
        &[
            connector("plain", addr, Vec::new()),
            connector("policies", addr, chain()),
        ],
    )
    .unwrap()
    .gateway;
    let plain = "/connectors/plain/items/7";
    let policies = "/connectors/policies/items/7";
    // Both work, and the policies do change the body.
    let (a, b) =
        runtime.block_on(async { (call(&gateway, plain).await, call(&gateway, policies).await) });
    assert!(a > 9_000 && b != a, "{a} {b}");

    let mut criterion = Criterion::default()
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let mut group = criterion.benchmark_group("request_10kb_json");
    group.bench_function("no_policies", |b| {
        b.iter(|| runtime.block_on(call(&gateway, black_box(plain))))
    });
    group.bench_function("five_policies_and_jq", |b| {
        b.iter(|| runtime.block_on(call(&gateway, black_box(policies))))
    });
    group.finish();
    criterion.final_summary();

    // The ratio, measured on alternating batches so that both see the same machine state.
    let batch = 200;
    let mut ratios = Vec::new();
    let (mut total_plain, mut total_policies) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..15 {
        let start = Instant::now();
        for _ in 0..batch {
            runtime.block_on(call(&gateway, plain));
        }
        let p = start.elapsed();
        let start = Instant::now();
        for _ in 0..batch {
            runtime.block_on(call(&gateway, policies));
        }
        let q = start.elapsed();
        total_plain += p;
        total_policies += q;
        ratios.push(q.as_secs_f64() / p.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(15 * batch);
    println!(
        "per request: no policies {:.1} µs, 5 policies + jq {:.1} µs; ratio {:.2} (median of 15 alternating batches of {batch})",
        per(total_plain),
        per(total_policies),
        median
    );
}
