//! The golden signals of one proxy and their Prometheus text exposition (format 0.0.4).
//!
//! - traffic: `meshsim_requests_total{direction, service, status_class}`
//! - latency: `meshsim_request_duration_seconds{direction, service}` (histogram)
//! - errors: `meshsim_request_errors_total{direction, service, reason}`: the proxy's own failure
//!   reasons (`connect_failed`, `circuit_open`, …) or `upstream_5xx`
//! - saturation: `meshsim_requests_in_flight{direction}`, and per destination
//!   `meshsim_upstream_requests_active`, `…_retries_active`, `…_pending` (the breaker's view)
//!
//! plus every counter the proxy keeps ([`crate::proxy::ProxyStats`]) as `meshsim_<name>_total`
//! with the service, route or subset as labels. Names follow Prometheus conventions: snake case,
//! base units (seconds), `_total` on counters.
//!
//! The text is written here, not by the `prometheus-client` crate: its metric families are
//! hash maps, and a simulated pod's dump must come out in the same order on every run.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use crate::breaker::InFlight;
use crate::hop::Direction;
use crate::proxy::Counters;

/// Upper bounds of the latency buckets, seconds (Prometheus client defaults, extended below
/// 5 ms because a proxy hop lives there).
pub const DURATION_BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Default)]
struct Histogram {
    /// Per bucket (not cumulative), then the overflow.
    counts: [u64; DURATION_BUCKETS_S.len() + 1],
    sum_us: u64,
}

/// One service's signals, both directions.
#[derive(Clone, Debug, Default)]
struct PerService {
    /// `[direction][status class]`.
    requests: [[u64; 6]; 2],
    errors: BTreeMap<(Direction, &'static str), u64>,
    durations: [Histogram; 2],
}

#[derive(Debug, Default)]
struct Inner {
    services: BTreeMap<String, PerService>,
    in_flight: [u64; 2],
}

/// A proxy's golden signals.
#[derive(Debug, Default)]
pub struct Golden {
    inner: Mutex<Inner>,
}

impl Golden {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request entered the proxy.
    pub fn start(&self, dir: Direction) {
        self.lock().in_flight[dir.index()] += 1;
    }

