//! Reading authors' outboxes for pulls, rebuilds and follow merges — as deep as the reader's
//! position needs, so a pulled feed holds the same entries as a pushed one.
//!
//! A feed is ordered by rank, and an older post can outrank a newer one (a video by a large
//! account against a text by a small one), so pulls read the `outbox_ranked` family: each
//! author's posts highest rank first, keyed like a timeline. A pull seeks to the reader's cursor
//! and takes the entries a page needs, no more. The highest-ranked `pull_per_author` entries of
//! each author are cached (the head). The pull window ends the walk once ranks fall below the
//! lowest rank a post inside it can have.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::codec::FeedCursor;
use crate::error::Result;
use crate::model::ContentType;
use crate::model::{Entry, UserId};
use crate::ranking;
use crate::store::{Durability, Store};
use crate::tables::{META, MetaKey, OUTBOX, RANKED};

use super::{Inner, expired, post_time_ms};

/// Fills `outbox_ranked` from the outbox of a database written before it existed (once; a
/// crash part-way repeats it, the writes are idempotent).
pub(crate) fn index_by_rank(store: &Store) -> Result<()> {
    if META.is_set(store, MetaKey::OutboxRanked)? {
        return Ok(());
    }
    let mut b = store.batch();
    let mut n = 0usize;
    let mut err = None;
    OUTBOX.scan_all(store, |e| {
        RANKED.put(store, &mut b, e.author, e);
        n += 1;
        if n.is_multiple_of(10_000) {
            let full = std::mem::replace(&mut b, store.batch());
            if let Err(e) = store.write(full, Durability::Buffered) {
                err = Some(e);
                return false;
            }
        }
        true
    })?;
    if let Some(e) = err {
        return Err(e);
    }
    META.set(store, &mut b, MetaKey::OutboxRanked);
    store.write(b, Durability::Sync)?;
    if n > 0 {
        tracing::info!(entries = n, "indexed existing outboxes by rank");
    }
    Ok(())
}

/// The `n` highest ranks seen so far; its floor is the lowest rank that can still be among
/// them.
pub(crate) struct TopRanks {
    n: usize,
    heap: BinaryHeap<Reverse<u64>>,
}

impl TopRanks {
    /// Keeps the best `n` (at least one).
    pub(crate) fn new(n: usize) -> TopRanks {
        TopRanks {
            n: n.max(1),
            heap: BinaryHeap::with_capacity(n.max(1) + 1),
        }
    }

    /// Counts one more rank.
    pub(crate) fn push(&mut self, rank: u64) {
        self.heap.push(Reverse(rank));
        if self.heap.len() > self.n {
            self.heap.pop();
        }
    }

    /// Once `n` ranks are held: the lowest of them (a rank below it cannot enter).
    pub(crate) fn floor(&self) -> Option<u64> {
        (self.heap.len() == self.n).then(|| self.heap.peek().map_or(0, |r| r.0))
    }
}

impl Inner {
    /// An author's highest-ranked outbox entries (at most `pull_per_author`), from the hot
    /// layer or disk.
    pub fn outbox_head(&self, author: UserId) -> Result<Arc<Vec<Entry>>> {
        if let Some(h) = self.cache.heads().get(author) {
            return Ok(h);
        }
        let v = self.cache.heads().version(author);
        let mut head = Vec::with_capacity(self.cfg.pull_per_author);
        self.scan_ranked(author, None, |e| {
            head.push(*e);
            head.len() < self.cfg.pull_per_author
        })?;
        let head = Arc::new(head);
        self.cache.heads().fill(author, v, head.clone());
        Ok(head)
    }

    /// Whether an entry may be pulled at `now_ms`: inside the pull window and not expired.
    pub fn pullable(&self, e: &Entry, now_ms: u64) -> bool {
        now_ms.saturating_sub(post_time_ms(e.post)) <= self.cfg.pull_window_ms && !expired(e, now_ms)
    }

    /// The lowest rank a post inside the pull window can have: ranks below it are older.
    fn window_floor(&self, now_ms: u64) -> u64 {
        let start = now_ms.saturating_sub(self.cfg.pull_window_ms);
        ranking::rank(self.rank, start, 0, ContentType::Text)
    }

