//! Partitioned engagement (cluster mode), on real RocksDB: a like or comment applied from the
//! log on the node holding its post's author writes its other partitions' effects as follow-ups
//! in its own batch; users' follow-ups (affinity, reply notifications) apply once per origin
//! position whatever their order or repeats; announced counts keep the newest and stand in for
//! the posts whose authors other nodes hold.

mod common;

use std::sync::Arc;

use common::Env;
use feed_engine::{
    AffinityItem, CommentCountItem, FollowUp, LikeCountItem, NotificationKind, Ranker, ReplyItem, UserId, WriteCtx,
};

/// The affinity `reader`'s ranked feed gives `author`'s newest post.
fn affinity(env: &Env, reader: UserId, author: UserId) -> f64 {
    let page = env
        .e()
        .ranked_feed(reader, Some(Ranker::Engagement), 50, None, true)
        .unwrap();
    page.items
        .iter()
        .find(|i| i.post.author == author)
        .map(|i| i.why.unwrap().affinity)
        .expect("a post by the author in the feed")
}

#[test]
fn a_like_from_the_log_leaves_its_affinity_and_its_count_as_follow_ups() {
    let env = Env::new(|_| {});
    let [a, b] = [env.user("author"), env.user("liker")];
    env.e().follow(b, a).unwrap();
    let p = env.post(a, "liked in a cluster");
    assert!(env.e().partition_writes());
    assert!(!env.e().partition_writes(), "set once");
    let t = p.created_at_ms + 5;
    let at = |seq| env.e().at(WriteCtx::replayed(seq, t, Some(p.id + seq)));
    assert!(at(10).like(b, p.id).unwrap());
    assert!(!at(11).like(b, p.id).unwrap(), "liked already: no change, no follow-up");
    assert!(at(12).unlike(b, p.id).unwrap());
    let got = env.e().followups((0, 0), 100).unwrap();
    let aff = |amount| FollowUp::Affinity {
        reader: b,
        author: a,
        amount,
        at_ms: t,
    };
    let count = |likes, as_of| FollowUp::LikeCount {
        post: p.id,
        author: a,
        likes,
        as_of,
    };
    assert_eq!(
        got,
        vec![
            ((10, 0), aff(1.0)),
            ((10, 1), count(1, 10)),
            ((12, 0), aff(-1.0)),
            ((12, 1), count(0, 12)),
        ]
    );
    // The affinity did not change here: it is the liker's partition's, applied from the
    // follow-up by whichever node holds it (this one too, if it does).
    env.post(a, "later");
    env.idle();
    assert_eq!(affinity(&env, b, a), 0.0);
    // Reading from a key on skips what came before; cleared ones are gone.
    assert_eq!(env.e().followups((12, 0), 100).unwrap().len(), 2);
    env.e().clear_followups(&[(10, 0), (10, 1)]).unwrap();
    assert_eq!(env.e().followups((0, 0), 100).unwrap().len(), 2);
    // The like itself is here: its count, its liker, the author's notification.
    assert!(at(14).like(b, p.id).unwrap());
    assert_eq!(env.e().engagement(&[p.id]).unwrap()[0].likes, 1);
    let notes = env.e().notifications(a, 10, None).unwrap();
    assert!(notes.groups.iter().any(|g| g.newest.actor == b), "{notes:?}");
    // The author liking their own post makes no affinity follow-up.
    assert!(at(15).like(a, p.id).unwrap());
    let last: Vec<_> = env.e().followups((15, 0), 10).unwrap();
    assert_eq!(last, vec![((15, 1), count(2, 15))]);
}

