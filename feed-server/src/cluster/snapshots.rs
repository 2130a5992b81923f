//! Partition snapshots in JetStream, and the log's older events of a partition dropped once
//! snapshots cover them.
//!
//! With each checkpoint, a node writes a snapshot of every partition it keeps
//! (`Engine::export_partitions`: the partition's owned rows at the node's applied sequence),
//! uploads it to the object store `feedline-checkpoints` under `partitions/<p>/`, and records it
//! in the partition's manifest (KV bucket `feedline-partitions`, key `p<p>`, by compare-and-set:
//! the two newest snapshots, newest first, and how far the partition's events were dropped).
//!
//! A node taking a partition over restores the newest snapshot at or below its own applied
//! sequence that is newer than what it has, and replays only the partition's events after it.
//!
//! The partition's own subjects (`feedline.o.<p>.>`) are then purged up to a snapshot, the
//! **base**: the newest one at or below the oldest checkpoint of any node in the map. Every
//! node's applied sequence is at or past its own checkpoint's, so whichever node takes the
//! partition over can restore the base (or a newer snapshot) and finds every event after it;
//! and a node restored from its checkpoint, or restarted, reads its partitions' events from
//! there. The manifest keeps the newest snapshot, the one before it and the base. The purge
//! point is recorded before the purge: a node that finds its own position below it and no
//! snapshot it can use waits rather than replay a gap.

use std::path::{Path, PathBuf};

use async_nats::jetstream::{self, kv, object_store, stream};
use feed_engine::PartitionSnapshot;
use serde::{Deserialize, Serialize};

use super::{Cluster, checkpoint, failover, ring, subjects};

/// KV bucket of the partitions' snapshot manifests.
const BUCKET: &str = "feedline-partitions";
/// Attempts at a manifest's compare-and-set before giving up until the next round.
const CAS_ATTEMPTS: usize = 16;

/// One snapshot of a partition in the object store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRef {
    /// The log sequence it is current as of.
    pub seq: u64,
    /// Its object's name.
    pub object: String,
    /// The node that wrote it.
    pub node: String,
    /// Its size.
    pub bytes: u64,
}

/// A partition's snapshots and how far its events were dropped from the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionManifest {
    /// Newest first: the newest, the one before it and the base (the purge point's).
    pub snapshots: Vec<SnapshotRef>,
    /// The partition's own events at or below this sequence may be gone from the log.
    pub purged_to: u64,
}

impl PartitionManifest {
    /// The snapshot a node at applied sequence `at`, holding the partition's events up to
    /// `from`, should restore: the newest at or below `at` and above `from`. `Ok(None)`: replay
    /// from `from`. An error when the events after `from` may be gone and no snapshot serves.
    pub fn choose(&self, p: u32, from: u64, at: u64) -> Result<Option<&SnapshotRef>, String> {
        if let Some(s) = self.snapshots.iter().find(|s| s.seq <= at && s.seq > from) {
            return Ok(Some(s));
        }
        if from < self.purged_to {
            return Err(format!(
                "partition {p}'s events up to {} were dropped and no snapshot lies between this node's position {from} and its applied sequence {at}; waiting for this node to catch up",
                self.purged_to
            ));
        }
        Ok(None)
    }

    /// Where the partition's events can be dropped to, given the oldest node checkpoint: the
    /// newest snapshot at or below it (`None`: none, or no further than already).
    pub fn purge_point(&self, node_floor: u64) -> Option<u64> {
        let to = self.snapshots.iter().map(|s| s.seq).find(|&s| s <= node_floor)?;
        (to > self.purged_to).then_some(to)
    }

    /// Records `new` as the newest snapshot, keeping the one before it and the base; returns
    /// the snapshots no longer kept.
    pub fn record(&mut self, new: SnapshotRef) -> Vec<SnapshotRef> {
        let before = std::mem::take(&mut self.snapshots);
        self.snapshots.push(new);
        let mut dropped = Vec::new();
        for (i, s) in before.into_iter().enumerate() {
            if i == 0 || s.seq == self.purged_to {
                self.snapshots.push(s);
            } else {
                dropped.push(s);
            }
        }
        dropped
    }
}

/// The handles partition snapshots need.
#[derive(Clone)]
pub(super) struct Snapshots {
    kv: kv::Store,
    objects: object_store::ObjectStore,
    map_kv: kv::Store,
    stream: stream::Stream,
    /// Where snapshot files are written and downloaded to.
    scratch: PathBuf,
    partitions: u32,
}

fn key(p: u32) -> String {
    format!("p{p}")
}

