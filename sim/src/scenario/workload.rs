//! The `[workload]` section: how requests arrive (open or closed loop), how many, and which.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::*;

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
    /// How many of the clients run without a sidecar (callers not yet in the mesh): their
    /// requests go in plaintext straight to the target pods' inbound ports, as iptables would
    /// send them there.
    #[serde(default)]
    pub plaintext_clients: u32,
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
