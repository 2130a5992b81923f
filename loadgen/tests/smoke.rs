//! The smoke preset against both targets — the engine in-process and a real feed-server on
//! 127.0.0.1 — checking that the report counts what was sent and that the data it wrote reads back.

use std::time::Duration;

use feed_server::Server;
use feed_server::config::ServerConfig;
use loadgen::driver::{self, LagMisses, RunSpec};
use loadgen::postgres_peer::PostgresPeer;
use loadgen::report::Report;
use loadgen::target::{Edge, Published, Target};
use loadgen::workload::PopulationSpec;

fn smoke() -> RunSpec {
    RunSpec {
        population: PopulationSpec {
            users: 100,
            mean_following: 8,
            zipf_s: 1.1,
            seed: 9,
        },
        read_rate: 1_000.0,
        post_rate: 100.0,
        graph_rate: 6.0,
        like_rate: 200.0,
        comment_rate: 20.0,
        ranker: None,
        notify_probes: 0,
        duration: Duration::from_millis(1500),
        warmup: Duration::from_millis(200),
        page: 20,
        batch: 1,
        max_in_flight: 256,
        read_threads: 0,
        lag_sample_every: 5,
        post_text_bytes: 0,
        lag_timeout: Duration::from_secs(5),
    }
}

/// Counts must match the schedule: rate × duration operations issued, each either ok or an error.
fn check_counts(r: &Report) {
    let secs = r.spec.duration.as_secs_f64();
    for (name, o) in &r.ops {
        let expected = (o.target_rate * secs).round() as i64;
        // Ops due in the window, plus any warm-up op the generator sent only after it began
        // (an fsynced write's queue at the boundary: up to 5 % more).
        let sent = o.sent as i64;
        assert!(
            sent >= expected - 2.max(expected / 100) && sent <= expected + 2.max(expected / 20),
            "{name}: sent {} of {expected} scheduled",
            o.sent
        );
        assert_eq!(o.unsent, 0, "{name}: everything scheduled was sent at smoke rates");
        assert_eq!(
            o.ok + o.errors.values().sum::<u64>(),
            o.sent,
            "{name}: every op is counted once"
        );
        if o.sent > 0 {
            assert!(
                o.latency_us.p50 > 0 && o.latency_us.max >= o.latency_us.p99,
                "{name}: latencies recorded"
            );
        }
    }
    let reads = &r.ops["read"];
    assert_eq!(
        reads.ok, reads.sent,
        "no read failed at smoke rates: {:?}",
        reads.errors
    );
    if r.ops["like"].target_rate > 0.0 {
        let likes = &r.ops["like"];
        assert!(
            likes.sent > 0 && likes.ok * 10 >= likes.sent * 9,
            "likes: {:?}",
            likes.errors
        );
    }
    assert!(r.fanout_lag_samples > 0, "fanout lag was sampled");
    assert_eq!(
        r.fanout_lag_misses,
        LagMisses::default(),
        "every probed post showed in its follower's feed"
    );
}

