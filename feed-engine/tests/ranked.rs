//! Ranked home feeds on real RocksDB: the engagement ranker lifts what people engage with and
//! what the reader engages with, keeps authors from running on, explains itself, and pages
//! through a pinned session without repeating or skipping — under every fanout policy; trending
//! discovery lets a newcomer's post in.

mod common;

use std::collections::HashSet;

use common::{Env, HOUR};
use feed_engine::{Error, FeedPath, PolicyKind, RankedPage, Ranker};

fn ids(p: &RankedPage) -> Vec<u64> {
    p.items.iter().map(|i| i.post.id).collect()
}

/// Every post of a ranked feed, page by page.
fn all_pages(env: &Env, reader: u64, ranker: Ranker, page: usize, mut between: impl FnMut(usize)) -> Vec<u64> {
    let mut out = Vec::new();
    let mut cursor = None;
    for i in 0.. {
        let p = env
            .e()
            .ranked_feed(reader, Some(ranker), page, cursor.as_deref(), false)
            .unwrap();
        out.extend(ids(&p));
        between(i);
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    out
}

#[test]
fn engagement_lifts_liked_posts_and_explains_why() {
    let env = Env::new(|_| {});
    let reader = env.user("reader");
    let authors = env.users("author", 4);
    let fans = env.users("fan", 8);
    for &a in &authors {
        env.e().follow(reader, a).unwrap();
    }
    let mut posts = Vec::new();
    for i in 0..8 {
        posts.push(env.post(authors[i % 4], &format!("post {i}")).id);
    }
    env.idle();
    let stored: Vec<u64> = env
        .e()
        .home_feed(reader, 20, None)
        .unwrap()
        .items
        .iter()
        .map(|i| i.post.id)
        .collect();
    // The oldest post is last in stored order; eight likes lift it to the top.
    let oldest = posts[0];
    assert_eq!(*stored.last().unwrap(), oldest);
    for &f in &fans {
        env.e().like(f, oldest).unwrap();
    }
    let p = env
        .e()
        .ranked_feed(reader, Some(Ranker::Engagement), 20, None, true)
        .unwrap();
    assert_eq!(p.items[0].post.id, oldest, "the liked post leads");
    let why = p.items[0].why.expect("explained");
    assert!(why.engagement > 0.0 && why.velocity > 0.0, "{why:?}");
    assert!((why.total - (why.base + why.engagement + why.velocity + why.affinity)).abs() < 1e-9);
    let mut got = ids(&p);
    got.sort_unstable();
    let mut want = stored.clone();
    want.sort_unstable();
    assert_eq!(got, want, "the same posts, reordered");
    // Chronological: newest first.
    let c = env
        .e()
        .ranked_feed(reader, Some(Ranker::Chronological), 20, None, false)
        .unwrap();
    let mut newest_first = posts.clone();
    newest_first.reverse();
    assert_eq!(ids(&c), newest_first);
    // Stored: the home feed itself.
    let s = env
        .e()
        .ranked_feed(reader, Some(Ranker::Stored), 20, None, false)
        .unwrap();
    assert_eq!(ids(&s), stored);
}

#[test]
fn the_reader_s_own_likes_raise_that_author_and_runs_of_one_author_are_broken() {
    let env = Env::new(|_| {});
    let reader = env.user("reader");
    let liked = env.user("liked");
    let other = env.user("other");
    env.e().follow(reader, liked).unwrap();
    env.e().follow(reader, other).unwrap();
    let old = env.post(liked, "old");
    env.e().like(reader, old.id).unwrap();
    env.e().unlike(reader, old.id).unwrap();
    env.e().like(reader, old.id).unwrap();
    env.clock.advance(HOUR);
    // Equal peers, the liked author's a second older: affinity puts it first anyway.
    let from_liked = env.post(liked, "liked");
    let from_other = env.post(other, "other");
    env.idle();
    let p = env
        .e()
        .ranked_feed(reader, Some(Ranker::Engagement), 10, None, true)
        .unwrap();
    let pos = |id| p.items.iter().position(|i| i.post.id == id).unwrap();
    assert!(pos(from_liked.id) < pos(from_other.id), "affinity to the liked author");
    assert!(p.items[pos(from_liked.id)].why.unwrap().affinity > 0.0);

    // Ten posts by one author and two by another: no more than two in a row while another is left.
    let prolific = env.user("prolific");
    env.e().follow(reader, prolific).unwrap();
    let r2 = env.user("reader2");
    env.e().follow(r2, prolific).unwrap();
    env.e().follow(r2, other).unwrap();
    for i in 0..10 {
        env.post(prolific, &format!("p{i}"));
    }
    env.post(other, "o1");
    env.post(other, "o2");
    env.idle();
    let p = env
        .e()
        .ranked_feed(r2, Some(Ranker::Engagement), 20, None, true)
        .unwrap();
    let authors: Vec<u64> = p.items.iter().map(|i| i.post.author).collect();
    let first_other = authors.iter().position(|&a| a == other).unwrap();
    assert!(first_other <= 2, "{authors:?}");
    let runs = authors.windows(3).filter(|w| w[0] == w[1] && w[1] == w[2]).count();
    let tail_of_prolific = authors.iter().rev().take_while(|&&a| a == prolific).count();
    assert!(
        runs <= tail_of_prolific.saturating_sub(2),
        "runs only once the other author is used up: {authors:?}"
    );
    assert!(p.items.iter().any(|i| i.why.unwrap().moved_for_diversity));
}

#[test]
fn posts_a_reader_is_shown_raise_their_author_a_little() {
    let env = Env::new(|_| {});
    let reader = env.user("reader");
    let seen = env.user("seen");
    let other = env.user("other");
    env.e().follow(reader, seen).unwrap();
    env.e().follow(reader, other).unwrap();
    let shown: Vec<u64> = (0..5).map(|i| env.post(seen, &format!("shown {i}")).id).collect();
    env.idle();
    let before = env.e().data_checksum().unwrap();
    assert!(matches!(
        env.e().record_views(reader, &[]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        env.e().record_views(reader, &[1; 101]),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(env.e().data_checksum().unwrap(), before, "refusals wrote nothing");
    assert_eq!(
        env.e().record_views(reader, &[shown[0], shown[1], 424242]).unwrap(),
        2,
        "a missing post does not count"
    );
    let from_seen = env.post(seen, "new");
    let from_other = env.post(other, "newer");
    env.idle();
    let p = env
        .e()
        .ranked_feed(reader, Some(Ranker::Engagement), 10, None, true)
        .unwrap();
    let why = |id| p.items.iter().find(|i| i.post.id == id).unwrap().why.unwrap();
    assert!(why(from_seen.id).affinity > 0.0, "views count");
    assert_eq!(why(from_other.id).affinity, 0.0);
    // A like is worth ten views.
    assert!(why(from_seen.id).affinity < 1.0);
}

#[test]
fn paging_a_ranked_feed_never_repeats_or_skips_under_every_policy() {
    for kind in [PolicyKind::AlwaysPush, PolicyKind::AlwaysPull, PolicyKind::CostBased] {
        let env = Env::new(|c| {
            c.policy.kind = kind;
            c.ranker.candidates = 25;
            c.celebrity_followers = 3;
        });
        let reader = env.user("reader");
        let authors = env.users("a", 5);
        let fans = env.users("fan", 4);
        for &a in &authors {
            env.e().follow(reader, a).unwrap();
        }
        // authors[0] is a celebrity (pulled at read time) once the fans follow.
        for &f in &fans {
            env.e().follow(f, authors[0]).unwrap();
        }
        let mut all = Vec::new();
        for i in 0..40 {
            all.push(env.post(authors[i % 5], &format!("p{i}")).id);
        }
        env.idle();
        for ranker in [Ranker::Engagement, Ranker::Chronological] {
            let mut likes = 0;
            let got = all_pages(&env, reader, ranker, 7, |i| {
                // Engagement and new posts arrive mid-session: the session does not move.
                if i == 1 {
                    for &f in &fans {
                        env.e().like(f, all[3]).unwrap();
                        likes += 1;
                    }
                    env.post(authors[1], "arrived mid-session");
                    env.idle();
                }
            });
            let unique: HashSet<u64> = got.iter().copied().collect();
            assert_eq!(unique.len(), got.len(), "{kind:?}/{ranker:?}: an entry repeated");
            let want: HashSet<u64> = all.iter().copied().collect();
            assert!(want.is_subset(&unique), "{kind:?}/{ranker:?}: an entry skipped");
            assert!(likes > 0);
        }
    }
}

#[test]
fn ranked_candidates_are_cached_until_the_feed_changes() {
    let env = Env::new(|_| {});
    let reader = env.user("reader");
    let a = env.user("a");
    let b = env.user("b");
    env.e().follow(reader, a).unwrap();
    env.e().follow(reader, b).unwrap();
    for i in 0..5 {
        env.post(a, &format!("a{i}"));
    }
    env.idle();
    let read = || {
        env.e()
            .ranked_feed(reader, Some(Ranker::Engagement), 20, None, false)
            .unwrap()
    };
    assert_ne!(read().path, FeedPath::Cache, "the first read assembles");
    let again = read();
    assert_eq!(again.path, FeedPath::Cache, "the second is served from the cache");
    assert_eq!(again.items.len(), 5);
    // A delivery, a delete and an unfollow each reach the next ranked read.
    let fresh = env.post(b, "fresh");
    env.idle();
    assert!(ids(&read()).contains(&fresh.id), "a new post is a candidate at once");
    let first = ids(&read())[0];
    let author = if first == fresh.id { b } else { a };
    env.e().delete_post(author, first).unwrap();
    assert!(!ids(&read()).contains(&first), "a deleted post is not");
    env.e().unfollow(reader, a).unwrap();
    assert_eq!(ids(&read()), if author == b { vec![] } else { vec![fresh.id] });
}

#[test]
fn an_ended_session_s_cursor_is_refused_with_a_reason() {
    let env = Env::new(|c| c.ranker.session_ttl_ms = HOUR);
    let reader = env.user("reader");
    let a = env.user("a");
    env.e().follow(reader, a).unwrap();
    for i in 0..5 {
        env.post(a, &format!("{i}"));
    }
    env.idle();
    let p = env
        .e()
        .ranked_feed(reader, Some(Ranker::Engagement), 2, None, false)
        .unwrap();
    let cursor = p.next_cursor.unwrap();
    let other = env.user("other");
    let r = env
        .e()
        .ranked_feed(other, Some(Ranker::Engagement), 2, Some(&cursor), false);
    assert!(
        matches!(r, Err(Error::InvalidArgument(_))),
        "another reader's session: {r:?}"
    );
    env.clock.advance(2 * HOUR);
    match env
        .e()
        .ranked_feed(reader, Some(Ranker::Engagement), 2, Some(&cursor), false)
    {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("start again"), "{m}"),
        other => panic!("want InvalidArgument, got {other:?}"),
    }
}

#[test]
fn a_newcomer_s_post_that_people_engage_with_trends_in_discovery() {
    let env = Env::new(|c| c.discovery_pool = 20);
    let big = env.user("big");
    let followers = env.users("f", 50);
    for &f in &followers {
        env.e().follow(f, big).unwrap();
    }
    for i in 0..30 {
        env.post(big, &format!("big {i}"));
    }
    let newcomer = env.user("newcomer");
    let fresh = env.post(newcomer, "hello world #firstpost");
    let lonely = env.user("lonely");
    let in_discovery = |id| {
        env.e()
            .discovery_feed(lonely, 100, None)
            .unwrap()
            .items
            .iter()
            .any(|i| i.post.id == id)
    };
    assert!(!in_discovery(fresh.id), "a full pool keeps a low-reach post out");
    for &f in followers.iter().take(10) {
        env.e().like(f, fresh.id).unwrap();
    }
    assert!(in_discovery(fresh.id), "engagement lets it trend");
    let tags = env.e().trending_tags(5).unwrap();
    assert_eq!(tags[0].tag, "firstpost");
    let trending = env.e().trending_tag_posts(lonely, "firstpost", 5).unwrap();
    assert_eq!(trending.posts[0].id, fresh.id);
    // Paging discovery is still whole: no post twice.
    let mut seen = HashSet::new();
    let mut cursor = None;
    loop {
        let p = env.e().discovery_feed(lonely, 3, cursor.as_deref()).unwrap();
        for i in p.items.iter() {
            assert!(seen.insert(i.post.id), "post {} twice", i.post.id);
        }
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert!(seen.contains(&fresh.id));
}
