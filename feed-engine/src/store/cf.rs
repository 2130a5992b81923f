//! The column families: one per kind of data, with their on-disk names and how they are read.

/// The column families, one per kind of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cf {
    /// Engine metadata: schema version, ranking parameters.
    Meta,
    /// `user → profile record`.
    Users,
    /// `handle → user`: uniqueness of handles.
    Handles,
    /// `user ‖ kind → i64`, summed by a merge operator (followers, following, posts).
    Counters,
    /// `post → post record`.
    Posts,
    /// `author ‖ !post → rank [‖ expiry]`: an author's posts, newest first (pull source).
    Outbox,
    /// `follower ‖ followee → ∅`.
    Following,
    /// `followee ‖ follower → ∅`.
    Followers,
    /// `target ‖ requester → created_at`: follow requests awaiting a private user's approval.
    Requests,
    /// `user ‖ other → flags`: blocks and mutes that `user` set.
    Relations,
    /// `reader ‖ !rank ‖ !post → author [‖ expiry]`: precomputed home timelines.
    Timeline,
    /// `post ‖ kind → job`: fanout work acknowledged but not yet done.
    Pending,
    /// `reader → activity and timeline state`.
    Readers,
    /// `author → pull-until`: authors whose recent posts were not pushed and must be merged at read.
    PullAuthors,
    /// `reader → rank ‖ post`: the newest feed position the reader has read (the read marker).
    Markers,
    /// `author ‖ !rank ‖ !post → author [‖ expiry]`: an author's posts, highest rank first — the
    /// pull source, so a pull reads exactly the entries a page needs (the key and value have
    /// the timeline's shape).
    Ranked,
    /// `post ‖ user → liked-at ms`: who liked each post.
    Likes,
    /// `post ‖ comment → comment record`: each post's comments.
    Comments,
    /// `post ‖ parent ‖ comment → ∅`: a post's comments in thread order (parent 0: top level).
    Threads,
    /// `hash(tag) ‖ !post → author ‖ tag`: posts carrying each hashtag, newest first.
    Tags,
    /// `tag → i64`: hashtags in text order with their post counts (merge-added), for prefix search.
    TagNames,
    /// `user ‖ !notification → record`: each user's notifications, newest first.
    Notifications,
    /// `reader ‖ author → decayed value ‖ at`: how much a reader engages with an author.
    Affinity,
    /// `event sequence ‖ index → follow-up`: changes other partitions must apply, written with
    /// the change that causes them and cleared once the log holds them (cluster mode).
    FollowUps,
    /// `post → likes ‖ as of`: like counts of posts whose authors other nodes hold, as those
    /// nodes last announced them (cluster mode).
    SharedCounts,
}

impl Cf {
    /// Every column family, in creation order.
    pub const ALL: [Cf; 25] = [
        Cf::Meta,
        Cf::Users,
        Cf::Handles,
        Cf::Counters,
        Cf::Posts,
        Cf::Outbox,
        Cf::Following,
        Cf::Followers,
        Cf::Requests,
        Cf::Relations,
        Cf::Timeline,
        Cf::Pending,
        Cf::Readers,
        Cf::PullAuthors,
        Cf::Markers,
        Cf::Ranked,
        Cf::Likes,
        Cf::Comments,
        Cf::Threads,
        Cf::Tags,
        Cf::TagNames,
        Cf::Notifications,
        Cf::Affinity,
        Cf::FollowUps,
        Cf::SharedCounts,
    ];

    /// The column family's name on disk.
    pub fn name(self) -> &'static str {
        match self {
            Cf::Meta => "meta",
            Cf::Users => "users",
            Cf::Handles => "handles",
            Cf::Counters => "counters",
            Cf::Posts => "posts",
            Cf::Outbox => "outbox",
            Cf::Following => "following",
            Cf::Followers => "followers",
            Cf::Requests => "requests",
            Cf::Relations => "relations",
            Cf::Timeline => "timeline",
            Cf::Pending => "pending",
            Cf::Readers => "readers",
            Cf::PullAuthors => "pull_authors",
            Cf::Markers => "markers",
            Cf::Ranked => "outbox_ranked",
            Cf::Likes => "likes",
            Cf::Comments => "comments",
            Cf::Threads => "threads",
            Cf::Tags => "tags",
            Cf::TagNames => "tag_names",
            Cf::Notifications => "notifications",
            Cf::Affinity => "affinity",
            Cf::FollowUps => "followups",
            Cf::SharedCounts => "shared_counts",
        }
    }

    /// Whether reads of this family are scans of one user's 8-byte prefix.
    pub(crate) fn prefix_scanned(self) -> bool {
        matches!(
            self,
            Cf::Outbox
                | Cf::Ranked
                | Cf::Following
                | Cf::Followers
                | Cf::Requests
                | Cf::Relations
                | Cf::Timeline
                | Cf::Likes
                | Cf::Comments
                | Cf::Threads
                | Cf::Tags
                | Cf::Notifications
                | Cf::Affinity
        )
    }
}
