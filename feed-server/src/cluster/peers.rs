//! Calls to other feed nodes: one lazily connected channel per peer, a deadline on every call,
//! and a circuit breaker per peer so a dead node costs its users a fast `UNAVAILABLE` instead of
//! a timeout, while every other user is served normally.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::ring::NodeSpec;

/// Metadata set on a forwarded call: the receiver must own the user and must not forward again.
pub const FORWARDED: &str = "x-feedline-forwarded";

/// A circuit breaker: opens after `threshold` consecutive transport failures, fails calls fast
/// while open, and lets one probe through when the cool-down has passed.
#[derive(Debug)]
pub struct Breaker {
    failures: AtomicU32,
    open_until: Mutex<Option<Instant>>,
    threshold: u32,
    cool_down: Duration,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Breaker {
            failures: AtomicU32::new(0),
            open_until: Mutex::new(None),
            threshold: threshold.max(1),
            cool_down,
        }
    }

    /// Whether a call may go out now (closed, or open with the cool-down over: one probe).
    pub fn allow(&self) -> bool {
        let mut open = self.open_until.lock();
        match *open {
            Some(t) if Instant::now() < t => false,
            Some(_) => {
                // Half-open: this caller probes; others wait for another cool-down.
                *open = Some(Instant::now() + self.cool_down);
                true
            }
            None => true,
        }
    }

    /// Records a call's result: transport failures count, anything the peer answered resets.
    pub fn record(&self, ok: bool) {
        if ok {
            self.failures.store(0, Ordering::Relaxed);
            *self.open_until.lock() = None;
        } else if self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= self.threshold {
            *self.open_until.lock() = Some(Instant::now() + self.cool_down);
        }
    }

    /// Whether the breaker is open now.
    pub fn is_open(&self) -> bool {
        self.open_until.lock().is_some_and(|t| Instant::now() < t)
    }
}

/// Whether a status means the peer could not be reached (as opposed to an answer).
pub fn is_transport_failure(s: &Status) -> bool {
    if s.metadata().contains_key(RETRY) {
        // The node answered: it is reachable, only not serving that user this moment.
        return false;
    }
    matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded)
        || (s.code() == Code::Unknown && s.message().contains("transport"))
        || timed_out(s)
}

/// Marks an `UNAVAILABLE` a node answers itself (a partition moving, a lapsed lease, epochs
/// differing for a moment): the caller may retry, and a forwarding node's circuit breaker does
/// not count it as the peer being unreachable.
pub const RETRY: &str = "x-feedline-retry";

/// An `UNAVAILABLE` answered by this node, marked [`RETRY`].
pub fn retry_later(message: String) -> Status {
    let mut s = Status::unavailable(message);
    s.metadata_mut()
        .insert(RETRY, tonic::metadata::MetadataValue::from_static("1"));
    s
}

/// tonic's client deadline answers `CANCELLED "Timeout expired"`.
fn timed_out(s: &Status) -> bool {
    s.code() == Code::Cancelled && s.message().contains("Timeout expired")
}

/// Another feed node.
#[derive(Debug)]
pub struct Peer {
    /// Its map entry.
    pub spec: NodeSpec,
    channel: Channel,
    breaker: Breaker,
    deadline: Duration,
}

impl Peer {
    /// A peer reached at `spec.addr`, calls bounded by `deadline`; over TLS when `tls` is set
    /// (the peer's certificate verified, this node's presented as its client identity).
    pub fn new(
        spec: NodeSpec,
        deadline: Duration,
        breaker: Breaker,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Result<Peer, String> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let bad = |e: tonic::transport::Error| format!("node {} address {:?}: {e}", spec.name, spec.addr);
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", spec.addr)).map_err(bad)?;
        if let Some(t) = tls {
            endpoint = endpoint.tls_config(t).map_err(bad)?;
        }
        let channel = endpoint
            .connect_timeout(deadline.min(Duration::from_millis(500)))
            .timeout(deadline)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Peer {
            spec,
            channel,
            breaker,
            deadline,
        })
    }

    fn unavailable(&self, why: &str) -> Status {
        Status::unavailable(format!(
            "node {} ({}) owns this user and is unreachable ({why}); other users are served normally",
            self.spec.name, self.spec.addr
        ))
    }

    /// Forwards one call: `f` gets the channel and a request carrying the caller's
    /// authorization, the forwarded mark and the deadline.
    pub async fn forward<T, R, F, Fut>(&self, req: tonic::Request<T>, f: F) -> Result<tonic::Response<R>, Status>
    where
        F: FnOnce(Channel, tonic::Request<T>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, Status>>,
    {
        if !self.breaker.allow() {
            metrics::counter!(feed_engine::metrics::FORWARDS, "peer" => self.spec.name.clone(), "result" => "breaker-open")
                .increment(1);
            return Err(self.unavailable("circuit open after repeated failures"));
        }
        let auth = req.metadata().get("authorization").cloned();
        let mut out = tonic::Request::new(req.into_inner());
        if let Some(a) = auth {
            out.metadata_mut().insert("authorization", a);
        }
        out.metadata_mut()
            .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
        out.set_timeout(self.deadline);
        let res = f(self.channel.clone(), out).await;
        let failed = res.as_ref().err().is_some_and(is_transport_failure);
        self.breaker.record(!failed);
        let result = if failed { "unreachable" } else { "ok" };
        metrics::counter!(feed_engine::metrics::FORWARDS, "peer" => self.spec.name.clone(), "result" => result)
            .increment(1);
        res.map_err(|s| {
            if timed_out(&s) {
                Status::deadline_exceeded(format!(
                    "node {} ({}) did not answer within {} ms; a write may or may not have been applied",
                    self.spec.name,
                    self.spec.addr,
                    self.deadline.as_millis()
                ))
            } else if failed {
                self.unavailable(s.message())
            } else {
                s
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_threshold_and_probes_after_cool_down() {
        let b = Breaker::new(3, Duration::from_millis(50));
        assert!(b.allow());
        b.record(false);
        b.record(false);
        assert!(b.allow() && !b.is_open(), "two failures keep it closed");
        b.record(false);
        assert!(b.is_open() && !b.allow(), "the third opens it");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !b.allow() {
            assert!(Instant::now() < deadline, "never half-opened");
            std::thread::yield_now();
        }
        assert!(!b.allow(), "only one probe at a time");
        b.record(true);
        assert!(b.allow() && !b.is_open(), "an answer closes it");
    }
}
