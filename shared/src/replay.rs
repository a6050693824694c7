//! What a client missed while away: the replay behind the WebSocket `resume` action and the
//! REST `GET /events` (one computation, so both answer the same events, ids, bounds and gap).
//!
//! `since` is a cursor from an earlier event (the `cursor` of `new_notification`,
//! `new_message`, `message_request` or `resumed`): a UUIDv7, so it names a point in time and
//! compares with item ids. The replay is every notification of the caller and every message
//! of the caller's threads (sent or received) whose id is newer than `since` minus
//! [`REPLAY_LAG`], oldest first, as the very events the live push sends
//! (`Event::new_notification`, `Event::message_for`: same `event_id`, so a client drops the
//! ones it already has).
//!
//! Why the lag: ids are minted before their transaction commits, and items on different
//! stream shards reach clients in any order. A client may see a message minted at 12:00:05
//! live, go offline, and only then have a message minted at 12:00:04 commit (or leave a
//! lagging shard). Replaying from exactly `since` would skip it forever; replaying from
//! `since − REPLAY_LAG` includes it as long as mint-to-push took less than the lag (the REST
//! functions time out after 10 s; the stream iterator-age alarm watches the other half). The
//! price is re-sending up to a minute of events the client has, which it drops by `event_id`.
//!
//! What the replay holds is what the REST lists show (`crate::visibility`): notifications
//! whose actor, and threads whose other user, is in a block relation with the caller are left
//! out, as `GET /notifications` and `GET /conversations` leave them out.
//!
//! The replay is all or nothing. More than [`MAX_REPLAY`] events (the lag's overlap
//! included), or a cursor older than [`RESUME_WINDOW`] (or from the future), is a gap:
//! nothing is replayed, and the position is "now" — the client refetches over REST and
//! resumes from there next time.
//!
//! Reads, all newest first and stopped at the first item not newer than the lagged bound:
//! notifications (pattern 21); the caller's conversations by recency (pattern 17) and
//! pending message requests (pattern 20) to find the threads with newer messages, then each
//! such thread (pattern 18); one `Select: COUNT` query of the materialized feed's entries
//! newer than `since` for `feed_new_posts` (at most [`MAX_FEED_NEW_POSTS`]; posts of large
//! authors, merged at read time, are not counted).

use std::collections::BTreeSet;
use std::future::Future;

use crate::domain::{Conversation, Message, Notification, UserId};
use crate::error::{Error, Result};
use crate::events::{Event, EventBody};
use crate::store::page::{Page, PageRequest, MAX_LIMIT};
use crate::store::DynamoStore;
use chrono::{DateTime, Duration, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use uuid::Uuid;

use crate::visibility;

/// Most events one resume replays; beyond it the client refetches over REST.
pub const MAX_REPLAY: usize = 500;

/// Oldest cursor a resume replays from.
pub const RESUME_WINDOW: Duration = Duration::hours(24);

/// A cursor this far ahead of the server clock is not one the server issued.
pub const MAX_CURSOR_SKEW: Duration = Duration::minutes(1);

/// Most new feed posts counted (`feed_new_posts` saturates here).
pub const MAX_FEED_NEW_POSTS: usize = MAX_LIMIT;

/// Most pending message requests scanned (they are listed by sender, not by recency).
pub const MAX_REQUESTS_SCANNED: usize = 1000;

/// Threads read at once during a resume.
const THREAD_READS_IN_FLIGHT: usize = 8;

/// How far before `since` a replay starts (see the module doc): more than a REST function's
/// 10 s timeout plus the stream's normal delay, so an item minted before the client's cursor
/// but committed or pushed after it is still replayed.
pub const REPLAY_LAG: Duration = Duration::seconds(60);

/// What to send for a resume.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    /// The events to replay, oldest first (empty on a gap).
    pub events: Vec<Event>,
    /// How many events the replay found (kept when `events` is taken to be sent).
    pub replayed: usize,
    pub gap: bool,
    pub feed_new_posts: u32,
    /// Where the client is caught up to once it has these events.
    pub position: Uuid,
}

