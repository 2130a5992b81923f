//! Failover: liveness, suspicion, and partitions changing hands.
//!
//! Every node renews its liveness record (bucket `feedline-alive`, key = its name) each
//! heartbeat — a fifth of the suspicion time — and so its lease ([`Placement`]). Each node
//! watches the others' records: one whose record has not changed (by revision, so no clocks are
//! compared) for the whole suspicion time is proposed down, by a compare-and-set of the epoch
//! record on the revision read; of several nodes proposing, one wins and the rest read the new
//! epoch. Every node then applies the epoch: the partitions it gains are replayed and taken
//! over by its apply loop ([`super::apply::Handover`]) while calls for them are answered
//! `UNAVAILABLE`; the authors it gains have their recent posts fanned out again from the down
//! node's last reported floor. A node that finds itself down holds nothing; once its lease
//! holds and it has caught up, it proposes its own return, and its partitions come back to it
//! the same way (the node giving them up acknowledges the epoch in its liveness record, with the
//! floor of its unfinished fanout, before the returning node fans out again from there).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use tokio::sync::{oneshot, watch};

use feed_engine::Engine;

use super::placement::{Alive, EpochRecord, Placement};
use super::ring::Ring;
use super::{Cluster, Connected, apply, now_ms, subjects};

/// KV bucket of the nodes' liveness records.
pub(super) const ALIVE_BUCKET: &str = "feedline-alive";
/// Key of the epoch record in the map bucket.
pub(super) const EPOCH_KEY: &str = "epoch";

/// The liveness bucket, created if missing.
async fn alive_bucket(js: &jetstream::Context, replicas: usize) -> Result<kv::Store, String> {
    match js.get_key_value(ALIVE_BUCKET).await {
        Ok(b) => Ok(b),
        Err(_) => js
            .create_key_value(kv::Config {
                bucket: ALIVE_BUCKET.into(),
                history: 1,
                num_replicas: replicas,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("liveness bucket: {e}")),
    }
}

/// The map bucket, which holds the epoch record (it exists once the map was agreed on).
pub(super) async fn map_bucket(js: &jetstream::Context) -> Result<kv::Store, String> {
    js.get_key_value(super::MAP_BUCKET)
        .await
        .map_err(|e| format!("map bucket: {e}"))
}

/// The map bucket and the liveness bucket.
pub(super) async fn buckets(js: &jetstream::Context, replicas: usize) -> Result<(kv::Store, kv::Store), String> {
    Ok((map_bucket(js).await?, alive_bucket(js, replicas).await?))
}

/// The epoch record and its revision (epoch 0, nobody down, revision 0 when none is stored).
pub(super) async fn read_epoch(map_kv: &kv::Store) -> Result<(EpochRecord, u64), String> {
    match map_kv
        .entry(EPOCH_KEY)
        .await
        .map_err(|e| format!("reading the epoch: {e}"))?
    {
        Some(e) if !e.value.is_empty() => {
            let rec = serde_json::from_slice(&e.value).map_err(|x| format!("epoch record: {x}"))?;
            Ok((rec, e.revision))
        }
        _ => Ok((EpochRecord::default(), 0)),
    }
}

/// Stores `rec` if the record is still at `revision` (0: none stored yet). False if another
/// node changed it first.
pub(super) async fn propose(map_kv: &kv::Store, rec: &EpochRecord, revision: u64) -> bool {
    let Ok(v) = serde_json::to_vec(rec) else { return false };
    if revision == 0 {
        map_kv.create(EPOCH_KEY, v.into()).await.is_ok()
    } else {
        map_kv.update(EPOCH_KEY, v.into(), revision).await.is_ok()
    }
}

/// How long a floor acknowledged with an epoch bounds the floors reported after it.
const ACK_FLOOR_KEPT: Duration = Duration::from_secs(60);

/// Renews this node's liveness record (and lease) every heartbeat until `stop`, apart from the
/// epoch loop: a handover that waits on the log must not make the node look silent.
pub(super) async fn beat(c: Arc<Cluster>, alive_kv: kv::Store, mut stop: watch::Receiver<bool>) {
    let beat = heartbeat_every(c.cfg.suspicion_ms);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(beat) => {}
            _ = stop.changed() => return,
        }
        c.heartbeat(&alive_kv).await;
    }
}

/// How often the liveness loop reads the epoch record at least.
const EPOCH_POLL: Duration = Duration::from_millis(250);

/// A fifth of the suspicion time, within 50 ms – 2 s.
pub(super) fn heartbeat_every(suspicion_ms: u64) -> Duration {
    (Duration::from_millis(suspicion_ms) / 5).clamp(Duration::from_millis(50), Duration::from_secs(2))
}

