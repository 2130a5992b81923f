//! Fanout lag by audience size, and the first read of a returning dormant reader.
//!
//! 1. For audiences of 1,000 / 100,000 / 1,000,000 push followers (celebrity threshold raised so
//!    the post is really pushed): time from `publish` returning (the ack) to the last follower's
//!    delivery being durable (`wait_idle`), best and median of `ROUNDS` posts.
//! 2. A reader following 1,000 authors (10 posts each) who has been away 30 days: latency of the
//!    first page (served by pull while the timeline is rebuilt in the background), then of the
//!    next read, with both pages checked equal.
//!
//! `cargo run --release -p feedline-benches --example fanout_lag -- [MAX_AUDIENCE]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use feed_engine::{Engine, EngineConfig, ManualClock, NewPost, PolicyKind};
use feedline_benches::{author_with_followers, engine, users};

const ROUNDS: usize = 5;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn audience(n: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let e = engine(dir.path(), |c| {
        c.celebrity_followers = u64::MAX;
        c.hot_page_entries = 0;
    });
    let t0 = Instant::now();
    let author = author_with_followers(&e, "author", n);
    let built = t0.elapsed();
    let mut lags = Vec::new();
    for i in 0..ROUNDS {
        e.publish(author, NewPost::text(format!("post {i}"))).expect("publish");
        let acked = Instant::now();
        assert!(e.wait_idle(Duration::from_secs(600)), "fanout did not finish");
        lags.push(acked.elapsed());
    }
    lags.sort();
    println!(
        "audience {n:>9}: ack → last follower durable: best {:>8.1} ms, median {:>8.1} ms ({:.0} deliveries/s); graph built in {:.1} s",
        ms(lags[0]),
        ms(lags[ROUNDS / 2]),
        n as f64 / lags[ROUNDS / 2].as_secs_f64(),
        built.as_secs_f64()
    );
}

fn returning_reader() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(1_793_491_200_000));
    let mut cfg = EngineConfig {
        data_dir: dir.path().join("db"),
        ..Default::default()
    };
    cfg.policy.kind = PolicyKind::CostBased;
    // Every read assembles (no cached first pages), so both latencies are of real work.
    cfg.hot_page_entries = 0;
    let e = Engine::open_with_clock(cfg, clock.clone()).expect("open");
    let reader = e.create_user("reader", false).expect("reader").id;
    let authors = users(&e, "a", 1000);
    let edges: Vec<_> = authors.iter().map(|&a| (reader, a)).collect();
    e.follow_many(&edges).expect("follow");
    e.home_feed(reader, 20, None).expect("first read ever");
    // Away for 30 days; meanwhile every author posts 10 times (1 h apart per round).
    clock.advance(30 * 86_400_000);
    for round in 0..10 {
        for &a in &authors {
            e.publish(a, NewPost::text(format!("{round}"))).expect("publish");
        }
        clock.advance(3_600_000);
        assert!(e.wait_idle(Duration::from_secs(600)));
    }
    let t0 = Instant::now();
    let first = e.home_feed(reader, 20, None).expect("returning read");
    let first_took = t0.elapsed();
    assert!(e.wait_idle(Duration::from_secs(600)), "background work did not finish");
    let t1 = Instant::now();
    let after = e.home_feed(reader, 20, None).expect("read after rebuild");
    let after_took = t1.elapsed();
    let ids = |p: &feed_engine::FeedPage| p.items.iter().map(|i| i.post.id).collect::<Vec<_>>();
    assert_eq!(ids(&first), ids(&after), "the first page equals the next one");
    assert_eq!(first.items.len(), 20);
    println!(
        "returning reader, 1,000 followees, 10,000 posts in the window: first page {:.2} ms ({:?} path), next read once background work is done {:.3} ms ({:?} path), pages equal",
        ms(first_took),
        first.path,
        ms(after_took),
        after.path
    );
}

fn main() {
    let max: usize = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().expect("a number"));
    for n in [1_000, 100_000, 1_000_000].into_iter().filter(|&n| n <= max) {
        audience(n);
    }
    returning_reader();
}
