//! Handing partitions between nodes (cluster mode). When a node takes over users another node
//! kept — a dead node's, or its own back after a restart — four things make it their keeper:
//!
//! - their own state restored from the partition's newest usable snapshot, when it is newer
//!   than what this node holds ([`Engine::restore_partitions`], `engine/snapshot.rs`);
//! - their own events after that replayed apart from the node's main position in the log, each with its
//!   sequence recorded as the partition's position ([`Engine::partition_seq`],
//!   [`crate::WriteCtx::replayed_for_partition`]), so a crash mid-replay resumes after the last
//!   event it applied and nothing is applied twice;
//! - whatever this node kept of those readers from an earlier time it held them forgotten
//!   ([`Engine::forget_readers`]): they read as readers never seen, whose feeds are pulled from the
//!   replicated outboxes (as deep as a pushed feed) until they are active again and their
//!   timelines are rebuilt;
//! - the recent posts of their authors fanned out again ([`Engine::refan_since`]): the old keeper
//!   may have died with their deliveries pending. Deliveries are idempotent, so a post fanned out
//!   twice reaches each reader once.
//!
//! The node that gives partitions away forgets their readers too, in the background
//! ([`Engine::forget_given_away`]): it would forget them when taking the partitions back, so
//! until then their timelines (a node's largest data) would only hold its disk.

use std::time::Duration;

use crate::codec::{JobKind, JobRecord};
use crate::error::{Error, Result};
use crate::model::{Entry, UserId};
use crate::store::Durability;
use crate::tables::{PENDING, POSTS, READERS};

use super::{Change, Engine, post_time_ms, timelines};

impl Engine {
    /// Partition `p`'s recorded position in the log (`None`: nothing recorded). The cluster
    /// decides what it means; the engine only keeps it, in the same batches as the partition's
    /// replayed events.
    pub fn partition_seq(&self, p: u32) -> Result<Option<u64>> {
        self.inner().store.partition_seq(p)
    }

    /// Records (or with `None` removes) partition `p`'s position, fsynced. A partition without
    /// one is held here; its readers are not forgotten by [`Engine::forget_given_away`] from then.
    pub fn set_partition_seq(&self, p: u32, seq: Option<u64>) -> Result<()> {
        let inner = self.inner();
        let _held = inner.readers.handover();
        inner.store.set_partition_seq(p, seq)
    }

    /// Forgets the stored timelines and reader records of every reader `which` selects (its
    /// partitions taken over): each then reads as a reader never seen — feeds pulled from the
    /// outboxes, a rebuild once active — instead of from a timeline that missed whatever another
    /// node delivered meanwhile. Fsynced. Returns how many readers were forgotten.
    pub fn forget_readers(&self, which: &dyn Fn(UserId) -> bool) -> Result<usize> {
        let inner = self.inner();
        let readers: Vec<UserId> = READERS.ids(&inner.store)?.into_iter().filter(|&r| which(r)).collect();
        for chunk in readers.chunks(1024) {
            let _handover = inner.readers.handover();
            timelines::forget(inner, chunk, Durability::Sync)?;
        }
        metrics::counter!(crate::metrics::READERS_FORGOTTEN, "why" => "taken").increment(readers.len() as u64);
        Ok(readers.len())
    }

