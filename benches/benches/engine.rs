//! Criterion benchmarks of the engine's hot paths. Every family has a `*_baseline` group measured
//! in the same run (raw RocksDB or plain std work of the same size), so the engine's overhead is
//! a ratio on the same machine. Fixtures are built outside the timed loops.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use feed_engine::codec::{self, FeedCursor};
use feed_engine::ranking::{self, RankParams};
use feed_engine::{ContentType, Entry, NewPost, PolicyKind, UserId, assembly};
use feedline_benches::{author_with_followers, concurrently, engine, post_rounds, readers_of, users};

/// Threads publishing at once in the acknowledgement benchmark (as many as a server's request
/// handlers would have in flight).
const PUBLISHERS: usize = 64;

/// A plain RocksDB with the engine's block cache size and compression, no column families.
fn raw_db(dir: &std::path::Path) -> rocksdb::DB {
    let mut o = rocksdb::Options::default();
    o.create_if_missing(true);
    o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    let mut t = rocksdb::BlockBasedOptions::default();
    t.set_block_cache(&rocksdb::Cache::new_lru_cache(256 << 20));
    o.set_block_based_table_factory(&t);
    rocksdb::DB::open(&o, dir).expect("open raw rocksdb")
}

/// Ranking and key encoding, beside the bare byte work of decoding three u64s.
fn codec_and_ranking(c: &mut Criterion) {
    let p = RankParams::default();
    let mut g = c.benchmark_group("codec");
    let mut t = 1_750_000_000_000u64;
    g.bench_function("rank", |b| {
        b.iter(|| {
            t += 1;
            ranking::rank(p, std::hint::black_box(t), 12_345, ContentType::Image)
        })
    });
    let key = codec::timeline_key(42, 1 << 40, 7_777_777);
    let val = codec::timeline_value(9, None);
    g.bench_function("timeline_key_encode", |b| {
        b.iter(|| codec::timeline_key(std::hint::black_box(42), 1 << 40, 7_777_777))
    });
    g.bench_function("timeline_entry_decode", |b| {
        b.iter(|| codec::decode_timeline(std::hint::black_box(&key), &val))
    });
    let cur = FeedCursor {
        rank: 1 << 40,
        post: 123_456_789,
    };
    g.bench_function("cursor_roundtrip", |b| {
        b.iter(|| codec::decode_feed_cursor(&codec::encode_feed_cursor(std::hint::black_box(cur))))
    });
    g.finish();
    let mut g = c.benchmark_group("codec_baseline");
    g.bench_function("three_u64_from_be_bytes", |b| {
        b.iter(|| {
            let k = std::hint::black_box(&key);
            let f = |i: usize| u64::from_be_bytes(k[i..i + 8].try_into().unwrap());
            (f(0), !f(8), !f(16))
        })
    });
    g.finish();
}

fn entries(n: usize, seed: u64) -> Vec<Entry> {
    (0..n as u64)
        .map(|i| {
            let x = (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i.wrapping_mul(0xbf58_476d_1ce4_e5b9)) >> 20;
            Entry {
                rank: x,
                post: x ^ 0x55,
                author: seed,
                expires_at_ms: None,
            }
        })
        .collect()
}

/// Page assembly: a 100-entry timeline chunk merged with 50 pulled outbox heads of 10 entries.
fn page_assembly(c: &mut Criterion) {
    let tl = entries(100, 1);
    let pulled: Vec<Vec<Entry>> = (2..52).map(|s| entries(10, s)).collect();
    let mut sources: Vec<&[Entry]> = vec![&tl];
    sources.extend(pulled.iter().map(|v| v.as_slice()));
    let mut g = c.benchmark_group("assembly");
    g.throughput(Throughput::Elements(600));
    g.bench_function("merge_timeline_and_50_heads", |b| {
        b.iter(|| assembly::merge(std::hint::black_box(&sources), None, None))
    });
    g.finish();
    let mut g = c.benchmark_group("assembly_baseline");
    g.throughput(Throughput::Elements(600));
    g.bench_function("concat_only", |b| {
        b.iter(|| {
            std::hint::black_box(&sources)
                .iter()
                .flat_map(|s| s.iter().copied())
                .collect::<Vec<_>>()
        })
    });
    g.finish();
}

