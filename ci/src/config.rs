//! The gate's rules: which way each metric is better and how far it may move. Read from a small
//! TOML file (`ci/gate.toml` is the one our own CI uses and the default); rules are tried in
//! order and the first whose pattern matches a metric's name decides. A metric no rule matches is
//! shown, never gated.

use std::path::Path;

use serde::Deserialize;

use crate::error::GateError;

/// Which way is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Smaller is better (latency, failures).
    Lower,
    /// Larger is better (success ratio, throughput).
    Higher,
}

/// What a metric absent from one side means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Missing {
    /// Not comparable: shown as added or removed, never gated.
    #[default]
    Skip,
    /// Zero (counts that a report lists only when non-zero, e.g. failures by reason).
    Zero,
}

/// One rule.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Metric name pattern; `*` matches any run of characters (`mesh.latency.*`).
    pub metric: String,
    /// Which way is better.
    pub better: Better,
    /// Allowed move in the bad direction, in the metric's unit.
    #[serde(default)]
    pub abs: f64,
    /// Allowed move in the bad direction, as a fraction of the baseline (0.05 = 5%).
    #[serde(default)]
    pub rel: f64,
    /// What an absent value means.
    #[serde(default)]
    pub missing: Missing,
}

impl Rule {
    /// The largest move in the bad direction that still passes, for a baseline value `base`.
    pub fn tolerance(&self, base: f64) -> f64 {
        self.abs + self.rel * base.abs()
    }
}

/// A gate configuration.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The rules, in order.
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

/// The configuration our own CI uses, also the default when `--config` is not given.
pub const DEFAULT: &str = include_str!("../gate.toml");

impl Config {
    /// Parse `text`, read from `file` (named in errors with the line and the field).
    pub fn parse(text: &str, file: &Path) -> Result<Self, GateError> {
        let cfg: Config = toml::from_str(text).map_err(|e| GateError::Config {
            file: file.to_path_buf(),
            line: e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
            message: e.message().to_string(),
        })?;
        for (i, r) in cfg.rules.iter().enumerate() {
            let bad = |what: &str| GateError::Config {
                file: file.to_path_buf(),
                line: None,
                message: format!("rule {} (`{}`): {what}", i + 1, r.metric),
            };
            if r.metric.is_empty() {
                return Err(bad(
                    "`metric` is empty; expected a name or a pattern with `*`",
                ));
            }
            if !(r.abs >= 0.0 && r.abs.is_finite() && r.rel >= 0.0 && r.rel.is_finite()) {
                return Err(bad("`abs` and `rel` must be finite and not negative"));
            }
        }
        Ok(cfg)
    }

    /// Read and parse `file`.
    pub fn load(file: &Path) -> Result<Self, GateError> {
        let text = std::fs::read_to_string(file).map_err(|e| GateError::Io {
            path: file.to_path_buf(),
            error: e.to_string(),
        })?;
        Self::parse(&text, file)
    }

    /// The first rule matching `metric`, with its index.
    pub fn rule_for(&self, metric: &str) -> Option<(usize, &Rule)> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, r)| matches(&r.metric, metric))
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters (also none).
pub fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*`: exact
    };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn patterns_match_as_globs() {
        assert!(matches("mesh.latency.p99_ms", "mesh.latency.p99_ms"));
        assert!(!matches("mesh.latency.p99_ms", "mesh.latency.p99_msx"));
        assert!(matches("*.latency.*", "mesh.latency.p99_ms"));
        assert!(matches("*.failed.*", "baseline.failed.upstream_timeout"));
        assert!(!matches("*.failed.*", "mesh.failed"));
        assert!(matches("mesh.edges.*.retries", "mesh.edges.a->b.retries"));
        assert!(!matches(
            "mesh.edges.*.retries",
            "mesh.edges.a->b.retry_amplification"
        ));
        assert!(matches("*", ""));
        assert!(!matches("a*a", "a"));
    }

    proptest! {
        /// A name always matches itself, and a pattern made by replacing any slice of it with `*`.
        #[test]
        fn a_name_matches_itself_and_any_starred_slice(name in "[a-z._>-]{0,20}", i in 0usize..21, j in 0usize..21) {
            prop_assert!(matches(&name, &name));
            let (i, j) = (i.min(name.len()), j.min(name.len()));
            let (i, j) = (i.min(j), i.max(j));
            let pattern = format!("{}*{}", &name[..i], &name[j..]);
            prop_assert!(matches(&pattern, &name), "{pattern} vs {name}");
        }
    }

    #[test]
    fn the_shipped_config_parses_and_gates_the_headline_metrics() {
        let c = Config::parse(DEFAULT, Path::new("ci/gate.toml")).unwrap();
        for (name, better) in [
            ("mesh.latency.p99_ms", Better::Lower),
            ("mesh.success_ratio", Better::Higher),
            ("overhead.p99_ms", Better::Lower),
            ("mesh.failed.upstream_timeout", Better::Lower),
            ("mesh.edges.a->b.retry_amplification", Better::Lower),
            ("bench.http1.sidecar.p99_ratio@2000", Better::Lower),
        ] {
            assert_eq!(
                c.rule_for(name).map(|(_, r)| r.better),
                Some(better),
                "{name}"
            );
        }
    }

    #[test]
    fn a_malformed_config_names_its_file_line_and_field() {
        let text = "[[rule]]\nmetric = \"mesh.*\"\nbetter = \"sideways\"\n";
        let e = Config::parse(text, Path::new("g.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("g.toml") && e.contains("line 3") && e.contains("sideways"),
            "{e}"
        );
        let e = Config::parse(
            "[[rule]]\nmetric = \"x\"\nbetter = \"lower\"\nrel = -1\n",
            Path::new("g.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("rule 1") && e.contains("negative"), "{e}");
        let e = Config::parse("[[rule]]\nmetrc = \"x\"\n", Path::new("g.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("metrc"), "{e}");
    }
}
