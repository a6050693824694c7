//! The HTTP API through real HTTP requests against the gateway started in-process: the
//! payload 2.0 event, response mapping, API Gateway's own answers, CORS, and routes that come
//! from the template alone.

mod common;

use std::collections::BTreeMap;

use base64::Engine;
use common::*;
use ripple_local::functions::{FunctionRegistry, LocalEndpoints};
use ripple_local::gateway::{BoundGateway, Gateway, GatewayOptions};
use ripple_local::template::Template;
use ripple_local::web_app::WebAppFiles;
use serde_json::{json, Value};
use shared::testkit::{test_public_keys, test_signing_key, TestDb};

const MOTO_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/moto_server");

/// The in-process functions of `template` over `db`, with api-auth's signing key read from
/// a real Secrets Manager (moto, stopped once the functions are built: the key is read at
/// cold start only).
async fn in_process_functions(db: &TestDb, template: &Template) -> FunctionRegistry {
    let moto = ripple_local::moto::MotoServer::start(std::path::Path::new(MOTO_SERVER))
        .await
        .unwrap_or_else(|e| panic!("starting moto ({MOTO_SERVER}; `make tools`): {e:#}"));
    let sdk = shared::aws::local_sdk_config();
    let secrets = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&sdk)
            .endpoint_url(moto.endpoint())
            .build(),
    );
    ripple_local::moto::put_signing_key(&secrets, "test/signing-key", test_signing_key())
        .await
        .unwrap();
    let environment = BTreeMap::from([
        ("TABLE_NAME".to_owned(), db.table_name.clone()),
        ("JWT_PUBLIC_KEYS".to_owned(), test_public_keys()),
        (
            "JWT_SIGNING_KEY_SECRET".to_owned(),
            "test/signing-key".to_owned(),
        ),
    ]);
    let endpoints = LocalEndpoints {
        dynamodb: db.endpoint.clone(),
        // No function of these tests uses SQS.
        sqs: "http://127.0.0.1:9".to_owned(),
        secrets_manager: moto.endpoint().to_owned(),
        meter: None,
    };
    let registry = FunctionRegistry::in_process(template, &environment, &endpoints)
        .await
        .unwrap();
    moto.shutdown().await;
    registry
}

/// The gateway over `template` with the real in-process handlers (DynamoDB = `db`) plus the
/// echo test function.
async fn http_gateway(db: &TestDb, template: &str) -> Gateway {
    let template = Template::parse(template).unwrap();
    let registry = in_process_functions(db, &template)
        .await
        .with("test-echo", http_echo_function());
    let bound = BoundGateway::bind(GatewayOptions::default(), &template)
        .await
        .unwrap();
    bound.serve(&template, &registry).unwrap()
}

#[tokio::test]
async fn health_is_served_by_api_auth_in_process() {
    let db = TestDb::start().await;
    let gateway = http_gateway(&db, &fixture("http.yaml")).await;
    let response = http_request(
        "GET",
        &format!("{}/health", gateway.urls().http_url()),
        &[],
        b"",
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["status"], "ok");
    assert!(response.headers.contains_key("x-request-id"));
    assert!(response.headers.contains_key("apigw-requestid"));
}

