//! Plain data of the feed: ids, users, posts, timeline entries and pages. No IO, no behaviour
//! beyond validation of what a caller may hand in.

use std::sync::Arc;

/// A user's id. Assigned by the engine, dense from 1; 0 is never a user.
pub type UserId = u64;

/// A post's id: time-ordered (Snowflake layout: milliseconds since the feedline epoch, node,
/// sequence), so a larger id is a later post.
pub type PostId = u64;

/// What a post carries; each kind has its own ranking boost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContentType {
    /// Text only.
    Text,
    /// A photo, possibly with a caption.
    Image,
    /// A video, possibly with a caption.
    Video,
}

impl ContentType {
    /// The byte stored for this type.
    pub fn to_byte(self) -> u8 {
        match self {
            ContentType::Text => 0,
            ContentType::Image => 1,
            ContentType::Video => 2,
        }
    }

    /// The type a stored byte names, if any.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(ContentType::Text),
            1 => Some(ContentType::Image),
            2 => Some(ContentType::Video),
            _ => None,
        }
    }
}

/// A user's profile with its counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// Unique handle: 1 to 32 characters of `a-z 0-9 _ .`.
    pub handle: String,
    /// Private accounts approve each follower; their posts reach approved followers only.
    pub private: bool,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Number of (approved) followers.
    pub followers: u64,
    /// Number of accounts this user follows.
    pub following: u64,
    /// Number of posts published and not deleted (expired stories included).
    pub posts: u64,
}

/// A post as stored and as returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    /// The post's id.
    pub id: PostId,
    /// Who published it.
    pub author: UserId,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Text, image or video.
    pub content_type: ContentType,
    /// Caption or body, UTF-8.
    pub text: String,
    /// References to media (URLs or blob keys), in order.
    pub media: Vec<String>,
    /// For ephemeral posts ("stories"): when the post disappears, ms since the Unix epoch.
    pub expires_at_ms: Option<u64>,
    /// The post's rank key (see [`crate::ranking`]), fixed at publish time.
    pub rank: u64,
    /// Whether fanout pushed this post into timelines (`false`: its author was over the
    /// celebrity threshold, so readers merge it at read time).
    pub pushed: bool,
    /// Where it was posted (a place name the client chose), if anywhere.
    pub location: Option<String>,
    /// Whether this is only the post's head: cluster mode keeps the body (text, media,
    /// location) of an older post only on its author's node, and every other node keeps the
    /// rest ([`crate::Engine::trim_bodies`]). A head's text and media are empty and its location
    /// is `None`; the author's node has them.
    pub trimmed: bool,
    /// A head's hashtags (its text is gone, and its tag postings must be found when it is
    /// deleted); empty for a whole post, whose [`Post::tags`] come from its text.
    pub head_tags: Vec<String>,
}

impl Post {
    /// The post without its body: what a node not holding the author keeps of an older post.
    pub fn head(&self) -> Post {
        Post {
            text: String::new(),
            media: Vec::new(),
            location: None,
            trimmed: true,
            head_tags: self.tags(),
            ..self.clone()
        }
    }

    /// Whether an ephemeral post has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|t| t <= now_ms)
    }

    /// The post's hashtags (parsed from its text; see [`crate::social::hashtags`]).
    pub fn tags(&self) -> Vec<String> {
        if self.trimmed {
            return self.head_tags.clone();
        }
        crate::social::hashtags(&self.text)
    }
}

/// What a caller hands to `publish`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NewPost {
    /// Text, image or video.
    pub content_type: ContentType,
    /// Caption or body.
    pub text: String,
    /// Media references; image and video posts need at least one.
    pub media: Vec<String>,
    /// Lifetime of an ephemeral post in milliseconds (`None`: permanent).
    pub ttl_ms: Option<u64>,
    /// Where it was posted: a place name, 1 to `max-location-bytes` bytes of printable text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl NewPost {
    /// A permanent text post.
    pub fn text(text: impl Into<String>) -> Self {
        NewPost {
            content_type: ContentType::Text,
            text: text.into(),
            media: Vec::new(),
            ttl_ms: None,
            location: None,
        }
    }
}

