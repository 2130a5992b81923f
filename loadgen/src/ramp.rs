//! `--find-max`: the same open-loop run, step by step at rising rates, until the read p99 bound
//! breaks or the rate is not reached.

use std::time::Duration;

use crate::driver::{Loaded, RunSpec, run};
use crate::report::Report;
use crate::target::Target;

/// One step of a ramp.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RampStep {
    /// Feed reads per second asked for (posts at a tenth of it).
    pub read_rate: f64,
    /// The step's report.
    pub report: Report,
    /// Whether the read p99 stayed under the bound and the rate was reached.
    pub held: bool,
}

/// `--find-max`: raises the read rate (posts at 10:1) step by step from `spec.read_rate`, by
/// `factor` each step, until the read p99 passes `p99_bound` or the rate is not reached; returns
/// every step. The highest step that held is the answer.
pub async fn find_max(
    target: Target,
    loaded: Loaded,
    spec: RunSpec,
    p99_bound: Duration,
    factor: f64,
    max_steps: usize,
) -> anyhow::Result<Vec<RampStep>> {
    let mut steps = Vec::new();
    let mut rate = spec.read_rate.max(1.0);
    for _ in 0..max_steps {
        let step = RunSpec {
            read_rate: rate,
            post_rate: rate / 10.0,
            graph_rate: rate / 10.0 * 0.03,
            like_rate: rate,
            comment_rate: rate / 10.0,
            ..spec.clone()
        };
        let report = run(target.clone(), loaded.clone(), step).await?;
        let reads = &report.ops["read"];
        let held = !reads.short() && reads.latency_us.p99 <= p99_bound.as_micros() as u64 && reads.errors.is_empty();
        steps.push(RampStep {
            read_rate: rate,
            report,
            held,
        });
        if !held {
            break;
        }
        rate *= factor.max(1.01);
    }
    Ok(steps)
}
