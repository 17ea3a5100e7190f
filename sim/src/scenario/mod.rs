//! Scenario files (TOML, format v1): the topology, how each service behaves, the workload, the
//! fault time line, mesh settings, the seed and the assertions. `scenarios/README.md` documents the
//! format with an example per feature; this module is its single source of truth.
//!
//! Types here are plain serde data. [`load`] reads and validates a file; every error names the
//! file, line, column and field, and says what was expected. Unknown fields are errors.
//! Validation that spans fields (a call to a service that does not exist) happens after parsing,
//! using the spans serde kept for the fields that refer to other things.

pub mod assertion;
pub mod duration;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

pub use assertion::{Assertion, Op};
pub use duration::Dur;
pub use mesh_core::registry::Protocol;

/// A whole scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in reports.
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// Seed used when the command line gives none.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Mesh settings.
    #[serde(default)]
    pub mesh: MeshSpec,
    /// Network baseline (before faults).
    #[serde(default)]
    pub network: NetworkSpec,
    /// The services, each with its replicas and behaviour.
    pub services: Vec<ServiceSpec>,
    /// The load.
    pub workload: WorkloadSpec,
    /// The fault time line.
    #[serde(default)]
    pub faults: Vec<Spanned<FaultSpec>>,
    /// Checks on the report; any that fails makes the run fail (exit 1).
    #[serde(default)]
    pub assertions: Vec<Spanned<Assertion>>,
    /// Report settings.
    #[serde(default)]
    pub report: ReportSpec,
}

/// Report settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportSpec {
    /// An edge whose attempts per request exceed this in a second is in a retry storm (default 1.5).
    pub storm_threshold: f64,
}

impl Default for ReportSpec {
    fn default() -> Self {
        Self {
            storm_threshold: 1.5,
        }
    }
}

fn default_seed() -> u64 {
    1
}

/// Mesh settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshSpec {
    /// Run with sidecars. When false only the unmeshed run happens.
    pub enabled: bool,
    /// Also run the same scenario and seed without the mesh, to measure overhead.
    pub baseline: bool,
    /// Protocol between sidecars.
    pub protocol: Protocol,
    /// TCP connect timeout of the proxies.
    pub connect_timeout: Dur,
    /// How long a proxy waits for response headers (`"0s"` = forever, as Istio).
    pub request_timeout: Dur,
    /// Proxy cost calibration file, relative to the scenario file; the built-in default if absent.
    pub proxy_cost: Option<String>,
    /// Worker threads per proxy in the cost model (Envoy and Linkerd sidecars commonly run 2).
    pub proxy_workers: u32,
    /// Default policy for every service, as a real mesh configures it out of the box; a
    /// service's own `[services.policy]` fields override it field by field.
    pub preset: Option<Preset>,
}

/// What a real mesh does when the user configures nothing (sources: `shared/reference/mesh-defaults.md`,
/// read from the meshes' code on 2026-11-25). Semantics we approximate are noted per preset.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub enum Preset {
    /// Upstream Envoy with no retry policy: 15 s route timeout, no retries, breakers 1024 requests
    /// / 3 retries, round robin, no outlier detection.
    #[serde(rename = "envoy")]
    Envoy,
    /// Istio 1.24+: 2 retries on connect-failure, refused-stream and gRPC unavailable/cancelled,
    /// each retry to a host not tried yet (`previous_hosts`, 5 picks), 25–250 ms jittered backoff,
    /// no budget, no per-try or route timeout, effectively unlimited breakers, least request.
    #[serde(rename = "istio-1.24")]
    Istio124,
    /// Istio up to 1.23: as 1.24, and 503 is retried too.
    #[serde(rename = "istio-1.23")]
    Istio123,
    /// Linkerd 2.16+: no retries, no timeouts, no breakers or failure accrual, peak-EWMA P2C.
    #[serde(rename = "linkerd-2.16")]
    Linkerd216,
    /// Consul service mesh: Envoy's defaults plus outlier detection on by default (5 consecutive
    /// 5xx, 30 s base ejection, 10% max); Consul's default retries are unconfirmed, so none.
    #[serde(rename = "consul")]
    Consul,
}

impl Preset {
    /// The default policy this mesh applies to every service.
    pub fn policy(self) -> PolicySpec {
        let envoy_breaker = Some(BreakerSpec {
            max_requests: 1024,
            max_retries: 3,
            max_connections: 1024,
            max_pending: 1024,
            retry_budget: None,
        });
        let istio = |retry_503: bool| PolicySpec {
            timeout: Some(Dur::from_ms(0)),
            retry: Some(RetrySpec {
                max_retries: 2,
                per_try_timeout: None,
                retry_on: vec![
                    RetryOnSpec::ConnectFailure,
                    RetryOnSpec::RefusedStream,
                    RetryOnSpec::GrpcUnavailable,
                    RetryOnSpec::GrpcCancelled,
                ],
                retry_statuses: if retry_503 { vec![503] } else { vec![] },
                backoff_base: Dur::from_ms(25),
                backoff_max: Dur::from_ms(250),
                budget: None,
                retry_non_idempotent: false,
                avoid_previous_hosts: true,
            }),
            lb: Some(LbSpec::LeastRequest),
            ..PolicySpec::default()
        };
        match self {
            Preset::Envoy => PolicySpec {
                timeout: Some(Dur::from_ms(15_000)),
                circuit_breaker: envoy_breaker,
                lb: Some(LbSpec::RoundRobin),
                ..PolicySpec::default()
            },
            Preset::Istio124 => istio(false),
            Preset::Istio123 => istio(true),
            Preset::Linkerd216 => PolicySpec {
                timeout: Some(Dur::from_ms(0)),
                lb: Some(LbSpec::PeakEwma),
                ..PolicySpec::default()
            },
            Preset::Consul => PolicySpec {
                timeout: Some(Dur::from_ms(15_000)),
                circuit_breaker: envoy_breaker,
                lb: Some(LbSpec::RoundRobin),
                outlier: Some(OutlierSpec {
                    consecutive_failures: 5,
                    base_ejection: Dur::from_ms(30_000),
                    max_ejection: Dur::from_ms(300_000),
                    max_ejection_percent: 10,
                }),
                ..PolicySpec::default()
            },
        }
    }
}

