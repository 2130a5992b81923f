//! `feed-server`: parses flags and the optional TOML config, starts the server, and stops it
//! gracefully on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use feed_engine::PolicyKind;
use feed_server::Server;
use feed_server::config::ServerConfig;

/// feedline's gRPC server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML config file (kebab-case keys; flags override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// RocksDB data folder.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Prometheus /metrics address.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Disable the metrics exporter.
    #[arg(long)]
    no_metrics: bool,
    /// Fanout policy.
    #[arg(long, value_enum)]
    policy: Option<Policy>,
    /// Authors with at least this many followers are merged at read time, not pushed.
    #[arg(long)]
    celebrity_followers: Option<u64>,
    /// Entries kept per precomputed timeline.
    #[arg(long)]
    timeline_cap: Option<usize>,
    /// Requests per hour per authenticated user.
    #[arg(long)]
    user_requests_per_hour: Option<u32>,
    /// A file holding the token signing key, hex (every node of a cluster needs the same one).
    /// The key may also come from the FEEDLINE_SECRET_HEX environment variable or the config
    /// file; there is no flag that takes the key itself, since flags show in `ps`.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// TLS: this server's certificate chain (PEM); with --tls-key. Reloaded when the files change
    /// and on SIGHUP.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS: the certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// mTLS: CA certificates (PEM) that client certificates are verified against; admin calls and
    /// calls forwarded by other nodes must then present one.
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Serve the demo web page at / of the gRPC port (it calls the API over gRPC-Web).
    #[arg(long)]
    web: bool,
    /// Serve plaintext on a non-loopback address anyway (a trusted network only).
    #[arg(long)]
    allow_plaintext: bool,
    /// Cluster mode: NATS server URLs, comma-separated.
    #[arg(long, requires_all = ["node", "cluster_nodes"])]
    nats: Option<String>,
    /// Cluster mode: this node's name.
    #[arg(long)]
    node: Option<String>,
    /// Cluster mode: every node as name=host:port, comma-separated, the same on every node.
    #[arg(long)]
    cluster_nodes: Option<String>,
    /// Cluster mode: fixed partitions of the user space (default 32), set when the cluster is
    /// created; a node started with another count refuses to start.
    #[arg(long)]
    partitions: Option<u32>,
    /// Cluster mode: seconds between checkpoints, each followed by partition snapshots (0: none).
    #[arg(long)]
    checkpoint_interval_s: Option<u64>,
    /// Cluster mode: replicas of the event stream and buckets.
    #[arg(long)]
    replicas: Option<usize>,
    /// Cluster mode: ms without a liveness renewal before a node is declared down and its
    /// partitions are taken over (0: never).
    #[arg(long)]
    suspicion_ms: Option<u64>,
    /// Cluster mode: seconds the log keeps the events a down node has not applied (default
    /// 3600); past them, the node rebuilds from the newest checkpoint when it returns (0: the
    /// log keeps them until the node returns or is retired).
    #[arg(long)]
    down_node_retention_s: Option<u64>,
    /// Cluster mode: seconds after it was posted that every node keeps a post's body
    /// (default 604800, the pull window); past them, only the author's node keeps it and the
    /// others fetch it when a read needs it (0: every node keeps every body).
    #[arg(long)]
    body_window_s: Option<u64>,
    /// Cluster mode: MiB of memory for bodies fetched from their authors' nodes, so the next
    /// read of the same post needs no call (default 64; 0: none).
    #[arg(long, value_name = "MIB")]
    fetched_body_cache_mb: Option<u64>,
    /// Cluster mode: remove node NAME from the cluster for good, then exit (nothing else
    /// starts). NAME must be down already — drained by SIGTERM, or declared down — and may never
    /// start again; its partitions stay with the nodes holding them.
    #[arg(long, value_name = "NAME", requires = "nats")]
    retire_node: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Policy {
    SpecRule,
    CostBased,
    AlwaysPush,
    AlwaysPull,
}

