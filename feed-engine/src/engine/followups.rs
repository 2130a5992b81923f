//! Partitioned engagement (cluster mode): a like or comment is decided and stored on its post
//! author's partition; what belongs elsewhere leaves as follow-ups (`crate::followup`), written
//! in the change's own batch and applied here when they come back through the log.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;

use crate::codec::Counter;
use crate::error::Result;
use crate::followup::{AffinityItem, CommentCountItem, FollowUp, FollowUpKey, GraphItem, LikeCountItem, ReplyItem};
use crate::model::{Post, PostId, UserId};
use crate::social::{Comment, Engagement, Notification, NotificationKind};
use crate::store::{Batch, Durability};
use crate::tables::{AFFINITY, COUNTERS, FOLLOWUPS, META, MetaKey, POSTS, SHARED_COUNTS, SharedCount};

use super::{Engine, Inner, Writer};

impl Inner {
    /// Whether writes are partitioned: likes and comments decided on the post author's
    /// partition, follows on the acting user's, their effects on other partitions sent on as
    /// follow-ups.
    pub(crate) fn writes_partitioned(&self) -> bool {
        self.partitioned_writes.get().is_some()
    }
}

impl Engine {
    /// Cluster mode: from now on a like, unlike, comment or comment deletion applied from the log
    /// (on the node holding the post's author) writes the engaging user's affinity, a reply's
    /// notification to the parent comment's author and the post's new counts as follow-ups
    /// instead of applying the first two here, and counts of posts whose authors other nodes
    /// hold are read from what those nodes announced; a follow, unfollow or approval (on the
    /// acting user's node) writes the other user's side of the edge as a follow-up
    /// (`graph_split.rs`). Set once, before any write; false if already set.
    pub fn partition_writes(&self) -> bool {
        self.inner().partitioned_writes.set(()).is_ok()
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

    /// The author of a stored post, if it exists (a cluster routes a like or comment to its node).
    pub fn post_author(&self, post: PostId) -> Result<Option<UserId>> {
        Ok(self.load_post(post)?.map(|p| p.author))
    }

    /// Replaces the counts in `counts` (in the order of `posts`) by the announced ones for posts
    /// whose authors this node does not hold.
    pub(crate) fn shared_counts(&self, posts: &[PostId], counts: &mut [Engagement]) -> Result<()> {
        let inner = self.inner();
        let shared = SHARED_COUNTS.get_many(&inner.store, posts)?;
        if shared.iter().all(Option::is_none) {
            return Ok(());
        }
        for ((p, c), s) in self.feed_posts(posts)?.into_iter().zip(counts.iter_mut()).zip(shared) {
            if let (Some(p), Some(s)) = (p, s)
                && !inner.owns(p.author)
            {
                if s.likes_as_of > 0 {
                    c.likes = s.likes;
                }
                if s.comments_as_of > 0 {
                    c.comments = s.comments;
                }
            }
        }
        Ok(())
    }
}

impl Writer<'_> {
    /// The change's log sequence when engagement is partitioned (its follow-ups are keyed by
    /// it), else `None`: apply everything here.
    pub(super) fn partitioned_seq(&self) -> Option<u64> {
        self.inner().writes_partitioned().then(|| self.ctx.seq()).flatten()
    }

    /// `post`'s counter `c` after a change by `delta`, for its follow-up: read before the
    /// change's batch gets its first write (a change from the log is applied alone).
    pub(super) fn count_after(&self, post: PostId, c: Counter, delta: i64) -> Result<u64> {
        let n = COUNTERS.get(&self.inner().store, post, c)? as i64;
        Ok((n + delta).max(0) as u64)
    }

    /// Writes a like's follow-ups into its batch (`delta`: +1 like, −1 unlike), under the like's
    /// log sequence `seq`: the liker's affinity change and the post's count after it (`likes`).
    pub(super) fn like_followups(&self, b: &mut Batch, seq: u64, user: UserId, post: &Post, delta: i64, likes: u64) {
        self.affinity_followup(b, (seq, 0), user, post.author, delta as f64);
        let f = FollowUp::LikeCount {
            post: post.id,
            author: post.author,
            likes,
            as_of: seq,
        };
        FOLLOWUPS.put(&self.inner().store, b, (seq, 1), &f);
    }

