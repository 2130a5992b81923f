//! The engine: one handle over the store, the hot layer and the fanout workers. Its methods are
//! split by concern — `users`, `graph`, `posts`, `feed` — over the shared state defined here.

mod bodies;
mod bulk;
mod cache;
mod deleting;
mod discovery;
mod engage;
mod feed;
mod followups;
mod graph;
mod graph_split;
mod handover;
mod ids;
mod likes;
mod markers;
mod notify;
mod outbox;
mod posts;
mod rank;
mod readers;
mod remote;
mod search;
mod snapshot;
pub(crate) mod timelines;
mod tokens;
mod trends;
mod usage;
mod users;
mod visibility;
mod writer;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use dashmap::DashMap;
use parking_lot::{Condvar, Mutex};

use crate::clock::{Clock, SystemClock};
use crate::codec::{Counter, JobRecord};
use crate::config::EngineConfig;
use crate::error::{Error, Result};
use crate::fanout::{self, Job};
use crate::model::{Entry, FeedItem, PostId, UserId};
use crate::ranking::{FEEDLINE_EPOCH_MS, RankParams};
use crate::store::{Durability, Store, StoreOptions};
use crate::tables::{COUNTERS, META, MetaKey, PENDING, POSTS, PULL_AUTHORS, USERS};

use crate::metrics::ReadMetrics;
pub use bodies::Trimmed;
use cache::FeedCache;
pub(crate) use cache::{Audience, Change, PullAuthor};
pub use likes::LikeTicket;
pub use notify::NotificationListener;
pub(crate) use outbox::TopRanks;
pub(crate) use readers::{ReaderGraph, ReaderState, Readers, fresh_state};
pub use remote::{FanoutKind, Outgoing, RemoteFanout};
pub use snapshot::PartitionSnapshot;
pub use tokens::OPERATOR_TOKENS;
pub use usage::MemoryUse;
pub use writer::Writer;

/// Told about every new entry that becomes visible in a reader's feed (pushed or not), so a
/// server can stream feed updates. Called on fanout threads: implementations must not block.
pub trait FeedListener: Send + Sync {
    /// The readers listening now, each once. For a post it does not push (a celebrity's),
    /// fanout tells only those of them who follow the author — one lookup per listener, not a
    /// walk of the author's follower list.
    fn subscribers(&self) -> Vec<UserId>;
    /// A new entry for `reader`.
    fn on_entry(&self, reader: UserId, entry: &Entry);
}

pub(crate) struct Inner {
    pub cfg: EngineConfig,
    pub rank: RankParams,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub next_user: AtomicU64,
    /// The newest post id under this node's bits it minted or applied (`ids`).
    pub last_post: AtomicU64,
    pub readers: Readers,
    /// Every in-memory copy the read path serves from, and the rules of what goes stale.
    pub cache: FeedCache,
    /// Read counters and histograms per path.
    pub read_metrics: ReadMetrics,
    locks: Box<[Mutex<()>]>,
    pub handle_lock: Mutex<()>,
    pub jobs: fanout::Queue,
    pub backlog: AtomicUsize,
    idle: (Mutex<()>, Condvar),
    pub listener: OnceLock<Arc<dyn FeedListener>>,
    /// Told about each notification once durable (a server's live streams).
    pub notification_listener: OnceLock<Arc<dyn notify::NotificationListener>>,
    /// Engagement velocity of recent posts and tags.
    pub trends: trends::Trends,
    /// Post deletions in flight and done (engagement written beside one looks again).
    pub deletions: posts::Deletions,
    /// Ranked reading sessions (what a ranked cursor pins).
    pub sessions: crate::hot::HotMap<rank::Session>,
    pub session_seq: AtomicU64,
    /// Cluster mode: which readers' timelines this node keeps (unset: all).
    pub owner: OnceLock<OwnerFilter>,
    /// Cluster mode: where fanout sends the readers other nodes keep (two-hop fanout).
    pub remote: OnceLock<Arc<dyn remote::RemoteFanout>>,
    /// Pending fanout jobs held at open until the cluster wiring is set (`hold_pending_fanout`).
    pub held: Mutex<Vec<JobRecord>>,
    /// Cluster mode: likes and comments are decided on the post author's partition, follows on
    /// the acting user's (`followups.rs`, `graph_split.rs`).
    pub partitioned_writes: OnceLock<()>,
    pub stopping: AtomicBool,
    pub halt: AtomicBool,
}

/// Says whether this node keeps a reader's home timeline (cluster mode).
pub type OwnerFilter = Arc<dyn Fn(UserId) -> bool + Send + Sync>;

