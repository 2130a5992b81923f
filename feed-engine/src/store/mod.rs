//! The storage seam: the only module that imports `rocksdb`. Column families (`cf.rs`), their options
//! (prefix extractors, bloom filters, merge operator, compaction filter) and a small byte-level
//! API (get, multi-get, prefix scans, atomic batches) that the rest of the engine is written against.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rocksdb::{
    Cache, ColumnFamily, ColumnFamilyDescriptor, DB, Direction, FlushOptions, IteratorMode, LruCacheOptions, Options,
    ReadOptions, WriteBatch, WriteOptions,
};

use crate::clock::Clock;
use crate::codec;
use crate::error::{Error, Result};

mod cf;
mod options;
mod view;

pub use cf::Cf;
use options::cf_options;
pub use options::{RANGE_DELETES_PER_MEMTABLE, StoreOptions};
pub use view::View;

/// Background work RocksDB still owes: what a bulk load leaves behind, and what a load run
/// started right after it would pay for alongside its own work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageBacklog {
    /// Bytes RocksDB estimates compaction must rewrite to reach its level targets.
    pub pending_compaction_bytes: u64,
    /// Files in level 0 (each one more file a read may have to look in).
    pub l0_files: u64,
    /// Families with a compaction due.
    pub compactions_due: u64,
    /// Families with a memtable flush due.
    pub flushes_due: u64,
    /// Compactions and flushes running now.
    pub running: u64,
}

impl StorageBacklog {
    /// Whether nothing is due or running.
    pub fn settled(&self) -> bool {
        self.pending_compaction_bytes == 0 && self.compactions_due == 0 && self.flushes_due == 0 && self.running == 0
    }
}

fn storage(e: rocksdb::Error) -> Error {
    Error::Storage(Box::new(e))
}

/// Read options for a walk over a whole family: in key order whatever the family's prefix
/// extractor. RocksDB defines iteration across prefixes only in total-order mode; in prefix
/// mode the result past the first prefix is unspecified.
fn total_order() -> ReadOptions {
    let mut ro = ReadOptions::default();
    ro.set_total_order_seek(true);
    ro
}

/// Meta key of the last applied log sequence (cluster mode).
const APPLIED_SEQ: &[u8] = b"applied-log-seq";

/// The open database.
pub struct Store {
    db: DB,
    sync_writes: WriteOptions,
    async_writes: WriteOptions,
    /// Range deletions written to each family (by `Cf as usize`) since its memtable was last
    /// switched by [`Store::write`].
    range_deletes: [AtomicUsize; Cf::ALL.len()],
    range_deletes_per_memtable: usize,
}

/// An atomic group of writes across column families.
pub struct Batch {
    inner: WriteBatch,
    /// Range deletions in this batch, per family (by `Cf as usize`).
    range_deletes: [u32; Cf::ALL.len()],
}

/// A write's durability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Returns after the WAL is fsynced: the ack point of publishes and graph changes.
    Sync,
    /// In the WAL, not yet fsynced: made durable by the next `Sync` write (the WAL is sequential).
    Buffered,
    /// A replayed log event's change: buffered, with the event's log sequence recorded in the
    /// same batch, in the given slot (the applier fsyncs once per group of events).
    Logged(SeqSlot, u64),
}

/// Where a replayed event's log sequence is recorded: the node's main position in the log, or
/// the position of one partition's own events replayed apart from it (a partition taken over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqSlot {
    /// The node's applied sequence ([`Store::applied_seq`]).
    Log,
    /// Partition `p`'s own events, replayed on taking it over ([`Store::partition_seq`]).
    Partition(u32),
}

/// The log sequence recorded in `slot`, read with `get` (the store, or a view of it).
fn recorded(get: impl Fn(&[u8]) -> Result<Option<Vec<u8>>>, slot: SeqSlot) -> Result<Option<u64>> {
    Ok(get(&slot_key(slot))?.and_then(|v| codec::read_u64(&v, 0)))
}

fn slot_key(slot: SeqSlot) -> Vec<u8> {
    match slot {
        SeqSlot::Log => APPLIED_SEQ.to_vec(),
        SeqSlot::Partition(p) => format!("partition-seq/{p}").into_bytes(),
    }
}

