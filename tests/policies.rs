//! Policies end to end: real policy template instances from the published corpus, served
//! by a real gateway in front of an in-process backend that records what it receives.
//!
//! Each template is tested on a corpus package that uses it (the package folder is served
//! as it is published; only `junction.toml` is written here), and each test asserts exactly
//! what the backend received or what the client got back. Then: the open-proxy checks of
//! host policies, jq transforms, server-side paging, custom code, broken instances, and a
//! corpus-wide check that every instance compiles or gets a precise diagnostic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;

use junction_model::{ApiProperties, Method, ParamLocation, PolicyInstance};
use junction_policy::Kind;
use junction_server::RunningServer;
use serde_json::{Value, json};

use crate::harness::{self, corpus_root};
use crate::support::*;

// ------------------------------------------------------------------------ harness

use crate::harness::{package, serve, write_config};

async fn send(request: reqwest::RequestBuilder) -> Reply {
    collect(request.send().await.unwrap()).await
}

// ------------------------------------------------------------------------ setheader

/// Oneflow: `override` and `skip`, values from the connection, the API key credential
/// beside them (most Oneflow operations run custom code; DeleteTrigger does not). Oodrive
/// Sign: `skip` keeps the `Accept` the client sent.
#[tokio::test]
async fn setheader_overrides_and_skips_as_declared() {
    let backend = Backend::ok().await;
    let (gw, _dir) = serve(
        &["Oneflow", "Oodrive Sign"],
        &format!(
            "[connector.oneflow.connection]\napi_key = \"k3y\"\nuserEmail = \"ann@example.com\"\ninstance_url = \"{0}/v1\"\n[connector.oodrive-sign]\nbackend = \"{0}/api/v4\"\n[connector.oodrive-sign.connection]\napi_key = \"j\"\n",
            backend.url()
        ),
    )
    .await;
    let reply =
        send(client().delete(format!("{}/connectors/oneflow/webhooks/42", gw.data_url()))).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let seen = backend.only();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("DELETE", "/v1/webhooks/42")
    );
    // #0 Content-Type skip: absent, so set.
    assert_eq!(
        seen.header("content-type").as_deref(),
        Some("application/json")
    );
    // #1 x-oneflow-user-email skip, from the connection.
    assert_eq!(
        seen.header("x-oneflow-user-email").as_deref(),
        Some("ann@example.com")
    );
    // #2 override with a constant.
    assert_eq!(
        seen.header("x-oneflow-custom-source").as_deref(),
        Some("power_automate")
    );
    assert_eq!(seen.header("x-oneflow-api-token").as_deref(), Some("k3y"));

    // `skip` keeps what the request already carries.
    let base = gw.data_url();
    let kept = send(
        client()
            .get(format!("{base}/connectors/oodrive-sign/contracts/7"))
            .header("accept", "application/pdf"),
    )
    .await;
    assert_eq!(kept.status, 200);
    // Without an Accept (reqwest always sends one), the policy sets it.
    let set = raw(
        gw.data_addr,
        "GET",
        "/connectors/oodrive-sign/contracts/7",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(set.status, 200);
    let seen = backend.seen();
    assert_eq!(seen[1].path, "/api/v4/contracts/7");
    assert_eq!(seen[1].header("accept").as_deref(), Some("application/pdf"));
    assert_eq!(
        seen[2].header("accept").as_deref(),
        Some("application/json")
    );
    gw.shutdown().await;
}

/// Aranda Service Management: `append` adds a value next to the one already there (here
/// the API key the security scheme put in `TokenAsms`).
#[tokio::test]
async fn setheader_appends() {
    let backend = Backend::ok().await;
    let (gw, _dir) = serve(
        &["Aranda Service Management"],
        &format!(
            "[connector.aranda-service-management]\nbackend = \"{}/asms\"\n[connector.aranda-service-management.connection]\napi_key = \"k3y\"\nhostUrl = \"https://asms.example.com\"\n",
            backend.url()
        ),
    )
    .await;
    let reply = fetch(format!(
        "{}/connectors/aranda-service-management/connection",
        gw.data_url()
    ))
    .await;
    assert_eq!(reply.status, 200);
    let seen = backend.only();
    assert_eq!(seen.path, "/asms/connection");
    assert_eq!(seen.header("tokenasms").as_deref(), Some("k3y, k3y"));
    assert_eq!(
        seen.header("urlasms").as_deref(),
        Some("https://asms.example.com")
    );
    // A header built from a secret connection value is marked sensitive upstream (hyper
    // keeps it out of HPACK tables); it still arrives.
    gw.shutdown().await;
}

/// Cognizant Automation Center: a Response-section setheader overrides the backend's
/// Content-Type; the Request-section one sets the request's.
#[tokio::test]
async fn setheader_in_the_response_section() {
    let backend = Backend::start(|_| {
        (
            200,
            vec![("content-type", "text/plain".to_owned())],
            r#"{"customer": 7}"#.to_owned(),
        )
    })
    .await;
    let (gw, _dir) = serve(
        &["Cognizant Automation Center"],
        &format!(
            "[connector.cognizant-automation-center.connection]\ncacUrl = \"{}\"\napi_key = \"k\"\n",
            backend.url()
        ),
    )
    .await;
    let reply = fetch(format!(
        "{}/connectors/cognizant-automation-center/portal/base/api/v3/admin/customer?ttype=x",
        gw.data_url()
    ))
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json(), json!({"customer": 7}));
    let seen = backend.only();
    assert_eq!(seen.path, "/portal/base/api/v3/admin/customer");
    assert_eq!(
        seen.header("content-type").as_deref(),
        Some("application/json")
    );
    gw.shutdown().await;
}

