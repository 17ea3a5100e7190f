//! The report model: one stable, versioned data model for simulation runs (and, later, sweeps and
//! benches), written as `report.json`, plus the Markdown summary rendered from it.
//!
//! This crate is plain data and rendering; it runs nothing. `sim` fills a [`Report`]; `ci` will read
//! one. Every map is a `BTreeMap` so the JSON is byte-for-byte reproducible for a given run.
//!
//! # Layout
//! - [`model`]: the report types (schema version [`model::SCHEMA_VERSION`]).
//! - [`summary`]: `summary.md`, verdict first, fit for a terminal or a pull-request comment.
#![forbid(unsafe_code)]

pub mod bench;
pub mod model;
pub mod plot;
pub mod summary;

pub use model::*;

/// Serialise a report as the bytes of `report.json` (pretty, trailing newline).
pub fn to_json(report: &Report) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("the report model always serialises");
    s.push('\n');
    s
}
