//! End-to-end tests of the importer through its public API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use junction_model::{
    ApiKeyLocation, CollectionFormat, Connector, Method, ParamLocation, SecurityScheme,
    SourceFormat, UrlEncoding, Visibility,
};
use serde_json::json;

use super::*;

fn ok(loaded: &Loaded) -> &Connector {
    match &loaded.connector {
        Some(c) => c,
        None => panic!("not loaded: {:#?}", loaded.diagnostics),
    }
}

fn codes(loaded: &Loaded) -> Vec<&'static str> {
    loaded.diagnostics.iter().map(|d| d.code).collect()
}

const SWAGGER: &str = r##"{
  "swagger": "2.0",
  "info": {"title": "Pets", "version": "1.0", "description": "A pet store"},
  "host": "pets.example.com",
  "basePath": "/v1/",
  "schemes": ["http", "https"],
  "consumes": ["application/json"],
  "securityDefinitions": {
    "key": {"type": "apiKey", "in": "header", "name": "X-Key"},
    "oauth": {"type": "oauth2", "flow": "accessCode", "authorizationUrl": "https://a", "tokenUrl": "https://t", "scopes": {"read": "r"}}
  },
  "security": [{"key": []}],
  "parameters": {
    "Limit": {"name": "limit", "in": "query", "type": "integer", "maximum": 100, "exclusiveMaximum": true, "default": 10}
  },
  "responses": {
    "NotFound": {"description": "not found", "schema": {"$ref": "#/definitions/Error"}}
  },
  "paths": {
    "/pets/{petId}": {
      "x-summary": "ignored",
      "parameters": [
        {"name": "petId", "in": "path", "required": true, "type": "string"},
        {"name": "verbose", "in": "query", "type": "boolean", "description": "path level"}
      ],
      "get": {
        "operationId": "GetPet",
        "summary": "Get a pet",
        "x-ms-visibility": "important",
        "parameters": [
          {"name": "verbose", "in": "query", "type": "boolean", "description": "operation level"},
          {"$ref": "#/parameters/Limit"},
          {"name": "tags", "in": "query", "type": "array", "items": {"type": "string"}, "collectionFormat": "multi"},
          {"name": "X-Trace", "in": "header", "type": "string", "x-ms-visibility": "internal", "x-ms-summary": "Trace"}
        ],
        "responses": {
          "200": {"description": "ok", "schema": {"$ref": "#/definitions/Pet"}, "headers": {"x-ms-request-id": {"type": "string"}}},
          "404": {"$ref": "#/responses/NotFound"}
        }
      },
      "PUT": {
        "operationId": "PutPet",
        "security": [{"oauth": ["read"]}],
        "parameters": [
          {"name": "body", "in": "body", "required": true, "schema": {"$ref": "#/definitions/Pet"}, "x-ms-visibility": "advanced"}
        ],
        "responses": {"200": {"description": "ok"}}
      }
    },
    "/pets/{petId}/photo": {
      "post": {
        "consumes": ["multipart/form-data"],
        "parameters": [
          {"name": "petId", "in": "path", "required": true, "type": "string", "x-ms-url-encoding": "double"},
          {"name": "file", "in": "formData", "type": "file", "required": true},
          {"name": "caption", "in": "formData", "type": "string"}
        ],
        "responses": {"200": {"description": "ok"}}
      }
    },
    "/owners/{ownerId}": {
      "get": {
        "operationId": "GetPet",
        "parameters": [{"name": "other", "in": "path", "required": true, "type": "string"}],
        "responses": {"default": {"description": "x"}}
      }
    }
  },
  "definitions": {
    "Pet": {"type": "object", "required": ["name"], "properties": {
      "name": {"type": "string"},
      "age": {"type": "integer", "x-nullable": true},
      "owner": {"$ref": "#/definitions/Owner"},
      "nick": {"$ref": "#/definitions/Pet/properties/name"}
    }},
    "Owner": {"type": "object", "properties": {"pets": {"type": "array", "items": {"$ref": "#/definitions/Pet"}}}},
    "Error": {"type": "object", "properties": {"message": {"type": "string"}}}
  },
  "x-ms-connector-metadata": [{"propertyName": "Website", "propertyValue": "https://x"}]
}"##;