impl Snapshots {
    /// Opens (creating if needed) the manifest bucket.
    pub async fn open(
        js: &jetstream::Context,
        replicas: usize,
        stream: stream::Stream,
        scratch: &Path,
        partitions: u32,
    ) -> Result<Snapshots, String> {
        let kv = match js.get_key_value(BUCKET).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: BUCKET.into(),
                    num_replicas: replicas,
                    storage: stream::StorageType::File,
                    history: 1,
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("partition snapshot bucket: {e}"))?,
        };
        let objects = checkpoint::bucket(js, replicas).await?;
        let (map_kv, _) = failover::buckets(js, replicas).await?;
        Ok(Snapshots {
            kv,
            objects,
            map_kv,
            stream,
            scratch: scratch.to_path_buf(),
            partitions,
        })
    }

    /// The cluster map's bucket (the epoch record, which holds the replicated events' drop
    /// point: `retention`).
    pub(super) fn map_kv(&self) -> &kv::Store {
        &self.map_kv
    }

    /// The object store of checkpoints and snapshots.
    pub(super) fn objects(&self) -> &object_store::ObjectStore {
        &self.objects
    }

    /// The cluster's partition count.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Partition `p`'s manifest and its revision (0: none stored).
    pub async fn manifest(&self, p: u32) -> Result<(PartitionManifest, u64), String> {
        match self
            .kv
            .entry(key(p))
            .await
            .map_err(|e| format!("reading partition {p}'s manifest: {e}"))?
        {
            Some(e) if !e.value.is_empty() => Ok((
                serde_json::from_slice(&e.value).map_err(|x| format!("partition {p}'s manifest: {x}"))?,
                e.revision,
            )),
            _ => Ok((PartitionManifest::default(), 0)),
        }
    }

    /// Stores `m` if the manifest is still at `revision`; false if another node changed it.
    async fn store(&self, p: u32, m: &PartitionManifest, revision: u64) -> Result<bool, String> {
        let v = serde_json::to_vec(m).map_err(|e| e.to_string())?;
        Ok(self.put_if(&key(p), v, revision).await)
    }

    /// Stores `value` under `key` if it is still at `revision` (0: absent); false if another
    /// node changed it meanwhile.
    pub(super) async fn put_if(&self, key: &str, value: Vec<u8>, revision: u64) -> bool {
        match revision {
            0 => self.kv.create(key, value.into()).await.is_ok(),
            r => self.kv.update(key, value.into(), r).await.is_ok(),
        }
    }

    /// Drops the log's messages on `filter` up to sequence `to`; returns how many went.
    pub(super) async fn drop_up_to(&self, filter: String, to: u64) -> Result<u64, String> {
        let done = self
            .stream
            .purge()
            .filter(filter)
            .sequence(to + 1)
            .await
            .map_err(|e| e.to_string())?;
        metrics::counter!(feed_engine::metrics::LOG_PURGES).increment(1);
        Ok(done.purged)
    }

    /// Uploads a snapshot this node wrote and records it as its partition's newest (unless a
    /// newer one is recorded already); the snapshot it pushes out of the manifest is deleted.
    pub async fn publish(&self, node: &str, snap: &PartitionSnapshot) -> Result<bool, String> {
        let p = snap.partition;
        // An idle partition is snapshotted at the same sequence round after round: nothing new.
        let (m, _) = self.manifest(p).await?;
        if m.snapshots.first().is_some_and(|s| s.seq >= snap.seq) {
            return Ok(false);
        }
        // A name no other upload has: an upload that loses the race below deletes its own object,
        // never one a manifest records (with `<seq>-<node>` alone, a second round at the same
        // sequence overwrote, then deleted, the recorded snapshot).
        let object = format!("partitions/{p}/{}-{node}-{}", snap.seq, super::now_ms());
        let mut f = tokio::fs::File::open(&snap.path).await.map_err(|e| e.to_string())?;
        self.objects
            .put(object.as_str(), &mut f)
            .await
            .map_err(|e| format!("uploading partition {p}'s snapshot: {e}"))?;
        let new = SnapshotRef {
            seq: snap.seq,
            object: object.clone(),
            node: node.to_string(),
            bytes: snap.bytes,
        };
        for _ in 0..CAS_ATTEMPTS {
            let (mut m, rev) = self.manifest(p).await?;
            if m.snapshots.first().is_some_and(|s| s.seq >= snap.seq) {
                let _ = self.objects.delete(object.as_str()).await;
                return Ok(false);
            }
            let dropped = m.record(new.clone());
            if self.store(p, &m, rev).await? {
                for d in dropped {
                    let _ = self.objects.delete(d.object.as_str()).await;
                }
                return Ok(true);
            }
        }
        let _ = self.objects.delete(object.as_str()).await;
        Err(format!(
            "recording partition {p}'s snapshot: the manifest kept changing"
        ))
    }

    /// Drops partition `p`'s own events up to its purge point, recording the point first.
    /// Returns how many messages went.
    pub async fn purge(&self, p: u32, node_floor: u64) -> Result<u64, String> {
        for _ in 0..CAS_ATTEMPTS {
            let (mut m, rev) = self.manifest(p).await?;
            let Some(to) = m.purge_point(node_floor) else {
                return Ok(0);
            };
            m.purged_to = to;
            if !self.store(p, &m, rev).await? {
                continue;
            }
            let purged = self
                .drop_up_to(subjects::owned_all(p), to)
                .await
                .map_err(|e| format!("purging partition {p}'s events: {e}"))?;
            tracing::info!(
                partition = p,
                to,
                messages = purged,
                "dropped a partition's older events"
            );
            return Ok(purged);
        }
        Err(format!(
            "recording partition {p}'s purge point: the manifest kept changing"
        ))
    }

    /// Downloads a snapshot into the scratch folder; returns the file.
    pub async fn download(&self, r: &SnapshotRef) -> Result<PathBuf, String> {
        let mut obj = self
            .objects
            .get(r.object.as_str())
            .await
            .map_err(|e| format!("partition snapshot {}: {e}", r.object))?;
        let path = self
            .scratch
            .join(format!("restore-{}-{}", std::process::id(), r.object.replace('/', "-")));
        let mut out = tokio::fs::File::create(&path).await.map_err(|e| e.to_string())?;
        tokio::io::copy(&mut obj, &mut out).await.map_err(|e| e.to_string())?;
        out.sync_all().await.map_err(|e| e.to_string())?;
        Ok(path)
    }

    /// Downloads the snapshots `refs`, hands their files to `f` on the blocking pool, and
    /// removes the files, whatever `f` answered.
    pub async fn with_files<T: Send + 'static>(
        &self,
        refs: &[SnapshotRef],
        f: impl FnOnce(&[&Path]) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let mut files = Vec::with_capacity(refs.len());
        let mut fetched = Ok(());
        for r in refs {
            match self.download(r).await {
                Ok(file) => files.push(file),
                Err(e) => {
                    fetched = Err(e);
                    break;
                }
            }
        }
        let result = match fetched {
            Ok(()) => {
                let fs = files.clone();
                tokio::task::spawn_blocking(move || {
                    let paths: Vec<&Path> = fs.iter().map(PathBuf::as_path).collect();
                    f(&paths)
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
            }
            Err(e) => Err(e),
        };
        for file in &files {
            let _ = tokio::fs::remove_file(file).await;
        }
        result
    }

    /// Restores the snapshots the partitions `wanted` need, if any, for a takeover at applied
    /// sequence `at` by a node holding each one's events up to its position (`(p, from)`): all
    /// in one restore (one walk of the node's owned rows). Returns the partitions restored,
    /// with their snapshots' sequences.
    pub async fn restore_all(
        &self,
        engine: &feed_engine::Engine,
        wanted: &[(u32, u64)],
        at: u64,
    ) -> Result<Vec<(u32, u64)>, String> {
        let mut chosen = Vec::new();
        for &(p, from) in wanted {
            let (m, _) = self.manifest(p).await?;
            if let Some(r) = m.choose(p, from, at)? {
                chosen.push(r.clone());
            }
        }
        if chosen.is_empty() {
            return Ok(Vec::new());
        }
        let e = engine.clone();
        let parts = self.partitions;
        let restored = self
            .with_files(&chosen, move |paths| {
                e.restore_partitions(paths, &|u| ring::partition_of(u, parts))
                    .map_err(|e| format!("restoring partition snapshots: {e}"))
            })
            .await?;
        for (r, &(p, seq)) in chosen.iter().zip(&restored) {
            tracing::info!(
                partition = p,
                seq,
                from = r.node,
                bytes = r.bytes,
                "restored a partition snapshot"
            );
        }
        Ok(restored)
    }
}

