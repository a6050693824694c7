//! Access patterns 11–16: post by id, author timeline, home feed, has-liked, likes of a
//! post, comments of a post — plus the like/comment counters and their notifications.

use std::collections::HashSet;

use chrono::{Duration, Utc};
use shared::domain::{new_id, CommentText, MediaUrl, NotificationKind, Post, PostText, User};
use shared::store::dynamo::Query;
use shared::store::keys;
use shared::store::page::{KeyShape, PageRequest};
use shared::store::DynamoStore;
use shared::store::{NewComment, NewPost, PostEdit};
use shared::testkit::TestDb;

use crate::support::{stored_notifications, user, walk_pages};

async fn post(store: &DynamoStore, author: &User, text: &str) -> Post {
    store
        .create_post(NewPost {
            author: author.id,
            text: PostText::parse(text).unwrap(),
            media_url: None,
            created_at: Utc::now(),
        })
        .await
        .unwrap_or_else(|e| panic!("posting {text}: {e:?}"))
}

async fn comment(
    store: &DynamoStore,
    post: &Post,
    author: &User,
    text: &str,
) -> shared::domain::Comment {
    store
        .add_comment(
            post,
            NewComment {
                author: author.id,
                text: CommentText::parse(text).unwrap(),
                created_at: Utc::now(),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("commenting {text}: {e:?}"))
        .into_outcome()
}

#[tokio::test]
async fn post_by_id_and_many_posts_by_id_and_the_author_post_count() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = user(&store, "alice").await;
    let first = store
        .create_post(NewPost {
            author: alice.id,
            text: PostText::parse("hello").unwrap(),
            media_url: Some(MediaUrl::parse("https://cdn.example.com/a.png").unwrap()),
            created_at: Utc::now(),
        })
        .await
        .unwrap();
    let second = post(&store, &alice, "again").await;

    let loaded = store.get_post(first.id).await.unwrap().unwrap();
    assert_eq!(loaded, first);
    assert_eq!(
        loaded.media_url.as_deref(),
        Some("https://cdn.example.com/a.png")
    );
    assert_eq!(loaded.like_count, 0);
    assert_eq!(loaded.edited_at, None);
    assert_eq!(store.get_post(new_id()).await.unwrap(), None);

    let many = store
        .get_posts(&[first.id, second.id, new_id()])
        .await
        .unwrap();
    assert_eq!(many.len(), 2);
    assert_eq!(many[&second.id].text, "again");
    assert_eq!(
        store.get_user(alice.id).await.unwrap().unwrap().post_count,
        2
    );
}

