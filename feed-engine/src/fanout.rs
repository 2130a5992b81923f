//! The fanout workers: an actor per thread that takes durable jobs from a channel, works out
//! which readers each reaches (the author's followers this node keeps, or only the listening
//! ones for a post that is not pushed), hands them to `engine::timelines` in chunks — the one
//! writer of timelines — and clears the jobs' pending records with one fsync per group. In a
//! cluster only the author's node fans a post out, and sends the followers other nodes keep to
//! the engine's `RemoteFanout` (two-hop fanout, `engine::remote`) before clearing the record.
//! Deliveries are idempotent (the timeline key is the entry), so a job replayed after a crash
//! never duplicates an entry.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use rayon::prelude::*;

use crate::codec::{JobKind, JobRecord};
use crate::engine::timelines::{self, Staged};
use crate::engine::{Audience, Change, FanoutKind, Inner};
use crate::error::Result;
use crate::model::{Entry, PostId, UserId};
use crate::store::Durability;
use crate::tables::{FOLLOWERS, FOLLOWING, PENDING, POSTS};

/// A message to a fanout worker.
pub(crate) enum Job {
    /// A durable job from the `pending` family; `acked` is when its publish/delete returned.
    Record { rec: JobRecord, acked: Option<Instant> },
    /// Rebuild a returning reader's timeline from their followees' outboxes.
    Rebuild(UserId),
    /// Stop the worker.
    Stop,
}

/// The workers' queue, sending side. Rebuilds wait in a queue of their own, which a worker
/// takes from only when no other job is queued: a reader turning active is served by pull until
/// their rebuild, while a post queued behind a burst of rebuilds (thousands when bulk-loaded
/// readers start reading) would reach its readers only after all of them.
#[derive(Clone)]
pub(crate) struct Queue {
    jobs: Sender<Job>,
    rebuilds: Sender<UserId>,
}

/// The workers' queue, receiving side (each worker holds a clone).
#[derive(Clone)]
pub(crate) struct Inbox {
    jobs: Receiver<Job>,
    rebuilds: Receiver<UserId>,
}

/// A queue for jobs that each hold a backlog slot (at most `cap` of them) plus `extra` stops,
/// so a send never waits.
pub(crate) fn queue(cap: usize, extra: usize) -> (Queue, Inbox) {
    let (jobs, jobs_rx) = crossbeam_channel::bounded(cap + extra);
    let (rebuilds, rebuilds_rx) = crossbeam_channel::bounded(cap);
    (
        Queue { jobs, rebuilds },
        Inbox {
            jobs: jobs_rx,
            rebuilds: rebuilds_rx,
        },
    )
}

impl Queue {
    /// Queues a job; `Err` when the workers are gone (a durable job then stays pending on disk).
    pub(crate) fn send(&self, job: Job) -> std::result::Result<(), ()> {
        match job {
            Job::Rebuild(reader) => self.rebuilds.send(reader).map_err(drop),
            job => self.jobs.send(job).map_err(drop),
        }
    }
}

impl Inbox {
    /// The next job if one is queued at once: never a rebuild while other jobs wait.
    fn try_next(&self) -> Option<Job> {
        self.jobs.try_recv().ok()
    }

    /// The next job, waiting for one: a queued job first, then a rebuild. `None` once the
    /// queue is gone.
    fn next(&self) -> Option<Job> {
        if let Ok(j) = self.jobs.try_recv() {
            return Some(j);
        }
        if let Ok(r) = self.rebuilds.try_recv() {
            return Some(Job::Rebuild(r));
        }
        crossbeam_channel::select! {
            recv(self.jobs) -> j => j.ok(),
            recv(self.rebuilds) -> r => r.ok().map(Job::Rebuild),
        }
    }
}

