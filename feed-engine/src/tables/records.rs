//! The keyed record families: users and their handles, counters, posts and outboxes, pending
//! fanout jobs, reader records, pull-mode authors and read markers (engine metadata: `meta.rs`). Each table
//! owns its key and value encoding; a stored value that does not decode is corruption.

use crate::codec::{self, Counter, JobRecord, ReaderRecord, UserRecord};
use crate::error::{Error, Result};
use crate::model::{Entry, Post, PostId, UserId};
use crate::store::{Batch, Cf, Store};

use super::Pos;

/// Profiles (`users`: `user → record`).
#[derive(Debug, Clone, Copy)]
pub struct Users;
/// The `users` table.
pub const USERS: Users = Users;

impl Users {
    /// `id`'s profile record, if the user exists.
    pub fn get(self, store: &Store, id: UserId) -> Result<Option<UserRecord>> {
        match store.get(Cf::Users, &codec::id_key(id))? {
            Some(v) => codec::decode_user(&v)
                .map(Some)
                .ok_or_else(|| Error::corrupt(format!("user record {id}"))),
            None => Ok(None),
        }
    }

    /// Whether user `id` exists.
    pub fn exists(self, store: &Store, id: UserId) -> Result<bool> {
        store.exists(Cf::Users, &codec::id_key(id))
    }

    /// Stores `id`'s profile, within a batch.
    pub fn put(self, store: &Store, b: &mut Batch, id: UserId, rec: &UserRecord) {
        store.put(b, Cf::Users, &codec::id_key(id), &codec::encode_user(rec));
    }

    /// The highest user id stored (0: none).
    pub fn last_id(self, store: &Store) -> Result<UserId> {
        last_id(store, Cf::Users)
    }
}

/// The handle index (`handles`: `handle → user`), which keeps handles unique.
#[derive(Debug, Clone, Copy)]
pub struct Handles;
/// The `handles` table.
pub const HANDLES: Handles = Handles;

impl Handles {
    /// The user holding `handle`, if any.
    pub fn get(self, store: &Store, handle: &str) -> Result<Option<UserId>> {
        match store.get(Cf::Handles, handle.as_bytes())? {
            Some(v) if v.len() == 8 => Ok(codec::read_u64(&v, 0)),
            Some(_) => Err(Error::corrupt(format!("handle index entry {handle:?}"))),
            None => Ok(None),
        }
    }

    /// Whether `handle` is taken.
    pub fn exists(self, store: &Store, handle: &str) -> Result<bool> {
        store.exists(Cf::Handles, handle.as_bytes())
    }

    /// For each handle, whether it is taken (one multi-get).
    pub fn taken<H: AsRef<str>>(self, store: &Store, handles: &[H]) -> Result<Vec<bool>> {
        let keys: Vec<&[u8]> = handles.iter().map(|h| h.as_ref().as_bytes()).collect();
        Ok(store
            .multi_get(Cf::Handles, &keys)?
            .into_iter()
            .map(|v| v.is_some())
            .collect())
    }

    /// Visits the users whose handle starts with `prefix`, in handle order, until `visit`
    /// returns `false`.
    pub fn scan_prefix(self, store: &Store, prefix: &str, mut visit: impl FnMut(UserId) -> bool) -> Result<()> {
        let mut bad = false;
        store.scan_starting(Cf::Handles, prefix.as_bytes(), |_, v| match codec::read_u64(v, 0) {
            Some(id) if v.len() == 8 => visit(id),
            _ => {
                bad = true;
                false
            }
        })?;
        if bad {
            return Err(Error::corrupt(format!("handle index entry under {prefix:?}")));
        }
        Ok(())
    }

    /// Points `handle` at `id`, within a batch.
    pub fn put(self, store: &Store, b: &mut Batch, handle: &str, id: UserId) {
        store.put(b, Cf::Handles, handle.as_bytes(), &codec::id_key(id));
    }
}

