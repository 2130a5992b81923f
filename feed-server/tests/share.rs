//! Two-hop fanout on a real cluster (3 nats-servers, N feed-server processes), counted from the
//! nodes' `/metrics`: each post's follower list is walked once, on its author's node, and every
//! reader another node keeps is applied there exactly once. The ignored test prints each node's
//! share of the work at N = 1, 2, 3, 4 and 6 for SCALING.md:
//! `cargo test --release -p feed-server --test share -- --ignored --nocapture`
//! (`FEEDLINE_SHARE_NODES=1,3` picks the sizes).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::Rng;
use common::cluster::{TestCluster, wait_for};
use common::cluster_calls::metric_sum;

/// What one node did, from its metrics and its disk.
#[derive(Debug, Default, Clone, Copy)]
struct Share {
    /// Client writes applied (replicated and its partitions' own).
    events: f64,
    /// Fanout batches applied (for its readers).
    batches: f64,
    /// Follower lists walked.
    walks: f64,
    /// Readers it sent to other nodes' partitions.
    sent: f64,
    /// Readers it received from other nodes.
    received: f64,
    /// Timeline entries it wrote.
    deliveries: f64,
    /// Bytes in its RocksDB folder.
    bytes: u64,
    /// Like follow-ups it sent (affinity items and counts), as the author's node.
    followups_sent: f64,
    /// The last log sequence it applied.
    seq: f64,
    /// Likes and unlikes it applied (each from the log, committed alone).
    likes: f64,
    /// Posts it applied as their author's node (fanout job, pending record, fsync).
    publishes: f64,
    /// Other nodes' posts it applied as heads (no fanout job).
    heads: f64,
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn share(c: &TestCluster, i: usize) -> Share {
    let m = c.scrape(i);
    let applied = "feedline_cluster_events_applied_total";
    let remote = "feedline_fanout_remote_readers_total";
    Share {
        events: metric_sum(&m, applied, "outcome=\"ok\"") + metric_sum(&m, applied, "outcome=\"refused\""),
        batches: metric_sum(&m, applied, "outcome=\"fanout\""),
        walks: metric_sum(&m, "feedline_fanout_audience_walks_total", ""),
        sent: metric_sum(&m, remote, "dir=\"sent\""),
        received: metric_sum(&m, remote, "dir=\"applied\""),
        deliveries: metric_sum(&m, "feedline_deliveries_total", ""),
        bytes: dir_bytes(&c.nodes[i].data_dir()),
        followups_sent: metric_sum(&m, "feedline_followups_sent_total", ""),
        seq: metric_sum(&m, "feedline_cluster_applied_seq", ""),
        likes: metric_sum(&m, "feedline_like_batch_size_count", ""),
        publishes: metric_sum(&m, "feedline_publishes_total", ""),
        heads: metric_sum(&m, "feedline_post_heads_total", ""),
    }
}

/// The workload's writes: users signed up round-robin over the nodes (each owned by the node
/// it signed up on), each following `each` others, then `posts` posts by random authors, then
/// `likes` likes of random posts by random users, then `comments` comments on random posts by
/// random users, every call through a random node. Returns the users, who follows whom, and
/// each post's author.
async fn workload(
    c: &TestCluster,
    (users, each, posts, likes, comments): (usize, usize, usize, usize, usize),
    seed: u64,
) -> (Vec<u64>, BTreeMap<u64, BTreeSet<u64>>, Vec<(u64, u64)>) {
    let n = c.nodes.len();
    let mut rng = Rng(seed | 1);
    let mut ids = Vec::new();
    for k in 0..users {
        ids.push(c.create_user(k % n, &format!("s{k}")).await);
    }
    let mut follows: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for &u in &ids {
        let mut mine = BTreeSet::new();
        let mut calls = Vec::new();
        while mine.len() < each.min(users - 1) {
            let t = ids[rng.below(users as u64) as usize];
            if t != u && mine.insert(t) {
                calls.push(c.follow(rng.below(n as u64) as usize, u, t));
            }
        }
        // One user's follows in flight together (distinct pairs: the order does not matter).
        for r in futures::future::join_all(calls).await {
            r.expect("follow");
        }
        follows.insert(u, mine);
    }
    // Posts 16 in flight at a time, as concurrent authors publish.
    let mut made = Vec::new();
    let plan: Vec<(usize, u64)> = (0..posts)
        .map(|_| (rng.below(n as u64) as usize, ids[rng.below(users as u64) as usize]))
        .collect();
    for (k0, flight) in plan.chunks(16).enumerate() {
        let calls = flight
            .iter()
            .enumerate()
            .map(|(j, &(via, author))| async move { c.publish(via, author, &format!("post {}", k0 * 16 + j)).await });
        for (r, &(_, author)) in futures::future::join_all(calls).await.into_iter().zip(flight) {
            made.push((author, r.expect("publish")));
        }
    }
    // Likes 16 in flight; a user liking a post twice is simply no change.
    let plan: Vec<(usize, u64, u64)> = (0..likes)
        .map(|_| {
            let via = rng.below(n as u64) as usize;
            let user = ids[rng.below(users as u64) as usize];
            (via, user, made[rng.below(made.len() as u64) as usize].1)
        })
        .collect();
    for flight in plan.chunks(16) {
        let calls = flight.iter().map(|&(via, user, post)| c.like(via, user, post));
        for r in futures::future::join_all(calls).await {
            r.expect("like");
        }
    }
    let plan: Vec<(usize, u64, u64)> = (0..comments)
        .map(|_| {
            let via = rng.below(n as u64) as usize;
            let user = ids[rng.below(users as u64) as usize];
            (via, user, made[rng.below(made.len() as u64) as usize].1)
        })
        .collect();
    for (k0, flight) in plan.chunks(16).enumerate() {
        let calls = flight
            .iter()
            .enumerate()
            .map(|(j, &(via, user, post))| c.comment(via, user, post, format!("comment {}", k0 * 16 + j)));
        for r in futures::future::join_all(calls).await {
            r.expect("comment");
        }
    }
    (ids, follows, made)
}

/// Waits until every post has been walked once and every reader sent has been applied.
async fn settled(c: &TestCluster, posts: usize) -> Vec<Share> {
    wait_for(
        "every post's fanout sent and applied",
        Duration::from_secs(60),
        || async {
            let s: Vec<Share> = (0..c.nodes.len()).map(|i| share(c, i)).collect();
            let walks: f64 = s.iter().map(|x| x.walks).sum();
            let sent: f64 = s.iter().map(|x| x.sent).sum();
            let received: f64 = s.iter().map(|x| x.received).sum();
            (walks >= posts as f64 && sent == received).then_some(s)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hop_fanout_walks_each_follower_list_once_and_delivers_each_reader_once() {
    let c = TestCluster::start_opts(3, 0, true).await;
    let (ids, follows, posts) = workload(&c, (12, 5, 12, 0, 0), 42).await;
    // Every follower's feed holds exactly the posts of those they follow (and their own).
    for (k, &u) in ids.iter().enumerate() {
        let want: BTreeSet<u64> = posts
            .iter()
            .filter(|(a, _)| *a == u || follows[&u].contains(a))
            .map(|&(_, p)| p)
            .collect();
        wait_for(&format!("user {u}'s feed"), Duration::from_secs(30), || async {
            let feed = c.feed(k % 3, u).await.ok()?;
            let got: BTreeSet<u64> = feed.iter().copied().collect();
            assert_eq!(got.len(), feed.len(), "a post twice in {u}'s feed: {feed:?}");
            (got == want).then_some(())
        })
        .await;
    }
    let s = settled(&c, posts.len()).await;
    // Each post's follower list was walked once, on the node that signed its author up.
    for (i, x) in s.iter().enumerate() {
        let own = posts
            .iter()
            .filter(|(a, _)| ids.iter().position(|u| u == a).unwrap() % 3 == i)
            .count();
        assert_eq!(
            x.walks, own as f64,
            "node {i} walked follower lists of posts it does not own: {s:?}"
        );
        // It applied its authors' posts with a fanout job, and the others' as heads only.
        assert_eq!(x.publishes, own as f64, "node {i}'s publishes: {s:?}");
        assert_eq!(x.heads, (posts.len() - own) as f64, "node {i}'s post heads: {s:?}");
    }
    // Every reader handed to another node was applied there once.
    let sent: f64 = s.iter().map(|x| x.sent).sum();
    let received: f64 = s.iter().map(|x| x.received).sum();
    assert!(sent > 0.0, "no reader crossed nodes: {s:?}");
    assert_eq!(sent, received, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement for SCALING.md (a few minutes): run with --ignored --nocapture"]
async fn share_of_the_work_per_node() {
    let sizes: Vec<usize> = std::env::var("FEEDLINE_SHARE_NODES")
        .unwrap_or_else(|_| "1,2,3,4,6".into())
        .split(',')
        .map(|n| n.trim().parse().expect("node counts"))
        .collect();
    let (users, each, posts, likes, comments) = (300, 12, 300, 3000, 300);
    println!("workload: {users} users, {each} follows each, {posts} posts, {likes} likes, {comments} comments, seed 7");
    for n in sizes {
        let c = TestCluster::start_opts(n, 0, true).await;
        workload(&c, (users, each, posts, likes, comments), 7).await;
        let s = settled(&c, posts).await;
        // Every like's follow-ups applied everywhere: every node at the log's end, which has
        // stopped growing (polled every half second, within a minute).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut last = s;
        let s = loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let again: Vec<Share> = (0..c.nodes.len()).map(|i| share(&c, i)).collect();
            let top = again.iter().map(|x| x.seq).fold(0.0, f64::max);
            if again.iter().zip(&last).all(|(a, b)| a.seq == top && b.seq == top) {
                break again;
            }
            assert!(std::time::Instant::now() < deadline, "the log kept growing: {again:?}");
            last = again;
        };
        let log = s.iter().map(|x| x.seq).fold(0.0, f64::max);
        let writes = (users + users * each + posts + likes + comments) as f64;
        let batches: f64 = s.iter().map(|x| x.batches).sum();
        let walks: f64 = s.iter().map(|x| x.walks).sum();
        let deliveries: f64 = s.iter().map(|x| x.deliveries).sum();
        let followups: f64 = s.iter().map(|x| x.followups_sent).sum();
        println!(
            "N = {n}: log messages {log} ({writes} writes, {batches} fanout batches, the rest engagement follow-ups carrying {followups} items), \
             follower-list walks per post {:.2}",
            walks / posts as f64
        );
        for (i, x) in s.iter().enumerate() {
            println!(
                "  node {i}: applied {:.3} of the log ({} events, {} batches), walks {}, readers sent {} / received {}, \
                 timeline entries {} ({:.3} of all), likes applied {} ({:.3} of all), follow-up items sent {}, \
                 posts fanned out {} / as heads {}, RocksDB {:.1} MB",
                (x.events + x.batches) / log,
                x.events,
                x.batches,
                x.walks,
                x.sent,
                x.received,
                x.deliveries,
                x.deliveries / deliveries.max(1.0),
                x.likes,
                x.likes / likes as f64,
                x.followups_sent,
                x.publishes,
                x.heads,
                x.bytes as f64 / 1e6
            );
        }
    }
}
