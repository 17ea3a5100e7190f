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
//! ([`error`]) and are counted ([`stats`]); a failure never takes the proxy down.
//!
//! Not here yet (later issues, as tower layers between routing and the client): retries, timeouts
//! per route, circuit breaking, outlier ejection, other balancers, mTLS, authorization, rate limits.

pub mod error;
pub mod headers;
pub mod stats;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;

use crate::balance::Balancer;
use crate::body::{self, Body};
use crate::breaker::{Breakers, Slot};
use crate::client::HttpClients;
use crate::hop::{self, Direction, HopCost};
use crate::net::{ConnectError, Network};
use crate::policy::{
    CircuitBreaker, HOST_SELECTION_ATTEMPTS, LbPolicy, Policies, RetryOn, RouteMatch,
    ServicePolicy, is_idempotent,
};
use crate::ratelimit::{RateLimit, TokenBucket};
use crate::registry::{Protocol, Registry, service_of_authority};
use crate::retry::{AttemptEnd, RetryBudget};
use crate::server::{ServeEvent, serve_http, serve_https};
pub use error::{ERROR_HEADER, ProxyError};
use http_body_util::BodyExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
pub use stats::ProxyStats;

use crate::telemetry::TelemetryConfig;
use crate::telemetry::access::AccessRecord;
use crate::telemetry::metrics::Golden;
use crate::telemetry::trace::{self, Span, TRACEPARENT};

/// The address a request came from, put in its extensions by the listener.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// The SPIFFE ID of the peer's mTLS certificate, put in a request's extensions by the listener.
#[derive(Clone, Debug)]
pub struct PeerIdentity(pub Arc<str>);

/// One request's hop through the proxy, for its metrics, span and access record. Recorded
/// exactly once: by [`Hop::record`] when the proxy answers, or on drop when the request was
/// cancelled first (the caller went away or an outer timeout fired), as Envoy's 499 / `DC`.
struct Hop<'a, N: Network> {
    proxy: &'a Proxy<N>,
    dir: Direction,
    /// Borrowed from the config on inbound, so the hot path allocates no name per request.
    service: std::borrow::Cow<'a, str>,
    started: tokio::time::Instant,
    /// (trace, span, parent span).
    ids: (u128, u64, u64),
    /// Method and path, when a span or access record will need them.
    described: Option<(String, String)>,
    peer: Option<SocketAddr>,
    /// The caller's SPIFFE ID, when it came over mTLS.
    peer_identity: Option<Arc<str>>,
    route: String,
    armed: bool,
}

impl<N: Network> Hop<'_, N> {
    fn record(
        &mut self,
        status: u16,
        reason: Option<&'static str>,
        duration_us: u64,
        attempts: u32,
    ) {
        if !std::mem::replace(&mut self.armed, false) {
            return;
        }
        let p = self.proxy;
        p.golden
            .finish(self.dir, &self.service, status, reason, duration_us);
        let Some((method, path)) = self.described.take() else {
            return;
        };
        let tel = &p.cfg.telemetry;
        let (trace_id, span_id, parent_id) = self.ids;
        let start_us = self
            .started
            .saturating_duration_since(p.stats.epoch())
            .as_micros() as u64;
        if tel.record_spans {
            let mut spans = p.spans.lock().unwrap_or_else(|e| e.into_inner());
            if spans.len() < MAX_SPANS {
                spans.push(Span {
                    trace_id,
                    span_id,
                    parent_id,
                    direction: self.dir,
                    service: self.service.to_string(),
                    name: format!("{method} {path}"),
                    start_us,
                    duration_us,
                    status,
                    reason,
                    attempts,
                });
            } else {
                drop(spans);
                p.stats.incr("spans_dropped");
            }
        }
        if let Some(log) = &tel.access_log {
            // This proxy's own identity is the source outbound and the destination inbound.
            let (source_identity, destination_identity) = match self.dir {
                Direction::Outbound => (tel.identity.clone(), None),
                Direction::Inbound => (
                    self.peer_identity.as_deref().map(str::to_string),
                    tel.identity.clone(),
                ),
            };
            (log.0)(&AccessRecord {
                start_us,
                direction: dir_name(self.dir),
                source_identity,
                source_address: self.peer.map(|a| a.to_string()).unwrap_or_default(),
                destination_service: self.service.to_string(),
                destination_identity,
                route: if self.route.is_empty() {
                    "default".into()
                } else {
                    std::mem::take(&mut self.route)
                },
                method,
                path,
                status,
                duration_us,
                attempts,
                reason,
                trace_id: format!("{trace_id:032x}"),
            });
        }
    }
}

