//! The world of one run: its pods and sidecars, the shared registry and policies, and how a
//! pod (app, and sidecar when meshed) is started, crashed and restarted.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_core::net::Network;
use mesh_core::proxy::{Proxy, ProxyConfig};
use mesh_core::registry::Protocol;
use mesh_core::server::serve_http;
use turmoil_net::HostId;

use crate::cost::SimHopCost;
use crate::derive_seed;
use crate::model::{APP_PORT, App, Caller, Modes, Route, pod_rng};
use crate::scenario::Loaded;
use crate::substrate::SimNet;
use crate::workload::Clock;

/// Ports of the sidecar, as Istio numbers them.
pub(super) const OUTBOUND_PORT: u16 = 15001;
pub(super) const INBOUND_PORT: u16 = 15006;

pub(super) fn ip_of(index: usize) -> IpAddr {
    // 10.0.0.2 onwards; one address per host.
    IpAddr::V4(Ipv4Addr::from(0x0a00_0002u32 + index as u32))
}

/// A sidecar of the run: whose it is (a service, or `clients`), its host, and the proxy.
pub(super) struct Sidecar {
    pub(super) owner: String,
    pub(super) host: String,
    proxy: Remains,
    /// When its host died (crash or scale down), if it has.
    died: Option<tokio::time::Instant>,
    /// Its TLS settings, with `[mtls]` (where its mode is changed).
    pub(super) tls: Option<mesh_core::tls::MeshTls>,
}

/// The proxy while it may still change; once its host is dead and its tasks are gone, only
/// what the report reads of it. A dead proxy's connection pools and channels would otherwise
/// stay allocated until the run ends: ~300 KB for each pod a scale stopped, which a soak with
/// a scale every few minutes keeps adding.
enum Remains {
    Live(Arc<Proxy<SimNet>>),
    Dead(Box<Final>),
}

/// What the report reads of a proxy, read once its host is dead.
struct Final {
    health: Vec<mesh_core::balance::HealthEvent>,
    breakers: Vec<mesh_core::breaker::BreakerEvent>,
    counters: mesh_core::proxy::Counters,
    metrics: String,
}

impl Sidecar {
    pub(super) fn health_events(&self) -> Vec<mesh_core::balance::HealthEvent> {
        match &self.proxy {
            Remains::Live(p) => p.health_events(),
            Remains::Dead(f) => f.health.clone(),
        }
    }

    pub(super) fn breaker_events(&self) -> Vec<mesh_core::breaker::BreakerEvent> {
        match &self.proxy {
            Remains::Live(p) => p.breaker_events(),
            Remains::Dead(f) => f.breakers.clone(),
        }
    }

    pub(super) fn counters(&self) -> mesh_core::proxy::Counters {
        match &self.proxy {
            Remains::Live(p) => p.stats().snapshot(),
            Remains::Dead(f) => f.counters.clone(),
        }
    }

    pub(super) fn metrics_text(&self) -> String {
        match &self.proxy {
            Remains::Live(p) => p.metrics_text(),
            Remains::Dead(f) => f.metrics.clone(),
        }
    }

    /// Read what the report needs and let the proxy go, if its host died before `now`: by
    /// then the runtime has dropped every task the death aborted (simulated time advances
    /// only when no task is ready), so nothing it recorded can change any more.
    fn release_if_dead(&mut self, now: tokio::time::Instant) {
        let (Some(died), Remains::Live(p)) = (self.died, &self.proxy) else {
            return;
        };
        if died >= now {
            return;
        }
        let last = Final {
            health: p.health_events(),
            breakers: p.breaker_events(),
            counters: p.stats().snapshot(),
            metrics: p.metrics_text(),
        };
        self.proxy = Remains::Dead(Box::new(last));
    }
}

#[derive(Clone)]
pub(super) struct Pod {
    pub(super) service: usize,
    pub(super) name: String,
    pub(super) host: HostId,
    pub(super) index: usize,
    pub(super) latency: crate::scenario::LatencySpec,
    pub(super) error_rate: f64,
    /// Its place among the service's base replicas (`<service>-<n>`), which scaling counts;
    /// `None` for a subset's pod.
    pub(super) ordinal: Option<u32>,
}

