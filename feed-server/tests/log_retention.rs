//! The log forgets its replicated events too, on a real cluster (3 nats-servers, 3 feed-server
//! processes, a checkpoint every second). Sign-ups, follows, posts and a block are written, then
//! the log drops the replicated events (profiles, posts, blocks) up to a point past all of them,
//! once every node's checkpoint covers it. A fourth node then joins with an empty folder and no
//! checkpoint of its own: it can no longer rebuild the read model from the log, so it must
//! restore another node's checkpoint. It is `kill -9`ed at a seeded point of its first start
//! (during the download, the catch-up or the handover) and started again. Then, through every
//! node, the new one included: every follower's feed holds every post once, both directions of
//! every edge agree, the block still hides the blocker's posts, and bad input is refused.
//!
//! The seed is printed; `FEEDLINE_SEED=N` replays one, `FEEDLINE_CLUSTER_ROUNDS=N` runs more.

mod common;

use std::time::Duration;

use common::Rng;
use common::cluster::checks::{check_edges, check_feeds, follow_all, publish_some, settled};
use common::cluster::{TestCluster, wait_for};
use common::cluster_calls::{WAIT, metric_sum};
use tonic::Code;

const DROPPED: &str = "dropped the replicated events every node's checkpoint covers";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_restores_another_nodes_checkpoint_once_the_log_dropped_the_replicated_events() {
    for (round, seed) in common::seeded_rounds(0x7e7a_1e55).into_iter().enumerate() {
        eprintln!("log retention round {round}: FEEDLINE_SEED={seed}");
        one_round(seed).await;
    }
}

async fn one_round(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let mut c = TestCluster::start_args(3, 1, true, &["--suspicion-ms", "4000"]).await;
    let authors = [
        c.create_user(0, "lr_author_0").await,
        c.create_user(1, "lr_author_1").await,
    ];
    let mut followers = Vec::new();
    for k in 0..12 {
        followers.push(c.create_user(k % 3, &format!("lr_{k}")).await);
    }
    follow_all(&c, &[0, 1, 2], &followers, &authors).await;
    let mut posts = publish_some(&c, &[0, 1, 2], authors[0], 5, "before the drop").await;
    let by_blocker = publish_some(&c, &[0, 1, 2], authors[1], 5, "before the drop").await;
    posts.extend(&by_blocker);
    // A block, replicated: the blocked user must not see the blocker's posts anywhere.
    let (blocker, blocked) = (authors[1], c.create_user(2, "lr_blocked").await);
    c.block(1, blocker, blocked).await.expect("block");
    let hidden = *by_blocker.iter().next_back().expect("a post");

    // Every node has applied everything above by the time it answers its own writes; the log
    // drops the replicated events once every node's checkpoint is past them all.
    let written = (0..3)
        .map(|i| metric_sum(&c.scrape(i), "feedline_cluster_applied_seq", "") as u64)
        .max()
        .unwrap();
    let n = &c.nodes;
    let dropped_to = wait_for("the log to drop the replicated events", WAIT, || async move {
        n.iter()
            .flat_map(|node| node.log_numbers(DROPPED, "to"))
            .max()
            .filter(|&to| to >= written)
    })
    .await;
    eprintln!("seed {seed}: replicated events dropped up to {dropped_to} (writes end at {written})");
    // Two more checkpoint rounds on the now idle cluster: each snapshots its partitions at the
    // same sequence again, which must leave the recorded snapshots in place (the joining node
    // restores them for the partitions the checkpoint's node never held).
    const SNAPPED: &str = "partition snapshots uploaded";
    let rounds: Vec<usize> = c
        .nodes
        .iter()
        .map(|node| node.log_numbers(SNAPPED, "seq").len())
        .collect();
    let (n, r) = (&c.nodes, &rounds);
    wait_for("two more snapshot rounds on every node", WAIT, || async move {
        n.iter()
            .zip(r)
            .all(|(node, &k)| node.log_numbers(SNAPPED, "seq").len() >= k + 2)
            .then_some(())
    })
    .await;

    // A fourth node joins with an empty folder, is killed at a seeded point of that start, and
    // starts again.
    let mut node = c.joining_node();
    let kill_after = Duration::from_millis(rng.below(400));
    let node = tokio::task::spawn_blocking(move || {
        let listened = node.start_and_kill9_after(kill_after);
        eprintln!(
            "seed {seed}: the joining node killed {} ms into its start (listening: {listened})",
            kill_after.as_millis()
        );
        node.start();
        node
    })
    .await
    .expect("the joining node starts");
    // Taken over in its first run or its second (killed after proposing its return, it
    // restarts within the suspicion time still holding them, and takes them at its start).
    c.nodes.push(node);
    c.wait_placement_settled(2 * WAIT).await;
    // Its first start restored another node's checkpoint (it had none of its own), or, killed
    // before that finished, its second did; and one of them dropped that node's unfinished
    // fanout.
    assert!(
        c.nodes[3].any_log_has("restored another node's checkpoint"),
        "seed {seed}: the new node did not restore another node's checkpoint"
    );

    // Every node serves the whole read model, the new one included.
    let all: Vec<usize> = (0..4).collect();
    let want = vec![posts.clone(); followers.len()];
    check_feeds(&c, &all, &followers, &posts, &want).await;
    let follows = vec![authors.to_vec(); followers.len()];
    check_edges(&c, &all, &followers, &authors, &follows).await;
    for &i in &all {
        let e = settled(&[Code::Unavailable], || c.post(i, blocked, hidden))
            .await
            .expect_err("the blocker's post, to the blocked user");
        assert_eq!(e.code(), Code::NotFound, "seed {seed}, node {i}: {e:?}");
        let shown = settled(&[Code::Unavailable], || c.post(i, followers[0], hidden))
            .await
            .expect("the post, to a follower");
        assert_eq!(shown.id, hidden, "node {i}");
    }
    let again = [Code::Unavailable, Code::DeadlineExceeded];
    let e = settled(&again, || c.publish(3, authors[0], ""))
        .await
        .expect_err("a blank post");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = settled(&again, || c.follow(3, blocked, blocker))
        .await
        .expect_err("a follow of the blocker");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = settled(&again, || c.follow(3, followers[0], 999_999_999))
        .await
        .expect_err("an unknown user");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // A post through the new node reaches every follower once, on every node.
    let id = settled(&again, || c.publish(3, authors[0], "after the join"))
        .await
        .expect("publish through the new node");
    posts.insert(id);
    let want = vec![posts.clone(); followers.len()];
    check_feeds(&c, &all, &followers, &posts, &want).await;
}
