//! The deterministic harness: runs a whole mesh (apps, sidecars, clients, a control-plane host) in
//! a simulated network from a scenario file, drives its workload and fault time line, collects
//! every request's outcome, and produces the report model. It is **not** the mesh: the proxy is
//! `mesh-core`'s, unchanged, reached through the `Network` boundary that [`substrate::SimNet`]
//! implements.
//!
//! # Layout
//! - [`scenario`]: the scenario file format, parsing and validation (errors name file, line, field).
//! - [`substrate`]: turmoil-net hosts, host-scoped tasks, and the fabric that moves packets and
//!   applies network faults.
//! - [`model`]: service models (latency, workers and queue, errors, fan-out calls) and callers.
//! - [`workload`]: open- and closed-loop generators.
//! - [`cost`]: the proxy's processing-cost model with queueing, at microsecond precision.
//! - [`collect`]: outcomes and hdrhistogram latencies; the books.
//! - [`telemetry`]: the sidecars' own metrics, spans (OTLP-JSON) and access logs from a run.
//! - [`run`]: one run start to finish. [`check`]: assertions.
//! - [`run_scenario`]: meshed run + unmeshed baseline + overhead + verdict = a `reports::Report`.
//!
//! # Substrate: turmoil-net, chosen by measurement
//! Both candidates come from the turmoil project. `turmoil` 0.7 is a whole simulation runtime; it
//! links every pair of hosts and scans every link each tick, so its cost grows steeply with the
//! host count. `turmoil-net` 0.1 is a socket stack with real TCP behaviour (handshake, FIN/RST,
//! retransmission) that leaves time and scheduling to the harness; per tick we pay one pass over
//! the hosts' outbound queues, so cost grows linearly. Measured on this project's topology (one
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
//! driven by the director; tokio's RNG seeded (`--cfg tokio_unstable`, see `.cargo/config.toml`);
//! every RNG a ChaCha stream from [`derive_seed`]; only ordered maps; `clippy.toml` bans wall
//! clocks, unseeded RNGs, threads and `HashMap`/`HashSet`.
#![forbid(unsafe_code)]

pub mod check;
pub mod collect;
pub mod cost;
pub mod model;
pub mod run;
pub mod scenario;
pub mod substrate;
pub mod telemetry;
pub mod workload;

use std::collections::BTreeMap;

use reports::{FaultWindow, Overhead, Report, RunMeta, Verdict};

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
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The seed.
    pub seed: u64,
    /// The scenario path as the user gave it (for the report and the repro command).
    pub scenario_arg: String,
}

/// Run a loaded scenario as [`run_scenario`] does, also handing back the meshed run's telemetry
/// (each sidecar's metrics, spans, and access-log lines when `access_log` is set).
pub fn run_scenario_with_telemetry(
    loaded: &scenario::Loaded,
    opts: &RunOptions,
    access_log: bool,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> (Report, Option<telemetry::Telemetry>) {
    let mut tel = None;
    let report = run_inner(loaded, opts, progress, &mut |loaded, seed, p| {
        let (stats, t) = run::simulate_with(loaded, seed, true, access_log, p);
        tel = Some(t);
        stats
    });
    (report, tel)
}

/// Run a loaded scenario: the meshed run and the unmeshed baseline (as the scenario asks), the
/// overhead between them, the assertions and the verdict. `progress` hears (phase, now, end).
pub fn run_scenario(
    loaded: &scenario::Loaded,
    opts: &RunOptions,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Report {
    run_inner(loaded, opts, progress, &mut |loaded, seed, p| {
        run::simulate(loaded, seed, true, p)
    })
}

type MeshRun<'a> =
    dyn FnMut(&scenario::Loaded, u64, &mut dyn FnMut(u64, u64)) -> reports::RunStats + 'a;

fn run_inner(
    loaded: &scenario::Loaded,
    opts: &RunOptions,
    progress: &mut dyn FnMut(&str, u64, u64),
    mesh_run: &mut MeshRun<'_>,
) -> Report {
    let s = &loaded.scenario;
    let mesh = s
        .mesh
        .enabled
        .then(|| mesh_run(loaded, opts.seed, &mut |n, e| progress("mesh", n, e)));
    let baseline = (s.mesh.baseline || !s.mesh.enabled).then(|| {
        run::simulate(loaded, opts.seed, false, &mut |n, e| {
            progress("no mesh", n, e)
        })
    });
    let overhead = match (&mesh, &baseline) {
        (Some(m), Some(b)) => Some(Overhead::between(m, b)),
        _ => None,
    };
    let faults = s
        .faults
        .iter()
        .map(|f| {
            let f = f.get_ref();
            let target = match f {
                scenario::FaultSpec::Latency {
                    between, one_way, ..
                }
                | scenario::FaultSpec::Partition {
                    between, one_way, ..
                }
                | scenario::FaultSpec::Hold {
                    between, one_way, ..
                } => {
                    format!(
                        "{} {} {}",
                        between[0],
                        if *one_way { "->" } else { "<->" },
                        between[1]
                    )
                }
                scenario::FaultSpec::Crash { pod, .. } => pod.clone(),
                scenario::FaultSpec::Slow { service, pod, .. }
                | scenario::FaultSpec::Errors { service, pod, .. } => {
                    pod.clone().unwrap_or_else(|| service.clone())
                }
            };
            FaultWindow {
                kind: f.kind().to_string(),
                target,
                start_ms: f.at().as_ms(),
                end_ms: f.until().map(|u| u.as_ms()),
            }
        })
        .collect();
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
            repro: format!(
                "cargo run --release --bin meshsim -- run {} --seed {}",
                opts.scenario_arg, opts.seed
            ),
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
    if !balanced || report.assertions.iter().any(|a| !a.passed) {
        report.verdict = Verdict::Fail;
    }
    report
}
