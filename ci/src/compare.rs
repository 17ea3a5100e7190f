//! Baseline against current, metric by metric. Sources are paired by scenario name; each pair
//! must be of the same kind, schema and seeds. A metric on one seed is judged by its value; a
//! metric across a sweep's seeds by its mean, and it counts as changed only when the two 95%
//! intervals separate as well (seeds are independent replications, so that is the honest test).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use reports::stats::Spread;

use crate::config::{Better, Config, Missing, Rule};
use crate::error::GateError;
use crate::input::{Kind, Source};

/// The verdict on one metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Judgement {
    /// Moved the bad way beyond its tolerance.
    Regression,
    /// Moved the good way beyond its tolerance.
    Improvement,
    /// Within tolerance (or identical).
    Unchanged,
    /// No rule: shown, not gated.
    Info,
    /// Only in the current run.
    Added,
    /// Only in the baseline.
    Removed,
}

impl Judgement {
    /// As printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Regression => "regression",
            Self::Improvement => "improvement",
            Self::Unchanged => "unchanged",
            Self::Info => "info",
            Self::Added => "added",
            Self::Removed => "removed",
        }
    }
}

/// One side's value: a single run's, or the spread across a sweep's seeds.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// One run.
    One(f64),
    /// Several seeds.
    Spread(Spread),
}

impl Value {
    /// The value, or the mean across seeds.
    pub fn mean(&self) -> f64 {
        match self {
            Self::One(v) => *v,
            Self::Spread(s) => s.mean,
        }
    }

    /// One run's value, or a sweep's spread (even of one seed that reported it, whose interval
    /// is infinite, so it is never judged against a sweep on its mean alone).
    fn of(values: &[f64], sweep: bool) -> Option<Self> {
        match values {
            [] => None,
            [v] if !sweep => Some(Self::One(*v)),
            _ => Spread::of(values).map(Self::Spread),
        }
    }
}

/// One compared metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Metric name.
    pub metric: String,
    /// Baseline value.
    pub baseline: Option<Value>,
    /// Current value.
    pub current: Option<Value>,
    /// The verdict.
    pub judgement: Judgement,
    /// The rule that judged it (index in the configuration, and its pattern).
    pub rule: Option<(usize, String)>,
}

/// One scenario's comparison.
#[derive(Clone, Debug)]
pub struct ScenarioResult {
    /// Scenario name.
    pub scenario: String,
    /// What produced both sides.
    pub kind: Kind,
    /// The baseline's file.
    pub baseline: PathBuf,
    /// The current run's file.
    pub current: PathBuf,
    /// The current run's folder (what `--update` copies).
    pub current_dir: PathBuf,
    /// The baseline's folder.
    pub baseline_dir: PathBuf,
    /// The scenario file changed between the two (its hash differs).
    pub scenario_changed: bool,
    /// Every metric either side has, by name.
    pub rows: Vec<Row>,
}

impl ScenarioResult {
    /// Rows judged a regression.
    pub fn regressions(&self) -> impl Iterator<Item = &Row> {
        self.rows
            .iter()
            .filter(|r| r.judgement == Judgement::Regression)
    }
}

/// The whole gate's result.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Per scenario, in name order.
    pub scenarios: Vec<ScenarioResult>,
}

impl Outcome {
    /// Regressions in all scenarios.
    pub fn regressions(&self) -> usize {
        self.scenarios.iter().map(|s| s.regressions().count()).sum()
    }

    /// Whether the gate passes.
    pub fn passed(&self) -> bool {
        self.regressions() == 0
    }

    /// How many rows have `j`.
    pub fn count(&self, j: Judgement) -> usize {
        self.scenarios
            .iter()
            .flat_map(|s| &s.rows)
            .filter(|r| r.judgement == j)
            .count()
    }
}

