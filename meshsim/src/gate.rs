//! `meshsim gate`: the command line over the `ci` crate. Reads the two sides, compares, prints
//! the Markdown, writes the requested files, annotates on GitHub Actions, and maps the verdict
//! to the exit status (0 pass, 1 regression, 2 bad input).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ci::{Config, GateError};

/// Arguments of `meshsim gate`.
#[derive(clap::Args, Debug)]
pub struct GateArgs {
    /// The baseline: a run's --out folder, a sweep's, a bench's, or a folder of such folders
    /// (matched to the current side by scenario name).
    #[arg(long)]
    pub baseline: PathBuf,
    /// The current side, in the same form.
    #[arg(long)]
    pub current: PathBuf,
    /// Gate rules (TOML; default: the built-in ci/gate.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Make the current side the new baseline (copies report.json / records.jsonl) and say what
    /// changed; exit 0.
    #[arg(long)]
    pub update: bool,
    /// Also write JUnit XML here (one test case per gated metric).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Also write the JSON verdict here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write the Markdown here (for a pull-request comment).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// List unchanged metrics too.
    #[arg(long)]
    pub all: bool,
}

/// Run the gate; errors are bad input.
pub fn run(a: &GateArgs) -> ExitCode {
    match gate(a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: gate: {e}");
            ExitCode::from(2)
        }
    }
}

fn write(path: &Path, text: &str) -> Result<(), GateError> {
    std::fs::write(path, text).map_err(|e| GateError::Io {
        path: path.to_path_buf(),
        error: e.to_string(),
    })
}

fn gate(a: &GateArgs) -> Result<ExitCode, GateError> {
    let (config, config_file) = match &a.config {
        Some(f) => (Config::load(f)?, f.clone()),
        None => (
            Config::parse(ci::config::DEFAULT, Path::new("ci/gate.toml (built in)"))?,
            PathBuf::from("ci/gate.toml (built in)"),
        ),
    };
    let current = ci::input::load(&a.current)?;
    // A first --update may start from nothing.
    let baseline = if a.update && !a.baseline.exists() {
        Vec::new()
    } else {
        ci::input::load(&a.baseline)?
    };
    let outcome = ci::compare::compare(&baseline, &current, &config, &config_file, a.update)?;
    let md = ci::output::markdown(&outcome, a.all);
    print!("{md}");
    if let Some(p) = &a.markdown {
        write(p, &md)?;
    }
    if let Some(p) = &a.json {
        write(p, &ci::output::json(&outcome))?;
    }
    if let Some(p) = &a.junit {
        write(p, &ci::output::junit(&outcome))?;
    }
    if std::env::var_os("GITHUB_ACTIONS").is_some_and(|v| v == "true") {
        print!("{}", ci::output::github_annotations(&outcome));
        if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY") {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&summary)
                .map_err(|e| GateError::Io {
                    path: summary.clone().into(),
                    error: e.to_string(),
                })?;
            let _ = f.write_all(md.as_bytes());
        }
    }
    if a.update {
        let single =
            a.current.join("report.json").is_file() || a.current.join("records.jsonl").is_file();
        for line in ci::update::apply(&outcome, &a.baseline, single)? {
            eprintln!("  updated {line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    Ok(if outcome.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
