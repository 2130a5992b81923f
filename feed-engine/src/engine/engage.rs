//! Likes and comments. Each change is one fsynced batch: the like or comment, the post's counter
//! (a merge operand: no read-modify-write) and the notifications it makes (likes are committed
//! many to a batch by the like committer, `likes.rs`). Visibility follows
//! the graph: a post the user may not see is `NotFound` (the same answer as a post that does not
//! exist, so engagement never reveals a private post), and a block stops engagement both ways.

use std::sync::Arc;

use crate::codec::{self, Counter};
use crate::error::{Error, Result};
use crate::model::{Post, PostId, UserId, UserPage};
use crate::social::{Comment, CommentId, CommentPage, Engagement, Notification, NotificationKind};
use crate::tables::{AFFINITY, COMMENTS, COUNTERS, LIKES};

use super::posts::has_visible_char;
use super::{Change, Engine, Writer};

impl Engine {
    /// Likes and comments of each post, in the order asked (one multi-get; an unknown post
    /// counts zero).
    pub fn engagement(&self, posts: &[PostId]) -> Result<Vec<Engagement>> {
        let which: Vec<(u64, Counter)> = posts
            .iter()
            .flat_map(|&p| [(p, Counter::PostLikes), (p, Counter::PostComments)])
            .collect();
        let v = COUNTERS.get_many(&self.inner().store, &which)?;
        let mut out: Vec<Engagement> = v
            .chunks(2)
            .map(|c| Engagement {
                likes: c[0],
                comments: c[1],
            })
            .collect();
        if self.inner().writes_partitioned() {
            self.shared_counts(posts, &mut out)?;
        }
        Ok(out)
    }

    /// Each post's counts and velocity at `now_ms`: counts from memory where it knows them
    /// exactly, the rest in one multi-get.
    pub(crate) fn counts_now(&self, posts: &[Arc<Post>], now_ms: u64) -> Result<Vec<(Engagement, f64)>> {
        let trends = &self.inner().trends;
        // Partitioned engagement: memory counts only what this node applied; the store has the
        // rest.
        let exact = !self.inner().writes_partitioned();
        let seen: Vec<_> = posts
            .iter()
            .map(|p| {
                let mut s = trends.seen(p, now_ms);
                s.counts = s.counts.filter(|_| exact);
                s
            })
            .collect();
        let unknown: Vec<PostId> = posts
            .iter()
            .zip(&seen)
            .filter(|(_, s)| s.counts.is_none())
            .map(|(p, _)| p.id)
            .collect();
        let mut stored = self.engagement(&unknown)?.into_iter();
        Ok(seen
            .into_iter()
            .map(|s| (s.counts.unwrap_or_else(|| stored.next().unwrap_or_default()), s.heat))
            .collect())
    }

    /// Whether `viewer` likes `post` (which they must be able to see).
    pub fn has_liked(&self, viewer: UserId, post: PostId) -> Result<bool> {
        self.visible_post(viewer, post)?;
        LIKES.exists(&self.inner().store, post, viewer)
    }

    /// Whether `viewer` and `other` are apart by a block, either way: then neither sees the
    /// other's engagement.
    fn blocked_either_way(&self, viewer: UserId, other: UserId) -> Result<bool> {
        let inner = self.inner();
        Ok(viewer != other && (inner.blocks(viewer, other)? || inner.blocks(other, viewer)?))
    }

