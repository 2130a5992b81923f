//! `loadgen`: loads a synthetic population into a target (the engine in-process, a feed-server
//! over gRPC, the classic Redis sorted-set design, or the product spec's PostgreSQL design), then drives it open-loop at the traffic
//! model's rates and reports achieved rates, latency percentiles, errors and fanout lag — for
//! several targets side by side with `--compare`.
//!
//! Traffic goes only to the given target (127.0.0.1 in every documented use); every run is
//! bounded by `--warmup` + `--duration` and stops by itself.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use loadgen::driver::{self, RunSpec};
use loadgen::postgres_peer::PostgresPeer;
use loadgen::redis_peer::RedisPeer;
use loadgen::report::Report;
use loadgen::target::Target;
use loadgen::workload::PopulationSpec;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Preset {
    /// Seconds, for tests: 200 users, 2,000 reads/s, 200 posts/s.
    Smoke,
    /// The traffic model's average: 58,000 reads/s and 6,000 posts/s.
    Average,
    /// The traffic model's peak: 580,000 reads/s and 60,000 posts/s.
    Peak,
}

/// A ranker on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum RankerArg {
    /// The stored rank.
    Stored,
    /// Newest first among the top candidates.
    Chronological,
    /// The engagement rerank.
    Engagement,
}

/// feedline's open-loop load generator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Rates, population and duration to start from.
    #[arg(long, value_enum, default_value = "smoke")]
    preset: Preset,
    /// `in-process` (the engine, with its own RocksDB dir), `grpc://127.0.0.1:50051`, a
    /// cluster's nodes `grpc://127.0.0.1:50061,grpc://127.0.0.1:50062,…` (calls spread over
    /// them, reported per node), `redis://127.0.0.1:6380` (the Redis sorted-set design; the
    /// database is flushed first; `scripts/redis` starts one) or
    /// `postgres://postgres@127.0.0.1:5433/feedline` (the spec's PostgreSQL design; its tables
    /// are dropped and recreated first; `scripts/postgres` starts one).
    #[arg(long, default_value = "in-process")]
    target: String,
    /// Also run the same workload (same seed) against this target afterwards, and print the two
    /// side by side. Repeatable.
    #[arg(long)]
    compare: Vec<String>,
    /// Write a latency-percentile chart (SVG) of every run here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Admin token for a gRPC target (or FEEDLINE_ADMIN_TOKEN).
    #[arg(long, env = "FEEDLINE_ADMIN_TOKEN")]
    token: Option<String>,
    /// For grpcs:// targets: the CA certificate (PEM) the servers' certificates chain to.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// For grpcs:// targets: a client certificate (PEM), for servers whose mTLS guards the admin.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// RocksDB dir of the in-process target (default: a temporary dir, removed afterwards).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Users in the population.
    #[arg(long)]
    users: Option<usize>,
    /// Feed reads per second.
    #[arg(long)]
    read_rate: Option<f64>,
    /// Posts per second.
    #[arg(long)]
    post_rate: Option<f64>,
    /// Likes per second (default: 10 × the post rate).
    #[arg(long)]
    like_rate: Option<f64>,
    /// Comments per second (default: the post rate).
    #[arg(long)]
    comment_rate: Option<f64>,
    /// Bytes of each post's text (0: a short fixed text).
    #[arg(long, default_value_t = 0)]
    post_text_bytes: usize,
    /// The order reads ask for: stored (the server's default), chronological or engagement.
    #[arg(long, value_enum)]
    ranker: Option<RankerArg>,
    /// This many authors listen for notifications (a live stream over gRPC, the engine's
    /// listener in-process); a like of one of their posts every 20 ms measures like ack → event.
    #[arg(long, default_value_t = 0)]
    notify_probes: usize,
    /// Measured seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds of load before measuring.
    #[arg(long)]
    warmup: Option<f64>,
    /// Reads per call (1 = unary GetHomeFeed, more = batched GetHomeFeeds).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Operations in flight at most.
    #[arg(long, default_value_t = 4096)]
    max_in_flight: usize,
    /// In-process unary reads are issued and served on this many pacing threads, each at an
    /// equal share of the read rate; 0 (the default) hands each chunk of due reads from one
    /// pacing thread to the runtime's workers. Threads of their own halve a read-only run's
    /// p50, but take the cores from fanout in a mixed one (PERFORMANCE.md).
    #[arg(long, default_value_t = 0)]
    read_threads: usize,
    /// Seed of the population and the traffic. Each run signs up a fresh population under its
    /// own handle prefix (`lg<10 hex digits>_<n>`), so runs repeat against the same target.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Ramp mode: raise the read rate (posts at 10:1) from --read-rate by --ramp-factor per step
    /// and report the highest rate whose read p99 stays under --p99-bound-ms.
    #[arg(long)]
    find_max: bool,
    /// Read p99 bound of --find-max, in ms (the spec's feed p95 target is 200 ms).
    #[arg(long, default_value_t = 200.0)]
    p99_bound_ms: f64,
    /// Rate multiplier between --find-max steps.
    #[arg(long, default_value_t = 1.5)]
    ramp_factor: f64,
    /// Most --find-max steps.
    #[arg(long, default_value_t = 12)]
    ramp_steps: usize,
    /// Fanout-lag probes (one publish in 50): seconds to wait for the post to appear in a
    /// follower's feed, at any rank, before counting it "not seen" (reported apart from errors).
    #[arg(long, default_value_t = 5.0)]
    lag_timeout_s: f64,
    /// In-process: how long to wait after the bulk load for RocksDB's compactions and flushes
    /// to finish before the run starts (what was owed, and whether it settled, is printed).
    #[arg(long, default_value_t = 120.0)]
    settle_s: f64,

    /// In-process: do not install a metrics recorder (the engine's counters are then not kept,
    /// as in an embedding without one; a server always keeps them).
    #[arg(long)]
    no_engine_stats: bool,
}

