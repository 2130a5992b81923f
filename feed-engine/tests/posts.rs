//! Posts on real RocksDB: validation that writes nothing, delete rights, visibility, author pages,
//! and ephemeral posts that expire.

mod common;

use common::{Env, HOUR};
use feed_engine::{ContentType, Error, NewPost};

#[test]
fn invalid_posts_are_refused_and_store_nothing() {
    let env = Env::new(|c| c.max_text_bytes = 100);
    let a = env.user("a");
    let bad = [
        NewPost::text(""),
        NewPost::text("   "),
        NewPost::text("x".repeat(101)),
        NewPost {
            content_type: ContentType::Image,
            text: "no media".into(),
            media: vec![],
            ttl_ms: None,
            location: None,
        },
        NewPost {
            content_type: ContentType::Video,
            text: String::new(),
            media: vec![String::new()],
            ttl_ms: None,
            location: None,
        },
        NewPost {
            content_type: ContentType::Image,
            text: String::new(),
            media: vec!["m".into(); 11],
            ttl_ms: None,
            location: None,
        },
        NewPost {
            content_type: ContentType::Image,
            text: String::new(),
            media: vec!["m".repeat(513)],
            ttl_ms: None,
            location: None,
        },
        NewPost {
            ttl_ms: Some(0),
            ..NewPost::text("story")
        },
        NewPost {
            ttl_ms: Some(8 * 24 * HOUR),
            ..NewPost::text("story")
        },
    ];
    for p in bad {
        let r = env.e().publish(a, p.clone());
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{p:?} gave {r:?}");
    }
    assert!(matches!(
        env.e().publish(777, NewPost::text("ghost")),
        Err(Error::NotFound(_))
    ));
    assert_eq!(env.e().get_user(a).unwrap().posts, 0);
    assert!(env.e().author_posts(a, a, 10, None).unwrap().posts.is_empty());
    assert_eq!(env.e().fanout_backlog(), 0, "refused posts take no fanout slot");
    let ok = env.e().publish(a, NewPost::text("x".repeat(100))).unwrap();
    assert_eq!(env.e().get_post(a, ok.id).unwrap().text.len(), 100);
}

#[test]
fn only_the_author_deletes_and_a_deleted_post_is_gone_everywhere() {
    let env = Env::new(|_| {});
    let [a, b] = [env.user("a"), env.user("b")];
    env.e().follow(b, a).unwrap();
    let p = env.post(a, "oops");
    let keep = env.post(a, "fine");
    env.idle();
    assert_eq!(env.feed_ids(b, 20), vec![keep.id, p.id]);
    assert!(matches!(env.e().delete_post(b, p.id), Err(Error::PermissionDenied(_))));
    assert!(matches!(env.e().delete_post(a, 123), Err(Error::NotFound(_))));
    assert_eq!(env.e().get_user(a).unwrap().posts, 2);
    env.e().delete_post(a, p.id).unwrap();
    assert_eq!(env.feed_ids(b, 20), vec![keep.id], "gone from the feed at once");
    assert!(matches!(env.e().get_post(b, p.id), Err(Error::NotFound(_))));
    assert_eq!(env.e().get_user(a).unwrap().posts, 1);
    env.idle();
    assert_eq!(
        env.stored_ids(b),
        vec![keep.id],
        "retraction cleaned the stored timeline"
    );
    assert!(matches!(env.e().delete_post(a, p.id), Err(Error::NotFound(_))));
}

