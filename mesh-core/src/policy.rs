//! Resilience policy for calls to a destination service, as plain data. Behaviour lives beside it:
//! [`crate::retry`] (attempts, backoff, budget) and the breaker accounting in [`crate::proxy`].
//!
//! Semantics follow Envoy/Istio where the meshes agree:
//! - the overall `timeout` includes every retry and backoff (Envoy's route timeout);
//! - `per_try_timeout` bounds each attempt, and a per-try timeout is retryable;
//! - a request with a non-idempotent method (RFC 9110 idempotent: GET, HEAD, OPTIONS, TRACE, PUT,
//!   DELETE) is retried only when the upstream never processed it (connect failure, refused
//!   stream), or, for a gRPC call, on a listed gRPC status (gRPC's retry policy, gRFC A6, retries
//!   its POSTs by status), unless `retry_non_idempotent` allows everything. Envoy itself retries
//!   any method; we follow Linkerd, which will not replay a POST that may have taken effect;
//! - backoff is "full jitter": retry *n* waits uniformly in `[0, min(base·2ⁿ, max))` (Envoy; 25 ms /
//!   250 ms are Envoy's and Linkerd's defaults);
//! - a retry budget, when set, allows retries up to `ratio` of recent requests plus `min_per_sec`,
//!   over a `ttl` window (Linkerd/Finagle; tower's `TpsBudget` implements it);
//! - the circuit breaker caps connections, pending requests, active requests and active retries
//!   per destination (Envoy's `max_connections`, `max_pending_requests`, `max_requests`,
//!   `max_retries` or `retry_budget`). A first attempt over a limit fast-fails with 503
//!   `circuit_open`; a retry over a limit is not sent and the caller gets the last attempt's
//!   response (Envoy's `upstream_rq_retry_overflow`).

use std::collections::BTreeMap;
use std::time::Duration;

pub use crate::balance::{LbPolicy, OutlierDetection};

/// Which failed attempts may be retried.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryOn {
    /// Any 5xx response (Envoy `5xx`).
    pub status_5xx: bool,
    /// 502, 503 or 504 (Envoy `gateway-error`).
    pub gateway_error: bool,
    /// The connect failed or timed out (Envoy `connect-failure`).
    pub connect_failure: bool,
    /// The upstream reset the stream before answering (Envoy `reset`).
    pub reset: bool,
    /// The upstream refused the HTTP/2 stream (`REFUSED_STREAM`): it never processed the request,
    /// so even a non-idempotent one is safe to send again (Envoy `refused-stream`).
    pub refused_stream: bool,
    /// These statuses (Envoy `retriable-status-codes`).
    pub statuses: Vec<u16>,
    /// These gRPC status codes, read from a trailers-only response's `grpc-status` header
    /// (Envoy `retry-grpc-on`: cancelled 1, deadline-exceeded 4, resource-exhausted 8,
    /// internal 13, unavailable 14).
    pub grpc: Vec<u16>,
}

/// A retry budget (Linkerd/Finagle): retries allowed as a share of recent requests plus a floor.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    /// Retries allowed per original request over the window, e.g. 0.2.
    pub ratio: f32,
    /// Retries allowed per second regardless of traffic.
    pub min_per_sec: u32,
    /// How long a request counts towards the budget (1 to 60 s).
    pub ttl: Duration,
}

/// How calls to a service are retried.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Bound on each attempt.
    pub per_try_timeout: Option<Duration>,
    /// Conditions that make an attempt retryable.
    pub retry_on: RetryOn,
    /// First backoff interval.
    pub backoff_base: Duration,
    /// Largest backoff interval.
    pub backoff_max: Duration,
    /// Budget shared by all requests to the service from this proxy; none = unlimited.
    pub budget: Option<Budget>,
    /// Retry POST, PATCH and other non-idempotent methods too.
    pub retry_non_idempotent: bool,
    /// Send a retry to an endpoint not tried yet for this request when one can be found within
    /// [`HOST_SELECTION_ATTEMPTS`] picks (Envoy's `previous_hosts` predicate, which Istio sets).
    pub avoid_previous_hosts: bool,
}

/// Picks a retry may make looking for an endpoint not tried yet (Istio's
/// `host_selection_retry_max_attempts`).
pub const HOST_SELECTION_ATTEMPTS: usize = 5;

