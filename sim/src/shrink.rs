//! Shrinking a failing scenario: given a scenario and a seed on which an assertion fails, find a
//! smaller scenario on which the same assertion still fails with the same seed, so the failure
//! can be read in a file a person can hold in their head.
//!
//! The search is greedy and restarts after every step that keeps the failure (a simple form of
//! delta debugging): drop a fault, drop a service (with the calls and faults that name it), drop
//! a call, halve the run, the load and the replicas, narrow each fault's window, drop the
//! warm-up. Each candidate is validated as a scenario file would be (an invalid one is skipped
//! and said so) and run on the same seed. A step is kept only when the target assertion still
//! fails. The other assertions are dropped first (they do not change the run).
//!
//! It edits the file's TOML document, not the parsed scenario, so what it writes is a plain
//! scenario file anyone can run and read. It is not a proof of minimality: it stops when no
//! single step keeps the failure, or when the caller's budget says so.

use std::time::Duration;

use toml::{Table, Value};

use crate::scenario::{Dur, Loaded};

/// Why shrinking could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    /// The scenario passes on this seed: nothing to shrink.
    #[error("{file} passes with seed {seed}: nothing to shrink (a sweep lists failing seeds)")]
    Passes {
        /// The file.
        file: String,
        /// The seed.
        seed: u64,
    },
    /// The assertion asked for does not fail.
    #[error("{file}, seed {seed}: `{assertion}` does not fail; failing: {failing:?}")]
    NotFailing {
        /// The file.
        file: String,
        /// The seed.
        seed: u64,
        /// The assertion asked for.
        assertion: String,
        /// What does fail.
        failing: Vec<String>,
    },
    /// The file is not a TOML table (it loaded once, so this is unexpected).
    #[error("{file}: {message}")]
    Document {
        /// The file.
        file: String,
        /// What the TOML parser said.
        message: String,
    },
}

/// How one tried step ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The assertion still fails: the step is kept.
    Kept,
    /// The assertion holds now: the step is undone.
    Passes,
    /// The smaller file is not a valid scenario: the step is skipped.
    Invalid(String),
}

/// One tried step.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// What was changed.
    pub what: String,
    /// How it ended.
    pub outcome: Outcome,
}

/// How big a scenario is, in the terms shrinking reduces.
#[derive(Clone, Debug, PartialEq)]
pub struct Size {
    /// Services.
    pub services: usize,
    /// Pods (replicas over all services).
    pub pods: u64,
    /// Calls between services.
    pub calls: usize,
    /// Faults.
    pub faults: usize,
    /// Simulated time, ms.
    pub duration_ms: u64,
    /// Open-loop rate, or closed-loop users.
    pub load: f64,
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} services, {} pods, {} calls, {} faults, {} ms, load {}",
            self.services, self.pods, self.calls, self.faults, self.duration_ms, self.load
        )
    }
}

/// What shrinking found.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The smaller scenario file's text (seed set, one assertion).
    pub text: String,
    /// The assertion that fails in both.
    pub assertion: String,
    /// Every step tried, in order.
    pub steps: Vec<Step>,
    /// Size before.
    pub before: Size,
    /// Size after.
    pub after: Size,
    /// Simulations run.
    pub runs: usize,
    /// The budget ran out before no step could be taken.
    pub budget_exhausted: bool,
}

/// The assertions that fail for `loaded` on `seed`.
fn failing(loaded: &Loaded, seed: u64) -> Vec<String> {
    let opts = crate::RunOptions::new(seed, loaded.path.display().to_string());
    let out = crate::run(loaded, &opts, &mut |_, _, _| {});
    out.report
        .assertions
        .iter()
        .filter(|a| !a.passed)
        .map(|a| a.text.clone())
        .collect()
}

