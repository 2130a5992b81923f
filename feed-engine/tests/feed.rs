//! Feeds on real RocksDB: ranking order, stable cursors, bad pages, graph changes reaching feeds,
//! discovery, and the hot layer staying correct.

mod common;

use common::{DAY, Env, HOUR};
use feed_engine::{ContentType, Error, FeedPath, NewPost, PolicyKind, Viewer};

#[test]
fn feed_is_ranked_and_newer_posts_rise() {
    let env = Env::new(|_| {});
    let reader = env.user("reader");
    let [big, small] = [env.user("big"), env.user("small")];
    for f in env.users("fan", 99) {
        env.e().follow(f, big).unwrap();
    }
    env.e().follow(reader, big).unwrap();
    env.e().follow(reader, small).unwrap();
    // Same instant: reach (100 followers → 1 + 2 = 3×) and video boost (1.5×) outrank plain text.
    let video = env
        .e()
        .publish(
            big,
            NewPost {
                content_type: ContentType::Video,
                text: String::new(),
                media: vec!["v.mp4".into()],
                ttl_ms: None,
                location: None,
            },
        )
        .unwrap();
    let text = env.e().publish(small, NewPost::text("hi")).unwrap();
    env.idle();
    assert_eq!(env.feed_ids(reader, 20), vec![video.id, text.id]);
    // Two days later a light post outranks the heavy one (weight 4.5 ≈ 2.2 halvings of 12 h).
    env.clock.advance(2 * DAY);
    let fresh = env.post(small, "fresh");
    env.idle();
    assert_eq!(env.feed_ids(reader, 20), vec![fresh.id, video.id, text.id]);
}

#[test]
fn paging_while_posts_arrive_never_repeats_or_skips() {
    let env = Env::new(|_| {});
    let reader = env.user("reader");
    let authors = env.users("au", 5);
    for &a in &authors {
        env.e().follow(reader, a).unwrap();
    }
    for i in 0..40 {
        env.post(authors[i % 5], &format!("old {i}"));
    }
    env.idle();
    let before = env.feed_ids(reader, 100);
    assert_eq!(before.len(), 40);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = env.e().home_feed(reader, 6, cursor.as_deref()).unwrap();
        seen.extend(page.items.iter().map(|i| i.post.id));
        for a in &authors {
            env.post(*a, "arrives while paging");
        }
        env.idle();
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(
        seen, before,
        "the walk shows exactly the feed as it was when it started"
    );
}

