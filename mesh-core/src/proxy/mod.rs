//! The sidecar proxy: one per pod, beside the app.
//!
//! - **Outbound** (the app calls `http://<service>/...` through `outbound_addr`): the service name
//!   comes from the authority (`Host` on HTTP/1.1, `:authority` on HTTP/2); the registry gives its
//!   endpoints; the balancer picks one; the request goes to that pod's inbound port on the service's
//!   mesh protocol.
//! - **Inbound** (another pod's sidecar calls `inbound_addr`): forwarded to the local app on the app's
//!   protocol.
//!
//! Each leg picks its own HTTP version: a request may arrive on HTTP/1.1 and leave on HTTP/2 and back.
//! Hop-by-hop headers are stripped at every hop ([`headers`]). Upstream failures become responses
//! ([`crate::error`]) and are counted ([`stats`]); a failure never takes the proxy down.
//!
//! Policies on the outbound path (retries and budgets, timeouts, breakers, outlier ejection,
//! balancers, splits, routes) and local rate limits on the inbound path come from
//! [`crate::policy`]; mTLS from [`crate::tls`]; telemetry from [`crate::telemetry`].
//!
//! # Layout
//! This file holds the configuration, the listeners and the request entry (`Proxy::handle`),
//! which routes each request to its direction. Then, in request order: `outbound` (the
//! ordered outbound path: timeout, breaker admission, retry loop, attempts), `pick` (split
//! and endpoint), `forward` (one leg on the wire, failure classification), `inbound` (the
//! route phase, then the app behind tower layers: rate limits); `record` records each hop once; `admin` serves `/metrics` and
//! `/ready`; [`stats`] holds the typed counters (per direction, per destination, per route and
//! subset) and [`headers`] the hop-by-hop header rules. The
//! failure type is [`crate::error`], a leaf every module may use.

mod admin;
mod forward;
pub mod headers;
mod inbound;
mod outbound;
mod pick;
mod record;
pub mod stats;

pub use forward::{classify, error_response};
use record::Hop;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;

use crate::balance::Balancer;
use crate::body::{self, Body};
use crate::breaker::{Breakers, Slot};
use crate::client::HttpClients;
use crate::config::ConfigRx;
pub use crate::error::{ERROR_HEADER, ProxyError};
use crate::hop::{Direction, HopCost};
use crate::net::{ConnectError, Network};
use crate::policy::{
    CircuitBreaker, HOST_SELECTION_ATTEMPTS, LbPolicy, RetryOn, RouteMatch, ServicePolicy,
    is_idempotent,
};
use crate::ratelimit::{LocalRateLimitLayer, RateLimit};
use crate::registry::{Protocol, service_of_authority};
use crate::retry::{AttemptEnd, RetryBudget};
use crate::server::{Admit, ServeEvent, serve_http_with, serve_inbound};
pub use crate::server::{PeerAddr, PeerIdentity};
use http_body_util::BodyExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
pub use stats::{AttemptOutcome, Counters, ProxyStats, Timed};
use tower::Layer;

use crate::telemetry::TelemetryConfig;
use crate::telemetry::access::AccessRecord;
use crate::telemetry::metrics::Golden;
use crate::telemetry::trace::{self, Span, TRACEPARENT};

/// The authority a request names, or why it names none clearly.
///
/// - Several `Host` headers: ambiguous, refused (RFC 9112 §3.2 says 400).
/// - HTTP/1.x in absolute form (`GET http://echo/x`): the URI's authority wins over `Host`
///   (RFC 9112 §3.2.2), so a request cannot say one destination to one hop and another to the
///   next.
/// - Otherwise `Host`, else the URI's. Over HTTP/2, apps reach the sidecar at its own address,
///   so `:authority` may be that address and a `Host` header says more (gRPC clients such as
///   tonic set `:authority` to the address they dial); a deliberate departure from RFC 9113
///   §8.3.1, which prefers `:authority`.
fn authority_of<B>(req: &Request<B>) -> Result<Option<String>, ProxyError> {
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadAuthority);
    }
    let uri = req.uri().authority().map(|a| a.as_str().to_string());
    if req.version() <= http::Version::HTTP_11 && uri.is_some() {
        return Ok(uri);
    }
    Ok(host
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or(uri))
}

