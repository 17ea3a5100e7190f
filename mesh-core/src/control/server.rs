//! The control plane: the mesh's desired state (services, endpoints, policies), versioned per
//! resource type, pushed to every connected proxy over its watch stream, with what each proxy
//! did with each push.
//!
//! Changes arrive through [`ControlPlane::update`] (in a simulation, from the pods' lifecycle
//! and the scenario's config changes; on real sockets, from the mesh file `meshsim
//! control-plane` re-reads). A burst of changes is debounced into one new version per changed type; each stream
//! then pushes the newest version to its proxy. A push costs the control plane CPU
//! ([`Settings::push_cpu`] on one of [`Settings::cores`]), so a push to 1,000 proxies takes
//! time, as istiod's does. Each proxy's answer moves its [`TypeSync`].
//!
//! Not here: the message shapes (`wire.rs`), reading an answer (`sync.rs`), the proxy's side
//! (`client.rs`). The control plane keeps no state across a restart: a new one starts from the
//! desired state it is given, as istiod rebuilds its view from the Kubernetes API.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::time::Instant;

use super::body::channel;
use super::debounce::Debounce;
use super::sync::{SyncState, TypeSync};
use super::wire::{self, Decoder, Push, ResourceType, Resources, STREAM_PATH};
use crate::body::{Body, boxed, full};
use crate::net::Network;
use crate::policy::Policies;
use crate::registry::Registry;

/// How a control plane behaves.
#[derive(Clone, Debug)]
pub struct Settings {
    /// When changes become a push.
    pub debounce: Debounce,
    /// CPU one push of one type to one proxy costs (generating and sending its configuration).
    pub push_cpu: Duration,
    /// Cores pushes run on at once.
    pub cores: usize,
    /// Distinguishes this instance's nonces from a previous one's.
    pub instance: u64,
    /// The first version it publishes (a restarted control plane continues past the last).
    pub first_version: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            debounce: Debounce::ISTIO,
            push_cpu: DEFAULT_PUSH_CPU,
            cores: 1,
            instance: 1,
            first_version: 1,
        }
    }
}

/// The CPU one push of one resource type to one proxy costs by default: 1 ms. Istio publishes
/// no per-push figure; its sizing (istio.io, "Performance and Scalability": one istiod of
/// 1 vCPU serves 1,000 services and 2,000 sidecars) bounds the order of magnitude. This is our
/// assumption within it: a full push to 1,000 proxies then takes one core a second per type.
pub const DEFAULT_PUSH_CPU: Duration = Duration::from_millis(1);

/// One published version of one type.
#[derive(Debug)]
pub struct Version {
    /// Its number.
    pub version: u64,
    /// The source revision it was built from.
    pub revision: u64,
    /// The resources.
    pub resources: Resources,
}

/// The newest version of every type.
pub type Published = BTreeMap<ResourceType, Arc<Version>>;

/// What the control plane knows of one proxy.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProxyRecord {
    /// Whether its stream is up.
    pub connected: bool,
    /// Per type, on its current (or last) stream.
    pub types: BTreeMap<ResourceType, TypeSync>,
    #[serde(skip)]
    stream: u64,
}

impl ProxyRecord {
    /// Its state for `kind`.
    pub fn state(&self, kind: ResourceType) -> SyncState {
        self.types
            .get(&kind)
            .map_or(SyncState::NotSent, TypeSync::state)
    }
}

/// Everything `proxy-status` shows (served as JSON at `GET /status`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// The newest version of each type.
    pub versions: BTreeMap<ResourceType, u64>,
    /// Pushes sent so far (one type to one proxy each).
    pub pushes: u64,
    /// Every proxy connected now, by node name.
    pub proxies: BTreeMap<String, ProxyRecord>,
}

struct Pending {
    first: Instant,
    last: Instant,
    kinds: BTreeSet<ResourceType>,
}

struct State {
    registry: Registry,
    policies: Policies,
    revision: u64,
    pending: Option<Pending>,
    proxies: BTreeMap<String, ProxyRecord>,
    pushes: u64,
    streams: u64,
    nonces: u64,
}