/// No published package uses the Failure section; this instance is written here: it runs
/// on error responses only.
#[tokio::test]
async fn setheader_in_the_failure_section_runs_on_error_responses_only() {
    let backend = Backend::start(|seen| {
        if seen.path.ends_with("/missing") {
            json_answer(404, json!({"error": "no"}))
        } else {
            json_answer(200, json!({"ok": true}))
        }
    })
    .await;
    let mut c = connector(
        "failing",
        backend.addr,
        vec![op(Method::Get, "/items/{id}", "GetItem").param(param(
            "id",
            ParamLocation::Path,
            json!({"type": "string"}),
        ))],
    );
    c.properties = Some(ApiProperties {
        policy_template_instances: vec![PolicyInstance {
            template_id: "setheader".into(),
            title: Some("mark failures".into()),
            parameters: serde_json::from_value(json!({
                "x-ms-apimTemplateParameter.name": "X-Backend-Failed",
                "x-ms-apimTemplateParameter.value": "yes",
                "x-ms-apimTemplate-policySection": "Failure"
            }))
            .unwrap(),
            pointer: "/properties/policyTemplateInstances/0".into(),
        }],
        ..ApiProperties::default()
    });
    let gw = gateway(vec![c], "").await;
    let ok = fetch(format!("{}/connectors/failing/items/1", gw.data_url())).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("x-backend-failed"), None);
    let failed = fetch(format!(
        "{}/connectors/failing/items/missing",
        gw.data_url()
    ))
    .await;
    assert_eq!(failed.status, 404);
    assert_eq!(failed.header("x-backend-failed"), Some("yes"));
    assert_eq!(failed.json(), json!({"error": "no"}));
    gw.shutdown().await;
}

// ------------------------------------------------------------------------ setqueryparameter

/// OutlookTasks: `$top` (written `%24top`) defaults to 50 with `skip`; Tikit appends a
/// `$filter`.
#[tokio::test]
async fn setqueryparameter_skips_and_appends() {
    let backend = Backend::ok().await;
    let (gw, _dir) = serve(
        &["OutlookTasks", "Tikit"],
        &format!(
            "[connector.outlooktasks]\nbackend = \"{0}/api/v2.0\"\n[connector.tikit]\nbackend = \"{0}/api\"\n[connector.tikit.connection]\naccess_token = \"t\"\n",
            backend.url()
        ),
    )
    .await;
    let base = gw.data_url();
    assert_eq!(
        fetch(format!("{base}/connectors/outlooktasks/v2/me/tasks"))
            .await
            .status,
        200
    );
    assert_eq!(
        fetch(format!(
            "{base}/connectors/outlooktasks/v2/me/tasks?$top=5&$skip=10"
        ))
        .await
        .status,
        200
    );
    assert_eq!(
        fetch(format!("{base}/connectors/tikit/Status"))
            .await
            .status,
        200
    );
    let seen = backend.seen();
    // Routed to /me/tasks by routerequesttoendpoint #7; $top added when absent.
    assert_eq!(seen[0].path, "/api/v2.0/me/tasks");
    assert_eq!(seen[0].query.as_deref(), Some("%24top=50"));
    // Kept when present.
    assert_eq!(seen[1].query.as_deref(), Some("%24top=5&%24skip=10"));
    assert_eq!(seen[2].path, "/api/Status");
    assert_eq!(
        seen[2].query.as_deref(),
        Some("%24filter=IsArchived%20eq%20false")
    );
    gw.shutdown().await;
}

// ------------------------------------------------------------------------ host policies

/// Oneflow's host comes from the connection value `instance_url` (a whole URL, with a
/// default in the template).
#[tokio::test]
async fn dynamichosturl_takes_the_base_url_from_the_connection() {
    let backend = Backend::ok().await;
    let (gw, _dir) = serve(
        &["Oneflow"],
        &format!(
            "[connector.oneflow.connection]\napi_key = \"k\"\nuserEmail = \"a@b.c\"\ninstance_url = \"{}/tenant-7/v1\"\n",
            backend.url()
        ),
    )
    .await;
    let reply =
        send(client().delete(format!("{}/connectors/oneflow/webhooks/42", gw.data_url()))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(backend.only().path, "/tenant-7/v1/webhooks/42");
    gw.shutdown().await;

    // `backend` in the configuration wins over the package's host policy.
    let other = Backend::ok().await;
    let (gw, _dir) = serve(
        &["Oneflow"],
        &format!(
            "[connector.oneflow]\nbackend = \"{}/staging\"\n[connector.oneflow.connection]\napi_key = \"k\"\nuserEmail = \"a@b.c\"\ninstance_url = \"{}/v1\"\n",
            other.url(),
            backend.url()
        ),
    )
    .await;
    let reply =
        send(client().delete(format!("{}/connectors/oneflow/webhooks/42", gw.data_url()))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(other.only().path, "/staging/webhooks/42");
    assert_eq!(backend.seen().len(), 1);
    gw.shutdown().await;
}

/// AlisQI's `https://@connectionParameters('subdomain').alisqi.com/api/`: a connection value
/// that would change the scheme, the host suffix or the port is refused with 400 before
/// anything is sent. (The URL a good value gives is checked in
/// `junction-policy`'s tests; this package's host is not reachable from a test.)
#[tokio::test]
async fn dynamicsubdomain_refuses_values_that_leave_the_subdomain() {
    for evil in [
        "evil.com/x?",
        "a@b",
        "evil.com#",
        "evil.com:8080",
        "evil com",
        "evil\\\\com",
        "evil.com.",
        "",
    ] {
        let (gw, _dir) = serve(
            &["AlisQI"],
            &format!("[connector.alisqi.connection]\nsubdomain = \"{evil}\"\napi_key = \"k\"\n"),
        )
        .await;
        let reply = fetch(format!("{}/connectors/alisqi/getAllSets", gw.data_url())).await;
        let problem = reply.problem(400, "invalid-request");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("policy #0 'Set dynamic subdomain in host URL' (dynamicsubdomain)"),
            "{evil:?}: {detail}"
        );
        assert!(
            detail.contains("connection value 'subdomain' cannot be used as the host")
                || detail.contains("the backend URL built from the template is not usable"),
            "{evil:?}: {detail}"
        );
        assert!(
            !detail.contains("evil"),
            "connection values are not echoed: {detail}"
        );
        gw.shutdown().await;
    }
}

/// Asite takes the whole backend URL from the client's `projectId` query parameter: any
/// client could send the connector's credentials anywhere. Refused until `allowed_hosts`
/// says where calls may go; then only there.
#[tokio::test]
async fn a_host_from_the_request_needs_allowed_hosts() {
    let backend = Backend::ok().await;
    let call = |gw: &RunningServer, project: &str| {
        let url = format!(
            "{}/connectors/asite/folderAndFileList?projectId={}&isWorkspace=1&isFolderDataReq=true",
            gw.data_url(),
            percent_encoding::utf8_percent_encode(project, percent_encoding::NON_ALPHANUMERIC)
        );
        async move { send(client().get(url).header("accept", "application/json")).await }
    };
    let (gw, _dir) = serve(
        &["Asite"],
        "[connector.asite.connection]\naccess_token = \"t\"\n",
    )
    .await;
    let reply = call(&gw, &format!("{}/api", backend.url())).await;
    let problem = reply.problem(500, "gateway-misconfigured");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("the backend host would come from the request (query parameter 'projectId'); list the hosts it may reach in `allowed_hosts`"),
        "{problem}"
    );
    gw.shutdown().await;

    // A host without a port allows the scheme's default port only.
    let (gw, _dir) = serve(
        &["Asite"],
        "[connector.asite]\nallowed_hosts = [\"127.0.0.1\"]\n[connector.asite.connection]\naccess_token = \"t\"\n",
    )
    .await;
    let reply = call(&gw, &format!("{}/api", backend.url())).await;
    let problem = reply.problem(400, "invalid-request");
    assert!(
        problem["detail"].as_str().unwrap().contains(&format!(
            "`127.0.0.1:{}` is not in `allowed_hosts`",
            backend.addr.port()
        )),
        "{problem}"
    );
    gw.shutdown().await;

    let (gw, _dir) = serve(
        &["Asite"],
        &format!(
            "[connector.asite]\nallowed_hosts = [\"127.0.0.1:{}\", \"*.asite.com\"]\n[connector.asite.connection]\naccess_token = \"t\"\n",
            backend.addr.port()
        ),
    )
    .await;
    let reply = call(&gw, &format!("{}/api", backend.url())).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let seen = backend.only();
    assert_eq!(seen.path, "/api/folderAndFileList");
    for evil in [
        "https://evil.example.com/api",
        "http://127.0.0.1@evil.example.com/api",
        "http://evil.example.com#127.0.0.1",
        "http://127.0.0.1.evil.example.com/api",
        "javascript:alert(1)",
    ] {
        let reply = call(&gw, evil).await;
        reply.problem(400, "invalid-request");
    }
    assert_eq!(backend.seen().len(), 1, "nothing else reached a backend");
    gw.shutdown().await;
}

