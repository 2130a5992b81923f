//! Binary encodings of keys, records and cursors: big-endian, order-preserving keys so RocksDB's
//! byte order is the feed's order, versioned records, and opaque cursors. Pure: no IO, and every
//! decoder returns `None`/an error on any input it does not recognise instead of panicking.

use crate::model::{Entry, PostId, UserId};

mod cursor;
mod post;
mod social;

pub use cursor::{
    FeedCursor, decode_feed_cursor, decode_list_cursor, decode_ranked_cursor, encode_feed_cursor, encode_list_cursor,
    encode_ranked_cursor,
};
pub use post::{decode_post, decode_post_seq, encode_post};
pub use social::{
    decode_comment, decode_decayed, decode_notification, decode_tag, decode_thread, encode_comment, encode_decayed,
    encode_notification, notification_key, tag_key, tag_prefix, tag_value, thread_key,
};

/// Length of the user-id prefix that every per-user column family is keyed by.
pub const PREFIX_LEN: usize = 8;

/// `id` as 8 big-endian bytes.
pub fn id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Two ids, e.g. `followee ‖ follower`: all of one user's edges share the first id as prefix.
pub fn pair_key(a: u64, b: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&a.to_be_bytes());
    k[8..].copy_from_slice(&b.to_be_bytes());
    k
}

/// Reads a big-endian u64 at `at`, if the slice is long enough.
pub fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .map(|s| u64::from_be_bytes(s.try_into().expect("8 bytes")))
}

/// The second id of a [`pair_key`].
pub fn pair_second(k: &[u8]) -> Option<u64> {
    if k.len() != 16 {
        return None;
    }
    read_u64(k, 8)
}

/// The exclusive upper bound of every key that starts with `id`'s 8-byte prefix. For the last id
/// it is a run of 0xff longer than any key the engine writes.
pub fn prefix_end(id: u64) -> Vec<u8> {
    match id.checked_add(1) {
        Some(n) => n.to_be_bytes().to_vec(),
        None => vec![0xff; 64],
    }
}

/// Timeline key: `reader ‖ !rank ‖ !post`, so a forward scan of a reader's prefix yields the
/// highest rank first (ties: newest post first).
pub fn timeline_key(reader: UserId, rank: u64, post: PostId) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&reader.to_be_bytes());
    k[8..16].copy_from_slice(&(!rank).to_be_bytes());
    k[16..].copy_from_slice(&(!post).to_be_bytes());
    k
}

/// Timeline value: the author, then the expiry if the post is ephemeral.
pub fn timeline_value(author: UserId, expires_at_ms: Option<u64>) -> Vec<u8> {
    let mut v = author.to_be_bytes().to_vec();
    if let Some(t) = expires_at_ms {
        v.extend_from_slice(&t.to_be_bytes());
    }
    v
}

/// Decodes a timeline key and value into an entry.
pub fn decode_timeline(k: &[u8], v: &[u8]) -> Option<(UserId, Entry)> {
    if k.len() != 24 || (v.len() != 8 && v.len() != 16) {
        return None;
    }
    let reader = read_u64(k, 0)?;
    let rank = !read_u64(k, 8)?;
    let post = !read_u64(k, 16)?;
    let author = read_u64(v, 0)?;
    let expires_at_ms = read_u64(v, 8);
    Some((
        reader,
        Entry {
            rank,
            post,
            author,
            expires_at_ms,
        },
    ))
}

/// Outbox key: `author ‖ !post`, newest post first.
pub fn outbox_key(author: UserId, post: PostId) -> [u8; 16] {
    pair_key(author, !post)
}

/// Outbox value: the rank, then the expiry if the post is ephemeral.
pub fn outbox_value(rank: u64, expires_at_ms: Option<u64>) -> Vec<u8> {
    let mut v = rank.to_be_bytes().to_vec();
    if let Some(t) = expires_at_ms {
        v.extend_from_slice(&t.to_be_bytes());
    }
    v
}