/// Writes, uploads and records a snapshot of every partition this node keeps, then drops the
/// events the manifests allow. Run after each checkpoint.
pub(super) async fn take(cluster: &Cluster, snaps: &Snapshots) -> Result<(), String> {
    let parts = cluster.kept_partitions();
    if parts.is_empty() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let dir = snaps.scratch.join(format!("partitions-{}", std::process::id()));
    tokio::fs::create_dir_all(&dir).await.map_err(|e| e.to_string())?;
    let engine = cluster.engine().clone();
    let n = snaps.partitions;
    let d = dir.clone();
    let written =
        tokio::task::spawn_blocking(move || engine.export_partitions(&parts, &|u| ring::partition_of(u, n), &d))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("writing partition snapshots: {e}"));
    let mut result = Ok(());
    if let Ok(written) = &written {
        for s in written {
            match snaps.publish(cluster.name(), s).await {
                Ok(true) => metrics::counter!(feed_engine::metrics::PARTITION_SNAPSHOTS).increment(1),
                Ok(false) => {}
                Err(e) => result = Err(e),
            }
        }
        tracing::info!(
            partitions = written.len(),
            seq = written.first().map(|s| s.seq),
            rows = written.iter().map(|s| s.rows).sum::<u64>(),
            bytes = written.iter().map(|s| s.bytes).sum::<u64>(),
            ms = started.elapsed().as_millis() as u64,
            "partition snapshots uploaded"
        );
    }
    let _ = tokio::fs::remove_dir_all(&dir).await;
    let written = written?;
    result?;
    snaps
        .release_down_nodes(cluster.cfg.down_node_retention_s.saturating_mul(1000))
        .await?;
    let floor = snaps.node_floor(cluster).await?;
    for s in &written {
        snaps.purge(s.partition, floor.seq).await?;
    }
    snaps.purge_replicated(&floor).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(seq: u64) -> SnapshotRef {
        SnapshotRef {
            seq,
            object: format!("o{seq}"),
            node: "a".into(),
            bytes: 1,
        }
    }

    #[test]
    fn a_takeover_restores_the_newest_snapshot_it_can_use_and_never_replays_a_gap() {
        let m = PartitionManifest {
            snapshots: vec![snap(200), snap(100)],
            purged_to: 100,
        };
        assert_eq!(m.choose(0, 50, 300).unwrap().map(|s| s.seq), Some(200));
        assert_eq!(
            m.choose(0, 50, 150).unwrap().map(|s| s.seq),
            Some(100),
            "the newer is past this node"
        );
        assert_eq!(m.choose(0, 200, 300).unwrap(), None, "its own events are newer: replay");
        assert_eq!(m.choose(0, 120, 150).unwrap(), None, "events after 120 are all there");
        assert!(m.choose(0, 50, 90).is_err(), "events dropped, no snapshot it can use");
        let fresh = PartitionManifest::default();
        assert_eq!(fresh.choose(0, 0, 10).unwrap(), None);
    }

    #[test]
    fn events_are_dropped_only_up_to_a_snapshot_every_node_has_applied_past() {
        let mut m = PartitionManifest::default();
        assert!(m.record(snap(100)).is_empty());
        assert_eq!(m.purge_point(1_000), Some(100), "the snapshot every node has passed");
        assert_eq!(m.purge_point(0), None, "a node without a checkpoint holds everything");
        assert!(m.record(snap(200)).is_empty());
        assert_eq!(m.purge_point(150), Some(100), "never past the oldest node checkpoint");
        assert_eq!(m.purge_point(250), Some(200));
        m.purged_to = 100;
        // A third snapshot: the newest, the one before it and the base stay.
        assert!(m.record(snap(300)).is_empty());
        let seqs = |m: &PartitionManifest| m.snapshots.iter().map(|s| s.seq).collect::<Vec<_>>();
        assert_eq!(seqs(&m), vec![300, 200, 100]);
        assert_eq!(m.record(snap(400)).iter().map(|s| s.seq).collect::<Vec<_>>(), vec![200]);
        assert_eq!(
            seqs(&m),
            vec![400, 300, 100],
            "the base is kept while events rest on it"
        );
        assert_eq!(m.purge_point(350), Some(300));
        m.purged_to = 300;
        assert_eq!(m.record(snap(500)).iter().map(|s| s.seq).collect::<Vec<_>>(), vec![100]);
        assert_eq!(seqs(&m), vec![500, 400, 300]);
    }

    #[test]
    fn a_node_behind_the_newer_snapshots_restores_the_base() {
        // Dropped to 100 because every node's checkpoint is past it, so a node taking the
        // partition over is past it too, however far behind the newer snapshots it is.
        let mut m = PartitionManifest::default();
        m.record(snap(100));
        m.purged_to = m.purge_point(120).unwrap();
        m.record(snap(900));
        m.record(snap(950));
        assert_eq!(m.choose(0, 10, 130).unwrap().map(|s| s.seq), Some(100));
    }
}
