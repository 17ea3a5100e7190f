//! Every assertion metric a scenario may name reads the report figure its description names.
//!
//! One run exercises all of them (retries with a budget, a breaker, outlier detection, a split,
//! a failing pod, a baseline); each metric is evaluated through the scenario's own assertion
//! parser and compared with the figure read straight from the report. A metric added to
//! `METRICS` without a case here fails the coverage check; a metric wired to the wrong field
//! fails its case, because the figures compared are checked to be distinct where a swap could
//! hide (the latency percentiles, the edge counters).

mod common;

use reports::{EdgeStats, Report};
use sim::scenario::assertion::METRICS;

const SRC: &str = r#"
name = "every-metric"
[mesh]
baseline = true
[[services]]
name = "api"
replicas = 2
latency = { dist = "exponential", mean = "3ms" }
calls = [{ service = "db" }]
[services.policy]
retry = { max_retries = 2, retry_on = ["5xx"], budget = { ratio = 0.1, min_per_sec = 1 } }
[[services]]
name = "db"
replicas = 4
latency = { dist = "exponential", mean = "4ms" }
subsets = [{ name = "v2", replicas = 1 }]
[services.policy]
split = [{ subset = "v1", weight = 3 }, { subset = "v2", weight = 1 }]
retry = { max_retries = 3, retry_on = ["5xx"] }
circuit_breaker = { max_requests = 3 }
timeout = "30ms"
outlier = { consecutive_failures = 3, base_ejection = "500ms", max_ejection_percent = 50 }
[workload]
target = "api"
rate_rps = 300
duration = "6s"
warmup = "1s"
[[faults]]
kind = "errors"
service = "db"
pod = "db-1"
rate = 1.0
at = "2s"
until = "4s"
[[faults]]
kind = "slow"
service = "db"
pod = "db-2"
extra = "40ms"
at = "1s"
until = "5s"
"#;

