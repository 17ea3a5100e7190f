//! One simulated run, start to finish: build the hosts from the scenario, start every pod (app, and
//! sidecar when meshed), the clients and the fault time line, tick the network until every request
//! has an outcome, and hand back the measurements.
//!
//! All of it runs on one thread: a current-thread tokio runtime with a paused clock and a seeded
//! RNG (`--cfg tokio_unstable`), one `LocalSet` for every host's tasks, and a director that owns the
//! fabric. Nothing reads the wall clock; every random draw comes from a stream derived from the
//! seed and a stable label (`pod:db-0`, `client:3`, `fabric`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use mesh_core::net::Network;
use mesh_core::proxy::{Proxy, ProxyConfig};
use mesh_core::registry::{Endpoint, Protocol, Registry, ServiceEntry};
use mesh_core::server::serve_http;
use reports::{
    BreakerRecord, EdgeBucket, EdgeStats, HealthRecord, NetworkStats, ProxyTotals, RunStats, Storm,
    SubsetStats,
};
use turmoil_net::{HostId, Net};

use crate::collect::Collector;
use crate::cost::{CpuTally, SimHopCost};
use crate::derive_seed;
use crate::model::{APP_PORT, App, Caller, Modes, Route, pod_rng};
use crate::scenario::{FaultSpec, LoadModel, Loaded};
use crate::substrate::{Fabric, HostInfo, RuleKind, SimNet, TICK};
use crate::telemetry::{HostSpan, Telemetry};
use crate::workload::{Clock, Generator};

/// Ports of the sidecar, as Istio numbers them.
const OUTBOUND_PORT: u16 = 15001;
const INBOUND_PORT: u16 = 15006;

fn ip_of(index: usize) -> IpAddr {
    // 10.0.0.2 onwards; one address per host.
    IpAddr::V4(Ipv4Addr::from(0x0a00_0002u32 + index as u32))
}

/// A sidecar of the run: whose it is (a service, or `clients`), its host, and the proxy.
struct Sidecar {
    owner: String,
    host: String,
    proxy: Arc<Proxy<SimNet>>,
}

#[derive(Clone)]
struct Pod {
    service: usize,
    name: String,
    host: HostId,
    index: usize,
    latency: crate::scenario::LatencySpec,
    error_rate: f64,
}

struct World<'a> {
    loaded: &'a Loaded,
    seed: u64,
    mesh: bool,
    pods: Vec<Pod>,
    registry: Arc<RwLock<Registry>>,
    direct: Arc<BTreeMap<String, (Vec<SocketAddr>, Protocol)>>,
    modes: Arc<Mutex<Modes>>,
    clock: Clock,
    sidecars: Vec<Sidecar>,
    policies: Arc<RwLock<mesh_core::policy::Policies>>,
    hop_costs: BTreeMap<usize, SimHopCost>,
    hosts_net: BTreeMap<usize, SimNet>,
    incarnation: BTreeMap<usize, u64>,
    host_names: Vec<String>,
    /// Access-log lines of every sidecar, when the run keeps them.
    access_log: Option<Arc<Mutex<Vec<String>>>>,
}

