//! The stack's REST helpers: requests to the gateway's HTTP API, and the calls the suites
//! make through it (register, follow, post, list every page).

use std::collections::BTreeSet;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use super::{RealtimeStack, Response, User, PASSWORD, WAIT};

impl RealtimeStack {
    /// `method path` on the HTTP API, with `token` and a JSON `body` if given.
    pub async fn request(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Response {
        let url = format!("{}{path}", self.stack.urls.http_url());
        let mut request = http::Request::builder().method(method).uri(&url);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .unwrap_or_else(|e| panic!("building {method} {url}: {e}"));
        let response = tokio::time::timeout(WAIT, self.http.request(request))
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no response within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = tokio::time::timeout(WAIT, response.into_body().collect())
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: body not read within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("{method} {path}: reading the body: {e}"))
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{method} {path}: body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Response {
            status,
            body,
            headers,
        }
    }

    /// `method path` as `user`, asserting the status; returns the body.
    pub async fn call(
        &self,
        user: &User,
        method: &str,
        path: &str,
        body: Option<Value>,
        expected_status: u16,
    ) -> Value {
        let response = self.request(Some(&user.token), method, path, body).await;
        assert_eq!(
            response.status, expected_status,
            "{} {method} {path}: {}",
            user.username, response.body
        );
        response.body
    }

    /// Registers `username` through `POST /auth/register`.
    pub async fn register(&self, username: &str) -> User {
        let response = self
            .request(
                None,
                "POST",
                "/auth/register",
                Some(json!({ "username": username, "password": PASSWORD })),
            )
            .await;
        assert_eq!(
            response.status, 201,
            "register {username}: {}",
            response.body
        );
        let text = |pointer: &str| {
            response.body[pointer]
                .as_str()
                .unwrap_or_else(|| panic!("register {username}: no {pointer}: {}", response.body))
                .to_owned()
        };
        User {
            id: response.body["user"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("register {username}: no user id"))
                .to_owned(),
            username: username.to_owned(),
            token: text("access_token"),
        }
    }

    /// `follower` follows `followee` (public: following at once).
    pub async fn follow(&self, follower: &User, followee: &User) {
        let body = self
            .call(
                follower,
                "PUT",
                &format!("/users/{}/follow", followee.id),
                None,
                200,
            )
            .await;
        assert_eq!(body["status"], "following", "{body}");
    }

    /// `blocker` blocks `blocked`.
    pub async fn block(&self, blocker: &User, blocked: &User) {
        self.call(
            blocker,
            "PUT",
            &format!("/users/{}/block", blocked.id),
            None,
            204,
        )
        .await;
    }

    /// `PATCH /users/me` with `changes`.
    pub async fn update_profile(&self, user: &User, changes: Value) {
        self.call(user, "PATCH", "/users/me", Some(changes), 200)
            .await;
    }

    /// `author` posts `text`; returns the post.
    pub async fn post(&self, author: &User, text: &str) -> Value {
        self.call(author, "POST", "/posts", Some(json!({ "text": text })), 201)
            .await
    }

    /// `user` likes `post_id`.
    pub async fn like(&self, user: &User, post_id: &str) -> Value {
        self.call(user, "PUT", &format!("/posts/{post_id}/like"), None, 200)
            .await
    }

    /// `user` comments `text` on `post_id`; returns the comment.
    pub async fn comment(&self, user: &User, post_id: &str, text: &str) -> Value {
        self.call(
            user,
            "POST",
            &format!("/posts/{post_id}/comments"),
            Some(json!({ "text": text })),
            201,
        )
        .await
    }

    /// `from` sends `text` to `to`; returns the message.
    pub async fn message(&self, from: &User, to: &User, text: &str) -> Value {
        self.call(
            from,
            "POST",
            &format!("/conversations/{}/messages", to.id),
            Some(json!({ "text": text })),
            201,
        )
        .await
    }

    /// The ids of `user`'s notifications as `GET /notifications` lists them (all pages).
    pub async fn notification_ids(&self, user: &User) -> BTreeSet<String> {
        self.all_ids(user, "/notifications").await
    }

    /// The ids of the messages between `user` and `other` (`GET /conversations/…/messages`).
    pub async fn message_ids(&self, user: &User, other: &User) -> BTreeSet<String> {
        self.all_ids(user, &format!("/conversations/{}/messages", other.id))
            .await
    }

    /// The `id`s of every item of a paginated list at `path`.
    pub async fn all_ids(&self, user: &User, path: &str) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let page_path = match &cursor {
                Some(cursor) => format!("{path}?limit=100&cursor={}", percent_encode(cursor)),
                None => format!("{path}?limit=100"),
            };
            let page = self.call(user, "GET", &page_path, None, 200).await;
            for item in page["items"].as_array().into_iter().flatten() {
                if let Some(id) = item["id"].as_str() {
                    ids.insert(id.to_owned());
                }
            }
            match page["next_cursor"].as_str() {
                Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
                _ => return ids,
            }
        }
    }
}

/// `text` percent-encoded for a query string (everything but RFC 3986's unreserved set).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
