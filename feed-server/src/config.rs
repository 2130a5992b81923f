//! Server configuration: an optional TOML file, overridden by command-line flags, checked by
//! `validate()` before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;

use feed_engine::EngineConfig;
use serde::{Deserialize, Serialize};

/// Everything the server can be configured with (kebab-case TOML; every field has a default).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ServerConfig {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Prometheus `/metrics` listen address; none disables the exporter.
    pub metrics_listen: Option<SocketAddr>,
    /// Token signing and lifetimes.
    pub auth: AuthConfig,
    /// Rate limits, sizes and concurrency.
    pub limits: LimitsConfig,
    /// How long a graceful shutdown waits for in-flight fanout.
    pub drain_timeout_ms: u64,
    /// The engine (its `data-dir` is where RocksDB lives).
    pub engine: EngineConfig,
    /// Cluster mode (none: a single node on its own RocksDB, no NATS).
    pub cluster: Option<ClusterConfig>,
}

/// Cluster mode: this node, the map of all nodes, and the NATS JetStream cluster they share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ClusterConfig {
    /// NATS server URLs, comma-separated (`nats://127.0.0.1:4222,…`).
    pub nats: String,
    /// This node's name in the map.
    pub node: String,
    /// The map: `name=host:port,…` — the same on every node, in the same order.
    pub nodes: String,
    /// Ring points per node.
    pub vnodes: u32,
    /// Replicas of the event stream, the map bucket and the checkpoint bucket.
    pub replicas: usize,
    /// Name of the event stream.
    pub stream: String,
    /// Seconds between checkpoints (0: none); the stream keeps 4 intervals (at least an hour).
    pub checkpoint_interval_s: u64,
    /// Deadline of a call forwarded to another node; below `limits.request-timeout-ms` (the
    /// owner answers a write within 80 % of that).
    pub forward_timeout_ms: u64,
    /// How long a write waits for the log's ack plus this node's apply before answering.
    pub apply_timeout_ms: u64,
    /// Consecutive failures that open a peer's circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker fails calls fast before one probe goes through.
    pub breaker_open_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats: "nats://127.0.0.1:4222".into(),
            node: String::new(),
            nodes: String::new(),
            vnodes: 64,
            replicas: 3,
            stream: "FEEDLINE".into(),
            checkpoint_interval_s: 600,
            forward_timeout_ms: 4_500,
            apply_timeout_ms: 10_000,
            breaker_failures: 3,
            breaker_open_ms: 1_000,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            drain_timeout_ms: 10_000,
            engine: EngineConfig::default(),
            cluster: None,
        }
    }
}

/// Token signing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct AuthConfig {
    /// HMAC-SHA256 key, hex. Empty: dev mode — a key is generated at first start and kept in
    /// `<data-dir>/auth-secret`, and the admin token is printed.
    pub secret_hex: String,
    /// Lifetime of tokens that CreateUser and IssueToken hand out.
    pub user_token_ttl_s: u64,
    /// Lifetime of the admin token printed at start.
    pub admin_token_ttl_s: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            secret_hex: String::new(),
            user_token_ttl_s: 30 * 86_400,
            admin_token_ttl_s: 365 * 86_400,
        }
    }
}

/// Limits that keep one caller or an overload from taking the server down.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct LimitsConfig {
    /// Requests per hour per authenticated user (admin tokens are exempt).
    pub user_requests_per_hour: u32,
    /// Unauthenticated requests (CreateUser) per hour per client address.
    pub anonymous_requests_per_hour: u32,
    /// Largest request message.
    pub max_message_bytes: usize,
    /// Requests handled at once; beyond it calls fail fast with RESOURCE_EXHAUSTED.
    pub max_in_flight: usize,
    /// Upper bound of any request's duration (a client's shorter grpc-timeout wins).
    pub request_timeout_ms: u64,
    /// Reads in one GetHomeFeeds call.
    pub max_batch_reads: usize,
    /// Events buffered per feed subscriber before it is told to resync.
    pub subscriber_buffer: usize,
    /// Concurrent feed subscriptions.
    pub max_subscribers: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            user_requests_per_hour: 1000,
            anonymous_requests_per_hour: 100,
            max_message_bytes: 256 * 1024,
            max_in_flight: 4096,
            request_timeout_ms: 5_000,
            max_batch_reads: 1024,
            subscriber_buffer: 256,
            max_subscribers: 10_000,
        }
    }
}

impl ServerConfig {
    /// A config for tests: ephemeral port on 127.0.0.1, no metrics exporter, a fixed secret,
    /// generous rate limits, the engine's test config.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_listen: None,
            auth: AuthConfig {
                secret_hex: "00112233445566778899aabbccddeeff".into(),
                ..Default::default()
            },
            limits: LimitsConfig {
                user_requests_per_hour: 1_000_000,
                anonymous_requests_per_hour: 1_000_000,
                ..Default::default()
            },
            drain_timeout_ms: 10_000,
            engine: EngineConfig::tmp(data_dir),
            cluster: None,
        }
    }

    /// Checks ranges; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        self.engine.validate().map_err(|e| e.to_string())?;
        let l = &self.limits;
        if l.user_requests_per_hour == 0 || l.anonymous_requests_per_hour == 0 {
            return Err("limits: requests-per-hour must be at least 1".into());
        }
        if l.max_message_bytes < 1024 || l.max_in_flight == 0 || l.max_batch_reads == 0 {
            return Err("limits: max-message-bytes ≥ 1024, max-in-flight and max-batch-reads ≥ 1".into());
        }
        if l.subscriber_buffer == 0 || l.request_timeout_ms == 0 {
            return Err("limits: subscriber-buffer and request-timeout-ms must be positive".into());
        }
        if !self.auth.secret_hex.is_empty() {
            let k = hex::decode(&self.auth.secret_hex).map_err(|_| "auth: secret-hex is not hex".to_string())?;
            if k.len() < 16 {
                return Err("auth: secret-hex must be at least 16 bytes".into());
            }
        }
        if let Some(c) = &self.cluster {
            if self.auth.secret_hex.is_empty() {
                return Err("cluster: every node must share auth.secret-hex (no dev-mode key)".into());
            }
            if c.node.is_empty() || c.nodes.is_empty() {
                return Err("cluster: node and nodes are required".into());
            }
            if !(1..=5).contains(&c.replicas) {
                return Err("cluster: replicas must be 1..=5".into());
            }
            if c.forward_timeout_ms >= self.limits.request_timeout_ms {
                return Err("cluster: forward-timeout-ms must be below limits.request-timeout-ms".into());
            }
            if c.forward_timeout_ms == 0 || c.apply_timeout_ms == 0 || c.breaker_failures == 0 {
                return Err(
                    "cluster: forward-timeout-ms, apply-timeout-ms and breaker-failures must be positive".into(),
                );
            }
        }
        Ok(())
    }
}
