//! Access pattern 31: delivery markers — the writer push marks the events it delivered to
//! their whole audience, and the stream router reads the markers of a batch's events to
//! skip them.

use std::collections::HashSet;

use chrono::{Duration, Utc};
use shared::clock::to_millis;
use shared::store::dynamo::number_attribute;
use shared::store::keys;
use shared::store::{DELIVERY_MARKER_ENTITY, DELIVERY_MARKER_TTL};
use shared::testkit::TestDb;
use uuid::Uuid;

#[tokio::test]
async fn marked_events_are_found_among_many_and_expire_after_an_hour() {
    let db = TestDb::start().await;
    let store = db.store();
    // More than two BatchGetItem chunks of 100, with duplicates.
    let events: Vec<Uuid> = (0..250).map(|_| Uuid::now_v7()).collect();
    let marked: HashSet<Uuid> = [events[0], events[120], events[249]].into();
    let at = to_millis(Utc::now());
    for event in &marked {
        store
            .mark_delivered(*event, &["a=".into(), "b=".into(), "c=".into()], at)
            .await
            .unwrap();
    }
    let mut asked = events.clone();
    asked.extend_from_slice(&events[100..130]);
    assert_eq!(store.delivered_among(&asked).await.unwrap(), marked);
    assert!(store.delivered_among(&[]).await.unwrap().is_empty());
    assert!(store
        .delivered_among(&[events[1]])
        .await
        .unwrap()
        .is_empty());

    // Marking again (a retried push) replaces the marker.
    let reached: Vec<String> = ["a=", "b=", "c=", "d="].map(str::to_owned).into();
    store
        .mark_delivered(events[0], &reached, at + Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(
        store.delivered_among(&events[..1]).await.unwrap(),
        HashSet::from([events[0]])
    );
    // The router reads which connections were reached, to push only to the others.
    let found = store.reached_connections(&events[..2]).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[&events[0]],
        reached.into_iter().collect::<HashSet<_>>()
    );

    let item = store
        .table
        .get(&keys::delivery_marker(events[120]))
        .await
        .unwrap()
        .expect("the marker item");
    assert_eq!(
        item["entity"].as_s().unwrap(),
        DELIVERY_MARKER_ENTITY,
        "{item:?}"
    );
    let ttl = i64::try_from(DELIVERY_MARKER_TTL.as_secs()).unwrap();
    assert_eq!(
        number_attribute(&item, "expires_at").unwrap(),
        at.timestamp() + ttl
    );
    assert_eq!(number_attribute(&item, "connections").unwrap(), 3);
}
