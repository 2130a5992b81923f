//! Cluster mode: N feed nodes over a NATS JetStream cluster. Every write is an event appended to
//! one replicated stream (file storage, R3), on a subject of its user's partition, and
//! acknowledged to the client once a quorum of NATS servers has it and this node has applied it.
//! Profiles, the graph, posts and engagement are replicated: every node applies those events in
//! log order (state-machine replication), so they are a full read model on each node. A
//! partition's own state — its readers' timelines, read markers, notification markers and view
//! affinity — is applied only by the partition's owner, and fanout is two-hop: the author's
//! node walks the follower list once and appends one batch per reader partition, applied by that
//! partition's owner. Reads and writes for a user go to the user's owner.
//!
//! - [`ring`]: the cluster map, fixed partitions and their placement.
//! - [`fanout`]: two-hop fanout batches through the log.
//! - [`ryw`]: read-your-writes on the node a client called.
//! - [`peers`]: forwarding to the owner with deadlines and circuit breakers.
//! - [`checkpoint`]: RocksDB checkpoints in a JetStream object store, and restore.

mod apply;
mod batch;
pub mod checkpoint;
pub mod fanout;
mod log;
pub mod peers;
pub mod ring;
pub mod ryw;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, stream};
use dashmap::DashMap;
use feed_engine::{Engine, UserId};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::Status;

use crate::config::ClusterConfig;
use crate::ops::{Op, Outcome};
use peers::{Breaker, FORWARDED, Peer};
use ring::{ClusterMap, Ring};

/// The log's subjects, all in one stream: a partition's replicated events
/// (`feedline.r.<partition>`, applied by every node), its own events (`feedline.o.<p>.ev`) and
/// the fanout batches for its readers (`feedline.o.<p>.fan`), both applied only by its owner.
pub mod subjects {
    /// What the stream holds.
    pub fn all() -> Vec<String> {
        vec!["feedline.r.>".into(), "feedline.o.>".into()]
    }
    /// Events of partition `p` every node applies.
    pub fn replicated(p: u32) -> String {
        format!("feedline.r.{p}")
    }
    /// Events of partition `p` only its owner applies.
    pub fn owned(p: u32) -> String {
        format!("feedline.o.{p}.ev")
    }
    /// Fanout batches for readers of partition `p`.
    pub fn fanout(p: u32) -> String {
        format!("feedline.o.{p}.fan")
    }
    /// What the owner of `partitions` consumes.
    pub fn consumed_by_owner_of(partitions: &[u32]) -> Vec<String> {
        let mut v = vec!["feedline.r.>".to_string()];
        v.extend(partitions.iter().map(|p| format!("feedline.o.{p}.>")));
        v
    }
    /// Whether a message on `subject` is a fanout batch.
    pub fn is_fanout(subject: &str) -> bool {
        subject.ends_with(".fan")
    }
}
/// KV bucket holding the cluster map.
const MAP_BUCKET: &str = "feedline-cluster";
/// Events applied per RocksDB sync and consumer ack, at most.
const APPLY_BATCH: usize = 256;

/// One write in the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Node that appended it (and waits for its result).
    pub origin: String,
    /// The origin's request number (with `origin`, the message id the log dedupes on).
    pub req: u64,
    /// When it was accepted, ms since the Unix epoch: the time every node applies it at.
    pub at_ms: u64,
    /// Id minted for it (new user or post).
    pub id: Option<u64>,
    /// The write.
    pub op: Op,
}

type Waiter = oneshot::Sender<feed_engine::Result<Outcome>>;

/// A node's view of the cluster, and its log client.
pub struct Cluster {
    /// The map all nodes agreed on.
    pub map: ClusterMap,
    ring: Ring,
    me: usize,
    peers: Vec<Option<Peer>>,
    cfg: ClusterConfig,
    js: jetstream::Context,
    engine: Engine,
    waiters: Arc<DashMap<u64, Waiter>>,
    next_req: AtomicU64,
    next_user: AtomicU64,
    applied: watch::Receiver<u64>,
    /// Messages applied since start.
    applied_count: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    tasks: parking_lot::Mutex<Vec<JoinHandle<()>>>,
}

