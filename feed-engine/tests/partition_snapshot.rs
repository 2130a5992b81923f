//! Partition snapshots, on real RocksDB: one node's owned rows of a partition, exported at its
//! applied sequence and restored on another node that holds stale rows of the same partition,
//! replace exactly those rows — the other partitions' rows, the replicated state and blocks
//! stay — and a row the restoring node's own replicated state has since made void (a post it
//! deleted, an edge across a block it applied) is left out. A damaged file changes nothing.
//!
//! Partitions here: a user's id modulo 2. Engine X is the partition's owner; engine Y starts
//! as a copy of X (its checkpoint), then both go their own ways.

mod common;

use std::collections::BTreeSet;

use common::Env;
use feed_engine::{Engine, UserId, Viewer};

const P: u32 = 0;

fn part(u: UserId) -> u32 {
    (u % 2) as u32
}

/// Everything a user's partition answers about them, and about their posts.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    following: Vec<UserId>,
    followers: Vec<UserId>,
    counts: (u64, u64),
    notifications: String,
    unread: u64,
    marker: Option<u64>,
    likers: Vec<(u64, Vec<UserId>, u64)>,
    comments: Vec<(u64, usize, u64)>,
}

fn seen(e: &Engine, u: UserId, posts: &[u64]) -> Seen {
    let user = e.get_user(u).unwrap();
    let notes = e.notifications(u, 100, None).unwrap();
    let mut likers = Vec::new();
    let mut comments = Vec::new();
    for &p in posts {
        let Ok(post) = e.get_post(u, p) else { continue };
        if post.author != u {
            continue;
        }
        let eng = e.engagement(&[p]).unwrap()[0];
        likers.push((p, e.likers(u, p, 100, None).unwrap().users, eng.likes));
        comments.push((
            p,
            e.comments(u, p, None, 100, None).unwrap().comments.len(),
            eng.comments,
        ));
    }
    Seen {
        following: e.following(Viewer::Operator, u, 100, None).unwrap().users,
        followers: e.followers(Viewer::Operator, u, 100, None).unwrap().users,
        counts: (user.followers, user.following),
        notifications: format!("{:?}", notes.groups),
        unread: notes.unread,
        marker: e.read_marker(u).unwrap(),
        likers,
        comments,
    }
}

/// `n` users named `prefix…`, each with one post.
fn users_with_posts(env: &Env, prefix: &str, n: usize) -> (Vec<UserId>, Vec<u64>) {
    let users = env.users(prefix, n);
    let posts = users.iter().map(|&u| env.post(u, "hello").id).collect();
    (users, posts)
}

#[test]
fn a_restored_partition_replaces_exactly_its_own_rows_and_leaves_out_what_the_restoring_node_voided() {
    let env = Env::new(|_| {});
    let x = env.e();
    let (users, posts) = users_with_posts(&env, "u", 10);
    for (i, &a) in users.iter().enumerate() {
        for (j, &b) in users.iter().enumerate() {
            if i != j && (i + j) % 3 == 0 {
                x.follow(a, b).unwrap();
            }
        }
        x.like(a, posts[(i + 1) % users.len()]).unwrap();
    }
    x.comment(users[1], posts[0], None, "first").unwrap();
    x.comment(users[0], posts[3], None, "on a post Y deletes").unwrap();
    x.mute(users[0], users[3]).unwrap();
    x.block(users[5], users[8]).unwrap();
    // Y: a copy of X as of now.
    let (y, _ydir) = env.open_copy("y");

    // X, the partition's owner, goes on: graph, engagement and reading state change.
    x.unfollow(users[0], users[3]).unwrap();
    x.follow(users[0], users[1]).unwrap_or_else(|e| panic!("{e}"));
    x.like(users[2], posts[4]).unwrap();
    x.unlike(users[0], posts[1]).unwrap();
    x.comment(users[3], posts[2], None, "second").unwrap();
    x.set_read_marker(users[2], posts[5]).unwrap();
    x.mark_notifications_seen(users[4], u64::MAX).unwrap();
    x.unmute(users[0], users[3]).unwrap();
    x.mute(users[2], users[7]).unwrap();
    // Y meanwhile kept stale rows of the partition, then applied from its log a block and a
    // deletion the snapshot does not know of.
    // (Ids 2, 4, …, 10 — users[1], users[3], … — are the partition's.)
    y.follow(users[9], users[1]).unwrap();
    y.like(users[6], posts[5]).unwrap();
    assert!(x.is_following(users[1], users[2]).unwrap() && x.is_following(users[2], users[1]).unwrap());
    y.block(users[2], users[1]).unwrap();
    y.delete_post(users[3], posts[3]).unwrap();

    let others: Vec<UserId> = users.iter().copied().filter(|&u| part(u) != P).collect();
    let mine: Vec<UserId> = users.iter().copied().filter(|&u| part(u) == P).collect();
    assert_eq!(mine, vec![users[1], users[3], users[5], users[7], users[9]]);
    let y_others_before: Vec<Seen> = others.iter().map(|&u| seen(&y, u, &posts)).collect();

    x.note_applied(100).unwrap();
    y.note_applied(120).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let snaps = x.export_partitions(&[0, 1], &part, dir.path()).unwrap();
    assert_eq!(snaps.len(), 2, "both partitions are held by X");
    let snap = snaps.iter().find(|s| s.partition == P).unwrap();
    assert_eq!(snap.seq, 100);
    assert!(snap.rows > 0);

    // A damaged file is refused and changes nothing.
    let bytes = std::fs::read(&snap.path).unwrap();
    let cut = dir.path().join("cut.snap");
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let bad = dir.path().join("bad.snap");
    std::fs::write(&bad, b"not a snapshot at all").unwrap();
    let before = y.data_checksum().unwrap();
    for f in [&cut, &bad] {
        let err = y.restore_partition(f, &part).unwrap_err();
        assert!(err.to_string().contains("partition snapshot"), "{err}");
        assert_eq!(y.data_checksum().unwrap(), before, "a damaged snapshot changes nothing");
    }
    assert_eq!(
        y.partition_seq(P).unwrap(),
        None,
        "a failed restore records no position"
    );

    assert_eq!(y.restore_partition(&snap.path, &part).unwrap(), (P, 100));
    assert_eq!(y.partition_seq(P).unwrap(), Some(100));

    // The partition's own rows are X's, but for what Y voided since.
    for &u in &mine {
        let mut want = seen(x, u, &posts);
        let got = seen(&y, u, &posts);
        if u == users[1] {
            // Y applied a block between this user and users[2]: neither edge survives.
            let other = users[2];
            assert!(want.following.contains(&other) && want.followers.contains(&other));
            want.following.retain(|&f| f != other);
            want.followers.retain(|&f| f != other);
            want.counts.0 -= 1;
            want.counts.1 -= 1;
            // The notification from the blocked user is stored but not shown (a read-time rule).
            assert!(want.notifications.contains(&format!("actor: {other},")));
            assert!(!got.notifications.contains(&format!("actor: {other},")));
            want.notifications = got.notifications.clone();
            want.unread -= 1;
        }
        if u == users[3] {
            // Y deleted this user's post: its likes and comments are not restored.
            assert!(want.likers.iter().any(|l| l.0 == posts[3] && !l.1.is_empty()));
            want.likers.retain(|l| l.0 != posts[3]);
            want.comments.retain(|c| c.0 != posts[3]);
            // Notifications about it are stored but not shown (a read-time rule).
            let post = format!("post: Some({})", posts[3]);
            assert!(want.notifications.contains(&post) && !got.notifications.contains(&post));
            assert!(got.unread < want.unread);
            want.notifications = got.notifications.clone();
            want.unread = got.unread;
        }
        assert_eq!(got, want, "user {u}: the partition's rows as X had them");
    }
    // Nothing of the other partition moved, and Y's blocks stand.
    let y_others_after: Vec<Seen> = others.iter().map(|&u| seen(&y, u, &posts)).collect();
    assert_eq!(
        y_others_after, y_others_before,
        "the other partition's rows are untouched"
    );
    assert!(
        y.follow(users[1], users[2]).is_err(),
        "Y's block between them still holds"
    );
    assert!(y.follow(users[8], users[5]).is_err(), "the block both had still holds");
    let stale: BTreeSet<UserId> = y
        .following(Viewer::Operator, users[9], 100, None)
        .unwrap()
        .users
        .into_iter()
        .collect();
    assert!(!stale.contains(&users[1]), "Y's stale follow of the partition is gone");
    assert!(
        !y.likers(users[6], posts[5], 100, None)
            .unwrap()
            .users
            .contains(&users[6]),
        "Y's stale like on the partition's post is gone"
    );
}

