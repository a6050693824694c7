//! What a stream record means for connected clients — pure functions, no I/O.
//!
//! A record's item is recognised by its `entity` attribute (every item has one) and parsed
//! with `serde_dynamo` into the domain record. The rules:
//!
//! | entity | change | events → audience |
//! |---|---|---|
//! | post | insert | `post_created` → author + followers; feed task `distribute` |
//! | post | modify: text, media or `edited_at` changed | `post_updated` → author + followers, `post:{id}` room |
//! | post | modify: `like_count` changed | `like_updated` → `post:{id}` room (the last one per post per batch: [`coalesce_like_updates`]) |
//! | post | modify: `last_deleted_comment` changed | `comment_deleted` → `post:{id}` room |
//! | post | remove | `post_deleted` → author + followers, `post:{id}` room; feed task `withdraw` |
//! | notification | insert | `new_notification` → recipient |
//! | notification | modify: unread → read | `notification_read` → recipient (the router merges a batch's reads per recipient into one) |
//! | comment | insert | `new_comment` → `post:{id}` room (the comment's author as the actor) |
//! | comment | remove | nothing: a user's deletion is announced by the post's modify above, a post's deletion by `post_deleted` |
//! | message | insert | sent: `new_message` → recipient + sender; requested: `message_request` → recipient, `new_message` → sender |
//! | follow | insert | feed task `backfill` (the author's latest posts into the follower's feed) |
//! | follow | remove | feed task `prune` (unfollow, or a block's removal of follows) |
//! | connection | insert | effect: record the user online (presence item, debounced) |
//! | connection | remove | effect: presence check after the grace period; a TTL removal also releases the connection's set entry and memberships |
//! | presence | insert or modify: `online` false → true | `user_online` → presence watchers (the router's connect effect wrote it) |
//! | presence | modify: `online` true → false | `user_offline` → presence watchers (the push worker's announcement) |
//!
//! Feed tasks are queued for the push worker (`shared::feed`), never carried out here: a
//! post by an author with 10,000 followers means 400 `BatchWriteItem`s.
//!
//! Everything else (likes, tokens, rate windows, dedup markers, presence going
//! online…) produces nothing: its visible consequences arrive through the records above (a
//! like's count change is a post modify; its notification is a notification insert;
//! `user_online` is pushed by the effect that writes it).
//!
//! "Author + followers" is resolved later to online followers only, minus the author's block
//! set; the recipient of a message gets it on every connection (a REST send has no origin
//! connection to skip). A `post:{id}` room is resolved to the members `shared::visibility`
//! admits when the event is sent: a block or a switch to private after they subscribed
//! stops the room's events for them.

use aws_lambda_events::event::dynamodb::EventRecord;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use shared::domain::{
    Comment, CommentId, Connection, Follow, Message, Notification, Post, PostId, UserId,
};
use shared::events::{Event, EventBody};
use shared::fanout::Audience;
use shared::fanout::PresenceCheck;
use shared::feed::FeedTask;
use shared::store::PresenceRecord;
use shared::store::StoredConnection;

/// The principal DynamoDB names in the `userIdentity` of a TTL deletion.
const TTL_PRINCIPAL: &str = "dynamodb.amazonaws.com";

/// An event and who gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    pub event: Event,
    pub audience: Vec<Audience>,
}

/// Work a record causes besides pushes.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A connection opened: record its user online unless watchers already think so (the
    /// presence item's own stream record then announces it).
    AnnounceOnline {
        user: UserId,
        connection_id: String,
        connected_at: DateTime<Utc>,
    },
    /// A connection closed: once the grace period is over, announce the user offline if
    /// they have not reconnected.
    ScheduleOfflineCheck(PresenceCheck),
    /// TTL deleted a connection nobody disconnected: release its entry in the user's set
    /// and its room memberships, as `ws-disconnect` would have.
    ReleaseExpiredConnection(Box<StoredConnection>),
}

/// Everything one record causes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub pushes: Vec<Push>,
    pub effects: Vec<Effect>,
    /// Changes to materialized feeds, queued for the push worker with the rest of the
    /// batch's (never carried out per record).
    pub feed: Vec<FeedTask>,
}

impl Decision {
    fn push(mut self, event: Event, audience: Vec<Audience>) -> Self {
        self.pushes.push(Push { event, audience });
        self
    }

    fn effect(mut self, effect: Effect) -> Self {
        self.effects.push(effect);
        self
    }

