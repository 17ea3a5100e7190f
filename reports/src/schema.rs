//! The JSON Schemas of `report.json`: generated from the report types by schemars, committed as
//! `reports/schema/report.schema.json` and `reports/schema/bench-report.schema.json` so that
//! tools outside Rust can validate a report. `reports/SCHEMA.md` explains the fields and the
//! versioning rule; the tests in `reports/tests/schema.rs` keep the committed files equal to
//! what the types generate and validate every report we write against them.

use crate::bench::BenchReport;
use crate::model::Report;

fn pretty(schema: schemars::Schema) -> String {
    let mut s = serde_json::to_string_pretty(&schema).expect("a schema always serialises");
    s.push('\n');
    s
}

/// The JSON Schema (draft 2020-12) of a simulation `report.json`.
pub fn report_schema() -> String {
    pretty(schemars::schema_for!(Report))
}

/// The JSON Schema (draft 2020-12) of a bench `report.json`.
pub fn bench_schema() -> String {
    pretty(schemars::schema_for!(BenchReport))
}

/// `reports/schema/report.schema.json` as committed (what outside tools validate against).
pub const COMMITTED_REPORT_SCHEMA: &str = include_str!("../schema/report.schema.json");

/// `reports/schema/bench-report.schema.json` as committed.
pub const COMMITTED_BENCH_SCHEMA: &str = include_str!("../schema/bench-report.schema.json");