/// What the loop tracks of another node's liveness record.
struct Seen {
    revision: u64,
    since: Instant,
    alive: Alive,
}

impl Cluster {
    /// The time from which this node's authors' posts may still have fanout pending: the oldest
    /// pending post's, or now, less the longest a write may take to be applied after its id was
    /// minted.
    pub(super) async fn fan_floor(&self) -> u64 {
        let e = self.engine.clone();
        let oldest = tokio::task::spawn_blocking(move || e.oldest_pending_ms())
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten();
        oldest
            .unwrap_or(u64::MAX)
            .min(now_ms())
            .saturating_sub(self.cfg.apply_timeout_ms)
    }

    /// Stores this node's liveness record — the newest epoch it has acknowledged, and the
    /// floor of its unfinished fanout (no later than the floor it acknowledged that epoch with,
    /// for a minute) — and renews the lease when it is stored.
    pub(super) async fn heartbeat(&self, alive_kv: &kv::Store) -> bool {
        let now = self.fan_floor().await;
        let (epoch_seen, acked_floor, at) = *self.acked.lock();
        let floor_ms = if at.elapsed() < ACK_FLOOR_KEPT {
            now.min(acked_floor)
        } else {
            now
        };
        let rec = Alive { epoch_seen, floor_ms };
        let Ok(v) = serde_json::to_vec(&rec) else { return false };
        let ok = alive_kv.put(self.name(), v.into()).await.is_ok();
        // Read after the put: an epoch that declares this node down is proposed only after a
        // suspicion time without a new record, so one not stored yet now cannot take effect
        // while the lease just renewed holds.
        if ok
            && read_epoch(self.snapshots.map_kv())
                .await
                .is_ok_and(|(rec, _)| rec.lets_renew(self.name(), self.placement.epoch()))
        {
            self.placement.renew();
        }
        ok
    }

    /// Applies a newer epoch: hands lost partitions back and takes gained ones over (through the
    /// apply loop), acknowledges the epoch, then fans the gained authors' recent posts out again.
    async fn apply_epoch(&self, rec: &EpochRecord, alive_kv: &kv::Store, map_kv: &kv::Store) -> Result<(), String> {
        let floor = self.fan_floor().await;
        let before = self.placement.holders();
        // A node that joined stored a newer map before the epoch that lets it hold anything.
        let mut map = self.placement.map();
        if let Some(newer) = super::connect::read_map(map_kv).await?
            && newer.version > map.version
            && newer.nodes.starts_with(&map.nodes)
        {
            self.adopt_map(&newer)?;
            tracing::info!(
                version = newer.version,
                nodes = newer.nodes.len(),
                "adopted a newer cluster map"
            );
            map = newer;
        }
        let (lost, gained) = self.placement.advance(&map, rec);
        self.engine.owners_changed();
        tracing::info!(epoch = rec.epoch, down = ?rec.down, ?lost, ?gained, "applying a new epoch");
        if !lost.is_empty() || !gained.is_empty() {
            let mut from = Vec::with_capacity(gained.len());
            for &p in &gained {
                let at = self.engine.partition_seq(p).map_err(|e| e.to_string())?.unwrap_or(0);
                from.push((p, at));
            }
            let (done, rx) = oneshot::channel();
            let h = apply::Handover {
                lost,
                gained: from,
                filter: subjects::consumed_by_owner_of(&self.placement.mine()),
                done,
            };
            self.handovers
                .send(h)
                .await
                .map_err(|_| "the apply loop has stopped".to_string())?;
            let at = rx.await.map_err(|_| "the apply loop has stopped".to_string())??;
            tracing::info!(epoch = rec.epoch, at, "partitions handed over");
        }
        // Acknowledge, with the floor from before this node stopped fanning out what it lost.
        *self.acked.lock() = (rec.epoch, floor, Instant::now());
        self.heartbeat(alive_kv).await;
        if gained.is_empty() {
            return Ok(());
        }
        let since = self.refan_floor(rec, &before, &gained, alive_kv).await;
        self.placement.ready(&gained);
        self.engine.owners_changed();
        let e = self.engine.clone();
        let placement = self.placement.clone();
        let ps = gained.clone();
        let n = tokio::task::spawn_blocking(move || e.refan_since(&|a| ps.contains(&placement.partition(a)), since))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        tracing::info!(
            epoch = rec.epoch,
            since,
            posts = n,
            "fanned the gained authors' recent posts out again"
        );
        Ok(())
    }

