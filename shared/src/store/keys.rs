//! Every key of the single-table design, built in one place.
//!
//! `docs/data-model.md` is the human-readable form of this module: each function here is
//! named after the item or index entry it addresses. Nothing outside this module formats
//! a `pk`, `sk`, `gsi1pk`, `gsi1sk`, `gsi2pk` or `gsi2sk`.
//!
//! Ids are UUIDv7 strings, so a sort key that ends in an id sorts by creation time.

use uuid::Uuid;

use crate::domain::{CommentId, MessageId, NotificationId, PostId, UserId};

/// Name of GSI 1 (inverse relations, timelines, username prefix search, conversations by recency).
pub const GSI1: &str = "gsi1";
/// Name of GSI 2 (sparse: unread notifications only).
pub(crate) const GSI2: &str = "gsi2";
/// Name of GSI 3 (keys only: the followers of a user, read by fan-out).
pub(crate) const GSI3: &str = "gsi3";

/// A primary key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    fn new(pk: String, sk: impl Into<String>) -> Self {
        Self { pk, sk: sk.into() }
    }
}

/// An index entry (`gsi1pk`/`gsi1sk` or `gsi2pk`/`gsi2sk`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexKey {
    pub pk: String,
    pub sk: String,
}

pub fn user_pk(user: UserId) -> String {
    format!("USER#{user}")
}

fn post_pk(post: PostId) -> String {
    format!("POST#{post}")
}

// ---- users -------------------------------------------------------------------------------

pub const PROFILE: &str = "PROFILE";
pub const CREDENTIALS: &str = "CREDENTIALS";

/// The user's profile and counters.
pub fn user_profile(user: UserId) -> Key {
    Key::new(user_pk(user), PROFILE)
}

/// The user's password hash, kept apart so profile reads never carry it.
pub(crate) fn user_credentials(user: UserId) -> Key {
    Key::new(user_pk(user), CREDENTIALS)
}

/// Uniqueness guard and login lookup: one item per lower-cased username.
pub fn username(username_lower: &str) -> Key {
    Key::new(format!("USERNAME#{username_lower}"), "USERNAME")
}

/// One username search partition (GSI 1): the first character of the lower-cased
/// usernames it holds and a hash shard of their user ids (see
/// [`USERNAME_SEARCH_SHARDS`]). A prefix always starts with that character, so a search
/// reads the shards of one character and nothing else.
pub fn username_search_partition(first: char, shard: u32) -> String {
    format!("UNAME#{first}#{shard}")
}

/// Index entry of `user`'s search item ([`user_search`], never the profile) in the
/// username search: sorted by lower-cased username, then id (see
/// `username_search_sort_key`).
pub fn username_search_entry(user: UserId, username_lower: &str) -> IndexKey {
    let first = username_lower.chars().next().unwrap_or('_');
    IndexKey {
        pk: username_search_partition(first, username_search_shard(user)),
        sk: username_search_sort_key(username_lower, user),
    }
}

// ---- follows, follow requests, blocks ------------------------------------------------------

pub const FOLLOWING_PREFIX: &str = "FOLLOWING#";
pub const FOLLOWER_PREFIX: &str = "FOLLOWER#";
pub const FOLLOW_REQUEST_PREFIX: &str = "FOLLOWREQ#";
pub const BLOCKING_PREFIX: &str = "BLOCKING#";
pub const BLOCKED_BY_PREFIX: &str = "BLOCKEDBY#";

/// `follower` follows `followee`: lives in the follower's partition.
pub fn follow(follower: UserId, followee: UserId) -> Key {
    Key::new(user_pk(follower), format!("{FOLLOWING_PREFIX}{followee}"))
}

/// Inverse entry of [`follow`] (GSI 1): the followers of `followee`.
pub fn follower_entry(follower: UserId, followee: UserId) -> IndexKey {
    IndexKey {
        pk: user_pk(followee),
        sk: format!("{FOLLOWER_PREFIX}{follower}"),
    }
}

/// Fan-out entry of [`follow`] (GSI 3, keys only): `FOLLOWERS#{followee}` / `{follower}`.
/// A keys-only entry is about 170 bytes against ~320 for the GSI 1 entry, so a post's
/// audience read costs half the read units and a 1 MB page holds ~5,000 followers.
pub fn follower_fanout_entry(follower: UserId, followee: UserId) -> IndexKey {
    IndexKey {
        pk: follower_fanout_partition(followee),
        sk: follower.to_string(),
    }
}

