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
    /// TLS on the gRPC port and for calls to other nodes (none: plaintext).
    pub tls: Option<crate::tls::TlsConfig>,
    /// Browsers: gRPC-Web's CORS policy and the demo page.
    pub web: crate::web::WebConfig,
    /// Serve plaintext on a non-loopback address (or to non-loopback peers and NATS servers)
    /// anyway. Off: such a config is refused, since tokens and posts would cross the network in
    /// the clear.
    pub allow_plaintext: bool,
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
    /// Ring points per node (the ring places partitions on nodes).
    pub vnodes: u32,
    /// Fixed partitions of the user space: a user's partition is a stable hash of their id, and
    /// whole partitions are placed on nodes. Set when the cluster is created, never changed.
    pub partitions: u32,
    /// Replicas of the event stream, the map bucket and the checkpoint bucket.
    pub replicas: usize,
    /// Name of the event stream.
    pub stream: String,
    /// CA certificates (PEM) the NATS servers' certificates are verified against. Set: the NATS
    /// connection requires TLS.
    pub nats_ca_file: Option<PathBuf>,
    /// This node's client certificate (PEM) for NATS servers that verify clients.
    pub nats_cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub nats_key_file: Option<PathBuf>,
    /// NATS user name (with `nats-password-file`).
    pub nats_user: String,
    /// A file holding the NATS password (never a flag: it would show in `ps`).
    pub nats_password_file: Option<PathBuf>,
    /// Seconds between checkpoints, each followed by snapshots of the partitions the node keeps
    /// (0: none; then no partition's events are ever dropped from the log; see ARCHITECTURE.md,
    /// "Catch-up, checkpoints, rebuild").
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
    /// Failover: a node whose liveness record has not changed for this long is declared down
    /// and its partitions are taken over by the others (0: never). A node stops answering for
    /// its partitions once its own record has gone unrenewed for half of it (its lease).
    pub suspicion_ms: u64,
    /// How long the log keeps the events a down node (not retired) has not applied: past it,
    /// the node no longer holds back the log's drops, and it rebuilds its database from the
    /// newest checkpoint when it returns (0: keep them until it returns or is retired).
    pub down_node_retention_s: u64,
    /// How long after it was posted every node keeps a post's body (text, media, location);
    /// past it, a node not holding the author's partition keeps only the post's head and
    /// fetches the body from the author's node when a read needs it (0: every node keeps
    /// every body). Default: 7 days, the pull window.
    pub body_window_s: u64,
    /// Memory for the bodies a node fetched from their authors' nodes, kept (newest used
    /// first) so the next read of the same post needs no call, and is whole while that node is
    /// down (0: none). Default: 64 MiB.
    pub fetched_body_cache_mb: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats: "nats://127.0.0.1:4222".into(),
            node: String::new(),
            nodes: String::new(),
            vnodes: 64,
            partitions: 32,
            replicas: 3,
            stream: "FEEDLINE".into(),
            nats_ca_file: None,
            nats_cert_file: None,
            nats_key_file: None,
            nats_user: String::new(),
            nats_password_file: None,
            checkpoint_interval_s: 600,
            forward_timeout_ms: 4_500,
            apply_timeout_ms: 10_000,
            breaker_failures: 3,
            breaker_open_ms: 1_000,
            suspicion_ms: 10_000,
            down_node_retention_s: 3_600,
            body_window_s: 7 * 24 * 3_600,
            fetched_body_cache_mb: 64,
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
            tls: None,
            web: Default::default(),
            allow_plaintext: false,
        }
    }
}

