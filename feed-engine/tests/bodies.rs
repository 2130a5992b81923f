//! Post bodies kept where their author's partition is held (cluster mode), on real RocksDB.
//! A node trims to heads only the posts of partitions it does not hold that a snapshot covers;
//! a partition it takes back gets every body back from a snapshot, except a post deleted since;
//! a held partition with bodies still owed writes no snapshot; nothing applied without a log
//! sequence is ever trimmed; a round resumes where the last one left off, across a restart and
//! a partition taken back, and reads only a given-away partition's posts before that point.
//!
//! Partitions here: a user's id modulo 2. Engine X holds both; engine Y starts as its copy and
//! then gives partition 1 away.

mod common;

use std::sync::Arc;

use common::{Env, T0};
use feed_engine::{Engine, NewPost, Post, UserId, WriteCtx};

fn part(u: UserId) -> u32 {
    (u % 2) as u32
}

fn post(e: &Engine, author: UserId, id: u64) -> Arc<Post> {
    e.get_post(author, id).unwrap_or_else(|err| panic!("post {id}: {err}"))
}

#[test]
fn heads_are_kept_of_covered_posts_held_elsewhere_and_filled_back_from_a_snapshot() {
    let env = Env::new(|_| {});
    let x = env.e();
    let users = env.users("b", 6);
    // Posts from the log at sequences 1..=12, two per user, each with a body worth trimming.
    let mut posts: Vec<(u64, Arc<Post>)> = Vec::new();
    for (i, &u) in users.iter().cycle().take(12).enumerate() {
        let seq = i as u64 + 1;
        let mut new = NewPost::text(format!(
            "post {seq} by {u} #tagged, with a caption long enough to matter"
        ));
        new.location = Some("Lisbon".into());
        let p = x.at(WriteCtx::replayed(seq, T0 + seq, None)).publish(u, new).unwrap();
        posts.push((seq, p));
    }
    // One post written outside the log: never trimmed.
    let local = env.post(users[1], "not from the log");
    x.note_applied(12).unwrap();
    let (y, _ydir) = env.open_copy("y");
    y.set_partition_seq(1, Some(12)).unwrap();

    let covered = |p: u32| (p == 1).then_some(8);
    let t = y.trim_bodies(&[1], u64::MAX / 2, &part, &covered).unwrap();
    let want: Vec<u64> = posts
        .iter()
        .filter(|(seq, p)| part(p.author) == 1 && *seq <= 8)
        .map(|(_, p)| p.id)
        .collect();
    assert_eq!(
        t.posts,
        want.len() as u64,
        "the covered posts of the partition not held"
    );
    assert!(t.bytes > 0);
    for (_, p) in &posts {
        let got = post(&y, p.author, p.id);
        if want.contains(&p.id) {
            assert!(got.trimmed, "post {} is a head", p.id);
            assert!(got.text.is_empty() && got.location.is_none());
            assert_eq!(got.tags(), vec!["tagged".to_string()], "a head keeps its hashtags");
            assert_eq!(
                (got.author, got.rank, got.created_at_ms),
                (p.author, p.rank, p.created_at_ms)
            );
        } else {
            assert_eq!(*got, **p, "post {} keeps its body", p.id);
        }
    }
    assert!(
        !post(&y, users[1], local.id).trimmed,
        "a post with no log sequence stays whole"
    );
    assert!(y.bodies_owed(1).unwrap() && !y.bodies_owed(0).unwrap());
    assert_eq!(
        y.trim_bodies(&[1], u64::MAX / 2, &part, &covered).unwrap().posts,
        0,
        "done already"
    );
    // Nothing trims a held partition, however covered; nor posts newer than asked.
    let all = |_: u32| Some(u64::MAX);
    assert_eq!(x.trim_bodies(&[], u64::MAX / 2, &part, &all).unwrap().posts, 0);
    assert_eq!(y.trim_bodies(&[1], T0, &part, &all).unwrap().posts, 0);

    // X, the holder, snapshots partition 1 with every body.
    let dir = tempfile::tempdir().unwrap();
    let snap = x.export_partitions(&[1], &part, dir.path()).unwrap().remove(0);
    // Y deletes one trimmed post (from the log), then takes partition 1 back: held first, so
    // nothing trims it again; and while bodies are owed it writes no snapshot of it.
    let gone = posts
        .iter()
        .map(|(_, p)| p)
        .find(|p| want.contains(&p.id))
        .unwrap()
        .clone();
    let tagged = |e: &Engine| -> Vec<u64> {
        let mut ids: Vec<u64> = e
            .tag_posts(users[0], "tagged", 50, None)
            .unwrap()
            .posts
            .iter()
            .map(|p| p.id)
            .collect();
        ids.sort_unstable();
        ids
    };
    let mut all_ids: Vec<u64> = posts.iter().map(|(_, p)| p.id).collect();
    all_ids.sort_unstable();
    assert_eq!(tagged(&y), all_ids, "heads stay on their tags' pages");
    y.delete_post(gone.author, gone.id).unwrap();
    all_ids.retain(|&id| id != gone.id);
    assert_eq!(tagged(&y), all_ids, "a deleted head leaves its tag's page");
    y.set_partition_seq(1, None).unwrap();
    let ydir = tempfile::tempdir().unwrap();
    let exported = || -> Vec<u32> {
        let snaps = y.export_partitions(&[0, 1], &part, ydir.path()).unwrap();
        snaps.iter().map(|s| s.partition).collect()
    };
    assert_eq!(exported(), vec![0], "partition 1 owes bodies: no snapshot");

    assert_eq!(y.fill_bodies(&[&snap.path]).unwrap(), want.len() as u64 - 1);
    assert!(!y.bodies_owed(1).unwrap());
    for (_, p) in &posts {
        if p.id == gone.id {
            assert!(y.get_post(p.author, p.id).is_err(), "a post deleted since stays gone");
        } else {
            assert_eq!(*post(&y, p.author, p.id), **p, "post {} whole again", p.id);
        }
    }
    assert_eq!(y.fill_bodies(&[&snap.path]).unwrap(), 0, "nothing left to fill");
    assert_eq!(exported(), vec![0, 1]);
}

