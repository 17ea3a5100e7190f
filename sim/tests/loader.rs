//! The loader with hostile input: a scenario may come from anyone, so `proxy_cost` reads only a
//! calibration file beside the scenario, never a device or an oversized file, and an error
//! names the problem without quoting the file's content.

use std::path::PathBuf;

/// A fresh folder for this test's files.
fn folder(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("meshsim-loader-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn scenario_with_cost(dir: &std::path::Path, cost: &str) -> PathBuf {
    let p = dir.join("s.toml");
    std::fs::write(
        &p,
        format!(
            "name = \"t\"\n[mesh]\nproxy_cost = {cost:?}\n[[services]]\nname = \"web\"\n[workload]\ntarget = \"web\"\nrate_rps = 10\nduration = \"2s\"\n"
        ),
    )
    .unwrap();
    p
}

#[test]
fn proxy_cost_reads_only_calibration_files_beside_the_scenario() {
    let dir = folder("paths");
    for bad in [
        "/etc/passwd",
        "../s.toml",
        "calibration/../../x.toml",
        "/dev/zero",
        "cal.txt",
    ] {
        let e = sim::scenario::load(&scenario_with_cost(&dir, bad)).unwrap_err();
        assert_eq!(e.field, "mesh.proxy_cost", "{bad}: {e}");
        assert!(e.message.contains("relative path"), "{bad}: {e}");
        assert_eq!(e.line, 3, "{bad}: {e}");
    }
    // A secret in a file that is not a calibration: refused, and not repeated.
    std::fs::write(dir.join("secret.toml"), "password = \"hunter2\"\n").unwrap();
    let e = sim::scenario::load(&scenario_with_cost(&dir, "secret.toml")).unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    std::fs::write(dir.join("broken.toml"), "[hop.http1\ntoken = \"hunter2\"\n").unwrap();
    let e = sim::scenario::load(&scenario_with_cost(&dir, "broken.toml")).unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(e.message.contains("line 1"), "{e}");
    // An oversized file is refused before it is read.
    std::fs::write(dir.join("big.toml"), vec![b'#'; 2 << 20]).unwrap();
    let e = sim::scenario::load(&scenario_with_cost(&dir, "big.toml")).unwrap_err();
    assert!(e.message.contains("at most"), "{e}");
    // A calibration file below the scenario's folder loads, as the shipped one does.
    std::fs::create_dir_all(dir.join("calibration")).unwrap();
    let lib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/calibration");
    std::fs::copy(
        lib.join("bench-open-loop.toml"),
        dir.join("calibration/bench-open-loop.toml"),
    )
    .unwrap();
    sim::scenario::load(&scenario_with_cost(
        &dir,
        "calibration/bench-open-loop.toml",
    ))
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