impl Replay {
    /// The closing `resumed` event.
    pub fn resumed(&self, request_id: Option<String>, now: DateTime<Utc>) -> Event {
        let mut event = Event::ephemeral(
            EventBody::Resumed {
                gap: self.gap,
                replayed: u32::try_from(self.replayed).unwrap_or(u32::MAX),
                feed_new_posts: self.feed_new_posts,
                request_id,
            },
            now,
        );
        event.cursor = Some(self.position);
        event
    }

    fn gap(now: DateTime<Utc>) -> Self {
        Self {
            events: Vec::new(),
            replayed: 0,
            gap: true,
            feed_new_posts: 0,
            position: time_cursor(now),
        }
    }
}

/// Largest `replay` frame: API Gateway's WebSocket frame size (a message may be up to
/// 128 KB, but frames above 32 KB are split, and some clients and proxies handle a single
/// frame better).
pub const REPLAY_FRAME_BYTES: usize = 32 * 1024;

/// Room the `replay` envelope itself takes (`type`, `event_id`, `occurred_at`,
/// `request_id`, brackets).
const REPLAY_ENVELOPE_BYTES: usize = 256;

/// Packs `events` (oldest first) into `replay` frames of at most [`REPLAY_FRAME_BYTES`],
/// order kept. An event larger than a frame on its own travels alone (up to the 128 KB
/// message limit, which the size limits of posts and messages keep far away).
pub fn replay_frames(
    events: Vec<Event>,
    request_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<Event>> {
    let budget = REPLAY_FRAME_BYTES - REPLAY_ENVELOPE_BYTES - request_id.map_or(0, str::len);
    let mut frames = Vec::new();
    let mut batch: Vec<Event> = Vec::new();
    let mut batch_bytes = 0;
    for event in events {
        // The separating comma counts too.
        let bytes = event.to_json()?.len() + 1;
        if !batch.is_empty() && batch_bytes + bytes > budget {
            frames.push(std::mem::take(&mut batch));
            batch_bytes = 0;
        }
        batch_bytes += bytes;
        batch.push(event);
    }
    if !batch.is_empty() {
        frames.push(batch);
    }
    Ok(frames
        .into_iter()
        .map(|events| {
            Event::ephemeral(
                EventBody::Replay {
                    events,
                    request_id: request_id.map(str::to_owned),
                },
                now,
            )
        })
        .collect())
}

/// The smallest UUIDv7 of the millisecond `at`: every id minted at or after `at` is
/// greater, so it resumes exactly from that moment.
pub fn time_cursor(at: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10]).into_uuid()
}

/// Parses `since`: a UUIDv7 cursor, and the time it names.
pub fn parse_cursor(since: &str) -> Result<(Uuid, DateTime<Utc>)> {
    let invalid = || Error::validation("since must be a cursor received in an event");
    let cursor = Uuid::parse_str(since).map_err(|_| invalid())?;
    if cursor.get_version_num() != 7 {
        return Err(invalid());
    }
    let (seconds, nanos) = cursor.get_timestamp().ok_or_else(invalid)?.to_unix();
    let at = i64::try_from(seconds)
        .ok()
        .and_then(|seconds| DateTime::from_timestamp(seconds, nanos))
        .ok_or_else(invalid)?;
    Ok((cursor, at))
}