#[test]
fn a_damaged_snapshot_fills_nothing_and_leaves_the_bodies_owed() {
    let env = Env::new(|_| {});
    let x = env.e();
    let u = env.users("d", 2).into_iter().find(|&u| part(u) == 1).unwrap();
    let p = x
        .at(WriteCtx::replayed(1, T0 + 1, None))
        .publish(u, NewPost::text("a body"))
        .unwrap();
    x.note_applied(1).unwrap();
    let (y, _ydir) = env.open_copy("y");
    y.set_partition_seq(1, Some(1)).unwrap();
    assert_eq!(y.trim_bodies(&[1], u64::MAX / 2, &part, &|_| Some(1)).unwrap().posts, 1);
    let dir = tempfile::tempdir().unwrap();
    let snap = x.export_partitions(&[1], &part, dir.path()).unwrap().remove(0);
    let bytes = std::fs::read(&snap.path).unwrap();
    let cut = dir.path().join("cut.snap");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    y.set_partition_seq(1, None).unwrap();
    assert!(y.fill_bodies(&[&cut]).is_err());
    assert!(y.bodies_owed(1).unwrap(), "still owed");
    assert!(post(&y, u, p.id).trimmed, "nothing filled from a damaged file");
    assert_eq!(y.fill_bodies(&[&snap.path]).unwrap(), 1);
    assert_eq!(*post(&y, u, p.id), *p);
}

