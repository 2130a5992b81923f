//! The follow graph on a real cluster (three feed-server processes over three nats-servers on
//! loopback): each user's side of an edge lives on their own node. A follow request to a private
//! account is decided on the account's node, its approval comes back to the requester's, and
//! after each call both sides read the same through every node at once (the call is answered
//! once the other half is in the log; a list is read after its user's node applied it), and a
//! post is ranked alike on every node. Bad input through any node gets the same status and
//! changes nothing.

mod common;

use std::collections::BTreeSet;

use common::cluster::TestCluster;
use common::cluster::checks::publish_some;
use common::cluster_calls::wait_feed;
use feedline_proto::v1 as pb;
use tonic::Code;

/// Both lists, counted: `(following of x, followers of z)` and the two counts, through node `i`.
async fn sides(c: &TestCluster, i: usize, x: u64, z: u64) -> (Vec<u64>, Vec<u64>, u64, u64) {
    let out = c.follow_list(i, x, false).await.expect("list following");
    let back = c.follow_list(i, z, true).await.expect("list followers");
    let following = c.user(i, x).await.expect("profile").following;
    let followers = c.user(i, z).await.expect("profile").followers;
    (out, back, following, followers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_account_s_request_is_decided_on_its_node_and_both_sides_agree_through_every_node() {
    let c = TestCluster::start(3, 0).await;
    // Each node mints ids it holds: the account on node 0, the asker on node 1.
    let z = c.create_user(0, "gr_private").await;
    let x = c.create_user(1, "gr_asker").await;
    let w = c.create_user(2, "gr_blocker").await;
    let mut users = pb::user_service_client::UserServiceClient::new(c.channel(2).await);
    users
        .set_private(c.req(pb::SetPrivateRequest {
            user_id: z,
            private: true,
        }))
        .await
        .expect("set private");
    let posts = publish_some(&c, &[0, 1, 2], z, 3, "private").await;

    // The request, through the third node: filed on the account's node, listed through every
    // node at once; nothing follows yet.
    let state = users
        .follow(c.req(pb::RelationRequest {
            user_id: x,
            target_id: z,
        }))
        .await
        .expect("follow")
        .into_inner()
        .state;
    assert_eq!(state, pb::FollowState::Requested as i32);
    for i in 0..3 {
        let mut u = pb::user_service_client::UserServiceClient::new(c.channel(i).await);
        let pending = u
            .list_follow_requests(c.req(pb::ListUsersRequest {
                user_id: z,
                page_size: 10,
                cursor: String::new(),
            }))
            .await
            .expect("list requests")
            .into_inner()
            .user_ids;
        assert_eq!(pending, vec![x], "node {i}: the request is filed on the account's node");
        assert_eq!(sides(&c, i, x, z).await, (vec![], vec![], 0, 0), "node {i}");
    }

    // The approval, through the asker's node: the account's side at once, the asker's follow
    // edge (with the account's posts merged into the feed) when its half lands — before the
    // next call.
    let mut via1 = pb::user_service_client::UserServiceClient::new(c.channel(1).await);
    let approved = via1
        .approve_follower(c.req(pb::RelationRequest {
            user_id: z,
            target_id: x,
        }))
        .await
        .expect("approve")
        .into_inner();
    assert!(approved.changed);
    for i in 0..3 {
        assert_eq!(sides(&c, i, x, z).await, (vec![z], vec![x], 1, 1), "node {i}");
    }
    let scope: BTreeSet<u64> = posts.clone();
    wait_feed(&c, 1, x, &scope, &posts).await;

    // Approving again: no request left, the same NOT_FOUND through every node, nothing changed.
    for i in 0..3 {
        let mut u = pb::user_service_client::UserServiceClient::new(c.channel(i).await);
        let e = u
            .approve_follower(c.req(pb::RelationRequest {
                user_id: z,
                target_id: x,
            }))
            .await
            .expect_err("no request left");
        assert_eq!(e.code(), Code::NotFound, "node {i}: {e:?}");
        assert!(e.message().contains("no pending request"), "node {i}: {}", e.message());
    }

    // A block (applied on every node) ends the follow on both sides; a follow of the blocker is
    // refused with the same status through every node and changes nothing.
    c.follow(0, x, w).await.expect("follow");
    c.block(0, w, x).await.expect("block");
    for i in 0..3 {
        let e = c.follow(i, x, w).await.expect_err("blocked");
        assert_eq!(e.code(), Code::NotFound, "node {i}: {e:?}");
        assert!(c.follow_list(i, w, true).await.expect("list").is_empty(), "node {i}");
        assert_eq!(c.follow_list(i, x, false).await.expect("list"), vec![z], "node {i}");
        assert_eq!(c.user(i, x).await.expect("profile").following, 1, "node {i}");
    }

    // A post's score comes from its author's follower count, which only the author's node
    // holds: it travels with the post, so every node ranks the post alike (read through a viewer
    // on each node; without it the other nodes would rank it as by an author with no
    // followers).
    let a = c.create_user(0, "gr_author").await;
    c.follow(2, x, a).await.expect("follow");
    c.follow(1, w, a).await.expect("follow");
    let post = c.publish(2, a, "ranked alike").await.expect("publish");
    let mut scores = Vec::new();
    for (i, viewer) in [(0, a), (1, x), (2, w)] {
        scores.push(c.post(i, viewer, post).await.expect("read the post").score);
    }
    assert!(
        scores.iter().all(|&s| s == scores[0]),
        "scores through the three nodes: {scores:?}"
    );

    // An unfollow through yet another node: both sides at once.
    c.unfollow(2, x, z).await.expect("unfollow");
    for i in 0..3 {
        assert_eq!(sides(&c, i, x, z).await, (vec![a], vec![], 1, 0), "node {i}");
    }
}

/// Client-side latencies (µs) of `n` calls of `call`, sorted.
async fn timed<F, Fut>(n: usize, mut call: F) -> Vec<u64>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut v = Vec::with_capacity(n);
    for k in 0..n {
        let t = std::time::Instant::now();
        call(k).await;
        v.push(t.elapsed().as_micros() as u64);
    }
    v.sort_unstable();
    v
}

fn p(v: &[u64], q: f64) -> u64 {
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

/// What a list read pays for its read-your-writes wait (`Cluster::settle`: one last-message
/// lookup on the log, then waiting for the node to apply it), against a home-feed read on the
/// same node and connection, which waits for nothing: idle, then while follows keep arriving on
/// the users' partitions; then 64 reads at once. For SCALING.md:
/// `cargo test --release -p feed-server --test cluster_graph -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement for SCALING.md: run with --ignored --nocapture"]
async fn the_cost_of_settling_a_list_read() {
    use common::cluster_calls::metric_sum;
    let c = TestCluster::start_opts(3, 0, true).await;
    let n = 500;
    let mut users = Vec::new();
    for k in 0..30 {
        users.push(c.create_user(0, &format!("settle_{k}")).await);
    }
    for &u in &users[1..] {
        c.follow(0, u, users[0]).await.expect("follow");
        c.follow(0, users[0], u).await.expect("follow back");
    }
    let ch = c.channel(0).await;
    let lists = pb::user_service_client::UserServiceClient::new(ch.clone());
    let feeds = pb::feed_service_client::FeedServiceClient::new(ch);
    let list_req = |u| {
        c.req(pb::ListUsersRequest {
            user_id: u,
            page_size: 20,
            cursor: String::new(),
        })
    };
    let feed_req = |u| {
        c.req(pb::GetHomeFeedRequest {
            reader_id: u,
            page_size: 20,
            ..Default::default()
        })
    };
    let settle = |m: &str| {
        let name = "feedline_cluster_settle_seconds";
        (
            metric_sum(m, &format!("{name}_sum"), ""),
            metric_sum(m, &format!("{name}_count"), ""),
        )
    };
    for phase in ["idle", "with follows arriving"] {
        let other = c.channel(1).await;
        let churn = (phase != "idle").then(|| {
            let users2 = users.clone();
            let admin = c.req(()).metadata().clone();
            tokio::spawn(async move {
                let mut u = pb::user_service_client::UserServiceClient::new(other);
                for k in 0.. {
                    let (a, b) = (users2[1 + k % 29], users2[1 + (k * 7 + 3) % 29]);
                    if a == b {
                        continue;
                    }
                    let verb = k / 29 % 2;
                    let mut r = tonic::Request::new(pb::RelationRequest {
                        user_id: a,
                        target_id: b,
                    });
                    *r.metadata_mut() = admin.clone();
                    if verb == 0 {
                        let _ = u.follow(r).await;
                    } else {
                        let _ = u.unfollow(r).await;
                    }
                }
            })
        });
        let before = settle(&c.scrape(0));
        let list = timed(n, |k| {
            let r = list_req(users[k % users.len()]);
            let mut l = lists.clone();
            async move {
                l.list_followers(r).await.expect("list");
            }
        })
        .await;
        let after = settle(&c.scrape(0));
        let feed = timed(n, |k| {
            let r = feed_req(users[k % users.len()]);
            let mut f = feeds.clone();
            async move {
                f.get_home_feed(r).await.expect("feed");
            }
        })
        .await;
        if let Some(t) = churn {
            t.abort();
        }
        let (sum, count) = (after.0 - before.0, after.1 - before.1);
        println!(
            "{phase}: ListFollowers p50 {} µs p99 {} µs; GetHomeFeed p50 {} µs p99 {} µs (same node, same connection, {n} each); \
             settle mean {:.0} µs over {count} reads",
            p(&list, 0.5),
            p(&list, 0.99),
            p(&feed, 0.5),
            p(&feed, 0.99),
            sum / count.max(1.0) * 1e6
        );
    }
    // Many list reads at once on one node: concurrent reads of a partition share lookups.
    let width = 64;
    let lookups = |m: &str| metric_sum(m, "feedline_cluster_settle_lookups_total", "");
    let (before, looked) = (settle(&c.scrape(0)), lookups(&c.scrape(0)));
    let t = std::time::Instant::now();
    let mut tasks = Vec::new();
    for w in 0..width {
        let reqs: Vec<_> = (0..n * 4 / width)
            .map(|k| list_req(users[(w + k * width) % users.len()]))
            .collect();
        let l = lists.clone();
        tasks.push(tokio::spawn(async move {
            let mut v = Vec::new();
            for r in reqs {
                let (mut l, t) = (l.clone(), std::time::Instant::now());
                l.list_followers(r).await.expect("list");
                v.push(t.elapsed().as_micros() as u64);
            }
            v
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let secs = t.elapsed().as_secs_f64();
    all.sort_unstable();
    let m = c.scrape(0);
    let (after, looked) = (settle(&m), lookups(&m) - looked);
    let count = after.1 - before.1;
    println!(
        "{width} at once: ListFollowers p50 {} µs p99 {} µs, {:.0} reads/s ({} reads over 30 users); \
         settle mean {:.0} µs; {looked} log lookups for {count} settles",
        p(&all, 0.5),
        p(&all, 0.99),
        all.len() as f64 / secs,
        all.len(),
        (after.0 - before.0) / count.max(1.0) * 1e6
    );
}
