//! Mesh presets: what Istio, Linkerd, Consul, Cilium and plain Envoy do when the user configures
//! nothing, as scenario policy, and how a service's own policy is laid over one. The figures
//! and their sources are in `shared/reference/mesh-defaults.md`; they are stated here once.

use serde::{Deserialize, Serialize};

use super::*;

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
    /// Cilium, for traffic its per-node Envoy carries (services with an L7 policy; without
    /// one, eBPF forwards with no retries or timeouts at all): 3 retries on `5xx` (in Envoy
    /// also connect failures and resets), each to the pod eBPF already chose (`ORIGINAL_DST`
    /// clusters), Envoy's 25-250 ms backoff, a 3,600 s route timeout, Envoy's breakers with
    /// 128 concurrent retries, random balancing (eBPF's default), no outlier detection.
    /// Connect timeout (2 s) is a mesh setting, not part of the preset.
    #[serde(rename = "cilium")]
    Cilium,
}

impl Preset {
    /// The default policy this mesh applies to every service.
    pub fn policy(self) -> PolicySpec {
        let envoy_breaker = Some(BreakerSpec::default());
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
                same_endpoint: false,
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
            Preset::Cilium => PolicySpec {
                timeout: Some(Dur::from_ms(3_600_000)),
                retry: Some(RetrySpec {
                    max_retries: 3,
                    per_try_timeout: None,
                    retry_on: vec![RetryOnSpec::Status5xx],
                    retry_statuses: vec![],
                    backoff_base: Dur::from_ms(25),
                    backoff_max: Dur::from_ms(250),
                    budget: None,
                    retry_non_idempotent: false,
                    avoid_previous_hosts: false,
                    same_endpoint: true,
                }),
                circuit_breaker: Some(BreakerSpec {
                    max_retries: 128,
                    ..BreakerSpec::default()
                }),
                lb: Some(LbSpec::Random),
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