    /// Writes a comment's follow-ups into its batch: the commenter's affinity (+2), the post's
    /// comment count after it, and for a reply the parent comment's author's notification.
    pub(super) fn comment_followups(
        &self,
        b: &mut Batch,
        seq: u64,
        post: &Post,
        parent_author: Option<UserId>,
        c: &Comment,
        comments: u64,
    ) {
        let s = &self.inner().store;
        self.affinity_followup(b, (seq, 0), c.author, post.author, 2.0);
        self.comment_count_followup(b, (seq, 1), post, comments);
        if let Some(recipient) = parent_author.filter(|&a| a != post.author) {
            let f = FollowUp::Replied {
                recipient,
                actor: c.author,
                post: post.id,
                author: post.author,
                comment: c.id,
                at_ms: c.created_at_ms,
            };
            FOLLOWUPS.put(s, b, (seq, 2), &f);
        }
    }

    /// Writes the post's comment count `comments` as a follow-up under `key`.
    pub(super) fn comment_count_followup(&self, b: &mut Batch, key: FollowUpKey, post: &Post, comments: u64) {
        let f = FollowUp::CommentCount {
            post: post.id,
            author: post.author,
            comments,
            as_of: key.0,
        };
        FOLLOWUPS.put(&self.inner().store, b, key, &f);
    }

    fn affinity_followup(&self, b: &mut Batch, key: FollowUpKey, reader: UserId, author: UserId, amount: f64) {
        if reader != author {
            let f = FollowUp::Affinity {
                reader,
                author,
                amount,
                at_ms: self.ctx.now_ms(),
            };
            FOLLOWUPS.put(&self.inner().store, b, key, &f);
        }
    }

