//! The `[[services]]` section: a service's pods, subsets, app behaviour (latency, errors,
//! workers and queue) and the calls it makes downstream. Its policy is in [`super::policy`].

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::*;

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
    /// What the app does with a request whose caller gave up (a timeout, a reset): `continue`
    /// (the default) finishes it, holding its worker, as a handler that does not check its
    /// context does; `abort` stops at once.
    #[serde(default)]
    pub cancellation: Cancellation,
    /// Calls the app makes to other services for each request.
    #[serde(default)]
    pub calls: Vec<CallSpec>,
    /// What every caller's sidecar applies to calls to this service (as an Istio
    /// VirtualService + DestinationRule for the host would).
    pub policy: Option<PolicySpec>,
    /// Who may call this service, and how: Istio `AuthorizationPolicy`s enforced by its own
    /// pods' sidecars (`[[services.authorization]]`, [`mesh_core::authz`]). Callers are known
    /// by `cluster.local/ns/default/sa/<their service>`; the load generator has no identity.
    #[serde(default)]
    pub authorization: Vec<mesh_core::authz::Policy>,
    /// Who may connect to this service's pods, and on which port: connection-time policies
    /// (`[[services.network_policy]]`, [`mesh_core::authz::l4`]), as Cilium's network policies
    /// and Istio's L4 authorization. Judged per connection before any request; the port is the
    /// app's (8080). Identities as for `authorization`.
    #[serde(default)]
    pub network_policy: Vec<mesh_core::authz::l4::NetworkPolicy>,
    /// The subset (version) label of the `replicas` pods above (default `v1`).
    #[serde(default = "v1")]
    pub version: String,
    /// More pods of the service with their own version label and, optionally, behaviour
    /// (a canary). Pods are named `<service>-<subset>-<index>`.
    #[serde(default)]
    pub subsets: Vec<SubsetSpec>,
}

/// What an app does with a request whose caller gave up.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Cancellation {
    /// Finish the work anyway (a Go handler that ignores its context, a servlet, a database
    /// query already running): the worker is held until done, and the time is wasted.
    #[default]
    Continue,
    /// Stop working on it at once (the handler checks its context).
    Abort,
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

pub(super) fn one() -> u32 {
    1
}
pub(super) fn default_zones() -> Vec<String> {
    vec!["a".into()]
}
pub(super) fn http1() -> Protocol {
    Protocol::Http1
}
pub(super) fn default_workers() -> u32 {
    64
}
pub(super) fn default_queue() -> u32 {
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

pub(super) fn get() -> String {
    "GET".into()
}
pub(super) fn slash() -> String {
    "/".into()
}
pub(super) fn yes() -> bool {
    true
}
pub(super) fn certain() -> f64 {
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
