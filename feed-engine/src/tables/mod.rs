//! Typed tables over the store: every column family is reached through a small API here that
//! owns its key and value encoding (built from [`crate::codec`]). Engine code puts, deletes,
//! gets and scans users, posts, edges, entries and jobs by their ids and never handles key bytes;
//! [`crate::store`] stays the only module that imports `rocksdb`.
//!
//! Each table is a constant (`tables::POSTS`, `tables::FOLLOWERS`, …) whose methods take the
//! [`Store`](crate::store::Store) and, for writes, the [`Batch`](crate::store::Batch) they join, so
//! one atomic write may span tables.

mod edges;
mod entries;
mod followups;
mod meta;
mod owned;
mod records;
mod social;

pub use edges::{BLOCK, Edges, FOLLOWERS, FOLLOWING, MUTE, RELATIONS, REQUESTS, Relations};
pub use entries::{Entries, Pos, RANKED, TIMELINE};
pub use followups::{FOLLOWUPS, FollowUps, SHARED_COUNTS, SharedCount, SharedCounts};
pub use meta::{META, Meta, MetaKey};
pub use owned::{OWNED_FAMILIES, OWNED_RELATION_BITS, RowOwner, row_owner};
pub use records::{
    COUNTERS, Counters, HANDLES, Handles, MARKERS, Markers, OUTBOX, Outbox, PENDING, POSTS, PULL_AUTHORS, Pending,
    Posts, PullAuthors, READERS, ReaderRecords, USERS, Users,
};
pub use social::{AFFINITY, Affinity, COMMENTS, Comments, LIKES, Likes, NOTIFICATIONS, Notifications, TAGS, Tags};
