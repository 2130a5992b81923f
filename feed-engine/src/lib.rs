//! # feed-engine
//!
//! feedline's engine: users and the follow graph, posts, ranking and hybrid push/pull feed
//! assembly over RocksDB. Synchronous and usable without an async runtime; the server wraps it.
//!
//! # Layout
//! - [`model`]: plain data — ids, users, posts, timeline entries, pages.
//! - [`ranking`]: the time-monotonic rank key that orders every feed.
//! - [`codec`]: order-preserving keys, versioned records, opaque cursors.
//! - [`policy`]: reader activity, its classes, and who gets pushed to.
//! - [`assembly`]: the pure merge of timeline and pulled candidates into feed order.
//! - [`store`]: the only module that imports `rocksdb`: column families and batches.
//! - [`tables`]: typed tables over the store for the rank-ordered entry families.
//! - [`hot`]: the byte-bounded hot layer, kept in step by writers.
//! - `fanout` (private): the worker pool that takes durable jobs and hands their readers to the
//!   timelines (the one writer of stored timelines).
//! - [`Engine`]: the API — users, graph, posts, feeds — over all of the above.
//! - [`write`](mod@write): the context every write runs in (time, minted id, durability) — the clock's on
//!   one node, a log event's in a cluster.
//! - [`config`], [`clock`], [`metrics`], [`error`]: knobs, time, metric names, the error type.
//!
//! # Quick start
//!
//! The engine is a library: open a data folder, and call it. No server, no async runtime.
//!
//! ```
//! use feed_engine::{Engine, EngineConfig, FeedPath, NewPost};
//!
//! # fn main() -> feed_engine::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! // `EngineConfig::default()` is the production config; `tmp` keeps caches small.
//! let engine = Engine::open(EngineConfig::tmp(dir.path().join("feeds")))?;
//! let ada = engine.create_user("ada", false)?;
//! let bob = engine.create_user("bob", false)?;
//! engine.follow(bob.id, ada.id)?;
//!
//! // Durable (fsynced) when it returns; fanout to followers runs in the background.
//! let post = engine.publish(ada.id, NewPost::text("hello, feed"))?;
//! engine.wait_idle(std::time::Duration::from_secs(5));
//!
//! let page = engine.home_feed(bob.id, 20, None)?;
//! assert_eq!(page.items[0].post.id, post.id);
//! assert_eq!(page.items[0].post.text, "hello, feed");
//! assert_ne!(page.path, FeedPath::Discovery);
//! // `page.next_cursor` asks for the next page; `None` at the end.
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod assembly;
pub mod clock;
pub mod codec;
pub mod config;
mod engine;
pub mod error;
mod fanout;
pub mod followup;
pub mod hot;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod ranking;
pub mod social;
pub mod store;
pub mod tables;
pub mod write;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{EngineConfig, Ranker, RankerConfig};
pub use engine::{
    Engine, FanoutKind, FeedListener, LikeTicket, MemoryUse, NotificationListener, OPERATOR_TOKENS, Outgoing,
    PartitionSnapshot, RemoteFanout, Trimmed, Writer, post_time_ms,
};
pub use error::{Error, Result};
pub use followup::{
    AffinityItem, CommentCountItem, FollowUp, FollowUpKey, GraphHalf, GraphItem, LikeCountItem, ReplyItem,
};
pub use model::*;
pub use policy::{FanoutPolicy, PolicyKind};
pub use social::{
    Comment, CommentId, CommentPage, Decayed, Engagement, Notification, NotificationGroup, NotificationKind,
    NotificationPage, RankedItem, RankedPage, ScoreParts, TagCount, TagTrend,
};
pub use write::WriteCtx;