#[test]
fn swagger_document_reads_into_the_model() {
    let loaded = load_from_str(
        "Pet Store (Test)",
        "pets/apiDefinition.swagger.json",
        SWAGGER,
        None,
    );
    let c = ok(&loaded);
    assert_eq!(c.name, "pet-store-test");
    assert_eq!(c.title, "Pets");
    assert_eq!(c.version.as_deref(), Some("1.0"));
    assert_eq!(c.format, SourceFormat::Swagger2);
    assert_eq!(c.upstream.base_url(), "https://pets.example.com/v1");
    assert_eq!(
        c.security_schemes.get("key"),
        Some(&SecurityScheme::ApiKey {
            name: "X-Key".into(),
            location: ApiKeyLocation::Header
        })
    );
    assert!(
        matches!(c.security_schemes.get("oauth"), Some(SecurityScheme::OAuth2 { flow: Some(f), scopes, .. }) if f == "accessCode" && scopes == &["read"])
    );
    assert_eq!(c.security.len(), 1);
    assert!(c.extensions.contains_key("x-ms-connector-metadata"));

    let get = c.operation_at(Method::Get, "/pets/{petId}").unwrap();
    assert_eq!(get.id, "GetPet");
    assert_eq!(get.visibility, Visibility::Important);
    assert_eq!(get.pointer, "/paths/~1pets~1{petId}/get");
    let names: Vec<&str> = get.parameters.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["petId", "verbose", "limit", "tags", "X-Trace"]);
    let verbose = &get.parameters[1];
    assert_eq!(
        verbose.description.as_deref(),
        Some("operation level"),
        "operation wins"
    );
    assert_eq!(verbose.pointer, "/paths/~1pets~1{petId}/get/parameters/0");
    let limit = &get.parameters[2];
    assert_eq!(
        limit.schema,
        json!({"type": "integer", "exclusiveMaximum": 100, "default": 10})
    );
    assert_eq!(limit.default, Some(json!(10)));
    assert_eq!(get.parameters[3].collection_format, CollectionFormat::Multi);
    assert_eq!(
        get.parameters[3].schema,
        json!({"type": "array", "items": {"type": "string"}})
    );
    let trace = &get.parameters[4];
    assert_eq!(
        (trace.location, trace.visibility),
        (ParamLocation::Header, Visibility::Internal)
    );
    assert_eq!(trace.summary.as_deref(), Some("Trace"));
    assert_eq!(get.consumes, ["application/json"]);
    let statuses: Vec<&str> = get.responses.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(statuses, ["200", "404"]);
    assert_eq!(
        get.responses[0].schema,
        Some(json!({"$ref": "#/definitions/Pet"}))
    );
    assert_eq!(get.responses[0].headers, ["x-ms-request-id"]);
    assert_eq!(
        get.responses[1].schema,
        Some(json!({"$ref": "#/definitions/Error"}))
    );

    let put = c.operation("PutPet").unwrap();
    assert_eq!(put.method, Method::Put);
    let body = put.body.as_ref().unwrap();
    assert!(body.required);
    assert_eq!(body.media_types, ["application/json"]);
    assert_eq!(body.visibility, Visibility::Advanced);
    assert_eq!(body.schema, json!({"$ref": "#/definitions/Pet"}));
    assert_eq!(
        put.security.as_ref().unwrap()[0].get("oauth"),
        Some(&vec!["read".to_owned()])
    );

    let photo = c.operation("POST /pets/{petId}/photo").unwrap();
    assert!(photo.is_multipart());
    assert_eq!(photo.parameters[0].url_encoding, UrlEncoding::Double);
    let file = &photo.parameters[1];
    assert!(file.is_file && file.required);
    assert_eq!(file.location, ParamLocation::FormData);
    assert_eq!(file.schema, json!({}));

    let defs: Vec<&str> = c.definitions.keys().map(String::as_str).collect();
    assert_eq!(defs, ["Pet", "Owner", "Error", "Pet.properties.name"]);
    assert_eq!(
        c.definitions["Pet"]["properties"]["age"]["type"],
        json!(["integer", "null"])
    );
    assert_eq!(
        c.definitions["Pet"]["properties"]["nick"],
        json!({"$ref": "#/definitions/Pet.properties.name"})
    );
    assert_eq!(
        c.resolve(&json!({"$ref": "#/definitions/Owner"})),
        c.definitions.get("Owner")
    );

    let mut w = codes(&loaded);
    w.sort_unstable();
    assert_eq!(
        w,
        [
            "duplicate-operation-id",
            "method-case",
            "missing-operation-id",
            "undeclared-path-param",
            "unused-path-param",
        ]
    );
    let dup = loaded
        .diagnostics
        .iter()
        .find(|d| d.code == "duplicate-operation-id")
        .unwrap();
    assert_eq!(dup.pointer, "/paths/~1owners~1{ownerId}/get");
    assert_eq!(
        dup.message,
        "operationId 'GetPet' is also used by GET /pets/{petId}"
    );
    assert_eq!((dup.line, dup.column), (Some(62), Some(14)));
    assert_eq!(dup.file, "pets/apiDefinition.swagger.json");
}