impl World<'_> {
    fn sidecar(&mut self, net: &SimNet, host_index: usize, app_protocol: Protocol, owner: &str) {
        let m = &self.loaded.scenario.mesh;
        let cost = self
            .hop_costs
            .entry(host_index)
            .or_insert_with(|| {
                SimHopCost::new(
                    self.loaded.cost.for_protocol(m.protocol).clone(),
                    m.proxy_workers,
                    derive_seed(self.seed, &format!("proxy-cost:{host_index}")),
                    self.clock.epoch(),
                )
            })
            .clone();
        let request_timeout = (m.request_timeout.0 > Duration::ZERO).then_some(m.request_timeout.0);
        let own_policy = self
            .loaded
            .scenario
            .services
            .iter()
            .position(|s| s.name.get_ref() == owner)
            .and_then(|i| self.loaded.scenario.effective_policy(i));
        let cfg = ProxyConfig {
            outbound_addr: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), OUTBOUND_PORT),
            inbound_addr: SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), INBOUND_PORT),
            app_addr: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), APP_PORT),
            app_protocol,
            connect_timeout: m.connect_timeout.0,
            request_timeout,
            seed: derive_seed(self.seed, &format!("proxy:{host_index}")),
            stats_epoch: Some(self.clock.epoch()),
            tls: None,
            admin_addr: None,
            telemetry: mesh_core::telemetry::TelemetryConfig {
                service: owner.to_string(),
                identity: Some(format!("spiffe://cluster.local/ns/default/sa/{owner}")),
                record_spans: true,
                access_log: self.access_log.as_ref().map(|lines| {
                    let lines = lines.clone();
                    // Quoted once, as JSON, for every line this sidecar writes.
                    let host = serde_json::to_string(&self.hosts_name(host_index))
                        .expect("a string serialises");
                    mesh_core::telemetry::access::AccessLog(Arc::new(move |r| {
                        // The sidecar's host first, then the record's own fields.
                        let json = r.to_json();
                        let line = format!("{{\"proxy\":{host},{}", &json[1..]);
                        lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                    }))
                }),
            },
            inbound_rate_limit: own_policy
                .as_ref()
                .and_then(|p| p.rate_limit.as_ref())
                .map(|r| r.to_limit()),
            inbound_route_limits: own_policy.map(|p| p.route_limits()).unwrap_or_default(),
        };
        let proxy = Proxy::with_policies(
            net.clone(),
            cfg,
            self.registry.clone(),
            self.policies.clone(),
            Some(Arc::new(cost)),
        );
        self.sidecars.push(Sidecar {
            owner: owner.to_string(),
            host: self.hosts_name(host_index),
            proxy: proxy.clone(),
        });
        net.spawn(async move {
            // A bind failure would be a harness bug (ports are ours); the proxy then is simply absent
            // and its callers see connect failures, which the report shows.
            let _ = proxy.run().await;
        });
    }

    fn hosts_name(&self, index: usize) -> String {
        self.host_names.get(index).cloned().unwrap_or_default()
    }

    fn caller(&self, net: &SimNet, protocol: Protocol) -> Caller {
        let route = if self.mesh {
            Route::Mesh {
                sidecar: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), OUTBOUND_PORT),
                protocol,
            }
        } else {
            Route::Direct {
                endpoints: self.direct.clone(),
                cursors: Mutex::new(BTreeMap::new()),
            }
        };
        Caller::new(net.clone(), route)
    }

    /// Start (or restart) a pod: its app and, when meshed, its sidecar.
    fn start_pod(&mut self, p: usize) {
        let pod = self.pods[p].clone();
        let spec = &self.loaded.scenario.services[pod.service];
        let net = SimNet::new(pod.host);
        self.hosts_net.insert(pod.index, net.clone());
        let inc = self.incarnation.entry(pod.index).or_insert(0);
        *inc += 1;
        let rng = pod_rng(self.seed, &format!("pod:{}:{}", pod.name, inc));
        let app = Arc::new(App {
            service: spec.name.get_ref().clone(),
            pod: pod.name.clone(),
            latency: pod.latency.clone(),
            error_rate: pod.error_rate,
            calls: spec.calls.clone(),
            workers: Arc::new(tokio::sync::Semaphore::new(spec.workers as usize)),
            capacity: (spec.workers + spec.queue) as usize,
            admitted: Mutex::new(0),
            rng: Mutex::new(rng),
            modes: self.modes.clone(),
            caller: self.caller(&net, spec.protocol),
        });
        let app_net = net.clone();
        net.spawn(async move {
            let addr = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), APP_PORT);
            let Ok(listener) = app_net.bind(addr).await else {
                return;
            };
            let handler = move |req| app.clone().handle(req);
            serve_http(app_net, listener, handler, Arc::new(|_| {})).await;
        });
        if self.mesh {
            let owner = spec.name.get_ref().clone();
            self.sidecar(&net, pod.index, spec.protocol, &owner);
        }
    }

    fn crash_pod(&mut self, host_index: usize) {
        if let Some(net) = self.hosts_net.get(&host_index) {
            net.kill();
        }
    }
}

/// A fault event on the time line.
#[derive(Debug, Clone)]
enum Event {
    Start(usize),
    End(usize),
}

