//! The store's own rules, on a real RocksDB in a temp dir.

use super::*;

fn open(dir: &Path, range_deletes_per_memtable: usize) -> Store {
    let o = StoreOptions {
        block_cache_bytes: 1 << 20,
        write_buffer_bytes: 4 << 20,
        affinity_halving_ms: 1000,
        range_deletes_per_memtable,
    };
    Store::open(dir, &o, Arc::new(crate::clock::SystemClock)).unwrap()
}

fn in_memtable(store: &Store) -> u64 {
    store
        .property(Cf::Timeline, "rocksdb.num-entries-active-mem-table")
        .unwrap()
        .unwrap()
}

/// Writes `n` range deletions of users `from..from + n` in one batch.
fn range_delete(store: &Store, from: u64, n: u64) {
    let mut b = store.batch();
    for u in from..from + n {
        store.delete_range(&mut b, Cf::Timeline, &u.to_be_bytes(), &(u + 1).to_be_bytes());
    }
    store.write(b, Durability::Buffered).unwrap();
}

#[test]
fn a_memtable_is_switched_once_it_has_taken_its_quota_of_range_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 8);
    let mut b = store.batch();
    for u in 0..20u64 {
        store.put(&mut b, Cf::Timeline, &[&u.to_be_bytes()[..], &[1]].concat(), b"v");
    }
    store.write(b, Durability::Buffered).unwrap();
    range_delete(&store, 0, 5);
    assert_eq!(in_memtable(&store), 25, "switched before the quota was reached");
    range_delete(&store, 5, 3);
    assert_eq!(
        in_memtable(&store),
        0,
        "a memtable holding its quota of range deletions was kept"
    );
    range_delete(&store, 8, 7);
    assert_eq!(in_memtable(&store), 7, "the count did not start again after the switch");
    // The deletions hold across the switch: users 0..15 are gone, 15..20 kept.
    let mut left = Vec::new();
    store
        .scan_all(Cf::Timeline, |k, _| {
            left.push(u64::from_be_bytes(k[..8].try_into().unwrap()));
            true
        })
        .unwrap();
    assert_eq!(left, (15..20).collect::<Vec<_>>());
}

#[test]
fn with_no_quota_range_deletions_stay_in_the_memtable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 0);
    range_delete(&store, 0, 100);
    assert_eq!(in_memtable(&store), 100);
}
