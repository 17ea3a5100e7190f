//! What the gate reads: a run's `--out` folder (`report.json` of kind `simulation`), a bench's
//! (`report.json` of kind `bench`), a sweep's (`records.jsonl`), or a folder of such folders.
//! Each becomes a [`Source`]: the scenario it is of and its metrics, one sample per seed.

use std::path::{Path, PathBuf};

use reports::Report;
use reports::bench::BenchReport;
use reports::metrics::{self, Metrics};
use reports::sweep::SweepRecord;

use crate::error::GateError;

/// What produced a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One simulated run (one seed).
    Simulation,
    /// A sweep: one simulated run per seed.
    Sweep,
    /// A real-socket bench.
    Bench,
}

impl Kind {
    /// As written in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Simulation => "simulation",
            Self::Sweep => "sweep",
            Self::Bench => "bench",
        }
    }
}

/// One run, sweep or bench, ready to compare.
#[derive(Clone, Debug)]
pub struct Source {
    /// Scenario name (`bench` for a bench).
    pub scenario: String,
    /// The folder.
    pub dir: PathBuf,
    /// The file the metrics came from.
    pub file: PathBuf,
    /// What produced it.
    pub kind: Kind,
    /// Report schema version.
    pub schema_version: u32,
    /// SHA-256 of the scenario file (simulations and sweeps).
    pub scenario_hash: Option<String>,
    /// Seeds, ascending (empty for a bench).
    pub seeds: Vec<u64>,
    /// Metrics, one map per seed (one for a run or a bench).
    pub samples: Vec<Metrics>,
}

