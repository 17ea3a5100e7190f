//! `meshsim shrink`: the command line over `sim::shrink`. Prints every step as it is tried,
//! writes the smaller scenario, and says how to run it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::seeds::{Budget, parse_budget};

/// Arguments of `meshsim shrink`.
#[derive(clap::Args, Debug)]
pub struct ShrinkArgs {
    /// The scenario file that fails.
    scenario: PathBuf,
    /// The seed it fails on.
    #[arg(long)]
    seed: u64,
    /// Where to write the smaller scenario.
    #[arg(long)]
    out: PathBuf,
    /// The assertion that must keep failing, as written in the file (default: the first that
    /// fails).
    #[arg(long)]
    assertion: Option<String>,
    /// Stop after this many simulations (`100`) or this much wall time (`90s`, `10m`); what was
    /// found so far is written.
    #[arg(long, default_value = "200")]
    budget: String,
}

/// Run the command: 0 a smaller (or equal) failing scenario was written, 2 bad input.
pub fn run(a: &ShrinkArgs) -> ExitCode {
    match shrink(a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: shrink: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[allow(clippy::disallowed_methods)] // wall time bounds the search (--budget); never in a report
fn shrink(a: &ShrinkArgs) -> anyhow::Result<()> {
    let budget = parse_budget(&a.budget)?;
    let loaded = sim::scenario::load(&a.scenario).map_err(|e| anyhow::anyhow!("{e}"))?;
    let text = std::fs::read_to_string(&a.scenario)
        .with_context(|| format!("reading {}", a.scenario.display()))?;
    let started = std::time::Instant::now();
    let mut more = |runs: usize| match budget {
        Budget::Runs(n) => runs < n,
        Budget::Time(t) => started.elapsed() < t,
    };
    let mut n = 0;
    let mut on_step = |s: &sim::shrink::Step| {
        n += 1;
        let how = match &s.outcome {
            sim::shrink::Outcome::Kept => "still fails: kept".to_string(),
            sim::shrink::Outcome::Passes => "passes: undone".to_string(),
            sim::shrink::Outcome::Invalid(why) => format!("invalid, skipped ({why})"),
        };
        eprintln!("  step {n:>3}: {:<44} {how}", s.what);
    };
    eprintln!(
        "meshsim shrink: {} seed {} (budget {})",
        a.scenario.display(),
        a.seed,
        a.budget
    );
    let s = sim::shrink::shrink(
        &loaded,
        &text,
        a.seed,
        a.assertion.as_deref(),
        &mut more,
        &mut on_step,
    )?;
    let header = format!(
        "# Shrunk by `meshsim shrink {} --seed {}`: `{}` still fails.\n# Before: {}.\n# After:  {}.\n# Run it: meshsim run {}\n\n",
        a.scenario.display(),
        a.seed,
        s.assertion,
        s.before,
        s.after,
        a.out.display()
    );
    std::fs::write(&a.out, header + &s.text)
        .with_context(|| format!("writing {}", a.out.display()))?;
    let kept = s
        .steps
        .iter()
        .filter(|x| x.outcome == sim::shrink::Outcome::Kept)
        .count();
    eprintln!(
        "  {kept} of {} steps kept in {} simulations ({:.1}s){}",
        s.steps.len(),
        s.runs,
        started.elapsed().as_secs_f64(),
        if s.budget_exhausted {
            "; the budget ran out, a further search may shrink more"
        } else {
            "; no single step shrinks it further"
        }
    );
    eprintln!("  before: {}\n  after:  {}", s.before, s.after);
    println!(
        "wrote {}; run it: meshsim run {}",
        a.out.display(),
        a.out.display()
    );
    Ok(())
}
