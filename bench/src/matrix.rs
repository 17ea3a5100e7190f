//! The bench matrix, measured in one run so ratios hold on a noisy machine: direct to the test
//! server, through one meshsim sidecar, through two (client sidecar → server sidecar), and through
//! nginx and HAProxy as reverse proxies; HTTP/1.1 and HTTP/2; at each rate. Every proxy is its
//! own process with one worker thread, so its CPU and memory are read from `/proc` alone.
//!
//! The load generator and the test server share this process (each on its own thread); on a
//! 2-core machine they compete with the proxy under test, the same for every configuration, which
//! is why results are reported as differences from `direct` at the same protocol and rate.
#![allow(clippy::disallowed_methods)] // the wall clock: real sockets

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mesh_core::registry::Protocol;
use reports::bench::{
    AddedLatency, BenchPoint, BenchReport, BenchSettings, ConfigSummary, LoadStats, Machine,
};

use crate::load::{self, LoadSpec};
use crate::peers::{self, PeerError, Process};
use crate::procstat;

/// A path through which the load reaches the test server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Config {
    /// Straight to the test server.
    Direct,
    /// Through one meshsim sidecar (outbound listener → test server).
    Meshsim1,
    /// Client sidecar → server sidecar → test server.
    Meshsim2,
    /// The same with mutual TLS between the sidecars.
    Meshsim2Mtls,
    /// nginx reverse proxy.
    Nginx,
    /// HAProxy reverse proxy.
    Haproxy,
}

impl Config {
    /// Every configuration, in report order.
    pub const ALL: [Config; 6] = [
        Config::Direct,
        Config::Meshsim1,
        Config::Meshsim2,
        Config::Meshsim2Mtls,
        Config::Nginx,
        Config::Haproxy,
    ];

    /// Its report name.
    pub fn name(self) -> &'static str {
        match self {
            Config::Direct => "direct",
            Config::Meshsim1 => "meshsim-1hop",
            Config::Meshsim2 => "meshsim-2hop",
            Config::Meshsim2Mtls => "meshsim-2hop-mtls",
            Config::Nginx => "nginx",
            Config::Haproxy => "haproxy",
        }
    }

    /// Parse a report name.
    pub fn parse(s: &str) -> Option<Config> {
        Config::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct MatrixSpec {
    /// Configurations (direct is always added: everything is relative to it).
    pub configs: Vec<Config>,
    /// Protocols.
    pub protocols: Vec<Protocol>,
    /// Rates, ascending.
    pub rates: Vec<f64>,
    /// After the listed rates, keep doubling until a configuration fails to sustain the rate.
    pub saturate: bool,
    /// Sending time per point, warm-up included.
    pub duration: Duration,
    /// Warm-up per point.
    pub warmup: Duration,
    /// HTTP/1.1 connections.
    pub connections_h1: usize,
    /// HTTP/2 connections.
    pub connections_h2: usize,
    /// A binary that runs a sidecar, and the arguments before the sidecar's own
    /// (`meshsim` + `["sidecar"]`, or the bench crate's `sidecar` binary + `[]`).
    pub sidecar_exe: (PathBuf, Vec<String>),
    /// Where `.hgrm` files go.
    pub out_dir: PathBuf,
    /// First of the loopback ports used.
    pub base_port: u16,
    /// The command line, for the report.
    pub command: String,
}

/// Why the matrix could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    /// The test server could not start.
    #[error("test server: {0}")]
    Upstream(std::io::Error),
    /// The output folder could not be written.
    #[error("writing {0}: {1}")]
    Write(PathBuf, std::io::Error),
    /// The load generator refused its settings.
    #[error(transparent)]
    Load(#[from] load::LoadError),
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Http1 => "http1",
        Protocol::Http2 => "http2",
    }
}