/// Whether `req`'s target is a path this proxy can forward: origin-form (`/x`) or absolute-form
/// (`http://echo/x`), never asterisk-form (`OPTIONS *`, HTTP/2 `:path: *`) nor CONNECT's
/// authority-form. Envoy answers both 400 by default; a request that names no resource of any
/// destination is the client's, not an upstream's, failure.
fn forwardable_target<B>(req: &Request<B>) -> bool {
    req.method() != http::Method::CONNECT && req.uri().path().starts_with('/')
}

/// The service label of outbound requests to a name the registry does not hold.
pub const UNKNOWN_SERVICE: &str = "unknown";

/// Most spans a proxy keeps in memory (about 100 bytes each) when it keeps its own (no
/// [`crate::telemetry::trace::SpanSink`]); past it the newest are dropped and counted
/// (`spans_dropped`).
pub const MAX_SPANS: usize = 2_000_000;

/// Where a sidecar listens and what it forwards to.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Where the local app sends its outbound calls.
    pub outbound_addr: SocketAddr,
    /// Where other pods' sidecars reach this pod.
    pub inbound_addr: SocketAddr,
    /// The local app.
    pub app_addr: SocketAddr,
    /// The protocol the local app speaks.
    pub app_protocol: Protocol,
    /// How long a TCP connect may take (Linkerd's outbound default is 1 s).
    pub connect_timeout: Duration,
    /// How long to wait for upstream response headers; `None` waits forever (Istio's default).
    /// A destination's policy `timeout` overrides it for outbound calls.
    pub request_timeout: Option<Duration>,
    /// Seed of the proxy's RNG (retry jitter); the simulator derives it from the run's seed.
    pub seed: u64,
    /// Local rate limit on inbound requests, if any.
    pub inbound_rate_limit: Option<RateLimit>,
    /// Per-route local rate limits on inbound requests: the first route that matches takes
    /// its own bucket instead of the service-wide one (Envoy's per-route `local_ratelimit`).
    pub inbound_route_limits: Vec<RouteLimit>,
    /// Where the per-second counter series start (default: when the proxy is built).
    pub stats_epoch: Option<tokio::time::Instant>,
    /// Mutual TLS with other sidecars (inbound listener and outbound calls to sidecars); the
    /// app legs stay plain, as on a pod's loopback.
    pub tls: Option<crate::tls::MeshTls>,
    /// Where to serve the admin endpoint (`/metrics`, `/ready`), if anywhere (Envoy's 15000).
    pub admin_addr: Option<SocketAddr>,
    /// Spans, access logs and the names they carry.
    pub telemetry: TelemetryConfig,
    /// This workload's authorization policies, applied to inbound requests
    /// ([`crate::authz`]); empty allows everything.
    pub authorization: Vec<crate::authz::Policy>,
    /// Who answers CUSTOM policies.
    pub custom_authorizer: Option<Arc<dyn crate::authz::CustomAuthorizer>>,
    /// For inbound peers without an mTLS identity, take the identity the registry places at
    /// the peer's address. The simulator models mTLS (its cost) without running it, and names
    /// peers this way; on real sockets leave it off and let certificates speak.
    pub identity_by_address: bool,
    /// This workload's connection-time policies ([`crate::authz::l4`]), judged on each inbound
    /// connection before any request; empty admits every connection.
    pub network_policies: Vec<crate::authz::l4::NetworkPolicy>,
    /// What each listener and direction holds at most ([`crate::limits`]).
    pub limits: crate::limits::Limits,
}

impl ProxyConfig {
    /// The conventional ports (Istio's 15001 outbound, 15006 inbound) on `pod_ip`, app on 8080.
    pub fn conventional(pod_ip: std::net::IpAddr) -> Self {
        Self {
            outbound_addr: SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), 15001),
            inbound_addr: SocketAddr::new(pod_ip, 15006),
            app_addr: SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), 8080),
            app_protocol: Protocol::Http1,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Some(Duration::from_secs(15)),
            seed: 0,
            inbound_rate_limit: None,
            inbound_route_limits: Vec::new(),
            stats_epoch: None,
            tls: None,
            admin_addr: None,
            telemetry: TelemetryConfig::default(),
            authorization: Vec::new(),
            custom_authorizer: None,
            identity_by_address: false,
            network_policies: Vec::new(),
            limits: crate::limits::Limits::default(),
        }
    }
}

