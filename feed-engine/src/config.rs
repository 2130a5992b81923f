//! Engine configuration: serde structs with units in their names, checked by `validate()`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::policy::FanoutPolicy;

/// Everything the engine can be tuned with. Deserialises from kebab-case TOML with defaults for
/// every field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct EngineConfig {
    /// Folder of the RocksDB database.
    pub data_dir: PathBuf,
    /// Node id folded into post ids (0..1024).
    pub node_id: u16,
    /// Cluster mode: fanout jobs the last run left pending wait for [`crate::Engine::resume_fanout`]
    /// (called once the owner filter and the two-hop sink are set) instead of running at open,
    /// where they would reach the wrong readers. Not configuration: the server sets it.
    #[serde(skip)]
    pub hold_pending_fanout: bool,
    /// Entries kept per precomputed timeline.
    pub timeline_cap: usize,
    /// A timeline is trimmed back to `timeline_cap` once it exceeds `cap × (1 + slack)`. A trim
    /// scans the whole timeline, so each delivery costs `(1 + slack) / slack` scanned entries:
    /// 11 at 0.1, 3 at the default 0.5 (for up to 50 % more stored entries between trims).
    pub trim_slack: f64,
    /// Authors with at least this many followers are never pushed; their posts are merged at read.
    pub celebrity_followers: u64,
    /// Pull window: only posts this recent are merged from outboxes.
    pub pull_window_ms: u64,
    /// Pull window: at most this many posts per followed author.
    pub pull_per_author: usize,
    /// Largest page a reader may ask for.
    pub max_page_size: usize,
    /// Text of a post, in bytes.
    pub max_text_bytes: usize,
    /// Media references per post.
    pub max_media: usize,
    /// Bytes of one media reference.
    pub max_media_ref_bytes: usize,
    /// Longest lifetime of an ephemeral post.
    pub max_ttl_ms: u64,
    /// Fanout jobs acknowledged but not yet delivered; beyond it publish answers `Overloaded`.
    /// Also the capacity of the workers' channel (allocated up front), so at most 1,000,000.
    pub fanout_queue_cap: usize,
    /// Fanout worker threads. 0 pauses fanout: jobs are recorded durably and run when the
    /// engine is next opened with workers (maintenance, tests of recovery).
    pub fanout_workers: usize,
    /// How much lower the fanout workers' CPU priority is than the rest of the process: a nice
    /// increment, 0..=19 (Linux; elsewhere ignored). Reads and publishes then get a busy core
    /// before fanout, whose bound (lag p99 < 500 ms) is 50× looser than a read's; under
    /// sustained overload the fanout backlog fills and publishes are refused, never reads.
    pub fanout_nice: i32,
    /// Timeline writes per RocksDB batch during fanout.
    pub fanout_batch: usize,
    /// Follower lists longer than this are delivered in parallel chunks (rayon).
    pub parallel_fanout_over: usize,
    /// Byte budget of the hot layer (first pages, outbox heads, follow lists).
    pub hot_bytes: usize,
    /// Entries of a reader's feed kept in the hot layer (pages up to this size are served from it).
    pub hot_page_entries: usize,
    /// RocksDB shared block cache.
    pub block_cache_bytes: usize,
    /// RocksDB memtable size per column family.
    pub write_buffer_bytes: usize,
    /// Recency halving period of the rank (see `ranking`). Fixed when the database is created.
    pub recency_halving_ms: u64,
    /// Time a read may spend merging pulled sources; past it the page is returned as partial,
    /// with a reason. Checked every 32 sources.
    pub read_budget_ms: u64,
    /// Unread entries (newer than the reader's read marker) a trim keeps past `timeline_cap`, at
    /// most; older unread entries are assembled from outboxes on read instead of stored.
    pub max_unread_kept: usize,
    /// Who gets pushed to.
    pub policy: FanoutPolicy,
    /// Posts kept as discovery candidates (trending recent posts).
    pub discovery_pool: usize,
    /// Reader states kept in memory (about 100 bytes each); past it the least recently read
    /// are dropped and load again from disk on their next read or delivery.
    pub reader_states_max: usize,
    /// Longest comment, in bytes.
    pub max_comment_bytes: usize,
    /// Hashtags one post may carry.
    pub max_tags: usize,
    /// Longest location name, in bytes.
    pub max_location_bytes: usize,
    /// Notifications kept per user; older ones are dropped.
    pub notifications_kept: usize,
    /// How ranked home feeds are scored (see [`RankerConfig`]).
    pub ranker: RankerConfig,
}

/// Which order a home feed is served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ranker {
    /// Newest first among the top candidates.
    Chronological,
    /// The stored rank fixed at publish time (reach × content boost × recency), deep paging,
    /// first pages from the hot layer: the default.
    #[default]
    Stored,
    /// The stored rank reranked by live engagement, its velocity, the reader's affinity to the
    /// author, and a diversity rule.
    Engagement,
}

