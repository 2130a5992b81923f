//! The apply loop: every node applies the whole log, in order, exactly once. Events come in
//! groups from the node's pull consumer; a gap in their sequences (messages handed to a pull
//! request that died with its NATS server) is filled from the stream itself before anything
//! after it is applied, so an acknowledged write is never skipped on a replica.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{consumer, stream};
use dashmap::DashMap;
use feed_engine::Engine;
use feed_engine::WriteCtx;
use futures::StreamExt;
use tokio::sync::watch;

use super::{APPLY_BATCH, Event, Waiter};
use crate::ops::Outcome;

/// One event as read from the log: its sequence and the event (or why it could not be decoded).
type Logged = (u64, Result<Event, String>);

/// Applies the log in order, in groups: each event in its write context (its time, its minted id,
/// its sequence written atomically with its change), one WAL sync per group, then one ack for the
/// group. Results go to the writers waiting on this node. `applied` starts at the database's
/// position: the next event applied is the one after it, whatever the consumer delivers.
pub(super) async fn apply_loop(
    engine: Engine,
    log: stream::Stream,
    mut msgs: consumer::pull::Stream,
    me: String,
    waiters: Arc<DashMap<u64, Waiter>>,
    applied: watch::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = *applied.borrow() + 1;
    loop {
        let first = tokio::select! {
            m = msgs.next() => m,
            _ = stop.changed() => return,
        };
        let Some(first) = first else {
            tracing::error!("event stream ended; this node no longer applies writes");
            return;
        };
        let mut batch = vec![first];
        while batch.len() < APPLY_BATCH {
            match futures::FutureExt::now_or_never(msgs.next()) {
                Some(Some(m)) => batch.push(m),
                _ => break,
            }
        }
        let mut events: Vec<Logged> = Vec::with_capacity(batch.len());
        let mut last = None;
        for m in batch {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
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
            if seq > next {
                // Delivered to a pull that was lost: read them from the stream, in order.
                match fill_gap(&log, next, seq, &mut stop).await {
                    Some(missing) => events.extend(missing),
                    None => return,
                }
            }
            next = next.max(seq + 1);
            events.push((seq, decode(&m.payload)));
            last = Some((seq, m));
        }
        let Some((last_seq, last_msg)) = last else { continue };
        let e = engine.clone();
        let me2 = me.clone();
        let done = tokio::task::spawn_blocking(move || apply_events(&e, &me2, events)).await;
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
        let _ = applied.send(last_seq);
        metrics::gauge!(feed_engine::metrics::APPLIED_SEQ).set(last_seq as f64);
        if let Err(e) = last_msg.ack().await {
            tracing::warn!(error = %e, seq = last_seq, "ack failed; the events come again and are skipped");
        }
    }
}

fn decode(payload: &[u8]) -> Result<Event, String> {
    serde_json::from_slice::<Event>(payload).map_err(|e| e.to_string())
}

/// The events `from..to` read from the stream by sequence, retried until the stream answers
/// (its leader may be moving after a server died). `None` when the node is stopping.
async fn fill_gap(log: &stream::Stream, from: u64, to: u64, stop: &mut watch::Receiver<bool>) -> Option<Vec<Logged>> {
    tracing::info!(from, to, "filling a gap in the delivered log from the stream");
    metrics::counter!(feed_engine::metrics::EVENTS_APPLIED, "outcome" => "gap-filled").increment(to - from);
    let mut out = Vec::with_capacity((to - from) as usize);
    for seq in from..to {
        let mut wait = Duration::from_millis(50);
        loop {
            match log.get_raw_message(seq).await {
                Ok(m) => {
                    out.push((seq, decode(&m.payload)));
                    break;
                }
                Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => {
                    // Aged out of the log (only past its retention): nothing left to apply.
                    tracing::error!(seq, "event gone from the log before this node applied it");
                    out.push((seq, Err("gone from the log".into())));
                    break;
                }
                Err(e) => {
                    tracing::warn!(seq, error = %e, "reading a missed event; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return None,
                    }
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
    Some(out)
}

/// What applying a group returned to this node's own writers: (request number, result).
type Applied = Vec<(u64, feed_engine::Result<Outcome>)>;

/// Applies one group of events (blocking). Events at or below the database's applied sequence
/// were applied before a restart and are skipped: each event's sequence is written in the same
/// batch as its change, so an event is applied exactly once. Returns the results of this node's
/// own events by request number.
fn apply_events(e: &Engine, me: &str, events: Vec<(u64, Result<Event, String>)>) -> Result<Applied, String> {
    let mut done = e.applied_seq().map_err(|x| x.to_string())?;
    let mut results = Vec::new();
    let mut last = done;
    for (seq, ev) in events {
        last = last.max(seq);
        if seq <= done {
            metrics::counter!(feed_engine::metrics::EVENTS_APPLIED, "outcome" => "skipped").increment(1);
            continue;
        }
        let ev = match ev {
            Ok(ev) => ev,
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
