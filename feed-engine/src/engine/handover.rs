//! Handing partitions between nodes (cluster mode). When a node takes over users another node
//! kept — a dead node's, or its own back after a restart — three things make it their keeper:
//!
//! - their own events replayed apart from the node's main position in the log, each with its
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

use std::time::Duration;

use crate::codec::{JobKind, JobRecord};
use crate::error::{Error, Result};
use crate::model::{Entry, UserId};
use crate::store::Durability;
use crate::tables::{PENDING, POSTS, READERS, TIMELINE};

use super::{Change, Engine, post_time_ms};

impl Engine {
    /// Partition `p`'s recorded position in the log (`None`: nothing recorded). The cluster
    /// decides what it means; the engine only keeps it, in the same batches as the partition's
    /// replayed events.
    pub fn partition_seq(&self, p: u32) -> Result<Option<u64>> {
        self.inner().store.partition_seq(p)
    }

    /// Records (or with `None` removes) partition `p`'s position, fsynced.
    pub fn set_partition_seq(&self, p: u32, seq: Option<u64>) -> Result<()> {
        self.inner().store.set_partition_seq(p, seq)
    }

    /// Forgets the stored timelines and reader records of every reader `which` selects (its
    /// partitions taken over): each then reads as a reader never seen — feeds pulled from the
    /// outboxes, a rebuild once active — instead of from a timeline that missed whatever another
    /// node delivered meanwhile. Fsynced. Returns how many readers were forgotten.
    pub fn forget_readers(&self, which: &dyn Fn(UserId) -> bool) -> Result<usize> {
        let inner = self.inner();
        let readers: Vec<UserId> = READERS.ids(&inner.store)?.into_iter().filter(|&r| which(r)).collect();
        for chunk in readers.chunks(1024) {
            let mut b = inner.store.batch();
            for &r in chunk {
                TIMELINE.delete_all(&inner.store, &mut b, r);
                READERS.delete(&inner.store, &mut b, r);
            }
            inner.store.write(b, Durability::Sync)?;
            for &r in chunk {
                inner.readers.forget(r);
            }
            inner.cache.changed(Change::Timelines(chunk));
        }
        Ok(readers.len())
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
