//! Cluster mode: N feed nodes over a NATS JetStream cluster. Every write is an event appended to
//! one replicated stream (file storage, R3), on a subject of its user's partition, and
//! acknowledged to the client once a quorum of NATS servers has it and this node has applied it.
//! Profiles, blocks and posts are replicated: every node applies those events in
//! log order (state-machine replication), so they are a full read model on each node. A
//! partition's own state — its users' side of the follow graph, its readers' timelines, read
//! markers, notification markers and view affinity, and the likes and comments of its users'
//! posts — is applied only by the partition's owner, and fanout is two-hop: the author's node
//! walks the follower list once and appends one batch per reader partition, applied by that
//! partition's owner. The other user's side of a follow and engagement's effects elsewhere
//! (affinity, reply notifications, the counts every node shows) follow the same way as
//! follow-ups. Reads and writes for a user go to the user's owner; engagement to
//! the post author's.
//!
//! - [`ring`]: the cluster map, fixed partitions and their placement on the ring.
//! - [`placement`]: who holds which partition under the current epoch, and the node's lease;
//!   `failover` declares silent nodes down and hands their partitions to the others; `drain`
//!   hands a stopping node's partitions over before it goes.
//! - [`fanout`]: two-hop fanout batches through the log; `followups` sends a like's effects on
//!   other partitions (the liker's affinity, the post's count) the same way.
//! - [`ryw`]: read-your-writes on the node a client called; `settle`: a list read waits for
//!   its user's partition's newest event, concurrent reads sharing the lookups.
//! - [`peers`]: forwarding to the owner with deadlines and circuit breakers.
//! - [`checkpoint`]: RocksDB checkpoints in a JetStream object store, and restore; `snapshots`:
//!   each partition's own state beside them, restored by a node taking the partition over, and
//!   the partition's older events dropped from the log once snapshots cover them.

mod apply;
mod batch;
pub mod bodies;
pub mod checkpoint;
mod connect;
mod drain;
mod failover;
pub mod fanout;
mod followups;
mod log;
pub mod peers;
pub mod placement;
mod retention;
pub mod retire;
pub mod ring;
pub mod ryw;
mod settle;
mod snapshots;
pub mod subjects;

pub use connect::connect;
pub use drain::Drained;
pub use retire::{Retirement, retire_node};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use dashmap::DashMap;
use feed_engine::{Engine, UserId};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tonic::Status;

use crate::config::ClusterConfig;
use crate::ops::{Op, Outcome};
use peers::{Breaker, FORWARDED, Peer};
use placement::{Holder, Placement};
use ring::{ClusterMap, Ring};

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
    name: String,
    placement: Arc<Placement>,
    me: usize,
    /// Clients of the other nodes, by position in the map (grown when a node joins).
    peers: parking_lot::RwLock<Vec<Option<Arc<Peer>>>>,
    peer_tls: Option<tonic::transport::ClientTlsConfig>,
    cfg: ClusterConfig,
    js: jetstream::Context,
    engine: Engine,
    waiters: Arc<DashMap<u64, Waiter>>,
    next_req: AtomicU64,
    next_user: AtomicU64,
    applied: watch::Receiver<u64>,
    /// Messages applied since start.
    applied_count: Arc<AtomicU64>,
    /// Partition handovers for the apply loop.
    handovers: mpsc::Sender<apply::Handover>,
    /// The newest epoch this node has acknowledged, the fanout floor it acknowledged it with,
    /// and when (its liveness record reports them).
    acked: parking_lot::Mutex<(u64, u64, Instant)>,
    /// Set while this node hands its partitions over before a shutdown (`drain`).
    draining: AtomicBool,
    /// The follow-up relay's wake-up and progress.
    relay: followups::RelaySignal,
    /// The event stream's last message per subject, which list reads wait on (shared among
    /// concurrent reads of a partition).
    settler: settle::Settler,
    /// Partition snapshots: written with each checkpoint, restored on a takeover.
    snapshots: snapshots::Snapshots,
    /// Bodies fetched from their authors' nodes, kept for the next read.
    fetched: bodies::FetchedBodies,
    stop: watch::Sender<bool>,
    /// Why this process must be restarted, once it must (`failover`: listed behind while it ran).
    restart: watch::Sender<Option<String>>,
    tasks: parking_lot::Mutex<Vec<JoinHandle<()>>>,
}