pub(super) struct World<'a> {
    pub(super) loaded: &'a Loaded,
    pub(super) seed: u64,
    pub(super) mesh: bool,
    pub(super) pods: Vec<Pod>,
    /// Publishes the mesh's configuration: one version today; the control plane will publish
    /// the next on it (held so the channel stays open).
    pub(super) _config_tx: mesh_core::config::ConfigTx,
    /// What every sidecar reads it from.
    pub(super) config: mesh_core::config::ConfigRx,
    pub(super) direct: Arc<BTreeMap<String, (Vec<SocketAddr>, Protocol)>>,
    pub(super) modes: Arc<Mutex<Modes>>,
    pub(super) clock: Clock,
    pub(super) sidecars: Vec<Sidecar>,
    pub(super) hop_costs: BTreeMap<usize, SimHopCost>,
    /// Each service's queueing tally, by service index.
    pub(super) tallies: Vec<crate::queueing::Shared>,
    pub(super) hosts_net: BTreeMap<usize, SimNet>,
    pub(super) incarnation: BTreeMap<usize, u64>,
    pub(super) host_names: Vec<String>,
    /// Access-log lines of every sidecar, when the run keeps them.
    pub(super) access_log: Option<Arc<Mutex<Vec<String>>>>,
    /// The spans of the traces the report can show, from every sidecar.
    pub(super) spans: Arc<super::spans::SpanStore>,
    /// The control plane, when `[control_plane]` puts one in charge.
    pub(super) plane: Option<super::control::Plane>,
    /// Whether the run's first instant is over: sidecars started later (restarted or scaled-up
    /// pods) take their configuration from the control plane, not a bootstrap.
    pub(super) booted: bool,
    /// Host indexes that are down now.
    pub(super) down: std::collections::BTreeSet<usize>,
    /// Host indexes of restarted or scaled-up pods whose sidecar waits for its first
    /// configuration: not ready, so not yet listed as endpoints.
    pub(super) unready: std::collections::BTreeSet<usize>,
    /// Workload certificates, with `[mtls]`.
    pub(super) identities: Option<super::identity::Identities>,
    /// Sidecars started so far (each subscription and agent draws its own jitter stream).
    pub(super) started: u64,
    /// PeerAuthentication modes changed during the run, by service (others have `[mtls]`'s).
    pub(super) mtls_modes: BTreeMap<String, mesh_core::tls::Mode>,
    /// Host indexes of pods not running because of the replica count (never started, or
    /// stopped by a scale down).
    pub(super) scaled_out: std::collections::BTreeSet<usize>,
    /// Pods a scale down took off the list, still running until their drain ends: host index
    /// to the scale fault (its index in the time line) whose drain that is.
    pub(super) terminating: BTreeMap<usize, usize>,
}

