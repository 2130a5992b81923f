//! The cluster's follow-up families: follow-ups waiting to be sent through the log, and the like
//! counts of posts other nodes hold. Each owns its encoding; a value that does not decode is
//! corruption.

use crate::codec::{self, read_u64};
use crate::error::{Error, Result};
use crate::followup::{FollowUp, FollowUpKey, GraphHalf};
use crate::model::PostId;
use crate::store::{Batch, Cf, Store};

/// Follow-ups waiting for the log (`followups`: `event sequence ‖ index → follow-up`).
#[derive(Debug, Clone, Copy)]
pub struct FollowUps;
/// The `followups` table.
pub const FOLLOWUPS: FollowUps = FollowUps;

fn followup_key((seq, idx): FollowUpKey) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..8].copy_from_slice(&seq.to_be_bytes());
    k[8..].copy_from_slice(&idx.to_be_bytes());
    k
}

const AFFINITY: u8 = 1;
const LIKE_COUNT: u8 = 2;
const COMMENT_COUNT: u8 = 3;
const REPLIED: u8 = 4;
const GRAPH: u8 = 5;

/// A tag byte, then the kind's fields as big-endian u64s (an amount as its bits).
fn encode(f: &FollowUp) -> Vec<u8> {
    let (tag, fields): (u8, Vec<u64>) = match *f {
        FollowUp::Affinity {
            reader,
            author,
            amount,
            at_ms,
        } => (AFFINITY, vec![reader, author, amount.to_bits(), at_ms]),
        FollowUp::LikeCount {
            post,
            author,
            likes,
            as_of,
        } => (LIKE_COUNT, vec![post, author, likes, as_of]),
        FollowUp::CommentCount {
            post,
            author,
            comments,
            as_of,
        } => (COMMENT_COUNT, vec![post, author, comments, as_of]),
        FollowUp::Replied {
            recipient,
            actor,
            post,
            author,
            comment,
            at_ms,
        } => (REPLIED, vec![recipient, actor, post, author, comment, at_ms]),
        FollowUp::Graph {
            half,
            user,
            other,
            note,
            at_ms,
        } => (GRAPH, vec![half.code(), user, other, note, at_ms]),
    };
    let mut v = Vec::with_capacity(1 + 8 * fields.len());
    v.push(tag);
    for x in fields {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v
}

fn decode(k: &[u8], v: &[u8]) -> Option<(FollowUpKey, FollowUp)> {
    if k.len() != 10 || v.is_empty() || !(v.len() - 1).is_multiple_of(8) {
        return None;
    }
    let key = (read_u64(k, 0)?, u16::from_be_bytes([k[8], k[9]]));
    let x: Vec<u64> = (1..v.len()).step_by(8).map(|i| read_u64(v, i)).collect::<Option<_>>()?;
    let f = match (v[0], x.as_slice()) {
        (AFFINITY, &[reader, author, amount, at_ms]) => FollowUp::Affinity {
            reader,
            author,
            amount: f64::from_bits(amount),
            at_ms,
        },
        (LIKE_COUNT, &[post, author, likes, as_of]) => FollowUp::LikeCount {
            post,
            author,
            likes,
            as_of,
        },
        (COMMENT_COUNT, &[post, author, comments, as_of]) => FollowUp::CommentCount {
            post,
            author,
            comments,
            as_of,
        },
        (REPLIED, &[recipient, actor, post, author, comment, at_ms]) => FollowUp::Replied {
            recipient,
            actor,
            post,
            author,
            comment,
            at_ms,
        },
        (GRAPH, &[half, user, other, note, at_ms]) => FollowUp::Graph {
            half: GraphHalf::from_code(half)?,
            user,
            other,
            note,
            at_ms,
        },
        _ => return None,
    };
    Some((key, f))
}

impl FollowUps {
    /// The follow-up a stored row holds, if it decodes (a partition's snapshot sorts the
    /// queue by the partition that decided each change).
    pub fn decode_row(self, k: &[u8], v: &[u8]) -> Option<FollowUp> {
        decode(k, v).map(|(_, f)| f)
    }

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

/// A post's counts as announced by the node holding its author: each with the log sequence it
/// is current as of (0: never announced).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SharedCount {
    /// Likes.
    pub likes: u64,
    /// The sequence the like count is current as of.
    pub likes_as_of: u64,
    /// Comments.
    pub comments: u64,
    /// The sequence the comment count is current as of.
    pub comments_as_of: u64,
}

/// Like and comment counts announced by the nodes holding the posts' authors
/// (`shared_counts`: `post → likes ‖ as of ‖ comments ‖ as of`).
#[derive(Debug, Clone, Copy)]
pub struct SharedCounts;
/// The `shared_counts` table.
pub const SHARED_COUNTS: SharedCounts = SharedCounts;

impl SharedCounts {
    /// Each post's counts, in the order asked (one multi-get; none announced: `None`).
    pub fn get_many(self, store: &Store, posts: &[PostId]) -> Result<Vec<Option<SharedCount>>> {
        let keys: Vec<[u8; 8]> = posts.iter().map(|&p| codec::id_key(p)).collect();
        store
            .multi_get(Cf::SharedCounts, &keys)?
            .into_iter()
            .zip(posts)
            .map(|(v, p)| match v {
                None => Ok(None),
                Some(v) => {
                    let x: Option<Vec<u64>> = (0..v.len()).step_by(8).map(|i| read_u64(&v, i)).collect();
                    match x.as_deref() {
                        // Likes only (the first version of this table).
                        Some(&[likes, likes_as_of]) if v.len() == 16 => Ok(Some(SharedCount {
                            likes,
                            likes_as_of,
                            ..Default::default()
                        })),
                        Some(&[likes, likes_as_of, comments, comments_as_of]) if v.len() == 32 => {
                            Ok(Some(SharedCount {
                                likes,
                                likes_as_of,
                                comments,
                                comments_as_of,
                            }))
                        }
                        _ => Err(Error::corrupt(format!("shared counts of post {p}"))),
                    }
                }
            })
            .collect()
    }

    /// Stores `post`'s counts, within a batch.
    pub fn put(self, store: &Store, b: &mut Batch, post: PostId, c: &SharedCount) {
        let mut v = [0u8; 32];
        for (i, x) in [c.likes, c.likes_as_of, c.comments, c.comments_as_of]
            .into_iter()
            .enumerate()
        {
            v[8 * i..8 * i + 8].copy_from_slice(&x.to_be_bytes());
        }
        store.put(b, Cf::SharedCounts, &codec::id_key(post), &v);
    }

    /// Removes `post`'s counts, within a batch (a deleted post).
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
            FollowUp::CommentCount {
                post: 5,
                author: 3,
                comments: 2,
                as_of: 100,
            },
            FollowUp::Replied {
                recipient: 8,
                actor: 9,
                post: 5,
                author: 3,
                comment: 77,
                at_ms: 1234,
            },
        ] {
            let key = (77, 1);
            assert_eq!(decode(&followup_key(key), &encode(&f)), Some((key, f)));
        }
        assert_eq!(decode(&followup_key((1, 0)), &[9u8; 33]), None);
        assert_eq!(
            decode(&followup_key((1, 0)), &[1u8; 41]),
            None,
            "an affinity has 4 fields"
        );
        assert_eq!(decode(&followup_key((1, 0)), &[]), None);
    }
}
