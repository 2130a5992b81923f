//! The context every write runs in: its time, the id it mints (if it creates a user or a post),
//! and how it becomes durable. One node builds it from its clock ([`Engine::writer`]: fsynced
//! before the call returns); a cluster node builds it from the log's event
//! ([`WriteCtx::replayed`]), so every node applies the event identically — the event's time, its
//! minted id, its log sequence written in the same atomic batch as the change, and the fsync
//! left to the applier (the log is the durable copy; [`Engine::sync`] once per group).
//!
//! [`Engine::writer`]: crate::Engine::writer
//! [`Engine::sync`]: crate::Engine::sync

use crate::store::{Durability, SeqSlot};

/// What a write is applied with. Passed to the writes explicitly (see [`crate::Writer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteCtx {
    now_ms: u64,
    minted: Option<u64>,
    seq: Option<u64>,
    slot: SeqSlot,
}

impl WriteCtx {
    /// A local write at `now_ms`: ids minted by this engine, fsynced before it returns.
    pub fn local(now_ms: u64) -> Self {
        WriteCtx {
            now_ms,
            minted: None,
            seq: None,
            slot: SeqSlot::Log,
        }
    }

    /// The application of a shared log's event number `seq`, accepted at `now_ms`, with the id
    /// the accepting node minted for it (a new user's or post's), if any.
    pub fn replayed(seq: u64, now_ms: u64, minted: Option<u64>) -> Self {
        WriteCtx {
            now_ms,
            minted,
            seq: Some(seq),
            slot: SeqSlot::Log,
        }
    }

    /// Like [`WriteCtx::replayed`], for partition `p`'s own event replayed on taking the
    /// partition over: the sequence is recorded as the partition's position
    /// ([`crate::Engine::partition_seq`]), not the node's, so a crash mid-replay resumes it
    /// after the last event it applied.
    pub fn replayed_for_partition(p: u32, seq: u64, now_ms: u64, minted: Option<u64>) -> Self {
        WriteCtx {
            now_ms,
            minted,
            seq: Some(seq),
            slot: SeqSlot::Partition(p),
        }
    }

    /// The write's time (ms since the Unix epoch): creation times, expiry, ranks.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The id fixed for what the write creates, when it came with one.
    pub fn minted(&self) -> Option<u64> {
        self.minted
    }

    /// The log sequence the write applies, if it is a replayed event.
    pub fn seq(&self) -> Option<u64> {
        self.seq
    }

    /// How the write's batch is committed: fsynced (local), or with its log sequence and no
    /// fsync (replayed).
    pub(crate) fn durability(&self) -> Durability {
        match self.seq {
            Some(seq) => Durability::Logged(self.slot, seq),
            None => Durability::Sync,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_writes_sync_and_replayed_ones_carry_their_sequence() {
        assert_eq!(WriteCtx::local(5).durability(), Durability::Sync);
        let r = WriteCtx::replayed(7, 1, Some(3));
        assert_eq!(r.durability(), Durability::Logged(SeqSlot::Log, 7));
        let p = WriteCtx::replayed_for_partition(4, 9, 1, None);
        assert_eq!(p.durability(), Durability::Logged(SeqSlot::Partition(4), 9));
        assert_eq!((r.now_ms(), r.minted(), r.seq()), (1, Some(3), Some(7)));
    }
}
