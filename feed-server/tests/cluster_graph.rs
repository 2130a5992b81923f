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
