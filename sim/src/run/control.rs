//! The control plane of a run (`[control_plane]`): its process on the `control-plane` host,
//! the desired state it is fed (what the Kubernetes API would hold: the pods that are up, the
//! policies the scenario has applied so far), every sidecar's subscription, and the log of
//! what the proxies did with its pushes, from which the report's propagation figures come.
//!
//! The desired state lives here, not in the control plane: a pod crashing while the control
//! plane is down changes it all the same, and a restarted control plane starts from it, as
//! istiod re-lists the API server. Every change has a revision (Kubernetes'
//! `resourceVersion`); pushes carry the revision they were built from, so a proxy's applying
//! revision *r* or later means it has change *r*.
//!
//! Not here: the control plane and the subscriber themselves (`mesh_core::control`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use mesh_core::config::ConfigRx;
use mesh_core::control::{ControlPlane, Event, ResourceType, Subscriber, SyncState};
use mesh_core::net::Network;
use mesh_core::policy::Policies;
use mesh_core::registry::Registry;
use reports::{ControlPlaneStats, NackRecord, Propagation, SyncSample};
use turmoil_net::HostId;

use crate::derive_seed;
use crate::scenario::ControlPlaneSpec;
use crate::substrate::SimNet;
use crate::workload::Clock;

/// Istio's plaintext xDS port.
pub(super) const XDS_PORT: u16 = 15010;

/// One change of the desired state.
struct Change {
    at_ms: u64,
    what: String,
    kind: ResourceType,
    revision: u64,
    /// The proxies running when it happened: those it should reach.
    up: Vec<String>,
}

/// What the proxies did, as their subscribers reported it.
#[derive(Default)]
struct Log {
    /// (proxy, type) → (ms, revision) of every push applied whole.
    applied: BTreeMap<(String, ResourceType), Vec<(u64, u64)>>,
    /// (type, version, error) → (first ms, proxies).
    refused: BTreeMap<(ResourceType, u64, String), (u64, u64)>,
    /// (proxy, type) → (ms, revision) of every push refused.
    refusals: BTreeMap<(String, ResourceType), Vec<(u64, u64)>>,
    disconnects: u64,
}

/// The run's control plane and everything around it.
pub(super) struct Plane {
    spec: ControlPlaneSpec,
    seed: u64,
    host: HostId,
    addr: SocketAddr,
    clock: Clock,
    registry: Registry,
    policies: Policies,
    revision: u64,
    changes: Vec<Change>,
    running: Option<(Arc<ControlPlane>, SimNet)>,
    lives: u64,
    /// The next version a (re)started control plane publishes.
    next_version: u64,
    /// Pushes of control planes that have died.
    past_pushes: u64,
    log: Arc<Mutex<Log>>,
    states: Vec<SyncSample>,
    /// Every sidecar that subscribed, by node name.
    nodes: BTreeSet<String>,
    /// Restarted sidecars that have just received their whole configuration (and certificate,
    /// with `[mtls]`), in order: their pods become ready (Istio's sidecar readiness waits for
    /// the first push).
    ready: Arc<Mutex<Vec<String>>>,
    /// What each restarted sidecar still waits for before it is ready.
    waiting: Arc<Mutex<BTreeMap<String, BTreeSet<&'static str>>>>,
    /// The CA every life of the control plane serves, with `[mtls]`.
    ca: Option<Arc<mesh_core::control::ca::CaService>>,
}

/// Mark `what` arrived for `node`; when it was the last thing it waited for, it is ready.
fn arrived(
    waiting: &Mutex<BTreeMap<String, BTreeSet<&'static str>>>,
    ready: &Mutex<Vec<String>>,
    node: &str,
    what: &'static str,
) {
    let mut w = waiting.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(missing) = w.get_mut(node)
        && missing.remove(what)
        && missing.is_empty()
    {
        w.remove(node);
        ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(node.to_string());
    }
}

impl Plane {
    pub(super) fn new(
        spec: ControlPlaneSpec,
        seed: u64,
        host: HostId,
        ip: std::net::IpAddr,
        clock: Clock,
        registry: Registry,
        policies: Policies,
    ) -> Self {
        Self {
            spec,
            seed,
            host,
            addr: SocketAddr::new(ip, XDS_PORT),
            clock,
            registry,
            policies,
            revision: 1,
            changes: Vec::new(),
            running: None,
            lives: 0,
            next_version: 1,
            past_pushes: 0,
            log: Arc::default(),
            states: Vec::new(),
            nodes: BTreeSet::new(),
            ready: Arc::default(),
            waiting: Arc::default(),
            ca: None,
        }
    }

