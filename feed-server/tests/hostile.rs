//! Hostile input over gRPC: forged and expired tokens, another user's id, oversized and malformed
//! messages (invalid UTF-8 included), impossible page sizes, garbage cursors, unknown ids. Each
//! gets its status code, and a checksum of every stored key and value is unchanged afterwards.

mod common;

use common::{channel, with_token};
use feed_server::Server;
use feed_server::auth::{Signer, Subject};
use feed_server::config::ServerConfig;
use feedline_proto::v1 as pb;
use feedline_proto::v1::engagement_service_client::EngagementServiceClient;
use feedline_proto::v1::feed_service_client::FeedServiceClient;
use feedline_proto::v1::post_service_client::PostServiceClient;
use feedline_proto::v1::user_service_client::UserServiceClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::{Code, Request};

/// The Publish request with `text` as raw bytes, so a client can send invalid UTF-8.
#[derive(Clone, PartialEq, prost::Message)]
struct RawPublish {
    #[prost(uint64, tag = "1")]
    author_id: u64,
    #[prost(int32, tag = "2")]
    content_type: i32,
    #[prost(bytes = "vec", tag = "3")]
    text: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_their_codes_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ServerConfig::for_tests(dir.path().join("db"));
    let key = hex::decode(&cfg.auth.secret_hex).unwrap();
    let max_message = cfg.limits.max_message_bytes;
    let s = Server::start(cfg).await.unwrap();
    let ch = channel(&s).await;
    let mut users = UserServiceClient::new(ch.clone());
    let mut posts = PostServiceClient::new(ch.clone());
    let mut feeds = FeedServiceClient::new(ch.clone());

