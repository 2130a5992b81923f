//! Partition snapshots on a real cluster (3 nats-servers, 3 feed-server processes, a checkpoint
//! and partition snapshots every second, suspicion 2 s). A node's partitions are snapshotted and
//! their older events dropped from the log; then the node is `kill -9`ed at a seeded point while
//! likes of its author's post go through the other two. The survivors can no longer rebuild its
//! partitions from the log alone: they must restore the snapshots and replay the events after
//! them. Then the node comes back and takes its partitions back the same way. After each phase,
//! through every live node: both directions of every edge agree, every like and comment on the
//! taken-over author's post is listed once, every follower's feed holds every post once.
//!
//! The seed is printed; `FEEDLINE_SEED=N` replays one, `FEEDLINE_CLUSTER_ROUNDS=N` runs more.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::Rng;
use common::cluster::TestCluster;
use common::cluster::checks::{
    check_comments, check_edges, check_feeds, check_likes, follow_all, like_all, like_until_refused, publish_some,
    restart_and_rejoin, settled, signal_after, victim_and_survivors,
};
use common::cluster_calls::{WAIT, metric_sum};

const PURGES: &str = "feedline_cluster_log_purges_total";
const RESTORED: &str = "feedline_cluster_partitions_restored_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_whose_old_events_were_dropped_are_taken_over_from_their_snapshots_and_taken_back() {
    for (round, seed) in common::seeded_rounds(0x5a4b_5107).into_iter().enumerate() {
        eprintln!("partition snapshot round {round}: FEEDLINE_SEED={seed}");
        one_round(seed).await;
    }
}

fn count(c: &TestCluster, i: usize, name: &str) -> f64 {
    metric_sum(&c.scrape(i), name, "")
}

async fn one_round(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let mut c = TestCluster::start_args(3, 1, true, &["--suspicion-ms", "2000"]).await;
    let (victim, alive) = victim_and_survivors(&mut rng);
    // An author the victim holds, one a survivor holds, and twelve followers over all three,
    // who follow both, like the victim's author's post and comment on it.
    let a_v = c.create_user(victim, "ps_author_v").await;
    let a_o = c.create_user(alive[0], "ps_author_o").await;
    let mut followers = Vec::new();
    for k in 0..12 {
        followers.push(c.create_user(k % 3, &format!("ps_{k}")).await);
    }
    follow_all(&c, &[0, 1, 2], &followers, &[a_v, a_o]).await;
    let mut by_v = publish_some(&c, &[0, 1, 2], a_v, 6, "before v").await;
    let by_o = publish_some(&c, &[0, 1, 2], a_o, 6, "before o").await;
    let liked = *by_v.first().expect("a post by the victim's author");
    like_all(&c, &[0, 1, 2], &followers[..6], liked).await;
    let mut said = BTreeSet::new();
    for (k, &f) in followers.iter().enumerate().take(3) {
        said.insert(
            c.comment(k % 3, f, liked, format!("comment {k}"))
                .await
                .expect("comment"),
        );
    }

    // The victim snapshots its partitions after all that, and the log drops their events up to
    // that snapshot (once every node's checkpoint is past it): the follows, likes and comments
    // above are gone from the log. (A snapshot is recorded only at a newer log position, so the
    // other author keeps posting.)
    const SNAPPED: &str = "partition snapshots uploaded";
    const DROPPED: &str = "dropped a partition's older events";
    let mut by_o = by_o;
    let victim_node = &c.nodes[victim];
    let rounds_before = victim_node.log_numbers(SNAPPED, "seq").len();
    let deadline = std::time::Instant::now() + WAIT;
    let dropped_to = loop {
        let after = victim_node.log_numbers(SNAPPED, "seq").get(rounds_before).copied();
        let dropped = victim_node.log_numbers(DROPPED, "to").into_iter().max();
        if let (Some(snap), Some(to)) = (after, dropped)
            && to >= snap
        {
            break to;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "seed {seed}: node {victim} did not snapshot its partitions and drop their older events within {WAIT:?}"
        );
        by_o.extend(publish_some(&c, &alive, a_o, 1, "meanwhile").await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(count(&c, victim, PURGES) >= 1.0);
    eprintln!("seed {seed}: node {victim}'s partitions dropped from the log up to {dropped_to}");

    // The victim dies at a seeded point while the other six like its author's post through
    // the survivors (decided on the victim: some are applied there just before the kill).
    let kill_after = rng.below(60);
    let pid = c.nodes[victim].pid().expect("victim runs");
    let cr = &c;
    let liking = like_until_refused(cr, &alive, &followers[6..], liked);
    let kill = signal_after(pid, "-9", Duration::from_millis(kill_after));
    let (unliked, ()) = tokio::join!(liking, kill);
    c.nodes[victim].kill9();
    eprintln!(
        "seed {seed}: node {victim} killed {kill_after} ms into the likes; {} of 6 left",
        unliked.len()
    );

    // The survivors take its partitions over from the snapshots: its author publishes again.
    let id = settled(&[tonic::Code::Unavailable], || {
        c.publish(alive[0], a_v, "after the kill")
    })
    .await
    .expect("the dead node's author is served again");
    by_v.insert(id);
    let restored: f64 = alive.iter().map(|&i| count(&c, i, RESTORED)).sum();
    assert!(
        restored >= 1.0,
        "seed {seed}: the survivors took node {victim}'s partitions over without restoring a snapshot"
    );
    like_all(&c, &alive, &unliked, liked).await;
    let id = settled(&[tonic::Code::Unavailable], || {
        c.comment(alive[1], followers[7], liked, "while the node is down".into())
    })
    .await
    .expect("comment while the node is down");
    said.insert(id);

    let fans: BTreeSet<u64> = followers.iter().copied().collect();
    let follows: Vec<Vec<u64>> = followers.iter().map(|_| vec![a_v, a_o]).collect();
    let scope: BTreeSet<u64> = by_v.union(&by_o).copied().collect();
    let want: Vec<BTreeSet<u64>> = followers.iter().map(|_| scope.clone()).collect();
    check_edges(&c, &alive, &followers, &[a_v, a_o], &follows).await;
    check_likes(&c, &alive, a_o, liked, &fans).await;
    check_comments(&c, &alive, a_o, liked, &said).await;
    check_feeds(&c, &alive, &followers, &scope, &want).await;

    // The node comes back and takes its partitions back: its own position is older than the
    // events the log still holds, so it restores the survivors' snapshots too.
    restart_and_rejoin(&mut c, victim).await;
    check_edges(&c, &[0, 1, 2], &followers, &[a_v, a_o], &follows).await;
    check_likes(&c, &[0, 1, 2], a_o, liked, &fans).await;
    check_comments(&c, &[0, 1, 2], a_o, liked, &said).await;
    check_feeds(&c, &[0, 1, 2], &followers, &scope, &want).await;
}
