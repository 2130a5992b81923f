//! Failover on a real cluster (3 nats-servers, 3 feed-server processes, suspicion 2 s): a node
//! is `kill -9`ed at a seeded point while its author's posts are being published through the
//! other two, and stays dead. The survivors declare it down, take its partitions over and
//! serve its users; an unfollow and a delete happen meanwhile. Then the node comes back: it
//! holds nothing until it has rejoined, gets its partitions back, and must not serve the state
//! it kept from before. After each phase, through every live node: every acknowledged post in
//! every follower's feed exactly once, the unfollowed author's and the deleted post gone, both
//! directions of every edge agree, and the replicas agree on post counts.
//!
//! The seed is printed; `FEEDLINE_SEED=N` replays one, `FEEDLINE_CLUSTER_ROUNDS=N` runs more.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::Rng;
use common::cluster::checks::{
    check_comments, check_edges, check_feeds, check_likes, follow_all, follow_until_refused, like_all,
    like_until_refused, publish_some, restart_and_rejoin, retry, settled, signal_after, victim_and_survivors,
};
use common::cluster::{TestCluster, wait_for};
use common::cluster_calls::{WAIT, metric_sum, wait_post_count};

const SUSPICION_MS: &str = "2000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_users_are_served_by_the_survivors_and_it_rejoins_without_serving_what_it_lost() {
    for (round, seed) in common::seeded_rounds(0x51f1_5eed).into_iter().enumerate() {
        eprintln!("failover round {round}: FEEDLINE_SEED={seed}");
        one_round(seed).await;
    }
}

