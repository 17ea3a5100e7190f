//! `meshsim sweep`: one scenario over many seeds, in parallel, with one record per seed, a
//! summary of every metric across the seeds (95% intervals), JUnit, and the exact command that
//! reproduces each failing seed. `--shard i/n` (or a Kubernetes Indexed Job's or a Slurm array's
//! environment) runs a slice of the seeds; `meshsim sweep merge` combines slices into the summary
//! one sweep would have written.
//!
//! Each seed is a whole simulation on its own thread with its own runtime and thread-local
//! simulator state, so seeds run side by side without sharing anything that reaches a report:
//! a seed's report is byte for byte the one `meshsim run --seed N` writes (tested). OS threads
//! are used here, at the binary's edge, never inside a simulation.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, bail};
use rand::SeedableRng;
use reports::sweep::{SweepRecord, SweepSummary};
use reports::{Report, Verdict};
use sim::scenario::overrides::Override;

use crate::seeds::{Budget, parse_budget, parse_seeds, parse_shard, shard_seeds};

/// Arguments of `meshsim sweep`.
#[derive(clap::Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    merge: Option<SweepCommand>,
    /// The scenario file.
    #[arg(required = true)]
    scenario: Option<PathBuf>,
    /// Seeds: `A..B` (B excluded, as in Rust) or `A..=B` (B included).
    #[arg(long, required = true)]
    seeds: Option<String>,
    /// Simulations at once (default: the machine's cores).
    #[arg(long, short)]
    jobs: Option<usize>,
    /// Folder for records.jsonl, summary.json, summary.md, plots and failing seeds' reports.
    #[arg(long, default_value = "out/sweep")]
    out: PathBuf,
    /// Also write JUnit XML here (one test case per seed).
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Run only shard I of N (0-based), e.g. `2/8`. Without it, a Kubernetes Indexed Job's
    /// JOB_COMPLETION_INDEX/JOB_COMPLETIONS or a Slurm array's SLURM_ARRAY_TASK_ID/
    /// SLURM_ARRAY_TASK_COUNT (from SLURM_ARRAY_TASK_MIN) choose it.
    #[arg(long)]
    shard: Option<String>,
    /// Stop starting seeds after this many runs (`200`) or this much wall time (`90s`, `10m`,
    /// `1h`); what finished is summarised.
    #[arg(long)]
    budget: Option<String>,
    /// Print nothing but errors and failing seeds.
    #[arg(long, short)]
    quiet: bool,
    /// Change a field of the scenario for every seed, e.g. `--set mesh.preset=linkerd-2.16`
    /// (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<Override>,
    /// Let each seed also draw the scenario from the ranges its `[swarm]` section declares
    /// (fault times, latencies, which replica fails, load); every drawn value is printed and each
    /// seed's drawn scenario is written to OUT/drawn/SEED.toml, the file its repro command runs.
    #[arg(long)]
    swarm: bool,
    /// Sweep once per value and compare the means side by side in OUT/matrix.md, e.g.
    /// `--matrix mesh.preset=istio-1.24,linkerd-2.16` (each sweep in OUT/<key=value>/, with
    /// its JUnit there when --junit is given).
    #[arg(long, value_name = "KEY=V1,V2,...")]
    matrix: Option<String>,
}

#[derive(clap::Subcommand, Debug, Clone)]
enum SweepCommand {
    /// Combine the folders of several shards (or interrupted sweeps) of one scenario into the
    /// summary a single sweep writes.
    Merge {
        /// The shards' --out folders.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where to write the merged records and summary.
        #[arg(long)]
        out: PathBuf,
        /// Also write JUnit XML here.
        #[arg(long)]
        junit: Option<PathBuf>,
    },
}

/// The command that reproduces `seed` of `scenario` with `sets` (also what `meshsim run` puts in
/// a report).
pub fn repro(scenario: &str, seed: u64, sets: &[Override]) -> String {
    let mut s = format!("cargo run --release --bin meshsim -- run {scenario} --seed {seed}");
    for o in sets {
        let o = o.to_string();
        // Quoted for a POSIX shell when it holds anything but the usual characters.
        if o.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-=/:@,".contains(c))
        {
            s += &format!(" --set {o}");
        } else {
            s += &format!(" --set '{}'", o.replace('\'', "'\\''"));
        }
    }
    s
}

