//! How soon another user's delete and block reach every affected feed, on a real cluster (3
//! nats-servers, 3 feed-server processes). An author on node 0 has followers owned by each
//! node. Per round the author publishes, every follower's owner shows the post, the author
//! deletes it through another node, and each follower's feed is read through its owner until
//! the post is gone. Then the author blocks the followers one by one, and each one's feed is
//! read until none of the author's posts is left. Every change must reach every feed (within
//! the tests' deadline); the times are printed, for ARCHITECTURE.md's stated bound.
//!
//! `FEEDLINE_CLUSTER_ROUNDS=N` runs N × 10 delete rounds (default 1 × 10).

mod common;

use std::time::{Duration, Instant};

use common::cluster::{TestCluster, wait_for};
use common::cluster_calls::WAIT;

/// Polls `reader`'s feed through node `via` until `gone` says it is clean; the time it took
/// (the clean read's included) and how many reads still showed what was gone.
async fn until_gone(c: &TestCluster, via: usize, reader: u64, gone: impl Fn(&[u64]) -> bool) -> (Duration, u32) {
    let t = Instant::now();
    let mut stale = 0;
    loop {
        let feed = c.feed(via, reader).await.expect("a feed read");
        if gone(&feed) {
            return (t.elapsed(), stale);
        }
        stale += 1;
        assert!(
            t.elapsed() < WAIT,
            "reader {reader} (node {via}) still shows it after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// p50, p99 and max of the times in `v`, in ms, and how many had a stale read first.
fn summary(v: &mut [(Duration, u32)]) -> String {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].0.as_secs_f64() * 1000.0;
    let stale = v.iter().filter(|(_, n)| *n > 0).count();
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} (the first read after the ack still showed it in {stale})",
        at(0.5),
        at(0.99),
        at(1.0),
        v.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_s_delete_and_block_reach_every_feed_on_every_node() {
    let rounds = 10 * common::seeded_rounds(0x9e1e_7e00).len();
    let cluster = TestCluster::start(3, 0).await;
    let c = &cluster;
    let author = c.create_user(0, "pg_author").await;
    // Six followers, two owned by each node.
    let mut followers = Vec::new();
    for k in 0..6 {
        let f = c.create_user(k % 3, &format!("pg_{k}")).await;
        c.follow(k % 3, f, author).await.expect("follow");
        followers.push((k % 3, f));
    }
    let mut deletes = Vec::new();
    for round in 0..rounds {
        let post = c.publish(0, author, &format!("round {round}")).await.expect("publish");
        for &(via, f) in &followers {
            wait_for("the post in every feed", WAIT, || async move {
                c.feed(via, f).await.ok()?.contains(&post).then_some(())
            })
            .await;
        }
        // Deleted through another node than the author's: forwarded, acknowledged, then read.
        c.delete_post(1 + round % 2, author, post).await.expect("delete");
        for &(via, f) in &followers {
            deletes.push(until_gone(c, via, f, |feed| !feed.contains(&post)).await);
        }
    }
    // One post left to block on; each follower is blocked in turn.
    let last = c.publish(0, author, "stays").await.expect("publish");
    for &(via, f) in &followers {
        wait_for("the last post in every feed", WAIT, || async move {
            c.feed(via, f).await.ok()?.contains(&last).then_some(())
        })
        .await;
    }
    let mut blocks = Vec::new();
    for (k, &(via, f)) in followers.iter().enumerate() {
        c.block((k + 1) % 3, author, f).await.expect("block");
        blocks.push(until_gone(c, via, f, |feed| !feed.contains(&last)).await);
    }
    eprintln!(
        "a delete acknowledged, until gone from every follower's feed read through its owner: {}",
        summary(&mut deletes)
    );
    eprintln!(
        "a block acknowledged, until the blocked follower's feed lost the author: {}",
        summary(&mut blocks)
    );
}
