//! Follow-ups: changes that belong to another partition, made by a change on this one. In a
//! cluster likes and comments are decided on the post author's partition (the like or comment,
//! the post's count, the author's notification), but some of their effects live elsewhere: the
//! engaging user's affinity to the author (on their partition, where their feed is ranked), a
//! reply's notification to the parent comment's author, and the post's counts as every other
//! node shows them. The author's node writes them as follow-ups in the same batch as the change,
//! so they exist exactly when it does; the cluster sends them through the log and clears them
//! once it holds them (see `feed-server`'s `cluster::followups`).
//!
//! Every kind is safe to deliver more than once and in any order: a user's items carry the
//! position of the change that made them, and the receiving partition applies each origin's
//! items only past the last one it applied ([`crate::Writer::apply_user_followups`]); a count
//! carries the position it is current as of, and a node keeps only the newest
//! ([`crate::Writer::apply_counts`]).

use serde::{Deserialize, Serialize};

use crate::model::{PostId, UserId};

/// Where a follow-up waits: the log sequence of the event that made it and its index among that
/// event's follow-ups (so replaying the event writes the same key again).
pub type FollowUpKey = (u64, u16);

/// A change another partition applies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum FollowUp {
    /// `reader`'s affinity to `author` changes by `amount` at `at_ms` (a like: +1, an unlike: −1).
    Affinity {
        /// The liker.
        reader: UserId,
        /// The post's author.
        author: UserId,
        /// The change.
        amount: f64,
        /// When the like happened.
        at_ms: u64,
    },
    /// `recipient`'s comment got reply `comment` (also the notification's id) on `post` (by
    /// `author`) from `actor` at `at_ms`.
    Replied {
        /// The parent comment's author.
        recipient: UserId,
        /// Who replied.
        actor: UserId,
        /// The post.
        post: PostId,
        /// The post's author (whose partition decided the reply).
        author: UserId,
        /// The reply.
        comment: u64,
        /// When.
        at_ms: u64,
    },
    /// `post` (by `author`) has `comments` comments as of the author's partition's event `as_of`.
    CommentCount {
        /// The post.
        post: PostId,
        /// Its author.
        author: UserId,
        /// Its comment count.
        comments: u64,
        /// The log sequence of the last change counted.
        as_of: u64,
    },
    /// The half of a follow-graph change that belongs to `user`'s partition, decided on
    /// `other`'s (see [`GraphHalf`]).
    Graph {
        /// What happened.
        half: GraphHalf,
        /// The user whose partition applies it.
        user: UserId,
        /// The user whose partition decided it.
        other: UserId,
        /// The notification's id, when the half makes one (0: none).
        note: u64,
        /// When the change was decided.
        at_ms: u64,
    },
    /// `post` (by `author`) has `likes` likes as of the author's partition's event `as_of`.
    LikeCount {
        /// The post.
        post: PostId,
        /// Its author.
        author: UserId,
        /// Its like count.
        likes: u64,
        /// The log sequence of the last like counted.
        as_of: u64,
    },
}

/// One affinity change as the engaging user's partition applies it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AffinityItem {
    /// The partition the like or comment was decided on (its post author's).
    pub origin: u32,
    /// Its log sequence: a user's items of one origin are applied in (sequence, index) order,
    /// once.
    pub origin_seq: u64,
    /// The follow-up's index among the change's follow-ups.
    #[serde(default)]
    pub idx: u16,
    /// The liker.
    pub reader: UserId,
    /// The post's author.
    pub author: UserId,
    /// The change.
    pub amount: f64,
    /// When the like happened.
    pub at_ms: u64,
}

/// One post's like count as every node stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LikeCountItem {
    /// The post.
    pub post: PostId,
    /// Its author.
    pub author: UserId,
    /// Its like count.
    pub likes: u64,
    /// The log sequence of the last like counted: a node keeps the count with the highest.
    pub as_of: u64,
}