#[test]
fn author_pages_are_newest_first_and_stable() {
    let env = Env::new(|_| {});
    let a = env.user("a");
    let ids: Vec<u64> = (0..23).map(|i| env.post(a, &format!("p{i}")).id).collect();
    let mut got = Vec::new();
    let mut cursor = None;
    loop {
        let page = env.e().author_posts(a, a, 5, cursor.as_deref()).unwrap();
        got.extend(page.posts.iter().map(|p| p.id));
        // New posts while paging do not disturb the walk.
        env.post(a, "interleaved");
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut want = ids.clone();
    want.reverse();
    assert_eq!(got, want);
}

#[test]
fn private_authors_pages_need_approval() {
    let env = Env::new(|_| {});
    let p = env.e().create_user("p", true).unwrap().id;
    let v = env.user("v");
    env.post(p, "hidden");
    assert!(matches!(
        env.e().author_posts(v, p, 10, None),
        Err(Error::PermissionDenied(_))
    ));
    assert_eq!(env.e().author_posts(p, p, 10, None).unwrap().posts.len(), 1);
}

#[test]
fn stories_expire_from_feeds_and_from_storage() {
    let env = Env::new(|_| {});
    let [a, b] = [env.user("a"), env.user("b")];
    env.e().follow(b, a).unwrap();
    let story = env
        .e()
        .publish(
            a,
            NewPost {
                ttl_ms: Some(HOUR),
                ..NewPost::text("24h story")
            },
        )
        .unwrap();
    let post = env.post(a, "permanent");
    env.idle();
    assert_eq!(env.feed_ids(b, 20), vec![post.id, story.id]);
    env.clock.advance(HOUR);
    assert_eq!(env.feed_ids(b, 20), vec![post.id], "expired at read");
    assert!(matches!(env.e().get_post(b, story.id), Err(Error::NotFound(_))));
    assert_eq!(env.stored_ids(b).len(), 2, "still stored until compaction");
    env.e().compact_feeds().unwrap();
    assert_eq!(
        env.stored_ids(b),
        vec![post.id],
        "compaction filter dropped the expired entry"
    );
}

/// A replayed write takes the event's time and minted id, not the engine's clock and counters,
/// and records the event's log sequence with its change; a local write after it leaves that
/// sequence alone. Another engine applying the same events stores the same posts.
#[test]
fn a_replayed_write_takes_its_context_and_records_its_sequence() {
    use feed_engine::WriteCtx;
    let event_time = common::T0 - 5 * HOUR;
    let apply = |env: &Env| {
        let e = env.e();
        let ada = e
            .at(WriteCtx::replayed(7, event_time, Some(9_000)))
            .create_user("ada", false)
            .expect("replayed sign-up");
        let minted = (1u64 << 40) | 5;
        let p = e
            .at(WriteCtx::replayed(8, event_time + 1, Some(minted)))
            .publish(ada.id, NewPost::text("from the log"))
            .expect("replayed publish");
        (ada, p)
    };
    let (one, two) = (Env::new(|_| {}), Env::new(|_| {}));
    let (ada, p) = apply(&one);
    assert_eq!((ada.id, ada.created_at_ms), (9_000, event_time));
    assert_eq!((p.id, p.created_at_ms), ((1u64 << 40) | 5, event_time + 1));
    assert_eq!(one.e().applied_seq().unwrap(), 8);
    let (ada2, p2) = apply(&two);
    assert_eq!(
        (ada2.id, p2.id, p2.rank),
        (ada.id, p.id, p.rank),
        "same events, same result"
    );
    // A local write: the clock's time, a fresh id above the minted ones, no log sequence.
    let local = one.e().publish(ada.id, NewPost::text("local")).unwrap();
    assert_eq!(local.created_at_ms, common::T0);
    assert!(local.id > p.id);
    assert_eq!(one.e().applied_seq().unwrap(), 8);
    // A replayed event refused by the engine changes nothing and is not recorded by it (after
    // the local post's fanout is done, so nothing else moves meanwhile).
    one.idle();
    let sum = one.e().data_checksum().unwrap();
    let r = one
        .e()
        .at(WriteCtx::replayed(9, event_time, None))
        .publish(ada.id, NewPost::text(""));
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    assert_eq!(one.e().data_checksum().unwrap(), sum);
}

/// In a cluster every node applies every other node's posts; the ids it mints must stay under
/// its own node bits, or two nodes mint the same id in the same ms (a post overwriting another).
/// Here node 1 applies node 2's post minted in the very ms it is about to mint in, then
/// reopens on that database: its ids keep its bits, above its own earlier ones.
#[test]
fn a_node_never_mints_an_id_under_another_nodes_bits() {
    use feed_engine::WriteCtx;
    let node_bits = |id: u64| (id >> 12) & 0x3ff;
    let mut env = Env::new(|c| c.node_id = 1);
    let ada = env.user("ada");
    let own = env.e().mint_post_id();
    assert_eq!(node_bits(own), 1);
    // Node 2's post in the same ms: the same time bits, node 2's bits, sequence 0.
    let theirs = (own & !(0x3ff << 12) & !0xfff) | (2 << 12);
    assert!(theirs > own, "node 2's id sorts above node 1's in the same ms");
    env.e()
        .at(WriteCtx::replayed(1, common::T0, Some(theirs)))
        .publish(ada, NewPost::text("minted on node 2"))
        .expect("replayed publish");
    let mut minted = vec![own];
    for _ in 0..3 {
        minted.push(env.e().publish(ada, NewPost::text("mine")).unwrap().id);
    }
    env.reopen();
    minted.push(env.e().mint_post_id());
    for w in minted.windows(2) {
        assert!(w[1] > w[0], "strictly increasing: {minted:?}");
    }
    for id in &minted {
        assert_eq!(node_bits(*id), 1, "id {id:#x} carries another node's bits");
        assert_ne!(*id, theirs);
    }
}