/// Per-user counters (`counters`: `user ‖ kind → i64`), added to by merge operands so a change
/// never reads the old value.
#[derive(Debug, Clone, Copy)]
pub struct Counters;
/// The `counters` table.
pub const COUNTERS: Counters = Counters;

impl Counters {
    /// Adds `delta` to `user`'s counter `c`, within a batch.
    pub fn add(self, store: &Store, b: &mut Batch, user: UserId, c: Counter, delta: i64) {
        store.add(b, Cf::Counters, &codec::counter_key(user, c), delta);
    }

    /// `user`'s counter `c` (a missing counter is 0; a transiently negative sum reads as 0).
    pub fn get(self, store: &Store, user: UserId, c: Counter) -> Result<u64> {
        let v = store.get(Cf::Counters, &codec::counter_key(user, c))?;
        Ok(codec::decode_counter(v.as_deref()).max(0) as u64)
    }

    /// Removes counter `c` of `id`, within a batch (a deleted post's counters).
    pub fn delete(self, store: &Store, b: &mut Batch, id: u64, c: Counter) {
        store.delete(b, Cf::Counters, &codec::counter_key(id, c));
    }

    /// Many counters in one multi-get, in the order asked.
    pub fn get_many(self, store: &Store, which: &[(UserId, Counter)]) -> Result<Vec<u64>> {
        let keys: Vec<[u8; 9]> = which.iter().map(|&(u, c)| codec::counter_key(u, c)).collect();
        Ok(store
            .multi_get(Cf::Counters, &keys)?
            .iter()
            .map(|v| codec::decode_counter(v.as_deref()).max(0) as u64)
            .collect())
    }
}

/// Post records (`posts`: `post → record`).
#[derive(Debug, Clone, Copy)]
pub struct Posts;
/// The `posts` table.
pub const POSTS: Posts = Posts;

fn decode_post(id: PostId, v: &[u8]) -> Result<Post> {
    codec::decode_post(id, v).ok_or_else(|| Error::corrupt(format!("post record {id}")))
}

impl Posts {
    /// A stored post, expired or not; `None` if it does not exist.
    pub fn get(self, store: &Store, id: PostId) -> Result<Option<Post>> {
        store
            .get(Cf::Posts, &codec::id_key(id))?
            .map(|v| decode_post(id, &v))
            .transpose()
    }

    /// Many posts in one multi-get, in the order asked; missing ones are `None`.
    pub fn get_many(self, store: &Store, ids: &[PostId]) -> Result<Vec<Option<Post>>> {
        let keys: Vec<[u8; 8]> = ids.iter().map(|&i| codec::id_key(i)).collect();
        store
            .multi_get(Cf::Posts, &keys)?
            .into_iter()
            .zip(ids)
            .map(|(v, &id)| v.map(|v| decode_post(id, &v)).transpose())
            .collect()
    }

    /// Whether post `id` is stored.
    pub fn exists(self, store: &Store, id: PostId) -> Result<bool> {
        store.exists(Cf::Posts, &codec::id_key(id))
    }

    /// Stores a post (or only its head, if [`Post::trimmed`]), with the log sequence it was
    /// applied at, within a batch.
    pub fn put(self, store: &Store, b: &mut Batch, p: &Post, seq: Option<u64>) {
        store.put(b, Cf::Posts, &codec::id_key(p.id), &codec::encode_post(p, seq));
    }

    /// Deletes post `id`, within a batch.
    pub fn delete(self, store: &Store, b: &mut Batch, id: PostId) {
        store.delete(b, Cf::Posts, &codec::id_key(id));
    }

    /// The highest post id stored (0: none).
    pub fn last_id(self, store: &Store) -> Result<PostId> {
        last_id(store, Cf::Posts)
    }

    /// Visits posts from the newest id down until `visit` returns `false`; a record that does
    /// not decode is visited as its corruption error (the caller decides whether to go on).
    pub fn newest_first(self, store: &Store, mut visit: impl FnMut(Result<Post>) -> bool) -> Result<()> {
        store.scan_reverse(Cf::Posts, |k, v| {
            visit(match codec::read_u64(k, 0).filter(|_| k.len() == 8) {
                Some(id) => decode_post(id, v),
                None => Err(Error::corrupt("post key")),
            })
        })
    }
}