#[test]
fn package_with_properties() {
    let props = r##"{"properties": {
        "iconBrandColor": "#007ee5",
        "capabilities": [],
        "connectionParameters": {"api_key": {"type": "securestring", "uiDefinition": {"displayName": "Key", "constraints": {"required": "true"}}}},
        "policyTemplateInstances": [
            {"templateId": "dynamichosturl", "title": "host", "parameters": {"x-ms-apimTemplateParameter.urlTemplate": "https://@connectionParameters('host')"}},
            {"templateId": "SetHeader", "title": "h", "parameters": {"x-ms-apimTemplateParameter.name": "a", "x-ms-apimTemplateParameter.value": "b"}}
        ],
        "publisher": "me"
    }}"##;
    let def = r#"{"swagger": "2.0", "info": {"title": "T", "version": "1"}, "paths": {"/a": {"get": {"operationId": "A", "x-ms-visibilty": "internal", "responses": {}}}}}"#;
    let loaded = load_from_str(
        "x",
        "x/apiDefinition.swagger.json",
        def,
        Some(("x/apiProperties.json", props)),
    );
    let c = ok(&loaded);
    let p = c.properties.as_ref().unwrap();
    assert_eq!(p.publisher.as_deref(), Some("me"));
    assert_eq!(c.policies().len(), 2);
    assert_eq!(c.policies()[1].template_id, "setheader");
    assert!(
        c.connection_parameters()
            .all(|p| p.is_secret() && p.required)
    );
    // No host, but a dynamichosturl policy supplies it: no `no-host` warning.
    assert_eq!(codes(&loaded), ["template-id-case", "misspelled-extension"]);
    let case = &loaded.diagnostics.0[0];
    assert_eq!(case.file, "x/apiProperties.json");
    assert_eq!(
        case.pointer,
        "/properties/policyTemplateInstances/1/templateId"
    );
    assert_eq!((case.line, case.column), (Some(7), Some(28)));
    let typo = &loaded.diagnostics.0[1];
    assert_eq!(
        typo.to_string(),
        "x/apiDefinition.swagger.json#/paths/~1a/get/x-ms-visibilty:1:123: warning[misspelled-extension]: unknown extension 'x-ms-visibilty'; did you mean 'x-ms-visibility'?"
    );
}

#[test]
fn broken_properties_reject_the_package_but_the_definition_is_still_checked() {
    let def = r#"{"swagger": "2.0", "info": {"title": "T"}, "host": "h", "paths": {"/a": {"get": {"x-ms-summmary": "x", "responses": {}}}}}"#;
    let loaded = load_from_str(
        "x",
        "d.json",
        def,
        Some(("p.json", "{\"properties\": {},}")),
    );
    assert!(loaded.connector.is_none());
    assert_eq!(
        codes(&loaded),
        [
            "json-syntax",
            "missing-operation-id",
            "misspelled-extension"
        ]
    );
    assert_eq!(loaded.diagnostics.errors().count(), 1);
    let e = loaded.diagnostics.errors().next().unwrap();
    assert_eq!(
        e.to_string(),
        "p.json#:1:19: error[json-syntax]: invalid JSON: trailing comma"
    );
}

#[test]
fn bom_and_comments_are_warnings() {
    let def = "\u{feff}{\n  // a comment\n  \"swagger\": \"2.0\", /* another */\n  \"host\": \"h\", \"info\": {\"title\": \"T\"},\n  \"paths\": {}\n}";
    let loaded = load_from_str("x", "d.json", def, None);
    ok(&loaded);
    assert_eq!(
        codes(&loaded),
        ["bom", "json-comment", "json-comment", "no-operations"]
    );
    let paths = &loaded.diagnostics.0[3];
    assert_eq!((paths.line, paths.column), (Some(5), Some(12)));
}

#[test]
fn rejections_are_one_clear_line() {
    let cases = [
        (
            "[1, 2]",
            "d.json",
            "d.json#:1:1: error[not-an-object]: an API definition must be a JSON object, found an array",
        ),
        (
            r#"{"info": {}}"#,
            "d.json",
            "d.json#:1:1: error[not-a-definition]: neither 'swagger: \"2.0\"' nor 'openapi: 3.x' found; not an API definition",
        ),
        (
            r#"{"swagger": "1.2", "paths": {}}"#,
            "d.json",
            "d.json#/swagger:1:13: error[unsupported-version]: Swagger version '1.2' is not supported; Junction reads Swagger 2.0 and OpenAPI 3.0 and 3.1",
        ),
        (
            r#"{"openapi": "4.0.0", "paths": {}}"#,
            "d.json",
            "d.json#/openapi:1:13: error[unsupported-version]: OpenAPI version '4.0.0' is not supported; Junction reads Swagger 2.0 and OpenAPI 3.0 and 3.1",
        ),
        (
            r#"{"swagger": "2.0", "info": {"title": "t"}}"#,
            "d.json",
            "d.json#:1:1: error[no-paths]: the definition has no 'paths'",
        ),
        (
            r#"{"swagger": "2.0", "paths": []}"#,
            "d.json",
            "d.json#/paths:1:29: error[no-paths]: 'paths' must be an object, found an array",
        ),
        (
            "openapi: 3.0.0\npaths: [\n",
            "d.yaml",
            "d.yaml#:2:8: error[yaml-syntax]: invalid YAML: unclosed bracket '['",
        ),
    ];
    for (text, file, want) in cases {
        let loaded = load_from_str("x", file, text, None);
        assert!(loaded.connector.is_none(), "{text}");
        let errors: Vec<String> = loaded
            .diagnostics
            .errors()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(want),
            "{}\n  wanted {want}",
            errors[0]
        );
        assert!(!errors[0].contains('\n'));
    }
}

