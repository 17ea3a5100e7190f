//! The deterministic harness: runs a whole mesh (apps, sidecars, clients, a control-plane host) in
//! a simulated network from a scenario file, drives its workload and fault time line, collects
//! every request's outcome, and produces the report model. It is **not** the mesh: the proxy is
//! `mesh-core`'s, unchanged, reached through the `Network` boundary that [`substrate::SimNet`]
//! implements.
//!
//! # Layout
//! - [`scenario`]: the scenario file format, parsing and validation (errors name file, line, field).
//! - [`fault`]: the fault kinds, one file each: fields, checks, report target, effect.
//! - [`substrate`]: turmoil-net hosts and host-scoped tasks, the `Network` the mesh runs on.
//!   [`fabric`]: moves packets between hosts at microsecond instants and applies network faults.
//! - [`time`]: simulated time at microsecond resolution, and the stepper that drives tokio's
//!   paused clock from one due instant to the next.
//! - [`model`]: service models (latency, workers and queue, errors, fan-out calls, what happens
//!   to abandoned requests) and callers. [`queueing`]: each service's apps counted as queues.
//! - [`workload`]: open- and closed-loop generators.
//! - [`cost`]: the proxy's processing-cost model with queueing, at microsecond precision.
//! - [`collect`]: outcomes and hdrhistogram latencies; the books.
//! - [`telemetry`]: the sidecars' own metrics, spans (OTLP-JSON) and access logs from a run.
//! - [`run`]: one run start to finish. [`check`]: assertions.
//! - [`shrink`]: a failing scenario made smaller while the same assertion still fails.
//! - [`run()`]: meshed run + unmeshed baseline + overhead + verdict = a `reports::Report`, and the
//!   sidecars' telemetry.
//!
//! # Substrate: turmoil-net, chosen by measurement
//! Both candidates come from the turmoil project. `turmoil` 0.7 is a whole simulation runtime; it
//! links every pair of hosts and scans every link each tick, so its cost grows steeply with the
//! host count. `turmoil-net` 0.1 is a socket stack with real TCP behaviour (handshake, FIN/RST,
//! retransmission) that leaves time and scheduling to the harness; we pay one pass over the
//! hosts' outbound queues per simulated millisecond (plus passes over the hosts that ran at
//! instants in between), so cost grows linearly. It is vendored with a small patch
//! (`vendor/README.md`). Measured on this project's topology (one
//! host per pod, a control-plane host, client hosts; client → sidecar → sidecar → app), with
//! `cargo run --release -p sim --example substrate`:
//!
//! | pods | hosts | turmoil 0.7 wall (s) | turmoil-net wall (s) |
//! |---:|---:|---:|---:|
//! | 20 | 22 | 0.34 | 0.16 |
//! | 100 | 102 | 6.86 | 0.18 |
//! | 400 | 402 | 730.70 | 0.49 |
//!
//! (2,000 requests at 1,000 rps, 2 s simulated, every request succeeded on both; 2-core AMD EPYC,
//! 2026-11-25.) We chose turmoil-net and built the runtime around it ([`substrate`]). Speed of the
//! whole simulator, and where it falls short of its goals: `docs/DESIGN-NOTES.md`.
//!
//! # Determinism
//! Same scenario + seed + build ⇒ byte-identical report. One thread; tokio's clock paused and
//! driven by the stepper ([`time::Stepper`]); tokio's RNG seeded (`--cfg tokio_unstable`, see `.cargo/config.toml`);
//! every RNG a ChaCha stream from [`derive_seed`]; only ordered maps; `clippy.toml` bans wall
//! clocks, unseeded RNGs, threads and `HashMap`/`HashSet`.
#![forbid(unsafe_code)]

pub mod check;
pub mod collect;
pub mod cost;
pub mod fabric;
pub mod fault;
pub mod model;
pub mod queueing;
pub mod run;
pub mod scenario;
pub mod shrink;
pub mod substrate;
pub mod telemetry;
pub mod time;
pub mod workload;

use std::collections::BTreeMap;

use reports::{Overhead, Report, RunMeta, Verdict};

