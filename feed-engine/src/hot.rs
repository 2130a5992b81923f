//! The hot layer: byte-bounded in-memory caches over the disk engine (first feed pages, author
//! outbox heads, readers' follow lists). Kept in step by the writers — fanout, publish, graph
//! changes invalidate exactly the keys they touch — instead of expiring blindly. Lookup
//! counters are registered when a map is created: install the metrics recorder before opening
//! the engine (the server does).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use parking_lot::Mutex;

const STRIPES: usize = 4096;

/// What a cached value costs in memory, roughly.
pub trait Weigh {
    /// Approximate heap and inline bytes held.
    fn weight(&self) -> usize;
}

struct Slot<V> {
    value: Arc<V>,
    weight: usize,
    touched: AtomicU32,
}

/// What [`HotMap::update`] does with a cached value.
pub enum Patch<V> {
    /// Leave it as it is.
    Keep,
    /// Put this in its place.
    Replace(V),
    /// Drop it (the next reader fills it again).
    Drop,
}

/// A concurrent map from user id to `Arc<V>`, bounded by bytes, safe against the classic
/// fill/invalidate race: a value computed before an invalidation is never inserted after it.
///
/// Protocol: a filler reads [`HotMap::version`] before computing, then calls
/// [`HotMap::insert_if_current`]; an invalidator calls [`HotMap::invalidate`], which bumps the key's
/// stripe version *before* removing the entry under the map's shard lock.
pub struct HotMap<V> {
    name: &'static str,
    /// Lookup counters, registered once (a `counter!` per lookup built its key every time).
    hits: metrics::Counter,
    misses: metrics::Counter,
    map: DashMap<u64, Slot<V>>,
    versions: Box<[AtomicU64]>,
    bytes: AtomicUsize,
    budget: usize,
    tick: AtomicU32,
    evicting: Mutex<()>,
}

impl<V: Weigh> HotMap<V> {
    /// An empty map that holds at most about `budget` bytes.
    pub fn new(name: &'static str, budget: usize) -> Self {
        let lookups = |outcome: &'static str| metrics::counter!(crate::metrics::CACHE_LOOKUPS, "cache" => name, "outcome" => outcome);
        HotMap {
            name,
            hits: lookups("hit"),
            misses: lookups("miss"),
            map: DashMap::new(),
            versions: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            bytes: AtomicUsize::new(0),
            budget,
            tick: AtomicU32::new(1),
            evicting: Mutex::new(()),
        }
    }