/// Timeline deliveries per second, durable in the WAL: one post pushed to 10,000 followers,
/// until all are written, with trimming off (cap 1,000,000) and on (cap 100: a trim every ~10
/// deliveries per reader); baseline: the same entries as raw 1,024-entry WriteBatches.
fn deliveries(c: &mut Criterion) {
    const FOLLOWERS: usize = 10_000;
    let mut g = c.benchmark_group("deliveries");
    g.sample_size(20).throughput(Throughput::Elements(FOLLOWERS as u64));
    for (name, cap) in [("no_trim", 1_000_000), ("trim_cap_100", 100)] {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), |c| {
            c.timeline_cap = cap;
            c.hot_page_entries = 0;
        });
        let author = author_with_followers(&e, "author", FOLLOWERS);
        g.bench_function(name, |b| {
            b.iter(|| {
                e.publish(author, NewPost::text("bench")).unwrap();
                assert!(e.wait_idle(Duration::from_secs(60)));
            })
        });
    }
    g.finish();

    let dir = tempfile::tempdir().unwrap();
    let db = raw_db(dir.path());
    let mut g = c.benchmark_group("deliveries_baseline");
    g.sample_size(20).throughput(Throughput::Elements(FOLLOWERS as u64));
    let mut post = 0u64;
    let val = codec::timeline_value(1, None);
    g.bench_function("raw_writebatch_1024", |b| {
        b.iter(|| {
            post += 1;
            for chunk in (0..FOLLOWERS as u64).collect::<Vec<_>>().chunks(1024) {
                let mut wb = rocksdb::WriteBatch::default();
                for &r in chunk {
                    wb.put(codec::timeline_key(r, post << 20, post), &val);
                }
                db.write(wb).unwrap();
            }
        })
    });
    g.finish();
}