// ------------------------------------------------------------------------ routing

/// OutlookTasks: a new path with `{task_id}` inside quotes (the value encoded as one
/// segment); HYAS Insight: a new path with a query built from `@queryParameters`, and the
/// method kept by `@Request.OriginalHTTPMethod`.
#[tokio::test]
async fn routerequesttoendpoint_rewrites_the_path() {
    let backend = Backend::ok().await;
    let (gw, _dir) = serve(
        &["OutlookTasks", "HYAS Insight"],
        &format!(
            "[connector.outlooktasks]\nbackend = \"{0}/api/v2.0\"\n[connector.hyas-insight]\nbackend = \"{0}/api/ext\"\n[connector.hyas-insight.connection]\napi_key = \"k\"\n",
            backend.url()
        ),
    )
    .await;
    let base = gw.data_url();
    let reply = fetch(format!(
        "{base}/connectors/outlooktasks/v2/me/tasks('AAM%2Fk%3D')"
    ))
    .await;
    assert_eq!(reply.status, 200);
    let reply = fetch(format!(
        "{base}/connectors/hyas-insight/device_geo?indicator_type=ipv4&indicator_value=1.2.3.4"
    ))
    .await;
    assert_eq!(reply.status, 200);
    let seen = backend.seen();
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].path, "/api/v2.0/me/tasks('AAM%2Fk%3D')");
    assert_eq!(seen[1].method, "GET");
    assert_eq!(seen[1].path, "/api/ext/device_geo/search");
    assert_eq!(
        seen[1].query.as_deref(),
        Some("ipv4=1.2.3.4&indicator_type=ipv4&indicator_value=1.2.3.4")
    );
    gw.shutdown().await;
}

/// A method change (no published instance changes the method; this one is written here).
#[tokio::test]
async fn routerequesttoendpoint_changes_the_method() {
    let backend = Backend::ok().await;
    let mut c = connector(
        "routed",
        backend.addr,
        vec![op(Method::Get, "/search/{term}", "Search").param(param(
            "term",
            ParamLocation::Path,
            json!({"type": "string"}),
        ))],
    );
    c.properties = Some(ApiProperties {
        policy_template_instances: vec![PolicyInstance {
            template_id: "routerequesttoendpoint".into(),
            title: None,
            parameters: serde_json::from_value(json!({
                "x-ms-apimTemplateParameter.newPath": "/v2/query/{term}",
                "x-ms-apimTemplateParameter.httpMethod": "POST"
            }))
            .unwrap(),
            pointer: "/properties/policyTemplateInstances/0".into(),
        }],
        ..ApiProperties::default()
    });
    let gw = gateway(vec![c], "").await;
    let reply = fetch(format!("{}/connectors/routed/search/a%20b", gw.data_url())).await;
    assert_eq!(reply.status, 200);
    let seen = backend.only();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/api/v2/query/a%20b")
    );
    gw.shutdown().await;
}

// ------------------------------------------------------------------------ body policies

