//! Follows and follow requests: the follow cap, the items of a follow, and the methods that
//! follow, request, accept, reject and undo.

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use chrono::{DateTime, Utc};

use super::{
    absent, follow_item, not_found_user, notification, profile_counters, record_item,
    FOLLOW_LIMIT_REACHED, ITEM_EXISTS, MAX_FOLLOWING,
};
use crate::domain::{Follow, FollowRequest, NotificationKind, UserId};
use crate::error::{Error, Result};
use crate::store::dynamo::{n, with_gsi1};
use crate::store::keys;
use crate::store::notifications::{
    notification_items, NewNotification, NotificationItems, Notified,
};
use crate::store::transaction::{tx, TransactFailure, Transaction, TxItem, TxItems};
use crate::store::DynamoStore;

/// Condition of the follower's profile in a follow: it exists and follows fewer than
/// [`MAX_FOLLOWING`] accounts (a profile without the counter follows nobody).
const BELOW_FOLLOW_CAP: &str =
    "attribute_exists(pk) AND (attribute_not_exists(following_count) OR following_count < :cap)";

fn follow_cap() -> AttributeValue {
    n(i64::try_from(MAX_FOLLOWING).unwrap_or(i64::MAX))
}

/// `ADD following_count 1` on `follower`'s profile on condition [`BELOW_FOLLOW_CAP`]: the
/// one place the cap is enforced, inside the follow's transaction.
fn capped_following_increment(table: &str, follower: UserId) -> Result<TransactWriteItem> {
    tx::update(
        table,
        &keys::user_profile(follower),
        "ADD following_count :following",
        Some(BELOW_FOLLOW_CAP),
        &[],
        vec![(":following", n(1)), (":cap", follow_cap())],
    )
}

/// A follow refused at the cap (409 `follow_limit_reached`); `message` says whose cap.
fn follow_limit_reached(message: String) -> Error {
    Error::Conflict {
        code: FOLLOW_LIMIT_REACHED,
        message,
    }
}

/// The caller's own follow (or follow request) refused at the cap.
fn caller_at_follow_limit() -> Error {
    follow_limit_reached(format!(
        "you already follow {MAX_FOLLOWING} accounts, the most allowed; unfollow one first"
    ))
}

/// Accepting a request of a requester who reached the cap since asking.
fn requester_at_follow_limit() -> Error {
    follow_limit_reached(format!(
        "this user already follows {MAX_FOLLOWING} accounts, the most allowed; the request \
         stays pending"
    ))
}

/// The items of a follow (direct, or an accepted request), to tell which condition failed.
struct FollowItems {
    /// The follow item (exists already: following).
    follow: TxItem,
    /// The follower's following counter, below the cap ([`BELOW_FOLLOW_CAP`]).
    follower_profile: TxItem,
    /// The followee's follower counter (the profile exists).
    followee_profile: TxItem,
    /// No block either way.
    block_checks: TxItems,
}

/// How the failed conditions of a follow or a follow request read, checked in this order.
struct FollowChecks {
    /// The other user is gone, or a block stands between the two.
    unreachable: Vec<TxItems>,
    /// Already done: idempotent, even at the cap.
    done: Vec<TxItems>,
    /// The follower's profile: gone, or at the follow cap ([`BELOW_FOLLOW_CAP`]).
    follower_profile: TxItem,
    /// What is committed, for the error of an unexpected failure.
    what: &'static str,
}

impl DynamoStore {
    /// Adds the follow item, both counters and the no-block checks both ways: the
    /// transaction items shared by a direct follow and an accepted request. The
    /// notification goes through `transact_with_notification`.
    fn add_follow_items(
        &self,
        transaction: &mut Transaction,
        follower: UserId,
        followee: UserId,
        now: DateTime<Utc>,
    ) -> Result<FollowItems> {
        let table = &self.table.name;
        let follow = Follow {
            follower_id: follower,
            followee_id: followee,
            created_at: crate::clock::to_millis(now),
        };
        let item = follow_item(&follow)?;
        Ok(FollowItems {
            follow: transaction.add(tx::put_new(table, item)?),
            follower_profile: transaction.add(capped_following_increment(table, follower)?),
            followee_profile: transaction.add(profile_counters(table, followee, 0, 1)?),
            block_checks: transaction.add_all([
                absent(table, &keys::block(follower, followee))?,
                absent(table, &keys::block(followee, follower))?,
            ]),
        })
    }