/// Run the scenario once, with or without the mesh, on `seed`.
/// `progress` hears (now, end of sending) in ms about once per simulated second.
pub fn simulate(
    loaded: &Loaded,
    seed: u64,
    mesh: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> RunStats {
    simulate_with(loaded, seed, mesh, false, progress).0
}

/// [`simulate`], also handing back what the sidecars recorded about themselves (metrics, spans,
/// and every access-log line when `access_log` is set).
pub fn simulate_with(
    loaded: &Loaded,
    seed: u64,
    mesh: bool,
    access_log: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> (RunStats, Telemetry) {
    let rt = crate::substrate::runtime(derive_seed(seed, "tokio"));
    rt.block_on(simulate_inner(loaded, seed, mesh, access_log, progress))
}

async fn simulate_inner(
    loaded: &Loaded,
    seed: u64,
    mesh: bool,
    access_log: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> (RunStats, Telemetry) {
    let s = &loaded.scenario;
    let mut net = Net::with_config(crate::substrate::kernel_config());
    let mut infos = Vec::new();
    let mut pods = Vec::new();
    let mut registry = Registry::new();
    let mut direct = BTreeMap::new();
    for (si, svc) in s.services.iter().enumerate() {
        let mut endpoints = Vec::new();
        let mut addrs = Vec::new();
        for (r, (name, version, latency, error_rate)) in svc.pods().into_iter().enumerate() {
            let index = infos.len();
            let ip = ip_of(index);
            let zone = svc.zones[r % svc.zones.len()].clone();
            let host = net.add_host(ip);
            infos.push(HostInfo {
                name: name.clone(),
                group: svc.name.get_ref().clone(),
                zone: zone.clone(),
                ip,
            });
            endpoints.push(Endpoint {
                addr: SocketAddr::new(ip, INBOUND_PORT),
                pod: name.clone(),
                zone,
                subset: version,
            });
            addrs.push(SocketAddr::new(ip, APP_PORT));
            pods.push(Pod {
                service: si,
                name,
                host,
                index,
                latency,
                error_rate,
            });
        }
        registry.insert(
            svc.name.get_ref().clone(),
            ServiceEntry {
                protocol: s.mesh.protocol,
                endpoints,
            },
        );
        direct.insert(svc.name.get_ref().clone(), (addrs, svc.protocol));
    }
    // The control plane's host: present in the topology (and in its cost) from the start; the
    // control-plane issue gives it work.
    let cp_ip = ip_of(infos.len());
    let _cp_host = net.add_host(cp_ip);
    infos.push(HostInfo {
        name: "control-plane".into(),
        group: "control-plane".into(),
        zone: s.services[0].zones[0].clone(),
        ip: cp_ip,
    });
    let mut clients = Vec::new();
    for c in 0..s.workload.clients as usize {
        let ip = ip_of(infos.len());
        let host = net.add_host(ip);
        infos.push(HostInfo {
            name: format!("client-{c}"),
            group: "clients".into(),
            zone: s.services[0].zones[c % s.services[0].zones.len()].clone(),
            ip,
        });
        clients.push((infos.len() - 1, host));
    }
    let host_names: Vec<String> = infos.iter().map(|h| h.name.clone()).collect();
    let guard = net.enter();
    let mut fabric = Fabric::new(
        infos,
        s.network.latency.as_us(),
        s.network.cross_zone_latency.as_us(),
        derive_seed(seed, "fabric"),
    );

    let clock = Clock::start();
    let routes: Vec<String> = s.workload.routes.iter().map(|r| r.label()).collect();
    let dispatched = Arc::new(Mutex::new(crate::collect::Dispatched::new(routes.len())));
    let collector = Arc::new(Mutex::new(Collector::new(
        routes,
        s.workload.warmup.as_ms(),
    )));
    let mut world = World {
        loaded,
        seed,
        mesh,
        pods,
        registry: Arc::new(RwLock::new(registry)),
        direct: Arc::new(direct),
        modes: Arc::new(Mutex::new(Modes::default())),
        clock,
        sidecars: Vec::new(),
        host_names,
        access_log: access_log.then(Arc::default),
        policies: Arc::new(RwLock::new(mesh_core::policy::Policies {
            services: s
                .services
                .iter()
                .enumerate()
                .filter_map(|(i, svc)| {
                    Some((
                        svc.name.get_ref().clone(),
                        s.effective_policy(i)?.to_policy(),
                    ))
                })
                .collect(),
        })),
        hop_costs: BTreeMap::new(),
        hosts_net: BTreeMap::new(),
        incarnation: BTreeMap::new(),
    };

    let set = tokio::task::LocalSet::new();
    let spec = Arc::new(s.workload.clone());
    let mut events: Vec<(u64, u64, Event)> = Vec::new();
    for (k, f) in s.faults.iter().enumerate() {
        events.push((f.get_ref().at().as_ms(), 2 * k as u64 + 1, Event::Start(k)));
        if let Some(u) = f.get_ref().until() {
            events.push((u.as_ms(), 2 * k as u64, Event::End(k)));
        }
    }
    events.sort_by_key(|(t, seq, _)| (*t, *seq));
    let mut events = std::collections::VecDeque::from(events);

    let send_end_ms = s.workload.duration.as_ms();
    let hard_end_ms = send_end_ms + s.workload.timeout.as_ms() + 1_000;
    let director = async {
        for p in 0..world.pods.len() {
            world.start_pod(p);
        }
        for (c, (host_index, host)) in clients.iter().enumerate() {
            let net = SimNet::new(*host);
            if mesh {
                world.sidecar(&net, *host_index, Protocol::Http1, "clients");
            }
            let generator = Generator {
                net: net.clone(),
                caller: Arc::new(world.caller(&net, Protocol::Http1)),
                spec: spec.clone(),
                collector: collector.clone(),
                dispatched: dispatched.clone(),
                clock,
            };
            let rng = pod_rng(seed, &format!("client:{c}"));
            match spec.model {
                LoadModel::Open => {
                    let rate = spec.rate_rps.unwrap_or(1.0) / f64::from(spec.clients);
                    net.spawn(generator.open_loop(rate, rng));
                }
                LoadModel::Closed => {
                    let users = spec.users.unwrap_or(1) as usize;
                    let mine = (c..users).step_by(spec.clients as usize).count();
                    for u in 0..mine {
                        let rng = pod_rng(seed, &format!("client:{c}:user:{u}"));
                        net.spawn(generator.clone().closed_loop(rng));
                    }
                }
            }
        }
        let mut rule_ids: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
        let mut now_ms = 0u64;
        loop {
            tokio::time::sleep(TICK).await;
            now_ms += 1;
            fabric.tick(&guard);
            while events.front().is_some_and(|(t, _, _)| *t <= now_ms) {
                let (_, _, ev) = events.pop_front().expect("checked non-empty");
                apply(&mut world, &mut fabric, &guard, &mut rule_ids, ev);
            }
            if now_ms.is_multiple_of(1000) {
                progress(now_ms, send_end_ms);
            }
            let open = collector.lock().unwrap_or_else(|p| p.into_inner()).open();
            if (now_ms > send_end_ms && open == 0) || now_ms >= hard_end_ms {
                break;
            }
        }
        now_ms
    };
    let sim_time_ms = set.run_until(director).await;
    // Tasks close their sockets as they drop; that needs the network still installed.
    drop(set);
    let fstats = fabric.stats();
    drop(guard);

    let finished = Arc::try_unwrap(collector)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_else(|_| {
            unreachable!("every task holding the collector was dropped with the LocalSet")
        })
        .finish(&dispatched.lock().unwrap_or_else(|p| p.into_inner()));
    let mut health = Vec::new();
    {
        let registry = world.registry.read().unwrap_or_else(|p| p.into_inner());
        for sc in &world.sidecars {
            let host = &sc.host;
            for ev in sc.proxy.health_events() {
                // Subset-scoped balancer state is keyed `service@subset`, indexed within the subset.
                let (svc, subset) = match ev.service.split_once('@') {
                    Some((svc, sub)) => (svc.to_string(), Some(sub.to_string())),
                    None => (ev.service.clone(), None),
                };
                let pod = registry
                    .get(&svc)
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
                    service: ev.service.clone(),
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
            sc.proxy
                .breaker_events()
                .into_iter()
                .map(|ev| BreakerRecord {
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
    let snapshots: Vec<(String, BTreeMap<String, u64>)> = world
        .sidecars
        .iter()
        .map(|sc| (sc.owner.clone(), sc.proxy.stats().snapshot()))
        .collect();
    let mut subsets: BTreeMap<String, SubsetStats> = BTreeMap::new();
    for (_, counters) in &snapshots {
        for (k, &v) in counters {
            let Some((key, what)) = counter_parts(k, "outbound.subset.") else {
                continue;
            };
            let Some((svc, sub)) = key.split_once('.') else {
                continue;
            };
            let e = subsets.entry(format!("{svc}/{sub}")).or_default();
            match what {
                "attempts" => e.attempts += v,
                "failures" => e.failures += v,
                _ => {}
            }
        }
    }
    let mut per_service: BTreeMap<String, u64> = BTreeMap::new();
    for (k, v) in &subsets {
        *per_service
            .entry(k.split('/').next().unwrap_or_default().to_string())
            .or_insert(0) += v.attempts;
    }
    for (k, v) in subsets.iter_mut() {
        let total = per_service
            .get(k.split('/').next().unwrap_or_default())
            .copied()
            .unwrap_or(0);
        v.share = if total > 0 {
            round4(v.attempts as f64 / total as f64)
        } else {
            0.0
        };
        v.error_ratio = if v.attempts > 0 {
            round4(v.failures as f64 / v.attempts as f64)
        } else {
            0.0
        };
    }
    let mut edges: BTreeMap<String, EdgeStats> = BTreeMap::new();
    let mut attempts_to: BTreeMap<String, u64> = BTreeMap::new();
    for (owner, counters) in &snapshots {
        for (k, &v) in counters {
            let Some((callee, what)) = counter_parts(k, "outbound.svc.") else {
                continue;
            };
            let e = edges.entry(format!("{owner}->{callee}")).or_default();
            match what {
                "requests" => e.requests += v,
                "attempts" => {
                    e.attempts += v;
                    *attempts_to.entry(callee.to_string()).or_insert(0) += v;
                }
                "retries" => e.retries += v,
                "budget_exhausted" => e.budget_exhausted += v,
                "per_try_timeouts" => e.per_try_timeouts += v,
                "timeouts" => e.timeouts += v,
                "circuit_open" => e.circuit_open += v,
                "retry_overflow" => e.retry_overflow += v,
                "unsent" => e.unsent += v,
                "failures" => e.failures += v,
                _ => {
                    if let Some(outcome) = what.strip_prefix("attempt_") {
                        *e.attempt_outcomes.entry(outcome.to_string()).or_insert(0) += v;
                    }
                }
            }
        }
    }
    // Per-second requests and attempts per edge, and the storms in them.
    let mut per_sec: BTreeMap<String, BTreeMap<u64, (u64, u64, u64)>> = BTreeMap::new();
    for sc in &world.sidecars {
        let owner = &sc.owner;
        for (k, series) in sc.proxy.stats().series() {
            let Some((callee, what)) = counter_parts(&k, "outbound.svc.") else {
                continue;
            };
            let edge = per_sec.entry(format!("{owner}->{callee}")).or_default();
            for (sec, n) in series {
                let b = edge.entry(sec).or_insert((0, 0, 0));
                match what {
                    "requests" => b.0 += n,
                    "attempts" => b.1 += n,
                    "failures" => b.2 += n,
                    _ => {}
                }
            }
        }
    }
    let threshold = loaded.scenario.report.storm_threshold;
    let mut storms = Vec::new();
    let mut edge_timeline = BTreeMap::new();
    for (edge, secs) in per_sec {
        let buckets: Vec<EdgeBucket> = secs
            .into_iter()
            .map(|(t_s, (requests, attempts, failures))| EdgeBucket {
                t_s,
                requests,
                attempts,
                amplification: ratio(attempts, requests),
                failures,
                error_ratio: ratio(failures, requests),
            })
            .collect();
        let mut open: Option<Storm> = None;
        for b in &buckets {
            let stormy = b.requests > 0 && b.amplification > threshold;
            match (&mut open, stormy) {
                (Some(s), true) if s.end_s == b.t_s => {
                    s.end_s = b.t_s + 1;
                    s.peak_amplification = s.peak_amplification.max(b.amplification);
                }
                (_, true) => {
                    storms.extend(open.take());
                    open = Some(Storm {
                        edge: edge.clone(),
                        start_s: b.t_s,
                        end_s: b.t_s + 1,
                        peak_amplification: b.amplification,
                    });
                }
                (_, false) => storms.extend(open.take()),
            }
        }
        storms.extend(open);
        edge_timeline.insert(edge, buckets);
    }
    storms.sort_by(|a, b| (a.start_s, &a.edge).cmp(&(b.start_s, &b.edge)));
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
                for (k, &v) in snapshot {
                    // Per-destination counters are reported per edge; keep the totals readable.
                    if !k.starts_with("outbound.svc.") {
                        *counters.entry(k.clone()).or_insert(0) += v;
                    }
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
        telemetry.metrics.insert(key, sc.proxy.metrics_text());
        telemetry
            .spans
            .extend(sc.proxy.spans().into_iter().map(|span| HostSpan {
                host: sc.host.clone(),
                owner: sc.owner.clone(),
                span,
            }));
    }
    if let Some(lines) = &world.access_log {
        telemetry.access_log =
            std::mem::take(&mut *lines.lock().unwrap_or_else(|p| p.into_inner()));
    }
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
        },
        slowest_traces: crate::telemetry::slowest_traces(
            &telemetry.spans,
            crate::telemetry::REPORTED_TRACES,
        ),
    };
    (stats, telemetry)
}

/// `n / d` to four places; 0 when `d` is 0.
fn ratio(n: u64, d: u64) -> f64 {
    if d > 0 {
        round4(n as f64 / d as f64)
    } else {
        0.0
    }
}

/// `outbound.svc.db.attempts` with prefix `outbound.svc.` → (`db`, `attempts`).
fn counter_parts<'a>(key: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    key.strip_prefix(prefix)?.rsplit_once('.')
}

/// Rounded to four decimals, so ratios print the same everywhere.
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn apply(
    world: &mut World<'_>,
    fabric: &mut Fabric,
    guard: &turmoil_net::EnterGuard,
    rule_ids: &mut BTreeMap<usize, Vec<u64>>,
    ev: Event,
) {
    let faults = &world.loaded.scenario.faults;
    let (k, start) = match ev {
        Event::Start(k) => (k, true),
        Event::End(k) => (k, false),
    };
    match faults[k].get_ref() {
        FaultSpec::Latency {
            between,
            delay,
            jitter,
            one_way,
            ..
        } => {
            if start {
                let kind = RuleKind::Latency {
                    delay_us: delay.as_us(),
                    jitter_us: jitter.as_us(),
                };
                rule_ids.insert(k, fabric.add_rule(kind, &between[0], &between[1], *one_way));
            } else {
                for id in rule_ids.remove(&k).unwrap_or_default() {
                    fabric.remove_rule(id, guard);
                }
            }
        }
        FaultSpec::Partition {
            between, one_way, ..
        }
        | FaultSpec::Hold {
            between, one_way, ..
        } => {
            let kind = if matches!(faults[k].get_ref(), FaultSpec::Hold { .. }) {
                RuleKind::Hold
            } else {
                RuleKind::Partition
            };
            if start {
                rule_ids.insert(k, fabric.add_rule(kind, &between[0], &between[1], *one_way));
            } else {
                for id in rule_ids.remove(&k).unwrap_or_default() {
                    fabric.remove_rule(id, guard);
                }
            }
        }
        FaultSpec::Crash { pod, .. } => {
            let Some(p) = world.pods.iter().position(|x| &x.name == pod) else {
                return;
            };
            let index = world.pods[p].index;
            if start {
                fabric.set_crashed(index, true);
                world.crash_pod(index);
            } else {
                fabric.set_crashed(index, false);
                world.start_pod(p);
            }
        }
        FaultSpec::Slow {
            service,
            pod,
            extra,
            ..
        } => {
            let key = pod.clone().unwrap_or_else(|| service.clone());
            let mut m = world.modes.lock().unwrap_or_else(|p| p.into_inner());
            if start {
                m.slow_us.insert(key, extra.as_us());
            } else {
                m.slow_us.remove(&key);
            }
        }
        FaultSpec::Errors {
            service, pod, rate, ..
        } => {
            let key = pod.clone().unwrap_or_else(|| service.clone());
            let mut m = world.modes.lock().unwrap_or_else(|p| p.into_inner());
            if start {
                m.errors.insert(key, *rate);
            } else {
                m.errors.remove(&key);
            }
        }
    }
}