impl PolicySpec {
    /// This policy with any field it leaves unset taken from `base`.
    pub fn over(&self, base: &PolicySpec) -> PolicySpec {
        PolicySpec {
            timeout: self.timeout.or(base.timeout),
            retry: self.retry.clone().or_else(|| base.retry.clone()),
            circuit_breaker: self
                .circuit_breaker
                .clone()
                .or_else(|| base.circuit_breaker.clone()),
            lb: self.lb.or(base.lb),
            hash_header: self
                .hash_header
                .clone()
                .or_else(|| base.hash_header.clone()),
            outlier: self.outlier.clone().or_else(|| base.outlier.clone()),
            rate_limit: self.rate_limit.clone().or_else(|| base.rate_limit.clone()),
            split: self.split.clone().or_else(|| base.split.clone()),
            routes: self.routes.clone().or_else(|| base.routes.clone()),
        }
    }
}

impl Scenario {
    /// The policy the mesh applies to calls to service `i`: its own, over the preset's.
    pub fn effective_policy(&self, i: usize) -> Option<PolicySpec> {
        let preset = self.mesh.preset.map(Preset::policy);
        match (&self.services[i].policy, preset) {
            (Some(own), Some(p)) => Some(own.over(&p)),
            (Some(own), None) => Some(own.clone()),
            (None, p) => p,
        }
    }
}

impl Default for MeshSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            baseline: true,
            protocol: Protocol::Http2,
            connect_timeout: Dur::from_ms(1000),
            request_timeout: Dur::from_ms(15_000),
            proxy_cost: None,
            proxy_workers: 2,
            preset: None,
        }
    }
}

/// The network before any fault.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSpec {
    /// Extra one-way latency on every packet between hosts (the 1 ms tick is always there).
    pub latency: Dur,
    /// Extra one-way latency between hosts in different zones.
    pub cross_zone_latency: Dur,
}

/// A service and how its app behaves.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Name other services and the workload use to call it.
    pub name: Spanned<String>,
    /// Number of pods.
    #[serde(default = "one")]
    pub replicas: u32,
    /// Zones the pods spread over, round robin.
    #[serde(default = "default_zones")]
    pub zones: Vec<String>,
    /// Protocol the app itself speaks (to its sidecar, or directly without the mesh).
    #[serde(default = "http1")]
    pub protocol: Protocol,
    /// Time the app spends on a request, not counting its own calls.
    #[serde(default)]
    pub latency: LatencySpec,
    /// Requests the app works on at once.
    #[serde(default = "default_workers")]
    pub workers: u32,
    /// Requests that may wait for a worker; beyond that the app answers 503.
    #[serde(default = "default_queue")]
    pub queue: u32,
    /// Probability that a request fails with 500.
    #[serde(default)]
    pub error_rate: f64,
    /// Calls the app makes to other services for each request.
    #[serde(default)]
    pub calls: Vec<CallSpec>,
    /// What every caller's sidecar applies to calls to this service (as an Istio
    /// VirtualService + DestinationRule for the host would).
    pub policy: Option<PolicySpec>,
    /// The subset (version) label of the `replicas` pods above (default `v1`).
    #[serde(default = "v1")]
    pub version: String,
    /// More pods of the service with their own version label and, optionally, behaviour
    /// (a canary). Pods are named `<service>-<subset>-<index>`.
    #[serde(default)]
    pub subsets: Vec<SubsetSpec>,
}

fn v1() -> String {
    "v1".into()
}

/// Extra pods of a service under another version label.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsetSpec {
    /// Version label, e.g. `v2`.
    pub name: String,
    /// Pods.
    #[serde(default = "one")]
    pub replicas: u32,
    /// Latency, if different from the service's.
    pub latency: Option<LatencySpec>,
    /// Error rate, if different from the service's.
    pub error_rate: Option<f64>,
}

/// One weighted branch of a traffic split.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    /// The subset (version label).
    pub subset: String,
    /// Relative weight.
    pub weight: u32,
}

impl ServiceSpec {
    /// Every pod of the service: (name, version, latency, error rate), base pods first.
    pub fn pods(&self) -> Vec<(String, String, LatencySpec, f64)> {
        let name = self.name.get_ref();
        let mut out: Vec<_> = (0..self.replicas)
            .map(|r| {
                (
                    format!("{name}-{r}"),
                    self.version.clone(),
                    self.latency.clone(),
                    self.error_rate,
                )
            })
            .collect();
        for sub in &self.subsets {
            for r in 0..sub.replicas {
                out.push((
                    format!("{name}-{}-{r}", sub.name),
                    sub.name.clone(),
                    sub.latency.clone().unwrap_or_else(|| self.latency.clone()),
                    sub.error_rate.unwrap_or(self.error_rate),
                ));
            }
        }
        out
    }
}

/// Resilience policy for calls to a service.
#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Overall timeout, retries included (default: the mesh's `request_timeout`).
    pub timeout: Option<Dur>,
    /// Retries.
    pub retry: Option<RetrySpec>,
    /// Envoy-style circuit-breaker thresholds.
    pub circuit_breaker: Option<BreakerSpec>,
    /// Load balancer: `round-robin` (default), `random`, `least-request`, `peak-ewma`, `ring-hash`.
    pub lb: Option<LbSpec>,
    /// The header `ring-hash` hashes.
    pub hash_header: Option<String>,
    /// Outlier detection (ejection of failing endpoints).
    pub outlier: Option<OutlierSpec>,
    /// Local rate limit at each of the service's own sidecars (inbound); 429 beyond it.
    pub rate_limit: Option<RateLimitSpec>,
    /// Weighted split across the service's subsets (canary), e.g. 90 to `v1`, 10 to `v2`.
    pub split: Option<Vec<SplitSpec>>,
    /// Routes, tried in order: requests that match take the route's timeout, retry and split.
    pub routes: Option<Vec<RouteRuleSpec>>,
}

