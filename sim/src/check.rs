//! Evaluates a scenario's assertions against a finished run. Checkers live here, apart from the
//! system under test: mesh-core never knows what is being asserted about it.

use reports::{AssertionResult, Report, RunStats};

use crate::scenario::Assertion;

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Whether a breaker or health event for `pool` counts towards `a`'s `{service="..."}`: the
/// balancer names a split service's pools `service@subset`, and the service is all of them.
fn of_service(a: &Assertion, pool: &str) -> bool {
    match &a.label {
        Some((_, want)) => pool == want || pool.split('@').next() == Some(want.as_str()),
        None => true,
    }
}

/// The value `a` refers to in `report`, if the run has it. `measured_s` is the measured window.
pub fn metric(a: &Assertion, report: &Report, measured_s: f64) -> Option<f64> {
    let main: &RunStats = report.mesh.as_ref().or(report.baseline.as_ref())?;
    let route = match &a.label {
        Some((k, v)) if k == "route" => Some(main.routes.get(v)?),
        _ => None,
    };
    let (books, lat) = match route {
        Some(r) => (&r.books, &r.latency),
        None => (&main.books, &main.latency),
    };
    let mut completed = (books.ok + books.failed) as f64;
    let (mut ok, mut failed) = (books.ok as f64, books.failed as f64);
    if let Some((k, v)) = &a.label
        && k == "after"
    {
        // Requests completed from that second of simulated time on, from the time line.
        let from_s = v.parse::<crate::scenario::Dur>().ok()?.as_ms() / 1000;
        let late = main.timeline.iter().filter(|b| b.t_s >= from_s);
        let (o, f) = late.fold((0, 0), |(o, f), b| (o + b.ok, f + b.failed));
        (ok, failed, completed) = (o as f64, f as f64, (o + f) as f64);
    }
    let base = report.baseline.as_ref();
    let over = report.overhead.as_ref();
    Some(match a.metric.as_str() {
        "p50_ms" => ms(lat.p50_us),
        "p90_ms" => ms(lat.p90_us),
        "p99_ms" => ms(lat.p99_us),
        "p999_ms" => ms(lat.p999_us),
        "max_ms" => ms(lat.max_us),
        "mean_ms" => ms(lat.mean_us),
        "baseline_p50_ms" => ms(base?.latency.p50_us),
        "baseline_p99_ms" => ms(base?.latency.p99_us),
        "overhead_p50_ms" => over?.p50_us as f64 / 1000.0,
        "overhead_p99_ms" => over?.p99_us as f64 / 1000.0,
        "overhead_p999_ms" => over?.p999_us as f64 / 1000.0,
        "success_ratio" if completed > 0.0 => ok / completed,
        "error_ratio" if completed > 0.0 => failed / completed,
        "wasted_ms" => main
            .services
            .iter()
            .filter(|(name, _)| of_service(a, name))
            .map(|(_, q)| q.wasted_ms)
            .sum(),
        "success_ratio" | "error_ratio" => return None,
        "sent" => books.sent as f64,
        "ok" => books.ok as f64,
        "failed" => match &a.label {
            Some((k, reason)) if k == "reason" => {
                books.failed_by_reason.get(reason).copied().unwrap_or(0) as f64
            }
            _ => books.failed as f64,
        },
        "in_flight" => books.in_flight as f64,
        "throughput_rps" if measured_s > 0.0 => books.ok as f64 / measured_s,
        "retry_amplification"
        | "retries"
        | "budget_exhausted"
        | "circuit_open"
        | "retry_overflow" => {
            let pick = |e: &reports::EdgeStats| match a.metric.as_str() {
                "retry_amplification" => e.retry_amplification,
                "retries" => e.retries as f64,
                "budget_exhausted" => e.budget_exhausted as f64,
                "retry_overflow" => e.retry_overflow as f64,
                _ => e.circuit_open as f64,
            };
            match &a.label {
                Some((k, edge)) if k == "edge" => pick(main.edges.get(edge)?),
                _ if a.metric == "retry_amplification" => main
                    .edges
                    .values()
                    .map(pick)
                    .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))?,
                _ => main.edges.values().map(pick).sum(),
            }
        }
        "denied" => match &a.label {
            Some((k, edge)) if k == "edge" => main
                .edges
                .get(edge)?
                .attempt_outcomes
                .get("authz_denied")
                .copied()
                .unwrap_or(0) as f64,
            _ => main
                .authz_denied
                .iter()
                .filter(|d| of_service(a, &d.service))
                .map(|d| d.denied)
                .sum::<u64>() as f64,
        },
        "connections_denied" => main
            .connections_denied
            .iter()
            .filter(|d| of_service(a, &d.service))
            .map(|d| d.denied)
            .sum::<u64>() as f64,
        "config_max_ms" | "config_t90_ms" | "config_unreached" => {
            let cp = main.control_plane.as_ref()?;
            let changes: Vec<&reports::Propagation> = cp
                .changes
                .iter()
                .filter(|c| match &a.label {
                    Some((_, what)) => &c.what == what,
                    None => true,
                })
                .collect();
            if changes.is_empty() {
                return None;
            }
            let value = |c: &reports::Propagation| match a.metric.as_str() {
                "config_max_ms" => c.max_ms.unwrap_or(f64::INFINITY),
                "config_t90_ms" => c.t90_ms.unwrap_or(f64::INFINITY),
                _ => (c.proxies - c.reached) as f64,
            };
            if a.metric == "config_unreached" {
                changes.iter().map(|c| value(c)).sum()
            } else {
                changes.iter().map(|c| value(c)).fold(0.0, f64::max)
            }
        }
        "config_nacks" => main
            .control_plane
            .as_ref()?
            .nacks
            .iter()
            .map(|n| n.proxies)
            .sum::<u64>() as f64,
        "config_pushes" => main.control_plane.as_ref()?.pushes as f64,
        "tls_failures" => {
            let m = main.mtls.as_ref()?;
            m.handshake_failures
                .iter()
                .filter(|(k, _)| match &a.label {
                    Some((_, reason)) => k.split_once('.').is_some_and(|(_, r)| r == reason),
                    None => true,
                })
                .map(|(_, n)| *n)
                .sum::<u64>() as f64
        }
        "cert_rotations" => main.mtls.as_ref()?.rotations as f64,
        "cert_failures" => main.mtls.as_ref()?.renewal_failures as f64,
        "subset_share" | "subset_error_ratio" => {
            let (_, subset) = a.label.as_ref()?;
            let v = main.subsets.get(subset)?;
            if a.metric == "subset_share" {
                v.share
            } else {
                v.error_ratio
            }
        }
        "retry_storms" => main
            .storms
            .iter()
            .filter(|st| match &a.label {
                Some((_, edge)) => &st.edge == edge,
                None => true,
            })
            .count() as f64,
        "ejections" => main
            .health
            .iter()
            .filter(|h| h.event == "ejected" && of_service(a, &h.service))
            .count() as f64,
        "circuit_trips" => {
            let of = |svc: &str| of_service(a, svc);
            (main
                .breaker_events
                .iter()
                .filter(|b| of(&b.service))
                .count()
                + main
                    .health
                    .iter()
                    .filter(|h| h.event == "ejected" && of(&h.service))
                    .count()) as f64
        }
        "load_factor" => match &a.label {
            Some((k, svc)) if k == "service" => *main.load_factor.get(svc)?,
            _ => main
                .load_factor
                .values()
                .copied()
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))?,
        },
        _ => return None,
    })
}

