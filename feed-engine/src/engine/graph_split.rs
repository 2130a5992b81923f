//! The follow graph split over partitions (cluster mode). Each partition stores its users' side
//! of every edge: `following` for the follows they make, `followers` and `requests` for the ones
//! they receive, and their mutes. A follow, unfollow or approval is decided and answered on the
//! acting user's partition, which writes its side at once and the other user's side as a
//! follow-up ([`GraphHalf`]) in the same batch; the other partition applies it when it comes
//! back through the log ([`Writer::apply_user_followups`]), once, in the order its origin
//! decided them. Blocks stay on every node (every partition's visibility rules need them): each
//! node ends the sides of the follows between the two users that it holds.
//!
//! What a client sees in between (the follow-up's lag): the actor's own lists, counts and feed
//! change at once; the other user's lists and counts when the follow-up lands. Why the halves
//! always agree in the end: the follow-up exists exactly when its change does (one batch), is
//! cleared only once the log holds it (sent again after a crash), is applied once per origin
//! position, and a half re-checks for a block, which ended the other side's edge on its own
//! node and so wins over a half decided before it.

use crate::codec::Counter;
use crate::error::{Error, Result};
use crate::followup::{FollowUp, GraphHalf, GraphItem};
use crate::model::{FollowState, UserId};
use crate::social::NotificationKind;
use crate::store::{Batch, Durability};
use crate::tables::{COUNTERS, FOLLOWERS, FOLLOWING, FOLLOWUPS, META, MetaKey, OUTBOX, REQUESTS};

use super::graph::BLOCK;
use super::{Change, Writer};

/// How far before a follow a followee's post still gets a catch-up merge: a post accepted by
/// the followee's node a little before the follow may reach the log after it (and after the
/// follower's merge), and the two nodes' clocks may differ. A merge of posts already merged is
/// harmless; this only spares the catch-up when the followee has not posted for a while.
const CATCH_UP_MARGIN_MS: u64 = 60_000;

