//! Joining a cluster: connecting to NATS (with TLS and credentials when configured) and
//! agreeing on the cluster map stored in the map bucket — a node whose partition count or map
//! differs refuses to start, with the reason.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};

use super::ring::ClusterMap;
use super::{Connected, MAP_BUCKET};
use crate::config::ClusterConfig;

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

/// How long a starting node waits for JetStream to answer (its meta leader, a stream's or a
/// bucket's leader) before it gives up. Three servers starting on two busy cores have been
/// seen to take over 30 s to elect one.
pub(super) const JETSTREAM_WAIT: Duration = Duration::from_secs(60);

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
    let urls = nats_urls(cfg)?;
    let js = jetstream_context(cfg, &urls).await?;
    let mut connected = Connected {
        map,
        me,
        cfg: cfg.clone(),
        js,
        peer_tls,
        adopted: None,
    };
    connected.map = connected.agree_on_map().await?;
    connected.me = connected.map.position(&cfg.node).unwrap_or(me);
    connected.refuse_if_retired().await?;
    Ok(connected)
}

/// Why one attempt at a JetStream call failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// JetStream not answering yet (no leader, no responders, a timeout): try again.
    Transient(String),
    /// An answer that trying again cannot change (the maps differ, a node holds partitions).
    Final(String),
}

/// How long one start-up attempt may wait for JetStream's answers. A request sent before
/// JetStream has elected its meta leader, or while the stream it asks about is being created,
/// gets no answer at all and would wait out the connection's whole request timeout (10 s: every
/// node of a cold cluster lost that much at its first call); a bounded attempt is retried instead.
pub(super) const ATTEMPT_BOUND: Duration = Duration::from_secs(2);

/// Runs `attempt` until it succeeds or fails for good, for up to [`JETSTREAM_WAIT`]: right
/// after the servers start, or while one of them dies, JetStream answers "no responders", "no
/// leader" or nothing at all until a leader is elected. Each attempt is given up after
/// `bound` (`None`: never, for attempts that move whole files). The last failure is returned
/// when the wait is over.
async fn retry<T, F, Fut>(what: &str, bound: Option<Duration>, mut attempt: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let deadline = Instant::now() + JETSTREAM_WAIT;
    loop {
        let outcome = match bound {
            Some(b) => tokio::time::timeout(b, attempt())
                .await
                .unwrap_or_else(|_| Err(Failure::Transient(format!("no answer within {b:?}")))),
            None => attempt().await,
        };
        match outcome {
            Err(Failure::Transient(e)) if Instant::now() < deadline => {
                tracing::info!(error = %e, "waiting for JetStream ({what})");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            r => return r,
        }
    }
}

/// [`retry`] for short metadata calls (buckets, the map, the epoch record), each attempt
/// bounded by [`ATTEMPT_BOUND`]. Every call retried this way must be safe to abandon midway:
/// a read, a get-or-create, or a compare-and-set decided again on the next attempt.
pub(super) async fn until_final<T, F, Fut>(what: &str, attempt: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    retry(what, Some(ATTEMPT_BOUND), attempt).await
}

/// [`until_final`] for calls whose every failure is transient.
pub(super) async fn within_jetstream_wait<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    until_final(what, || {
        let a = attempt();
        async move { a.await.map_err(Failure::Transient) }
    })
    .await
    .map_err(|(Failure::Transient(e) | Failure::Final(e))| e)
}

/// [`within_jetstream_wait`] with no bound on an attempt: for downloads of whole files.
pub(super) async fn within_jetstream_wait_unbounded<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    retry(what, None, || {
        let a = attempt();
        async move { a.await.map_err(Failure::Transient) }
    })
    .await
    .map_err(|(Failure::Transient(e) | Failure::Final(e))| e)
}

/// NATS URLs of `cfg`, parsed.
pub(super) fn nats_urls(cfg: &ClusterConfig) -> Result<Vec<async_nats::ServerAddr>, String> {
    cfg.nats
        .split(',')
        .map(|u| u.trim().parse().map_err(|e| format!("NATS url {u:?}: {e}")))
        .collect()
}

/// A JetStream context on the NATS servers at `urls`, retrying for up to 30 s while they come up.
pub(super) async fn jetstream_context(
    cfg: &ClusterConfig,
    urls: &[async_nats::ServerAddr],
) -> Result<jetstream::Context, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        match nats_options(cfg)?.connect(urls).await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                tracing::info!(error = %e, "waiting for NATS");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(format!("connecting to NATS at {}: {e}", cfg.nats)),
        }
    };
    Ok(jetstream::new(client))
}

/// The stored cluster map, if any.
pub(super) async fn read_map(map_kv: &kv::Store) -> Result<Option<ClusterMap>, String> {
    match map_kv
        .get("map")
        .await
        .map_err(|e| format!("reading the cluster map: {e}"))?
    {
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| format!("stored cluster map: {e}")),
        None => Ok(None),
    }
}

/// How this node's map relates to the stored one.
enum Agreement {
    /// The same nodes: the stored map (its version) holds.
    Same,
    /// This node's list is the stored one with this node (not in it) appended: it is joining.
    Joins,
    /// The stored list extends this node's (started with an older list): the stored map holds.
    Older,
    /// Anything else: the node must not start.
    Differs,
}

