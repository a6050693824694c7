//! Shared set-up for Ripple's cross-function tests: every REST function wired to one fresh
//! embedded DynamoDB, invoked exactly as API Gateway would (payload 2.0 JSON events).

pub mod bench;
pub mod footprint;
pub mod realtime;
pub mod runtime_api;

use std::sync::Arc;

use serde_json::{json, Value};
use shared::function::LambdaFunction;
use shared::http::RestState;
use shared::testkit::api::{TestAccount, TestApi, TestRequest, TestResponse};

/// The REST functions of Ripple over one database.
pub struct RestStack {
    /// The database, its store and token service (its function is `api-auth`).
    pub api: TestApi,
    pub auth: Arc<dyn LambdaFunction>,
    pub users: Arc<dyn LambdaFunction>,
    pub posts: Arc<dyn LambdaFunction>,
    pub messages: Arc<dyn LambdaFunction>,
    pub notifications: Arc<dyn LambdaFunction>,
}

impl RestStack {
    pub async fn start() -> Self {
        let api = TestApi::start(|config, clients| {
            Ok(api_auth::lambda_function(Arc::new(api_auth::State::new(
                config,
                clients,
                shared::testkit::test_signing_key(),
            )?)))
        })
        .await;
        let users = api.other_function(|config, clients| {
            Ok(api_users::lambda_function(Arc::new(api_users::State::new(
                config, clients,
            )?)))
        });
        let posts = api.other_function(|config, clients| {
            Ok(api_posts::lambda_function(Arc::new(api_posts::State::new(
                config, clients,
            )?)))
        });
        let messages = api.other_function(|config, clients| {
            Ok(api_messages::lambda_function(Arc::new(
                api_messages::State::new(config, clients)?,
            )))
        });
        let notifications = api.other_function(|config, clients| {
            Ok(api_notifications::lambda_function(Arc::new(
                api_notifications::State::new(config, clients)?,
            )))
        });
        Self {
            auth: Arc::clone(&api.function),
            api,
            users,
            posts,
            messages,
            notifications,
        }
    }

    /// Registers `username` through `POST /auth/register`; the account holds the user as
    /// stored and the access token the registration returned.
    pub async fn register(&self, username: &str) -> TestAccount {
        let response = TestRequest::new("POST", "/auth/register")
            .json(json!({ "username": username, "password": "correct horse battery" }))
            .send(&self.auth)
            .await;
        assert_eq!(
            response.status, 201,
            "register {username}: {:?}",
            response.body
        );
        let id = response.body["user"]["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("register {username}: no user id: {:?}", response.body));
        let user = self
            .api
            .store
            .get_user(id)
            .await
            .unwrap_or_else(|e| panic!("reading {username}: {e:?}"))
            .unwrap_or_else(|| panic!("{username} was registered but is not stored"));
        assert_eq!(user.username, username);
        TestAccount {
            user,
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
        account: &TestAccount,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> TestResponse {
        TestRequest::new(method, path)
            .token(&account.token)
            .optional_json(body)
            .send(function)
            .await
    }
}
