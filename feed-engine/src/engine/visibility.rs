//! Who may see what. One rule for every call, so that a post or user the viewer may not see is
//! answered exactly as one that does not exist (same error, same message shape): nothing a
//! call returns tells a viewer that a private post exists or that someone blocked them.
//!
//! - A user who blocked the viewer does not exist for the viewer (profile, handle, lists, posts,
//!   follow).
//! - A post is visible to its author, to anyone when its author is public, to approved
//!   followers when private — never across a block, never once expired or deleted.
//! - The follower and following lists of a private account are shown to the account and its
//!   approved followers only.

use crate::error::{Error, Result};
use crate::model::{Post, PostId, User, UserId, Viewer};

use super::Engine;

/// The one answer for a post that does not exist or may not be seen.
pub(crate) fn post_not_found(id: PostId, viewer: UserId) -> Error {
    Error::not_found(format!("post {id} does not exist or is not visible to user {viewer}"))
}

/// The one answer for a user who does not exist or has blocked the viewer.
pub(crate) fn user_not_found(id: UserId) -> Error {
    Error::not_found(format!("user {id} does not exist"))
}

impl Engine {
    /// Whether `author` has blocked `viewer`.
    pub(crate) fn blocked_by(&self, viewer: UserId, author: UserId) -> Result<bool> {
        self.inner().blocks(author, viewer)
    }

    /// Whether `viewer` may see `author`'s posts: public author, the author themself, or an
    /// approved follower — and no block between them.
    pub(crate) fn may_view(&self, viewer: UserId, author: UserId) -> Result<bool> {
        if viewer == author {
            return Ok(true);
        }
        if self.blocked_by(viewer, author)? {
            return Ok(false);
        }
        Ok(!self.is_private(author)? || self.is_following(viewer, author)?)
    }

    /// `Ok` if `id` exists for `viewer`; otherwise the same `NotFound` a missing user gets.
    pub(crate) fn check_user_visible(&self, viewer: Viewer, id: UserId) -> Result<()> {
        self.inner().require_user(id)?;
        match viewer {
            Viewer::User(v) if v != id && self.blocked_by(v, id)? => Err(user_not_found(id)),
            _ => Ok(()),
        }
    }

    /// A stored post that `viewer` may see, else the one `NotFound` for posts.
    pub(crate) fn visible_post(&self, viewer: UserId, id: PostId) -> Result<Post> {
        self.visible_post_at(viewer, id, self.inner().now_ms())
    }

    /// [`Engine::visible_post`] as of `now_ms` (a write's time: expiry is judged at it).
    pub(crate) fn visible_post_at(&self, viewer: UserId, id: PostId, now_ms: u64) -> Result<Post> {
        let inner = self.inner();
        inner.require_user(viewer)?;
        let p = self.load_post(id)?.ok_or_else(|| post_not_found(id, viewer))?;
        if p.expired(now_ms) || !self.may_view(viewer, p.author)? {
            return Err(post_not_found(id, viewer));
        }
        Ok(p)
    }

    /// The posts of `ids` that `viewer` may see, in the order asked: deleted, expired and not
    /// permitted ones are left out alike. In a cluster a post may come as its head only
    /// ([`crate::Post::trimmed`]): its author's node has the body.
    pub fn visible_posts(&self, viewer: UserId, ids: &[PostId]) -> Result<Vec<std::sync::Arc<Post>>> {
        let inner = self.inner();
        inner.require_user(viewer)?;
        let now = inner.now_ms();
        let mut allowed: std::collections::HashMap<UserId, bool> = std::collections::HashMap::new();
        let mut out = Vec::with_capacity(ids.len());
        for p in self.feed_posts(ids)?.into_iter().flatten() {
            if p.expired(now) {
                continue;
            }
            let ok = match allowed.get(&p.author) {
                Some(&ok) => ok,
                None => {
                    let ok = self.may_view(viewer, p.author)?;
                    allowed.insert(p.author, ok);
                    ok
                }
            };
            if ok {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// `Ok` if `viewer` may page through `user`'s follower and following lists.
    pub(crate) fn check_lists_visible(&self, viewer: Viewer, user: UserId) -> Result<()> {
        self.check_user_visible(viewer, user)?;
        let Viewer::User(v) = viewer else {
            return Ok(());
        };
        if v == user || !self.is_private(user)? || self.is_following(v, user)? {
            return Ok(());
        }
        Err(Error::PermissionDenied(format!(
            "user {user}'s followers and follows are visible to approved followers only"
        )))
    }

    /// A user's profile and counters as `viewer` may see them: a user who blocked the viewer is
    /// `NotFound`, exactly like one that does not exist.
    pub fn profile(&self, viewer: Viewer, id: UserId) -> Result<User> {
        self.check_user_visible(viewer, id)?;
        self.get_user(id)
    }

    /// Looks a user up by handle as `viewer` may see them (see [`Engine::profile`]).
    pub fn profile_by_handle(&self, viewer: Viewer, handle: &str) -> Result<User> {
        let u = self.user_by_handle(handle)?;
        match viewer {
            Viewer::User(v) if v != u.id && self.blocked_by(v, u.id)? => Err(super::users::handle_not_found(handle)),
            _ => Ok(u),
        }
    }
}