/// AzureAD AddUserToGroup: setproperty on an object, its value interpolating the body.
#[tokio::test]
async fn setproperty_on_an_object() {
    let backend = Backend::ok().await;
    let (gw, _dir) = serve(
        &["AzureAD"],
        &format!("[connector.azuread]\nbackend = \"{}\"\n", backend.url()),
    )
    .await;
    let reply = send(
        client()
            .post(format!(
                "{}/connectors/azuread/v1.0/groups/g-1/members/$ref",
                gw.data_url()
            ))
            .json(&json!({"@odata.id": "5e6cf5c7"})),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let seen = backend.only();
    assert_eq!(seen.path, "/v1.0/groups/g-1/members/$ref");
    assert_eq!(
        seen.json(),
        json!({"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/5e6cf5c7"})
    );
    gw.shutdown().await;
}

/// AzureAD UpdateUser: moveproperties lifts `customProperties` into the body.
#[tokio::test]
async fn moveproperties_lifts_sub_properties() {
    let backend = Backend::ok().await;
    let (gw, _dir) = serve(
        &["AzureAD"],
        &format!("[connector.azuread]\nbackend = \"{}\"\n", backend.url()),
    )
    .await;
    let reply = send(
        client()
            .patch(format!("{}/connectors/azuread/v1.0/users/u-1", gw.data_url()))
            .json(&json!({"displayName": "Ann", "customProperties": {"employeeId": "42", "officeLocation": "B1"}})),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        backend.only().json(),
        json!({"displayName": "Ann", "employeeId": "42", "officeLocation": "B1"})
    );
    gw.shutdown().await;
}

/// Planner CreateTask_V3, request: routerequesttoendpoint, then stringtoarray (`u1;u.2@x.com`
/// → objects), setproperty on each item of the collection, encodepropertyvalue,
/// stringreplace, convertarraytoobject — in declared order. Response: convertobjecttoarray.
#[tokio::test]
async fn planner_create_task_runs_the_data_templates_in_order() {
    let backend = Backend::start(|seen| {
        assert_eq!(seen.path, "/v1.0/planner/tasks");
        json_answer(
            201,
            json!({"id": "t-1", "title": "Write", "assignments": {"u1": {"orderHint": "8585"}}}),
        )
    })
    .await;
    let (gw, _dir) = serve(
        &["Planner"],
        &format!("[connector.planner]\nbackend = \"{}\"\n", backend.url()),
    )
    .await;
    let reply = send(
        client()
            .post(format!("{}/connectors/planner/v2/v1.0/planner/tasks", gw.data_url()))
            .json(&json!({"groupId": "g", "planId": "p", "title": "Write", "assignments": "u1; u.2@x.com"})),
    )
    .await;
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let seen = backend.only();
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.header("prefer").as_deref(),
        Some("return=representation")
    );
    let assignment = json!({"orderHint": " !", "@odata.type": "microsoft.graph.plannerAssignment"});
    assert_eq!(
        seen.json(),
        json!({
            "groupId": "g", "planId": "p", "title": "Write",
            "assignments": {"u1": assignment, "u%2E2%40x%2Ecom": assignment}
        })
    );
    // The response gets `_assignments` as an array.
    assert_eq!(
        reply.json(),
        json!({
            "id": "t-1", "title": "Write",
            "assignments": {"u1": {"orderHint": "8585"}},
            "_assignments": [{"userId": "u1", "value": {"orderHint": "8585"}}]
        })
    );
    gw.shutdown().await;
}

/// Planner UpdateTaskDetails_V2: setvaluefromurl fetches the task details through the same
/// client and puts their `@odata.etag` in `If-Match`; setproperty on each reference and
/// checklist item; stringreplace encodes each resourceLink for OData; convertarraytoobject
/// keys both collections. The response runs convertobjecttoarray and the decoding
/// stringreplace instances.
#[tokio::test]
async fn planner_update_task_details_fetches_the_etag_and_reshapes_the_body() {
    let backend = Backend::start(|seen| match seen.method.as_str() {
        "GET" => json_answer(
            200,
            json!({"@odata.etag": "W/\"JzEtVGFzayAg\"", "id": "T1"}),
        ),
        _ => json_answer(
            200,
            json!({
                "id": "T1",
                "references": {"https%3A//a%2Ecom/x%2Ey?q=1%23f": {"alias": "A"}},
                "checklist": {"c1": {"title": "Do", "isChecked": false}}
            }),
        ),
    })
    .await;
    let (gw, _dir) = serve(
        &["Planner"],
        &format!("[connector.planner]\nbackend = \"{}\"\n", backend.url()),
    )
    .await;
    let reply = send(
        client()
            .patch(format!(
                "{}/connectors/planner/v1.0/planner/tasks/T1/details",
                gw.data_url()
            ))
            .json(&json!({
                "description": "d",
                "references": [{"resourceLink": "https://a.com/x.y?q=1#f", "alias": "A"}],
                "checklist": [{"id": "c1", "title": "Do", "isChecked": false}]
            })),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let seen = backend.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    // The side call.
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", "/v1.0/planner/tasks/T1/details")
    );
    assert!(seen[0].body.is_empty());
    // The call itself.
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("PATCH", "/v1.0/planner/tasks/T1/details")
    );
    assert_eq!(
        seen[1].header("if-match").as_deref(),
        Some("W/\"JzEtVGFzayAg\"")
    );
    assert_eq!(
        seen[1].json(),
        json!({
            "description": "d",
            "references": {"https%3A//a%2Ecom/x%2Ey?q=1%23f": {
                "alias": "A", "previewPriority": " !", "@odata.type": "microsoft.graph.plannerExternalReference"
            }},
            "checklist": {"c1": {"title": "Do", "isChecked": false, "@odata.type": "microsoft.graph.plannerChecklistItem"}}
        })
    );
    assert_eq!(
        reply.json(),
        json!({
            "id": "T1",
            "references": [{"resourceLink": "https://a.com/x.y?q=1#f", "value": {"alias": "A"}}],
            "checklist": [{"id": "c1", "value": {"title": "Do", "isChecked": false}}]
        })
    );
    gw.shutdown().await;
}

/// A side call that fails is a 502 naming the policy; the call itself is not made.
#[tokio::test]
async fn setvaluefromurl_failures_are_502() {
    let backend = Backend::start(|_| json_answer(404, json!({"error": "gone"}))).await;
    let (gw, _dir) = serve(
        &["Planner"],
        &format!("[connector.planner]\nbackend = \"{}\"\n", backend.url()),
    )
    .await;
    let reply = send(client().delete(format!(
        "{}/connectors/planner/v1.0/planner/tasks/T9",
        gw.data_url()
    )))
    .await;
    let problem = reply.problem(502, "upstream-invalid");
    assert_eq!(
        problem["detail"],
        "connector 'planner', operation 'DeleteTask': policy #22 'Set If-Match header for update task' (setvaluefromurl): GET /v1.0/planner/tasks/T9 answered 404 Not Found"
    );
    assert_eq!(backend.only().method, "GET");
    gw.shutdown().await;
}