#[test]
fn affinity_follow_ups_apply_once_per_origin_position_whatever_their_order() {
    let env = Env::new(|_| {});
    let [a, b] = [env.user("author"), env.user("reader")];
    env.e().follow(b, a).unwrap();
    let p = env.post(a, "x");
    env.idle();
    let item = |origin, origin_seq, amount| AffinityItem {
        origin,
        origin_seq,
        idx: 0,
        reader: b,
        author: a,
        amount,
        at_ms: p.created_at_ms,
    };
    let at = |seq| env.e().at(WriteCtx::replayed(seq, p.created_at_ms, None));
    assert_eq!(
        at(100)
            .apply_user_followups(5, &[item(2, 10, 1.0), item(2, 12, 1.0)], &[], &[])
            .unwrap(),
        2
    );
    let once = affinity(&env, b, a);
    assert!(once > 0.0);
    // Sent again, or an older one late: nothing changes.
    assert_eq!(
        at(101)
            .apply_user_followups(5, &[item(2, 10, 1.0), item(2, 12, 1.0)], &[], &[])
            .unwrap(),
        0
    );
    assert_eq!(
        at(102).apply_user_followups(5, &[item(2, 11, 5.0)], &[], &[]).unwrap(),
        0
    );
    assert_eq!(affinity(&env, b, a), once);
    // Another origin, and the same origin for another partition, have positions of their own.
    assert_eq!(
        at(103).apply_user_followups(5, &[item(3, 4, 1.0)], &[], &[]).unwrap(),
        1
    );
    assert_eq!(
        at(104).apply_user_followups(6, &[item(2, 10, 1.0)], &[], &[]).unwrap(),
        1
    );
    assert!(affinity(&env, b, a) > once);
    // The positions are durable.
    let mut env = env;
    env.reopen();
    let at = |seq| env.e().at(WriteCtx::replayed(seq, p.created_at_ms, None));
    assert_eq!(
        at(105)
            .apply_user_followups(5, &[item(2, 12, 1.0), item(3, 4, 1.0)], &[], &[])
            .unwrap(),
        0
    );
    assert_eq!(
        at(106).apply_user_followups(5, &[item(2, 13, 1.0)], &[], &[]).unwrap(),
        1
    );
}

#[test]
fn announced_counts_keep_the_newest_and_stand_in_for_posts_held_elsewhere() {
    let env = Env::new(|_| {});
    let [a, mine, r] = [env.user("elsewhere"), env.user("mine"), env.user("r")];
    let p = env.post(a, "held by another node");
    let q = env.post(mine, "held here");
    assert!(env.e().set_owner_filter(Arc::new(move |u| u != a)));
    assert!(env.e().partition_writes());
    let t = p.created_at_ms;
    let at = |seq| env.e().at(WriteCtx::replayed(seq, t, None));
    let c = |post, author, likes, as_of| LikeCountItem {
        post,
        author,
        likes,
        as_of,
    };
    let likes = |post| env.e().engagement(&[post]).unwrap()[0].likes;
    assert_eq!(likes(p.id), 0);
    assert_eq!(at(20).apply_counts(&[c(p.id, a, 5, 20)], &[]).unwrap(), 1);
    assert_eq!(likes(p.id), 5);
    // Older, or repeated: kept as is; newer: taken, also within one message.
    assert_eq!(
        at(21)
            .apply_counts(&[c(p.id, a, 3, 15), c(p.id, a, 5, 20)], &[])
            .unwrap(),
        0
    );
    assert_eq!(likes(p.id), 5);
    at(22)
        .apply_counts(&[c(p.id, a, 7, 25), c(p.id, a, 6, 24)], &[])
        .unwrap();
    assert_eq!(likes(p.id), 7);
    // For a post whose author this node holds, its own count stands.
    at(23).apply_counts(&[c(q.id, mine, 9, 30)], &[]).unwrap();
    env.e().like(r, q.id).unwrap();
    assert_eq!(likes(q.id), 1);
    // A deleted post's count goes with it, and a late one is dropped.
    env.e().delete_post(a, p.id).unwrap();
    assert_eq!(at(24).apply_counts(&[c(p.id, a, 8, 30)], &[]).unwrap(), 0);
    assert_eq!(likes(p.id), 0);
}

