//! The follow graph: follow (with requests for private accounts), unfollow, approve/deny, block,
//! mute, and paginated lists. Every change to edges, counters and the affected stored timelines is
//! one atomic, fsynced batch, so a crash never leaves a follow without its merged posts.

use crate::codec::{self, Counter};
use crate::error::{Error, Result};
use crate::model::{FollowState, UserId, UserPage, Viewer};
use crate::social::{Notification, NotificationKind};
use crate::tables::{COUNTERS, FOLLOWERS, FOLLOWING, RELATIONS, REQUESTS};

use super::timelines::Merged;
use super::{Change, Engine, Inner, Writer};

pub(crate) use crate::tables::{BLOCK, MUTE};

/// Which list of users to page through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Followers,
    Following,
    Requests,
}

impl Inner {
    pub(crate) fn relation(&self, user: UserId, other: UserId) -> Result<u8> {
        RELATIONS.get(&self.store, user, other)
    }

    /// Whether `follower` follows `followee`. In a cluster each partition holds its users'
    /// side of an edge, so either side answers.
    pub(crate) fn follows(&self, follower: UserId, followee: UserId) -> Result<bool> {
        Ok(FOLLOWING.exists(&self.store, follower, followee)?
            || (self.writes_partitioned() && FOLLOWERS.exists(&self.store, followee, follower)?))
    }

    /// Whether `user` has blocked `other` (blocks are on every node, in a cluster too: every
    /// partition's visibility rules need them).
    pub(crate) fn blocks(&self, user: UserId, other: UserId) -> Result<bool> {
        Ok(self.relation(user, other)? & BLOCK != 0)
    }

    /// Adds the edge `follower → followee` (with counters and the followee's recent posts) to a
    /// batch. Returns what it merged into the follower's timeline.
    fn add_edge(&self, b: &mut crate::store::Batch, follower: UserId, followee: UserId, now: u64) -> Result<Merged> {
        COUNTERS.add(&self.store, b, follower, Counter::Following, 1);
        COUNTERS.add(&self.store, b, followee, Counter::Followers, 1);
        self.add_edge_uncounted(b, follower, followee, now)
    }

    /// [`Inner::add_edge`] without the counters, for callers that sum them per batch.
    pub(crate) fn add_edge_uncounted(
        &self,
        b: &mut crate::store::Batch,
        follower: UserId,
        followee: UserId,
        now: u64,
    ) -> Result<Merged> {
        FOLLOWING.put(&self.store, b, follower, followee, None);
        FOLLOWERS.put(&self.store, b, followee, follower, None);
        self.merge_author_into(b, follower, followee, now)
    }

    /// Removes the edge `follower → followee` — each side this node holds, with its count (in a
    /// cluster a partition holds its own users' side) — and the followee's entries from the
    /// follower's timeline. Returns whether the follower's side existed.
    fn remove_edge(&self, b: &mut crate::store::Batch, follower: UserId, followee: UserId) -> Result<bool> {
        let s = &self.store;
        let mine = FOLLOWING.exists(s, follower, followee)?;
        if mine {
            FOLLOWING.delete(s, b, follower, followee);
            COUNTERS.add(s, b, follower, Counter::Following, -1);
            self.purge_author_from(b, follower, followee)?;
        }
        if FOLLOWERS.exists(s, followee, follower)? {
            FOLLOWERS.delete(s, b, followee, follower);
            COUNTERS.add(s, b, followee, Counter::Followers, -1);
        }
        Ok(mine)
    }

    /// Updates the in-memory follow count of a reader after a committed change.
    pub(crate) fn adjust_following(&self, reader: UserId, delta: i64) {
        self.readers
            .update(reader, |s| s.following = s.following.saturating_add_signed(delta));
    }
}

/// A page of users from up to `page_size + 1` scanned in order: the cursor is the last one shown
/// when there is more.
pub(crate) fn user_page(mut users: Vec<UserId>, page_size: usize) -> UserPage {
    let next_cursor = if users.len() > page_size {
        users.truncate(page_size);
        users.last().map(|&u| codec::encode_list_cursor(u))
    } else {
        None
    };
    UserPage { users, next_cursor }
}

