//! Scenario parsing: good files load; bad ones fail with file, line, field and what was expected.

use super::*;

const MINIMAL: &str = r#"
name = "t"
[[services]]
name = "web"
[workload]
target = "web"
rate_rps = 10
duration = "2s"
"#;

fn err(src: &str) -> ScenarioError {
    parse("t.toml", src).expect_err("should be rejected")
}

#[test]
fn minimal_scenario_loads_with_documented_defaults() {
    let s = parse("t.toml", MINIMAL).unwrap();
    assert_eq!(s.seed, 1);
    assert!(s.mesh.enabled && s.mesh.baseline);
    assert_eq!(s.mesh.protocol, Protocol::Http2);
    assert_eq!(s.services[0].replicas, 1);
    assert_eq!(s.workload.model, LoadModel::Open);
    assert_eq!(s.workload.routes[0].label(), "GET /");
}

#[test]
fn unknown_field_names_file_line_and_field() {
    let src = MINIMAL.replace("rate_rps = 10", "rate_rps = 10\nrate = 5");
    let e = err(&src);
    assert_eq!(e.file, "t.toml");
    assert_eq!(e.line, 8, "{e}");
    assert_eq!(e.field, "workload.rate", "{e}");
    assert!(e.message.contains("unknown field `rate`"), "{e}");
    assert!(
        e.message.contains("rate_rps"),
        "lists what is expected: {e}"
    );
}

#[test]
fn bad_duration_says_what_a_duration_looks_like() {
    let e = err(&MINIMAL.replace(r#"duration = "2s""#, "duration = 2"));
    assert_eq!(e.line, 8, "{e}");
    assert!(e.field.contains("workload.duration"), "{e}");
    assert!(e.message.contains("\"250ms\""), "{e}");
    let e = err(&MINIMAL.replace(r#"duration = "2s""#, r#"duration = "2 parsecs""#));
    assert!(e.message.contains("units"), "{e}");
}

#[test]
fn reference_to_missing_service_points_at_it() {
    let src = MINIMAL.replace(
        "[workload]",
        "[[services.calls]]\nservice = \"dbb\"\n[workload]",
    );
    let e = err(&src);
    assert_eq!(e.line, 6, "{e}");
    assert_eq!(e.field, "services[0].calls[0].service");
    assert!(e.message.contains("\"dbb\""), "{e}");
}

#[test]
fn bad_assertion_is_reported_at_its_line() {
    let src = format!("assertions = [\"p99_ms <= 5\", \"p98_ms <= 5\"]\n{MINIMAL}");
    let e = err(&src);
    assert_eq!(e.line, 1, "{e}");
    assert!(e.field.starts_with("assertions"), "{e}");
    assert!(e.message.contains("unknown metric `p98_ms`"), "{e}");
}

#[test]
fn fault_targets_are_checked() {
    let src = format!("{MINIMAL}\n[[faults]]\nkind = \"crash\"\npod = \"web-7\"\nat = \"1s\"\n");
    let e = err(&src);
    assert_eq!(e.line, 10, "{e}");
    assert!(e.message.contains("no pod named \"web-7\""), "{e}");
    let src = format!("{MINIMAL}\n[[faults]]\nkind = \"explode\"\nat = \"1s\"\n");
    let e = err(&src);
    assert!(e.message.contains("explode"), "{e}");
}

#[test]
fn call_cycles_are_rejected() {
    let src = r#"
name = "t"
[[services]]
name = "a"
calls = [{ service = "b" }]
[[services]]
name = "b"
calls = [{ service = "a" }]
[workload]
target = "a"
rate_rps = 1
duration = "1s"
"#;
    let e = err(src);
    assert!(e.message.contains("cycle"), "{e}");
}

#[test]
fn syntax_errors_have_a_line() {
    let e = err("name = \"t\"\n[[services]\n");
    assert_eq!(e.line, 2, "{e}");
}

#[test]
fn open_model_needs_a_rate() {
    let e = err(&MINIMAL.replace("rate_rps = 10\n", ""));
    assert_eq!(e.field, "workload.rate_rps");
}