impl<N: Network> Drop for Hop<'_, N> {
    fn drop(&mut self) {
        if self.armed {
            let us = self.started.elapsed().as_micros() as u64;
            self.record(499, Some("downstream_cancelled"), us, 0);
        }
    }
}

/// The authority a request names: `Host`, else the URI's. Apps reach the sidecar at its own
/// address, so an HTTP/2 request's `:authority` may be that address; a `Host` header says more.
fn authority_of<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()))
}

/// Most spans a proxy keeps in memory (about 100 bytes each); past it the newest are dropped
/// and counted (`spans_dropped`).
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
    registry: Arc<RwLock<Registry>>,
    balancer: Balancer,
    /// To other sidecars (TLS when configured).
    clients: HttpClients<N>,
    /// To the local app (always plain).
    app_clients: HttpClients<N>,
    stats: Arc<ProxyStats>,
    hop: Option<Arc<dyn HopCost>>,
    policies: Arc<RwLock<Policies>>,
    rng: Mutex<ChaCha8Rng>,
    budgets: Mutex<BTreeMap<String, Arc<RetryBudget>>>,
    breakers: Breakers,
    inbound_bucket: Option<TokenBucket>,
    route_buckets: Vec<(RouteLimit, TokenBucket)>,
    golden: Golden,
    spans: Mutex<Vec<Span>>,
    /// Trace and span ids: their own stream, so tracing never shifts retry jitter or splits.
    ids: Mutex<ChaCha8Rng>,
}

impl<N: Network> std::fmt::Debug for Proxy<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("cfg", &self.cfg).finish()
    }
}

impl<N: Network> Proxy<N> {
    /// A proxy on `net` routing by `registry`. `hop` charges modelled processing cost (simulation only).
    pub fn new(
        net: N,
        cfg: ProxyConfig,
        registry: Arc<RwLock<Registry>>,
        hop: Option<Arc<dyn HopCost>>,
    ) -> Arc<Self> {
        Self::with_policies(net, cfg, registry, Arc::default(), hop)
    }