pub(super) fn distinct(a: UserId, b: UserId, what: &str) -> Result<()> {
    if a == b {
        Err(Error::invalid(format!("a user cannot {what} themselves (user {a})")))
    } else {
        Ok(())
    }
}

impl Engine {
    /// Whether `follower` follows `followee` (approved).
    pub fn is_following(&self, follower: UserId, followee: UserId) -> Result<bool> {
        self.inner().follows(follower, followee)
    }

    /// `user`'s follower count as this node holds it (in a cluster, exact on the user's node).
    pub fn follower_count(&self, user: UserId) -> Result<u64> {
        self.inner().counter(user, Counter::Followers)
    }

    /// A page of `user`'s followers, ascending by id, as `viewer` may see it (a private
    /// account's lists: the account and its approved followers only; a blocker: `NotFound`).
    pub fn followers(&self, viewer: Viewer, user: UserId, page_size: usize, cursor: Option<&str>) -> Result<UserPage> {
        self.check_lists_visible(viewer, user)?;
        self.list(List::Followers, user, page_size, cursor)
    }

    /// A page of the accounts `user` follows, ascending by id, as `viewer` may see it (as for
    /// [`Engine::followers`]).
    pub fn following(&self, viewer: Viewer, user: UserId, page_size: usize, cursor: Option<&str>) -> Result<UserPage> {
        self.check_lists_visible(viewer, user)?;
        self.list(List::Following, user, page_size, cursor)
    }

    /// A page of the users waiting for `user`'s approval, ascending by id.
    pub fn pending_requests(&self, user: UserId, page_size: usize, cursor: Option<&str>) -> Result<UserPage> {
        self.list(List::Requests, user, page_size, cursor)
    }

    fn list(&self, which: List, user: UserId, page_size: usize, cursor: Option<&str>) -> Result<UserPage> {
        let inner = self.inner();
        self.check_page_size(page_size)?;
        let after = cursor.map(codec::decode_list_cursor).transpose()?;
        inner.require_user(user)?;
        let edges = match which {
            List::Followers => FOLLOWERS,
            List::Following => FOLLOWING,
            List::Requests => REQUESTS,
        };
        let mut users = Vec::with_capacity(page_size + 1);
        if after != Some(u64::MAX) {
            edges.scan(&inner.store, user, after.map(|a| a + 1), |u| {
                users.push(u);
                users.len() <= page_size
            })?;
        }
        Ok(user_page(users, page_size))
    }

    pub(crate) fn check_page_size(&self, page_size: usize) -> Result<()> {
        let max = self.config().max_page_size;
        if page_size == 0 || page_size > max {
            return Err(Error::invalid(format!(
                "page size must be between 1 and {max}, got {page_size}"
            )));
        }
        Ok(())
    }
}