    fn feed(mut self, task: FeedTask) -> Self {
        self.feed.push(task);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.pushes.is_empty() && self.effects.is_empty() && self.feed.is_empty()
    }
}

/// A record that cannot be understood. Retrying will not help; the record is reported as
/// failed so that, after the mapping's retries, it lands in the on-failure destination
/// for inspection instead of being silently skipped.
#[derive(Debug, thiserror::Error)]
pub enum BadRecord {
    #[error("unknown eventName {0:?}")]
    EventName(String),
    #[error("{operation} record of a {entity} has no {image} image")]
    MissingImage {
        operation: &'static str,
        entity: String,
        image: &'static str,
    },
    #[error("{entity} image does not parse: {source}")]
    Image {
        entity: String,
        #[source]
        source: shared::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Insert,
    Modify,
    Remove,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Insert => "INSERT",
            Self::Modify => "MODIFY",
            Self::Remove => "REMOVE",
        }
    }
}

/// One record with its images, ready to be read as a domain type.
struct Change<'a> {
    operation: Operation,
    entity: String,
    record: &'a EventRecord,
}

impl Change<'_> {
    fn image<T: DeserializeOwned>(&self, which: &'static str) -> Result<T, BadRecord> {
        let image = match which {
            "new" => &self.record.change.new_image,
            _ => &self.record.change.old_image,
        };
        if image.is_empty() {
            return Err(BadRecord::MissingImage {
                operation: self.operation.as_str(),
                entity: self.entity.clone(),
                image: which,
            });
        }
        serde_dynamo::from_item(image.clone()).map_err(|e| BadRecord::Image {
            entity: self.entity.clone(),
            source: e.into(),
        })
    }

    fn new_image<T: DeserializeOwned>(&self) -> Result<T, BadRecord> {
        self.image("new")
    }

    fn old_image<T: DeserializeOwned>(&self) -> Result<T, BadRecord> {
        self.image("old")
    }

    /// When the change happened, as DynamoDB stamped the record (stable across retries).
    fn time(&self) -> DateTime<Utc> {
        self.record.change.approximate_creation_date_time
    }

    fn removed_by_ttl(&self) -> bool {
        self.record.user_identity.as_ref().is_some_and(|identity| {
            identity.type_ == "Service" && identity.principal_id == TTL_PRINCIPAL
        })
    }
}

/// The `entity` attribute of the record's item (new image, else old image).
fn entity_of(record: &EventRecord) -> Option<String> {
    [&record.change.new_image, &record.change.old_image]
        .into_iter()
        .find_map(|image| match image.get("entity") {
            Some(serde_dynamo::AttributeValue::S(entity)) => Some(entity.clone()),
            _ => None,
        })
}

/// Decides what a stream record means for connected clients.
pub fn decide(record: &EventRecord) -> Result<Decision, BadRecord> {
    let operation = match record.event_name.as_str() {
        "INSERT" => Operation::Insert,
        "MODIFY" => Operation::Modify,
        "REMOVE" => Operation::Remove,
        other => return Err(BadRecord::EventName(other.to_owned())),
    };
    let Some(entity) = entity_of(record) else {
        return Ok(Decision::default());
    };
    let change = Change {
        operation,
        entity,
        record,
    };
    match change.entity.as_str() {
        "post" => post(&change),
        "notification" => notification(&change),
        "comment" => comment(&change),
        "message" => message(&change),
        "connection" => connection(&change),
        "presence" => presence(&change),
        "follow" => follow(&change),
        _ => Ok(Decision::default()),
    }
}

/// The post's room; members are checked against the visibility policy when it is sent.
fn post_room(post: &Post) -> Audience {
    Audience::PostRoom {
        post: post.id,
        author: Some(post.author_id),
        actor: None,
    }
}

