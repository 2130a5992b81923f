//! Checkpoints: a RocksDB checkpoint of the node's database, uploaded file by file into a
//! JetStream object store bucket (replicated like the stream), with a manifest naming the files
//! and the log sequence they cover. A node that lost its disk restores the latest one and
//! replays the log from there. Each checkpoint is followed by snapshots of the partitions the
//! node keeps (`snapshots`), which a node taking a partition over restores.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, object_store};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::{Cluster, Connected, connect};
use crate::config::ClusterConfig;

/// Object store bucket of every node's checkpoints.
const BUCKET: &str = "feedline-checkpoints";

/// What a checkpoint holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The log sequence the checkpoint covers (events after it are replayed).
    pub seq: u64,
    /// Object name prefix of its files.
    pub prefix: String,
    /// File names (relative to the database folder) and sizes.
    pub files: Vec<(String, u64)>,
    /// When it was taken, ms since the Unix epoch.
    pub taken_at_ms: u64,
}

fn manifest_name(node: &str) -> String {
    format!("{node}/manifest")
}

pub(super) async fn bucket(js: &jetstream::Context, replicas: usize) -> Result<object_store::ObjectStore, String> {
    if let Ok(b) = js.get_object_store(BUCKET).await {
        return Ok(b);
    }
    js.create_object_store(object_store::Config {
        bucket: BUCKET.into(),
        num_replicas: replicas,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("checkpoint bucket: {e}"))
}

/// Takes a checkpoint of `cluster`'s database now and uploads it; returns its manifest.
/// `scratch` is a folder for the local copy (removed afterwards).
pub async fn take(cluster: &Cluster, scratch: &Path) -> Result<Manifest, String> {
    let started = Instant::now();
    let engine = cluster.engine().clone();
    let seq = cluster.applied_seq();
    let dir = scratch.join(format!("checkpoint-{seq}-{}", std::process::id()));
    let d = dir.clone();
    tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_dir_all(&d);
        engine.checkpoint(&d)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("checkpoint: {e}"))?;
    // A node the log stopped waiting for may have applied it with a gap since (`retention`):
    // no checkpoint of its database is ever offered. Read after the checkpoint was taken: any
    // gap in it came after a drop that came after the node was listed behind.
    let behind = super::failover::read_epoch(cluster.snapshots.map_kv())
        .await
        .and_then(|(rec, _)| super::retention::may_offer_checkpoint(&rec, cluster.name()));
    let result = match behind {
        Ok(()) => upload(cluster, &dir, seq).await,
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_dir_all(&dir).await;
    let m = result?;
    let bytes: u64 = m.files.iter().map(|f| f.1).sum();
    tracing::info!(
        seq = m.seq,
        files = m.files.len(),
        bytes,
        ms = started.elapsed().as_millis() as u64,
        "checkpoint uploaded"
    );
    metrics::counter!(feed_engine::metrics::CHECKPOINTS).increment(1);
    Ok(m)
}

async fn upload(cluster: &Cluster, dir: &Path, seq: u64) -> Result<Manifest, String> {
    let store = bucket(cluster.js(), cluster.config().replicas).await?;
    let node = cluster.name().to_string();
    // The database's own record of what it applied is exact; `seq` may lag it a little.
    let prefix = format!("{node}/{seq}-{}", super::now_ms());
    let mut files = Vec::new();
    let mut rd = tokio::fs::read_dir(dir).await.map_err(|e| e.to_string())?;
    while let Some(ent) = rd.next_entry().await.map_err(|e| e.to_string())? {
        let name = ent.file_name().to_string_lossy().to_string();
        let mut f = tokio::fs::File::open(ent.path()).await.map_err(|e| e.to_string())?;
        let size = f.metadata().await.map_err(|e| e.to_string())?.len();
        store
            .put(format!("{prefix}/{name}").as_str(), &mut f)
            .await
            .map_err(|e| format!("uploading {name}: {e}"))?;
        files.push((name, size));
    }
    let m = Manifest {
        seq,
        prefix,
        files,
        taken_at_ms: super::now_ms(),
    };
    let old = read_manifest(&store, &node).await.ok().flatten();
    let json = serde_json::to_vec(&m).map_err(|e| e.to_string())?;
    store
        .put(manifest_name(&node).as_str(), &mut json.as_slice())
        .await
        .map_err(|e| format!("uploading the manifest: {e}"))?;
    // The new manifest is in place: the previous checkpoint's files can go.
    if let Some(old) = old {
        for (f, _) in &old.files {
            let _ = store.delete(format!("{}/{f}", old.prefix)).await;
        }
    }
    Ok(m)
}

pub(super) async fn read_manifest(store: &object_store::ObjectStore, node: &str) -> Result<Option<Manifest>, String> {
    let mut obj = match store.get(manifest_name(node)).await {
        Ok(o) => o,
        Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading the checkpoint manifest: {e}")),
    };
    let mut buf = Vec::new();
    obj.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&buf).map(Some).map_err(|e| e.to_string())
}

