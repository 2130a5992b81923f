//! What a run measured: achieved vs target rate, latency percentiles from HDR histograms, errors
//! by code, fanout lag — as a human summary and as JSON.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::driver::{LagMisses, RunSpec};

/// One kind of operation.
#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    /// Asked-for operations per second.
    pub target_rate: f64,
    /// Operations that succeeded per second: those answered in the measured time without an
    /// error, over the time until the last of them completed (at least the measured duration).
    pub achieved_rate: f64,
    /// Operations due or sent in the measured time (warm-up ops sent late count, with their wait).
    pub sent: u64,
    /// Operations scheduled in the measured time but never issued: the target was so far
    /// behind that the run's deadline (end + 10 %, at least 1 s) passed first.
    pub unsent: u64,
    /// Of which succeeded.
    pub ok: u64,
    /// Failures by status code.
    pub errors: BTreeMap<String, u64>,
    /// Latency from the scheduled send time, µs.
    pub latency_us: Percentiles,
    /// The latency-percentile curve: `(percentile, µs)` from the median to the maximum.
    pub curve: Vec<(f64, u64)>,
}

/// Percentiles of the plotted curve (100 stands for the maximum).
const CURVE: [f64; 12] = [
    50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999, 100.0,
];

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
        unsent: u64,
        ok: u64,
        errors: &BTreeMap<String, u64>,
        h: &Histogram<u64>,
        secs: f64,
    ) -> OpReport {
        OpReport {
            target_rate,
            achieved_rate: ok as f64 / secs.max(1e-9),
            sent,
            unsent,
            ok,
            errors: errors.clone(),
            latency_us: Percentiles::of(h),
            curve: if h.is_empty() {
                Vec::new()
            } else {
                CURVE.iter().map(|&p| (p, h.value_at_quantile(p / 100.0))).collect()
            },
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
    /// Lag probes without a figure: the post not in the follower's feed at any rank by the
    /// probe's deadline (`not_seen`), or the looks failing (`errors`).
    pub fanout_lag_misses: LagMisses,
    /// Like ack → "liked" event on the author's live stream, µs (gRPC targets, with probes).
    pub notify_lag_us: Option<Percentiles>,
    /// Notification probes measured.
    pub notify_samples: u64,
    /// Notification probes whose event never arrived.
    pub notify_missed: u64,
}

impl Report {
    /// Assembles the report.
    pub fn new(spec: RunSpec, ops: BTreeMap<String, OpReport>, lag: &Histogram<u64>, misses: LagMisses) -> Report {
        Report {
            spec,
            ops,
            fanout_lag_us: (!lag.is_empty()).then(|| Percentiles::of(lag)),
            fanout_lag_samples: lag.len(),
            fanout_lag_misses: misses,
            notify_lag_us: None,
            notify_samples: 0,
            notify_missed: 0,
        }
    }

    /// Adds what the notification probes saw.
    pub fn set_notify_lag(&mut self, n: &crate::notify_probe::NotifyLag) {
        self.notify_lag_us = (!n.lag_us.is_empty()).then(|| Percentiles::of(&n.lag_us));
        self.notify_samples = n.lag_us.len();
        self.notify_missed = n.missed;
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
        match &self.notify_lag_us {
            Some(l) => s.push_str(&format!(
                "notification delivery (like ack → event on the author's stream): p50 {} µs, p99 {} µs, max {} µs over {} probes, {} missed\n",
                l.p50, l.p99, l.max, self.notify_samples, self.notify_missed
            )),
            None if self.notify_missed > 0 => s.push_str(&format!(
                "notification delivery: no probe's event arrived ({} missed)\n",
                self.notify_missed
            )),
            None => {}
        }
        match &self.fanout_lag_us {
            Some(l) => s.push_str(&format!(
                "fanout lag (publish ack → in a follower's feed, any rank): p50 {} µs, p99 {} µs, max {} µs over {} samples\n",
                l.p50, l.p99, l.max, self.fanout_lag_samples
            )),
            None => s.push_str("fanout lag: no samples\n"),
        }
        let m = &self.fanout_lag_misses;
        if m.not_seen > 0 {
            s.push_str(&format!(
                "!!! fanout lag: {} probed posts not seen within {:?} of the ack\n",
                m.not_seen, self.spec.lag_timeout
            ));
        }
        if m.errors > 0 {
            s.push_str(&format!("!!! fanout lag: {} probes ended on a failed read\n", m.errors));
        }
        for (name, o) in &self.ops {
            if o.unsent > 0 {
                s.push_str(&format!(
                    "!!! {name}: {} scheduled operations were never sent (the target fell behind past the deadline)\n",
                    o.unsent
                ));
            }
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

/// Runs of the same workload against several targets, one row per target and operation, with
/// each figure's ratio to the first target's.
pub fn side_by_side(runs: &[(String, &Report)]) -> String {
    let Some((base_name, base)) = runs.first() else {
        return String::new();
    };
    let mut s = format!(
        "side by side (ratio to {base_name} in brackets):\n{:<28} {:<8} {:>18} {:>18} {:>18}\n",
        "target", "op", "achieved/s", "p50 µs", "p99 µs"
    );
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("({:.2}×)", a / b)
        } else {
            String::new()
        }
    };
    for (name, r) in runs {
        for (op, o) in r.ops.iter().filter(|(_, o)| o.target_rate > 0.0) {
            let b = base.ops.get(op);
            let (ba, b50, b99) = b.map_or((0.0, 0.0, 0.0), |b| {
                (b.achieved_rate, b.latency_us.p50 as f64, b.latency_us.p99 as f64)
            });
            s.push_str(&format!(
                "{:<28} {:<8} {:>9.0} {:>8} {:>9} {:>8} {:>9} {:>8}\n",
                name,
                op,
                o.achieved_rate,
                ratio(o.achieved_rate, ba),
                o.latency_us.p50,
                ratio(o.latency_us.p50 as f64, b50),
                o.latency_us.p99,
                ratio(o.latency_us.p99 as f64, b99)
            ));
        }
        if let Some(l) = &r.fanout_lag_us {
            s.push_str(&format!("{name:<28} fanout lag p50 {} µs, p99 {} µs\n", l.p50, l.p99));
        }
    }
    s
}
