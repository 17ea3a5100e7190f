//! Plots of one simulation report, every one against simulated time with the fault windows
//! shaded and labelled (as Jepsen does), so a spike lines up with its cause at a glance:
//! latency percentiles per second, request rate and error ratio, retry amplification per edge
//! with its storm windows, a circuit-breaker and ejection timeline per upstream, the control
//! plane's sync states (`control.rs`), and the latency distribution with and without the mesh.
//!
//! Only what the report holds is drawn; a plot with nothing to show (no breaker events, no
//! baseline) is left out rather than drawn empty.

use plotters::coord::ranged1d::Ranged;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::{
    COLORS, PlotError, Series, axes, err, frame, legend, spectrum_chart, spectrum_x, svg_page,
    swatch,
};
use crate::model::{Bucket, Report, RunStats};

pub(super) const SIZE: (u32, u32) = (960, 500);

/// A percentile of a time-line bucket, by name.
type Pick = fn(&Bucket) -> u64;
const FAULT_FILL: RGBColor = RGBColor(214, 39, 40);

/// A shaded interval of time with its label.
#[derive(Clone, Debug)]
pub(super) struct Window {
    start_s: f64,
    end_s: f64,
    label: String,
    color: RGBColor,
}

/// The report's plots: `(file name, SVG)`, in the order a reader should see them.
pub fn run_plots(r: &Report) -> Result<Vec<(String, String)>, PlotError> {
    let runs: Vec<&RunStats> = [&r.mesh, &r.baseline].into_iter().flatten().collect();
    let end_s = runs
        .iter()
        .map(|s| s.sim_time_ms as f64 / 1000.0)
        .fold(1.0, f64::max);
    let faults: Vec<Window> = r
        .run
        .faults
        .iter()
        .map(|f| Window {
            start_s: f.start_ms as f64 / 1000.0,
            end_s: f.end_ms.map_or(end_s, |e| e as f64 / 1000.0),
            label: format!("{} {}", f.kind, f.target),
            color: FAULT_FILL,
        })
        .collect();
    let mut out = Vec::new();
    if runs.iter().any(|s| !s.timeline.is_empty()) {
        out.push(("latency.svg".to_string(), latency(&runs, &faults, end_s)?));
        out.push(("traffic.svg".to_string(), traffic(&runs, &faults, end_s)?));
    }
    if let Some(m) = &r.mesh {
        if m.edge_timeline.values().any(|b| !b.is_empty()) {
            out.push((
                "amplification.svg".to_string(),
                amplification(m, &faults, end_s)?,
            ));
        }
        if !m.health.is_empty() || !m.breaker_events.is_empty() {
            out.push(("breakers.svg".to_string(), breakers(m, &faults, end_s)?));
        }
        if let Some(w) = waterfall(m) {
            out.push(("trace.svg".to_string(), w?));
        }
        if let Some(cp) = m.control_plane.as_ref().filter(|cp| !cp.states.is_empty()) {
            out.push((
                "control-plane.svg".to_string(),
                super::control::states(cp, &faults, end_s)?,
            ));
        }
    }
    let spectra: Vec<Series> = runs
        .iter()
        .filter(|s| s.spectrum.len() > 1)
        .map(|s| Series {
            name: if s.mesh { "with mesh" } else { "without mesh" }.to_string(),
            points: s
                .spectrum
                .iter()
                .map(|p| {
                    (
                        spectrum_x(p.percentile / 100.0),
                        (p.latency_us.max(1)) as f64 / 1000.0,
                    )
                })
                .collect(),
        })
        .collect();
    if !spectra.is_empty() {
        out.push((
            "spectrum.svg".to_string(),
            spectrum_chart("Latency distribution: with and without the mesh", &spectra)?,
        ));
    }
    Ok(out)
}

/// Shade `windows` over the whole height of `chart` and label each at the top, staggered so
/// overlapping windows stay readable.
pub(super) fn shade<'a, DB: DrawingBackend + 'a, Y: Ranged>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
    windows: &[Window],
    (y0, y1): (Y::ValueType, Y::ValueType),
    title: &str,
) -> Result<(), PlotError>
where
    Y::ValueType: Clone + 'static,
{
    let e = err(title);
    chart
        .draw_series(windows.iter().map(|w| {
            Rectangle::new(
                [(w.start_s, y0.clone()), (w.end_s, y1.clone())],
                w.color.mix(0.12).filled(),
            )
        }))
        .map_err(|x| e(&x))?;
    chart
        .draw_series(windows.iter().enumerate().map(|(i, w)| {
            EmptyElement::at((w.start_s, y1.clone()))
                + Text::new(
                    w.label.clone(),
                    (4, 4 + 15 * (i as i32 % 6)),
                    ("sans-serif", 12).into_font().color(&w.color),
                )
        }))
        .map_err(|x| e(&x))?;
    Ok(())
}