/// Start `config` for `protocol` in front of the test server at `upstream`; returns the address
/// the load goes to and the proxy processes (none for direct).
fn start(
    spec: &MatrixSpec,
    config: Config,
    protocol: Protocol,
    upstream: SocketAddr,
    port: u16,
) -> Result<(SocketAddr, Vec<Process>), PeerError> {
    let p = proto_name(protocol);
    let (exe, prefix) = &spec.sidecar_exe;
    let sidecar = |outbound: u16, inbound: u16, app: SocketAddr, route: String| {
        let args: Vec<String> = [
            "--outbound".into(),
            addr(outbound).to_string(),
            "--inbound".into(),
            addr(inbound).to_string(),
            "--app".into(),
            app.to_string(),
            "--app-protocol".into(),
            p.to_string(),
            "--route".into(),
            route,
            "--threads".into(),
            "1".into(),
        ]
        .into();
        args
    };
    match config {
        Config::Direct => Ok((upstream, Vec::new())),
        Config::Meshsim1 => {
            let args = sidecar(port, port + 1, upstream, format!("bench={upstream}@{p}"));
            let a = peers::start_sidecar(exe, prefix, &args, addr(port))?;
            Ok((addr(port), vec![a]))
        }
        Config::Meshsim2 | Config::Meshsim2Mtls => {
            let mut server = sidecar(
                port + 3,
                port + 2,
                upstream,
                format!("unused={upstream}@{p}"),
            );
            let mut client = sidecar(
                port,
                port + 1,
                upstream,
                format!("bench={}@{p}", addr(port + 2)),
            );
            if config == Config::Meshsim2Mtls {
                let dir = std::env::temp_dir()
                    .join(format!("meshsim-bench-{}-tls-{port}", std::process::id()));
                let ca = mesh_core::tls::CertAuthority::new("cluster.local").map_err(|e| {
                    PeerError::Io("test CA".into(), std::io::Error::other(e.to_string()))
                })?;
                for (sa, args) in [("bench-client", &mut client), ("bench", &mut server)] {
                    let d = dir.join(sa);
                    crate::sidecar::write_tls(&ca, sa, &d)
                        .map_err(|e| PeerError::Io("certificates".into(), e))?;
                    args.push("--tls-dir".into());
                    args.push(d.display().to_string());
                }
            }
            let b = peers::start_sidecar(exe, prefix, &server, addr(port + 2))?;
            let a = peers::start_sidecar(exe, prefix, &client, addr(port))?;
            Ok((addr(port), vec![a, b]))
        }
        Config::Nginx => {
            let n = peers::start_nginx(addr(port), upstream, protocol == Protocol::Http2)?;
            Ok((addr(port), vec![n]))
        }
        Config::Haproxy => {
            let h = peers::start_haproxy(addr(port), upstream, protocol)?;
            Ok((addr(port), vec![h]))
        }
    }
}

fn cpu_of(procs: &[Process]) -> Option<f64> {
    procs
        .iter()
        .map(|p| procstat::cpu_seconds(p.pid()))
        .sum::<Option<f64>>()
}

fn rss_of(procs: &[Process]) -> Vec<u64> {
    procs
        .iter()
        .filter_map(|p| procstat::rss_kib(p.pid()))
        .collect()
}

/// Run the matrix; `progress` hears about each point as it starts.
pub fn run(spec: &MatrixSpec, progress: &mut dyn FnMut(&str)) -> Result<BenchReport, MatrixError> {
    std::fs::create_dir_all(&spec.out_dir)
        .map_err(|e| MatrixError::Write(spec.out_dir.clone(), e))?;
    let upstream = addr(spec.base_port);
    crate::upstream::spawn(upstream).map_err(MatrixError::Upstream)?;
    let mut configs = spec.configs.clone();
    if !configs.contains(&Config::Direct) {
        configs.insert(0, Config::Direct);
    }
    configs.sort();
    configs.dedup();
    let mut report = BenchReport {
        schema_version: reports::bench::BENCH_SCHEMA_VERSION,
        kind: "bench".into(),
        machine: machine(),
        command: spec.command.clone(),
        settings: BenchSettings {
            duration_s: spec.duration.as_secs_f64(),
            warmup_s: spec.warmup.as_secs_f64(),
            connections_h1: spec.connections_h1,
            connections_h2: spec.connections_h2,
            rates_rps: spec.rates.clone(),
            proxy_threads: 1,
        },
        ..BenchReport::default()
    };
    for (pi, &protocol) in spec.protocols.iter().enumerate() {
        for (ci, &config) in configs.iter().enumerate() {
            let port = spec.base_port + 10 + (pi as u16 * 100) + (ci as u16 * 10);
            let (target, procs) = match start(spec, config, protocol, upstream, port) {
                Ok(x) => x,
                Err(e) => {
                    let why = format!("{} over {}: {e}", config.name(), proto_name(protocol));
                    progress(&format!("skipped {why}"));
                    report.skipped.push(why);
                    continue;
                }
            };
            std::thread::sleep(Duration::from_millis(300));
            let rss_idle = rss_of(&procs);
            let mut rss_load = rss_idle.clone();
            let mut rates = spec.rates.clone();
            let mut summary = ConfigSummary {
                config: config.name().into(),
                protocol: proto_name(protocol).into(),
                proxies: procs.len(),
                rss_idle_kib: rss_idle.clone(),
                ..ConfigSummary::default()
            };
            let mut i = 0;
            while i < rates.len() {
                let rate = rates[i];
                progress(&format!(
                    "{} over {} at {rate} rps",
                    config.name(),
                    proto_name(protocol)
                ));
                let load = LoadSpec {
                    target,
                    host: "bench".into(),
                    path: "/".into(),
                    protocol,
                    rate_rps: rate,
                    connections: match protocol {
                        Protocol::Http1 => spec.connections_h1,
                        Protocol::Http2 => spec.connections_h2,
                    },
                    duration: spec.duration,
                    warmup: spec.warmup,
                    max_requests: None,
                    timeout: Duration::from_secs(5),
                };
                let cpu0 = cpu_of(&procs);
                let result = load::run(&load)?;
                let cpu1 = cpu_of(&procs);
                let stats = result.summary(rate);
                let hgrm = format!(
                    "{}-{}-{}.hgrm",
                    config.name(),
                    proto_name(protocol),
                    rate as u64
                );
                let path = spec.out_dir.join(&hgrm);
                std::fs::write(&path, result.hgrm()).map_err(|e| MatrixError::Write(path, e))?;
                let rss = rss_of(&procs);
                for (m, r) in rss_load.iter_mut().zip(&rss) {
                    *m = (*m).max(*r);
                }
                // CPU over the whole point (warm-up included) per request sent in it.
                let sent = (rate * spec.duration.as_secs_f64()).max(1.0);
                let cpu_ms_per_1000 = match (cpu0, cpu1, procs.is_empty()) {
                    (Some(a), Some(b), false) => Some((b - a) * 1000.0 / sent * 1000.0),
                    _ => None,
                };
                let sustained = stats.sustained();
                if sustained {
                    summary.max_sustained_rps = summary.max_sustained_rps.max(rate);
                } else {
                    summary.saturated = true;
                }
                report.points.push(BenchPoint {
                    config: config.name().into(),
                    protocol: proto_name(protocol).into(),
                    load: stats,
                    cpu_ms_per_1000,
                    rss_kib: rss,
                    hgrm,
                    spectrum: result.spectrum(),
                });
                if spec.saturate && i + 1 == rates.len() && sustained && rate < 64_000.0 {
                    rates.push(rate * 2.0);
                }
                i += 1;
            }
            summary.rss_load_kib = rss_load;
            let near_2000 = report
                .points
                .iter()
                .filter(|p| p.config == summary.config && p.protocol == summary.protocol)
                .min_by(|a, b| {
                    (a.load.rate_rps - 2000.0)
                        .abs()
                        .total_cmp(&(b.load.rate_rps - 2000.0).abs())
                });
            summary.cpu_ms_per_1000_per_hop = near_2000
                .and_then(|p| p.cpu_ms_per_1000)
                .map(|c| c / summary.proxies.max(1) as f64);
            report.configs.push(summary);
            drop(procs);
        }
    }
    report.added = added(&report.points);
    Ok(report)
}

