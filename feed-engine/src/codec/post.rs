//! The post record: versioned, with flags for what is optional (expiry, location).

use crate::model::{ContentType, Post, PostId};

use super::{RECORD_V1, Reader};

const POST_PUSHED: u8 = 1;
const POST_EXPIRES: u8 = 2;
const POST_LOCATED: u8 = 4;

/// Encodes a post record (key: the post id).
pub fn encode_post(p: &Post) -> Vec<u8> {
    let media_len: usize = p.media.iter().map(|m| 2 + m.len()).sum();
    let mut v = Vec::with_capacity(40 + p.text.len() + media_len);
    v.push(RECORD_V1);
    v.extend_from_slice(&p.author.to_be_bytes());
    v.extend_from_slice(&p.created_at_ms.to_be_bytes());
    v.push(p.content_type.to_byte());
    let flags = if p.pushed { POST_PUSHED } else { 0 }
        | if p.expires_at_ms.is_some() { POST_EXPIRES } else { 0 }
        | if p.location.is_some() { POST_LOCATED } else { 0 };
    v.push(flags);
    v.extend_from_slice(&p.rank.to_be_bytes());
    if let Some(t) = p.expires_at_ms {
        v.extend_from_slice(&t.to_be_bytes());
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
    let mut r = Reader { b };
    if r.u8()? != RECORD_V1 {
        return None;
    }
    let author = r.u64()?;
    let created_at_ms = r.u64()?;
    let content_type = ContentType::from_byte(r.u8()?)?;
    let flags = r.u8()?;
    if flags & !(POST_PUSHED | POST_EXPIRES | POST_LOCATED) != 0 {
        return None;
    }
    let rank = r.u64()?;
    let expires_at_ms = if flags & POST_EXPIRES != 0 {
        Some(r.u64()?)
    } else {
        None
    };
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
    r.done().then_some(Post {
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
    })
}
