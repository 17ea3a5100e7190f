//! Why the gate could not judge (exit status 2): bad input, never a regression.

use std::path::PathBuf;

/// Bad input to the gate.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// A file or folder could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// Which.
        path: PathBuf,
        /// What the OS said.
        error: String,
    },
    /// A report or record did not parse.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Malformed {
        /// Which file.
        path: PathBuf,
        /// Line, for JSON lines.
        line: Option<usize>,
        /// What was wrong, and what was expected.
        message: String,
    },
    /// The gate configuration is malformed.
    #[error("{}{}: {message}", file.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Config {
        /// The configuration file.
        file: PathBuf,
        /// Line of the error, when known.
        line: Option<usize>,
        /// What was wrong.
        message: String,
    },
    /// A folder holds nothing the gate can read.
    #[error("{}: no report.json, records.jsonl or folders holding them; expected a run's --out folder, a sweep's, a bench's, or a folder of such folders", path.display())]
    NothingToGate {
        /// The folder.
        path: PathBuf,
    },
    /// The two sides cannot be compared.
    #[error("{scenario}: {message} (baseline {}, current {})", baseline.display(), current.display())]
    Mismatch {
        /// The scenario.
        scenario: String,
        /// Baseline source.
        baseline: PathBuf,
        /// Current source.
        current: PathBuf,
        /// What differs, and what was expected.
        message: String,
    },
    /// A scenario is on one side only.
    #[error("{scenario}: only in {side} ({}); both sides must hold the same scenarios (record a new one with --update)", path.display())]
    Unmatched {
        /// The scenario.
        scenario: String,
        /// `baseline` or `current`.
        side: &'static str,
        /// Where it is.
        path: PathBuf,
    },
    /// A rule names a metric no compared run has.
    #[error("{}: rule `{pattern}` matches no metric of any compared run (names are listed in reports/src/metrics.rs)", file.display())]
    UnknownMetric {
        /// The configuration file.
        file: PathBuf,
        /// The rule's pattern.
        pattern: String,
    },
}
