//! A report's numbers under stable dotted names (`mesh.latency.p99_ms`,
//! `mesh.edges.frontend->api.retry_amplification`, `bench.http1.sidecar.p50_ratio@2000`), one flat
//! map per run. The gate (`ci`) compares these maps and a sweep records one per seed, so both
//! speak of a metric by the same name, and a gate rule written against a name keeps meaning the
//! same number.
//!
//! This module only names and extracts; it judges nothing (which way is better is the gate's
//! configuration). Names are part of the report's contract: renaming one is a schema change.
//!
//! Real-socket benches contribute only ratios against the direct (no proxy) path measured in the
//! same run, never absolute times: a bench machine's speed changes from run to run, the ratio much
//! less.

use std::collections::BTreeMap;

use crate::bench::BenchReport;
use crate::model::{Report, RunStats, Verdict};

/// Metric name → value.
pub type Metrics = BTreeMap<String, f64>;

/// One name of each shape this module writes, with `x` for what varies (a run label, a failure
/// reason, an edge, a service, a protocol, a config, a rate). A gate rule that matches none of
/// these, and no metric of the runs it compares, names a metric that does not exist.
pub const SHAPES: &[&str] = &[
    "mesh.success_ratio",
    "mesh.sent",
    "mesh.failed",
    "mesh.failed.x",
    "mesh.in_flight",
    "mesh.latency.p50_ms",
    "mesh.latency.p90_ms",
    "mesh.latency.p99_ms",
    "mesh.latency.p999_ms",
    "mesh.latency.max_ms",
    "mesh.latency.mean_ms",
    "mesh.edges.x.retry_amplification",
    "mesh.edges.x.retries",
    "mesh.edges.x.budget_exhausted",
    "mesh.edges.x.circuit_open",
    "mesh.edges.x.timeouts",
    "mesh.edges.x.failures",
    "mesh.services.x.throughput_rps",
    "mesh.services.x.mean_wait_ms",
    "mesh.services.x.refused",
    "mesh.services.x.wasted_ms",
    "mesh.storms",
    "mesh.ejections",
    "mesh.breaker_events",
    "mesh.control_plane.t90_ms",
    "mesh.control_plane.max_ms",
    "mesh.control_plane.unreached",
    "mesh.control_plane.nacks",
    "mesh.control_plane.pushes",
    "mesh.mtls.handshake_failures",
    "mesh.mtls.renewal_failures",
    "mesh.mtls.expired_at_end",
    "overhead.p50_ms",
    "overhead.p90_ms",
    "overhead.p99_ms",
    "overhead.p999_ms",
    "assertions.failed",
    "verdict.pass",
    "bench.x.x.p50_ratio@x",
    "bench.x.x.p99_ratio@x",
    "bench.x.x.sustained_ratio",
];

/// Every gateable number of a simulation report.
pub fn of_report(r: &Report) -> Metrics {
    let mut m = Metrics::new();
    for (label, run) in [("mesh", &r.mesh), ("baseline", &r.baseline)] {
        if let Some(run) = run {
            of_run(label, run, &mut m);
        }
    }
    if let Some(o) = &r.overhead {
        for (name, us) in [
            ("p50", o.p50_us),
            ("p90", o.p90_us),
            ("p99", o.p99_us),
            ("p999", o.p999_us),
        ] {
            m.insert(format!("overhead.{name}_ms"), us as f64 / 1000.0);
        }
    }
    m.insert(
        "assertions.failed".into(),
        r.assertions.iter().filter(|a| !a.passed).count() as f64,
    );
    m.insert(
        "verdict.pass".into(),
        f64::from(u8::from(r.verdict == Verdict::Pass)),
    );
    m
}