/// GSI 3 partition of `followee`'s followers.
pub fn follower_fanout_partition(followee: UserId) -> String {
    format!("FOLLOWERS#{followee}")
}

/// A pending request from `requester` to the private account `target`; lives in the
/// target's partition, which is where the target lists them.
pub fn follow_request(target: UserId, requester: UserId) -> Key {
    Key::new(
        user_pk(target),
        format!("{FOLLOW_REQUEST_PREFIX}{requester}"),
    )
}

/// `blocker` blocks `blocked`: lives in the blocker's partition.
pub fn block(blocker: UserId, blocked: UserId) -> Key {
    Key::new(user_pk(blocker), format!("{BLOCKING_PREFIX}{blocked}"))
}

/// Inverse entry of [`block`] (GSI 1): who blocks `blocked`.
pub fn blocked_by_entry(blocker: UserId, blocked: UserId) -> IndexKey {
    IndexKey {
        pk: user_pk(blocked),
        sk: format!("{BLOCKED_BY_PREFIX}{blocker}"),
    }
}

/// GSI 1 prefix of follow-request recency entries (see [`follow_request_recency_entry`]).
pub const FOLLOW_REQUEST_RECENCY_PREFIX: &str = "FOLLOWREQAT#";

/// Recency entry of a pending follow request (GSI 1): the sort key of
/// [`follow_request`] orders by requester id, so the target's "oldest first" list reads
/// this entry, keyed by a time-ordered id minted when the request was made.
pub fn follow_request_recency_entry(target: UserId, request: Uuid) -> IndexKey {
    IndexKey {
        pk: user_pk(target),
        sk: format!("{FOLLOW_REQUEST_RECENCY_PREFIX}{request}"),
    }
}

// ---- posts, likes, comments ----------------------------------------------------------------

pub const POST: &str = "POST";
pub const POST_PREFIX: &str = "POST#";
pub const LIKE_PREFIX: &str = "LIKE#";
pub const COMMENT_PREFIX: &str = "COMMENT#";

pub fn post(post: PostId) -> Key {
    Key::new(post_pk(post), POST)
}

/// Timeline entry of a post (GSI 1): the author's posts, newest first by id.
pub fn author_timeline_entry(author: UserId, post: PostId) -> IndexKey {
    IndexKey {
        pk: user_pk(author),
        sk: format!("{POST_PREFIX}{post}"),
    }
}

/// Sort-key bound: timeline entries strictly older than `post`.
pub fn timeline_before(post: PostId) -> String {
    format!("{POST_PREFIX}{post}")
}

pub fn like(post: PostId, user: UserId) -> Key {
    Key::new(post_pk(post), format!("{LIKE_PREFIX}{user}"))
}

pub fn comment(post: PostId, comment: CommentId) -> Key {
    Key::new(post_pk(post), format!("{COMMENT_PREFIX}{comment}"))
}

/// Partition holding a post, its likes and its comments.
pub fn post_partition(post: PostId) -> String {
    post_pk(post)
}

// ---- home feed -----------------------------------------------------------------------------

/// Sort-key prefix of a feed entry (a post in a viewer's materialized feed).
pub const FEED_ENTRY_PREFIX: &str = "P#";
/// Sort-key prefix of a large-followee marker (an author whose posts are merged at read).
pub const LARGE_FOLLOWEE_PREFIX: &str = "L#";

/// Partition of `viewer`'s materialized home feed: entries and large-followee markers.
pub fn feed_partition(viewer: UserId) -> String {
    format!("FEED#{viewer}")
}

/// `post` in `viewer`'s feed. Post ids are UUIDv7, so entries sort by post time.
pub fn feed_entry(viewer: UserId, post: PostId) -> Key {
    Key::new(feed_partition(viewer), feed_entry_sort_key(post))
}

/// Sort key of a feed entry; also the bound of "entries older (or newer) than `post`".
pub(crate) fn feed_entry_sort_key(post: PostId) -> String {
    feed_position_sort_key(post.as_uuid())
}

