//! Engagement over gRPC against a real server: likes and comments with their counts on posts
//! and feeds, notifications paged and streamed live, hashtags and search — each call acting only
//! as its token's user, and bad input answered with its code while the stored data stays as it was.

mod common;

use std::time::Duration;

use common::{channel, signup, start, with_token};
use feedline_proto::v1 as pb;
use feedline_proto::v1::engagement_service_client::EngagementServiceClient;
use feedline_proto::v1::feed_service_client::FeedServiceClient;
use feedline_proto::v1::post_service_client::PostServiceClient;
use feedline_proto::v1::search_service_client::SearchServiceClient;
use feedline_proto::v1::user_service_client::UserServiceClient;
use tokio_stream::StreamExt;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn likes_comments_notifications_and_search_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |_| {}).await;
    let ch = channel(&s).await;
    let mut users = UserServiceClient::new(ch.clone());
    let mut posts = PostServiceClient::new(ch.clone());
    let mut feeds = FeedServiceClient::new(ch.clone());
    let mut engage = EngagementServiceClient::new(ch.clone());
    let mut search = SearchServiceClient::new(ch.clone());
    let (ada, ada_t) = signup(&ch, "ada").await;
    let (bob, bob_t) = signup(&ch, "bob").await;

    // Ada listens for notifications before anything happens.
    let mut live = engage
        .subscribe_notifications(with_token(pb::SubscribeNotificationsRequest { user_id: ada }, &ada_t))
        .await
        .unwrap()
        .into_inner();

    users
        .follow(with_token(
            pb::RelationRequest {
                user_id: bob,
                target_id: ada,
            },
            &bob_t,
        ))
        .await
        .unwrap();
    let post = posts
        .publish(with_token(
            pb::PublishRequest {
                author_id: ada,
                content_type: pb::ContentType::Text as i32,
                text: "first light #Astro #night".into(),
                location: "La Palma".into(),
                ..Default::default()
            },
            &ada_t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(post.tags, vec!["astro", "night"]);
    assert_eq!(post.location, "La Palma");

    let like = |user, post_id| pb::PostActionRequest { user_id: user, post_id };
    assert!(
        engage
            .like(with_token(like(bob, post.id), &bob_t))
            .await
            .unwrap()
            .into_inner()
            .changed
    );
    assert!(
        !engage
            .like(with_token(like(bob, post.id), &bob_t))
            .await
            .unwrap()
            .into_inner()
            .changed
    );
    // A token acts as its own user only.
    let e = engage.like(with_token(like(ada, post.id), &bob_t)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let c = engage
        .add_comment(with_token(
            pb::AddCommentRequest {
                user_id: bob,
                post_id: post.id,
                parent_id: 0,
                text: "wow".into(),
            },
            &bob_t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((c.author_id, c.parent_id, c.text.as_str()), (bob, 0, "wow"));

    let views = engage
        .record_views(with_token(
            pb::RecordViewsRequest {
                user_id: bob,
                post_ids: vec![post.id, 999_999],
            },
            &bob_t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(views.counted, 1, "the unknown post does not count");

    // Live: followed, liked, commented — in order, each within the deadline.
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(10), live.next())
            .await
            .expect("a notification within 10 s")
            .unwrap()
            .unwrap();
        let n = ev.notification.unwrap();
        assert_eq!(n.actor_id, bob);
        kinds.push(n.kind);
    }
    use pb::NotificationKind as K;
    assert_eq!(kinds, vec![K::Followed as i32, K::Liked as i32, K::Commented as i32]);

    // Counts on the post, on its author's page and in the follower's feed.
    let got = posts
        .get_post(with_token(
            pb::GetPostRequest {
                user_id: bob,
                post_id: post.id,
            },
            &bob_t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((got.like_count, got.comment_count), (1, 1));
    assert!(s.engine().wait_idle(Duration::from_secs(10)));
    let page = feeds
        .get_home_feed(with_token(
            pb::GetHomeFeedRequest {
                reader_id: bob,
                page_size: 10,
                cursor: String::new(),
                ..Default::default()
            },
            &bob_t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.posts[0].id, post.id);
    assert_eq!((page.posts[0].like_count, page.posts[0].comment_count), (1, 1));

    let list = engage
        .list_notifications(with_token(
            pb::ListNotificationsRequest {
                user_id: ada,
                page_size: 10,
                cursor: String::new(),
            },
            &ada_t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.groups.len(), 3);
    assert_eq!(list.unread, 3);
    let marker = engage
        .mark_notifications_seen(with_token(
            pb::MarkNotificationsSeenRequest { user_id: ada, up_to: 0 },
            &ada_t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(marker.unread, 0);
    assert_eq!(marker.seen_up_to, list.groups[0].newest.as_ref().unwrap().id);

    let likers = engage
        .list_likers(with_token(
            pb::ListLikersRequest {
                user_id: ada,
                post_id: post.id,
                page_size: 10,
                cursor: String::new(),
            },
            &ada_t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(likers.user_ids, vec![bob]);
    let comments = engage
        .list_comments(with_token(
            pb::ListCommentsRequest {
                user_id: ada,
                post_id: post.id,
                parent_id: 0,
                page_size: 10,
                cursor: String::new(),
            },
            &ada_t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(comments.comments, vec![c.clone()]);

    let tagged = search
        .list_tag_posts(with_token(
            pb::ListTagPostsRequest {
                user_id: bob,
                tag: "#ASTRO".into(),
                page_size: 10,
                cursor: String::new(),
                trending: false,
            },
            &bob_t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tagged.posts.iter().map(|p| p.id).collect::<Vec<_>>(), vec![post.id]);
    let found = search
        .search_users(with_token(
            pb::SearchRequest {
                user_id: bob,
                prefix: "ad".into(),
                limit: 5,
            },
            &bob_t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.users.iter().map(|u| u.id).collect::<Vec<_>>(), vec![ada]);
    let tags = search
        .search_tags(with_token(
            pb::SearchRequest {
                user_id: bob,
                prefix: "n".into(),
                limit: 5,
            },
            &bob_t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        tags.tags,
        vec![pb::TagCount {
            tag: "night".into(),
            posts: 1
        }]
    );

    // Bad input: its code, and nothing stored changes.
    let before = s.engine().data_checksum().unwrap();
    let comment = |user, post_id, parent_id, text: &str| pb::AddCommentRequest {
        user_id: user,
        post_id,
        parent_id,
        text: text.into(),
    };
    let cases: Vec<(Code, tonic::Status)> = vec![
        (
            Code::NotFound,
            engage.like(with_token(like(bob, 424242), &bob_t)).await.unwrap_err(),
        ),
        (
            Code::InvalidArgument,
            engage
                .add_comment(with_token(comment(bob, post.id, 0, ""), &bob_t))
                .await
                .unwrap_err(),
        ),
        (
            Code::InvalidArgument,
            engage
                .add_comment(with_token(comment(bob, post.id, 0, &"x".repeat(3000)), &bob_t))
                .await
                .unwrap_err(),
        ),
        (
            Code::NotFound,
            engage
                .add_comment(with_token(comment(bob, post.id, 99, "to nothing"), &bob_t))
                .await
                .unwrap_err(),
        ),
        (
            Code::InvalidArgument,
            posts
                .publish(with_token(
                    pb::PublishRequest {
                        author_id: ada,
                        content_type: 1,
                        text: (0..31).map(|i| format!("#t{i} ")).collect(),
                        ..Default::default()
                    },
                    &ada_t,
                ))
                .await
                .unwrap_err(),
        ),
        (
            Code::InvalidArgument,
            posts
                .publish(with_token(
                    pb::PublishRequest {
                        author_id: ada,
                        content_type: 1,
                        text: "x".into(),
                        location: "l".repeat(101),
                        ..Default::default()
                    },
                    &ada_t,
                ))
                .await
                .unwrap_err(),
        ),
        (
            Code::InvalidArgument,
            search
                .search_tags(with_token(
                    pb::SearchRequest {
                        user_id: bob,
                        prefix: String::new(),
                        limit: 5,
                    },
                    &bob_t,
                ))
                .await
                .unwrap_err(),
        ),
    ];
    for (i, (want, got)) in cases.iter().enumerate() {
        assert_eq!(got.code(), *want, "case {i}: {}", got.message());
        assert!(!got.message().is_empty(), "case {i} says why");
    }
    let e = engage
        .delete_comment(with_token(
            pb::DeleteCommentRequest {
                user_id: ada,
                post_id: post.id,
                comment_id: 77,
            },
            &ada_t,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(
        s.engine().data_checksum().unwrap(),
        before,
        "refusals changed stored data"
    );

    // The post's author may delete a comment on it.
    engage
        .delete_comment(with_token(
            pb::DeleteCommentRequest {
                user_id: ada,
                post_id: post.id,
                comment_id: c.id,
            },
            &ada_t,
        ))
        .await
        .unwrap();
    drop(live);
    s.shutdown().await.unwrap();
}
