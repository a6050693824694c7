//! `$disconnect` tests: real `ApiGatewayWebsocketProxyRequest` events through the function's
//! `LambdaFunction`, against a fresh embedded DynamoDB per test.

use std::sync::Arc;

use chrono::{Duration, Utc};
use shared::domain::{new_id, Connection, PostId, Subscription, UserId};
use shared::function::FunctionState;
use shared::store::DynamoStore;
use shared::testkit::ws::{connection_id, WsEvent};
use shared::testkit::TestDb;
use ws_disconnect::State;

async fn open_connection(store: &DynamoStore, user: UserId, channels: &[String]) -> String {
    let id = connection_id();
    let now = Utc::now();
    let expires_at = (now + Duration::hours(2)).timestamp();
    store
        .add_connection(
            &Connection {
                connection_id: id.clone(),
                user_id: user,
                connected_at: now,
                user_agent: None,
                expires_at,
            },
            10,
        )
        .await
        .unwrap();
    for channel in channels {
        let subscription = Subscription {
            channel: channel.clone(),
            connection_id: id.clone(),
            user_id: user,
        };
        store.subscribe(&subscription, expires_at).await.unwrap();
    }
    id
}

#[tokio::test]
async fn disconnect_removes_the_connection_and_its_subscriptions_and_is_idempotent() {
    let db = TestDb::start().await;
    let config = db.config();
    let store = db.store();
    let function = ws_disconnect::lambda_function(Arc::new(
        State::build(config.clone(), &db.clients(&config)).unwrap(),
    ));
    let user = new_id();
    let channels = vec![
        format!("post:{}", PostId::new()),
        format!("presence:{}", UserId::new()),
    ];
    let closing = open_connection(&store, user, &channels).await;
    let staying = open_connection(&store, user, &channels[..1]).await;

    let response = WsEvent::disconnect(&closing).send(&function).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(store.get_connection(&closing).await.unwrap(), None);
    assert_eq!(
        store.connections_of_user(user).await.unwrap(),
        vec![staying.clone()]
    );
    let post_room = store.room_members(&channels[0]).await.unwrap();
    assert_eq!(
        post_room
            .iter()
            .map(|m| m.connection_id.as_str())
            .collect::<Vec<_>>(),
        vec![staying.as_str()]
    );
    assert!(store.room_members(&channels[1]).await.unwrap().is_empty());

    // A repeated $disconnect, and one for a connection never seen, change nothing.
    let count = db.item_count().await;
    assert_eq!(
        WsEvent::disconnect(&closing).send(&function).await.status,
        200
    );
    assert_eq!(
        WsEvent::disconnect(&connection_id())
            .send(&function)
            .await
            .status,
        200
    );
    assert_eq!(db.item_count().await, count);
    assert!(store.get_connection(&staying).await.unwrap().is_some());
}