/// Each proxy point minus the direct point of the same protocol and rate.
pub fn added(points: &[BenchPoint]) -> Vec<AddedLatency> {
    let direct: BTreeMap<(String, u64), &LoadStats> = points
        .iter()
        .filter(|p| p.config == "direct")
        .map(|p| ((p.protocol.clone(), p.load.rate_rps as u64), &p.load))
        .collect();
    points
        .iter()
        .filter(|p| p.config != "direct")
        .filter_map(|p| {
            let d = direct.get(&(p.protocol.clone(), p.load.rate_rps as u64))?;
            Some(AddedLatency {
                config: p.config.clone(),
                protocol: p.protocol.clone(),
                rate_rps: p.load.rate_rps,
                p50_us: p.load.p50_us as i64 - d.p50_us as i64,
                p99_us: p.load.p99_us as i64 - d.p99_us as i64,
                p999_us: p.load.p999_us as i64 - d.p999_us as i64,
            })
        })
        .collect()
}

/// What this machine is.
pub fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut peers = BTreeMap::new();
    for (name, flag) in [("nginx", "-v"), ("haproxy", "-v")] {
        if let Some(exe) = peers::find_program(name)
            && let Ok(out) = std::process::Command::new(exe).arg(flag).output()
        {
            let text = String::from_utf8_lossy(&out.stderr).to_string()
                + &String::from_utf8_lossy(&out.stdout);
            peers.insert(
                name.to_string(),
                text.lines().next().unwrap_or_default().trim().to_string(),
            );
        }
    }
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel,
        peers,
    }
}

/// Write the plots, `report.json` and `summary.md` into `dir`.
pub fn write(report: &mut BenchReport, dir: &Path) -> Result<(), MatrixError> {
    match reports::plot::bench_plots(report) {
        Ok(plots) => {
            report.plots.clear();
            for (name, svg) in plots {
                let p = dir.join(&name);
                std::fs::write(&p, svg).map_err(|e| MatrixError::Write(p, e))?;
                report.plots.push(name);
            }
        }
        Err(e) => report.skipped.push(format!("plots: {e}")),
    }
    let json = serde_json::to_string_pretty(report).expect("the bench model serialises") + "\n";
    let p = dir.join("report.json");
    std::fs::write(&p, json).map_err(|e| MatrixError::Write(p, e))?;
    let p = dir.join("summary.md");
    std::fs::write(&p, reports::bench::markdown(report)).map_err(|e| MatrixError::Write(p, e))?;
    Ok(())
}
