//! Regression gating for CI (`meshsim gate`): a baseline and a current run, sweep or bench,
//! compared metric by metric under per-metric rules, with a verdict a CI job can act on.
//!
//! Simulated metrics are deterministic for a seed, so one run is gated on its values exactly (or
//! within a rule's tolerance); a sweep's seeds are independent replications, so a change across
//! a sweep counts only when the 95% intervals of the means separate. Real-socket benches are
//! gated only on ratios against the direct path measured in the same run. This crate reads the
//! `reports` model and nothing else; it runs nothing.
//!
//! # Layout
//! - [`config`]: the rules (`ci/gate.toml` is the default): pattern, which way is better,
//!   tolerance, what an absent value means.
//! - [`input`]: a folder as [`input::Source`]s (run, sweep, bench, or a folder of them).
//! - [`compare`]: pairing by scenario, compatibility checks, one [`compare::Judgement`] per metric.
//! - [`output`]: Markdown, JSON verdict, JUnit XML, GitHub annotations.
//! - [`update`]: rewriting baselines on purpose.
//! - [`error`]: bad input (exit status 2).
#![forbid(unsafe_code)]

pub mod compare;
pub mod config;
pub mod error;
pub mod input;
pub mod output;
pub mod update;

pub use compare::{Judgement, Outcome};
pub use config::Config;
pub use error::GateError;
