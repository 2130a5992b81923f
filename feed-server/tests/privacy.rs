//! Privacy without oracles, probed as an ordinary account would over gRPC: every call on a post
//! or user the caller may not see answers exactly as for one that does not exist (same code,
//! same message once the id is masked), and a private account's lists are shown to its approved
//! followers only. Each probe leaves the stored data unchanged.

mod common;

use common::{channel, signup, start, with_token};
use feedline_proto::v1 as pb;
use feedline_proto::v1::feed_service_client::FeedServiceClient;
use feedline_proto::v1::post_service_client::PostServiceClient;
use feedline_proto::v1::user_service_client::UserServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// An id no user or post has.
const NOBODY: u64 = 987_654_321;

/// A status with the probed id (or handle) masked, for comparing the answers of two probes.
fn masked(r: Result<impl std::fmt::Debug, Status>, id: &str) -> (Code, String) {
    match r {
        Ok(v) => panic!("a probe of {id} succeeded: {v:?}"),
        Err(s) => (s.code(), s.message().replace(id, "<id>")),
    }
}

struct Clients {
    users: UserServiceClient<Channel>,
    posts: PostServiceClient<Channel>,
    feeds: FeedServiceClient<Channel>,
}

impl Clients {
    fn new(ch: &Channel) -> Self {
        Clients {
            users: UserServiceClient::new(ch.clone()),
            posts: PostServiceClient::new(ch.clone()),
            feeds: FeedServiceClient::new(ch.clone()),
        }
    }

    /// Makes `user`'s account private.
    async fn set_private(&mut self, user: u64, tok: &str) {
        self.users
            .set_private(with_token(
                pb::SetPrivateRequest {
                    user_id: user,
                    private: true,
                },
                tok,
            ))
            .await
            .unwrap();
    }

    /// Every post-taking RPC, as `me`, on `post`.
    async fn post_probes(&mut self, me: u64, tok: &str, post: u64) -> Vec<(&'static str, (Code, String))> {
        let id = post.to_string();
        vec![
            (
                "GetPost",
                masked(
                    self.posts
                        .get_post(with_token(
                            pb::GetPostRequest {
                                user_id: me,
                                post_id: post,
                            },
                            tok,
                        ))
                        .await,
                    &id,
                ),
            ),
            (
                "DeletePost",
                masked(
                    self.posts
                        .delete_post(with_token(
                            pb::DeletePostRequest {
                                user_id: me,
                                post_id: post,
                            },
                            tok,
                        ))
                        .await,
                    &id,
                ),
            ),
            (
                // Answers a list: a hidden post is left out exactly as a missing one.
                "GetPosts",
                match self
                    .posts
                    .get_posts(with_token(
                        pb::GetPostsRequest {
                            user_id: me,
                            post_ids: vec![post],
                        },
                        tok,
                    ))
                    .await
                {
                    Ok(r) => (Code::Ok, format!("{} posts", r.into_inner().posts.len())),
                    Err(s) => (s.code(), s.message().replace(&id, "<id>")),
                },
            ),
            (
                "SetReadMarker",
                masked(
                    self.feeds
                        .set_read_marker(with_token(
                            pb::SetReadMarkerRequest {
                                reader_id: me,
                                post_id: post,
                            },
                            tok,
                        ))
                        .await,
                    &id,
                ),
            ),
        ]
    }

    /// Every RPC that names another user, as `me`, on `user` (with `handle`).
    async fn user_probes(
        &mut self,
        me: u64,
        tok: &str,
        user: u64,
        handle: &str,
    ) -> Vec<(&'static str, (Code, String))> {
        let id = user.to_string();
        let list = |user_id| pb::ListUsersRequest {
            user_id,
            page_size: 10,
            cursor: String::new(),
        };
        vec![
            (
                "GetUser",
                masked(
                    self.users
                        .get_user(with_token(pb::GetUserRequest { user_id: user }, tok))
                        .await,
                    &id,
                ),
            ),
            (
                "GetUserByHandle",
                masked(
                    self.users
                        .get_user_by_handle(with_token(pb::GetUserByHandleRequest { handle: handle.into() }, tok))
                        .await,
                    &format!("{handle:?}"),
                ),
            ),
            (
                "ListFollowers",
                masked(self.users.list_followers(with_token(list(user), tok)).await, &id),
            ),
            (
                "ListFollowing",
                masked(self.users.list_following(with_token(list(user), tok)).await, &id),
            ),
            (
                "ListAuthorPosts",
                masked(
                    self.posts
                        .list_author_posts(with_token(
                            pb::ListAuthorPostsRequest {
                                user_id: me,
                                author_id: user,
                                page_size: 10,
                                cursor: String::new(),
                            },
                            tok,
                        ))
                        .await,
                    &id,
                ),
            ),
            (
                "Follow",
                masked(
                    self.users
                        .follow(with_token(
                            pb::RelationRequest {
                                user_id: me,
                                target_id: user,
                            },
                            tok,
                        ))
                        .await,
                    &id,
                ),
            ),
        ]
    }
}