impl World<'_> {
    pub(super) fn sidecar(
        &mut self,
        net: &SimNet,
        host_index: usize,
        app_protocol: Protocol,
        owner: &str,
    ) {
        let m = &self.loaded.scenario.mesh;
        let cost = self
            .hop_costs
            .entry(host_index)
            .or_insert_with(|| {
                SimHopCost::new(
                    self.loaded.cost.for_protocol(m.protocol).clone(),
                    m.proxy_workers,
                    derive_seed(self.seed, &format!("proxy-cost:{host_index}")),
                )
            })
            .clone();
        let request_timeout = (m.request_timeout.0 > Duration::ZERO).then_some(m.request_timeout.0);
        let services = &self.loaded.scenario.services;
        let own = services.iter().position(|s| s.name.get_ref() == owner);
        let own_policy = own.and_then(|i| self.loaded.scenario.effective_policy(i));
        let own_authz = own
            .map(|i| services[i].authorization.clone())
            .unwrap_or_default();
        let own_l4 = own
            .map(|i| services[i].network_policy.clone())
            .unwrap_or_default();
        let host = self.hosts_name(host_index);
        self.started += 1;
        // With [mtls], real handshakes and identities from certificates; without, the registry
        // names each peer by address.
        let tls = self
            .identities
            .as_ref()
            .map(|ids| ids.settings(&host, owner, !self.booted));
        if let (Some((t, _)), Some(spec)) = (&tls, &self.loaded.scenario.mtls) {
            t.set_mode(self.mtls_modes.get(owner).copied().unwrap_or(spec.mode));
        }
        let cfg = ProxyConfig {
            authorization: own_authz,
            custom_authorizer: None,
            identity_by_address: tls.is_none(),
            network_policies: own_l4,
            limits: Default::default(),
            outbound_addr: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), OUTBOUND_PORT),
            inbound_addr: SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), INBOUND_PORT),
            app_addr: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), APP_PORT),
            app_protocol,
            connect_timeout: m.connect_timeout.0,
            request_timeout,
            seed: derive_seed(self.seed, &format!("proxy:{host_index}")),
            stats_epoch: Some(self.clock.epoch()),
            tls: tls.as_ref().map(|(t, _)| t.clone()),
            admin_addr: None,
            telemetry: mesh_core::telemetry::TelemetryConfig {
                service: owner.to_string(),
                identity: Some(format!("spiffe://cluster.local/ns/default/sa/{owner}")),
                record_spans: true,
                span_sink: Some(self.spans.sink(self.sidecars.len())),
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
                        true
                    }))
                }),
            },
            inbound_rate_limit: own_policy
                .as_ref()
                .and_then(|p| p.rate_limit.as_ref())
                .map(|r| r.to_limit()),
            inbound_route_limits: own_policy.map(|p| p.route_limits()).unwrap_or_default(),
        };
        let config = match self.plane.as_mut() {
            Some(plane) => plane.subscribe(net, &host, !self.booted, tls.is_some(), self.started),
            None => self.config.clone(),
        };
        if let (Some(ids), Some(plane), Some((t, validity))) = (&self.identities, &self.plane, &tls)
        {
            // A bootstrapped certificate is renewed on schedule; a placeholder at once.
            let current = (!self.booted).then_some(*validity);
            ids.agent(
                net,
                plane.addr(),
                &host,
                owner,
                t.clone(),
                current,
                plane.certificate_hook(&host),
                self.started,
            );
        }
        let proxy = Proxy::new(net.clone(), cfg, config, Some(Arc::new(cost)));
        self.sidecars.push(Sidecar {
            owner: owner.to_string(),
            host,
            proxy: Remains::Live(proxy.clone()),
            died: None,
            tls: tls.as_ref().map(|(t, _)| t.clone()),
        });
        net.spawn(async move {
            // A bind failure would be a harness bug (ports are ours); the proxy then is simply absent
            // and its callers see connect failures, which the report shows.
            let _ = proxy.run().await;
        });
    }

    /// The names of the hosts that are down now.
    pub(super) fn down_hosts(&self) -> std::collections::BTreeSet<String> {
        self.down.iter().map(|i| self.hosts_name(*i)).collect()
    }

    pub(super) fn hosts_name(&self, index: usize) -> String {
        self.host_names.get(index).cloned().unwrap_or_default()
    }

    pub(super) fn caller(&self, net: &SimNet, protocol: Protocol) -> Caller {
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
    pub(super) fn start_pod(&mut self, p: usize) {
        let pod = self.pods[p].clone();
        let spec = &self.loaded.scenario.services[pod.service];
        let net = SimNet::new(pod.host);
        self.hosts_net.insert(pod.index, net.clone());
        let inc = self.incarnation.entry(pod.index).or_insert(0);
        *inc += 1;
        // A restarted pod, or one a scale added after the start, joins a running mesh.
        let joining = *inc > 1 || self.booted;
        self.down.remove(&pod.index);
        let rng = pod_rng(self.seed, &format!("pod:{}:{}", pod.name, inc));
        if joining {
            if self.plane.is_some() && self.mesh {
                // Ready once its sidecar has its configuration ([`World::pod_ready`]).
                self.unready.insert(pod.index);
            } else {
                self.endpoints_changed(&format!("{} restarted", pod.name));
            }
        }
        let app = Arc::new(App {
            service: spec.name.get_ref().clone(),
            pod: pod.name.clone(),
            latency: pod.latency.clone(),
            error_rate: pod.error_rate,
            calls: spec.calls.clone(),
            workers: Arc::new(tokio::sync::Semaphore::new(spec.workers as usize)),
            capacity: (spec.workers + spec.queue) as usize,
            admitted: Arc::default(),
            cancellation: spec.cancellation,
            tally: self.tallies[pod.service].clone(),
            rng: Mutex::new(rng),
            modes: self.modes.clone(),
            caller: self.caller(&net, spec.protocol),
            net: net.clone(),
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

    pub(super) fn crash_pod(&mut self, host_index: usize) {
        if let Some(net) = self.hosts_net.get(&host_index) {
            net.kill();
        }
        self.down.insert(host_index);
        let name = self.hosts_name(host_index);
        let now = tokio::time::Instant::now();
        for sc in &mut self.sidecars {
            sc.release_if_dead(now);
            if sc.host == name && sc.died.is_none() {
                sc.died = Some(now);
            }
        }
        self.endpoints_changed(&format!("{name} crashed"));
    }

    /// Tell the control plane (if any) which pods are listed now: each service's endpoints are
    /// its pods in their first order, less those that are down, not ready yet (a sidecar
    /// waiting for its configuration), draining after a scale down, or scaled out (Kubernetes
    /// lists only ready pods; readiness probes are not modelled).
    fn endpoints_changed(&mut self, what: &str) {
        if self.plane.is_none() {
            return;
        }
        let original = self.config.borrow().registry.clone();
        let down = self.down_hosts();
        let unlisted: std::collections::BTreeSet<String> = self
            .down
            .iter()
            .chain(&self.unready)
            .chain(self.terminating.keys())
            .chain(&self.scaled_out)
            .map(|i| self.hosts_name(*i))
            .collect();
        let Some(plane) = self.plane.as_mut() else {
            return;
        };
        plane.change(
            what.to_string(),
            mesh_core::control::ResourceType::Endpoints,
            &down,
            |registry, _| *registry = original.without_pods(&unlisted),
        );
    }

    /// Scale `service` to `replicas` (fault `fault` of the time line): start the scaled-out pods
    /// below it (each listed once ready), take the running ones at or above it off the list
    /// (to stop when this fault's drain ends). Returns the pods to start.
    pub(super) fn scale(&mut self, service: &str, replicas: u32, fault: usize) -> Vec<usize> {
        let Some(si) = self
            .loaded
            .scenario
            .services
            .iter()
            .position(|s| s.name.get_ref() == service)
        else {
            return Vec::new();
        };
        let mut start = Vec::new();
        let mut relisted = false;
        let mut unlisted = false;
        for (p, pod) in self.pods.iter().enumerate() {
            let Some(ordinal) = pod.ordinal.filter(|_| pod.service == si) else {
                continue;
            };
            if ordinal < replicas {
                if self.terminating.remove(&pod.index).is_some() {
                    relisted = true;
                } else if self.scaled_out.contains(&pod.index) {
                    start.push(p);
                }
            } else if !self.scaled_out.contains(&pod.index)
                && !self.terminating.contains_key(&pod.index)
            {
                self.terminating.insert(pod.index, fault);
                unlisted = true;
            }
        }
        if relisted || unlisted {
            self.endpoints_changed(&format!("{service} scaled to {replicas}"));
        }
        start
    }

    /// The pods whose drain under scale fault `fault` is over: stop them (returns their host
    /// indexes). Pods another scale took off the list keep their own drain.
    pub(super) fn drained(&mut self, fault: usize) -> Vec<usize> {
        let owned: Vec<usize> = self
            .terminating
            .iter()
            .filter(|(_, f)| **f == fault)
            .map(|(i, _)| *i)
            .collect();
        for i in &owned {
            self.terminating.remove(i);
            self.scaled_out.insert(*i);
            self.crash_pod(*i);
        }
        owned
    }

    /// A restarted pod's sidecar has its configuration: the pod is ready, and listed again.
    pub(super) fn pod_ready(&mut self, host: &str) {
        let Some(index) = self.host_names.iter().position(|h| h == host) else {
            return;
        };
        if self.unready.remove(&index) {
            self.endpoints_changed(&format!("{host} ready"));
        }
    }

    /// Give the control plane a new policy for calls to `service` (laid over the preset).
    pub(super) fn set_policy(&mut self, service: &str, spec: &crate::scenario::PolicySpec) {
        let preset = self
            .loaded
            .scenario
            .mesh
            .preset
            .map(crate::scenario::Preset::policy);
        let policy = match preset {
            Some(p) => spec.over(&p),
            None => spec.clone(),
        }
        .to_policy();
        let down = self.down_hosts();
        let Some(plane) = self.plane.as_mut() else {
            return;
        };
        let service = service.to_string();
        plane.change(
            format!("policy for {service}"),
            mesh_core::control::ResourceType::Policies,
            &down,
            move |_, policies| {
                policies.services.insert(service, policy);
            },
        );
    }

    /// `service`'s sidecars accept what `mode` says, from now on (and when they restart).
    pub(super) fn set_mtls_mode(&mut self, service: &str, mode: mesh_core::tls::Mode) {
        self.mtls_modes.insert(service.to_string(), mode);
        for sc in self.sidecars.iter().filter(|sc| sc.owner == service) {
            if let Some(t) = &sc.tls {
                t.set_mode(mode);
            }
        }
    }

    /// One step of a root rotation: the CA's, then every sidecar's trust bundle.
    pub(super) fn rotate_root(&mut self, step: crate::fault::RootStep) {
        let Some(ids) = self.identities.as_mut() else {
            return;
        };
        let bundle = ids.rotate_root(step);
        for t in self.sidecars.iter().filter_map(|sc| sc.tls.as_ref()) {
            t.set_roots(&bundle)
                .expect("a bundle of roots the run made loads");
        }
    }

    /// The control plane's host goes down (`down`) or comes back.
    pub(super) fn set_control_plane(&mut self, down: bool) {
        if let Some(plane) = self.plane.as_mut() {
            if down {
                plane.crash();
            } else {
                plane.start();
            }
        }
    }
}