/// A side call keeps the kind of its failure: a backend that asks for a pause makes the
/// operation answer 429 with its `Retry-After`; one too slow, 504.
#[tokio::test]
async fn setvaluefromurl_keeps_the_kind_of_its_failure() {
    let pausing =
        Backend::start(|_| (429, vec![("retry-after", "7".to_owned())], "{}".to_owned())).await;
    let (gw, _dir) = serve(
        &["Planner"],
        &format!("[connector.planner]\nbackend = \"{}\"\n", pausing.url()),
    )
    .await;
    let reply = send(client().delete(format!(
        "{}/connectors/planner/v1.0/planner/tasks/T9",
        gw.data_url()
    )))
    .await;
    let problem = reply.problem(429, "rate-limited");
    assert_eq!(reply.header("retry-after"), Some("7"), "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("(setvaluefromurl)"),
        "{problem}"
    );
    gw.shutdown().await;

    let slow = start_backend(axum::Router::new().fallback(|| async {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        "{}"
    }))
    .await;
    let (gw, _dir) = serve(
        &["Planner"],
        &format!("[connector.planner]\nbackend = \"http://{slow}\"\ntimeout = \"300ms\"\n"),
    )
    .await;
    let reply = send(client().delete(format!(
        "{}/connectors/planner/v1.0/planner/tasks/T9",
        gw.data_url()
    )))
    .await;
    reply.problem(504, "upstream-timeout");
    gw.shutdown().await;
}

// ------------------------------------------------------------------------ next links, paging

fn tasks_page(backend: &str, page: usize) -> Value {
    let mut body = json!({
        "value": [{"id": format!("t{page}"), "assignments": {format!("u{page}"): {}}}]
    });
    if page < 3 {
        body["@odata.nextLink"] = json!(format!(
            "{backend}/v1.0/planner/plans/P1/tasks?$skiptoken=page{}",
            page + 1
        ));
    }
    body
}

async fn paged_tasks() -> Backend {
    Backend::start(move |seen| {
        let page = match seen.query.as_deref() {
            Some(q) if q.contains("skiptoken=page2") => 2,
            Some(q) if q.contains("skiptoken=page3") => 3,
            _ => 1,
        };
        let host = seen.header("host").unwrap();
        json_answer(200, tasks_page(&format!("http://{host}"), page))
    })
    .await
}

/// Planner ListTasks_V3: updatenextlink rewrites `@odata.nextLink` to point back through
/// the gateway; following it calls the backend's next link with the same credentials and
/// policies (convertobjecttoarray on each item of `value`).
#[tokio::test]
async fn updatenextlink_points_next_links_back_through_the_gateway() {
    let backend = paged_tasks().await;
    let (gw, _dir) = serve(
        &["Planner"],
        &format!("[connector.planner]\nbackend = \"{}\"\n", backend.url()),
    )
    .await;
    let first = format!(
        "{}/connectors/planner/v2/v1.0/planner/plans/P1/tasks?groupId=G",
        gw.data_url()
    );
    let reply = fetch(first.clone()).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let page = reply.json();
    assert_eq!(
        page["value"],
        json!([{"id": "t1", "assignments": {"u1": {}}, "_assignments": [{"userId": "u1", "value": {}}]}])
    );
    let next = page["@odata.nextLink"].as_str().unwrap().to_owned();
    assert_eq!(
        signed_next_link(&next, &first),
        "/v1.0/planner/plans/P1/tasks?$skiptoken=page2"
    );
    let reply = fetch(next).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["value"][0]["id"], "t2");
    let seen = backend.seen();
    assert_eq!(seen[0].path, "/v1.0/planner/plans/P1/tasks");
    assert_eq!(seen[0].query.as_deref(), Some("groupId=G"));
    assert_eq!(seen[1].path, "/v1.0/planner/plans/P1/tasks");
    assert_eq!(seen[1].query.as_deref(), Some("$skiptoken=page2"));
    // A next link that leaves the backend is refused.
    let reply = fetch(format!("{first}&junction-next=%2F%2Fevil.example.com%2Fx")).await;
    reply.problem(400, "invalid-request");
    gw.shutdown().await;
}

