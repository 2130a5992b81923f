//! The follow graph split over partitions (cluster mode), on real RocksDB: a follow, unfollow or
//! approval applied from the log writes the acting user's side at once and the other user's side
//! as a follow-up; the other side applies it once, whatever the repeats; a block, applied
//! everywhere, wins over a half decided before it. One engine plays both partitions here: what
//! each side holds is checked through the table each side owns.

mod common;

use common::Env;
use feed_engine::{Engine, FollowState, GraphHalf, GraphItem, NotificationKind, UserId, Viewer, WriteCtx};

/// The follow-ups waiting, as the graph items their user's partition applies (origin 1).
fn graph_halves(e: &Engine) -> Vec<GraphItem> {
    let recs = e.followups((0, 0), 100).unwrap();
    let keys: Vec<_> = recs.iter().map(|&(k, _)| k).collect();
    e.clear_followups(&keys).unwrap();
    recs.into_iter().filter_map(|(k, f)| f.graph_item(k, |_| 1)).collect()
}

fn followers(e: &Engine, u: UserId) -> Vec<UserId> {
    e.followers(Viewer::Operator, u, 100, None).unwrap().users
}

fn following(e: &Engine, u: UserId) -> Vec<UserId> {
    e.following(Viewer::Operator, u, 100, None).unwrap().users
}

fn counts(e: &Engine, u: UserId) -> (u64, u64) {
    let p = e.get_user(u).unwrap();
    (p.followers, p.following)
}

#[test]
fn a_follow_s_two_halves_apply_once_each_and_agree() {
    let env = Env::new(|_| {});
    let [x, y] = [env.user("follower"), env.user("followee")];
    let e = env.e();
    assert!(e.partition_writes());
    let at = |seq: u64| e.at(WriteCtx::replayed(seq, 1_000_000 + seq, Some(seq << 12)));

    // The follower's side: at once, with the other side waiting as a follow-up.
    assert_eq!(at(10).follow(x, y).unwrap(), FollowState::Following);
    assert_eq!(following(e, x), vec![y]);
    assert_eq!(counts(e, x), (0, 1));
    assert!(
        followers(e, y).is_empty(),
        "the followee's side waits for its follow-up"
    );
    assert!(e.is_following(x, y).unwrap(), "either side answers whether x follows y");
    let halves = graph_halves(e);
    assert_eq!(halves.len(), 1);
    assert_eq!(
        (halves[0].half, halves[0].user, halves[0].other),
        (GraphHalf::Followed, y, x)
    );

    // The followee's side: applied once, however often it comes. The followee posted just
    // now, perhaps fanned out before this side counted the follower: a catch-up goes back.
    env.post(y, "meanwhile");
    assert_eq!(at(11).apply_user_followups(2, &[], &[], &halves).unwrap(), 1);
    assert_eq!(at(12).apply_user_followups(2, &[], &[], &halves).unwrap(), 0);
    assert_eq!(followers(e, y), vec![x]);
    assert_eq!(counts(e, y), (1, 0));
    let notes = e.notifications(y, 10, None).unwrap();
    assert_eq!(notes.groups.len(), 1);
    assert_eq!(notes.groups[0].newest.kind, NotificationKind::Followed);
    assert_eq!(notes.groups[0].actors, vec![x]);
    // It asks the follower's side to merge again what the followee posted meanwhile.
    let catch_up = graph_halves(e);
    assert_eq!(catch_up.len(), 1);
    assert_eq!(
        (catch_up[0].half, catch_up[0].user, catch_up[0].other),
        (GraphHalf::CatchUp, x, y)
    );
    assert_eq!(at(13).apply_user_followups(1, &[], &[], &catch_up).unwrap(), 1);
    assert_eq!(following(e, x), vec![y], "a catch-up changes no edge");
    // A followee who has not posted lately sends none.
    let q = env.user("quiet");
    assert_eq!(at(14).follow(x, q).unwrap(), FollowState::Following);
    let halves = graph_halves(e);
    assert_eq!(at(15).apply_user_followups(2, &[], &[], &halves).unwrap(), 1);
    assert_eq!(followers(e, q), vec![x]);
    assert!(
        graph_halves(e).is_empty(),
        "no catch-up for a followee with no recent post"
    );

    // An unfollow: the follower's side at once, the followee's when its half lands.
    assert!(at(20).unfollow(x, y).unwrap());
    assert_eq!(following(e, x), vec![q]);
    assert_eq!(followers(e, y), vec![x]);
    let halves = graph_halves(e);
    assert_eq!(halves[0].half, GraphHalf::Unfollowed);
    assert_eq!(at(21).apply_user_followups(2, &[], &[], &halves).unwrap(), 1);
    assert!(followers(e, y).is_empty());
    assert_eq!((counts(e, x), counts(e, y)), ((0, 1), (0, 0)));
    // The old follow half, late: behind the position applied, it changes nothing.
    let late = GraphItem {
        origin_seq: 10,
        half: GraphHalf::Followed,
        ..halves[0]
    };
    assert_eq!(at(22).apply_user_followups(2, &[], &[], &[late]).unwrap(), 0);
    assert!(followers(e, y).is_empty());
}