const OPENAPI_30: &str = r##"{
  "openapi": "3.0.3",
  "info": {"title": "Store", "version": "2"},
  "servers": [{"url": "https://store.example.com/api/"}],
  "components": {
    "securitySchemes": {
      "bearer": {"type": "http", "scheme": "bearer"},
      "oidc": {"type": "openIdConnect", "openIdConnectUrl": "https://id/.well-known/openid-configuration"},
      "oauth": {"type": "oauth2", "flows": {"clientCredentials": {"tokenUrl": "https://t", "scopes": {"a": "A"}}}}
    },
    "parameters": {"Page": {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}}},
    "requestBodies": {"Order": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}}}},
    "responses": {"Error": {"description": "e", "content": {"application/problem+json": {"schema": {"type": "object"}}}}},
    "schemas": {
      "Order": {"type": "object", "properties": {"note": {"type": "string", "nullable": true}, "item": {"$ref": "#/components/schemas/Item"}}},
      "Item": {"type": "object", "properties": {"id": {"type": "integer"}}},
      "Upload": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "the file"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "meta": {"$ref": "#/components/schemas/Item"}
      }}
    }
  },
  "security": [{"bearer": []}],
  "paths": {
    "/orders": {
      "get": {
        "operationId": "listOrders",
        "parameters": [
          {"$ref": "#/components/parameters/Page"},
          {"name": "ids", "in": "query", "schema": {"type": "array", "items": {"type": "integer"}}, "style": "form", "explode": false},
          {"name": "X-Tags", "in": "header", "schema": {"type": "array", "items": {"type": "string"}}},
          {"name": "session", "in": "cookie", "schema": {"type": "string"}}
        ],
        "responses": {
          "200": {"description": "ok", "content": {"text/plain": {"schema": {"type": "string"}}, "application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Order"}}}}},
          "4XX": {"$ref": "#/components/responses/Error"}
        }
      },
      "post": {
        "operationId": "createOrder",
        "requestBody": {"$ref": "#/components/requestBodies/Order"},
        "responses": {"201": {"description": "created"}}
      }
    },
    "/uploads": {
      "post": {
        "operationId": "upload",
        "requestBody": {"content": {"multipart/form-data": {"schema": {"$ref": "#/components/schemas/Upload"}, "encoding": {"tags": {"style": "form", "explode": false}}}}},
        "responses": {"204": {"description": "none"}}
      },
      "put": {
        "operationId": "uploadForm",
        "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}},
        "responses": {"204": {"description": "none"}}
      }
    }
  }
}"##;