/// A rate limit for the inbound requests one route matches.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteLimit {
    /// Name, for counters.
    pub name: String,
    /// Which requests.
    pub matcher: RouteMatch,
    /// The bucket's settings.
    pub limit: RateLimit,
}

/// A running sidecar's shared state.
pub struct Proxy<N: Network> {
    net: N,
    cfg: ProxyConfig,
    /// The newest configuration: endpoints and lowered policies.
    config: ConfigRx,
    balancer: Balancer,
    /// To other sidecars (TLS when configured).
    clients: HttpClients<N>,
    stats: Arc<ProxyStats>,
    hop: Option<Arc<dyn HopCost>>,
    rng: Mutex<ChaCha8Rng>,
    budgets: Mutex<BTreeMap<String, Arc<RetryBudget>>>,
    breakers: Breakers,
    /// To the local app (always plain), behind the inbound layers.
    inbound: inbound::InboundStack<N>,
    /// This workload's authorization policies.
    authz: crate::authz::eval::Authorizer,
    /// This workload's connection-time policies.
    l4: crate::authz::l4::ConnectionAuthorizer,
    golden: Golden,
    spans: Mutex<Vec<Span>>,
    /// Trace and span ids: their own stream, so tracing never shifts retry jitter or splits.
    ids: Mutex<ChaCha8Rng>,
    /// Requests in flight per direction, for the overload limit.
    in_flight: [crate::limits::Slots; 2],
    /// The drain this proxy serves under, once [`Proxy::run_until_drained`] starts it.
    drain: std::sync::OnceLock<crate::server::Drain>,
}

impl<N: Network> std::fmt::Debug for Proxy<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("cfg", &self.cfg).finish()
    }
}