/// A running control plane.
pub struct ControlPlane {
    settings: Settings,
    /// Its certificate authority, when it is one.
    ca: Mutex<Option<Arc<super::ca::CaService>>>,
    state: Mutex<State>,
    wake: Notify,
    published: watch::Sender<Published>,
    cpu: Semaphore,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// A control plane whose desired state is `registry` and `policies` at source revision
    /// `revision`, published at once as [`Settings::first_version`].
    pub fn new(
        settings: Settings,
        registry: Registry,
        policies: Policies,
        revision: u64,
    ) -> Arc<Self> {
        let v = settings.first_version;
        let published = BTreeMap::from([
            (
                ResourceType::Endpoints,
                Arc::new(Version {
                    version: v,
                    revision,
                    resources: Resources::Endpoints(registry.clone()),
                }),
            ),
            (
                ResourceType::Policies,
                Arc::new(Version {
                    version: v,
                    revision,
                    resources: Resources::Policies(policies.clone()),
                }),
            ),
        ]);
        Arc::new(Self {
            ca: Mutex::new(None),
            cpu: Semaphore::new(settings.cores.max(1)),
            settings,
            state: Mutex::new(State {
                registry,
                policies,
                revision,
                pending: None,
                proxies: BTreeMap::new(),
                pushes: 0,
                streams: 0,
                nonces: 0,
            }),
            wake: Notify::new(),
            published: watch::channel(published).0,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Change the desired state (as of source revision `revision`); the types that changed are
    /// pushed once the debounce says so.
    pub fn update(&self, revision: u64, f: impl FnOnce(&mut Registry, &mut Policies)) {
        let mut st = self.state();
        let (registry, policies) = (st.registry.clone(), st.policies.clone());
        let st = &mut *st;
        f(&mut st.registry, &mut st.policies);
        st.revision = st.revision.max(revision);
        let mut kinds = BTreeSet::new();
        if st.registry != registry {
            kinds.insert(ResourceType::Endpoints);
        }
        if st.policies != policies {
            kinds.insert(ResourceType::Policies);
        }
        if kinds.is_empty() {
            return;
        }
        let now = Instant::now();
        let pending = st.pending.get_or_insert(Pending {
            first: now,
            last: now,
            kinds: BTreeSet::new(),
        });
        pending.last = now;
        pending.kinds.extend(kinds);
        self.wake.notify_one();
    }

    /// Publish debounced changes, forever (spawn it beside [`ControlPlane::serve`]).
    pub async fn debounce(self: Arc<Self>) {
        loop {
            let due = self
                .state()
                .pending
                .as_ref()
                .map(|p| self.settings.debounce.due(p.first, p.last));
            match due {
                None => self.wake.notified().await,
                Some(due) if Instant::now() >= due => self.publish(),
                Some(due) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due) => {}
                        _ = self.wake.notified() => {}
                    }
                }
            }
        }
    }

    fn publish(&self) {
        let mut st = self.state();
        let Some(pending) = st.pending.take() else {
            return;
        };
        let revision = st.revision;
        let resources: Vec<_> = pending
            .kinds
            .iter()
            .map(|k| match k {
                ResourceType::Endpoints => Resources::Endpoints(st.registry.clone()),
                ResourceType::Policies => Resources::Policies(st.policies.clone()),
            })
            .collect();
        drop(st);
        self.published.send_modify(|p| {
            for r in resources {
                let version = p.get(&r.kind()).map_or(0, |v| v.version) + 1;
                p.insert(
                    r.kind(),
                    Arc::new(Version {
                        version,
                        revision,
                        resources: r,
                    }),
                );
            }
        });
    }

    /// Also be the mesh's certificate authority (`POST /meshsim.ca.v1/Sign`).
    pub fn set_ca(&self, ca: Arc<super::ca::CaService>) {
        *self.ca.lock().unwrap_or_else(|p| p.into_inner()) = Some(ca);
    }

    /// What `proxy-status` shows.
    pub fn status(&self) -> Status {
        let versions = self
            .published
            .borrow()
            .iter()
            .map(|(k, v)| (*k, v.version))
            .collect();
        let st = self.state();
        Status {
            versions,
            pushes: st.pushes,
            proxies: st.proxies.clone(),
        }
    }

    /// Serve the watch stream and `GET /status` on `listener`, forever.
    pub async fn serve<N: Network>(self: Arc<Self>, net: N, listener: N::Listener) {
        let spawner = net.clone();
        let handler = move |req: Request<Incoming>| {
            let cp = self.clone();
            let spawner = spawner.clone();
            async move { cp.handle(&spawner, req).await }
        };
        crate::server::serve_http(net, listener, handler, Arc::new(|_| {})).await;
    }

