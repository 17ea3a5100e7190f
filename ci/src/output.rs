//! The gate's result for people and machines: a Markdown table for a pull-request comment, a
//! JSON verdict, JUnit XML (one test case per gated metric), and on GitHub Actions a job summary
//! and `::error` annotations.

use std::fmt::Write;

use reports::summary::number;

use crate::compare::{Judgement, Outcome, Row, Value};

fn cell(v: &Option<Value>) -> String {
    match v {
        None => "—".into(),
        Some(Value::One(x)) => number(*x),
        Some(Value::Spread(s)) if s.ci95.is_finite() => {
            format!("{} ± {}", number(s.mean), number(s.ci95))
        }
        Some(Value::Spread(s)) => number(s.mean),
    }
}

fn change(r: &Row) -> String {
    match (&r.baseline, &r.current) {
        (Some(b), Some(c)) => {
            let (b, c) = (b.mean(), c.mean());
            if b == c {
                "=".into()
            } else {
                // `number` gives a string, so the sign of a rise is written by hand.
                let d = c - b;
                let delta = format!("{}{}", if d > 0.0 { "+" } else { "" }, number(d));
                if b != 0.0 {
                    format!("{delta} ({:+.1}%)", 100.0 * d / b.abs())
                } else {
                    delta
                }
            }
        }
        _ => String::new(),
    }
}

fn mark(j: Judgement) -> &'static str {
    match j {
        Judgement::Regression => "❌ regression",
        Judgement::Improvement => "✅ improvement",
        Judgement::Unchanged => "unchanged",
        Judgement::Info => "info",
        Judgement::Added => "added",
        Judgement::Removed => "removed",
    }
}

/// The Markdown report: the verdict, then per scenario every metric that is not unchanged (all
/// with `all`), regressions first.
pub fn markdown(o: &Outcome, all: bool) -> String {
    let mut s = String::new();
    let regressed = o
        .scenarios
        .iter()
        .filter(|sc| sc.regressions().next().is_some())
        .count();
    let _ = writeln!(
        s,
        "## meshsim gate: {}\n",
        if o.passed() {
            format!("PASS — {} scenarios, no regression", o.scenarios.len())
        } else {
            format!(
                "FAIL — {} regressions in {regressed} of {} scenarios",
                o.regressions(),
                o.scenarios.len()
            )
        }
    );
    let _ = writeln!(
        s,
        "{} metrics compared: {} regressions, {} improvements, {} unchanged, {} not gated, {} added, {} removed.\n",
        o.scenarios.iter().map(|sc| sc.rows.len()).sum::<usize>(),
        o.count(Judgement::Regression),
        o.count(Judgement::Improvement),
        o.count(Judgement::Unchanged),
        o.count(Judgement::Info),
        o.count(Judgement::Added),
        o.count(Judgement::Removed),
    );
    for sc in &o.scenarios {
        let mut rows: Vec<&Row> = sc
            .rows
            .iter()
            .filter(|r| all || !matches!(r.judgement, Judgement::Unchanged))
            .filter(|r| all || r.judgement != Judgement::Info || change(r) != "=")
            .collect();
        rows.sort_by_key(|r| r.judgement);
        let _ = write!(s, "### {}", sc.scenario);
        if sc.scenario_changed {
            let _ = write!(s, " (scenario file changed)");
        }
        let _ = writeln!(s, "\n");
        if sc.baseline_dir.as_os_str().is_empty() {
            let _ = writeln!(s, "New: {} metrics, no baseline yet.\n", sc.rows.len());
            continue;
        }
        if rows.is_empty() {
            let _ = writeln!(s, "All {} metrics unchanged.\n", sc.rows.len());
            continue;
        }
        let _ = writeln!(s, "| metric | baseline | current | change | verdict |");
        let _ = writeln!(s, "|---|---:|---:|---:|---|");
        for r in rows {
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {} | {} |",
                r.metric,
                cell(&r.baseline),
                cell(&r.current),
                change(r),
                mark(r.judgement)
            );
        }
        let _ = writeln!(s);
    }
    s
}

