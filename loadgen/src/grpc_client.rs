//! The clients of a feed-server, or of a cluster's nodes, that the gRPC target calls through:
//! round-robin over the nodes, with each node's service times and failures for the per-node
//! report. A node that cannot be reached (connection refused or lost: not an answer it sent) is
//! skipped for a second, as a client's outlier ejection would; the failed call still counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

/// How long a node that could not be reached is skipped.
const EJECT_FOR: Duration = Duration::from_secs(1);

/// Clients of a feed-server or a cluster of them, acting with the admin token. Calls go to the
/// nodes in turn (skipping one ejected for being unreachable); each node forwards what it does
/// not own.
#[derive(Clone)]
pub struct Grpc {
    pub(crate) nodes: Vec<GrpcNode>,
    pub(crate) next: Arc<AtomicUsize>,
    pub(crate) stats: Arc<Vec<Mutex<NodeStats>>>,
    /// `Bearer <admin token>`.
    pub(crate) auth: MetadataValue<Ascii>,
    /// Per node, until when it is skipped: ms since `since`.
    ejected: Arc<Vec<AtomicU64>>,
    since: Instant,
}

impl Grpc {
    /// Clients of `nodes`, with an empty report each, acting with `auth`.
    pub(crate) fn new(nodes: Vec<GrpcNode>, stats: Vec<Mutex<NodeStats>>, auth: MetadataValue<Ascii>) -> Grpc {
        Grpc {
            ejected: Arc::new(nodes.iter().map(|_| AtomicU64::new(0)).collect()),
            nodes,
            next: Arc::new(AtomicUsize::new(0)),
            stats: Arc::new(stats),
            auth,
            since: Instant::now(),
        }
    }

    /// The next node in turn that is not ejected (the next in turn if all are).
    fn pick(&self) -> usize {
        let n = self.nodes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.since.elapsed().as_millis() as u64;
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.ejected[i].load(Ordering::Relaxed) <= now)
            .unwrap_or(start % n)
    }

    /// Runs one call on the next node, recording its service time there.
    pub(crate) async fn call<T, F, Fut>(&self, f: F) -> R<T>
    where
        F: FnOnce(GrpcNode) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let i = self.pick();
        let t = Instant::now();
        let r = f(self.nodes[i].clone()).await;
        let us = t.elapsed().as_micros() as u64;
        let mut st = self.stats[i].lock();
        let _ = st.latency_us.record(us.max(1));
        if r.is_err() {
            st.errors += 1;
        }
        drop(st);
        if let Err(s) = &r
            && unreachable(s)
        {
            let until = self.since.elapsed() + EJECT_FOR;
            self.ejected[i].store(until.as_millis() as u64, Ordering::Relaxed);
        }
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

/// Whether a call failed because its node could not be reached, not because of what the node
/// answered: `UNAVAILABLE` without the cluster's retry mark and not about another node (an
/// owner the called node could not reach).
fn unreachable(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::Unavailable
        && !s.metadata().contains_key("x-feedline-retry")
        && !s.message().contains("owns this user")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lazy_node(port: u16) -> GrpcNode {
        let ch = Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .expect("an address")
            .connect_lazy();
        GrpcNode {
            url: format!("grpc://127.0.0.1:{port}"),
            users: UserServiceClient::new(ch.clone()),
            posts: PostServiceClient::new(ch.clone()),
            feeds: FeedServiceClient::new(ch.clone()),
            engage: EngagementServiceClient::new(ch),
        }
    }

    #[tokio::test]
    async fn an_ejected_node_is_skipped_until_its_time_is_up_and_answers_do_not_eject() {
        let stats = (0..3)
            .map(|_| {
                Mutex::new(NodeStats {
                    latency_us: Histogram::new(3).expect("histogram"),
                    errors: 0,
                })
            })
            .collect();
        let g = Grpc::new(
            vec![lazy_node(1), lazy_node(2), lazy_node(3)],
            stats,
            "Bearer x".parse().unwrap(),
        );
        assert_eq!((0..6).map(|_| g.pick()).collect::<Vec<_>>(), [0, 1, 2, 0, 1, 2]);
        g.ejected[1].store(u64::MAX, Ordering::Relaxed);
        assert!((0..6).all(|_| g.pick() != 1), "an ejected node is skipped");
        // All ejected: calls still go somewhere, in turn.
        g.ejected.iter().for_each(|e| e.store(u64::MAX, Ordering::Relaxed));
        let all: std::collections::BTreeSet<usize> = (0..3).map(|_| g.pick()).collect();
        assert_eq!(all.len(), 3);

        // What ejects: a node that could not be reached. What does not: an answer it sent.
        assert!(unreachable(&tonic::Status::unavailable(
            "tcp connect error: Connection refused"
        )));
        let mut moving = tonic::Status::unavailable("partition 3 is moving to node n1; retry in a moment");
        moving.metadata_mut().insert("x-feedline-retry", "1".parse().unwrap());
        assert!(!unreachable(&moving));
        assert!(!unreachable(&tonic::Status::unavailable(
            "node n2 (127.0.0.1:1) owns this user and is unreachable (refused); other users are served normally"
        )));
        assert!(!unreachable(&tonic::Status::invalid_argument("blank post")));
    }
}
