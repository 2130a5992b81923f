//! Users and the follow graph on real RocksDB: counters, private accounts, blocks, mutes, lists,
//! and bad input that changes nothing.

mod common;

use common::Env;
use feed_engine::{Error, FollowState, Viewer};

#[test]
fn users_have_unique_handles_and_survive_reopen() {
    let mut env = Env::new(|_| {});
    let a = env.e().create_user("alice", false).unwrap();
    assert_eq!(a.handle, "alice");
    assert!(matches!(
        env.e().create_user("alice", true),
        Err(Error::AlreadyExists(_))
    ));
    assert!(matches!(
        env.e().create_user("Alice!", false),
        Err(Error::InvalidArgument(_))
    ));
    let b = env.e().create_user("bob", true).unwrap();
    assert_ne!(a.id, b.id);
    env.reopen();
    assert_eq!(env.e().user_by_handle("bob").unwrap().id, b.id);
    assert!(env.e().get_user(b.id).unwrap().private);
    let c = env.e().create_user("carol", false).unwrap();
    assert!(c.id > b.id, "ids keep increasing after reopen");
    assert!(matches!(env.e().get_user(999), Err(Error::NotFound(_))));
    assert!(matches!(env.e().get_user(0), Err(Error::NotFound(_))));
}

#[test]
fn follow_and_unfollow_keep_counters_exact() {
    let env = Env::new(|_| {});
    let [a, b, c] = [env.user("a"), env.user("b"), env.user("c")];
    assert_eq!(env.e().follow(a, b).unwrap(), FollowState::Following);
    assert_eq!(
        env.e().follow(a, b).unwrap(),
        FollowState::Following,
        "following twice is a no-op"
    );
    env.e().follow(c, b).unwrap();
    env.e().follow(a, c).unwrap();
    let ub = env.e().get_user(b).unwrap();
    assert_eq!((ub.followers, ub.following), (2, 0));
    assert_eq!(env.e().get_user(a).unwrap().following, 2);
    assert!(env.e().unfollow(a, b).unwrap());
    assert!(!env.e().unfollow(a, b).unwrap(), "unfollowing twice changes nothing");
    assert_eq!(env.e().get_user(b).unwrap().followers, 1);
    assert_eq!(env.e().get_user(a).unwrap().following, 1);
    assert!(!env.e().is_following(a, b).unwrap());
    assert!(env.e().is_following(c, b).unwrap());
}

