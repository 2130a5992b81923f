//! Checks and calls the cluster fault tests share: publishing a batch of posts, retrying what a
//! client retries, and the after-the-fault checks (feeds, both directions of every edge).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::{TestCluster, wait_for};
use crate::common::cluster_calls::{WAIT, wait_feed};

/// Publishes `n` posts by `author` through the nodes in `via` (alternating, 4 in flight);
/// returns the acknowledged ids.
pub async fn publish_some(c: &TestCluster, via: &[usize], author: u64, n: usize, tag: &str) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for k0 in (0..n).step_by(4) {
        let flight = (k0..(k0 + 4).min(n))
            .map(|k| async move { c.publish(via[k % via.len()], author, &format!("{tag} {k}")).await });
        out.extend(futures::future::join_all(flight).await.into_iter().flatten());
    }
    out
}

/// Sends `signal` (`-9`, `-TERM`) to process `pid` after `after`: a fault at a seeded point.
pub async fn signal_after(pid: u32, signal: &str, after: Duration) {
    tokio::time::sleep(after).await;
    let st = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
    assert!(st.is_ok_and(|s| s.success()), "kill {signal} {pid}");
}

/// A seeded victim among three nodes, and the other two.
pub fn victim_and_survivors(rng: &mut crate::common::Rng) -> (usize, [usize; 2]) {
    let victim = rng.below(3) as usize;
    (victim, [(victim + 1) % 3, (victim + 2) % 3])
}

/// Runs `call` until it succeeds, retrying what a client retries (`UNAVAILABLE`: a partition
/// moving, a node on another epoch for a moment), within the cluster tests' deadline.
pub async fn retry<F, Fut>(what: &str, call: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    if let Err(s) = settled(&[tonic::Code::Unavailable], call).await {
        panic!("{what}: {s}");
    }
}

/// `call`'s first answer whose code is not in `retry` (retried within the tests' deadline).
pub async fn settled<T, F, Fut>(retry: &[tonic::Code], mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        match call().await {
            Err(s) if retry.contains(&s.code()) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => return r,
        }
    }
}

/// Each of `users` likes `post` through the nodes of `via` in turn, retrying what a client
/// retries about a like (`UNAVAILABLE`; `DEADLINE_EXCEEDED`: a like asked again is no change).
pub async fn like_all(c: &TestCluster, via: &[usize], users: &[u64], post: u64) {
    for (k, &u) in users.iter().enumerate() {
        let retried = [tonic::Code::Unavailable, tonic::Code::DeadlineExceeded];
        if let Err(s) = settled(&retried, || c.like(via[k % via.len()], u, post)).await {
            panic!("user {u} liking post {post}: {s}");
        }
    }
}

/// Every one of `users` follows each of `targets`, through the nodes of `via` in turn, retrying
/// while their node is unavailable (a follow asked again is a no-op).
pub async fn follow_all(c: &TestCluster, via: &[usize], users: &[u64], targets: &[u64]) {
    let retried = [tonic::Code::Unavailable, tonic::Code::DeadlineExceeded];
    for (k, &u) in users.iter().enumerate() {
        for &t in targets {
            if let Err(s) = settled(&retried, || c.follow(via[k % via.len()], u, t)).await {
                panic!("user {u} following {t}: {s}");
            }
        }
    }
}

/// Like [`follow_all`], but stops at the first refusal (a node killed meanwhile) and returns
/// the users who have not followed every target for sure.
pub async fn follow_until_refused(c: &TestCluster, via: &[usize], users: &[u64], targets: &[u64]) -> Vec<u64> {
    for (k, &u) in users.iter().enumerate() {
        for &t in targets {
            if c.follow(via[k % via.len()], u, t).await.is_err() {
                return users[k..].to_vec();
            }
        }
    }
    Vec::new()
}