fn post(change: &Change) -> Result<Decision, BadRecord> {
    let decision = Decision::default();
    match change.operation {
        Operation::Insert => {
            let post: Post = change.new_image()?;
            Ok(decision
                .push(
                    Event::post_created(&post),
                    vec![Audience::AuthorAndFollowers(post.author_id)],
                )
                .feed(FeedTask::Distribute {
                    post_id: post.id,
                    author_id: post.author_id,
                    created_at: post.created_at,
                }))
        }
        Operation::Modify => {
            let old: Post = change.old_image()?;
            let new: Post = change.new_image()?;
            let mut decision = decision;
            let content_changed = old.text != new.text
                || old.media_url != new.media_url
                || old.edited_at != new.edited_at;
            if content_changed {
                decision = decision.push(
                    Event::post_updated(&new),
                    vec![Audience::AuthorAndFollowers(new.author_id), post_room(&new)],
                );
            }
            if old.like_count != new.like_count || old.like_version != new.like_version {
                decision = decision.push(
                    Event::like_updated(&new, change.time()),
                    vec![post_room(&new)],
                );
            }
            let old_mark: CommentRemovalMark = change.old_image()?;
            let new_mark: CommentRemovalMark = change.new_image()?;
            if let Some(comment) = new_mark.last_deleted_comment {
                if old_mark.last_deleted_comment != Some(comment) {
                    decision = decision.push(
                        Event::comment_deleted(new.id, comment, change.time()),
                        vec![post_room(&new)],
                    );
                }
            }
            Ok(decision)
        }
        Operation::Remove => {
            let post: Post = change.old_image()?;
            Ok(decision
                .push(
                    Event::post_deleted(&post, change.time()),
                    vec![
                        Audience::AuthorAndFollowers(post.author_id),
                        post_room(&post),
                    ],
                )
                .feed(FeedTask::Withdraw {
                    post_id: post.id,
                    author_id: post.author_id,
                }))
        }
    }
}

/// A follow changes the follower's feed; clients learn of follows through notifications.
fn follow(change: &Change) -> Result<Decision, BadRecord> {
    let decision = Decision::default();
    match change.operation {
        Operation::Insert => {
            let follow: Follow = change.new_image()?;
            Ok(decision.feed(FeedTask::Backfill {
                viewer: follow.follower_id,
                author: follow.followee_id,
            }))
        }
        Operation::Modify => Ok(decision),
        Operation::Remove => {
            let follow: Follow = change.old_image()?;
            Ok(decision.feed(FeedTask::Prune {
                viewer: follow.follower_id,
                author: follow.followee_id,
            }))
        }
    }
}

fn notification(change: &Change) -> Result<Decision, BadRecord> {
    let decision = Decision::default();
    match change.operation {
        Operation::Insert => {
            let notification: Notification = change.new_image()?;
            Ok(decision.push(
                Event::new_notification(&notification),
                vec![Audience::Users(vec![notification.recipient_id])],
            ))
        }
        Operation::Modify => {
            let old: Notification = change.old_image()?;
            let new: Notification = change.new_image()?;
            if old.read || !new.read {
                return Ok(decision);
            }
            Ok(decision.push(
                Event::notification_read(new.id, change.time()),
                vec![Audience::Users(vec![new.recipient_id])],
            ))
        }
        Operation::Remove => Ok(decision),
    }
}

fn comment(change: &Change) -> Result<Decision, BadRecord> {
    let decision = Decision::default();
    match change.operation {
        Operation::Insert => {
            let comment: Comment = change.new_image()?;
            Ok(decision.push(
                Event::new_comment(&comment),
                vec![Audience::PostRoom {
                    post: comment.post_id,
                    author: None,
                    actor: Some(comment.author_id),
                }],
            ))
        }
        // A user's deletion is announced from the post item (its `last_deleted_comment`);
        // a post's deletion removes the comments silently (`post_deleted` covers them).
        Operation::Modify | Operation::Remove => Ok(decision),
    }
}

/// The post item's mark of the comment a user deleted last (written with the counter).
#[derive(Debug, serde::Deserialize)]
struct CommentRemovalMark {
    #[serde(default)]
    last_deleted_comment: Option<CommentId>,
}

/// Keeps only the last `like_updated` of each post among one item's decisions (in stream
/// order): a burst of likes in one batch tells each room member the latest count once,
/// instead of once per like. Records of one post are one item, so they are all here.
pub fn coalesce_like_updates<'a>(decisions: impl DoubleEndedIterator<Item = &'a mut Decision>) {
    let mut seen: std::collections::HashSet<PostId> = std::collections::HashSet::new();
    for decision in decisions.rev() {
        decision.pushes.retain(|push| match &push.event.body {
            EventBody::LikeUpdated { post_id, .. } => seen.insert(*post_id),
            _ => true,
        });
    }
}

fn message(change: &Change) -> Result<Decision, BadRecord> {
    if change.operation != Operation::Insert {
        return Ok(Decision::default());
    }
    let message: Message = change.new_image()?;
    let to_recipient = Event::message_for(&message, message.to);
    let to_sender = Event::message_for(&message, message.from);
    if to_recipient == to_sender {
        return Ok(Decision::default().push(
            to_recipient,
            vec![Audience::Users(vec![message.to, message.from])],
        ));
    }
    Ok(Decision::default()
        .push(to_recipient, vec![Audience::Users(vec![message.to])])
        .push(to_sender, vec![Audience::Users(vec![message.from])]))
}

