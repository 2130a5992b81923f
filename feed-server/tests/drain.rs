//! Draining on a real cluster (3 nats-servers, 3 feed-server processes): a node is stopped with
//! SIGTERM at a seeded point while its author's posts are published through the other two. It
//! hands its partitions over before it exits, so its users are served by the survivors at once —
//! the suspicion time is a minute, longer than the test waits, so no failover can explain it.
//! Then it is started again and comes back through rejoining; then it is drained again and
//! removed from the cluster for good (`--retire-node`: refused while it holds partitions), after
//! which it refuses to start and the others keep serving its users. After each phase, through every
//! live node: every acknowledged post in every follower's feed exactly once, both directions of
//! every edge agree, and the replicas agree on post counts.
//!
//! The seed is printed; `FEEDLINE_SEED=N` replays one.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::Rng;
use common::cluster::TestCluster;
use common::cluster::checks::{check_edges, check_feeds, publish_some, restart_and_rejoin, settled, signal_after};
use common::cluster_calls::wait_post_count;

/// Longer than any wait below: only a drain can move the partitions in time.
const SUSPICION_MS: &str = "60000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_hands_its_partitions_over_before_it_exits_and_comes_back_by_rejoining() {
    let seed = common::seeded_rounds(0xd7a1_0005)[0];
    eprintln!("drain: FEEDLINE_SEED={seed}");
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let mut c = TestCluster::start_args(3, 0, false, &["--suspicion-ms", SUSPICION_MS]).await;
    let leaving = rng.below(3) as usize;
    let staying = [(leaving + 1) % 3, (leaving + 2) % 3];
    // An author the leaving node holds, and twelve followers over all three nodes.
    let author = c.create_user(leaving, "dr_author").await;
    let mut followers = Vec::new();
    for k in 0..12 {
        let f = c.create_user(k % 3, &format!("dr_{k}")).await;
        c.follow((k + 1) % 3, f, author).await.expect("follow");
        followers.push(f);
    }
    let mut acked = publish_some(&c, &[0, 1, 2], author, 8, "before").await;

    // SIGTERM at a seeded point while posts go through the other two; every publish is retried
    // while a partition is moving (UNAVAILABLE with the retry header) and must then succeed.
    let stop_after = Duration::from_millis(rng.below(300));
    let cr = &c;
    let publishing = async move {
        let mut out = BTreeSet::new();
        for k in 0..40 {
            let via = staying[k % 2];
            let r = settled(&[tonic::Code::Unavailable], || async move {
                cr.publish(via, author, &format!("during {k}")).await
            })
            .await;
            out.insert(r.unwrap_or_else(|s| panic!("seed {seed}: publish {k} during the drain: {s}")));
        }
        out
    };
    let pid = c.nodes[leaving].pid().expect("the leaving node runs");
    let stopping = signal_after(pid, "-TERM", stop_after);
    let (during, ()) = tokio::join!(publishing, stopping);
    acked.extend(during);
    // Nothing else runs meanwhile: a blocking wait on this test's thread is fine.
    let clean = c.nodes[leaving].wait_exit(Duration::from_secs(40));
    assert!(clean, "seed {seed}: node {leaving} did not exit cleanly after SIGTERM");
    let log = std::fs::read_to_string(c.nodes[leaving].log_path()).unwrap_or_default();
    let drained = log.lines().find(|l| l.contains("drained: partitions handed over"));
    let Some(drained) = drained else {
        panic!("seed {seed}: node {leaving} exited without handing its partitions over");
    };
    // The log line's fields, without its colours ("\x1b[..m"): "... took_ms=49".
    let mut plain = String::new();
    let mut in_escape = false;
    for ch in drained.chars() {
        match (in_escape, ch) {
            (false, '\x1b') => in_escape = true,
            (false, _) => plain.push(ch),
            (true, 'm') => in_escape = false,
            (true, _) => {}
        }
    }
    let took = plain.split("took_ms=").nth(1).unwrap_or("?").trim();
    eprintln!(
        "seed {seed}: node {leaving} stopped {} ms into publishing; handed its partitions over in {took} ms",
        stop_after.as_millis()
    );

    // Its users are served by the survivors now: its author publishes, every follower reads.
    for &via in &staying {
        acked.extend(publish_some(&c, &[via], author, 2, "after").await);
    }
    let scope = acked.clone();
    let want = vec![acked.clone(); followers.len()];
    check_feeds(&c, &staying, &followers, &scope, &want).await;
    check_edges(
        &c,
        &staying,
        &followers,
        &[author],
        &vec![vec![author]; followers.len()],
    )
    .await;
    let n = acked.len() as u64;
    wait_post_count(&c, &staying, author, n..=n).await;

    // Started again, it rejoins (it was listed down) and takes its partitions back.
    restart_and_rejoin(&mut c, leaving).await;
    let last = publish_some(&c, &[leaving], author, 4, "after return").await;
    acked.extend(last);
    let want = vec![acked.clone(); followers.len()];
    check_feeds(&c, &[0, 1, 2], &followers, &acked, &want).await;
    check_edges(
        &c,
        &[0, 1, 2],
        &followers,
        &[author],
        &vec![vec![author]; followers.len()],
    )
    .await;
    let n = acked.len() as u64;
    wait_post_count(&c, &[0, 1, 2], author, n..=n).await;
    // Nobody was declared down by suspicion: the drain did all of it.
    for (i, node) in c.nodes.iter().enumerate() {
        assert!(
            !node.log_has("declared a silent node down"),
            "seed {seed}: node {i} declared a node down; the drain should have moved the partitions"
        );
    }

    // Removed for good. A node holding partitions cannot be retired: refused, and nothing
    // changes (it still answers for its users).
    let name = c.nodes[leaving].name.clone();
    let retire = ["--retire-node", name.as_str()];
    let (ok, out) = c.nodes[staying[0]].run_once(&retire, ONE_SHOT);
    assert!(!ok, "seed {seed}: a node holding partitions was retired:\n{out}");
    assert!(
        out.contains("holds partitions"),
        "seed {seed}: refused without the reason:\n{out}"
    );
    let one = publish_some(&c, &[leaving], author, 1, "after a refused retirement").await;
    assert_eq!(
        one.len(),
        1,
        "seed {seed}: node {leaving} stopped serving after a refused retirement"
    );
    acked.extend(one);
    // Drained again, it can be.
    let pid = c.nodes[leaving].pid().expect("the node runs again");
    signal_after(pid, "-TERM", Duration::ZERO).await;
    assert!(
        c.nodes[leaving].wait_exit(Duration::from_secs(40)),
        "seed {seed}: node {leaving} did not exit cleanly after the second SIGTERM"
    );
    let (ok, out) = c.nodes[staying[1]].run_once(&retire, ONE_SHOT);
    assert!(
        ok && out.contains("removed from the cluster for good"),
        "seed {seed}: retiring:\n{out}"
    );
    let (ok, out) = c.nodes[staying[0]].run_once(&retire, ONE_SHOT);
    assert!(ok && out.contains("already"), "seed {seed}: retiring twice:\n{out}");
    // Started again with its old folder and the same list, it refuses, saying why.
    let (ok, out) = c.nodes[leaving].run_once(&[], ONE_SHOT);
    assert!(!ok, "seed {seed}: a retired node started again:\n{out}");
    assert!(
        out.contains("removed from this cluster for good"),
        "seed {seed}: a retired node refused without the reason:\n{out}"
    );
    // Its users are served by the others, with everything acknowledged before.
    acked.extend(publish_some(&c, &staying, author, 2, "after retirement").await);
    let want = vec![acked.clone(); followers.len()];
    check_feeds(&c, &staying, &followers, &acked, &want).await;
    let n = acked.len() as u64;
    wait_post_count(&c, &staying, author, n..=n).await;
}

/// How long a one-shot run of the binary (a retirement, a refused start) may take: it connects
/// to NATS and reads or writes one record.
const ONE_SHOT: Duration = Duration::from_secs(60);
