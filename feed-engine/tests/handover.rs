//! Handing partitions between cluster nodes, on real RocksDB: a partition's own events
//! replayed with their sequence recorded apart from the node's, readers forgotten and served
//! the same feed again, and recent posts fanned out again without duplicating an entry.

mod common;

use common::Env;
use feed_engine::{PolicyKind, WriteCtx};

#[test]
fn a_partition_s_replayed_events_record_their_own_position_and_leave_the_node_s_alone() {
    let env = Env::new(|_| {});
    let [r, a] = [env.user("r"), env.user("a")];
    env.e().follow(r, a).unwrap();
    let p = env.post(a, "x");
    env.e().note_applied(40).unwrap();
    assert_eq!(env.e().partition_seq(7).unwrap(), None);
    // A read marker replayed as partition 7's event 12: the partition's position moves, the
    // node's applied sequence does not go back.
    let w = env
        .e()
        .at(WriteCtx::replayed_for_partition(7, 12, p.created_at_ms + 1, None));
    w.set_read_marker(r, p.id).unwrap();
    assert_eq!(env.e().read_marker(r).unwrap(), Some(p.id));
    assert_eq!(env.e().partition_seq(7).unwrap(), Some(12));
    assert_eq!(env.e().applied_seq().unwrap(), 40);
    env.e().set_partition_seq(7, None).unwrap();
    assert_eq!(env.e().partition_seq(7).unwrap(), None);
    env.e().set_partition_seq(3, Some(0)).unwrap();
    assert_eq!(env.e().partition_seq(3).unwrap(), Some(0));
}

#[test]
fn forgotten_readers_lose_their_stored_timeline_and_read_the_same_feed_from_the_outboxes() {
    let env = Env::new(|c| c.policy.kind = PolicyKind::AlwaysPush);
    let [r, keep, a] = [env.user("r"), env.user("keep"), env.user("a")];
    env.e().follow(r, a).unwrap();
    env.e().follow(keep, a).unwrap();
    let ids: Vec<u64> = (0..5).map(|i| env.post(a, &format!("p{i}")).id).collect();
    env.idle();
    let before = env.feed_ids(r, 10);
    assert_eq!(before.len(), 5);
    assert_eq!(env.stored_ids(r).len(), 5, "pushed while kept");
    let n = env.e().forget_readers(&|u| u == r).unwrap();
    assert!(n >= 1, "r had a stored record");
    assert!(env.stored_ids(r).is_empty(), "the stored timeline is gone");
    assert_eq!(env.stored_ids(keep).len(), 5, "others are untouched");
    // Served by pull (then rebuilt), the feed is the same.
    assert_eq!(env.feed_ids(r, 10), before);
    env.idle();
    assert_eq!(env.feed_ids(r, 10), before);
    let mut want = ids.clone();
    want.reverse();
    assert_eq!(before, want);
}

#[test]
fn recent_posts_fanned_out_again_reach_each_reader_once_and_older_ones_are_left() {
    let env = Env::new(|c| c.policy.kind = PolicyKind::AlwaysPush);
    let [r, a, b] = [env.user("r"), env.user("a"), env.user("b")];
    env.e().follow(r, a).unwrap();
    env.e().follow(r, b).unwrap();
    let old = env.post(a, "old");
    env.idle();
    env.clock.advance(60_000);
    let since = old.created_at_ms + 30_000;
    let new_a = env.post(a, "new a");
    let new_b = env.post(b, "new b");
    env.idle();
    assert_eq!(env.e().oldest_pending_ms().unwrap(), None, "nothing pending once idle");
    let n = env.e().refan_since(&|u| u == a, since).unwrap();
    assert_eq!(n, 1, "only a's post since then: {n}");
    env.idle();
    let stored = env.stored_ids(r);
    assert_eq!(stored, vec![new_b.id, new_a.id, old.id], "each entry once");
}

