//! The store's RocksDB options: what the engine exposes ([`StoreOptions`]) and each column
//! family's tuning (prefix extractors, bloom filters, merge operators, compaction filter).

use std::sync::Arc;

use rocksdb::compaction_filter::Decision;
use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, MergeOperands, Options, SliceTransform};

use super::Cf;
use crate::clock::Clock;
use crate::codec::{self, PREFIX_LEN};

/// RocksDB tuning the engine exposes.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Shared LRU block cache for all column families.
    pub block_cache_bytes: usize,
    /// Memtable size per column family.
    pub write_buffer_bytes: usize,
    /// Half-life of the `affinity` family's decayed values, which its merge operator folds.
    pub affinity_halving_ms: u64,
    /// Range deletions a family's memtable takes before the store switches it for a new one
    /// (0: never; see [`RANGE_DELETES_PER_MEMTABLE`]).
    pub range_deletes_per_memtable: usize,
}

/// The default of [`StoreOptions::range_deletes_per_memtable`]. RocksDB keeps a memtable's
/// range tombstones as a list it re-fragments on the first read after each range deletion, so
/// with many of them in one memtable (a node forgetting a million readers' timelines writes a
/// million) every timeline read after each write pays for all of them: measured with
/// `examples/forget_tombstones`, one thread's reads during such a forget ran at 1,400–3,700/s
/// with a p99 of 5–28 ms, against ~200,000/s at 5 µs before it. A memtable switched out is
/// immutable, and RocksDB fragments an immutable memtable's tombstones once, as it does a
/// file's. Switching every 16,384 made the forget 10× slower and kept the reads' p99 under
/// 40 µs; every 1,024 flushed too often, every 65,536 stalled reads again (SCALING.md).
pub const RANGE_DELETES_PER_MEMTABLE: usize = 16_384;

fn sum_merge(_key: &[u8], existing: Option<&[u8]>, ops: &MergeOperands) -> Option<Vec<u8>> {
    let mut total = codec::decode_counter(existing);
    for op in ops {
        total = total.wrapping_add(codec::decode_counter(Some(op)));
    }
    Some(codec::counter_value(total).to_vec())
}

/// Folds decayed values (`affinity`): each operand is an amount at a time; the sum decays to
/// the latest of them. Operands that do not decode count as nothing, like counters'.
fn decayed_merge(halving_ms: u64) -> impl Fn(&[u8], Option<&[u8]>, &MergeOperands) -> Option<Vec<u8>> + Clone {
    move |_key, existing, ops| {
        let mut acc = existing.and_then(codec::decode_decayed).unwrap_or_default();
        for op in ops {
            if let Some(d) = codec::decode_decayed(op) {
                acc = acc.combined(&d, halving_ms);
            }
        }
        Some(codec::encode_decayed(&acc).to_vec())
    }
}

pub(super) fn cf_options(cf: Cf, cache: &Cache, o: &StoreOptions, clock: &Arc<dyn Clock>) -> Options {
    let mut opts = Options::default();
    opts.set_write_buffer_size(o.write_buffer_bytes);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    table.set_cache_index_and_filter_blocks_with_high_priority(true);
    table.set_format_version(5);
    if cf.prefix_scanned() {
        opts.set_prefix_extractor(SliceTransform::create_fixed_prefix(PREFIX_LEN));
        opts.set_memtable_prefix_bloom_ratio(0.1);
    }
    opts.set_block_based_table_factory(&table);
    opts.set_compression_type(DBCompressionType::Lz4);
    match cf {
        Cf::Counters | Cf::TagNames => {
            opts.set_merge_operator_associative("feedline.sum_i64", sum_merge);
            // A read folds at most this many operands of one key from the memtable, however
            // often it is liked: past it the write folds them (the files fold at compaction).
            opts.set_max_successive_merges(MAX_SUCCESSIVE_MERGES);
        }
        Cf::Affinity => {
            opts.set_merge_operator_associative("feedline.decayed_sum", decayed_merge(o.affinity_halving_ms));
            opts.set_max_successive_merges(MAX_SUCCESSIVE_MERGES);
        }
        Cf::Timeline | Cf::Outbox | Cf::Ranked => {
            // Expired stories leave timelines and outboxes at compaction.
            let clock = clock.clone();
            opts.set_compaction_filter(
                "feedline.drop_expired",
                move |_level: u32, _key: &[u8], value: &[u8]| match codec::value_expiry(value) {
                    Some(t) if t <= clock.now_ms() => Decision::Remove,
                    _ => Decision::Keep,
                },
            )
        }
        _ => {}
    }
    opts
}

/// Merge operands of one counter a memtable holds before a write folds them.
const MAX_SUCCESSIVE_MERGES: usize = 32;
