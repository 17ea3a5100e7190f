//! Two runs side by side (`meshsim diff a/ b/`): the same metrics from each `report.json`, with
//! the change, as Markdown. It compares what the reports hold and judges nothing: the gate
//! against baselines is the `ci` crate's.
//!
//! Rows are matched by name, so runs of different scenarios still line up where they share a
//! route, an edge or an assertion; a row only one side has shows `—` on the other.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::model::{Report, RunStats, Verdict};
use crate::summary::number;

/// One compared metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// What it is.
    pub metric: String,
    /// Value in the first run.
    pub a: Option<f64>,
    /// Value in the second run.
    pub b: Option<f64>,
}

impl Row {
    fn change(&self) -> String {
        match (self.a, self.b) {
            (Some(a), Some(b)) if a == b => "=".into(),
            (Some(a), Some(b)) if a != 0.0 => {
                format!("{:+} ({:+.1}%)", number(b - a), 100.0 * (b - a) / a.abs())
            }
            (Some(a), Some(b)) => format!("{:+}", number(b - a)),
            _ => String::new(),
        }
    }
}

fn cell(v: Option<f64>) -> String {
    v.map(number).unwrap_or_else(|| "—".into())
}

fn run_rows(label: &str, a: Option<&RunStats>, b: Option<&RunStats>, rows: &mut Vec<Row>) {
    let both = [a, b];
    let get = |f: &dyn Fn(&RunStats) -> f64| -> [Option<f64>; 2] { both.map(|r| r.map(f)) };
    let mut push = |metric: String, v: [Option<f64>; 2]| {
        if v[0].is_some() || v[1].is_some() {
            rows.push(Row {
                metric,
                a: v[0],
                b: v[1],
            });
        }
    };
    push(format!("{label}: sent"), get(&|r| r.books.sent as f64));
    push(format!("{label}: ok"), get(&|r| r.books.ok as f64));
    push(format!("{label}: failed"), get(&|r| r.books.failed as f64));
    push(
        format!("{label}: success ratio"),
        get(&|r| {
            let done = r.books.ok + r.books.failed;
            if done == 0 {
                0.0
            } else {
                (r.books.ok as f64 / done as f64 * 1e4).round() / 1e4
            }
        }),
    );
    for (name, f) in [
        (
            "P50 ms",
            (|r: &RunStats| r.latency.p50_us) as fn(&RunStats) -> u64,
        ),
        ("P90 ms", |r| r.latency.p90_us),
        ("P99 ms", |r| r.latency.p99_us),
        ("P99.9 ms", |r| r.latency.p999_us),
        ("max ms", |r| r.latency.max_us),
    ] {
        push(format!("{label}: {name}"), get(&|r| f(r) as f64 / 1000.0));
    }
    let reasons: BTreeSet<&String> = both
        .iter()
        .flatten()
        .flat_map(|r| r.books.failed_by_reason.keys())
        .collect();
    for reason in reasons {
        push(
            format!("{label}: failed {reason}"),
            get(&|r| r.books.failed_by_reason.get(reason).copied().unwrap_or(0) as f64),
        );
    }
    let edges: BTreeSet<&String> = both.iter().flatten().flat_map(|r| r.edges.keys()).collect();
    for edge in edges {
        let e = |r: &RunStats, f: fn(&crate::model::EdgeStats) -> f64| r.edges.get(edge).map(f);
        for (name, f) in [
            (
                "amplification",
                (|e: &crate::model::EdgeStats| e.retry_amplification)
                    as fn(&crate::model::EdgeStats) -> f64,
            ),
            ("retries", |e| e.retries as f64),
            ("circuit_open", |e| e.circuit_open as f64),
            ("timeouts", |e| e.timeouts as f64),
        ] {
            push(
                format!("{label}: edge {edge} {name}"),
                both.map(|r| r.and_then(|r| e(r, f))),
            );
        }
    }
    push(
        format!("{label}: storm windows"),
        get(&|r| r.storms.len() as f64),
    );
    push(
        format!("{label}: breaker refusals"),
        get(&|r| r.breaker_events.len() as f64),
    );
    push(
        format!("{label}: ejections"),
        get(&|r| r.health.iter().filter(|h| h.event == "ejected").count() as f64),
    );
}

/// Every compared metric of `a` and `b`.
pub fn rows(a: &Report, b: &Report) -> Vec<Row> {
    let mut rows = Vec::new();
    run_rows("mesh", a.mesh.as_ref(), b.mesh.as_ref(), &mut rows);
    run_rows(
        "no mesh",
        a.baseline.as_ref(),
        b.baseline.as_ref(),
        &mut rows,
    );
    let ov = |r: &Report, f: fn(&crate::model::Overhead) -> i64| {
        r.overhead.as_ref().map(|o| f(o) as f64 / 1000.0)
    };
    for (name, f) in [
        (
            "overhead P50 ms",
            (|o: &crate::model::Overhead| o.p50_us) as fn(&crate::model::Overhead) -> i64,
        ),
        ("overhead P99 ms", |o| o.p99_us),
        ("overhead P99.9 ms", |o| o.p999_us),
    ] {
        if a.overhead.is_some() || b.overhead.is_some() {
            rows.push(Row {
                metric: name.into(),
                a: ov(a, f),
                b: ov(b, f),
            });
        }
    }
    let texts: BTreeSet<&String> = a
        .assertions
        .iter()
        .chain(&b.assertions)
        .map(|x| &x.text)
        .collect();
    for t in texts {
        let find = |r: &Report| {
            r.assertions
                .iter()
                .find(|x| &x.text == t)
                .and_then(|x| x.actual)
        };
        rows.push(Row {
            metric: format!("assert `{t}`"),
            a: find(a),
            b: find(b),
        });
    }
    rows
}

/// The side-by-side Markdown of `a` (from `a_name`) and `b`; unchanged rows are listed only
/// when `all` is set.
pub fn render(a: &Report, a_name: &str, b: &Report, b_name: &str, all: bool) -> String {
    let v = |r: &Report| match r.verdict {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
    };
    let mut s = String::new();
    let _ = writeln!(s, "# meshsim diff: {a_name} → {b_name}\n");
    let _ = writeln!(s, "| | A: {a_name} | B: {b_name} |");
    let _ = writeln!(s, "|---|---|---|");
    let _ = writeln!(s, "| verdict | {} | {} |", v(a), v(b));
    let _ = writeln!(s, "| scenario | {} | {} |", a.run.scenario, b.run.scenario);
    let _ = writeln!(s, "| seed | {} | {} |", a.run.seed, b.run.seed);
    let _ = writeln!(
        s,
        "| scenario hash | `{}` | `{}` |",
        &a.run.scenario_hash[..a.run.scenario_hash.len().min(12)],
        &b.run.scenario_hash[..b.run.scenario_hash.len().min(12)]
    );
    let _ = writeln!(
        s,
        "| meshsim | {} | {} |",
        a.run.meshsim_version, b.run.meshsim_version
    );
    let rows = rows(a, b);
    let changed = rows.iter().filter(|r| r.a != r.b).count();
    let _ = writeln!(
        s,
        "\n{changed} of {} metrics differ{}.\n",
        rows.len(),
        if all {
            ""
        } else {
            " (only those are listed; --all lists every one)"
        }
    );
    let _ = writeln!(s, "| metric | A | B | change |");
    let _ = writeln!(s, "|---|---:|---:|---:|");
    for r in rows.iter().filter(|r| all || r.a != r.b) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            r.metric,
            cell(r.a),
            cell(r.b),
            r.change()
        );
    }
    s
}
