//! Compatibility with published connectors, class by class: each test serves a corpus
//! package that has the feature, as it is published, and checks what the backend receives
//! against what Power Platform would send.

use bytes::Bytes;
use serde_json::json;

use crate::harness::serve;
use crate::support::*;

/// A header parameter `Content-Type` declares the body's media type, whatever `consumes`
/// says. WorkSpan's bulk load takes CSV (its `consumes` says JSON and text/plain); Egnyte's
/// upload sends `application/octet-stream` from an internal default (its `consumes` says
/// multipart).
#[tokio::test]
async fn a_content_type_parameter_declares_the_body_type() {
    let backend = Backend::ok().await;
    let (gw, _dir) = serve(
        &["WorkSpan", "Egnyte"],
        &format!(
            "[connector.workspan]\nbackend = \"{0}/ws\"\n[connector.workspan.connection]\naccess_token = \"t\"\n\
             [connector.egnyte]\nbackend = \"{0}/eg\"\n[connector.egnyte.connection]\naccess_token = \"t\"\n",
            backend.url()
        ),
    )
    .await;
    let csv = "name,amount\nAcme,12\n";
    let reply = collect(
        client()
            .post(format!(
                "{}/connectors/workspan/bulk/v1/bulkload?integration_id=i1",
                gw.data_url()
            ))
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    // Without a Content-Type the parameter's default (text/csv) says what the body is.
    let reply = collect(
        client()
            .post(format!(
                "{}/connectors/workspan/bulk/v1/bulkload?integration_id=i1",
                gw.data_url()
            ))
            .body(csv)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    // A type the parameter does not allow is refused before anything is sent.
    let reply = collect(
        client()
            .post(format!(
                "{}/connectors/workspan/bulk/v1/bulkload?integration_id=i1",
                gw.data_url()
            ))
            .header("content-type", "text/html")
            .body("<p>")
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.problem(400, "invalid-request");
    let file = Bytes::from_static(b"\x89PNG\r\n\x1a\n...");
    let reply = collect(
        client()
            .post(format!(
                "{}/connectors/egnyte/api-proxy/UploadFile?Name=a.png&Path=%2FShared",
                gw.data_url()
            ))
            .body(file.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );

    let seen = backend.seen();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    for workspan in &seen[..2] {
        assert_eq!(workspan.path, "/ws/bulk/v1/bulkload");
        assert_eq!(workspan.header("content-type").as_deref(), Some("text/csv"));
        assert_eq!(workspan.body, csv);
    }
    assert_eq!(seen[2].path, "/eg/api-proxy/UploadFile");
    assert_eq!(
        seen[2].header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(seen[2].body, file);
    gw.shutdown().await;
}

/// EBMS's policies read `@connectionParameters('SerialNumber')` and `('CompanyId')`; the
/// package declares `serialNumber` and `companyId`. Power Platform matches the names without
/// regard to case, and so does Junction (with a load warning that says so).
#[tokio::test]
async fn connection_parameters_match_without_regard_to_case() {
    let loaded = junction_import::load(&crate::harness::package("EBMS"));
    let cases: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.code == "policy-connection-case")
        .map(|d| d.message.clone())
        .collect();
    // Each instance that reads a name so: the host URL reads both, the header one.
    assert_eq!(cases.len(), 3, "{cases:#?}");
    assert!(
        cases[0].contains("'SerialNumber', which the package declares as 'serialNumber'"),
        "{cases:#?}"
    );
    let backend = Backend::ok().await;
    let (gw, _dir) = serve(
        &["EBMS"],
        &format!(
            "[connector.ebms]\nbackend = \"{}/odata\"\n[connector.ebms.connection]\nusername = \"u\"\npassword = \"p\"\nserialNumber = \"SN-42\"\ncompanyId = \"ACME\"\n",
            backend.url()
        ),
    )
    .await;
    let reply = collect(
        client()
            .post(format!("{}/connectors/ebms/INVENTRY", gw.data_url()))
            .json(&json!({"ID": "P1", "TREE_ID": "T1"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    // The setheader instance read the value declared as `serialNumber`.
    assert_eq!(
        backend.only().header("serialnumber").as_deref(),
        Some("SN-42")
    );
    gw.shutdown().await;
}

/// Cognite Data Fusion's list of time series has optional parameters with defaults
/// (`limit` 100, `includeMetadata` true, `Accept`): left out by the caller, they are not
/// sent, as Power Platform sends only what the caller supplied and the defaults of required
/// parameters.
#[tokio::test]
async fn optional_parameters_left_out_are_not_sent() {
    let backend = Backend::ok().await;
    let (gw, _dir) = serve(
        &["Cognite Data Fusion"],
        &format!(
            "[connector.cognite-data-fusion]\nbackend = \"{}\"\n",
            backend.url()
        ),
    )
    .await;
    let base = format!(
        "{}/connectors/cognite-data-fusion/api/v1/projects/p1/timeseries",
        gw.data_url()
    );
    let reply = collect(client().get(&base).send().await.unwrap()).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let reply = collect(
        client()
            .get(format!("{base}?limit=5"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let seen = backend.seen();
    assert_eq!(seen[0].path, "/api/v1/projects/p1/timeseries");
    assert_eq!(seen[0].query, None, "{:#?}", seen[0]);
    assert_ne!(
        seen[0].header("accept").as_deref(),
        Some("application/json"),
        "the Accept default is not sent: {:#?}",
        seen[0]
    );
    assert_eq!(seen[1].query.as_deref(), Some("limit=5"));
    assert_eq!(
        seen[1].header("accept").as_deref(),
        Some("application/json")
    );
    gw.shutdown().await;
}

/// An API key that travels in the query under the name of one of the operation's own query
/// parameters replaces it: one value, the connection's (as a header credential does).
#[tokio::test]
async fn an_api_key_in_the_query_replaces_a_parameter_of_its_name() {
    use junction_model::{ApiKeyLocation, Method, ParamLocation, SecurityScheme};
    let backend = Backend::ok().await;
    let keyed = with_security(
        connector(
            "keyed",
            backend.addr,
            vec![
                op(Method::Get, "/items", "ListItems")
                    .param(param(
                        "code",
                        ParamLocation::Query,
                        json!({"type": "string"}),
                    ))
                    .param(param("q", ParamLocation::Query, json!({"type": "string"}))),
            ],
        ),
        vec![(
            "key",
            SecurityScheme::ApiKey {
                name: "code".into(),
                location: ApiKeyLocation::Query,
            },
        )],
    );
    let gw = gateway(
        vec![keyed],
        "[connector.keyed.connection]\napi_key = \"s3cret\"\n",
    )
    .await;
    let reply = fetch(format!(
        "{}/connectors/keyed/items?code=mine&q=x",
        gw.data_url()
    ))
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(backend.only().query.as_deref(), Some("q=x&code=s3cret"));
    gw.shutdown().await;
}

/// A `setheader` policy on `Host` (override) reaches a virtual host on the backend's
/// address, as packages that front several sites on one server rely on; a value that is not
/// a host and port is refused before anything is sent.
#[tokio::test]
async fn a_setheader_policy_may_set_host() {
    use junction_model::{ApiProperties, Method, ParamLocation, PolicyInstance};
    let backend = Backend::ok().await;
    let mut sites = connector(
        "sites",
        backend.addr,
        vec![op(Method::Get, "/pages", "ListPages").param(param(
            "site",
            ParamLocation::Header,
            json!({"type": "string"}),
        ))],
    );
    sites.properties = Some(ApiProperties {
        policy_template_instances: vec![PolicyInstance {
            template_id: "setheader".into(),
            title: Some("Virtual host".into()),
            parameters: serde_json::from_value(json!({
                "x-ms-apimTemplateParameter.name": "Host",
                "x-ms-apimTemplateParameter.value": "@headers('site').intranet.example.com",
                "x-ms-apimTemplateParameter.existsAction": "override",
                "x-ms-apimTemplate-policySection": "Request"
            }))
            .unwrap(),
            pointer: "/properties/policyTemplateInstances/0".into(),
        }],
        ..ApiProperties::default()
    });
    let gw = gateway(vec![sites], "").await;
    let url = format!("{}/connectors/sites/pages", gw.data_url());
    let reply = collect(
        client()
            .get(&url)
            .header("site", "hr")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        backend.only().header("host").as_deref(),
        Some("hr.intranet.example.com")
    );
    let reply = collect(
        client()
            .get(&url)
            .header("site", "evil.example.com/x?")
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.problem(400, "invalid-request");
    assert_eq!(backend.seen().len(), 1);
    gw.shutdown().await;
}
