//! Fixtures shared by feedline's criterion benchmarks: engines in temp dirs and social graphs
//! built with the bulk-load API, outside the timed loops.

use std::path::Path;
use std::time::Duration;

use feed_engine::{Engine, EngineConfig, NewPost, PolicyKind, UserId};

/// An engine in `dir` with the production defaults (256 MiB block cache, 32 MiB memtables) and
/// the always-push policy, then `tweak`ed.
pub fn engine(dir: &Path, tweak: impl FnOnce(&mut EngineConfig)) -> Engine {
    let mut cfg = EngineConfig {
        data_dir: dir.join("db"),
        ..Default::default()
    };
    cfg.policy.kind = PolicyKind::AlwaysPush;
    tweak(&mut cfg);
    Engine::open(cfg).expect("open engine")
}

/// Creates `n` users named `{prefix}{i}`; returns their ids.
pub fn users(e: &Engine, prefix: &str, n: usize) -> Vec<UserId> {
    let handles: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    e.create_users(&handles).expect("create users")
}

/// An author followed by `n` new users; returns the author's id.
pub fn author_with_followers(e: &Engine, name: &str, n: usize) -> UserId {
    let author = e.create_user(name, false).expect("author").id;
    let fans = users(e, &format!("{name}_f"), n);
    let edges: Vec<(UserId, UserId)> = fans.iter().map(|&f| (f, author)).collect();
    assert_eq!(e.follow_many(&edges).expect("follow"), n);
    author
}

/// `n` readers named `{prefix}{i}`, each following `per_reader` of `authors` (a sliding
/// window, so every author has readers).
pub fn readers_of(e: &Engine, prefix: &str, n: usize, authors: &[UserId], per_reader: usize) -> Vec<UserId> {
    let r = users(e, prefix, n);
    let mut edges = Vec::with_capacity(n * per_reader);
    for (i, &x) in r.iter().enumerate() {
        for j in 0..per_reader {
            edges.push((x, authors[(i * 7 + j) % authors.len()]));
        }
    }
    e.follow_many(&edges).expect("follow");
    r
}

/// `rounds` posts by every author, each round delivered before the next.
pub fn post_rounds(e: &Engine, authors: &[UserId], rounds: usize) {
    for round in 0..rounds {
        for &a in authors {
            e.publish(
                a,
                NewPost::text(format!("post {round} by {a}, with some words to weigh it")),
            )
            .expect("publish");
        }
        // Keeps the fanout backlog under its cap while the fixture is built.
        assert!(e.wait_idle(Duration::from_secs(600)));
    }
}

/// Runs `iters` calls of `op(thread, i)` spread over `threads` threads; the wall time they took.
pub fn concurrently(iters: u64, threads: usize, op: impl Fn(usize, u64) + Sync) -> Duration {
    let per = iters.div_ceil(threads as u64);
    let t0 = std::time::Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let op = &op;
            s.spawn(move || {
                for i in 0..per {
                    op(t, i);
                }
            });
        }
    });
    t0.elapsed()
}