/// Evaluate every assertion.
pub fn evaluate(
    assertions: &[Assertion],
    report: &Report,
    measured_s: f64,
) -> Vec<AssertionResult> {
    assertions
        .iter()
        .map(|a| {
            let actual = metric(a, report, measured_s);
            AssertionResult {
                text: a.text.clone(),
                actual,
                passed: actual.is_some_and(|v| a.op.holds(v, a.value)),
            }
        })
        .collect()
}

/// Everything wrong with one run's accounting, empty when every request and every try is
/// accounted for: the books balance (the workload's count of what it sent against the
/// collector's outcomes, and the reasons against `failed`: [`reports::Books::check`]), no request is left in flight, the routes add up to the whole, and on
/// every edge each try (first or retry) ended exactly once (`requests + retries = attempts +
/// circuit_open + unsent`) and each attempt had exactly one outcome. The tests hold every run to
/// it; the verdict holds the books and `in_flight` to it.
pub fn ledger(run: &RunStats) -> Vec<String> {
    let mut problems = Vec::new();
    let b = &run.books;
    if !b.balanced {
        problems.push(format!("books do not balance: {b:?}"));
    }
    if b.in_flight > 0 {
        problems.push(format!("{} requests never ended", b.in_flight));
    }
    let routes_sent: u64 = run.routes.values().map(|r| r.books.sent).sum();
    let routes_done: u64 = run
        .routes
        .values()
        .map(|r| r.books.ok + r.books.failed)
        .sum();
    if !run.routes.is_empty() && (routes_sent != b.sent || routes_done != b.ok + b.failed) {
        problems.push(format!(
            "routes sent {routes_sent} and ended {routes_done}, the whole {} and {}",
            b.sent,
            b.ok + b.failed
        ));
    }
    for (name, e) in &run.edges {
        let tries = e.requests + e.retries;
        let ended = e.attempts + e.circuit_open + e.unsent;
        if tries != ended {
            problems.push(format!(
                "edge {name}: {tries} tries (requests + retries) but {ended} ended (attempts + circuit_open + unsent): {e:?}"
            ));
        }
        let outcomes: u64 = e.attempt_outcomes.values().sum();
        if outcomes != e.attempts {
            problems.push(format!(
                "edge {name}: {} attempts but {outcomes} attempt outcomes: {e:?}",
                e.attempts
            ));
        }
        if e.failures > e.requests {
            problems.push(format!("edge {name}: more failures than requests: {e:?}"));
        }
    }
    problems
}
