//! The pair-keyed graph families: `a ‖ b` keys, so all of one user's edges share their id as
//! prefix and a list is one prefix scan in id order.

use crate::codec;
use crate::error::{Error, Result};
use crate::model::UserId;
use crate::store::{Batch, Cf, Store};

/// One user's set of other users: who they follow, who follows them, who asks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edges(Cf);

/// `follower ‖ followee`: whom a user follows (approved).
pub const FOLLOWING: Edges = Edges(Cf::Following);
/// `followee ‖ follower`: who follows a user — the fanout audience.
pub const FOLLOWERS: Edges = Edges(Cf::Followers);
/// `target ‖ requester → created_at`: requests awaiting a private user's approval.
pub const REQUESTS: Edges = Edges(Cf::Requests);

impl Edges {
    /// Adds the edge `user → other`, within a batch (a request records `at_ms`, its creation).
    pub fn put(self, store: &Store, b: &mut Batch, user: UserId, other: UserId, at_ms: Option<u64>) {
        let v = at_ms.map(u64::to_be_bytes);
        store.put(
            b,
            self.0,
            &codec::pair_key(user, other),
            v.as_ref().map_or(&[][..], |v| &v[..]),
        );
    }

    /// Removes the edge `user → other` (if any), within a batch.
    pub fn delete(self, store: &Store, b: &mut Batch, user: UserId, other: UserId) {
        store.delete(b, self.0, &codec::pair_key(user, other));
    }

    /// Whether the edge `user → other` exists.
    pub fn exists(self, store: &Store, user: UserId, other: UserId) -> Result<bool> {
        store.exists(self.0, &codec::pair_key(user, other))
    }

    /// Visits `user`'s other ends in ascending id order, from id `from` (inclusive; default the
    /// first), until `visit` returns `false`.
    pub fn scan(
        self,
        store: &Store,
        user: UserId,
        from: Option<UserId>,
        mut visit: impl FnMut(UserId) -> bool,
    ) -> Result<()> {
        let from = from.map(|o| codec::pair_key(user, o));
        let mut bad = false;
        store.scan_prefix(
            self.0,
            user,
            from.as_ref().map(|k| &k[..]),
            |k, _| match codec::pair_second(k) {
                Some(o) => visit(o),
                None => {
                    bad = true;
                    false
                }
            },
        )?;
        if bad {
            return Err(Error::corrupt(format!("{} edge of user {user}", self.0.name())));
        }
        Ok(())
    }
}

/// Relation flag: the user blocked the other (applied by every node).
pub const BLOCK: u8 = 1;
/// Relation flag: the user muted the other (kept by the user's partition only).
pub const MUTE: u8 = 2;

/// Blocks and mutes a user set (`relations`: `user ‖ other → flags`).
#[derive(Debug, Clone, Copy)]
pub struct Relations;
/// The `relations` table.
pub const RELATIONS: Relations = Relations;

impl Relations {
    /// The flags `user` set on `other` (0: none).
    pub fn get(self, store: &Store, user: UserId, other: UserId) -> Result<u8> {
        Ok(store
            .get(Cf::Relations, &codec::pair_key(user, other))?
            .and_then(|v| v.first().copied())
            .unwrap_or(0))
    }

    /// Sets the flags `user` holds on `other` (0 removes the record), within a batch.
    pub fn set(self, store: &Store, b: &mut Batch, user: UserId, other: UserId, flags: u8) {
        let k = codec::pair_key(user, other);
        match flags {
            0 => store.delete(b, Cf::Relations, &k),
            f => store.put(b, Cf::Relations, &k, &[f]),
        }
    }

    /// Visits the users `user` set flags on, with the flags, until `visit` returns `false`.
    pub fn scan(self, store: &Store, user: UserId, mut visit: impl FnMut(UserId, u8) -> bool) -> Result<()> {
        let mut bad = false;
        store.scan_prefix(Cf::Relations, user, None, |k, v| {
            match (codec::pair_second(k), v.first()) {
                (Some(o), Some(&f)) => visit(o, f),
                _ => {
                    bad = true;
                    false
                }
            }
        })?;
        if bad {
            return Err(Error::corrupt(format!("relation of user {user}")));
        }
        Ok(())
    }
}