/// Decodes an outbox key and value into an entry.
pub fn decode_outbox(k: &[u8], v: &[u8]) -> Option<Entry> {
    if k.len() != 16 || (v.len() != 8 && v.len() != 16) {
        return None;
    }
    Some(Entry {
        author: read_u64(k, 0)?,
        post: !read_u64(k, 8)?,
        rank: read_u64(v, 0)?,
        expires_at_ms: read_u64(v, 8),
    })
}

/// The expiry stored at the end of a timeline or outbox value, if any (for the compaction
/// filter: both values keep it in bytes 8..16).
pub fn value_expiry(v: &[u8]) -> Option<u64> {
    if v.len() == 16 { read_u64(v, 8) } else { None }
}

/// Counter kinds kept per user or per post in the `counters` column family (merge-added i64);
/// the kind byte keeps a user's and a post's counters apart whatever their ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Counter {
    /// Approved followers.
    Followers = 1,
    /// Accounts followed.
    Following = 2,
    /// Posts not deleted.
    Posts = 3,
    /// A post's likes (keyed by the post's id).
    PostLikes = 4,
    /// A post's comments and replies (keyed by the post's id).
    PostComments = 5,
    /// Notifications a user holds (trimmed to the number kept).
    Notifications = 6,
}

/// Counter key: `id ‖ kind` (a user's or, for the post kinds, a post's id).
pub fn counter_key(user: UserId, c: Counter) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&user.to_be_bytes());
    k[8] = c as u8;
    k
}

/// A counter delta / value: i64 little-endian.
pub fn counter_value(delta: i64) -> [u8; 8] {
    delta.to_le_bytes()
}

/// Decodes a counter value; a missing counter is 0.
pub fn decode_counter(v: Option<&[u8]>) -> i64 {
    v.and_then(|b| b.try_into().ok()).map(i64::from_le_bytes).unwrap_or(0)
}

/// A cursor over a stream of bytes that fails softly: every read returns `None` past the end.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Some(h)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
    fn str(&mut self, n: usize) -> Option<String> {
        self.take(n)
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(str::to_owned)
    }
    fn done(&self) -> bool {
        self.b.is_empty()
    }
}

const RECORD_V1: u8 = 1;

/// The stored part of a user: the profile (counters live in their own column family).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Unique handle.
    pub handle: String,
    /// Private account.
    pub private: bool,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
}

/// Encodes a user record.
pub fn encode_user(u: &UserRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(11 + u.handle.len());
    v.push(RECORD_V1);
    v.push(u.private as u8);
    v.extend_from_slice(&u.created_at_ms.to_be_bytes());
    v.push(u.handle.len() as u8);
    v.extend_from_slice(u.handle.as_bytes());
    v
}

/// Decodes a user record.
pub fn decode_user(b: &[u8]) -> Option<UserRecord> {
    let mut r = Reader { b };
    if r.u8()? != RECORD_V1 {
        return None;
    }
    let private = match r.u8()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let created_at_ms = r.u64()?;
    let n = r.u8()? as usize;
    let handle = r.str(n)?;
    r.done().then_some(UserRecord {
        handle,
        private,
        created_at_ms,
    })
}

/// What a fanout job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Deliver a new post to its author's followers.
    Deliver,
    /// Remove a deleted post from its author's followers' timelines.
    Retract,
}

/// A fanout job as kept in the `pending` column family until it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRecord {
    /// Deliver or retract.
    pub kind: JobKind,
    /// The post's entry.
    pub entry: Entry,
    /// Whether the post is pushed into timelines (`false`: its author is over the celebrity
    /// threshold and readers merge it; fanout then only notifies listeners).
    pub pushed: bool,
}

/// Pending-job key: `post ‖ kind`, so a delete's retract never overwrites a publish's delivery.
pub fn job_key(j: &JobRecord) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&j.entry.post.to_be_bytes());
    k[8] = match j.kind {
        JobKind::Deliver => 1,
        JobKind::Retract => 2,
    };
    k
}