async fn written_posts_read_back(target: &Target, loaded_ids: &[u64]) {
    // The most followed user's followers see posts: some reader's first page is not empty.
    let mut any = false;
    for &u in loaded_ids.iter().take(50) {
        if !target.read(u, 20, None).await.expect("read back").is_empty() {
            any = true;
            break;
        }
    }
    assert!(any, "the posts the load wrote are readable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let engine = feed_engine::Engine::open(feed_engine::EngineConfig::tmp(dir.path().join("db"))).unwrap();
    let target = Target::InProcess(engine.clone());
    let spec = smoke();
    let loaded = driver::bulk_load(&target, &spec.population, 32, false).await.unwrap();
    assert_eq!(
        engine.get_user(loaded.ids[0]).unwrap().followers as usize,
        loaded.population.followers[0].len()
    );
    let ids = loaded.ids.clone();
    let spec = RunSpec {
        notify_probes: 2,
        ..spec
    };
    let report = driver::run(target.clone(), loaded.clone(), spec).await.unwrap();
    check_counts(&report);
    // In-process, the probes listen through the engine's notification listener.
    assert!(
        report.notify_samples > 10,
        "in-process probes measured: {}",
        report.notify_samples
    );
    assert_eq!(report.notify_missed, 0, "every probed like's notification arrived");
    written_posts_read_back(&target, &ids).await;
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("\"achieved_rate\"") && json.contains("\"fanout_lag_us\""));
    // The curve runs from the median to the maximum, never decreasing.
    let curve = &report.ops["read"].curve;
    assert_eq!(curve.last().map(|c| c.1), Some(report.ops["read"].latency_us.max));
    assert!(curve.windows(2).all(|w| w[0].1 <= w[1].1), "{curve:?}");
    // The chart and the side-by-side table of two runs.
    let svg = dir.path().join("latency.svg");
    let runs = vec![("first".to_string(), &report), ("second".to_string(), &report)];
    loadgen::plot::latency_svg(&svg, "smoke", &runs).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("first read") && text.contains("second publish"));
    assert!(text.matches("<polyline").count() >= 4, "one line per run and operation");
    // Each label is a text element's content, on a line of its own.
    let labels: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.starts_with('<')).collect();
    for tick in ["50%", "90%", "99%", "99.9%", "99.99%", "max"] {
        assert!(labels.contains(&tick), "percentile tick {tick} in {labels:?}");
    }
    assert!(
        labels.iter().any(|l| l.ends_with(" µs") || l.ends_with(" ms")),
        "latency in human units: {labels:?}"
    );
    assert!(
        labels.iter().all(|l| !l.contains(".0 µs") && !l.contains("68.37")),
        "no raw tick values: {labels:?}"
    );
    let table = loadgen::report::side_by_side(&runs);
    assert!(table.contains("second") && table.contains("(1.00×)"), "{table}");
    // Reads on pacing threads of their own (`--read-threads`): each of the two sends its half,
    // and every read is counted once, with its latency.
    let reads_only = RunSpec {
        read_threads: 2,
        post_rate: 0.0,
        graph_rate: 0.0,
        like_rate: 0.0,
        comment_rate: 0.0,
        ..smoke()
    };
    let own = driver::run(target.clone(), loaded, reads_only).await.unwrap();
    let r = &own.ops["read"];
    let expected = (r.target_rate * own.spec.duration.as_secs_f64()).round() as u64;
    assert!(r.sent.abs_diff(expected) <= 2, "reads: sent {} of {expected}", r.sent);
    assert_eq!((r.unsent, r.ok), (0, r.sent), "reads: {:?}", r.errors);
    assert!(r.latency_us.p50 > 0 && r.latency_us.max >= r.latency_us.p99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(ServerConfig::for_tests(dir.path().join("db")))
        .await
        .unwrap();
    // The server listed twice, as a cluster's nodes would be: calls alternate between them.
    let target = Target::grpc(&format!("grpc://{0},{0}", s.addr), &s.admin_token, None)
        .await
        .unwrap();
    let spec = RunSpec {
        batch: 10,
        notify_probes: 2,
        ..smoke()
    };
    let loaded = driver::bulk_load(&target, &spec.population, 32, false).await.unwrap();
    let ids = loaded.ids.clone();
    // A second load against the same server (same seed) signs up its own users.
    let again = driver::bulk_load(&target, &spec.population, 32, false)
        .await
        .expect("a second load against the same server");
    assert!(
        again.ids.iter().all(|i| !ids.contains(i)),
        "the second load has its own users"
    );
    let report = driver::run(target.clone(), loaded, spec).await.unwrap();
    check_counts(&report);
    assert!(
        report.notify_samples > 10,
        "notification probes ran: {}",
        report.notify_samples
    );
    assert_eq!(report.notify_missed, 0, "every probed like's notification arrived");
    written_posts_read_back(&target, &ids).await;
    let nodes = target.node_reports();
    assert_eq!(nodes.len(), 2, "one line per listed node");
    let (a, b) = (nodes[0].calls, nodes[1].calls);
    assert!(a > 100 && a.abs_diff(b) <= 1, "calls spread evenly: {a} and {b}");
    assert!(
        nodes
            .iter()
            .all(|n| n.errors == 0 && n.p50_us > 0 && n.p99_us >= n.p50_us)
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_max_ramps_until_the_bound_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let engine = feed_engine::Engine::open(feed_engine::EngineConfig::tmp(dir.path().join("db"))).unwrap();
    let target = Target::InProcess(engine);
    let spec = RunSpec {
        read_rate: 200.0,
        // Long enough that one slow last op (a flush) cannot pull a step under 95 % of its rate.
        duration: Duration::from_millis(1000),
        warmup: Duration::ZERO,
        ..smoke()
    };
    let loaded = driver::bulk_load(&target, &spec.population, 32, false).await.unwrap();
    // A 1 µs bound cannot hold: the first step fails and the ramp stops there.
    let steps = driver::find_max(
        target.clone(),
        loaded.clone(),
        spec.clone(),
        Duration::from_micros(1),
        2.0,
        5,
    )
    .await
    .unwrap();
    assert_eq!(steps.len(), 1);
    assert!(!steps[0].held);
    // A generous bound holds at these rates: the ramp doubles the rate each step.
    let steps = driver::find_max(target, loaded, spec, Duration::from_secs(10), 2.0, 3)
        .await
        .unwrap();
    assert_eq!(
        steps.iter().map(|s| s.read_rate).collect::<Vec<_>>(),
        vec![200.0, 400.0, 800.0]
    );
    assert!(
        steps.iter().all(|s| s.held),
        "{:?}",
        steps
            .iter()
            .map(|s| s.report.ops["read"].latency_us.p99)
            .collect::<Vec<_>>()
    );
}

/// The lag probe looks at any rank: a post below the first page is seen, a missing one is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seen_finds_a_post_below_the_first_page() {
    let dir = tempfile::tempdir().unwrap();
    let engine = feed_engine::Engine::open(feed_engine::EngineConfig::tmp(dir.path().join("db"))).unwrap();
    let target = Target::InProcess(engine);
    let author = target.create_user("seen_author".into()).await.unwrap();
    let reader = target.create_user("seen_reader".into()).await.unwrap();
    target.relate(Edge::Follow, reader, author).await.unwrap();
    let mut posts = Vec::new();
    for _ in 0..8 {
        posts.push(target.publish(author, 1, loadgen::target::POST_TEXT).await.unwrap());
    }
    let ids: Vec<u64> = posts.iter().map(|p| p.id).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while target.read(reader, 20, None).await.unwrap().len() < ids.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "the posts never reached the reader"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first_page = target.read(reader, 5, None).await.unwrap();
    assert!(
        !first_page.contains(&ids[0]),
        "the oldest post ranks below a 5-entry page"
    );
    assert!(target.seen(reader, posts[0]).await.unwrap(), "seen at any rank");
    let missing = Published {
        id: ids[7] + 1_000_000,
        ..posts[7]
    };
    assert!(!target.seen(reader, missing).await.unwrap(), "a post that is not there");
    // Someone who follows the reader, not the author, does not have it.
    let other = target.create_user("seen_other".into()).await.unwrap();
    target.relate(Edge::Follow, other, reader).await.unwrap();
    assert!(
        !target.seen(other, posts[0]).await.unwrap(),
        "not in a non-follower's feed"
    );
}