fn report() -> Report {
    let loaded = common::loaded("every-metric.toml", SRC);
    let opts = sim::RunOptions::new(41, "every-metric.toml");
    sim::run(&loaded, &opts, &mut |_, _, _| {}).report
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[test]
fn every_assertion_metric_reads_the_figure_it_names() {
    let r = report();
    let m = r.mesh.as_ref().expect("meshed run");
    let b = r.baseline.as_ref().expect("baseline run");
    let o = r.overhead.as_ref().expect("overhead");
    let measured_s = 5.0;
    let done = (m.books.ok + m.books.failed) as f64;
    let edge = |name: &str| -> &EdgeStats { &m.edges[name] };
    let sum = |f: fn(&EdgeStats) -> u64| m.edges.values().map(f).sum::<u64>() as f64;
    let route = "GET /";
    let reason = m
        .books
        .failed_by_reason
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(r, _)| r.clone())
        .expect("some request failed");
    // Health events name the balancer's pool, `db@v1` when the service is split.
    let of_db = |s: &str| s == "db" || s.starts_with("db@");
    let db_ejections = m
        .health
        .iter()
        .filter(|h| h.event == "ejected" && of_db(&h.service))
        .count();
    let db_trips = m
        .breaker_events
        .iter()
        .filter(|e| of_db(&e.service))
        .count()
        + db_ejections;
    let (late_ok, late_done) = m
        .timeline
        .iter()
        .filter(|b| b.t_s >= 4)
        .fold((0.0, 0.0), |(o, d), b| {
            (o + b.ok as f64, d + (b.ok + b.failed) as f64)
        });
    assert!(
        late_ok / late_done != m.books.ok as f64 / done,
        "the late window differs from the whole run"
    );
    // db's slow pod outlasts the 30 ms timeout; db finishes what it was abandoned with.
    assert!(m.services["db"].wasted_ms > 0.0, "{:?}", m.services["db"]);
    assert!(m.services["api"].wasted_ms < m.services["db"].wasted_ms);
    // (assertion's left-hand side, the figure it must read)
    let cases: Vec<(String, f64)> = vec![
        ("p50_ms".into(), ms(m.latency.p50_us)),
        ("p90_ms".into(), ms(m.latency.p90_us)),
        ("p99_ms".into(), ms(m.latency.p99_us)),
        ("p999_ms".into(), ms(m.latency.p999_us)),
        ("max_ms".into(), ms(m.latency.max_us)),
        ("mean_ms".into(), ms(m.latency.mean_us)),
        (
            format!("p99_ms{{route=\"{route}\"}}"),
            ms(m.routes[route].latency.p99_us),
        ),
        ("baseline_p50_ms".into(), ms(b.latency.p50_us)),
        ("baseline_p99_ms".into(), ms(b.latency.p99_us)),
        ("overhead_p50_ms".into(), o.p50_us as f64 / 1000.0),
        ("overhead_p99_ms".into(), o.p99_us as f64 / 1000.0),
        ("overhead_p999_ms".into(), o.p999_us as f64 / 1000.0),
        ("success_ratio".into(), m.books.ok as f64 / done),
        ("success_ratio{after=\"4s\"}".into(), late_ok / late_done),
        (
            "wasted_ms".into(),
            m.services.values().map(|q| q.wasted_ms).sum(),
        ),
        (
            "wasted_ms{service=\"db\"}".into(),
            m.services["db"].wasted_ms,
        ),
        ("error_ratio".into(), m.books.failed as f64 / done),
        ("sent".into(), m.books.sent as f64),
        ("ok".into(), m.books.ok as f64),
        ("failed".into(), m.books.failed as f64),
        (
            format!("failed{{reason=\"{reason}\"}}"),
            m.books.failed_by_reason[&reason] as f64,
        ),
        ("in_flight".into(), m.books.in_flight as f64),
        ("throughput_rps".into(), m.books.ok as f64 / measured_s),
        (
            "retry_amplification".into(),
            m.edges
                .values()
                .map(|e| e.retry_amplification)
                .fold(0.0, f64::max),
        ),
        (
            "retry_amplification{edge=\"api->db\"}".into(),
            edge("api->db").retry_amplification,
        ),
        ("load_factor{service=\"db\"}".into(), m.load_factor["db"]),
        ("retries".into(), sum(|e| e.retries)),
        (
            "retries{edge=\"clients->api\"}".into(),
            edge("clients->api").retries as f64,
        ),
        ("retry_storms".into(), m.storms.len() as f64),
        ("ejections{service=\"db\"}".into(), db_ejections as f64),
        ("budget_exhausted".into(), sum(|e| e.budget_exhausted)),
        ("circuit_open".into(), sum(|e| e.circuit_open)),
        ("retry_overflow".into(), sum(|e| e.retry_overflow)),
        // This run has no policies (0 here); scenarios/authz.toml asserts non-zero figures,
        // which scenarios/tests/readme_figures.rs checks against the report's rows.
        (
            "denied".into(),
            m.authz_denied.iter().map(|d| d.denied).sum::<u64>() as f64,
        ),
        // Likewise; scenarios/network-policy.toml asserts non-zero figures.
        (
            "connections_denied".into(),
            m.connections_denied.iter().map(|d| d.denied).sum::<u64>() as f64,
        ),
        ("circuit_trips{service=\"db\"}".into(), db_trips as f64),
        (
            "subset_share{subset=\"db/v2\"}".into(),
            m.subsets["db/v2"].share,
        ),
        (
            "subset_error_ratio{subset=\"db/v1\"}".into(),
            m.subsets["db/v1"].error_ratio,
        ),
    ];
    // The control plane's metrics, from a run that has one.
    let (cp_report, cp_cases) = control_plane_cases();
    for (name, _) in METRICS {
        assert!(
            cases
                .iter()
                .chain(&cp_cases)
                .any(|(lhs, _)| lhs == name || lhs.starts_with(&format!("{name}{{"))),
            "metric {name} has no case here"
        );
    }
    for (report, cases) in [(&r, &cases), (&cp_report, &cp_cases)] {
        for (lhs, want) in cases {
            let a: sim::scenario::Assertion = format!("{lhs} >= 0").parse().unwrap();
            let got = sim::check::metric(&a, report, measured_s);
            assert_eq!(got, Some(*want), "{lhs}");
        }
    }
    // The run must make the figures tell their fields apart: distinct percentiles, and every
    // policy counter above zero, so a metric wired to a neighbouring field cannot agree by luck.
    let lat = [
        m.latency.p50_us,
        m.latency.p90_us,
        m.latency.p99_us,
        m.latency.p999_us,
        m.latency.max_us,
        m.latency.mean_us,
    ];
    for (i, x) in lat.iter().enumerate() {
        assert!(!lat[i + 1..].contains(x), "latency figures repeat: {lat:?}");
    }
    for (what, v) in [
        ("retries", sum(|e| e.retries)),
        ("budget_exhausted", sum(|e| e.budget_exhausted)),
        ("circuit_open", sum(|e| e.circuit_open)),
        ("ejections", db_ejections as f64),
    ] {
        assert!(
            v > 0.0,
            "{what} is zero in this run: the case proves nothing"
        );
    }
    assert_ne!(sum(|e| e.budget_exhausted), sum(|e| e.circuit_open));
}

