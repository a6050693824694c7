//! What each function is given and links. No REST function can reach SQS; `api-notifications`
//! (like `ws-connect` and `ws-disconnect`) reaches DynamoDB only, `api-auth` DynamoDB and
//! Secrets Manager (its signing key, at cold start; no other function links that SDK);
//! `api-posts`, `api-messages` and `api-users` add the management API for the writer push.
//!
//! Three layers, from strongest to weakest:
//! - compile time: [`dynamodb_only`] and [`writer`] accept only a state whose client set
//!   is exactly [`DynamoClients`] / [`WriterClients`], so giving a REST function another
//!   set breaks this crate's build (and the `compile_fail` doctests of
//!   `ripple_tests::footprint` show that a REST state cannot be built from, or reach into,
//!   a set with SQS);
//! - the sets themselves: what [`ClientSet::SERVICES`] says each one reaches;
//! - the link: `cargo tree` of each function shows which SDK crates its binary links.

use std::process::Command;

use shared::aws::{AuthClients, ClientSet, DynamoClients, Service, WriterClients};
use shared::function::FunctionState;

/// Compiles only for a state built from DynamoDB clients and nothing else.
fn dynamodb_only<S: FunctionState<Clients = DynamoClients>>() -> &'static [Service] {
    S::Clients::SERVICES
}

/// Compiles only for a state built from api-auth's set (DynamoDB and Secrets Manager).
fn auth<S: FunctionState<Clients = AuthClients>>() -> &'static [Service] {
    S::Clients::SERVICES
}

/// Compiles only for a state built from the writer push's set (no SQS).
fn writer<S: FunctionState<Clients = WriterClients>>() -> &'static [Service] {
    S::Clients::SERVICES
}

#[test]
fn no_rest_state_can_reach_sqs() {
    let rest = [
        ("api-auth", auth::<api_auth::State>()),
        (
            "api-notifications",
            dynamodb_only::<api_notifications::State>(),
        ),
        ("api-posts", writer::<api_posts::State>()),
        ("api-messages", writer::<api_messages::State>()),
        ("api-users", writer::<api_users::State>()),
    ];
    for (function, reached) in rest {
        assert!(reached.contains(&Service::DynamoDb), "{function}");
        assert!(!reached.contains(&Service::Sqs), "{function} reaches SQS");
    }
}

#[test]
fn api_notifications_reaches_dynamodb_only_and_api_auth_adds_its_secret() {
    assert_eq!(
        auth::<api_auth::State>(),
        [Service::DynamoDb, Service::SecretsManager]
    );
    assert_eq!(
        dynamodb_only::<api_notifications::State>(),
        [Service::DynamoDb]
    );
    assert_eq!(
        writer::<api_posts::State>(),
        [Service::DynamoDb, Service::ApiGatewayManagement]
    );
}

/// The service SDK crates `package` links (its normal dependencies, as cargo resolves them
/// when building that package alone, which is how SAM builds each function). `aws-sdk-sts`
/// is left out: it is a dependency of `aws-config` itself (web-identity and assume-role
/// credentials), linked by every function and never called on Lambda.
fn linked_sdks(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree", "--locked", "-e", "normal", "--prefix", "none", "-p", package,
        ])
        .output()
        .unwrap_or_else(|e| panic!("running cargo tree: {e}"));
    assert!(
        output.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut sdks: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once(" v").map(|(name, _)| name))
        .filter(|name| name.starts_with("aws-sdk-") && *name != "aws-sdk-sts")
        .map(str::to_owned)
        .collect();
    sdks.sort();
    sdks.dedup();
    sdks
}

#[test]
fn each_function_links_only_the_sdks_it_uses() {
    let dynamodb = ["aws-sdk-dynamodb"].as_slice();
    let signs = ["aws-sdk-dynamodb", "aws-sdk-secretsmanager"].as_slice();
    let pushes = ["aws-sdk-apigatewaymanagement", "aws-sdk-dynamodb"].as_slice();
    let queues = [
        "aws-sdk-apigatewaymanagement",
        "aws-sdk-dynamodb",
        "aws-sdk-sqs",
    ]
    .as_slice();
    for (package, expected) in [
        ("api-auth", signs),
        ("api-notifications", dynamodb),
        ("ws-connect", dynamodb),
        ("ws-disconnect", dynamodb),
        ("api-posts", pushes),
        ("api-messages", pushes),
        ("api-users", pushes),
        ("ws-message", pushes),
        ("stream-router", queues),
        ("push-worker", queues),
    ] {
        assert_eq!(linked_sdks(package), expected, "{package}");
    }
}
