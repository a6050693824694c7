//! Users: profiles, credentials, username uniqueness and prefix search.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::dynamo::{from_item, key_map, s, to_item, tx, with_gsi1, Query};
use super::keys;
use super::page::{KeyShape, Page, PageRequest};
use super::DynamoStore;
use crate::domain::{User, UserId};
use crate::error::{Error, Result};

/// What registration stores.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    /// PHC-format argon2id hash; the password itself never reaches the store.
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

/// A partial profile update (`PATCH /users/me`); `None` leaves a field unchanged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileUpdate {
    pub display_name: Option<String>,
    pub bio: Option<String>,
    pub is_private: Option<bool>,
    pub show_presence: Option<bool>,
}

impl ProfileUpdate {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates the user; a username taken in any letter case is a `Conflict`.
    async fn create_user(&self, new: NewUser) -> Result<User>;
    async fn get_user(&self, id: UserId) -> Result<Option<User>>;
    /// Profiles of many users in one round trip (missing ones are absent).
    async fn get_users(&self, ids: &[UserId]) -> Result<HashMap<UserId, User>>;
    /// Case-insensitive lookup.
    async fn user_id_by_username(&self, username: &str) -> Result<Option<UserId>>;
    /// The stored password hash.
    async fn password_hash(&self, id: UserId) -> Result<Option<String>>;
    async fn update_profile(&self, id: UserId, update: &ProfileUpdate) -> Result<User>;
    /// Users whose lower-cased username starts with `prefix` (already lower-cased and
    /// validated), in username order.
    async fn search_usernames(&self, prefix: &str, page: &PageRequest) -> Result<Page<User>>;
}

#[derive(Serialize)]
struct ProfileRecord<'a> {
    #[serde(flatten)]
    user: &'a User,
    username_lower: String,
    entity: &'static str,
}

#[derive(Serialize, Deserialize)]
struct UsernameRecord {
    user_id: UserId,
    entity: String,
}

#[derive(Serialize, Deserialize)]
struct CredentialsRecord {
    password_hash: String,
    entity: String,
}

/// Longest accepted search prefix (a username's maximum length).
pub const MAX_SEARCH_PREFIX: usize = crate::domain::USERNAME_MAX;

#[async_trait]
impl UserStore for DynamoStore {
    async fn create_user(&self, new: NewUser) -> Result<User> {
        let username_lower = new.username.to_ascii_lowercase();
        let user = User {
            id: new.id,
            username: new.username.clone(),
            display_name: new.display_name,
            bio: String::new(),
            is_private: false,
            show_presence: true,
            created_at: crate::clock::to_millis(new.created_at),
            follower_count: 0,
            following_count: 0,
            post_count: 0,
        };
        let table = &self.table.name;
        let profile = with_gsi1(
            to_item(
                &keys::user_profile(user.id),
                &ProfileRecord {
                    user: &user,
                    username_lower: username_lower.clone(),
                    entity: "user",
                },
            )?,
            &keys::username_search_entry(&username_lower),
        );
        let items = vec![
            tx::put_new(
                table,
                to_item(
                    &keys::username(&username_lower),
                    &UsernameRecord {
                        user_id: user.id,
                        entity: "username".into(),
                    },
                )?,
            )?,
            tx::put_new(table, profile)?,
            tx::put_new(
                table,
                to_item(
                    &keys::user_credentials(user.id),
                    &CredentialsRecord {
                        password_hash: new.password_hash,
                        entity: "credentials".into(),
                    },
                )?,
            )?,
        ];
        self.table
            .transact_or(items, || Error::conflict("username is already taken"))
            .await?;
        Ok(user)
    }

    async fn get_user(&self, id: UserId) -> Result<Option<User>> {
        self.table.get_as(&keys::user_profile(id)).await
    }

    async fn get_users(&self, ids: &[UserId]) -> Result<HashMap<UserId, User>> {
        let keys: Vec<_> = ids.iter().map(|id| keys::user_profile(*id)).collect();
        self.table.batch_get_map(&keys, |user: &User| user.id).await
    }

    async fn user_id_by_username(&self, username: &str) -> Result<Option<UserId>> {
        let record: Option<UsernameRecord> = self
            .table
            .get_as(&keys::username(&username.to_ascii_lowercase()))
            .await?;
        Ok(record.map(|r| r.user_id))
    }

    async fn password_hash(&self, id: UserId) -> Result<Option<String>> {
        let record: Option<CredentialsRecord> =
            self.table.get_as(&keys::user_credentials(id)).await?;
        Ok(record.map(|r| r.password_hash))
    }

    async fn update_profile(&self, id: UserId, update: &ProfileUpdate) -> Result<User> {
        if update.is_empty() {
            return self
                .get_user(id)
                .await?
                .ok_or_else(|| Error::not_found("user not found"));
        }
        let mut sets = Vec::new();
        let mut request = self
            .table
            .client
            .update_item()
            .table_name(&self.table.name)
            .set_key(Some(key_map(&keys::user_profile(id))))
            .condition_expression("attribute_exists(pk)")
            .return_values(ReturnValue::AllNew);
        if let Some(display_name) = &update.display_name {
            sets.push("display_name = :display_name");
            request = request.expression_attribute_values(":display_name", s(display_name));
        }
        if let Some(bio) = &update.bio {
            sets.push("bio = :bio");
            request = request.expression_attribute_values(":bio", s(bio));
        }
        if let Some(is_private) = update.is_private {
            sets.push("is_private = :is_private");
            request = request
                .expression_attribute_values(":is_private", AttributeValue::Bool(is_private));
        }
        if let Some(show_presence) = update.show_presence {
            sets.push("show_presence = :show_presence");
            request = request
                .expression_attribute_values(":show_presence", AttributeValue::Bool(show_presence));
        }
        let output = request
            .update_expression(format!("SET {}", sets.join(", ")))
            .send()
            .await;
        match output {
            Ok(output) => from_item(output.attributes.unwrap_or_default()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(Error::not_found("user not found"))
            }
            Err(error) => Err(Error::internal("updating profile", error)),
        }
    }

    async fn search_usernames(&self, prefix: &str, page: &PageRequest) -> Result<Page<User>> {
        if prefix.is_empty() || prefix.chars().count() > MAX_SEARCH_PREFIX {
            return Err(Error::validation(format!(
                "q must be 1–{MAX_SEARCH_PREFIX} characters"
            )));
        }
        let partition = keys::username_search_partition(prefix);
        let query = Query::new(KeyShape::Gsi1, &partition).begins_with(prefix);
        self.table.query_page_as(&query, page).await
    }
}