fn connection(change: &Change) -> Result<Decision, BadRecord> {
    let decision = Decision::default();
    match change.operation {
        Operation::Insert => {
            let connection: Connection = change.new_image()?;
            Ok(decision.effect(Effect::AnnounceOnline {
                user: connection.user_id,
                connection_id: connection.connection_id,
                connected_at: connection.connected_at,
            }))
        }
        // Subscriptions bump the connection's version: nothing for anyone else.
        Operation::Modify => Ok(decision),
        Operation::Remove => {
            let connection: Connection = change.old_image()?;
            let mut decision = decision;
            if change.removed_by_ttl() {
                let image: std::collections::HashMap<
                    String,
                    aws_sdk_dynamodb::types::AttributeValue,
                > = change.record.change.old_image.clone().into();
                let stored =
                    StoredConnection::from_item(image).map_err(|source| BadRecord::Image {
                        entity: change.entity.clone(),
                        source,
                    })?;
                decision = decision.effect(Effect::ReleaseExpiredConnection(Box::new(stored)));
            }
            Ok(decision.effect(Effect::ScheduleOfflineCheck(PresenceCheck {
                user_id: connection.user_id,
                connection_id: connection.connection_id,
                disconnected_at: change.time(),
            })))
        }
    }
}

/// What watchers were last told changed: the router (a connection opened) recorded the user
/// online, or the push worker (its grace-period check found no connection left) recorded
/// them offline. Both transitions come from this one item, so they reach watchers in the
/// order they were written — never an `online` overtaking the `offline` before it, which two
/// items on two shards could do. A write that changes nothing (a retried announcement with the
/// same cause) leaves no stream record, so nothing is announced twice.
fn presence(change: &Change) -> Result<Decision, BadRecord> {
    let was_online = match change.operation {
        Operation::Insert => false,
        Operation::Modify => change.old_image::<PresenceRecord>()?.online,
        Operation::Remove => return Ok(Decision::default()),
    };
    let new: PresenceRecord = change.new_image()?;
    let event = match (was_online, new.online) {
        (false, true) => Event::user_online(new.user_id, &new.cause, new.changed_at),
        (true, false) => Event::user_offline(new.user_id, &new.cause, new.changed_at),
        _ => return Ok(Decision::default()),
    };
    Ok(Decision::default().push(event, vec![Audience::PresenceWatchers(new.user_id)]))
}

#[cfg(test)]
mod tests {
    use aws_lambda_events::event::dynamodb::UserIdentity;
    use chrono::TimeZone;
    use serde_json::{json, Value};
    use shared::domain::{
        fixture_id, new_id, Id, Like, MessageStatus, NotificationId, NotificationKind,
    };
    use uuid::Uuid;

    use super::*;

