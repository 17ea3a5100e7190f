//! `meshsim gate` as CI runs it: a planted regression fails with the right Markdown, JUnit and
//! JSON; an improvement and an identical run pass; bad input is exit 2 with a message that names
//! the file; `--update` records a new baseline and says what changed. The reports are copies of
//! `ci/baselines/steady-overhead`, edited.

use std::path::{Path, PathBuf};
use std::process::Command;

fn meshsim() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meshsim"));
    c.env_remove("GITHUB_ACTIONS");
    c
}

fn baseline_report() -> serde_json::Value {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/baselines/steady-overhead/report.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// A run folder holding `report`.
fn run_dir(root: &Path, name: &str, report: &serde_json::Value) -> PathBuf {
    let d = root.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("report.json"),
        serde_json::to_vec_pretty(report).unwrap(),
    )
    .unwrap();
    d
}

struct Gate {
    code: i32,
    stdout: String,
    stderr: String,
}

fn gate(base: &Path, cur: &Path, extra: &[&str]) -> Gate {
    let out = meshsim()
        .arg("gate")
        .arg("--baseline")
        .arg(base)
        .arg("--current")
        .arg(cur)
        .args(extra)
        .output()
        .unwrap();
    Gate {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

#[test]
fn a_planted_p99_regression_fails_the_gate_with_markdown_junit_and_json() {
    let t = tempfile::tempdir().unwrap();
    let base = baseline_report();
    let mut worse = base.clone();
    let p99 = base["mesh"]["latency"]["p99_us"].as_u64().unwrap();
    worse["mesh"]["latency"]["p99_us"] = (p99 * 12 / 10).into();
    let (b, c) = (
        run_dir(t.path(), "base", &base),
        run_dir(t.path(), "cur", &worse),
    );
    let (junit, json) = (t.path().join("junit.xml"), t.path().join("verdict.json"));
    let g = gate(
        &b,
        &c,
        &[
            "--junit",
            junit.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
    );
    assert_eq!(g.code, 1, "{}{}", g.stdout, g.stderr);
    assert!(
        g.stdout
            .contains("## meshsim gate: FAIL — 1 regressions in 1 of 1 scenarios"),
        "{}",
        g.stdout
    );
    let row = g
        .stdout
        .lines()
        .find(|l| l.starts_with("| `mesh.latency.p99_ms`"))
        .expect("a row for the metric");
    let ms = |us: u64| reports::summary::number(us as f64 / 1000.0);
    assert!(
        row.contains(&ms(p99))
            && row.contains(&ms(p99 * 12 / 10))
            && row.contains("+20.0%")
            && row.contains("regression"),
        "{row}"
    );
    // Only that row regressed; the overhead, computed from both runs, is not in the edited file.
    assert_eq!(g.stdout.matches("❌").count(), 1, "{}", g.stdout);
    let junit = std::fs::read_to_string(junit).unwrap();
    assert!(junit.contains("failures=\"1\""), "{junit}");
    let failing = junit
        .split("<testcase")
        .find(|c| c.contains("<failure"))
        .expect("a failing test case");
    assert!(
        failing.contains("name=\"mesh.latency.p99_ms\""),
        "{failing}"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    assert_eq!(v["verdict"], "fail");
    assert_eq!(v["regressions"], 1);
    // On GitHub Actions: an annotation and the job summary.
    let summary = t.path().join("step-summary.md");
    let out = meshsim()
        .args(["gate", "--baseline"])
        .arg(&b)
        .arg("--current")
        .arg(&c)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("::error file=") && l.contains("mesh.latency.p99_ms")),
        "{stdout}"
    );
    assert!(std::fs::read_to_string(summary).unwrap().contains("FAIL"));
}

#[test]
fn an_improvement_and_an_identical_run_pass() {
    let t = tempfile::tempdir().unwrap();
    let base = baseline_report();
    let mut better = base.clone();
    let p99 = base["mesh"]["latency"]["p99_us"].as_u64().unwrap();
    better["mesh"]["latency"]["p99_us"] = (p99 / 2).into();
    let b = run_dir(t.path(), "base", &base);
    let g = gate(&b, &run_dir(t.path(), "better", &better), &[]);
    assert_eq!(g.code, 0, "{}{}", g.stdout, g.stderr);
    assert!(
        g.stdout.contains("PASS") && g.stdout.contains("improvement"),
        "{}",
        g.stdout
    );
    let g = gate(&b, &run_dir(t.path(), "same", &base), &[]);
    assert_eq!(g.code, 0, "{}{}", g.stdout, g.stderr);
    assert!(
        g.stdout.contains("All ") && !g.stdout.contains("regression |"),
        "{}",
        g.stdout
    );
}

#[test]
fn a_new_failure_reason_is_a_regression_even_though_the_baseline_never_listed_it() {
    let t = tempfile::tempdir().unwrap();
    let base = baseline_report();
    let mut worse = base.clone();
    worse["mesh"]["books"]["failed_by_reason"]["connect_failed"] = 3.into();
    let g = gate(
        &run_dir(t.path(), "base", &base),
        &run_dir(t.path(), "cur", &worse),
        &[],
    );
    assert_eq!(g.code, 1, "{}", g.stdout);
    assert!(
        g.stdout
            .contains("| `mesh.failed.connect_failed` | 0 | 3 |"),
        "{}",
        g.stdout
    );
}

#[test]
fn bad_input_is_exit_2_and_names_what_is_wrong() {
    let t = tempfile::tempdir().unwrap();
    let base = baseline_report();
    let b = run_dir(t.path(), "base", &base);
    // Another seed.
    let mut other = base.clone();
    other["run"]["seed"] = (base["run"]["seed"].as_u64().unwrap() + 1).into();
    let g = gate(&b, &run_dir(t.path(), "seed", &other), &[]);
    assert_eq!(g.code, 2);
    assert!(
        g.stderr.contains("seeds") && g.stderr.contains("base/report.json"),
        "{}",
        g.stderr
    );
    // Another scenario.
    let mut other = base.clone();
    other["run"]["scenario"] = "something-else".into();
    let g = gate(&b, &run_dir(t.path(), "other", &other), &[]);
    assert_eq!(g.code, 2);
    assert!(
        g.stderr.contains("steady-overhead: only in baseline"),
        "{}",
        g.stderr
    );
    // Another schema version.
    let mut other = base.clone();
    other["schema_version"] = 99.into();
    let g = gate(&b, &run_dir(t.path(), "schema", &other), &[]);
    assert_eq!(g.code, 2);
    assert!(
        g.stderr.contains("schema/report.json") && g.stderr.contains("schema version 99"),
        "{}",
        g.stderr
    );
    // A missing folder.
    let g = gate(&b, &t.path().join("nowhere"), &[]);
    assert_eq!(g.code, 2);
    assert!(g.stderr.contains("nowhere"), "{}", g.stderr);
    // A malformed config, and a rule naming no metric.
    let cfg = t.path().join("gate.toml");
    std::fs::write(
        &cfg,
        "[[rule]]\nmetric = \"mesh.latency.p99_ms\"\nbetter = \"up\"\n",
    )
    .unwrap();
    let g = gate(&b, &b, &["--config", cfg.to_str().unwrap()]);
    assert_eq!(g.code, 2);
    assert!(
        g.stderr.contains("gate.toml, line 3") && g.stderr.contains("up"),
        "{}",
        g.stderr
    );
    std::fs::write(
        &cfg,
        "[[rule]]\nmetric = \"mesh.latency.p99\"\nbetter = \"lower\"\n",
    )
    .unwrap();
    let g = gate(&b, &b, &["--config", cfg.to_str().unwrap()]);
    assert_eq!(g.code, 2);
    assert!(
        g.stderr.contains("`mesh.latency.p99` matches no metric"),
        "{}",
        g.stderr
    );
}

#[test]
fn update_records_the_current_run_and_says_what_changed() {
    let t = tempfile::tempdir().unwrap();
    let base = baseline_report();
    let mut worse = base.clone();
    worse["mesh"]["latency"]["p50_us"] =
        (base["mesh"]["latency"]["p50_us"].as_u64().unwrap() + 1000).into();
    let lib = t.path().join("baselines");
    let cur = t.path().join("library");
    run_dir(&lib, "steady-overhead", &base);
    run_dir(&cur, "steady-overhead", &worse);
    assert_eq!(gate(&lib, &cur, &[]).code, 1);
    let g = gate(&lib, &cur, &["--update"]);
    assert_eq!(g.code, 0, "{}", g.stderr);
    assert!(
        g.stderr
            .contains("steady-overhead: 1 metrics changed (mesh.latency.p50_ms)"),
        "{}",
        g.stderr
    );
    assert_eq!(gate(&lib, &cur, &[]).code, 0);
    // A scenario new to the library gets its own baseline folder.
    let mut new = base.clone();
    new["run"]["scenario"] = "brand-new".into();
    run_dir(&cur, "brand-new", &new);
    assert_eq!(
        gate(&lib, &cur, &[]).code,
        2,
        "a scenario without a baseline is not gated silently"
    );
    let g = gate(&lib, &cur, &["--update"]);
    assert!(g.stderr.contains("brand-new: new baseline"), "{}", g.stderr);
    assert!(lib.join("brand-new/report.json").is_file());
    assert_eq!(gate(&lib, &cur, &[]).code, 0);
}

/// A bench report with direct and sidecar points at 1,000 rps (P50/P99 µs) and their sustained
/// rates.
fn bench(direct: (u64, u64), sidecar: (u64, u64), sustained: (f64, f64)) -> serde_json::Value {
    let point = |config: &str, (p50, p99): (u64, u64)| {
        serde_json::json!({
            "config": config, "protocol": "http1", "cpu_ms_per_1000": null, "rss_kib": [], "hgrm": "",
            "load": { "rate_rps": 1000.0, "achieved_rps": 1000.0, "due": 10000, "ok": 10000, "errors": {},
                      "p50_us": p50, "p90_us": p99, "p99_us": p99, "p999_us": p99, "p9999_us": p99, "max_us": p99 }
        })
    };
    let config = |config: &str, rps: f64| {
        serde_json::json!({
            "config": config, "protocol": "http1", "proxies": 1, "max_sustained_rps": rps, "saturated": false,
            "rss_idle_kib": [], "rss_load_kib": [], "cpu_ms_per_1000_per_hop": null
        })
    };
    serde_json::json!({
        "schema_version": 1, "kind": "bench",
        "machine": { "cpu": "test", "cores": 2, "kernel": "test", "peers": {} },
        "command": "meshsim bench",
        "settings": { "duration_s": 5.0, "warmup_s": 1.0, "connections_h1": 16, "connections_h2": 4, "rates_rps": [1000.0], "proxy_threads": 1 },
        "points": [point("direct", direct), point("sidecar", sidecar)],
        "added": [], "configs": [config("direct", sustained.0), config("sidecar", sustained.1)],
        "skipped": [], "cross_check": null, "plots": []
    })
}

#[test]
fn a_bench_is_gated_on_ratios_to_the_direct_path_not_on_absolute_times() {
    let t = tempfile::tempdir().unwrap();
    let base = run_dir(
        t.path(),
        "base",
        &bench((100, 400), (150, 600), (8000.0, 6000.0)),
    );
    // A machine twice as slow: every time doubles, every ratio stays. Pass.
    let slow = run_dir(
        t.path(),
        "slow",
        &bench((200, 800), (300, 1200), (4000.0, 3000.0)),
    );
    let g = gate(&base, &slow, &[]);
    assert_eq!(g.code, 0, "{}{}", g.stdout, g.stderr);
    // The sidecar adds more than the 10% the rule allows: P50 ratio 1.5 -> 1.8. Fail.
    let worse = run_dir(
        t.path(),
        "worse",
        &bench((100, 400), (180, 600), (8000.0, 6000.0)),
    );
    let g = gate(&base, &worse, &[]);
    assert_eq!(g.code, 1, "{}{}", g.stdout, g.stderr);
    assert!(
        g.stdout.lines().any(|l| l
            .starts_with("| `bench.http1.sidecar.p50_ratio@1000` | 1.5000 | 1.8000 |")
            && l.contains("regression")),
        "{}",
        g.stdout
    );
    // Within tolerance (1.5 -> 1.6, +6.7%): pass.
    let noise = run_dir(
        t.path(),
        "noise",
        &bench((100, 400), (160, 600), (8000.0, 6000.0)),
    );
    assert_eq!(gate(&base, &noise, &[]).code, 0);
}
