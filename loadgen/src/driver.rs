//! The open-loop driver: every operation has a scheduled send time at the target rate, and its
//! latency is measured from that time — so a slow target shows up as latency, not as a politely
//! lowered rate (no coordinated omission). Also the fanout-lag probes; the bulk load is in
//! `bulk.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Mutex, Semaphore};

pub use crate::bulk::{Loaded, bulk_load};
pub use crate::ramp::{RampStep, find_max};
use crate::report::{OpReport, Report};
use crate::target::{Edge, OpError, Published, Target};
use crate::workload::{Picker, PopulationSpec};

/// What to run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSpec {
    /// The population.
    pub population: PopulationSpec,
    /// Feed reads per second.
    pub read_rate: f64,
    /// Posts per second.
    pub post_rate: f64,
    /// Follows + unfollows + deletes per second (split evenly).
    pub graph_rate: f64,
    /// Likes per second (of recently published posts, by Zipf-picked readers).
    pub like_rate: f64,
    /// Comments per second.
    pub comment_rate: f64,
    /// The order reads ask for (`None`: the server's default, stored).
    #[serde(skip)]
    pub ranker: Option<feed_engine::Ranker>,
    /// gRPC targets: authors holding a live notification stream, each probed in turn (0: none).
    pub notify_probes: usize,
    /// Measured time.
    pub duration: Duration,
    /// Time before measuring starts (load runs, nothing is recorded).
    pub warmup: Duration,
    /// Feed page size.
    pub page: u32,
    /// Reads per call (1: unary GetHomeFeed; more: batched GetHomeFeeds).
    pub batch: usize,
    /// Operations of each kind in flight at most; beyond it that generator waits (and the wait
    /// counts as latency).
    pub max_in_flight: usize,
    /// In-process unary reads: issued and served on this many pacing threads of their own, each
    /// at an equal share of the rate, as a server's worker threads would serve them (0: one
    /// pacing thread hands each chunk of due reads to the runtime's workers).
    pub read_threads: usize,
    /// Probe the fanout lag of one publish in this many.
    pub lag_sample_every: u64,
    /// Bytes of each post's text (0: the short default text): a caption's size decides what a
    /// post's body costs to store and to fetch.
    pub post_text_bytes: usize,
    /// A probe that has not seen its post in the follower's feed (at any rank) after this long
    /// counts as "not seen".
    pub lag_timeout: Duration,
}

/// Outcomes of one kind of operation.
struct Stats {
    /// When the last measured operation completed.
    last_done: Option<Instant>,
    sent: u64,
    /// Scheduled in the measured time but never sent: the target was too far behind.
    unsent: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    latency_us: Histogram<u64>,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            last_done: None,
            sent: 0,
            unsent: 0,
            ok: 0,
            errors: BTreeMap::new(),
            latency_us: Histogram::new(3).expect("histogram"),
        }
    }

    fn record(&mut self, outcome: Result<(), &OpError>, latency: Duration) {
        self.last_done = Some(Instant::now());
        self.sent += 1;
        match outcome {
            Ok(()) => self.ok += 1,
            Err(e) => *self.errors.entry(e.0.clone()).or_default() += 1,
        }
        let _ = self.latency_us.record(latency.as_micros().max(1) as u64);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Read,
    Publish,
    Graph,
    Like,
    Comment,
}

const KINDS: [Kind; 5] = [Kind::Read, Kind::Publish, Kind::Graph, Kind::Like, Kind::Comment];

struct Ctx {
    target: Target,
    loaded: Loaded,
    readers: Picker,
    authors: Picker,
    /// In-flight bound per kind: slow publishes never hold back reads.
    sems: BTreeMap<Kind, Arc<Semaphore>>,
    stats: BTreeMap<Kind, Mutex<Stats>>,
    lag_us: Mutex<Histogram<u64>>,
    lag_misses: Mutex<LagMisses>,
    recent: Mutex<Vec<(u64, u64)>>,
    measure_from: Instant,
    /// Every post's text.
    post_text: String,
    spec: RunSpec,
}

