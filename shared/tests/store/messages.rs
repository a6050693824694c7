//! Access patterns 17–20: conversations of a user, messages of a thread, idempotent send,
//! message requests (with accept and reject).

use std::collections::HashSet;

use chrono::Utc;
use shared::domain::{ConversationState, Message, MessageStatus, User};
use shared::store::page::PageRequest;
use shared::store::DynamoStore;
use shared::store::{NewMessage, SentMessage, MAX_PENDING_REQUEST_MESSAGES};
use shared::testkit::TestDb;

use crate::support::{make_private, user, walk_pages};

async fn send(store: &DynamoStore, from: &User, to: &User, text: &str) -> Message {
    send_with_id(store, from, to, text, None).await.message
}

async fn send_with_id(
    store: &DynamoStore,
    from: &User,
    to: &User,
    text: &str,
    client_message_id: Option<&str>,
) -> SentMessage {
    let new = NewMessage::new(from.id, to.id, text, client_message_id, Utc::now()).unwrap();
    store
        .send_message(new)
        .await
        .unwrap_or_else(|e| panic!("{} → {}: {e:?}", from.username, to.username))
}

#[tokio::test]
async fn conversations_of_a_user_newest_first_with_last_message_and_unread_count() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob, carol) = (
        user(&store, "alice").await,
        user(&store, "bob").await,
        user(&store, "carol").await,
    );

    send(&store, &alice, &bob, "hi bob").await;
    send(&store, &carol, &alice, "hi alice").await;
    let from_bob = send(&store, &bob, &alice, "hey alice").await;

    let list = store
        .conversations(alice.id, &PageRequest::first(10))
        .await
        .unwrap();
    let others: Vec<_> = list.items.iter().map(|c| c.other_user_id).collect();
    assert_eq!(others, vec![bob.id, carol.id], "most recent first");
    assert_eq!(list.items[0].last_message.as_ref(), Some(&from_bob));
    assert_eq!(list.items[0].unread_count, 1);
    assert_eq!(list.items[0].state, ConversationState::Accepted);
    assert_eq!(list.items[1].unread_count, 1);
    assert!(list.next_cursor.is_none());

    // Writing moves a conversation to the top, and the writer's own unread count stays.
    send(&store, &alice, &carol, "hello carol").await;
    let (all, pages) = walk_pages(1, |page| {
        let store = store.clone();
        async move { store.conversations(alice.id, &page).await }
    })
    .await;
    assert_eq!(pages, 2);
    let others: Vec<_> = all.iter().map(|c| c.other_user_id).collect();
    assert_eq!(
        others,
        vec![carol.id, bob.id],
        "each conversation once, newest first"
    );
    let carols = store
        .conversations(carol.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(carols.items.len(), 1);
    assert_eq!(carols.items[0].unread_count, 1);
    assert_eq!(
        carols.items[0].last_message.as_ref().unwrap().text,
        "hello carol"
    );
}

#[tokio::test]
async fn messages_of_a_thread_newest_first_across_pages_and_only_that_thread() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob, carol) = (
        user(&store, "alice").await,
        user(&store, "bob").await,
        user(&store, "carol").await,
    );
    let mut sent = Vec::new();
    for i in 0..8 {
        let (from, to) = if i % 2 == 0 {
            (&alice, &bob)
        } else {
            (&bob, &alice)
        };
        sent.push(send(&store, from, to, &format!("message {i}")).await);
    }
    send(&store, &carol, &alice, "another thread").await;

    let (all, pages) = walk_pages(3, |page| {
        let store = store.clone();
        async move { store.messages(bob.id, alice.id, &page).await }
    })
    .await;
    assert_eq!(pages, 3);
    sent.reverse();
    assert_eq!(
        all, sent,
        "every message once, newest first, the same from either side"
    );
    let from_alice_side = store
        .messages(alice.id, bob.id, &PageRequest::first(100))
        .await
        .unwrap();
    assert_eq!(from_alice_side.items, sent);

    // A third user only ever reads their own thread with Alice.
    let carols = store
        .messages(carol.id, alice.id, &PageRequest::first(100))
        .await
        .unwrap();
    assert_eq!(carols.items.len(), 1);
    assert_eq!(carols.items[0].text, "another thread");
}

