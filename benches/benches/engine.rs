//! Criterion benchmarks of the engine's hot paths, each beside a raw-RocksDB baseline measured
//! in the same run. Fixtures are built outside the timed loops.

use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use feed_engine::{Engine, EngineConfig, NewPost, PolicyKind, codec};

fn engine(dir: &std::path::Path, tweak: impl FnOnce(&mut EngineConfig)) -> Engine {
    let mut cfg = EngineConfig::tmp(dir.join("db"));
    cfg.policy.kind = PolicyKind::AlwaysPush;
    cfg.block_cache_bytes = 64 << 20;
    tweak(&mut cfg);
    Engine::open(cfg).expect("open engine")
}

/// Publish by an author with 1,000 push followers, until every follower has it.
fn publish_fanout(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), |_| {});
    let author = e.create_user("author", false).unwrap().id;
    for i in 0..1000 {
        let f = e.create_user(&format!("f{i}"), false).unwrap().id;
        e.follow(f, author).unwrap();
    }
    let mut g = c.benchmark_group("publish");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.bench_function("fanout_1000_push_followers", |b| {
        b.iter(|| {
            e.publish(author, NewPost::text("bench")).unwrap();
            assert!(e.wait_idle(Duration::from_secs(60)));
        })
    });
    g.finish();
}

/// A 20-entry first page from the stored timeline (hot layer off), from the hot layer, and the
/// baseline: a raw RocksDB prefix scan of 20 keys.
fn feed_read(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), |c| c.hot_page_entries = 0);
    let hot_dir = tempfile::tempdir().unwrap();
    let hot = engine(hot_dir.path(), |_| {});
    let mut readers = Vec::new();
    for eng in [&e, &hot] {
        let authors: Vec<u64> = (0..50)
            .map(|i| eng.create_user(&format!("a{i}"), false).unwrap().id)
            .collect();
        let r: Vec<u64> = (0..200)
            .map(|i| eng.create_user(&format!("r{i}"), false).unwrap().id)
            .collect();
        for &x in &r {
            for &a in authors.iter().step_by(5) {
                eng.follow(x, a).unwrap();
            }
        }
        for i in 0..500 {
            eng.publish(authors[i % 50], NewPost::text(format!("post {i}")))
                .unwrap();
        }
        assert!(eng.wait_idle(Duration::from_secs(60)));
        readers = r;
    }
    let mut g = c.benchmark_group("feed_read_20");
    let mut i = 0usize;
    g.bench_function("rocksdb_timeline", |b| {
        b.iter(|| {
            i += 1;
            e.home_feed(readers[i % readers.len()], 20, None).unwrap()
        })
    });
    g.bench_function("hot_layer", |b| {
        b.iter(|| {
            i += 1;
            hot.home_feed(readers[i % readers.len()], 20, None).unwrap()
        })
    });
    g.finish();

    // Baseline: the same number of keys read straight from RocksDB.
    let raw_dir = tempfile::tempdir().unwrap();
    let db = rocksdb::DB::open_default(raw_dir.path()).unwrap();
    for r in 0..200u64 {
        for p in 0..100u64 {
            db.put(codec::timeline_key(r, p * 7, p), r.to_be_bytes()).unwrap();
        }
    }
    db.flush().unwrap();
    let mut g = c.benchmark_group("feed_read_20_baseline");
    g.bench_function("rocksdb_prefix_scan_20", |b| {
        b.iter_batched(
            || (i as u64 + 1) % 200,
            |r| {
                let it = db.prefix_iterator(r.to_be_bytes());
                it.take(20).filter_map(Result::ok).count()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, publish_fanout, feed_read);
criterion_main!(benches);