    /// A proxy that also applies per-destination resilience `policies`.
    pub fn with_policies(
        net: N,
        cfg: ProxyConfig,
        registry: Arc<RwLock<Registry>>,
        policies: Arc<RwLock<Policies>>,
        hop: Option<Arc<dyn HopCost>>,
    ) -> Arc<Self> {
        let inbound_bucket = cfg.inbound_rate_limit.clone().map(TokenBucket::new);
        let route_buckets = cfg
            .inbound_route_limits
            .iter()
            .map(|r| (r.clone(), TokenBucket::new(r.limit.clone())))
            .collect();
        let stats = Arc::new(cfg.stats_epoch.map(ProxyStats::new).unwrap_or_default());
        Arc::new(Self {
            balancer: Balancer::new(ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x6c62_6173_6565_6421)),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(cfg.seed)),
            ids: Mutex::new(ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x7472_6163_6569_6473)),
            golden: Golden::default(),
            spans: Mutex::default(),
            policies,
            budgets: Mutex::default(),
            breakers: Breakers::default(),
            inbound_bucket,
            route_buckets,
            clients: match &cfg.tls {
                Some(t) => {
                    HttpClients::with_tls(net.clone(), cfg.connect_timeout, t.client.clone())
                }
                None => HttpClients::new(net.clone(), cfg.connect_timeout),
            },
            app_clients: HttpClients::new(net.clone(), cfg.connect_timeout),
            net,
            cfg,
            registry,
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
        let outbound = self.net.bind(self.cfg.outbound_addr).await?;
        let inbound = self.net.bind(self.cfg.inbound_addr).await?;
        if let Some(addr) = self.cfg.admin_addr {
            let admin = self.net.bind(addr).await?;
            let this = self.clone();
            self.net.spawn(async move { this.admin_loop(admin).await });
        }
        let this = self.clone();
        self.net
            .spawn(async move { this.accept_loop(outbound, Direction::Outbound).await });
        self.accept_loop(inbound, Direction::Inbound).await;
        Ok(())
    }

    async fn accept_loop(self: Arc<Self>, listener: N::Listener, dir: Direction) {
        let stats = self.stats.clone();
        let on_event = Arc::new(move |e: ServeEvent| match e {
            ServeEvent::AcceptError => stats.incr(dir_key(dir, "accept_errors")),
            // Malformed requests, resets mid-stream: hyper already answered 400 where it could.
            ServeEvent::ConnectionError => stats.incr(dir_key(dir, "downstream_errors")),
            ServeEvent::TlsHandshakeError => stats.incr(dir_key(dir, "tls_handshake_errors")),
        });
        let this = self.clone();
        let handler = move |req: Request<Incoming>| {
            let this = this.clone();
            async move { this.handle(dir, req).await }
        };
        match (&self.cfg.tls, dir) {
            (Some(tls), Direction::Inbound) => {
                serve_https(
                    self.net.clone(),
                    listener,
                    tls.server.clone(),
                    handler,
                    on_event,
                )
                .await
            }
            _ => serve_http(self.net.clone(), listener, handler, on_event).await,
        }
    }

    async fn handle(&self, dir: Direction, mut req: Request<Incoming>) -> Response<Body> {
        let started = tokio::time::Instant::now(); // tokio clock; allow-nondeterminism
        self.stats.incr(dir_key(dir, "requests"));
        self.golden.start(dir);
        let tel = &self.cfg.telemetry;
        let authority = match dir {
            Direction::Outbound => authority_of(&req),
            Direction::Inbound => None,
        };
        let service: std::borrow::Cow<'_, str> = match (dir, &authority) {
            (Direction::Outbound, Some(a)) => service_of_authority(a).to_string().into(),
            (Direction::Outbound, None) => "unknown".into(),
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
            peer_identity: req.extensions().get::<PeerIdentity>().map(|p| p.0.clone()),
            route: String::new(),
            armed: true,
        };
        let residual_us = match &self.hop {
            Some(cost) => cost.charge(dir).await,
            None => 0,
        };
        let downstream_version = req.version();
        let mut tried = Vec::new();
        let result = match (dir, &authority) {
            (Direction::Outbound, Some(a)) => {
                let Hop { service, route, .. } = &mut this_hop;
                self.outbound(req, a, service, route, &mut tried).await
            }
            (Direction::Outbound, None) => Err(ProxyError::NoRoute),
            (Direction::Inbound, _) => self.inbound(req, &mut this_hop.route).await,
        };
        let mut reason = None;
        let mut resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                self.stats
                    .incr(&format!("{}.error.{}", dir_name(dir), e.reason()));
                reason = Some(e.reason());
                error_response(e)
            }
        };
        let status = resp.status().as_u16();
        self.stats.incr(response_key(dir, status / 100));
        headers::strip_hop_by_hop(resp.headers_mut());
        *resp.version_mut() = downstream_version;
        hop::add_residual(resp.headers_mut(), residual_us);
        // Latency below this hop that was charged but not slept (simulation) counts too.
        let duration_us = started.elapsed().as_micros() as u64 + hop::read_residual(resp.headers());
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

    async fn admin_loop(self: Arc<Self>, listener: N::Listener) {
        let stats = self.stats.clone();
        let on_event = Arc::new(move |_e: ServeEvent| stats.incr("admin.errors"));
        let this = self.clone();
        let handler = move |req: Request<Incoming>| {
            let this = this.clone();
            async move { this.admin(req) }
        };
        serve_http(self.net.clone(), listener, handler, on_event).await
    }

    fn admin(&self, req: Request<Incoming>) -> Response<Body> {
        let (status, ctype, text) = match (req.method(), req.uri().path()) {
            (&http::Method::GET, "/metrics") => (
                http::StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics_text(),
            ),
            (&http::Method::GET, "/ready") => {
                (http::StatusCode::OK, "text/plain", "ready\n".to_string())
            }
            (&http::Method::GET, _) => (
                http::StatusCode::NOT_FOUND,
                "text/plain",
                "not found; try /metrics or /ready\n".to_string(),
            ),
            _ => (
                http::StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "GET only\n".to_string(),
            ),
        };
        let mut resp = Response::new(body::full(text));
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        resp
    }

    async fn outbound(
        &self,
        req: Request<Incoming>,
        authority: &str,
        service: &str,
        route_name: &mut String,
        tried: &mut Vec<SocketAddr>,
    ) -> Result<Response<Body>, ProxyError> {
        let (policy, route) = self
            .policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
            .map(|p| p.for_request(&req))
            .unwrap_or_default();
        self.stats.incr_timed(&svc_key(service, "requests"));
        if route != "default" {
            self.stats
                .incr(&format!("outbound.route.{service}.{route}.requests"));
        }
        route_name.push_str(route.as_ref());
        let calls = self.outbound_attempts(service, authority, req, &policy, tried);
        // A zero timeout means none (Istio's and Linkerd's default).
        let result = match policy
            .timeout
            .or(self.cfg.request_timeout)
            .filter(|t| !t.is_zero())
        {
            Some(t) => match tokio::time::timeout(t, calls).await {
                Ok(r) => r,
                Err(_) => {
                    self.stats.incr(&svc_key(service, "timeouts"));
                    Err(ProxyError::UpstreamTimeout)
                }
            },
            None => calls.await,
        };
        if result
            .as_ref()
            .map_or(true, |r| r.status().is_server_error())
        {
            self.stats.incr_timed(&svc_key(service, "failures"));
        }
        result
    }

    /// The first attempt and any retries the policy allows.
    async fn outbound_attempts(
        &self,
        service: &str,
        authority: &str,
        req: Request<Incoming>,
        policy: &ServicePolicy,
        tried: &mut Vec<SocketAddr>,
    ) -> Result<Response<Body>, ProxyError> {
        let cb = policy.circuit_breaker.as_ref();
        let retry = policy.retry.as_ref().filter(|r| r.max_retries > 0);
        // Retries replay the request, so its body is buffered; bodies that may exceed 64 KiB
        // (Linkerd's limit) are streamed and never retried.
        let fits = http_body::Body::size_hint(req.body())
            .upper()
            .is_some_and(|n| n <= MAX_RETRY_BODY);
        let first = self
            .admit(service, cb, false)
            .ok_or(ProxyError::CircuitOpen)?;
        let first = (first, TryTally::new(&self.stats, service));
        let Some(retry) = retry.filter(|_| fits) else {
            let per_try = policy.retry.as_ref().and_then(|r| r.per_try_timeout);
            let req = req.map(body::boxed);
            return self
                .attempt(first, service, authority, req, policy, per_try, tried)
                .await;
        };
        let (parts, incoming) = req.into_parts();
        let bytes = incoming
            .collect()
            .await
            .map_err(|_| ProxyError::UpstreamReset)?
            .to_bytes();
        let budget = retry.budget.as_ref().map(|b| self.budget(service, b));
        if let Some(b) = &budget {
            b.deposit();
        }
        // A non-idempotent request is sent again only when the upstream never processed it (the
        // connect failed, the stream was refused) or, for a gRPC call, on a listed gRPC status
        // (gRPC's own retry policy, gRFC A6, retries its POSTs by status code).
        let retry_on = if retry.retry_non_idempotent || is_idempotent(&parts.method) {
            retry.retry_on.clone()
        } else {
            let grpc_call = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
            RetryOn {
                connect_failure: retry.retry_on.connect_failure,
                refused_stream: retry.retry_on.refused_stream,
                grpc: if grpc_call {
                    retry.retry_on.grpc.clone()
                } else {
                    Vec::new()
                },
                ..RetryOn::default()
            }
        };
        let mut slot = first;
        let mut retries = 0;
        loop {
            let mut req = Request::new(body::full(bytes.clone()));
            *req.method_mut() = parts.method.clone();
            *req.uri_mut() = parts.uri.clone();
            *req.version_mut() = parts.version;
            *req.headers_mut() = parts.headers.clone();
            let result = self
                .attempt(
                    slot,
                    service,
                    authority,
                    req,
                    policy,
                    retry.per_try_timeout,
                    tried,
                )
                .await;
            let again = {
                let end = match &result {
                    Ok(r) => AttemptEnd::of(r.status(), r.headers()),
                    Err(e) => AttemptEnd {
                        status: e.status().as_u16(),
                        mesh_error: Some(e.reason()),
                        grpc_status: None,
                    },
                };
                crate::retry::retryable(&retry_on, end)
            };
            if retries >= retry.max_retries || !again {
                return result;
            }
            if let Some(b) = &budget
                && !b.withdraw()
            {
                self.stats.incr(&svc_key(service, "budget_exhausted"));
                return result;
            }
            // The retry takes its breaker slot now and holds it through the backoff; refused,
            // it is not sent and the caller gets this attempt's answer (Envoy's retry overflow).
            slot = match self.admit(service, cb, true) {
                Some(s) => (s, TryTally::new(&self.stats, service)),
                None => {
                    self.stats.incr(&svc_key(service, "retry_overflow"));
                    return result;
                }
            };
            retries += 1;
            self.stats.incr(&svc_key(service, "retries"));
            let delay = {
                let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
                crate::retry::backoff(&mut rng, retry.backoff_base, retry.backoff_max, retries)
            };
            drop(result);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// A breaker slot for an attempt to `service`, counting a refusal.
    fn admit(&self, service: &str, cb: Option<&CircuitBreaker>, retry: bool) -> Option<Slot> {
        match self.breakers.admit(service, cb, retry) {
            Ok(s) => Some(s),
            Err(o) => {
                if !retry {
                    self.stats.incr(&svc_key(service, "circuit_open"));
                }
                self.count_overflow(service, o);
                None
            }
        }
    }

    /// Count a breaker refusal by threshold (`overflow_<reason>`).
    fn count_overflow(&self, service: &str, o: crate::breaker::Overflow) {
        self.stats
            .incr(&svc_key(service, &format!("overflow_{}", o.reason())));
    }

    fn budget(&self, service: &str, b: &crate::policy::Budget) -> Arc<RetryBudget> {
        self.budgets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(service.to_string())
            .or_insert_with(|| Arc::new(RetryBudget::new(b)))
            .clone()
    }

    /// One attempt holding breaker `slot`: a connection (HTTP/1.1), endpoint pick, forward,
    /// bounded by the per-try timeout. `tried` collects the endpoints this request has used.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        (mut slot, mut tally): (Slot, TryTally<'_>),
        service: &str,
        authority: &str,
        req: Request<Body>,
        policy: &ServicePolicy,
        per_try: Option<Duration>,
        tried: &mut Vec<SocketAddr>,
    ) -> Result<Response<Body>, ProxyError> {
        let cb = policy.circuit_breaker.as_ref();
        let protocol = {
            let registry = self.registry.read().unwrap_or_else(|p| p.into_inner());
            registry.get(service).map(|e| e.protocol)
        };
        if protocol == Some(Protocol::Http1)
            && let Err(o) = slot.connection(cb).await
        {
            // Refused while holding a slot: a fast-fail whether first try or retry.
            tally.state = TryState::Ended;
            self.stats.incr(&svc_key(service, "circuit_open"));
            self.count_overflow(service, o);
            return Err(ProxyError::CircuitOpen);
        }
        tally.state = TryState::Sent;
        self.stats.incr_timed(&svc_key(service, "attempts"));
        let (addr, protocol, pick, subset) = match self.pick_endpoint(service, &req, policy, tried)
        {
            Ok(p) => p,
            Err(e) => {
                tally.state = TryState::Ended;
                self.stats
                    .incr(&svc_key(service, &format!("attempt_{}", e.reason())));
                return Err(e);
            }
        };
        tried.push(addr);
        if !subset.is_empty() {
            self.stats
                .incr(&format!("outbound.subset.{service}.{subset}.attempts"));
        }
        let call = self.forward(&self.clients, req, addr, protocol, Some(authority));
        let result = match per_try {
            Some(t) => tokio::time::timeout(t, call).await.unwrap_or_else(|_| {
                self.stats.incr(&svc_key(service, "per_try_timeouts"));
                Err(ProxyError::UpstreamTimeout)
            }),
            None => call.await,
        };
        drop(slot);
        let failed = match &result {
            Ok(r) => r.status().is_server_error(),
            Err(_) => true,
        };
        // Every attempt ends in exactly one outcome: an HTTP status class or the proxy's reason.
        let outcome = match &result {
            Ok(r) => ATTEMPT_CLASSES[usize::from(r.status().as_u16() / 100).min(5)],
            Err(e) => e.reason(),
        };
        tally.state = TryState::Ended;
        self.stats
            .incr(&svc_key(service, &format!("attempt_{outcome}")));
        pick.finish(failed, &policy.lb, policy.outlier.as_ref());
        if !subset.is_empty() && failed {
            self.stats
                .incr(&format!("outbound.subset.{service}.{subset}.failures"));
        }
        result
    }

    /// The endpoint for an attempt: subset by the split, then the balancer, avoiding endpoints
    /// already `tried` when the retry policy asks for it.
    fn pick_endpoint(
        &self,
        service: &str,
        req: &Request<Body>,
        policy: &ServicePolicy,
        tried: &[SocketAddr],
    ) -> Result<(SocketAddr, Protocol, crate::balance::Pick, String), ProxyError> {
        let registry = self.registry.read().unwrap_or_else(|p| p.into_inner());
        let entry = registry.get(service).ok_or(ProxyError::NoEndpoints)?;
        let key = match &policy.lb {
            LbPolicy::RingHash { header } => req
                .headers()
                .get(header.as_str())
                .map(|v| v.as_bytes().to_vec()),
            _ => None,
        };
        // A traffic split picks the subset first (weighted, from the seeded RNG); balancing
        // and outlier state are then kept per subset.
        let chosen = self.choose_subset(&policy.split);
        let members: Vec<usize> = entry
            .endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| chosen.as_ref().is_none_or(|s| &e.subset == s))
            .map(|(i, _)| i)
            .collect();
        let lb_key = match &chosen {
            Some(s) => format!("{service}@{s}"),
            None => service.to_string(),
        };
        let picks = match &policy.retry {
            Some(r) if r.avoid_previous_hosts && !tried.is_empty() => HOST_SELECTION_ATTEMPTS,
            _ => 1,
        };
        let mut pick = None;
        for _ in 0..picks {
            let p = self
                .balancer
                .pick(&lb_key, members.len(), &policy.lb, key.as_deref())
                .ok_or(ProxyError::NoEndpoints)?;
            let fresh = !tried.contains(&entry.endpoints[members[p.index]].addr);
            pick = Some(p);
            if fresh {
                break;
            }
        }
        let pick = pick.ok_or(ProxyError::NoEndpoints)?;
        let ep = &entry.endpoints[members[pick.index]];
        Ok((ep.addr, entry.protocol, pick, ep.subset.clone()))
    }

    fn choose_subset(&self, split: &[(String, u32)]) -> Option<String> {
        let total: u64 = split.iter().map(|(_, w)| u64::from(*w)).sum();
        if total == 0 {
            return None;
        }
        let mut x = self
            .rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .random_range(0..total);
        for (name, w) in split {
            if x < u64::from(*w) {
                return Some(name.clone());
            }
            x -= u64::from(*w);
        }
        None
    }

    /// Every circuit-breaker refusal this proxy has made.
    pub fn breaker_events(&self) -> Vec<crate::breaker::BreakerEvent> {
        self.breakers.events()
    }

    /// Ejections, probations and restorations this proxy's outlier detection has made.
    pub fn health_events(&self) -> Vec<crate::balance::HealthEvent> {
        self.balancer.events()
    }

    async fn inbound(
        &self,
        req: Request<Incoming>,
        route_name: &mut String,
    ) -> Result<Response<Body>, ProxyError> {
        let route = self
            .route_buckets
            .iter()
            .find(|(r, _)| r.matcher.matches(&req));
        if let Some((r, _)) = route {
            route_name.clone_from(&r.name);
        }
        let bucket = match route {
            Some((_, b)) => Some(b),
            None => self.inbound_bucket.as_ref(),
        };
        if bucket.is_some_and(|b| !b.try_acquire()) {
            if let Some((r, _)) = route {
                self.stats
                    .incr(&format!("inbound.route.{}.rate_limited", r.name));
            }
            return Err(ProxyError::RateLimited);
        }
        let call = self.forward(
            &self.app_clients,
            req.map(body::boxed),
            self.cfg.app_addr,
            self.cfg.app_protocol,
            None,
        );
        match self.cfg.request_timeout {
            Some(t) => tokio::time::timeout(t, call)
                .await
                .map_err(|_| ProxyError::UpstreamTimeout)?,
            None => call.await,
        }
    }

    /// Send `req` to `addr` on `protocol`, rewriting what changes between legs.
    async fn forward(
        &self,
        clients: &HttpClients<N>,
        req: Request<Body>,
        addr: SocketAddr,
        protocol: Protocol,
        authority: Option<&str>,
    ) -> Result<Response<Body>, ProxyError> {
        let (mut parts, req_body) = req.into_parts();
        // The authority survives the hop as Host so the far side still knows the service name
        // even when the leg's URI names an address (HTTP/2 carries it as a plain header).
        let host = authority.map(str::to_string).or_else(|| {
            parts
                .uri
                .authority()
                .map(|a| a.as_str().to_string())
                .filter(|_| !parts.headers.contains_key(http::header::HOST))
        });
        headers::strip_hop_by_hop(&mut parts.headers);
        if let Some(host) = host.and_then(|h| HeaderValue::from_str(&h).ok()) {
            parts.headers.insert(http::header::HOST, host);
        }
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        parts.uri =
            Uri::try_from(format!("http://{addr}{path}")).map_err(|_| ProxyError::NoRoute)?;
        parts.version = protocol.version();
        let req = Request::from_parts(parts, req_body);
        let resp = clients.get(protocol).request(req).await.map_err(classify)?;
        Ok(resp.map(body::boxed))
    }
}

