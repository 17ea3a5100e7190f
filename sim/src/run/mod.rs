//! One simulated run, start to finish: build the hosts from the scenario, start every pod (app, and
//! sidecar when meshed), the clients and the fault time line, step simulated time until every
//! request has an outcome, and hand back the measurements.
//!
//! All of it runs on one thread: a current-thread tokio runtime with a paused clock and a seeded
//! RNG (`--cfg tokio_unstable`), one `LocalSet` for every host's tasks, and a director that owns the
//! fabric and steps time with [`crate::time::Stepper`]; fault events and progress happen on
//! millisecond boundaries. Nothing reads the wall clock; every random draw comes from a stream derived from the
//! seed and a stable label (`pod:db-0`, `client:3`, `fabric`).
//!
//! # Layout
//! In the order a run goes: this file builds the topology (hosts, registry, clients) and runs
//! the director loop; `world` starts, crashes and restarts pods and their sidecars; `faults`
//! turns the fault time line into events and applies them; `harvest` reads the measurements
//! out once the run is over, with `storms` finding retry storms in the per-second series.

mod control;
mod faults;
mod harvest;
mod identity;
mod panics;
mod spans;
mod storms;
mod world;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use mesh_core::net::Network;
use mesh_core::registry::{Endpoint, Protocol, Registry, ServiceEntry};
use reports::RunStats;
use turmoil_net::Net;

use crate::collect::Collector;
use crate::derive_seed;
use crate::model::{APP_PORT, Modes, pod_rng};
use crate::scenario::{LoadModel, Loaded};
use crate::substrate::{Fabric, HostInfo, SimNet};
use crate::telemetry::Telemetry;
use crate::workload::{Clock, Generator};

use faults::{Event, apply};
use harvest::harvest;
use world::{INBOUND_PORT, Pod, World, ip_of};

/// One pass of a scenario.
#[derive(Clone, Copy, Debug)]
pub struct Pass {
    /// The run's seed.
    pub seed: u64,
    /// With sidecars (else apps call each other directly: the baseline).
    pub mesh: bool,
    /// Keep every sidecar's access-log lines.
    pub access_log: bool,
}

/// What one pass produced.
#[derive(Debug)]
pub struct Simulated {
    /// The measurements.
    pub stats: RunStats,
    /// What the sidecars recorded about themselves.
    pub telemetry: Telemetry,
    /// The fabric's delivery digest per simulated second ([`crate::fabric::Fabric::digests`]).
    pub digests: Vec<u64>,
    /// Panics raised during the pass ([`panics`]): any means the pass is not to be trusted.
    pub panics: Vec<String>,
}

/// Run the scenario once as `pass` says, handing back the measurements, what the sidecars
/// recorded about themselves (metrics, spans, access-log lines when asked for) and the delivery
/// digests. `progress` hears (now, end of sending) in ms about once per simulated second.
pub fn simulate(loaded: &Loaded, pass: &Pass, progress: &mut dyn FnMut(u64, u64)) -> Simulated {
    let rt = crate::substrate::runtime(derive_seed(pass.seed, "tokio"));
    let (mut out, panics) = panics::catching(|| {
        rt.block_on(simulate_inner(
            loaded,
            pass.seed,
            pass.mesh,
            pass.access_log,
            progress,
        ))
    });
    out.panics = panics;
    out
}