    /// A page of the users who like `post`, ascending by id, as `viewer` may see it (users
    /// across a block from the viewer left out).
    pub fn likers(&self, viewer: UserId, post: PostId, page_size: usize, cursor: Option<&str>) -> Result<UserPage> {
        self.check_page_size(page_size)?;
        let after = cursor.map(codec::decode_list_cursor).transpose()?;
        self.visible_post(viewer, post)?;
        let inner = self.inner();
        let mut users = Vec::with_capacity(page_size + 1);
        let mut scanned = Vec::new();
        let mut from = after.map(|a| a.saturating_add(1));
        if after == Some(u64::MAX) {
            return Ok(UserPage {
                users,
                next_cursor: None,
            });
        }
        loop {
            scanned.clear();
            LIKES.scan(&inner.store, post, from, |u| {
                scanned.push(u);
                scanned.len() <= page_size
            })?;
            for &u in &scanned {
                if !self.blocked_either_way(viewer, u)? {
                    users.push(u);
                }
                if users.len() > page_size {
                    break;
                }
            }
            match scanned.last() {
                Some(&last) if users.len() <= page_size && scanned.len() > page_size => from = Some(last + 1),
                _ => break,
            }
        }
        Ok(super::graph::user_page(users, page_size))
    }

    /// A page of one thread of `post`'s comments, oldest first: the top-level comments, or with
    /// `parent` the replies to that comment. Comments by users across a block from the viewer
    /// are left out.
    pub fn comments(
        &self,
        viewer: UserId,
        post: PostId,
        parent: Option<CommentId>,
        page_size: usize,
        cursor: Option<&str>,
    ) -> Result<CommentPage> {
        self.check_page_size(page_size)?;
        let after = cursor.map(codec::decode_list_cursor).transpose()?;
        self.visible_post(viewer, post)?;
        let inner = self.inner();
        if let Some(p) = parent
            && COMMENTS.get(&inner.store, post, p)?.is_none()
        {
            return Err(comment_not_found(post, p));
        }
        let mut comments = Vec::with_capacity(page_size + 1);
        let mut from = match after {
            Some(u64::MAX) => {
                return Ok(CommentPage {
                    comments,
                    next_cursor: None,
                });
            }
            Some(a) => a + 1,
            None => 0,
        };
        loop {
            let mut ids = Vec::with_capacity(page_size + 1);
            COMMENTS.scan_thread(&inner.store, post, parent.unwrap_or(0), from, |c| {
                ids.push(c);
                ids.len() <= page_size
            })?;
            let more = ids.len() > page_size;
            let last = ids.last().copied();
            for c in COMMENTS.get_many(&inner.store, post, &ids)?.into_iter().flatten() {
                if !self.blocked_either_way(viewer, c.author)? {
                    comments.push(c);
                }
                if comments.len() > page_size {
                    break;
                }
            }
            match last {
                Some(l) if more && comments.len() <= page_size => from = l + 1,
                _ => break,
            }
        }
        let next_cursor = if comments.len() > page_size {
            comments.truncate(page_size);
            comments.last().map(|c| codec::encode_list_cursor(c.id))
        } else {
            None
        };
        Ok(CommentPage { comments, next_cursor })
    }
}

/// Affinity one post shown adds to its author (a like adds 1, a comment 2).
const VIEW_AFFINITY: f64 = 0.1;

/// The one answer for a comment that does not exist on a post.
fn comment_not_found(post: PostId, id: CommentId) -> Error {
    Error::not_found(format!("comment {id} does not exist on post {post}"))
}

