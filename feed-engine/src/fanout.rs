//! The fanout workers: an actor per thread that takes durable jobs from a channel and delivers,
//! retracts or rebuilds timelines in RocksDB batches, then clears the job's pending record.
//! Deliveries are idempotent (the timeline key is the entry), so a job replayed after a crash
//! never duplicates an entry.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::Receiver;
use rayon::prelude::*;

use crate::codec::{self, JobKind, JobRecord};
use crate::engine::{Change, Inner, ReaderState, TopRanks, fresh_state};
use crate::error::Result;
use crate::model::{Entry, UserId};
use crate::policy::ReaderMode;
use crate::store::{Cf, Durability};

/// A message to a fanout worker.
pub(crate) enum Job {
    /// A durable job from the `pending` family; `acked` is when its publish/delete returned.
    Record { rec: JobRecord, acked: Option<Instant> },
    /// Rebuild a returning reader's timeline from their followees' outboxes.
    Rebuild(UserId),
    /// Stop the worker.
    Stop,
}

/// A metrics label for a job.
pub(crate) fn kind_label(rec: &JobRecord) -> &'static str {
    match rec.kind {
        JobKind::Deliver => "deliver",
        JobKind::Retract => "retract",
    }
}

/// Delivered jobs whose pending records are cleared by one fsync (group commit), at most.
const GROUP_MAX: usize = 256;

/// The worker loop: runs until `Stop`, or until the engine halts (then the rest stays pending).
/// Jobs already queued are taken together: each is delivered with buffered writes, then one
/// fsynced batch clears all their pending records, which also makes their deliveries durable.
pub(crate) fn run_worker(inner: &Arc<Inner>, rx: &Receiver<Job>) {
    let mut group: Vec<(JobRecord, Option<Instant>)> = Vec::new();
    let mut next = rx.recv().ok();
    while let Some(job) = next.take() {
        if inner.halt.load(Ordering::SeqCst) || matches!(job, Job::Stop) {
            commit(inner, &mut group);
            // This worker may have taken another's Stop while grouping: pass one on.
            let _ = inner.jobs.send(Job::Stop);
            return;
        }
        match job {
            Job::Stop => unreachable!("handled above"),
            Job::Record { rec, acked } => {
                let res = match rec.kind {
                    JobKind::Deliver => deliver(inner, &rec),
                    JobKind::Retract => retract(inner, &rec.entry),
                };
                match res {
                    Ok(()) => group.push((rec, acked)),
                    // The job stays pending on disk and runs again at the next open.
                    Err(e) => {
                        tracing::error!(post = rec.entry.post, error = %e, "fanout job failed");
                        inner.release_job();
                    }
                }
            }
            Job::Rebuild(reader) => {
                if let Err(e) = rebuild(inner, reader) {
                    tracing::error!(reader, error = %e, "timeline rebuild failed");
                    if let Some(mut s) = inner.readers.get_mut(&reader) {
                        s.rebuilding = false;
                    }
                }
                inner.release_job();
            }
        }
        next = match rx.try_recv() {
            Ok(j) if group.len() < GROUP_MAX => Some(j),
            Ok(j) => {
                commit(inner, &mut group);
                Some(j)
            }
            Err(_) => {
                commit(inner, &mut group);
                rx.recv().ok()
            }
        };
    }
    commit(inner, &mut group);
}

/// Clears the pending records of delivered jobs with one fsynced write, then releases them.
fn commit(inner: &Inner, group: &mut Vec<(JobRecord, Option<Instant>)>) {
    if group.is_empty() {
        return;
    }
    let mut b = inner.store.batch();
    for (rec, _) in group.iter() {
        inner.store.delete(&mut b, Cf::Pending, &codec::job_key(rec));
    }
    // Fsyncing this also makes the buffered deliveries before it durable.
    let res = inner.store.write(b, Durability::Sync);
    if let Err(e) = &res {
        // The jobs stay pending on disk and run again at the next open.
        tracing::error!(jobs = group.len(), error = %e, "clearing fanout jobs failed");
    }
    for (rec, acked) in group.drain(..) {
        if res.is_ok() {
            if rec.kind == JobKind::Retract {
                inner.cache.changed(Change::Retracted(rec.entry.post));
            }
            if let Some(t) = acked {
                metrics::histogram!(crate::metrics::FANOUT_SECONDS, "kind" => kind_label(&rec))
                    .record(t.elapsed().as_secs_f64());
            }
        }
        inner.release_job();
    }
}