#[tokio::test]
async fn a_retry_with_the_same_client_message_id_returns_the_same_message_and_stores_nothing() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);

    let first = send_with_id(&store, &alice, &bob, "once", Some("c-123")).await;
    assert!(first.created);
    assert_eq!(first.message.client_message_id.as_deref(), Some("c-123"));
    let items = db.item_count().await;
    let unread = store.unread_count(bob.id).await.unwrap();

    let retry = send_with_id(&store, &alice, &bob, "once", Some("c-123")).await;
    assert!(!retry.created);
    assert_eq!(retry.message, first.message);
    assert_eq!(db.item_count().await, items, "nothing new stored");
    assert_eq!(
        store.unread_count(bob.id).await.unwrap(),
        unread,
        "no second notification"
    );
    let thread = store
        .messages(alice.id, bob.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(thread.items.len(), 1);
    let bobs = store
        .conversations(bob.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(bobs.items[0].unread_count, 1);

    // The id is per sender: Bob may use the same one, and Alice a new one.
    assert!(
        send_with_id(&store, &bob, &alice, "mine", Some("c-123"))
            .await
            .created
    );
    assert!(
        send_with_id(&store, &alice, &bob, "twice", Some("c-124"))
            .await
            .created
    );
    let thread = store
        .messages(alice.id, bob.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(thread.items.len(), 3);
}

#[tokio::test]
async fn a_message_to_a_private_non_follower_is_a_request_until_accepted() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    make_private(&store, &bob).await;

    let first = send(&store, &alice, &bob, "hello?").await;
    assert_eq!(first.status, MessageStatus::Requested);
    let second = send(&store, &alice, &bob, "are you there?").await;
    assert_eq!(second.status, MessageStatus::Requested);

    // Pattern 20: Bob sees the request, not a conversation; Alice sees her conversation.
    let requests = store
        .message_requests(bob.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(requests.items.len(), 1);
    assert_eq!(requests.items[0].from, alice.id);
    assert_eq!(requests.items[0].to, bob.id);
    assert_eq!(requests.items[0].last_message.as_ref(), Some(&second));
    assert!(store
        .conversations(bob.id, &PageRequest::first(10))
        .await
        .unwrap()
        .items
        .is_empty());
    let alices = store
        .conversations(alice.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(alices.items.len(), 1);
    assert_eq!(alices.items[0].other_user_id, bob.id);
    // Only the first request message notifies.
    assert_eq!(store.unread_count(bob.id).await.unwrap(), 1);
    // The recipient can read the pending thread to decide.
    assert_eq!(
        store
            .messages(bob.id, alice.id, &PageRequest::first(10))
            .await
            .unwrap()
            .items
            .len(),
        2
    );

    store
        .accept_message_request(bob.id, alice.id)
        .await
        .unwrap();
    assert!(store
        .message_requests(bob.id, &PageRequest::first(10))
        .await
        .unwrap()
        .items
        .is_empty());
    let bobs = store
        .conversations(bob.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(bobs.items.len(), 1);
    assert_eq!(bobs.items[0].state, ConversationState::Accepted);
    assert_eq!(bobs.items[0].unread_count, 2);
    assert_eq!(bobs.items[0].last_message.as_ref(), Some(&second));

    let after = send(&store, &alice, &bob, "thanks").await;
    assert_eq!(after.status, MessageStatus::Sent);
    assert_eq!(
        store.unread_count(bob.id).await.unwrap(),
        2,
        "sent messages notify each time"
    );
    let error = store
        .accept_message_request(bob.id, alice.id)
        .await
        .unwrap_err();
    assert_eq!(error.status(), 404);
}

#[tokio::test]
async fn a_private_recipient_who_follows_the_sender_gets_sent_messages() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    make_private(&store, &bob).await;
    store.follow(bob.id, alice.id, Utc::now()).await.unwrap();

    assert_eq!(
        send(&store, &alice, &bob, "hi").await.status,
        MessageStatus::Sent
    );
    assert!(store
        .message_requests(bob.id, &PageRequest::first(10))
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(
        store
            .conversations(bob.id, &PageRequest::first(10))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn writing_back_accepts_a_request() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    make_private(&store, &bob).await;
    send(&store, &alice, &bob, "hello?").await;

    let reply = send(&store, &bob, &alice, "hi alice").await;
    assert_eq!(reply.status, MessageStatus::Sent);
    assert!(store
        .message_requests(bob.id, &PageRequest::first(10))
        .await
        .unwrap()
        .items
        .is_empty());
    let bobs = store
        .conversations(bob.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(bobs.items.len(), 1);
    assert_eq!(bobs.items[0].state, ConversationState::Accepted);
    assert_eq!(
        send(&store, &alice, &bob, "great").await.status,
        MessageStatus::Sent
    );
}

#[tokio::test]
async fn rejecting_a_request_deletes_the_pending_thread() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    make_private(&store, &bob).await;
    let first = send_with_id(&store, &alice, &bob, "hello?", Some("c-1")).await;
    send_with_id(&store, &alice, &bob, "hello??", Some("c-2")).await;

    store
        .reject_message_request(bob.id, alice.id)
        .await
        .unwrap();
    assert!(store
        .message_requests(bob.id, &PageRequest::first(10))
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(store
        .messages(alice.id, bob.id, &PageRequest::first(10))
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(store
        .conversations(alice.id, &PageRequest::first(10))
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(store
        .conversations(bob.id, &PageRequest::first(10))
        .await
        .unwrap()
        .items
        .is_empty());
    let error = store
        .mark_conversation_read(bob.id, alice.id)
        .await
        .unwrap_err();
    assert_eq!(error.status(), 404, "both conversation items are gone");

    // The idempotency records went too: the same client id is a new message now, and
    // the rejected sender does not get a second notification for a new request.
    let again = send_with_id(&store, &alice, &bob, "hello?", Some("c-1")).await;
    assert!(again.created);
    assert_ne!(again.message.id, first.message.id);
    assert_eq!(again.message.status, MessageStatus::Requested);
    assert_eq!(store.unread_count(bob.id).await.unwrap(), 1);

    let error = store
        .reject_message_request(alice.id, bob.id)
        .await
        .unwrap_err();
    assert_eq!(error.status(), 404, "there is no request from Bob to Alice");
}

#[tokio::test]
async fn a_pending_request_holds_a_bounded_number_of_messages() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    make_private(&store, &bob).await;
    for i in 0..MAX_PENDING_REQUEST_MESSAGES {
        send(&store, &alice, &bob, &format!("please {i}")).await;
    }
    let items = db.item_count().await;
    let new = NewMessage::new(alice.id, bob.id, "one more", None, Utc::now()).unwrap();
    let error = store.send_message(new).await.unwrap_err();
    assert_eq!(error.status(), 403);
    assert_eq!(db.item_count().await, items, "nothing stored");
}

#[tokio::test]
async fn a_block_either_way_forbids_messages_and_stores_nothing() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob, carol) = (
        user(&store, "alice").await,
        user(&store, "bob").await,
        user(&store, "carol").await,
    );
    store.block(bob.id, alice.id, Utc::now()).await.unwrap();
    let items = db.item_count().await;
    for (from, to) in [(&alice, &bob), (&bob, &alice)] {
        let new = NewMessage::new(from.id, to.id, "hi", Some("c-1"), Utc::now()).unwrap();
        let error = store.send_message(new).await.unwrap_err();
        assert_eq!(error.status(), 403, "{} → {}", from.username, to.username);
    }
    assert_eq!(db.item_count().await, items);
    assert_eq!(
        send(&store, &alice, &carol, "hi").await.status,
        MessageStatus::Sent
    );
}

#[tokio::test]
async fn unknown_recipients_and_messages_to_oneself_are_refused() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = user(&store, "alice").await;
    let new = NewMessage::new(alice.id, shared::domain::new_id(), "hi", None, Utc::now()).unwrap();
    assert_eq!(store.send_message(new).await.unwrap_err().status(), 404);
    assert_eq!(
        NewMessage::new(alice.id, alice.id, "hi", None, Utc::now())
            .unwrap_err()
            .status(),
        400
    );
}

#[tokio::test]
async fn marking_a_conversation_read_zeroes_only_the_readers_unread_count() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    for text in ["one", "two", "three"] {
        send(&store, &alice, &bob, text).await;
    }
    send(&store, &bob, &alice, "back").await;
    let unread = |owner: &User| {
        let store = store.clone();
        let owner = owner.id;
        async move {
            store
                .conversations(owner, &PageRequest::first(10))
                .await
                .unwrap()
                .items[0]
                .unread_count
        }
    };
    assert_eq!(unread(&bob).await, 3);
    store
        .mark_conversation_read(bob.id, alice.id)
        .await
        .unwrap();
    assert_eq!(unread(&bob).await, 0);
    assert_eq!(unread(&alice).await, 1);
    send(&store, &alice, &bob, "four").await;
    assert_eq!(unread(&bob).await, 1);

    let stranger = user(&store, "carol").await;
    let error = store
        .mark_conversation_read(stranger.id, alice.id)
        .await
        .unwrap_err();
    assert_eq!(error.status(), 404);
}

#[tokio::test]
async fn garbled_or_foreign_cursors_are_validation_errors() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob, carol) = (
        user(&store, "alice").await,
        user(&store, "bob").await,
        user(&store, "carol").await,
    );
    for _ in 0..3 {
        send(&store, &alice, &bob, "x").await;
        send(&store, &alice, &carol, "y").await;
    }
    let garbled = PageRequest::after(1, "not-a-cursor!!");
    assert_eq!(
        store
            .conversations(alice.id, &garbled)
            .await
            .unwrap_err()
            .status(),
        400
    );
    assert_eq!(
        store
            .messages(alice.id, bob.id, &garbled)
            .await
            .unwrap_err()
            .status(),
        400
    );
    assert_eq!(
        store
            .message_requests(alice.id, &garbled)
            .await
            .unwrap_err()
            .status(),
        400
    );

    // A cursor of the Alice–Bob thread cannot read the Alice–Carol thread.
    let page = store
        .messages(alice.id, bob.id, &PageRequest::first(1))
        .await
        .unwrap();
    let foreign = PageRequest::after(1, page.next_cursor.unwrap());
    assert_eq!(
        store
            .messages(alice.id, carol.id, &foreign)
            .await
            .unwrap_err()
            .status(),
        400
    );
    // Nor is Alice's conversations cursor valid for Bob's.
    let page = store
        .conversations(alice.id, &PageRequest::first(1))
        .await
        .unwrap();
    let foreign = PageRequest::after(1, page.next_cursor.unwrap());
    assert_eq!(
        store
            .conversations(bob.id, &foreign)
            .await
            .unwrap_err()
            .status(),
        400
    );
}

#[tokio::test]
async fn concurrent_retries_with_one_client_message_id_store_one_message() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    let attempts = (0..8).map(|_| {
        let store = store.clone();
        let new = NewMessage::new(alice.id, bob.id, "once", Some("c-race"), Utc::now()).unwrap();
        async move { store.send_message(new).await.unwrap() }
    });
    let results = futures::future::join_all(attempts).await;
    let ids: HashSet<_> = results.iter().map(|r| r.message.id).collect();
    assert_eq!(ids.len(), 1, "every attempt returns the one stored message");
    assert_eq!(results.iter().filter(|r| r.created).count(), 1);
    let thread = store
        .messages(alice.id, bob.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(thread.items.len(), 1);
}

#[tokio::test]
async fn a_thread_is_accepted_by_its_writer_and_by_a_recipient_who_accepts_it() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob, carol) = (
        user(&store, "alice").await,
        user(&store, "bob").await,
        user(&store, "carol").await,
    );
    make_private(&store, &bob).await;
    assert!(
        !store.thread_accepted(bob.id, alice.id).await.unwrap(),
        "no conversation yet"
    );

    send(&store, &alice, &bob, "hi bob").await;
    assert!(
        store.thread_accepted(alice.id, bob.id).await.unwrap(),
        "writing is accepting"
    );
    assert!(
        !store.thread_accepted(bob.id, alice.id).await.unwrap(),
        "a pending request is not accepted"
    );

    store
        .accept_message_request(bob.id, alice.id)
        .await
        .unwrap();
    assert!(store.thread_accepted(bob.id, alice.id).await.unwrap());
    assert!(
        !store.thread_accepted(bob.id, carol.id).await.unwrap(),
        "per thread"
    );
}
