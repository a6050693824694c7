//! Contract checks that tie the code to its documents: every route a function serves is in
//! `docs/openapi.yaml` and in `template.yaml` (mapped to that function), and nothing is in
//! either document that no function serves. And the writer push (`shared::writer_push`)
//! makes of every write exactly the events, ids and audiences the stream router's `decide`
//! makes of that write's stream records.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_yaml::Value;
use shared::http::RestState;

fn repo_file(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

/// `(SAM logical id, METHOD, path)` for every route each REST function serves.
fn served_routes() -> BTreeSet<(String, String, String)> {
    let functions: [(&str, Vec<(String, String)>); 5] = [
        ("ApiAuthFunction", api_auth::State::router().routes()),
        ("ApiUsersFunction", api_users::State::router().routes()),
        ("ApiPostsFunction", api_posts::State::router().routes()),
        (
            "ApiMessagesFunction",
            api_messages::State::router().routes(),
        ),
        (
            "ApiNotificationsFunction",
            api_notifications::State::router().routes(),
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

// ---- the writer push makes the router's events ---------------------------------------------

mod writer_push {
    use std::collections::HashMap;

    use aws_lambda_events::event::dynamodb::EventRecord;
    use aws_sdk_dynamodb::types::AttributeValue;
    use chrono::Utc;
    use shared::domain::{
        CommentText, DisplayName, MediaUrl, Notification, NotificationKind, PostText, User,
        Username,
    };
    use shared::store::keys::{self, Key};
    use shared::store::DynamoStore;
    use shared::store::NewMessage;
    use shared::store::{NewComment, NewPost};
    use shared::store::{NewUser, ProfileUpdate};
    use shared::testkit::api::UNUSABLE_PASSWORD_HASH;
    use shared::testkit::TestDb;
    use shared::writer_push::{plan, WriterEvent};
    use stream_router::decide;

    /// The stream record of `key`'s insert: its new image is the item as stored.
    async fn insert_record(store: &DynamoStore, key: &Key) -> EventRecord {
        let item: HashMap<String, AttributeValue> = store
            .table
            .get(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no item at {key:?}"));
        let mut record = EventRecord::default();
        record.event_name = "INSERT".to_owned();
        record.event_id = "1".to_owned();
        record.change.sequence_number = Some("100".to_owned());
        record.change.approximate_creation_date_time = Utc::now();
        record.change.new_image = item.into();
        record
    }

    /// What the stream router pushes for the insert of `key`.
    async fn router_events(store: &DynamoStore, key: &Key) -> Vec<WriterEvent> {
        decide(&insert_record(store, key).await)
            .unwrap()
            .pushes
            .into_iter()
            .map(|push| WriterEvent {
                event: push.event,
                audience: push.audience,
            })
            .collect()
    }

    async fn assert_notification_matches(store: &DynamoStore, notification: &Notification) {
        let key = keys::notification(notification.recipient_id, notification.id);
        assert_eq!(
            plan::notification(notification),
            router_events(store, &key).await,
            "{:?}",
            notification.kind
        );
    }

    async fn user(store: &DynamoStore, name: &str, private: bool) -> User {
        let user = store
            .create_user(NewUser {
                id: shared::domain::new_id(),
                username: Username::parse(name).unwrap(),
                display_name: DisplayName::parse(name).unwrap(),
                password_hash: UNUSABLE_PASSWORD_HASH.to_owned(),
                created_at: Utc::now(),
            })
            .await
            .unwrap();
        if private {
            let update = ProfileUpdate {
                is_private: Some(true),
                ..ProfileUpdate::default()
            };
            store.update_profile(user.id, &update).await.unwrap();
        }
        user
    }

    #[tokio::test]
    async fn every_write_gives_the_routers_events_ids_and_audiences() {
        let db = TestDb::start().await;
        let store = db.store();
        let alice = user(&store, "alice", false).await;
        let bob = user(&store, "bob", false).await;
        let private = user(&store, "private", true).await;

        // post_created, with and without media.
        for media_url in [
            None,
            Some(MediaUrl::parse("https://cdn.example.com/a.png").unwrap()),
        ] {
            let post = store
                .create_post(NewPost {
                    author: alice.id,
                    text: PostText::parse("hello").unwrap(),
                    media_url,
                    created_at: Utc::now(),
                })
                .await
                .unwrap();
            let planned = plan::post_created(&post);
            assert_eq!(planned, router_events(&store, &keys::post(post.id)).await);
        }

        // new_message to both sides, and its notification.
        let sent = store
            .send_message(NewMessage::new(alice.id, bob.id, "hi", Some("c-1"), Utc::now()).unwrap())
            .await
            .unwrap();
        let key = keys::message(alice.id, bob.id, sent.message.id);
        let planned = plan::message(&sent.message);
        assert_eq!(planned.len(), 1);
        assert_eq!(planned, router_events(&store, &key).await);
        assert_notification_matches(&store, sent.notification.as_ref().unwrap()).await;

        // message_request to the recipient, new_message to the sender.
        let request = store
            .send_message(NewMessage::new(alice.id, private.id, "hello", None, Utc::now()).unwrap())
            .await
            .unwrap();
        let key = keys::message(alice.id, private.id, request.message.id);
        let planned = plan::message(&request.message);
        let kinds: Vec<&str> = planned.iter().map(|e| e.event.body.kind()).collect();
        assert_eq!(kinds, ["message_request", "new_message"]);
        assert_eq!(planned, router_events(&store, &key).await);
        assert_notification_matches(&store, request.notification.as_ref().unwrap()).await;

        // new_notification of a like, a comment, a follow, a follow request, an acceptance.
        let post = store
            .create_post(NewPost {
                author: alice.id,
                text: PostText::parse("like me").unwrap(),
                media_url: None,
                created_at: Utc::now(),
            })
            .await
            .unwrap();
        let liked = store.like(&post, bob.id, Utc::now()).await.unwrap();
        let comment = NewComment {
            author: bob.id,
            text: CommentText::parse("nice").unwrap(),
            created_at: Utc::now(),
        };
        let commented = store.add_comment(&post, comment).await.unwrap();
        let followed = store.follow(bob.id, alice.id, Utc::now()).await.unwrap();
        let requested = store
            .request_follow(bob.id, private.id, Utc::now())
            .await
            .unwrap();
        let accepted = store
            .accept_follow_request(private.id, bob.id, Utc::now())
            .await
            .unwrap();
        let notifications = [
            (liked.notification, NotificationKind::Like),
            (commented.notification, NotificationKind::Comment),
            (followed.notification, NotificationKind::Follow),
            (requested.notification, NotificationKind::FollowRequest),
            (accepted.notification, NotificationKind::FollowAccepted),
        ];
        for (notification, kind) in notifications {
            let notification = notification.unwrap_or_else(|| panic!("{kind:?} notified"));
            assert_eq!(notification.kind, kind);
            assert_notification_matches(&store, &notification).await;
        }
    }
}