impl Store {
    /// Opens (or creates) the database at `path` with every column family.
    pub fn open(path: &Path, o: &StoreOptions, clock: Arc<dyn Clock>) -> Result<Store> {
        // Four shards, not RocksDB's default of one per 512 KB (64 here): a whole-file bloom
        // filter of a compacted graph file is megabytes, larger than a 4 MB shard, so each one
        // evicted the last and was read back (and checksummed) on every seek — 87 % of all CPU
        // at 1,000,000 users. Index and filter blocks also go in the high-priority pool.
        let mut lru = LruCacheOptions::default();
        lru.set_capacity(o.block_cache_bytes);
        lru.set_num_shard_bits(2);
        let cache = Cache::new_lru_cache_opts(&lru);
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.increase_parallelism(2);
        db_opts.set_max_background_jobs(2);
        db_opts.set_bytes_per_sync(1 << 20);
        db_opts.set_keep_log_file_num(4);
        let cfs: Vec<ColumnFamilyDescriptor> = Cf::ALL
            .iter()
            .map(|&cf| ColumnFamilyDescriptor::new(cf.name(), cf_options(cf, &cache, o, &clock)))
            .collect();
        let db = DB::open_cf_descriptors(&db_opts, path, cfs).map_err(storage)?;
        let mut sync_writes = WriteOptions::default();
        sync_writes.set_sync(true);
        Ok(Store {
            db,
            sync_writes,
            async_writes: WriteOptions::default(),
            range_deletes: Default::default(),
            range_deletes_per_memtable: o.range_deletes_per_memtable,
        })
    }

    fn cf(&self, cf: Cf) -> &ColumnFamily {
        // Every family in Cf::ALL is created by `open`, so the handle always exists.
        self.db.cf_handle(cf.name()).expect("column family created at open")
    }

