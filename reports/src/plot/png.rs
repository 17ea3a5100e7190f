//! SVG to PNG with resvg (pure Rust: usvg parses, tiny-skia rasterises), so a PNG is exactly
//! its SVG and needs no browser or ImageMagick. Text needs a font: the system's fonts are
//! loaded once and the first common sans-serif family present (DejaVu Sans, Liberation Sans,
//! Noto Sans, …) stands for `sans-serif`. With no font at all the PNG is refused rather than
//! written without its labels.

use std::sync::{Arc, OnceLock};

use resvg::{tiny_skia, usvg};

/// Why an SVG could not be rasterised.
#[derive(Debug, thiserror::Error)]
pub enum PngError {
    /// The machine has no fonts; axis labels would be missing.
    #[error("no system fonts found, so plot labels cannot be drawn (install fonts-dejavu-core)")]
    NoFonts,
    /// The SVG did not parse.
    #[error("reading the SVG: {0}")]
    Svg(String),
    /// The size was zero or too large.
    #[error("an SVG of {0}×{1} pixels cannot be rasterised")]
    Size(u32, u32),
    /// PNG encoding failed.
    #[error("encoding the PNG: {0}")]
    Encode(String),
}

const SANS: [&str; 6] = [
    "DejaVu Sans",
    "Liberation Sans",
    "Noto Sans",
    "Arial",
    "Helvetica",
    "FreeSans",
];

fn fonts() -> Option<Arc<usvg::fontdb::Database>> {
    static DB: OnceLock<Option<Arc<usvg::fontdb::Database>>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = usvg::fontdb::Database::new();
        db.load_system_fonts();
        if db.is_empty() {
            return None;
        }
        let family = SANS
            .iter()
            .find(|name| {
                db.faces()
                    .any(|f| f.families.iter().any(|(n, _)| n == *name))
            })
            .map(|s| s.to_string())
            .or_else(|| {
                db.faces()
                    .next()
                    .and_then(|f| f.families.first().map(|(n, _)| n.clone()))
            })?;
        db.set_sans_serif_family(family);
        Some(Arc::new(db))
    })
    .clone()
}

/// Rasterise `svg` at `scale` (1.0 = the SVG's own pixel size) to PNG bytes.
pub fn png_from_svg(svg: &str, scale: f32) -> Result<Vec<u8>, PngError> {
    let db = fonts().ok_or(PngError::NoFonts)?;
    let opt = usvg::Options {
        fontdb: db,
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_str(svg, &opt).map_err(|e| PngError::Svg(e.to_string()))?;
    let size = tree.size();
    let (w, h) = (
        (size.width() * scale).ceil() as u32,
        (size.height() * scale).ceil() as u32,
    );
    let mut pixmap = tiny_skia::Pixmap::new(w, h).ok_or(PngError::Size(w, h))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| PngError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_rasterises_with_its_text() {
        let with_text = r#"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="60"><text x="10" y="40" font-family="sans-serif" font-size="30">latency</text></svg>"#;
        let without = r#"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="60"></svg>"#;
        let (a, b) = match (png_from_svg(with_text, 1.0), png_from_svg(without, 1.0)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(PngError::NoFonts), _) => {
                // Under CI (`.ci/run` sets MESHSIM_REQUIRE_TOOLS) a missing font fails.
                assert!(
                    std::env::var_os("MESHSIM_REQUIRE_TOOLS").is_none(),
                    "MESHSIM_REQUIRE_TOOLS is set but this machine has no fonts"
                );
                eprintln!("SKIPPED: this machine has no fonts (install fonts-dejavu-core)");
                return;
            }
            (Err(e), _) | (_, Err(e)) => panic!("{e}"),
        };
        assert!(a.starts_with(b"\x89PNG\r\n\x1a\n"));
        // Glyphs drawn: the text's PNG holds more than a blank white page.
        assert!(a.len() > b.len() + 100, "{} vs {}", a.len(), b.len());
        assert!(matches!(png_from_svg("<svg", 1.0), Err(PngError::Svg(_))));
    }
}
