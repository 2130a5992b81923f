//! Post ids: 41 bits of ms since the feedline epoch, 10 bits of the minting node, 12 bits of
//! sequence within the ms. A node mints ids only under its own node bits, strictly increasing,
//! whatever ids of other nodes it has applied: two nodes never mint the same id.

use std::sync::atomic::Ordering;

use super::{FEEDLINE_EPOCH_MS, Inner};
use crate::model::PostId;

/// Bits below the time.
pub(crate) const POST_TIME_SHIFT: u32 = 22;
/// Bits below the node.
const NODE_SHIFT: u32 = 12;
/// The sequence within one ms.
const SEQ_MASK: u64 = (1 << NODE_SHIFT) - 1;
/// The node's bits.
const NODE_MASK: u64 = ((1 << (POST_TIME_SHIFT - NODE_SHIFT)) - 1) << NODE_SHIFT;

/// The node that minted `id`.
pub(crate) fn node_of(id: PostId) -> u16 {
    ((id & NODE_MASK) >> NODE_SHIFT) as u16
}

/// The first id `node` may mint at `ms` (ms since the feedline epoch).
pub(crate) fn first_at(ms: u64, node: u16) -> PostId {
    (ms << POST_TIME_SHIFT) | ((node as u64) << NODE_SHIFT)
}

/// The next id of `node` after its own `last` (0: none yet), at the earliest `base` (the first
/// id of the current ms): `base` when it is later, else `last`'s next sequence, else the next
/// ms's first. The sequence never carries into the node bits.
pub(crate) fn next_after(last: PostId, base: PostId, node: u16) -> PostId {
    if base > last {
        base
    } else if last & SEQ_MASK < SEQ_MASK {
        last + 1
    } else {
        first_at((last >> POST_TIME_SHIFT) + 1, node)
    }
}

/// Where `node`'s minting resumes on a database whose newest post is `newest` (any node's): past
/// `newest`'s ms when another node minted it, so every id of its own is above this node's
/// before, without a walk of the posts.
pub(crate) fn resume_after(newest: PostId, node: u16) -> PostId {
    if newest == 0 || node_of(newest) == node {
        newest
    } else {
        first_at(newest >> POST_TIME_SHIFT, node) | SEQ_MASK
    }
}

impl Inner {
    /// A new post id: time-ordered, under this node's bits and strictly increasing among its
    /// own (`ids`); `minted` when the write came with one (a replayed event's).
    pub fn next_post_id(&self, now_ms: u64, minted: Option<PostId>) -> PostId {
        let node = self.cfg.node_id;
        if let Some(id) = minted {
            // Another node's ids never move this node's sequence: taking one's bits would mint
            // an id that node mints too.
            if node_of(id) == node {
                self.last_post.fetch_max(id, Ordering::SeqCst);
            }
            return id;
        }
        let base = first_at(now_ms.saturating_sub(FEEDLINE_EPOCH_MS), node);
        let mut last = self.last_post.load(Ordering::SeqCst);
        loop {
            let next = next_after(last, base, node);
            match self
                .last_post
                .compare_exchange(last, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(cur) => last = cur,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_mints_only_under_its_own_bits() {
        let t = 1_000_000;
        let other = first_at(t, 2) + 7;
        // Another node's newer id in the same ms must not lend its bits.
        let last = resume_after(other, 1);
        let next = next_after(last, first_at(t, 1), 1);
        assert_eq!(node_of(next), 1);
        assert!(next >> POST_TIME_SHIFT > t, "past the other node's ms");
        // A full ms moves to the next ms, not into the node bits.
        let full = first_at(t, 1) | SEQ_MASK;
        let next = next_after(full, first_at(t, 1), 1);
        assert_eq!((node_of(next), next >> POST_TIME_SHIFT), (1, t + 1));
        // The clock ahead wins; its own newest id keeps counting otherwise.
        assert_eq!(next_after(first_at(t, 1), first_at(t + 5, 1), 1), first_at(t + 5, 1));
        assert_eq!(
            next_after(first_at(t, 1) + 3, first_at(t - 1, 1), 1),
            first_at(t, 1) + 4
        );
        assert_eq!(resume_after(first_at(t, 1) + 3, 1), first_at(t, 1) + 3);
        assert_eq!(resume_after(0, 1), 0);
    }
}
