//! The one visibility policy: may a user see a thing. Every door through which an object or
//! an event reaches a user asks here; no handler decides on its own.
//!
//! Two relations decide everything: a **block** (either way) hides each user's things from
//! the other completely, and a **private account** shows its content only to itself and its
//! approved followers.
//!
//! | what | the viewer sees it when | otherwise | asked by |
//! |---|---|---|---|
//! | a profile | no block either way | 404 | `GET /users/{id}`; search and user lists leave it out |
//! | a user's lists (posts, followers, following) | no block; private: the owner and approved followers | 404 behind a block, 403 for a private account (the profile says it is private) | `GET /users/{id}/posts`, `…/followers`, `…/following` |
//! | a post, on every verb (read, like, unlike, comment, comment list, edit, delete, subscribe) | its author is visible as above | **404**, never 403: a hidden post is not revealed to exist | [`post`]; edit/delete: [`hidden_post_error`] |
//! | a comment | its post is visible, and no block either way with the comment's author | left out of the list | [`hide_blocked`] in `GET /posts/{id}/comments` |
//! | a `post:{id}` room event | **at send time**, the member may see the post, and for an event a user caused (`new_comment`) no block with that user | not pushed; a block also evicts the members ([`leave_rooms_of`]) | [`RoomScope`] in the fan-out resolver |
//! | typing | DM peers with no block either way (and an accepted thread with a private recipient) | 403, as sending a message | `ws-message` typing |
//! | presence | mutual follows, presence shown, no block | 404 behind a block, 403 otherwise; not pushed | `subscribe presence:{id}`, presence audiences |
//! | a notification or a message (lists, `resume`, `GET /events`) | no block either way with its actor or sender | left out | [`hide_blocked`] in the lists and `shared::replay` |
//! | a feed entry | its author is visible | left out | the feed reader |
//!
//! Switching an account to private takes effect on the next event: room recipients are
//! checked against the author's profile as it is when the event is sent.

use std::collections::HashSet;

use crate::domain::Subscription;
use crate::domain::{Post, PostId, Relationship, User, UserId};
use crate::error::{Error, Result};
use crate::events::Channel;
use crate::store::connections::StoredConnection;
use crate::store::DynamoStore;

/// Whether `viewer` may see `author`'s profile-bound content.
#[derive(Debug, Clone, PartialEq)]
pub enum Visibility {
    /// May see; carries the author.
    Visible(User),
    /// A private account the viewer does not follow.
    Private(User),
    /// The author does not exist, or a block stands between them.
    Hidden,
}

impl Visibility {
    /// The author if visible; `Forbidden` for a private account (lists: the profile already
    /// says the account is private), `NotFound` when hidden.
    pub fn require_visible(self, what: &str) -> Result<User> {
        match self {
            Self::Visible(user) => Ok(user),
            Self::Private(_) => Err(Error::forbidden(format!(
                "{what} belongs to a private account you do not follow"
            ))),
            Self::Hidden => Err(Error::not_found(format!("{what} not found"))),
        }
    }
}

/// Whether a block stands between the two users of `relationship`, either way: then each
/// user's things are hidden from the other.
pub fn blocked_either_way(relationship: &Relationship) -> bool {
    relationship.blocking || relationship.blocked_by
}

/// How `viewer` sees `author`: blocks hide everything both ways; a private account's content
/// is for the account itself and its approved followers.
pub async fn of_author(store: &DynamoStore, viewer: UserId, author: UserId) -> Result<Visibility> {
    if viewer == author {
        return Ok(match store.get_user(author).await? {
            Some(user) => Visibility::Visible(user),
            None => Visibility::Hidden,
        });
    }
    let (user, relationship) =
        futures::try_join!(store.get_user(author), store.relationship(viewer, author))?;
    let Some(user) = user else {
        return Ok(Visibility::Hidden);
    };
    if blocked_either_way(&relationship) {
        return Ok(Visibility::Hidden);
    }
    if user.is_private && !relationship.following {
        return Ok(Visibility::Private(user));
    }
    Ok(Visibility::Visible(user))
}

/// The post and its author if `viewer` may see it; otherwise `NotFound`, the same answer as
/// for a post that does not exist.
pub async fn post(store: &DynamoStore, viewer: UserId, post_id: PostId) -> Result<(Post, User)> {
    let post = store.get_post(post_id).await?.ok_or_else(post_not_found)?;
    match of_author(store, viewer, post.author_id).await? {
        Visibility::Visible(author) => Ok((post, author)),
        Visibility::Private(_) | Visibility::Hidden => Err(post_not_found()),
    }
}