/// Handle to an open engine. Cheap to clone; the database closes (and the fanout workers stop)
/// when the last clone is dropped. Undelivered fanout stays recorded and resumes at the next open.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

struct Shared {
    inner: Arc<Inner>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// The like committer's queue (its thread stops when this is dropped).
    likes: Sender<likes::LikeReq>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.inner.halt.store(true, Ordering::SeqCst);
        let workers = std::mem::take(&mut *self.workers.lock());
        for _ in &workers {
            let _ = self.inner.jobs.send(Job::Stop);
        }
        for w in workers {
            let _ = w.join();
        }
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("data_dir", &self.shared.inner.cfg.data_dir)
            .finish()
    }
}

impl Engine {
    /// Opens the engine on `cfg.data_dir` with the system clock, resuming any fanout that was
    /// acknowledged but not finished.
    pub fn open(cfg: EngineConfig) -> Result<Engine> {
        Engine::open_with_clock(cfg, Arc::new(SystemClock))
    }

    /// Opens the engine with the given clock (tests use a manual one).
    pub fn open_with_clock(mut cfg: EngineConfig, clock: Arc<dyn Clock>) -> Result<Engine> {
        cfg.validate()?;
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| Error::Storage(Box::new(e)))?;
        let store = Store::open(
            &cfg.data_dir,
            &StoreOptions {
                block_cache_bytes: cfg.block_cache_bytes,
                write_buffer_bytes: cfg.write_buffer_bytes,
                affinity_halving_ms: cfg.ranker.affinity_halving_ms,
                range_deletes_per_memtable: crate::store::RANGE_DELETES_PER_MEMTABLE,
            },
            clock.clone(),
        )?;
        // Ranks on disk were computed with the halving period the database was created with.
        match META.get_u64(&store, MetaKey::RecencyHalvingMs)? {
            Some(stored) => {
                if stored != cfg.recency_halving_ms {
                    tracing::warn!(
                        stored,
                        configured = cfg.recency_halving_ms,
                        "keeping the database's recency-halving-ms"
                    );
                    cfg.recency_halving_ms = stored;
                }
            }
            None => {
                let mut b = store.batch();
                META.put_u64(&store, &mut b, MetaKey::RecencyHalvingMs, cfg.recency_halving_ms);
                store.write(b, Durability::Sync)?;
            }
        }
        outbox::index_by_rank(&store)?;
        let last_user = USERS.last_id(&store)?;
        let last_post = POSTS.last_id(&store)?;
        let pull_authors = DashMap::new();
        for (a, until_ms) in PULL_AUTHORS.all(&store)? {
            pull_authors.insert(a, PullAuthor { until_ms, version: 0 });
        }
        let pending = PENDING.all(&store)?;
        // Bounded: every job holds a backlog slot (`reserve_job`, at most the cap; the pending
        // jobs resumed here may exceed it once) and at most two Stops per worker are in flight
        // (shutdown's and the one each worker passes on), so a send never waits.
        let (tx, rx) = fanout::queue(cfg.fanout_queue_cap.max(pending.len()), 2 * cfg.fanout_workers + 1);
        let hot = cfg.hot_bytes;
        let now0 = clock.now_ms();
        let inner = Arc::new(Inner {
            rank: RankParams {
                recency_halving_ms: cfg.recency_halving_ms,
            },
            store,
            clock,
            next_user: AtomicU64::new(last_user + 1),
            last_post: AtomicU64::new(ids::resume_after(last_post, cfg.node_id)),
            readers: Readers::new(cfg.reader_states_max),
            cache: FeedCache::new(hot, cfg.hot_page_entries, pull_authors, cfg.discovery_pool),
            read_metrics: ReadMetrics::new(),
            locks: (0..256).map(|_| Mutex::new(())).collect(),
            handle_lock: Mutex::new(()),
            jobs: tx,
            backlog: AtomicUsize::new(pending.len()),
            idle: (Mutex::new(()), Condvar::new()),
            listener: OnceLock::new(),
            remote: OnceLock::new(),
            held: Mutex::new(Vec::new()),
            partitioned_writes: OnceLock::new(),
            notification_listener: OnceLock::new(),
            trends: trends::Trends::new(&cfg.ranker, now0),
            deletions: posts::Deletions::default(),
            sessions: crate::hot::HotMap::new("ranked_sessions", cfg.ranker.session_bytes),
            session_seq: AtomicU64::new(1),
            owner: OnceLock::new(),
            stopping: AtomicBool::new(false),
            halt: AtomicBool::new(false),
            cfg,
        });
        inner.load_discovery()?;
        metrics::gauge!(crate::metrics::FANOUT_QUEUE_DEPTH).set(pending.len() as f64);
        if inner.cfg.hold_pending_fanout {
            *inner.held.lock() = pending;
        } else {
            inner.resume(pending);
        }
        let workers = (0..inner.cfg.fanout_workers)
            .map(|i| {
                let inner = inner.clone();
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("feedline-fanout-{i}"))
                    .spawn(move || fanout::run_worker(&inner, &rx))
                    .map_err(|e| Error::Storage(Box::new(e)))
            })
            .collect::<Result<Vec<_>>>()?;
        let (likes, like_rx) = crossbeam_channel::bounded(likes::QUEUE_CAP);
        let shared = Arc::new(Shared {
            inner,
            workers: Mutex::new(workers),
            likes,
        });
        likes::spawn(Arc::downgrade(&shared), like_rx)?;
        Ok(Engine { shared })
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.shared.inner
    }

    /// The configuration in force (with the database's own recency period).
    pub fn config(&self) -> &EngineConfig {
        &self.inner().cfg
    }

    /// Runs the fanout jobs held at open (`hold_pending_fanout`); call once the owner filter and
    /// the two-hop sink are set. Does nothing the second time.
    pub fn resume_fanout(&self) {
        let held = std::mem::take(&mut *self.inner().held.lock());
        self.inner().resume(held);
    }

    /// Registers the listener told about new feed entries. Only the first call takes effect.
    pub fn set_listener(&self, l: Arc<dyn FeedListener>) -> bool {
        self.inner().listener.set(l).is_ok()
    }

    /// Cluster mode: from now on only readers for whom `owns` is true get timeline entries on
    /// this node (fanout and follow merges skip the others). Set once, before any write; false
    /// if a filter was already set.
    pub fn set_owner_filter(&self, owns: OwnerFilter) -> bool {
        self.inner().owner.set(owns).is_ok()
    }

    /// The last log sequence applied (cluster mode; 0 on a single node).
    pub fn applied_seq(&self) -> Result<u64> {
        self.inner().store.applied_seq()
    }

    /// Records `seq` as applied, for an event that changed nothing. Not fsynced: see [`Engine::sync`].
    pub fn note_applied(&self, seq: u64) -> Result<()> {
        self.inner().store.note_applied(seq)
    }

    /// Fsyncs the WAL: every earlier write, stamped or buffered, becomes durable.
    pub fn sync(&self) -> Result<()> {
        self.inner().store.sync_wal()
    }

    /// Writes a consistent copy of the whole database into `dir` (which must not exist yet).
    pub fn checkpoint(&self, dir: &std::path::Path) -> Result<()> {
        self.inner().store.checkpoint(dir)
    }

    /// A fresh post id (time-ordered, unique to this node's id), for an event minted before it
    /// is applied.
    pub fn mint_post_id(&self) -> PostId {
        let inner = self.inner();
        inner.next_post_id(inner.clock.now_ms(), None)
    }

    /// The highest user id this database has seen.
    pub fn max_user_id(&self) -> UserId {
        self.inner().next_user.load(Ordering::SeqCst).saturating_sub(1)
    }

    /// Fanout jobs acknowledged and not yet done.
    pub fn fanout_backlog(&self) -> usize {
        self.inner().backlog.load(Ordering::SeqCst)
    }

    /// Waits until every acknowledged fanout job is done, or `timeout` passes. Returns whether
    /// the backlog is empty.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let inner = self.inner();
        let deadline = Instant::now() + timeout;
        let mut g = inner.idle.0.lock();
        while inner.backlog.load(Ordering::SeqCst) > 0 {
            if inner.idle.1.wait_until(&mut g, deadline).timed_out() {
                return inner.backlog.load(Ordering::SeqCst) == 0;
            }
        }
        true
    }

    /// Graceful stop: refuses new writes, waits up to `drain` for fanout to finish, then syncs
    /// the WAL and flushes memtables. Whatever fanout is left resumes at the next open.
    pub fn shutdown(&self, drain: Duration) -> Result<bool> {
        let inner = self.inner();
        inner.stopping.store(true, Ordering::SeqCst);
        let drained = self.wait_idle(drain);
        inner.store.sync_wal()?;
        inner.store.flush()?;
        Ok(drained)
    }
}