fn config(args: &Args) -> anyhow::Result<ServerConfig> {
    let mut cfg: ServerConfig = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
        }
        None => ServerConfig::default(),
    };
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(d) = &args.data_dir {
        cfg.engine.data_dir = d.clone();
    }
    if let Some(m) = args.metrics_listen {
        cfg.metrics_listen = Some(m);
    }
    if args.no_metrics {
        cfg.metrics_listen = None;
    }
    if let Some(p) = args.policy {
        cfg.engine.policy.kind = match p {
            Policy::SpecRule => PolicyKind::SpecRule,
            Policy::CostBased => PolicyKind::CostBased,
            Policy::AlwaysPush => PolicyKind::AlwaysPush,
            Policy::AlwaysPull => PolicyKind::AlwaysPull,
        };
    }
    if let Some(c) = args.celebrity_followers {
        cfg.engine.celebrity_followers = c;
    }
    if let Some(c) = args.timeline_cap {
        cfg.engine.timeline_cap = c;
    }
    if let Some(r) = args.user_requests_per_hour {
        cfg.limits.user_requests_per_hour = r;
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let t = cfg.tls.get_or_insert_with(Default::default);
        t.cert_file = cert.clone();
        t.key_file = key.clone();
        if let Some(ca) = &args.tls_client_ca {
            t.client_ca_file = Some(ca.clone());
        }
    }
    if args.web {
        cfg.web.page = true;
    }
    if args.allow_plaintext {
        cfg.allow_plaintext = true;
    }
    if let Some(f) = &args.secret_file {
        cfg.auth.secret_file = Some(f.clone());
    } else if let Ok(k) = std::env::var("FEEDLINE_SECRET_HEX") {
        cfg.auth.secret_hex = k;
    }
    if let Some(n) = &args.nats {
        let c = cfg.cluster.get_or_insert_with(Default::default);
        c.nats = n.clone();
    }
    if let Some(c) = cfg.cluster.as_mut() {
        if let Some(n) = &args.node {
            c.node = n.clone();
        }
        if let Some(n) = &args.cluster_nodes {
            c.nodes = n.clone();
        }
        if let Some(p) = args.partitions {
            c.partitions = p;
        }
        if let Some(i) = args.checkpoint_interval_s {
            c.checkpoint_interval_s = i;
        }
        if let Some(r) = args.replicas {
            c.replicas = r;
        }
        if let Some(s) = args.suspicion_ms {
            c.suspicion_ms = s;
        }
        if let Some(s) = args.down_node_retention_s {
            c.down_node_retention_s = s;
        }
        if let Some(s) = args.body_window_s {
            c.body_window_s = s;
        }
        if let Some(m) = args.fetched_body_cache_mb {
            c.fetched_body_cache_mb = m;
        }
    }
    cfg.validate().map_err(anyhow::Error::msg)?;
    Ok(cfg)
}

/// Waits for SIGINT or SIGTERM, or for the cluster to say this node must restart (then returns
/// why); reloads the TLS files on each SIGHUP meanwhile.
async fn stop_signal(server: &Server) -> Option<String> {
    let restart = async {
        match server.cluster() {
            Some(c) => {
                let mut rx = c.must_restart();
                match rx.wait_for(Option::is_some).await {
                    Ok(why) => why.clone(),
                    Err(_) => std::future::pending().await,
                }
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        why = restart => why,
        () = stop_requested(server) => None,
    }
}

/// Waits for SIGINT or SIGTERM; reloads the TLS files on each SIGHUP meanwhile.
async fn stop_requested(server: &Server) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup())) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return,
                _ = term.recv() => return,
                _ = hup.recv() => match server.reload_tls() {
                    Ok(()) => tracing::info!("SIGHUP: TLS files reloaded"),
                    Err(e) => tracing::warn!(error = %e, "SIGHUP: TLS files not reloaded; the current ones stay"),
                },
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = server;
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr; stdout carries only the lines a person (or a harness) reads: where the
    // server listens, where its data lives, the dev-mode admin token.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    // Everything this process creates (RocksDB's tables and WAL, checkpoints, keys) is for its
    // owner's eyes only.
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    let args = Args::parse();
    let cfg = config(&args)?;
    if let Some(name) = &args.retire_node {
        let cluster = cfg
            .cluster
            .as_ref()
            .context("--retire-node needs the cluster's settings")?;
        match feed_server::cluster::retire_node(cluster, name).await {
            Ok(feed_server::cluster::Retirement::Retired { epoch }) => {
                println!("node {name} removed from the cluster for good (epoch {epoch}); it may not start again")
            }
            Ok(feed_server::cluster::Retirement::AlreadyRetired) => {
                println!("node {name} had already been removed from the cluster for good; nothing changed")
            }
            Err(e) => anyhow::bail!("node {name} not removed: {e}"),
        }
        return Ok(());
    }
    let data_dir = cfg.engine.data_dir.clone();
    let metrics = cfg.metrics_listen;
    let tls = cfg.tls.is_some();
    let web = cfg.web.page;
    let server = Server::start(cfg).await.context("starting feed-server")?;
    let scheme = if tls { "TLS" } else { "plaintext" };
    println!(
        "feed-server listening on {} (gRPC over {scheme}, health, reflection)",
        server.addr
    );
    println!("data in {}", data_dir.display());
    if let Some(c) = server.cluster() {
        println!(
            "cluster node {} of {} (map version {}), applied log sequence {}",
            c.name(),
            c.map().nodes.len(),
            c.map().version,
            c.applied_seq()
        );
    }
    if let Some(m) = metrics {
        println!("metrics at http://{m}/metrics");
    }
    if web {
        let scheme = if tls { "https" } else { "http" };
        println!("web page at {scheme}://{}/", server.addr);
    }
    if server.dev_mode {
        println!(
            "dev mode: signing key in {}; admin token:",
            data_dir.join("auth-secret").display()
        );
        println!("{}", server.admin_token);
    } else if server.cluster().is_some() {
        println!("admin token:");
        println!("{}", server.admin_token);
    }
    let restart = stop_signal(&server).await;
    println!("shutting down: draining requests and fanout");
    server.shutdown().await.context("shutting down")?;
    if let Some(why) = restart {
        anyhow::bail!("stopped to be restarted: {why}");
    }
    println!("stopped cleanly");
    Ok(())
}