/// The bound of "entries newer than `position`", a time-ordered UUID that need not be a
/// post's (a replay cursor).
pub(crate) fn feed_position_sort_key(position: Uuid) -> String {
    format!("{FEED_ENTRY_PREFIX}{position}")
}

/// `viewer` follows `author`, whose posts are not materialized (merged at read time).
pub fn large_followee(viewer: UserId, author: UserId) -> Key {
    Key::new(
        feed_partition(viewer),
        format!("{LARGE_FOLLOWEE_PREFIX}{author}"),
    )
}

// ---- operations ----------------------------------------------------------------------------

/// Progress of an operator job (`ripple-admin`), so an interrupted run resumes.
pub fn admin_checkpoint(job: &str) -> Key {
    Key::new(format!("ADMIN#{job}"), "CHECKPOINT")
}

// ---- conversations and messages ------------------------------------------------------------

pub const MESSAGE_PREFIX: &str = "MSG#";
pub const CONVERSATION_PREFIX: &str = "CONV#";
pub const CONVERSATION_RECENCY_PREFIX: &str = "CONVAT#";
pub const MESSAGE_REQUEST_PREFIX: &str = "MSGREQ#";
pub(crate) const CLIENT_MESSAGE_PREFIX: &str = "CLIENTMSG#";

/// The partition of the thread between two users; the same whichever side asks.
pub fn thread_partition(a: UserId, b: UserId) -> String {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    format!("THREAD#{low}#{high}")
}

pub fn message(a: UserId, b: UserId, message: MessageId) -> Key {
    Key::new(thread_partition(a, b), format!("{MESSAGE_PREFIX}{message}"))
}

/// Idempotency record of a client-supplied message id (a retry finds the stored message).
pub fn client_message(sender: UserId, recipient: UserId, client_message_id: &str) -> Key {
    Key::new(
        thread_partition(sender, recipient),
        format!("{CLIENT_MESSAGE_PREFIX}{sender}#{client_message_id}"),
    )
}

/// `owner`'s view of the thread with `other`: last message, unread count, state.
pub fn conversation(owner: UserId, other: UserId) -> Key {
    Key::new(user_pk(owner), format!("{CONVERSATION_PREFIX}{other}"))
}

/// Recency entry of a conversation (GSI 1), rewritten with each new message so the
/// owner's conversations list newest first.
pub fn conversation_recency_entry(owner: UserId, last_message: MessageId) -> IndexKey {
    IndexKey {
        pk: user_pk(owner),
        sk: format!("{CONVERSATION_RECENCY_PREFIX}{last_message}"),
    }
}

/// A pending message request from `from`, in the recipient's partition.
pub fn message_request(recipient: UserId, from: UserId) -> Key {
    Key::new(
        user_pk(recipient),
        format!("{MESSAGE_REQUEST_PREFIX}{from}"),
    )
}

/// Sort-key prefix of every idempotency record `sender` has in a thread (see
/// [`client_message`]); rejecting a request deletes them.
pub fn client_message_prefix(sender: UserId) -> String {
    format!("{CLIENT_MESSAGE_PREFIX}{sender}#")
}

/// Notification dedup key of a message request: only the first request message of a
/// thread notifies the recipient (see [`notification_dedup`]).
pub(crate) fn message_request_dedup_key(from: UserId) -> String {
    format!("message_request#{from}")
}

// ---- notifications ---------------------------------------------------------------------------

/// Notification dedup key of a like: one like notification per actor per post, however often
/// they like and unlike.
pub(crate) fn like_dedup_key(post: PostId, actor: UserId) -> String {
    format!("like#{post}#{actor}")
}

/// Notification dedup key of a follow: follow/unfollow/follow notifies once.
pub(crate) fn follow_dedup_key(actor: UserId) -> String {
    format!("follow#{actor}")
}

/// Notification dedup key of a follow request: request/cancel/request notifies once.
pub(crate) fn follow_request_dedup_key(actor: UserId) -> String {
    format!("follow_request#{actor}")
}

pub const NOTIFICATION_PREFIX: &str = "NOTIF#";
pub(crate) const NOTIFICATION_STATE: &str = "NOTIFSTATE";
pub(crate) const NOTIFICATION_DEDUP_PREFIX: &str = "NOTIFKEY#";