/// A PostgreSQL started by `scripts/postgres` on a free loopback port in its own folder,
/// stopped when dropped (pass or panic).
struct Postgres {
    port: u16,
    dir: tempfile::TempDir,
    url: String,
}

impl Postgres {
    fn script() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres")
    }

    fn start() -> Postgres {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(Self::script())
            .args(["start", &port.to_string()])
            .env("FEEDLINE_PG_DIR", dir.path().join("pg"))
            .output()
            .unwrap();
        let pg = Postgres {
            port,
            url: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            dir,
        };
        assert!(
            out.status.success() && pg.url.starts_with("postgres://"),
            "scripts/postgres failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Self::script())
            .args(["stop", &self.port.to_string()])
            .env("FEEDLINE_PG_DIR", self.dir.path().join("pg"))
            .output();
    }
}

/// The spec's design on a real PostgreSQL: the smoke workload runs without errors, every probed
/// post shows, and the cleanup keeps each follower's own top 1,000 (the spec's `LIMIT` would
/// have cut the feeds to 1,000 entries together).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_peer_runs_the_smoke_load_and_trims_per_follower() {
    let pg = Postgres::start();
    let peer = PostgresPeer::connect(&pg.url).await.unwrap();
    let target = Target::Postgres(peer.clone());
    let spec = smoke();
    let loaded = driver::bulk_load(&target, &spec.population, 32, false).await.unwrap();
    let ids = loaded.ids.clone();
    let report = driver::run(target.clone(), loaded, spec).await.unwrap();
    check_counts(&report);
    written_posts_read_back(&target, &ids).await;
    for (op, o) in &report.ops {
        assert!(o.errors.is_empty(), "{op}: {:?}", o.errors);
    }

    let author = target.create_user("trim_author".into()).await.unwrap();
    let followers = [
        target.create_user("trim_f1".into()).await.unwrap(),
        target.create_user("trim_f2".into()).await.unwrap(),
    ];
    for &f in &followers {
        target.relate(Edge::Follow, f, author).await.unwrap();
    }
    for _ in 0..(1010 / 10) {
        let batch = (0..10).map(|_| target.publish(author, 1, loadgen::target::POST_TEXT));
        futures::future::try_join_all(batch).await.unwrap();
    }
    for &r in followers.iter().chain([&author]) {
        assert_eq!(
            peer.feed_len(r).await.unwrap(),
            1000,
            "reader {r} keeps its own top 1,000"
        );
    }
    // One at a time, so each has its own commit time: the first page is these, newest first.
    let mut last = Vec::new();
    for _ in 0..20 {
        last.push(target.publish(author, 1, loadgen::target::POST_TEXT).await.unwrap().id);
    }
    last.reverse();
    assert_eq!(target.read(followers[0], 20, None).await.unwrap(), last);
    let (entries, bytes) = peer.feed_footprint().await.unwrap();
    assert!(
        entries >= 3000 && bytes > entries * 16,
        "{entries} entries in {bytes} bytes"
    );
}
