//! # feed-server
//!
//! feedline's engine over gRPC. [`Server::start`] opens the engine, binds, and serves the
//! `feedline.v1` services with health, reflection and metrics until [`Server::shutdown`].
//!
//! # Layout
//! - [`config`]: TOML + flags → a validated [`config::ServerConfig`].
//! - [`auth`]: HMAC-signed bearer tokens and acting-as checks.
//! - [`service`]: the three gRPC services: limits, auth, one engine call each.
//! - [`convert`]: the only place engine and wire types meet; engine errors → status codes.
//! - [`subscribe`]: live feed subscriptions with bounded buffers.
//! - [`ops`]: every write as data, applied directly (one node) or through the log (cluster).
//! - [`cluster`]: cluster mode on NATS JetStream — ring, forwarding, log apply, checkpoints.
#![deny(missing_docs)]

pub mod auth;
pub mod cluster;
pub mod config;
pub mod convert;
pub mod ops;
pub mod service;
pub mod subscribe;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use feed_engine::Engine;
use feedline_proto::v1 as pb;
use rand::RngCore;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

use crate::auth::{Signer, Subject};
use crate::config::ServerConfig;
use crate::service::Api;
use crate::subscribe::Subscriptions;

/// What can stop the server from starting or stopping cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is out of range.
    #[error("config: {0}")]
    Config(String),
    /// The engine could not open or close its data.
    #[error("engine: {0}")]
    Engine(#[from] feed_engine::Error),
    /// Binding or file IO failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The gRPC transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not load the descriptor set.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// Cluster mode could not start (NATS, the map, the log or a checkpoint).
    #[error("cluster: {0}")]
    Cluster(String),
}

/// A running server.
pub struct Server {
    /// Where gRPC listens.
    pub addr: SocketAddr,
    /// A token that may act as any user.
    pub admin_token: String,
    /// Whether the signing key was generated (dev mode) rather than configured.
    pub dev_mode: bool,
    signer: Signer,
    engine: Engine,
    subs: Arc<Subscriptions>,
    cluster: Option<Arc<cluster::Cluster>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
    health: tonic_health::server::HealthReporter,
    drain: Duration,
}

/// The signing key: configured, or kept in `<data-dir>/auth-secret` (created at first start).
fn signing_key(cfg: &ServerConfig) -> Result<(Vec<u8>, bool), ServerError> {
    if !cfg.auth.secret_hex.is_empty() {
        return Ok((
            hex::decode(&cfg.auth.secret_hex).map_err(|e| ServerError::Config(e.to_string()))?,
            false,
        ));
    }
    let path = cfg.engine.data_dir.join("auth-secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        return Ok((
            hex::decode(s.trim()).map_err(|_| ServerError::Config(format!("{} is not hex", path.display())))?,
            true,
        ));
    }
    let mut key = vec![0u8; 32];
    rand::rng().fill_bytes(&mut key);
    write_private(&path, &hex::encode(&key))?;
    Ok((key, true))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)?.write_all(text.as_bytes())
}