#[test]
fn a_round_resumes_where_the_last_left_off_and_reads_only_a_given_away_partition_before_it() {
    let mut env = Env::new(|_| {});
    let users = env.users("r", 2);
    let (mine, theirs) = match part(users[0]) {
        0 => (users[0], users[1]),
        _ => (users[1], users[0]),
    };
    // Six posts of partition 1 at sequences 1..=6, then two of partition 0 (held here).
    let mut ids = Vec::new();
    for seq in 1..=8u64 {
        let author = if seq <= 6 { theirs } else { mine };
        let p = env
            .e()
            .at(WriteCtx::replayed(seq, T0 + seq, None))
            .publish(author, NewPost::text(format!("post {seq}")))
            .unwrap();
        ids.push(p.id);
    }
    env.e().note_applied(8).unwrap();
    env.e().set_partition_seq(1, Some(8)).unwrap();
    let old = u64::MAX / 2;
    let trim = |env: &Env, covered: u64| {
        env.e()
            .trim_bodies(&[1], old, &part, &|p| (p == 1).then_some(covered))
            .unwrap()
    };
    let first = trim(&env, 3);
    assert_eq!((first.from, first.posts, first.scanned), (0, 3, 8));
    assert_eq!(first.resume_from, ids[3], "the first post not covered yet");
    // The cursor is in the database: a restart resumes where the last round left off.
    env.reopen();
    let second = trim(&env, 8);
    assert_eq!(
        (second.from, second.posts, second.scanned),
        (ids[3], 3, 5),
        "from the fourth post on, after a restart"
    );
    let third = trim(&env, 8);
    assert_eq!((third.posts, third.scanned), (0, 0), "nothing left to read");
    // Partition 0 given away too: its older posts may go now. The round reads those through
    // their author's outbox, not every post again; one not covered yet is read next round.
    env.e().set_partition_seq(0, Some(8)).unwrap();
    let fourth = env
        .e()
        .trim_bodies(&[0, 1], old, &part, &|p| Some(if p == 0 { 7 } else { 8 }))
        .unwrap();
    assert_eq!(
        (fourth.from, fourth.given, fourth.scanned, fourth.posts),
        (third.resume_from, 2, 2, 1),
        "only the given-away partition's two posts read"
    );
    assert_eq!(fourth.resume_from, ids[7], "the post not covered yet");
    let fifth = env.e().trim_bodies(&[0, 1], old, &part, &|_| Some(8)).unwrap();
    assert_eq!((fifth.from, fifth.given, fifth.scanned, fifth.posts), (ids[7], 0, 1, 1));
    for (i, &id) in ids.iter().enumerate() {
        let author = if i < 6 { theirs } else { mine };
        assert!(post(env.e(), author, id).trimmed, "post {i}");
    }
    // Partition 1 taken back: nothing before the cursor is read again.
    env.e().set_partition_seq(1, None).unwrap();
    let sixth = env.e().trim_bodies(&[0], old, &part, &|_| Some(8)).unwrap();
    assert_eq!((sixth.from, sixth.scanned), (fifth.resume_from, 0));
}

/// What a round costs after a partition is given away: reading only its authors' outboxes,
/// against reading every post again (a round with no cursor, what the design before did).
/// Both trim the same posts. Run with
/// `cargo test --release --workspace --test bodies -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: prints the two rounds' times"]
fn a_given_away_partition_costs_its_own_posts_not_every_post() {
    const PARTS: u64 = 16;
    const POSTS: u64 = 64_000;
    let sixteenth = |u: UserId| (u % PARTS) as u32;
    let env = Env::new(|_| {});
    let users = env.users("m", 1_000);
    for seq in 1..=POSTS {
        let author = users[(seq % users.len() as u64) as usize];
        env.e()
            .at(WriteCtx::replayed(seq, T0 + seq, None))
            .publish(
                author,
                NewPost::text(format!("post {seq}, with a caption of some length")),
            )
            .unwrap();
    }
    env.e().note_applied(POSTS).unwrap();
    let old = u64::MAX / 2;
    let all = |_: u32| Some(POSTS);
    let (every, _d1) = env.open_copy("every");
    let (given, _d2) = env.open_copy("given");
    // `given` has run rounds holding everything: its cursor is past the last post.
    assert_eq!(given.trim_bodies(&[], old, &sixteenth, &all).unwrap().posts, 0);
    for e in [&every, &given] {
        e.set_partition_seq(3, Some(POSTS)).unwrap();
    }
    let t = std::time::Instant::now();
    let a = every.trim_bodies(&[3], old, &sixteenth, &all).unwrap();
    let full = t.elapsed();
    let t = std::time::Instant::now();
    let b = given.trim_bodies(&[3], old, &sixteenth, &all).unwrap();
    let caught_up = t.elapsed();
    assert_eq!(a.posts, b.posts, "the same posts trimmed either way");
    assert!(a.posts >= POSTS / PARTS - 1);
    eprintln!(
        "{POSTS} posts by {} users, partition 3 of {PARTS} given away: every post read again {:.1} ms ({} read), \
         its authors' outboxes {:.1} ms ({} read) — {:.1}x; {} trimmed either way",
        users.len(),
        full.as_secs_f64() * 1e3,
        a.scanned,
        caught_up.as_secs_f64() * 1e3,
        b.scanned,
        full.as_secs_f64() / caught_up.as_secs_f64(),
        b.posts
    );
}