/// Runs the open-loop load on a loaded population and reports what happened.
pub async fn run(target: Target, loaded: Loaded, spec: RunSpec) -> anyhow::Result<Report> {
    let n = loaded.ids.len();
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let ctx = Arc::new(Ctx {
        readers: Picker::new(n, spec.population.zipf_s, spec.population.seed ^ 0x5EED_0001),
        authors: Picker::new(n, spec.population.zipf_s, spec.population.seed ^ 0x5EED_0002),
        sems: KINDS
            .into_iter()
            .map(|k| (k, Arc::new(Semaphore::new(spec.max_in_flight))))
            .collect(),
        stats: KINDS.into_iter().map(|k| (k, Mutex::new(Stats::new()))).collect(),
        lag_us: Mutex::new(Histogram::new(3)?),
        lag_misses: Default::default(),
        recent: Mutex::new(Vec::new()),
        post_text: crate::target::post_text(spec.post_text_bytes),
        target,
        loaded,
        measure_from,
        spec: spec.clone(),
    });
    let batch = spec.batch.max(1);
    // The peer designs model the feed only: no likes or comments are sent to them.
    let engage = if ctx.target.has_engagement() { 1.0 } else { 0.0 };
    // In-process unary reads may run on pacing threads of their own (`read_threads`): then a
    // read is served on the thread that paced it, with no hop to the runtime.
    let inline = spec.read_threads > 0 && batch <= 1 && matches!(ctx.target, Target::InProcess(_));
    let read_gens = if inline { spec.read_threads } else { 1 };
    let mut gens = Vec::new();
    for t in 0..read_gens as u64 {
        gens.push((
            Kind::Read,
            spec.read_rate / batch as f64 / read_gens as f64,
            1u64 + 16 * t,
        ));
    }
    gens.extend([
        (Kind::Publish, spec.post_rate, 2),
        (Kind::Graph, spec.graph_rate, 3),
        (Kind::Like, spec.like_rate * engage, 4),
        (Kind::Comment, spec.comment_rate * engage, 5),
    ]);
    // Notification probes run beside the load, over the measured time.
    let probes = (spec.notify_probes > 0 && ctx.target.has_engagement()).then(|| {
        let (target, ids) = (ctx.target.clone(), ctx.loaded.ids.clone());
        let (p, seed) = (spec.notify_probes.min(ids.len()), spec.population.seed ^ 6);
        tokio::spawn(async move {
            let when = crate::notify_probe::Schedule {
                from: measure_from,
                until: end,
                every: Duration::from_millis(20),
                timeout: Duration::from_secs(5),
                seed,
            };
            crate::notify_probe::run(&target, &ids[..p], &ids, when).await
        })
    });
    let mut handles = Vec::new();
    for (kind, rate, salt) in gens {
        if rate > 0.0 {
            let (ctx, rt, seed) = (
                ctx.clone(),
                tokio::runtime::Handle::current(),
                spec.population.seed ^ salt,
            );
            let window = Window {
                start,
                measure_from,
                end,
                // Late ops are still sent (open loop) until this, so a run always ends.
                deadline: end + spec.duration.div_f64(10.0).max(Duration::from_secs(1)),
            };
            let inline = inline && kind == Kind::Read;
            handles.push(tokio::task::spawn_blocking(move || {
                generate(ctx, rt, kind, rate, window, seed, inline)
            }));
        }
    }
    for h in handles {
        h.await?;
    }
    // Let what is in flight finish (bounded: every call has the transport's timeouts).
    for sem in ctx.sems.values() {
        let _all = sem.acquire_many(spec.max_in_flight as u32).await?;
    }
    let mut ops = BTreeMap::new();
    for (kind, name, target_rate) in [
        (Kind::Read, "read", spec.read_rate),
        (Kind::Publish, "publish", spec.post_rate),
        (Kind::Graph, "graph", spec.graph_rate),
        (Kind::Like, "like", spec.like_rate * engage),
        (Kind::Comment, "comment", spec.comment_rate * engage),
    ] {
        let s = ctx.stats[&kind].lock().await;
        // Completed over the time it took to complete them: a target that falls behind stretches
        // the denominator past the scheduled duration.
        let secs = s
            .last_done
            .map_or(1e-9, |t| t.duration_since(measure_from).as_secs_f64())
            .max(spec.duration.as_secs_f64());
        ops.insert(
            name.to_string(),
            OpReport::from_parts(target_rate, s.sent, s.unsent, s.ok, &s.errors, &s.latency_us, secs),
        );
    }
    let lag = ctx.lag_us.lock().await;
    let misses = *ctx.lag_misses.lock().await;
    let mut report = Report::new(spec, ops, &lag, misses);
    if let Some(p) = probes {
        report.set_notify_lag(&p.await??);
    }
    Ok(report)
}

/// When a generator schedules, measures and stops.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    measure_from: Instant,
    end: Instant,
    deadline: Instant,
}

