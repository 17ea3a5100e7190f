//! Determinism is the product: the same scenario and seed give a byte-identical report.json; another
//! seed gives a different one.

fn report_bytes(seed: u64) -> String {
    let path = scenarios::dir().join("three-tier.toml");
    let loaded = sim::scenario::load(&path).expect("ships valid");
    let opts = sim::RunOptions {
        seed,
        scenario_arg: "scenarios/three-tier.toml".into(),
    };
    reports::to_json(&sim::run_scenario(&loaded, &opts, &mut |_, _, _| {}))
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = report_bytes(42);
    let b = report_bytes(42);
    assert!(a == b, "same seed gave different reports");
    let c = report_bytes(43);
    assert_ne!(a, c, "another seed should change the run");
    // The report names what is needed to replay it.
    assert!(a.contains("\"seed\": 42"));
    assert!(a.contains("\"scenario_hash\": \""));
    for dep in ["turmoil-net", "tokio", "rand"] {
        assert!(
            a.contains(&format!("\"{dep}\": \"")),
            "report lacks the version of {dep}"
        );
    }
}