/// The answer for a post that is missing or hidden.
pub fn post_not_found() -> Error {
    Error::not_found("post not found")
}

/// Turns the refusal of a write on a post (edit, delete: only its author may) into the answer
/// the caller may have: 404 when the post is hidden from them, the refusal itself when they
/// can see the post. Asked only on the refusal path, so the author's writes read nothing more.
pub async fn hidden_post_error(
    store: &DynamoStore,
    viewer: UserId,
    post_id: PostId,
    refusal: Error,
) -> Error {
    match post(store, viewer, post_id).await {
        Ok(_) => refusal,
        Err(hidden @ Error::NotFound(_)) => hidden,
        Err(other) => other,
    }
}

/// Keeps the items whose user (`user_of`: a comment's author, a notification's actor, a
/// message's sender) is not in `blocked` (the viewer's block set, both ways).
pub fn hide_blocked<T>(
    items: Vec<T>,
    blocked: &HashSet<UserId>,
    user_of: impl Fn(&T) -> UserId,
) -> Vec<T> {
    items
        .into_iter()
        .filter(|item| !blocked.contains(&user_of(item)))
        .collect()
}

/// Whose post a `post:{id}` room event is about, and who caused it, so the members can be
/// checked when it is sent (a membership is only checked when it is made; a block or a
/// switch to private after that must still stop the events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomScope {
    /// The post's author (`None`: read the post to find out).
    pub author: Option<UserId>,
    /// The user whose action the event tells of (a comment's author), if any.
    pub actor: Option<UserId>,
}

/// What the room rule needs to know about the post's author and the event's actor, read
/// once per event whatever the room's size.
#[derive(Debug, Clone)]
pub struct RoomAuthority {
    pub author: UserId,
    /// The author's profile is private.
    pub private: bool,
    /// Everyone in a block relation with the author.
    pub author_blocks: HashSet<UserId>,
    /// The actor and everyone in a block relation with them.
    pub actor: Option<(UserId, HashSet<UserId>)>,
    /// Of the members, those who follow a private author (empty for a public one).
    pub followers: HashSet<UserId>,
}

impl RoomAuthority {
    /// Whether `member` may be told this room event.
    pub fn admits(&self, member: UserId) -> bool {
        if member == self.author {
            return true;
        }
        if self.author_blocks.contains(&member) {
            return false;
        }
        if self.private && !self.followers.contains(&member) {
            return false;
        }
        match &self.actor {
            Some((actor, blocks)) => member == *actor || !blocks.contains(&member),
            None => true,
        }
    }
}

/// The connections among `members` of a post's room that may be told an event of `scope`.
/// Reads per event: the author's profile and block set, the actor's block set, and for a
/// private author one batch read of follow items per 100 members. An author that no longer
/// exists has no room.
pub async fn room_recipients(
    store: &DynamoStore,
    author: UserId,
    actor: Option<UserId>,
    members: Vec<Subscription>,
) -> Result<Vec<String>> {
    if members.is_empty() {
        return Ok(Vec::new());
    }
    let actor_blocks = async {
        match actor.filter(|actor| *actor != author) {
            Some(actor) => Ok(Some((actor, store.block_set(actor).await?))),
            None => Ok(None),
        }
    };
    let (profile, author_blocks, actor) = futures::try_join!(
        store.get_user(author),
        store.block_set(author),
        actor_blocks
    )?;
    let Some(profile) = profile else {
        return Ok(Vec::new());
    };
    let followers = if profile.is_private {
        let ids: Vec<UserId> = members
            .iter()
            .map(|member| member.user_id)
            .filter(|id| *id != author)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        store.followers_among(author, &ids).await?
    } else {
        HashSet::new()
    };
    let authority = RoomAuthority {
        author,
        private: profile.is_private,
        author_blocks,
        actor,
        followers,
    };
    Ok(members
        .into_iter()
        .filter(|member| authority.admits(member.user_id))
        .map(|member| member.connection_id)
        .collect())
}

/// Of a connection's rooms, each with the user it belongs to (a post room: the post's
/// author, `None` when the post is gone; `presence:{id}`: that user), those a block between
/// the connection's user and `other` must end. Pure, so the choice is tested on its own.
pub fn rooms_to_leave(
    rooms: &[(String, Option<UserId>)],
    other: UserId,
) -> impl Iterator<Item = &str> + '_ {
    rooms
        .iter()
        .filter(move |(_, owner)| *owner == Some(other))
        .map(|(channel, _)| channel.as_str())
}

