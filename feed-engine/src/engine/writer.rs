//! Writes with an explicit context. Every change to users, the graph, posts, likes, comments,
//! notification markers, read markers and token floors is a method of [`Writer`], which carries
//! the write's [`WriteCtx`] (time, minted id, durability); the `Engine` methods of the same names
//! write at the clock's time.

use std::sync::Arc;

use crate::error::Result;
use crate::model::{FollowState, NewPost, Post, PostId, User, UserId};
use crate::social::{Comment, CommentId};
use crate::write::WriteCtx;

use super::Engine;

/// The engine with a write context: what [`Engine::at`] and [`Engine::writer`] return. Reads
/// are the engine's (it dereferences to [`Engine`]).
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    engine: &'a Engine,
    pub(super) ctx: WriteCtx,
}

impl std::ops::Deref for Writer<'_> {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        self.engine
    }
}

impl Writer<'_> {
    /// The context these writes run in.
    pub fn ctx(&self) -> WriteCtx {
        self.ctx
    }
}

impl Engine {
    /// Writes under `ctx` (a cluster node applying a log event: [`WriteCtx::replayed`]).
    pub fn at(&self, ctx: WriteCtx) -> Writer<'_> {
        Writer { engine: self, ctx }
    }

    /// Writes at the clock's time, each fsynced before it returns.
    pub fn writer(&self) -> Writer<'_> {
        self.at(WriteCtx::local(self.inner().now_ms()))
    }

    /// [`Writer::create_user`] at the clock's time.
    pub fn create_user(&self, handle: &str, private: bool) -> Result<User> {
        self.writer().create_user(handle, private)
    }

    /// [`Writer::set_private`] at the clock's time.
    pub fn set_private(&self, id: UserId, private: bool) -> Result<User> {
        self.writer().set_private(id, private)
    }

    /// [`Writer::follow`] at the clock's time.
    pub fn follow(&self, follower: UserId, followee: UserId) -> Result<FollowState> {
        self.writer().follow(follower, followee)
    }

    /// [`Writer::unfollow`] at the clock's time.
    pub fn unfollow(&self, follower: UserId, followee: UserId) -> Result<bool> {
        self.writer().unfollow(follower, followee)
    }

    /// [`Writer::approve`] at the clock's time.
    pub fn approve(&self, owner: UserId, requester: UserId) -> Result<()> {
        self.writer().approve(owner, requester)
    }

    /// [`Writer::deny`] at the clock's time.
    pub fn deny(&self, owner: UserId, requester: UserId) -> Result<()> {
        self.writer().deny(owner, requester)
    }

    /// [`Writer::block`] at the clock's time.
    pub fn block(&self, blocker: UserId, blocked: UserId) -> Result<()> {
        self.writer().block(blocker, blocked)
    }

    /// [`Writer::unblock`] at the clock's time.
    pub fn unblock(&self, blocker: UserId, blocked: UserId) -> Result<()> {
        self.writer().unblock(blocker, blocked)
    }

    /// [`Writer::mute`] at the clock's time.
    pub fn mute(&self, muter: UserId, muted: UserId) -> Result<()> {
        self.writer().mute(muter, muted)
    }

    /// [`Writer::unmute`] at the clock's time.
    pub fn unmute(&self, muter: UserId, muted: UserId) -> Result<()> {
        self.writer().unmute(muter, muted)
    }

    /// [`Writer::publish`] at the clock's time.
    pub fn publish(&self, author: UserId, new: NewPost) -> Result<Arc<Post>> {
        self.writer().publish(author, new)
    }

    /// [`Writer::delete_post`] at the clock's time.
    pub fn delete_post(&self, actor: UserId, post: PostId) -> Result<()> {
        self.writer().delete_post(actor, post)
    }

    /// [`Writer::set_read_marker`] at the clock's time.
    pub fn set_read_marker(&self, reader: UserId, post: PostId) -> Result<()> {
        self.writer().set_read_marker(reader, post)
    }

    /// [`Writer::revoke_tokens`] at the clock's time.
    pub fn revoke_tokens(&self, subject: UserId, before_us: u64) -> Result<u64> {
        self.writer().revoke_tokens(subject, before_us)
    }

    /// [`Writer::like`] at the clock's time.
    pub fn like(&self, user: UserId, post: PostId) -> Result<bool> {
        self.writer().like(user, post)
    }

    /// [`Writer::unlike`] at the clock's time.
    pub fn unlike(&self, user: UserId, post: PostId) -> Result<bool> {
        self.writer().unlike(user, post)
    }

    /// [`Writer::comment`] at the clock's time.
    pub fn comment(&self, user: UserId, post: PostId, parent: Option<CommentId>, text: &str) -> Result<Comment> {
        self.writer().comment(user, post, parent, text)
    }

    /// [`Writer::delete_comment`] at the clock's time.
    pub fn delete_comment(&self, user: UserId, post: PostId, comment: CommentId) -> Result<()> {
        self.writer().delete_comment(user, post, comment)
    }

    /// [`Writer::mark_notifications_seen`] at the clock's time.
    pub fn mark_notifications_seen(&self, user: UserId, up_to: u64) -> Result<u64> {
        self.writer().mark_notifications_seen(user, up_to)
    }

    /// [`Writer::record_views`] at the clock's time.
    pub fn record_views(&self, user: UserId, posts: &[PostId]) -> Result<usize> {
        self.writer().record_views(user, posts)
    }
}
