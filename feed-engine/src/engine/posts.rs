//! Posts: validation, publish (the durable ack point: post, outbox entry, counter, tag postings
//! and pending fanout in one fsynced batch), delete (with a durable retraction job; the post's
//! likes, comments and tag postings go in the same batch), get and author pages.

use std::sync::Arc;

use crate::codec::{self, Counter, JobKind, JobRecord};
use crate::error::{Error, Result};
use crate::model::{ContentType, Entry, NewPost, Post, PostId, PostPage, UserId};
use crate::ranking;
use crate::tables::{COMMENTS, COUNTERS, LIKES, OUTBOX, PENDING, POSTS, PULL_AUTHORS, RANKED, SHARED_COUNTS, TAGS};

use super::{Change, Engine, Inner, Writer};

/// Whether `text` has a character that prints: not white space, not a control character, not a
/// zero-width or direction-formatting character (U+200B, U+202E, U+FEFF, …).
pub(crate) fn has_visible_char(text: &str) -> bool {
    use unicode_width::UnicodeWidthChar;
    text.chars()
        .any(|c| !c.is_whitespace() && !c.is_control() && c.width().is_some_and(|w| w > 0))
}

impl Engine {
    fn validate_post(&self, p: &NewPost) -> Result<()> {
        let c = self.config();
        if p.text.len() > c.max_text_bytes {
            return Err(Error::invalid(format!(
                "post text is {} bytes; the limit is {}",
                p.text.len(),
                c.max_text_bytes
            )));
        }
        if p.media.len() > c.max_media {
            return Err(Error::invalid(format!(
                "a post may carry at most {} media references, got {}",
                c.max_media,
                p.media.len()
            )));
        }
        for (i, m) in p.media.iter().enumerate() {
            if m.is_empty() || m.len() > c.max_media_ref_bytes {
                return Err(Error::invalid(format!(
                    "media reference {i} must be 1 to {} bytes, got {}",
                    c.max_media_ref_bytes,
                    m.len()
                )));
            }
        }
        match p.content_type {
            ContentType::Text if !has_visible_char(&p.text) => {
                return Err(Error::invalid(
                    "a text post needs at least one visible character (not only spaces, zero-width or control characters)",
                ));
            }
            ContentType::Image | ContentType::Video if p.media.is_empty() => {
                return Err(Error::invalid(
                    "an image or video post needs at least one media reference",
                ));
            }
            _ => {}
        }
        if let Some(l) = &p.location
            && (l.len() > c.max_location_bytes || !has_visible_char(l) || l.chars().any(char::is_control))
        {
            return Err(Error::invalid(format!(
                "a location is 1 to {} bytes of printable text without control characters, got {} bytes",
                c.max_location_bytes,
                l.len()
            )));
        }
        let tags = crate::social::hashtags(&p.text).len();
        if tags > c.max_tags {
            return Err(Error::invalid(format!(
                "a post may carry at most {} hashtags, this text has {tags}",
                c.max_tags
            )));
        }
        if let Some(ttl) = p.ttl_ms
            && (ttl == 0 || ttl > c.max_ttl_ms)
        {
            return Err(Error::invalid(format!(
                "ttl must be between 1 ms and {} ms, got {ttl}",
                c.max_ttl_ms
            )));
        }
        Ok(())
    }

    /// A stored post, expired or not; `None` if it does not exist.
    pub(crate) fn load_post(&self, id: PostId) -> Result<Option<Post>> {
        self.inner().load_post(id)
    }

    /// Posts for a feed page, from the feed cache or (one multi-get for the misses) the store;
    /// missing ones are `None`.
    pub(crate) fn feed_posts(&self, ids: &[PostId]) -> Result<Vec<Option<Arc<Post>>>> {
        let cache = &self.inner().cache;
        let mut out: Vec<Option<Arc<Post>>> = ids.iter().map(|&id| cache.posts().get(id)).collect();
        let missing: Vec<(usize, PostId, u64)> = out
            .iter()
            .zip(ids)
            .enumerate()
            .filter(|(_, (p, _))| p.is_none())
            .map(|(i, (_, &id))| (i, id, cache.posts().version(id)))
            .collect();
        if missing.is_empty() {
            return Ok(out);
        }
        let miss_ids: Vec<PostId> = missing.iter().map(|&(_, id, _)| id).collect();
        for ((i, id, v), p) in missing.into_iter().zip(self.load_posts(&miss_ids)?) {
            if let Some(p) = p {
                let p = Arc::new(p);
                cache.posts().fill(id, v, p.clone());
                out[i] = Some(p);
            }
        }
        Ok(out)
    }

    /// Loads many posts at once; missing ones are `None`.
    pub(crate) fn load_posts(&self, ids: &[PostId]) -> Result<Vec<Option<Post>>> {
        POSTS.get_many(&self.inner().store, ids)
    }

    /// One post as `viewer` may see it. Deleted, expired and not-permitted posts are `NotFound`
    /// alike, so a private account's posts do not reveal that they exist.
    pub fn get_post(&self, viewer: UserId, id: PostId) -> Result<Arc<Post>> {
        self.visible_post(viewer, id).map(Arc::new)
    }