pub fn notification(recipient: UserId, notification: NotificationId) -> Key {
    Key::new(
        user_pk(recipient),
        format!("{NOTIFICATION_PREFIX}{notification}"),
    )
}

/// The recipient's unread counter.
pub fn notification_state(recipient: UserId) -> Key {
    Key::new(user_pk(recipient), NOTIFICATION_STATE)
}

/// Sparse unread index entry (GSI 2); removed when the notification is read.
pub fn unread_notification_entry(recipient: UserId, notification: NotificationId) -> IndexKey {
    IndexKey {
        pk: format!("UNREAD#{recipient}"),
        sk: format!("{NOTIFICATION_PREFIX}{notification}"),
    }
}

pub fn unread_partition(recipient: UserId) -> String {
    format!("UNREAD#{recipient}")
}

/// Marker that makes a notification at-most-once for its cause (e.g. one like
/// notification per actor per post, however often they like and unlike).
pub fn notification_dedup(recipient: UserId, dedup_key: &str) -> Key {
    Key::new(
        user_pk(recipient),
        format!("{NOTIFICATION_DEDUP_PREFIX}{dedup_key}"),
    )
}

// ---- auth ---------------------------------------------------------------------------------

pub const TOKEN_FAMILY_PREFIX: &str = "TOKENFAMILY#";

/// A refresh token, addressed by the SHA-256 of its secret (the secret is never stored).
pub fn refresh_token(token_hash_hex: &str) -> Key {
    Key::new(format!("TOKEN#{token_hash_hex}"), "TOKEN")
}

/// A refresh-token family (one login session); revoking it kills every rotation of it.
pub fn token_family(user: UserId, family: Uuid) -> Key {
    Key::new(user_pk(user), format!("{TOKEN_FAMILY_PREFIX}{family}"))
}

// ---- realtime -------------------------------------------------------------------------------

pub const CONNECTIONS: &str = "CONNECTIONS";
pub(crate) const ROOM_MEMBER_PREFIX: &str = "CONN#";

pub fn connection(connection_id: &str) -> Key {
    Key::new(format!("CONN#{connection_id}"), "CONN")
}

/// Per-user set of open connection ids: the connections of 100 users are one BatchGetItem.
pub fn user_connections(user: UserId) -> Key {
    Key::new(user_pk(user), CONNECTIONS)
}

/// Partitions of the online-users index. Writers and readers must agree, so this is a
/// constant of the deployment, not configuration: each shard takes ~1,000 writes/s (one per
/// first connection or offline check), and a fan-out reads every shard concurrently.
pub const ONLINE_INDEX_SHARDS: u32 = 4;

/// Sort-key prefix of online-index entries (the user partition's prefix, for readability).
pub const ONLINE_ENTRY_PREFIX: &str = "USER#";

/// The online-index shard of `user`: the low bits of the id, which are random in UUIDv4 and
/// UUIDv7 alike, so users spread evenly.
pub fn online_shard(user: UserId) -> u32 {
    // Truncation is the point: only the (random) low bits matter.
    (user.as_uuid().as_u128() as u64 % u64::from(ONLINE_INDEX_SHARDS)) as u32
}

/// One shard of the online-users index.
pub fn online_shard_partition(shard: u32) -> String {
    format!("ONLINE#{shard}")
}

/// `user`'s entry in the online-users index: present while the user has a connection
/// (written with the connection, removed by the offline check, TTL as a backstop).
pub fn online_entry(user: UserId) -> Key {
    Key::new(
        online_shard_partition(online_shard(user)),
        format!("{ONLINE_ENTRY_PREFIX}{user}"),
    )
}

/// Sort key of [`presence`].
pub const PRESENCE: &str = "PRESENCE";

/// The presence last announced for a user: the push tier debounces online/offline with it.
pub fn presence(user: UserId) -> Key {
    Key::new(user_pk(user), PRESENCE)
}

pub(crate) fn room_partition(channel: &str) -> String {
    format!("ROOM#{channel}")
}

pub fn room_member(channel: &str, connection_id: &str) -> Key {
    Key::new(
        room_partition(channel),
        format!("{ROOM_MEMBER_PREFIX}{connection_id}"),
    )
}

