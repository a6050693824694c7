//! Users: profiles, credentials, username uniqueness and prefix search.
//!
//! Search reads a small search item per user (`USER#{user}` / `SEARCH`: id, username, display
//! name, no counters), never the profile: the profile's counters change with every follow
//! and post, and an index entry on it would be rewritten each time. The search index is
//! sharded by first character and a hash of the user id; a search queries the
//! [`keys::USERNAME_SEARCH_SHARDS`] shards of its first character concurrently and merges
//! them in (lower-cased username, id) order.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::dynamo::{
    from_item, item_key, key_map, s, to_item, values_map, with_gsi1, Item, Query, SortKey,
};
use super::keys;
use super::page::{decode_token, encode_token, KeyShape, Page, PageRequest};
use super::transaction::{tx, TransactFailure, Transaction};
use super::DynamoStore;
use crate::domain::{Bio, DisplayName, User, UserId, UserSummary, Username};
use crate::error::{Error, Result};

/// What registration stores.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub username: Username,
    pub display_name: DisplayName,
    /// PHC-format argon2id hash; the password itself never reaches the store.
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

/// A partial profile update (`PATCH /users/me`); `None` leaves a field unchanged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileUpdate {
    pub display_name: Option<DisplayName>,
    pub bio: Option<Bio>,
    pub is_private: Option<bool>,
    pub show_presence: Option<bool>,
}

impl ProfileUpdate {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// What [`DynamoStore::rebuild_search_entry`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchEntryRebuild {
    /// The search item was (re)written and the profile's old search keys removed.
    Written,
    /// The search item already matched the profile, which has no search keys: nothing written.
    UpToDate,
    /// No such user: nothing written.
    NoProfile,
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

/// The search item: what a search matches on and returns, and nothing that changes often.
#[derive(Debug, Serialize, Deserialize)]
struct SearchRecord {
    id: UserId,
    username: String,
    username_lower: String,
    display_name: String,
    entity: String,
}

impl SearchRecord {
    fn of(user: &User) -> Self {
        Self {
            id: user.id,
            username: user.username.clone(),
            username_lower: user.username.to_ascii_lowercase(),
            display_name: user.display_name.clone(),
            entity: SEARCH_ENTITY.to_owned(),
        }
    }

    /// The stored item: the record, its key and its search index entry.
    fn item(&self) -> Result<Item> {
        Ok(with_gsi1(
            to_item(&keys::user_search(self.id), self)?,
            &keys::username_search_entry(self.id, &self.username_lower),
        ))
    }
}

/// The `entity` of search items.
const SEARCH_ENTITY: &str = "user_search";

/// Where the next search page starts: after this entry (exclusive).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchCursor {
    /// Lower-cased username of the last entry returned.
    after: String,
    id: UserId,
}

/// Longest accepted search prefix (a username's maximum length).
pub const MAX_SEARCH_PREFIX: usize = crate::domain::USERNAME_MAX;

/// Attempts at a rebuild whose profile changed between its read and its write.
const REBUILD_ATTEMPTS: usize = 5;

const ITEM_EXISTS: &str = "attribute_exists(pk)";

