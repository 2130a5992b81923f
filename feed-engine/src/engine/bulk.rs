//! Bulk loading: many users or follow edges per fsynced batch, for imports, benchmarks and load
//! generators. The same records as `create_user` / `follow`, written 10,000 at a time.

use std::collections::{HashMap, HashSet};

use crate::codec::{Counter, UserRecord};
use crate::error::{Error, Result};
use crate::model::UserId;
use crate::store::Durability;
use crate::tables::{COUNTERS, HANDLES};

use super::graph::BLOCK;
use super::timelines::Merged;
use super::users::validate_handle;
use super::{Change, Engine};

/// Records per fsynced batch of a bulk load.
const BULK_BATCH: usize = 10_000;

impl Engine {
    /// Creates public users with the given handles, 10,000 per fsynced batch; returns their ids
    /// in order. Every handle is checked (format, duplicates in the list, taken) before anything
    /// is written, so bad input changes nothing; a storage failure part-way keeps the batches
    /// already written.
    pub fn create_users(&self, handles: &[String]) -> Result<Vec<UserId>> {
        let mut seen = HashSet::with_capacity(handles.len());
        for h in handles {
            validate_handle(h)?;
            if !seen.insert(h.as_str()) {
                return Err(Error::invalid(format!("handle {h:?} appears twice in the list")));
            }
        }
        let inner = self.inner();
        let _g = inner.handle_lock.lock();
        for chunk in handles.chunks(BULK_BATCH) {
            if let Some((h, _)) = chunk
                .iter()
                .zip(HANDLES.taken(&inner.store, chunk)?)
                .find(|(_, taken)| *taken)
            {
                return Err(Error::AlreadyExists(format!("handle {h:?} is taken")));
            }
        }
        let mut ids = Vec::with_capacity(handles.len());
        for chunk in handles.chunks(BULK_BATCH) {
            let first = inner
                .next_user
                .fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::SeqCst);
            let now = inner.now_ms();
            let mut b = inner.store.batch();
            let mut states = Vec::with_capacity(chunk.len());
            for (i, h) in chunk.iter().enumerate() {
                let id = first + i as u64;
                let rec = UserRecord {
                    handle: h.clone(),
                    private: false,
                    created_at_ms: now,
                };
                if let Some(st) = inner.put_new_user(&mut b, id, &rec) {
                    states.push((id, st));
                }
                ids.push(id);
            }
            inner.store.write(b, Durability::Sync)?;
            for (id, st) in states {
                inner.readers.set(id, st);
            }
        }
        Ok(ids)
    }

    /// Adds many `(follower, followee)` edges, 10,000 per fsynced batch, each with what
    /// [`Engine::follow`] writes (counters, the followee's recent posts in the follower's
    /// timeline). Edges that exist already (or twice in the list) are skipped. Returns how many
    /// edges were added. An unknown user, a self-follow, a private followee or a block between the
    /// pair fails the batch it is in before that batch is written. Graph changes by other callers
    /// wait while a batch is built and written.
    pub fn follow_many(&self, edges: &[(UserId, UserId)]) -> Result<usize> {
        let inner = self.inner();
        let mut added = 0;
        let mut seen = HashSet::new();
        for chunk in edges.chunks(BULK_BATCH) {
            // Every stripe, in order: nothing else changes the graph while this batch is built.
            let _all: Vec<_> = inner.locks.iter().map(|l| l.lock()).collect();
            let mut b = inner.store.batch();
            let mut counts: HashMap<(UserId, Counter), i64> = HashMap::new();
            let mut merged: HashMap<UserId, Merged> = HashMap::new();
            let (mut followers, mut followees) = (HashSet::new(), HashSet::new());
            for &(follower, followee) in chunk {
                if follower == followee {
                    return Err(Error::invalid(format!("user {follower} cannot follow themselves")));
                }
                if followers.insert(follower) {
                    inner.require_user(follower)?;
                }
                if followees.insert(followee) && self.is_private(followee)? {
                    return Err(Error::invalid(format!(
                        "user {followee} is private; bulk follows take public accounts only"
                    )));
                }
                if (inner.relation(followee, follower)? | inner.relation(follower, followee)?) & BLOCK != 0 {
                    return Err(Error::PermissionDenied(format!(
                        "users {follower} and {followee} block one another"
                    )));
                }
                if !seen.insert((follower, followee)) || inner.follows(follower, followee)? {
                    continue;
                }
                *merged.entry(follower).or_default() +=
                    inner.add_edge_uncounted(&mut b, follower, followee, inner.now_ms())?;
                *counts.entry((follower, Counter::Following)).or_default() += 1;
                *counts.entry((followee, Counter::Followers)).or_default() += 1;
            }
            for (&(user, c), &n) in &counts {
                COUNTERS.add(&inner.store, &mut b, user, c, n);
            }
            inner.store.write(b, Durability::Sync)?;
            for (&(user, c), &n) in &counts {
                if c == Counter::Following {
                    inner.adjust_following(user, n);
                    inner.cache.changed(Change::Graph(user));
                    added += n as usize;
                } else {
                    inner.cache.changed(Change::Followers(user));
                }
            }
            drop(_all);
            for (reader, n) in merged {
                inner.note_added(reader, n)?;
            }
        }
        Ok(added)
    }
}