#[test]
fn openapi_30_json_reads_into_the_model() {
    let loaded = load_from_str("store", "openapi.json", OPENAPI_30, None);
    let c = ok(&loaded);
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    assert_eq!(c.format, SourceFormat::OpenApi30);
    assert_eq!(c.upstream.base_url(), "https://store.example.com/api");
    assert_eq!(
        c.security_schemes.get("bearer"),
        Some(&SecurityScheme::Bearer)
    );
    assert!(matches!(
        c.security_schemes.get("oidc"),
        Some(SecurityScheme::OpenIdConnect { .. })
    ));
    assert!(
        matches!(c.security_schemes.get("oauth"), Some(SecurityScheme::OAuth2 { flow: Some(f), token_url: Some(_), .. }) if f == "clientCredentials")
    );

    let list = c.operation("listOrders").unwrap();
    let p = &list.parameters;
    assert_eq!(p[0].name, "page");
    assert_eq!(p[0].schema, json!({"type": "integer", "minimum": 1}));
    assert_eq!(
        p[0].collection_format,
        CollectionFormat::Multi,
        "form + explode by default"
    );
    assert_eq!(p[1].collection_format, CollectionFormat::Csv);
    assert_eq!(
        p[2].collection_format,
        CollectionFormat::Csv,
        "simple for headers"
    );
    assert_eq!(p[3].location, ParamLocation::Cookie);
    assert_eq!(
        list.produces,
        ["text/plain", "application/json", "application/problem+json"]
    );
    assert_eq!(
        list.responses[0].schema,
        Some(json!({"type": "array", "items": {"$ref": "#/definitions/Order"}}))
    );
    assert_eq!(list.responses[1].status, "4XX");

    let create = c.operation("createOrder").unwrap();
    let body = create.body.as_ref().unwrap();
    assert!(body.required);
    assert_eq!(body.name, "body");
    assert_eq!(body.media_types, ["application/json"]);
    assert_eq!(body.schema, json!({"$ref": "#/definitions/Order"}));
    assert_eq!(body.pointer, "/paths/~1orders/post/requestBody");
    assert_eq!(
        c.definitions["Order"]["properties"]["note"],
        json!({"type": ["string", "null"]})
    );

    let upload = c.operation("upload").unwrap();
    assert!(upload.body.is_none());
    assert!(upload.is_multipart());
    assert_eq!(upload.consumes, ["multipart/form-data"]);
    let f: Vec<(&str, bool, bool, CollectionFormat)> = upload
        .parameters
        .iter()
        .map(|p| (p.name.as_str(), p.required, p.is_file, p.collection_format))
        .collect();
    assert_eq!(
        f,
        [
            ("file", true, true, CollectionFormat::Multi),
            ("tags", false, false, CollectionFormat::Csv),
            ("meta", false, false, CollectionFormat::Multi),
        ]
    );
    assert!(
        upload
            .parameters
            .iter()
            .all(|p| p.location == ParamLocation::FormData)
    );
    assert_eq!(
        upload.parameters[0].description.as_deref(),
        Some("the file")
    );
    assert_eq!(
        upload.parameters[2].schema,
        json!({"$ref": "#/definitions/Item"})
    );
    assert_eq!(
        upload.parameters[0].pointer,
        "/components/schemas/Upload/properties/file"
    );

    let form = c.operation("uploadForm").unwrap();
    assert!(!form.is_multipart());
    assert_eq!(form.parameters[0].name, "a");
}

const OPENAPI_31_YAML: &str = r##"
openapi: 3.1.0
info:
  title: Weather
  version: 1.0
servers:
  - url: "{scheme}://api.weather.test/{version}"
    variables:
      scheme: {default: https}
      version: {default: v2}
paths:
  /forecast/{city}:
    parameters:
      - name: city
        in: path
        required: true
        schema: {type: string}
    get:
      operationId: forecast
      x-ms-visibilty: important
      parameters:
        - name: days
          in: query
          schema:
            type: [integer, "null"]
            exclusiveMinimum: 0
      responses:
        200:
          description: ok
          content:
            application/json:
              schema:
                $ref: '#/components/schemas/Forecast'
                description: sibling kept in 3.1
    post:
      operationId: report
      requestBody:
        content:
          application/octet-stream:
            schema: {type: string, contentMediaType: image/png}
      responses:
        default: {description: x}
components:
  schemas:
    Forecast:
      type: object
      properties:
        temps:
          type: array
          prefixItems: [{type: number}]
        next: {$ref: '#/components/schemas/Forecast'}
"##;

#[test]
fn openapi_31_yaml_reads_into_the_model() {
    let loaded = load_from_str("weather", "weather/openapi.yaml", OPENAPI_31_YAML, None);
    let c = ok(&loaded);
    assert_eq!(c.format, SourceFormat::OpenApi31);
    assert_eq!(c.version.as_deref(), Some("1.0"));
    assert_eq!(c.upstream.base_url(), "https://api.weather.test/v2");
    let f = c.operation("forecast").unwrap();
    assert_eq!(f.parameters[0].name, "city");
    assert_eq!(
        f.parameters[1].schema,
        json!({"type": ["integer", "null"], "exclusiveMinimum": 0})
    );
    assert_eq!(
        f.responses[0].schema,
        Some(json!({"$ref": "#/definitions/Forecast", "description": "sibling kept in 3.1"}))
    );
    let r = c.operation("report").unwrap();
    let body = r.body.as_ref().unwrap();
    assert_eq!(body.media_types, ["application/octet-stream"]);
    assert_eq!(
        body.schema,
        json!({"type": "string", "contentMediaType": "image/png"})
    );
    assert_eq!(codes(&loaded), ["misspelled-extension"]);
    let d = &loaded.diagnostics.0[0];
    assert_eq!(
        d.to_string(),
        "weather/openapi.yaml#/paths/~1forecast~1{city}/get/x-ms-visibilty:20:23: warning[misspelled-extension]: \
         unknown extension 'x-ms-visibilty'; did you mean 'x-ms-visibility'?"
    );
}