/// Token signing. The key comes from a file, the `FEEDLINE_SECRET_HEX` environment variable or
/// this config file — never a command-line flag, which any local user could read in `ps`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct AuthConfig {
    /// HMAC-SHA256 key, hex. Empty (and no `secret-file`): dev mode — a key is generated at first
    /// start and kept in `<data-dir>/auth-secret`, and an admin token is printed.
    pub secret_hex: String,
    /// A file holding the hex key (wins over `secret-hex`).
    pub secret_file: Option<PathBuf>,
    /// The key being rotated out, hex: tokens it signed keep working until
    /// `previous-secret-valid-until-s`. Empty: none.
    pub previous_secret_hex: String,
    /// A file holding the previous hex key (wins over `previous-secret-hex`).
    pub previous_secret_file: Option<PathBuf>,
    /// End of the rotation's grace period, Unix seconds.
    pub previous_secret_valid_until_s: u64,
    /// Lifetime of tokens that CreateUser hands out (and IssueToken by default).
    pub user_token_ttl_s: u64,
    /// Longest lifetime IssueToken grants.
    pub max_token_ttl_s: u64,
    /// Lifetime of the admin token printed at start.
    pub admin_token_ttl_s: u64,
    /// Failed authentications per minute from one address before it is refused for a minute.
    pub failed_auth_per_minute: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            secret_hex: String::new(),
            secret_file: None,
            previous_secret_hex: String::new(),
            previous_secret_file: None,
            previous_secret_valid_until_s: 0,
            user_token_ttl_s: 7 * 86_400,
            max_token_ttl_s: 30 * 86_400,
            admin_token_ttl_s: 86_400,
            failed_auth_per_minute: 30,
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
    /// Concurrent feed subscriptions of one user.
    pub max_subscriptions_per_user: usize,
    /// A subscription ends after this long (the client re-subscribes), so none is held forever.
    pub subscription_lifetime_s: u64,
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
            max_subscriptions_per_user: 4,
            subscription_lifetime_s: 3_600,
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
                failed_auth_per_minute: 10_000,
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
            tls: None,
            web: Default::default(),
            allow_plaintext: false,
        }
    }

    /// Refuses plaintext off this machine unless `allow-plaintext` says the operator means it.
    fn check_plaintext(&self) -> Result<(), String> {
        if self.allow_plaintext {
            return Ok(());
        }
        let why = "tokens and posts would cross the network in the clear: configure TLS, or set \
                   allow-plaintext (--allow-plaintext) if this network is trusted";
        if self.tls.is_none() && !self.listen.ip().is_loopback() {
            return Err(format!("plaintext gRPC on {} is refused: {why}", self.listen));
        }
        if let Some(c) = &self.cluster {
            let off_host = |hostport: &str| {
                let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
                !crate::tls::is_loopback_host(host)
            };
            if self.tls.is_none() {
                for spec in c.nodes.split(',') {
                    let addr = spec.split_once('=').map_or(spec, |(_, a)| a).trim();
                    if off_host(addr) {
                        return Err(format!("plaintext calls to node {addr} are refused: {why}"));
                    }
                }
            }
            if c.nats_ca_file.is_none() {
                for url in c.nats.split(',') {
                    let hostport = url.trim().split("://").last().unwrap_or_default();
                    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
                    if off_host(hostport) {
                        return Err(format!("plaintext NATS at {url} is refused: {why}"));
                    }
                }
            }
        }
        Ok(())
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
        if l.max_subscriptions_per_user == 0 || l.subscription_lifetime_s == 0 {
            return Err("limits: max-subscriptions-per-user and subscription-lifetime-s must be positive".into());
        }
        let a = &self.auth;
        if a.user_token_ttl_s == 0 || a.user_token_ttl_s > a.max_token_ttl_s || a.admin_token_ttl_s == 0 {
            return Err("auth: user-token-ttl-s must be 1..=max-token-ttl-s, admin-token-ttl-s positive".into());
        }
        if a.failed_auth_per_minute == 0 {
            return Err("auth: failed-auth-per-minute must be at least 1".into());
        }
        if !self.auth.secret_hex.is_empty() {
            let k = hex::decode(&self.auth.secret_hex).map_err(|_| "auth: secret-hex is not hex".to_string())?;
            if k.len() < 16 {
                return Err("auth: secret-hex must be at least 16 bytes".into());
            }
        }
        self.check_plaintext()?;
        if let Some(c) = &self.cluster {
            if self.auth.secret_hex.is_empty() && self.auth.secret_file.is_none() {
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
