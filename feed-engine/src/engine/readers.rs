//! What the engine knows about each reader: their in-memory state (activity, whether their
//! timeline is materialised, trim bookkeeping), loaded from the `readers` family on first use,
//! and their follow graph as the read path needs it (cached in the hot layer).

use std::sync::Arc;

use dashmap::DashMap;

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
}

impl ReaderState {
    pub(crate) fn record(&self) -> ReaderRecord {
        ReaderRecord {
            last_read_ms: self.activity.last_read_ms,
            reads_per_day: self.activity.reads_per_day,
            materialized: self.materialized,
        }
    }
}

/// Every reader's in-memory state: the one owner of it. Callers take a copy or change one
/// reader's state in a closure run under that reader's lock; no reference into the map escapes.
#[derive(Default)]
pub(crate) struct Readers(DashMap<UserId, ReaderState>);

impl Readers {
    /// A copy of `reader`'s state, if loaded.
    pub fn get(&self, reader: UserId) -> Option<ReaderState> {
        self.0.get(&reader).map(|s| *s)
    }

    /// Whether `reader`'s state is loaded.
    pub fn contains(&self, reader: UserId) -> bool {
        self.0.contains_key(&reader)
    }

    /// Runs `f` on `reader`'s state if it is loaded.
    pub fn update<T>(&self, reader: UserId, f: impl FnOnce(&mut ReaderState) -> T) -> Option<T> {
        self.0.get_mut(&reader).map(|mut s| f(&mut s))
    }

    /// Runs `f` on `reader`'s state, starting from a fresh one if none is loaded.
    pub fn update_or_fresh<T>(&self, reader: UserId, f: impl FnOnce(&mut ReaderState) -> T) -> T {
        f(&mut self.0.entry(reader).or_insert_with(|| fresh_state(0)))
    }

    /// Sets `reader`'s state (a user just created).
    pub fn set(&self, reader: UserId, st: ReaderState) {
        self.0.insert(reader, st);
    }

    /// Sets `reader`'s state unless one is loaded already (a load racing a change keeps the change).
    pub fn set_if_absent(&self, reader: UserId, st: ReaderState) {
        self.0.entry(reader).or_insert(st);
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
        self.load_readers(&[reader])?;
        Ok(self.readers.get(reader).unwrap_or_else(|| fresh_state(0)))
    }

    /// Loads the states of the readers not yet in memory, with two multi-gets.
    pub fn load_readers(&self, readers: &[UserId]) -> Result<()> {
        let missing: Vec<UserId> = readers.iter().copied().filter(|&r| !self.readers.contains(r)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let recs = READERS.get_many(&self.store, &missing)?;
        let which: Vec<(UserId, Counter)> = missing.iter().map(|&r| (r, Counter::Following)).collect();
        let counts = COUNTERS.get_many(&self.store, &which)?;
        for ((r, rec), following) in missing.into_iter().zip(recs).zip(counts) {
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
                },
                // No record: the timeline may be missing pushes, so it is not trusted.
                None => ReaderState {
                    following,
                    ..fresh_state(0)
                },
            };
            self.readers.set_if_absent(r, st);
        }
        Ok(())
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
    }
}
