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
use tokio::sync::{mpsc, oneshot, watch};

use super::fanout::FanoutBatch;
use super::{APPLY_BATCH, Event, Waiter, subjects};
use crate::ops::Outcome;

/// How long one step of a partition's replay (opening its consumer, each message) may wait.
const REPLAY_STEP: Duration = Duration::from_secs(2);

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
    /// The cluster's partition count.
    pub partitions: u32,
    /// Set after a handover replayed partitions' events: the follow-ups they wrote again have
    /// older keys than the relay's position (`followups::relay`).
    pub rewind: Arc<std::sync::atomic::AtomicBool>,
    /// Partition snapshots a takeover restores.
    pub snapshots: super::snapshots::Snapshots,
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

/// A change of the partitions this node holds, carried out by the apply loop between two
/// groups (it alone owns the consumer and the applied sequence).
pub(super) struct Handover {
    /// Partitions given up: their position is recorded as the node's applied sequence.
    pub lost: Vec<u32>,
    /// Partitions gained: their own events are replayed from their recorded position (0:
    /// none) up to the node's applied sequence, then their readers are forgotten.
    pub gained: Vec<(u32, u64)>,
    /// What the node consumes from now on.
    pub filter: Vec<String>,
    /// Answered with the sequence the handover happened at.
    pub done: oneshot::Sender<Result<u64, String>>,
}

/// Where the apply loop reports: the last sequence applied, how many messages so far, and the
/// results of this node's own writes to their waiting callers.
pub(super) struct Progress {
    pub applied: watch::Sender<u64>,
    pub count: Arc<AtomicU64>,
    pub waiters: Arc<DashMap<u64, Waiter>>,
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
    progress: Progress,
    mut handovers: mpsc::Receiver<Handover>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            m = tokio::time::timeout(IDLE_REOPEN, msgs.next()) => m,
            Some(h) = handovers.recv() => {
                let r = hand_over(&engine, &mut source, h.lost, h.gained, h.filter).await;
                match r {
                    Ok((m, at)) => {
                        msgs = m;
                        let _ = h.done.send(Ok(at));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "taking partitions over failed; this node stops applying writes");
                        let _ = h.done.send(Err(e));
                        return;
                    }
                }
                continue;
            }
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
            if let Some((_, w)) = progress.waiters.remove(&req) {
                let _ = w.send(r);
            }
        }
        progress.count.fetch_add(n, Ordering::SeqCst);
        metrics::gauge!(feed_engine::metrics::APPLIED_SEQ).set(last_seq as f64);
        let _ = progress.applied.send(last_seq);
    }
}

/// Carries out a handover at the applied sequence `at`: records it as the lost partitions'
/// position; restores the gained partitions' snapshots where newer than their positions and
/// replays each one's own events up to it (`take_partitions`), forgets the readers this node
/// kept of them before, and marks them held (tracked by the node's sequence from now); then
/// consumes the new set of subjects from `at + 1`. Each step is recorded before the next, so a
/// crash anywhere resumes it at the next start without applying an event twice.
async fn hand_over(
    engine: &Engine,
    source: &mut Source,
    lost: Vec<u32>,
    gained: Vec<(u32, u64)>,
    filter: Vec<String>,
) -> Result<(consumer::pull::Ordered, u64), String> {
    let at = engine.applied_seq().map_err(|e| e.to_string())?;
    for &p in &lost {
        engine.set_partition_seq(p, Some(at)).map_err(|e| e.to_string())?;
    }
    if !lost.is_empty() {
        forget_given_away(engine.clone(), source.partitions);
    }
    take_partitions(engine, &source.stream, &source.snapshots, &gained, at).await?;
    if !gained.is_empty() {
        source.rewind.store(true, Ordering::SeqCst);
    }
    source.filter = filter;
    let mut attempt = 0u32;
    loop {
        match source.open(at).await {
            Ok((m, _)) => return Ok((m, at)),
            Err(e) => {
                attempt += 1;
                tracing::warn!(attempt, error = %e, "reopening the event stream after a handover; retrying");
                tokio::time::sleep(Duration::from_millis(250 * attempt.min(8) as u64)).await;
            }
        }
    }
}