#[tokio::test]
async fn a_post_by_an_unknown_author_is_not_found_and_writes_nothing() {
    let db = TestDb::start().await;
    let store = db.store();
    let before = db.item_count().await;
    let error = store
        .create_post(NewPost {
            author: new_id(),
            text: PostText::parse("ghost").unwrap(),
            media_url: None,
            created_at: Utc::now(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.status(), 404);
    assert_eq!(db.item_count().await, before);
}

#[tokio::test]
async fn edits_are_for_the_author_inside_the_window_only() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let created = post(&store, &alice, "first draft").await;
    let at = |seconds| created.created_at + Duration::seconds(seconds);

    let edited = store
        .edit_post(PostEdit {
            post: created.id,
            editor: alice.id,
            text: PostText::parse("second draft").unwrap(),
            now: at(119),
        })
        .await
        .unwrap();
    assert_eq!(edited.text, "second draft");
    assert_eq!(edited.edited_at, Some(at(119)));
    assert_eq!(edited.created_at, created.created_at);

    let by_bob = store
        .edit_post(PostEdit {
            post: created.id,
            editor: bob.id,
            text: PostText::parse("hijacked").unwrap(),
            now: at(1),
        })
        .await
        .unwrap_err();
    assert_eq!((by_bob.status(), by_bob.code()), (403, "forbidden"));

    let late = store
        .edit_post(PostEdit {
            post: created.id,
            editor: alice.id,
            text: PostText::parse("too late").unwrap(),
            now: at(121),
        })
        .await
        .unwrap_err();
    assert_eq!((late.status(), late.code()), (403, "edit_window_closed"));

    let missing = store
        .edit_post(PostEdit {
            post: new_id(),
            editor: alice.id,
            text: PostText::parse("x").unwrap(),
            now: at(1),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        store.get_post(created.id).await.unwrap().unwrap().text,
        "second draft"
    );
}

#[tokio::test]
async fn deleting_a_post_is_for_its_author_and_takes_likes_and_comments_with_it() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let doomed = post(&store, &alice, "doomed").await;
    store.like(&doomed, bob.id, Utc::now()).await.unwrap();
    comment(&store, &doomed, &bob, "nice").await;

    let error = store.delete_post(doomed.id, bob.id).await.unwrap_err();
    assert_eq!(error.status(), 403);
    assert!(store.get_post(doomed.id).await.unwrap().is_some());

    store.delete_post(doomed.id, alice.id).await.unwrap();
    assert_eq!(store.get_post(doomed.id).await.unwrap(), None);
    assert_eq!(
        store.get_user(alice.id).await.unwrap().unwrap().post_count,
        0
    );
    let page = PageRequest::first(10);
    assert_eq!(
        store.comments(doomed.id, &page).await.unwrap_err().status(),
        404
    );
    assert_eq!(
        store.likes(doomed.id, &page).await.unwrap_err().status(),
        404
    );
    assert!(
        !store.has_liked(bob.id, doomed.id).await.unwrap(),
        "likes are cleaned up"
    );
    assert_eq!(
        store
            .like(&doomed, bob.id, Utc::now())
            .await
            .unwrap_err()
            .status(),
        404
    );
    let partition = keys::post_partition(doomed.id);
    let left = store
        .table
        .query_all(&Query::new(KeyShape::Table, &partition), 10)
        .await
        .unwrap();
    assert!(left.is_empty(), "the post partition is emptied: {left:?}");
    let author_posts = store.author_posts(alice.id, &page).await.unwrap();
    assert!(author_posts.items.is_empty());

    assert_eq!(
        store
            .delete_post(doomed.id, alice.id)
            .await
            .unwrap_err()
            .status(),
        404
    );
}

#[tokio::test]
async fn author_timeline_pages_newest_first_through_every_post_once() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let mut written = Vec::new();
    for i in 0..8 {
        written.push(post(&store, &alice, &format!("post {i}")).await.id);
    }
    post(&store, &bob, "not alice's").await;

    let (posts, pages) = walk_pages(3, |page| {
        let store = store.clone();
        async move { store.author_posts(alice.id, &page).await }
    })
    .await;
    assert_eq!(pages, 3);
    let ids: Vec<_> = posts.iter().map(|p| p.id).collect();
    written.reverse();
    assert_eq!(ids, written, "newest first, each once");
    assert!(posts.iter().all(|p| p.author_id == alice.id));
}

#[tokio::test]
async fn a_garbled_or_foreign_timeline_cursor_is_a_validation_error() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let mut alice_post = None;
    for i in 0..3 {
        alice_post = Some(post(&store, &alice, &format!("a{i}")).await);
        post(&store, &bob, &format!("b{i}")).await;
    }
    let alice_post = alice_post.unwrap();
    comment(&store, &alice_post, &bob, "one").await;
    comment(&store, &alice_post, &bob, "two").await;
    let cursor = store
        .author_posts(alice.id, &PageRequest::first(1))
        .await
        .unwrap()
        .next_cursor
        .unwrap();
    let foreign = store
        .author_posts(bob.id, &PageRequest::after(1, cursor))
        .await
        .unwrap_err();
    assert_eq!(
        foreign.status(),
        400,
        "alice's cursor must not read bob's timeline"
    );
    for garbage in ["garbage!!", "e30", "bm90IGpzb24"] {
        let request = PageRequest::after(1, garbage);
        assert_eq!(
            store
                .author_posts(alice.id, &request)
                .await
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            store
                .merged_feed(alice.id, &request)
                .await
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            store
                .comments(alice_post.id, &request)
                .await
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            store
                .likes(alice_post.id, &request)
                .await
                .unwrap_err()
                .status(),
            400
        );
    }
}

#[tokio::test]
async fn feed_merges_followed_authors_newest_first_without_duplicates_or_blocked_authors() {
    let db = TestDb::start().await;
    let store = db.store();
    let viewer = user(&store, "viewer").await;
    let ann = user(&store, "ann").await;
    let ben = user(&store, "ben").await;
    let cat = user(&store, "cat").await;
    let stranger = user(&store, "stranger").await;
    let now = Utc::now();
    for followee in [&ann, &ben, &cat] {
        assert!(
            store
                .follow(viewer.id, followee.id, now)
                .await
                .unwrap()
                .outcome
        );
    }
    // Interleave authors so every page mixes timelines.
    let mut expected = Vec::new();
    for round in 0..4 {
        for author in [&ann, &viewer, &ben, &stranger, &cat] {
            let written = post(&store, author, &format!("{} {round}", author.username)).await;
            if author.id != stranger.id {
                expected.push(written.id);
            }
        }
    }
    expected.reverse();

    let (feed, pages) = walk_pages(5, |page| {
        let store = store.clone();
        async move { store.merged_feed(viewer.id, &page).await }
    })
    .await;
    let ids: Vec<_> = feed.iter().map(|p| p.id).collect();
    assert_eq!(pages, 4, "16 posts in pages of 5");
    assert_eq!(
        ids, expected,
        "own and followed posts, newest first, each once"
    );
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());

    // Cat blocks the viewer: cat's posts leave the viewer's feed.
    store.block(cat.id, viewer.id, Utc::now()).await.unwrap();
    let (after_block, _) = walk_pages(7, |page| {
        let store = store.clone();
        async move { store.merged_feed(viewer.id, &page).await }
    })
    .await;
    assert_eq!(after_block.len(), 12);
    assert!(after_block.iter().all(|p| p.author_id != cat.id));
}

