//! Bodies of posts this node keeps only the heads of (`Engine::trim_bodies`: an older post by
//! an author another node holds), fetched from their authors' nodes when a read returns them:
//! one `GetPosts` per node, concurrently, with the caller's token and the [`BODIES`] mark, so
//! the author's node answers from its own bodies, checking again that the reader may see them.
//! A body that does not come back (its node down, or still restoring the partition) leaves its
//! post a head; the caller says so (a partial page, or `UNAVAILABLE`). Bodies fetched are kept
//! in memory for the next read (`FetchedBodies`).
//!
//! Also here: the round that trims bodies to heads (`trim_round`, after each round of partition
//! snapshots) and the fill that puts them back on a node taking a partition over
//! (`fill_owed`); the rules that keep every body somewhere are `engine/bodies.rs`'s.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use feed_engine::Engine;
use feed_engine::hot::{HotMap, Weigh};
use prost::Message;

use feedline_proto::v1 as pb;
use tonic::Request;
use tonic::metadata::{AsciiMetadataValue, MetadataMap, MetadataValue};

use super::snapshots::Snapshots;
use super::{Cluster, ring};

/// Metadata on a `GetPosts` one node sends another for bodies: answer from this node's own
/// bodies (heads are left out), without routing the call to the reader's node.
pub const BODIES: &str = "x-feedline-bodies";

/// Bodies this node fetched from their authors' nodes, by post id, within
/// `--fetched-body-cache-mb` (the least used go first): the next read of the same post needs
/// no call, and stays whole while the author's node is down. Nothing here goes stale: a post
/// never changes, and one deleted is no longer a head that any read here returns. A body is
/// served from here only for a head the engine gave the reader, so the engine's visibility
/// rules (blocks, private accounts) decide as they do for every post; the author's node's own
/// second check runs only on the fetch.
pub(super) struct FetchedBodies(Option<HotMap<CachedBody>>);

struct CachedBody(pb::Post);

impl Weigh for CachedBody {
    fn weight(&self) -> usize {
        96 + self.0.encoded_len()
    }
}

impl FetchedBodies {
    /// A cache of at most about `mib` MiB (0: none).
    pub(super) fn new(mib: u64) -> Self {
        let bytes = usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        FetchedBodies((bytes > 0).then(|| HotMap::new("fetched-bodies", bytes)))
    }

    fn get(&self, post: u64) -> Option<pb::Post> {
        self.0.as_ref()?.get(post).map(|b| b.0.clone())
    }

    fn keep(&self, post: &pb::Post) {
        if let Some(m) = &self.0 {
            m.insert_if_current(post.id, m.version(post.id), Arc::new(CachedBody(post.clone())));
        }
    }
}

/// What [`Cluster::fetch_bodies`] got.
#[derive(Debug, Default)]
pub struct Fetched {
    /// Bodies by post id, as the authors' nodes have them.
    pub posts: HashMap<u64, pb::Post>,
    /// Why some did not come (one reason per node that did not give them), if any did not.
    pub missing: Vec<String>,
}

impl Cluster {
    /// Fetches the bodies of the posts `heads` (`(post, author)`) that `viewer` reads, from
    /// their authors' nodes, with the caller's `auth`.
    /// Bodies fetched before come from `FetchedBodies`.
    pub async fn fetch_bodies(&self, viewer: u64, heads: &[(u64, u64)], auth: Option<AsciiMetadataValue>) -> Fetched {
        let mut got = Fetched::default();
        let mut by_node: BTreeMap<String, (Arc<super::peers::Peer>, Vec<u64>)> = BTreeMap::new();
        let mut here = 0usize;
        for &(post, author) in heads {
            if let Some(b) = self.fetched.get(post) {
                got.posts.insert(post, b);
                continue;
            }
            match self.route(author, &MetadataMap::new()) {
                Ok(Some(peer)) => by_node
                    .entry(peer.spec.name.clone())
                    .or_insert_with(|| (peer.clone(), Vec::new()))
                    .1
                    .push(post),
                Ok(None) => here += 1,
                Err(s) => got.missing.push(s.message().to_string()),
            }
        }
        if here > 0 {
            got.missing
                .push(format!("{here} posts' bodies are being restored on this node"));
        }
        let calls = by_node.into_iter().map(|(name, (peer, ids))| {
            let auth = auth.clone();
            async move {
                let mut req = Request::new(pb::GetPostsRequest {
                    user_id: viewer,
                    post_ids: ids.clone(),
                });
                if let Some(a) = auth {
                    req.metadata_mut().insert("authorization", a);
                }
                // `forward` adds the forwarded mark and keeps only the caller's token.
                let res = peer
                    .forward(req, |ch, mut r| async move {
                        r.metadata_mut().insert(BODIES, MetadataValue::from_static("1"));
                        pb::post_service_client::PostServiceClient::new(ch).get_posts(r).await
                    })
                    .await;
                (name, ids, res)
            }
        });
        let mut fetched = 0;
        for (name, ids, res) in futures::future::join_all(calls).await {
            match res {
                Ok(r) => {
                    let posts = r.into_inner().posts;
                    fetched += posts.len();
                    for p in &posts {
                        self.fetched.keep(p);
                    }
                    let n = ids.len() - posts.len().min(ids.len());
                    got.posts.extend(posts.into_iter().map(|p| (p.id, p)));
                    if n > 0 {
                        got.missing.push(format!("node {name} did not give {n} posts' bodies"));
                    }
                }
                Err(s) => got.missing.push(format!(
                    "{} posts' bodies are on node {name}, which did not answer: {}",
                    ids.len(),
                    s.message()
                )),
            }
        }
        metrics::counter!(feed_engine::metrics::BODIES_FETCHED).increment(fetched as u64);
        got
    }
}

