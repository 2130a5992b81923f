//! The engagement families: likes, comments and their thread index, hashtag postings and
//! names, notifications. Like every table, each owns its key and value encoding; a stored value
//! that does not decode is corruption.

use crate::codec::{self, pair_key};
use crate::error::{Error, Result};
use crate::model::{PostId, UserId};
use crate::social::{Comment, CommentId, Decayed, Notification, TagCount};
use crate::store::{Batch, Cf, Store};

/// Who liked which post (`likes`: `post ‖ user → liked-at ms`).
#[derive(Debug, Clone, Copy)]
pub struct Likes;
/// The `likes` table.
pub const LIKES: Likes = Likes;

impl Likes {
    /// Whether `user` likes `post`.
    pub fn exists(self, store: &Store, post: PostId, user: UserId) -> Result<bool> {
        store.exists(Cf::Likes, &pair_key(post, user))
    }

    /// Records `user`'s like of `post` at `at_ms`, within a batch.
    pub fn put(self, store: &Store, b: &mut Batch, post: PostId, user: UserId, at_ms: u64) {
        store.put(b, Cf::Likes, &pair_key(post, user), &at_ms.to_be_bytes());
    }

    /// Removes `user`'s like of `post`, within a batch.
    pub fn delete(self, store: &Store, b: &mut Batch, post: PostId, user: UserId) {
        store.delete(b, Cf::Likes, &pair_key(post, user));
    }

    /// Removes every like of `post`, within a batch (one range tombstone).
    pub fn delete_post(self, store: &Store, b: &mut Batch, post: PostId) {
        store.delete_range(b, Cf::Likes, &codec::id_key(post), &codec::prefix_end(post));
    }

    /// Visits the users who like `post`, ascending by id from `from` (inclusive), until `visit`
    /// returns `false`.
    pub fn scan(
        self,
        store: &Store,
        post: PostId,
        from: Option<UserId>,
        mut visit: impl FnMut(UserId) -> bool,
    ) -> Result<()> {
        let from = from.map(|u| pair_key(post, u));
        let mut bad = false;
        store.scan_prefix(
            Cf::Likes,
            post,
            from.as_ref().map(|k| &k[..]),
            |k, _| match codec::pair_second(k) {
                Some(u) => visit(u),
                None => {
                    bad = true;
                    false
                }
            },
        )?;
        if bad {
            return Err(Error::corrupt(format!("like of post {post}")));
        }
        Ok(())
    }
}

/// Comments (`comments`: `post ‖ comment → record`).
#[derive(Debug, Clone, Copy)]
pub struct Comments;
/// The `comments` table.
pub const COMMENTS: Comments = Comments;

impl Comments {
    /// The comment `id` on `post`, if it exists.
    pub fn get(self, store: &Store, post: PostId, id: CommentId) -> Result<Option<Comment>> {
        match store.get(Cf::Comments, &pair_key(post, id))? {
            Some(v) => codec::decode_comment(post, id, &v)
                .map(Some)
                .ok_or_else(|| Error::corrupt(format!("comment {id} on post {post}"))),
            None => Ok(None),
        }
    }

    /// Many comments of `post` in one multi-get, in the order asked; missing ones are `None`.
    pub fn get_many(self, store: &Store, post: PostId, ids: &[CommentId]) -> Result<Vec<Option<Comment>>> {
        let keys: Vec<[u8; 16]> = ids.iter().map(|&c| pair_key(post, c)).collect();
        store
            .multi_get(Cf::Comments, &keys)?
            .into_iter()
            .zip(ids)
            .map(|(v, &id)| {
                v.map(|v| {
                    codec::decode_comment(post, id, &v)
                        .ok_or_else(|| Error::corrupt(format!("comment {id} on post {post}")))
                })
                .transpose()
            })
            .collect()
    }

    /// Stores a comment and its place in its thread, within a batch.
    pub fn put(self, store: &Store, b: &mut Batch, c: &Comment) {
        store.put(b, Cf::Comments, &pair_key(c.post, c.id), &codec::encode_comment(c));
        store.put(
            b,
            Cf::Threads,
            &codec::thread_key(c.post, c.parent.unwrap_or(0), c.id),
            &[],
        );
    }

