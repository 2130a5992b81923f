//! Writes through the log: a write is appended to the replicated stream (the ack point) and
//! answered once this node has applied it, so the writer's next call here reads it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use feed_engine::UserId;
use tokio::sync::oneshot;
use tonic::Status;

use async_nats::jetstream;

use super::{Cluster, Event, now_ms, subjects};
use crate::ops::{Op, Outcome};

impl Cluster {
    /// A user id in a partition this node holds (and is ready for) that nobody else can mint:
    /// low 10 bits are this node's id. `UNAVAILABLE` while it holds none (declared down).
    fn mint_user_id(&self) -> Result<UserId, Status> {
        if self.placement.mine().is_empty() {
            return Err(super::peers::retry_later(format!(
                "node {} holds no partition at the moment (it is rejoining); retry on another node",
                self.name()
            )));
        }
        let floor = (self.engine.max_user_id() >> 10) + 1;
        loop {
            let cur = self.next_user.load(Ordering::SeqCst);
            let k = cur.max(floor);
            if self
                .next_user
                .compare_exchange(cur, k + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                continue;
            }
            let id = (k << 10) | self.me as u64;
            if self.placement.owns(id) {
                return Ok(id);
            }
        }
    }

    /// Appends a write to the log (the ack point: a quorum of NATS servers has it, fsynced) and
    /// returns its result once this node has applied it, so the writer's next call here reads it.
    /// `limit` caps the wait (with the configured apply timeout). `author`: the post's author,
    /// for an op decided on its post's partition ([`Op::on_post_partition`]).
    pub async fn exec(&self, mut op: Op, author: Option<UserId>, limit: Duration) -> Result<Outcome, Status> {
        let started = Instant::now();
        // A post's rank and push decision come from its author's follower count, which only the
        // author's node holds: it goes with the event.
        if let Op::Publish { author, reach, .. } = &mut op
            && self.owns(*author)
        {
            *reach = Some(self.engine.follower_count(*author).map_err(crate::convert::status)?);
        }
        let (id, at_ms) = match &op {
            Op::CreateUser { .. } => (Some(self.mint_user_id()?), now_ms()),
            op if op.mints_id() => {
                let id = self.engine.mint_post_id();
                (Some(id), feed_engine::post_time_ms(id))
            }
            _ => (None, now_ms()),
        };
        // The event's partition: its acting user's, or the new user's (partition 0 for the
        // operator's own revocations, which have neither).
        let user = match op.on_post_partition() {
            true => Some(author.ok_or_else(|| Status::internal("a like routed without its post's author"))?),
            false => op.actor().or(id.filter(|_| matches!(op, Op::CreateUser { .. }))),
        };
        let partition = user.map(|u| self.placement.partition(u)).unwrap_or(0);
        let subject = match user {
            Some(u) if op.owner_only() => {
                if !self.owns(u) {
                    return Err(super::peers::retry_later(format!(
                        "node {} does not hold user {u} at epoch {}; their node applies this write — retry",
                        self.name(),
                        self.placement.epoch()
                    )));
                }
                subjects::owned(partition)
            }
            _ => subjects::replicated(partition),
        };
        let replicated = !op.owner_only();
        let has_graph_half = op.has_graph_half();
        let req = self.next_req.fetch_add(1, Ordering::SeqCst);
        let ev = Event {
            origin: self.name().to_string(),
            req,
            at_ms,
            id,
            op,
        };
        let payload = serde_json::to_vec(&ev).map_err(|e| Status::internal(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        self.waiters.insert(req, tx);
        let msg_id = format!("{}-{req}", ev.origin);
        let budget = Duration::from_millis(self.cfg.apply_timeout_ms).min(limit);
        let seq = match self.append(&subject, &msg_id, payload, started + budget).await {
            Ok(s) => s,
            Err(s) => {
                self.waiters.remove(&req);
                return Err(s);
            }
        };
        let left = budget.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, rx).await {
            Ok(Ok(r)) => {
                metrics::histogram!(feed_engine::metrics::APPLY_WAIT_SECONDS).record(started.elapsed().as_secs_f64());
                // A node that forwarded this call waits to apply it too before answering.
                if replicated {
                    super::ryw::note_write(seq);
                }
                // The other user's half of a follow is in the log before the answer.
                if has_graph_half && r.is_ok() {
                    self.followups_sent(seq).await;
                }
                r.map_err(crate::convert::status)
            }
            _ => {
                self.waiters.remove(&req);
                Err(Status::deadline_exceeded(format!(
                    "the write is in the replicated log (sequence {seq}) and will be applied, \
                     but this node has not applied it yet"
                )))
            }
        }
    }

    /// Publishes to the stream until acknowledged or `deadline`; retries reuse the message id,
    /// so the stream keeps one copy whatever happened to an earlier attempt.
    async fn append(&self, subject: &str, msg_id: &str, payload: Vec<u8>, deadline: Instant) -> Result<u64, Status> {
        loop {
            let attempt = append_once(&self.js, subject, msg_id, &payload);
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left.min(Duration::from_secs(2)), attempt).await {
                Ok(Ok(seq)) => return Ok(seq),
                Ok(Err(e)) if Instant::now() < deadline => {
                    tracing::warn!(error = %e, "append to the event log failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(_) if Instant::now() < deadline => tracing::warn!("append to the event log timed out; retrying"),
                Ok(Err(e)) => {
                    return Err(super::peers::retry_later(format!(
                        "the event log did not take the write ({e}); nothing was stored, retry"
                    )));
                }
                Err(_) => {
                    return Err(Status::deadline_exceeded(
                        "the event log did not acknowledge the write in time; it may or may not have been stored",
                    ));
                }
            }
        }
    }
}

/// One append of `payload` to the log with its message id: the stream's sequence once a quorum
/// of the servers has it.
pub(super) async fn append_once(
    js: &jetstream::Context,
    subject: &str,
    msg_id: &str,
    payload: &[u8],
) -> Result<u64, String> {
    let msg = jetstream::message::PublishMessage::build()
        .payload(payload.to_vec().into())
        .message_id(msg_id);
    let ack = js
        .send_publish(subject.to_string(), msg)
        .await
        .map_err(|e| e.to_string())?;
    ack.await.map(|a| a.sequence).map_err(|e| e.to_string())
}