fn last_id(store: &Store, cf: Cf) -> Result<u64> {
    let mut last = 0;
    store.scan_reverse(cf, |k, _| {
        last = codec::read_u64(k, 0).unwrap_or(0);
        false
    })?;
    Ok(last)
}

/// Authors' posts by id (`outbox`: `author ‖ !post → rank [‖ expiry]`), newest first: an
/// author's own post list.
#[derive(Debug, Clone, Copy)]
pub struct Outbox;
/// The `outbox` table.
pub const OUTBOX: Outbox = Outbox;

impl Outbox {
    /// Adds `e` to its author's outbox, within a batch.
    pub fn put(self, store: &Store, b: &mut Batch, e: &Entry) {
        store.put(
            b,
            Cf::Outbox,
            &codec::outbox_key(e.author, e.post),
            &codec::outbox_value(e.rank, e.expires_at_ms),
        );
    }

    /// Removes `post` from `author`'s outbox, within a batch.
    pub fn delete(self, store: &Store, b: &mut Batch, author: UserId, post: PostId) {
        store.delete(b, Cf::Outbox, &codec::outbox_key(author, post));
    }

    /// Visits `author`'s posts newest first, from post id `from` down (inclusive; default the
    /// newest), until `visit` returns `false`.
    pub fn scan(
        self,
        store: &Store,
        author: UserId,
        from: Option<PostId>,
        mut visit: impl FnMut(&Entry) -> bool,
    ) -> Result<()> {
        let from = from.map(|p| codec::outbox_key(author, p));
        let mut err = None;
        store.scan_prefix(
            Cf::Outbox,
            author,
            from.as_ref().map(|k| &k[..]),
            |k, v| match codec::decode_outbox(k, v) {
                Some(e) => visit(&e),
                None => {
                    err = Some(Error::corrupt(format!("outbox entry of user {author}")));
                    false
                }
            },
        )?;
        err.map_or(Ok(()), Err)
    }

    /// Visits every author's outbox entries, until `visit` returns `false`.
    pub fn scan_all(self, store: &Store, mut visit: impl FnMut(&Entry) -> bool) -> Result<()> {
        let mut err = None;
        store.scan_all(Cf::Outbox, |k, v| match codec::decode_outbox(k, v) {
            Some(e) => visit(&e),
            None => {
                err = Some(Error::corrupt("outbox entry"));
                false
            }
        })?;
        err.map_or(Ok(()), Err)
    }
}

/// Fanout work acknowledged but not yet done (`pending`: `post ‖ kind → job`).
#[derive(Debug, Clone, Copy)]
pub struct Pending;
/// The `pending` table.
pub const PENDING: Pending = Pending;

impl Pending {
    /// Records `job` as owed, within a batch.
    pub fn put(self, store: &Store, b: &mut Batch, job: &JobRecord) {
        store.put(b, Cf::Pending, &codec::job_key(job), &codec::encode_job(job));
    }

    /// Clears `job`, within a batch.
    pub fn delete(self, store: &Store, b: &mut Batch, job: &JobRecord) {
        store.delete(b, Cf::Pending, &codec::job_key(job));
    }

    /// Every job still owed, in post order.
    pub fn all(self, store: &Store) -> Result<Vec<JobRecord>> {
        let (mut jobs, mut bad) = (Vec::new(), 0usize);
        store.scan_all(Cf::Pending, |k, v| {
            match codec::decode_job(k, v) {
                Some(j) => jobs.push(j),
                None => bad += 1,
            }
            true
        })?;
        if bad > 0 {
            return Err(Error::corrupt(format!("{bad} pending fanout records")));
        }
        Ok(jobs)
    }
}

