//! The report model: one stable, versioned data model for simulation runs (and, later, sweeps and
//! benches), written as `report.json`, plus the Markdown summary rendered from it.
//!
//! This crate is plain data and rendering; it runs nothing. `sim` fills a [`Report`]; `ci` will read
//! one. Every map is a `BTreeMap` so the JSON is byte-for-byte reproducible for a given run.
//!
//! # Layout
//! - [`model`]: the report types (schema version [`model::SCHEMA_VERSION`]).
//! - [`summary`]: `summary.md`, verdict first, fit for a terminal or a pull-request comment.
//! - [`plot`]: SVG plots (plotters) and their PNGs (resvg).
//! - [`html`]: `index.html`, one self-contained page.
//! - [`render`]: all of the above into a run directory, from a report alone.
//! - [`diff`]: two runs side by side.
//! - [`stats`]: one metric's spread across runs (mean, 95% t-interval).
//! - [`sweep`]: a sweep's per-seed records and its summary.
//! - [`metrics`]: a report's numbers under stable dotted names, what the gate and sweeps compare.
//! - [`schema`]: the JSON Schema of `report.json` (and of the bench's), generated from the types.
//!
//! # Library choices
//! plotters for charts (pure Rust, SVG without font files); resvg for PNG (renders exactly the
//! SVG, pure Rust); pulldown-cmark to turn `summary.md` into the page's HTML (CommonMark with
//! tables); schemars to derive the JSON Schema from the very types serde writes, so the schema
//! cannot drift from the writer (a test compares it with the committed file).
#![forbid(unsafe_code)]

pub mod bench;
pub mod diff;
pub mod html;
pub mod metrics;
pub mod model;
pub mod plot;
pub mod render;
pub mod schema;
pub mod stats;
pub mod summary;
pub mod sweep;

pub use model::*;

/// Serialise a report as the bytes of `report.json` (pretty, trailing newline).
pub fn to_json(report: &Report) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("the report model always serialises");
    s.push('\n');
    s
}