    let alice = users
        .create_user(pb::CreateUserRequest {
            handle: "alice".into(),
            private: false,
        })
        .await
        .unwrap()
        .into_inner();
    let bob = users
        .create_user(pb::CreateUserRequest {
            handle: "bob".into(),
            private: false,
        })
        .await
        .unwrap()
        .into_inner();
    let (a, at) = (alice.user.unwrap().id, alice.token);
    let b = bob.user.unwrap().id;
    users
        .follow(with_token(
            pb::RelationRequest {
                user_id: a,
                target_id: b,
            },
            &at,
        ))
        .await
        .unwrap();
    let p = posts
        .publish(with_token(
            pb::PublishRequest {
                author_id: a,
                content_type: 1,
                text: "hi".into(),
                ..Default::default()
            },
            &at,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(s.engine().wait_idle(std::time::Duration::from_secs(10)));
    let before = s.engine().data_checksum().unwrap();
    let mut tried = 0;
    let mut expect = |got: Code, want: &[Code], what: &str| {
        tried += 1;
        assert!(want.contains(&got), "{what}: got {got:?}, want one of {want:?}");
    };

    // Tokens.
    let expired = Signer::new(key.clone()).issue_at(Subject::User(a), 0, 1);
    let foreign = Signer::new(b"another deployment's key".to_vec()).issue_at(Subject::Admin, 0, u64::MAX / 2);
    let ok_feed = pb::GetHomeFeedRequest {
        reader_id: a,
        page_size: 10,
        cursor: String::new(),
        ..Default::default()
    };
    for (tok, what) in [
        (expired.as_str(), "expired token"),
        (foreign.as_str(), "token of another key"),
        ("v1.e30.e30", "forged token"),
        ("", "empty token"),
    ] {
        let e = feeds.get_home_feed(with_token(ok_feed.clone(), tok)).await.unwrap_err();
        expect(e.code(), &[Code::Unauthenticated], what);
    }
    let e = feeds.get_home_feed(Request::new(ok_feed.clone())).await.unwrap_err();
    expect(e.code(), &[Code::Unauthenticated], "no token");

    // Acting as someone else.
    let e = feeds
        .get_home_feed(with_token(
            pb::GetHomeFeedRequest {
                reader_id: b,
                ..ok_feed.clone()
            },
            &at,
        ))
        .await
        .unwrap_err();
    expect(e.code(), &[Code::PermissionDenied], "another user's feed");
    let e = posts
        .publish(with_token(
            pb::PublishRequest {
                author_id: b,
                content_type: 1,
                text: "x".into(),
                ..Default::default()
            },
            &at,
        ))
        .await
        .unwrap_err();
    expect(e.code(), &[Code::PermissionDenied], "posting as another user");
    let e = posts
        .delete_post(with_token(
            pb::DeletePostRequest {
                user_id: b,
                post_id: p.id,
            },
            &at,
        ))
        .await
        .unwrap_err();
    expect(e.code(), &[Code::PermissionDenied], "deleting as another user");
    let e = users
        .unfollow(with_token(
            pb::RelationRequest {
                user_id: b,
                target_id: a,
            },
            &at,
        ))
        .await
        .unwrap_err();
    expect(e.code(), &[Code::PermissionDenied], "unfollowing as another user");

    // Sizes.
    let big = pb::PublishRequest {
        author_id: a,
        content_type: 1,
        text: "x".repeat(5000),
        ..Default::default()
    };
    let e = posts.publish(with_token(big, &at)).await.unwrap_err();
    expect(e.code(), &[Code::InvalidArgument], "text over the post limit");
    let huge = pb::PublishRequest {
        author_id: a,
        content_type: 1,
        text: "x".repeat(max_message + 1),
        ..Default::default()
    };
    let e = posts.publish(with_token(huge, &at)).await.unwrap_err();
    expect(
        e.code(),
        &[Code::ResourceExhausted, Code::OutOfRange],
        "message over the server limit",
    );
    let many = pb::PublishRequest {
        author_id: a,
        content_type: 2,
        media: vec!["m".into(); 500],
        ..Default::default()
    };
    let e = posts.publish(with_token(many, &at)).await.unwrap_err();
    expect(e.code(), &[Code::InvalidArgument], "too many media references");
    for n in [0, 101, u32::MAX] {
        let e = feeds
            .get_home_feed(with_token(
                pb::GetHomeFeedRequest {
                    page_size: n,
                    ..ok_feed.clone()
                },
                &at,
            ))
            .await
            .unwrap_err();
        expect(e.code(), &[Code::InvalidArgument], "impossible page size");
    }
    let reads = vec![ok_feed.clone(); 1025];
    let e = feeds
        .get_home_feeds(with_token(pb::GetHomeFeedsRequest { reads }, &s.admin_token))
        .await
        .unwrap_err();
    expect(e.code(), &[Code::InvalidArgument], "oversized batch");

    // Malformed bytes: invalid UTF-8 in a string field.
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.unwrap();
    let raw = RawPublish {
        author_id: a,
        content_type: 1,
        text: vec![0xff, 0xfe, b'a'],
    };
    let path = http::uri::PathAndQuery::from_static("/feedline.v1.PostService/Publish");
    let r: Result<tonic::Response<pb::Post>, _> = grpc
        .unary(with_token(raw, &at), path, tonic_prost::ProstCodec::default())
        .await;
    let e = r.unwrap_err();
    expect(e.code(), &[Code::InvalidArgument], "invalid UTF-8");
    assert!(e.message().contains("malformed"), "{}", e.message());

    // Garbage cursors and unknown ids.
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..200 {
        let len = rng.random_range(1..80);
        let cursor: String = (0..len).map(|_| rng.random_range(0x21u8..0x7f) as char).collect();
        let r = feeds
            .get_home_feed(with_token(
                pb::GetHomeFeedRequest {
                    cursor: cursor.clone(),
                    ..ok_feed.clone()
                },
                &at,
            ))
            .await;
        // A random string that happens to decode is a valid position, answered normally;
        // anything else is refused.
        let want = match feed_engine::codec::decode_feed_cursor(&cursor) {
            Ok(_) => Code::Ok,
            Err(_) => Code::InvalidArgument,
        };
        let got = r.as_ref().map_or_else(|e| e.code(), |_| Code::Ok);
        expect(got, &[want], &format!("cursor {cursor:?}"));
    }
    // An error never echoes unbounded input.
    let e = feeds
        .get_home_feed(with_token(
            pb::GetHomeFeedRequest {
                cursor: "A".repeat(10_000),
                ..ok_feed.clone()
            },
            &at,
        ))
        .await
        .unwrap_err();
    expect(e.code(), &[Code::InvalidArgument], "a 10,000-character cursor");
    assert!(
        e.message().len() < 200,
        "the error echoes the input: {} chars",
        e.message().len()
    );

    // Text with nothing visible in it.
    for blank in ["\u{200B}", "\u{202E}\u{FEFF}", "\0", " \u{200B}\t"] {
        let e = posts
            .publish(with_token(
                pb::PublishRequest {
                    author_id: a,
                    content_type: 1,
                    text: blank.into(),
                    ..Default::default()
                },
                &at,
            ))
            .await
            .unwrap_err();
        expect(e.code(), &[Code::InvalidArgument], &format!("invisible text {blank:?}"));
    }

    // Token lifetimes are bounded; a batch is looked at only after authentication.
    for ttl in [u64::MAX, 365 * 86_400] {
        let e = users
            .issue_token(with_token(
                pb::IssueTokenRequest {
                    user_id: a,
                    ttl_seconds: ttl,
                },
                &s.admin_token,
            ))
            .await
            .unwrap_err();
        expect(e.code(), &[Code::InvalidArgument], "a token lifetime over the maximum");
    }
    let reads = vec![ok_feed.clone(); 5000];
    let e = feeds
        .get_home_feeds(Request::new(pb::GetHomeFeedsRequest { reads }))
        .await
        .unwrap_err();
    expect(e.code(), &[Code::Unauthenticated], "an anonymous oversized batch");
    let e = posts
        .get_post(with_token(
            pb::GetPostRequest {
                user_id: a,
                post_id: 424242,
            },
            &at,
        ))
        .await
        .unwrap_err();
    expect(e.code(), &[Code::NotFound], "unknown post");
    let e = users
        .follow(with_token(
            pb::RelationRequest {
                user_id: a,
                target_id: 999,
            },
            &at,
        ))
        .await
        .unwrap_err();
    expect(e.code(), &[Code::NotFound], "unknown user");
    let e = posts
        .delete_post(with_token(
            pb::DeletePostRequest {
                user_id: a,
                post_id: 424242,
            },
            &at,
        ))
        .await
        .unwrap_err();
    expect(e.code(), &[Code::NotFound], "deleting an unknown post");

    // Engagement: unknown posts and comments, another user's id, bad comments, ranked cursors.
    let mut engage = EngagementServiceClient::new(ch.clone());
    let act = |user_id, post_id| pb::PostActionRequest { user_id, post_id };
    let e = engage.like(with_token(act(a, 424242), &at)).await.unwrap_err();
    expect(e.code(), &[Code::NotFound], "liking an unknown post");
    let e = engage.like(with_token(act(b, p.id), &at)).await.unwrap_err();
    expect(e.code(), &[Code::PermissionDenied], "liking as another user");
    for (text, what) in [
        (String::new(), "an empty comment"),
        ("\u{200B}\u{202E}".to_string(), "an invisible comment"),
        ("c".repeat(5000), "an oversized comment"),
    ] {
        let e = engage
            .add_comment(with_token(
                pb::AddCommentRequest {
                    user_id: a,
                    post_id: p.id,
                    parent_id: 0,
                    text,
                },
                &at,
            ))
            .await
            .unwrap_err();
        expect(e.code(), &[Code::InvalidArgument], what);
    }
    let e = engage
        .delete_comment(with_token(
            pb::DeleteCommentRequest {
                user_id: a,
                post_id: p.id,
                comment_id: 5,
            },
            &at,
        ))
        .await
        .unwrap_err();
    expect(e.code(), &[Code::NotFound], "deleting an unknown comment");
    let e = feeds
        .get_home_feed(with_token(
            pb::GetHomeFeedRequest {
                reader_id: a,
                page_size: 10,
                ranker: 99,
                ..Default::default()
            },
            &at,
        ))
        .await
        .unwrap_err();
    expect(e.code(), &[Code::InvalidArgument], "an unknown ranker");
    let e = feeds
        .get_home_feed(with_token(
            pb::GetHomeFeedRequest {
                reader_id: a,
                page_size: 10,
                ranker: pb::Ranker::Engagement as i32,
                cursor: "garbage".into(),
                ..Default::default()
            },
            &at,
        ))
        .await
        .unwrap_err();
    expect(e.code(), &[Code::InvalidArgument], "a garbage ranked cursor");

    assert_eq!(s.engine().data_checksum().unwrap(), before, "stored data changed");
    eprintln!("hostile input: {tried} requests tried, stored data unchanged");
    s.shutdown().await.unwrap();
}