    /// A request left it: `status` answered after `duration_us`, `reason` if the proxy failed
    /// it itself.
    pub fn finish(
        &self,
        dir: Direction,
        service: &str,
        status: u16,
        reason: Option<&'static str>,
        duration_us: u64,
    ) {
        let mut g = self.lock();
        let i = dir.index();
        g.in_flight[i] = g.in_flight[i].saturating_sub(1);
        // Look up before inserting: the name is allocated once per service, not per request.
        if !g.services.contains_key(service) {
            g.services
                .insert(service.to_string(), PerService::default());
        }
        let Some(svc) = g.services.get_mut(service) else {
            return;
        };
        svc.requests[i][usize::from(status / 100).min(5)] += 1;
        if let Some(r) = reason.or((status >= 500).then_some("upstream_5xx")) {
            *svc.errors.entry((dir, r)).or_insert(0) += 1;
        }
        let secs = duration_us as f64 / 1e6;
        let b = DURATION_BUCKETS_S
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(DURATION_BUCKETS_S.len());
        svc.durations[i].counts[b] += 1;
        svc.durations[i].sum_us += duration_us;
    }
}

/// A label value escaped as the text format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The proxy's counters as metric families: name → (labels, value), zeros left out. Requests,
/// responses and errors per direction are not here: the golden signals carry them per service.
fn counter_families(c: &Counters) -> BTreeMap<String, Vec<(String, u64)>> {
    let mut families: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    let mut put = |name: String, labels: &[(&str, &str)], n: u64| {
        if n == 0 {
            return;
        }
        let l = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect::<Vec<_>>()
            .join(",");
        families.entry(name).or_default().push((l, n));
    };
    for d in Direction::ALL {
        let dc = c.direction(d);
        let dir = d.name();
        put(
            format!("meshsim_{dir}_accept_errors_total"),
            &[],
            dc.accept_errors,
        );
        put(
            format!("meshsim_{dir}_downstream_errors_total"),
            &[],
            dc.downstream_errors,
        );
        put(
            format!("meshsim_{dir}_tls_handshake_errors_total"),
            &[],
            dc.tls_handshake_errors,
        );
        put(
            format!("meshsim_{dir}_headers_too_large_total"),
            &[],
            dc.headers_too_large,
        );
        for (why, n) in &dc.connections_closed {
            put(
                format!("meshsim_{dir}_connections_closed_total"),
                &[("reason", why.reason())],
                *n,
            );
        }
    }
    for (service, sc) in &c.services {
        for (what, n) in sc.named() {
            put(
                format!("meshsim_outbound_{what}_total"),
                &[("service", service)],
                n,
            );
        }
    }
    for (service, routes) in &c.routes {
        for (route, n) in routes {
            put(
                "meshsim_outbound_route_requests_total".into(),
                &[("service", service), ("route", route)],
                *n,
            );
        }
    }
    for (service, subset, sc) in c
        .subsets
        .iter()
        .flat_map(|(s, subs)| subs.iter().map(move |(sub, sc)| (s, sub, sc)))
    {
        let labels = [("service", service.as_str()), ("subset", subset.as_str())];
        put(
            "meshsim_outbound_subset_attempts_total".into(),
            &labels,
            sc.attempts,
        );
        put(
            "meshsim_outbound_subset_failures_total".into(),
            &labels,
            sc.failures,
        );
    }
    for (route, n) in &c.route_rate_limited {
        put(
            "meshsim_inbound_route_rate_limited_total".into(),
            &[("route", route)],
            *n,
        );
    }
    for ((policy, rule), n) in &c.authz_denied {
        put(
            "meshsim_inbound_authz_denied_total".into(),
            &[("policy", policy), ("rule", rule)],
            *n,
        );
    }
    for ((policy, rule), n) in &c.connections_denied {
        put(
            "meshsim_inbound_connections_denied_total".into(),
            &[("policy", policy), ("rule", rule)],
            *n,
        );
    }
    for (dir, d) in Direction::ALL.iter().zip(&c.directions) {
        for (reason, n) in &d.tls_failures {
            put(
                "meshsim_tls_handshake_failures_total".into(),
                &[("direction", dir.name()), ("reason", reason)],
                *n,
            );
        }
    }
    put("meshsim_admin_errors_total".into(), &[], c.admin_errors);
    put("meshsim_spans_dropped_total".into(), &[], c.spans_dropped);
    put(
        "meshsim_access_log_dropped_total".into(),
        &[],
        c.access_log_dropped,
    );
    families
}

/// The exposition of `golden`, the proxy's `counters` and the breakers' `in_flight` per
/// destination, in a fixed order.
pub fn exposition(
    golden: &Golden,
    counters: &Counters,
    in_flight: &BTreeMap<String, InFlight>,
) -> String {
    let g = golden.lock();
    let mut out = String::new();
    header(
        &mut out,
        "meshsim_requests_total",
        "counter",
        "Requests the proxy answered, by direction, service and status class.",
    );
    for d in Direction::ALL {
        for (s, svc) in &g.services {
            for (c, n) in svc.requests[d.index()].iter().enumerate() {
                if *n > 0 {
                    let _ = writeln!(
                        out,
                        "meshsim_requests_total{{direction=\"{}\",service=\"{}\",status_class=\"{c}xx\"}} {n}",
                        d.name(),
                        label(s)
                    );
                }
            }
        }
    }
    header(
        &mut out,
        "meshsim_request_errors_total",
        "counter",
        "Failed requests by reason: the proxy's own (connect_failed, circuit_open, ...) or upstream_5xx.",
    );
    for d in Direction::ALL {
        for (s, svc) in &g.services {
            for ((_, r), n) in svc.errors.iter().filter(|((x, _), _)| *x == d) {
                let _ = writeln!(
                    out,
                    "meshsim_request_errors_total{{direction=\"{}\",service=\"{}\",reason=\"{r}\"}} {n}",
                    d.name(),
                    label(s)
                );
            }
        }
    }
    header(
        &mut out,
        "meshsim_request_duration_seconds",
        "histogram",
        "Time from a request's arrival at the proxy to its response headers.",
    );
    let hists = Direction::ALL.iter().flat_map(|d| {
        g.services
            .iter()
            .map(move |(s, svc)| (*d, s, &svc.durations[d.index()]))
    });
    for (d, s, h) in hists.filter(|(_, _, h)| h.counts.iter().any(|n| *n > 0)) {
        let labels = format!("direction=\"{}\",service=\"{}\"", d.name(), label(s));
        let mut cumulative = 0;
        for (le, n) in DURATION_BUCKETS_S.iter().zip(h.counts) {
            cumulative += n;
            let _ = writeln!(
                out,
                "meshsim_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
            );
        }
        let total: u64 = h.counts.iter().sum();
        let _ = writeln!(
            out,
            "meshsim_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {total}"
        );
        let _ = writeln!(
            out,
            "meshsim_request_duration_seconds_sum{{{labels}}} {}",
            h.sum_us as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "meshsim_request_duration_seconds_count{{{labels}}} {total}"
        );
    }
    header(
        &mut out,
        "meshsim_requests_in_flight",
        "gauge",
        "Requests inside the proxy now.",
    );
    for d in Direction::ALL {
        let _ = writeln!(
            out,
            "meshsim_requests_in_flight{{direction=\"{}\"}} {}",
            d.name(),
            g.in_flight[d.index()]
        );
    }
    drop(g);
    for (name, help, pick) in [
        (
            "meshsim_upstream_requests_active",
            "Attempts in flight to a destination (the breaker's max_requests counts these).",
            (|f: &InFlight| f.requests) as fn(&InFlight) -> u32,
        ),
        (
            "meshsim_upstream_retries_active",
            "Retries in flight to a destination.",
            |f| f.retries,
        ),
        (
            "meshsim_upstream_pending",
            "Attempts waiting for a connection to a destination.",
            |f| f.pending,
        ),
    ] {
        header(&mut out, name, "gauge", help);
        for (s, f) in in_flight {
            let _ = writeln!(out, "{name}{{service=\"{}\"}} {}", label(s), pick(f));
        }
    }
    // The proxy's other counters, grouped by metric name so each has one HELP/TYPE.
    for (name, samples) in counter_families(counters) {
        header(
            &mut out,
            &name,
            "counter",
            "A proxy event count (see the proxy's counters).",
        );
        for (l, n) in samples {
            if l.is_empty() {
                let _ = writeln!(out, "{name} {n}");
            } else {
                let _ = writeln!(out, "{name}{{{l}}} {n}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text format's three escapes (backslash, double quote, line feed), and nothing else:
    /// a service named by a hostile Host header cannot break out of its label.
    #[test]
    fn label_values_are_escaped_as_the_text_format_requires() {
        assert_eq!(label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(label(r"back\slash"), r"back\\slash");
        assert_eq!(label("line\nbreak"), r"line\nbreak");
        assert_eq!(label("tab\tand ünïcode"), "tab\tand ünïcode");
        assert_eq!(label("svc\"} 1\nfake_total 9"), r#"svc\"} 1\nfake_total 9"#);
    }

    #[test]
    fn counters_become_labelled_metrics() {
        use crate::proxy::{AttemptOutcome, ProxyStats};
        let stats = ProxyStats::default();
        stats.service("db", |s| s.retries += 2);
        stats.outcome("db", AttemptOutcome::Class(2));
        stats.direction(Direction::Inbound, |d| {
            d.tls_handshake_errors += 1;
            d.responses[2] += 1;
        });
        stats.route("reviews", "canary");
        for _ in 0..4 {
            stats.route_rate_limited("a.b");
        }
        let fams = counter_families(&stats.snapshot());
        let names: Vec<&str> = fams.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "meshsim_inbound_route_rate_limited_total",
                "meshsim_inbound_tls_handshake_errors_total",
                "meshsim_outbound_attempt_2xx_total",
                "meshsim_outbound_retries_total",
                "meshsim_outbound_route_requests_total",
            ]
        );
        assert_eq!(
            fams["meshsim_outbound_retries_total"],
            [("service=\"db\"".to_string(), 2)]
        );
        // A route's name is a label, whatever characters it holds, never part of the metric name.
        assert_eq!(
            fams["meshsim_inbound_route_rate_limited_total"],
            [("route=\"a.b\"".to_string(), 4)]
        );
        assert_eq!(
            fams["meshsim_outbound_route_requests_total"],
            [("service=\"reviews\",route=\"canary\"".to_string(), 1)]
        );
    }

    #[test]
    fn a_histogram_is_cumulative_and_counts_everything() {
        let g = Golden::default();
        for us in [100, 700, 700, 20_000_000] {
            g.start(Direction::Outbound);
            g.finish(Direction::Outbound, "db", 200, None, us);
        }
        g.start(Direction::Outbound);
        g.finish(Direction::Outbound, "db", 503, Some("circuit_open"), 50);
        let text = exposition(&g, &Counters::default(), &BTreeMap::new());
        let bucket = |le: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("meshsim_request_duration_seconds_bucket")
                        && l.contains(&format!("le=\"{le}\""))
                })
                .and_then(|l| l.rsplit(' ').next())
                .unwrap()
                .to_string()
        };
        assert_eq!(bucket("0.0005"), "2");
        assert_eq!(bucket("0.001"), "4");
        assert_eq!(bucket("10"), "4");
        assert_eq!(bucket("+Inf"), "5");
        assert!(text.contains("status_class=\"5xx\"} 1"));
        assert!(text.contains("reason=\"circuit_open\"} 1"));
        assert!(text.contains("meshsim_requests_in_flight{direction=\"outbound\"} 0"));
    }
}