/// Collects what `user` missed since `since`.
pub async fn collect(
    store: &DynamoStore,
    user: UserId,
    since: &str,
    now: DateTime<Utc>,
) -> Result<Replay> {
    let (since, since_at) = parse_cursor(since)?;
    if since_at < now - RESUME_WINDOW || since_at > now + MAX_CURSOR_SKEW {
        return Ok(Replay::gap(now));
    }
    // Everything newer than this is read; the client drops what it already has.
    let from = time_cursor(since_at - REPLAY_LAG);

    let notifications = newer_than(
        from,
        MAX_REPLAY,
        |n: &Notification| Some(n.id.as_uuid()),
        |page| async move { store.notifications(user, false, &page).await },
    );
    let (notifications, blocked) = futures::try_join!(notifications, store.block_set(user))?;
    let Some(notifications) = notifications else {
        return Ok(Replay::gap(now));
    };
    let notifications = visibility::hide_blocked(notifications, &blocked, |n| n.actor_id);
    let mut events: Vec<Event> = notifications.iter().map(Event::new_notification).collect();

    let Some(mut threads) = threads_with_news(store, user, from).await? else {
        return Ok(Replay::gap(now));
    };
    threads.retain(|other| !blocked.contains(other));
    // The threads are independent reads: a few in flight at once. Each may use what the
    // notifications left of the budget; the total is checked as the answers arrive.
    let thread_budget = MAX_REPLAY.saturating_sub(events.len());
    let mut thread_messages = stream::iter(threads)
        .map(|other| {
            newer_than(
                from,
                thread_budget,
                |m: &Message| Some(m.id.as_uuid()),
                move |page| async move { store.messages(user, other, &page).await },
            )
        })
        .buffer_unordered(THREAD_READS_IN_FLIGHT);
    while let Some(messages) = thread_messages.try_next().await? {
        let Some(messages) = messages else {
            return Ok(Replay::gap(now));
        };
        events.extend(
            messages
                .iter()
                .map(|message| Event::message_for(message, user)),
        );
        if events.len() > MAX_REPLAY {
            return Ok(Replay::gap(now));
        }
    }
    // UUIDv7 ids order by creation time; notifications and messages interleave correctly.
    events.sort_by_key(|event| event.cursor);

    // One bounded count of the materialized feed's newer entries, not a feed computation.
    let feed_new_posts = store
        .feed_entries_newer(user, since, MAX_FEED_NEW_POSTS)
        .await?;

    let position = events
        .iter()
        .filter_map(|event| event.cursor)
        .max()
        .map_or(since, |latest| latest.max(since));
    Ok(Replay {
        replayed: events.len(),
        events,
        gap: false,
        feed_new_posts: u32::try_from(feed_new_posts).unwrap_or(u32::MAX),
        position,
    })
}

/// The other users of the threads in which `user` has messages newer than `since`: the
/// accepted conversations (newest first, so the walk stops at the first older one) and the
/// pending requests to `user`. `None` if there are more than [`MAX_REPLAY`] of them (each
/// has at least one new message: a gap) or too many requests to scan.
async fn threads_with_news(
    store: &DynamoStore,
    user: UserId,
    since: Uuid,
) -> Result<Option<BTreeSet<UserId>>> {
    let conversations = newer_than(
        since,
        MAX_REPLAY,
        |c: &Conversation| c.last_message.as_ref().map(|m| m.id.as_uuid()),
        |page| async move { store.conversations(user, &page).await },
    )
    .await?;
    let Some(conversations) = conversations else {
        return Ok(None);
    };
    let mut threads: BTreeSet<UserId> = conversations.iter().map(|c| c.other_user_id).collect();

    let mut page = PageRequest::first(MAX_LIMIT);
    let mut scanned = 0;
    loop {
        let requests = store.message_requests(user, &page).await?;
        scanned += requests.items.len();
        threads.extend(
            requests
                .items
                .iter()
                .filter(|request| {
                    request
                        .last_message
                        .as_ref()
                        .is_some_and(|m| m.id.as_uuid() > since)
                })
                .map(|request| request.from),
        );
        match requests.next_cursor {
            Some(_) if scanned >= MAX_REQUESTS_SCANNED => return Ok(None),
            Some(cursor) => page = PageRequest::after(MAX_LIMIT, cursor),
            None => break,
        }
    }
    Ok((threads.len() <= MAX_REPLAY).then_some(threads))
}

