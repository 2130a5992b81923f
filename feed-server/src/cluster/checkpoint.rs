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

use super::Cluster;
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
    let result = upload(cluster, &dir, seq).await;
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

/// Restores this node's latest checkpoint into `data_dir` (which holds no database), reporting
/// progress. None when the node never took one (it then replays the whole retained log).
pub async fn restore(js: &jetstream::Context, cfg: &ClusterConfig, data_dir: &Path) -> Result<Option<u64>, String> {
    let store = bucket(js, cfg.replicas).await?;
    let Some(m) = read_manifest(&store, &cfg.node).await? else {
        tracing::info!("no checkpoint to restore; replaying the log from its start");
        return Ok(None);
    };
    let total: u64 = m.files.iter().map(|f| f.1).sum();
    tracing::info!(
        seq = m.seq,
        files = m.files.len(),
        bytes = total,
        "restoring checkpoint"
    );
    tokio::fs::create_dir_all(data_dir).await.map_err(|e| e.to_string())?;
    let mut done = 0u64;
    for (i, (name, size)) in m.files.iter().enumerate() {
        let mut obj = store
            .get(format!("{}/{name}", m.prefix))
            .await
            .map_err(|e| format!("checkpoint file {name}: {e}"))?;
        let mut out = tokio::fs::File::create(data_dir.join(name))
            .await
            .map_err(|e| e.to_string())?;
        tokio::io::copy(&mut obj, &mut out).await.map_err(|e| e.to_string())?;
        out.sync_all().await.map_err(|e| e.to_string())?;
        done += size;
        tracing::info!(file = i + 1, of = m.files.len(), bytes = done, total, "restored {name}");
    }
    Ok(Some(m.seq))
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
        }
    }
}
