//! Partitioned likes (cluster mode): a like is decided and stored on its post author's
//! partition; what belongs elsewhere leaves as follow-ups (`crate::followup`), written in the
//! like's own batch and applied here when they come back through the log.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;

use crate::codec::Counter;
use crate::error::Result;
use crate::followup::{AffinityItem, FollowUp, FollowUpKey, LikeCountItem};
use crate::model::{PostId, UserId};
use crate::social::Engagement;
use crate::store::Durability;
use crate::tables::{AFFINITY, COUNTERS, FOLLOWUPS, META, MetaKey, POSTS, SHARED_COUNTS};

use super::{Engine, Inner, Writer};

impl Inner {
    /// Whether likes are partitioned: decided on the post author's partition, with the liker's
    /// affinity and the post's count for other nodes sent on as follow-ups.
    pub(crate) fn likes_partitioned(&self) -> bool {
        self.partitioned_likes.get().is_some()
    }
}

impl Engine {
    /// Cluster mode: from now on a like or unlike applied from the log (on the node holding the
    /// post's author) writes the liker's affinity and the post's new count as follow-ups instead
    /// of applying the affinity here, and counts of posts whose authors other nodes hold are read
    /// from what those nodes announced. Set once, before any write; false if already set.
    pub fn partition_likes(&self) -> bool {
        self.inner().partitioned_likes.set(()).is_ok()
    }

    /// Up to `limit` follow-ups waiting for the log, from `from` (inclusive) on, oldest first.
    pub fn followups(&self, from: FollowUpKey, limit: usize) -> Result<Vec<(FollowUpKey, FollowUp)>> {
        FOLLOWUPS.scan(&self.inner().store, from, limit)
    }

    /// Clears follow-ups the log now holds. Not fsynced: one cleared again after a crash is sent
    /// again, which its receivers tolerate.
    pub fn clear_followups(&self, keys: &[FollowUpKey]) -> Result<()> {
        let s = &self.inner().store;
        let mut b = s.batch();
        for &k in keys {
            FOLLOWUPS.delete(s, &mut b, k);
        }
        s.write(b, Durability::Buffered)
    }

    /// The author of a stored post, if it exists (a cluster routes a like to its node).
    pub fn post_author(&self, post: PostId) -> Result<Option<UserId>> {
        Ok(self.load_post(post)?.map(|p| p.author))
    }

    /// Replaces the like counts in `counts` (in the order of `posts`) by the announced ones for
    /// posts whose authors this node does not hold.
    pub(crate) fn shared_likes(&self, posts: &[PostId], counts: &mut [Engagement]) -> Result<()> {
        let inner = self.inner();
        let shared = SHARED_COUNTS.get_many(&inner.store, posts)?;
        if shared.iter().all(Option::is_none) {
            return Ok(());
        }
        for ((p, c), s) in self.feed_posts(posts)?.into_iter().zip(counts.iter_mut()).zip(shared) {
            if let (Some(p), Some((likes, _))) = (p, s)
                && !inner.owns(p.author)
            {
                c.likes = likes;
            }
        }
        Ok(())
    }
}

impl Writer<'_> {
    /// The like count of `post` after a change by `delta`, for its follow-up: read before the
    /// like's batch gets its first write (a like from the log is committed alone).
    pub(super) fn likes_after(&self, post: PostId, delta: i64) -> Result<u64> {
        let n = COUNTERS.get(&self.inner().store, post, Counter::PostLikes)? as i64;
        Ok((n + delta).max(0) as u64)
    }

    /// Writes a like's follow-ups into its batch (`delta`: +1 like, −1 unlike), under the like's
    /// log sequence `seq`: the liker's affinity change and the post's count after it (`likes`).
    pub(super) fn like_followups(
        &self,
        b: &mut crate::store::Batch,
        seq: u64,
        user: UserId,
        post: &crate::model::Post,
        delta: i64,
        likes: u64,
    ) {
        let s = &self.inner().store;
        if user != post.author {
            let f = FollowUp::Affinity {
                reader: user,
                author: post.author,
                amount: delta as f64,
                at_ms: self.ctx.now_ms(),
            };
            FOLLOWUPS.put(s, b, (seq, 0), &f);
        }
        let f = FollowUp::LikeCount {
            post: post.id,
            author: post.author,
            likes,
            as_of: seq,
        };
        FOLLOWUPS.put(s, b, (seq, 1), &f);
    }

    /// Applies affinity follow-ups for readers of partition `target`: each origin partition's
    /// items only past the last one this partition applied from it (recorded in the same batch),
    /// so a follow-up sent twice, or late after a newer one, changes nothing. Returns how many
    /// were applied.
    pub fn apply_affinity(&self, target: u32, items: &[AffinityItem]) -> Result<usize> {
        let inner = self.inner();
        let s = &inner.store;
        let mut marks: HashMap<u32, u64> = HashMap::new();
        let mut b = s.batch();
        let mut n = 0;
        for it in items {
            let mark = match marks.entry(it.origin) {
                Slot::Occupied(e) => e.into_mut(),
                Slot::Vacant(e) => {
                    let key = MetaKey::FollowUpsFrom {
                        target,
                        origin: it.origin,
                    };
                    e.insert(META.get_u64(s, key)?.unwrap_or(0))
                }
            };
            if it.origin_seq <= *mark {
                continue;
            }
            *mark = it.origin_seq;
            if it.reader != it.author {
                AFFINITY.add(s, &mut b, it.reader, it.author, it.amount, it.at_ms);
            }
            n += 1;
        }
        for (origin, mark) in marks {
            META.put_u64(s, &mut b, MetaKey::FollowUpsFrom { target, origin }, mark);
        }
        s.write(b, self.ctx.durability())?;
        metrics::counter!(crate::metrics::FOLLOWUPS_APPLIED, "kind" => "affinity").increment(n as u64);
        Ok(n)
    }

    /// Stores announced like counts, each only if newer than the one held (so counts sent twice
    /// or out of order leave the newest), and tells the trends about the change for posts whose
    /// authors this node does not hold (it counted its own likes when it applied them). Returns
    /// how many counts changed.
    pub fn apply_like_counts(&self, items: &[LikeCountItem]) -> Result<usize> {
        let inner = self.inner();
        let s = &inner.store;
        let posts: Vec<PostId> = items.iter().map(|i| i.post).collect();
        let held = SHARED_COUNTS.get_many(s, &posts)?;
        let mut b = s.batch();
        let mut changed = Vec::new();
        let mut newest: HashMap<PostId, (u64, u64)> = HashMap::new();
        for (it, old) in items.iter().zip(held) {
            let old = newest.get(&it.post).copied().or(old);
            // A count of a post deleted since (the deletion came later in the log) is dropped.
            if old.is_some_and(|(_, as_of)| as_of >= it.as_of) || !POSTS.exists(s, it.post)? {
                continue;
            }
            SHARED_COUNTS.put(s, &mut b, it.post, it.likes, it.as_of);
            newest.insert(it.post, (it.likes, it.as_of));
            let before = old.map_or(0, |(l, _)| l);
            if !inner.owns(it.author) && it.likes != before {
                changed.push((it.post, it.likes as i64 - before as i64));
            }
        }
        s.write(b, self.ctx.durability())?;
        let n = newest.len();
        metrics::counter!(crate::metrics::FOLLOWUPS_APPLIED, "kind" => "like-count").increment(n as u64);
        for (post, delta) in changed {
            if let Some(p) = self.load_post(post)? {
                self.engaged(&p, delta, 0)?;
            }
        }
        Ok(n)
    }
}