/// A header/path/method route for calls to a service.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRuleSpec {
    /// Name, for reports.
    pub name: String,
    /// Path starts with this.
    pub path_prefix: Option<String>,
    /// Method equals this.
    pub method: Option<String>,
    /// Headers that must be present with these values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Overall timeout for these requests.
    pub timeout: Option<Dur>,
    /// Retries for these requests.
    pub retry: Option<RetrySpec>,
    /// Split for these requests.
    pub split: Option<Vec<SplitSpec>>,
    /// Local rate limit for these requests at each of the service's sidecars, in place of the
    /// service-wide one.
    pub rate_limit: Option<RateLimitSpec>,
}

/// A token bucket per sidecar.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Sustained requests per second per pod.
    pub rps: f64,
    /// Requests allowed at once on a full bucket (default: one second's worth).
    #[serde(default)]
    pub burst: u32,
}

impl RateLimitSpec {
    /// The mesh-core bucket settings (a zero burst means one second's worth).
    pub fn to_limit(&self) -> mesh_core::ratelimit::RateLimit {
        mesh_core::ratelimit::RateLimit {
            rps: self.rps,
            burst: if self.burst == 0 {
                self.rps.ceil() as u32
            } else {
                self.burst
            },
        }
    }
}

/// A load-balancing algorithm.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LbSpec {
    /// In turn.
    #[default]
    RoundRobin,
    /// At random.
    Random,
    /// Power of two choices, fewer requests in flight.
    LeastRequest,
    /// Power of two choices, peak-EWMA latency × load (Linkerd; 30 ms default RTT, 10 s decay).
    PeakEwma,
    /// Consistent hash of `hash_header`.
    RingHash,
}

/// Outlier detection, Envoy's defaults.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierSpec {
    /// Consecutive 5xx or gateway errors that eject (default 5).
    #[serde(default = "five")]
    pub consecutive_failures: u32,
    /// Ejection time per ejection so far (default 30s).
    #[serde(default = "thirty_s")]
    pub base_ejection: Dur,
    /// Longest ejection (default 300s).
    #[serde(default = "three_hundred_s")]
    pub max_ejection: Dur,
    /// Largest share of endpoints ejected at once, percent (default 10; at least one endpoint).
    #[serde(default = "ten")]
    pub max_ejection_percent: u32,
}

fn five() -> u32 {
    5
}
fn thirty_s() -> Dur {
    Dur::from_ms(30_000)
}
fn three_hundred_s() -> Dur {
    Dur::from_ms(300_000)
}

/// How calls are retried.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Bound on each attempt.
    pub per_try_timeout: Option<Dur>,
    /// Conditions: `5xx`, `gateway-error`, `connect-failure`, `reset`, `refused-stream`, and the
    /// gRPC statuses `cancelled`, `deadline-exceeded`, `resource-exhausted`, `internal`,
    /// `unavailable`.
    #[serde(default = "default_retry_on")]
    pub retry_on: Vec<RetryOnSpec>,
    /// Extra statuses that are retryable (e.g. 429).
    #[serde(default)]
    pub retry_statuses: Vec<u16>,
    /// First backoff (default 25ms, Envoy's and Linkerd's).
    #[serde(default = "default_backoff_base")]
    pub backoff_base: Dur,
    /// Largest backoff (default 250ms).
    #[serde(default = "default_backoff_max")]
    pub backoff_max: Dur,
    /// Retry budget; unlimited when absent.
    pub budget: Option<BudgetSpec>,
    /// Retry POST and other non-idempotent methods too.
    #[serde(default)]
    pub retry_non_idempotent: bool,
    /// Send each retry to an endpoint not tried yet when one is found in 5 picks (Envoy's
    /// `previous_hosts` predicate; Istio sets it).
    #[serde(default)]
    pub avoid_previous_hosts: bool,
}

fn default_retry_on() -> Vec<RetryOnSpec> {
    vec![
        RetryOnSpec::GatewayError,
        RetryOnSpec::ConnectFailure,
        RetryOnSpec::Reset,
    ]
}
fn default_backoff_base() -> Dur {
    Dur::from_ms(25)
}
fn default_backoff_max() -> Dur {
    Dur::from_ms(250)
}

/// A retryable condition.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub enum RetryOnSpec {
    /// Any 5xx.
    #[serde(rename = "5xx")]
    Status5xx,
    /// 502, 503, 504.
    #[serde(rename = "gateway-error")]
    GatewayError,
    /// Connect failed or timed out.
    #[serde(rename = "connect-failure")]
    ConnectFailure,
    /// Upstream reset before responding.
    #[serde(rename = "reset")]
    Reset,
    /// HTTP/2 stream refused unprocessed (`REFUSED_STREAM`); retried even for POST.
    #[serde(rename = "refused-stream")]
    RefusedStream,
    /// gRPC status CANCELLED (1).
    #[serde(rename = "cancelled")]
    GrpcCancelled,
    /// gRPC status DEADLINE_EXCEEDED (4).
    #[serde(rename = "deadline-exceeded")]
    GrpcDeadlineExceeded,
    /// gRPC status RESOURCE_EXHAUSTED (8).
    #[serde(rename = "resource-exhausted")]
    GrpcResourceExhausted,
    /// gRPC status INTERNAL (13).
    #[serde(rename = "internal")]
    GrpcInternal,
    /// gRPC status UNAVAILABLE (14).
    #[serde(rename = "unavailable")]
    GrpcUnavailable,
}

impl RetryOnSpec {
    /// The gRPC status code this condition names, if it is a gRPC one.
    pub fn grpc_code(self) -> Option<u16> {
        match self {
            RetryOnSpec::GrpcCancelled => Some(1),
            RetryOnSpec::GrpcDeadlineExceeded => Some(4),
            RetryOnSpec::GrpcResourceExhausted => Some(8),
            RetryOnSpec::GrpcInternal => Some(13),
            RetryOnSpec::GrpcUnavailable => Some(14),
            _ => None,
        }
    }
}