/// Compare every scenario of `baseline` with the same scenario in `current` under `config`
/// (read from `config_file`, named in errors). With `allow_new`, a scenario only in `current`
/// is compared against nothing (every metric `added`), as `--update` needs.
pub fn compare(
    baseline: &[Source],
    current: &[Source],
    config: &Config,
    config_file: &Path,
    allow_new: bool,
) -> Result<Outcome, GateError> {
    for b in baseline {
        // --update replaces baselines on purpose; a scenario gone from the current side stays.
        if !allow_new && !current.iter().any(|c| c.scenario == b.scenario) {
            return Err(GateError::Unmatched {
                scenario: b.scenario.clone(),
                side: "baseline",
                path: b.dir.clone(),
            });
        }
    }
    let mut scenarios = Vec::new();
    for c in current {
        let b = baseline.iter().find(|b| b.scenario == c.scenario);
        let Some(b) = b else {
            if !allow_new {
                return Err(GateError::Unmatched {
                    scenario: c.scenario.clone(),
                    side: "current",
                    path: c.dir.clone(),
                });
            }
            scenarios.push(judge(None, c, config));
            continue;
        };
        let mismatch = |message: String| GateError::Mismatch {
            scenario: c.scenario.clone(),
            baseline: b.file.clone(),
            current: c.file.clone(),
            message,
        };
        // On purpose (--update), a new kind, schema or seed list replaces the old.
        if allow_new {
            scenarios.push(judge(Some(b), c, config));
            continue;
        }
        if b.kind != c.kind {
            return Err(mismatch(format!(
                "a {} against a {}; expected the same kind on both sides",
                b.kind.as_str(),
                c.kind.as_str()
            )));
        }
        if b.schema_version != c.schema_version {
            return Err(mismatch(format!(
                "report schema {} against {}; expected the same",
                b.schema_version, c.schema_version
            )));
        }
        if b.seeds != c.seeds {
            return Err(mismatch(format!(
                "seeds {} against {}; expected the same seeds (a simulation is compared seed for seed)",
                seeds(&b.seeds),
                seeds(&c.seeds)
            )));
        }
        scenarios.push(judge(Some(b), c, config));
    }
    scenarios.sort_by(|a, b| a.scenario.cmp(&b.scenario));
    // A rule must name something: a metric shape this meshsim writes, or a metric of these runs.
    let names: BTreeSet<&str> = baseline
        .iter()
        .chain(current)
        .flat_map(|s| s.samples.iter().flat_map(|m| m.keys().map(String::as_str)))
        .chain(reports::metrics::SHAPES.iter().copied())
        .collect();
    for r in &config.rules {
        if !names.iter().any(|n| crate::config::matches(&r.metric, n)) {
            return Err(GateError::UnknownMetric {
                file: config_file.to_path_buf(),
                pattern: r.metric.clone(),
            });
        }
    }
    Ok(Outcome { scenarios })
}

fn seeds(s: &[u64]) -> String {
    match s {
        [] => "none".into(),
        [one] => one.to_string(),
        [first, .., last] if (last - first) as usize + 1 == s.len() => format!("{first}..={last}"),
        _ => format!("{s:?}"),
    }
}

fn judge(b: Option<&Source>, c: &Source, config: &Config) -> ScenarioResult {
    let names: BTreeSet<&String> = b
        .iter()
        .flat_map(|b| b.samples.iter())
        .chain(&c.samples)
        .flat_map(|m| m.keys())
        .collect();
    let rows = names
        .into_iter()
        .map(|name| {
            let rule = config.rule_for(name);
            // Absent means zero under `missing = "zero"` (every seed that lacks it counts as 0);
            // otherwise only the seeds that report it count.
            let zero = rule.is_some_and(|(_, r)| r.missing == Missing::Zero);
            let column = |s: &Source| -> Vec<f64> {
                s.samples
                    .iter()
                    .filter_map(|m| m.get(name).copied().or(zero.then_some(0.0)))
                    .collect()
            };
            let baseline = b.and_then(|b| Value::of(&column(b), b.kind == Kind::Sweep));
            let current = Value::of(&column(c), c.kind == Kind::Sweep);
            let judgement = match (&baseline, &current, rule) {
                (None, _, _) => Judgement::Added,
                (_, None, _) => Judgement::Removed,
                (_, _, None) => Judgement::Info,
                (Some(bv), Some(cv), Some((_, r))) => verdict(bv, cv, r),
            };
            Row {
                metric: name.clone(),
                baseline,
                current,
                judgement,
                rule: rule.map(|(i, r)| (i, r.metric.clone())),
            }
        })
        .collect();
    ScenarioResult {
        scenario: c.scenario.clone(),
        kind: c.kind,
        baseline: b.map(|b| b.file.clone()).unwrap_or_default(),
        current: c.file.clone(),
        current_dir: c.dir.clone(),
        baseline_dir: b.map(|b| b.dir.clone()).unwrap_or_default(),
        scenario_changed: b.is_some_and(|b| b.scenario_hash != c.scenario_hash),
        rows,
    }
}