/// Envoy-style thresholds for one destination.
#[derive(Clone, Debug, PartialEq)]
pub struct CircuitBreaker {
    /// Requests in flight to the destination, pending ones included (Envoy `max_requests`).
    pub max_requests: u32,
    /// Retries in flight to the destination (Envoy `max_retries`); ignored when `retry_budget` is set.
    pub max_retries: u32,
    /// Connections to the destination's endpoints (Envoy `max_connections`). An HTTP/1.1
    /// connection carries one exchange at a time, so this bounds concurrent HTTP/1.1 attempts;
    /// an HTTP/2 destination multiplexes over one connection and is bounded by `max_requests`.
    pub max_connections: u32,
    /// Attempts waiting for a connection (Envoy `max_pending_requests`); beyond it they fast-fail.
    pub max_pending: u32,
    /// Envoy's retry budget, which replaces `max_retries` when set.
    pub retry_budget: Option<ConcurrencyBudget>,
}

impl CircuitBreaker {
    /// Envoy's defaults: 1024 connections, pending and requests, 3 retries, no budget.
    pub fn envoy_defaults() -> Self {
        Self {
            max_requests: 1024,
            max_retries: 3,
            max_connections: 1024,
            max_pending: 1024,
            retry_budget: None,
        }
    }
}

/// Envoy's `retry_budget`: retries in flight may be `percent` of the requests in flight (active
/// and pending), and never fewer than `min_concurrency`. Unlike Linkerd's budget, which counts
/// requests over a time window, this one looks only at what is in flight now.
#[derive(Clone, Debug, PartialEq)]
pub struct ConcurrencyBudget {
    /// Percent of requests in flight (Envoy's default 20).
    pub percent: f64,
    /// Retries always allowed in flight (Envoy's default 3).
    pub min_concurrency: u32,
}

/// Everything a sidecar applies to calls to one service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServicePolicy {
    /// Overall timeout including retries; `None` falls back to the proxy's request timeout.
    pub timeout: Option<Duration>,
    /// Retries, if any.
    pub retry: Option<RetryPolicy>,
    /// Breaker thresholds, if any.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// How endpoints are chosen.
    pub lb: LbPolicy,
    /// Outlier detection, if any.
    pub outlier: Option<OutlierDetection>,
    /// Weighted split across subsets (`("v1", 90), ("v2", 10)`); empty = all endpoints alike.
    pub split: Vec<(String, u32)>,
    /// Routes, tried in order; the first that matches overrides timeout, retry and split.
    pub routes: Vec<RoutePolicy>,
}

/// Which requests a route takes (all given conditions must hold).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteMatch {
    /// Path starts with this.
    pub path_prefix: Option<String>,
    /// Method equals this.
    pub method: Option<http::Method>,
    /// Each header is present with exactly this value.
    pub headers: Vec<(String, String)>,
}

impl RouteMatch {
    /// Whether `req` matches.
    pub fn matches<B>(&self, req: &http::Request<B>) -> bool {
        self.path_prefix
            .as_ref()
            .is_none_or(|p| req.uri().path().starts_with(p.as_str()))
            && self.method.as_ref().is_none_or(|m| req.method() == m)
            && self.headers.iter().all(|(k, v)| {
                req.headers()
                    .get(k.as_str())
                    .is_some_and(|h| h.as_bytes() == v.as_bytes())
            })
    }
}

/// A route: a match and what it overrides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoutePolicy {
    /// Name, for counters and reports.
    pub name: String,
    /// Which requests.
    pub matcher: RouteMatch,
    /// Overall timeout for these requests.
    pub timeout: Option<Duration>,
    /// Retries for these requests.
    pub retry: Option<RetryPolicy>,
    /// Split for these requests (e.g. all `x-canary: 1` traffic to `v2`).
    pub split: Option<Vec<(String, u32)>>,
}

impl ServicePolicy {
    /// This policy with route `r`'s overrides (timeout, retry, split) laid over it, as the
    /// requests `r` matches get it.
    pub fn with_route(&self, r: &RoutePolicy) -> ServicePolicy {
        let mut p = self.clone();
        p.timeout = r.timeout.or(p.timeout);
        p.retry = r.retry.clone().or(p.retry);
        if let Some(split) = &r.split {
            p.split = split.clone();
        }
        p.routes.clear();
        p
    }
}

/// Policies by destination service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policies {
    /// Per service.
    pub services: BTreeMap<String, ServicePolicy>,
}

impl Policies {
    /// The policy for calls to `service` (the empty policy when none is set).
    pub fn get(&self, service: &str) -> Option<&ServicePolicy> {
        self.services.get(service)
    }
}

/// Whether RFC 9110 calls `method` idempotent.
pub fn is_idempotent(method: &http::Method) -> bool {
    matches!(
        *method,
        http::Method::GET
            | http::Method::HEAD
            | http::Method::OPTIONS
            | http::Method::TRACE
            | http::Method::PUT
            | http::Method::DELETE
    )
}
