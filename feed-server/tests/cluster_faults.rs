//! Two-hop fanout under `kill -9` at seeded random points, on a real cluster (3 nats-servers,
//! 3 feed-server processes). First the node owning an author is killed while posts are being
//! published and its fanout batches are being appended (some sent, some not: they stay pending
//! and are sent again after the restart); then a node owning readers is killed while batches
//! for them wait in the log. After each: every acknowledged post is in every follower's feed
//! exactly once and the replicas agree on the author's post count.
//!
//! The seed is printed; `FEEDLINE_SEED=N` replays one, `FEEDLINE_CLUSTER_ROUNDS=N` runs more
//! rounds (seed, seed + 1, …).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::Rng;
use common::cluster::TestCluster;
use common::cluster::checks::signal_after;
use common::cluster_calls::{wait_feed, wait_post_count};

/// Publishes `n` posts by `author`, 8 in flight, through nodes other than `avoid` (when set);
/// while that runs, after `kill_after` ms, kills node `victim`. Returns the acknowledged ids and
/// how many were attempted.
async fn publish_and_kill(
    c: &mut TestCluster,
    author: u64,
    n: usize,
    tag: &str,
    victim: usize,
    kill_after: u64,
) -> (BTreeSet<u64>, u64) {
    let pid = c.nodes[victim].pid().expect("the victim runs");
    let cr = &*c;
    let posts = async move {
        let mut out = Vec::new();
        for k0 in (0..n).step_by(8) {
            let flight = (k0..(k0 + 8).min(n)).map(|k| async move {
                // Through the two other nodes: a call that reaches the victim's users fails
                // with a status once it is dead, and only acknowledged posts must survive.
                let via = [(victim + 1) % 3, (victim + 2) % 3][k % 2];
                cr.publish(via, author, &format!("{tag} {k}")).await
            });
            out.extend(futures::future::join_all(flight).await);
        }
        out
    };
    let kill = signal_after(pid, "-9", Duration::from_millis(kill_after));
    let (results, ()) = tokio::join!(posts, kill);
    // Reaped (and marked stopped) before it starts again.
    c.nodes[victim].kill9();
    let acked: BTreeSet<u64> = results.into_iter().flatten().collect();
    (acked, n as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_survives_the_author_s_node_and_a_reader_s_node_killed_at_seeded_points() {
    for (round, seed) in common::seeded_rounds(0x9e37_79b9).into_iter().enumerate() {
        eprintln!("fanout fault round {round}: FEEDLINE_SEED={seed}");
        one_round(seed).await;
    }
}

async fn one_round(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let mut c = TestCluster::start(3, 0).await;
    // The author lives on a seeded node; twelve followers spread over all three.
    let home = rng.below(3) as usize;
    let author = c.create_user(home, "f_author").await;
    let mut followers = Vec::new();
    for k in 0..12 {
        let f = c.create_user(k % 3, &format!("f_{k}")).await;
        c.follow((k + 1) % 3, f, author).await.expect("follow");
        followers.push(f);
    }
    // 1. The author's node dies at a seeded point while its posts (published through the other
    //    two nodes, forwarded to it) are being fanned out.
    let t1 = rng.below(50);
    let (mut acked, mut attempted) = publish_and_kill(&mut c, author, 24, "a", home, t1).await;
    c.nodes[home].start();
    for (j, &f) in followers.iter().enumerate() {
        wait_feed(&c, j % 3, f, &acked, &acked).await;
    }
    // 2. A node owning readers (not the author's) dies at a seeded point while batches for its
    //    readers are being appended and wait in the log.
    let reader_node = (home + 1 + rng.below(2) as usize) % 3;
    let t2 = rng.below(50);
    let (more, n) = publish_and_kill(&mut c, author, 24, "b", reader_node, t2).await;
    acked.extend(more);
    attempted += n;
    c.nodes[reader_node].start();
    for (j, &f) in followers.iter().enumerate() {
        wait_feed(&c, j % 3, f, &acked, &acked).await;
    }
    wait_post_count(&c, &[0, 1, 2], author, acked.len() as u64..=attempted).await;
    eprintln!(
        "seed {seed}: author on node {home} killed at {t1} ms, reader node {reader_node} at {t2} ms; {} of {attempted} posts acknowledged",
        acked.len()
    );
}
