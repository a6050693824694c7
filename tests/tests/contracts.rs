//! Contract checks that tie the code to its documents: every route a function serves is in
//! `docs/openapi.yaml` and in `template.yaml` (mapped to that function), and nothing is in
//! either document that no function serves.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_yaml::Value;

fn repo_file(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

/// `(SAM logical id, METHOD, path)` for every route each REST function serves.
fn served_routes() -> BTreeSet<(String, String, String)> {
    let functions: [(&str, Vec<(String, String)>); 5] = [
        ("ApiAuthFunction", api_auth::router().routes()),
        ("ApiUsersFunction", api_users::router().routes()),
        ("ApiPostsFunction", api_posts::router().routes()),
        ("ApiMessagesFunction", api_messages::router().routes()),
        (
            "ApiNotificationsFunction",
            api_notifications::router().routes(),
        ),
    ];
    functions
        .into_iter()
        .flat_map(|(function, routes)| {
            routes
                .into_iter()
                .map(move |(method, path)| (function.to_owned(), method, path))
        })
        .collect()
}

/// Strips CloudFormation short-form tags (`!Ref`, `!Sub` …) down to their values.
fn untag(value: &Value) -> &Value {
    match value {
        Value::Tagged(tagged) => untag(&tagged.value),
        other => other,
    }
}

#[test]
fn every_served_route_is_in_the_openapi_spec_and_nothing_else_is() {
    let spec: Value =
        serde_yaml::from_str(&repo_file("docs/openapi.yaml")).expect("openapi.yaml parses");
    assert_eq!(spec["openapi"].as_str(), Some("3.1.0"));
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_mapping().expect("paths") {
        let path = path.as_str().expect("path is a string");
        for (method, _) in item.as_mapping().expect("path item") {
            let method = method.as_str().expect("method").to_ascii_uppercase();
            if ["GET", "PUT", "POST", "DELETE", "PATCH"].contains(&method.as_str()) {
                documented.insert((method, path.to_owned()));
            }
        }
    }
    let served: BTreeSet<_> = served_routes()
        .into_iter()
        .map(|(_, method, path)| (method, path))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not in docs/openapi.yaml: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "in docs/openapi.yaml but served by no function: {unserved:?}"
    );
}

#[test]
fn every_served_route_is_in_the_template_on_its_function_and_nothing_else_is() {
    let template: Value =
        serde_yaml::from_str(&repo_file("template.yaml")).expect("template.yaml parses");
    let mut declared = BTreeSet::new();
    for (name, resource) in template["Resources"].as_mapping().expect("Resources") {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let name = name.as_str().expect("logical id");
        let Some(events) = resource["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (_, event) in events {
            if event["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            let properties = &event["Properties"];
            let method = untag(&properties["Method"])
                .as_str()
                .expect("Method")
                .to_ascii_uppercase();
            let path = untag(&properties["Path"])
                .as_str()
                .expect("Path")
                .to_owned();
            declared.insert((name.to_owned(), method, path));
        }
    }
    let served = served_routes();
    let missing: Vec<_> = served.difference(&declared).collect();
    let extra: Vec<_> = declared.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "served but not routed to that function in template.yaml: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "routed in template.yaml but not served by that function: {extra:?}"
    );
}