impl Writer<'_> {
    /// Whether `author` has a post created at or after `since_ms`.
    fn posted_since(&self, author: UserId, since_ms: u64) -> Result<bool> {
        let mut newest = None;
        OUTBOX.scan(&self.inner().store, author, None, |e| {
            newest = Some(e.post);
            false
        })?;
        Ok(newest.is_some_and(|p| super::post_time_ms(p) >= since_ms))
    }

    /// Records the other side's half of this change under `(seq, 0)`.
    fn graph_followup(&self, b: &mut Batch, seq: u64, half: GraphHalf, user: UserId, other: UserId, note: u64) {
        let f = FollowUp::Graph {
            half,
            user,
            other,
            note,
            at_ms: self.ctx.now_ms(),
        };
        FOLLOWUPS.put(&self.inner().store, b, (seq, 0), &f);
    }

    /// The id of the notification this change makes (minted with the event).
    fn note_id(&self) -> u64 {
        self.inner().next_post_id(self.ctx.now_ms(), self.ctx.minted())
    }

    /// A follow decided on the follower's partition: the follow edge, count and merged posts
    /// here; the follower edge (or, for a private account, the request, decided there) on the
    /// followee's.
    pub(super) fn split_follow(&self, seq: u64, follower: UserId, followee: UserId) -> Result<FollowState> {
        let inner = self.inner();
        let s = &inner.store;
        inner.require_user(follower)?;
        let private = self.is_private(followee)?;
        let g = inner.lock_users(follower, followee);
        if inner.blocks(followee, follower)? {
            return Err(super::visibility::user_not_found(followee));
        }
        if inner.relation(follower, followee)? & BLOCK != 0 {
            return Err(Error::invalid(format!(
                "user {follower} has blocked user {followee}; unblock first"
            )));
        }
        if FOLLOWING.exists(s, follower, followee)? {
            return Ok(FollowState::Following);
        }
        let mut b = s.batch();
        if private {
            self.graph_followup(&mut b, seq, GraphHalf::Requested, followee, follower, self.note_id());
            s.write(b, self.ctx.durability())?;
            return Ok(FollowState::Requested);
        }
        FOLLOWING.put(s, &mut b, follower, followee, None);
        COUNTERS.add(s, &mut b, follower, Counter::Following, 1);
        let merged = inner.merge_author_into(&mut b, follower, followee, self.ctx.now_ms())?;
        self.graph_followup(&mut b, seq, GraphHalf::Followed, followee, follower, self.note_id());
        s.write(b, self.ctx.durability())?;
        drop(g);
        inner.adjust_following(follower, 1);
        inner.cache.changed(Change::Graph(follower));
        inner.note_added(follower, merged)?;
        Ok(FollowState::Following)
    }

    /// An unfollow (or a withdrawn request) decided on the follower's partition. Returns whether
    /// a follow ended here; the followee's partition drops its follower edge or the request.
    pub(super) fn split_unfollow(&self, seq: u64, follower: UserId, followee: UserId) -> Result<bool> {
        let inner = self.inner();
        let s = &inner.store;
        inner.require_user(follower)?;
        inner.require_user(followee)?;
        let _g = inner.lock_users(follower, followee);
        let mut b = s.batch();
        let had = FOLLOWING.exists(s, follower, followee)?;
        if had {
            FOLLOWING.delete(s, &mut b, follower, followee);
            COUNTERS.add(s, &mut b, follower, Counter::Following, -1);
            inner.purge_author_from(&mut b, follower, followee)?;
        }
        self.graph_followup(&mut b, seq, GraphHalf::Unfollowed, followee, follower, 0);
        s.write(b, self.ctx.durability())?;
        if had {
            inner.adjust_following(follower, -1);
            inner.cache.changed(Change::Graph(follower));
        }
        Ok(had)
    }

    /// An approval decided on the private account's partition, where the request is: the
    /// follower edge and count here; the follow edge, merged posts and notification on the
    /// requester's.
    pub(super) fn split_approve(&self, seq: u64, owner: UserId, requester: UserId) -> Result<()> {
        let inner = self.inner();
        let s = &inner.store;
        let _g = inner.lock_users(owner, requester);
        if !REQUESTS.exists(s, owner, requester)? {
            return Err(Error::not_found(format!(
                "user {requester} has no pending request to follow user {owner}"
            )));
        }
        let mut b = s.batch();
        REQUESTS.delete(s, &mut b, owner, requester);
        FOLLOWERS.put(s, &mut b, owner, requester, None);
        COUNTERS.add(s, &mut b, owner, Counter::Followers, 1);
        self.graph_followup(&mut b, seq, GraphHalf::Approved, requester, owner, self.note_id());
        s.write(b, self.ctx.durability())?;
        inner.cache.changed(Change::Followers(owner));
        Ok(())
    }

    /// Applies one graph half on its user's partition, in a batch of its own that also records
    /// `mark` (its origin's position), buffered: the event's last write carries its sequence.
    /// `catch_up` is the index the half's own follow-up (a catch-up merge) takes under this
    /// event's sequence. Returns whether it used that index.
    pub(super) fn apply_graph_half(&self, g: &GraphItem, mark: (MetaKey, u64), catch_up: u16) -> Result<bool> {
        let inner = self.inner();
        let s = &inner.store;
        let (u, o) = (g.user, g.other);
        let _g = inner.lock_users(u, o);
        // A block between them (on every node, at its place in the log) wins over a half
        // decided before it: the block ended the other side's edge too.
        let blocked = inner.blocks(u, o)? || inner.blocks(o, u)?;
        let mut b = s.batch();
        META.put_u64(s, &mut b, mark.0, mark.1);
        let (mut sent, mut merged, mut following, mut used) = (Vec::new(), None, 0i64, false);
        let note = |kind| {
            let mut n = self.graph_note(kind, o);
            n.id = g.note;
            n.at_ms = g.at_ms;
            n
        };
        match g.half {
            GraphHalf::Followed if !blocked && !FOLLOWERS.exists(s, u, o)? => {
                FOLLOWERS.put(s, &mut b, u, o, None);
                COUNTERS.add(s, &mut b, u, Counter::Followers, 1);
                sent = inner.notify(&mut b, u, &note(NotificationKind::Followed))?;
                // The follower's partition merged this user's posts before this one counted
                // them as a follower: it merges again if any may have been published in
                // between (fanned out here without the new follower).
                if let Some(seq) = self.ctx.seq()
                    && self.posted_since(u, g.at_ms.saturating_sub(CATCH_UP_MARGIN_MS))?
                {
                    let f = FollowUp::Graph {
                        half: GraphHalf::CatchUp,
                        user: o,
                        other: u,
                        note: 0,
                        at_ms: self.ctx.now_ms(),
                    };
                    FOLLOWUPS.put(s, &mut b, (seq, catch_up), &f);
                    used = true;
                }
            }
            GraphHalf::Requested if !blocked && !FOLLOWERS.exists(s, u, o)? && !REQUESTS.exists(s, u, o)? => {
                REQUESTS.put(s, &mut b, u, o, Some(g.at_ms));
                sent = inner.notify(&mut b, u, &note(NotificationKind::Requested))?;
            }
            GraphHalf::Unfollowed => {
                if FOLLOWERS.exists(s, u, o)? {
                    FOLLOWERS.delete(s, &mut b, u, o);
                    COUNTERS.add(s, &mut b, u, Counter::Followers, -1);
                }
                REQUESTS.delete(s, &mut b, u, o);
            }
            GraphHalf::Approved if !blocked && !FOLLOWING.exists(s, u, o)? => {
                FOLLOWING.put(s, &mut b, u, o, None);
                COUNTERS.add(s, &mut b, u, Counter::Following, 1);
                following = 1;
                merged = Some(inner.merge_author_into(&mut b, u, o, self.ctx.now_ms())?);
                sent = inner.notify(&mut b, u, &note(NotificationKind::Approved))?;
            }
            GraphHalf::CatchUp if !blocked && FOLLOWING.exists(s, u, o)? => {
                merged = Some(inner.merge_author_into(&mut b, u, o, self.ctx.now_ms())?);
            }
            _ => {}
        }
        s.write(b, Durability::Buffered)?;
        drop(_g);
        if following != 0 {
            inner.adjust_following(u, following);
        }
        inner.cache.changed(Change::Graph(u));
        inner.cache.changed(Change::Followers(u));
        if let Some(m) = merged {
            inner.note_added(u, m)?;
        }
        self.notified(&sent)?;
        Ok(used)
    }
}
