//! The committed JSON Schemas are exactly what the report types generate (so SCHEMA.md's files
//! cannot drift from the writer), and a report validates against them while a broken one does
//! not. Reports of every shipped scenario are validated in `scenarios/tests/library.rs`, the
//! bench's and `meshsim run`'s in `meshsim/tests/`.
//!
//! After changing the model, regenerate with `MESHSIM_BLESS=1 cargo test -p reports --test schema`.

use reports::schema::{
    COMMITTED_BENCH_SCHEMA, COMMITTED_REPORT_SCHEMA, bench_schema, report_schema,
};

fn check(generated: String, committed: &str, file: &str) {
    if std::env::var_os("MESHSIM_BLESS").is_some() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schema")
            .join(file);
        if generated != committed {
            std::fs::write(&path, &generated).unwrap();
            // Rewriting is never a pass: the run that blessed must be followed by one that checks.
            panic!(
                "rewrote reports/schema/{file}; review the diff and run the test again without MESHSIM_BLESS"
            );
        }
        return;
    }
    assert!(
        generated == committed,
        "reports/schema/{file} is stale: run MESHSIM_BLESS=1 cargo test -p reports --test schema, \
         and bump SCHEMA_VERSION if a field was renamed or removed"
    );
}

#[test]
fn committed_schemas_match_the_types() {
    check(
        report_schema(),
        COMMITTED_REPORT_SCHEMA,
        "report.schema.json",
    );
    check(
        bench_schema(),
        COMMITTED_BENCH_SCHEMA,
        "bench-report.schema.json",
    );
}

fn validator(schema: &str) -> jsonschema::Validator {
    let schema: serde_json::Value = serde_json::from_str(schema).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

#[test]
fn a_report_validates_and_a_broken_one_does_not() {
    let v = validator(COMMITTED_REPORT_SCHEMA);
    let report = reports::Report {
        schema_version: reports::SCHEMA_VERSION,
        kind: "simulation".into(),
        run: reports::RunMeta {
            scenario: "s".into(),
            description: String::new(),
            scenario_file: "s.toml".into(),
            scenario_hash: "0".repeat(64),
            seed: 7,
            meshsim_version: "0.1.0".into(),
            substrate: "turmoil-net".into(),
            versions: Default::default(),
            proxy_cost_source: "x".into(),
            repro: "meshsim run s.toml --seed 7".into(),
            faults: vec![reports::FaultWindow {
                kind: "crash".into(),
                target: "db-0".into(),
                start_ms: 1000,
                end_ms: None,
            }],
        },
        mesh: None,
        baseline: None,
        overhead: None,
        assertions: vec![],
        verdict: reports::Verdict::Pass,
    };
    let good: serde_json::Value = serde_json::from_str(&reports::to_json(&report)).unwrap();
    let errors: Vec<String> = v.iter_errors(&good).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    for (path, bad) in [
        ("/verdict", serde_json::json!("maybe")),
        ("/run/seed", serde_json::json!(-1)),
        ("/schema_version", serde_json::json!("1")),
    ] {
        let mut broken = good.clone();
        *broken.pointer_mut(path).unwrap() = bad;
        assert!(!v.is_valid(&broken), "{path} should be rejected");
    }
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("run");
    assert!(
        !v.is_valid(&missing),
        "a report without run metadata is invalid"
    );
}
