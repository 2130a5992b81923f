//! Follow-ups: changes that belong to another partition, made by a change on this one. In a
//! cluster a like is decided on the post author's partition (the like, the post's count, the
//! author's notification), but two of its effects live elsewhere: the liker's affinity to the
//! author (on the liker's partition, where their feed is ranked) and the post's like count as
//! every other node shows it. The author's node writes them as follow-ups in the same batch as
//! the like, so they exist exactly when the like does; the cluster sends them through the log
//! and clears them once it holds them (see `feed-server`'s `cluster::followups`).
//!
//! Both kinds are safe to deliver more than once and in any order: affinity items carry the
//! position of the like that made them, and the receiving partition applies each origin's items
//! only past the last one it applied ([`crate::Writer::apply_affinity`]); a like count carries
//! the position it is current as of, and a node keeps only the newest
//! ([`crate::Writer::apply_like_counts`]).

use serde::{Deserialize, Serialize};

use crate::model::{PostId, UserId};

/// Where a follow-up waits: the log sequence of the event that made it and its index among that
/// event's follow-ups (so replaying the event writes the same key again).
pub type FollowUpKey = (u64, u8);

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

/// One affinity change as a liker's partition applies it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AffinityItem {
    /// The partition the like was decided on (its post author's).
    pub origin: u32,
    /// The like's log sequence: items of one origin are applied in this order, once.
    pub origin_seq: u64,
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
