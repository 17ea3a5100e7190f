//! `meshsim`, the binary: parses the command line, runs the simulator and writes reports.
//! The only place `anyhow` and process exit codes live.
//!
//! Exit codes: 0 the run passed its assertions, 1 an assertion failed (or the books did not
//! balance), 2 bad input (the message names file, line and field).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod control;
mod determinism;
mod gate;
mod seeds;
mod shrink;
mod sweep;

/// Simulate a service mesh, deterministically, under the faults a scenario file describes,
/// and report what the mesh did: latency overhead, failures by reason, every request accounted for.
#[derive(Parser, Debug)]
#[command(
    name = "meshsim",
    version,
    after_help = "Examples:\n  meshsim run scenarios/three-tier.toml --seed 7 --out out/\n  meshsim check scenarios/partition.toml\n  meshsim report out/\n  meshsim diff out-seed7/ out-seed8/\n  meshsim sweep scenarios/partition.toml --seeds 1..=50 --out out/sweep\n  meshsim shrink failing.toml --seed 17 --out min.toml\n  meshsim gate --baseline ci/baselines --current out/library\n  meshsim bench --rates 500,2000,8000 --out out/bench\n  meshsim load 127.0.0.1:8080 --rate 2000 --duration 10\n\nScenario format: scenarios/README.md. Exit codes: 0 ok, 1 an assertion failed, 2 bad input."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a scenario with and without the mesh, check its assertions, write report.json,
    /// summary.md, plots (SVG and PNG) and index.html.
    ///
    /// Exit status: 0 assertions held, 1 an assertion failed, 2 bad input, 3 the simulation
    /// itself panicked (no report is written).
    Run {
        /// The scenario file (TOML; see scenarios/README.md).
        scenario: PathBuf,
        /// Seed for every random choice (default: the scenario's `seed`). Same seed, same report, byte for byte.
        #[arg(long)]
        seed: Option<u64>,
        /// Directory for report.json, summary.md, plots/ and index.html (created if missing).
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Print nothing but errors.
        #[arg(long, short)]
        quiet: bool,
        /// Also write every sidecar's JSON access log (one line per request per hop) to
        /// access.log.jsonl; off by default, as in Istio, because it is large.
        #[arg(long)]
        access_log: bool,
        /// Run the scenario a second time and check the two runs are identical; if not, say in
        /// which simulated second their packet deliveries first parted and which report line
        /// first differs (exit 1).
        #[arg(long)]
        check_determinism: bool,
        /// Change a field of the scenario for this run, e.g. `--set mesh.preset=linkerd-2.16`,
        /// `--set services.api.replicas=3` (repeatable; see scenarios/README.md).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<sim::scenario::overrides::Override>,
        /// Run once per value and compare side by side in OUT/matrix.md, e.g.
        /// `--matrix mesh.preset=istio-1.24,linkerd-2.16` (each run in OUT/<key=value>/).
        #[arg(long, value_name = "KEY=V1,V2,...")]
        matrix: Option<String>,
    },
    /// Check a scenario file and print what it describes, without running it.
    ///
    /// Exit status: 0 valid, 2 invalid.
    Check {
        /// The scenario file.
        scenario: PathBuf,
    },
    /// Measure the real proxy on loopback sockets: direct, one and two meshsim sidecars (plain
    /// and mTLS), nginx and HAProxy, HTTP/1.1 and HTTP/2, at several rates; writes report.json,
    /// summary.md, SVG plots, .hgrm files and a calibration file for the simulator.
    ///
    /// Takes minutes (about 5 s per point); nginx and HAProxy are skipped with a message when
    /// absent (bench/install-peers.sh installs them).
    Bench(bench::cli::BenchArgs),
    /// Open-loop load at a fixed rate against an HTTP server, latency corrected for coordinated
    /// omission; prints percentiles and optionally writes the .hgrm distribution.
    Load(LoadArgs),
    /// Run one sidecar proxy on real sockets with static routes (what the bench measures);
    /// `--admin` serves Prometheus metrics, `--access-log` writes JSON access logs.
    Sidecar(bench::sidecar::SidecarArgs),
    /// Run a control plane on real sockets for `meshsim sidecar --control-plane`: serves the
    /// services, endpoints and policies of a mesh file, and pushes every change to the file.
    ControlPlane(control::ControlPlaneArgs),
    /// Show each proxy's sync state at a control plane (SYNCED, STALE, NOT SENT, NACKED), as
    /// `istioctl proxy-status` does.
    ProxyStatus(control::StatusArgs),
    /// A toy HTTP service that answers every request with its name, method and path.
    Echo(control::EchoArgs),
    /// Render summary.md, the plots (SVG and PNG) and index.html again from a run directory's
    /// report.json (or a report.json given directly).
    Report {
        /// A run directory (holding report.json) or the report.json itself.
        dir: PathBuf,
        /// Where to write (default: the report's own directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run one scenario over many seeds in parallel: a record per seed, a summary of every
    /// metric across seeds with 95% intervals (JSON, Markdown, a plot), JUnit, and the command
    /// that reproduces each failing seed. `meshsim sweep merge` combines shards.
    ///
    /// Exit status: 0 every seed passed, 1 a seed failed, 2 bad input.
    Sweep(sweep::SweepArgs),
    /// Shrink a failing scenario: find a smaller one (fewer faults, services, calls, pods,
    /// shorter, lighter, narrower fault windows) on which the same assertion still fails with the
    /// same seed; prints every step tried and writes the smaller file.
    ///
    /// Exit status: 0 written, 2 bad input (or the seed passes).
    Shrink(shrink::ShrinkArgs),
    /// Gate a change: compare current runs (or sweeps, or a bench) with baselines metric by
    /// metric under per-metric rules; Markdown on stdout, optionally JSON, JUnit, and GitHub
    /// annotations. `--update` records the current side as the new baseline.
    ///
    /// Exit status: 0 no regression, 1 a regression, 2 bad input.
    Gate(gate::GateArgs),
    /// Compare two runs side by side: every metric both reports hold, with the change.
    ///
    /// Prints Markdown; exit status 0 whatever differs (gating against baselines is separate).
    Diff {
        /// The first run (directory or report.json).
        a: PathBuf,
        /// The second run.
        b: PathBuf,
        /// List unchanged metrics too.
        #[arg(long)]
        all: bool,
        /// Also write the comparison to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
struct LoadArgs {
    /// Where to send, ip:port (loopback).
    target: std::net::SocketAddr,
    /// Host header / :authority (a sidecar routes by it).
    #[arg(long, default_value = "bench")]
    host: String,
    /// Request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// http1 or http2 (h2c).
    #[arg(long, default_value = "http1")]
    protocol: String,
    /// Requests per second.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds of sending, warm-up included.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up, not measured.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Stop after this many requests.
    #[arg(long)]
    requests: Option<u64>,
    /// Write the percentile distribution (HdrHistogram text format) here.
    #[arg(long)]
    hgrm: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            scenario,
            seed,
            out,
            quiet,
            access_log,
            check_determinism,
            sets,
            matrix,
        } => {
            let result = match matrix {
                Some(m) => matrix_cmd(&scenario, seed, &out, quiet, &sets, &m),
                None => run(
                    &scenario,
                    seed,
                    &out,
                    quiet,
                    access_log,
                    check_determinism,
                    &sets,
                ),
            };
            result.unwrap_or_else(|e| {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            })
        }
        Command::Check { scenario } => match sim::scenario::load(&scenario) {
            Ok(l) => {
                let s = &l.scenario;
                let pods: u32 = s.services.iter().map(|s| s.replicas).sum();
                println!(
                    "{}: ok — {} services, {} pods, {} client hosts, {} faults, {} assertions",
                    scenario.display(),
                    s.services.len(),
                    pods,
                    s.workload.clients,
                    s.faults.len(),
                    s.assertions.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Bench(args) => match bench_cmd(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Load(args) => match load_cmd(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Report { dir, out } => match report_cmd(&dir, out.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Diff { a, b, all, out } => match diff_cmd(&a, &b, all, out.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Gate(args) => gate::run(&args),
        Command::Sweep(args) => sweep::run(&args),
        Command::Shrink(args) => shrink::run(&args),
        Command::ControlPlane(args) => edge("control-plane", control::run(&args)),
        Command::ProxyStatus(args) => edge("proxy-status", control::status(&args)),
        Command::Echo(args) => edge("echo", control::echo(&args)),
        Command::Sidecar(args) => match bench::sidecar::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: sidecar: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// A long-running or one-shot real-socket command's result as an exit status.
fn edge(what: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {what}: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[allow(clippy::disallowed_methods)] // wall time of a real-socket bench, for progress lines only
fn bench_cmd(args: &bench::cli::BenchArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding meshsim's own binary")?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let started = std::time::Instant::now();
    // A spinner with each finished step above it on a terminal; nothing on a pipe or in CI.
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let report = bench::cli::run(args, (exe, vec!["sidecar".into()]), command, &mut |m| {
        bar.println(format!("  [{:>4.0}s] {m}", started.elapsed().as_secs_f64()));
        bar.set_message(m.to_string());
    })?;
    bar.finish_and_clear();
    print!("{}", reports::bench::markdown(&report));
    eprintln!(
        "  wrote {}/report.json, summary.md, calibration.toml and {} .hgrm files",
        args.out.display(),
        report.points.len()
    );
    Ok(())
}

/// `dir/report.json`, or `dir` itself when it names a file.
fn report_path(dir: &std::path::Path) -> std::path::PathBuf {
    if dir.is_dir() {
        dir.join("report.json")
    } else {
        dir.to_path_buf()
    }
}

fn report_cmd(dir: &std::path::Path, out: Option<&std::path::Path>) -> anyhow::Result<()> {
    let path = report_path(dir);
    let report = reports::render::read_report(&path)?;
    let out = match out {
        Some(o) => o.to_path_buf(),
        None => path
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default(),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let rendered = reports::render::render_dir(&report, &out)?;
    if let Some(why) = &rendered.png_skipped {
        eprintln!("  PNGs skipped: {why}");
    }
    println!(
        "rendered {} files from {} into {} (open {})",
        rendered.files.len(),
        path.display(),
        out.display(),
        out.join("index.html").display()
    );
    Ok(())
}

fn diff_cmd(
    a: &std::path::Path,
    b: &std::path::Path,
    all: bool,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let (pa, pb) = (report_path(a), report_path(b));
    let ra = reports::render::read_report(&pa)?;
    let rb = reports::render::read_report(&pb)?;
    let md = reports::diff::render(
        &ra,
        &a.display().to_string(),
        &rb,
        &b.display().to_string(),
        all,
    );
    print!("{md}");
    if let Some(o) = out {
        std::fs::write(o, &md).with_context(|| format!("writing {}", o.display()))?;
    }
    Ok(())
}

fn load_cmd(a: &LoadArgs) -> anyhow::Result<()> {
    let protocol = match a.protocol.as_str() {
        "http1" => mesh_core::registry::Protocol::Http1,
        "http2" => mesh_core::registry::Protocol::Http2,
        p => anyhow::bail!("unknown protocol {p:?}; expected http1 or http2"),
    };
    let spec = bench::load::LoadSpec {
        target: a.target,
        host: a.host.clone(),
        path: a.path.clone(),
        protocol,
        rate_rps: a.rate,
        connections: a.connections,
        duration: std::time::Duration::from_secs_f64(a.duration.max(0.0)),
        warmup: std::time::Duration::from_secs_f64(a.warmup.max(0.0)),
        max_requests: a.requests,
        timeout: std::time::Duration::from_secs(5),
    };
    let r = bench::load::run(&spec)?;
    let s = r.summary(a.rate);
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "{} rps target, {:.1} achieved; {} due, {} ok, errors {:?}",
        a.rate, s.achieved_rps, s.due, s.ok, s.errors
    );
    println!(
        "latency ms (from intended send time): p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  p99.99 {:.3}  max {:.3}",
        ms(s.p50_us),
        ms(s.p90_us),
        ms(s.p99_us),
        ms(s.p999_us),
        ms(s.p9999_us),
        ms(s.max_us)
    );
    if let Some(p) = &a.hgrm {
        std::fs::write(p, r.hgrm()).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn run(
    scenario: &std::path::Path,
    seed: Option<u64>,
    out: &std::path::Path,
    quiet: bool,
    access_log: bool,
    check_determinism: bool,
    sets: &[sim::scenario::overrides::Override],
) -> anyhow::Result<ExitCode> {
    let loaded = match sim::scenario::load_with(scenario, sets) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let seed = seed.unwrap_or(loaded.scenario.seed);
    let scenario_arg = scenario.display().to_string();
    let opts = sim::RunOptions {
        seed,
        repro: sweep::repro(&scenario_arg, seed, sets),
        scenario_arg,
        access_log,
    };
    // A bar on a terminal; nothing in CI or with --quiet (indicatif hides itself when stderr
    // is not a terminal, and `hidden` covers --quiet).
    let bar = if quiet || !std::io::stderr().is_terminal() {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(0)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "  {prefix:<8} [{bar:30}] {msg} simulated  ({elapsed})",
        )
        .expect("a fixed template parses")
        .progress_chars("=> "),
    );
    let mut progress = |phase: &str, now_ms: u64, end_ms: u64| {
        if bar.prefix() != phase {
            bar.set_prefix(phase.to_string());
        }
        bar.set_length(end_ms);
        bar.set_position(now_ms.min(end_ms));
        bar.set_message(format!(
            "{:.1}s / {:.1}s",
            now_ms as f64 / 1000.0,
            end_ms as f64 / 1000.0
        ));
    };
    if !quiet {
        eprintln!("meshsim: {} (seed {seed})", loaded.scenario.name);
    }
    #[allow(clippy::disallowed_methods)]
    // wall time for the user's information only; never in the report
    let started = std::time::Instant::now();
    let first = sim::run(&loaded, &opts, &mut progress);
    bar.finish_and_clear();
    let mut diverged = false;
    if check_determinism {
        if !quiet {
            eprintln!("  determinism check: running again on a fresh thread");
        }
        let second = std::thread::scope(|s| {
            s.spawn(|| sim::run(&loaded, &opts, &mut |_, _, _| {}))
                .join()
                .map_err(|_| anyhow::anyhow!("the second run panicked"))
        })?;
        let d = determinism::compare(&first, &second);
        let seconds = first.digests.first().map_or(0, |(_, v)| v.len());
        println!("{}", determinism::describe(&d, seconds));
        diverged = !d.is_none();
    }
    let sim::RunOutput {
        report,
        telemetry,
        panics,
        ..
    } = first;
    // A panic inside the simulation (caught by its runtime, so the run went on) makes every
    // number suspect: say so, write nothing that could be read as a result, and exit 3.
    if let Some(first) = panics.first() {
        eprintln!(
            "error: the simulation panicked {} time(s); its report is not written. First: {first}\n  \
             reproduce: {}",
            panics.len(),
            report.run.repro
        );
        return Ok(ExitCode::from(3));
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let json = reports::to_json(&report);
    std::fs::write(out.join("report.json"), &json)
        .with_context(|| format!("writing {}", out.join("report.json").display()))?;
    let rendered = reports::render::render_dir(&report, out)?;
    if let Some(t) = &telemetry {
        write_telemetry(t, out, access_log)?;
    }
    if !quiet {
        print_short(&report);
        println!(
            "  wrote {}, summary.md, index.html and {} plots in {}",
            out.join("report.json").display(),
            rendered
                .files
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "svg"))
                .count(),
            out.display()
        );
        if let Some(why) = &rendered.png_skipped {
            println!("  PNGs skipped: {why}");
        }
        println!("  wall time {:.1}s", started.elapsed().as_secs_f64());
        println!("  reproduce: {}", report.run.repro);
    }
    Ok(match report.verdict {
        reports::Verdict::Pass if !diverged => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}

/// The meshed run's own telemetry: `metrics/<pod>.prom`, `traces.otlp.json` and, when asked,
/// `access.log.jsonl`.
fn write_telemetry(
    t: &sim::telemetry::Telemetry,
    out: &std::path::Path,
    access_log: bool,
) -> anyhow::Result<()> {
    let dir = out.join("metrics");
    // A re-run into the same directory must not leave pods of an earlier scenario behind.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (host, text) in &t.metrics {
        let p = dir.join(format!("{host}.prom"));
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    let p = out.join("traces.otlp.json");
    std::fs::write(
        &p,
        sim::telemetry::otlp_json(&t.spans, sim::telemetry::EXPORTED_TRACES),
    )
    .with_context(|| format!("writing {}", p.display()))?;
    let p = out.join("access.log.jsonl");
    if access_log {
        let mut text = t.access_log.join("\n");
        text.push('\n');
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    } else {
        let _ = std::fs::remove_file(&p);
    }
    Ok(())
}

fn print_short(report: &reports::Report) {
    let verdict = match report.verdict {
        reports::Verdict::Pass => "PASS",
        reports::Verdict::Fail => "FAIL",
    };
    println!(
        "{verdict}: {} (seed {})",
        report.run.scenario, report.run.seed
    );
    for run in [&report.mesh, &report.baseline].into_iter().flatten() {
        let b = &run.books;
        println!(
            "  {:<8} sent {:>7}  ok {:>7}  failed {:>6}  in flight {:>3}  P50 {:>8} ms  P99 {:>8} ms  P99.9 {:>8} ms{}",
            if run.mesh { "mesh" } else { "no mesh" },
            b.sent,
            b.ok,
            b.failed,
            b.in_flight,
            reports::summary::ms(run.latency.p50_us),
            reports::summary::ms(run.latency.p99_us),
            reports::summary::ms(run.latency.p999_us),
            if b.balanced {
                ""
            } else {
                "  BOOKS DO NOT BALANCE"
            }
        );
    }
    if let Some(o) = &report.overhead {
        println!(
            "  overhead P50 {:+.3} ms  P99 {:+.3} ms  P99.9 {:+.3} ms",
            o.p50_us as f64 / 1000.0,
            o.p99_us as f64 / 1000.0,
            o.p999_us as f64 / 1000.0
        );
    }
    for a in &report.assertions {
        let actual = a
            .actual
            .map(reports::summary::number)
            .unwrap_or_else(|| "n/a".into());
        println!(
            "  [{}] {}  (actual {actual})",
            if a.passed { "ok" } else { "FAILED" },
            a.text
        );
    }
}

/// `--matrix KEY=V1,V2`: one run per value (with any `--set`), each in OUT/KEY=V/, and a
/// side-by-side table of the headline metrics in OUT/matrix.md.
fn matrix_cmd(
    scenario: &std::path::Path,
    seed: Option<u64>,
    out: &std::path::Path,
    quiet: bool,
    sets: &[sim::scenario::overrides::Override],
    matrix: &str,
) -> anyhow::Result<ExitCode> {
    let key = matrix.split_once('=').map_or(matrix, |(k, _)| k);
    let mut columns = Vec::new();
    let mut worst = ExitCode::SUCCESS;
    for (o, dir) in seeds::matrix(matrix, out)? {
        let label = o.to_string();
        let mut all = sets.to_vec();
        all.push(o);
        let code = run(scenario, seed, &dir, quiet, false, false, &all)?;
        if code == ExitCode::from(2) {
            return Ok(code);
        }
        if code != ExitCode::SUCCESS {
            worst = code;
        }
        let report = reports::render::read_report(&dir.join("report.json"))?;
        columns.push((label, reports::metrics::of_report(&report)));
    }
    let mut md = format!(
        "# {} side by side: {key}\n\n| metric |{}\n|---|{}\n",
        scenario.display(),
        columns
            .iter()
            .map(|(l, _)| format!(" {l} |"))
            .collect::<String>(),
        "---:|".repeat(columns.len())
    );
    for m in reports::sweep::KEY_METRICS {
        md += &format!("| {m} |");
        for (_, c) in &columns {
            md += &format!(
                " {} |",
                c.get(*m)
                    .map(|v| reports::summary::number(*v))
                    .unwrap_or_else(|| "—".into())
            );
        }
        md += "\n";
    }
    std::fs::write(out.join("matrix.md"), &md)
        .with_context(|| format!("writing {}", out.join("matrix.md").display()))?;
    print!("{md}");
    Ok(worst)
}
