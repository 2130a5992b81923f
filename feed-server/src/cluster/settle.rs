//! Read-your-writes for list and profile reads. Before such a read of a user, this node waits
//! until it has applied every event its user's partition's own subject (`feedline.o.<p>.ev`)
//! held when the read arrived: the follow-up halves other nodes sent for the user before the
//! call, so the user's lists and counts read here include them.
//!
//! What the log held is one last-message lookup on a NATS server. Concurrent reads of one
//! partition share lookups, as a Raft leader batches its read-index checks: a read joins the
//! lookup that starts **next**, never one already under way (that one may have been answered
//! before a write acknowledged just ahead of the read). So one read alone pays one lookup, as
//! before, and under load each partition has at most one lookup running and one wanted, however
//! many reads wait on them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::stream;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::{Cluster, subjects};

/// How long a read waits, lookup and apply together, before it is answered anyway.
const SETTLE_WAIT: Duration = Duration::from_secs(1);

/// Finds the sequence of the newest message on a subject (`None`: it could not be read).
type Lookup = Arc<dyn Fn(String) -> BoxFuture<'static, Option<u64>> + Send + Sync>;

/// The lookups of every partition's newest event, shared by the reads waiting on them.
pub(super) struct Settler {
    parts: Vec<Arc<Part>>,
    lookup: Lookup,
}

/// One partition's lookups.
struct Part {
    subject: String,
    rounds: Mutex<Rounds>,
    /// The newest round finished, with the sequence it found (`None`: the lookup failed).
    done: watch::Sender<(u64, Option<u64>)>,
}

/// Which lookups of a partition have started.
#[derive(Default)]
struct Rounds {
    /// Lookups started (the number of the newest).
    started: u64,
    /// Whether one is under way.
    running: bool,
    /// Whether a read arrived while it was: another starts when it ends.
    again: bool,
}

impl Settler {
    /// Lookups on `log` for `partitions` partitions, none under way.
    pub fn new(partitions: u32, log: stream::Stream) -> Self {
        let lookup: Lookup = Arc::new(move |subject: String| {
            let log = log.clone();
            Box::pin(async move {
                log.get_last_raw_message_by_subject(&subject)
                    .await
                    .ok()
                    .map(|m| m.sequence)
            })
        });
        Self::with_lookup(partitions, lookup)
    }

    fn with_lookup(partitions: u32, lookup: Lookup) -> Self {
        Settler {
            lookup,
            parts: (0..partitions)
                .map(|p| {
                    Arc::new(Part {
                        subject: subjects::owned(p),
                        rounds: Mutex::new(Rounds::default()),
                        done: watch::channel((0, None)).0,
                    })
                })
                .collect(),
        }
    }

    /// The sequence of partition `p`'s newest event, from a lookup started after this call
    /// (`None`: the lookup failed or took longer than `until`).
    async fn newest(&self, p: u32, until: tokio::time::Instant) -> Option<u64> {
        let part = self.parts.get(p as usize)?;
        let mut done = part.done.subscribe();
        let (mine, start) = {
            let mut r = part.rounds.lock();
            if r.running {
                r.again = true;
                (r.started + 1, false)
            } else {
                r.running = true;
                r.started += 1;
                (r.started, true)
            }
        };
        if start {
            tokio::spawn(lookups(part.clone(), self.lookup.clone()));
        }
        let found = tokio::time::timeout_at(until, done.wait_for(|&(round, _)| round >= mine)).await;
        match found {
            Ok(Ok(r)) => r.1,
            _ => None,
        }
    }
}

/// Runs `part`'s lookups one after another while reads want another, publishing each result.
async fn lookups(part: Arc<Part>, lookup: Lookup) {
    loop {
        let seq = lookup(part.subject.clone()).await;
        metrics::counter!(feed_engine::metrics::SETTLE_LOOKUPS).increment(1);
        let mut r = part.rounds.lock();
        part.done.send_replace((r.started, seq));
        if r.again {
            r.again = false;
            r.started += 1;
        } else {
            r.running = false;
            return;
        }
    }
}

impl Cluster {
    /// Waits (up to a second) until this node has applied every event of `user`'s partition's
    /// own subject that the log held when called (see the module docs).
    pub async fn settle(&self, user: feed_engine::UserId) {
        let started = Instant::now();
        let until = tokio::time::Instant::now() + SETTLE_WAIT;
        let p = self.placement.partition(user);
        let outcome = match self.settler.newest(p, until).await {
            None => "unread",
            Some(last) => {
                let mut rx = self.applied.clone();
                let reached = tokio::time::timeout_at(until, rx.wait_for(|&at| at >= last)).await;
                if matches!(reached, Ok(Ok(_))) {
                    "applied"
                } else {
                    tracing::debug!(
                        user,
                        "answered a graph read before applying its partition's newest event"
                    );
                    "timeout"
                }
            }
        };
        metrics::histogram!(feed_engine::metrics::SETTLE_SECONDS, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::sync::Semaphore;

    use super::*;

    /// A log whose newest sequence the test sets, and whose lookups each read it when they
    /// start and answer when the test lets one through.
    fn gated() -> (Settler, Arc<AtomicU64>, Arc<Semaphore>, Arc<AtomicU64>) {
        let (last, gate, calls) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(Semaphore::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let (l, g, n) = (last.clone(), gate.clone(), calls.clone());
        let lookup: Lookup = Arc::new(move |_subject| {
            let (seq, g) = (l.load(Ordering::SeqCst), g.clone());
            n.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                g.acquire().await.ok()?.forget();
                Some(seq)
            })
        });
        (Settler::with_lookup(2, lookup), last, gate, calls)
    }

    async fn until_calls(calls: &AtomicU64, n: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while calls.load(Ordering::SeqCst) < n {
            assert!(tokio::time::Instant::now() < deadline, "lookup {n} never started");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_read_never_takes_the_answer_of_a_lookup_that_began_before_it() {
        let (s, last, gate, calls) = gated();
        let s = Arc::new(s);
        let later = tokio::time::Instant::now() + Duration::from_secs(5);
        last.store(5, Ordering::SeqCst);
        let first = tokio::spawn({
            let s = s.clone();
            async move { s.newest(0, later).await }
        });
        until_calls(&calls, 1).await;
        // A write lands while the first lookup is under way; reads arriving now must see it.
        last.store(10, Ordering::SeqCst);
        let waiting: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.newest(0, later).await })
            })
            .collect();
        // All of them wait (subscribed, their round chosen) before the first lookup answers.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while s.parts[0].done.receiver_count() < 9 {
            assert!(tokio::time::Instant::now() < deadline, "the reads never waited");
            tokio::task::yield_now().await;
        }
        gate.add_permits(1);
        assert_eq!(first.await.unwrap(), Some(5));
        // The eight share one lookup, started after the first ended.
        until_calls(&calls, 2).await;
        gate.add_permits(1);
        for w in waiting {
            assert_eq!(w.await.unwrap(), Some(10), "a read took a lookup older than itself");
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "the reads that waited together shared one lookup"
        );

        // Another partition's reads do not wait on this one's; a lookup not answered in time
        // leaves the read unsettled rather than waiting on.
        let soon = tokio::time::Instant::now() + Duration::from_millis(50);
        assert_eq!(s.newest(1, soon).await, None);
        gate.add_permits(1);
    }
}