fn latency(runs: &[&RunStats], faults: &[Window], end_s: f64) -> Result<String, PlotError> {
    let title = "Latency of the requests completed in each second";
    let e = err(title);
    let mut lines: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for s in runs {
        let pick: &[(&str, Pick)] = if s.mesh || runs.len() == 1 {
            &[
                ("P50", |b| b.p50_us),
                ("P90", |b| b.p90_us),
                ("P99", |b| b.p99_us),
            ]
        } else {
            &[("P99", |b| b.p99_us)]
        };
        let who = if s.mesh { "mesh" } else { "no mesh" };
        for (name, f) in pick {
            let pts = s
                .timeline
                .iter()
                .filter(|b| b.ok + b.failed > 0)
                .map(|b| (b.t_s as f64 + 0.5, f(b).max(1) as f64 / 1000.0))
                .collect();
            lines.push((format!("{name} {who}"), pts));
        }
    }
    let (lo, hi) = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
    let (y0, y1) = if lo > hi {
        (0.1, 10.0)
    } else {
        (lo / 2.0, hi * 3.0)
    };
    svg_page(SIZE, title, |root| {
        let mut chart = frame(root, title, 70)
            .build_cartesian_2d(0.0..end_s, (y0..y1).log_scale())
            .map_err(|x| e(&x))?;
        let mut mesh = chart.configure_mesh();
        axes(&mut mesh, "simulated time (s)", "latency (ms, log scale)");
        mesh.draw().map_err(|x| e(&x))?;
        shade(&mut chart, faults, (y0, y1), title)?;
        for (i, (name, pts)) in lines.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(|x| e(&x))?
                .label(name.clone())
                .legend(swatch(color));
        }
        legend(&mut chart, title, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
}

fn traffic(runs: &[&RunStats], faults: &[Window], end_s: f64) -> Result<String, PlotError> {
    let title = "Request rate and error ratio";
    let e = err(title);
    let peak = runs
        .iter()
        .flat_map(|s| s.timeline.iter().map(|b| (b.ok + b.failed).max(b.sent)))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let y1 = peak * 1.25;
    svg_page(SIZE, title, |root| {
        let mut chart = frame(root, title, 70)
            .right_y_label_area_size(70)
            .build_cartesian_2d(0.0..end_s, 0.0..y1)
            .map_err(|x| e(&x))?
            .set_secondary_coord(0.0..end_s, 0.0..1.05);
        let mut mesh = chart.configure_mesh();
        axes(&mut mesh, "simulated time (s)", "requests per second");
        mesh.draw().map_err(|x| e(&x))?;
        chart
            .configure_secondary_axes()
            .y_desc("error ratio (failed / completed)")
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|x| e(&x))?;
        shade(&mut chart, faults, (0.0, y1), title)?;
        for (i, s) in runs.iter().enumerate() {
            let who = if s.mesh { "mesh" } else { "no mesh" };
            let sent = COLORS[(2 * i) % COLORS.len()];
            let errs = COLORS[(2 * i + 3) % COLORS.len()];
            chart
                .draw_series(LineSeries::new(
                    s.timeline
                        .iter()
                        .map(|b| (b.t_s as f64 + 0.5, b.sent as f64)),
                    sent.stroke_width(2),
                ))
                .map_err(|x| e(&x))?
                .label(format!("sent/s, {who}"))
                .legend(swatch(sent));
            chart
                .draw_secondary_series(LineSeries::new(
                    s.timeline.iter().filter(|b| b.ok + b.failed > 0).map(|b| {
                        (
                            b.t_s as f64 + 0.5,
                            b.failed as f64 / (b.ok + b.failed) as f64,
                        )
                    }),
                    errs.stroke_width(2),
                ))
                .map_err(|x| e(&x))?
                .label(format!("error ratio, {who} (right axis)"))
                .legend(swatch(errs));
        }
        legend(&mut chart, title, SeriesLabelPosition::LowerRight)?;
        Ok(())
    })
}

/// The edges worth drawing: the six with the highest peak amplification.
fn top_edges(m: &RunStats) -> Vec<&str> {
    let mut edges: Vec<(&str, f64)> = m
        .edge_timeline
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                v.iter().map(|b| b.amplification).fold(0.0, f64::max),
            )
        })
        .collect();
    edges.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    edges.truncate(6);
    edges.sort_by(|a, b| a.0.cmp(b.0));
    edges.into_iter().map(|(k, _)| k).collect()
}

