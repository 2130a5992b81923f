//! What a run measured: achieved vs target rate, latency percentiles from HDR histograms, errors
//! by code, fanout lag — as a human summary and as JSON.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::driver::RunSpec;

/// One kind of operation.
#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    /// Asked-for operations per second.
    pub target_rate: f64,
    /// Operations completed per second: those scheduled in the measured time, over the time
    /// until the last of them completed (at least the measured duration).
    pub achieved_rate: f64,
    /// Operations issued in the measured time.
    pub sent: u64,
    /// Of which succeeded.
    pub ok: u64,
    /// Failures by status code.
    pub errors: BTreeMap<String, u64>,
    /// Latency from the scheduled send time, µs.
    pub latency_us: Percentiles,
}

/// Latency percentiles, µs.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th.
    pub p90: u64,
    /// 99th.
    pub p99: u64,
    /// 99.9th.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

impl OpReport {
    /// Builds the report of one kind from its counters.
    pub fn from_parts(
        target_rate: f64,
        sent: u64,
        ok: u64,
        errors: &BTreeMap<String, u64>,
        h: &Histogram<u64>,
        secs: f64,
    ) -> OpReport {
        OpReport {
            target_rate,
            achieved_rate: sent as f64 / secs.max(1e-9),
            sent,
            ok,
            errors: errors.clone(),
            latency_us: Percentiles::of(h),
        }
    }

    /// Whether the achieved rate fell short of the target by more than 5 %.
    pub fn short(&self) -> bool {
        self.target_rate > 0.0 && self.achieved_rate < self.target_rate * 0.95
    }
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The run's parameters.
    pub spec: RunSpec,
    /// Per operation kind: `read`, `publish`, `graph`.
    pub ops: BTreeMap<String, OpReport>,
    /// Publish-ack → visible in a sampled follower's first page, µs.
    pub fanout_lag_us: Option<Percentiles>,
    /// Lag probes sampled.
    pub fanout_lag_samples: u64,
    /// Lag probes that did not see the post within 5 s.
    pub fanout_lag_timeouts: u64,
}

impl Report {
    /// Assembles the report.
    pub fn new(spec: RunSpec, ops: BTreeMap<String, OpReport>, lag: &Histogram<u64>, lag_timeouts: u64) -> Report {
        Report {
            spec,
            ops,
            fanout_lag_us: (!lag.is_empty()).then(|| Percentiles::of(lag)),
            fanout_lag_samples: lag.len(),
            fanout_lag_timeouts: lag_timeouts,
        }
    }

    /// The terminal summary; says loudly when a target rate was not reached.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "{:<8} {:>12} {:>12} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}  errors\n",
            "op", "target/s", "achieved/s", "ok", "p50µs", "p90µs", "p99µs", "p99.9µs", "maxµs", ""
        ));
        for (name, o) in &self.ops {
            if o.target_rate == 0.0 {
                continue;
            }
            let l = &o.latency_us;
            s.push_str(&format!(
                "{:<8} {:>12.0} {:>12.0} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}  {:?}\n",
                name, o.target_rate, o.achieved_rate, o.ok, l.p50, l.p90, l.p99, l.p999, l.max, "", o.errors
            ));
        }
        match &self.fanout_lag_us {
            Some(l) => s.push_str(&format!(
                "fanout lag (publish ack → in a follower's first page): p50 {} µs, p99 {} µs, max {} µs over {} samples, {} timed out\n",
                l.p50, l.p99, l.max, self.fanout_lag_samples, self.fanout_lag_timeouts
            )),
            None => s.push_str("fanout lag: no samples\n"),
        }
        for (name, o) in &self.ops {
            if o.short() {
                s.push_str(&format!(
                    "!!! TARGET NOT REACHED: {name} achieved {:.0}/s of {:.0}/s ({:.0} %) on this machine\n",
                    o.achieved_rate,
                    o.target_rate,
                    100.0 * o.achieved_rate / o.target_rate
                ));
            }
        }
        s
    }
}
