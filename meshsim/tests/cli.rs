//! The binary as a user runs it: exit codes 0 / 1 / 2, files written, errors that name the file and
//! line, and byte-identical reports across processes for one seed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn meshsim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meshsim"))
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name)
}

#[test]
fn run_writes_reports_and_exits_0_and_replays_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&a, &b] {
        let o = meshsim()
            .args(["run", "--quiet", "--seed", "5"])
            .arg(scenario("gray-failure.toml"))
            .arg("--out")
            .arg(out)
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let ja = std::fs::read(a.join("report.json")).unwrap();
    assert_eq!(
        ja,
        std::fs::read(b.join("report.json")).unwrap(),
        "same seed, different processes, different bytes"
    );
    let summary = std::fs::read_to_string(a.join("summary.md")).unwrap();
    assert!(
        summary.starts_with("# PASS: gray-failure (seed 5)"),
        "{summary}"
    );
    assert!(
        summary.contains("--seed 5"),
        "summary carries the repro command"
    );
}

#[test]
fn failed_assertion_exits_1_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::fs::read_to_string(scenario("gray-failure.toml"))
        .unwrap()
        .replace("\"p99_ms >= 150\"", "\"p99_ms <= 10\"");
    let file = dir.path().join("strict.toml");
    std::fs::write(&file, src).unwrap();
    let o = meshsim()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("[FAILED] p99_ms <= 10"), "{stdout}");
    assert!(
        stdout.contains("reproduce: cargo run --release --bin meshsim -- run"),
        "{stdout}"
    );
}

#[test]
fn bad_input_exits_2_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "name = \"x\"\n[[services]]\nname = \"web\"\nreplica = 3\n",
    )
    .unwrap();
    for cmd in ["run", "check"] {
        let o = meshsim().arg(cmd).arg(&file).output().unwrap();
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!(
                "{}:4:1: services[0].replica: unknown field `replica`",
                file.display()
            )),
            "{err}"
        );
        assert!(err.contains("`replicas`"), "says what was expected: {err}");
    }
    let o = meshsim()
        .args(["run", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn help_reads_well() {
    let o = meshsim().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("Simulate a service mesh"), "{text}");
    assert!(text.contains("run") && text.contains("check"));
}