/// Judge one metric under its rule.
pub fn verdict(b: &Value, c: &Value, rule: &Rule) -> Judgement {
    let worse = match rule.better {
        Better::Lower => c.mean() - b.mean(),
        Better::Higher => b.mean() - c.mean(),
    };
    let tol = rule.tolerance(b.mean());
    if worse.abs() <= tol || worse == 0.0 {
        return Judgement::Unchanged;
    }
    // Across seeds, also the intervals must separate (in either direction).
    if let (Value::Spread(bs), Value::Spread(cs)) = (b, c)
        && !(cs.lo() > bs.hi() || cs.hi() < bs.lo())
    {
        return Judgement::Unchanged;
    }
    if worse > 0.0 {
        Judgement::Regression
    } else {
        Judgement::Improvement
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule(better: Better, abs: f64, rel: f64) -> Rule {
        Rule {
            metric: "m".into(),
            better,
            abs,
            rel,
            missing: Missing::Skip,
        }
    }

    #[test]
    fn one_run_is_judged_by_its_value_and_tolerance() {
        let lower = rule(Better::Lower, 0.0, 0.05);
        assert_eq!(
            verdict(&Value::One(100.0), &Value::One(105.0), &lower),
            Judgement::Unchanged
        );
        assert_eq!(
            verdict(&Value::One(100.0), &Value::One(105.1), &lower),
            Judgement::Regression
        );
        assert_eq!(
            verdict(&Value::One(100.0), &Value::One(94.0), &lower),
            Judgement::Improvement
        );
        let exact = rule(Better::Higher, 0.0, 0.0);
        assert_eq!(
            verdict(&Value::One(0.99), &Value::One(0.99), &exact),
            Judgement::Unchanged
        );
        assert_eq!(
            verdict(&Value::One(0.99), &Value::One(0.98), &exact),
            Judgement::Regression
        );
        assert_eq!(
            verdict(&Value::One(0.98), &Value::One(0.99), &exact),
            Judgement::Improvement
        );
    }

    #[test]
    fn across_seeds_a_change_counts_only_when_the_intervals_separate() {
        let lower = rule(Better::Lower, 0.0, 0.0);
        let s = |v: &[f64]| Value::Spread(Spread::of(v).unwrap());
        // Means 10 and 11 with wide spread: the intervals overlap.
        assert_eq!(
            verdict(&s(&[5.0, 10.0, 15.0]), &s(&[6.0, 11.0, 16.0]), &lower),
            Judgement::Unchanged
        );
        // Tight spread: they separate.
        assert_eq!(
            verdict(&s(&[9.9, 10.0, 10.1]), &s(&[10.9, 11.0, 11.1]), &lower),
            Judgement::Regression
        );
    }

    proptest! {
        /// Swapping the sides swaps a regression and an improvement, and identical values are
        /// unchanged, whatever the rule.
        #[test]
        fn judgement_is_antisymmetric(b in -1e6f64..1e6, c in -1e6f64..1e6, abs in 0f64..10.0, rel in 0f64..0.5, higher in any::<bool>()) {
            let r = rule(if higher { Better::Higher } else { Better::Lower }, abs, rel);
            let there = verdict(&Value::One(b), &Value::One(c), &r);
            prop_assert_eq!(verdict(&Value::One(b), &Value::One(b), &r), Judgement::Unchanged);
            // Tolerance is relative to the baseline, so antisymmetry holds where it is symmetric.
            if rel == 0.0 {
                let back = verdict(&Value::One(c), &Value::One(b), &r);
                let flipped = match there {
                    Judgement::Regression => Judgement::Improvement,
                    Judgement::Improvement => Judgement::Regression,
                    j => j,
                };
                prop_assert_eq!(back, flipped);
            }
        }
    }
}