/// A retry budget.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    /// Retries per original request over the window (Linkerd's 0.2).
    pub ratio: f64,
    /// Free retries per second (Linkerd's 10).
    #[serde(default = "ten")]
    pub min_per_sec: u32,
    /// Window (Linkerd's 10s; 1s to 60s).
    #[serde(default = "ten_s")]
    pub window: Dur,
}

fn ten() -> u32 {
    10
}
fn ten_s() -> Dur {
    Dur::from_ms(10_000)
}

/// Circuit-breaker thresholds.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSpec {
    /// Requests in flight to the service from one sidecar (Envoy's default 1024).
    #[serde(default = "envoy_1024")]
    pub max_requests: u32,
    /// Retries in flight (Envoy's default 3); ignored when `retry_budget` is set.
    #[serde(default = "three")]
    pub max_retries: u32,
    /// Connections to the service's endpoints from one sidecar (Envoy's default 1024). HTTP/1.1
    /// carries one exchange per connection, so this bounds concurrent HTTP/1.1 attempts; an
    /// HTTP/2 service multiplexes and is bounded by `max_requests`.
    #[serde(default = "envoy_1024")]
    pub max_connections: u32,
    /// Attempts waiting for a connection (Envoy's default 1024); beyond it they fast-fail.
    #[serde(default = "envoy_1024")]
    pub max_pending: u32,
    /// Envoy's retry budget (replaces `max_retries`).
    pub retry_budget: Option<ConcurrencyBudgetSpec>,
}

/// Envoy's `retry_budget`: retries in flight up to a percent of requests in flight.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyBudgetSpec {
    /// Percent of active and pending requests (Envoy's default 20).
    #[serde(default = "twenty")]
    pub percent: f64,
    /// Retries always allowed in flight (Envoy's default 3).
    #[serde(default = "three")]
    pub min_concurrency: u32,
}

fn twenty() -> f64 {
    20.0
}

fn envoy_1024() -> u32 {
    1024
}
fn three() -> u32 {
    3
}

/// The mesh-core retry policy `r` describes.
fn retry_policy(r: &RetrySpec) -> mesh_core::policy::RetryPolicy {
    use mesh_core::policy::{Budget, RetryOn, RetryPolicy};
    RetryPolicy {
        max_retries: r.max_retries,
        per_try_timeout: r.per_try_timeout.map(|d| d.0),
        retry_on: RetryOn {
            status_5xx: r.retry_on.contains(&RetryOnSpec::Status5xx),
            gateway_error: r.retry_on.contains(&RetryOnSpec::GatewayError),
            connect_failure: r.retry_on.contains(&RetryOnSpec::ConnectFailure),
            reset: r.retry_on.contains(&RetryOnSpec::Reset),
            refused_stream: r.retry_on.contains(&RetryOnSpec::RefusedStream),
            statuses: r.retry_statuses.clone(),
            grpc: r.retry_on.iter().filter_map(|c| c.grpc_code()).collect(),
        },
        backoff_base: r.backoff_base.0,
        backoff_max: r.backoff_max.0,
        budget: r.budget.as_ref().map(|b| Budget {
            ratio: b.ratio as f32,
            min_per_sec: b.min_per_sec,
            ttl: b.window.0,
        }),
        retry_non_idempotent: r.retry_non_idempotent,
        avoid_previous_hosts: r.avoid_previous_hosts,
    }
}

impl PolicySpec {
    /// The mesh-core policy this describes.
    pub fn to_policy(&self) -> mesh_core::policy::ServicePolicy {
        use mesh_core::policy::{CircuitBreaker, LbPolicy, OutlierDetection, ServicePolicy};
        ServicePolicy {
            timeout: self.timeout.map(|d| d.0),
            retry: self.retry.as_ref().map(retry_policy),
            circuit_breaker: self.circuit_breaker.as_ref().map(|c| CircuitBreaker {
                max_requests: c.max_requests,
                max_retries: c.max_retries,
                max_connections: c.max_connections,
                max_pending: c.max_pending,
                retry_budget: c.retry_budget.as_ref().map(|b| {
                    mesh_core::policy::ConcurrencyBudget {
                        percent: b.percent,
                        min_concurrency: b.min_concurrency,
                    }
                }),
            }),
            lb: match self.lb.unwrap_or_default() {
                LbSpec::RoundRobin => LbPolicy::RoundRobin,
                LbSpec::Random => LbPolicy::Random,
                LbSpec::LeastRequest => LbPolicy::LeastRequest,
                LbSpec::PeakEwma => LbPolicy::PeakEwma {
                    default_rtt: std::time::Duration::from_millis(30),
                    decay: std::time::Duration::from_secs(10),
                },
                LbSpec::RingHash => LbPolicy::RingHash {
                    header: self.hash_header.clone().unwrap_or_default(),
                },
            },
            outlier: self.outlier.as_ref().map(|o| OutlierDetection {
                consecutive_failures: o.consecutive_failures,
                base_ejection: o.base_ejection.0,
                max_ejection: o.max_ejection.0,
                max_ejection_percent: o.max_ejection_percent.min(100),
            }),
            split: self
                .split
                .iter()
                .flatten()
                .map(|b| (b.subset.clone(), b.weight))
                .collect(),
            routes: self
                .routes
                .iter()
                .flatten()
                .map(|r| mesh_core::policy::RoutePolicy {
                    name: r.name.clone(),
                    matcher: mesh_core::policy::RouteMatch {
                        path_prefix: r.path_prefix.clone(),
                        method: r
                            .method
                            .as_ref()
                            .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok()),
                        headers: r
                            .headers
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    },
                    timeout: r.timeout.map(|d| d.0),
                    retry: r.retry.as_ref().map(retry_policy),
                    split: r
                        .split
                        .as_ref()
                        .map(|s| s.iter().map(|b| (b.subset.clone(), b.weight)).collect()),
                })
                .collect(),
        }
    }

    /// The per-route rate limits this policy's routes set, for the service's own sidecars.
    pub fn route_limits(&self) -> Vec<mesh_core::proxy::RouteLimit> {
        let policy = self.to_policy();
        self.routes
            .iter()
            .flatten()
            .zip(policy.routes)
            .filter_map(|(spec, route)| {
                Some(mesh_core::proxy::RouteLimit {
                    name: route.name,
                    matcher: route.matcher,
                    limit: spec.rate_limit.as_ref()?.to_limit(),
                })
            })
            .collect()
    }
}

