//! The fanout workers run at the CPU priority the config asks (`fanout-nice`), so reads and
//! publishes get a busy core first. A test binary of its own: the threads are found by name in
//! `/proc`, and no other test's engine may have fanout workers running meanwhile.

#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use feed_engine::{Engine, EngineConfig};

/// The nice value in a `/proc/.../stat` line (field 19; the name before it may hold spaces).
fn nice_of(stat: &str) -> i32 {
    let after_name = &stat[stat.rfind(')').expect("a stat line") + 2..];
    after_name
        .split(' ')
        .nth(16)
        .expect("field 19")
        .parse()
        .expect("a nice value")
}

/// The nice values of this process's threads whose name starts with `prefix`.
fn nices(prefix: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").expect("/proc/self/task").flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.starts_with(prefix)
            && let Ok(stat) = std::fs::read_to_string(t.path().join("stat"))
        {
            out.push(nice_of(&stat));
        }
    }
    out
}

#[test]
fn fanout_workers_run_at_the_lower_priority_the_config_asks() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::tmp(dir.path());
    cfg.fanout_workers = 2;
    cfg.fanout_nice = 7;
    let base = nice_of(&std::fs::read_to_string("/proc/thread-self/stat").unwrap());
    let want = (base + 7).min(19);
    let _e = Engine::open(cfg).unwrap();
    // The workers lower their own priority as they start: wait for both, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = nices("feedline-fanout");
        if seen == vec![want; 2] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fanout workers' nice values {seen:?}, wanted two at {want} (this thread's is {base})"
        );
        std::thread::yield_now();
    }
}
