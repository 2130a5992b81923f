//! The calls the cluster tests make through a node of a [`TestCluster`]: sign-up, follow,
//! publish, a whole home feed, a profile, a node's `/metrics` (when started with them), and the
//! waits the scenarios end with (a feed holding exactly the acknowledged posts, replicas agreeing).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use feedline_proto::v1 as pb;
use pb::feed_service_client::FeedServiceClient;
use pb::post_service_client::PostServiceClient;
use pb::user_service_client::UserServiceClient;
use tonic::Status;

use super::cluster::{TestCluster, wait_for};

impl TestCluster {
    /// Signs a user up through node `i`, asking again (within the tests' deadline) while the
    /// node answers `UNAVAILABLE` — nothing stored, retry: with a suspicion time of 2 s, a node
    /// slowed on this 2-core box may be declared down and be rejoining.
    pub async fn create_user(&self, i: usize, handle: &str) -> u64 {
        let mut c = UserServiceClient::new(self.channel(i).await);
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let r = c
                .create_user(self.req(pb::CreateUserRequest {
                    handle: handle.into(),
                    private: false,
                }))
                .await;
            match r {
                Ok(r) => return r.into_inner().user.unwrap().id,
                Err(e) if e.code() == tonic::Code::Unavailable && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("create {handle} on node {i}: {e}"),
            }
        }
    }

    /// `a` follows `b`, asked through node `i`.
    pub async fn follow(&self, i: usize, a: u64, b: u64) -> Result<(), Status> {
        let mut c = UserServiceClient::new(self.channel(i).await);
        c.follow(self.req(pb::RelationRequest {
            user_id: a,
            target_id: b,
        }))
        .await
        .map(|_| ())
    }

    /// `a` unfollows `b`, asked through node `i`.
    pub async fn unfollow(&self, i: usize, a: u64, b: u64) -> Result<(), Status> {
        let mut c = UserServiceClient::new(self.channel(i).await);
        c.unfollow(self.req(pb::RelationRequest {
            user_id: a,
            target_id: b,
        }))
        .await
        .map(|_| ())
    }

    /// `a` blocks `b`, asked through node `i`.
    pub async fn block(&self, i: usize, a: u64, b: u64) -> Result<(), Status> {
        let mut c = UserServiceClient::new(self.channel(i).await);
        c.block(self.req(pb::RelationRequest {
            user_id: a,
            target_id: b,
        }))
        .await
        .map(|_| ())
    }

    /// `author` deletes `post`, asked through node `i`.
    pub async fn delete_post(&self, i: usize, author: u64, post: u64) -> Result<(), Status> {
        let mut c = PostServiceClient::new(self.channel(i).await);
        c.delete_post(self.req(pb::DeletePostRequest {
            user_id: author,
            post_id: post,
        }))
        .await
        .map(|_| ())
    }

    /// Publishes a text post by `author` through node `i`; the post id once acknowledged.
    pub async fn publish(&self, i: usize, author: u64, text: &str) -> Result<u64, Status> {
        let mut c = PostServiceClient::new(self.channel(i).await);
        c.publish(self.req(pb::PublishRequest {
            author_id: author,
            content_type: pb::ContentType::Text as i32,
            text: text.into(),
            ..Default::default()
        }))
        .await
        .map(|r| r.into_inner().id)
    }

    /// Every post id of `reader`'s home feed, paged through node `i` (a reader who follows
    /// nobody gets the labelled discovery feed instead: that counts as an empty home feed).
    pub async fn feed(&self, i: usize, reader: u64) -> Result<Vec<u64>, Status> {
        let mut c = FeedServiceClient::new(self.channel(i).await);
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let p = c
                .get_home_feed(self.req(pb::GetHomeFeedRequest {
                    reader_id: reader,
                    page_size: 100,
                    cursor: cursor.clone(),
                    ..Default::default()
                }))
                .await?
                .into_inner();
            if p.source == pb::FeedSource::Discovery as i32 {
                return Ok(out);
            }
            out.extend(p.posts.iter().map(|p| p.id));
            if p.next_cursor.is_empty() || p.posts.is_empty() {
                return Ok(out);
            }
            cursor = p.next_cursor;
        }
    }

    /// Whom `user` follows (with `followers`: who follows them), the first 100, through node `i`.
    pub async fn follow_list(&self, i: usize, user: u64, followers: bool) -> Result<Vec<u64>, Status> {
        let mut c = UserServiceClient::new(self.channel(i).await);
        let req = self.req(pb::ListUsersRequest {
            user_id: user,
            page_size: 100,
            cursor: String::new(),
        });
        let page = if followers {
            c.list_followers(req).await?
        } else {
            c.list_following(req).await?
        };
        Ok(page.into_inner().user_ids)
    }

    /// A user's profile through node `i`.
    pub async fn user(&self, i: usize, id: u64) -> Result<pb::User, Status> {
        let mut c = UserServiceClient::new(self.channel(i).await);
        c.get_user(self.req(pb::GetUserRequest { user_id: id }))
            .await
            .map(|r| r.into_inner())
    }

    /// `user` likes `post`, asked through node `i`; whether it changed anything.
    pub async fn like(&self, i: usize, user: u64, post: u64) -> Result<bool, Status> {
        let mut c = pb::engagement_service_client::EngagementServiceClient::new(self.channel(i).await);
        c.like(self.req(pb::PostActionRequest {
            user_id: user,
            post_id: post,
        }))
        .await
        .map(|r| r.into_inner().changed)
    }

    /// `user` comments `text` on `post`, asked through node `i`; the comment's id.
    pub async fn comment(&self, i: usize, user: u64, post: u64, text: String) -> Result<u64, Status> {
        let mut c = pb::engagement_service_client::EngagementServiceClient::new(self.channel(i).await);
        c.add_comment(self.req(pb::AddCommentRequest {
            user_id: user,
            post_id: post,
            parent_id: 0,
            text,
        }))
        .await
        .map(|r| r.into_inner().id)
    }

    /// Who likes `post` (the first 100) and its like count, as `viewer` sees them through node
    /// `i`.
    pub async fn likes(&self, i: usize, viewer: u64, post: u64) -> Result<(Vec<u64>, u64), Status> {
        let mut e = pb::engagement_service_client::EngagementServiceClient::new(self.channel(i).await);
        let likers = e
            .list_likers(self.req(pb::ListLikersRequest {
                user_id: viewer,
                post_id: post,
                page_size: 100,
                cursor: String::new(),
            }))
            .await?
            .into_inner()
            .user_ids;
        Ok((likers, self.post(i, viewer, post).await?.like_count))
    }

    /// The top-level comments on `post` (the first 100) and its comment count, as `viewer` sees
    /// them through node `i`.
    pub async fn comments(&self, i: usize, viewer: u64, post: u64) -> Result<(Vec<u64>, u64), Status> {
        let mut e = pb::engagement_service_client::EngagementServiceClient::new(self.channel(i).await);
        let ids = e
            .list_comments(self.req(pb::ListCommentsRequest {
                user_id: viewer,
                post_id: post,
                parent_id: 0,
                page_size: 100,
                cursor: String::new(),
            }))
            .await?
            .into_inner()
            .comments
            .iter()
            .map(|c| c.id)
            .collect();
        Ok((ids, self.post(i, viewer, post).await?.comment_count))
    }

    /// `post` with its counts, as `viewer` sees it through node `i`.
    pub async fn post(&self, i: usize, viewer: u64, post: u64) -> Result<pb::Post, Status> {
        let mut p = PostServiceClient::new(self.channel(i).await);
        p.get_post(self.req(pb::GetPostRequest {
            user_id: viewer,
            post_id: post,
        }))
        .await
        .map(|r| r.into_inner())
    }

    /// Node `i`'s Prometheus text (the cluster must have been started with metrics). A node
    /// that does not answer fails the test with its log (it may have stopped itself).
    pub fn scrape(&self, i: usize) -> String {
        let node = &self.nodes[i];
        super::try_scrape(node.metrics.expect("started with metrics"))
            .unwrap_or_else(|e| panic!("node {i} did not answer /metrics ({e}); {}", node.log_excerpt()))
    }
}

