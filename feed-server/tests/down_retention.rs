//! A node down longer than the log waits for it, on a real cluster (3 nats-servers, 3 feed-server
//! processes, a checkpoint every second, suspicion 2 s, `--down-node-retention-s 3`).
//!
//! One node is frozen (SIGSTOP) at a seeded point while posts go through the other two: cut off,
//! not dead. The survivors take its partitions over, list it behind once it has been down for
//! 3 s, and the log drops the replicated events past everything the frozen node had applied —
//! which it could not while the node held the floor back. Then the node is thawed (SIGCONT): it
//! must not return with what it has, and stops itself, asking to be restarted. Restarted on its
//! old folder, it is `kill -9`ed at a seeded point of that start (moving its database aside,
//! choosing a checkpoint, downloading it) and started again: it rebuilds from the newest
//! checkpoint and returns. Through every node: every follower's feed holds every post once, both
//! directions of every edge agree, bad input is refused, and a post through the rebuilt node
//! reaches every feed.
//!
//! The seed is printed; `FEEDLINE_SEED=N` replays one, `FEEDLINE_CLUSTER_ROUNDS=N` runs more.

mod common;

use std::time::Duration;

use common::Rng;
use common::cluster::checks::{
    check_edges, check_feeds, follow_all, publish_some, settled, signal_after, victim_and_survivors,
};
use common::cluster::{TestCluster, wait_for};
use common::cluster_calls::{WAIT, metric_sum};
use tonic::Code;

const DROPPED: &str = "dropped the replicated events every node's checkpoint covers";
const BEHIND: &str = "the log no longer waits for a down node";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_past_the_retention_rebuilds_from_a_checkpoint_and_returns() {
    for (round, seed) in common::seeded_rounds(0xd0_7e7e).into_iter().enumerate() {
        eprintln!("down retention round {round}: FEEDLINE_SEED={seed}");
        one_round(seed).await;
    }
}

async fn one_round(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let mut c = TestCluster::start_args(3, 1, true, &["--suspicion-ms", "2000", "--down-node-retention-s", "3"]).await;
    let (victim, alive) = victim_and_survivors(&mut rng);
    let a_v = c.create_user(victim, "dr_author_v").await;
    let a_o = c.create_user(alive[0], "dr_author_o").await;
    let mut followers = Vec::new();
    for k in 0..9 {
        followers.push(c.create_user(k % 3, &format!("dr_{k}")).await);
    }
    let authors = [a_v, a_o];
    follow_all(&c, &[0, 1, 2], &followers, &authors).await;
    let mut posts = publish_some(&c, &[0, 1, 2], a_v, 4, "before").await;
    posts.extend(publish_some(&c, &[0, 1, 2], a_o, 4, "before").await);

    // The victim freezes at a seeded point while the other author posts through the survivors.
    let pid = c.nodes[victim].pid().expect("victim runs");
    let freeze = signal_after(pid, "-STOP", Duration::from_millis(rng.below(300)));
    let (during, ()) = tokio::join!(publish_some(&c, &alive, a_o, 4, "while freezing"), freeze);
    posts.extend(during);
    // Declared down, its author is served again by the survivors, and posts. (Asked before,
    // the call is forwarded to the frozen node and times out.)
    let n = &c.nodes;
    wait_for("the survivors to declare the frozen node down", WAIT, || async move {
        alive
            .iter()
            .any(|&i| n[i].log_has("declared a silent node down"))
            .then_some(())
    })
    .await;
    let again = [Code::Unavailable, Code::DeadlineExceeded];
    let id = settled(&again, || c.publish(alive[0], a_v, "after the freeze"))
        .await
        .expect("the frozen node's author is served again");
    posts.insert(id);
    posts.extend(publish_some(&c, &alive, a_o, 2, "after the freeze").await);

    // Listed behind after 3 s down; then the log drops the replicated events past every one
    // written so far (the frozen node applied none of the last posts). Every node applies every
    // replicated event, so the last one is at or below each survivor's applied sequence (the
    // log's tail may be other partitions' events, which one survivor never reads).
    let written = alive
        .iter()
        .map(|&i| metric_sum(&c.scrape(i), "feedline_cluster_applied_seq", "") as u64)
        .min()
        .unwrap();
    let n = &c.nodes;
    wait_for("the survivors to list the frozen node behind", WAIT, || async move {
        alive.iter().any(|&i| n[i].log_has(BEHIND)).then_some(())
    })
    .await;
    let dropped_to = wait_for("the log to drop past the frozen node", WAIT, || async move {
        alive
            .iter()
            .flat_map(|&i| n[i].log_numbers(DROPPED, "to"))
            .max()
            .filter(|&to| to >= written)
    })
    .await;
    eprintln!(
        "seed {seed}: node {victim} listed behind; replicated events dropped up to {dropped_to} (the last at or below {written})"
    );

    // Thawed, it does not return: it stops and asks to be restarted.
    signal_after(pid, "-CONT", Duration::ZERO).await;
    let node = &mut c.nodes[victim];
    assert!(
        !node.wait_exit(WAIT),
        "seed {seed}: the thawed node exited with success"
    );
    assert!(
        node.log_has("stopped to be restarted"),
        "seed {seed}: the thawed node did not stop itself to be rebuilt"
    );
    assert!(
        !node.log_has("proposed this node's return"),
        "seed {seed}: the thawed node returned with a database the log had moved past"
    );

    // Restarted on its old folder, killed at a seeded point of that start (the rebuild is done
    // within about 100 ms of it), started again.
    let kill_after = Duration::from_millis(rng.below(200));
    let listened = node.start_and_kill9_after(kill_after);
    eprintln!(
        "seed {seed}: node {victim} killed {} ms into its rebuild (listening: {listened})",
        kill_after.as_millis()
    );
    // It returns in the second run or the third (killed after proposing its return, the third
    // holds its partitions from its start).
    node.start();
    c.wait_placement_settled(2 * WAIT).await;
    let node = &c.nodes[victim];
    // Rebuilt: its old database is kept aside and the rebuild marker is gone (checked on disk:
    // the logs may lack a line its kill cut off). Serving again, it is off the behind list: a
    // behind node never proposes its return.
    assert!(
        !node.data_dir().join("REBUILDING").exists(),
        "seed {seed}: node {victim} serves with its rebuild unfinished"
    );
    let aside = std::fs::read_dir(node.data_dir().parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("db.behind-"));
    assert!(aside, "seed {seed}: the old database was not kept aside");

    let all = [0, 1, 2];
    let want = vec![posts.clone(); followers.len()];
    check_feeds(&c, &all, &followers, &posts, &want).await;
    let follows = vec![authors.to_vec(); followers.len()];
    check_edges(&c, &all, &followers, &authors, &follows).await;
    let e = settled(&again, || c.publish(victim, a_v, ""))
        .await
        .expect_err("a blank post");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = settled(&again, || c.follow(victim, followers[0], 999_999_999))
        .await
        .expect_err("an unknown user");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let id = settled(&again, || c.publish(victim, a_v, "after the rebuild"))
        .await
        .expect("publish through the rebuilt node");
    posts.insert(id);
    let want = vec![posts.clone(); followers.len()];
    check_feeds(&c, &all, &followers, &posts, &want).await;
}