    /// Removes a comment and its place in its thread, within a batch.
    pub fn delete(self, store: &Store, b: &mut Batch, c: &Comment) {
        store.delete(b, Cf::Comments, &pair_key(c.post, c.id));
        store.delete(b, Cf::Threads, &codec::thread_key(c.post, c.parent.unwrap_or(0), c.id));
    }

    /// Removes every comment of `post` and its threads, within a batch (range tombstones).
    pub fn delete_post(self, store: &Store, b: &mut Batch, post: PostId) {
        let (from, to) = (codec::id_key(post), codec::prefix_end(post));
        store.delete_range(b, Cf::Comments, &from, &to);
        store.delete_range(b, Cf::Threads, &from, &to);
    }

    /// Visits the ids of one thread of `post` (top level: `parent` 0; else the replies to
    /// `parent`), oldest first from `from` (inclusive), until `visit` returns `false`.
    pub fn scan_thread(
        self,
        store: &Store,
        post: PostId,
        parent: CommentId,
        from: CommentId,
        mut visit: impl FnMut(CommentId) -> bool,
    ) -> Result<()> {
        let start = codec::thread_key(post, parent, from);
        let until = match parent.checked_add(1) {
            Some(next) => codec::thread_key(post, next, 0).to_vec(),
            None => codec::prefix_end(post),
        };
        let mut bad = false;
        store.scan_prefix_until(
            Cf::Threads,
            post,
            Some(&start),
            Some(&until),
            |k, _| match codec::decode_thread(k) {
                Some(c) => visit(c),
                None => {
                    bad = true;
                    false
                }
            },
        )?;
        if bad {
            return Err(Error::corrupt(format!("thread entry of post {post}")));
        }
        Ok(())
    }
}

/// Hashtag postings (`tags`: `hash(tag) ‖ !post → author ‖ tag`) and names (`tag_names`:
/// `tag → post count`, merge-added).
#[derive(Debug, Clone, Copy)]
pub struct Tags;
/// The `tags` and `tag_names` tables.
pub const TAGS: Tags = Tags;

impl Tags {
    /// Files `post` by `author` under each of `tags`, within a batch.
    pub fn put(self, store: &Store, b: &mut Batch, post: PostId, author: UserId, tags: &[String]) {
        for t in tags {
            store.put(b, Cf::Tags, &codec::tag_key(t, post), &codec::tag_value(author, t));
            store.add(b, Cf::TagNames, t.as_bytes(), 1);
        }
    }

    /// Removes `post` from each of `tags`, within a batch.
    pub fn delete(self, store: &Store, b: &mut Batch, post: PostId, tags: &[String]) {
        for t in tags {
            store.delete(b, Cf::Tags, &codec::tag_key(t, post));
            store.add(b, Cf::TagNames, t.as_bytes(), -1);
        }
    }

    /// Visits `(post, author)` of the posts tagged `tag`, newest first from post id `from` down
    /// (inclusive; default the newest), until `visit` returns `false`.
    pub fn scan(
        self,
        store: &Store,
        tag: &str,
        from: Option<PostId>,
        mut visit: impl FnMut(PostId, UserId) -> bool,
    ) -> Result<()> {
        let prefix = codec::tag_prefix(tag);
        let from = from.map(|p| codec::tag_key(tag, p));
        let mut bad = false;
        store.scan_prefix(Cf::Tags, prefix, from.as_ref().map(|k| &k[..]), |k, v| {
            match codec::decode_tag(k, v) {
                // Another tag with the same hash: not this tag's posting.
                Some((_, _, t)) if t != tag => true,
                Some((post, author, _)) => visit(post, author),
                None => {
                    bad = true;
                    false
                }
            }
        })?;
        if bad {
            return Err(Error::corrupt(format!("posting of tag {tag:?}")));
        }
        Ok(())
    }