/// Walks a newest-first listing and keeps the items whose id is newer than `since`,
/// stopping at the first one that is not (an item without an id counts as old). `None`
/// when there are more than `budget`.
async fn newer_than<T, Fetch, Fut>(
    since: Uuid,
    budget: usize,
    id_of: impl Fn(&T) -> Option<Uuid>,
    mut fetch: Fetch,
) -> Result<Option<Vec<T>>>
where
    Fetch: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page<T>>>,
{
    let mut kept = Vec::new();
    let mut page = PageRequest::first(MAX_LIMIT);
    loop {
        let listing = fetch(page).await?;
        for item in listing.items {
            if id_of(&item).is_none_or(|id| id <= since) {
                return Ok(Some(kept));
            }
            if kept.len() == budget {
                return Ok(None);
            }
            kept.push(item);
        }
        match listing.next_cursor {
            Some(cursor) => page = PageRequest::after(MAX_LIMIT, cursor),
            None => return Ok(Some(kept)),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn time_cursor_is_below_every_id_of_its_millisecond_and_above_earlier_ones() {
        let at = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
        let cursor = time_cursor(at);
        let same_ms =
            uuid::Builder::from_unix_timestamp_millis(1_700_000_000_123, &[0xff; 10]).into_uuid();
        let earlier =
            uuid::Builder::from_unix_timestamp_millis(1_700_000_000_122, &[0xff; 10]).into_uuid();
        assert!(cursor < same_ms);
        assert!(earlier < cursor);
        assert_eq!(parse_cursor(&cursor.to_string()).unwrap(), (cursor, at));
    }

    fn message_event(i: u32) -> Event {
        Event::ephemeral(
            EventBody::Pong {
                server_time: Utc.timestamp_millis_opt(i64::from(i)).unwrap(),
                request_id: Some("x".repeat(300)),
            },
            Utc.timestamp_millis_opt(i64::from(i)).unwrap(),
        )
    }

    #[test]
    fn replay_frames_keep_order_and_stay_within_a_websocket_frame() {
        let events: Vec<Event> = (0..500).map(message_event).collect();
        let frames = replay_frames(events.clone(), Some("r-1"), Utc::now()).unwrap();
        assert!(
            frames.len() > 1 && frames.len() < 10,
            "{} frames",
            frames.len()
        );
        let mut unpacked = Vec::new();
        for frame in &frames {
            assert!(frame.to_json().unwrap().len() <= REPLAY_FRAME_BYTES);
            let EventBody::Replay { events, request_id } = &frame.body else {
                panic!("not a replay frame: {frame:?}");
            };
            assert_eq!(request_id.as_deref(), Some("r-1"));
            unpacked.extend(events.iter().cloned());
        }
        assert_eq!(unpacked, events);
        assert!(replay_frames(Vec::new(), None, Utc::now())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn only_uuid_v7_cursors_are_accepted() {
        assert!(parse_cursor("not-a-uuid").is_err());
        assert!(parse_cursor(&Uuid::new_v4().to_string()).is_err());
        assert!(parse_cursor(&Uuid::now_v7().to_string()).is_ok());
    }

    #[tokio::test]
    async fn newer_than_stops_at_the_first_old_item_and_reports_overflow() {
        let ids: Vec<Uuid> = (0..5)
            .map(|i| uuid::Builder::from_unix_timestamp_millis(1000 + i, &[0; 10]).into_uuid())
            .collect();
        // Newest first, in pages of two.
        let listing: Vec<Uuid> = ids.iter().rev().copied().collect();
        let fetch = |page: PageRequest| {
            let start: usize = page.cursor.as_deref().map_or(0, |c| c.parse().unwrap());
            let items = listing.iter().skip(start).take(2).copied().collect();
            let next_cursor = (start + 2 < listing.len()).then(|| (start + 2).to_string());
            async move { Ok(Page { items, next_cursor }) }
        };
        let newer = newer_than(ids[1], 10, |id: &Uuid| Some(*id), fetch)
            .await
            .unwrap();
        assert_eq!(newer, Some(vec![ids[4], ids[3], ids[2]]));
        assert_eq!(
            newer_than(ids[1], 2, |id: &Uuid| Some(*id), fetch)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            newer_than(ids[1], 3, |id: &Uuid| Some(*id), fetch)
                .await
                .unwrap()
                .map(|v| v.len()),
            Some(3)
        );
    }
}
