//! The apply loop: a node applies, in log order and exactly once, the events every node applies
//! (replicated subjects) and those of the partitions it owns (their own events and the fanout
//! batches other nodes send them). Events come from an ordered consumer filtered to those
//! subjects: an ephemeral, unacknowledged consumer that notices any gap in what it was handed
//! (a pull lost with its NATS server) and starts again after the last event it delivered, so an
//! acknowledged write is never skipped. Where the node left off is its database's applied
//! sequence, written in the same batch as each change.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{consumer, stream};
use dashmap::DashMap;
use feed_engine::Engine;
use feed_engine::WriteCtx;
use futures::StreamExt;
use tokio::sync::watch;

use super::fanout::FanoutBatch;
use super::{APPLY_BATCH, Event, Waiter, subjects};
use crate::ops::Outcome;

/// What one log message holds.
pub(super) enum Record {
    /// A client's write.
    Event(Event),
    /// Posts' deliveries or retractions for readers of one partition.
    Fanout(FanoutBatch),
}

/// One message as read from the log: its sequence and its record (or why it did not decode).
type Logged = (u64, Result<Record, String>);

/// With nothing delivered for this long, the consumer is opened again from the database's
/// position: an ordered consumer lives on one NATS server, and when that server dies its pulls
/// can wait far longer than this before they fail.
const IDLE_REOPEN: Duration = Duration::from_secs(3);

/// Where the node's events come from: an ordered consumer of the log, filtered to what this
/// node applies, opened (and opened again) after a given sequence.
pub(super) struct Source {
    /// The log.
    pub stream: stream::Stream,
    /// The subjects this node applies.
    pub filter: Vec<String>,
    /// Consumer names start with this (node and start time), then a serial.
    pub name: String,
    /// Consumers opened so far.
    pub serial: u64,
}

impl Source {
    /// Opens a consumer delivering from the sequence after `after` (deleting the previous one),
    /// and says how many messages it holds for this node now.
    pub async fn open(&mut self, after: u64) -> Result<(consumer::pull::Ordered, u64), String> {
        if self.serial > 0 {
            let _ = self
                .stream
                .delete_consumer(&format!("{}-{}", self.name, self.serial))
                .await;
        }
        self.serial += 1;
        let consumer: consumer::Consumer<consumer::pull::OrderedConfig> = self
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                name: Some(format!("{}-{}", self.name, self.serial)),
                filter_subjects: self.filter.clone(),
                deliver_policy: if after == 0 {
                    consumer::DeliverPolicy::All
                } else {
                    consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: after + 1,
                    }
                },
                // Short pulls, so heartbeats come every second.
                max_expires: Duration::from_secs(2),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("creating the node's consumer: {e}"))?;
        let pending = consumer.cached_info().num_pending;
        let msgs = consumer
            .messages()
            .await
            .map_err(|e| format!("consuming the event stream: {e}"))?;
        Ok((msgs, pending))
    }
}

/// Where the apply loop reports: the last sequence applied, and how many messages so far.
pub(super) struct Progress {
    pub applied: watch::Sender<u64>,
    pub count: Arc<AtomicU64>,
}

