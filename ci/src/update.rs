//! `--update`: make the current runs the new baselines, on purpose, and say what that changed.
//! Only the files the gate reads are copied (`report.json`, or a sweep's `records.jsonl` and
//! `summary.json`), so a baseline folder stays small enough to commit.

use std::path::{Path, PathBuf};

use crate::compare::{Judgement, Outcome};
use crate::error::GateError;
use crate::input::Kind;

/// Files of a source the gate needs, by kind.
fn files(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Simulation | Kind::Bench => &["report.json"],
        Kind::Sweep => &["records.jsonl", "summary.json"],
    }
}

/// Copy each compared current run over its baseline (a new scenario goes to
/// `baseline_root/<scenario>/`, or to `baseline_root` itself when the current side is a single
/// run). Returns one line per scenario saying what changed.
pub fn apply(
    outcome: &Outcome,
    baseline_root: &Path,
    single: bool,
) -> Result<Vec<String>, GateError> {
    let mut said = Vec::new();
    for sc in &outcome.scenarios {
        let dest: PathBuf = if !sc.baseline_dir.as_os_str().is_empty() {
            sc.baseline_dir.clone()
        } else if single {
            baseline_root.to_path_buf()
        } else {
            baseline_root.join(&sc.scenario)
        };
        std::fs::create_dir_all(&dest).map_err(|e| GateError::Io {
            path: dest.clone(),
            error: e.to_string(),
        })?;
        for f in files(sc.kind) {
            let from = sc.current_dir.join(f);
            if from.is_file() {
                std::fs::copy(&from, dest.join(f)).map_err(|e| GateError::Io {
                    path: dest.join(f),
                    error: e.to_string(),
                })?;
            }
        }
        let moved: Vec<String> = sc
            .rows
            .iter()
            .filter(|r| {
                !matches!(r.judgement, Judgement::Unchanged)
                    && r.baseline.as_ref().map(|v| v.mean()) != r.current.as_ref().map(|v| v.mean())
            })
            .map(|r| r.metric.clone())
            .collect();
        said.push(if sc.baseline_dir.as_os_str().is_empty() {
            format!("{}: new baseline in {}", sc.scenario, dest.display())
        } else if moved.is_empty() {
            format!("{}: unchanged", sc.scenario)
        } else {
            format!(
                "{}: {} metrics changed ({}{})",
                sc.scenario,
                moved.len(),
                moved.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
                if moved.len() > 5 { ", …" } else { "" }
            )
        });
    }
    Ok(said)
}
