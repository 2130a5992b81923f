//! A consistent, read-only view of the whole database at one moment (a RocksDB snapshot): what a
//! partition's snapshot is exported from while the node goes on applying events.

use rocksdb::{IteratorMode, Snapshot};

use super::{Cf, SeqSlot, Store, recorded, storage};
use crate::error::Result;

/// The database as it was when [`Store::view`] was called; later writes are not seen.
pub struct View<'a> {
    store: &'a Store,
    snap: Snapshot<'a>,
}

impl Store {
    /// A consistent view of every family as of now.
    pub fn view(&self) -> View<'_> {
        View {
            store: self,
            snap: self.db.snapshot(),
        }
    }
}

impl View<'_> {
    /// One value, as of the view.
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.snap.get_cf(self.store.cf(cf), key).map_err(storage)
    }

    /// Visits every key of a family in order, as of the view, until `visit` returns `false`.
    pub fn scan_all(&self, cf: Cf, mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool>) -> Result<()> {
        for item in self
            .snap
            .iterator_cf_opt(self.store.cf(cf), super::total_order(), IteratorMode::Start)
        {
            let (k, v) = item.map_err(storage)?;
            if !visit(&k, &v)? {
                break;
            }
        }
        Ok(())
    }

    /// The last log sequence applied, as of the view (0: none).
    pub fn applied_seq(&self) -> Result<u64> {
        Ok(recorded(|k| self.get(Cf::Meta, k), SeqSlot::Log)?.unwrap_or(0))
    }

    /// Partition `p`'s recorded position as of the view (`None`: held then).
    pub fn partition_seq(&self, p: u32) -> Result<Option<u64>> {
        recorded(|k| self.get(Cf::Meta, k), SeqSlot::Partition(p))
    }
}