    /// Why the condition on `follower`'s profile failed ([`BELOW_FOLLOW_CAP`]): the cap when
    /// the profile exists (its existence is the other half), else the user is gone.
    async fn follower_condition_failure(
        &self,
        follower: UserId,
        at_cap: impl FnOnce() -> Error,
    ) -> Error {
        match self.get_user(follower).await {
            Ok(Some(_)) => at_cap(),
            Ok(None) => not_found_user(),
            Err(error) => error,
        }
    }

    /// Commits a follow or a follow request of `follower` with its notification: `true`
    /// when it was written, else what `checks` say the failed condition means.
    async fn commit_follow(
        &self,
        follower: UserId,
        transaction: Transaction,
        notice: NotificationItems,
        checks: FollowChecks,
    ) -> Result<Notified<bool>> {
        let failure = match self.transact_with_notification(transaction, notice).await {
            Ok(notification) => {
                return Ok(Notified {
                    outcome: true,
                    notification,
                })
            }
            Err(TransactFailure::Other(error)) => return Err(error),
            Err(failure) => failure,
        };
        let any_failed = |items: &[TxItems]| items.iter().any(|item| failure.failed(item));
        if any_failed(&checks.unreachable) {
            Err(not_found_user())
        } else if any_failed(&checks.done) {
            Ok(Notified::silent(false))
        } else if failure.failed(&checks.follower_profile) {
            Err(self
                .follower_condition_failure(follower, caller_at_follow_limit)
                .await)
        } else {
            Err(Error::invariant(format!(
                "{}: unexpected condition failure",
                checks.what
            )))
        }
    }

    /// `follower` now follows `followee`: the follow item, both counters and a `follow`
    /// notification in one transaction (which comes back with the outcome). `false` if it
    /// already existed (idempotent). `NotFound` if either user does not exist or a block
    /// stands between them (checked in the same transaction); `Validation` for a self-follow;
    /// `Conflict` with code [`FOLLOW_LIMIT_REACHED`] when `follower` already follows
    /// [`MAX_FOLLOWING`] accounts (the counter increment's condition, so concurrent follows
    /// cannot overshoot).
    pub async fn follow(
        &self,
        follower: UserId,
        followee: UserId,
        now: DateTime<Utc>,
    ) -> Result<Notified<bool>> {
        if follower == followee {
            return Err(Error::validation("you cannot follow yourself"));
        }
        let mut transaction = Transaction::new();
        let items = self.add_follow_items(&mut transaction, follower, followee, now)?;
        let notice = notification_items(
            &self.table.name,
            &NewNotification {
                dedup_key: Some(keys::follow_dedup_key(follower)),
                ..notification(followee, NotificationKind::Follow, follower, now)
            },
        )?;
        let checks = FollowChecks {
            unreachable: vec![items.block_checks, items.followee_profile.into()],
            done: vec![items.follow.into()],
            follower_profile: items.follower_profile,
            what: "follow",
        };
        self.commit_follow(follower, transaction, notice, checks)
            .await
    }

    /// A follow request to a private account, with a `follow_request` notification.
    /// `false` if it was already pending or the requester already follows the target;
    /// errors as for [`DynamoStore::follow`], including the follow cap: a requester at the
    /// cap cannot ask (a pending request does not reserve a slot, so accepting it re-checks).
    pub async fn request_follow(
        &self,
        requester: UserId,
        target: UserId,
        now: DateTime<Utc>,
    ) -> Result<Notified<bool>> {
        if requester == target {
            return Err(Error::validation("you cannot follow yourself"));
        }
        let table = &self.table.name;
        let request = FollowRequest {
            requester_id: requester,
            target_id: target,
            created_at: crate::clock::to_millis(now),
        };
        let item = with_gsi1(
            record_item(
                &keys::follow_request(target, requester),
                &request,
                "follow_request",
            )?,
            &keys::follow_request_recency_entry(target, uuid::Uuid::now_v7()),
        );
        let mut transaction = Transaction::new();
        let request_item = transaction.add(tx::put_new(table, item)?);
        // Already following: nothing to request.
        let not_following = transaction.add(absent(table, &keys::follow(requester, target))?);
        // The requester exists and is below the follow cap, so a request the target
        // accepts right away does not fail.
        let requester_profile = transaction.add(tx::condition_check(
            table,
            &keys::user_profile(requester),
            BELOW_FOLLOW_CAP,
            vec![(":cap", follow_cap())],
        )?);
        // The target exists, no block either way.
        let target_reachable = transaction.add_all([
            tx::condition_check(table, &keys::user_profile(target), ITEM_EXISTS, vec![])?,
            absent(table, &keys::block(requester, target))?,
            absent(table, &keys::block(target, requester))?,
        ]);
        let notice = notification_items(
            table,
            &NewNotification {
                dedup_key: Some(keys::follow_request_dedup_key(requester)),
                ..notification(target, NotificationKind::FollowRequest, requester, now)
            },
        )?;
        let checks = FollowChecks {
            unreachable: vec![target_reachable],
            done: vec![request_item.into(), not_following.into()],
            follower_profile: requester_profile,
            what: "follow request",
        };
        self.commit_follow(requester, transaction, notice, checks)
            .await
    }

