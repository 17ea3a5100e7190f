//! After the run: the measurements, read from the collector, the fabric and every sidecar,
//! into the run's statistics and telemetry. Pure reading; nothing here changes the world.

use std::collections::BTreeMap;

use reports::{
    BreakerRecord, EdgeStats, HealthRecord, NetworkStats, ProxyTotals, RunStats, SubsetStats,
};

use crate::cost::{CpuTally, SimHopCost};
use crate::scenario::Loaded;
use crate::telemetry::{HostSpan, Telemetry};

use super::*;

/// Read what the run left behind into its report section and telemetry: health and breaker
/// events, each sidecar's counters per edge and subset, per-second series and retry storms,
/// load factors, proxy totals and fleet cost, metrics, spans and access-log lines.
pub(super) fn harvest(
    loaded: &Loaded,
    mesh: bool,
    world: &World<'_>,
    finished: crate::collect::Finished,
    fstats: crate::fabric::FabricStats,
    sim_time_ms: u64,
) -> (RunStats, Telemetry) {
    let mut health = Vec::new();
    {
        let config = world.config.borrow();
        let registry = &config.registry;
        for sc in &world.sidecars {
            let host = &sc.host;
            for ev in sc.health_events() {
                // Subset-scoped balancer state is indexed within the subset.
                let (svc, subset) = (&ev.pool.service, &ev.pool.subset);
                let pod = registry
                    .get(svc)
                    .and_then(|e| {
                        e.endpoints
                            .iter()
                            .filter(|ep| subset.as_ref().is_none_or(|s| &ep.subset == s))
                            .nth(ev.endpoint)
                    })
                    .map(|e| e.pod.clone())
                    .unwrap_or_default();
                health.push(HealthRecord {
                    at_ms: ev
                        .at
                        .saturating_duration_since(world.clock.epoch())
                        .as_millis() as u64,
                    proxy: host.clone(),
                    service: ev.pool.to_string(),
                    endpoint: pod,
                    event: ev.kind.to_string(),
                });
            }
        }
    }
    health.sort_by(|a, b| (a.at_ms, &a.proxy, &a.endpoint).cmp(&(b.at_ms, &b.proxy, &b.endpoint)));
    let mut breaker_events: Vec<BreakerRecord> = world
        .sidecars
        .iter()
        .flat_map(|sc| {
            sc.breaker_events().into_iter().map(|ev| BreakerRecord {
                at_ms: ev
                    .at
                    .saturating_duration_since(world.clock.epoch())
                    .as_millis() as u64,
                proxy: sc.host.clone(),
                service: ev.service,
                reason: ev.overflow.reason().to_string(),
                retry: ev.retry,
            })
        })
        .collect();
    // Stable: events of one sidecar at the same millisecond keep their order.
    breaker_events.sort_by(|a, b| (a.at_ms, &a.proxy).cmp(&(b.at_ms, &b.proxy)));
    // Each sidecar's counters, read once: (owning service or `clients`, counters).
    let snapshots: Vec<(&str, mesh_core::proxy::Counters)> = world
        .sidecars
        .iter()
        .map(|sc| (sc.owner.as_str(), sc.counters()))
        .collect();
    // Per service, then subset, summed over every sidecar; shares are within the service.
    let mut by_service: BTreeMap<&str, BTreeMap<&str, SubsetStats>> = BTreeMap::new();
    for (_, counters) in &snapshots {
        for (svc, subs) in &counters.subsets {
            for (sub, c) in subs {
                let e = by_service.entry(svc).or_default().entry(sub).or_default();
                e.attempts += c.attempts;
                e.failures += c.failures;
            }
        }
    }
    let mut subsets: BTreeMap<String, SubsetStats> = BTreeMap::new();
    for (svc, subs) in by_service {
        let total: u64 = subs.values().map(|v| v.attempts).sum();
        for (sub, mut v) in subs {
            v.share = ratio(v.attempts, total);
            v.error_ratio = ratio(v.failures, v.attempts);
            subsets.insert(format!("{svc}/{sub}"), v);
        }
    }
    let mut edges: BTreeMap<String, EdgeStats> = BTreeMap::new();
    let mut attempts_to: BTreeMap<String, u64> = BTreeMap::new();
    // Per-second requests, attempts and failures per edge.
    let mut per_sec: BTreeMap<String, BTreeMap<u64, mesh_core::proxy::stats::Second>> =
        BTreeMap::new();
    for (owner, counters) in &snapshots {
        for (callee, c) in &counters.services {
            let edge = format!("{owner}->{callee}");
            let e = edges.entry(edge.clone()).or_default();
            e.requests += c.requests;
            e.attempts += c.attempts;
            e.retries += c.retries;
            e.budget_exhausted += c.budget_exhausted;
            e.per_try_timeouts += c.per_try_timeouts;
            e.timeouts += c.timeouts;
            e.circuit_open += c.circuit_open;
            e.retry_overflow += c.retry_overflow;
            e.unsent += c.unsent;
            e.failures += c.failures;
            for (outcome, n) in &c.outcomes {
                *e.attempt_outcomes
                    .entry(outcome.name().into_owned())
                    .or_insert(0) += n;
            }
            *attempts_to.entry(callee.clone()).or_insert(0) += c.attempts;
            if c.per_second.is_empty() {
                continue;
            }
            let series = per_sec.entry(edge).or_default();
            for (sec, n) in &c.per_second {
                let b = series.entry(*sec).or_default();
                b.requests += n.requests;
                b.attempts += n.attempts;
                b.failures += n.failures;
            }
        }
    }
    let (edge_timeline, storms) =
        super::storms::edge_series(per_sec, loaded.scenario.report.storm_threshold);
    for e in edges.values_mut() {
        e.retry_amplification = if e.requests > 0 {
            round4(e.attempts as f64 / e.requests as f64)
        } else {
            0.0
        };
    }
    let workload_sent = finished.books.sent + finished.books.warmup_excluded;
    let load_factor = attempts_to
        .into_iter()
        .map(|(svc, n)| (svc, round4(n as f64 / workload_sent.max(1) as f64)))
        .collect();
    let proxies =
        mesh.then(|| {
            let mut counters = BTreeMap::new();
            for (_, snapshot) in &snapshots {
                // Per-destination counters are reported per edge; keep the totals readable.
                for (k, v) in snapshot.flat() {
                    *counters.entry(k).or_insert(0) += v;
                }
            }
            let tally = world.hop_costs.values().map(SimHopCost::tally).fold(
                CpuTally::default(),
                |a, t| CpuTally {
                    hops: a.hops + t.hops,
                    queued_hops: a.queued_hops + t.queued_hops,
                    busy_us: a.busy_us + t.busy_us,
                },
            );
            let proxies = world.hop_costs.len() as u64;
            let fleet = loaded.cost.footprint.as_ref().map(|f| {
                crate::cost::fleet_cost(f, &loaded.cost.source, proxies, tally.hops, sim_time_ms)
            });
            ProxyTotals {
                proxies,
                hops: tally.hops,
                queued_hops: tally.queued_hops,
                cpu_us: tally.busy_us,
                counters,
                fleet,
            }
        });
    let mut telemetry = Telemetry::default();
    for sc in &world.sidecars {
        // A restarted pod's sidecar is a new process with fresh metrics: `db-0`, `db-0.2`.
        let mut key = sc.host.clone();
        let mut n = 1;
        while telemetry.metrics.contains_key(&key) {
            n += 1;
            key = format!("{}.{n}", sc.host);
        }
        telemetry.metrics.insert(key, sc.metrics_text());
    }
    telemetry.spans = world
        .spans
        .spans()
        .into_iter()
        .map(|(i, span)| HostSpan {
            host: world.sidecars[i].host.clone(),
            owner: world.sidecars[i].owner.clone(),
            span,
        })
        .collect();
    if let Some(lines) = &world.access_log {
        telemetry.access_log =
            std::mem::take(&mut *lines.lock().unwrap_or_else(|p| p.into_inner()));
    }
    // Sidecars running at the end: the only ones a change or a certificate is judged on.
    let down = world.down_hosts();
    let up = |node: &str| !down.contains(node);
    let stats = RunStats {
        mesh,
        sim_time_ms,
        books: finished.books,
        latency: finished.latency,
        latency_ok: finished.latency_ok,
        spectrum: finished.spectrum,
        routes: finished.routes,
        timeline: finished.timeline,
        proxies,
        edges,
        load_factor,
        health,
        breaker_events,
        edge_timeline,
        storms,
        subsets,
        network: NetworkStats {
            delivered: fstats.delivered,
            dropped_partition: fstats.dropped_partition,
            dropped_crashed: fstats.dropped_crashed,
            held: fstats.held,
            latency_us: loaded.scenario.network.latency.as_us(),
            cross_zone_latency_us: loaded.scenario.network.cross_zone_latency.as_us(),
            mean_delay_us: if fstats.timed == 0 {
                0.0
            } else {
                round4(fstats.delay_us as f64 / fstats.timed as f64)
            },
        },
        services: queues(loaded, world, sim_time_ms),
        authz_denied: denied(&snapshots, |c| &c.authz_denied),
        connections_denied: denied(&snapshots, |c| &c.connections_denied),
        mtls: world.identities.as_ref().map(|ids| {
            let mut failures = std::collections::BTreeMap::new();
            for (_, c) in &snapshots {
                for (dir, d) in mesh_core::hop::Direction::ALL.iter().zip(&c.directions) {
                    for (reason, n) in &d.tls_failures {
                        *failures
                            .entry(format!("{}.{reason}", dir.name()))
                            .or_insert(0) += n;
                    }
                }
            }
            ids.stats(failures, &up, sim_time_ms)
        }),
        control_plane: world.plane.as_ref().map(|p| p.stats(&up)),
        slowest_traces: crate::telemetry::slowest_traces(
            &telemetry.spans,
            crate::telemetry::REPORTED_TRACES,
        ),
    };
    (stats, telemetry)
}