fn one() -> u32 {
    1
}
fn default_zones() -> Vec<String> {
    vec!["a".into()]
}
fn http1() -> Protocol {
    Protocol::Http1
}
fn default_workers() -> u32 {
    64
}
fn default_queue() -> u32 {
    1024
}

/// A call an app makes downstream while serving a request.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallSpec {
    /// The service called.
    pub service: Spanned<String>,
    /// Method of the call.
    #[serde(default = "get")]
    pub method: String,
    /// Path of the call.
    #[serde(default = "slash")]
    pub path: String,
    /// How many calls of this kind per request.
    #[serde(default = "one")]
    pub fanout: u32,
    /// Whether the fan-out calls run at once (true) or one after another.
    #[serde(default = "yes")]
    pub parallel: bool,
    /// Probability that this call happens at all for a given request.
    #[serde(default = "certain")]
    pub probability: f64,
}

fn get() -> String {
    "GET".into()
}
fn slash() -> String {
    "/".into()
}
fn yes() -> bool {
    true
}
fn certain() -> f64 {
    1.0
}

/// A latency distribution.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "dist", rename_all = "lowercase", deny_unknown_fields)]
pub enum LatencySpec {
    /// Always `value`.
    Constant {
        /// The latency.
        value: Dur,
    },
    /// Uniform between `min` and `max`.
    Uniform {
        /// Lower bound.
        min: Dur,
        /// Upper bound.
        max: Dur,
    },
    /// Exponential with mean `mean`.
    Exponential {
        /// Mean.
        mean: Dur,
    },
    /// Log-normal fitted to a median and a 99th percentile (the usual shape of service latency).
    Lognormal {
        /// Median.
        p50: Dur,
        /// 99th percentile; must exceed the median.
        p99: Dur,
    },
}

impl Default for LatencySpec {
    fn default() -> Self {
        LatencySpec::Constant {
            value: Dur::from_ms(1),
        }
    }
}

/// The load the workload generators put on the mesh.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// The service requests enter at.
    pub target: Spanned<String>,
    /// `open` (Poisson arrivals at `rate_rps`, whatever the latency) or `closed` (`users` loops).
    #[serde(default)]
    pub model: LoadModel,
    /// Arrival rate for the open model, requests per second over all clients.
    pub rate_rps: Option<f64>,
    /// Concurrent users for the closed model.
    pub users: Option<u32>,
    /// Pause between a user's requests (closed model).
    #[serde(default)]
    pub think: Dur,
    /// Client hosts the load comes from.
    #[serde(default = "one")]
    pub clients: u32,
    /// How long requests are sent, including warm-up.
    pub duration: Dur,
    /// Requests sent before this are not measured.
    #[serde(default)]
    pub warmup: Dur,
    /// A client gives up on a request after this long (outcome `client_timeout`).
    #[serde(default = "default_client_timeout")]
    pub timeout: Dur,
    /// The requests, picked by weight.
    #[serde(default = "default_routes")]
    pub routes: Vec<RouteSpec>,
}

fn default_client_timeout() -> Dur {
    Dur::from_ms(30_000)
}

fn default_routes() -> Vec<RouteSpec> {
    vec![RouteSpec {
        method: get(),
        path: slash(),
        weight: 1,
        headers: BTreeMap::new(),
    }]
}

/// How requests arrive.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LoadModel {
    /// Arrivals independent of responses (Poisson), as real users behave.
    #[default]
    Open,
    /// Each user waits for its response before the next request.
    Closed,
}

/// One kind of request in the workload.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// HTTP method.
    #[serde(default = "get")]
    pub method: String,
    /// Path and query.
    #[serde(default = "slash")]
    pub path: String,
    /// Relative frequency.
    #[serde(default = "one")]
    pub weight: u32,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl RouteSpec {
    /// The route's name in reports: `GET /api`.
    pub fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// One entry of the fault time line. `at` is when it starts; `until`, where allowed, when it is undone.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum FaultSpec {
    /// Extra latency (and jitter) on packets between two groups.
    Latency {
        /// Start.
        at: Dur,
        /// End (never, if absent).
        until: Option<Dur>,
        /// The two groups (service name, pod name, or `clients`).
        between: [String; 2],
        /// Extra one-way delay.
        delay: Dur,
        /// Each packet's delay varies uniformly by up to this much either way.
        #[serde(default)]
        jitter: Dur,
        /// Only packets from the first group to the second.
        #[serde(default)]
        one_way: bool,
    },
    /// Packets between two groups are dropped.
    Partition {
        /// Start.
        at: Dur,
        /// Heal (never, if absent).
        until: Option<Dur>,
        /// The two groups.
        between: [String; 2],
        /// Only packets from the first group to the second.
        #[serde(default)]
        one_way: bool,
    },
    /// Packets between two groups are held, then all delivered at `until`.
    Hold {
        /// Start.
        at: Dur,
        /// Release.
        until: Dur,
        /// The two groups.
        between: [String; 2],
        /// Only packets from the first group to the second.
        #[serde(default)]
        one_way: bool,
    },
    /// A pod stops: its processes die and its packets vanish. It restarts at `until`, if given.
    Crash {
        /// Start.
        at: Dur,
        /// Restart (never, if absent).
        until: Option<Dur>,
        /// The pod, e.g. `db-0`.
        pod: String,
    },
    /// A service (or one pod of it) gets slower by `extra` per request.
    Slow {
        /// Start.
        at: Dur,
        /// End (never, if absent).
        until: Option<Dur>,
        /// The service.
        service: String,
        /// Only this pod, if given.
        pod: Option<String>,
        /// Added latency per request.
        extra: Dur,
    },
    /// A service (or one pod of it) fails a share of requests with 500.
    Errors {
        /// Start.
        at: Dur,
        /// End (never, if absent).
        until: Option<Dur>,
        /// The service.
        service: String,
        /// Only this pod, if given.
        pod: Option<String>,
        /// Probability of a 500.
        rate: f64,
    },
}

