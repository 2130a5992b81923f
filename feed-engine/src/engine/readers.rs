//! What the engine knows about each reader: their in-memory state (activity, whether their
//! timeline is materialised, trim bookkeeping), loaded from the `readers` family on first use
//! and bounded in number, and their follow graph as the read path needs it (cached in the hot
//! layer).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use parking_lot::{Mutex, RwLock};

use crate::codec::{Counter, ReaderRecord};
use crate::error::Result;
use crate::hot::Weigh;
use crate::model::UserId;
use crate::policy::Activity;
use crate::tables::{COUNTERS, FOLLOWING, READERS, RELATIONS};

use super::Inner;

/// What the engine keeps in memory about a reader.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReaderState {
    pub activity: Activity,
    /// The timeline holds every pushed post since the reader was last made push-mode.
    pub materialized: bool,
    /// A rebuild job is queued or running: fanout pushes to the reader meanwhile.
    pub rebuilding: bool,
    /// Accounts followed (a copy of the counter, for the policy).
    pub following: u64,
    /// When the activity was last written to disk.
    pub persisted_ms: u64,
    /// Timeline entries written for this reader, counted after each write lands.
    pub delivered: u32,
    /// After the last trim: `(entries kept, delivered when its scan started)`. The length is at
    /// most `kept + (delivered − then)`; `None` after a restart, until a sampled trim runs.
    pub trimmed_at: Option<(u32, u32)>,
    /// `(rank, post)` of the first entry the last trim deleted: everything from it on is gone,
    /// so the next trim's scan stops there instead of stepping over those tombstones. In memory
    /// only; cleared when an entry may have been added at or beyond it.
    pub trim_floor: Option<(u64, u64)>,
    /// At and above this `(rank, post)` the timeline holds every entry of the feed; below it,
    /// the outboxes do (stored in the reader's record: see `ReaderRecord::cut`).
    pub cut: Option<(u64, u64)>,
    /// Writes of this reader's record begun and not yet landed: while any is in flight the
    /// stored record may say less than this state, so the state is not evicted.
    pub unsaved: u16,
}

impl ReaderState {
    pub(crate) fn record(&self) -> ReaderRecord {
        ReaderRecord {
            last_read_ms: self.activity.last_read_ms,
            reads_per_day: self.activity.reads_per_day,
            materialized: self.materialized,
            cut: self.cut,
        }
    }

    /// Whether the stored record holds everything this state must not forget: no rebuild under
    /// way (fanout pushes to the reader meanwhile), no record write in flight, the activity
    /// written. Trim bookkeeping is lost on eviction as on a restart (the next sampled trim
    /// relearns it).
    fn evictable(&self) -> bool {
        !self.rebuilding && self.unsaved == 0 && self.activity.last_read_ms <= self.persisted_ms
    }
}

/// Every reader's in-memory state: the one owner of it. Callers take a copy or change one
/// reader's state in a closure run under that reader's lock; no reference into the map escapes.
/// Each state has its own lock, taken under the map shard's *shared* lock: a read records its
/// activity without excluding the other readers of its shard (only loads and sweeps take a
/// shard exclusively).
///
/// Bounded: past `cap` states, a sweep drops the least recently read of the evictable ones
/// (down to 90 % of `cap`); they load again from the `readers` family on next use. A load's
/// read of the record and its insert never straddle a sweep, and a state is evictable only
/// once its record says all it does, so what loads again is what was dropped.
pub(crate) struct Readers {
    map: DashMap<UserId, Mutex<ReaderState>>,
    cap: usize,
    /// Batched loads hold it shared from their read of the records to their inserts; a sweep
    /// holds it exclusively.
    gate: RwLock<()>,
    sweeping: AtomicBool,
    /// Cluster mode: held while readers of partitions changing hands are forgotten, and while
    /// a partition is marked held (`Engine::set_partition_seq`), so forgetting the readers of a
    /// partition given away never runs past the moment it is taken back.
    handover: Mutex<()>,
}

impl Readers {
    /// No state loaded; at most about `cap` kept.
    pub fn new(cap: usize) -> Readers {
        Readers {
            map: DashMap::new(),
            cap: cap.max(1),
            gate: RwLock::new(()),
            sweeping: AtomicBool::new(false),
            handover: Mutex::new(()),
        }
    }

    /// The lock of readers changing hands between nodes (see the field).
    pub fn handover(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.handover.lock()
    }

