//! The in-process engine's own counters over a run — how reads were served, how often each
//! hot-layer map hit, how much fanout work was done and what was refused — read from a
//! Prometheus recorder installed before the engine opens. Where a profile of a run starts.
//! Counts cover the whole process life (bulk load and warm-up included).

use std::collections::BTreeMap;
use std::fmt::Write;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// A handle on the engine's counters.
pub struct EngineStats(PrometheusHandle);

impl EngineStats {
    /// Installs the process's metrics recorder; `None` if one is installed already.
    pub fn install() -> Option<EngineStats> {
        PrometheusBuilder::new().install_recorder().ok().map(EngineStats)
    }

    /// One line per family: read paths, cache hit rates, fanout work, refusals.
    pub fn summary(&self) -> String {
        summarize(&self.0.render())
    }
}

/// One sample line of a Prometheus text rendering: name, labels, value.
type Sample<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);

/// The sample lines of a Prometheus text rendering.
fn samples(text: &str) -> Vec<Sample<'_>> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (head, ""),
            };
            let labels = labels
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k, v.trim_matches('"')))
                .collect();
            Some((name, labels, value))
        })
        .collect()
}

fn summarize(text: &str) -> String {
    let s = samples(text);
    let by = |name: &str, label: &str| -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        for (n, labels, v) in &s {
            if *n == name {
                let key = labels.iter().find(|(k, _)| *k == label).map(|(_, v)| *v).unwrap_or("");
                *m.entry(key.to_string()).or_default() += v;
            }
        }
        m
    };
    let total = |name: &str| s.iter().filter(|(n, _, _)| *n == name).map(|(_, _, v)| v).sum::<f64>();
    let mut out = String::new();
    let reads = by(feed_engine::metrics::READS, "path");
    let all: f64 = reads.values().sum();
    let paths: Vec<String> = reads
        .iter()
        .map(|(p, n)| format!("{p} {:.1} %", 100.0 * n / all.max(1.0)))
        .collect();
    let _ = writeln!(out, "engine reads by path ({all:.0}): {}", paths.join(", "));
    // The engine's own time per read (summaries roll over the last minute): beside the
    // generator's end-to-end figures, what of a read's tail is the engine's and what is waiting.
    let mut times: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for (n, labels, v) in &s {
        let get = |k: &str| labels.iter().find(|(l, _)| *l == k).map(|(_, v)| *v).unwrap_or("");
        if *n == feed_engine::metrics::READ_SECONDS {
            let e = times.entry(get("path")).or_default();
            match get("quantile") {
                "0.5" => e.0 = *v,
                "0.99" => e.1 = *v,
                _ => {}
            }
        }
    }
    if !times.is_empty() {
        let times: Vec<String> = times
            .iter()
            .map(|(p, (p50, p99))| format!("{p} {:.0} / {:.0} µs", p50 * 1e6, p99 * 1e6))
            .collect();
        let _ = writeln!(
            out,
            "engine time per read by path, p50 / p99 over the last minute: {}",
            times.join(", ")
        );
    }
    let mut hits: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (n, labels, v) in &s {
        if *n == feed_engine::metrics::CACHE_LOOKUPS {
            let get = |k: &str| labels.iter().find(|(l, _)| *l == k).map(|(_, v)| *v).unwrap_or("");
            let e = hits.entry(get("cache").to_string()).or_default();
            if get("outcome") == "hit" {
                e.0 += v;
            } else {
                e.1 += v;
            }
        }
    }
    let rates: Vec<String> = hits
        .iter()
        .map(|(c, (h, m))| format!("{c} {:.1} % of {:.0}", 100.0 * h / (h + m).max(1.0), h + m))
        .collect();
    let _ = writeln!(out, "engine hot-layer hits: {}", rates.join(", "));
    let _ = writeln!(
        out,
        "engine fanout: {:.0} deliveries, {:.0} trims, {:.0} rebuilds; refused: {:?}",
        total(feed_engine::metrics::DELIVERIES),
        total(feed_engine::metrics::TRIMS),
        total(feed_engine::metrics::REBUILDS),
        by(feed_engine::metrics::OVERLOADED, "what"),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendering_is_summed_by_label() {
        let text = "# TYPE feedline_feed_reads_total counter\n\
            feedline_feed_reads_total{path=\"cache\"} 30\n\
            feedline_feed_reads_total{path=\"push\"} 10\n\
            feedline_cache_lookups_total{cache=\"pages\",outcome=\"hit\"} 3\n\
            feedline_cache_lookups_total{cache=\"pages\",outcome=\"miss\"} 1\n\
            feedline_deliveries_total 7\n\
            feedline_feed_read_seconds{path=\"pull\",quantile=\"0.5\"} 0.00012\n\
            feedline_feed_read_seconds{path=\"pull\",quantile=\"0.99\"} 0.0021\n\
            feedline_feed_read_seconds_sum{path=\"pull\"} 0.5\n";
        let s = summarize(text);
        assert!(s.contains("reads by path (40): cache 75.0 %, push 25.0 %"), "{s}");
        assert!(s.contains("pages 75.0 % of 4"), "{s}");
        assert!(s.contains("7 deliveries"), "{s}");
        assert!(s.contains("last minute: pull 120 / 2100 µs"), "{s}");
    }
}