fn amplification(m: &RunStats, faults: &[Window], end_s: f64) -> Result<String, PlotError> {
    let title = "Retry amplification per edge (attempts per request)";
    let e = err(title);
    let edges = top_edges(m);
    let peak = edges
        .iter()
        .flat_map(|k| m.edge_timeline[*k].iter().map(|b| b.amplification))
        .fold(1.0, f64::max);
    let y1 = peak * 1.2 + 0.2;
    let windows: Vec<Window> = faults
        .iter()
        .map(|w| Window {
            color: RGBColor(127, 127, 127),
            ..w.clone()
        })
        .collect();
    // Storms are drawn as a band per edge along the bottom, in the edge's colour, so several
    // edges storming at once stay apart.
    let band = y1 * 0.035;
    let storms: Vec<(usize, &crate::model::Storm)> = m
        .storms
        .iter()
        .filter_map(|s| edges.iter().position(|k| *k == s.edge).map(|i| (i, s)))
        .collect();
    svg_page(SIZE, title, |root| {
        let mut chart = frame(root, title, 70)
            .build_cartesian_2d(0.0..end_s, 0.0..y1)
            .map_err(|x| e(&x))?;
        let mut mesh = chart.configure_mesh();
        axes(&mut mesh, "simulated time (s)", "attempts per request");
        mesh.draw().map_err(|x| e(&x))?;
        shade(&mut chart, &windows, (0.0, y1), title)?;
        chart
            .draw_series(storms.iter().map(|(i, s)| {
                let y = band * (*i as f64 + 0.2);
                Rectangle::new(
                    [(s.start_s as f64, y), (s.end_s as f64, y + band * 0.8)],
                    COLORS[i % COLORS.len()].mix(0.6).filled(),
                )
            }))
            .map_err(|x| e(&x))?;
        if !storms.is_empty() {
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((0.0, band * (edges.len() as f64 + 0.4)))
                        + Text::new(
                            "bars: storm windows (amplification above the threshold), per edge",
                            (4, -14),
                            ("sans-serif", 12).into_font(),
                        ),
                ))
                .map_err(|x| e(&x))?;
        }
        for (i, k) in edges.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(
                    m.edge_timeline[*k]
                        .iter()
                        .filter(|b| b.requests > 0)
                        .map(|b| (b.t_s as f64 + 0.5, b.amplification)),
                    color.stroke_width(2),
                ))
                .map_err(|x| e(&x))?
                .label(
                    match m
                        .storms
                        .iter()
                        .filter(|s| s.edge == *k)
                        .map(|s| s.peak_amplification)
                        .reduce(f64::max)
                    {
                        Some(p) => format!("{k} (storm peak {p:.1}×)"),
                        None => k.to_string(),
                    },
                )
                .legend(swatch(color));
        }
        legend(&mut chart, title, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
}

/// One row of the breaker timeline: a label, ejection intervals, refusal instants.
struct Row {
    label: String,
    intervals: Vec<(f64, f64)>,
    instants: Vec<f64>,
}

/// Rows per upstream: one per ejected endpoint (ejected until restored or probation) and one
/// per service whose breaker refused attempts. Refusals are binned to 100 ms so a burst of
/// thousands draws as a bar, not thousands of lines.
fn rows(m: &RunStats, end_s: f64) -> Vec<Row> {
    let mut rows: std::collections::BTreeMap<String, Row> = std::collections::BTreeMap::new();
    let mut open: std::collections::BTreeMap<(String, String), f64> =
        std::collections::BTreeMap::new();
    for h in &m.health {
        let key = format!("{} ejected (seen by {})", h.endpoint, h.proxy);
        let row = rows.entry(key.clone()).or_insert_with(|| Row {
            label: key,
            intervals: Vec::new(),
            instants: Vec::new(),
        });
        let t = h.at_ms as f64 / 1000.0;
        let id = (h.proxy.clone(), h.endpoint.clone());
        match h.event.as_str() {
            "ejected" => {
                open.insert(id, t);
            }
            _ => {
                if let Some(s) = open.remove(&id) {
                    row.intervals.push((s, t));
                }
            }
        }
    }
    for ((proxy, endpoint), s) in open {
        let key = format!("{endpoint} ejected (seen by {proxy})");
        if let Some(row) = rows.get_mut(&key) {
            row.intervals.push((s, end_s));
        }
    }
    for b in &m.breaker_events {
        let key = format!("{} breaker refusals", b.service);
        let row = rows.entry(key.clone()).or_insert_with(|| Row {
            label: key,
            intervals: Vec::new(),
            instants: Vec::new(),
        });
        let bin = (b.at_ms / 100) as f64 / 10.0;
        if row.instants.last() != Some(&bin) {
            row.instants.push(bin);
        }
    }
    // At most 16 rows stay readable; the report's tables hold the rest.
    rows.into_values().take(16).collect()
}

