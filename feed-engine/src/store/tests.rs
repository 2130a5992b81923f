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

#[test]
fn a_whole_family_walk_sees_every_key_of_a_prefix_extracted_family() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 0);
    let key = |post: u64, user: u64| [post.to_be_bytes(), user.to_be_bytes()].concat();
    let mut want = Vec::new();
    // Half the keys in files, half in the memtable, interleaved by prefix; a few deleted.
    for round in 0..2u64 {
        let mut b = store.batch();
        for post in 1..=40u64 {
            for user in [1 + round, 3 + round] {
                store.put(&mut b, Cf::Likes, &key(post, user), b"");
                want.push(key(post, user));
            }
        }
        store.write(b, Durability::Buffered).unwrap();
        if round == 0 {
            store.flush().unwrap();
        }
    }
    // Point deletes, and a range deletion of the first prefix's keys (a deleted post's likes).
    let mut b = store.batch();
    for post in [7u64, 21] {
        store.delete(&mut b, Cf::Likes, &key(post, 2));
        want.retain(|k| *k != key(post, 2));
    }
    store.delete_range(&mut b, Cf::Likes, &1u64.to_be_bytes(), &2u64.to_be_bytes());
    want.retain(|k| !k.starts_with(&1u64.to_be_bytes()));
    store.write(b, Durability::Buffered).unwrap();
    want.sort();
    let mut seen = Vec::new();
    store
        .scan_all(Cf::Likes, |k, _| {
            seen.push(k.to_vec());
            true
        })
        .unwrap();
    assert_eq!(seen, want, "the store's walk");
    let mut viewed = Vec::new();
    store
        .view()
        .scan_all(Cf::Likes, |k, _| {
            viewed.push(k.to_vec());
            Ok(true)
        })
        .unwrap();
    assert_eq!(viewed, want, "a view's walk");
    let mut back = Vec::new();
    store
        .scan_reverse(Cf::Likes, |k, _| {
            back.push(k.to_vec());
            true
        })
        .unwrap();
    back.reverse();
    assert_eq!(back, want, "the store's walk backwards");
}
