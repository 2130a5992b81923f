//! The clients of a feed-server, or of a cluster's nodes, that the gRPC target calls through:
//! round-robin over the nodes, with each node's service times and failures for the per-node
//! report.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use feedline_proto::v1::engagement_service_client::EngagementServiceClient;
use feedline_proto::v1::feed_service_client::FeedServiceClient;
use feedline_proto::v1::post_service_client::PostServiceClient;
use feedline_proto::v1::user_service_client::UserServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::target::OpError;

type R<T> = Result<T, OpError>;

/// Clients of one feed-server node.
#[derive(Clone)]
pub struct GrpcNode {
    pub(crate) url: String,
    pub(crate) users: UserServiceClient<Channel>,
    pub(crate) posts: PostServiceClient<Channel>,
    pub(crate) feeds: FeedServiceClient<Channel>,
    pub(crate) engage: EngagementServiceClient<Channel>,
}

/// What one node answered: service time from send to answer, and failures.
pub struct NodeStats {
    /// Microseconds per call.
    pub latency_us: Histogram<u64>,
    /// Calls that failed.
    pub errors: u64,
}

/// One node's line of the per-node report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeReport {
    /// The node's URL.
    pub url: String,
    /// Calls sent to it.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Median service time, µs.
    pub p50_us: u64,
    /// 99th percentile service time, µs.
    pub p99_us: u64,
}

/// Clients of a feed-server or a cluster of them, acting with the admin token. Calls go to the
/// nodes in turn; each node forwards what it does not own.
#[derive(Clone)]
pub struct Grpc {
    pub(crate) nodes: Vec<GrpcNode>,
    pub(crate) next: Arc<AtomicUsize>,
    pub(crate) stats: Arc<Vec<Mutex<NodeStats>>>,
    /// `Bearer <admin token>`.
    pub(crate) auth: MetadataValue<Ascii>,
}

impl Grpc {
    /// Runs one call on the next node, recording its service time there.
    pub(crate) async fn call<T, F, Fut>(&self, f: F) -> R<T>
    where
        F: FnOnce(GrpcNode) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.nodes.len();
        let t = Instant::now();
        let r = f(self.nodes[i].clone()).await;
        let us = t.elapsed().as_micros() as u64;
        let mut st = self.stats[i].lock();
        let _ = st.latency_us.record(us.max(1));
        if r.is_err() {
            st.errors += 1;
        }
        drop(st);
        r.map_err(OpError::from)
    }

    /// Per-node calls, errors and service times so far.
    pub fn node_reports(&self) -> Vec<NodeReport> {
        self.nodes
            .iter()
            .zip(self.stats.iter())
            .map(|(n, st)| {
                let st = st.lock();
                NodeReport {
                    url: n.url.clone(),
                    calls: st.latency_us.len(),
                    errors: st.errors,
                    p50_us: st.latency_us.value_at_quantile(0.5),
                    p99_us: st.latency_us.value_at_quantile(0.99),
                }
            })
            .collect()
    }
}