/// Paces one kind of operation on its own OS thread: `std::thread::sleep` wakes within tens of
/// µs, where tokio's timer rounds every wait up to the next millisecond (which would add up to
/// 1 ms of the generator's own lateness to every measured latency). Ops run on the runtime, or
/// (`inline`: in-process reads) on this thread, each chunk as soon as it is due.
/// Operations past `deadline` are not sent; those scheduled in the measured time are counted
/// as unsent.
fn generate(ctx: Arc<Ctx>, rt: tokio::runtime::Handle, kind: Kind, rate: f64, w: Window, seed: u64, inline: bool) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut i = 0u64;
    let index_at = |t: Instant| (t.duration_since(w.start).as_secs_f64() * rate).ceil() as u64;
    loop {
        let due = w.start + Duration::from_secs_f64(i as f64 / rate);
        if due >= w.end {
            return;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else if now > w.deadline {
            let unsent = index_at(w.end).saturating_sub(i.max(index_at(w.measure_from)));
            rt.block_on(ctx.stats[&kind].lock()).unsent += unsent;
            return;
        }
        // In-process reads take microseconds, less than a task spawn: every read already due
        // is issued by one task, one after another (each still timed from its own `due`).
        let mut dues = vec![due];
        i += 1;
        if kind == Kind::Read && ctx.spec.batch <= 1 && matches!(ctx.target, Target::InProcess(_)) {
            while dues.len() < READ_CHUNK {
                let next = w.start + Duration::from_secs_f64(i as f64 / rate);
                if next > now || next >= w.end {
                    break;
                }
                dues.push(next);
                i += 1;
            }
        }
        if inline {
            let ops: Vec<(Instant, u64)> = dues.into_iter().map(|d| (d, rng.random::<u64>())).collect();
            rt.block_on(read_chunk(&ctx, &ops));
            continue;
        }
        // At the cap the generator waits; the op's latency still counts from `due`.
        let Ok(permit) = rt.block_on(ctx.sems[&kind].clone().acquire_many_owned(dues.len() as u32)) else {
            return;
        };
        let ops: Vec<(Instant, u64)> = dues.into_iter().map(|d| (d, rng.random::<u64>())).collect();
        let ctx2 = ctx.clone();
        rt.spawn(async move {
            let _permit = permit;
            if ops.len() == 1 {
                issue(&ctx2, kind, ops[0].0, ops[0].1).await;
            } else {
                read_chunk(&ctx2, &ops).await;
            }
        });
    }
}

/// Recent posts kept as like, comment and delete targets.
const RECENT: usize = 10_000;

/// Reads issued together at most (in-process target).
const READ_CHUNK: usize = 64;

/// In-process reads due at once, run in a row and recorded under one lock.
async fn read_chunk(ctx: &Ctx, ops: &[(Instant, u64)]) {
    let ids = &ctx.loaded.ids;
    let mut done = Vec::with_capacity(ops.len());
    // One generator per chunk (seeded by its first op), not one per read: seeding costs more
    // than an in-process read from the hot layer.
    let mut rng = StdRng::seed_from_u64(ops[0].1);
    for &(due, _) in ops {
        let r = ctx
            .target
            .read(ids[ctx.readers.pick(&mut rng)], ctx.spec.page, ctx.spec.ranker)
            .await;
        let measured = due >= ctx.measure_from || Instant::now() >= ctx.measure_from;
        if measured {
            done.push((r.map(|_| ()), due.elapsed()));
        }
    }
    let mut s = ctx.stats[&Kind::Read].lock().await;
    for (r, lat) in &done {
        s.record(r.as_ref().map(|_| ()), *lat);
    }
}