/// Run the command; errors are bad input (exit 2).
pub fn run(a: &SweepArgs) -> ExitCode {
    let result = match &a.merge {
        Some(SweepCommand::Merge { dirs, out, junit }) => merge(dirs, out, junit.as_deref()),
        None if a.matrix.is_some() => matrix(a),
        None => sweep(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: sweep: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn commit() -> &'static str {
    option_env!("MESHSIM_COMMIT").unwrap_or("unknown")
}

/// The record of one seed; `scenario_hash` is the swept file's (in a swarm sweep each seed runs
/// its own drawn file, but they are one sweep of one scenario).
fn record(
    report: &Report,
    scenario_arg: &str,
    sets: &[Override],
    scenario_hash: &str,
) -> SweepRecord {
    SweepRecord {
        schema_version: reports::SCHEMA_VERSION,
        scenario: report.run.scenario.clone(),
        scenario_hash: scenario_hash.to_string(),
        commit: commit().into(),
        seed: report.run.seed,
        verdict: report.verdict,
        failed_assertions: report
            .assertions
            .iter()
            .filter(|a| !a.passed)
            .map(|a| a.text.clone())
            .collect(),
        metrics: reports::metrics::of_report(report),
        repro: repro(scenario_arg, report.run.seed, sets),
        drawn: Default::default(),
    }
}

/// Write seed `seed`'s drawn scenario (the swept file with `sets` and `draws` applied) to
/// OUT/drawn/SEED.toml and load it.
fn write_drawn(
    out: &Path,
    seed: u64,
    src: &str,
    sets: &[Override],
    draws: &[Override],
) -> anyhow::Result<(sim::scenario::Loaded, PathBuf)> {
    let mut all = sets.to_vec();
    all.extend(draws.iter().cloned());
    let text = sim::scenario::overrides::apply(src, &all).map_err(|e| anyhow::anyhow!(e))?;
    let dir = out.join("drawn");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{seed}.toml"));
    let list: Vec<String> = draws.iter().map(|o| o.to_string()).collect();
    std::fs::write(
        &path,
        format!(
            "# meshsim sweep --swarm, seed {seed} drew: {}\n\n{text}",
            list.join(" ")
        ),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    let loaded = sim::scenario::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((loaded, path))
}

/// A line above the progress bar, or on stderr when there is no bar (not a terminal, --quiet).
fn say(bar: &indicatif::ProgressBar, msg: String) {
    if bar.is_hidden() {
        eprintln!("{msg}");
    } else {
        bar.println(msg);
    }
}

fn line(r: &SweepRecord) -> String {
    let mut s = serde_json::to_string(r).expect("records serialise");
    s.push('\n');
    s
}

#[allow(clippy::disallowed_methods)] // wall time bounds the sweep (--budget); never in a report
fn sweep(a: &SweepArgs) -> anyhow::Result<ExitCode> {
    let scenario = a.scenario.as_ref().context("a scenario file is required")?;
    let loaded = match sim::scenario::load_with(scenario, &a.sets) {
        Ok(l) => l,
        Err(e) => bail!("{e}"),
    };
    let swarm = if a.swarm {
        let t = loaded.scenario.swarm.as_ref().with_context(|| {
            format!(
                "--swarm: {} has no [swarm] section saying what a seed may draw",
                scenario.display()
            )
        })?;
        let sw = sim::scenario::swarm::Swarm::parse(t)
            .map_err(|(f, m)| anyhow::anyhow!("{}: {f}: {m}", scenario.display()))?;
        let src = std::fs::read_to_string(scenario)
            .with_context(|| format!("reading {}", scenario.display()))?;
        Some((sw, src))
    } else {
        None
    };
    let all = parse_seeds(a.seeds.as_deref().unwrap_or_default())?;
    let shard = parse_shard(a.shard.as_deref(), &|k| std::env::var(k).ok())?;
    let mut seeds = shard_seeds(&all, shard);
    let budget = a.budget.as_deref().map(parse_budget).transpose()?;
    if let Some(Budget::Runs(n)) = budget {
        seeds.truncate(n);
    }
    if seeds.is_empty() {
        // A shard can be empty (more shards than seeds); that is not an error.
        eprintln!(
            "meshsim sweep: no seeds to run in this shard ({}/{} of {})",
            shard.0,
            shard.1,
            all.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = a.jobs.unwrap_or(cores).clamp(1, seeds.len().max(1));
    let scenario_arg = scenario.display().to_string();
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    // A previous sweep's failing reports and drawn scenarios would mix with this one's.
    for stale in ["failing", "drawn"] {
        let d = a.out.join(stale);
        if d.is_dir() {
            std::fs::remove_dir_all(&d).with_context(|| format!("clearing {}", d.display()))?;
        }
    }
    let records_path = a.out.join("records.jsonl");
    let file = std::fs::File::create(&records_path)
        .with_context(|| format!("creating {}", records_path.display()))?;
    let file = Mutex::new(file);
    if !a.quiet {
        eprintln!(
            "meshsim sweep: {} — {} seeds{} on {jobs} threads",
            loaded.scenario.name,
            seeds.len(),
            if shard.1 > 1 {
                format!(" (shard {}/{} of {})", shard.0, shard.1, all.len())
            } else {
                String::new()
            },
        );
    }
    let bar = if a.quiet || !std::io::stderr().is_terminal() {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(seeds.len() as u64)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "  [{bar:30}] {pos}/{len} seeds, {msg} ({elapsed}, eta {eta})",
        )
        .expect("a fixed template parses")
        .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let records: Mutex<Vec<SweepRecord>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Some(Budget::Time(t)) = budget
                        && started.elapsed() >= t
                    {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&seed) = seeds.get(i) else { return };
                    // A swarm seed draws its scenario, writes it, and runs that file.
                    let drawn = match &swarm {
                        None => None,
                        Some((sw, src)) => {
                            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(sim::derive_seed(
                                seed, "swarm",
                            ));
                            let draws = sw.draw(&mut rng);
                            match write_drawn(&a.out, seed, src, &a.sets, &draws) {
                                Ok(x) => Some((x, draws)),
                                Err(e) => {
                                    // Each entry's extremes were checked at load; a combination
                                    // can still be invalid (a window drawn to end before it
                                    // starts). That seed is skipped, said, and not recorded.
                                    let list: Vec<String> = draws.iter().map(|o| o.to_string()).collect();
                                    say(&bar, format!("  seed {seed} drew an invalid scenario ({}), skipped: {e:#}", list.join(" ")));
                                    bar.inc(1);
                                    continue;
                                }
                            }
                        }
                    };
                    let (this, arg, sets): (&sim::scenario::Loaded, String, &[Override]) =
                        match &drawn {
                            Some(((l, path), _)) => (l, path.display().to_string(), &[]),
                            None => (&loaded, scenario_arg.clone(), &a.sets),
                        };
                    let opts = sim::RunOptions {
                        seed,
                        scenario_arg: arg.clone(),
                        repro: repro(&arg, seed, sets),
                        access_log: false,
                    };
                    let out = sim::run(this, &opts, &mut |_, _, _| {});
                    let mut rec = record(&out.report, &arg, sets, &loaded.hash);
                    if let Some((_, draws)) = &drawn {
                        rec.drawn = draws
                            .iter()
                            .map(|o| (o.path.clone(), o.value.clone()))
                            .collect();
                        if !a.quiet {
                            let list: Vec<String> = draws.iter().map(|o| o.to_string()).collect();
                            say(&bar, format!("  seed {seed} drew {}", list.join(" ")));
                        }
                    }
                    let mut result = file
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .write_all(line(&rec).as_bytes())
                        .with_context(|| format!("writing {}", records_path.display()));
                    if rec.verdict == Verdict::Fail {
                        failed.fetch_add(1, Ordering::Relaxed);
                        // The failing seed's report, to compare with its replay.
                        let dir = a.out.join("failing").join(seed.to_string());
                        result = result.and_then(|()| {
                            std::fs::create_dir_all(&dir)?;
                            std::fs::write(dir.join("report.json"), reports::to_json(&out.report))?;
                            Ok(())
                        });
                        say(
                            &bar,
                            format!(
                                "  seed {seed} FAILED: {} — reproduce: {}",
                                if rec.failed_assertions.is_empty() {
                                    "books did not balance or requests were left in flight".into()
                                } else {
                                    rec.failed_assertions.join("; ")
                                },
                                rec.repro
                            ),
                        );
                    }
                    if let Err(e) = result {
                        stop.store(true, Ordering::Relaxed);
                        *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return;
                    }
                    records.lock().unwrap_or_else(|p| p.into_inner()).push(rec);
                    bar.set_message(format!("{} failed", failed.load(Ordering::Relaxed)));
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    if let Some(e) = error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let records = records.into_inner().unwrap_or_else(|p| p.into_inner());
    let summary = write_outputs(&a.out, records, a.junit.as_deref())?;
    if !a.quiet {
        eprintln!(
            "  {} of {} seeds failed in {:.1}s; wrote {}",
            summary.failing_seeds.len(),
            summary.seeds.len(),
            started.elapsed().as_secs_f64(),
            a.out.join("summary.md").display()
        );
    }
    Ok(if summary.failing_seeds.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `--matrix`: one sweep per value, then the headline metrics' means and intervals side by side.
fn matrix(a: &SweepArgs) -> anyhow::Result<ExitCode> {
    let m = a.matrix.as_deref().unwrap_or_default();
    let key = m.split_once('=').map_or(m, |(k, _)| k);
    let mut columns = Vec::new();
    let mut worst = ExitCode::SUCCESS;
    for (o, dir) in crate::seeds::matrix(m, &a.out)? {
        let label = o.to_string();
        let mut one = a.clone();
        one.matrix = None;
        one.sets.push(o);
        one.out = dir;
        one.junit = a.junit.as_ref().map(|_| one.out.join("junit.xml"));
        let code = sweep(&one)?;
        if code != ExitCode::SUCCESS {
            worst = code;
        }
        let text = std::fs::read_to_string(one.out.join("summary.json"))
            .with_context(|| format!("reading {}", one.out.join("summary.json").display()))?;
        let summary: SweepSummary =
            serde_json::from_str(&text).context("reading the summary back")?;
        columns.push((label, summary));
    }
    let n = reports::summary::number;
    let mut md = format!(
        "# Sweep side by side: {key}\n\nMean ± 95% interval over seeds {}.\n\n| metric |{}\n|---|{}\n",
        a.seeds.as_deref().unwrap_or_default(),
        columns
            .iter()
            .map(|(l, _)| format!(" {l} |"))
            .collect::<String>(),
        "---:|".repeat(columns.len())
    );
    for k in reports::sweep::KEY_METRICS {
        md += &format!("| {k} |");
        for (_, s) in &columns {
            md += &match s.metrics.get(*k) {
                Some(m) if m.ci95.is_finite() => format!(" {} ± {} |", n(m.mean), n(m.ci95)),
                Some(m) => format!(" {} |", n(m.mean)),
                None => " — |".into(),
            };
        }
        md += "\n";
    }
    md += &format!(
        "| failing seeds |{}\n",
        columns
            .iter()
            .map(|(_, s)| format!(" {} |", s.failing_seeds.len()))
            .collect::<String>()
    );
    std::fs::write(a.out.join("matrix.md"), &md)
        .with_context(|| format!("writing {}", a.out.join("matrix.md").display()))?;
    print!("{md}");
    Ok(worst)
}

/// Records (sorted by seed, so any order of finishing and any split into shards writes the
/// same bytes), summary.json, summary.md, the plot, and JUnit if asked.
fn write_outputs(
    out: &Path,
    mut records: Vec<SweepRecord>,
    junit: Option<&Path>,
) -> anyhow::Result<SweepSummary> {
    records.sort_by_key(|r| r.seed);
    let summary = SweepSummary::of(&records).context("no seed finished")?;
    let write = |name: &str, text: &str| -> anyhow::Result<()> {
        let p = out.join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
    };
    // Replace the in-progress file at once, so an interrupted rewrite cannot lose records.
    let tmp = out.join("records.jsonl.tmp");
    std::fs::write(&tmp, records.iter().map(line).collect::<String>())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out.join("records.jsonl")).context("replacing records.jsonl")?;
    let mut json = serde_json::to_string_pretty(&summary).expect("summaries serialise");
    json.push('\n');
    write("summary.json", &json)?;
    write("summary.md", &summary.markdown(&records))?;
    match reports::plot::sweep::plot(&records) {
        Ok(svg) => write("seeds.svg", &svg)?,
        Err(e) => eprintln!("  plot skipped: {e}"),
    }
    if let Some(j) = junit {
        std::fs::write(j, junit_xml(&summary, &records))
            .with_context(|| format!("writing {}", j.display()))?;
    }
    Ok(summary)
}

fn junit_xml(summary: &SweepSummary, records: &[SweepRecord]) -> String {
    use ci::output::xml;
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s += &format!(
        "<testsuite name=\"{}\" tests=\"{}\" failures=\"{}\">\n",
        xml(&summary.scenario),
        records.len(),
        summary.failing_seeds.len()
    );
    for r in records {
        if r.verdict == Verdict::Fail {
            s += &format!(
                "  <testcase classname=\"{}\" name=\"seed {}\">\n    <failure message=\"{}\">{}</failure>\n  </testcase>\n",
                xml(&r.scenario),
                r.seed,
                xml(&r.failed_assertions.join("; ")),
                xml(&format!("reproduce: {}", r.repro))
            );
        } else {
            s += &format!(
                "  <testcase classname=\"{}\" name=\"seed {}\"/>\n",
                xml(&r.scenario),
                r.seed
            );
        }
    }
    s += "</testsuite>\n";
    s
}

fn merge(dirs: &[PathBuf], out: &Path, junit: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut records: Vec<SweepRecord> = Vec::new();
    for d in dirs {
        let src = ci::input::load(d).map_err(|e| anyhow::anyhow!("{e}"))?;
        let [one] = src.as_slice() else {
            bail!("{}: expected one sweep's folder", d.display());
        };
        if one.kind != ci::input::Kind::Sweep {
            bail!("{}: a {}, not a sweep", d.display(), one.kind.as_str());
        }
        let text = std::fs::read_to_string(&one.file)
            .with_context(|| format!("reading {}", one.file.display()))?;
        for (i, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<SweepRecord>(l) {
                Ok(r) => records.push(r),
                // An interrupted sweep's partial last line (ci::input::load checked the rest).
                Err(_) => eprintln!(
                    "  {}, line {}: incomplete record skipped",
                    one.file.display(),
                    i + 1
                ),
            }
        }
    }
    if let Some(first) = records.first()
        && let Some(other) = records
            .iter()
            .find(|r| r.scenario_hash != first.scenario_hash)
    {
        bail!(
            "the folders hold sweeps of different scenario files ({} {} and {} {}); expected shards of one sweep",
            first.scenario,
            first.scenario_hash,
            other.scenario,
            other.scenario_hash
        );
    }
    records.sort_by_key(|r| r.seed);
    if let Some(w) = records.windows(2).find(|w| w[0].seed == w[1].seed) {
        bail!(
            "seed {} is in more than one folder; expected disjoint shards",
            w[0].seed
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let summary = write_outputs(out, records, junit)?;
    eprintln!(
        "  merged {} folders: {} seeds, {} failed; wrote {}",
        dirs.len(),
        summary.seeds.len(),
        summary.failing_seeds.len(),
        out.join("summary.md").display()
    );
    Ok(if summary.failing_seeds.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
