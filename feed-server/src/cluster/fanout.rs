//! Two-hop fanout through the log. The node that keeps a post's author walks the follower list
//! once (in the engine) and hands over the followers other nodes keep, for all the posts a
//! fanout worker took together; this groups them by reader partition and appends one message
//! per partition (more only past [`BATCH_READERS`] readers) to that partition's fanout subject,
//! which only the partition's owner consumes. The engine clears the posts' pending fanout
//! records only once every message is acknowledged by the log, so a crash in between sends them
//! again: the message id (a hash of the content) makes the log keep one copy within its dedupe
//! window, and applying a batch twice changes nothing after that.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use feed_engine::{Entry, FanoutKind, Outgoing, RemoteFanout, UserId};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::ring::Ring;
use super::subjects;

/// Readers in one fanout message, at most (about 20 bytes each as JSON: well under NATS's 1 MB).
pub const BATCH_READERS: usize = 4096;

/// One post's deliveries (or retractions) for readers of one partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutItem {
    /// Take the entry out instead of putting it in.
    pub retract: bool,
    /// The entry's rank.
    pub rank: u64,
    /// The post.
    pub post: u64,
    /// Its author.
    pub author: UserId,
    /// Expiry of an ephemeral post.
    pub expires_at_ms: Option<u64>,
    /// The readers, all in the message's partition.
    pub readers: Vec<UserId>,
}

/// One fanout message: the items for one reader partition, applied in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutBatch {
    /// The posts' items.
    pub items: Vec<FanoutItem>,
}

impl FanoutItem {
    /// The entry and what to do with it.
    pub fn entry(&self) -> (FanoutKind, Entry) {
        let kind = if self.retract {
            FanoutKind::Retract
        } else {
            FanoutKind::Deliver
        };
        let e = Entry {
            rank: self.rank,
            post: self.post,
            author: self.author,
            expires_at_ms: self.expires_at_ms,
        };
        (kind, e)
    }
}

/// The engine's [`RemoteFanout`] in a cluster: batches appended to the log.
pub struct LogFanout {
    pub(super) js: jetstream::Context,
    pub(super) ring: Ring,
    pub(super) rt: tokio::runtime::Handle,
    pub(super) stop: watch::Receiver<bool>,
}

/// (subject, message id, payload) of one append.
type Append = (String, String, Vec<u8>);

/// FNV-1a over a message's payload: its message id, so a batch whose readers changed (the
/// follower list moved between a crash and the retry) is not mistaken for the old one.
fn content_hash(payload: &[u8]) -> u64 {
    payload.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl RemoteFanout for LogFanout {
    fn send(&self, posts: &[Outgoing<'_>]) -> feed_engine::Result<()> {
        // Per partition, the posts' items in the order given, cut where a message is full.
        let mut by_partition: BTreeMap<u32, Vec<Vec<FanoutItem>>> = BTreeMap::new();
        for &(kind, entry, readers) in posts {
            let mut mine: BTreeMap<u32, Vec<UserId>> = BTreeMap::new();
            for &r in readers {
                mine.entry(self.ring.partition(r)).or_default().push(r);
            }
            for (p, readers) in mine {
                for chunk in readers.chunks(BATCH_READERS) {
                    let msgs = by_partition.entry(p).or_default();
                    let held: usize = msgs
                        .last()
                        .map_or(BATCH_READERS, |m| m.iter().map(|i| i.readers.len()).sum());
                    if held + chunk.len() > BATCH_READERS {
                        msgs.push(Vec::new());
                    }
                    if let Some(m) = msgs.last_mut() {
                        m.push(FanoutItem {
                            retract: kind == FanoutKind::Retract,
                            rank: entry.rank,
                            post: entry.post,
                            author: entry.author,
                            expires_at_ms: entry.expires_at_ms,
                            readers: chunk.to_vec(),
                        });
                    }
                }
            }
        }
        let mut appends: Vec<Append> = Vec::new();
        for (p, msgs) in by_partition {
            for items in msgs {
                let payload =
                    serde_json::to_vec(&FanoutBatch { items }).map_err(|e| feed_engine::Error::Storage(Box::new(e)))?;
                let id = format!("fan-{p}-{:x}-{}", content_hash(&payload), payload.len());
                appends.push((subjects::fanout(p), id, payload));
            }
        }
        self.rt.block_on(self.append_all(appends))
    }
}

impl LogFanout {
    /// Appends every message (pipelined), retrying the ones not acknowledged until all are or
    /// the node stops.
    async fn append_all(&self, mut left: Vec<Append>) -> feed_engine::Result<()> {
        let mut wait = Duration::from_millis(50);
        loop {
            let sends = left
                .iter()
                .map(|(subject, id, payload)| super::log::append_once(&self.js, subject, id, payload));
            let results = match tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(sends)).await {
                Ok(r) => r,
                Err(_) => vec![Err("timed out".to_string()); left.len()],
            };
            let mut failed = Vec::new();
            let mut why = String::new();
            for (a, r) in left.into_iter().zip(results) {
                if let Err(e) = r {
                    why = e;
                    failed.push(a);
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            if *self.stop.borrow() {
                return Err(feed_engine::Error::ShuttingDown);
            }
            tracing::warn!(batches = failed.len(), error = %why, "appending fanout batches failed; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
            left = failed;
        }
    }
}