    /// From when to fan out again the posts of the authors in `gained`: the earliest floor of
    /// their previous holders — a down node's from the epoch record, a live one's from its
    /// liveness record once it has acknowledged this epoch (waiting up to the suspicion time).
    async fn refan_floor(&self, rec: &EpochRecord, before: &[usize], gained: &[u32], alive_kv: &kv::Store) -> u64 {
        let fallback = rec
            .at_ms
            .saturating_sub(self.cfg.apply_timeout_ms + self.cfg.suspicion_ms);
        let mut since = u64::MAX;
        let mut prev: Vec<usize> = gained.iter().map(|&p| before[p as usize]).collect();
        prev.sort_unstable();
        prev.dedup();
        for pos in prev {
            let name = self.placement.node_name(pos);
            let floor = match rec.floors.get(&name) {
                Some(&f) => f,
                None => self
                    .acknowledged_floor(&name, rec.epoch, alive_kv)
                    .await
                    .unwrap_or(fallback),
            };
            since = since.min(floor);
        }
        since.min(rec.at_ms)
    }

    /// The floor in `name`'s liveness record once it has seen `epoch`; `None` if it does not
    /// within the suspicion time.
    async fn acknowledged_floor(&self, name: &str, epoch: u64, alive_kv: &kv::Store) -> Option<u64> {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.suspicion_ms.max(1000));
        while Instant::now() < deadline {
            if let Ok(Some(v)) = alive_kv.get(name).await
                && let Ok(a) = serde_json::from_slice::<Alive>(&v)
                && a.epoch_seen >= epoch
            {
                return Some(a.floor_ms);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Connected {
    /// Reconciles the database's partition records with the current epoch at start, before
    /// the node consumes the log: a partition held at the last run (no record) but not now is
    /// recorded as applied up to `applied`; one held now but recorded as not held (a handover a
    /// crash interrupted) is returned with its position, to be taken over. A database that has
    /// never recorded any (new, or older than failover) held exactly its ring partitions.
    pub(super) async fn settle_partitions(
        &self,
        engine: &Engine,
        placement: &Arc<Placement>,
        applied: u64,
    ) -> Result<Vec<(u32, u64)>, String> {
        let e = engine.clone();
        let partitions = self.map.partitions;
        let base = Ring::new(&self.map).partitions_of(self.me);
        let now = placement.mine();
        tokio::task::spawn_blocking(move || -> feed_engine::Result<Vec<(u32, u64)>> {
            let mut recorded = Vec::with_capacity(partitions as usize);
            for p in 0..partitions {
                recorded.push(e.partition_seq(p)?);
            }
            if recorded.iter().all(Option::is_none) {
                for p in 0..partitions {
                    if !base.contains(&p) {
                        e.set_partition_seq(p, Some(0))?;
                        recorded[p as usize] = Some(0);
                    }
                }
            }
            let mut gains = Vec::new();
            for p in 0..partitions {
                match (recorded[p as usize], now.contains(&p)) {
                    (None, false) => e.set_partition_seq(p, Some(applied))?,
                    (Some(at), true) => gains.push((p, at)),
                    _ => {}
                }
            }
            Ok(gains)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }
}

impl Cluster {
    /// Resolves with the reason once this process must be restarted to serve again (it was
    /// listed behind while it ran: `retention`).
    pub fn must_restart(&self) -> watch::Receiver<Option<String>> {
        self.restart.subscribe()
    }

    /// `UNAVAILABLE` (retry on another node) once this process must be restarted: what it
    /// holds may lack events the log dropped while it was cut off, so from then until it exits
    /// it answers nothing, not even reads of what every node keeps.
    pub fn refuse_if_restarting(&self) -> Result<(), tonic::Status> {
        match &*self.restart.borrow() {
            None => Ok(()),
            Some(why) => Err(super::peers::retry_later(format!(
                "node {} is stopping to be rebuilt ({why}); retry on another node",
                self.name()
            ))),
        }
    }

    /// After a start that finished an interrupted takeover: the gained authors' recent posts
    /// fanned out again, from the epoch's recorded floors (or its time less the longest a
    /// write and a suspicion take).
    pub(super) async fn refan_after_start(&self, rec: &EpochRecord, gains: &[(u32, u64)]) -> Result<(), String> {
        let fallback = rec
            .at_ms
            .saturating_sub(self.cfg.apply_timeout_ms + self.cfg.suspicion_ms);
        let since = rec.floors.values().copied().min().unwrap_or(fallback).min(fallback);
        let e = self.engine.clone();
        let placement = self.placement.clone();
        let ps: Vec<u32> = gains.iter().map(|&(p, _)| p).collect();
        tokio::task::spawn_blocking(move || e.refan_since(&|a| ps.contains(&placement.partition(a)), since))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// The liveness loop: renews this node's record, applies new epochs, proposes silent nodes
/// down and this node's own return. Runs until `stop`.
pub(super) async fn run(c: Arc<Cluster>, alive_kv: kv::Store, map_kv: kv::Store, mut stop: watch::Receiver<bool>) {
    let suspicion = Duration::from_millis(c.cfg.suspicion_ms);
    let beat = heartbeat_every(c.cfg.suspicion_ms);
    // The epoch record is also read this often, in case the watch misses a change (seen once:
    // a survivor applied a drain's epoch 2 s late, on its heartbeat tick).
    let poll = beat.min(EPOCH_POLL);
    let mut seen: HashMap<usize, Seen> = HashMap::new();
    // A new epoch is applied as soon as it is stored (the watch), not a heartbeat later: nodes
    // that lose and gain the same partitions switch within milliseconds of each other.
    let mut changes: Option<kv::Watch> = None;
    let mut now = false;
    // Other nodes' records are looked at once a heartbeat, not on every epoch poll.
    let mut looked = Instant::now().checked_sub(beat).unwrap_or_else(Instant::now);
    let mut retired_told = false;
    loop {
        if changes.is_none() {
            // Bounded: with the bucket's leader being elected the request can hang for long.
            changes = tokio::time::timeout(beat, map_kv.watch(EPOCH_KEY))
                .await
                .ok()
                .and_then(|w| w.ok());
        }
        if !now {
            let changed = async {
                match changes.as_mut() {
                    Some(w) => w.next().await.and_then(|r| r.ok()).is_some(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                alive = changed => {
                    if !alive {
                        changes = None;
                    }
                }
                _ = stop.changed() => return,
            }
        }
        now = false;
        let (rec, revision) = match read_epoch(&map_kv).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reading the epoch record");
                continue;
            }
        };
        if rec.epoch > c.placement.epoch() {
            if let Err(e) = c.apply_epoch(&rec, &alive_kv, &map_kv).await {
                tracing::error!(error = %e, "applying epoch {}; this node stops", rec.epoch);
                return;
            }
            seen.clear();
            continue;
        }
        let me = c.name().to_string();
        if rec.behind.contains(&me) {
            // Cut off (not stopped) for longer than the log waits for a node: its consumer may
            // have skipped what the log dropped meanwhile, so it never returns as it is; a
            // restart rebuilds it from the newest checkpoint (`retention`). Looked at before
            // the lease, which a node listed behind never renews (`EpochRecord::lets_renew`).
            if c.restart.borrow().is_none() {
                let why = "this node was down longer than the log waits for a node (--down-node-retention-s); restart it: it rebuilds from the newest checkpoint";
                tracing::error!("{why}");
                c.restart.send_replace(Some(why.to_string()));
            }
            continue;
        }
        if !c.placement.lease_holds() || c.draining() {
            continue;
        }
        if rec.retired.contains(&me) {
            // Removed for good while it ran (it started just before): it never returns.
            if !retired_told {
                tracing::error!(
                    "this node was removed from the cluster for good: it holds nothing and will not return; stop it"
                );
                retired_told = true;
            }
            continue;
        }
        if rec.down.contains(&me) {
            let mut next = rec.clone();
            next.epoch += 1;
            next.at_ms = now_ms();
            next.mark_up(&me);
            if propose(&map_kv, &next, revision).await {
                tracing::info!(epoch = next.epoch, "proposed this node's return");
                now = true;
            }
            continue;
        }
        if looked.elapsed() < beat {
            continue;
        }
        looked = Instant::now();
        for (pos, node) in c.placement.map().nodes.iter().enumerate() {
            if pos == c.me || rec.down.contains(&node.name) {
                continue;
            }
            let entry = alive_kv.entry(&node.name).await.ok().flatten();
            let revision_now = entry.as_ref().map(|e| e.revision).unwrap_or(0);
            let s = seen.entry(pos).or_insert(Seen {
                revision: revision_now,
                since: Instant::now(),
                alive: Alive::default(),
            });
            if let Some(a) = entry.and_then(|e| serde_json::from_slice::<Alive>(&e.value).ok()) {
                s.alive = a;
            }
            if s.revision != revision_now {
                s.revision = revision_now;
                s.since = Instant::now();
                continue;
            }
            if s.since.elapsed() < suspicion {
                continue;
            }
            let mut next = rec.clone();
            next.epoch += 1;
            next.at_ms = now_ms();
            next.mark_down(&node.name, next.at_ms);
            // Never zero: a node that never stored a record may have had anything pending.
            let floor = if s.alive.floor_ms == 0 {
                next.at_ms.saturating_sub(c.cfg.apply_timeout_ms + c.cfg.suspicion_ms)
            } else {
                s.alive.floor_ms
            };
            next.floors.insert(node.name.clone(), floor);
            if propose(&map_kv, &next, revision).await {
                tracing::warn!(node = %node.name, epoch = next.epoch, "declared a silent node down");
                now = true;
            }
            break;
        }
    }
}
