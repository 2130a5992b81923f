//! Engagement on real RocksDB: likes and comments with their counts, visibility and blocks,
//! notifications (grouped, silenced, marked seen, bounded), hashtags and search. Every refusal
//! leaves the stored data unchanged.

mod common;

use common::Env;
use feed_engine::{Error, NewPost, NotificationKind};

fn not_found(r: Result<impl std::fmt::Debug, Error>) {
    assert!(matches!(r, Err(Error::NotFound(_))), "want NotFound, got {r:?}");
}

fn denied(r: Result<impl std::fmt::Debug, Error>) {
    assert!(
        matches!(r, Err(Error::PermissionDenied(_))),
        "want PermissionDenied, got {r:?}"
    );
}

fn invalid(r: Result<impl std::fmt::Debug, Error>) {
    assert!(
        matches!(r, Err(Error::InvalidArgument(_))),
        "want InvalidArgument, got {r:?}"
    );
}

#[test]
fn likes_are_idempotent_counted_and_paged() {
    let env = Env::new(|_| {});
    let author = env.user("author");
    let fans = env.users("fan", 7);
    let p = env.post(author, "hello");
    for &f in &fans {
        assert!(env.e().like(f, p.id).unwrap(), "a first like changes");
        assert!(!env.e().like(f, p.id).unwrap(), "liking again changes nothing");
    }
    assert_eq!(env.e().engagement(&[p.id]).unwrap()[0].likes, 7);
    assert!(env.e().has_liked(fans[0], p.id).unwrap());
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = env.e().likers(author, p.id, 3, cursor.as_deref()).unwrap();
        seen.extend(page.users);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, fans, "every liker once, ascending");
    assert!(env.e().unlike(fans[0], p.id).unwrap());
    assert!(!env.e().unlike(fans[0], p.id).unwrap(), "nothing to take back");
    assert_eq!(env.e().engagement(&[p.id]).unwrap()[0].likes, 6);
    assert!(!env.e().has_liked(fans[0], p.id).unwrap());
}

#[test]
fn engagement_follows_visibility_and_blocks() {
    let env = Env::new(|_| {});
    let private = env.e().create_user("private", true).unwrap().id;
    let stranger = env.user("stranger");
    let friend = env.user("friend");
    let hidden = env.post(private, "for followers");
    env.idle();
    let before = env.e().data_checksum().unwrap();
    // A private post is NotFound to a stranger, exactly like a post that does not exist.
    not_found(env.e().like(stranger, hidden.id));
    not_found(env.e().comment(stranger, hidden.id, None, "hi"));
    not_found(env.e().likers(stranger, hidden.id, 10, None));
    not_found(env.e().like(stranger, 12345));
    assert_eq!(env.e().data_checksum().unwrap(), before, "refusals wrote nothing");

    let public = env.user("public");
    let p = env.post(public, "open");
    env.e().like(friend, p.id).unwrap();
    env.e().comment(friend, p.id, None, "from friend").unwrap();
    // The author blocks the friend: the friend can no longer see the post, nor engage.
    env.e().block(public, friend).unwrap();
    not_found(env.e().like(friend, p.id));
    // The author no longer sees the friend's engagement.
    assert!(env.e().likers(public, p.id, 10, None).unwrap().users.is_empty());
    assert!(
        env.e()
            .comments(public, p.id, None, 10, None)
            .unwrap()
            .comments
            .is_empty()
    );
    // A stranger still does.
    assert_eq!(env.e().likers(stranger, p.id, 10, None).unwrap().users, vec![friend]);
    // Blocking the author stops one's own engagement with them too.
    env.e().block(stranger, public).unwrap();
    env.idle();
    let before = env.e().data_checksum().unwrap();
    denied(env.e().like(stranger, p.id));
    denied(env.e().comment(stranger, p.id, None, "x"));
    assert_eq!(env.e().data_checksum().unwrap(), before);
}

