//! `$connect` tests: real `ApiGatewayWebsocketProxyRequest` events through the function's
//! `LambdaFunction`, against a fresh embedded DynamoDB per test.

use std::sync::Arc;

use chrono::{Duration, Utc};
use shared::auth::SigningKey;
use shared::auth::TokenService;
use shared::config::Config;
use shared::domain::new_id;
use shared::function::FunctionState;
use shared::function::LambdaFunction;
use shared::store::DynamoStore;
use shared::testkit::ws::{connection_id, WsEvent, WsResponse};
use shared::testkit::TestDb;
use ws_connect::{State, CONNECTION_TTL, SUBPROTOCOL};

struct Gateway {
    db: TestDb,
    store: DynamoStore,
    config: Config,
    function: Arc<dyn LambdaFunction>,
    tokens: TokenService,
}

impl Gateway {
    async fn start() -> Self {
        let db = TestDb::start().await;
        let config = db.config();
        let clients = db.clients(&config);
        let tokens = shared::testkit::test_token_service(&config);
        let state = Arc::new(State::build(config.clone(), &clients).unwrap());
        Self {
            store: db.store(),
            function: ws_connect::lambda_function(state),
            config,
            tokens,
            db,
        }
    }

    async fn connect_with_query_token(&self, token: &str) -> (String, WsResponse) {
        let id = connection_id();
        let response = WsEvent::connect(&id)
            .query("token", token)
            .send(&self.function)
            .await;
        (id, response)
    }
}

fn assert_rejected(response: &WsResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(response.json()["error"]["code"], code, "{response:?}");
    assert!(!response.headers.contains_key("sec-websocket-protocol"));
}

#[tokio::test]
async fn query_token_connects_and_stores_the_connection_with_its_ttl() {
    let gateway = Gateway::start().await;
    let user = new_id();
    let token = gateway.tokens.issue(user, Utc::now()).unwrap();
    let connected_at = Utc::now() - Duration::seconds(1);
    let id = connection_id();
    let response = WsEvent::connect(&id)
        .query("token", &token)
        .connected_at_ms(connected_at.timestamp_millis())
        .send(&gateway.function)
        .await;

    assert_eq!(response.status, 200, "{response:?}");
    assert!(!response.headers.contains_key("sec-websocket-protocol"));
    let stored = gateway
        .store
        .get_connection(&id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.user_id, user);
    assert_eq!(
        stored.connected_at.timestamp_millis(),
        connected_at.timestamp_millis()
    );
    assert_eq!(stored.user_agent.as_deref(), Some("ripple-test/1.0"));
    assert_eq!(
        stored.expires_at,
        (connected_at + CONNECTION_TTL).timestamp()
    );
    assert_eq!(
        gateway.store.connections_of_user(user).await.unwrap(),
        vec![id]
    );
}

#[tokio::test]
async fn subprotocol_token_connects_and_the_subprotocol_is_selected() {
    let gateway = Gateway::start().await;
    let user = new_id();
    let token = gateway.tokens.issue(user, Utc::now()).unwrap();
    let id = connection_id();
    let response = WsEvent::connect(&id)
        .header("Sec-WebSocket-Protocol", &format!("{SUBPROTOCOL}, {token}"))
        .send(&gateway.function)
        .await;

    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.headers["sec-websocket-protocol"], SUBPROTOCOL);
    assert!(
        !response
            .headers
            .values()
            .any(|value| value.contains(&token)),
        "the token is never echoed"
    );
    assert_eq!(
        gateway
            .store
            .get_connection(&id)
            .await
            .unwrap()
            .map(|c| c.user_id),
        Some(user)
    );
}

#[tokio::test]
async fn missing_malformed_expired_and_foreign_tokens_are_rejected_with_401() {
    let gateway = Gateway::start().await;
    let user = new_id();
    let expired = gateway
        .tokens
        .issue(user, Utc::now() - Duration::hours(2))
        .unwrap();
    let impostor = SigningKey::generate(shared::testkit::TEST_KID).unwrap();
    let foreign = shared::testkit::token_service_signing_with(&gateway.config, &impostor)
        .issue(user, Utc::now())
        .unwrap();
    let before = gateway.db.item_count().await;

    for token in ["not-a-jwt", expired.as_str(), foreign.as_str()] {
        let (id, response) = gateway.connect_with_query_token(token).await;
        assert_rejected(&response, 401, "unauthorized");
        assert_eq!(gateway.store.get_connection(&id).await.unwrap(), None);
    }
    let no_token = WsEvent::connect(&connection_id())
        .send(&gateway.function)
        .await;
    assert_rejected(&no_token, 401, "unauthorized");
    let bad_subprotocol = WsEvent::connect(&connection_id())
        .header(
            "Sec-WebSocket-Protocol",
            &format!("{SUBPROTOCOL}, {expired}"),
        )
        .send(&gateway.function)
        .await;
    assert_rejected(&bad_subprotocol, 401, "unauthorized");
    assert_eq!(
        gateway.db.item_count().await,
        before,
        "a rejected handshake writes nothing"
    );
}

#[tokio::test]
async fn the_eleventh_connection_of_a_user_is_refused_with_429() {
    let gateway = Gateway::start().await;
    let user = new_id();
    let token = gateway.tokens.issue(user, Utc::now()).unwrap();
    for _ in 0..gateway.config.max_connections_per_user {
        let (_, response) = gateway.connect_with_query_token(&token).await;
        assert_eq!(response.status, 200, "{response:?}");
    }

    let (id, response) = gateway.connect_with_query_token(&token).await;
    assert_rejected(&response, 429, "rate_limited");
    assert!(response.headers["retry-after"].parse::<u64>().unwrap() > 0);
    assert_eq!(gateway.store.get_connection(&id).await.unwrap(), None);
    assert_eq!(
        gateway.store.connections_of_user(user).await.unwrap().len(),
        10
    );

    // The limit is per user: someone else still connects.
    let other = gateway.tokens.issue(new_id(), Utc::now()).unwrap();
    assert_eq!(gateway.connect_with_query_token(&other).await.1.status, 200);

    // A closed connection frees its slot.
    let open = gateway.store.connections_of_user(user).await.unwrap();
    gateway.store.remove_connection(&open[0]).await.unwrap();
    assert_eq!(gateway.connect_with_query_token(&token).await.1.status, 200);
}