/// The JSON verdict: pass or fail, counts, and every row that is not unchanged.
pub fn json(o: &Outcome) -> String {
    let value = |v: &Option<Value>| match v {
        None => serde_json::Value::Null,
        Some(Value::One(x)) => serde_json::json!(x),
        Some(Value::Spread(s)) => serde_json::json!({
            "mean": s.mean, "ci95": if s.ci95.is_finite() { Some(s.ci95) } else { None }, "n": s.n
        }),
    };
    let scenarios: Vec<serde_json::Value> = o
        .scenarios
        .iter()
        .map(|sc| {
            serde_json::json!({
                "scenario": sc.scenario,
                "kind": sc.kind.as_str(),
                "baseline": sc.baseline.display().to_string(),
                "current": sc.current.display().to_string(),
                "scenario_changed": sc.scenario_changed,
                "regressions": sc.regressions().count(),
                "rows": sc.rows.iter().filter(|r| r.judgement != Judgement::Unchanged).map(|r| serde_json::json!({
                    "metric": r.metric,
                    "baseline": value(&r.baseline),
                    "current": value(&r.current),
                    "verdict": r.judgement.as_str(),
                    "rule": r.rule.as_ref().map(|(_, p)| p),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&serde_json::json!({
        "verdict": if o.passed() { "pass" } else { "fail" },
        "regressions": o.count(Judgement::Regression),
        "improvements": o.count(Judgement::Improvement),
        "unchanged": o.count(Judgement::Unchanged),
        "scenarios": scenarios,
    }))
    .expect("JSON values serialise");
    s.push('\n');
    s
}

/// `s` escaped for an XML attribute or text (JUnit files).
pub fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: a test suite per scenario, a test case per gated metric, a failure per regression.
pub fn junit(o: &Outcome) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let gated = |r: &&Row| r.rule.is_some() && r.baseline.is_some() && r.current.is_some();
    let _ = writeln!(
        s,
        "<testsuites name=\"meshsim gate\" tests=\"{}\" failures=\"{}\">",
        o.scenarios
            .iter()
            .map(|sc| sc.rows.iter().filter(gated).count())
            .sum::<usize>(),
        o.regressions()
    );
    for sc in &o.scenarios {
        let cases: Vec<&Row> = sc.rows.iter().filter(gated).collect();
        let _ = writeln!(
            s,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\">",
            xml(&sc.scenario),
            cases.len(),
            sc.regressions().count()
        );
        for r in cases {
            let name = xml(&r.metric);
            if r.judgement == Judgement::Regression {
                let msg = format!(
                    "{} regressed: {} -> {} ({}), rule `{}`",
                    r.metric,
                    cell(&r.baseline),
                    cell(&r.current),
                    change(r),
                    r.rule.as_ref().map(|(_, p)| p.as_str()).unwrap_or("")
                );
                let _ = writeln!(
                    s,
                    "    <testcase classname=\"{}\" name=\"{name}\">\n      <failure message=\"{}\"/>\n    </testcase>",
                    xml(&sc.scenario),
                    xml(&msg)
                );
            } else {
                let _ = writeln!(
                    s,
                    "    <testcase classname=\"{}\" name=\"{name}\"/>",
                    xml(&sc.scenario)
                );
            }
        }
        let _ = writeln!(s, "  </testsuite>");
    }
    let _ = writeln!(s, "</testsuites>");
    s
}

/// GitHub Actions workflow commands: one `::error` per regression.
pub fn github_annotations(o: &Outcome) -> String {
    let mut s = String::new();
    for sc in &o.scenarios {
        for r in sc.regressions() {
            // Workflow commands end at a newline; `%`, CR and LF are escaped as GitHub documents.
            let msg = format!(
                "{}: {} -> {} ({})",
                r.metric,
                cell(&r.baseline),
                cell(&r.current),
                change(r)
            )
            .replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A");
            let _ = writeln!(
                s,
                "::error file={},title=meshsim gate {}::{msg}",
                sc.current.display(),
                sc.scenario.replace([',', ':'], " ")
            );
        }
    }
    s
}