fn of_run(label: &str, run: &RunStats, m: &mut Metrics) {
    let mut put = |name: String, v: f64| {
        m.insert(format!("{label}.{name}"), v);
    };
    let b = &run.books;
    let done = b.ok + b.failed;
    put(
        "success_ratio".into(),
        if done == 0 {
            0.0
        } else {
            b.ok as f64 / done as f64
        },
    );
    put("sent".into(), b.sent as f64);
    put("failed".into(), b.failed as f64);
    for (reason, n) in &b.failed_by_reason {
        put(format!("failed.{reason}"), *n as f64);
    }
    put("in_flight".into(), b.in_flight as f64);
    let l = &run.latency;
    for (name, us) in [
        ("p50", l.p50_us),
        ("p90", l.p90_us),
        ("p99", l.p99_us),
        ("p999", l.p999_us),
        ("max", l.max_us),
        ("mean", l.mean_us),
    ] {
        put(format!("latency.{name}_ms"), us as f64 / 1000.0);
    }
    if let Some(t) = &run.mtls {
        put(
            "mtls.handshake_failures".into(),
            t.handshake_failures.values().sum::<u64>() as f64,
        );
        put("mtls.renewal_failures".into(), t.renewal_failures as f64);
        put("mtls.expired_at_end".into(), t.expired_at_end as f64);
    }
    if let Some(cp) = &run.control_plane {
        // The slowest change's figures: a control plane that got slower at spreading any
        // change shows here. A change that never reached 90% (or anyone) adds no figure; it is
        // counted in `unreached`.
        let worst = |f: fn(&crate::model::Propagation) -> Option<f64>| {
            cp.changes.iter().filter_map(f).reduce(f64::max)
        };
        if let Some(v) = worst(|c| c.t90_ms) {
            put("control_plane.t90_ms".into(), v);
        }
        if let Some(v) = worst(|c| c.max_ms) {
            put("control_plane.max_ms".into(), v);
        }
        let unreached: u64 = cp.changes.iter().map(|c| c.proxies - c.reached).sum();
        put("control_plane.unreached".into(), unreached as f64);
        let nacks: u64 = cp.nacks.iter().map(|n| n.proxies).sum();
        put("control_plane.nacks".into(), nacks as f64);
        put("control_plane.pushes".into(), cp.pushes as f64);
    }
    for (edge, e) in &run.edges {
        for (name, v) in [
            ("retry_amplification", e.retry_amplification),
            ("retries", e.retries as f64),
            ("budget_exhausted", e.budget_exhausted as f64),
            ("circuit_open", e.circuit_open as f64),
            ("timeouts", e.timeouts as f64),
            ("failures", e.failures as f64),
        ] {
            put(format!("edges.{edge}.{name}"), v);
        }
    }
    for (svc, q) in &run.services {
        for (name, v) in [
            ("throughput_rps", q.throughput_rps),
            ("mean_wait_ms", q.mean_wait_us / 1000.0),
            ("refused", q.refused as f64),
            ("wasted_ms", q.wasted_ms),
        ] {
            put(format!("services.{svc}.{name}"), v);
        }
    }
    put("storms".into(), run.storms.len() as f64);
    put(
        "ejections".into(),
        run.health.iter().filter(|h| h.event == "ejected").count() as f64,
    );
    put("breaker_events".into(), run.breaker_events.len() as f64);
}