/// Lowers the calling thread's CPU priority by `nice` (Linux: the thread's own nice value;
/// elsewhere nothing). A failure is logged: fanout then runs at the process's priority.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        use rustix::process::{getpriority_process, setpriority_process};
        let me = Some(rustix::thread::gettid());
        let set = getpriority_process(me).and_then(|now| setpriority_process(me, (now + nice).min(19)));
        if let Err(e) = set {
            tracing::warn!(nice, error = %e, "fanout worker priority not lowered");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
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
/// Jobs already queued are taken together: their deliveries are staged into one batch and
/// written with one buffered write, then one fsynced batch clears all their pending records,
/// which also makes the deliveries durable. A group ends when the queue is empty, at
/// `GROUP_MAX` jobs or `fanout_batch` staged writes, and before a retraction or a rebuild
/// (each of which must see the deliveries before it). Rebuilds are taken only when no other
/// job is queued ([`Queue`]).
pub(crate) fn run_worker(inner: &Arc<Inner>, rx: &Inbox) {
    lower_priority(inner.cfg.fanout_nice);
    let mut g = Group::new(inner);
    let mut next = rx.next();
    while let Some(job) = next.take() {
        if inner.halt.load(Ordering::SeqCst) || matches!(job, Job::Stop) {
            g.commit(inner);
            // This worker may have taken another's Stop while grouping: pass one on.
            let _ = inner.jobs.send(Job::Stop);
            return;
        }
        match job {
            Job::Stop => unreachable!("handled above"),
            Job::Record { rec, acked } => {
                let res = match rec.kind {
                    JobKind::Deliver => deliver(inner, &rec, &mut g),
                    JobKind::Retract => {
                        g.commit(inner);
                        retract(inner, &rec.entry)
                    }
                };
                match res {
                    Ok(()) => g.jobs.push((rec, acked)),
                    // The job stays pending on disk and runs again at the next open.
                    Err(e) => {
                        tracing::error!(post = rec.entry.post, error = %e, "fanout job failed");
                        inner.release_job();
                    }
                }
            }
            Job::Rebuild(reader) => {
                g.commit(inner);
                if let Err(e) = timelines::rebuild(inner, reader) {
                    tracing::error!(reader, error = %e, "timeline rebuild failed");
                    inner.readers.update(reader, |s| s.rebuilding = false);
                }
                inner.release_job();
            }
        }
        if g.jobs.len() >= GROUP_MAX || g.staged.len() >= inner.cfg.fanout_batch {
            g.commit(inner);
        }
        next = match rx.try_next() {
            Some(j) => Some(j),
            None => {
                g.commit(inner);
                rx.next()
            }
        };
    }
    g.commit(inner);
}

/// A worker's jobs taken together: their staged deliveries and the live readers to tell.
struct Group {
    jobs: Vec<(JobRecord, Option<Instant>)>,
    staged: Staged,
    /// Entries to hand the listener once written, with the readers they reach.
    notify: Vec<(Entry, Arc<Audience>)>,
    /// With two-hop fanout: the entries whose other readers go to other nodes, sent together
    /// (one message per reader partition for the whole group) before the records are cleared.
    remote: Vec<(FanoutKind, Entry, Arc<Audience>)>,
}

impl Group {
    fn new(inner: &Inner) -> Group {
        Group {
            jobs: Vec::new(),
            staged: Staged::new(inner),
            notify: Vec::new(),
            remote: Vec::new(),
        }
    }

    /// Writes the staged deliveries, then clears the jobs' pending records with one fsynced
    /// write and releases them. If the deliveries cannot be written, no record is cleared.
    fn commit(&mut self, inner: &Inner) {
        if self.jobs.is_empty() && self.staged.is_empty() && self.remote.is_empty() {
            return;
        }
        let staged = std::mem::replace(&mut self.staged, Staged::new(inner));
        let notify = std::mem::take(&mut self.notify);
        let remote = std::mem::take(&mut self.remote);
        let written = send_remote(inner, &remote).and_then(|()| {
            if staged.is_empty() {
                Ok(())
            } else {
                timelines::write_staged(inner, staged)
            }
        });
        let res = written.and_then(|()| {
            let mut b = inner.store.batch();
            for (rec, _) in self.jobs.iter() {
                PENDING.delete(&inner.store, &mut b, rec);
            }
            // Fsyncing this also makes the buffered deliveries before it durable. In a cluster
            // the log holds the posts and the batches sent on, and the applier fsyncs its groups:
            // a clear lost with its deliveries (the WAL recovers a prefix) runs the job again.
            let d = if inner.remote_fanout().is_some() {
                Durability::Buffered
            } else {
                Durability::Sync
            };
            inner.store.write(b, d)
        });
        match &res {
            Ok(()) => {
                if let Some(l) = inner.listener.get() {
                    for (e, aud) in &notify {
                        for &r in aud.local.iter() {
                            l.on_entry(r, e);
                        }
                    }
                }
            }
            // The jobs stay pending on disk and run again at the next open.
            Err(e) => tracing::error!(jobs = self.jobs.len(), error = %e, "fanout group failed"),
        }
        for (rec, acked) in self.jobs.drain(..) {
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
}

/// Whom a post of `author` reaches from this node (cached: an author's followers change far
/// less often than they post): the author and every follower whose timeline this node keeps,
/// and — with two-hop fanout — the followers other nodes keep, in key order each.
fn audience(inner: &Inner, author: UserId) -> Result<Arc<Audience>> {
    metrics::counter!(crate::metrics::AUDIENCE_WALKS).increment(1);
    if let Some(a) = inner.cache.audiences().get(author) {
        return Ok(a);
    }
    let version = inner.cache.audiences().version(author);
    let two_hop = inner.remote_fanout().is_some();
    let mut a = Audience::default();
    if inner.owns(author) {
        a.local.push(author);
    }
    FOLLOWERS.scan(&inner.store, author, None, |f| {
        if inner.owns(f) {
            a.local.push(f);
        } else if two_hop {
            a.remote.push(f);
        }
        true
    })?;
    let a = Arc::new(a);
    inner.cache.audiences().fill(author, version, a.clone());
    Ok(a)
}

/// With two-hop fanout, whether another node fans `author`'s posts out (the one keeping them).
pub(crate) fn fanned_elsewhere(inner: &Inner, author: UserId) -> bool {
    inner.remote_fanout().is_some() && !inner.owns(author)
}

/// Sends the followers other nodes keep (two-hop fanout) for a group's entries, in one call.
fn send_remote(inner: &Inner, out: &[(FanoutKind, Entry, Arc<Audience>)]) -> Result<()> {
    let Some(r) = inner.remote_fanout() else { return Ok(()) };
    if out.is_empty() {
        return Ok(());
    }
    let items: Vec<(FanoutKind, Entry, &[UserId])> = out.iter().map(|(k, e, a)| (*k, *e, &a.remote[..])).collect();
    r.send(&items)?;
    let n: usize = out.iter().map(|(_, _, a)| a.remote.len()).sum();
    metrics::counter!(crate::metrics::REMOTE_FANOUT_READERS, "dir" => "sent").increment(n as u64);
    Ok(())
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
        if inner.owns(r) && (r == author || FOLLOWING.exists(&inner.store, r, author)?) {
            v.push(r);
        }
    }
    Ok(v)
}

/// A post that is not pushed writes nothing: only the live subscribers on this node who follow
/// its author hear of it (if it still exists).
pub(crate) fn tell_listeners(inner: &Inner, e: &Entry) -> Result<()> {
    let Some(l) = inner.listener.get() else { return Ok(()) };
    let listening = l.subscribers();
    if listening.is_empty() || !POSTS.exists(&inner.store, e.post)? {
        return Ok(());
    }
    for r in listening_audience(inner, e.author, listening)? {
        l.on_entry(r, e);
    }
    Ok(())
}

/// Delivers a post: staged into the group's batch, or — for an audience larger than one
/// batch — written chunk by chunk (in parallel past `parallel_fanout_over`).
fn deliver(inner: &Inner, rec: &JobRecord, g: &mut Group) -> Result<()> {
    let e = rec.entry;
    let listener = inner.listener.get();
    if !rec.pushed {
        return tell_listeners(inner, &e);
    }
    if fanned_elsewhere(inner, e.author) {
        return Ok(());
    }
    // A post deleted before its fanout ran is not delivered (its retract job follows). Loaded
    // into the feed cache: cached first pages take the delivered post from there.
    if !cache_post(inner, e.post)? {
        return Ok(());
    }
    let aud = audience(inner, e.author)?;
    if !aud.remote.is_empty() {
        g.remote.push((FanoutKind::Deliver, e, aud.clone()));
    }
    let readers = &aud.local;
    if readers.len() <= inner.cfg.fanout_batch {
        timelines::stage_chunk(inner, &mut g.staged, &e, readers)?;
        if listener.is_some() {
            g.notify.push((e, aud.clone()));
        }
        return Ok(());
    }
    for_chunks(inner, readers, |chunk| timelines::deliver_chunk(inner, &e, chunk))?;
    if let Some(l) = listener {
        for &r in readers.iter() {
            l.on_entry(r, &e);
        }
    }
    Ok(())
}

/// Puts a post in the feed cache's posts (if not there); whether it exists.
pub(crate) fn cache_post(inner: &Inner, id: PostId) -> Result<bool> {
    if inner.cache.posts().get(id).is_some() {
        return Ok(true);
    }
    let version = inner.cache.posts().version(id);
    let Some(post) = inner.load_post(id)? else {
        return Ok(false);
    };
    inner.cache.posts().fill(id, version, Arc::new(post));
    Ok(true)
}

fn retract(inner: &Inner, e: &Entry) -> Result<()> {
    if fanned_elsewhere(inner, e.author) {
        return Ok(());
    }
    let aud = audience(inner, e.author)?;
    if !aud.remote.is_empty() {
        send_remote(inner, &[(FanoutKind::Retract, *e, aud.clone())])?;
    }
    for_chunks(inner, &aud.local, |chunk| timelines::retract_chunk(inner, e, chunk))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader_of(job: Option<Job>) -> Option<UserId> {
        match job {
            Some(Job::Rebuild(r)) => Some(r),
            Some(Job::Stop) => None,
            _ => panic!("an unexpected job"),
        }
    }

    #[test]
    fn a_worker_takes_queued_jobs_before_waiting_rebuilds_and_rebuilds_only_when_idle() {
        let (q, inbox) = queue(8, 1);
        q.send(Job::Rebuild(1)).unwrap();
        q.send(Job::Rebuild(2)).unwrap();
        q.send(Job::Stop).unwrap();
        // Within a group, only other jobs are taken.
        assert!(
            matches!(inbox.try_next(), Some(Job::Stop)),
            "a job queued after rebuilds waited for them"
        );
        assert!(inbox.try_next().is_none(), "a rebuild was taken into a group");
        // Once idle, the rebuilds in their order.
        assert_eq!(reader_of(inbox.next()), Some(1));
        q.send(Job::Stop).unwrap();
        assert_eq!(
            reader_of(inbox.next()),
            None,
            "a job queued after a rebuild waited for it"
        );
        assert_eq!(reader_of(inbox.next()), Some(2));
    }
}
