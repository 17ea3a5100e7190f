//! The real-socket bench's report: the same versioned JSON + Markdown discipline as a simulation
//! report, for the proxy's measured cost (`meshsim bench`, `cargo bench -p bench`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The P99 above which a rate does not count as sustained (10 ms on loopback, where an idle
/// hop costs tens of microseconds).
pub const SUSTAINED_P99_US: u64 = 10_000;

/// Version of the bench report's layout.
pub const BENCH_SCHEMA_VERSION: u32 = 1;

/// One bench run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BenchReport {
    /// [`BENCH_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Always `bench`.
    pub kind: String,
    /// Where it ran.
    pub machine: Machine,
    /// The command that produced it.
    pub command: String,
    /// How each point was measured.
    pub settings: BenchSettings,
    /// Every measured point, in run order.
    pub points: Vec<BenchPoint>,
    /// Added latency of each proxy configuration over direct, same protocol and rate.
    pub added: Vec<AddedLatency>,
    /// Per configuration and protocol: capacity, CPU and memory.
    pub configs: Vec<ConfigSummary>,
    /// Configurations that could not run, and why.
    pub skipped: Vec<String>,
    /// The generator checked against an independent one, if that ran.
    pub cross_check: Option<CrossCheck>,
    /// SVG plots written beside the report.
    #[serde(default)]
    pub plots: Vec<String>,
}

/// The machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Logical cores.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// Peer versions (`nginx`, `haproxy`, `oha`) as they print them.
    pub peers: BTreeMap<String, String>,
}

/// Load settings shared by every point.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BenchSettings {
    /// Sending time per point, warm-up included, seconds.
    pub duration_s: f64,
    /// Warm-up discarded per point, seconds.
    pub warmup_s: f64,
    /// HTTP/1.1 connections.
    pub connections_h1: usize,
    /// HTTP/2 connections.
    pub connections_h2: usize,
    /// Target rates.
    pub rates_rps: Vec<f64>,
    /// Worker threads of every proxy (meshsim, nginx, HAProxy alike).
    pub proxy_threads: usize,
}

/// What an open-loop run measured (latency from intended send time, µs).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LoadStats {
    /// Target rate.
    pub rate_rps: f64,
    /// Successful requests per second of the measured window.
    pub achieved_rps: f64,
    /// Measured requests due.
    pub due: u64,
    /// Successful.
    pub ok: u64,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// 50th percentile.
    pub p50_us: u64,
    /// 90th.
    pub p90_us: u64,
    /// 99th.
    pub p99_us: u64,
    /// 99.9th.
    pub p999_us: u64,
    /// 99.99th.
    pub p9999_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl BenchReport {
    /// The tested rate nearest `rps` (the goals and the calibration are stated at 2,000 rps).
    pub fn rate_nearest(&self, rps: f64) -> f64 {
        self.settings
            .rates_rps
            .iter()
            .copied()
            .min_by(|a, b| (a - rps).abs().total_cmp(&(b - rps).abs()))
            .unwrap_or(rps)
    }
}

impl LoadStats {
    /// Whether the target kept up: ≥ 95% of the rate achieved, < 0.1% errors and P99 under
    /// [`SUSTAINED_P99_US`] (an open-loop generator charges queueing to latency, so a target
    /// past its capacity shows there first).
    pub fn sustained(&self) -> bool {
        let errors: u64 = self.errors.values().sum();
        self.achieved_rps >= 0.95 * self.rate_rps
            && errors * 1000 < self.due.max(1)
            && self.p99_us < SUSTAINED_P99_US
    }
}

/// One configuration at one protocol and rate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BenchPoint {
    /// `direct`, `meshsim-1hop`, `meshsim-2hop`, `meshsim-2hop-mtls`, `nginx`, `haproxy`.
    pub config: String,
    /// `http1` or `http2`.
    pub protocol: String,
    /// What the load generator saw.
    pub load: LoadStats,
    /// CPU the proxy processes used during the point, ms per 1,000 requests (all hops).
    pub cpu_ms_per_1000: Option<f64>,
    /// Resident memory of each proxy process at the end of the point, KiB.
    pub rss_kib: Vec<u64>,
    /// The `.hgrm` file beside the report.
    pub hgrm: String,
    /// (percentile as a fraction, latency µs) at fixed percentiles from 0.5 to 1, for plots.
    #[serde(default)]
    pub spectrum: Vec<[f64; 2]>,
}