/// A bench's ratios against the direct path at the same protocol and rate: latency percentiles
/// (`p50_ratio@RATE`, `p99_ratio@RATE`) and the highest sustained rate (`sustained_ratio`).
pub fn of_bench(b: &BenchReport) -> Metrics {
    let mut m = Metrics::new();
    for p in &b.points {
        if p.config == "direct" {
            continue;
        }
        let Some(d) = b.points.iter().find(|d| {
            d.config == "direct" && d.protocol == p.protocol && d.load.rate_rps == p.load.rate_rps
        }) else {
            continue;
        };
        for (name, ours, direct) in [
            ("p50", p.load.p50_us, d.load.p50_us),
            ("p99", p.load.p99_us, d.load.p99_us),
        ] {
            if direct > 0 {
                m.insert(
                    format!(
                        "bench.{}.{}.{name}_ratio@{}",
                        p.protocol, p.config, p.load.rate_rps
                    ),
                    ours as f64 / direct as f64,
                );
            }
        }
    }
    for c in &b.configs {
        if c.config == "direct" {
            continue;
        }
        if let Some(d) = b
            .configs
            .iter()
            .find(|d| d.config == "direct" && d.protocol == c.protocol)
            .filter(|d| d.max_sustained_rps > 0.0)
        {
            m.insert(
                format!("bench.{}.{}.sustained_ratio", c.protocol, c.config),
                c.max_sustained_rps / d.max_sustained_rps,
            );
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{BenchPoint, ConfigSummary, LoadStats};

    pub(crate) fn point(config: &str, rate: f64, p50: u64, p99: u64) -> BenchPoint {
        BenchPoint {
            config: config.into(),
            protocol: "http1".into(),
            load: LoadStats {
                rate_rps: rate,
                p50_us: p50,
                p99_us: p99,
                ..LoadStats::default()
            },
            ..BenchPoint::default()
        }
    }

    /// A bench contributes only ratios to the direct path at the same protocol and rate.
    #[test]
    fn a_bench_flattens_to_ratios_against_direct() {
        let b = BenchReport {
            points: vec![
                point("direct", 1000.0, 100, 400),
                point("sidecar", 1000.0, 150, 1000),
                point("direct", 2000.0, 120, 500),
                point("sidecar", 2000.0, 240, 1500),
            ],
            configs: vec![
                ConfigSummary {
                    config: "direct".into(),
                    protocol: "http1".into(),
                    max_sustained_rps: 8000.0,
                    ..ConfigSummary::default()
                },
                ConfigSummary {
                    config: "sidecar".into(),
                    protocol: "http1".into(),
                    max_sustained_rps: 6000.0,
                    ..ConfigSummary::default()
                },
            ],
            ..BenchReport::default()
        };
        let m = of_bench(&b);
        assert_eq!(m["bench.http1.sidecar.p50_ratio@1000"], 1.5);
        assert_eq!(m["bench.http1.sidecar.p99_ratio@1000"], 2.5);
        assert_eq!(m["bench.http1.sidecar.p50_ratio@2000"], 2.0);
        assert_eq!(m["bench.http1.sidecar.sustained_ratio"], 0.75);
        assert_eq!(m.len(), 5, "{m:?}");
    }

    fn report() -> Report {
        let json = include_str!("../tests/data/report.json");
        serde_json::from_str(json).unwrap()
    }

    /// The names a gate config refers to are there, with the report's values in the stated units.
    #[test]
    fn a_report_flattens_to_named_values_in_their_units() {
        let r = report();
        let m = of_report(&r);
        let mesh = r.mesh.as_ref().unwrap();
        assert_eq!(
            m["mesh.latency.p99_ms"],
            mesh.latency.p99_us as f64 / 1000.0
        );
        assert_eq!(m["mesh.sent"], mesh.books.sent as f64);
        let ok = mesh.books.ok as f64 / (mesh.books.ok + mesh.books.failed) as f64;
        assert_eq!(m["mesh.success_ratio"], ok);
        for (reason, n) in &mesh.books.failed_by_reason {
            assert_eq!(m[&format!("mesh.failed.{reason}")], *n as f64);
        }
        for edge in mesh.edges.keys() {
            assert!(m.contains_key(&format!("mesh.edges.{edge}.retry_amplification")));
        }
        assert_eq!(m["verdict.pass"], 1.0);
        if let Some(o) = &r.overhead {
            assert_eq!(m["overhead.p50_ms"], o.p50_us as f64 / 1000.0);
        }
        // Every name written has its shape listed (with its varying parts as `x`), so a gate
        // rule is never refused for naming a metric that exists.
        let edges: Vec<&String> = mesh.edges.keys().collect();
        for name in m.keys() {
            let mut shape = name.replacen("baseline.", "mesh.", 1);
            for e in &edges {
                shape = shape.replace(e.as_str(), "x");
            }
            for reason in mesh.books.failed_by_reason.keys() {
                shape = shape.replace(&format!("failed.{reason}"), "failed.x");
            }
            for svc in mesh.services.keys() {
                shape = shape.replace(&format!("services.{svc}."), "services.x.");
            }
            assert!(
                SHAPES.contains(&shape.as_str()),
                "{name} has no shape in SHAPES"
            );
        }
    }
}