    /// A page of `author`'s own posts, newest first, as `viewer` may see them.
    pub fn author_posts(
        &self,
        viewer: UserId,
        author: UserId,
        page_size: usize,
        cursor: Option<&str>,
    ) -> Result<PostPage> {
        self.check_page_size(page_size)?;
        let after = cursor.map(codec::decode_list_cursor).transpose()?;
        let inner = self.inner();
        inner.require_user(viewer)?;
        self.check_user_visible(crate::model::Viewer::User(viewer), author)?;
        if !self.may_view(viewer, author)? {
            return Err(Error::PermissionDenied(format!(
                "user {author}'s posts are visible to approved followers only"
            )));
        }
        let now = inner.now_ms();
        let mut posts = Vec::with_capacity(page_size + 1);
        let mut from = after;
        'pages: loop {
            let mut ids = Vec::with_capacity(page_size + 1);
            let mut exhausted = true;
            OUTBOX.scan(&inner.store, author, from, |e| {
                if Some(e.post) != after {
                    ids.push(e.post);
                }
                if ids.len() > page_size {
                    exhausted = false;
                    return false;
                }
                true
            })?;
            let last = ids.last().copied();
            for p in self.load_posts(&ids)?.into_iter().flatten() {
                if !p.expired(now) {
                    posts.push(Arc::new(p));
                    if posts.len() > page_size {
                        break 'pages;
                    }
                }
            }
            match last {
                Some(l) if !exhausted => from = Some(l.saturating_sub(1)),
                _ => break,
            }
        }
        let next_cursor = if posts.len() > page_size {
            posts.truncate(page_size);
            posts.last().map(|p| codec::encode_list_cursor(p.id))
        } else {
            None
        };
        Ok(PostPage { posts, next_cursor })
    }
}

impl Writer<'_> {
    /// Publishes a post. When this returns, the post and its pending fanout are on disk (fsynced);
    /// delivery to followers' timelines follows asynchronously and resumes after a crash.
    /// Answers `Overloaded` (and writes nothing) when the fanout backlog is full.
    pub fn publish(&self, author: UserId, new: NewPost) -> Result<Arc<Post>> {
        self.publish_reaching(author, new, None)
    }

    /// [`Writer::publish`], ranked and pushed or pulled as for an author with `reach` followers
    /// when given (a cluster: the author's node counts them, and every node applies the same),
    /// else as for the author's follower count here.
    pub fn publish_reaching(&self, author: UserId, new: NewPost, reach: Option<u64>) -> Result<Arc<Post>> {
        self.validate_post(&new)?;
        let inner = self.inner();
        let private = self.is_private(author)?;
        // In a cluster only the author's node fans a post out; every other node writes its head
        // (the post and its read-model entries) with no fanout job, pending record or fsync.
        let head_only = crate::fanout::fanned_elsewhere(inner, author);
        if !head_only {
            inner.reserve_job()?;
        }
        let res = (|| -> Result<(Post, JobRecord, u64)> {
            let now = self.ctx.now_ms();
            let followers = match reach {
                Some(r) => r,
                None => inner.counter(author, Counter::Followers)?,
            };
            let pushed = followers < inner.cfg.celebrity_followers;
            let id = inner.next_post_id(now, self.ctx.minted());
            let post = Post {
                id,
                author,
                created_at_ms: now,
                content_type: new.content_type,
                text: new.text,
                media: new.media,
                expires_at_ms: new.ttl_ms.map(|t| now + t),
                rank: ranking::rank(inner.rank, now, followers, new.content_type),
                pushed,
                location: new.location,
                trimmed: false,
                head_tags: Vec::new(),
            };
            let entry = Entry {
                rank: post.rank,
                post: id,
                author,
                expires_at_ms: post.expires_at_ms,
            };
            let job = JobRecord {
                kind: JobKind::Deliver,
                entry,
                pushed,
            };
            let s = &inner.store;
            let mut b = s.batch();
            POSTS.put(s, &mut b, &post, self.ctx.seq());
            OUTBOX.put(s, &mut b, &entry);
            RANKED.put(s, &mut b, author, &entry);
            COUNTERS.add(s, &mut b, author, Counter::Posts, 1);
            if !head_only {
                PENDING.put(s, &mut b, &job);
            }
            TAGS.put(s, &mut b, id, author, &post.tags());
            let until = now + inner.cfg.pull_window_ms;
            if !pushed {
                PULL_AUTHORS.put(s, &mut b, author, until);
            }
            inner.store.write(b, self.ctx.durability())?;
            Ok((post, job, until))
        })();
        let (post, job, until) = match res {
            Ok(x) => x,
            Err(e) => {
                if !head_only {
                    inner.release_job();
                }
                return Err(e);
            }
        };
        inner.cache.changed(Change::Posted {
            post: &post,
            public: !private,
            pull_until_ms: (!post.pushed).then_some(until),
        });
        if head_only {
            // Pushed posts reach this node's readers in the author's node's fanout batches; a
            // post that is not pushed is told here to this node's live subscribers who follow
            // the author, as the author's node tells its own.
            // The post is written whatever this lookup does: a failure is logged, not answered.
            if !post.pushed
                && let Err(e) = crate::fanout::tell_listeners(inner, &job.entry)
            {
                tracing::warn!(post = post.id, error = %e, "live subscribers not told of a post");
            }
            metrics::counter!(crate::metrics::POST_HEADS).increment(1);
        } else {
            inner.enqueue(job);
            metrics::counter!(crate::metrics::PUBLISHES).increment(1);
        }
        Ok(Arc::new(post))
    }

    /// Deletes a post (only its author may). The post disappears from every feed at once (reads
    /// drop posts that no longer exist) and its stored timeline entries are retracted by a
    /// durable background job — in a cluster, on the author's node only: every other node
    /// deletes its head and gets the retraction batches for its readers.
    pub fn delete_post(&self, actor: UserId, post: PostId) -> Result<()> {
        let inner = self.inner();
        // A post the actor may not see is answered as one that does not exist.
        let p = self.visible_post_at(actor, post, self.ctx.now_ms())?;
        if p.author != actor {
            return Err(Error::PermissionDenied(format!(
                "post {post} is not user {actor}'s: only its author may delete it"
            )));
        }
        let head_only = crate::fanout::fanned_elsewhere(inner, p.author);
        if !head_only {
            inner.reserve_job()?;
        }
        let entry = Entry {
            rank: p.rank,
            post,
            author: p.author,
            expires_at_ms: p.expires_at_ms,
        };
        let job = JobRecord {
            kind: JobKind::Retract,
            entry,
            pushed: p.pushed,
        };
        let s = &inner.store;
        let mut b = s.batch();
        POSTS.delete(s, &mut b, post);
        OUTBOX.delete(s, &mut b, p.author, post);
        RANKED.delete(s, &mut b, p.author, (p.rank, post));
        COUNTERS.add(s, &mut b, p.author, Counter::Posts, -1);
        if !head_only {
            PENDING.put(s, &mut b, &job);
        }
        // Its engagement goes with it: likes, comments and their counts, its tag postings.
        TAGS.delete(s, &mut b, post, &p.tags());
        LIKES.delete_post(s, &mut b, post);
        COMMENTS.delete_post(s, &mut b, post);
        COUNTERS.delete(s, &mut b, post, Counter::PostLikes);
        COUNTERS.delete(s, &mut b, post, Counter::PostComments);
        SHARED_COUNTS.delete(s, &mut b, post);
        // Engagement checked against the post before this write and written after it looks again.
        let fence = inner.deletions.begin();
        if let Err(e) = inner.store.write(b, self.ctx.durability()) {
            if !head_only {
                inner.release_job();
            }
            return Err(e);
        }
        drop(fence);
        inner.trends.forget(post);
        if head_only {
            inner.cache.changed(Change::DeletedElsewhere(&entry));
        } else {
            inner.cache.changed(Change::Deleted(&entry));
            inner.enqueue(job);
        }
        Ok(())
    }
}

