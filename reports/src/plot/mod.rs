//! Plots as SVG, with plotters' SVG backend (text is SVG `<text>`, so no font files are needed
//! and the output is the same on every machine). Axes carry units; a legend names every line.
//!
//! Simulation plots are in [`run_plots`]; [`png_from_svg`] rasterises any of them.
//!
//! Bench plots: added latency against rate per proxy configuration, and the percentile spectrum
//! (latency against percentile on HdrHistogram's 1/(1−p) axis) per configuration.

use plotters::prelude::*;

use crate::bench::BenchReport;

mod control;
mod png;
mod run;
pub mod sweep;

pub use png::{PngError, png_from_svg};
pub use run::run_plots;

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("plotting {0}: {1}")]
pub struct PlotError(pub String, pub String);

const COLORS: [RGBColor; 7] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
];

/// A drawing page: the root area of one SVG.
pub(crate) type Page<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Draw a chart with `draw` on a white SVG page of `size` and return the document.
pub(crate) fn svg_page(
    size: (u32, u32),
    title: &str,
    draw: impl FnOnce(&Page<'_>) -> Result<(), PlotError>,
) -> Result<String, PlotError> {
    let err = err(title);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        draw(&root)?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

/// The frame every chart shares: title, margin, room for the axes' labels.
pub(crate) fn frame<'a, 'b, 'c>(
    root: &'a Page<'c>,
    title: &str,
    y_label_area: u32,
) -> ChartBuilder<'a, 'b, SVGBackend<'c>> {
    let mut b = ChartBuilder::on(root);
    b.caption(title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(y_label_area);
    b
}

/// Axis descriptions and label fonts, the same on every chart.
pub(crate) fn axes<X, Y, DB>(m: &mut plotters::chart::MeshStyle<'_, '_, X, Y, DB>, x: &str, y: &str)
where
    X: plotters::coord::ranged1d::Ranged,
    Y: plotters::coord::ranged1d::Ranged,
    DB: DrawingBackend,
{
    m.x_desc(x)
        .y_desc(y)
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13));
}

/// A legend swatch: a short line in `color`.
pub(crate) fn swatch(color: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
}

/// Why drawing `title` failed.
pub(crate) fn err(title: &str) -> impl Fn(&dyn std::fmt::Display) -> PlotError + '_ {
    move |e| PlotError(title.to_string(), e.to_string())
}

/// HdrHistogram's percentile-spectrum axis: 1/(1−p) for a fraction `p`, capped so the 100th
/// percentile lands just past 99.999.
pub(crate) fn spectrum_x(p: f64) -> f64 {
    1.0 / (1.0 - p.min(0.999_99))
}

/// Latency (ms) against percentile on the spectrum axis, one line per series, both axes log.
pub(crate) fn spectrum_chart(title: &str, series: &[Series]) -> Result<String, PlotError> {
    let ticks = |x: &f64| {
        let p = format!("{:.4}", 100.0 * (1.0 - 1.0 / x));
        format!("{}%", p.trim_end_matches('0').trim_end_matches('.'))
    };
    line_chart(
        title,
        "percentile (log scale of 1/(1-p))",
        "latency (ms, log scale)",
        series,
        true,
        Some(&ticks),
    )
}

/// One named line.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// (x, y) points, x ascending.
    pub points: Vec<(f64, f64)>,
}

/// A line chart on a log x axis (and log y if `log_y`), as an SVG document.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
    x_ticks: Option<&dyn Fn(&f64) -> String>,
) -> Result<String, PlotError> {
    // Tick at every x the data has (rates, percentiles): a log axis alone labels only powers of 10.
    let mut keys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    keys.sort_by(f64::total_cmp);
    keys.dedup();
    let err = err(title);
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if x0 > x1 {
        return Err(err(&"no data"));
    }
    let x0 = x0.max(1e-9);
    let x1 = if x1 > x0 { x1 * 1.15 } else { x0 * 2.0 };
    let (y0, y1) = if log_y {
        (y0.max(1e-3) / 1.5, y1.max(1e-3) * 1.5)
    } else {
        (y0.min(0.0), if y1 > 0.0 { y1 * 1.1 } else { 1.0 })
    };
    svg_page((900, 520), title, |root| {
        let mut b = frame(root, title, 70);
        b.x_label_area_size(48);
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart;
                let mut mesh = chart.configure_mesh();
                axes(&mut mesh, x_label, y_label);
                let plain = |x: &f64| format!("{x:.0}");
                match x_ticks {
                    Some(f) => mesh.x_label_formatter(f),
                    None => mesh.x_label_formatter(&plain),
                };
                mesh.x_labels(keys.len().max(2));
                mesh.draw().map_err(|e| err(&e))?;
                for (i, s) in series.iter().enumerate() {
                    let color = COLORS[i % COLORS.len()];
                    chart
                        .draw_series(LineSeries::new(
                            s.points.iter().copied(),
                            color.stroke_width(2),
                        ))
                        .map_err(|e| err(&e))?
                        .label(s.name.clone())
                        .legend(swatch(color));
                    chart
                        .draw_series(s.points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                        .map_err(|e| err(&e))?;
                }
                let corner = if log_y {
                    SeriesLabelPosition::UpperLeft
                } else {
                    SeriesLabelPosition::LowerRight
                };
                legend(&mut chart, title, corner)?;
            }};
        }
        if log_y {
            draw!(
                b.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
                    .map_err(|e| err(&e))?
            );
        } else {
            draw!(
                b.build_cartesian_2d((x0..x1).log_scale(), y0..y1)
                    .map_err(|e| err(&e))?
            );
        }
        Ok(())
    })
}