    /// Forgets the stored timelines and reader records of readers whose partition this node
    /// does not hold (it records a position for it: given away, or never held): taking the
    /// partition again would forget them anyway ([`Engine::forget_readers`]), so keeping them
    /// only holds disk. `partition_of` maps a user to their partition. Each chunk is checked
    /// and deleted under the lock that marking a partition held also takes, so a partition
    /// taken back meanwhile keeps what it has rebuilt. Not fsynced: a crash leaves some for
    /// the next time. Returns how many readers were forgotten.
    pub fn forget_given_away(&self, partition_of: &dyn Fn(UserId) -> u32) -> Result<usize> {
        let inner = self.inner();
        let mut forgotten = 0;
        for chunk in READERS.ids(&inner.store)?.chunks(1024) {
            let _handover = inner.readers.handover();
            let mut away = std::collections::HashMap::new();
            let mut gone = Vec::with_capacity(chunk.len());
            for &r in chunk {
                let p = partition_of(r);
                let given = match away.get(&p) {
                    Some(&g) => g,
                    None => {
                        let g = inner.store.partition_seq(p)?.is_some();
                        away.insert(p, g);
                        g
                    }
                };
                if given {
                    gone.push(r);
                }
            }
            timelines::forget(inner, &gone, Durability::Buffered)?;
            forgotten += gone.len();
        }
        metrics::counter!(crate::metrics::READERS_FORGOTTEN, "why" => "given").increment(forgotten as u64);
        Ok(forgotten)
    }

    /// Which users this node keeps changed: fanout audiences cached under the old placement go.
    /// Call after the owner filter answers by the new placement.
    pub fn owners_changed(&self) {
        self.inner().cache.changed(Change::Owners);
    }

    /// Fans out again every post created at or after `since_ms` whose author `which` selects, as
    /// durable fanout jobs (the same a publish queues; a full backlog is waited out). Call once
    /// this node keeps those authors. Returns how many posts it queued.
    pub fn refan_since(&self, which: &dyn Fn(UserId) -> bool, since_ms: u64) -> Result<usize> {
        let inner = self.inner();
        let mut jobs = Vec::new();
        let mut err = None;
        POSTS.newest_first(&inner.store, |p| match p {
            Ok(p) => {
                // Ids are time-ordered per node; a second's slack covers nodes' interleaving.
                if p.created_at_ms.saturating_add(1000) < since_ms {
                    return false;
                }
                if p.created_at_ms >= since_ms && which(p.author) {
                    jobs.push(JobRecord {
                        kind: JobKind::Deliver,
                        entry: Entry {
                            rank: p.rank,
                            post: p.id,
                            author: p.author,
                            expires_at_ms: p.expires_at_ms,
                        },
                        pushed: p.pushed,
                    });
                }
                true
            }
            Err(e) => {
                err = Some(e);
                false
            }
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        for job in &jobs {
            loop {
                match inner.reserve_job() {
                    Ok(()) => break,
                    Err(Error::Overloaded(_)) => std::thread::sleep(Duration::from_millis(2)),
                    Err(e) => return Err(e),
                }
            }
            let mut b = inner.store.batch();
            PENDING.put(&inner.store, &mut b, job);
            if let Err(e) = inner.store.write(b, Durability::Sync) {
                inner.release_job();
                return Err(e);
            }
            inner.enqueue(*job);
        }
        Ok(jobs.len())
    }

    /// Drops the fanout jobs held at open (`hold_pending_fanout`) with their records, instead of
    /// running them: for a database restored from **another** node's checkpoint, whose
    /// unfinished fanout is that node's to finish (or its successor's, from its floor). Returns
    /// how many were dropped.
    pub fn discard_held_fanout(&self) -> Result<usize> {
        let inner = self.inner();
        let held = std::mem::take(&mut *inner.held.lock());
        if held.is_empty() {
            return Ok(0);
        }
        let mut b = inner.store.batch();
        for job in &held {
            PENDING.delete(&inner.store, &mut b, job);
        }
        inner.store.write(b, Durability::Sync)?;
        inner.backlog.fetch_sub(held.len(), std::sync::atomic::Ordering::SeqCst);
        metrics::gauge!(crate::metrics::FANOUT_QUEUE_DEPTH)
            .set(inner.backlog.load(std::sync::atomic::Ordering::SeqCst) as f64);
        Ok(held.len())
    }

    /// Creation time (ms) of the oldest post whose fanout this node has not finished, if any:
    /// a node that takes its authors over fans out again from there.
    pub fn oldest_pending_ms(&self) -> Result<Option<u64>> {
        Ok(PENDING
            .all(&self.inner().store)?
            .iter()
            .map(|j| post_time_ms(j.entry.post))
            .min())
    }
}