/// Cluster mode after connecting to NATS and agreeing on the map, before the engine opens.
pub struct Connected {
    map: ClusterMap,
    me: usize,
    cfg: ClusterConfig,
    js: jetstream::Context,
    peer_tls: Option<tonic::transport::ClientTlsConfig>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// NATS connection options: TLS (verifying the servers against `nats-ca-file`, presenting this
/// node's certificate when one is set) and user/password credentials when configured.
fn nats_options(cfg: &ClusterConfig) -> Result<async_nats::ConnectOptions, String> {
    let mut o = async_nats::ConnectOptions::new().name(format!("feedline-{}", cfg.node));
    if let Some(ca) = &cfg.nats_ca_file {
        o = o.require_tls(true).add_root_certificates(ca.clone());
    }
    match (&cfg.nats_cert_file, &cfg.nats_key_file) {
        (Some(c), Some(k)) => o = o.add_client_certificate(c.clone(), k.clone()),
        (None, None) => {}
        _ => return Err("nats-cert-file and nats-key-file go together".into()),
    }
    if let Some(p) = &cfg.nats_password_file {
        let pass = std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
        o = o.user_and_password(cfg.nats_user.clone(), pass.trim().to_string());
    }
    Ok(o)
}

/// Connects to NATS (retrying for up to 30 s while the servers come up), and checks this node's
/// map against the one stored in the cluster's KV bucket (the first node stores it). Calls to
/// other nodes go over TLS with `peer_tls` when it is set.
pub async fn connect(
    cfg: &ClusterConfig,
    peer_tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<Connected, String> {
    let map = ClusterMap::parse(&cfg.nodes, cfg.vnodes, cfg.partitions)?;
    let me = map
        .position(&cfg.node)
        .ok_or_else(|| format!("node {:?} is not in the cluster map {:?}", cfg.node, cfg.nodes))?;
    let urls: Vec<async_nats::ServerAddr> = cfg
        .nats
        .split(',')
        .map(|u| u.trim().parse().map_err(|e| format!("NATS url {u:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        match nats_options(cfg)?.connect(urls.as_slice()).await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                tracing::info!(error = %e, "waiting for NATS");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(format!("connecting to NATS at {}: {e}", cfg.nats)),
        }
    };
    let js = jetstream::new(client);
    let connected = Connected {
        map,
        me,
        cfg: cfg.clone(),
        js,
        peer_tls,
    };
    connected.agree_on_map().await?;
    Ok(connected)
}

impl Connected {
    /// Stores the map if none is stored; otherwise refuses to start unless it is the same map.
    /// JetStream answers "no responders" or "no leader" for a while after its servers start, so
    /// everything but a mismatch is retried for up to 30 s.
    async fn agree_on_map(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.try_agree_on_map().await {
                Ok(()) => return Ok(()),
                Err((true, e)) => return Err(e),
                Err((false, e)) if Instant::now() < deadline => {
                    tracing::info!(error = %e, "waiting for JetStream");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err((false, e)) => return Err(format!("cluster map: {e}")),
            }
        }
    }

    /// One attempt; the flag says whether the failure is final (the maps differ).
    async fn try_agree_on_map(&self) -> Result<(), (bool, String)> {
        let transient = |e: String| (false, e);
        let bucket = match self.js.get_key_value(MAP_BUCKET).await {
            Ok(b) => b,
            Err(_) => self
                .js
                .create_key_value(kv::Config {
                    bucket: MAP_BUCKET.into(),
                    history: 5,
                    num_replicas: self.cfg.replicas,
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| transient(e.to_string()))?,
        };
        let mine = serde_json::to_vec(&self.map).map_err(|e| transient(e.to_string()))?;
        if bucket.create("map", mine.into()).await.is_ok() {
            tracing::info!(version = self.map.version, "stored the cluster map");
            return Ok(());
        }
        let stored = bucket
            .get("map")
            .await
            .map_err(|e| transient(format!("reading the cluster map: {e}")))?
            .ok_or_else(|| transient("the cluster map is not readable yet".into()))?;
        let stored: ClusterMap =
            serde_json::from_slice(&stored).map_err(|e| (true, format!("stored cluster map: {e}")))?;
        if stored.partitions != self.map.partitions {
            return Err((
                true,
                format!(
                    "this node was started with {} partitions but the cluster was created with {}; \
                     the partition count never changes for a cluster's life: start with --partitions {}",
                    self.map.partitions, stored.partitions, stored.partitions
                ),
            ));
        }
        if stored != self.map {
            return Err((
                true,
                format!(
                    "this node's cluster map (version {}, nodes {:?}) differs from the cluster's (version {}, nodes {:?}); \
                     start every node with the same --cluster-nodes and --vnodes",
                    self.map.version,
                    self.map.nodes.iter().map(|n| &n.name).collect::<Vec<_>>(),
                    stored.version,
                    stored.nodes.iter().map(|n| &n.name).collect::<Vec<_>>()
                ),
            ));
        }
        Ok(())
    }

    /// This node's position in the map: its node id in post ids.
    pub fn node_id(&self) -> u16 {
        self.me as u16
    }

    /// When `data_dir` holds no database, restores this node's latest checkpoint into it (if one
    /// was taken). Returns the log sequence the checkpoint covers.
    pub async fn restore_if_empty(&self, data_dir: &Path) -> Result<Option<u64>, String> {
        if data_dir.join("CURRENT").exists() {
            return Ok(None);
        }
        // The object store's stream may have no leader yet right after the servers start.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match checkpoint::restore(&self.js, &self.cfg, data_dir).await {
                Err(e) if Instant::now() < deadline => {
                    tracing::info!(error = %e, "waiting for the checkpoint store");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                r => return r,
            }
        }
    }

    /// Starts applying the log to `engine` and waits until it has caught up with the log's end
    /// as of now (reporting progress), so the node answers reads with current data.
    pub async fn start(self, engine: Engine, data_dir: PathBuf) -> Result<Arc<Cluster>, String> {
        let ring = Ring::new(&self.map);
        let me = self.me;
        let owner_ring = ring.clone();
        engine.set_owner_filter(Arc::new(move |u| owner_ring.owner(u) == me));
        let (stop_tx, stop_rx) = watch::channel(false);
        engine.set_remote_fanout(Arc::new(fanout::LogFanout {
            js: self.js.clone(),
            ring: ring.clone(),
            rt: tokio::runtime::Handle::current(),
            stop: stop_rx.clone(),
        }));
        // Only now may fanout the last run left pending reach readers: to this node's own, and
        // through the log to the others' (before, it would write them all here and cache that).
        engine.resume_fanout();
        let retention = match self.cfg.checkpoint_interval_s {
            0 => Duration::ZERO,
            s => Duration::from_secs(s.saturating_mul(4).max(3600)),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            let r = self
                .js
                .get_or_create_stream(stream::Config {
                    name: self.cfg.stream.clone(),
                    subjects: subjects::all(),
                    storage: stream::StorageType::File,
                    num_replicas: self.cfg.replicas,
                    duplicate_window: Duration::from_secs(120),
                    max_age: retention,
                    ..Default::default()
                })
                .await;
            match r {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    tracing::info!(error = %e, "waiting for the event stream");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(format!("event stream: {e}")),
            }
        };
        let applied = {
            let e = engine.clone();
            tokio::task::spawn_blocking(move || e.applied_seq())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
        };
        // Where this database left off is the truth: the consumer starts after it. It is
        // ordered (ephemeral, one replica, no acks: no Raft group of its own) and filtered to
        // what this node applies.
        let mut source = apply::Source {
            stream: stream.clone(),
            filter: subjects::consumed_by_owner_of(&ring.partitions_of(me)),
            name: format!("apply-{}-{}", self.map.nodes[me].name, now_ms()),
            serial: 0,
        };
        // What the log holds for this node as of now: caught up once that many are applied.
        let (msgs, backlog) = source.open(applied).await?;
        let peers = self
            .map
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if i == me {
                    return Ok(None);
                }
                let breaker = Breaker::new(
                    self.cfg.breaker_failures,
                    Duration::from_millis(self.cfg.breaker_open_ms),
                );
                Peer::new(
                    n.clone(),
                    Duration::from_millis(self.cfg.forward_timeout_ms),
                    breaker,
                    self.peer_tls.clone(),
                )
                .map(Some)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (applied_tx, applied_rx) = watch::channel(applied);
        let waiters: Arc<DashMap<u64, Waiter>> = Arc::new(DashMap::new());
        let start_req = now_ms() << 16;
        let applied_count = Arc::new(AtomicU64::new(0));
        let cluster = Arc::new(Cluster {
            ring,
            me,
            peers,
            cfg: self.cfg.clone(),
            js: self.js.clone(),
            engine: engine.clone(),
            waiters: waiters.clone(),
            next_req: AtomicU64::new(start_req),
            next_user: AtomicU64::new(0),
            applied: applied_rx,
            applied_count: applied_count.clone(),
            stop: stop_tx,
            tasks: parking_lot::Mutex::new(Vec::new()),
            map: self.map,
        });
        let name = cluster.map.nodes[me].name.clone();
        let apply = tokio::spawn(apply::apply_loop(
            engine.clone(),
            source,
            msgs,
            name,
            waiters,
            apply::Progress {
                applied: applied_tx,
                count: applied_count,
            },
            stop_rx.clone(),
        ));
        cluster.tasks.lock().push(apply);
        if self.cfg.checkpoint_interval_s > 0 {
            let c = cluster.clone();
            let every = Duration::from_secs(self.cfg.checkpoint_interval_s);
            let t = tokio::spawn(checkpoint::periodic(c, data_dir, every, stop_rx));
            cluster.tasks.lock().push(t);
        }
        cluster.catch_up(applied, backlog).await?;
        Ok(cluster)
    }
}

impl Cluster {
    /// Waits until `backlog` messages (what the log held for this node at start, after the
    /// database's sequence `from`) are applied, logging progress every second.
    async fn catch_up(&self, from: u64, backlog: u64) -> Result<(), String> {
        if backlog == 0 {
            return Ok(());
        }
        tracing::info!(from, backlog, "replaying the event log");
        let mut rx = self.applied.clone();
        let mut last_log = Instant::now();
        loop {
            rx.borrow_and_update();
            let done = self.applied_count.load(std::sync::atomic::Ordering::SeqCst);
            if done >= backlog {
                tracing::info!(at = *rx.borrow(), "caught up with the event log");
                return Ok(());
            }
            if last_log.elapsed() >= Duration::from_secs(1) {
                let pct = 100.0 * done as f64 / backlog as f64;
                tracing::info!(done, backlog, "replaying: {pct:.1} %");
                last_log = Instant::now();
            }
            if let Ok(Err(_)) = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await {
                return Err("the apply loop stopped while catching up".into());
            }
        }
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.map.nodes[self.me].name
    }

    /// Whether this node owns `user`.
    pub fn owns(&self, user: UserId) -> bool {
        self.ring.owner(user) == self.me
    }

    /// The peer to forward a call about `user` to, or none when this node owns the user. A call
    /// that was already forwarded and lands on a non-owner is refused (maps disagree).
    pub fn route(&self, user: UserId, md: &tonic::metadata::MetadataMap) -> Result<Option<&Peer>, Status> {
        let owner = self.ring.owner(user);
        if owner == self.me {
            return Ok(None);
        }
        if md.get(FORWARDED).is_some() {
            return Err(Status::failed_precondition(format!(
                "node {} does not own user {user} (map version {}); node {} does",
                self.name(),
                self.map.version,
                self.map.nodes[owner].name
            )));
        }
        Ok(self.peers[owner].as_ref())
    }

    /// The last sequence this node has applied.
    pub fn applied_seq(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Stops the apply and checkpoint loops (after the group being applied).
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            let _ = t.await;
        }
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn js(&self) -> &jetstream::Context {
        &self.js
    }

    pub(crate) fn config(&self) -> &ClusterConfig {
        &self.cfg
    }
}