/// Map a pooled-client failure to the proxy failure it stands for.
pub fn classify(e: hyper_util::client::legacy::Error) -> ProxyError {
    if e.is_connect() {
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            if let Some(ConnectError::Timeout(_)) = s.downcast_ref::<ConnectError>() {
                return ProxyError::ConnectTimeout;
            }
            source = s.source();
        }
        ProxyError::ConnectFailed
    } else if refused_stream(&e) {
        ProxyError::RefusedStream
    } else {
        ProxyError::UpstreamReset
    }
}

/// Whether the HTTP/2 layer under `e` says the upstream refused the stream.
fn refused_stream(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = s.source();
    }
    false
}

/// The response the proxy sends for its own failure `e`.
pub fn error_response(e: ProxyError) -> Response<Body> {
    let mut resp = Response::new(body::full(format!("{e}\n")));
    *resp.status_mut() = e.status();
    resp.headers_mut()
        .insert(ERROR_HEADER, HeaderValue::from_static(e.reason()));
    resp
}

/// Where one try of a request (the first, or a retry the breaker admitted) stands. Every try
/// ends exactly once: refused by the breaker (`circuit_open`), sent as an attempt and finished
/// with an outcome (`attempt_<outcome>`), or dropped, when an overall timeout fires or the caller
/// goes away. Dropped before it was sent (in a retry's backoff, waiting for a connection, reading
/// the caller's body) it counts as `unsent`; dropped in flight, as the outcome `attempt_cancelled`.
/// Counting on drop is what keeps the books whole: the future is dropped between the two counts.
struct TryTally<'a> {
    stats: &'a ProxyStats,
    service: &'a str,
    state: TryState,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TryState {
    Admitted,
    Sent,
    Ended,
}