#[test]
fn comments_thread_one_level_page_oldest_first_and_delete_with_replies() {
    let env = Env::new(|c| c.max_comment_bytes = 50);
    let author = env.user("author");
    let a = env.user("a");
    let b = env.user("b");
    let p = env.post(author, "post");
    let mut top = Vec::new();
    for i in 0..5 {
        top.push(env.e().comment(a, p.id, None, &format!("c{i}")).unwrap());
        env.clock.advance(10);
    }
    let r1 = env.e().comment(b, p.id, Some(top[0].id), "reply").unwrap();
    let r2 = env.e().comment(author, p.id, Some(top[0].id), "reply 2").unwrap();
    env.idle();
    let before = env.e().data_checksum().unwrap();
    invalid(env.e().comment(a, p.id, Some(r1.id), "deeper"));
    invalid(env.e().comment(a, p.id, None, ""));
    invalid(env.e().comment(a, p.id, None, " \u{200B} "));
    invalid(env.e().comment(a, p.id, None, &"x".repeat(51)));
    not_found(env.e().comment(a, p.id, Some(999), "to nothing"));
    denied(env.e().delete_comment(b, p.id, top[1].id));
    not_found(env.e().delete_comment(a, p.id, 999));
    assert_eq!(env.e().data_checksum().unwrap(), before, "refusals wrote nothing");
    assert_eq!(env.e().engagement(&[p.id]).unwrap()[0].comments, 7);

    let mut got = Vec::new();
    let mut cursor = None;
    loop {
        let page = env.e().comments(b, p.id, None, 2, cursor.as_deref()).unwrap();
        got.extend(page.comments.iter().map(|c| c.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(
        got,
        top.iter().map(|c| c.id).collect::<Vec<_>>(),
        "top level, oldest first"
    );
    let replies = env.e().comments(b, p.id, Some(top[0].id), 10, None).unwrap().comments;
    assert_eq!(replies.iter().map(|c| c.id).collect::<Vec<_>>(), vec![r1.id, r2.id]);

    // The post's author may delete anyone's comment; the parent goes with its replies.
    env.e().delete_comment(author, p.id, top[0].id).unwrap();
    assert_eq!(env.e().engagement(&[p.id]).unwrap()[0].comments, 4);
    not_found(env.e().comments(b, p.id, Some(top[0].id), 10, None));
    // A comment's own author may delete it.
    env.e().delete_comment(a, p.id, top[1].id).unwrap();
    assert_eq!(env.e().comments(b, p.id, None, 10, None).unwrap().comments.len(), 3);
    // Deleting the post takes its engagement with it.
    env.e().like(a, p.id).unwrap();
    env.e().delete_post(author, p.id).unwrap();
    assert_eq!(env.e().engagement(&[p.id]).unwrap()[0], Default::default());
}

#[test]
fn notifications_group_silence_mark_seen_and_stay_bounded() {
    let env = Env::new(|c| c.notifications_kept = 40);
    let author = env.user("author");
    let fans = env.users("fan", 6);
    let muted = env.user("muted");
    env.e().mute(author, muted).unwrap();
    let p = env.post(author, "post");
    for &f in &fans {
        env.e().follow(f, author).unwrap();
        env.clock.advance(10);
    }
    for &f in &fans {
        env.e().like(f, p.id).unwrap();
        env.clock.advance(10);
    }
    env.e().like(muted, p.id).unwrap();
    env.e().like(author, p.id).unwrap();
    let c = env.e().comment(fans[0], p.id, None, "nice").unwrap();
    env.e().comment(fans[1], p.id, Some(c.id), "agreed").unwrap();

    let page = env.e().notifications(author, 20, None).unwrap();
    let kinds: Vec<_> = page.groups.iter().map(|g| g.newest.kind).collect();
    // Newest first: the comments (grouped), the likes (grouped), then each follow alone.
    assert_eq!(kinds[0], NotificationKind::Commented);
    assert_eq!(
        page.groups[0].count, 2,
        "a comment and a reply on one post are one group"
    );
    assert_eq!(kinds[1], NotificationKind::Liked);
    let likes = &page.groups[1];
    assert_eq!(
        likes.count, 6,
        "the muted user's and the author's own likes are not told"
    );
    assert_eq!(likes.actors, vec![fans[5], fans[4], fans[3]], "newest three named");
    assert_eq!(kinds[2..], vec![NotificationKind::Followed; 6]);
    assert_eq!(page.unread, 14);
    // fans[0] hears of the reply to their comment.
    let f0 = env.e().notifications(fans[0], 20, None).unwrap();
    assert_eq!(f0.groups[0].newest.kind, NotificationKind::Replied);
    assert_eq!(f0.groups[0].newest.actor, fans[1]);

    // Marking seen moves forward only, and never past the newest held.
    let newest = page.groups[0].newest.id;
    assert_eq!(env.e().mark_notifications_seen(author, u64::MAX).unwrap(), newest);
    assert_eq!(env.e().mark_notifications_seen(author, 1).unwrap(), newest);
    let page = env.e().notifications(author, 20, None).unwrap();
    assert_eq!(page.unread, 0);
    assert!(page.groups.iter().all(|g| !g.unread));
    env.e().unfollow(fans[0], author).unwrap();
    env.e().follow(fans[0], author).unwrap();
    assert_eq!(env.e().unread_notifications(author).unwrap(), 1);

    // Bounded: past notifications-kept (+ a quarter) the oldest go.
    let many = env.users("many", 60);
    for &m in &many {
        env.e().follow(m, author).unwrap();
    }
    let mut held = 0;
    let mut cursor = None;
    loop {
        let page = env.e().notifications(author, 25, cursor.as_deref()).unwrap();
        held += page.groups.iter().map(|g| g.count).sum::<u64>();
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert!((40..=50).contains(&held), "held {held} notifications");
}

#[test]
fn tags_feed_newest_first_hide_what_may_not_be_seen_and_search_by_prefix() {
    let env = Env::new(|c| c.max_tags = 3);
    let a = env.user("ada");
    let private = env.e().create_user("adam", true).unwrap().id;
    let viewer = env.user("zed");
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(env.post(a, &format!("#Rust number {i} #tokio")).id);
    }
    env.post(private, "secret #rust");
    env.post(a, "#rustacean");
    env.idle();
    let before = env.e().data_checksum().unwrap();
    invalid(env.e().publish(a, NewPost::text("#a #b #c #d")));
    invalid(env.e().publish(
        a,
        NewPost {
            location: Some("\u{7}".into()),
            ..NewPost::text("x")
        },
    ));
    invalid(env.e().tag_posts(viewer, "not a tag!", 10, None));
    invalid(env.e().search_users(viewer, "UPPER CASE", 10));
    assert_eq!(env.e().data_checksum().unwrap(), before, "refusals wrote nothing");

    let mut got = Vec::new();
    let mut cursor = None;
    loop {
        let page = env.e().tag_posts(viewer, "#RUST", 2, cursor.as_deref()).unwrap();
        got.extend(page.posts.iter().map(|p| p.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(got, ids, "newest first, the private account's post left out");
    env.e().delete_post(a, ids[0]).unwrap();
    assert_eq!(env.e().tag_posts(viewer, "rust", 10, None).unwrap().posts.len(), 4);
    let located = env
        .e()
        .publish(
            a,
            NewPost {
                location: Some("Lisbon".into()),
                ..NewPost::text("here")
            },
        )
        .unwrap();
    assert_eq!(
        env.e().get_post(viewer, located.id).unwrap().location.as_deref(),
        Some("Lisbon")
    );

    let tags = env.e().search_tags("#ru", 10).unwrap();
    let names: Vec<_> = tags.iter().map(|t| (t.tag.as_str(), t.posts)).collect();
    assert_eq!(
        names,
        vec![("rust", 5), ("rustacean", 1)],
        "most used first, deletes counted"
    );
    let users: Vec<_> = env
        .e()
        .search_users(viewer, "ad", 10)
        .unwrap()
        .into_iter()
        .map(|u| u.handle)
        .collect();
    assert_eq!(users, vec!["ada", "adam"]);
    env.e().block(a, viewer).unwrap();
    let users = env.e().search_users(viewer, "ad", 10).unwrap();
    assert_eq!(users.len(), 1, "a user who blocked the viewer is not found");
}

#[test]
fn engagement_survives_a_restart() {
    let mut env = Env::new(|_| {});
    let a = env.user("a");
    let b = env.user("b");
    let p = env.post(a, "durable #once");
    env.e().like(b, p.id).unwrap();
    let c = env.e().comment(b, p.id, None, "kept").unwrap();
    env.reopen();
    assert_eq!(env.e().engagement(&[p.id]).unwrap()[0].likes, 1);
    assert_eq!(env.e().comments(a, p.id, None, 10, None).unwrap().comments, vec![c]);
    assert_eq!(env.e().notifications(a, 10, None).unwrap().groups.len(), 2);
    assert_eq!(env.e().tag_posts(b, "once", 10, None).unwrap().posts.len(), 1);
}

/// Likes from many callers at once — waiting threads and tickets in flight together, the same
/// pair liked twice in one batch, unliked in the next — each change counted once: the counter,
/// the likers and the "liked" notifications agree with what was asked.
#[test]
fn likes_in_flight_together_each_change_once() {
    let env = Env::new(|c| {
        c.notifications_kept = 10_000;
        c.max_page_size = 500;
    });
    let author = env.user("author");
    let fans = env.users("fan", 120);
    let posts: Vec<u64> = (0..4).map(|i| env.post(author, &format!("p{i}")).id).collect();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    // Every pair liked twice through tickets submitted together: one change each.
    let tickets: Vec<_> = fans
        .iter()
        .flat_map(|&f| posts.iter().map(move |&p| (f, p)))
        .flat_map(|(f, p)| [env.e().like_async(f, p), env.e().like_async(f, p)])
        .collect();
    let changed: Vec<bool> = tickets.into_iter().map(|t| rt.block_on(t).unwrap()).collect();
    assert!(
        changed.chunks(2).all(|c| c == [true, false]),
        "first like changes, second not"
    );
    // A third of the pairs unliked from four waiting threads while tickets like the rest again.
    let keep = |f: u64, p: u64| !(f + p).is_multiple_of(3);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (env, fans, posts) = (&env, &fans, &posts);
            s.spawn(move || {
                for &f in fans.iter().skip(t).step_by(4) {
                    for &p in posts.iter().filter(|&&p| !keep(f, p)) {
                        assert!(env.e().unlike(f, p).unwrap(), "user {f} liked post {p}");
                    }
                }
            });
        }
        let again: Vec<_> = fans
            .iter()
            .flat_map(|&f| posts.iter().filter(move |&&p| keep(f, p)).map(move |&p| (f, p)))
            .map(|(f, p)| env.e().like_async(f, p))
            .collect();
        for t in again {
            assert!(!rt.block_on(t).unwrap(), "liked already");
        }
    });
    env.idle();
    for &p in &posts {
        let want: Vec<u64> = fans.iter().copied().filter(|&f| keep(f, p)).collect();
        assert_eq!(
            env.e().engagement(&[p]).unwrap()[0].likes,
            want.len() as u64,
            "post {p}"
        );
        let page = env.e().likers(author, p, 500, None).unwrap();
        assert_eq!(page.users, want, "likers of post {p}");
    }
    let liked = env.e().notifications(author, 500, None).unwrap();
    let told: usize = liked.groups.iter().map(|g| g.count as usize).sum();
    assert_eq!(
        told,
        fans.len() * posts.len(),
        "one \"liked\" per first like, none for the second"
    );
}

/// A like taken back long after it was given leaves no affinity (the decayed remainder of the
/// merge operands is clamped, never negative).
#[test]
fn a_like_taken_back_later_leaves_no_affinity() {
    let env = Env::new(|_| {});
    let reader = env.user("reader");
    let author = env.user("author");
    env.e().follow(reader, author).unwrap();
    let p = env.post(author, "liked then not");
    env.e().like(reader, p.id).unwrap();
    env.clock.advance(common::HOUR * 24);
    env.e().unlike(reader, p.id).unwrap();
    env.post(author, "later");
    env.idle();
    let page = env
        .e()
        .ranked_feed(reader, Some(feed_engine::Ranker::Engagement), 10, None, true)
        .unwrap();
    for i in &page.items {
        let a = i.why.unwrap().affinity;
        assert!(a == 0.0, "affinity after the like was taken back: {a}");
    }
}

/// Likes and comments racing their posts' deletion: none outlives its post (no like record, no
/// count), whichever write lands first; each call answers with a change or `NotFound`.
#[test]
fn engagement_racing_a_post_s_deletion_does_not_outlive_it() {
    let env = Env::new(|_| {});
    let author = env.user("author");
    let fans = env.users("fan", 32);
    let posts: Vec<u64> = (0..60).map(|i| env.post(author, &format!("p{i}")).id).collect();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let gone_or = |r: Result<bool, Error>| match r {
        Ok(_) | Err(Error::NotFound(_)) => {}
        Err(e) => panic!("{e}"),
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            for &p in &posts {
                env.e().delete_post(author, p).unwrap();
            }
        });
        s.spawn(|| {
            for &p in &posts {
                gone_or(env.e().comment(fans[0], p, None, "racing").map(|_| true));
            }
        });
        let tickets: Vec<_> = posts
            .iter()
            .flat_map(|&p| fans.iter().map(move |&f| (f, p)))
            .map(|(f, p)| env.e().like_async(f, p))
            .collect();
        for t in tickets {
            gone_or(rt.block_on(t));
        }
    });
    env.idle();
    for &p in &posts {
        assert_eq!(env.e().stored_likes(p).unwrap(), 0, "like records of deleted post {p}");
        let c = env.e().engagement(&[p]).unwrap()[0];
        assert_eq!((c.likes, c.comments), (0, 0), "counts of deleted post {p}");
    }
}