/// The author and every follower whose timeline this node keeps, in key order.
fn audience(inner: &Inner, author: UserId) -> Result<Vec<UserId>> {
    let mut v = Vec::new();
    if inner.owns(author) {
        v.push(author);
    }
    inner.store.scan_prefix(Cf::Followers, author, None, |k, _| {
        if let Some(f) = codec::pair_second(k)
            && inner.owns(f)
        {
            v.push(f);
        }
        true
    })?;
    Ok(v)
}

fn for_chunks(inner: &Inner, readers: &[UserId], f: impl Fn(&[UserId]) -> Result<()> + Sync + Send) -> Result<()> {
    let n = inner.cfg.fanout_batch;
    if readers.len() > inner.cfg.parallel_fanout_over {
        readers.par_chunks(n).try_for_each(f)
    } else {
        readers.chunks(n).try_for_each(f)
    }
}

/// Of the readers listening now, the ones whose feed shows `author`'s posts (on this node).
fn listening_audience(inner: &Inner, author: UserId, listening: Vec<UserId>) -> Result<Vec<UserId>> {
    let mut v = Vec::new();
    for r in listening {
        if inner.owns(r) && (r == author || inner.store.exists(Cf::Following, &codec::pair_key(r, author))?) {
            v.push(r);
        }
    }
    Ok(v)
}

fn deliver(inner: &Inner, rec: &JobRecord) -> Result<()> {
    let e = rec.entry;
    let listener = inner.listener.get();
    if !rec.pushed {
        // Nothing is written: only live subscribers who follow the author hear of it.
        let Some(l) = listener else { return Ok(()) };
        let listening = l.subscribers();
        if listening.is_empty() || !inner.store.exists(Cf::Posts, &codec::id_key(e.post))? {
            return Ok(());
        }
        for r in listening_audience(inner, e.author, listening)? {
            l.on_entry(r, &e);
        }
        return Ok(());
    }
    // A post deleted before its fanout ran is not delivered (its retract job follows).
    if !inner.store.exists(Cf::Posts, &codec::id_key(e.post))? {
        return Ok(());
    }
    let readers = audience(inner, e.author)?;
    for_chunks(inner, &readers, |chunk| deliver_chunk(inner, &e, chunk))?;
    if let Some(l) = listener {
        for &r in &readers {
            l.on_entry(r, &e);
        }
    }
    Ok(())
}

/// Writes one chunk of deliveries as one batch, deciding per reader whether to push.
fn deliver_chunk(inner: &Inner, e: &Entry, readers: &[UserId]) -> Result<()> {
    let now = inner.now_ms();
    let mut b = inner.store.batch();
    let mut trims = Vec::new();
    let mut reasons: HashMap<(&'static str, &'static str), u64> = HashMap::new();
    let mut pushed = Vec::new();
    let value = codec::timeline_value(e.author, e.expires_at_ms);
    inner.load_readers(readers)?;
    for &r in readers {
        let mut st = inner.readers.entry(r).or_insert_with(|| fresh_state(0));
        let d = inner.cfg.policy.decide(&st.activity, st.following, now);
        let to_timeline = match d.mode {
            ReaderMode::Push => st.materialized || st.rebuilding,
            ReaderMode::Pull => {
                if st.materialized {
                    // From now on the timeline misses posts: reads pull until a rebuild.
                    st.materialized = false;
                    inner.put_reader(&mut b, r, &st);
                }
                false
            }
        };
        let mode = if to_timeline { "push" } else { "pull" };
        *reasons.entry((mode, d.reason)).or_default() += 1;
        if to_timeline {
            inner
                .store
                .put(&mut b, Cf::Timeline, &codec::timeline_key(r, e.rank, e.post), &value);
            pushed.push(r);
        }
    }
    if !b.is_empty() {
        inner.store.write(b, Durability::Buffered)?;
    }
    // Counted only once written, so a trim's scan never misses a counted entry.
    for &r in &pushed {
        if let Some(mut st) = inner.readers.get_mut(&r)
            && needs_trim(inner, &mut st, r, e)
        {
            trims.push(r);
        }
    }
    // Cached first pages of every follower may merge this author (pull-mode readers), so all go.
    inner.cache.changed(Change::Timelines(readers));
    for r in trims {
        trim(inner, r)?;
    }
    for ((mode, reason), n) in reasons {
        metrics::counter!(crate::metrics::POLICY_DECISIONS, "mode" => mode, "reason" => reason).increment(n);
    }
    metrics::counter!(crate::metrics::DELIVERIES).increment(pushed.len() as u64);
    Ok(())
}