impl Writer<'_> {
    /// The post `user` may engage with: visible to them (else `NotFound`), and no block
    /// between them and its author (else `PermissionDenied`).
    pub(super) fn engageable(&self, user: UserId, post: PostId) -> Result<Post> {
        let p = self.visible_post_at(user, post, self.ctx.now_ms())?;
        if p.author != user && self.inner().blocks(user, p.author)? {
            return Err(Error::PermissionDenied(format!(
                "user {user} has blocked user {}, the post's author; unblock to engage with their posts",
                p.author
            )));
        }
        Ok(p)
    }

    /// The id of what this write creates (a comment, a notification): the event's minted id in
    /// a cluster, else a new time-ordered id.
    pub(super) fn event_id(&self) -> u64 {
        self.inner().next_post_id(self.ctx.now_ms(), self.ctx.minted())
    }

    fn validate_comment(&self, text: &str) -> Result<()> {
        let max = self.config().max_comment_bytes;
        if text.len() > max {
            return Err(Error::invalid(format!(
                "a comment is at most {max} bytes, got {}",
                text.len()
            )));
        }
        if !has_visible_char(text) {
            return Err(Error::invalid(
                "a comment needs at least one visible character (not only spaces, zero-width or control characters)",
            ));
        }
        Ok(())
    }

    /// `user` comments on `post`, or with `parent` replies to that top-level comment (replies
    /// go one level deep). Tells the post's author, and the parent comment's author for a reply.
    pub fn comment(&self, user: UserId, post: PostId, parent: Option<CommentId>, text: &str) -> Result<Comment> {
        self.validate_comment(text)?;
        let inner = self.inner();
        let deletions = inner.deletions.epoch();
        let p = self.engageable(user, post)?;
        // Every change to one author's comment threads holds the author's lock: a reply never
        // lands beside the deletion of its parent.
        let g = inner.lock_users(user, p.author);
        let parent_author = match parent {
            None => None,
            Some(id) => {
                let c = COMMENTS
                    .get(&inner.store, post, id)?
                    .ok_or_else(|| comment_not_found(post, id))?;
                if c.parent.is_some() {
                    return Err(Error::invalid(format!(
                        "comment {id} is itself a reply; replies go one level deep, so reply to comment {}",
                        c.parent.unwrap_or(0)
                    )));
                }
                Some(c.author)
            }
        };
        let now = self.ctx.now_ms();
        let partitioned = match self.partitioned_seq() {
            Some(seq) => Some((seq, self.count_after(post, Counter::PostComments, 1)?)),
            None => None,
        };
        let c = Comment {
            id: self.event_id(),
            post,
            parent,
            author: user,
            created_at_ms: now,
            text: text.to_owned(),
        };
        let s = &inner.store;
        let mut b = s.batch();
        COMMENTS.put(s, &mut b, &c);
        COUNTERS.add(s, &mut b, post, Counter::PostComments, 1);
        let mut n = Notification {
            id: c.id,
            kind: NotificationKind::Commented,
            actor: user,
            post: Some(post),
            comment: Some(c.id),
            at_ms: now,
        };
        let mut sent = inner.notify(&mut b, p.author, &n)?;
        match partitioned {
            // The reply's notification and the affinity are other partitions': follow-ups.
            Some((seq, count)) => self.comment_followups(&mut b, seq, &p, parent_author, &c, count),
            None => {
                if let Some(pa) = parent_author.filter(|&a| a != p.author) {
                    n.kind = NotificationKind::Replied;
                    sent.extend(inner.notify(&mut b, pa, &n)?);
                }
                self.add_affinity(&mut b, user, p.author, 2.0);
            }
        }
        s.write(b, self.ctx.durability())?;
        drop(g);
        // The post's deletion may have landed between the check and the write (its range
        // tombstone first): then the comment goes again, and the post is answered as gone.
        if inner.deletions.maybe_since(deletions) && inner.load_post(post)?.is_none() {
            let mut b = s.batch();
            COMMENTS.delete(s, &mut b, &c);
            COUNTERS.delete(s, &mut b, post, Counter::PostComments);
            s.write(b, self.ctx.durability())?;
            return Err(Error::not_found(format!("post {post} was deleted")));
        }
        self.engaged(&p, 0, 1)?;
        self.notified(&sent)?;
        Ok(c)
    }

    /// Deletes a comment (by its author or the post's author) with its replies.
    pub fn delete_comment(&self, user: UserId, post: PostId, comment: CommentId) -> Result<()> {
        let p = self.visible_post_at(user, post, self.ctx.now_ms())?;
        let inner = self.inner();
        let s = &inner.store;
        let _g = inner.lock_users(user, p.author);
        let c = COMMENTS
            .get(s, post, comment)?
            .ok_or_else(|| comment_not_found(post, comment))?;
        if c.author != user && p.author != user {
            return Err(Error::PermissionDenied(format!(
                "comment {comment} is user {}'s on user {}'s post: only they may delete it",
                c.author, p.author
            )));
        }
        let mut b = s.batch();
        COMMENTS.delete(s, &mut b, &c);
        let mut removed = 1;
        if c.parent.is_none() {
            let mut replies = Vec::new();
            COMMENTS.scan_thread(s, post, comment, 0, |r| {
                replies.push(r);
                true
            })?;
            for r in replies {
                COMMENTS.delete(
                    s,
                    &mut b,
                    &Comment {
                        id: r,
                        parent: Some(comment),
                        ..c.clone()
                    },
                );
                removed += 1;
            }
        }
        COUNTERS.add(s, &mut b, post, Counter::PostComments, -removed);
        if let Some(seq) = self.partitioned_seq() {
            let left = self.count_after(post, Counter::PostComments, -removed)?;
            self.comment_count_followup(&mut b, (seq, 1), &p, left);
        }
        s.write(b, self.ctx.durability())?;
        self.engaged(&p, 0, -removed)
    }

    /// `user` was shown `posts` (a client reports what it displayed): each post's author gains a
    /// little affinity (0.1 per post shown; a like is 1, a comment 2), in one fsynced batch.
    /// Posts that are gone or no longer visible are skipped; returns how many counted.
    pub fn record_views(&self, user: UserId, posts: &[PostId]) -> Result<usize> {
        let max = self.config().max_page_size;
        if posts.is_empty() || posts.len() > max {
            return Err(Error::invalid(format!(
                "a view report names 1 to {max} posts, got {}",
                posts.len()
            )));
        }
        let inner = self.inner();
        inner.require_user(user)?;
        let now = self.ctx.now_ms();
        let mut per_author: std::collections::BTreeMap<UserId, f64> = Default::default();
        let mut counted = 0;
        for &id in posts {
            match self.visible_post_at(user, id, now) {
                Ok(p) => {
                    counted += 1;
                    if p.author != user {
                        *per_author.entry(p.author).or_default() += VIEW_AFFINITY;
                    }
                }
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if per_author.is_empty() {
            return Ok(counted);
        }
        // Affinity is a merge operand: no lock, and no increment lost to a racing like.
        let mut b = inner.store.batch();
        for (author, amount) in per_author {
            self.add_affinity(&mut b, user, author, amount);
        }
        inner.store.write(b, self.ctx.durability())?;
        Ok(counted)
    }

    /// Adds `amount` to `reader`'s affinity to `author` at the write's time, within a batch (a
    /// merge operand: no read, no lock).
    pub(super) fn add_affinity(&self, b: &mut crate::store::Batch, reader: UserId, author: UserId, amount: f64) {
        if reader != author {
            AFFINITY.add(&self.inner().store, b, reader, author, amount, self.ctx.now_ms());
        }
    }

    /// After an engagement is durable: the post's velocity, and its place in the discovery pool
    /// when people engage with a public post.
    pub(super) fn engaged(&self, p: &Post, likes: i64, comments: i64) -> Result<()> {
        let inner = self.inner();
        let now = self.ctx.now_ms();
        inner.trends.engaged(p, likes, comments, now);
        metrics::counter!(crate::metrics::ENGAGEMENTS, "kind" => if likes != 0 { "like" } else { "comment" })
            .increment(1);
        if likes + comments > 0 && !p.expired(now) && !self.is_private(p.author)? {
            let heat = inner.trends.seen(p, now).heat;
            let trend_rank = crate::ranking::raised(p.rank, inner.cfg.ranker.velocity_weight * (1.0 + heat).log2());
            inner.cache.changed(Change::Trending { post: p, trend_rank });
        }
        Ok(())
    }
}