/// Each service's queueing tally as the report states it, integrals closed at the end of the run.
fn queues(
    loaded: &Loaded,
    world: &World<'_>,
    sim_time_ms: u64,
) -> BTreeMap<String, reports::ServiceQueue> {
    let end_us = sim_time_ms * 1000;
    let per = |n: f64, d: u64| if d == 0 { 0.0 } else { round4(n / d as f64) };
    loaded
        .scenario
        .services
        .iter()
        .zip(&world.tallies)
        .map(|(spec, tally)| {
            let mut t = *tally.lock().unwrap_or_else(|p| p.into_inner());
            t.close(end_us);
            let window_us = end_us.saturating_sub(t.from_us);
            let secs = (window_us as f64 / 1e6).max(1e-9);
            let q = reports::ServiceQueue {
                workers: spec.workers,
                queue: spec.queue,
                arrived: t.arrived,
                refused: t.refused,
                throughput_rps: round4(t.departed as f64 / secs),
                mean_wait_us: per(t.wait_us as f64, t.started),
                mean_service_us: per(t.busy_us as f64, t.finished),
                p_wait: per(t.waited as f64, t.started),
                mean_in_system: per(t.in_system_area as f64, window_us),
                mean_queue: per(t.queue_area as f64, window_us),
                abandoned: t.abandoned,
                wasted_ms: round4(t.wasted_us as f64 / 1000.0),
            };
            (spec.name.get_ref().clone(), q)
        })
        .collect()
}

/// `n / d` to four places; 0 when `d` is 0.
pub(super) fn ratio(n: u64, d: u64) -> f64 {
    if d > 0 {
        round4(n as f64 / d as f64)
    } else {
        0.0
    }
}

/// Rounded to four decimals, so ratios print the same everywhere.
pub(super) fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Authorization refusals (of requests or connections, as `of` picks) per enforcing service,
/// policy and rule, summed over its sidecars.
fn denied<'a>(
    snapshots: &'a [(&str, mesh_core::proxy::Counters)],
    of: impl Fn(&'a mesh_core::proxy::Counters) -> &'a BTreeMap<(String, String), u64>,
) -> Vec<reports::model::AuthzDenied> {
    let mut by: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    for (owner, c) in snapshots {
        for ((policy, rule), n) in of(c) {
            *by.entry((owner, policy, rule)).or_insert(0) += n;
        }
    }
    by.into_iter()
        .map(
            |((service, policy, rule), denied)| reports::model::AuthzDenied {
                service: service.into(),
                policy: policy.into(),
                rule: rule.into(),
                denied,
            },
        )
        .collect()
}