impl FaultSpec {
    /// When the fault starts.
    pub fn at(&self) -> Dur {
        match self {
            FaultSpec::Latency { at, .. }
            | FaultSpec::Partition { at, .. }
            | FaultSpec::Hold { at, .. }
            | FaultSpec::Crash { at, .. }
            | FaultSpec::Slow { at, .. }
            | FaultSpec::Errors { at, .. } => *at,
        }
    }

    /// When the fault is undone, if ever.
    pub fn until(&self) -> Option<Dur> {
        match self {
            FaultSpec::Hold { until, .. } => Some(*until),
            FaultSpec::Latency { until, .. }
            | FaultSpec::Partition { until, .. }
            | FaultSpec::Crash { until, .. }
            | FaultSpec::Slow { until, .. }
            | FaultSpec::Errors { until, .. } => *until,
        }
    }

    /// The fault's kind, as written.
    pub fn kind(&self) -> &'static str {
        match self {
            FaultSpec::Latency { .. } => "latency",
            FaultSpec::Partition { .. } => "partition",
            FaultSpec::Hold { .. } => "hold",
            FaultSpec::Crash { .. } => "crash",
            FaultSpec::Slow { .. } => "slow",
            FaultSpec::Errors { .. } => "errors",
        }
    }
}

/// A scenario file that could not be used. Displays as `file:line:column: field `x`: message`.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{column}: {field}: {message}")]
pub struct ScenarioError {
    /// The file.
    pub file: String,
    /// 1-based line (0 when the whole file is at fault).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The field's path, e.g. `services[1].latency.p99`, or `(file)`.
    pub field: String,
    /// What was wrong and what was expected.
    pub message: String,
}

/// A scenario as loaded: the parsed data plus where it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The scenario.
    pub scenario: Scenario,
    /// The file it came from.
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, hex.
    pub hash: String,
    /// The proxy cost model the scenario uses.
    pub cost: crate::cost::Calibration,
}

/// Read, parse and validate a scenario file.
pub fn load(path: &Path) -> Result<Loaded, ScenarioError> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: file.clone(),
        line: 0,
        column: 0,
        field: "(file)".into(),
        message: format!("cannot read: {e}"),
    })?;
    let scenario = parse(&file, &src)?;
    let cost = match &scenario.mesh.proxy_cost {
        None => crate::cost::Calibration::builtin(),
        Some(rel) => {
            let p = path.parent().unwrap_or(Path::new(".")).join(rel);
            crate::cost::Calibration::load(&p).map_err(|message| ScenarioError {
                line: line_of_text(&src, "proxy_cost").0,
                column: 1,
                file: file.clone(),
                field: "mesh.proxy_cost".into(),
                message,
            })?
        }
    };
    use sha2::Digest;
    let hash = sha2::Sha256::digest(src.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Loaded {
        scenario,
        path: path.to_path_buf(),
        hash,
        cost,
    })
}

/// Parse and validate scenario text; `file` names it in errors.
pub fn parse(file: &str, src: &str) -> Result<Scenario, ScenarioError> {
    let de =
        toml::de::Deserializer::parse(src).map_err(|e| toml_error(file, src, "(syntax)", &e))?;
    let scenario: Scenario = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        toml_error(file, src, &path, e.inner())
    })?;
    validate(file, src, &scenario)?;
    Ok(scenario)
}

fn toml_error(file: &str, src: &str, field: &str, e: &toml::de::Error) -> ScenarioError {
    let mut offset = e.span().map(|s| s.start);
    // For an unknown field serde points at the table; point at the field itself.
    let unknown = e
        .message()
        .strip_prefix("unknown field `")
        .and_then(|m| m.split('`').next());
    if let (Some(name), Some(start)) = (unknown, offset)
        && let Some(i) = find_key(&src[start..], name)
    {
        offset = Some(start + i);
    }
    let (line, column) = offset.map(|o| line_col(src, o)).unwrap_or((0, 0));
    let field = field.replace(".$__serde_spanned_private_value", "");
    // Syntax errors (a duplicate key, say) point at the offending text; name it.
    let spanned_text = e
        .span()
        .and_then(|s| src.get(s))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 40 && !t.contains('\n'));
    let field = match (field.as_str(), spanned_text) {
        ("(syntax)", Some(t)) => format!("(syntax) `{t}`"),
        _ => field,
    };
    let field = match (field.as_str(), unknown) {
        ("" | "?" | ".", Some(name)) => name.to_string(),
        ("" | "?" | ".", None) => "(top level)".to_string(),
        (path, Some(name)) if !path.ends_with(name) => format!("{path}.{name}"),
        (path, _) => path.to_string(),
    };
    ScenarioError {
        file: file.to_string(),
        line,
        column,
        field,
        message: e.message().trim().to_string(),
    }
}

