//! Users: creation with unique handles, profiles with their counters, the privacy flag.

use crate::codec::{Counter, UserRecord};
use crate::error::{Error, Result};
use crate::model::{User, UserId};
use crate::tables::{COUNTERS, HANDLES, USERS};

use super::{Engine, ReaderState, Writer, fresh_state};

/// Longest handle, in bytes.
pub const MAX_HANDLE_BYTES: usize = 32;

pub(crate) fn validate_handle(h: &str) -> Result<()> {
    if h.is_empty() || h.len() > MAX_HANDLE_BYTES {
        return Err(Error::invalid(format!(
            "handle must be 1 to {MAX_HANDLE_BYTES} characters, got {}",
            h.len()
        )));
    }
    if !h
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
    {
        return Err(Error::invalid(format!(
            "handle {h:?} may only contain a-z, 0-9, '_' and '.'"
        )));
    }
    Ok(())
}

impl super::Inner {
    /// Adds a new user's profile, handle and reader record to a batch; returns the reader state
    /// to install once the batch is written. In a cluster, only the node keeping the user's
    /// partition writes a reader record (`None` elsewhere): the others never read their feed,
    /// and one taking the partition over forgets the readers it has there anyway.
    pub(crate) fn put_new_user(
        &self,
        b: &mut crate::store::Batch,
        id: UserId,
        rec: &UserRecord,
    ) -> Option<ReaderState> {
        USERS.put(&self.store, b, id, rec);
        HANDLES.put(&self.store, b, &rec.handle, id);
        if !self.owns(id) {
            return None;
        }
        // A new user's (empty) timeline is complete: nothing was skipped.
        let st = ReaderState {
            materialized: true,
            trimmed_at: Some((0, 0)),
            ..fresh_state(0)
        };
        self.put_reader(b, id, &st);
        Some(st)
    }
}

/// The one answer for a handle nobody has (or whose owner blocked the viewer).
pub(crate) fn handle_not_found(handle: &str) -> Error {
    Error::not_found(format!("no user has the handle {handle:?}"))
}

impl Engine {
    /// A user's profile and counters.
    pub fn get_user(&self, id: UserId) -> Result<User> {
        let inner = self.inner();
        let Some(rec) = USERS.get(&inner.store, id)? else {
            return Err(Error::not_found(format!("user {id} does not exist")));
        };
        let counts = [Counter::Followers, Counter::Following, Counter::Posts].map(|c| (id, c));
        let vals = COUNTERS.get_many(&inner.store, &counts)?;
        Ok(User {
            id,
            handle: rec.handle,
            private: rec.private,
            created_at_ms: rec.created_at_ms,
            followers: vals[0],
            following: vals[1],
            posts: vals[2],
        })
    }

    /// Looks a user up by handle.
    pub fn user_by_handle(&self, handle: &str) -> Result<User> {
        validate_handle(handle)?;
        match HANDLES.get(&self.inner().store, handle)? {
            Some(id) => self.get_user(id),
            None => Err(handle_not_found(handle)),
        }
    }

    pub(crate) fn is_private(&self, id: UserId) -> Result<bool> {
        match USERS.get(&self.inner().store, id)? {
            Some(rec) => Ok(rec.private),
            None => Err(super::visibility::user_not_found(id)),
        }
    }
}

impl Writer<'_> {
    /// Creates a user with a unique handle. Private accounts approve their followers.
    pub fn create_user(&self, handle: &str, private: bool) -> Result<User> {
        validate_handle(handle)?;
        let inner = self.inner();
        let _g = inner.handle_lock.lock();
        if HANDLES.exists(&inner.store, handle)? {
            return Err(Error::AlreadyExists(format!("handle {handle:?} is taken")));
        }
        let id = match self.ctx.minted() {
            Some(id) => {
                if USERS.exists(&inner.store, id)? {
                    return Err(Error::AlreadyExists(format!("user id {id} is taken")));
                }
                inner.next_user.fetch_max(id + 1, std::sync::atomic::Ordering::SeqCst);
                id
            }
            None => inner.next_user.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
        };
        let now = self.ctx.now_ms();
        let rec = UserRecord {
            handle: handle.to_owned(),
            private,
            created_at_ms: now,
        };
        let mut b = inner.store.batch();
        let st = inner.put_new_user(&mut b, id, &rec);
        inner.store.write(b, self.ctx.durability())?;
        if let Some(st) = st {
            inner.readers.set(id, st);
        }
        Ok(User {
            id,
            handle: rec.handle,
            private,
            created_at_ms: now,
            followers: 0,
            following: 0,
            posts: 0,
        })
    }

    /// Makes an account private or public. Existing followers stay approved; pending requests of
    /// an account made public stay pending until approved or denied.
    pub fn set_private(&self, id: UserId, private: bool) -> Result<User> {
        let inner = self.inner();
        let _g = inner.lock_users(id, id);
        let Some(mut rec) = USERS.get(&inner.store, id)? else {
            return Err(Error::not_found(format!("user {id} does not exist")));
        };
        if rec.private != private {
            rec.private = private;
            let mut b = inner.store.batch();
            USERS.put(&inner.store, &mut b, id, &rec);
            inner.store.write(b, self.ctx.durability())?;
            if private {
                inner.cache.changed(super::Change::MadePrivate(id));
            }
        }
        drop(_g);
        self.get_user(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_checked() {
        assert!(validate_handle("alice_01.x").is_ok());
        for bad in ["", "Alice", "a b", "é", &"a".repeat(33)] {
            assert!(
                matches!(validate_handle(bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }
}