/// A seed for the stream named `label`, derived from the run's seed (SplitMix64 over FNV-1a),
/// stable across platforms and builds.
pub fn derive_seed(seed: u64, label: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in label.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = seed ^ h;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Versions of the crates that shape a run, from the build's Cargo.lock.
pub fn dep_versions() -> BTreeMap<String, String> {
    env!("MESHSIM_DEP_VERSIONS")
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The seed.
    pub seed: u64,
    /// The scenario path as the user gave it (for the report).
    pub scenario_arg: String,
    /// The command that reproduces this run, as the caller (the binary) would have it typed.
    pub repro: String,
    /// Keep every sidecar's access-log lines in the telemetry.
    pub access_log: bool,
}

impl RunOptions {
    /// Run `scenario_arg` on `seed`, with no repro line and no access log.
    pub fn new(seed: u64, scenario_arg: impl Into<String>) -> Self {
        Self {
            seed,
            scenario_arg: scenario_arg.into(),
            ..Self::default()
        }
    }
}

/// What a run produces: the report, and the meshed run's own telemetry (each sidecar's
/// metrics and spans, and access-log lines when asked for), if the mesh ran.
#[derive(Debug)]
pub struct RunOutput {
    /// The report: both runs, the overhead, the assertions, the verdict.
    pub report: Report,
    /// What the sidecars recorded about themselves.
    pub telemetry: Option<telemetry::Telemetry>,
    /// Each pass's delivery digest per simulated second (`mesh`, `no mesh`): where two runs that
    /// should be identical first parted.
    pub digests: Vec<(&'static str, Vec<u64>)>,
    /// Panics raised inside either pass, with the pass named. Any fails the run: its numbers
    /// are not to be trusted (the binary exits with its own code, 3).
    pub panics: Vec<String>,
}

/// Run a loaded scenario: the meshed run and the unmeshed baseline (as the scenario asks), the
/// overhead between them, the assertions and the verdict. `progress` hears (phase, now, end).
pub fn run(
    loaded: &scenario::Loaded,
    opts: &RunOptions,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> RunOutput {
    let s = &loaded.scenario;
    let mut digests = Vec::new();
    let mut panics = Vec::new();
    let (mesh, telemetry) = if s.mesh.enabled {
        let pass = run::Pass {
            seed: opts.seed,
            mesh: true,
            access_log: opts.access_log,
        };
        let out = run::simulate(loaded, &pass, &mut |n, e| progress("mesh", n, e));
        digests.push(("mesh", out.digests));
        panics.extend(out.panics.into_iter().map(|p| format!("mesh run: {p}")));
        (Some(out.stats), Some(out.telemetry))
    } else {
        (None, None)
    };
    let baseline = (s.mesh.baseline || !s.mesh.enabled).then(|| {
        let pass = run::Pass {
            seed: opts.seed,
            mesh: false,
            access_log: false,
        };
        let out = run::simulate(loaded, &pass, &mut |n, e| progress("no mesh", n, e));
        digests.push(("no mesh", out.digests));
        panics.extend(out.panics.into_iter().map(|p| format!("no-mesh run: {p}")));
        out.stats
    });
    let overhead = match (&mesh, &baseline) {
        (Some(m), Some(b)) => Some(Overhead::between(m, b)),
        _ => None,
    };
    let faults = s.faults.iter().map(|f| f.get_ref().window()).collect();
    let mut report = Report {
        schema_version: reports::SCHEMA_VERSION,
        kind: "simulation".into(),
        run: RunMeta {
            scenario: s.name.clone(),
            description: s.description.clone(),
            scenario_file: opts.scenario_arg.clone(),
            scenario_hash: loaded.hash.clone(),
            seed: opts.seed,
            meshsim_version: env!("CARGO_PKG_VERSION").to_string(),
            substrate: "turmoil-net".into(),
            versions: dep_versions(),
            proxy_cost_source: loaded.cost.source.clone(),
            repro: opts.repro.clone(),
            faults,
        },
        mesh,
        baseline,
        overhead,
        assertions: Vec::new(),
        verdict: Verdict::Pass,
    };
    let assertions: Vec<_> = s.assertions.iter().map(|a| a.get_ref().clone()).collect();
    let measured_s = (s.workload.duration.as_ms() - s.workload.warmup.as_ms()) as f64 / 1000.0;
    report.assertions = check::evaluate(&assertions, &report, measured_s);
    // Every request accounted for: the ledgers agree and none was left without an outcome.
    let balanced = [&report.mesh, &report.baseline]
        .into_iter()
        .flatten()
        .all(|r| r.books.balanced && r.books.in_flight == 0);
    if !balanced || !panics.is_empty() || report.assertions.iter().any(|a| !a.passed) {
        report.verdict = Verdict::Fail;
    }
    RunOutput {
        report,
        telemetry,
        digests,
        panics,
    }
}