    /// Applies follow-ups for users of partition `target` — affinity changes, reply
    /// notifications and the follow graph's halves — each origin partition's items in (sequence,
    /// index) order and only past the last one this partition applied from it (recorded with
    /// them), so a follow-up sent twice, or late after a newer one, changes nothing. A graph
    /// half is written in a batch of its own (what came before it first), since the next half
    /// may read what it wrote. Returns how many were applied.
    pub fn apply_user_followups(
        &self,
        target: u32,
        affinity: &[AffinityItem],
        replies: &[ReplyItem],
        graph: &[GraphItem],
    ) -> Result<usize> {
        enum Item<'a> {
            Affinity(&'a AffinityItem),
            Reply(&'a ReplyItem),
            Graph(&'a GraphItem),
        }
        let pos = |seq: u64, idx: u16| (seq << 16) | u64::from(idx);
        let mut items: Vec<(u32, u64, Item<'_>)> = affinity
            .iter()
            .map(|a| (a.origin, pos(a.origin_seq, a.idx), Item::Affinity(a)))
            .chain(
                replies
                    .iter()
                    .map(|r| (r.origin, pos(r.origin_seq, r.idx), Item::Reply(r))),
            )
            .chain(
                graph
                    .iter()
                    .map(|g| (g.origin, pos(g.origin_seq, g.idx), Item::Graph(g))),
            )
            .collect();
        items.sort_by_key(|&(origin, at, _)| (origin, at));
        let inner = self.inner();
        let s = &inner.store;
        let mut marks: HashMap<u32, u64> = HashMap::new();
        let mut b = s.batch();
        let (mut n, mut halves, mut sent, mut catch_up) = (0, 0, Vec::new(), 0u16);
        for (origin, at, item) in items {
            let mark = match marks.entry(origin) {
                Slot::Occupied(e) => e.into_mut(),
                Slot::Vacant(e) => e.insert(META.get_u64(s, MetaKey::FollowUpsFrom { target, origin })?.unwrap_or(0)),
            };
            if at <= *mark {
                continue;
            }
            let prev = std::mem::replace(mark, at);
            match item {
                Item::Graph(_) => halves += 1,
                _ => n += 1,
            }
            match item {
                Item::Affinity(a) if a.reader != a.author => {
                    AFFINITY.add(s, &mut b, a.reader, a.author, a.amount, a.at_ms);
                }
                Item::Affinity(_) => {}
                Item::Reply(r) => {
                    let note = Notification {
                        id: r.comment,
                        kind: NotificationKind::Replied,
                        actor: r.actor,
                        post: Some(r.post),
                        comment: Some(r.comment),
                        at_ms: r.at_ms,
                    };
                    sent.extend(inner.notify(&mut b, r.recipient, &note)?);
                }
                Item::Graph(g) => {
                    // What came before it, with the marks as of then, then the half alone.
                    let mut before = std::mem::replace(&mut b, s.batch());
                    for (&o, &m) in &marks {
                        let m = if o == origin { prev } else { m };
                        META.put_u64(s, &mut before, MetaKey::FollowUpsFrom { target, origin: o }, m);
                    }
                    s.write(before, Durability::Buffered)?;
                    if self.apply_graph_half(g, (MetaKey::FollowUpsFrom { target, origin }, at), catch_up)? {
                        catch_up = catch_up.saturating_add(1);
                    }
                }
            }
        }
        for (origin, mark) in marks {
            META.put_u64(s, &mut b, MetaKey::FollowUpsFrom { target, origin }, mark);
        }
        s.write(b, self.ctx.durability())?;
        metrics::counter!(crate::metrics::FOLLOWUPS_APPLIED, "kind" => "user").increment(n as u64);
        metrics::counter!(crate::metrics::FOLLOWUPS_APPLIED, "kind" => "graph").increment(halves as u64);
        self.notified(&sent)?;
        Ok(n + halves)
    }

    /// Stores announced like and comment counts, each only if newer than the one held (so
    /// counts sent twice or out of order leave the newest; a post deleted since is skipped), and
    /// tells the trends about the change for posts whose authors this node does not hold (it
    /// counted its own when it applied them). Returns how many counts changed.
    pub fn apply_counts(&self, likes: &[LikeCountItem], comments: &[CommentCountItem]) -> Result<usize> {
        let inner = self.inner();
        let s = &inner.store;
        // (post, author, is a like count, count, as of)
        let all: Vec<(PostId, UserId, bool, u64, u64)> = likes
            .iter()
            .map(|l| (l.post, l.author, true, l.likes, l.as_of))
            .chain(comments.iter().map(|c| (c.post, c.author, false, c.comments, c.as_of)))
            .collect();
        let posts: Vec<PostId> = all.iter().map(|x| x.0).collect();
        let mut held: HashMap<PostId, SharedCount> = HashMap::new();
        for (p, c) in posts.iter().zip(SHARED_COUNTS.get_many(s, &posts)?) {
            held.entry(*p).or_insert(c.unwrap_or_default());
        }
        // Per post: (author, like delta, comment delta, counts taken).
        let mut changed: HashMap<PostId, (UserId, i64, i64, usize)> = HashMap::new();
        for (post, author, is_like, count, as_of) in all {
            let Some(h) = held.get_mut(&post) else { continue };
            let (cur, cur_as_of) = match is_like {
                true => (&mut h.likes, &mut h.likes_as_of),
                false => (&mut h.comments, &mut h.comments_as_of),
            };
            if *cur_as_of >= as_of {
                continue;
            }
            let delta = count as i64 - *cur as i64;
            (*cur, *cur_as_of) = (count, as_of);
            let e = changed.entry(post).or_insert((author, 0, 0, 0));
            e.3 += 1;
            match is_like {
                true => e.1 += delta,
                false => e.2 += delta,
            }
        }
        let mut b = s.batch();
        let mut gone = Vec::new();
        for &post in changed.keys() {
            // A count of a post deleted since (the deletion came later in the log) is dropped.
            match POSTS.exists(s, post)? {
                true => SHARED_COUNTS.put(s, &mut b, post, &held[&post]),
                false => gone.push(post),
            }
        }
        s.write(b, self.ctx.durability())?;
        for post in gone {
            changed.remove(&post);
        }
        let n: usize = changed.values().map(|c| c.3).sum();
        metrics::counter!(crate::metrics::FOLLOWUPS_APPLIED, "kind" => "count").increment(n as u64);
        for (post, (author, dl, dc, _)) in changed {
            if inner.owns(author) || (dl == 0 && dc == 0) {
                continue;
            }
            if let Some(p) = self.load_post(post)? {
                if dl != 0 {
                    self.engaged(&p, dl, 0)?;
                }
                if dc != 0 {
                    self.engaged(&p, 0, dc)?;
                }
            }
        }
        Ok(n)
    }
}