/// Offset of the first `key =` (at a line start or after `{`/`,`) in `text`.
fn find_key(text: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find(key) {
        let at = from + i;
        let before = text[..at].trim_end_matches([' ', '\t']);
        let after = text[at + key.len()..].trim_start_matches([' ', '\t']);
        if (before.is_empty() || before.ends_with(['\n', '{', ','])) && after.starts_with('=') {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}

/// 1-based line and column of byte `offset` in `src`.
fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

/// Line of the first occurrence of `needle` (for fields serde kept no span for).
fn line_of_text(src: &str, needle: &str) -> (usize, usize) {
    src.find(needle).map(|o| line_col(src, o)).unwrap_or((0, 0))
}

fn validate(file: &str, src: &str, s: &Scenario) -> Result<(), ScenarioError> {
    let err_at = |span: std::ops::Range<usize>, field: String, message: String| {
        let (line, column) = line_col(src, span.start);
        ScenarioError {
            file: file.to_string(),
            line,
            column,
            field,
            message,
        }
    };
    let err_text = |needle: &str, field: String, message: String| {
        let (line, column) = line_of_text(src, needle);
        ScenarioError {
            file: file.to_string(),
            line,
            column,
            field,
            message,
        }
    };

    if s.services.is_empty() {
        return Err(err_text(
            "[workload]",
            "services".into(),
            "expected at least one [[services]] table".into(),
        ));
    }
    let mut names = BTreeSet::new();
    for (i, svc) in s.services.iter().enumerate() {
        let name = svc.name.get_ref();
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && name != "clients"
            && name != "control-plane";
        if !valid {
            return Err(err_at(
                svc.name.span(),
                format!("services[{i}].name"),
                format!(
                    "expected a DNS-style name of lowercase letters, digits and '-' (not `clients` or `control-plane`), found {name:?}"
                ),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(err_at(
                svc.name.span(),
                format!("services[{i}].name"),
                format!("service {name:?} is defined twice"),
            ));
        }
        let field = |f: &str| format!("services[{i}].{f}");
        if svc.replicas == 0 || svc.replicas > 5000 {
            return Err(err_at(
                svc.name.span(),
                field("replicas"),
                "expected 1 to 5000 replicas".into(),
            ));
        }
        if svc.zones.is_empty() {
            return Err(err_at(
                svc.name.span(),
                field("zones"),
                "expected at least one zone".into(),
            ));
        }
        if svc.workers == 0 {
            return Err(err_at(
                svc.name.span(),
                field("workers"),
                "expected at least 1 worker".into(),
            ));
        }
        if !(0.0..=1.0).contains(&svc.error_rate) {
            return Err(err_at(
                svc.name.span(),
                field("error_rate"),
                "expected a probability between 0 and 1".into(),
            ));
        }
        if let LatencySpec::Lognormal { p50, p99 } = &svc.latency
            && (p99 <= p50 || p50.as_us() == 0)
        {
            return Err(err_at(
                svc.name.span(),
                field("latency"),
                "lognormal needs 0 < p50 < p99".into(),
            ));
        }
        if let LatencySpec::Uniform { min, max } = &svc.latency
            && max < min
        {
            return Err(err_at(
                svc.name.span(),
                field("latency"),
                "uniform needs min <= max".into(),
            ));
        }
    }
    for (i, svc) in s.services.iter().enumerate() {
        let mut versions = BTreeSet::from([svc.version.clone()]);
        for (k, sub) in svc.subsets.iter().enumerate() {
            if !versions.insert(sub.name.clone()) || sub.name.is_empty() {
                return Err(err_at(
                    svc.name.span(),
                    format!("services[{i}].subsets[{k}].name"),
                    format!(
                        "subset {:?} is empty or defined twice (the base pods are {:?})",
                        sub.name, svc.version
                    ),
                ));
            }
        }
        let Some(p) = &svc.policy else { continue };
        let field = |f: &str| format!("services[{i}].policy.{f}");
        for (k, r) in p.routes.iter().flatten().enumerate() {
            if r.method
                .as_ref()
                .is_some_and(|m| http::Method::from_bytes(m.as_bytes()).is_err())
            {
                return Err(err_at(
                    svc.name.span(),
                    field(&format!("routes[{k}].method")),
                    "expected an HTTP method".into(),
                ));
            }
            if let Some(b) = r
                .split
                .iter()
                .flatten()
                .find(|b| !versions.contains(&b.subset))
            {
                return Err(err_at(
                    svc.name.span(),
                    field(&format!("routes[{k}].split")),
                    format!("no subset {:?}; expected one of {versions:?}", b.subset),
                ));
            }
            if let Some(rl) = &r.rate_limit
                && !(rl.rps > 0.0 && rl.rps <= 1e6)
            {
                return Err(err_at(
                    svc.name.span(),
                    field(&format!("routes[{k}].rate_limit.rps")),
                    "expected a rate above 0".into(),
                ));
            }
        }
        for b in p.split.iter().flatten() {
            if !versions.contains(&b.subset) {
                return Err(err_at(
                    svc.name.span(),
                    field("split"),
                    format!("no subset {:?}; expected one of {versions:?}", b.subset),
                ));
            }
        }
        if (p.lb == Some(LbSpec::RingHash)) != p.hash_header.is_some() {
            return Err(err_at(
                svc.name.span(),
                field("hash_header"),
                "`lb = \"ring-hash\"` needs `hash_header`, and only it takes one".into(),
            ));
        }
        if let Some(r) = &p.retry {
            if r.max_retries > 100 {
                return Err(err_at(
                    svc.name.span(),
                    field("retry.max_retries"),
                    "expected at most 100 retries".into(),
                ));
            }
            if r.backoff_max < r.backoff_base {
                return Err(err_at(
                    svc.name.span(),
                    field("retry.backoff_max"),
                    "expected backoff_max >= backoff_base".into(),
                ));
            }
            if let Some(b) = &r.budget
                && (!(0.0..=10.0).contains(&b.ratio)
                    || b.window.as_ms() < 1000
                    || b.window.as_ms() > 60_000)
            {
                return Err(err_at(
                    svc.name.span(),
                    field("retry.budget"),
                    "expected 0 <= ratio <= 10 and a window between 1s and 60s".into(),
                ));
            }
        }
        if let Some(r) = &p.rate_limit
            && !(r.rps > 0.0 && r.rps <= 1e6)
        {
            return Err(err_at(
                svc.name.span(),
                field("rate_limit.rps"),
                "expected a rate above 0".into(),
            ));
        }
        if let Some(c) = &p.circuit_breaker {
            for (name, v) in [
                ("max_requests", c.max_requests),
                ("max_connections", c.max_connections),
            ] {
                if v == 0 {
                    return Err(err_at(
                        svc.name.span(),
                        field(&format!("circuit_breaker.{name}")),
                        "expected at least 1".into(),
                    ));
                }
            }
            if let Some(b) = &c.retry_budget
                && !(0.0..=100.0).contains(&b.percent)
            {
                return Err(err_at(
                    svc.name.span(),
                    field("circuit_breaker.retry_budget.percent"),
                    "expected a percent between 0 and 100".into(),
                ));
            }
        }
    }
    let total_pods: u64 = s.services.iter().map(|s| s.pods().len() as u64).sum();
    if total_pods > 5000 {
        return Err(err_text(
            "replicas",
            "services".into(),
            format!("at most 5000 pods in all; found {total_pods}"),
        ));
    }
    for (i, svc) in s.services.iter().enumerate() {
        for (j, call) in svc.calls.iter().enumerate() {
            let field = format!("services[{i}].calls[{j}]");
            if !names.contains(call.service.get_ref()) {
                return Err(err_at(
                    call.service.span(),
                    format!("{field}.service"),
                    format!(
                        "no service named {:?}; expected one of {:?}",
                        call.service.get_ref(),
                        names
                    ),
                ));
            }
            if !(0.0..=1.0).contains(&call.probability) || call.fanout == 0 || call.fanout > 100 {
                return Err(err_at(
                    call.service.span(),
                    field,
                    "expected 0 <= probability <= 1 and 1 <= fanout <= 100".into(),
                ));
            }
        }
    }
    if let Some(cycle) = find_cycle(s) {
        return Err(err_text(
            "calls",
            "services.calls".into(),
            format!(
                "calls form a cycle ({}); requests would never finish",
                cycle.join(" -> ")
            ),
        ));
    }
    let w = &s.workload;
    if !names.contains(w.target.get_ref()) {
        return Err(err_at(
            w.target.span(),
            "workload.target".into(),
            format!(
                "no service named {:?}; expected one of {:?}",
                w.target.get_ref(),
                names
            ),
        ));
    }
    match w.model {
        LoadModel::Open => match w.rate_rps {
            Some(r) if r > 0.0 && r <= 1_000_000.0 => {}
            _ => {
                return Err(err_text(
                    "[workload]",
                    "workload.rate_rps".into(),
                    "the open model needs rate_rps between 0 and 1000000".into(),
                ));
            }
        },
        LoadModel::Closed => match w.users {
            Some(u) if u > 0 && u <= 100_000 => {}
            _ => {
                return Err(err_text(
                    "[workload]",
                    "workload.users".into(),
                    "the closed model needs users between 1 and 100000".into(),
                ));
            }
        },
    }
    if w.duration.as_ms() == 0 || w.warmup >= w.duration {
        return Err(err_text(
            "duration",
            "workload.duration".into(),
            "expected a duration longer than the warm-up".into(),
        ));
    }
    if w.clients == 0 || w.clients > 1000 {
        return Err(err_text(
            "[workload]",
            "workload.clients".into(),
            "expected 1 to 1000 client hosts".into(),
        ));
    }
    if w.routes.is_empty() || w.routes.iter().all(|r| r.weight == 0) {
        return Err(err_text(
            "routes",
            "workload.routes".into(),
            "expected at least one route with a weight above 0".into(),
        ));
    }
    for (k, r) in w.routes.iter().enumerate() {
        if http::Method::from_bytes(r.method.as_bytes()).is_err() || !r.path.starts_with('/') {
            return Err(err_text(
                &r.path,
                format!("workload.routes[{k}]"),
                "expected an HTTP method and a path starting with '/'".into(),
            ));
        }
    }

    let pods: BTreeSet<String> = s
        .services
        .iter()
        .flat_map(|svc| svc.pods().into_iter().map(|p| p.0))
        .collect();
    for (k, f) in s.faults.iter().enumerate() {
        let field = format!("faults[{k}]");
        let bad = |message: String| err_at(f.span(), field.clone(), message);
        let group_ok = |g: &str| g == "clients" || names.contains(g) || pods.contains(g);
        let fault = f.get_ref();
        if let Some(until) = fault.until()
            && until <= fault.at()
        {
            return Err(bad(format!(
                "`until` ({until}) must come after `at` ({})",
                fault.at()
            )));
        }
        match fault {
            FaultSpec::Latency { between, .. }
            | FaultSpec::Partition { between, .. }
            | FaultSpec::Hold { between, .. } => {
                for g in between {
                    if !group_ok(g) {
                        return Err(bad(format!(
                            "`between` names {g:?}; expected a service, a pod (e.g. \"{}-0\") or \"clients\"",
                            s.services[0].name.get_ref()
                        )));
                    }
                }
            }
            FaultSpec::Crash { pod, .. } => {
                if !pods.contains(pod) {
                    return Err(bad(format!(
                        "no pod named {pod:?}; pods are named <service>-<index>, e.g. \"{}-0\"",
                        s.services[0].name.get_ref()
                    )));
                }
            }
            FaultSpec::Slow { service, pod, .. } | FaultSpec::Errors { service, pod, .. } => {
                if !names.contains(service) {
                    return Err(bad(format!("no service named {service:?}")));
                }
                if let Some(p) = pod
                    && (!p.starts_with(&format!("{service}-")) || !pods.contains(p))
                {
                    return Err(bad(format!("no pod {p:?} in service {service:?}")));
                }
                if let FaultSpec::Errors { rate, .. } = fault
                    && !(0.0..=1.0).contains(rate)
                {
                    return Err(bad("`rate` must be a probability between 0 and 1".into()));
                }
            }
        }
    }
    Ok(())
}

fn find_cycle(s: &Scenario) -> Option<Vec<String>> {
    let edges: BTreeMap<&str, Vec<&str>> = s
        .services
        .iter()
        .map(|svc| {
            (
                svc.name.get_ref().as_str(),
                svc.calls
                    .iter()
                    .map(|c| c.service.get_ref().as_str())
                    .collect(),
            )
        })
        .collect();
    fn visit<'a>(
        n: &'a str,
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| *s == n) {
            let mut c: Vec<String> = stack[pos..].iter().map(|s| s.to_string()).collect();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n);
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n);
        None
    }
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        if let Some(c) = visit(n, &edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests;