    /// Removes the follow and decrements both counters. `Ok(false)` if there was none.
    pub async fn unfollow(&self, follower: UserId, followee: UserId) -> Result<bool> {
        let table = &self.table.name;
        let mut transaction = Transaction::new();
        let follow = transaction.add(tx::delete(
            table,
            &keys::follow(follower, followee),
            Some(ITEM_EXISTS),
        )?);
        transaction.add_all([
            profile_counters(table, follower, -1, 0)?,
            profile_counters(table, followee, 0, -1)?,
        ]);
        match self.table.transact(transaction).await {
            Ok(()) => Ok(true),
            Err(failure @ TransactFailure::ConditionFailed { .. }) => {
                if failure.failed(&follow) {
                    Ok(false)
                } else {
                    Err(Error::invariant(
                        "unfollow: a follow exists without its profiles",
                    ))
                }
            }
            Err(TransactFailure::Other(error)) => Err(error),
        }
    }

    /// Withdraws a pending request. `Ok(false)` if there was none.
    pub async fn cancel_follow_request(&self, requester: UserId, target: UserId) -> Result<bool> {
        self.delete_existing(&keys::follow_request(target, requester))
            .await
    }

    /// `target` accepts `requester`: the request becomes a follow (counters, and a
    /// `follow_accepted` notification to the requester, which comes back). `NotFound` if no
    /// request is pending. `Conflict` [`FOLLOW_LIMIT_REACHED`] if the requester reached the
    /// follow cap since asking; the request then stays pending.
    pub async fn accept_follow_request(
        &self,
        target: UserId,
        requester: UserId,
        now: DateTime<Utc>,
    ) -> Result<Notified<()>> {
        let table = &self.table.name;
        let request_key = keys::follow_request(target, requester);
        let mut transaction = Transaction::new();
        let items = self.add_follow_items(&mut transaction, requester, target, now)?;
        let request = transaction.add(tx::delete(table, &request_key, Some(ITEM_EXISTS))?);
        let notice = notification_items(
            table,
            &notification(requester, NotificationKind::FollowAccepted, target, now),
        )?;
        match self.transact_with_notification(transaction, notice).await {
            Ok(notification) => Ok(Notified {
                outcome: (),
                notification,
            }),
            Err(failure @ TransactFailure::ConditionFailed { .. }) => {
                if failure.failed(&request) || failure.failed(&items.block_checks) {
                    Err(Error::not_found("no pending follow request from this user"))
                } else if failure.failed(&items.follow) {
                    // Already a follower (e.g. a follow landed while the account was
                    // public): the request is simply consumed.
                    if self.delete_existing(&request_key).await? {
                        Ok(Notified::silent(()))
                    } else {
                        Err(Error::not_found("no pending follow request from this user"))
                    }
                } else if failure.failed(&items.follower_profile) {
                    // The requester reached the cap since asking: the request stays pending

                    // and can be accepted once they follow fewer.
                    Err(self
                        .follower_condition_failure(requester, requester_at_follow_limit)
                        .await)
                } else {
                    Err(not_found_user())
                }
            }
            Err(TransactFailure::Other(error)) => Err(error),
        }
    }

    /// `target` rejects `requester`. `NotFound` if no request is pending.
    pub async fn reject_follow_request(&self, target: UserId, requester: UserId) -> Result<()> {
        if self
            .delete_existing(&keys::follow_request(target, requester))
            .await?
        {
            Ok(())
        } else {
            Err(Error::not_found("no pending follow request from this user"))
        }
    }
}
