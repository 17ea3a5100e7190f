//! The README's "What it shows" table is recomputed here from the scenarios themselves, at the
//! seed in each file, so the README cannot drift from the code: a change that moves one of these
//! figures fails until the README says what the simulator now measures.
//!
//! Rows covered: steady-overhead, retry-storm, retry-budget, gray-failure vs gray-failure-ewma.
//! (preset-crash's order is checked in `sim/tests/policies.rs`; its and breaker.toml's figures
//! are not recomputed here yet.)

use reports::Report;

fn run(file: &str) -> Report {
    let path = scenarios::dir().join(file);
    let loaded = sim::scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let opts = sim::RunOptions {
        seed: loaded.scenario.seed,
        scenario_arg: format!("scenarios/{file}"),
    };
    sim::run_scenario(&loaded, &opts, &mut |_, _, _| {})
}

fn ms(us: u64) -> String {
    format!("{:.0}", us as f64 / 1000.0)
}

#[test]
fn the_readme_table_is_what_the_scenarios_measure() {
    let readme = std::fs::read_to_string(scenarios::dir().join("../README.md")).unwrap();
    let mut rows = Vec::new();

    let steady = run("steady-overhead.toml");
    let o = steady
        .overhead
        .as_ref()
        .expect("steady-overhead has a baseline");
    rows.push(format!(
        "| `steady-overhead.toml` | mesh overhead {:+.2} ms at P50, {:+.2} ms at P99 (two edges, four sidecar hops, calibrated cost) |",
        o.p50_us as f64 / 1000.0,
        o.p99_us as f64 / 1000.0
    ));

    let storm = run("retry-storm.toml");
    let m = storm.mesh.as_ref().unwrap();
    rows.push(format!(
        "| `retry-storm.toml` | db sees exactly {:.1} attempts per request (4 × 4 × 4) |",
        m.load_factor["db"]
    ));

    let budget = run("retry-budget.toml");
    let m = budget.mesh.as_ref().unwrap();
    let hops: Vec<f64> = m.edges.values().map(|e| e.retry_amplification).collect();
    let (lo, hi) = hops
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
    let per_hop = if format!("{lo:.2}") == format!("{hi:.2}") {
        format!("{lo:.2}×")
    } else {
        format!("{lo:.2}–{hi:.2}×")
    };
    rows.push(format!(
        "| `retry-budget.toml` | {per_hop} per hop, {:.2}× at db, {} storm windows |",
        m.load_factor["db"],
        if m.storms.is_empty() {
            "no".to_string()
        } else {
            m.storms.len().to_string()
        }
    ));

    let rr = run("gray-failure.toml");
    let ewma = run("gray-failure-ewma.toml");
    let p99 = |r: &Report| r.mesh.as_ref().unwrap().latency.p99_us;
    rows.push(format!(
        "| `gray-failure.toml` vs `gray-failure-ewma.toml` | P99 {} ms with round robin, {} ms with peak-EWMA |",
        ms(p99(&rr)),
        ms(p99(&ewma))
    ));

    let missing: Vec<&String> = rows
        .iter()
        .filter(|r| !readme.contains(r.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md's \"What it shows\" table is out of date; these rows are what the scenarios measure now:\n{}",
        missing
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