/// A 20-entry first page: from the stored timeline (hot layer off), from the hot layer, by pull
/// over 50 and 500 followees, and from a timeline mixed with three celebrities' posts.
fn feed_reads(c: &mut Criterion) {
    let mut g = c.benchmark_group("feed_read_20");
    let i = AtomicUsize::new(0);
    let next = |rs: &[UserId]| rs[i.fetch_add(1, Ordering::Relaxed) % rs.len()];

    // Push: 2,000 readers following 20 of 200 authors, 10 posts each (~200-entry timelines).
    for (name, hot) in [("rocksdb_timeline", 0), ("hot_layer", 50)] {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), |c| c.hot_page_entries = hot);
        let authors = users(&e, "a", 200);
        let readers = readers_of(&e, "r", 2000, &authors, 20);
        post_rounds(&e, &authors, 10);
        g.bench_function(name, |b| b.iter(|| e.home_feed(next(&readers), 20, None).unwrap()));
    }

    // Pull: readers following 50 and 500 of 1,000 authors with 10 posts each.
    {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), |c| {
            c.hot_page_entries = 0;
            c.policy.kind = PolicyKind::AlwaysPull;
        });
        let authors = users(&e, "a", 1000);
        let r50 = readers_of(&e, "p", 200, &authors, 50);
        let r500 = readers_of(&e, "q", 200, &authors, 500);
        post_rounds(&e, &authors, 10);
        g.bench_function("pull_50_followees", |b| {
            b.iter(|| e.home_feed(next(&r50), 20, None).unwrap())
        });
        g.bench_function("pull_500_followees", |b| {
            b.iter(|| e.home_feed(next(&r500), 20, None).unwrap())
        });
    }

    // Mixed: push timelines plus three celebrities (over the threshold) merged at read.
    {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), |c| {
            c.hot_page_entries = 0;
            c.celebrity_followers = 1000;
        });
        let authors = users(&e, "a", 200);
        let celebs = users(&e, "c", 3);
        let readers = readers_of(&e, "r", 2000, &authors, 20);
        let edges: Vec<(UserId, UserId)> = readers
            .iter()
            .flat_map(|&r| celebs.iter().map(move |&c| (r, c)))
            .collect();
        e.follow_many(&edges).unwrap();
        post_rounds(&e, &authors, 10);
        post_rounds(&e, &celebs, 10);
        g.bench_function("push_plus_3_celebrities", |b| {
            b.iter(|| e.home_feed(next(&readers), 20, None).unwrap())
        });
    }

    // Deep pages: page 5 (entries 81–100) of 200 readers' feeds of one author's 200 posts, from
    // the stored timeline and by pull (hot layer off; the cursor of page 4 taken beforehand).
    for (name, kind) in [
        ("page_5_of_200_pushed", PolicyKind::AlwaysPush),
        ("page_5_of_200_pulled", PolicyKind::AlwaysPull),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), |c| {
            c.hot_page_entries = 0;
            c.policy.kind = kind;
        });
        let authors = users(&e, "a", 1);
        let readers = readers_of(&e, "d", 200, &authors, 1);
        post_rounds(&e, &authors, 200);
        let at_page_5: Vec<(UserId, String)> = readers
            .iter()
            .map(|&r| {
                let mut cursor = None;
                for _ in 0..4 {
                    cursor = e.home_feed(r, 20, cursor.as_deref()).unwrap().next_cursor;
                }
                (r, cursor.expect("a fifth page"))
            })
            .collect();
        let j = AtomicUsize::new(0);
        g.bench_function(name, |b| {
            b.iter(|| {
                let (r, cursor) = &at_page_5[j.fetch_add(1, Ordering::Relaxed) % at_page_5.len()];
                let page = e.home_feed(*r, 20, Some(cursor)).unwrap();
                assert_eq!(page.items.len(), 20);
                page
            })
        });
    }
    g.finish();

    // Baselines: 20 timeline keys straight from RocksDB, then also the 20 posts they name.
    let dir = tempfile::tempdir().unwrap();
    let db = raw_db(dir.path());
    let body = vec![b'x'; 120];
    for r in 0..2000u64 {
        for p in 0..200u64 {
            db.put(codec::timeline_key(r, p * 7, r * 1000 + p), r.to_be_bytes())
                .unwrap();
        }
    }
    for p in 0..2_000_000u64 {
        if p % 1000 < 200 {
            db.put((1u64 << 63 | p).to_be_bytes(), &body).unwrap();
        }
    }
    db.flush().unwrap();
    let mut g = c.benchmark_group("feed_read_20_baseline");
    g.bench_function("raw_prefix_scan_20", |b| {
        b.iter_batched(
            || (i.fetch_add(1, Ordering::Relaxed) % 2000) as u64,
            |r| {
                db.prefix_iterator(r.to_be_bytes())
                    .take(20)
                    .filter_map(Result::ok)
                    .count()
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("raw_prefix_scan_20_and_multi_get_20", |b| {
        b.iter_batched(
            || (i.fetch_add(1, Ordering::Relaxed) % 2000) as u64,
            |r| {
                let keys: Vec<[u8; 8]> = db
                    .prefix_iterator(r.to_be_bytes())
                    .take(20)
                    .filter_map(Result::ok)
                    .map(|(k, _)| (1u64 << 63 | !u64::from_be_bytes(k[16..24].try_into().unwrap())).to_be_bytes())
                    .collect();
                db.multi_get(&keys)
                    .into_iter()
                    .filter(|v| matches!(v, Ok(Some(_))))
                    .count()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Publish with fanout to 10 / 1,000 / 100,000 push followers, until every follower has it;
/// baseline: one fsynced raw write of the same three records a publish acknowledges.
fn publish_fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("publish_fanout");
    for n in [10usize, 1000, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), |c| {
            c.hot_page_entries = 0;
            // Pushed even at 100,000 followers (the default threshold would pull it at read).
            c.celebrity_followers = u64::MAX;
        });
        let author = author_with_followers(&e, "author", n);
        g.sample_size(if n > 10_000 { 10 } else { 20 });
        g.bench_function(format!("followers_{n}"), |b| {
            b.iter(|| {
                e.publish(author, NewPost::text("bench")).unwrap();
                assert!(e.wait_idle(Duration::from_secs(120)));
            })
        });
    }
    g.finish();
    let dir = tempfile::tempdir().unwrap();
    let db = raw_db(dir.path());
    let mut sync = rocksdb::WriteOptions::default();
    sync.set_sync(true);
    let mut g = c.benchmark_group("publish_fanout_baseline");
    let mut id = 0u64;
    g.bench_function("raw_fsynced_write_3_records", |b| {
        b.iter(|| {
            id += 1;
            let mut wb = rocksdb::WriteBatch::default();
            wb.put(id.to_be_bytes(), [7u8; 120]);
            wb.put([id.to_be_bytes(), (!id).to_be_bytes()].concat(), [1u8; 8]);
            wb.put([b"j".as_slice(), &id.to_be_bytes()].concat(), [2u8; 40]);
            db.write_opt(wb, &sync).unwrap();
        })
    });
    g.finish();
}

/// Posts acknowledged durably per second with 64 concurrent publishers (RocksDB's write group
/// shares one fsync among waiting writers); fanout runs meanwhile. Baselines: raw fsynced writes
/// from one thread (one fsync each) and from 64 threads.
fn publish_ack(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), |c| {
        c.hot_page_entries = 0;
        c.fanout_queue_cap = 1_000_000;
    });
    let authors = users(&e, "a", PUBLISHERS);
    let mut g = c.benchmark_group("publish_ack");
    g.sample_size(10).throughput(Throughput::Elements(1));
    g.bench_function(format!("{PUBLISHERS}_publishers"), |b| {
        b.iter_custom(|iters| {
            let took = concurrently(iters, PUBLISHERS, |t, _| {
                e.publish(authors[t], NewPost::text("ack bench")).unwrap();
            });
            assert!(e.wait_idle(Duration::from_secs(600)));
            took
        })
    });
    g.finish();
    let dir = tempfile::tempdir().unwrap();
    let db = raw_db(dir.path());
    let mut sync = rocksdb::WriteOptions::default();
    sync.set_sync(true);
    let mut g = c.benchmark_group("publish_ack_baseline");
    g.sample_size(10).throughput(Throughput::Elements(1));
    for threads in [1, PUBLISHERS] {
        g.bench_function(format!("raw_fsynced_writes_{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                concurrently(iters, threads, |t, i| {
                    let k = ((t as u64) << 40 | i).to_be_bytes();
                    let mut wb = rocksdb::WriteBatch::default();
                    wb.put(k, [7u8; 160]);
                    db.write_opt(wb, &sync).unwrap();
                })
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    codec_and_ranking,
    page_assembly,
    deliveries,
    feed_reads,
    publish_fanout,
    publish_ack
);
criterion_main!(benches);