/// When a post id was minted, in ms since the Unix epoch.
pub fn post_time_ms(id: PostId) -> u64 {
    (id >> ids::POST_TIME_SHIFT) + FEEDLINE_EPOCH_MS
}

impl Inner {
    /// Hands fanout jobs left pending by the last run to the workers.
    fn resume(&self, pending: Vec<JobRecord>) {
        if !pending.is_empty() {
            tracing::info!(jobs = pending.len(), "resuming interrupted fanout");
        }
        for j in pending {
            let _ = self.jobs.send(Job::Record { rec: j, acked: None });
        }
    }

    /// The clock's time (reads and background work; a write takes its time from its context).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Whether this node keeps `reader`'s home timeline (always, outside cluster mode).
    pub fn owns(&self, reader: UserId) -> bool {
        self.owner.get().is_none_or(|f| f(reader))
    }

    /// Striped locks that serialise graph changes touching the same users.
    pub fn lock_users(
        &self,
        a: UserId,
        b: UserId,
    ) -> (parking_lot::MutexGuard<'_, ()>, Option<parking_lot::MutexGuard<'_, ()>>) {
        let n = self.locks.len() as u64;
        let (i, j) = ((a % n) as usize, (b % n) as usize);
        match i.cmp(&j) {
            std::cmp::Ordering::Equal => (self.locks[i].lock(), None),
            std::cmp::Ordering::Less => {
                let g = self.locks[i].lock();
                (g, Some(self.locks[j].lock()))
            }
            std::cmp::Ordering::Greater => {
                let g = self.locks[j].lock();
                (g, Some(self.locks[i].lock()))
            }
        }
    }