/// `x-ms-pageable` with `[… .paging]`: the gateway follows `@odata.nextLink` itself and
/// returns the merged collection, within the configured limits.
#[tokio::test]
async fn paging_merges_pages_up_to_the_limits() {
    let backend = paged_tasks().await;
    let (gw, _dir) = serve(
        &["Planner"],
        &format!(
            "[connector.planner]\nbackend = \"{}\"\n[connector.planner.operation.ListTasks_V3.paging]\nmax_pages = 10\n",
            backend.url()
        ),
    )
    .await;
    let url = format!(
        "{}/connectors/planner/v2/v1.0/planner/plans/P1/tasks?groupId=G",
        gw.data_url()
    );
    let page = fetch(url.clone()).await.json();
    let ids: Vec<&str> = page["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["t1", "t2", "t3"]);
    assert!(page.get("@odata.nextLink").is_none(), "{page}");
    // Response policies ran on the merged document.
    assert_eq!(
        page["value"][2]["_assignments"],
        json!([{"userId": "u3", "value": {}}])
    );
    assert_eq!(backend.seen().len(), 3);
    gw.shutdown().await;

    // At most two pages: the next link of the second stays, rewritten.
    let (gw, _dir) = serve(
        &["Planner"],
        &format!(
            "[connector.planner]\nbackend = \"{}\"\n[connector.planner.paging]\nmax_pages = 2\nmax_items = 1000\n",
            backend.url()
        ),
    )
    .await;
    let url = format!(
        "{}/connectors/planner/v2/v1.0/planner/plans/P1/tasks?groupId=G",
        gw.data_url()
    );
    let page = fetch(url.clone()).await.json();
    assert_eq!(page["value"].as_array().unwrap().len(), 2);
    assert_eq!(
        signed_next_link(page["@odata.nextLink"].as_str().unwrap(), &url),
        "/v1.0/planner/plans/P1/tasks?$skiptoken=page3"
    );
    gw.shutdown().await;
}

/// An API key that travels in the query never reaches the client through a rewritten next
/// link (backends often repeat it in their links); the gateway adds it again when the link
/// is followed, and when it follows pages itself.
#[tokio::test]
async fn next_links_never_carry_query_credentials() {
    use junction_model::{ApiKeyLocation, SecurityScheme};
    let backend = Backend::start(|seen| {
        let host = seen.header("host").unwrap();
        if seen.query.as_deref().is_some_and(|q| q.contains("page=2")) {
            json_answer(200, json!({"items": [2]}))
        } else {
            json_answer(
                200,
                json!({"items": [1], "next": format!("http://{host}/api/items?page=2&code=s3cret")}),
            )
        }
    })
    .await;
    let mut c = with_security(
        connector(
            "keyed",
            backend.addr,
            vec![op(Method::Get, "/items", "ListItems")],
        ),
        vec![(
            "key",
            SecurityScheme::ApiKey {
                name: "code".into(),
                location: ApiKeyLocation::Query,
            },
        )],
    );
    c.operations[0].extensions.insert(
        "x-ms-pageable".into(),
        json!({"nextLinkName": "next", "itemName": "items"}),
    );
    c.properties = Some(ApiProperties {
        policy_template_instances: vec![PolicyInstance {
            template_id: "updatenextlink".into(),
            title: None,
            parameters: serde_json::from_value(json!({
                "x-ms-apimTemplateParameter.nextLinkPropertyName": "next"
            }))
            .unwrap(),
            pointer: "/properties/policyTemplateInstances/0".into(),
        }],
        ..ApiProperties::default()
    });
    let gw = gateway(
        vec![c.clone()],
        "[connector.keyed.connection]\napi_key = \"s3cret\"\n",
    )
    .await;
    let page = fetch(format!("{}/connectors/keyed/items", gw.data_url())).await;
    assert_eq!(page.status, 200);
    let next = page.json()["next"].as_str().unwrap().to_owned();
    assert!(!next.contains("s3cret"), "{next}");
    assert_eq!(
        signed_next_link(&next, &format!("{}/connectors/keyed/items?", gw.data_url())),
        "/items?page=2"
    );
    let second = fetch(next).await;
    assert_eq!(second.json(), json!({"items": [2]}));
    let seen = backend.seen();
    assert_eq!(seen[0].query.as_deref(), Some("code=s3cret"));
    assert_eq!(seen[1].query.as_deref(), Some("page=2&code=s3cret"));
    gw.shutdown().await;

    // Paging done by the gateway: the same.
    let gw = gateway(
        vec![c],
        "[connector.keyed.connection]\napi_key = \"s3cret\"\n[connector.keyed.paging]\nmax_pages = 5\n",
    )
    .await;
    let page = fetch(format!("{}/connectors/keyed/items", gw.data_url())).await;
    assert_eq!(page.json(), json!({"items": [1, 2]}));
    let seen = backend.seen();
    assert_eq!(seen[3].query.as_deref(), Some("page=2&code=s3cret"));
    gw.shutdown().await;
}

// ------------------------------------------------------------------------ connection status

/// DeskDirector: the backend's 401 means the connection's credentials are no longer
/// accepted — a clear 401 problem, not the backend's body. The Authorization header was
/// set by the package's setheader (`DdApi …`).
#[tokio::test]
async fn setconnectionstatustounauthenticated_maps_to_401() {
    let backend = Backend::start(|_| json_answer(401, json!({"message": "bad key"}))).await;
    let (gw, _dir) = serve(
        &["DeskDirector"],
        &format!(
            "[connector.deskdirector]\nbackend = \"{}\"\n[connector.deskdirector.connection]\nsiteHost = \"support.example.com\"\napiKey = \"k3y\"\n",
            backend.url()
        ),
    )
    .await;
    let reply = fetch(format!(
        "{}/connectors/deskdirector/api/v2/automate/connector/tickets/5",
        gw.data_url()
    ))
    .await;
    let problem = reply.problem(401, "connection-unauthenticated");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("the backend answered 401 Unauthorized, which means it no longer accepts the connection's credentials"),
        "{problem}"
    );
    assert_eq!(
        backend.only().header("authorization").as_deref(),
        Some("DdApi k3y")
    );
    gw.shutdown().await;
}

// ------------------------------------------------------------------------ polling triggers

/// MicrosoftGraphSecurity's pollingtrigger instances are parsed and checked (the trigger
/// runner runs them: tests/triggers.rs); clients cannot call the trigger operations.
#[tokio::test]
async fn pollingtrigger_is_parsed_and_checked() {
    let loaded = junction_import::load(&package("MicrosoftGraphSecurity"));
    let connector = loaded.connector.unwrap();
    let instance = connector
        .policies()
        .iter()
        .find(|p| p.template_id == "pollingtrigger")
        .unwrap();
    let compiled = junction_policy::compile(instance, 0);
    assert!(compiled.findings.is_empty(), "{:?}", compiled.findings);
    let policy = compiled.policy.unwrap();
    let Kind::PollingTrigger { config, data, .. } = &policy.kind else {
        panic!("{:?}", policy.kind)
    };
    assert_eq!(data.to_string(), "@triggerBody().value");
    assert_eq!(config.len(), 1);
    assert_eq!(config[0].0, "$filter");
    assert!(config[0].1.reads_body());
    assert_eq!(
        policy.operations.as_deref(),
        Some(&["OnAllNewAlerts".to_owned()][..])
    );
    let op = connector.operation("OnAllNewAlerts").unwrap();
    assert!(op.is_trigger());
}

// ------------------------------------------------------------------------ jq transforms

/// Transforms from junction.toml (Cognizant Automation Center): the request body after
/// the package's policies, the response body after them; `$params` and the non-secret
/// connection values are visible, secrets are not. An operation's transform replaces the
/// connector's.
#[tokio::test]
async fn jq_transforms_reshape_bodies_and_never_see_secrets() {
    let backend = Backend::start(|_| {
        json_answer(
            200,
            json!({"data": [{"id": 1, "name": "Sales"}, {"id": 2, "name": "Legal"}]}),
        )
    })
    .await;
    let (gw, _dir) = serve(
        &["Cognizant Automation Center"],
        &format!(
            r#"[connector.cognizant-automation-center.connection]
api_key = "s3cret-key"
cacUrl = "{}"

[connector.cognizant-automation-center.transform]
response = '{{names: [.data[].name], key: $connection.api_key, visible: ($connection | keys), ttype: $params.ttype}}'

[connector.cognizant-automation-center.operation.TriggerAction.transform]
request = '. + {{activity: $params.ActivityId, host: $connection.cacUrl}}'
response = '{{triggered: (.data | length)}}'
"#,
            backend.url()
        ),
    )
    .await;
    let base = format!("{}/connectors/cognizant-automation-center", gw.data_url());
    let reply = fetch(format!(
        "{base}/portal/base/api/v3/admin/customer?ttype=svc"
    ))
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.json(),
        json!({"names": ["Sales", "Legal"], "key": null, "visible": ["cacUrl"], "ttype": "svc"})
    );
    assert!(!String::from_utf8_lossy(&reply.body).contains("s3cret"));

    let reply = send(
        client()
            .post(format!(
                "{base}/portal/ino/api/v3/collab/activity/A-9/actions?ttype=svc"
            ))
            .json(&json!({"ActionId": 3, "CIId": "ci", "ActivityId": 9})),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json(), json!({"triggered": 2}));
    assert_eq!(
        backend.seen().pop().unwrap().json(),
        json!({"ActionId": 3, "CIId": "ci", "ActivityId": 9, "activity": "A-9", "host": backend.url()})
    );
    gw.shutdown().await;
}

