//! Engagement on a real cluster (three feed-server processes over three nats-servers on
//! loopback): likes and comments decided on the post author's node, their follow-ups (counts,
//! affinity, a reply's notification) reaching the other nodes, lists and live notifications
//! served through any node.

mod common;

use std::time::Duration;

use common::cluster::{TestCluster, wait_for};
use common::cluster_calls::WAIT;
use feedline_proto::v1 as pb;
use tonic::Code;

/// Likes and comments are decided on the post author's node: asked through another node they
/// are forwarded there, the author hears of them there (live too, through a stream opened on a
/// third node), likers and comments are listed from there through any node, every node shows
/// the counts the author's node announced (a follow-up), the engaging users' affinity reaches
/// their nodes, and a reply's notification reaches the parent comment's author's node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engagement_is_decided_on_the_author_s_node_and_every_node_shows_its_counts() {
    use tokio_stream::StreamExt;
    let c = TestCluster::start_opts(3, 0, true).await;
    let a = c.create_user(0, "eng_a").await;
    let b = c.create_user(1, "eng_b").await;
    let z = c.create_user(2, "eng_z").await;
    c.follow(2, b, a).await.unwrap();
    let post = c.publish(1, a, "hello #cluster").await.unwrap();
    // The author's live notifications, through a node that does not hold them (forwarded).
    let mut live = pb::engagement_service_client::EngagementServiceClient::new(c.channel(2).await)
        .subscribe_notifications(c.req(pb::SubscribeNotificationsRequest { user_id: a }))
        .await
        .unwrap()
        .into_inner();
    let mut engage = pb::engagement_service_client::EngagementServiceClient::new(c.channel(2).await);
    let liked = engage
        .like(c.req(pb::PostActionRequest {
            user_id: b,
            post_id: post,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(liked.changed);
    let mut engage0 = pb::engagement_service_client::EngagementServiceClient::new(c.channel(0).await);
    let comment = engage0
        .add_comment(c.req(pb::AddCommentRequest {
            user_id: z,
            post_id: post,
            parent_id: 0,
            text: "from the third node".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let counts = |likes: u64, comments: u64| {
        let c = &c;
        async move {
            for node in 0..3 {
                let s = pb::search_service_client::SearchServiceClient::new(c.channel(node).await);
                wait_for(
                    &format!("node {node} to show {likes} like(s) and the comment"),
                    WAIT,
                    || {
                        let mut s = s.clone();
                        let req = c.req(pb::ListTagPostsRequest {
                            user_id: z,
                            tag: "cluster".into(),
                            page_size: 10,
                            ..Default::default()
                        });
                        async move {
                            let p = s.list_tag_posts(req).await.ok()?.into_inner();
                            let got = p.posts.first()?;
                            (got.id == post && got.like_count == likes && got.comment_count == comments).then_some(())
                        }
                    },
                )
                .await;
            }
        }
    };
    counts(1, 1).await;
    let likers = |via: usize| {
        let c = &c;
        async move {
            let mut e = pb::engagement_service_client::EngagementServiceClient::new(c.channel(via).await);
            let p = e
                .list_likers(c.req(pb::ListLikersRequest {
                    user_id: z,
                    post_id: post,
                    page_size: 10,
                    cursor: String::new(),
                }))
                .await
                .unwrap()
                .into_inner();
            p.user_ids
        }
    };
    for via in 0..3 {
        assert_eq!(likers(via).await, vec![b], "likers through node {via}");
    }
    let mut engage1 = pb::engagement_service_client::EngagementServiceClient::new(c.channel(1).await);
    let page = engage1
        .list_notifications(c.req(pb::ListNotificationsRequest {
            user_id: a,
            page_size: 10,
            cursor: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<(i32, u64)> = page
        .groups
        .iter()
        .map(|g| {
            let n = g.newest.as_ref().unwrap();
            (n.kind, n.actor_id)
        })
        .collect();
    use pb::NotificationKind as K;
    assert_eq!(
        kinds,
        vec![(K::Commented as i32, z), (K::Liked as i32, b), (K::Followed as i32, b)]
    );
    // The comment's notification carries the comment's id: minted once, by the accepting node.
    assert_eq!(page.groups[0].newest.as_ref().unwrap().comment_id, comment.id);
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let ev = tokio::time::timeout(Duration::from_secs(10), live.next())
            .await
            .expect("a live notification within 10 s")
            .expect("the stream stays open")
            .expect("an event");
        heard.push(ev.notification.unwrap().kind);
    }
    assert_eq!(heard, vec![K::Liked as i32, K::Commented as i32]);
    // Only the author's node applied the like and the comment and sent their follow-ups; the
    // liker's and the commenter's nodes applied their affinity, and every node the counts.
    let followups =
        |i: usize, m: &str, kind: &str| common::cluster_calls::metric_sum(&c.scrape(i), m, &format!("kind=\"{kind}\""));
    for i in 0..3 {
        let sent = followups(i, "feedline_followups_sent_total", "count");
        assert_eq!(sent > 0.0, i == 0, "node {i} sent {sent} counts");
        let aff = followups(i, "feedline_followups_applied_total", "user");
        assert_eq!(
            aff,
            if i == 0 { 0.0 } else { 1.0 },
            "node {i} applied {aff} users' follow-ups"
        );
    }
    // A reply to the comment, asked through the replier's node: decided on the author's node,
    // its notification sent on to the commenter's node; listed through every node.
    let reply = engage1
        .add_comment(c.req(pb::AddCommentRequest {
            user_id: b,
            post_id: post,
            parent_id: comment.id,
            text: "a reply across nodes".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let mut engage2 = pb::engagement_service_client::EngagementServiceClient::new(c.channel(2).await);
    wait_for("the commenter told of the reply", WAIT, || {
        let mut e = engage0.clone();
        let req = c.req(pb::ListNotificationsRequest {
            user_id: z,
            page_size: 10,
            cursor: String::new(),
        });
        async move {
            let page = e.list_notifications(req).await.ok()?.into_inner();
            let n = page.groups.first()?.newest?;
            (n.kind == K::Replied as i32 && n.actor_id == b && n.comment_id == reply.id).then_some(())
        }
    })
    .await;
    for via in [&mut engage0, &mut engage1, &mut engage2] {
        let page = via
            .list_comments(c.req(pb::ListCommentsRequest {
                user_id: z,
                post_id: post,
                parent_id: comment.id,
                page_size: 10,
                cursor: String::new(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.comments.iter().map(|x| x.id).collect::<Vec<_>>(), vec![reply.id]);
    }
    // Taken back through the liker's own node: gone from every node's count and list.
    let unliked = engage1
        .unlike(c.req(pb::PostActionRequest {
            user_id: b,
            post_id: post,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(unliked.changed);
    for via in 0..3 {
        assert!(
            likers(via).await.is_empty(),
            "likers through node {via} after the unlike"
        );
    }
    counts(0, 2).await;
    // An unknown post is refused the same way through every node, and changes nothing.
    for via in 0..3 {
        let mut e = pb::engagement_service_client::EngagementServiceClient::new(c.channel(via).await);
        let err = e
            .like(c.req(pb::PostActionRequest {
                user_id: b,
                post_id: post + 1,
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "through node {via}: {err:?}");
        // Bad comments: blank text, an unknown post, someone else's reply deleted by a user who
        // neither wrote it nor owns the post — the same status through every node.
        let bad: [(&str, Code, Result<_, tonic::Status>); 3] = [
            (
                "a blank comment",
                Code::InvalidArgument,
                e.add_comment(c.req(pb::AddCommentRequest {
                    user_id: z,
                    post_id: post,
                    parent_id: 0,
                    text: " \u{200b} ".into(),
                }))
                .await
                .map(drop),
            ),
            (
                "a comment on an unknown post",
                Code::NotFound,
                e.add_comment(c.req(pb::AddCommentRequest {
                    user_id: z,
                    post_id: post + 1,
                    parent_id: 0,
                    text: "hello?".into(),
                }))
                .await
                .map(drop),
            ),
            (
                "another user's reply deleted",
                Code::PermissionDenied,
                e.delete_comment(c.req(pb::DeleteCommentRequest {
                    user_id: z,
                    post_id: post,
                    comment_id: reply.id,
                }))
                .await
                .map(drop),
            ),
        ];
        for (what, code, r) in bad {
            let err = r.expect_err(what);
            assert_eq!(err.code(), code, "{what} through node {via}: {err:?}");
            assert!(!err.message().is_empty(), "{what} says why");
        }
    }
    // Nothing changed: the counts and the thread are as before, on every node.
    counts(0, 2).await;
    for via in [&mut engage0, &mut engage1, &mut engage2] {
        let page = via
            .list_comments(c.req(pb::ListCommentsRequest {
                user_id: z,
                post_id: post,
                parent_id: comment.id,
                page_size: 10,
                cursor: String::new(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.comments.iter().map(|x| x.id).collect::<Vec<_>>(), vec![reply.id]);
    }
}