/// Shrink `loaded` (whose file text is `text`) on `seed` while `assertion` (default: the first
/// that fails) keeps failing. `more` is asked before every run and stops the search when it says
/// no; `on_step` hears of every step as it ends.
pub fn shrink(
    loaded: &Loaded,
    text: &str,
    seed: u64,
    assertion: Option<&str>,
    more: &mut dyn FnMut(usize) -> bool,
    on_step: &mut dyn FnMut(&Step),
) -> Result<Shrunk, ShrinkError> {
    let file = loaded.path.display().to_string();
    let fails = failing(loaded, seed);
    let target = match assertion {
        Some(a) if fails.iter().any(|f| f == a) => a.to_string(),
        Some(a) => {
            return Err(ShrinkError::NotFailing {
                file,
                seed,
                assertion: a.into(),
                failing: fails,
            });
        }
        None => fails.first().cloned().ok_or(ShrinkError::Passes {
            file: file.clone(),
            seed,
        })?,
    };
    let mut doc: Table = toml::from_str(text).map_err(|e| ShrinkError::Document {
        file: file.clone(),
        message: e.to_string(),
    })?;
    let before = size(&doc);
    // The result is a plain scenario: a swarm section could name what shrinking drops.
    doc.remove("swarm");
    // The seed becomes the file's own, and only the target assertion stays (assertions are
    // checked after the run, so this cannot change whether it fails).
    let Ok(seed_value) = i64::try_from(seed) else {
        return Err(ShrinkError::Document {
            file,
            message: format!(
                "seed {seed} cannot be written in a TOML file (at most {})",
                i64::MAX
            ),
        });
    };
    doc.insert("seed".into(), Value::Integer(seed_value));
    doc.insert(
        "assertions".into(),
        Value::Array(vec![Value::String(target.clone())]),
    );
    let mut steps = Vec::new();
    let mut runs = 1;
    let mut budget_exhausted = false;
    'search: loop {
        for (what, candidate) in candidates(&doc) {
            let body = toml::to_string(&candidate).map_err(|e| ShrinkError::Document {
                file: file.clone(),
                message: e.to_string(),
            })?;
            let outcome = match crate::scenario::parse(&file, &body) {
                Err(e) => Outcome::Invalid(e.to_string()),
                Ok(scenario) => {
                    if !more(runs) {
                        budget_exhausted = true;
                        break 'search;
                    }
                    runs += 1;
                    let smaller = Loaded {
                        scenario,
                        path: loaded.path.clone(),
                        hash: loaded.hash.clone(),
                        cost: loaded.cost.clone(),
                    };
                    if failing(&smaller, seed).contains(&target) {
                        Outcome::Kept
                    } else {
                        Outcome::Passes
                    }
                }
            };
            let step = Step { what, outcome };
            on_step(&step);
            let kept = step.outcome == Outcome::Kept;
            steps.push(step);
            if kept {
                doc = candidate;
                continue 'search;
            }
        }
        break;
    }
    let after = size(&doc);
    let text = toml::to_string(&doc).map_err(|e| ShrinkError::Document {
        file: file.clone(),
        message: e.to_string(),
    })?;
    Ok(Shrunk {
        text,
        assertion: target,
        steps,
        before,
        after,
        runs,
        budget_exhausted,
    })
}

fn array<'a>(doc: &'a Table, key: &str) -> &'a [Value] {
    doc.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn name(v: &Value) -> &str {
    v.get("name").and_then(Value::as_str).unwrap_or("?")
}

fn dur(v: Option<&Value>) -> Option<Duration> {
    v.and_then(Value::as_str)
        .and_then(|s| s.parse::<Dur>().ok())
        .map(|d| d.0)
}

fn dur_value(d: Duration) -> Value {
    Value::String(Dur(d).to_string())
}

/// Whether `v` (a fault) names `service` anywhere.
fn names(v: &Value, service: &str) -> bool {
    match v {
        Value::String(s) => s == service,
        Value::Array(a) => a.iter().any(|x| names(x, service)),
        Value::Table(t) => t.values().any(|x| names(x, service)),
        _ => false,
    }
}

fn size(doc: &Table) -> Size {
    let services = array(doc, "services");
    let w = doc.get("workload");
    let get = |k: &str| w.and_then(|w| w.get(k));
    Size {
        services: services.len(),
        pods: services
            .iter()
            .map(|s| {
                s.get("replicas")
                    .and_then(Value::as_integer)
                    .unwrap_or(1)
                    .max(0) as u64
            })
            .sum(),
        calls: services
            .iter()
            .map(|s| s.get("calls").and_then(Value::as_array).map_or(0, Vec::len))
            .sum(),
        faults: array(doc, "faults").len(),
        duration_ms: dur(get("duration")).map_or(0, |d| d.as_millis() as u64),
        load: get("rate_rps")
            .and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64)))
            .or(get("users").and_then(Value::as_integer).map(|u| u as f64))
            .unwrap_or(0.0),
    }
}