    /// States in memory.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// A copy of `reader`'s state, if loaded.
    pub fn get(&self, reader: UserId) -> Option<ReaderState> {
        self.map.get(&reader).map(|s| *s.lock())
    }

    /// Runs `f` on `reader`'s state if it is loaded.
    pub fn update<T>(&self, reader: UserId, f: impl FnOnce(&mut ReaderState) -> T) -> Option<T> {
        self.map.get(&reader).map(|s| f(&mut s.lock()))
    }

    /// Runs `f` on `reader`'s state, loading it with `load` first if it is not in memory (under
    /// the reader's lock: `load` must only read the store, never this map).
    pub fn update_or_load<T>(
        &self,
        reader: UserId,
        load: impl FnOnce() -> Result<ReaderState>,
        f: impl FnOnce(&mut ReaderState) -> T,
    ) -> Result<T> {
        if let Some(s) = self.map.get(&reader) {
            return Ok(f(&mut s.lock()));
        }
        let (out, inserted) = match self.map.entry(reader) {
            Entry::Occupied(mut o) => (f(o.get_mut().get_mut()), false),
            Entry::Vacant(v) => {
                let mut s = v.insert(Mutex::new(load()?));
                (f(s.get_mut()), true)
            }
        };
        if inserted {
            self.maybe_sweep();
        }
        Ok(out)
    }

    /// Loads, with one call of `load`, the states of those of `readers` not in memory; a state
    /// set meanwhile is kept.
    pub fn load_missing(
        &self,
        readers: &[UserId],
        load: impl FnOnce(&[UserId]) -> Result<Vec<ReaderState>>,
    ) -> Result<()> {
        let missing: Vec<UserId> = readers.iter().copied().filter(|r| !self.map.contains_key(r)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        {
            let _shared = self.gate.read();
            let states = load(&missing)?;
            for (r, st) in missing.into_iter().zip(states) {
                self.map.entry(r).or_insert_with(|| Mutex::new(st));
            }
        }
        self.maybe_sweep();
        Ok(())
    }

    /// Drops `reader`'s state from memory (its record is gone: the next read loads a fresh one).
    pub fn forget(&self, reader: UserId) {
        self.map.remove(&reader);
    }

    /// Sets `reader`'s state (a user just created, its record written).
    pub fn set(&self, reader: UserId, st: ReaderState) {
        self.map.insert(reader, Mutex::new(st));
        self.maybe_sweep();
    }

    /// Past the cap, drops the least recently read evictable states down to 90 % of it (one
    /// sweep at a time; the others go on).
    fn maybe_sweep(&self) {
        if self.map.len() <= self.cap || self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let removed = {
            let _exclusive = self.gate.write();
            self.sweep()
        };
        self.sweeping.store(false, Ordering::Release);
        metrics::counter!(crate::metrics::READER_EVICTIONS).increment(removed as u64);
    }

    fn sweep(&self) -> usize {
        let len = self.map.len();
        if len <= self.cap {
            return 0;
        }
        let mut ages: Vec<u64> = self
            .map
            .iter()
            .map(|s| *s.lock())
            .filter(|s| s.evictable())
            .map(|s| s.activity.last_read_ms)
            .collect();
        let n = (len - self.cap * 9 / 10).min(ages.len());
        if n == 0 {
            return 0;
        }
        let cutoff = *ages.select_nth_unstable(n - 1).1;
        let mut removed = 0;
        self.map.retain(|_, s| {
            let s = s.get_mut();
            let evict = removed < n && s.evictable() && s.activity.last_read_ms <= cutoff;
            removed += evict as usize;
            !evict
        });
        removed
    }
}

/// A reader's follow list and the authors they hid, sorted for binary search.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReaderGraph {
    pub following: Vec<UserId>,
    /// Blocked or muted by the reader.
    pub hidden: Vec<UserId>,
}

impl ReaderGraph {
    pub fn follows(&self, u: UserId) -> bool {
        self.following.binary_search(&u).is_ok()
    }
    pub fn hides(&self, u: UserId) -> bool {
        self.hidden.binary_search(&u).is_ok()
    }
}

impl Weigh for ReaderGraph {
    fn weight(&self) -> usize {
        (self.following.capacity() + self.hidden.capacity()) * 8 + 48
    }
}

impl Inner {
    /// The in-memory state of a reader, loaded from disk on first use.
    pub fn reader_state(&self, reader: UserId) -> Result<ReaderState> {
        if let Some(s) = self.readers.get(reader) {
            return Ok(s);
        }
        self.readers
            .update_or_load(reader, || self.stored_reader(reader), |s| *s)
    }