#[test]
fn openapi_31_json_reads_like_its_yaml() {
    let value: serde_json::Value = serde_saphyr::from_str(OPENAPI_31_YAML).unwrap();
    let json_text = serde_json::to_string_pretty(&value).unwrap();
    let from_json = load_from_str("weather", "weather/openapi.json", &json_text, None);
    let from_yaml = load_from_str("weather", "weather/openapi.yaml", OPENAPI_31_YAML, None);
    let (a, b) = (ok(&from_json), ok(&from_yaml));
    assert_eq!(a.format, SourceFormat::OpenApi31);
    assert_eq!(
        serde_json::to_value(&a.operations).unwrap(),
        serde_json::to_value(&b.operations).unwrap()
    );
    assert_eq!(a.definitions, b.definitions);
    assert_eq!(codes(&from_json), codes(&from_yaml));
    let d = &from_json.diagnostics.0[0];
    assert!(d.line.is_some() && d.file == "weather/openapi.json");
}

#[test]
fn openapi_30_yaml_with_form_body() {
    let yaml = "openapi: 3.0.1\ninfo: {title: T, version: '1'}\nservers: [{url: 'http://localhost:8080'}]\npaths:\n  /login:\n    post:\n      operationId: login\n      requestBody:\n        required: true\n        content:\n          application/x-www-form-urlencoded:\n            schema:\n              type: object\n              required: [user]\n              properties:\n                user: {type: string}\n                password: {type: string, format: password, x-ms-visibility: advanced}\n      responses:\n        '200': {description: ok}\n";
    let loaded = load_from_str("t", "t.yml", yaml, None);
    let c = ok(&loaded);
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    assert_eq!(c.upstream.base_url(), "http://localhost:8080");
    let op = c.operation("login").unwrap();
    assert_eq!(op.consumes, ["application/x-www-form-urlencoded"]);
    assert_eq!(op.parameters.len(), 2);
    assert!(op.parameters[0].required && !op.parameters[1].required);
    assert_eq!(op.parameters[1].visibility, Visibility::Advanced);
}

#[test]
fn swagger_oddities_are_warnings_with_pointers() {
    let def = r##"{
  "swagger": "2.0",
  "info": {"title": "T"},
  "host": "h",
  "paths": {
    "/a/{id}": {
      "get": {
        "operationId": "A",
        "parameters": [
          {"name": "id", "in": "path", "type": "String"},
          {"name": "q", "in": "query", "type": "string", "maxLength": "10"},
          {"$ref": "#/parameters/Missing"},
          {"name": "b", "in": "body", "schema": {"type": "object", "properties": {"p": {"type": "string", "required": true}}}}
        ],
        "responses": {"200": {"description": "ok", "schema": {"$ref": "#/definitions/Nope"}}}
      }
    }
  }
}"##;
    let loaded = load_from_str("t", "t.json", def, None);
    let c = ok(&loaded);
    let op = c.operation("A").unwrap();
    assert_eq!(op.parameters[0].schema, json!({"type": "string"}));
    assert!(op.parameters[0].required);
    assert_eq!(
        op.parameters[1].schema,
        json!({"type": "string", "maxLength": 10})
    );
    assert_eq!(
        op.body.as_ref().unwrap().schema,
        json!({"type": "object", "properties": {"p": {"type": "string"}}})
    );
    assert_eq!(op.responses[0].schema, Some(json!({})));
    let got: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "t.json#/paths/~1a~1{id}/get/parameters/0:10:11: warning[optional-path-param]: path parameter 'id' must be required; read as required",
            "t.json#/paths/~1a~1{id}/get/parameters/0/type:10:48: warning[type-case]: type 'String' should be written 'string'; read as 'string'",
            "t.json#/paths/~1a~1{id}/get/parameters/1/maxLength:11:71: warning[invalid-keyword]: 'maxLength' must be a number, not a string; read as 10",
            "t.json#/paths/~1a~1{id}/get/parameters/2/$ref:12:20: warning[unresolved-ref]: reference '#/parameters/Missing' points at nothing in this document; parameter ignored",
            "t.json#/paths/~1a~1{id}/get/parameters/3/schema/properties/p/required:13:119: warning[property-required]: 'required: true|false' on a property is not valid in a schema; ignored (list the property in its object's 'required' array instead)",
            "t.json#/paths/~1a~1{id}/get/responses/200/schema/$ref:15:71: warning[unresolved-ref]: reference '#/definitions/Nope' points at nothing in this document; replaced by {}",
        ]
    );
}

