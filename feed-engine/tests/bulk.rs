//! Bulk loading on real RocksDB: the same records as one-by-one calls, exact counters, merged
//! recent posts, and bad input refused before anything of its batch is written.

mod common;

use common::Env;
use feed_engine::Error;

#[test]
fn bulk_users_and_follows_match_single_calls() {
    let mut env = Env::new(|_| {});
    let author = env.user("author");
    let early = env.post(author, "before the follows");
    env.idle();
    let handles: Vec<String> = (0..25_000).map(|i| format!("fan{i}")).collect();
    let fans = env.e().create_users(&handles).unwrap();
    assert_eq!(fans.len(), 25_000);
    assert_eq!(env.e().user_by_handle("fan24999").unwrap().id, fans[24_999]);
    let mut edges: Vec<_> = fans.iter().map(|&f| (f, author)).collect();
    // Duplicates in the list and edges that exist already are skipped, not double counted.
    edges.push((fans[0], author));
    env.e().follow(fans[1], author).unwrap();
    assert_eq!(env.e().follow_many(&edges).unwrap(), 24_999);
    assert_eq!(env.e().get_user(author).unwrap().followers, 25_000);
    assert_eq!(env.e().get_user(fans[7]).unwrap().following, 1);
    // The followee's recent post was merged into the new followers' timelines.
    assert_eq!(env.stored_ids(fans[12_345]), vec![early.id]);
    let p = env.post(author, "after the follows");
    env.idle();
    for &f in [fans[0], fans[10_000], fans[24_999]].iter() {
        assert_eq!(env.feed_ids(f, 10), vec![p.id, early.id]);
    }
    env.reopen();
    assert_eq!(env.e().get_user(author).unwrap().followers, 25_000);
    assert!(env.e().is_following(fans[20_000], author).unwrap());
}

#[test]
fn bad_bulk_input_changes_nothing() {
    let env = Env::new(|_| {});
    let a = env.user("a");
    let private = env.e().create_user("private", true).unwrap().id;
    let before = env.e().data_checksum().unwrap();
    let taken = vec!["x1".to_string(), "a".to_string()];
    assert!(matches!(env.e().create_users(&taken), Err(Error::AlreadyExists(_))));
    let twice = vec!["y".to_string(), "y".to_string()];
    assert!(matches!(env.e().create_users(&twice), Err(Error::InvalidArgument(_))));
    let bad = vec!["ok".to_string(), "Not Ok".to_string()];
    assert!(matches!(env.e().create_users(&bad), Err(Error::InvalidArgument(_))));
    assert!(matches!(env.e().user_by_handle("x1"), Err(Error::NotFound(_))));
    let b = env.user("b");
    let before_follows = env.e().data_checksum().unwrap();
    assert_ne!(before, before_follows);
    for edges in [
        vec![(b, a), (a, a)],
        vec![(b, a), (a, 9_999)],
        vec![(b, a), (a, private)],
    ] {
        assert!(env.e().follow_many(&edges).is_err(), "{edges:?}");
    }
    assert_eq!(env.e().data_checksum().unwrap(), before_follows);
    env.e().block(a, b).unwrap();
    let blocked = env.e().data_checksum().unwrap();
    assert!(matches!(
        env.e().follow_many(&[(b, a)]),
        Err(Error::PermissionDenied(_))
    ));
    assert_eq!(env.e().data_checksum().unwrap(), blocked);
    assert!(!env.e().is_following(b, a).unwrap());
    assert_eq!(env.e().get_user(a).unwrap().followers, 0);
}

/// After a bulk load the store reports the work it still owes (here: the level-0 files a flush
/// left), and that work drains on its own: what loadgen waits for before it measures.
#[test]
fn storage_backlog_shows_a_bulk_loads_debt_and_settles() {
    let env = Env::new(|_| {});
    let handles: Vec<String> = (0..5_000).map(|i| format!("u{i}")).collect();
    let users = env.e().create_users(&handles).unwrap();
    let edges: Vec<_> = users.windows(2).map(|w| (w[0], w[1])).collect();
    env.e().follow_many(&edges).unwrap();
    // Flushes every family's memtable (and compacts only the timeline family).
    env.e().timeline_disk_usage().unwrap();
    let after = env.e().storage_backlog().unwrap();
    assert!(after.l0_files >= 1, "the flushed graph sits in level 0: {after:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let b = env.e().storage_backlog().unwrap();
        if b.settled() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never settled: {b:?}");
        std::thread::yield_now();
    }
}