async fn issue(ctx: &Ctx, kind: Kind, due: Instant, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let ids = &ctx.loaded.ids;
    // An op counts when it is due in the measured time, or is sent in it: an overloaded
    // target's backlog of warm-up ops still shows, with its full wait, as measured latency, while
    // ops merely in flight across the boundary stay warm-up.
    let measured = due >= ctx.measure_from || Instant::now() >= ctx.measure_from;
    match kind {
        Kind::Read => {
            let batch = ctx.spec.batch.max(1);
            if batch == 1 {
                let r = ctx
                    .target
                    .read(ids[ctx.readers.pick(&mut rng)], ctx.spec.page, ctx.spec.ranker)
                    .await
                    .map(|_| ());
                if measured {
                    ctx.stats[&kind]
                        .lock()
                        .await
                        .record(r.as_ref().map(|_| ()), due.elapsed());
                }
            } else {
                let readers: Vec<u64> = (0..batch).map(|_| ids[ctx.readers.pick(&mut rng)]).collect();
                let r = ctx.target.read_batch(&readers, ctx.spec.page).await;
                if measured {
                    let lat = due.elapsed();
                    let mut s = ctx.stats[&kind].lock().await;
                    match r {
                        Ok(results) => results.iter().for_each(|x| s.record(x.as_ref().map(|_| ()), lat)),
                        Err(e) => (0..batch).for_each(|_| s.record(Err(&e), lat)),
                    }
                }
            }
        }
        Kind::Publish => {
            let author = ctx.authors.pick(&mut rng);
            let ct = [1, 1, 2, 2, 2, 3][rng.random_range(0..6)];
            let r = ctx.target.publish(ids[author], ct, &ctx.post_text).await;
            let acked = Instant::now();
            if measured {
                ctx.stats[&kind]
                    .lock()
                    .await
                    .record(r.as_ref().map(|_| ()), due.elapsed());
            }
            if let Ok(post) = r {
                {
                    // The most recent posts, roughly: a full list overwrites a slot.
                    let mut recent = ctx.recent.lock().await;
                    if recent.len() < RECENT {
                        recent.push((ids[author], post.id));
                    } else {
                        recent[(post.id % RECENT as u64) as usize] = (ids[author], post.id);
                    }
                }
                let followers = &ctx.loaded.population.followers[author];
                if measured && !followers.is_empty() && rng.random_range(0..ctx.spec.lag_sample_every.max(1)) == 0 {
                    let f = ids[followers[rng.random_range(0..followers.len())]];
                    probe_lag(ctx, f, post, acked).await;
                }
            }
        }
        Kind::Like | Kind::Comment => {
            let post = {
                let recent = ctx.recent.lock().await;
                (!recent.is_empty()).then(|| recent[rng.random_range(0..recent.len())].1)
            };
            let user = ids[ctx.readers.pick(&mut rng)];
            let r = match post {
                None => Ok(()),
                Some(p) if kind == Kind::Like => ctx.target.like(user, p).await.map(|_| ()),
                Some(p) => ctx.target.comment(user, p).await,
            };
            if measured && post.is_some() {
                ctx.stats[&kind]
                    .lock()
                    .await
                    .record(r.as_ref().map(|_| ()), due.elapsed());
            }
        }
        Kind::Graph => {
            let r = match rng.random_range(0..3) {
                0 => {
                    let (a, b) = (rng.random_range(0..ids.len()), rng.random_range(0..ids.len()));
                    if a == b {
                        Ok(())
                    } else {
                        ctx.target.relate(Edge::Follow, ids[a], ids[b]).await
                    }
                }
                1 => {
                    let u = rng.random_range(0..ids.len());
                    match ctx.loaded.population.following[u].first() {
                        Some(&v) => ctx.target.relate(Edge::Unfollow, ids[u], ids[v]).await,
                        None => Ok(()),
                    }
                }
                _ => {
                    let victim = ctx.recent.lock().await.pop();
                    match victim {
                        Some((author, post)) => ctx.target.delete(author, post).await,
                        None => Ok(()),
                    }
                }
            };
            if measured {
                ctx.stats[&kind]
                    .lock()
                    .await
                    .record(r.as_ref().map(|_| ()), due.elapsed());
            }
        }
    }
}

/// Lag probes that ended without a figure.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LagMisses {
    /// Every look succeeded, and the post was not in the feed (at any rank) by the deadline.
    pub not_seen: u64,
    /// The deadline passed and the last look failed (the read errored): an error, not a lag.
    pub errors: u64,
}

/// Looks for the post in a follower's feed, at any rank, until it shows or `lag_timeout`
/// passes: publish-ack → visible. Looks every 2 ms at first, backing off to every 100 ms (a
/// probe that waits long must not load the target more than the reads it measures).
async fn probe_lag(ctx: &Ctx, follower: u64, post: Published, acked: Instant) {
    let deadline = acked + ctx.spec.lag_timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        let look = ctx.target.seen(follower, post).await;
        if look == Ok(true) {
            let _ = ctx
                .lag_us
                .lock()
                .await
                .record(acked.elapsed().as_micros().max(1) as u64);
            return;
        }
        if Instant::now() >= deadline {
            let mut m = ctx.lag_misses.lock().await;
            match look {
                Err(_) => m.errors += 1,
                Ok(_) => m.not_seen += 1,
            }
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