    pub fn user_exists(&self, id: UserId) -> Result<bool> {
        if id == 0 {
            return Ok(false);
        }
        USERS.exists(&self.store, id)
    }

    pub fn require_user(&self, id: UserId) -> Result<()> {
        // Every feed read asks; a reader whose graph is cached exists (no RocksDB lookup).
        if self.cache.known_user(id) || self.user_exists(id)? {
            Ok(())
        } else {
            Err(Error::not_found(format!("user {id} does not exist")))
        }
    }

    pub fn counter(&self, user: UserId, c: Counter) -> Result<u64> {
        COUNTERS.get(&self.store, user, c)
    }

    /// Takes a slot in the fanout backlog, or answers `Overloaded`.
    pub fn reserve_job(&self) -> Result<()> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        let cap = self.cfg.fanout_queue_cap;
        let prev = self.backlog.fetch_add(1, Ordering::SeqCst);
        if prev >= cap {
            self.backlog.fetch_sub(1, Ordering::SeqCst);
            metrics::counter!(crate::metrics::OVERLOADED, "what" => "fanout-queue").increment(1);
            return Err(Error::Overloaded(format!(
                "fanout backlog is full ({cap} jobs); retry shortly"
            )));
        }
        metrics::gauge!(crate::metrics::FANOUT_QUEUE_DEPTH).set((prev + 1) as f64);
        Ok(())
    }

    /// Gives back a slot taken by [`Inner::reserve_job`].
    pub fn release_job(&self) {
        let left = self.backlog.fetch_sub(1, Ordering::SeqCst) - 1;
        metrics::gauge!(crate::metrics::FANOUT_QUEUE_DEPTH).set(left as f64);
        if left == 0 {
            let _g = self.idle.0.lock();
            self.idle.1.notify_all();
        }
    }

    /// Queues a durable job whose backlog slot is already reserved.
    pub fn enqueue(&self, rec: JobRecord) {
        metrics::counter!(crate::metrics::FANOUT_JOBS, "kind" => fanout::kind_label(&rec)).increment(1);
        // The receiver lives as long as the workers; if it is gone the job stays pending on disk.
        let _ = self.jobs.send(Job::Record {
            rec,
            acked: Some(Instant::now()),
        });
    }
}

/// Whether an entry's ephemeral post has expired.
pub(crate) fn expired(e: &Entry, now_ms: u64) -> bool {
    e.expires_at_ms.is_some_and(|t| t <= now_ms)
}

/// A feed item list's weight for the hot layer: its pointers, plus each post's weight shared
/// among everything holding that post when the list is weighed (posts are `Arc`s shared by
/// the posts map and every page showing them; a post held only here is charged in full).
pub(crate) fn items_weight(items: &[FeedItem]) -> usize {
    items
        .iter()
        .map(|i| {
            let post = 96 + i.post.text.len() + i.post.media.iter().map(|m| m.len() + 24).sum::<usize>();
            std::mem::size_of::<FeedItem>() + post / Arc::strong_count(&i.post).max(1)
        })
        .sum()
}