    /// Up to `scan` tags starting with `prefix` in text order, with their post counts (tags
    /// whose posts were all deleted are skipped).
    pub fn names(self, store: &Store, prefix: &str, scan: usize) -> Result<Vec<TagCount>> {
        let mut out = Vec::new();
        let mut seen = 0;
        store.scan_starting(Cf::TagNames, prefix.as_bytes(), |k, v| {
            seen += 1;
            let posts = codec::decode_counter(Some(v));
            if let (Ok(tag), true) = (std::str::from_utf8(k), posts > 0) {
                out.push(TagCount {
                    tag: tag.to_owned(),
                    posts: posts as u64,
                });
            }
            seen < scan
        })?;
        Ok(out)
    }
}

/// Notifications (`notifications`: `user ‖ !id → record`), newest first.
#[derive(Debug, Clone, Copy)]
pub struct Notifications;
/// The `notifications` table.
pub const NOTIFICATIONS: Notifications = Notifications;

impl Notifications {
    /// Stores `n` for `user`, within a batch.
    pub fn put(self, store: &Store, b: &mut Batch, user: UserId, n: &Notification) {
        store.put(
            b,
            Cf::Notifications,
            &codec::notification_key(user, n.id),
            &codec::encode_notification(n),
        );
    }

    /// Removes every notification of `user` with an id at most `id`, within a batch.
    pub fn delete_up_to(self, store: &Store, b: &mut Batch, user: UserId, id: u64) {
        store.delete_range(
            b,
            Cf::Notifications,
            &codec::notification_key(user, id),
            &codec::prefix_end(user),
        );
    }

    /// Visits `user`'s notifications newest first, from id `from` down (inclusive; default the
    /// newest), until `visit` returns `false`.
    pub fn scan(
        self,
        store: &Store,
        user: UserId,
        from: Option<u64>,
        mut visit: impl FnMut(&Notification) -> bool,
    ) -> Result<()> {
        let from = from.map(|id| codec::notification_key(user, id));
        let mut bad = false;
        store.scan_prefix(Cf::Notifications, user, from.as_ref().map(|k| &k[..]), |k, v| {
            match codec::decode_notification(k, v) {
                Some(n) => visit(&n),
                None => {
                    bad = true;
                    false
                }
            }
        })?;
        if bad {
            return Err(Error::corrupt(format!("notification of user {user}")));
        }
        Ok(())
    }
}

/// Readers' affinity to authors (`affinity`: `reader ‖ author → value ‖ at`).
#[derive(Debug, Clone, Copy)]
pub struct Affinity;
/// The `affinity` table.
pub const AFFINITY: Affinity = Affinity;

impl Affinity {
    /// `reader`'s affinity to each of `authors`, in the order asked (none stored: zero).
    pub fn get_many(self, store: &Store, reader: UserId, authors: &[UserId]) -> Result<Vec<Decayed>> {
        let keys: Vec<[u8; 16]> = authors.iter().map(|&a| pair_key(reader, a)).collect();
        store
            .multi_get(Cf::Affinity, &keys)?
            .into_iter()
            .map(|v| match v {
                None => Ok(Decayed::default()),
                // A like taken back after its weight decayed may leave a small negative sum.
                Some(v) => codec::decode_decayed(&v)
                    .map(|d| Decayed {
                        value: d.value.max(0.0),
                        ..d
                    })
                    .ok_or_else(|| Error::corrupt(format!("affinity of user {reader}"))),
            })
            .collect()
    }

    /// Adds `amount` (negative: takes back) to `reader`'s affinity to `author` at `at_ms`,
    /// within a batch: a merge operand (the family folds operands with [`Decayed::combined`]),
    /// so no read.
    pub fn add(self, store: &Store, b: &mut Batch, reader: UserId, author: UserId, amount: f64, at_ms: u64) {
        let d = Decayed { value: amount, at_ms };
        store.merge(b, Cf::Affinity, &pair_key(reader, author), &codec::encode_decayed(&d));
    }
}