/// Readers' stored state (`readers`: `reader → activity, materialised`).
#[derive(Debug, Clone, Copy)]
pub struct ReaderRecords;
/// The `readers` table.
pub const READERS: ReaderRecords = ReaderRecords;

impl ReaderRecords {
    /// Many readers' records in one multi-get, in the order asked; `None` where none is stored.
    pub fn get_many(self, store: &Store, readers: &[UserId]) -> Result<Vec<Option<ReaderRecord>>> {
        let keys: Vec<[u8; 8]> = readers.iter().map(|&r| codec::id_key(r)).collect();
        store
            .multi_get(Cf::Readers, &keys)?
            .into_iter()
            .zip(readers)
            .map(|(v, &r)| {
                v.map(|v| codec::decode_reader(&v).ok_or_else(|| Error::corrupt(format!("reader record of user {r}"))))
                    .transpose()
            })
            .collect()
    }

    /// Stores `reader`'s record, within a batch.
    pub fn put(self, store: &Store, b: &mut Batch, reader: UserId, rec: &ReaderRecord) {
        store.put(b, Cf::Readers, &codec::id_key(reader), &codec::encode_reader(rec));
    }

    /// Removes `reader`'s record, within a batch: they read as a reader never seen.
    pub fn delete(self, store: &Store, b: &mut Batch, reader: UserId) {
        store.delete(b, Cf::Readers, &codec::id_key(reader));
    }

    /// Every reader with a stored record, in id order.
    pub fn ids(self, store: &Store) -> Result<Vec<UserId>> {
        let mut out = Vec::new();
        store.scan_all(Cf::Readers, |k, _| {
            if let Some(id) = codec::read_u64(k, 0) {
                out.push(id);
            }
            true
        })?;
        Ok(out)
    }
}

/// Authors whose recent posts were not pushed (`pull_authors`: `author → pull-until ms`).
#[derive(Debug, Clone, Copy)]
pub struct PullAuthors;
/// The `pull_authors` table.
pub const PULL_AUTHORS: PullAuthors = PullAuthors;

impl PullAuthors {
    /// Records that readers merge `author`'s posts until `until_ms`, within a batch.
    pub fn put(self, store: &Store, b: &mut Batch, author: UserId, until_ms: u64) {
        store.put(b, Cf::PullAuthors, &codec::id_key(author), &until_ms.to_be_bytes());
    }

    /// Every `(author, until_ms)` stored.
    pub fn all(self, store: &Store) -> Result<Vec<(UserId, u64)>> {
        let mut out = Vec::new();
        let mut bad = false;
        store.scan_all(Cf::PullAuthors, |k, v| {
            match (codec::read_u64(k, 0), codec::read_u64(v, 0)) {
                (Some(a), Some(until)) if k.len() == 8 && v.len() == 8 => out.push((a, until)),
                _ => bad = true,
            }
            !bad
        })?;
        if bad {
            return Err(Error::corrupt("pull-author record"));
        }
        Ok(out)
    }
}

/// Read markers (`markers`: `reader → rank ‖ post`).
#[derive(Debug, Clone, Copy)]
pub struct Markers;
/// The `markers` table.
pub const MARKERS: Markers = Markers;

impl Markers {
    /// The feed position of `reader`'s read marker, if one is set.
    pub fn get(self, store: &Store, reader: UserId) -> Result<Option<Pos>> {
        match store.get(Cf::Markers, &codec::id_key(reader))? {
            None => Ok(None),
            Some(v) => match (codec::read_u64(&v, 0), codec::read_u64(&v, 8)) {
                (Some(rank), Some(post)) if v.len() == 16 => Ok(Some((rank, post))),
                _ => Err(Error::corrupt(format!("read marker of user {reader}"))),
            },
        }
    }

    /// Sets `reader`'s marker to `pos`, within a batch.
    pub fn put(self, store: &Store, b: &mut Batch, reader: UserId, (rank, post): Pos) {
        store.put(b, Cf::Markers, &codec::id_key(reader), &codec::pair_key(rank, post));
    }
}