fn spec(args: &Args) -> RunSpec {
    let (users, read, post, secs, warm) = match args.preset {
        Preset::Smoke => (200, 2_000.0, 200.0, 2.0, 0.5),
        Preset::Average => (20_000, 58_000.0, 6_000.0, 20.0, 5.0),
        Preset::Peak => (20_000, 580_000.0, 60_000.0, 20.0, 5.0),
    };
    let post_rate = args.post_rate.unwrap_or(post);
    RunSpec {
        population: PopulationSpec {
            users: args.users.unwrap_or(users),
            mean_following: 20,
            zipf_s: 1.1,
            seed: args.seed,
        },
        read_rate: args.read_rate.unwrap_or(read),
        post_rate,
        graph_rate: post_rate * 0.03,
        like_rate: args.like_rate.unwrap_or(post_rate * 10.0),
        comment_rate: args.comment_rate.unwrap_or(post_rate),
        notify_probes: args.notify_probes,
        ranker: args.ranker.map(|r| match r {
            RankerArg::Stored => feed_engine::Ranker::Stored,
            RankerArg::Chronological => feed_engine::Ranker::Chronological,
            RankerArg::Engagement => feed_engine::Ranker::Engagement,
        }),
        duration: Duration::from_secs_f64(args.duration.unwrap_or(secs)),
        warmup: Duration::from_secs_f64(args.warmup.unwrap_or(warm)),
        page: 20,
        batch: args.batch,
        max_in_flight: args.max_in_flight,
        read_threads: args.read_threads,
        lag_sample_every: 50,
        lag_timeout: Duration::from_secs_f64(args.lag_timeout_s),
        post_text_bytes: args.post_text_bytes,
    }
}

/// An opened target, with the temporary dir of an in-process engine (removed when dropped).
struct Opened {
    target: Target,
    /// The in-process engine's counters (the first in-process target of the process only).
    stats: Option<loadgen::engine_stats::EngineStats>,
    _tmp: Option<tempfile::TempDir>,
}

/// The TLS settings for grpcs:// targets, from the --tls-* flags.
fn client_tls(args: &Args) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
    if args.tls_ca.is_none() && args.tls_cert.is_none() {
        return Ok(None);
    }
    let mut t = tonic::transport::ClientTlsConfig::new();
    if let Some(ca) = &args.tls_ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        t = t.ca_certificate(tonic::transport::Certificate::from_pem(pem));
    }
    if let (Some(c), Some(k)) = (&args.tls_cert, &args.tls_key) {
        let cert = std::fs::read(c).with_context(|| format!("reading {}", c.display()))?;
        let key = std::fs::read(k).with_context(|| format!("reading {}", k.display()))?;
        t = t.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    Ok(Some(t))
}