    /// Runs `f` on `reader`'s state, loaded from disk if it is not in memory.
    pub fn with_reader<T>(&self, reader: UserId, f: impl FnOnce(&mut ReaderState) -> T) -> Result<T> {
        self.readers.update_or_load(reader, || self.stored_reader(reader), f)
    }

    /// Loads the states of the readers not yet in memory, with two multi-gets.
    pub fn load_readers(&self, readers: &[UserId]) -> Result<()> {
        self.readers
            .load_missing(readers, |missing| self.stored_readers(missing))
    }

    fn stored_reader(&self, reader: UserId) -> Result<ReaderState> {
        Ok(self.stored_readers(&[reader])?.pop().unwrap_or_else(|| fresh_state(0)))
    }

    /// Readers' states as their stored records (and follow counters) give them.
    fn stored_readers(&self, readers: &[UserId]) -> Result<Vec<ReaderState>> {
        let recs = READERS.get_many(&self.store, readers)?;
        let which: Vec<(UserId, Counter)> = readers.iter().map(|&r| (r, Counter::Following)).collect();
        let counts = COUNTERS.get_many(&self.store, &which)?;
        let mut out = Vec::with_capacity(readers.len());
        for (rec, following) in recs.into_iter().zip(counts) {
            let st = match rec {
                Some(rec) => ReaderState {
                    activity: Activity {
                        last_read_ms: rec.last_read_ms,
                        reads_per_day: rec.reads_per_day,
                    },
                    materialized: rec.materialized,
                    rebuilding: false,
                    following,
                    persisted_ms: rec.last_read_ms,
                    delivered: 0,
                    trimmed_at: None,
                    trim_floor: None,
                    cut: rec.cut,
                    unsaved: 0,
                },
                // No record: the timeline may be missing pushes, so it is not trusted.
                None => ReaderState {
                    following,
                    ..fresh_state(0)
                },
            };
            out.push(st);
        }
        Ok(out)
    }

    /// Writes `st` (a copy taken with `unsaved` raised) as `reader`'s record, then lowers
    /// `unsaved`. If the state's `materialized` or `cut` changed while the write was in flight, the
    /// write may have landed after the change's own and undone it, so the current state is
    /// written again. A failed write leaves the state unevictable.
    pub fn save_reader(&self, reader: UserId, mut st: ReaderState) -> Result<()> {
        loop {
            let mut b = self.store.batch();
            self.put_reader(&mut b, reader, &st);
            self.store.write(b, crate::store::Durability::Buffered)?;
            let again = self.readers.update(reader, |s| {
                if s.materialized == st.materialized && s.cut == st.cut {
                    s.unsaved = s.unsaved.saturating_sub(1);
                    None
                } else {
                    Some(*s)
                }
            });
            match again.flatten() {
                Some(now) => st = now,
                None => return Ok(()),
            }
        }
    }

    /// Writes a reader's record into a batch.
    pub fn put_reader(&self, b: &mut crate::store::Batch, reader: UserId, st: &ReaderState) {
        READERS.put(&self.store, b, reader, &st.record());
    }

    /// The reader's follow list and hidden authors, from the hot layer or disk. Called only for
    /// users that exist (`FeedCache::known_user` relies on it).
    pub fn reader_graph(&self, reader: UserId) -> Result<Arc<ReaderGraph>> {
        if let Some(g) = self.cache.graphs().get(reader) {
            return Ok(g);
        }
        let v = self.cache.graphs().version(reader);
        let mut g = ReaderGraph::default();
        FOLLOWING.scan(&self.store, reader, None, |f| {
            g.following.push(f);
            true
        })?;
        RELATIONS.scan(&self.store, reader, |o, flags| {
            if flags != 0 {
                g.hidden.push(o);
            }
            true
        })?;
        let g = Arc::new(g);
        self.cache.graphs().fill(reader, v, g.clone());
        Ok(g)
    }
}

/// The state of a reader with no history: a complete (empty) timeline, never read.
pub(crate) fn fresh_state(following: u64) -> ReaderState {
    ReaderState {
        activity: Activity::default(),
        materialized: false,
        rebuilding: false,
        following,
        persisted_ms: 0,
        delivered: 0,
        trimmed_at: None,
        trim_floor: None,
        cut: None,
        unsaved: 0,
    }
}