#[test]
fn a_comment_from_the_log_leaves_its_affinity_count_and_reply_notice_as_follow_ups() {
    let env = Env::new(|_| {});
    let [a, b, z] = [env.user("author"), env.user("commenter"), env.user("replier")];
    let p = env.post(a, "commented in a cluster");
    assert!(env.e().partition_writes());
    let t = p.created_at_ms + 5;
    let at = |seq| env.e().at(WriteCtx::replayed(seq, t, Some(p.id + seq)));
    let top = at(20).comment(b, p.id, None, "first").unwrap();
    let reply = at(21).comment(z, p.id, Some(top.id), "a reply").unwrap();
    let got = env.e().followups((0, 0), 100).unwrap();
    let count = |comments, as_of| FollowUp::CommentCount {
        post: p.id,
        author: a,
        comments,
        as_of,
    };
    let aff = |reader| FollowUp::Affinity {
        reader,
        author: a,
        amount: 2.0,
        at_ms: t,
    };
    assert_eq!(
        got,
        vec![
            ((20, 0), aff(b)),
            ((20, 1), count(1, 20)),
            ((21, 0), aff(z)),
            ((21, 1), count(2, 21)),
            (
                (21, 2),
                FollowUp::Replied {
                    recipient: b,
                    actor: z,
                    post: p.id,
                    author: a,
                    comment: reply.id,
                    at_ms: t,
                }
            ),
        ]
    );
    // The reply's notification is the commenter's partition's: not written here.
    let notes = env.e().notifications(b, 10, None).unwrap();
    assert!(notes.groups.is_empty(), "{notes:?}");
    // The post's author hears of both here (one group: comments on one post).
    let notes = env.e().notifications(a, 10, None).unwrap();
    assert_eq!(notes.groups.len(), 1, "{notes:?}");
    assert_eq!(notes.groups[0].count, 2);
    // A deletion (the top comment and its reply) sends the count down.
    at(22).delete_comment(b, p.id, top.id).unwrap();
    assert_eq!(env.e().followups((22, 0), 10).unwrap(), vec![((22, 1), count(0, 22))]);
}

#[test]
fn a_reply_notice_is_told_once_whatever_its_repeats() {
    let env = Env::new(|_| {});
    let [a, b, z] = [env.user("author"), env.user("commenter"), env.user("replier")];
    let p = env.post(a, "x");
    let notice = |origin_seq| ReplyItem {
        origin: 3,
        origin_seq,
        idx: 2,
        recipient: b,
        actor: z,
        post: p.id,
        comment: p.id + origin_seq,
        at_ms: p.created_at_ms,
    };
    let at = |seq| env.e().at(WriteCtx::replayed(seq, p.created_at_ms, None));
    assert_eq!(at(50).apply_user_followups(1, &[], &[notice(10)], &[]).unwrap(), 1);
    assert_eq!(at(51).apply_user_followups(1, &[], &[notice(10)], &[]).unwrap(), 0);
    // An affinity item of the same event, index 0, behind the notice already applied: dropped.
    let late = AffinityItem {
        origin: 3,
        origin_seq: 10,
        idx: 0,
        reader: z,
        author: a,
        amount: 2.0,
        at_ms: p.created_at_ms,
    };
    assert_eq!(at(52).apply_user_followups(1, &[late], &[notice(11)], &[]).unwrap(), 1);
    let page = env.e().notifications(b, 10, None).unwrap();
    let kinds: Vec<_> = page.groups.iter().map(|g| g.newest.kind).collect();
    assert_eq!(kinds, vec![NotificationKind::Replied; 2], "{page:?}");
    assert_eq!(page.unread, 2);
}

#[test]
fn announced_comment_counts_stand_beside_like_counts() {
    let env = Env::new(|_| {});
    let a = env.user("elsewhere");
    let p = env.post(a, "held by another node");
    assert!(env.e().set_owner_filter(Arc::new(move |u| u != a)));
    assert!(env.e().partition_writes());
    let at = |seq| env.e().at(WriteCtx::replayed(seq, p.created_at_ms, None));
    let likes = LikeCountItem {
        post: p.id,
        author: a,
        likes: 4,
        as_of: 30,
    };
    let comments = |comments, as_of| CommentCountItem {
        post: p.id,
        author: a,
        comments,
        as_of,
    };
    assert_eq!(at(40).apply_counts(&[likes], &[comments(2, 31)]).unwrap(), 2);
    let e = env.e().engagement(&[p.id]).unwrap()[0];
    assert_eq!((e.likes, e.comments), (4, 2));
    // An older comment count does not undo a newer one, and leaves the likes alone.
    at(41).apply_counts(&[], &[comments(1, 29), comments(3, 33)]).unwrap();
    let e = env.e().engagement(&[p.id]).unwrap()[0];
    assert_eq!((e.likes, e.comments), (4, 3));
}