/// A file in the data folder naming the node whose checkpoint it was restored from, while that
/// node's unfinished fanout is still to be dropped.
const ADOPTED: &str = "ADOPTED-FROM";

/// Writes `bytes` to `path` and syncs them.
pub(super) async fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut f = tokio::fs::File::create(path).await.map_err(|e| e.to_string())?;
    tokio::io::AsyncWriteExt::write_all(&mut f, bytes)
        .await
        .map_err(|e| e.to_string())?;
    f.sync_all().await.map_err(|e| e.to_string())
}

/// Ends the adoption of another node's checkpoint in `data_dir`, once its unfinished fanout
/// was dropped: the data is the node's own from here on.
pub(super) fn adoption_done(data_dir: &Path) -> Result<(), String> {
    std::fs::remove_file(data_dir.join(ADOPTED)).map_err(|e| format!("{ADOPTED}: {e}"))
}

/// A checkpoint restored into an empty data folder.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The log sequence its manifest covers.
    pub seq: u64,
    /// The node that took it: this node, or another when this node never took one.
    pub from: String,
}

/// The checkpoint a node with an empty data folder restores: its own latest, or when it never
/// took one (a node joining), the newest of any node in `nodes`. Every node's database holds the
/// whole replicated read model and a consistent position per partition, so any node's
/// checkpoint serves; the node's own keeps its unfinished fanout, which is its to finish.
///
/// A node rebuilding (`newest`: the log no longer waited for it, `retention`) takes the newest
/// of all, its own included: its own is older than what the log still holds.
async fn choose(
    store: &object_store::ObjectStore,
    me: &str,
    nodes: &[String],
    newest: bool,
) -> Result<Option<(String, Manifest)>, String> {
    if !newest && let Some(m) = read_manifest(store, me).await? {
        return Ok(Some((me.to_string(), m)));
    }
    let mut best: Option<(String, Manifest)> = None;
    for n in nodes.iter().filter(|n| newest || n.as_str() != me) {
        if let Some(m) = read_manifest(store, n).await?
            && best.as_ref().is_none_or(|(_, b)| m.seq > b.seq)
        {
            best = Some((n.clone(), m));
        }
    }
    Ok(best)
}