const JOB_PUSHED: u8 = 1;
const JOB_EXPIRES: u8 = 2;

/// Encodes a job's value.
pub fn encode_job(j: &JobRecord) -> Vec<u8> {
    let e = &j.entry;
    let mut v = Vec::with_capacity(26);
    v.push(RECORD_V1);
    v.push(if j.pushed { JOB_PUSHED } else { 0 } | if e.expires_at_ms.is_some() { JOB_EXPIRES } else { 0 });
    v.extend_from_slice(&e.author.to_be_bytes());
    v.extend_from_slice(&e.rank.to_be_bytes());
    if let Some(t) = e.expires_at_ms {
        v.extend_from_slice(&t.to_be_bytes());
    }
    v
}

/// Decodes a pending job from its key and value.
pub fn decode_job(k: &[u8], v: &[u8]) -> Option<JobRecord> {
    if k.len() != 9 {
        return None;
    }
    let post = read_u64(k, 0)?;
    let mut r = Reader { b: v };
    if r.u8()? != RECORD_V1 {
        return None;
    }
    let flags = r.u8()?;
    if flags & !(JOB_PUSHED | JOB_EXPIRES) != 0 {
        return None;
    }
    let author = r.u64()?;
    let rank = r.u64()?;
    let expires_at_ms = if flags & JOB_EXPIRES != 0 { Some(r.u64()?) } else { None };
    if !r.done() {
        return None;
    }
    let kind = match k[8] {
        1 => JobKind::Deliver,
        2 => JobKind::Retract,
        _ => return None,
    };
    Some(JobRecord {
        kind,
        entry: Entry {
            rank,
            post,
            author,
            expires_at_ms,
        },
        pushed: flags & JOB_PUSHED != 0,
    })
}

/// What a reader's stored state says about their precomputed timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReaderRecord {
    /// Last feed read, ms since the Unix epoch (0: never).
    pub last_read_ms: u64,
    /// Exponentially decayed feed reads per day.
    pub reads_per_day: f32,
    /// Whether the timeline holds every pushed post since the reader became push-mode.
    pub materialized: bool,
    /// `(rank, post)` at and above which the timeline holds every entry of the feed (a trim or a
    /// capped merge cut what lies below; the read path pulls it from the outboxes). `None`:
    /// nothing was cut.
    pub cut: Option<(u64, u64)>,
}

/// Encodes a reader record: 14 bytes, or 30 with a cut.
pub fn encode_reader(r: &ReaderRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(30);
    v.push(RECORD_V1);
    v.extend_from_slice(&r.last_read_ms.to_be_bytes());
    v.extend_from_slice(&r.reads_per_day.to_be_bytes());
    v.push(r.materialized as u8);
    if let Some((rank, post)) = r.cut {
        v.extend_from_slice(&rank.to_be_bytes());
        v.extend_from_slice(&post.to_be_bytes());
    }
    v
}