/// Replaces by heads the bodies of this node's posts older than `--body-window-s` whose
/// authors' partitions it does not hold, as far as each partition's base snapshot (the oldest a
/// takeover may restore, and the point its events were dropped to) covers them. Run after each
/// round of partition snapshots; each round starts where the last one (of this process or an
/// earlier one) left off, while the partitions held stay the same (`Engine::trim_bodies`).
pub(super) async fn trim_round(cluster: &Cluster, snaps: &Snapshots) -> Result<(), String> {
    let window_ms = cluster.cfg.body_window_s.saturating_mul(1000);
    if window_ms == 0 {
        return Ok(());
    }
    let engine = cluster.engine().clone();
    let mut elsewhere = Vec::new();
    for p in 0..snaps.partitions() {
        if engine.partition_seq(p).map_err(|e| e.to_string())?.is_some() {
            elsewhere.push(p);
        }
    }
    let mut covered = HashMap::new();
    for &p in &elsewhere {
        let (m, _) = snaps.manifest(p).await?;
        if m.purged_to > 0 && m.snapshots.iter().any(|s| s.seq == m.purged_to) {
            covered.insert(p, m.purged_to);
        }
    }
    if covered.is_empty() {
        return Ok(());
    }
    let older_than = now_ms().saturating_sub(window_ms);
    let started = std::time::Instant::now();
    let n = snaps.partitions();
    let t = tokio::task::spawn_blocking(move || {
        engine.trim_bodies(&elsewhere, older_than, &|u| ring::partition_of(u, n), &|p| {
            covered.get(&p).copied()
        })
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("trimming post bodies: {e}"))?;
    if t.posts > 0 {
        tracing::info!(
            posts = t.posts,
            bytes = t.bytes,
            scanned = t.scanned,
            given_away = t.given,
            from = t.from,
            ms = started.elapsed().as_millis() as u64,
            "kept only the heads of older posts held elsewhere"
        );
    }
    Ok(())
}

/// Puts back the bodies this node trimmed of the partitions `parts` it now holds, from each
/// one's newest snapshot at or below the applied sequence `at` (at or past every base a trim
/// here used: the base never passes a node's checkpoint). Retried while the log or the
/// object store fails; reads of those posts answer `partial` meanwhile.
pub(super) async fn fill_owed(engine: &Engine, snaps: &Snapshots, parts: &[u32], at: u64) -> Result<(), String> {
    let mut owed = Vec::new();
    for &p in parts {
        let held = engine.partition_seq(p).map_err(|e| e.to_string())?.is_none();
        if held && engine.bodies_owed(p).map_err(|e| e.to_string())? {
            owed.push(p);
        }
    }
    let mut attempt = 0u32;
    while !owed.is_empty() {
        match fill_from_snapshots(engine, snaps, &owed, at).await {
            Ok(filled) => {
                tracing::info!(partitions = ?owed, posts = filled, "put back the bodies of partitions taken over");
                return Ok(());
            }
            Err(e) => {
                attempt += 1;
                tracing::warn!(attempt, error = %e, "putting back post bodies failed; retrying");
                tokio::time::sleep(Duration::from_millis(250 * attempt.min(8) as u64)).await;
            }
        }
    }
    Ok(())
}

async fn fill_from_snapshots(engine: &Engine, snaps: &Snapshots, parts: &[u32], at: u64) -> Result<u64, String> {
    let mut chosen = Vec::with_capacity(parts.len());
    for &p in parts {
        let (m, _) = snaps.manifest(p).await?;
        match m.snapshots.iter().filter(|s| s.seq <= at).max_by_key(|s| s.seq) {
            Some(r) => chosen.push(r.clone()),
            // Cannot happen while the base stays at or below every node's checkpoint; should it,
            // retrying would not help: the posts stay heads (reads say so) and the marker stays.
            None => tracing::error!(
                partition = p,
                at,
                "no snapshot at or below this node's position to put the partition's post bodies back from"
            ),
        }
    }
    let e = engine.clone();
    snaps
        .with_files(&chosen, move |paths| {
            e.fill_bodies(paths)
                .map_err(|e| format!("putting back post bodies: {e}"))
        })
        .await
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
