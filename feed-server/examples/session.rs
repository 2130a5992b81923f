//! A short session against a running server: two users sign up, one follows the other, the other
//! posts, the follower reads their home feed.
//!
//! `cargo run --release -p feed-server --example session -- [http://127.0.0.1:50051]`

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use feedline_proto::v1 as pb;
use feedline_proto::v1::feed_service_client::FeedServiceClient;
use feedline_proto::v1::post_service_client::PostServiceClient;
use feedline_proto::v1::user_service_client::UserServiceClient;
use tonic::Request;
use tonic::transport::Channel;

fn as_user<T>(token: &str, msg: T) -> anyhow::Result<Request<T>> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(r)
}

async fn signup(users: &mut UserServiceClient<Channel>, handle: &str) -> anyhow::Result<(u64, String)> {
    let r = users
        .create_user(pb::CreateUserRequest {
            handle: handle.into(),
            private: false,
        })
        .await?
        .into_inner();
    let u = r.user.ok_or_else(|| anyhow::anyhow!("no user in the answer"))?;
    println!("created user {} ({}), token {}…", u.handle, u.id, &r.token[..16]);
    Ok((u.id, r.token))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let ch = Channel::from_shared(addr)?.connect().await?;
    let (mut users, mut posts, mut feeds) = (
        UserServiceClient::new(ch.clone()),
        PostServiceClient::new(ch.clone()),
        FeedServiceClient::new(ch),
    );
    // Handles are unique; a suffix lets the session run more than once against one data dir.
    let tag = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() % 1_000_000;
    let (alice, alice_token) = signup(&mut users, &format!("alice_{tag}")).await?;
    let (bob, bob_token) = signup(&mut users, &format!("bob_{tag}")).await?;

    users
        .follow(as_user(
            &bob_token,
            pb::RelationRequest {
                user_id: bob,
                target_id: alice,
            },
        )?)
        .await?;
    println!("bob follows alice");
    let req = pb::PublishRequest {
        author_id: alice,
        content_type: pb::ContentType::Text as i32,
        text: "hello, feed".into(),
        ..Default::default()
    };
    let post = posts.publish(as_user(&alice_token, req)?).await?.into_inner();
    println!("alice published post {}", post.id);

    // Fanout is asynchronous (milliseconds): read until the post is there, for at most 5 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let req = pb::GetHomeFeedRequest {
            reader_id: bob,
            page_size: 20,
            cursor: String::new(),
            ..Default::default()
        };
        let page = feeds.get_home_feed(as_user(&bob_token, req)?).await?.into_inner();
        if page.posts.iter().any(|p| p.id == post.id) {
            println!(
                "bob's home feed ({:?}):",
                pb::FeedSource::try_from(page.source).unwrap_or_default()
            );
            for p in &page.posts {
                println!(
                    "  post {} by user {}: {:?} (score {:.2})",
                    p.id, p.author_id, p.text, p.score
                );
            }
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the post did not reach bob's feed within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