/// A jq error at run time is a 502 naming the transform.
#[tokio::test]
async fn a_failing_transform_is_502_naming_it() {
    let backend = Backend::start(|_| json_answer(200, json!({"data": "not a list"}))).await;
    let (gw, _dir) = serve(
        &["Cognizant Automation Center"],
        &format!(
            "[connector.cognizant-automation-center.connection]\napi_key = \"k\"\ncacUrl = \"{}\"\n[connector.cognizant-automation-center.transform]\nresponse = '[.data[] | .name]'\n",
            backend.url()
        ),
    )
    .await;
    let reply = fetch(format!(
        "{}/connectors/cognizant-automation-center/portal/base/api/v3/admin/customer?ttype=x",
        gw.data_url()
    ))
    .await;
    let problem = reply.problem(502, "transform-failed");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("connector 'cognizant-automation-center', operation 'FetchCustomerDetails': the transform `connector.cognizant-automation-center.transform.response` failed: "),
        "{problem}"
    );
    gw.shutdown().await;
}

/// A transform that does not compile stops the load, pointing at the character.
#[test]
fn a_transform_that_does_not_compile_is_a_config_error() {
    let error = junction_runtime::Config::parse(
        "[connector.x.transform]\nresponse = '.a | frob'\n",
        Path::new("junction.toml"),
        Path::new("."),
        &|_| None,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "junction.toml:2:18: `connector.x.transform.response`: the jq program does not compile: at character 6: undefined filter `frob`"
    );
    let error = junction_runtime::Config::parse(
        "[connector.x.transform]\nrequest = '$ENV.HOME'\n",
        Path::new("junction.toml"),
        Path::new("."),
        &|_| None,
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("undefined variable `$ENV`"),
        "{error}"
    );
}

/// A section for an operation the connector does not have is an error, like one for an
/// unknown connector: a misspelt operation id never silently does nothing.
#[test]
fn a_section_for_an_unknown_operation_is_an_error() {
    let loaded = junction_import::load(&package("Planner"));
    let config = junction_runtime::Config::parse(
        "[connector.planner]\nbackend = \"http://127.0.0.1:9\"\n[connector.planner.operation.ListTask_V3.paging]\nmax_pages = 2\n",
        Path::new("junction.toml"),
        Path::new("."),
        &|_| None,
    )
    .unwrap();
    let errors: Vec<String> =
        junction_runtime::Gateway::compile(&config, &[loaded.connector.unwrap()])
            .unwrap_err()
            .errors()
            .map(ToString::to_string)
            .collect();
    assert_eq!(
        errors,
        [
            "junction.toml#/connector/planner/operation/ListTask_V3:3:1: error[unknown-operation]: [connector.planner.operation.ListTask_V3] configures an operation connector 'planner' does not have"
        ]
    );
}

// ------------------------------------------------------------------------ custom code, broken

/// Telstra SMS declares `scriptOperations: []`: every operation runs its C# script, so
/// every call answers 501 saying why.
#[tokio::test]
async fn custom_code_operations_answer_501() {
    let backend = Backend::ok().await;
    let (gw, _dir) = serve(
        &["Telstra SMS"],
        &format!("[connector.telstra-sms]\nbackend = \"{}\"\n", backend.url()),
    )
    .await;
    let reply = send(
        client()
            .post(format!("{}/connectors/telstra-sms/messages", gw.data_url()))
            .json(&json!({"to": "+61400000000"})),
    )
    .await;
    let problem = reply.problem(501, "not-implemented");
    assert_eq!(
        problem["detail"],
        "operation 'SendSMS' of connector 'telstra-sms' is implemented by the package's custom code (a C# script, declared by scriptOperations), which Junction cannot run"
    );
    assert!(backend.seen().is_empty());
    gw.shutdown().await;
}

/// A package folder with a `script.csx` and no operation list: every operation runs the
/// script. `junction validate` lists them as a warning.
#[tokio::test]
async fn a_script_file_makes_every_operation_custom_code() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("connectors/Oodrive Sign");
    std::fs::create_dir_all(&folder).unwrap();
    for file in ["apiDefinition.swagger.json", "apiProperties.json"] {
        std::fs::copy(package("Oodrive Sign").join(file), folder.join(file)).unwrap();
    }
    std::fs::write(
        folder.join("script.csx"),
        "public class Script : ScriptBase {}",
    )
    .unwrap();
    let loaded = junction_import::load(&folder);
    let warning = loaded
        .diagnostics
        .iter()
        .find(|d| d.code == "custom-code")
        .unwrap();
    assert!(
        warning.message.starts_with(
            "32 operations run the package's custom code (C# script, declared by script.csx)"
        ),
        "{warning}"
    );
    write_config(
        dir.path(),
        "[connector.oodrive-sign.connection]\napi_key = \"k\"\n",
    );
    let gw = harness::serve_dir(dir.path()).await;
    let reply = fetch(format!(
        "{}/connectors/oodrive-sign/contracts/7",
        gw.data_url()
    ))
    .await;
    reply.problem(501, "not-implemented");
    gw.shutdown().await;
}

