//! The rank-ordered entry families: a reader's precomputed timeline and an author's ranked
//! outbox share one key shape (`owner ‖ !rank ‖ !post → author [‖ expiry]`). [`Entries`] owns
//! that encoding: callers put, delete and scan [`Entry`] values by position.

use crate::codec;
use crate::error::{Error, Result};
use crate::model::{Entry, UserId};
use crate::store::{Batch, Cf, Store};

/// A feed position: `(rank, post)`. Feed order is descending position.
pub type Pos = (u64, u64);

/// One family of rank-ordered entries per owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entries(Cf);

/// Readers' precomputed home timelines (`timeline`).
pub const TIMELINE: Entries = Entries(Cf::Timeline);
/// Authors' posts by rank, the pull source (`outbox_ranked`).
pub const RANKED: Entries = Entries(Cf::Ranked);

impl Entries {
    /// Adds `e` under `owner`, within a batch.
    pub fn put(self, store: &Store, b: &mut Batch, owner: UserId, e: &Entry) {
        store.put(
            b,
            self.0,
            &codec::timeline_key(owner, e.rank, e.post),
            &codec::timeline_value(e.author, e.expires_at_ms),
        );
    }

    /// Adds many `(owner, entry)` pairs within a batch, in key order: a memtable insert starts
    /// its search from where the previous one ended, so sorted inserts find their place in a
    /// few steps where scattered ones walk the skip list from the top.
    pub fn put_sorted(self, store: &Store, b: &mut Batch, items: &mut [(UserId, Entry)]) {
        items.sort_unstable_by_key(|(owner, e)| (*owner, std::cmp::Reverse((e.rank, e.post))));
        for (owner, e) in items.iter() {
            self.put(store, b, *owner, e);
        }
    }

    /// Removes the entry at `pos` under `owner`, within a batch.
    pub fn delete(self, store: &Store, b: &mut Batch, owner: UserId, (rank, post): Pos) {
        store.delete(b, self.0, &codec::timeline_key(owner, rank, post));
    }

    /// Removes every entry under `owner`, within a batch (one range deletion).
    pub fn delete_all(self, store: &Store, b: &mut Batch, owner: UserId) {
        let from = owner.to_be_bytes();
        match owner.checked_add(1) {
            Some(next) => store.delete_range(b, self.0, &from, &next.to_be_bytes()),
            None => store.delete_range(b, self.0, &from, &[0xff; 9]),
        }
    }

    /// Visits `owner`'s entries in feed order, from `from` (inclusive; default the first) and
    /// stopping before `until` (exclusive: the scan never steps over what lies past it), until
    /// `visit` returns `false`. A record that does not decode is corruption.
    pub fn scan(
        self,
        store: &Store,
        owner: UserId,
        from: Option<Pos>,
        until: Option<Pos>,
        mut visit: impl FnMut(&Entry) -> bool,
    ) -> Result<()> {
        let from = from.map(|(rank, post)| codec::timeline_key(owner, rank, post));
        let until = until.map(|(rank, post)| codec::timeline_key(owner, rank, post));
        let mut err = None;
        store.scan_prefix_until(
            self.0,
            owner,
            from.as_ref().map(|k| &k[..]),
            until.as_ref().map(|k| &k[..]),
            |k, v| match codec::decode_timeline(k, v) {
                Some((_, e)) => visit(&e),
                None => {
                    err = Some(Error::corrupt(format!("{} entry of user {owner}", self.0.name())));
                    false
                }
            },
        )?;
        err.map_or(Ok(()), Err)
    }

    /// `owner`'s entries strictly after `after` in feed order: at most `n`, and whether more follow.
    pub fn page(self, store: &Store, owner: UserId, after: Option<Pos>, n: usize) -> Result<(Vec<Entry>, bool)> {
        let mut out = Vec::with_capacity(n.min(1024));
        let mut more = false;
        self.scan(store, owner, after, None, |e| {
            if after.is_some_and(|a| (e.rank, e.post) >= a) {
                return true;
            }
            if out.len() == n {
                more = true;
                return false;
            }
            out.push(*e);
            true
        })?;
        Ok((out, more))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::{Durability, StoreOptions};

    fn entry(rank: u64, post: u64) -> Entry {
        Entry {
            rank,
            post,
            author: 3,
            expires_at_ms: None,
        }
    }

    #[test]
    fn entries_scan_in_feed_order_between_positions() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            block_cache_bytes: 1 << 20,
            write_buffer_bytes: 1 << 20,
            affinity_halving_ms: 1000,
            range_deletes_per_memtable: crate::store::RANGE_DELETES_PER_MEMTABLE,
        };
        let store = Store::open(dir.path(), &opts, Arc::new(crate::clock::SystemClock)).unwrap();
        let mut b = store.batch();
        for (rank, post) in [(5, 1), (9, 2), (7, 3), (7, 4)] {
            TIMELINE.put(&store, &mut b, 1, &entry(rank, post));
        }
        TIMELINE.put(&store, &mut b, 2, &entry(100, 9));
        RANKED.put(&store, &mut b, 1, &entry(1, 1));
        store.write(b, Durability::Sync).unwrap();
        let (all, more) = TIMELINE.page(&store, 1, None, 10).unwrap();
        let pos: Vec<Pos> = all.iter().map(|e| (e.rank, e.post)).collect();
        assert_eq!(pos, vec![(9, 2), (7, 4), (7, 3), (5, 1)]);
        assert!(!more);
        let (after, more) = TIMELINE.page(&store, 1, Some((7, 4)), 1).unwrap();
        assert_eq!((after[0].rank, after[0].post, more), (7, 3, true));
        let mut seen = Vec::new();
        TIMELINE
            .scan(&store, 1, Some((7, 4)), Some((5, 1)), |e| {
                seen.push(e.post);
                true
            })
            .unwrap();
        assert_eq!(seen, vec![4, 3], "from is inclusive, until exclusive");
        let mut b = store.batch();
        TIMELINE.delete(&store, &mut b, 1, (7, 4));
        store.write(b, Durability::Sync).unwrap();
        assert_eq!(TIMELINE.page(&store, 1, None, 10).unwrap().0.len(), 3);
        assert_eq!(RANKED.page(&store, 1, None, 10).unwrap().0.len(), 1, "families apart");
    }
}