async fn open_target(url: &str, args: &Args) -> anyhow::Result<Opened> {
    if url == "in-process" {
        let (dir, tmp) = match &args.data_dir {
            Some(d) => (d.clone(), None),
            None => {
                let t = tempfile::tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let cfg = feed_engine::EngineConfig {
            data_dir: dir,
            ..Default::default()
        };
        // Before the engine opens: its metric handles are registered then.
        let stats = if args.no_engine_stats {
            None
        } else {
            loadgen::engine_stats::EngineStats::install()
        };
        let e = feed_engine::Engine::open(cfg).context("opening the in-process engine")?;
        return Ok(Opened {
            target: Target::InProcess(e),
            stats,
            _tmp: tmp,
        });
    }
    let target = if url.starts_with("grpc://") || url.starts_with("grpcs://") {
        let token = args
            .token
            .as_deref()
            .context("a gRPC target needs --token (the server's admin token)")?;
        Target::grpc(url, token, client_tls(args)?).await
    } else if url.starts_with("redis://") {
        RedisPeer::connect(url).await.map(Target::Redis)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        PostgresPeer::connect(url).await.map(Target::Postgres)
    } else {
        anyhow::bail!(
            "a target must be in-process, grpc://HOST:PORT, grpcs://HOST:PORT, redis://HOST:PORT or \
             postgres://USER@HOST:PORT/DB, got {url}"
        );
    };
    Ok(Opened {
        target: target.with_context(|| format!("connecting to {url}"))?,
        stats: None,
        _tmp: None,
    })
}

/// Loads the population into `url` and runs the workload (or the ramp) there.
async fn run_one(url: &str, args: &Args, spec: &RunSpec) -> anyhow::Result<Outcome> {
    let opened = open_target(url, args).await?;
    let target = opened.target.clone();
    println!(
        "loading {} users (mean following {}) into {url} …",
        spec.population.users, spec.population.mean_following
    );
    let loaded = driver::bulk_load(&target, &spec.population, 64, true).await?;
    let settled = loadgen::settle::settle(&target, Duration::from_secs_f64(args.settle_s))
        .await
        .map_err(|e| anyhow::anyhow!("settling {url} after the load: {e:?}"))?;
    if let Some(s) = settled {
        println!("{s}");
    }
    println!(
        "loaded {} users, {} follows; running {:?} (+{:?} warm-up)",
        loaded.ids.len(),
        loaded.population.edges(),
        spec.duration,
        spec.warmup
    );
    let out = if args.find_max {
        let bound = Duration::from_secs_f64(args.p99_bound_ms / 1000.0);
        let steps = driver::find_max(
            target.clone(),
            loaded,
            spec.clone(),
            bound,
            args.ramp_factor,
            args.ramp_steps,
        )
        .await?;
        for s in &steps {
            let r = &s.report.ops["read"];
            let verdict = if s.held { "held" } else { "FAILED" };
            println!(
                "read {:>9.0}/s asked, {:>9.0}/s achieved, p99 {:>8} µs: {verdict}",
                s.read_rate, r.achieved_rate, r.latency_us.p99
            );
        }
        match steps.iter().rev().find(|s| s.held) {
            Some(best) => println!(
                "{url}: highest rate that held p99 ≤ {} ms: {:.0} reads/s",
                args.p99_bound_ms, best.read_rate
            ),
            None => println!(
                "{url}: no step held p99 ≤ {} ms; start lower (--read-rate)",
                args.p99_bound_ms
            ),
        }
        Outcome::Ramp(steps)
    } else {
        let report = driver::run(target.clone(), loaded, spec.clone()).await?;
        println!("== {url}");
        print!("{}", report.summary());
        Outcome::Run(Box::new(report))
    };
    let nodes = target.node_reports();
    if nodes.len() > 1 {
        println!("per node (every call sent there, bulk load included; service time from send to answer):");
        println!(
            "{:<28} {:>10} {:>8} {:>10} {:>10}",
            "node", "calls", "errors", "p50µs", "p99µs"
        );
        for n in nodes {
            println!(
                "{:<28} {:>10} {:>8} {:>10} {:>10}",
                n.url, n.calls, n.errors, n.p50_us, n.p99_us
            );
        }
    }
    if let Target::Postgres(p) = &target {
        let (entries, bytes) = p.feed_footprint().await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        println!(
            "precomputed_feeds: {entries} entries, {bytes} bytes on disk (heap + indexes), {:.0} bytes per entry",
            bytes as f64 / entries.max(1) as f64
        );
    }
    if let Some(stats) = &opened.stats {
        print!("{}", stats.summary());
    }
    if let Target::InProcess(e) = target {
        let m = e.memory()?;
        let mb = |b: u64| b as f64 / 1048576.0;
        println!(
            "engine memory: hot layer {:.0} MB, block cache {:.0} MB, memtables {:.0} MB, {} reader states",
            mb(m.hot_bytes),
            mb(m.block_cache_bytes),
            mb(m.memtable_bytes),
            m.reader_states
        );
        e.shutdown(Duration::from_secs(30))?;
    }
    Ok(out)
}

/// What one target's run produced.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Outcome {
    Run(Box<Report>),
    Ramp(Vec<driver::RampStep>),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let spec = spec(&args);
    let mut runs = Vec::new();
    for url in std::iter::once(&args.target).chain(&args.compare) {
        runs.push((url.clone(), run_one(url, &args, &spec).await?));
    }
    let reports: Vec<(String, &Report)> = runs
        .iter()
        .flat_map(|(url, o)| match o {
            Outcome::Run(r) => vec![(url.clone(), r.as_ref())],
            Outcome::Ramp(steps) => steps
                .iter()
                .map(|s| (format!("{url} @{:.0}/s", s.read_rate), &s.report))
                .collect(),
        })
        .collect();
    if !args.compare.is_empty() && !args.find_max {
        print!("{}", loadgen::report::side_by_side(&reports));
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "feedline loadgen: {:.0} reads/s + {:.0} posts/s asked, {} users",
            spec.read_rate, spec.post_rate, spec.population.users
        );
        loadgen::plot::latency_svg(path, &title, &reports)?;
        println!("latency chart written to {}", path.display());
    }
    if let Some(path) = &args.report {
        let json: std::collections::BTreeMap<&str, &Outcome> = runs.iter().map(|(u, o)| (u.as_str(), o)).collect();
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    Ok(())
}
