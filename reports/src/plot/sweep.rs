//! A sweep's plot: each seed's P99 (ms) as a point against its seed, failing seeds in red, with
//! the mean and its 95% interval across seeds as lines, so an outlier seed stands out at a glance.

use plotters::prelude::*;

use super::{COLORS, PlotError, axes, err, frame, legend, svg_page, swatch};
use crate::model::Verdict;
use crate::stats::Spread;
use crate::sweep::SweepRecord;

const METRIC: &str = "mesh.latency.p99_ms";

/// The plot, as an SVG document.
pub fn plot(records: &[SweepRecord]) -> Result<String, PlotError> {
    let title = "P99 latency by seed";
    let err = err(title);
    let pts: Vec<(f64, f64, bool)> = records
        .iter()
        .filter_map(|r| {
            r.metrics
                .get(METRIC)
                .map(|v| (r.seed as f64, *v, r.verdict == Verdict::Fail))
        })
        .collect();
    let values: Vec<f64> = pts.iter().map(|p| p.1).collect();
    let spread = Spread::of(&values).ok_or_else(|| err(&"no seed reported a P99"))?;
    let (x0, x1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (x0, x1) = (x0 - 0.5, x1 + 0.5);
    let y1 = spread.max * 1.15 + 1e-3;
    svg_page((900, 480), title, |root| {
        let mut b = frame(root, title, 70);
        let mut chart = b.build_cartesian_2d(x0..x1, 0.0..y1).map_err(|e| err(&e))?;
        let mut mesh = chart.configure_mesh();
        axes(&mut mesh, "seed", "P99 latency (ms)");
        mesh.x_label_formatter(&|x| format!("{x:.0}"));
        mesh.draw().map_err(|e| err(&e))?;
        let (ok, bad) = (COLORS[0], COLORS[3]);
        chart
            .draw_series(
                pts.iter()
                    .filter(|p| !p.2)
                    .map(|p| Circle::new((p.0, p.1), 3, ok.filled())),
            )
            .map_err(|e| err(&e))?
            .label("seed (pass)")
            .legend(swatch(ok));
        chart
            .draw_series(
                pts.iter()
                    .filter(|p| p.2)
                    .map(|p| Circle::new((p.0, p.1), 4, bad.filled())),
            )
            .map_err(|e| err(&e))?
            .label("seed (fail)")
            .legend(swatch(bad));
        let grey = COLORS[6];
        chart
            .draw_series(LineSeries::new(
                [(x0, spread.mean), (x1, spread.mean)],
                grey.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(format!("mean {:.3} ms", spread.mean))
            .legend(swatch(grey));
        if spread.ci95.is_finite() {
            for y in [spread.lo(), spread.hi()] {
                chart
                    .draw_series(LineSeries::new([(x0, y), (x1, y)], grey.stroke_width(1)))
                    .map_err(|e| err(&e))?;
            }
        }
        legend(&mut chart, title, SeriesLabelPosition::LowerRight)?;
        Ok(())
    })
}
