//! What the simulated sidecars record about themselves: the same seed gives byte-identical
//! metrics, traces and access logs (another seed different ones); the traces kept (the slowest,
//! as many as the export shows) are whole: every span's parent is in its trace, so each is one
//! tree from the client's sidecar down; and the per-pod metrics
//! agree with the report's edge counts and with the access log.

use std::collections::BTreeMap;

use sim::scenario::load;
use sim::telemetry::{EXPORTED_TRACES, Telemetry, otlp_json};

fn run(seed: u64) -> (reports::Report, Telemetry) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/three-tier.toml");
    let loaded = load(&path).unwrap();
    let opts = sim::RunOptions {
        access_log: true,
        ..sim::RunOptions::new(seed, "scenarios/three-tier.toml")
    };
    let out = sim::run(&loaded, &opts, &mut |_, _, _| {});
    (
        out.report,
        out.telemetry.expect("a meshed run has telemetry"),
    )
}

/// Sum of a metric's samples whose labels include all of `labels`, over every pod.
fn total(metrics: &BTreeMap<String, String>, pods: &str, name: &str, labels: &[&str]) -> u64 {
    metrics
        .iter()
        .filter(|(host, _)| host.starts_with(pods))
        .flat_map(|(_, text)| text.lines())
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn telemetry_is_reproducible_consistent_and_traces_are_trees() {
    let (report, a) = run(7);
    let (_, b) = run(7);
    let (_, c) = run(8);
    assert_eq!(a.metrics, b.metrics, "same seed, same metrics");
    assert_eq!(a.access_log, b.access_log, "same seed, same access log");
    let (ta, tb, tc) = (
        otlp_json(&a.spans, EXPORTED_TRACES),
        otlp_json(&b.spans, EXPORTED_TRACES),
        otlp_json(&c.spans, EXPORTED_TRACES),
    );
    assert_eq!(ta, tb, "same seed, same traces");
    assert_ne!(ta, tc, "another seed, other traces");

    // Every span's parent is a span of the same trace, recorded by another sidecar, except the
    // roots, which the client sidecars start.
    let mut ids: BTreeMap<(u128, u64), &sim::telemetry::HostSpan> = BTreeMap::new();
    for s in &a.spans {
        assert!(
            ids.insert((s.span.trace_id, s.span.span_id), s).is_none(),
            "span ids are unique"
        );
    }
    let mut roots = 0;
    for s in &a.spans {
        if s.span.parent_id == 0 {
            roots += 1;
            assert!(
                s.host.starts_with("client-"),
                "a root away from the clients: {s:?}"
            );
            continue;
        }
        let parent = ids
            .get(&(s.span.trace_id, s.span.parent_id))
            .unwrap_or_else(|| panic!("orphan span {s:?}"));
        assert!(parent.span.start_us <= s.span.start_us);
    }
    let mesh = report.mesh.as_ref().unwrap();
    let client_requests = mesh.edges["clients->frontend"].requests;
    // A run keeps the spans of the traces its report can show (the slowest
    // EXPORTED_TRACES), whole: one root each, every other span's parent present.
    assert!(
        client_requests > EXPORTED_TRACES as u64,
        "{client_requests}"
    );
    assert_eq!(
        roots, EXPORTED_TRACES as u64,
        "the {EXPORTED_TRACES} slowest traces of {client_requests} requests are kept"
    );

    // Metrics agree with the report: each client sidecar answered every request it took.
    let m = &a.metrics;
    assert_eq!(
        total(
            m,
            "client-",
            "meshsim_requests_total",
            &["direction=\"outbound\""]
        ),
        client_requests
    );
    for (edge, e) in &mesh.edges {
        let (caller, callee) = edge.split_once("->").unwrap();
        let pods = if caller == "clients" {
            "client-"
        } else {
            caller
        };
        assert_eq!(
            total(
                m,
                pods,
                "meshsim_requests_total",
                &["direction=\"outbound\"", &format!("service=\"{callee}\"")]
            ),
            e.requests,
            "{edge}"
        );
    }
    // One access-log line per request per sidecar.
    let answered = total(m, "", "meshsim_requests_total", &[]);
    assert_eq!(a.access_log.len() as u64, answered);
    assert_eq!(mesh.slowest_traces.len(), sim::telemetry::REPORTED_TRACES);
    assert!(
        mesh.slowest_traces
            .windows(2)
            .all(|w| w[0].duration_us >= w[1].duration_us),
        "slowest first"
    );
}
