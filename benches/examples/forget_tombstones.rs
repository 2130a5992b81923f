//! What forgetting many readers costs the timeline reads that go on meanwhile (cluster mode: a
//! node gives partitions away, `Engine::forget_given_away`). Writes the same keys the engine
//! does — `GIVEN` readers' timelines and records removed 1,024 readers per write — while one
//! thread pages the timelines of `HELD` other readers, and reports the forget's time and the
//! reads' latency during it and after it.
//!
//! `cargo run --release --example forget_tombstones -- [GIVEN] [HELD] [ENTRIES_PER_GIVEN] [MODE...]`
//!
//! Prints one line per way of deleting (by default all of these): `range` (one range tombstone per reader, the memtable
//! left to fill up with them, as the engine did), `range/K` (the store switches the timeline
//! family's memtable after every K range deletions; the engine's default is
//! `RANGE_DELETES_PER_MEMTABLE`), and `point` (each entry deleted by key, after a scan of the
//! reader's entries).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use feed_engine::codec::ReaderRecord;
use feed_engine::model::Entry;
use feed_engine::store::{Cf, Durability, RANGE_DELETES_PER_MEMTABLE, Store, StoreOptions};
use feed_engine::tables::{READERS, TIMELINE};
use rand::Rng;

const CHUNK: usize = 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| args.get(i).map_or(default, |a| a.parse().expect("a number"));
    let given = num(0, 1_000_000);
    let held = num(1, 10_000);
    let per_given = num(2, 20);
    let default_modes = format!("range range/1024 range/{RANGE_DELETES_PER_MEMTABLE} range/65536 point");
    let modes: Vec<String> = match args.get(3..) {
        Some(m) if !m.is_empty() => m.to_vec(),
        _ => default_modes.split(' ').map(str::to_string).collect(),
    };
    println!("{given} readers forgotten ({per_given} entries each), reads of {held} others' first 20 entries");
    for mode in modes {
        let (kind, limit) = match mode.split_once('/') {
            Some((k, l)) => (k.to_string(), l.parse().expect("range/LIMIT")),
            None => (mode.clone(), 0),
        };
        run(&kind, limit, given, held, per_given);
    }
}

fn entry(i: u64) -> Entry {
    Entry {
        rank: 1_000_000 + i,
        post: i + 1,
        author: 7,
        expires_at_ms: None,
    }
}

fn run(mode: &str, limit: usize, given: u64, held: u64, per_given: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = StoreOptions {
        block_cache_bytes: 256 << 20,
        write_buffer_bytes: 32 << 20,
        affinity_halving_ms: 86_400_000,
        range_deletes_per_memtable: limit,
    };
    let store = Arc::new(Store::open(dir.path(), &opts, Arc::new(feed_engine::SystemClock)).expect("open"));
    // Held readers are ids 0..held, given ones held..held+given: interleaved in key order as a
    // partition's readers are among the others', every other id given.
    let held_id = |i: u64| i * 2;
    let given_id = |i: u64| if i < held { i * 2 + 1 } else { held + i };
    let record = ReaderRecord {
        last_read_ms: 1,
        reads_per_day: 1.0,
        materialized: true,
        cut: None,
    };
    let mut b = store.batch();
    let mut n = 0;
    let mut load = |store: &Store, b: &mut feed_engine::store::Batch, r: u64, entries: u64| {
        for i in 0..entries {
            TIMELINE.put(store, b, r, &entry(i));
        }
        READERS.put(store, b, r, &record);
        n += entries;
        if n >= 100_000 {
            let full = std::mem::replace(b, store.batch());
            store.write(full, Durability::Buffered).expect("load");
            n = 0;
        }
    };
    for i in 0..held {
        load(&store, &mut b, held_id(i), 100);
    }
    for i in 0..given {
        load(&store, &mut b, given_id(i), per_given);
    }
    store.write(b, Durability::Buffered).expect("load");
    store.flush().expect("flush");
    store.compact(Cf::Timeline);

    // 0: before the forget, 1: during, 2: after.
    let phase = Arc::new(AtomicU8::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, phase, stop) = (store.clone(), phase.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rng = rand::rng();
            let mut lat: [Vec<u64>; 3] = Default::default();
            while !stop.load(Ordering::Relaxed) {
                let r = held_id(rng.random_range(0..held));
                let t = Instant::now();
                let (page, _) = TIMELINE.page(&store, r, None, 20).expect("page");
                let ns = t.elapsed().as_nanos() as u64;
                assert_eq!(page.len(), 20, "a held reader's timeline lost entries");
                lat[phase.load(Ordering::Relaxed) as usize].push(ns);
            }
            lat
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    phase.store(1, Ordering::Relaxed);
    let t0 = Instant::now();
    let ids: Vec<u64> = (0..given).map(given_id).collect();
    for chunk in ids.chunks(CHUNK) {
        let mut b = store.batch();
        for &r in chunk {
            match mode {
                "range" => TIMELINE.delete_all(&store, &mut b, r),
                "point" => {
                    let mut pos = Vec::new();
                    TIMELINE
                        .scan(&store, r, None, None, |e| {
                            pos.push((e.rank, e.post));
                            true
                        })
                        .expect("scan");
                    for p in pos {
                        TIMELINE.delete(&store, &mut b, r, p);
                    }
                }
                other => panic!("no such mode {other:?}: range, range/LIMIT or point"),
            }
            READERS.delete(&store, &mut b, r);
        }
        store.write(b, Durability::Buffered).expect("forget");
    }
    let took = t0.elapsed();
    phase.store(2, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let mut lat = reader.join().expect("reader");
    let memtable = store
        .property(Cf::Timeline, "rocksdb.num-entries-active-mem-table")
        .ok()
        .flatten()
        .unwrap_or(0);
    let mode = if limit > 0 {
        format!("{mode}/{limit}")
    } else {
        mode.to_string()
    };
    let l0 = store
        .property(Cf::Timeline, "rocksdb.num-files-at-level0")
        .ok()
        .flatten()
        .unwrap_or(0);
    let mut line = format!(
        "{mode:>11}: forget {:.2} s ({:.0} readers/s), {memtable} entries left in the memtable, {l0} level-0 files",
        took.as_secs_f64(),
        given as f64 / took.as_secs_f64()
    );
    for (name, l) in ["before", "during", "after"].iter().zip(lat.iter_mut()) {
        l.sort_unstable();
        let q = |f: f64| {
            l.get(((l.len() as f64 * f) as usize).min(l.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        line += &format!(
            " | {name}: {} reads, p50 {:.1} µs, p99 {:.1} µs, max {:.1} ms",
            l.len(),
            q(0.5) as f64 / 1e3,
            q(0.99) as f64 / 1e3,
            l.last().copied().unwrap_or(0) as f64 / 1e6
        );
    }
    println!("{line}");
}
