//! Shared set-up for Ripple's cross-function tests: every REST function wired to one fresh
//! embedded DynamoDB, invoked exactly as API Gateway would (payload 2.0 JSON events).

use std::sync::Arc;

use serde_json::{json, Value};
use shared::function::LambdaFunction;
use shared::testkit::api::{TestRequest, TestResponse};
use shared::testkit::TestDb;

/// The REST functions of Ripple over one database.
pub struct RestStack {
    pub db: TestDb,
    pub auth: Arc<dyn LambdaFunction>,
    pub users: Arc<dyn LambdaFunction>,
    pub posts: Arc<dyn LambdaFunction>,
    pub messages: Arc<dyn LambdaFunction>,
    pub notifications: Arc<dyn LambdaFunction>,
}

/// A registered user and their access token.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub username: String,
    pub token: String,
}

impl RestStack {
    pub async fn start() -> Self {
        let db = TestDb::start().await;
        let config = db.config();
        let clients = db.clients(&config);
        let auth = api_auth::lambda_function(Arc::new(
            api_auth::State::new(config.clone(), &clients).expect("api-auth state"),
        ));
        let users = api_users::lambda_function(Arc::new(
            api_users::State::new(config.clone(), &clients).expect("api-users state"),
        ));
        let posts = api_posts::lambda_function(Arc::new(
            api_posts::State::new(config.clone(), &clients).expect("api-posts state"),
        ));
        let messages = api_messages::lambda_function(Arc::new(
            api_messages::State::new(config.clone(), &clients).expect("api-messages state"),
        ));
        let notifications = api_notifications::lambda_function(Arc::new(
            api_notifications::State::new(config, &clients).expect("api-notifications state"),
        ));
        Self {
            db,
            auth,
            users,
            posts,
            messages,
            notifications,
        }
    }

    /// Registers `username` through `POST /auth/register`.
    pub async fn register(&self, username: &str) -> Account {
        let response = TestRequest::new("POST", "/auth/register")
            .json(json!({ "username": username, "password": "correct horse battery" }))
            .send(&self.auth)
            .await;
        assert_eq!(response.status, 201, "register {username}: {:?}", response.body);
        Account {
            id: response.body["user"]["id"]
                .as_str()
                .expect("user id")
                .to_owned(),
            username: username.to_owned(),
            token: response.body["access_token"]
                .as_str()
                .expect("access token")
                .to_owned(),
        }
    }

    /// Sends `method path` with `account`'s token (and `body` if given) to `function`.
    pub async fn call(
        &self,
        function: &Arc<dyn LambdaFunction>,
        account: &Account,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> TestResponse {
        let mut request = TestRequest::new(method, path).token(&account.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send(function).await
    }
}