/// The bound a timeline is trimmed back from: `cap × (1 + slack)`.
fn limit(inner: &Inner) -> u32 {
    (inner.cfg.timeline_cap as f64 * (1.0 + inner.cfg.trim_slack)) as u32
}

/// Whether a reader's counted timeline length is over the bound (unknown length: no).
/// A timeline that kept unread entries past the bound is trimmed again only after another
/// `limit − cap` deliveries, so keeping them does not make every delivery trim.
pub(crate) fn over_limit(inner: &Inner, st: &ReaderState) -> bool {
    let slack = limit(inner).saturating_sub(inner.cfg.timeline_cap as u32).max(1);
    st.trimmed_at
        .is_some_and(|(kept, at)| kept + st.delivered.wrapping_sub(at) > limit(inner).max(kept.saturating_add(slack)))
}

/// Counts one written delivery and says whether the timeline should be trimmed now. With the
/// length unknown (after a restart) a trim is sampled once per `limit − cap` deliveries on average.
fn needs_trim(inner: &Inner, st: &mut ReaderState, reader: UserId, e: &Entry) -> bool {
    let post = e.post;
    st.delivered = st.delivered.wrapping_add(1);
    if st.trim_floor.is_some_and(|f| (e.rank, e.post) <= f) {
        // An entry landed in the region the last trim cut: the next scan must cover it.
        st.trim_floor = None;
    }
    match st.trimmed_at {
        Some(_) => over_limit(inner, st),
        None => {
            let period = (limit(inner) as u64)
                .saturating_sub(inner.cfg.timeline_cap as u64)
                .max(1);
            mix64(reader ^ mix64(post)).is_multiple_of(period)
        }
    }
}

/// SplitMix64's finaliser: spreads ids that differ in a few bits (time-ordered post ids) over
/// all 64, so the sampled trim fires at the intended rate.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Trims a reader's timeline to `timeline_cap` entries (plus unread ones above the read marker,
/// up to `max_unread_kept`) by deleting the tail past it. Point
/// deletes, not a range delete: every range tombstone in a memtable is re-fragmented by each new
/// iterator, which made reads and trims quadratic in the number of trims (measured: the
/// `deliveries/trim_cap_100` bench never finished).
pub(crate) fn trim(inner: &Inner, reader: UserId) -> Result<()> {
    let cap = inner.cfg.timeline_cap;
    // Deliveries counted before this point were written before the scan starts, so it sees them.
    let (counted_before, floor) = inner
        .readers
        .get(&reader)
        .map(|s| (s.delivered, s.trim_floor))
        .unwrap_or((0, None));
    let until = floor.map(|(rank, post)| codec::timeline_key(reader, rank, post));
    // Entries above the read marker are unread: kept past the cap, up to `max_unread_kept`.
    let unread_end = inner
        .read_marker_pos(reader)?
        .map(|(rank, post)| codec::timeline_key(reader, rank, post));
    let unread_cap = inner.cfg.max_unread_kept.max(cap);
    let (mut n, mut kept) = (0usize, 0usize);
    let mut cut = None;
    let mut b = inner.store.batch();
    inner
        .store
        .scan_prefix_until(Cf::Timeline, reader, None, until.as_ref().map(|k| &k[..]), |k, v| {
            n += 1;
            let unread = unread_end.as_ref().is_some_and(|m| k < m.as_slice());
            if n <= cap || (unread && n <= unread_cap) {
                kept += 1;
            } else {
                if cut.is_none() {
                    cut = codec::decode_timeline(k, v).map(|(_, e)| (e.rank, e.post));
                }
                inner.store.delete(&mut b, Cf::Timeline, k);
            }
            true
        })?;
    if kept < n {
        inner.store.write(b, Durability::Buffered)?;
        metrics::counter!(crate::metrics::TRIMS).increment(1);
    }
    if let Some(mut s) = inner.readers.get_mut(&reader) {
        s.trimmed_at = Some((kept as u32, counted_before));
        // Only if no delivery was counted since the scan began: one that landed behind the scan
        // could sit past the new cut, unseen by later scans. (A delivery counted after this point
        // clears the floor itself when it lands at or beyond it.)
        if s.trim_floor == floor && s.delivered == counted_before {
            s.trim_floor = cut.or(floor);
        }
    }
    Ok(())
}

