//! The seed workflow as a user runs it. `meshsim sweep`: failing seeds are listed with a command
//! that reproduces them byte for byte; the outputs do not depend on `--jobs`; shards merge to
//! exactly the unsharded sweep; bad input is exit 2. `meshsim shrink`: a failing seed's scenario
//! shrinks to a smaller file on which the same assertion still fails. The scenario is the library's partition scenario with
//! its success assertion raised to 0.795, which about half the seeds miss.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn meshsim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meshsim"))
}

/// The partition scenario with a stricter assertion, written into `dir`.
fn scenario(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/partition.toml");
    let text = std::fs::read_to_string(src).unwrap();
    let strict = text.replace("\"success_ratio >= 0.5\"", "\"success_ratio >= 0.795\"");
    assert_ne!(
        text, strict,
        "the assertion to tighten is still in partition.toml"
    );
    let p = dir.join("strict-partition.toml");
    std::fs::write(&p, strict).unwrap();
    p
}

fn sweep(file: &Path, out: &Path, extra: &[&str]) -> Output {
    meshsim()
        .arg("sweep")
        .arg(file)
        .args(["--seeds", "1..=6", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn a_failing_seed_is_listed_with_a_command_that_replays_it_byte_for_byte() {
    let t = tempfile::tempdir().unwrap();
    let file = scenario(t.path());
    let out = t.path().join("sweep");
    let junit = t.path().join("junit.xml");
    let o = sweep(
        &file,
        &out,
        &["--jobs", "2", "--junit", junit.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_slice(&read(&out.join("summary.json"))).unwrap();
    let failing: Vec<u64> = summary["failing_seeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert!(
        !failing.is_empty() && failing.len() < 6,
        "{failing:?}: the scenario should split the seeds"
    );
    let seed = failing[0];
    let repro = format!("run {} --seed {seed}", file.display());
    assert!(
        stderr.contains(&format!("seed {seed} FAILED")) && stderr.contains(&repro),
        "{stderr}"
    );
    // The record says so too, and the Markdown and JUnit list it.
    let records = String::from_utf8(read(&out.join("records.jsonl"))).unwrap();
    let seeds: Vec<u64> = records
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seed"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        seeds,
        [1, 2, 3, 4, 5, 6],
        "one record per seed, in seed order"
    );
    let md = String::from_utf8(read(&out.join("summary.md"))).unwrap();
    assert!(
        md.contains(&format!("- seed {seed}: success_ratio >= 0.795")),
        "{md}"
    );
    let junit = String::from_utf8(read(&junit)).unwrap();
    assert!(
        junit.contains(&format!("failures=\"{}\"", failing.len())),
        "{junit}"
    );
    // Replay: the command's own report is the sweep's, byte for byte.
    let replay = t.path().join("replay");
    let o = meshsim()
        .arg("run")
        .arg(&file)
        .args(["--seed", &seed.to_string(), "--quiet", "--out"])
        .arg(&replay)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        read(&replay.join("report.json"))
            == read(
                &out.join("failing")
                    .join(seed.to_string())
                    .join("report.json")
            ),
        "seed {seed}: the replay's report differs from the sweep's"
    );
}

#[test]
fn outputs_do_not_depend_on_jobs_and_shards_merge_to_the_unsharded_sweep() {
    let t = tempfile::tempdir().unwrap();
    let file = scenario(t.path());
    let (one, two) = (t.path().join("jobs1"), t.path().join("jobs2"));
    sweep(&file, &one, &["--jobs", "1", "--quiet"]);
    sweep(&file, &two, &["--jobs", "2", "--quiet"]);
    let files = ["records.jsonl", "summary.json", "summary.md", "seeds.svg"];
    for f in files {
        assert!(
            read(&one.join(f)) == read(&two.join(f)),
            "{f} differs between --jobs 1 and 2"
        );
    }
    // Shard 0 by flag, shard 1 as a Kubernetes Indexed Job sees it.
    let (s0, s1, merged) = (
        t.path().join("s0"),
        t.path().join("s1"),
        t.path().join("merged"),
    );
    sweep(&file, &s0, &["--shard", "0/2", "--quiet"]);
    let o = meshsim()
        .arg("sweep")
        .arg(&file)
        .args(["--seeds", "1..=6", "--quiet", "--out"])
        .arg(&s1)
        .env("JOB_COMPLETION_INDEX", "1")
        .env("JOB_COMPLETIONS", "2")
        .output()
        .unwrap();
    assert!(
        o.status.code().is_some_and(|c| c <= 1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let shard_lines = |d: &Path| {
        String::from_utf8(read(&d.join("records.jsonl")))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!((shard_lines(&s0), shard_lines(&s1)), (3, 3));
    let o = meshsim()
        .args(["sweep", "merge"])
        .arg(&s1)
        .arg(&s0)
        .arg("--out")
        .arg(&merged)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for f in files {
        assert!(
            read(&one.join(f)) == read(&merged.join(f)),
            "{f}: merged shards differ from one sweep"
        );
    }
    // Merging a shard twice is refused.
    let o = meshsim()
        .args(["sweep", "merge"])
        .arg(&s0)
        .arg(&s0)
        .arg("--out")
        .arg(t.path().join("twice"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("more than one folder"));
    // A sweep gates against itself (the same seeds): pass.
    let o = meshsim()
        .args(["gate", "--baseline"])
        .arg(&one)
        .arg("--current")
        .arg(&merged)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn bad_input_is_exit_2_with_a_message() {
    let t = tempfile::tempdir().unwrap();
    let file = scenario(t.path());
    for (args, expect) in [
        (vec!["--seeds", "6..1"], "names no seed"),
        (vec!["--seeds", "1-6"], "expected A..B"),
        (vec!["--seeds", "1..=6", "--shard", "2/2"], "0 <= I < N"),
        (vec!["--seeds", "1..=6", "--budget", "soon"], "--budget"),
    ] {
        let o = meshsim()
            .arg("sweep")
            .arg(&file)
            .args(&args)
            .arg("--out")
            .arg(t.path().join("x"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(expect),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = meshsim()
        .args(["sweep", "nowhere.toml", "--seeds", "1..3"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nowhere.toml"));
}

#[test]
fn shrinking_a_failing_seed_gives_a_smaller_scenario_that_fails_the_same_way() {
    let t = tempfile::tempdir().unwrap();
    let file = scenario(t.path());
    let min = t.path().join("min.toml");
    // Seed 1 fails the raised success assertion (sweep above); shrink within 60 simulations.
    let o = meshsim()
        .arg("shrink")
        .arg(&file)
        .args(["--seed", "1", "--budget", "60", "--out"])
        .arg(&min)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("step   1:") && stderr.contains("still fails: kept"),
        "{stderr}"
    );
    let doc: toml::Table = toml::from_str(&std::fs::read_to_string(&min).unwrap()).unwrap();
    let orig: toml::Table = toml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let faults = |d: &toml::Table| {
        d.get("faults")
            .and_then(|f| f.as_array())
            .map_or(0, Vec::len)
    };
    let duration = |d: &toml::Table| {
        d["workload"]["duration"]
            .as_str()
            .unwrap()
            .parse::<sim::scenario::Dur>()
            .unwrap()
    };
    assert!(
        faults(&doc) < faults(&orig) || duration(&doc) < duration(&orig),
        "nothing shrank:\n{}",
        std::fs::read_to_string(&min).unwrap()
    );
    // It runs as a plain scenario (its own seed) and the same assertion fails.
    let out = t.path().join("min-run");
    let o = meshsim()
        .arg("run")
        .arg(&min)
        .arg("--quiet")
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&read(&out.join("report.json"))).unwrap();
    let failed: Vec<&str> = report["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["passed"] == false)
        .map(|a| a["text"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["success_ratio >= 0.795"]);
    // A seed that passes has nothing to shrink.
    let o = meshsim()
        .arg("shrink")
        .arg(&file)
        .args(["--seed", "3", "--out"])
        .arg(t.path().join("none.toml"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to shrink"));
}

#[test]
fn check_determinism_runs_twice_and_says_the_runs_are_identical() {
    let t = tempfile::tempdir().unwrap();
    let o = meshsim()
        .args(["run", "--check-determinism", "--quiet", "--out"])
        .arg(t.path().join("run"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/partition.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("the second run is identical")
            && stdout.contains("over 11 simulated seconds"),
        "{stdout}"
    );
}

#[test]
fn set_overrides_a_field_and_its_repro_carries_it_and_matrix_compares_values() {
    let t = tempfile::tempdir().unwrap();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/partition.toml");
    let run = |out: &Path, extra: &[&str]| {
        meshsim()
            .arg("run")
            .arg(&file)
            .args(["--quiet", "--out"])
            .arg(out)
            .args(extra)
            .output()
            .unwrap()
    };
    let report = |d: &Path| -> serde_json::Value {
        serde_json::from_slice(&read(&d.join("report.json"))).unwrap()
    };
    let (plain, set) = (t.path().join("plain"), t.path().join("set"));
    run(&plain, &[]);
    run(
        &set,
        &[
            "--set",
            "services.db.replicas=3",
            "--set",
            "workload.rate_rps=150",
        ],
    );
    let (a, b) = (report(&plain), report(&set));
    assert!(
        b["mesh"]["books"]["sent"].as_u64() > a["mesh"]["books"]["sent"].as_u64(),
        "the rate override took effect"
    );
    assert_ne!(
        a["run"]["scenario_hash"], b["run"]["scenario_hash"],
        "the hash is of the scenario as run"
    );
    assert!(
        b["run"]["repro"]
            .as_str()
            .unwrap()
            .ends_with("--set services.db.replicas=3 --set workload.rate_rps=150"),
        "{}",
        b["run"]["repro"]
    );
    // A bad override names itself.
    let o = run(&t.path().join("bad"), &["--set", "services.web.replicas=1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("--set services.web.replicas=1: `services` has no entry named `web`")
    );
    // --matrix: one run per value and a table with a column each.
    let m = t.path().join("matrix");
    let o = run(&m, &["--matrix", "mesh.preset=istio-1.24,linkerd-2.16"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let md = std::fs::read_to_string(m.join("matrix.md")).unwrap();
    assert!(
        md.contains("| metric | mesh.preset=istio-1.24 | mesh.preset=linkerd-2.16 |"),
        "{md}"
    );
    assert!(m.join("mesh.preset=linkerd-2.16/report.json").is_file());
}

#[test]
fn a_swarm_sweep_draws_each_seeds_scenario_and_the_drawn_file_replays_it() {
    let t = tempfile::tempdir().unwrap();
    let file = scenario(t.path());
    let mut text = std::fs::read_to_string(&file).unwrap();
    text += "\n[swarm]\n\"faults.0.until\" = { range = [\"3500ms\", \"6s\"] }\n\"workload.rate_rps\" = { range = [60, 140] }\n\"services.db.replicas\" = { choose = [1, 2, 3] }\n";
    let file = t.path().join("swarm.toml");
    std::fs::write(&file, &text).unwrap();
    let out = t.path().join("swarm");
    let o = sweep(&file, &out, &["--swarm", "--jobs", "2"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{stderr}");
    // Every drawn value is printed and recorded; seeds draw differently.
    let records: Vec<serde_json::Value> = String::from_utf8(read(&out.join("records.jsonl")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 6);
    for r in &records {
        let seed = r["seed"].as_u64().unwrap();
        let drawn = r["drawn"].as_object().unwrap();
        assert_eq!(drawn.len(), 3, "{r}");
        let rate: u64 = drawn["workload.rate_rps"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((60..=140).contains(&rate));
        assert!(
            stderr.contains(&format!("seed {seed} drew faults.0.until=")),
            "{stderr}"
        );
        assert!(out.join(format!("drawn/{seed}.toml")).is_file());
    }
    let rates: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|r| r["drawn"]["workload.rate_rps"].as_str().unwrap())
        .collect();
    assert!(rates.len() > 1, "every seed drew the same rate");
    // The drawn file is the reproduction: running it with the seed gives the sweep's report.
    let summary: serde_json::Value =
        serde_json::from_slice(&read(&out.join("summary.json"))).unwrap();
    if let Some(seed) = summary["failing_seeds"]
        .as_array()
        .unwrap()
        .first()
        .and_then(|s| s.as_u64())
    {
        let replay = t.path().join("replay");
        meshsim()
            .arg("run")
            .arg(out.join(format!("drawn/{seed}.toml")))
            .args(["--seed", &seed.to_string(), "--quiet", "--out"])
            .arg(&replay)
            .output()
            .unwrap();
        assert!(
            read(&replay.join("report.json"))
                == read(&out.join(format!("failing/{seed}/report.json")))
        );
    }
    // A range that can draw an invalid scenario is refused at load, naming the entry (the
    // fault starts at 3 s, so it cannot end at 1 s).
    std::fs::write(&file, text.replace("\"3500ms\", \"6s\"", "\"1s\", \"6s\"")).unwrap();
    let o = sweep(&file, &t.path().join("bad"), &["--swarm"]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("swarm.\"faults.0.until\"") && e.contains("drawing 1s"),
        "{e}"
    );
}

#[test]
fn a_sweep_matrix_puts_each_values_means_side_by_side() {
    let t = tempfile::tempdir().unwrap();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/partition.toml");
    let out = t.path().join("m");
    let o = meshsim()
        .arg("sweep")
        .arg(&file)
        .args([
            "--seeds",
            "1..=3",
            "--quiet",
            "--matrix",
            "services.db.replicas=1,3",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.code().is_some_and(|c| c <= 1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let md = std::fs::read_to_string(out.join("matrix.md")).unwrap();
    assert!(
        md.contains("| metric | services.db.replicas=1 | services.db.replicas=3 |"),
        "{md}"
    );
    assert!(
        md.lines()
            .any(|l| l.starts_with("| mesh.latency.p99_ms |") && l.matches('±').count() == 2),
        "{md}"
    );
    for v in ["1", "3"] {
        let s: serde_json::Value = serde_json::from_slice(&read(
            &out.join(format!("services.db.replicas={v}/summary.json")),
        ))
        .unwrap();
        assert_eq!(s["seeds"].as_array().unwrap().len(), 3);
    }
}