async fn one_round(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let mut c = TestCluster::start_args(3, 0, false, &["--suspicion-ms", SUSPICION_MS]).await;
    let (victim, alive) = victim_and_survivors(&mut rng);
    // One author the victim holds, one a survivor holds; twelve followers over all three.
    let a_v = c.create_user(victim, "fo_author_v").await;
    let a_o = c.create_user(alive[0], "fo_author_o").await;
    let mut followers = Vec::new();
    for k in 0..12 {
        let f = c.create_user(k % 3, &format!("fo_{k}")).await;
        retry("follow", || c.follow((k + 1) % 3, f, a_v)).await;
        retry("follow", || c.follow((k + 2) % 3, f, a_o)).await;
        followers.push(f);
    }
    // Six more, over all three, who follow both authors only while the victim dies: each
    // follow's two halves (the follower's node, the author's) straddle the kill one way or the
    // other.
    let mut late = Vec::new();
    for k in 0..6 {
        late.push(c.create_user(k % 3, &format!("fo_late_{k}")).await);
    }
    let mut by_v = publish_some(&c, &[0, 1, 2], a_v, 8, "before v").await;
    let mut by_o = publish_some(&c, &[0, 1, 2], a_o, 8, "before o").await;

    // The victim dies at a seeded point while its author's posts go through the other two.
    let kill_after = rng.below(60);
    let pid = c.nodes[victim].pid().expect("victim runs");
    let cr = &c;
    let publishing = publish_some(cr, &alive, a_v, 24, "during");
    // Meanwhile the followers like one of its posts: likes are decided on the victim, so some
    // are applied there just before the kill, with their follow-ups (the counts the other nodes
    // show, the likers' affinity) sent or not.
    let liked = *by_v.first().expect("a post by the victim's author");
    let liking = like_until_refused(cr, &alive, &followers, liked);
    let both = [a_v, a_o];
    let following = follow_until_refused(cr, &alive, &late, &both);
    let kill = async move {
        signal_after(pid, "-9", Duration::from_millis(kill_after)).await;
        Instant::now()
    };
    let (during, unliked, unfollowed, killed_at) = tokio::join!(publishing, liking, following, kill);
    c.nodes[victim].kill9();
    by_v.extend(during);

    // Its users are served again through the survivors — its author publishes and each of its
    // followers reads — counting the calls refused meanwhile.
    let mut refused = 0u64;
    let mine: Vec<u64> = (0..followers.len())
        .filter(|k| k % 3 == victim)
        .map(|k| followers[k])
        .collect();
    let served_after = loop {
        let via = alive[refused as usize % 2];
        let mut ok = match c.publish(via, a_v, "after the kill").await {
            Ok(id) => {
                by_v.insert(id);
                true
            }
            Err(_) => false,
        };
        for &f in &mine {
            ok = ok && c.feed(via, f).await.is_ok();
        }
        if ok {
            break killed_at.elapsed();
        }
        refused += 1;
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "seed {seed}: the dead node's users were not served again within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "seed {seed}: node {victim} killed {kill_after} ms into publishing; its users served again after {:.2} s, {refused} rounds of calls refused meanwhile",
        served_after.as_secs_f64()
    );

    // Life goes on without it: the likes the kill stopped, more posts, a delete, an unfollow.
    eprintln!(
        "seed {seed}: {} of 12 likes and {} of 6 late followers left after the kill",
        unliked.len(),
        unfollowed.len()
    );
    like_all(&c, &alive, &unliked, liked).await;
    follow_all(&c, &alive, &unfollowed, &[a_v, a_o]).await;
    followers.extend(late);
    by_v.extend(publish_some(&c, &alive, a_v, 8, "while down v").await);
    let later_o = publish_some(&c, &alive, a_o, 8, "while down o").await;
    let gone = *later_o.first().expect("a post by the survivor's author");
    by_o.extend(later_o);
    retry("delete while the node is down", || c.delete_post(alive[1], a_o, gone)).await;
    // The quitter is one of the dead node's users.
    let quitter = victim;
    retry("unfollow while the node is down", || {
        c.unfollow(alive[0], followers[quitter], a_o)
    })
    .await;
    // Every post, the deleted one included: none outside what each follower must see may show.
    let scope: BTreeSet<u64> = by_v.union(&by_o).copied().collect();
    let live_o: BTreeSet<u64> = by_o.iter().copied().filter(|&p| p != gone).collect();
    let mut want: Vec<BTreeSet<u64>> = (0..followers.len())
        .map(|j| match j == quitter {
            true => by_v.clone(),
            false => by_v.union(&live_o).copied().collect(),
        })
        .collect();
    let follows: Vec<Vec<u64>> = (0..followers.len())
        .map(|j| if j == quitter { vec![a_v] } else { vec![a_v, a_o] })
        .collect();
    check_feeds(&c, &alive, &followers, &scope, &want).await;
    check_edges(&c, &alive, &followers, &[a_v, a_o], &follows).await;
    let fans: BTreeSet<u64> = followers[..12].iter().copied().collect();
    check_likes(&c, &alive, a_o, liked, &fans).await;
    // Comments on the taken-over author's post, decided by the survivor holding it now: the
    // restarted node must have them when it takes the partition back.
    let mut said = BTreeSet::new();
    for (k, &f) in followers.iter().enumerate().take(3) {
        let id = settled(&[tonic::Code::Unavailable], || {
            c.comment(alive[k % 2], f, liked, format!("while node {victim} is down"))
        })
        .await
        .expect("comment while the node is down");
        said.insert(id);
    }
    check_comments(&c, &alive, a_o, liked, &said).await;

    // The node comes back: it rejoins, takes its partitions back, and serves them from what the
    // log says now — not from the timelines it kept (which still hold the deleted post and the
    // unfollowed author).
    restart_and_rejoin(&mut c, victim).await;
    let last = publish_some(&c, &[victim], a_v, 4, "after return").await;
    for w in want.iter_mut() {
        w.extend(last.iter().copied());
    }
    let scope: BTreeSet<u64> = scope.union(&last).copied().collect();
    check_feeds(&c, &[0, 1, 2], &followers, &scope, &want).await;
    check_edges(&c, &[0, 1, 2], &followers, &[a_v, a_o], &follows).await;
    check_likes(&c, &[0, 1, 2], a_o, liked, &fans).await;
    check_comments(&c, &[0, 1, 2], a_o, liked, &said).await;
    // Every acknowledged post once; a post whose answer the kill swallowed may be there too.
    let v = (by_v.len() + last.len()) as u64;
    wait_post_count(&c, &[0, 1, 2], a_v, v..=v + 24).await;
    wait_post_count(&c, &[0, 1, 2], a_o, live_o.len() as u64..=live_o.len() as u64).await;
}