fn retract(inner: &Inner, e: &Entry) -> Result<()> {
    let readers = audience(inner, e.author)?;
    for_chunks(inner, &readers, |chunk| {
        let mut b = inner.store.batch();
        for &r in chunk {
            inner
                .store
                .delete(&mut b, Cf::Timeline, &codec::timeline_key(r, e.rank, e.post));
        }
        inner.store.write(b, Durability::Buffered)?;
        inner.cache.changed(Change::Timelines(chunk));
        Ok(())
    })
}

/// Refills a returning reader's timeline from the outboxes of everyone they follow — the
/// highest-ranked `timeline_cap` entries of the pull window, as fanout would have left it — then
/// marks it materialised so fanout pushes to it again.
fn rebuild(inner: &Inner, reader: UserId) -> Result<()> {
    let graph = inner.reader_graph(reader)?;
    let now = inner.now_ms();
    let cap = inner.cfg.timeline_cap;
    let mut top = TopRanks::new(cap);
    let mut entries = Vec::new();
    for &a in graph.following.iter().chain(std::iter::once(&reader)) {
        if graph.hides(a) {
            continue;
        }
        let cut = top.floor().unwrap_or(0);
        for e in inner.outbox_after(a, now, None, cap, cut)? {
            top.push(e.rank);
            entries.push(e);
        }
    }
    // Only the timeline's top `cap` are written: a trim would delete the rest at once.
    if entries.len() > cap {
        entries.select_nth_unstable_by_key(cap - 1, |e| std::cmp::Reverse(e.order_key()));
        entries.truncate(cap);
    }
    let n = entries.len();
    let mut b = inner.store.batch();
    for e in &entries {
        inner.store.put(
            &mut b,
            Cf::Timeline,
            &codec::timeline_key(reader, e.rank, e.post),
            &codec::timeline_value(e.author, e.expires_at_ms),
        );
    }
    let current = inner.readers.get(&reader).map(|s| *s).unwrap_or_else(|| fresh_state(0));
    let done = ReaderState {
        materialized: true,
        rebuilding: false,
        trimmed_at: None,
        trim_floor: None,
        ..current
    };
    inner.put_reader(&mut b, reader, &done);
    inner.store.write(b, Durability::Buffered)?;
    // Only now is the timeline complete; fanout kept pushing meanwhile (`rebuilding`).
    if let Some(mut s) = inner.readers.get_mut(&reader) {
        s.materialized = true;
        s.rebuilding = false;
        s.trimmed_at = None;
        s.trim_floor = None;
    }
    inner.cache.changed(Change::Timelines(&[reader]));
    metrics::counter!(crate::metrics::REBUILDS).increment(1);
    metrics::counter!(crate::metrics::DELIVERIES).increment(n as u64);
    trim(inner, reader)
}