/// Sort key of [`delivery_marker`].
pub const PUSHED: &str = "PUSHED";

/// Marks an event as delivered to its whole audience by the function that wrote its source
/// (the writer push): the stream router skips events that have one. Expires after an hour.
pub fn delivery_marker(event_id: Uuid) -> Key {
    Key::new(format!("PUSHED#{event_id}"), PUSHED)
}

// ---- rate limits ----------------------------------------------------------------------------

/// Counter of `action`s by `user` in the window starting at `window_start` (epoch seconds).
pub fn rate_window(user: UserId, action: &str, window_start: i64) -> Key {
    Key::new(format!("RATE#{user}#{action}#{window_start}"), "RATE")
}

/// Failures and lockout of `subject` (`user:{name}` or `ip:{address}`) at a credential
/// `door` (`login`, `register`, `refresh`).
pub fn lockout(door: &str, subject: &str) -> Key {
    Key::new(format!("LOCK#{door}#{subject}"), "LOCK")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sort-key prefixes of the lists kept in a user's partition: a fixed item of that
    /// partition must start with none of them, or a list query would return it.
    pub(super) const USER_PARTITION_PREFIXES: [&str; 8] = [
        FOLLOWING_PREFIX,
        FOLLOW_REQUEST_PREFIX,
        BLOCKING_PREFIX,
        CONVERSATION_PREFIX,
        MESSAGE_REQUEST_PREFIX,
        NOTIFICATION_PREFIX,
        NOTIFICATION_DEDUP_PREFIX,
        TOKEN_FAMILY_PREFIX,
    ];

    use crate::domain::fixture_id;

    fn id(n: u128) -> UserId {
        UserId::from_u128(n)
    }

    #[test]
    fn thread_partition_is_symmetric() {
        assert_eq!(
            thread_partition(id(1), id(2)),
            thread_partition(id(2), id(1))
        );
        assert_ne!(
            thread_partition(id(1), id(2)),
            thread_partition(id(1), id(3))
        );
        assert_eq!(
            message(id(1), id(2), fixture_id(9)).pk,
            message(id(2), id(1), fixture_id(9)).pk
        );
    }

    #[test]
    fn relation_keys_and_their_inverse_entries_point_at_each_other() {
        let follow = follow(id(1), id(2));
        assert_eq!(follow.pk, user_pk(id(1)));
        assert!(follow.sk.ends_with(&id(2).to_string()));
        let inverse = follower_entry(id(1), id(2));
        assert_eq!(inverse.pk, user_pk(id(2)));
        assert!(inverse.sk.starts_with(FOLLOWER_PREFIX));
        assert!(inverse.sk.ends_with(&id(1).to_string()));

        let blocked = blocked_by_entry(id(1), id(2));
        assert_eq!(blocked.pk, user_pk(id(2)));
        assert_eq!(block(id(1), id(2)).pk, user_pk(id(1)));
    }

    #[test]
    fn user_partition_items_never_collide() {
        let user = id(7);
        let sks = [
            user_profile(user).sk,
            user_credentials(user).sk,
            follow(user, id(8)).sk,
            follow_request(user, id(8)).sk,
            block(user, id(8)).sk,
            conversation(user, id(8)).sk,
            message_request(user, id(8)).sk,
            notification(user, fixture_id(8)).sk,
            notification_state(user).sk,
            notification_dedup(user, "like#x").sk,
            token_family(user, Uuid::from_u128(8)).sk,
            user_connections(user).sk,
        ];
        let unique: std::collections::HashSet<_> = sks.iter().collect();
        assert_eq!(unique.len(), sks.len(), "{sks:?}");
        // Prefix queries must not pick up a neighbour: no prefix is a prefix of another.
        let prefixes = [
            FOLLOWING_PREFIX,
            FOLLOW_REQUEST_PREFIX,
            BLOCKING_PREFIX,
            CONVERSATION_PREFIX,
            MESSAGE_REQUEST_PREFIX,
            NOTIFICATION_PREFIX,
            NOTIFICATION_DEDUP_PREFIX,
            TOKEN_FAMILY_PREFIX,
        ];
        for a in prefixes {
            for b in prefixes {
                if a != b {
                    assert!(!b.starts_with(a), "{a} is a prefix of {b}");
                }
            }
        }
    }

    #[test]
    fn gsi1_prefixes_in_a_user_partition_are_distinct() {
        let prefixes = [
            FOLLOWER_PREFIX,
            BLOCKED_BY_PREFIX,
            POST_PREFIX,
            CONVERSATION_RECENCY_PREFIX,
        ];
        for a in prefixes {
            for b in prefixes {
                if a != b {
                    assert!(!b.starts_with(a), "{a} is a prefix of {b}");
                }
            }
        }
    }

    #[test]
    fn username_search_is_sharded_by_first_character_and_id() {
        assert_eq!(username_search_partition('a', 3), "UNAME#a#3");
        let bob = username_search_entry(id(6), "bob");
        assert_eq!(bob.pk, format!("UNAME#b#{}", username_search_shard(id(6))));
        assert_eq!(bob.sk, format!("bob#{}", id(6)));
        assert_eq!(username("alice").pk, "USERNAME#alice");
    }

    #[test]
    fn timeline_sort_keys_order_by_post_id() {
        let older = PostId::new();
        let newer = PostId::new();
        assert!(author_timeline_entry(id(1), older).sk < author_timeline_entry(id(1), newer).sk);
        assert_eq!(
            timeline_before(newer),
            author_timeline_entry(id(1), newer).sk
        );
    }

    #[test]
    fn message_and_room_keys() {
        assert!(client_message(id(1), id(2), "abc")
            .sk
            .contains(&id(1).to_string()));
        assert_eq!(room_member("post:x", "c1=").pk, "ROOM#post:x");
        assert_eq!(connection("c1=").pk, "CONN#c1=");
        assert_eq!(
            unread_notification_entry(id(3), fixture_id(4)).pk,
            unread_partition(id(3))
        );
        assert_eq!(
            rate_window(id(1), "post", 60).pk,
            format!("RATE#{}#post#60", id(1))
        );
    }

    #[test]
    fn follow_request_recency_entries_sort_by_request_and_never_collide() {
        let older = follow_request_recency_entry(id(1), Uuid::now_v7());
        let newer = follow_request_recency_entry(id(1), Uuid::now_v7());
        assert_eq!(older.pk, user_pk(id(1)));
        assert!(older.sk < newer.sk);
        let prefixes = [
            FOLLOW_REQUEST_RECENCY_PREFIX,
            FOLLOWER_PREFIX,
            BLOCKED_BY_PREFIX,
            POST_PREFIX,
            CONVERSATION_RECENCY_PREFIX,
        ];
        for a in prefixes {
            for b in prefixes {
                if a != b {
                    assert!(!b.starts_with(a), "{a} is a prefix of {b}");
                }
            }
        }
    }

    #[test]
    fn client_message_records_of_a_sender_share_a_prefix_no_other_sender_matches() {
        let (alice, bob) = (id(1), id(2));
        let record = client_message(alice, bob, "c-1");
        assert!(record.sk.starts_with(&client_message_prefix(alice)));
        assert!(!record.sk.starts_with(&client_message_prefix(bob)));
        assert!(!client_message_prefix(alice).starts_with(MESSAGE_PREFIX));
        assert_ne!(
            message_request_dedup_key(alice),
            message_request_dedup_key(bob)
        );
    }

    #[test]
    fn presence_lives_in_the_user_partition_apart_from_every_other_item() {
        let user = id(7);
        assert_eq!(presence(user).pk, user_pk(user));
        for other in [
            user_profile(user).sk,
            user_credentials(user).sk,
            notification_state(user).sk,
            user_connections(user).sk,
        ] {
            assert_ne!(presence(user).sk, other);
        }
        for prefix in USER_PARTITION_PREFIXES {
            assert!(!PRESENCE.starts_with(prefix), "{prefix}");
        }
    }
}