/// Proxy minus direct, same protocol and rate, µs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AddedLatency {
    /// Configuration.
    pub config: String,
    /// Protocol.
    pub protocol: String,
    /// Rate.
    pub rate_rps: f64,
    /// Added at P50.
    pub p50_us: i64,
    /// Added at P99.
    pub p99_us: i64,
    /// Added at P99.9.
    pub p999_us: i64,
}

/// A configuration's capacity and footprint at one protocol.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConfigSummary {
    /// Configuration.
    pub config: String,
    /// Protocol.
    pub protocol: String,
    /// Proxy processes (hops).
    pub proxies: usize,
    /// Highest tested rate it sustained (see [`LoadStats::sustained`]); 0 if none.
    pub max_sustained_rps: f64,
    /// Whether a higher tested rate failed (false: the limit is above the highest rate tried).
    pub saturated: bool,
    /// Resident memory per proxy when idle (started, no traffic yet), KiB.
    pub rss_idle_kib: Vec<u64>,
    /// Largest resident memory per proxy seen under load, KiB.
    pub rss_load_kib: Vec<u64>,
    /// CPU per 1,000 requests per hop at the rate nearest 2,000 rps, ms.
    pub cpu_ms_per_1000_per_hop: Option<f64>,
}

/// Our generator and an independent one on the same target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CrossCheck {
    /// The other tool and how it ran.
    pub tool: String,
    /// Target rate, protocol and configuration.
    pub what: String,
    /// Ours.
    pub ours: LoadStats,
    /// Theirs (percentiles µs; counts as it reported them).
    pub theirs: LoadStats,
}

fn ms(us: i64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

fn find<'a>(
    r: &'a BenchReport,
    config: &str,
    protocol: &str,
    rate: f64,
) -> Option<&'a AddedLatency> {
    r.added
        .iter()
        .find(|a| a.config == config && a.protocol == protocol && a.rate_rps == rate)
}

/// The goals issue #4 sets, checked against this run: (goal, measured, met).
pub fn goals(r: &BenchReport) -> Vec<(String, String, Option<bool>)> {
    let mut out = Vec::new();
    let rate = 2000.0;
    // A point whose requests failed has no latency to compare.
    let clean = |config: &str, proto: &str| {
        r.points.iter().any(|p| {
            p.config == config
                && p.protocol == proto
                && p.load.rate_rps == rate
                && p.load.errors.values().sum::<u64>() * 1000 < p.load.due.max(1)
        })
    };
    for proto in ["http1", "http2"] {
        let ours = find(r, "meshsim-1hop", proto, rate).filter(|_| clean("meshsim-1hop", proto));
        for peer in ["haproxy", "nginx"] {
            let theirs = find(r, peer, proto, rate).filter(|_| clean(peer, proto));
            let (text, met) = match (ours, theirs) {
                (Some(o), Some(t)) => (
                    format!("meshsim +{} µs vs {peer} +{} µs", o.p99_us, t.p99_us),
                    Some(o.p99_us <= t.p99_us),
                ),
                _ => ("not measured (absent, or its requests failed)".into(), None),
            };
            out.push((
                format!("one hop added P99 ≤ {peer}'s ({proto}, 2,000 rps)"),
                text,
                met,
            ));
        }
        let (text, met) = match ours {
            Some(o) => (format!("+{} µs", o.p50_us), Some(o.p50_us < 50)),
            None => ("not measured".into(), None),
        };
        out.push((
            format!("one hop added P50 < 50 µs ({proto}, 2,000 rps)"),
            text,
            met,
        ));
    }
    let mtls = r
        .added
        .iter()
        .find(|a| a.config == "meshsim-2hop-mtls" && a.rate_rps == rate);
    out.push((
        "two hops with mTLS added P99 < 0.5 ms (2,000 rps)".into(),
        mtls.map_or("not measured".into(), |a| format!("+{} µs", a.p99_us)),
        mtls.map(|a| a.p99_us < 500),
    ));
    let meshsim: Vec<&ConfigSummary> = r
        .configs
        .iter()
        .filter(|c| c.config.starts_with("meshsim"))
        .collect();
    let idle = meshsim.iter().flat_map(|c| c.rss_idle_kib.iter()).max();
    let load = meshsim.iter().flat_map(|c| c.rss_load_kib.iter()).max();
    out.push((
        "memory per proxy idle < 10 MB".into(),
        idle.map_or("not measured".into(), |k| {
            format!("{:.1} MB", *k as f64 / 1024.0)
        }),
        idle.map(|k| *k < 10 * 1024),
    ));
    out.push((
        "memory per proxy under load < 20 MB".into(),
        load.map_or("not measured".into(), |k| {
            format!("{:.1} MB", *k as f64 / 1024.0)
        }),
        load.map(|k| *k < 20 * 1024),
    ));
    out
}

