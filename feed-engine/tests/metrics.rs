//! The engine's metrics reach the `metrics` facade: fanout, policy decisions, reads by path, cache
//! hits. Its own test binary, because it installs the process-wide recorder.

mod common;

use common::Env;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// Counter totals since the last call (the debugging snapshot drains counters), keyed by name
/// and its labels as `k=v` strings.
fn drain(s: &Snapshotter) -> Vec<(String, Vec<String>, u64)> {
    s.snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(k, _, _, v)| match v {
            DebugValue::Counter(n) => Some((
                k.key().name().to_string(),
                k.key().labels().map(|l| format!("{}={}", l.key(), l.value())).collect(),
                n,
            )),
            _ => None,
        })
        .collect()
}

fn total(c: &[(String, Vec<String>, u64)], name: &str, label: Option<&str>) -> u64 {
    c.iter()
        .filter(|(n, l, _)| n == name && label.is_none_or(|want| l.iter().any(|x| x == want)))
        .map(|x| x.2)
        .sum()
}

#[test]
fn fanout_reads_and_cache_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    recorder.install().expect("first recorder in this binary");

    let env = Env::new(|_| {});
    let a = env.user("a");
    let fans = env.users("fan", 3);
    for &f in &fans {
        env.e().follow(f, a).unwrap();
    }
    env.post(a, "counted");
    env.idle();
    let c = drain(&snap);
    assert_eq!(total(&c, "feedline_publishes_total", None), 1);
    assert_eq!(
        total(&c, "feedline_deliveries_total", None),
        4,
        "three fans and the author"
    );
    assert_eq!(
        total(&c, "feedline_policy_decisions_total", Some("reason=always-push")),
        4
    );
    env.e().home_feed(fans[0], 10, None).unwrap();
    env.e().home_feed(fans[0], 10, None).unwrap();
    let c = drain(&snap);
    assert_eq!(total(&c, "feedline_feed_reads_total", Some("path=push")), 1);
    assert_eq!(total(&c, "feedline_feed_reads_total", Some("path=cache")), 1);
    assert!(total(&c, "feedline_cache_lookups_total", Some("outcome=hit")) >= 1);
}