/// One entry of a precomputed timeline or an author's outbox: enough to order and filter it
/// without loading the post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The post's rank key: higher is shown first.
    pub rank: u64,
    /// The post.
    pub post: PostId,
    /// The post's author.
    pub author: UserId,
    /// Expiry of an ephemeral post (ms since the Unix epoch).
    pub expires_at_ms: Option<u64>,
}

impl Entry {
    /// The feed's order: rank descending, then post id descending.
    pub fn order_key(&self) -> (u64, PostId) {
        (self.rank, self.post)
    }
}

/// The state of `follower → followee` after a follow call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowState {
    /// The follow is in effect.
    Following,
    /// The followee is private; the request waits for approval.
    Requested,
}

/// Where a page's entries came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedPath {
    /// The reader's precomputed timeline only.
    Push,
    /// Pulled from followees' outboxes only (pull-mode reader, or a returning reader whose
    /// timeline is being rebuilt).
    Pull,
    /// Precomputed timeline merged with pulled celebrity posts.
    Mixed,
    /// Served from the hot layer.
    Cache,
    /// Trending recent posts, for a reader who follows nobody or asks for discovery.
    Discovery,
    /// Entries newer than the reader's read marker, oldest first.
    Unread,
}

impl FeedPath {
    /// A short label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedPath::Push => "push",
            FeedPath::Pull => "pull",
            FeedPath::Mixed => "mixed",
            FeedPath::Cache => "cache",
            FeedPath::Discovery => "discovery",
            FeedPath::Unread => "unread",
        }
    }
}

/// One item of a feed page.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedItem {
    /// The post, shared with the hot layer.
    pub post: Arc<Post>,
}

/// A page's items: a prefix of a shared list, so a page served from the hot layer is handed
/// out without copying its items (one reference count, not one per item). Dereferences to a
/// slice.
#[derive(Debug, Clone)]
pub struct Items {
    all: Arc<[FeedItem]>,
    len: usize,
}

impl Items {
    /// The first `n` items of `all` (all of them if fewer).
    pub fn prefix(all: Arc<[FeedItem]>, n: usize) -> Items {
        let len = n.min(all.len());
        Items { all, len }
    }
}

impl From<Vec<FeedItem>> for Items {
    fn from(v: Vec<FeedItem>) -> Items {
        let len = v.len();
        Items { all: v.into(), len }
    }
}

impl std::ops::Deref for Items {
    type Target = [FeedItem];
    fn deref(&self) -> &[FeedItem] {
        &self.all[..self.len]
    }
}

impl PartialEq for Items {
    fn eq(&self, other: &Items) -> bool {
        **self == **other
    }
}

/// A page of a feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedPage {
    /// Highest rank first.
    pub items: Items,
    /// Opaque cursor for the next page; `None` when the feed has no more entries.
    pub next_cursor: Option<String>,
    /// Which way the page was assembled. [`FeedPath::Discovery`] labels a discovery feed.
    pub path: FeedPath,
    /// Why the page may miss entries, when it may (the read budget ran out before every source
    /// was merged). `next_cursor` then points at the same position: asking again with it
    /// returns the page again, complete once the budget allows.
    pub partial: Option<String>,
}

/// A page of user ids (followers, following, pending requests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPage {
    /// Ascending by id.
    pub users: Vec<UserId>,
    /// Opaque cursor for the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// A page of an author's own posts, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct PostPage {
    /// Newest first.
    pub posts: Vec<Arc<Post>>,
    /// Opaque cursor for the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// Who is looking: the operator (admin tools, bulk load) sees everything; a user sees what the
/// graph lets them (private accounts, blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// The operator: no privacy check applies.
    Operator,
    /// A signed-in user.
    User(UserId),
}
