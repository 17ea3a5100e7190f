//! The control plane's plot: how many proxies are in each sync state (SYNCED, STALE, NOT SENT,
//! NACKED, or without a stream) second by second, with the fault windows shaded and every
//! change of the desired state marked where it happened, so a stale window or a push storm
//! lines up with its cause.

use plotters::prelude::*;

use super::run::{SIZE, Window, shade};
use super::{COLORS, PlotError, axes, err, frame, legend, svg_page, swatch};
use crate::model::{ControlPlaneStats, SyncSample};

/// Proxies by sync state over time.
pub(super) fn states(
    cp: &ControlPlaneStats,
    faults: &[Window],
    end_s: f64,
) -> Result<String, PlotError> {
    let title = "Control plane: proxies by sync state";
    let e = err(title);
    let y1 = (cp.proxies.max(1) as f64) * 1.15;
    type Count = fn(&SyncSample) -> u64;
    let lines: [(&str, Count); 5] = [
        ("SYNCED", |s| s.synced),
        ("STALE", |s| s.stale),
        ("NOT SENT", |s| s.not_sent),
        ("NACKED", |s| s.nacked),
        ("no stream", |s| s.disconnected),
    ];
    svg_page(SIZE, title, |root| {
        let mut chart = frame(root, title, 70)
            .build_cartesian_2d(0.0..end_s, 0.0..y1)
            .map_err(|x| e(&x))?;
        let mut mesh = chart.configure_mesh();
        axes(&mut mesh, "simulated time (s)", "proxies");
        mesh.draw().map_err(|x| e(&x))?;
        shade(&mut chart, faults, (0.0, y1), title)?;
        for (i, (name, count)) in lines.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            // Steps: a sample's count holds until the next sample.
            let steps = cp.states.iter().enumerate().flat_map(|(k, s)| {
                let next = cp.states.get(k + 1).map_or(s.at_ms, |n| n.at_ms);
                let y = count(s) as f64;
                [(s.at_ms as f64 / 1000.0, y), (next as f64 / 1000.0, y)]
            });
            chart
                .draw_series(LineSeries::new(steps, color.stroke_width(2)))
                .map_err(|x| e(&x))?
                .label(*name)
                .legend(swatch(color));
        }
        // Each change: a dashed mark where it happened, and a dot where 90% of proxies had it.
        let mark = COLORS[6];
        chart
            .draw_series(cp.changes.iter().map(|c| {
                let x = c.at_ms as f64 / 1000.0;
                PathElement::new(vec![(x, 0.0), (x, y1)], mark.stroke_width(1))
            }))
            .map_err(|x| e(&x))?
            .label("a change of the desired state")
            .legend(swatch(mark));
        chart
            .draw_series(cp.changes.iter().filter_map(|c| {
                let t90 = c.t90_ms?;
                let x = (c.at_ms as f64 + t90) / 1000.0;
                Some(Circle::new((x, 0.9 * c.proxies as f64), 4, mark.filled()))
            }))
            .map_err(|x| e(&x))?
            .label("90% of proxies have it")
            .legend(swatch(mark));
        legend(&mut chart, title, SeriesLabelPosition::MiddleLeft)?;
        Ok(())
    })
}