/// Every one-step smaller variant of `doc`, biggest cuts first, each with what it did.
fn candidates(doc: &Table) -> Vec<(String, Table)> {
    let mut out = Vec::new();
    let mut with = |what: String, f: &dyn Fn(&mut Table)| {
        let mut t = doc.clone();
        f(&mut t);
        if &t != doc {
            out.push((what, t));
        }
    };
    let faults = array(doc, "faults").to_vec();
    for (i, f) in faults.iter().enumerate() {
        let kind = f.get("kind").and_then(Value::as_str).unwrap_or("?");
        with(format!("drop fault {} ({kind})", i + 1), &|t| {
            if let Some(Value::Array(a)) = t.get_mut("faults") {
                a.remove(i);
            }
        });
    }
    let services = array(doc, "services").to_vec();
    for (i, s) in services.iter().enumerate() {
        let svc = name(s).to_string();
        with(format!("drop service {svc} (and what names it)"), &|t| {
            if let Some(Value::Array(a)) = t.get_mut("services") {
                a.remove(i);
                for other in a.iter_mut() {
                    if let Some(Value::Array(calls)) = other.get_mut("calls") {
                        calls.retain(|c| c.get("service").and_then(Value::as_str) != Some(&svc));
                    }
                }
            }
            if let Some(Value::Array(f)) = t.get_mut("faults") {
                f.retain(|x| !names(x, &svc));
            }
        });
    }
    for (i, s) in services.iter().enumerate() {
        let calls = s.get("calls").and_then(Value::as_array).map_or(0, Vec::len);
        for j in 0..calls {
            let to = s["calls"][j]
                .get("service")
                .and_then(Value::as_str)
                .unwrap_or("?");
            with(format!("drop call {} -> {to}", name(s)), &|t| {
                if let Some(Value::Array(calls)) = t
                    .get_mut("services")
                    .and_then(|a| a.get_mut(i))
                    .and_then(|s| s.get_mut("calls"))
                {
                    calls.remove(j);
                }
            });
        }
    }
    let w = doc.get("workload").and_then(Value::as_table);
    if let Some(d) = dur(w.and_then(|w| w.get("duration"))) {
        let half = Duration::from_millis((d.as_millis() as u64 / 2).max(1));
        with(format!("halve the run to {}", Dur(half)), &|t| {
            if let Some(w) = t.get_mut("workload").and_then(Value::as_table_mut) {
                w.insert("duration".into(), dur_value(half));
            }
        });
    }
    for key in ["rate_rps", "users", "clients"] {
        let v = w.and_then(|w| w.get(key));
        let halved = match v {
            Some(Value::Integer(n)) if *n > 1 => Some(Value::Integer(n / 2)),
            Some(Value::Float(x)) if *x > 1.0 => Some(Value::Float((x / 2.0).floor().max(1.0))),
            _ => None,
        };
        if let Some(h) = halved {
            with(format!("halve workload.{key} to {h}"), &|t| {
                if let Some(w) = t.get_mut("workload").and_then(Value::as_table_mut) {
                    w.insert(key.into(), h.clone());
                }
            });
        }
    }
    for (i, s) in services.iter().enumerate() {
        if let Some(r) = s
            .get("replicas")
            .and_then(Value::as_integer)
            .filter(|r| *r > 1)
        {
            let to = r / 2;
            with(format!("{} replicas {r} -> {to}", name(s)), &|t| {
                if let Some(s) = t.get_mut("services").and_then(|a| a.get_mut(i)) {
                    s.as_table_mut()
                        .map(|s| s.insert("replicas".into(), Value::Integer(to)));
                }
            });
        }
    }
    for (i, f) in faults.iter().enumerate() {
        let (Some(at), Some(until)) = (dur(f.get("at")), dur(f.get("until"))) else {
            continue;
        };
        let width = until.saturating_sub(at);
        if width < Duration::from_millis(2) {
            continue;
        }
        let mid = at + Duration::from_millis(width.as_millis() as u64 / 2);
        for (what, key, value) in [
            (
                format!("fault {}: end at {}", i + 1, Dur(mid)),
                "until",
                mid,
            ),
            (format!("fault {}: start at {}", i + 1, Dur(mid)), "at", mid),
        ] {
            with(what, &|t| {
                if let Some(f) = t
                    .get_mut("faults")
                    .and_then(|a| a.get_mut(i))
                    .and_then(Value::as_table_mut)
                {
                    f.insert(key.into(), dur_value(value));
                }
            });
        }
    }
    if dur(w.and_then(|w| w.get("warmup"))).is_some_and(|d| !d.is_zero()) {
        with("drop the warm-up".into(), &|t| {
            if let Some(w) = t.get_mut("workload").and_then(Value::as_table_mut) {
                w.insert("warmup".into(), dur_value(Duration::ZERO));
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"
name = "t"
[[services]]
name = "api"
replicas = 4
[[services.calls]]
service = "db"
[[services]]
name = "db"
[workload]
target = "api"
rate_rps = 100
duration = "10s"
warmup = "1s"
[[faults]]
kind = "crash"
service = "db"
at = "2s"
until = "6s"
"#;

    /// Every candidate is strictly smaller in what `size` measures or in a fault's window, and
    /// dropping a service also drops the calls and faults that name it.
    #[test]
    fn candidates_only_ever_shrink() {
        let doc: Table = toml::from_str(DOC).unwrap();
        let before = size(&doc);
        let cands = candidates(&doc);
        assert!(
            cands.len() >= 8,
            "{:?}",
            cands.iter().map(|c| &c.0).collect::<Vec<_>>()
        );
        for (what, c) in &cands {
            let after = size(c);
            let smaller = after.services < before.services
                || after.pods < before.pods
                || after.calls < before.calls
                || after.faults < before.faults
                || after.duration_ms < before.duration_ms
                || after.load < before.load
                || what.starts_with("fault ")
                || what == "drop the warm-up";
            assert!(smaller, "{what}: {after} vs {before}");
            assert!(
                after.services <= before.services
                    && after.pods <= before.pods
                    && after.faults <= before.faults,
                "{what} grew something"
            );
        }
        let (_, no_db) = cands
            .iter()
            .find(|(w, _)| w.starts_with("drop service db"))
            .unwrap();
        assert_eq!(size(no_db).calls, 0);
        assert_eq!(size(no_db).faults, 0);
        let (_, narrowed) = cands
            .iter()
            .find(|(w, _)| w == "fault 1: end at 4s")
            .unwrap();
        assert_eq!(narrowed["faults"][0]["until"].as_str(), Some("4s"));
    }
}