// ---- username search -------------------------------------------------------------------------
//
// Each user has a small search item next to the profile, `USER#{user}` / `SEARCH`, that alone
// carries the username search's GSI 1 entry. The profile carries none, so the counter updates
// of every follow and post write no index entry.

/// Sort key of [`user_search`].
pub const USER_SEARCH: &str = "SEARCH";

/// Hash shards of each first character's search partition. Writers and readers must agree,
/// so this is a constant of the deployment, not configuration: a search queries every shard
/// of its first character concurrently, so this is the number of requests per search page.
pub const USERNAME_SEARCH_SHARDS: u32 = 4;

/// What a username search needs of `user` (id, username, display name), apart from the
/// profile and its counters.
pub fn user_search(user: UserId) -> Key {
    Key::new(user_pk(user), USER_SEARCH)
}

/// The search shard of `user`: the low bits of the id, which are random in UUIDv4 and
/// UUIDv7 alike, so users of one first character spread evenly over the shards.
pub fn username_search_shard(user: UserId) -> u32 {
    // Truncation is the point: only the (random) low bits matter.
    (user.as_uuid().as_u128() as u64 % u64::from(USERNAME_SEARCH_SHARDS)) as u32
}

/// Every search partition a prefix search reads (all shards of its first character).
pub(crate) fn username_search_partitions(prefix_lower: &str) -> Vec<String> {
    let first = prefix_lower.chars().next().unwrap_or('_');
    (0..USERNAME_SEARCH_SHARDS)
        .map(|shard| username_search_partition(first, shard))
        .collect()
}