impl<N: Network> Proxy<N> {
    /// A proxy on `net` routing by the endpoints and policies `config` delivers. `hop` charges
    /// modelled processing cost (simulation only).
    pub fn new(
        net: N,
        cfg: ProxyConfig,
        config: ConfigRx,
        hop: Option<Arc<dyn HopCost>>,
    ) -> Arc<Self> {
        let inbound = LocalRateLimitLayer::new(
            cfg.inbound_rate_limit.clone(),
            cfg.inbound_route_limits.iter().map(|r| r.limit.clone()),
        )
        .layer(inbound::ToApp::new(inbound::AppLeg {
            clients: HttpClients::new(net.clone(), cfg.connect_timeout),
            addr: cfg.app_addr,
            protocol: cfg.app_protocol,
            timeout: cfg.request_timeout,
        }));
        let stats = Arc::new(cfg.stats_epoch.map(ProxyStats::new).unwrap_or_default());
        Arc::new(Self {
            balancer: Balancer::new(ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x6c62_6173_6565_6421)),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(cfg.seed)),
            ids: Mutex::new(ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x7472_6163_6569_6473)),
            golden: Golden::default(),
            in_flight: Default::default(),
            drain: Default::default(),
            spans: Mutex::default(),
            budgets: Mutex::default(),
            breakers: Breakers::default(),
            inbound,
            authz: crate::authz::eval::Authorizer::new(
                cfg.authorization.clone(),
                cfg.custom_authorizer.clone(),
            ),
            l4: crate::authz::l4::ConnectionAuthorizer::new(cfg.network_policies.clone()),
            clients: match &cfg.tls {
                Some(t) => {
                    // The server must be the identity the registry names for its address;
                    // refusals are counted on the outbound side by reason.
                    let rx = config.clone();
                    let counted = stats.clone();
                    let dialer = crate::tls::Dialer::new(
                        t.clone(),
                        Arc::new(move |addr| rx.borrow().identity_of(addr)),
                        Arc::new(move |f| counted.tls_failure(Direction::Outbound, f)),
                    );
                    HttpClients::with_tls(net.clone(), cfg.connect_timeout, dialer)
                }
                None => HttpClients::new(net.clone(), cfg.connect_timeout),
            },
            net,
            cfg,
            config,
            stats,
            hop,
        })
    }

    /// The proxy's counters.
    pub fn stats(&self) -> Arc<ProxyStats> {
        self.stats.clone()
    }

    /// Bind both listeners and serve until the task is dropped.
    pub async fn run(self: Arc<Self>) -> io::Result<()> {
        let (outbound, inbound) = self.bind().await?;
        let this = self.clone();
        self.net
            .spawn(async move { this.accept_loop(outbound, Direction::Outbound, None).await });
        self.accept_loop(inbound, Direction::Inbound, None).await;
        Ok(())
    }

    /// As [`Proxy::run`], until `drain` starts; then both listeners stop accepting, `/ready`
    /// answers 503, open connections finish what they have in flight and close, and this
    /// returns once they have (or `drain`'s grace is over: the rest are counted
    /// `drain_timeout`). What a sidecar does on SIGTERM.
    pub async fn run_until_drained(self: Arc<Self>, drain: crate::server::Drain) -> io::Result<()> {
        let _ = self.drain.set(drain.clone());
        let (outbound, inbound) = self.bind().await?;
        tokio::join!(
            self.clone()
                .accept_loop(outbound, Direction::Outbound, Some(drain.clone())),
            self.clone()
                .accept_loop(inbound, Direction::Inbound, Some(drain)),
        );
        Ok(())
    }

    /// Whether this proxy is draining.
    pub fn draining(&self) -> bool {
        self.drain.get().is_some_and(|d| d.started())
    }

    /// Bind the data-plane listeners (outbound, inbound) and start the admin listener.
    async fn bind(self: &Arc<Self>) -> io::Result<(N::Listener, N::Listener)> {
        let outbound = self.net.bind(self.cfg.outbound_addr).await?;
        let inbound = self.net.bind(self.cfg.inbound_addr).await?;
        if let Some(addr) = self.cfg.admin_addr {
            let admin = self.net.bind(addr).await?;
            let this = self.clone();
            self.net.spawn(async move { this.admin_loop(admin).await });
        }
        Ok((outbound, inbound))
    }

    async fn accept_loop(
        self: Arc<Self>,
        listener: N::Listener,
        dir: Direction,
        drain: Option<crate::server::Drain>,
    ) {
        let stats = self.stats.clone();
        let on_event = Arc::new(move |e: ServeEvent| match e {
            ServeEvent::AcceptError => stats.direction(dir, |d| d.accept_errors += 1),
            // Malformed requests, resets mid-stream: hyper already answered 400 where it could.
            ServeEvent::ConnectionError => stats.direction(dir, |d| d.downstream_errors += 1),
            ServeEvent::TlsHandshakeError(f) => stats.tls_failure(dir, &f),
            ServeEvent::Closed(why) => {
                stats.direction(dir, |d| *d.connections_closed.entry(why).or_insert(0) += 1)
            }
            ServeEvent::HeadersTooLarge => stats.direction(dir, |d| d.headers_too_large += 1),
        });
        let this = self.clone();
        let handler = move |req: Request<Incoming>| {
            let this = this.clone();
            async move { this.handle(dir, req).await }
        };
        match dir {
            Direction::Inbound => {
                let this = self.clone();
                let admit: Admit = Arc::new(move |peer, id| this.admit_connection(peer, id));
                let tls = self.cfg.tls.clone();
                let limits = self.cfg.limits.clone();
                serve_inbound(
                    self.net.clone(),
                    listener,
                    tls,
                    admit,
                    limits,
                    drain,
                    handler,
                    on_event,
                )
                .await
            }
            Direction::Outbound => {
                let limits = self.cfg.limits.clone();
                serve_http_with(self.net.clone(), listener, limits, drain, handler, on_event).await
            }
        }
    }

    async fn handle(&self, dir: Direction, mut req: Request<Incoming>) -> Response<Body> {
        let started = tokio::time::Instant::now(); // tokio clock; allow-nondeterminism
        self.stats.direction(dir, |d| d.requests += 1);
        self.golden.start(dir);
        let tel = &self.cfg.telemetry;
        let (authority, ambiguous) = match dir {
            Direction::Outbound => match authority_of(&req) {
                Ok(a) => (a, false),
                Err(_) => (None, true),
            },
            Direction::Inbound => (None, false),
        };
        let service: std::borrow::Cow<'_, str> = match (dir, &authority) {
            // Counters and metric series are per configured service, as Envoy's are per
            // cluster: a name the registry does not hold is `unknown`, so no client can create
            // series (or leak what it put in `Host`) by naming hosts.
            (Direction::Outbound, Some(a)) => {
                let name = service_of_authority(a);
                if self.config.borrow().registry.get(name).is_some() {
                    name.to_string().into()
                } else {
                    UNKNOWN_SERVICE.into()
                }
            }
            (Direction::Outbound, None) => UNKNOWN_SERVICE.into(),
            (Direction::Inbound, _) if tel.service.is_empty() => "local".into(),
            (Direction::Inbound, _) => tel.service.as_str().into(),
        };
        // This hop's span continues the caller's trace, or starts one; the request leaves
        // naming this span as its parent.
        let ctx = req.headers().get(TRACEPARENT).and_then(trace::parse);
        let (trace_id, parent_id, flags) = match ctx {
            Some(c) => (c.trace_id, c.parent_id, c.flags),
            None => (self.new_id128(), 0, 1),
        };
        let span_id = self.new_id64();
        req.headers_mut()
            .insert(TRACEPARENT, trace::header(trace_id, span_id, flags));
        let mut this_hop = Hop {
            proxy: self,
            dir,
            service,
            started,
            ids: (trace_id, span_id, parent_id),
            described: (tel.record_spans || tel.access_log.is_some())
                .then(|| (req.method().to_string(), req.uri().path().to_string())),
            peer: req.extensions().get::<PeerAddr>().map(|p| p.0),
            peer_identity: match dir {
                Direction::Inbound => self.peer_identity(&req),
                Direction::Outbound => None,
            },
            route: String::new(),
            armed: true,
        };
        // Past the overload limit the answer is immediate: no upstream work, no queue.
        let admitted = self.in_flight[dir.index()].take(self.cfg.limits.max_requests_in_flight);
        if let Some(cost) = &self.hop {
            cost.charge(dir).await;
        }
        let downstream_version = req.version();
        let mut tried = Vec::new();
        let result = match (dir, &authority) {
            _ if admitted.is_none() => Err(ProxyError::Overloaded),
            _ if ambiguous => Err(ProxyError::BadAuthority),
            _ if !forwardable_target(&req) => Err(ProxyError::BadTarget),
            (Direction::Outbound, Some(a)) => {
                let Hop { service, route, .. } = &mut this_hop;
                self.outbound(req, a, service, route, &mut tried).await
            }
            (Direction::Outbound, None) => Err(ProxyError::NoRoute),
            (Direction::Inbound, _) => {
                let Hop {
                    route,
                    peer_identity,
                    ..
                } = &mut this_hop;
                self.inbound(req, peer_identity.as_deref(), route).await
            }
        };
        let mut reason = None;
        let mut resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                self.stats
                    .direction(dir, |d| *d.errors.entry(e).or_insert(0) += 1);
                reason = Some(e.reason());
                error_response(e)
            }
        };
        let status = resp.status().as_u16();
        self.stats
            .direction(dir, |d| d.responses[usize::from(status / 100).min(5)] += 1);
        headers::strip_hop_by_hop(resp.headers_mut());
        *resp.version_mut() = downstream_version;
        let duration_us = started.elapsed().as_micros() as u64;
        let attempts = match dir {
            Direction::Outbound => tried.len() as u32,
            Direction::Inbound => u32::from(reason.is_none()),
        };
        this_hop.record(status, reason, duration_us, attempts);
        resp
    }

    fn new_id128(&self) -> u128 {
        let mut rng = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        // Never zero: an all-zero id is invalid.
        rng.random::<u128>().max(1)
    }

    fn new_id64(&self) -> u64 {
        let mut rng = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        rng.random::<u64>().max(1)
    }

    /// Every span this proxy has recorded (when `telemetry.record_spans` is set), in order.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The Prometheus text exposition of this proxy's metrics now.
    pub fn metrics_text(&self) -> String {
        crate::telemetry::metrics::exposition(
            &self.golden,
            &self.stats.snapshot(),
            &self.breakers.all_in_flight(),
        )
    }

    /// Every circuit-breaker refusal this proxy has made.
    pub fn breaker_events(&self) -> Vec<crate::breaker::BreakerEvent> {
        self.breakers.events()
    }

    /// Ejections, probations and restorations this proxy's outlier detection has made.
    pub fn health_events(&self) -> Vec<crate::balance::HealthEvent> {
        self.balancer.events()
    }
}