/// The read-time rerank stage of ranked home feeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct RankerConfig {
    /// The ranker used when a request names none.
    pub default: Ranker,
    /// Candidates taken from the top of the feed and reranked (a few hundred).
    pub candidates: usize,
    /// Weight of `log2(1 + likes + 2 × comments)`, in units of recency halving periods.
    pub engagement_weight: f64,
    /// Weight of `log2(1 + heat)`: engagement decayed over `heat_halving_ms` (its velocity).
    pub velocity_weight: f64,
    /// Weight of `log2(1 + affinity)`: the reader's decayed likes and comments of the author.
    pub affinity_weight: f64,
    /// Engagement that is worth half as much after this long (velocity).
    pub heat_halving_ms: u64,
    /// A reader's affinity to an author that is worth half as much after this long.
    pub affinity_halving_ms: u64,
    /// Longest run of one author's posts in a ranked page.
    pub max_author_run: usize,
    /// How long a ranked reading session (what its cursor pins) is kept.
    pub session_ttl_ms: u64,
    /// Memory for ranked reading sessions.
    pub session_bytes: usize,
    /// Recent posts and tags whose engagement velocity is tracked in memory.
    pub trends_max: usize,
}

impl Default for RankerConfig {
    fn default() -> Self {
        RankerConfig {
            default: Ranker::Stored,
            candidates: 300,
            engagement_weight: 0.5,
            velocity_weight: 1.0,
            affinity_weight: 1.0,
            heat_halving_ms: 3_600_000,
            affinity_halving_ms: 7 * 86_400_000,
            max_author_run: 2,
            session_ttl_ms: 30 * 60_000,
            session_bytes: 64 << 20,
            trends_max: 1_000_000,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            data_dir: PathBuf::from("./data"),
            node_id: 0,
            hold_pending_fanout: false,
            timeline_cap: 1000,
            trim_slack: 0.5,
            celebrity_followers: 100_000,
            pull_window_ms: 7 * 86_400_000,
            pull_per_author: 10,
            max_page_size: 100,
            max_text_bytes: 4096,
            max_media: 10,
            max_media_ref_bytes: 512,
            max_ttl_ms: 7 * 86_400_000,
            fanout_queue_cap: 10_000,
            fanout_workers: 2,
            fanout_nice: 10,
            fanout_batch: 1024,
            parallel_fanout_over: 10_000,
            hot_bytes: 256 << 20,
            hot_page_entries: 50,
            block_cache_bytes: 256 << 20,
            write_buffer_bytes: 32 << 20,
            recency_halving_ms: 12 * 3_600_000,
            read_budget_ms: 100,
            max_unread_kept: 5000,
            policy: FanoutPolicy::default(),
            discovery_pool: 1000,
            reader_states_max: 1_000_000,
            max_comment_bytes: 2200,
            max_tags: 30,
            max_location_bytes: 100,
            notifications_kept: 500,
            ranker: RankerConfig::default(),
        }
    }
}

impl EngineConfig {
    /// A config for tests: `data_dir` set, small caches, every other field at its default.
    pub fn tmp(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            hot_bytes: 8 << 20,
            block_cache_bytes: 8 << 20,
            write_buffer_bytes: 4 << 20,
            ..Default::default()
        }
    }

    /// Checks every field's range; the message names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::invalid(format!("config: {m}")));
        if self.node_id >= 1024 {
            return bad("node-id must be below 1024");
        }
        if self.timeline_cap == 0 || self.timeline_cap > 1_000_000 {
            return bad("timeline-cap must be 1..=1000000");
        }
        if !(0.0..=10.0).contains(&self.trim_slack) {
            return bad("trim-slack must be within 0..=10");
        }
        if self.max_page_size == 0 || self.max_page_size > 1000 {
            return bad("max-page-size must be 1..=1000");
        }
        if self.pull_per_author == 0 {
            return bad("pull-per-author must be at least 1");
        }
        if self.fanout_queue_cap == 0
            || self.fanout_queue_cap > 1_000_000
            || self.fanout_batch == 0
            || self.fanout_workers > 256
        {
            return bad("fanout-queue-cap must be 1..=1000000, fanout-batch at least 1, fanout-workers at most 256");
        }
        if !(0..=19).contains(&self.fanout_nice) {
            return bad("fanout-nice must be 0..=19");
        }
        if self.max_text_bytes > u32::MAX as usize
            || self.max_media > 255
            || self.max_media_ref_bytes > u16::MAX as usize
        {
            return bad("max-text-bytes, max-media (≤255) or max-media-ref-bytes (≤65535) out of range");
        }
        if self.max_unread_kept > 1_000_000 {
            return bad("max-unread-kept must be at most 1000000");
        }
        if self.reader_states_max == 0 {
            return bad("reader-states-max must be at least 1");
        }
        if self.max_comment_bytes > u32::MAX as usize
            || self.max_location_bytes > u16::MAX as usize
            || self.notifications_kept == 0
            || self.notifications_kept > 100_000
        {
            return bad(
                "max-comment-bytes, max-location-bytes (≤65535) or notifications-kept (1..=100000) out of range",
            );
        }
        let r = &self.ranker;
        if r.candidates == 0 || r.candidates > 10_000 || r.max_author_run == 0 || r.trends_max == 0 {
            return bad("ranker candidates must be 1..=10000, max-author-run and trends-max at least 1");
        }
        if r.heat_halving_ms == 0 || r.affinity_halving_ms == 0 {
            return bad("ranker halving periods must be positive");
        }
        if [r.engagement_weight, r.velocity_weight, r.affinity_weight]
            .iter()
            .any(|w| !w.is_finite() || *w < 0.0 || *w > 100.0)
        {
            return bad("ranker weights must be within 0..=100");
        }
        if self.recency_halving_ms == 0 {
            return bad("recency-halving-ms must be positive");
        }
        if self.hot_page_entries > self.max_page_size.max(1) * 10 {
            return bad("hot-page-entries must be at most 10 × max-page-size");
        }
        Ok(())
    }
}