/// Sort key of a search entry: `{username_lower}#{user}`. `#` sorts below every character a
/// username may hold (`[a-z0-9_]`), so sort-key order is (lower-cased username, id) order.
pub(crate) fn username_search_sort_key(username_lower: &str, user: UserId) -> String {
    format!("{username_lower}#{user}")
}

/// Upper bound (inclusive) of the sort keys of usernames starting with `prefix_lower`:
/// every character of a sort key (`[a-z0-9_#-]`) sorts below `~`, so `{prefix}~` is above
/// every key with that prefix and below every greater one.
pub(crate) fn username_search_upper_bound(prefix_lower: &str) -> String {
    format!("{prefix_lower}~")
}

#[cfg(test)]
mod username_search_tests {
    use super::*;

    #[test]
    fn the_search_item_lives_in_the_user_partition_apart_from_every_other_item() {
        let user = UserId::from_u128(7);
        assert_eq!(user_search(user).pk, user_pk(user));
        for sk in [
            user_profile(user).sk,
            user_credentials(user).sk,
            notification_state(user).sk,
            user_connections(user).sk,
            presence(user).sk,
        ] {
            assert_ne!(USER_SEARCH, sk);
        }
        for prefix in tests::USER_PARTITION_PREFIXES {
            assert!(!USER_SEARCH.starts_with(prefix), "{prefix}");
        }
        // Search partitions are apart from every user and username partition.
        let entry = username_search_entry(user, "bob");
        assert!(!entry.pk.starts_with("USER#") && entry.pk != username("bob").pk);
    }

    #[test]
    fn shards_spread_ids_and_a_prefix_reads_every_shard_of_its_first_character() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(username_search_shard(UserId::new()));
        }
        assert_eq!(seen.len(), USERNAME_SEARCH_SHARDS as usize);
        let partitions = username_search_partitions("sam");
        assert_eq!(partitions.len(), USERNAME_SEARCH_SHARDS as usize);
        for shard in 0..USERNAME_SEARCH_SHARDS {
            let user = (1u128..)
                .map(UserId::from_u128)
                .find(|id| username_search_shard(*id) == shard)
                .unwrap();
            assert!(partitions.contains(&username_search_entry(user, "samuel").pk));
        }
    }

    #[test]
    fn sort_keys_order_by_username_then_id_within_the_prefix_bounds() {
        let (low, high) = (
            UserId::from_u128(1),
            UserId::from_uuid(Uuid::max()).unwrap(),
        );
        let ordered = [
            username_search_sort_key("sam", low),
            username_search_sort_key("sam", high),
            username_search_sort_key("sam0", low),
            username_search_sort_key("sam_", low),
            username_search_sort_key("sama", low),
            username_search_sort_key("samz_zz", high),
        ];
        assert!(ordered.windows(2).all(|w| w[0] < w[1]), "{ordered:?}");
        let bound = username_search_upper_bound("sam");
        assert!(ordered.iter().all(|sk| sk.as_str() > "sam" && *sk < bound));
        assert!(username_search_sort_key("san", low) > bound);
        assert!(username_search_sort_key("sa", high).as_str() < "sam");
    }
}