    fn time(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).single().unwrap()
    }

    fn id<T: Id>(n: u128) -> T {
        fixture_id(n)
    }

    /// The item as the stores write it: the record's fields plus `entity` (and key
    /// attributes, which the decision ignores).
    fn image<T: serde::Serialize>(record: &T, entity: &str) -> serde_dynamo::Item {
        let mut value = serde_json::to_value(record).unwrap();
        value["entity"] = json!(entity);
        value["pk"] = json!("PK");
        value["sk"] = json!("SK");
        serde_dynamo::to_item(value).unwrap()
    }

    fn record(
        event_name: &str,
        old: Option<serde_dynamo::Item>,
        new: Option<serde_dynamo::Item>,
        sequence: &str,
    ) -> EventRecord {
        let mut record = EventRecord::default();
        record.event_name = event_name.to_owned();
        record.event_id = format!("event-{sequence}");
        record.change.sequence_number = Some(sequence.to_owned());
        record.change.approximate_creation_date_time = time(100);
        if let Some(old) = old {
            record.change.old_image = old;
        }
        if let Some(new) = new {
            record.change.new_image = new;
        }
        record
    }

    fn post() -> Post {
        Post {
            id: id(10),
            author_id: id(1),
            text: "hello".into(),
            media_url: None,
            created_at: time(0),
            edited_at: None,
            like_count: 0,
            like_version: 0,
            comment_count: 0,
        }
    }

    fn kinds(decision: &Decision) -> Vec<&'static str> {
        decision
            .pushes
            .iter()
            .map(|push| push.event.kind())
            .collect()
    }

    #[test]
    fn a_new_post_goes_to_its_author_and_followers() {
        let decision = decide(&record("INSERT", None, Some(image(&post(), "post")), "1")).unwrap();
        assert_eq!(kinds(&decision), ["post_created"]);
        assert_eq!(
            decision.pushes[0].audience,
            [Audience::AuthorAndFollowers(id(1))]
        );
        assert!(decision.effects.is_empty());
        assert_eq!(
            decision.feed,
            [FeedTask::Distribute {
                post_id: post().id,
                author_id: id(1),
                created_at: post().created_at,
            }]
        );
    }

    #[test]
    fn an_edit_goes_to_followers_and_the_post_room_and_a_like_only_to_the_room() {
        let old = post();
        let edited = Post {
            text: "hello, edited".into(),
            edited_at: Some(time(30)),
            ..old.clone()
        };
        let decision = decide(&record(
            "MODIFY",
            Some(image(&old, "post")),
            Some(image(&edited, "post")),
            "2",
        ))
        .unwrap();
        assert_eq!(kinds(&decision), ["post_updated"]);
        assert_eq!(
            decision.pushes[0].audience,
            [
                Audience::AuthorAndFollowers(id(1)),
                Audience::PostRoom {
                    post: id(10),
                    author: Some(id(1)),
                    actor: None
                }
            ]
        );

        let liked = Post {
            like_count: 1,
            like_version: 1,
            ..old.clone()
        };
        let decision = decide(&record(
            "MODIFY",
            Some(image(&old, "post")),
            Some(image(&liked, "post")),
            "3",
        ))
        .unwrap();
        assert_eq!(kinds(&decision), ["like_updated"]);
        assert_eq!(
            decision.pushes[0].audience,
            [Audience::PostRoom {
                post: id(10),
                author: Some(id(1)),
                actor: None
            }]
        );
        let value = serde_json::to_value(&decision.pushes[0].event).unwrap();
        assert_eq!(
            value["data"],
            json!({"post_id": id::<PostId>(10), "like_count": 1, "version": 1})
        );

        // A comment count change is told by the comment's own record.
        let commented = Post {
            comment_count: 1,
            ..old.clone()
        };
        let decision = decide(&record(
            "MODIFY",
            Some(image(&old, "post")),
            Some(image(&commented, "post")),
            "4",
        ))
        .unwrap();
        assert!(decision.is_empty(), "{decision:?}");
    }

    #[test]
    fn a_deleted_post_is_told_to_followers_and_the_room() {
        let decision = decide(&record("REMOVE", Some(image(&post(), "post")), None, "5")).unwrap();
        assert_eq!(kinds(&decision), ["post_deleted"]);
        assert_eq!(decision.pushes[0].event.occurred_at, time(100));
        assert_eq!(decision.pushes[0].audience.len(), 2);
    }

    fn notification(read: bool) -> Notification {
        Notification {
            id: new_id(),
            recipient_id: id(1),
            kind: NotificationKind::Like,
            actor_id: id(2),
            post_id: Some(id(10)),
            comment_id: None,
            created_at: time(5),
            read,
        }
    }

    #[test]
    fn notifications_go_to_their_recipient_with_a_cursor_and_reads_are_told_once() {
        let unread = notification(false);
        let decision = decide(&record(
            "INSERT",
            None,
            Some(image(&unread, "notification")),
            "6",
        ))
        .unwrap();
        assert_eq!(kinds(&decision), ["new_notification"]);
        assert_eq!(decision.pushes[0].audience, [Audience::Users(vec![id(1)])]);
        assert_eq!(decision.pushes[0].event.cursor, Some(unread.id.as_uuid()));

        let read = Notification {
            read: true,
            ..unread.clone()
        };
        let decision = decide(&record(
            "MODIFY",
            Some(image(&unread, "notification")),
            Some(image(&read, "notification")),
            "7",
        ))
        .unwrap();
        assert_eq!(kinds(&decision), ["notification_read"]);
        let value = serde_json::to_value(&decision.pushes[0].event).unwrap();
        assert_eq!(value["data"]["notification_ids"], json!([unread.id]));

        // Already read: nothing new to tell.
        let decision = decide(&record(
            "MODIFY",
            Some(image(&read, "notification")),
            Some(image(&read, "notification")),
            "8",
        ))
        .unwrap();
        assert!(decision.is_empty());
        let decision = decide(&record(
            "REMOVE",
            Some(image(&read, "notification")),
            None,
            "9",
        ))
        .unwrap();
        assert!(decision.is_empty());
    }

    #[test]
    fn comments_go_to_the_post_room() {
        let comment = Comment {
            id: id(20),
            post_id: id(10),
            author_id: id(2),
            text: "nice".into(),
            created_at: time(3),
        };
        let added = decide(&record(
            "INSERT",
            None,
            Some(image(&comment, "comment")),
            "10",
        ))
        .unwrap();
        assert_eq!(kinds(&added), ["new_comment"]);
        assert_eq!(
            added.pushes[0].audience,
            [Audience::PostRoom {
                post: id(10),
                author: None,
                actor: Some(id(2))
            }]
        );
        // The comment's own removal says nothing: a post's deletion removes comments
        // silently, and a user's deletion is told by the post item (below).
        let removed = decide(&record(
            "REMOVE",
            Some(image(&comment, "comment")),
            None,
            "11",
        ))
        .unwrap();
        assert!(removed.is_empty(), "{removed:?}");

        let mut before = image(&post(), "post");
        before.insert(
            "comment_count".into(),
            serde_dynamo::AttributeValue::N("1".into()),
        );
        let mut after = image(&post(), "post");
        after.insert(
            "last_deleted_comment".into(),
            serde_dynamo::AttributeValue::S(comment.id.to_string()),
        );
        let deleted = decide(&record("MODIFY", Some(before), Some(after.clone()), "12")).unwrap();
        assert_eq!(kinds(&deleted), ["comment_deleted"]);
        assert_eq!(
            deleted.pushes[0].event.event_id,
            Event::comment_deleted(id(10), comment.id, time(0)).event_id
        );
        assert_eq!(
            deleted.pushes[0].audience,
            [Audience::PostRoom {
                post: id(10),
                author: Some(id(1)),
                actor: None
            }]
        );
        // A later change of the post (a like) does not repeat it.
        let mut liked = after.clone();
        liked.insert(
            "like_count".into(),
            serde_dynamo::AttributeValue::N("1".into()),
        );
        liked.insert(
            "like_version".into(),
            serde_dynamo::AttributeValue::N("1".into()),
        );
        let like = decide(&record("MODIFY", Some(after), Some(liked), "13")).unwrap();
        assert_eq!(kinds(&like), ["like_updated"]);
    }

    #[test]
    fn a_burst_of_likes_in_one_batch_tells_the_latest_count_once() {
        let post_at = |count: i64| {
            image(
                &Post {
                    like_count: count,
                    like_version: count,
                    ..post()
                },
                "post",
            )
        };
        let mut decisions: Vec<Decision> = (0..5)
            .map(|count| {
                decide(&record(
                    "MODIFY",
                    Some(post_at(count)),
                    Some(post_at(count + 1)),
                    &format!("{}", 20 + count),
                ))
                .unwrap()
            })
            .collect();
        coalesce_like_updates(decisions.iter_mut());
        let told: Vec<&Decision> = decisions.iter().filter(|d| !d.pushes.is_empty()).collect();
        assert_eq!(told.len(), 1);
        assert!(decisions[4].pushes.len() == 1, "the last one is kept");
        let value = serde_json::to_value(&decisions[4].pushes[0].event).unwrap();
        assert_eq!(value["data"]["like_count"], 5);
        assert_eq!(value["data"]["version"], 5);
    }

    fn message(status: MessageStatus) -> Message {
        Message {
            id: new_id(),
            from: id(1),
            to: id(2),
            text: "hi".into(),
            created_at: time(4),
            status,
            client_message_id: None,
        }
    }

    #[test]
    fn a_message_goes_to_recipient_and_sender_and_a_request_is_a_request_to_the_recipient() {
        let sent = message(MessageStatus::Sent);
        let decision =
            decide(&record("INSERT", None, Some(image(&sent, "message")), "12")).unwrap();
        assert_eq!(kinds(&decision), ["new_message"]);
        assert_eq!(
            decision.pushes[0].audience,
            [Audience::Users(vec![id(2), id(1)])]
        );
        assert_eq!(decision.pushes[0].event.cursor, Some(sent.id.as_uuid()));

        let requested = message(MessageStatus::Requested);
        let decision = decide(&record(
            "INSERT",
            None,
            Some(image(&requested, "message")),
            "13",
        ))
        .unwrap();
        assert_eq!(kinds(&decision), ["message_request", "new_message"]);
        assert_eq!(decision.pushes[0].audience, [Audience::Users(vec![id(2)])]);
        assert_eq!(decision.pushes[1].audience, [Audience::Users(vec![id(1)])]);
    }

    fn connection() -> Connection {
        Connection {
            connection_id: "abc123=".into(),
            user_id: id(1),
            connected_at: time(0),
            user_agent: None,
            expires_at: 1_700_010_000,
        }
    }

    #[test]
    fn connections_drive_presence_effects_and_ttl_removals_release_the_connection() {
        let opened = decide(&record(
            "INSERT",
            None,
            Some(image(&connection(), "connection")),
            "14",
        ))
        .unwrap();
        assert!(opened.pushes.is_empty());
        assert_eq!(
            opened.effects,
            [Effect::AnnounceOnline {
                user: id(1),
                connection_id: "abc123=".into(),
                connected_at: time(0),
            }]
        );

        let check = Effect::ScheduleOfflineCheck(PresenceCheck {
            user_id: id(1),
            connection_id: "abc123=".into(),
            disconnected_at: time(100),
        });
        let closed = decide(&record(
            "REMOVE",
            Some(image(&connection(), "connection")),
            None,
            "15",
        ))
        .unwrap();
        assert_eq!(closed.effects, std::slice::from_ref(&check));

        // A TTL deletion, as the Lambda event carries it.
        let mut value = serde_json::to_value(record(
            "REMOVE",
            Some(image(&connection(), "connection")),
            None,
            "16",
        ))
        .unwrap();
        value["userIdentity"] = json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"});
        let expired: EventRecord = serde_json::from_value(value).unwrap();
        let decision = decide(&expired).unwrap();
        assert_eq!(decision.effects.len(), 2);
        match &decision.effects[0] {
            Effect::ReleaseExpiredConnection(stored) => assert_eq!(stored.connection, connection()),
            other => panic!("expected a release first, got {other:?}"),
        }
        assert_eq!(decision.effects[1], check);

        // Some other service deleting it is an ordinary disconnect.
        let mut other = record(
            "REMOVE",
            Some(image(&connection(), "connection")),
            None,
            "17",
        );
        let mut identity = UserIdentity::default();
        identity.type_ = "Service".into();
        identity.principal_id = "backup.amazonaws.com".into();
        other.user_identity = Some(identity);
        assert_eq!(decide(&other).unwrap().effects, [check]);
    }

    fn presence(online: bool, cause: &str, at: i64) -> serde_dynamo::Item {
        image(
            &PresenceRecord {
                user_id: id(1),
                online,
                cause: cause.into(),
                changed_at: time(at),
            },
            "presence",
        )
    }

    #[test]
    fn both_presence_transitions_come_from_the_presence_item() {
        let online = presence(true, "connect:abc123=", 0);
        let offline = presence(false, "disconnect:abc123=", 100);
        let back_online = presence(true, "connect:def456=", 200);
        let watchers = vec![Audience::PresenceWatchers(id(1))];
        for (name, old, new, event) in [
            (
                "INSERT",
                None,
                Some(online.clone()),
                Event::user_online(id(1), "connect:abc123=", time(0)),
            ),
            (
                "MODIFY",
                Some(online.clone()),
                Some(offline.clone()),
                Event::user_offline(id(1), "disconnect:abc123=", time(100)),
            ),
            (
                "MODIFY",
                Some(offline.clone()),
                Some(back_online.clone()),
                Event::user_online(id(1), "connect:def456=", time(200)),
            ),
        ] {
            let decision = decide(&record(name, old, new, "20")).unwrap();
            assert_eq!(
                decision.pushes,
                [Push {
                    event,
                    audience: watchers.clone(),
                }],
                "{name}"
            );
            assert!(decision.effects.is_empty());
        }

        for (name, old, new) in [
            // Still online, another device's cause recorded: watchers already know.
            ("MODIFY", Some(online.clone()), Some(back_online.clone())),
            // A redelivered check rewriting the same offline state.
            ("MODIFY", Some(offline.clone()), Some(offline.clone())),
            ("INSERT", None, Some(offline.clone())),
            ("REMOVE", Some(online.clone()), None),
        ] {
            let decision = decide(&record(name, old, new, "21")).unwrap();
            assert!(decision.is_empty(), "{name}: {decision:?}");
        }

        let unreadable = image(&json!({"online": "yes"}), "presence");
        assert!(matches!(
            decide(&record("MODIFY", Some(online), Some(unreadable), "22")),
            Err(BadRecord::Image { .. })
        ));
    }

    #[test]
    fn a_follow_and_its_removal_change_the_followers_feed_only() {
        let follow = image(
            &Follow {
                follower_id: id(1),
                followee_id: id(2),
                created_at: time(5),
            },
            "follow",
        );
        let followed = decide(&record("INSERT", None, Some(follow.clone()), "30")).unwrap();
        assert!(followed.pushes.is_empty() && followed.effects.is_empty());
        assert_eq!(
            followed.feed,
            [FeedTask::Backfill {
                viewer: id(1),
                author: id(2)
            }]
        );
        let unfollowed = decide(&record("REMOVE", Some(follow), None, "31")).unwrap();
        assert!(unfollowed.pushes.is_empty() && unfollowed.effects.is_empty());
        assert_eq!(
            unfollowed.feed,
            [FeedTask::Prune {
                viewer: id(1),
                author: id(2)
            }]
        );
    }

    #[test]
    fn items_nobody_is_told_about_produce_nothing() {
        let like = Like {
            post_id: id(10),
            user_id: id(2),
            created_at: time(1),
        };
        for (entity, item) in [
            ("like", image(&like, "like")),
            (
                "refresh_token",
                image(&json!({"user_id": id::<UserId>(1)}), "refresh_token"),
            ),
            ("rate_window", image(&json!({"count": 1}), "rate_window")),
            (
                "notification_dedup",
                image(
                    &json!({"notification_id": id::<NotificationId>(3)}),
                    "notification_dedup",
                ),
            ),
            (
                "room_member",
                image(&json!({"channel": "post:x"}), "room_member"),
            ),
        ] {
            for name in ["INSERT", "MODIFY", "REMOVE"] {
                let decision =
                    decide(&record(name, Some(item.clone()), Some(item.clone()), "18")).unwrap();
                assert!(decision.is_empty(), "{entity} {name}: {decision:?}");
            }
        }
        // No entity at all (a foreign item): nothing, not an error.
        let foreign: serde_dynamo::Item =
            serde_dynamo::to_item(json!({"pk": "X", "sk": "Y"})).unwrap();
        assert!(decide(&record("INSERT", None, Some(foreign), "19"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_same_record_always_gives_the_same_event_ids() {
        let liked = Post {
            like_count: 1,
            ..post()
        };
        let records = [
            record("INSERT", None, Some(image(&post(), "post")), "20"),
            record(
                "MODIFY",
                Some(image(&post(), "post")),
                Some(image(&liked, "post")),
                "21",
            ),
            record("REMOVE", Some(image(&post(), "post")), None, "22"),
            record(
                "INSERT",
                None,
                Some(image(&notification(false), "notification")),
                "23",
            ),
            record(
                "INSERT",
                None,
                Some(image(&message(MessageStatus::Requested), "message")),
                "24",
            ),
        ];
        for record in &records {
            let first: Vec<Uuid> = decide(record)
                .unwrap()
                .pushes
                .iter()
                .map(|p| p.event.event_id)
                .collect();
            let second: Vec<Uuid> = decide(record)
                .unwrap()
                .pushes
                .iter()
                .map(|p| p.event.event_id)
                .collect();
            assert!(!first.is_empty());
            assert_eq!(first, second, "{}", record.event_name);
        }
        // The same like count reached by a later change (another version) is another event.
        let liked_again = Post {
            like_version: liked.like_version + 2,
            ..liked.clone()
        };
        let later = record(
            "MODIFY",
            Some(image(&post(), "post")),
            Some(image(&liked_again, "post")),
            "99",
        );
        assert_ne!(
            decide(&records[1]).unwrap().pushes[0].event.event_id,
            decide(&later).unwrap().pushes[0].event.event_id
        );
    }

    #[test]
    fn unreadable_records_are_errors() {
        assert!(matches!(
            decide(&record("UPSERT", None, Some(image(&post(), "post")), "30")),
            Err(BadRecord::EventName(_))
        ));
        // An insert whose new image lacks the post's fields.
        let broken: serde_dynamo::Item =
            serde_dynamo::to_item(json!({"entity": "post", "id": "not-a-uuid"})).unwrap();
        assert!(matches!(
            decide(&record("INSERT", None, Some(broken), "31")),
            Err(BadRecord::Image { .. })
        ));
        // A modify that lost its old image (e.g. a KEYS_ONLY stream).
        let value: Value =
            serde_json::to_value(record("MODIFY", None, Some(image(&post(), "post")), "32"))
                .unwrap();
        let keys_only: EventRecord = serde_json::from_value(value).unwrap();
        assert!(matches!(
            decide(&keys_only),
            Err(BadRecord::MissingImage { .. })
        ));
    }
}
