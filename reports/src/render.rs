//! Everything a run directory holds that derives from `report.json`: `summary.md`, the plots
//! (`plots/*.svg` and `plots/*.png`) and `index.html`. `meshsim run` writes them after a run;
//! `meshsim report` writes them again from a `report.json` alone, so a report from an older run
//! (or another machine) renders with today's renderer.

use std::path::{Path, PathBuf};

use crate::html::{PagePlot, index_html};
use crate::model::Report;
use crate::plot::{PngError, png_from_svg, run_plots};

/// Why a run directory could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// Writing or reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// `report.json` did not parse as a report.
    #[error("{path}: not a meshsim report: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde said.
        source: serde_json::Error,
    },
    /// A plot could not be drawn.
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
}

/// What was written.
#[derive(Debug, Default)]
pub struct Rendered {
    /// Every file written, in order.
    pub files: Vec<PathBuf>,
    /// Why PNGs were skipped, if they were (the SVGs are always written).
    pub png_skipped: Option<String>,
}

fn write(path: PathBuf, bytes: &[u8], out: &mut Rendered) -> Result<(), RenderError> {
    std::fs::write(&path, bytes).map_err(|source| RenderError::Io {
        path: path.clone(),
        source,
    })?;
    out.files.push(path);
    Ok(())
}

/// Read a `report.json`.
pub fn read_report(path: &Path) -> Result<Report, RenderError> {
    let text = std::fs::read_to_string(path).map_err(|source| RenderError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| RenderError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Write `summary.md`, the plots and `index.html` for `report` into `dir` (which must exist).
/// `report.json` itself is the caller's: a run writes it, a re-render leaves it as it is.
pub fn render_dir(report: &Report, dir: &Path) -> Result<Rendered, RenderError> {
    let mut out = Rendered::default();
    let summary = crate::summary::render(report);
    write(dir.join("summary.md"), summary.as_bytes(), &mut out)?;
    let plots = run_plots(report)?;
    let plot_dir = dir.join("plots");
    std::fs::create_dir_all(&plot_dir).map_err(|source| RenderError::Io {
        path: plot_dir.clone(),
        source,
    })?;
    for (name, svg) in &plots {
        write(plot_dir.join(name), svg.as_bytes(), &mut out)?;
    }
    for (name, svg) in &plots {
        match png_from_svg(svg, 1.5) {
            Ok(png) => write(plot_dir.join(name.replace(".svg", ".png")), &png, &mut out)?,
            Err(e @ PngError::NoFonts) => {
                out.png_skipped = Some(e.to_string());
                break;
            }
            Err(e) => {
                out.png_skipped = Some(format!("{name}: {e}"));
            }
        }
    }
    let page_plots: Vec<PagePlot> = plots
        .into_iter()
        .map(|(file, svg)| PagePlot { file, svg })
        .collect();
    let page = index_html(report, &summary, &page_plots);
    write(dir.join("index.html"), page.as_bytes(), &mut out)?;
    Ok(out)
}
