//! Overload and slow consumers against the real server: far more concurrent publishes than the
//! in-flight cap sheds with RESOURCE_EXHAUSTED quickly, health keeps answering, throughput
//! recovers when the load drops, and no acknowledged write is lost; subscribers that never read
//! neither slow fanout nor grow memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{channel, signup, start, with_token};
use feedline_proto::v1 as pb;
use feedline_proto::v1::feed_service_client::FeedServiceClient;
use feedline_proto::v1::post_service_client::PostServiceClient;
use feedline_proto::v1::user_service_client::UserServiceClient;
use tonic::Code;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_fast_and_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |c| c.limits.max_in_flight = 4).await;
    let ch = channel(&s).await;
    let mut users = UserServiceClient::new(ch.clone());
    let (author, token) = signup(&ch, "author").await;

    let ok = Arc::new(AtomicU64::new(0));
    let shed = Arc::new(AtomicU64::new(0));
    let slowest_shed_us = Arc::new(AtomicU64::new(0));
    let rss_before = rss_kib();
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (ch, token, ok, shed, slowest) = (
            ch.clone(),
            token.clone(),
            ok.clone(),
            shed.clone(),
            slowest_shed_us.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut c = PostServiceClient::new(ch);
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let req = pb::PublishRequest {
                    author_id: author,
                    content_type: 1,
                    text: "load".into(),
                    ..Default::default()
                };
                match c.publish(with_token(req, &token)).await {
                    Ok(_) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.code() == Code::ResourceExhausted => {
                        shed.fetch_add(1, Ordering::Relaxed);
                        slowest.fetch_max(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
                    }
                    Err(e) => panic!("unexpected status under load: {e:?}"),
                }
            }
        }));
    }
    // Health answers while the service is overloaded.
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let t0 = Instant::now();
    let h = health
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        h.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let health_ms = t0.elapsed().as_millis();
    for t in tasks {
        t.await.unwrap();
    }
    let (ok_n, shed_n) = (ok.load(Ordering::Relaxed), shed.load(Ordering::Relaxed));
    assert!(shed_n > 0, "64 concurrent publishers against a cap of 4 must be shed");
    assert!(ok_n > 0, "some publishes still succeed under overload");
    let slowest = slowest_shed_us.load(Ordering::Relaxed);
    assert!(
        slowest < 1_000_000,
        "a shed call waited {slowest} µs: load is queued, not shed"
    );
    assert!(health_ms < 2_000, "health took {health_ms} ms under load");

    // Recovery: sequential calls all succeed once the load is gone.
    let mut posts = PostServiceClient::new(ch.clone());
    for _ in 0..20 {
        let req = pb::PublishRequest {
            author_id: author,
            content_type: 1,
            text: "after".into(),
            ..Default::default()
        };
        posts
            .publish(with_token(req, &token))
            .await
            .expect("served after the load drops");
    }
    let u = users
        .get_user(with_token(pb::GetUserRequest { user_id: author }, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        u.posts,
        ok_n + 20,
        "every acknowledged publish is stored, no refused one is"
    );
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 256 * 1024, "memory grew by {grown} KiB under load");
    eprintln!(
        "overload: {ok_n} served, {shed_n} shed (slowest refusal {slowest} µs), health in {health_ms} ms, RSS +{grown} KiB"
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_that_never_read_do_not_hold_back_fanout() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |c| {
        c.limits.subscriber_buffer = 8;
        c.engine.policy.kind = feed_engine::PolicyKind::AlwaysPush;
    })
    .await;
    let ch = channel(&s).await;
    let mut users = UserServiceClient::new(ch.clone());
    let mut feeds = FeedServiceClient::new(ch.clone());
    let (author, at) = signup(&ch, "author").await;
    // The lazy subscribers are other clients: their own connection, which their unread streams
    // may get torn down (h2 protects itself from a peer that never reads).
    let lazy_ch = channel(&s).await;
    let mut lazy = FeedServiceClient::new(lazy_ch);
    let mut streams = Vec::new();
    let mut readers = Vec::new();
    for i in 0..50 {
        let r = users
            .create_user(pb::CreateUserRequest {
                handle: format!("lazy{i}"),
                private: false,
            })
            .await
            .unwrap()
            .into_inner();
        let (id, t) = (r.user.unwrap().id, r.token);
        users
            .follow(with_token(
                pb::RelationRequest {
                    user_id: id,
                    target_id: author,
                },
                &t,
            ))
            .await
            .unwrap();
        streams.push(
            lazy.subscribe_home_feed(with_token(pb::SubscribeHomeFeedRequest { reader_id: id }, &t))
                .await
                .unwrap()
                .into_inner(),
        );
        readers.push((id, t));
    }
    let rss_before = rss_kib();
    let mut posts = PostServiceClient::new(ch.clone());
    let t0 = Instant::now();
    for i in 0..300 {
        let req = pb::PublishRequest {
            author_id: author,
            content_type: 1,
            text: format!("p{i}"),
            ..Default::default()
        };
        posts.publish(with_token(req, &at)).await.unwrap();
    }
    assert!(
        s.engine().wait_idle(Duration::from_secs(30)),
        "fanout stalled behind lazy subscribers"
    );
    let took = t0.elapsed();
    let (id, t) = &readers[17];
    let page = feeds
        .get_home_feed(with_token(
            pb::GetHomeFeedRequest {
                reader_id: *id,
                page_size: 100,
                cursor: String::new(),
                ..Default::default()
            },
            t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.posts.len(), 100, "fanout reached the lazy subscribers' feeds");
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 128 * 1024,
        "memory grew by {grown} KiB with 50 lazy subscribers"
    );
    eprintln!("slow consumers: 50 lazy subscribers, 300 posts fanned out in {took:?}, RSS +{grown} KiB");
    drop(streams);
    s.shutdown().await.unwrap();
}