/// Post deletions in flight and done. A write that checked a post exists, then wrote engagement
/// of it, asks afterwards whether a deletion may have landed in between ([`Deletions::maybe_since`]
/// the count it read before checking); only then does it read the post again. So a like or
/// comment that races its post's deletion does not outlive it, at no cost while nothing is deleted.
#[derive(Debug, Default)]
pub(crate) struct Deletions {
    in_flight: std::sync::atomic::AtomicU64,
    done: std::sync::atomic::AtomicU64,
}

/// A deletion in flight; counted done when dropped (after its write).
pub(crate) struct DeletionFence<'a>(&'a Deletions);

impl Drop for DeletionFence<'_> {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.0.done.fetch_add(1, SeqCst);
        self.0.in_flight.fetch_sub(1, SeqCst);
    }
}

impl Deletions {
    /// Marks a deletion in flight until the fence is dropped; take it before the delete's write.
    pub fn begin(&self) -> DeletionFence<'_> {
        self.in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        DeletionFence(self)
    }

    /// The deletions done so far: read before checking a post.
    pub fn epoch(&self) -> u64 {
        self.done.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether a deletion may have written since `epoch` was read (one in flight, or one done).
    pub fn maybe_since(&self, epoch: u64) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.in_flight.load(SeqCst) > 0 || self.done.load(SeqCst) != epoch
    }
}

impl Inner {
    /// A stored post, expired or not; `None` if it does not exist.
    pub(crate) fn load_post(&self, id: PostId) -> Result<Option<Post>> {
        POSTS.get(&self.store, id)
    }
}

#[cfg(test)]
mod tests {
    use super::has_visible_char;

    #[test]
    fn invisible_text_is_blank() {
        for blank in [
            "",
            " \t\n",
            "\u{200B}",
            "\u{202E}",
            "\u{FEFF}",
            "\0",
            "\u{200B}\u{202E}\u{FEFF}\0 ",
        ] {
            assert!(!has_visible_char(blank), "{blank:?} has no visible character");
        }
        for text in ["a", " hi ", "\u{200B}x", "日本", "🙂"] {
            assert!(has_visible_char(text), "{text:?} prints");
        }
    }
}
