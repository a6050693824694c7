//! Helpers shared by the store tests.

use chrono::Utc;
use shared::domain::{new_id, User};
use shared::store::users::{NewUser, UserStore};
use shared::store::DynamoStore;

/// Registers a user with a throwaway password hash (the store never sees passwords).
pub async fn user(store: &DynamoStore, username: &str) -> User {
    store
        .create_user(NewUser {
            id: new_id(),
            username: username.to_owned(),
            display_name: username.to_owned(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
            created_at: Utc::now(),
        })
        .await
        .unwrap_or_else(|e| panic!("creating {username}: {e:?}"))
}