/// `summary.md` for a bench run: goals first, then added latency, then the raw numbers.
pub fn markdown(r: &BenchReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "# meshsim bench\n");
    let _ = writeln!(
        s,
        "{} ({} cores), Linux {}; peers: {}.\n\nCommand: `{}`. Each point: {} s open-loop ({} s warm-up discarded), latency from the intended send time (coordinated omission corrected), {} HTTP/1.1 or {} HTTP/2 connections; every proxy one worker thread.\n",
        r.machine.cpu,
        r.machine.cores,
        r.machine.kernel,
        if r.machine.peers.is_empty() {
            "none".to_string()
        } else {
            r.machine
                .peers
                .values()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        },
        r.command,
        r.settings.duration_s,
        r.settings.warmup_s,
        r.settings.connections_h1,
        r.settings.connections_h2
    );
    let _ = writeln!(s, "## Goals\n\n| goal | measured | met |\n|---|---|---|");
    for (goal, measured, met) in goals(r) {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        let _ = writeln!(s, "| {goal} | {measured} | {met} |");
    }
    let _ = writeln!(
        s,
        "\n## Added latency over direct (ms)\n\n| config | protocol | rate (rps) | +P50 | +P99 | +P99.9 |\n|---|---|---:|---:|---:|---:|"
    );
    for a in &r.added {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            a.config,
            a.protocol,
            a.rate_rps,
            ms(a.p50_us),
            ms(a.p99_us),
            ms(a.p999_us)
        );
    }
    let _ = writeln!(
        s,
        "\n## Capacity and footprint\n\n| config | protocol | proxies | max sustained (rps) | RSS idle (MB) | RSS under load (MB) | CPU ms / 1,000 req / hop |\n|---|---|---:|---:|---|---|---:|"
    );
    for c in &r.configs {
        let mb = |v: &[u64]| {
            v.iter()
                .map(|k| format!("{:.1}", *k as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(" + ")
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {}{} | {} | {} | {} |",
            c.config,
            c.protocol,
            c.proxies,
            if c.saturated { "" } else { "≥ " },
            c.max_sustained_rps,
            mb(&c.rss_idle_kib),
            mb(&c.rss_load_kib),
            c.cpu_ms_per_1000_per_hop
                .map_or("—".into(), |v| format!("{v:.1}"))
        );
    }
    let _ = writeln!(
        s,
        "\n## Every point (latency ms)\n\n| config | protocol | rate | achieved | errors | P50 | P90 | P99 | P99.9 | P99.99 | max |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for p in &r.points {
        let l = &p.load;
        let e: u64 = l.errors.values().sum();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.0} | {e} | {} | {} | {} | {} | {} | {} |",
            p.config,
            p.protocol,
            l.rate_rps,
            l.achieved_rps,
            ms(l.p50_us as i64),
            ms(l.p90_us as i64),
            ms(l.p99_us as i64),
            ms(l.p999_us as i64),
            ms(l.p9999_us as i64),
            ms(l.max_us as i64)
        );
    }
    if let Some(c) = &r.cross_check {
        let _ = writeln!(
            s,
            "\n## Cross-check\n\n{} on {}: ours P50 {} / P99 {} ms, theirs P50 {} / P99 {} ms.",
            c.tool,
            c.what,
            ms(c.ours.p50_us as i64),
            ms(c.ours.p99_us as i64),
            ms(c.theirs.p50_us as i64),
            ms(c.theirs.p99_us as i64)
        );
    }
    for why in &r.skipped {
        let _ = writeln!(s, "\nSkipped: {why}");
    }
    if !r.plots.is_empty() {
        let _ = writeln!(s, "\n## Plots\n");
        for p in &r.plots {
            let _ = writeln!(s, "![{p}]({p})");
        }
    }
    s
}