/// Decodes a reader record.
pub fn decode_reader(b: &[u8]) -> Option<ReaderRecord> {
    if (b.len() != 14 && b.len() != 30) || b[0] != RECORD_V1 || b[13] > 1 {
        return None;
    }
    let reads_per_day = f32::from_be_bytes(b[9..13].try_into().ok()?);
    if !reads_per_day.is_finite() || reads_per_day < 0.0 {
        return None;
    }
    let cut = match b.len() {
        30 => Some((read_u64(b, 14)?, read_u64(b, 22)?)),
        _ => None,
    };
    Some(ReaderRecord {
        last_read_ms: read_u64(b, 1)?,
        reads_per_day,
        materialized: b[13] == 1,
        cut,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContentType, Post};
    use proptest::prelude::*;

    #[test]
    fn timeline_keys_sort_highest_rank_first() {
        let a = timeline_key(7, 100, 1);
        let b = timeline_key(7, 99, 5);
        let c = timeline_key(7, 100, 2);
        let other_reader = timeline_key(8, u64::MAX, 0);
        let mut v = vec![a, b, c, other_reader];
        v.sort();
        assert_eq!(v, vec![c, a, b, other_reader]);
    }

    #[test]
    fn outbox_keys_sort_newest_first() {
        assert!(outbox_key(3, 10) < outbox_key(3, 9));
        assert!(outbox_key(3, 0) < outbox_key(4, u64::MAX));
    }

    #[test]
    fn prefix_end_bounds_exactly_one_user() {
        assert!(timeline_key(5, 0, 0).as_slice() < prefix_end(5).as_slice());
        assert!(timeline_key(6, u64::MAX, u64::MAX).as_slice() >= prefix_end(5).as_slice());
        assert!(timeline_key(u64::MAX, 0, 0).as_slice() < prefix_end(u64::MAX).as_slice());
    }

    proptest! {
        #[test]
        fn timeline_roundtrips(reader: u64, rank: u64, post: u64, author: u64, exp: Option<u64>) {
            let k = timeline_key(reader, rank, post);
            let v = timeline_value(author, exp);
            prop_assert_eq!(decode_timeline(&k, &v), Some((reader, Entry { rank, post, author, expires_at_ms: exp })));
        }

        #[test]
        fn post_roundtrips(id: u64, author: u64, t: u64, ct in 0u8..3, text in ".{0,40}", media in proptest::collection::vec("[a-z:/.]{0,20}", 0..4), exp: Option<u64>, rank: u64, pushed: bool, location in proptest::option::of(".{0,20}"), seq: Option<u64>) {
            let p = Post { id, author, created_at_ms: t, content_type: ContentType::from_byte(ct).unwrap(), text, media, expires_at_ms: exp, rank, pushed, location, trimmed: false, head_tags: Vec::new() };
            prop_assert_eq!(decode_post(id, &encode_post(&p, None)), Some(p.clone()));
            prop_assert_eq!(decode_post_seq(id, &encode_post(&p, seq)), Some((p.clone(), seq)));
            let head = p.head();
            prop_assert!(head.trimmed && head.text.is_empty() && head.media.is_empty() && head.location.is_none());
            prop_assert_eq!(head.tags(), p.tags());
            prop_assert_eq!(decode_post_seq(id, &encode_post(&head, seq)), Some((head, seq)));
        }

        #[test]
        fn job_roundtrips(post: u64, author: u64, rank: u64, exp: Option<u64>, pushed: bool, retract: bool) {
            let j = JobRecord { kind: if retract { JobKind::Retract } else { JobKind::Deliver }, entry: Entry { rank, post, author, expires_at_ms: exp }, pushed };
            prop_assert_eq!(decode_job(&job_key(&j), &encode_job(&j)), Some(j));
        }

        #[test]
        fn decoders_never_panic_on_garbage(b in proptest::collection::vec(any::<u8>(), 0..64), s in ".{0,80}") {
            let _ = decode_post(1, &b);
            let _ = decode_user(&b);
            let _ = decode_reader(&b);
            let _ = decode_job(&b[..b.len().min(9)], &b);
            let _ = decode_timeline(&b[..b.len().min(24)], &b);
            let _ = decode_outbox(&b[..b.len().min(16)], &b);
            let _ = decode_feed_cursor(&s);
            let _ = decode_list_cursor(&s);
        }

        #[test]
        fn user_and_reader_roundtrip(handle in "[a-z0-9_.]{1,32}", private: bool, t: u64, last: u64, rate in 0f32..1e6, m: bool, cut: Option<(u64, u64)>) {
            let u = UserRecord { handle, private, created_at_ms: t };
            prop_assert_eq!(decode_user(&encode_user(&u)), Some(u));
            let r = ReaderRecord { last_read_ms: last, reads_per_day: rate, materialized: m, cut };
            prop_assert_eq!(decode_reader(&encode_reader(&r)), Some(r));
        }
    }
}
