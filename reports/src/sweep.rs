//! What a sweep (`meshsim sweep`) writes: one [`SweepRecord`] per seed as a line of
//! `records.jsonl`, and a [`SweepSummary`] of every metric across the seeds. Plain data, as the
//! rest of this crate; the binary runs the seeds, the gate reads the records.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::Verdict;
use crate::stats::Spread;

/// One seed's run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SweepRecord {
    /// [`crate::model::SCHEMA_VERSION`] at the time of writing.
    pub schema_version: u32,
    /// Scenario name.
    pub scenario: String,
    /// SHA-256 of the scenario file.
    pub scenario_hash: String,
    /// The commit meshsim was built from (`unknown` outside a git checkout).
    pub commit: String,
    /// The seed.
    pub seed: u64,
    /// Pass or fail.
    pub verdict: Verdict,
    /// The assertions that failed, as written in the scenario.
    pub failed_assertions: Vec<String>,
    /// Every metric of the run's report, by [`crate::metrics`] name.
    pub metrics: BTreeMap<String, f64>,
    /// The command that runs this seed again.
    pub repro: String,
    /// In a swarm sweep, the value each `[swarm]` entry drew for this seed (field → value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub drawn: BTreeMap<String, String>,
}

/// Every metric across a sweep's seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SweepSummary {
    /// [`crate::model::SCHEMA_VERSION`] at the time of writing.
    pub schema_version: u32,
    /// What produced it: `sweep`.
    pub kind: String,
    /// Scenario name.
    pub scenario: String,
    /// SHA-256 of the scenario file.
    pub scenario_hash: String,
    /// Seeds run, ascending.
    pub seeds: Vec<u64>,
    /// Seeds whose verdict was fail, ascending.
    pub failing_seeds: Vec<u64>,
    /// The spread of each metric over the seeds that reported it.
    pub metrics: BTreeMap<String, Spread>,
}

/// The headline metrics the Markdown summary and the plots show, when present.
pub const KEY_METRICS: &[&str] = &[
    "mesh.success_ratio",
    "mesh.latency.p50_ms",
    "mesh.latency.p99_ms",
    "mesh.latency.p999_ms",
    "overhead.p50_ms",
    "overhead.p99_ms",
    "mesh.failed",
    "mesh.storms",
];

impl SweepSummary {
    /// The summary of `records` (any order; they are sorted by seed, so shards merged in any
    /// order give the same bytes). `None` when there are none.
    pub fn of(records: &[SweepRecord]) -> Option<Self> {
        let mut recs: Vec<&SweepRecord> = records.iter().collect();
        recs.sort_by_key(|r| r.seed);
        let first = recs.first()?;
        let mut values: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for r in &recs {
            for (k, v) in &r.metrics {
                values.entry(k).or_default().push(*v);
            }
        }
        Some(Self {
            schema_version: crate::model::SCHEMA_VERSION,
            kind: "sweep".into(),
            scenario: first.scenario.clone(),
            scenario_hash: first.scenario_hash.clone(),
            seeds: recs.iter().map(|r| r.seed).collect(),
            failing_seeds: recs
                .iter()
                .filter(|r| r.verdict == Verdict::Fail)
                .map(|r| r.seed)
                .collect(),
            metrics: values
                .into_iter()
                .filter_map(|(k, v)| Spread::of(&v).map(|s| (k.to_string(), s)))
                .collect(),
        })
    }

    /// Markdown: verdict counts, the headline metrics with their intervals, failing seeds with
    /// the command that reproduces each.
    pub fn markdown(&self, records: &[SweepRecord]) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Sweep: {} — {} of {} seeds failed\n",
            self.scenario,
            self.failing_seeds.len(),
            self.seeds.len()
        );
        let _ = writeln!(
            s,
            "Seeds {}..={} ({} runs). Intervals are 95% Student-t intervals of the mean over seeds.\n",
            self.seeds.first().copied().unwrap_or(0),
            self.seeds.last().copied().unwrap_or(0),
            self.seeds.len()
        );
        let _ = writeln!(
            s,
            "| metric | mean | 95% interval | sd | min | median | max |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
        for k in KEY_METRICS {
            if let Some(m) = self.metrics.get(*k) {
                let ci = if m.ci95.is_finite() {
                    format!("± {}", crate::summary::number(m.ci95))
                } else {
                    "—".into()
                };
                let n = crate::summary::number;
                let _ = writeln!(
                    s,
                    "| {k} | {} | {ci} | {} | {} | {} | {} |",
                    n(m.mean),
                    n(m.sd),
                    n(m.min),
                    n(m.p50),
                    n(m.max)
                );
            }
        }
        if !self.failing_seeds.is_empty() {
            let _ = writeln!(s, "\n## Failing seeds\n");
            let mut failing: Vec<&SweepRecord> = records
                .iter()
                .filter(|r| r.verdict == Verdict::Fail)
                .collect();
            failing.sort_by_key(|r| r.seed);
            for r in failing {
                let _ = writeln!(
                    s,
                    "- seed {}: {} — `{}`",
                    r.seed,
                    if r.failed_assertions.is_empty() {
                        "books did not balance or requests were left in flight".to_string()
                    } else {
                        r.failed_assertions.join("; ")
                    },
                    r.repro
                );
            }
        }
        s
    }
}
