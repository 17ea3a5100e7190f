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

/// The real-socket bench end to end, small: direct and one meshsim sidecar (a separate
/// `meshsim sidecar` process), HTTP/1.1 and HTTP/2, one rate. Peers are left out here (CI may not
/// have them); `meshsim bench` runs them when installed.
#[test]
fn bench_measures_the_real_sidecar_and_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = meshsim()
        .args([
            "bench",
            "--configs",
            "direct,meshsim-2hop,meshsim-2hop-mtls",
            "--rates",
            "300",
            "--duration",
            "1.5",
            "--warmup",
            "0.5",
            "--base-port",
            "24000",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["kind"], "bench");
    let schema: serde_json::Value =
        serde_json::from_str(reports::schema::COMMITTED_BENCH_SCHEMA).unwrap();
    let errors: Vec<String> = jsonschema::validator_for(&schema)
        .unwrap()
        .iter_errors(&report)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "bench report.json vs its schema: {errors:?}"
    );
    let points = report["points"].as_array().unwrap();
    assert_eq!(points.len(), 6, "3 configs x 2 protocols");
    for p in points {
        let l = &p["load"];
        // 300 rps for 1 s measured: every request answered, none failed.
        assert!(l["ok"].as_u64().unwrap() >= 250, "{p}");
        assert_eq!(l["errors"], serde_json::json!({}), "{p}");
        assert!(l["p50_us"].as_u64().unwrap() > 0);
        assert!(dir.path().join(p["hgrm"].as_str().unwrap()).is_file());
        if p["config"] != "direct" {
            // Each sidecar is a process of its own: its memory and CPU were read.
            assert!(!p["rss_kib"].as_array().unwrap().is_empty(), "{p}");
            assert!(p["cpu_ms_per_1000"].as_f64().is_some(), "{p}");
        }
    }
    let added = report["added"].as_array().unwrap();
    assert_eq!(added.len(), 4);
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(summary.contains("## Goals"), "{summary}");
    let cal = std::fs::read_to_string(dir.path().join("calibration.toml")).unwrap();
    assert!(
        cal.contains("[hop.http1]") && cal.contains("[footprint]"),
        "{cal}"
    );
}

#[test]
fn load_generator_reports_connect_errors_instead_of_hanging() {
    // Nothing listens on this port: every request is a connect error, counted.
    let out = meshsim()
        .args([
            "load",
            "127.0.0.1:1",
            "--rate",
            "200",
            "--duration",
            "1",
            "--warmup",
            "0.2",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"connect\""), "{text}");
    assert!(text.contains(" 0 ok"), "{text}");
}

/// `meshsim sidecar` as an operator runs it: Prometheus metrics on `--admin`, a JSON access
/// log with `--access-log`, for a request proxied to a plain HTTP upstream.
#[test]
#[allow(clippy::disallowed_methods)] // a blocking upstream thread in a real-socket test, not a simulated path
fn sidecar_serves_metrics_and_writes_access_logs() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    // The upstream: answers every request 200 "hi" and closes.
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let up = upstream.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in upstream.incoming().flatten() {
            let mut r = BufReader::new(conn);
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = r
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.jsonl");
    let (outbound, inbound, admin) = ("127.0.0.1:24100", "127.0.0.1:24101", "127.0.0.1:24102");
    let mut child = meshsim()
        .args([
            "sidecar",
            "--outbound",
            outbound,
            "--inbound",
            inbound,
            "--admin",
            admin,
        ])
        .args([
            "--service",
            "web",
            "--identity",
            "spiffe://cluster.local/ns/default/sa/web",
        ])
        .arg("--route")
        .arg(format!("echo={up}@http1"))
        .arg("--access-log")
        .arg(&log)
        .spawn()
        .unwrap();
    let http = |addr: &str, req: &str| -> Option<String> {
        let mut s = TcpStream::connect(addr).ok()?;
        s.write_all(req.as_bytes()).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    };
    let mut ready = false;
    for _ in 0..100 {
        if http(
            admin,
            "GET /ready HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        )
        .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        {
            ready = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let result = std::panic::catch_unwind(|| {
        assert!(ready, "the sidecar's admin endpoint never answered");
        let resp = http(
            outbound,
            "GET /x HTTP/1.1\r\nhost: echo\r\nconnection: close\r\n\r\n",
        )
        .unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        let metrics = http(
            admin,
            "GET /metrics HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        )
        .unwrap();
        assert!(
            metrics.contains(
                "meshsim_requests_total{direction=\"outbound\",service=\"echo\",status_class=\"2xx\"} 1"
            ),
            "{metrics}"
        );
        assert!(metrics.contains("# TYPE meshsim_request_duration_seconds histogram"));
        // The log has a writer thread of its own (it never blocks the proxy): wait for it.
        let mut lines = String::new();
        for _ in 0..100 {
            lines = std::fs::read_to_string(&log).unwrap_or_default();
            if !lines.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let rec: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
        assert_eq!(rec["destination_service"], "echo");
        assert_eq!(
            rec["source_identity"],
            "spiffe://cluster.local/ns/default/sa/web"
        );
        assert_eq!(rec["status"], 200);
        assert_eq!(rec["path"], "/x");
        assert_eq!(rec["trace_id"].as_str().unwrap().len(), 32);
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