#[tokio::test]
async fn feed_of_a_user_who_follows_nobody_is_their_own_posts() {
    let db = TestDb::start().await;
    let store = db.store();
    let loner = user(&store, "loner").await;
    let other = user(&store, "other").await;
    post(&store, &other, "not for the loner").await;
    let empty = store
        .merged_feed(loner.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert!(empty.items.is_empty());
    assert_eq!(empty.next_cursor, None);
    let own = post(&store, &loner, "mine").await;
    let page = store
        .merged_feed(loner.id, &PageRequest::first(1))
        .await
        .unwrap();
    assert_eq!(page.items, vec![own]);
    assert_eq!(page.next_cursor, None, "no next page when nothing is left");
}

#[tokio::test]
async fn like_twice_counts_once_and_unlike_twice_counts_zero() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let liked = post(&store, &alice, "like me").await;

    for _ in 0..2 {
        let state = store.like(&liked, bob.id, Utc::now()).await.unwrap();
        assert!(state.liked);
        assert_eq!(state.like_count, 1);
    }
    assert!(store.has_liked(bob.id, liked.id).await.unwrap());
    for _ in 0..2 {
        let state = store.unlike(liked.id, bob.id).await.unwrap();
        assert!(!state.liked);
        assert_eq!(state.like_count, 0);
    }
    assert!(!store.has_liked(bob.id, liked.id).await.unwrap());
    assert_eq!(
        store.get_post(liked.id).await.unwrap().unwrap().like_count,
        0
    );
    assert_eq!(
        store.unlike(new_id(), bob.id).await.unwrap_err().status(),
        404
    );
}

#[tokio::test]
async fn concurrent_likes_of_the_same_pair_count_once() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let liked = post(&store, &alice, "race").await;
    let attempts = (0..10).map(|_| {
        let store = store.clone();
        let liked = liked.clone();
        async move { store.like(&liked, bob.id, Utc::now()).await }
    });
    for result in futures::future::join_all(attempts).await {
        assert!(result.unwrap().liked);
    }
    assert_eq!(
        store.get_post(liked.id).await.unwrap().unwrap().like_count,
        1
    );
    assert_eq!(stored_notifications(&store, alice.id).await.len(), 1);
}

#[tokio::test]
async fn a_like_notifies_the_author_once_and_a_self_like_never() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let liked = post(&store, &alice, "like me").await;

    let first = store.like(&liked, bob.id, Utc::now()).await.unwrap();
    let sent = stored_notifications(&store, alice.id).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, NotificationKind::Like);
    assert_eq!(sent[0].actor_id, bob.id);
    assert_eq!(sent[0].post_id, Some(liked.id));
    assert_eq!(
        first.notification.as_ref(),
        Some(&sent[0]),
        "the like returns the notification its transaction wrote"
    );

    // like / unlike / like never spams.
    store.unlike(liked.id, bob.id).await.unwrap();
    let again = store.like(&liked, bob.id, Utc::now()).await.unwrap();
    assert_eq!(again.like_count, 1, "the like itself still counts");
    assert_eq!(again.notification, None);
    assert_eq!(stored_notifications(&store, alice.id).await.len(), 1);

    let own = store.like(&liked, alice.id, Utc::now()).await.unwrap();
    assert_eq!(own.like_count, 2);
    assert_eq!(own.notification, None);
    assert_eq!(
        stored_notifications(&store, alice.id).await.len(),
        1,
        "no notification for a self-like"
    );
}

