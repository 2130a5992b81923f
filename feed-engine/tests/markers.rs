//! Read markers on real RocksDB: durable, validated, and protecting unread entries from trims —
//! stored up to `max_unread_kept`, assembled from outboxes past it — paged oldest first.

mod common;

use common::Env;
use feed_engine::{EngineConfig, Error, FeedPath, UserId};

/// A reader following 300 authors; returns (reader, authors).
fn reader_of_300(env: &Env) -> (UserId, Vec<UserId>) {
    let reader = env.user("reader");
    let authors = env
        .e()
        .create_users(&(0..300).map(|i| format!("a{i}")).collect::<Vec<_>>())
        .unwrap();
    let edges: Vec<_> = authors.iter().map(|&a| (reader, a)).collect();
    env.e().follow_many(&edges).unwrap();
    (reader, authors)
}

/// Every page of the unread feed, oldest first.
fn unread_ids(env: &Env, reader: UserId, page: usize) -> Vec<u64> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let p = env.e().unread_feed(reader, page, cursor.as_deref()).unwrap();
        assert_eq!(p.path, FeedPath::Unread);
        out.extend(p.items.iter().map(|i| i.post.id));
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
        assert!(out.len() < 100_000, "unread feed never ends");
    }
}

/// 3,000 posts (10 rounds over 300 authors), delivered; their ids in publish order.
fn three_thousand_posts(env: &Env, authors: &[UserId]) -> Vec<u64> {
    let mut ids = Vec::new();
    for round in 0..10 {
        for &a in authors {
            ids.push(env.post(a, &format!("round {round}")).id);
        }
        env.idle();
    }
    ids
}

#[test]
fn marker_is_durable_and_bad_input_changes_nothing() {
    let mut env = Env::new(|_| {});
    let [r, a] = [env.user("r"), env.user("a")];
    env.e().follow(r, a).unwrap();
    let p = env.post(a, "first");
    env.idle();
    assert_eq!(env.e().read_marker(r).unwrap(), None);
    env.e().set_read_marker(r, p.id).unwrap();
    let before = env.e().data_checksum().unwrap();
    assert!(matches!(
        env.e().set_read_marker(r, p.id + 12_345),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(env.e().set_read_marker(9_999, p.id), Err(Error::NotFound(_))));
    assert!(matches!(env.e().read_marker(9_999), Err(Error::NotFound(_))));
    assert!(matches!(
        env.e().unread_feed(r, 0, None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        env.e().unread_feed(r, 10, Some("not a cursor")),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(env.e().data_checksum().unwrap(), before);
    env.reopen();
    assert_eq!(env.e().read_marker(r).unwrap(), Some(p.id));
    // Nothing above the marker yet; a newer post is the one unread entry.
    assert!(unread_ids(&env, r, 10).is_empty());
    let q = env.post(a, "second");
    env.idle();
    assert_eq!(unread_ids(&env, r, 10), vec![q.id]);
}

/// The length a default timeline is trimmed back from: `cap × (1 + slack)`.
fn trim_bound() -> usize {
    let c = EngineConfig::default();
    (c.timeline_cap as f64 * (1.0 + c.trim_slack)) as usize
}

#[test]
fn absent_readers_unread_entries_all_survive_3000_newer_deliveries() {
    let env = Env::new(|c| c.max_unread_kept = 5000);
    let (reader, authors) = reader_of_300(&env);
    let other = env.user("other");
    let edges: Vec<_> = authors.iter().map(|&a| (other, a)).collect();
    env.e().follow_many(&edges).unwrap();
    let seen = env.post(authors[0], "read before leaving");
    env.idle();
    env.e().set_read_marker(reader, seen.id).unwrap();
    let newer = three_thousand_posts(&env, &authors);
    // The reader with a marker keeps every unread entry stored; the one without is trimmed.
    let stored = env.stored_ids(reader);
    assert!(newer.iter().all(|p| stored.contains(p)), "an unread entry was trimmed");
    assert!(
        env.stored_ids(other).len() <= trim_bound(),
        "a reader without a marker keeps the cap"
    );
    // Oldest unread first, every one of them, exactly once, across pages.
    assert_eq!(unread_ids(&env, reader, 100), newer);
    // The newest-first feed is unchanged by the marker.
    assert_eq!(
        env.e().home_feed(reader, 1, None).unwrap().items[0].post.id,
        newer[2999]
    );
    // Moving the marker forward makes the rest trimmable again.
    env.e().set_read_marker(reader, newer[2999]).unwrap();
    assert!(unread_ids(&env, reader, 100).is_empty());
    for &a in authors.iter().take(150) {
        env.post(a, "after catching up");
    }
    env.idle();
    assert!(
        env.stored_ids(reader).len() <= trim_bound(),
        "read entries are trimmed to the cap"
    );
}

#[test]
fn unread_past_the_bound_is_assembled_from_outboxes() {
    let env = Env::new(|c| c.max_unread_kept = 1200);
    let (reader, authors) = reader_of_300(&env);
    let seen = env.post(authors[0], "read before leaving");
    env.idle();
    env.e().set_read_marker(reader, seen.id).unwrap();
    let newer = three_thousand_posts(&env, &authors);
    // Storage stays bounded (the bound plus one trim period of slack) ...
    let stored = env.stored_ids(reader).len();
    let period = trim_bound() - EngineConfig::default().timeline_cap;
    assert!((1200..=1200 + period).contains(&stored), "stored {stored}");
    // ... and still every unread post is reachable, oldest first.
    assert_eq!(unread_ids(&env, reader, 50), newer);
}
