//! The bench's command line, shared by `meshsim bench` and `cargo bench -p bench --bench matrix`,
//! and the calibration file written from a run.
#![allow(clippy::disallowed_methods)] // real time and processes

use std::path::PathBuf;
use std::time::Duration;

use mesh_core::registry::Protocol;
use reports::bench::{BenchReport, LoadStats};

use crate::matrix::{self, Config, MatrixError, MatrixSpec};

/// What `meshsim bench` takes.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// Folder for report.json, summary.md and the .hgrm files.
    #[arg(long, default_value = "out/bench")]
    pub out: PathBuf,
    /// Target rates, requests per second.
    #[arg(long, value_delimiter = ',', default_value = "500,2000,8000")]
    pub rates: Vec<f64>,
    /// After the listed rates, keep doubling the rate until each configuration falls behind.
    #[arg(long)]
    pub saturate: bool,
    /// Seconds per point, warm-up included.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds of warm-up discarded per point.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Configurations: direct, meshsim-1hop, meshsim-2hop, meshsim-2hop-mtls, nginx, haproxy (default: all).
    #[arg(long, value_delimiter = ',')]
    pub configs: Vec<String>,
    /// Protocols: http1, http2.
    #[arg(long, value_delimiter = ',', default_value = "http1,http2")]
    pub protocols: Vec<String>,
    /// HTTP/1.1 connections.
    #[arg(long, default_value_t = 16)]
    pub connections_h1: usize,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 2)]
    pub connections_h2: usize,
    /// Also write the simulator's calibration file here (e.g. scenarios/calibration/default.toml).
    #[arg(long)]
    pub write_calibration: Option<PathBuf>,
    /// Cross-check the load generator against oha (if installed) on the direct target.
    #[arg(long)]
    pub cross_check: bool,
    /// First loopback port to use (below Linux's ephemeral range, 32768 up, so no outgoing
    /// connection holds one of ours).
    #[arg(long, default_value_t = 23_000)]
    pub base_port: u16,
}

/// Why the bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A bad argument.
    #[error("{0}")]
    Usage(String),
    /// The matrix failed.
    #[error(transparent)]
    Matrix(#[from] MatrixError),
}

