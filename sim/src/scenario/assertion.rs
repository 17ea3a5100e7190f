//! Assertions on report metrics, written as one line each: `p99_ms <= 250`,
//! `success_ratio >= 0.999`, `failed{reason="upstream_timeout"} == 0`, `p99_ms{route="GET /api"} < 80`.
//!
//! This module only parses; [`crate::check`] evaluates against a finished run. Metric names are
//! checked here so a typo is reported with its file and line, not discovered after a long run.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Every metric an assertion may name, with what it means (shown in errors and docs).
pub const METRICS: &[(&str, &str)] = &[
    ("p50_ms", "median latency of the meshed run, ms"),
    ("p90_ms", "90th percentile latency, ms"),
    ("p99_ms", "99th percentile latency, ms"),
    ("p999_ms", "99.9th percentile latency, ms"),
    ("max_ms", "largest latency, ms"),
    ("mean_ms", "mean latency, ms"),
    ("baseline_p50_ms", "median latency without the mesh, ms"),
    (
        "baseline_p99_ms",
        "99th percentile latency without the mesh, ms",
    ),
    ("overhead_p50_ms", "meshed minus unmeshed median, ms"),
    (
        "overhead_p99_ms",
        "meshed minus unmeshed 99th percentile, ms",
    ),
    (
        "overhead_p999_ms",
        "meshed minus unmeshed 99.9th percentile, ms",
    ),
    (
        "success_ratio",
        "ok / completed requests (or {after=\"12s\"}: of those completed from then on)",
    ),
    (
        "wasted_ms",
        "app worker time spent on requests whose caller had gone, ms (all services, or {service=...})",
    ),
    ("error_ratio", "failed / completed requests"),
    ("sent", "requests sent after warm-up"),
    ("ok", "requests that succeeded"),
    (
        "failed",
        "requests that failed (any reason, or {reason=\"...\"})",
    ),
    ("in_flight", "requests still unanswered when the run ended"),
    (
        "throughput_rps",
        "successful requests per second of measured time",
    ),
    (
        "retry_amplification",
        "attempts per request on a mesh edge; {edge=\"api->db\"}, or the largest",
    ),
    (
        "load_factor",
        "attempts reaching a service per request the workload sent; {service=\"db\"}",
    ),
    ("retries", "retries sent (all edges, or {edge=...})"),
    (
        "retry_storms",
        "retry-storm windows (all edges, or {edge=...})",
    ),
    (
        "ejections",
        "outlier ejections at all sidecars ({service=\"db\"} for one destination)",
    ),
    (
        "budget_exhausted",
        "retries denied by a budget (all edges, or {edge=...})",
    ),
    (
        "denied",
        "requests an authorization policy refused: attempts on a mesh edge ({edge=\"web->db\"}), at one service's sidecars ({service=\"db\"}), or all",
    ),
    (
        "connections_denied",
        "connections a connection-time (L4) policy refused: at one service's sidecars ({service=\"db\"}), or all",
    ),
    (
        "circuit_open",
        "attempts fast-failed by a circuit breaker (all edges, or {edge=...})",
    ),
    (
        "retry_overflow",
        "retries a circuit breaker held back (all edges, or {edge=...})",
    ),
    (
        "circuit_trips",
        "breaker refusals plus outlier ejections (all, or {service=\"db\"})",
    ),
    (
        "subset_share",
        "a subset's share of its service's attempts; {subset=\"reviews/v2\"}",
    ),
    (
        "subset_error_ratio",
        "failed / attempts for a subset; {subset=\"reviews/v2\"}",
    ),
    (
        "config_max_ms",
        "with a [control_plane]: the longest a change took to reach a proxy, ms (all changes, or {change=\"db-1 crashed\"})",
    ),
    (
        "config_t90_ms",
        "with a [control_plane]: time until 90% of proxies had a change, ms (the largest, or {change=...}); a change that never reached 90% is infinite",
    ),
    (
        "config_unreached",
        "with a [control_plane]: proxies a change never reached, summed (or {change=...})",
    ),
    (
        "config_nacks",
        "with a [control_plane]: pushes refused by a proxy (a NACK each)",
    ),
    (
        "config_pushes",
        "with a [control_plane]: pushes sent (one type to one proxy each)",
    ),
    (
        "tls_failures",
        "with [mtls]: failed handshakes counted by the sidecars (all, or {reason=\"expired\"}: that reason in either direction)",
    ),
    (
        "cert_rotations",
        "with [mtls]: certificates rotated into sidecars",
    ),
    (
        "cert_failures",
        "with [mtls]: signing requests that failed (CA unreachable or refusing)",
    ),
];

/// Metrics measured on mesh edges (or the control plane) rather than on requests.
pub const EDGE_METRICS: &[&str] = &[
    "config_max_ms",
    "config_t90_ms",
    "config_unreached",
    "config_nacks",
    "config_pushes",
    "tls_failures",
    "cert_rotations",
    "cert_failures",
    "retry_amplification",
    "denied",
    "connections_denied",
    "load_factor",
    "retries",
    "budget_exhausted",
    "circuit_open",
    "retry_overflow",
    "circuit_trips",
    "ejections",
    "retry_storms",
    "subset_share",
    "subset_error_ratio",
];

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
}

impl Op {
    /// Whether `actual op expected` holds.
    pub fn holds(self, actual: f64, expected: f64) -> bool {
        match self {
            Op::Lt => actual < expected,
            Op::Le => actual <= expected,
            Op::Gt => actual > expected,
            Op::Ge => actual >= expected,
            Op::Eq => (actual - expected).abs() <= f64::EPSILON * expected.abs().max(1.0),
        }
    }
}

