//! Names of the metrics the engine records through the `metrics` facade (exported by the server).

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
/// Counter: publishes acknowledged.
pub const PUBLISHES: &str = "feedline_publishes_total";
/// Counter: requests refused because a bound was reached, by `what`.
pub const OVERLOADED: &str = "feedline_overloaded_total";
/// Counter: timeline rebuilds of returning readers.
pub const REBUILDS: &str = "feedline_rebuilds_total";
/// Counter: feed pages returned partial (read budget spent before every source was merged).
pub const PARTIAL_PAGES: &str = "feedline_partial_pages_total";