#[test]
fn a_partition_not_held_is_not_exported_and_a_snapshot_ahead_of_the_node_is_refused() {
    let env = Env::new(|_| {});
    let e = env.e();
    let users = env.users("v", 4);
    e.follow(users[0], users[1]).unwrap();
    e.note_applied(50).unwrap();
    e.set_partition_seq(1, Some(40)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let snaps = e.export_partitions(&[0, 1], &part, dir.path()).unwrap();
    assert_eq!(snaps.iter().map(|s| s.partition).collect::<Vec<_>>(), vec![0]);
    let (other, _d) = env.open_copy("behind");
    other.note_applied(10).unwrap();
    let before = other.data_checksum().unwrap();
    let err = other.restore_partition(&snaps[0].path, &part).unwrap_err();
    assert!(err.to_string().contains("ahead"), "{err}");
    assert_eq!(other.data_checksum().unwrap(), before, "nothing changed");
}

#[test]
fn partitions_restored_together_end_as_if_restored_one_by_one() {
    let env = Env::new(|_| {});
    let x = env.e();
    let (users, posts) = users_with_posts(&env, "w", 6);
    for (i, &a) in users.iter().enumerate() {
        x.follow(a, users[(i + 1) % users.len()]).unwrap();
        x.like(a, posts[(i + 2) % users.len()]).unwrap();
    }
    let (together, _d1) = env.open_copy("together");
    let (apart, _d2) = env.open_copy("apart");
    // X goes on; both copies hold the same stale rows of both partitions.
    x.unfollow(users[0], users[1]).unwrap();
    x.follow(users[3], users[0]).unwrap();
    x.unlike(users[1], posts[3]).unwrap();
    for y in [&together, &apart] {
        y.follow(users[4], users[2]).unwrap();
        y.note_applied(10).unwrap();
    }
    x.note_applied(10).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let snaps = x.export_partitions(&[0, 1], &part, dir.path()).unwrap();
    let files: Vec<&std::path::Path> = snaps.iter().map(|s| s.path.as_path()).collect();
    assert_eq!(
        together.restore_partitions(&files, &part).unwrap(),
        vec![(0, 10), (1, 10)]
    );
    for f in &files {
        apart.restore_partition(f, &part).unwrap();
    }
    assert_eq!(together.data_checksum().unwrap(), apart.data_checksum().unwrap());
    for &u in &users {
        assert_eq!(seen(&together, u, &posts), seen(x, u, &posts), "user {u}: as X has it");
    }
    // The same partition twice at once is refused, and changes nothing.
    let before = together.data_checksum().unwrap();
    assert!(together.restore_partitions(&[files[0], files[0]], &part).is_err());
    assert_eq!(together.data_checksum().unwrap(), before);
}
