//! Determinism is the product: every shipped scenario, run twice by two `meshsim run` processes
//! with the same seed, writes byte-identical files — every one of them: report, summary, page,
//! plots, metrics, traces and access logs. Another seed changes the measurements themselves, not
//! only the fields that name the seed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

fn meshsim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meshsim"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn start(file: &Path, seed: u64, out: &Path) -> Child {
    meshsim()
        .current_dir(root())
        .args([
            "run",
            "--quiet",
            "--access-log",
            "--seed",
            &seed.to_string(),
        ])
        .arg(file)
        .arg("--out")
        .arg(out)
        .spawn()
        .unwrap()
}

fn finish(mut c: Child, what: &str) {
    let status = c.wait().unwrap();
    // 0 pass, 1 an assertion failed: both write every file; 2 (bad input) would not.
    assert!(matches!(status.code(), Some(0 | 1)), "{what}: {status}");
}

/// Every file under `dir`, by relative path.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The report's measurements: the runs, without the fields that only name the run.
fn measurements(dir: &Path) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("run");
    o.remove("assertions");
    o.remove("verdict");
    v
}

#[test]
fn every_scenario_replays_byte_for_byte_across_processes_and_another_seed_differs() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = scenarios::all();
    assert!(scenarios.len() >= 10, "{scenarios:?}");
    for file in scenarios {
        let name = file.file_stem().unwrap().to_string_lossy().to_string();
        let seed = sim::scenario::load(&file).unwrap().scenario.seed;
        let (a, b, c) = (
            dir.path().join(format!("{name}-a")),
            dir.path().join(format!("{name}-b")),
            dir.path().join(format!("{name}-c")),
        );
        // Two processes at once (the machine has two cores), then the other seed.
        let (pa, pb) = (start(&file, seed, &a), start(&file, seed, &b));
        finish(pa, &name);
        finish(pb, &name);
        finish(start(&file, seed + 1, &c), &name);

        let (fa, fb) = (files(&a), files(&b));
        assert!(
            fa.contains_key("report.json")
                && fa.contains_key("access.log.jsonl")
                && fa.contains_key("traces.otlp.json")
                && fa.keys().any(|k| k.starts_with("metrics/"))
                // PNGs need a font; CI installs one and requires them (MESHSIM_REQUIRE_TOOLS).
                && (std::env::var_os("MESHSIM_REQUIRE_TOOLS").is_none()
                    || fa.keys().any(|k| k.ends_with(".png"))),
            "{name}: not every output was written: {:?}",
            fa.keys()
        );
        assert_eq!(
            fa.keys().collect::<Vec<_>>(),
            fb.keys().collect::<Vec<_>>(),
            "{name}: different files"
        );
        for (k, bytes) in &fa {
            assert!(
                bytes == &fb[k],
                "{name}: {k} differs between two processes with seed {seed}"
            );
        }
        assert!(
            measurements(&a) != measurements(&c),
            "{name}: seeds {seed} and {} measured exactly the same",
            seed + 1
        );
    }
}
