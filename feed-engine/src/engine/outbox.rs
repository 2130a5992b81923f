//! Reading authors' outboxes for pulls, rebuilds and follow merges — as deep as the reader's
//! position needs, so a pulled feed holds the same entries as a pushed one.
//!
//! An outbox is keyed newest first, but a feed is ordered by rank, and an older post can
//! outrank a newer one (a video by a large account against a text by a small one). What bounds
//! the walk is [`ranking::max_rank`]: no post created at or before `t` ranks above
//! `max_rank(t)`, so once that bound falls below the lowest rank a caller still needs, every
//! older post is out too. The pull window bounds the walk as well. The newest
//! `pull_per_author` entries are cached (the head); deeper entries are read from disk.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::codec::{self, FeedCursor};
use crate::error::{Error, Result};
use crate::model::{Entry, UserId};
use crate::ranking;
use crate::store::Cf;

use super::{Inner, expired, post_time_ms};

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
    /// An author's newest outbox entries (at most `pull_per_author`), from the hot layer or disk.
    pub fn outbox_head(&self, author: UserId) -> Result<Arc<Vec<Entry>>> {
        if let Some(h) = self.heads.get(author) {
            return Ok(h);
        }
        let v = self.heads.version(author);
        let mut head = Vec::with_capacity(self.cfg.pull_per_author);
        self.scan_outbox(author, None, |e| {
            head.push(*e);
            head.len() < self.cfg.pull_per_author
        })?;
        let head = Arc::new(head);
        self.heads.insert_if_current(author, v, head.clone());
        Ok(head)
    }

    /// Whether an entry may be pulled at `now_ms`: inside the pull window and not expired.
    pub fn pullable(&self, e: &Entry, now_ms: u64) -> bool {
        self.in_window(e, now_ms) && !expired(e, now_ms)
    }

    fn in_window(&self, e: &Entry, now_ms: u64) -> bool {
        now_ms.saturating_sub(post_time_ms(e.post)) <= self.cfg.pull_window_ms
    }

    /// The highest rank `e` or any older post can have.
    fn bound(&self, e: &Entry) -> u64 {
        ranking::max_rank(self.rank, post_time_ms(e.post))
    }

    /// Visits the author's outbox newest first, from the entry after `after_post` (or the
    /// newest), until `visit` returns false.
    fn scan_outbox(
        &self,
        author: UserId,
        after_post: Option<u64>,
        mut visit: impl FnMut(&Entry) -> bool,
    ) -> Result<()> {
        let from = after_post.map(|p| codec::outbox_key(author, p));
        let mut err = None;
        self.store
            .scan_prefix(Cf::Outbox, author, from.as_ref().map(|k| &k[..]), |k, val| {
                if from.as_ref().is_some_and(|f| f.as_slice() == k) {
                    return true;
                }
                match codec::decode_outbox(k, val) {
                    Some(e) => visit(&e),
                    None => {
                        err = Some(Error::corrupt(format!("outbox entry of user {author}")));
                        false
                    }
                }
            })?;
        err.map_or(Ok(()), Err)
    }

    /// Walks an author's pullable entries newest first — the cached head, then disk past it
    /// while the head was full — stopping at the end of the pull window or when `visit`
    /// returns false. `visit` gets each entry with the highest rank it or any older post can
    /// have.
    pub fn walk_outbox(&self, author: UserId, now: u64, mut visit: impl FnMut(&Entry, u64) -> bool) -> Result<()> {
        let head = self.outbox_head(author)?;
        for e in head.iter() {
            if !self.in_window(e, now) {
                return Ok(());
            }
            if !expired(e, now) && !visit(e, self.bound(e)) {
                return Ok(());
            }
        }
        let Some(last) = head.last() else { return Ok(()) };
        if head.len() < self.cfg.pull_per_author {
            return Ok(());
        }
        self.scan_outbox(author, Some(last.post), |e| {
            if !self.in_window(e, now) {
                return false;
            }
            expired(e, now) || visit(e, self.bound(e))
        })
    }

    /// The author's pullable entries strictly after `after` that can be among the `want`
    /// highest-ranked of that range: the walk ends once `want` are held and no older post can
    /// rank above the lowest of them, or above `cut` (a rank the caller already has `want`
    /// better entries than; 0 when none).
    pub fn outbox_after(
        &self,
        author: UserId,
        now: u64,
        after: Option<FeedCursor>,
        want: usize,
        cut: u64,
    ) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let mut top = TopRanks::new(want);
        self.walk_outbox(author, now, |e, bound| {
            if bound < cut || top.floor().is_some_and(|f| bound < f) {
                return false;
            }
            if after.is_none_or(|c| c.is_before(e)) {
                out.push(*e);
                top.push(e.rank);
            }
            true
        })?;
        Ok(out)
    }

    /// Adds timeline entries of `author`'s posts in the pull window for `reader` into a batch
    /// (as many as a timeline keeps), when the reader's timeline is materialised. Returns how
    /// many were written.
    pub fn merge_author_into(&self, b: &mut crate::store::Batch, reader: UserId, author: UserId) -> Result<usize> {
        if !self.owns(reader) {
            return Ok(0);
        }
        let st = self.reader_state(reader)?;
        if !st.materialized && !st.rebuilding {
            return Ok(0);
        }
        let now = self.now_ms();
        let entries = self.outbox_after(author, now, None, self.cfg.timeline_cap, 0)?;
        for e in &entries {
            self.store.put(
                b,
                Cf::Timeline,
                &codec::timeline_key(reader, e.rank, e.post),
                &codec::timeline_value(e.author, e.expires_at_ms),
            );
        }
        Ok(entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
