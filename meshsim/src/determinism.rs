//! `meshsim run --check-determinism`: run the scenario a second time, on a fresh thread (so no
//! thread-local simulator state is shared), and say whether the two runs are identical, and if
//! not, where they first parted: the simulated second whose packet deliveries first differ (from
//! the fabric's per-second digests), and the first line of `report.json` that differs.

use std::fmt::Write;

/// Where two runs parted, if they did.
#[derive(Debug, Default, PartialEq)]
pub struct Divergence {
    /// (pass, simulated second) of the first differing delivery digest.
    pub second: Option<(&'static str, usize)>,
    /// (line number, first run's line, second run's line) of report.json.
    pub report_line: Option<(usize, String, String)>,
    /// Telemetry files that differ.
    pub telemetry: Vec<String>,
}

impl Divergence {
    /// Nothing differed.
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }
}

/// The first second at which two digest lists differ (a missing second counts as different).
pub fn first_second(a: &[u64], b: &[u64]) -> Option<usize> {
    (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i))
}

/// The first line at which two texts differ, 1-based, with both lines.
pub fn first_line(a: &str, b: &str) -> Option<(usize, String, String)> {
    let (mut la, mut lb) = (a.lines(), b.lines());
    for n in 1.. {
        match (la.next(), lb.next()) {
            (None, None) => return None,
            (x, y) if x == y => continue,
            (x, y) => {
                return Some((
                    n,
                    x.unwrap_or("(end)").to_string(),
                    y.unwrap_or("(end)").to_string(),
                ));
            }
        }
    }
    None
}

/// Compare two runs' outputs.
pub fn compare(a: &sim::RunOutput, b: &sim::RunOutput) -> Divergence {
    let mut d = Divergence::default();
    for ((pass, da), (_, db)) in a.digests.iter().zip(&b.digests) {
        if let Some(s) = first_second(da, db) {
            d.second = Some((pass, s));
            break;
        }
    }
    d.report_line = first_line(&reports::to_json(&a.report), &reports::to_json(&b.report));
    if let (Some(ta), Some(tb)) = (&a.telemetry, &b.telemetry) {
        for (host, text) in &ta.metrics {
            if tb.metrics.get(host) != Some(text) {
                d.telemetry.push(format!("metrics/{host}.prom"));
            }
        }
        if ta.spans.len() != tb.spans.len()
            || ta
                .spans
                .iter()
                .zip(&tb.spans)
                .any(|(x, y)| format!("{x:?}") != format!("{y:?}"))
        {
            d.telemetry.push("traces".into());
        }
        if ta.access_log != tb.access_log {
            d.telemetry.push("access log".into());
        }
    }
    d
}

/// What to print.
pub fn describe(d: &Divergence, seconds: usize) -> String {
    if d.is_none() {
        return format!(
            "determinism check: the second run is identical (report, telemetry and every packet delivery over {seconds} simulated seconds)"
        );
    }
    let mut s = String::from("determinism check FAILED: the second run differs\n");
    if let Some((pass, sec)) = d.second {
        let _ = writeln!(
            s,
            "  packet deliveries of the {pass} pass first differ in simulated second {sec}"
        );
    }
    if let Some((n, x, y)) = &d.report_line {
        let _ = writeln!(
            s,
            "  report.json first differs at line {n}:\n    first:  {}\n    second: {}",
            x.trim(),
            y.trim()
        );
    }
    if !d.telemetry.is_empty() {
        let _ = writeln!(s, "  telemetry differs: {}", d.telemetry.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_difference_is_found() {
        assert_eq!(first_second(&[1, 2, 3], &[1, 2, 3]), None);
        assert_eq!(first_second(&[1, 2, 3], &[1, 9, 3]), Some(1));
        assert_eq!(first_second(&[1, 2], &[1, 2, 3]), Some(2));
        assert_eq!(first_line("a\nb\nc\n", "a\nb\nc\n"), None);
        assert_eq!(
            first_line("a\nb\nc\n", "a\nB\nc\n"),
            Some((2, "b".into(), "B".into()))
        );
        assert_eq!(
            first_line("a\n", "a\nb\n"),
            Some((2, "(end)".into(), "b".into()))
        );
        let d = Divergence {
            second: Some(("mesh", 7)),
            report_line: Some((12, "  \"p99_us\": 5".into(), "  \"p99_us\": 6".into())),
            telemetry: vec!["traces".into()],
        };
        let text = describe(&d, 10);
        assert!(
            text.contains("second 7") && text.contains("line 12") && text.contains("traces"),
            "{text}"
        );
    }
}
