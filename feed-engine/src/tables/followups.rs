//! The cluster's follow-up families: follow-ups waiting to be sent through the log, and the like
//! counts of posts other nodes hold. Each owns its encoding; a value that does not decode is
//! corruption.

use crate::codec::{self, read_u64};
use crate::error::{Error, Result};
use crate::followup::{FollowUp, FollowUpKey};
use crate::model::PostId;
use crate::store::{Batch, Cf, Store};

/// Follow-ups waiting for the log (`followups`: `event sequence ‖ index → follow-up`).
#[derive(Debug, Clone, Copy)]
pub struct FollowUps;
/// The `followups` table.
pub const FOLLOWUPS: FollowUps = FollowUps;

fn followup_key((seq, idx): FollowUpKey) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&seq.to_be_bytes());
    k[8] = idx;
    k
}

const AFFINITY: u8 = 1;
const LIKE_COUNT: u8 = 2;

fn encode(f: &FollowUp) -> [u8; 33] {
    let mut v = [0u8; 33];
    let (tag, a, b, c, d) = match *f {
        FollowUp::Affinity {
            reader,
            author,
            amount,
            at_ms,
        } => (AFFINITY, reader, author, amount.to_bits(), at_ms),
        FollowUp::LikeCount {
            post,
            author,
            likes,
            as_of,
        } => (LIKE_COUNT, post, author, likes, as_of),
    };
    v[0] = tag;
    for (i, x) in [a, b, c, d].into_iter().enumerate() {
        v[1 + 8 * i..9 + 8 * i].copy_from_slice(&x.to_be_bytes());
    }
    v
}

fn decode(k: &[u8], v: &[u8]) -> Option<(FollowUpKey, FollowUp)> {
    if k.len() != 9 || v.len() != 33 {
        return None;
    }
    let key = (read_u64(k, 0)?, k[8]);
    let (a, b, c, d) = (read_u64(v, 1)?, read_u64(v, 9)?, read_u64(v, 17)?, read_u64(v, 25)?);
    let f = match v[0] {
        AFFINITY => FollowUp::Affinity {
            reader: a,
            author: b,
            amount: f64::from_bits(c),
            at_ms: d,
        },
        LIKE_COUNT => FollowUp::LikeCount {
            post: a,
            author: b,
            likes: c,
            as_of: d,
        },
        _ => return None,
    };
    Some((key, f))
}

impl FollowUps {
    /// Records `f` under `key`, within a batch (the batch of the change that makes it).
    pub fn put(self, store: &Store, b: &mut Batch, key: FollowUpKey, f: &FollowUp) {
        store.put(b, Cf::FollowUps, &followup_key(key), &encode(f));
    }

    /// Clears the follow-up under `key`, within a batch.
    pub fn delete(self, store: &Store, b: &mut Batch, key: FollowUpKey) {
        store.delete(b, Cf::FollowUps, &followup_key(key));
    }

    /// Up to `limit` follow-ups from `from` (inclusive) on, in key order.
    pub fn scan(self, store: &Store, from: FollowUpKey, limit: usize) -> Result<Vec<(FollowUpKey, FollowUp)>> {
        let (mut out, mut bad) = (Vec::new(), false);
        store.scan_from(Cf::FollowUps, &followup_key(from), |k, v| match decode(k, v) {
            Some(x) => {
                out.push(x);
                out.len() < limit
            }
            None => {
                bad = true;
                false
            }
        })?;
        if bad {
            return Err(Error::corrupt("a follow-up record"));
        }
        Ok(out)
    }
}

/// Like counts announced by the nodes holding the posts' authors (`shared_counts`:
/// `post → likes ‖ as of`).
#[derive(Debug, Clone, Copy)]
pub struct SharedCounts;
/// The `shared_counts` table.
pub const SHARED_COUNTS: SharedCounts = SharedCounts;

impl SharedCounts {
    /// Each post's `(likes, as of)`, in the order asked (one multi-get).
    pub fn get_many(self, store: &Store, posts: &[PostId]) -> Result<Vec<Option<(u64, u64)>>> {
        let keys: Vec<[u8; 8]> = posts.iter().map(|&p| codec::id_key(p)).collect();
        store
            .multi_get(Cf::SharedCounts, &keys)?
            .into_iter()
            .zip(posts)
            .map(|(v, p)| match v {
                None => Ok(None),
                Some(v) => match (read_u64(&v, 0), read_u64(&v, 8)) {
                    (Some(l), Some(a)) if v.len() == 16 => Ok(Some((l, a))),
                    _ => Err(Error::corrupt(format!("shared like count of post {p}"))),
                },
            })
            .collect()
    }

    /// Stores `post`'s count `likes` as of `as_of`, within a batch.
    pub fn put(self, store: &Store, b: &mut Batch, post: PostId, likes: u64, as_of: u64) {
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&likes.to_be_bytes());
        v[8..].copy_from_slice(&as_of.to_be_bytes());
        store.put(b, Cf::SharedCounts, &codec::id_key(post), &v);
    }

    /// Removes `post`'s count, within a batch (a deleted post).
    pub fn delete(self, store: &Store, b: &mut Batch, post: PostId) {
        store.delete(b, Cf::SharedCounts, &codec::id_key(post));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_ups_round_trip() {
        for f in [
            FollowUp::Affinity {
                reader: 7,
                author: 9,
                amount: -1.0,
                at_ms: 123,
            },
            FollowUp::LikeCount {
                post: 1 << 40,
                author: 3,
                likes: 12,
                as_of: 99,
            },
        ] {
            let key = (77, 1);
            assert_eq!(decode(&followup_key(key), &encode(&f)), Some((key, f)));
        }
        assert_eq!(decode(&followup_key((1, 0)), &[9u8; 33]), None);
    }
}