/// The legend box, in `corner`, as every chart draws it.
pub(crate) fn legend<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    title: &str,
    corner: SeriesLabelPosition,
) -> Result<(), PlotError>
where
    DB: DrawingBackend + 'a,
    X: plotters::coord::ranged1d::Ranged,
    Y: plotters::coord::ranged1d::Ranged,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(corner)
        .draw()
        .map_err(|x| err(title)(&x))
}

/// The bench's plots: `(file name, SVG)`.
pub fn bench_plots(r: &BenchReport) -> Result<Vec<(String, String)>, PlotError> {
    let mut out = Vec::new();
    let protocols: std::collections::BTreeSet<&str> =
        r.points.iter().map(|p| p.protocol.as_str()).collect();
    for proto in protocols {
        for (q, label) in [("p50", "P50"), ("p99", "P99")] {
            let mut series = Vec::new();
            let mut configs: Vec<&str> = r
                .added
                .iter()
                .filter(|a| a.protocol == proto)
                .map(|a| a.config.as_str())
                .collect();
            configs.dedup();
            for c in configs {
                // Past saturation the added latency is queueing, not the proxy's cost, and one
                // such point would flatten every other line: plot sustained rates only.
                let points = r
                    .added
                    .iter()
                    .filter(|a| a.protocol == proto && a.config == c)
                    .filter(|a| {
                        r.points.iter().any(|p| {
                            p.config == a.config
                                && p.protocol == a.protocol
                                && p.load.rate_rps == a.rate_rps
                                && p.load.sustained()
                        })
                    })
                    .map(|a| {
                        let us = if q == "p50" { a.p50_us } else { a.p99_us };
                        (a.rate_rps, us as f64)
                    })
                    .collect::<Vec<_>>();
                if points.is_empty() {
                    continue;
                }
                series.push(Series {
                    name: c.to_string(),
                    points,
                });
            }
            if series.is_empty() {
                continue;
            }
            out.push((
                format!("added-{q}-{proto}.svg"),
                line_chart(
                    &format!("Added {label} latency over direct, {proto} (sustained rates only)"),
                    "request rate (requests/s, log scale)",
                    &format!("added {label} latency (µs)"),
                    &series,
                    false,
                    None,
                )?,
            ));
        }
        // Percentile spectrum at the rate nearest 2,000 rps.
        let rate = r
            .points
            .iter()
            .filter(|p| p.protocol == proto)
            .map(|p| p.load.rate_rps)
            .min_by(|a, b| (a - 2000.0).abs().total_cmp(&(b - 2000.0).abs()));
        let Some(rate) = rate else { continue };
        let series: Vec<Series> = r
            .points
            .iter()
            .filter(|p| p.protocol == proto && p.load.rate_rps == rate && !p.spectrum.is_empty())
            .map(|p| Series {
                name: p.config.clone(),
                points: p
                    .spectrum
                    .iter()
                    .map(|[pct, us]| (spectrum_x(*pct), (*us).max(1.0) / 1000.0))
                    .collect(),
            })
            .collect();
        if !series.is_empty() {
            out.push((
                format!("spectrum-{proto}-{}.svg", rate as u64),
                spectrum_chart(
                    &format!("Latency by percentile, {proto}, {rate} rps"),
                    &series,
                )?,
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{AddedLatency, BenchPoint, LoadStats};

    #[test]
    fn bench_plots_have_units_legends_and_every_configuration() {
        let mut r = BenchReport::default();
        for (config, extra) in [("direct", 0u64), ("meshsim-1hop", 150), ("nginx", 110)] {
            for rate in [500.0, 2000.0, 8000.0] {
                r.points.push(BenchPoint {
                    config: config.into(),
                    protocol: "http1".into(),
                    load: LoadStats {
                        rate_rps: rate,
                        achieved_rps: rate,
                        due: 1000,
                        ok: 1000,
                        p99_us: 900,
                        ..LoadStats::default()
                    },
                    spectrum: vec![[0.5, 200.0 + extra as f64], [0.99, 900.0], [0.999, 3000.0]],
                    ..BenchPoint::default()
                });
                if extra > 0 {
                    r.added.push(AddedLatency {
                        config: config.into(),
                        protocol: "http1".into(),
                        rate_rps: rate,
                        p50_us: extra as i64,
                        p99_us: 3 * extra as i64,
                        p999_us: 0,
                    });
                }
            }
        }
        let plots = bench_plots(&r).unwrap();
        let names: Vec<&str> = plots.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "added-p50-http1.svg",
                "added-p99-http1.svg",
                "spectrum-http1-2000.svg"
            ]
        );
        let (_, added) = &plots[0];
        assert!(added.starts_with("<svg"));
        for text in [
            "request rate (requests/s, log scale)",
            "added P50 latency (µs)",
            "meshsim-1hop",
            "nginx",
        ] {
            assert!(added.contains(text), "{text} missing");
        }
        let (_, spectrum) = &plots[2];
        for text in ["latency (ms, log scale)", "direct", "meshsim-1hop"] {
            assert!(spectrum.contains(text), "{text} missing");
        }
    }
}