/// Applies the log in order, in groups: each event in its write context (its time, its minted
/// id, its sequence written atomically with its change), one WAL sync per group. Results go to
/// the writers waiting on this node. Messages at or below the database's applied sequence were
/// applied before (a consumer that started again from further back) and are skipped.
pub(super) async fn apply_loop(
    engine: Engine,
    mut source: Source,
    mut msgs: consumer::pull::Ordered,
    me: String,
    waiters: Arc<DashMap<u64, Waiter>>,
    progress: Progress,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            m = tokio::time::timeout(IDLE_REOPEN, msgs.next()) => m,
            _ = stop.changed() => return,
        };
        let Ok(Some(first)) = first else {
            // Idle, or the stream ended: open the consumer again after what is applied.
            let after = engine.applied_seq().unwrap_or(0);
            match source.open(after).await {
                Ok((m, _)) => msgs = m,
                Err(e) => tracing::warn!(error = %e, "reopening the event stream; retrying"),
            }
            continue;
        };
        let mut batch = vec![first];
        while batch.len() < APPLY_BATCH {
            match futures::FutureExt::now_or_never(msgs.next()) {
                Some(Some(m)) => batch.push(m),
                _ => break,
            }
        }
        let mut records: Vec<Logged> = Vec::with_capacity(batch.len());
        for m in batch {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    // The ordered consumer starts again after its last delivered event.
                    tracing::warn!(error = %e, "event stream hiccup");
                    continue;
                }
            };
            let seq = match m.info() {
                Ok(i) => i.stream_sequence,
                Err(e) => {
                    tracing::warn!(error = %e, "event without stream info");
                    continue;
                }
            };
            records.push((seq, decode(&m.subject, &m.payload)));
        }
        let Some(&(last_seq, _)) = records.last() else { continue };
        let n = records.len() as u64;
        let e = engine.clone();
        let me2 = me.clone();
        let done = tokio::task::spawn_blocking(move || apply_records(&e, &me2, records)).await;
        let results = match done {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "applying the log failed; this node stops applying writes");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "apply task failed; this node stops applying writes");
                return;
            }
        };
        for (req, r) in results {
            if let Some((_, w)) = waiters.remove(&req) {
                let _ = w.send(r);
            }
        }
        progress.count.fetch_add(n, Ordering::SeqCst);
        metrics::gauge!(feed_engine::metrics::APPLIED_SEQ).set(last_seq as f64);
        let _ = progress.applied.send(last_seq);
    }
}

fn decode(subject: &str, payload: &[u8]) -> Result<Record, String> {
    if subjects::is_fanout(subject) {
        serde_json::from_slice::<FanoutBatch>(payload)
            .map(Record::Fanout)
            .map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<Event>(payload)
            .map(Record::Event)
            .map_err(|e| e.to_string())
    }
}

/// What applying a group returned to this node's own writers: (request number, result).
type Applied = Vec<(u64, feed_engine::Result<Outcome>)>;

/// Applies one group of messages (blocking). Messages at or below the database's applied
/// sequence were applied before a restart and are skipped: each event's sequence is written in
/// the same batch as its change (a fanout batch's with the group's sync), so a message is
/// applied exactly once — and a fanout batch applied twice changes nothing anyway. Returns the
/// results of this node's own events by request number.
fn apply_records(e: &Engine, me: &str, records: Vec<Logged>) -> Result<Applied, String> {
    let mut done = e.applied_seq().map_err(|x| x.to_string())?;
    let mut results = Vec::new();
    let mut last = done;
    for (seq, rec) in records {
        last = last.max(seq);
        if seq <= done {
            metrics::counter!(feed_engine::metrics::EVENTS_APPLIED, "outcome" => "skipped").increment(1);
            continue;
        }
        let ev = match rec {
            Ok(Record::Event(ev)) => ev,
            Ok(Record::Fanout(b)) => {
                for item in &b.items {
                    let (kind, entry) = item.entry();
                    e.apply_fanout(kind, &entry, &item.readers)
                        .map_err(|x| format!("fanout batch at {seq}: {x}"))?;
                }
                metrics::counter!(feed_engine::metrics::EVENTS_APPLIED, "outcome" => "fanout").increment(1);
                done = seq;
                continue;
            }
            Err(why) => {
                tracing::warn!(seq, why, "undecodable event skipped");
                continue;
            }
        };
        // The event's time, minted id and sequence: every node applies it identically.
        let at = e.at(WriteCtx::replayed(seq, ev.at_ms, ev.id));
        let r = loop {
            match ev.op.clone().apply(at) {
                // The fanout backlog is local: waiting for it keeps every node's result the same.
                Err(feed_engine::Error::Overloaded(_)) => std::thread::sleep(Duration::from_millis(2)),
                Err(feed_engine::Error::ShuttingDown) => return Err("engine is shutting down".into()),
                Err(feed_engine::Error::Storage(s)) => return Err(format!("storage: {s}")),
                r => break r,
            }
        };
        let outcome = if r.is_ok() { "ok" } else { "refused" };
        metrics::counter!(feed_engine::metrics::EVENTS_APPLIED, "outcome" => outcome).increment(1);
        done = seq;
        if ev.origin == me {
            results.push((ev.req, r));
        }
    }
    e.note_applied(last).map_err(|x| x.to_string())?;
    e.sync().map_err(|x| x.to_string())?;
    Ok(results)
}
