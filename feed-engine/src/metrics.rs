//! Names of the metrics the engine records through the `metrics` facade (exported by the server),
//! and the read path's counters, registered once.

use std::time::Instant;

use crate::model::FeedPath;

/// Counter: fanout jobs accepted, by kind (`deliver`, `retract`, `rebuild`).
pub const FANOUT_JOBS: &str = "feedline_fanout_jobs_total";
/// Gauge: fanout jobs accepted and not yet done.
pub const FANOUT_QUEUE_DEPTH: &str = "feedline_fanout_queue_depth";
/// Counter: timeline entries written by fanout, follow merges and rebuilds.
pub const DELIVERIES: &str = "feedline_deliveries_total";
/// Counter: per-reader policy decisions during fanout, by `mode` and `reason`.
pub const POLICY_DECISIONS: &str = "feedline_policy_decisions_total";
/// Histogram: seconds from publish ack to the end of a post's fanout.
pub const FANOUT_SECONDS: &str = "feedline_fanout_seconds";
/// Counter: timeline trims (tail past the cap deleted).
pub const TRIMS: &str = "feedline_trims_total";
/// Counter: feed reads, by `path` (push, pull, mixed, cache, discovery).
pub const READS: &str = "feedline_feed_reads_total";
/// Histogram: seconds per feed read, by `path`.
pub const READ_SECONDS: &str = "feedline_feed_read_seconds";
/// Counter: hot-layer lookups, by `cache` and `outcome` (hit, miss).
pub const CACHE_LOOKUPS: &str = "feedline_cache_lookups_total";
/// Counter: bytes evicted from the hot layer, by `cache`.
pub const CACHE_EVICTED_BYTES: &str = "feedline_cache_evicted_bytes_total";
/// Counter: publishes acknowledged (in a cluster: applied by the author's node, which fans them out).
pub const PUBLISHES: &str = "feedline_publishes_total";
/// Counter: cluster mode, other nodes' posts applied here as heads (the post and its read-model
/// entries, no fanout job).
pub const POST_HEADS: &str = "feedline_post_heads_total";
/// Counter: post bodies this node replaced by their heads (cluster mode: authors held elsewhere).
pub const BODIES_TRIMMED: &str = "feedline_post_bodies_trimmed_total";
/// Counter: post bodies put back over their heads from a partition snapshot (a takeover).
pub const BODIES_FILLED: &str = "feedline_post_bodies_filled_total";
/// Counter: post bodies fetched from their authors' nodes for reads of heads (cluster mode).
pub const BODIES_FETCHED: &str = "feedline_post_bodies_fetched_total";
/// Counter: requests refused because a bound was reached, by `what`.
pub const OVERLOADED: &str = "feedline_overloaded_total";
/// Counter: timeline rebuilds of returning readers.
pub const REBUILDS: &str = "feedline_rebuilds_total";
/// Counter: reader states dropped from memory past `reader-states-max` (they load again on use).
pub const READER_EVICTIONS: &str = "feedline_reader_evictions_total";
/// Counter: feed pages returned partial (read budget spent before every source was merged).
pub const PARTIAL_PAGES: &str = "feedline_partial_pages_total";
/// Counter (cluster mode): calls forwarded to the owner node, by `peer` and `result`.
pub const FORWARDS: &str = "feedline_cluster_forwards_total";
/// Gauge (cluster mode): the last log sequence this node has applied.
pub const APPLIED_SEQ: &str = "feedline_cluster_applied_seq";
/// Gauge (cluster mode): the placement epoch this node has applied (bumped when a node is
/// declared down, returns, joins or is retired).
pub const EPOCH: &str = "feedline_cluster_epoch";
/// Gauge (cluster mode): the partitions this node answers for now (held and taken over).
pub const PARTITIONS_SERVED: &str = "feedline_cluster_partitions_served";
/// Counter (cluster mode): readers of two-hop fanout batches, by `dir` (`sent` by the author's
/// node, `applied` by the reader's node).
pub const REMOTE_FANOUT_READERS: &str = "feedline_fanout_remote_readers_total";
/// Counter (cluster mode): follow-ups sent through the log by the node that decided their
/// change, by `kind` (`user`: affinity and reply notifications; `count`: like and comment counts;
/// `graph`: the other user's half of a follow, unfollow or approval, and catch-up merges).
pub const FOLLOWUPS_SENT: &str = "feedline_followups_sent_total";
/// Counter (cluster mode): follow-ups applied, by `kind` (as sent); one already
/// applied (sent twice) is not counted.
pub const FOLLOWUPS_APPLIED: &str = "feedline_followups_applied_total";
/// Counter: follower lists walked to fan a post out or retract it (a cluster walks each once).
pub const AUDIENCE_WALKS: &str = "feedline_fanout_audience_walks_total";
/// Counter (cluster mode): log events applied, by `outcome` (ok, refused, skipped).
pub const EVENTS_APPLIED: &str = "feedline_cluster_events_applied_total";
/// Histogram (cluster mode): seconds from appending a write to the log to its local apply.
pub const APPLY_WAIT_SECONDS: &str = "feedline_cluster_apply_wait_seconds";
/// Histogram (cluster mode): seconds a list or profile read waited for its user's partition's
/// newest event to be applied here (one last-message lookup, then the wait), by `outcome`
/// (applied, timeout, unread: the lookup failed).
pub const SETTLE_SECONDS: &str = "feedline_cluster_settle_seconds";
/// Counter (cluster mode): last-message lookups on the log for list and profile reads' settle;
/// concurrent reads of one partition share them, so under load there are fewer than reads.
pub const SETTLE_LOOKUPS: &str = "feedline_cluster_settle_lookups_total";
/// Counter (cluster mode): readers whose stored timelines and records a node forgot, by `why`:
/// `taken` (a partition taken over: what it kept from an earlier hold), `given` (a partition
/// given away: nothing would read them before it is taken again, which forgets them anyway).
pub const READERS_FORGOTTEN: &str = "feedline_readers_forgotten_total";
/// Counter (cluster mode): checkpoints uploaded to the object store.
pub const CHECKPOINTS: &str = "feedline_cluster_checkpoints_total";
/// Counter (cluster mode): partition snapshots uploaded to the object store.
pub const PARTITION_SNAPSHOTS: &str = "feedline_cluster_partition_snapshots_total";
/// Counter (cluster mode): partition snapshots restored by a node taking a partition over.
pub const PARTITIONS_RESTORED: &str = "feedline_cluster_partitions_restored_total";
/// Counter (cluster mode): partitions whose older events were dropped from the log, once a
/// snapshot of each covered them (label `partition`-less; one per purge).
pub const LOG_PURGES: &str = "feedline_cluster_log_purges_total";
/// Counter: notifications written (and told to the live listener).
pub const NOTIFICATIONS: &str = "feedline_notifications_total";
/// Counter: likes and comments written, by `kind` (like, comment).
pub const ENGAGEMENTS: &str = "feedline_engagements_total";
/// Histogram: likes and unlikes the like committer took into one batch (one fsync).
pub const LIKE_BATCH: &str = "feedline_like_batch_size";
/// Counter: ranked reading sessions started, by `ranker`.
pub const RANKED_SESSIONS: &str = "feedline_ranked_sessions_total";
/// Counter: resets of the in-memory engagement velocity (past `trends-max` entries).
pub const TREND_RESETS: &str = "feedline_trend_resets_total";

/// Every read path, in `FeedPath`'s declaration order (`path as usize` indexes it).
const PATHS: [FeedPath; 6] = [
    FeedPath::Push,
    FeedPath::Pull,
    FeedPath::Mixed,
    FeedPath::Cache,
    FeedPath::Discovery,
    FeedPath::Unread,
];

/// Read counters and latency histograms per path, registered once at open (a `counter!` per
/// read built and hashed its key every time: 5 % of a hot read).
pub(crate) struct ReadMetrics {
    by_path: Vec<(metrics::Counter, metrics::Histogram)>,
}

impl ReadMetrics {
    pub fn new() -> Self {
        ReadMetrics {
            by_path: PATHS
                .iter()
                .map(|p| {
                    (
                        metrics::counter!(READS, "path" => p.as_str()),
                        metrics::histogram!(READ_SECONDS, "path" => p.as_str()),
                    )
                })
                .collect(),
        }
    }

    /// Counts a read served by `path` that started at `t0`.
    pub fn record(&self, path: FeedPath, t0: Instant) {
        if let Some((c, h)) = self.by_path.get(path as usize) {
            c.increment(1);
            h.record(t0.elapsed().as_secs_f64());
        }
    }
}