#[tokio::test]
async fn the_event_carries_path_query_headers_cookies_and_body_like_api_gateway() {
    let db = TestDb::start().await;
    let gateway = http_gateway(&db, &fixture("http.yaml")).await;
    let url = format!(
        "{}/echo/item%201?tag=a&tag=b&q=hello%20world",
        gateway.urls().http_url()
    );
    let response = http_request(
        "POST",
        &url,
        &[
            ("content-type", "application/json"),
            ("X-Custom", "One"),
            ("cookie", "a=1; b=2"),
        ],
        br#"{"hello":"world"}"#,
    )
    .await;
    assert_eq!(response.status, 200);
    let event: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(event["version"], "2.0");
    assert_eq!(event["routeKey"], "POST /echo/{item_id}");
    assert_eq!(event["rawPath"], "/echo/item%201");
    assert_eq!(event["rawQueryString"], "tag=a&tag=b&q=hello%20world");
    assert_eq!(event["pathParameters"], json!({"item_id": "item 1"}));
    assert_eq!(
        event["queryStringParameters"],
        json!({"tag": "a,b", "q": "hello world"})
    );
    assert_eq!(event["headers"]["x-custom"], "One");
    assert_eq!(event["cookies"], json!(["a=1", "b=2"]));
    assert_eq!(event["body"], r#"{"hello":"world"}"#);
    assert_eq!(event["isBase64Encoded"], false);
    let context = &event["requestContext"];
    assert_eq!(context["http"]["method"], "POST");
    assert_eq!(context["http"]["path"], "/echo/item%201");
    assert_eq!(context["http"]["sourceIp"], "127.0.0.1");
    assert_eq!(context["routeKey"], "POST /echo/{item_id}");
    assert_eq!(context["stage"], "$default");
    assert!(context["timeEpoch"].as_i64().unwrap() > 0);
    assert_eq!(
        context["requestId"].as_str(),
        response.headers["apigw-requestid"].to_str().ok()
    );
}

#[tokio::test]
async fn binary_requests_and_responses_are_base64_on_the_lambda_side_only() {
    let db = TestDb::start().await;
    let gateway = http_gateway(&db, &fixture("http.yaml")).await;
    let response = http_request(
        "PUT",
        &format!("{}/files/a/b.bin", gateway.urls().http_url()),
        &[("content-type", "application/octet-stream")],
        &[0, 1, 2, 255],
    )
    .await;
    assert_eq!(response.status, 202);
    assert_eq!(&response.body[..], &[0, 1, 2, 255]);
    let cookies: Vec<_> = response.headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["session=1; HttpOnly", "theme=dark"]);
    let tags: Vec<_> = response.headers.get_all("x-tag").iter().collect();
    assert_eq!(tags, ["a", "b"]);
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode([0u8, 1, 2, 255]),
        "AAEC/w=="
    );
}

#[tokio::test]
async fn unmatched_routes_get_api_gateways_not_found() {
    let db = TestDb::start().await;
    let gateway = http_gateway(&db, &fixture("http.yaml")).await;
    let base = gateway.urls().http_url();
    for (method, path) in [("GET", "/nope"), ("DELETE", "/health"), ("GET", "/echo/1")] {
        let response = http_request(method, &format!("{base}{path}"), &[], b"").await;
        assert_eq!(response.status, 404, "{method} {path}");
        assert_eq!(
            response.json(),
            json!({"message": "Not Found"}),
            "{method} {path}"
        );
    }
}

async fn register(base: &str) -> HttpResponse {
    http_request(
        "POST",
        &format!("{base}/auth/register"),
        &[("content-type", "application/json")],
        br#"{"username":"route_added","password":"a long enough password","display_name":"Added"}"#,
    )
    .await
}

#[tokio::test]
async fn a_route_added_to_the_template_is_served_without_code_changes() {
    let db = TestDb::start().await;
    let base_template = fixture("http.yaml");

    // Without the route API Gateway answers, the function is never reached.
    let gateway = http_gateway(&db, &base_template).await;
    let response = register(&gateway.urls().http_url()).await;
    assert_eq!(response.json(), json!({"message": "Not Found"}));
    gateway.shutdown().await;

    let with_route = base_template.replace(
        "        # ADDED-ROUTE (tests insert a route here)",
        "        Register:\n          Type: HttpApi\n          Properties:\n            ApiId: !Ref HttpApi\n            Method: POST\n            Path: /auth/register",
    );
    assert_ne!(with_route, base_template);
    let gateway = http_gateway(&db, &with_route).await;
    let response = register(&gateway.urls().http_url()).await;
    assert_eq!(
        response.status,
        201,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.json()["user"]["username"], "route_added");
}

#[tokio::test]
async fn cors_preflight_and_response_headers_follow_the_template() {
    let db = TestDb::start().await;
    let gateway = http_gateway(&db, &fixture("http.yaml")).await;
    let base = gateway.urls().http_url();

    let preflight = http_request(
        "OPTIONS",
        &format!("{base}/health"),
        &[
            ("origin", "http://localhost:5173"),
            ("access-control-request-method", "GET"),
        ],
        b"",
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.headers["access-control-allow-methods"],
        "GET,POST"
    );
    assert_eq!(
        preflight.headers["access-control-allow-headers"],
        "authorization,content-type"
    );
    assert_eq!(preflight.headers["access-control-max-age"], "600");
    assert_eq!(
        preflight.headers["access-control-allow-origin"],
        "http://localhost:5173"
    );

    let response = http_request(
        "GET",
        &format!("{base}/health"),
        &[("origin", "http://localhost:5173")],
        b"",
    )
    .await;
    assert_eq!(
        response.headers["access-control-allow-origin"],
        "http://localhost:5173"
    );
    assert_eq!(
        response.headers["access-control-expose-headers"],
        "x-request-id"
    );

    // A foreign origin gets no CORS grant, even where the function sends one.
    let response = http_request(
        "POST",
        &format!("{base}/echo/1"),
        &[("origin", "https://evil.example")],
        b"",
    )
    .await;
    assert!(response
        .headers
        .get("access-control-allow-origin")
        .is_none());
}

