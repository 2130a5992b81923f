//! # feed-server
//!
//! feedline's engine over gRPC. [`Server::start`] opens the engine, binds, and serves the
//! `feedline.v1` services with health, reflection and metrics until [`Server::shutdown`].
//!
//! # Layout
//! - [`config`]: TOML + flags → a validated [`config::ServerConfig`].
//! - [`auth`]: HMAC-signed bearer tokens, acting-as checks, key rotation.
//! - [`keys`]: signing keys from files or the environment; the private data folder.
//! - [`service`]: the three gRPC services: limits, auth, one engine call each.
//! - [`convert`]: the only place engine and wire types meet; engine errors → status codes.
//! - [`grpc_metrics`]: per-RPC started / handled / latency metrics in the usual gRPC shape.
//! - [`subscribe`]: live feed and notification subscriptions with bounded buffers.
//! - [`ops`]: every write as data, applied directly (one node) or through the log (cluster).
//! - [`web`]: gRPC-Web, its CORS policy and the demo page (`--web`).
//! - [`tls`]: TLS on the gRPC port (reloaded on change), mTLS, node-to-node TLS.
//! - [`cluster`]: cluster mode on NATS JetStream — ring, forwarding, log apply, checkpoints.
#![deny(missing_docs)]

pub mod auth;
pub mod cluster;
pub mod config;
pub mod convert;
pub mod grpc_metrics;
pub mod keys;
pub mod ops;
pub mod service;
pub mod subscribe;
pub mod tls;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use feed_engine::Engine;
use feedline_proto::v1 as pb;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

use crate::auth::{Signer, Subject};
use crate::config::ServerConfig;
use crate::service::Api;
use crate::subscribe::Live;

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
    live: Live,
    cluster: Option<Arc<cluster::Cluster>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
    health: tonic_health::server::HealthReporter,
    drain: Duration,
    tls: Option<Arc<tls::Tls>>,
    tls_watch: Option<JoinHandle<()>>,
}

/// Serves `router` on `incoming` (plain TCP or TLS streams: two stream types, one body) until
/// `stopped`, on a task.
macro_rules! serve {
    ($router:expr, $incoming:expr, $stopped:expr) => {{
        let (router, incoming, stopped) = ($router, $incoming, $stopped);
        tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(incoming, stopped)
                .await
                .map_err(ServerError::from)
        })
    }};
}