impl<'a> TryTally<'a> {
    fn new(stats: &'a ProxyStats, service: &'a str) -> Self {
        Self {
            stats,
            service,
            state: TryState::Admitted,
        }
    }
}

impl Drop for TryTally<'_> {
    fn drop(&mut self) {
        match self.state {
            TryState::Admitted => self.stats.incr(&svc_key(self.service, "unsent")),
            TryState::Sent => self.stats.incr(&svc_key(self.service, "attempt_cancelled")),
            TryState::Ended => {}
        }
    }
}

/// Attempt outcome names by status class (1xx..5xx; index 0 never used by a valid status).
const ATTEMPT_CLASSES: [&str; 6] = ["0xx", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// Largest request body buffered for retries (Linkerd's limit).
const MAX_RETRY_BODY: u64 = 64 * 1024;

/// The counter `outbound.svc.<service>.<what>`.
pub fn svc_key(service: &str, what: &str) -> String {
    format!("outbound.svc.{service}.{what}")
}

/// `<direction>.responses.<class>xx`, without formatting a string per request.
fn response_key(dir: Direction, class: u16) -> &'static str {
    const OUT: [&str; 6] = [
        "outbound.responses.0xx",
        "outbound.responses.1xx",
        "outbound.responses.2xx",
        "outbound.responses.3xx",
        "outbound.responses.4xx",
        "outbound.responses.5xx",
    ];
    const IN: [&str; 6] = [
        "inbound.responses.0xx",
        "inbound.responses.1xx",
        "inbound.responses.2xx",
        "inbound.responses.3xx",
        "inbound.responses.4xx",
        "inbound.responses.5xx",
    ];
    let i = usize::from(class).min(5);
    match dir {
        Direction::Outbound => OUT[i],
        Direction::Inbound => IN[i],
    }
}

fn dir_name(dir: Direction) -> &'static str {
    match dir {
        Direction::Outbound => "outbound",
        Direction::Inbound => "inbound",
    }
}

fn dir_key(dir: Direction, what: &str) -> &'static str {
    match (dir, what) {
        (Direction::Outbound, "requests") => "outbound.requests",
        (Direction::Inbound, "requests") => "inbound.requests",
        (Direction::Outbound, "accept_errors") => "outbound.accept_errors",
        (Direction::Inbound, "accept_errors") => "inbound.accept_errors",
        (Direction::Outbound, "tls_handshake_errors") => "outbound.tls_handshake_errors",
        (Direction::Inbound, "tls_handshake_errors") => "inbound.tls_handshake_errors",
        (Direction::Outbound, _) => "outbound.downstream_errors",
        (Direction::Inbound, _) => "inbound.downstream_errors",
    }
}