/// Run the bench as `args` says; `sidecar` is how to start a sidecar process.
pub fn run(
    args: &BenchArgs,
    sidecar: (PathBuf, Vec<String>),
    command: String,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchReport, BenchError> {
    let configs = if args.configs.is_empty() {
        Config::ALL.to_vec()
    } else {
        args.configs
            .iter()
            .map(|c| {
                Config::parse(c).ok_or_else(|| {
                    BenchError::Usage(format!(
                        "unknown config {c:?}; expected one of direct, meshsim-1hop, meshsim-2hop, meshsim-2hop-mtls, nginx, haproxy"
                    ))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let protocols = args
        .protocols
        .iter()
        .map(|p| match p.as_str() {
            "http1" => Ok(Protocol::Http1),
            "http2" => Ok(Protocol::Http2),
            _ => Err(BenchError::Usage(format!(
                "unknown protocol {p:?}; expected http1 or http2"
            ))),
        })
        .collect::<Result<_, _>>()?;
    if args.rates.iter().any(|r| r.is_nan() || *r <= 0.0) || args.rates.is_empty() {
        return Err(BenchError::Usage("rates must be above 0".into()));
    }
    if !(args.duration > args.warmup && args.warmup >= 0.0) {
        return Err(BenchError::Usage(
            "duration must be longer than warm-up".into(),
        ));
    }
    let mut rates = args.rates.clone();
    rates.sort_by(f64::total_cmp);
    let spec = MatrixSpec {
        configs,
        protocols,
        rates,
        saturate: args.saturate,
        duration: Duration::from_secs_f64(args.duration),
        warmup: Duration::from_secs_f64(args.warmup),
        connections_h1: args.connections_h1.max(1),
        connections_h2: args.connections_h2.max(1),
        sidecar_exe: sidecar,
        out_dir: args.out.clone(),
        base_port: args.base_port,
        command,
    };
    let mut report = matrix::run(&spec, progress)?;
    if args.cross_check {
        match crate::crosscheck::oha(&spec, &report) {
            Ok(c) => report.cross_check = Some(c),
            Err(why) => report.skipped.push(format!("cross-check: {why}")),
        }
    }
    matrix::write(&mut report, &args.out)?;
    let cal = calibration(&report);
    let p = args.out.join("calibration.toml");
    std::fs::write(&p, &cal).map_err(|e| MatrixError::Write(p, e))?;
    if let Some(p) = &args.write_calibration {
        std::fs::write(p, &cal).map_err(|e| MatrixError::Write(p.clone(), e))?;
    }
    Ok(report)
}

fn point<'a>(r: &'a BenchReport, config: &str, protocol: &str, rate: f64) -> Option<&'a LoadStats> {
    r.points
        .iter()
        .find(|p| p.config == config && p.protocol == protocol && p.load.rate_rps == rate)
        .map(|p| &p.load)
}

/// The simulator's calibration file from a bench run: per-hop cost = (two sidecars − direct) / 2
/// at each percentile, at the tested rate nearest 2,000 rps; CPU per request per hop and memory
/// per proxy from the two-hop configuration.
pub fn calibration(r: &BenchReport) -> String {
    let rate = r.rate_nearest(2000.0);
    let mut out = format!(
        "# Per-hop processing cost of one meshsim sidecar, in microseconds of added latency, and its footprint.\n\
         # The simulator charges one draw per sidecar a request passes (client sidecar, server sidecar).\n\
         # Regenerate: cargo run --release -p meshsim -- bench --write-calibration scenarios/calibration/default.toml\n\
         source = \"meshsim bench: open-loop {rate} rps, (two sidecars - direct)/2 per percentile, {} s per point, on {} ({} cores)\"\n",
        r.settings.duration_s, r.machine.cpu, r.machine.cores
    );
    for (proto, config, key) in [
        ("http1", "meshsim-2hop", "http1"),
        ("http2", "meshsim-2hop", "http2"),
        ("http1", "meshsim-2hop-mtls", "\"http1+mtls\""),
        ("http2", "meshsim-2hop-mtls", "\"http2+mtls\""),
    ] {
        let (Some(d), Some(m)) = (
            point(r, "direct", proto, rate),
            point(r, config, proto, rate),
        ) else {
            out.push_str(&format!("\n# [hop.{key}] not measured in this run\n"));
            continue;
        };
        let hop = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / 2.0;
        let p50 = hop(d.p50_us, m.p50_us);
        let p90 = hop(d.p90_us, m.p90_us).max(p50);
        let p99 = hop(d.p99_us, m.p99_us).max(p90);
        let p999 = hop(d.p999_us, m.p999_us).max(p99);
        out.push_str(&format!(
            "\n# direct P50 {} us, P99 {} us; two sidecars P50 {} us, P99 {} us\n[hop.{key}]\np50_us = {p50:.1}\np90_us = {p90:.1}\np99_us = {p99:.1}\np999_us = {p999:.1}\n",
            d.p50_us, d.p99_us, m.p50_us, m.p99_us
        ));
    }
    let two = r
        .configs
        .iter()
        .filter(|c| c.config == "meshsim-2hop")
        .collect::<Vec<_>>();
    let cpu = two
        .iter()
        .filter_map(|c| c.cpu_ms_per_1000_per_hop)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let idle = two.iter().flat_map(|c| c.rss_idle_kib.iter()).max();
    let load = two.iter().flat_map(|c| c.rss_load_kib.iter()).max();
    if let (Some(cpu), Some(idle), Some(load)) = (cpu, idle, load) {
        out.push_str(&format!(
            "\n# What one sidecar costs to run (two-hop configuration, worst protocol)\n[footprint]\ncpu_us_per_request = {:.1}\nrss_idle_mib = {:.1}\nrss_load_mib = {:.1}\n",
            cpu,
            *idle as f64 / 1024.0,
            *load as f64 / 1024.0
        ));
    }
    out
}