/// One parsed assertion.
#[derive(Clone, Debug, PartialEq)]
pub struct Assertion {
    /// The metric name, one of [`METRICS`].
    pub metric: String,
    /// An optional `{label="value"}` selector (`route` or `reason`).
    pub label: Option<(String, String)>,
    /// The comparison.
    pub op: Op,
    /// The bound.
    pub value: f64,
    /// The text as written, for reports.
    pub text: String,
}

/// Why an assertion did not parse.
#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    /// Not of the form `metric op number`.
    #[error(
        "expected `<metric>[{{label=\"value\"}}] <op> <number>` with op one of <, <=, >, >=, ==; found {0:?}"
    )]
    Syntax(String),
    /// The metric is not one we know.
    #[error("unknown metric `{0}`; expected one of: {1}")]
    UnknownMetric(String, String),
    /// A label the metric does not take.
    #[error(
        "metric `{0}` takes no label `{1}`; `route` works on latency and ratio metrics, `reason` on `failed`"
    )]
    BadLabel(String, String),
}

impl FromStr for Assertion {
    type Err = AssertionError;
    fn from_str(s: &str) -> Result<Self, AssertionError> {
        let syntax = || AssertionError::Syntax(s.to_string());
        let text = s.trim();
        let (lhs, op, rhs) = ["<=", ">=", "==", "<", ">"]
            .iter()
            .find_map(|op| {
                // The label value may itself contain operators (a path like "/a<b" is unlikely,
                // but a quoted value is skipped over before looking for the operator).
                let start = text.rfind('}').map(|i| i + 1).unwrap_or(0);
                text[start..]
                    .find(op)
                    .map(|i| (&text[..start + i], *op, &text[start + i + op.len()..]))
            })
            .ok_or_else(syntax)?;
        let op = match op {
            "<=" => Op::Le,
            ">=" => Op::Ge,
            "==" => Op::Eq,
            "<" => Op::Lt,
            _ => Op::Gt,
        };
        let value: f64 = rhs.trim().parse().map_err(|_| syntax())?;
        let lhs = lhs.trim();
        let (metric, label) = match lhs.split_once('{') {
            None => (lhs.to_string(), None),
            Some((m, rest)) => {
                let inner = rest.strip_suffix('}').ok_or_else(syntax)?;
                let (k, v) = inner.split_once('=').ok_or_else(syntax)?;
                let v = v
                    .trim()
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .ok_or_else(syntax)?;
                (
                    m.trim().to_string(),
                    Some((k.trim().to_string(), v.to_string())),
                )
            }
        };
        if !METRICS.iter().any(|(m, _)| *m == metric) {
            let known: Vec<&str> = METRICS.iter().map(|(m, _)| *m).collect();
            return Err(AssertionError::UnknownMetric(metric, known.join(", ")));
        }
        if let Some((k, _)) = &label {
            let ok = match k.as_str() {
                "reason" => metric == "failed" || metric == "tls_failures",
                "edge" => matches!(
                    metric.as_str(),
                    "retry_amplification"
                        | "retries"
                        | "budget_exhausted"
                        | "circuit_open"
                        | "retry_overflow"
                        | "retry_storms"
                        | "denied"
                ),
                "service" => matches!(
                    metric.as_str(),
                    "load_factor"
                        | "ejections"
                        | "circuit_trips"
                        | "wasted_ms"
                        | "denied"
                        | "connections_denied"
                ),
                "after" => {
                    matches!(metric.as_str(), "success_ratio" | "error_ratio")
                        && label
                            .as_ref()
                            .is_some_and(|(_, v)| v.parse::<super::Dur>().is_ok())
                }
                "subset" => metric.starts_with("subset_"),
                "change" => matches!(
                    metric.as_str(),
                    "config_max_ms" | "config_t90_ms" | "config_unreached"
                ),
                "route" => {
                    !metric.starts_with("baseline_")
                        && !metric.starts_with("overhead_")
                        && !EDGE_METRICS.contains(&metric.as_str())
                }
                _ => false,
            };
            if !ok {
                return Err(AssertionError::BadLabel(metric, k.clone()));
            }
        }
        Ok(Assertion {
            metric,
            label,
            op,
            value,
            text: text.to_string(),
        })
    }
}

impl fmt::Display for Assertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Assertion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Assertion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_labelled() {
        let a: Assertion = "p99_ms <= 250".parse().unwrap();
        assert_eq!(
            (a.metric.as_str(), a.op, a.value),
            ("p99_ms", Op::Le, 250.0)
        );
        let a: Assertion = r#"failed{reason="upstream_timeout"} == 0"#.parse().unwrap();
        assert_eq!(a.label, Some(("reason".into(), "upstream_timeout".into())));
        let a: Assertion = r#"p99_ms{route="GET /a"} < 8"#.parse().unwrap();
        assert_eq!(a.label.unwrap().1, "GET /a");
    }

    #[test]
    fn rejects_unknown_metrics_and_bad_syntax() {
        assert!(matches!(
            "p98_ms <= 1".parse::<Assertion>(),
            Err(AssertionError::UnknownMetric(..))
        ));
        assert!(matches!(
            "p99_ms about 3".parse::<Assertion>(),
            Err(AssertionError::Syntax(..))
        ));
        assert!(matches!(
            r#"p99_ms{reason="x"} < 3"#.parse::<Assertion>(),
            Err(AssertionError::BadLabel(..))
        ));
    }
}