#[tokio::test]
async fn a_blocked_user_can_neither_like_nor_comment() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let guarded = post(&store, &alice, "not for bob").await;
    store.block(alice.id, bob.id, Utc::now()).await.unwrap();

    assert_eq!(
        store
            .like(&guarded, bob.id, Utc::now())
            .await
            .unwrap_err()
            .status(),
        404
    );
    let error = store
        .add_comment(
            &guarded,
            NewComment {
                author: bob.id,
                text: CommentText::parse("let me in").unwrap(),
                created_at: Utc::now(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(error.status(), 404);
    let current = store.get_post(guarded.id).await.unwrap().unwrap();
    assert_eq!((current.like_count, current.comment_count), (0, 0));
    assert!(stored_notifications(&store, alice.id).await.is_empty());
}

#[tokio::test]
async fn has_liked_for_a_page_of_posts_and_likes_of_a_post() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = user(&store, "alice").await;
    let fans = [
        user(&store, "fan_a").await,
        user(&store, "fan_b").await,
        user(&store, "fan_c").await,
    ];
    let posts = [
        post(&store, &alice, "one").await,
        post(&store, &alice, "two").await,
        post(&store, &alice, "three").await,
    ];
    store.like(&posts[0], fans[0].id, Utc::now()).await.unwrap();
    store.like(&posts[2], fans[0].id, Utc::now()).await.unwrap();
    for fan in &fans {
        store.like(&posts[1], fan.id, Utc::now()).await.unwrap();
    }

    let ids: Vec<_> = posts.iter().map(|p| p.id).collect();
    let liked = store.liked_among(fans[0].id, &ids).await.unwrap();
    assert_eq!(
        liked,
        HashSet::from([posts[0].id, posts[1].id, posts[2].id])
    );
    let liked = store.liked_among(fans[1].id, &ids).await.unwrap();
    assert_eq!(liked, HashSet::from([posts[1].id]));
    assert!(store.liked_among(fans[1].id, &[]).await.unwrap().is_empty());

    let (likes, pages) = walk_pages(2, |page| {
        let store = store.clone();
        let post = posts[1].id;
        async move { store.likes(post, &page).await }
    })
    .await;
    assert_eq!(pages, 2);
    let likers: HashSet<_> = likes.iter().map(|l| l.user_id).collect();
    assert_eq!(likers, fans.iter().map(|f| f.id).collect());
    assert!(likes.iter().all(|l| l.post_id == posts[1].id));
}

#[tokio::test]
async fn comments_page_oldest_first_and_notify_the_post_author() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let discussed = post(&store, &alice, "discuss").await;
    let mut written = Vec::new();
    for i in 0..7 {
        let author = if i % 2 == 0 { &bob } else { &alice };
        written.push(
            comment(&store, &discussed, author, &format!("c{i}"))
                .await
                .id,
        );
    }
    let (comments, pages) = walk_pages(3, |page| {
        let store = store.clone();
        async move { store.comments(discussed.id, &page).await }
    })
    .await;
    assert_eq!(pages, 3);
    assert_eq!(
        comments.iter().map(|c| c.id).collect::<Vec<_>>(),
        written,
        "oldest first"
    );
    assert_eq!(
        store
            .get_post(discussed.id)
            .await
            .unwrap()
            .unwrap()
            .comment_count,
        7
    );

    let sent = stored_notifications(&store, alice.id).await;
    assert_eq!(
        sent.len(),
        4,
        "bob's four comments notify alice; her own three do not"
    );
    assert!(sent
        .iter()
        .all(|n| n.kind == NotificationKind::Comment && n.actor_id == bob.id));
    assert!(sent
        .iter()
        .all(|n| n.comment_id.is_some_and(|c| written.contains(&c))));
    assert!(stored_notifications(&store, bob.id).await.is_empty());
}

#[tokio::test]
async fn comments_are_deleted_by_their_author_or_the_post_author_only() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let discussed = post(&store, &alice, "discuss").await;
    let by_bob = comment(&store, &discussed, &bob, "bob's").await;
    let by_carol = comment(&store, &discussed, &carol, "carol's").await;

    let error = store
        .delete_comment(&discussed, by_bob.id, carol.id)
        .await
        .unwrap_err();
    assert_eq!(error.status(), 403, "carol may not delete bob's comment");
    store
        .delete_comment(&discussed, by_bob.id, bob.id)
        .await
        .unwrap();
    store
        .delete_comment(&discussed, by_carol.id, alice.id)
        .await
        .unwrap();
    let error = store
        .delete_comment(&discussed, by_bob.id, bob.id)
        .await
        .unwrap_err();
    assert_eq!(error.status(), 404);

    let left = store
        .comments(discussed.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert!(left.items.is_empty());
    assert_eq!(
        store
            .get_post(discussed.id)
            .await
            .unwrap()
            .unwrap()
            .comment_count,
        0
    );
}