    /// Start the control plane process, from the desired state as it is now.
    pub(super) fn start(&mut self) {
        self.lives += 1;
        let settings = mesh_core::control::server::Settings {
            instance: derive_seed(self.seed, &format!("control-plane:{}", self.lives)),
            first_version: self.next_version,
            ..self.spec.server()
        };
        let cp = ControlPlane::new(
            settings,
            self.registry.clone(),
            self.policies.clone(),
            self.revision,
        );
        let net = SimNet::new(self.host);
        let serve_net = net.clone();
        let (serving, debouncing) = (cp.clone(), cp.clone());
        let addr = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), XDS_PORT);
        net.spawn(async move {
            // The port is ours; failing to bind would be a harness bug, and proxies would then
            // show as disconnected for the whole run.
            if let Ok(listener) = serve_net.bind(addr).await {
                serving.serve(serve_net, listener).await;
            }
        });
        net.spawn(debouncing.debounce());
        if let Some(ca) = &self.ca {
            cp.set_ca(ca.clone());
        }
        self.running = Some((cp, net));
    }

    /// The control plane process dies (its streams with it); the desired state stays.
    pub(super) fn crash(&mut self) {
        if let Some((cp, net)) = self.running.take() {
            let status = cp.status();
            self.past_pushes += status.pushes;
            let newest = status.versions.values().copied().max().unwrap_or(0);
            self.next_version = self.next_version.max(newest + 1);
            net.kill();
        }
    }

    /// Change the desired state; the control plane, if up, takes it in. `down` names the
    /// proxies not running now.
    pub(super) fn change(
        &mut self,
        what: String,
        kind: ResourceType,
        down: &BTreeSet<String>,
        f: impl FnOnce(&mut Registry, &mut Policies),
    ) {
        let (registry, policies) = (self.registry.clone(), self.policies.clone());
        f(&mut self.registry, &mut self.policies);
        if self.registry == registry && self.policies == policies {
            // Nothing to spread (a pod that was not listed crashed, a policy set to what it
            // was): no change to measure.
            return;
        }
        self.revision += 1;
        self.changes.push(Change {
            at_ms: self.clock.now_ms(),
            what,
            kind,
            revision: self.revision,
            up: self.nodes.difference(down).cloned().collect(),
        });
        if let Some((cp, _)) = &self.running {
            let (registry, policies) = (self.registry.clone(), self.policies.clone());
            cp.update(self.revision, move |r, p| {
                *r = registry;
                *p = policies;
            });
        }
    }

    /// Serve `ca` as the mesh's certificate authority, in this life and every later one.
    pub(super) fn set_ca(&mut self, ca: Arc<mesh_core::control::ca::CaService>) {
        if let Some((cp, _)) = &self.running {
            cp.set_ca(ca.clone());
        }
        self.ca = Some(ca);
    }

    /// Where the control plane (and its CA) listens.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What to call when `node`'s certificate arrives.
    pub(super) fn certificate_hook(&self, node: &str) -> Box<dyn Fn() + Send + Sync> {
        let (waiting, ready, node) = (self.waiting.clone(), self.ready.clone(), node.to_string());
        Box::new(move || arrived(&waiting, &ready, &node, "certificate"))
    }

    /// Subscribe the sidecar `node` on `net`. A sidecar of the run's first instant starts
    /// from the configuration the control plane has then (as if bootstrapped a moment before);
    /// a later one (a restarted pod) starts with nothing and is ready once it has every type
    /// (and, when `needs_cert`, its certificate). `incarnation` counts the run's sidecar starts,
    /// so each subscription draws its own backoff stream.
    pub(super) fn subscribe(
        &mut self,
        net: &SimNet,
        node: &str,
        bootstrap: bool,
        needs_cert: bool,
        incarnation: u64,
    ) -> ConfigRx {
        let (tx, versions) = if bootstrap {
            let versions = ResourceType::ALL.into_iter().map(|k| (k, 1)).collect();
            (
                mesh_core::config::channel(self.registry.clone(), &self.policies).0,
                versions,
            )
        } else {
            (
                mesh_core::config::channel(Registry::new(), &Policies::default()).0,
                BTreeMap::new(),
            )
        };
        let rx = tx.subscribe();
        self.nodes.insert(node.to_string());
        let log = self.log.clone();
        let clock = self.clock;
        let name = node.to_string();
        let (ready, waiting) = (self.ready.clone(), self.waiting.clone());
        // A bootstrapped sidecar is ready from the start; a restarted one waits.
        if !bootstrap {
            let mut missing: BTreeSet<&'static str> =
                ResourceType::ALL.iter().map(|k| k.as_str()).collect();
            if needs_cert {
                missing.insert("certificate");
            }
            self.waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(node.to_string(), missing);
        }
        let on_event = Arc::new(move |e: &Event| {
            let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
            let now = clock.now_ms();
            match e {
                Event::Applied { kind, revision, .. } => {
                    log.applied
                        .entry((name.clone(), *kind))
                        .or_default()
                        .push((now, *revision));
                    drop(log);
                    arrived(&waiting, &ready, &name, kind.as_str());
                }
                Event::Refused {
                    kind,
                    version,
                    error,
                    revision,
                } => {
                    log.refusals
                        .entry((name.clone(), *kind))
                        .or_default()
                        .push((now, *revision));
                    let row = log
                        .refused
                        .entry((*kind, *version, error.clone()))
                        .or_insert((now, 0));
                    row.1 += 1;
                }
                Event::Disconnected { .. } => log.disconnects += 1,
                Event::Connected => {}
            }
        });
        let sub = Subscriber::new(
            net.clone(),
            self.addr,
            node,
            self.spec.client(),
            derive_seed(self.seed, &format!("subscriber:{node}:{incarnation}")),
            tx,
            versions,
            on_event,
        );
        net.spawn(sub.run());
        rx
    }

    /// Restarted sidecars that became ready since the last call, in order.
    pub(super) fn take_ready(&self) -> Vec<String> {
        std::mem::take(&mut *self.ready.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Count the proxies by state (every 100 ms, or every second in long runs); `down` names
    /// the sidecars not running, counted as without a stream whatever the control plane still
    /// believes (it learns of a dead peer only when its stream fails).
    pub(super) fn sample(&mut self, at_ms: u64, down: &BTreeSet<String>) {
        let mut s = SyncSample {
            at_ms,
            ..SyncSample::default()
        };
        let status = self.running.as_ref().map(|(cp, _)| cp.status());
        for node in &self.nodes {
            let record = status
                .as_ref()
                .and_then(|st| st.proxies.get(node))
                .filter(|r| r.connected && !down.contains(node));
            let Some(r) = record else {
                s.disconnected += 1;
                continue;
            };
            // The worst state over the types: NACKED, then STALE, then NOT SENT.
            let states: Vec<SyncState> = ResourceType::ALL.iter().map(|k| r.state(*k)).collect();
            if states.contains(&SyncState::Nacked) {
                s.nacked += 1;
            } else if states.contains(&SyncState::Stale) {
                s.stale += 1;
            } else if states.contains(&SyncState::NotSent) {
                s.not_sent += 1;
            } else {
                s.synced += 1;
            }
        }
        self.states.push(s);
    }

    /// The report's section. A change should reach the proxies running when it happened and
    /// still running at the end (`alive`).
    pub(super) fn stats(&self, alive: &dyn Fn(&str) -> bool) -> ControlPlaneStats {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let pushes = self.past_pushes
            + self
                .running
                .as_ref()
                .map_or(0, |(cp, _)| cp.status().pushes);
        let changes = self
            .changes
            .iter()
            .map(|c| {
                let population: Vec<&String> = c.up.iter().filter(|n| alive(n)).collect();
                // When each proxy first applied, and first refused, a push carrying it.
                let first = |events: &BTreeMap<(String, ResourceType), Vec<(u64, u64)>>,
                             n: &String| {
                    events
                        .get(&(n.clone(), c.kind))?
                        .iter()
                        .find(|(t, r)| *t >= c.at_ms && *r >= c.revision)
                        .map(|(t, _)| *t)
                };
                let mut delays: Vec<f64> = population
                    .iter()
                    .filter_map(|n| first(&log.applied, n).map(|t| (t - c.at_ms) as f64))
                    .collect();
                let refused = population
                    .iter()
                    .filter(|n| {
                        first(&log.refusals, n)
                            .is_some_and(|r| first(&log.applied, n).is_none_or(|a| r < a))
                    })
                    .count() as u64;
                delays.sort_by(f64::total_cmp);
                let n = population.len();
                let rank = |q: f64| -> Option<f64> {
                    let k = ((q * delays.len() as f64).ceil() as usize).max(1);
                    delays.get(k - 1).copied()
                };
                let k90 = (0.9 * n as f64).ceil() as usize;
                Propagation {
                    at_ms: c.at_ms,
                    what: c.what.clone(),
                    kind: c.kind.as_str().to_string(),
                    proxies: n as u64,
                    reached: delays.len() as u64,
                    refused,
                    p50_ms: rank(0.5),
                    p99_ms: rank(0.99),
                    max_ms: delays.last().copied(),
                    t90_ms: if k90 == 0 {
                        None
                    } else {
                        delays.get(k90 - 1).copied()
                    },
                }
            })
            .collect();
        let mut nacks: Vec<NackRecord> = log
            .refused
            .iter()
            .map(|((kind, version, error), (first, proxies))| NackRecord {
                first_ms: *first,
                kind: kind.as_str().to_string(),
                version: *version,
                proxies: *proxies,
                error: error.clone(),
            })
            .collect();
        nacks.sort_by_key(|r| (r.first_ms, r.kind.clone(), r.version));
        ControlPlaneStats {
            proxies: self.nodes.len() as u64,
            pushes,
            push_cpu_ms: (pushes as u128 * self.spec.push_cpu.0.as_micros() / 1000) as u64,
            disconnects: log.disconnects,
            changes,
            nacks,
            states: self.states.clone(),
        }
    }
}