#[test]
fn loads_folders_and_files_and_discovers_trees() {
    let dir = std::env::temp_dir().join(format!("junction-import-test-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let pkg = dir.join("tree/My Package");
    let plain = dir.join("tree/nested/plain");
    fs::create_dir_all(&pkg).unwrap();
    fs::create_dir_all(&plain).unwrap();
    fs::create_dir_all(dir.join("tree/.hidden/x")).unwrap();
    fs::write(pkg.join(PACKAGE_DEFINITION), SWAGGER).unwrap();
    fs::write(
        pkg.join(PACKAGE_PROPERTIES),
        r##"{"properties": {"iconBrandColor": "#fff"}}"##,
    )
    .unwrap();
    fs::write(plain.join("openapi.yaml"), OPENAPI_31_YAML).unwrap();
    fs::write(dir.join("tree/nested/store.openapi.json"), OPENAPI_30).unwrap();
    fs::write(dir.join("tree/MANIFEST.json"), "{}").unwrap();
    fs::write(dir.join("tree/.hidden/x/openapi.json"), "{}").unwrap();

    let found = discover(&dir.join("tree"));
    assert_eq!(
        found,
        [
            pkg.clone(),
            dir.join("tree/nested/plain"),
            dir.join("tree/nested/store.openapi.json")
        ]
    );
    assert_eq!(discover(&pkg), std::slice::from_ref(&pkg));

    let a = load(&pkg);
    assert_eq!(ok(&a).name, "my-package");
    assert!(ok(&a).properties.is_some());
    assert_eq!(a.source, pkg);
    assert!(
        a.diagnostics
            .iter()
            .all(|d| d.file.ends_with(PACKAGE_DEFINITION))
    );
    let b = load(&plain);
    assert_eq!(ok(&b).name, "plain");
    let f = load(&dir.join("tree/nested/store.openapi.json"));
    assert_eq!(ok(&f).name, "store-openapi");

    let missing = load(&dir.join("nope"));
    assert_eq!(codes(&missing), ["io"]);
    let empty = load(&dir.join("tree/nested"));
    assert_eq!(codes(&empty), ["no-definition"]);
    fs::write(dir.join("bad.json"), b"{\"a\": \"\xff\"}").unwrap();
    assert_eq!(codes(&load(&dir.join("bad.json"))), ["encoding"]);
    let _ = fs::remove_dir_all(&dir);
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    /// Small JSON values that look like pieces of API definitions.
    fn value() -> impl Strategy<Value = serde_json::Value> {
        let key = prop_oneof![
            Just("$ref".to_owned()),
            Just("type".to_owned()),
            Just("items".to_owned()),
            Just("properties".to_owned()),
            Just("parameters".to_owned()),
            Just("schema".to_owned()),
            Just("in".to_owned()),
            Just("name".to_owned()),
            Just("required".to_owned()),
            Just("allOf".to_owned()),
            Just("responses".to_owned()),
            Just("content".to_owned()),
            Just("x-ms-visibilty".to_owned()),
            Just("exclusiveMaximum".to_owned()),
            Just("enum".to_owned()),
            "[a-z/{}~]{0,6}",
        ];
        let leaf = prop_oneof![
            Just(json!(null)),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            Just(json!("#/definitions/A")),
            Just(json!("#/definitions/A/properties/x")),
            Just(json!("#/parameters/P")),
            Just(json!("#/components/schemas/A")),
            Just(json!("#")),
            Just(json!("string")),
            Just(json!("path")),
            Just(json!("body")),
            Just(json!("formData")),
            ".{0,8}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(5, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::vec((key.clone(), inner), 0..5)
                    .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn document() -> impl Strategy<Value = serde_json::Value> {
        (
            prop_oneof![Just(json!({"swagger": "2.0"})), Just(json!({"openapi": "3.0.0"})), Just(json!({"openapi": "3.1.0"}))],
            value(),
            value(),
            value(),
        )
            .prop_map(|(mut doc, paths, defs, params)| {
                let obj = doc.as_object_mut().unwrap();
                obj.insert("paths".into(), json!({"/a/{id}": {"get": paths, "parameters": params.clone()}, "/b": {"post": {"parameters": params, "requestBody": defs.clone()}}}));
                obj.insert("definitions".into(), json!({"A": defs.clone()}));
                obj.insert("components".into(), json!({"schemas": {"A": defs}}));
                doc
            })
    }

    /// 512 cases per property, or `PROPTEST_CASES` for a longer run.
    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(512)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}", yaml in any::<bool>()) {
            let file = if yaml { "f.yaml" } else { "f.json" };
            let _ = load_from_str("x", file, &text, Some(("p.json", &text)));
        }

        #[test]
        fn structured_documents_never_panic(doc in document(), props in value()) {
            let text = doc.to_string();
            let loaded = load_from_str("x", "f.json", &text, Some(("p.json", &props.to_string())));
            // Every pointer the importer reports points into the document (or is its root).
            for d in loaded.diagnostics.iter() {
                prop_assert!(d.pointer.is_empty() || d.pointer.starts_with('/'));
            }
            let pretty = serde_json::to_string_pretty(&doc).unwrap_or_default();
            let _ = load_from_str("x", "f.yaml", &pretty, None);
        }

        #[test]
        fn mutated_documents_never_panic(cut in 0usize..4000, insert in "[\\[\\]{},:\"/*\\\\ ]{0,3}") {
            let mut text = SWAGGER.to_owned();
            let mut at = cut.min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.insert_str(at, &insert);
            let _ = load_from_str("x", "f.json", &text, None);
            let mut yaml = OPENAPI_31_YAML.to_owned();
            let mut at = cut.min(yaml.len());
            while !yaml.is_char_boundary(at) {
                at -= 1;
            }
            yaml.insert_str(at, &insert);
            let _ = load_from_str("x", "f.yaml", &yaml, None);
        }

        #[test]
        fn bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = load_bytes("x", "f.json", &bytes, Some(("p.json", &bytes)), None);
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let loaded = load_from_str("x", "f.json", &deep, None);
        assert!(loaded.diagnostics.has_errors());
        let deep_yaml = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let loaded = load_from_str("x", "f.yaml", &deep_yaml, None);
        assert!(loaded.diagnostics.has_errors());
        let deep_schema = format!(
            "{{\"swagger\":\"2.0\",\"paths\":{{}},\"definitions\":{{\"A\":{}{{}}{}}}}}",
            "{\"items\":".repeat(120),
            "}".repeat(120)
        );
        let loaded = load_from_str("x", "f.json", &deep_schema, None);
        assert!(loaded.connector.is_some());
    }
}

#[test]
fn policy_findings_point_at_the_parameter_and_the_character() {
    let props = r##"{"properties": {
        "iconBrandColor": "#007ee5",
        "policyTemplateInstances": [
            {"templateId": "setheader", "title": "key", "parameters": {
                "x-ms-apimTemplateParameter.name": "X-Key",
                "x-ms-apimTemplateParameter.value": "K \"@conectionParameters('k')"}},
            {"templateId": "routerequesttoendpoint", "parameters": {
                "x-ms-apimTemplateParameter.newPath": "/v2/{petId}",
                "x-ms-apimTemplate-operationName": ["A", "Nope"]}},
            {"templateId": "setproperty", "parameters": {"x-ms-apimTemplateParameter.newPropertyParentPathTemplate": "@body()"}},
            {"templateId": "dynamichosturl", "parameters": {"x-ms-apimTemplateParameter.urlTemplate": "https://@headers('Host')"}}
        ],
        "scriptOperations": ["A"]
    }}"##;
    let def = r#"{"swagger": "2.0", "info": {"title": "T", "version": "1"}, "host": "x.com", "paths": {"/a": {"get": {"operationId": "A", "responses": {}}}}}"#;
    let loaded = load_from_str(
        "x",
        "x/apiDefinition.swagger.json",
        def,
        Some(("x/apiProperties.json", props)),
    );
    let c = ok(&loaded);
    assert_eq!(
        c.properties.as_ref().unwrap().custom_code,
        Some(junction_model::CustomCode {
            operations: vec!["A".into()],
            declared_by: "scriptOperations".into(),
            pointer: "/properties/scriptOperations".into(),
        })
    );
    let shown: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            // The column is that of the misspelt function name, past the `\"` escape.
            "x/apiProperties.json#/properties/policyTemplateInstances/0/parameters/x-ms-apimTemplateParameter.value:6:59: warning[policy-expression]: at character 5: unknown function `conectionParameters`; did you mean `connectionParameters`? in `K \"@conectionParameters('k')`",
            "x/apiProperties.json#/properties/policyTemplateInstances/1/parameters/x-ms-apimTemplateParameter.newPath:8:55: warning[policy-parameter]: `{petId}` is not a parameter of operation 'A', so policy #1 (routerequesttoendpoint) cannot run for it (the operation answers 500)",
            "x/apiProperties.json#/properties/policyTemplateInstances/1/parameters/x-ms-apimTemplate-operationName/1:9:58: warning[policy-unknown-operation]: no operation 'Nope' is declared; this entry is ignored",
            "x/apiProperties.json#/properties/policyTemplateInstances/2/parameters:10:57: warning[policy-parameter]: the required parameter 'x-ms-apimTemplateParameter.newPropertySubPathTemplate' is missing",
            "x/apiProperties.json#/properties/policyTemplateInstances/2/parameters:10:57: warning[policy-parameter]: the required parameter 'x-ms-apimTemplateParameter.propertyValuePathTemplate' is missing",
            "x/apiProperties.json#/properties/policyTemplateInstances/3/parameters/x-ms-apimTemplateParameter.urlTemplate:11:103: warning[policy-open-host]: the backend host comes from the request (header 'Host'), so any client could send this connector's credentials anywhere; calls are refused unless `allowed_hosts` lists the hosts they may reach",
            "x/apiProperties.json#/properties/scriptOperations:13:29: warning[custom-code]: 1 operation runs the package's custom code (C# script, declared by scriptOperations), which Junction cannot run; it answers 501: A",
        ]
    );
}
