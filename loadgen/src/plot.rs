//! The latency-percentile chart: one line per operation and run, percentile on a "nines" axis
//! (50, 90, 99, 99.9 …) and latency on a log axis, written as SVG with plotters.

use std::path::Path;

use plotters::prelude::*;

use crate::report::Report;

/// Where a percentile sits on the x axis: the number of nines (50 % → 0.3, 99 % → 2, max → 5.3).
fn nines(p: f64) -> f64 {
    -(1.0 - (p / 100.0).min(0.999_995)).log10()
}

fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    if x >= nines(100.0) - 1e-6 {
        "max".into()
    } else {
        format!("{p:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + "%"
    }
}

/// Draws every operation of every `(label, report)` into one SVG at `path`.
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
    let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.25f64..5.4f64, (1f64..top * 2.0).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency from scheduled send (µs)")
        .x_labels(12)
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()?;
    for (i, (name, pts)) in series.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
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
    }
}