/// Assently E-Sign's second instance sets a header named `[[Dummy]]`, which is not a header
/// name: the operations it applies to answer 500 naming it (and the load says so).
#[tokio::test]
async fn a_broken_instance_makes_its_operations_answer_500() {
    let backend = Backend::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let connectors = dir.path().join("connectors");
    std::fs::create_dir_all(&connectors).unwrap();
    harness::symlink_dir(
        &package("Assently E-Sign"),
        &connectors.join("Assently E-Sign"),
    );
    write_config(
        dir.path(),
        &format!(
            "[connector.assently-e-sign]\nbackend = \"{}\"\n[connector.assently-e-sign.connection]\nusername = \"u\"\npassword = \"p\"\n",
            backend.url()
        ),
    );
    let config = junction_runtime::Config::load(dir.path()).unwrap();
    let loaded = junction_import::load(&connectors.join("Assently E-Sign"));
    let compiled =
        junction_runtime::Gateway::compile(&config, &[loaded.connector.clone().unwrap()]).unwrap();
    let broken: Vec<String> = compiled
        .diagnostics
        .iter()
        .filter(|d| d.code == "policy-broken")
        .map(ToString::to_string)
        .collect();
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert!(
        broken[0].contains("apiProperties.json#/properties/policyTemplateInstances/1/parameters/x-ms-apimTemplateParameter.name"),
        "{}",
        broken[0]
    );
    let gw = harness::serve_dir(dir.path()).await;
    let reply = fetch(format!(
        "{}/connectors/assently-e-sign/v2/getCase?Id=1&includeAllStatuses=true&IncludePendingApprovalStatus=true",
        gw.data_url()
    ))
    .await;
    let problem = reply.problem(500, "gateway-misconfigured");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("operation 'GetCase' cannot be called: policy #1 '[[Dummy]]' (setheader) cannot run: '[[Dummy]]' is not a valid header name"),
        "{problem}"
    );
    assert!(backend.seen().is_empty());
    gw.shutdown().await;
}

// ------------------------------------------------------------------------ the corpus

/// Every policy instance of the corpus either compiles, or has a precise diagnostic: an
/// error finding with a pointer into the instance, reported by the importer as a warning
/// with line and column. Every package whose `apiProperties.json` is JSON counts, also the
/// few whose definition is malformed (their properties are read with a stand-in
/// definition). The instance counts per template match
/// `shared/reference/policy-templates-in-corpus.json`; the compiled / diagnostic split is
/// printed and asserted.
#[test]
fn every_corpus_instance_compiles_or_has_a_precise_diagnostic() {
    const STAND_IN: &str = r#"{"swagger": "2.0", "info": {"title": "t", "version": "1"}, "host": "x.example.com", "paths": {}}"#;
    let mut counts: BTreeMap<String, (usize, usize, BTreeMap<&'static str, usize>)> =
        BTreeMap::new();
    let mut packages = 0;
    for path in junction_import::discover(&corpus_root()) {
        let props_file = path.join("apiProperties.json");
        let Ok(bytes) = std::fs::read(&props_file) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if serde_json::from_str::<Value>(text.trim_start_matches('\u{feff}')).is_err() {
            continue;
        }
        let props_name = props_file.display().to_string();
        let loaded = junction_import::load_from_str(
            "p",
            "p/apiDefinition.swagger.json",
            STAND_IN,
            Some((&props_name, &text)),
        );
        let connector = loaded
            .connector
            .as_ref()
            .unwrap_or_else(|| panic!("{}: {:?}", path.display(), loaded.diagnostics));
        if !connector.policies().is_empty() {
            packages += 1;
        }
        for (i, instance) in connector.policies().iter().enumerate() {
            let compiled = junction_policy::compile(instance, i);
            let entry = counts.entry(instance.template_id.clone()).or_default();
            match &compiled.policy {
                Some(_) => entry.0 += 1,
                None => {
                    entry.1 += 1;
                    let error = compiled.error().unwrap_or_else(|| {
                        panic!("{}: broken without an error finding", path.display())
                    });
                    *entry.2.entry(error.code).or_default() += 1;
                    assert!(
                        error.pointer.starts_with(&format!("{}/", instance.pointer)),
                        "{error}"
                    );
                    let reported = loaded
                        .diagnostics
                        .iter()
                        .find(|d| d.pointer == error.pointer && d.message == error.message)
                        .unwrap_or_else(|| panic!("not reported: {error}"));
                    assert!(
                        reported.line.is_some() && reported.column.is_some(),
                        "{reported}"
                    );
                    println!("{reported}");
                }
            }
        }
    }
    let mut table = String::from("template | compiled | diagnostics\n");
    for (template, (ok, broken, kinds)) in &counts {
        table.push_str(&format!("{template} | {ok} | {broken} {kinds:?}\n"));
    }
    println!("{packages} packages with policies\n{table}");

    // The instance counts are the reference's.
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(
            harness::workspace_root().join("../shared/reference/policy-templates-in-corpus.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let expected: BTreeMap<String, usize> = reference["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["templateId"].as_str().unwrap().to_owned(),
                usize::try_from(t["instances"].as_u64().unwrap()).unwrap(),
            )
        })
        .collect();
    let found: BTreeMap<String, usize> = counts
        .iter()
        .map(|(t, (ok, broken, _))| (t.clone(), ok + broken))
        .collect();
    assert_eq!(found, expected);

    let summary: BTreeMap<&str, (usize, usize)> = counts
        .iter()
        .map(|(t, (ok, broken, _))| (t.as_str(), (*ok, *broken)))
        .collect();
    assert_eq!(
        summary,
        BTreeMap::from([
            ("convertarraytoobject", (3, 0)),
            ("convertobjecttoarray", (5, 0)),
            ("dynamichosturl", (169, 1)),
            ("dynamicsubdomain", (1, 0)),
            ("encodepropertyvalue", (1, 0)),
            ("moveproperties", (1, 0)),
            ("pollingtrigger", (38, 1)),
            ("routerequesttoendpoint", (115, 0)),
            ("setconnectionstatustounauthenticated", (1, 0)),
            ("setheader", (190, 1)),
            ("setproperty", (51, 0)),
            ("setqueryparameter", (35, 0)),
            ("setvaluefromurl", (4, 0)),
            ("stringreplace", (11, 0)),
            ("stringtoarray", (1, 0)),
            ("updatenextlink", (8, 0)),
        ])
    );
}