#[test]
fn a_request_is_decided_on_the_private_account_s_side_and_an_approval_comes_back() {
    let env = Env::new(|_| {});
    let x = env.user("asker");
    let z = env.e().create_user("private", true).unwrap().id;
    let e = env.e();
    assert!(e.partition_writes());
    let at = |seq: u64| e.at(WriteCtx::replayed(seq, 1_000_000 + seq, Some(seq << 12)));

    assert_eq!(at(10).follow(x, z).unwrap(), FollowState::Requested);
    assert!(e.pending_requests(z, 10, None).unwrap().users.is_empty());
    let halves = graph_halves(e);
    assert_eq!(halves[0].half, GraphHalf::Requested);
    assert_eq!(at(11).apply_user_followups(2, &[], &[], &halves).unwrap(), 1);
    assert_eq!(e.pending_requests(z, 10, None).unwrap().users, vec![x]);
    assert_eq!(
        e.notifications(z, 10, None).unwrap().groups[0].newest.kind,
        NotificationKind::Requested
    );

    // The approval: the account's side at once, the asker's follow edge when its half lands.
    at(12).approve(z, x).unwrap();
    assert!(e.pending_requests(z, 10, None).unwrap().users.is_empty());
    assert_eq!(followers(e, z), vec![x]);
    assert!(following(e, x).is_empty());
    let halves = graph_halves(e);
    assert_eq!(halves[0].half, GraphHalf::Approved);
    assert_eq!(at(13).apply_user_followups(1, &[], &[], &halves).unwrap(), 1);
    assert_eq!(following(e, x), vec![z]);
    assert_eq!((counts(e, x), counts(e, z)), ((0, 1), (1, 0)));
    assert_eq!(
        e.notifications(x, 10, None).unwrap().groups[0].newest.kind,
        NotificationKind::Approved
    );
    // Approving again: there is no request any more.
    assert!(at(14).approve(z, x).is_err());
}

#[test]
fn a_block_wins_over_a_follow_half_decided_before_it() {
    let env = Env::new(|_| {});
    let [x, w] = [env.user("follower"), env.user("blocker")];
    let e = env.e();
    assert!(e.partition_writes());
    let at = |seq: u64| e.at(WriteCtx::replayed(seq, 1_000_000 + seq, Some(seq << 12)));

    assert_eq!(at(10).follow(x, w).unwrap(), FollowState::Following);
    let halves = graph_halves(e);
    // The block is applied everywhere: it ends the follower's side here at once.
    at(11).block(w, x).unwrap();
    assert!(following(e, x).is_empty());
    assert_eq!(counts(e, x), (0, 0));
    // The follow's half lands after the block: counted as applied, and it adds nothing.
    assert_eq!(at(12).apply_user_followups(2, &[], &[], &halves).unwrap(), 1);
    assert!(followers(e, w).is_empty());
    assert_eq!(counts(e, w), (0, 0));
    assert!(e.notifications(w, 10, None).unwrap().groups.is_empty());
    // And a new follow is refused as for a user who does not exist.
    assert!(at(13).follow(x, w).is_err());
    assert!(graph_halves(e).is_empty(), "a refused follow sends nothing");
}