async fn simulate_inner(
    loaded: &Loaded,
    seed: u64,
    mesh: bool,
    access_log: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Simulated {
    let s = &loaded.scenario;
    let mut net = Net::with_config(crate::substrate::kernel_config());
    let mut infos = Vec::new();
    let mut pods = Vec::new();
    let mut registry = Registry::new();
    let mut direct = BTreeMap::new();
    // Each service's sidecar inbound ports: where a caller without a sidecar lands.
    let mut inbound = BTreeMap::new();
    // Pods that exist only once a scale fault asks for them: hosts from the start, never
    // started or listed until then.
    let mut dormant = std::collections::BTreeSet::new();
    for (si, svc) in s.services.iter().enumerate() {
        let mut endpoints = Vec::new();
        let mut addrs = Vec::new();
        let most = s
            .faults
            .iter()
            .filter_map(|f| f.get_ref().scales_to(svc.name.get_ref()))
            .max()
            .unwrap_or(0);
        let base = svc.replicas;
        let extra = (base..most).map(|r| {
            let name = format!("{}-{r}", svc.name.get_ref());
            (
                name,
                svc.version.clone(),
                svc.latency.clone(),
                svc.error_rate,
            )
        });
        let declared = svc.pods();
        // Base pods and scaled ones have an ordinal; subsets' pods sit between them.
        let subsets = declared.len() - base as usize;
        for (r, (name, version, latency, error_rate)) in
            declared.into_iter().chain(extra).enumerate()
        {
            let ordinal = match r {
                r if r < base as usize => Some(r as u32),
                r if r < base as usize + subsets => None,
                r => Some((r - subsets) as u32),
            };
            let index = infos.len();
            let ip = ip_of(index);
            let zone = svc.zones[ordinal.map_or(r, |o| o as usize) % svc.zones.len()].clone();
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
                // Each service runs as its own service account, as the report's access logs
                // already name it; authorization policies match callers by it.
                identity: mesh_core::identity::SpiffeId::workload(
                    "cluster.local",
                    "default",
                    svc.name.get_ref(),
                )
                .ok(),
            });
            if ordinal.is_some_and(|o| o >= base) {
                dormant.insert(index);
            } else {
                addrs.push(SocketAddr::new(ip, APP_PORT));
            }
            pods.push(Pod {
                service: si,
                name,
                host,
                index,
                latency,
                error_rate,
                ordinal,
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
        // Callers without a sidecar keep this list for the run: they never learn of a scale.
        let unborn = dormant_names(&pods, &dormant);
        inbound.insert(
            svc.name.get_ref().clone(),
            (
                registry
                    .get(svc.name.get_ref())
                    .map(|e| {
                        e.endpoints
                            .iter()
                            .filter(|e| !unborn.contains(&e.pod))
                            .map(|e| e.addr)
                            .collect()
                    })
                    .unwrap_or_default(),
                Protocol::Http1,
            ),
        );
    }
    // The control plane's host: present in the topology (and in its cost) from the start; the
    // control-plane issue gives it work.
    let cp_ip = ip_of(infos.len());
    let cp_host = net.add_host(cp_ip);
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
    // Whose workload each host runs: its service (`clients` for the load generators).
    let infos_owner: BTreeMap<String, String> = infos
        .iter()
        .filter(|h| h.group != "control-plane")
        .map(|h| (h.name.clone(), h.group.clone()))
        .collect();
    let guard = net.enter();
    let mut fabric = Fabric::new(
        infos,
        s.network.latency.as_us(),
        s.network.cross_zone_latency.as_us(),
        derive_seed(seed, "fabric"),
    );

    let mut stepper = crate::time::Stepper::install();
    let clock = Clock::at(stepper.epoch());
    let routes: Vec<String> = s.workload.routes.iter().map(|r| r.label()).collect();
    let dispatched = Arc::new(Mutex::new(crate::collect::Dispatched::new(routes.len())));
    let collector = Arc::new(Mutex::new(Collector::new(
        routes,
        s.workload.warmup.as_ms(),
    )));
    // The mesh's configuration, published once; the sender stays with the world, where the
    // control plane will publish the next versions.
    let policies = mesh_core::policy::Policies {
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
    };
    // The control plane starts from the pods that exist: not the dormant ones.
    let listed = registry.without_pods(&dormant_names(&pods, &dormant));
    let plane = s.control_plane.clone().filter(|_| mesh).map(|spec| {
        control::Plane::new(spec, seed, cp_host, cp_ip, clock, listed, policies.clone())
    });
    let mut identities = s
        .mtls
        .clone()
        .filter(|_| mesh)
        .map(|spec| identity::Identities::new(spec, seed, clock.epoch()));
    let (config_tx, _) = mesh_core::config::channel(registry, &policies);
    let mut world = World {
        loaded,
        seed,
        mesh,
        pods,
        direct: Arc::new(direct),
        modes: Arc::new(Mutex::new(Modes::default())),
        clock,
        sidecars: Vec::new(),
        host_names,
        access_log: access_log.then(Arc::default),
        spans: spans::SpanStore::new(
            crate::telemetry::EXPORTED_TRACES.max(crate::telemetry::REPORTED_TRACES),
        ),
        config: config_tx.subscribe(),
        _config_tx: config_tx,
        hop_costs: BTreeMap::new(),
        tallies: s
            .services
            .iter()
            .map(|_| {
                Arc::new(Mutex::new(crate::queueing::Tally::since(
                    s.workload.warmup.as_us(),
                )))
            })
            .collect(),
        hosts_net: BTreeMap::new(),
        incarnation: BTreeMap::new(),
        plane: plane.map(|mut p| {
            if let Some(ids) = identities.as_mut() {
                // The CA knows each node by name: a pod runs as its service, a client host as
                // `clients`.
                let owners: BTreeMap<String, String> = infos_owner.clone();
                p.set_ca(ids.ca_service(Arc::new(move |node: &str| {
                    owners.get(node).and_then(|o| identity::identity_of(o))
                })));
            }
            p
        }),
        identities,
        started: 0,
        mtls_modes: BTreeMap::new(),
        booted: false,
        down: std::collections::BTreeSet::new(),
        unready: std::collections::BTreeSet::new(),
        scaled_out: dormant,
        terminating: BTreeMap::new(),
    };

    let set = tokio::task::LocalSet::new();
    let spec = Arc::new(s.workload.clone());
    let inbound = Arc::new(inbound);
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
    // The control plane's sync states: every 100 ms, fine enough to show a debounce and a
    // push storm; every second in runs longer than a minute, to keep the report small.
    let sample_ms = if send_end_ms <= 60_000 { 100 } else { 1000 };
    let hard_end_ms = send_end_ms + s.workload.timeout.as_ms() + 1_000;
    let director = async {
        if let Some(plane) = world.plane.as_mut() {
            plane.start();
        }
        for p in 0..world.pods.len() {
            let index = world.pods[p].index;
            if world.scaled_out.contains(&index) {
                // Not started until a scale asks for it.
                world.down.insert(index);
            } else {
                world.start_pod(p);
            }
        }
        for (c, (host_index, host)) in clients.iter().enumerate() {
            let net = SimNet::new(*host);
            // The first `plaintext_clients` run without a sidecar and call the target pods'
            // inbound ports directly.
            let bare = mesh && (c as u32) < spec.plaintext_clients;
            if mesh && !bare {
                world.sidecar(&net, *host_index, Protocol::Http1, "clients");
            }
            let caller = if bare {
                crate::model::Caller::new(
                    net.clone(),
                    crate::model::Route::Direct {
                        endpoints: inbound.clone(),
                        cursors: Mutex::new(BTreeMap::new()),
                    },
                )
            } else {
                world.caller(&net, Protocol::Http1)
            };
            let generator = Generator {
                net: net.clone(),
                caller: Arc::new(caller),
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
        world.booted = true;
        let mut rule_ids: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
        let mut now_ms;
        loop {
            let now_us = stepper.step(&mut fabric, &guard).await;
            if !now_us.is_multiple_of(1000) {
                continue;
            }
            now_ms = now_us / 1000;
            while events.front().is_some_and(|(t, _, _)| *t <= now_ms) {
                let (_, _, ev) = events.pop_front().expect("checked non-empty");
                apply(&mut world, &mut fabric, &guard, &mut rule_ids, ev);
            }
            let ready = world
                .plane
                .as_ref()
                .map(|p| p.take_ready())
                .unwrap_or_default();
            for host in ready {
                world.pod_ready(&host);
            }
            if now_ms.is_multiple_of(1000) {
                progress(now_ms, send_end_ms);
            }
            if now_ms.is_multiple_of(sample_ms) && world.plane.is_some() {
                let down = world.down_hosts();
                if let Some(plane) = world.plane.as_mut() {
                    plane.sample(now_ms, &down);
                }
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
    let digests = fabric.digests();
    drop(guard);

    let finished = Arc::try_unwrap(collector)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_else(|_| {
            unreachable!("every task holding the collector was dropped with the LocalSet")
        })
        .finish(&dispatched.lock().unwrap_or_else(|p| p.into_inner()));
    let (stats, telemetry) = harvest(loaded, mesh, &world, finished, fstats, sim_time_ms);
    Simulated {
        stats,
        telemetry,
        digests,
        panics: Vec::new(),
    }
}

/// The names of the pods at `dormant` host indexes.
fn dormant_names(
    pods: &[Pod],
    dormant: &std::collections::BTreeSet<usize>,
) -> std::collections::BTreeSet<String> {
    pods.iter()
        .filter(|p| dormant.contains(&p.index))
        .map(|p| p.name.clone())
        .collect()
}