/// Ends the room memberships a block between `user` and `other` makes wrong: every
/// connection of `user` leaves the rooms of `other`'s posts and `other`'s presence room.
/// The send-time check ([`RoomAuthority`]) already stops the events; this removes the
/// memberships so they stop costing a check. Reads: `user`'s connection set, each connection
/// (a handful), one batch read of the posts behind their rooms. Returns the rooms left.
pub async fn leave_rooms_of(store: &DynamoStore, user: UserId, other: UserId) -> Result<usize> {
    let ids = store
        .connections_of_users(&[user])
        .await?
        .remove(&user)
        .unwrap_or_default();
    let stored =
        futures::future::try_join_all(ids.iter().map(|id| store.stored_connection(id))).await?;
    let stored: Vec<StoredConnection> = stored.into_iter().flatten().collect();
    let post_ids: Vec<PostId> = stored
        .iter()
        .flat_map(|connection| &connection.rooms)
        .filter_map(|room| match Channel::parse(room) {
            Ok(Channel::Post(post)) => Some(post),
            _ => None,
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let authors = store.get_posts(&post_ids).await?;
    let leaves = stored.iter().flat_map(|connection| {
        let rooms: Vec<(String, Option<UserId>)> = connection
            .rooms
            .iter()
            .map(|room| {
                let owner = match Channel::parse(room) {
                    Ok(Channel::Post(post)) => authors.get(&post).map(|p| p.author_id),
                    Ok(Channel::Presence(of)) => Some(of),
                    Err(_) => None,
                };
                (room.clone(), owner)
            })
            .collect();
        let id = connection.connection.connection_id.clone();
        rooms_to_leave(&rooms, other)
            .map(|room| (id.clone(), room.to_owned()))
            .collect::<Vec<_>>()
    });
    let leaves: Vec<(String, String)> = leaves.collect();
    futures::future::try_join_all(
        leaves
            .iter()
            .map(|(connection, room)| store.unsubscribe(connection, room)),
    )
    .await?;
    Ok(leaves.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> UserId {
        UserId::from_u128(n)
    }

    fn authority() -> RoomAuthority {
        RoomAuthority {
            author: id(1),
            private: false,
            author_blocks: HashSet::new(),
            actor: None,
            followers: HashSet::new(),
        }
    }

    #[test]
    fn a_public_authors_room_admits_everyone_but_the_blocked() {
        let mut room = authority();
        room.author_blocks.insert(id(3));
        assert!(room.admits(id(1)));
        assert!(room.admits(id(2)));
        assert!(!room.admits(id(3)));
    }

    #[test]
    fn a_private_authors_room_admits_followers_only() {
        let mut room = authority();
        room.private = true;
        room.followers.insert(id(2));
        assert!(room.admits(id(1)), "the author");
        assert!(room.admits(id(2)), "a follower");
        assert!(
            !room.admits(id(4)),
            "a member who is no follower (any more)"
        );
    }

    #[test]
    fn an_event_caused_by_a_user_is_not_told_to_those_in_a_block_with_them() {
        let mut room = authority();
        room.actor = Some((id(5), HashSet::from([id(2)])));
        assert!(!room.admits(id(2)));
        assert!(room.admits(id(5)), "the actor themselves");
        assert!(room.admits(id(6)));
    }

    #[test]
    fn hide_blocked_keeps_order_and_drops_blocked_users_items() {
        let blocked = HashSet::from([id(2)]);
        let items = vec![(1, id(1)), (2, id(2)), (3, id(3)), (4, id(2))];
        let kept = hide_blocked(items, &blocked, |item| item.1);
        assert_eq!(kept, vec![(1, id(1)), (3, id(3))]);
    }

    #[test]
    fn a_block_leaves_the_rooms_of_the_other_users_posts_only() {
        let rooms = vec![
            ("post:a".to_owned(), Some(id(9))),
            ("post:b".to_owned(), Some(id(8))),
            ("post:c".to_owned(), None),
            ("post:d".to_owned(), Some(id(9))),
            ("presence:x".to_owned(), Some(id(9))),
        ];
        let leave: Vec<&str> = rooms_to_leave(&rooms, id(9)).collect();
        assert_eq!(leave, ["post:a", "post:d", "presence:x"]);
    }
}