    async fn handle<N: Network>(
        self: Arc<Self>,
        net: &N,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let reply = |status: StatusCode, body: Body, kind: &str| {
            let mut r = Response::new(body);
            *r.status_mut() = status;
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_str(kind).expect("a content type is a header value"),
            );
            r
        };
        match (req.method(), req.uri().path()) {
            (&http::Method::POST, STREAM_PATH) => {
                let (tx, body) = channel();
                net.spawn(self.stream(req.into_body(), tx));
                reply(StatusCode::OK, boxed(body), "application/x-ndjson")
            }
            (&http::Method::POST, super::ca::SIGN_PATH) => {
                let ca = self.ca.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let Some(ca) = ca else {
                    return reply(StatusCode::NOT_FOUND, full("no CA here\n"), "text/plain");
                };
                let body = http_body_util::Limited::new(req.into_body(), super::ca::MAX_REQUEST);
                match body.collect().await {
                    Ok(b) => ca.handle(&b.to_bytes()),
                    Err(_) => reply(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        full("request too large or cut short\n"),
                        "text/plain",
                    ),
                }
            }
            (&http::Method::GET, super::ca::ROOT_PATH) => {
                let ca = self.ca.lock().unwrap_or_else(|p| p.into_inner()).clone();
                match ca {
                    Some(ca) => reply(
                        StatusCode::OK,
                        full(ca.root_pem()),
                        "application/x-pem-file",
                    ),
                    None => reply(StatusCode::NOT_FOUND, full("no CA here\n"), "text/plain"),
                }
            }
            (&http::Method::GET, "/status") => {
                let text = serde_json::to_vec_pretty(&self.status()).expect("status serialises");
                reply(StatusCode::OK, full(text), "application/json")
            }
            _ => reply(StatusCode::NOT_FOUND, full("not found\n"), "text/plain"),
        }
    }

    /// One proxy's stream: take its answers, push what it subscribed to whenever it changes.
    async fn stream(self: Arc<Self>, mut body: Incoming, tx: mpsc::Sender<Bytes>) {
        let mut published = self.published.subscribe();
        let mut decoder = Decoder::with_limit(wire::MAX_REQUEST);
        let mut node: Option<(String, u64)> = None;
        // What this stream last sent of each type it is subscribed to.
        let mut sent: BTreeMap<ResourceType, u64> = BTreeMap::new();
        'stream: loop {
            tokio::select! {
                frame = body.frame() => {
                    let Some(Ok(frame)) = frame else { break };
                    let Ok(data) = frame.into_data() else { continue };
                    decoder.push(&data);
                    while let Some(msg) = decoder.message::<wire::Request>() {
                        let Ok(req) = msg else { break 'stream };
                        let (name, id) = node.get_or_insert_with(|| self.connect(&req.node));
                        if req.node != *name {
                            break 'stream;
                        }
                        let respond = self.answered(name, *id, &req);
                        if respond {
                            sent.remove(&req.kind);
                        }
                    }
                }
                changed = published.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
            let Some((name, id)) = &node else { continue };
            // Push every subscribed type whose newest version this stream has not sent.
            let subscribed: Vec<ResourceType> = self
                .state()
                .proxies
                .get(name)
                .map(|p| p.types.keys().copied().collect())
                .unwrap_or_default();
            // Until every subscribed type's newest version is sent: a version published during
            // one push is pushed next.
            loop {
                let mut pushed = false;
                for kind in &subscribed {
                    let newest = published.borrow_and_update().get(kind).cloned();
                    let Some(v) = newest else { continue };
                    if sent.get(kind) == Some(&v.version) {
                        continue;
                    }
                    let Some(push) = self.push(name, *id, &v).await else {
                        break 'stream;
                    };
                    sent.insert(*kind, v.version);
                    pushed = true;
                    if tx.send(wire::encode(&push)).await.is_err() {
                        break 'stream;
                    }
                }
                if !pushed {
                    break;
                }
            }
        }
        // Forget a proxy whose stream ended (unless a newer stream replaced it): the table stays
        // bounded however many proxies come and go, and, as `istioctl proxy-status`, shows
        // only those connected.
        if let Some((name, id)) = node {
            let mut st = self.state();
            if st.proxies.get(&name).is_some_and(|p| p.stream == id) {
                st.proxies.remove(&name);
            }
        }
    }

    /// A new stream from `node`: it replaces any previous one, and starts with nothing sent.
    fn connect(&self, node: &str) -> (String, u64) {
        let mut st = self.state();
        st.streams += 1;
        let id = st.streams;
        st.proxies.insert(
            node.to_string(),
            ProxyRecord {
                connected: true,
                types: BTreeMap::new(),
                stream: id,
            },
        );
        (node.to_string(), id)
    }

    /// Take an answer; true when it asks for the current state (a subscription).
    fn answered(&self, node: &str, stream: u64, req: &wire::Request) -> bool {
        let mut st = self.state();
        match st.proxies.get_mut(node) {
            Some(p) if p.stream == stream => p.types.entry(req.kind).or_default().on_request(req),
            _ => false,
        }
    }

    /// Spend the push's CPU, then record it; `None` when the stream was replaced meanwhile.
    async fn push(&self, node: &str, stream: u64, v: &Version) -> Option<Push> {
        {
            let _core = self.cpu.acquire().await.ok()?;
            tokio::time::sleep(self.settings.push_cpu).await;
        }
        let mut st = self.state();
        st.nonces += 1;
        let nonce = format!("{:x}-{}", self.settings.instance, st.nonces);
        let record = st.proxies.get_mut(node).filter(|p| p.stream == stream)?;
        record
            .types
            .entry(v.resources.kind())
            .or_default()
            .on_push(v.version, nonce.clone());
        st.pushes += 1;
        Some(Push {
            version: v.version,
            nonce,
            revision: v.revision,
            resources: v.resources.clone(),
        })
    }
}