/// Takes the partitions `gained` (each with its recorded position) over at the node's applied
/// sequence `at`: restores a partition's snapshot when one is newer than its position (at or
/// below `at`), replays its own events after that up to `at`, forgets what this node kept of
/// their readers, and marks them held. Also run at start, for a handover a crash interrupted.
pub(super) async fn take_partitions(
    engine: &Engine,
    stream: &stream::Stream,
    snaps: &super::snapshots::Snapshots,
    gained: &[(u32, u64)],
    at: u64,
) -> Result<(), String> {
    let partitions = snaps.partitions();
    if gained.is_empty() {
        return Ok(());
    }
    let position = |p: u32, recorded: u64| -> Result<u64, String> {
        Ok(engine
            .partition_seq(p)
            .map_err(|e| e.to_string())?
            .unwrap_or(recorded)
            .max(recorded))
    };
    // First the snapshots, all in one restore; then each partition's events after its
    // position. The log may have no stream leader for a while (a NATS server died): each step
    // is retried, from where the partitions' recorded positions say the last attempt got to.
    let mut attempt = 0u32;
    loop {
        let wanted = gained
            .iter()
            .map(|&(p, recorded)| Ok((p, position(p, recorded)?)))
            .collect::<Result<Vec<_>, String>>()?;
        match snaps.restore_all(engine, &wanted, at).await {
            Ok(_) => break,
            Err(e) => {
                attempt += 1;
                tracing::warn!(attempt, error = %e, "restoring partition snapshots failed; retrying");
                tokio::time::sleep(Duration::from_millis(250 * attempt.min(8) as u64)).await;
            }
        }
    }
    for &(p, recorded) in gained {
        let mut attempt = 0u32;
        loop {
            let from = position(p, recorded)?;
            match replay_partition(engine, stream, p, from, at).await {
                Ok(n) => {
                    tracing::info!(
                        partition = p,
                        from,
                        to = at,
                        events = n,
                        "replayed a partition's own events"
                    );
                    break;
                }
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(partition = p, attempt, error = %e, "replaying a partition failed; retrying");
                    tokio::time::sleep(Duration::from_millis(250 * attempt.min(8) as u64)).await;
                }
            }
        }
    }
    let e = engine.clone();
    let ps: Vec<u32> = gained.iter().map(|&(p, _)| p).collect();
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        let n = e
            .forget_readers(&|r| ps.contains(&super::ring::partition_of(r, partitions)))
            .map_err(|x| x.to_string())?;
        tracing::info!(readers = n, "forgot readers kept from an earlier hold");
        for &p in &ps {
            e.set_partition_seq(p, None).map_err(|x| x.to_string())?;
        }
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())??;
    // Held now, so nothing trims them again: the bodies trimmed while they were elsewhere
    // come back.
    let ps: Vec<u32> = gained.iter().map(|&(p, _)| p).collect();
    super::bodies::fill_owed(engine, snaps, &ps, at).await
}

/// Forgets, in the background, the stored timelines and records of the readers of partitions
/// this node does not hold: taking one again forgets them anyway, so they only hold disk. Run
/// after a handover that gave partitions away, and at start (a crash may have left some).
pub(super) fn forget_given_away(engine: Engine, partitions: u32) {
    tokio::task::spawn_blocking(move || {
        match engine.forget_given_away(&|r| super::ring::partition_of(r, partitions)) {
            Ok(n) => tracing::info!(readers = n, "forgot the readers of partitions held elsewhere"),
            Err(e) => tracing::warn!(
                error = %e,
                "forgetting the readers of partitions held elsewhere failed; the next handover or start tries again"
            ),
        }
    });
}

/// Applies partition `p`'s own events with sequences in `(from, to]`, each recording its
/// sequence as the partition's position. Returns how many it applied.
async fn replay_partition(engine: &Engine, stream: &stream::Stream, p: u32, from: u64, to: u64) -> Result<u64, String> {
    if from >= to {
        return Ok(0);
    }
    // A request lost with a dying NATS server would wait out the client's timeout (10 s):
    // give up sooner and let the caller try again.
    let create = stream.create_consumer(consumer::pull::OrderedConfig {
        filter_subject: subjects::owned(p),
        deliver_policy: consumer::DeliverPolicy::ByStartSequence {
            start_sequence: from + 1,
        },
        max_expires: Duration::from_secs(2),
        ..Default::default()
    });
    let consumer: consumer::Consumer<consumer::pull::OrderedConfig> = tokio::time::timeout(REPLAY_STEP, create)
        .await
        .map_err(|_| format!("replaying partition {p}: no answer within {REPLAY_STEP:?}"))?
        .map_err(|e| format!("replaying partition {p}: {e}"))?;
    let mut left = consumer.cached_info().num_pending;
    let mut msgs = consumer
        .messages()
        .await
        .map_err(|e| format!("replaying partition {p}: {e}"))?;
    let mut applied = 0;
    while left > 0 {
        let m = match tokio::time::timeout(REPLAY_STEP, msgs.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => {
                tracing::warn!(error = %e, "partition replay hiccup");
                continue;
            }
            _ => return Err(format!("replaying partition {p}: the log stopped answering")),
        };
        left -= 1;
        let Ok(seq) = m.info().map(|i| i.stream_sequence) else {
            continue;
        };
        if seq > to {
            break;
        }
        let ev: Event = match serde_json::from_slice(&m.payload) {
            Ok(ev) => ev,
            Err(why) => {
                tracing::warn!(seq, %why, "undecodable event skipped");
                continue;
            }
        };
        let e = engine.clone();
        tokio::task::spawn_blocking(move || {
            let at = e.at(WriteCtx::replayed_for_partition(p, seq, ev.at_ms, ev.id));
            // A refusal is the same refusal the first holder answered: nothing to write.
            match ev.op.apply(at) {
                Err(feed_engine::Error::Storage(s)) => Err(format!("storage: {s}")),
                _ => Ok(()),
            }
        })
        .await
        .map_err(|e| e.to_string())??;
        applied += 1;
    }
    engine.sync().map_err(|e| e.to_string())?;
    Ok(applied)
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