#[test]
fn bad_pages_and_cursors_are_invalid_argument() {
    let env = Env::new(|_| {});
    let r = env.user("r");
    for bad in [
        "",
        "xyz",
        "AQ",
        "AUcAAAAAAAAAAAAAAAAAAAAA",
        "AUYAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        assert!(
            matches!(env.e().home_feed(r, 10, Some(bad)), Err(Error::InvalidArgument(_))),
            "{bad:?}"
        );
    }
    assert!(matches!(env.e().home_feed(r, 0, None), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        env.e().home_feed(r, 101, None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(env.e().home_feed(4040, 10, None), Err(Error::NotFound(_))));
    let list_cursor = {
        let a = env.user("a");
        for f in env.users("f", 3) {
            env.e().follow(f, a).unwrap();
        }
        env.e()
            .followers(Viewer::Operator, a, 1, None)
            .unwrap()
            .next_cursor
            .unwrap()
    };
    assert!(matches!(
        env.e().home_feed(r, 10, Some(&list_cursor)),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn follow_merges_and_unfollow_removes_while_paging() {
    let env = Env::new(|_| {});
    let [r, a, b] = [env.user("r"), env.user("a"), env.user("b")];
    let a_posts: Vec<u64> = (0..3).map(|i| env.post(a, &format!("a{i}")).id).collect();
    let b_post = env.post(b, "b0").id;
    env.e().follow(r, b).unwrap();
    env.e().follow(r, a).unwrap();
    let feed = env.feed_ids(r, 20);
    assert_eq!(
        feed,
        vec![b_post, a_posts[2], a_posts[1], a_posts[0]],
        "follow merged recent posts"
    );
    let first = env.e().home_feed(r, 2, None).unwrap();
    env.e().unfollow(r, a).unwrap();
    let rest = env.e().home_feed(r, 2, first.next_cursor.as_deref()).unwrap();
    assert!(
        rest.items.iter().all(|i| i.post.author != a),
        "unfollowed posts leave the feed even mid-walk"
    );
    assert!(env.stored_ids(r).iter().all(|p| !a_posts.contains(p)));
    env.e().follow(r, a).unwrap();
    assert_eq!(env.feed_ids(r, 20), feed, "refollow brings them back");
}

fn discovery_ids(env: &Env, reader: feed_engine::UserId) -> Vec<u64> {
    let page = env.e().discovery_feed(reader, 10, None).unwrap();
    page.items.iter().map(|i| i.post.id).collect()
}

#[test]
fn reader_who_follows_nobody_gets_labelled_discovery() {
    let env = Env::new(|_| {});
    let [lonely, a, b] = [env.user("lonely"), env.user("a"), env.user("b")];
    let hidden = env.e().create_user("hidden", true).unwrap().id;
    env.post(hidden, "private");
    let pa = env.post(a, "public a");
    let pb = env.post(b, "public b");
    let own = env.post(lonely, "mine");
    let page = env.e().home_feed(lonely, 10, None).unwrap();
    assert_eq!(page.path, FeedPath::Discovery);
    let ids: Vec<u64> = page.items.iter().map(|i| i.post.id).collect();
    assert_eq!(
        ids,
        vec![own.id, pb.id, pa.id],
        "their own post ranked in (newest), recent public posts, private ones left out"
    );
    let ids = discovery_ids(&env, lonely);
    assert_eq!(
        ids,
        vec![pb.id, pa.id],
        "the discovery feed itself leaves their own out"
    );
    env.e().mute(lonely, b).unwrap();
    let ids = discovery_ids(&env, lonely);
    assert_eq!(ids, vec![pa.id]);
    env.e().follow(lonely, a).unwrap();
    let page = env.e().home_feed(lonely, 10, None).unwrap();
    assert_ne!(
        page.path,
        FeedPath::Discovery,
        "a real home feed once the reader follows someone"
    );
}

#[test]
fn cached_first_page_follows_every_change() {
    let env = Env::new(|_| {});
    let [r, a] = [env.user("r"), env.user("a")];
    env.e().follow(r, a).unwrap();
    let p1 = env.post(a, "one");
    env.idle();
    let first = env.e().home_feed(r, 10, None).unwrap();
    let again = env.e().home_feed(r, 10, None).unwrap();
    assert_eq!(
        again.path,
        FeedPath::Cache,
        "a repeat read is served from the hot layer"
    );
    assert_eq!(again.items, first.items);
    let p2 = env.post(a, "two");
    env.idle();
    let ids = env.page_ids(r, 10);
    assert_eq!(ids, vec![p2.id, p1.id], "fanout invalidated the cached page");
    env.e().delete_post(a, p2.id).unwrap();
    env.idle();
    let ids = env.page_ids(r, 10);
    assert_eq!(ids, vec![p1.id]);
    env.e().mute(r, a).unwrap();
    assert!(env.e().home_feed(r, 10, None).unwrap().items.is_empty());
}

/// Fanout writes a delivered post into a pushed reader's cached first page in place: the read
/// after it is still served from the hot layer, shows the post where an assembly would, keeps
/// its cursor, and leaves out a muted author the delivery still reached.
#[test]
fn a_cached_first_page_takes_deliveries_in_place() {
    let env = Env::new(|c| {
        c.policy.kind = PolicyKind::AlwaysPush;
        c.hot_page_entries = 3;
    });
    let [r, a, m] = [env.user("r"), env.user("a"), env.user("m")];
    env.e().follow(r, a).unwrap();
    env.e().follow(r, m).unwrap();
    env.e().mute(r, m).unwrap();
    let mut posts: Vec<u64> = (0..4).map(|i| env.post(a, &format!("a{i}")).id).collect();
    env.idle();
    env.page_ids(r, 3);
    assert_eq!(env.e().home_feed(r, 3, None).unwrap().path, FeedPath::Cache);
    for i in 4..6 {
        posts.push(env.post(a, &format!("a{i}")).id);
        env.post(m, "muted");
        env.idle();
        let page = env.e().home_feed(r, 3, None).unwrap();
        assert_eq!(page.path, FeedPath::Cache, "delivery {i} went into the cached page");
        let ids: Vec<u64> = page.items.iter().map(|i| i.post.id).collect();
        let newest: Vec<u64> = posts.iter().rev().take(3).copied().collect();
        assert_eq!(ids, newest, "the delivered post on top, the muted author's left out");
        assert!(page.next_cursor.is_some(), "the window is full: more follow");
    }
    posts.reverse();
    assert_eq!(env.feed_ids(r, 2), posts, "paging on from the patched page");
}

#[test]
fn expired_cached_entries_are_not_served() {
    let env = Env::new(|_| {});
    let [r, a] = [env.user("r"), env.user("a")];
    env.e().follow(r, a).unwrap();
    env.e()
        .publish(
            a,
            NewPost {
                ttl_ms: Some(HOUR),
                ..NewPost::text("story")
            },
        )
        .unwrap();
    env.idle();
    assert_eq!(env.e().home_feed(r, 10, None).unwrap().items.len(), 1);
    env.clock.advance(HOUR);
    assert!(env.e().home_feed(r, 10, None).unwrap().items.is_empty());
}

/// A reader follows one author who posted 25 times: every policy pages through all 25, in the
/// same order, and a rebuilt timeline holds all 25 too.
#[test]
fn pulled_feeds_are_as_deep_as_pushed_ones() {
    let mut feeds = Vec::new();
    for policy in [PolicyKind::AlwaysPush, PolicyKind::AlwaysPull, PolicyKind::CostBased] {
        let env = Env::new(|c| c.policy.kind = policy);
        let [r, a] = [env.user("r"), env.user("a")];
        env.e().follow(r, a).unwrap();
        let posts: Vec<u64> = (0..25).map(|i| env.post(a, &format!("p{i}")).id).collect();
        env.idle();
        let mut want = posts.clone();
        want.reverse();
        for page in [1, 7, 20, 100] {
            assert_eq!(env.feed_ids(r, page), want, "{policy:?}, pages of {page}");
        }
        feeds.push(env.feed_ids(r, 5));
    }
    assert!(feeds.windows(2).all(|w| w[0].len() == 25 && w[0].len() == w[1].len()));

    // Dormant, then active: the timeline is rebuilt from the outbox, all 25 entries of it.
    let env = Env::new(|_| {});
    let [r, a] = [env.user("r"), env.user("a")];
    env.e().follow(r, a).unwrap();
    let posts: Vec<u64> = (0..25).map(|i| env.post(a, &format!("p{i}")).id).collect();
    env.idle();
    env.read_actively_for_a_day(r);
    env.idle();
    let mut stored = env.stored_ids(r);
    stored.sort_unstable();
    assert_eq!(stored, posts, "the rebuilt timeline holds every post in the window");
    assert_eq!(env.feed_ids(r, 3).len(), 25);

    // A follow merges the new followee's whole window, not the newest 10.
    let b = env.user("b");
    let b_posts: Vec<u64> = (0..15).map(|i| env.post(b, &format!("b{i}")).id).collect();
    env.e().follow(r, b).unwrap();
    env.idle();
    let stored = env.stored_ids(r);
    assert!(b_posts.iter().all(|p| stored.contains(p)), "all 15 merged");
    assert_eq!(env.feed_ids(r, 4).len(), 40);
}

/// A pushed feed does not end where its trimmed timeline does: three authors post 3.5 times
/// the timeline's cap, and every policy pages through all of it, in the same order — from the
/// first page (cached) and from deep cursors, before and after a reopen (trim state lost), and
/// after one of the cut posts is deleted.
#[test]
fn a_pushed_feed_reaches_below_its_trimmed_timeline() {
    const CAP: usize = 20;
    let mut feeds = Vec::new();
    for policy in [PolicyKind::AlwaysPush, PolicyKind::AlwaysPull, PolicyKind::CostBased] {
        let mut env = Env::new(|c| {
            c.policy.kind = policy;
            c.timeline_cap = CAP;
            c.trim_slack = 0.5;
        });
        let r = env.user("r");
        let authors = env.users("a", 3);
        for &a in &authors {
            env.e().follow(r, a).unwrap();
        }
        let mut posts: Vec<u64> = (0..70).map(|i| env.post(authors[i % 3], &format!("p{i}")).id).collect();
        env.idle();
        if policy == PolicyKind::AlwaysPush {
            assert!(env.stored_ids(r).len() <= CAP * 3 / 2, "the timeline was trimmed");
        }
        posts.reverse();
        for page in [1, 7, 20, 50, 100] {
            assert_eq!(env.feed_ids(r, page), posts, "{policy:?}, pages of {page}");
        }
        env.reopen();
        assert_eq!(env.feed_ids(r, 9), posts, "{policy:?}, after a reopen");
        // A post the trim cut is deleted: it leaves the pulled part of the feed too.
        let gone = posts.remove(60);
        let author = authors.iter().copied().find(|&a| env.e().delete_post(a, gone).is_ok());
        assert!(author.is_some(), "one of the authors deleted it");
        env.idle();
        assert_eq!(env.feed_ids(r, 50), posts, "{policy:?}, after a delete");
        feeds.push(env.feed_ids(r, 13));
    }
    assert!(feeds.windows(2).all(|w| w[0] == w[1]));
}

/// A pulled first page in the hot layer goes stale the moment a followed author posts, not when
/// fanout reaches the post: with fanout paused, the next read still shows it.
#[test]
fn cached_pulled_page_shows_a_new_post_before_fanout_runs() {
    let env = Env::new(|c| {
        c.policy.kind = PolicyKind::AlwaysPull;
        c.fanout_workers = 0;
    });
    let [r, a] = [env.user("r"), env.user("a")];
    env.e().follow(r, a).unwrap();
    let first = env.post(a, "first");
    let page = env.e().home_feed(r, 10, None).unwrap();
    assert_eq!(page.items.len(), 1);
    let again = env.e().home_feed(r, 10, None).unwrap();
    assert_eq!(
        again.path,
        FeedPath::Cache,
        "the second read is served from the hot layer"
    );
    let second = env.post(a, "second");
    let ids = env.page_ids(r, 10);
    assert_eq!(ids, vec![second.id, first.id], "the new post, with no fanout job run");
}

/// Past `reader-states-max` the least recently read reader states leave memory; they load again
/// from disk, and every feed stays whole through it (pushed readers dropped and reloaded still
/// get their deliveries; readers the policy demotes to pull still see everything).
#[test]
fn reader_states_stay_bounded_and_reload_whole() {
    let env = Env::new(|c| c.reader_states_max = 10);
    let author = env.user("author");
    let readers = env.users("r", 60);
    assert!(env.e().reader_states_in_memory() <= 10, "creating users sweeps too");
    for &r in &readers {
        env.e().follow(r, author).unwrap();
        env.e().home_feed(r, 10, None).unwrap();
    }
    let first = env.post(author, "one");
    env.idle();
    env.clock.advance(3 * DAY);
    let second = env.post(author, "two");
    env.idle();
    for &r in &readers {
        assert_eq!(env.feed_ids(r, 7), vec![second.id, first.id], "reader {r}");
    }
    let held = env.e().reader_states_in_memory();
    assert!(held <= 10, "{held} reader states in memory, cap 10");
}

/// `Engine::memory` reports the reader states held and the hot layer's bytes as they change.
#[test]
fn memory_use_counts_reader_states_and_the_hot_layer() {
    let env = Env::new(|c| c.reader_states_max = 1000);
    let author = env.user("author");
    let readers = env.users("m", 5);
    for &r in &readers {
        env.e().follow(r, author).unwrap();
    }
    env.post(author, "hello");
    env.idle();
    for &r in &readers {
        env.e().home_feed(r, 10, None).unwrap();
    }
    let m = env.e().memory().unwrap();
    assert_eq!(m.reader_states, 6, "five readers and the author");
    assert!(m.hot_bytes > 0, "cached pages and graphs are weighed: {m:?}");
    assert!(m.memtable_bytes > 0, "the writes sit in memtables: {m:?}");
}
