//! Determinism is the product: the same scenario and seed give a byte-identical report.json; another
//! seed gives different measurements (compared without the `run` block, which names the seed and
//! so would differ whatever the simulation did). Across processes and for every output file:
//! `meshsim/tests/determinism.rs`.

/// The report without the fields that describe the run rather than measure it.
fn measured(json: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
    v.as_object_mut().unwrap().remove("run");
    v
}

fn report_bytes(seed: u64) -> String {
    let path = scenarios::dir().join("three-tier.toml");
    let loaded = sim::scenario::load(&path).expect("ships valid");
    let opts = sim::RunOptions::new(seed, "scenarios/three-tier.toml");
    reports::to_json(&sim::run(&loaded, &opts, &mut |_, _, _| {}).report)
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = report_bytes(42);
    let b = report_bytes(42);
    assert!(a == b, "same seed gave different reports");
    let c = report_bytes(43);
    assert!(
        measured(&a) != measured(&c),
        "seeds 42 and 43 measured exactly the same run"
    );
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