fn compare(mine: &ClusterMap, stored: &ClusterMap, me: &str) -> Agreement {
    if mine.vnodes != stored.vnodes {
        Agreement::Differs
    } else if mine.nodes == stored.nodes {
        Agreement::Same
    } else if mine.nodes.len() == stored.nodes.len() + 1
        && mine.nodes.starts_with(&stored.nodes)
        && mine.nodes.last().is_some_and(|n| n.name == me)
        && stored.position(me).is_none()
    {
        Agreement::Joins
    } else if stored.nodes.len() > mine.nodes.len() && stored.nodes.starts_with(&mine.nodes) {
        Agreement::Older
    } else {
        Agreement::Differs
    }
}

impl Connected {
    /// Stores the map if none is stored, and returns the map in force: the stored one when it
    /// has the same nodes, or extends this node's list (a node started with the list it was
    /// created with, after others joined). A node whose list extends the stored one **joins**:
    /// it first marks itself down in the epoch record (so it holds nothing until it has caught
    /// up and proposed its return, which moves partitions to it), then stores the longer map.
    /// Anything else — another partition count, other vnodes, other nodes — refuses to start.
    /// JetStream answers "no responders", "no leader" or "temporarily unavailable" for a while
    /// after its servers start, so everything but a mismatch is retried for [`JETSTREAM_WAIT`].
    async fn agree_on_map(&self) -> Result<ClusterMap, String> {
        until_final("the cluster map", || self.try_agree_on_map())
            .await
            .map_err(|f| match f {
                Failure::Final(e) => e,
                Failure::Transient(e) => format!("cluster map: {e}"),
            })
    }

    /// One attempt; final when the maps differ.
    async fn try_agree_on_map(&self) -> Result<ClusterMap, Failure> {
        let transient = Failure::Transient;
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
        if bucket.create("map", mine.clone().into()).await.is_ok() {
            tracing::info!(version = self.map.version, "stored the cluster map");
            return Ok(self.map.clone());
        }
        let entry = bucket
            .entry("map")
            .await
            .map_err(|e| transient(format!("reading the cluster map: {e}")))?
            .ok_or_else(|| transient("the cluster map is not readable yet".into()))?;
        let stored: ClusterMap =
            serde_json::from_slice(&entry.value).map_err(|e| Failure::Final(format!("stored cluster map: {e}")))?;
        if stored.partitions != self.map.partitions {
            return Err(Failure::Final(format!(
                "this node was started with {} partitions but the cluster was created with {}; \
                     the partition count never changes for a cluster's life: start with --partitions {}",
                self.map.partitions, stored.partitions, stored.partitions
            )));
        }
        match compare(&self.map, &stored, &self.cfg.node) {
            Agreement::Same | Agreement::Older => Ok(stored),
            Agreement::Joins => {
                self.mark_joining_down(&bucket).await.map_err(transient)?;
                let joined = ClusterMap {
                    version: stored.version + 1,
                    ..self.map.clone()
                };
                let v = serde_json::to_vec(&joined).map_err(|e| transient(e.to_string()))?;
                bucket
                    .update("map", v.into(), entry.revision)
                    .await
                    .map_err(|e| transient(format!("storing the joined map: {e}")))?;
                tracing::info!(
                    version = joined.version,
                    nodes = joined.nodes.len(),
                    "joined the cluster map"
                );
                Ok(joined)
            }
            Agreement::Differs => Err(Failure::Final(format!(
                "this node's cluster map (version {}, nodes {:?}) differs from the cluster's (version {}, nodes {:?}); \
                     start every node with the same --cluster-nodes and --vnodes (or, to add a node, the cluster's list with it appended)",
                self.map.version,
                self.map.nodes.iter().map(|n| &n.name).collect::<Vec<_>>(),
                stored.version,
                stored.nodes.iter().map(|n| &n.name).collect::<Vec<_>>()
            ))),
        }
    }

    /// Refuses to start a node removed from the cluster for good: it holds nothing, the others
    /// hold its partitions, and its data folder is out of date.
    async fn refuse_if_retired(&self) -> Result<(), String> {
        let rec = self.epoch_record().await?;
        if rec.retired.contains(&self.cfg.node) {
            return Err(format!(
                "node {:?} was removed from this cluster for good and may not start again: the other \
                 nodes hold its partitions and its data folder is out of date. To use this machine \
                 again, give it a new name and start it with the cluster's node list plus that name",
                self.cfg.node
            ));
        }
        Ok(())
    }

    /// The epoch record as stored now, waiting for JetStream.
    pub(super) async fn epoch_record(&self) -> Result<super::placement::EpochRecord, String> {
        let (rec, _) = within_jetstream_wait("the epoch record", || async {
            super::failover::read_epoch(&super::failover::map_bucket(&self.js).await?).await
        })
        .await
        .map_err(|e| format!("reading the epoch record: {e}"))?;
        Ok(rec)
    }

    /// Puts this (joining) node among the down nodes of the epoch record, unless it is already.
    async fn mark_joining_down(&self, bucket: &kv::Store) -> Result<(), String> {
        let name = &self.cfg.node;
        loop {
            let (rec, revision) = super::failover::read_epoch(bucket).await?;
            if rec.down.contains(name) {
                return Ok(());
            }
            let mut next = rec.clone();
            next.epoch += 1;
            next.at_ms = super::now_ms();
            next.mark_down(name, next.at_ms);
            let v = serde_json::to_vec(&next).map_err(|e| e.to_string())?;
            let stored = match revision {
                0 => bucket.create(super::failover::EPOCH_KEY, v.into()).await.is_ok(),
                r => bucket.update(super::failover::EPOCH_KEY, v.into(), r).await.is_ok(),
            };
            if stored {
                tracing::info!(epoch = next.epoch, "joining: held nothing until caught up");
                return Ok(());
            }
        }
    }
}
