//! Two-hop fanout (cluster mode). The node that keeps a post's author walks the author's
//! follower list **once** per post: the readers it keeps get the post from its own fanout, and
//! the others are handed to a [`RemoteFanout`], which makes them durable as one batch per reader
//! partition in the log. Each reader's node applies its batch with [`Engine::apply_fanout`],
//! through the same per-reader push-or-pull decision as a local delivery. Nodes that do not keep
//! the author walk nothing for the post. Retractions (a deleted post) travel the same way.

use std::sync::Arc;

use crate::error::Result;
use crate::model::{Entry, UserId};
use crate::tables::FOLLOWING;

use super::timelines;
use super::{Change, Engine, Inner};

/// What a fanout batch does to the readers' timelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanoutKind {
    /// Put the entry in (a new post).
    Deliver,
    /// Take the entry out (a deleted post).
    Retract,
}

/// What the author's node sends on for one post: the kind, the entry, and its readers that other
/// nodes keep (in key order).
pub type Outgoing<'a> = (FanoutKind, Entry, &'a [UserId]);

/// Where the author's node sends the readers of its posts that other nodes keep.
pub trait RemoteFanout: Send + Sync {
    /// Makes the batches durable for the readers' nodes — the posts a fanout worker took
    /// together, so one message per reader partition can carry many posts — and returns once
    /// they are; called on fanout threads, which it may block. The jobs' pending records are
    /// cleared only after this returns `Ok`, so an error leaves them to run again at the next
    /// open: return one only when the node is stopping.
    fn send(&self, posts: &[Outgoing<'_>]) -> Result<()>;
}

impl Engine {
    /// Cluster mode: the author's node hands the readers it does not keep to `r`, and a node
    /// that does not keep a post's author leaves that post's fanout to the author's node. Set
    /// once, with the owner filter, before any write; false if one was already set.
    pub fn set_remote_fanout(&self, r: Arc<dyn RemoteFanout>) -> bool {
        self.inner().remote.set(r).is_ok()
    }

    /// Applies a fanout batch another node sent for readers this node keeps: delivers `entry`
    /// (deciding per reader whether to push) or retracts it. A reader who no longer follows the
    /// author (in this node's graph, which has applied every change before the batch) or whom
    /// this node does not keep is skipped, and a post deleted since is not delivered, so a batch
    /// applied twice or late changes nothing. Written without an fsync, like every applied
    /// event. Returns how many readers it reached.
    pub fn apply_fanout(&self, kind: FanoutKind, entry: &Entry, readers: &[UserId]) -> Result<usize> {
        let inner = self.inner();
        let mut kept = Vec::with_capacity(readers.len());
        for &r in readers {
            if inner.owns(r) && (r == entry.author || FOLLOWING.exists(&inner.store, r, entry.author)?) {
                kept.push(r);
            }
        }
        if kept.is_empty() {
            return Ok(0);
        }
        let n = kept.len();
        match kind {
            FanoutKind::Deliver => {
                if !crate::fanout::cache_post(inner, entry.post)? {
                    return Ok(0);
                }
                for chunk in kept.chunks(inner.cfg.fanout_batch) {
                    timelines::deliver_chunk(inner, entry, chunk)?;
                }
                if let Some(l) = inner.listener.get() {
                    for &r in &kept {
                        l.on_entry(r, entry);
                    }
                }
            }
            FanoutKind::Retract => {
                for chunk in kept.chunks(inner.cfg.fanout_batch) {
                    timelines::retract_chunk(inner, entry, chunk)?;
                }
                inner.cache.changed(Change::Retracted(entry.post));
            }
        }
        metrics::counter!(crate::metrics::REMOTE_FANOUT_READERS, "dir" => "applied").increment(n as u64);
        Ok(n)
    }
}

impl Inner {
    /// The two-hop sink, when this node is one of a cluster's.
    pub fn remote_fanout(&self) -> Option<&Arc<dyn RemoteFanout>> {
        self.remote.get()
    }
}
