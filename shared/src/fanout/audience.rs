//! Who an event is for, turned into connection ids at a cost that follows online users.
//!
//! The expensive audience is "the author and the author's followers". It is resolved from
//! two sides that are both cheap to read:
//!
//! - the author's followers from the keys-only fan-out index (GSI 3): ~5,000 ids per 1 MB
//!   page, so F followers cost ⌈F/5,000⌉ requests and about F/24 read units;
//! - the online-users index (`store::online`): one query per shard, all concurrent, read
//!   at most once per batch ([`OnlineSnapshot`]).
//!
//! Their intersection is the online followers; only their connection sets are read (one
//! `BatchGetItem` per 100 users). Up to [`DIRECT_LOOKUP_MAX_USERS`] followers, reading their
//! connection sets directly is a single request, so the online index is not consulted.
//!
//! A resolution may be bounded ([`AudienceResolver::resolve_within`]): an author with more
//! followers than the bound is not resolved in place but [`Resolution::Deferred`], and the
//! caller (the stream router) hands the whole audience to a push worker. So the router's
//! time per record does not grow with any audience.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::domain::{PostId, UserId};
use crate::error::Result;
use crate::events::Channel;
use crate::store::DynamoStore;
use crate::visibility;

/// Most followers one post event is fanned out to (bounds a push worker's read).
pub const MAX_AUDIENCE_FOLLOWERS: usize = 100_000;

/// Up to this many users, their connection sets are read directly (one `BatchGetItem`),
/// without consulting the online index.
pub const DIRECT_LOOKUP_MAX_USERS: usize = 100;

/// Who an event is for. Serialised (adjacently tagged) into the work items that hand a
/// large audience to a push worker.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "of", rename_all = "snake_case")]
pub enum Audience {
    /// Every open connection of these users.
    Users(Vec<UserId>),
    /// Every open connection of these users except one (the connection that caused the event).
    UsersExcept {
        users: Vec<UserId>,
        except_connection: String,
    },
    /// The members of the `post:{post}` room who may still see the post when the event is
    /// sent — `crate::visibility`'s room rule: a block (with the author, or with `actor`, the
    /// user whose action the event tells) or a switch to private after they subscribed
    /// stops the events. `author: None` reads it from the post.
    PostRoom {
        post: PostId,
        author: Option<UserId>,
        actor: Option<UserId>,
    },
    /// One connection.
    Connection(String),
    /// The author and the author's online followers, minus anyone in the author's block set
    /// (a block removes follows, so this only matters for races).
    AuthorAndFollowers(UserId),
    /// Who may see the user's presence: if the user shows presence, their online mutual
    /// follows (and `presence:{user}` subscribers that still are), minus blocked relations.
    PresenceWatchers(UserId),
}

/// What a bounded resolution found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The connection ids, each once, sorted.
    Connections(Vec<String>),
    /// An author has more followers than the bound: resolve elsewhere (a push worker).
    Deferred,
}

/// The online-users index, read at most once for everything resolved with it (one stream
/// batch, one work item). As fresh as the batch, which is how stale the batch already is.
#[derive(Debug, Default)]
pub struct OnlineSnapshot {
    users: OnceCell<HashSet<UserId>>,
}

impl OnlineSnapshot {
    async fn get(&self, index: &DynamoStore) -> Result<&HashSet<UserId>> {
        self.users.get_or_try_init(|| index.online_users()).await
    }
}

/// Turns audiences into connection ids.
#[derive(Clone)]
pub struct AudienceResolver {
    /// Connections, follows and blocks, profiles, a room event's post (when the event does
    /// not say whose it is) and the online index.
    pub store: Arc<DynamoStore>,
}

impl std::fmt::Debug for AudienceResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudienceResolver").finish_non_exhaustive()
    }
}

impl AudienceResolver {
    /// The union of the audiences' connections, each once, sorted; followers up to
    /// [`MAX_AUDIENCE_FOLLOWERS`].
    pub async fn resolve(&self, audiences: &[Audience]) -> Result<Vec<String>> {
        let online = OnlineSnapshot::default();
        match self
            .resolve_within(audiences, MAX_AUDIENCE_FOLLOWERS, &online)
            .await?
        {
            Resolution::Connections(ids) => Ok(ids),
            // `resolve_within` never defers at the cap: it truncates (logged) instead.
            Resolution::Deferred => Ok(Vec::new()),
        }
    }