fn breakers(m: &RunStats, faults: &[Window], end_s: f64) -> Result<String, PlotError> {
    let rows: Vec<(String, Vec<Bar>)> = rows(m, end_s)
        .into_iter()
        .map(|row| {
            let color = if row.instants.is_empty() {
                COLORS[0]
            } else {
                COLORS[3]
            };
            let bars = row
                .intervals
                .iter()
                .map(|(a, b)| (*a, b.max(a + 0.02), color))
                .chain(row.instants.iter().map(|t| (*t, t + 0.1, color)))
                .collect();
            (row.label, bars)
        })
        .collect();
    gantt(
        "Circuit breakers and outlier ejections per upstream",
        "simulated time (s)",
        0.0..end_s,
        &rows,
        faults,
    )
}

/// A bar on a timeline row: from, to, colour.
type Bar = (f64, f64, RGBColor);

/// Rows of bars against time, each row labelled on the left, `windows` shaded behind.
fn gantt(
    title: &str,
    x_desc: &str,
    x: std::ops::Range<f64>,
    rows: &[(String, Vec<Bar>)],
    windows: &[Window],
) -> Result<String, PlotError> {
    let e = err(title);
    let n = rows.len() as i32;
    let height = (140 + 34 * rows.len() as u32).max(260);
    svg_page((SIZE.0, height), title, |root| {
        let mut chart = frame(root, title, 300)
            // One lane per row plus one on top, where the windows' labels go (a segmented
            // range of one value draws nothing, so a single row needs the extra lane anyway).
            .build_cartesian_2d(x, (0..n).into_segmented())
            .map_err(|x| e(&x))?;
        let name = |y: &SegmentValue<i32>| match y {
            SegmentValue::CenterOf(i) => rows
                .get(*i as usize)
                .map(|r| r.0.clone())
                .unwrap_or_default(),
            _ => String::new(),
        };
        let mut mesh = chart.configure_mesh();
        axes(&mut mesh, x_desc, "");
        mesh.disable_y_mesh()
            .y_labels(rows.len() + 2)
            .y_label_formatter(&name)
            .draw()
            .map_err(|x| e(&x))?;
        shade(
            &mut chart,
            windows,
            (SegmentValue::Exact(0), SegmentValue::Last),
            title,
        )?;
        for (i, (_, bars)) in rows.iter().enumerate() {
            let (lo, hi) = (
                SegmentValue::Exact(i as i32),
                SegmentValue::Exact(i as i32 + 1),
            );
            chart
                .draw_series(bars.iter().map(|(a, b, color)| {
                    // Inset a few pixels so neighbouring rows stay apart.
                    let mut r = Rectangle::new(
                        [(*a, lo.clone()), (*b, hi.clone())],
                        color.mix(0.85).filled(),
                    );
                    r.set_margin(4, 4, 0, 0);
                    r
                }))
                .map_err(|x| e(&x))?;
        }
        Ok(())
    })
}

/// The slowest trace as a waterfall: one row per sidecar hop, bars from the trace's start,
/// red where the hop failed.
fn waterfall(m: &RunStats) -> Option<Result<String, PlotError>> {
    let t = m.slowest_traces.first()?;
    // Rows count up from the bottom: reversed, the first hop is on top, as in Jaeger.
    let rows: Vec<(String, Vec<Bar>)> = t
        .spans
        .iter()
        .rev()
        .map(|sp| {
            let failed = sp.status >= 500 || !sp.reason.is_empty();
            let from = sp.offset_us as f64 / 1000.0;
            let to = from + (sp.duration_us as f64 / 1000.0).max(0.01);
            let label = format!(
                "{} {} → {}{}",
                sp.proxy,
                sp.direction,
                sp.service,
                if sp.reason.is_empty() {
                    format!(" ({})", sp.status)
                } else {
                    format!(" ({})", sp.reason)
                }
            );
            (
                label,
                vec![(from, to, if failed { COLORS[3] } else { COLORS[0] })],
            )
        })
        .collect();
    let end = (t.duration_us as f64 / 1000.0).max(0.01) * 1.02;
    Some(gantt(
        &format!(
            "Slowest trace: {} at {:.3} s, {:.1} ms, status {}",
            t.root,
            t.start_ms as f64 / 1000.0,
            t.duration_us as f64 / 1000.0,
            t.status
        ),
        "ms after the request was sent",
        0.0..end,
        &rows,
        &[],
    ))
}
