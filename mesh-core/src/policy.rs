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
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Budget {
    /// Retries allowed per original request over the window, e.g. 0.2.
    pub ratio: f32,
    /// Retries allowed per second regardless of traffic.
    pub min_per_sec: u32,
    /// How long a request counts towards the budget (1 to 60 s).
    pub ttl: Duration,
}

/// How calls to a service are retried.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// Send every retry to the endpoint the first attempt went to, while it is listed: what a
    /// proxy does behind an L4 balancer that chose the backend before the proxy saw the
    /// connection (Cilium's Envoy, whose clusters are `ORIGINAL_DST` after eBPF picked the pod).
    /// Excludes `avoid_previous_hosts`.
    #[serde(default)]
    pub same_endpoint: bool,
}

/// Picks a retry may make looking for an endpoint not tried yet (Istio's
/// `host_selection_retry_max_attempts`).
pub const HOST_SELECTION_ATTEMPTS: usize = 5;

/// Envoy-style thresholds for one destination.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConcurrencyBudget {
    /// Percent of requests in flight (Envoy's default 20).
    pub percent: f64,
    /// Retries always allowed in flight (Envoy's default 3).
    pub min_concurrency: u32,
}

/// Everything a sidecar applies to calls to one service.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
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
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouteMatch {
    /// Path starts with this.
    pub path_prefix: Option<String>,
    /// Method equals this.
    #[serde(with = "method_text")]
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
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
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
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
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

/// Why a proxy refuses a policy: the text a NACK carries back to the control plane.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("service {service:?}: {field}: expected {expected}")]
pub struct InvalidPolicy {
    /// The destination service the policy is for.
    pub service: String,
    /// The field, as a path (`retry.budget.ratio`, `routes[1].split`).
    pub field: String,
    /// What was expected.
    pub expected: &'static str,
}

impl Policies {
    /// Whether every policy is one this proxy can run (the first that is not, if any).
    pub fn validate(&self) -> Result<(), InvalidPolicy> {
        self.services
            .iter()
            .try_for_each(|(service, p)| p.validate(service))
    }
}

impl ServicePolicy {
    /// Whether this policy (for calls to `service`) is one this proxy can run: what a proxy
    /// checks before it applies a pushed policy, keeping its last good one for the service when
    /// the check fails. The bounds are those the policies' machinery relies on (tower's budget
    /// panics outside them).
    pub fn validate(&self, service: &str) -> Result<(), InvalidPolicy> {
        let bad = |field: String, expected| InvalidPolicy {
            service: service.to_string(),
            field,
            expected,
        };
        let retry = |r: &RetryPolicy, at: &str| -> Result<(), InvalidPolicy> {
            if r.backoff_base.is_zero() || r.backoff_base > r.backoff_max {
                return Err(bad(
                    format!("{at}retry.backoff"),
                    "a base above zero and no larger than the max",
                ));
            }
            if let Some(b) = &r.budget
                && (!(0.0..=10.0).contains(&b.ratio)
                    || !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&b.ttl)
                    || b.min_per_sec > 1_000_000)
            {
                return Err(bad(
                    format!("{at}retry.budget"),
                    "0 <= ratio <= 10, a window of 1 s to 60 s and at most 10^6 retries a second",
                ));
            }
            if r.same_endpoint && r.avoid_previous_hosts {
                return Err(bad(
                    format!("{at}retry.same_endpoint"),
                    "either same_endpoint or avoid_previous_hosts, not both",
                ));
            }
            Ok(())
        };
        let split = |s: &[(String, u32)], at: &str| -> Result<(), InvalidPolicy> {
            if !s.is_empty() && s.iter().all(|(_, w)| *w == 0) {
                return Err(bad(format!("{at}split"), "at least one weight above 0"));
            }
            Ok(())
        };
        if let Some(r) = &self.retry {
            retry(r, "")?;
        }
        split(&self.split, "")?;
        if let Some(b) = self
            .circuit_breaker
            .as_ref()
            .and_then(|c| c.retry_budget.as_ref())
            && !(0.0..=100.0).contains(&b.percent)
        {
            return Err(bad(
                "circuit_breaker.retry_budget.percent".into(),
                "a percent between 0 and 100",
            ));
        }
        if let Some(o) = &self.outlier
            && (o.consecutive_failures == 0 || o.max_ejection_percent > 100)
        {
            return Err(bad(
                "outlier".into(),
                "at least one failure to eject and a percent of at most 100",
            ));
        }
        for (i, r) in self.routes.iter().enumerate() {
            let at = format!("routes[{i}].");
            if let Some(retry_policy) = &r.retry {
                retry(retry_policy, &at)?;
            }
            if let Some(s) = &r.split {
                split(s, &at)?;
            }
        }
        Ok(())
    }
}

/// `http::Method` as its text in a pushed configuration.
mod method_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &Option<http::Method>, s: S) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => s.serialize_some(m.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<http::Method>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| http::Method::from_bytes(t.as_bytes()).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(p: ServicePolicy) -> Policies {
        let mut all = Policies::default();
        all.services.insert("db".into(), p);
        all
    }

    fn retry() -> RetryPolicy {
        RetryPolicy {
            max_retries: 2,
            per_try_timeout: None,
            retry_on: RetryOn::default(),
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
            budget: None,
            retry_non_idempotent: false,
            avoid_previous_hosts: true,
            same_endpoint: false,
        }
    }

    #[test]
    fn a_policy_survives_the_wire_and_bad_ones_are_named() {
        let good = with(ServicePolicy {
            retry: Some(retry()),
            split: vec![("v1".into(), 9), ("v2".into(), 1)],
            routes: vec![RoutePolicy {
                name: "post".into(),
                matcher: RouteMatch {
                    method: Some(http::Method::POST),
                    ..RouteMatch::default()
                },
                ..RoutePolicy::default()
            }],
            ..ServicePolicy::default()
        });
        assert_eq!(good.validate(), Ok(()));
        let text = serde_json::to_string(&good).unwrap();
        assert_eq!(serde_json::from_str::<Policies>(&text).unwrap(), good);

        let mut r = retry();
        r.budget = Some(Budget {
            ratio: 50.0,
            min_per_sec: 10,
            ttl: Duration::from_secs(10),
        });
        let e = with(ServicePolicy {
            retry: Some(r),
            ..ServicePolicy::default()
        })
        .validate()
        .unwrap_err();
        assert_eq!(
            (e.service.as_str(), e.field.as_str()),
            ("db", "retry.budget")
        );
        let e = with(ServicePolicy {
            routes: vec![RoutePolicy {
                split: Some(vec![("v2".into(), 0)]),
                ..RoutePolicy::default()
            }],
            ..ServicePolicy::default()
        })
        .validate()
        .unwrap_err();
        assert_eq!(e.field, "routes[0].split");
    }
}