const CP_SRC: &str = r#"
name = "control-plane-metrics"
[mesh]
baseline = false
[control_plane]
[mtls]
lifetime = "2s"
[[services]]
name = "api"
replicas = 3
latency = { dist = "constant", value = "1ms" }
[workload]
target = "api"
rate_rps = 50
duration = "4s"
warmup = "1s"
[[faults]]
kind = "crash"
pod = "api-2"
at = "1s"
[[faults]]
kind = "config"
service = "api"
at = "2s"
expect = "nack"
policy = { split = [{ subset = "v1", weight = 0 }] }
"#;

/// A run with a control plane, a crash it must spread and a push the proxies refuse, and the
/// report figure each control-plane metric must read.
fn control_plane_cases() -> (Report, Vec<(String, f64)>) {
    let loaded = common::loaded("control-plane-metrics.toml", CP_SRC);
    let opts = sim::RunOptions::new(5, "control-plane-metrics.toml");
    let r = sim::run(&loaded, &opts, &mut |_, _, _| {}).report;
    let cp = r.mesh.as_ref().unwrap().control_plane.clone().unwrap();
    let crash = &cp.changes[0];
    let push = &cp.changes[1];
    assert_eq!(
        (crash.what.as_str(), push.what.as_str()),
        ("api-2 crashed", "policy for api")
    );
    // The crash reached everyone; the refused policy no one: the figures differ.
    assert_eq!(crash.reached, crash.proxies);
    assert_eq!((push.reached, push.refused), (0, push.proxies));
    let nacks: u64 = cp.nacks.iter().map(|n| n.proxies).sum();
    assert!(nacks > 0 && cp.pushes > nacks);
    // Certificates of 2 s renew about every second: distinct from the other figures.
    let tls = r.mesh.as_ref().unwrap().mtls.clone().unwrap();
    assert!(tls.rotations > nacks, "{tls:?}");
    let cases = vec![
        ("config_max_ms".into(), f64::INFINITY),
        (
            "config_max_ms{change=\"api-2 crashed\"}".into(),
            crash.max_ms.unwrap(),
        ),
        (
            "config_t90_ms{change=\"api-2 crashed\"}".into(),
            crash.t90_ms.unwrap(),
        ),
        ("config_t90_ms".into(), f64::INFINITY),
        ("config_unreached".into(), push.proxies as f64),
        ("config_unreached{change=\"api-2 crashed\"}".into(), 0.0),
        ("config_nacks".into(), nacks as f64),
        ("config_pushes".into(), cp.pushes as f64),
        (
            "tls_failures".into(),
            tls.handshake_failures.values().sum::<u64>() as f64,
        ),
        (
            "tls_failures{reason=\"expired\"}".into(),
            tls.handshake_failures
                .iter()
                .filter(|(k, _)| k.ends_with(".expired"))
                .map(|(_, n)| *n)
                .sum::<u64>() as f64,
        ),
        ("cert_rotations".into(), tls.rotations as f64),
        ("cert_failures".into(), tls.renewal_failures as f64),
    ];
    (r, cases)
}
