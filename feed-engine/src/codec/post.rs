//! The post record: versioned, with flags for what is optional (expiry, location, the log
//! sequence a cluster node applied it at) and for a *head*: a record whose body (text, media,
//! location) this node no longer keeps (cluster mode: [`crate::Engine::trim_bodies`]).

use crate::model::{ContentType, Post, PostId};

use super::{RECORD_V1, Reader};

const POST_PUSHED: u8 = 1;
const POST_EXPIRES: u8 = 2;
const POST_LOCATED: u8 = 4;
const POST_SEQ: u8 = 8;
const POST_TRIMMED: u8 = 16;
const POST_FLAGS: u8 = POST_PUSHED | POST_EXPIRES | POST_LOCATED | POST_SEQ | POST_TRIMMED;

/// Encodes a post record (key: the post id), with the log sequence it was applied at, if any.
/// A trimmed post ([`Post::trimmed`]) is written as its head: no text, media or location.
pub fn encode_post(p: &Post, seq: Option<u64>) -> Vec<u8> {
    let media_len: usize = p.media.iter().map(|m| 2 + m.len()).sum();
    let mut v = Vec::with_capacity(40 + p.text.len() + media_len);
    v.push(RECORD_V1);
    v.extend_from_slice(&p.author.to_be_bytes());
    v.extend_from_slice(&p.created_at_ms.to_be_bytes());
    v.push(p.content_type.to_byte());
    let flags = if p.pushed { POST_PUSHED } else { 0 }
        | if p.expires_at_ms.is_some() { POST_EXPIRES } else { 0 }
        | if p.location.is_some() && !p.trimmed {
            POST_LOCATED
        } else {
            0
        }
        | if seq.is_some() { POST_SEQ } else { 0 }
        | if p.trimmed { POST_TRIMMED } else { 0 };
    v.push(flags);
    v.extend_from_slice(&p.rank.to_be_bytes());
    if let Some(t) = p.expires_at_ms {
        v.extend_from_slice(&t.to_be_bytes());
    }
    if let Some(s) = seq {
        v.extend_from_slice(&s.to_be_bytes());
    }
    if p.trimmed {
        v.push(p.head_tags.len().min(u8::MAX as usize) as u8);
        for t in p.head_tags.iter().take(u8::MAX as usize) {
            v.extend_from_slice(&(t.len() as u16).to_be_bytes());
            v.extend_from_slice(t.as_bytes());
        }
        return v;
    }
    v.extend_from_slice(&(p.text.len() as u32).to_be_bytes());
    v.extend_from_slice(p.text.as_bytes());
    v.push(p.media.len() as u8);
    for m in &p.media {
        v.extend_from_slice(&(m.len() as u16).to_be_bytes());
        v.extend_from_slice(m.as_bytes());
    }
    if let Some(l) = &p.location {
        v.extend_from_slice(&(l.len() as u16).to_be_bytes());
        v.extend_from_slice(l.as_bytes());
    }
    v
}

/// Decodes a post record stored under `id`.
pub fn decode_post(id: PostId, b: &[u8]) -> Option<Post> {
    decode_post_seq(id, b).map(|(p, _)| p)
}

/// Decodes a post record stored under `id`, with the log sequence it was applied at, if any.
pub fn decode_post_seq(id: PostId, b: &[u8]) -> Option<(Post, Option<u64>)> {
    let mut r = Reader { b };
    if r.u8()? != RECORD_V1 {
        return None;
    }
    let author = r.u64()?;
    let created_at_ms = r.u64()?;
    let content_type = ContentType::from_byte(r.u8()?)?;
    let flags = r.u8()?;
    if flags & !POST_FLAGS != 0 || (flags & POST_TRIMMED != 0 && flags & POST_LOCATED != 0) {
        return None;
    }
    let rank = r.u64()?;
    let expires_at_ms = if flags & POST_EXPIRES != 0 {
        Some(r.u64()?)
    } else {
        None
    };
    let seq = if flags & POST_SEQ != 0 { Some(r.u64()?) } else { None };
    let trimmed = flags & POST_TRIMMED != 0;
    let head = |text: String, media: Vec<String>, location: Option<String>, head_tags: Vec<String>| Post {
        id,
        author,
        created_at_ms,
        content_type,
        text,
        media,
        expires_at_ms,
        rank,
        pushed: flags & POST_PUSHED != 0,
        location,
        trimmed,
        head_tags,
    };
    if trimmed {
        let n = r.u8()? as usize;
        let mut tags = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.u16()? as usize;
            tags.push(r.str(len)?);
        }
        return r.done().then(|| (head(String::new(), Vec::new(), None, tags), seq));
    }
    let n = r.u32()? as usize;
    let text = r.str(n)?;
    let m = r.u8()? as usize;
    let mut media = Vec::with_capacity(m);
    for _ in 0..m {
        let n = r.u16()? as usize;
        media.push(r.str(n)?);
    }
    let location = if flags & POST_LOCATED != 0 {
        let n = r.u16()? as usize;
        Some(r.str(n)?)
    } else {
        None
    };
    r.done().then(|| (head(text, media, location, Vec::new()), seq))
}