/// Publishes posts by `authors` in turn, 4 in flight every 50 ms, through nodes 0–2, until
/// `stop` is set or 600 were acknowledged;
/// returns the acknowledged ids per author and the failed calls by status code.
async fn publish_until(
    c: &TestCluster,
    authors: &[u64],
    stop: &std::sync::atomic::AtomicBool,
) -> (Vec<BTreeSet<u64>>, std::collections::BTreeMap<String, u64>) {
    let mut acked = vec![BTreeSet::new(); authors.len()];
    let mut failed = std::collections::BTreeMap::new();
    let mut k = 0usize;
    // Paced, and at most 600 posts: every follower follows every author, and a pushed feed
    // holds about `timeline-cap` (1,000) entries.
    while !stop.load(std::sync::atomic::Ordering::SeqCst) && acked.iter().map(BTreeSet::len).sum::<usize>() < 600 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let flight = (k..k + 4).map(|j| async move {
            let a = j % authors.len();
            (a, c.publish(j % 3, authors[a], &format!("moving {j}")).await)
        });
        for (a, r) in futures::future::join_all(flight).await {
            match r {
                Ok(id) => {
                    acked[a].insert(id);
                }
                Err(e) => *failed.entry(format!("{:?}", e.code())).or_insert(0) += 1,
            }
        }
        k += 4;
    }
    (acked, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_a_running_cluster_and_takes_partitions_over_while_publishes_continue_and_a_nats_server_dies() {
    let seed = common::seeded_rounds(0x00ad_d4e0)[0];
    eprintln!("join: FEEDLINE_SEED={seed}");
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let mut c = TestCluster::start_args(3, 0, true, &["--suspicion-ms", SUSPICION_MS]).await;
    let mut authors = Vec::new();
    for i in 0..3 {
        authors.push(c.create_user(i, &format!("jn_author{i}")).await);
    }
    let mut followers = Vec::new();
    for k in 0..12 {
        let f = c.create_user(k % 3, &format!("jn_{k}")).await;
        for (j, &a) in authors.iter().enumerate() {
            retry("follow", || c.follow((k + j) % 3, f, a)).await;
        }
        followers.push(f);
    }
    // Sixty who only sign up, over the three: some live on the partitions that move (all of
    // them missing the six moved of 32 has odds of 4 in a million), and the node that gave
    // those partitions away forgets their reader records.
    for k in 0..60 {
        c.create_user(k % 3, &format!("jn_quiet_{k}")).await;
    }
    // Six more who follow the authors only while the node joins: some follows' halves are
    // decided, sent or applied around their partitions' move.
    let mut late = Vec::new();
    for k in 0..6 {
        late.push(c.create_user(k % 3, &format!("jn_late_{k}")).await);
    }
    let mut by: Vec<BTreeSet<u64>> = Vec::new();
    for &a in &authors {
        by.push(publish_some(&c, &[0, 1, 2], a, 4, "before").await);
    }

    // A fourth node joins while posts and follows keep coming; a NATS server dies at a seeded
    // point of it.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let nats_victim = rng.below(3) as usize;
    let nats_after = Duration::from_millis(rng.below(1200));
    let mut node = c.joining_node();
    let cr = &c;
    let stop_ref = &stop;
    let joining = async move {
        let started = Instant::now();
        let node = tokio::task::spawn_blocking(move || {
            node.start();
            node
        })
        .await
        .expect("the new node starts");
        let n = &node;
        // Up to a minute: with a NATS server killed the log may have no leader for a while.
        wait_for("the new node to take its partitions over", 2 * WAIT, || async move {
            n.log_has("partitions handed over").then_some(())
        })
        .await;
        let took = started.elapsed();
        // A little more load after the handover, then stop.
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop_ref.store(true, std::sync::atomic::Ordering::SeqCst);
        (node, took)
    };
    let nats_pid = c.nats.pid(nats_victim).expect("the NATS server runs");
    let kill_nats = signal_after(nats_pid, "-9", nats_after);
    let (late_ref, authors_ref) = (&late, &authors);
    let following = async move {
        for (k, &u) in late_ref.iter().enumerate() {
            for &a in authors_ref {
                tokio::time::sleep(Duration::from_millis(250)).await;
                follow_all(cr, &[k % 3], &[u], &[a]).await;
            }
        }
    };
    let ((acked, failed), (node, took), (), ()) =
        tokio::join!(publish_until(cr, &authors, stop_ref), joining, kill_nats, following);
    followers.extend(late);
    c.nodes.push(node);
    // The NATS server comes back (reaped first), so the checks run on a whole cluster.
    c.nats.kill(nats_victim);
    c.nats.start_server(nats_victim);
    eprintln!(
        "seed {seed}: node n3 joined and took its partitions over {:.2} s after it was started (nats{nats_victim} killed {} ms in); publishes failed meanwhile: {failed:?}; {} acknowledged",
        took.as_secs_f64(),
        nats_after.as_millis(),
        acked.iter().map(BTreeSet::len).sum::<usize>()
    );
    for (b, a) in by.iter_mut().zip(acked) {
        b.extend(a);
    }
    let all: BTreeSet<u64> = by.iter().flatten().copied().collect();
    let want = vec![all.clone(); followers.len()];
    check_feeds(&c, &[0, 1, 2, 3], &followers, &all, &want).await;
    let follows = vec![authors.clone(); followers.len()];
    check_edges(&c, &[0, 1, 2, 3], &followers, &authors, &follows).await;
    for (j, &a) in authors.iter().enumerate() {
        let n = by[j].len() as u64;
        wait_post_count(&c, &[0, 1, 2, 3], a, n..=n + 8).await;
    }
    // The old nodes forgot the readers of the partitions they gave away (in the background,
    // after the handover).
    let given = |i: usize| metric_sum(&c.scrape(i), "feedline_readers_forgotten_total", "why=\"given\"");
    wait_for("the old nodes to forget the readers they gave away", WAIT, || async {
        ((0..3).map(given).sum::<f64>() > 0.0).then_some(())
    })
    .await;
    // Bad input through the new node is refused like anywhere else, and changes nothing (a
    // client retries what the log did not answer in time: the NATS server just came back).
    let again = [tonic::Code::Unavailable, tonic::Code::DeadlineExceeded];
    let e = settled(&again, || c.publish(3, authors[0], ""))
        .await
        .expect_err("a blank post");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let e = settled(&again, || c.follow(3, followers[0], 999_999_999))
        .await
        .expect_err("an unknown user");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let n = by[0].len() as u64;
    wait_post_count(&c, &[0, 1, 2, 3], authors[0], n..=n + 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_nats_stops_answering_for_its_users_and_answers_again_once_its_lease_is_renewed() {
    let mut c = TestCluster::start_args(3, 0, false, &["--suspicion-ms", SUSPICION_MS]).await;
    let u = c.create_user(0, "lease_user").await;
    c.feed(0, u).await.expect("served while the lease holds");
    // Every NATS server dies: no node can renew its lease, so within half the suspicion time
    // each stops answering for its own users (reads included), saying why.
    for i in 0..3 {
        c.nats.kill(i);
    }
    let cr = &c;
    let refused = wait_for("the owner to refuse on a lapsed lease", WAIT, || async move {
        match cr.feed(0, u).await {
            Err(e) if e.code() == tonic::Code::Unavailable && e.message().contains("lease") => Some(e),
            _ => None,
        }
    })
    .await;
    assert!(refused.metadata().contains_key("x-feedline-retry"), "{refused:?}");
    // The servers come back: the lease is renewed and the user is served again.
    for i in 0..3 {
        c.nats.start_server(i);
    }
    let cr = &c;
    wait_for("the owner to answer again", 2 * WAIT, || async move {
        cr.feed(0, u).await.ok()
    })
    .await;
}
