//! Cluster mode end to end: three feed-server processes over a three-server NATS JetStream
//! cluster on loopback. Users spread over the nodes, follows and fanout cross nodes, and the
//! faults the cluster must survive: a feed node killed mid-fanout, a NATS server killed while
//! publishing, a node's disk wiped, a node gone for good. After each: every acknowledged post is
//! in every follower's feed exactly once, nothing deleted or unfollowed shows, every node's
//! replica agrees on the counters.
//!
//! The nodes run the always-push policy, so every follower's stored timeline must hold every
//! post: that is the path that crosses nodes. (Under the hybrid policies a reader who has not
//! read yet is served by pull, bounded to the newest posts per author — the engine's own tests
//! cover that path; it reads only the node-local read model.)

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use common::cluster::{TestCluster, wait_for};
use common::cluster_calls::{WAIT, wait_feed, wait_post_count};
use feedline_proto::v1 as pb;
use tonic::Code;

/// `n` users signed up round-robin over the nodes; all but the first follow the first (each
/// follow asked through the node after the follower's).
async fn author_and_followers(c: &TestCluster, n: usize, prefix: &str) -> Vec<u64> {
    let mut users = Vec::new();
    for k in 0..n {
        users.push(c.create_user(k % 3, &format!("{prefix}{k}")).await);
    }
    for (k, &f) in users.iter().enumerate().skip(1) {
        c.follow((k + 1) % 3, f, users[0]).await.expect("follow across nodes");
    }
    users
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_posts_and_removals_cross_nodes_and_survive_a_feed_node_killed_mid_fanout() {
    let mut c = TestCluster::start(3, 0).await;
    // Sign-ups through every node: each mints ids it owns, so users spread over all three.
    let mut users = Vec::new();
    for k in 0..12 {
        users.push(c.create_user(k % 3, &format!("user{k}")).await);
    }
    let author = users[0];
    let followers: Vec<u64> = users[1..].to_vec();
    for (j, &f) in followers.iter().enumerate() {
        // Asked through another node than the follower's own: the call is forwarded.
        c.follow((j + 1) % 3, f, author).await.expect("follow across nodes");
    }
    // Bad input through a non-owner: a clear status, and nothing changed on any node.
    let e = c.publish(1, author, "   ").await.expect_err("blank text");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("text"), "{}", e.message());
    let e = c.follow(2, author, 999_999_999).await.expect_err("unknown user");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    for i in 0..3 {
        let u = c.user(i, author).await.unwrap();
        assert_eq!((u.posts, u.following), (0, 0), "node {i} changed after refused writes");
    }
    let p1 = c.publish(2, author, "hello cluster").await.expect("publish");
    let mut scope = BTreeSet::from([p1]);
    for (j, &f) in followers.iter().enumerate() {
        wait_feed(&c, j % 3, f, &scope, &BTreeSet::from([p1])).await;
    }

    // Unfollow and block reach the other nodes' stored feeds; a delete reaches everyone.
    let (quitter, blocked) = (followers[0], followers[1]);
    let mut uc = pb::user_service_client::UserServiceClient::new(c.channel(1).await);
    uc.unfollow(c.req(pb::RelationRequest {
        user_id: quitter,
        target_id: author,
    }))
    .await
    .unwrap();
    uc.block(c.req(pb::RelationRequest {
        user_id: author,
        target_id: blocked,
    }))
    .await
    .unwrap();
    let p2 = c.publish(0, author, "soon deleted").await.unwrap();
    scope.insert(p2);
    let staying: Vec<u64> = followers[2..].to_vec();
    for &f in &staying {
        wait_feed(&c, 0, f, &scope, &BTreeSet::from([p1, p2])).await;
    }
    let mut pc = pb::post_service_client::PostServiceClient::new(c.channel(2).await);
    pc.delete_post(c.req(pb::DeletePostRequest {
        user_id: author,
        post_id: p2,
    }))
    .await
    .unwrap();
    for &f in &staying {
        wait_feed(&c, 1, f, &scope, &BTreeSet::from([p1])).await;
    }
    for gone in [quitter, blocked] {
        wait_feed(&c, 2, gone, &scope, &BTreeSet::new()).await;
    }

    // Kill -9 a node while posts are being fanned out to its readers; restart it.
    let victim = 1;
    let mut acked = BTreeSet::from([p1]);
    let burst = (0..20).map(|k| {
        let c2 = &c;
        async move { c2.publish(k % 3, author, &format!("burst {k}")).await }
    });
    // Acknowledged as soon as applied on the answering node: node 1 is still fanning them out.
    let results = futures::future::join_all(burst).await;
    c.nodes[victim].kill9();
    // Writes through the killed node may fail; only acknowledged ones must survive.
    acked.extend(results.into_iter().flatten());
    for k in 0..10 {
        if let Ok(id) = c.publish([0, 2][k % 2], author, &format!("while down {k}")).await {
            acked.insert(id);
        }
    }
    c.nodes[victim].start();
    scope.extend(acked.iter().copied());
    for (j, &f) in staying.iter().enumerate() {
        wait_feed(&c, j % 3, f, &scope, &acked).await;
    }
    wait_feed(&c, 0, quitter, &scope, &BTreeSet::new()).await;
    // 1 + 20 + 10 writes were made (p2 deleted); every acked one counts once.
    wait_post_count(&c, &[0, 1, 2], author, acked.len() as u64..=31).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_nats_server_while_publishing_loses_no_acknowledged_post() {
    let mut c = TestCluster::start(3, 0).await;
    let users = author_and_followers(&c, 6, "n").await;
    let author = users[0];
    let mut acked = BTreeSet::new();
    let mut refused = 0;
    for k in 0..60 {
        if k == 20 {
            // One of the three JetStream servers dies mid-run; the R3 stream keeps a quorum.
            c.nats.kill(1);
        }
        match c.publish(k % 3, author, &format!("p{k}")).await {
            Ok(id) => assert!(acked.insert(id), "post id {id} handed out twice"),
            Err(s) => {
                assert!(
                    matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded),
                    "a failed write says it may be retried: {s:?}"
                );
                refused += 1;
            }
        }
    }
    assert!(
        acked.len() >= 40,
        "the stream kept accepting with 2 of 3 servers: {refused} refused"
    );
    for (j, &f) in users[1..].iter().enumerate() {
        wait_feed(&c, j % 3, f, &acked, &acked).await;
    }
    wait_post_count(&c, &[0, 1, 2], author, acked.len() as u64..=60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_rebuilds_from_its_checkpoint_and_the_log() {
    let mut c = TestCluster::start(3, 2).await;
    let users = author_and_followers(&c, 9, "w").await;
    let author = users[0];
    let mut acked = BTreeSet::new();
    for k in 0..10 {
        acked.insert(c.publish(k % 3, author, &format!("before {k}")).await.unwrap());
    }
    let victim = 1;
    wait_for("a checkpoint of node 1", WAIT, || async {
        c.nodes[victim].log_has("checkpoint uploaded").then_some(())
    })
    .await;
    for k in 0..10 {
        acked.insert(c.publish(k % 3, author, &format!("after {k}")).await.unwrap());
    }
    // The disk is lost: kill, wipe, start on an empty folder.
    c.nodes[victim].kill9();
    std::fs::remove_dir_all(c.nodes[victim].data_dir()).unwrap();
    c.nodes[victim].start();
    assert!(
        c.nodes[victim].log_has("restoring checkpoint"),
        "node 1 did not restore its checkpoint"
    );
    // Its own readers, served by it alone, have every post once.
    let mut readers = HashMap::new();
    for (j, &f) in users[1..].iter().enumerate() {
        readers.insert(f, j % 3);
    }
    for (&f, &via) in &readers {
        wait_feed(&c, via, f, &acked, &acked).await;
    }
    let n = acked.len() as u64;
    wait_post_count(&c, &[0, 1, 2], author, n..=n).await;
    // And it takes writes again.
    let id = c.publish(victim, users[victim], "back").await.unwrap();
    assert!(id > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_gone_for_good_fails_fast_for_its_users_only() {
    // Failover off (the test clusters' default): nobody takes the dead node's partitions over,
    // so its users stay unavailable (tests/failover.rs has the takeover).
    let mut c = TestCluster::start(3, 0).await;
    // One user per node (each node mints ids it owns).
    let a = c.create_user(0, "on_n0").await;
    let b = c.create_user(1, "on_n1").await;
    let z = c.create_user(2, "on_n2").await;
    for (x, y) in [(a, b), (b, a), (a, z), (b, z)] {
        c.follow(0, x, y).await.unwrap();
    }
    let old = c.publish(2, z, "from n2 before it died").await.unwrap();
    let scope = BTreeSet::from([old]);
    wait_feed(&c, 0, a, &scope, &scope).await;
    c.nodes[2].kill9();

    // Its user: UNAVAILABLE, quickly, through either survivor; calls fail fast once the
    // breaker is open.
    for via in [0, 1, 0, 1, 0, 1] {
        let t = Instant::now();
        let e = c.feed(via, z).await.expect_err("the owner is down");
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        assert!(
            e.message().contains("n2"),
            "the message names the node: {}",
            e.message()
        );
        assert!(t.elapsed() < Duration::from_secs(1), "took {:?}", t.elapsed());
    }
    let e = c.publish(0, z, "x").await.expect_err("the owner is down");
    assert_eq!(e.code(), Code::Unavailable);

    // A node started with another map than the cluster's refuses to start, and says why.
    let (failed, stderr) = c.start_with_other_map();
    assert!(failed, "a node with a different map must not start; stderr:\n{stderr}");
    assert!(stderr.contains("differs from the cluster's"), "{stderr}");
    // So does one started with another partition count: it never changes for a cluster's life.
    let (failed, stderr) = c.start_with_other_partitions();
    assert!(failed, "a node with other partitions must not start; stderr:\n{stderr}");
    assert!(
        stderr.contains("16 partitions but the cluster was created with 32"),
        "{stderr}"
    );

    // Everyone else is served, and a reader following the dead node's user still sees its
    // posts: the posts are in every node's read model.
    let pa = c.publish(1, a, "still here").await.unwrap();
    let scope = BTreeSet::from([old, pa]);
    wait_feed(&c, 1, b, &scope, &BTreeSet::from([old, pa])).await;
    // (Authors see their own posts.)
    wait_feed(&c, 0, a, &scope, &BTreeSet::from([old, pa])).await;
    let mut fc = pb::feed_service_client::FeedServiceClient::new(c.channel(0).await);
    let page = fc
        .get_home_feed(c.req(pb::GetHomeFeedRequest {
            reader_id: a,
            page_size: 20,
            cursor: String::new(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!page.partial, "nothing was missing: {}", page.partial_reason);
}

/// Read-your-writes on the node a client called: a follow or a post answered through a node
/// that does not own the acting user (so it was forwarded) is visible in that node's lists and
/// post reads at once. A follow's two sides are on the follower's and the followee's nodes:
/// both lists are read there (forwarded), and the follow is answered once the followee's half
/// is in the log, which the followee's node applies before it answers a list. A post is
/// replicated: its answer names its log sequence, which the forwarding node waited to apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_answered_through_another_node_is_read_there_at_once() {
    let c = TestCluster::start(3, 0).await;
    // Each node mints ids it owns: `a` lives on node 0, the targets anywhere.
    let a = c.create_user(0, "ryw_a").await;
    // A viewer node 2 owns: node 2 serves their post reads itself.
    let v = c.create_user(2, "ryw_v").await;
    let mut targets = Vec::new();
    for k in 0..30 {
        targets.push(c.create_user(k % 3, &format!("ryw_t{k}")).await);
    }
    let mut users = pb::user_service_client::UserServiceClient::new(c.channel(1).await);
    let mut posts = pb::post_service_client::PostServiceClient::new(c.channel(2).await);
    for (k, &t) in targets.iter().enumerate() {
        // Through node 1, which forwards to node 0; then read on node 1 straight away.
        users
            .follow(c.req(pb::RelationRequest {
                user_id: a,
                target_id: t,
            }))
            .await
            .expect("follow");
        let following = c.follow_list(1, a, false).await.expect("list following");
        assert!(
            following.contains(&t),
            "round {k}: node 1 answered the follow of {t} but lists {following:?}"
        );
        let followers = c.follow_list(1, t, true).await.expect("list followers");
        assert!(
            followers.contains(&a),
            "round {k}: node 1 does not list {a} among {t}'s followers"
        );
        // Through node 2, which forwards to node 0; then read the post on node 2. The answer
        // names the write's log sequence, which node 2 waited to apply.
        let answer = posts
            .publish(c.req(pb::PublishRequest {
                author_id: a,
                text: format!("ryw {k}"),
                content_type: pb::ContentType::Text as i32,
                ..Default::default()
            }))
            .await
            .expect("publish");
        let seq = answer
            .metadata()
            .get("x-feedline-seq")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        assert!(
            seq.is_some_and(|s| s > 0),
            "round {k}: a forwarded post's answer names no log sequence"
        );
        let id = answer.into_inner().id;
        let got = posts
            .get_post(c.req(pb::GetPostRequest {
                user_id: v,
                post_id: id,
            }))
            .await;
        assert!(
            got.is_ok(),
            "round {k}: node 2 answered post {id} but cannot read it: {got:?}"
        );
    }
    // Each node's search shows every target with the one follower and `a` with its 30 follows:
    // those counts are kept on each user's own node only, and taken from there.
    for i in 0..3 {
        let mut search = pb::search_service_client::SearchServiceClient::new(c.channel(i).await);
        let found = search
            .search_users(c.req(pb::SearchRequest {
                user_id: v,
                prefix: "ryw_".into(),
                limit: 50,
            }))
            .await
            .expect("search")
            .into_inner()
            .users;
        assert_eq!(found.len(), 32, "node {i}");
        for u in found {
            let want = match u.id {
                id if id == a => (0, 30),
                id if id == v => (0, 0),
                _ => (1, 0),
            };
            assert_eq!((u.followers, u.following), want, "node {i}: {}'s counts", u.handle);
        }
    }
}

/// A post reaches a live home-feed subscriber whose node does not hold its author: a pushed
/// post in the author's node's delivery batch, a celebrity's (not pushed: every node applies
/// it as a head and tells its own subscribers) straight from the head. Fails if a node that
/// writes another node's post as a head forgets its live subscribers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_subscribers_hear_of_posts_held_by_other_nodes_pushed_or_not() {
    use tokio_stream::StreamExt;
    let c = TestCluster::start_args(3, 0, false, &["--celebrity-followers", "2"]).await;
    // Each node holds the users it signed up: the celebrity on node 0, the reader on node 1,
    // the other follower and the ordinary author on node 2.
    let star = c.create_user(0, "live_star").await;
    let reader = c.create_user(1, "live_reader").await;
    let fan = c.create_user(2, "live_fan").await;
    let plain = c.create_user(2, "live_plain").await;
    c.follow(1, reader, star).await.expect("follow the star");
    c.follow(2, fan, star)
        .await
        .expect("a second follower makes a celebrity");
    c.follow(1, reader, plain).await.expect("follow the plain author");
    // The star's node counts both followers before the post (its rank and push decision use it).
    let star_node_counts = || async { (c.user(0, star).await.ok()?.followers == 2).then_some(()) };
    wait_for("the star's two followers counted on its node", WAIT, star_node_counts).await;
    let mut feeds = pb::feed_service_client::FeedServiceClient::new(c.channel(1).await);
    let mut stream = feeds
        .subscribe_home_feed(c.req(pb::SubscribeHomeFeedRequest { reader_id: reader }))
        .await
        .expect("subscribe on the reader's node")
        .into_inner();
    for (via, author, what) in [(0, star, "a celebrity's post"), (2, plain, "a pushed post")] {
        let id = c.publish(via, author, what).await.expect("publish");
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap_or_else(|_| panic!("{what} did not reach the subscriber on node 1 in 10 s"))
            .expect("the stream is open")
            .expect("an event");
        assert_eq!((ev.post_id, ev.author_id, ev.resync), (id, author, false), "{what}");
    }
    // The celebrity's post was not pushed: the reader's feed has it by pull.
    let feed = c.feed(1, reader).await.expect("feed");
    assert_eq!(feed.len(), 2, "both posts in the reader's feed: {feed:?}");
}