/// Every source in `dir`: the folder itself if it is a run, sweep or bench, else each
/// subfolder that is one, in name order. At least one, and scenario names unique.
pub fn load(dir: &Path) -> Result<Vec<Source>, GateError> {
    if !dir.is_dir() {
        return Err(GateError::Io {
            path: dir.to_path_buf(),
            error: "not a folder".into(),
        });
    }
    if let Some(s) = load_one(dir)? {
        return Ok(vec![s]);
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    let mut out: Vec<Source> = Vec::new();
    for d in subdirs {
        if let Some(s) = load_one(&d)? {
            if let Some(other) = out.iter().find(|o| o.scenario == s.scenario) {
                return Err(GateError::Malformed {
                    path: d,
                    line: None,
                    message: format!(
                        "scenario `{}` is also in {}; expected one run per scenario in a folder",
                        s.scenario,
                        other.dir.display()
                    ),
                });
            }
            out.push(s);
        }
    }
    if out.is_empty() {
        return Err(GateError::NothingToGate {
            path: dir.to_path_buf(),
        });
    }
    Ok(out)
}

fn io(path: &Path, e: std::io::Error) -> GateError {
    GateError::Io {
        path: path.to_path_buf(),
        error: e.to_string(),
    }
}

fn malformed(path: &Path, line: Option<usize>, message: impl Into<String>) -> GateError {
    GateError::Malformed {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

fn load_one(dir: &Path) -> Result<Option<Source>, GateError> {
    let records = dir.join("records.jsonl");
    if records.is_file() {
        return load_sweep(dir, &records).map(Some);
    }
    let report = dir.join("report.json");
    if !report.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&report).map_err(|e| io(&report, e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| malformed(&report, Some(e.line()), e.to_string()))?;
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    let schema_version = value
        .get("schema_version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| {
            malformed(
                &report,
                None,
                "no `schema_version`; expected a meshsim report",
            )
        })? as u32;
    let expected = match kind {
        "bench" => reports::bench::BENCH_SCHEMA_VERSION,
        _ => reports::SCHEMA_VERSION,
    };
    if schema_version != expected {
        return Err(malformed(
            &report,
            None,
            format!("schema version {schema_version}; this meshsim reads version {expected}"),
        ));
    }
    match kind {
        "simulation" => {
            let r: Report = serde_json::from_value(value)
                .map_err(|e| malformed(&report, None, format!("not a simulation report: {e}")))?;
            Ok(Some(Source {
                scenario: r.run.scenario.clone(),
                dir: dir.to_path_buf(),
                file: report,
                kind: Kind::Simulation,
                schema_version,
                scenario_hash: Some(r.run.scenario_hash.clone()),
                seeds: vec![r.run.seed],
                samples: vec![metrics::of_report(&r)],
            }))
        }
        "bench" => {
            let b: BenchReport = serde_json::from_value(value)
                .map_err(|e| malformed(&report, None, format!("not a bench report: {e}")))?;
            Ok(Some(Source {
                scenario: "bench".into(),
                dir: dir.to_path_buf(),
                file: report,
                kind: Kind::Bench,
                schema_version,
                scenario_hash: None,
                seeds: Vec::new(),
                samples: vec![metrics::of_bench(&b)],
            }))
        }
        other => Err(malformed(
            &report,
            None,
            format!("kind `{other}`; expected `simulation` or `bench`"),
        )),
    }
}

fn load_sweep(dir: &Path, file: &Path) -> Result<Source, GateError> {
    let text = std::fs::read_to_string(file).map_err(|e| io(file, e))?;
    let mut records: Vec<SweepRecord> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // A sweep stopped mid-write (Ctrl-C) can leave a partial last line; anything else bad
        // is an error.
        let rec: SweepRecord = match serde_json::from_str(line) {
            Ok(r) => r,
            Err(_) if i + 1 == text.lines().count() && !text.ends_with('\n') => break,
            Err(e) => return Err(malformed(file, Some(i + 1), e.to_string())),
        };
        if let Some(first) = records.first()
            && (first.scenario != rec.scenario || first.scenario_hash != rec.scenario_hash)
        {
            return Err(malformed(
                file,
                Some(i + 1),
                format!(
                    "record of `{}` (hash {}) in a sweep of `{}` (hash {}); expected one scenario per sweep",
                    rec.scenario, rec.scenario_hash, first.scenario, first.scenario_hash
                ),
            ));
        }
        if rec.schema_version != reports::SCHEMA_VERSION {
            return Err(malformed(
                file,
                Some(i + 1),
                format!(
                    "schema version {}; this meshsim reads version {}",
                    rec.schema_version,
                    reports::SCHEMA_VERSION
                ),
            ));
        }
        records.push(rec);
    }
    records.sort_by_key(|r| r.seed);
    records.dedup_by_key(|r| r.seed);
    let first = records
        .first()
        .ok_or_else(|| malformed(file, None, "no records; expected one JSON line per seed"))?;
    Ok(Source {
        scenario: first.scenario.clone(),
        dir: dir.to_path_buf(),
        file: file.to_path_buf(),
        kind: Kind::Sweep,
        schema_version: first.schema_version,
        scenario_hash: Some(first.scenario_hash.clone()),
        seeds: records.iter().map(|r| r.seed).collect(),
        samples: records.into_iter().map(|r| r.metrics).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seed: u64) -> String {
        let r = SweepRecord {
            schema_version: reports::SCHEMA_VERSION,
            scenario: "s".into(),
            scenario_hash: "h".into(),
            commit: "c".into(),
            seed,
            verdict: reports::Verdict::Pass,
            failed_assertions: Vec::new(),
            metrics: [("mesh.latency.p99_ms".to_string(), seed as f64)].into(),
            repro: String::new(),
            drawn: Default::default(),
        };
        serde_json::to_string(&r).unwrap()
    }

    /// A sweep killed mid-write (Ctrl-C) leaves a partial last line: the complete records still
    /// load. A bad line anywhere else is an error naming its line.
    #[test]
    fn an_interrupted_sweeps_records_load_and_a_corrupt_one_is_named() {
        let t = tempfile::tempdir().unwrap();
        let full = format!("{}\n{}\n", record(2), record(1));
        let cut = &record(3)[..40];
        std::fs::write(t.path().join("records.jsonl"), format!("{full}{cut}")).unwrap();
        let s = load(t.path()).unwrap();
        assert_eq!((s[0].kind, s[0].seeds.clone()), (Kind::Sweep, vec![1, 2]));
        std::fs::write(t.path().join("records.jsonl"), format!("{cut}\n{full}")).unwrap();
        let e = load(t.path()).unwrap_err().to_string();
        assert!(e.contains("records.jsonl, line 1"), "{e}");
    }
}