    /// One value.
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(cf), key).map_err(storage)
    }

    /// Whether a key exists.
    pub fn exists(&self, cf: Cf, key: &[u8]) -> Result<bool> {
        Ok(self.db.get_pinned_cf(self.cf(cf), key).map_err(storage)?.is_some())
    }

    /// Many values of one family in one call, in the order of `keys`.
    pub fn multi_get<K: AsRef<[u8]>>(&self, cf: Cf, keys: &[K]) -> Result<Vec<Option<Vec<u8>>>> {
        let h = self.cf(cf);
        self.db
            .batched_multi_get_cf(h, keys.iter().map(|k| k.as_ref()), false)
            .into_iter()
            .map(|r| r.map(|o| o.map(|s| s.to_vec())).map_err(storage))
            .collect()
    }

    /// Visits the keys of `prefix` (a user id) from `from` (inclusive; default: the start of
    /// the prefix) in key order, until `visit` returns `false`.
    pub fn scan_prefix(
        &self,
        cf: Cf,
        prefix: u64,
        from: Option<&[u8]>,
        visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        self.scan_prefix_until(cf, prefix, from, None, visit)
    }

    /// [`Store::scan_prefix`] that stops before `until` (exclusive) when given: the iterator
    /// never steps over the deleted keys beyond it.
    pub fn scan_prefix_until(
        &self,
        cf: Cf,
        prefix: u64,
        from: Option<&[u8]>,
        until: Option<&[u8]>,
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let mut ro = ReadOptions::default();
        ro.set_prefix_same_as_start(true);
        let end = codec::prefix_end(prefix);
        ro.set_iterate_upper_bound(match until {
            Some(u) if u < end.as_slice() => u.to_vec(),
            _ => end,
        });
        let start = codec::id_key(prefix);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(cf), ro);
        it.seek(from.unwrap_or(&start));
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if !visit(k, v) {
                return Ok(());
            }
            it.next();
        }
        it.status().map_err(storage)
    }

    /// Visits every key of a family in order (used at open for small families).
    pub fn scan_all(&self, cf: Cf, mut visit: impl FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        for item in self.db.iterator_cf_opt(self.cf(cf), total_order(), IteratorMode::Start) {
            let (k, v) = item.map_err(storage)?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    /// Visits a family's keys from the last one backwards, until `visit` returns `false`.
    pub fn scan_reverse(&self, cf: Cf, mut visit: impl FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        for item in self.db.iterator_cf_opt(
            self.cf(cf),
            total_order(),
            IteratorMode::From(&[0xff; 16], Direction::Reverse),
        ) {
            let (k, v) = item.map_err(storage)?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    /// A new, empty batch.
    pub fn batch(&self) -> Batch {
        Batch {
            inner: WriteBatch::default(),
            range_deletes: [0; Cf::ALL.len()],
        }
    }

    /// Applies a batch atomically, as durable as asked (see [`Durability`]).
    pub fn write(&self, mut batch: Batch, durability: Durability) -> Result<()> {
        let wo = match durability {
            Durability::Logged(slot, seq) => {
                self.put(&mut batch, Cf::Meta, &slot_key(slot), &seq.to_be_bytes());
                &self.async_writes
            }
            Durability::Sync => &self.sync_writes,
            Durability::Buffered => &self.async_writes,
        };
        let range_deletes = batch.range_deletes;
        self.db.write_opt(batch.inner, wo).map_err(storage)?;
        if self.range_deletes_per_memtable > 0 {
            for (i, &n) in range_deletes.iter().enumerate().filter(|(_, n)| **n > 0) {
                let since = self.range_deletes[i].fetch_add(n as usize, Ordering::Relaxed) + n as usize;
                // One writer of those crossing the limit together switches the memtable.
                if since >= self.range_deletes_per_memtable
                    && self.range_deletes[i].swap(0, Ordering::Relaxed) >= self.range_deletes_per_memtable
                {
                    self.switch_memtable(Cf::ALL[i]);
                }
            }
        }
        Ok(())
    }

    /// Makes `cf`'s memtable immutable and starts its flush without waiting for it (the
    /// write is already applied: a failure here only leaves the tombstones where they were).
    fn switch_memtable(&self, cf: Cf) {
        let mut fo = FlushOptions::default();
        fo.set_wait(false);
        if let Err(e) = self.db.flush_cf_opt(self.cf(cf), &fo) {
            tracing::warn!(family = cf.name(), error = %e, "memtable not switched after range deletions");
        }
    }

    /// The last log sequence applied to this database (0: none).
    pub fn applied_seq(&self) -> Result<u64> {
        Ok(recorded(|k| self.get(Cf::Meta, k), SeqSlot::Log)?.unwrap_or(0))
    }

    /// Partition `p`'s recorded position (`None`: nothing recorded): what the cluster keeps
    /// there is its own affair (see `Engine::partition_seq`).
    pub fn partition_seq(&self, p: u32) -> Result<Option<u64>> {
        recorded(|k| self.get(Cf::Meta, k), SeqSlot::Partition(p))
    }

    /// Records (or, with `None`, removes) partition `p`'s position, fsynced.
    pub fn set_partition_seq(&self, p: u32, seq: Option<u64>) -> Result<()> {
        let mut b = self.batch();
        let k = slot_key(SeqSlot::Partition(p));
        match seq {
            Some(s) => self.put(&mut b, Cf::Meta, &k, &s.to_be_bytes()),
            None => self.delete(&mut b, Cf::Meta, &k),
        }
        self.db.write_opt(b.inner, &self.sync_writes).map_err(storage)
    }

    /// Records `seq` as applied (for events that changed nothing), without an fsync.
    pub fn note_applied(&self, seq: u64) -> Result<()> {
        let mut b = self.batch();
        self.put(&mut b, Cf::Meta, APPLIED_SEQ, &seq.to_be_bytes());
        self.db.write_opt(b.inner, &self.async_writes).map_err(storage)
    }

    /// Writes a consistent copy of the database into `dir` (which must not exist): hard links
    /// to the immutable files where possible, after flushing the memtables.
    pub fn checkpoint(&self, dir: &Path) -> Result<()> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(storage)
    }

    /// Puts into a batch.
    pub fn put(&self, b: &mut Batch, cf: Cf, key: &[u8], value: &[u8]) {
        b.inner.put_cf(self.cf(cf), key, value);
    }

    /// Deletes within a batch.
    pub fn delete(&self, b: &mut Batch, cf: Cf, key: &[u8]) {
        b.inner.delete_cf(self.cf(cf), key);
    }

    /// Adds `delta` to a counter of a merge-added family (`counters`, `tag_names`) within a batch.
    pub fn add(&self, b: &mut Batch, cf: Cf, key: &[u8], delta: i64) {
        debug_assert!(matches!(cf, Cf::Counters | Cf::TagNames));
        b.inner.merge_cf(self.cf(cf), key, codec::counter_value(delta));
    }

    /// Adds a merge operand to a key of a family with a merge operator (`affinity`) within a batch.
    pub fn merge(&self, b: &mut Batch, cf: Cf, key: &[u8], operand: &[u8]) {
        debug_assert!(matches!(cf, Cf::Affinity));
        b.inner.merge_cf(self.cf(cf), key, operand);
    }

    /// Deletes every key in `[from, to)` of a family within a batch (a range tombstone: one
    /// write however many keys it covers).
    pub fn delete_range(&self, b: &mut Batch, cf: Cf, from: &[u8], to: &[u8]) {
        b.inner.delete_range_cf(self.cf(cf), from, to);
        b.range_deletes[cf as usize] = b.range_deletes[cf as usize].saturating_add(1);
    }

    /// Visits the keys of a family that start with `prefix` (any length; for families not
    /// scanned by user prefix), in key order, until `visit` returns `false`.
    pub fn scan_starting(&self, cf: Cf, prefix: &[u8], mut visit: impl FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        debug_assert!(!cf.prefix_scanned());
        self.scan_from(cf, prefix, |k, v| k.starts_with(prefix) && visit(k, v))
    }

    /// Visits a family's keys from `from` (inclusive) to its end, in key order, until `visit`
    /// returns `false` (for families used as queues: a scan starts after what was cleared, not
    /// over its tombstones).
    pub fn scan_from(&self, cf: Cf, from: &[u8], mut visit: impl FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        let mut it = self.db.raw_iterator_cf(self.cf(cf));
        it.seek(from);
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if !visit(k, v) {
                return Ok(());
            }
            it.next();
        }
        it.status().map_err(storage)
    }

    /// Fsyncs the WAL, making every earlier buffered write durable.
    pub fn sync_wal(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(storage)
    }

    /// Flushes memtables to SST files (used at shutdown and by space measurements).
    pub fn flush(&self) -> Result<()> {
        for cf in Cf::ALL {
            self.db.flush_cf(self.cf(cf)).map_err(storage)?;
        }
        Ok(())
    }

    /// Compacts one family fully (measurements and tests of the compaction filter).
    pub fn compact(&self, cf: Cf) {
        self.db.compact_range_cf(self.cf(cf), None::<&[u8]>, None::<&[u8]>);
    }

    /// A digest of every key and value of every family (tests compare it before and after
    /// requests that must change nothing). Reads a consistent view; cost is a full scan.
    pub fn checksum(&self) -> Result<u64> {
        use std::hash::{Hash, Hasher};
        let snap = self.db.snapshot();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for cf in Cf::ALL {
            cf.name().hash(&mut h);
            for item in snap.iterator_cf(self.cf(cf), IteratorMode::Start) {
                let (k, v) = item.map_err(storage)?;
                k.hash(&mut h);
                v.hash(&mut h);
            }
        }
        Ok(h.finish())
    }

    /// Background work RocksDB still owes, over every family.
    pub fn backlog(&self) -> Result<StorageBacklog> {
        let mut b = StorageBacklog::default();
        for cf in Cf::ALL {
            let get = |name: &str| self.property(cf, name).map(|v| v.unwrap_or(0));
            b.pending_compaction_bytes += get("rocksdb.estimate-pending-compaction-bytes")?;
            b.l0_files += get("rocksdb.num-files-at-level0")?;
            b.compactions_due += get("rocksdb.compaction-pending")?;
            b.flushes_due += get("rocksdb.mem-table-flush-pending")?;
        }
        // Database-wide figures (the same through any family).
        b.running = self
            .property(Cf::ALL[0], "rocksdb.num-running-compactions")?
            .unwrap_or(0)
            + self.property(Cf::ALL[0], "rocksdb.num-running-flushes")?.unwrap_or(0);
        Ok(b)
    }

    /// `(block cache bytes in use, memtable bytes over every family)`.
    pub fn memory(&self) -> Result<(u64, u64)> {
        // One cache is shared by every family: any family reports it.
        let cache = self.property(Cf::ALL[0], "rocksdb.block-cache-usage")?.unwrap_or(0);
        let mut memtables = 0;
        for cf in Cf::ALL {
            memtables += self.property(cf, "rocksdb.cur-size-all-mem-tables")?.unwrap_or(0);
        }
        Ok((cache, memtables))
    }

    /// An integer RocksDB property of one family (e.g. `rocksdb.total-sst-files-size`).
    pub fn property(&self, cf: Cf, name: &str) -> Result<Option<u64>> {
        self.db.property_int_value_cf(self.cf(cf), name).map_err(storage)
    }
}

impl Batch {
    /// Whether the batch holds no writes.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Number of writes in the batch.
    pub fn len(&self) -> usize {
        self.inner.len()
    }
}

#[cfg(test)]
mod tests;
