//! The engine's metadata (`meta`): named values — ranking parameters, per-user token and
//! notification marks, follow-up positions between partitions, the post-body trim markers and
//! cursor — each under a [`MetaKey`].

use crate::codec;
use crate::error::{Error, Result};
use crate::model::UserId;
use crate::store::{Batch, Cf, Store};

/// A named value in the engine's `meta` family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// The recency halving period the stored ranks were computed with (u64 ms).
    RecencyHalvingMs,
    /// Set once every outbox entry is also in `outbox_ranked`.
    OutboxRanked,
    /// The issue time (Unix µs) below which a subject's tokens are refused.
    TokensValidFrom(UserId),
    /// The id of the newest notification a user has marked seen.
    NotificationsSeen(UserId),
    /// The log sequence of the last affinity follow-up from partition `origin` that partition
    /// `target` applied (cluster mode).
    FollowUpsFrom {
        /// The receiving partition.
        target: u32,
        /// The partition the follow-ups come from.
        origin: u32,
    },
    /// Set while this node keeps heads without bodies of partition `p`'s posts that it has
    /// not filled back (cluster mode: `Engine::trim_bodies`).
    BodiesTrimmed(u32),
    /// Where the next round of `Engine::trim_bodies` starts, and the partitions not held here
    /// it is valid for (cluster mode).
    BodiesTrimCursor,
}

impl MetaKey {
    pub(crate) fn bytes(self) -> Vec<u8> {
        match self {
            MetaKey::RecencyHalvingMs => b"recency-halving-ms".to_vec(),
            MetaKey::OutboxRanked => b"outbox-ranked-v1".to_vec(),
            MetaKey::TokensValidFrom(subject) => {
                let mut k = b"tokens-valid-from/".to_vec();
                k.extend_from_slice(&subject.to_be_bytes());
                k
            }
            MetaKey::NotificationsSeen(user) => {
                let mut k = b"notifications-seen/".to_vec();
                k.extend_from_slice(&user.to_be_bytes());
                k
            }
            MetaKey::FollowUpsFrom { target, origin } => {
                let mut k = b"followups-from/".to_vec();
                k.extend_from_slice(&target.to_be_bytes());
                k.extend_from_slice(&origin.to_be_bytes());
                k
            }
            MetaKey::BodiesTrimmed(p) => {
                let mut k = b"bodies-trimmed/".to_vec();
                k.extend_from_slice(&p.to_be_bytes());
                k
            }
            MetaKey::BodiesTrimCursor => b"bodies-trim-cursor".to_vec(),
        }
    }
}

/// Engine metadata (`meta`: named values).
#[derive(Debug, Clone, Copy)]
pub struct Meta;
/// The `meta` table.
pub const META: Meta = Meta;

impl Meta {
    /// The u64 stored under `key`, if any.
    pub fn get_u64(self, store: &Store, key: MetaKey) -> Result<Option<u64>> {
        match store.get(Cf::Meta, &key.bytes())? {
            Some(v) if v.len() == 8 => Ok(codec::read_u64(&v, 0)),
            Some(_) => Err(Error::corrupt(format!("meta value {key:?}"))),
            None => Ok(None),
        }
    }

    /// Stores `value` under `key`, within a batch.
    pub fn put_u64(self, store: &Store, b: &mut Batch, key: MetaKey, value: u64) {
        store.put(b, Cf::Meta, &key.bytes(), &value.to_be_bytes());
    }

    /// Whether the flag `key` is set.
    pub fn is_set(self, store: &Store, key: MetaKey) -> Result<bool> {
        store.exists(Cf::Meta, &key.bytes())
    }

    /// Sets the flag `key`, within a batch.
    pub fn set(self, store: &Store, b: &mut Batch, key: MetaKey) {
        store.put(b, Cf::Meta, &key.bytes(), &[1]);
    }

    /// The trim rounds' cursor: where the next one starts and the partitions not held here
    /// when it was written (`MetaKey::BodiesTrimCursor`).
    pub fn trim_cursor(self, store: &Store) -> Result<Option<(u64, Vec<u32>)>> {
        let Some(v) = store.get(Cf::Meta, &MetaKey::BodiesTrimCursor.bytes())? else {
            return Ok(None);
        };
        let from = codec::read_u64(&v, 0).filter(|_| v.len() % 4 == 0);
        let parts = v.get(8..).map(|rest| {
            rest.chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect::<Vec<u32>>()
        });
        match (from, parts) {
            (Some(from), Some(parts)) => Ok(Some((from, parts))),
            _ => Err(Error::corrupt("the post-body trim cursor")),
        }
    }

    /// Stores the trim rounds' cursor, within a batch.
    pub fn put_trim_cursor(self, store: &Store, b: &mut Batch, from: u64, elsewhere: &[u32]) {
        let mut v = Vec::with_capacity(8 + 4 * elsewhere.len());
        v.extend_from_slice(&from.to_be_bytes());
        for p in elsewhere {
            v.extend_from_slice(&p.to_be_bytes());
        }
        store.put(b, Cf::Meta, &MetaKey::BodiesTrimCursor.bytes(), &v);
    }
}