impl Writer<'_> {
    /// The notification a graph change by `actor` makes.
    pub(super) fn graph_note(&self, kind: NotificationKind, actor: UserId) -> Notification {
        Notification {
            id: self.inner().next_post_id(self.ctx.now_ms(), self.ctx.minted()),
            kind,
            actor,
            post: None,
            comment: None,
            at_ms: self.ctx.now_ms(),
        }
    }

    /// `follower` follows `followee`. For a private followee this files a request instead.
    /// Following again is a no-op that reports the current state.
    pub fn follow(&self, follower: UserId, followee: UserId) -> Result<FollowState> {
        distinct(follower, followee, "follow")?;
        if let Some(seq) = self.partitioned_seq() {
            return self.split_follow(seq, follower, followee);
        }
        let inner = self.inner();
        inner.require_user(follower)?;
        let private = self.is_private(followee)?;
        let g = inner.lock_users(follower, followee);
        if inner.relation(followee, follower)? & BLOCK != 0 {
            // Answered as for a user who does not exist: a follow must not reveal a block.
            return Err(super::visibility::user_not_found(followee));
        }
        if inner.relation(follower, followee)? & BLOCK != 0 {
            return Err(Error::invalid(format!(
                "user {follower} has blocked user {followee}; unblock first"
            )));
        }
        if inner.follows(follower, followee)? {
            return Ok(FollowState::Following);
        }
        let mut b = inner.store.batch();
        if private {
            if !REQUESTS.exists(&inner.store, followee, follower)? {
                REQUESTS.put(&inner.store, &mut b, followee, follower, Some(self.ctx.now_ms()));
                let sent = inner.notify(
                    &mut b,
                    followee,
                    &self.graph_note(NotificationKind::Requested, follower),
                )?;
                inner.store.write(b, self.ctx.durability())?;
                drop(g);
                self.notified(&sent)?;
            }
            return Ok(FollowState::Requested);
        }
        let merged = inner.add_edge(&mut b, follower, followee, self.ctx.now_ms())?;
        let sent = inner.notify(&mut b, followee, &self.graph_note(NotificationKind::Followed, follower))?;
        inner.store.write(b, self.ctx.durability())?;
        drop(g);
        inner.adjust_following(follower, 1);
        inner.cache.changed(Change::Graph(follower));
        inner.cache.changed(Change::Followers(followee));
        inner.note_added(follower, merged)?;
        self.notified(&sent)?;
        Ok(FollowState::Following)
    }

    /// `follower` stops following `followee` (or withdraws a pending request). The followee's
    /// posts leave the follower's stored timeline in the same batch. Returns whether anything changed.
    pub fn unfollow(&self, follower: UserId, followee: UserId) -> Result<bool> {
        distinct(follower, followee, "unfollow")?;
        if let Some(seq) = self.partitioned_seq() {
            return self.split_unfollow(seq, follower, followee);
        }
        let inner = self.inner();
        inner.require_user(follower)?;
        inner.require_user(followee)?;
        let _g = inner.lock_users(follower, followee);
        let mut b = inner.store.batch();
        let had_request = REQUESTS.exists(&inner.store, followee, follower)?;
        if had_request {
            REQUESTS.delete(&inner.store, &mut b, followee, follower);
        }
        let had_edge = inner.remove_edge(&mut b, follower, followee)?;
        if !had_edge && !had_request {
            return Ok(false);
        }
        inner.store.write(b, self.ctx.durability())?;
        if had_edge {
            inner.adjust_following(follower, -1);
        }
        inner.cache.changed(Change::Graph(follower));
        inner.cache.changed(Change::Followers(followee));
        Ok(true)
    }

    /// `owner` (a private account) approves `requester`'s follow request.
    pub fn approve(&self, owner: UserId, requester: UserId) -> Result<()> {
        distinct(owner, requester, "approve")?;
        if let Some(seq) = self.partitioned_seq() {
            return self.split_approve(seq, owner, requester);
        }
        let inner = self.inner();
        let g = inner.lock_users(owner, requester);
        if !REQUESTS.exists(&inner.store, owner, requester)? {
            return Err(Error::not_found(format!(
                "user {requester} has no pending request to follow user {owner}"
            )));
        }
        let mut b = inner.store.batch();
        REQUESTS.delete(&inner.store, &mut b, owner, requester);
        let merged = inner.add_edge(&mut b, requester, owner, self.ctx.now_ms())?;
        let sent = inner.notify(&mut b, requester, &self.graph_note(NotificationKind::Approved, owner))?;
        inner.store.write(b, self.ctx.durability())?;
        drop(g);
        inner.adjust_following(requester, 1);
        inner.cache.changed(Change::Graph(requester));
        inner.cache.changed(Change::Followers(owner));
        inner.note_added(requester, merged)?;
        self.notified(&sent)
    }

    /// `owner` denies `requester`'s follow request.
    pub fn deny(&self, owner: UserId, requester: UserId) -> Result<()> {
        distinct(owner, requester, "deny")?;
        let inner = self.inner();
        let _g = inner.lock_users(owner, requester);
        if !REQUESTS.exists(&inner.store, owner, requester)? {
            return Err(Error::not_found(format!(
                "user {requester} has no pending request to follow user {owner}"
            )));
        }
        let mut b = inner.store.batch();
        REQUESTS.delete(&inner.store, &mut b, owner, requester);
        inner.store.write(b, self.ctx.durability())
    }

    /// `blocker` blocks `blocked`: follows in both directions end, pending requests are dropped,
    /// each one's posts leave the other's stored timeline, and neither can follow the other.
    pub fn block(&self, blocker: UserId, blocked: UserId) -> Result<()> {
        distinct(blocker, blocked, "block")?;

        let inner = self.inner();
        inner.require_user(blocker)?;
        inner.require_user(blocked)?;
        let _g = inner.lock_users(blocker, blocked);
        let flags = inner.relation(blocker, blocked)?;
        let mut b = inner.store.batch();
        RELATIONS.set(&inner.store, &mut b, blocker, blocked, flags | BLOCK);
        let a = inner.remove_edge(&mut b, blocker, blocked)?;
        let c = inner.remove_edge(&mut b, blocked, blocker)?;
        for (x, y) in [(blocker, blocked), (blocked, blocker)] {
            REQUESTS.delete(&inner.store, &mut b, x, y);
        }
        // Entries pushed before the follow ended may linger only if the edge was already gone;
        // purging both timelines keeps them clean in every case.
        if !a {
            inner.purge_author_from(&mut b, blocker, blocked)?;
        }
        if !c {
            inner.purge_author_from(&mut b, blocked, blocker)?;
        }
        inner.store.write(b, self.ctx.durability())?;
        if a {
            inner.adjust_following(blocker, -1);
        }
        if c {
            inner.adjust_following(blocked, -1);
        }
        inner.cache.changed(Change::Graph(blocker));
        inner.cache.changed(Change::Graph(blocked));
        inner.cache.changed(Change::Followers(blocker));
        inner.cache.changed(Change::Followers(blocked));
        Ok(())
    }

    /// Lifts a block. Follows that the block ended are not restored.
    pub fn unblock(&self, blocker: UserId, blocked: UserId) -> Result<()> {
        self.clear_relation(blocker, blocked, BLOCK, "unblock")
    }

    /// `muter` hides `muted`'s posts from their feed without unfollowing; the stored timeline
    /// drops them at once.
    pub fn mute(&self, muter: UserId, muted: UserId) -> Result<()> {
        distinct(muter, muted, "mute")?;
        let inner = self.inner();
        inner.require_user(muter)?;
        inner.require_user(muted)?;
        let _g = inner.lock_users(muter, muted);
        let flags = inner.relation(muter, muted)?;
        let mut b = inner.store.batch();
        RELATIONS.set(&inner.store, &mut b, muter, muted, flags | MUTE);
        inner.purge_author_from(&mut b, muter, muted)?;
        inner.store.write(b, self.ctx.durability())?;
        inner.cache.changed(Change::Graph(muter));
        Ok(())
    }

    /// Lifts a mute; the muted author's recent posts come back into a followed feed.
    pub fn unmute(&self, muter: UserId, muted: UserId) -> Result<()> {
        self.clear_relation(muter, muted, MUTE, "unmute")
    }

    fn clear_relation(&self, user: UserId, other: UserId, bit: u8, what: &str) -> Result<()> {
        distinct(user, other, what)?;
        let inner = self.inner();
        inner.require_user(user)?;
        inner.require_user(other)?;
        let _g = inner.lock_users(user, other);
        let flags = inner.relation(user, other)?;
        if flags & bit == 0 {
            return Ok(());
        }
        let mut b = inner.store.batch();
        RELATIONS.set(&inner.store, &mut b, user, other, flags & !bit);
        let mut merged = Merged::default();
        if bit == MUTE && flags & BLOCK == 0 && inner.follows(user, other)? {
            merged = inner.merge_author_into(&mut b, user, other, self.ctx.now_ms())?;
        }
        inner.store.write(b, self.ctx.durability())?;
        inner.cache.changed(Change::Graph(user));
        inner.note_added(user, merged)
    }
}
