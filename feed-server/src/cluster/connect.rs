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
}