    /// Like [`AudienceResolver::resolve`], but an author with more than `max_followers`
    /// followers makes the whole resolution [`Resolution::Deferred`] (unless `max_followers`
    /// is [`MAX_AUDIENCE_FOLLOWERS`], where the list is cut instead).
    #[tracing::instrument(level = "debug", skip_all, fields(audiences = audiences.len()))]
    pub async fn resolve_within(
        &self,
        audiences: &[Audience],
        max_followers: usize,
        online: &OnlineSnapshot,
    ) -> Result<Resolution> {
        let mut connection_ids = BTreeSet::new();
        let mut excluded = HashSet::new();
        for audience in audiences {
            match audience {
                Audience::Users(users) => {
                    connection_ids.extend(self.connections_of(users).await?);
                }
                Audience::UsersExcept {
                    users,
                    except_connection,
                } => {
                    connection_ids.extend(self.connections_of(users).await?);
                    excluded.insert(except_connection.clone());
                }
                Audience::PostRoom {
                    post,
                    author,
                    actor,
                } => {
                    connection_ids.extend(self.post_room(*post, *author, *actor).await?);
                }
                Audience::Connection(connection_id) => {
                    connection_ids.insert(connection_id.clone());
                }
                Audience::AuthorAndFollowers(author) => {
                    match self
                        .author_and_followers(*author, max_followers, online)
                        .await?
                    {
                        Some(ids) => connection_ids.extend(ids),
                        None => return Ok(Resolution::Deferred),
                    }
                }
                Audience::PresenceWatchers(user) => {
                    connection_ids.extend(self.presence_watchers(*user, online).await?);
                }
            }
        }
        Ok(Resolution::Connections(
            connection_ids
                .into_iter()
                .filter(|id| !excluded.contains(id))
                .collect(),
        ))
    }

    /// The connections of the author and the author's online followers; `None` when the
    /// author has more than `max_followers` (and that is not the hard cap).
    async fn author_and_followers(
        &self,
        author: UserId,
        max_followers: usize,
        online: &OnlineSnapshot,
    ) -> Result<Option<Vec<String>>> {
        let (followers, blocked) = futures::try_join!(
            self.store.follower_ids(author, max_followers),
            self.store.block_set(author),
        )?;
        if followers.truncated {
            if max_followers < MAX_AUDIENCE_FOLLOWERS {
                return Ok(None);
            }
            tracing::warn!(%author, cap = MAX_AUDIENCE_FOLLOWERS, "followers beyond the fan-out cap are not pushed to");
        }
        let mut users: Vec<UserId> = followers
            .ids
            .into_iter()
            .filter(|follower| !blocked.contains(follower))
            .collect();
        if users.len() <= DIRECT_LOOKUP_MAX_USERS {
            users.push(author);
            return Ok(Some(self.connections_of(&users).await?));
        }
        let online = online.get(self.store.as_ref()).await?;
        users.retain(|follower| online.contains(follower));
        users.push(author);
        // The online index is a snapshot already: the connection sets of its users are read
        // eventually consistent too, at half the read units.
        Ok(Some(
            self.store
                .connections_of_online_users(&users)
                .await?
                .into_values()
                .flatten()
                .collect(),
        ))
    }

    /// The room's members the visibility policy admits for this event.
    async fn post_room(
        &self,
        post: PostId,
        author: Option<UserId>,
        actor: Option<UserId>,
    ) -> Result<Vec<String>> {
        let room = Channel::Post(post).to_string();
        let author = async {
            match author {
                Some(author) => Ok(Some(author)),
                None => Ok(self.store.get_post(post).await?.map(|p| p.author_id)),
            }
        };
        let (members, author) = futures::try_join!(self.store.room_members(&room), author)?;
        let Some(author) = author else {
            return Ok(Vec::new());
        };
        visibility::room_recipients(&self.store, author, actor, members).await
    }

    async fn connections_of(&self, users: &[UserId]) -> Result<Vec<String>> {
        let unique: Vec<UserId> = users
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Ok(self
            .store
            .connections_of_users(&unique)
            .await?
            .into_values()
            .flatten()
            .collect())
    }

    /// Online mutual follows of `user` (if `user` shows presence) and the `presence:{user}`
    /// subscribers among them. Costs follow the accounts `user` follows (capped) and the
    /// online ones among them — never `user`'s follower count.
    async fn presence_watchers(
        &self,
        user: UserId,
        online: &OnlineSnapshot,
    ) -> Result<Vec<String>> {
        let Some(profile) = self.store.get_user(user).await? else {
            return Ok(Vec::new());
        };
        if !profile.show_presence {
            return Ok(Vec::new());
        }
        let (blocked, following, online) = futures::try_join!(
            self.store.block_set(user),
            self.store.following_ids(user),
            online.get(self.store.as_ref()),
        )?;
        let candidates: Vec<UserId> = following
            .into_iter()
            .filter(|followee| online.contains(followee) && !blocked.contains(followee))
            .collect();
        let mutuals = self.store.followers_among(user, &candidates).await?;
        let mutual_ids: Vec<UserId> = mutuals.iter().copied().collect();
        let room = Channel::Presence(user).to_string();
        let (mut watchers, subscribers) = futures::try_join!(
            self.connections_of(&mutual_ids),
            self.store.room_members(&room),
        )?;
        // Subscribers were mutual when they subscribed; one who unfollowed or was blocked
        // since then is not told any more.
        watchers.extend(
            subscribers
                .into_iter()
                .filter(|member| mutuals.contains(&member.user_id))
                .map(|member| member.connection_id),
        );
        Ok(watchers)
    }
}