    fn stripe(&self, key: u64) -> &AtomicU64 {
        // Fibonacci hashing spreads sequential ids over the stripes.
        &self.versions[(key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize % STRIPES]
    }

    /// The version to read before computing a value for `key`.
    pub fn version(&self, key: u64) -> u64 {
        self.stripe(key).load(Ordering::Acquire)
    }

    /// The cached value, counting a hit or a miss.
    pub fn get(&self, key: u64) -> Option<Arc<V>> {
        let hit = self.map.get(&key).map(|s| {
            s.touched.store(self.tick.load(Ordering::Relaxed), Ordering::Relaxed);
            s.value.clone()
        });
        match hit {
            Some(_) => self.hits.increment(1),
            None => self.misses.increment(1),
        }
        hit
    }

    /// Whether `key` has a value, without counting a lookup or touching it.
    pub fn contains(&self, key: u64) -> bool {
        self.map.contains_key(&key)
    }

    /// Inserts `value` unless `key` was invalidated since `version` was read. Returns whether it did.
    pub fn insert_if_current(&self, key: u64, version: u64, value: Arc<V>) -> bool {
        let weight = value.weight() + 64;
        if weight > self.budget / 4 {
            return false;
        }
        {
            let entry = self.map.entry(key);
            if self.version(key) != version {
                return false;
            }
            let slot = Slot {
                value,
                weight,
                touched: AtomicU32::new(self.tick.fetch_add(1, Ordering::Relaxed)),
            };
            match entry {
                dashmap::Entry::Occupied(mut o) => {
                    let old = o.insert(slot);
                    self.bytes.fetch_sub(old.weight, Ordering::Relaxed);
                }
                dashmap::Entry::Vacant(v) => {
                    v.insert(slot);
                }
            }
            self.bytes.fetch_add(weight, Ordering::Relaxed);
        }
        if self.bytes.load(Ordering::Relaxed) > self.budget {
            self.evict();
        }
        true
    }

    /// Rewrites `key`'s value in place, if it has one, with what `f` makes of it, and — like
    /// [`HotMap::invalidate`] — makes any fill that started before this call a no-op (a fill
    /// computed before the change it describes would undo it). Runs `f` under the key's lock.
    pub fn update(&self, key: u64, f: impl FnOnce(&V) -> Patch<V>) {
        let entry = self.map.entry(key);
        self.stripe(key).fetch_add(1, Ordering::AcqRel);
        let dashmap::Entry::Occupied(mut o) = entry else { return };
        match f(&o.get().value) {
            Patch::Keep => {}
            Patch::Replace(v) => {
                let slot = o.get_mut();
                let weight = v.weight() + 64;
                self.bytes.fetch_sub(slot.weight, Ordering::Relaxed);
                self.bytes.fetch_add(weight, Ordering::Relaxed);
                slot.value = Arc::new(v);
                slot.weight = weight;
            }
            Patch::Drop => {
                let (_, old) = o.remove_entry();
                self.bytes.fetch_sub(old.weight, Ordering::Relaxed);
            }
        }
    }

    /// Drops `key`'s value and makes any fill that started before this call a no-op.
    pub fn invalidate(&self, key: u64) {
        self.stripe(key).fetch_add(1, Ordering::AcqRel);
        if let Some((_, old)) = self.map.remove(&key) {
            self.bytes.fetch_sub(old.weight, Ordering::Relaxed);
        }
    }

    /// Drops every value and makes every fill that started before this call a no-op.
    pub fn clear(&self) {
        for v in self.versions.iter() {
            v.fetch_add(1, Ordering::AcqRel);
        }
        self.map.retain(|_, slot| {
            self.bytes.fetch_sub(slot.weight, Ordering::Relaxed);
            false
        });
    }

    /// Bytes currently held (approximate).
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Number of cached keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Evicts the least recently touched half (by insertion/touch tick) until under 3/4 of the
    /// budget: one O(n) sweep per eviction, amortised over the inserts that filled the budget.
    fn evict(&self) {
        let Some(_guard) = self.evicting.try_lock() else { return };
        let now = self.tick.load(Ordering::Relaxed);
        let mut span = now / 2;
        while self.bytes.load(Ordering::Relaxed) > self.budget / 4 * 3 {
            let cutoff = now.saturating_sub(span);
            let mut freed = 0usize;
            self.map.retain(|_, s| {
                let keep = s.touched.load(Ordering::Relaxed) >= cutoff;
                if !keep {
                    freed += s.weight;
                }
                keep
            });
            self.bytes.fetch_sub(freed, Ordering::Relaxed);
            metrics::counter!(crate::metrics::CACHE_EVICTED_BYTES, "cache" => self.name).increment(freed as u64);
            if span == 0 {
                break;
            }
            span /= 2;
        }
    }
}

impl<T> Weigh for Vec<T> {
    fn weight(&self) -> usize {
        self.capacity() * std::mem::size_of::<T>() + 24
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_fill_after_invalidate_is_refused() {
        let m: HotMap<Vec<u64>> = HotMap::new("t", 1 << 20);
        let v = m.version(7);
        m.invalidate(7);
        assert!(!m.insert_if_current(7, v, Arc::new(vec![1])));
        assert!(m.get(7).is_none());
        let v = m.version(7);
        assert!(m.insert_if_current(7, v, Arc::new(vec![2])));
        assert_eq!(*m.get(7).unwrap(), vec![2]);
    }

    #[test]
    fn an_update_rewrites_in_place_and_refuses_fills_begun_before_it() {
        let m: HotMap<Vec<u64>> = HotMap::new("t", 1 << 20);
        m.update(3, |_| Patch::Replace(vec![9]));
        assert!(m.get(3).is_none(), "nothing cached: nothing to rewrite");
        let v = m.version(3);
        assert!(m.insert_if_current(3, v, Arc::new(vec![1])));
        let before = m.version(3);
        m.update(3, |old| Patch::Replace([old.as_slice(), &[2]].concat()));
        assert_eq!(*m.get(3).unwrap(), vec![1, 2]);
        assert!(
            !m.insert_if_current(3, before, Arc::new(vec![7])),
            "a fill from before the update"
        );
        m.update(3, |_| Patch::Drop);
        assert!(m.get(3).is_none());
    }

    #[test]
    fn stays_within_budget() {
        let m: HotMap<Vec<u64>> = HotMap::new("t", 64 * 1024);
        for k in 0..10_000u64 {
            let v = m.version(k);
            m.insert_if_current(k, v, Arc::new(vec![k; 16]));
            assert!(m.bytes() <= 64 * 1024 + 512, "over budget at {k}: {}", m.bytes());
        }
        assert!(m.len() > 50, "eviction kept too little: {}", m.len());
        assert!(m.get(9_999).is_some(), "the newest entry survives eviction");
    }
}
