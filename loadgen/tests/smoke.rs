//! The smoke preset against both targets — the engine in-process and a real feed-server on
//! 127.0.0.1 — checking that the report counts what was sent and that the data it wrote reads back.

use std::time::Duration;

use feed_server::Server;
use feed_server::config::ServerConfig;
use loadgen::driver::{self, RunSpec};
use loadgen::report::Report;
use loadgen::target::Target;
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
        duration: Duration::from_millis(1500),
        warmup: Duration::from_millis(200),
        page: 20,
        batch: 1,
        max_in_flight: 256,
        lag_sample_every: 5,
    }
}

/// Counts must match the schedule: rate × duration operations issued, each either ok or an error.
fn check_counts(r: &Report) {
    let secs = r.spec.duration.as_secs_f64();
    for (name, o) in &r.ops {
        let expected = (o.target_rate * secs).round() as i64;
        // Ops due in the window, plus any warm-up op the generator sent only after it began.
        assert!(
            (o.sent as i64 - expected).abs() <= 2.max(expected / 100),
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
    assert!(r.fanout_lag_samples > 0, "fanout lag was sampled");
}

async fn written_posts_read_back(target: &Target, loaded_ids: &[u64]) {
    // The most followed user's followers see posts: some reader's first page is not empty.
    let mut any = false;
    for &u in loaded_ids.iter().take(50) {
        if !target.read(u, 20).await.expect("read back").is_empty() {
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
    let report = driver::run(target.clone(), loaded, spec).await.unwrap();
    check_counts(&report);
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
    let table = loadgen::report::side_by_side(&runs);
    assert!(table.contains("second") && table.contains("(1.00×)"), "{table}");
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
    let spec = RunSpec { batch: 10, ..smoke() };
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
