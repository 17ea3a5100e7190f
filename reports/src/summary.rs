//! `summary.md`: verdict first, then the few numbers that matter, then tables. Plain Markdown that
//! reads the same in a terminal and in a pull-request comment.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::model::{Latency, Report, RunStats, Verdict};

/// Milliseconds with three decimals from microseconds.
pub fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// A metric value: whole numbers plain, others to four decimals.
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

fn signed_ms(us: i64) -> String {
    format!("{:+.3}", us as f64 / 1000.0)
}

/// Render the summary of `report`.
pub fn render(report: &Report) -> String {
    let mut s = String::new();
    let r = &report.run;
    let verdict = match report.verdict {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
    };
    let _ = writeln!(s, "# {verdict}: {} (seed {})\n", r.scenario, r.seed);
    if !r.description.is_empty() {
        let _ = writeln!(s, "{}\n", r.description.trim());
    }
    let main = report.mesh.as_ref().or(report.baseline.as_ref());
    if let Some(m) = main {
        let b = &m.books;
        let ratio = if b.ok + b.failed > 0 {
            b.ok as f64 / (b.ok + b.failed) as f64
        } else {
            0.0
        };
        let _ = writeln!(
            s,
            "- **{}**: {} requests, {:.4} success, P50 {} ms, P99 {} ms, P99.9 {} ms",
            if m.mesh { "with mesh" } else { "without mesh" },
            b.sent,
            ratio,
            ms(m.latency.p50_us),
            ms(m.latency.p99_us),
            ms(m.latency.p999_us)
        );
    }
    if let Some(o) = &report.overhead {
        let _ = writeln!(
            s,
            "- **mesh overhead**: P50 {} ms, P99 {} ms, P99.9 {} ms",
            signed_ms(o.p50_us),
            signed_ms(o.p99_us),
            signed_ms(o.p999_us)
        );
    }
    let failed: Vec<_> = report.assertions.iter().filter(|a| !a.passed).collect();
    let _ = writeln!(
        s,
        "- **assertions**: {} of {} held",
        report.assertions.len() - failed.len(),
        report.assertions.len()
    );
    for run in [&report.mesh, &report.baseline].into_iter().flatten() {
        if !run.books.balanced {
            let _ = writeln!(s, "- **books do not balance** in the {} run", label(run));
        }
        if run.books.in_flight > 0 {
            let _ = writeln!(
                s,
                "- **{} requests never ended** in the {} run",
                run.books.in_flight,
                label(run)
            );
        }
    }
    let _ = writeln!(s, "\nReproduce: `{}`\n", r.repro);

    if !report.assertions.is_empty() {
        let _ = writeln!(
            s,
            "## Assertions\n\n| | assertion | actual |\n|---|---|---|"
        );
        for a in &report.assertions {
            let actual = a.actual.map(number).unwrap_or_else(|| "n/a".into());
            let mark = if a.passed { "ok" } else { "**FAILED**" };
            let _ = writeln!(s, "| {mark} | `{}` | {actual} |", a.text);
        }
        s.push('\n');
    }

    let _ = writeln!(s, "## Latency (ms)\n");
    let _ = writeln!(
        s,
        "| run | route | count | P50 | P90 | P99 | P99.9 | max |\n|---|---|---:|---:|---:|---:|---:|---:|"
    );
    for run in [&report.mesh, &report.baseline].into_iter().flatten() {
        latency_row(&mut s, label(run), "all", &run.latency);
        for (name, rs) in &run.routes {
            latency_row(&mut s, label(run), name, &rs.latency);
        }
    }
    s.push('\n');

    let _ = writeln!(
        s,
        "## Outcomes\n\n| run | sent | ok | failed | in flight | warm-up (excluded) | balanced |\n|---|---:|---:|---:|---:|---:|---|"
    );
    for run in [&report.mesh, &report.baseline].into_iter().flatten() {
        let b = &run.books;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            label(run),
            b.sent,
            b.ok,
            b.failed,
            b.in_flight,
            b.warmup_excluded,
            if b.balanced { "yes" } else { "**NO**" }
        );
    }
    let reasons: Vec<_> = [&report.mesh, &report.baseline]
        .into_iter()
        .flatten()
        .filter(|r| !r.books.failed_by_reason.is_empty())
        .collect();
    if !reasons.is_empty() {
        let _ = writeln!(s, "\n| run | failure reason | requests |\n|---|---|---:|");
        for run in reasons {
            for (reason, n) in &run.books.failed_by_reason {
                let _ = writeln!(s, "| {} | {reason} | {n} |", label(run));
            }
        }
    }
    if !r.faults.is_empty() {
        let _ = writeln!(
            s,
            "\n## Fault time line\n\n| kind | target | from (s) | to (s) |\n|---|---|---:|---:|"
        );
        for f in &r.faults {
            let end = f
                .end_ms
                .map(|e| format!("{:.3}", e as f64 / 1000.0))
                .unwrap_or_else(|| "end".into());
            let _ = writeln!(
                s,
                "| {} | {} | {:.3} | {end} |",
                f.kind,
                f.target,
                f.start_ms as f64 / 1000.0
            );
        }
    }
    if let Some(m) = report.mesh.as_ref().filter(|m| !m.edges.is_empty()) {
        let _ = writeln!(
            s,
            "\n## Mesh edges\n\n| edge | requests | attempts | amplification | retries | budget denied | retry overflow | per-try timeouts | timeouts | breaker fast-fails | failed |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (name, e) in &m.edges {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {:.2}x | {} | {} | {} | {} | {} | {} | {} |",
                e.requests,
                e.attempts,
                e.retry_amplification,
                e.retries,
                e.budget_exhausted,
                e.retry_overflow,
                e.per_try_timeouts,
                e.timeouts,
                e.circuit_open,
                e.failures
            );
        }
        if !m.storms.is_empty() {
            let _ = writeln!(
                s,
                "\n**Retry storms** (amplification above the threshold):\n\n| edge | from (s) | to (s) | peak |\n|---|---:|---:|---:|"
            );
            for st in &m.storms {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {:.2}x |",
                    st.edge, st.start_s, st.end_s, st.peak_amplification
                );
            }
        }
        let _ = writeln!(
            s,
            "\nLoad per request sent: {}",
            m.load_factor
                .iter()
                .map(|(k, v)| format!("{k} {v:.2}x"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(m) = report.mesh.as_ref().or(report.baseline.as_ref())
        && !m.services.is_empty()
    {
        let _ = writeln!(
            s,
            "\n## Services as queues ({} run)\n\n| service | workers + queue per pod | arrived | refused | throughput (/s) | mean wait (ms) | P(wait) | mean service (ms) | in system (avg) | queued (avg) | abandoned | wasted worker time (ms) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            label(m)
        );
        for (name, q) in &m.services {
            let _ = writeln!(
                s,
                "| {name} | {} + {} | {} | {} | {:.1} | {:.3} | {:.4} | {:.3} | {:.2} | {:.2} | {} | {:.1} |",
                q.workers,
                q.queue,
                q.arrived,
                q.refused,
                q.throughput_rps,
                q.mean_wait_us / 1000.0,
                q.p_wait,
                q.mean_service_us / 1000.0,
                q.mean_in_system,
                q.mean_queue,
                q.abandoned,
                q.wasted_ms
            );
        }
        let n = &m.network;
        let _ = writeln!(
            s,
            "\nNetwork: {} µs one way within a zone, +{} µs between zones; packets delivered {}, mean one-way delay {:.1} µs.",
            n.latency_us, n.cross_zone_latency_us, n.delivered, n.mean_delay_us
        );
    }
    if let Some(m) = report.mesh.as_ref().filter(|m| m.subsets.len() > 1) {
        let _ = writeln!(
            s,
            "\n## Subsets\n\n| subset | attempts | share | failures | error ratio |\n|---|---:|---:|---:|---:|"
        );
        for (name, v) in &m.subsets {
            let _ = writeln!(
                s,
                "| {name} | {} | {:.1}% | {} | {:.4} |",
                v.attempts,
                v.share * 100.0,
                v.failures,
                v.error_ratio
            );
        }
    }
    if let Some(m) = report.mesh.as_ref().filter(|m| !m.health.is_empty()) {
        let ejections = m.health.iter().filter(|h| h.event == "ejected").count();
        let _ = writeln!(
            s,
            "\n## Outlier detection\n\n{ejections} ejections. First events:\n\n| time (s) | sidecar | endpoint | event |\n|---:|---|---|---|"
        );
        for h in m.health.iter().take(20) {
            let _ = writeln!(
                s,
                "| {:.3} | {} | {} | {} |",
                h.at_ms as f64 / 1000.0,
                h.proxy,
                h.endpoint,
                h.event
            );
        }
    }
    if let Some(m) = report
        .mesh
        .as_ref()
        .filter(|m| !m.breaker_events.is_empty())
    {
        // Refusals come in bursts; one row per sidecar, destination and reason says more than
        // thousands of timestamps (every one is in report.json).
        let mut bursts: BTreeMap<(&str, &str, &str), (u64, u64, u64)> = BTreeMap::new();
        for b in &m.breaker_events {
            let e = bursts
                .entry((&b.service, &b.reason, &b.proxy))
                .or_insert((b.at_ms, b.at_ms, 0));
            e.0 = e.0.min(b.at_ms);
            e.1 = e.1.max(b.at_ms);
            e.2 += 1;
        }
        let _ = writeln!(
            s,
            "\n## Circuit breakers\n\n{} refusals.\n\n| destination | threshold | sidecar | first (s) | last (s) | refusals |\n|---|---|---|---:|---:|---:|",
            m.breaker_events.len()
        );
        for ((svc, reason, proxy), (first, last, n)) in bursts.iter().take(30) {
            let _ = writeln!(
                s,
                "| {svc} | {reason} | {proxy} | {:.3} | {:.3} | {n} |",
                *first as f64 / 1000.0,
                *last as f64 / 1000.0
            );
        }
    }
    if let Some(m) = report
        .mesh
        .as_ref()
        .filter(|m| !m.slowest_traces.is_empty())
    {
        let _ = writeln!(
            s,
            "\n## Slowest traces\n\nOne span per sidecar hop (W3C trace context); the slowest {} of the run are in `traces.otlp.json` (OTLP-JSON, opens in Jaeger).\n\n| trace | request | at (s) | duration (ms) | status | hops: sidecar direction → service, ms after start + duration |\n|---|---|---:|---:|---:|---|",
            crate::model::EXPORTED_TRACES
        );
        for t in &m.slowest_traces {
            let hops = t
                .spans
                .iter()
                .map(|sp| {
                    format!(
                        "{} {} → {} +{}+{}{}",
                        sp.proxy,
                        sp.direction,
                        sp.service,
                        ms(sp.offset_us),
                        ms(sp.duration_us),
                        if sp.reason.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", sp.reason)
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let _ = writeln!(
                s,
                "| `{}` | {} | {:.3} | {} | {} | {hops} |",
                &t.trace_id[..t.trace_id.len().min(12)],
                t.root,
                t.start_ms as f64 / 1000.0,
                ms(t.duration_us),
                t.status
            );
        }
    }
    if let Some(m) = &report.mesh {
        authorization(&mut s, m);
    }
    if let Some(cp) = report.mesh.as_ref().and_then(|m| m.control_plane.as_ref()) {
        control_plane(&mut s, cp);
    }
    if let Some(t) = report.mesh.as_ref().and_then(|m| m.mtls.as_ref()) {
        mtls(&mut s, t);
    }
    if let Some(p) = report.mesh.as_ref().and_then(|m| m.proxies.as_ref()) {
        let _ = writeln!(
            s,
            "\n## Sidecars\n\n{} proxies, {} hops charged, {} queued behind a busy worker, {} ms modelled CPU.",
            p.proxies,
            p.hops,
            p.queued_hops,
            ms(p.cpu_us)
        );
        if let Some(f) = &p.fleet {
            let _ = writeln!(
                s,
                "\n**What this mesh costs to run** ({} sidecars, {:.0} requests/s through them):\n\n| mesh | memory (MiB) | CPU (cores) |\n|---|---:|---:|\n| meshsim (measured) | {:.1} | {:.3} |",
                f.proxies, f.proxy_rps, f.memory_mib, f.cpu_cores
            );
            for p in &f.published {
                let _ = writeln!(
                    s,
                    "| {} | {:.1} | {} |",
                    p.mesh,
                    p.memory_mib,
                    p.cpu_cores.map_or("—".into(), |c| format!("{c:.3}"))
                );
            }
            let _ = writeln!(
                s,
                "\nmeshsim figures from: {} (CPU measured on that machine, where nginx and HAProxy cost about as much per request; published figures are from the meshes' own, faster, test beds). Published figures: {}.",
                f.source,
                f.published
                    .iter()
                    .map(|p| format!("{}: {}", p.mesh, p.basis))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
    }
    let _ = writeln!(
        s,
        "\n<sub>scenario {} · sha256 {} · {} · proxy cost: {}</sub>",
        r.scenario_file,
        &r.scenario_hash[..r.scenario_hash.len().min(12)],
        r.versions
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        r.proxy_cost_source
    );
    s
}

/// The authorization section: what each service's sidecars refused, requests (L7) and
/// connections (L4), by policy and rule. Absent when nothing was refused.
fn authorization(s: &mut String, m: &RunStats) {
    if m.authz_denied.is_empty() && m.connections_denied.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "
## Authorization

Refused by the enforcing service's sidecars: requests (403, L7 policies) and connections (closed before any request was read, L4 policies). `no_allow_match`: the service has ALLOW policies and none matched.

| service | layer | policy | rule | refused |
|---|---|---|---|---:|"
    );
    let rows = (m.authz_denied.iter().map(|d| ("requests (L7)", d)))
        .chain(m.connections_denied.iter().map(|d| ("connections (L4)", d)));
    for (layer, d) in rows {
        let _ = writeln!(
            s,
            "| {} | {layer} | {} | {} | {} |",
            d.service, d.policy, d.rule, d.denied
        );
    }
}

/// The control plane's section: its work, how far each change got and when, and refusals.
fn control_plane(s: &mut String, cp: &crate::model::ControlPlaneStats) {
    let opt = |v: Option<f64>| v.map_or("never".to_string(), |v| format!("{v:.0}"));
    let _ = writeln!(
        s,
        "\n## Control plane\n\n{} proxies subscribed; {} pushes cost the control plane {} ms of CPU; {} streams failed or could not be opened. Delays run from the change to a proxy applying a push that includes it; \"90%\" is when nine proxies in ten had it (the SMP spec's `cds_latency_ms`).\n\n| change | at (s) | type | proxies | reached | refused | P50 (ms) | P99 (ms) | max (ms) | 90% (ms) |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        cp.proxies, cp.pushes, cp.push_cpu_ms, cp.disconnects
    );
    for c in &cp.changes {
        let _ = writeln!(
            s,
            "| {} | {:.3} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.what,
            c.at_ms as f64 / 1000.0,
            c.kind,
            c.proxies,
            c.reached,
            c.refused,
            opt(c.p50_ms),
            opt(c.p99_ms),
            opt(c.max_ms),
            opt(c.t90_ms)
        );
    }
    if !cp.nacks.is_empty() {
        let _ = writeln!(
            s,
            "\n**Refused pushes** (NACKs; each proxy kept its previous configuration for what it refused):\n\n| first (s) | type | version | proxies | error |\n|---:|---|---:|---:|---|"
        );
        for n in &cp.nacks {
            let _ = writeln!(
                s,
                "| {:.3} | {} | {} | {} | {} |",
                n.first_ms as f64 / 1000.0,
                n.kind,
                n.version,
                n.proxies,
                n.error.replace('|', "\\|")
            );
        }
    }
}

/// The mTLS section: certificates issued and rotated, and handshakes refused by reason.
fn mtls(s: &mut String, t: &crate::model::MtlsStats) {
    let _ = writeln!(
        s,
        "\n## Mutual TLS\n\nRun for real between sidecars with {} s workload certificates: the CA signed {}, sidecars rotated in {}, {} signing requests failed; {} sidecars held an expired certificate at the end.",
        t.lifetime_s, t.issued, t.rotations, t.renewal_failures, t.expired_at_end
    );
    if t.handshake_failures.is_empty() {
        let _ = writeln!(s, "\nNo handshake failed.");
    } else {
        let _ = writeln!(
            s,
            "\n| failed handshakes (direction.reason) | count |\n|---|---:|"
        );
        for (k, n) in &t.handshake_failures {
            let _ = writeln!(s, "| {k} | {n} |");
        }
    }
}

fn label(run: &RunStats) -> &'static str {
    if run.mesh { "mesh" } else { "no mesh" }
}

fn latency_row(s: &mut String, run: &str, route: &str, l: &Latency) {
    let _ = writeln!(
        s,
        "| {run} | {route} | {} | {} | {} | {} | {} | {} |",
        l.count,
        ms(l.p50_us),
        ms(l.p90_us),
        ms(l.p99_us),
        ms(l.p999_us),
        ms(l.max_us)
    );
}
