//! Inspection: what the engine holds in memory and on disk, and the work the store owes — for
//! measurements, load generators and operators, never on a request's path.

use crate::error::Result;
use crate::model::{Entry, PostId, UserId};
use crate::store::{Cf, StorageBacklog};
use crate::tables::{LIKES, TIMELINE};

use super::Engine;

/// Where the engine's memory goes, by owner. Every part is bounded by configuration:
/// `hot-bytes`, `block-cache-bytes`, `write-buffer-bytes` per family (times the memtables
/// RocksDB keeps while flushing), and `reader-states-max`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// The hot layer (first pages, outbox heads, follow graphs, posts, audiences), as weighed.
    pub hot_bytes: u64,
    /// RocksDB's shared block cache (data, index and filter blocks).
    pub block_cache_bytes: u64,
    /// RocksDB memtables, active and immutable, over every family.
    pub memtable_bytes: u64,
    /// Reader states held in memory.
    pub reader_states: u64,
    /// Ranked reading sessions, as weighed.
    pub ranked_session_bytes: u64,
    /// Posts and hashtags whose engagement velocity is held (bounded by `trends-max`).
    pub trend_entries: u64,
}

impl Engine {
    /// Where memory goes now (see [`MemoryUse`]).
    pub fn memory(&self) -> Result<MemoryUse> {
        let inner = self.inner();
        let (block_cache_bytes, memtable_bytes) = inner.store.memory()?;
        Ok(MemoryUse {
            hot_bytes: inner.cache.bytes() as u64,
            block_cache_bytes,
            memtable_bytes,
            reader_states: inner.readers.len() as u64,
            ranked_session_bytes: inner.sessions.bytes() as u64,
            trend_entries: inner.trends.len() as u64,
        })
    }

    /// Bytes of SST files of the timeline column family (after a flush), and its number of keys
    /// as RocksDB estimates them: the storage cost of precomputed feeds.
    pub fn timeline_disk_usage(&self) -> Result<(u64, u64)> {
        let s = &self.inner().store;
        s.flush()?;
        s.compact(Cf::Timeline);
        let bytes = s.property(Cf::Timeline, "rocksdb.total-sst-files-size")?.unwrap_or(0);
        let keys = s.property(Cf::Timeline, "rocksdb.estimate-num-keys")?.unwrap_or(0);
        Ok((bytes, keys))
    }

    /// The entries stored in `reader`'s precomputed timeline, in feed order (an inspection tool:
    /// reads use [`Engine::home_feed`]).
    pub fn stored_timeline(&self, reader: UserId) -> Result<Vec<Entry>> {
        Ok(TIMELINE.page(&self.inner().store, reader, None, usize::MAX)?.0)
    }

    /// How many like records `post` has in storage, whether the post exists or not (an
    /// inspection tool: a deleted post must have none).
    pub fn stored_likes(&self, post: PostId) -> Result<usize> {
        let mut n = 0;
        LIKES.scan(&self.inner().store, post, None, |_| {
            n += 1;
            true
        })?;
        Ok(n)
    }

    /// A digest of all stored data: equal before and after any request that must change nothing.
    pub fn data_checksum(&self) -> Result<u64> {
        self.inner().store.checksum()
    }

    /// Background work the store still owes (compactions, flushes, level-0 files).
    pub fn storage_backlog(&self) -> Result<StorageBacklog> {
        self.inner().store.backlog()
    }

    /// Reader states held in memory (bounded by `reader-states-max`).
    pub fn reader_states_in_memory(&self) -> usize {
        self.inner().readers.len()
    }

    /// Runs a full compaction of the timeline and outbox families (drops expired stories).
    pub fn compact_feeds(&self) -> Result<()> {
        let s = &self.inner().store;
        s.flush()?;
        s.compact(Cf::Timeline);
        s.compact(Cf::Outbox);
        s.compact(Cf::Ranked);
        Ok(())
    }
}