#[test]
fn bad_graph_input_is_refused_and_changes_nothing() {
    let env = Env::new(|_| {});
    let a = env.user("a");
    assert!(matches!(env.e().follow(a, a), Err(Error::InvalidArgument(_))));
    assert!(matches!(env.e().follow(a, 4242), Err(Error::NotFound(_))));
    assert!(matches!(env.e().follow(4242, a), Err(Error::NotFound(_))));
    assert!(matches!(env.e().block(a, 4242), Err(Error::NotFound(_))));
    assert!(matches!(env.e().approve(a, 4242), Err(Error::NotFound(_))));
    let u = env.e().get_user(a).unwrap();
    assert_eq!((u.followers, u.following), (0, 0));
    assert!(matches!(
        env.e().followers(Viewer::Operator, a, 0, None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        env.e().followers(Viewer::Operator, a, 10_000, None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        env.e().followers(Viewer::Operator, a, 10, Some("garbage")),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn private_accounts_approve_followers() {
    let env = Env::new(|_| {});
    let owner = env.e().create_user("owner", true).unwrap().id;
    let [fan, other] = [env.user("fan"), env.user("other")];
    let secret = env.post(owner, "for approved eyes");
    env.idle();
    assert_eq!(env.e().follow(fan, owner).unwrap(), FollowState::Requested);
    assert_eq!(env.e().follow(other, owner).unwrap(), FollowState::Requested);
    assert_eq!(
        env.e().pending_requests(owner, 10, None).unwrap().users,
        vec![fan, other]
    );
    assert!(!env.e().is_following(fan, owner).unwrap());
    assert!(env.feed_ids(fan, 20).is_empty(), "no posts before approval");
    assert!(matches!(env.e().get_post(fan, secret.id), Err(Error::NotFound(_))));

    env.e().approve(owner, fan).unwrap();
    env.e().deny(owner, other).unwrap();
    assert!(
        matches!(env.e().approve(owner, other), Err(Error::NotFound(_))),
        "denied request is gone"
    );
    assert_eq!(env.e().get_user(owner).unwrap().followers, 1);
    assert_eq!(env.feed_ids(fan, 20), vec![secret.id], "approval merges recent posts");
    assert_eq!(env.e().get_post(fan, secret.id).unwrap().id, secret.id);
    assert!(env.e().pending_requests(owner, 10, None).unwrap().users.is_empty());

    let later = env.post(owner, "second");
    env.idle();
    assert_eq!(env.feed_ids(fan, 20), vec![later.id, secret.id]);
    assert!(env.feed_ids(other, 20).is_empty());
}

#[test]
fn block_ends_follows_both_ways_and_prevents_new_ones() {
    let env = Env::new(|_| {});
    let [a, b] = [env.user("a"), env.user("b")];
    env.e().follow(a, b).unwrap();
    env.e().follow(b, a).unwrap();
    let pa = env.post(a, "from a");
    let pb = env.post(b, "from b");
    env.idle();
    assert!(env.stored_ids(a).contains(&pb.id));
    assert!(env.stored_ids(b).contains(&pa.id));

    env.e().block(a, b).unwrap();
    assert!(!env.e().is_following(a, b).unwrap() && !env.e().is_following(b, a).unwrap());
    assert!(!env.stored_ids(a).contains(&pb.id), "block cleans the stored feed");
    assert!(!env.stored_ids(b).contains(&pa.id));
    assert!(!env.feed_ids(a, 20).contains(&pb.id));
    // The blocked user is told exactly what a follow of a missing user is told.
    let blocked = env.e().follow(b, a).unwrap_err().to_string();
    let missing = env.e().follow(b, 987_654).unwrap_err().to_string();
    assert_eq!(
        blocked.replace(&a.to_string(), "<id>"),
        missing.replace("987654", "<id>")
    );
    assert!(blocked.starts_with("not found"), "{blocked}");
    assert!(matches!(env.e().follow(a, b), Err(Error::InvalidArgument(_))));
    assert_eq!(env.e().get_user(a).unwrap().followers, 0);
    assert!(
        matches!(env.e().get_post(b, pa.id), Err(Error::NotFound(_))),
        "a blocked user cannot read the blocker's posts"
    );

    env.e().unblock(a, b).unwrap();
    assert_eq!(env.e().follow(b, a).unwrap(), FollowState::Following);
}

#[test]
fn mute_hides_without_unfollowing_and_unmute_restores() {
    let env = Env::new(|_| {});
    let [a, b] = [env.user("a"), env.user("b")];
    env.e().follow(a, b).unwrap();
    let p = env.post(b, "noise");
    env.idle();
    env.e().mute(a, b).unwrap();
    assert!(env.e().is_following(a, b).unwrap());
    assert!(env.feed_ids(a, 20).is_empty());
    assert!(env.stored_ids(a).is_empty(), "mute cleans the stored feed");
    let q = env.post(b, "more noise");
    env.idle();
    assert!(env.feed_ids(a, 20).is_empty(), "new posts stay hidden");
    env.e().unmute(a, b).unwrap();
    assert_eq!(env.feed_ids(a, 20), vec![q.id, p.id]);
}

#[test]
fn lists_page_through_followers_and_following() {
    let env = Env::new(|_| {});
    let star = env.user("star");
    let fans = env.users("fan", 25);
    for &f in &fans {
        env.e().follow(f, star).unwrap();
    }
    let mut got = Vec::new();
    let mut cursor = None;
    loop {
        let p = env.e().followers(Viewer::Operator, star, 7, cursor.as_deref()).unwrap();
        assert!(p.users.len() <= 7);
        got.extend(p.users);
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(got, fans);
    assert_eq!(
        env.e().following(Viewer::Operator, fans[3], 10, None).unwrap().users,
        vec![star]
    );
    assert!(
        env.e()
            .following(Viewer::Operator, star, 10, None)
            .unwrap()
            .users
            .is_empty()
    );
}