/// Restores a checkpoint (`choose`) into `data_dir` (which holds no database), reporting
/// progress. None when no node ever took one (the node then replays the whole log).
///
/// The files are downloaded into a folder of their own and moved into `data_dir` only once all
/// of them are on disk, `CURRENT` last: RocksDB sees a database only when it is whole, so a crash
/// or a checkpoint replaced under the download (its files deleted) restores again from scratch.
///
/// When `rebuild`, the node leaves the epoch record's `behind` list once it has chosen a
/// checkpoint at or past the log's drop point, before downloading it (`retention`), and the
/// data folder's rebuild marker goes once the database is whole.
pub async fn restore(
    js: &jetstream::Context,
    cfg: &ClusterConfig,
    nodes: &[String],
    data_dir: &Path,
    rebuild: bool,
) -> Result<Option<Restored>, String> {
    let store = bucket(js, cfg.replicas).await?;
    let chosen = choose(&store, &cfg.node, nodes, rebuild).await?;
    if rebuild {
        let seq = chosen.as_ref().map_or(0, |(_, m)| m.seq);
        super::retention::leave_behind(js, &cfg.node, seq).await?;
    }
    let Some((from, m)) = chosen else {
        tracing::info!("no checkpoint to restore; replaying the log from its start");
        if rebuild {
            super::retention::rebuild_done(data_dir)?;
        }
        return Ok(None);
    };
    let total: u64 = m.files.iter().map(|f| f.1).sum();
    tracing::info!(
        seq = m.seq,
        from,
        files = m.files.len(),
        bytes = total,
        "restoring checkpoint"
    );
    let part = data_dir.join(".restoring");
    let _ = tokio::fs::remove_dir_all(&part).await;
    tokio::fs::create_dir_all(&part).await.map_err(|e| e.to_string())?;
    let mut done = 0u64;
    for (i, (name, size)) in m.files.iter().enumerate() {
        let mut obj = store
            .get(format!("{}/{name}", m.prefix))
            .await
            .map_err(|e| format!("checkpoint file {name}: {e}"))?;
        let mut out = tokio::fs::File::create(part.join(name))
            .await
            .map_err(|e| e.to_string())?;
        tokio::io::copy(&mut obj, &mut out).await.map_err(|e| e.to_string())?;
        out.sync_all().await.map_err(|e| e.to_string())?;
        done += size;
        tracing::info!(file = i + 1, of = m.files.len(), bytes = done, total, "restored {name}");
    }
    // Files a crash left from an earlier attempt, perhaps of another checkpoint, would be read
    // as part of this one (a stray WAL replayed): only the database's own kinds go.
    let mut rd = tokio::fs::read_dir(data_dir).await.map_err(|e| e.to_string())?;
    while let Some(ent) = rd.next_entry().await.map_err(|e| e.to_string())? {
        let name = ent.file_name().to_string_lossy().to_string();
        let rocks = [".sst", ".log", ".blob"].iter().any(|x| name.ends_with(x))
            || ["MANIFEST-", "OPTIONS-", "IDENTITY", "LOCK", "LOG"]
                .iter()
                .any(|x| name.starts_with(x));
        if rocks && ent.file_type().await.map(|t| t.is_file()).unwrap_or(false) {
            let _ = tokio::fs::remove_file(ent.path()).await;
        }
    }
    if from != cfg.node {
        // Kept until the node has dropped that node's unfinished fanout (`Cluster::start`): a
        // crash in between must not leave the restarted node thinking the data is its own.
        write_synced(&data_dir.join(ADOPTED), from.as_bytes()).await?;
    }
    let mut names: Vec<&String> = m
        .files
        .iter()
        .map(|f| &f.0)
        .filter(|n| n.as_str() != "CURRENT")
        .collect();
    names.extend(m.files.iter().map(|f| &f.0).filter(|n| n.as_str() == "CURRENT"));
    for name in names {
        tokio::fs::rename(part.join(name), data_dir.join(name))
            .await
            .map_err(|e| format!("moving restored {name} into place: {e}"))?;
    }
    let _ = tokio::fs::remove_dir_all(&part).await;
    if rebuild {
        super::retention::rebuild_done(data_dir)?;
    }
    Ok(Some(Restored { seq: m.seq, from }))
}

impl Connected {
    /// When `data_dir` holds no database, restores this node's latest checkpoint into it, or
    /// when it never took one, the newest of any node's (`checkpoint::restore`). Returns the
    /// log sequence the checkpoint covers.
    ///
    /// A node the log no longer waits for (listed behind) never applies on from the database it
    /// has: it is moved aside and the newest checkpoint of any node restored (`retention`).
    pub async fn restore_if_empty(&mut self, data_dir: &Path) -> Result<Option<u64>, String> {
        let rebuild = self.rebuild_if_behind(data_dir).await?;
        if !rebuild && data_dir.join("CURRENT").exists() {
            // A start that restored another node's checkpoint and died before it was done.
            self.adopted = std::fs::read_to_string(data_dir.join(ADOPTED)).ok();
            return Ok(None);
        }
        let nodes: Vec<String> = self.map.nodes.iter().map(|n| n.name.clone()).collect();
        // The object store's stream may have no leader yet right after the servers start.
        let restored = connect::within_jetstream_wait_unbounded("the checkpoint store", || {
            restore(&self.js, &self.cfg, &nodes, data_dir, rebuild)
        })
        .await?;
        Ok(restored.map(|r| {
            if r.from != self.cfg.node {
                self.adopted = Some(r.from);
            }
            r.seq
        }))
    }
}

/// Takes a checkpoint every `every` until stopped.
pub async fn periodic(cluster: Arc<Cluster>, data_dir: PathBuf, every: Duration, mut stop: watch::Receiver<bool>) {
    let scratch = data_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = take(&cluster, &scratch).await {
            tracing::warn!(error = %e, "checkpoint failed; the next one is tried on schedule");
            continue;
        }
        // After the node's checkpoint, so the oldest node checkpoint (which bounds what the
        // log may drop) includes this one.
        if let Err(e) = super::snapshots::take(&cluster, &cluster.snapshots).await {
            tracing::warn!(error = %e, "partition snapshots failed; the next checkpoint tries again");
            continue;
        }
        // After the snapshots, whose bases say which bodies may go.
        if let Err(e) = super::bodies::trim_round(&cluster, &cluster.snapshots).await {
            tracing::warn!(error = %e, "trimming post bodies failed; the next checkpoint tries again");
        }
    }
}
