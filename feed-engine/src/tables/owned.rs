//! What a partition's owner alone keeps (cluster mode): for each row of the families that hold
//! such state, the user (or partition) it belongs to. A partition's snapshot is made of exactly
//! these rows, and a node restoring one replaces exactly these rows; everything else (profiles,
//! posts, outboxes, tags, blocks, the post counts) is applied by every node from the log.
//!
//! Not here on purpose: timelines and reader records (forgotten on a takeover and rebuilt once
//! their reader is active), pending fanout (the new owner fans recent posts out again), the
//! counts announced by other nodes (`shared_counts`, kept by every node).

use crate::codec::{Counter, read_u64};
use crate::error::Result;
use crate::model::{PostId, UserId};
use crate::store::Cf;

use super::FOLLOWUPS;

/// Families with rows only a partition's owner keeps.
pub const OWNED_FAMILIES: [Cf; 13] = [
    Cf::Meta,
    Cf::Counters,
    Cf::Following,
    Cf::Followers,
    Cf::Requests,
    Cf::Relations,
    Cf::Markers,
    Cf::Likes,
    Cf::Comments,
    Cf::Threads,
    Cf::Notifications,
    Cf::Affinity,
    Cf::FollowUps,
];

/// The bit of a `relations` value only the setting user's owner keeps (a mute; a block is
/// applied everywhere).
pub const OWNED_RELATION_BITS: u8 = super::MUTE;

/// Whose a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOwner {
    /// The partition of this user keeps it.
    User(UserId),
    /// This partition keeps it.
    Partition(u32),
    /// Every node keeps it (or it belongs to nobody any more, such as a deleted post's).
    Everyone,
}

const NOTIFICATIONS_SEEN: &[u8] = b"notifications-seen/";
const FOLLOWUPS_FROM: &[u8] = b"followups-from/";

/// Whose the row `k → v` of `cf` is. `author` finds a post's author (`None`: the post is gone).
pub fn row_owner(
    cf: Cf,
    k: &[u8],
    v: &[u8],
    author: &mut dyn FnMut(PostId) -> Result<Option<UserId>>,
) -> Result<RowOwner> {
    let user = |k: &[u8]| read_u64(k, 0).map_or(RowOwner::Everyone, RowOwner::User);
    Ok(match cf {
        Cf::Following
        | Cf::Followers
        | Cf::Requests
        | Cf::Markers
        | Cf::Notifications
        | Cf::Affinity
        | Cf::Relations => user(k),
        Cf::Counters if k.len() == 9 => {
            let id = read_u64(k, 0).unwrap_or(0);
            match k[8] {
                x if x == Counter::Followers as u8 || x == Counter::Following as u8 => RowOwner::User(id),
                x if x == Counter::Notifications as u8 => RowOwner::User(id),
                x if x == Counter::PostLikes as u8 || x == Counter::PostComments as u8 => {
                    author(id)?.map_or(RowOwner::Everyone, RowOwner::User)
                }
                _ => RowOwner::Everyone,
            }
        }
        Cf::Likes | Cf::Comments | Cf::Threads => match read_u64(k, 0) {
            Some(post) => author(post)?.map_or(RowOwner::Everyone, RowOwner::User),
            None => RowOwner::Everyone,
        },
        Cf::FollowUps => FOLLOWUPS
            .decode_row(k, v)
            .map_or(RowOwner::Everyone, |f| RowOwner::User(f.decided_by())),
        Cf::Meta if k.starts_with(NOTIFICATIONS_SEEN) => user(&k[NOTIFICATIONS_SEEN.len()..]),
        Cf::Meta if k.starts_with(FOLLOWUPS_FROM) && k.len() == FOLLOWUPS_FROM.len() + 8 => {
            let at = FOLLOWUPS_FROM.len();
            RowOwner::Partition(u32::from_be_bytes([k[at], k[at + 1], k[at + 2], k[at + 3]]))
        }
        _ => RowOwner::Everyone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use crate::tables::MetaKey;

    #[test]
    fn meta_rows_are_sorted_by_their_key_s_user_or_partition() {
        let mut none = |_: PostId| Ok(None);
        let seen = MetaKey::NotificationsSeen(77).bytes();
        assert_eq!(row_owner(Cf::Meta, &seen, &[], &mut none).unwrap(), RowOwner::User(77));
        let from = MetaKey::FollowUpsFrom { target: 5, origin: 9 }.bytes();
        assert_eq!(
            row_owner(Cf::Meta, &from, &[], &mut none).unwrap(),
            RowOwner::Partition(5)
        );
        let tokens = MetaKey::TokensValidFrom(77).bytes();
        assert_eq!(
            row_owner(Cf::Meta, &tokens, &[], &mut none).unwrap(),
            RowOwner::Everyone
        );
    }

    #[test]
    fn counters_belong_to_their_user_or_their_post_s_author_and_post_counts_to_everyone() {
        let mut author = |p: PostId| Ok((p == 1000).then_some(42));
        let own = |c| codec::counter_key(7, c);
        assert_eq!(
            row_owner(Cf::Counters, &own(Counter::Followers), &[], &mut author).unwrap(),
            RowOwner::User(7)
        );
        assert_eq!(
            row_owner(Cf::Counters, &own(Counter::Posts), &[], &mut author).unwrap(),
            RowOwner::Everyone
        );
        let likes = codec::counter_key(1000, Counter::PostLikes);
        assert_eq!(
            row_owner(Cf::Counters, &likes, &[], &mut author).unwrap(),
            RowOwner::User(42)
        );
        let gone = codec::counter_key(1001, Counter::PostLikes);
        assert_eq!(
            row_owner(Cf::Counters, &gone, &[], &mut author).unwrap(),
            RowOwner::Everyone
        );
    }
}
