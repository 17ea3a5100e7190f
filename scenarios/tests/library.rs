//! Every scenario in the library runs, with and without the mesh, and meets its own assertions;
//! every request is accounted for in both runs; every report validates against the JSON Schema.

use reports::Verdict;

#[test]
fn every_scenario_meets_its_assertions() {
    let files = scenarios::all();
    assert!(
        files.len() >= 5,
        "the library ships at least five scenarios, found {files:?}"
    );
    let schema: serde_json::Value =
        serde_json::from_str(reports::schema::COMMITTED_REPORT_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut failures = Vec::new();
    for path in files {
        let loaded = sim::scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !loaded.scenario.assertions.is_empty(),
            "{} asserts nothing",
            path.display()
        );
        let opts = sim::RunOptions::new(loaded.scenario.seed, path.display().to_string());
        let report = sim::run(&loaded, &opts, &mut |_, _, _| {}).report;
        // The report.json we write validates against the committed JSON Schema.
        let json: serde_json::Value = serde_json::from_str(&reports::to_json(&report)).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{}: report.json does not match reports/schema/report.schema.json: {errors:?}",
            path.display()
        );
        // Both runs, meshed and baseline: the workload's count of what it sent agrees with the
        // collector's outcomes, nothing is left in flight, and on every edge each try ended once.
        for run in [&report.mesh, &report.baseline].into_iter().flatten() {
            assert!(run.books.sent > 0, "{}: nothing was sent", path.display());
            let problems = sim::check::ledger(run);
            assert!(
                problems.is_empty(),
                "{} ({} run): {problems:#?}",
                path.display(),
                if run.mesh { "meshed" } else { "baseline" }
            );
        }
        if report.verdict != Verdict::Pass {
            failures.push(reports::summary::render(&report));
        }
    }
    assert!(
        failures.is_empty(),
        "scenarios failed:\n{}",
        failures.join("\n---\n")
    );
}
