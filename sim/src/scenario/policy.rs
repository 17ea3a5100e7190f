//! A service's `[services.policy]`: retries, budgets, breakers, balancing, outlier detection,
//! splits, routes and rate limits as the file states them, and their lowering to mesh-core's
//! runtime policy types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::*;

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
    /// Send each retry to the pod the first attempt went to (a proxy behind an L4 balancer that
    /// already chose it, as Cilium's Envoy is); excludes `avoid_previous_hosts`.
    #[serde(default)]
    pub same_endpoint: bool,
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
/// Fields left out take Envoy's defaults, stated once in the `Default` impl (the presets use it
/// too).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSpec {
    /// Requests in flight to the service from one sidecar (Envoy's default 1024).
    pub max_requests: u32,
    /// Retries in flight (Envoy's default 3); ignored when `retry_budget` is set.
    pub max_retries: u32,
    /// Connections to the service's endpoints from one sidecar (Envoy's default 1024). HTTP/1.1
    /// carries one exchange per connection, so this bounds concurrent HTTP/1.1 attempts; an
    /// HTTP/2 service multiplexes and is bounded by `max_requests`.
    pub max_connections: u32,
    /// Attempts waiting for a connection (Envoy's default 1024); beyond it they fast-fail.
    pub max_pending: u32,
    /// Envoy's retry budget (replaces `max_retries`).
    pub retry_budget: Option<ConcurrencyBudgetSpec>,
}

impl Default for BreakerSpec {
    /// Envoy's circuit-breaker defaults, as mesh-core states them.
    fn default() -> Self {
        let envoy = mesh_core::policy::CircuitBreaker::envoy_defaults();
        Self {
            max_requests: envoy.max_requests,
            max_retries: envoy.max_retries,
            max_connections: envoy.max_connections,
            max_pending: envoy.max_pending,
            retry_budget: None,
        }
    }
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
        same_endpoint: r.same_endpoint,
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