impl Server {
    /// Opens the engine on `cfg.engine.data_dir`, binds `cfg.listen` and serves in the background.
    pub async fn start(mut cfg: ServerConfig) -> Result<Server, ServerError> {
        cfg.validate().map_err(ServerError::Config)?;
        // Cluster mode: agree on the map and restore a lost disk before the engine opens.
        let connected = match &cfg.cluster {
            Some(c) => {
                let conn = cluster::connect(c).await.map_err(ServerError::Cluster)?;
                cfg.engine.node_id = conn.node_id();
                conn.restore_if_empty(&cfg.engine.data_dir)
                    .await
                    .map_err(ServerError::Cluster)?;
                Some(conn)
            }
            None => None,
        };
        std::fs::create_dir_all(&cfg.engine.data_dir)?;
        let (key, dev_mode) = signing_key(&cfg)?;
        let signer = Signer::new(key);
        let admin_token = signer.issue(Subject::Admin, now_s() + cfg.auth.admin_token_ttl_s);
        if let Some(addr) = cfg.metrics_listen {
            match metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(addr)
                .install()
            {
                Ok(()) => tracing::info!(%addr, "metrics at http://{addr}/metrics"),
                Err(e) => tracing::warn!(error = %e, "metrics exporter not started"),
            }
        }
        let engine_cfg = cfg.engine.clone();
        let engine = tokio::task::spawn_blocking(move || Engine::open(engine_cfg))
            .await
            .map_err(|e| ServerError::Io(std::io::Error::other(e)))??;
        let cluster = match connected {
            Some(conn) => Some(
                conn.start(engine.clone(), cfg.engine.data_dir.clone())
                    .await
                    .map_err(ServerError::Cluster)?,
            ),
            None => None,
        };
        let subs = Arc::new(Subscriptions::default());
        engine.set_listener(subs.clone());
        let listener = TcpListener::bind(cfg.listen).await?;
        let addr = listener.local_addr()?;

        let (health, health_svc) = tonic_health::server::health_reporter();
        health
            .set_serving::<pb::user_service_server::UserServiceServer<Api>>()
            .await;
        health
            .set_serving::<pb::post_service_server::PostServiceServer<Api>>()
            .await;
        health
            .set_serving::<pb::feed_service_server::FeedServiceServer<Api>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(feedline_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;

        let max = cfg.limits.max_message_bytes;
        let timeout = Duration::from_millis(cfg.limits.request_timeout_ms);
        let drain = Duration::from_millis(cfg.drain_timeout_ms);
        let api = Api::new(engine.clone(), signer.clone(), cfg, subs.clone(), cluster.clone());
        let router = tonic::transport::Server::builder()
            .timeout(timeout)
            .tcp_nodelay(true)
            .add_service(health_svc)
            .add_service(reflection)
            .add_service(
                pb::user_service_server::UserServiceServer::from_arc(api.clone()).max_decoding_message_size(max),
            )
            .add_service(
                pb::post_service_server::PostServiceServer::from_arc(api.clone()).max_decoding_message_size(max),
            )
            .add_service(pb::feed_service_server::FeedServiceServer::from_arc(api).max_decoding_message_size(max));
        // The builder's tcp_nodelay applies only to listeners tonic binds itself; without it small
        // unary answers wait on Nagle + delayed ACK (~40 ms).
        let incoming = TcpListenerStream::new(listener).map(|conn| {
            if let Ok(c) = &conn
                && let Err(e) = c.set_nodelay(true)
            {
                tracing::warn!(error = %e, "could not set TCP_NODELAY");
            }
            conn
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await
                .map_err(ServerError::from)
        });
        Ok(Server {
            addr,
            admin_token,
            dev_mode,
            signer,
            engine,
            subs,
            cluster,
            stop: Some(stop),
            task,
            health,
            drain,
        })
    }

    /// A token acting as `user` for an hour (for tests and tools in the same process).
    pub fn user_token(&self, user: u64) -> String {
        self.signer.issue(Subject::User(user), now_s() + 3600)
    }

    /// The engine behind the server (tests inspect it directly).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The cluster view, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<cluster::Cluster>> {
        self.cluster.as_ref()
    }

    /// Graceful stop: reports NOT_SERVING, stops accepting, lets in-flight calls finish, drains
    /// fanout (up to the drain timeout), syncs and flushes RocksDB.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        self.health
            .set_not_serving::<pb::feed_service_server::FeedServiceServer<Api>>()
            .await;
        self.health
            .set_not_serving::<pb::post_service_server::PostServiceServer<Api>>()
            .await;
        self.health
            .set_not_serving::<pb::user_service_server::UserServiceServer<Api>>()
            .await;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Feed subscriptions would otherwise hold the graceful drain open forever.
        self.subs.close_all();
        let served = (&mut self.task)
            .await
            .map_err(|e| ServerError::Io(std::io::Error::other(e)))?;
        if let Some(c) = &self.cluster {
            c.stop().await;
        }
        let engine = self.engine.clone();
        let drain = self.drain;
        let drained = tokio::task::spawn_blocking(move || engine.shutdown(drain))
            .await
            .map_err(|e| ServerError::Io(std::io::Error::other(e)))??;
        if !drained {
            tracing::warn!("fanout not drained in time; it resumes at the next start");
        }
        served
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
