//! The bulk load: the seeded population's users and follow edges created through the target
//! before a run (the engine's bulk API in-process, batched calls elsewhere), each run under a
//! handle prefix of its own.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::target::{Edge, Target};
use crate::workload::{Population, PopulationSpec};

/// The loaded population: user ids by population index.
#[derive(Clone)]
pub struct Loaded {
    /// The graph.
    pub population: Population,
    /// `ids[i]`: the target's user id of population index `i`.
    pub ids: Vec<u64>,
}

/// Creates the users and follow edges through the target, `concurrency` calls at a time.
pub async fn bulk_load(
    target: &Target,
    spec: &PopulationSpec,
    concurrency: usize,
    progress: bool,
) -> anyhow::Result<Loaded> {
    let population = Population::generate(spec);
    let bar = if progress {
        indicatif::ProgressBar::new((population.len() + population.edges()) as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(indicatif::ProgressStyle::with_template(
        "{msg} {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
    )?);
    bar.set_message("users");
    if let Target::InProcess(e) = target {
        // The engine's bulk-load API: 10,000 records per fsynced batch.
        let (e, pop, prefix, bar2) = (e.clone(), population.clone(), run_prefix(spec.seed), bar.clone());
        let ids = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u64>> {
            let handles: Vec<String> = (0..pop.len()).map(|i| format!("{prefix}_{i}")).collect();
            let ids = e.create_users(&handles)?;
            bar2.inc(ids.len() as u64);
            bar2.set_message("follows");
            let edges: Vec<(u64, u64)> = pop
                .following
                .iter()
                .enumerate()
                .flat_map(|(u, fs)| fs.iter().map(|&v| (ids[u], ids[v])).collect::<Vec<_>>())
                .collect();
            e.follow_many(&edges)?;
            bar2.inc(edges.len() as u64);
            Ok(ids)
        })
        .await??;
        bar.finish_and_clear();
        return Ok(Loaded { population, ids });
    }
    let sem = Arc::new(Semaphore::new(concurrency));
    let mut tasks = Vec::with_capacity(population.len());
    let prefix = run_prefix(spec.seed);
    for i in 0..population.len() {
        let (t, sem, bar) = (target.clone(), sem.clone(), bar.clone());
        let handle = format!("{prefix}_{i}");
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await;
            let r = t.create_user(handle).await;
            bar.inc(1);
            r
        }));
    }
    let mut ids = Vec::with_capacity(tasks.len());
    for t in tasks {
        ids.push(
            t.await?
                .map_err(|e| anyhow::anyhow!("creating a user failed: {}", e.0))?,
        );
    }
    bar.set_message("follows");
    let mut tasks = Vec::with_capacity(population.edges());
    for (u, fs) in population.following.iter().enumerate() {
        for &v in fs {
            let (t, sem, bar, a, b) = (target.clone(), sem.clone(), bar.clone(), ids[u], ids[v]);
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire_owned().await;
                let r = t.relate(Edge::Follow, a, b).await;
                bar.inc(1);
                r
            }));
        }
    }
    for t in tasks {
        t.await?.map_err(|e| anyhow::anyhow!("a follow failed: {}", e.0))?;
    }
    bar.finish_and_clear();
    Ok(Loaded { population, ids })
}

/// The handle prefix of one load: the seed decides the population's shape, this run's own
/// prefix its names, so loads can repeat against the same target without a taken handle
/// (`lg` + 10 hex digits: handles stay within 32 characters).
fn run_prefix(seed: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mixed = (seed ^ nanos.rotate_left(17)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("lg{:010x}", mixed >> 24)
}