#[tokio::test]
async fn a_template_route_without_a_handler_is_a_start_up_error() {
    let template = Template::parse(&fixture("http.yaml")).unwrap();
    let registry = FunctionRegistry::new().with("test-echo", http_echo_function());
    let bound = BoundGateway::bind(GatewayOptions::default(), &template)
        .await
        .unwrap();
    let error = bound
        .serve(&template, &registry)
        .err()
        .expect("must not start")
        .to_string();
    assert!(error.contains("GET /health"), "{error}");
    assert!(error.contains("api-auth"), "{error}");
}

/// The gateway serving the repository's web app (`clients/web`, `clients/js`) at `/app/`.
async fn web_app_gateway(db: &TestDb) -> Gateway {
    let template = Template::parse(&fixture("http.yaml")).unwrap();
    let registry = in_process_functions(db, &template)
        .await
        .with("test-echo", http_echo_function());
    let repository = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let options = GatewayOptions {
        web_app: Some(WebAppFiles::in_repository(&repository)),
        ..GatewayOptions::default()
    };
    let bound = BoundGateway::bind(options, &template).await.unwrap();
    bound.serve(&template, &registry).unwrap()
}

#[tokio::test]
async fn the_web_app_is_served_at_app_beside_the_api() {
    let db = TestDb::start().await;
    let gateway = web_app_gateway(&db).await;
    let base = gateway.urls().http_url();

    let page = http_request("GET", &format!("{base}/app/"), &[], b"").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert!(String::from_utf8_lossy(&page.body).contains("<!doctype html>"));

    let client = http_request("GET", &format!("{base}/app/lib/ripple-client.js"), &[], b"").await;
    assert_eq!(client.status, 200);
    assert_eq!(
        client.headers["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(String::from_utf8_lossy(&client.body).contains("export class RippleClient"));

    // The generated configuration points the page at this gateway's own ports.
    let config = http_request("GET", &format!("{base}/app/config.js"), &[], b"").await;
    assert_eq!(config.status, 200);
    let config = String::from_utf8_lossy(&config.body).into_owned();
    assert!(
        config.contains(&format!("\"apiUrl\":\"{base}\"")),
        "{config}"
    );
    assert!(
        config.contains(&format!("\"wsUrl\":\"{}\"", gateway.urls().websocket_url())),
        "{config}"
    );

    let redirect = http_request("GET", &format!("{base}/app?api=x"), &[], b"").await;
    assert_eq!(redirect.status, 308);
    assert_eq!(redirect.headers["location"], "/app/?api=x");

    let head = http_request("HEAD", &format!("{base}/app/"), &[], b"").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let post = http_request("POST", &format!("{base}/app/index.html"), &[], b"").await;
    assert_eq!(post.status, 405);

    // The API keeps every other path.
    let health = http_request("GET", &format!("{base}/health"), &[], b"").await;
    assert_eq!(health.status, 200);
    let missing = http_request("GET", &format!("{base}/application"), &[], b"").await;
    assert_eq!(missing.json(), json!({"message": "Not Found"}));
}

#[tokio::test]
async fn the_web_app_mount_serves_nothing_outside_its_folders() {
    let db = TestDb::start().await;
    let gateway = web_app_gateway(&db).await;
    let base = gateway.urls().http_url();
    for path in [
        "/app/../../Cargo.toml",
        "/app/%2e%2e/%2e%2e/Cargo.toml",
        "/app/%2E%2E%2F%2E%2E%2FCargo.toml",
        "/app/..%5c..%5cCargo.toml",
        "/app/lib/../web/index.html",
        "/app/lib/%2e%2e/web/index.html",
        "/app/lib/test/..%2f..%2f..%2fCargo.toml",
        "/app//etc/passwd",
        "/app/%2fetc%2fpasswd",
        "/app/.gitignore",
        "/app/index.html%00.js",
        "/app/missing.js",
    ] {
        let response = http_request("GET", &format!("{base}{path}"), &[], b"").await;
        assert_eq!(response.status, 404, "{path} was served");
        assert_eq!(&response.body[..], b"Not Found", "{path}");
    }
}
