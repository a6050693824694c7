//! Helpers shared by the store tests.

use std::future::Future;

use chrono::Utc;
use shared::domain::{new_id, DisplayName, Notification, User, UserId, Username};
use shared::store::dynamo::{from_item, Query};
use shared::store::keys;
use shared::store::page::{KeyShape, Page, PageRequest};
use shared::store::DynamoStore;
use shared::store::{NewUser, ProfileUpdate};
use shared::testkit::api::UNUSABLE_PASSWORD_HASH;

/// Registers a user with a throwaway password hash (the store never sees passwords).
pub async fn user(store: &DynamoStore, username: &str) -> User {
    store
        .create_user(NewUser {
            id: new_id(),
            username: Username::parse(username).unwrap(),
            display_name: DisplayName::parse(username).unwrap(),
            password_hash: UNUSABLE_PASSWORD_HASH.to_owned(),
            created_at: Utc::now(),
        })
        .await
        .unwrap_or_else(|e| panic!("creating {username}: {e:?}"))
}

/// Registers one user per name, in order.
pub async fn users<const N: usize>(store: &DynamoStore, names: [&str; N]) -> [User; N] {
    let mut created = Vec::with_capacity(N);
    for name in names {
        created.push(user(store, name).await);
    }
    created
        .try_into()
        .unwrap_or_else(|_| unreachable!("one user per name"))
}

/// Makes `user`'s profile private.
pub async fn make_private(store: &DynamoStore, user: &User) {
    store
        .update_profile(
            user.id,
            &ProfileUpdate {
                is_private: Some(true),
                ..ProfileUpdate::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("making {} private: {e:?}", user.username));
}

/// Every notification item in `recipient`'s partition (pattern 21), read straight from the
/// table so that suites of the causes do not depend on the notifications store's API.
pub async fn stored_notifications(store: &DynamoStore, recipient: UserId) -> Vec<Notification> {
    let partition = keys::user_pk(recipient);
    let query = Query::new(KeyShape::Table, &partition).begins_with(keys::NOTIFICATION_PREFIX);
    store
        .table
        .query_all(&query, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|item| from_item(item).unwrap())
        .collect()
}

/// Walks every page of a listing with `limit`, following the cursor; asserts no page holds
/// more than `limit` items and returns all items and the number of pages.
pub async fn walk_pages<T, F, Fut>(limit: usize, mut read: F) -> (Vec<T>, usize)
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = shared::Result<Page<T>>>,
{
    let mut items = Vec::new();
    let mut request = PageRequest::first(limit);
    let mut pages = 0;
    loop {
        let page = read(request).await.unwrap();
        pages += 1;
        assert!(
            page.items.len() <= limit,
            "page {pages} holds more than {limit}"
        );
        items.extend(page.items);
        match page.next_cursor {
            Some(cursor) => request = PageRequest::after(limit, cursor),
            None => return (items, pages),
        }
        assert!(pages < 100, "pagination does not end");
    }
}
