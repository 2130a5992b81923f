//! The latency-percentile chart: one line per operation and run, percentile on a "nines" axis
//! (50, 90, 99, 99.9 …) and latency on a log axis, written as SVG with plotters.

use std::path::Path;

use plotters::prelude::*;

use crate::report::Report;

/// Where a percentile sits on the x axis: the number of nines (50 % → 0.3, 99 % → 2, max → 5.3).
fn nines(p: f64) -> f64 {
    -(1.0 - (p / 100.0).min(0.999_995)).log10()
}

/// The percentiles the x axis marks; the last is the maximum.
const TICKS: [f64; 6] = [50.0, 90.0, 99.0, 99.9, 99.99, 100.0];

fn percentile_label(x: f64) -> String {
    if x >= nines(100.0) - 1e-6 {
        return "max".into();
    }
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    // As many decimals as the tick needs (99.99 % has two), none left over.
    format!("{p:.2}")
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
        + "%"
}

/// A latency in µs in the unit that reads best: `250 µs`, `12 ms`, `1.5 s`.
fn latency_label(us: f64) -> String {
    let trim = |v: f64| {
        format!("{v:.1}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    };
    if us >= 1e6 {
        format!("{} s", trim(us / 1e6))
    } else if us >= 1e3 {
        format!("{} ms", trim(us / 1e3))
    } else {
        format!("{} µs", trim(us))
    }
}

/// Draws every operation of every `(label, report)` into one SVG at `path`: the curves on the
/// left, their legend in a column of its own on the right (never over a curve).
pub fn latency_svg(path: &Path, title: &str, runs: &[(String, &Report)]) -> anyhow::Result<()> {
    let series: Vec<(String, Vec<(f64, f64)>)> = runs
        .iter()
        .flat_map(|(label, r)| {
            r.ops.iter().filter(|(_, o)| !o.curve.is_empty()).map(move |(op, o)| {
                let pts = o.curve.iter().map(|&(p, us)| (nines(p), (us.max(1)) as f64)).collect();
                (format!("{label} {op}"), pts)
            })
        })
        .collect();
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1))
        .fold(10.0, f64::max);
    // From the decade below the fastest point: no empty band of microseconds under the curves.
    let low = series
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1))
        .fold(top, f64::min);
    let bottom = 10f64.powf(low.max(1.0).log10().floor());
    let root = SVGBackend::new(path, (1100, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot_area, legend_area) = root.split_horizontally(800);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(title, ("sans-serif", 16))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.25f64..5.4f64, (bottom..top * 2.0).log_scale())?;
    // The x axis is drawn by hand: plotters places its own ticks at round numbers of nines,
    // which read as 68.3772 %; a percentile chart wants 50, 90, 99, 99.9, 99.99 % and max.
    chart
        .configure_mesh()
        .x_labels(0)
        .disable_x_mesh()
        .x_desc("percentile")
        .y_desc("latency from scheduled send")
        .y_label_formatter(&|y| latency_label(*y))
        .draw()?;
    let (y_low, y_high) = (bottom, top * 2.0);
    for p in TICKS {
        let x = nines(p);
        chart.draw_series(LineSeries::new(vec![(x, y_low), (x, y_high)], BLACK.mix(0.15)))?;
        let (px, py) = chart.backend_coord(&(x, y_low));
        let label = percentile_label(x);
        root.draw(&Text::new(
            label.clone(),
            (px - 4 * label.len() as i32, py + 6),
            ("sans-serif", 13),
        ))?;
    }
    let mut legend_y = 50;
    for (i, (name, pts)) in series.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?;
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        legend_area.draw(&PathElement::new(
            vec![(10, legend_y), (34, legend_y)],
            color.stroke_width(2),
        ))?;
        legend_area.draw(&Text::new(name, (42, legend_y - 7), ("sans-serif", 13)))?;
        legend_y += 22;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_map_to_nines_and_back() {
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(nines(100.0)), "max");
        assert_eq!(percentile_label(nines(50.0)), "50%");
        assert_eq!(percentile_label(nines(99.99)), "99.99%");
        assert_eq!(latency_label(100.0), "100 µs");
        assert_eq!(latency_label(1_000.0), "1 ms");
        assert_eq!(latency_label(10_000_000.0), "10 s");
        assert_eq!(latency_label(1_500.0), "1.5 ms");
    }
}