/// A reply's notification as the parent comment's author's partition applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyItem {
    /// The partition the reply was decided on.
    pub origin: u32,
    /// The reply's log sequence.
    pub origin_seq: u64,
    /// The follow-up's index among the reply's follow-ups.
    pub idx: u16,
    /// The parent comment's author.
    pub recipient: UserId,
    /// Who replied.
    pub actor: UserId,
    /// The post.
    pub post: PostId,
    /// The reply (and the notification's id).
    pub comment: u64,
    /// When.
    pub at_ms: u64,
}

/// One post's comment count as every node stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentCountItem {
    /// The post.
    pub post: PostId,
    /// Its author.
    pub author: UserId,
    /// Its comment count.
    pub comments: u64,
    /// The log sequence of the last change counted: a node keeps the count with the highest.
    pub as_of: u64,
}

/// The half of a follow-graph change applied on `user`'s partition, decided on `other`'s. A
/// follow, unfollow, approval, block or unblock is decided (and answered) on the acting user's
/// partition, which writes its own half at once and this one as a follow-up. (Blocks are applied
/// on every node.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GraphHalf {
    /// `other` now follows `user` (public account): `user`'s follower edge, count and
    /// notification.
    Followed,
    /// `other` asks to follow `user` (private account): decided here — filed, with its
    /// notification, unless a block or an existing follow stands between them.
    Requested,
    /// `other` no longer follows `user`, or withdrew a request.
    Unfollowed,
    /// `other` approved `user`'s request: `user`'s follow edge, count, merged posts and
    /// notification.
    Approved,
    /// `other`'s partition now counts `user` as a follower: `user`'s timeline merges `other`'s
    /// recent posts again, for any `other` published before it knew (idempotent).
    CatchUp,
}

impl GraphHalf {
    /// Its code in the follow-up record.
    pub fn code(self) -> u64 {
        match self {
            GraphHalf::Followed => 1,
            GraphHalf::Requested => 2,
            GraphHalf::Unfollowed => 3,
            GraphHalf::Approved => 4,
            GraphHalf::CatchUp => 5,
        }
    }

    /// The half with code `c`, if any.
    pub fn from_code(c: u64) -> Option<Self> {
        Some(match c {
            1 => GraphHalf::Followed,
            2 => GraphHalf::Requested,
            3 => GraphHalf::Unfollowed,
            4 => GraphHalf::Approved,
            5 => GraphHalf::CatchUp,
            _ => return None,
        })
    }
}

/// One graph half as `user`'s partition applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphItem {
    /// The partition that decided the change (`other`'s).
    pub origin: u32,
    /// The change's log sequence.
    pub origin_seq: u64,
    /// The follow-up's index among the change's follow-ups.
    pub idx: u16,
    /// What happened.
    pub half: GraphHalf,
    /// The user whose partition applies it.
    pub user: UserId,
    /// The user whose partition decided it.
    pub other: UserId,
    /// The notification's id (0: none).
    pub note: u64,
    /// When the change was decided.
    pub at_ms: u64,
}

impl FollowUp {
    /// The user whose partition decided the change this follow-up comes from (the post's
    /// author for engagement, the acting user for a graph half).
    pub fn decided_by(&self) -> UserId {
        match *self {
            FollowUp::Affinity { author, .. }
            | FollowUp::Replied { author, .. }
            | FollowUp::CommentCount { author, .. }
            | FollowUp::LikeCount { author, .. } => author,
            FollowUp::Graph { other, .. } => other,
        }
    }

    /// This follow-up as the graph item its user's partition applies, if it is a graph half:
    /// waiting under `key`, its origin the partition `origin_of` gives the deciding user.
    pub fn graph_item(&self, key: FollowUpKey, origin_of: impl Fn(UserId) -> u32) -> Option<GraphItem> {
        match *self {
            FollowUp::Graph {
                half,
                user,
                other,
                note,
                at_ms,
            } => Some(GraphItem {
                origin: origin_of(other),
                origin_seq: key.0,
                idx: key.1,
                half,
                user,
                other,
                note,
                at_ms,
            }),
            _ => None,
        }
    }
}