    /// Visits the author's entries highest rank first, strictly after `after` (or from the
    /// top), until `visit` returns false.
    fn scan_ranked(
        &self,
        author: UserId,
        after: Option<FeedCursor>,
        mut visit: impl FnMut(&Entry) -> bool,
    ) -> Result<()> {
        let from = after.map(|c| (c.rank, c.post));
        RANKED.scan(&self.store, author, from, None, |e| {
            from == Some((e.rank, e.post)) || visit(e)
        })
    }

    /// The author's pullable entries strictly after `after`, highest rank first: at most
    /// `want`, none ranked below `cut` (a rank the caller already has enough better entries
    /// than; 0 when none). Read from the cached head when it covers them.
    pub fn outbox_after(
        &self,
        author: UserId,
        now: u64,
        after: Option<FeedCursor>,
        want: usize,
        cut: u64,
    ) -> Result<Vec<Entry>> {
        let floor = self.window_floor(now).max(cut);
        let mut out = Vec::new();
        let mut keep = |e: &Entry| {
            if e.rank < floor || out.len() >= want {
                return false;
            }
            if self.pullable(e, now) {
                out.push(*e);
            }
            true
        };
        let head = self.outbox_head(author)?;
        for e in head.iter().filter(|e| after.is_none_or(|c| c.is_before(e))) {
            if !keep(e) {
                return Ok(out);
            }
        }
        if head.len() < self.cfg.pull_per_author {
            return Ok(out);
        }
        // Past the head: from whichever is further down, the cursor or the head's last entry.
        if let Some(last) = head.last() {
            let start = match after {
                Some(c) if (c.rank, c.post) < (last.rank, last.post) => c,
                _ => FeedCursor {
                    rank: last.rank,
                    post: last.post,
                },
            };
            self.scan_ranked(author, Some(start), keep)?;
        }
        Ok(out)
    }

    /// Every pullable entry of the author ranked strictly above `floor` (all when `None`),
    /// at most `limit`, highest first.
    pub fn outbox_above(
        &self,
        author: UserId,
        now: u64,
        floor: Option<(u64, u64)>,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let window = self.window_floor(now);
        let mut out = Vec::new();
        self.scan_ranked(author, None, |e| {
            if floor.is_some_and(|f| (e.rank, e.post) <= f) || e.rank < window || out.len() >= limit {
                return false;
            }
            if self.pullable(e, now) {
                out.push(*e);
            }
            true
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(author: UserId, post: u64, rank: u64) -> Entry {
        Entry {
            rank,
            post,
            author,
            expires_at_ms: None,
        }
    }

    /// A database written before `outbox_ranked` existed gets it filled at open, once.
    #[test]
    fn existing_outboxes_are_indexed_by_rank_once() {
        let dir = tempfile::tempdir().unwrap();
        let opts = crate::store::StoreOptions {
            block_cache_bytes: 1 << 20,
            write_buffer_bytes: 1 << 20,
            affinity_halving_ms: 1000,
            range_deletes_per_memtable: crate::store::RANGE_DELETES_PER_MEMTABLE,
        };
        let store = Store::open(dir.path(), &opts, Arc::new(crate::clock::SystemClock)).unwrap();
        let mut b = store.batch();
        // Author 7: an older post that outranks a newer one.
        for (post, rank) in [(100u64, 50u64), (101, 40), (102, 60)] {
            OUTBOX.put(&store, &mut b, &entry(7, post, rank));
        }
        store.write(b, Durability::Sync).unwrap();
        index_by_rank(&store).unwrap();
        let (ranked, _) = RANKED.page(&store, 7, None, 10).unwrap();
        let order: Vec<(u64, u64)> = ranked.iter().map(|e| (e.post, e.rank)).collect();
        assert_eq!(order, vec![(102, 60), (100, 50), (101, 40)], "highest rank first");
        assert!(ranked.iter().all(|e| e.author == 7));
        // Indexed once: a later outbox-only write is not picked up by a second call.
        let mut b = store.batch();
        OUTBOX.put(&store, &mut b, &entry(7, 103, 70));
        store.write(b, Durability::Sync).unwrap();
        index_by_rank(&store).unwrap();
        assert_eq!(RANKED.page(&store, 7, None, 10).unwrap().0.len(), 3);
    }

    #[test]
    fn top_ranks_floor_is_the_nth_best() {
        let mut t = TopRanks::new(3);
        assert_eq!(t.floor(), None);
        for r in [5, 9, 1, 7] {
            t.push(r);
        }
        assert_eq!(t.floor(), Some(5));
        t.push(8);
        assert_eq!(t.floor(), Some(7));
    }
}