/// Whether `text` could be (part of) a lower-cased username.
fn is_username_lower(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The lower-cased, validated search prefix: it bounds the key range, so it must hold only
/// what a username may.
fn search_prefix(prefix: &str) -> Result<String> {
    let prefix = prefix.to_ascii_lowercase();
    if prefix.is_empty()
        || prefix.chars().count() > MAX_SEARCH_PREFIX
        || !is_username_lower(&prefix)
    {
        return Err(Error::validation(format!(
            "q must be 1–{MAX_SEARCH_PREFIX} letters, digits or underscores"
        )));
    }
    Ok(prefix)
}

/// The cursor of a search for `prefix`: it must name an entry inside the prefix's range, so
/// a cursor of another search (or a forged one) is a 400, never a read outside the range.
fn search_cursor(cursor: &str, prefix: &str) -> Result<SearchCursor> {
    let cursor: SearchCursor = decode_token(cursor)?;
    let plausible = cursor.after.starts_with(prefix)
        && cursor.after.chars().count() <= crate::domain::USERNAME_MAX
        && is_username_lower(&cursor.after);
    if !plausible {
        return Err(Error::validation("cursor is not valid for this list"));
    }
    Ok(cursor)
}

/// `SET` clauses and values of a profile update (at least one field is set).
fn profile_sets(update: &ProfileUpdate) -> (String, Vec<(&'static str, AttributeValue)>) {
    let mut sets = Vec::new();
    let mut values = Vec::new();
    if let Some(display_name) = &update.display_name {
        sets.push("display_name = :display_name");
        values.push((":display_name", s(display_name.as_str())));
    }
    if let Some(bio) = &update.bio {
        sets.push("bio = :bio");
        values.push((":bio", s(bio.as_str())));
    }
    if let Some(is_private) = update.is_private {
        sets.push("is_private = :is_private");
        values.push((":is_private", AttributeValue::Bool(is_private)));
    }
    if let Some(show_presence) = update.show_presence {
        sets.push("show_presence = :show_presence");
        values.push((":show_presence", AttributeValue::Bool(show_presence)));
    }
    (format!("SET {}", sets.join(", ")), values)
}

impl DynamoStore {
    /// A profile update that leaves the search item alone: one `UpdateItem`.
    async fn update_profile_item(&self, id: UserId, update: &ProfileUpdate) -> Result<User> {
        let (expression, values) = profile_sets(update);
        let output = self
            .table
            .client
            .update_item()
            .table_name(&self.table.name)
            .set_key(Some(key_map(&keys::user_profile(id))))
            .condition_expression(ITEM_EXISTS)
            .update_expression(expression)
            .set_expression_attribute_values(values_map(values))
            .return_values(ReturnValue::AllNew)
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

    /// A profile update with a new display name: the profile and the search item in one
    /// transaction (so concurrent edits leave both with the same name), then the profile.
    async fn update_profile_and_search(
        &self,
        id: UserId,
        update: &ProfileUpdate,
        display_name: &str,
    ) -> Result<User> {
        let table = &self.table.name;
        let (expression, values) = profile_sets(update);
        let mut transaction = Transaction::new();
        let profile = transaction.add(tx::update(
            table,
            &keys::user_profile(id),
            &expression,
            Some(ITEM_EXISTS),
            &[],
            values,
        )?);
        transaction.add(tx::update(
            table,
            &keys::user_search(id),
            "SET display_name = :display_name",
            Some(ITEM_EXISTS),
            &[],
            vec![(":display_name", s(display_name))],
        )?);
        match self.table.transact(transaction).await {
            Ok(()) => {}
            Err(failure) if failure.failed(&profile) => {
                return Err(Error::not_found("user not found"))
            }
            // No search item yet (a user from before search items, not migrated yet): the
            // profile alone; `rebuild_search_entry` builds the item from it later.
            Err(TransactFailure::ConditionFailed { .. }) => {
                return self.update_profile_item(id, update).await
            }
            Err(TransactFailure::Other(error)) => return Err(error),
        }
        self.get_user(id)
            .await?
            .ok_or_else(|| Error::not_found("user not found"))
    }

    /// Up to `want` entries of one search partition with sort keys in `low..=high`, in
    /// order, leaving out `skip` (the cursor's own entry, which `BETWEEN` includes). One
    /// request unless a page of small items exceeds 1 MB.
    async fn search_partition(
        &self,
        partition: &str,
        (low, high): (&str, &str),
        skip: Option<&str>,
        want: usize,
    ) -> Result<Vec<SearchRecord>> {
        let query = Query {
            sort: SortKey::Between {
                low,
                high,
                exclude: skip,
            },
            ..Query::new(KeyShape::Gsi1, partition)
        };
        let page = PageRequest::first(want);
        Ok(self.table.query_page_as(&query, &page).await?.items)
    }

    /// One attempt at [`DynamoStore::rebuild_search_entry`]; `None` when the profile changed
    /// between the read and the write.
    async fn try_rebuild_search_entry(&self, id: UserId) -> Result<Option<SearchEntryRebuild>> {
        let (profile_key, search_key) = (keys::user_profile(id), keys::user_search(id));
        let mut profile = None;
        let mut stored = None;
        for item in self
            .table
            .batch_get(&[profile_key.clone(), search_key.clone()])
            .await?
        {
            if item_key(&item)? == profile_key {
                profile = Some(item);
            } else {
                stored = Some(item);
            }
        }
        let Some(profile) = profile else {
            return Ok(Some(SearchEntryRebuild::NoProfile));
        };
        let has_search_keys = profile.contains_key("gsi1pk") || profile.contains_key("gsi1sk");
        let user: User = from_item(profile)?;
        let wanted = SearchRecord::of(&user).item()?;
        if !has_search_keys && stored.as_ref() == Some(&wanted) {
            return Ok(Some(SearchEntryRebuild::UpToDate));
        }
        let table = &self.table.name;
        let items = vec![
            tx::put(table, wanted, None)?,
            // Conditioned on the display name copied into the search item: a concurrent
            // edit fails this, and the rebuild reads again.
            tx::update(
                table,
                &profile_key,
                "REMOVE gsi1pk, gsi1sk",
                Some("display_name = :display_name"),
                &[],
                vec![(":display_name", s(&user.display_name))],
            )?,
        ];
        match self.table.transact(items).await {
            Ok(()) => Ok(Some(SearchEntryRebuild::Written)),
            Err(TransactFailure::ConditionFailed { .. }) => Ok(None),
            Err(TransactFailure::Other(error)) => Err(error),
        }
    }
}

impl DynamoStore {
    /// Creates the user (username guard, profile, search item, credentials in one
    /// transaction); a username taken in any letter case is a `Conflict`.
    pub async fn create_user(&self, new: NewUser) -> Result<User> {
        let username_lower = new.username.canonical();
        let user = User {
            id: new.id,
            username: new.username.clone().into(),
            display_name: new.display_name.into(),
            bio: String::new(),
            is_private: false,
            show_presence: true,
            created_at: crate::clock::to_millis(new.created_at),
            follower_count: 0,
            following_count: 0,
            post_count: 0,
        };
        let table = &self.table.name;
        // The profile has no index entry: its counters change with every follow and post.
        let profile = to_item(
            &keys::user_profile(user.id),
            &ProfileRecord {
                user: &user,
                username_lower: username_lower.clone(),
                entity: "user",
            },
        )?;
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
            tx::put_new(table, SearchRecord::of(&user).item()?)?,
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

    pub async fn get_user(&self, id: UserId) -> Result<Option<User>> {
        self.table.get_as(&keys::user_profile(id)).await
    }

    /// Profiles of many users in one round trip (missing ones are absent).
    pub async fn get_users(&self, ids: &[UserId]) -> Result<HashMap<UserId, User>> {
        let keys: Vec<_> = ids.iter().map(|id| keys::user_profile(*id)).collect();
        self.table.batch_get_map(&keys, |user: &User| user.id).await
    }

    /// Case-insensitive lookup.
    pub async fn user_id_by_username(&self, username: &str) -> Result<Option<UserId>> {
        let record: Option<UsernameRecord> = self
            .table
            .get_as(&keys::username(&username.to_ascii_lowercase()))
            .await?;
        Ok(record.map(|r| r.user_id))
    }

    /// The stored password hash.
    pub async fn password_hash(&self, id: UserId) -> Result<Option<String>> {
        let record: Option<CredentialsRecord> =
            self.table.get_as(&keys::user_credentials(id)).await?;
        Ok(record.map(|r| r.password_hash))
    }

    /// Changes the given fields; a new display name reaches the search item in the same
    /// transaction.
    pub async fn update_profile(&self, id: UserId, update: &ProfileUpdate) -> Result<User> {
        if update.is_empty() {
            return self
                .get_user(id)
                .await?
                .ok_or_else(|| Error::not_found("user not found"));
        }
        match &update.display_name {
            Some(display_name) => {
                self.update_profile_and_search(id, update, display_name.as_str())
                    .await
            }
            None => self.update_profile_item(id, update).await,
        }
    }

    /// Users whose lower-cased username starts with `prefix` (any case; 1–30 letters, digits
    /// or underscores), in (lower-cased username, id) order: one concurrent query per search
    /// shard, no profile read.
    pub async fn search_usernames(
        &self,
        prefix: &str,
        page: &PageRequest,
    ) -> Result<Page<UserSummary>> {
        let prefix = search_prefix(prefix)?;
        let after = match &page.cursor {
            Some(cursor) => {
                let cursor = search_cursor(cursor, &prefix)?;
                Some(keys::username_search_sort_key(&cursor.after, cursor.id))
            }
            None => None,
        };
        let high = keys::username_search_upper_bound(&prefix);
        let low = after.as_deref().unwrap_or(&prefix);
        let want = page.limit + 1;
        let partitions = keys::username_search_partitions(&prefix);
        let shards = futures::future::try_join_all(partitions.iter().map(|partition| {
            self.search_partition(partition, (low, &high), after.as_deref(), want)
        }))
        .await?;
        let mut found: Vec<SearchRecord> = shards.into_iter().flatten().collect();
        found.sort_unstable_by(|a, b| (&a.username_lower, a.id).cmp(&(&b.username_lower, b.id)));
        found.truncate(want);
        let next_cursor = if found.len() > page.limit {
            found.truncate(page.limit);
            found
                .last()
                .map(|last| {
                    encode_token(&SearchCursor {
                        after: last.username_lower.clone(),
                        id: last.id,
                    })
                })
                .transpose()?
        } else {
            None
        };
        Ok(Page {
            items: found
                .into_iter()
                .map(|record| UserSummary {
                    id: record.id,
                    username: record.username,
                    display_name: record.display_name,
                })
                .collect(),
            next_cursor,
        })
    }

    /// Migration step, idempotent and safe to re-run at any time: (re)builds `user`'s search
    /// item from their profile and removes the search keys (`gsi1pk`/`gsi1sk`) that profiles
    /// carried before search items existed. One consistent read of both items; writes (one
    /// transaction, conditioned on the display name it read, re-read on a race with a
    /// profile edit) only when something differs.
    pub async fn rebuild_search_entry(&self, user: UserId) -> Result<SearchEntryRebuild> {
        for _ in 0..REBUILD_ATTEMPTS {
            if let Some(outcome) = self.try_rebuild_search_entry(user).await? {
                return Ok(outcome);
            }
        }
        Err(Error::conflict(
            "the profile kept changing while rebuilding its search entry; try again",
        ))
    }
}