/// Like [`like_all`], but stops at the first refusal (a node killed meanwhile) and returns the
/// users who have not liked for sure — the refused one first: its like may or may not stand.
pub async fn like_until_refused(c: &TestCluster, via: &[usize], users: &[u64], post: u64) -> Vec<u64> {
    for (k, &u) in users.iter().enumerate() {
        if c.like(via[k % via.len()], u, post).await.is_err() {
            return users[k..].to_vec();
        }
    }
    Vec::new()
}

/// Through each node of `via`, `post`'s likers are exactly `want` and its like count their
/// number (each node shows the count its author's node announced: waited for).
pub async fn check_likes(c: &TestCluster, via: &[usize], viewer: u64, post: u64, want: &BTreeSet<u64>) {
    for &i in via {
        check_listed(&format!("post {post}'s likes through node {i}"), want, || {
            c.likes(i, viewer, post)
        })
        .await;
    }
}

/// Through each node of `via`, `post`'s top-level comments are exactly `want` and its comment
/// count their number.
pub async fn check_comments(c: &TestCluster, via: &[usize], viewer: u64, post: u64, want: &BTreeSet<u64>) {
    for &i in via {
        check_listed(&format!("post {post}'s comments through node {i}"), want, || {
            c.comments(i, viewer, post)
        })
        .await;
    }
}

/// Waits until `list` answers exactly `want`, each once, with a count of their number.
async fn check_listed<F, Fut>(what: &str, want: &BTreeSet<u64>, list: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<u64>, u64), tonic::Status>>,
{
    wait_for(&format!("{what}: {} of them", want.len()), WAIT, || async {
        let (ids, count) = list().await.ok()?;
        let got: BTreeSet<u64> = ids.iter().copied().collect();
        (got == *want && ids.len() == want.len() && count == want.len() as u64).then_some(())
    })
    .await;
}

/// Every follower's feed, read through each node of `via`, holds exactly `want` of `scope`.
pub async fn check_feeds(
    c: &TestCluster,
    via: &[usize],
    readers: &[u64],
    scope: &BTreeSet<u64>,
    want: &[BTreeSet<u64>],
) {
    for (j, &r) in readers.iter().enumerate() {
        for &i in via {
            wait_feed(c, i, r, scope, &want[j]).await;
        }
    }
}

/// Both directions of every edge agree through each node of `via`: `followers[j]` follows
/// exactly `follows[j]` of the authors, and each author's follower list says the same.
pub async fn check_edges(c: &TestCluster, via: &[usize], followers: &[u64], authors: &[u64], follows: &[Vec<u64>]) {
    for &i in via {
        wait_for(&format!("edges to agree through node {i}"), WAIT, || async move {
            for (j, &f) in followers.iter().enumerate() {
                let mut out = c.follow_list(i, f, false).await.ok()?;
                out.sort_unstable();
                let mut want = follows[j].clone();
                want.sort_unstable();
                if out != want {
                    return None;
                }
            }
            for &a in authors {
                let back: BTreeSet<u64> = c.follow_list(i, a, true).await.ok()?.into_iter().collect();
                let want: BTreeSet<u64> = followers
                    .iter()
                    .zip(follows)
                    .filter(|(_, fs)| fs.contains(&a))
                    .map(|(&f, _)| f)
                    .collect();
                if back != want {
                    return None;
                }
            }
            Some(())
        })
        .await;
    }
}

/// Starts node `i` again and waits until it has rejoined: it took partitions back, and only
/// after proposing its own return (it held nothing until then).
pub async fn restart_and_rejoin(c: &mut TestCluster, i: usize) {
    c.nodes[i].start();
    let node = &c.nodes[i];
    wait_for("the restarted node to rejoin", WAIT, || async move {
        node.log_has("partitions handed over").then_some(())
    })
    .await;
    assert!(
        node.log_has("proposed this node's return"),
        "node {i} did not go through rejoining (it held nothing until it proposed its return)"
    );
}
