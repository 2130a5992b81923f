//! What applying another node's post costs a cluster node, against applying one of its own
//! authors' posts and against raw RocksDB: `cargo bench --workspace --bench cluster`.
//!
//! Every node applies every post from the log, one event at a time on its applier thread, in
//! the event's replayed context (no fsync per event; one per group of up to 256 events, as the
//! applier syncs). Only the author's node fans a post out: it records a pending fanout job, and
//! its fanout worker clears it with an fsync. Every other node writes the post's head (the
//! post, its outbox, ranked and tag entries, the author's post count) and nothing else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use feed_engine::{Engine, NewPost, Outgoing, RemoteFanout, UserId, WriteCtx};
use feedline_benches::{engine, users};

/// Events the applier takes together before one fsync.
const GROUP: u64 = 256;

/// The two-hop sink the server installs, reduced to accepting: the author here has no
/// followers on other nodes, so it is never handed anything.
struct Nowhere;

impl RemoteFanout for Nowhere {
    fn send(&self, _posts: &[Outgoing<'_>]) -> feed_engine::Result<()> {
        Ok(())
    }
}

/// A cluster node whose partitions hold everyone but `elsewhere`.
fn node(dir: &std::path::Path) -> (Engine, UserId, UserId) {
    let e = engine(dir, |c| c.fanout_queue_cap = 1_000_000);
    let [mine, elsewhere] = users(&e, "author", 2)[..] else {
        unreachable!()
    };
    assert!(e.set_owner_filter(Arc::new(move |u| u != elsewhere)));
    assert!(e.set_remote_fanout(Arc::new(Nowhere)));
    (e, mine, elsewhere)
}

/// Applies `iters` posts of `author` as the log's events from `seq` on, syncing per group,
/// then waits for the fanout they queued; the wall time of both.
fn apply_posts(e: &Engine, author: UserId, seq: &mut u64, iters: u64) -> Duration {
    let t0 = Instant::now();
    for i in 0..iters {
        *seq += 1;
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        e.at(WriteCtx::replayed(*seq, at, None))
            .publish_reaching(
                author,
                NewPost::text("a post from the log, with some words to weigh it"),
                Some(0),
            )
            .unwrap();
        if (i + 1) % GROUP == 0 {
            e.sync().unwrap();
        }
    }
    e.sync().unwrap();
    assert!(e.wait_idle(Duration::from_secs(600)));
    t0.elapsed()
}

fn replicated_posts(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (e, mine, elsewhere) = node(dir.path());
    let mut seq = 0;
    let mut g = c.benchmark_group("cluster_post_apply");
    g.throughput(Throughput::Elements(1));
    g.bench_function("head_of_another_node_s_post", |b| {
        b.iter_custom(|iters| apply_posts(&e, elsewhere, &mut seq, iters))
    });
    g.bench_function("own_author_s_post_fanned_out", |b| {
        b.iter_custom(|iters| apply_posts(&e, mine, &mut seq, iters))
    });
    g.finish();
    let dir = tempfile::tempdir().unwrap();
    let db = rocksdb::DB::open_default(dir.path()).unwrap();
    let mut g = c.benchmark_group("cluster_post_apply_baseline");
    g.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    g.bench_function("raw_unsynced_batch_of_5_records_sync_per_256", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for i in 0..iters {
                n += 1;
                let mut wb = rocksdb::WriteBatch::default();
                wb.put([b"p".as_slice(), &n.to_be_bytes()].concat(), [7u8; 120]);
                wb.put([b"o".as_slice(), &n.to_be_bytes()].concat(), [7u8; 24]);
                wb.put([b"r".as_slice(), &n.to_be_bytes()].concat(), [7u8; 24]);
                wb.put([b"c".as_slice(), &n.to_be_bytes()].concat(), 1u64.to_le_bytes());
                wb.put(b"meta-applied", n.to_be_bytes());
                db.write(wb).unwrap();
                if (i + 1) % GROUP == 0 {
                    db.flush_wal(true).unwrap();
                }
            }
            db.flush_wal(true).unwrap();
            t0.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, replicated_posts);
criterion_main!(benches);