impl Server {
    /// Opens the engine on `cfg.engine.data_dir`, binds `cfg.listen` and serves in the background.
    pub async fn start(mut cfg: ServerConfig) -> Result<Server, ServerError> {
        cfg.validate().map_err(ServerError::Config)?;
        // Cluster mode: agree on the map and restore a lost disk before the engine opens.
        let tls = cfg
            .tls
            .clone()
            .map(tls::Tls::load)
            .transpose()
            .map_err(ServerError::Config)?;
        let peer_tls = match &cfg.tls {
            Some(t) if cfg.cluster.is_some() => Some(tls::peer_client_config(t).map_err(ServerError::Config)?),
            _ => None,
        };
        let connected = match &cfg.cluster {
            Some(c) => {
                let mut conn = cluster::connect(c, peer_tls).await.map_err(ServerError::Cluster)?;
                cfg.engine.node_id = conn.node_id();
                // Interrupted fanout waits for the owner filter and the two-hop sink.
                cfg.engine.hold_pending_fanout = true;
                conn.restore_if_empty(&cfg.engine.data_dir)
                    .await
                    .map_err(ServerError::Cluster)?;
                Some(conn)
            }
            None => None,
        };
        keys::private_dir(&cfg.engine.data_dir)?;
        let (signer, dev_mode) = keys::signer(&cfg.auth, &cfg.engine.data_dir)?;
        if let Some(addr) = cfg.metrics_listen {
            // Every latency is a histogram with buckets (not a summary), so a fleet's quantiles
            // can be computed from the sum of its nodes' buckets.
            match metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(addr)
                .set_buckets(grpc_metrics::SECONDS_BUCKETS)
                .and_then(|b| b.install())
            {
                Ok(()) => tracing::info!(%addr, "metrics at http://{addr}/metrics"),
                Err(e) => tracing::warn!(error = %e, "metrics exporter not started"),
            }
        }
        let engine_cfg = cfg.engine.clone();
        let engine = tokio::task::spawn_blocking(move || Engine::open(engine_cfg))
            .await
            .map_err(|e| ServerError::Io(std::io::Error::other(e)))??;
        // Dev mode prints a fresh admin token at each start; the ones printed before stop working,
        // so at most one dev admin token is alive at a time.
        if dev_mode {
            engine.revoke_tokens(feed_engine::OPERATOR_TOKENS, auth::now_us())?;
        }
        let admin_token = signer.issue(Subject::Admin, cfg.auth.admin_token_ttl_s);
        let cluster = match connected {
            Some(conn) => Some(
                conn.start(engine.clone(), cfg.engine.data_dir.clone())
                    .await
                    .map_err(ServerError::Cluster)?,
            ),
            None => None,
        };
        let live = Live::default();
        live.attach(&engine);
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
        health
            .set_serving::<pb::engagement_service_server::EngagementServiceServer<Api>>()
            .await;
        health
            .set_serving::<pb::search_service_server::SearchServiceServer<Api>>()
            .await;
        // Reflection in both protocol versions: v1, and v1alpha that older clients (grpcurl 1.8,
        // grpcio-reflection, Postman) still speak.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(feedline_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let reflection = reflection().build_v1()?;

        let max = cfg.limits.max_message_bytes;
        let timeout = Duration::from_millis(cfg.limits.request_timeout_ms);
        let drain = Duration::from_millis(cfg.drain_timeout_ms);
        let cors = web::cors(&cfg.web);
        let page = cfg.web.page;
        let api = Api::new(
            engine.clone(),
            signer.clone(),
            cfg,
            live.clone(),
            cluster.clone(),
            tls.as_ref().is_some_and(|t| t.verifies_clients()),
        );
        let routes = tonic::service::Routes::new(health_svc)
            .add_service(reflection)
            .add_service(reflection_v1alpha)
            .add_service(
                pb::user_service_server::UserServiceServer::from_arc(api.clone()).max_decoding_message_size(max),
            )
            .add_service(
                pb::post_service_server::PostServiceServer::from_arc(api.clone()).max_decoding_message_size(max),
            )
            .add_service(
                pb::feed_service_server::FeedServiceServer::from_arc(api.clone()).max_decoding_message_size(max),
            )
            .add_service(
                pb::engagement_service_server::EngagementServiceServer::from_arc(api.clone())
                    .max_decoding_message_size(max),
            )
            .add_service(pb::search_service_server::SearchServiceServer::from_arc(api).max_decoding_message_size(max));
        // Outermost first: the demo page's files (with --web), CORS answers preflights, gRPC-Web
        // translates browsers' calls (HTTP/1.1 accepted beside HTTP/2), every gRPC call is measured,
        // and a cluster write's log sequence goes into its answer's headers (read-your-writes).
        let router = tonic::transport::Server::builder()
            .accept_http1(true)
            .timeout(timeout)
            .tcp_nodelay(true)
            .layer(web::PageLayer { enabled: page })
            .layer(cors)
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(grpc_metrics::GrpcMetricsLayer)
            .layer(cluster::ryw::SeqLayer)
            .add_routes(routes);
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        };
        let (task, tls_watch) = match &tls {
            Some(t) => (serve!(router, t.incoming(listener), stopped), Some(t.watch())),
            None => {
                // The builder's tcp_nodelay applies only to listeners tonic binds itself; without
                // it small unary answers wait on Nagle + delayed ACK (~40 ms).
                let incoming = TcpListenerStream::new(listener).map(|conn| {
                    if let Ok(c) = &conn
                        && let Err(e) = c.set_nodelay(true)
                    {
                        tracing::warn!(error = %e, "could not set TCP_NODELAY");
                    }
                    conn
                });
                (serve!(router, incoming, stopped), None)
            }
        };
        Ok(Server {
            addr,
            admin_token,
            dev_mode,
            signer,
            engine,
            live,
            cluster,
            stop: Some(stop),
            task,
            health,
            drain,
            tls,
            tls_watch,
        })
    }

    /// Reloads the TLS certificate, key and client CA from their files now (SIGHUP). Without
    /// TLS there is nothing to reload.
    pub fn reload_tls(&self) -> Result<(), ServerError> {
        match &self.tls {
            Some(t) => t.reload().map_err(ServerError::Config),
            None => Ok(()),
        }
    }

    /// A token acting as `user` for an hour (for tests and tools in the same process).
    pub fn user_token(&self, user: u64) -> String {
        self.signer.issue(Subject::User(user), 3600)
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
        // In a cluster, first hand this node's partitions over (it keeps answering, by
        // forwarding, meanwhile), so its users are not left unserved for the suspicion time.
        if let Some(c) = &self.cluster {
            let wait = Duration::from_millis(c.config().suspicion_ms.saturating_mul(3).max(5_000));
            match c.drain(wait).await {
                Ok(Some(d)) => tracing::info!(
                    epoch = d.epoch,
                    partitions = d.partitions,
                    took_ms = d.took.as_millis() as u64,
                    "drained: partitions handed over"
                ),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "draining failed; the others take over after the suspicion time"),
            }
        }
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
        if let Some(w) = self.tls_watch.take() {
            w.abort();
        }
        // Feed subscriptions would otherwise hold the graceful drain open forever.
        self.live.close_all();
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
