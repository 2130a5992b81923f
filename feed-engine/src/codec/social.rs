//! Encodings of the engagement families: likes, comments and their thread index, hashtag
//! postings and names, notifications. Keys are big-endian and order-preserving like every other
//! key; records start with a version byte; decoders are total.

use crate::model::{PostId, UserId};
use crate::social::{Comment, CommentId, Notification, NotificationKind};

use super::{RECORD_V1, Reader, pair_key, read_u64};

/// The 8-byte prefix every posting of `tag` is stored under: a stable 64-bit FNV-1a hash of the
/// tag (the tag itself is in the value, so a collision is filtered out on read).
pub fn tag_prefix(tag: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(tag.as_bytes());
    h.finish()
}

/// Tag posting key: `hash(tag) ‖ !post`, newest post first.
pub fn tag_key(tag: &str, post: PostId) -> [u8; 16] {
    pair_key(tag_prefix(tag), !post)
}

/// Tag posting value: `author ‖ tag`.
pub fn tag_value(author: UserId, tag: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + tag.len());
    v.extend_from_slice(&author.to_be_bytes());
    v.extend_from_slice(tag.as_bytes());
    v
}

/// `(post, author, tag)` of a tag posting.
pub fn decode_tag<'a>(k: &[u8], v: &'a [u8]) -> Option<(PostId, UserId, &'a str)> {
    if k.len() != 16 || v.len() < 8 {
        return None;
    }
    Some((!read_u64(k, 8)?, read_u64(v, 0)?, std::str::from_utf8(&v[8..]).ok()?))
}

/// Thread key: `post ‖ parent ‖ comment` (parent 0: top level), so one thread's comments are
/// contiguous and oldest first.
pub fn thread_key(post: PostId, parent: CommentId, comment: CommentId) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&post.to_be_bytes());
    k[8..16].copy_from_slice(&parent.to_be_bytes());
    k[16..].copy_from_slice(&comment.to_be_bytes());
    k
}

/// The comment id of a thread key.
pub fn decode_thread(k: &[u8]) -> Option<CommentId> {
    if k.len() != 24 { None } else { read_u64(k, 16) }
}

/// Comment record: `v1 ‖ author ‖ parent ‖ created ‖ len ‖ text`.
pub fn encode_comment(c: &Comment) -> Vec<u8> {
    let mut v = Vec::with_capacity(29 + c.text.len());
    v.push(RECORD_V1);
    v.extend_from_slice(&c.author.to_be_bytes());
    v.extend_from_slice(&c.parent.unwrap_or(0).to_be_bytes());
    v.extend_from_slice(&c.created_at_ms.to_be_bytes());
    v.extend_from_slice(&(c.text.len() as u32).to_be_bytes());
    v.extend_from_slice(c.text.as_bytes());
    v
}

/// Decodes the comment `id` on `post`.
pub fn decode_comment(post: PostId, id: CommentId, b: &[u8]) -> Option<Comment> {
    let mut r = Reader { b };
    if r.u8()? != RECORD_V1 {
        return None;
    }
    let author = r.u64()?;
    let parent = r.u64()?;
    let created_at_ms = r.u64()?;
    let n = r.u32()? as usize;
    let text = r.str(n)?;
    r.done().then_some(Comment {
        id,
        post,
        parent: (parent != 0).then_some(parent),
        author,
        created_at_ms,
        text,
    })
}

/// Notification key: `user ‖ !id`, newest first.
pub fn notification_key(user: UserId, id: u64) -> [u8; 16] {
    pair_key(user, !id)
}

/// Notification record: `v1 ‖ kind ‖ actor ‖ post ‖ comment ‖ at` (0: none).
pub fn encode_notification(n: &Notification) -> [u8; 34] {
    let mut v = [0u8; 34];
    v[0] = RECORD_V1;
    v[1] = n.kind.to_byte();
    v[2..10].copy_from_slice(&n.actor.to_be_bytes());
    v[10..18].copy_from_slice(&n.post.unwrap_or(0).to_be_bytes());
    v[18..26].copy_from_slice(&n.comment.unwrap_or(0).to_be_bytes());
    v[26..34].copy_from_slice(&n.at_ms.to_be_bytes());
    v
}

/// Decodes a notification from its key and record.
pub fn decode_notification(k: &[u8], v: &[u8]) -> Option<Notification> {
    if k.len() != 16 || v.len() != 34 || v[0] != RECORD_V1 {
        return None;
    }
    let nz = |x: u64| (x != 0).then_some(x);
    Some(Notification {
        id: !read_u64(k, 8)?,
        kind: NotificationKind::from_byte(v[1])?,
        actor: read_u64(v, 2)?,
        post: nz(read_u64(v, 10)?),
        comment: nz(read_u64(v, 18)?),
        at_ms: read_u64(v, 26)?,
    })
}

/// A decayed value's encoding (`value ‖ at_ms`, 16 bytes): the `affinity` family's values and
/// its merge operands.
pub fn encode_decayed(d: &crate::social::Decayed) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&d.value.to_bits().to_be_bytes());
    v[8..].copy_from_slice(&d.at_ms.to_be_bytes());
    v
}

/// Decodes [`encode_decayed`]; `None` for anything else (or a value that is not finite).
pub fn decode_decayed(v: &[u8]) -> Option<crate::social::Decayed> {
    if v.len() != 16 {
        return None;
    }
    let value = f64::from_bits(read_u64(v, 0)?);
    value.is_finite().then_some(crate::social::Decayed {
        value,
        at_ms: read_u64(v, 8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_roundtrip_and_garbage_is_refused() {
        let c = Comment {
            id: 9,
            post: 7,
            parent: Some(3),
            author: 2,
            created_at_ms: 11,
            text: "nice 🙂".into(),
        };
        assert_eq!(decode_comment(7, 9, &encode_comment(&c)), Some(c.clone()));
        let n = Notification {
            id: 42,
            kind: NotificationKind::Liked,
            actor: 5,
            post: Some(7),
            comment: None,
            at_ms: 99,
        };
        let k = notification_key(1, 42);
        assert_eq!(decode_notification(&k, &encode_notification(&n)), Some(n));
        let v = tag_value(3, "rust");
        let (p, a, t) = decode_tag(&tag_key("rust", 8), &v).unwrap();
        assert_eq!((p, a, t), (8, 3, "rust"));
        assert_eq!(decode_thread(&thread_key(1, 0, 5)), Some(5));
        for garbage in [&b""[..], &[1, 2, 3], &[0xff; 40]] {
            assert!(decode_comment(1, 1, garbage).is_none());
            assert!(decode_notification(&k, garbage).is_none());
        }
        assert!(tag_key("a", 2) < tag_key("a", 1), "newer posts first");
    }

    #[test]
    fn decayed_values_round_trip_and_reject_what_is_not_one() {
        let d = crate::social::Decayed {
            value: -0.25,
            at_ms: 1_700_000_000_000,
        };
        assert_eq!(decode_decayed(&encode_decayed(&d)), Some(d));
        assert_eq!(decode_decayed(&[0u8; 15]), None);
        let nan = crate::social::Decayed {
            value: f64::NAN,
            at_ms: 1,
        };
        assert_eq!(decode_decayed(&encode_decayed(&nan)), None);
    }
}