async fn publish(c: &mut Clients, author: u64, tok: &str, text: &str) -> u64 {
    c.posts
        .publish(with_token(
            pb::PublishRequest {
                author_id: author,
                content_type: pb::ContentType::Text as i32,
                text: text.into(),
                ..Default::default()
            },
            tok,
        ))
        .await
        .unwrap()
        .into_inner()
        .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invisible_posts_and_users_answer_like_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |_| {}).await;
    let ch = channel(&s).await;
    let mut c = Clients::new(&ch);
    let (private, private_t) = signup(&ch, "private").await;
    let (blocker, blocker_t) = signup(&ch, "blocker").await;
    let (stranger, stranger_t) = signup(&ch, "stranger").await;
    c.set_private(private, &private_t).await;
    let hidden = publish(&mut c, private, &private_t, "only for approved followers").await;
    let blocked_view = publish(&mut c, blocker, &blocker_t, "public, but not for the stranger").await;
    c.users
        .block(with_token(
            pb::RelationRequest {
                user_id: blocker,
                target_id: stranger,
            },
            &blocker_t,
        ))
        .await
        .unwrap();
    assert!(s.engine().wait_idle(std::time::Duration::from_secs(10)));
    let before = s.engine().data_checksum().unwrap();

    let missing = c.post_probes(stranger, &stranger_t, NOBODY).await;
    for post in [hidden, blocked_view] {
        let probed = c.post_probes(stranger, &stranger_t, post).await;
        for ((rpc, got), (_, want)) in probed.iter().zip(&missing) {
            // GetPosts answers a list: a post the caller may not see is left out, as a missing one.
            let expected = if *rpc == "GetPosts" { Code::Ok } else { Code::NotFound };
            assert_eq!(got.0, expected, "{rpc} on an invisible post: {got:?}");
            assert_eq!(got, want, "{rpc}: an invisible post answers unlike a missing one");
        }
    }
    let missing = c.user_probes(stranger, &stranger_t, NOBODY, "nobody_here").await;
    let probed = c.user_probes(stranger, &stranger_t, blocker, "blocker").await;
    for ((rpc, got), (_, want)) in probed.iter().zip(&missing) {
        assert_eq!(got.0, Code::NotFound, "{rpc} on a user who blocked the caller: {got:?}");
        assert_eq!(got, want, "{rpc}: a blocker answers unlike a missing user");
    }
    assert_eq!(
        s.engine().data_checksum().unwrap(),
        before,
        "a probe changed stored data"
    );

    // The author may delete their own post; someone who can see it but is not its author may not.
    let (reader, reader_t) = signup(&ch, "reader").await;
    let public = publish(&mut c, blocker, &blocker_t, "visible to the reader").await;
    let e = c
        .posts
        .delete_post(with_token(
            pb::DeletePostRequest {
                user_id: reader,
                post_id: public,
            },
            &reader_t,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(!e.message().contains("belongs to"), "names the author: {}", e.message());
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_lists_are_for_approved_followers_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |_| {}).await;
    let ch = channel(&s).await;
    let mut c = Clients::new(&ch);
    let (owner, owner_t) = signup(&ch, "owner").await;
    let (fan, fan_t) = signup(&ch, "fan").await;
    let (stranger, stranger_t) = signup(&ch, "stranger").await;
    c.set_private(owner, &owner_t).await;
    c.users
        .follow(with_token(
            pb::RelationRequest {
                user_id: fan,
                target_id: owner,
            },
            &fan_t,
        ))
        .await
        .unwrap();
    c.users
        .approve_follower(with_token(
            pb::RelationRequest {
                user_id: owner,
                target_id: fan,
            },
            &owner_t,
        ))
        .await
        .unwrap();
    c.users
        .follow(with_token(
            pb::RelationRequest {
                user_id: owner,
                target_id: stranger,
            },
            &owner_t,
        ))
        .await
        .unwrap();
    let list = |user_id| pb::ListUsersRequest {
        user_id,
        page_size: 10,
        cursor: String::new(),
    };
    for (who, tok) in [
        ("the owner", &owner_t),
        ("an approved follower", &fan_t),
        ("the admin", &s.admin_token),
    ] {
        let f = c
            .users
            .list_followers(with_token(list(owner), tok))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(f.user_ids, vec![fan], "{who} sees the followers");
        let g = c
            .users
            .list_following(with_token(list(owner), tok))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(g.user_ids, vec![stranger], "{who} sees the follows");
    }
    let e = c
        .users
        .list_followers(with_token(list(owner), &stranger_t))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = c
        .users
        .list_following(with_token(list(owner), &stranger_t))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // A public account's lists are open to everyone but a user it blocked.
    let f = c
        .users
        .list_followers(with_token(list(fan), &stranger_t))
        .await
        .unwrap();
    assert!(f.into_inner().user_ids.is_empty());
    c.users
        .block(with_token(
            pb::RelationRequest {
                user_id: fan,
                target_id: stranger,
            },
            &fan_t,
        ))
        .await
        .unwrap();
    let e = c
        .users
        .list_following(with_token(list(fan), &stranger_t))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    s.shutdown().await.unwrap();
}