/// Cluster mode after connecting to NATS and agreeing on the map, before the engine opens.
pub struct Connected {
    map: ClusterMap,
    me: usize,
    cfg: ClusterConfig,
    js: jetstream::Context,
    peer_tls: Option<tonic::transport::ClientTlsConfig>,
    /// The node whose checkpoint the data folder was restored from, when not this one.
    adopted: Option<String>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Connected {
    /// This node's position in the map: its node id in post ids.
    pub fn node_id(&self) -> u16 {
        self.me as u16
    }

    /// Starts applying the log to `engine` and waits until it has caught up with the log's end
    /// as of now (reporting progress), so the node answers reads with current data.
    pub async fn start(self, engine: Engine, data_dir: PathBuf) -> Result<Arc<Cluster>, String> {
        let ring = Ring::new(&self.map);
        let me = self.me;
        // Likes and comments are decided on the post author's partition, follows on the acting
        // user's, from the first event applied on.
        engine.partition_writes();
        // Each start-up call to JetStream is retried: a NATS server dying as the node starts
        // leaves "no responders" for a while (a seeded join test's node gave up on it).
        let (map_kv, alive_kv, rec) = connect::within_jetstream_wait("the cluster's buckets", || async {
            let (map_kv, alive_kv) = failover::buckets(&self.js, self.cfg.replicas).await?;
            let (rec, _) = failover::read_epoch(&map_kv).await?;
            Ok((map_kv, alive_kv, rec))
        })
        .await?;
        let lease = Duration::from_millis(self.cfg.suspicion_ms / 2);
        let placement = Arc::new(Placement::new(&self.map, me, &rec, lease));
        let (stop_tx, stop_rx) = watch::channel(false);
        let stream = connect::within_jetstream_wait("the event stream", || async {
            self.js
                .get_or_create_stream(stream::Config {
                    name: self.cfg.stream.clone(),
                    subjects: subjects::all(),
                    storage: stream::StorageType::File,
                    num_replicas: self.cfg.replicas,
                    duplicate_window: Duration::from_secs(120),
                    // No age limit: a partition's own events are dropped once snapshots of
                    // the partition cover them (`snapshots`), the replicated ones once every
                    // node's checkpoint does (`retention`).
                    max_age: Duration::ZERO,
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("event stream: {e}"))
        })
        .await?;
        let applied = {
            let e = engine.clone();
            tokio::task::spawn_blocking(move || e.applied_seq())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
        };
        let scratch = data_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let snaps = connect::within_jetstream_wait("the partition snapshots", || {
            snapshots::Snapshots::open(
                &self.js,
                self.cfg.replicas,
                stream.clone(),
                &scratch,
                self.map.partitions,
            )
        })
        .await?;
        // A folder older than what the log still holds would apply it with a gap.
        let dropped_to =
            connect::within_jetstream_wait("the log's drop point", || snaps.replicated_purged_to()).await?;
        retention::refuse_if_behind(applied, dropped_to, &data_dir)?;
        // Partitions held at the last run but not now are recorded as applied up to here; any
        // held now but not then (a handover a crash interrupted) are taken over first.
        let gains = self.settle_partitions(&engine, &placement, applied).await?;
        apply::take_partitions(&engine, &stream, &snaps, &gains, applied).await?;
        // A crash after a takeover marked a partition held but before its bodies came back.
        bodies::fill_owed(&engine, &snaps, &placement.mine(), applied).await?;
        apply::forget_given_away(engine.clone(), self.map.partitions);
        let owner = placement.clone();
        engine.set_owner_filter(Arc::new(move |u| owner.keeps(u)));
        engine.set_remote_fanout(Arc::new(fanout::LogFanout {
            js: self.js.clone(),
            ring: ring.clone(),
            rt: tokio::runtime::Handle::current(),
            stop: stop_rx.clone(),
        }));
        // Only now may fanout the last run left pending reach readers: to this node's own, and
        // through the log to the others' (before, it would write them all here and cache that).
        if let Some(from) = &self.adopted {
            // Another node's checkpoint: its unfinished fanout is that node's to finish (or
            // its successor's, from its floor), not this one's.
            let n = engine.discard_held_fanout().map_err(|e| e.to_string())?;
            tracing::info!(
                from,
                jobs = n,
                "restored another node's checkpoint; dropped its unfinished fanout"
            );
            checkpoint::adoption_done(&data_dir)?;
        }
        engine.resume_fanout();
        // Where this database left off is the truth: the consumer starts after it. It is
        // ordered (ephemeral, one replica, no acks: no Raft group of its own) and filtered to
        // what this node applies.
        let mut source = apply::Source {
            stream: stream.clone(),
            filter: subjects::consumed_by_owner_of(&placement.mine()),
            name: format!("apply-{}-{}", self.map.nodes[me].name, now_ms()),
            serial: 0,
            partitions: self.map.partitions,
            rewind: Arc::new(AtomicBool::new(false)),
            snapshots: snaps.clone(),
        };
        let rewind = source.rewind.clone();
        // What the log holds for this node as of now: caught up once that many are applied.
        let deadline = Instant::now() + connect::JETSTREAM_WAIT;
        let (msgs, backlog) = loop {
            match source.open(applied).await {
                Err(e) if Instant::now() < deadline => {
                    tracing::info!(error = %e, "waiting for JetStream (the node's consumer)");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                r => break r?,
            }
        };
        let peers = self
            .map
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| match i == me {
                true => Ok(None),
                false => new_peer(&self.cfg, n.clone(), self.peer_tls.clone()).map(|p| Some(Arc::new(p))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (applied_tx, applied_rx) = watch::channel(applied);
        let waiters: Arc<DashMap<u64, Waiter>> = Arc::new(DashMap::new());
        let start_req = now_ms() << 16;
        let applied_count = Arc::new(AtomicU64::new(0));
        let (handovers, handover_rx) = mpsc::channel(1);
        let cluster = Arc::new(Cluster {
            acked: parking_lot::Mutex::new((placement.epoch(), now_ms(), Instant::now())),
            placement,
            handovers,
            me,
            peers: parking_lot::RwLock::new(peers),
            peer_tls: self.peer_tls.clone(),
            name: self.map.nodes[me].name.clone(),
            cfg: self.cfg.clone(),
            js: self.js.clone(),
            engine: engine.clone(),
            waiters: waiters.clone(),
            next_req: AtomicU64::new(start_req),
            next_user: AtomicU64::new(0),
            applied: applied_rx,
            applied_count: applied_count.clone(),
            stop: stop_tx,
            restart: watch::channel(None).0,
            tasks: parking_lot::Mutex::new(Vec::new()),
            draining: AtomicBool::new(false),
            relay: followups::RelaySignal::new(),
            settler: settle::Settler::new(self.map.partitions, stream.clone()),
            snapshots: snaps,
            fetched: bodies::FetchedBodies::new(self.cfg.fetched_body_cache_mb),
        });
        let name = cluster.name.clone();
        let apply = tokio::spawn(apply::apply_loop(
            engine.clone(),
            source,
            msgs,
            name,
            apply::Progress {
                applied: applied_tx,
                count: applied_count,
                waiters,
            },
            handover_rx,
            stop_rx.clone(),
        ));
        cluster.tasks.lock().push(apply);
        let relay = tokio::spawn(followups::relay(cluster.clone(), rewind, stop_rx.clone()));
        cluster.tasks.lock().push(relay);
        cluster.heartbeat(&alive_kv).await;
        if !gains.is_empty() {
            cluster.refan_after_start(&rec, &gains).await?;
        }
        let beat = (self.cfg.suspicion_ms > 0)
            .then(|| tokio::spawn(failover::beat(cluster.clone(), alive_kv.clone(), stop_rx.clone())));
        cluster.tasks.lock().extend(beat);
        if self.cfg.checkpoint_interval_s > 0 {
            let c = cluster.clone();
            let every = Duration::from_secs(self.cfg.checkpoint_interval_s);
            let t = tokio::spawn(checkpoint::periodic(c, data_dir, every, stop_rx.clone()));
            cluster.tasks.lock().push(t);
        }
        cluster.catch_up(applied, backlog).await?;
        // Only a caught-up node watches epochs: a node that is down (restarted, or joining)
        // proposes its return from this loop, so it takes partitions only once it is current.
        if self.cfg.suspicion_ms > 0 {
            let t = tokio::spawn(failover::run(cluster.clone(), alive_kv, map_kv, stop_rx));
            cluster.tasks.lock().push(t);
        }
        Ok(cluster)
    }
}

/// A client of the node `spec`, with the configured deadline and circuit breaker.
fn new_peer(
    cfg: &ClusterConfig,
    spec: ring::NodeSpec,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<Peer, String> {
    let breaker = Breaker::new(cfg.breaker_failures, Duration::from_millis(cfg.breaker_open_ms));
    Peer::new(spec, Duration::from_millis(cfg.forward_timeout_ms), breaker, tls)
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
        &self.name
    }

    /// The cluster map in force.
    pub fn map(&self) -> ClusterMap {
        self.placement.map()
    }

    /// Takes a newer map (nodes appended: a node joined) — clients for the new nodes — before
    /// the placement moves to it.
    pub(crate) fn adopt_map(&self, map: &ClusterMap) -> Result<(), String> {
        let mut peers = self.peers.write();
        for (i, n) in map.nodes.iter().enumerate().skip(peers.len()) {
            let p = (i != self.me)
                .then(|| new_peer(&self.cfg, n.clone(), self.peer_tls.clone()).map(Arc::new))
                .transpose()?;
            peers.push(p);
        }
        Ok(())
    }

    /// Whether this node holds `user`'s partition under the current epoch.
    pub fn owns(&self, user: UserId) -> bool {
        self.placement.owns(user)
    }

    /// The peer to forward a call about `user` to, or none when this node answers for the user.
    /// `UNAVAILABLE` (retry) while the user's partition is moving to this node, while this
    /// node's lease has lapsed, and for a forwarded call that lands on a node that does not
    /// hold the user (the two nodes are on different epochs for a moment).
    pub fn route(&self, user: UserId, md: &tonic::metadata::MetadataMap) -> Result<Option<Arc<Peer>>, Status> {
        let p = self.placement.partition(user);
        let owner = match self.placement.holder(user) {
            Holder::Me => return Ok(None),
            Holder::Moving => {
                return Err(peers::retry_later(format!(
                    "partition {p} is moving to node {}; retry in a moment",
                    self.name()
                )));
            }
            Holder::Lapsed => {
                return Err(peers::retry_later(format!(
                    "node {} cannot renew its lease on partition {p}; retry on another node",
                    self.name()
                )));
            }
            Holder::Other(o) => o,
        };
        if md.get(FORWARDED).is_some() {
            return Err(peers::retry_later(format!(
                "node {} does not hold user {user} at epoch {}; node {} does — retry",
                self.name(),
                self.placement.epoch(),
                self.placement.node_name(owner)
            )));
        }
        Ok(self.peers.read().get(owner).cloned().flatten())
    }

    /// Where a like or comment on `post` is decided, with the post's author when this node knows the
    /// post: the peer holding the author (or none: this node). A post this node has not applied
    /// yet goes to the node that minted its id — its author's node when it was posted — unless
    /// that is this node or the call was forwarded already (then this node answers).
    pub fn route_post(
        &self,
        post: feed_engine::PostId,
        md: &tonic::metadata::MetadataMap,
    ) -> Result<(Option<Arc<Peer>>, Option<UserId>), Status> {
        if let Some(author) = self.engine.post_author(post).map_err(crate::convert::status)? {
            return Ok((self.route(author, md)?, Some(author)));
        }
        let minter = ((post >> 12) & 0x3ff) as usize;
        if minter == self.me || md.get(FORWARDED).is_some() {
            return Ok((None, None));
        }
        Ok((self.peers.read().get(minter).cloned().flatten(), None))
    }

    /// The partitions this node keeps now (taken over, not moving), while its lease holds.
    pub(crate) fn kept_partitions(&self) -> Vec<u32> {
        match self.placement.lease_holds() {
            true => self.placement.kept(),
            false => Vec::new(),
        }
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
