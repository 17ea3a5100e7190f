//! The load generator checked against an independent open-loop generator, oha
//! (`cargo install oha`), on the same target in the same run: both at the same rate with
//! oha's coordinated-omission correction on (`--latency-correction`).
#![allow(clippy::disallowed_methods)] // real processes

use std::time::Duration;

use reports::bench::{BenchReport, CrossCheck, LoadStats};

use crate::load::{self, LoadSpec};
use crate::matrix::MatrixSpec;

fn find_oha() -> Option<std::path::PathBuf> {
    let home = std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cargo/bin"));
    let dir = std::env::var_os("OHA_DIR").map(std::path::PathBuf::from);
    crate::peers::find_program_in("oha", home.into_iter().chain(dir))
}

/// Run ours, then oha, at 2,000 rps (or the rate nearest it) against the direct target over
/// HTTP/1.1.
pub fn oha(spec: &MatrixSpec, report: &BenchReport) -> Result<CrossCheck, String> {
    let exe = find_oha().ok_or("oha is not installed (cargo install oha)")?;
    let rate = report.rate_nearest(2000.0);
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], spec.base_port));
    let secs = spec.duration.as_secs_f64().max(2.0);
    let ours = load::run(&LoadSpec {
        target,
        host: "bench".into(),
        path: "/".into(),
        protocol: mesh_core::registry::Protocol::Http1,
        rate_rps: rate,
        connections: spec.connections_h1,
        duration: Duration::from_secs_f64(secs),
        warmup: Duration::from_secs_f64(spec.warmup.as_secs_f64().min(secs / 2.0)),
        max_requests: None,
        timeout: Duration::from_secs(5),
    })
    .map_err(|e| e.to_string())?
    .summary(rate);
    let out = std::process::Command::new(&exe)
        .args([
            "--no-tui",
            "--output-format",
            "json",
            "--latency-correction",
        ])
        .arg("-q")
        .arg(format!("{rate}"))
        .arg("-z")
        .arg(format!("{}ms", (secs * 1000.0) as u64))
        .arg("-c")
        .arg(spec.connections_h1.to_string())
        .arg(format!("http://{target}/"))
        .output()
        .map_err(|e| format!("running oha: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "oha failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or_default()
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("oha's JSON: {e}"))?;
    let pct = |k: &str| {
        v["latencyPercentiles"][k]
            .as_f64()
            .map(|s| (s * 1e6) as u64)
            .unwrap_or(0)
    };
    let ok = v["statusCodeDistribution"]["200"].as_u64().unwrap_or(0);
    let theirs = LoadStats {
        rate_rps: rate,
        achieved_rps: v["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
        due: ok,
        ok,
        errors: Default::default(),
        p50_us: pct("p50"),
        p90_us: pct("p90"),
        p99_us: pct("p99"),
        p999_us: pct("p99.9"),
        p9999_us: pct("p99.99"),
        max_us: v["summary"]["slowest"]
            .as_f64()
            .map(|s| (s * 1e6) as u64)
            .unwrap_or(0),
    };
    Ok(CrossCheck {
        tool: format!("oha ({}), --latency-correction", exe.display()),
        what: format!(
            "direct, http1, {rate} rps, {secs} s, {} connections",
            spec.connections_h1
        ),
        ours,
        theirs,
    })
}