/// The sum of every sample of metric `name` whose labels contain `with` (all when empty).
pub fn metric_sum(text: &str, name: &str, with: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| with.is_empty() || l.contains(with))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

/// How long the cluster tests wait for a condition.
pub const WAIT: Duration = Duration::from_secs(30);

/// Waits until `reader`'s feed (read through node `via`) holds exactly `want` among `scope` —
/// every wanted post once, no other post of `scope` — and holds no duplicate at all.
pub async fn wait_feed(c: &TestCluster, via: usize, reader: u64, scope: &BTreeSet<u64>, want: &BTreeSet<u64>) {
    let what = format!(
        "reader {reader}'s feed via node {via} to hold exactly {} posts",
        want.len()
    );
    let mut last = Vec::new();
    let mut missing = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(feed) = c.feed(via, reader).await {
            let set: BTreeSet<u64> = feed.iter().copied().collect();
            assert_eq!(
                set.len(),
                feed.len(),
                "duplicate entries in reader {reader}'s feed: {feed:?}"
            );
            let seen: BTreeSet<u64> = set.intersection(scope).copied().collect();
            if &seen == want {
                return;
            }
            missing = want.difference(&seen).copied().collect();
            last = feed;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; missing {missing:?}; last feed {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every node's replica reports the same number of posts for `author`, within `range`: every
/// acknowledged post once, plus at most the writes whose answer was lost (in the log, applied,
/// but the client saw an error).
pub async fn wait_post_count(c: &TestCluster, nodes: &[usize], author: u64, range: std::ops::RangeInclusive<u64>) {
    let what = format!("nodes {nodes:?} to agree on {author}'s post count within {range:?}");
    wait_for(&what, WAIT, || {
        let range = range.clone();
        async move {
            let mut counts = BTreeSet::new();
            for &i in nodes {
                counts.insert(c.user(i, author).await.ok()?.posts);
            }
            (counts.len() == 1 && range.contains(counts.first()?)).then_some(())
        }
    })
    .await;
}
