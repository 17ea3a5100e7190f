//! Regression gating for CI: compares a run's `report.json` against a baseline (simulated metrics
//! exactly or with tight tolerances; real-socket metrics as ratios against the in-run baseline),
//! writes a Markdown table fit for a pull-request comment and fails on regression.
//!
//! **Status:** empty seam; the gating issue fills it. It will read only the `reports` model.
//! The CI workflow itself is `.ci/run` at the repository root.
#![forbid(unsafe_code)]