#[test]
fn readers_of_partitions_given_away_are_forgotten_and_those_held_are_kept() {
    let env = Env::new(|c| c.policy.kind = PolicyKind::AlwaysPush);
    let [away, held, a] = [env.user("away"), env.user("held"), env.user("a")];
    env.e().follow(away, a).unwrap();
    env.e().follow(held, a).unwrap();
    for i in 0..4 {
        env.post(a, &format!("p{i}"));
    }
    env.idle();
    let before = env.feed_ids(away, 10);
    assert_eq!(env.stored_ids(away).len(), 4);
    assert_eq!(env.stored_ids(held).len(), 4);
    // `away` lives on partition 1, given away (a position recorded); everyone else on 2, held.
    let partition = move |u| if u == away { 1 } else { 2 };
    env.e().set_partition_seq(1, Some(9)).unwrap();
    assert_eq!(env.e().forget_given_away(&partition).unwrap(), 1);
    assert!(
        env.stored_ids(away).is_empty(),
        "a given-away reader's timeline is gone"
    );
    assert_eq!(env.stored_ids(held).len(), 4, "a held reader's is kept");
    assert_eq!(env.stored_ids(a).len(), 4, "the author is held too");
    // Taken back: nothing more is forgotten, and the reader reads the same feed by pull.
    env.e().set_partition_seq(1, None).unwrap();
    assert_eq!(env.e().forget_given_away(&partition).unwrap(), 0);
    assert_eq!(env.feed_ids(away, 10), before);
}

#[test]
fn a_user_created_on_a_partition_held_elsewhere_gets_no_reader_record_here() {
    let env = Env::new(|_| {});
    assert!(env.e().set_owner_filter(std::sync::Arc::new(|u| u % 2 == 0)));
    let users: Vec<u64> = (0..6).map(|i| env.user(&format!("u{i}"))).collect();
    let kept = users.iter().filter(|&&u| u % 2 == 0).count();
    assert!(kept > 0 && kept < users.len(), "ids {users:?} fall on both sides");
    // Every user is held by partition 1, given away: exactly the records written are forgotten.
    env.e().set_partition_seq(1, Some(0)).unwrap();
    assert_eq!(env.e().forget_given_away(&|_| 1).unwrap(), kept);
    for &u in &users {
        assert_eq!(env.e().get_user(u).unwrap().id, u, "the profile is everywhere");
    }
}

/// A node restored from another node's checkpoint drops that node's unfinished fanout instead of
/// running it: the jobs held at open go with their records, the backlog and the fanout floor
/// empty, and a later open finds nothing to resume. (No fanout worker here, so the post's job
/// stays pending as a crash would leave it.)
#[test]
fn fanout_held_from_another_node_s_checkpoint_is_dropped_with_its_records() {
    let mut env = Env::new(|c| {
        c.fanout_workers = 0;
        c.hold_pending_fanout = true;
    });
    let [r, a] = [env.user("r"), env.user("a")];
    env.e().follow(r, a).unwrap();
    env.post(a, "left pending by the other node");
    assert!(env.e().oldest_pending_ms().unwrap().is_some(), "the job is pending");
    env.reopen();
    assert_eq!(env.e().fanout_backlog(), 1, "held at open, counted in the backlog");
    assert_eq!(env.e().discard_held_fanout().unwrap(), 1);
    assert_eq!(env.e().fanout_backlog(), 0);
    assert_eq!(env.e().oldest_pending_ms().unwrap(), None, "its record is gone");
    assert_eq!(env.e().discard_held_fanout().unwrap(), 0, "nothing held twice");
    env.reopen_with(|c| c.fanout_workers = 2);
    assert_eq!(env.e().fanout_backlog(), 0, "nothing to resume at the next open");
    env.e().resume_fanout();
    assert!(env.e().wait_idle(std::time::Duration::from_secs(5)));
    assert!(env.stored_ids(r).is_empty(), "the dropped job never ran");
}
